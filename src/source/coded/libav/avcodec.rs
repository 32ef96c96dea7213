//! libavcodec, loaded at run time (`dlopen`) from the ffmpeg farmcam already depends on: one
//! H.264/H.265 decoder per camera, single-threaded, turning whole access units into full-range
//! I420 pictures; and the live H.264 encoders ([`AvEncoder`]). Only the decoder helper process ([`super::helper`]) calls it, so a crash in
//! the library never takes farmcam down.
//!
//! Only the stable head of each structure is read (`AVPacket`'s `data`/`size`, `AVFrame`'s
//! planes, size and format: unchanged from ffmpeg 4 to 7); everything else goes through
//! functions and `AVOption`s, except the hardware frames VAAPI needs (see [`vaapi`], which
//! proves where it writes on the loaded library first).

use std::ffi::{c_char, c_int, c_void, CString};

use libloading::Library;

use crate::source::coded::encoding::VAAPI;

mod vaapi;

/// The libavcodec sonames tried, newest first: FFmpeg 8 (62), 7.1 (61, Debian 13), 6 (60),
/// 5.1 (59, Debian 12), 4.4 (58). The structure heads read are those of 58–61; 62 is tried in
/// the hope they are unchanged there (not tested here: Debian has no FFmpeg 8).
const SONAMES: &[&str] = &[
    "libavcodec.so.62",
    "libavcodec.so.61",
    "libavcodec.so.60",
    "libavcodec.so.59",
    "libavcodec.so.58",
];
/// `AV_INPUT_BUFFER_PADDING_SIZE`: zero bytes the decoder may read past a packet's end.
pub const PADDING: usize = 64;
const AV_CODEC_ID_H264: c_int = 27;
const AV_CODEC_ID_HEVC: c_int = 173;
const AVERROR_EAGAIN: c_int = -libc::EAGAIN;
/// `AVERROR_EOF`: `-MKTAG('E','O','F',' ')`.
const AVERROR_EOF: c_int =
    -(b'E' as c_int | (b'O' as c_int) << 8 | (b'F' as c_int) << 16 | (b' ' as c_int) << 24);
const AV_LOG_QUIET: c_int = -8;
/// `AVCOL_RANGE_JPEG`: full range.
const AVCOL_RANGE_JPEG: i64 = 2;
/// The largest picture decoded (as [`crate::media::codec::MAX_PIXELS`]).
const MAX_PIXELS: usize = crate::media::codec::MAX_PIXELS;

/// `AVPacket`'s head, the same in every libavcodec since `av_packet_alloc` (58).
#[repr(C)]
struct PacketHead {
    buf: *mut c_void,
    pts: i64,
    dts: i64,
    data: *mut u8,
    size: c_int,
    stream_index: c_int,
    flags: c_int,
}

/// `AV_PKT_FLAG_KEY`.
const AV_PKT_FLAG_KEY: c_int = 1;
/// `AV_PIX_FMT_YUV420P`.
const AV_PIX_FMT_YUV420P: c_int = 0;
/// `AV_PICTURE_TYPE_I`, `AV_PICTURE_TYPE_NONE`.
const AV_PICTURE_TYPE_I: c_int = 1;
const AV_PICTURE_TYPE_NONE: c_int = 0;

/// `AVFrame`'s head, the same from libavutil 56 to 59.
#[repr(C)]
struct FrameHead {
    data: [*mut u8; 8],
    linesize: [c_int; 8],
    extended_data: *mut *mut u8,
    width: c_int,
    height: c_int,
    nb_samples: c_int,
    format: c_int,
}

/// What follows [`FrameHead`] up to `pts`: libavutil 56–58 have `key_frame` before
/// `pict_type`; 59 (FFmpeg 7) removed it, so `pict_type` moved up and `pts` stayed (8-aligned).
#[repr(C)]
struct FrameTail58 {
    key_frame: c_int,
    pict_type: c_int,
    sample_aspect_ratio: [c_int; 2],
    pts: i64,
}

#[repr(C)]
struct FrameTail59 {
    pict_type: c_int,
    sample_aspect_ratio: [c_int; 2],
    pts: i64,
}

