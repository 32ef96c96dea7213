//! Micro-benchmarks of the hot paths (run by hand: `cargo bench --bench hot_paths`; figures go to
//! BENCHMARKS.md): the JPEG splitter on an ffmpeg-like stream, and JPEG encoding of camera-sized
//! frames with jpeg-encoder (the cost of a YUYV camera or the placeholder).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use farmcam::jpeg::Splitter;
use farmcam::render::Canvas;

/// A camera-like picture: smooth gradients plus some detail.
fn picture(w: u32, h: u32) -> Canvas {
    let mut c = Canvas::new(w, h, [0, 0, 0]);
    for y in 0..h {
        for x in 0..w {
            let i = ((y * w + x) * 3) as usize;
            c.rgb[i] = (x * 255 / w) as u8;
            c.rgb[i + 1] = (y * 255 / h) as u8;
            c.rgb[i + 2] = ((x ^ y) & 0xff) as u8;
        }
    }
    c.text(20, 20, 4, "farmcam 12:34:56", [255, 255, 255]);
    c
}

fn splitter(c: &mut Criterion) {
    // 30 frames of 720p as ffmpeg would write them, read in 64 KiB pieces.
    let frame = picture(1280, 720).encode(false);
    let stream: Vec<u8> = std::iter::repeat(frame.as_slice())
        .take(30)
        .flatten()
        .copied()
        .collect();
    let mut g = c.benchmark_group("splitter");
    g.throughput(Throughput::Bytes(stream.len() as u64));
    g.bench_function("720p_stream_64KiB_reads", |b| {
        b.iter(|| {
            let mut s = Splitter::new(8 << 20);
            let mut out = Vec::new();
            for piece in stream.chunks(64 * 1024) {
                s.push(piece, &mut out);
            }
            assert_eq!(out.len(), 30);
        })
    });
    g.finish();
}

fn encode(c: &mut Criterion) {
    let mut g = c.benchmark_group("jpeg_encode");
    for (w, h) in [(640u32, 480u32), (1280, 720)] {
        let pic = picture(w, h);
        g.throughput(Throughput::Elements(1));
        g.bench_with_input(BenchmarkId::from_parameter(format!("{w}x{h}")), &pic, |b, pic| {
            b.iter(|| pic.encode(false))
        });
    }
    g.finish();
}

/// A YUYV (4:2:2) camera frame, as cheap USB cameras deliver, to a JPEG: chroma duplicated to
/// 4:4:4 YCbCr, then encoded 4:2:0 by jpeg-encoder (no RGB round trip).
fn yuyv(c: &mut Criterion) {
    let mut g = c.benchmark_group("yuyv_to_jpeg");
    for (w, h) in [(640usize, 480usize), (1280, 720)] {
        // Camera-like content: a luma gradient with some texture, gently varying chroma.
        let frame: Vec<u8> = (0..w * h * 2)
            .map(|i| {
                let (x, y) = ((i / 2) % w, (i / 2) / w);
                if i % 2 == 0 {
                    ((x + y) / 4 + (x ^ y) % 16) as u8
                } else {
                    (112 + (x / 16 + y / 32) % 32) as u8
                }
            })
            .collect();
        g.throughput(Throughput::Elements(1));
        g.bench_with_input(
            BenchmarkId::from_parameter(format!("{w}x{h}")),
            &frame,
            |b, frame| {
                let mut ycbcr = vec![0u8; w * h * 3];
                b.iter(|| {
                    for (px, out) in frame.chunks_exact(4).zip(ycbcr.chunks_exact_mut(6)) {
                        let (y0, u, y1, v) = (px[0], px[1], px[2], px[3]);
                        out.copy_from_slice(&[y0, u, v, y1, u, v]);
                    }
                    let mut jpeg = Vec::with_capacity(w * h / 4);
                    let mut e = jpeg_encoder::Encoder::new(&mut jpeg, 80);
                    e.set_sampling_factor(jpeg_encoder::SamplingFactor::F_2_2);
                    e.encode(&ycbcr, w as u16, h as u16, jpeg_encoder::ColorType::Ycbcr)
                        .unwrap();
                    jpeg
                })
            },
        );
    }
    g.finish();
}

criterion_group!(benches, splitter, encode, yuyv);
criterion_main!(benches);
