//! Sources: where a camera's frames come from. One file per kind; the pump only sees the traits.
//!
//! A [`Source`] is built once per camera from its [`SourceSpec`] (the kind, with options typed for
//! that kind) and a small [`Common`] part; sources never see the configuration file's structures.
//! Each [`Source::open`] creates one [`Upstream`] (one open camera / connection / child process).
//! The pump guarantees that at most one upstream per camera exists at any moment and always awaits
//! [`Upstream::close`].

pub mod bambu;
pub mod coded;
pub mod demand;
pub mod ffmpeg;
pub mod process;
pub mod raw;
pub mod test_pattern;
pub mod v4l2;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::frame::{Captured, Size};
use crate::media::orientation::Orientation;

pub use bambu::BambuSpec;
pub use demand::{Demand, DemandRx, Want};
pub use ffmpeg::{FfmpegInput, FfmpegOptions};
pub use test_pattern::TestPattern;
pub use v4l2::V4l2Options;

/// What every source may use of its camera, whatever its kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Common {
    pub id: String,
    /// Shown on the test pattern.
    pub name: String,
    /// Asked of the camera (or scaled to); `None`: the camera's own.
    pub size: Option<Size>,
    /// Asked of the camera (or limited to); `None`: the camera's own.
    pub fps: Option<u32>,
    /// How long the upstream may deliver nothing before it counts as failed.
    pub stall_timeout: Duration,
    /// Frames larger than this are dropped (and counted) by sources that cut a byte stream.
    pub max_frame_size: usize,
    /// How the camera is mounted: sources that encode turn their pictures before encoding.
    pub orientation: Orientation,
}

/// The `source = "..."` of a camera, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceSpec {
    /// `test:` — the built-in moving test pattern.
    TestPattern,
    /// `test:offline` — a camera that never opens (shows the offline placeholder).
    TestOffline,
    /// `rtsp://`, `rtsps://`, `http(s)://`, `bambu-rtsps://` or `ffmpeg:ARGS`: a stream read by
    /// an ffmpeg child.
    Ffmpeg(FfmpegOptions),
    /// `bambu://bblp:CODE@IP`: a Bambu P1/A1 camera, natively (with its TLS settings).
    Bambu(BambuSpec),
    /// `v4l2:/dev/v4l/by-id/…` or `v4l2:/dev/videoN`: a USB (UVC) or other V4L2 camera.
    V4l2(V4l2Options),
}

impl SourceSpec {
    /// Parse a source string, with the kind's default options; the error is a one-line message
    /// naming the fix.
    pub fn parse(s: &str) -> Result<SourceSpec, String> {
        let s = s.trim();
        match s {
            "test:" | "test" => return Ok(SourceSpec::TestPattern),
            "test:offline" => return Ok(SourceSpec::TestOffline),
            _ => {}
        }
        if let Some(path) = s.strip_prefix("v4l2:") {
            return v4l2::parse(path).map(|p| SourceSpec::V4l2(V4l2Options::new(p)));
        }
        if let Some(bambu) = bambu::parse(s) {
            return bambu;
        }
        if let Some(input) = FfmpegInput::parse(s) {
            return input.map(|i| SourceSpec::Ffmpeg(FfmpegOptions::new(i)));
        }
        Err(format!(
            "{:?} is not a source farmcam knows; use \"rtsp://HOST/PATH\", \"rtsps://…\", \"http://HOST/…\", \
             \"bambu://bblp:CODE@IP\", \"bambu-rtsps://bblp:CODE@IP\", \"ffmpeg:-i INPUT\", \"v4l2:/dev/v4l/by-id/…\" (USB camera), \
             \"test:\" (built-in pattern) or \"test:offline\"",
            crate::util::redact::url(s)
        ))
    }

    /// The source as it may be shown in logs, status and errors: credentials removed.
    pub fn redacted(&self) -> String {
        match self {
            SourceSpec::TestPattern => "test:".into(),
            SourceSpec::TestOffline => "test:offline".into(),
            SourceSpec::Ffmpeg(o) => o.input.redacted(),
            SourceSpec::Bambu(b) => b.redacted(),
            SourceSpec::V4l2(o) => format!("v4l2:{}", o.path.display()),
        }
    }

