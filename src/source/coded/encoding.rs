//! H.264 for cameras that send pictures (USB, the test pattern, Bambu's JPEG, HTTP MJPEG): which
//! encoder a camera gets ([`EncoderChoice`] → [`Resolved`]), and a camera's encoding while
//! coded-video consumers watch ([`Encoding`]): its coded video (the same [`UnitFeed`] an RTSP
//! camera's consumers read), who holds it, and what encodes it now. The encoding itself runs in
//! the decoder helper ([`super::libav::EncodeSession`]); `crate::encode` feeds it.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio_util::sync::CancellationToken;

use super::units::UnitFeed;
use crate::media::h264::{nal_type, nal_units, AccessUnit, Codec};

/// The encoder libavcodec has for software encoding.
pub const SOFTWARE: &str = "libx264";
/// The encoder of a V4L2 memory-to-memory device (a Raspberry Pi 4's `/dev/video11`).
pub const V4L2M2M: &str = "h264_v4l2m2m";
/// The encoder of Intel and AMD graphics (a DRM render node with a VA driver).
pub const VAAPI: &str = "h264_vaapi";
/// The kernel drivers of render nodes whose VA drivers encode H.264 (Intel: i915, xe; AMD:
/// amdgpu, radeon). A Raspberry Pi's v3d/vc4 nodes have no VA driver; nouveau's decodes only.
const VA_ENCODING_DRIVERS: &[&str] = &["i915", "xe", "amdgpu", "radeon"];

/// A camera's `h264_encoder`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum EncoderChoice {
    /// A hardware encoder if the box has one; else none (the camera stays MJPEG-only).
    #[default]
    Auto,
    /// libx264, whatever it costs.
    Software,
    /// Never.
    Off,
    /// This encoder, by libavcodec's name.
    Named(String),
}

impl EncoderChoice {
    /// The value of `h264_encoder`, or a one-line error naming the choices.
    pub fn parse(s: &str) -> Result<EncoderChoice, String> {
        let s = s.trim();
        match s {
            "auto" => Ok(EncoderChoice::Auto),
            "software" => Ok(EncoderChoice::Software),
            "off" => Ok(EncoderChoice::Off),
            "h264_qsv" => Err(format!(
                "{s:?} needs Intel's Media SDK frames, which farmcam does not drive; use \"{VAAPI}\" (the same Intel graphics) or \"software\""
            )),
            name if !name.is_empty()
                && name.len() <= 64
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') =>
            {
                Ok(EncoderChoice::Named(name.to_string()))
            }
            _ => Err(format!(
                "{s:?} is not an encoder; use \"auto\" (hardware if there is one), \"software\" (libx264), \"off\", or a name from `ffmpeg -encoders` such as \"{V4L2M2M}\""
            )),
        }
    }
}

/// The hardware H.264 encoders this box has, as far as farmcam can drive them (found by
/// [`crate::source::v4l2::h264_encoder_device`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Hardware {
    /// A V4L2 memory-to-memory device that encodes H.264 (a Pi 4's bcm2835-codec encoder).
    pub v4l2m2m: Option<PathBuf>,
    /// A DRM render node of Intel or AMD graphics ([`vaapi_render_node`]).
    pub vaapi: Option<PathBuf>,
}

/// The first render node (`/dev/dri/renderD*`) whose kernel driver, as `drm` (sysfs's
/// `/sys/class/drm`) tells it, has a VA driver that encodes H.264.
pub fn vaapi_render_node(drm: &Path) -> Option<PathBuf> {
    let mut nodes: Vec<String> = std::fs::read_dir(drm)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.starts_with("renderD"))
        .collect();
    nodes.sort();
    nodes.into_iter().find_map(|node| {
        let driver = std::fs::read_link(drm.join(&node).join("device/driver")).ok()?;
        let driver = driver.file_name()?.to_str()?;
        VA_ENCODING_DRIVERS
            .contains(&driver)
            .then(|| Path::new("/dev/dri").join(&node))
    })
}

/// What a camera's `h264_encoder` comes to on this box: the encoders to try, in order (none:
/// the camera is not encoded), and why, as `farmcam check` and the log say it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    pub encoders: Vec<String>,
    pub why: String,
    /// The render node of `h264_vaapi`.
    pub device: Option<PathBuf>,
}

