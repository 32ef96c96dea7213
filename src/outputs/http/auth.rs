//! Who may use what, per request: `allowed_hosts`, `[http.auth]` (Basic users, tokens in a
//! header or `?token=`; for RTSP also Digest, for users with an `rtsp_digest`), and which
//! origins' pages may read the answers (CORS).
//!
//! Password hashes are slow on purpose, so a verified `Authorization` value is remembered for a
//! while (by a keyed hash of it, never the value), and at most one hash is checked at a time: a
//! client guessing passwords costs farmcam at most one core's share, never all of them.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, AUTHORIZATION, HOST, ORIGIN, RETRY_AFTER, VARY, WWW_AUTHENTICATE};
use hyper::{Request, Response, StatusCode};
use ring::hmac;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tracing::warn;

use super::path::Query;
use super::{api, Body};
use crate::config::{Area, AuthConfig, HttpConfig};
use crate::password::PasswordHash;
use crate::util::log_limit::{held_back, LogLimit};

/// How long a verified `Authorization` value is remembered.
const REMEMBER: Duration = Duration::from_secs(600);
/// Verified values remembered at most (beyond: the oldest is forgotten). Failures are never
/// remembered here, so no flood of wrong logins can push a verified one out.
const REMEMBER_MAX: usize = 1024;
/// Failed password checks one client address may cause per [`FAILURE_WINDOW`]; beyond, it is
/// answered 429 without a check until the window ends.
const FAILURES_ALLOWED: u32 = 10;
const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// Client addresses whose failures are remembered at most (the stalest are forgotten first).
const CLIENTS_MAX: usize = 4096;
/// A user name as the log shows it, at most this long.
const NAME_SHOWN: usize = 64;
/// A Digest nonce is good this long (then the client is challenged again, without a failure).
const NONCE_LIFE: Duration = Duration::from_secs(300);

/// Password checks and failed logins since start (for `/metrics`; they outlive reloads).
#[derive(Default)]
pub struct LoginStats {
    pub checks: AtomicU64,
    pub failures: AtomicU64,
}

/// A client address's recent logins.
struct Client {
    /// One password check at a time per address: its other requests wait for it (and then
    /// usually find the login verified), never start checks of their own.
    one: Arc<Semaphore>,
    failures: u32,
    window: Instant,
}

pub struct Guard {
    auth: Option<AuthConfig>,
    any_origin: bool,
    origins: Vec<String>,
    hosts: Vec<String>,
    /// The settings this guard was made from, to tell whether a reload changes them.
    settings: (Option<AuthConfig>, Vec<String>, Vec<String>),
    key: hmac::Key,
    verified: Mutex<HashMap<Vec<u8>, Instant>>,
    /// Per user, a keyed hash of the password last verified for it: a right login checks
    /// against this at once, never waiting behind strangers' slow checks (a flood of wrong
    /// logins from many addresses delays no one who logged in before).
    proven: Mutex<HashMap<String, Vec<u8>>>,
    /// Failures per client address (shared with the checks, which count their own failure
    /// before they let the next check of that address start, even when their client left).
    clients: Arc<Clients>,
    /// One password check at a time in all: guessing costs farmcam at most one core's share.
    /// Addresses without failed logins go first: a flood of wrong logins waits behind them.
    hashing: Arc<HashGate>,
    /// Checked for names that are no user's, so that they cost what a real check costs (and an
    /// answer's time does not tell which names exist).
    decoy: Arc<PasswordHash>,
    said: Mutex<LogLimit>,
}

struct Clients {
    map: Mutex<HashMap<IpAddr, Client>>,
    stats: Arc<LoginStats>,
}

/// Why a request is refused.
pub enum Refused {
    Unauthorized,
    /// Too many failed logins from this address: wait this long.
    TooMany(Duration),
}

