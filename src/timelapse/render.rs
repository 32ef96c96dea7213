//! A timelapse's pictures to an H.264 MP4, by an ffmpeg child at idle priority (`SCHED_IDLE`,
//! nice 19, one thread): it takes only CPU time nothing else wants, so a live viewer or Klipper
//! never waits for it.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

use super::spool::Spool;
use crate::frame::Size;

/// A render taking longer than this is stopped (and tried again later).
const RENDER_TIMEOUT: Duration = Duration::from_secs(3600);

/// What a render needs to know.
pub struct Job<'a> {
    pub ffmpeg: &'a Path,
    pub spool: &'a Spool,
    pub pictures: u64,
    pub fps: u32,
    pub hold: Duration,
    /// Where the video is written (renamed into place by the caller).
    pub out: &'a Path,
}

/// Render; the error is one line saying why.
pub async fn render(job: &Job<'_>) -> Result<(), String> {
    if job.pictures == 0 {
        return Err("no pictures were taken".into());
    }
    let first =
        std::fs::read(job.spool.picture(1)).map_err(|e| format!("cannot read its first picture: {e}"))?;
    let size =
        crate::media::codec::size_of(&first).map_err(|e| format!("its first picture is not a JPEG: {e}"))?;
    // H.264 4:2:0 needs even sizes; a later picture of another size is fitted into this one.
    let out = Size {
        width: (size.width & !1).max(2),
        height: (size.height & !1).max(2),
    };
    let filter = format!(
        "scale={w}:{h}:force_original_aspect_ratio=decrease,pad={w}:{h}:(ow-iw)/2:(oh-ih)/2,\
         tpad=stop_mode=clone:stop_duration={hold:.3},format=yuv420p",
        w = out.width,
        h = out.height,
        hold = job.hold.as_secs_f64(),
    );
    let input: PathBuf = job.spool.dir.join("%06d.jpg");
    let mut cmd = Command::new(job.ffmpeg);
    cmd.args(["-hide_banner", "-nostdin", "-loglevel", "error", "-y"])
        .args(["-framerate", &job.fps.to_string(), "-start_number", "1"])
        .arg("-i")
        .arg(&input)
        .args([
            "-frames:v",
            &(job.pictures + (job.hold.as_secs_f64() * job.fps as f64).round() as u64).to_string(),
        ])
        .args(["-vf", &filter])
        .args([
            "-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-threads", "1",
        ])
        .args(["-movflags", "+faststart", "-f", "mp4"])
        .arg(job.out)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .env_remove("NOTIFY_SOCKET")
        .kill_on_drop(true);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            let param = libc::sched_param { sched_priority: 0 };
            libc::sched_setscheduler(0, libc::SCHED_IDLE, &param);
            libc::setpriority(libc::PRIO_PROCESS, 0, 19);
            Ok(())
        });
    }
    let child = cmd.spawn().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!(
            "ffmpeg not found at {:?}: install it (apt install ffmpeg) or set [ffmpeg] path",
            job.ffmpeg
        ),
        _ => format!("cannot run ffmpeg: {e}"),
    })?;
    let done = tokio::time::timeout(RENDER_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| format!("ffmpeg took longer than {RENDER_TIMEOUT:?}"))?
        .map_err(|e| format!("ffmpeg: {e}"))?;
    if done.status.success() {
        return Ok(());
    }
    let said = String::from_utf8_lossy(&done.stderr);
    let last = said
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim();
    let _ = std::fs::remove_file(job.out);
    Err(format!("ffmpeg failed ({}): {last}", done.status))
}
