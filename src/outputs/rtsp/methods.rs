//! What one RTSP connection answers to each method (`DESCRIBE`, `SETUP` with its transport
//! negotiation, `PLAY`, `PAUSE`, `TEARDOWN`) and the URLs it reads and gives; the connection
//! itself (reading, writing, timers, limits) is [`super::conn`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use rtsp_types::headers::{self, RtpLowerTransport, RtpProfile, Transport, Transports};
use rtsp_types::{Request, Url};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use super::conn::{no_session, refusal_status, Answer, Conn, Described, Session};
use super::play::{self, Counters, Sink};
use super::rtp::Packetizer;
use super::{sdp, SessionStatus, Verdict};
use crate::live;
use crate::pump::ConsumerKind;

/// The camera id and whether the URL names the track (`/<camera>` or `/<camera>/trackID=0`),
/// and the URL's `?token=`.
pub(super) fn target(url: Option<&Url>) -> Option<(String, Option<String>)> {
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
    pub(super) async fn describe(&mut self, req: &Request<Vec<u8>>) -> Answer {
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

    pub(super) fn setup(&mut self, req: &Request<Vec<u8>>, session: Option<&str>) -> Answer {
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
                Ok(seat) => (live::Hold::new(&cam, ConsumerKind::Rtsp), seat),
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

    pub(super) async fn play(&mut self, session: Option<&str>) -> Answer {
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
    pub(super) fn start_player(&mut self, id: &str) {
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

    pub(super) async fn pause(&mut self, session: Option<&str>) -> Answer {
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

    pub(super) async fn teardown(&mut self, session: Option<&str>) -> Answer {
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
