//! What a sequence parameter set says: the picture size (H.264 and H.265, after cropping) and the
//! frame rate of an H.264 SPS's VUI timing. Read from the NAL unit's bits; no I/O, and input of
//! any shape (cut short, garbage) gives `None`, never a panic.

use crate::media::h264::Codec;

/// The picture size an SPS (NAL unit, with its header) says, after cropping.
pub fn picture_size(codec: Codec, sps: &[u8]) -> Option<(u32, u32)> {
    let rbsp = unescape(sps);
    let mut r = Bits::new(&rbsp);
    match codec {
        Codec::H264 => h264_size(&mut r),
        Codec::H265 => h265_size(&mut r),
    }
}

/// The frame rate an H.264 SPS's VUI timing says (`time_scale / (2 × num_units_in_tick)`),
/// if it says one; `None` for H.265 (not read) and for streams without timing.
pub fn frame_rate(codec: Codec, sps: &[u8]) -> Option<f64> {
    if codec != Codec::H264 {
        return None;
    }
    let rbsp = unescape(sps);
    let mut r = Bits::new(&rbsp);
    h264_size(&mut r)?;
    if !r.bit()? {
        return None; // no VUI
    }
    if r.bit()? {
        // aspect_ratio_idc, and for Extended_SAR its width and height
        if r.bits(8)? == 255 {
            r.skip(32)?;
        }
    }
    if r.bit()? {
        r.skip(1)?; // overscan_appropriate_flag
    }
    if r.bit()? {
        r.skip(4)?; // video_format, video_full_range_flag
        if r.bit()? {
            r.skip(24)?; // colour primaries, transfer, matrix
        }
    }
    if r.bit()? {
        r.ue()?;
        r.ue()?; // chroma sample locations
    }
    if !r.bit()? {
        return None; // no timing_info
    }
    let units = r.bits(32)?;
    let scale = r.bits(32)?;
    let fps = f64::from(scale) / (2.0 * f64::from(units));
    (units > 0 && fps.is_finite() && (0.1..=240.0).contains(&fps)).then_some(fps)
}

fn h264_size(r: &mut Bits) -> Option<(u32, u32)> {
    r.skip(8)?; // NAL header
    let profile = r.bits(8)?;
    r.skip(16)?; // constraint flags, level
    r.ue()?; // seq_parameter_set_id
    let mut chroma = 1;
    let mut separate = false;
    if matches!(
        profile,
        100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135
    ) {
        chroma = r.ue()?;
        if chroma == 3 {
            separate = r.bit()?;
        }
        r.ue()?;
        r.ue()?; // bit depths
        r.skip(1)?;
        if r.bit()? {
            for i in 0..if chroma == 3 { 12 } else { 8 } {
                if r.bit()? {
                    // scaling_list(): delta_scale until the next scale is 0
                    let n = if i < 6 { 16 } else { 64 };
                    let (mut last, mut next) = (8i64, 8i64);
                    for _ in 0..n {
                        if next != 0 {
                            next = (last + r.se()? + 256) % 256;
                        }
                        if next != 0 {
                            last = next;
                        }
                    }
                }
            }
        }
    }
    r.ue()?; // log2_max_frame_num_minus4
    match r.ue()? {
        0 => {
            r.ue()?;
        }
        1 => {
            r.skip(1)?;
            r.se()?;
            r.se()?;
            for _ in 0..r.ue()?.min(255) {
                r.se()?;
            }
        }
        _ => {}
    }
    r.ue()?; // max_num_ref_frames
    r.skip(1)?;
    let w_mbs = r.ue()? + 1;
    let h_units = r.ue()? + 1;
    let frame_mbs_only = r.bit()?;
    if !frame_mbs_only {
        r.skip(1)?;
    }
    r.skip(1)?;
    let mut width = w_mbs.checked_mul(16)?;
    let mut height = h_units
        .checked_mul(16)?
        .checked_mul(if frame_mbs_only { 1 } else { 2 })?;
    if r.bit()? {
        let (l, rt, t, b) = (r.ue()?, r.ue()?, r.ue()?, r.ue()?);
        let (sub_w, sub_h) = match (chroma, separate) {
            (0, _) | (3, true) => (1, 1),
            (1, _) => (2, 2),
            (2, _) => (2, 1),
            _ => (1, 1),
        };
        let unit_y = sub_h * if frame_mbs_only { 1 } else { 2 };
        width = width.checked_sub(l.checked_add(rt)?.checked_mul(sub_w)?)?;
        height = height.checked_sub(t.checked_add(b)?.checked_mul(unit_y)?)?;
    }
    (width > 0 && height > 0).then_some((width, height))
}

