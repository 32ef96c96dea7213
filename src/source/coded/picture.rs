//! A decoded picture as every decoder hands it over (the shared helper and a decoder child), and
//! how much a decoder may be fed before it counts as behind.

use bytes::Bytes;

use crate::frame::Size;
use crate::media::codec::{CodecError, I420};

/// Access units queued for the decoder (about two seconds of video), and their bytes at most
/// (a unit larger than that alone is still taken when nothing is queued); beyond that the
/// decoder is behind and is resynchronised at the next keyframe.
pub const FEED_QUEUE: usize = 64;
pub const FEED_BYTES: usize = 8 << 20;

/// One decoded picture: full-range 4:2:0 planes, packed (Y, then U, then V).
#[derive(Debug)]
pub struct Picture {
    pub planes: Bytes,
    pub size: Size,
}

impl Picture {
    /// The picture as a baseline JPEG (libjpeg-turbo).
    pub fn encode(&self, quality: u8) -> Result<Vec<u8>, CodecError> {
        let (y, c) = planes_len(self.size);
        let p = &self.planes;
        crate::media::codec::encode_planes(&p[..y], &p[y..y + c], &p[y + c..y + 2 * c], self.size, quality)
    }
}

/// Bytes of the Y plane and of each chroma plane of a 4:2:0 picture.
pub fn planes_len(size: Size) -> (usize, usize) {
    let c = I420::chroma_size(size);
    (
        size.width as usize * size.height as usize,
        c.width as usize * c.height as usize,
    )
}