#[repr(C)]
struct Frame58 {
    head: FrameHead,
    tail: FrameTail58,
}

#[repr(C)]
struct Frame59 {
    head: FrameHead,
    tail: FrameTail59,
}

type FindDecoder = unsafe extern "C" fn(c_int) -> *const c_void;
type AllocContext = unsafe extern "C" fn(*const c_void) -> *mut c_void;
type FreeContext = unsafe extern "C" fn(*mut *mut c_void);
type FlushBuffers = unsafe extern "C" fn(*mut c_void);
type Open2 = unsafe extern "C" fn(*mut c_void, *const c_void, *mut c_void) -> c_int;
type OptSet = unsafe extern "C" fn(*mut c_void, *const c_char, *const c_char, c_int) -> c_int;
type OptGetInt = unsafe extern "C" fn(*mut c_void, *const c_char, c_int, *mut i64) -> c_int;
type PacketAlloc = unsafe extern "C" fn() -> *mut PacketHead;
type PacketFree = unsafe extern "C" fn(*mut *mut PacketHead);
type FrameAlloc = unsafe extern "C" fn() -> *mut FrameHead;
type FrameFree = unsafe extern "C" fn(*mut *mut FrameHead);
type FrameUnref = unsafe extern "C" fn(*mut FrameHead);
type SendPacket = unsafe extern "C" fn(*mut c_void, *const PacketHead) -> c_int;
type ReceiveFrame = unsafe extern "C" fn(*mut c_void, *mut FrameHead) -> c_int;
type SetLevel = unsafe extern "C" fn(c_int);
type FindEncoder = unsafe extern "C" fn(*const c_char) -> *const c_void;
type SendFrame = unsafe extern "C" fn(*mut c_void, *const FrameHead) -> c_int;
type ReceivePacket = unsafe extern "C" fn(*mut c_void, *mut PacketHead) -> c_int;
type PacketUnref = unsafe extern "C" fn(*mut PacketHead);
type Version = unsafe extern "C" fn() -> std::ffi::c_uint;
type StrError = unsafe extern "C" fn(c_int, *mut c_char, usize) -> c_int;
type OptFind =
    unsafe extern "C" fn(*mut c_void, *const c_char, *const c_char, c_int, c_int) -> *const OptionHead;
type PixFmtByName = unsafe extern "C" fn(*const c_char) -> c_int;
type HwTypeByName = unsafe extern "C" fn(*const c_char) -> c_int;
type HwDeviceCreate =
    unsafe extern "C" fn(*mut *mut BufferRef, c_int, *const c_char, *mut c_void, c_int) -> c_int;
type HwFramesAlloc = unsafe extern "C" fn(*mut BufferRef) -> *mut BufferRef;
type HwFramesInit = unsafe extern "C" fn(*mut BufferRef) -> c_int;
type HwGetBuffer = unsafe extern "C" fn(*mut BufferRef, *mut FrameHead, c_int) -> c_int;
type HwTransfer = unsafe extern "C" fn(*mut FrameHead, *const FrameHead, c_int) -> c_int;
type BufferNew = unsafe extern "C" fn(usize) -> *mut BufferRef;
type BufferRefFn = unsafe extern "C" fn(*const BufferRef) -> *mut BufferRef;
type BufferUnref = unsafe extern "C" fn(*mut *mut BufferRef);

/// `AVOption`'s head (unchanged since libavutil 51): where an option's field is in its struct.
#[repr(C)]
struct OptionHead {
    name: *const c_char,
    help: *const c_char,
    offset: c_int,
}

/// `AVBufferRef` (unchanged since libavutil 52; `size` is an `int` before 57, read never).
#[repr(C)]
struct BufferRef {
    buffer: *mut c_void,
    data: *mut u8,
}

/// The fields of `AVHWFramesContext` set before `av_hwframe_ctx_init`, after its pointers
/// (8 of them in libavutil 56–58, 7 from 59, which dropped `internal`).
#[repr(C)]
struct HwFramesFields {
    initial_pool_size: c_int,
    format: c_int,
    sw_format: c_int,
    width: c_int,
    height: c_int,
}

