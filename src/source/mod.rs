//! Sources: where a camera's frames come from. One file per kind; the pump only sees the traits.
//!
//! A [`Source`] is built once per camera from its configuration; each [`Source::open`] creates one
//! [`Upstream`] (one open camera / connection / child process). The pump guarantees that at most one
//! upstream per camera exists at any moment and always awaits [`Upstream::close`].

pub mod bambu;
pub mod ffmpeg;
mod test_pattern;
pub mod v4l2;

use std::sync::Arc;

use async_trait::async_trait;

use crate::config::CameraConfig;
use crate::frame::Captured;

pub use ffmpeg::FfmpegInput;
pub use test_pattern::TestPattern;

/// The `source = "..."` of a camera, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceSpec {
    /// `test:` — the built-in moving test pattern.
    TestPattern,
    /// `test:offline` — a camera that never opens (shows the offline placeholder).
    TestOffline,
    /// `rtsp://`, `rtsps://`, `http(s)://`, `bambu-rtsps://` or `ffmpeg:ARGS`: a stream read by
    /// an ffmpeg child.
    Ffmpeg(FfmpegInput),
    /// `bambu://bblp:CODE@IP`: a Bambu P1/A1 camera, natively.
    Bambu(bambu::BambuSpec),
    /// `v4l2:/dev/v4l/by-id/…` or `v4l2:/dev/videoN`: a USB (UVC) or other V4L2 camera.
    V4l2(std::path::PathBuf),
}

impl SourceSpec {
    /// Parse a source string; the error is a one-line message naming the fix.
    pub fn parse(s: &str) -> Result<SourceSpec, String> {
        let s = s.trim();
        match s {
            "test:" | "test" => return Ok(SourceSpec::TestPattern),
            "test:offline" => return Ok(SourceSpec::TestOffline),
            _ => {}
        }
        if let Some(path) = s.strip_prefix("v4l2:") {
            return v4l2::parse(path).map(SourceSpec::V4l2);
        }
        if let Some(bambu) = bambu::parse(s) {
            return bambu;
        }
        if let Some(input) = FfmpegInput::parse(s) {
            return input.map(SourceSpec::Ffmpeg);
        }
        Err(format!(
            "{:?} is not a source farmcam knows; use \"rtsp://HOST/PATH\", \"rtsps://…\", \"http://HOST/…\", \
             \"bambu://bblp:CODE@IP\", \"bambu-rtsps://bblp:CODE@IP\", \"ffmpeg:-i INPUT\", \"v4l2:/dev/v4l/by-id/…\" (USB camera), \
             \"test:\" (built-in pattern) or \"test:offline\"",
            crate::redact::url(s)
        ))
    }

    /// The source as it may be shown in logs, status and errors: credentials removed.
    pub fn redacted(&self) -> String {
        match self {
            SourceSpec::TestPattern => "test:".into(),
            SourceSpec::TestOffline => "test:offline".into(),
            SourceSpec::Ffmpeg(input) => input.redacted(),
            SourceSpec::Bambu(b) => b.redacted(),
            SourceSpec::V4l2(path) => format!("v4l2:{}", path.display()),
        }
    }

    /// Whether frames come through an ffmpeg child.
    pub fn uses_ffmpeg(&self) -> bool {
        matches!(self, SourceSpec::Ffmpeg(_))
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

/// Opens upstreams for one camera.
#[async_trait]
pub trait Source: Send + Sync + 'static {
    async fn open(&self) -> Result<Box<dyn Upstream>, SourceError>;
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
}

/// The source for a camera's configuration.
pub fn build(camera: &CameraConfig) -> Arc<dyn Source> {
    match &camera.source {
        SourceSpec::TestPattern => Arc::new(TestPattern::new(camera)),
        SourceSpec::TestOffline => Arc::new(Offline),
        SourceSpec::Ffmpeg(input) => Arc::new(ffmpeg::FfmpegSource::new(camera, input.clone())),
        SourceSpec::Bambu(spec) => Arc::new(bambu::BambuSource::new(camera, spec.clone())),
        SourceSpec::V4l2(path) => Arc::new(v4l2::V4l2Source::new(camera, path.clone())),
    }
}

/// `test:offline`.
struct Offline;

#[async_trait]
impl Source for Offline {
    async fn open(&self) -> Result<Box<dyn Upstream>, SourceError> {
        Err(SourceError::Open("test:offline never delivers frames".into()))
    }
}