impl Guard {
    pub fn new(http: &HttpConfig, stats: Arc<LoginStats>) -> Guard {
        let rng = ring::rand::SystemRandom::new();
        let decoy = PasswordHash::decoy(
            http.auth
                .as_ref()
                .and_then(|a| a.users.iter().map(|(_, h)| h.iterations()).max()),
        );
        Guard {
            auth: http.auth.clone(),
            any_origin: http.allowed_origins.iter().any(|o| o == "*"),
            origins: http.allowed_origins.clone(),
            hosts: http.allowed_hosts.clone(),
            settings: Self::settings_of(http),
            key: hmac::Key::generate(hmac::HMAC_SHA256, &rng).expect("the system's random source works"),
            verified: Mutex::default(),
            proven: Mutex::default(),
            clients: Arc::new(Clients {
                map: Mutex::default(),
                stats,
            }),
            hashing: Arc::default(),
            decoy: Arc::new(decoy),
            said: Mutex::new(LogLimit::with_cap(20)),
        }
    }

    fn settings_of(http: &HttpConfig) -> (Option<AuthConfig>, Vec<String>, Vec<String>) {
        (
            http.auth.clone(),
            http.allowed_origins.clone(),
            http.allowed_hosts.clone(),
        )
    }

    /// Whether `http` has the access settings this guard was made from.
    pub fn same_settings(&self, http: &HttpConfig) -> bool {
        self.settings == Self::settings_of(http)
    }

    /// The 421 for a request naming a `Host` that is not allowed (a page on another site reaching
    /// farmcam through DNS rebinding names that site).
    pub fn host_refusal(&self, req: &Request<Incoming>) -> Option<Response<Body>> {
        if self.hosts.is_empty() {
            return None;
        }
        let host = req
            .headers()
            .get(HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| req.uri().host())
            .unwrap_or("");
        let name = crate::util::hostport::split(host)
            .map_or("", |(h, _)| h)
            .to_ascii_lowercase();
        (!self.hosts.contains(&name)).then(|| {
            api::error(
                StatusCode::MISDIRECTED_REQUEST,
                "this Host is not one of http.allowed_hosts; use the address farmcam is configured for",
            )
        })
    }

    /// The refusal to send unless the request may use `area`, having arrived on the listener
    /// configured as `listener` from `peer` (401 without the right credentials, 429 after too
    /// many failed logins from that address); `None`: go ahead.
    pub async fn refusal(
        &self,
        req: &Request<Incoming>,
        q: &Query,
        area: Area,
        listener: SocketAddr,
        peer: SocketAddr,
    ) -> Option<Response<Body>> {
        let header = req.headers().get(AUTHORIZATION).map(HeaderValue::as_bytes);
        let outcome = self
            .check(
                area,
                listener,
                peer,
                header,
                q.get("token").map(str::as_bytes),
                None,
            )
            .await;
        match outcome {
            Ok(()) => None,
            Err(Refused::TooMany(wait)) => {
                let mut resp = api::error(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too many failed logins from this address; wait a minute and check the user name and password",
                );
                resp.headers_mut()
                    .insert(RETRY_AFTER, HeaderValue::from(wait.as_secs().max(1)));
                Some(resp)
            }
            Err(Refused::Unauthorized) => {
                let mut resp = api::error(
                    StatusCode::UNAUTHORIZED,
                    "authentication required: a user and password (Basic), or a token as `Authorization: Bearer TOKEN` or ?token=TOKEN",
                );
                resp.headers_mut()
                    .insert(WWW_AUTHENTICATE, HeaderValue::from_static(self.challenge()));
                Some(resp)
            }
        }
    }

    /// Whether a client from `peer`, on the listener configured as `listener`, may use `area` with
    /// this `Authorization` value or `?token=` (the token wins): the HTTP side and RTSP ask this.
    /// `digest`: the request's method and URI where Digest is accepted (RTSP), else `None`.
    pub async fn check(
        &self,
        area: Area,
        listener: SocketAddr,
        peer: SocketAddr,
        header: Option<&[u8]>,
        query_token: Option<&[u8]>,
        digest: Option<(&str, &str)>,
    ) -> Result<(), Refused> {
        let Some(auth) = self.auth.as_ref() else {
            return Ok(());
        };
        if auth.open_on(listener).contains(&area) {
            return Ok(());
        }
        let token = query_token.or_else(|| {
            header
                .and_then(|h| h.strip_prefix(b"Bearer "))
                .map(|t| t.trim_ascii())
        });
        match (token, header) {
            (Some(t), _) => {
                if auth.tokens.iter().any(|s| same(s.0.as_bytes(), t)) {
                    Ok(())
                } else {
                    self.say_failure(peer.ip(), "a token that is not one of http.auth.tokens");
                    Err(Refused::Unauthorized)
                }
            }
            (None, Some(h)) if h.starts_with(b"Basic ") => self.basic(auth, h, peer.ip()).await,
            (None, Some(h)) if h.starts_with(b"Digest ") => match digest {
                Some((method, uri)) => self.digest(auth, h, method, uri, peer),
                None => Err(Refused::Unauthorized),
            },
            _ => Err(Refused::Unauthorized),
        }
    }

