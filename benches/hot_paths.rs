//! Micro-benchmarks of the hot paths (run by hand: `cargo bench --bench hot_paths`; figures go to
//! BENCHMARKS.md): one frame fanned out by the pump to 1/10/100 consumers, the JPEG splitter on
//! an ffmpeg-like stream, JPEG encoding of camera-sized frames (the placeholder), a YUYV
//! camera's frames to JPEG (libjpeg-turbo, against the pure-Rust jpeg-encoder farmcam used
//! before), and what sizes and turned cameras cost per frame.

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use farmcam::config::CameraConfig;
use farmcam::events::EventBus;
use farmcam::frame::Captured;
use farmcam::media::codec;
use farmcam::media::jpeg::Splitter;
use farmcam::media::orientation::Op;
use farmcam::media::render::Canvas;
use farmcam::pump::ConsumerKind;
use farmcam::registry::Camera;
use farmcam::source::{Source, SourceError, SourceSpec, Upstream};
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

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

/// A source fed by the benchmark: each frame sent on the channel is one captured frame.
struct Fed(Mutex<Option<mpsc::Receiver<Captured>>>);

struct FedUp(mpsc::Receiver<Captured>);

#[async_trait]
impl Source for Fed {
    async fn open(&self, _demand: farmcam::source::DemandRx) -> Result<Box<dyn Upstream>, SourceError> {
        let rx = self.0.lock().unwrap().take();
        rx.map(|rx| Box::new(FedUp(rx)) as Box<dyn Upstream>)
            .ok_or_else(|| SourceError::Open("opened twice".into()))
    }
}

#[async_trait]
impl Upstream for FedUp {
    async fn next_frame(&mut self) -> Result<Captured, SourceError> {
        self.0.recv().await.ok_or(SourceError::Ended)
    }
}

/// One captured frame through the pump to N consumers (each its own task, as HTTP viewers are),
/// timed until the last consumer has it: the per-frame cost of sharing a camera.
fn fanout(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let jpeg = Bytes::from(picture(1280, 720).encode(false));
    let mut g = c.benchmark_group("fanout");
    for n in [1usize, 10, 100] {
        g.throughput(Throughput::Elements(1));
        g.bench_function(BenchmarkId::from_parameter(n), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let (tx, rx) = mpsc::channel(1);
                    let shutdown = CancellationToken::new();
                    let tracker = TaskTracker::new();
                    let mut config = CameraConfig::new("bench", SourceSpec::TestPattern);
                    config.idle_grace = Duration::ZERO;
                    let camera = Camera::with_source(
                        Arc::new(config),
                        Arc::new(Fed(Mutex::new(Some(rx)))),
                        Arc::new(EventBus::default()),
                        None,
                        &shutdown,
                        tracker.clone(),
                    );
                    let received = Arc::new(AtomicUsize::new(0));
                    let all = Arc::new(Notify::new());
                    let consumers: Vec<_> = (0..n)
                        .map(|_| {
                            let mut sub = camera.subscribe(ConsumerKind::Viewer);
                            let (received, all) = (received.clone(), all.clone());
                            tokio::spawn(async move {
                                while let Some(f) = sub.next().await {
                                    if f.placeholder {
                                        continue;
                                    }
                                    std::hint::black_box(f.jpeg.clone());
                                    if received.fetch_add(1, SeqCst) + 1 == n {
                                        all.notify_one();
                                    }
                                }
                            })
                        })
                        .collect();
                    let start = Instant::now();
                    for _ in 0..iters {
                        received.store(0, SeqCst);
                        tx.send(Captured {
                            jpeg: jpeg.clone(),
                            width: 1280,
                            height: 720,
                            captured_at: SystemTime::now(),
                            oriented: false,
                        })
                        .await
                        .unwrap();
                        all.notified().await;
                    }
                    let took = start.elapsed();
                    camera.kill();
                    for c in consumers {
                        c.await.unwrap();
                    }
                    shutdown.cancel();
                    tracker.close();
                    tracker.wait().await;
                    took
                })
            })
        });
    }
    g.finish();
}

