//! The command line: check, bad configurations (exit 78, PATH:LINE:COL naming the key), help.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::BIN;

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn shipped_demo_config_checks() {
    let (code, out, err) = run(&["check", "--config", "config/farmcam.toml"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("OK, 2 camera(s)"), "{out}");
    assert!(
        out.contains("demo") && out.contains("/cameras/demo/stream"),
        "{out}"
    );
}

/// Each mistake: `check` and `run` both exit 78 with `PATH:LINE:COL: key: message`.
#[test]
fn bad_configs_exit_78_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("[[camera]]\nid = \"a\"\nsource = \"test:\"\nfsp = 30\n", ":4:1: ", "fsp"),
        ("[[camera]]\nid = \"Printer 1\"\nsource = \"test:\"\n", ":2:6: camera[0].id:", "not a valid id"),
        ("[[camera]]\nid = \"a\"\nsource = \"webcam\"\n", ":3:10: camera[0].source:", "not a source"),
        ("[[camera]]\nid = \"a\"\nsource = \"test:\"\nsize = \"1280*720\"\n", ":4:8: camera[0].size:", "WIDTHxHEIGHT"),
        ("[defaults]\nidle_grace = \"5 parsecs\"\n", ":2:14: defaults.idle_grace:", "not a duration"),
        ("[http]\nlisten = \"8080\"\n", ":2:10: http.listen:", "address:port"),
        ("[http]\nmax_connections = 0\n", ":2:19: http.max_connections:", "between 1 and"),
        ("[[camera]]\nid = \"a\"\nsource = \"test:\"\n[[camera]]\nid = \"a\"\nsource = \"test:\"\n", ":5:6: camera[1].id:", "unique"),
        ("[[camera]]\nid = \"a\"\nsource = \"test:\"\n[[camera]]\nid = \"b\"\nsource = \"test:\"\nfps = \"fast\"\n", ":7:7: camera[1].fps:", "whole number"),
        ("[[camera]\nid = 1\n", ":1:", "invalid"),
        ("[[camera]]\nid = \"a\"\nsource = \"test:\"\nrotate = 45\n", ":4:10: camera[0].rotate:", "0, 90, 180 or 270"),
        ("[[camera]]\nid = \"a\"\nsource = \"test:\"\nflip = \"both\"\n", ":4:8: camera[0].flip:", "\"horizontal\""),
        ("[[camera]]\nid = \"a\"\nsource = \"rtsp://x/\"\nmoonraker_service = \"h264\"\n", ":4:21: camera[0].moonraker_service:", "\"mjpeg\""),
        ("[[camera]]\nid = \"a\"\nsource = \"test:\"\nmoonraker_service = \"webrtc\"\n", ":4:21: camera[0].moonraker_service:", "which only rtsp, rtsps, http and v4l2"),
        ("[[wall.gateway]]\nname = \"b\"\nurl = \"https://b.local\"\n", ":3:7: wall.gateway[0].url:", "http://HOST:PORT"),
        ("[[wall.gateway]]\nname = \"Shelf B\"\nurl = \"http://b.local:8080\"\n", ":2:8: wall.gateway[0].name:", "not a valid name"),
    ];
    for (i, (text, position, words)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("bad{i}.toml"));
        std::fs::write(&path, text).unwrap();
        let p = path.to_str().unwrap();
        for cmd in ["check", "run"] {
            let t = Instant::now();
            let (code, _, err) = run(&[cmd, "--config", p]);
            assert_eq!(code, 78, "{cmd} {text:?}: {err}");
            let line = err.lines().next().unwrap_or("");
            assert!(
                line.starts_with(&format!("{p}{position}")),
                "{cmd} {text:?}: {err}"
            );
            assert!(line.contains(words), "{cmd} {text:?}: {err}");
            assert!(t.elapsed() < Duration::from_secs(5));
        }
    }
}

#[test]
fn several_problems_are_listed_one_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f.toml");
    std::fs::write(&path, "[[camera]]\nid = \"A\"\nsource = \"x\"\nsize = \"big\"\n").unwrap();
    let (code, _, err) = run(&["check", "-c", path.to_str().unwrap()]);
    assert_eq!(code, 78);
    assert_eq!(err.lines().count(), 3, "{err}");
}

