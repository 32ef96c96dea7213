//! What a request asks for: its path and query parsed once into a [`Route`] that carries the
//! access area it belongs to, so the guard and the dispatch can never disagree (moonfire-nvr's
//! `web/path.rs` is the model).
//!
//! Path segments and query values are percent-decoded (`%2B` is `+`; a `+` stays a `+`, so base64
//! tokens pasted as they are still match). A segment that decodes to `.`, `..` or contains `/` or
//! a control character is refused as a whole: nothing farmcam serves or relays is named so, and a
//! relayed path must mean at the other gateway exactly what it was checked as here.

use crate::config::Area;

/// The query string, percent-decoded, in order.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Query(Vec<(String, String)>);

impl Query {
    pub fn parse(raw: Option<&str>) -> Query {
        Query(
            raw.unwrap_or("")
                .split('&')
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (k, v) = p.split_once('=').unwrap_or((p, ""));
                    (decode(k).unwrap_or_default(), decode(v).unwrap_or_default())
                })
                .collect(),
        )
    }

    /// The first value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// One value percent-encoded, for a URL farmcam writes.
    pub fn encode_value(v: &str) -> String {
        encode(v)
    }

    /// The query as a string again (percent-encoded), without the keys in `drop`.
    pub fn encode_without(&self, drop: &[&str]) -> String {
        self.0
            .iter()
            .filter(|(k, _)| !drop.contains(&k.as_str()))
            .map(|(k, v)| {
                if v.is_empty() {
                    encode(k)
                } else {
                    format!("{}={}", encode(k), encode(v))
                }
            })
            .collect::<Vec<_>>()
            .join("&")
    }
}

/// `%XX` escapes decoded; `None` when an escape is malformed or the result is not UTF-8.
fn decode(s: &str) -> Option<String> {
    if !s.contains('%') {
        return Some(s.to_string());
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Percent-encode everything but RFC 3986's unreserved characters.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// What is asked of one camera.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CameraPart {
    Stream,
    Snapshot,
    /// A camera's dedicated port without `?action=`: a small page showing the stream.
    Page,
    /// Anything else under a camera (answered 404 naming what there is).
    Unknown,
}

/// What `POST /cameras/ID/timelapse/…` asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimelapseAction {
    Start,
    Stop,
}

/// Which camera.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Which {
    /// `/cameras/ID/…`, or a camera's dedicated port.
    Id(String),
    /// The main port's mjpg-streamer forms: `[http] default_camera`, or the only camera.
    Default,
}

/// WebRTC signalling for one camera, in the two forms players use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signal {
    /// camera-streamer's `POST …/webrtc` (JSON: request, answer, remote_candidate).
    CameraStreamer,
    /// WHEP: `POST …/whep` with an SDP offer.
    Whep,
    /// WHEP's session resource (`PATCH` trickle, `DELETE` end).
    WhepSession(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `GET /`: the farm wall.
    Wall,
    Camera(Which, CameraPart),
    /// WebRTC signalling (an area of streams: it starts a live view).
    WebRtc(Which, Signal),
    /// `/api/cameras`.
    CameraList,
    /// `/api/gateways`.
    GatewayList,
    /// `/api/events`.
    Events,
    /// `/metrics`.
    Metrics,
    /// `/api/timelapses`.
    TimelapseList,
    /// `/api/timelapses/NAME`: one timelapse (`GET`), or removed (`DELETE`).
    Timelapse(String),
    /// `POST /cameras/ID/timelapse/start` or `…/stop`.
    TimelapseControl(String, TimelapseAction),
    /// `/timelapses/NAME.mp4`: a timelapse's video (Range requests served).
    TimelapseVideo(String),
    /// `/gateways/NAME/…`: `inner` is what the other gateway will serve for `target`, parsed by
    /// these same rules; never itself a relay.
    Relay {
        gateway: String,
        inner: Box<Route>,
        /// Path and query sent to the other gateway (this gateway's `token` left out).
        target: String,
    },
    /// A relay of a relay: refused (two gateways listing each other would loop).
    NestedRelay,
    /// No such path (the text of the path, for the 404).
    NotFound(String),
    /// A path segment that cannot be served or relayed safely (`..`, an encoded `/`).
    BadPath,
}

