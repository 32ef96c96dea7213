//! One RTSP client connection: its requests (parsed by `rtsp-types`), the cameras it described,
//! and the sessions it set up, which end with it. One writer task owns the socket's write half:
//! answers and interleaved media go through one bounded queue, so a client that stops reading
//! backs up only its own sessions (they skip to the next keyframe), and one that stays stuck is
//! dropped after [`WRITE_TIMEOUT`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rtsp_types::headers::{self, RtpLowerTransport, RtpProfile, Transport, Transports};
use rtsp_types::{Message, Method, ParseError, Request, Response, StatusCode, Url, Version};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use super::play::{self, Counters, Sink};
use super::rtp::Packetizer;
use super::{sdp, Gate, Rtsp, SessionStatus, Verdict};
use crate::live::{self, Refusal, Seat};
use crate::media::h264::Codec;
use crate::pump::{ConsumerKind, Subscription};
use crate::registry::Camera;

/// A request larger than this (headers and body) is refused.
const MAX_REQUEST: usize = 64 << 10;
/// Whole units queued for the writer: about two seconds of video.
const OUT_QUEUE: usize = 64;
/// A client that takes nothing for this long is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(20);
/// A connection that sends no complete request this long after it opened is closed.
const FIRST_REQUEST: Duration = Duration::from_secs(5);
const PUBLIC: &str = "OPTIONS, DESCRIBE, SETUP, PLAY, PAUSE, TEARDOWN, GET_PARAMETER, SET_PARAMETER";

/// The status of a refusal: 503 when every seat is taken, 453 Not Enough Bandwidth when this
/// client holds its share.
fn refusal_status(r: &Refusal) -> u16 {
    match r {
        Refusal::Busy(_) => 503,
        Refusal::Client(_) => 453,
    }
}

