//! HTTP: what each request gets. [`server`] accepts and limits connections; every request comes
//! to [`handle`], which parses it once into a [`path::Route`] (which carries its access area),
//! asks the guard ([`auth`]) about that area, and dispatches the same route value.

mod api;
mod auth;
mod client_slots;
mod events;
mod metrics;
mod mjpeg;
mod path;
mod relay;
mod server;
mod timelapse;
mod wall;
mod webrtc;

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use tokio_util::sync::CancellationToken;

pub use path::Scope;
pub use server::{bind, Listener, Server};

use crate::config::{Config, WallGateway};
use crate::registry::{Camera, Registry};
use client_slots::ClientCounts;
use path::{CameraPart, Query, Route, Signal, Which};
use server::Arrival;

pub type Body = BoxBody<Bytes, Infallible>;

/// Relayed requests (`/gateways/NAME/…`) one client may have open at once: a wall needs 2
/// snapshot workers, an event stream, a status poll and one live view. Every relayed request
/// reaches the other gateway from this gateway's address, so without this one client could use
/// up the other gateway's per-client limit for the whole wall.
const RELAYED_PER_CLIENT: usize = 8;
/// Relayed requests open at once to one gateway, from all clients: below a gateway's default
/// `max_connections_per_client` (64), which sees them all as this gateway's address.
const RELAYED_PER_GATEWAY: usize = 48;

/// What reloads replace: who may use what, and the gateways relayed (with their relayed
/// requests open at once).
struct Access {
    guard: auth::Guard,
    gateways: Vec<WallGateway>,
    relaying: HashMap<String, Arc<tokio::sync::Semaphore>>,
}

impl Access {
    fn new(config: &Config, login_stats: Arc<auth::LoginStats>) -> Access {
        Access {
            guard: auth::Guard::new(&config.http, login_stats),
            gateways: config.wall_gateways.clone(),
            relaying: config
                .wall_gateways
                .iter()
                .map(|g| {
                    (
                        g.name.clone(),
                        Arc::new(tokio::sync::Semaphore::new(RELAYED_PER_GATEWAY)),
                    )
                })
                .collect(),
        }
    }
}

/// What the daemon runs besides HTTP that the API, pages and metrics show or use.
pub struct Services {
    pub mqtt: Option<Arc<crate::outputs::mqtt::Mqtt>>,
    pub prusa: Arc<crate::outputs::prusa_connect::PrusaConnect>,
    /// `Err`: WebRTC is configured but its port could not be bound (requests say why).
    pub webrtc: Result<Option<Arc<crate::outputs::webrtc::WebRtc>>, String>,
    pub rtsp: Option<Arc<crate::outputs::rtsp::Rtsp>>,
    /// `[timelapse]`: None when timelapses are off.
    pub timelapses: Option<Arc<crate::timelapse::Timelapses>>,
}

/// Shared by every connection.
pub struct Ctx {
    pub registry: Arc<Registry>,
    pub mqtt: Option<Arc<crate::outputs::mqtt::Mqtt>>,
    /// Snapshot uploads to Prusa Connect (none without `[camera.prusa_connect]` blocks).
    pub prusa: Arc<crate::outputs::prusa_connect::PrusaConnect>,
    /// How often a wall tile refreshes its snapshot.
    pub wall_refresh: Duration,
    /// `[http] default_camera`.
    pub default_camera: Option<String>,
    /// `[http] public_url`.
    pub public_url: Option<String>,
    /// This gateway's name (`[mqtt] node_id`, else the host name).
    pub node_id: String,
    /// Camera id → the port its dedicated listener is bound to.
    pub dedicated_ports: HashMap<String, u16>,
    /// Live H.264 over WebRTC; None when `[webrtc] enabled = false` or its port could not be
    /// bound (then `webrtc_error` says why).
    pub webrtc: Option<Arc<crate::outputs::webrtc::WebRtc>>,
    pub webrtc_error: Option<String>,
    /// RTSP out; None unless `[rtsp] listen` is set (and bound).
    pub rtsp: Option<Arc<crate::outputs::rtsp::Rtsp>>,
    /// `[timelapse]`: None when timelapses are off.
    pub timelapses: Option<Arc<crate::timelapse::Timelapses>>,
    pub shutdown: CancellationToken,
    access: RwLock<Arc<Access>>,
    relayed: ClientCounts,
    /// Password checks and failed logins (across reloads).
    pub(crate) login_stats: Arc<auth::LoginStats>,
}