/// Where a request arrived.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// The main listener: every camera, the API, the wall.
    Main,
    /// A camera's dedicated port, by camera id (looked up per request, so a reloaded camera is
    /// served by its new pump).
    Camera(String),
}

impl Route {
    /// Parse a request's path (`uri.path()`) and query as they arrived on `scope`.
    pub fn parse(scope: &Scope, path: &str, query: &Query) -> Route {
        let mut segments = Vec::new();
        for raw in path.split('/').filter(|s| !s.is_empty()) {
            match decode(raw) {
                Some(s) if s != "." && s != ".." && !s.contains('/') && !s.chars().any(char::is_control) => {
                    segments.push(s)
                }
                _ => return Route::BadPath,
            }
        }
        let segs: Vec<&str> = segments.iter().map(String::as_str).collect();
        let action = query.get("action");
        let signal = |rest: &[&str]| match rest {
            ["webrtc"] => Some(Signal::CameraStreamer),
            ["whep"] => Some(Signal::Whep),
            ["whep", id] => Some(Signal::WhepSession(id.to_string())),
            _ => None,
        };
        let camera_part = |rest: &[&str]| match rest {
            [] => match action {
                Some("stream") => CameraPart::Stream,
                Some("snapshot") => CameraPart::Snapshot,
                Some(_) => CameraPart::Unknown,
                None => CameraPart::Page,
            },
            ["stream"] => CameraPart::Stream,
            ["snapshot"] => CameraPart::Snapshot,
            _ => CameraPart::Unknown,
        };
        match scope {
            Scope::Camera(id) => match signal(&segs) {
                Some(sig) => Route::WebRtc(Which::Id(id.clone()), sig),
                None => Route::Camera(Which::Id(id.clone()), camera_part(&segs)),
            },
            Scope::Main => match segs.as_slice() {
                rest @ (["webrtc"] | ["whep"] | ["whep", _]) => {
                    Route::WebRtc(Which::Default, signal(rest).expect("a signalling path"))
                }
                ["cameras", id, rest @ ..] if signal(rest).is_some() => Route::WebRtc(
                    Which::Id(id.to_string()),
                    signal(rest).expect("a signalling path"),
                ),
                [] if action.is_some() => Route::Camera(Which::Default, camera_part(&[])),
                [] => Route::Wall,
                [what @ ("stream" | "snapshot")] => Route::Camera(Which::Default, camera_part(&[what])),
                ["api", "cameras"] => Route::CameraList,
                ["api", "gateways"] => Route::GatewayList,
                ["api", "events"] => Route::Events,
                ["metrics"] => Route::Metrics,
                ["api", "timelapses"] => Route::TimelapseList,
                ["api", "timelapses", name] => Route::Timelapse(name.to_string()),
                ["cameras", id, "timelapse", action @ ("start" | "stop")] => Route::TimelapseControl(
                    id.to_string(),
                    if *action == "start" {
                        TimelapseAction::Start
                    } else {
                        TimelapseAction::Stop
                    },
                ),
                ["timelapses", file] if file.ends_with(".mp4") => {
                    Route::TimelapseVideo(file.trim_end_matches(".mp4").to_string())
                }
                ["cameras", id, rest @ ..] => {
                    let part = match camera_part(rest) {
                        // Only a dedicated port has a page.
                        CameraPart::Page => CameraPart::Unknown,
                        p => p,
                    };
                    Route::Camera(Which::Id(id.to_string()), part)
                }
                ["gateways", name, rest @ ..] => {
                    let trailing = path.ends_with('/') && !rest.is_empty();
                    let inner_path = format!("/{}{}", rest.join("/"), if trailing { "/" } else { "" });
                    match Route::parse(&Scope::Main, &inner_path, query) {
                        Route::Relay { .. } | Route::NestedRelay => Route::NestedRelay,
                        inner @ (Route::NotFound(_) | Route::BadPath) => inner,
                        inner => {
                            let q = query.encode_without(&["token"]);
                            let target = if q.is_empty() {
                                encode_path(&inner_path)
                            } else {
                                format!("{}?{q}", encode_path(&inner_path))
                            };
                            Route::Relay {
                                gateway: name.to_string(),
                                inner: Box::new(inner),
                                target,
                            }
                        }
                    }
                }
                _ => Route::NotFound(path.to_string()),
            },
        }
    }

