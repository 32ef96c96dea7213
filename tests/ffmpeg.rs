//! rtsp://, rtsps:// and http:// cameras through ffmpeg, against real peers: GStreamer's RTSP
//! server (stopped, restarted, frozen by the tests) and an MJPEG-over-HTTP camera. Every failure
//! an RTSP source can produce, checked from a viewer's point of view and in /proc.

mod common;

use std::time::Duration;

use common::eventually;
use common::mjpeg_server::MjpegServer;
use common::proc::{children, cmdline, ffmpeg_children, free_port, proc_state};
use common::rtsp::{RtspOptions, RtspServer};
use common::{
    config, decode_jpeg, find, get, is_live, live_frame, open_stream, part_where, placeholder_frame, Daemon,
    Stream, BIN, LIVE_WAIT,
};

/// No such process, not even a zombie: reaped.
fn gone(pid: u32) -> bool {
    proc_state(pid).is_none()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtsp_rtsps_and_http_cameras_serve_many_viewers_from_one_ffmpeg_each() {
    let rtsp = RtspServer::start(RtspOptions::default());
    let rtsps = RtspServer::start(RtspOptions {
        tls: true,
        credentials: Some(("bblp".into(), "31415926".into())),
        ..Default::default()
    });
    let http = MjpegServer::start(256, 192).await;
    let d = Daemon::start(&config(
        "",
        &format!(
            "[[camera]]\nid = \"rtsp\"\nsource = \"{}\"\nidle_grace = \"1s\"\n\
             [[camera]]\nid = \"x1c\"\nsource = \"{}\"\nidle_grace = \"1s\"\nquality = 70\n\
             [[camera]]\nid = \"k1\"\nsource = \"{}\"\nidle_grace = \"1s\"\n",
            rtsp.url(),
            rtsps.url(),
            http.url()
        ),
    ));
    let pid = d.child.id();
    let mut viewers = Vec::new();
    for id in ["rtsp", "x1c", "k1"] {
        for _ in 0..3 {
            viewers.push((id, open_stream(&d, id).await));
        }
    }
    for (id, s) in viewers.iter_mut() {
        let mut seqs = Vec::new();
        for _ in 0..4 {
            let p = live_frame(s).await;
            let want = if *id == "k1" { (256, 192) } else { (320, 240) };
            assert_eq!(decode_jpeg(&p.jpeg), want, "{id}");
            seqs.push(p.seq());
        }
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{id}: {seqs:?}");
    }
    // One connection per camera, however many viewers: the plain RTSP camera read by farmcam's
    // own RTSP client, the others by one ffmpeg each; the HTTP camera saw one connection.
    let rtsp_ff = ffmpeg_children(pid, &format!(":{}/cam", rtsp.port));
    assert_eq!(rtsp.clients.load(std::sync::atomic::Ordering::SeqCst), 1);
    let statuses = d.cameras_json().await;
    let ingest: Vec<_> = statuses
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["ingest"].as_str())
        .collect();
    assert_eq!(
        ingest,
        [Some("farmcam"), Some("ffmpeg"), None],
        "rtsp, x1c, k1 (MJPEG)"
    );
    // The RTSPS camera has a password: its URL is in a private file named after the camera.
    let rtsps_ff = ffmpeg_children(pid, "/x1c-");
    let http_ff = ffmpeg_children(pid, &format!(":{}/", http.port));
    assert_eq!((rtsp_ff.len(), rtsps_ff.len(), http_ff.len()), (0, 1, 1));
    // H.264 is copied to farmcam and decoded (full rate: viewers) by the one decoder helper
    // shared by every camera; MJPEG over HTTP is copied untouched.
    let decoders = common::proc::decoder_helpers(pid);
    assert_eq!(decoders.len(), 1, "one decoder helper for both H.264 cameras");
    assert!(
        ffmpeg_children(pid, "-i pipe:0").is_empty(),
        "no decoder child per camera"
    );
    assert_eq!(children(pid).len(), 3, "no other children");
    assert_eq!(http.accepted.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert!(cmdline(rtsps_ff[0]).contains("-c:v copy -bsf:v dump_extra=freq=keyframe -f h264"));
    // farmcam encodes the decoded pictures at the camera's quality: libjpeg's luminance table
    // starts at 16 scaled to 60 % for quality 70 (10), to 20 % for the default 90 (3).
    let first_quantizer = |jpeg: &[u8]| {
        let dqt = find(jpeg, &[0xff, 0xdb]).expect("a quantization table");
        jpeg[dqt + 5]
    };
    let x1c = get(d.main, "/cameras/x1c/snapshot").await;
    let plain = get(d.main, "/cameras/rtsp/snapshot").await;
    assert_eq!(
        (first_quantizer(&x1c.body), first_quantizer(&plain.body)),
        (10, 3),
        "quality 70 and the default 90"
    );
    assert!(cmdline(http_ff[0]).contains("-c:v copy -f mjpeg"));
    let k1 = d.camera("k1").await;
    assert_eq!(
        (k1["viewers"].as_u64(), k1["state"].as_str()),
        (Some(3), Some("live"))
    );

    // The last viewer leaves: after the grace, every ffmpeg is stopped and reaped (the helper
    // after its linger).
    drop(viewers);
    let all: Vec<u32> = [rtsp_ff, rtsps_ff, http_ff, decoders].concat();
    eventually(
        Duration::from_secs(40),
        "ffmpeg children stopped and reaped",
        || all.iter().all(|p| gone(*p)).then_some(()),
    )
    .await;
    assert!(children(pid).is_empty());
    eventually(Duration::from_secs(5), "HTTP camera connection closed", || {
        (http.active.load(std::sync::atomic::Ordering::SeqCst) == 0).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_down_at_start_shows_placeholders_then_goes_live_when_it_comes_up() {
    let port = free_port();
    let d = Daemon::start(&config(
        "",
        &format!("[[camera]]\nid = \"p1\"\nsource = \"rtsp://127.0.0.1:{port}/cam\"\nsize = \"160x120\"\n"),
    ));
    let mut s = open_stream(&d, "p1").await;
    let a = placeholder_frame(&mut s).await;
    assert_eq!(decode_jpeg(&a.jpeg), (160, 120));
    placeholder_frame(&mut s).await;
    let c = d.camera("p1").await;
    assert_eq!(c["state"], "offline");
    assert!(
        c["last_error"].as_str().unwrap().contains("Connection refused"),
        "{c}"
    );

    let _server = RtspServer::start_on(port, RtspOptions::default());
    let p = live_frame(&mut s).await;
    assert_eq!(decode_jpeg(&p.jpeg), (160, 120), "size applies (scale)");
    let c = d.camera("p1").await;
    assert_eq!(c["state"], "live");
    assert!(c["last_error"].is_null(), "{c}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_restart_mid_stream_keeps_viewers_and_resumes() {
    let mut server = RtspServer::start(RtspOptions::default());
    let d = Daemon::start(&config(
        "",
        &format!("[[camera]]\nid = \"p1\"\nsource = \"{}\"\n", server.url()),
    ));
    let mut s = open_stream(&d, "p1").await;
    let before = live_frame(&mut s).await.seq();
    server.stop();
    placeholder_frame(&mut s).await;
    server.restart();
    let after = live_frame(&mut s).await.seq();
    assert!(after > before);
    // A plain rtsp:// camera is read by farmcam's own RTSP client, which reconnected.
    let c = d.camera("p1").await;
    assert_eq!(c["ingest"], "farmcam", "{c}");
    assert!(c["upstream_opens"].as_u64() >= Some(2), "{c}");
    assert_eq!(
        d.camera("p1").await["viewers"],
        1,
        "the same viewer, still attached"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_ffmpeg_is_restarted_and_viewers_stay_attached_and_never_sees_notify_socket() {
    let server = RtspServer::start(RtspOptions::default());
    // Under systemd, NOTIFY_SOCKET is farmcam's alone: ffmpeg must not inherit it.
    let d = Daemon::start_with_env(
        &config(
            "",
            &format!(
                "[[camera]]\nid = \"p1\"\nsource = \"{}\"\n{}",
                server.url(),
                common::FFMPEG_INGEST
            ),
        ),
        &[("NOTIFY_SOCKET", "/nonexistent/notify")],
    );
    let pid = d.child.id();
    let mut s = open_stream(&d, "p1").await;
    live_frame(&mut s).await;
    let first = ffmpeg_children(pid, "/cam");
    assert_eq!(first.len(), 1);
    let environ =
        |p: u32| String::from_utf8_lossy(&std::fs::read(format!("/proc/{p}/environ")).unwrap()).into_owned();
    assert!(environ(pid).contains("NOTIFY_SOCKET=") && !environ(first[0]).contains("NOTIFY_SOCKET="));
    unsafe { libc::kill(first[0] as i32, libc::SIGKILL) };
    eventually(Duration::from_secs(10), "killed ffmpeg reaped", || {
        gone(first[0]).then_some(())
    })
    .await;
    // Frames flow again on the same connection, from a new ffmpeg.
    part_where(&mut s, LIVE_WAIT, "live frame from the new ffmpeg", |p| {
        is_live(p) && ffmpeg_children(pid, "/cam").iter().any(|c| *c != first[0])
    })
    .await;
    assert_eq!(ffmpeg_children(pid, "/cam").len(), 1);
    d.logged("killed by signal 9").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_stream_gets_ffmpeg_killed_and_restarted() {
    let server = RtspServer::start(RtspOptions::default());
    let d = Daemon::start(&config(
        "",
        &format!(
            "[[camera]]\nid = \"p1\"\nsource = \"{}\"\nstall_timeout = \"2s\"\n{}",
            server.url(),
            common::FFMPEG_INGEST
        ),
    ));
    let pid = d.child.id();
    let mut s = open_stream(&d, "p1").await;
    live_frame(&mut s).await;
    let first = ffmpeg_children(pid, "/cam")[0];
    server.pause();
    // ffmpeg's own socket timeout is longer (stall + 5 s): farmcam's stall check acts first.
    eventually(
        Duration::from_secs(15),
        "stalled ffmpeg stopped and reaped",
        || gone(first).then_some(()),
    )
    .await;
    placeholder_frame(&mut s).await;
    d.logged("no video for 2s").await;
    server.resume();
    live_frame(&mut s).await;
}

/// farmcam's own RTSP client (a plain rtsp:// camera): a stalled camera is noticed after
/// `stall_timeout`, the viewer sees the offline image, and the camera is reconnected when it
/// answers again, with no ffmpeg involved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_camera_read_by_farmcam_is_reconnected() {
    let server = RtspServer::start(RtspOptions::default());
    let d = Daemon::start(&config(
        "",
        &format!(
            "[[camera]]\nid = \"p1\"\nsource = \"{}\"\nstall_timeout = \"2s\"\n",
            server.url()
        ),
    ));
    let pid = d.child.id();
    let mut s = open_stream(&d, "p1").await;
    live_frame(&mut s).await;
    let c = d.camera("p1").await;
    assert_eq!(
        (c["ingest"].as_str(), c["upstream_opens"].as_u64()),
        (Some("farmcam"), Some(1)),
        "{c}"
    );
    assert!(
        ffmpeg_children(pid, "/cam").is_empty(),
        "no ffmpeg reads the camera"
    );
    server.pause();
    placeholder_frame(&mut s).await;
    d.logged("no video for 2s").await;
    server.resume();
    live_frame(&mut s).await;
    let c = d.camera("p1").await;
    assert!(c["upstream_opens"].as_u64() >= Some(2), "reconnected: {c}");
    assert_eq!(c["ingest"], "farmcam", "{c}");
    assert_eq!(c["viewers"], 1, "the same viewer: {c}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_dies_with_farmcam_even_when_farmcam_is_sigkilled() {
    let server = RtspServer::start(RtspOptions::default());
    let cfg = config(
        "",
        &format!(
            "[[camera]]\nid = \"p1\"\nsource = \"{}\"\n{}",
            server.url(),
            common::FFMPEG_INGEST
        ),
    );

    // SIGTERM: a clean stop reaps ffmpeg before farmcam exits.
    let mut d = Daemon::start(&cfg);
    let mut s = open_stream(&d, "p1").await;
    live_frame(&mut s).await;
    let child = ffmpeg_children(d.child.id(), "/cam")[0];
    d.signal(libc::SIGTERM);
    let status = d
        .wait_exit(Duration::from_secs(5))
        .expect("farmcam exits on SIGTERM");
    assert!(status.success());
    assert!(
        gone(child) || proc_state(child) == Some('Z'),
        "ffmpeg stopped with farmcam"
    );

    // SIGKILL: farmcam cannot clean up; the kernel kills ffmpeg (PR_SET_PDEATHSIG).
    let mut d = Daemon::start(&cfg);
    let mut s = open_stream(&d, "p1").await;
    live_frame(&mut s).await;
    let child = ffmpeg_children(d.child.id(), "/cam")[0];
    let helper = common::proc::decoder_helpers(d.child.id());
    assert_eq!(helper.len(), 1, "the decoder helper runs");
    d.signal(libc::SIGKILL);
    d.wait_exit(Duration::from_secs(5)).expect("farmcam killed");
    // An orphan is reparented and reaped by init; a zombie left with no reaper is dead too.
    eventually(
        Duration::from_secs(5),
        "orphaned ffmpeg and decoder helper killed",
        || {
            [child, helper[0]]
                .iter()
                .all(|c| matches!(proc_state(*c), None | Some('Z')))
                .then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_ffmpeg_is_one_clear_error_not_a_crash_loop() {
    let cfg = config(
        "",
        "[ffmpeg]\npath = \"/nonexistent/bin/ffmpeg\"\n\
         [[camera]]\nid = \"p1\"\nsource = \"rtsp://127.0.0.1:9/cam\"\nsize = \"160x120\"\n\
         [[camera]]\nid = \"demo\"\nsource = \"test:\"\nsize = \"160x120\"\nfps = 5\n",
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("farmcam.toml");
    std::fs::write(&path, &cfg).unwrap();
    let out = std::process::Command::new(BIN)
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("ffmpeg.path")
            && err.contains("not found")
            && err.contains("apt install ffmpeg")
            && err.contains("p1"),
        "{err}"
    );

    // `run` keeps serving the other cameras; the ffmpeg camera shows why it is offline.
    let mut d = Daemon::start(&cfg);
    let mut s = open_stream(&d, "p1").await;
    placeholder_frame(&mut s).await;
    let mut demo = open_stream(&d, "demo").await;
    live_frame(&mut demo).await;
    // The pump retries (1 s, 2 s backoff), and says so only once.
    let c = d
        .wait_for("p1", LIVE_WAIT, |c| c["upstream_opens"].as_u64() >= Some(3))
        .await;
    assert!(
        c["last_error"].as_str().unwrap().contains("ffmpeg not found"),
        "{c}"
    );
    assert!(c["upstream_opens"].as_u64().unwrap() >= 2, "{c}");
    let log = d.log_text();
    let mentions = log.lines().filter(|l| l.contains("not found")).count();
    assert!(
        (1..=2).contains(&mentions),
        "said once at start-up and once by the pump:\n{log}"
    );
    assert!(d.child.try_wait().unwrap().is_none(), "still running");
    d.signal(libc::SIGTERM);
    assert!(d.wait_exit(Duration::from_secs(5)).unwrap().success());
}

/// Credentials in source URLs appear nowhere: logs (at debug, including ffmpeg's own output),
/// the process table (children's command lines and environments, the decoder helper's too),
/// /api/cameras, events, pages, error bodies and `farmcam check`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_never_leak() {
    const CODE: &str = "Zq7acc355c0de";
    let server = RtspServer::start(RtspOptions {
        tls: true,
        credentials: Some(("bblp".into(), CODE.into())),
        ..Default::default()
    });
    let good = server.url();
    assert!(good.contains(CODE));
    // The same over plain RTSP: read by farmcam's own RTSP client.
    let plain = RtspServer::start(RtspOptions {
        credentials: Some(("admin".into(), CODE.into())),
        ..Default::default()
    });
    let plain_good = plain.url();
    assert!(plain_good.starts_with("rtsp://") && plain_good.contains(CODE));
    let plain_wrong = plain_good.replace(CODE, &format!("{CODE}x"));
    let wrong_port = good.replace(&format!(":{}/", server.port), &format!(":{}/", free_port()));
    let wrong_code = format!("rtsps://bblp:{CODE}x@127.0.0.1:{}/cam", server.port);
    let cfg = config(
        "",
        &format!(
            "[[camera]]\nid = \"x1c\"\nsource = \"{good}\"\n\
             [[camera]]\nid = \"h2d\"\nsource = \"{wrong_port}\"\nsnapshot_timeout = \"3s\"\n\
             [[camera]]\nid = \"p2s\"\nsource = \"{wrong_code}\"\nffmpeg_args = [\"-user_agent\", \"farmcam\"]\n\
             [[camera]]\nid = \"ipcam\"\nsource = \"{plain_good}\"\n\
             [[camera]]\nid = \"ipcam2\"\nsource = \"{plain_wrong}\"\n"
        ),
    );
    let d = Daemon::start_with_log(&cfg, "debug");
    let mut events = Stream::open(d.main, "GET /api/events HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let mut s = open_stream(&d, "x1c").await;
    live_frame(&mut s).await;
    let mut bad = open_stream(&d, "h2d").await;
    placeholder_frame(&mut bad).await;
    let mut bad2 = open_stream(&d, "p2s").await;
    placeholder_frame(&mut bad2).await;
    let mut ipcam = open_stream(&d, "ipcam").await;
    live_frame(&mut ipcam).await;
    let mut bad3 = open_stream(&d, "ipcam2").await;
    placeholder_frame(&mut bad3).await;
    let c = d.camera("ipcam").await;
    assert_eq!(c["ingest"], "farmcam", "{c}");
    eventually(Duration::from_secs(20), "ipcam2's refusal in its status", || {
        let log = d.log_text();
        log.lines()
            .any(|l| l.contains("ipcam2") && l.contains("401"))
            .then_some(())
    })
    .await;
    eventually(Duration::from_secs(20), "401 seen", || {
        d.log_text().contains("401").then_some(())
    })
    .await;

    // The process table: every child's command line and environment (the decoder helper
    // decodes x1c's video for the viewer).
    let helpers = common::proc::decoder_helpers(d.child.id());
    assert_eq!(helpers.len(), 1, "the decoder helper runs");
    let mut table = String::new();
    for c in children(d.child.id()) {
        table.push_str(&cmdline(c));
        table.push_str(&String::from_utf8_lossy(
            &std::fs::read(format!("/proc/{c}/environ")).unwrap_or_default(),
        ));
    }
    let mut seen = vec![d.log_text(), table];
    for path in [
        "/api/cameras",
        "/",
        "/cameras/x1c/",
        "/cameras/h2d/snapshot",
        "/cameras/nope/stream",
    ] {
        let r = get(d.main, path).await;
        seen.push(format!(
            "{path} {:?} {}",
            r.headers,
            String::from_utf8_lossy(&r.body)
        ));
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), async { while events.fill().await {} }).await;
    seen.push(String::from_utf8_lossy(&events.body).into_owned());
    assert!(
        seen[2].contains("rtsps://***@127.0.0.1"),
        "status shows the redacted URL: {}",
        seen[2]
    );

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("farmcam.toml");
    for c in [cfg.clone(), cfg.replace("@127.0.0.1:", "@:")] {
        // A valid file, and one whose URLs have no host (rejected).
        std::fs::write(&path, c).unwrap();
        let out = std::process::Command::new(BIN)
            .args(["check", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        seen.push(String::from_utf8_lossy(&out.stdout).into_owned());
        seen.push(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    assert!(
        seen.last().unwrap().contains("no host"),
        "{}",
        seen.last().unwrap()
    );
    for (i, text) in seen.iter().enumerate() {
        assert!(!text.contains(CODE), "secret leaked in item {i}:\n{text}");
    }
}

/// An HTTP camera is presumed MJPEG and copied; one that sends H.264 (here MPEG-TS) is noticed
/// from ffmpeg's report and re-encoded on the next start, without waiting for a stall.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_camera_sending_h264_is_re_encoded() {
    let dir = tempfile::tempdir().unwrap();
    let ts = dir.path().join("cam.ts");
    let made = std::process::Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x240:rate=10",
        ])
        .args([
            "-t", "3", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-f", "mpegts",
        ])
        .arg(&ts)
        .status()
        .unwrap();
    assert!(made.success());
    let http = MjpegServer::start_once("video/mp2t", std::fs::read(&ts).unwrap(), 320, 240).await;
    let d = Daemon::start(&config(
        "",
        &format!(
            "[[camera]]\nid = \"ipcam\"\nsource = \"http://127.0.0.1:{}/video.ts\"\n",
            http.port
        ),
    ));
    let mut s = open_stream(&d, "ipcam").await;
    let p = live_frame(&mut s).await;
    assert_eq!(decode_jpeg(&p.jpeg), (320, 240));
    d.logged("not MJPEG after all").await;
}

/// Frames cut off by the camera are dropped (viewers only ever get complete JPEGs) and counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_frames_are_dropped_and_counted() {
    let http = MjpegServer::start_broken(160, 120, Some(3)).await;
    let d = Daemon::start(&config(
        "",
        &format!("[[camera]]\nid = \"k1\"\nsource = \"{}\"\n", http.url()),
    ));
    let mut s = open_stream(&d, "k1").await;
    for _ in 0..12 {
        let p = live_frame(&mut s).await;
        assert_eq!(decode_jpeg(&p.jpeg), (160, 120), "every delivered frame decodes");
    }
    let c = d.camera("k1").await;
    let (captured, invalid) = (
        c["frames_captured"].as_u64().unwrap(),
        c["frames_invalid"].as_u64().unwrap(),
    );
    assert!(invalid >= 3, "{c}");
    assert!(captured >= 12, "{c}");
}

/// JPEG is full range (0..255); H.264 cameras mostly send video range (16..235), some full. A
/// dark gray comes out the same gray either way: converted when the stream is video range, left
/// alone when it is full range (the decoder reports which).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn video_range_and_full_range_cameras_both_give_true_colours() {
    let dir = tempfile::tempdir().unwrap();
    let mut cameras = String::new();
    for (id, fmt) in [("video", "yuv420p"), ("full", "yuvj420p")] {
        let file = dir.path().join(format!("{id}.ts"));
        let made = std::process::Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i"])
            .arg("color=c=0x282828:size=160x120:rate=10")
            .args(["-t", "2", "-c:v", "libx264", "-pix_fmt", fmt, "-f", "mpegts"])
            .arg(&file)
            .status()
            .unwrap();
        assert!(made.success());
        cameras += &format!(
            "[[camera]]\nid = \"{id}\"\nquality = 100\n\
             source = \"ffmpeg:-re -stream_loop -1 -i {}\"\n",
            file.display()
        );
    }
    let d = Daemon::start(&config("", &cameras));
    for id in ["video", "full"] {
        let mut s = open_stream(&d, id).await;
        let p = live_frame(&mut s).await;
        let rgb = jpeg_decoder::Decoder::new(&p.jpeg[..]).decode().unwrap();
        let mean = rgb.iter().map(|&v| v as f64).sum::<f64>() / rgb.len() as f64;
        assert!((mean - 40.0).abs() <= 3.0, "{id}: gray 40 came out as {mean:.1}");
    }
}

/// The escape hatch: `ffmpeg:` with the user's own input arguments; `size` and `fps` still apply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_ffmpeg_arguments_are_a_source() {
    let d = Daemon::start(&config(
        "",
        "[[camera]]\nid = \"lavfi\"\nsource = \"ffmpeg:-re -f lavfi -i 'testsrc2=size=320x240:rate=10'\"\n\
         size = \"160x120\"\nfps = 5\n",
    ));
    let mut s = open_stream(&d, "lavfi").await;
    let p = live_frame(&mut s).await;
    assert_eq!(decode_jpeg(&p.jpeg), (160, 120));
    let ff = ffmpeg_children(d.child.id(), "testsrc2");
    assert_eq!(ff.len(), 1);
    assert!(cmdline(ff[0]).contains("-vf fps=5,scale=160:120"));
}

/// A camera that accepts the connection and then says nothing: its viewers see the offline
/// image within a second or two (not a blank wait until the first-frame timeout), while a
/// snapshot still waits for a real frame up to `snapshot_timeout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_camera_shows_the_offline_image_soon_and_snapshots_still_wait() {
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    let held = tokio::spawn(async move {
        let mut conns = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            conns.push(s);
        }
    });
    let d = Daemon::start(&config(
        "",
        &format!(
            "[[camera]]\nid = \"cam\"\nsource = \"http://127.0.0.1:{port}/stream\"\nsize = \"320x240\"\nsnapshot_timeout = \"2s\"\n"
        ),
    ));
    let asked = std::time::Instant::now();
    let snap = tokio::spawn({
        let addr = d.main;
        async move { get(addr, "/cameras/cam/snapshot").await }
    });
    let mut s = open_stream(&d, "cam").await;
    // FIRST_FRAME_TIMEOUT is 15 s: the image must come well before.
    let p = tokio::time::timeout(Duration::from_secs(10), placeholder_frame(&mut s))
        .await
        .expect("the offline image while the camera is silent");
    assert_eq!(decode_jpeg(&p.jpeg), (320, 240));
    assert_eq!(d.camera("cam").await["state"], "starting");
    let r = snap.await.unwrap();
    assert_eq!(r.status, 503);
    assert!(
        asked.elapsed() >= Duration::from_secs(2),
        "the snapshot waited for a frame (snapshot_timeout), not for the first placeholder"
    );
    held.abort();
}

/// No local user can read a camera's password on a command line or in an environment: ffmpeg
/// gets a URL with credentials in a private file (0600 in a 0700 directory), removed with the
/// child; `farmcam check` warns where that cannot be done (an `ffmpeg:` source).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn camera_passwords_are_on_no_command_line() {
    let rtsp = RtspServer::start(RtspOptions {
        credentials: Some(("admin".into(), "Rtsp#S3cret/x".into())),
        ..Default::default()
    });
    let http = MjpegServer::start(160, 120).await;
    let d = Daemon::start(&config(
        "",
        &format!(
            "[[camera]]\nid = \"cam\"\nsource = \"rtsp://admin:Rtsp%23S3cret%2Fx@127.0.0.1:{}/cam\"\n\
             ffmpeg_args = [\"-rtsp_flags\", \"prefer_tcp\", \"-thread_queue_size\", \"64\"]\nidle_grace = \"1s\"\n\
             [[camera]]\nid = \"k1\"\nsource = \"http://user:Http%23S3cret@127.0.0.1:{}/stream\"\nidle_grace = \"1s\"\n\
             ffmpeg_args = [\"-headers\", \"X-Key: v\\r\\n\"]\n\
             [[camera]]\nid = \"short\"\nsource = \"http://user:123@127.0.0.1:{}/stream\"\nidle_grace = \"1s\"\n",
            rtsp.port, http.port, http.port
        ),
    ));
    let mut s = open_stream(&d, "cam").await;
    let mut k = open_stream(&d, "k1").await;
    let mut short = open_stream(&d, "short").await;
    live_frame(&mut s).await;
    live_frame(&mut k).await;
    live_frame(&mut short).await;
    let pid = d.child.id();
    let kids = children(pid);
    assert!(
        kids.len() >= 4,
        "ingest, decoder and the http cameras' ffmpeg: {kids:?}"
    );
    // A password too short to scrub from text stays off the command line too.
    assert!(
        kids.iter().all(|p| !cmdline(*p).contains(":123@")),
        "a short password on a command line"
    );
    // ffmpeg's own input options stay on the command line, before the script's -i.
    assert!(
        kids.iter()
            .any(|p| cmdline(*p).contains("-thread_queue_size 64 -i ")),
        "{:?}",
        kids.iter().map(|p| cmdline(*p)).collect::<Vec<_>>()
    );
    let mut scripts = Vec::new();
    for p in kids.iter().copied().chain([pid]) {
        let cmd = cmdline(p);
        let env = std::fs::read(format!("/proc/{p}/environ")).unwrap_or_default();
        let env = String::from_utf8_lossy(&env);
        for shown in [&cmd, &*env] {
            assert!(
                !shown.contains("S3cret"),
                "process {p} shows the password: {shown}"
            );
        }
        scripts.extend(
            cmd.split(' ')
                .filter(|w| w.ends_with(".ffconcat"))
                .map(String::from),
        );
    }
    assert_eq!(scripts.len(), 3, "one script per camera with a password");
    for path in &scripts {
        use std::os::unix::fs::PermissionsExt;
        let file = std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        let dir = std::fs::metadata(std::path::Path::new(path).parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!((file, dir), (0o600, 0o700), "{path}");
    }
    // The user's extra input options went along into the script.
    let cam_script = scripts.iter().find(|p| p.contains("/cam-")).unwrap();
    let text = std::fs::read_to_string(cam_script).unwrap();
    assert!(text.contains("option rtsp_flags 'prefer_tcp'"), "{text}");
    assert!(!text.contains("thread_queue_size"), "{text}");
    // A header with its CRLF (the common form) goes into the script without it: one line.
    let k1_script = scripts.iter().find(|p| p.contains("/k1-")).unwrap();
    assert!(std::fs::read_to_string(k1_script)
        .unwrap()
        .contains("option headers 'X-Key: v'\n"));
    // Viewers gone, children gone: so are the files.
    drop((s, k, short));
    eventually(Duration::from_secs(20), "scripts removed", || {
        scripts
            .iter()
            .all(|p| !std::path::Path::new(p).exists())
            .then_some(())
    })
    .await;

    // An ffmpeg: source cannot be covered: check says so (without the password).
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f.toml");
    std::fs::write(
        &path,
        "[[camera]]\nid = \"raw\"\nsource = \"ffmpeg:-rtsp_transport tcp -i rtsp://admin:Raw%23S3cret@10.0.0.5/cam\"\n",
    )
    .unwrap();
    let out = std::process::Command::new(BIN)
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("warning: camera raw:") && text.contains("every local user can read"),
        "{text}"
    );
    assert!(!text.contains("S3cret"), "{text}");

    // What cannot go into the script with the URL is refused, saying why, not put on a command
    // line: two headers (a line break inside), a -f.
    for args in ["[\"-headers\", \"A: 1\\r\\nB: 2\\r\\n\"]", "[\"-f\", \"rtsp\"]"] {
        std::fs::write(
            &path,
            format!("[[camera]]\nid = \"c\"\nsource = \"rtsp://admin:Refused%23S3cret@10.0.0.5/cam\"\nffmpeg_args = {args}\n"),
        )
        .unwrap();
        let out = std::process::Command::new(BIN)
            .args(["check", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(78), "{args}: {err}");
        assert!(
            err.contains("ffmpeg_args") && err.contains("private file"),
            "{err}"
        );
        assert!(!err.contains("S3cret"), "{err}");
    }
}

/// Another local user who creates farmcam's script directory first (in a shared /tmp) cannot
/// stop the cameras that have a password: farmcam makes a private directory of its own and says
/// so; scripts that farmcam processes no longer running left behind are removed at start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_script_directory_taken_by_another_user_stops_no_camera() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let uid = unsafe { libc::getuid() };
    let taken = tmp.path().join(format!("farmcam-{uid}"));
    std::fs::create_dir(&taken).unwrap();
    std::fs::set_permissions(&taken, std::fs::Permissions::from_mode(0o777)).unwrap();
    std::os::unix::fs::chown(&taken, Some(65534), Some(65534)).unwrap();
    // A private directory of ours beside it, with a stale script in it, for the second daemon.
    let tmp2 = tempfile::tempdir().unwrap();
    let ours = tmp2.path().join(format!("farmcam-{uid}"));
    std::fs::create_dir(&ours).unwrap();
    std::fs::set_permissions(&ours, std::fs::Permissions::from_mode(0o700)).unwrap();
    let stale = ours.join("cam-999999999-0.ffconcat");
    std::fs::write(&stale, "ffconcat version 1.0\n").unwrap();

    let http = MjpegServer::start(160, 120).await;
    let cam = format!(
        "[[camera]]\nid = \"cam\"\nsource = \"http://user:Taken%23S3cret@127.0.0.1:{}/stream\"\n",
        http.port
    );
    let d = Daemon::start_with_env(&config("", &cam), &[("TMPDIR", tmp.path().to_str().unwrap())]);
    let mut s = open_stream(&d, "cam").await;
    live_frame(&mut s).await;
    d.logged("is not a private directory of this user").await;
    d.logged("instead").await;
    assert!(
        std::fs::read_dir(&taken).unwrap().next().is_none(),
        "nothing written there"
    );

    let d2 = Daemon::start_with_env(&config("", &cam), &[("TMPDIR", tmp2.path().to_str().unwrap())]);
    eventually(Duration::from_secs(20), "the stale script removed", || {
        (!stale.exists()).then_some(())
    })
    .await;
    drop(d2);
}

/// A stream the shared decoder helper does not convert (10-bit H.264) is decoded by an ffmpeg
/// decoder child of the camera's own instead: said once in the log, shown as `decoded_by`, and
/// the snapshot is a picture of the camera's size.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_the_helper_cannot_convert_is_decoded_by_ffmpeg() {
    let dir = tempfile::tempdir().unwrap();
    // 10-bit, which the helper does not convert.
    let clip = common::rtsp::h264_clip(&dir.path().join("high10.h264"), 45, &["-pix_fmt", "yuv420p10le"]);
    let server = RtspServer::start(RtspOptions {
        clip: Some(clip),
        ..Default::default()
    });
    let d = Daemon::start(&config(
        "",
        &format!("[[camera]]\nid = \"cam\"\nsource = \"{}\"\n", server.url()),
    ));
    let mut s = open_stream(&d, "cam").await;
    let p = live_frame(&mut s).await;
    assert_eq!(decode_jpeg(&p.jpeg), (320, 240));
    let c = d
        .wait_for("cam", common::LIVE_WAIT, |c| c["decoded_by"] == "ffmpeg")
        .await;
    assert_eq!(c["ingest"], "farmcam", "{c}");
    d.logged("decoding this camera with ffmpeg instead").await;
    let log = d.log_text();
    assert_eq!(
        log.matches("decoding this camera with ffmpeg instead").count(),
        1,
        "said once: {log}"
    );
    assert_eq!(
        ffmpeg_children(d.child.id(), "-i pipe:0").len(),
        1,
        "its own decoder child"
    );
}
