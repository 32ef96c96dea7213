//! `rtsp://`, `rtsps://`, `http(s)://` and `ffmpeg:ARGS` sources: one ffmpeg child per open
//! upstream, writing MJPEG to a pipe that [`crate::jpeg::Splitter`] cuts into frames.
//!
//! The child lives exactly as long as its [`FfmpegUpstream`]: the pump opens it when the first
//! consumer arrives and closes it (SIGTERM, bounded wait, SIGKILL, reap) when the pump stops. The
//! child gets `PR_SET_PDEATHSIG`, so even a SIGKILLed farmcam leaves no ffmpeg behind, and it never
//! sees `NOTIFY_SOCKET`. Everything ffmpeg prints is logged rate-limited with credentials removed.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};
use tokio::task::JoinHandle;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::{Common, Source, SourceError, Upstream};
use crate::frame::{Captured, Size};
use crate::jpeg::{Split, SplitStats, Splitter};
use crate::log_limit::{held_back, LogLimit};
use crate::redact;

/// JPEG quality when the camera sets none (ffmpeg `-q:v 5`).
pub const DEFAULT_QUALITY: u8 = 90;
/// After SIGTERM, ffmpeg gets this long to exit before SIGKILL (fits the pump's close bound and
/// the daemon's shutdown budget).
const TERM_WAIT: Duration = Duration::from_millis(1000);
/// Bound on ffmpeg answering `-version` / `-h demuxer=rtsp`.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);
/// ffmpeg stderr lines logged per camera per minute; the rest are counted and summarised.
const LOG_LINES_PER_MINUTE: u32 = 20;
/// Last lines of stderr kept to explain an exit.
const TAIL_LINES: usize = 8;
const READ_CHUNK: usize = 64 * 1024;

/// Where ffmpeg is and what it is told, for one camera.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FfmpegOptions {
    pub input: FfmpegInput,
    /// Extra input options, placed before `-i` (`ffmpeg_args`).
    pub args: Vec<String>,
    /// The ffmpeg program (`[ffmpeg] path`).
    pub program: PathBuf,
    /// JPEG quality 1..=100 where ffmpeg encodes; `None`: [`DEFAULT_QUALITY`].
    pub quality: Option<u8>,
}

impl FfmpegOptions {
    /// `input` with the defaults: no extra arguments, `ffmpeg` from PATH.
    pub fn new(input: FfmpegInput) -> Self {
        FfmpegOptions {
            input,
            args: Vec::new(),
            program: PathBuf::from(DEFAULT_PROGRAM),
            quality: None,
        }
    }
}

/// The ffmpeg program when `[ffmpeg] path` is not set: looked up in PATH.
pub const DEFAULT_PROGRAM: &str = "ffmpeg";

/// What ffmpeg reads: a URL it gets options for, or the user's own input arguments. `Debug`
/// shows it redacted.
#[derive(Clone, PartialEq, Eq)]
pub enum FfmpegInput {
    /// `rtsp://` or `rtsps://`.
    Rtsp(String),
    /// `bambu-rtsps://bblp:CODE@IP`: a Bambu X1/H2/P2S camera's RTSPS URL (port 322,
    /// `/streaming/live/1`); like `Rtsp`, with a larger probe for these printers' streams.
    BambuRtsps(String),
    /// `http://` or `https://` (MJPEG streams from mjpg-streamer, Creality, IP cameras, or any
    /// stream ffmpeg can read).
    Http(String),
    /// `ffmpeg:` followed by input arguments (shell-style quoting), including `-i`.
    Raw(Vec<String>),
}

