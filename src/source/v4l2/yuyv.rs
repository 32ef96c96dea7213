//! YUYV (YUV 4:2:2, packed) camera frames to JPEG, with jpeg-encoder.
//!
//! The camera's Y, U and V samples go straight into the encoder's Y, Cb and Cr planes (no RGB round
//! trip): each pixel pair's chroma is repeated to 4:4:4, and the encoder subsamples it to 4:2:0,
//! as webcams' own MJPEG does.

use jpeg_encoder::{ColorType, Encoder, EncodingError, SamplingFactor};

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

    /// Encode to a baseline JPEG (4:2:0) at `quality` (1..=100). `scratch` holds the 4:4:4
    /// YCbCr image in between; keep it across frames to avoid an allocation per frame.
    pub fn encode(&self, quality: u8, scratch: &mut Vec<u8>) -> Result<Vec<u8>, EncodingError> {
        let (w, h) = (self.width as usize, self.height as usize);
        scratch.clear();
        scratch.reserve(w * h * 3);
        for line in self.data.chunks(self.stride as usize).take(h) {
            for px in line[..w * 2].chunks_exact(4) {
                let (y0, u, y1, v) = (px[0], px[1], px[2], px[3]);
                scratch.extend_from_slice(&[y0, u, v, y1, u, v]);
            }
        }
        let mut out = Vec::with_capacity(w * h / 3);
        let mut encoder = Encoder::new(&mut out, quality);
        encoder.set_sampling_factor(SamplingFactor::F_2_2);
        // The encoder's own (non-generic) entry point: compiled optimised in the jpeg-encoder
        // crate even in debug builds of farmcam.
        encoder.encode(scratch, w as u16, h as u16, ColorType::Ycbcr)?;
        Ok(out)
    }
}