/// The whole answer to a connection refused at accept (sent without reading its request).
pub fn refusal_bytes(r: &Refusal) -> String {
    let (status, reason) = match r {
        Refusal::Busy(_) => (503, "Service Unavailable"),
        Refusal::Client(_) => (453, "Not Enough Bandwidth"),
    };
    let body = format!("{}\r\n", r.message());
    format!(
        "RTSP/1.0 {status} {reason}\r\nCSeq: 0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// A camera this connection described: held open (its codec known) until a SETUP takes it.
struct Described {
    cam: Arc<Camera>,
    codec: Codec,
    /// The camera held open and a seat taken, until a SETUP takes them (or `session_timeout`).
    hold: Option<(Subscription, Seat)>,
    at: Instant,
}

struct Session {
    cam: Arc<Camera>,
    _hold: Subscription,
    _seat: Seat,
    sink: Sink,
    rtp: Option<Packetizer>,
    player: Option<(CancellationToken, JoinHandle<Packetizer>)>,
    codec: Codec,
    /// The track's URL (RTP-Info).
    control: String,
    started: Instant,
    counters: Arc<Counters>,
}

struct Conn {
    rtsp: Arc<Rtsp>,
    gate: Weak<dyn Gate>,
    peer: SocketAddr,
    local: SocketAddr,
    out: mpsc::Sender<Bytes>,
    described: HashMap<String, Described>,
    sessions: HashMap<String, Session>,
    /// Sessions whose player ended by itself (the camera changed codec across a reconnect).
    ended: mpsc::UnboundedSender<String>,
    _seat: Seat,
}

/// What a request gets.
struct Answer {
    status: u16,
    headers: Vec<(rtsp_types::HeaderName, String)>,
    content_type: Option<&'static str>,
    body: Vec<u8>,
    /// `WWW-Authenticate` values, one header line each (rtsp-types would join them into one).
    challenges: Vec<String>,
}

impl Answer {
    fn ok() -> Answer {
        Answer {
            status: 200,
            headers: Vec::new(),
            content_type: None,
            body: Vec::new(),
            challenges: Vec::new(),
        }
    }

    /// An error: the status, and one line saying what to do, as a text body.
    fn error(status: u16, message: &str) -> Answer {
        Answer {
            status,
            headers: Vec::new(),
            content_type: Some("text/plain; charset=utf-8"),
            body: format!("{message}\r\n").into_bytes(),
            challenges: Vec::new(),
        }
    }

    fn header(mut self, name: rtsp_types::HeaderName, value: impl Into<String>) -> Answer {
        self.headers.push((name, value.into()));
        self
    }
}

pub async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    rtsp: Arc<Rtsp>,
    gate: Weak<dyn Gate>,
    seat: Seat,
    shutdown: CancellationToken,
) {
    let local = stream.local_addr().unwrap_or(rtsp.local);
    let (mut rd, wr) = stream.into_split();
    let (out, out_rx) = mpsc::channel(OUT_QUEUE);
    let mut writer = tokio::spawn(write_loop(wr, out_rx));
    let mut writer_done = false;
    let (ended, mut ended_rx) = mpsc::unbounded_channel();
    let mut c = Conn {
        rtsp: rtsp.clone(),
        gate,
        peer,
        local,
        out,
        described: HashMap::new(),
        sessions: HashMap::new(),
        ended,
        _seat: seat,
    };
    let mut buf: Vec<u8> = Vec::with_capacity(1024);
    let mut last_request = Instant::now();
    let mut requests = 0u64;
    // A client that opens a connection and says nothing loses it soon.
    let first_request = tokio::time::sleep(FIRST_REQUEST);
    tokio::pin!(first_request);
    let mut tick = tokio::time::interval((rtsp.timeout() / 2).min(Duration::from_secs(5)));
    'conn: loop {
        // Every complete message in the buffer.
        loop {
            match Message::<Vec<u8>>::parse(&buf) {
                Ok((msg, used)) => {
                    buf.drain(..used);
                    match msg {
                        Message::Request(req) => {
                            requests += 1;
                            if !c.request(req).await {
                                break 'conn;
                            }
                            // Silence counts from the answer (a DESCRIBE may wait for the camera).
                            last_request = Instant::now();
                        }
                        // RTCP over the interleaved channels: the client is there.
                        Message::Data(_) => c.touch_all(),
                        Message::Response(_) => {}
                    }
                }
                Err(ParseError::Incomplete(_)) if buf.len() <= MAX_REQUEST => break,
                Err(e) => {
                    let why = if matches!(e, ParseError::Incomplete(_)) {
                        format!("a request larger than {} KiB", MAX_REQUEST >> 10)
                    } else {
                        "not an RTSP/1.0 request".to_string()
                    };
                    rtsp.say(&format!(
                        "rtsp: {} sent {why}; answered 400 and closed",
                        peer.ip()
                    ));
                    c.send(
                        Answer::error(400, &format!("{why}; farmcam speaks RTSP/1.0 (RFC 2326)")),
                        "0",
                    )
                    .await;
                    break 'conn;
                }
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            r = rd.read_buf(&mut buf) => match r {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            },
            _ = &mut writer => {
                writer_done = true;
                break;
            }
            _ = &mut first_request, if requests == 0 => {
                debug!(peer = %peer, "rtsp: connection closed: no request within {FIRST_REQUEST:?}");
                break;
            }
            Some(id) = ended_rx.recv() => {
                if let Some(s) = c.sessions.remove(&id) {
                    let tcp = matches!(s.sink, Sink::Tcp { .. });
                    c.end(&id, s, "ended: the camera changed codec when it reconnected").await;
                    // Over TCP the client learns it from its connection closing.
                    if tcp {
                        break;
                    }
                }
            }
            _ = tick.tick() => {
                c.expire();
                if c.sessions.is_empty() && c.described.is_empty() && last_request.elapsed() > rtsp.timeout() {
                    debug!(peer = %peer, "rtsp: idle connection closed");
                    break;
                }
            }
        }
    }
    c.end_all().await;
    drop(c);
    if !writer_done {
        // The last answer (a 400, say) still goes out, briefly.
        if tokio::time::timeout(Duration::from_secs(2), &mut writer)
            .await
            .is_err()
        {
            writer.abort();
        }
    }
}

async fn write_loop(mut wr: OwnedWriteHalf, mut rx: mpsc::Receiver<Bytes>) {
    while let Some(b) = rx.recv().await {
        match tokio::time::timeout(WRITE_TIMEOUT, wr.write_all(&b)).await {
            Ok(Ok(())) => {}
            _ => return,
        }
    }
    let _ = wr.shutdown().await;
}

/// The camera id and whether the URL names the track (`/<camera>` or `/<camera>/trackID=0`),
/// and the URL's `?token=`.
fn target(url: Option<&Url>) -> Option<(String, Option<String>)> {
    let url = url?;
    let mut parts = url.path_segments()?.filter(|s| !s.is_empty());
    let id = parts.next()?.to_string();
    match parts.next() {
        None => {}
        Some(t) if t == sdp::TRACK => {}
        Some(_) => return None,
    }
    if parts.next().is_some() {
        return None;
    }
    let token = url
        .query_pairs()
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned());
    Some((id, token))
}

