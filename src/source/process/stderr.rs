//! What ffmpeg prints: parsed, scrubbed of credentials, rate-limited into the log, the last lines
//! kept to explain an exit, and the input codec learned from it.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::{CODEC_H264, CODEC_HEVC, CODEC_MJPEG, CODEC_OTHER};
use crate::util::log_limit::{held_back, LogLimit};
use crate::util::redact;

/// Last lines of stderr kept to explain an exit.
pub const TAIL_LINES: usize = 8;

pub struct StderrReader {
    pub closing: Arc<AtomicBool>,
    pub camera: String,
    pub secrets: Arc<Vec<String>>,
    pub log: Arc<Mutex<LogLimit>>,
    pub tail: Arc<Mutex<VecDeque<String>>>,
    pub codec: Arc<AtomicU8>,
    /// The codec the command line was made for; another one fires `mismatch`.
    pub expect: Option<u8>,
    pub mismatch: CancellationToken,
}

impl StderrReader {
    pub async fn run(self, stderr: tokio::process::ChildStderr) {
        let mut lines = BufReader::new(stderr).lines();
        let mut in_input = false;
        while let Ok(Some(raw)) = lines.next_line().await {
            let (level, msg) = parse_line(&raw);
            let msg = redact::scrub(&msg, &self.secrets);
            if msg.trim().is_empty() {
                continue;
            }
            // "Input #0 ..." then its "Stream #0:0: Video: h264 ..." lines, then "Output #0".
            if msg.starts_with("Input #") {
                in_input = true;
            } else if msg.starts_with("Output #") || msg.starts_with("Stream mapping") {
                in_input = false;
            } else if in_input {
                if let Some(codec) = msg
                    .split("Video: ")
                    .nth(1)
                    .and_then(|r| r.split([' ', ',']).next())
                {
                    let learned = match codec {
                        "mjpeg" => CODEC_MJPEG,
                        "h264" => CODEC_H264,
                        "hevc" => CODEC_HEVC,
                        _ => CODEC_OTHER,
                    };
                    if self.codec.swap(learned, Relaxed) != learned {
                        debug!(camera = %self.camera, "input codec: {codec}");
                    }
                    if self.expect.is_some_and(|e| e != learned) {
                        self.mismatch.cancel();
                    }
                }
            }
            {
                let mut tail = self.tail.lock().unwrap();
                if tail.len() == TAIL_LINES {
                    tail.pop_front();
                }
                tail.push_back(format!("{level}: {msg}"));
            }
            let loud = matches!(level, "warning" | "error" | "fatal" | "panic")
                && !is_benign(&msg)
                && !self.closing.load(Relaxed);
            if !loud {
                debug!(camera = %self.camera, "ffmpeg: {msg}");
                continue;
            }
            let verdict = self.log.lock().unwrap().check(&msg);
            match verdict {
                Some(n) => warn!(camera = %self.camera, "ffmpeg {level}: {msg}{}", held_back(n)),
                None => debug!(camera = %self.camera, "ffmpeg {level}: {msg}"),
            }
        }
    }
}

/// `[ctx @ 0x55…] [level] message` → ("level", "ctx: message") with the pointer dropped, so
/// repeated messages read the same.
fn parse_line(raw: &str) -> (&'static str, String) {
    const LEVELS: [&str; 8] = [
        "panic", "fatal", "error", "warning", "info", "verbose", "debug", "trace",
    ];
    let mut ctx = Vec::new();
    let mut rest = raw.trim_end();
    while let Some(inner) = rest.strip_prefix('[') {
        let Some(end) = inner.find("] ") else { break };
        let tag = &inner[..end];
        rest = &inner[end + 2..];
        if let Some(level) = LEVELS.iter().find(|l| **l == tag) {
            let prefix = ctx.first().map(|c: &&str| format!("{c}: ")).unwrap_or_default();
            return (level, format!("{prefix}{rest}"));
        }
        ctx.push(tag.split(" @ ").next().unwrap_or(tag));
    }
    ("info", raw.trim_end().to_string())
}

/// Warnings ffmpeg prints on every healthy start.
fn is_benign(msg: &str) -> bool {
    msg.contains("deprecated pixel format used")
        // The decoder reads a raw stream with a tiny probe on purpose.
        || msg.contains("not enough frames to estimate rate")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stderr_lines_are_parsed() {
        assert_eq!(
            parse_line(
                "[tcp @ 0x557e0d554840] [error] Connection to tcp://127.0.0.1:9 failed: Connection refused"
            ),
            (
                "error",
                "tcp: Connection to tcp://127.0.0.1:9 failed: Connection refused".to_string()
            )
        );
        assert_eq!(
            parse_line("[info] Input #0, rtsp, from 'x':"),
            ("info", "Input #0, rtsp, from 'x':".to_string())
        );
        assert_eq!(parse_line("plain"), ("info", "plain".to_string()));
    }
}
