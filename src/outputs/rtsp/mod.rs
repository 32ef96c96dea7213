//! RTSP out: every H.264/H.265 camera re-served as `rtsp://box:8554/<camera>` from its one
//! connection, for Home Assistant, Frigate, NVRs and VLC. The camera's access units go out as
//! they came (no decoder, no second connection), packetized per RFC 6184 / 7798, over TCP
//! (interleaved in the RTSP connection) or UDP (one server port pair for every session).
//!
//! [`conn`] runs one client connection (reading, writing, timers; requests parsed by
//! `rtsp-types`), [`methods`] answers each of its requests; [`play`] sends one
//! session's media; this file owns the listener, the session table (limits, status, timeouts) and
//! the UDP sockets. Who may watch is asked through [`Gate`] (the HTTP side's `[http.auth]`).

mod conn;
mod methods;
mod play;
mod rtp;
mod sdp;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::net::{TcpListener, UdpSocket};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::live::{Seat, Seats};
use crate::registry::Registry;
use crate::util::log_limit::{held_back, LogLimit};

pub use crate::config::RtspConfig;

/// What the access layer says about a client's credentials.
pub enum Verdict {
    Allowed,
    /// Wrong or missing credentials: the challenges to send (`WWW-Authenticate` values).
    Unauthorized {
        challenges: Vec<String>,
    },
    /// Too many failed logins from this address: wait this long.
    TooMany(Duration),
}

/// Who may watch (the `streams` area of `[http.auth]`), asked once per DESCRIBE.
#[async_trait::async_trait]
pub trait Gate: Send + Sync {
    /// `authorization`: the header's value; `token`: the URL's `?token=`; `method` and `uri`:
    /// the request's (Digest hashes them; its `uri` must name the same stream).
    async fn check(
        &self,
        authorization: Option<&str>,
        token: Option<&str>,
        method: &str,
        uri: &str,
        peer: SocketAddr,
        listener: SocketAddr,
    ) -> Verdict;
}

/// A session as `/api/cameras` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct SessionStatus {
    pub id: String,
    pub camera: String,
    pub peer: String,
    /// `"tcp"` (interleaved) or `"udp"`.
    pub transport: &'static str,
    /// Unix seconds.
    pub started: f64,
    pub playing: bool,
    pub bytes_sent: u64,
    /// Times this client fell behind and skipped to the next keyframe.
    pub skips: u64,
}

struct Entry {
    status: SessionStatus,
    /// A UDP session's client RTCP address (its reports keep it alive).
    rtcp_peer: Option<SocketAddr>,
    last_seen: Instant,
    counters: Arc<play::Counters>,
}

/// The UDP pair every UDP session's media uses.
struct Udp {
    rtp: Arc<UdpSocket>,
    rtcp: Arc<UdpSocket>,
}

/// What [`bind`] made: the sockets, bound before systemd hears farmcam is ready.
pub struct Bound {
    tcp: TcpListener,
    udp: Option<Udp>,
    /// Why UDP is not offered, if it was wanted.
    udp_error: Option<String>,
}

/// Bind the TCP listener and the UDP pair; the error names the address and the fix. A UDP pair
/// that cannot be bound leaves RTSP on TCP only (said in the log).
pub async fn bind(config: &RtspConfig) -> Result<Bound, String> {
    let tcp = TcpListener::bind(config.listen).await.map_err(|e| {
        format!(
            "cannot listen on TCP {} ([rtsp] listen): {e}; choose another port, or another program uses it",
            config.listen
        )
    })?;
    let (udp, udp_error) = match config.udp_port {
        None => (None, None),
        Some(port) => match bind_pair(config.listen.ip(), port).await {
            Ok(u) => (Some(u), None),
            Err(e) => (None, Some(e)),
        },
    };
    Ok(Bound { tcp, udp, udp_error })
}