/// The camera's URL as clients should use it: the request's host and port, no credentials,
/// no query, with a trailing slash (the base the track's control URL is relative to).
fn base_url(url: &Url, id: &str) -> String {
    let mut base = url.clone();
    base.set_query(None);
    base.set_fragment(None);
    let _ = base.set_username("");
    let _ = base.set_password(None);
    base.set_path(&format!("/{id}/"));
    base.to_string()
}

impl Conn {
    /// Answer one request; false: close the connection.
    async fn request(&mut self, req: Request<Vec<u8>>) -> bool {
        let Some(cseq) = req.header(&headers::CSEQ).map(|v| v.as_str().to_string()) else {
            self.send(
                Answer::error(400, "a request without CSeq; every RTSP request carries one"),
                "0",
            )
            .await;
            return false;
        };
        if req.version() != Version::V1_0 {
            let a = Answer::error(505, "farmcam speaks RTSP/1.0");
            return self.send(a, &cseq).await;
        }
        let session = match req.typed_header::<headers::Session>() {
            Ok(s) => s.map(|s| s.0),
            Err(_) => {
                return self
                    .send(Answer::error(400, "a Session header that does not parse"), &cseq)
                    .await
            }
        };
        if let Some(id) = &session {
            if self.sessions.contains_key(id) {
                self.rtsp.touch(id);
            }
        }
        let answer = match req.method() {
            Method::Options => Answer::ok().header(headers::PUBLIC, PUBLIC),
            Method::Describe => self.describe(&req).await,
            Method::Setup => self.setup(&req, session.as_deref()),
            Method::Play => self.play(session.as_deref()).await,
            Method::Pause => self.pause(session.as_deref()).await,
            Method::Teardown => self.teardown(session.as_deref()).await,
            Method::GetParameter | Method::SetParameter => match &session {
                Some(id) if !self.sessions.contains_key(id) => no_session(id),
                _ => Answer::ok(),
            },
            Method::Announce | Method::Record => Answer::error(
                405,
                "farmcam serves its cameras' streams and takes none (ANNOUNCE/RECORD are for publishing)",
            )
            .header(headers::ALLOW, PUBLIC),
            _ => Answer::error(501, "a method farmcam does not implement").header(headers::ALLOW, PUBLIC),
        };
        let answer = match (&session, answer.status) {
            // The session header goes back on every answer about a live session.
            (Some(id), 200)
                if self.sessions.contains_key(id)
                    && !answer.headers.iter().any(|(n, _)| *n == headers::SESSION) =>
            {
                answer.header(
                    headers::SESSION,
                    format!("{id};timeout={}", self.rtsp.timeout().as_secs().max(1)),
                )
            }
            _ => answer,
        };
        let sent = self.send(answer, &cseq).await;
        // A PLAY's media start only after its answer.
        if let (Method::Play, Some(id)) = (req.method(), &session) {
            self.start_player(id);
        }
        sent
    }

