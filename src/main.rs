//! The `farmcam` command line.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use farmcam::config::{self, Config};
use tracing_subscriber::EnvFilter;

/// sysexits EX_CONFIG: the configuration is wrong; systemd should not restart us.
const EX_CONFIG: u8 = 78;

#[derive(Parser)]
#[command(
    name = "farmcam",
    version,
    about = "Camera gateway for 3D-printer farms: one shared capture pump per camera, MJPEG over HTTP",
    long_about = "Camera gateway for 3D-printer farms.\n\n\
        Every camera is opened at most once, only while someone watches, and shared by all viewers \
        and snapshot requests; it is closed `idle_grace` after the last one leaves.\n\n\
        URLs (main listener):\n  \
          /                            page listing the cameras\n  \
          /cameras/ID/stream           MJPEG stream (?fps=N caps this viewer; ?width=N scales)\n  \
          /cameras/ID/snapshot         one JPEG (?max_age=MS accepts a cached frame; ?width=N)\n  \
          /cameras/ID/?action=stream   mjpg-streamer style (also ?action=snapshot)\n  \
          /api/cameras                 JSON status of every camera\n  \
          /api/events                  Server-Sent Events of camera state changes\n\
        A camera with `listen` also answers /?action=stream, /?action=snapshot, /stream, /snapshot \
        on its own port (for OctoPrint, Mainsail, Fluidd, Obico).\n\
        H.264/H.265 cameras without transcoding: /cameras/ID/webrtc and /cameras/ID/whep (WebRTC, \
        [webrtc]), and rtsp://HOST:8554/ID for Home Assistant, Frigate, NVRs, VLC ([rtsp] listen).\n\
        Prusa Connect: a camera's [camera.prusa_connect] token = \"…\" (the printer's Camera tab → \
        Add new other camera) uploads its snapshot every 10 s.\n\n\
        Sources: bambu://bblp:CODE@IP (Bambu P1/A1, native); rtsp://, rtsps://, \
        bambu-rtsps://bblp:CODE@IP (Bambu X1/H2), http(s):// MJPEG (e.g. Creality K1: \
        http://IP:8080/?action=stream) and ffmpeg:ARGS need ffmpeg (apt install ffmpeg); \
        v4l2:/dev/v4l/by-id/... is a USB camera (`farmcam devices` lists them; MJPEG is passed \
        through, YUYV encoded); test: is a built-in pattern. Credentials and access codes never reach logs.\n\n\
        Exit codes: 0 stopped by SIGTERM/SIGINT or config OK; 78 configuration invalid; 1 other \
        errors (e.g. address in use).\n\
        Logging: to the systemd journal under systemd (camera id as CAMERA=), else stderr; \
        RUST_LOG=debug (or e.g. RUST_LOG=farmcam=debug) for more detail.\n\
        systemd: Type=notify (READY=1 once listening, STATUS=, WATCHDOG=1 while every camera's \
        pump is responsive, STOPPING=1)."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon until SIGTERM or SIGINT.
    Run {
        /// Configuration file (TOML). The shipped demo is config/farmcam.toml.
        #[arg(short, long, default_value = config::DEFAULT_PATH)]
        config: PathBuf,
        /// Where logs go: auto = the systemd journal when started by systemd (JOURNAL_STREAM set),
        /// with the camera id as a journal field (CAMERA=), else text on stderr.
        #[arg(long, value_enum, default_value_t = LogFormat::Auto)]
        log_format: LogFormat,
    },
    /// Load-test an MJPEG stream (farmcam or any MJPEG server): N viewers, then a report of
    /// connect/first-frame times, per-viewer fps, frame intervals and latency (from
    /// X-Timestamp). Progress on stderr; exit 0 if every viewer got frames, 1 otherwise.
    Bench {
        /// e.g. http://127.0.0.1:8080/cameras/demo/stream
        url: String,
        /// Concurrent viewers reading at full speed.
        #[arg(long, default_value_t = 10)]
        viewers: usize,
        /// How long to run, e.g. "30s".
        #[arg(long, default_value = "10s", value_parser = config::parse_duration)]
        duration: std::time::Duration,
        /// Extra viewers that read only 4 KiB every 2 s (a bad Wi-Fi link).
        #[arg(long, default_value_t = 0)]
        slow: usize,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List the V4L2 (USB) cameras connected: driver, card, stable /dev/v4l/by-id name, formats,
    /// sizes, frame rates and controls, with a ready [[camera]] block for each. Exit 0 if at
    /// least one capture device was found, 1 otherwise.
    Devices {
        /// Where the device nodes are.
        #[arg(long, default_value = "/dev", hide = true)]
        dev: PathBuf,
    },
    /// Validate the configuration and print the cameras it would serve (exit 0, or 78 with one
    /// line per problem: PATH:LINE:COL: key: message).
    Check {
        #[arg(short, long, default_value = config::DEFAULT_PATH)]
        config: PathBuf,
    },
    /// The decoder helper farmcam starts for itself (one process decoding every H.264/H.265
    /// camera with libavcodec); not for use by hand.
    #[command(hide = true)]
    DecodeHelper,
    /// Read a password on standard input (its first line) and print the hash to put in
    /// `[[http.auth.users]] password_hash` (PBKDF2-HMAC-SHA256, random salt). The password is
    /// never echoed, logged or kept. E.g.: `farmcam hash-password < /dev/tty`.
    HashPassword {
        /// Print instead the `rtsp_digest` of user NAME (`MD5(NAME:farmcam:password)`), for RTSP
        /// clients that speak only Digest. It is as good as the password to anyone who reads the
        /// configuration file: add it only if such a client needs it.
        #[arg(long, value_name = "NAME")]
        rtsp_digest: Option<String>,
    },
}

