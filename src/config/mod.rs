//! The configuration file: raw serde structs (with source spans) → a validated [`Config`].
//!
//! Every problem a user can make is reported as `PATH:LINE:COL: key: message`, one line each, and
//! all semantic problems of a file are reported together. One room per concern: [`camera`]
//! (`[[camera]]` and found cameras), [`http`] (`[http]`, `[defaults]`, `[ffmpeg]`), `mqtt`,
//! `light`, `v4l2` (the V4L2 camera keys), `values` (parsers) and `diag` (positions, key paths,
//! hiding secrets). Sources never import this module: it validates into their typed options.

use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;

mod auth;
mod camera;
mod diag;
mod http;
mod light;
mod moonraker;
mod mqtt;
mod prusa_connect;
mod rtsp;
mod timelapse;
mod v4l2;
mod values;
mod wall;
mod webrtc;

pub use auth::{Area, AuthConfig, OpenListener};
pub use camera::{CameraConfig, DEFAULT_MAX_FRAME_SIZE};
pub use http::{
    Defaults, HttpConfig, DEFAULT_HEADER_READ_TIMEOUT, DEFAULT_IDLE_GRACE, DEFAULT_LISTEN,
    DEFAULT_MAX_CONNECTIONS, DEFAULT_SNAPSHOT_TIMEOUT, DEFAULT_STALL_TIMEOUT, DEFAULT_WALL_REFRESH,
    DEFAULT_WRITE_TIMEOUT,
};
pub use light::{parse_hex, LightConfig, Protocol};
pub use moonraker::{MoonrakerConfig, MoonrakerService};
pub use mqtt::MqttConfig;
pub use prusa_connect::{Endpoint, PrusaCamera, PrusaConnectConfig};
pub use rtsp::RtspConfig;
pub use timelapse::TimelapseConfig;
pub use values::{parse_duration, parse_size, valid_id, Secret};
pub use wall::WallGateway;
pub use webrtc::WebrtcConfig;

use crate::source::v4l2::list::Servable;

/// Where `farmcam run` and `farmcam check` look when `--config` is not given.
pub const DEFAULT_PATH: &str = "/etc/farmcam/farmcam.toml";

/// A validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub http: HttpConfig,
    pub cameras: Vec<Arc<CameraConfig>>,
    /// `[mqtt]`: None means MQTT is off.
    pub mqtt: Option<MqttConfig>,
    /// `[[light]]` blocks.
    pub lights: Vec<LightConfig>,
    /// `[[moonraker]]` blocks: webcam lists kept up to date.
    pub moonrakers: Vec<MoonrakerConfig>,
    /// `[defaults]`, `[ffmpeg]` and `[mqtt] snapshot_interval`: what cameras start from.
    pub defaults: Defaults,
    /// How many of `cameras` were not in the file but found (V4L2 devices, see `auto_v4l2`).
    pub cameras_found: usize,
    /// This gateway's name (`[mqtt] node_id`, else the host name): in MQTT topics, Moonraker
    /// entries, `/api/cameras` and `/metrics`, so a farm of several controllers tells them apart.
    pub node_id: String,
    /// `[[wall.gateway]]`: other gateways whose cameras the wall shows.
    pub wall_gateways: Vec<WallGateway>,
    /// `[webrtc]`: None when `enabled = false`.
    pub webrtc: Option<WebrtcConfig>,
    /// `[rtsp]`: None unless `listen` is set.
    pub rtsp: Option<RtspConfig>,
    /// `[prusa_connect]` and the cameras with a `[camera.prusa_connect]` block.
    pub prusa_connect: PrusaConnectConfig,
    /// `[timelapse]`: None when the section is absent (timelapses off).
    pub timelapse: Option<TimelapseConfig>,
}