    async fn send(&self, a: Answer, cseq: &str) -> bool {
        let mut b = Response::builder(Version::V1_0, StatusCode::from(a.status))
            .header(headers::CSEQ, cseq)
            .header(headers::SERVER, concat!("farmcam/", env!("CARGO_PKG_VERSION")));
        for (n, v) in a.headers {
            b = b.header(n, v);
        }
        if let Some(t) = a.content_type {
            b = b.header(headers::CONTENT_TYPE, t);
        }
        let resp = b.build(a.body);
        let mut bytes = Vec::with_capacity(256);
        if resp.write(&mut bytes).is_err() {
            return false;
        }
        if let Some(status_line) = bytes.windows(2).position(|w| w == b"\r\n") {
            let lines: String = a
                .challenges
                .iter()
                .map(|c| format!("WWW-Authenticate: {c}\r\n"))
                .collect();
            bytes.splice(status_line + 2..status_line + 2, lines.into_bytes());
        }
        self.out.send(Bytes::from(bytes)).await.is_ok()
    }

    async fn describe(&mut self, req: &Request<Vec<u8>>) -> Answer {
        let Some(gate) = self.gate.upgrade() else {
            return Answer::error(503, "farmcam is shutting down");
        };
        let found = target(req.request_uri());
        let token = found.as_ref().and_then(|(_, t)| t.as_deref());
        let authorization = req.header(&headers::AUTHORIZATION).map(|v| v.as_str());
        let uri = req.request_uri().map_or(String::new(), |u| u.to_string());
        // Credentials first: without them, an unknown camera and a real one are answered alike.
        let verdict = gate
            .check(
                authorization,
                token,
                "DESCRIBE",
                &uri,
                self.peer,
                self.rtsp.config.listen,
            )
            .await;
        match verdict {
            Verdict::Allowed => {}
            Verdict::Unauthorized { challenges } => {
                let mut a = Answer::error(
                    401,
                    "authentication required: a user and password of [http.auth], or ?token=TOKEN in the URL",
                );
                a.challenges = challenges;
                return a;
            }
            Verdict::TooMany(wait) => {
                return Answer::error(
                    503,
                    "too many failed logins from this address; wait a minute and check the user name and password",
                )
                .header(headers::RETRY_AFTER, wait.as_secs().max(1).to_string())
            }
        }
        let Some((id, _)) = found else {
            return Answer::error(
                404,
                "no such stream; use rtsp://HOST:PORT/CAMERA_ID (the ids are in /api/cameras)",
            );
        };
        let Some(cam) = self.rtsp.registry.get(&id) else {
            return Answer::error(404, &format!("no camera {id:?} (the ids are in /api/cameras)"));
        };
        if cam.units().is_none() {
            return Answer::error(
                415,
                &format!("camera {id:?} sends MJPEG; RTSP re-serves H.264/H.265 cameras only (its MJPEG stream is /cameras/{id}/stream)"),
            );
        }
        // A described camera is held open until SETUP: it takes a seat like a session, before
        // anything is awaited (a DESCRIBE again reuses this connection's).
        let seat = match self.described.remove(&id).and_then(|d| d.hold) {
            Some((hold, seat)) => Ok((Some(hold), seat)),
            None => self.rtsp.seat(self.peer.ip()).map(|s| (None, s)),
        };
        let (held, seat) = match seat {
            Ok(s) => s,
            Err(r) => return Answer::error(refusal_status(&r), r.message()),
        };
        let opened = match held {
            Some(hold) => live::open_held(&cam, hold, live::OPEN_WAIT).await,
            None => live::open(&cam, ConsumerKind::Rtsp, live::OPEN_WAIT).await,
        };
        let opened = match opened {
            Ok(o) => o,
            Err(e) => return Answer::error(503, &e.to_string()),
        };
        let Some((start, _)) = live::follow(&cam) else {
            return Answer::error(503, &format!("camera {id:?} just reconnected; retry"));
        };
        let Some(key) = start.units.first() else {
            return Answer::error(503, &format!("camera {id:?} just reconnected; retry"));
        };
        let rate = cam.units().and_then(|f| f.rate());
        let server_ip = self.local.ip().to_canonical().to_string();
        let body =
            sdp::describe(opened.codec, &key.au.data, rate, &cam.config().name, &server_ip).into_bytes();
        let base = base_url(req.request_uri().expect("target() saw the URL"), &id);
        self.described.insert(
            id,
            Described {
                cam,
                codec: opened.codec,
                hold: Some((opened.hold, seat)),
                at: Instant::now(),
            },
        );
        Answer {
            status: 200,
            headers: vec![(headers::CONTENT_BASE, base)],
            content_type: Some("application/sdp"),
            body,
            challenges: Vec::new(),
        }
    }

