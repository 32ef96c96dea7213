//! The `[http]`, `[defaults]` and `[ffmpeg]` sections.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::auth::{AuthConfig, RawAuth};
use super::diag::Validator;
use crate::source::ffmpeg::DEFAULT_PROGRAM;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_MAX_CONNECTIONS: usize = 512;
/// Open connections one client address may hold: a browser uses 6, a wall 3, Home Assistant one
/// per camera; well below `max_connections`, so one host cannot take every slot.
pub const DEFAULT_MAX_CONNECTIONS_PER_CLIENT: usize = 64;
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
pub const DEFAULT_WALL_REFRESH: Duration = Duration::from_secs(1);
pub const DEFAULT_IDLE_GRACE: Duration = Duration::from_secs(5);
pub const DEFAULT_SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_STALL_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone, Debug, PartialEq)]
pub struct HttpConfig {
    /// Addresses of the main listener (all cameras, API, events, page).
    pub listen: Vec<SocketAddr>,
    /// Open connections across all listeners; beyond this a client gets 503 and is closed.
    pub max_connections: usize,
    /// Open connections one client address may hold; beyond this it gets 503 (others do not).
    pub max_connections_per_client: usize,
    /// A viewer whose socket accepts nothing for this long is disconnected.
    pub write_timeout: Duration,
    /// A client must send its request headers within this time.
    pub header_read_timeout: Duration,
    /// How often each tile of the wall (`GET /`) refreshes its snapshot.
    pub wall_refresh: Duration,
    /// The camera the main port's mjpg-streamer URLs (`/?action=stream`, `/stream`, …) serve;
    /// `None`: the only camera, when there is one.
    pub default_camera: Option<String>,
    /// How clients reach farmcam (`https://farm.example/webcam`), for the URLs it advertises;
    /// `None`: taken from each request (proxy headers, `Host`).
    pub public_url: Option<String>,
    /// `[http.auth]`: None means anyone may use everything.
    pub auth: Option<AuthConfig>,
    /// Origins whose pages may read farmcam's answers (`Access-Control-Allow-Origin`); `*`: any.
    pub allowed_origins: Vec<String>,
    /// Host names (and addresses) requests must name in `Host`; empty: any.
    pub allowed_hosts: Vec<String>,
}

/// What every camera gets unless its own block says otherwise: `[defaults]`, the `[ffmpeg]`
/// program and `[mqtt] snapshot_interval`. Configured and found cameras alike start from it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Defaults {
    pub idle_grace: Duration,
    pub snapshot_timeout: Duration,
    pub stall_timeout: Duration,
    /// With no `[[camera]]` in the file, serve every V4L2 capture device found
    /// (`auto_v4l2`, default true).
    pub auto_v4l2: bool,
    /// The ffmpeg program (`[ffmpeg] path`).
    pub ffmpeg: PathBuf,
    /// The H.264/H.265 decoder ffmpeg cameras use (`[ffmpeg] decoder`); `None`: ffmpeg's own.
    pub decoder: Option<String>,
    /// How often cameras publish a snapshot over MQTT (`None`: MQTT off, or "off").
    pub snapshot_interval: Option<Duration>,
    /// `h264_encoder` of every camera that sets none.
    pub h264_encoder: crate::source::coded::encoding::EncoderChoice,
}

