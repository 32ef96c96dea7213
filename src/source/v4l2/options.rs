//! What a `v4l2:` camera is configured with (validated by the configuration file's reader).

use std::path::PathBuf;

use serde::Deserialize;

/// Frames skipped after the device opens, while auto exposure and white balance settle.
pub const DEFAULT_WARMUP_FRAMES: u32 = 5;

/// The pixel format asked of a V4L2 device.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PixelFormat {
    /// MJPEG when the device offers it (passed through, no encoding), else YUYV (encoded).
    #[default]
    Auto,
    Mjpeg,
    Yuyv,
    /// H.264 as the camera encodes it (UVC cameras with their own encoder): passed through to
    /// WebRTC and RTSP viewers; pictures for MJPEG viewers and snapshots come from the shared
    /// decoder. Never chosen by `Auto`.
    H264,
}

/// A control value as written in `controls = { … }`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum ControlValue {
    Int(i64),
    Bool(bool),
}

impl std::fmt::Display for ControlValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ControlValue::Int(v) => write!(f, "{v}"),
            ControlValue::Bool(v) => write!(f, "{v}"),
        }
    }
}

/// A `v4l2:` camera's own options: the device, and how to ask it for frames.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct V4l2Options {
    /// `/dev/v4l/by-id/…` (stable across replugs) or `/dev/videoN`.
    pub path: PathBuf,
    pub format: PixelFormat,
    /// Applied in this order at every open, by the names `v4l2-ctl --list-ctrls` and
    /// `farmcam devices` show (e.g. `brightness`, `white_balance_automatic`).
    pub controls: Vec<(String, ControlValue)>,
    pub warmup_frames: u32,
    /// JPEG quality 1..=100 for YUYV frames farmcam encodes; `None`: the encoder's default.
    pub quality: Option<u8>,
}

impl V4l2Options {
    /// The defaults for a device.
    pub fn new(path: PathBuf) -> Self {
        V4l2Options {
            path,
            format: PixelFormat::Auto,
            controls: Vec::new(),
            warmup_frames: DEFAULT_WARMUP_FRAMES,
            quality: None,
        }
    }
}

/// A control's name as `v4l2-ctl` writes it: lowercase, runs of other characters as one `_`
/// ("White Balance Temperature, Auto" → `white_balance_temperature_auto`).
pub fn control_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.is_empty() && !out.ends_with('_') {
            out.push('_');
        }
    }
    while out.ends_with('_') {
        out.pop();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_names_as_v4l2_ctl_writes_them() {
        assert_eq!(
            control_name("White Balance Temperature, Auto"),
            "white_balance_temperature_auto"
        );
        assert_eq!(control_name("Brightness"), "brightness");
        assert_eq!(control_name("  Exposure (Absolute) "), "exposure_absolute");
    }
}
