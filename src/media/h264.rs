//! H.264 and H.265 Annex B byte streams (what `ffmpeg -c:v copy -f h264|hevc` writes) cut into
//! access units, one picture each, with keyframes and parameter sets recognised. No I/O.
//!
//! A NAL unit ends where the next start code (`00 00 01`, or `00 00 00 01`) begins. An access
//! unit starts at an access unit delimiter, a parameter set or SEI after the previous picture's
//! slices, or at a slice whose first header bit says "first slice of a picture"
//! (`first_mb_in_slice == 0` in H.264, `first_slice_segment_in_pic_flag` in H.265). So a unit is
//! complete only once the next one starts (one frame of latency), or at [`AuSplitter::finish`].

use bytes::Bytes;

/// Which of the two codecs a stream carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Codec {
    H264,
    H265,
}

impl Codec {
    /// ffmpeg's name for the raw stream format.
    pub fn ffmpeg_format(self) -> &'static str {
        match self {
            Codec::H264 => "h264",
            Codec::H265 => "hevc",
        }
    }
}

/// One picture and the NAL units that precede it, in Annex B form (4-byte start codes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessUnit {
    pub data: Bytes,
    /// An IDR (H.264) or IRAP (H.265) picture: decodable on its own with its parameter sets.
    pub keyframe: bool,
    /// The sequence parameter set carried in this unit, if any (a change means a new resolution
    /// or profile).
    pub sps: Option<Bytes>,
}

/// What kind of NAL unit starts a slice, a keyframe, or a new access unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct NalInfo {
    slice: bool,
    first_slice: bool,
    keyframe: bool,
    /// AUD, parameter sets, prefix SEI: these open an access unit after a picture.
    prefix: bool,
    sps: bool,
}

fn nal_info(codec: Codec, nal: &[u8]) -> NalInfo {
    let none = NalInfo {
        slice: false,
        first_slice: false,
        keyframe: false,
        prefix: false,
        sps: false,
    };
    match codec {
        Codec::H264 => {
            let Some(&h) = nal.first() else { return none };
            let t = h & 0x1f;
            let slice = (1..=5).contains(&t);
            NalInfo {
                slice,
                first_slice: slice && nal.get(1).is_some_and(|b| b & 0x80 != 0),
                keyframe: t == 5,
                prefix: matches!(t, 6..=9 | 13..=18),
                sps: t == 7,
            }
        }
        Codec::H265 => {
            let Some(&h) = nal.first() else { return none };
            let t = (h >> 1) & 0x3f;
            let slice = t <= 31;
            NalInfo {
                slice,
                first_slice: slice && nal.get(2).is_some_and(|b| b & 0x80 != 0),
                keyframe: (16..=21).contains(&t),
                prefix: matches!(t, 32..=35 | 39 | 41..=44 | 48..=55),
                sps: t == 33,
            }
        }
    }
}

const START: [u8; 4] = [0, 0, 0, 1];

/// Counters of what the splitter dropped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AuStats {
    /// Access units larger than the bound (or bytes before the first start code).
    pub oversized: u64,
    /// Bytes that were not inside any NAL unit (garbage before a start code).
    pub garbage_bytes: u64,
}

/// Cuts an Annex B stream, fed in arbitrary pieces, into access units.
pub struct AuSplitter {
    codec: Codec,
    max: usize,
    /// Unparsed input: from the current NAL's start code on.
    buf: Vec<u8>,
    /// Where to resume looking for the next start code in `buf`.
    scanned: usize,
    /// The access unit being built.
    au: Vec<u8>,
    has_slice: bool,
    keyframe: bool,
    sps: Option<Bytes>,
    too_big: bool,
    /// The NAL unit arriving now is oversized: its bytes are skipped until the next start code.
    skipping: bool,
    stats: AuStats,
}

/// The next start code at or after `from`: (its position, its length 3).
fn find_start(buf: &[u8], from: usize) -> Option<usize> {
    buf.get(from..)?
        .windows(3)
        .position(|w| w == [0, 0, 1])
        .map(|p| from + p)
}

