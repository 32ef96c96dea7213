//! The JPEG splitter against real encoded JPEGs (baseline, restart markers, progressive), split at
//! arbitrary boundaries, with garbage, truncation and oversized frames.

use std::sync::OnceLock;

use farmcam::media::jpeg::{Split, Splitter};
use farmcam::media::render::Canvas;
use proptest::prelude::*;

/// A pool of distinct real JPEGs: sizes, restart intervals, progressive, noisy content (so the
/// entropy data holds many 0xFF00 stuffings).
fn pool() -> &'static Vec<(Vec<u8>, u32, u32)> {
    static POOL: OnceLock<Vec<(Vec<u8>, u32, u32)>> = OnceLock::new();
    POOL.get_or_init(|| {
        let mut rng = fastrand::Rng::with_seed(7);
        let mut out = Vec::new();
        for (i, (w, h)) in [(16u32, 16u32), (64, 48), (161, 33), (320, 240), (40, 300)]
            .iter()
            .enumerate()
        {
            let mut c = Canvas::new(*w, *h, [0, 0, 0]);
            for px in c.rgb.iter_mut() {
                *px = rng.u8(..);
            }
            out.push((c.encode(i % 2 == 0), *w, *h));
            let mut e = turbojpeg::Compressor::new().unwrap();
            e.set_quality(75).unwrap();
            e.set_progressive(true).unwrap();
            let image = turbojpeg::Image {
                pixels: &c.rgb[..],
                width: *w as usize,
                pitch: *w as usize * 3,
                height: *h as usize,
                format: turbojpeg::PixelFormat::RGB,
            };
            out.push((e.compress_to_vec(image).unwrap(), *w, *h));
        }
        out
    })
}

fn split_all(stream: &[u8], cuts: &[usize], max: usize) -> (Vec<Split>, Splitter, usize) {
    let mut s = Splitter::new(max);
    let mut out = Vec::new();
    let mut peak = 0;
    let mut at = 0;
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
    cuts.sort();
    for c in cuts.into_iter().chain([stream.len()]) {
        if c >= at {
            s.push(&stream[at..c], &mut out);
            peak = peak.max(s.buffered());
            at = c;
        }
    }
    (out, s, peak)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, .. ProptestConfig::default() })]

    /// Any sequence of valid JPEGs, split at arbitrary boundaries, yields exactly those frames.
    #[test]
    fn valid_sequences_come_out_exactly(picks in prop::collection::vec(0usize..10, 1..8), cuts in prop::collection::vec(any::<usize>(), 0..40)) {
        let pool = pool();
        let mut stream = Vec::new();
        for p in &picks {
            stream.extend_from_slice(&pool[*p].0);
        }
        let (out, s, _) = split_all(&stream, &cuts, 8 << 20);
        prop_assert_eq!(out.len(), picks.len());
        for (f, p) in out.iter().zip(&picks) {
            prop_assert_eq!(&f.jpeg[..], &pool[*p].0[..]);
            prop_assert_eq!((f.width, f.height), (pool[*p].1, pool[*p].2));
        }
        prop_assert_eq!(s.stats().truncated + s.stats().oversized + s.stats().garbage_bytes, 0);
    }

    /// Garbage between frames is skipped and counted; the frames survive.
    #[test]
    fn garbage_between_frames_is_skipped(picks in prop::collection::vec(0usize..10, 1..5), junk in prop::collection::vec(any::<u8>(), 0..300), cuts in prop::collection::vec(any::<usize>(), 0..20)) {
        // Junk must not contain SOI, or it would legitimately start a (broken) frame.
        let junk: Vec<u8> = junk.into_iter().map(|b| if b == 0xd8 { 0 } else { b }).collect();
        let pool = pool();
        let mut stream = Vec::new();
        for p in &picks {
            stream.extend_from_slice(&junk);
            stream.extend_from_slice(&pool[*p].0);
        }
        let (out, _, _) = split_all(&stream, &cuts, 8 << 20);
        prop_assert_eq!(out.len(), picks.len());
        for (f, p) in out.iter().zip(&picks) {
            prop_assert_eq!(&f.jpeg[..], &pool[*p].0[..]);
        }
    }

    /// A frame cut off anywhere is dropped and counted; the next frame is intact.
    #[test]
    fn truncated_frame_is_dropped(a in 0usize..10, b in 0usize..10, cut in any::<prop::sample::Index>()) {
        let pool = pool();
        let first = &pool[a].0;
        let keep = 4 + cut.index(first.len() - 6); // past SOI, before EOI
        let mut stream = first[..keep].to_vec();
        stream.extend_from_slice(&pool[b].0);
        let (out, s, _) = split_all(&stream, &[], 8 << 20);
        prop_assert_eq!(out.len(), 1);
        prop_assert_eq!(&out[0].jpeg[..], &pool[b].0[..]);
        prop_assert_eq!(s.stats().truncated, 1);
    }

    /// Random bytes (rich in markers and real JPEG pieces) never panic, never yield a frame that is
    /// not SOI..EOI, and the buffer stays bounded.
    #[test]
    fn garbage_never_panics_and_memory_is_bounded(seed in any::<u64>(), chunks in 1usize..60) {
        let mut rng = fastrand::Rng::with_seed(seed);
        let pool = pool();
        let max = 4096;
        let mut s = Splitter::new(max);
        let mut out = Vec::new();
        for _ in 0..chunks {
            let mut c: Vec<u8> = (0..rng.usize(0..3000))
                .map(|_| match rng.u8(0..12) {
                    0 | 1 => 0xff,
                    2 => 0xd8,
                    3 => 0xd9,
                    4 => 0xda,
                    _ => rng.u8(..),
                })
                .collect();
            if rng.bool() {
                let (j, _, _) = &pool[rng.usize(0..pool.len())];
                let a = rng.usize(0..j.len());
                let b = rng.usize(a..=j.len());
                c.extend_from_slice(&j[a..b]);
            }
            s.push(&c, &mut out);
            prop_assert!(s.buffered() <= max + 65_536 + c.len(), "held {}", s.buffered());
        }
        for f in &out {
            prop_assert!(f.jpeg.starts_with(&[0xff, 0xd8]) && f.jpeg.ends_with(&[0xff, 0xd9]));
        }
    }
}

