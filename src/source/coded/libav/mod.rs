//! The shared decoder: one helper process (`farmcam decode-helper`, [`helper`]) decodes the
//! H.264/H.265 video of every camera that needs pictures, with libavcodec ([`avcodec`]) loaded
//! once, one thread and one decoder per camera; [`wire`] is what they say on the pipes. This
//! module is farmcam's side: a [`SharedDecoder`], made by the daemon and handed to every camera,
//! starts the helper when the first camera needs it, gives each camera a [`Session`], and stops
//! the helper [`LINGER`] after the last session ends. It is an owned handle, not a
//! process-wide value: two daemons in one process (tests) have a helper each.
//!
//! A camera's decoder costs a thread and a decoder context in the helper instead of a process
//! that loads all of ffmpeg's 200 libraries (BENCHMARKS.md). If the helper dies (a crash in
//! libavcodec on a hostile stream, a kill), every session ends as a decoder child's would, and
//! the cameras that still need pictures start a new helper; farmcam itself is untouched. A
//! helper that stops answering (stopped, or a camera's decoder caught in an endless loop) is
//! found within [`STUCK`] and replaced the same way; a camera whose decoder alone hung, or that
//! was being decoded at [`STRIKES`] helper deaths in a row, moves to a decoder child of its own.

mod avcodec;
mod encoder;
pub mod helper;
mod wire;

pub use encoder::{EncodeSession, Encoded};
pub use wire::{bitrate_for, EncodeSettings};

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, AtomicU8, Ordering::Relaxed};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::picture::{planes_len, Picture, FEED_BYTES, FEED_QUEUE};
use super::units::GROUP_MAX_UNITS;
use crate::frame::Size;
use crate::source::process::child::{self, Chatter};
use crate::source::process::Invocation;
use crate::util::log_limit::LogLimit;

/// The helper stays this long after its last session ended (a camera's decoder stops and
/// starts again as demand comes and goes).
pub const LINGER: Duration = Duration::from_secs(10);
/// What the helper's messages are logged as.
const NAME: &str = "decoder helper";
/// A decoder that has units in flight and answers none of them this long is stuck.
pub const STUCK: Duration = Duration::from_secs(5);
/// A helper that has not answered anything yet (loading libavcodec on a loaded box) is given
/// this long instead.
pub const STARTUP: Duration = Duration::from_secs(15);
/// Helper deaths while a camera's units were in flight after which that camera decodes with a
/// decoder child of its own (a stream that crashes libavcodec crashes it each time it is fed).
pub const STRIKES: usize = 3;

/// What a session hears from the helper.
enum Event {
    Picture(Picture),
    /// A unit of this many bytes was decoded.
    Done(usize),
    /// The slot's decoder could not decode this stream.
    Refused(String),
    /// An encoder slot's encoder opened (its name).
    Opened(String),
    /// A coded picture from an encoder slot.
    Packet {
        data: Bytes,
        keyframe: bool,
    },
    /// The slot closed after its input ended, or the helper ended (`suspect`: with units of this
    /// slot in flight, so this camera's stream may be what ended it).
    Ended {
        why: String,
        suspect: bool,
    },
}

/// A session as the helper's side sees it.
struct Slot {
    events: mpsc::UnboundedSender<Event>,
    /// Units sent and not yet answered.
    pending: usize,
    /// When it last had nothing pending, or last got an answer.
    since: Instant,
}

struct Helper {
    /// Whose helper this is (it forgets it when it ends).
    owner: Weak<SharedDecoder>,
    /// Messages to the helper's stdin (header and payload).
    to_helper: mpsc::UnboundedSender<([u8; wire::HEADER], Bytes)>,
    sessions: Mutex<HashMap<u32, Slot>>,
    next_slot: AtomicU32,
    /// Why the helper ended, once it did.
    exit: Mutex<Option<String>>,
    /// When the helper last said anything.
    heard: Mutex<Instant>,
    /// Whether it said anything yet.
    answered: std::sync::atomic::AtomicBool,
    /// Cancelled when it is found stuck: it is killed and replaced.
    stuck: CancellationToken,
    /// Why it was found stuck.
    stuck_why: Mutex<Option<String>>,
}

