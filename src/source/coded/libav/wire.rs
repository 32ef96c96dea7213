//! The decoder helper's pipe protocol, both ways: a 9-byte header (slot `u32`, kind `u8`,
//! payload length `u32`, little-endian) and the payload. A slot is one camera's decoder.

use std::io::{self, Read, Write};
use std::path::PathBuf;

/// farmcam → helper: open a decoder in the slot (payload: 0 H.264, 1 H.265).
pub const OPEN: u8 = 1;
/// farmcam → helper: one access unit to decode, its pictures sent back.
pub const UNIT: u8 = 2;
/// farmcam → helper: one access unit to decode, its pictures not sent back (a replay: only the
/// current picture is wanted).
pub const QUIET_UNIT: u8 = 3;
/// farmcam → helper: the slot's input ended: flush its pictures, then close it.
pub const CLOSE: u8 = 4;
/// helper → farmcam: a picture (width `u32`, height `u32`, full-range I420 planes).
pub const PICTURE: u8 = 5;
/// helper → farmcam: a unit was decoded (payload: its length `u32`), its pictures sent before.
pub const DONE: u8 = 6;
/// helper → farmcam: the slot's decoder failed (payload: why, UTF-8); the slot is closed.
pub const FAILED: u8 = 7;
/// helper → farmcam: the slot closed after CLOSE, its last pictures sent before.
pub const CLOSED: u8 = 8;
/// farmcam → helper: a keyframe with its parameter sets, decodable alone (the camera is decoded
/// keyframes only): any of the helper's spare decoders takes it, its picture sent back at once,
/// and the slot keeps no decoder of its own between keyframes.
pub const ALONE: u8 = 9;

/// farmcam → helper: open an H.264 encoder in the slot (payload: [`EncodeSettings`] as text);
/// it is opened at the first picture's size (again when the size changes).
pub const ENCODE: u8 = 10;
/// farmcam → helper: a JPEG picture to encode (payload: flags `u8`, then the JPEG).
pub const JPEG_PICTURE: u8 = 11;
/// farmcam → helper: a raw picture to encode (payload: flags `u8`, width `u32`, height `u32`,
/// I420 planes, full range unless flagged [`LIMITED`]).
pub const RAW_PICTURE: u8 = 12;
/// helper → farmcam: one coded picture (payload: flags `u8`, then Annex B).
pub const PACKET: u8 = 13;
/// helper → farmcam: the slot's encoder opened (payload: its name, UTF-8).
pub const OPENED: u8 = 14;
/// Picture flag: make this picture a keyframe (a viewer joined). Packet flag: a keyframe.
pub const KEYFRAME: u8 = 1;
/// Raw picture flag: its samples are limited range already (a camera's YUYV), encoded as they are.
pub const LIMITED: u8 = 2;

pub const HEADER: usize = 9;
/// The largest payload either side accepts: a picture of [`crate::media::codec::MAX_PIXELS`] (its
/// chroma rounded up) or a unit as large as a camera's `max_frame_size` may be.
pub const MAX_PAYLOAD: usize = 8 + crate::media::codec::MAX_PIXELS * 2 + (256 << 20);

pub fn header(slot: u32, kind: u8, len: usize) -> [u8; HEADER] {
    let mut h = [0u8; HEADER];
    h[..4].copy_from_slice(&slot.to_le_bytes());
    h[4] = kind;
    h[5..].copy_from_slice(&(len as u32).to_le_bytes());
    h
}

pub fn parse(h: &[u8; HEADER]) -> (u32, u8, usize) {
    let slot = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
    let len = u32::from_le_bytes([h[5], h[6], h[7], h[8]]) as usize;
    (slot, h[4], len)
}

/// One message from `r`: `None` at a clean end between messages.
pub fn read(r: &mut impl Read) -> io::Result<Option<Message>> {
    let mut h = [0u8; HEADER];
    match r.read_exact(&mut h) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let (slot, kind, len) = parse(&h);
    if len > MAX_PAYLOAD {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a {len}-byte message"),
        ));
    }
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload)?;
    Ok(Some(Message { slot, kind, payload }))
}

pub fn write(w: &mut impl Write, slot: u32, kind: u8, parts: &[&[u8]]) -> io::Result<()> {
    let len = parts.iter().map(|p| p.len()).sum();
    w.write_all(&header(slot, kind, len))?;
    for p in parts {
        w.write_all(p)?;
    }
    w.flush()
}