/// The functions used, resolved once.
pub struct Libav {
    _lib: Library,
    find_decoder: FindDecoder,
    alloc_context: AllocContext,
    free_context: FreeContext,
    flush_buffers: FlushBuffers,
    open2: Open2,
    opt_set: OptSet,
    opt_get_int: OptGetInt,
    packet_alloc: PacketAlloc,
    packet_free: PacketFree,
    frame_alloc: FrameAlloc,
    frame_free: FrameFree,
    frame_unref: FrameUnref,
    send_packet: SendPacket,
    receive_frame: ReceiveFrame,
    find_encoder: FindEncoder,
    send_frame: SendFrame,
    receive_packet: ReceivePacket,
    packet_unref: PacketUnref,
    strerror: StrError,
    opt_find: OptFind,
    pix_fmt_by_name: PixFmtByName,
    hw_type_by_name: HwTypeByName,
    hw_device_create: HwDeviceCreate,
    hw_frames_alloc: HwFramesAlloc,
    hw_frames_init: HwFramesInit,
    hw_get_buffer: HwGetBuffer,
    hw_transfer: HwTransfer,
    buffer_allocz: BufferNew,
    buffer_ref: BufferRefFn,
    buffer_unref: BufferUnref,
    /// libavcodec's major version: where `AVCodecContext`'s `hw_frames_ctx` is (see
    /// [`Libav::hw_frames_ctx_offset`]).
    avcodec_major: u32,
    /// libavutil's major version: where `AVFrame`'s `pict_type` is (see [`FrameTail`]).
    avutil_major: u32,
}

impl Libav {
    /// Load libavcodec (and, through it, libavutil).
    pub fn load() -> Result<Libav, String> {
        let mut last = String::new();
        for name in SONAMES {
            // SAFETY: loading ffmpeg's own library runs only its initialisers.
            match unsafe { Library::new(name) } {
                Ok(lib) => return Self::resolve(lib).map_err(|e| format!("{name}: {e}")),
                Err(e) => last = e.to_string(),
            }
        }
        Err(format!(
            "cannot load libavcodec ({last}); install Debian's ffmpeg (apt install ffmpeg)"
        ))
    }

    fn resolve(lib: Library) -> Result<Libav, String> {
        /// SAFETY (each use): the symbol is ffmpeg's public function of this signature.
        macro_rules! sym {
            ($name:literal) => {
                *unsafe { lib.get(concat!($name, "\0").as_bytes()) }
                    .map_err(|e| format!("no {}: {e}", $name))?
            };
        }
        let set_level: SetLevel = sym!("av_log_set_level");
        let avutil_version: Version = sym!("avutil_version");
        let avcodec_version: Version = sym!("avcodec_version");
        // SAFETY: a plain setter; the helper's stderr carries its own messages only.
        unsafe { set_level(AV_LOG_QUIET) };
        Ok(Libav {
            find_decoder: sym!("avcodec_find_decoder"),
            alloc_context: sym!("avcodec_alloc_context3"),
            free_context: sym!("avcodec_free_context"),
            flush_buffers: sym!("avcodec_flush_buffers"),
            open2: sym!("avcodec_open2"),
            opt_set: sym!("av_opt_set"),
            opt_get_int: sym!("av_opt_get_int"),
            packet_alloc: sym!("av_packet_alloc"),
            packet_free: sym!("av_packet_free"),
            frame_alloc: sym!("av_frame_alloc"),
            frame_free: sym!("av_frame_free"),
            frame_unref: sym!("av_frame_unref"),
            send_packet: sym!("avcodec_send_packet"),
            receive_frame: sym!("avcodec_receive_frame"),
            find_encoder: sym!("avcodec_find_encoder_by_name"),
            send_frame: sym!("avcodec_send_frame"),
            receive_packet: sym!("avcodec_receive_packet"),
            packet_unref: sym!("av_packet_unref"),
            strerror: sym!("av_strerror"),
            opt_find: sym!("av_opt_find"),
            pix_fmt_by_name: sym!("av_get_pix_fmt"),
            hw_type_by_name: sym!("av_hwdevice_find_type_by_name"),
            hw_device_create: sym!("av_hwdevice_ctx_create"),
            hw_frames_alloc: sym!("av_hwframe_ctx_alloc"),
            hw_frames_init: sym!("av_hwframe_ctx_init"),
            hw_get_buffer: sym!("av_hwframe_get_buffer"),
            hw_transfer: sym!("av_hwframe_transfer_data"),
            buffer_allocz: sym!("av_buffer_allocz"),
            buffer_ref: sym!("av_buffer_ref"),
            buffer_unref: sym!("av_buffer_unref"),
            // SAFETY: a plain getter.
            avcodec_major: unsafe { avcodec_version() } >> 16,
            // SAFETY: a plain getter.
            avutil_major: unsafe { avutil_version() } >> 16,
            _lib: lib,
        })
    }
}