impl Ctx {
    fn new(
        config: &Config,
        registry: Arc<Registry>,
        services: Services,
        shutdown: CancellationToken,
        dedicated_ports: HashMap<String, u16>,
    ) -> Ctx {
        let Services {
            mqtt,
            prusa,
            webrtc,
            rtsp,
            timelapses,
        } = services;
        let login_stats = Arc::new(auth::LoginStats::default());
        Ctx {
            registry,
            mqtt,
            prusa,
            wall_refresh: config.http.wall_refresh,
            default_camera: config.http.default_camera.clone(),
            public_url: config.http.public_url.clone(),
            node_id: config.node_id.clone(),
            dedicated_ports,
            shutdown,
            webrtc_error: webrtc.as_ref().err().cloned(),
            webrtc: webrtc.ok().flatten(),
            rtsp,
            timelapses,
            access: RwLock::new(Arc::new(Access::new(config, login_stats.clone()))),
            relayed: ClientCounts::new(RELAYED_PER_CLIENT),
            login_stats,
        }
    }

    fn access(&self) -> Arc<Access> {
        self.access.read().unwrap().clone()
    }

    /// The gateways relayed now (`[[wall.gateway]]`).
    pub fn gateways(&self) -> Vec<WallGateway> {
        self.access().gateways.clone()
    }

    /// Take the reloaded access settings and gateways; whether they differ from the running ones.
    fn reload(&self, config: &Config) -> bool {
        let mut access = self.access.write().unwrap();
        let changed = !access.guard.same_settings(&config.http) || access.gateways != config.wall_gateways;
        if changed {
            *access = Arc::new(Access::new(config, self.login_stats.clone()));
        }
        changed
    }
}

/// RTSP asks the HTTP side's guard about the `streams` area (`[http.auth]`, as reloaded).
#[async_trait::async_trait]
impl crate::outputs::rtsp::Gate for Ctx {
    async fn check(
        &self,
        authorization: Option<&str>,
        token: Option<&str>,
        method: &str,
        uri: &str,
        peer: std::net::SocketAddr,
        listener: std::net::SocketAddr,
    ) -> crate::outputs::rtsp::Verdict {
        use crate::outputs::rtsp::Verdict;
        let access = self.access();
        let outcome = access
            .guard
            .check(
                crate::config::Area::Streams,
                listener,
                peer,
                authorization.map(str::as_bytes),
                token.map(str::as_bytes),
                Some((method, uri)),
            )
            .await;
        match outcome {
            Ok(()) => Verdict::Allowed,
            Err(auth::Refused::TooMany(wait)) => Verdict::TooMany(wait),
            Err(auth::Refused::Unauthorized) => {
                let mut challenges = Vec::new();
                if access.guard.offers_digest() {
                    challenges.push(access.guard.digest_challenge(peer));
                }
                challenges.push(access.guard.challenge().to_string());
                Verdict::Unauthorized { challenges }
            }
        }
    }
}

/// One request: the guard, then the route; CORS headers on every answer.
async fn handle(req: Request<Incoming>, at: &Arrival, ctx: &Ctx) -> Response<Body> {
    let access = ctx.access();
    let origin = auth::origin(&req);
    let mut answer = guarded(req, at, ctx, &access).await;
    access.guard.cors(origin.as_ref(), &mut answer);
    answer
}

