//! `farmcam decode-helper`: the process that decodes every H.264/H.265 camera of one farmcam
//! with libavcodec, one thread and one decoder per camera (slot). It reads [`super::wire`]
//! messages on stdin and writes pictures on stdout, exits when stdin closes, and holds nothing
//! else: if a hostile stream crashes libavcodec, this process dies, not farmcam, which starts a
//! new one for the cameras that still need pictures.

use std::collections::HashMap;
use std::io::{self, Write};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use super::avcodec::{AvDecoder, Decoded, Libav};
use super::wire::{self, Message};

/// A slot's thread: libavcodec's decoder needs more stack than Rust's 2 MiB default leaves
/// spare on some builds.
const STACK: usize = 4 << 20;

type Out = Arc<Mutex<io::Stdout>>;

/// Write a message, or end the process when farmcam is gone.
fn send(out: &Out, slot: u32, kind: u8, parts: &[&[u8]]) {
    let mut o = out.lock().unwrap_or_else(|e| e.into_inner());
    if wire::write(&mut *o, slot, kind, parts).is_err() {
        std::process::exit(0);
    }
}

fn send_pictures(out: &Out, slot: u32, pictures: &mut Vec<Decoded>) {
    for p in pictures.drain(..) {
        let (w, h) = (p.width.to_le_bytes(), p.height.to_le_bytes());
        send(out, slot, wire::PICTURE, &[&w, &h, &p.planes]);
    }
}

/// The decoders no slot holds, by codec (H.264, H.265). A camera decoded keyframes only needs
/// no decoder between its keyframes: each keyframe (with its parameter sets) is decoded by a
/// spare one, which forgets the stream afterwards. Twenty such cameras share one or two decoders
/// and their picture buffers instead of a context each. A decoder that hangs is never given
/// back: the other slots open another.
struct Spares {
    av: &'static Libav,
    idle: Mutex<[Vec<AvDecoder<'static>>; 2]>,
}

/// Spare decoders kept per codec: more than two decode at once only on a busier box than a Pi.
const SPARES_KEPT: usize = 2;

impl Spares {
    fn take(&self, hevc: bool) -> Result<AvDecoder<'static>, String> {
        let spare = self.idle.lock().unwrap_or_else(|e| e.into_inner())[hevc as usize].pop();
        match spare {
            Some(d) => Ok(d),
            None => AvDecoder::open(self.av, hevc),
        }
    }

    fn give(&self, hevc: bool, d: AvDecoder<'static>) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle[hevc as usize].len() < SPARES_KEPT {
            idle[hevc as usize].push(d);
        } else {
            drop(idle);
            dropped(d);
        }
    }
}

/// Free a decoder and give its memory back to the system: a decoder's picture buffers are
/// megabytes, which malloc would otherwise keep in the arena for the next one.
fn dropped(d: AvDecoder<'_>) {
    drop(d);
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases free memory.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// One camera's decoder: opened with the slot (so a camera whose codec this libavcodec lacks is
/// told at once), closed by CLOSE (after a flush) or when farmcam hangs up. While farmcam sends
/// ALONE keyframes the slot holds no decoder and borrows a spare one per keyframe; a UNIT opens
/// its own again (a viewer wants every picture: farmcam replays from the keyframe).
fn slot(spares: Arc<Spares>, out: Out, slot: u32, hevc: bool, rx: mpsc::Receiver<Message>) {
    let mut own = match AvDecoder::open(spares.av, hevc) {
        Ok(d) => Some(d),
        Err(e) => return send(&out, slot, wire::FAILED, &[e.as_bytes()]),
    };
    let mut pictures = Vec::new();
    while let Ok(m) = rx.recv() {
        let decoded = match m.kind {
            wire::ALONE => {
                // Its own decoder's last pictures first: each unit sent gives its picture.
                let flushed = match own.take() {
                    Some(mut d) => {
                        let flushed = d.decode(None, &mut pictures);
                        dropped(d);
                        flushed
                    }
                    None => Ok(()),
                };
                flushed.and_then(|()| {
                    let mut d = spares.take(hevc)?;
                    d.decode_alone(&m.payload, &mut pictures)?;
                    spares.give(hevc, d);
                    Ok(())
                })
            }
            _ => {
                let unit = match m.kind {
                    wire::UNIT | wire::QUIET_UNIT => Some(&m.payload[..]),
                    _ => None,
                };
                let d = match own.as_mut() {
                    Some(d) => Ok(d),
                    None => AvDecoder::open(spares.av, hevc).map(|d| own.insert(d)),
                };
                d.and_then(|d| d.decode(unit, &mut pictures))
            }
        };
        if let Err(e) = decoded {
            return send(&out, slot, wire::FAILED, &[e.as_bytes()]);
        }
        if m.kind == wire::QUIET_UNIT {
            pictures.clear();
        }
        send_pictures(&out, slot, &mut pictures);
        match m.kind {
            wire::CLOSE => return send(&out, slot, wire::CLOSED, &[]),
            _ => send(&out, slot, wire::DONE, &[&(m.payload.len() as u32).to_le_bytes()]),
        }
    }
}

/// Run the helper until stdin closes. Returns the exit status.
pub fn run() -> i32 {
    // Without libavcodec every camera is told why when it opens, and decodes with ffmpeg.
    // One malloc arena per two slot threads at most, not one per thread: a thread's freed
    // picture buffers are reused by the others instead of staying in its own arena.
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt is called before any other thread starts.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
    let spares: Result<Arc<Spares>, String> = Libav::load().map(|av| {
        Arc::new(Spares {
            av: Box::leak(Box::new(av)),
            idle: Mutex::new([Vec::new(), Vec::new()]),
        })
    });
    let out: Out = Arc::new(Mutex::new(io::stdout()));
    let mut slots: HashMap<u32, mpsc::Sender<Message>> = HashMap::new();
    let mut stdin = io::stdin().lock();
    loop {
        let m = match wire::read(&mut stdin) {
            Ok(Some(m)) => m,
            Ok(None) => break,
            Err(e) => {
                eprintln!("error: farmcam's messages are broken: {e}");
                return 1;
            }
        };
        let id = m.slot;
        if m.kind == wire::OPEN {
            let spares = match &spares {
                Ok(spares) => spares.clone(),
                Err(e) => {
                    send(&out, id, wire::FAILED, &[e.as_bytes()]);
                    continue;
                }
            };
            let (tx, rx) = mpsc::channel();
            let hevc = m.payload.first() == Some(&1);
            let slot_out = out.clone();
            let started = std::thread::Builder::new()
                .name(format!("slot {id}"))
                .stack_size(STACK)
                .spawn(move || slot(spares, slot_out, id, hevc, rx));
            match started {
                Ok(_) => {
                    slots.insert(id, tx);
                }
                Err(e) => send(
                    &out,
                    id,
                    wire::FAILED,
                    &[format!("cannot start a decoder thread: {e}").as_bytes()],
                ),
            }
            continue;
        }
        let close = m.kind == wire::CLOSE;
        // A slot whose thread ended (it failed) drops what still comes for it.
        if let Some(tx) = slots.get(&id) {
            if tx.send(m).is_err() || close {
                slots.remove(&id);
            }
        }
    }
    drop(slots);
    let _ = out.lock().map(|mut o| o.flush());
    0
}
