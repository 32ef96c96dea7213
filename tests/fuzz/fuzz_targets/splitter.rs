//! Feeds arbitrary bytes to the JPEG splitter in arbitrary chunks. The first byte picks the chunk
//! size. Checks: no panic, every frame is SOI..EOI, the buffer stays within its bound.
#![no_main]

use farmcam::media::jpeg::Splitter;
use libfuzzer_sys::fuzz_target;

const MAX: usize = 64 * 1024;

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, rest)) = data.split_first() else { return };
    let chunk = usize::from(chunk).max(1);
    let mut s = Splitter::new(MAX);
    let mut out = Vec::new();
    for piece in rest.chunks(chunk) {
        s.push(piece, &mut out);
        assert!(s.buffered() <= MAX + 65_536 + piece.len());
    }
    for f in &out {
        assert!(f.jpeg.starts_with(&[0xff, 0xd8]) && f.jpeg.ends_with(&[0xff, 0xd9]));
        assert!(f.jpeg.len() <= MAX + 65_536);
    }
    s.finish();
});
