//! The one way a consumer of coded video (an RTSP session, a WebRTC viewer) opens a camera:
//!
//! 1. a [`Seat`] in its service's [`Seats`] (the limits in all and per client address), taken
//!    before anything is awaited, so that concurrent requests cannot all pass the check and then
//!    all be added; held for the session's life and given back when it is dropped;
//! 2. [`open`]: a hold on the camera's one connection, its codec and the rate of its clock
//!    (bounded waits), and where a new consumer starts: the kept group of pictures (a picture at
//!    once) and every unit after it, skipped to the next keyframe by [`KeyframeGate`] when the
//!    consumer falls behind.
//!
//! Client addresses are compared as IPs (`::ffff:a.b.c.d` is `a.b.c.d`), never as text.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::broadcast;

use crate::media::h264::Codec;
use crate::pump::{ConsumerKind, Subscription};
use crate::registry::Camera;
use crate::source::coded::units::{Start, Unit};

/// The client address sessions are counted by: an IPv4 client reaching an IPv6 socket is the
/// same client as over IPv4.
pub fn client_ip(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

/// Why a seat is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Every seat is taken (503 in both protocols).
    Busy(String),
    /// This client holds its share (RTSP: 453, WebRTC: 503).
    Client(String),
}

impl Refusal {
    pub fn message(&self) -> &str {
        match self {
            Refusal::Busy(m) | Refusal::Client(m) => m,
        }
    }
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    by_ip: HashMap<IpAddr, usize>,
}

/// The seats of one service: at most `max` in all and `per_client` per client address.
pub struct Seats {
    counts: Arc<Mutex<Counts>>,
    max: usize,
    per_client: usize,
    /// What is counted, for the messages: "RTSP sessions", "WebRTC sessions".
    what: &'static str,
    /// The config section the limits come from: "[rtsp]".
    section: &'static str,
}

/// One taken seat; given back on drop.
#[derive(Debug)]
pub struct Seat {
    counts: Arc<Mutex<Counts>>,
    ip: IpAddr,
}

impl Seats {
    pub fn new(max: usize, per_client: usize, what: &'static str, section: &'static str) -> Seats {
        Seats {
            counts: Arc::default(),
            max,
            per_client,
            what,
            section,
        }
    }

    /// A seat for a client at `ip`, or why not. Never waits.
    pub fn take(&self, ip: IpAddr) -> Result<Seat, Refusal> {
        let ip = client_ip(ip);
        let mut c = self.counts.lock().unwrap();
        if c.total >= self.max {
            return Err(Refusal::Busy(format!(
                "{} {} already ({} max_sessions); retry later",
                c.total, self.what, self.section
            )));
        }
        let mine = c.by_ip.get(&ip).copied().unwrap_or(0);
        if mine >= self.per_client {
            return Err(Refusal::Client(format!(
                "{mine} {} from {ip} already ({} max_sessions_per_client); close one",
                self.what, self.section
            )));
        }
        c.total += 1;
        *c.by_ip.entry(ip).or_insert(0) += 1;
        Ok(Seat {
            counts: self.counts.clone(),
            ip,
        })
    }
}

impl Drop for Seat {
    fn drop(&mut self) {
        let mut c = self.counts.lock().unwrap();
        c.total = c.total.saturating_sub(1);
        if let Some(n) = c.by_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                c.by_ip.remove(&self.ip);
            }
        }
    }
}

/// Why a camera's coded video cannot be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The camera sends pictures (MJPEG), not H.264/H.265.
    #[error("camera {0:?} does not send H.264 or H.265 (those play without transcoding); use its MJPEG stream /cameras/{0}/stream")]
    NotCoded(String),
    /// No keyframe (or no rate) within the wait: offline, or not H.264/H.265 after all.
    #[error("camera {0:?} sent no H.264/H.265 keyframe within {1:?} (offline, or not H.264/H.265: see /api/cameras)")]
    NoKeyframe(String, Duration),
    /// The camera sends pictures, and its H.264 encoder failed.
    #[error("camera {0:?} has no live H.264: {1} (its MJPEG stream /cameras/{0}/stream works)")]
    Encoder(String, String),
}

/// A consumer's hold on a camera's coded video: the camera stays connected (no decoder) and,
/// for a camera that sends pictures, its encoder runs while this lives.
pub struct Hold {
    _sub: Subscription,
    _encoding: Option<crate::source::coded::encoding::EncodeHold>,
}

impl Hold {
    /// Hold `cam` for a consumer of `kind`.
    pub fn new(cam: &Arc<Camera>, kind: ConsumerKind) -> Hold {
        Hold {
            _sub: cam.subscribe(kind),
            _encoding: crate::encode::hold(cam),
        }
    }
}

/// A camera opened for coded video.
pub struct Opened {
    pub hold: Hold,
    pub codec: Codec,
}

/// How long a camera may take to show its codec (its first keyframe, and the rate its clock
/// steps at) to a new consumer.
pub const OPEN_WAIT: Duration = Duration::from_secs(15);

