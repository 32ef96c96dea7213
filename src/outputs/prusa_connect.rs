//! Prusa Connect: every camera with a `[camera.prusa_connect]` block uploads one snapshot every
//! `interval`, so the printer it watches shows a camera in Prusa Connect (Prusa's own printers
//! have none). One task per camera; the owner of every upload is [`PrusaConnect`].
//!
//! The API is Prusa's camera API: `PUT /c/snapshot` with the camera's `Token` and `Fingerprint`
//! headers and the JPEG as the body (`Content-Type: image/jpg`), answered 204; and `PUT /c/info`
//! with the camera's name and picture size as JSON, sent after the first snapshot and whenever
//! the size changes. A refused token (401/403; 404 for a camera deleted in Prusa Connect; or 409
//! for a fingerprint that is not the one the token was first used with) is said once with the
//! fix and retried every [`REFUSED_RETRY`]; network errors and a busy server back off from the
//! interval to [`FAILING_MAX`]. A camera that is offline uploads nothing: Prusa Connect keeps
//! showing its last real picture. Each upload is a periodic consumer
//! ([`Camera::expect_periodic`]) while it keeps its cadence; the token never reaches a log line,
//! the status or an error.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request, Response, StatusCode};
use serde::Serialize;
use tokio::time::{sleep_until, timeout, Instant};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::config::{Config, Endpoint, PrusaCamera};
use crate::frame::Size;
use crate::media::sizes::WidthWanted;
use crate::registry::{Camera, Registry, SnapshotError};
use crate::util::http_client::Driver;
use crate::util::log_limit::{held_back, LogLimit};

/// A refused token is tried again this often (someone may fix it in Prusa Connect).
pub const REFUSED_RETRY: Duration = Duration::from_secs(300);
/// Failing uploads back off, doubling from the interval, to at most this.
pub const FAILING_MAX: Duration = Duration::from_secs(300);
/// One upload (connect, TLS, the picture, the answer) may take this long.
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(30);
/// Prusa Connect's answers are short texts; more is not kept.
const MAX_ANSWER: usize = 64 * 1024;
/// Prusa Connect takes pictures up to 16 MiB.
const MAX_PICTURE: usize = 16 << 20;

/// How an attempt ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Uploaded (2xx).
    Ok,
    /// The token (401, 403), the camera (404: deleted) or the fingerprint (409) was refused.
    Refused,
    /// Another 4xx: the request was not taken (too large, invalid).
    Rejected,
    /// Unreachable, timed out, or the server failed (5xx, 429).
    Failed,
    /// The camera gave no picture: nothing was uploaded.
    Offline,
}

impl Outcome {
    pub const ALL: [Outcome; 5] = [
        Outcome::Ok,
        Outcome::Refused,
        Outcome::Rejected,
        Outcome::Failed,
        Outcome::Offline,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Refused => "refused",
            Outcome::Rejected => "rejected",
            Outcome::Failed => "failed",
            Outcome::Offline => "offline",
        }
    }
}

/// One camera's uploads, as `/api/cameras` shows them (`prusa_connect`).
#[derive(Clone, Debug, Serialize)]
pub struct UploadStatus {
    pub url: String,
    pub fingerprint: String,
    pub interval_ms: u64,
    /// The width snapshots are scaled to (None: the camera's own).
    pub width: Option<u32>,
    /// Unix time of the last snapshot Prusa Connect took.
    pub last_upload: Option<f64>,
    /// Unix time and outcome of the last attempt.
    pub last_attempt: Option<f64>,
    pub last_result: Option<Outcome>,
    /// Why the last attempt did not upload, until one does.
    pub last_error: Option<String>,
    /// When the next attempt is due (ms from now).
    pub next_attempt_in_ms: Option<u64>,
    /// Attempts by outcome (`offline`: no picture, nothing sent).
    pub attempts: HashMap<&'static str, u64>,
    pub bytes_uploaded: u64,
}

/// What a running upload records (read by status and metrics).
struct State {
    status: Mutex<UploadStatus>,
    next: Mutex<Option<Instant>>,
}

impl State {
    fn status(&self) -> UploadStatus {
        let mut s = self.status.lock().unwrap().clone();
        s.next_attempt_in_ms = self
            .next
            .lock()
            .unwrap()
            .map(|t| t.saturating_duration_since(Instant::now()).as_millis() as u64);
        s
    }
}

