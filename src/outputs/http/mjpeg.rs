//! `stream` (multipart MJPEG) and `snapshot` (one JPEG) for a camera.

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame as BodyFrame;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER, SET_COOKIE};
use hyper::{Response, StatusCode};
use tokio::time::Instant;
use tracing::info;

use super::path::Query;
use super::{api, Body};
use crate::frame::Frame;
use crate::media::sizes::{Scale, SizeLease};
use crate::polls::Poller;
use crate::pump::{ConsumerKind, Subscription, Want};
use crate::registry::{Camera, SnapshotError};

pub const BOUNDARY: &str = "farmcamframe";

/// Headers that keep browsers and proxies from caching live images.
fn no_cache(resp: &mut Response<Body>) {
    let h = resp.headers_mut();
    h.insert(
        CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-store, must-revalidate, max-age=0"),
    );
    h.insert("pragma", HeaderValue::from_static("no-cache"));
    h.insert("expires", HeaderValue::from_static("0"));
    // Proxies (nginx) must pass every frame on at once, not buffer the stream.
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
}

/// The multipart header of one part. The offline image is marked `X-Placeholder: 1`.
fn part_header(f: &Frame) -> Bytes {
    Bytes::from(format!(
        "--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\nX-Timestamp: {}\r\nX-Sequence: {}\r\n{}\r\n",
        f.jpeg.len(),
        f.timestamp_string(),
        f.seq,
        if f.placeholder { "X-Placeholder: 1\r\n" } else { "" }
    ))
}

/// One viewer's stream: its subscription, its rate cap, its size, and what is left of the
/// current part.
struct Viewer {
    sub: Subscription,
    size: Option<SizeLease>,
    min_interval: Option<Duration>,
    next_due: Option<Instant>,
    pending: Vec<Bytes>,
    camera: String,
    peer: SocketAddr,
}

impl Drop for Viewer {
    fn drop(&mut self) {
        let left = self.sub.detach();
        info!(camera = %self.camera, peer = %self.peer, skipped = self.sub.skipped(), "viewer left ({left} consumers remain)");
    }
}

impl Viewer {
    /// The next chunk to write: a part header, then its JPEG, then the CRLF closing the part.
    async fn next_chunk(&mut self) -> Option<Bytes> {
        if let Some(b) = self.pending.pop() {
            return Some(b);
        }
        loop {
            let f = self.sub.next().await?;
            if let Some(interval) = self.min_interval {
                let now = Instant::now();
                // A little slack so that jitter does not halve the rate.
                if self
                    .next_due
                    .is_some_and(|due| now + Duration::from_millis(3) < due)
                {
                    continue;
                }
                let base = self
                    .next_due
                    .filter(|d| now.saturating_duration_since(*d) < interval)
                    .unwrap_or(now);
                self.next_due = Some(base + interval);
            }
            // Scaled only now: frames dropped for `?fps=` are never scaled.
            let f = match &self.size {
                Some(size) => size.apply(f).await,
                None => f,
            };
            self.sub.delivered();
            self.pending = vec![Bytes::from_static(b"\r\n"), f.jpeg.clone()];
            return Some(part_header(&f));
        }
    }
}

/// The highest `?fps=` a viewer may ask for.
const MAX_FPS: f64 = 120.0;
/// The lowest: one frame a minute (a rate too small to represent must never mean "no cap").
const MIN_FPS: f64 = 1.0 / 60.0;

/// HEAD on a stream or snapshot: the status and headers a GET would get now, from the camera's
/// last known state, without starting it. A stream always answers (an offline camera's stream
/// shows the offline image); a snapshot of a camera that cannot give a picture is a 503, as GET's.
pub fn head(cam: &Camera, stream: bool) -> Response<Body> {
    if stream {
        let mut resp = Response::new(BodyExt::boxed(Full::new(Bytes::new())));
        resp.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_str(&format!("multipart/x-mixed-replace;boundary={BOUNDARY}"))
                .expect("valid header"),
        );
        no_cache(&mut resp);
        return resp;
    }
    if cam.status().available {
        jpeg_response(StatusCode::OK, Bytes::new())
    } else {
        let mut resp = jpeg_response(StatusCode::SERVICE_UNAVAILABLE, Bytes::new());
        resp.headers_mut().insert(RETRY_AFTER, HeaderValue::from(5u32));
        resp
    }
}