    /// Why this camera's password would be visible to other local users (on ffmpeg's command
    /// line), if it would.
    pub fn exposure(&self) -> Option<&'static str> {
        match self {
            SourceSpec::Ffmpeg(o) if o.exposes_secret() => Some(
                "the password in its ffmpeg: arguments stands on ffmpeg's command line, which every local user can read (ps); use an rtsp:// or http:// source, whose credentials farmcam hands to ffmpeg in a private file",
            ),
            _ => None,
        }
    }

    /// Whether frames come through an ffmpeg child.
    pub fn uses_ffmpeg(&self) -> bool {
        matches!(self, SourceSpec::Ffmpeg(_))
    }

    /// Whether the camera may send coded video (H.264/H.265) itself, for consumers to take as it
    /// is: cameras read through ffmpeg or farmcam's RTSP client, V4L2 cameras with
    /// `format = "h264"`.
    pub fn sends_own_video(&self) -> bool {
        match self {
            SourceSpec::Ffmpeg(_) => true,
            SourceSpec::V4l2(o) => o.format == v4l2::PixelFormat::H264,
            _ => false,
        }
    }

    /// What the `source` key names, for messages ("only applies to …").
    pub fn kind(&self) -> &'static str {
        match self {
            SourceSpec::TestPattern | SourceSpec::TestOffline => "test",
            SourceSpec::Ffmpeg(_) => "ffmpeg",
            SourceSpec::Bambu(_) => "bambu",
            SourceSpec::V4l2(_) => "v4l2",
        }
    }
}

/// Why an upstream could not be opened or stopped delivering. Messages never contain secrets.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("cannot open: {0}")]
    Open(String),
    #[error("stream failed: {0}")]
    Failed(String),
    #[error("stream ended")]
    Ended,
}

/// What a source does for its consumers, for status and metrics: whether (and how much of) a
/// compressed stream it decodes, and how many JPEGs it encodes; and for H.264/H.265 cameras the
/// access units themselves, for consumers of coded video.
#[derive(Debug, Default)]
pub struct Work {
    /// The camera's access units as its connection yields them (H.264/H.265 cameras).
    pub units: coded::units::UnitFeed,
    /// The camera's raw pictures, for its H.264 encoder (sources whose pictures are raw).
    pub raw: raw::RawFeed,
    decoder: std::sync::atomic::AtomicU8,
    decoded_by: std::sync::atomic::AtomicU8,
    ingest: std::sync::atomic::AtomicU8,
    /// Measured time between keyframes (H.264/H.265 cameras), in milliseconds.
    pub keyframe_interval_ms: std::sync::atomic::AtomicU64,
    /// Pictures handed to a decoder.
    pub frames_decoded: std::sync::atomic::AtomicU64,
    /// Decoders started (a change of demand between keyframes and every picture, or of the rate,
    /// starts none).
    pub decoder_starts: std::sync::atomic::AtomicU64,
    /// JPEGs encoded (by farmcam or its decoder child).
    pub frames_encoded: std::sync::atomic::AtomicU64,
}

/// What the decoder of a camera that farmcam decodes is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DecoderMode {
    /// No decoder: nobody needs JPEG frames.
    Off,
    /// Only keyframes are decoded: every consumer is served by one frame per keyframe interval.
    Keyframes,
    /// Every picture is decoded; JPEGs are encoded only for the pictures consumers take.
    Full,
}

/// Who decodes an H.264/H.265 camera's pictures (`decoded_by` in `/api/cameras`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DecodedBy {
    /// The shared decoder helper: libavcodec in one process for every camera.
    Helper,
    /// A decoder child of the camera's own (an ffmpeg process).
    Ffmpeg,
}

/// What reads an H.264/H.265 camera's connection (`ingest` in `/api/cameras`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum IngestBy {
    /// An ffmpeg child copying the video (RTSPS, HTTP, `ffmpeg:`, and what farmcam's own client
    /// cannot read).
    Ffmpeg,
    /// farmcam's own RTSP client (plain `rtsp://`).
    Farmcam,
}

