//! One camera's capture pump: the only owner of "is this camera open?".
//!
//! A pump is created by the registry for the first consumer of an idle camera. It opens ONE
//! upstream and fans every frame out to all consumers through a bounded broadcast ring (a slow
//! consumer skips ahead, it never delays the others or grows memory). It keeps reopening with
//! backoff while consumers remain, sending a placeholder image while the upstream is down, and
//! closes the upstream `idle_grace` after the last consumer left. A stopped pump never accepts a
//! consumer again; the registry then starts a fresh one, which waits for this one's upstream to be
//! fully closed before opening its own.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use tokio::sync::{broadcast, watch, Notify};
use tokio::time::{sleep, timeout, Instant};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::config::CameraConfig;
use crate::events::{CameraState, EventBus, EventKind};
use crate::frame::{Captured, Frame, Size};
use crate::light::Light;
use crate::media::sizes::Sizes;
use crate::media::turn::Turner;
pub use crate::source::Want;
use crate::source::{Demand, Source, SourceError, Upstream};
use crate::util::backoff::Backoff;
use crate::util::log_limit::{held_back, LogLimit};

/// Frames kept in the fan-out ring: how far a consumer may fall behind before it skips ahead.
pub const RING: usize = 8;
/// How long a fresh pump waits for the previous upstream of its camera to close.
pub const PREVIOUS_CLOSE_WAIT: Duration = Duration::from_secs(10);
/// Bound on an upstream's close.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// A fresh upstream may take this long (or `stall_timeout`, if longer) for its first frame:
/// connecting, a TLS handshake with a slow printer, and waiting for an H.264 key frame.
pub const FIRST_FRAME_TIMEOUT: Duration = Duration::from_secs(15);
/// How often a running pump's supervisor shows it is responsive.
pub const HEARTBEAT: Duration = Duration::from_secs(1);
/// Placeholder rate while the upstream is down.
pub const PLACEHOLDER_EVERY: Duration = Duration::from_secs(1);
/// An upstream that delivered this long resets the backoff.
pub const HEALTHY_AFTER: Duration = Duration::from_secs(60);
/// A new viewer is given the latest frame only if it is at most one frame interval old (else
/// the next one, which a camera making frames on demand makes at once); after this long without
/// one, the latest after all (its `X-Timestamp` says how old it is).
pub const STALE_FIRST_FRAME_WAIT: Duration = Duration::from_secs(1);
/// A consumer coming back at most this often keeps a cheap camera open between its visits.
pub const KEEP_FOR_PERIODIC: Duration = Duration::from_secs(60);

/// Who is consuming frames: viewers are shown separately in status and events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConsumerKind {
    /// An HTTP (MJPEG) stream viewer.
    Viewer,
    /// A live viewer over WebRTC: takes the camera's coded video, not JPEG.
    WebRtc,
    /// An RTSP client (Home Assistant, Frigate, an NVR, VLC): coded video too. Not counted as a
    /// person watching; `Counts::rtsp_clients` counts them.
    Rtsp,
    Snapshot,
    Other,
}

impl ConsumerKind {
    /// Whether a person watches live (counted as a viewer, by kind).
    pub fn is_viewer(self) -> bool {
        matches!(self, ConsumerKind::Viewer | ConsumerKind::WebRtc)
    }

    /// What this kind of consumer needs unless it says more: viewers every frame, snapshots one.
    pub fn usual_want(self) -> Want {
        match self {
            ConsumerKind::Snapshot => Want::One,
            ConsumerKind::WebRtc | ConsumerKind::Rtsp => Want::Units,
            ConsumerKind::Viewer | ConsumerKind::Other => Want::Every,
        }
    }
}

/// Who is attached to a pump.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub consumers: usize,
    /// Live viewers, MJPEG and WebRTC.
    pub viewers: usize,
    /// Of those, the WebRTC ones.
    pub webrtc_viewers: usize,
    /// RTSP clients (consumers, not viewers).
    pub rtsp_clients: usize,
}

