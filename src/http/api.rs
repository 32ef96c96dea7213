//! JSON API, error responses and the plain index page.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, CACHE_CONTROL, CONTENT_TYPE, HOST};
use hyper::{Request, Response, StatusCode};
use serde::Serialize;

use super::Body;
use crate::registry::{Camera, CameraStatus, Registry};

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

pub fn method_not_allowed() -> Response<Body> {
    let mut resp = error(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD are supported");
    resp.headers_mut()
        .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
    resp
}

#[derive(Serialize)]
struct Entry {
    #[serde(flatten)]
    status: CameraStatus,
    stream_url: String,
    snapshot_url: String,
    /// The camera's dedicated port, if configured (mjpg-streamer style URLs).
    dedicated_url: Option<String>,
}

/// Base URL as the client reached us (Host header), for copyable absolute URLs.
fn base_url(req: &Request<Incoming>) -> String {
    let host = req
        .headers()
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c))
        })
        .unwrap_or("localhost");
    format!("http://{host}")
}

pub fn cameras(registry: &Registry, req: &Request<Incoming>) -> Response<Body> {
    let base = base_url(req);
    let list: Vec<Entry> = registry
        .cameras()
        .iter()
        .map(|c| Entry {
            stream_url: format!("{base}/cameras/{}/stream", c.id()),
            snapshot_url: format!("{base}/cameras/{}/snapshot", c.id()),
            dedicated_url: c.config().listen.map(|a| format!("http://{a}/?action=stream")),
            status: c.status(),
        })
        .collect();
    json(StatusCode::OK, &list)
}

pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const STYLE: &str =
    "body{font-family:system-ui,sans-serif;background:#111;color:#ddd;margin:2em}a{color:#8cf}";

/// `/` on a camera's dedicated port.
pub fn camera_page(cam: &Arc<Camera>) -> Response<Body> {
    let name = escape(&cam.config().name);
    let html = format!(
        "<!doctype html><html><head><meta charset=utf-8><title>{name}</title><style>{STYLE}</style></head>\
         <body><h1>{name}</h1><img src=\"/?action=stream\" style=\"max-width:100%\" alt=\"{name}\">\
         <p><a href=\"/?action=stream\">stream</a> · <a href=\"/?action=snapshot\">snapshot</a></p></body></html>"
    );
    full(StatusCode::OK, "text/html; charset=utf-8", html)
}