fn h265_size(r: &mut Bits) -> Option<(u32, u32)> {
    r.skip(16)?; // NAL header
    r.skip(4)?; // sps_video_parameter_set_id
    let sub_layers = r.bits(3)?;
    r.skip(1)?;
    // profile_tier_level(1, sub_layers)
    r.skip(96)?;
    let mut present = Vec::new();
    for _ in 0..sub_layers {
        present.push((r.bit()?, r.bit()?));
    }
    if sub_layers > 0 {
        r.skip(2 * (8 - sub_layers as usize))?;
    }
    for (profile, level) in present {
        if profile {
            r.skip(88)?;
        }
        if level {
            r.skip(8)?;
        }
    }
    r.ue()?; // sps_seq_parameter_set_id
    let chroma = r.ue()?;
    let separate = chroma == 3 && r.bit()?;
    let mut width = r.ue()?;
    let mut height = r.ue()?;
    if r.bit()? {
        let (l, rt, t, b) = (r.ue()?, r.ue()?, r.ue()?, r.ue()?);
        let (sub_w, sub_h) = match (chroma, separate) {
            (1, _) => (2, 2),
            (2, _) => (2, 1),
            _ => (1, 1),
        };
        width = width.checked_sub(l.checked_add(rt)?.checked_mul(sub_w)?)?;
        height = height.checked_sub(t.checked_add(b)?.checked_mul(sub_h)?)?;
    }
    (width > 0 && height > 0).then_some((width, height))
}

/// The NAL unit without its emulation prevention bytes (`00 00 03` → `00 00`).
fn unescape(nal: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(nal.len());
    let mut zeros = 0;
    for &b in nal {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        out.push(b);
    }
    out
}

