//! The configuration file: raw serde structs (with source spans) → a validated [`Config`].
//!
//! Every problem a user can make is reported as `PATH:LINE:COL: key: message`, one line each, and
//! all semantic problems of a file are reported together.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::source::SourceSpec;

mod light;
mod mqtt;
mod v4l2;
pub use light::{parse_hex, LightConfig, Protocol};
pub use mqtt::{MqttConfig, Secret};
pub use v4l2::{control_name, ControlValue, PixelFormat, V4l2Options, DEFAULT_WARMUP_FRAMES};

/// Where `farmcam run` and `farmcam check` look when `--config` is not given.
pub const DEFAULT_PATH: &str = "/etc/farmcam/farmcam.toml";

/// A validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub http: HttpConfig,
    pub cameras: Vec<Arc<CameraConfig>>,
    /// The ffmpeg program (`[ffmpeg] path`), also copied into each camera.
    pub ffmpeg: PathBuf,
    /// `[mqtt]`: None means MQTT is off.
    pub mqtt: Option<MqttConfig>,
    /// `[[light]]` blocks.
    pub lights: Vec<LightConfig>,
    /// `[defaults]`: what cameras found automatically get.
    pub defaults: Defaults,
    /// How many of `cameras` were not in the file but found (V4L2 devices, see `auto_v4l2`).
    pub cameras_found: usize,
}

/// `[defaults]`, as cameras that are not in the file (found V4L2 cameras) need them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Defaults {
    pub idle_grace: Duration,
    pub snapshot_timeout: Duration,
    pub stall_timeout: Duration,
    /// With no `[[camera]]` in the file, serve every V4L2 capture device found
    /// (`auto_v4l2`, default true).
    pub auto_v4l2: bool,
}

