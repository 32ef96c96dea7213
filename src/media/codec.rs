//! libjpeg-turbo, in-process (the `turbojpeg` crate, built from its bundled source with SIMD):
//! every JPEG farmcam encodes, decodes, scales or turns goes through here.
//!
//! Decoding is bounded: a header claiming more than [`MAX_PIXELS`] is refused before anything
//! is allocated, and progressive scans are limited, so a hostile or broken camera cannot make
//! farmcam allocate gigabytes or spin.

use turbojpeg::{
    Compressor, Decompressor, Image, PixelFormat, ScalingFactor, Subsamp, Transform, Transformer,
    YuvPlanesImage,
};

use crate::frame::Size;
use crate::media::orientation::Op;

/// The largest picture farmcam decodes (8K UHD): beyond this a frame counts as broken.
pub const MAX_PIXELS: usize = 7680 * 4320;
/// Progressive JPEGs with more scans than this are refused (libjpeg-turbo's advice against
/// crafted images that take forever to decode).
const SCAN_LIMIT: u32 = 100;
/// Quality of the JPEGs farmcam makes from other JPEGs (sizes, turned pictures).
pub const RECODE_QUALITY: u8 = 85;

/// Why libjpeg-turbo could not do it (the frame is then dropped or served unchanged).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CodecError(String);

impl From<turbojpeg::Error> for CodecError {
    fn from(e: turbojpeg::Error) -> Self {
        CodecError(format!("libjpeg-turbo: {e}"))
    }
}

/// An RGB picture, 3 bytes per pixel, rows packed.
#[derive(Debug)]
pub struct Rgb {
    pub pixels: Vec<u8>,
    pub size: Size,
}

/// Encode RGB pixels (4:2:0, standard Huffman tables). With `restart_rows`, a restart marker
/// starts every MCU row (16 pixel rows), which lets the test pattern splice pre-encoded rows.
pub fn encode_rgb(rgb: &[u8], size: Size, quality: u8, restart_rows: bool) -> Result<Vec<u8>, CodecError> {
    let (w, h) = (size.width as usize, size.height as usize);
    if w == 0 || h == 0 || rgb.len() < w * h * 3 {
        return Err(CodecError(format!("{size} RGB picture with {} bytes", rgb.len())));
    }
    if !restart_rows {
        let mut c = Compressor::new()?;
        c.set_quality(quality as i32)?;
        c.set_subsamp(Subsamp::Sub2x2)?;
        let image = Image {
            pixels: rgb,
            width: w,
            pitch: w * 3,
            height: h,
            format: PixelFormat::RGB,
        };
        return Ok(c.compress_to_vec(image)?);
    }
    raw_encode_with_restarts(rgb, w, h, quality)
}

/// The crate has no setter for restart markers: the same call through its raw bindings.
fn raw_encode_with_restarts(rgb: &[u8], w: usize, h: usize, quality: u8) -> Result<Vec<u8>, CodecError> {
    use turbojpeg::raw;
    struct Handle(raw::tjhandle);
    impl Drop for Handle {
        fn drop(&mut self) {
            // SAFETY: a handle from tj3Init, destroyed once.
            unsafe { raw::tj3Destroy(self.0) }
        }
    }
    let (wi, hi) = (
        i32::try_from(w).map_err(|_| CodecError("too wide".into()))?,
        i32::try_from(h).map_err(|_| CodecError("too high".into()))?,
    );
    // SAFETY: the handle is checked, lives in `handle` until the end; `rgb` holds w*h*3 bytes
    // (checked by the caller) and outlives the call; the output buffer libjpeg-turbo allocates
    // is copied and freed with tj3Free.
    unsafe {
        let handle = Handle(raw::tj3Init(raw::TJINIT_TJINIT_COMPRESS as libc::c_int));
        if handle.0.is_null() {
            return Err(CodecError("libjpeg-turbo: cannot create a compressor".into()));
        }
        let set =
            |param: raw::TJPARAM, value: libc::c_int| raw::tj3Set(handle.0, param as libc::c_int, value);
        if set(raw::TJPARAM_TJPARAM_QUALITY, quality as libc::c_int) != 0
            || set(
                raw::TJPARAM_TJPARAM_SUBSAMP,
                raw::TJSAMP_TJSAMP_420 as libc::c_int,
            ) != 0
            || set(raw::TJPARAM_TJPARAM_RESTARTROWS, 1) != 0
        {
            return Err(CodecError("libjpeg-turbo: cannot set the compressor up".into()));
        }
        let mut buf: *mut libc::c_uchar = std::ptr::null_mut();
        let mut len: raw::size_t = 0;
        let r = raw::tj3Compress8(
            handle.0,
            rgb.as_ptr(),
            wi,
            wi * 3,
            hi,
            raw::TJPF_TJPF_RGB as libc::c_int,
            &mut buf,
            &mut len,
        );
        if r != 0 || buf.is_null() {
            if !buf.is_null() {
                raw::tj3Free(buf.cast());
            }
            return Err(CodecError("libjpeg-turbo: compression failed".into()));
        }
        let out = std::slice::from_raw_parts(buf, len as usize).to_vec();
        raw::tj3Free(buf.cast());
        Ok(out)
    }
}