impl Config {
    /// What is valid but worth a warning (said at start, at reload and by `farmcam check`).
    pub fn warnings(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .cameras
            .iter()
            .filter_map(|c| c.source.exposure().map(|why| format!("camera {}: {why}", c.id)))
            .collect();
        let p = &self.prusa_connect;
        if !p.cameras.is_empty() && !p.endpoint.https && !is_loopback(&p.endpoint.host) {
            out.push(format!(
                "prusa_connect.url: {} is http://: the cameras' tokens cross the network unencrypted; use https:// unless this is a proxy on a trusted network",
                p.endpoint.url
            ));
        }
        if let Some(auth) = &self.http.auth {
            for l in auth.open_listeners.iter().filter(|l| l.address_only) {
                out.push(format!(
                    "http.auth.open_listeners: \"{0}\" opens only the \"streams\" area (it used to open everything); to choose, write {{ listen = \"{0}\", areas = [\"streams\"] }}",
                    l.listen
                ));
            }
        }
        out
    }

    /// Ids of the cameras that need ffmpeg.
    pub fn ffmpeg_cameras(&self) -> Vec<&str> {
        self.cameras
            .iter()
            .filter(|c| c.source.uses_ffmpeg())
            .map(|c| c.id.as_str())
            .collect()
    }

    /// The rule for a file without cameras: with `[defaults] auto_v4l2` (the default), every
    /// V4L2 capture device found becomes a camera with the defaults, named after its card and
    /// opened by its by-id path when it has one. A file with cameras is left alone.
    /// `scan` lists the devices; it runs only when the rule applies.
    pub fn add_found_cameras(&mut self, scan: impl FnOnce() -> Vec<Servable>) {
        if !self.cameras.is_empty() || !self.defaults.auto_v4l2 {
            return;
        }
        let found = scan();
        for device in &found {
            self.cameras
                .push(Arc::new(CameraConfig::found(device, &self.defaults)));
        }
        self.cameras_found = found.len();
    }
}

/// Why a configuration was not accepted. `Display` gives one line per problem.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read the configuration file: {source} (pass another file with --config)")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{}", .problems.join("\n"))]
    Invalid { problems: Vec<String> },
}

impl ConfigError {
    /// The individual problem lines.
    pub fn lines(&self) -> Vec<String> {
        match self {
            ConfigError::Read { .. } => vec![self.to_string()],
            ConfigError::Invalid { problems } => problems.clone(),
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    http: http::RawHttp,
    #[serde(default)]
    defaults: http::RawDefaults,
    #[serde(default)]
    ffmpeg: http::RawFfmpeg,
    mqtt: Option<mqtt::RawMqtt>,
    #[serde(default)]
    light: Vec<light::RawLight>,
    #[serde(default)]
    camera: Vec<camera::RawCamera>,
    #[serde(default)]
    moonraker: Vec<moonraker::RawMoonraker>,
    #[serde(default)]
    wall: wall::RawWall,
    #[serde(default)]
    webrtc: webrtc::RawWebrtc,
    #[serde(default)]
    rtsp: rtsp::RawRtsp,
    #[serde(default)]
    prusa_connect: prusa_connect::RawPrusaConnect,
    timelapse: Option<timelapse::RawTimelapse>,
}

/// `localhost`, `127.0.0.1`, `::1` and the rest of 127/8.
fn is_loopback(host: &str) -> bool {
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|a| a.is_loopback())
}

/// Read and validate a configuration file; with no camera in it, serve the V4L2 devices found
/// under `/dev` (see [`Config::add_found_cameras`]).
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.display().to_string(),
        source,
    })?;
    let mut config = parse(&text, path)?;
    config.add_found_cameras(|| crate::source::v4l2::list::servable(Path::new("/dev")));
    Ok(config)
}

