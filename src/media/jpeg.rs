//! JPEG structure: finding markers, dimensions, and splitting a scan at restart markers.

/// Start of image.
pub const SOI: [u8; 2] = [0xff, 0xd8];
/// End of image.
pub const EOI: [u8; 2] = [0xff, 0xd9];

/// A baseline JPEG cut into the part before the entropy-coded data (SOI .. SOS header) and the
/// entropy-coded segments between restart markers (markers and EOI removed).
pub struct Scan<'a> {
    pub header: &'a [u8],
    pub segments: Vec<&'a [u8]>,
}

/// What [`walk_header`] learns about a JPEG up to its first scan.
struct Header {
    /// Offset of the SOS marker.
    sos: usize,
    /// Offset just after the SOS header: the entropy-coded data starts here.
    scan: usize,
    /// Width and height from SOF.
    dims: Option<(u32, u32)>,
    /// Whether a DHT (Huffman tables) segment comes before the scan.
    has_dht: bool,
}

/// Walk the marker segments of `jpeg` up to the start of scan, or `None` if the structure is
/// broken.
fn walk_header(jpeg: &[u8]) -> Option<Header> {
    if !jpeg.starts_with(&SOI) {
        return None;
    }
    let mut i = 2;
    let mut dims = None;
    let mut has_dht = false;
    loop {
        // Skip fill bytes before a marker.
        while jpeg.get(i) == Some(&0xff) && jpeg.get(i + 1) == Some(&0xff) {
            i += 1;
        }
        if jpeg.get(i) != Some(&0xff) {
            return None;
        }
        let marker = *jpeg.get(i + 1)?;
        let len = u16::from_be_bytes([*jpeg.get(i + 2)?, *jpeg.get(i + 3)?]) as usize;
        if len < 2 || i + 2 + len > jpeg.len() {
            return None;
        }
        // SOF0..SOF15 except DHT (C4), JPG (C8) and DAC (CC).
        if (0xc0..=0xcf).contains(&marker) && ![0xc4, 0xc8, 0xcc].contains(&marker) && len >= 7 {
            let h = u16::from_be_bytes([jpeg[i + 5], jpeg[i + 6]]) as u32;
            let w = u16::from_be_bytes([jpeg[i + 7], jpeg[i + 8]]) as u32;
            dims = Some((w, h));
        }
        has_dht |= marker == 0xc4;
        let sos = i;
        i += 2 + len;
        if marker == 0xda {
            return Some(Header {
                sos,
                scan: i,
                dims,
                has_dht,
            });
        }
    }
}

/// Width and height from the SOF segment.
pub fn dimensions(jpeg: &[u8]) -> Option<(u32, u32)> {
    walk_header(jpeg)?.dims
}

/// Why a camera's MJPEG buffer is not a usable frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MjpegError {
    #[error("no JPEG header (SOI, SOF, SOS)")]
    Header,
    #[error("no end of image marker (truncated frame)")]
    Truncated,
}

/// A completed MJPEG frame and its width and height.
pub type Completed<'a> = (std::borrow::Cow<'a, [u8]>, (u32, u32));

/// A camera's MJPEG frame made into a complete JFIF JPEG, as every decoder accepts it:
///
/// - cut just after the end marker (V4L2 buffers are padded: v4l2loopback's first buffer and some
///   UVC cameras hand over the whole buffer with zeros after the image);
/// - the standard Huffman tables inserted before the scan when the frame has none (the MJPEG
///   convention many UVC cameras follow; browsers cope, Safari, some decoders and MQTT
///   consumers do not).
///
/// Returns the frame (borrowed when nothing had to be added) and its size.
pub fn complete_mjpeg(buf: &[u8]) -> Result<Completed<'_>, MjpegError> {
    let header = walk_header(buf).ok_or(MjpegError::Header)?;
    let dims = header
        .dims
        .filter(|&(w, h)| w > 0 && h > 0)
        .ok_or(MjpegError::Header)?;
    let end = end_of_scan(buf, header.scan).ok_or(MjpegError::Truncated)?;
    if header.has_dht {
        return Ok((std::borrow::Cow::Borrowed(&buf[..end]), dims));
    }
    let mut out = Vec::with_capacity(end + STANDARD_DHT.len());
    out.extend_from_slice(&buf[..header.sos]);
    out.extend_from_slice(&STANDARD_DHT);
    out.extend_from_slice(&buf[header.sos..end]);
    Ok((std::borrow::Cow::Owned(out), dims))
}

