//! What DESCRIBE answers: the SDP of one camera's video (RFC 6184 / RFC 7798 parameters, with
//! the parameter sets of its latest keyframe), and the picture size read from its SPS.

use std::fmt::Write;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;

use super::rtp::PAYLOAD_TYPE;
use crate::h264::{nal_type, nal_units, Codec};

/// The control URL of the one track, relative to the camera's URL.
pub const TRACK: &str = "trackID=0";

/// The SDP for a camera's stream starting at `keyframe` (an access unit with parameter sets).
pub fn describe(codec: Codec, keyframe: &[u8], rate: Option<f64>, title: &str, server_ip: &str) -> String {
    // Each distinct set once (cameras often repeat them within a keyframe's unit).
    let sets = |t: u8| -> Vec<String> {
        let mut v: Vec<String> = Vec::new();
        for n in nal_units(keyframe).filter(|n| nal_type(codec, n) == t) {
            let b = B64.encode(n);
            if !v.contains(&b) {
                v.push(b);
            }
        }
        v
    };
    let ip_kind = if server_ip.contains(':') { "IP6" } else { "IP4" };
    let mut s = String::new();
    let session = fastrand::u32(..);
    let _ = write!(
        s,
        "v=0\r\no=- {session} 1 IN {ip_kind} {server_ip}\r\ns={}\r\nc=IN {ip_kind} {}\r\nt=0 0\r\na=control:*\r\na=range:npt=now-\r\nm=video 0 RTP/AVP {PAYLOAD_TYPE}\r\n",
        title.chars().filter(|c| !c.is_control()).collect::<String>(),
        if ip_kind == "IP6" { "::" } else { "0.0.0.0" }
    );
    let sps = nal_units(keyframe).find(|n| nal_type(codec, n) == if codec == Codec::H264 { 7 } else { 33 });
    match codec {
        Codec::H264 => {
            let _ = write!(
                s,
                "a=rtpmap:{PAYLOAD_TYPE} H264/90000\r\na=fmtp:{PAYLOAD_TYPE} packetization-mode=1"
            );
            if let Some(sps) = sps.filter(|s| s.len() >= 4) {
                let _ = write!(s, ";profile-level-id={:02x}{:02x}{:02x}", sps[1], sps[2], sps[3]);
            }
            let mut all = sets(7);
            all.extend(sets(8));
            if !all.is_empty() {
                let _ = write!(s, ";sprop-parameter-sets={}", all.join(","));
            }
        }
        Codec::H265 => {
            let _ = write!(s, "a=rtpmap:{PAYLOAD_TYPE} H265/90000\r\na=fmtp:{PAYLOAD_TYPE} ");
            let parts: Vec<String> = [("vps", 32), ("sps", 33), ("pps", 34)]
                .iter()
                .filter_map(|(name, t)| {
                    let v = sets(*t);
                    (!v.is_empty()).then(|| format!("sprop-{name}={}", v.join(",")))
                })
                .collect();
            s.push_str(&parts.join(";"));
        }
    }
    s.push_str("\r\n");
    if let Some((w, h)) = sps.and_then(|sps| picture_size(codec, sps)) {
        let _ = write!(s, "a=x-dimensions:{w},{h}\r\n");
    }
    if let Some(r) = rate.filter(|r| r.is_finite() && *r > 0.0) {
        let _ = write!(s, "a=framerate:{}\r\n", (r * 100.0).round() / 100.0);
    }
    let _ = write!(s, "a=control:{TRACK}\r\n");
    s
}

/// The picture size an SPS (NAL unit, with its header) says, after cropping.
pub fn picture_size(codec: Codec, sps: &[u8]) -> Option<(u32, u32)> {
    let rbsp = unescape(sps);
    let mut r = Bits::new(&rbsp);
    match codec {
        Codec::H264 => h264_size(&mut r),
        Codec::H265 => h265_size(&mut r),
    }
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
        width = width.checked_sub(sub_w * (l.checked_add(rt)?))?;
        height = height.checked_sub(unit_y * (t.checked_add(b)?))?;
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
        width = width.checked_sub(sub_w * l.checked_add(rt)?)?;
        height = height.checked_sub(sub_h * t.checked_add(b)?)?;
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

    // The SPS x264 writes for 1280x720 (baseline) and 1920x1080 (high), libx265's for 640x360.
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

    #[test]
    fn the_picture_size_comes_from_the_sps_after_cropping() {
        assert_eq!(picture_size(Codec::H264, SPS_720P), Some((1280, 720)));
        assert_eq!(picture_size(Codec::H264, SPS_1080P_HIGH), Some((1920, 1080)));
        assert_eq!(picture_size(Codec::H265, HEVC_SPS_360P), Some((640, 360)));
        // Cut short or garbage: no size, no panic.
        for n in 0..SPS_1080P_HIGH.len() - 4 {
            let _ = picture_size(Codec::H264, &SPS_1080P_HIGH[..n]);
            let _ = picture_size(Codec::H265, &HEVC_SPS_360P[..n]);
        }
        assert_eq!(picture_size(Codec::H264, &[0x67, 0xff, 0xff, 0xff, 0xff]), None);
    }

    #[test]
    fn the_sdp_carries_the_parameter_sets_size_and_rate() {
        let pps: &[u8] = &[0x68, 0xce, 0x3c, 0x80];
        let unit: Vec<u8> = [SPS_720P, pps, SPS_720P, pps, &[0x65, 0x88, 0x84]]
            .iter()
            .flat_map(|n| [&[0, 0, 0, 1][..], n].concat())
            .collect();
        let sdp = describe(Codec::H264, &unit, Some(29.97), "Printer 1", "127.0.0.1");
        assert!(sdp.contains("m=video 0 RTP/AVP 96\r\n"), "{sdp}");
        assert!(sdp.contains("a=rtpmap:96 H264/90000\r\n"), "{sdp}");
        assert!(sdp.contains("profile-level-id=42c01f"), "{sdp}");
        let sets = format!(
            "sprop-parameter-sets={},{}",
            B64.encode(SPS_720P),
            B64.encode([0x68, 0xce, 0x3c, 0x80])
        );
        assert!(sdp.contains(&sets), "{sdp}");
        assert!(sdp.contains("a=x-dimensions:1280,720\r\n"), "{sdp}");
        assert!(sdp.contains("a=framerate:29.97\r\n"), "{sdp}");
        assert!(
            sdp.contains("a=control:trackID=0\r\n") && sdp.contains("s=Printer 1\r\n"),
            "{sdp}"
        );
    }
}