async fn bind_pair(ip: IpAddr, port: u16) -> Result<Udp, String> {
    let fail = |p: u16, e: std::io::Error| {
        format!("cannot bind UDP {} for RTSP media ([rtsp] udp_port): {e}; choose another even port, or set udp = false for TCP only", SocketAddr::new(ip, p))
    };
    for _ in 0..if port == 0 { 20 } else { 1 } {
        let rtp = UdpSocket::bind((ip, port)).await.map_err(|e| fail(port, e))?;
        let p = rtp.local_addr().map_err(|e| e.to_string())?.port();
        if p % 2 == 1 || p == u16::MAX {
            continue;
        }
        match UdpSocket::bind((ip, p + 1)).await {
            Ok(rtcp) => {
                return Ok(Udp {
                    rtp: Arc::new(rtp),
                    rtcp: Arc::new(rtcp),
                })
            }
            Err(e) if port != 0 => return Err(fail(p + 1, e)),
            Err(_) => continue,
        }
    }
    Err(format!(
        "found no free UDP port pair on {ip} for RTSP media; set [rtsp] udp_port"
    ))
}

/// The RTSP service: its sessions, limits and sockets.
pub struct Rtsp {
    config: RtspConfig,
    local: SocketAddr,
    registry: Arc<Registry>,
    sessions: Mutex<HashMap<String, Entry>>,
    /// Sessions (and cameras described for one) in all and per client address; a seat is taken
    /// before anything is awaited.
    seats: Seats,
    /// Open connections in all and per client address: a few beyond the sessions. Beyond them a
    /// connection is answered 503 and closed at accept, holding nothing.
    connection_seats: Seats,
    udp: Option<Udp>,
    said: Mutex<LogLimit>,
    /// Until [`Rtsp::serve`] takes it.
    tcp: Mutex<Option<TcpListener>>,
}

impl Rtsp {
    pub fn new(bound: Bound, config: &RtspConfig, registry: Arc<Registry>) -> Arc<Rtsp> {
        let local = bound.tcp.local_addr().unwrap_or(config.listen);
        match (&bound.udp, &bound.udp_error) {
            (Some(u), _) => info!(
                "rtsp: listening on rtsp://{local}/<camera> (TCP, and UDP from port {})",
                u.rtp.local_addr().map_or(0, |a| a.port())
            ),
            (None, Some(e)) => warn!("rtsp: listening on rtsp://{local}/<camera>, TCP only: {e}"),
            (None, None) => info!("rtsp: listening on rtsp://{local}/<camera> (TCP only: udp = false)"),
        }
        Arc::new(Rtsp {
            config: config.clone(),
            local,
            registry,
            sessions: Mutex::default(),
            seats: Seats::new(
                config.max_sessions,
                config.max_sessions_per_client,
                "RTSP sessions",
                "[rtsp]",
            ),
            connection_seats: Seats::new(
                max_connections(config),
                config.max_sessions_per_client + 4,
                "RTSP connections",
                "[rtsp]",
            ),
            udp: bound.udp,
            said: Mutex::new(LogLimit::with_cap(20)),
            tcp: Mutex::new(Some(bound.tcp)),
        })
    }

    /// `[rtsp] session_timeout`.
    fn timeout(&self) -> Duration {
        self.config.session_timeout
    }

    /// The port clients connect to.
    pub fn port(&self) -> u16 {
        self.local.port()
    }

    /// Sessions now.
    pub fn sessions(&self) -> Vec<SessionStatus> {
        self.sessions
            .lock()
            .unwrap()
            .values()
            .map(|e| {
                let mut s = e.status.clone();
                s.bytes_sent = e.counters.bytes.load(std::sync::atomic::Ordering::Relaxed);
                s.skips = e.counters.skips.load(std::sync::atomic::Ordering::Relaxed);
                s
            })
            .collect()
    }