/// The offset just after the EOI that ends the entropy-coded data starting at `from`. Inside
/// the scan every 0xFF is followed by 0x00 (stuffing), a restart marker, or fill; the first
/// `FF D9` is the end.
fn end_of_scan(buf: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while let Some(p) = buf.get(i..)?.iter().position(|&b| b == 0xff) {
        let at = i + p;
        match buf.get(at + 1)? {
            0xd9 => return Some(at + 2),
            _ => i = at + 1,
        }
    }
    None
}

/// The Huffman tables of ITU T.81 Annex K.3 (luminance and chrominance, DC and AC) as one DHT
/// segment: what an MJPEG frame without tables implies (the AVI1 / UVC convention).
pub const STANDARD_DHT: [u8; 420] = standard_dht();

const fn standard_dht() -> [u8; 420] {
    const TABLES: [(u8, &[u8; 16], &[u8]); 4] = [
        (0x00, &DC_LUMA_BITS, &DC_VALUES),
        (0x10, &AC_LUMA_BITS, &AC_LUMA_VALUES),
        (0x01, &DC_CHROMA_BITS, &DC_VALUES),
        (0x11, &AC_CHROMA_BITS, &AC_CHROMA_VALUES),
    ];
    let mut out = [0u8; 420];
    out[0] = 0xff;
    out[1] = 0xc4;
    out[2] = (418u16 >> 8) as u8;
    out[3] = (418u16 & 0xff) as u8;
    let mut at = 4;
    let mut t = 0;
    while t < TABLES.len() {
        let (class_id, bits, values) = TABLES[t];
        out[at] = class_id;
        at += 1;
        let mut i = 0;
        while i < 16 {
            out[at] = bits[i];
            at += 1;
            i += 1;
        }
        let mut i = 0;
        while i < values.len() {
            out[at] = values[i];
            at += 1;
            i += 1;
        }
        t += 1;
    }
    assert!(at == 420);
    out
}

const DC_LUMA_BITS: [u8; 16] = [0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0];
const DC_CHROMA_BITS: [u8; 16] = [0, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0];
const DC_VALUES: [u8; 12] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11];
const AC_LUMA_BITS: [u8; 16] = [0, 2, 1, 3, 3, 2, 4, 3, 5, 5, 4, 4, 0, 0, 1, 0x7d];
const AC_LUMA_VALUES: [u8; 162] = [
    0x01, 0x02, 0x03, 0x00, 0x04, 0x11, 0x05, 0x12, 0x21, 0x31, 0x41, 0x06, 0x13, 0x51, 0x61, 0x07, 0x22,
    0x71, 0x14, 0x32, 0x81, 0x91, 0xA1, 0x08, 0x23, 0x42, 0xB1, 0xC1, 0x15, 0x52, 0xD1, 0xF0, 0x24, 0x33,
    0x62, 0x72, 0x82, 0x09, 0x0A, 0x16, 0x17, 0x18, 0x19, 0x1A, 0x25, 0x26, 0x27, 0x28, 0x29, 0x2A, 0x34,
    0x35, 0x36, 0x37, 0x38, 0x39, 0x3A, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49, 0x4A, 0x53, 0x54, 0x55,
    0x56, 0x57, 0x58, 0x59, 0x5A, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6A, 0x73, 0x74, 0x75, 0x76,
    0x77, 0x78, 0x79, 0x7A, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x92, 0x93, 0x94, 0x95, 0x96,
    0x97, 0x98, 0x99, 0x9A, 0xA2, 0xA3, 0xA4, 0xA5, 0xA6, 0xA7, 0xA8, 0xA9, 0xAA, 0xB2, 0xB3, 0xB4, 0xB5,
    0xB6, 0xB7, 0xB8, 0xB9, 0xBA, 0xC2, 0xC3, 0xC4, 0xC5, 0xC6, 0xC7, 0xC8, 0xC9, 0xCA, 0xD2, 0xD3, 0xD4,
    0xD5, 0xD6, 0xD7, 0xD8, 0xD9, 0xDA, 0xE1, 0xE2, 0xE3, 0xE4, 0xE5, 0xE6, 0xE7, 0xE8, 0xE9, 0xEA, 0xF1,
    0xF2, 0xF3, 0xF4, 0xF5, 0xF6, 0xF7, 0xF8, 0xF9, 0xFA,
];
const AC_CHROMA_BITS: [u8; 16] = [0, 2, 1, 2, 4, 4, 3, 4, 7, 5, 4, 4, 0, 1, 2, 0x77];
const AC_CHROMA_VALUES: [u8; 162] = [
    0x00, 0x01, 0x02, 0x03, 0x11, 0x04, 0x05, 0x21, 0x31, 0x06, 0x12, 0x41, 0x51, 0x07, 0x61, 0x71, 0x13,
    0x22, 0x32, 0x81, 0x08, 0x14, 0x42, 0x91, 0xA1, 0xB1, 0xC1, 0x09, 0x23, 0x33, 0x52, 0xF0, 0x15, 0x62,
    0x72, 0xD1, 0x0A, 0x16, 0x24, 0x34, 0xE1, 0x25, 0xF1, 0x17, 0x18, 0x19, 0x1A, 0x26, 0x27, 0x28, 0x29,
    0x2A, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3A, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49, 0x4A, 0x53, 0x54,
    0x55, 0x56, 0x57, 0x58, 0x59, 0x5A, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6A, 0x73, 0x74, 0x75,
    0x76, 0x77, 0x78, 0x79, 0x7A, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x92, 0x93, 0x94,
    0x95, 0x96, 0x97, 0x98, 0x99, 0x9A, 0xA2, 0xA3, 0xA4, 0xA5, 0xA6, 0xA7, 0xA8, 0xA9, 0xAA, 0xB2, 0xB3,
    0xB4, 0xB5, 0xB6, 0xB7, 0xB8, 0xB9, 0xBA, 0xC2, 0xC3, 0xC4, 0xC5, 0xC6, 0xC7, 0xC8, 0xC9, 0xCA, 0xD2,
    0xD3, 0xD4, 0xD5, 0xD6, 0xD7, 0xD8, 0xD9, 0xDA, 0xE2, 0xE3, 0xE4, 0xE5, 0xE6, 0xE7, 0xE8, 0xE9, 0xEA,
    0xF2, 0xF3, 0xF4, 0xF5, 0xF6, 0xF7, 0xF8, 0xF9, 0xFA,
];