/// `check` says which live H.264 encoder each camera gets, and why not: a hardware encoder named
/// on a box without one (this one: no V4L2 memory-to-memory encoder, no Intel or AMD graphics),
/// `auto` without one, a camera that sends H.264 itself.
#[test]
fn check_says_which_encoder_each_camera_gets_and_why() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f.toml");
    std::fs::write(
        &path,
        "[[camera]]\nid = \"pi\"\nsource = \"test:\"\nh264_encoder = \"h264_v4l2m2m\"\n\
         [[camera]]\nid = \"auto\"\nsource = \"test:\"\n\
         [[camera]]\nid = \"sw\"\nsource = \"test:\"\nh264_encoder = \"software\"\n\
         [[camera]]\nid = \"uvc\"\nsource = \"v4l2:/dev/video42\"\nformat = \"h264\"\n\
         [[camera]]\nid = \"intel\"\nsource = \"test:\"\nh264_encoder = \"h264_vaapi\"\n",
    )
    .unwrap();
    let (code, out, err) = run(&["check", "-c", path.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let said = |id: &str| {
        let mut lines = out.lines().skip_while(|l| !l.starts_with(&format!("  {id} ")));
        lines.nth(1).unwrap_or_default().trim().to_string()
    };
    assert!(
        said("pi").starts_with("live H.264: none (h264_encoder = \"h264_v4l2m2m\", but this box has no V4L2 device that encodes H.264"),
        "{out}"
    );
    assert!(
        said("auto").starts_with("live H.264: none (auto: no hardware H.264 encoder"),
        "{out}"
    );
    assert!(said("sw").starts_with("live H.264: libx264"), "{out}");
    assert!(
        said("intel").starts_with(
            "live H.264: none (h264_encoder = \"h264_vaapi\", but this box has no Intel or AMD render node"
        ),
        "{out}"
    );
    assert_eq!(
        said("uvc"),
        "live H.264: the camera's own (format = \"h264\"), passed through",
        "{out}"
    );
}

/// `check` says where timelapses go and whether farmcam can write there.
#[test]
fn check_says_where_timelapses_go() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f.toml");
    std::fs::write(
        &path,
        format!(
            "[timelapse]\ndir = \"{}\"\ninterval = \"10s\"\n[[camera]]\nid = \"a\"\nsource = \"test:\"\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let (code, out, err) = run(&["check", "-c", path.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&format!("timelapses: {} (writable", dir.path().display()))
            && out.contains("a picture every 10s or per layer"),
        "{out}"
    );
}

#[test]
fn missing_config_is_a_config_error_with_a_hint() {
    let (code, _, err) = run(&["check", "--config", "/nonexistent/farmcam.toml"]);
    assert_eq!(code, 78);
    assert!(
        err.contains("/nonexistent/farmcam.toml") && err.contains("--config"),
        "{err}"
    );
}

#[test]
fn secrets_in_a_rejected_source_are_not_printed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f.toml");
    std::fs::write(
        &path,
        "[[camera]]\nid = \"a\"\nsource = \"foo://bblp:s3cretCode@10.0.0.9/live\"\n",
    )
    .unwrap();
    let (code, out, err) = run(&["check", "-c", path.to_str().unwrap()]);
    assert_eq!(code, 78);
    assert!(
        !err.contains("s3cretCode") && !out.contains("s3cretCode"),
        "{err}"
    );
    assert!(err.contains("foo://***@10.0.0.9/live"), "{err}");
}

#[test]
fn address_in_use_is_one_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f.toml");
    std::fs::write(
        &path,
        format!("[http]\nlisten = \"{}\"\n", taken.local_addr().unwrap()),
    )
    .unwrap();
    let (code, _, err) = run(&["run", "-c", path.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(
        err.contains("cannot listen on") && err.contains("http.listen"),
        "{err}"
    );
}

#[test]
fn help_and_version() {
    let (code, out, _) = run(&["--help"]);
    assert_eq!(code, 0);
    for word in [
        "run",
        "check",
        "/cameras/ID/stream",
        "/api/events",
        "78",
        "rtsp://HOST:8554/ID",
        "[camera.prusa_connect] token",
    ] {
        assert!(out.contains(word), "--help mentions {word}: {out}");
    }
    let (code, out, _) = run(&["--version"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("farmcam "), "{out}");
    let (_, out, _) = run(&["run", "--help"]);
    assert!(out.contains("/etc/farmcam/farmcam.toml"), "{out}");
}

/// `farmcam check | head -1`: stdout closed early is not a crash.
#[test]
fn check_with_stdout_closed_is_not_a_panic() {
    use std::os::fd::FromRawFd;
    let mut fds = [0; 2];
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    unsafe { libc::close(fds[0]) };
    let write_end = unsafe { std::process::Stdio::from_raw_fd(fds[1]) };
    let out = std::process::Command::new(common::BIN)
        .args([
            "check",
            "--config",
            concat!(env!("CARGO_MANIFEST_DIR"), "/config/farmcam.toml"),
        ])
        .stdout(write_end)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
}