/// Which encoder a camera gets.
pub fn resolve(choice: &EncoderChoice, hw: &Hardware) -> Resolved {
    let none = |why: String| Resolved {
        encoders: Vec::new(),
        why,
        device: None,
    };
    let vaapi = |dev: &PathBuf, why: String| Resolved {
        encoders: vec![VAAPI.into()],
        why,
        device: Some(dev.clone()),
    };
    match choice {
        EncoderChoice::Off => none("h264_encoder = \"off\"".into()),
        EncoderChoice::Software => Resolved {
            encoders: vec![SOFTWARE.into()],
            why: "h264_encoder = \"software\" (libx264: costs CPU, see BENCHMARKS.md)".into(),
            device: None,
        },
        EncoderChoice::Auto => match (&hw.v4l2m2m, &hw.vaapi) {
            (Some(dev), _) => Resolved {
                encoders: vec![V4L2M2M.into()],
                why: format!("auto: the hardware encoder at {}", dev.display()),
                device: None,
            },
            (None, Some(dev)) => vaapi(
                dev,
                format!("auto: the graphics' encoder (VAAPI) at {}", dev.display()),
            ),
            (None, None) => none(
                "auto: no hardware H.264 encoder on this box; h264_encoder = \"software\" encodes with libx264 at the cost of CPU"
                    .into(),
            ),
        },
        EncoderChoice::Named(name) if name == V4L2M2M && hw.v4l2m2m.is_none() => none(format!(
            "h264_encoder = \"{V4L2M2M}\", but this box has no V4L2 device that encodes H.264 (a Raspberry Pi 4 has /dev/video11; a Pi 5 has none: use \"software\")"
        )),
        EncoderChoice::Named(name) if name == VAAPI => match &hw.vaapi {
            Some(dev) => vaapi(dev, format!("h264_encoder = \"{VAAPI}\" at {}", dev.display())),
            None => none(format!(
                "h264_encoder = \"{VAAPI}\", but this box has no Intel or AMD render node (/dev/dri/renderD*); use \"software\""
            )),
        },
        EncoderChoice::Named(name) => Resolved {
            encoders: vec![name.clone()],
            why: format!("h264_encoder = {name:?}"),
            device: None,
        },
    }
}

/// How long an encoder runs on after its last consumer left (an RTSP client's DESCRIBE and PLAY
/// are two opens; a browser reloading the page is a leave and a join).
pub const LINGER: Duration = Duration::from_secs(3);

/// A camera's encoding: its coded video and who holds it. One per camera that has an encoder.
#[derive(Debug)]
pub struct Encoding {
    pub encoders: Vec<String>,
    /// The render node of `h264_vaapi`.
    pub device: Option<PathBuf>,
    /// Why these (or none), for the log and `farmcam check`.
    pub why: String,
    pub units: UnitFeed,
    pub fps: u32,
    /// Bits per second (0: from the picture size).
    pub bitrate: u32,
    state: Mutex<State>,
    /// The next picture is to be a keyframe (a consumer joined).
    keyframe: AtomicBool,
    /// The encoder encoding now (`/api/cameras` `encoder`).
    name: Mutex<Option<String>>,
    /// Why the encoder last failed, until it encodes again.
    pub failed: Mutex<Option<String>>,
    /// Pictures encoded, and skipped because the encoder was behind.
    pub pictures: AtomicU64,
    pub skipped: AtomicU64,
}

#[derive(Debug, Default)]
struct State {
    holders: usize,
    /// The running encoder task's token.
    task: Option<CancellationToken>,
}

/// A consumer's hold on a camera's encoding: the encoder runs while any is held (and
/// [`LINGER`] after).
#[derive(Debug)]
pub struct EncodeHold {
    encoding: Arc<Encoding>,
}

impl Encoding {
    pub fn new(resolved: &Resolved, fps: u32, bitrate: u32) -> Encoding {
        let units = UnitFeed::default();
        units.set_configured_rate(Some(fps));
        units.time_by_arrival();
        Encoding {
            encoders: resolved.encoders.clone(),
            device: resolved.device.clone(),
            why: resolved.why.clone(),
            units,
            fps,
            bitrate,
            state: Mutex::default(),
            keyframe: AtomicBool::new(false),
            name: Mutex::new(None),
            failed: Mutex::new(None),
            pictures: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
        }
    }

    /// Hold the encoding. If no encoder task runs, `start` is given the new task's token to
    /// spawn it; if one runs, its next picture is a keyframe (the new consumer starts at once
    /// and with a short start).
    pub fn hold(self: &Arc<Self>, start: impl FnOnce(CancellationToken)) -> EncodeHold {
        let mut state = self.state.lock().unwrap();
        state.holders += 1;
        match &state.task {
            Some(t) if !t.is_cancelled() => self.keyframe.store(true, Relaxed),
            _ => {
                let token = CancellationToken::new();
                state.task = Some(token.clone());
                start(token);
            }
        }
        EncodeHold {
            encoding: self.clone(),
        }
    }

