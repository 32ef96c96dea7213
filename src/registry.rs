//! Camera id → camera; each camera hands consumers to its live pump, or starts a fresh one.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::CameraConfig;
use crate::events::{CameraState, EventBus};
use crate::frame::Frame;
use crate::light::{Light, LightStatus, Lights};
use crate::polls::{self, Polls};
use crate::pump::{CameraShared, ConsumerKind, Counts, Periodic, PeriodicGuard, Pump, Subscription, Want};
use crate::source::coded::encoding::{self, Encoding, Hardware};
use crate::source::coded::libav::SharedDecoder;
use crate::source::{self, Source, SourceSpec, Work};
pub use crate::source::{DecodedBy, DecoderMode, IngestBy};

/// One configured camera. It lives as long as the configuration; pumps come and go.
pub struct Camera {
    shared: Arc<CameraShared>,
    source: Arc<dyn Source>,
    /// The current (or last) pump. Replaced, under this lock, when it has stopped.
    pump: Mutex<Slot>,
    /// Clients polling this camera's snapshots.
    polls: Arc<Polls>,
    kill: CancellationToken,
    tracker: TaskTracker,
    /// Live H.264 of its pictures, for a camera that sends pictures and has an encoder.
    encoding: Option<Arc<Encoding>>,
    /// The daemon's decoder helper (which also encodes).
    decoder: Arc<SharedDecoder>,
}

struct Slot {
    pump: Option<Arc<Pump>>,
    /// Before this camera's first pump: the upstream of the camera it replaced (a reload that
    /// changed it) must close before this one opens, as between two pumps of one camera.
    previous: Option<CancellationToken>,
}

impl Slot {
    /// Fires once the last upstream in this slot (or, before any, the replaced camera's) closed.
    fn closed(&self) -> Option<CancellationToken> {
        match &self.pump {
            Some(p) => Some(p.closed()),
            None => self.previous.clone(),
        }
    }
}

/// What H.264 encoders this box has, looked for once.
pub fn hardware() -> &'static Hardware {
    static HW: std::sync::OnceLock<Hardware> = std::sync::OnceLock::new();
    HW.get_or_init(|| Hardware {
        v4l2m2m: crate::source::v4l2::h264_encoder_device(std::path::Path::new("/dev")),
        vaapi: encoding::vaapi_render_node(std::path::Path::new("/sys/class/drm")),
    })
}

/// Which encoder `config`'s camera gets on this box, and why (`None`: it sends H.264 itself, or
/// never opens). An HTTP camera is taken to send MJPEG until it is seen sending H.264.
pub fn encoder_of(config: &CameraConfig) -> Option<encoding::Resolved> {
    match &config.source {
        SourceSpec::Ffmpeg(o) if !o.input.may_send_pictures() => None,
        SourceSpec::V4l2(_) if config.source.sends_own_video() => None,
        SourceSpec::TestOffline => None,
        _ => Some(encoding::resolve(&config.h264_encoder, hardware())),
    }
}

/// The encoding of a camera that sends pictures and gets an encoder.
fn encoding_for(config: &CameraConfig) -> Option<Arc<Encoding>> {
    let resolved = encoder_of(config)?;
    if resolved.encoders.is_empty() {
        tracing::debug!(camera = %config.id, "camera {}: no live H.264 ({})", config.id, resolved.why);
        return None;
    }
    tracing::info!(
        camera = %config.id,
        "camera {}: live H.264 with {} when a WebRTC or RTSP client watches ({})",
        config.id,
        resolved.encoders.join(", "),
        resolved.why
    );
    let fps = config.fps.unwrap_or(crate::source::test_pattern::DEFAULT_FPS);
    Some(Arc::new(Encoding::new(
        &resolved,
        fps,
        config.h264_bitrate.unwrap_or(0),
    )))
}

/// A snapshot without `max_age` gets a frame captured at most this long before it is taken: a
/// camera that only makes frames on demand (a decoder in keyframe mode, a YUYV camera, the test
/// pattern) may hold an older one, and a wall tile refreshing every second must not show it.
pub const SNAPSHOT_FRESH: Duration = Duration::from_secs(1);

