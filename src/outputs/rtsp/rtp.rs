//! RTP packets from access units: RFC 6184 (H.264) and RFC 7798 (H.265), non-interleaved mode:
//! a NAL unit that fits goes alone, a larger one in fragments (FU-A / FU). Parameter sets travel
//! in-band before every keyframe (the camera sends them there), access unit delimiters are left
//! out, and the last packet of a picture carries the marker bit. No I/O.
//!
//! Hand-written: str0m (the WebRTC stack) keeps its packetizers private, and the rest is a few
//! lines of header layout.

use crate::media::h264::{nal_type, nal_units, Codec};

/// RTP payload bytes per packet at most: with the 12-byte header, IP and UDP it fits any path's
/// 1500-byte MTU, also over a VPN.
pub const MAX_PAYLOAD: usize = 1200;
/// The payload type announced in the SDP.
pub const PAYLOAD_TYPE: u8 = 96;

/// One stream's RTP state: its SSRC, sequence numbers and timestamp offset (random, RFC 3550).
#[derive(Debug)]
pub struct Packetizer {
    codec: Codec,
    ssrc: u32,
    seq: u16,
    offset: u32,
    packet: Vec<u8>,
}

impl Packetizer {
    pub fn new(codec: Codec) -> Packetizer {
        Packetizer {
            codec,
            ssrc: fastrand::u32(..),
            seq: fastrand::u16(..),
            offset: fastrand::u32(..),
            packet: Vec::with_capacity(12 + 3 + MAX_PAYLOAD),
        }
    }

    pub fn codec(&self) -> Codec {
        self.codec
    }

    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// The sequence number of the next packet.
    pub fn next_seq(&self) -> u16 {
        self.seq
    }

    /// The RTP timestamp of a presentation time (90 kHz ticks).
    pub fn timestamp(&self, pts: u64) -> u32 {
        (pts as u32).wrapping_add(self.offset)
    }

    /// The packets of one access unit at `pts`, each handed to `emit` whole (header and payload).
    pub fn packetize(&mut self, data: &[u8], pts: u64, emit: &mut dyn FnMut(&[u8])) {
        let ts = self.timestamp(pts);
        let codec = self.codec;
        let skip = match codec {
            Codec::H264 => 9,
            Codec::H265 => 35,
        };
        let mut nals = nal_units(data).filter(|n| nal_type(codec, n) != skip).peekable();
        while let Some(nal) = nals.next() {
            let last = nals.peek().is_none();
            if nal.len() <= MAX_PAYLOAD {
                self.header(last, ts);
                self.packet.extend_from_slice(nal);
                self.send(emit);
                continue;
            }
            // Fragments: the NAL header is rewritten into the FU indicator and header.
            let (head, body): (Vec<u8>, &[u8]) = match self.codec {
                Codec::H264 => (vec![(nal[0] & 0xe0) | 28, nal[0] & 0x1f], &nal[1..]),
                Codec::H265 => {
                    if nal.len() < 3 {
                        continue;
                    }
                    (
                        vec![(nal[0] & 0x81) | (49 << 1), nal[1], (nal[0] >> 1) & 0x3f],
                        &nal[2..],
                    )
                }
            };
            let room = MAX_PAYLOAD - head.len();
            let mut chunks = body.chunks(room).peekable();
            let mut first = true;
            while let Some(chunk) = chunks.next() {
                let end = chunks.peek().is_none();
                self.header(last && end, ts);
                let (fu, kind) = head.split_at(head.len() - 1);
                self.packet.extend_from_slice(fu);
                self.packet
                    .push(kind[0] | if first { 0x80 } else { 0 } | if end { 0x40 } else { 0 });
                self.packet.extend_from_slice(chunk);
                self.send(emit);
                first = false;
            }
        }
    }

    fn header(&mut self, marker: bool, ts: u32) {
        self.packet.clear();
        self.packet.push(0x80);
        self.packet.push(PAYLOAD_TYPE | if marker { 0x80 } else { 0 });
        self.packet.extend_from_slice(&self.seq.to_be_bytes());
        self.packet.extend_from_slice(&ts.to_be_bytes());
        self.packet.extend_from_slice(&self.ssrc.to_be_bytes());
    }