/// One picture: full-range I420, packed (Y, then U, then V).
pub struct Decoded {
    pub width: u32,
    pub height: u32,
    pub planes: Vec<u8>,
}

/// One open decoder.
pub struct AvDecoder<'a> {
    av: &'a Libav,
    ctx: *mut c_void,
    packet: *mut PacketHead,
    frame: *mut FrameHead,
    /// A unit with the padding the decoder may read past its end.
    buf: Vec<u8>,
}

impl<'a> AvDecoder<'a> {
    pub fn open(av: &'a Libav, hevc: bool) -> Result<AvDecoder<'a>, String> {
        let id = if hevc { AV_CODEC_ID_HEVC } else { AV_CODEC_ID_H264 };
        let what = if hevc { "H.265" } else { "H.264" };
        // SAFETY: ffmpeg's documented sequence; every pointer is checked before use and freed
        // in Drop (which takes null pointers).
        unsafe {
            let codec = (av.find_decoder)(id);
            if codec.is_null() {
                return Err(format!("this libavcodec has no {what} decoder"));
            }
            let d = AvDecoder {
                av,
                ctx: (av.alloc_context)(codec),
                packet: (av.packet_alloc)(),
                frame: (av.frame_alloc)(),
                buf: Vec::new(),
            };
            if d.ctx.is_null() || d.packet.is_null() || d.frame.is_null() {
                return Err("libavcodec is out of memory".into());
            }
            // One thread, and each picture out as soon as its unit went in (as the ffmpeg
            // decoder child: `-thread_type slice -flags low_delay`).
            // `max_pixels`: a picture larger than farmcam takes is refused before libavcodec
            // allocates for it (a crafted 16k x 16k SPS allocates nothing).
            let max_pixels = MAX_PIXELS.to_string();
            for (k, v) in [
                ("threads", "1"),
                ("flags", "+low_delay"),
                ("max_pixels", max_pixels.as_str()),
            ] {
                let (k, v) = (
                    CString::new(k).unwrap_or_default(),
                    CString::new(v).unwrap_or_default(),
                );
                (av.opt_set)(d.ctx, k.as_ptr(), v.as_ptr(), 0);
            }
            let r = (av.open2)(d.ctx, codec, std::ptr::null_mut());
            if r < 0 {
                return Err(format!("cannot open libavcodec's {what} decoder (error {r})"));
            }
            Ok(d)
        }
    }

    /// Decode one access unit (`None`: flush what the decoder holds), appending its pictures.
    pub fn decode(&mut self, unit: Option<&[u8]>, out: &mut Vec<Decoded>) -> Result<(), String> {
        // SAFETY: the packet points into `buf`, padded and alive for the call (the decoder
        // copies a packet that has no reference-counted buffer); a null packet flushes.
        unsafe {
            let r = match unit {
                Some(unit) => {
                    self.buf.clear();
                    self.buf.extend_from_slice(unit);
                    self.buf.resize(unit.len() + PADDING, 0);
                    let p = &mut *self.packet;
                    p.buf = std::ptr::null_mut();
                    p.data = self.buf.as_mut_ptr();
                    p.size = unit.len() as c_int;
                    let r = (self.av.send_packet)(self.ctx, self.packet);
                    p.data = std::ptr::null_mut();
                    p.size = 0;
                    r
                }
                None => (self.av.send_packet)(self.ctx, std::ptr::null()),
            };
            // A broken unit is skipped, as ffmpeg does; the next keyframe starts over.
            if r < 0 && r != AVERROR_EAGAIN && r != AVERROR_EOF && unit.is_none() {
                return Err(format!("libavcodec refused to flush (error {r})"));
            }
            loop {
                let r = (self.av.receive_frame)(self.ctx, self.frame);
                if r == AVERROR_EAGAIN || r == AVERROR_EOF {
                    return Ok(());
                }
                if r < 0 {
                    // A unit it could not decode: no picture of it.
                    return Ok(());
                }
                let picture = self.picture();
                (self.av.frame_unref)(self.frame);
                out.push(picture?);
            }
        }
    }

    /// Whether the stream says its samples are full range.
    /// Decode a unit that needs nothing before it (a keyframe with its parameter sets), take
    /// every picture out, and forget the stream: the decoder is then ready for another camera's
    /// keyframe, its picture buffers kept for reuse.
    pub fn decode_alone(&mut self, unit: &[u8], out: &mut Vec<Decoded>) -> Result<(), String> {
        self.decode(Some(unit), out)?;
        let flushed = self.decode(None, out);
        // SAFETY: the context is open; flushing ends the drain and keeps the buffer pool.
        unsafe { (self.av.flush_buffers)(self.ctx) };
        flushed
    }

    fn full_range(&self) -> bool {
        let mut range = 0i64;
        let name = c"color_range";
        // SAFETY: an int option of AVCodecContext, read into a local.
        let r = unsafe { (self.av.opt_get_int)(self.ctx, name.as_ptr(), 0, &mut range) };
        r >= 0 && range == AVCOL_RANGE_JPEG
    }

    /// The frame just received, as full-range I420.
    unsafe fn picture(&self) -> Result<Decoded, String> {
        let f = &*self.frame;
        let (w, h) = (f.width, f.height);
        if w <= 0 || h <= 0 || (w as usize) * (h as usize) > MAX_PIXELS {
            return Err(format!("the camera's pictures are {w}x{h}"));
        }
        // (chroma subsampled horizontally, vertically, full range by format)
        let (sx, sy, yuvj) = match f.format {
            0 => (true, true, false),   // yuv420p
            12 => (true, true, true),   // yuvj420p
            4 => (true, false, false),  // yuv422p
            13 => (true, false, true),  // yuvj422p
            5 => (false, false, false), // yuv444p
            14 => (false, false, true), // yuvj444p
            other => {
                return Err(format!(
                    "the camera's pictures are in pixel format {other} (10-bit?), which the shared decoder does not convert"
                ))
            }
        };
        let full = yuvj || self.full_range();
        let (w, h) = (w as usize, h as usize);
        let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
        let mut planes = Vec::with_capacity(w * h + 2 * cw * ch);
        let row = |plane: usize, y: usize, len: usize| -> &[u8] {
            let stride = f.linesize[plane] as isize;
            // SAFETY: row y of a plane of this frame, of at least `len` bytes.
            std::slice::from_raw_parts(f.data[plane].offset(stride * y as isize), len)
        };
        let (luma, chroma) = (table(full, false), table(full, true));
        for y in 0..h {
            planes.extend(row(0, y, w).iter().map(|&v| luma[v as usize]));
        }
        for plane in [1, 2] {
            let src_w = if sx { cw } else { w };
            for y in 0..ch {
                let src_y = if sy { y } else { (2 * y).min(h - 1) };
                let src = row(plane, src_y, src_w);
                if sx {
                    planes.extend(src.iter().map(|&v| chroma[v as usize]));
                } else {
                    planes.extend((0..cw).map(|x| chroma[src[2 * x] as usize]));
                }
            }
        }
        Ok(Decoded {
            width: w as u32,
            height: h as u32,
            planes,
        })
    }
}

/// A sample in full range: limited-range luma 16..=235 and chroma 16..=240 stretched to 0..=255.
pub fn to_full_range(v: u8, full: bool, chroma: bool) -> u8 {
    if full {
        return v;
    }
    let (mid, scale) = if chroma {
        (128.0, 255.0 / 224.0)
    } else {
        (16.0, 255.0 / 219.0)
    };
    let base = if chroma { 128.0 } else { 0.0 };
    ((v as f32 - mid) * scale + base).round().clamp(0.0, 255.0) as u8
}

/// [`to_full_range`] of every sample value.
fn table(full: bool, chroma: bool) -> [u8; 256] {
    std::array::from_fn(|v| to_full_range(v as u8, full, chroma))
}

// SAFETY: a decoder context is used by one thread at a time (a slot's, or the pool's mutex
// between them); libavcodec contexts may move between threads.
unsafe impl Send for AvDecoder<'_> {}

impl Drop for AvDecoder<'_> {
    fn drop(&mut self) {
        // SAFETY: each free function takes a pointer to the (possibly null) pointer.
        unsafe {
            (self.av.frame_free)(&mut self.frame);
            (self.av.packet_free)(&mut self.packet);
            (self.av.free_context)(&mut self.ctx);
        }
    }
}

