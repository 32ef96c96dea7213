//! Live H.264/H.265 to browsers over WebRTC, without transcoding: each session sends the access
//! units the camera's one connection already yields (no decoder, no second connection). One UDP
//! socket serves every session; one task owns every session's `str0m::Rtc` (sans-IO), feeding it
//! packets, timeouts and units, and sending what it says to send.
//!
//! Signalling (what the HTTP side calls) comes in two forms: the server offers
//! ([`WebRtc::offer`] then [`WebRtc::answer`], camera-streamer's form) or the browser offers
//! ([`WebRtc::accept`], WHEP). Either way the answer or offer carries our host candidates, so no
//! trickling is needed.

mod session;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use str0m::change::{SdpAnswer, SdpOffer};
use str0m::net::{Protocol, Receive};
use str0m::Input;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info};

use crate::registry::Camera;
use session::{Session, UnitMsg};

pub use crate::config::WebrtcConfig;

/// How long the camera may take to show its codec (its first keyframe) for a new session.
const CODEC_WAIT: Duration = Duration::from_secs(15);
/// A session that is not connected this long after signalling is dropped.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Units queued from all cameras to the session task.
const UNIT_QUEUE: usize = 1024;

/// Why signalling failed; the HTTP side turns it into a status.
#[derive(Debug, thiserror::Error)]
pub enum SignalError {
    /// The request itself is wrong (4xx).
    #[error("{0}")]
    Bad(String),
    /// No such session (404).
    #[error("no WebRTC session {0:?} (it ended, or never existed)")]
    NoSession(String),
    /// A limit or the camera (503).
    #[error("{0}")]
    Unavailable(String),
}

/// A session as `/api/cameras` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct SessionStatus {
    pub id: String,
    pub camera: String,
    pub peer: String,
    /// Unix seconds.
    pub started: f64,
    pub connected: bool,
    pub bytes_sent: u64,
}

/// Counters shared with the session task.
#[derive(Default)]
struct Shared {
    sessions: Mutex<HashMap<String, SessionStatus>>,
}

enum Command {
    Add(Box<Session>),
    Answer {
        id: String,
        answer: SdpAnswer,
        reply: oneshot::Sender<Result<(), SignalError>>,
    },
    Close(String),
}

/// The WebRTC service: one UDP socket, every session.
pub struct WebRtc {
    config: WebrtcConfig,
    candidates: Vec<SocketAddr>,
    commands: mpsc::Sender<Command>,
    units: mpsc::Sender<UnitMsg>,
    shared: Arc<Shared>,
    next: AtomicU64,
}

