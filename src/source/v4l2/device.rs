//! One open V4L2 capture device: format negotiation, controls, and the ring of mmap buffers.
//!
//! The v4l crate opens the device and negotiates; the buffer ring is ours because the crate's
//! `Stream`/`Arena` panic in `Drop` on any error other than ENODEV (EIO from an unplugged camera,
//! for one), and a panic while unwinding aborts the daemon. [`Ring`] ignores errors on release.

use std::io;
use std::os::raw::c_void;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use v4l::buffer::Type;
use v4l::capability::Flags;
use v4l::control::{Control, Description, Type as ControlType, Value};
use v4l::device::Handle;
use v4l::v4l2::{self, vidioc};
use v4l::v4l_sys::{v4l2_buffer, v4l2_requestbuffers};
use v4l::video::capture::Parameters;
use v4l::video::Capture;
use v4l::{Device, Format, FourCC, FrameSize, Memory};

use super::{control_name, ControlValue, PixelFormat};
use crate::frame::Size;

/// The size asked for when `size` is not configured, if the camera offers it.
pub const DEFAULT_SIZE: Size = Size {
    width: 1280,
    height: 720,
};
/// The frame rate asked for when `fps` is not configured (the driver picks the nearest it has).
pub const DEFAULT_FPS: u32 = 30;
const BUFFERS: u32 = 4;

pub fn mjpg() -> FourCC {
    FourCC::new(b"MJPG")
}
pub fn yuyv() -> FourCC {
    FourCC::new(b"YUYV")
}
pub fn h264() -> FourCC {
    FourCC::new(b"H264")
}

/// How frames of the negotiated format become JPEGs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// Passed through (completed: see [`crate::media::jpeg::complete_mjpeg`]).
    Mjpeg,
    /// Encoded; `stride` is the driver's bytes per line.
    Yuyv { stride: u32 },
    /// H.264 access units, passed through as coded video (and decoded for pictures).
    H264,
}

/// What the device agreed to.
pub struct Negotiated {
    pub encoding: Encoding,
    pub width: u32,
    pub height: u32,
    /// Frames per second, when the driver reports it.
    pub fps: Option<f64>,
    /// Things worth a warning (a size the camera replaced, a control it refused).
    pub warnings: Vec<String>,
}

/// An open error as the operator needs it: what failed and what to do.
pub fn describe(path: &Path, what: &str, e: &io::Error) -> String {
    let p = path.display();
    match e.raw_os_error() {
        Some(libc::ENOENT) => format!(
            "{p} does not exist (unplugged? `farmcam devices` lists the cameras connected)"
        ),
        Some(libc::EACCES) | Some(libc::EPERM) => format!(
            "{p}: permission denied; farmcam's user must be in the \"video\" group (usermod -aG video farmcam)"
        ),
        Some(libc::EBUSY) => format!("{p} is busy: another program is capturing from it"),
        Some(libc::ENODEV) | Some(libc::ENXIO) => format!("{p} is gone (unplugged)"),
        _ => format!("{p}: {what}: {e}"),
    }
}

/// Open `path` and agree on a format, a size and a frame rate; apply `controls`.
pub fn open(
    path: &Path,
    format: PixelFormat,
    size: Option<Size>,
    fps: Option<u32>,
    controls: &[(String, ControlValue)],
) -> Result<(Device, Negotiated), String> {
    let device = Device::with_path(path).map_err(|e| describe(path, "open", &e))?;
    let caps = device
        .query_caps()
        .map_err(|e| describe(path, "query capabilities", &e))?;
    if !caps.capabilities.contains(Flags::VIDEO_CAPTURE) {
        return Err(format!(
            "{} ({}) is not a video capture device{}",
            path.display(),
            caps.card,
            if caps.driver.contains("loopback") {
                " (a v4l2loopback device captures only while a program writes to it)"
            } else {
                "; `farmcam devices` lists the capture devices"
            }
        ));
    }
    if !caps.capabilities.contains(Flags::STREAMING) {
        return Err(format!(
            "{} ({}) cannot stream (no mmap I/O)",
            path.display(),
            caps.card
        ));
    }
    let offered: Vec<FourCC> = device
        .enum_formats()
        .map_err(|e| describe(path, "list formats", &e))?
        .into_iter()
        .map(|f| f.fourcc)
        .collect();
    let fourcc = choose_format(format, &offered).ok_or_else(|| {
        let names: Vec<String> = offered.iter().map(|f| f.to_string()).collect();
        format!(
            "{} offers {}; farmcam reads MJPG, YUYV and H264{}",
            path.display(),
            if names.is_empty() {
                "no formats".into()
            } else {
                names.join(", ")
            },
            match format {
                PixelFormat::Auto => String::new(),
                PixelFormat::Mjpeg => " (try format = \"yuyv\" or \"auto\")".into(),
                PixelFormat::Yuyv | PixelFormat::H264 => " (try format = \"mjpeg\" or \"auto\")".into(),
            }
        )
    })?;
    let sizes = device.enum_framesizes(fourcc).unwrap_or_default();
    let want = size.unwrap_or_else(|| default_size(sizes));
    let mut warnings = Vec::new();
    let agreed = device
        .set_format(&Format::new(want.width, want.height, fourcc))
        .map_err(|e| describe(path, "set format", &e))?;
    if agreed.fourcc != fourcc {
        return Err(format!(
            "{} refused {fourcc} (it switched to {})",
            path.display(),
            agreed.fourcc
        ));
    }
    if size.is_some() && (agreed.width, agreed.height) != (want.width, want.height) {
        warnings.push(format!(
            "size {want} is not offered by {}; using {}x{}",
            path.display(),
            agreed.width,
            agreed.height
        ));
    }
    let rate = fps.unwrap_or(DEFAULT_FPS);
    // Drivers without frame rate control (S_PARM) just keep their own rate.
    let fps = match device.set_params(&Parameters::with_fps(rate)) {
        Ok(p) if p.interval.numerator > 0 => {
            Some(p.interval.denominator as f64 / p.interval.numerator as f64)
        }
        _ => None,
    };
    apply_controls(&device, controls, &mut warnings);
    let encoding = if fourcc == mjpg() {
        Encoding::Mjpeg
    } else if fourcc == h264() {
        Encoding::H264
    } else {
        Encoding::Yuyv {
            stride: agreed.stride.max(agreed.width * 2),
        }
    };
    Ok((
        device,
        Negotiated {
            encoding,
            width: agreed.width,
            height: agreed.height,
            fps,
            warnings,
        },
    ))
}