impl Config {
    /// Ids of the cameras that need ffmpeg.
    pub fn ffmpeg_cameras(&self) -> Vec<&str> {
        self.cameras
            .iter()
            .filter(|c| c.source.uses_ffmpeg())
            .map(|c| c.id.as_str())
            .collect()
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct HttpConfig {
    /// Addresses of the main listener (all cameras, API, events, page).
    pub listen: Vec<SocketAddr>,
    /// Open connections across all listeners; beyond this a client gets 503 and is closed.
    pub max_connections: usize,
    /// A viewer whose socket accepts nothing for this long is disconnected.
    pub write_timeout: Duration,
    /// A client must send its request headers within this time.
    pub header_read_timeout: Duration,
    /// How often each tile of the wall (`GET /`) refreshes its snapshot.
    pub wall_refresh: Duration,
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

#[derive(Clone, Debug, PartialEq)]
pub struct CameraConfig {
    pub id: String,
    pub name: String,
    pub source: SourceSpec,
    pub size: Option<Size>,
    pub fps: Option<u32>,
    pub idle_grace: Duration,
    pub snapshot_timeout: Duration,
    pub stall_timeout: Duration,
    /// Optional dedicated port serving only this camera (mjpg-streamer style URLs).
    pub listen: Option<SocketAddr>,
    /// JPEG quality 1..=100 where farmcam (or ffmpeg for it) encodes; `None`: the source default.
    pub quality: Option<u8>,
    /// Extra ffmpeg input options, placed before `-i` (ffmpeg sources only).
    pub ffmpeg_args: Vec<String>,
    /// The ffmpeg program ffmpeg sources run (`[ffmpeg] path`).
    pub ffmpeg: PathBuf,
    /// Frames larger than this are dropped (and counted) by sources that cut a byte stream.
    pub max_frame_size: usize,
    /// How often a snapshot is published over MQTT (None: never; only with `[mqtt]`).
    pub snapshot_interval: Option<Duration>,
    /// The `[[light]]` switched with this camera's pump.
    pub light: Option<String>,
    /// `bambu://`: the printer certificate's pinned SHA-256 (None: not verified).
    pub tls_fingerprint: Option<[u8; 32]>,
    /// `v4l2:`: pixel format, controls, warm-up frames.
    pub v4l2: V4l2Options,
}

impl CameraConfig {
    /// A camera with default timings, for tests and built-in configurations.
    pub fn new(id: &str, source: SourceSpec) -> Self {
        CameraConfig {
            id: id.to_string(),
            name: id.to_string(),
            source,
            size: None,
            fps: None,
            idle_grace: DEFAULT_IDLE_GRACE,
            snapshot_timeout: DEFAULT_SNAPSHOT_TIMEOUT,
            stall_timeout: DEFAULT_STALL_TIMEOUT,
            listen: None,
            quality: None,
            ffmpeg_args: Vec::new(),
            ffmpeg: PathBuf::from(DEFAULT_FFMPEG),
            max_frame_size: DEFAULT_MAX_FRAME_SIZE,
            snapshot_interval: None,
            light: None,
            tls_fingerprint: None,
            v4l2: V4l2Options::new(),
        }
    }
}

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_MAX_CONNECTIONS: usize = 512;
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
pub const DEFAULT_WALL_REFRESH: Duration = Duration::from_secs(1);
pub const DEFAULT_IDLE_GRACE: Duration = Duration::from_secs(5);
pub const DEFAULT_SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_STALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Looked up in PATH.
pub const DEFAULT_FFMPEG: &str = "ffmpeg";
pub const DEFAULT_MAX_FRAME_SIZE: usize = crate::jpeg::DEFAULT_MAX_FRAME;

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

// ---------------------------------------------------------------------------------------------
// Raw file structure

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    http: RawHttp,
    #[serde(default)]
    defaults: RawDefaults,
    #[serde(default)]
    ffmpeg: RawFfmpeg,
    mqtt: Option<mqtt::RawMqtt>,
    #[serde(default)]
    light: Vec<light::RawLight>,
    #[serde(default)]
    camera: Vec<RawCamera>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawFfmpeg {
    path: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum IntOrString {
    Int(i64),
    Str(String),
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    listen: Option<Spanned<OneOrMany>>,
    max_connections: Option<Spanned<i64>>,
    write_timeout: Option<Spanned<String>>,
    header_read_timeout: Option<Spanned<String>>,
    wall_refresh: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDefaults {
    idle_grace: Option<Spanned<String>>,
    snapshot_timeout: Option<Spanned<String>>,
    stall_timeout: Option<Spanned<String>>,
    auto_v4l2: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCamera {
    id: Spanned<String>,
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
    max_frame_size: Option<Spanned<IntOrString>>,
    snapshot_interval: Option<Spanned<String>>,
    light: Option<Spanned<String>>,
    tls_verify: Option<Spanned<String>>,
    tls_fingerprint: Option<Spanned<String>>,
    format: Option<Spanned<String>>,
    controls: Option<Spanned<std::collections::BTreeMap<String, ControlValue>>>,
    warmup_frames: Option<Spanned<i64>>,
}

// ---------------------------------------------------------------------------------------------
// Loading and validation

/// Read and validate a configuration file.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.display().to_string(),
        source,
    })?;
    parse(&text, path)
}

/// Validate configuration text; `path` only names the file in messages.
pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
    let mut v = Validator {
        text,
        path: path.to_path_buf(),
        problems: Vec::new(),
    };
    let raw: RawConfig = match toml::from_str(text) {
        Ok(raw) => raw,
        Err(e) => {
            let msg = e
                .message()
                .trim()
                .replace('\n', " ")
                .replace("i64", "a whole number");
            let key = e.span().and_then(|s| key_at(text, s.start)).unwrap_or_default();
            // Type errors quote the value (`invalid type: integer `12345678``): never for keys
            // that may hold a password, an access code or a URL with credentials.
            let msg = if ["password", "source", "url", "ffmpeg_args", "tls_fingerprint"]
                .iter()
                .any(|k| key.ends_with(k))
            {
                hide_quoted(&msg)
            } else {
                msg
            };
            v.problem(e.span(), &key, &msg);
            return Err(ConfigError::Invalid { problems: v.problems });
        }
    };
    let config = v.validate(raw);
    if v.problems.is_empty() {
        Ok(config)
    } else {
        Err(ConfigError::Invalid { problems: v.problems })
    }
}

struct Validator<'a> {
    text: &'a str,
    path: PathBuf,
    problems: Vec<String>,
}

impl Validator<'_> {
    fn problem(&mut self, span: Option<Range<usize>>, key: &str, message: &str) {
        let (line, col) = span.map(|s| line_col(self.text, s.start)).unwrap_or((1, 1));
        let key = if key.is_empty() {
            String::new()
        } else {
            format!("{key}: ")
        };
        self.problems
            .push(format!("{}:{line}:{col}: {key}{message}", self.path.display()));
    }