/// What lives as long as the camera, across pumps: counters, the last good frame, the placeholder.
pub struct CameraShared {
    pub config: Arc<CameraConfig>,
    pub events: Arc<EventBus>,
    pub upstream_opens: AtomicU64,
    pub frames_captured: AtomicU64,
    /// Frames the source dropped as broken: truncated, oversized, not a valid JPEG.
    pub frames_invalid: AtomicU64,
    /// Bytes handed to HTTP viewers and snapshot clients.
    pub bytes_sent: AtomicU64,
    /// Bytes sent to this camera's WebRTC viewers (media and control).
    pub webrtc_bytes_sent: AtomicU64,
    /// Bytes of RTP sent to this camera's RTSP clients.
    pub rtsp_bytes_sent: AtomicU64,
    /// Time to answer snapshot requests that got a frame.
    pub snapshot_latency: crate::util::histogram::Histogram,
    pub frames_delivered: AtomicU64,
    pub frames_skipped: AtomicU64,
    /// Frames per second measured over the last second, times 1000.
    pub fps_milli: AtomicU64,
    pub last_good: Mutex<Option<Frame>>,
    /// Why the upstream last failed (no secrets: sources redact their messages); cleared when
    /// frames flow again.
    pub last_error: Mutex<Option<String>>,
    /// The light switched with this camera's pumps.
    pub light: Option<Arc<Light>>,
    /// Turns frames as the camera is mounted, before they are shared.
    pub turner: Turner,
    /// The sizes consumers ask for.
    pub sizes: Arc<Sizes>,
    /// Consumers that come back periodically (MQTT snapshots), as they declared themselves.
    periodic: Mutex<Vec<(u64, Periodic)>>,
    next_periodic: AtomicU64,
    placeholder: OnceLock<Bytes>,
}

/// A consumer that takes a frame every `every` (MQTT snapshots, an uploader).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Periodic {
    pub who: &'static str,
    pub every: Duration,
}

impl std::fmt::Display for Periodic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} every {}", self.who, humantime::format_duration(self.every))
    }
}

/// A periodic consumer's declaration; dropping it withdraws it.
pub struct PeriodicGuard {
    shared: Arc<CameraShared>,
    id: u64,
}

impl Drop for PeriodicGuard {
    fn drop(&mut self) {
        self.shared
            .periodic
            .lock()
            .unwrap()
            .retain(|(id, _)| *id != self.id);
    }
}

impl CameraShared {
    pub fn new(config: Arc<CameraConfig>, events: Arc<EventBus>, light: Option<Arc<Light>>) -> Self {
        CameraShared {
            events,
            upstream_opens: AtomicU64::new(0),
            frames_captured: AtomicU64::new(0),
            frames_invalid: AtomicU64::new(0),
            bytes_sent: AtomicU64::new(0),
            webrtc_bytes_sent: AtomicU64::new(0),
            rtsp_bytes_sent: AtomicU64::new(0),
            snapshot_latency: Default::default(),
            frames_delivered: AtomicU64::new(0),
            frames_skipped: AtomicU64::new(0),
            fps_milli: AtomicU64::new(0),
            last_good: Mutex::new(None),
            last_error: Mutex::new(None),
            light,
            turner: Turner::new(&config.id, config.orientation),
            sizes: Arc::default(),
            periodic: Mutex::new(Vec::new()),
            next_periodic: AtomicU64::new(0),
            placeholder: OnceLock::new(),
            config,
        }
    }

    /// Declare a consumer that comes back every `every`, for as long as the guard lives: a cheap
    /// camera (see [`Source::cheap_to_keep`]) stays open between its visits, up to
    /// [`KEEP_FOR_PERIODIC`], instead of closing after `idle_grace` and reconnecting.
    pub fn expect_periodic(self: &Arc<Self>, periodic: Periodic) -> PeriodicGuard {
        let id = self.next_periodic.fetch_add(1, Relaxed);
        self.periodic.lock().unwrap().push((id, periodic));
        PeriodicGuard {
            shared: self.clone(),
            id,
        }
    }

    /// The most frequent periodic consumer that an idle camera is kept open for.
    fn keeps_open(&self) -> Option<Periodic> {
        let periodic = self.periodic.lock().unwrap();
        periodic
            .iter()
            .map(|(_, p)| *p)
            .filter(|p| p.every <= KEEP_FOR_PERIODIC)
            .min_by_key(|p| p.every)
    }

