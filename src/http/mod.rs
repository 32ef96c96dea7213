//! The HTTP server: listeners, the connection cap, per-connection timeouts, routing.
//!
//! Connections are served with hyper's HTTP/1 builder directly (not `axum::serve`) so that every
//! wait is bounded: request headers must arrive within `header_read_timeout`, a viewer whose
//! socket accepts nothing for `write_timeout` is dropped, at most `max_connections` are open, and
//! shutdown ends every stream.

mod api;
mod auth;
pub mod client;
mod events;
mod metrics;
mod mjpeg;
mod relay;
mod wall;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{sleep, timeout};
use tokio_io_timeout::TimeoutStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

use crate::config::{Area, Config};
use crate::log_limit::{held_back, LogLimit};
use crate::registry::{Camera, Registry};

pub type Body = BoxBody<Bytes, Infallible>;

/// Read and write buffer limit per connection (also bounds what one viewer can pin).
const MAX_BUF: usize = 64 * 1024;
/// Largest request head accepted (answered with 431 beyond).
const MAX_HEAD: usize = 16 * 1024;
/// How long a closing connection may take to finish its response after shutdown began.
const DRAIN: Duration = Duration::from_millis(1500);
/// Concurrent polite refusals (each reads what the client sent for up to a second).
const REFUSING: usize = 64;

/// What a listener serves.
#[derive(Clone)]
pub enum Scope {
    /// The main listener: every camera, the API, the wall.
    Main,
    /// A camera's dedicated port, by camera id (looked up per request, so a reloaded camera is
    /// served by its new pump).
    Camera(String),
}

/// A bound listener, ready to serve.
pub struct Listener {
    pub listener: TcpListener,
    pub scope: Scope,
    /// `[http.auth] open_listeners` names it: nothing is asked here.
    pub open: bool,
}

impl Listener {
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("bound socket has an address")
    }

    pub fn describe(&self) -> String {
        match &self.scope {
            Scope::Main => "all cameras, API and page".into(),
            Scope::Camera(id) => format!("camera {id}"),
        }
    }
}

/// Bind the main listeners and each camera's dedicated one. The error names the address and fix.
pub async fn bind(config: &Config, registry: &Registry) -> anyhow::Result<Vec<Listener>> {
    let mut out = Vec::new();
    let mut targets: Vec<(SocketAddr, Scope, String)> = config
        .http
        .listen
        .iter()
        .map(|a| (*a, Scope::Main, "http.listen".to_string()))
        .collect();
    for cam in registry.cameras() {
        if let Some(a) = cam.config().listen {
            targets.push((
                a,
                Scope::Camera(cam.id().to_string()),
                format!("listen of camera {}", cam.id()),
            ));
        }
    }
    for (addr, scope, key) in targets {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {addr} ({key}): {e}; is another farmcam running? choose another address in the config"))?;
        let open = config
            .http
            .auth
            .as_ref()
            .is_some_and(|a| a.open_listeners.contains(&addr));
        out.push(Listener {
            listener,
            scope,
            open,
        });
    }
    Ok(out)
}

/// Shared by every connection.
pub struct Ctx {
    pub registry: Arc<Registry>,
    pub mqtt: Option<Arc<crate::mqtt::Mqtt>>,
    pub write_timeout: Duration,
    pub header_read_timeout: Duration,
    /// How often a wall tile refreshes its snapshot.
    pub wall_refresh: Duration,
    /// `[http] default_camera`.
    pub default_camera: Option<String>,
    /// `[http] public_url`.
    pub public_url: Option<String>,
    /// This gateway's name (`[mqtt] node_id`, else the host name).
    pub node_id: String,
    /// `[[wall.gateway]]`: other gateways relayed under `/gateways/NAME/`.
    pub gateways: Vec<crate::config::WallGateway>,
    /// Camera id → the port its dedicated listener is bound to.
    pub dedicated_ports: std::collections::HashMap<String, u16>,
    pub shutdown: CancellationToken,
    /// Hosts, credentials and origins.
    guard: auth::Guard,
    limit: Arc<Semaphore>,
    rejecting: Arc<Semaphore>,
    /// Open connections per client address, and how many one may hold.
    per_client: Arc<Mutex<HashMap<IpAddr, usize>>>,
    max_per_client: usize,
    tracker: TaskTracker,
}

/// The running server: accept loops and connections, all owned by one tracker.
pub struct Server {
    ctx: Arc<Ctx>,
}

