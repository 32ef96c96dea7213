//! `/gateways/NAME/…`: another farmcam gateway's API, snapshots, streams and events, relayed for
//! this gateway's wall (`[[wall.gateway]]`).
//!
//! Relayed rather than fetched by the browser from each gateway (CORS): a gateway's token stays in
//! this gateway's configuration and never reaches the page, the page keeps talking to one origin
//! (within the browser's six connections per host), and a gateway that is down answers here, at
//! once or within a bounded time, as `502` naming it.

use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{BodyExt, BodyStream, Empty, Full, Limited, StreamBody};
use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue, AUTHORIZATION, HOST};
use hyper::{Method, Request, Response, StatusCode};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::timeout;

use super::client_slots::ClientSlot;
use super::path::Route;
use super::{api, Body, Ctx};
use crate::config::WallGateway;
use crate::util::http_client;

/// Connecting to a gateway (refused at once when it is down; this bounds a vanished host).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Until the gateway's answer starts (a hung gateway).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest silence inside a relayed answer (streams send frames, events a heartbeat every 15 s).
const IDLE_TIMEOUT: Duration = Duration::from_secs(20);

/// The gateway's answer's headers passed on.
const PASSED: [&str; 7] = [
    "content-type",
    "cache-control",
    "retry-after",
    "x-timestamp",
    "x-sequence",
    "x-event-id",
    "x-accel-buffering",
];

/// The most of another gateway's camera list read to rewrite its URLs.
const LIST_MAX: usize = 1 << 20;

/// Relay `GET`/`HEAD` of `target` (path and query, starting with `/`) to `gw`; `inner` is what
/// that gateway serves there. The answer is served inert (`nosniff`, a sandboxing CSP: another
/// gateway's page never runs as this origin's), its camera list names this gateway's relayed
/// URLs (never the other gateway's own address), and `slot` (the client's and the gateway's
/// share of relayed requests) is held until the answer ends.
pub async fn forward(
    gw: &WallGateway,
    inner: &Route,
    target: &str,
    head: bool,
    req: &Request<Incoming>,
    ctx: &Ctx,
    slot: (ClientSlot, OwnedSemaphorePermit),
) -> Response<Body> {
    let unreachable = |why: String| {
        api::error(
            StatusCode::BAD_GATEWAY,
            &format!("gateway {} ({}) is unreachable: {why}", gw.name, gw.url),
        )
    };
    let (mut sender, driver) = match timeout(CONNECT_TIMEOUT, http_client::connect(&gw.host, gw.port)).await {
        Ok(Ok(x)) => x,
        Ok(Err(e)) => return unreachable(e),
        Err(_) => return unreachable(format!("no connection within {CONNECT_TIMEOUT:?}")),
    };
    let mut out_req = Request::builder()
        .method(if head { Method::HEAD } else { Method::GET })
        .uri(target)
        .header(HOST, format!("{}:{}", gw.host, gw.port));
    if let Some(t) = &gw.token {
        out_req = out_req.header(AUTHORIZATION, format!("Bearer {}", t.0));
    }
    let Ok(out_req) = out_req.body(Empty::<Bytes>::new()) else {
        return api::error(StatusCode::BAD_REQUEST, "not a path farmcam can relay");
    };
    let resp = match timeout(ANSWER_TIMEOUT, sender.send_request(out_req)).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return unreachable(e.to_string()),
        Err(_) => return unreachable(format!("no answer within {ANSWER_TIMEOUT:?}")),
    };
    // No further requests on this connection; the answer's body keeps it going.
    drop(sender);
    let (parts, body) = resp.into_parts();
    let mut out = if *inner == Route::CameraList && parts.status == StatusCode::OK && !head {
        let list = timeout(ANSWER_TIMEOUT, Limited::new(body, LIST_MAX).collect()).await;
        match list {
            Ok(Ok(collected)) => match relayed_list(&collected.to_bytes(), gw, req, ctx) {
                Some(body) => Response::new(BodyExt::boxed(Full::new(body))),
                None => return unreachable("its camera list is not farmcam's".into()),
            },
            _ => return unreachable("its camera list did not arrive whole".into()),
        }
    } else {
        // The relayed body ends when the gateway's does, fails, or stays silent for IDLE_TIMEOUT
        // (a hung gateway); the connection's driver and the client's slot go with it.
        let frames = futures_util::stream::unfold(
            (BodyStream::new(body), (driver, slot)),
            |(mut body, held)| async move {
                match timeout(IDLE_TIMEOUT, body.next()).await {
                    Ok(Some(Ok(frame))) => Some((Ok::<_, std::convert::Infallible>(frame), (body, held))),
                    _ => None,
                }
            },
        );
        Response::new(BodyExt::boxed(StreamBody::new(frames)))
    };
    *out.status_mut() = parts.status;
    for name in PASSED {
        if let Some(v) = parts.headers.get(name) {
            out.headers_mut().insert(HeaderName::from_static(name), v.clone());
        }
    }
    let h = out.headers_mut();
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    h.insert("content-security-policy", HeaderValue::from_static("sandbox"));
    h.insert(
        "x-farmcam-gateway",
        HeaderValue::from_str(&gw.name).unwrap_or(HeaderValue::from_static("?")),
    );
    out
}

/// The other gateway's `/api/cameras` with URLs through this gateway (`/gateways/NAME/…` under
/// this gateway's public address); its dedicated ports are not reachable through the relay.
fn relayed_list(body: &[u8], gw: &WallGateway, req: &Request<Incoming>, ctx: &Ctx) -> Option<Bytes> {
    let mut list: Vec<serde_json::Map<String, serde_json::Value>> = serde_json::from_slice(body).ok()?;
    let (base, _, source) = api::public_base(req, ctx.public_url.as_deref());
    for cam in &mut list {
        let id = cam.get("id")?.as_str()?.to_string();
        let at = format!("{base}/gateways/{}/cameras/{id}", gw.name);
        cam.insert("stream_url".into(), format!("{at}/stream").into());
        cam.insert("snapshot_url".into(), format!("{at}/snapshot").into());
        cam.insert("url_source".into(), source.into());
        cam.insert("dedicated_url".into(), serde_json::Value::Null);
        cam.insert("dedicated_snapshot_url".into(), serde_json::Value::Null);
    }
    serde_json::to_vec(&list).ok().map(Bytes::from)
}