impl AuSplitter {
    /// `max` bounds one access unit (and what is buffered while looking for a start code).
    pub fn new(codec: Codec, max: usize) -> Self {
        AuSplitter {
            codec,
            max,
            buf: Vec::new(),
            scanned: 0,
            au: Vec::new(),
            has_slice: false,
            keyframe: false,
            sps: None,
            too_big: false,
            skipping: false,
            stats: AuStats::default(),
        }
    }

    pub fn stats(&self) -> AuStats {
        self.stats
    }

    /// Bytes held (input not yet cut, and the unit being built).
    pub fn buffered(&self) -> usize {
        self.buf.len() + self.au.len()
    }

    /// Feed bytes; complete access units are appended to `out`.
    pub fn push(&mut self, data: &[u8], out: &mut Vec<AccessUnit>) {
        self.buf.extend_from_slice(data);
        loop {
            if self.skipping {
                // The rest of an oversized NAL unit, up to the next start code.
                let Some(next) = find_start(&self.buf, 0) else {
                    self.buf.drain(..self.buf.len().saturating_sub(2));
                    return;
                };
                self.buf.drain(..next);
                self.skipping = false;
            }
            // The buffer starts at a start code (or holds garbage before the first one).
            let Some(first) = find_start(&self.buf, 0) else {
                // Keep two bytes: a start code may be split across pieces.
                let keep = self.buf.len().min(2);
                self.stats.garbage_bytes += (self.buf.len() - keep) as u64;
                self.buf.drain(..self.buf.len() - keep);
                self.scanned = 0;
                return;
            };
            if first > 0 {
                // A zero just before is the first byte of a 4-byte start code, not garbage.
                let zero = usize::from(self.buf[first - 1] == 0);
                self.stats.garbage_bytes += (first - zero) as u64;
                self.buf.drain(..first);
                self.scanned = 0;
            }
            let Some(next) = find_start(&self.buf, self.scanned.max(3)) else {
                self.scanned = self.buf.len().saturating_sub(2).max(3);
                if self.buf.len() > self.max {
                    // One NAL unit larger than any picture may be. What it starts is known from
                    // its header: a new picture completes the one before (which is whole and
                    // comes out); the unit it belongs to is dropped, and its bytes skipped.
                    let info = nal_info(self.codec, &self.buf[3..]);
                    if self.has_slice && (info.prefix || info.first_slice) {
                        self.emit(out);
                    }
                    if !self.too_big {
                        self.stats.oversized += 1;
                    }
                    self.too_big = true;
                    self.has_slice |= info.slice;
                    self.keyframe |= info.keyframe;
                    self.skipping = true;
                    self.buf.drain(..self.buf.len() - 2);
                    self.scanned = 0;
                }
                return;
            };
            let mut end = next;
            while end > 3 && self.buf[end - 1] == 0 {
                end -= 1; // Trailing zeros belong to a 4-byte start code (or are padding).
            }
            let nal = self.buf[3..end].to_vec();
            self.buf.drain(..next);
            self.scanned = 0;
            self.nal(&nal, out);
        }
    }

    /// The input ended: what is buffered is the last unit.
    pub fn finish(&mut self, out: &mut Vec<AccessUnit>) {
        if find_start(&self.buf, 0) == Some(0) {
            let mut end = self.buf.len();
            while end > 3 && self.buf[end - 1] == 0 {
                end -= 1;
            }
            let nal = self.buf[3..end].to_vec();
            self.nal(&nal, out);
        }
        self.buf.clear();
        self.scanned = 0;
        self.emit(out);
    }

    fn nal(&mut self, nal: &[u8], out: &mut Vec<AccessUnit>) {
        if nal.is_empty() {
            return;
        }
        let info = nal_info(self.codec, nal);
        if self.has_slice && (info.prefix || info.first_slice) {
            self.emit(out);
        }
        if self.au.len() + nal.len() + 4 > self.max {
            if !self.too_big {
                self.stats.oversized += 1;
            }
            self.too_big = true;
        } else {
            self.au.extend_from_slice(&START);
            self.au.extend_from_slice(nal);
        }
        self.has_slice |= info.slice;
        self.keyframe |= info.keyframe;
        if info.sps {
            let mut sps = START.to_vec();
            sps.extend_from_slice(nal);
            self.sps = Some(Bytes::from(sps));
        }
    }

