//! Feeds arbitrary bytes to the H.264/H.265 access-unit splitter in arbitrary chunks. The first
//! byte picks the codec and the chunk size. Checks: no panic, every unit starts with a start
//! code and stays within its bound, the buffer stays bounded.
#![no_main]

use farmcam::media::h264::{AuSplitter, Codec};
use libfuzzer_sys::fuzz_target;

const MAX: usize = 64 * 1024;

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else { return };
    let codec = if first & 1 == 0 { Codec::H264 } else { Codec::H265 };
    let chunk = usize::from(first >> 1).max(1);
    let mut s = AuSplitter::new(codec, MAX);
    let mut out = Vec::new();
    for piece in rest.chunks(chunk) {
        s.push(piece, &mut out);
        assert!(s.buffered() <= 2 * MAX + piece.len());
    }
    s.finish(&mut out);
    for u in &out {
        assert!(u.data.starts_with(&[0, 0, 0, 1]) && u.data.len() <= MAX);
    }
});
