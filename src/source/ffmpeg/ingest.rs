//! The upstream of an H.264 or H.265 camera: ffmpeg copies the camera's video to farmcam (or
//! farmcam's own RTSP client reads it, [`Connection`]), which cuts it into access units, keeps
//! the current group of pictures (in [`crate::source::coded::units`]), and feeds a decoder (the shared
//! helper or a child of its own, [`super::decoding`]) only as much as the demand needs:
//!
//! - nobody needs JPEG frames: no decoder at all (the camera connection is kept for the idle
//!   grace; copying costs almost nothing);
//! - every consumer is served by one frame per keyframe interval (wall tiles, MQTT, `?fps=1`):
//!   only keyframes are fed to the decoder;
//! - more: every unit is fed.
//!
//! The decoder gives raw pictures and farmcam encodes (libjpeg-turbo) only those the demand
//! takes, so one decoder serves every change of rate and mode without a restart: going from
//! keyframes to every picture replays the kept group into it (the replayed pictures are not
//! encoded, but the last, which is the current one), so full rate starts at once, not at the
//! next keyframe. The decoder is restarted only when it dies or the stream's parameters change;
//! the camera connection is never reopened for it.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use tokio::io::AsyncReadExt;
use tokio::task::JoinSet;
use tokio::time::{sleep_until, Instant, Sleep};
use tracing::{debug, info, warn};

use super::args::DecoderPlan;
use super::decoder::Decoder;
use super::decoding::Decoding;
use super::mjpeg::READ_CHUNK;
use crate::frame::{Captured, Size};
use crate::media::h264::{decodable_alone, AccessUnit, AuSplitter, Codec};
use crate::source::coded::picture::Picture;
use crate::source::coded::rtsp_client::RtspClient;
use crate::source::process::child::{Chatter, Ffmpeg};
use crate::source::{DecoderMode, Demand, DemandRx, SourceError, Upstream, Work};
use crate::util::backoff::Backoff;

/// A fresh connection may take this long (or the stall timeout, if longer) for its first unit.
const FIRST_UNIT_TIMEOUT: Duration = Duration::from_secs(15);
/// A decoder that exits this many times in a row without a picture fails the upstream.
const DECODER_TRIES: u32 = 3;
/// A decoder that ran this long was healthy: if it dies, it is restarted at once.
const DECODER_HEALTHY: Duration = Duration::from_secs(30);

/// How the decoders of one camera are made.
pub struct DecoderConfig {
    pub program: PathBuf,
    /// The daemon's shared decoder helper.
    pub shared: Arc<crate::source::coded::libav::SharedDecoder>,
    pub decoder: Option<String>,
    pub size: Option<Size>,
    pub quality: u8,
    pub zscale: bool,
    pub fps_mode_option: &'static str,
    pub max_frame: usize,
    /// In full mode a picture is encoded at least this often, whatever the rate asked for (a
    /// snapshot may come at any moment; the pump sees the camera alive).
    pub keepalive: Duration,
}

/// Where a camera's video comes from.
pub enum Connection {
    /// An ffmpeg child copying it (`-c:v copy`) to its stdout.
    Ffmpeg(Box<Ffmpeg>),
    /// farmcam's own RTSP client (plain `rtsp://` cameras).
    Rtsp(Box<RtspClient>),
    /// A device that yields whole access units (a USB camera that encodes H.264 itself).
    Device(Box<dyn UnitSource>),
}

/// A camera connection that yields whole access units itself (a V4L2 camera sending H.264).
#[async_trait]
pub trait UnitSource: Send {
    /// The next access units into `out` (cancel-safe); `Err(why)` once the camera ended.
    async fn next(&mut self, out: &mut Vec<AccessUnit>) -> Result<(), String>;
    /// Release the camera, in bounded time.
    async fn stop(&mut self);
}

impl Connection {
    /// The next access units into `out` (cancel-safe); `Err` once the video ended, with why
    /// when it is known without asking ffmpeg.
    async fn next(
        &mut self,
        splitter: &mut AuSplitter,
        buf: &mut [u8],
        out: &mut Vec<AccessUnit>,
    ) -> Result<Option<f64>, Option<String>> {
        match self {
            Connection::Ffmpeg(ff) => {
                let Some(stdout) = ff.stdout.as_mut() else {
                    return Err(None);
                };
                match stdout.read(buf).await {
                    Ok(n) if n > 0 => {
                        splitter.push(&buf[..n], out);
                        Ok(None)
                    }
                    _ => {
                        ff.stdout = None;
                        Err(None)
                    }
                }
            }
            Connection::Rtsp(c) => c.next(out).await.map(Some).map_err(Some),
            Connection::Device(d) => d.next(out).await.map(|()| None).map_err(Some),
        }
    }

