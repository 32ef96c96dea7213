//! `v4l2:/dev/…`: USB (UVC) and other V4L2 cameras.
//!
//! Each open upstream is one capture thread holding the device: V4L2 calls block, so they stay off
//! the async runtime. The thread polls in 250 ms steps, so it notices a stop request quickly, and
//! it releases the device (stream off, buffers unmapped, file closed) before it reports done.
//! MJPEG frames are passed through (cut at the end marker, Huffman tables added when missing);
//! YUYV frames are encoded here, on the capture thread; H.264 (`format = "h264"`) goes to the
//! same ingest as an RTSP camera's video ([`h264`]): passed through to coded-video consumers,
//! decoded by the shared helper for pictures. A process-wide table makes sure one device
//! is open for one camera at a time, even if two paths (by-id and /dev/videoN) name it.

mod device;
mod h264;
pub mod list;
pub use list::{encodes_h264, h264_encoder_device};
mod options;
pub mod yuyv;

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

use super::{Common, DemandRx, Source, SourceError, Upstream, Work};
use crate::frame::{Captured, Size};
use crate::media::orientation::Op;
use device::{Encoding, Negotiated, Ring};

pub use device::{DEFAULT_FPS, DEFAULT_SIZE};
pub use options::{control_name, ControlValue, PixelFormat, V4l2Options, DEFAULT_WARMUP_FRAMES};

/// How long opening and negotiating may take before the pump gives up on this attempt.
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);
/// The capture thread checks for a stop request this often.
const POLL: Duration = Duration::from_millis(250);
/// How long `close` waits for the capture thread to release the device.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// The path of a `v4l2:` source; the error names the fix.
pub fn parse(path: &str) -> Result<PathBuf, String> {
    let path = path.trim();
    if !path.starts_with('/') {
        return Err(format!(
            "\"v4l2:{path}\": give the device's absolute path, e.g. \"v4l2:/dev/v4l/by-id/usb-…-video-index0\" \
             (stable across replugs) or \"v4l2:/dev/video0\"; `farmcam devices` lists them"
        ));
    }
    Ok(PathBuf::from(path))
}

pub struct V4l2Source {
    settings: Arc<Settings>,
    work: Arc<Work>,
    /// The daemon's shared decoder (for a camera that sends H.264).
    shared: Arc<crate::source::coded::libav::SharedDecoder>,
    stall: Duration,
    max_frame: usize,
}

struct Settings {
    camera: String,
    /// YUYV frames are encoded at least this often, whatever the demand (stall detection).
    keepalive: Duration,
    path: PathBuf,
    size: Option<Size>,
    fps: Option<u32>,
    quality: u8,
    /// How YUYV frames are laid down before encoding (MJPEG is turned by the pump).
    turn: Op,
    options: V4l2Options,
}

impl V4l2Source {
    pub fn new(
        common: &Common,
        options: V4l2Options,
        shared: Arc<crate::source::coded::libav::SharedDecoder>,
    ) -> Self {
        let work = Arc::<Work>::default();
        // The clock's step for an H.264 camera whose SPS gives no rate.
        work.units.set_configured_rate(common.fps);
        V4l2Source {
            work,
            shared,
            stall: common.stall_timeout,
            max_frame: common.max_frame_size,
            settings: Arc::new(Settings {
                camera: common.id.clone(),
                keepalive: common.stall_timeout / 3,
                path: options.path.clone(),
                size: common.size,
                fps: common.fps,
                quality: options.quality.unwrap_or(yuyv::DEFAULT_QUALITY),
                turn: common.orientation.op(),
                options,
            }),
        }
    }
}

#[async_trait]
impl Source for V4l2Source {
    fn work(&self) -> Option<&Work> {
        Some(&self.work)
    }