    fn setup(&mut self, req: &Request<Vec<u8>>, session: Option<&str>) -> Answer {
        if let Some(id) = session {
            return if self.sessions.contains_key(id) {
                Answer::error(
                    459,
                    "this session has its one track already; SETUP without a Session header for another",
                )
            } else {
                no_session(id)
            };
        }
        let Some((id, _)) = target(req.request_uri()) else {
            return Answer::error(
                404,
                "no such stream; use rtsp://HOST:PORT/CAMERA_ID/trackID=0 from the DESCRIBE answer",
            );
        };
        let Some(described) = self.described.get_mut(&id) else {
            return Answer::error(
                455,
                &format!("DESCRIBE rtsp://…/{id} on this connection before SETUP"),
            );
        };
        let transports = match req.typed_header::<Transports>() {
            Ok(Some(t)) => t,
            _ => return Answer::error(461, "a SETUP needs a Transport header: RTP/AVP/TCP;unicast;interleaved=0-1 or RTP/AVP;unicast;client_port=A-B"),
        };
        let udp = self.rtsp.udp.as_ref();
        let mut chosen = None;
        for t in transports.iter() {
            let Transport::Rtp(r) = t else { continue };
            if r.profile != RtpProfile::Avp || r.params.multicast {
                continue;
            }
            match r.lower_transport {
                Some(RtpLowerTransport::Tcp) => {
                    let ch = r.params.interleaved.map_or(0, |c| c.0).min(254);
                    chosen = Some(Err(ch));
                    break;
                }
                Some(RtpLowerTransport::Udp) | None => {
                    if let (Some(_), Some((rtp, rtcp))) = (udp, r.params.client_port) {
                        chosen = Some(Ok((rtp, rtcp.unwrap_or(rtp.wrapping_add(1)))));
                        break;
                    }
                }
                Some(_) => {}
            }
        }
        let Some(chosen) = chosen else {
            let also = if udp.is_some() {
                " or RTP/AVP;unicast;client_port=A-B"
            } else {
                " (UDP is off here: [rtsp] udp)"
            };
            return Answer::error(
                461,
                &format!("no transport farmcam offers; ask for RTP/AVP/TCP;unicast;interleaved=0-1{also}"),
            );
        };
        let (cam, codec) = (described.cam.clone(), described.codec);
        let (hold, seat) = match described.hold.take() {
            Some(h) => h,
            // A second session of one DESCRIBE: a seat of its own.
            None => match self.rtsp.seat(self.peer.ip()) {
                Ok(seat) => (cam.subscribe(ConsumerKind::Rtsp), seat),
                Err(r) => return Answer::error(refusal_status(&r), r.message()),
            },
        };
        let rtp = Packetizer::new(codec);
        let sid = format!("{:016X}", fastrand::u64(..));
        let (sink, transport, rtcp_peer, kind) = match chosen {
            Err(ch) => (
                Sink::Tcp {
                    channel: ch,
                    out: self.out.clone(),
                },
                format!(
                    "RTP/AVP/TCP;unicast;interleaved={ch}-{};ssrc={:08X}",
                    ch + 1,
                    rtp.ssrc()
                ),
                None,
                "tcp",
            ),
            Ok((rtp_port, rtcp_port)) => {
                let udp = udp.expect("chosen only with UDP");
                let server = udp.rtp.local_addr().map_or(0, |a| a.port());
                (
                    Sink::Udp {
                        socket: udp.rtp.clone(),
                        to: SocketAddr::new(self.peer.ip(), rtp_port),
                    },
                    format!(
                        "RTP/AVP;unicast;client_port={rtp_port}-{rtcp_port};server_port={server}-{};ssrc={:08X}",
                        server + 1,
                        rtp.ssrc()
                    ),
                    Some(SocketAddr::new(self.peer.ip(), rtcp_port)),
                    "udp",
                )
            }
        };
        let counters = Arc::new(Counters::default());
        self.rtsp.add_session(
            SessionStatus {
                id: sid.clone(),
                camera: id.clone(),
                peer: self.peer.to_string(),
                transport: kind,
                started: crate::util::unix_time::now(),
                playing: false,
                bytes_sent: 0,
                skips: 0,
            },
            rtcp_peer,
            counters.clone(),
        );
        let control = req
            .request_uri()
            .map(|u| format!("{}{}", base_url(u, &id), sdp::TRACK))
            .unwrap_or_default();
        info!(camera = %id, peer = %self.peer, "rtsp: session {sid} set up ({kind})");
        self.sessions.insert(
            sid.clone(),
            Session {
                cam,
                _hold: hold,
                _seat: seat,
                sink,
                rtp: Some(rtp),
                player: None,
                codec,
                control,
                started: Instant::now(),
                counters,
            },
        );
        Answer::ok().header(headers::TRANSPORT, transport).header(
            headers::SESSION,
            format!("{sid};timeout={}", self.rtsp.timeout().as_secs().max(1)),
        )
    }

