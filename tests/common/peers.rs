//! Test peers that must be installed: a missing one fails its test at once, in one line naming
//! it and the command that installs it, instead of a test timing out 30–90 s later.

use std::process::{Command, Stdio};
use std::sync::OnceLock;

const INSTALL: &str = "packaging/dev.sh deps installs every test peer";

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|d| {
            let p = d.join(program);
            p.is_file()
                && std::fs::metadata(&p)
                    .is_ok_and(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o111 != 0)
        })
    })
}

/// `program` is on PATH, else the test fails now naming the Debian package.
pub fn require(program: &str, package: &str) {
    assert!(
        on_path(program),
        "test peer missing: {program} (apt-get install {package}; {INSTALL})"
    );
}

/// ffmpeg, which farmcam runs for RTSP and HTTP cameras.
pub fn require_ffmpeg() {
    require("ffmpeg", "ffmpeg");
}

/// GStreamer's RTSP server under Debian's Python (checked once per test binary).
pub fn require_gst_rtsp() {
    static OK: OnceLock<bool> = OnceLock::new();
    let ok = *OK.get_or_init(|| {
        Command::new("/usr/bin/python3")
            .args([
                "-c",
                "import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstRtspServer', '1.0'); \
                 from gi.repository import Gst, GstRtspServer",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    });
    assert!(
        ok,
        "test peer missing: GStreamer's RTSP server for /usr/bin/python3 (apt-get install python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-ugly; {INSTALL})"
    );
}

/// The venv of a Python peer that `tests/peers/<name>/run.sh --install` makes.
fn require_venv(name: &str) {
    let run_sh = format!("{}/tests/peers/{name}/run.sh", env!("CARGO_MANIFEST_DIR"));
    let ok = Command::new("bash")
        .args([&run_sh, "--installed"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "test peer missing: the {name} venv (bash tests/peers/{name}/run.sh --install; {INSTALL})"
    );
}

/// The Moonraker venv.
pub fn require_moonraker() {
    require_venv("moonraker");
}

/// The aiortc venv (a WebRTC viewer that is not a browser).
pub fn require_aiortc() {
    require_venv("aiortc");
}

/// Chromium and chromedriver, for the browser tests.
pub fn require_chromium() {
    require("chromium", "chromium");
    require("chromedriver", "chromium-driver");
}