impl Server {
    pub fn start(
        listeners: Vec<Listener>,
        config: &Config,
        registry: Arc<Registry>,
        mqtt: Option<Arc<crate::mqtt::Mqtt>>,
        shutdown: CancellationToken,
    ) -> Server {
        ensure_fd_limit(config.http.max_connections);
        let ctx = Arc::new(Ctx {
            registry,
            mqtt,
            write_timeout: config.http.write_timeout,
            header_read_timeout: config.http.header_read_timeout,
            wall_refresh: config.http.wall_refresh,
            default_camera: config.http.default_camera.clone(),
            public_url: config.http.public_url.clone(),
            node_id: config.node_id.clone(),
            gateways: config.wall_gateways.clone(),
            dedicated_ports: listeners
                .iter()
                .filter_map(|l| match &l.scope {
                    Scope::Camera(id) => Some((id.clone(), l.local_addr().port())),
                    Scope::Main => None,
                })
                .collect(),
            shutdown,
            guard: auth::Guard::new(&config.http),
            limit: Arc::new(Semaphore::new(config.http.max_connections)),
            rejecting: Arc::new(Semaphore::new(REFUSING)),
            per_client: Arc::default(),
            max_per_client: config.http.max_connections_per_client,
            tracker: TaskTracker::new(),
        });
        for l in listeners {
            ctx.tracker.spawn(accept_loop(l, ctx.clone()));
        }
        Server { ctx }
    }

    /// Wait (bounded) for the accept loops and connections to finish after shutdown was signalled.
    pub async fn wait(&self, limit: Duration) -> bool {
        self.ctx.tracker.close();
        timeout(limit, self.ctx.tracker.wait()).await.is_ok()
    }
}

/// Open files needed besides the connections: listeners, cameras, ffmpeg pipes, MQTT, journald.
const FD_RESERVE: u64 = 128;

/// Raise the soft open-file limit (1024 by default, also under systemd) towards the hard one so
/// that `max_connections` viewers fit; warn once when even the hard limit is too low.
fn ensure_fd_limit(max_connections: usize) {
    // rlim_t is 32 bits on armhf.
    let want = libc::rlim_t::try_from(max_connections as u64 + FD_RESERVE).unwrap_or(libc::rlim_t::MAX);
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read/write the struct passed.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 || lim.rlim_cur >= want {
        return;
    }
    let raised = libc::rlimit {
        rlim_cur: want.min(lim.rlim_max),
        rlim_max: lim.rlim_max,
    };
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
        lim.rlim_cur = raised.rlim_cur;
    }
    if lim.rlim_cur < want {
        warn!(
            "http.max_connections = {max_connections} needs about {want} open files but the limit is {}: \
             lower max_connections or raise LimitNOFILE in the systemd unit",
            lim.rlim_cur
        );
    } else {
        debug!("open-file limit raised to {}", lim.rlim_cur);
    }
}