impl WebRtc {
    /// Bind the UDP socket and start the session task; the error names the address and the fix.
    pub async fn start(
        config: &WebrtcConfig,
        shutdown: CancellationToken,
        tracker: &TaskTracker,
    ) -> Result<Arc<WebRtc>, String> {
        let socket = UdpSocket::bind(config.listen).await.map_err(|e| {
            format!(
                "cannot listen on UDP {} ([webrtc] listen): {e}; choose another port, or another program uses it",
                config.listen
            )
        })?;
        let local = socket.local_addr().map_err(|e| e.to_string())?;
        let candidates = host_candidates(local);
        if candidates.is_empty() {
            return Err(format!(
                "no network address to offer WebRTC viewers on UDP {local}"
            ));
        }
        let (commands, commands_rx) = mpsc::channel(64);
        let (units, units_rx) = mpsc::channel(UNIT_QUEUE);
        let shared = Arc::new(Shared::default());
        tracker.spawn(run(socket, commands_rx, units_rx, shared.clone(), shutdown));
        info!(
            "webrtc: UDP {local}, offering {}",
            candidates
                .iter()
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        Ok(Arc::new(WebRtc {
            config: config.clone(),
            candidates,
            commands,
            units,
            shared,
            next: AtomicU64::new(1),
        }))
    }

    /// The ICE servers browsers are told about (`[webrtc] ice_servers`).
    pub fn ice_servers(&self) -> &[String] {
        &self.config.ice_servers
    }

    /// Sessions now.
    pub fn sessions(&self) -> Vec<SessionStatus> {
        self.shared.sessions.lock().unwrap().values().cloned().collect()
    }

    /// Whether `peer` may start another session (the limits answer 503).
    fn admit(&self, peer: IpAddr) -> Result<(), SignalError> {
        let sessions = self.shared.sessions.lock().unwrap();
        if sessions.len() >= self.config.max_sessions {
            return Err(SignalError::Unavailable(format!(
                "{} WebRTC sessions already ([webrtc] max_sessions); retry later",
                sessions.len()
            )));
        }
        let mine = sessions
            .values()
            .filter(|s| s.peer.starts_with(&format!("{peer}:")))
            .count();
        if mine >= self.config.max_sessions_per_client {
            return Err(SignalError::Unavailable(format!(
                "{mine} WebRTC sessions from {peer} already ([webrtc] max_sessions_per_client); close one"
            )));
        }
        Ok(())
    }

    fn new_id(&self) -> String {
        let n = self.next.fetch_add(1, Relaxed);
        format!("{:016x}{n:x}", fastrand::u64(..))
    }

    /// camera-streamer's form: the server offers. Returns the session id and the offer.
    pub async fn offer(&self, cam: &Arc<Camera>, peer: SocketAddr) -> Result<(String, String), SignalError> {
        self.admit(peer.ip())?;
        let (mut session, _) = self.prepare(cam, peer).await?;
        let offer = session.make_offer().map_err(SignalError::Bad)?;
        let id = session.id.clone();
        self.add(session).await?;
        Ok((id, offer))
    }

    /// The browser's answer to [`WebRtc::offer`].
    pub async fn answer(&self, id: &str, sdp: &str) -> Result<(), SignalError> {
        let answer = SdpAnswer::from_sdp_string(sdp)
            .map_err(|e| SignalError::Bad(format!("not an SDP answer ({})", sdp_problem(&e))))?;
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(Command::Answer {
                id: id.to_string(),
                answer,
                reply,
            })
            .await
            .map_err(|_| SignalError::Unavailable("farmcam is shutting down".into()))?;
        rx.await
            .unwrap_or_else(|_| Err(SignalError::Unavailable("farmcam is shutting down".into())))
    }

    /// WHEP: the browser offers; returns the session id and the answer.
    pub async fn accept(
        &self,
        cam: &Arc<Camera>,
        peer: SocketAddr,
        sdp: &str,
    ) -> Result<(String, String), SignalError> {
        let offer = SdpOffer::from_sdp_string(sdp)
            .map_err(|e| SignalError::Bad(format!("not an SDP offer ({})", sdp_problem(&e))))?;
        self.admit(peer.ip())?;
        let (mut session, codec) = self.prepare(cam, peer).await?;
        offer_fits(sdp, codec).map_err(SignalError::Bad)?;
        let answer = session.accept_offer(offer).map_err(SignalError::Bad)?;
        let id = session.id.clone();
        self.add(session).await?;
        Ok((id, answer))
    }

    /// End a session (WHEP's DELETE).
    pub async fn close(&self, id: &str) -> Result<(), SignalError> {
        if !self.shared.sessions.lock().unwrap().contains_key(id) {
            return Err(SignalError::NoSession(id.to_string()));
        }
        let _ = self.commands.send(Command::Close(id.to_string())).await;
        Ok(())
    }

    /// Whether a session exists (WHEP's PATCH answers 204 for one).
    pub fn has_session(&self, id: &str) -> bool {
        self.shared.sessions.lock().unwrap().contains_key(id)
    }

    /// A session for `cam`: it holds the camera open for coded video and waits (bounded) for the
    /// camera's codec.
    async fn prepare(
        &self,
        cam: &Arc<Camera>,
        peer: SocketAddr,
    ) -> Result<(Box<Session>, crate::h264::Codec), SignalError> {
        let Some(feed) = cam.units() else {
            return Err(SignalError::Bad(format!(
                "camera {:?} does not send H.264 or H.265 (WebRTC plays those without transcoding); use its MJPEG stream",
                cam.id()
            )));
        };
        let hold = cam.subscribe(crate::pump::ConsumerKind::WebRtc);
        // The camera's codec shows with its first keyframe on this connection (bounded).
        let mut codec = feed.watch_codec();
        let shown = tokio::time::timeout(CODEC_WAIT, codec.wait_for(Option::is_some)).await;
        let codec = match shown.ok().and_then(|r| r.ok().and_then(|c| *c)) {
            Some(c) => c,
            None => {
                return Err(SignalError::Unavailable(format!(
                    "camera {:?} sent no H.264/H.265 keyframe within {CODEC_WAIT:?} (offline, or not H.264/H.265: see /api/cameras)",
                    cam.id()
                )))
            }
        };
        let session = Session::new(
            self.new_id(),
            cam.clone(),
            hold,
            peer,
            &self.candidates,
            self.units.clone(),
        )
        .map_err(SignalError::Unavailable)?;
        Ok((Box::new(session), codec))
    }

    async fn add(&self, session: Box<Session>) -> Result<(), SignalError> {
        self.shared
            .sessions
            .lock()
            .unwrap()
            .insert(session.id.clone(), session.status());
        self.commands
            .send(Command::Add(session))
            .await
            .map_err(|_| SignalError::Unavailable("farmcam is shutting down".into()))
    }
}

/// The SDP parser's complaint on one line, without its memory addresses.
fn sdp_problem(e: &impl std::fmt::Display) -> String {
    e.to_string()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.contains("PointerOffset") && *l != "sdp line")
        .collect::<Vec<_>>()
        .join("; ")
}