/// What an encoder slot is opened with: the encoders to try, in order (the first that opens
/// is used), and what they are given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncodeSettings {
    pub encoders: Vec<String>,
    pub fps: u32,
    /// Bits per second (0: from the size, see [`bitrate_for`]).
    pub bitrate: u32,
    /// Seconds from one keyframe to the next.
    pub keyframe_secs: u32,
    /// The VAAPI render node (`h264_vaapi`).
    pub device: Option<PathBuf>,
}

impl EncodeSettings {
    pub fn to_text(&self) -> String {
        let mut text = format!(
            "encoders={}\nfps={}\nbitrate={}\nkeyframe_secs={}\n",
            self.encoders.join(","),
            self.fps,
            self.bitrate,
            self.keyframe_secs
        );
        if let Some(device) = self.device.as_ref().and_then(|d| d.to_str()) {
            text.push_str(&format!("device={device}\n"));
        }
        text
    }

    /// The settings farmcam sent; what is missing or broken takes a sane value.
    pub fn from_text(text: &str) -> EncodeSettings {
        let mut s = EncodeSettings {
            encoders: Vec::new(),
            fps: 30,
            bitrate: 0,
            keyframe_secs: 2,
            device: None,
        };
        for line in text.lines() {
            let Some((k, v)) = line.split_once('=') else {
                continue;
            };
            let n = v.trim().parse::<u32>().ok();
            match k.trim() {
                "encoders" => {
                    s.encoders = v
                        .split(',')
                        .map(|e| e.trim().to_string())
                        .filter(|e| !e.is_empty())
                        .collect()
                }
                "fps" => s.fps = n.unwrap_or(30).clamp(1, 240),
                "bitrate" => s.bitrate = n.unwrap_or(0),
                "keyframe_secs" => s.keyframe_secs = n.unwrap_or(2).clamp(1, 60),
                "device" if !v.trim().is_empty() => s.device = Some(PathBuf::from(v.trim())),
                _ => {}
            }
        }
        s
    }
}

/// The bitrate an encoder gets for pictures of `width` x `height` at `fps` when the camera sets
/// none: 0.05 bits per pixel and picture (1280x720 at 30 fps: 1.4 Mbit/s; 1920x1080 at 30:
/// 3.1 Mbit/s; 640x480 at 15: 230 kbit/s), at least 200 kbit/s and at most 8 Mbit/s.
pub fn bitrate_for(width: u32, height: u32, fps: u32) -> u32 {
    let bits = width as f64 * height as f64 * fps as f64 * 0.05;
    bits.clamp(200_000.0, 8_000_000.0) as u32
}

pub struct Message {
    pub slot: u32,
    pub kind: u8,
    pub payload: Vec<u8>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_settings_round_trip_and_broken_ones_get_sane_values() {
        let s = EncodeSettings {
            encoders: vec!["h264_v4l2m2m".into(), "libx264".into()],
            fps: 15,
            bitrate: 900_000,
            keyframe_secs: 2,
            device: Some("/dev/dri/renderD128".into()),
        };
        assert_eq!(EncodeSettings::from_text(&s.to_text()), s);
        let broken = EncodeSettings::from_text("fps=0\nbitrate=x\nnonsense\nkeyframe_secs=999");
        assert_eq!((broken.fps, broken.bitrate, broken.keyframe_secs), (1, 0, 60));
        assert!(broken.encoders.is_empty());
        assert_eq!(bitrate_for(1280, 720, 30), 1_382_400);
        assert_eq!(bitrate_for(160, 120, 5), 200_000);
        assert_eq!(bitrate_for(3840, 2160, 60), 8_000_000);
    }

    #[test]
    fn messages_round_trip_and_oversized_ones_are_refused() {
        let mut buf = Vec::new();
        write(&mut buf, 7, UNIT, &[b"ab", b"c"]).unwrap();
        write(&mut buf, 1, CLOSE, &[]).unwrap();
        let mut r = &buf[..];
        let m = read(&mut r).unwrap().unwrap();
        assert_eq!((m.slot, m.kind, &m.payload[..]), (7, UNIT, &b"abc"[..]));
        let m = read(&mut r).unwrap().unwrap();
        assert_eq!((m.slot, m.kind, m.payload.len()), (1, CLOSE, 0));
        assert!(read(&mut r).unwrap().is_none());
        let huge = header(0, UNIT, MAX_PAYLOAD + 1);
        assert!(read(&mut &huge[..]).is_err());
        assert!(
            read(&mut &huge[..4]).unwrap().is_none(),
            "a cut header is the end"
        );
    }
}