    /// The "<name> — offline" JPEG, rendered once.
    pub fn placeholder(&self) -> Bytes {
        self.placeholder
            .get_or_init(|| crate::media::render::placeholder(&self.config.name, self.placeholder_size()))
            .clone()
    }

    /// The size consumers get: the last frame's, else the configured one turned as the camera
    /// is mounted (None: not known before the first frame).
    pub fn output_size(&self) -> Option<Size> {
        let last = self.last_good.lock().unwrap();
        last.as_ref()
            .map(|f| Size {
                width: f.width,
                height: f.height,
            })
            .or_else(|| self.config.size.map(|s| self.turner.op().size(s)))
    }

    /// `size` turned as the camera is mounted (what a picture of that size is shown at).
    pub fn turned(&self, size: Size) -> Size {
        self.turner.op().size(size)
    }

    /// The size frames are shown at (the configured size, turned as the camera is mounted).
    pub fn placeholder_size(&self) -> Size {
        self.turner.op().size(self.config.size.unwrap_or(Size {
            width: 1280,
            height: 720,
        }))
    }
}

pub struct Pump {
    shared: Arc<CameraShared>,
    inner: Mutex<Inner>,
    tx: broadcast::Sender<Frame>,
    state: watch::Sender<CameraState>,
    /// Consumer count changed (wakes the idle watcher).
    changed: Notify,
    /// What the consumers need together, for the open upstream.
    demand: watch::Sender<Demand>,
    /// Forced end (shutdown, camera removed): consumers' `next()` returns `None`.
    kill: CancellationToken,
    /// Stop the upstream (idle, or killed). Child of `kill`.
    stop: CancellationToken,
    /// Cancelled once this pump's upstream, and every earlier one of the camera, is closed.
    closed: CancellationToken,
    beats: AtomicU64,
    /// The camera's source (its frame rate, for a new viewer's first frame).
    source: Arc<dyn Source>,
}

struct Inner {
    consumers: usize,
    /// What each attached consumer needs.
    wants: Vec<Want>,
    /// A snapshot was taken from this pump: snapshots come back (a wall tile every second,
    /// MQTT), so single frames stay wanted for the pump's life (the idle grace after the last
    /// consumer), and a decoding camera keeps its cheapest decoder rather than restarting it.
    snapshots: bool,
    /// Live viewers of either kind, and of those the WebRTC ones.
    viewers: usize,
    webrtc_viewers: usize,
    rtsp_clients: usize,
    latest: Option<Frame>,
    next_seq: u64,
    stopped: bool,
    retry_at: Option<Instant>,
    /// Nobody is attached, and the upstream is kept open for this periodic consumer.
    kept_for: Option<Periodic>,
}

impl Inner {
    fn demand(&self) -> Demand {
        if self.snapshots {
            Demand::expecting_snapshots(&self.wants)
        } else {
            Demand::of(&self.wants)
        }
    }
}

impl Pump {
    /// Start a pump for its first consumer (attached before anything runs, so even a pump that
    /// stops at once has it; its supervisor and idle watcher run on `tracker`). It opens its
    /// upstream only after `previous` (the camera's previous upstream's `closed`) fired, or after
    /// a bounded wait.
    pub fn start(
        shared: Arc<CameraShared>,
        source: Arc<dyn Source>,
        parent: &CancellationToken,
        previous: Option<CancellationToken>,
        tracker: &TaskTracker,
        first: ConsumerKind,
        want: Want,
    ) -> (Arc<Pump>, Subscription) {
        let kill = parent.child_token();
        let pump = Arc::new(Pump {
            stop: kill.child_token(),
            kill,
            closed: CancellationToken::new(),
            inner: Mutex::new(Inner {
                consumers: 0,
                wants: Vec::new(),
                snapshots: false,
                viewers: 0,
                webrtc_viewers: 0,
                rtsp_clients: 0,
                latest: None,
                next_seq: 1,
                stopped: false,
                retry_at: None,
                kept_for: None,
            }),
            tx: broadcast::channel(RING).0,
            state: watch::Sender::new(CameraState::Starting),
            changed: Notify::new(),
            demand: watch::Sender::new(Demand::of(&[])),
            beats: AtomicU64::new(0),
            source: source.clone(),
            shared,
        });
        info!(camera = %pump.id(), kind = "started", "pump started");
        pump.event(EventKind::Started, CameraState::Starting, 0);
        let sub = pump.attach(&mut pump.inner.lock().unwrap(), first, want);
        tracker.spawn(pump.clone().idle_watch(source.clone()));
        tracker.spawn(pump.clone().supervise_with_heartbeat(source, previous));
        (pump, sub)
    }