/// Why a snapshot could not be taken; each carries the placeholder JPEG to show instead.
#[derive(Debug)]
pub enum SnapshotError {
    /// No good frame within `snapshot_timeout`.
    Timeout { placeholder: Bytes },
    /// The upstream is down; the pump retries in `retry_in`.
    Offline { placeholder: Bytes, retry_in: Duration },
    /// farmcam is shutting down.
    ShuttingDown,
}

/// Live viewers by how they watch.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct ViewersByKind {
    pub mjpeg: usize,
    pub webrtc: usize,
}

/// A camera's status, as `/api/cameras` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct CameraStatus {
    pub id: String,
    pub name: String,
    pub state: CameraState,
    /// Live viewers: MJPEG stream viewers and WebRTC viewers (`viewers_by_kind` tells them apart).
    pub viewers: usize,
    pub viewers_by_kind: ViewersByKind,
    /// Bytes sent to this camera's WebRTC viewers (media and control).
    pub webrtc_bytes_sent: u64,
    /// RTSP clients now (Home Assistant, NVRs: consumers, not counted as viewers).
    pub rtsp_clients: usize,
    /// Bytes of RTP sent to this camera's RTSP clients.
    pub rtsp_bytes_sent: u64,
    /// All consumers: viewers, snapshot requests, other publishers.
    pub consumers: usize,
    /// Why the camera is open with nobody attached: the periodic consumer it is kept for
    /// (`"mqtt every 10s"`), instead of closing after `idle_grace` and reconnecting.
    pub kept_for: Option<String>,
    /// The configured (requested) frame rate, if any.
    pub fps: Option<u32>,
    pub measured_fps: f64,
    pub frames_captured: u64,
    pub frames_invalid: u64,
    pub frames_delivered: u64,
    pub frames_skipped: u64,
    pub upstream_opens: u64,
    pub last_frame_age_ms: Option<u64>,
    pub size: Option<String>,
    pub source: String,
    /// Why the upstream last failed, until frames flow again.
    pub last_error: Option<String>,
    /// Whether the camera can give a picture, as far as farmcam knows: live, or not failed since
    /// its last frame (a closed camera keeps its last outcome). MQTT availability and `HEAD` of
    /// a snapshot follow it, so a dead camera does not look alive whenever its pump is stopped.
    pub available: bool,
    /// The camera's light, if it has one.
    pub light: Option<LightStatus>,
    /// For H.264/H.265 cameras: what the decoder does now (`off`, `keyframes`, `full`).
    pub decoder: Option<DecoderMode>,
    /// For H.264/H.265 cameras with a decoder running: `helper` (the shared libavcodec helper)
    /// or `ffmpeg` (a decoder child of its own).
    pub decoded_by: Option<DecodedBy>,
    /// For connected H.264/H.265 cameras: `farmcam` (its own RTSP client) or `ffmpeg` (an
    /// ingest child).
    pub ingest: Option<IngestBy>,
    /// For H.264/H.265 cameras: the measured time between keyframes.
    pub keyframe_interval_ms: Option<u64>,
    /// Pictures handed to the decoder (H.264/H.265 cameras).
    pub frames_decoded: Option<u64>,
    /// Decoder processes started (H.264/H.265 cameras): once per need for pictures, not per
    /// change of rate.
    pub decoder_starts: Option<u64>,
    /// The H.264 encoder encoding this camera's pictures now (`None`: not encoding: nobody
    /// watches its live H.264, or it has no encoder).
    pub encoder: Option<String>,
    /// Why the camera has no live H.264 although it has an encoder (it failed; said once).
    pub encoder_error: Option<String>,
    /// JPEGs encoded for this camera (None: frames are passed through as the camera sends them).
    pub frames_encoded: Option<u64>,
    /// Frames made at a size consumers asked for (`?width=`): each size of each frame once.
    pub frames_scaled: u64,
    /// The sizes being served besides the camera's own (e.g. `width=320`).
    pub sizes: Vec<String>,
    /// How the camera is mounted: degrees clockwise, then `flip`.
    pub rotate: u16,
    pub flip: &'static str,
}

impl Camera {
    pub fn new(
        config: Arc<CameraConfig>,
        events: Arc<EventBus>,
        light: Option<Arc<Light>>,
        parent: &CancellationToken,
        tracker: TaskTracker,
        decoder: &Arc<SharedDecoder>,
    ) -> Self {
        let source = source::build(&config.common(), &config.source, decoder);
        let mut cam = Self::with_source(config, source, events, light, parent, tracker);
        cam.decoder = decoder.clone();
        cam.encoding = encoding_for(cam.config());
        cam
    }