fn splitter(c: &mut Criterion) {
    // 30 frames of 720p as ffmpeg would write them, read in 64 KiB pieces.
    let frame = picture(1280, 720).encode(false);
    let stream: Vec<u8> = std::iter::repeat_n(frame.as_slice(), 30)
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

/// A YUYV (4:2:2) camera frame, as cheap USB cameras deliver it, to a JPEG at quality 85:
/// farmcam's path (libjpeg-turbo from planar 4:2:0), also turned a quarter before encoding, and
/// the old path for comparison (chroma repeated to 4:4:4 YCbCr, pure-Rust jpeg-encoder 4:2:0).
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
        let yuyv = farmcam::source::v4l2::yuyv::Yuyv {
            data: &frame,
            width: w as u32,
            height: h as u32,
            stride: (w * 2) as u32,
        };
        g.throughput(Throughput::Elements(1));
        g.bench_function(BenchmarkId::new("libjpeg-turbo", format!("{w}x{h}")), |b| {
            b.iter(|| yuyv.encode(85, Op::None).unwrap())
        });
        g.bench_function(BenchmarkId::new("libjpeg-turbo-rot90", format!("{w}x{h}")), |b| {
            b.iter(|| yuyv.encode(85, Op::Rot90).unwrap())
        });
        g.bench_function(BenchmarkId::new("jpeg-encoder-old", format!("{w}x{h}")), |b| {
            let mut scratch = Vec::with_capacity(w * h * 3);
            b.iter(|| {
                scratch.clear();
                for px in frame.chunks_exact(4) {
                    let (y0, u, y1, v) = (px[0], px[1], px[2], px[3]);
                    scratch.extend_from_slice(&[y0, u, v, y1, u, v]);
                }
                let mut out = Vec::with_capacity(w * h / 3);
                let mut e = jpeg_encoder::Encoder::new(&mut out, 85);
                e.set_sampling_factor(jpeg_encoder::SamplingFactor::F_2_2);
                e.encode(&scratch, w as u16, h as u16, jpeg_encoder::ColorType::Ycbcr)
                    .unwrap();
                out
            })
        });
    }
    g.finish();
}

/// What consumers' sizes and mounted cameras cost per frame, from a 1280x720 camera JPEG: a
/// 320-wide thumbnail (scaled decode + encode), a 500-wide one (scaled decode, resize, encode),
/// a lossless quarter turn, and the decode-turn-encode a frame with partial edge blocks needs.
fn sizes_and_turns(c: &mut Criterion) {
    let size = farmcam::frame::Size {
        width: 1280,
        height: 720,
    };
    let jpeg = picture(1280, 720).encode(false);
    let mut g = c.benchmark_group("from_720p_jpeg");
    g.throughput(Throughput::Elements(1));
    for w in [320u32, 500] {
        let target = farmcam::frame::Size {
            width: w,
            height: w * 9 / 16,
        };
        g.bench_function(format!("thumbnail_{w}"), |b| {
            b.iter(|| codec::scale(&jpeg, target, 85).unwrap())
        });
    }
    g.bench_function("rot90_lossless", |b| {
        b.iter(|| codec::turn_lossless(&jpeg, Op::Rot90).unwrap())
    });
    g.bench_function("rot90_recoded", |b| {
        b.iter(|| codec::turn_recoded(&jpeg, Op::Rot90, 85).unwrap())
    });
    g.bench_function("full_decode", |b| {
        b.iter(|| codec::decode_rgb(&jpeg, None).unwrap())
    });
    assert_eq!(codec::size_of(&jpeg).unwrap(), size);
    g.finish();
}

criterion_group!(benches, fanout, splitter, encode, yuyv, sizes_and_turns);
criterion_main!(benches);
