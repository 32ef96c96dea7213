//! Micro-benchmarks of the hot paths (run by hand: `cargo bench --bench hot_paths`; figures go to
//! BENCHMARKS.md): one frame fanned out by the pump to 1/10/100 consumers, the JPEG splitter on
//! an ffmpeg-like stream, JPEG encoding of camera-sized
//! frames with jpeg-encoder (the placeholder), and a YUYV camera's frames to JPEG, also with
//! libjpeg-turbo for comparison (`cargo bench --bench hot_paths --features bench-turbojpeg`).

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use farmcam::config::CameraConfig;
use farmcam::events::EventBus;
use farmcam::frame::Captured;
use farmcam::jpeg::Splitter;
use farmcam::pump::ConsumerKind;
use farmcam::registry::Camera;
use farmcam::render::Canvas;
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

criterion_group!(benches, fanout, splitter, encode, yuyv);
criterion_main!(benches);