    /// A camera with a given source (tests use scripted sources).
    pub fn with_source(
        config: Arc<CameraConfig>,
        source: Arc<dyn Source>,
        events: Arc<EventBus>,
        light: Option<Arc<Light>>,
        parent: &CancellationToken,
        tracker: TaskTracker,
    ) -> Self {
        // A camera with a light holds it on from before each open until the upstream closed.
        let source = match &light {
            Some(l) => Arc::new(crate::lit::LitSource::new(source, l.clone())) as Arc<dyn Source>,
            None => source,
        };
        Camera {
            shared: Arc::new(CameraShared::new(config, events, light)),
            source,
            pump: Mutex::new(Slot {
                pump: None,
                previous: None,
            }),
            polls: Arc::default(),
            kill: parent.child_token(),
            tracker,
            encoding: None,
            decoder: SharedDecoder::new(None),
        }
    }

    /// Its live H.264, if it sends pictures and has an encoder (see [`crate::encode`]); not for
    /// an HTTP camera found to send H.264 itself (played as it sends it).
    pub fn encoding(&self) -> Option<&Arc<Encoding>> {
        self.encoding
            .as_ref()
            .filter(|_| self.own_units().is_none_or(|f| f.seen().is_none()))
    }

    /// The coded video the camera sends itself (cameras read through ffmpeg or farmcam's RTSP
    /// client; None for the others).
    fn own_units(&self) -> Option<&crate::source::coded::units::UnitFeed> {
        if !self.config().source.sends_own_video() {
            return None;
        }
        self.source.work().map(|w| &w.units)
    }

    /// The raw pictures its source hands to an encoder (sources whose pictures are raw).
    pub fn raw_pictures(&self) -> Option<&crate::source::raw::RawFeed> {
        self.source.work().map(|w| &w.raw)
    }

    /// The daemon's decoder helper.
    pub fn decoder(&self) -> &Arc<SharedDecoder> {
        &self.decoder
    }

    /// This camera replaces `old` (same id, changed configuration): its first upstream opens only
    /// once `old`'s last one has closed, so the camera never sees two connections.
    fn replaces(&self, old: &Camera) {
        let closed = old.closed();
        self.pump.lock().unwrap().previous = closed;
    }

    /// Fires once this camera's last upstream (and every earlier one) is closed.
    fn closed(&self) -> Option<CancellationToken> {
        self.pump.lock().unwrap().closed()
    }

    pub fn config(&self) -> &CameraConfig {
        &self.shared.config
    }

    /// Whether the camera sends H.264/H.265 that WebRTC viewers can take as it is: seen on its
    /// connection, or an RTSP camera (printers' RTSP is H.264) that has sent nothing else yet.
    pub fn sends_coded_video(&self) -> bool {
        use crate::source::ffmpeg::FfmpegInput;
        if let Some(e) = self.encoding() {
            // Until its encoder failed (then it is an MJPEG camera, as without one).
            return e.failed.lock().unwrap().is_none();
        }
        let Some(feed) = self.units() else {
            return false;
        };
        feed.seen().is_some()
            || (self.shared.frames_captured.load(Relaxed) == 0
                && match &self.shared.config.source {
                    SourceSpec::Ffmpeg(o) => {
                        matches!(o.input, FfmpegInput::Rtsp(_) | FfmpegInput::BambuRtsps(_))
                    }
                    s @ SourceSpec::V4l2(_) => s.sends_own_video(),
                    _ => false,
                })
    }

    /// The size consumers get: the last picture's, else the configured one, else (a camera
    /// watched only as coded video, never decoded) what its parameter sets say; all turned as
    /// the camera is mounted.
    pub fn output_size(&self) -> Option<crate::frame::Size> {
        self.shared.output_size().or_else(|| {
            let (width, height) = self.units()?.picture_size()?;
            Some(self.shared.turned(crate::frame::Size { width, height }))
        })
    }

    /// The camera's coded video, for consumers that take it as it is (H.264/H.265 cameras
    /// through ffmpeg; None for the others). Subscribe with `Want::Units` to keep it coming.
    pub fn units(&self) -> Option<&crate::source::coded::units::UnitFeed> {
        match self.encoding() {
            Some(e) => Some(&e.units),
            None => self.own_units(),
        }
    }

