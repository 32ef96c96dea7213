//! Who may use what, per request: `allowed_hosts`, `[http.auth]` (Basic users, tokens in a
//! header or `?token=`), and which origins' pages may read the answers (CORS).
//!
//! Password hashes are slow on purpose, so a verified `Authorization` value is remembered for a
//! while (by a keyed hash of it, never the value), and at most one hash is checked at a time: a
//! client guessing passwords costs farmcam at most one core's share, never all of them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, AUTHORIZATION, HOST, ORIGIN, VARY, WWW_AUTHENTICATE};
use hyper::{Request, Response, StatusCode};
use ring::hmac;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::{api, Body};
use crate::config::{Area, AuthConfig, HttpConfig};
use crate::password::PasswordHash;

/// How long a verified (or refused) `Authorization` value is remembered.
const REMEMBER: Duration = Duration::from_secs(600);
/// Remembered values at most (beyond: the memory starts over).
const REMEMBER_MAX: usize = 1024;

pub struct Guard {
    auth: Option<AuthConfig>,
    any_origin: bool,
    origins: Vec<String>,
    hosts: Vec<String>,
    key: hmac::Key,
    remembered: Mutex<HashMap<Vec<u8>, (bool, Instant)>>,
    hashing: Arc<Semaphore>,
}

impl Guard {
    pub fn new(http: &HttpConfig) -> Guard {
        let rng = ring::rand::SystemRandom::new();
        Guard {
            auth: http.auth.clone(),
            any_origin: http.allowed_origins.iter().any(|o| o == "*"),
            origins: http.allowed_origins.clone(),
            hosts: http.allowed_hosts.clone(),
            key: hmac::Key::generate(hmac::HMAC_SHA256, &rng).expect("the system's random source works"),
            remembered: Mutex::default(),
            hashing: Arc::new(Semaphore::new(1)),
        }
    }

    /// The 421 for a request naming a `Host` that is not allowed (a page on another site reaching
    /// farmcam through DNS rebinding names that site).
    pub fn host(&self, req: &Request<Incoming>) -> Option<Response<Body>> {
        if self.hosts.is_empty() {
            return None;
        }
        let host = req
            .headers()
            .get(HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| req.uri().host())
            .unwrap_or("");
        let name = match host.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or(""),
            None => host.rsplit_once(':').map_or(host, |(h, _)| h),
        }
        .to_ascii_lowercase();
        (!self.hosts.contains(&name)).then(|| {
            api::error(
                StatusCode::MISDIRECTED_REQUEST,
                "this Host is not one of http.allowed_hosts; use the address farmcam is configured for",
            )
        })
    }

    /// The 401 to send unless the request may use `area` (on a listener that is `open` or not).
    pub async fn allow(
        &self,
        req: &Request<Incoming>,
        q: &[(&str, &str)],
        area: Area,
        open: bool,
    ) -> Option<Response<Body>> {
        let Some(auth) = &self.auth else {
            return None;
        };
        if open || auth.open.contains(&area) {
            return None;
        }
        let header = req.headers().get(AUTHORIZATION).map(HeaderValue::as_bytes);
        let token = super::param(q, "token").map(str::as_bytes).or_else(|| {
            header
                .and_then(|h| h.strip_prefix(b"Bearer "))
                .map(|t| t.trim_ascii())
        });
        let ok = match (token, header) {
            (Some(t), _) => auth.tokens.iter().any(|s| same(s.0.as_bytes(), t)),
            (None, Some(h)) if h.starts_with(b"Basic ") => self.basic(auth, h).await,
            _ => false,
        };
        if ok {
            return None;
        }
        let mut resp = api::error(
            StatusCode::UNAUTHORIZED,
            "authentication required: a user and password (Basic), or a token as `Authorization: Bearer TOKEN` or ?token=TOKEN",
        );
        let challenge = if auth.users.is_empty() {
            "Bearer realm=\"farmcam\""
        } else {
            "Basic realm=\"farmcam\", charset=\"UTF-8\""
        };
        resp.headers_mut()
            .insert(WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
        Some(resp)
    }

    /// `Authorization: Basic …` against the users, remembered for [`REMEMBER`].
    async fn basic(&self, auth: &AuthConfig, header: &[u8]) -> bool {
        let tag = hmac::sign(&self.key, header).as_ref().to_vec();
        if let Some((ok, at)) = self.remembered.lock().unwrap().get(&tag) {
            if at.elapsed() < REMEMBER {
                return *ok;
            }
        }
        let Some((user, password)) = B64
            .decode(header[6..].trim_ascii())
            .ok()
            .and_then(|d| String::from_utf8(d).ok())
            .and_then(|s| s.split_once(':').map(|(u, p)| (u.to_string(), p.to_string())))
        else {
            return false;
        };
        let hash: Option<PasswordHash> = auth
            .users
            .iter()
            .find(|(name, _)| *name == user)
            .map(|(_, h)| h.clone());
        let ok = match hash {
            None => false,
            Some(hash) => {
                let Ok(_one) = self.hashing.clone().acquire_owned().await else {
                    return false;
                };
                tokio::task::spawn_blocking(move || hash.verify(&password))
                    .await
                    .unwrap_or(false)
            }
        };
        let mut remembered = self.remembered.lock().unwrap();
        if remembered.len() >= REMEMBER_MAX {
            remembered.clear();
        }
        remembered.insert(tag, (ok, Instant::now()));
        ok
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

/// Byte strings equal, in time that depends only on their lengths.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The request's `Origin`, if any.
pub fn origin(req: &Request<Incoming>) -> Option<HeaderValue> {
    req.headers().get(ORIGIN).cloned()
}