/// Split a single-scan JPEG at its restart markers.
pub fn split_scan(jpeg: &[u8]) -> Option<Scan<'_>> {
    let start = walk_header(jpeg)?.scan;
    let mut segments = Vec::new();
    let mut seg_start = start;
    let mut i = start;
    while i + 1 < jpeg.len() {
        if jpeg[i] == 0xff {
            match jpeg[i + 1] {
                0x00 | 0xff => {}
                0xd0..=0xd7 => {
                    segments.push(&jpeg[seg_start..i]);
                    seg_start = i + 2;
                }
                0xd9 => {
                    segments.push(&jpeg[seg_start..i]);
                    return Some(Scan {
                        header: &jpeg[..start],
                        segments,
                    });
                }
                _ => return None,
            }
            i += 2;
        } else {
            i += 1;
        }
    }
    None
}

/// Assemble a JPEG from a header and entropy segments, inserting RST0..RST7 between segments.
pub fn join_scan(header: &[u8], segments: &[&[u8]], out: &mut Vec<u8>) {
    out.extend_from_slice(header);
    for (n, seg) in segments.iter().enumerate() {
        if n > 0 {
            out.extend_from_slice(&[0xff, 0xd0 + ((n - 1) % 8) as u8]);
        }
        out.extend_from_slice(seg);
    }
    out.extend_from_slice(&EOI);
}

/// Counters of what a [`Splitter`] saw.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SplitStats {
    /// Complete frames emitted.
    pub frames: u64,
    /// Frames dropped because they grew beyond the size limit.
    pub oversized: u64,
    /// Frames dropped because they were cut off (a new SOI, corrupt structure, or the stream ended).
    pub truncated: u64,
    /// Bytes skipped outside any frame.
    pub garbage_bytes: u64,
}

/// One complete JPEG cut from a byte stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Split {
    pub jpeg: bytes::Bytes,
    pub width: u32,
    pub height: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Looking for SOI.
    Seek,
    /// Inside the marker segments before (or between) scans.
    Segments,
    /// Inside entropy-coded data.
    Entropy,
    /// Dropping an oversized frame until the next SOI.
    Skip,
}

