//! `[rtsp]`: each H.264/H.265 camera re-served over RTSP from its one connection (see
//! `crate::outputs::rtsp`). Off unless `listen` is set.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::diag::Validator;

pub const DEFAULT_UDP_PORT: u16 = 8000;
pub const DEFAULT_MAX_SESSIONS: usize = 32;
pub const DEFAULT_MAX_SESSIONS_PER_CLIENT: usize = 8;
/// RFC 2326's default: a UDP session without a request or RTCP report this long ends.
pub const DEFAULT_SESSION_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RtspConfig {
    /// The TCP address clients connect to (`rtsp://box:8554/<camera>`).
    pub listen: SocketAddr,
    /// The UDP port media leaves from (RTCP: the next one); 0: any free pair. `None`: no UDP
    /// transport (`udp = false`: TCP interleaved only).
    pub udp_port: Option<u16>,
    pub max_sessions: usize,
    pub max_sessions_per_client: usize,
    /// A UDP session that sends no request and no RTCP report this long ends; also how long an
    /// RTSP connection without sessions may stay silent.
    pub session_timeout: Duration,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRtsp {
    listen: Option<Spanned<String>>,
    udp: Option<bool>,
    udp_port: Option<Spanned<i64>>,
    max_sessions: Option<Spanned<i64>>,
    max_sessions_per_client: Option<Spanned<i64>>,
    session_timeout: Option<Spanned<String>>,
}

impl Validator<'_> {
    /// `None`: RTSP is off (no `listen`).
    pub(super) fn rtsp(&mut self, raw: &RawRtsp) -> Option<RtspConfig> {
        let listen = raw
            .listen
            .as_ref()
            .and_then(|l| self.addr(l.get_ref(), l.span(), "rtsp.listen"));
        let mut c = RtspConfig {
            listen: listen.unwrap_or_else(|| ([0, 0, 0, 0], 8554).into()),
            udp_port: (raw.udp != Some(false)).then_some(DEFAULT_UDP_PORT),
            max_sessions: DEFAULT_MAX_SESSIONS,
            max_sessions_per_client: DEFAULT_MAX_SESSIONS_PER_CLIENT,
            session_timeout: DEFAULT_SESSION_TIMEOUT,
        };
        c.session_timeout = self.duration_within(
            &raw.session_timeout,
            "rtsp.session_timeout",
            DEFAULT_SESSION_TIMEOUT,
            Duration::from_secs(1)..=Duration::from_secs(3600),
            "must be between 1s and 1h (clients send a keep-alive at half of it)",
        );
        if let Some(p) = self.int(
            &raw.udp_port,
            "rtsp.udp_port",
            0..=65534,
            "must be an even port between 1024 and 65534 (RTCP uses the next one)",
        ) {
            let p: u16 = p;
            if p != 0 && (p < 1024 || p % 2 == 1) {
                self.problem(
                    raw.udp_port.as_ref().map(|s| s.span()),
                    "rtsp.udp_port",
                    "must be an even port between 1024 and 65534 (RTCP uses the next one)",
                );
            } else if c.udp_port.is_some() {
                c.udp_port = Some(p);
            }
        }
        if let Some(n) = self.int(
            &raw.max_sessions,
            "rtsp.max_sessions",
            1..=1000,
            "must be between 1 and 1000",
        ) {
            c.max_sessions = n;
        }
        if let Some(n) = self.int(
            &raw.max_sessions_per_client,
            "rtsp.max_sessions_per_client",
            1..=1000,
            "must be between 1 and 1000",
        ) {
            c.max_sessions_per_client = n;
        }
        listen.map(|_| c)
    }
}
