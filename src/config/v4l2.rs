//! The camera keys only `v4l2:` sources take: `format`, `controls`, `warmup_frames`.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use super::Validator;

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

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct V4l2Options {
    pub format: PixelFormat,
    /// Applied in this order at every open, by the names `v4l2-ctl --list-ctrls` and
    /// `farmcam devices` show (e.g. `brightness`, `white_balance_automatic`).
    pub controls: Vec<(String, ControlValue)>,
    pub warmup_frames: u32,
}

impl V4l2Options {
    pub fn new() -> Self {
        V4l2Options {
            warmup_frames: DEFAULT_WARMUP_FRAMES,
            ..Default::default()
        }
    }
}

/// The raw keys of one `[[camera]]` table.
pub(super) struct RawV4l2<'a> {
    pub format: &'a Option<Spanned<String>>,
    pub controls: &'a Option<Spanned<BTreeMap<String, ControlValue>>>,
    pub warmup_frames: &'a Option<Spanned<i64>>,
}

impl Validator<'_> {
    /// Validate the V4L2 keys of camera `i`; `is_v4l2` says whether its source is `v4l2:`.
    pub(super) fn v4l2(&mut self, raw: RawV4l2<'_>, i: usize, is_v4l2: Option<bool>) -> V4l2Options {
        let at = |k: &str| format!("camera[{i}].{k}");
        let mut out = V4l2Options::new();
        if is_v4l2 == Some(false) {
            for (key, span) in [
                ("format", raw.format.as_ref().map(|s| s.span())),
                ("controls", raw.controls.as_ref().map(|s| s.span())),
                ("warmup_frames", raw.warmup_frames.as_ref().map(|s| s.span())),
            ] {
                if let Some(span) = span {
                    self.problem(Some(span), &at(key), "only applies to v4l2: sources; remove it");
                }
            }
            return out;
        }
        if let Some(f) = raw.format {
            out.format = match f.get_ref().as_str() {
                "auto" => PixelFormat::Auto,
                "mjpeg" | "mjpg" => PixelFormat::Mjpeg,
                "yuyv" => PixelFormat::Yuyv,
                other => {
                    self.problem(
                        Some(f.span()),
                        &at("format"),
                        &format!("{other:?}: use \"auto\" (MJPEG if the camera has it, else YUYV), \"mjpeg\" or \"yuyv\""),
                    );
                    PixelFormat::Auto
                }
            };
        }
        if let Some(c) = raw.controls {
            for (name, value) in c.get_ref() {
                let normal = control_name(name);
                if normal.is_empty() {
                    self.problem(
                        Some(c.span()),
                        &at("controls"),
                        &format!(
                            "{name:?} is not a control name; `farmcam devices` lists each camera's controls"
                        ),
                    );
                } else {
                    out.controls.push((normal, *value));
                }
            }
            // Automatic modes first: a manual value (exposure, white balance temperature) is
            // refused while its automatic mode is on.
            out.controls.sort_by_key(|(name, _)| !name.contains("auto"));
        }
        if let Some(w) = raw.warmup_frames {
            match u32::try_from(*w.get_ref()) {
                Ok(n) if n <= 1000 => out.warmup_frames = n,
                _ => self.problem(
                    Some(w.span()),
                    &at("warmup_frames"),
                    "must be between 0 and 1000 frames (default 5)",
                ),
            }
        }
        out
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
    use std::path::Path;

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

    #[test]
    fn v4l2_keys() {
        let c = super::super::parse(
            "[[camera]]\nid = \"a\"\nsource = \"v4l2:/dev/video0\"\nformat = \"yuyv\"\nwarmup_frames = 0\n\
             controls = { brightness = 100, \"White Balance Automatic\" = false }\n",
            Path::new("f.toml"),
        )
        .unwrap();
        let v = &c.cameras[0].v4l2;
        assert_eq!(v.format, PixelFormat::Yuyv);
        assert_eq!(v.warmup_frames, 0);
        assert_eq!(
            v.controls,
            vec![
                ("white_balance_automatic".to_string(), ControlValue::Bool(false)),
                ("brightness".to_string(), ControlValue::Int(100)),
            ]
        );
    }

    #[test]
    fn v4l2_keys_on_other_sources_and_bad_values_are_errors() {
        let e = super::super::parse(
            "[[camera]]\nid = \"a\"\nsource = \"test:\"\nformat = \"mjpeg\"\n\
             [[camera]]\nid = \"b\"\nsource = \"v4l2:/dev/video0\"\nformat = \"h264\"\nwarmup_frames = -1\n",
            Path::new("f.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("camera[0].format: only applies to v4l2: sources"),
            "{e}"
        );
        assert!(e.contains("camera[1].format: \"h264\": use \"auto\""), "{e}");
        assert!(
            e.contains("camera[1].warmup_frames: must be between 0 and 1000"),
            "{e}"
        );
    }
}