/// Run `f` with the terminal on standard input not echoing what is typed.
fn without_echo<T>(f: impl FnOnce() -> T) -> T {
    // SAFETY: tcgetattr/tcsetattr on fd 0 with a zeroed termios they fill in.
    let mut saved: libc::termios = unsafe { std::mem::zeroed() };
    if unsafe { libc::tcgetattr(0, &mut saved) } != 0 {
        return f();
    }
    let mut quiet = saved;
    quiet.c_lflag &= !libc::ECHO;
    unsafe { libc::tcsetattr(0, libc::TCSANOW, &quiet) };
    let out = f();
    unsafe { libc::tcsetattr(0, libc::TCSANOW, &saved) };
    out
}

/// Load and validate, including what can only be checked by opening files (MQTT TLS material).
#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Auto,
    Text,
    Journald,
}

/// `RUST_LOG`-style filtering (default "info"), to the journal or stderr.
/// Panics (bugs) go to the log like everything else, one line each, the same one at most once
/// a minute: a request that triggers one again and again cannot flood the journal.
fn log_panics() {
    static SAID: std::sync::Mutex<Option<farmcam::util::log_limit::LogLimit>> = std::sync::Mutex::new(None);
    std::panic::set_hook(Box::new(|info| {
        let msg = info.to_string().replace('\n', " ");
        let mut said = SAID.lock().unwrap_or_else(|p| p.into_inner());
        match said.get_or_insert_with(Default::default).check(&msg) {
            Some(n) => tracing::error!(
                "internal error (please report it): {msg}{}",
                farmcam::util::log_limit::held_back(n)
            ),
            None => tracing::debug!("internal error again: {msg}"),
        }
    }));
}

fn init_logging(format: LogFormat) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = || EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let journal = match format {
        LogFormat::Journald => true,
        LogFormat::Auto => std::env::var_os("JOURNAL_STREAM").is_some(),
        LogFormat::Text => false,
    };
    if journal {
        match tracing_journald::layer() {
            Ok(layer) => {
                tracing_subscriber::registry().with(filter()).with(layer).init();
                return;
            }
            Err(e) => eprintln!("farmcam: no systemd journal here ({e}); logging to stderr"),
        }
    }
    tracing_subscriber::fmt()
        .with_env_filter(filter())
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