    fn id(&self) -> &str {
        &self.shared.config.id
    }

    fn event(&self, kind: EventKind, state: CameraState, viewers: usize) {
        self.shared.events.publish(self.id(), kind, state, viewers);
    }

    /// Attach a consumer, unless this pump has stopped (then the registry starts a fresh one).
    /// The consumer first receives the latest frame, then every later one.
    pub fn try_attach(self: &Arc<Self>, kind: ConsumerKind, want: Want) -> Option<Subscription> {
        let mut inner = self.inner.lock().unwrap();
        if inner.stopped {
            return None;
        }
        Some(self.attach(&mut inner, kind, want))
    }

    fn attach(self: &Arc<Self>, inner: &mut Inner, kind: ConsumerKind, want: Want) -> Subscription {
        inner.consumers += 1;
        inner.kept_for = None;
        inner.wants.push(want);
        inner.snapshots |= want == Want::One;
        self.demand.send_replace(inner.demand());
        inner.rtsp_clients += usize::from(kind == ConsumerKind::Rtsp);
        if kind.is_viewer() {
            inner.viewers += 1;
            inner.webrtc_viewers += usize::from(kind == ConsumerKind::WebRtc);
            self.event(EventKind::Viewers, *self.state.borrow(), inner.viewers);
        }
        self.changed.notify_one();
        // A viewer starts with a current picture: the latest frame if it is (or it is the
        // offline image), else the next one.
        let mut pending = inner.latest.clone();
        let mut stale = None;
        if matches!(want, Want::Every | Want::Rate(_)) {
            if let Some(f) = pending.take_if(|f| !f.placeholder && !self.current(f)) {
                stale = Some((f, Instant::now() + STALE_FIRST_FRAME_WAIT));
            }
        }
        Subscription {
            pump: self.clone(),
            rx: self.tx.subscribe(),
            pending,
            stale,
            kind,
            want,
            attached: true,
            last_seq: None,
            skipped: 0,
        }
    }

    /// Whether a frame is at most one frame interval old: the camera's rate as its video
    /// arrives (H.264/H.265), else its configured `fps`, else 10 fps.
    fn current(&self, f: &Frame) -> bool {
        let fps = self
            .source
            .work()
            .and_then(|w| w.units.rate())
            .or(self.shared.config.fps.map(f64::from))
            .filter(|r| *r >= 1.0)
            .unwrap_or(10.0);
        let age = SystemTime::now()
            .duration_since(f.captured_at)
            .unwrap_or_default();
        age.as_secs_f64() <= 1.0 / fps
    }

    pub fn is_stopped(&self) -> bool {
        self.inner.lock().unwrap().stopped
    }

    pub fn state(&self) -> CameraState {
        *self.state.borrow()
    }

    /// Who is attached now.
    pub fn counts(&self) -> Counts {
        let inner = self.inner.lock().unwrap();
        Counts {
            consumers: inner.consumers,
            viewers: inner.viewers,
            webrtc_viewers: inner.webrtc_viewers,
            rtsp_clients: inner.rtsp_clients,
        }
    }

    /// The periodic consumer the upstream is kept open for while nobody is attached.
    pub fn kept_for(&self) -> Option<Periodic> {
        self.inner.lock().unwrap().kept_for
    }

    /// When the next open attempt is due, while the upstream is down.
    pub fn retry_in(&self) -> Option<Duration> {
        self.inner
            .lock()
            .unwrap()
            .retry_at
            .map(|t| t.saturating_duration_since(Instant::now()))
    }

    /// Fires when this pump's upstream (and all earlier ones) are closed.
    pub fn closed(&self) -> CancellationToken {
        self.closed.clone()
    }

    /// Force the pump to end now (shutdown or camera removed); consumers are woken.
    pub fn kill(&self) {
        self.inner.lock().unwrap().stopped = true;
        self.kill.cancel();
    }

