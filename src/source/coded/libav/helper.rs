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

/// One camera's decoder: opened by the first message, closed by CLOSE (after a flush) or when
/// farmcam hangs up.
fn slot(av: &'static Libav, out: Out, slot: u32, hevc: bool, rx: mpsc::Receiver<Message>) {
    let mut decoder = match AvDecoder::open(av, hevc) {
        Ok(d) => d,
        Err(e) => return send(&out, slot, wire::FAILED, &[e.as_bytes()]),
    };
    let mut pictures = Vec::new();
    while let Ok(m) = rx.recv() {
        let unit = match m.kind {
            wire::UNIT | wire::QUIET_UNIT => Some(&m.payload[..]),
            _ => None,
        };
        if let Err(e) = decoder.decode(unit, &mut pictures) {
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
    let av: Result<&'static Libav, String> = Libav::load().map(|av| &*Box::leak(Box::new(av)));
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
            let av = match av {
                Ok(av) => av,
                Err(ref e) => {
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
                .spawn(move || slot(av, slot_out, id, hevc, rx));
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
