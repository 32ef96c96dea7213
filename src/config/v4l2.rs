//! The camera keys only `v4l2:` sources take: `format`, `controls`, `warmup_frames`.

use std::collections::BTreeMap;

use toml::Spanned;

use super::diag::Validator;
use crate::source::v4l2::{control_name, ControlValue, PixelFormat, V4l2Options};

/// The raw keys of one `[[camera]]` table.
pub(super) struct RawV4l2<'a> {
    pub format: &'a Option<Spanned<String>>,
    pub controls: &'a Option<Spanned<BTreeMap<String, ControlValue>>>,
    pub warmup_frames: &'a Option<Spanned<i64>>,
}

impl Validator<'_> {
    /// Validate the V4L2 keys of camera `i` into `out` (whose other fields stay as they are).
    pub(super) fn v4l2(&mut self, raw: RawV4l2<'_>, i: usize, out: &mut V4l2Options) {
        let at = |k: &str| format!("camera[{i}].{k}");
        if let Some(f) = raw.format {
            out.format = match f.get_ref().as_str() {
                "auto" => PixelFormat::Auto,
                "mjpeg" | "mjpg" => PixelFormat::Mjpeg,
                "yuyv" => PixelFormat::Yuyv,
                "h264" => PixelFormat::H264,
                other => {
                    self.problem(
                        Some(f.span()),
                        &at("format"),
                        &format!("{other:?}: use \"auto\" (MJPEG if the camera has it, else YUYV), \"mjpeg\", \"yuyv\" or \"h264\" (a camera that encodes H.264 itself)"),
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
        if let Some(n) = self.int(
            raw.warmup_frames,
            &at("warmup_frames"),
            0..=1000,
            "must be between 0 and 1000 frames (default 5)",
        ) {
            out.warmup_frames = n;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn v4l2_keys() {
        let c = super::super::parse(
            "[[camera]]\nid = \"a\"\nsource = \"v4l2:/dev/video0\"\nformat = \"yuyv\"\nwarmup_frames = 0\n\
             controls = { brightness = 100, \"White Balance Automatic\" = false }\n",
            Path::new("f.toml"),
        )
        .unwrap();
        let crate::source::SourceSpec::V4l2(v) = &c.cameras[0].source else {
            panic!("a v4l2 source")
        };
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
             [[camera]]\nid = \"b\"\nsource = \"v4l2:/dev/video0\"\nformat = \"h265\"\nwarmup_frames = -1\n",
            Path::new("f.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("camera[0].format: only applies to v4l2: sources"),
            "{e}"
        );
        assert!(e.contains("camera[1].format: \"h265\": use \"auto\""), "{e}");
        assert!(
            e.contains("camera[1].warmup_frames: must be between 0 and 1000"),
            "{e}"
        );
    }

    #[test]
    fn one_device_for_one_camera_whatever_its_options() {
        let e = super::super::parse(
            "[[camera]]\nid = \"a\"\nsource = \"v4l2:/dev/video0\"\nformat = \"yuyv\"\n\
             [[camera]]\nid = \"b\"\nsource = \"v4l2:/dev/video0\"\nformat = \"mjpeg\"\n",
            Path::new("f.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("camera[1].source: /dev/video0 is already camera \"a\""),
            "{e}"
        );
    }
}
