//! `farmcam decode-helper`: the process that decodes every H.264/H.265 camera of one farmcam
//! with libavcodec, one thread and one decoder per camera (slot). It reads [`super::wire`]
//! messages on stdin and writes pictures on stdout, exits when stdin closes, and holds nothing
//! else: if a hostile stream crashes libavcodec, this process dies, not farmcam, which starts a
//! new one for the cameras that still need pictures.

use std::collections::HashMap;
use std::io::{self, Write};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use super::avcodec::{AvDecoder, AvEncoder, Decoded, EncodeParams, Libav, Packet};
use super::wire::{self, EncodeSettings, Message};
use crate::media::codec::I420;

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

/// A picture to encode, as farmcam sent it (even-sized I420).
enum ToEncode<'a> {
    /// Full-range samples (a decoded JPEG, a full-range raw picture): converted before encoding.
    Full(I420),
    /// Limited-range planes, Y then U then V: encoded as they are.
    Limited {
        size: crate::frame::Size,
        planes: &'a [u8],
    },
}

impl ToEncode<'_> {
    fn size(&self) -> crate::frame::Size {
        match self {
            ToEncode::Full(p) => p.size,
            ToEncode::Limited { size, .. } => *size,
        }
    }
}

/// A picture to encode, and whether it must be a keyframe. `None`: not a picture this slot can
/// encode (it is skipped).
fn picture_to_encode(m: &Message) -> Option<(ToEncode<'_>, bool)> {
    let (&flags, rest) = m.payload.split_first()?;
    let key = flags & wire::KEYFRAME != 0;
    let picture = match m.kind {
        wire::JPEG_PICTURE => ToEncode::Full(crate::media::codec::decode_i420(rest).ok()?),
        _ => {
            let w = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?);
            let h = u32::from_le_bytes(rest.get(4..8)?.try_into().ok()?);
            let size = crate::frame::Size { width: w, height: h };
            let (y, c) = super::planes_len(size);
            let planes = rest.get(8..)?;
            if w < 2 || h < 2 || w % 2 == 1 || h % 2 == 1 || planes.len() != y + 2 * c {
                return None;
            }
            if flags & wire::LIMITED != 0 {
                ToEncode::Limited { size, planes }
            } else {
                ToEncode::Full(I420 {
                    y: planes[..y].to_vec(),
                    u: planes[y..y + c].to_vec(),
                    v: planes[y + c..].to_vec(),
                    size,
                })
            }
        }
    };
    Some((picture, key))
}

/// Full-range samples (JPEG's) in the limited range H.264 players assume: luma 16..=235,
/// chroma 16..=240; packed into one buffer, Y then U then V.
fn limited_planes(p: &I420, out: &mut Vec<u8>) {
    let luma: [u8; 256] = std::array::from_fn(|v| (16.0 + v as f32 * 219.0 / 255.0).round() as u8);
    let chroma: [u8; 256] =
        std::array::from_fn(|v| (128.0 + (v as f32 - 128.0) * 224.0 / 255.0).round() as u8);
    out.clear();
    out.extend(p.y.iter().map(|&v| luma[v as usize]));
    out.extend(p.u.iter().chain(&p.v).map(|&v| chroma[v as usize]));
}

fn send_packets(out: &Out, slot: u32, packets: &mut Vec<Packet>) {
    for p in packets.drain(..) {
        let flags = [if p.keyframe { wire::KEYFRAME } else { 0 }];
        send(out, slot, wire::PACKET, &[&flags, &p.data]);
    }
}