/// Planar YUV 4:2:0: a full-size Y plane and U, V planes of half the width and height (rounded
/// up), each packed (rows `width` bytes apart).
#[derive(Clone)]
pub struct I420 {
    pub y: Vec<u8>,
    pub u: Vec<u8>,
    pub v: Vec<u8>,
    pub size: Size,
}

impl I420 {
    pub fn chroma_size(size: Size) -> Size {
        Size {
            width: size.width.div_ceil(2),
            height: size.height.div_ceil(2),
        }
    }

    /// The same picture laid down by `op` (each plane moved alike).
    pub fn turned(self, op: Op) -> I420 {
        if op == Op::None {
            return self;
        }
        let (w, h) = (self.size.width as usize, self.size.height as usize);
        let c = Self::chroma_size(self.size);
        let (cw, ch) = (c.width as usize, c.height as usize);
        I420 {
            y: op.apply(&self.y, w, h, w, 1).0,
            u: op.apply(&self.u, cw, ch, cw, 1).0,
            v: op.apply(&self.v, cw, ch, cw, 1).0,
            size: op.size(self.size),
        }
    }

    /// The picture cut to an even width and height (the last column or row dropped if odd), as
    /// H.264's 4:2:0 needs.
    pub fn even(self) -> I420 {
        let (w, h) = (self.size.width as usize, self.size.height as usize);
        let (ew, eh) = (w & !1, h & !1);
        if (ew, eh) == (w, h) {
            return self;
        }
        let cw = w.div_ceil(2);
        let crop = |plane: &[u8], stride: usize, width: usize, rows: usize| -> Vec<u8> {
            plane
                .chunks_exact(stride.max(1))
                .take(rows)
                .flat_map(|r| &r[..width])
                .copied()
                .collect()
        };
        I420 {
            y: crop(&self.y, w, ew, eh),
            u: crop(&self.u, cw, ew / 2, eh / 2),
            v: crop(&self.v, cw, ew / 2, eh / 2),
            size: Size {
                width: ew as u32,
                height: eh as u32,
            },
        }
    }

    /// An RGB picture (3 bytes per pixel) in limited-range BT.601 4:2:0, as H.264 players
    /// expect (chroma of each 2x2 block averaged).
    pub fn from_rgb_limited(rgb: &[u8], size: Size) -> I420 {
        let (w, h) = (size.width as usize, size.height as usize);
        let c = Self::chroma_size(size);
        let (cw, ch) = (c.width as usize, c.height as usize);
        let px = |x: usize, y: usize| -> [f32; 3] {
            let i = (y.min(h - 1) * w + x.min(w - 1)) * 3;
            [rgb[i] as f32, rgb[i + 1] as f32, rgb[i + 2] as f32]
        };
        let luma = |[r, g, b]: [f32; 3]| 16.0 + (65.481 * r + 128.553 * g + 24.966 * b) / 255.0;
        let mut y = Vec::with_capacity(w * h);
        for row in 0..h {
            for col in 0..w {
                y.push(luma(px(col, row)).round() as u8);
            }
        }
        let (mut u, mut v) = (Vec::with_capacity(cw * ch), Vec::with_capacity(cw * ch));
        for row in 0..ch {
            for col in 0..cw {
                let mut sum = [0f32; 3];
                for (dx, dy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
                    let p = px(2 * col + dx, 2 * row + dy);
                    (0..3).for_each(|k| sum[k] += p[k] / 4.0);
                }
                let [r, g, b] = sum;
                u.push((128.0 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255.0).round() as u8);
                v.push((128.0 + (112.0 * r - 93.786 * g - 18.214 * b) / 255.0).round() as u8);
            }
        }
        I420 { y, u, v, size }
    }

    /// Encode as a baseline 4:2:0 JPEG.
    pub fn encode(&self, quality: u8) -> Result<Vec<u8>, CodecError> {
        encode_planes(&self.y, &self.u, &self.v, self.size, quality)
    }
}