    /// Whether the next picture is to be a keyframe (the request is taken).
    pub fn take_keyframe(&self) -> bool {
        self.keyframe.swap(false, Relaxed)
    }

    /// A keyframe request that could not be served yet (the picture was skipped).
    pub fn want_keyframe(&self) {
        self.keyframe.store(true, Relaxed);
    }

    /// The encoder encoding now, if any.
    pub fn name(&self) -> Option<String> {
        self.name.lock().unwrap().clone()
    }

    pub fn set_name(&self, name: Option<String>) {
        *self.name.lock().unwrap() = name;
    }

    /// Whether anyone holds the encoding.
    pub fn held(&self) -> bool {
        self.state.lock().unwrap().holders > 0
    }
}

impl Drop for EncodeHold {
    fn drop(&mut self) {
        let mut state = self.encoding.state.lock().unwrap();
        state.holders = state.holders.saturating_sub(1);
        if state.holders > 0 {
            return;
        }
        let Some(token) = state.task.clone() else { return };
        drop(state);
        let encoding = self.encoding.clone();
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            token.cancel();
            return;
        };
        rt.spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(LINGER) => {}
                _ = token.cancelled() => return,
            }
            let mut state = encoding.state.lock().unwrap();
            if state.holders == 0 {
                if let Some(t) = state.task.take() {
                    t.cancel();
                }
            }
        });
    }
}

/// Access units from an encoder's packets: each packet is one picture; a keyframe always
/// carries its parameter sets (a hardware encoder may give them once, before the first).
#[derive(Debug, Default)]
pub struct Units {
    /// The latest SPS and PPS, with 4-byte start codes.
    sps: Option<Bytes>,
    pps: Option<Bytes>,
}