    /// The area `[http.auth] open` and open listeners name for this route. A relayed route has
    /// the area the other gateway gives it; what is not served at all needs credentials like the
    /// API (so that nobody learns what exists without them).
    pub fn area(&self) -> Area {
        match self {
            Route::Wall => Area::Wall,
            Route::Camera(..) | Route::WebRtc(..) => Area::Streams,
            Route::CameraList | Route::GatewayList | Route::Events => Area::Api,
            // Starting, stopping and deleting are the API's; watching a video is a stream's.
            Route::TimelapseList | Route::Timelapse(_) | Route::TimelapseControl(..) => Area::Api,
            Route::TimelapseVideo(_) => Area::Streams,
            Route::Metrics => Area::Metrics,
            Route::Relay { inner, .. } => inner.area(),
            Route::NestedRelay | Route::NotFound(_) | Route::BadPath => Area::Api,
        }
    }
}

/// A decoded path encoded again, segment by segment (the slashes kept).
fn encode_path(path: &str) -> String {
    path.split('/').map(encode).collect::<Vec<_>>().join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn main(path_and_query: &str) -> Route {
        let (path, query) = path_and_query.split_once('?').unwrap_or((path_and_query, ""));
        Route::parse(&Scope::Main, path, &Query::parse(Some(query)))
    }

    #[test]
    fn every_path_has_one_route_and_its_area() {
        let cases: &[(&str, Area)] = &[
            ("/", Area::Wall),
            ("/?action=stream", Area::Streams),
            ("/?action=snapshot", Area::Streams),
            ("/stream", Area::Streams),
            ("/snapshot/", Area::Streams),
            ("/cameras/a/stream", Area::Streams),
            ("//cameras//a//snapshot", Area::Streams),
            ("/api/cameras", Area::Api),
            ("/api/cameras/", Area::Api),
            ("/api/events", Area::Api),
            ("/api/gateways", Area::Api),
            ("/metrics", Area::Metrics),
            ("/metrics/", Area::Metrics),
            ("/api/timelapses", Area::Api),
            ("/api/timelapses/x_1", Area::Api),
            ("/cameras/a/timelapse/start", Area::Api),
            ("/cameras/a/timelapse/stop", Area::Api),
            ("/timelapses/x_1.mp4", Area::Streams),
            ("/timelapses/x_1", Area::Api),
            ("/nothing", Area::Api),
            // Relayed paths carry the area the other gateway gives them.
            ("/gateways/b/snapshot", Area::Streams),
            ("/gateways/b/?action=stream", Area::Streams),
            ("/gateways/b/", Area::Wall),
            ("/gateways/b/metrics", Area::Metrics),
            ("/gateways/b/api/cameras", Area::Api),
            ("/gateways/b/cameras/x/snapshot", Area::Streams),
            ("/gateways/b/gateways/a/cameras/x/snapshot", Area::Api),
            ("/gateways/b/%2e%2e/metrics", Area::Api),
        ];
        for (p, area) in cases {
            assert_eq!(main(p).area(), *area, "{p}: {:?}", main(p));
        }
    }

    #[test]
    fn relays_name_what_the_other_gateway_serves_and_never_nest() {
        match main("/gateways/b/cameras/x/snapshot?width=320&token=mine") {
            Route::Relay {
                gateway,
                inner,
                target,
            } => {
                assert_eq!(gateway, "b");
                assert_eq!(*inner, Route::Camera(Which::Id("x".into()), CameraPart::Snapshot));
                assert_eq!(
                    target, "/cameras/x/snapshot?width=320",
                    "this gateway's token stays here"
                );
            }
            r => panic!("{r:?}"),
        }
        assert_eq!(main("/gateways/b/gateways/a/metrics"), Route::NestedRelay);
        assert_eq!(main("/gateways/b/gateways/a/"), Route::NestedRelay);
        assert!(matches!(main("/gateways/b/nothing"), Route::NotFound(_)));
        assert!(matches!(main("/gateways/b"), Route::Relay { target, .. } if target == "/"));
    }

    #[test]
    fn encoded_dots_and_slashes_are_refused_and_escapes_decoded() {
        for p in [
            "/cameras/%2e%2e/snapshot",
            "/cameras/../metrics",
            "/cameras/a%2Fb/snapshot",
            "/cameras/%2E/snapshot",
            "/gateways/b/%2e%2e/%2e%2e/metrics",
            "/cameras/%zz/snapshot",
            "/cameras/%00/snapshot",
        ] {
            assert_eq!(main(p), Route::BadPath, "{p}");
        }
        assert_eq!(
            main("/cameras/%63am/%73napshot"),
            Route::Camera(Which::Id("cam".into()), CameraPart::Snapshot)
        );
    }

    #[test]
    fn signalling_paths_are_streams() {
        let id = |s: &str| Which::Id(s.into());
        assert_eq!(
            main("/cameras/c/webrtc"),
            Route::WebRtc(id("c"), Signal::CameraStreamer)
        );
        assert_eq!(main("/cameras/c/whep"), Route::WebRtc(id("c"), Signal::Whep));
        assert_eq!(
            main("/cameras/c/whep/abc"),
            Route::WebRtc(id("c"), Signal::WhepSession("abc".into()))
        );
        assert_eq!(
            main("/webrtc"),
            Route::WebRtc(Which::Default, Signal::CameraStreamer)
        );
        assert_eq!(main("/cameras/c/whep").area(), Area::Streams);
        assert_eq!(main("/gateways/b/cameras/c/webrtc").area(), Area::Streams);
        let cam = Scope::Camera("c".into());
        assert_eq!(
            Route::parse(&cam, "/whep", &Query::default()),
            Route::WebRtc(id("c"), Signal::Whep)
        );
    }

    #[test]
    fn a_dedicated_port_serves_only_its_camera() {
        let cam = Scope::Camera("c".into());
        let r = |p: &str, q: &str| Route::parse(&cam, p, &Query::parse(Some(q)));
        assert_eq!(r("/", ""), Route::Camera(Which::Id("c".into()), CameraPart::Page));
        assert_eq!(
            r("/", "action=snapshot"),
            Route::Camera(Which::Id("c".into()), CameraPart::Snapshot)
        );
        assert_eq!(r("/metrics", "").area(), Area::Streams);
        assert_eq!(
            r("/metrics", ""),
            Route::Camera(Which::Id("c".into()), CameraPart::Unknown)
        );
    }

    #[test]
    fn query_values_are_percent_decoded_and_plus_is_kept() {
        let q = Query::parse(Some("token=ab%2Bc%2F%3D&x&fps=5&raw=a+b"));
        assert_eq!(q.get("token"), Some("ab+c/="));
        assert_eq!(q.get("x"), Some(""));
        assert_eq!(q.get("raw"), Some("a+b"));
        assert_eq!(q.encode_without(&["token"]), "x&fps=5&raw=a%2Bb");
        assert_eq!(Query::parse(Some("t=%G1")).get("t"), Some(""));
    }
}
