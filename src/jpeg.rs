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