    /// Whether RTSP offers Digest: every user has an `rtsp_digest` (clients prefer Digest when
    /// offered, so one offered to a user without it would lock that user out).
    pub fn offers_digest(&self) -> bool {
        self.auth.as_ref().is_some_and(|a| {
            !a.users.is_empty()
                && a.users
                    .iter()
                    .all(|(n, _)| a.rtsp_digests.iter().any(|(d, _)| d == n))
        })
    }

    /// A Digest challenge with a fresh nonce for the client connection at `peer`.
    pub fn digest_challenge(&self, peer: SocketAddr) -> String {
        let t = crate::util::unix_time::now_secs();
        format!(
            "Digest realm=\"{}\", nonce=\"{}\"",
            crate::password::REALM,
            self.nonce_at(t, peer)
        )
    }

    /// A nonce: when it was made and a keyed tag of that time and the client connection's
    /// address and port (no state kept): a header seen on one connection opens nothing on
    /// another.
    fn nonce_at(&self, t: u64, peer: SocketAddr) -> String {
        let mut msg = t.to_be_bytes().to_vec();
        msg.extend_from_slice(peer.to_string().as_bytes());
        let tag = hmac::sign(&self.key, &msg);
        let hex: String = tag.as_ref()[..12].iter().map(|b| format!("{b:02x}")).collect();
        format!("{t:016x}{hex}")
    }

    fn nonce_fresh(&self, nonce: &str, peer: SocketAddr) -> bool {
        let Some(t) = nonce.get(..16).and_then(|h| u64::from_str_radix(h, 16).ok()) else {
            return false;
        };
        let now = crate::util::unix_time::now_secs();
        now.saturating_sub(t) < NONCE_LIFE.as_secs()
            && t <= now + 1
            && same(self.nonce_at(t, peer).as_bytes(), nonce.as_bytes())
    }