    async fn exit_reason(&mut self) -> String {
        match self {
            Connection::Ffmpeg(ff) => ff.exit_reason().await,
            Connection::Rtsp(_) => "the camera's RTSP connection ended".into(),
            Connection::Device(_) => "the camera's video ended".into(),
        }
    }

    async fn stop(&mut self) {
        match self {
            Connection::Ffmpeg(ff) => ff.stop().await,
            Connection::Device(d) => d.stop().await,
            Connection::Rtsp(_) => {}
        }
    }
}

pub struct Ingest {
    camera: String,
    codec: Codec,
    conn: Connection,
    splitter: AuSplitter,
    buf: Box<[u8]>,
    last_keyframe: Option<Instant>,
    sps: Option<Bytes>,
    demand: DemandRx,
    config: DecoderConfig,
    chatter: Chatter,
    /// The running decoder, and what it is fed.
    decoder: Option<(Decoding, DecoderMode)>,
    /// The shared decoder could not decode this stream: this camera has a decoder child of its
    /// own from now on.
    shared_failed: bool,
    /// When the shared helper died (or hung) with this camera's units in flight, lately.
    helper_strikes: Vec<Instant>,
    /// The running decoder waits for a keyframe (it was behind, or started without one).
    resync: bool,
    /// When each unit fed to the running decoder and not yet decoded arrived, in order: its
    /// picture's capture time. `None`: a replayed unit whose picture is not encoded (of a replay,
    /// only the last, current, picture is).
    fed: VecDeque<Option<SystemTime>>,
    /// When the kept group's keyframe arrived.
    keyframe_at: Option<SystemTime>,
    /// When a JPEG was last encoded.
    last_encoded: Option<Instant>,
    /// Decoders that exited in a row without a picture.
    decoder_failures: u32,
    decoder_retry_at: Option<Instant>,
    /// The running decoder has produced a picture.
    decoder_produced: bool,
    /// When the running decoder started, and the pause before restarting one that died soon
    /// after it worked (a decoder dying after each picture is not restarted at once, forever).
    decoder_started: Instant,
    quick_exits: Backoff,
    /// Decoders being stopped in the background (awaited at close).
    stopping: JoinSet<()>,
    stall: Duration,
    /// The camera's stream ended (a file over HTTP, a closed connection): why. What the decoder
    /// still holds is delivered first.
    ended: Option<String>,
    last_unit: Option<Instant>,
    opened: Instant,
    last_picture: Instant,
    /// The loop's one timer, moved to its earliest deadline each time round (later, as a unit
    /// moves the stall deadline on, without touching the timer wheel).
    timer: Pin<Box<Sleep>>,
    work: Arc<Work>,
}