impl std::fmt::Debug for FfmpegInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl FfmpegInput {
    /// `None` when the string is not an ffmpeg source at all; `Some(Err)` when it is one but
    /// malformed.
    pub fn parse(s: &str) -> Option<Result<FfmpegInput, String>> {
        let lower = s.to_ascii_lowercase();
        if let Some(args) = s.strip_prefix("ffmpeg:") {
            return Some(parse_raw(args));
        }
        let (kind, rest): (fn(String) -> FfmpegInput, &str) = if let Some(r) = lower
            .strip_prefix("rtsp://")
            .or_else(|| lower.strip_prefix("rtsps://"))
        {
            (FfmpegInput::Rtsp, r)
        } else if let Some(r) = lower
            .strip_prefix("http://")
            .or_else(|| lower.strip_prefix("https://"))
        {
            (FfmpegInput::Http, r)
        } else {
            return None;
        };
        let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
        let host = &authority[authority.rfind('@').map_or(0, |i| i + 1)..];
        if host.is_empty() || host.starts_with(':') || s.chars().any(char::is_whitespace) {
            return Some(Err(format!(
                "{:?} has no host or contains spaces; write e.g. \"rtsp://192.168.1.20:554/stream1\" \
                 (percent-encode spaces and special characters in passwords)",
                redact::url(s)
            )));
        }
        Some(Ok(kind(s.to_string())))
    }

    /// As shown in logs and status: credentials removed.
    pub fn redacted(&self) -> String {
        match self {
            FfmpegInput::Rtsp(u) | FfmpegInput::BambuRtsps(u) | FfmpegInput::Http(u) => redact::url(u),
            FfmpegInput::Raw(args) => {
                let shown: Vec<String> = args.iter().map(|a| redact::url(a)).collect();
                format!("ffmpeg:{}", shown.join(" "))
            }
        }
    }

    /// Passwords in the input's URLs, to scrub from anything ffmpeg prints.
    fn secrets(&self) -> Vec<String> {
        match self {
            FfmpegInput::Rtsp(u) | FfmpegInput::BambuRtsps(u) | FfmpegInput::Http(u) => redact::secrets_of(u),
            FfmpegInput::Raw(args) => args.iter().flat_map(|a| redact::secrets_of(a)).collect(),
        }
    }
}

fn parse_raw(args: &str) -> Result<FfmpegInput, String> {
    let bad = |why: &str| {
        format!(
            "\"ffmpeg:{}\" {why}; write input arguments ending in -i, e.g. \"ffmpeg:-f lavfi -i testsrc2\"",
            redact::url(args)
        )
    };
    let words = shlex::split(args).ok_or_else(|| bad("has unbalanced quotes"))?;
    let Some(i) = words.iter().position(|w| w == "-i") else {
        return Err(bad("has no -i INPUT"));
    };
    if i + 1 >= words.len() {
        return Err(bad("has -i without an input after it"));
    }
    Ok(FfmpegInput::Raw(words))
}

// ---------------------------------------------------------------------------------------------
// The installed ffmpeg

/// What farmcam learned about an ffmpeg binary by running it.
#[derive(Clone, Debug)]
pub struct Probe {
    /// First line of `ffmpeg -version`, e.g. "ffmpeg version 5.1.9-0+deb12u1".
    pub version: String,
    /// The RTSP socket I/O timeout option (microseconds): `-timeout` on ffmpeg 5 and later,
    /// `-stimeout` on 4.x (where `-timeout` means "listen for a connection"), or none.
    pub rtsp_timeout_option: Option<&'static str>,
    /// Whether the `zscale` filter (libzimg) is built in: the cheap way to convert video-range
    /// frames to the full range JPEG needs (see [`Plan::args`]).
    pub zscale: bool,
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

// ---------------------------------------------------------------------------------------------
// The command line

/// Input codec learned from ffmpeg's "Stream #0:0: Video: CODEC" line, remembered across
/// restarts of the same camera so MJPEG inputs are copied rather than re-encoded.
const CODEC_UNKNOWN: u8 = 0;
const CODEC_MJPEG: u8 = 1;
const CODEC_OTHER: u8 = 2;

/// Everything that decides ffmpeg's arguments.
#[derive(Clone, Debug)]
pub struct Plan<'a> {
    pub input: &'a FfmpegInput,
    pub size: Option<Size>,
    pub fps: Option<u32>,
    pub quality: u8,
    pub extra_input_args: &'a [String],
    /// Socket I/O timeout; the pump's stall timeout acts first, this is ffmpeg's own backstop.
    pub io_timeout: Duration,
    pub rtsp_timeout_option: Option<&'static str>,
    /// Convert to full range with `zscale` (see [`Probe::zscale`]).
    pub zscale: bool,
    /// Copy MJPEG input through (`-c:v copy`) instead of decoding and encoding it.
    pub copy: bool,
}

