//! Timelapses on disk. A recording is a spool directory, `NAME.spool/`, holding `meta.json` and
//! the pictures `000001.jpg`, `000002.jpg`, … as they are taken (each written to a temporary
//! name, synced and renamed: a crash or power loss loses at most the picture being written). A
//! rendered timelapse is `NAME.mp4` with `NAME.json` beside it; its spool is removed only once the
//! video exists.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// What is known of one timelapse, kept beside its pictures and its video.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    pub name: String,
    pub camera: String,
    /// The printer (its Moonraker or Bambu name), when the trigger knows it.
    pub printer: Option<String>,
    /// The print's file, when the trigger knows it.
    pub file: Option<String>,
    /// What started it: `api`, `mqtt`, `moonraker`, `bambu`.
    pub trigger: String,
    /// Unix seconds.
    pub started: u64,
    pub stopped: Option<u64>,
    /// How the print ended: `complete`, `cancelled`, `error`, `stopped` (API/MQTT), or
    /// `interrupted` (farmcam stopped while recording).
    pub outcome: Option<String>,
    /// Pictures in the video (set when it is rendered).
    pub pictures: Option<u64>,
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

/// A name for a timelapse: the printer (else the camera), the print's file, the start time and
/// the camera, in characters safe in a URL and a file name.
pub fn name(camera: &str, printer: Option<&str>, file: Option<&str>, started: SystemTime) -> String {
    let stamp = humantime::format_rfc3339_seconds(started).to_string();
    // 2026-12-06T01:45:00Z → 20261206-014500
    let stamp: String = stamp
        .chars()
        .filter(|c| c.is_ascii_digit() || *c == 'T')
        .map(|c| if c == 'T' { '-' } else { c })
        .collect();
    let file = file.map(|f| {
        let base = f.rsplit('/').next().unwrap_or(f);
        base.strip_suffix(".gcode")
            .or_else(|| base.strip_suffix(".3mf"))
            .unwrap_or(base)
            .to_string()
    });
    let mut parts = vec![printer.unwrap_or(camera).to_string()];
    parts.extend(file);
    parts.push(stamp);
    if printer.is_some() {
        parts.push(camera.to_string());
    }
    let joined = parts.join("_");
    let safe: String = joined
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    safe.trim_matches(['.', '_']).chars().take(150).collect()
}

/// Whether `name` could be a timelapse's (what [`name`] makes): served and deleted by it.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 200
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// The directory of one recording.
#[derive(Clone, Debug)]
pub struct Spool {
    pub dir: PathBuf,
}

impl Spool {
    pub fn path(root: &Path, name: &str) -> PathBuf {
        root.join(format!("{name}.spool"))
    }

    /// Create a recording's directory and its meta.
    pub fn create(root: &Path, meta: &Meta) -> std::io::Result<Spool> {
        std::fs::create_dir_all(root)?;
        let dir = Self::path(root, &meta.name);
        std::fs::create_dir(&dir)?;
        let s = Spool { dir };
        s.write_meta(meta)?;
        Ok(s)
    }

    pub fn meta(&self) -> std::io::Result<Meta> {
        let text = std::fs::read(self.dir.join("meta.json"))?;
        serde_json::from_slice(&text).map_err(std::io::Error::other)
    }

    pub fn write_meta(&self, meta: &Meta) -> std::io::Result<()> {
        let json = serde_json::to_vec_pretty(meta).map_err(std::io::Error::other)?;
        write_durably(&self.dir.join("meta.json"), &json)
    }

    /// Picture `n` (from 1) as the video's input names it.
    pub fn picture(&self, n: u64) -> PathBuf {
        self.dir.join(format!("{n:06}.jpg"))
    }

    /// Pictures taken so far: the numbers run from 1 without gaps.
    pub fn pictures(&self) -> u64 {
        let mut n = 0;
        while self.picture(n + 1).exists() {
            n += 1;
        }
        n
    }

    /// Keep picture `n`: written whole, synced, then given its name.
    pub fn add(&self, n: u64, jpeg: &[u8]) -> std::io::Result<()> {
        write_durably(&self.picture(n), jpeg)
    }

    /// Pictures and bytes on disk, read at once (for listing: one directory read, not a file
    /// check per picture).
    pub fn contents(&self) -> (u64, u64) {
        let mut pictures = 0;
        let mut bytes = 0;
        for e in std::fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            let Ok(m) = e.metadata() else { continue };
            if m.is_file() {
                bytes += m.len();
                pictures += u64::from(e.path().extension().is_some_and(|x| x == "jpg"));
            }
        }
        (pictures, bytes)
    }

    pub fn remove(&self) -> std::io::Result<()> {
        std::fs::remove_dir_all(&self.dir)
    }
}

/// Write `data` to a temporary file beside `path`, sync it, rename it into place.
fn write_durably(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)
}

/// What is in the timelapse directory.
#[derive(Debug, Default)]
pub struct Contents {
    /// Recordings (active or waiting for their video), by name.
    pub spools: Vec<(Spool, Meta)>,
    /// Rendered timelapses: the video's path, its meta and size.
    pub videos: Vec<(PathBuf, Meta, u64)>,
}

