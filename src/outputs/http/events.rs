//! `/api/events`: camera state changes as Server-Sent Events, resumable with `Last-Event-ID`.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::{self, Stream};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame as BodyFrame, Incoming};
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Request, Response};
use tokio::sync::broadcast::error::RecvError;
use tokio::time::{interval_at, Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use super::path::Query;
use super::{Body, Ctx};
use crate::events::{Event, EventBus};

pub const HEARTBEAT: Duration = Duration::from_secs(15);
/// Reconnection delay suggested to browsers.
pub const RETRY_MS: u64 = 2000;

fn format_event(e: &Event) -> Bytes {
    Bytes::from(format!("id: {}\ndata: {}\n\n", e.id, e.json))
}

/// The SSE byte stream: a `retry:` hint and the missed events, then live events and a comment
/// heartbeat every [`HEARTBEAT`]. Ends on shutdown, or when this client fell too far behind (it
/// reconnects with `Last-Event-ID` and gets the backlog).
pub fn sse_stream(
    bus: &EventBus,
    last_id: Option<u64>,
    shutdown: CancellationToken,
) -> impl Stream<Item = Bytes> + Send + 'static {
    let (backlog, rx) = bus.subscribe(last_id);
    let mut first = format!(
        "retry: {RETRY_MS}\n: farmcam events; next id {}\n\n",
        bus.next_id()
    )
    .into_bytes();
    for e in &backlog {
        first.extend_from_slice(&format_event(e));
    }
    let mut heartbeat = interval_at(Instant::now() + HEARTBEAT, HEARTBEAT);
    heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let live = stream::unfold(
        (rx, heartbeat, shutdown),
        |(mut rx, mut hb, shutdown)| async move {
            let chunk = tokio::select! {
                _ = shutdown.cancelled() => return None,
                _ = hb.tick() => Bytes::from_static(b": heartbeat\n\n"),
                r = rx.recv() => match r {
                    Ok(e) => format_event(&e),
                    Err(RecvError::Lagged(_)) | Err(RecvError::Closed) => return None,
                },
            };
            Some((chunk, (rx, hb, shutdown)))
        },
    );
    futures_util::StreamExt::chain(stream::iter([Bytes::from(first)]), live)
}

pub fn sse(ctx: &Ctx, req: &Request<Incoming>, q: &Query) -> Response<Body> {
    let last_id = req
        .headers()
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .or_else(|| q.get("last_event_id"))
        .and_then(|v| v.trim().parse::<u64>().ok());
    let bus: &Arc<EventBus> = &ctx.registry.events;
    let body = futures_util::StreamExt::map(sse_stream(bus, last_id, ctx.shutdown.clone()), |b| {
        Ok(BodyFrame::data(b))
    });
    let mut resp = Response::new(StreamBody::new(body).boxed());
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{CameraState, EventKind};
    use futures_util::StreamExt;

    #[tokio::test(start_paused = true)]
    async fn heartbeat_every_fifteen_seconds_and_resume() {
        let bus = EventBus::default();
        bus.publish("a", EventKind::Started, CameraState::Starting, 0);
        bus.publish("a", EventKind::Live, CameraState::Live, 0);
        let stop = CancellationToken::new();
        let s = sse_stream(&bus, Some(1), stop.clone());
        tokio::pin!(s);
        let first = String::from_utf8(s.next().await.unwrap().to_vec()).unwrap();
        assert!(first.starts_with("retry: 2000\n"), "{first}");
        assert!(
            first.contains("id: 2\ndata: {") && !first.contains("id: 1\n"),
            "{first}"
        );
        let t0 = Instant::now();
        assert_eq!(&s.next().await.unwrap()[..], b": heartbeat\n\n");
        assert_eq!(t0.elapsed(), HEARTBEAT);
        bus.publish("a", EventKind::Stopped, CameraState::Idle, 0);
        assert!(String::from_utf8(s.next().await.unwrap().to_vec())
            .unwrap()
            .starts_with("id: 3\n"));
        stop.cancel();
        assert!(s.next().await.is_none());
    }
}
