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
use http_body_util::{BodyExt, BodyStream, Empty, StreamBody};
use hyper::header::{HeaderName, HeaderValue, AUTHORIZATION, HOST};
use hyper::{Method, Request, Response, StatusCode};
use tokio::time::timeout;

use super::{api, client, Body};
use crate::config::WallGateway;

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

/// Relay `GET`/`HEAD` of `path_and_query` (starting with `/`) to `gw`.
pub async fn forward(gw: &WallGateway, path_and_query: &str, head: bool) -> Response<Body> {
    let unreachable = |why: String| {
        api::error(
            StatusCode::BAD_GATEWAY,
            &format!("gateway {} ({}) is unreachable: {why}", gw.name, gw.url),
        )
    };
    let (mut sender, driver) = match timeout(CONNECT_TIMEOUT, client::connect(&gw.host, gw.port)).await {
        Ok(Ok(x)) => x,
        Ok(Err(e)) => return unreachable(e),
        Err(_) => return unreachable(format!("no connection within {CONNECT_TIMEOUT:?}")),
    };
    let mut req = Request::builder()
        .method(if head { Method::HEAD } else { Method::GET })
        .uri(path_and_query)
        .header(HOST, format!("{}:{}", gw.host, gw.port));
    if let Some(t) = &gw.token {
        req = req.header(AUTHORIZATION, format!("Bearer {}", t.0));
    }
    let Ok(req) = req.body(Empty::<Bytes>::new()) else {
        return api::error(StatusCode::BAD_REQUEST, "not a path farmcam can relay");
    };
    let resp = match timeout(ANSWER_TIMEOUT, sender.send_request(req)).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return unreachable(e.to_string()),
        Err(_) => return unreachable(format!("no answer within {ANSWER_TIMEOUT:?}")),
    };
    let (parts, body) = resp.into_parts();
    // The relayed body ends when the gateway's does, fails, or stays silent for IDLE_TIMEOUT (a
    // hung gateway); the connection's driver goes with it.
    let frames =
        futures_util::stream::unfold((BodyStream::new(body), driver), |(mut body, driver)| async move {
            match timeout(IDLE_TIMEOUT, body.next()).await {
                Ok(Some(Ok(frame))) => Some((Ok::<_, std::convert::Infallible>(frame), (body, driver))),
                _ => None,
            }
        });
    let mut out = Response::new(BodyExt::boxed(StreamBody::new(frames)));
    *out.status_mut() = parts.status;
    for name in PASSED {
        if let Some(v) = parts.headers.get(name) {
            out.headers_mut().insert(HeaderName::from_static(name), v.clone());
        }
    }
    // No further requests on this connection; the answer's body keeps it going.
    drop(sender);
    out.headers_mut().insert(
        "x-farmcam-gateway",
        HeaderValue::from_str(&gw.name).unwrap_or(HeaderValue::from_static("?")),
    );
    out
}
