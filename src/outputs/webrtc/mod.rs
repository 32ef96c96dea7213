//! Live H.264/H.265 to browsers over WebRTC, without transcoding: each session sends the access
//! units the camera's one connection already yields (no decoder, no second connection). One UDP
//! socket serves every session; one task owns every session's `str0m::Rtc` (sans-IO), feeding it
//! packets, timeouts and units, and sending what it says to send.
//!
//! Signalling (what the HTTP side calls) comes in two forms: the server offers
//! ([`WebRtc::offer`] then [`WebRtc::answer`], camera-streamer's form) or the browser offers
//! ([`WebRtc::accept`], WHEP). Either way the answer or offer carries our host candidates, so no
//! trickling is needed.

mod batch;
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
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::{StreamExt, StreamMap};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info};

use crate::live::{self, Seats};
use crate::registry::Camera;
use crate::source::coded::units::Unit;
use session::Session;

pub use crate::config::WebrtcConfig;

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

/// A session as `/api/cameras` shows it. Its `id` is a number for telling sessions apart, not
/// the session's URL: that is a secret of the viewer that made it.
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
        camera: String,
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
    shared: Arc<Shared>,
    /// Sessions in all and per client address, taken before anything is awaited.
    seats: Seats,
    next: AtomicU64,
    rng: ring::rand::SystemRandom,
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
        // Registered for reading only: sends go straight to the socket (batch.rs), and a socket
        // registered for writing too is reported writable after every send (its buffer space
        // came back): an event per picture for nothing.
        let socket = socket
            .into_std()
            // SAFETY: the socket owns its descriptor, and the AsyncFd owns the socket.
            .and_then(|s| {
                unsafe { AsyncFd::register_with_interest(s, Interest::READABLE) }.map_err(|e| e.into())
            })
            .map_err(|e| format!("the WebRTC socket UDP {local}: {e}"))?;
        let candidates = host_candidates(local);
        if candidates.is_empty() {
            return Err(format!(
                "no network address to offer WebRTC viewers on UDP {local}"
            ));
        }
        let (commands, commands_rx) = mpsc::channel(64);
        let shared = Arc::new(Shared::default());
        tracker.spawn(run(
            socket,
            commands_rx,
            shared.clone(),
            config.connect_timeout,
            shutdown,
        ));
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
            shared,
            seats: Seats::new(
                config.max_sessions,
                config.max_sessions_per_client,
                "WebRTC sessions",
                "[webrtc]",
            ),
            next: AtomicU64::new(1),
            rng: ring::rand::SystemRandom::new(),
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

    /// A new session's secret (its URL's last segment: 128 random bits) and its public number.
    fn new_id(&self) -> Result<(String, String), SignalError> {
        let mut secret = [0u8; 16];
        ring::rand::SecureRandom::fill(&self.rng, &mut secret)
            .map_err(|_| SignalError::Unavailable("the system's random source failed".into()))?;
        let secret: String = secret.iter().map(|b| format!("{b:02x}")).collect();
        Ok((secret, self.next.fetch_add(1, Relaxed).to_string()))
    }

    /// Whether session `id` exists and watches camera `camera` (a session's URL opens only its
    /// own camera's session).
    fn owns(&self, camera: &str, id: &str) -> bool {
        self.shared
            .sessions
            .lock()
            .unwrap()
            .get(id)
            .is_some_and(|s| s.camera == camera)
    }

    /// camera-streamer's form: the server offers. Returns the session id and the offer.
    pub async fn offer(&self, cam: &Arc<Camera>, peer: SocketAddr) -> Result<(String, String), SignalError> {
        let (mut session, _) = self.prepare(cam, peer).await?;
        let offer = session.make_offer().map_err(SignalError::Bad)?;
        let id = session.id.clone();
        self.add(session).await?;
        Ok((id, offer))
    }

    /// The browser's answer to [`WebRtc::offer`] of a session of `cam`.
    pub async fn answer(&self, cam: &Camera, id: &str, sdp: &str) -> Result<(), SignalError> {
        let answer = SdpAnswer::from_sdp_string(sdp)
            .map_err(|e| SignalError::Bad(format!("not an SDP answer ({})", sdp_problem(&e))))?;
        if !self.owns(cam.id(), id) {
            return Err(SignalError::NoSession(short(id)));
        }
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(Command::Answer {
                camera: cam.id().to_string(),
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
        // Before the camera is opened: an offer that could fit no camera.
        offer_fits(sdp, crate::media::h264::Codec::H264)
            .or_else(|e| offer_fits(sdp, crate::media::h264::Codec::H265).map_err(|_| e))
            .map_err(SignalError::Bad)?;
        let (mut session, codec) = self.prepare(cam, peer).await?;
        offer_fits(sdp, codec).map_err(SignalError::Bad)?;
        let answer = session.accept_offer(offer).map_err(SignalError::Bad)?;
        let answer = rejected_lines_keep_a_format(sdp, &answer);
        let id = session.id.clone();
        self.add(session).await?;
        Ok((id, answer))
    }

    /// End a session of `cam` (WHEP's DELETE).
    pub async fn close(&self, cam: &Camera, id: &str) -> Result<(), SignalError> {
        if !self.owns(cam.id(), id) {
            return Err(SignalError::NoSession(short(id)));
        }
        let _ = self.commands.send(Command::Close(id.to_string())).await;
        Ok(())
    }

    /// Whether a session of `cam` exists (WHEP's PATCH answers 204 for one).
    pub fn has_session(&self, cam: &Camera, id: &str) -> bool {
        self.owns(cam.id(), id)
    }

    /// A session for `cam`: its seat (taken before anything is awaited), the camera held open
    /// for coded video, and its codec (a bounded wait).
    async fn prepare(
        &self,
        cam: &Arc<Camera>,
        peer: SocketAddr,
    ) -> Result<(Box<Session>, crate::media::h264::Codec), SignalError> {
        if cam.units().is_none() {
            return Err(SignalError::Bad(
                live::OpenError::NotCoded(cam.id().to_string()).to_string(),
            ));
        }
        let seat = self
            .seats
            .take(peer.ip())
            .map_err(|r| SignalError::Unavailable(r.message().to_string()))?;
        let opened = live::open(cam, crate::pump::ConsumerKind::WebRtc, live::OPEN_WAIT)
            .await
            .map_err(|e| match e {
                live::OpenError::NotCoded(_) => SignalError::Bad(e.to_string()),
                live::OpenError::NoKeyframe(..) | live::OpenError::Encoder(..) => {
                    SignalError::Unavailable(e.to_string())
                }
            })?;
        let (secret, number) = self.new_id()?;
        let session = Session::new(
            secret,
            number,
            cam.clone(),
            opened.hold,
            seat,
            peer,
            &self.candidates,
        )
        .map_err(SignalError::Unavailable)?;
        Ok((Box::new(session), opened.codec))
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

/// A session id as an error may show it: its first characters only (the whole is a secret).
fn short(id: &str) -> String {
    id.chars()
        .take(6)
        .filter(|c| c.is_ascii_alphanumeric())
        .collect::<String>()
        + "…"
}

/// The answer with every rejected media line (port 0) carrying the format the offer gave that
/// line: str0m writes `m=audio 0 UDP/TLS/RTP/SAVPF ` with none, which RFC 3264 forbids and
/// Chromium refuses to parse (Mainsail's WHEP offer has audio).
fn rejected_lines_keep_a_format(offer: &str, answer: &str) -> String {
    let offered: Vec<&str> = offer.lines().filter(|l| l.starts_with("m=")).collect();
    let mut index = 0;
    let mut out = String::with_capacity(answer.len() + 16);
    for line in answer.split_inclusive('\n') {
        let text = line.trim_end_matches(['\r', '\n']);
        if !text.starts_with("m=") {
            out.push_str(line);
            continue;
        }
        let fields: Vec<&str> = text.split_whitespace().collect();
        let format = offered.get(index).and_then(|o| o.split_whitespace().nth(3));
        index += 1;
        match (fields.as_slice(), format) {
            ([_, "0", _], Some(f)) => {
                out.push_str(&format!("{} 0 {} {f}", fields[0], fields[2]));
                out.push_str(&line[text.len()..]);
            }
            _ => out.push_str(line),
        }
    }
    out
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
fn offer_fits(sdp: &str, codec: crate::media::h264::Codec) -> Result<(), String> {
    if !sdp.lines().any(|l| l.starts_with("m=video ")) {
        return Err("the offer has no video (add a recvonly video transceiver)".into());
    }
    let (name, rtpmap) = match codec {
        crate::media::h264::Codec::H264 => ("H.264", "h264/90000"),
        crate::media::h264::Codec::H265 => ("H.265", "h265/90000"),
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
/// It holds one subscription per watched camera and writes each unit to every session of that
/// camera; after each event only the sessions it touched are drained. A frame costs each viewer
/// one write and one drain, and wakes nothing but this task.
async fn run(
    socket: AsyncFd<std::net::UdpSocket>,
    mut commands: mpsc::Receiver<Command>,
    shared: Arc<Shared>,
    connect_timeout: Duration,
    shutdown: CancellationToken,
) {
    let local = socket
        .get_ref()
        .local_addr()
        .expect("bound socket has an address");
    let mut sessions: HashMap<String, Box<Session>> = HashMap::new();
    // Each watched camera's units, and the sessions watching it. A camera whose units fell
    // behind (this task could not keep up) yields `Lagged`: its sessions skip to a keyframe.
    let mut feeds: StreamMap<Arc<str>, BroadcastStream<Arc<Unit>>> = StreamMap::new();
    let mut watchers: HashMap<Arc<str>, Vec<String>> = HashMap::new();
    let mut buf = vec![0u8; 2048];
    // Sessions to drain before waiting again.
    let mut touched: Vec<String> = Vec::new();
    // One timer, moved to each next wake-up (a later one without touching the timer wheel).
    let sleep = tokio::time::sleep(Duration::from_secs(1));
    // Waits once for the whole loop (a new one each time round would register and unregister).
    let cancelled = shutdown.cancelled();
    tokio::pin!(sleep, cancelled);
    loop {
        for id in touched.drain(..) {
            let Some(s) = sessions.get_mut(&id) else { continue };
            guarded(s, |s| s.drain(socket.get_ref()));
            if let Some(rx) = s.take_feed() {
                let camera: Arc<str> = s.camera_id().into();
                // A camera watched already keeps its older subscription (the session skips what
                // its start had); a camera whose units ended (replaced by a reload) takes this one.
                if !feeds.contains_key(&camera) {
                    feeds.insert(camera.clone(), BroadcastStream::new(rx));
                }
                watchers.entry(camera).or_default().push(id.clone());
            }
            if let Some(st) = shared.sessions.lock().unwrap().get_mut(&id) {
                st.connected = s.connected();
                st.bytes_sent = s.bytes_sent();
            }
        }
        let now = Instant::now();
        let mut next = now + Duration::from_secs(1);
        sessions.retain(|id, s| {
            let keep = s.alive() && (s.connected() || now.duration_since(s.created()) < connect_timeout);
            if keep {
                next = next.min(s.timeout());
            } else {
                info!(camera = %s.camera_id(), peer = %s.peer(), "webrtc: session {} ended after {:.0?}, {} bytes", s.number(), now.duration_since(s.created()), s.bytes_sent());
                shared.sessions.lock().unwrap().remove(id);
                unwatch(&mut feeds, &mut watchers, s.camera_id(), id);
            }
            keep
        });
        sleep.as_mut().reset(tokio::time::Instant::from_std(next));
        tokio::select! {
            _ = &mut cancelled => break,
            _ = &mut sleep => {
                let now = Instant::now();
                for (id, s) in sessions.iter_mut().filter(|(_, s)| s.timeout() <= now) {
                    guarded(s, |s| s.input(Input::Timeout(now)));
                    touched.push(id.clone());
                }
            }
            c = commands.recv() => match c {
                None => break,
                Some(Command::Add(s)) => {
                    debug!(camera = %s.camera_id(), peer = %s.peer(), "webrtc: session {} signalled", s.number());
                    touched.push(s.id.clone());
                    sessions.insert(s.id.clone(), s);
                }
                Some(Command::Answer { camera, id, answer, reply }) => {
                    let r = match sessions.get_mut(&id).filter(|s| s.camera_id() == camera) {
                        None => Err(SignalError::NoSession(short(&id))),
                        Some(s) => guarded(s, |s| s.accept_answer(answer))
                            .unwrap_or_else(|| Err("the session failed".into()))
                            .map_err(SignalError::Bad),
                    };
                    touched.push(id);
                    let _ = reply.send(r);
                }
                Some(Command::Close(id)) => {
                    if let Some(mut s) = sessions.remove(&id) {
                        s.close();
                        shared.sessions.lock().unwrap().remove(&id);
                        unwatch(&mut feeds, &mut watchers, s.camera_id(), &id);
                        info!(camera = %s.camera_id(), peer = %s.peer(), "webrtc: session {} closed by the viewer", s.number());
                    }
                }
            },
            Some((camera, unit)) = feeds.next(), if !feeds.is_empty() => {
                let unit = unit.ok();
                for id in watchers.get(&camera).into_iter().flatten() {
                    if let Some(s) = sessions.get_mut(id) {
                        guarded(s, |s| s.unit(unit.as_deref()));
                        touched.push(id.clone());
                    }
                }
            }
            r = socket.readable() => {
                // The runtime is gone.
                let Ok(mut ready) = r else { break };
                match ready.try_io(|s| s.get_ref().recv_from(&mut buf)) {
                    // Nothing after all (readiness is cleared).
                    Err(_would_block) => {}
                    Ok(Ok((n, source))) => {
                        let Ok(contents) = buf[..n].try_into() else { continue };
                        let input = Input::Receive(Instant::now(), Receive { proto: Protocol::Udp, source, destination: local, contents });
                        // The session this packet is for (ICE credentials, then the peer's address).
                        if let Some((id, s)) = sessions.iter_mut().find(|(_, s)| s.accepts(&input)) {
                            guarded(s, |s| s.input(input));
                            touched.push(id.clone());
                        }
                    }
                    Ok(Err(e)) => {
                        // ICMP errors from a vanished peer surface here on Linux: not fatal.
                        debug!("webrtc: receive: {e}");
                    }
                }
            }
        }
    }
    for (_, mut s) in sessions.drain() {
        s.close();
    }
    shared.sessions.lock().unwrap().clear();
}

/// A session of `camera` ended: its camera's subscription ends with its last session.
fn unwatch(
    feeds: &mut StreamMap<Arc<str>, BroadcastStream<Arc<Unit>>>,
    watchers: &mut HashMap<Arc<str>, Vec<String>>,
    camera: &str,
    id: &str,
) {
    if let Some(ids) = watchers.get_mut(camera) {
        ids.retain(|s| s != id);
        if ids.is_empty() {
            watchers.remove(camera);
            feeds.remove(camera);
        }
    }
}

/// Run `f` on one session; a panic in it (a bug, or input the WebRTC library cannot take) ends
/// that session only, never the task serving the others.
fn guarded<T>(s: &mut Session, f: impl FnOnce(&mut Session) -> T) -> Option<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&mut *s))) {
        Ok(v) => Some(v),
        Err(_) => {
            tracing::error!(camera = %s.camera_id(), peer = %s.peer(), "webrtc: session {} failed (a bug); it is closed", s.number());
            s.kill();
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rejected_media_line_keeps_the_offered_format() {
        let offer = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96 97\r\na=mid:0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111 63\r\na=mid:1\r\n";
        let answer =
            "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:0\r\nm=audio 0 UDP/TLS/RTP/SAVPF \r\na=mid:1\r\n";
        assert_eq!(
            rejected_lines_keep_a_format(offer, answer),
            "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:0\r\nm=audio 0 UDP/TLS/RTP/SAVPF 111\r\na=mid:1\r\n"
        );
        // An accepted line, or a rejected one that has its format, is left as it is.
        let kept = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\nm=audio 0 UDP/TLS/RTP/SAVPF 111\r\n";
        assert_eq!(rejected_lines_keep_a_format(offer, kept), kept);
        assert!(short("0123456789abcdef").len() < 10);
    }

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
        use crate::media::h264::Codec;
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