    /// Declare a consumer that takes a frame every `every` while the guard lives (see
    /// [`CameraShared::expect_periodic`]).
    pub fn expect_periodic(&self, who: &'static str, every: Duration) -> PeriodicGuard {
        self.shared.expect_periodic(Periodic { who, every })
    }

    /// Counters and histograms shared by every pump of this camera.
    pub fn shared(&self) -> &Arc<CameraShared> {
        &self.shared
    }

    fn shared_config(&self) -> &Arc<CameraConfig> {
        &self.shared.config
    }

    pub fn id(&self) -> &str {
        &self.shared.config.id
    }

    /// Attach a consumer to the live pump, or to a fresh one if the last has stopped (or is
    /// stopping: a consumer never lands on a stopped pump).
    pub fn subscribe(&self, kind: ConsumerKind) -> Subscription {
        self.subscribe_wanting(kind, kind.usual_want())
    }

    /// Attach a consumer that needs `want` (see [`Want`]): the pump tells the upstream what its
    /// consumers need together.
    pub fn subscribe_wanting(&self, kind: ConsumerKind, want: Want) -> Subscription {
        let mut slot = self.pump.lock().unwrap();
        if let Some(sub) = slot.pump.as_ref().and_then(|p| p.try_attach(kind, want)) {
            return sub;
        }
        let previous = slot.closed();
        let (pump, sub) = Pump::start(
            self.shared.clone(),
            self.source.clone(),
            &self.kill,
            previous,
            &self.tracker,
            kind,
            want,
        );
        slot.pump = Some(pump);
        sub
    }

    /// One complete JPEG: a cached frame no older than `max_age` if given (measured from this
    /// request: `max_age` 0 means a frame captured after it), else the live pump's latest if it
    /// is at most [`SNAPSHOT_FRESH`] old, else the next good frame (waiting at most
    /// `snapshot_timeout`; a camera that was idle is started for it).
    pub async fn snapshot(&self, max_age: Option<Duration>) -> Result<Frame, SnapshotError> {
        self.snapshot_for(max_age, None).await
    }

    /// [`Self::snapshot`] for a `client` that may be polling: a polling client gets a frame it
    /// has not had yet, and its polling is a rate demand (see [`crate::polls`]).
    pub async fn snapshot_for(
        &self,
        max_age: Option<Duration>,
        client: Option<polls::Poller>,
    ) -> Result<Frame, SnapshotError> {
        let poll = match (client, max_age) {
            (Some(ip), None) => {
                let (poll, spawn) = self.polls.request(ip, |rate| {
                    self.subscribe_wanting(ConsumerKind::Snapshot, Want::Rate(rate))
                });
                if spawn {
                    self.tracker
                        .spawn(polls::expire_until_idle(self.polls.clone(), self.kill.clone()));
                }
                poll.map(|p| (ip, p))
            }
            _ => None,
        };
        let result = self
            .snapshot_newer(max_age, poll.map_or(0, |(_, p)| p.seen))
            .await;
        if let (Some((ip, _)), Ok(f)) = (poll, &result) {
            self.polls.delivered(ip, f.seq);
        }
        result
    }

    /// A snapshot newer than the frame `seen` (0: any).
    async fn snapshot_newer(&self, max_age: Option<Duration>, seen: u64) -> Result<Frame, SnapshotError> {
        let asked = std::time::SystemTime::now();
        // Measured from the request; without `max_age`, a glance gets a frame at most
        // SNAPSHOT_FRESH old (a camera making frames on demand may hold an older one: the
        // snapshot's demand then asks for the next one at once).
        let oldest = asked.checked_sub(max_age.unwrap_or(SNAPSHOT_FRESH));
        let fresh = |f: &Frame| f.seq > seen && oldest.is_none_or(|oldest| f.captured_at >= oldest);
        if max_age.is_some() {
            if let Some(f) = self.shared.last_good.lock().unwrap().clone() {
                if fresh(&f) {
                    return Ok(f);
                }
            }
        }
        let mut sub = self.subscribe(ConsumerKind::Snapshot);
        let wait = self.shared.config.snapshot_timeout;
        let result = timeout(wait, async {
            loop {
                match sub.next().await {
                    None => return Err(SnapshotError::ShuttingDown),
                    // A camera still starting shows the placeholder to viewers; a snapshot waits
                    // for its first frame (up to `snapshot_timeout`). So does one live with
                    // coded video only (WebRTC viewers): its decoder starts for this snapshot.
                    Some(f)
                        if f.placeholder
                            && matches!(sub.state(), CameraState::Starting | CameraState::Live) =>
                    {
                        continue
                    }
                    Some(f) if f.placeholder => {
                        return Err(SnapshotError::Offline {
                            placeholder: f.jpeg,
                            retry_in: sub.retry_in().unwrap_or(Duration::from_secs(1)),
                        })
                    }
                    Some(f) if !fresh(&f) => continue,
                    // A light just switched on: wait until it settled (exposure, flicker).
                    Some(f) if self.unlit(&f) => continue,
                    Some(f) => return Ok(f),
                }
            }
        })
        .await
        .unwrap_or_else(|_| {
            Err(SnapshotError::Timeout {
                placeholder: self.shared.placeholder(),
            })
        });
        if result.is_ok() {
            sub.delivered();
        }
        result
    }

