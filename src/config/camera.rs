//! `[[camera]]` blocks, and the cameras found when the file has none. Every camera, configured
//! or found, starts from [`CameraConfig::with_defaults`].

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::diag::Validator;
use super::http::Defaults;
use super::light::LightConfig;
use super::mqtt::MqttConfig;
use super::v4l2::RawV4l2;
use super::values::{parse_size, valid_id, IntOrString};
use crate::frame::Size;
use crate::media::orientation::{Flip, Orientation};
use crate::source::coded::encoding::EncoderChoice;
use crate::source::v4l2::list::Servable;
use crate::source::v4l2::{ControlValue, V4l2Options};
use crate::source::{bambu, Common, SourceSpec};

pub const DEFAULT_MAX_FRAME_SIZE: usize = crate::media::jpeg::DEFAULT_MAX_FRAME;

#[derive(Clone, Debug, PartialEq)]
pub struct CameraConfig {
    pub id: String,
    pub name: String,
    /// The kind of source, with the options that only that kind takes.
    pub source: SourceSpec,
    pub size: Option<Size>,
    pub fps: Option<u32>,
    pub idle_grace: Duration,
    pub snapshot_timeout: Duration,
    pub stall_timeout: Duration,
    /// Optional dedicated port serving only this camera (mjpg-streamer style URLs).
    pub listen: Option<SocketAddr>,
    /// Frames larger than this are dropped (and counted) by sources that cut a byte stream.
    pub max_frame_size: usize,
    /// How often a snapshot is published over MQTT (None: never; only with `[mqtt]`).
    pub snapshot_interval: Option<Duration>,
    /// Width of this camera's MQTT snapshots (None: `[mqtt] snapshot_width`, else full size).
    pub snapshot_width: Option<u32>,
    /// The `[[light]]` switched with this camera's pump.
    pub light: Option<String>,
    /// How the camera is mounted (`rotate`, `flip`): every consumer gets the turned picture.
    pub orientation: Orientation,
    /// The player Moonraker registers it for (`[[moonraker]]`).
    pub moonraker_service: super::MoonrakerService,
    /// `h264_encoder`: which H.264 encoder makes live video of its pictures (cameras that
    /// send pictures; ignored for those that send H.264).
    pub h264_encoder: EncoderChoice,
    /// `h264_bitrate` in bits per second (None: from the picture size).
    pub h264_bitrate: Option<u32>,
    /// `timelapse = false`: its printer's prints are not recorded by it (with `[timelapse]`).
    pub timelapse: bool,
    /// A Bambu printer's serial (`bambu_serial`): its MQTT reports are under it. `None`: learnt
    /// from the first report.
    pub bambu_serial: Option<String>,
    /// The Bambu printer's MQTT port (`bambu_mqtt_port`, default 8883).
    pub bambu_mqtt_port: u16,
}

impl CameraConfig {
    /// A camera as `defaults` make it: what a `[[camera]]` block with only `id` and `source`
    /// gets, and what every found camera gets. ffmpeg sources run `defaults.ffmpeg`.
    pub fn with_defaults(id: &str, mut source: SourceSpec, defaults: &Defaults) -> Self {
        if let SourceSpec::Ffmpeg(o) = &mut source {
            o.program = defaults.ffmpeg.clone();
            if o.decoder.is_none() {
                o.decoder = defaults.decoder.clone();
            }
        }
        CameraConfig {
            id: id.to_string(),
            name: id.to_string(),
            source,
            size: None,
            fps: None,
            idle_grace: defaults.idle_grace,
            snapshot_timeout: defaults.snapshot_timeout,
            stall_timeout: defaults.stall_timeout,
            listen: None,
            max_frame_size: DEFAULT_MAX_FRAME_SIZE,
            snapshot_interval: defaults.snapshot_interval,
            snapshot_width: None,
            light: None,
            orientation: Orientation::default(),
            moonraker_service: Default::default(),
            h264_encoder: defaults.h264_encoder.clone(),
            h264_bitrate: None,
            timelapse: true,
            bambu_serial: None,
            bambu_mqtt_port: bambu::MQTT_PORT,
        }
    }