/// Encode packed 4:2:0 planes (see [`I420`]) as a baseline JPEG.
pub fn encode_planes(y: &[u8], u: &[u8], v: &[u8], size: Size, quality: u8) -> Result<Vec<u8>, CodecError> {
    let (w, h) = (size.width as usize, size.height as usize);
    let c = I420::chroma_size(size);
    let (cw, ch) = (c.width as usize, c.height as usize);
    if w == 0 || h == 0 || y.len() < w * h || u.len() < cw * ch || v.len() < cw * ch {
        return Err(CodecError(format!("incomplete {size} YUV picture")));
    }
    // libjpeg-turbo wants the Y plane in whole 2x2 blocks: an odd side repeats its last
    // column or row.
    let (pw, ph) = (cw * 2, ch * 2);
    let padded;
    let y = if (pw, ph) == (w, h) {
        y
    } else {
        let mut p = Vec::with_capacity(pw * ph);
        for r in 0..ph {
            let row = &y[r.min(h - 1) * w..][..w];
            p.extend_from_slice(row);
            p.resize(p.len() + pw - w, row[w - 1]);
        }
        padded = p;
        &padded[..]
    };
    let mut c = Compressor::new()?;
    c.set_quality(quality as i32)?;
    let image = YuvPlanesImage {
        y_plane: y,
        u_plane: u,
        v_plane: v,
        width: w,
        height: h,
        y_stride: pw,
        u_stride: cw,
        v_stride: cw,
        subsamp: Subsamp::Sub2x2,
    };
    Ok(c.compress_yuv_planes_to_vec(&image)?)
}

/// Decode to 4:2:0 planes of even width and height (what H.264 encoders take): a JPEG in
/// another subsampling has its chroma resampled, an odd last column or row is dropped.
/// Full range, as JPEG is.
pub fn decode_i420(jpeg: &[u8]) -> Result<I420, CodecError> {
    let mut d = Decompressor::new()?;
    let header = bounded_header(&mut d, jpeg)?;
    let (w, h) = (header.width, header.height);
    if w < 2 || h < 2 {
        return Err(CodecError(format!("a {w}x{h} picture is too small to encode")));
    }
    let subsamp = header.subsamp;
    let len = turbojpeg::yuv_pixels_len(w, 1, h, subsamp)?;
    let mut buf = vec![0u8; len];
    d.decompress_to_yuv(
        jpeg,
        turbojpeg::YuvImage {
            pixels: &mut buf[..],
            width: w,
            align: 1,
            height: h,
            subsamp,
        },
    )?;
    let size = Size {
        width: (w & !1) as u32,
        height: (h & !1) as u32,
    };
    let (ew, eh) = (size.width as usize, size.height as usize);
    let mut y = Vec::with_capacity(ew * eh);
    for r in 0..eh {
        y.extend_from_slice(&buf[r * w..r * w + ew]);
    }
    let (cw, ch) = (ew / 2, eh / 2);
    if subsamp == Subsamp::Gray {
        return Ok(I420 {
            y,
            u: vec![128; cw * ch],
            v: vec![128; cw * ch],
            size,
        });
    }
    // The JPEG's chroma planes: their size as libjpeg-turbo lays them out.
    let (sw, sh) = (subsamp.width().max(1), subsamp.height().max(1));
    let (scw, sch) = (w.div_ceil(sw), h.div_ceil(sh));
    let plane = |i: usize| &buf[w * h + i * scw * sch..][..scw * sch];
    let resample = |src: &[u8]| -> Vec<u8> {
        if (scw, sch) == (cw, ch) || (sw, sh) == (2, 2) {
            let mut out = Vec::with_capacity(cw * ch);
            for r in 0..ch {
                out.extend_from_slice(&src[r * scw..r * scw + cw]);
            }
            return out;
        }
        // Each 4:2:0 sample from the JPEG's sample covering the same place.
        let mut out = Vec::with_capacity(cw * ch);
        for r in 0..ch {
            let sr = (r * 2 / sh).min(sch - 1);
            for c in 0..cw {
                let sc = (c * 2 / sw).min(scw - 1);
                out.push(src[sr * scw + sc]);
            }
        }
        out
    };
    Ok(I420 {
        u: resample(plane(0)),
        v: resample(plane(1)),
        y,
        size,
    })
}

/// A JPEG's size, from its header.
pub fn size_of(jpeg: &[u8]) -> Result<Size, CodecError> {
    let header = Decompressor::new()?.read_header(jpeg)?;
    Ok(Size {
        width: header.width as u32,
        height: header.height as u32,
    })
}

