//! How a camera is mounted: `rotate` and `flip`, and the one of the eight ways to lay a picture
//! down ([`Op`]) they make together. Also moves pixels by an [`Op`] (for pictures farmcam has
//! decoded or is about to encode); JPEGs are turned losslessly by the codec module.

use crate::frame::Size;

/// `flip = "none" | "horizontal" | "vertical"`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Flip {
    #[default]
    None,
    /// Mirror left to right.
    Horizontal,
    /// Mirror top to bottom.
    Vertical,
}

impl Flip {
    pub fn name(self) -> &'static str {
        match self {
            Flip::None => "none",
            Flip::Horizontal => "horizontal",
            Flip::Vertical => "vertical",
        }
    }

    pub fn parse(s: &str) -> Result<Flip, String> {
        match s {
            "none" => Ok(Flip::None),
            "horizontal" => Ok(Flip::Horizontal),
            "vertical" => Ok(Flip::Vertical),
            other => Err(format!(
                "{other:?} is not a flip; use \"none\", \"horizontal\" (mirror left to right) or \"vertical\" (mirror top to bottom)"
            )),
        }
    }
}

/// A camera's orientation: turned clockwise by `rotate` degrees, then flipped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Orientation {
    /// 0, 90, 180 or 270 (clockwise).
    pub rotate: u16,
    pub flip: Flip,
}

impl Orientation {
    /// `rotate`: 0, 90, 180 or 270.
    pub fn new(rotate: i64, flip: Flip) -> Result<Orientation, String> {
        match rotate {
            0 | 90 | 180 | 270 => Ok(Orientation {
                rotate: rotate as u16,
                flip,
            }),
            other => Err(format!(
                "{other} is not a rotation; use 0, 90, 180 or 270 (degrees clockwise)"
            )),
        }
    }

    /// The single operation that rotating then flipping amounts to.
    pub fn op(self) -> Op {
        use Flip::*;
        match (self.rotate, self.flip) {
            (90, None) => Op::Rot90,
            (90, Horizontal) | (270, Vertical) => Op::Transpose,
            (90, Vertical) | (270, Horizontal) => Op::Transverse,
            (180, None) => Op::Rot180,
            (180, Horizontal) | (0, Vertical) => Op::Vflip,
            (180, Vertical) | (0, Horizontal) => Op::Hflip,
            (270, None) => Op::Rot270,
            _ => Op::None,
        }
    }
}

/// The eight ways to lay a picture down (libjpeg-turbo's lossless transforms).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    None,
    Hflip,
    Vflip,
    /// Mirror along the top-left to bottom-right diagonal.
    Transpose,
    /// Mirror along the top-right to bottom-left diagonal.
    Transverse,
    /// 90° clockwise.
    Rot90,
    Rot180,
    /// 90° counterclockwise.
    Rot270,
}

impl Op {
    /// Whether width and height trade places.
    pub fn swaps(self) -> bool {
        matches!(self, Op::Transpose | Op::Transverse | Op::Rot90 | Op::Rot270)
    }

    /// The size of a `size` picture after this operation.
    pub fn size(self, size: Size) -> Size {
        if self.swaps() {
            Size {
                width: size.height,
                height: size.width,
            }
        } else {
            size
        }
    }

    /// The source pixel shown at (x, y) of the result, for a `w`x`h` source.
    fn source_of(self, x: usize, y: usize, w: usize, h: usize) -> (usize, usize) {
        match self {
            Op::None => (x, y),
            Op::Hflip => (w - 1 - x, y),
            Op::Vflip => (x, h - 1 - y),
            Op::Rot180 => (w - 1 - x, h - 1 - y),
            Op::Transpose => (y, x),
            Op::Transverse => (w - 1 - y, h - 1 - x),
            Op::Rot90 => (y, h - 1 - x),
            Op::Rot270 => (w - 1 - y, x),
        }
    }

