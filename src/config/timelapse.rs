//! `[timelapse]`: where timelapses of prints are kept, how often pictures are taken, and the disk
//! they may use (see `crate::timelapse`). Without the section, timelapses are off.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::diag::Validator;
use super::values::{parse_bytes_u64, IntOrString};

/// Where timelapses go when `dir` is not set (the .deb creates it, owned by farmcam).
pub const DEFAULT_DIR: &str = "/var/lib/farmcam/timelapses";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimelapseConfig {
    pub dir: PathBuf,
    /// One picture this often, when the trigger gives no layers (or `per_layer` is off).
    pub interval: Duration,
    /// One picture per layer when the trigger says layers (Moonraker's `current_layer`,
    /// Bambu's `layer_num`).
    pub per_layer: bool,
    /// Frames per second of the video.
    pub fps: u32,
    /// How long the last picture is held at the end of the video.
    pub hold: Duration,
    /// The videos and spooled pictures together stay within this many bytes: the oldest videos
    /// are removed first.
    pub max_size: u64,
    /// Pictures are not spooled while the disk holding `dir` has less free space than this.
    pub min_free: u64,
}

impl Default for TimelapseConfig {
    fn default() -> Self {
        TimelapseConfig {
            dir: PathBuf::from(DEFAULT_DIR),
            interval: Duration::from_secs(5),
            per_layer: true,
            fps: 30,
            hold: Duration::from_secs(1),
            max_size: 10 << 30,
            min_free: 1 << 30,
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTimelapse {
    dir: Option<Spanned<String>>,
    interval: Option<Spanned<String>>,
    per_layer: Option<bool>,
    fps: Option<Spanned<i64>>,
    hold: Option<Spanned<String>>,
    max_size: Option<Spanned<IntOrString>>,
    min_free: Option<Spanned<IntOrString>>,
}

impl Validator<'_> {
    pub(super) fn timelapse(&mut self, raw: &RawTimelapse) -> TimelapseConfig {
        let d = TimelapseConfig::default();
        let dir = match &raw.dir {
            Some(p) if !p.get_ref().starts_with('/') => {
                self.problem(
                    Some(p.span()),
                    "timelapse.dir",
                    &format!("{:?}: give an absolute path, e.g. \"{DEFAULT_DIR}\"", p.get_ref()),
                );
                d.dir.clone()
            }
            Some(p) => PathBuf::from(p.get_ref()),
            None => d.dir.clone(),
        };
        let interval = self.duration_within(
            &raw.interval,
            "timelapse.interval",
            d.interval,
            Duration::from_millis(200)..=Duration::from_secs(3600),
            "must be between 200ms and 1h, e.g. \"5s\"",
        );
        let hold = self.duration_within(
            &raw.hold,
            "timelapse.hold",
            d.hold,
            Duration::ZERO..=Duration::from_secs(60),
            "must be between 0s and 60s, e.g. \"1s\"",
        );
        let fps = self
            .int(
                &raw.fps,
                "timelapse.fps",
                1..=120,
                "must be between 1 and 120, e.g. 30",
            )
            .unwrap_or(d.fps);
        let mut bytes = |v: &Option<Spanned<IntOrString>>, key: &str, default: u64| match v {
            None => default,
            Some(s) => parse_bytes_u64(
                s.get_ref(),
                1 << 20..=1 << 50,
                "between 1MiB and 1PiB, e.g. \"10GiB\"",
            )
            .unwrap_or_else(|msg| {
                self.problem(Some(s.span()), key, &msg);
                default
            }),
        };
        let max_size = bytes(&raw.max_size, "timelapse.max_size", d.max_size);
        let min_free = bytes(&raw.min_free, "timelapse.min_free", d.min_free);
        TimelapseConfig {
            dir,
            interval,
            per_layer: raw.per_layer.unwrap_or(d.per_layer),
            fps,
            hold,
            max_size,
            min_free,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    #[test]
    fn timelapse_settings_parse_and_bad_ones_name_the_fix() {
        let c = super::super::parse(
            "[timelapse]\ndir = \"/srv/tl\"\ninterval = \"2s\"\nper_layer = false\nfps = 25\nhold = \"2s\"\n\
             max_size = \"20GiB\"\nmin_free = \"2GiB\"\n",
            Path::new("f.toml"),
        )
        .unwrap();
        let t = c.timelapse.unwrap();
        assert_eq!(t.dir, Path::new("/srv/tl"));
        assert_eq!(
            (t.interval, t.per_layer, t.fps, t.hold),
            (Duration::from_secs(2), false, 25, Duration::from_secs(2))
        );
        assert_eq!((t.max_size, t.min_free), (20 << 30, 2 << 30));
        assert!(
            super::super::parse("", Path::new("f.toml"))
                .unwrap()
                .timelapse
                .is_none(),
            "off without the section"
        );
        let defaults = super::super::parse("[timelapse]\n", Path::new("f.toml"))
            .unwrap()
            .timelapse
            .unwrap();
        assert_eq!(defaults, super::TimelapseConfig::default());
        let e = super::super::parse(
            "[timelapse]\ndir = \"tl\"\ninterval = \"10ms\"\nfps = 0\nmax_size = \"lots\"\n",
            Path::new("f.toml"),
        )
        .unwrap_err()
        .to_string();
        for said in [
            "timelapse.dir: \"tl\": give an absolute path",
            "timelapse.interval: must be between 200ms and 1h",
            "timelapse.fps: must be between 1 and 120",
            "timelapse.max_size: \"lots\" is not a size in bytes",
        ] {
            assert!(e.contains(said), "{said}: {e}");
        }
    }
}