impl Plan<'_> {
    pub fn args(&self) -> Vec<String> {
        let mut a: Vec<String> = ["-hide_banner", "-nostdin", "-nostats", "-loglevel", "level+info"]
            .map(String::from)
            .to_vec();
        let us = self.io_timeout.as_micros().to_string();
        let mut push = |words: &[&str]| a.extend(words.iter().map(|w| w.to_string()));
        match self.input {
            FfmpegInput::Rtsp(_) | FfmpegInput::BambuRtsps(_) => {
                push(&["-rtsp_transport", "tcp"]);
                if let Some(opt) = self.rtsp_timeout_option {
                    push(&[opt, &us]);
                }
                // Printers (Bambu among them) send frozen or jumping RTP timestamps.
                push(&["-use_wallclock_as_timestamps", "1"]);
                push(&["-fflags", "nobuffer", "-flags", "low_delay"]);
                if matches!(self.input, FfmpegInput::BambuRtsps(_)) {
                    // Bambu streams start slowly (sparse parameter sets): probe longer.
                    push(&["-probesize", "5000000", "-analyzeduration", "3000000"]);
                } else {
                    push(&["-probesize", "1000000", "-analyzeduration", "1000000"]);
                }
            }
            FfmpegInput::Http(_) => {
                // No "-fflags nobuffer" here: it drops the packets read while probing, which
                // for a short or slow HTTP stream can be all of them.
                push(&["-timeout", &us, "-flags", "low_delay"]);
            }
            FfmpegInput::Raw(_) => {}
        }
        a.extend(self.extra_input_args.iter().cloned());
        match self.input {
            FfmpegInput::Rtsp(u) | FfmpegInput::BambuRtsps(u) | FfmpegInput::Http(u) => {
                a.extend(["-i".to_string(), u.clone()])
            }
            FfmpegInput::Raw(words) => a.extend(words.iter().cloned()),
        }
        a.extend(["-map", "0:v:0", "-an", "-sn", "-dn"].map(String::from));
        if self.copy {
            a.extend(["-c:v", "copy"].map(String::from));
        } else {
            let mut filters = Vec::new();
            if let Some(fps) = self.fps {
                filters.push(format!("fps={fps}"));
            }
            // JPEG wants full-range YUV; H.264 cameras mostly send video range (16..235).
            // Letting `-pix_fmt yuvj420p` convert it runs swscale's generic scaler on every
            // frame: a third of ffmpeg's instructions for 720p (BENCHMARKS.md). zscale does the
            // same conversion for a fraction, and passes full-range input through. When scaling
            // anyway, the scaler converts the range in the same pass.
            if let Some(s) = self.size {
                filters.push(format!("scale={}:{}:out_range=full", s.width, s.height));
            } else if self.zscale {
                filters.push("zscale=r=full".to_string());
            }
            if !filters.is_empty() {
                a.extend(["-vf".to_string(), filters.join(",")]);
            }
            a.extend(
                [
                    "-c:v",
                    "mjpeg",
                    "-q:v",
                    &qscale(self.quality).to_string(),
                    "-pix_fmt",
                    "yuvj420p",
                ]
                .map(String::from),
            );
        }
        a.extend(["-f", "mjpeg", "-flush_packets", "1", "pipe:1"].map(String::from));
        a
    }
}

/// Quality 1..=100 (100 best) to ffmpeg's MJPEG `-q:v` 31..=2 (2 best). 90 → 5.
pub fn qscale(quality: u8) -> u32 {
    let q = quality.clamp(1, 100) as u32;
    2 + ((100 - q) * 29 + 49) / 99
}

// ---------------------------------------------------------------------------------------------
// The source

pub struct FfmpegSource {
    camera: String,
    program: PathBuf,
    input: FfmpegInput,
    secrets: Arc<Vec<String>>,
    size: Option<Size>,
    fps: Option<u32>,
    quality: u8,
    extra_input_args: Vec<String>,
    io_timeout: Duration,
    max_frame: usize,
    codec: Arc<AtomicU8>,
    log: Arc<Mutex<LogLimit>>,
}