fn load(path: &std::path::Path) -> Result<Config, ExitCode> {
    farmcam::daemon::load(path).map_err(|e| {
        for line in e.lines() {
            eprintln!("{line}");
        }
        ExitCode::from(EX_CONFIG)
    })
}

/// `check` also makes sure the ffmpeg that rtsp/http cameras need runs here; returns its version.
fn check_ffmpeg(path: &std::path::Path, c: &Config) -> Result<Option<String>, String> {
    let users = c.ffmpeg_cameras();
    if users.is_empty() {
        return Ok(None);
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("farmcam: cannot start the runtime: {e}"))?;
    let program = &c.defaults.ffmpeg;
    rt.block_on(farmcam::source::ffmpeg::probe(program))
        .map(|p| Some(format!("{} ({})", p.version, program.display())))
        .map_err(|e| {
            format!(
                "{}: ffmpeg.path: {e} (needed by camera {})",
                path.display(),
                users.join(", ")
            )
        })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::DecodeHelper => ExitCode::from(farmcam::source::coded::libav::helper::run() as u8),
        Command::Bench {
            url,
            viewers,
            duration,
            slow,
            json,
        } => {
            let target = match farmcam::bench::parse_url(&url) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("farmcam bench: {e}");
                    return ExitCode::from(2);
                }
            };
            let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("farmcam: cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let report = rt.block_on(farmcam::bench::run(&url, target, viewers, slow, duration, true));
            let text = if json {
                serde_json::to_string_pretty(&report).expect("report serialises") + "\n"
            } else {
                report.table()
            };
            {
                use std::io::Write as _;
                let _ = std::io::stdout().write_all(text.as_bytes());
            }
            rt.shutdown_timeout(std::time::Duration::from_millis(200));
            if report.fps_min > 0.0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Command::HashPassword { rtsp_digest } => {
            let tty = std::io::IsTerminal::is_terminal(&std::io::stdin());
            let mut line = String::new();
            let read = if tty {
                eprint!("password: ");
                let r = without_echo(|| std::io::stdin().read_line(&mut line));
                eprintln!();
                r
            } else {
                std::io::stdin().read_line(&mut line)
            };
            if read.is_err() {
                eprintln!("farmcam: cannot read a password on standard input");
                return ExitCode::from(1);
            }
            let password = line.trim_end_matches(['\r', '\n']);
            if password.is_empty() {
                eprintln!("farmcam: the password is empty; give one on standard input, e.g. `farmcam hash-password < file`");
                return ExitCode::from(1);
            }
            match rtsp_digest {
                Some(name) => println!("{}", farmcam::password::digest_ha1(&name, password)),
                None => println!("{}", farmcam::password::PasswordHash::new(password)),
            }
            ExitCode::SUCCESS
        }
        Command::Devices { dev } => {
            let (text, cameras) = farmcam::source::v4l2::list::report(&dev);
            {
                use std::io::Write as _;
                let _ = std::io::stdout().write_all(text.as_bytes());
            }
            if cameras > 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Command::Check { config } => match load(&config) {
            Err(code) => code,
            Ok(c) => {
                let ffmpeg = match check_ffmpeg(&config, &c) {
                    Ok(v) => v,
                    Err(line) => {
                        eprintln!("{line}");
                        return ExitCode::from(EX_CONFIG);
                    }
                };
                // Written whole and errors ignored: `farmcam check | head` must not panic.
                let mut out = String::new();
                macro_rules! out {
                    ($($t:tt)*) => {{
                        use std::fmt::Write as _;
                        let _ = writeln!(out, $($t)*);
                    }};
                }
                out!(
                    "{}: OK, {} camera(s){}",
                    config.display(),
                    c.cameras.len(),
                    if c.cameras_found > 0 {
                        " (no [[camera]] in the file: the USB cameras found)"
                    } else {
                        ""
                    }
                );
                let main = c.http.listen.first().map(|a| a.to_string()).unwrap_or_default();
                for cam in &c.cameras {
                    let size = cam
                        .size
                        .map(|s| s.to_string())
                        .unwrap_or_else(|| "source size".into());
                    let fps = cam
                        .fps
                        .map(|f| format!("{f} fps"))
                        .unwrap_or_else(|| "source rate".into());
                    out!(
                        "  {:<16} {:<24} {:<20} {size}, {fps}, idle_grace {}  http://{main}/cameras/{}/stream{}",
                        cam.id,
                        cam.name,
                        cam.source.redacted(),
                        humantime::format_duration(cam.idle_grace),
                        cam.id,
                        cam.listen.map(|a| format!("  http://{a}/?action=stream")).unwrap_or_default()
                    );
                    if let Some(r) = farmcam::registry::encoder_of(cam) {
                        match r.encoders.first() {
                            Some(e) => out!("  {:<16} live H.264: {e} ({})", "", r.why),
                            None => out!("  {:<16} live H.264: none ({})", "", r.why),
                        }
                    } else if matches!(cam.source, farmcam::source::SourceSpec::V4l2(_))
                        && cam.source.sends_own_video()
                    {
                        out!(
                            "  {:<16} live H.264: the camera's own (format = \"h264\"), passed through",
                            ""
                        );
                    }
                }
                if let Some(v) = ffmpeg {
                    out!("  ffmpeg: {v}");
                }
                if let Some(t) = &c.timelapse {
                    out!(
                        "  timelapses: {} ({}), a picture every {}{}; within {} MiB, none below {} MiB free",
                        t.dir.display(),
                        farmcam::timelapse::spool::dir_state(&t.dir),
                        humantime::format_duration(t.interval),
                        if t.per_layer { " or per layer" } else { "" },
                        t.max_size >> 20,
                        t.min_free >> 20
                    );
                }
                for why in c.warnings() {
                    out!("  warning: {why}");
                }
                for l in &c.lights {
                    let users: Vec<&str> = c
                        .cameras
                        .iter()
                        .filter(|cam| cam.light.as_deref() == Some(l.id.as_str()))
                        .map(|cam| cam.id.as_str())
                        .collect();
                    out!(
                        "  light {}: {} at {} baud, off {} after use, for {}",
                        l.id,
                        l.port.display(),
                        l.baud,
                        humantime::format_duration(l.off_delay),
                        if users.is_empty() {
                            "no camera".to_string()
                        } else {
                            users.join(", ")
                        }
                    );
                }
                for m in &c.moonrakers {
                    out!(
                        "  moonraker {}: registers {} as {}",
                        m.url,
                        m.cameras
                            .as_ref()
                            .map_or("every camera".to_string(), |ids| ids.join(", ")),
                        m.farmcam_url
                    );
                }
                for u in &c.prusa_connect.cameras {
                    out!(
                        "  prusa connect {}: a snapshot every {}{} to {}",
                        u.camera,
                        humantime::format_duration(u.interval),
                        u.width.map(|w| format!(", {w} wide")).unwrap_or_default(),
                        c.prusa_connect.endpoint.url
                    );
                }
                if let Some(m) = &c.mqtt {
                    out!(
                        "  mqtt: {} as {}, topics under {}/, Home Assistant discovery {}",
                        m.url,
                        m.client_id,
                        m.topic_prefix,
                        if m.ha_discovery { "on" } else { "off" }
                    );
                }
                {
                    use std::io::Write as _;
                    let _ = std::io::stdout().write_all(out.as_bytes());
                }
                ExitCode::SUCCESS
            }
        },
        Command::Run { config, log_format } => {
            let c = match load(&config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            init_logging(log_format);
            log_panics();
            let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("farmcam: cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let result = rt.block_on(farmcam::daemon::run(c, &config));
            // Nothing may keep the process alive past shutdown (e.g. a blocked capture thread).
            rt.shutdown_timeout(std::time::Duration::from_millis(200));
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
