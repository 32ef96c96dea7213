//! The upstream of a camera whose ffmpeg child writes MJPEG (copied from an MJPEG camera, or
//! transcoded): the pipe cut into frames by [`crate::media::jpeg::Splitter`].

use std::collections::VecDeque;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use tokio::io::AsyncReadExt;
use tracing::debug;

use crate::frame::Captured;
use crate::media::jpeg::{Split, SplitStats, Splitter};
use crate::source::process::child::Ffmpeg;
use crate::source::{SourceError, Upstream, Work};

pub const READ_CHUNK: usize = 64 * 1024;

pub struct MjpegUpstream {
    camera: String,
    ff: Ffmpeg,
    /// Whether ffmpeg copies the input (an input that is not MJPEG then restarts it).
    copy: bool,
    splitter: Splitter,
    /// Splitter counters already logged, and already reported to the pump.
    logged: SplitStats,
    reported_invalid: u64,
    pending: VecDeque<Split>,
    buf: Box<[u8]>,
    work: Arc<Work>,
}

impl MjpegUpstream {
    pub fn new(camera: String, ff: Ffmpeg, copy: bool, max_frame: usize, work: Arc<Work>) -> Self {
        MjpegUpstream {
            camera,
            ff,
            copy,
            splitter: Splitter::new(max_frame),
            logged: SplitStats::default(),
            reported_invalid: 0,
            pending: VecDeque::new(),
            buf: vec![0; READ_CHUNK].into_boxed_slice(),
            work,
        }
    }

    /// The input is not in the codec this command line was made for.
    fn mismatch(&self) -> SourceError {
        SourceError::Failed(if self.copy {
            "the input is not MJPEG after all: restarting ffmpeg to re-encode it".into()
        } else {
            "the input's codec changed: restarting ffmpeg for it".into()
        })
    }

    /// Log newly dropped frames (debug: a noisy stream must not flood the journal).
    fn log_drops(&mut self) {
        let now = self.splitter.stats();
        let (t, o) = (
            now.truncated - self.logged.truncated,
            now.oversized - self.logged.oversized,
        );
        if t > 0 || o > 0 {
            debug!(camera = %self.camera, truncated = t, oversized = o, "dropped incomplete or oversized frames from ffmpeg");
        }
        self.logged = now;
    }
}

#[async_trait]
impl Upstream for MjpegUpstream {
    async fn next_frame(&mut self) -> Result<Captured, SourceError> {
        loop {
            if let Some(f) = self.pending.pop_front() {
                if !self.copy {
                    self.work.frames_encoded.fetch_add(1, Relaxed);
                }
                // Only the newest frame of a burst matters to viewers, but every frame counts.
                return Ok(Captured {
                    jpeg: f.jpeg,
                    width: f.width,
                    height: f.height,
                    captured_at: SystemTime::now(),
                    oriented: false,
                });
            }
            let Some(stdout) = self.ff.stdout.as_mut() else {
                return Err(SourceError::Ended);
            };
            let n = tokio::select! {
                r = stdout.read(&mut self.buf) => r,
                _ = self.ff.mismatch.cancelled() => return Err(self.mismatch()),
            };
            match n {
                Ok(0) | Err(_) => {
                    self.ff.stdout = None;
                    self.splitter.finish();
                    self.log_drops();
                    let reason = self.ff.exit_reason().await;
                    // ffmpeg may end (a short input read at once) before its codec line was
                    // read; the reader has taken its last lines now.
                    if self.ff.mismatch.is_cancelled() {
                        return Err(self.mismatch());
                    }
                    return Err(SourceError::Failed(reason));
                }
                Ok(n) => {
                    let mut out = Vec::new();
                    self.splitter.push(&self.buf[..n], &mut out);
                    self.pending.extend(out);
                    self.log_drops();
                }
            }
        }
    }

    fn take_invalid(&mut self) -> u64 {
        let s = self.splitter.stats();
        let total = s.truncated + s.oversized;
        let new = total - self.reported_invalid;
        self.reported_invalid = total;
        new
    }

    async fn close(mut self: Box<Self>) {
        self.ff.stop().await;
    }
}