    /// A camera with the built-in defaults, for tests and built-in configurations.
    pub fn new(id: &str, source: SourceSpec) -> Self {
        Self::with_defaults(id, source, &Defaults::default())
    }

    /// What the camera's source may use besides its own options.
    pub fn common(&self) -> Common {
        Common {
            id: self.id.clone(),
            name: self.name.clone(),
            size: self.size,
            fps: self.fps,
            stall_timeout: self.stall_timeout,
            max_frame_size: self.max_frame_size,
            orientation: self.orientation,
        }
    }

    /// A found V4L2 device as a camera.
    pub fn found(device: &Servable, defaults: &Defaults) -> Self {
        let source = SourceSpec::V4l2(V4l2Options::new(device.path.clone()));
        let mut camera = Self::with_defaults(&device.id, source, defaults);
        camera.name = device.name.clone();
        camera
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCamera {
    pub(super) id: Spanned<String>,
    name: Option<String>,
    source: Spanned<String>,
    size: Option<Spanned<String>>,
    fps: Option<Spanned<i64>>,
    idle_grace: Option<Spanned<String>>,
    snapshot_timeout: Option<Spanned<String>>,
    stall_timeout: Option<Spanned<String>>,
    listen: Option<Spanned<String>>,
    quality: Option<Spanned<i64>>,
    ffmpeg_args: Option<Spanned<Vec<String>>>,
    decoder: Option<Spanned<String>>,
    max_frame_size: Option<Spanned<IntOrString>>,
    snapshot_interval: Option<Spanned<String>>,
    snapshot_width: Option<Spanned<i64>>,
    light: Option<Spanned<String>>,
    tls_verify: Option<Spanned<String>>,
    tls_fingerprint: Option<Spanned<String>>,
    format: Option<Spanned<String>>,
    controls: Option<Spanned<BTreeMap<String, ControlValue>>>,
    warmup_frames: Option<Spanned<i64>>,
    rotate: Option<Spanned<i64>>,
    flip: Option<Spanned<String>>,
    moonraker_service: Option<Spanned<String>>,
    h264_encoder: Option<Spanned<String>>,
    h264_bitrate: Option<Spanned<IntOrString>>,
    timelapse: Option<bool>,
    bambu_serial: Option<Spanned<String>>,
    bambu_mqtt_port: Option<Spanned<i64>>,
    /// Validated with `[prusa_connect]` (the uploads are not part of the camera).
    pub(super) prusa_connect: Option<Spanned<super::prusa_connect::RawCameraPrusa>>,
}

/// What the camera blocks are checked against: the other sections, already validated.
pub(super) struct Context<'c> {
    pub defaults: &'c Defaults,
    pub mqtt: Option<&'c MqttConfig>,
    pub lights: &'c [LightConfig],
    /// Addresses already taken (the main listener's).
    pub listen: &'c [SocketAddr],
}

impl Validator<'_> {
    pub(super) fn cameras(&mut self, raw: &[RawCamera], ctx: &Context<'_>) -> Vec<Arc<CameraConfig>> {
        let mut ids = HashSet::new();
        let mut ports: Vec<SocketAddr> = ctx.listen.to_vec();
        let mut cameras: Vec<Arc<CameraConfig>> = Vec::new();
        for (i, c) in raw.iter().enumerate() {
            let at = |k: &str| format!("camera[{i}].{k}");
            let id = c.id.get_ref().clone();
            if !valid_id(&id) {
                self.problem(
                    Some(c.id.span()),
                    &at("id"),
                    &format!("{id:?} is not a valid id: use lowercase letters, digits, '-' and '_', starting with a letter or digit (e.g. \"printer-1\")"),
                );
            } else if !ids.insert(id.clone()) {
                self.problem(
                    Some(c.id.span()),
                    &at("id"),
                    &format!("{id:?} is used by another camera; ids must be unique"),
                );
            }
            let source = self.source(c, i);
            let same_device = |other: &CameraConfig| match (&other.source, &source) {
                (SourceSpec::V4l2(a), Some(SourceSpec::V4l2(b))) => a.path == b.path,
                _ => false,
            };
            if let (Some(SourceSpec::V4l2(o)), Some(other)) =
                (&source, cameras.iter().find(|o| same_device(o)))
            {
                self.problem(
                    Some(c.source.span()),
                    &at("source"),
                    &format!(
                        "{} is already camera {:?}; a device can be opened by one camera only",
                        o.path.display(),
                        other.id
                    ),
                );
            }
            let mut camera =
                CameraConfig::with_defaults(&id, source.unwrap_or(SourceSpec::TestPattern), ctx.defaults);
            if let Some(name) = c.name.as_ref().filter(|n| !n.trim().is_empty()) {
                camera.name = name.clone();
            }
            camera.size = c.size.as_ref().and_then(|s| {
                parse_size(s.get_ref())
                    .map_err(|msg| self.problem(Some(s.span()), &at("size"), &msg))
                    .ok()
            });
            camera.fps = self.int(
                &c.fps,
                &at("fps"),
                1..=240,
                "must be between 1 and 240 frames per second",
            );
            camera.listen = c.listen.as_ref().and_then(|l| {
                let a = self.addr(l.get_ref(), l.span(), &at("listen"))?;
                if a.port() != 0
                    && ports.iter().any(|p| {
                        p.port() == a.port()
                            && (p.ip() == a.ip() || p.ip().is_unspecified() || a.ip().is_unspecified())
                    })
                {
                    self.problem(
                        Some(l.span()),
                        &at("listen"),
                        &format!("{a} is already used by another listener; give this camera its own port"),
                    );
                }
                ports.push(a);
                Some(a)
            });
            camera.max_frame_size = self.bytes(
                &c.max_frame_size,
                &at("max_frame_size"),
                64 * 1024..=256 * 1024 * 1024,
                "between 64KiB and 256MiB (default 8MiB)",
                DEFAULT_MAX_FRAME_SIZE,
            );
            camera.light = c.light.as_ref().and_then(|l| {
                if ctx.lights.iter().any(|x| x.id == *l.get_ref()) {
                    Some(l.get_ref().clone())
                } else {
                    self.problem(
                        Some(l.span()),
                        &at("light"),
                        &format!("{:?} is not a [[light]] id in this file", l.get_ref()),
                    );
                    None
                }
            });
            camera.idle_grace = self.duration(&c.idle_grace, &at("idle_grace"), camera.idle_grace);
            camera.snapshot_timeout = self.duration(
                &c.snapshot_timeout,
                &at("snapshot_timeout"),
                camera.snapshot_timeout,
            );
            camera.stall_timeout =
                self.duration(&c.stall_timeout, &at("stall_timeout"), camera.stall_timeout);
            camera.snapshot_interval =
                self.snapshot_interval(&c.snapshot_interval, &at("snapshot_interval"), ctx.mqtt);
            camera.snapshot_width = self.snapshot_width(&c.snapshot_width, &at("snapshot_width"));
            let flip = c.flip.as_ref().map_or(Some(Flip::None), |f| {
                Flip::parse(f.get_ref())
                    .map_err(|msg| self.problem(Some(f.span()), &at("flip"), &msg))
                    .ok()
            });
            let rotate = c.rotate.as_ref().map_or(Some(0), |r| {
                Orientation::new(*r.get_ref(), Flip::None)
                    .map_err(|msg| self.problem(Some(r.span()), &at("rotate"), &msg))
                    .ok()
                    .map(|o| o.rotate)
            });
            if let (Some(rotate), Some(flip)) = (rotate, flip) {
                camera.orientation = Orientation { rotate, flip };
            }
            if let Some(m) = &c.moonraker_service {
                match super::MoonrakerService::parse(m.get_ref()) {
                    Ok(super::MoonrakerService::Webrtc)
                        if !camera.source.sends_own_video() && c.h264_encoder.is_none() =>
                    {
                        self.problem(
                            Some(m.span()),
                            &at("moonraker_service"),
                            "\"webrtc\" plays H.264, which only rtsp, rtsps, http and v4l2 (format = \"h264\") cameras send, or one with an h264_encoder; use \"mjpeg\" or set h264_encoder",
                        )
                    }
                    Ok(service) => camera.moonraker_service = service,
                    Err(msg) => self.problem(Some(m.span()), &at("moonraker_service"), &msg),
                }
            }
            if let Some(e) = &c.h264_encoder {
                let own = match &camera.source {
                    crate::source::SourceSpec::Ffmpeg(o) => !o.input.may_send_pictures(),
                    s => s.sends_own_video(),
                };
                if own {
                    self.problem(
                        Some(e.span()),
                        &at("h264_encoder"),
                        "only applies to cameras that send pictures (test:, v4l2:, bambu://, MJPEG over http:// or ffmpeg:); rtsp cameras and v4l2 cameras with format = \"h264\" send their own H.264; remove it",
                    );
                } else if let Some(choice) = self.encoder_choice(e, &at("h264_encoder")) {
                    camera.h264_encoder = choice;
                }
            }
            if let Some(b) = &c.h264_bitrate {
                match super::values::parse_bitrate(b.get_ref()) {
                    Ok(bits) => camera.h264_bitrate = Some(bits),
                    Err(msg) => self.problem(Some(b.span()), &at("h264_bitrate"), &msg),
                }
            }
            camera.timelapse = c.timelapse.unwrap_or(true);
            let bambu = bambu::printer_of(&camera.source).is_some();
            if let Some(s) = &c.bambu_serial {
                let serial = s.get_ref().trim();
                if !bambu {
                    self.problem(
                        Some(s.span()),
                        &at("bambu_serial"),
                        "only applies to bambu:// and bambu-rtsps:// sources; remove it",
                    );
                } else if serial.is_empty() || !serial.chars().all(|ch| ch.is_ascii_alphanumeric()) {
                    self.problem(
                        Some(s.span()),
                        &at("bambu_serial"),
                        &format!("{serial:?}: give the printer's serial number, letters and digits (e.g. \"01P00A123456789\"; on the printer's screen or in Bambu Studio)"),
                    );
                } else {
                    camera.bambu_serial = Some(serial.to_string());
                }
            }
            if let Some(p) = &c.bambu_mqtt_port {
                if !bambu {
                    self.problem(
                        Some(p.span()),
                        &at("bambu_mqtt_port"),
                        "only applies to bambu:// and bambu-rtsps:// sources; remove it",
                    );
                } else if let Some(port) = self.int::<u16>(
                    &c.bambu_mqtt_port,
                    &at("bambu_mqtt_port"),
                    1..=65535,
                    "must be a port, 1 to 65535 (the printer's is 8883)",
                ) {
                    camera.bambu_mqtt_port = port;
                }
            }
            cameras.push(Arc::new(camera));
        }
        cameras
    }

