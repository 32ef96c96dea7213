//! JSON API, error responses and the plain index page.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, CACHE_CONTROL, CONTENT_TYPE, HOST, RETRY_AFTER};
use hyper::{Request, Response, StatusCode};
use serde::Serialize;

use super::path::Query;
use super::{Body, Ctx};
use crate::registry::{Camera, CameraStatus};

fn full(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response<Body> {
    let mut resp = Response::new(Full::new(body.into()).boxed());
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

pub fn html(status: StatusCode, body: String) -> Response<Body> {
    full(status, "text/html; charset=utf-8", body)
}

pub fn json<T: Serialize>(status: StatusCode, value: &T) -> Response<Body> {
    full(
        status,
        "application/json",
        serde_json::to_vec(value).expect("serialisable"),
    )
}

/// `{"error": message}` with a status.
pub fn error(status: StatusCode, message: &str) -> Response<Body> {
    json(status, &serde_json::json!({ "error": message }))
}

/// An error that says when to try again (a limit was reached).
pub fn error_retry(status: StatusCode, message: &str) -> Response<Body> {
    let mut resp = error(status, message);
    resp.headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from_static("5"));
    resp
}

/// `405` naming the `methods` this path takes.
pub fn method_not_allowed(methods: &'static str) -> Response<Body> {
    let mut resp = error(
        StatusCode::METHOD_NOT_ALLOWED,
        &format!("this path takes {methods}"),
    );
    resp.headers_mut()
        .insert(ALLOW, HeaderValue::from_static(methods));
    resp
}

/// A CORS preflight (`OPTIONS`): 204 naming the methods and the request headers a page on
/// another origin may send (`Authorization` among them, so Bearer tokens work across origins).
/// Whether that origin may read answers at all is said by the guard's CORS header.
pub fn preflight(req: &Request<Incoming>, methods: &'static str) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::new()).boxed());
    *resp.status_mut() = StatusCode::NO_CONTENT;
    let h = resp.headers_mut();
    h.insert(ALLOW, HeaderValue::from_static(methods));
    h.insert("access-control-allow-methods", HeaderValue::from_static(methods));
    let asked = req
        .headers()
        .get("access-control-request-headers")
        .filter(|v| {
            v.to_str()
                .is_ok_and(|s| s.chars().all(|c| c.is_ascii_alphanumeric() || ", -_".contains(c)))
        })
        .cloned();
    h.insert(
        "access-control-allow-headers",
        asked.unwrap_or(HeaderValue::from_static("authorization, content-type")),
    );
    h.insert("access-control-max-age", HeaderValue::from_static("600"));
    resp
}

#[derive(Serialize)]
struct Entry<'a> {
    #[serde(flatten)]
    status: CameraStatus,
    /// The gateway serving the camera (`[mqtt] node_id`, else the host name).
    node_id: &'a str,
    stream_url: String,
    snapshot_url: String,
    /// Where the host and prefix of these URLs come from: `public_url` (configured), `proxy`
    /// (`X-Forwarded-Host`) or `host` (the request's `Host`, which behind a proxy that sends no
    /// `X-Forwarded-Host` names the proxy's upstream, not an address clients can use).
    url_source: &'static str,
    /// The camera's dedicated port, if configured (mjpg-streamer style URLs).
    dedicated_url: Option<String>,
    /// Where players signal WebRTC (camera-streamer's form; WHEP at `…/whep`) when the camera
    /// sends H.264/H.265 and WebRTC is on; None otherwise.
    webrtc_url: Option<String>,
    /// Live WebRTC viewers: peer address, start time, bytes sent.
    webrtc_sessions: Vec<crate::outputs::webrtc::SessionStatus>,
    /// `rtsp://host:port/<camera>` when `[rtsp]` is on and the camera sends H.264/H.265.
    rtsp_url: Option<String>,
    /// RTSP clients: peer, transport, start time, bytes sent.
    rtsp_sessions: Vec<crate::outputs::rtsp::SessionStatus>,
    dedicated_snapshot_url: Option<String>,
    /// Snapshot uploads to Prusa Connect (`[camera.prusa_connect]`); None without.
    prusa_connect: Option<crate::outputs::prusa_connect::UploadStatus>,
    /// Whether it records a timelapse, and its latest one (`[timelapse]`); None without.
    timelapse: Option<crate::timelapse::Brief>,
}

/// A header's value if it is a plain host, prefix or scheme (nothing that could smuggle markup
/// or another URL into what farmcam advertises).
fn header<'a>(req: &'a Request<Incoming>, name: &str, extra: &str) -> Option<&'a str> {
    let v = req.headers().get(name)?.to_str().ok()?;
    let v = v.split(',').next()?.trim();
    (!v.is_empty() && v.chars().all(|c| c.is_ascii_alphanumeric() || extra.contains(c))).then_some(v)
}

