//! What DESCRIBE answers: the SDP of one camera's video (RFC 6184 / RFC 7798 parameters, with
//! the parameter sets of its latest keyframe), and the picture size read from its SPS.

use std::fmt::Write;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;

use super::rtp::PAYLOAD_TYPE;
use crate::media::h264::{nal_type, nal_units, Codec};

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
    if let Some((w, h)) = sps.and_then(|sps| crate::media::sps::picture_size(codec, sps)) {
        let _ = write!(s, "a=x-dimensions:{w},{h}\r\n");
    }
    if let Some(r) = rate.filter(|r| r.is_finite() && *r > 0.0) {
        let _ = write!(s, "a=framerate:{}\r\n", (r * 100.0).round() / 100.0);
    }
    let _ = write!(s, "a=control:{TRACK}\r\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPS_720P: &[u8] = &[
        0x67, 0x42, 0xc0, 0x1f, 0xd9, 0x00, 0x50, 0x05, 0xbb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00, 0x10, 0x00,
        0x00, 0x03, 0x03, 0x20, 0xf1, 0x83, 0x24, 0x80,
    ];

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
