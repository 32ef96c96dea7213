//! WebRTC signalling as the players call it (see `crate::outputs::webrtc` for the sessions):
//! camera-streamer's JSON form (`POST …/webrtc`, what Mainsail's and Fluidd's
//! `webrtc-camerastreamer` player sends; Mainsail without a Content-Type, Fluidd with
//! `application/json`, both reading JSON back) and WHEP (`POST …/whep` with an SDP offer → `201`
//! with the answer, a relative `Location` and an `ETag`; `PATCH` and `DELETE` on that location),
//! what the `webrtc-mediamtx` player uses.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE, ETAG, LOCATION};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Value};

use super::path::Signal;
use super::{api, Body, Ctx};
use crate::outputs::webrtc::{SignalError, WebRtc};
use crate::registry::Camera;

/// The largest signalling body read (an SDP offer is a few kB).
const BODY_MAX: usize = 64 * 1024;

pub async fn signal(
    ctx: &Ctx,
    cam: &Arc<Camera>,
    signal: Signal,
    req: Request<Incoming>,
    peer: SocketAddr,
) -> Response<Body> {
    let Some(rtc) = &ctx.webrtc else {
        let why = ctx
            .webrtc_error
            .clone()
            .unwrap_or_else(|| "WebRTC is off ([webrtc] enabled = false)".into());
        return api::error(StatusCode::SERVICE_UNAVAILABLE, &why);
    };
    let method = req.method().clone();
    let body = match Limited::new(req.into_body(), BODY_MAX).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return api::error(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("a signalling message is at most {BODY_MAX} bytes"),
            )
        }
    };
    match (signal, method) {
        (Signal::CameraStreamer, _) => camera_streamer(rtc, cam, &body, peer).await,
        (Signal::Whep, _) => whep(rtc, cam, &body, peer).await,
        (Signal::WhepSession(id), Method::DELETE) => match rtc.close(cam, &id).await {
            Ok(()) => empty(StatusCode::OK),
            Err(e) => failed(e),
        },
        // Trickled candidates: farmcam is ICE-lite and learns the browser's address from its
        // checks, so there is nothing to do with them.
        (Signal::WhepSession(id), _) if rtc.has_session(cam, &id) => empty(StatusCode::NO_CONTENT),
        (Signal::WhepSession(_), _) => failed(SignalError::NoSession("…".into())),
    }
}

fn failed(e: SignalError) -> Response<Body> {
    let status = match e {
        SignalError::Bad(_) => StatusCode::BAD_REQUEST,
        SignalError::NoSession(_) => StatusCode::NOT_FOUND,
        SignalError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
    };
    api::error(status, &e.to_string())
}

fn empty(status: StatusCode) -> Response<Body> {
    let mut resp = Response::new(BodyExt::boxed(Full::new(Bytes::new())));
    *resp.status_mut() = status;
    resp
}

/// `iceServers` as browsers take them.
fn ice_servers(rtc: &WebRtc) -> Value {
    Value::Array(rtc.ice_servers().iter().map(|u| json!({ "urls": [u] })).collect())
}

/// The ICE servers as WHEP's `Link` headers (on `OPTIONS`).
pub fn ice_links(rtc: &WebRtc, resp: &mut Response<Body>) {
    for url in rtc.ice_servers() {
        if let Ok(v) = HeaderValue::from_str(&format!("<{url}>; rel=\"ice-server\"")) {
            resp.headers_mut().append("link", v);
        }
    }
}

async fn camera_streamer(rtc: &WebRtc, cam: &Arc<Camera>, body: &[u8], peer: SocketAddr) -> Response<Body> {
    let Ok(msg) = serde_json::from_slice::<Value>(body) else {
        return api::error(
            StatusCode::BAD_REQUEST,
            "send JSON: {\"type\":\"request\"}, then {\"type\":\"answer\",\"id\":…,\"sdp\":…}",
        );
    };
    match msg["type"].as_str() {
        Some("request") => match rtc.offer(cam, peer).await {
            Ok((id, sdp)) => api::json(
                StatusCode::OK,
                &json!({ "id": id, "type": "offer", "sdp": sdp, "iceServers": ice_servers(rtc) }),
            ),
            Err(e) => failed(e),
        },
        Some("answer") => {
            let (Some(id), Some(sdp)) = (msg["id"].as_str(), msg["sdp"].as_str()) else {
                return api::error(StatusCode::BAD_REQUEST, "an answer needs \"id\" and \"sdp\"");
            };
            match rtc.answer(cam, id, sdp).await {
                Ok(()) => api::json(StatusCode::OK, &json!({})),
                Err(e) => failed(e),
            }
        }
        // farmcam is ICE-lite: the browser's checks tell it the browser's address.
        Some("remote_candidate") => api::json(StatusCode::OK, &json!({})),
        _ => api::error(
            StatusCode::BAD_REQUEST,
            "\"type\" is \"request\", \"answer\" or \"remote_candidate\"",
        ),
    }
}

async fn whep(rtc: &WebRtc, cam: &Arc<Camera>, body: &[u8], peer: SocketAddr) -> Response<Body> {
    let Ok(offer) = std::str::from_utf8(body) else {
        return api::error(StatusCode::BAD_REQUEST, "send an SDP offer (application/sdp)");
    };
    match rtc.accept(cam, peer, offer).await {
        Err(e) => failed(e),
        Ok((id, answer)) => {
            let mut resp = Response::new(BodyExt::boxed(Full::new(Bytes::from(answer))));
            *resp.status_mut() = StatusCode::CREATED;
            let h = resp.headers_mut();
            h.insert(CONTENT_TYPE, HeaderValue::from_static("application/sdp"));
            h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
            // Relative: players resolve it against their stream URL, so it works behind a
            // path prefix.
            if let Ok(v) = HeaderValue::from_str(&format!("whep/{id}")) {
                h.insert(LOCATION, v);
            }
            if let Ok(v) = HeaderValue::from_str(&format!("\"{id}\"")) {
                h.insert(ETAG, v);
            }
            h.insert(
                "access-control-expose-headers",
                HeaderValue::from_static("Location, ETag, Link"),
            );
            resp
        }
    }
}