pub fn stream(cam: &Arc<Camera>, q: &Query, peer: SocketAddr) -> Response<Body> {
    let min_interval =
        match q.get("fps").map(|v| v.parse::<f64>()) {
            None => None,
            Some(Ok(fps)) if (MIN_FPS..=MAX_FPS).contains(&fps) => Some(Duration::from_secs_f64(1.0 / fps)),
            Some(_) => return api::error(
                StatusCode::BAD_REQUEST,
                "fps must be a number of frames per second from 0.0167 (one a minute) to 120, e.g. ?fps=5",
            ),
        };
    let size = match lease_size(cam, q) {
        Ok(size) => size,
        Err(msg) => return api::error(StatusCode::BAD_REQUEST, &msg),
    };
    let want = Want::viewer(min_interval.map(|i| 1.0 / i.as_secs_f64()));
    let sub = cam.subscribe_wanting(ConsumerKind::Viewer, want);
    info!(camera = %cam.id(), %peer, "viewer joined");
    let viewer = Viewer {
        sub,
        size,
        min_interval,
        next_due: None,
        pending: Vec::new(),
        camera: cam.id().to_string(),
        peer,
    };
    let shared = cam.shared().clone();
    let chunks = stream::unfold((viewer, shared), |(mut v, shared)| async move {
        let chunk = v.next_chunk().await?;
        shared.bytes_sent.fetch_add(chunk.len() as u64, Relaxed);
        Some((Ok(BodyFrame::data(chunk)), (v, shared)))
    });
    let mut resp = Response::new(BodyExt::boxed(StreamBody::new(chunks)));
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_str(&format!("multipart/x-mixed-replace;boundary={BOUNDARY}"))
            .expect("valid header"),
    );
    no_cache(&mut resp);
    resp
}

/// The size asked for with `?width=` or `?height=`, held for this request; an error when the value
/// is invalid or the camera already serves as many sizes as it may (the message for a 400).
fn lease_size(cam: &Camera, q: &Query) -> Result<Option<SizeLease>, String> {
    let scale = Scale::from_query(q.get("width"), q.get("height"))?;
    // A size not smaller than the camera's frames is the camera's own: it takes no slot.
    let own = cam.shared().output_size();
    scale
        .filter(|s| own.is_none_or(|own| s.target(own).is_some()))
        .map(|s| cam.shared().sizes.lease(s))
        .transpose()
}

fn jpeg_response(status: StatusCode, jpeg: Bytes) -> Response<Body> {
    let mut resp = Response::new(Full::new(jpeg).boxed());
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("image/jpeg"));
    no_cache(&mut resp);
    resp
}

/// The cookie that tells browsers apart when they poll through one address (a proxy).
const CLIENT_COOKIE: &str = "farmcam_client";

/// The browser's `farmcam_client` cookie, if it sent one farmcam made (16 hex digits).
pub fn client_cookie(headers: &hyper::HeaderMap) -> Option<u64> {
    headers
        .get_all(hyper::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().strip_prefix(CLIENT_COOKIE)?.strip_prefix('='))
        .find(|v| v.len() == 16)
        .and_then(|v| u64::from_str_radix(v, 16).ok())
}

/// A new `farmcam_client` cookie: a random name for this browser, kept a year.
fn new_client_cookie() -> HeaderValue {
    let bytes: [u8; 8] = ring::rand::generate(&ring::rand::SystemRandom::new())
        .map(|b| b.expose())
        .unwrap_or_default();
    let v = format!(
        "{CLIENT_COOKIE}={:016x}; Path=/; Max-Age=31536000; SameSite=Lax; HttpOnly",
        u64::from_le_bytes(bytes)
    );
    HeaderValue::from_str(&v).expect("ASCII")
}