    /// `Authorization: Digest …` (RFC 2617, MD5, with or without `qop=auth`) against the users'
    /// `rtsp_digest`. Cheap (no password hash), so checked at once; failures count like Basic's.
    fn digest(
        &self,
        auth: &AuthConfig,
        header: &[u8],
        method: &str,
        request_uri: &str,
        peer: SocketAddr,
    ) -> Result<(), Refused> {
        let ip = peer.ip();
        self.clients.permit(ip)?;
        let text = String::from_utf8_lossy(&header[7..]);
        let p = digest_params(&text);
        let get = |k: &str| {
            p.iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(k))
                .map(|(_, v)| v.as_str())
        };
        let (Some(user), Some(nonce), Some(uri), Some(response)) =
            (get("username"), get("nonce"), get("uri"), get("response"))
        else {
            return Err(Refused::Unauthorized);
        };
        if !self.nonce_fresh(nonce, peer) {
            // Stale, not ours, or made for another connection: a new challenge, not a failure.
            return Err(Refused::Unauthorized);
        }
        if !same_stream(uri, request_uri) {
            // Computed for another URL: it proves nothing about this one.
            return Err(Refused::Unauthorized);
        }
        let md5 = crate::password::md5_hex;
        let ha2 = md5(&format!("{method}:{uri}"));
        let ok = auth
            .rtsp_digests
            .iter()
            .find(|(n, _)| n == user)
            .is_some_and(|(_, ha1)| {
                let expected = match (get("qop"), get("nc"), get("cnonce")) {
                    (Some(q), Some(nc), Some(cnonce)) if q.eq_ignore_ascii_case("auth") => {
                        md5(&format!("{}:{nonce}:{nc}:{cnonce}:auth:{ha2}", ha1.0))
                    }
                    _ => md5(&format!("{}:{nonce}:{ha2}", ha1.0)),
                };
                same(expected.as_bytes(), response.to_ascii_lowercase().as_bytes())
            });
        self.clients.stats.checks.fetch_add(1, Relaxed);
        if ok {
            return Ok(());
        }
        self.clients.failed(ip);
        let name: String = user.chars().take(NAME_SHOWN).collect();
        self.say_failure(ip, &format!("user {name:?} and a wrong password (Digest)"));
        Err(Refused::Unauthorized)
    }

    /// The `WWW-Authenticate` challenge of a 401.
    pub fn challenge(&self) -> &'static str {
        if self.auth.as_ref().is_some_and(|a| a.users.is_empty()) {
            "Bearer realm=\"farmcam\""
        } else {
            "Basic realm=\"farmcam\", charset=\"UTF-8\""
        }
    }

    /// `Authorization: Basic …` against the users; a verified value is remembered for
    /// [`REMEMBER`]. Each check holds this address's and the global permit until it ends, even
    /// when the client leaves meanwhile (the hash runs on; nothing more starts).
    async fn basic(&self, auth: &AuthConfig, header: &[u8], ip: IpAddr) -> Result<(), Refused> {
        let tag = hmac::sign(&self.key, header).as_ref().to_vec();
        if self.is_verified(&tag) {
            return Ok(());
        }
        let Some((user, password)) = B64
            .decode(header[6..].trim_ascii())
            .ok()
            .and_then(|d| String::from_utf8(d).ok())
            .and_then(|s| s.split_once(':').map(|(u, p)| (u.to_string(), p.to_string())))
        else {
            return Err(Refused::Unauthorized);
        };
        let proof = self.proof(&user, &password);
        if self
            .proven
            .lock()
            .unwrap()
            .get(&user)
            .is_some_and(|p| same(p, &proof))
        {
            self.remember(tag);
            return Ok(());
        }
        let one = self.clients.permit(ip)?;
        let Ok(mine) = one.acquire_owned().await else {
            return Err(Refused::Unauthorized);
        };
        // The check this request waited for may have verified the same value.
        if self.is_verified(&tag) {
            return Ok(());
        }
        self.clients.locked(ip)?;
        let clean = self.clients.clean(ip);
        let all = self.hashing.acquire(clean).await;
        let hash = auth
            .users
            .iter()
            .find(|(name, _)| *name == user)
            .map(|(_, h)| Arc::new(h.clone()));
        let known = hash.is_some();
        let hash = hash.unwrap_or_else(|| self.decoy.clone());
        // Every name costs the largest count of iterations (the decoy's).
        let floor = self.decoy.iterations();
        let clients = self.clients.clone();
        clients.stats.checks.fetch_add(1, Relaxed);
        let ok = tokio::task::spawn_blocking(move || {
            let ok = hash.verify_at_least(&password, floor) && known;
            if !ok {
                clients.failed(ip);
            }
            // Only now may this address's next check, and anyone's, start.
            drop((mine, all));
            ok
        })
        .await
        .unwrap_or(false);
        if ok {
            self.remember(tag);
            self.proven.lock().unwrap().insert(user, proof);
            return Ok(());
        }
        let name: String = user.chars().take(NAME_SHOWN).collect();
        self.say_failure(ip, &format!("user {name:?} and a wrong password"));
        Err(Refused::Unauthorized)
    }

    /// A keyed hash of a user's name and password (cheap; the key never leaves this process).
    fn proof(&self, user: &str, password: &str) -> Vec<u8> {
        let mut ctx = hmac::Context::with_key(&self.key);
        ctx.update(b"proof\0");
        ctx.update(user.as_bytes());
        ctx.update(b"\0");
        ctx.update(password.as_bytes());
        ctx.sign().as_ref().to_vec()
    }

    fn is_verified(&self, tag: &[u8]) -> bool {
        self.verified
            .lock()
            .unwrap()
            .get(tag)
            .is_some_and(|at| at.elapsed() < REMEMBER)
    }

    fn remember(&self, tag: Vec<u8>) {
        let mut verified = self.verified.lock().unwrap();
        if verified.len() >= REMEMBER_MAX {
            verified.retain(|_, at| at.elapsed() < REMEMBER);
        }
        if verified.len() >= REMEMBER_MAX {
            if let Some(oldest) = verified.iter().min_by_key(|(_, at)| **at).map(|(t, _)| t.clone()) {
                verified.remove(&oldest);
            }
        }
        verified.insert(tag, Instant::now());
    }

    /// A failed login, in the log with the client's address (for fail2ban), never the password;
    /// at most once a minute per address and message, at most 20 lines a minute in all.
    fn say_failure(&self, ip: IpAddr, what: &str) {
        let msg = format!("failed login from {ip}: {what}");
        if let Some(n) = self.said.lock().unwrap().check(&msg) {
            warn!(client = %ip, "{msg}{}", held_back(n));
        }
    }

    /// `Access-Control-Allow-Origin` for the request's origin, if it may read the answer.
    pub fn cors(&self, origin: Option<&HeaderValue>, resp: &mut Response<Body>) {
        let h = resp.headers_mut();
        if self.any_origin {
            h.insert("access-control-allow-origin", HeaderValue::from_static("*"));
            return;
        }
        h.append(VARY, HeaderValue::from_static("origin"));
        if let Some(o) = origin {
            let lower = o.to_str().unwrap_or("").to_ascii_lowercase();
            if self.origins.contains(&lower) {
                h.insert("access-control-allow-origin", o.clone());
            }
        }
    }
}