    /// Captured before the camera's light settled.
    fn unlit(&self, f: &Frame) -> bool {
        let settled = self.shared.light.as_ref().and_then(|l| l.settled_at());
        settled.is_some_and(|t| f.captured_at < t)
    }

    pub fn status(&self) -> CameraStatus {
        let s = &self.shared;
        let pump = self.pump.lock().unwrap().pump.clone();
        let (state, counts, kept_for) = match &pump {
            Some(p) if !p.is_stopped() => (p.state(), p.counts(), p.kept_for()),
            _ => (CameraState::Idle, Counts::default(), None),
        };
        let work = self.source.work();
        let last = s.last_good.lock().unwrap().clone();
        let size = self.output_size().map(|z| z.to_string());
        // Pictures counted by the pump; a camera watched only as coded video counts its units.
        let mut measured_fps = s.fps_milli.load(Relaxed) as f64 / 1000.0;
        if measured_fps == 0.0 && state == CameraState::Live {
            measured_fps = self.units().and_then(|u| u.arrival_rate()).unwrap_or(0.0);
        }
        CameraStatus {
            id: s.config.id.clone(),
            name: s.config.name.clone(),
            state,
            viewers: counts.viewers,
            viewers_by_kind: ViewersByKind {
                mjpeg: counts.viewers - counts.webrtc_viewers,
                webrtc: counts.webrtc_viewers,
            },
            webrtc_bytes_sent: s.webrtc_bytes_sent.load(Relaxed),
            rtsp_clients: counts.rtsp_clients,
            rtsp_bytes_sent: s.rtsp_bytes_sent.load(Relaxed),
            consumers: counts.consumers,
            kept_for: kept_for.map(|p| p.to_string()),
            fps: s.config.fps,
            measured_fps: (measured_fps * 10.0).round() / 10.0,
            frames_captured: s.frames_captured.load(Relaxed),
            frames_invalid: s.frames_invalid.load(Relaxed),
            frames_delivered: s.frames_delivered.load(Relaxed),
            frames_skipped: s.frames_skipped.load(Relaxed),
            upstream_opens: s.upstream_opens.load(Relaxed),
            last_frame_age_ms: last.map(|f| f.age().as_millis() as u64),
            size,
            source: s.config.source.redacted(),
            available: state == CameraState::Live
                || (state != CameraState::Offline && s.last_error.lock().unwrap().is_none()),
            last_error: s.last_error.lock().unwrap().clone(),
            light: s.light.as_ref().map(|l| l.status()),
            decoder: work.and_then(Work::decoder),
            decoded_by: work.and_then(Work::decoded_by),
            ingest: work.and_then(Work::ingest),
            keyframe_interval_ms: work
                .map(|w| w.keyframe_interval_ms.load(Relaxed))
                .filter(|ms| *ms > 0),
            frames_decoded: work
                .filter(|w| w.decoder().is_some())
                .map(|w| w.frames_decoded.load(Relaxed)),
            decoder_starts: work
                .filter(|w| w.decoder().is_some())
                .map(|w| w.decoder_starts.load(Relaxed)),
            frames_encoded: work.map(|w| w.frames_encoded.load(Relaxed)),
            encoder: self.encoding.as_ref().and_then(|e| e.name()),
            encoder_error: self
                .encoding
                .as_ref()
                .and_then(|e| e.failed.lock().unwrap().clone()),
            frames_scaled: s.sizes.frames_scaled.load(Relaxed),
            sizes: s.sizes.in_use(),
            rotate: s.config.orientation.rotate,
            flip: s.config.orientation.flip.name(),
        }
    }