/// Validate configuration text; `path` only names the file in messages.
pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
    let mut v = diag::Validator::new(text, path.to_path_buf());
    let raw: RawConfig = match toml::from_str(text) {
        Ok(raw) => raw,
        Err(e) => {
            v.toml_error(&e);
            return Err(ConfigError::Invalid { problems: v.problems });
        }
    };
    let http = v.http(&raw.http);
    let mqtt = raw.mqtt.as_ref().and_then(|m| v.mqtt(m));
    let lights = v.lights(&raw.light);
    let defaults = v.defaults(
        &raw.defaults,
        &raw.ffmpeg,
        mqtt.as_ref().and_then(|m| m.snapshot_interval),
    );
    let cameras = v.cameras(
        &raw.camera,
        &camera::Context {
            defaults: &defaults,
            mqtt: mqtt.as_ref(),
            lights: &lights,
            listen: &http.listen,
        },
    );
    // Open listeners must be ones farmcam listens on (as written: "127.0.0.1:8080").
    if let (Some(auth), Some(raw_auth)) = (&http.auth, &raw.http.auth) {
        let ours: Vec<std::net::SocketAddr> = http
            .listen
            .iter()
            .copied()
            .chain(cameras.iter().filter_map(|c| c.listen))
            .collect();
        for a in auth.open_listeners.iter().map(|l| &l.listen) {
            if !ours.contains(a) {
                v.problem(
                    Some(raw_auth.span()),
                    "http.auth.open_listeners",
                    &format!("{a} is not an address in http.listen or a camera's listen"),
                );
            }
        }
    }
    if let Some(d) = &raw.http.default_camera {
        if !cameras.iter().any(|c| c.id == *d.get_ref()) {
            let ids: Vec<&str> = cameras.iter().map(|c| c.id.as_str()).collect();
            v.problem(
                Some(d.span()),
                "http.default_camera",
                &format!(
                    "{:?} is not a camera id in this file (cameras: {})",
                    d.get_ref(),
                    if ids.is_empty() {
                        "none".to_string()
                    } else {
                        ids.join(", ")
                    }
                ),
            );
        }
    }
    let default_farmcam_url = http.public_url.clone().or_else(|| match http.listen.as_slice() {
        [a] if !a.ip().is_unspecified() => Some(format!("http://{a}")),
        _ => None,
    });
    let ids: Vec<&str> = cameras.iter().map(|c| c.id.as_str()).collect();
    let gateway = mqtt
        .as_ref()
        .map(|m| m.node_id.clone())
        .unwrap_or_else(mqtt::default_node_id);
    let webrtc = v.webrtc(&raw.webrtc);
    let rtsp = v.rtsp(&raw.rtsp);
    let moonrakers = v.moonrakers(
        &raw.moonraker,
        &ids,
        default_farmcam_url,
        &gateway,
        webrtc.is_some(),
    );
    let node_id = gateway;
    let wall_gateways = v.wall(&raw.wall);
    let uploads: Vec<_> = raw
        .camera
        .iter()
        .enumerate()
        .filter_map(|(i, c)| c.prusa_connect.as_ref().map(|p| (i, c.id.get_ref().as_str(), p)))
        .collect();
    let prusa_connect = v.prusa_connect(&raw.prusa_connect, &uploads);
    let timelapse = raw.timelapse.as_ref().map(|t| v.timelapse(t));
    if !v.problems.is_empty() {
        return Err(ConfigError::Invalid { problems: v.problems });
    }
    Ok(Config {
        http,
        cameras,
        mqtt,
        lights,
        moonrakers,
        defaults,
        cameras_found: 0,
        node_id,
        wall_gateways,
        webrtc,
        rtsp,
        prusa_connect,
        timelapse,
    })
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::Duration;

    use super::*;
    use crate::frame::Size;
    use crate::source::SourceSpec;

    fn errors(text: &str) -> Vec<String> {
        match parse(text, Path::new("f.toml")) {
            Ok(_) => vec![],
            Err(e) => e.lines(),
        }
    }

    #[test]
    fn rtsp_is_off_unless_listen_is_set_and_its_ports_are_checked() {
        let cam = "[[camera]]\nid = \"a\"\nsource = \"test:\"\n";
        assert_eq!(parse(cam, Path::new("f.toml")).unwrap().rtsp, None);
        let c = parse(
            &format!("[rtsp]\nlisten = \"127.0.0.1:8554\"\n{cam}"),
            Path::new("f.toml"),
        )
        .unwrap();
        let r = c.rtsp.unwrap();
        assert_eq!((r.udp_port, r.max_sessions_per_client), (Some(8000), 8));
        let c = parse(
            &format!("[rtsp]\nlisten = \"127.0.0.1:8554\"\nudp = false\nudp_port = 9000\n{cam}"),
            Path::new("f.toml"),
        )
        .unwrap();
        assert_eq!(c.rtsp.unwrap().udp_port, None, "udp = false wins");
        let e = errors(&format!(
            "[rtsp]\nlisten = \"127.0.0.1:8554\"\nudp_port = 8001\n{cam}"
        ));
        assert!(
            e.iter()
                .any(|l| l.contains("rtsp.udp_port") && l.contains("even")),
            "{e:?}"
        );
        let e = errors(&format!("[rtsp]\nlisten = \"box:8554\"\n{cam}"));
        assert!(e.iter().any(|l| l.contains("rtsp.listen")), "{e:?}");
        let e = errors(&format!(
            "[rtsp]\nlisten = \"0.0.0.0:8554\"\nmax_sessions = 0\n{cam}"
        ));
        assert!(e.iter().any(|l| l.contains("rtsp.max_sessions")), "{e:?}");
    }

    #[test]
    fn ice_servers_are_stun_servers_and_a_turn_server_is_refused_saying_why() {
        let cam = "[[camera]]\nid = \"a\"\nsource = \"test:\"\n";
        let c = parse(
            &format!("[webrtc]\nice_servers = [\"stun:stun.example.net:3478\"]\n{cam}"),
            Path::new("f.toml"),
        )
        .unwrap();
        assert_eq!(c.webrtc.unwrap().ice_servers, ["stun:stun.example.net:3478"]);
        let e = parse(
            &format!("[webrtc]\nice_servers = [\"turn:turn.example.net:3478\"]\n{cam}"),
            Path::new("f.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("TURN server") && e.contains("credential"), "{e}");
    }

    #[test]
    fn webrtc_connect_timeout_is_a_duration_within_bounds() {
        let cam = "[[camera]]\nid = \"a\"\nsource = \"test:\"\n";
        let c = parse(
            &format!("[webrtc]\nconnect_timeout = \"5s\"\n{cam}"),
            Path::new("f.toml"),
        )
        .unwrap();
        assert_eq!(c.webrtc.unwrap().connect_timeout, Duration::from_secs(5));
        let c = parse(cam, Path::new("f.toml")).unwrap();
        assert_eq!(c.webrtc.unwrap().connect_timeout, Duration::from_secs(30));
        for bad in ["\"0s\"", "\"1h\"", "\"soon\""] {
            let e = errors(&format!("[webrtc]\nconnect_timeout = {bad}\n{cam}"));
            assert!(
                e.iter()
                    .any(|l| l.contains("f.toml:2:") && l.contains("webrtc.connect_timeout")),
                "{bad}: {e:?}"
            );
        }
    }

    #[test]
    fn minimal_camera_gets_defaults() {
        let c = parse(
            "[[camera]]\nid = \"a\"\nsource = \"test:\"\n",
            Path::new("f.toml"),
        )
        .unwrap();
        assert_eq!(c.http.listen, vec!["127.0.0.1:8080".parse().unwrap()]);
        assert_eq!(c.http.max_connections, 512);
        assert_eq!(c.cameras[0].name, "a");
        assert_eq!(c.cameras[0].idle_grace, Duration::from_secs(5));
    }

    #[test]
    fn listen_accepts_one_or_many_and_camera_overrides_defaults() {
        let c = parse(
            "[http]\nlisten = [\"127.0.0.1:1\", \"[::1]:2\"]\n[defaults]\nidle_grace = \"2m\"\n\
             [[camera]]\nid = \"a\"\nsource = \"test:\"\nidle_grace = \"250ms\"\nsize = \"640x480\"\nfps = 5\n\
             [[camera]]\nid = \"b\"\nsource = \"test:\"\n",
            Path::new("f.toml"),
        )
        .unwrap();
        assert_eq!(c.http.listen.len(), 2);
        assert_eq!(c.cameras[0].idle_grace, Duration::from_millis(250));
        assert_eq!(
            c.cameras[0].size,
            Some(Size {
                width: 640,
                height: 480
            })
        );
        assert_eq!(c.cameras[0].fps, Some(5));
        assert_eq!(c.cameras[1].idle_grace, Duration::from_secs(120));
    }

    #[test]
    fn unknown_key_is_named_with_position() {
        let e = errors("[[camera]]\nid = \"a\"\nsource = \"test:\"\nfsp = 3\n");
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].starts_with("f.toml:4:1: "), "{e:?}");
        assert!(e[0].contains("fsp"), "{e:?}");
    }

    #[test]
    fn every_semantic_problem_is_reported_once_with_its_key() {
        let e = errors(
            "[http]\nlisten = \"localhost\"\n[[camera]]\nid = \"Bad Id\"\nsource = \"nope://x\"\nsize = \"big\"\n\
             idle_grace = \"soon\"\nfps = 0\n[[camera]]\nid = \"ok\"\nsource = \"test:\"\n[[camera]]\nid = \"ok\"\nsource = \"test:\"\n",
        );
        let keys = [
            ("f.toml:2:10: http.listen", "not an address"),
            ("f.toml:4:6: camera[0].id", "not a valid id"),
            ("f.toml:5:10: camera[0].source", "nope://"),
            ("f.toml:6:8: camera[0].size", "WIDTHxHEIGHT"),
            ("f.toml:8:7: camera[0].fps", "between 1 and 240"),
            ("f.toml:7:14: camera[0].idle_grace", "not a duration"),
            ("f.toml:13:6: camera[2].id", "unique"),
        ];
        assert_eq!(e.len(), keys.len(), "{e:#?}");
        for (prefix, words) in keys {
            assert!(
                e.iter().any(|l| l.starts_with(prefix) && l.contains(words)),
                "missing {prefix}: {e:#?}"
            );
        }
    }

    #[test]
    fn camera_port_clash_is_rejected() {
        let e = errors("[http]\nlisten = \"0.0.0.0:8080\"\n[[camera]]\nid = \"a\"\nsource = \"test:\"\nlisten = \"127.0.0.1:8080\"\n");
        assert!(
            e.len() == 1 && e[0].contains("camera[0].listen") && e[0].contains("already used"),
            "{e:?}"
        );
    }

    #[test]
    fn missing_required_key_is_named() {
        let e = errors("[[camera]]\nid = \"a\"\n");
        assert!(e.len() == 1 && e[0].contains("source"), "{e:?}");
    }

    #[test]
    fn ffmpeg_camera_keys() {
        let c = parse(
            "[ffmpeg]\npath = \"/opt/ffmpeg/bin/ffmpeg\"\n[[camera]]\nid = \"a\"\nsource = \"rtsp://u:p@10.0.0.2/s\"\n\
             quality = 70\nffmpeg_args = [\"-rtsp_transport\", \"udp\"]\nmax_frame_size = \"512KiB\"\n\
             [[camera]]\nid = \"b\"\nsource = \"http://k1:8080/?action=stream\"\nmax_frame_size = 1048576\n",
            Path::new("f.toml"),
        )
        .unwrap();
        let (a, b) = (&c.cameras[0], &c.cameras[1]);
        let (SourceSpec::Ffmpeg(fa), SourceSpec::Ffmpeg(fb)) = (&a.source, &b.source) else {
            panic!("ffmpeg sources")
        };
        assert_eq!(fa.program, PathBuf::from("/opt/ffmpeg/bin/ffmpeg"));
        assert_eq!((fa.quality, a.max_frame_size), (Some(70), 512 * 1024));
        assert_eq!(fa.args, vec!["-rtsp_transport", "udp"]);
        assert_eq!(a.source.redacted(), "rtsp://***@10.0.0.2/s");
        assert_eq!((fb.quality, b.max_frame_size), (None, 1 << 20));
        assert_eq!(fb.program, PathBuf::from("/opt/ffmpeg/bin/ffmpeg"));

        // A camera's own decoder wins over [ffmpeg] decoder, which the others get.
        let c = parse(
            "[ffmpeg]\ndecoder = \"h264_v4l2m2m\"\n[[camera]]\nid = \"a\"\nsource = \"rtsp://10.0.0.2/s\"\n\
             decoder = \"h264\"\n[[camera]]\nid = \"b\"\nsource = \"rtsp://10.0.0.3/s\"\n",
            Path::new("f.toml"),
        )
        .unwrap();
        let decoders: Vec<_> = c
            .cameras
            .iter()
            .map(|c| match &c.source {
                SourceSpec::Ffmpeg(f) => f.decoder.clone(),
                _ => None,
            })
            .collect();
        assert_eq!(
            decoders,
            [Some("h264".to_string()), Some("h264_v4l2m2m".to_string())]
        );

        let e = errors(
            "[ffmpeg]\npath = \"\"\n[[camera]]\nid = \"a\"\nsource = \"test:\"\nquality = 50\nffmpeg_args = []\n\
             [[camera]]\nid = \"b\"\nsource = \"rtsp://x/\"\nquality = 0\nmax_frame_size = \"8 parsecs\"\n\
             [[camera]]\nid = \"c\"\nsource = \"rtsp://x/\"\nmax_frame_size = 10\n",
        );
        for (key, words) in [
            ("ffmpeg.path", "is empty"),
            ("camera[0].quality", "only applies to rtsp/http/ffmpeg"),
            ("camera[0].ffmpeg_args", "only applies to rtsp/http/ffmpeg"),
            ("camera[1].quality", "between 1"),
            ("camera[1].max_frame_size", "not a size in bytes"),
            ("camera[2].max_frame_size", "between 64KiB and 256MiB"),
        ] {
            assert!(
                e.iter()
                    .any(|l| l.contains(&format!(": {key}: ")) && l.contains(words)),
                "missing {key}: {e:#?}"
            );
        }
        assert_eq!(e.len(), 6, "{e:#?}");
    }

    #[test]
    fn default_camera_must_be_a_camera() {
        let e = errors("[http]\ndefault_camera = \"zz\"\n[[camera]]\nid = \"a\"\nsource = \"test:\"\n");
        assert!(
            e.len() == 1
                && e[0].starts_with("f.toml:2:18: http.default_camera: \"zz\" is not a camera id")
                && e[0].contains("cameras: a"),
            "{e:?}"
        );
        let c = parse(
            "[http]\ndefault_camera = \"a\"\n[[camera]]\nid = \"a\"\nsource = \"test:\"\n",
            Path::new("f.toml"),
        )
        .unwrap();
        assert_eq!(c.http.default_camera.as_deref(), Some("a"));
    }

    #[test]
    fn type_errors_never_quote_secrets() {
        let e = errors("[mqtt]\nurl = \"mqtt://h\"\nusername = \"u\"\npassword = 12345678\n");
        assert!(
            e.len() == 1 && e[0].contains("mqtt.password: invalid type: integer ***"),
            "{e:?}"
        );
        let e = errors("[[camera]]\nid = \"a\"\nsource = 31415926\n");
        assert!(e.len() == 1 && !e[0].contains("31415926"), "{e:?}");
        let e = errors("[[camera]]\nid = \"a\"\nsource = \"test:\"\nfps = \"ten\"\n");
        assert!(
            e[0].contains("\"ten\"") || e[0].contains("`ten`"),
            "other values still shown: {e:?}"
        );
    }
}