impl Ingest {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        camera: String,
        codec: Codec,
        conn: Connection,
        demand: DemandRx,
        config: DecoderConfig,
        chatter: Chatter,
        stall: Duration,
        work: Arc<Work>,
    ) -> Self {
        work.set_decoder(Some(DecoderMode::Off));
        let now = Instant::now();
        Ingest {
            camera,
            codec,
            conn,
            splitter: AuSplitter::new(codec, config.max_frame),
            buf: vec![0; READ_CHUNK].into_boxed_slice(),
            last_keyframe: None,
            sps: None,
            demand,
            config,
            chatter,
            decoder: None,
            shared_failed: false,
            helper_strikes: Vec::new(),
            resync: false,
            fed: VecDeque::new(),
            keyframe_at: None,
            last_encoded: None,
            decoder_failures: 0,
            decoder_retry_at: None,
            decoder_produced: false,
            decoder_started: Instant::now(),
            quick_exits: Backoff::default(),
            stopping: JoinSet::new(),
            stall,
            ended: None,
            last_unit: None,
            opened: now,
            last_picture: now,
            timer: Box::pin(sleep_until(now + stall)),
            work,
        }
    }

    fn keyframe_interval(&self) -> Option<Duration> {
        match self.work.keyframe_interval_ms.load(Relaxed) {
            0 => None,
            ms => Some(Duration::from_millis(ms)),
        }
    }

    /// What the decoder should be fed for the demand.
    fn wanted(&self, d: &Demand) -> DecoderMode {
        if !d.wants_pictures() {
            return DecoderMode::Off;
        }
        let interval = self.keyframe_interval().unwrap_or(Duration::from_secs(1));
        match d.rate {
            // One picture per keyframe interval serves everyone (a little slack for jitter).
            Some(r) if r * interval.as_secs_f64() <= 1.05 => DecoderMode::Keyframes,
            _ => DecoderMode::Full,
        }
    }

    /// Start or stop the decoder, or change what it is fed, to match the demand.
    fn apply_demand(&mut self) {
        while self.stopping.try_join_next().is_some() {}
        let demand = *self.demand.borrow_and_update();
        let want = self.wanted(&demand);
        match self.decoder.as_mut() {
            None if want == DecoderMode::Off => {}
            None => {
                if self.decoder_retry_at.is_none_or(|t| Instant::now() >= t) {
                    self.start_decoder(want);
                }
            }
            Some(_) if want == DecoderMode::Off => self.stop_decoder(),
            Some((_, mode)) if *mode == want => {}
            Some((_, mode)) => {
                *mode = want;
                self.work.set_decoder(Some(want));
                debug!(camera = %self.camera, "decoder: now fed {want:?}");
                if want == DecoderMode::Full && !self.resync {
                    // A decoder child has the group's keyframe: the rest brings it to the current
                    // picture. The shared helper decoded it with a spare decoder and kept
                    // nothing: it gets the keyframe again.
                    let keeps = self.decoder.as_ref().is_some_and(|(d, _)| d.keeps_keyframes());
                    self.replay(if keeps { 1 } else { 0 });
                }
            }
        }
    }

    fn stop_decoder(&mut self) {
        if let Some((d, _)) = self.decoder.take() {
            self.stopping.spawn(d.stop());
        }
        self.work.set_decoder(Some(DecoderMode::Off));
        self.work.set_decoded_by(None);
    }

    /// The shared decoder helper, unless this camera needs ffmpeg's: another decoder
    /// (`decoder`), a `size` (ffmpeg's scaler), or the helper failed on this stream.
    fn open_decoder(&mut self) -> Result<Decoding, String> {
        let own = self.config.decoder.is_some() || self.config.size.is_some() || self.shared_failed;
        if !own {
            match self.config.shared.open(self.codec == Codec::H265) {
                Ok(s) => return Ok(Decoding::Shared(s)),
                Err(e) => self.shared_failing(&e),
            }
        }
        let args = DecoderPlan {
            codec: self.codec,
            decoder: self.config.decoder.as_deref(),
            size: self.config.size,
            zscale: self.config.zscale,
            fps_mode_option: self.config.fps_mode_option,
        }
        .args();
        debug!(camera = %self.camera, "decoder: {}", args.join(" "));
        Decoder::start(&self.config.program, &args, &self.chatter).map(|d| Decoding::Own(Box::new(d)))
    }

    fn shared_failing(&mut self, why: &str) {
        warn!(camera = %self.camera, "{why}: decoding this camera with ffmpeg instead");
        self.shared_failed = true;
    }

    fn start_decoder(&mut self, mode: DecoderMode) {
        match self.open_decoder() {
            Ok(d) => {
                debug!(camera = %self.camera, "decoder ({mode:?}): {:?}", d.by());
                self.work.set_decoded_by(Some(d.by()));
                self.decoder = Some((d, mode));
                self.work.decoder_starts.fetch_add(1, Relaxed);
                self.decoder_produced = false;
                self.decoder_started = Instant::now();
                self.work.set_decoder(Some(mode));
                self.last_picture = Instant::now();
                self.fed.clear();
                // Start from the kept keyframe (a newcomer gets a picture at once), in full mode
                // with the rest of its group (the current picture at once, every one after it).
                self.resync = true;
                match mode {
                    DecoderMode::Full => self.replay(0),
                    _ => self.feed_keyframe(),
                }
            }
            Err(e) => {
                warn!(camera = %self.camera, "{e}");
                self.decoder_failed();
            }
        }
    }

    /// Feed the kept group from its unit `from` on, in one write: the decoder catches up to the
    /// current picture, and only that one of the replayed pictures is encoded.
    fn replay(&mut self, from: usize) {
        if self.decoder.is_none() {
            return;
        }
        let group = self.work.units.group();
        if !group.complete || group.units.len() <= from {
            // Nothing kept to replay (a group too long to keep): every picture from the next
            // keyframe on. A decoder starting has at least the keyframe.
            if from == 0 {
                self.feed_keyframe();
            }
            self.resync |= from > 0 && !group.complete;
            return;
        }
        let units: Vec<Bytes> = group.units[from..].iter().map(|u| u.au.data.clone()).collect();
        let Some((decoder, _)) = self.decoder.as_mut() else {
            return;
        };
        if decoder.feed(self.codec, &units, true) {
            self.resync = false;
            // Pictures of the replay that come back and are not encoded (the shared helper
            // sends only the last).
            let skipped = if decoder.returns_replayed() {
                units.len() - 1
            } else {
                0
            };
            self.fed.extend(std::iter::repeat_n(None, skipped));
            self.fed.push_back(Some(SystemTime::now()));
            self.work.frames_decoded.fetch_add(units.len() as u64, Relaxed);
        } else {
            self.resync = true;
        }
    }

    /// Feed the kept group's keyframe (a decoder starting: a picture at once, of when it arrived).
    fn feed_keyframe(&mut self) {
        if let Some(key) = self.work.units.group().units.first() {
            self.feed(&key.au.clone(), self.keyframe_at.unwrap_or_else(SystemTime::now));
        }
    }

    /// Hand one unit, which arrived `at`, to the running decoder, as its mode wants.
    fn feed(&mut self, unit: &AccessUnit, at: SystemTime) {
        let Some((decoder, mode)) = self.decoder.as_mut() else {
            return;
        };
        if self.resync && !unit.keyframe {
            return;
        }
        if *mode == DecoderMode::Off || (*mode == DecoderMode::Keyframes && !unit.keyframe) {
            return;
        }
        // Keyframes only: each keyframe stands alone, so the helper needs no decoder of this
        // camera's between them.
        let fed = if *mode == DecoderMode::Keyframes && decodable_alone(self.codec, unit) {
            decoder.feed_alone(self.codec, &unit.data)
        } else {
            decoder.feed(self.codec, std::slice::from_ref(&unit.data), false)
        };
        if fed {
            self.resync = false;
            self.fed.push_back(Some(at));
            self.work.frames_decoded.fetch_add(1, Relaxed);
        } else {
            debug!(camera = %self.camera, "the decoder is behind: waiting for the next keyframe");
            self.resync = true;
        }
    }

    fn decoder_failed(&mut self) {
        self.decoder_failures += 1;
        let delay = Duration::from_millis(500) * self.decoder_failures;
        self.decoder_retry_at = Some(Instant::now() + delay);
    }

    /// A unit from the camera: keep the group, measure the keyframe interval, feed the decoder.
    fn unit(&mut self, unit: AccessUnit, camera_time: Option<f64>) {
        let now = Instant::now();
        let arrived = SystemTime::now();
        self.last_unit = Some(now);
        // Coded-video consumers (WebRTC, RTSP) get every unit as the camera sent it; the group
        // kept there is what a decoder starts from.
        self.work.units.publish_timed(self.codec, &unit, camera_time);
        if !unit.keyframe {
            self.feed(&unit, arrived);
            return;
        }
        if let Some(prev) = self.last_keyframe.replace(now) {
            let ms = (now - prev).as_millis().max(1) as u64;
            self.work.keyframe_interval_ms.store(ms, Relaxed);
        }
        if unit.sps.is_some() {
            self.keyframe_at = Some(arrived);
        }
        let changed = unit
            .sps
            .as_ref()
            .is_some_and(|sps| self.sps.as_ref().is_some_and(|old| old != sps));
        if unit.sps.is_some() {
            self.sps = unit.sps.clone();
        }
        match self.decoder.as_ref().map(|(_, m)| *m) {
            Some(mode) if changed => {
                info!(camera = %self.camera, "the camera changed its stream parameters (resolution?): restarting the decoder");
                self.stop_decoder();
                // Starts from this keyframe.
                self.start_decoder(mode);
            }
            _ => self.feed(&unit, arrived),
        }
    }

    /// When the camera must have sent something by.
    fn unit_deadline(&self) -> Instant {
        match self.last_unit {
            Some(t) => t + self.stall,
            None => self.opened + self.stall.max(FIRST_UNIT_TIMEOUT),
        }
    }

    /// When a running decoder must have produced a picture by: a few keyframe intervals.
    fn picture_deadline(&self) -> Option<Instant> {
        self.decoder.as_ref()?;
        let interval = self.keyframe_interval().unwrap_or(Duration::from_secs(1));
        let patience = (interval * 3).max(self.stall).max(FIRST_UNIT_TIMEOUT);
        Some(self.last_picture + patience)
    }

    /// A picture from the decoder: a JPEG for the pump if the demand takes it (encoded off the
    /// async threads), else `None`.
    async fn picture(&mut self, p: Picture) -> Option<Captured> {
        self.decoder_failures = 0;
        self.decoder_retry_at = None;
        self.decoder_produced = true;
        self.last_picture = Instant::now();
        // A picture the decoder made of nothing farmcam counted (it should not happen) is
        // taken as of now.
        let captured_at = match self.fed.pop_front() {
            Some(None) => return None,
            Some(Some(t)) => t,
            None => SystemTime::now(),
        };
        let full = matches!(self.decoder, Some((_, DecoderMode::Full)));
        let since = self.last_encoded.map_or(Duration::MAX, |t| t.elapsed());
        // Keyframes mode: one picture per keyframe interval, each taken.
        if full && !self.demand.borrow().wants_frame(since, self.config.keepalive) {
            return None;
        }
        self.last_encoded = Some(Instant::now());
        let quality = self.config.quality;
        let size = p.size;
        match tokio::task::spawn_blocking(move || p.encode(quality)).await {
            Ok(Ok(jpeg)) => {
                self.work.frames_encoded.fetch_add(1, Relaxed);
                Some(Captured {
                    jpeg: Bytes::from(jpeg),
                    width: size.width,
                    height: size.height,
                    captured_at,
                    oriented: false,
                })
            }
            Ok(Err(e)) => {
                debug!(camera = %self.camera, "a decoded picture could not be encoded: {e}");
                None
            }
            Err(_) => None,
        }
    }

    /// The running decoder exited: restart it at once if it had been working for a while, after
    /// a growing pause if it died soon after it worked, else retry a few times with a pause;
    /// then the upstream fails.
    async fn decoder_exited(&mut self) -> Result<(), SourceError> {
        let Some((mut d, mode)) = self.decoder.take() else {
            return Ok(());
        };
        let why = d.exit_reason().await;
        let mut refused = d.refused();
        if d.suspect() {
            // A stream that crashes libavcodec crashes it each time it is fed: after a few
            // deaths with this camera's units in flight, it gets a decoder of its own.
            self.helper_strikes
                .retain(|t| t.elapsed() < Duration::from_secs(600));
            self.helper_strikes.push(Instant::now());
            if self.helper_strikes.len() >= crate::source::coded::libav::STRIKES {
                refused = true;
            }
        }
        self.stopping.spawn(d.stop());
        self.work.set_decoder(Some(DecoderMode::Off));
        self.work.set_decoded_by(None);
        if refused && !self.shared_failed {
            // The helper could not decode this stream (a pixel format it does not convert, a
            // decoder that hung, or repeated deaths while decoding it): ffmpeg's decoder, at once.
            let why = if self.helper_strikes.len() >= crate::source::coded::libav::STRIKES {
                format!(
                    "the decoder helper ended {} times in 10 minutes while decoding this camera (last: {why})",
                    self.helper_strikes.len()
                )
            } else {
                why
            };
            self.shared_failing(&why);
            self.start_decoder(mode);
            return Ok(());
        }
        if self.decoder_produced {
            if self.decoder_started.elapsed() >= DECODER_HEALTHY {
                self.quick_exits.reset();
                warn!(camera = %self.camera, "{why}: restarting the decoder (the camera stays connected)");
                self.start_decoder(mode);
            } else {
                let pause = self.quick_exits.next_delay();
                warn!(camera = %self.camera, "{why}: the decoder died soon after it started; restarting it in {pause:.1?} (the camera stays connected)");
                self.decoder_retry_at = Some(Instant::now() + pause);
            }
            return Ok(());
        }
        self.decoder_failed();
        if self.decoder_failures >= DECODER_TRIES {
            return Err(SourceError::Failed(why));
        }
        debug!(camera = %self.camera, "{why}; trying again");
        Ok(())
    }
}

