//! VAAPI (Intel and AMD graphics, through a DRM render node) for [`super::AvEncoder`]:
//! `h264_vaapi` takes pictures only on the device, so the encoder gets a hardware frames context
//! and each picture is copied up (as NV12) before it is encoded.
//!
//! libavcodec has no function or option that sets `AVCodecContext.hw_frames_ctx`, so it is
//! written where it is in the libavcodec loaded: 4 pointer sizes after `codec_whitelist`, whose
//! place its `AVOption` gives (the same in libavcodec 58–61, 32- and 64-bit: `unsigned
//! properties`, `coded_side_data`, `int nb_coded_side_data`, then `hw_frames_ctx`). Both places
//! written ([`Libav::check_hw_layout`]) are proven on the library itself before a device is
//! opened: libavcodec refuses a frames context whose format is not the encoder's, so a context
//! seen there with the wrong format must be refused and with the right one accepted.

use std::ffi::{c_int, c_void, CString};
use std::path::Path;

use super::{BufferRef, FrameHead, HwFramesFields, Libav};

/// The libavcodec majors whose `AVCodecContext` has `hw_frames_ctx` where [`Libav::hw_frames_ctx_offset`]
/// looks (FFmpeg 4.4 to 7.1; FFmpeg 8 moved it).
const KNOWN_AVCODEC: std::ops::RangeInclusive<u32> = 58..=61;
/// A pointer's size in the structures (4 on armhf, 8 on arm64 and amd64).
const POINTER: usize = size_of::<*const c_void>();

impl Libav {
    /// A pixel format's number in this libavutil (they moved between versions).
    fn pix_fmt(&self, name: &str) -> c_int {
        let name = CString::new(name).unwrap_or_default();
        // SAFETY: a lookup by name; -1 when unknown.
        unsafe { (self.pix_fmt_by_name)(name.as_ptr()) }
    }

    /// Where `AVCodecContext.hw_frames_ctx` is in `ctx` (a context of this library).
    unsafe fn hw_frames_ctx_offset(&self, ctx: *mut c_void) -> Result<usize, String> {
        if !KNOWN_AVCODEC.contains(&self.avcodec_major) {
            return Err(format!(
                "farmcam drives VAAPI with libavcodec 58 to 61 (FFmpeg 4.4 to 7.1); this one is {}",
                self.avcodec_major
            ));
        }
        let name = c"codec_whitelist";
        let option = (self.opt_find)(ctx, name.as_ptr(), std::ptr::null(), 0, 0);
        if option.is_null() || (*option).offset <= 0 {
            return Err("this libavcodec does not say where its codec_whitelist is".into());
        }
        Ok((*option).offset as usize + 4 * POINTER)
    }

    /// Where `AVHWFramesContext`'s [`HwFramesFields`] start: after 8 pointers in libavutil
    /// 56–58, 7 from 59.
    fn hw_frames_fields_offset(&self) -> Result<usize, String> {
        match self.avutil_major {
            56..=58 => Ok(8 * POINTER),
            59 => Ok(7 * POINTER),
            v => Err(format!(
                "farmcam drives VAAPI with libavutil 56 to 59; this one is {v}"
            )),
        }
    }

    /// Give `ctx` (allocated, not opened) a reference to `frames`.
    unsafe fn set_hw_frames(&self, ctx: *mut c_void, frames: *mut BufferRef) -> Result<(), String> {
        let at = self.hw_frames_ctx_offset(ctx)?;
        let r = (self.buffer_ref)(frames);
        if r.is_null() {
            return Err("libavutil is out of memory".into());
        }
        *((ctx as *mut u8).add(at) as *mut *mut BufferRef) = r;
        Ok(())
    }

    /// Prove the places [`Self::set_hw_frames`] and [`HwFrames::open`] write to on this
    /// library: libavcodec's `rawvideo` encoder, opened for yuv420p with a frames context
    /// (zeroed but for the fields written), must refuse one that says another format and take
    /// one that says yuv420p.
    pub fn check_hw_layout(&self) -> Result<(), String> {
        let fields_at = self.hw_frames_fields_offset()?;
        let (yuv, other) = (self.pix_fmt("yuv420p"), self.pix_fmt("nv12"));
        // SAFETY: every pointer checked; the frames context is a zeroed buffer larger than the
        // struct, written only at its fields; the codec context frees its reference.
        unsafe {
            let codec = (self.find_encoder)(c"rawvideo".as_ptr());
            if codec.is_null() || yuv < 0 || other < 0 {
                return Err("this libavcodec cannot check its own layout (no rawvideo)".into());
            }
            for (format, takes) in [(other, false), (yuv, true)] {
                let mut ctx = (self.alloc_context)(codec);
                let mut frames = (self.buffer_allocz)(512);
                if ctx.is_null() || frames.is_null() {
                    (self.free_context)(&mut ctx);
                    (self.buffer_unref)(&mut frames);
                    return Err("libavcodec is out of memory".into());
                }
                let f = &mut *((*frames).data.add(fields_at) as *mut HwFramesFields);
                (f.format, f.sw_format, f.width, f.height) = (format, yuv, 16, 16);
                for (k, v) in [
                    (c"video_size", c"16x16"),
                    (c"pixel_format", c"yuv420p"),
                    (c"time_base", c"1/25"),
                ] {
                    (self.opt_set)(ctx, k.as_ptr(), v.as_ptr(), 0);
                }
                let set = self.set_hw_frames(ctx, frames);
                (self.buffer_unref)(&mut frames);
                let opened = set.is_ok() && (self.open2)(ctx, codec, std::ptr::null_mut()) >= 0;
                (self.free_context)(&mut ctx);
                set?;
                if opened != takes {
                    return Err(format!(
                        "libavcodec {} does not read hardware frames where farmcam writes them",
                        self.avcodec_major
                    ));
                }
            }
        }
        Ok(())
    }
}