/// The shared decoder of one daemon: the program that runs `decode-helper` (farmcam's own
/// binary) and the helper running now, if any.
pub struct SharedDecoder {
    /// `None`: no helper here (a program embedding the library); cameras decode with ffmpeg.
    program: Option<PathBuf>,
    current: Mutex<Option<Arc<Helper>>>,
}

impl SharedDecoder {
    /// Decoding through `program decode-helper` (`None`: never; ffmpeg decoder children).
    pub fn new(program: Option<PathBuf>) -> Arc<SharedDecoder> {
        Arc::new(SharedDecoder {
            program,
            current: Mutex::new(None),
        })
    }

    /// The helper this program is, if it can tell where it is.
    pub fn this_program() -> Arc<SharedDecoder> {
        Self::new(std::env::current_exe().ok())
    }

    /// A decoder for one camera's stream in the helper (started if none runs).
    pub fn open(self: &Arc<Self>, hevc: bool) -> Result<Session, String> {
        Session::open(self, hevc)
    }

    /// The running helper, or a new one.
    fn helper(self: &Arc<Self>) -> Result<Arc<Helper>, String> {
        let mut current = lock(&self.current);
        if let Some(h) = current.as_ref() {
            if lock(&h.exit).is_none() {
                return Ok(h.clone());
            }
        }
        let program = self
            .program
            .as_ref()
            .ok_or("the shared decoder is not available in this program")?;
        let h = Helper::start(program, Arc::downgrade(self))?;
        *current = Some(h.clone());
        Ok(h)
    }