    /// The camera's source with the options of its kind; keys of another kind are problems.
    /// `None` when the source itself is invalid (its kind-specific keys are still checked).
    fn source(&mut self, c: &RawCamera, i: usize) -> Option<SourceSpec> {
        let at = |k: &str| format!("camera[{i}].{k}");
        let mut source = SourceSpec::parse(c.source.get_ref())
            .map_err(|msg| self.problem(Some(c.source.span()), &at("source"), &msg))
            .ok();
        let kind = source.as_ref().map(SourceSpec::kind);
        // Each kind-specific key: the kinds that take it, and what to say elsewhere.
        let ffmpeg_or_v4l2 = "only applies to rtsp/http/ffmpeg and v4l2 sources; remove it";
        let ffmpeg_only = "only applies to rtsp/http/ffmpeg sources; remove it";
        let bambu_only = "only applies to bambu:// sources";
        let v4l2_only = "only applies to v4l2: sources; remove it";
        let keys = [
            (
                "quality",
                c.quality.as_ref().map(|s| s.span()),
                &["ffmpeg", "v4l2"][..],
                ffmpeg_or_v4l2,
            ),
            (
                "ffmpeg_args",
                c.ffmpeg_args.as_ref().map(|s| s.span()),
                &["ffmpeg"],
                ffmpeg_only,
            ),
            (
                "decoder",
                c.decoder.as_ref().map(|s| s.span()),
                &["ffmpeg"],
                ffmpeg_only,
            ),
            (
                "tls_fingerprint",
                c.tls_fingerprint.as_ref().map(|s| s.span()),
                &["bambu"],
                bambu_only,
            ),
            (
                "tls_verify",
                c.tls_verify.as_ref().map(|s| s.span()),
                &["bambu"],
                bambu_only,
            ),
            (
                "format",
                c.format.as_ref().map(|s| s.span()),
                &["v4l2"],
                v4l2_only,
            ),
            (
                "controls",
                c.controls.as_ref().map(|s| s.span()),
                &["v4l2"],
                v4l2_only,
            ),
            (
                "warmup_frames",
                c.warmup_frames.as_ref().map(|s| s.span()),
                &["v4l2"],
                v4l2_only,
            ),
        ];
        for (key, span, kinds, why) in keys {
            if let (Some(span), Some(kind)) = (span, kind) {
                if !kinds.contains(&kind) {
                    self.problem(Some(span), &at(key), why);
                }
            }
        }
        let quality: Option<u8> = self.int(
            &c.quality,
            &at("quality"),
            1..=100,
            "must be between 1 (smallest) and 100 (best); 90 is a good start",
        );
        let fingerprint = self.tls(c, i, kind);
        let mut v4l2 = V4l2Options::new(Default::default());
        if kind.is_none_or(|k| k == "v4l2") {
            self.v4l2(
                RawV4l2 {
                    format: &c.format,
                    controls: &c.controls,
                    warmup_frames: &c.warmup_frames,
                },
                i,
                &mut v4l2,
            );
        }
        match &mut source {
            Some(SourceSpec::Ffmpeg(o)) => {
                o.quality = quality;
                if let Some(d) = self.decoder_name(&c.decoder, &at("decoder")) {
                    o.decoder = Some(d);
                }
                o.args = c
                    .ffmpeg_args
                    .as_ref()
                    .map(|a| a.get_ref().clone())
                    .unwrap_or_default();
                if let Some(why) = o.script_problem() {
                    let span = c.ffmpeg_args.as_ref().map(|a| a.span());
                    self.problem(span, &at("ffmpeg_args"), &why);
                }
            }
            Some(SourceSpec::Bambu(b)) => b.fingerprint = fingerprint,
            Some(SourceSpec::V4l2(o)) => {
                v4l2.path = std::mem::take(&mut o.path);
                v4l2.quality = quality;
                *o = v4l2;
            }
            _ => {}
        }
        source
    }