/// Whether a browser's offer can take the camera's video as it is: it asks for video, and lists
/// the camera's codec.
fn offer_fits(sdp: &str, codec: crate::h264::Codec) -> Result<(), String> {
    if !sdp.lines().any(|l| l.starts_with("m=video ")) {
        return Err("the offer has no video (add a recvonly video transceiver)".into());
    }
    let (name, rtpmap) = match codec {
        crate::h264::Codec::H264 => ("H.264", "h264/90000"),
        crate::h264::Codec::H265 => ("H.265", "h265/90000"),
    };
    let lists = sdp
        .lines()
        .filter(|l| l.starts_with("a=rtpmap:"))
        .any(|l| l.to_ascii_lowercase().ends_with(rtpmap));
    if !lists {
        return Err(format!(
            "the offer lists no {name}, which this camera sends (farmcam does not transcode); play its MJPEG stream instead"
        ));
    }
    Ok(())
}

/// The addresses offered as host candidates: the socket's own, or for an unspecified one
/// (`0.0.0.0`) every address of the box's interfaces that are up.
fn host_candidates(local: SocketAddr) -> Vec<SocketAddr> {
    if !local.ip().is_unspecified() {
        return vec![local];
    }
    interface_addresses()
        .into_iter()
        .filter(|ip| ip.is_ipv4() == local.is_ipv4() && !ip.is_loopback())
        .map(|ip| SocketAddr::new(ip, local.port()))
        .collect()
}

/// The IP addresses of the interfaces that are up (getifaddrs).
fn interface_addresses() -> Vec<IpAddr> {
    let mut out = Vec::new();
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `list` with a linked list freed by freeifaddrs below; each node is
    // read only while the list lives, and sockaddr contents only as the family says.
    unsafe {
        if libc::getifaddrs(&mut list) != 0 {
            return out;
        }
        let mut at = list;
        while !at.is_null() {
            let ifa = &*at;
            at = ifa.ifa_next;
            if ifa.ifa_addr.is_null() || ifa.ifa_flags & libc::IFF_UP as u32 == 0 {
                continue;
            }
            match i32::from((*ifa.ifa_addr).sa_family) {
                libc::AF_INET => {
                    let a = &*(ifa.ifa_addr as *const libc::sockaddr_in);
                    out.push(IpAddr::from(u32::from_be(a.sin_addr.s_addr).to_be_bytes()));
                }
                libc::AF_INET6 => {
                    let a = &*(ifa.ifa_addr as *const libc::sockaddr_in6);
                    let ip = std::net::Ipv6Addr::from(a.sin6_addr.s6_addr);
                    // Link-local addresses need a scope a browser cannot use.
                    if ip.segments()[0] & 0xffc0 != 0xfe80 {
                        out.push(IpAddr::V6(ip));
                    }
                }
                _ => {}
            }
        }
        libc::freeifaddrs(list);
    }
    out
}