impl Default for Defaults {
    fn default() -> Self {
        Defaults {
            idle_grace: DEFAULT_IDLE_GRACE,
            snapshot_timeout: DEFAULT_SNAPSHOT_TIMEOUT,
            stall_timeout: DEFAULT_STALL_TIMEOUT,
            auto_v4l2: true,
            ffmpeg: PathBuf::from(DEFAULT_PROGRAM),
            decoder: None,
            snapshot_interval: None,
            h264_encoder: Default::default(),
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHttp {
    listen: Option<Spanned<OneOrMany>>,
    max_connections: Option<Spanned<i64>>,
    max_connections_per_client: Option<Spanned<i64>>,
    write_timeout: Option<Spanned<String>>,
    header_read_timeout: Option<Spanned<String>>,
    wall_refresh: Option<Spanned<String>>,
    pub(super) default_camera: Option<Spanned<String>>,
    public_url: Option<Spanned<String>>,
    pub(super) auth: Option<Spanned<RawAuth>>,
    allowed_origins: Option<Spanned<Vec<String>>>,
    allowed_hosts: Option<Spanned<Vec<String>>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDefaults {
    idle_grace: Option<Spanned<String>>,
    snapshot_timeout: Option<Spanned<String>>,
    stall_timeout: Option<Spanned<String>>,
    auto_v4l2: Option<bool>,
    h264_encoder: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFfmpeg {
    path: Option<Spanned<String>>,
    decoder: Option<Spanned<String>>,
}

impl Validator<'_> {
    /// A decoder name as ffmpeg lists them (`ffmpeg -decoders`), e.g. "h264_v4l2m2m".
    pub(super) fn decoder_name(&mut self, raw: &Option<Spanned<String>>, key: &str) -> Option<String> {
        let d = raw.as_ref()?;
        let name = d.get_ref().trim();
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            self.problem(
                Some(d.span()),
                key,
                &format!("{name:?} is not a decoder name; write one that `ffmpeg -decoders` lists, e.g. \"h264_v4l2m2m\" on a Raspberry Pi 4"),
            );
            return None;
        }
        Some(name.to_string())
    }

    pub(super) fn http(&mut self, raw: &RawHttp) -> HttpConfig {
        let mut listen = Vec::new();
        match &raw.listen {
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
        let wall_refresh = self.duration(&raw.wall_refresh, "http.wall_refresh", DEFAULT_WALL_REFRESH);
        if wall_refresh < Duration::from_millis(200) {
            let span = raw.wall_refresh.as_ref().map(|s| s.span());
            self.problem(span, "http.wall_refresh", "must be at least \"200ms\"");
        }
        let max_connections = self
            .int(
                &raw.max_connections,
                "http.max_connections",
                1..=100_000,
                "must be between 1 and 100000",
            )
            .unwrap_or(DEFAULT_MAX_CONNECTIONS);
        let max_connections_per_client = self
            .int(
                &raw.max_connections_per_client,
                "http.max_connections_per_client",
                1..=max_connections as i64,
                &format!("must be between 1 and max_connections ({max_connections})"),
            )
            .unwrap_or(DEFAULT_MAX_CONNECTIONS_PER_CLIENT.min(max_connections));
        HttpConfig {
            listen,
            max_connections,
            max_connections_per_client,
            write_timeout: self.duration(&raw.write_timeout, "http.write_timeout", DEFAULT_WRITE_TIMEOUT),
            header_read_timeout: self.duration(
                &raw.header_read_timeout,
                "http.header_read_timeout",
                DEFAULT_HEADER_READ_TIMEOUT,
            ),
            wall_refresh,
            // Checked against the cameras once they are known.
            default_camera: raw.default_camera.as_ref().map(|d| d.get_ref().clone()),
            public_url: raw.public_url.as_ref().and_then(|u| {
                let url = u.get_ref().trim().trim_end_matches('/');
                let rest = url.strip_prefix("http://").or_else(|| url.strip_prefix("https://"));
                let ok = rest.is_some_and(|r| {
                    let host = r.split('/').next().unwrap_or("");
                    !host.is_empty()
                        && !r.contains(['@', '?', '#', ' '])
                        && r.chars().all(|c| c.is_ascii_graphic())
                });
                if !ok {
                    self.problem(
                        Some(u.span()),
                        "http.public_url",
                        &format!("{url:?}: write how clients reach farmcam, e.g. \"https://farm.example/webcam\" (no credentials, no query)"),
                    );
                    return None;
                }
                Some(url.to_string())
            }),
            auth: self.auth(&raw.auth),
            allowed_origins: self.origins(&raw.allowed_origins),
            allowed_hosts: self.hosts(&raw.allowed_hosts),
        }
    }

    /// `allowed_origins`: `["*"]` (the default) or origins such as `"http://mainsail.local"`.
    fn origins(&mut self, raw: &Option<Spanned<Vec<String>>>) -> Vec<String> {
        let Some(o) = raw else {
            return vec!["*".to_string()];
        };
        let mut out = Vec::new();
        for origin in o.get_ref() {
            let origin = origin.trim().trim_end_matches('/');
            let ok = origin == "*"
                || ["http://", "https://"].iter().any(|p| {
                    origin.strip_prefix(p).is_some_and(|h| {
                        !h.is_empty()
                            && !h.contains(['/', '@', '?', '#'])
                            && h.chars().all(|c| c.is_ascii_graphic())
                    })
                });
            if ok {
                out.push(origin.to_ascii_lowercase());
            } else {
                self.problem(
                    Some(o.span()),
                    "http.allowed_origins",
                    &format!("{origin:?} is not an origin; write e.g. \"http://mainsail.local\" (scheme, host, optional port) or \"*\""),
                );
            }
        }
        out
    }

    /// `allowed_hosts`: names or addresses a request's `Host` may give (without the port).
    fn hosts(&mut self, raw: &Option<Spanned<Vec<String>>>) -> Vec<String> {
        let Some(h) = raw else { return Vec::new() };
        let mut out = Vec::new();
        for host in h.get_ref() {
            let host = host.trim().to_ascii_lowercase();
            if host.is_empty() || host.contains(['/', '@', ' ', ':']) && !host.starts_with('[') {
                self.problem(
                    Some(h.span()),
                    "http.allowed_hosts",
                    &format!("{host:?}: write a host name or address without scheme or port, e.g. \"farm.local\" or \"192.168.1.10\""),
                );
            } else {
                out.push(host.trim_start_matches('[').trim_end_matches(']').to_string());
            }
        }
        out
    }

    /// `[defaults]` and `[ffmpeg]`; `snapshot_interval` comes from `[mqtt]`.
    pub(super) fn defaults(
        &mut self,
        raw: &RawDefaults,
        ffmpeg_raw: &RawFfmpeg,
        snapshot_interval: Option<Duration>,
    ) -> Defaults {
        let ffmpeg = match &ffmpeg_raw.path {
            None => PathBuf::from(DEFAULT_PROGRAM),
            Some(p) if p.get_ref().trim().is_empty() => {
                self.problem(
                    Some(p.span()),
                    "ffmpeg.path",
                    "is empty; remove it to use \"ffmpeg\" from PATH, or give e.g. \"/usr/bin/ffmpeg\"",
                );
                PathBuf::from(DEFAULT_PROGRAM)
            }
            Some(p) => PathBuf::from(p.get_ref().trim()),
        };
        Defaults {
            idle_grace: self.duration(&raw.idle_grace, "defaults.idle_grace", DEFAULT_IDLE_GRACE),
            snapshot_timeout: self.duration(
                &raw.snapshot_timeout,
                "defaults.snapshot_timeout",
                DEFAULT_SNAPSHOT_TIMEOUT,
            ),
            stall_timeout: self.duration(
                &raw.stall_timeout,
                "defaults.stall_timeout",
                DEFAULT_STALL_TIMEOUT,
            ),
            auto_v4l2: raw.auto_v4l2.unwrap_or(true),
            decoder: self.decoder_name(&ffmpeg_raw.decoder, "ffmpeg.decoder"),
            ffmpeg,
            snapshot_interval,
            h264_encoder: raw
                .h264_encoder
                .as_ref()
                .and_then(|e| self.encoder_choice(e, "defaults.h264_encoder"))
                .unwrap_or_default(),
        }
    }
}
