//! `[webrtc]`: live H.264/H.265 to browsers without transcoding (see `crate::outputs::webrtc`).

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::diag::Validator;

pub const DEFAULT_WEBRTC_LISTEN: &str = "0.0.0.0:8555";
pub const DEFAULT_MAX_SESSIONS: usize = 32;
pub const DEFAULT_MAX_SESSIONS_PER_CLIENT: usize = 8;
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebrtcConfig {
    /// The one UDP port every session's media uses.
    pub listen: SocketAddr,
    /// STUN/TURN servers told to browsers (`stun:host:port`), for viewers on other networks.
    pub ice_servers: Vec<String>,
    pub max_sessions: usize,
    pub max_sessions_per_client: usize,
    /// How long a signalled session may take to connect (ICE and DTLS) before it is dropped
    /// and its seat given back.
    pub connect_timeout: Duration,
}

impl Default for WebrtcConfig {
    fn default() -> Self {
        WebrtcConfig {
            listen: DEFAULT_WEBRTC_LISTEN.parse().expect("default address"),
            ice_servers: Vec::new(),
            max_sessions: DEFAULT_MAX_SESSIONS,
            max_sessions_per_client: DEFAULT_MAX_SESSIONS_PER_CLIENT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWebrtc {
    enabled: Option<bool>,
    listen: Option<Spanned<String>>,
    ice_servers: Option<Spanned<Vec<String>>>,
    max_sessions: Option<Spanned<i64>>,
    max_sessions_per_client: Option<Spanned<i64>>,
    connect_timeout: Option<Spanned<String>>,
}

impl Validator<'_> {
    /// `None`: WebRTC is off (`enabled = false`).
    pub(super) fn webrtc(&mut self, raw: &RawWebrtc) -> Option<WebrtcConfig> {
        let mut c = WebrtcConfig::default();
        if let Some(l) = &raw.listen {
            if let Some(a) = self.addr(l.get_ref(), l.span(), "webrtc.listen") {
                c.listen = a;
            }
        }
        if let Some(s) = &raw.ice_servers {
            for url in s.get_ref() {
                let ok = ["stun:", "stuns:", "turn:", "turns:"].iter().any(|p| {
                    url.strip_prefix(p)
                        .is_some_and(|r| !r.is_empty() && r.chars().all(|ch| ch.is_ascii_graphic()))
                });
                if ok && (url.starts_with("turn:") || url.starts_with("turns:")) {
                    // Browsers refuse a TURN server without a user name and credential, and
                    // farmcam has no way to hand them one.
                    self.problem(
                        Some(s.span()),
                        "webrtc.ice_servers",
                        &format!(
                            "{url:?} is a TURN server, which browsers take only with a user name and credential that farmcam cannot give them; list STUN servers only (\"stun:…\"), or reach the box over a VPN"
                        ),
                    );
                } else if ok {
                    c.ice_servers.push(url.clone());
                } else {
                    self.problem(
                        Some(s.span()),
                        "webrtc.ice_servers",
                        &format!(
                            "{url:?} is not a STUN or TURN server; write e.g. \"stun:stun.example.net:3478\""
                        ),
                    );
                }
            }
        }
        if let Some(n) = self.int(
            &raw.max_sessions,
            "webrtc.max_sessions",
            1..=1000,
            "must be between 1 and 1000",
        ) {
            c.max_sessions = n;
        }
        if let Some(n) = self.int(
            &raw.max_sessions_per_client,
            "webrtc.max_sessions_per_client",
            1..=1000,
            "must be between 1 and 1000",
        ) {
            c.max_sessions_per_client = n;
        }
        c.connect_timeout = self.duration_within(
            &raw.connect_timeout,
            "webrtc.connect_timeout",
            DEFAULT_CONNECT_TIMEOUT,
            Duration::from_secs(1)..=Duration::from_secs(300),
            "must be between 1s and 300s",
        );
        (raw.enabled != Some(false)).then_some(c)
    }
}