async fn accept_loop(l: Listener, ctx: Arc<Ctx>) {
    let Listener {
        listener,
        scope,
        open,
    } = l;
    let mut said = LogLimit::new();
    loop {
        let (sock, peer) = tokio::select! {
            _ = ctx.shutdown.cancelled() => return,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Typically EMFILE: back off instead of spinning, and say it once a minute.
                    let msg = e.to_string();
                    match said.check(&msg) {
                        Some(n) => warn!("accept failed: {msg}{} (raise LimitNOFILE, or lower max_connections)", held_back(n)),
                        None => debug!("accept failed: {msg}"),
                    }
                    sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = sock.set_nodelay(true);
        let Ok(permit) = ctx.limit.clone().try_acquire_owned() else {
            debug!(%peer, "connection limit reached: 503");
            refuse(sock, "too many connections, retry later", &ctx);
            continue;
        };
        let Some(slot) = ClientSlot::take(&ctx, peer.ip()) else {
            debug!(%peer, "connection limit per client reached: 503");
            refuse(
                sock,
                &format!(
                    "too many connections from {} (at most {}: [http] max_connections_per_client), retry later",
                    peer.ip(),
                    ctx.max_per_client
                ),
                &ctx,
            );
            continue;
        };
        ctx.tracker.spawn(serve_connection(
            sock,
            peer,
            (scope.clone(), open),
            ctx.clone(),
            (permit, slot),
        ));
    }
}

/// One of a client address's open connections; given back when the connection ends.
struct ClientSlot {
    counts: Arc<Mutex<HashMap<IpAddr, usize>>>,
    ip: IpAddr,
}

impl ClientSlot {
    fn take(ctx: &Ctx, ip: IpAddr) -> Option<ClientSlot> {
        let mut counts = ctx.per_client.lock().unwrap();
        let n = counts.entry(ip).or_insert(0);
        if *n >= ctx.max_per_client {
            return None;
        }
        *n += 1;
        Some(ClientSlot {
            counts: ctx.per_client.clone(),
            ip,
        })
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap();
        if let Some(n) = counts.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

/// Answer 503 (with `why`) and close, whatever the load: the answer is written at once (it fits
/// the socket's buffer); then the connection is closed politely (reading what the client sent,
/// so it sees the answer, not a reset) by a bounded number of tasks, or at once.
fn refuse(sock: TcpStream, why: &str, ctx: &Ctx) {
    let body = serde_json::json!({ "error": why }).to_string();
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: {}\r\nRetry-After: 5\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = sock.try_write(answer.as_bytes());
    match ctx.rejecting.clone().try_acquire_owned() {
        Ok(p) => {
            ctx.tracker.spawn(close_politely(sock, p));
        }
        Err(_) => {
            // Read what already arrived (closing with unread data would reset the connection
            // and lose the answer), then close.
            let mut buf = [0u8; 4096];
            while matches!(sock.try_read(&mut buf), Ok(n) if n > 0) {}
            if let Ok(s) = sock.into_std() {
                let _ = s.shutdown(std::net::Shutdown::Write);
            }
        }
    }
}

/// Close after a refusal: end our side, then read until the client closes (at most a second).
async fn close_politely(mut sock: TcpStream, _permit: OwnedSemaphorePermit) {
    let _ = timeout(Duration::from_secs(1), async {
        sock.shutdown().await?;
        let mut buf = [0u8; 1024];
        while sock.read(&mut buf).await? > 0 {}
        Ok::<_, std::io::Error>(())
    })
    .await;
}

async fn serve_connection(
    sock: TcpStream,
    peer: SocketAddr,
    (scope, open): (Scope, bool),
    ctx: Arc<Ctx>,
    _slots: (OwnedSemaphorePermit, ClientSlot),
) {
    let mut io = TimeoutStream::new(sock);
    io.set_write_timeout(Some(ctx.write_timeout));
    let io = TokioIo::new(Box::pin(io));
    let svc_ctx = ctx.clone();
    let svc = service_fn(move |req| {
        let (ctx, scope) = (svc_ctx.clone(), scope.clone());
        async move {
            // A bug in a handler answers 500 to that request; the connection task, the camera
            // and everyone else go on (the panic hook logs it, rate-limited).
            let origin = auth::origin(&req);
            let mut answer = futures_util::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(guarded(
                req, &scope, open, &ctx, peer,
            )))
            .await
            .unwrap_or_else(|_| {
                api::error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal error (a bug in farmcam; the log says more)",
                )
            });
            ctx.guard.cors(origin.as_ref(), &mut answer);
            Ok::<_, Infallible>(answer)
        }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(ctx.header_read_timeout)
        .max_buf_size(MAX_BUF)
        .max_header_size(MAX_HEAD)
        .max_headers(64)
        .serve_connection(io, svc);
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = ctx.shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            timeout(DRAIN, conn.as_mut()).await.unwrap_or(Ok(()))
        }
    };
    if let Err(e) = result {
        debug!(%peer, "connection ended: {e}");
    }
}

/// The query string as key/value pairs (no percent-decoding: farmcam's parameters are plain).
fn query(req: &Request<Incoming>) -> Vec<(&str, &str)> {
    req.uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
        .collect()
}

fn param<'a>(q: &[(&'a str, &'a str)], key: &str) -> Option<&'a str> {
    q.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
}

/// `route`, for a request naming an allowed host and with the credentials its area needs.
async fn guarded(
    req: Request<Incoming>,
    scope: &Scope,
    open: bool,
    ctx: &Ctx,
    peer: SocketAddr,
) -> Response<Body> {
    if let Some(refused) = ctx.guard.host(&req) {
        return refused;
    }
    // Read once, for the guard and the route.
    let q = query(&req);
    let path = req.uri().path();
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    if let Some(refused) = ctx.guard.allow(&req, &q, area(scope, &segments, &q), open).await {
        return refused;
    }
    route(&req, &q, &segments, scope, ctx, peer).await
}

/// What a request asks for, as `[http.auth] open` names it.
fn area(scope: &Scope, segments: &[&str], q: &[(&str, &str)]) -> Area {
    if let Scope::Camera(_) = scope {
        return Area::Streams;
    }
    match segments {
        [] if param(q, "action").is_some() => Area::Streams,
        [] => Area::Wall,
        ["stream" | "snapshot" | "cameras", ..] | ["gateways", _, "cameras", ..] => Area::Streams,
        ["metrics", ..] => Area::Metrics,
        _ => Area::Api,
    }
}

async fn route(
    req: &Request<Incoming>,
    q: &[(&str, &str)],
    segments: &[&str],
    scope: &Scope,
    ctx: &Ctx,
    peer: SocketAddr,
) -> Response<Body> {
    // HEAD answers wherever GET does, with the same status and headers and no body (hyper
    // sends none); it never starts a camera.
    let head = req.method() == Method::HEAD;
    if req.method() != Method::GET && !head {
        return api::method_not_allowed();
    }
    let path = req.uri().path();
    match scope {
        Scope::Main => match segments {
            // mjpg-streamer's URLs on the main port (where MainsailOS points /webcam/) serve the
            // default camera; a browser without ?action= gets the wall.
            [] if param(q, "action").is_some() => default_camera(ctx, &[], q, peer, head).await,
            [what @ ("stream" | "snapshot")] => default_camera(ctx, &[what], q, peer, head).await,
            [] => wall::page(ctx.wall_refresh),
            ["api", "cameras"] => api::cameras(ctx, req),
            ["api", "gateways"] => api::json(
                StatusCode::OK,
                &ctx.gateways
                    .iter()
                    .map(|g| serde_json::json!({ "name": g.name }))
                    .collect::<Vec<_>>(),
            ),
            ["gateways", name, rest @ ..] => match ctx.gateways.iter().find(|g| g.name == *name) {
                None => api::error(
                    StatusCode::NOT_FOUND,
                    &format!("no gateway {name:?}; GET /api/gateways lists them"),
                ),
                Some(gw) => {
                    // This gateway's own ?token= is not passed on (the other one gets its own).
                    let query: Vec<String> = q
                        .iter()
                        .filter(|(k, _)| *k != "token")
                        .map(|(k, v)| {
                            if v.is_empty() {
                                k.to_string()
                            } else {
                                format!("{k}={v}")
                            }
                        })
                        .collect();
                    let trailing = if path.ends_with('/') && !rest.is_empty() {
                        "/"
                    } else {
                        ""
                    };
                    let mut target = format!("/{}{trailing}", rest.join("/"));
                    if !query.is_empty() {
                        target = format!("{target}?{}", query.join("&"));
                    }
                    relay::forward(gw, &target, head).await
                }
            },
            ["metrics"] => metrics::metrics(ctx),
            ["api", "events"] => events::sse(ctx, req, q),
            ["cameras", id, rest @ ..] => match ctx.registry.get(id) {
                None => api::error(
                    StatusCode::NOT_FOUND,
                    &format!("no camera {id:?}; GET /api/cameras lists them"),
                ),
                Some(cam) => camera_route(&cam, rest, q, peer, head).await,
            },
            _ => api::error(StatusCode::NOT_FOUND, &format!("no such path {path}")),
        },
        Scope::Camera(id) => match ctx.registry.get(id) {
            None => api::error(
                StatusCode::NOT_FOUND,
                &format!(
                    "camera {id:?} was removed from the configuration; restart farmcam to free this port"
                ),
            ),
            Some(cam) => match segments {
                [] if param(q, "action").is_none() => api::camera_page(&cam),
                rest => camera_route(&cam, rest, q, peer, head).await,
            },
        },
    }
}

/// The main port's `/?action=…`, `/stream`, `/snapshot`: `[http] default_camera`, or the only
/// camera; with several and no default, a 404 naming them.
async fn default_camera(
    ctx: &Ctx,
    rest: &[&str],
    q: &[(&str, &str)],
    peer: SocketAddr,
    head: bool,
) -> Response<Body> {
    let cameras = ctx.registry.cameras();
    let chosen = match &ctx.default_camera {
        Some(id) => ctx.registry.get(id),
        None if cameras.len() == 1 => cameras.first().cloned(),
        None => None,
    };
    match chosen {
        Some(cam) => camera_route(&cam, rest, q, peer, head).await,
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

/// `stream`, `snapshot`, or `?action=stream|snapshot` on the camera's root.
async fn camera_route(
    cam: &Arc<Camera>,
    rest: &[&str],
    q: &[(&str, &str)],
    peer: SocketAddr,
    head: bool,
) -> Response<Body> {
    let what = match rest {
        [] => param(q, "action").unwrap_or(""),
        [w] => w,
        _ => "",
    };
    match what {
        "stream" | "snapshot" if head => mjpeg::head(what),
        "stream" => mjpeg::stream(cam, q, peer),
        "snapshot" => mjpeg::snapshot(cam, q).await,
        _ => api::error(
            StatusCode::NOT_FOUND,
            &format!(
                "camera {:?} serves stream and snapshot (or ?action=stream / ?action=snapshot)",
                cam.id()
            ),
        ),
    }
}