impl Work {
    /// What reads the camera's connection now (`None`: not connected, or not H.264/H.265).
    pub fn ingest(&self) -> Option<IngestBy> {
        match self.ingest.load(std::sync::atomic::Ordering::Relaxed) {
            1 => Some(IngestBy::Ffmpeg),
            2 => Some(IngestBy::Farmcam),
            _ => None,
        }
    }

    pub fn set_ingest(&self, by: Option<IngestBy>) {
        let v = match by {
            None => 0,
            Some(IngestBy::Ffmpeg) => 1,
            Some(IngestBy::Farmcam) => 2,
        };
        self.ingest.store(v, std::sync::atomic::Ordering::Relaxed);
    }

    /// Who decodes now (`None`: no decoder is running).
    pub fn decoded_by(&self) -> Option<DecodedBy> {
        match self.decoded_by.load(std::sync::atomic::Ordering::Relaxed) {
            1 => Some(DecodedBy::Helper),
            2 => Some(DecodedBy::Ffmpeg),
            _ => None,
        }
    }

    pub fn set_decoded_by(&self, by: Option<DecodedBy>) {
        let v = match by {
            None => 0,
            Some(DecodedBy::Helper) => 1,
            Some(DecodedBy::Ffmpeg) => 2,
        };
        self.decoded_by.store(v, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn decoder(&self) -> Option<DecoderMode> {
        match self.decoder.load(std::sync::atomic::Ordering::Relaxed) {
            1 => Some(DecoderMode::Off),
            2 => Some(DecoderMode::Keyframes),
            3 => Some(DecoderMode::Full),
            _ => None,
        }
    }

    pub fn set_decoder(&self, mode: Option<DecoderMode>) {
        let v = match mode {
            None => 0,
            Some(DecoderMode::Off) => 1,
            Some(DecoderMode::Keyframes) => 2,
            Some(DecoderMode::Full) => 3,
        };
        self.decoder.store(v, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Opens upstreams for one camera.
#[async_trait]
pub trait Source: Send + Sync + 'static {
    /// Open the camera; `demand` says (and keeps saying) what its consumers need.
    async fn open(&self, demand: DemandRx) -> Result<Box<dyn Upstream>, SourceError>;
    /// What this source decodes and encodes (None: it only passes frames through).
    fn work(&self) -> Option<&Work> {
        None
    }
    /// Whether an open upstream with nobody to serve costs next to nothing (an H.264 camera
    /// whose video is only copied), so that keeping it open for a consumer that comes back
    /// periodically is cheaper than reconnecting each time.
    fn cheap_to_keep(&self) -> bool {
        false
    }
}

/// One open upstream: frames until it fails or ends; then the pump calls `close`.
#[async_trait]
pub trait Upstream: Send {
    async fn next_frame(&mut self) -> Result<Captured, SourceError>;
    /// Broken frames dropped since the last call (truncated, oversized, invalid).
    fn take_invalid(&mut self) -> u64 {
        0
    }
    /// Release the camera. Must finish in bounded time; the next upstream waits for it.
    async fn close(self: Box<Self>) {}
    /// Whether the upstream detects a stalled camera itself (it may rightly deliver no frame
    /// for long when nobody needs one); otherwise the pump times out `next_frame`.
    fn detects_stalls(&self) -> bool {
        false
    }
}

/// The source for a camera; H.264/H.265 cameras decode in `shared` (the daemon's decoder helper).
pub fn build(
    common: &Common,
    spec: &SourceSpec,
    shared: &Arc<coded::libav::SharedDecoder>,
) -> Arc<dyn Source> {
    match spec {
        SourceSpec::TestPattern => Arc::new(TestPattern::new(common)),
        SourceSpec::TestOffline => Arc::new(Offline),
        SourceSpec::Ffmpeg(o) => Arc::new(ffmpeg::FfmpegSource::new(common, o.clone(), shared.clone())),
        SourceSpec::Bambu(spec) => Arc::new(bambu::BambuSource::new(common, spec.clone())),
        SourceSpec::V4l2(o) => Arc::new(v4l2::V4l2Source::new(common, o.clone(), shared.clone())),
    }
}

/// `test:offline`.
struct Offline;

#[async_trait]
impl Source for Offline {
    async fn open(&self, _: DemandRx) -> Result<Box<dyn Upstream>, SourceError> {
        Err(SourceError::Open("test:offline never delivers frames".into()))
    }
}