/// What woke the ingest loop.
enum Event {
    /// Units read, with the camera's time of them where its connection tells it.
    Units(Result<Option<f64>, Option<String>>),
    Picture(Option<Picture>),
    Demand,
    NoUnit,
    NoPicture,
    Retry,
    Mismatch,
}

#[async_trait]
impl Upstream for Ingest {
    async fn next_frame(&mut self) -> Result<Captured, SourceError> {
        loop {
            if let Some(why) = self.ended.clone() {
                return match self.decoder.as_mut() {
                    Some((d, _)) => match tokio::time::timeout(self.stall, d.next()).await {
                        Ok(Some(p)) => match self.picture(p).await {
                            Some(c) => Ok(c),
                            None => continue,
                        },
                        _ => {
                            self.stop_decoder();
                            Err(SourceError::Failed(why))
                        }
                    },
                    None => Err(SourceError::Failed(why)),
                };
            }
            self.apply_demand();
            let unit_deadline = self.unit_deadline();
            let picture_deadline = self.picture_deadline();
            let retry_at = self.decoder_retry_at.filter(|_| self.decoder.is_none());
            let mismatch = match &self.conn {
                Connection::Ffmpeg(ff) => Some(ff.mismatch.clone()),
                Connection::Rtsp(_) | Connection::Device(_) => None,
            };
            let wake = [Some(unit_deadline), picture_deadline, retry_at]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(unit_deadline);
            self.timer.as_mut().reset(wake);
            let mut units = Vec::new();
            let event = {
                let timer = &mut self.timer;
                let conn = &mut self.conn;
                let splitter = &mut self.splitter;
                let buf = &mut self.buf;
                let units = &mut units;
                let decoder = self.decoder.as_mut().map(|(d, _)| d);
                let has_decoder = decoder.is_some();
                let demand = &mut self.demand;
                tokio::select! {
                    r = conn.next(splitter, buf, units) => Event::Units(r),
                    f = async { match decoder { Some(d) => d.next().await, None => std::future::pending().await } }, if has_decoder => Event::Picture(f),
                    _ = async { if demand.changed().await.is_err() { std::future::pending::<()>().await } } => Event::Demand,
                    _ = timer.as_mut() => {
                        let due = |t: Option<Instant>| t.is_some_and(|t| t <= Instant::now());
                        if due(retry_at) {
                            Event::Retry
                        } else if due(picture_deadline) {
                            Event::NoPicture
                        } else {
                            Event::NoUnit
                        }
                    }
                    _ = async { match &mismatch { Some(m) => m.cancelled().await, None => std::future::pending().await } } => Event::Mismatch,
                }
            };
            match event {
                Event::Units(Ok(camera_time)) => {
                    // The camera's time is of one picture: units cut from one frame share none.
                    let camera_time = camera_time.filter(|_| units.len() == 1);
                    for u in units {
                        self.unit(u, camera_time);
                    }
                }
                Event::Units(Err(why)) => {
                    let mut last = Vec::new();
                    self.splitter.finish(&mut last);
                    for u in last {
                        self.unit(u, None);
                    }
                    if let Some((d, _)) = self.decoder.as_mut() {
                        d.finish();
                    }
                    self.ended = Some(match why {
                        Some(why) => why,
                        None => self.conn.exit_reason().await,
                    });
                }
                Event::Picture(Some(p)) => {
                    if let Some(c) = self.picture(p).await {
                        return Ok(c);
                    }
                }
                Event::Picture(None) => self.decoder_exited().await?,
                Event::Demand => {}
                Event::Retry => self.decoder_retry_at = None,
                Event::NoUnit => {
                    return Err(SourceError::Failed(match self.last_unit {
                        Some(_) => format!("no video for {}", humantime::format_duration(self.stall)),
                        None => format!(
                            "no video within {}",
                            humantime::format_duration(self.stall.max(FIRST_UNIT_TIMEOUT))
                        ),
                    }))
                }
                Event::NoPicture => {
                    return Err(SourceError::Failed(format!(
                        "the decoder produced no picture for {}s although video arrives",
                        (Instant::now() - self.last_picture).as_secs()
                    )))
                }
                Event::Mismatch => {
                    return Err(SourceError::Failed(
                        "the camera's video is not what ffmpeg was started for: restarting it".into(),
                    ))
                }
            }
        }
    }

    fn take_invalid(&mut self) -> u64 {
        0
    }

    fn detects_stalls(&self) -> bool {
        true
    }

    async fn close(mut self: Box<Self>) {
        self.work.units.reset();
        self.work.set_ingest(None);
        self.stop_decoder();
        self.conn.stop().await;
        while self.stopping.join_next().await.is_some() {}
    }
}