/// A snapshot for `peer`; `browser` is its `farmcam_client` cookie. A client that may poll and
/// has none is given one, so that browsers behind one address are told apart from then on.
pub async fn snapshot(
    cam: &Arc<Camera>,
    q: &Query,
    peer: std::net::SocketAddr,
    browser: Option<u64>,
) -> Response<Body> {
    let max_age = match q.get("max_age").map(|v| v.parse::<u64>()) {
        None => None,
        Some(Ok(ms)) => Some(Duration::from_millis(ms)),
        Some(Err(_)) => {
            return api::error(
                StatusCode::BAD_REQUEST,
                "max_age is in milliseconds, e.g. ?max_age=2000",
            )
        }
    };
    // A client that says how often it asks (farmcam's wall: `?every=1000`) is served a picture
    // at most that old, and is never taken for a poller: two wall pages behind one address ask
    // twice a second together, but each needs only a picture a second, which an H.264 camera's
    // keyframes give without decoding every picture.
    let every =
        match q.get("every").map(|v| v.parse::<u64>()) {
            None => None,
            Some(Ok(ms)) if (100..=3_600_000).contains(&ms) => Some(Duration::from_millis(ms)),
            Some(_) => return api::error(
                StatusCode::BAD_REQUEST,
                "every is how often this client asks, in milliseconds from 100 to 3600000, e.g. ?every=1000",
            ),
        };
    let size = match lease_size(cam, q) {
        Ok(size) => size,
        Err(msg) => return api::error(StatusCode::BAD_REQUEST, &msg),
    };
    let asked = Instant::now();
    let (max_age, poller) = match every {
        Some(every) => (max_age.or(Some(every)), None),
        None => (
            max_age,
            Some(match browser {
                Some(b) => Poller::Browser(peer.ip(), b),
                None => Poller::Address(peer.ip()),
            }),
        ),
    };
    let mut resp = answer_snapshot(cam, size, asked, cam.snapshot_for(max_age, poller).await).await;
    if poller.is_some() && browser.is_none() {
        resp.headers_mut().insert(SET_COOKIE, new_client_cookie());
    }
    resp
}

async fn answer_snapshot(
    cam: &Arc<Camera>,
    size: Option<SizeLease>,
    asked: Instant,
    snapshot: Result<Frame, SnapshotError>,
) -> Response<Body> {
    match snapshot {
        Ok(f) => {
            let f = match &size {
                Some(size) => size.apply(f).await,
                None => f,
            };
            let shared = cam.shared();
            shared.snapshot_latency.observe(asked.elapsed());
            shared.bytes_sent.fetch_add(f.jpeg.len() as u64, Relaxed);
            let mut resp = jpeg_response(StatusCode::OK, f.jpeg.clone());
            let h = resp.headers_mut();
            h.insert(
                "x-timestamp",
                HeaderValue::from_str(&f.timestamp_string()).expect("digits"),
            );
            h.insert("x-sequence", HeaderValue::from(f.seq));
            resp
        }
        Err(SnapshotError::Timeout { placeholder }) => {
            let mut resp = jpeg_response(StatusCode::SERVICE_UNAVAILABLE, placeholder);
            resp.headers_mut().insert(RETRY_AFTER, HeaderValue::from(5u32));
            resp
        }
        Err(SnapshotError::Offline {
            placeholder,
            retry_in,
        }) => {
            let mut resp = jpeg_response(StatusCode::SERVICE_UNAVAILABLE, placeholder);
            resp.headers_mut().insert(
                RETRY_AFTER,
                HeaderValue::from(retry_in.as_secs_f64().ceil().max(1.0) as u64),
            );
            resp
        }
        Err(SnapshotError::ShuttingDown) => {
            api::error(StatusCode::SERVICE_UNAVAILABLE, "farmcam is shutting down")
        }
    }
}
