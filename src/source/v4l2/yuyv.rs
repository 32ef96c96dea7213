//! YUYV (YUV 4:2:2, packed) camera frames to JPEG, with libjpeg-turbo.
//!
//! The camera's Y, U and V samples go straight into the encoder's planes (no RGB round trip):
//! Y as it is, U and V averaged over each pair of lines to 4:2:0, as webcams' own MJPEG does.
//! A camera mounted sideways or upside down is turned here, before encoding, at the cost of
//! moving the planes' bytes.

use crate::frame::Size;
use crate::media::codec::{CodecError, I420};
use crate::media::orientation::Op;

/// The default JPEG quality for encoded V4L2 frames (`quality` overrides it).
pub const DEFAULT_QUALITY: u8 = 85;

/// One YUYV frame as the driver lays it out.
pub struct Yuyv<'a> {
    pub data: &'a [u8],
    pub width: u32,
    pub height: u32,
    /// Bytes per line (at least `2 * width`; drivers may pad lines).
    pub stride: u32,
}

impl Yuyv<'_> {
    /// Whether `data` holds every line the format promises (YUYV widths are even: one U and V per
    /// pixel pair).
    pub fn is_complete(&self) -> bool {
        self.width >= 2
            && self.width % 2 == 0
            && self.height >= 1
            && self.width <= u16::MAX as u32
            && self.height <= u16::MAX as u32
            && self.stride >= self.width * 2
            && self.data.len()
                >= (self.stride as usize) * (self.height as usize - 1) + self.width as usize * 2
    }

    /// Planar 4:2:0: Y as it is; U and V of each two lines averaged.
    pub fn to_i420(&self) -> I420 {
        let (w, h) = (self.width as usize, self.height as usize);
        let size = Size {
            width: self.width,
            height: self.height,
        };
        let c = I420::chroma_size(size);
        let (cw, ch) = (c.width as usize, c.height as usize);
        let mut y = vec![0u8; w * h];
        let mut u = vec![0u8; cw * ch];
        let mut v = vec![0u8; cw * ch];
        let line = |r: usize| &self.data[r * self.stride as usize..][..w * 2];
        for (r, out) in y.chunks_exact_mut(w).enumerate() {
            for (o, px) in out.iter_mut().zip(line(r).chunks_exact(2)) {
                *o = px[0];
            }
        }
        for (r, (uo, vo)) in u.chunks_exact_mut(cw).zip(v.chunks_exact_mut(cw)).enumerate() {
            let (a, b) = (line(2 * r), line((2 * r + 1).min(h - 1)));
            for ((uo, vo), (pa, pb)) in uo
                .iter_mut()
                .zip(vo.iter_mut())
                .zip(a.chunks_exact(4).zip(b.chunks_exact(4)))
            {
                *uo = (pa[1] as u16 + pb[1] as u16).div_ceil(2) as u8;
                *vo = (pa[3] as u16 + pb[3] as u16).div_ceil(2) as u8;
            }
        }
        I420 { y, u, v, size }
    }

    /// Encode to a baseline JPEG (4:2:0) at `quality` (1..=100), laid down by `op`.
    pub fn encode(&self, quality: u8, op: Op) -> Result<Vec<u8>, CodecError> {
        self.to_i420().turned(op).encode(quality)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_heights_and_padded_lines_are_encoded_whole() {
        // 4x3 pixels, lines padded to 12 bytes.
        let mut data = Vec::new();
        for r in 0..3u8 {
            data.extend_from_slice(&[10 * r, 100, 10 * r + 1, 200, 10 * r + 2, 100, 10 * r + 3, 200]);
            data.extend_from_slice(&[0xee; 4]);
        }
        let f = Yuyv {
            data: &data,
            width: 4,
            height: 3,
            stride: 12,
        };
        assert!(f.is_complete());
        let p = f.to_i420();
        assert_eq!(p.y, vec![0, 1, 2, 3, 10, 11, 12, 13, 20, 21, 22, 23]);
        assert_eq!((p.u.len(), p.v.len()), (4, 4));
        assert!(p.u.iter().all(|&x| x == 100) && p.v.iter().all(|&x| x == 200));
        let jpeg = f.encode(85, Op::Rot90).unwrap();
        assert_eq!(
            crate::media::codec::size_of(&jpeg).unwrap(),
            Size { width: 3, height: 4 }
        );
    }
}
