//! One WebRTC viewer: its `Rtc`, the camera it watches (held open for coded video), and how its
//! units are sent. A viewer starts at the camera's latest keyframe with its parameter sets (a
//! picture as soon as it connects); one that falls behind skips to the next keyframe, alone. A
//! browser's keyframe request (PLI/FIR) is served by the camera's next keyframe: a printer cannot
//! be asked for one.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::format::Codec as RtcCodec;
use str0m::media::{Direction, MediaKind, MediaTime, Mid, Pt};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, PacerReason, Reason, Rtc};
use tokio::sync::broadcast;
use tracing::debug;

use super::batch::Batch;
use super::SessionStatus;
use crate::live;
use crate::live::{KeyframeGate, Seat};
use crate::media::h264::Codec;
use crate::registry::Camera;
use crate::source::coded::units::Unit;

pub struct Session {
    /// The session's secret: the last segment of its URL.
    pub id: String,
    /// Its public number (status, logs).
    number: String,
    rtc: Rtc,
    cam: Arc<Camera>,
    /// Keeps the camera connected for coded video (no decoder).
    _hold: live::Hold,
    /// Its place in the session limits, given back when the session is dropped.
    _seat: Seat,
    peer: SocketAddr,
    created: Instant,
    started_unix: f64,
    /// The camera-streamer form's offer, until the browser answers.
    pending: Option<SdpPendingOffer>,
    mid: Option<Mid>,
    pt: Option<Pt>,
    connected: bool,
    /// Failed (a panic while handling it): dropped at once.
    dead: bool,
    gate: KeyframeGate,
    bytes: u64,
    /// Units up to this [`Unit::seq`] were sent with the session's start.
    started_at: Option<u64>,
    /// The camera's units from the session's start on, until the session task takes them (it
    /// keeps one subscription per camera for all its sessions).
    feed: Option<broadcast::Receiver<Arc<Unit>>>,
    /// When the `Rtc` wants input next.
    timeout: Instant,
    /// Packets waiting to be sent together.
    batch: Batch,
}

/// How long a session's `Rtc` may go untouched after its pacer emptied its queues: a camera of a
/// picture a second or more touches it sooner (each unit it writes ticks it); a slower one wakes it
/// then, and its RTCP reports wait that long at most. Shorter would wake the runtime for a timer
/// that a camera's next unit keeps pushing back (a timer pushed back still fires once, at its first
/// deadline).
const LOOK_AGAIN_AFTER: Duration = Duration::from_secs(1);

/// Whether a datagram is RTP (not RTCP, STUN or DTLS; RFC 7983 and RFC 5761): version 2, and a
/// payload type outside RTCP's packet types 192-223.
fn is_rtp(packet: &[u8]) -> bool {
    matches!(packet, [128..=191, b, ..] if !(192..=223).contains(b))
}

fn crypto() -> Arc<str0m::crypto::CryptoProvider> {
    static PROVIDER: OnceLock<Arc<str0m::crypto::CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(str0m::crypto::from_feature_flags()))
        .clone()
}