fn bounded_header(d: &mut Decompressor, jpeg: &[u8]) -> Result<turbojpeg::DecompressHeader, CodecError> {
    let header = d.read_header(jpeg)?;
    if header.width == 0 || header.height == 0 || header.width.saturating_mul(header.height) > MAX_PIXELS {
        return Err(CodecError(format!(
            "a {}x{} picture is larger than farmcam decodes (8K)",
            header.width, header.height
        )));
    }
    d.set_scan_limit(SCAN_LIMIT)?;
    Ok(header)
}

/// Decode to RGB; with `at_least`, scaled down inside the decoder (in eighths: 1/8, 2/8 … 8/8)
/// to the smallest size that is still at least that large, which costs a fraction of a full
/// decode.
pub fn decode_rgb(jpeg: &[u8], at_least: Option<Size>) -> Result<Rgb, CodecError> {
    let mut d = Decompressor::new()?;
    let header = bounded_header(&mut d, jpeg)?;
    if let Some(min) = at_least {
        let factor = (1..=8)
            .map(|m| ScalingFactor::new(m, 8))
            .find(|f| {
                f.scale(header.width) >= min.width as usize && f.scale(header.height) >= min.height as usize
            })
            .unwrap_or(ScalingFactor::ONE);
        d.set_scaling_factor(factor)?;
    }
    let scaled = header.scaled(d.scaling_factor());
    let mut image = Image {
        pixels: vec![0u8; scaled.width * scaled.height * 3],
        width: scaled.width,
        pitch: scaled.width * 3,
        height: scaled.height,
        format: PixelFormat::RGB,
    };
    d.decompress(jpeg, image.as_deref_mut())?;
    Ok(Rgb {
        pixels: image.pixels,
        size: Size {
            width: scaled.width as u32,
            height: scaled.height as u32,
        },
    })
}

/// A JPEG at `target` size (smaller than the JPEG): the cheapest route is a scaled decode to the
/// nearest eighth at least that large, a resize for the rest, and an encode.
pub fn scale(jpeg: &[u8], target: Size, quality: u8) -> Result<Vec<u8>, CodecError> {
    let decoded = decode_rgb(jpeg, Some(target))?;
    let rgb = if decoded.size == target {
        decoded.pixels
    } else {
        resize_rgb(&decoded.pixels, decoded.size, target)
    };
    encode_rgb(&rgb, target, quality, false)
}

/// Bilinear resize of packed RGB. Used for the last step after a scaled decode, so the ratio is
/// at most 2:1 and four source pixels per result pixel sample it well.
pub fn resize_rgb(src: &[u8], from: Size, to: Size) -> Vec<u8> {
    let (sw, sh) = (from.width as usize, from.height as usize);
    let (dw, dh) = (to.width as usize, to.height as usize);
    // For each result column/row: the first source index and the weight (of 256) of the next.
    let taps = |s: usize, d: usize| -> Vec<(usize, u32)> {
        (0..d)
            .map(|i| {
                let pos = ((i as f64 + 0.5) * s as f64 / d as f64 - 0.5).clamp(0.0, (s - 1) as f64);
                let i0 = (pos.floor() as usize).min(s - 1);
                (i0, ((pos - i0 as f64) * 256.0).round() as u32)
            })
            .collect()
    };
    let (xs, ys) = (taps(sw, dw), taps(sh, dh));
    let mut out = Vec::with_capacity(dw * dh * 3);
    for &(y0, wy) in &ys {
        let y1 = (y0 + 1).min(sh - 1);
        let (r0, r1) = (&src[y0 * sw * 3..][..sw * 3], &src[y1 * sw * 3..][..sw * 3]);
        for &(x0, wx) in &xs {
            let x1 = (x0 + 1).min(sw - 1);
            for c in 0..3 {
                let top = r0[x0 * 3 + c] as u32 * (256 - wx) + r0[x1 * 3 + c] as u32 * wx;
                let bottom = r1[x0 * 3 + c] as u32 * (256 - wx) + r1[x1 * 3 + c] as u32 * wx;
                let v = (top * (256 - wy) + bottom * wy + (1 << 15)) >> 16;
                out.push(v as u8);
            }
        }
    }
    out
}