    /// Forget `h` if it is the running helper.
    fn forget(&self, h: &Arc<Helper>) {
        let mut current = lock(&self.current);
        if current.as_ref().is_some_and(|c| Arc::ptr_eq(c, h)) {
            *current = None;
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Helper {
    fn send(&self, slot: u32, kind: u8, payload: Bytes) -> bool {
        if matches!(
            kind,
            wire::UNIT | wire::QUIET_UNIT | wire::ALONE | wire::JPEG_PICTURE | wire::RAW_PICTURE
        ) {
            if let Some(s) = lock(&self.sessions).get_mut(&slot) {
                if s.pending == 0 {
                    s.since = Instant::now();
                }
                s.pending += 1;
            }
        }
        let h = wire::header(slot, kind, payload.len());
        self.to_helper.send((h, payload)).is_ok()
    }

    /// Whether the helper is stuck: a session has had units in flight and no answer for
    /// [`STUCK`]. If others were answered meanwhile, only those sessions' decoders hung: they
    /// are refused (their cameras decode with ffmpeg) and the helper is replaced for the rest;
    /// if the helper said nothing at all, it is replaced for everyone.
    fn check_stuck(&self) -> bool {
        let now = Instant::now();
        let limit = if self.answered.load(Relaxed) {
            STUCK
        } else {
            STARTUP
        };
        let mut sessions = lock(&self.sessions);
        let stuck: Vec<u32> = sessions
            .iter()
            .filter(|(_, s)| s.pending > 0 && now.duration_since(s.since) > limit)
            .map(|(slot, _)| *slot)
            .collect();
        if stuck.is_empty() {
            return false;
        }
        let others_answered = self.answered.load(Relaxed) && now.duration_since(*lock(&self.heard)) < STUCK;
        let why = if others_answered {
            for slot in &stuck {
                if let Some(s) = sessions.remove(slot) {
                    let _ = s.events.send(Event::Refused(format!(
                        "its decoder in the {NAME} answered nothing for {STUCK:?} (a stream that hangs libavcodec)"
                    )));
                }
            }
            format!("a camera's decoder hung in it for {STUCK:?}")
        } else {
            format!("it answered nothing for {limit:?}")
        };
        drop(sessions);
        warn!("{NAME}: {why}: replacing it (the cameras keep their connections)");
        *lock(&self.stuck_why) = Some(format!("the {NAME} was replaced: {why}"));
        self.stuck.cancel();
        true
    }

    fn start(program: &std::path::Path, owner: Weak<SharedDecoder>) -> Result<Arc<Helper>, String> {
        let run = Invocation {
            args: vec!["decode-helper".to_string()],
            script: None,
        };
        let chatter = Chatter {
            camera: NAME.to_string(),
            secrets: Arc::new(Vec::new()),
            log: Arc::new(Mutex::new(LogLimit::new())),
            codec: Arc::new(AtomicU8::new(0)),
        };
        let mut ff = child::spawn(program, &run, &chatter, true, None, NAME)?;
        let mut stdin = ff.stdin.take().ok_or("the decoder helper has no stdin")?;
        let stdout = ff.stdout.take().ok_or("the decoder helper has no stdout")?;
        let (to_helper, mut queue) = mpsc::unbounded_channel::<([u8; wire::HEADER], Bytes)>();
        let helper = Arc::new(Helper {
            owner,
            to_helper,
            sessions: Mutex::new(HashMap::new()),
            next_slot: AtomicU32::new(0),
            exit: Mutex::new(None),
            heard: Mutex::new(Instant::now()),
            answered: std::sync::atomic::AtomicBool::new(false),
            stuck: CancellationToken::new(),
            stuck_why: Mutex::new(None),
        });
        tokio::spawn(async move {
            while let Some((h, payload)) = queue.recv().await {
                if stdin.write_all(&h).await.is_err() || stdin.write_all(&payload).await.is_err() {
                    break;
                }
            }
            // Dropping stdin: the helper exits.
        });
        let weak = Arc::downgrade(&helper);
        let stuck = helper.stuck.clone();
        tokio::spawn(async move {
            let mut r = BufReader::with_capacity(1 << 20, stdout);
            let broken = loop {
                let got = tokio::select! {
                    _ = stuck.cancelled() => break None,
                    got = read(&mut r) => got,
                };
                match got {
                    Ok(Some((slot, kind, payload))) => {
                        let Some(h) = weak.upgrade() else { break None };
                        h.dispatch(slot, kind, payload);
                    }
                    Ok(None) => break None,
                    Err(e) => break Some(e.to_string()),
                }
            };
            drop(r);
            let replaced = weak.upgrade().and_then(|h| lock(&h.stuck_why).clone());
            let why = match replaced {
                Some(why) => why,
                None => {
                    let why = ff.exit_reason().await;
                    match broken {
                        Some(b) => format!("{why} (its output was broken: {b})"),
                        None => why,
                    }
                }
            };
            ff.stop().await;
            debug!("{why}");
            if let Some(h) = weak.upgrade() {
                *lock(&h.exit) = Some(why.clone());
                // Every session ends: their cameras start a new helper when they need one.
                for (_, s) in lock(&h.sessions).drain() {
                    let _ = s.events.send(Event::Ended {
                        why: why.clone(),
                        suspect: s.pending > 0,
                    });
                }
                if let Some(owner) = h.owner.upgrade() {
                    owner.forget(&h);
                }
            }
        });
        // Its watchdog: a helper that stops answering is replaced.
        let weak = Arc::downgrade(&helper);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let Some(h) = weak.upgrade() else { return };
                if lock(&h.exit).is_some() || h.check_stuck() {
                    return;
                }
            }
        });
        debug!("{NAME} started");
        Ok(helper)
    }

