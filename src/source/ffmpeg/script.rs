//! Keeping camera credentials off ffmpeg's command line, which every local user can read (`ps`,
//! `/proc/PID/cmdline`): a URL with a password goes into an ffconcat script instead, a file only
//! farmcam's user can read, which ffmpeg's concat demuxer opens as its input (the URL's input
//! options go along as `option` lines). The file is removed when the child ends.

use std::io::Write;
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

/// `$RUNTIME_DIRECTORY` under systemd, else `farmcam-UID` in the temporary directory; created
/// 0700, and refused if someone else owns it or others may read it.
fn private_dir() -> Result<PathBuf, String> {
    let dir = match std::env::var_os("RUNTIME_DIRECTORY") {
        Some(d) => PathBuf::from(d.to_string_lossy().split(':').next().unwrap_or_default()),
        // SAFETY: getuid cannot fail.
        None => std::env::temp_dir().join(format!("farmcam-{}", unsafe { libc::getuid() })),
    };
    match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(format!("cannot create {}: {e}", dir.display())),
    }
    let meta = std::fs::symlink_metadata(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    // SAFETY: getuid cannot fail.
    let me = unsafe { libc::getuid() };
    if !meta.is_dir() || meta.uid() != me || meta.permissions().mode() & 0o077 != 0 {
        return Err(format!(
            "{} is not a private directory of this user (mode 0700): remove it",
            dir.display()
        ));
    }
    Ok(dir)
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
