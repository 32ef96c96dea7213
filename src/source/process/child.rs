//! ffmpeg child processes: started so that they die with farmcam and never see systemd's
//! variables, stopped with SIGTERM, a bounded wait, SIGKILL and a reap.

use std::collections::VecDeque;
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::task::JoinHandle;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::script;
use super::stderr::StderrReader;
use super::Invocation;
use crate::util::log_limit::LogLimit;

/// After SIGTERM, ffmpeg gets this long to exit before SIGKILL (fits the pump's close bound and
/// the daemon's shutdown budget).
const TERM_WAIT: Duration = Duration::from_millis(1000);

/// Ask the kernel to SIGKILL the child when farmcam dies, however it dies.
fn die_with_parent(cmd: &mut Command) {
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: only async-signal-safe calls (prctl, getppid) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died before prctl took effect.
            if libc::getppid() != parent {
                return Err(std::io::Error::other("farmcam exited while starting ffmpeg"));
            }
            Ok(())
        });
    }
}

fn describe_status(s: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (s.code(), s.signal()) {
        (Some(c), _) => format!("exited with status {c}"),
        (None, Some(sig)) => format!("was killed by signal {sig}"),
        _ => format!("exited ({s})"),
    }
}

/// The line of what a child printed last that explains why it stopped: its last error (or
/// fatal, panic), else its last warning; never what it printed while working ("cpb: bitrate
/// max/min/avg …" is not a reason).
fn explanation(tail: &VecDeque<String>) -> Option<String> {
    let last_of = |levels: &[&str]| {
        tail.iter().rev().find_map(|l| {
            let (level, msg) = l.split_once(": ")?;
            levels.contains(&level).then(|| msg.to_string())
        })
    };
    last_of(&["error", "fatal", "panic"]).or_else(|| last_of(&["warning"]))
}

/// What a child's stderr reader needs, shared across the children of one camera.
#[derive(Clone)]
pub struct Chatter {
    pub camera: String,
    pub secrets: Arc<Vec<String>>,
    pub log: Arc<Mutex<LogLimit>>,
    /// The input codec, learned from what ffmpeg prints (see `super::CODEC_*`).
    pub codec: Arc<AtomicU8>,
}

/// A running ffmpeg child. Dropping it kills the child (`kill_on_drop`); [`Ffmpeg::stop`] ends
/// it politely and reaps it.
pub struct Ffmpeg {
    pub child: Child,
    pub stdout: Option<ChildStdout>,
    pub stdin: Option<ChildStdin>,
    /// Fires when the input turns out not to be the codec this child was started for.
    pub mismatch: CancellationToken,
    stderr_task: Option<JoinHandle<()>>,
    tail: Arc<Mutex<VecDeque<String>>>,
    /// Set when farmcam stops the child: what it prints then ("Broken pipe") is expected.
    closing: Arc<AtomicBool>,
    camera: String,
    what: &'static str,
    /// The input script, removed when this child is dropped.
    _script: Option<script::Script>,
}

/// Start `program args` with stdout piped (and stdin, if `stdin`). `expect`: the input codec
/// this command line was made for (`mismatch` fires when ffmpeg reports another one). `what`
/// names the child in messages ("ffmpeg", "decoder").
pub fn spawn(
    program: &Path,
    run: &Invocation,
    chatter: &Chatter,
    stdin: bool,
    expect: Option<u8>,
    what: &'static str,
) -> Result<Ffmpeg, String> {
    // A URL with credentials is handed over in a file only farmcam's user can read.
    let script = match &run.script {
        Some(text) => Some(script::write(&chatter.camera, text)?),
        None => None,
    };
    let args = run.args.iter().map(|a| match &script {
        Some(s) if a == script::PLACEHOLDER => s.path.display().to_string(),
        _ => a.clone(),
    });
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(if stdin { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env_remove("NOTIFY_SOCKET")
        .env_remove("WATCHDOG_USEC")
        .env_remove("WATCHDOG_PID")
        .kill_on_drop(true);
    die_with_parent(&mut cmd);
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start ffmpeg ({}): {e}", program.display()))?;
    let stdout = child.stdout.take();
    let stdin = child.stdin.take();
    let stderr = child.stderr.take().expect("piped stderr");
    let tail = Arc::new(Mutex::new(VecDeque::new()));
    let mismatch = CancellationToken::new();
    let closing = Arc::new(AtomicBool::new(false));
    let reader = StderrReader {
        closing: closing.clone(),
        camera: chatter.camera.clone(),
        secrets: chatter.secrets.clone(),
        log: chatter.log.clone(),
        tail: tail.clone(),
        codec: chatter.codec.clone(),
        expect,
        mismatch: mismatch.clone(),
    };
    Ok(Ffmpeg {
        child,
        stdout,
        stdin,
        mismatch,
        stderr_task: Some(tokio::spawn(reader.run(stderr))),
        tail,
        closing,
        camera: chatter.camera.clone(),
        what,
        _script: script,
    })
}

impl Ffmpeg {
    /// Why the child stopped: its exit status and the last thing it complained about.
    pub async fn exit_reason(&mut self) -> String {
        // stderr reaches EOF when ffmpeg exits; let the reader take the last lines.
        if let Some(task) = self.stderr_task.as_mut() {
            let _ = timeout(Duration::from_millis(500), task).await;
            self.stderr_task = None;
        }
        let status = match timeout(Duration::from_secs(1), self.child.wait()).await {
            Ok(Ok(s)) => describe_status(s),
            _ => "still running, output closed".to_string(),
        };
        let last = explanation(&self.tail.lock().unwrap());
        match last {
            Some(l) => format!("{} {status}: {l}", self.what),
            None => format!("{} {status}", self.what),
        }
    }

    /// Stop the child: close its pipes (an ffmpeg stuck writing is unblocked), SIGTERM, a
    /// bounded wait, SIGKILL, reap.
    pub async fn stop(&mut self) {
        self.closing.store(true, Relaxed);
        self.stdout = None;
        self.stdin = None;
        if let Some(pid) = self.child.id() {
            // SAFETY: plain kill(2) on our own, not yet reaped, child.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
            if timeout(TERM_WAIT, self.child.wait()).await.is_err() {
                warn!(camera = %self.camera, "{} ignored SIGTERM for {TERM_WAIT:?}: killing it", self.what);
                let _ = self.child.start_kill();
                let _ = self.child.wait().await;
            }
        }
        if let Some(task) = self.stderr_task.take() {
            if timeout(Duration::from_millis(200), task).await.is_err() {
                debug!(camera = %self.camera, "{}'s stderr stayed open after it exited", self.what);
            }
        }
        debug!(camera = %self.camera, "{} stopped", self.what);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_lines_that_explain_a_failure_are_kept() {
        let tail = |lines: &[&str]| lines.iter().map(|l| l.to_string()).collect::<VecDeque<_>>();
        assert_eq!(
            explanation(&tail(&[
                "info: Stream #0:0: Video: h264",
                "info: cpb: bitrate max/min/avg: 0/0/0 buffer size: 0"
            ])),
            None,
            "progress lines are not a reason"
        );
        assert_eq!(
            explanation(&tail(&[
                "error: rtsp://***@h/cam: Connection refused",
                "info: Exiting normally"
            ]))
            .as_deref(),
            Some("rtsp://***@h/cam: Connection refused")
        );
        assert_eq!(
            explanation(&tail(&["warning: non monotonic DTS", "info: cpb: bitrate"])).as_deref(),
            Some("non monotonic DTS")
        );
    }
}