    fn emit(&mut self, out: &mut Vec<AccessUnit>) {
        let au = std::mem::take(&mut self.au);
        let (slice, keyframe, sps, too_big) = (
            std::mem::take(&mut self.has_slice),
            std::mem::take(&mut self.keyframe),
            self.sps.take(),
            std::mem::take(&mut self.too_big),
        );
        if slice && !too_big {
            out.push(AccessUnit {
                data: Bytes::from(au),
                keyframe,
                sps,
            });
        }
    }
}

/// The NAL units of an access unit (Annex B), without their start codes or trailing zeros.
pub fn nal_units(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = match find_start(data, 0) {
        Some(at) => &data[at + 3..],
        None => &[][..],
    };
    std::iter::from_fn(move || loop {
        if rest.is_empty() {
            return None;
        }
        let (mut nal, next) = match find_start(rest, 0) {
            Some(at) => (&rest[..at], &rest[at + 3..]),
            None => (rest, &[][..]),
        };
        rest = next;
        while let [head @ .., 0] = nal {
            nal = head;
        }
        if !nal.is_empty() {
            return Some(nal);
        }
    })
}

/// A NAL unit's type (H.264: 5 bits of its first byte; H.265: 6 bits).
pub fn nal_type(codec: Codec, nal: &[u8]) -> u8 {
    let h = nal.first().copied().unwrap_or(0);
    match codec {
        Codec::H264 => h & 0x1f,
        Codec::H265 => (h >> 1) & 0x3f,
    }
}

/// A keyframe that carries every parameter set it needs (H.264: SPS and PPS; H.265: VPS, SPS
/// and PPS): a decoder that has seen nothing of this camera decodes it.
pub fn decodable_alone(codec: Codec, unit: &AccessUnit) -> bool {
    if !unit.keyframe {
        return false;
    }
    let needed: &[u8] = match codec {
        Codec::H264 => &[7, 8],
        Codec::H265 => &[32, 33, 34],
    };
    let mut seen = 0u8;
    for nal in nal_units(&unit.data) {
        if let Some(i) = needed.iter().position(|&t| t == nal_type(codec, nal)) {
            seen |= 1 << i;
        }
    }
    seen.count_ones() as usize == needed.len()
}