pub fn choose_format(want: PixelFormat, offered: &[FourCC]) -> Option<FourCC> {
    let has = |f: FourCC| offered.contains(&f).then_some(f);
    match want {
        PixelFormat::Auto => has(mjpg()).or_else(|| has(yuyv())),
        PixelFormat::Mjpeg => has(mjpg()),
        PixelFormat::Yuyv => has(yuyv()),
        PixelFormat::H264 => has(h264()),
    }
}

/// 1280x720 if offered; else the largest offered size below it; else the smallest offered.
pub fn preferred_size(offered: impl IntoIterator<Item = Size>) -> Option<Size> {
    let mut all: Vec<Size> = offered.into_iter().collect();
    all.sort_by_key(|s| s.width * s.height);
    let limit = DEFAULT_SIZE.width * DEFAULT_SIZE.height;
    all.iter()
        .rev()
        .find(|s| s.width * s.height <= limit)
        .or(all.first())
        .copied()
}

fn default_size(sizes: Vec<FrameSize>) -> Size {
    preferred_size(
        sizes
            .into_iter()
            .flat_map(|s| s.size.to_discrete())
            .map(|d| Size {
                width: d.width,
                height: d.height,
            }),
    )
    .unwrap_or(DEFAULT_SIZE)
}

/// Set each control by its `v4l2-ctl` name; what fails becomes a warning (the camera still runs).
fn apply_controls(device: &Device, controls: &[(String, ControlValue)], warnings: &mut Vec<String>) {
    if controls.is_empty() {
        return;
    }
    let known: Vec<Description> = match device.query_controls() {
        Ok(k) => k,
        Err(e) => {
            warnings.push(format!("cannot list controls: {e}"));
            return;
        }
    };
    for (name, value) in controls {
        let Some(d) = known.iter().find(|d| control_name(&d.name) == *name) else {
            let names: Vec<String> = known
                .iter()
                .filter(|d| settable(d))
                .map(|d| control_name(&d.name))
                .collect();
            warnings.push(format!(
                "no control {name:?}; this camera has: {}",
                names.join(", ")
            ));
            continue;
        };
        let v = match (d.typ, value) {
            (ControlType::Boolean, ControlValue::Bool(b)) => Value::Boolean(*b),
            (ControlType::Boolean, ControlValue::Int(i)) => Value::Boolean(*i != 0),
            (_, ControlValue::Int(i)) => Value::Integer(*i),
            (_, ControlValue::Bool(b)) => Value::Integer(*b as i64),
        };
        if let Err(e) = device.set_control(Control { id: d.id, value: v }) {
            warnings.push(format!(
                "control {name} = {value} refused ({e}); range {}..={}",
                d.minimum, d.maximum
            ));
        }
    }
}

/// Controls an operator can set (not read-only, not a class heading, not a button).
pub fn settable(d: &Description) -> bool {
    use v4l::control::Flags as F;
    matches!(
        d.typ,
        ControlType::Integer
            | ControlType::Boolean
            | ControlType::Menu
            | ControlType::IntegerMenu
            | ControlType::Integer64
    ) && !d.flags.intersects(F::DISABLED | F::READ_ONLY)
}