    fn dispatch(&self, slot: u32, kind: u8, payload: Vec<u8>) {
        let now = Instant::now();
        *lock(&self.heard) = now;
        self.answered.store(true, Relaxed);
        let mut sessions = lock(&self.sessions);
        let Some(s) = sessions.get_mut(&slot) else { return };
        let event = match kind {
            wire::PICTURE if payload.len() >= 8 => {
                let w = u32::from_le_bytes([payload[0], payload[1], payload[2], payload[3]]);
                let h = u32::from_le_bytes([payload[4], payload[5], payload[6], payload[7]]);
                let size = Size { width: w, height: h };
                let (y, c) = planes_len(size);
                if payload.len() != 8 + y + 2 * c {
                    return;
                }
                Event::Picture(Picture {
                    planes: Bytes::from(payload).slice(8..),
                    size,
                })
            }
            wire::DONE if payload.len() == 4 => {
                s.pending = s.pending.saturating_sub(1);
                s.since = now;
                Event::Done(u32::from_le_bytes([payload[0], payload[1], payload[2], payload[3]]) as usize)
            }
            wire::PACKET if !payload.is_empty() => Event::Packet {
                keyframe: payload[0] & wire::KEYFRAME != 0,
                data: Bytes::from(payload).slice(1..),
            },
            wire::OPENED => Event::Opened(String::from_utf8_lossy(&payload).into_owned()),
            wire::FAILED => Event::Refused(format!(
                "the {NAME} failed: {}",
                String::from_utf8_lossy(&payload)
            )),
            wire::CLOSED => Event::Ended {
                why: "the decoder's input ended".into(),
                suspect: false,
            },
            _ => return,
        };
        let _ = s.events.send(event);
    }
}

/// One message from the helper: `None` at its end.
async fn read(r: &mut (impl AsyncReadExt + Unpin)) -> std::io::Result<Option<(u32, u8, Vec<u8>)>> {
    let mut h = [0u8; wire::HEADER];
    match r.read_exact(&mut h).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let (slot, kind, len) = wire::parse(&h);
    if len > wire::MAX_PAYLOAD {
        return Err(std::io::Error::other(format!("a {len}-byte message")));
    }
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload).await?;
    Ok(Some((slot, kind, payload)))
}

/// One camera's decoder in the helper: the interface of the decoder child.
pub struct Session {
    helper: Arc<Helper>,
    slot: u32,
    events: mpsc::UnboundedReceiver<Event>,
    /// Units and bytes sent and not yet decoded.
    in_flight: (usize, usize),
    /// Input ended (CLOSE sent).
    finished: bool,
    ended: Option<String>,
    /// The helper could not decode this camera's stream (not that it died).
    refused: bool,
    /// The helper died (or hung) with this camera's units in flight.
    suspect: bool,
}

impl Session {
    fn open(shared: &Arc<SharedDecoder>, hevc: bool) -> Result<Session, String> {
        let helper = shared.helper()?;
        let payload = Bytes::from_static(if hevc { &[1] } else { &[0] });
        let (slot, events) = helper.attach(wire::OPEN, payload)?;
        Ok(Session {
            helper,
            slot,
            events,
            in_flight: (0, 0),
            finished: false,
            ended: None,
            refused: false,
            suspect: false,
        })
    }

    /// Queue access units; of a replay (`last_only`) only the last one's picture comes back.
    /// False when the decoder is behind (nothing was queued).
    pub fn feed(&mut self, units: &[Bytes], last_only: bool) -> bool {
        let n = units.len();
        self.queue(units, |i| {
            if last_only && i + 1 < n {
                wire::QUIET_UNIT
            } else {
                wire::UNIT
            }
        })
    }

    /// Queue a keyframe that carries its parameter sets, for a camera decoded keyframes only:
    /// the helper decodes it with any spare decoder and keeps none for this camera. False when
    /// the decoder is behind.
    pub fn feed_alone(&mut self, unit: &Bytes) -> bool {
        self.queue(std::slice::from_ref(unit), |_| wire::ALONE)
    }

