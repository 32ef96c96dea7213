//! Micro-benchmarks of the hot paths (run by hand: `cargo bench --bench hot_paths`; figures go to
//! BENCHMARKS.md): the JPEG splitter on an ffmpeg-like stream, JPEG encoding of camera-sized
//! frames with jpeg-encoder (the placeholder), and a YUYV camera's frames to JPEG, also with
//! libjpeg-turbo for comparison (`cargo bench --bench hot_paths --features bench-turbojpeg`).

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

/// A YUYV (4:2:2) camera frame, as cheap USB cameras deliver it, to a JPEG: farmcam's path
/// (chroma repeated to 4:4:4 YCbCr, jpeg-encoder 4:2:0), and with `--features bench-turbojpeg`
/// libjpeg-turbo from planar 4:2:0 (the packed frame split into planes first), quality 85 both.
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
            BenchmarkId::new("jpeg-encoder", format!("{w}x{h}")),
            &frame,
            |b, frame| {
                let yuyv = farmcam::source::v4l2::yuyv::Yuyv {
                    data: frame,
                    width: w as u32,
                    height: h as u32,
                    stride: (w * 2) as u32,
                };
                let mut scratch = Vec::new();
                b.iter(|| yuyv.encode(85, &mut scratch).unwrap())
            },
        );
        #[cfg(feature = "bench-turbojpeg")]
        g.bench_with_input(
            BenchmarkId::new("turbojpeg", format!("{w}x{h}")),
            &frame,
            |b, frame| {
                let mut compressor = turbojpeg::Compressor::new().unwrap();
                compressor.set_quality(85).unwrap();
                let mut planes = vec![0u8; w * h * 3 / 2];
                b.iter(|| {
                    let (luma, chroma) = planes.split_at_mut(w * h);
                    let (cb, cr) = chroma.split_at_mut(w * h / 4);
                    for (y, line) in frame.chunks_exact(w * 2).enumerate() {
                        for (x, px) in line.chunks_exact(4).enumerate() {
                            luma[y * w + 2 * x] = px[0];
                            luma[y * w + 2 * x + 1] = px[2];
                            if y % 2 == 0 {
                                cb[(y / 2) * (w / 2) + x] = px[1];
                                cr[(y / 2) * (w / 2) + x] = px[3];
                            }
                        }
                    }
                    compressor
                        .compress_yuv_to_vec(turbojpeg::YuvImage {
                            pixels: &planes[..],
                            width: w,
                            align: 1,
                            height: h,
                            subsamp: turbojpeg::Subsamp::Sub2x2,
                        })
                        .unwrap()
                })
            },
        );
    }
    g.finish();
}

criterion_group!(benches, splitter, encode, yuyv);
criterion_main!(benches);