/// What an encoder is opened for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncodeParams {
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    /// Bits per second.
    pub bitrate: u32,
    /// Pictures from one keyframe to the next.
    pub gop: u32,
    /// The VAAPI render node (`h264_vaapi` only).
    pub device: Option<std::path::PathBuf>,
}

impl Libav {
    /// libavcodec's words for an error code.
    fn error(&self, r: c_int) -> String {
        let mut buf = [0 as c_char; 128];
        // SAFETY: av_strerror writes at most `len` bytes, NUL-terminated.
        unsafe {
            if (self.strerror)(r, buf.as_mut_ptr(), buf.len()) < 0 {
                return format!("error {r}");
            }
            std::ffi::CStr::from_ptr(buf.as_ptr())
                .to_string_lossy()
                .into_owned()
        }
    }
}

/// One coded picture out of an encoder.
pub struct Packet {
    /// Annex B, as the encoder wrote it.
    pub data: Vec<u8>,
    pub keyframe: bool,
}

/// One open H.264 encoder, fed limited-range I420 pictures of its size.
pub struct AvEncoder<'a> {
    av: &'a Libav,
    ctx: *mut c_void,
    packet: *mut PacketHead,
    frame: *mut FrameHead,
    pub params: EncodeParams,
    next_pts: i64,
    /// The device pictures are copied to first (`h264_vaapi`).
    hw: Option<vaapi::HwFrames<'a>>,
}