impl FfmpegSource {
    pub fn new(common: &Common, options: FfmpegOptions) -> Self {
        let mut secrets = options.input.secrets();
        for a in &options.args {
            secrets.extend(redact::secrets_of(a));
        }
        FfmpegSource {
            camera: common.id.clone(),
            program: options.program,
            secrets: Arc::new(secrets),
            size: common.size,
            fps: common.fps,
            quality: options.quality.unwrap_or(DEFAULT_QUALITY),
            extra_input_args: options.args,
            io_timeout: common.stall_timeout + Duration::from_secs(5),
            max_frame: common.max_frame_size,
            codec: Arc::new(AtomicU8::new(CODEC_UNKNOWN)),
            log: Arc::new(Mutex::new(LogLimit::with_cap(LOG_LINES_PER_MINUTE))),
            input: options.input,
        }
    }

    /// Copy when the input is (or, for HTTP, is presumed) MJPEG and nothing asks for re-encoding.
    fn copy(&self) -> bool {
        if self.size.is_some() || self.fps.is_some() {
            return false;
        }
        match self.codec.load(Relaxed) {
            CODEC_MJPEG => true,
            CODEC_OTHER => false,
            _ => matches!(self.input, FfmpegInput::Http(_)),
        }
    }
}

#[async_trait]
impl Source for FfmpegSource {
    async fn open(&self) -> Result<Box<dyn Upstream>, SourceError> {
        let probe = probe(&self.program).await.map_err(SourceError::Open)?;
        let copy = self.copy();
        let args = Plan {
            input: &self.input,
            size: self.size,
            fps: self.fps,
            quality: self.quality,
            extra_input_args: &self.extra_input_args,
            io_timeout: self.io_timeout,
            rtsp_timeout_option: probe.rtsp_timeout_option,
            zscale: probe.zscale,
            copy,
        }
        .args();
        debug!(camera = %self.camera, "starting {} {}", self.program.display(), redact::scrub(&args.join(" "), &self.secrets));
        let mut cmd = Command::new(&self.program);
        cmd.args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("WATCHDOG_PID")
            .kill_on_drop(true);
        die_with_parent(&mut cmd);
        let mut child = cmd.spawn().map_err(|e| {
            SourceError::Open(format!("cannot start ffmpeg ({}): {e}", self.program.display()))
        })?;
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        let tail = Arc::new(Mutex::new(VecDeque::new()));
        let mismatch = CancellationToken::new();
        let closing = Arc::new(AtomicBool::new(false));
        let reader = StderrReader {
            closing: closing.clone(),
            camera: self.camera.clone(),
            secrets: self.secrets.clone(),
            log: self.log.clone(),
            tail: tail.clone(),
            codec: self.codec.clone(),
            copying: copy,
            mismatch: mismatch.clone(),
        };
        let stderr_task = tokio::spawn(reader.run(stderr));
        Ok(Box::new(FfmpegUpstream {
            camera: self.camera.clone(),
            child,
            stdout: Some(stdout),
            splitter: Splitter::new(self.max_frame),
            logged: SplitStats::default(),
            reported_invalid: 0,
            pending: VecDeque::new(),
            buf: vec![0; READ_CHUNK].into_boxed_slice(),
            stderr_task: Some(stderr_task),
            tail,
            mismatch,
            closing,
        }))
    }
}

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

struct FfmpegUpstream {
    camera: String,
    child: Child,
    stdout: Option<ChildStdout>,
    splitter: Splitter,
    /// Splitter counters already logged, and already reported to the pump.
    logged: SplitStats,
    reported_invalid: u64,
    pending: VecDeque<Split>,
    buf: Box<[u8]>,
    stderr_task: Option<JoinHandle<()>>,
    tail: Arc<Mutex<VecDeque<String>>>,
    mismatch: CancellationToken,
    /// Set when farmcam stops ffmpeg: what it prints then ("Broken pipe") is expected.
    closing: Arc<AtomicBool>,
}