/// Turn a JPEG without decoding it: libjpeg-turbo moves the DCT blocks, so the picture loses
/// nothing. Refused (an error) when the picture's edges are not whole blocks in a direction the
/// operation would move them to the top or left: the caller then decodes, turns and encodes, so
/// the picture stays whole instead of being trimmed or getting a strip of unturned blocks.
pub fn turn_lossless(jpeg: &[u8], op: Op) -> Result<Vec<u8>, CodecError> {
    use turbojpeg::TransformOp as T;
    // The same bound as decoding: the transform allocates the whole picture's coefficients (a
    // header claiming 20000x20000 would cost over a gigabyte per frame).
    bounded_header(&mut Decompressor::new()?, jpeg)?;
    let mut t = Transform::op(match op {
        Op::None => T::None,
        Op::Hflip => T::Hflip,
        Op::Vflip => T::Vflip,
        Op::Transpose => T::Transpose,
        Op::Transverse => T::Transverse,
        Op::Rot90 => T::Rot90,
        Op::Rot180 => T::Rot180,
        Op::Rot270 => T::Rot270,
    });
    t.perfect = true;
    Ok(Transformer::new()?.transform_to_vec(&t, jpeg)?)
}

/// Turn a JPEG the expensive way: decode, move the pixels, encode at `quality`.
pub fn turn_recoded(jpeg: &[u8], op: Op, quality: u8) -> Result<(Vec<u8>, Size), CodecError> {
    let rgb = decode_rgb(jpeg, None)?;
    let (w, h) = (rgb.size.width as usize, rgb.size.height as usize);
    let (pixels, ow, oh) = op.apply(&rgb.pixels, w, h, w * 3, 3);
    let size = Size {
        width: ow as u32,
        height: oh as u32,
    };
    Ok((encode_rgb(&pixels, size, quality, false)?, size))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gradient(size: Size) -> Vec<u8> {
        let mut v = Vec::new();
        for y in 0..size.height {
            for x in 0..size.width {
                v.extend_from_slice(&[(x * 255 / size.width) as u8, (y * 255 / size.height) as u8, 128]);
            }
        }
        v
    }

    #[test]
    fn scaled_sizes_are_exact_and_decodable() {
        let size = Size {
            width: 1280,
            height: 720,
        };
        let jpeg = encode_rgb(&gradient(size), size, 85, false).unwrap();
        for target in [
            Size {
                width: 320,
                height: 180,
            },
            Size {
                width: 500,
                height: 281,
            },
            Size {
                width: 1000,
                height: 563,
            },
        ] {
            let small = scale(&jpeg, target, 80).unwrap();
            assert_eq!(size_of(&small).unwrap(), target);
            // The picture survives: the left edge is dark red, the right bright.
            let rgb = decode_rgb(&small, None).unwrap();
            let row = &rgb.pixels[(target.height as usize / 2) * target.width as usize * 3..];
            assert!(row[0] < 30, "{}", row[0]);
            assert!(row[(target.width as usize - 1) * 3] > 220);
        }
    }

    #[test]
    fn oversized_or_broken_input_is_an_error_not_a_panic() {
        assert!(decode_rgb(b"\xff\xd8\xff\xd9", None).is_err());
        assert!(scale(
            b"not a jpeg",
            Size {
                width: 10,
                height: 10
            },
            80
        )
        .is_err());
        assert!(encode_rgb(
            &[0; 10],
            Size {
                width: 100,
                height: 100
            },
            80,
            false
        )
        .is_err());
        // A header claiming 65000x65000 pixels: refused before any allocation.
        let size = Size {
            width: 16,
            height: 16,
        };
        let mut jpeg = encode_rgb(&gradient(size), size, 85, false).unwrap();
        let sof = jpeg.windows(2).position(|w| w == [0xff, 0xc0]).unwrap();
        jpeg[sof + 5..sof + 9].copy_from_slice(&[0xfd, 0xe8, 0xfd, 0xe8]);
        assert!(decode_rgb(&jpeg, None)
            .unwrap_err()
            .to_string()
            .contains("larger"));
        // Turning it without decoding is bounded the same way.
        for op in [Op::Rot90, Op::Hflip, Op::Rot180] {
            assert!(turn_lossless(&jpeg, op)
                .unwrap_err()
                .to_string()
                .contains("larger"));
        }
    }

    #[test]
    fn lossless_turns_need_whole_blocks_and_recoding_does_not() {
        // 1920x1080: 1080 is not a multiple of 16, so the bottom edge would have to move.
        let size = Size {
            width: 1920,
            height: 1080,
        };
        let jpeg = encode_rgb(&gradient(size), size, 85, false).unwrap();
        assert!(turn_lossless(&jpeg, Op::Rot90).is_err());
        let (turned, s) = turn_recoded(&jpeg, Op::Rot90, 85).unwrap();
        assert_eq!(
            s,
            Size {
                width: 1080,
                height: 1920
            }
        );
        assert_eq!(size_of(&turned).unwrap(), s);
        // Mirroring left to right only moves whole columns of blocks here: lossless.
        assert_eq!(size_of(&turn_lossless(&jpeg, Op::Hflip).unwrap()).unwrap(), size);
    }
}