async fn guarded(req: Request<Incoming>, at: &Arrival, ctx: &Ctx, access: &Access) -> Response<Body> {
    if let Some(refused) = access.guard.host_refusal(&req) {
        return refused;
    }
    // Parsed once: the area the guard checks is the route's own.
    let query = Query::parse(req.uri().query());
    let route = Route::parse(&at.scope, req.uri().path(), &query);
    let methods = match &route {
        Route::WebRtc(_, Signal::WhepSession(_)) => "PATCH, DELETE, OPTIONS",
        Route::WebRtc(..) | Route::TimelapseControl(..) => "POST, OPTIONS",
        Route::Timelapse(_) => "GET, HEAD, DELETE, OPTIONS",
        _ => "GET, HEAD, OPTIONS",
    };
    // A CORS preflight carries no credentials (browsers never send them on one): it is
    // answered for every path, saying what the real request may send.
    if req.method() == Method::OPTIONS {
        let mut resp = api::preflight(&req, methods);
        if let (Route::WebRtc(..), Some(rtc)) = (&route, &ctx.webrtc) {
            webrtc::ice_links(rtc, &mut resp);
        }
        return resp;
    }
    // HEAD answers wherever GET does, with the same status and headers and no body (hyper
    // sends none); it never starts a camera.
    let head = req.method() == Method::HEAD;
    if !methods.split(", ").any(|m| m == req.method().as_str()) {
        return api::method_not_allowed(methods);
    }
    if let Some(refused) = access
        .guard
        .refusal(&req, &query, route.area(), at.listener, at.peer)
        .await
    {
        return refused;
    }
    if let Route::WebRtc(which, signal) = route {
        let cam = match which {
            Which::Id(id) => ctx.registry.get(&id),
            Which::Default => default_of(ctx),
        };
        return match cam {
            None => api::error(
                StatusCode::NOT_FOUND,
                "no such camera (or several and no [http] default_camera); GET /api/cameras lists them",
            ),
            Some(cam) => webrtc::signal(ctx, &cam, signal, req, at.peer).await,
        };
    }
    dispatch(route, &req, &query, ctx, access, at, head).await
}

/// `[http] default_camera`, or the only camera.
fn default_of(ctx: &Ctx) -> Option<Arc<Camera>> {
    match &ctx.default_camera {
        Some(id) => ctx.registry.get(id),
        None => {
            let cameras = ctx.registry.cameras();
            (cameras.len() == 1).then(|| cameras[0].clone())
        }
    }
}

