//! Keeping camera credentials off ffmpeg's command line, which every local user can read (`ps`,
//! `/proc/PID/cmdline`): a URL with a password goes into an ffconcat script instead, a file only
//! farmcam's user can read, which ffmpeg's concat demuxer opens as its input (the URL's input
//! options go along as `option` lines). The file is removed when the child ends.

use std::io::Write;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Stands for the script's path in a command line until the script is written.
pub const PLACEHOLDER: &str = "<farmcam-input-script>";

/// What ffmpeg needs to open the concat script: files, and the protocols a camera URL uses.
pub const PROTOCOLS: &str = "file,rtsp,rtsps,rtp,srtp,tcp,udp,tls,http,https,httpproxy,crypto";

/// The script for `url` with its input options (`key`, `value`), or why one of them cannot be
/// written in it. ffmpeg reads the script line by line before it looks at quotes, so a line break
/// or NUL cannot be expressed at all; everything else is quoted (`'`, with `\'` for a quote).
/// A trailing CRLF of `headers` is left out: ffmpeg ends the headers with one itself.
pub fn text(url: &str, options: &[(String, String)]) -> Result<String, String> {
    let quote = |what: &str, s: &str| {
        if s.contains(['\r', '\n', '\0']) {
            return Err(format!(
                "{what} holds a line break, which cannot go into the private file that carries the camera's password to ffmpeg; give one header per line break-free value (ffmpeg ends headers itself), or remove it"
            ));
        }
        Ok(format!("'{}'", s.replace('\'', "'\\''")))
    };
    let mut t = format!("ffconcat version 1.0\nfile {}\n", quote("the URL", url)?);
    for (k, v) in options {
        if k.is_empty()
            || !k
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
        {
            return Err(format!("-{k} is not an option name ffmpeg knows"));
        }
        let v = match k.as_str() {
            "headers" => v.strip_suffix("\r\n").unwrap_or(v),
            _ => v,
        };
        t.push_str(&format!(
            "option {k} {}\n",
            quote(&format!("the value of -{k}"), v)?
        ));
    }
    Ok(t)
}

/// A written script; removed on drop.
pub struct Script {
    pub path: PathBuf,
}

impl Drop for Script {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Write `text` for `camera` into farmcam's private directory (mode 0700; the file 0600).
pub fn write(camera: &str, text: &str) -> Result<Script, String> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let dir = private_dir()?;
    let path = dir.join(format!(
        "{camera}-{}-{}.ffconcat",
        std::process::id(),
        NEXT.fetch_add(1, Relaxed)
    ));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| format!("cannot write ffmpeg's input script in {}: {e}", dir.display()))?;
    let script = Script { path };
    f.write_all(text.as_bytes())
        .map_err(|e| format!("cannot write ffmpeg's input script: {e}"))?;
    Ok(script)
}

/// `$RUNTIME_DIRECTORY` under systemd, else `farmcam-UID` in the temporary directory, created
/// 0700. When that name is taken by something this user does not own privately (another local
/// user can create it first in a shared /tmp), a fresh private directory is made instead
/// (`farmcam-UID-XXXXXX`), so nobody else can stop farmcam's cameras. Chosen once per process;
/// scripts left there by farmcam processes that no longer run are removed then.
pub fn private_dir() -> Result<PathBuf, String> {
    static DIR: std::sync::OnceLock<Result<PathBuf, String>> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let dir = choose_dir()?;
        remove_stale(&dir);
        Ok(dir)
    })
    .clone()
}

fn choose_dir() -> Result<PathBuf, String> {
    // SAFETY: getuid cannot fail.
    let me = unsafe { libc::getuid() };
    if let Some(d) = std::env::var_os("RUNTIME_DIRECTORY") {
        let dir = PathBuf::from(d.to_string_lossy().split(':').next().unwrap_or_default());
        return ensure_private(&dir, me).map(|()| dir);
    }
    let dir = std::env::temp_dir().join(format!("farmcam-{me}"));
    match ensure_private(&dir, me) {
        Ok(()) => Ok(dir),
        Err(why) => {
            // mkdtemp makes a new directory, 0700, that nobody else can have made.
            let template = std::env::temp_dir().join(format!("farmcam-{me}-XXXXXX"));
            let mut bytes = std::ffi::CString::new(template.as_os_str().as_encoded_bytes())
                .map_err(|_| "the temporary directory's name holds a NUL".to_string())?
                .into_bytes_with_nul();
            // SAFETY: `bytes` is a writable NUL-terminated template, as mkdtemp wants.
            if unsafe { libc::mkdtemp(bytes.as_mut_ptr().cast()) }.is_null() {
                return Err(format!(
                    "{why}; and cannot create a private directory in {}",
                    std::env::temp_dir().display()
                ));
            }
            bytes.pop();
            let made = PathBuf::from(std::ffi::OsString::from_vec(bytes));
            tracing::warn!("{why}; using {} instead", made.display());
            Ok(made)
        }
    }
}

/// Create `dir` 0700 if missing; an error unless it is a directory `me` owns that others cannot
/// read or enter.
fn ensure_private(dir: &std::path::Path, me: u32) -> Result<(), String> {
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(format!("cannot create {}: {e}", dir.display())),
    }
    let meta = std::fs::symlink_metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    if !meta.is_dir() || meta.uid() != me || meta.permissions().mode() & 0o077 != 0 {
        return Err(format!(
            "{} is not a private directory of this user (mode 0700)",
            dir.display()
        ));
    }
    Ok(())
}

/// Remove scripts (`CAMERA-PID-N.ffconcat`) of farmcam processes that no longer run.
fn remove_stale(dir: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(stem) = name.strip_suffix(".ffconcat") else {
            continue;
        };
        let pid = stem.rsplit('-').nth(1).and_then(|p| p.parse::<i32>().ok());
        // SAFETY: kill with signal 0 only checks whether the process exists.
        let gone = pid.is_some_and(|p| {
            p > 0
                && unsafe { libc::kill(p, 0) } != 0
                && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
        });
        if gone {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_are_escaped_and_files_are_private() {
        let t = text(
            "rtsp://u:it's@h/cam",
            &[
                ("rtsp_transport".into(), "tcp".into()),
                ("headers".into(), "X-Key: v\r\n".into()),
            ],
        )
        .unwrap();
        assert_eq!(
            t,
            "ffconcat version 1.0\nfile 'rtsp://u:it'\\''s@h/cam'\noption rtsp_transport 'tcp'\noption headers 'X-Key: v'\n"
        );
        for bad in ["A: 1\r\nB: 2\r\n", "x\ny", "nul\0"] {
            let e = text("rtsp://u:p@h/", &[("headers".into(), bad.into())]).unwrap_err();
            assert!(e.contains("-headers") && e.contains("line break"), "{e}");
        }
        assert!(text("rtsp://u:p@h/", &[("a b".into(), "1".into())]).is_err());
        let s = write("test", &t).unwrap();
        let mode = std::fs::metadata(&s.path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let path = s.path.clone();
        drop(s);
        assert!(!path.exists(), "removed with the child");
    }
}