/// Splits a byte stream (e.g. ffmpeg's `-f mjpeg` output) into complete JPEG frames.
///
/// It walks marker segments by their lengths and scans entropy-coded data to EOI, respecting
/// 0xFF00 stuffing and RST markers (and multi-scan progressive files). Only complete frames with a
/// frame header and a scan are emitted, as zero-copy slices of the input buffer. Frames larger
/// than `max_frame` are dropped and counted; the buffer never holds more than `max_frame` plus one
/// marker segment (64 KiB) plus one pushed chunk.
pub struct Splitter {
    buf: bytes::BytesMut,
    max_frame: usize,
    phase: Phase,
    /// Scan position inside `buf` (the frame, if any, starts at 0).
    pos: usize,
    dims: Option<(u32, u32)>,
    scans: u32,
    stats: SplitStats,
}

/// Default limit on one frame's size.
pub const DEFAULT_MAX_FRAME: usize = 8 * 1024 * 1024;

impl Splitter {
    pub fn new(max_frame: usize) -> Self {
        Splitter {
            buf: bytes::BytesMut::new(),
            max_frame: max_frame.max(64),
            phase: Phase::Seek,
            pos: 0,
            dims: None,
            scans: 0,
            stats: SplitStats::default(),
        }
    }

    pub fn stats(&self) -> SplitStats {
        self.stats
    }

    /// Bytes currently held.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Feed bytes; complete frames are appended to `out`.
    pub fn push(&mut self, data: &[u8], out: &mut Vec<Split>) {
        self.buf.extend_from_slice(data);
        self.run(out);
    }

    /// The stream ended: a partial frame still buffered is counted as truncated.
    pub fn finish(&mut self) {
        if matches!(self.phase, Phase::Segments | Phase::Entropy) {
            self.stats.truncated += 1;
        }
        self.buf.clear();
        self.reset(Phase::Seek);
    }

    fn reset(&mut self, phase: Phase) {
        self.phase = phase;
        self.pos = 0;
        self.dims = None;
        self.scans = 0;
    }

    /// Drop `n` bytes from the front (outside any frame).
    fn discard(&mut self, n: usize) {
        let _ = self.buf.split_to(n);
    }

    /// Drop the frame in progress (counted by the caller) and look for the next SOI after it.
    fn abandon(&mut self, keep_from: usize) {
        self.discard(keep_from);
        self.reset(Phase::Seek);
    }

    fn run(&mut self, out: &mut Vec<Split>) {
        loop {
            if matches!(self.phase, Phase::Segments | Phase::Entropy) && self.pos > self.max_frame {
                self.stats.oversized += 1;
                self.discard(self.pos);
                self.reset(Phase::Skip);
            }
            let progressed = match self.phase {
                Phase::Seek | Phase::Skip => self.seek(),
                Phase::Segments => self.segments(),
                Phase::Entropy => self.entropy(out),
            };
            if !progressed {
                return;
            }
        }
    }

    /// Find SOI; discard what comes before. Returns false when more input is needed.
    fn seek(&mut self) -> bool {
        match find_marker(&self.buf, 0, 0xd8) {
            Some(i) => {
                if self.phase == Phase::Seek {
                    self.stats.garbage_bytes += i as u64;
                }
                self.discard(i);
                self.reset(Phase::Segments);
                self.pos = 2;
                true
            }
            None => {
                // Keep a trailing 0xFF: it may start the next SOI.
                let keep = usize::from(self.buf.last() == Some(&0xff));
                let n = self.buf.len() - keep;
                if self.phase == Phase::Seek {
                    self.stats.garbage_bytes += n as u64;
                }
                self.discard(n);
                false
            }
        }
    }