    /// Send `units`, the `i`th as message `kind(i)`, unless the decoder is behind.
    fn queue(&mut self, units: &[Bytes], kind: impl Fn(usize) -> u8) -> bool {
        let bytes: usize = units.iter().map(Bytes::len).sum();
        let (n, b) = self.in_flight;
        // A unit is a message here, not a part of one write as for a decoder child: a replay of
        // the whole kept group fits besides the usual queue (the bytes bound the memory).
        let max_units = FEED_QUEUE + GROUP_MAX_UNITS;
        if self.finished || n + units.len() > max_units || (b > 0 && b + bytes > FEED_BYTES) {
            return false;
        }
        for (i, u) in units.iter().enumerate() {
            if !self.helper.send(self.slot, kind(i), u.clone()) {
                return false;
            }
        }
        self.in_flight = (n + units.len(), b + bytes);
        true
    }

    /// No more input: the pictures it holds come out, then the session ends.
    pub fn finish(&mut self) {
        if !self.finished {
            self.finished = true;
            self.helper.send(self.slot, wire::CLOSE, Bytes::new());
        }
    }

    /// The next picture; `None` once the session ended (see [`Self::exit_reason`]).
    pub async fn next(&mut self) -> Option<Picture> {
        loop {
            if self.ended.is_some() {
                return None;
            }
            match self.events.recv().await {
                Some(Event::Picture(p)) => return Some(p),
                Some(Event::Done(len)) => {
                    self.in_flight.0 = self.in_flight.0.saturating_sub(1);
                    self.in_flight.1 = self.in_flight.1.saturating_sub(len);
                }
                Some(Event::Ended { why, suspect }) => {
                    self.suspect = suspect;
                    self.ended = Some(why);
                }
                Some(Event::Refused(why)) => {
                    self.refused = true;
                    self.ended = Some(why);
                }
                Some(Event::Opened(_) | Event::Packet { .. }) => {}
                None => self.ended = Some(format!("the {NAME} ended")),
            }
        }
    }

    /// Whether the helper could not decode this stream (rather than died or was closed).
    pub fn refused(&self) -> bool {
        self.refused
    }

    /// Whether the helper died or hung while this camera's units were in flight.
    pub fn suspect(&self) -> bool {
        self.suspect
    }

    pub fn exit_reason(&self) -> String {
        self.ended.clone().unwrap_or_else(|| format!("the {NAME} ended"))
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.finish();
        self.helper.detach(self.slot);
    }
}

impl Helper {
    /// A new slot in this helper, opened by a `kind` message (a decoder or an encoder), and
    /// what the helper says of it.
    fn attach(&self, kind: u8, payload: Bytes) -> Result<(u32, mpsc::UnboundedReceiver<Event>), String> {
        let slot = self.next_slot.fetch_add(1, Relaxed);
        let (tx, events) = mpsc::unbounded_channel();
        lock(&self.sessions).insert(
            slot,
            Slot {
                events: tx,
                pending: 0,
                since: Instant::now(),
            },
        );
        if !self.send(slot, kind, payload) {
            lock(&self.sessions).remove(&slot);
            return Err(format!("the {NAME} is not running"));
        }
        Ok((slot, events))
    }