    async fn open(&self, demand: DemandRx) -> Result<Box<dyn Upstream>, SourceError> {
        let (ready_tx, ready_rx) = oneshot::channel();
        let (frames_tx, frames_rx) = mpsc::channel(QUEUE);
        let (done_tx, done_rx) = oneshot::channel::<()>();
        let stop = Arc::new(AtomicBool::new(false));
        let invalid = Arc::new(AtomicU64::new(0));
        let demand_for_ingest = demand.clone();
        let capture = Capture {
            settings: self.settings.clone(),
            stop: stop.clone(),
            invalid: invalid.clone(),
            frames: frames_tx,
            demand,
            work: self.work.clone(),
            last_encoded: None,
        };
        std::thread::Builder::new()
            .name(format!("v4l2-{}", self.settings.camera))
            .spawn(move || {
                // Dropped last, after everything the thread held: "the device is released".
                let _done = done_tx;
                capture.run(ready_tx);
            })
            .map_err(|e| SourceError::Open(format!("cannot start a capture thread: {e}")))?;
        let upstream = Box::new(V4l2Upstream {
            camera: self.settings.camera.clone(),
            frames: frames_rx,
            stop,
            done: done_rx,
            invalid,
        });
        let failure = match tokio::time::timeout(OPEN_TIMEOUT, ready_rx).await {
            Ok(Ok(Ok(Encoding::H264))) => {
                return Ok(h264::ingest(
                    upstream,
                    demand_for_ingest,
                    self.settings.camera.clone(),
                    self.settings.quality,
                    self.shared.clone(),
                    self.stall,
                    self.max_frame,
                    self.work.clone(),
                )
                .await)
            }
            Ok(Ok(Ok(_))) => return Ok(upstream),
            Ok(Ok(Err(msg))) => msg,
            Ok(Err(_)) => "the capture thread ended while opening".to_string(),
            Err(_) => format!(
                "{} did not answer within {OPEN_TIMEOUT:?}",
                self.settings.path.display()
            ),
        };
        upstream.close().await;
        Err(SourceError::Open(failure))
    }
}

/// What the capture thread hands on: a JPEG frame, or an H.264 camera's access unit.
enum Delivered {
    Frame(Captured),
    Unit(Bytes),
}

/// Deliveries queued between the capture thread and the upstream: an H.264 camera's units must
/// not be dropped (the pictures after one lost refer to it), so there is room for a burst; JPEG
/// frames are skipped once [`JPEG_QUEUE`] wait (stale frames are worth less than fresh ones).
const QUEUE: usize = 16;
const JPEG_QUEUE: usize = 2;

struct V4l2Upstream {
    camera: String,
    frames: mpsc::Receiver<Result<Delivered, String>>,
    stop: Arc<AtomicBool>,
    done: oneshot::Receiver<()>,
    invalid: Arc<AtomicU64>,
}

#[async_trait]
impl Upstream for V4l2Upstream {
    async fn next_frame(&mut self) -> Result<Captured, SourceError> {
        loop {
            return match self.frames.recv().await {
                Some(Ok(Delivered::Frame(frame))) => Ok(frame),
                Some(Ok(Delivered::Unit(_))) => continue,
                Some(Err(msg)) => Err(SourceError::Failed(msg)),
                None => Err(SourceError::Ended),
            };
        }
    }

    fn take_invalid(&mut self) -> u64 {
        self.invalid.swap(0, Ordering::Relaxed)
    }

    async fn close(mut self: Box<Self>) {
        self.release().await;
    }
}

impl V4l2Upstream {
    /// Stop the capture thread and wait (bounded) until it released the device.
    async fn release(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.frames.close();
        while self.frames.try_recv().is_ok() {}
        if tokio::time::timeout(CLOSE_TIMEOUT, &mut self.done).await.is_err() {
            warn!(camera = %self.camera, "the capture thread did not stop within {CLOSE_TIMEOUT:?}; the device is released when it does");
        } else {
            debug!(camera = %self.camera, "v4l2 device released");
        }
    }
}

/// The capture thread's state.
struct Capture {
    settings: Arc<Settings>,
    stop: Arc<AtomicBool>,
    invalid: Arc<AtomicU64>,
    frames: mpsc::Sender<Result<Delivered, String>>,
    demand: DemandRx,
    work: Arc<Work>,
    last_encoded: Option<std::time::Instant>,
}