#[cfg(test)]
mod found_and_bugs {
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    use super::*;

    #[test]
    fn found_cameras_get_the_defaults_and_the_mqtt_snapshot_interval() {
        let mut c = parse(
            "[defaults]\nidle_grace = \"7s\"\n[mqtt]\nurl = \"mqtt://h\"\nsnapshot_interval = \"12s\"\n",
            Path::new("f.toml"),
        )
        .unwrap();
        let found = [Servable {
            id: "usb-cam".into(),
            name: "USB Camera".into(),
            path: PathBuf::from("/dev/v4l/by-id/usb-cam-video-index0"),
        }];
        c.add_found_cameras(|| found.to_vec());
        assert_eq!(c.cameras_found, 1);
        let cam = &c.cameras[0];
        assert_eq!((cam.id.as_str(), cam.name.as_str()), ("usb-cam", "USB Camera"));
        assert_eq!(cam.idle_grace, Duration::from_secs(7));
        assert_eq!(cam.snapshot_interval, Some(Duration::from_secs(12)));

        // Exactly what a configured camera with only id and source gets.
        let configured = parse(
            "[defaults]\nidle_grace = \"7s\"\n[mqtt]\nurl = \"mqtt://h\"\nsnapshot_interval = \"12s\"\n\
             [[camera]]\nid = \"usb-cam\"\nname = \"USB Camera\"\nsource = \"v4l2:/dev/v4l/by-id/usb-cam-video-index0\"\n",
            Path::new("f.toml"),
        )
        .unwrap();
        assert_eq!(*configured.cameras[0], **cam);
    }