    /// A slot is done with (its CLOSE sent). After the last one the helper goes, [`LINGER`]
    /// later, unless a camera needs it again.
    fn detach(self: &Arc<Self>, slot: u32) {
        let empty = {
            let mut sessions = lock(&self.sessions);
            sessions.remove(&slot);
            sessions.is_empty()
        };
        if !empty {
            return;
        }
        let helper = Arc::downgrade(self);
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                tokio::time::sleep(LINGER).await;
                let Some(h) = helper.upgrade() else { return };
                let Some(owner) = h.owner.upgrade() else { return };
                let mut current = lock(&owner.current);
                let idle =
                    lock(&h.sessions).is_empty() && current.as_ref().is_some_and(|c| Arc::ptr_eq(c, &h));
                if idle {
                    // Its stdin closes with the last reference: it exits, and is reaped.
                    *current = None;
                    debug!("{NAME}: no camera needs it; stopping it");
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A "helper" that takes its input and never answers, as a stopped or hung one.
    fn silent_helper(dir: &std::path::Path) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let p = dir.join("silent-helper");
        std::fs::write(&p, "#!/bin/sh\nexec sleep 600\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_helper_that_answers_nothing_is_replaced_and_the_camera_fed_is_a_suspect() {
        let dir = tempfile::tempdir().unwrap();
        let shared = SharedDecoder::new(Some(silent_helper(dir.path())));
        let mut fed = shared.open(false).unwrap();
        let mut idle = shared.open(false).unwrap();
        assert!(fed.feed(&[Bytes::from_static(&[0, 0, 0, 1, 0x65, 0x88])], false));
        // It never answered: the startup allowance applies.
        let ended = tokio::time::timeout(STARTUP * 2, fed.next()).await;
        assert!(matches!(ended, Ok(None)), "the session ends");
        assert!(
            fed.exit_reason().contains("answered nothing"),
            "{}",
            fed.exit_reason()
        );
        assert!(fed.suspect() && !fed.refused());
        // The other session ends too, not suspected: nothing of it was in flight.
        assert!(tokio::time::timeout(STUCK, idle.next())
            .await
            .is_ok_and(|p| p.is_none()));
        assert!(!idle.suspect());
        // The next camera that needs a decoder gets a new helper.
        let old = lock(&fed.helper.exit).clone();
        assert!(old.is_some());
        let again = shared.open(false).unwrap();
        assert!(!Arc::ptr_eq(&again.helper, &fed.helper));
    }

    /// A "helper" that answers slot 0's units and never slot 1's: one camera's decoder hung
    /// (an endless loop in libavcodec), the others fine.
    fn one_slot_hangs(dir: &std::path::Path) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let p = dir.join("one-slot-hangs");
        std::fs::write(
            &p,
            "#!/usr/bin/python3\nimport struct, sys\n\
             i, o = sys.stdin.buffer, sys.stdout.buffer\n\
             while True:\n    h = i.read(9)\n    if len(h) < 9: break\n\
             \x20   slot, kind, n = struct.unpack('<IBI', h)\n    i.read(n)\n\
             \x20   if kind in (2, 3) and slot == 0:\n\
             \x20       o.write(struct.pack('<IBI', slot, 6, 4) + struct.pack('<I', n)); o.flush()\n",
        )
        .unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_camera_whose_decoder_alone_hangs_is_refused_and_the_others_go_on() {
        let dir = tempfile::tempdir().unwrap();
        let shared = SharedDecoder::new(Some(one_slot_hangs(dir.path())));
        let mut fine = shared.open(false).unwrap();
        let mut hung = shared.open(false).unwrap();
        let unit = || [Bytes::from_static(&[0, 0, 0, 1, 0x65, 0x88])];
        assert!(hung.feed(&unit(), false));
        let deadline = tokio::time::Instant::now() + STARTUP * 2;
        loop {
            // The other camera's units are answered all along.
            fine.feed(&unit(), false);
            tokio::select! {
                ended = hung.next() => {
                    assert!(ended.is_none());
                    break;
                }
                _ = fine.next() => panic!("the fine camera's session ended first: {}", fine.exit_reason()),
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the hung decoder was never found"
            );
        }
        assert!(
            hung.refused(),
            "its camera decodes with ffmpeg from now on: {}",
            hung.exit_reason()
        );
        assert!(
            hung.exit_reason().contains("hangs libavcodec"),
            "{}",
            hung.exit_reason()
        );
        // The helper is replaced for the others: their session ends, not refused.
        let _ = tokio::time::timeout(STUCK * 2, fine.next()).await;
        assert!(!fine.refused(), "{}", fine.exit_reason());
    }

    #[test]
    fn without_a_program_cameras_are_told_to_use_ffmpeg() {
        let shared = SharedDecoder::new(None);
        let e = shared.open(true).err().unwrap();
        assert!(e.contains("not available"), "{e}");
    }
}
