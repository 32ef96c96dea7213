//! The H.264/H.265 access-unit splitter against generated streams cut at arbitrary points: every
//! unit comes out whole and in order, keyframes and parameter sets are recognised, garbage and
//! oversized units are dropped and counted, memory stays bounded.

use farmcam::media::h264::{AccessUnit, AuSplitter, Codec};
use proptest::prelude::*;

/// One generated unit: its NAL units (header bytes included) and whether it is a keyframe.
#[derive(Clone, Debug)]
struct Unit {
    nals: Vec<Vec<u8>>,
    keyframe: bool,
    sps: bool,
}

fn payload(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(seed);
    // No zero bytes: a payload never contains a start code (real encoders escape them).
    (0..len).map(|_| rng.u8(1..)).collect()
}

fn unit(codec: Codec, keyframe: bool, params: bool, slices: usize, seed: u64) -> Unit {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut nals = Vec::new();
    let header = |t: u8| -> Vec<u8> {
        match codec {
            Codec::H264 => vec![0x60 | t],
            Codec::H265 => vec![t << 1, 0x01],
        }
    };
    let (aud, sps, pps, sei, idr, non_idr) = match codec {
        Codec::H264 => (9, 7, 8, 6, 5, 1),
        Codec::H265 => (35, 33, 34, 39, 19, 1),
    };
    if rng.bool() {
        let mut n = header(aud);
        n.push(0xf0);
        nals.push(n);
    }
    if params {
        for t in [sps, pps] {
            let mut n = header(t);
            n.extend(payload(rng.usize(1..20), rng.u64(..)));
            nals.push(n);
        }
    }
    if rng.bool() {
        let mut n = header(sei);
        n.extend(payload(rng.usize(1..10), rng.u64(..)));
        nals.push(n);
    }
    for i in 0..slices {
        let mut n = header(if keyframe { idr } else { non_idr });
        // The first slice header bit: 1 for the picture's first slice.
        let first = if i == 0 { 0x80 } else { 0x40 };
        n.push(first | rng.u8(1..0x3f));
        n.extend(payload(rng.usize(1..400), rng.u64(..)));
        nals.push(n);
    }
    Unit {
        nals,
        keyframe,
        sps: params,
    }
}

fn annex_b(units: &[Unit], four_byte: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for u in units {
        for n in &u.nals {
            out.extend_from_slice(if four_byte {
                &[0, 0, 0, 1][..]
            } else {
                &[0, 0, 1][..]
            });
            out.extend_from_slice(n);
        }
    }
    out
}

fn expected(u: &Unit) -> Vec<u8> {
    u.nals
        .iter()
        .flat_map(|n| [0, 0, 0, 1].iter().chain(n).copied())
        .collect()
}

fn split(codec: Codec, stream: &[u8], cuts: &[usize], max: usize) -> (Vec<AccessUnit>, AuSplitter, usize) {
    let mut s = AuSplitter::new(codec, max);
    let mut out = Vec::new();
    let mut at = 0;
    let mut peak = 0;
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
    points.sort();
    points.push(stream.len());
    for p in points {
        s.push(&stream[at..p.max(at)], &mut out);
        peak = peak.max(s.buffered());
        at = p.max(at);
    }
    s.finish(&mut out);
    (out, s, peak)
}

fn units(codec: Codec, n: usize, seed: u64) -> Vec<Unit> {
    let mut rng = fastrand::Rng::with_seed(seed);
    (0..n)
        .map(|i| {
            let key = i % 5 == 0;
            unit(codec, key, key, rng.usize(1..4), rng.u64(..))
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, .. ProptestConfig::default() })]

    #[test]
    fn every_unit_comes_out_whole_wherever_the_stream_is_cut(
        h265 in any::<bool>(),
        four_byte in any::<bool>(),
        n in 1usize..30,
        seed in any::<u64>(),
        cuts in proptest::collection::vec(any::<usize>(), 0..40),
    ) {
        let codec = if h265 { Codec::H265 } else { Codec::H264 };
        let units = units(codec, n, seed);
        let stream = annex_b(&units, four_byte);
        let (out, s, _) = split(codec, &stream, &cuts, 1 << 20);
        prop_assert_eq!(out.len(), units.len());
        for (got, want) in out.iter().zip(&units) {
            prop_assert_eq!(&got.data[..], &expected(want)[..]);
            prop_assert_eq!(got.keyframe, want.keyframe);
            prop_assert_eq!(got.sps.is_some(), want.sps);
        }
        prop_assert_eq!(s.stats().oversized, 0);
        prop_assert_eq!(s.buffered(), 0);
    }

    #[test]
    fn garbage_never_panics_and_memory_stays_bounded(
        h265 in any::<bool>(),
        bytes in proptest::collection::vec(any::<u8>(), 0..20_000),
        cuts in proptest::collection::vec(any::<usize>(), 0..40),
    ) {
        let codec = if h265 { Codec::H265 } else { Codec::H264 };
        let max = 4096;
        let (out, _, peak) = split(codec, &bytes, &cuts, max);
        for u in &out {
            prop_assert!(u.data.len() <= max);
            prop_assert!(u.data.starts_with(&[0, 0, 0, 1]));
        }
        prop_assert!(peak <= 2 * max + 20_000);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, .. ProptestConfig::default() })]

    /// Any one NAL unit oversized (a picture's first slice, a parameter set, the last slice),
    /// the stream fed in small pieces: only its own unit is dropped; the picture before it,
    /// complete when the oversized NAL starts arriving, still comes out.
    #[test]
    fn an_oversized_nal_drops_only_its_own_unit(
        h265 in any::<bool>(),
        n in 3usize..12,
        seed in any::<u64>(),
        victim in any::<usize>(),
        nal_pick in any::<usize>(),
        piece in 1usize..200,
    ) {
        let codec = if h265 { Codec::H265 } else { Codec::H264 };
        let mut us = units(codec, n, seed);
        let v = 1 + victim % (n - 1);
        let k = nal_pick % us[v].nals.len();
        us[v].nals[k].extend(payload(5000, seed ^ 1));
        let stream = annex_b(&us, true);
        let cuts: Vec<usize> = (piece..stream.len()).step_by(piece).collect();
        let (out, s, _) = split(codec, &stream, &cuts, 4096);
        let want: Vec<Vec<u8>> = us.iter().enumerate().filter(|(i, _)| *i != v).map(|(_, u)| expected(u)).collect();
        let got: Vec<Vec<u8>> = out.iter().map(|u| u.data.to_vec()).collect();
        prop_assert_eq!(got.len(), want.len(), "unit {} of {} oversized", v, n);
        prop_assert!(got == want, "unit {} of {} oversized: other units changed", v, n);
        prop_assert_eq!(s.stats().oversized, 1);
    }
}

#[test]
fn oversized_units_are_dropped_and_the_rest_still_come_out() {
    let mut us = units(Codec::H264, 6, 3);
    us[2].nals.last_mut().unwrap().extend(payload(10_000, 9));
    let stream = annex_b(&us, true);
    let (out, s, peak) = split(Codec::H264, &stream, &[100, 5000, 7000], 4096);
    assert_eq!(out.len(), 5);
    assert_eq!(s.stats().oversized, 1);
    assert!(peak <= 2 * 4096 + 7000, "{peak}");
}