/// Hold `cam` open for a coded-video consumer of `kind` and wait (at most `wait`) until its
/// coded video is ready: a keyframe with parameter sets, and the clock's step known (so the
/// first packet a client gets is already on the camera's steady rate).
pub async fn open(cam: &Arc<Camera>, kind: ConsumerKind, wait: Duration) -> Result<Opened, OpenError> {
    if cam.units().is_none() {
        return Err(OpenError::NotCoded(cam.id().to_string()));
    }
    open_held(cam, Hold::new(cam, kind), wait).await
}

/// [`open`] with a hold the consumer has already.
pub async fn open_held(cam: &Arc<Camera>, hold: Hold, wait: Duration) -> Result<Opened, OpenError> {
    let Some(mut feed) = cam.units() else {
        return Err(OpenError::NotCoded(cam.id().to_string()));
    };
    let mut ready = feed.watch_codec();
    let failed = || cam.encoding().and_then(|e| e.failed.lock().unwrap().clone());
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        // An HTTP camera with an encoder found to send H.264 itself is played as it sends it.
        if let Some(now) = cam.units().filter(|f| !std::ptr::eq(*f, feed)) {
            feed = now;
            ready = feed.watch_codec();
        }
        if let Some(codec) = *ready.borrow_and_update() {
            return Ok(Opened { hold, codec });
        }
        // An encoder that failed is said at once, not after the whole wait.
        if let Some(why) = failed() {
            return Err(OpenError::Encoder(cam.id().to_string(), why));
        }
        let tick = (tokio::time::Instant::now() + Duration::from_millis(200)).min(deadline);
        match tokio::time::timeout_at(tick, ready.changed()).await {
            Ok(Err(_)) => break,
            Err(_) if tick >= deadline => break,
            _ => {}
        }
    }
    match failed() {
        Some(why) => Err(OpenError::Encoder(cam.id().to_string(), why)),
        None => Err(OpenError::NoKeyframe(cam.id().to_string(), wait)),
    }
}

/// Where a consumer of `cam` starts now, and every unit after it (`None`: not a coded camera).
pub fn follow(cam: &Camera) -> Option<(Start, broadcast::Receiver<Arc<Unit>>)> {
    cam.units().map(|f| f.subscribe())
}

/// The one rule every coded-video consumer skips by: after falling behind (or before the first
/// keyframe) nothing is sent until a keyframe that carries its parameter sets, so a decoder
/// never gets a picture whose references it lacks.
#[derive(Debug)]
pub struct KeyframeGate {
    waiting: bool,
    skips: u64,
}

impl Default for KeyframeGate {
    fn default() -> Self {
        KeyframeGate {
            waiting: true,
            skips: 0,
        }
    }
}

impl KeyframeGate {
    /// Whether `unit` goes out.
    pub fn pass(&mut self, unit: &Unit) -> bool {
        if self.waiting && !(unit.au.keyframe && unit.au.sps.is_some()) {
            return false;
        }
        self.waiting = false;
        true
    }

    /// The consumer fell behind: wait for the next keyframe. Returns whether this is a new skip
    /// (it was not already waiting).
    pub fn behind(&mut self) -> bool {
        if self.waiting {
            return false;
        }
        self.waiting = true;
        self.skips += 1;
        true
    }

    /// Wait for the next keyframe without counting a skip (a start whose group was too long to
    /// keep whole: its keyframe is shown, the units after it are not there).
    pub fn wait(&mut self) {
        self.waiting = true;
    }

    /// Times the consumer fell behind.
    pub fn skips(&self) -> u64 {
        self.skips
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seats_are_counted_per_address_and_given_back() {
        let seats = Seats::new(3, 2, "RTSP sessions", "[rtsp]");
        let v4: IpAddr = "10.0.0.1".parse().unwrap();
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        let a = seats.take(v4).unwrap();
        let _b = seats.take(mapped).unwrap();
        let e = seats.take(v4).unwrap_err();
        assert!(
            matches!(&e, Refusal::Client(m) if m.contains("10.0.0.1") && m.contains("max_sessions_per_client")),
            "{e:?}"
        );
        let v6: IpAddr = "::1".parse().unwrap();
        let _c = seats.take(v6).unwrap();
        assert!(matches!(seats.take(v6), Err(Refusal::Busy(_))));
        drop(a);
        // Given back: one seat free again, for anyone.
        let _d = seats.take(v6).unwrap();
        assert!(matches!(seats.take(v4), Err(Refusal::Busy(_))));
    }

    #[test]
    fn the_gate_waits_for_a_keyframe_with_parameter_sets() {
        use crate::media::h264::AccessUnit;
        use bytes::Bytes;
        let unit = |key: bool, sps: bool| Unit {
            codec: Codec::H264,
            au: AccessUnit {
                data: Bytes::from_static(&[0, 0, 0, 1, 0x65]),
                keyframe: key,
                sps: sps.then(|| Bytes::from_static(&[0, 0, 0, 1, 0x67])),
            },
            pts: 0,
            seq: 0,
        };
        let mut g = KeyframeGate::default();
        assert!(!g.pass(&unit(false, false)));
        assert!(!g.pass(&unit(true, false)));
        assert!(g.pass(&unit(true, true)));
        assert!(g.pass(&unit(false, false)));
        assert!(g.behind());
        assert!(!g.behind(), "one skip until the next keyframe");
        assert!(!g.pass(&unit(false, false)));
        assert!(g.pass(&unit(true, true)));
        assert_eq!(g.skips(), 1);
    }
}