/// A VAAPI device and the frames an encoder takes from it, for pictures of one size.
pub struct HwFrames<'a> {
    av: &'a Libav,
    device: *mut BufferRef,
    frames: *mut BufferRef,
    /// The picture on the device, one at a time.
    surface: *mut FrameHead,
    /// The picture as the device takes it (NV12), and its frame.
    nv12: Vec<u8>,
    picture: *mut FrameHead,
    nv12_format: c_int,
}

impl<'a> HwFrames<'a> {
    /// Open the render node `device` for `width` x `height` NV12 pictures and give the encoder
    /// context `ctx` (allocated, not opened) its frames; the context is set to take them.
    pub unsafe fn open(
        av: &'a Libav,
        ctx: *mut c_void,
        device: &Path,
        width: u32,
        height: u32,
    ) -> Result<HwFrames<'a>, String> {
        av.check_hw_layout()?;
        let shown = device.display();
        let path = CString::new(device.as_os_str().as_encoded_bytes())
            .map_err(|_| format!("{shown:?} is not a device path"))?;
        let kind = (av.hw_type_by_name)(c"vaapi".as_ptr());
        if kind <= 0 {
            return Err("this libavutil was built without VAAPI".into());
        }
        let mut hw = HwFrames {
            av,
            device: std::ptr::null_mut(),
            frames: std::ptr::null_mut(),
            surface: (av.frame_alloc)(),
            nv12: Vec::new(),
            picture: (av.frame_alloc)(),
            nv12_format: av.pix_fmt("nv12"),
        };
        if hw.surface.is_null() || hw.picture.is_null() {
            return Err("libavutil is out of memory".into());
        }
        let r = (av.hw_device_create)(&mut hw.device, kind, path.as_ptr(), std::ptr::null_mut(), 0);
        if r < 0 {
            return Err(format!(
                "cannot open the VAAPI device {shown}: {} (is the VA driver installed: intel-media-va-driver or mesa-va-drivers?)",
                av.error(r)
            ));
        }
        hw.frames = (av.hw_frames_alloc)(hw.device);
        if hw.frames.is_null() {
            return Err(format!("the VAAPI device {shown} makes no frames"));
        }
        let f = &mut *((*hw.frames).data.add(av.hw_frames_fields_offset()?) as *mut HwFramesFields);
        f.format = av.pix_fmt("vaapi");
        f.sw_format = hw.nv12_format;
        f.width = width as c_int;
        f.height = height as c_int;
        let r = (av.hw_frames_init)(hw.frames);
        if r < 0 {
            return Err(format!(
                "the VAAPI device {shown} takes no {width}x{height} NV12 pictures: {}",
                av.error(r)
            ));
        }
        av.set_hw_frames(ctx, hw.frames)?;
        Ok(hw)
    }

    /// Copy one picture (packed limited-range I420 of the frames' size) to the device; the
    /// frame returned holds it until [`Self::release`].
    pub unsafe fn upload(&mut self, planes: &[u8], w: usize, h: usize) -> Result<*mut FrameHead, String> {
        let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
        let (y, rest) = planes.split_at(w * h);
        let (u, v) = rest.split_at(cw * ch);
        self.nv12.clear();
        self.nv12.extend_from_slice(y);
        self.nv12.extend(u.iter().zip(v).flat_map(|(&u, &v)| [u, v]));
        let p = &mut *self.picture;
        let base = self.nv12.as_mut_ptr();
        p.data[0] = base;
        p.data[1] = base.add(w * h);
        p.linesize[0] = w as c_int;
        p.linesize[1] = (2 * cw) as c_int;
        p.width = w as c_int;
        p.height = h as c_int;
        p.format = self.nv12_format;
        let mut r = (self.av.hw_get_buffer)(self.frames, self.surface, 0);
        if r >= 0 {
            r = (self.av.hw_transfer)(self.surface, self.picture, 0);
        }
        let p = &mut *self.picture;
        p.data = [std::ptr::null_mut(); 8];
        p.linesize = [0; 8];
        if r < 0 {
            self.release();
            return Err(format!(
                "cannot copy a picture to the VAAPI device: {}",
                self.av.error(r)
            ));
        }
        Ok(self.surface)
    }

    /// Let go of the uploaded picture (the encoder keeps its own reference).
    pub unsafe fn release(&mut self) {
        (self.av.frame_unref)(self.surface);
    }
}

impl Drop for HwFrames<'_> {
    fn drop(&mut self) {
        // SAFETY: each pointer is null or ours; the free functions take null.
        unsafe {
            (self.av.frame_free)(&mut self.surface);
            (self.av.frame_free)(&mut self.picture);
            (self.av.buffer_unref)(&mut self.frames);
            (self.av.buffer_unref)(&mut self.device);
        }
    }
}