    fn send(&mut self, emit: &mut dyn FnMut(&[u8])) {
        emit(&self.packet);
        self.seq = self.seq.wrapping_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packets(codec: Codec, data: &[u8]) -> (Packetizer, Vec<Vec<u8>>) {
        let mut p = Packetizer::new(codec);
        let mut out = Vec::new();
        p.packetize(data, 1000, &mut |pkt| out.push(pkt.to_vec()));
        (p, out)
    }

    /// The NAL units a receiver rebuilds from the packets (RFC 6184 / 7798 depacketizing).
    fn rebuild(codec: Codec, pkts: &[Vec<u8>]) -> Vec<Vec<u8>> {
        let mut nals: Vec<Vec<u8>> = Vec::new();
        for p in pkts {
            let payload = &p[12..];
            match codec {
                Codec::H264 if payload[0] & 0x1f == 28 => {
                    if payload[1] & 0x80 != 0 {
                        nals.push(vec![(payload[0] & 0xe0) | (payload[1] & 0x1f)]);
                    }
                    nals.last_mut().unwrap().extend_from_slice(&payload[2..]);
                }
                Codec::H265 if (payload[0] >> 1) & 0x3f == 49 => {
                    if payload[2] & 0x80 != 0 {
                        nals.push(vec![(payload[0] & 0x81) | ((payload[2] & 0x3f) << 1), payload[1]]);
                    }
                    nals.last_mut().unwrap().extend_from_slice(&payload[3..]);
                }
                _ => nals.push(payload.to_vec()),
            }
        }
        nals
    }

    fn unit(nals: &[Vec<u8>]) -> Vec<u8> {
        nals.iter()
            .flat_map(|n| [&[0, 0, 0, 1][..], n].concat())
            .collect()
    }

    #[test]
    fn h264_small_units_go_alone_large_ones_in_fragments_and_the_last_packet_is_marked() {
        let sps = vec![0x67, 0x42, 0xc0, 0x1f];
        let pps = vec![0x68, 0xce, 0x3c, 0x80];
        let aud = vec![0x09, 0xf0];
        let idr: Vec<u8> = [0x65]
            .into_iter()
            .chain((0..5000).map(|i| (i % 251) as u8 | 1))
            .collect();
        let (p, pkts) = packets(Codec::H264, &unit(&[aud, sps.clone(), pps.clone(), idr.clone()]));
        assert_eq!(rebuild(Codec::H264, &pkts), [sps, pps, idr]);
        assert!(pkts.iter().all(|p| p.len() <= 12 + MAX_PAYLOAD));
        let marked: Vec<bool> = pkts.iter().map(|p| p[1] & 0x80 != 0).collect();
        assert_eq!(marked.iter().filter(|m| **m).count(), 1);
        assert!(marked.last().unwrap());
        // Consecutive sequence numbers, one timestamp, one SSRC.
        for (i, pk) in pkts.iter().enumerate() {
            assert_eq!(pk[0], 0x80);
            assert_eq!(pk[1] & 0x7f, PAYLOAD_TYPE);
            let seq = u16::from_be_bytes([pk[2], pk[3]]);
            assert_eq!(seq, p.next_seq().wrapping_sub((pkts.len() - i) as u16));
            assert_eq!(
                u32::from_be_bytes(pk[4..8].try_into().unwrap()),
                p.timestamp(1000)
            );
            assert_eq!(u32::from_be_bytes(pk[8..12].try_into().unwrap()), p.ssrc());
        }
    }

    #[test]
    fn h265_fragments_carry_the_two_byte_header() {
        let vps = vec![0x40, 0x01, 0x0c];
        let slice: Vec<u8> = [0x26, 0x01]
            .into_iter()
            .chain((0..3000).map(|i| (i % 200) as u8 | 1))
            .collect();
        let aud = vec![0x46, 0x01, 0x50];
        let (_, pkts) = packets(Codec::H265, &unit(&[aud, vps.clone(), slice.clone()]));
        assert_eq!(rebuild(Codec::H265, &pkts), [vps, slice]);
        assert!(pkts.len() > 3);
    }
}