impl<'a> AvEncoder<'a> {
    /// Open the encoder `name` (as `ffmpeg -encoders` lists them) for `params`: 4:2:0, no
    /// B-frames, a keyframe every `gop` pictures, parameter sets before each keyframe, each
    /// picture out as soon as it went in where the encoder can (libx264: ultrafast,
    /// zerolatency, constrained baseline).
    pub fn open(av: &'a Libav, name: &str, params: &EncodeParams) -> Result<AvEncoder<'a>, String> {
        let cname = CString::new(name).map_err(|_| format!("{name:?} is not an encoder name"))?;
        // SAFETY: as AvDecoder::open: every pointer checked, freed in Drop.
        unsafe {
            let codec = (av.find_encoder)(cname.as_ptr());
            if codec.is_null() {
                return Err(format!(
                    "this libavcodec has no encoder {name:?} (see ffmpeg -encoders)"
                ));
            }
            let mut e = AvEncoder {
                av,
                ctx: (av.alloc_context)(codec),
                packet: (av.packet_alloc)(),
                frame: (av.frame_alloc)(),
                params: params.clone(),
                next_pts: 0,
                hw: None,
            };
            if e.ctx.is_null() || e.packet.is_null() || e.frame.is_null() {
                return Err("libavcodec is out of memory".into());
            }
            let mut pixel_format = "yuv420p";
            if name == VAAPI {
                let device = params.device.as_deref().ok_or_else(|| {
                    format!("{VAAPI} needs a render node (/dev/dri/renderD128), and none was found")
                })?;
                e.hw = Some(vaapi::HwFrames::open(
                    av,
                    e.ctx,
                    device,
                    params.width,
                    params.height,
                )?);
                pixel_format = "vaapi";
            }
            let size = format!("{}x{}", params.width, params.height);
            let time_base = format!("1/{}", params.fps);
            let (bitrate, gop) = (params.bitrate.to_string(), params.gop.to_string());
            let required = [
                ("video_size", size.as_str()),
                ("pixel_format", pixel_format),
                ("time_base", time_base.as_str()),
                ("b", bitrate.as_str()),
                ("maxrate", bitrate.as_str()),
                ("bufsize", bitrate.as_str()),
                ("g", gop.as_str()),
                ("bf", "0"),
                ("color_range", "tv"),
            ];
            for (k, v) in required {
                let r = e.set(k, v, false);
                if r < 0 {
                    return Err(format!("{name} takes no {k} = {v} ({})", av.error(r)));
                }
            }
            // What each encoder does best for live viewers; an option an encoder lacks is
            // left to it.
            if name == "libx264" {
                for (k, v) in [
                    ("preset", "ultrafast"),
                    ("tune", "zerolatency"),
                    ("profile", "baseline"),
                    ("forced-idr", "1"),
                    ("threads", "2"),
                ] {
                    e.set(k, v, true);
                }
            } else {
                // FF_PROFILE_H264_CONSTRAINED_BASELINE.
                e.set("profile", "578", false);
            }
            let r = (av.open2)(e.ctx, codec, std::ptr::null_mut());
            if r < 0 {
                return Err(format!(
                    "cannot open the encoder {name} for {size} at {} fps: {}",
                    params.fps,
                    av.error(r)
                ));
            }
            Ok(e)
        }
    }

    /// Set an option of the context (`private`: or of the encoder itself).
    unsafe fn set(&self, k: &str, v: &str, private: bool) -> c_int {
        let (k, v) = (
            CString::new(k).unwrap_or_default(),
            CString::new(v).unwrap_or_default(),
        );
        // AV_OPT_SEARCH_CHILDREN reaches the encoder's private options.
        (self.av.opt_set)(self.ctx, k.as_ptr(), v.as_ptr(), private as c_int)
    }

    /// Encode one picture (`planes`: packed limited-range I420 of the encoder's size; `None`
    /// flushes), a keyframe if `key`; append what comes out.
    pub fn encode(&mut self, planes: Option<&[u8]>, key: bool, out: &mut Vec<Packet>) -> Result<(), String> {
        let (w, h) = (self.params.width as usize, self.params.height as usize);
        let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
        if planes.is_some_and(|p| p.len() != w * h + 2 * cw * ch) {
            return Err(format!("a picture of the wrong size for a {w}x{h} encoder"));
        }
        // SAFETY: the frame points into `planes` for the call only (the encoder copies a frame
        // that has no reference-counted buffer); the fields written are those of this
        // libavutil's layout.
        unsafe {
            let r = match planes {
                Some(p) => {
                    // The picture on the device (VAAPI), or the frame pointing into `planes`.
                    let frame = match self.hw.as_mut() {
                        Some(hw) => hw.upload(p, w, h)?,
                        None => {
                            let f = &mut *self.frame;
                            let base = p.as_ptr() as *mut u8;
                            f.data[0] = base;
                            f.data[1] = base.add(w * h);
                            f.data[2] = base.add(w * h + cw * ch);
                            f.linesize[0] = w as c_int;
                            f.linesize[1] = cw as c_int;
                            f.linesize[2] = cw as c_int;
                            f.width = w as c_int;
                            f.height = h as c_int;
                            f.format = AV_PIX_FMT_YUV420P;
                            self.frame
                        }
                    };
                    let kind = if key {
                        AV_PICTURE_TYPE_I
                    } else {
                        AV_PICTURE_TYPE_NONE
                    };
                    if self.av.avutil_major >= 59 {
                        let t = &mut (*(frame as *mut Frame59)).tail;
                        t.pict_type = kind;
                        t.pts = self.next_pts;
                    } else {
                        let t = &mut (*(frame as *mut Frame58)).tail;
                        t.pict_type = kind;
                        t.pts = self.next_pts;
                    }
                    self.next_pts += 1;
                    let mut r = (self.av.send_frame)(self.ctx, frame);
                    let mut drained = Ok(());
                    if r == AVERROR_EAGAIN {
                        // Its queue is full (a hardware encoder): take what is done, once more.
                        drained = self.drain(out);
                        if drained.is_ok() {
                            r = (self.av.send_frame)(self.ctx, frame);
                        }
                    }
                    // The encoder holds its own reference now: let go of the picture.
                    match self.hw.as_mut() {
                        Some(hw) => hw.release(),
                        None => {
                            let f = &mut *self.frame;
                            f.data = [std::ptr::null_mut(); 8];
                            f.linesize = [0; 8];
                        }
                    }
                    drained?;
                    r
                }
                None => (self.av.send_frame)(self.ctx, std::ptr::null()),
            };
            if r < 0 && r != AVERROR_EAGAIN && r != AVERROR_EOF {
                return Err(format!("the encoder refused a picture: {}", self.av.error(r)));
            }
            self.drain(out)
        }
    }

    unsafe fn drain(&mut self, out: &mut Vec<Packet>) -> Result<(), String> {
        loop {
            let r = (self.av.receive_packet)(self.ctx, self.packet);
            if r == AVERROR_EAGAIN || r == AVERROR_EOF {
                return Ok(());
            }
            if r < 0 {
                return Err(format!("the encoder failed: {}", self.av.error(r)));
            }
            let p = &*self.packet;
            if !p.data.is_null() && p.size > 0 {
                out.push(Packet {
                    data: std::slice::from_raw_parts(p.data, p.size as usize).to_vec(),
                    keyframe: p.flags & AV_PKT_FLAG_KEY != 0,
                });
            }
            (self.av.packet_unref)(self.packet);
        }
    }
}

// SAFETY: as AvDecoder: one thread at a time.
unsafe impl Send for AvEncoder<'_> {}

impl Drop for AvEncoder<'_> {
    fn drop(&mut self) {
        // SAFETY: as AvDecoder's.
        unsafe {
            (self.av.frame_free)(&mut self.frame);
            (self.av.packet_free)(&mut self.packet);
            (self.av.free_context)(&mut self.ctx);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limited_range_samples_are_stretched_to_full_range() {
        assert_eq!(to_full_range(16, false, false), 0);
        assert_eq!(to_full_range(235, false, false), 255);
        assert_eq!(to_full_range(0, false, false), 0);
        assert_eq!(to_full_range(255, false, false), 255);
        assert_eq!(to_full_range(128, false, true), 128);
        assert!(to_full_range(16, false, true) <= 1);
        assert_eq!(to_full_range(240, false, true), 255);
        assert_eq!(to_full_range(77, true, false), 77);
    }

    /// The places the VAAPI encoder writes to (`AVCodecContext.hw_frames_ctx`, the frames
    /// context's format) are where this machine's libavcodec reads them: proven through the
    /// library's own check (a wrong place makes it take the mismatched format or refuse both).
    #[test]
    fn hardware_frames_are_given_where_this_libavcodec_reads_them() {
        let av = Libav::load().expect("libavcodec (apt install ffmpeg)");
        assert_eq!(av.check_hw_layout(), Ok(()));
    }

    /// No VA device here: `h264_vaapi` is refused with the device named and the fix.
    #[test]
    fn vaapi_without_a_device_is_refused_naming_it() {
        let av = Libav::load().expect("libavcodec (apt install ffmpeg)");
        let mut params = EncodeParams {
            width: 320,
            height: 240,
            fps: 30,
            bitrate: 500_000,
            gop: 60,
            device: Some("/dev/null".into()),
        };
        let e = AvEncoder::open(&av, VAAPI, &params).err().expect("no VAAPI here");
        assert!(e.contains("/dev/null") && e.contains("VA driver"), "{e}");
        params.device = None;
        let e = AvEncoder::open(&av, VAAPI, &params).err().expect("no device");
        assert!(e.contains("render node"), "{e}");
    }
}
