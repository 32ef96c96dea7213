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

criterion_group!(benches, splitter, encode);
criterion_main!(benches);