    /// An `h264_encoder` value.
    pub(super) fn encoder_choice(&mut self, raw: &Spanned<String>, key: &str) -> Option<EncoderChoice> {
        EncoderChoice::parse(raw.get_ref())
            .map_err(|msg| self.problem(Some(raw.span()), key, &msg))
            .ok()
    }

    /// `tls_fingerprint` and `tls_verify` (bambu:// sources): the pinned fingerprint, if any.
    fn tls(&mut self, c: &RawCamera, i: usize, kind: Option<&str>) -> Option<[u8; 32]> {
        let at = |k: &str| format!("camera[{i}].{k}");
        let elsewhere = kind.is_some_and(|k| k != "bambu");
        let fingerprint = c.tls_fingerprint.as_ref().filter(|_| !elsewhere).and_then(|f| {
            bambu::parse_fingerprint(f.get_ref())
                .map_err(|msg| self.problem(Some(f.span()), &at("tls_fingerprint"), &msg))
                .ok()
        });
        if let Some(v) = c.tls_verify.as_ref().filter(|_| !elsewhere) {
            match v.get_ref().as_str() {
                "none" if c.tls_fingerprint.is_some() => self.problem(
                    Some(v.span()),
                    &at("tls_verify"),
                    "\"none\" contradicts tls_fingerprint; use \"fingerprint\" or remove one",
                ),
                "fingerprint" if c.tls_fingerprint.is_none() => self.problem(
                    Some(v.span()),
                    &at("tls_verify"),
                    "\"fingerprint\" needs tls_fingerprint = \"<sha256 of the printer certificate>\"",
                ),
                "none" | "fingerprint" => {}
                other => self.problem(
                    Some(v.span()),
                    &at("tls_verify"),
                    &format!("{other:?}: use \"none\" (printers' certificates cannot be verified by name) or \"fingerprint\""),
                ),
            }
        }
        fingerprint
    }
}