impl Capture {
    fn run(mut self, ready: oneshot::Sender<Result<Encoding, String>>) {
        let mut ready = Some(ready);
        // The v4l crate unwraps in places (a card name that is not UTF-8, a menu it cannot read):
        // a panic here is a failed camera, never a dead daemon.
        let result = catch_unwind(AssertUnwindSafe(|| self.capture(&mut ready)))
            .unwrap_or_else(|_| Err("internal error in the capture thread (see the log)".to_string()));
        if let Err(msg) = result {
            match ready.take() {
                Some(ready) => {
                    let _ = ready.send(Err(msg));
                }
                None => {
                    let _ = self.frames.blocking_send(Err(msg));
                }
            }
        }
    }

    fn capture(
        &mut self,
        ready: &mut Option<oneshot::Sender<Result<Encoding, String>>>,
    ) -> Result<(), String> {
        let settings = self.settings.clone();
        let s = &*settings;
        let _claim = Claim::take(&s.path, &s.camera)?;
        let (device, negotiated) =
            device::open(&s.path, s.options.format, s.size, s.fps, &s.options.controls)?;
        for w in &negotiated.warnings {
            warn!(camera = %s.camera, "{w}");
        }
        let mut ring = Ring::start(&device).map_err(|e| device::describe(&s.path, "start streaming", &e))?;
        info!(
            camera = %s.camera,
            device = %s.path.display(),
            format = match negotiated.encoding {
                Encoding::Mjpeg => "MJPEG (passed through)",
                Encoding::Yuyv { .. } => "YUYV (encoded)",
                Encoding::H264 => "H.264 (passed through, decoded for pictures)",
            },
            size = %format!("{}x{}", negotiated.width, negotiated.height),
            fps = negotiated.fps.map(|f| format!("{f:.1}")).unwrap_or_else(|| "driver default".into()),
            "v4l2 capture started"
        );
        if let Some(ready) = ready.take() {
            if ready.send(Ok(negotiated.encoding)).is_err() {
                return Ok(()); // The pump gave up waiting.
            }
        }
        let _raw = RawNative::set(&self.work, matches!(negotiated.encoding, Encoding::Yuyv { .. }));
        let mut warmup = s.options.warmup_frames;
        // An H.264 unit could not be queued: the ones after it wait for the next keyframe.
        let mut resync = false;
        while !self.stop.load(Ordering::Relaxed) {
            let Some(filled) = ring
                .next(POLL)
                .map_err(|e| device::describe(&s.path, "capture", &e))?
            else {
                continue;
            };
            let frame = if filled.error {
                self.invalid.fetch_add(1, Ordering::Relaxed);
                None
            } else if warmup > 0 {
                warmup -= 1;
                None
            } else if negotiated.encoding == Encoding::H264 {
                let data = ring.data(&filled);
                resync &= !h264::is_keyframe(data);
                (!resync).then(|| Delivered::Unit(Bytes::copy_from_slice(data)))
            } else {
                // A JPEG is made when the pump keeps up (else this frame is skipped rather than
                // stale ones queued) and, for a YUYV camera, someone takes it; a YUYV camera's
                // raw picture goes to its H.264 encoder when one listens.
                let queued = self.frames.max_capacity() - self.frames.capacity();
                let jpeg = queued < JPEG_QUEUE && (negotiated.encoding == Encoding::Mjpeg || self.wanted());
                self.convert(ring.data(&filled), &negotiated, jpeg)
                    .map(Delivered::Frame)
            };
            ring.requeue(filled.index)
                .map_err(|e| device::describe(&s.path, "capture", &e))?;
            if let Some(frame) = frame {
                match self.frames.try_send(Ok(frame)) {
                    Err(mpsc::error::TrySendError::Closed(_)) => break,
                    Err(mpsc::error::TrySendError::Full(Ok(Delivered::Unit(_)))) => {
                        self.invalid.fetch_add(1, Ordering::Relaxed);
                        resync = true;
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }

    /// Whether the demand wants a frame now (encoding is the expensive part of a YUYV camera).
    fn wanted(&self) -> bool {
        let since = self.last_encoded.map_or(Duration::MAX, |t| t.elapsed());
        self.demand.borrow().wants_frame(since, self.settings.keepalive)
    }

    /// One buffer to a JPEG frame if `jpeg` (else `None`, as for a broken buffer, which is
    /// counted as invalid); a YUYV buffer also to a raw picture for the H.264 encoder, if one
    /// listens.
    fn convert(&mut self, data: &[u8], n: &Negotiated, jpeg: bool) -> Option<Captured> {
        let captured_at = SystemTime::now();
        let raw = self.work.raw.wanted();
        let result = match n.encoding {
            Encoding::Mjpeg if jpeg => crate::media::jpeg::complete_mjpeg(data)
                .map(|(jpeg, (width, height))| (Bytes::from(jpeg.into_owned()), width, height, false))
                .map_err(|e| e.to_string()),
            Encoding::Mjpeg | Encoding::H264 => return None,
            Encoding::Yuyv { .. } if !jpeg && !raw => return None,
            Encoding::Yuyv { stride } => {
                let frame = yuyv::Yuyv {
                    data,
                    width: n.width,
                    height: n.height,
                    stride,
                };
                if frame.is_complete() {
                    let picture = frame.to_i420().turned(self.settings.turn);
                    let size = picture.size;
                    let encoded = jpeg.then(|| {
                        self.last_encoded = Some(std::time::Instant::now());
                        self.work.frames_encoded.fetch_add(1, Ordering::Relaxed);
                        picture.encode(self.settings.quality)
                    });
                    if raw {
                        // The camera's samples as they are: YUYV is limited range.
                        self.work.raw.publish(picture, true);
                    }
                    match encoded {
                        None => return None,
                        Some(r) => r
                            .map(|jpeg| (Bytes::from(jpeg), size.width, size.height, true))
                            .map_err(|e| e.to_string()),
                    }
                } else {
                    Err(format!("short YUYV frame ({} bytes)", data.len()))
                }
            }
        };
        match result {
            Ok((jpeg, width, height, oriented)) => Some(Captured {
                jpeg,
                width,
                height,
                captured_at,
                oriented,
            }),
            Err(e) => {
                debug!(camera = %self.settings.camera, "dropped a frame: {e}");
                self.invalid.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }
}

/// While it lives, the camera's raw feed says whether the open upstream makes raw pictures.
struct RawNative(Arc<Work>);

impl RawNative {
    fn set(work: &Arc<Work>, native: bool) -> RawNative {
        work.raw.set_native(native);
        RawNative(work.clone())
    }
}

impl Drop for RawNative {
    fn drop(&mut self) {
        self.0.raw.set_native(false);
    }
}

/// Which camera holds which device (by device number, so two paths to one device are one).
static CLAIMS: Mutex<BTreeMap<u64, String>> = Mutex::new(BTreeMap::new());

/// A device held open by a camera; released on drop.
struct Claim(Option<u64>);

impl Claim {
    fn take(path: &Path, camera: &str) -> Result<Claim, String> {
        // A missing path fails at open with the right message; nothing to claim yet.
        let Ok(rdev) = std::fs::metadata(path).map(|m| m.rdev()) else {
            return Ok(Claim(None));
        };
        let mut claims = CLAIMS.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(owner) = claims.get(&rdev) {
            return Err(if owner == camera {
                format!("{} is still being released", path.display())
            } else {
                format!(
                    "{} is the same device as camera {owner:?} uses; a device serves one camera",
                    path.display()
                )
            });
        }
        claims.insert(rdev, camera.to_string());
        Ok(Claim(Some(rdev)))
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if let Some(rdev) = self.0 {
            CLAIMS.lock().unwrap_or_else(|p| p.into_inner()).remove(&rdev);
        }
    }
}