    fn segments(&mut self) -> bool {
        let b = &self.buf;
        let mut i = self.pos;
        // Fill bytes before a marker.
        while i + 1 < b.len() && b[i] == 0xff && b[i + 1] == 0xff {
            i += 1;
        }
        if i + 1 >= b.len() {
            return false;
        }
        if b[i] != 0xff {
            // Not a marker where one must be: the frame is corrupt (cut off, and a segment length
            // ran into the next frame). Rescan it for a later SOI.
            self.stats.truncated += 1;
            self.abandon(2);
            return true;
        }
        let marker = b[i + 1];
        match marker {
            0xd8 => {
                // A new image before this one was complete.
                self.stats.truncated += 1;
                self.abandon(i);
                true
            }
            0xd9 => {
                // EOI without any scan.
                self.stats.truncated += 1;
                self.abandon(2);
                true
            }
            0x01 | 0xd0..=0xd7 => {
                self.pos = i + 2;
                true
            }
            _ => {
                // A frame cut off inside this segment's header or payload is followed by the next
                // frame's SOI, which the segment length would swallow. Look for it in what has
                // arrived so far (from the length bytes on) before waiting for the rest.
                let seg_end = if i + 4 <= b.len() {
                    let len = u16::from_be_bytes([b[i + 2], b[i + 3]]) as usize;
                    if len < 2 {
                        self.stats.truncated += 1;
                        self.abandon(2);
                        return true;
                    }
                    Some(i + 2 + len)
                } else {
                    None
                };
                let avail = seg_end.map_or(b.len(), |e| (e + 1).min(b.len()));
                if let Some(j) = find_marker(&b[..avail], i + 2, 0xd8) {
                    let app = (0xe0..=0xef).contains(&marker);
                    // APPn segments may carry a thumbnail (SOI..EOI inside the payload, after an
                    // identifier of at least 5 bytes such as "Exif\0" or "JFXX\0"): an SOI before
                    // that, or one with no EOI after it before the segment ends, is a cut-off frame.
                    let complete = seg_end.is_some_and(|e| e < b.len());
                    let thumbnail =
                        complete && find_marker(&b[..seg_end.unwrap_or(0)], j + 2, 0xd9).is_some();
                    if !app || j < i + 4 + 5 || (complete && !thumbnail) {
                        self.stats.truncated += 1;
                        self.abandon(j);
                        return true;
                    }
                }
                let Some(seg_end) = seg_end else {
                    return false;
                };
                if seg_end + 1 > b.len() {
                    // Wait for the whole segment (at most 64 KiB) and the byte after it.
                    self.pos = i;
                    return false;
                }
                let len = seg_end - i - 2;
                let is_sof = (0xc0..=0xcf).contains(&marker) && ![0xc4, 0xc8, 0xcc].contains(&marker);
                if is_sof && len >= 7 {
                    let h = u16::from_be_bytes([b[i + 5], b[i + 6]]) as u32;
                    let w = u16::from_be_bytes([b[i + 7], b[i + 8]]) as u32;
                    self.dims = Some((w, h));
                }
                self.pos = i + 2 + len;
                if marker == 0xda {
                    self.scans += 1;
                    self.phase = Phase::Entropy;
                }
                true
            }
        }
    }

    fn entropy(&mut self, out: &mut Vec<Split>) -> bool {
        let b = &self.buf;
        let mut i = self.pos;
        loop {
            let Some(off) = memchr_ff(&b[i..]) else {
                self.pos = b.len();
                return false;
            };
            i += off;
            if i + 1 >= b.len() {
                self.pos = i;
                return false;
            }
            match b[i + 1] {
                0x00 | 0xd0..=0xd7 => i += 2,
                0xff => i += 1,
                0xd9 => {
                    let end = i + 2;
                    let complete = self.dims.filter(|(w, h)| *w > 0 && *h > 0 && self.scans > 0);
                    let frame = self.buf.split_to(end).freeze();
                    match complete {
                        Some((width, height)) => {
                            self.stats.frames += 1;
                            out.push(Split {
                                jpeg: frame,
                                width,
                                height,
                            });
                        }
                        None => self.stats.truncated += 1,
                    }
                    self.reset(Phase::Seek);
                    return true;
                }
                0xd8 => {
                    self.stats.truncated += 1;
                    self.abandon(i);
                    return true;
                }
                _ => {
                    // Another marker segment between scans (progressive JPEG).
                    self.pos = i;
                    self.phase = Phase::Segments;
                    return true;
                }
            }
        }
    }
}

fn memchr_ff(s: &[u8]) -> Option<usize> {
    s.iter().position(|&x| x == 0xff)
}

/// Position of `FF <marker>` at or after `from`.
fn find_marker(b: &[u8], from: usize, marker: u8) -> Option<usize> {
    let mut i = from;
    while i + 1 < b.len() {
        let off = memchr_ff(&b[i..b.len() - 1])?;
        i += off;
        if b[i + 1] == marker {
            return Some(i);
        }
        i += 1;
    }
    None
}