    /// Accept connections until shutdown; each is answered by [`conn::serve`].
    pub fn serve(self: &Arc<Self>, gate: Weak<dyn Gate>, shutdown: CancellationToken, tracker: &TaskTracker) {
        let Some(tcp) = self.tcp.lock().unwrap().take() else {
            return;
        };
        let rtsp = self.clone();
        let conns = tracker.clone();
        let stop = shutdown.clone();
        tracker.spawn(async move {
            loop {
                let (stream, peer) = tokio::select! {
                    _ = stop.cancelled() => return,
                    r = tcp.accept() => match r {
                        Ok(c) => c,
                        Err(e) => {
                            // Out of file descriptors, say: wait rather than spin.
                            rtsp.say(&format!("rtsp: accept: {e}"));
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    },
                };
                let seat = match rtsp.connection_seats.take(peer.ip()) {
                    Ok(seat) => seat,
                    Err(r) => {
                        // Answered at once and closed: a refused connection holds nothing.
                        rtsp.say(&format!(
                            "rtsp: connection from {} refused: {}",
                            peer.ip(),
                            r.message()
                        ));
                        let _ = stream.try_write(conn::refusal_bytes(&r).as_bytes());
                        drop(stream);
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                limit_send_buffer(&stream);
                conns.spawn(conn::serve(
                    stream,
                    peer,
                    rtsp.clone(),
                    gate.clone(),
                    seat,
                    stop.clone(),
                ));
            }
        });
        if let Some(udp) = &self.udp {
            tracker.spawn(reports(self.clone(), udp.rtcp.clone(), shutdown.clone()));
            tracker.spawn(drain(udp.rtp.clone(), shutdown));
        }
    }

    /// A seat for a session (or a described camera) of a client at `ip`, or the refusal.
    fn seat(&self, ip: IpAddr) -> Result<Seat, crate::live::Refusal> {
        self.seats.take(ip)
    }

    fn add_session(
        &self,
        status: SessionStatus,
        rtcp_peer: Option<SocketAddr>,
        counters: Arc<play::Counters>,
    ) {
        self.sessions.lock().unwrap().insert(
            status.id.clone(),
            Entry {
                status,
                rtcp_peer,
                last_seen: Instant::now(),
                counters,
            },
        );
    }

    fn set_playing(&self, id: &str, playing: bool) {
        if let Some(e) = self.sessions.lock().unwrap().get_mut(id) {
            e.status.playing = playing;
            e.last_seen = Instant::now();
        }
    }

    /// A request or report for a session: it lives on.
    fn touch(&self, id: &str) {
        if let Some(e) = self.sessions.lock().unwrap().get_mut(id) {
            e.last_seen = Instant::now();
        }
    }

    /// Whether a session heard nothing for `session_timeout`: a UDP session (no request, no
    /// RTCP report), or any session that is not playing (set up and never played, or paused),
    /// over TCP too. A playing TCP session lives as long as its connection.
    fn expired(&self, id: &str) -> bool {
        self.sessions.lock().unwrap().get(id).is_none_or(|e| {
            (e.rtcp_peer.is_some() || !e.status.playing)
                && e.last_seen.elapsed() > self.config.session_timeout
        })
    }

    fn remove_session(&self, id: &str) {
        self.sessions.lock().unwrap().remove(id);
    }

    /// Something worth a warning, at most once a minute per message.
    fn say(&self, msg: &str) {
        if let Some(n) = self.said.lock().unwrap().check(msg) {
            warn!("{msg}{}", held_back(n));
        }
    }
}

/// Connections open at once in all: the sessions' and a few more, far below the open-file limit
/// (a connection is one descriptor).
pub fn max_connections(config: &RtspConfig) -> usize {
    config.max_sessions * 2 + 16
}

/// Socket send buffer of an RTSP connection. Left to autotuning, Linux lets it grow to 4 MiB, many
/// seconds of a camera's video: a client that stopped reading would be found behind only that
/// late, and then shown a picture that old. This holds about a second of a 2 Mbit/s camera
/// (the kernel doubles it), and still 40 Mbit/s to a client 100 ms away.
const SEND_BUFFER: libc::c_int = 128 << 10;

fn limit_send_buffer(stream: &tokio::net::TcpStream) {
    use std::os::fd::AsRawFd;
    // SAFETY: setsockopt on the stream's own open socket with a c_int option value.
    unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_SNDBUF,
            (&SEND_BUFFER as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

/// RTCP from UDP clients: any packet from a session's RTCP address keeps it alive.
async fn reports(rtsp: Arc<Rtsp>, socket: Arc<UdpSocket>, shutdown: CancellationToken) {
    let mut buf = vec![0u8; 2048];
    loop {
        let from = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = socket.recv_from(&mut buf) => match r {
                Ok((_, from)) => from,
                // ICMP errors from a vanished client surface here on Linux: not fatal.
                Err(e) => {
                    debug!("rtsp: RTCP receive: {e}");
                    continue;
                }
            },
        };
        for e in rtsp.sessions.lock().unwrap().values_mut() {
            if e.rtcp_peer == Some(from) {
                e.last_seen = Instant::now();
            }
        }
    }
}

/// What clients send to the RTP port (NAT punching, say) is read and dropped.
async fn drain(socket: Arc<UdpSocket>, shutdown: CancellationToken) {
    let mut buf = vec![0u8; 2048];
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = socket.recv_from(&mut buf) => {}
        }
    }
}