    async fn play(&mut self, session: Option<&str>) -> Answer {
        let Some(id) = session else {
            return Answer::error(454, "PLAY needs the Session header from SETUP");
        };
        let Some(s) = self.sessions.get_mut(id) else {
            return no_session(id);
        };
        let mut a = Answer::ok().header(headers::RANGE, "npt=now-");
        if s.player.is_none() {
            if let (Some(rtp), Some(feed)) = (&s.rtp, s.cam.units()) {
                let mut info = format!("url={};seq={}", s.control, rtp.next_seq());
                // The time of the first packet the player will send (see play::run).
                if let Some(first) = feed.group().steady_pts(feed.rate()).first() {
                    info.push_str(&format!(";rtptime={}", rtp.timestamp(*first)));
                }
                a = a.header(headers::RTP_INFO, info);
            }
        }
        a
    }

    /// After PLAY's answer went out: the session's media start (once).
    fn start_player(&mut self, id: &str) {
        let Some(s) = self.sessions.get_mut(id) else {
            return;
        };
        if s.player.is_some() {
            return;
        }
        let Some(rtp) = s.rtp.take() else {
            return;
        };
        let Some((start, rx)) = live::follow(&s.cam) else {
            s.rtp = Some(rtp);
            return;
        };
        let stop = CancellationToken::new();
        let ended = self.ended.clone();
        let sid = id.to_string();
        let (cam, sink, counters, until) = (s.cam.clone(), s.sink.clone(), s.counters.clone(), stop.clone());
        let task = tokio::spawn(async move {
            let (rtp, why) = play::run(cam, start, rx, rtp, sink, counters, until).await;
            if why == play::Ended::CodecChanged {
                let _ = ended.send(sid);
            }
            rtp
        });
        s.player = Some((stop, task));
        self.rtsp.set_playing(id, true);
        debug!(camera = %s.cam.id(), peer = %self.peer, "rtsp: session {id} playing");
    }