    #[test]
    fn a_file_with_cameras_or_without_auto_v4l2_gets_no_found_ones() {
        let found = [Servable {
            id: "x".into(),
            name: "X".into(),
            path: PathBuf::from("/dev/video0"),
        }];
        let mut c = parse(
            "[[camera]]\nid = \"a\"\nsource = \"test:\"\n",
            Path::new("f.toml"),
        )
        .unwrap();
        c.add_found_cameras(|| found.to_vec());
        assert_eq!((c.cameras.len(), c.cameras_found), (1, 0));
        let mut c = parse("[defaults]\nauto_v4l2 = false\n", Path::new("f.toml")).unwrap();
        c.add_found_cameras(|| found.to_vec());
        assert!(c.cameras.is_empty());
    }

    #[test]
    fn a_non_ascii_fingerprint_is_a_problem_not_a_panic() {
        let fp = format!("{}é{}", "a".repeat(61), "a");
        let e = parse(
            &format!("[[camera]]\nid = \"p\"\nsource = \"bambu://bblp:12345678@10.0.0.2\"\ntls_fingerprint = \"{fp}\"\n"),
            Path::new("f.toml"),
        )
        .unwrap_err()
        .lines();
        assert!(
            e.len() == 1 && e[0].contains("camera[0].tls_fingerprint: "),
            "{e:?}"
        );
    }

    #[test]
    fn byte_counts_that_overflow_are_refused() {
        let wraps = (u64::MAX / (1 << 20) + 9).to_string();
        let e = parse(
            &format!("[[camera]]\nid = \"a\"\nsource = \"rtsp://h/\"\nmax_frame_size = \"{wraps}MiB\"\n"),
            Path::new("f.toml"),
        )
        .unwrap_err()
        .lines();
        assert!(
            e.len() == 1 && e[0].contains("camera[0].max_frame_size: must be between 64KiB and 256MiB"),
            "{e:?}"
        );
    }
}
