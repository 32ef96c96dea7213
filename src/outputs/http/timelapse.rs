//! The timelapse API: `GET /api/timelapses`, `GET`/`DELETE /api/timelapses/NAME`,
//! `POST /cameras/ID/timelapse/start` and `…/stop`, and the videos, `GET /timelapses/NAME.mp4`
//! with Range requests (browsers and Home Assistant seek in them).

use bytes::Bytes;
use futures_util::stream;
use http_body_util::{BodyExt, Empty, StreamBody};
use hyper::body::{Frame as BodyFrame, Incoming};
use hyper::header::{HeaderValue, ACCEPT_RANGES, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, RANGE};
use hyper::{Method, Request, Response, StatusCode};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::api;
use super::path::{Query, Route, TimelapseAction};
use super::{Body, Ctx};
use crate::timelapse::{Refused, StartRequest};

/// Bytes read from a video per chunk sent.
const CHUNK: usize = 64 * 1024;
/// How a stopped print ended, as `POST …/timelapse/stop?outcome=` may say.
const OUTCOMES: [&str; 4] = ["stopped", "complete", "cancelled", "error"];

pub async fn handle(
    ctx: &Ctx,
    route: Route,
    req: &Request<Incoming>,
    q: &Query,
    head: bool,
) -> Response<Body> {
    let Some(t) = &ctx.timelapses else {
        return api::error(
            StatusCode::NOT_FOUND,
            "timelapses are off: add a [timelapse] section to the configuration (README \"Timelapse\")",
        );
    };
    match route {
        Route::TimelapseList => api::json(StatusCode::OK, &t.list()),
        Route::Timelapse(name) if req.method() == Method::DELETE => match t.delete(&name) {
            Ok(()) => api::json(StatusCode::OK, &serde_json::json!({ "deleted": name })),
            Err(e) => refused(e),
        },
        Route::Timelapse(name) => match t.list().into_iter().find(|i| i.name == name) {
            Some(info) => api::json(StatusCode::OK, &info),
            None => refused(Refused::NoTimelapse(name)),
        },
        Route::TimelapseControl(camera, TimelapseAction::Start) => {
            let req = StartRequest {
                printer: q.get("printer").filter(|p| !p.is_empty()).map(str::to_string),
                file: q.get("file").filter(|f| !f.is_empty()).map(str::to_string),
                trigger: "api",
            };
            match t.start_recording(&camera, req) {
                Ok(info) => api::json(StatusCode::OK, &info),
                Err(e) => refused(e),
            }
        }
        Route::TimelapseControl(camera, TimelapseAction::Stop) => {
            let outcome = q.get("outcome").unwrap_or("stopped");
            if !OUTCOMES.contains(&outcome) {
                return api::error(
                    StatusCode::BAD_REQUEST,
                    &format!("outcome {outcome:?}: use one of {}", OUTCOMES.join(", ")),
                );
            }
            match t.stop_recording(&camera, outcome) {
                Ok(info) => api::json(StatusCode::OK, &info),
                Err(e) => refused(e),
            }
        }
        Route::TimelapseVideo(name) => match t.video(&name) {
            Some(path) => video(&path, req, head).await,
            None => refused(Refused::NoTimelapse(name)),
        },
        _ => api::error(StatusCode::NOT_FOUND, "not a timelapse path"),
    }
}

fn refused(e: Refused) -> Response<Body> {
    let status = match e {
        Refused::NoCamera(_) | Refused::NoTimelapse(_) => StatusCode::NOT_FOUND,
        Refused::NotRecording(_) | Refused::Recording(_) => StatusCode::CONFLICT,
        Refused::Disk(..) => StatusCode::INSUFFICIENT_STORAGE,
    };
    api::error(status, &e.to_string())
}