    async fn pause(&mut self, session: Option<&str>) -> Answer {
        let Some(id) = session else {
            return Answer::error(454, "PAUSE needs the Session header from SETUP");
        };
        let Some(s) = self.sessions.get_mut(id) else {
            return no_session(id);
        };
        if let Some((stop, task)) = s.player.take() {
            stop.cancel();
            s.rtp = Some(task.await.unwrap_or_else(|_| Packetizer::new(s.codec)));
        }
        self.rtsp.set_playing(id, false);
        Answer::ok()
    }

    async fn teardown(&mut self, session: Option<&str>) -> Answer {
        let Some(id) = session else {
            return Answer::error(454, "TEARDOWN needs the Session header from SETUP");
        };
        match self.sessions.remove(id) {
            None => no_session(id),
            Some(s) => {
                self.end(id, s, "torn down").await;
                Answer::ok()
            }
        }
    }

    async fn end(&self, id: &str, mut s: Session, why: &str) {
        if let Some((stop, task)) = s.player.take() {
            stop.cancel();
            let _ = task.await;
        }
        self.rtsp.remove_session(id);
        info!(
            camera = %s.cam.id(),
            peer = %self.peer,
            "rtsp: session {id} {why} after {:.0?}, {} bytes",
            s.started.elapsed(),
            s.counters.bytes.load(std::sync::atomic::Ordering::Relaxed)
        );
    }

    /// Sessions that heard nothing for the timeout end (UDP ones, and any not playing), and
    /// described cameras no SETUP took are let go.
    fn expire(&mut self) {
        let timeout = self.rtsp.timeout();
        self.described.retain(|_, d| d.at.elapsed() <= timeout);
        let expired: Vec<String> = self
            .sessions
            .keys()
            .filter(|id| self.rtsp.expired(id))
            .cloned()
            .collect();
        for id in expired {
            if let Some(mut s) = self.sessions.remove(&id) {
                if let Some((stop, _)) = s.player.take() {
                    stop.cancel();
                }
                self.rtsp.remove_session(&id);
                info!(camera = %s.cam.id(), peer = %self.peer, "rtsp: session {id} timed out (no request or RTCP report for {:?})", self.rtsp.timeout());
            }
        }
    }

    fn touch_all(&self) {
        for id in self.sessions.keys() {
            self.rtsp.touch(id);
        }
    }

    async fn end_all(&mut self) {
        for (id, s) in std::mem::take(&mut self.sessions) {
            self.end(&id, s, "ended with its connection").await;
        }
        self.described.clear();
    }
}

/// Whatever ends the connection (a bug's panic too), its sessions leave the table (their seats
/// and the connection's are given back as they drop).
impl Drop for Conn {
    fn drop(&mut self) {
        for (id, s) in self.sessions.drain() {
            if let Some((stop, task)) = s.player {
                stop.cancel();
                task.abort();
            }
            self.rtsp.remove_session(&id);
        }
    }
}

fn no_session(id: &str) -> Answer {
    let shown: String = id.chars().take(40).filter(|c| !c.is_control()).collect();
    Answer::error(
        454,
        &format!(
            "no session {shown:?} on this connection (it ended, timed out, or never existed); SETUP again"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_names_a_camera_and_optionally_its_track() {
        let u = |s: &str| Url::parse(s).unwrap();
        assert_eq!(target(Some(&u("rtsp://h:8554/p1"))), Some(("p1".into(), None)));
        assert_eq!(
            target(Some(&u("rtsp://h:8554/p1/trackID=0?token=abc"))),
            Some(("p1".into(), Some("abc".into())))
        );
        assert_eq!(target(Some(&u("rtsp://h:8554/p1/other"))), None);
        assert_eq!(target(Some(&u("rtsp://h:8554/"))), None);
        assert_eq!(target(None), None);
        assert_eq!(
            base_url(&u("rtsp://user:pw@h:8554/p1?token=abc"), "p1"),
            "rtsp://h:8554/p1/"
        );
    }
}