impl FfmpegUpstream {
    /// Why ffmpeg stopped: its exit status and the last thing it complained about.
    async fn exit_reason(&mut self) -> String {
        // stderr reaches EOF when ffmpeg exits; let the reader take the last lines.
        if let Some(task) = self.stderr_task.as_mut() {
            let _ = timeout(Duration::from_millis(500), task).await;
            self.stderr_task = None;
        }
        let status = match timeout(Duration::from_secs(1), self.child.wait()).await {
            Ok(Ok(s)) => describe_status(s),
            _ => "still running, output closed".to_string(),
        };
        let tail = self.tail.lock().unwrap();
        let last = tail
            .iter()
            .rev()
            .find(|l| l.starts_with("error: ") || l.starts_with("fatal: "))
            .or(tail.back())
            .map(|l| l.split_once(": ").map_or(l.as_str(), |(_, m)| m).to_string());
        match last {
            Some(l) => format!("ffmpeg {status}: {l}"),
            None => format!("ffmpeg {status}"),
        }
    }

    /// Log newly dropped frames (debug: a noisy stream must not flood the journal).
    fn log_drops(&mut self) {
        let now = self.splitter.stats();
        let (t, o) = (
            now.truncated - self.logged.truncated,
            now.oversized - self.logged.oversized,
        );
        if t > 0 || o > 0 {
            debug!(camera = %self.camera, truncated = t, oversized = o, "dropped incomplete or oversized frames from ffmpeg");
        }
        self.logged = now;
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

#[async_trait]
impl Upstream for FfmpegUpstream {
    async fn next_frame(&mut self) -> Result<Captured, SourceError> {
        loop {
            if let Some(f) = self.pending.pop_front() {
                // Only the newest frame of a burst matters to viewers, but every frame counts.
                return Ok(Captured {
                    jpeg: f.jpeg,
                    width: f.width,
                    height: f.height,
                    captured_at: SystemTime::now(),
                });
            }
            let Some(stdout) = self.stdout.as_mut() else {
                return Err(SourceError::Ended);
            };
            let n = tokio::select! {
                r = stdout.read(&mut self.buf) => r,
                _ = self.mismatch.cancelled() => {
                    return Err(SourceError::Failed(
                        "the input is not MJPEG after all: restarting ffmpeg to re-encode it".into(),
                    ));
                }
            };
            match n {
                Ok(0) | Err(_) => {
                    self.stdout = None;
                    self.splitter.finish();
                    self.log_drops();
                    return Err(SourceError::Failed(self.exit_reason().await));
                }
                Ok(n) => {
                    let mut out = Vec::new();
                    self.splitter.push(&self.buf[..n], &mut out);
                    self.pending.extend(out);
                    self.log_drops();
                }
            }
        }
    }

    fn take_invalid(&mut self) -> u64 {
        let s = self.splitter.stats();
        let total = s.truncated + s.oversized;
        let new = total - self.reported_invalid;
        self.reported_invalid = total;
        new
    }

    async fn close(mut self: Box<Self>) {
        // A closed pipe unblocks an ffmpeg stuck writing to it; SIGTERM asks it to finish.
        self.closing.store(true, Relaxed);
        self.stdout = None;
        if let Some(pid) = self.child.id() {
            // SAFETY: plain kill(2) on our own, not yet reaped, child.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
            if timeout(TERM_WAIT, self.child.wait()).await.is_err() {
                warn!(camera = %self.camera, "ffmpeg ignored SIGTERM for {TERM_WAIT:?}: killing it");
                let _ = self.child.start_kill();
                let _ = self.child.wait().await;
            }
        }
        if let Some(task) = self.stderr_task.take() {
            if timeout(Duration::from_millis(200), task).await.is_err() {
                debug!(camera = %self.camera, "ffmpeg's stderr stayed open after it exited");
            }
        }
        debug!(camera = %self.camera, "ffmpeg stopped");
    }
}

// ---------------------------------------------------------------------------------------------
// stderr

struct StderrReader {
    closing: Arc<AtomicBool>,
    camera: String,
    secrets: Arc<Vec<String>>,
    log: Arc<Mutex<LogLimit>>,
    tail: Arc<Mutex<VecDeque<String>>>,
    codec: Arc<AtomicU8>,
    copying: bool,
    mismatch: CancellationToken,
}

impl StderrReader {
    async fn run(self, stderr: tokio::process::ChildStderr) {
        let mut lines = BufReader::new(stderr).lines();
        let mut in_input = false;
        while let Ok(Some(raw)) = lines.next_line().await {
            let (level, msg) = parse_line(&raw);
            let msg = redact::scrub(&msg, &self.secrets);
            if msg.trim().is_empty() {
                continue;
            }
            // "Input #0 ..." then its "Stream #0:0: Video: h264 ..." lines, then "Output #0".
            if msg.starts_with("Input #") {
                in_input = true;
            } else if msg.starts_with("Output #") || msg.starts_with("Stream mapping") {
                in_input = false;
            } else if in_input {
                if let Some(codec) = msg
                    .split("Video: ")
                    .nth(1)
                    .and_then(|r| r.split([' ', ',']).next())
                {
                    let learned = if codec == "mjpeg" {
                        CODEC_MJPEG
                    } else {
                        CODEC_OTHER
                    };
                    if self.codec.swap(learned, Relaxed) != learned {
                        debug!(camera = %self.camera, "input codec: {codec}");
                    }
                    if self.copying && learned != CODEC_MJPEG {
                        self.mismatch.cancel();
                    }
                }
            }
            {
                let mut tail = self.tail.lock().unwrap();
                if tail.len() == TAIL_LINES {
                    tail.pop_front();
                }
                tail.push_back(format!("{level}: {msg}"));
            }
            let loud = matches!(level, "warning" | "error" | "fatal" | "panic")
                && !is_benign(&msg)
                && !self.closing.load(Relaxed);
            if !loud {
                debug!(camera = %self.camera, "ffmpeg: {msg}");
                continue;
            }
            let verdict = self.log.lock().unwrap().check(&msg);
            match verdict {
                Some(n) => warn!(camera = %self.camera, "ffmpeg {level}: {msg}{}", held_back(n)),
                None => debug!(camera = %self.camera, "ffmpeg {level}: {msg}"),
            }
        }
    }
}

/// `[ctx @ 0x55…] [level] message` → ("level", "ctx: message") with the pointer dropped, so
/// repeated messages read the same.
fn parse_line(raw: &str) -> (&'static str, String) {
    const LEVELS: [&str; 8] = [
        "panic", "fatal", "error", "warning", "info", "verbose", "debug", "trace",
    ];
    let mut ctx = Vec::new();
    let mut rest = raw.trim_end();
    while let Some(inner) = rest.strip_prefix('[') {
        let Some(end) = inner.find("] ") else { break };
        let tag = &inner[..end];
        rest = &inner[end + 2..];
        if let Some(level) = LEVELS.iter().find(|l| **l == tag) {
            let prefix = ctx.first().map(|c: &&str| format!("{c}: ")).unwrap_or_default();
            return (level, format!("{prefix}{rest}"));
        }
        ctx.push(tag.split(" @ ").next().unwrap_or(tag));
    }
    ("info", raw.trim_end().to_string())
}

/// Warnings ffmpeg prints on every healthy start.
fn is_benign(msg: &str) -> bool {
    msg.contains("deprecated pixel format used")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(input: &FfmpegInput) -> Plan<'_> {
        Plan {
            input,
            size: None,
            fps: None,
            quality: 90,
            extra_input_args: &[],
            io_timeout: Duration::from_secs(15),
            rtsp_timeout_option: Some("-timeout"),
            zscale: false,
            copy: false,
        }
    }

    #[test]
    fn sources_parse_and_redact() {
        let rtsp = FfmpegInput::parse("rtsps://bblp:12345678@10.0.0.2:322/streaming/live/1")
            .unwrap()
            .unwrap();
        assert_eq!(rtsp.redacted(), "rtsps://***@10.0.0.2:322/streaming/live/1");
        assert_eq!(rtsp.secrets(), vec!["12345678".to_string()]);
        assert!(!format!("{rtsp:?}").contains("12345678"), "Debug is redacted too");
        assert!(matches!(
            FfmpegInput::parse("http://k1:8080/?action=stream"),
            Some(Ok(FfmpegInput::Http(_)))
        ));
        assert!(FfmpegInput::parse("test:").is_none());
        assert!(FfmpegInput::parse("rtsp:///x").unwrap().is_err());
        assert!(FfmpegInput::parse("rtsp://u:p@:554/x").unwrap().is_err());
        let raw = FfmpegInput::parse("ffmpeg:-f lavfi -i 'testsrc2=size=320x240'")
            .unwrap()
            .unwrap();
        assert_eq!(
            raw,
            FfmpegInput::Raw(vec![
                "-f".into(),
                "lavfi".into(),
                "-i".into(),
                "testsrc2=size=320x240".into()
            ])
        );
        let e = FfmpegInput::parse("ffmpeg:-f lavfi rtsp://u:secret@h/")
            .unwrap()
            .unwrap_err();
        assert!(e.contains("-i") && !e.contains("secret"), "{e}");
    }

    #[test]
    fn rtsp_gets_low_latency_flags_and_the_probed_timeout() {
        let input = FfmpegInput::Rtsp("rtsp://h/x".into());
        let a = plan(&input).args().join(" ");
        assert!(
            a.contains("-rtsp_transport tcp -timeout 15000000 -use_wallclock_as_timestamps 1"),
            "{a}"
        );
        assert!(
            a.contains("-i rtsp://h/x -map 0:v:0 -an -sn -dn -c:v mjpeg -q:v 5 -pix_fmt yuvj420p"),
            "{a}"
        );
        assert!(a.ends_with("-f mjpeg -flush_packets 1 pipe:1"), "{a}");
        let old = Plan {
            rtsp_timeout_option: Some("-stimeout"),
            ..plan(&input)
        }
        .args()
        .join(" ");
        assert!(
            old.contains("-stimeout 15000000") && !old.contains("-timeout"),
            "{old}"
        );
    }

    #[test]
    fn copy_scale_fps_and_extra_args() {
        let input = FfmpegInput::Http("http://h/".into());
        let extra = vec!["-headers".to_string(), "X: y".to_string()];
        let p = Plan {
            copy: true,
            extra_input_args: &extra,
            ..plan(&input)
        };
        let a = p.args();
        let i = a.iter().position(|w| w == "-i").unwrap();
        assert_eq!(&a[i - 2..i], &extra[..], "extra args go right before -i");
        assert!(a.join(" ").contains("-c:v copy -f mjpeg"));
        let p = Plan {
            size: Some(Size {
                width: 640,
                height: 360,
            }),
            fps: Some(5),
            quality: 100,
            ..plan(&input)
        };
        let a = p.args().join(" ");
        assert!(
            a.contains("-vf fps=5,scale=640:360:out_range=full -c:v mjpeg -q:v 2 -pix_fmt yuvj420p"),
            "{a}"
        );
        // Without scaling, zscale converts the range when the ffmpeg has it.
        let z = Plan {
            zscale: true,
            ..plan(&input)
        };
        assert!(z.args().join(" ").contains("-vf zscale=r=full -c:v mjpeg"));
        assert!(!plan(&input).args().join(" ").contains("-vf"));
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
    fn quality_maps_to_qscale() {
        assert_eq!((qscale(100), qscale(90), qscale(1)), (2, 5, 31));
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

    #[test]
    fn stderr_lines_are_parsed() {
        assert_eq!(
            parse_line(
                "[tcp @ 0x557e0d554840] [error] Connection to tcp://127.0.0.1:9 failed: Connection refused"
            ),
            (
                "error",
                "tcp: Connection to tcp://127.0.0.1:9 failed: Connection refused".to_string()
            )
        );
        assert_eq!(
            parse_line("[info] Input #0, rtsp, from 'x':"),
            ("info", "Input #0, rtsp, from 'x':".to_string())
        );
        assert_eq!(parse_line("plain"), ("info", "plain".to_string()));
    }
}