impl Session {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: String,
        number: String,
        cam: Arc<Camera>,
        hold: live::Hold,
        seat: Seat,
        peer: SocketAddr,
        candidates: &[SocketAddr],
    ) -> Result<Session, String> {
        let mut rtc = Rtc::builder()
            .set_crypto_provider(crypto())
            .set_ice_lite(true)
            .clear_codecs()
            .enable_h264(true)
            .enable_h265(true)
            .build(Instant::now());
        for c in candidates {
            let c = Candidate::host(*c, "udp").map_err(|e| format!("a host candidate for {c}: {e}"))?;
            rtc.add_local_candidate(c);
        }
        Ok(Session {
            id,
            number,
            rtc,
            cam,
            _hold: hold,
            _seat: seat,
            peer,
            created: Instant::now(),
            started_unix: crate::util::unix_time::now(),
            pending: None,
            mid: None,
            pt: None,
            connected: false,
            dead: false,
            gate: KeyframeGate::default(),
            bytes: 0,
            started_at: None,
            feed: None,
            timeout: Instant::now(),
            batch: Batch::default(),
        })
    }

    pub fn status(&self) -> SessionStatus {
        SessionStatus {
            id: self.number.clone(),
            camera: self.cam.id().to_string(),
            peer: self.peer.to_string(),
            started: self.started_unix,
            connected: self.connected,
            bytes_sent: self.bytes,
        }
    }

    /// The public number (logs and status show this, never the secret id).
    pub fn number(&self) -> &str {
        &self.number
    }

    pub fn camera_id(&self) -> &str {
        self.cam.id()
    }

    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    pub fn created(&self) -> Instant {
        self.created
    }

    pub fn connected(&self) -> bool {
        self.connected
    }

    pub fn bytes_sent(&self) -> u64 {
        self.bytes
    }

    pub fn alive(&self) -> bool {
        !self.dead && self.rtc.is_alive()
    }

    /// End the session without touching its `Rtc` again (it may be inconsistent after a panic).
    pub fn kill(&mut self) {
        self.dead = true;
    }

    /// The server's offer (camera-streamer's form): one video line, send only.
    pub fn make_offer(&mut self) -> Result<String, String> {
        let mut api = self.rtc.sdp_api();
        let mid = api.add_media(MediaKind::Video, Direction::SendOnly, None, None, None);
        let (offer, pending) = api.apply().ok_or("nothing to offer")?;
        self.mid = Some(mid);
        self.pending = Some(pending);
        Ok(offer.to_sdp_string())
    }

    /// The browser's answer to our offer.
    pub fn accept_answer(&mut self, answer: SdpAnswer) -> Result<(), String> {
        let pending = self.pending.take().ok_or("this session has its answer already")?;
        self.rtc
            .sdp_api()
            .accept_answer(pending, answer)
            .map_err(|e| format!("the answer does not fit the offer: {e}"))
    }

    /// WHEP: the browser's offer, answered.
    pub fn accept_offer(&mut self, offer: SdpOffer) -> Result<String, String> {
        let answer = self
            .rtc
            .sdp_api()
            .accept_offer(offer)
            .map_err(|e| format!("cannot answer this offer: {e}"))?;
        Ok(answer.to_sdp_string())
    }

    /// Whether a packet is for this session.
    pub fn accepts(&self, input: &Input) -> bool {
        self.rtc.accepts(input)
    }

    pub fn input(&mut self, input: Input) {
        if let Err(e) = self.rtc.handle_input(input) {
            debug!(camera = %self.cam.id(), "webrtc: session {}: {e}", self.number);
            self.rtc.disconnect();
        }
    }

    /// When the `Rtc` wants input next (as of the last [`Session::drain`]).
    pub fn timeout(&self) -> Instant {
        self.timeout
    }

    /// The camera's units from this session's start on, once: the session task keeps them for
    /// every session of the camera, unless it has them already.
    pub fn take_feed(&mut self) -> Option<broadcast::Receiver<Arc<Unit>>> {
        self.feed.take()
    }

    /// Send what the `Rtc` wants sent and handle its events, up to when it wants input next
    /// ([`Session::timeout`]).
    pub fn drain(&mut self, socket: &UdpSocket) {
        self.timeout = self.poll(socket);
        let n = self.batch.flush(socket);
        self.sent(n);
    }

    fn sent(&mut self, n: u64) {
        if n > 0 {
            self.bytes += n;
            self.cam.shared().webrtc_bytes_sent.fetch_add(n, Relaxed);
        }
    }

    /// [`Session::drain`]: returns when the `Rtc` wants input next.
    fn poll(&mut self, socket: &UdpSocket) -> Instant {
        let mut ticks = 4;
        let mut sent_rtp = false;
        loop {
            match self.rtc.poll_output() {
                Ok(Output::Timeout(t)) => {
                    let now = Instant::now();
                    if t > now || ticks == 0 {
                        return t;
                    }
                    // str0m's pacer (without bandwidth estimation, it sends whatever is queued)
                    // asks to look at its queues again after the packets it released. This poll
                    // released them until the queues were empty; they fill again when a unit is
                    // written (which ticks at once) or a NACK asks for resends (a poll that sent
                    // no RTP ticks). The look was one of a frame's two ticks. Whatever else comes
                    // due is served by the camera's next unit, or this deadline at the latest.
                    if sent_rtp && self.rtc.last_timeout_reason() == Reason::Pacer(PacerReason::Handle) {
                        return now + LOOK_AGAIN_AFTER;
                    }
                    // Due already (str0m packetizes a written unit on its clock, or a timer
                    // fired): tick it here, a few times at most, rather than through a timer that
                    // fires at once and wakes the runtime's driver for it.
                    ticks -= 1;
                    self.input(Input::Timeout(now));
                }
                Ok(Output::Transmit(t)) => {
                    sent_rtp |= is_rtp(&t.contents);
                    // A picture's packets go out together (flushed when the poll ends).
                    let n = self.batch.send(socket, &t.contents, t.destination);
                    self.sent(n);
                }
                Ok(Output::Event(e)) => self.event(e),
                Err(e) => {
                    debug!(camera = %self.cam.id(), "webrtc: session {}: {e}", self.number);
                    self.rtc.disconnect();
                    return Instant::now() + Duration::from_secs(1);
                }
            }
        }
    }

    fn event(&mut self, e: Event) {
        match e {
            Event::MediaAdded(m) if m.kind == MediaKind::Video && self.mid.is_none() => {
                self.mid = Some(m.mid);
                // WHEP: str0m tells of the browser's video line after it is connected; the
                // viewer starts now, at the kept group (not at the next keyframe).
                if self.connected && self.started_at.is_none() {
                    self.start_units();
                }
            }
            Event::Connected => {
                self.connected = true;
                // Without the video line known yet (WHEP), units start when it is.
                if self.mid.is_some() {
                    self.start_units();
                }
            }
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                self.rtc.disconnect();
            }
            Event::KeyframeRequest(_) => {
                // Served by the camera's next keyframe.
                debug!(camera = %self.cam.id(), "webrtc: session {} asked for a keyframe", self.number);
            }
            _ => {}
        }
    }

    /// Connected: the camera's current group of pictures at once (its keyframe and the units
    /// after it, so the browser's decoder has every reference and shows the current picture),
    /// then every unit the camera yields.
    fn start_units(&mut self) {
        let Some(feed) = self.cam.units() else { return };
        let (start, rx) = feed.subscribe();
        let n = start.units.len();
        for (i, u) in start.units.iter().enumerate() {
            // Timestamps a tick apart, just before now: shown at once, the last one stays.
            self.write(u, (n - 1 - i) as u64);
        }
        if !start.complete {
            self.gate.wait();
        }
        self.started_at = Some(start.units.last().map_or(0, |u| u.seq));
        self.feed = Some(rx);
    }

    /// A unit of its camera (`None`: the session task fell behind; the session skips to the
    /// next keyframe).
    pub fn unit(&mut self, unit: Option<&Unit>) {
        match unit {
            None => {
                self.gate.behind();
            }
            // Sent with the start already (the camera's subscription is older than the session).
            Some(u) if self.started_at.is_none_or(|s| u.seq <= s) => {}
            Some(u) => self.write(u, 0),
        }
    }

    /// Send one unit, timestamped `early` ticks (of 90 kHz) before now.
    fn write(&mut self, u: &Unit, early: u64) {
        let Some(mid) = self.mid else { return };
        if !self.gate.pass(u) {
            return;
        }
        if self.pt.is_none() {
            let want = match u.codec {
                Codec::H264 => RtcCodec::H264,
                Codec::H265 => RtcCodec::H265,
            };
            self.pt = self.rtc.writer(mid).and_then(|w| {
                w.payload_params()
                    .find(|p| p.spec().codec == want)
                    .map(|p| p.pt())
            });
        }
        let (Some(pt), Some(writer)) = (self.pt, self.rtc.writer(mid)) else {
            return;
        };
        let now = Instant::now();
        // A second after the session's creation at its creation: never below zero.
        let ticks = (now.duration_since(self.created).as_micros() * 9 / 100) as u64 + 90_000;
        let rtp = MediaTime::from_90khz(ticks - early.min(90_000));
        match writer.write(pt, now, rtp, u.au.data.to_vec()) {
            // Packetized on the `Rtc`'s clock: ticked now, rather than after a poll that says so.
            Ok(()) => self.input(Input::Timeout(now)),
            Err(e) => {
                debug!(camera = %self.cam.id(), "webrtc: session {}: {e}", self.number);
                // Not sent: the browser's decoder needs the next keyframe.
                self.gate.wait();
            }
        }
    }

    pub fn close(&mut self) {
        if !self.dead {
            self.rtc.disconnect();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::is_rtp;

    /// RTP of any payload type, marked or not, but not RTCP, STUN or DTLS (RFC 7983's ranges).
    #[test]
    fn rtp_is_told_from_what_shares_its_port() {
        assert!(is_rtp(&[0x80, 96, 0, 1]));
        assert!(is_rtp(&[0x80, 0x80 | 102, 0, 1]), "marker bit set");
        assert!(!is_rtp(&[0x80, 200, 0, 6]), "RTCP sender report");
        assert!(!is_rtp(&[0x81, 205, 0, 3]), "RTCP NACK");
        assert!(!is_rtp(&[0x00, 0x01, 0, 0]), "STUN binding request");
        assert!(!is_rtp(&[22, 0xfe, 0xfd]), "DTLS handshake");
        assert!(!is_rtp(&[0x80]));
    }
}
