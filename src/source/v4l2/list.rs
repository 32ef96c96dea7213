//! `farmcam devices`: the V4L2 capture devices connected, what they offer, and a ready
//! `[[camera]]` block for each.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use v4l::capability::Flags;
use v4l::frameinterval::FrameIntervalEnum;
use v4l::framesize::FrameSizeEnum;
use v4l::video::Capture;
use v4l::{Device, FourCC};

use super::device::{choose_format, mjpg, preferred_size, settable, DEFAULT_FPS};
use super::{control_name, PixelFormat};
use crate::frame::Size;

/// One capture device as `farmcam devices` shows it.
pub struct Found {
    pub node: PathBuf,
    /// The stable `/dev/v4l/by-id/…` name, when udev made one (USB cameras).
    pub by_id: Option<PathBuf>,
    pub driver: String,
    pub card: String,
    pub bus: String,
    pub formats: Vec<FormatInfo>,
    /// `name min..=max (default d)` of each settable control.
    pub controls: Vec<String>,
}

pub struct FormatInfo {
    pub fourcc: FourCC,
    pub description: String,
    /// Each size with the frame rates offered at it (empty: not enumerated).
    pub sizes: Vec<(u32, u32, Vec<f64>)>,
    /// For drivers that give a range of sizes instead of a list.
    pub range: Option<String>,
}

/// The `/dev/videoN` nodes, in number order.
pub fn nodes(dev: &Path) -> Vec<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir(dev)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let n = name.strip_prefix("video")?.parse().ok()?;
            Some((n, e.path()))
        })
        .collect();
    found.sort();
    found.into_iter().map(|(_, p)| p).collect()
}

/// Stable names (`/dev/v4l/by-id/…`) by the node they point at.
fn by_id(dev: &Path) -> BTreeMap<PathBuf, PathBuf> {
    let mut map = BTreeMap::new();
    for entry in std::fs::read_dir(dev.join("v4l/by-id"))
        .into_iter()
        .flatten()
        .flatten()
    {
        if let Ok(target) = std::fs::canonicalize(entry.path()) {
            map.entry(target).or_insert(entry.path());
        }
    }
    map
}

/// Inspect every node under `dev` (normally `/dev`). Non-capture nodes come back as `Err` with
/// a one-line reason (they are listed, not hidden: a loopback device without a writer is one).
pub fn scan(dev: &Path) -> Vec<Result<Found, String>> {
    let ids = by_id(dev);
    nodes(dev)
        .into_iter()
        .map(|node| {
            let id = std::fs::canonicalize(&node)
                .ok()
                .and_then(|c| ids.get(&c).cloned());
            catch_unwind(AssertUnwindSafe(|| inspect(&node, id))).unwrap_or_else(|_| {
                Err(format!(
                    "{}: the driver's answers could not be read",
                    node.display()
                ))
            })
        })
        .collect()
}

fn inspect(node: &Path, by_id: Option<PathBuf>) -> Result<Found, String> {
    let device = Device::with_path(node).map_err(|e| super::device::describe(node, "open", &e))?;
    let caps = device
        .query_caps()
        .map_err(|e| super::device::describe(node, "query capabilities", &e))?;
    if !caps.capabilities.contains(Flags::VIDEO_CAPTURE) {
        return Err(format!(
            "{} ({}, {}): not a video capture device",
            node.display(),
            caps.card,
            caps.driver
        ));
    }
    let mut formats = Vec::new();
    for f in device.enum_formats().unwrap_or_default() {
        let mut info = FormatInfo {
            fourcc: f.fourcc,
            description: f.description.clone(),
            sizes: Vec::new(),
            range: None,
        };
        for s in device.enum_framesizes(f.fourcc).unwrap_or_default() {
            match s.size {
                FrameSizeEnum::Discrete(d) => {
                    let rates = device
                        .enum_frameintervals(f.fourcc, d.width, d.height)
                        .unwrap_or_default()
                        .into_iter()
                        .filter_map(|i| match i.interval {
                            FrameIntervalEnum::Discrete(r) if r.numerator > 0 => {
                                Some(r.denominator as f64 / r.numerator as f64)
                            }
                            _ => None,
                        })
                        .collect();
                    info.sizes.push((d.width, d.height, rates));
                }
                FrameSizeEnum::Stepwise(r) => {
                    info.range = Some(format!(
                        "{}x{} to {}x{}",
                        r.min_width, r.min_height, r.max_width, r.max_height
                    ));
                }
            }
        }
        formats.push(info);
    }
    let controls = device
        .query_controls()
        .unwrap_or_default()
        .iter()
        .filter(|d| settable(d))
        .map(|d| {
            format!(
                "{} {}..={} (default {})",
                control_name(&d.name),
                d.minimum,
                d.maximum,
                d.default
            )
        })
        .collect();
    Ok(Found {
        node: node.to_path_buf(),
        by_id,
        driver: caps.driver,
        card: caps.card,
        bus: caps.bus,
        formats,
        controls,
    })
}