/// One password check at a time, in two lanes: checks for addresses without failed logins in
/// the window go before those of addresses with some, so strangers' guesses (each address is
/// in the second lane after its first wrong one) never queue ahead of someone logging in.
#[derive(Default)]
struct HashGate {
    state: Mutex<GateState>,
}

#[derive(Default)]
struct GateState {
    busy: bool,
    clean: std::collections::VecDeque<tokio::sync::oneshot::Sender<HashPermit>>,
    suspect: std::collections::VecDeque<tokio::sync::oneshot::Sender<HashPermit>>,
}

/// The right to run one check; handed to the next waiter when dropped (also when a waiter left
/// after it was handed over: the permit is dropped with the channel, and goes on).
struct HashPermit(Option<Arc<HashGate>>);

impl HashGate {
    async fn acquire(self: &Arc<Self>, clean: bool) -> HashPermit {
        let rx = {
            let mut s = self.state.lock().unwrap();
            if !s.busy {
                s.busy = true;
                return HashPermit(Some(self.clone()));
            }
            let (tx, rx) = tokio::sync::oneshot::channel();
            if clean {
                s.clean.push_back(tx);
            } else {
                s.suspect.push_back(tx);
            }
            rx
        };
        // A gate is never dropped with waiters (each holds it through its Arc).
        rx.await.unwrap_or(HashPermit(None))
    }

    /// The permit goes to the next waiter: of addresses without failures first.
    fn release(self: &Arc<Self>) {
        loop {
            let next = {
                let mut s = self.state.lock().unwrap();
                match s.clean.pop_front().or_else(|| s.suspect.pop_front()) {
                    Some(next) => next,
                    None => {
                        s.busy = false;
                        return;
                    }
                }
            };
            match next.send(HashPermit(Some(self.clone()))) {
                Ok(()) => return,
                // That waiter left: the permit it did not take is not a release of its own.
                Err(mut unused) => unused.0 = None,
            }
        }
    }
}

impl Drop for HashPermit {
    fn drop(&mut self) {
        if let Some(gate) = self.0.take() {
            gate.release();
        }
    }
}

impl Clients {
    /// Whether `ip` has no failed login in the current window.
    fn clean(&self, ip: IpAddr) -> bool {
        self.map
            .lock()
            .unwrap()
            .get(&ip)
            .is_none_or(|c| c.failures == 0 || c.window.elapsed() >= FAILURE_WINDOW)
    }

    /// This address's one-check-at-a-time permit, unless it failed too often lately.
    fn permit(&self, ip: IpAddr) -> Result<Arc<Semaphore>, Refused> {
        self.locked(ip)?;
        let mut clients = self.map.lock().unwrap();
        if clients.len() >= CLIENTS_MAX && !clients.contains_key(&ip) {
            clients.retain(|_, c| c.window.elapsed() < FAILURE_WINDOW || c.one.available_permits() == 0);
            if clients.len() >= CLIENTS_MAX {
                if let Some(stalest) = clients.iter().min_by_key(|(_, c)| c.window).map(|(ip, _)| *ip) {
                    clients.remove(&stalest);
                }
            }
        }
        let c = clients.entry(ip).or_insert_with(|| Client {
            one: Arc::new(Semaphore::new(1)),
            failures: 0,
            window: Instant::now(),
        });
        Ok(c.one.clone())
    }