/// A dequeued buffer: its index and the bytes the driver filled.
pub struct Filled {
    pub index: u32,
    pub bytesused: usize,
    /// The driver flagged the frame as corrupted (V4L2_BUF_FLAG_ERROR).
    pub error: bool,
}

/// The mmap buffer ring of a streaming device. Dropping it stops streaming and releases the
/// buffers, ignoring errors (the device may be gone).
pub struct Ring {
    handle: Arc<Handle>,
    maps: Vec<(*mut c_void, usize)>,
    streaming: bool,
}

// The mappings are only touched by the thread that owns the ring.
unsafe impl Send for Ring {}

impl Ring {
    /// Request, map and queue the buffers, then start streaming.
    pub fn start(device: &Device) -> io::Result<Ring> {
        let mut ring = Ring {
            handle: device.handle(),
            maps: Vec::new(),
            streaming: false,
        };
        let mut req = v4l2_requestbuffers {
            count: BUFFERS,
            type_: Type::VideoCapture as u32,
            memory: Memory::Mmap as u32,
            ..unsafe { std::mem::zeroed() }
        };
        ring.ioctl(vidioc::VIDIOC_REQBUFS, &mut req)?;
        for index in 0..req.count {
            let mut buf = ring.desc(index);
            ring.ioctl(vidioc::VIDIOC_QUERYBUF, &mut buf)?;
            // SAFETY: maps the driver's buffer `index` as QUERYBUF described it; unmapped in Drop.
            let ptr = unsafe {
                v4l2::mmap(
                    std::ptr::null_mut(),
                    buf.length as usize,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_SHARED,
                    ring.handle.fd(),
                    buf.m.offset as libc::off_t,
                )?
            };
            ring.maps.push((ptr, buf.length as usize));
        }
        if ring.maps.is_empty() {
            return Err(io::Error::other("the driver gave no buffers"));
        }
        for index in 0..ring.maps.len() as u32 {
            ring.requeue(index)?;
        }
        let mut typ = Type::VideoCapture as u32;
        ring.ioctl(vidioc::VIDIOC_STREAMON, &mut typ)?;
        ring.streaming = true;
        Ok(ring)
    }

    /// Wait up to `timeout` for a filled buffer. `Ok(None)`: nothing yet.
    pub fn next(&mut self, timeout: Duration) -> io::Result<Option<Filled>> {
        let ready = match self.handle.poll(libc::POLLIN, timeout.as_millis() as i32) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(None),
            r => r?,
        };
        if ready == 0 {
            return Ok(None);
        }
        let mut buf = self.desc(0);
        match self.ioctl(vidioc::VIDIOC_DQBUF, &mut buf) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => return Ok(None),
            Err(e) => return Err(e),
        }
        let len = self.maps.get(buf.index as usize).map(|m| m.1).unwrap_or(0);
        Ok(Some(Filled {
            index: buf.index,
            bytesused: (buf.bytesused as usize).min(len),
            error: buf.flags & v4l::v4l_sys::V4L2_BUF_FLAG_ERROR != 0,
        }))
    }

    /// The filled part of a dequeued buffer.
    pub fn data(&self, filled: &Filled) -> &[u8] {
        let (ptr, len) = self.maps[filled.index as usize];
        // SAFETY: the mapping lives as long as `self`; the driver does not write a dequeued buffer.
        unsafe { std::slice::from_raw_parts(ptr as *const u8, filled.bytesused.min(len)) }
    }

    /// Give a buffer back to the driver.
    pub fn requeue(&mut self, index: u32) -> io::Result<()> {
        let mut buf = self.desc(index);
        self.ioctl(vidioc::VIDIOC_QBUF, &mut buf)
    }

    fn desc(&self, index: u32) -> v4l2_buffer {
        v4l2_buffer {
            index,
            type_: Type::VideoCapture as u32,
            memory: Memory::Mmap as u32,
            ..unsafe { std::mem::zeroed() }
        }
    }

    fn ioctl<T>(&self, request: vidioc::_IOC_TYPE, arg: &mut T) -> io::Result<()> {
        // SAFETY: `arg` is the structure `request` expects (callers pair them).
        unsafe { v4l2::ioctl(self.handle.fd(), request, arg as *mut T as *mut c_void) }
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        if self.streaming {
            let mut typ = Type::VideoCapture as u32;
            let _ = self.ioctl(vidioc::VIDIOC_STREAMOFF, &mut typ);
        }
        for (ptr, len) in self.maps.drain(..) {
            // SAFETY: each mapping was made by `start` and is unmapped once.
            let _ = unsafe { v4l2::munmap(ptr, len) };
        }
        let mut req = v4l2_requestbuffers {
            count: 0,
            type_: Type::VideoCapture as u32,
            memory: Memory::Mmap as u32,
            ..unsafe { std::mem::zeroed() }
        };
        let _ = self.ioctl(vidioc::VIDIOC_REQBUFS, &mut req);
    }
}