/// Remove what a render that did not finish left (`.NAME.mp4.tmp`): at start, before any render.
pub fn remove_leftovers(root: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') && name.ends_with(".mp4.tmp") {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Read the timelapse directory (a missing one is empty).
pub fn scan(root: &Path) -> Contents {
    let mut out = Contents::default();
    let Ok(entries) = std::fs::read_dir(root) else {
        return out;
    };
    for e in entries.flatten() {
        let path = e.path();
        let Some(file) = path.file_name().and_then(|f| f.to_str()).map(str::to_string) else {
            continue;
        };
        if file.starts_with('.') {
            continue;
        } else if let Some(name) = file.strip_suffix(".spool") {
            let spool = Spool { dir: path.clone() };
            let meta = spool.meta().unwrap_or_else(|_| Meta {
                name: name.to_string(),
                trigger: "unknown".into(),
                ..Default::default()
            });
            out.spools.push((spool, meta));
        } else if let Some(name) = file.strip_suffix(".mp4") {
            let meta = std::fs::read(root.join(format!("{name}.json")))
                .ok()
                .and_then(|b| serde_json::from_slice::<Meta>(&b).ok())
                .unwrap_or_else(|| Meta {
                    name: name.to_string(),
                    ..Default::default()
                });
            let size = e.metadata().map(|m| m.len()).unwrap_or(0);
            out.videos.push((path, meta, size));
        }
    }
    out.videos.sort_by_key(|(_, m, _)| m.started);
    out.spools.sort_by_key(|(_, m)| m.started);
    out
}

/// The video of `name` and its meta.
pub fn video(root: &Path, name: &str) -> PathBuf {
    root.join(format!("{name}.mp4"))
}

/// Keep a rendered video: its meta first, then the video renamed into place.
pub fn keep_video(root: &Path, rendered: &Path, meta: &Meta) -> std::io::Result<()> {
    let json = serde_json::to_vec_pretty(meta).map_err(std::io::Error::other)?;
    write_durably(&root.join(format!("{}.json", meta.name)), &json)?;
    std::fs::rename(rendered, video(root, &meta.name))
}

/// Remove a rendered timelapse (video and meta).
pub fn remove_video(root: &Path, name: &str) -> std::io::Result<()> {
    std::fs::remove_file(video(root, name))?;
    let _ = std::fs::remove_file(root.join(format!("{name}.json")));
    Ok(())
}

/// Whether farmcam (this user) can keep timelapses in `dir`, as `farmcam check` says it.
pub fn dir_state(dir: &Path) -> String {
    let writable = |p: &Path| {
        std::ffi::CString::new(p.as_os_str().as_encoded_bytes())
            // SAFETY: a valid C string.
            .is_ok_and(|c| unsafe { libc::access(c.as_ptr(), libc::W_OK) } == 0)
    };
    let free = free_space(dir)
        .map(|f| format!(", {} MiB free", f >> 20))
        .unwrap_or_default();
    if dir.is_dir() {
        if writable(dir) {
            format!("writable{free}")
        } else {
            format!("NOT writable by this user: chown it to farmcam's user{free}")
        }
    } else {
        let parent = dir.ancestors().skip(1).find(|p| p.exists());
        match parent {
            Some(p) if writable(p) => format!("created at start{free}"),
            _ => {
                "does not exist and cannot be created by this user: create it, owned by farmcam's user".into()
            }
        }
    }
}

/// Free bytes for an unprivileged user on the file system holding `path` (its nearest existing
/// ancestor); `None` if it cannot be asked.
pub fn free_space(path: &Path) -> Option<u64> {
    let mut p = path;
    while !p.exists() {
        p = p.parent()?;
    }
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).ok()?;
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: a valid C string and a struct statvfs to fill.
    if unsafe { libc::statvfs(c.as_ptr(), &mut s) } != 0 {
        return None;
    }
    Some(s.f_bavail as u64 * s.f_frsize as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn names_are_safe_and_say_what_was_printed() {
        let t = UNIX_EPOCH + Duration::from_secs(1_796_521_500);
        let n = name("cam-1", Some("voron"), Some("gcodes/Benchy v2.gcode"), t);
        assert_eq!(n, "voron_Benchy_v2_20261206-014500_cam-1");
        assert!(valid_name(&n));
        assert_eq!(name("cam", None, None, t), "cam_20261206-014500");
        let hostile = name("c", Some("../../etc"), Some("a/../../b\n.gcode"), t);
        assert!(valid_name(&hostile), "{hostile}");
        for bad in ["", "../x", "a/b", ".hidden", "x y"] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn pictures_survive_as_written_and_the_spool_is_found_again() {
        let root = tempfile::tempdir().unwrap();
        let meta = Meta {
            name: "cam_1".into(),
            camera: "cam".into(),
            trigger: "api".into(),
            started: 5,
            ..Default::default()
        };
        let s = Spool::create(root.path(), &meta).unwrap();
        s.add(1, b"one").unwrap();
        s.add(2, b"two").unwrap();
        // A picture being written when the power went: only its temporary file.
        std::fs::write(s.dir.join("000003.tmp"), b"thr").unwrap();
        assert_eq!(s.pictures(), 2);
        let (pictures, bytes) = s.contents();
        assert_eq!(pictures, 2, "the temporary file is not a picture");
        assert!(bytes > 6, "meta.json counts too: {bytes}");
        let found = scan(root.path());
        assert_eq!(found.spools.len(), 1);
        assert_eq!(found.spools[0].1, meta);
        assert_eq!(found.spools[0].0.pictures(), 2);
        assert!(found.videos.is_empty());
        assert!(free_space(&root.path().join("not/yet")).is_some());
    }
}
