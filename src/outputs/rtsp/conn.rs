//! One RTSP client connection: reading its requests (parsed by `rtsp-types`; each answered in
//! [`super::methods`]), the cameras it described and the sessions it set up, which end with it,
//! and its timers. One writer task owns the socket's write half:
//! answers and interleaved media go through one bounded queue, so a client that stops reading
//! backs up only its own sessions (they skip to the next keyframe), and one that stays stuck is
//! dropped after [`WRITE_TIMEOUT`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rtsp_types::headers;
use rtsp_types::{Message, Method, ParseError, Request, Response, StatusCode, Version};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use super::play::{Counters, Sink};
use super::rtp::Packetizer;
use super::{Gate, Rtsp};
use crate::live;
use crate::live::{Refusal, Seat};
use crate::media::h264::Codec;
use crate::registry::Camera;

/// A request larger than this (headers and body) is refused.
const MAX_REQUEST: usize = 64 << 10;
/// Whole units queued for the writer: about two seconds of video.
const OUT_QUEUE: usize = 64;
/// A client that takes nothing for this long is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(20);
/// A connection that sends no complete request this long after it opened is closed.
const FIRST_REQUEST: Duration = Duration::from_secs(5);
pub(super) const PUBLIC: &str =
    "OPTIONS, DESCRIBE, SETUP, PLAY, PAUSE, TEARDOWN, GET_PARAMETER, SET_PARAMETER";

/// The status of a refusal: 503 when every seat is taken, 453 Not Enough Bandwidth when this
/// client holds its share.
pub(super) fn refusal_status(r: &Refusal) -> u16 {
    match r {
        Refusal::Busy(_) => 503,
        Refusal::Client(_) => 453,
    }
}

/// The whole answer to a connection refused at accept (sent without reading its request).
pub fn refusal_bytes(r: &Refusal) -> String {
    let status = refusal_status(r);
    let reason = rtsp_types::StatusCode::from(status).to_string();
    let body = format!("{}\r\n", r.message());
    format!(
        "RTSP/1.0 {status} {reason}\r\nCSeq: 0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// A camera this connection described: held open (its codec known) until a SETUP takes it.
pub(super) struct Described {
    pub(super) cam: Arc<Camera>,
    pub(super) codec: Codec,
    /// The camera held open and a seat taken, until a SETUP takes them (or `session_timeout`).
    pub(super) hold: Option<(live::Hold, Seat)>,
    pub(super) at: Instant,
}

pub(super) struct Session {
    pub(super) cam: Arc<Camera>,
    pub(super) _hold: live::Hold,
    pub(super) _seat: Seat,
    pub(super) sink: Sink,
    pub(super) rtp: Option<Packetizer>,
    pub(super) player: Option<(CancellationToken, JoinHandle<Packetizer>)>,
    pub(super) codec: Codec,
    /// The track's URL (RTP-Info).
    pub(super) control: String,
    pub(super) started: Instant,
    pub(super) counters: Arc<Counters>,
}

pub(super) struct Conn {
    pub(super) rtsp: Arc<Rtsp>,
    pub(super) gate: Weak<dyn Gate>,
    pub(super) peer: SocketAddr,
    pub(super) local: SocketAddr,
    pub(super) out: mpsc::Sender<Bytes>,
    pub(super) described: HashMap<String, Described>,
    pub(super) sessions: HashMap<String, Session>,
    /// Sessions whose player ended by itself (the camera changed codec across a reconnect).
    pub(super) ended: mpsc::UnboundedSender<String>,
    pub(super) _seat: Seat,
}

/// What a request gets.
pub(super) struct Answer {
    pub(super) status: u16,
    pub(super) headers: Vec<(rtsp_types::HeaderName, String)>,
    pub(super) content_type: Option<&'static str>,
    pub(super) body: Vec<u8>,
    /// `WWW-Authenticate` values, one header line each (rtsp-types would join them into one).
    pub(super) challenges: Vec<String>,
}

impl Answer {
    pub(super) fn ok() -> Answer {
        Answer {
            status: 200,
            headers: Vec::new(),
            content_type: None,
            body: Vec::new(),
            challenges: Vec::new(),
        }
    }

    /// An error: the status, and one line saying what to do, as a text body.
    pub(super) fn error(status: u16, message: &str) -> Answer {
        Answer {
            status,
            headers: Vec::new(),
            content_type: Some("text/plain; charset=utf-8"),
            body: format!("{message}\r\n").into_bytes(),
            challenges: Vec::new(),
        }
    }

    pub(super) fn header(mut self, name: rtsp_types::HeaderName, value: impl Into<String>) -> Answer {
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

    pub(super) async fn end(&self, id: &str, mut s: Session, why: &str) {
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

pub(super) fn no_session(id: &str) -> Answer {
    let shown: String = id.chars().take(40).filter(|c| !c.is_control()).collect();
    Answer::error(
        454,
        &format!(
            "no session {shown:?} on this connection (it ended, timed out, or never existed); SETUP again"
        ),
    )
}
