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

/// Walk the marker segments of `jpeg` up to the start of scan. Returns the offset just after the
/// SOS header, and the frame size from SOF, or `None` if the structure is broken.
fn walk_header(jpeg: &[u8]) -> Option<(usize, Option<(u32, u32)>)> {
    if !jpeg.starts_with(&SOI) {
        return None;
    }
    let mut i = 2;
    let mut dims = None;
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
        i += 2 + len;
        if marker == 0xda {
            return Some((i, dims));
        }
    }
}

/// Width and height from the SOF segment.
pub fn dimensions(jpeg: &[u8]) -> Option<(u32, u32)> {
    walk_header(jpeg)?.1
}

/// Split a single-scan JPEG at its restart markers.
pub fn split_scan(jpeg: &[u8]) -> Option<Scan<'_>> {
    let (start, _) = walk_header(jpeg)?;
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