/// An access unit delimiter: sent after a unit to make a decoder finish its picture at once.
pub fn delimiter(codec: Codec) -> &'static [u8] {
    match codec {
        // nal_unit_type 9, primary_pic_type 7 (any), rbsp stop bit.
        Codec::H264 => &[0, 0, 0, 1, 0x09, 0xf0],
        // nal_unit_type 35, layer 0, tid 1; pic_type 2 (any), stop bit.
        Codec::H265 => &[0, 0, 0, 1, 0x46, 0x01, 0x50],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_access_unit_lists_its_nal_units() {
        let data = [
            0, 0, 0, 1, 0x67, 1, 0, 0, 0, 0, 1, 0x68, 2, 0, 0, 1, 0x65, 0, 0, 3, 1,
        ];
        let nals: Vec<&[u8]> = nal_units(&data).collect();
        assert_eq!(nals, [&[0x67, 1][..], &[0x68, 2], &[0x65, 0, 0, 3, 1]]);
        assert_eq!(nal_type(Codec::H264, nals[2]), 5);
        assert_eq!(nal_type(Codec::H265, &[0x40, 0x01]), 32);
        assert_eq!(nal_units(&[1, 2, 3]).count(), 0);
    }

    #[test]
    fn a_keyframe_is_decodable_alone_with_all_its_parameter_sets() {
        let unit = |keyframe, nals: &[&[u8]]| AccessUnit {
            data: Bytes::from(nals.iter().flat_map(|n| nal(n)).collect::<Vec<u8>>()),
            keyframe,
            sps: None,
        };
        let (sps, pps, idr, p) = (&[0x67, 1][..], &[0x68, 2][..], &[0x65, 3][..], &[0x41, 4][..]);
        assert!(decodable_alone(Codec::H264, &unit(true, &[sps, pps, idr])));
        assert!(!decodable_alone(Codec::H264, &unit(true, &[sps, idr])));
        assert!(!decodable_alone(Codec::H264, &unit(true, &[idr])));
        assert!(!decodable_alone(Codec::H264, &unit(false, &[sps, pps, p])));
        let (vps, sps, pps, irap) = (&[0x40, 1][..], &[0x42, 1][..], &[0x44, 1][..], &[0x26, 1][..]);
        assert!(decodable_alone(Codec::H265, &unit(true, &[vps, sps, pps, irap])));
        assert!(!decodable_alone(Codec::H265, &unit(true, &[sps, pps, irap])));
    }

    fn nal(bytes: &[u8]) -> Vec<u8> {
        let mut v = START.to_vec();
        v.extend_from_slice(bytes);
        v
    }

    #[test]
    fn h264_units_start_at_parameter_sets_and_first_slices() {
        let sps = [0x67, 0x42, 0x00, 0x1f, 0xaa];
        let pps = [0x68, 0xce, 0x3c, 0x80];
        let idr = [0x65, 0x88, 0x84, 0x21];
        let idr2 = [0x65, 0x08, 0x84, 0x21]; // second slice of the same picture
        let p = [0x41, 0x9a, 0x02, 0x03];
        let stream: Vec<u8> = [&sps[..], &pps, &idr, &idr2, &p, &p, &sps, &pps, &idr]
            .iter()
            .flat_map(|n| nal(n))
            .collect();
        let mut s = AuSplitter::new(Codec::H264, 1 << 20);
        let mut out = Vec::new();
        s.push(&stream, &mut out);
        s.finish(&mut out);
        assert_eq!(out.len(), 4, "{out:?}");
        assert!(out[0].keyframe && out[0].sps.is_some());
        assert_eq!(out[0].data.len(), 4 * 4 + sps.len() + pps.len() + 2 * idr.len());
        assert!(!out[1].keyframe && !out[2].keyframe && out[3].keyframe);
        assert_eq!(out[1].data, Bytes::from(nal(&p)));
    }

    #[test]
    fn h265_keyframes_and_first_slice_flag() {
        let vps = [0x40, 0x01, 0x0c];
        let sps = [0x42, 0x01, 0x01];
        let pps = [0x44, 0x01, 0xc1];
        let idr = [0x26, 0x01, 0xaf]; // type 19, first slice
        let trail = [0x02, 0x01, 0xd0]; // type 1, first slice
        let trail_cont = [0x02, 0x01, 0x50]; // type 1, not first
        let stream: Vec<u8> = [&vps[..], &sps, &pps, &idr, &trail, &trail_cont, &trail]
            .iter()
            .flat_map(|n| nal(n))
            .collect();
        let mut s = AuSplitter::new(Codec::H265, 1 << 20);
        let mut out = Vec::new();
        s.push(&stream, &mut out);
        assert_eq!(out.len(), 1, "a unit is complete once the next one starts");
        s.finish(&mut out);
        assert_eq!(out.len(), 3);
        assert!(out[0].keyframe && out[0].sps.is_some());
        assert!(!out[1].keyframe && out[1].data.len() == 2 * 7);
    }

    #[test]
    fn garbage_and_oversized_units_are_dropped_and_counted() {
        let mut s = AuSplitter::new(Codec::H264, 64);
        let mut out = Vec::new();
        let mut stream = vec![0xff; 10];
        stream.extend(nal(&[0x65, 0x80, 1, 2]));
        let mut big = vec![0x41, 0x80];
        big.extend(std::iter::repeat_n(7, 200));
        stream.extend(nal(&big));
        stream.extend(nal(&[0x41, 0x80, 3]));
        stream.extend(nal(&[0x41, 0x80, 4]));
        s.push(&stream, &mut out);
        s.finish(&mut out);
        assert_eq!(out.len(), 3, "{out:?}");
        assert_eq!(s.stats().garbage_bytes, 10);
        assert_eq!(s.stats().oversized, 1);
        assert!(s.buffered() == 0);
    }
}