/// Where clients reach farmcam, for copyable absolute URLs: `[http] public_url` when set; else
/// what a reverse proxy says (`X-Forwarded-Proto`, `-Host`, `-Prefix`); else the `Host` header.
/// Returns the base (no trailing slash), the host name alone (for the dedicated ports) and where
/// they came from (`public_url`, `proxy` or `host`).
pub fn public_base(req: &Request<Incoming>, public_url: Option<&str>) -> (String, String, &'static str) {
    let host_only = |h: &str| -> String {
        crate::util::hostport::split(h)
            .map_or(h, |(name, _)| name)
            .to_string()
    };
    if let Some(url) = public_url {
        let authority = url.split("://").nth(1).unwrap_or(url);
        let host = authority.split('/').next().unwrap_or(authority);
        return (
            url.trim_end_matches('/').to_string(),
            host_only(host),
            "public_url",
        );
    }
    const HOST_CHARS: &str = ".-:[]";
    let forwarded = header(req, "x-forwarded-host", HOST_CHARS);
    let host = forwarded
        .or_else(|| header(req, HOST.as_str(), HOST_CHARS))
        .unwrap_or("localhost");
    let proto = match header(req, "x-forwarded-proto", "") {
        Some("https") if forwarded.is_some() => "https",
        _ => "http",
    };
    let prefix = forwarded
        .and(header(req, "x-forwarded-prefix", "/-_."))
        .filter(|p| p.starts_with('/'))
        .map(|p| p.trim_end_matches('/'))
        .unwrap_or("");
    let source = if forwarded.is_some() { "proxy" } else { "host" };
    (format!("{proto}://{host}{prefix}"), host_only(host), source)
}

pub fn cameras(ctx: &Ctx, req: &Request<Incoming>) -> Response<Body> {
    let (base, host, url_source) = public_base(req, ctx.public_url.as_deref());
    let host = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host
    };
    // Taken before the statuses: every event up to this id is reflected in the list, so a page
    // that also follows /api/events keeps a newer event's state over an older list.
    let seen = ctx.registry.events.next_id() - 1;
    let sessions = ctx.webrtc.as_ref().map(|w| w.sessions()).unwrap_or_default();
    let rtsp_sessions = ctx.rtsp.as_ref().map(|r| r.sessions()).unwrap_or_default();
    let list: Vec<Entry> = ctx
        .registry
        .cameras()
        .iter()
        .map(|c| {
            // The dedicated port on the host the client used, never the bind address (0.0.0.0).
            let dedicated = ctx
                .dedicated_ports
                .get(c.id())
                .map(|port| format!("http://{host}:{port}"));
            Entry {
                node_id: &ctx.node_id,
                url_source,
                stream_url: format!("{base}/cameras/{}/stream", c.id()),
                snapshot_url: format!("{base}/cameras/{}/snapshot", c.id()),
                webrtc_url: (ctx.webrtc.is_some() && c.sends_coded_video())
                    .then(|| format!("{base}/cameras/{}/webrtc", c.id())),
                webrtc_sessions: sessions.iter().filter(|s| s.camera == c.id()).cloned().collect(),
                rtsp_url: ctx
                    .rtsp
                    .as_ref()
                    .filter(|_| c.sends_coded_video())
                    .map(|r| format!("rtsp://{host}:{}/{}", r.port(), c.id())),
                rtsp_sessions: rtsp_sessions
                    .iter()
                    .filter(|s| s.camera == c.id())
                    .cloned()
                    .collect(),
                dedicated_url: dedicated.as_ref().map(|d| format!("{d}/?action=stream")),
                dedicated_snapshot_url: dedicated.map(|d| format!("{d}/?action=snapshot")),
                prusa_connect: ctx.prusa.status(c.id()),
                timelapse: ctx.timelapses.as_ref().map(|t| {
                    let mut b = t.brief(c.id());
                    b.latest_url = b.latest_url.map(|u| format!("{base}{u}"));
                    b
                }),
                status: c.status(),
            }
        })
        .collect();
    let mut resp = json(StatusCode::OK, &list);
    resp.headers_mut().insert("x-event-id", HeaderValue::from(seen));
    resp
}

pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const STYLE: &str =
    "body{font-family:system-ui,sans-serif;background:#111;color:#ddd;margin:2em}a{color:#8cf}";

/// `/` on a camera's dedicated port. A page opened with `?token=` passes it on to its image and
/// links (an `<img>` cannot send a header).
pub fn camera_page(cam: &Arc<Camera>, q: &Query) -> Response<Body> {
    let name = escape(&cam.config().name);
    let token = q
        .get("token")
        .map(|t| format!("&amp;token={}", escape(&Query::encode_value(t))))
        .unwrap_or_default();
    let html = format!(
        "<!doctype html><html><head><meta charset=utf-8><title>{name}</title><style>{STYLE}</style></head>\
         <body><h1>{name}</h1><img src=\"?action=stream{token}\" style=\"max-width:100%\" alt=\"{name}\">\
         <p><a href=\"?action=stream{token}\">stream</a> · <a href=\"?action=snapshot{token}\">snapshot</a></p></body></html>"
    );
    full(StatusCode::OK, "text/html; charset=utf-8", html)
}