    fn set_state(&self, state: CameraState, kind: EventKind) {
        self.state.send_replace(state);
        let viewers = self.inner.lock().unwrap().viewers;
        self.event(kind, state, viewers);
    }

    fn publish(&self, jpeg: Bytes, width: u32, height: u32, captured_at: SystemTime, placeholder: bool) {
        let mut inner = self.inner.lock().unwrap();
        let frame = Frame {
            jpeg,
            seq: inner.next_seq,
            captured_at,
            width,
            height,
            placeholder,
        };
        inner.next_seq += 1;
        inner.latest = Some(frame.clone());
        // Sent under the lock: a consumer attaching concurrently gets this frame either as its
        // `latest` or from the ring, never both and never neither.
        let _ = self.tx.send(frame.clone());
        drop(inner);
        if !placeholder {
            self.shared.frames_captured.fetch_add(1, Relaxed);
            *self.shared.last_good.lock().unwrap() = Some(frame);
        }
    }

    fn publish_placeholder(&self) {
        let size = self.shared.placeholder_size();
        self.publish(
            self.shared.placeholder(),
            size.width,
            size.height,
            SystemTime::now(),
            true,
        );
    }

    /// Sends the placeholder about once per second, forever (used inside `select!`); the first
    /// after `delay`.
    async fn placeholders_after(&self, delay: Duration) {
        sleep(delay).await;
        self.placeholders().await
    }

    /// Sends the placeholder about once per second, forever (used inside `select!`).
    async fn placeholders(&self) {
        loop {
            self.publish_placeholder();
            sleep(PLACEHOLDER_EVERY).await;
        }
    }

    /// The supervisor, plus a heartbeat polled by the same task: if the supervisor ever blocks
    /// its thread, the beats stop, and the systemd watchdog stops being fed.
    async fn supervise_with_heartbeat(
        self: Arc<Self>,
        source: Arc<dyn Source>,
        previous: Option<CancellationToken>,
    ) {
        let beat = async {
            loop {
                sleep(HEARTBEAT).await;
                self.beats.fetch_add(1, Relaxed);
            }
        };
        tokio::select! {
            _ = self.clone().supervise(source, previous) => {}
            _ = beat => unreachable!("the heartbeat never ends"),
        }
    }

    /// Heartbeats so far (one per [`HEARTBEAT`] while the supervisor task is responsive).
    pub fn beats(&self) -> u64 {
        self.beats.load(Relaxed)
    }

    async fn supervise(self: Arc<Self>, source: Arc<dyn Source>, previous: Option<CancellationToken>) {
        if let Some(prev) = &previous {
            // Devices and printers allow one handle: never open before the previous one closed.
            if timeout(PREVIOUS_CLOSE_WAIT, prev.cancelled()).await.is_err() {
                warn!(camera = %self.id(), "previous upstream did not close within {PREVIOUS_CLOSE_WAIT:?}; opening anyway");
            }
        }
        let reason = self.run(source).await;
        {
            let mut inner = self.inner.lock().unwrap();
            inner.stopped = true;
            inner.retry_at = None;
        }
        self.shared.fps_milli.store(0, Relaxed);
        self.state.send_replace(CameraState::Idle);
        info!(camera = %self.id(), kind = "stopped", "pump stopped: {reason}");
        self.event(EventKind::Stopped, CameraState::Idle, 0);
        self.closed.cancel();
    }