/// A size and the best frame rate at it (up to 30 fps).
type Pick = (u32, u32, Option<f64>);

impl Found {
    /// The format, size and rate farmcam would pick (MJPEG first; 1280x720 or the largest below).
    fn pick(&self) -> Option<(&FormatInfo, Option<Pick>)> {
        let offered: Vec<FourCC> = self.formats.iter().map(|f| f.fourcc).collect();
        let fourcc = choose_format(PixelFormat::Auto, &offered)?;
        let f = self.formats.iter().find(|f| f.fourcc == fourcc)?;
        let size = preferred_size(f.sizes.iter().map(|(width, height, _)| Size {
            width: *width,
            height: *height,
        }))
        .and_then(|s| f.sizes.iter().find(|(w, h, _)| (*w, *h) == (s.width, s.height)))
        .map(|(w, h, rates)| {
            let best = rates
                .iter()
                .copied()
                .filter(|r| *r <= DEFAULT_FPS as f64 + 0.01)
                .fold(None, |a: Option<f64>, r| Some(a.map_or(r, |a| a.max(r))));
            (*w, *h, best)
        });
        Some((f, size))
    }

    /// An id from the card name ("HD Pro Webcam C920" → `hd-pro-webcam-c920`).
    pub fn id(&self) -> String {
        let mut id = control_name(&self.card).replace('_', "-");
        id.truncate(32);
        let id = id.trim_end_matches('-');
        if id.is_empty() {
            "usb-camera".into()
        } else {
            id.into()
        }
    }

    /// The path a configuration should name: by-id when there is one.
    pub fn source_path(&self) -> &Path {
        self.by_id.as_deref().unwrap_or(&self.node)
    }

    /// A `[[camera]]` block for this device.
    pub fn snippet(&self) -> String {
        let id = self.id();
        let mut out = String::new();
        let _ = writeln!(out, "[[camera]]");
        let _ = writeln!(out, "id = \"{id}\"");
        let _ = writeln!(out, "name = {:?}", self.card);
        let _ = writeln!(out, "source = \"v4l2:{}\"", self.source_path().display());
        match self.pick() {
            Some((f, size)) => {
                let _ = writeln!(
                    out,
                    "format = \"{}\"{}",
                    if f.fourcc == mjpg() { "mjpeg" } else { "yuyv" },
                    if f.fourcc == mjpg() {
                        "   # passed through: no encoding"
                    } else {
                        "    # encoded by farmcam (costs CPU)"
                    }
                );
                if let Some((w, h, fps)) = size {
                    let _ = writeln!(out, "size = \"{w}x{h}\"");
                    if let Some(fps) = fps {
                        let _ = writeln!(out, "fps = {}", fps.round() as u32);
                    }
                }
            }
            None => {
                let _ = writeln!(out, "# farmcam reads MJPG or YUYV; this device offers neither");
            }
        }
        out
    }
}

