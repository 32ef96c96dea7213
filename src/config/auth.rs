//! `[http.auth]`: who may use farmcam (users with password hashes, tokens), and what needs no
//! credentials (areas such as the wall, listeners such as a local proxy's). Off unless present.

use std::net::SocketAddr;

use serde::Deserialize;
use toml::Spanned;

use super::diag::Validator;
use super::values::Secret;
use crate::password::PasswordHash;

/// What farmcam serves, as `open` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Area {
    /// `GET /` (the page; its tiles still fetch snapshots and the API).
    Wall,
    /// Streams and snapshots: `/cameras/…`, the mjpg-streamer forms, cameras' own ports.
    Streams,
    /// `/api/cameras`, `/api/events`.
    Api,
    /// `/metrics`.
    Metrics,
}

impl Area {
    const ALL: [(&'static str, Area); 4] = [
        ("wall", Area::Wall),
        ("streams", Area::Streams),
        ("api", Area::Api),
        ("metrics", Area::Metrics),
    ];
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthConfig {
    /// Basic authentication: user name and password hash.
    pub users: Vec<(String, PasswordHash)>,
    /// Digest for RTSP: user name and `MD5(name:farmcam:password)` (lowercase hex), for the
    /// users that have `rtsp_digest`.
    pub rtsp_digests: Vec<(String, Secret)>,
    /// Bearer tokens (`Authorization: Bearer …` or `?token=…`).
    pub tokens: Vec<Secret>,
    /// Areas anyone may use.
    pub open: Vec<Area>,
    /// Listeners (as configured in `listen`) and the areas anyone reaching them may use: a proxy
    /// on the same box that serves streams to the printer's UI, say.
    pub open_listeners: Vec<OpenListener>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenListener {
    pub listen: SocketAddr,
    pub areas: Vec<Area>,
    /// Written in the old form (an address alone), which opened every area: warned about.
    pub address_only: bool,
}

impl AuthConfig {
    /// The areas open to anyone on the listener bound to `addr` (the configured `open` areas plus
    /// what `open_listeners` adds there).
    pub fn open_on(&self, addr: SocketAddr) -> Vec<Area> {
        let mut areas = self.open.clone();
        for l in self.open_listeners.iter().filter(|l| l.listen == addr) {
            areas.extend(l.areas.iter().copied());
        }
        areas
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAuth {
    users: Option<Vec<RawUser>>,
    tokens: Option<Spanned<Vec<String>>>,
    open: Option<Spanned<Vec<String>>>,
    open_listeners: Option<Spanned<Vec<RawOpenListener>>>,
}

/// `"127.0.0.1:8080"` (streams only) or `{ listen = "127.0.0.1:8080", areas = ["streams"] }`.
#[derive(Deserialize)]
#[serde(untagged)]
enum RawOpenListener {
    Address(String),
    Table { listen: String, areas: Vec<String> },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUser {
    name: Spanned<String>,
    password_hash: Spanned<String>,
    rtsp_digest: Option<Spanned<String>>,
}

/// Shorter tokens are refused: they can be guessed.
const MIN_TOKEN: usize = 16;

impl Validator<'_> {
    /// Area names, as `open` and `open_listeners` write them.
    fn areas(&mut self, names: &[String], span: std::ops::Range<usize>, key: &str) -> Vec<Area> {
        let mut out = Vec::new();
        for name in names {
            match Area::ALL.iter().find(|(n, _)| n == name) {
                Some((_, a)) => out.push(*a),
                None => self.problem(
                    Some(span.clone()),
                    key,
                    &format!("{name:?} is not an area; use \"wall\", \"streams\", \"api\" or \"metrics\""),
                ),
            }
        }
        out
    }

    pub(super) fn auth(&mut self, raw: &Option<Spanned<RawAuth>>) -> Option<AuthConfig> {
        let spanned = raw.as_ref()?;
        let raw = spanned.get_ref();
        let mut users = Vec::new();
        let mut rtsp_digests = Vec::new();
        for (i, u) in raw.users.iter().flatten().enumerate() {
            let name = u.name.get_ref();
            if name.is_empty() || name.contains(':') || name.chars().any(char::is_control) {
                self.problem(
                    Some(u.name.span()),
                    &format!("http.auth.users[{i}].name"),
                    "must be a non-empty name without ':' (Basic authentication splits on it)",
                );
            }
            if let Some(d) = &u.rtsp_digest {
                let v = d.get_ref();
                if v.len() == 32 && v.chars().all(|c| c.is_ascii_hexdigit()) {
                    rtsp_digests.push((name.clone(), Secret(v.to_ascii_lowercase())));
                } else {
                    // The value itself is never quoted.
                    self.problem(
                        Some(d.span()),
                        &format!("http.auth.users[{i}].rtsp_digest"),
                        "must be 32 hex digits, as `farmcam hash-password --rtsp-digest NAME` prints",
                    );
                }
            }
            match PasswordHash::parse(u.password_hash.get_ref()) {
                Ok(h) => users.push((name.clone(), h)),
                Err(msg) => self.problem(
                    Some(u.password_hash.span()),
                    &format!("http.auth.users[{i}].password_hash"),
                    &msg,
                ),
            }
        }
        let mut tokens = Vec::new();
        if let Some(t) = &raw.tokens {
            for token in t.get_ref() {
                if token.len() < MIN_TOKEN || !token.chars().all(|c| c.is_ascii_graphic()) {
                    // The token itself is never quoted.
                    self.problem(
                        Some(t.span()),
                        "http.auth.tokens",
                        &format!("a token must be at least {MIN_TOKEN} printable characters without spaces, e.g. from `openssl rand -hex 24`"),
                    );
                } else {
                    tokens.push(Secret(token.clone()));
                }
            }
        }
        if raw.users.as_ref().is_none_or(Vec::is_empty)
            && raw.tokens.as_ref().is_none_or(|t| t.get_ref().is_empty())
        {
            self.problem(
                Some(spanned.span()),
                "http.auth",
                "has neither users nor tokens, which would lock everyone out; add [[http.auth.users]] or tokens, or remove [http.auth]",
            );
        }
        let open = match &raw.open {
            Some(o) => self.areas(o.get_ref(), o.span(), "http.auth.open"),
            None => Vec::new(),
        };
        let mut open_listeners = Vec::new();
        if let Some(l) = &raw.open_listeners {
            for (i, entry) in l.get_ref().iter().enumerate() {
                let key = format!("http.auth.open_listeners[{i}]");
                // The old form (an address alone) opened every area, the API and metrics too, to
                // anyone the proxy lets in; now it opens only what a printer's UI needs.
                let (addr, areas, address_only) = match entry {
                    RawOpenListener::Address(a) => (a, vec![Area::Streams], true),
                    RawOpenListener::Table { listen, areas } => (
                        listen,
                        self.areas(areas, l.span(), &format!("{key}.areas")),
                        false,
                    ),
                };
                if let Some(listen) = self.addr(addr, l.span(), &key) {
                    open_listeners.push(OpenListener {
                        listen,
                        areas,
                        address_only,
                    });
                }
            }
        }
        Some(AuthConfig {
            users,
            rtsp_digests,
            tokens,
            open,
            open_listeners,
        })
    }
}
