//! Drawing farmcam's own images: the test pattern and the "<camera> — offline" placeholder.
//! A tiny RGB canvas with an 8x8 bitmap font, encoded with libjpeg-turbo.

use bytes::Bytes;
use font8x8::legacy::{BASIC_LEGACY, LATIN_LEGACY};

use crate::frame::Size;

pub type Rgb = [u8; 3];

pub const QUALITY: u8 = 80;

/// An RGB image in memory, 3 bytes per pixel, rows top to bottom.
#[derive(Clone)]
pub struct Canvas {
    pub width: u32,
    pub height: u32,
    pub rgb: Vec<u8>,
}

impl Canvas {
    pub fn new(width: u32, height: u32, color: Rgb) -> Self {
        let mut rgb = Vec::with_capacity((width * height * 3) as usize);
        for _ in 0..width * height {
            rgb.extend_from_slice(&color);
        }
        Canvas { width, height, rgb }
    }

    /// Fill a rectangle, clipped to the canvas.
    pub fn fill(&mut self, x: i64, y: i64, w: i64, h: i64, color: Rgb) {
        let x0 = x.clamp(0, self.width as i64) as usize;
        let x1 = (x + w).clamp(0, self.width as i64) as usize;
        let y0 = y.clamp(0, self.height as i64) as usize;
        let y1 = (y + h).clamp(0, self.height as i64) as usize;
        let stride = self.width as usize * 3;
        for row in y0..y1 {
            for px in self.rgb[row * stride + x0 * 3..row * stride + x1 * 3].chunks_exact_mut(3) {
                px.copy_from_slice(&color);
            }
        }
    }

    /// Draw text with the 8x8 font magnified `scale` times; returns the width drawn.
    /// Characters the font lacks are drawn as '?'; an em dash is drawn as a long dash.
    pub fn text(&mut self, x: i64, y: i64, scale: u32, s: &str, color: Rgb) -> i64 {
        text_cells(x, y, scale, s, |cx, cy, side| {
            self.fill(cx, cy, side, side, color)
        })
    }

    /// Text centred horizontally at row `y`, scaled down until it fits the width.
    pub fn text_centered(&mut self, y: i64, max_scale: u32, s: &str, color: Rgb) {
        let scale = fit_scale(self.width, s.chars().count(), max_scale);
        let w = s.chars().count() as i64 * 8 * scale as i64;
        self.text((self.width as i64 - w) / 2, y, scale, s, color);
    }

    /// Copy of rows `y .. y + h`.
    pub fn rows(&self, y: u32, h: u32) -> Canvas {
        let stride = self.width as usize * 3;
        let end = ((y + h).min(self.height)) as usize * stride;
        Canvas {
            width: self.width,
            height: h.min(self.height - y),
            rgb: self.rgb[y as usize * stride..end].to_vec(),
        }
    }

    /// Baseline JPEG (4:2:0, standard Huffman tables, so it is complete JFIF). With
    /// `restart_rows`, a restart marker starts every MCU row (16 pixel rows), which lets the test
    /// pattern splice pre-encoded rows.
    pub fn encode(&self, restart_rows: bool) -> Vec<u8> {
        let size = Size {
            width: self.width,
            height: self.height,
        };
        crate::media::codec::encode_rgb(&self.rgb, size, QUALITY, restart_rows)
            .expect("a canvas is a whole RGB picture")
    }
}

/// Largest scale (≤ max) at which `chars` characters fit in `width` with a small margin.
pub fn fit_scale(width: u32, chars: usize, max_scale: u32) -> u32 {
    let per_scale = (chars.max(1) * 8) as u32;
    (width.saturating_sub(16) / per_scale).clamp(1, max_scale.max(1))
}

/// The lit cells of `s` in the 8x8 font magnified `scale` times from (`x`, `y`): `cell(x, y,
/// side)` for each (for drawing into any picture); returns the width of the text.
pub fn text_cells(x: i64, y: i64, scale: u32, s: &str, mut cell: impl FnMut(i64, i64, i64)) -> i64 {
    let scale = scale.max(1) as i64;
    let mut cx = x;
    for ch in s.chars() {
        for (gy, bits) in glyph(ch).iter().enumerate() {
            for gx in 0..8 {
                if bits & (1 << gx) != 0 {
                    cell(cx + gx * scale, y + gy as i64 * scale, scale);
                }
            }
        }
        cx += 8 * scale;
    }
    cx - x
}

fn glyph(ch: char) -> [u8; 8] {
    let c = ch as u32;
    match c {
        0x20..=0x7e => BASIC_LEGACY[c as usize],
        0xa0..=0xff => LATIN_LEGACY[(c - 0xa0) as usize],
        0x2013 | 0x2014 => [0, 0, 0, 0xff, 0, 0, 0, 0],
        _ => BASIC_LEGACY[b'?' as usize],
    }
}

/// The image shown while a camera's upstream is down: "<camera name> — offline".
pub fn placeholder(name: &str, size: Size) -> Bytes {
    let (w, h) = (size.width, size.height);
    let mut c = Canvas::new(w, h, [32, 32, 36]);
    let big = (h / 12 / 8).max(1);
    c.text_centered(
        (h / 2) as i64 - (big * 8) as i64 - 4,
        big,
        &format!("{name} \u{2014} offline"),
        [230, 230, 230],
    );
    c.text_centered(
        (h / 2) as i64 + 8,
        (big / 2).max(1),
        "waiting for the camera",
        [150, 150, 150],
    );
    Bytes::from(c.encode(false))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholder_is_a_decodable_jpeg_of_the_requested_size() {
        let jpeg = placeholder(
            "Printer 1",
            Size {
                width: 640,
                height: 360,
            },
        );
        let mut d = jpeg_decoder::Decoder::new(&jpeg[..]);
        let pixels = d.decode().unwrap();
        let info = d.info().unwrap();
        assert_eq!((info.width, info.height), (640, 360));
        // The text is drawn: some pixels are bright, the background is dark.
        assert!(pixels.chunks(3).any(|p| p[0] > 200));
        assert!(pixels.chunks(3).filter(|p| p[0] < 60).count() > pixels.len() / 3 / 2);
    }

    #[test]
    fn text_draws_inside_the_canvas_only() {
        let mut c = Canvas::new(20, 10, [0, 0, 0]);
        c.text(-4, -4, 2, "W\u{2014}é\u{1F600}", [255, 255, 255]);
        assert_eq!(c.rgb.len(), 20 * 10 * 3);
        assert!(c.rgb.contains(&255));
    }
}