/// A big-endian bit reader with Exp-Golomb codes; `None` past the end.
struct Bits<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> Bits<'a> {
    fn new(data: &'a [u8]) -> Self {
        Bits { data, at: 0 }
    }

    fn bit(&mut self) -> Option<bool> {
        let byte = *self.data.get(self.at / 8)?;
        let b = byte >> (7 - self.at % 8) & 1;
        self.at += 1;
        Some(b == 1)
    }

    fn bits(&mut self, n: u32) -> Option<u32> {
        let mut v = 0;
        for _ in 0..n {
            v = v << 1 | u32::from(self.bit()?);
        }
        Some(v)
    }

    fn skip(&mut self, n: usize) -> Option<()> {
        self.at += n;
        (self.at <= self.data.len() * 8).then_some(())
    }

    fn ue(&mut self) -> Option<u32> {
        let mut zeros = 0;
        while !self.bit()? {
            zeros += 1;
            if zeros > 31 {
                return None;
            }
        }
        ((1u64 << zeros) - 1 + u64::from(self.bits(zeros)?))
            .try_into()
            .ok()
    }

    fn se(&mut self) -> Option<i64> {
        let k = i64::from(self.ue()?);
        Some(if k % 2 == 1 { (k + 1) / 2 } else { -(k / 2) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The SPS x264 writes for 1280x720 (baseline) and 1920x1080 (high), libx265's for 640x360,
    // and GStreamer's x264enc's for the test camera (320x240 at 15 fps, with VUI timing).
    const SPS_720P: &[u8] = &[
        0x67, 0x42, 0xc0, 0x1f, 0xd9, 0x00, 0x50, 0x05, 0xbb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00, 0x10, 0x00,
        0x00, 0x03, 0x03, 0x20, 0xf1, 0x83, 0x24, 0x80,
    ];
    const SPS_1080P_HIGH: &[u8] = &[
        0x67, 0x64, 0x00, 0x28, 0xac, 0xd9, 0x40, 0x78, 0x02, 0x27, 0xe5, 0xc0, 0x44, 0x00, 0x00, 0x03, 0x00,
        0x04, 0x00, 0x00, 0x03, 0x00, 0xc8, 0x3c, 0x60, 0xc6, 0x58,
    ];
    const HEVC_SPS_360P: &[u8] = &[
        0x42, 0x01, 0x01, 0x04, 0x08, 0x00, 0x00, 0x03, 0x00, 0x9e, 0x08, 0x00, 0x00, 0x03, 0x00, 0x00, 0x3f,
        0x90, 0x00, 0xa0, 0x40, 0x2d, 0x2c, 0xb2, 0xb3, 0x49, 0x26, 0x57, 0x80, 0xb7, 0x02, 0x02, 0x00, 0x04,
        0x00, 0x00, 0x03, 0x00, 0x04, 0x00, 0x00, 0x03, 0x00, 0x64, 0x20,
    ];
    const SPS_GST_15FPS: &[u8] = &[
        0x67, 0x42, 0xc0, 0x15, 0xda, 0x05, 0x07, 0xec, 0x05, 0xa8, 0x30, 0x30, 0x35, 0x28, 0x00, 0x00, 0x03,
        0x00, 0x08, 0x00, 0x00, 0x03, 0x00, 0xf4, 0x78, 0xb1, 0x75,
    ];

    #[test]
    fn the_picture_size_comes_from_the_sps_after_cropping() {
        assert_eq!(picture_size(Codec::H264, SPS_720P), Some((1280, 720)));
        assert_eq!(picture_size(Codec::H264, SPS_1080P_HIGH), Some((1920, 1080)));
        assert_eq!(picture_size(Codec::H265, HEVC_SPS_360P), Some((640, 360)));
        assert_eq!(picture_size(Codec::H264, SPS_GST_15FPS), Some((320, 240)));
        // Cut short or garbage: no size, no panic.
        for n in 0..SPS_1080P_HIGH.len() - 4 {
            let _ = picture_size(Codec::H264, &SPS_1080P_HIGH[..n]);
            let _ = picture_size(Codec::H265, &HEVC_SPS_360P[..n]);
            let _ = frame_rate(Codec::H264, &SPS_GST_15FPS[..n]);
        }
        assert_eq!(picture_size(Codec::H264, &[0x67, 0xff, 0xff, 0xff, 0xff]), None);
    }

    /// Bits written MSB first, with Exp-Golomb codes, to build SPSs a camera could send.
    struct BitWriter(Vec<u8>, u32);

    impl BitWriter {
        fn bit(&mut self, b: bool) {
            if self.1 % 8 == 0 {
                self.0.push(0);
            }
            if b {
                *self.0.last_mut().unwrap() |= 0x80 >> (self.1 % 8);
            }
            self.1 += 1;
        }
        fn bits(&mut self, v: u64, n: u32) {
            for i in (0..n).rev() {
                self.bit(v >> i & 1 == 1);
            }
        }
        fn ue(&mut self, v: u32) {
            let v = u64::from(v) + 1;
            let n = 64 - v.leading_zeros();
            self.bits(0, n - 1);
            self.bits(v, n);
        }
    }

    /// A baseline SPS of `w_mbs` x `h_mbs` macroblocks cropped by `crop` (left, right, top, bottom).
    fn baseline_sps(w_mbs: u32, h_mbs: u32, crop: (u32, u32, u32, u32)) -> Vec<u8> {
        let mut b = BitWriter(Vec::new(), 0);
        b.bits(0x67, 8);
        b.bits(66, 8); // profile: baseline
        b.bits(0, 8);
        b.bits(30, 8); // level
        b.ue(0); // sps id
        b.ue(0); // log2_max_frame_num - 4
        b.ue(2); // poc type
        b.ue(1); // max_num_ref_frames
        b.bit(false);
        b.ue(w_mbs - 1);
        b.ue(h_mbs - 1);
        b.bit(true); // frame_mbs_only
        b.bit(true); // direct_8x8
        b.bit(true); // cropping
        for c in [crop.0, crop.1, crop.2, crop.3] {
            b.ue(c);
        }
        b.bit(false); // no VUI
        b.bit(true); // stop bit
        b.0
    }

    #[test]
    fn crop_offsets_that_overflow_give_no_size_and_no_panic() {
        assert_eq!(
            picture_size(Codec::H264, &baseline_sps(80, 45, (0, 0, 0, 0))),
            Some((1280, 720))
        );
        assert_eq!(
            picture_size(Codec::H264, &baseline_sps(120, 68, (0, 0, 0, 4))),
            Some((1920, 1080))
        );
        // Offsets whose sum fits but whose double (4:2:0 crop units) does not.
        let huge = u32::MAX / 2 + 1;
        assert_eq!(
            picture_size(Codec::H264, &baseline_sps(80, 45, (huge, 0, 0, 0))),
            None
        );
        assert_eq!(
            picture_size(Codec::H264, &baseline_sps(80, 45, (0, 0, huge, 1))),
            None
        );
        // And anything at all: no panic.
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..20_000 {
            let mut sps = baseline_sps(80, 45, (0, 0, 0, 0));
            for _ in 0..rng.usize(1..4) {
                let i = rng.usize(1..sps.len());
                sps[i] = rng.u8(..);
            }
            sps.truncate(rng.usize(1..=sps.len()));
            for codec in [Codec::H264, Codec::H265] {
                let _ = picture_size(codec, &sps);
                let _ = frame_rate(codec, &sps);
            }
        }
    }

    #[test]
    fn the_frame_rate_comes_from_the_vui_timing_when_there_is_one() {
        assert_eq!(frame_rate(Codec::H264, SPS_GST_15FPS), Some(15.0));
        assert_eq!(frame_rate(Codec::H265, HEVC_SPS_360P), None);
    }
}
