//! The unit that flows from a source, through a pump, to every consumer.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

/// One complete JPEG image. Cloning is cheap: the JPEG bytes are shared, never copied per viewer.
#[derive(Clone, Debug)]
pub struct Frame {
    /// A complete JPEG (SOI .. EOI).
    pub jpeg: Bytes,
    /// Increasing per pump; placeholders take numbers too, so a gap always means a skipped frame.
    pub seq: u64,
    /// Wall-clock capture time.
    pub captured_at: SystemTime,
    pub width: u32,
    pub height: u32,
    /// True for the "<camera> — offline" image farmcam shows while the upstream is down.
    pub placeholder: bool,
}

impl Frame {
    /// Capture time as unix seconds with 6 decimals, as sent in `X-Timestamp`.
    pub fn timestamp_string(&self) -> String {
        let d = self.captured_at.duration_since(UNIX_EPOCH).unwrap_or_default();
        format!("{}.{:06}", d.as_secs(), d.subsec_micros())
    }

    /// How old the frame is now (zero if the clock went backwards).
    pub fn age(&self) -> Duration {
        SystemTime::now()
            .duration_since(self.captured_at)
            .unwrap_or_default()
    }
}

/// What a source hands to its pump: the pump numbers it and turns it into a [`Frame`].
#[derive(Clone, Debug)]
pub struct Captured {
    pub jpeg: Bytes,
    pub width: u32,
    pub height: u32,
    pub captured_at: SystemTime,
    /// Already laid down as the camera's `rotate`/`flip` say (the source turned it before
    /// encoding); otherwise the pump turns it.
    pub oriented: bool,
}

/// Width and height in pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Size {
    pub width: u32,
    pub height: u32,
}

impl std::fmt::Display for Size {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}x{}", self.width, self.height)
    }
}