/// The whole report, as `farmcam devices` prints it.
pub fn report(dev: &Path) -> (String, usize) {
    let mut out = String::new();
    let mut cameras = 0;
    let found = scan(dev);
    if found.is_empty() {
        let _ = writeln!(
            out,
            "No V4L2 devices ({}/video* does not exist). Plug in a camera and check `dmesg` for it.",
            dev.display()
        );
        return (out, 0);
    }
    let mut others = Vec::new();
    for item in found {
        let d = match item {
            Ok(d) => d,
            Err(reason) => {
                others.push(reason);
                continue;
            }
        };
        cameras += 1;
        let _ = writeln!(
            out,
            "{}: {} (driver {}, {})",
            d.node.display(),
            d.card,
            d.driver,
            d.bus
        );
        match &d.by_id {
            Some(id) => {
                let _ = writeln!(out, "  by-id: {}", id.display());
            }
            None => {
                let _ = writeln!(
                    out,
                    "  by-id: none (not a USB camera, or no udev): {} may change between boots",
                    d.node.display()
                );
            }
        }
        // In detail only what farmcam reads; the rest in one line.
        let (usable, other): (Vec<&FormatInfo>, Vec<&FormatInfo>) = d
            .formats
            .iter()
            .partition(|f| choose_format(PixelFormat::Auto, &[f.fourcc]).is_some());
        for f in usable {
            let _ = writeln!(out, "  {} ({}):", f.fourcc, f.description);
            for (w, h, rates) in &f.sizes {
                let rates: Vec<String> = rates.iter().map(|r| format_rate(*r)).collect();
                let _ = writeln!(
                    out,
                    "    {w}x{h}{}",
                    if rates.is_empty() {
                        String::new()
                    } else {
                        format!(" @ {} fps", rates.join(", "))
                    }
                );
            }
            if let Some(range) = &f.range {
                let _ = writeln!(out, "    any size from {range}");
            }
        }
        if !other.is_empty() {
            let names: Vec<String> = other
                .iter()
                .map(|f| f.fourcc.to_string().trim().to_string())
                .filter(|n| !n.is_empty())
                .collect();
            let _ = writeln!(
                out,
                "  also {} (farmcam reads MJPG and YUYV only)",
                names.join(", ")
            );
        }
        if !d.controls.is_empty() {
            let _ = writeln!(out, "  controls (set with controls = {{ name = value }}):");
            for c in &d.controls {
                let _ = writeln!(out, "    {c}");
            }
        }
        let _ = writeln!(out);
        for line in d.snippet().lines() {
            let _ = writeln!(out, "  {line}");
        }
        let _ = writeln!(out);
    }
    for o in &others {
        let _ = writeln!(out, "skipped {o}");
    }
    if cameras == 0 {
        let _ = writeln!(out, "No capture devices found.");
    }
    (out, cameras)
}

fn format_rate(r: f64) -> String {
    if (r - r.round()).abs() < 0.01 {
        format!("{}", r.round() as u32)
    } else {
        format!("{r:.2}")
    }
}

/// A capture device farmcam can serve (it offers MJPEG or YUYV), as a camera would name it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Servable {
    /// Unique among the devices found (`-2`, `-3` … added to repeats).
    pub id: String,
    /// The card's name.
    pub name: String,
    /// Its by-id path when it has one (stable across replugs), else `/dev/videoN`.
    pub path: PathBuf,
}

/// Every V4L2 capture device under `dev` that farmcam can serve, in a stable order.
pub fn servable(dev: &Path) -> Vec<Servable> {
    let mut out: Vec<Servable> = Vec::new();
    for found in scan(dev).into_iter().flatten() {
        if found.pick().is_none() {
            continue; // Neither MJPEG nor YUYV: nothing farmcam can serve.
        }
        let base = found.id();
        let id = (1..)
            .map(|n| {
                if n == 1 {
                    base.clone()
                } else {
                    format!("{base}-{n}")
                }
            })
            .find(|id| !out.iter().any(|s| &s.id == id))
            .unwrap_or(base);
        out.push(Servable {
            id,
            name: found.card.clone(),
            path: found.source_path().to_path_buf(),
        });
    }
    out
}

/// The first `videoN` under `dev` that is a V4L2 memory-to-memory H.264 encoder.
pub fn h264_encoder_device(dev: &Path) -> Option<std::path::PathBuf> {
    let mut found: Vec<std::path::PathBuf> = std::fs::read_dir(dev)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("video"))
        })
        .collect();
    found.sort();
    found.into_iter().find(|p| encodes_h264(p))
}

/// Whether `node` is a V4L2 memory-to-memory device that encodes H.264 (pictures in, H.264
/// out): a Raspberry Pi 4's bcm2835-codec encoder (`/dev/video11`), or another SoC's.
pub fn encodes_h264(node: &Path) -> bool {
    catch_unwind(AssertUnwindSafe(|| {
        let Ok(device) = Device::with_path(node) else {
            return false;
        };
        let Ok(caps) = device.query_caps() else {
            return false;
        };
        if !caps
            .capabilities
            .intersects(Flags::VIDEO_M2M | Flags::VIDEO_M2M_MPLANE)
        {
            return false;
        }
        // The coded side of an encoder is its capture queue. A multi-planar device's formats
        // are not listed through the single-planar call: bcm2835-codec says what it is in its
        // card name instead.
        let h264 = FourCC::new(b"H264");
        device
            .enum_formats()
            .map(|fs| fs.iter().any(|f| f.fourcc == h264))
            .unwrap_or(false)
            || (caps.driver == "bcm2835-codec" && caps.card.contains("encode"))
    }))
    .unwrap_or(false)
}