#[test]
fn oversized_frames_are_dropped_and_counted() {
    let pool = pool();
    let (big, _, _) = &pool[6]; // 320x240 of noise
    let (small, w, h) = &pool[0];
    let mut stream = big.clone();
    stream.extend_from_slice(small);
    stream.extend_from_slice(big);
    stream.extend_from_slice(small);
    let cuts: Vec<usize> = (0..stream.len()).step_by(1000).collect();
    let (out, s, peak) = split_all(&stream, &cuts, small.len() + 100);
    assert_eq!(out.len(), 2);
    assert!(out
        .iter()
        .all(|f| f.jpeg[..] == small[..] && (f.width, f.height) == (*w, *h)));
    assert_eq!(s.stats().oversized, 2);
    assert!(peak < small.len() + 100 + 1000 + 65_536, "peak {peak}");
}

#[test]
fn stream_end_mid_frame_counts_a_truncation() {
    let (jpeg, _, _) = &pool()[3];
    let mut s = Splitter::new(1 << 20);
    let mut out = Vec::new();
    s.push(&jpeg[..jpeg.len() / 2], &mut out);
    s.finish();
    assert!(out.is_empty());
    assert_eq!(s.stats().truncated, 1);
}

/// A frame whose APP1 segment carries an EXIF-style thumbnail (a whole JPEG inside the segment)
/// comes out as one frame, not as the thumbnail.
#[test]
fn embedded_thumbnail_is_part_of_the_frame() {
    let pool = pool();
    let (thumb, _, _) = &pool[0];
    let (main, w, h) = &pool[4];
    let payload: Vec<u8> = b"Exif\0\0".iter().chain(thumb.iter()).copied().collect();
    let mut framed = vec![0xff, 0xd8, 0xff, 0xe1];
    framed.extend_from_slice(&((payload.len() + 2) as u16).to_be_bytes());
    framed.extend_from_slice(&payload);
    framed.extend_from_slice(&main[2..]);
    let mut stream = framed.clone();
    stream.extend_from_slice(&framed);
    for step in [1, 7, 100, stream.len()] {
        let cuts: Vec<usize> = (0..stream.len()).step_by(step).collect();
        let (out, s, _) = split_all(&stream, &cuts, 1 << 20);
        assert_eq!(out.len(), 2, "step {step}");
        assert!(out
            .iter()
            .all(|f| f.jpeg[..] == framed[..] && (f.width, f.height) == (*w, *h)));
        assert_eq!(s.stats().truncated, 0);
    }
}