/// The session task: every session's `Rtc`, fed from the socket, the cameras and the clock.
async fn run(
    socket: UdpSocket,
    mut commands: mpsc::Receiver<Command>,
    mut units: mpsc::Receiver<UnitMsg>,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) {
    let local = socket.local_addr().expect("bound socket has an address");
    let mut sessions: HashMap<String, Box<Session>> = HashMap::new();
    let mut buf = vec![0u8; 2048];
    loop {
        // Every session drained: what they want sent is sent, and the earliest timeout known.
        let mut next = Instant::now() + Duration::from_secs(1);
        for s in sessions.values_mut() {
            next = next.min(guarded(s, |s| s.drain(&socket)).unwrap_or(next));
        }
        let now = Instant::now();
        sessions.retain(|id, s| {
            let keep = s.alive() && (s.connected() || now.duration_since(s.created()) < CONNECT_TIMEOUT);
            if !keep {
                info!(camera = %s.camera_id(), peer = %s.peer(), "webrtc: session {id} ended after {:.0?}, {} bytes", now.duration_since(s.created()), s.bytes_sent());
                shared.sessions.lock().unwrap().remove(id);
            }
            keep
        });
        for s in sessions.values() {
            if let Some(st) = shared.sessions.lock().unwrap().get_mut(&s.id) {
                st.connected = s.connected();
                st.bytes_sent = s.bytes_sent();
            }
        }
        let sleep = tokio::time::sleep_until(tokio::time::Instant::from_std(next));
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = sleep => {
                let now = Instant::now();
                for s in sessions.values_mut() {
                    guarded(s, |s| s.input(Input::Timeout(now)));
                }
            }
            c = commands.recv() => match c {
                None => break,
                Some(Command::Add(s)) => {
                    debug!(camera = %s.camera_id(), peer = %s.peer(), "webrtc: session {} signalled", s.id);
                    sessions.insert(s.id.clone(), s);
                }
                Some(Command::Answer { id, answer, reply }) => {
                    let r = match sessions.get_mut(&id) {
                        None => Err(SignalError::NoSession(id)),
                        Some(s) => guarded(s, |s| s.accept_answer(answer))
                            .unwrap_or_else(|| Err("the session failed".into()))
                            .map_err(SignalError::Bad),
                    };
                    let _ = reply.send(r);
                }
                Some(Command::Close(id)) => {
                    if let Some(mut s) = sessions.remove(&id) {
                        s.close();
                        shared.sessions.lock().unwrap().remove(&id);
                        info!(camera = %s.camera_id(), peer = %s.peer(), "webrtc: session {id} closed by the viewer");
                    }
                }
            },
            u = units.recv() => if let Some(msg) = u {
                if let Some(s) = sessions.get_mut(&msg.session) {
                    guarded(s, |s| s.unit(msg));
                }
            },
            r = socket.recv_from(&mut buf) => match r {
                Ok((n, source)) => {
                    let Ok(contents) = buf[..n].try_into() else { continue };
                    let input = Input::Receive(Instant::now(), Receive { proto: Protocol::Udp, source, destination: local, contents });
                    // The session this packet is for (ICE credentials, then the peer's address).
                    if let Some(s) = sessions.values_mut().find(|s| s.accepts(&input)) {
                        guarded(s, |s| s.input(input));
                    }
                }
                Err(e) => {
                    // ICMP errors from a vanished peer surface here on Linux: not fatal.
                    debug!("webrtc: receive: {e}");
                }
            },
        }
    }
    for (_, mut s) in sessions.drain() {
        s.close();
    }
    shared.sessions.lock().unwrap().clear();
}

/// Run `f` on one session; a panic in it (a bug, or input the WebRTC library cannot take) ends
/// that session only, never the task serving the others.
fn guarded<T>(s: &mut Session, f: impl FnOnce(&mut Session) -> T) -> Option<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&mut *s))) {
        Ok(v) => Some(v),
        Err(_) => {
            tracing::error!(camera = %s.camera_id(), peer = %s.peer(), "webrtc: session {} failed (a bug); it is closed", s.id);
            s.kill();
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_garbage_offer_is_refused_on_one_line() {
        let e = SdpOffer::from_sdp_string("v=0").unwrap_err();
        let said = sdp_problem(&e);
        assert!(
            !said.contains('\n') && !said.contains("0x") && !said.is_empty(),
            "{said}"
        );
    }

    #[test]
    fn an_offer_must_ask_for_video_in_the_cameras_codec() {
        use crate::h264::Codec;
        let video = |codecs: &str| format!("v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n{codecs}");
        let h264 = video("a=rtpmap:96 H264/90000\r\na=fmtp:96 profile-level-id=42e01f\r\n");
        assert!(offer_fits(&h264, Codec::H264).is_ok());
        let e = offer_fits(&h264, Codec::H265).unwrap_err();
        assert!(e.contains("no H.265"), "{e}");
        let vp8 = video("a=rtpmap:96 VP8/90000\r\n");
        assert!(offer_fits(&vp8, Codec::H264).unwrap_err().contains("MJPEG"));
        let audio = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\n";
        assert!(offer_fits(audio, Codec::H264).unwrap_err().contains("no video"));
    }

    #[test]
    fn a_specific_address_is_its_own_candidate_and_any_address_lists_the_interfaces() {
        let l: SocketAddr = "127.0.0.1:8555".parse().unwrap();
        assert_eq!(host_candidates(l), vec![l]);
        let any: SocketAddr = "0.0.0.0:8555".parse().unwrap();
        for c in host_candidates(any) {
            assert!(c.is_ipv4() && !c.ip().is_loopback() && c.port() == 8555, "{c}");
        }
        assert!(
            interface_addresses().iter().any(|ip| ip.is_loopback()),
            "lo is up"
        );
    }
}
