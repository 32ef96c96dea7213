//! Sources: where a camera's frames come from. One file per kind; the pump only sees the traits.
//!
//! A [`Source`] is built once per camera from its configuration; each [`Source::open`] creates one
//! [`Upstream`] (one open camera / connection / child process). The pump guarantees that at most one
//! upstream per camera exists at any moment and always awaits [`Upstream::close`].

mod test_pattern;

use std::sync::Arc;

use async_trait::async_trait;

use crate::config::CameraConfig;
use crate::frame::Captured;

pub use test_pattern::TestPattern;

/// The `source = "..."` of a camera, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceSpec {
    /// `test:` — the built-in moving test pattern.
    TestPattern,
    /// `test:offline` — a camera that never opens (shows the offline placeholder).
    TestOffline,
}

impl SourceSpec {
    /// Parse a source string; the error is a one-line message naming the fix.
    pub fn parse(s: &str) -> Result<SourceSpec, String> {
        match s.trim() {
            "test:" | "test" => Ok(SourceSpec::TestPattern),
            "test:offline" => Ok(SourceSpec::TestOffline),
            other => {
                let shown = crate::redact::url(other);
                Err(format!(
                    "{shown:?} is not a source farmcam knows; use \"test:\" (built-in pattern) or \"test:offline\""
                ))
            }
        }
    }

    /// The source as it may be shown in logs, status and errors: credentials removed.
    pub fn redacted(&self) -> String {
        match self {
            SourceSpec::TestPattern => "test:".into(),
            SourceSpec::TestOffline => "test:offline".into(),
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

/// Opens upstreams for one camera.
#[async_trait]
pub trait Source: Send + Sync + 'static {
    async fn open(&self) -> Result<Box<dyn Upstream>, SourceError>;
}

/// One open upstream: frames until it fails or ends; then the pump calls `close`.
#[async_trait]
pub trait Upstream: Send {
    async fn next_frame(&mut self) -> Result<Captured, SourceError>;
    /// Release the camera. Must finish in bounded time; the next upstream waits for it.
    async fn close(self: Box<Self>) {}
}

/// The source for a camera's configuration.
pub fn build(camera: &CameraConfig) -> Arc<dyn Source> {
    match &camera.source {
        SourceSpec::TestPattern => Arc::new(TestPattern::new(camera)),
        SourceSpec::TestOffline => Arc::new(Offline),
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