    fn locked(&self, ip: IpAddr) -> Result<(), Refused> {
        let clients = self.map.lock().unwrap();
        match clients.get(&ip) {
            Some(c) if c.failures >= FAILURES_ALLOWED && c.window.elapsed() < FAILURE_WINDOW => {
                Err(Refused::TooMany(FAILURE_WINDOW - c.window.elapsed()))
            }
            _ => Ok(()),
        }
    }

    fn failed(&self, ip: IpAddr) {
        self.stats.failures.fetch_add(1, Relaxed);
        let mut clients = self.map.lock().unwrap();
        if let Some(c) = clients.get_mut(&ip) {
            if c.window.elapsed() >= FAILURE_WINDOW {
                c.window = Instant::now();
                c.failures = 0;
            }
            c.failures += 1;
            if c.failures == FAILURES_ALLOWED {
                warn!(client = %ip, "login refused from {ip} for {FAILURE_WINDOW:?}: {FAILURES_ALLOWED} failed logins");
            }
        }
    }
}

/// Whether Digest's `uri` names the stream the request does: the same path (clients send the
/// whole URL or only its path, with or without the query and a trailing slash).
fn same_stream(digest_uri: &str, request_uri: &str) -> bool {
    fn path(u: &str) -> &str {
        let u = u.split(['?', '#']).next().unwrap_or("");
        let u = match u.split_once("://") {
            Some((_, rest)) => rest.find('/').map_or("", |i| &rest[i..]),
            None => u,
        };
        u.trim_end_matches('/')
    }
    path(digest_uri) == path(request_uri)
}

/// `name=value, name="quoted, value"` as Digest writes its parameters.
fn digest_params(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = s.trim();
    while !rest.is_empty() {
        let Some((name, after)) = rest.split_once('=') else {
            break;
        };
        let name = name.trim().trim_start_matches(',').trim().to_string();
        let after = after.trim_start();
        let (value, next) = if let Some(q) = after.strip_prefix('"') {
            let mut v = String::new();
            let mut chars = q.char_indices();
            let mut end = q.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, e)) = chars.next() {
                            v.push(e);
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    _ => v.push(c),
                }
            }
            (v, &q[end.min(q.len())..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim().to_string(), &after[end..])
        };
        out.push((name, value));
        rest = next.trim_start().trim_start_matches(',').trim_start();
    }
    out
}

/// Byte strings equal, in time that depends only on their lengths.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The request's `Origin`, if any.
pub fn origin(req: &Request<Incoming>) -> Option<HeaderValue> {
    req.headers().get(ORIGIN).cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn checks_of_clean_addresses_go_before_those_of_addresses_that_failed() {
        let gate = Arc::new(HashGate::default());
        let first = gate.acquire(false).await;
        let order = Arc::new(Mutex::new(Vec::new()));
        let waiter = |clean: bool, name: &'static str| {
            let (gate, order) = (gate.clone(), order.clone());
            tokio::spawn(async move {
                let _p = gate.acquire(clean).await;
                order.lock().unwrap().push(name);
            })
        };
        let suspect = waiter(false, "suspect");
        // A waiter that leaves before its turn is skipped.
        let gone = waiter(true, "gone");
        tokio::task::yield_now().await;
        let clean = waiter(true, "clean");
        let waiting = |g: &HashGate| {
            let s = g.state.lock().unwrap();
            s.clean.len() + s.suspect.len()
        };
        while waiting(&gate) < 3 {
            tokio::task::yield_now().await;
        }
        gone.abort();
        let _ = gone.await;
        drop(first);
        clean.await.unwrap();
        suspect.await.unwrap();
        assert_eq!(*order.lock().unwrap(), ["clean", "suspect"]);
        assert!(!gate.state.lock().unwrap().busy, "released");
    }
}
