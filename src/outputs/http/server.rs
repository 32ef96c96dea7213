//! The HTTP server: listeners, the connection caps (in all and per client address),
//! per-connection timeouts, polite refusals. What a request gets is decided in [`super::handle`].
//!
//! Connections are served with hyper's HTTP/1 builder directly (not `axum::serve`) so that every
//! wait is bounded: request headers must arrive within `header_read_timeout`, a viewer whose
//! socket accepts nothing for `write_timeout` is dropped, at most `max_connections` are open, and
//! shutdown ends every stream.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::StatusCode;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{sleep, timeout};
use tokio_io_timeout::TimeoutStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

use super::client_slots::{ClientCounts, ClientSlot};
use super::path::Scope;
use super::{api, Ctx};
use crate::config::Config;
use crate::registry::Registry;
use crate::util::log_limit::{held_back, LogLimit};

/// Where a request arrived: the listener (what it serves, its configured address) and the client.
#[derive(Clone)]
pub struct Arrival {
    pub scope: Scope,
    pub listener: SocketAddr,
    pub peer: SocketAddr,
}

/// Read and write buffer limit per connection (also bounds what one viewer can pin).
const MAX_BUF: usize = 64 * 1024;
/// Largest request head accepted (answered with 431 beyond).
const MAX_HEAD: usize = 16 * 1024;
/// How long a closing connection may take to finish its response after shutdown began.
const DRAIN: Duration = Duration::from_millis(1500);
/// Concurrent polite refusals (each reads what the client sent for up to a second).
const REFUSING: usize = 64;

/// A bound listener, ready to serve.
pub struct Listener {
    pub listener: TcpListener,
    pub scope: Scope,
    /// The address as configured (what `[http.auth] open_listeners` names).
    pub configured: SocketAddr,
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
        out.push(Listener {
            listener,
            scope,
            configured: addr,
        });
    }
    Ok(out)
}

/// The running server: accept loops and connections, all owned by one tracker.
pub struct Server {
    ctx: Arc<Ctx>,
    conns: Arc<Connections>,
}

/// What limits and owns the connections.
struct Connections {
    limit: Arc<Semaphore>,
    rejecting: Arc<Semaphore>,
    per_client: ClientCounts,
    write_timeout: Duration,
    header_read_timeout: Duration,
    tracker: TaskTracker,
}

impl Server {
    pub fn start(
        listeners: Vec<Listener>,
        config: &Config,
        registry: Arc<Registry>,
        services: super::Services,
        shutdown: CancellationToken,
    ) -> Server {
        let rtsp = services.rtsp.clone();
        // RTSP's connections are capped too (well below the limit): they need room as well.
        let rtsp_connections = config
            .rtsp
            .as_ref()
            .map_or(0, crate::outputs::rtsp::max_connections);
        ensure_fd_limit(config.http.max_connections + rtsp_connections);
        let dedicated_ports = listeners
            .iter()
            .filter_map(|l| match &l.scope {
                Scope::Camera(id) => Some((id.clone(), l.local_addr().port())),
                Scope::Main => None,
            })
            .collect();
        let ctx = Arc::new(Ctx::new(config, registry, services, shutdown, dedicated_ports));
        let conns = Arc::new(Connections {
            limit: Arc::new(Semaphore::new(config.http.max_connections)),
            rejecting: Arc::new(Semaphore::new(REFUSING)),
            per_client: ClientCounts::new(config.http.max_connections_per_client),
            write_timeout: config.http.write_timeout,
            header_read_timeout: config.http.header_read_timeout,
            tracker: TaskTracker::new(),
        });
        for l in listeners {
            conns.tracker.spawn(accept_loop(l, ctx.clone(), conns.clone()));
        }
        if let Some(r) = &rtsp {
            let ctx: Arc<Ctx> = ctx.clone();
            let gate: std::sync::Weak<dyn crate::outputs::rtsp::Gate> = Arc::downgrade(&ctx) as _;
            r.serve(gate, ctx.shutdown.clone(), &conns.tracker);
        }
        Server { ctx, conns }
    }

    /// A reload: access settings (`[http.auth]`, `allowed_hosts`, `allowed_origins`) and
    /// `[[wall.gateway]]` take effect for every request from now on (a revoked token stops
    /// working at once). Returns whether anything changed.
    pub fn reload(&self, config: &Config) -> bool {
        self.ctx.reload(config)
    }

    /// Wait (bounded) for the accept loops and connections to finish after shutdown was signalled.
    pub async fn wait(&self, limit: Duration) -> bool {
        self.conns.tracker.close();
        timeout(limit, self.conns.tracker.wait()).await.is_ok()
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
            "{max_connections} connections (http.max_connections, and RTSP's: 2 x rtsp.max_sessions + 16) need about {want} open files but the limit is {}: \
             lower max_connections or raise LimitNOFILE in the systemd unit",
            lim.rlim_cur
        );
    } else {
        debug!("open-file limit raised to {}", lim.rlim_cur);
    }
}

async fn accept_loop(l: Listener, ctx: Arc<Ctx>, conns: Arc<Connections>) {
    let Listener {
        listener,
        scope,
        configured,
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
        let Ok(permit) = conns.limit.clone().try_acquire_owned() else {
            debug!(%peer, "connection limit reached: 503");
            refuse(sock, "too many connections, retry later", &conns);
            continue;
        };
        let Some(slot) = conns.per_client.take(peer.ip()) else {
            debug!(%peer, "connection limit per client reached: 503");
            refuse(
                sock,
                &format!(
                    "too many connections from {} (at most {}: [http] max_connections_per_client), retry later",
                    peer.ip(),
                    conns.per_client.max()
                ),
                &conns,
            );
            continue;
        };
        let at = Arrival {
            scope: scope.clone(),
            listener: configured,
            peer,
        };
        conns.tracker.spawn(serve_connection(
            sock,
            at,
            ctx.clone(),
            conns.clone(),
            (permit, slot),
        ));
    }
}

/// Answer 503 (with `why`) and close, whatever the load: the answer is written at once (it fits
/// the socket's buffer); then the connection is closed politely (reading what the client sent,
/// so it sees the answer, not a reset) by a bounded number of tasks, or at once.
fn refuse(sock: TcpStream, why: &str, conns: &Connections) {
    let body = serde_json::json!({ "error": why }).to_string();
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: {}\r\nRetry-After: 5\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = sock.try_write(answer.as_bytes());
    match conns.rejecting.clone().try_acquire_owned() {
        Ok(p) => {
            conns.tracker.spawn(close_politely(sock, p));
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
    at: Arrival,
    ctx: Arc<Ctx>,
    conns: Arc<Connections>,
    _slots: (OwnedSemaphorePermit, ClientSlot),
) {
    let mut io = TimeoutStream::new(sock);
    io.set_write_timeout(Some(conns.write_timeout));
    let io = TokioIo::new(Box::pin(io));
    let peer = at.peer;
    let svc_ctx = ctx.clone();
    let svc = service_fn(move |req| {
        let (ctx, at) = (svc_ctx.clone(), at.clone());
        async move {
            // A bug in a handler answers 500 to that request; the connection task, the camera
            // and everyone else go on (the panic hook logs it, rate-limited).
            let answer = futures_util::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(super::handle(
                req, &at, &ctx,
            )))
            .await
            .unwrap_or_else(|_| {
                api::error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal error (a bug in farmcam; the log says more)",
                )
            });
            Ok::<_, Infallible>(answer)
        }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(conns.header_read_timeout)
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