/// A `Range` header against a body of `len` bytes: `None` to serve it whole (no header, or one
/// this does not serve: several ranges, another unit, malformed), `Some(None)` when it cannot be
/// satisfied, else the first and last byte.
pub fn range(header: Option<&str>, len: u64) -> Option<Option<(u64, u64)>> {
    let spec = header?.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (a, b) = (a.trim(), b.trim());
    let parse = |s: &str| s.parse::<u64>().ok();
    Some(match (a.is_empty(), b.is_empty()) {
        (true, true) => return None,
        // The last n bytes.
        (true, false) => match parse(b)? {
            0 => None,
            _ if len == 0 => None,
            n => Some((len.saturating_sub(n), len - 1)),
        },
        (false, true) => {
            let a = parse(a)?;
            (a < len).then(|| (a, len - 1))
        }
        (false, false) => {
            let (a, b) = (parse(a)?, parse(b)?);
            if b < a {
                return None;
            }
            (a < len).then(|| (a, b.min(len - 1)))
        }
    })
}

async fn video(path: &std::path::Path, req: &Request<Incoming>, head: bool) -> Response<Body> {
    let mut file = match tokio::fs::File::open(path).await {
        Ok(f) => f,
        Err(e) => return api::error(StatusCode::NOT_FOUND, &format!("the video cannot be read: {e}")),
    };
    let len = match file.metadata().await {
        Ok(m) => m.len(),
        Err(e) => {
            return api::error(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("the video cannot be read: {e}"),
            )
        }
    };
    let asked = req.headers().get(RANGE).and_then(|v| v.to_str().ok());
    let (status, first, last) = match range(asked, len) {
        None => (StatusCode::OK, 0, len.saturating_sub(1)),
        Some(Some((a, b))) => (StatusCode::PARTIAL_CONTENT, a, b),
        Some(None) => {
            let mut resp = api::error(
                StatusCode::RANGE_NOT_SATISFIABLE,
                &format!("the video has {len} bytes"),
            );
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                resp.headers_mut().insert(CONTENT_RANGE, v);
            }
            return resp;
        }
    };
    let count = if len == 0 { 0 } else { last - first + 1 };
    let body: Body = if head || count == 0 {
        Empty::new().map_err(|never| match never {}).boxed()
    } else {
        if file.seek(std::io::SeekFrom::Start(first)).await.is_err() {
            return api::error(StatusCode::INTERNAL_SERVER_ERROR, "the video cannot be read");
        }
        let chunks = stream::unfold((file, count), |(mut file, left)| async move {
            if left == 0 {
                return None;
            }
            let mut buf = vec![0u8; CHUNK.min(left as usize)];
            // A read error ends the body early (the client sees a short answer).
            match file.read(&mut buf).await {
                Ok(n) if n > 0 => {
                    buf.truncate(n);
                    Some((Ok(BodyFrame::data(Bytes::from(buf))), (file, left - n as u64)))
                }
                _ => None,
            }
        });
        StreamBody::new(chunks).boxed()
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("video/mp4"));
    h.insert(ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(CONTENT_LENGTH, HeaderValue::from(count));
    if status == StatusCode::PARTIAL_CONTENT {
        if let Ok(v) = HeaderValue::from_str(&format!("bytes {first}-{last}/{len}")) {
            h.insert(CONTENT_RANGE, v);
        }
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::range;

    #[test]
    fn ranges_as_browsers_send_them() {
        assert_eq!(range(None, 100), None);
        assert_eq!(range(Some("bytes=0-"), 100), Some(Some((0, 99))));
        assert_eq!(range(Some("bytes=10-19"), 100), Some(Some((10, 19))));
        assert_eq!(range(Some("bytes=90-200"), 100), Some(Some((90, 99))));
        assert_eq!(range(Some("bytes=-10"), 100), Some(Some((90, 99))));
        assert_eq!(range(Some("bytes=-500"), 100), Some(Some((0, 99))));
        assert_eq!(range(Some("bytes=100-"), 100), Some(None), "past the end");
        assert_eq!(range(Some("bytes=-0"), 100), Some(None));
        assert_eq!(range(Some("bytes=5-1"), 100), None, "malformed: whole");
        assert_eq!(range(Some("bytes=0-1,5-6"), 100), None, "several: whole");
        assert_eq!(range(Some("items=0-1"), 100), None);
        assert_eq!(range(Some("bytes=x-"), 100), None);
        assert_eq!(range(Some("bytes=0-"), 0), Some(None));
    }
}