impl Units {
    pub fn unit(&mut self, packet: &[u8], keyframe: bool) -> AccessUnit {
        let mut sps = None;
        let mut has_pps = false;
        let mut idr = false;
        for nal in nal_units(packet) {
            let with_start = || {
                let mut b = BytesMut::with_capacity(4 + nal.len());
                b.extend_from_slice(&[0, 0, 0, 1]);
                b.extend_from_slice(nal);
                b.freeze()
            };
            match nal_type(Codec::H264, nal) {
                5 => idr = true,
                7 => {
                    let s = with_start();
                    self.sps = Some(s.clone());
                    sps = Some(s);
                }
                8 => {
                    has_pps = true;
                    self.pps = Some(with_start());
                }
                _ => {}
            }
        }
        let keyframe = keyframe || idr;
        let mut data = Bytes::copy_from_slice(packet);
        if keyframe && sps.is_none() {
            if let (Some(s), Some(p)) = (&self.sps, &self.pps) {
                let mut b = BytesMut::with_capacity(s.len() + p.len() + packet.len());
                b.extend_from_slice(s);
                if !has_pps {
                    b.extend_from_slice(p);
                }
                b.extend_from_slice(packet);
                data = b.freeze();
                sps = Some(s.clone());
            }
        }
        AccessUnit { data, keyframe, sps }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choices_parse_with_errors_that_name_the_fix() {
        assert_eq!(EncoderChoice::parse("auto"), Ok(EncoderChoice::Auto));
        assert_eq!(EncoderChoice::parse(" software "), Ok(EncoderChoice::Software));
        assert_eq!(EncoderChoice::parse("off"), Ok(EncoderChoice::Off));
        assert_eq!(
            EncoderChoice::parse("h264_v4l2m2m"),
            Ok(EncoderChoice::Named(V4L2M2M.into()))
        );
        assert_eq!(
            EncoderChoice::parse("h264_vaapi"),
            Ok(EncoderChoice::Named(VAAPI.into()))
        );
        let e = EncoderChoice::parse("h264_qsv").unwrap_err();
        assert!(e.contains(VAAPI), "{e}");
        let e = EncoderChoice::parse("x; rm -rf /").unwrap_err();
        assert!(e.contains("ffmpeg -encoders"), "{e}");
    }

    #[test]
    fn auto_takes_hardware_only_and_says_why() {
        let none = Hardware::default();
        let pi4 = Hardware {
            v4l2m2m: Some("/dev/video11".into()),
            vaapi: None,
        };
        let intel = Hardware {
            v4l2m2m: None,
            vaapi: Some("/dev/dri/renderD128".into()),
        };
        let r = resolve(&EncoderChoice::Auto, &intel);
        assert_eq!(r.encoders, [VAAPI]);
        assert_eq!(r.device.as_deref(), Some(Path::new("/dev/dri/renderD128")));
        assert!(r.why.contains("VAAPI"), "{r:?}");
        let r = resolve(&EncoderChoice::Named(VAAPI.into()), &intel);
        assert_eq!(
            (r.encoders, r.device),
            (vec![VAAPI.to_string()], intel.vaapi.clone())
        );
        let r = resolve(&EncoderChoice::Named(VAAPI.into()), &pi4);
        assert!(r.encoders.is_empty() && r.why.contains("render node"), "{r:?}");
        let r = resolve(&EncoderChoice::Auto, &none);
        assert!(r.encoders.is_empty() && r.why.contains("software"), "{r:?}");
        let r = resolve(&EncoderChoice::Auto, &pi4);
        assert_eq!(r.encoders, [V4L2M2M]);
        assert!(r.why.contains("/dev/video11"), "{r:?}");
        assert_eq!(resolve(&EncoderChoice::Software, &none).encoders, [SOFTWARE]);
        assert!(resolve(&EncoderChoice::Off, &pi4).encoders.is_empty());
        // Asked for by name on a box without the device: none, and the reason names the fix.
        let r = resolve(&EncoderChoice::Named(V4L2M2M.into()), &none);
        assert!(r.encoders.is_empty() && r.why.contains("Pi 5"), "{r:?}");
        assert_eq!(
            resolve(&EncoderChoice::Named(V4L2M2M.into()), &pi4).encoders,
            [V4L2M2M]
        );
    }

    /// sysfs as an Intel box with a second, Pi-like render node shows it (a render node with a
    /// VA driver cannot be had here).
    #[test]
    fn the_render_node_of_intel_or_amd_graphics_is_found_and_others_are_not() {
        let sys = tempfile::tempdir().unwrap();
        let node = |name: &str, driver: &str| {
            let dev = sys.path().join(format!("devices/{name}"));
            std::fs::create_dir_all(dev.join("device")).unwrap();
            let drivers = sys.path().join(format!("bus/drivers/{driver}"));
            std::fs::create_dir_all(&drivers).unwrap();
            std::os::unix::fs::symlink(&drivers, dev.join("device/driver")).unwrap();
            std::fs::create_dir_all(sys.path().join("class")).unwrap();
            std::os::unix::fs::symlink(&dev, sys.path().join(format!("class/{name}"))).unwrap();
        };
        std::fs::create_dir_all(sys.path().join("class")).unwrap();
        let drm = sys.path().join("class");
        assert_eq!(vaapi_render_node(&drm), None, "no render node");
        node("card0", "i915");
        node("renderD128", "v3d");
        assert_eq!(
            vaapi_render_node(&drm),
            None,
            "a Pi's render node has no VA driver"
        );
        node("renderD129", "i915");
        assert_eq!(
            vaapi_render_node(&drm),
            Some(PathBuf::from("/dev/dri/renderD129"))
        );
        assert_eq!(vaapi_render_node(Path::new("/nonexistent")), None);
    }

    #[test]
    fn a_keyframe_without_parameter_sets_gets_the_latest_ones() {
        let mut u = Units::default();
        let first = [
            &[0, 0, 0, 1, 0x67, 1, 2][..],
            &[0, 0, 0, 1, 0x68, 3][..],
            &[0, 0, 0, 1, 0x65, 0x88][..],
        ]
        .concat();
        let a = u.unit(&first, true);
        assert!(a.keyframe && a.sps.as_deref() == Some(&[0, 0, 0, 1, 0x67, 1, 2][..]));
        let b = u.unit(&[0, 0, 0, 1, 0x41, 0x9a], false);
        assert!(!b.keyframe && b.sps.is_none());
        // A hardware encoder's later keyframe, bare: the parameter sets go in front.
        let c = u.unit(&[0, 0, 0, 1, 0x65, 0x99], false);
        assert!(c.keyframe);
        assert_eq!(
            &c.data[..],
            [0, 0, 0, 1, 0x67, 1, 2, 0, 0, 0, 1, 0x68, 3, 0, 0, 0, 1, 0x65, 0x99]
        );
        assert!(crate::media::h264::decodable_alone(Codec::H264, &c));
    }
}