    /// Apply to a picture of `w`x`h` pixels of `bpp` bytes, rows `stride` bytes apart; returns
    /// the result, tightly packed, and its size.
    pub fn apply(self, src: &[u8], w: usize, h: usize, stride: usize, bpp: usize) -> (Vec<u8>, usize, usize) {
        let (ow, oh) = if self.swaps() { (h, w) } else { (w, h) };
        let mut out = vec![0u8; ow * oh * bpp];
        if ow == 0 || oh == 0 {
            return (out, ow, oh);
        }
        // The source byte of result pixel (x, y) is `base + x * dx + y * dy` for every operation.
        let at = |x: usize, y: usize| {
            let (sx, sy) = self.source_of(x, y, w, h);
            (sy * stride + sx * bpp) as isize
        };
        let base = at(0, 0);
        let dx = if ow > 1 { at(1, 0) - base } else { 0 };
        let dy = if oh > 1 { at(0, 1) - base } else { 0 };
        // In tiles, so that a quarter turn (reading down columns) stays in the cache.
        const TILE: usize = 32;
        for ty in (0..oh).step_by(TILE) {
            for tx in (0..ow).step_by(TILE) {
                for y in ty..(ty + TILE).min(oh) {
                    let row = base + y as isize * dy;
                    let x_end = (tx + TILE).min(ow);
                    if bpp == 1 {
                        for (x, o) in (tx..x_end).zip(&mut out[y * ow + tx..y * ow + x_end]) {
                            *o = src[(row + x as isize * dx) as usize];
                        }
                    } else {
                        for x in tx..x_end {
                            let i = (row + x as isize * dx) as usize;
                            let o = (y * ow + x) * bpp;
                            out[o..o + bpp].copy_from_slice(&src[i..i + bpp]);
                        }
                    }
                }
            }
        }
        (out, ow, oh)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 3x2 picture of one byte per pixel, numbered row by row.
    const PIC: [u8; 6] = [0, 1, 2, 3, 4, 5];

    fn turned(op: Op) -> (Vec<u8>, usize, usize) {
        op.apply(&PIC, 3, 2, 3, 1)
    }

    #[test]
    fn each_op_moves_pixels_where_its_name_says() {
        // 0 1 2
        // 3 4 5
        assert_eq!(turned(Op::None), (PIC.to_vec(), 3, 2));
        assert_eq!(turned(Op::Hflip), (vec![2, 1, 0, 5, 4, 3], 3, 2));
        assert_eq!(turned(Op::Vflip), (vec![3, 4, 5, 0, 1, 2], 3, 2));
        assert_eq!(turned(Op::Rot180), (vec![5, 4, 3, 2, 1, 0], 3, 2));
        // Clockwise: the left column, read bottom-up, becomes the top row.
        assert_eq!(turned(Op::Rot90), (vec![3, 0, 4, 1, 5, 2], 2, 3));
        assert_eq!(turned(Op::Rot270), (vec![2, 5, 1, 4, 0, 3], 2, 3));
        assert_eq!(turned(Op::Transpose), (vec![0, 3, 1, 4, 2, 5], 2, 3));
        assert_eq!(turned(Op::Transverse), (vec![5, 2, 4, 1, 3, 0], 2, 3));
    }

    #[test]
    fn rotate_then_flip_is_one_op() {
        // Check each combination against doing the two steps one after the other.
        let rot = |deg: i64| match deg {
            90 => Op::Rot90,
            180 => Op::Rot180,
            270 => Op::Rot270,
            _ => Op::None,
        };
        for deg in [0, 90, 180, 270] {
            for (flip, fop) in [
                (Flip::None, Op::None),
                (Flip::Horizontal, Op::Hflip),
                (Flip::Vertical, Op::Vflip),
            ] {
                let (a, w, h) = turned(rot(deg));
                let two_steps = fop.apply(&a, w, h, w, 1);
                let o = Orientation::new(deg, flip).unwrap();
                assert_eq!(turned(o.op()), two_steps, "rotate {deg}, flip {flip:?}");
            }
        }
    }

    #[test]
    fn bad_values_name_the_allowed_ones() {
        assert!(Orientation::new(45, Flip::None)
            .unwrap_err()
            .contains("0, 90, 180 or 270"));
        assert!(Flip::parse("both").unwrap_err().contains("\"horizontal\""));
    }
}
