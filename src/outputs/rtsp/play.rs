//! One RTSP session's media: from the camera's latest keyframe with its parameter sets (a
//! picture at once), then every unit the camera yields. A client that falls behind (its TCP
//! connection backs up, or the broadcast overtakes it) skips to the next keyframe, alone.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use bytes::Bytes;
use tokio::net::UdpSocket;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use super::rtp::Packetizer;
use crate::live::KeyframeGate;
use crate::registry::Camera;
use crate::source::coded::units::{Start, Unit};

/// What a session sent: shown in its status.
#[derive(Debug, Default)]
pub struct Counters {
    pub bytes: AtomicU64,
    /// Times it fell behind and skipped to the next keyframe.
    pub skips: AtomicU64,
}

/// Where a session's packets go.
#[derive(Clone)]
pub enum Sink {
    /// Interleaved in the RTSP connection on this channel (RFC 2326 §10.12); the connection's
    /// writer takes whole units, and a full queue means the client is behind.
    Tcp { channel: u8, out: mpsc::Sender<Bytes> },
    /// To the client's RTP port from the shared server socket; a full socket buffer drops the
    /// packet, as the network would.
    Udp { socket: Arc<UdpSocket>, to: SocketAddr },
}

/// Why a session's media stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// `stop` (PAUSE, TEARDOWN, the connection ends), or the camera's feed closed.
    Stopped,
    /// The connection's writer is gone.
    Gone,
    /// The camera came back with another codec than the session announced: its packets would
    /// be wrong under this session's packetizer, so the session ends.
    CodecChanged,
}

/// Send `start` and then the feed until `stop` (PAUSE, TEARDOWN, the connection ends) or the
/// connection's writer is gone; hands the packetizer back so that sequence numbers continue.
/// The first units are timed at the camera's steady rate (see `Start::steady_pts`).
pub async fn run(
    cam: Arc<Camera>,
    start: Start,
    mut rx: broadcast::Receiver<Arc<Unit>>,
    mut rtp: Packetizer,
    sink: Sink,
    counters: Arc<Counters>,
    stop: CancellationToken,
) -> (Packetizer, Ended) {
    let rate = cam.units().and_then(|f| f.rate());
    let mut sender = Sender {
        cam,
        sink,
        counters,
        gate: KeyframeGate::default(),
    };
    for (u, pts) in start.units.iter().zip(start.steady_pts(rate)) {
        if let Err(why) = sender.send(&mut rtp, u, pts) {
            return (rtp, why);
        }
    }
    if !start.complete {
        sender.gate.wait();
    }
    loop {
        let unit = tokio::select! {
            _ = stop.cancelled() => return (rtp, Ended::Stopped),
            r = rx.recv() => match r {
                Ok(u) => u,
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    sender.behind();
                    continue;
                }
                Err(broadcast::error::RecvError::Closed) => return (rtp, Ended::Stopped),
            },
        };
        if let Err(why) = sender.send(&mut rtp, &unit, unit.pts) {
            return (rtp, why);
        }
    }
}

struct Sender {
    cam: Arc<Camera>,
    sink: Sink,
    counters: Arc<Counters>,
    gate: KeyframeGate,
}

impl Sender {
    /// Behind: what is queued goes on, then nothing until the next keyframe.
    fn behind(&mut self) {
        if self.gate.behind() {
            self.counters.skips.fetch_add(1, Relaxed);
        }
    }

    /// One unit at `pts`; an error ends the session.
    fn send(&mut self, rtp: &mut Packetizer, u: &Unit, pts: u64) -> Result<(), Ended> {
        if u.codec != rtp.codec() {
            return Err(Ended::CodecChanged);
        }
        if !self.gate.pass(u) {
            return Ok(());
        }
        let mut sent = 0u64;
        match &self.sink {
            Sink::Tcp { channel, out } => {
                // Per packet of up to 1200 payload bytes: 12 of RTP header, 4 of interleaving.
                let mut buf = Vec::with_capacity(u.au.data.len() + u.au.data.len() / 64 + 64);
                rtp.packetize(&u.au.data, pts, &mut |p| {
                    buf.push(b'$');
                    buf.push(*channel);
                    buf.extend_from_slice(&(p.len() as u16).to_be_bytes());
                    buf.extend_from_slice(p);
                });
                let n = buf.len() as u64;
                match out.try_send(Bytes::from(buf)) {
                    Ok(()) => sent = n,
                    Err(mpsc::error::TrySendError::Full(_)) => self.behind(),
                    Err(mpsc::error::TrySendError::Closed(_)) => return Err(Ended::Gone),
                }
            }
            Sink::Udp { socket, to } => {
                rtp.packetize(&u.au.data, pts, &mut |p| {
                    if socket.try_send_to(p, *to).is_ok() {
                        sent += p.len() as u64;
                    }
                });
            }
        }
        self.counters.bytes.fetch_add(sent, Relaxed);
        self.cam.shared().rtsp_bytes_sent.fetch_add(sent, Relaxed);
        Ok(())
    }
}