/// One camera's encoder: opened at the first picture's size with the first of the settings'
/// encoders that opens (said with OPENED), again when the size changes; each picture's packets
/// sent back as they come out, then DONE. Fails (FAILED, the slot closes) when no encoder opens
/// or the encoder fails; CLOSE flushes it.
fn encoder_slot(
    av: &'static Libav,
    out: Out,
    slot: u32,
    settings: EncodeSettings,
    rx: mpsc::Receiver<Message>,
) {
    let mut encoder: Option<AvEncoder<'static>> = None;
    let mut packets = Vec::new();
    let mut limited = Vec::new();
    while let Ok(m) = rx.recv() {
        if m.kind == wire::CLOSE {
            if let Some(e) = encoder.as_mut() {
                let _ = e.encode(None, false, &mut packets);
            }
            send_packets(&out, slot, &mut packets);
            return send(&out, slot, wire::CLOSED, &[]);
        }
        if !matches!(m.kind, wire::JPEG_PICTURE | wire::RAW_PICTURE) {
            continue;
        }
        let done = (m.payload.len() as u32).to_le_bytes();
        let Some((picture, mut key)) = picture_to_encode(&m) else {
            send(&out, slot, wire::DONE, &[&done]);
            continue;
        };
        let size = picture.size();
        let (w, h) = (size.width, size.height);
        if encoder
            .as_ref()
            .is_none_or(|e| (e.params.width, e.params.height) != (w, h))
        {
            if let Some(mut old) = encoder.take() {
                let _ = old.encode(None, false, &mut packets);
                send_packets(&out, slot, &mut packets);
            }
            let params = EncodeParams {
                width: w,
                height: h,
                fps: settings.fps,
                bitrate: match settings.bitrate {
                    0 => wire::bitrate_for(w, h, settings.fps),
                    b => b,
                },
                gop: settings.fps * settings.keyframe_secs,
                device: settings.device.clone(),
            };
            let mut why = Vec::new();
            for name in &settings.encoders {
                match AvEncoder::open(av, name, &params) {
                    Ok(e) => {
                        encoder = Some(e);
                        send(&out, slot, wire::OPENED, &[name.as_bytes()]);
                        break;
                    }
                    Err(e) => why.push(e),
                }
            }
            if encoder.is_none() {
                if why.is_empty() {
                    why.push("no encoder was named".into());
                }
                return send(&out, slot, wire::FAILED, &[why.join("; ").as_bytes()]);
            }
            key = true;
        }
        let Some(e) = encoder.as_mut() else { continue };
        let planes: &[u8] = match &picture {
            ToEncode::Full(p) => {
                limited_planes(p, &mut limited);
                &limited
            }
            ToEncode::Limited { planes, .. } => planes,
        };
        if let Err(why) = e.encode(Some(planes), key, &mut packets) {
            return send(&out, slot, wire::FAILED, &[why.as_bytes()]);
        }
        send_packets(&out, slot, &mut packets);
        send(&out, slot, wire::DONE, &[&done]);
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
        if matches!(m.kind, wire::ENCODE | wire::OPEN) {
            let spares = match &spares {
                Ok(spares) => spares.clone(),
                Err(e) => {
                    send(&out, id, wire::FAILED, &[e.as_bytes()]);
                    continue;
                }
            };
            let (tx, rx) = mpsc::channel();
            let slot_out = out.clone();
            let (what, work): (&str, Box<dyn FnOnce() + Send>) = if m.kind == wire::ENCODE {
                let settings = EncodeSettings::from_text(&String::from_utf8_lossy(&m.payload));
                (
                    "encoder",
                    Box::new(move || encoder_slot(spares.av, slot_out, id, settings, rx)),
                )
            } else {
                let hevc = m.payload.first() == Some(&1);
                ("decoder", Box::new(move || slot(spares, slot_out, id, hevc, rx)))
            };
            let started = std::thread::Builder::new()
                .name(format!("{what} {id}"))
                .stack_size(STACK)
                .spawn(work);
            match started {
                Ok(_) => {
                    slots.insert(id, tx);
                }
                Err(e) => send(
                    &out,
                    id,
                    wire::FAILED,
                    &[format!("cannot start a {what} thread: {e}").as_bytes()],
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