    /// The running pump's heartbeat count, if a pump is running.
    pub fn heartbeat(&self) -> Option<u64> {
        let pump = self.pump.lock().unwrap().pump.clone()?;
        (!pump.is_stopped()).then(|| pump.beats())
    }

    /// Stop this camera's pump now: its consumers end, its upstream closes.
    pub fn kill(&self) {
        self.kill.cancel();
        if let Some(p) = self.pump.lock().unwrap().pump.as_ref() {
            p.kill();
        }
    }
}

/// All configured cameras, in configuration order. The set can be replaced by a reload.
pub struct Registry {
    cameras: RwLock<Vec<Arc<Camera>>>,
    pub events: Arc<EventBus>,
    lights: Lights,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    /// The decoder helper every H.264/H.265 camera of this daemon shares.
    decoder: Arc<SharedDecoder>,
}

/// What a reload did to the camera set.
#[derive(Default)]
pub struct Reloaded {
    /// New cameras, and changed ones (restarted: their viewers were closed).
    pub started: Vec<Arc<Camera>>,
    pub added: usize,
    pub restarted: usize,
    /// Ids of cameras no longer configured (stopped, viewers closed).
    pub removed: Vec<String>,
    /// Cameras whose configuration did not change: untouched, their viewers saw nothing.
    pub kept: usize,
}

impl Registry {
    pub fn new(
        cameras: &[Arc<CameraConfig>],
        events: Arc<EventBus>,
        lights: &Lights,
        shutdown: CancellationToken,
        decoder: Arc<SharedDecoder>,
    ) -> Self {
        let registry = Registry {
            cameras: RwLock::new(Vec::new()),
            events,
            lights: lights.clone(),
            shutdown,
            tracker: TaskTracker::new(),
            decoder,
        };
        let built = cameras.iter().map(|c| registry.build(c)).collect();
        *registry.cameras.write().unwrap() = built;
        registry
    }

    fn build(&self, config: &Arc<CameraConfig>) -> Arc<Camera> {
        let light = config.light.as_deref().and_then(|id| self.lights.get(id));
        Arc::new(Camera::new(
            config.clone(),
            self.events.clone(),
            light,
            &self.shutdown,
            self.tracker.clone(),
            &self.decoder,
        ))
    }

    pub fn get(&self, id: &str) -> Option<Arc<Camera>> {
        self.cameras
            .read()
            .unwrap()
            .iter()
            .find(|c| c.id() == id)
            .cloned()
    }

    /// The current cameras (a snapshot of the set).
    pub fn cameras(&self) -> Vec<Arc<Camera>> {
        self.cameras.read().unwrap().clone()
    }

    /// Replace the camera set: unchanged cameras are kept as they are (viewers see no gap), new
    /// ones added, changed ones restarted and removed ones stopped (their viewers are closed).
    pub fn apply(&self, configs: &[Arc<CameraConfig>]) -> Reloaded {
        let mut result = Reloaded::default();
        let mut cameras = self.cameras.write().unwrap();
        let mut next = Vec::with_capacity(configs.len());
        for config in configs {
            match cameras.iter().find(|c| c.id() == config.id) {
                Some(old) if **old.shared_config() == **config => {
                    result.kept += 1;
                    next.push(old.clone());
                }
                found => {
                    let camera = self.build(config);
                    if let Some(old) = found {
                        old.kill();
                        camera.replaces(old);
                        result.restarted += 1;
                    } else {
                        result.added += 1;
                    }
                    result.started.push(camera.clone());
                    next.push(camera);
                }
            }
        }
        for old in cameras.iter() {
            if !configs.iter().any(|c| c.id == old.id()) {
                old.kill();
                result.removed.push(old.id().to_string());
            }
        }
        *cameras = next;
        result
    }

    /// Stop every pump and wait (at most `limit`) for their upstreams to close.
    pub async fn shutdown(&self, limit: Duration) -> bool {
        self.shutdown.cancel();
        for c in self.cameras() {
            c.kill();
        }
        self.tracker.close();
        timeout(limit, self.tracker.wait()).await.is_ok()
    }
}
