//! The installed ffmpeg: its version, its RTSP timeout option and its filters, learned once.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;

use tokio::process::Command;
use tokio::time::timeout;

/// Bound on ffmpeg answering `-version` / `-h demuxer=rtsp`.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// What farmcam learned about an ffmpeg binary by running it.
#[derive(Clone, Debug)]
pub struct Probe {
    /// First line of `ffmpeg -version`, e.g. "ffmpeg version 5.1.9-0+deb12u1".
    pub version: String,
    /// The RTSP socket I/O timeout option (microseconds): `-timeout` on ffmpeg 5 and later,
    /// `-stimeout` on 4.x (where `-timeout` means "listen for a connection"), or none.
    pub rtsp_timeout_option: Option<&'static str>,
    /// Whether the `zscale` filter (libzimg) is built in: the cheap way to convert video-range
    /// frames to the full range JPEG needs.
    pub zscale: bool,
    /// `-fps_mode` (ffmpeg 5.1 and later) or the older `-vsync`.
    pub fps_mode_option: &'static str,
}

/// Successful probes, per ffmpeg path, for the life of the process.
static PROBES: Mutex<Option<HashMap<PathBuf, Probe>>> = Mutex::new(None);

/// Run `ffmpeg -version`, `-h demuxer=rtsp` and `-filters` side by side (once per path; a failure is retried next
/// time, so installing ffmpeg while farmcam runs is enough). The error is one line naming the fix.
pub async fn probe(program: &Path) -> Result<Probe, String> {
    if let Some(p) = PROBES.lock().unwrap().as_ref().and_then(|m| m.get(program)) {
        return Ok(p.clone());
    }
    let (version, rtsp_help, filters) = tokio::try_join!(
        run_probe(program, &["-hide_banner", "-version"]),
        run_probe(program, &["-hide_banner", "-h", "demuxer=rtsp"]),
        run_probe(program, &["-hide_banner", "-filters"]),
    )?;
    let probe = Probe {
        version: version
            .lines()
            .next()
            .unwrap_or("ffmpeg")
            .split(" Copyright")
            .next()
            .unwrap_or("ffmpeg")
            .trim()
            .to_string(),
        rtsp_timeout_option: rtsp_timeout_option(&rtsp_help),
        zscale: has_filter(&filters, "zscale"),
        fps_mode_option: fps_mode_option(&version),
    };
    PROBES
        .lock()
        .unwrap()
        .get_or_insert_with(HashMap::new)
        .insert(program.to_path_buf(), probe.clone());
    Ok(probe)
}

async fn run_probe(program: &Path, args: &[&str]) -> Result<String, String> {
    let shown = program.display();
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env_remove("NOTIFY_SOCKET")
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                format!("ffmpeg not found at {shown:?}: install it (apt install ffmpeg) or set [ffmpeg] path")
            }
            _ => format!("cannot run ffmpeg at {shown:?}: {e} (check [ffmpeg] path)"),
        })?;
    match timeout(PROBE_TIMEOUT, child.wait_with_output()).await {
        Err(_) => Err(format!(
            "ffmpeg at {shown:?} did not answer within {PROBE_TIMEOUT:?}"
        )),
        Ok(Err(e)) => Err(format!("cannot run ffmpeg at {shown:?}: {e}")),
        Ok(Ok(out)) if !out.status.success() => Err(format!(
            "ffmpeg at {shown:?} failed ({}) on {}: is it really ffmpeg?",
            out.status,
            args.join(" ")
        )),
        Ok(Ok(out)) => Ok(String::from_utf8_lossy(&out.stdout).into_owned()),
    }
}

/// `-fps_mode` from ffmpeg 5.1 on (`ffmpeg version 5.1.6-0+deb12u1`); `-vsync` before. A
/// version that is not a number (a git build) is taken as recent.
fn fps_mode_option(version: &str) -> &'static str {
    let number = version
        .split_whitespace()
        .nth(2)
        .unwrap_or("")
        .trim_start_matches('n');
    let mut parts = number.split(['.', '-']).map(|p| p.parse::<u32>());
    match (parts.next(), parts.next()) {
        (Some(Ok(major)), Some(Ok(minor))) if (major, minor) < (5, 1) => "-vsync",
        (Some(Ok(major)), _) if major < 5 => "-vsync",
        _ => "-fps_mode",
    }
}

/// Whether `ffmpeg -filters` lists `name` (lines look like " .SC zscale   V->V   Apply ...").
fn has_filter(list: &str, name: &str) -> bool {
    list.lines().any(|l| l.split_whitespace().nth(1) == Some(name))
}

/// Pick the RTSP socket-timeout option from `ffmpeg -h demuxer=rtsp`.
fn rtsp_timeout_option(help: &str) -> Option<&'static str> {
    let option_line = |name: &str| {
        help.lines()
            .map(str::trim_start)
            .find(|l| l.split_whitespace().next() == Some(name))
    };
    if option_line("-stimeout").is_some() {
        return Some("-stimeout");
    }
    match option_line("-timeout") {
        Some(l) if !l.contains("incoming connections") && !l.contains("listen") => Some("-timeout"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fps_mode_option_follows_the_version() {
        assert_eq!(
            fps_mode_option("ffmpeg version 5.1.6-0+deb12u1 Copyright"),
            "-fps_mode"
        );
        assert_eq!(fps_mode_option("ffmpeg version 4.3.8-0+deb11u1"), "-vsync");
        assert_eq!(fps_mode_option("ffmpeg version 5.0.1"), "-vsync");
        assert_eq!(fps_mode_option("ffmpeg version n7.1"), "-fps_mode");
        assert_eq!(fps_mode_option("ffmpeg version N-112233-gabcdef"), "-fps_mode");
    }

    #[test]
    fn filters_are_found_in_the_filter_list() {
        let list = " T.. zoompan           V->V       Apply Zoom & Pan effect.\n \
                    .SC zscale            V->V       Apply resizing, colorspace and bit depth conversion.";
        assert!(has_filter(list, "zscale"));
        assert!(!has_filter(list, "zoom"));
        assert!(!has_filter("zscale is mentioned in prose", "zscale"));
    }

    #[test]
    fn timeout_option_is_chosen_from_the_rtsp_help() {
        let v5 = "  -timeout           <int64>      .D......... set timeout (in microseconds) of socket I/O operations";
        let v4 = "  -timeout           <int>        .D......... set maximum timeout (in seconds) to wait for incoming connections (-1 is infinite, imply flag listen)\n  -stimeout          <int64>      .D......... set timeout (in microseconds) of socket TCP I/O operations";
        assert_eq!(rtsp_timeout_option(v5), Some("-timeout"));
        assert_eq!(rtsp_timeout_option(v4), Some("-stimeout"));
        assert_eq!(
            rtsp_timeout_option("  -timeout <int> wait for incoming connections"),
            None
        );
        assert_eq!(rtsp_timeout_option(""), None);
    }
}