    /// Open, pump, reopen with backoff, until stopped. Returns why it stopped.
    async fn run(&self, source: Arc<dyn Source>) -> &'static str {
        let mut backoff = Backoff::default();
        let mut failures = FailureLog::default();
        loop {
            if self.stop.is_cancelled() {
                return self.stop_reason();
            }
            // While a camera is slow to open, viewers see the offline image at once if it was
            // already down, and after a second if it is starting (not a blank wait of up to
            // FIRST_FRAME_TIMEOUT).
            let wait = self.placeholder_wait();
            self.shared.upstream_opens.fetch_add(1, Relaxed);
            let started = Instant::now();
            let opened = tokio::select! {
                biased;
                _ = self.stop.cancelled() => return self.stop_reason(),
                r = source.open(self.demand.subscribe()) => r,
                _ = self.placeholders_after(wait.saturating_sub(started.elapsed())) => unreachable!("placeholders never ends"),
            };
            let result = match opened {
                Ok(upstream) => {
                    debug!(camera = %self.id(), "upstream opened in {:?}", started.elapsed());
                    let units = source.work().map(|w| w.units.watch_codec());
                    let (result, healthy) = self.pump_frames(upstream, units).await;
                    if healthy {
                        backoff.reset();
                    }
                    match result {
                        None => return self.stop_reason(),
                        Some(err) => err,
                    }
                }
                Err(e) => e,
            };
            // The upstream is down: tell consumers at once, then retry with backoff.
            let delay = backoff.next_delay();
            failures.log(self.id(), &result, delay);
            *self.shared.last_error.lock().unwrap() = Some(result.to_string());
            self.shared.fps_milli.store(0, Relaxed);
            if self.state() != CameraState::Offline {
                self.set_state(CameraState::Offline, EventKind::Offline);
            }
            self.inner.lock().unwrap().retry_at = Some(Instant::now() + delay);
            tokio::select! {
                biased;
                _ = self.stop.cancelled() => return self.stop_reason(),
                _ = sleep(delay) => {}
                _ = self.placeholders() => unreachable!("placeholders never ends"),
            }
            self.inner.lock().unwrap().retry_at = None;
        }
    }

    /// How long consumers wait for a frame before the placeholder: none for a camera that is
    /// down, [`PLACEHOLDER_EVERY`] for one starting.
    fn placeholder_wait(&self) -> Duration {
        if self.state() == CameraState::Offline {
            Duration::ZERO
        } else {
            PLACEHOLDER_EVERY
        }
    }

    fn stop_reason(&self) -> &'static str {
        if self.kill.is_cancelled() {
            "shutting down"
        } else {
            "idle"
        }
    }

    /// Deliver frames from one upstream until it fails (Some(error)) or the pump stops (None).
    /// The upstream is always closed (bounded) before returning. Also says whether it was healthy
    /// long enough to reset the backoff. For a camera whose coded video is taken as it is
    /// (`units`), that video flowing makes it live too: a camera watched only over WebRTC
    /// decodes nothing, so no frame ever says so.
    async fn pump_frames(
        &self,
        mut upstream: Box<dyn Upstream>,
        mut units: Option<watch::Receiver<Option<crate::media::h264::Codec>>>,
    ) -> (Option<SourceError>, bool) {
        let stall = self.shared.config.stall_timeout;
        let mut first_frame: Option<Instant> = None;
        let mut window = (Instant::now(), 0u64);
        // Sources such as ffmpeg connect after `open`: while the camera waits for its first
        // frame, viewers get the placeholder (at once if it was down, else after a second).
        let wait = self.placeholder_wait();
        let opened = Instant::now();
        // An upstream that may rightly send nothing for long (nobody needs frames) watches for
        // stalls itself.
        let self_timed = upstream.detects_stalls();
        let limit = |first: bool| match (self_timed, first) {
            (true, _) => Duration::MAX,
            (false, true) => stall,
            (false, false) => stall.max(FIRST_FRAME_TIMEOUT),
        };
        let mut live_at: Option<Instant> = None;
        let result = loop {
            let next = tokio::select! {
                biased;
                _ = self.stop.cancelled() => break None,
                r = timeout(limit(first_frame.is_some()), upstream.next_frame()) => r,
                Some(()) = units_flow(&mut units), if live_at.is_none() => {
                    live_at = Some(Instant::now());
                    info!(camera = %self.id(), kind = "live", "live: coded video flows");
                    *self.shared.last_error.lock().unwrap() = None;
                    self.set_state(CameraState::Live, EventKind::Live);
                    continue;
                }
                _ = self.placeholders_after(wait.saturating_sub(opened.elapsed())), if live_at.is_none() => unreachable!("placeholders never ends"),
            };
            let invalid = upstream.take_invalid();
            if invalid > 0 {
                self.shared.frames_invalid.fetch_add(invalid, Relaxed);
            }
            let next = match next {
                Ok(Ok(c)) if self.shared.turner.needed(&c) => match self.turn(c).await {
                    Some(c) => Ok(Ok(c)),
                    None => continue,
                },
                other => other,
            };
            match next {
                Ok(Ok(Captured {
                    jpeg,
                    width,
                    height,
                    captured_at,
                    ..
                })) => {
                    self.publish(jpeg, width, height, captured_at, false);
                    if first_frame.is_none() {
                        first_frame = Some(Instant::now());
                        info!(camera = %self.id(), kind = "live", "live: {width}x{height}");
                        if live_at.replace(Instant::now()).is_none() {
                            *self.shared.last_error.lock().unwrap() = None;
                            self.set_state(CameraState::Live, EventKind::Live);
                        }
                    }
                    window.1 += 1;
                    let elapsed = window.0.elapsed();
                    if elapsed >= Duration::from_secs(1) {
                        let fps = window.1 as f64 / elapsed.as_secs_f64();
                        self.shared.fps_milli.store((fps * 1000.0) as u64, Relaxed);
                        window = (Instant::now(), 0);
                    }
                }
                Ok(Err(e)) => break Some(e),
                Err(_) if first_frame.is_some() => {
                    break Some(SourceError::Failed(format!(
                        "no frame for {}",
                        humantime::format_duration(stall)
                    )))
                }
                Err(_) => {
                    break Some(SourceError::Failed(format!(
                        "no first frame within {}",
                        humantime::format_duration(stall.max(FIRST_FRAME_TIMEOUT))
                    )))
                }
            }
        };
        if timeout(CLOSE_TIMEOUT, upstream.close()).await.is_err() {
            warn!(camera = %self.id(), "upstream did not close within {CLOSE_TIMEOUT:?}");
        }
        let healthy = live_at.is_some_and(|t| t.elapsed() >= HEALTHY_AFTER);
        (result, healthy)
    }

    /// A frame turned as the camera is mounted (off the async threads); `None` (counted as
    /// invalid) when it is broken.
    async fn turn(&self, c: Captured) -> Option<Captured> {
        let shared = self.shared.clone();
        match tokio::task::spawn_blocking(move || shared.turner.turn(c)).await {
            Ok(Ok(c)) => Some(c),
            Ok(Err(e)) => {
                debug!(camera = %self.id(), "dropped a frame that cannot be turned: {e}");
                self.shared.frames_invalid.fetch_add(1, Relaxed);
                None
            }
            Err(_) => None,
        }
    }

    /// Stops the pump `idle_grace` after the consumer count dropped to zero; an arrival during the
    /// grace cancels the teardown. A cheap camera with a periodic consumer (MQTT every 10 s) is
    /// kept until a little after that consumer's next visit is due.
    async fn idle_watch(self: Arc<Self>, source: Arc<dyn Source>) {
        let idle_grace = self.shared.config.idle_grace;
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let idle = self.inner.lock().unwrap().consumers == 0;
            let periodic = self.shared.keeps_open().filter(|_| source.cheap_to_keep());
            // Its next visit may come a little late: a quarter of its period, at least 2 s.
            let kept = periodic
                .map(|p| p.every + (p.every / 4).max(Duration::from_secs(2)))
                .filter(|&k| k > idle_grace);
            let grace = kept.unwrap_or(idle_grace);
            if idle && kept.is_some() {
                self.inner.lock().unwrap().kept_for = periodic;
            }
            tokio::select! {
                _ = self.kill.cancelled() => return,
                _ = changed => continue,
                _ = sleep(grace), if idle => {
                    let mut inner = self.inner.lock().unwrap();
                    if inner.consumers == 0 {
                        inner.stopped = true;
                        inner.kept_for = None;
                        drop(inner);
                        debug!(camera = %self.id(), "idle for {grace:?}: stopping");
                        self.stop.cancel();
                        return;
                    }
                }
            }
        }
    }
}