struct Running {
    settings: PrusaCamera,
    camera: Arc<Camera>,
    stop: CancellationToken,
    state: Arc<State>,
}

/// Every camera's uploads; kept up to date with the configuration at each reload.
pub struct PrusaConnect {
    registry: Arc<Registry>,
    node_id: String,
    inner: Mutex<Inner>,
    tracker: TaskTracker,
}

#[derive(Default)]
struct Inner {
    endpoint: Option<Endpoint>,
    tls: Option<Arc<rustls::ClientConfig>>,
    uploads: HashMap<String, Running>,
}

/// The TLS settings `endpoint` is reached with (None for http://); errors name the setting.
pub fn tls_config(endpoint: &Endpoint) -> Result<Option<Arc<rustls::ClientConfig>>, String> {
    if !endpoint.https {
        return Ok(None);
    }
    let roots = crate::util::tls_roots::roots(endpoint.ca_file.as_deref(), "prusa_connect.ca_file")?;
    let config = crate::util::tls_roots::builder(roots, "prusa_connect")?.with_no_client_auth();
    Ok(Some(Arc::new(config)))
}

/// The fingerprint a camera without one sends: stable for this gateway's name and the camera
/// id (Prusa Connect ties the first one a token is used with to it), 40 characters.
pub fn derived_fingerprint(node_id: &str, camera: &str) -> String {
    let digest = ring::digest::digest(
        &ring::digest::SHA256,
        format!("farmcam prusa_connect {node_id} {camera}").as_bytes(),
    );
    let hex: String = digest.as_ref()[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("farmcam-{hex}")
}

impl PrusaConnect {
    pub fn new(registry: Arc<Registry>, node_id: &str) -> Arc<PrusaConnect> {
        Arc::new(PrusaConnect {
            registry,
            node_id: node_id.to_string(),
            inner: Mutex::new(Inner::default()),
            tracker: TaskTracker::new(),
        })
    }

    /// Start, restart or stop uploads as `config` says: a camera whose upload settings, the
    /// endpoint and the camera itself are unchanged keeps uploading as it was.
    pub fn apply(&self, config: &Config) {
        let p = &config.prusa_connect;
        let mut inner = self.inner.lock().unwrap();
        let endpoint_changed = inner.endpoint.as_ref() != Some(&p.endpoint);
        if endpoint_changed && !p.cameras.is_empty() {
            match tls_config(&p.endpoint) {
                Ok(tls) => inner.tls = tls,
                Err(e) => {
                    // Checked at load already (`farmcam check`); the system's store may have
                    // gone since.
                    warn!("prusa connect: {e}; no snapshot is uploaded");
                    inner.tls = None;
                    for (_, r) in inner.uploads.drain() {
                        r.stop.cancel();
                    }
                    inner.endpoint = None;
                    return;
                }
            }
            inner.endpoint = Some(p.endpoint.clone());
        }
        let wanted: Vec<(&PrusaCamera, Arc<Camera>)> = p
            .cameras
            .iter()
            .filter_map(|u| Some((u, self.registry.get(&u.camera)?)))
            .collect();
        inner.uploads.retain(|id, r| {
            let keep = !endpoint_changed
                && wanted
                    .iter()
                    .any(|(u, cam)| u.camera == *id && **u == r.settings && Arc::ptr_eq(cam, &r.camera));
            if !keep {
                r.stop.cancel();
                if !wanted.iter().any(|(u, _)| u.camera == *id) {
                    info!(camera = %id, "prusa connect: uploads stopped (no [camera.prusa_connect] any more)");
                }
            }
            keep
        });
        let Some(endpoint) = inner.endpoint.clone() else {
            return;
        };
        for (settings, camera) in wanted {
            if inner.uploads.contains_key(&settings.camera) {
                continue;
            }
            let fingerprint = settings
                .fingerprint
                .clone()
                .unwrap_or_else(|| derived_fingerprint(&self.node_id, &settings.camera));
            let state = Arc::new(State {
                status: Mutex::new(UploadStatus {
                    url: endpoint.url.clone(),
                    fingerprint: fingerprint.clone(),
                    interval_ms: settings.interval.as_millis() as u64,
                    width: settings.width,
                    last_upload: None,
                    last_attempt: None,
                    last_result: None,
                    last_error: None,
                    next_attempt_in_ms: None,
                    attempts: Outcome::ALL.iter().map(|o| (o.name(), 0)).collect(),
                    bytes_uploaded: 0,
                }),
                next: Mutex::new(None),
            });
            let stop = CancellationToken::new();
            info!(
                camera = %settings.camera,
                "prusa connect: uploading a snapshot every {} to {} (fingerprint {fingerprint})",
                humantime::format_duration(settings.interval),
                endpoint.url
            );
            let upload = Upload {
                camera: camera.clone(),
                settings: settings.clone(),
                fingerprint,
                conn: Connection {
                    endpoint: endpoint.clone(),
                    tls: inner.tls.clone(),
                    open: None,
                },
                state: state.clone(),
            };
            self.tracker.spawn(upload.run(stop.clone()));
            inner.uploads.insert(
                settings.camera.clone(),
                Running {
                    settings: settings.clone(),
                    camera,
                    stop,
                    state,
                },
            );
        }
    }

    /// A camera's uploads, if it has any.
    pub fn status(&self, camera: &str) -> Option<UploadStatus> {
        Some(self.inner.lock().unwrap().uploads.get(camera)?.state.status())
    }

    /// Every camera uploading, for the metrics: (camera id, status), by id.
    pub fn statuses(&self) -> Vec<(String, UploadStatus)> {
        let mut out: Vec<_> = self
            .inner
            .lock()
            .unwrap()
            .uploads
            .iter()
            .map(|(id, r)| (id.clone(), r.state.status()))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Stop every upload (bounded: one in flight is abandoned).
    pub async fn stop(&self) {
        for (_, r) in self.inner.lock().unwrap().uploads.drain() {
            r.stop.cancel();
        }
        self.tracker.close();
        let _ = timeout(Duration::from_secs(2), self.tracker.wait()).await;
    }
}

/// One camera's upload task.
struct Upload {
    camera: Arc<Camera>,
    settings: PrusaCamera,
    fingerprint: String,
    conn: Connection,
    state: Arc<State>,
}

/// What one attempt came to, and what to say about it.
struct Attempt {
    outcome: Outcome,
    /// One line (no token in it) when it did not upload.
    error: Option<String>,
    bytes: usize,
}

impl Upload {
    async fn run(mut self, stop: CancellationToken) {
        let interval = self.settings.interval;
        let id = self.camera.id().to_string();
        // The cameras of a farm do not all upload at the same instant.
        let mut due = Instant::now() + interval.min(Duration::from_secs(10)).mul_f64(fastrand::f64());
        let mut size = WidthWanted::new(self.settings.width);
        let mut periodic = None;
        let mut failures = 0u32;
        let mut refused = false;
        let mut uploaded_once = false;
        let mut info_sent: Option<Size> = None;
        let mut said = LogLimit::new();
        loop {
            // Declared only while the camera is visited every interval: not while retrying
            // slowly (keeping it open for that would cost more than reopening).
            let on_cadence = due.saturating_duration_since(Instant::now()) <= interval;
            if on_cadence && periodic.is_none() {
                periodic = Some(self.camera.expect_periodic("prusa-connect", interval));
            } else if !on_cadence {
                periodic = None;
            }
            *self.state.next.lock().unwrap() = Some(due);
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = sleep_until(due) => {}
            }
            *self.state.next.lock().unwrap() = None;
            let started = Instant::now();
            let attempt = tokio::select! {
                _ = stop.cancelled() => return,
                a = self.attempt(&mut size, &mut info_sent) => a,
            };
            let Some(attempt) = attempt else { return };
            let error = attempt.error.as_deref().unwrap_or("");
            due = match attempt.outcome {
                Outcome::Ok => {
                    if refused {
                        info!(camera = %id, "prusa connect: snapshots are taken again");
                    } else if !uploaded_once {
                        info!(camera = %id, "prusa connect: first snapshot uploaded ({} bytes)", attempt.bytes);
                    }
                    (refused, uploaded_once, failures) = (false, true, 0);
                    (due + interval).max(started)
                }
                Outcome::Offline => {
                    debug!(camera = %id, "prusa connect: nothing uploaded: {error}");
                    (due + interval).max(started)
                }
                Outcome::Refused => {
                    if !refused {
                        warn!(
                            camera = %id,
                            "prusa connect: {error}; retrying every {}",
                            humantime::format_duration(REFUSED_RETRY)
                        );
                    }
                    refused = true;
                    started + REFUSED_RETRY.max(interval)
                }
                Outcome::Rejected => {
                    match said.check(error) {
                        Some(n) => warn!(camera = %id, "prusa connect: {error}{}", held_back(n)),
                        None => debug!(camera = %id, "prusa connect: {error}"),
                    }
                    (due + interval).max(started)
                }
                Outcome::Failed => {
                    failures += 1;
                    let delay = interval
                        .saturating_mul(1 << (failures - 1).min(8))
                        .min(FAILING_MAX.max(interval))
                        .mul_f64(0.8 + fastrand::f64() * 0.4);
                    match said.check(error) {
                        Some(n) => {
                            warn!(camera = %id, "prusa connect: {error}; retrying in {delay:.1?}{}", held_back(n))
                        }
                        None => debug!(camera = %id, "prusa connect: {error}; retrying in {delay:.1?}"),
                    }
                    started + delay
                }
            };
            // The next attempt is set before the outcome is shown: status never shows an
            // outcome without when the next try is.
            *self.state.next.lock().unwrap() = Some(due);
            self.record(&attempt);
        }
    }

    /// Take a snapshot and upload it. None: farmcam is shutting down.
    async fn attempt(&mut self, size: &mut WidthWanted, info_sent: &mut Option<Size>) -> Option<Attempt> {
        let frame = match self.camera.snapshot(None).await {
            Ok(f) => f,
            Err(SnapshotError::ShuttingDown) => return None,
            Err(e) => {
                let why = match e {
                    SnapshotError::Offline { .. } => "the camera is offline",
                    _ => "no picture within the camera's snapshot_timeout",
                };
                return Some(Attempt {
                    outcome: Outcome::Offline,
                    error: Some(why.to_string()),
                    bytes: 0,
                });
            }
        };
        let frame = size
            .apply(self.camera.id(), &self.camera.shared().sizes, frame)
            .await;
        let bytes = frame.jpeg.len();
        if bytes > MAX_PICTURE {
            return Some(Attempt {
                outcome: Outcome::Rejected,
                error: Some(format!(
                    "a snapshot of {bytes} bytes is larger than Prusa Connect takes (16 MiB): set [camera.prusa_connect] width"
                )),
                bytes: 0,
            });
        }
        let picture = Size {
            width: frame.width,
            height: frame.height,
        };
        let answer = self
            .conn
            .put(
                "/c/snapshot",
                "image/jpg",
                frame.jpeg,
                &self.settings.token.0,
                &self.fingerprint,
            )
            .await;
        let attempt = judge(&self.conn.endpoint.url, &self.fingerprint, answer, bytes);
        if attempt.outcome == Outcome::Ok && *info_sent != Some(picture) {
            let info = serde_json::json!({
                "config": {
                    "name": self.camera.config().name,
                    "resolution": { "width": picture.width, "height": picture.height },
                }
            });
            let sent = self
                .conn
                .put(
                    "/c/info",
                    "application/json",
                    Bytes::from(info.to_string()),
                    &self.settings.token.0,
                    &self.fingerprint,
                )
                .await;
            match sent {
                Ok((s, _)) if s.is_success() => *info_sent = Some(picture),
                Ok((s, _)) => debug!(camera = %self.camera.id(), "prusa connect: camera info not taken: {s}"),
                Err(e) => debug!(camera = %self.camera.id(), "prusa connect: camera info not sent: {e}"),
            }
        }
        Some(attempt)
    }

    fn record(&self, a: &Attempt) {
        let now = crate::util::unix_time::now();
        let mut s = self.state.status.lock().unwrap();
        *s.attempts.entry(a.outcome.name()).or_default() += 1;
        s.last_attempt = Some(now);
        s.last_result = Some(a.outcome);
        if a.outcome == Outcome::Ok {
            s.last_upload = Some(now);
            s.bytes_uploaded += a.bytes as u64;
        }
        s.last_error = a.error.clone();
    }
}

/// What Prusa Connect's answer to a snapshot means. Its codes (as its camera clients read them):
/// 401/403 the token is missing, wrong or outdated; 404 the camera is not found (deleted in
/// Prusa Connect, so its token is void); 409 a conflict (the token was first used with another
/// fingerprint); 503 unavailable for now.
fn judge(
    url: &str,
    fingerprint: &str,
    answer: Result<(StatusCode, String), String>,
    bytes: usize,
) -> Attempt {
    let (status, text) = match answer {
        Ok(a) => a,
        Err(e) => {
            return Attempt {
                outcome: Outcome::Failed,
                error: Some(format!("cannot upload to {url}: {e}")),
                bytes: 0,
            }
        }
    };
    let said = if text.is_empty() {
        String::new()
    } else {
        format!(": {text}")
    };
    let new_token = "copy the camera's token again from Prusa Connect (the printer's Camera tab → Add new other camera) into [camera.prusa_connect] token and reload farmcam";
    let (outcome, error) = match status.as_u16() {
        200..=299 => (Outcome::Ok, None),
        401 | 403 => (
            Outcome::Refused,
            Some(format!("Prusa Connect refused the token ({status}{said}): {new_token}")),
        ),
        404 => (
            Outcome::Refused,
            Some(format!(
                "{url} does not know this camera ({status}{said}): if it was deleted in Prusa Connect, {new_token}; if [prusa_connect] url is a proxy, check its path"
            )),
        ),
        409 => (
            Outcome::Refused,
            Some(format!(
                "Prusa Connect refused the fingerprint {fingerprint} ({status}{said}): the token was first used with another one; set [camera.prusa_connect] fingerprint to that one, or make a new token for this camera"
            )),
        ),
        408 | 429 | 500..=599 => (Outcome::Failed, Some(format!("{url} answered {status}{said}"))),
        _ => (Outcome::Rejected, Some(format!("{url} did not take the snapshot ({status}{said})"))),
    };
    Attempt {
        outcome,
        error,
        bytes: if outcome == Outcome::Ok { bytes } else { 0 },
    }
}

/// The connection to the endpoint, kept between uploads while the server keeps it open.
struct Connection {
    endpoint: Endpoint,
    tls: Option<Arc<rustls::ClientConfig>>,
    open: Option<(SendRequest<Full<Bytes>>, Driver)>,
}

impl Connection {
    /// One `PUT` under the endpoint's prefix: the status and the first line of the answer
    /// (without the token, should a server echo it). Bounded by [`UPLOAD_TIMEOUT`].
    async fn put(
        &mut self,
        path: &str,
        content_type: &str,
        body: Bytes,
        token: &str,
        fingerprint: &str,
    ) -> Result<(StatusCode, String), String> {
        let exchange = async {
            // A kept connection the server closed meanwhile fails before any answer: once more
            // on a new one (a PUT may be repeated).
            for retry in [true, false] {
                let reused = self.open.is_some();
                let req = self.request(path, content_type, body.clone(), token, fingerprint)?;
                let sender = self.sender().await?;
                match sender.send_request(req).await {
                    Ok(resp) => return Ok(answer(resp, token).await),
                    Err(e) => {
                        self.open = None;
                        if !(reused && retry) {
                            return Err(e.to_string());
                        }
                    }
                }
            }
            Err("the connection closed".to_string())
        };
        match timeout(UPLOAD_TIMEOUT, exchange).await {
            Ok(r) => r,
            Err(_) => {
                self.open = None;
                Err(format!("no answer within {UPLOAD_TIMEOUT:?}"))
            }
        }
    }

    /// The kept connection if it is still usable, else a new one.
    async fn sender(&mut self) -> Result<&mut SendRequest<Full<Bytes>>, String> {
        if let Some((s, _)) = &mut self.open {
            if s.ready().await.is_err() {
                self.open = None;
            }
        }
        if self.open.is_none() {
            let (host, port) = (&self.endpoint.host, self.endpoint.port);
            let open = match &self.tls {
                Some(tls) => crate::util::http_client::connect_tls(host, port, tls.clone()).await,
                None => crate::util::http_client::connect(host, port).await,
            };
            self.open = Some(open?);
        }
        Ok(&mut self.open.as_mut().expect("just opened").0)
    }

    fn request(
        &self,
        path: &str,
        content_type: &str,
        body: Bytes,
        token: &str,
        fingerprint: &str,
    ) -> Result<Request<Full<Bytes>>, String> {
        let e = &self.endpoint;
        let host = match (e.https, e.port) {
            (true, 443) | (false, 80) => e.host.clone(),
            _ if e.host.contains(':') => format!("[{}]:{}", e.host, e.port),
            _ => format!("{}:{}", e.host, e.port),
        };
        Request::builder()
            .method(Method::PUT)
            .uri(format!("{}{path}", e.prefix))
            .header("host", host)
            .header("user-agent", concat!("farmcam/", env!("CARGO_PKG_VERSION")))
            .header("content-type", content_type)
            .header("token", token)
            .header("fingerprint", fingerprint)
            .body(Full::new(body))
            .map_err(|_| "the token or fingerprint cannot be sent as a header".to_string())
    }
}

/// The status and the answer's first line, printable and short, token removed.
async fn answer(resp: Response<hyper::body::Incoming>, token: &str) -> (StatusCode, String) {
    let status = resp.status();
    let body = Limited::new(resp.into_body(), MAX_ANSWER)
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    (status, echoed_line(&String::from_utf8_lossy(&body), token))
}

/// An answer's first line as farmcam repeats it: printable, the token removed in any letter
/// case, and only then cut short (a cut first could leave a token's start behind).
fn echoed_line(text: &str, token: &str) -> String {
    let line: String = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("")
        .chars()
        .filter(|c| !c.is_control())
        .collect();
    crate::util::redact::replace_ignoring_case(&line, token)
        .chars()
        .take(200)
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_echoed_token_is_hidden_in_any_case_and_before_the_line_is_cut() {
        let token = "AbCdEf0123456789xyzTOKEN";
        let said = super::echoed_line(
            &format!("bad token {} or {token}\nmore", token.to_uppercase()),
            token,
        );
        assert_eq!(said, "bad token *** or ***");
        // Straddling the 200th character: nothing of it is left.
        let long = format!("{}{token} end", "x".repeat(190));
        let said = super::echoed_line(&long, token);
        assert!(!said.contains("AbCd") && said.ends_with("*** end"), "{said}");
        assert_eq!(super::echoed_line("  \n\x07first\u{1b} line", ""), "first line");
    }

    use hyper::StatusCode;

    use super::{derived_fingerprint, judge, Outcome};

    fn outcome(code: u16) -> (Outcome, String) {
        let a = judge(
            "https://webcam.connect.prusa3d.com",
            "farmcam-0123456789abcdef",
            Ok((StatusCode::from_u16(code).unwrap(), "said".into())),
            1000,
        );
        (a.outcome, a.error.unwrap_or_default())
    }

    #[test]
    fn prusa_connects_answers_are_read_as_its_camera_clients_read_them() {
        assert_eq!(outcome(204).0, Outcome::Ok);
        for code in [401, 403] {
            let (o, e) = outcome(code);
            assert_eq!(o, Outcome::Refused, "{code}");
            assert!(
                e.contains("refused the token") && e.contains("Add new other camera"),
                "{e}"
            );
        }
        // A camera deleted in Prusa Connect: its token is void, so no upload every interval.
        let (o, e) = outcome(404);
        assert_eq!(o, Outcome::Refused);
        assert!(
            e.contains("does not know this camera (404 Not Found: said)"),
            "{e}"
        );
        assert!(
            e.contains("Add new other camera") && e.contains("[prusa_connect] url"),
            "{e}"
        );
        let (o, e) = outcome(409);
        assert_eq!(o, Outcome::Refused);
        assert!(e.contains("fingerprint farmcam-0123456789abcdef (409"), "{e}");
        for code in [408, 429, 500, 502, 503] {
            assert_eq!(outcome(code).0, Outcome::Failed, "{code}");
        }
        for code in [400, 413, 415] {
            assert_eq!(outcome(code).0, Outcome::Rejected, "{code}");
        }
        let down = judge("https://x", "f", Err("connection refused".into()), 10);
        assert_eq!(down.outcome, Outcome::Failed);
        assert_eq!(
            down.error.as_deref(),
            Some("cannot upload to https://x: connection refused")
        );
        assert_eq!(down.bytes, 0);
    }

    #[test]
    fn the_derived_fingerprint_is_stable_per_gateway_and_camera() {
        let a = derived_fingerprint("shelf-a", "mk4");
        assert_eq!(a, derived_fingerprint("shelf-a", "mk4"));
        assert_eq!(a.len(), 40);
        assert!(a.starts_with("farmcam-") && a[8..].chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, derived_fingerprint("shelf-b", "mk4"));
        assert_ne!(a, derived_fingerprint("shelf-a", "xl"));
        // Fixed forever (sha256 of "farmcam prusa_connect shelf-a mk4", its first 16 bytes): a
        // changed derivation would make Prusa Connect refuse every camera after an upgrade.
        assert_eq!(a, "farmcam-a14cca820f85f0f4d2f076aa4813a74e");
    }
}