    fn duration(&mut self, raw: &Option<Spanned<String>>, key: &str, default: Duration) -> Duration {
        let Some(s) = raw else { return default };
        match parse_duration(s.get_ref()) {
            Ok(d) => d,
            Err(msg) => {
                self.problem(Some(s.span()), key, &msg);
                default
            }
        }
    }

    fn addr(&mut self, s: &str, span: Range<usize>, key: &str) -> Option<SocketAddr> {
        match s.parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                self.problem(
                    Some(span),
                    key,
                    &format!("{s:?} is not an address:port (write e.g. \"127.0.0.1:8080\" or \"0.0.0.0:8081\" or \"[::]:8080\")"),
                );
                None
            }
        }
    }

    fn validate(&mut self, raw: RawConfig) -> Config {
        // [http]
        let mut listen = Vec::new();
        match &raw.http.listen {
            None => listen.push(DEFAULT_LISTEN.parse().expect("default address")),
            Some(l) => {
                let span = l.span();
                let list = match l.get_ref() {
                    OneOrMany::One(s) => vec![s.clone()],
                    OneOrMany::Many(v) => v.clone(),
                };
                if list.is_empty() {
                    self.problem(
                        Some(span.clone()),
                        "http.listen",
                        "needs at least one address, e.g. \"127.0.0.1:8080\"",
                    );
                }
                for s in &list {
                    if let Some(a) = self.addr(s, span.clone(), "http.listen") {
                        listen.push(a);
                    }
                }
            }
        }
        let max_connections = match &raw.http.max_connections {
            None => DEFAULT_MAX_CONNECTIONS,
            Some(n) if (1..=100_000).contains(n.get_ref()) => *n.get_ref() as usize,
            Some(n) => {
                self.problem(
                    Some(n.span()),
                    "http.max_connections",
                    "must be between 1 and 100000",
                );
                DEFAULT_MAX_CONNECTIONS
            }
        };
        let write_timeout = self.duration(
            &raw.http.write_timeout,
            "http.write_timeout",
            DEFAULT_WRITE_TIMEOUT,
        );
        let header_read_timeout = self.duration(
            &raw.http.header_read_timeout,
            "http.header_read_timeout",
            DEFAULT_HEADER_READ_TIMEOUT,
        );

        let wall_refresh = self.duration(&raw.http.wall_refresh, "http.wall_refresh", DEFAULT_WALL_REFRESH);
        if wall_refresh < Duration::from_millis(200) {
            let span = raw.http.wall_refresh.as_ref().map(|s| s.span());
            self.problem(span, "http.wall_refresh", "must be at least \"200ms\"");
        }

        // [defaults]
        let idle_grace = self.duration(
            &raw.defaults.idle_grace,
            "defaults.idle_grace",
            DEFAULT_IDLE_GRACE,
        );
        let snapshot_timeout = self.duration(
            &raw.defaults.snapshot_timeout,
            "defaults.snapshot_timeout",
            DEFAULT_SNAPSHOT_TIMEOUT,
        );
        let stall_timeout = self.duration(
            &raw.defaults.stall_timeout,
            "defaults.stall_timeout",
            DEFAULT_STALL_TIMEOUT,
        );

        // [ffmpeg]
        let ffmpeg = match &raw.ffmpeg.path {
            None => PathBuf::from(DEFAULT_FFMPEG),
            Some(p) if p.get_ref().trim().is_empty() => {
                self.problem(
                    Some(p.span()),
                    "ffmpeg.path",
                    "is empty; remove it to use \"ffmpeg\" from PATH, or give e.g. \"/usr/bin/ffmpeg\"",
                );
                PathBuf::from(DEFAULT_FFMPEG)
            }
            Some(p) => PathBuf::from(p.get_ref().trim()),
        };

        // [mqtt]
        let mqtt = raw.mqtt.as_ref().and_then(|m| self.mqtt(m));

        // [[light]]
        let lights = self.lights(&raw.light);

        // [[camera]]
        let mut ids = HashSet::new();
        let mut ports: Vec<SocketAddr> = listen.clone();
        let mut cameras = Vec::new();
        for (i, c) in raw.camera.iter().enumerate() {
            let id = c.id.get_ref().clone();
            let at = |k: &str| format!("camera[{i}].{k}");
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
            let parsed = SourceSpec::parse(c.source.get_ref());
            let source_valid = parsed.is_ok();
            let source = match parsed {
                Ok(s) => s,
                Err(msg) => {
                    self.problem(Some(c.source.span()), &at("source"), &msg);
                    SourceSpec::TestPattern
                }
            };
            let size = c.size.as_ref().and_then(|s| match parse_size(s.get_ref()) {
                Ok(size) => Some(size),
                Err(msg) => {
                    self.problem(Some(s.span()), &at("size"), &msg);
                    None
                }
            });
            let fps = match &c.fps {
                None => None,
                Some(f) if (1..=240).contains(f.get_ref()) => Some(*f.get_ref() as u32),
                Some(f) => {
                    self.problem(
                        Some(f.span()),
                        &at("fps"),
                        "must be between 1 and 240 frames per second",
                    );
                    None
                }
            };
            let cam_listen = c.listen.as_ref().and_then(|l| {
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
            let quality = match &c.quality {
                None => None,
                Some(q) if (1..=100).contains(q.get_ref()) => Some(*q.get_ref() as u8),
                Some(q) => {
                    self.problem(
                        Some(q.span()),
                        &at("quality"),
                        "must be between 1 (smallest) and 100 (best); 90 is a good start",
                    );
                    None
                }
            };
            let is_v4l2 = matches!(source, SourceSpec::V4l2(_));
            if source_valid && !source.uses_ffmpeg() {
                if let (Some(q), false) = (&c.quality, is_v4l2) {
                    self.problem(
                        Some(q.span()),
                        &at("quality"),
                        "only applies to rtsp/http/ffmpeg and v4l2 sources; remove it",
                    );
                }
                if let Some(a) = &c.ffmpeg_args {
                    self.problem(
                        Some(a.span()),
                        &at("ffmpeg_args"),
                        "only applies to rtsp/http/ffmpeg sources; remove it",
                    );
                }
            }
            let max_frame_size = match &c.max_frame_size {
                None => DEFAULT_MAX_FRAME_SIZE,
                Some(m) => match parse_bytes(
                    m.get_ref(),
                    64 * 1024..=256 * 1024 * 1024,
                    "between 64KiB and 256MiB (default 8MiB)",
                ) {
                    Ok(n) => n,
                    Err(msg) => {
                        self.problem(Some(m.span()), &at("max_frame_size"), &msg);
                        DEFAULT_MAX_FRAME_SIZE
                    }
                },
            };
            let is_bambu = matches!(source, SourceSpec::Bambu(_));
            let tls_fingerprint = c.tls_fingerprint.as_ref().and_then(|f| {
                if source_valid && !is_bambu {
                    self.problem(
                        Some(f.span()),
                        &at("tls_fingerprint"),
                        "only applies to bambu:// sources",
                    );
                    return None;
                }
                crate::source::bambu::parse_fingerprint(f.get_ref())
                    .map_err(|msg| self.problem(Some(f.span()), &at("tls_fingerprint"), &msg))
                    .ok()
            });
            if let Some(v) = &c.tls_verify {
                match v.get_ref().as_str() {
                    _ if source_valid && !is_bambu => {
                        self.problem(Some(v.span()), &at("tls_verify"), "only applies to bambu:// sources")
                    }
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
            let light = c.light.as_ref().and_then(|l| {
                if lights.iter().any(|x| x.id == *l.get_ref()) {
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
            let v4l2 = self.v4l2(
                v4l2::RawV4l2 {
                    format: &c.format,
                    controls: &c.controls,
                    warmup_frames: &c.warmup_frames,
                },
                i,
                source_valid.then_some(is_v4l2),
            );
            if let SourceSpec::V4l2(path) = &source {
                if let Some(other) = cameras.iter().find(|o: &&Arc<CameraConfig>| o.source == source) {
                    self.problem(
                        Some(c.source.span()),
                        &at("source"),
                        &format!(
                            "{} is already camera {:?}; a device can be opened by one camera only",
                            path.display(),
                            other.id
                        ),
                    );
                }
            }
            cameras.push(Arc::new(CameraConfig {
                name: c
                    .name
                    .clone()
                    .filter(|n| !n.trim().is_empty())
                    .unwrap_or_else(|| id.clone()),
                id,
                source,
                size,
                fps,
                idle_grace: self.duration(&c.idle_grace, &at("idle_grace"), idle_grace),
                snapshot_timeout: self.duration(
                    &c.snapshot_timeout,
                    &at("snapshot_timeout"),
                    snapshot_timeout,
                ),
                stall_timeout: self.duration(&c.stall_timeout, &at("stall_timeout"), stall_timeout),
                listen: cam_listen,
                quality,
                ffmpeg_args: c
                    .ffmpeg_args
                    .as_ref()
                    .map(|a| a.get_ref().clone())
                    .unwrap_or_default(),
                ffmpeg: ffmpeg.clone(),
                max_frame_size,
                light,
                tls_fingerprint,
                v4l2,
                snapshot_interval: self.snapshot_interval(
                    &c.snapshot_interval,
                    &at("snapshot_interval"),
                    &mqtt,
                    raw.mqtt.as_ref(),
                ),
            }));
        }
        Config {
            http: HttpConfig {
                listen,
                max_connections,
                write_timeout,
                header_read_timeout,
                wall_refresh,
            },
            cameras,
            ffmpeg,
            mqtt,
            lights,
            defaults: Defaults {
                idle_grace,
                snapshot_timeout,
                stall_timeout,
                auto_v4l2: raw.defaults.auto_v4l2.unwrap_or(true),
            },
            cameras_found: 0,
        }
    }
}

/// `[a-z0-9][a-z0-9_-]*`, at most 64 characters.
pub fn valid_id(id: &str) -> bool {
    let mut chars = id.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c.is_ascii_digit())
        && id.len() <= 64
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

/// Human durations: "250ms", "5s", "2m", "1h 30m". Zero is allowed (e.g. no idle grace).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("{s:?} is not a duration ({e}); write e.g. \"250ms\", \"5s\" or \"2m\""))
}

/// "1280x720".
pub fn parse_size(s: &str) -> Result<Size, String> {
    let bad = || format!("{s:?} is not a size; write WIDTHxHEIGHT, e.g. \"1280x720\" (16..7680 x 16..4320)");
    let (w, h) = s.trim().split_once(['x', 'X']).ok_or_else(bad)?;
    let width: u32 = w.trim().parse().map_err(|_| bad())?;
    let height: u32 = h.trim().parse().map_err(|_| bad())?;
    if !(16..=7680).contains(&width) || !(16..=4320).contains(&height) {
        return Err(bad());
    }
    Ok(Size { width, height })
}

/// A byte count: a whole number, or a string like "512KiB", "8MiB", "8MB", within `range`
/// (whose bounds the message names as `range_text`).
fn parse_bytes(
    v: &IntOrString,
    range: std::ops::RangeInclusive<u64>,
    range_text: &str,
) -> Result<usize, String> {
    let n: u64 = match v {
        IntOrString::Int(n) => u64::try_from(*n).unwrap_or(0),
        IntOrString::Str(s) => {
            let t = s.trim();
            let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
            let (num, unit) = t.split_at(split);
            let mult: u64 = match unit.trim() {
                "" | "B" => 1,
                "K" | "KB" | "KiB" | "k" | "kB" => 1024,
                "M" | "MB" | "MiB" => 1024 * 1024,
                _ => {
                    return Err(format!(
                        "{s:?} is not a size in bytes; write e.g. \"8MiB\" or \"512KiB\""
                    ))
                }
            };
            num.parse::<u64>()
                .map_err(|_| format!("{s:?} is not a size in bytes; write e.g. \"8MiB\" or \"512KiB\""))?
                * mult
        }
    };
    if !range.contains(&n) {
        return Err(format!("must be {range_text}"));
    }
    Ok(n as usize)
}

/// `a `secret` b` → `a *** b`.
fn hide_quoted(msg: &str) -> String {
    let mut out = String::new();
    for (i, part) in msg.split('`').enumerate() {
        out.push_str(if i % 2 == 1 { "***" } else { part });
    }
    out
}

/// The dotted key whose value starts at `offset` (e.g. `camera[1].fps`), for parse errors that
/// only carry a position.
fn key_at(text: &str, offset: usize) -> Option<String> {
    let offset = offset.min(text.len());
    let line_start = text[..offset].rfind('\n').map(|i| i + 1).unwrap_or(0);
    let line = &text[line_start..];
    let line = &line[..line.find('\n').unwrap_or(line.len())];
    let eq = line.find('=')?;
    if line_start + eq >= offset {
        return None;
    }
    let key = line[..eq].trim();
    if key.is_empty()
        || !key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return None;
    }
    // The enclosing table: the last header before this line; arrays of tables are numbered.
    let before = &text[..line_start];
    let header = before.lines().rev().map(str::trim).find(|l| l.starts_with('['));
    Some(match header {
        None => key.to_string(),
        Some(h) if h.starts_with("[[") => {
            let name = h.trim_matches(|c| c == '[' || c == ']').trim();
            let index = before
                .lines()
                .filter(|l| l.trim().starts_with("[[") && l.contains(name))
                .count()
                - 1;
            format!("{name}[{index}].{key}")
        }
        Some(h) => format!("{}.{key}", h.trim_matches(|c| c == '[' || c == ']').trim()),
    })
}

/// 1-based line and column (in characters) of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    (line, before[line_start..].chars().count() + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(text: &str) -> Vec<String> {
        match parse(text, Path::new("f.toml")) {
            Ok(_) => vec![],
            Err(e) => e.lines(),
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
        assert_eq!(a.ffmpeg, PathBuf::from("/opt/ffmpeg/bin/ffmpeg"));
        assert_eq!((a.quality, a.max_frame_size), (Some(70), 512 * 1024));
        assert_eq!(a.ffmpeg_args, vec!["-rtsp_transport", "udp"]);
        assert_eq!(a.source.redacted(), "rtsp://***@10.0.0.2/s");
        assert_eq!((b.quality, b.max_frame_size), (None, 1 << 20));

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

    #[test]
    fn ids_and_durations() {
        assert!(
            valid_id("printer-1") && valid_id("0_a") && !valid_id("-a") && !valid_id("A") && !valid_id("")
        );
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("5").is_err());
    }
}