async fn dispatch(
    route: Route,
    req: &Request<Incoming>,
    q: &Query,
    ctx: &Ctx,
    access: &Access,
    at: &Arrival,
    head: bool,
) -> Response<Body> {
    match route {
        Route::Wall => wall::page(ctx.wall_refresh),
        Route::CameraList => api::cameras(ctx, req),
        Route::GatewayList => api::json(
            StatusCode::OK,
            &access
                .gateways
                .iter()
                .map(|g| serde_json::json!({ "name": g.name }))
                .collect::<Vec<_>>(),
        ),
        Route::Events => events::sse(ctx, req, q),
        Route::Metrics => metrics::metrics(ctx),
        Route::TimelapseList | Route::Timelapse(_) | Route::TimelapseControl(..) | Route::TimelapseVideo(_) => {
            timelapse::handle(ctx, route, req, q, head).await
        }
        Route::Camera(Which::Default, part) => default_camera(ctx, part, q, at, req, head).await,
        Route::Camera(Which::Id(id), part) => match ctx.registry.get(&id) {
            Some(cam) => camera(&cam, part, q, at, req, head).await,
            None if at.scope != Scope::Main => api::error(
                StatusCode::NOT_FOUND,
                &format!(
                    "camera {id:?} was removed from the configuration; restart farmcam to free this port"
                ),
            ),
            None => api::error(
                StatusCode::NOT_FOUND,
                &format!("no camera {id:?}; GET /api/cameras lists them"),
            ),
        },
        Route::Relay { inner, .. } if matches!(*inner, Route::WebRtc(..)) => api::error(
            StatusCode::NOT_IMPLEMENTED,
            "WebRTC signalling is not relayed (the video goes to the other gateway's UDP port directly): open that gateway's own page",
        ),
        Route::WebRtc(..) => api::error(StatusCode::NOT_FOUND, "signalling is answered before dispatch"),
        Route::Relay {
            gateway,
            inner,
            target,
        } => match access.gateways.iter().find(|g| g.name == gateway) {
            None => api::error(
                StatusCode::NOT_FOUND,
                &format!("no gateway {gateway:?}; GET /api/gateways lists them"),
            ),
            Some(gw) => {
                let to_gateway = access
                    .relaying
                    .get(&gw.name)
                    .and_then(|s| s.clone().try_acquire_owned().ok());
                match (ctx.relayed.take(at.peer.ip()), to_gateway) {
                    (None, _) => api::error_retry(
                        StatusCode::SERVICE_UNAVAILABLE,
                        &format!(
                            "too many relayed requests from {} (at most {RELAYED_PER_CLIENT} at once), retry later",
                            at.peer.ip()
                        ),
                    ),
                    (_, None) => api::error_retry(
                        StatusCode::SERVICE_UNAVAILABLE,
                        &format!(
                            "too many relayed requests to gateway {} (at most {RELAYED_PER_GATEWAY} at once), retry later",
                            gw.name
                        ),
                    ),
                    (Some(slot), Some(permit)) => {
                        relay::forward(gw, &inner, &target, head, req, ctx, (slot, permit)).await
                    }
                }
            }
        },
        Route::NestedRelay => api::error(
            StatusCode::NOT_FOUND,
            "a gateway's own gateways are not relayed again; list them in this gateway's [[wall.gateway]]",
        ),
        Route::NotFound(path) => api::error(StatusCode::NOT_FOUND, &format!("no such path {path}")),
        Route::BadPath => api::error(
            StatusCode::BAD_REQUEST,
            "a path segment is \".\" or \"..\", or holds an encoded '/' or control character",
        ),
    }
}

/// The main port's `/?action=…`, `/stream`, `/snapshot`: `[http] default_camera`, or the only
/// camera; with several and no default, a 404 naming them.
async fn default_camera(
    ctx: &Ctx,
    part: CameraPart,
    q: &Query,
    at: &Arrival,
    req: &Request<Incoming>,
    head: bool,
) -> Response<Body> {
    let cameras = ctx.registry.cameras();
    match default_of(ctx) {
        Some(cam) => camera(&cam, part, q, at, req, head).await,
        None => {
            let ids: Vec<&str> = cameras.iter().map(|c| c.id()).collect();
            api::json(
                StatusCode::NOT_FOUND,
                &serde_json::json!({
                    "error": format!(
                        "{} cameras and no [http] default_camera: use /cameras/ID/stream or /cameras/ID/snapshot, or set default_camera",
                        ids.len()
                    ),
                    "cameras": ids,
                    "urls": ids.iter().map(|id| serde_json::json!({
                        "stream": format!("/cameras/{id}/stream"),
                        "snapshot": format!("/cameras/{id}/snapshot"),
                    })).collect::<Vec<_>>(),
                }),
            )
        }
    }
}

/// A camera's stream, snapshot or (on its dedicated port) page.
async fn camera(
    cam: &Arc<Camera>,
    part: CameraPart,
    q: &Query,
    at: &Arrival,
    req: &Request<Incoming>,
    head: bool,
) -> Response<Body> {
    match part {
        CameraPart::Stream | CameraPart::Snapshot if head => mjpeg::head(cam, part == CameraPart::Stream),
        CameraPart::Stream => mjpeg::stream(cam, q, at.peer),
        CameraPart::Snapshot => {
            let browser = mjpeg::client_cookie(req.headers());
            mjpeg::snapshot(cam, q, at.peer, browser).await
        }
        CameraPart::Page => api::camera_page(cam, q),
        CameraPart::Unknown => api::error(
            StatusCode::NOT_FOUND,
            &format!(
                "camera {:?} serves stream and snapshot (or ?action=stream / ?action=snapshot)",
                cam.id()
            ),
        ),
    }
}