/// Resolves once the camera's coded video flows (never, for a camera without any).
async fn units_flow(units: &mut Option<watch::Receiver<Option<crate::media::h264::Codec>>>) -> Option<()> {
    match units {
        Some(rx) => rx.wait_for(Option::is_some).await.ok().map(|_| ()),
        None => std::future::pending().await,
    }
}

/// A consumer's handle on a pump. Dropping it detaches.
pub struct Subscription {
    pump: Arc<Pump>,
    rx: broadcast::Receiver<Frame>,
    pending: Option<Frame>,
    /// The latest frame at attach time, too old to start a viewer with: given only if no newer
    /// one comes by the deadline.
    stale: Option<(Frame, Instant)>,
    kind: ConsumerKind,
    want: Want,
    attached: bool,
    last_seq: Option<u64>,
    skipped: u64,
}

impl Subscription {
    /// The next frame: first the latest one at attach time, then each new one in order. A consumer
    /// that fell more than [`RING`] frames behind skips to the newest (counted in `skipped`).
    /// `None` once the pump is killed (shutdown) or after `detach`.
    pub async fn next(&mut self) -> Option<Frame> {
        if !self.attached {
            return None;
        }
        if let Some(f) = self.pending.take() {
            return Some(self.seen(f));
        }
        loop {
            let stale_until = self.stale.as_ref().map(|(_, t)| *t);
            let r = tokio::select! {
                biased;
                _ = self.pump.kill.cancelled() => return None,
                r = self.rx.recv() => r,
                _ = tokio::time::sleep_until(stale_until.unwrap_or_else(Instant::now)), if stale_until.is_some() => {
                    let (f, _) = self.stale.take().expect("checked");
                    return Some(self.seen(f));
                }
            };
            self.stale = None;
            match r {
                Ok(f) => return Some(self.seen(f)),
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    let inner = self.pump.inner.lock().unwrap();
                    self.rx = self.pump.tx.subscribe();
                    let latest = inner.latest.clone();
                    drop(inner);
                    if let Some(f) = latest {
                        return Some(self.seen(f));
                    }
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }

    fn seen(&mut self, f: Frame) -> Frame {
        if let Some(last) = self.last_seq {
            let gap = f.seq.saturating_sub(last + 1);
            if gap > 0 {
                self.skipped += gap;
                self.pump.shared.frames_skipped.fetch_add(gap, Relaxed);
            }
        }
        self.last_seq = Some(f.seq);
        f
    }

    /// Frames this consumer missed because it fell behind.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// Count a frame as handed to the consumer's client (the stream may drop some for `?fps=`).
    pub fn delivered(&self) {
        self.pump.shared.frames_delivered.fetch_add(1, Relaxed);
    }

    pub fn state(&self) -> CameraState {
        self.pump.state()
    }

    /// When the pump retries its upstream, if it is down.
    pub fn retry_in(&self) -> Option<Duration> {
        self.pump.retry_in()
    }

    /// Leave the pump; returns the number of consumers that remain. Harmless to call twice.
    pub fn detach(&mut self) -> usize {
        let mut inner = self.pump.inner.lock().unwrap();
        if !self.attached {
            return inner.consumers;
        }
        self.attached = false;
        // A consumer stuck in a write (it never asked for the frames since) skipped them.
        if let (Some(last), Some(latest)) = (self.last_seq, &inner.latest) {
            let gap = latest.seq.saturating_sub(last);
            if gap > RING as u64 {
                self.skipped += gap;
                self.pump.shared.frames_skipped.fetch_add(gap, Relaxed);
            }
        }
        inner.consumers -= 1;
        if let Some(i) = inner.wants.iter().position(|w| *w == self.want) {
            inner.wants.swap_remove(i);
        }
        self.pump.demand.send_replace(inner.demand());
        inner.rtsp_clients -= usize::from(self.kind == ConsumerKind::Rtsp);
        if self.kind.is_viewer() {
            inner.viewers -= 1;
            inner.webrtc_viewers -= usize::from(self.kind == ConsumerKind::WebRtc);
            self.pump
                .event(EventKind::Viewers, *self.pump.state.borrow(), inner.viewers);
        }
        let remaining = inner.consumers;
        drop(inner);
        self.pump.changed.notify_one();
        remaining
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.detach();
    }
}

/// Upstream errors, rate-limited: a new message is logged at once, a repeated one once a minute.
#[derive(Default)]
struct FailureLog(LogLimit);

impl FailureLog {
    fn log(&mut self, camera: &str, err: &SourceError, retry: Duration) {
        let msg = err.to_string();
        match self.0.check(&msg) {
            None => debug!(camera, "upstream: {msg} (again; retrying in {retry:.1?})"),
            Some(n) => warn!(
                camera,
                kind = "offline",
                "upstream: {msg}{}; retrying in {retry:.1?}",
                held_back(n)
            ),
        }
    }
}
