//! Cost follows demand, against GStreamer's RTSP server (H.264, known keyframe interval) and the
//! test pattern: snapshots decode keyframes only, a full-rate viewer gets every picture, mode
//! and rate changes restart neither the decoder nor the camera connection, and killed children
//! recover without leaving orphans.

mod common;

use std::sync::atomic::Ordering::SeqCst;
use std::time::{Duration, Instant};

use common::proc::{children, ffmpeg_children, proc_state};
use common::rtsp::{RtspOptions, RtspServer};
use common::{
    config, decode_jpeg, eventually, eventually_async, get, live_frame, open_stream, unix_now, Daemon,
    Stream, LIVE_WAIT,
};

fn camera(url: &str, extra: &str) -> String {
    config(
        "",
        &format!("[[camera]]\nid = \"cam\"\nsource = \"{url}\"\n{extra}\n"),
    )
}

fn gone(pid: u32) -> bool {
    proc_state(pid).is_none()
}

/// The shared decoder helper (one process for every camera farmcam decodes).
fn decoders(farmcam: u32) -> Vec<u32> {
    common::proc::decoder_helpers(farmcam)
}

/// One snapshot, checked: a JPEG of the camera's size; returns its age in seconds.
async fn snapshot_age(d: &Daemon) -> f64 {
    let r = get(d.main, "/cameras/cam/snapshot").await;
    assert_eq!(r.status, 200, "{}", d.log_text());
    assert_eq!(decode_jpeg(&r.body), (320, 240));
    let taken: f64 = r.header("x-timestamp").unwrap().parse().unwrap();
    unix_now() - taken
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_decode_keyframes_only_and_a_viewer_switches_to_full_and_back() {
    let server = RtspServer::start(RtspOptions {
        keyint: Some(15),
        ..Default::default()
    });
    let d = Daemon::start(&camera(&server.url(), "idle_grace = \"30s\""));
    let pid = d.child.id();
    // A wall tile: a snapshot a second.
    snapshot_age(&d).await;
    let c = d
        .wait_for("cam", LIVE_WAIT, |c| c["keyframe_interval_ms"].as_u64().is_some())
        .await;
    let before = c["frames_decoded"].as_u64().unwrap();
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    for _ in 0..6 {
        tick.tick().await;
        let age = snapshot_age(&d).await;
        assert!(
            age < 3.0,
            "a snapshot {age:.2} s old from a 1 s keyframe interval"
        );
    }
    let c = d.camera("cam").await;
    assert_eq!(c["decoder"], "keyframes", "{c}");
    let decoded = c["frames_decoded"].as_u64().unwrap() - before;
    let keyframes = started.elapsed().as_secs_f64().ceil() as u64 + 1;
    assert!(
        decoded <= keyframes,
        "{decoded} pictures decoded for {keyframes} keyframes: {c}"
    );
    assert!(c["frames_encoded"].as_u64().unwrap() <= c["frames_decoded"].as_u64().unwrap() + 1);

    // A full-rate viewer: its first frame at once, then every picture (15 fps).
    let mut viewer = open_stream(&d, "cam").await;
    live_frame(&mut viewer).await;
    let c = d
        .wait_for("cam", LIVE_WAIT, |c| {
            c["decoder"] == "full" && c["measured_fps"].as_f64().unwrap_or(0.0) >= 10.0
        })
        .await;
    assert!(c["frames_encoded"].as_u64().unwrap() > 0);
    let decoder = decoders(pid);
    assert_eq!(decoder.len(), 1, "one decoder");
    // It leaves: back to keyframes (snapshots keep coming), with the same decoder.
    drop(viewer);
    d.wait_for("cam", LIVE_WAIT, |c| c["decoder"] == "keyframes")
        .await;
    snapshot_age(&d).await;
    // Across every switch: one camera connection, one decoder.
    let c = d.camera("cam").await;
    assert_eq!(c["upstream_opens"], 1, "{c}");
    assert_eq!(c["decoder_starts"], 1, "{c}");
    assert_eq!(server.clients.load(SeqCst), 1, "the RTSP server saw one client");
    assert_eq!(decoders(pid), decoder);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_above_one_per_keyframe_interval_decodes_everything_and_encodes_that_rate() {
    // A keyframe every 3 s: one frame a second needs every picture decoded.
    let server = RtspServer::start(RtspOptions {
        keyint: Some(45),
        ..Default::default()
    });
    let d = Daemon::start(&camera(&server.url(), ""));
    let pid = d.child.id();
    let mut viewer = Stream::open(
        d.main,
        "GET /cameras/cam/stream?fps=1 HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .await;
    live_frame(&mut viewer).await;
    let c = d
        .wait_for("cam", LIVE_WAIT, |c| {
            c["keyframe_interval_ms"].as_u64().is_some_and(|ms| ms > 2000) && c["decoder"] == "full"
        })
        .await;
    let decoder = decoders(pid);
    assert_eq!(decoder.len(), 1, "{c}");
    assert_eq!(c["decoded_by"], "helper", "the shared decoder: {c}");
    assert!(ffmpeg_children(pid, "-i pipe:0").is_empty(), "no decoder child");
    // Every picture decoded, about one a second encoded.
    let (decoded0, encoded0) = (
        c["frames_decoded"].as_u64().unwrap(),
        c["frames_encoded"].as_u64().unwrap(),
    );
    let started = Instant::now();
    let c = d
        .wait_for("cam", LIVE_WAIT, |c| {
            c["frames_decoded"].as_u64().unwrap() >= decoded0 + 45
        })
        .await;
    let encoded = c["frames_encoded"].as_u64().unwrap() - encoded0;
    let seconds = started.elapsed().as_secs_f64();
    assert!(
        (encoded as f64) <= seconds * 1.5 + 2.0,
        "{encoded} JPEGs in {seconds:.1} s at ?fps=1"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_children_recover_without_orphans() {
    let server = RtspServer::start(RtspOptions::default());
    // An ffmpeg ingest, to kill it too.
    let d = Daemon::start(&camera(&server.url(), common::FFMPEG_INGEST));
    let pid = d.child.id();
    let mut viewer = open_stream(&d, "cam").await;
    live_frame(&mut viewer).await;
    let ingest = ffmpeg_children(pid, "/cam");
    let decoder = decoders(pid);
    assert_eq!((ingest.len(), decoder.len()), (1, 1));

    // The decoder dies: a new one, the same camera connection, the viewer stays.
    unsafe { libc::kill(decoder[0] as i32, libc::SIGKILL) };
    eventually(LIVE_WAIT, "old decoder reaped, a new one running", || {
        let now = decoders(pid);
        (gone(decoder[0]) && now.len() == 1 && now[0] != decoder[0]).then_some(())
    })
    .await;
    let before = viewer.next_part().await.expect("the viewer stays").seq();
    common::part_where(&mut viewer, LIVE_WAIT, "frames from the new decoder", |p| {
        common::is_live(p) && p.seq() > before
    })
    .await;
    assert_eq!(
        ffmpeg_children(pid, "/cam"),
        ingest,
        "the camera connection was kept"
    );
    assert_eq!(server.clients.load(SeqCst), 1);

    // The camera connection dies: both restart (with backoff), the viewer stays.
    unsafe { libc::kill(ingest[0] as i32, libc::SIGKILL) };
    eventually(LIVE_WAIT, "a new ingest and decoder", || {
        let (i, dec) = (ffmpeg_children(pid, "/cam"), decoders(pid));
        (gone(ingest[0]) && i.len() == 1 && i != ingest && dec.len() == 1).then_some(())
    })
    .await;
    live_frame(&mut viewer).await;
    eventually(LIVE_WAIT, "the camera reconnected once", || {
        (server.clients.load(SeqCst) == 2).then_some(())
    })
    .await;

    // Everyone leaves: after the grace, nothing is left running, nothing unreaped.
    drop(viewer);
    eventually(Duration::from_secs(30), "every child stopped and reaped", || {
        children(pid).is_empty().then_some(())
    })
    .await;
    assert!(!d.log_text().contains("panicked"), "{}", d.log_text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_camera_that_changes_resolution_mid_stream_is_followed() {
    // An H.264 camera over HTTP whose stream switches from 320x240 to 160x120 (new parameter
    // sets at a keyframe), then ends.
    let dir = tempfile::tempdir().unwrap();
    let mut stream = Vec::new();
    for size in ["320x240", "160x120"] {
        let out = dir.path().join(format!("{size}.h264"));
        let made = std::process::Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i"])
            .arg(format!("testsrc2=size={size}:rate=10"))
            .args([
                "-t", "2", "-c:v", "libx264", "-g", "10", "-pix_fmt", "yuv420p", "-f", "h264",
            ])
            .arg(&out)
            .status()
            .unwrap();
        assert!(made.success());
        stream.extend(std::fs::read(&out).unwrap());
    }
    // Some garbage in between (a broken unit): dropped, never a crash.
    stream.splice(
        stream.len() / 2..stream.len() / 2,
        [0u8, 0, 1, 0xff, 0xee, 0, 0, 0, 1],
    );
    let http = common::mjpeg_server::MjpegServer::start_once("video/h264", stream, 320, 240).await;
    let d = Daemon::start_with_log(
        &camera(&format!("http://127.0.0.1:{}/cam.h264", http.port), ""),
        "debug",
    );
    let mut viewer = open_stream(&d, "cam").await;
    let mut sizes = Vec::new();
    let r = tokio::time::timeout(LIVE_WAIT, async {
        while !sizes.contains(&(160, 120)) {
            let p = viewer.next_part().await.expect("stream open");
            if common::is_live(&p) {
                sizes.push(decode_jpeg(&p.jpeg));
            }
        }
    })
    .await;
    assert!(r.is_ok(), "sizes seen: {sizes:?}\n{}", d.log_text());
    d.logged("changed its stream parameters").await;
    assert!(!d.log_text().contains("panicked"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_test_pattern_encodes_only_what_viewers_take() {
    let d = Daemon::start(&config(
        "",
        "[[camera]]\nid = \"cam\"\nsource = \"test:\"\nsize = \"320x240\"\nfps = 20\n",
    ));
    let mut viewer = Stream::open(
        d.main,
        "GET /cameras/cam/stream?fps=2 HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .await;
    for _ in 0..6 {
        live_frame(&mut viewer).await;
    }
    let c = d.camera("cam").await;
    let (encoded, captured) = (
        c["frames_encoded"].as_u64().unwrap(),
        c["frames_captured"].as_u64().unwrap(),
    );
    assert_eq!(encoded, captured, "{c}");
    // Six frames at 2 fps take about 2.5 s: at 20 fps that would be about 50 encodes.
    assert!(
        encoded <= 12,
        "{encoded} frames encoded for six delivered at ?fps=2: {c}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_camera_with_rare_keyframes_is_waited_for_and_measured() {
    // A keyframe every 6 s: the first snapshot waits for one; the interval is measured.
    let server = RtspServer::start(RtspOptions {
        keyint: Some(90),
        ..Default::default()
    });
    let d = Daemon::start(&camera(
        &server.url(),
        "snapshot_timeout = \"30s\"\nidle_grace = \"60s\"",
    ));
    let r = get(d.main, "/cameras/cam/snapshot").await;
    assert_eq!(r.status, 200, "{}", d.log_text());
    assert_eq!(decode_jpeg(&r.body), (320, 240));
    let c = d
        .wait_for("cam", Duration::from_secs(60), |c| {
            c["keyframe_interval_ms"].as_u64().is_some()
        })
        .await;
    let ms = c["keyframe_interval_ms"].as_u64().unwrap();
    assert!(
        (4000..=9000).contains(&ms),
        "measured {ms} ms for a 6 s interval: {c}"
    );
    assert_eq!(c["state"], "live", "{c}");
    assert!(c["last_error"].is_null(), "{c}");
}

/// A decoder that dies after each picture is not restarted at once, forever: restarts of one
/// that died soon after it worked wait a growing pause (1 s, 2 s, 4 s, …), while the camera stays
/// connected. The decoder here is ffmpeg told to stop after one picture (a wrapper as
/// `[ffmpeg] path`, counting its starts).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decoder_dying_after_each_picture_is_restarted_with_a_growing_pause() {
    use std::os::unix::fs::PermissionsExt;
    let server = RtspServer::start(RtspOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let starts = dir.path().join("decoder-starts");
    let wrapper = dir.path().join("ffmpeg");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/bash\nargs=(\"$@\")\nif [[ \" $* \" == *\" pipe:0 \"* ]]; then\n  echo start >> {}\n  \
             last=${{args[-1]}}; unset 'args[-1]'\n  exec ffmpeg \"${{args[@]}}\" -frames:v 1 \"$last\"\nfi\nexec ffmpeg \"$@\"\n",
            starts.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let d = Daemon::start(&config(
        &format!("[ffmpeg]\npath = \"{}\"", wrapper.display()),
        // ffmpeg's decoder, not the shared one: a decoder child of the camera's own.
        &format!(
            "[[camera]]\nid = \"cam\"\nsource = \"{}\"\ndecoder = \"h264\"\n",
            server.url()
        ),
    ));
    let mut viewer = open_stream(&d, "cam").await;
    live_frame(&mut viewer).await;
    let count = || std::fs::read_to_string(&starts).map_or(0, |s| s.lines().count());
    // Wait until a restart waits about 4 s (the third quick death in a row).
    eventually(Duration::from_secs(60), "a 4 s pause before a restart", || {
        d.log_text()
            .lines()
            .filter_map(|l| l.split("restarting it in ").nth(1))
            .filter_map(|rest| rest.split('s').next()?.parse::<f64>().ok())
            .any(|pause| pause >= 3.0)
            .then_some(())
    })
    .await;
    // Restarted at once each time, it would have started hundreds of decoders by now.
    assert!(count() <= 6, "{} decoder starts", count());
    let c = d.camera("cam").await;
    assert_eq!(c["upstream_opens"], 1, "the camera stayed connected: {c}");
    assert_eq!(server.clients.load(SeqCst), 1);
}

/// A consumer of the camera's coded video (what a WebRTC viewer is) keeps the camera connected
/// and starts no decoder: it gets the latest keyframe with its parameter sets, then every access
/// unit as the camera's one connection yields it. A JPEG consumer joining starts the decoder;
/// leaving, it stops it again while the coded video goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coded_video_consumers_keep_the_camera_and_start_no_decoder() {
    use farmcam::config::CameraConfig;
    use farmcam::events::{CameraState, EventBus};
    use farmcam::pump::ConsumerKind;
    use farmcam::registry::Camera;
    use farmcam::source::ffmpeg::{FfmpegInput, FfmpegOptions};
    use farmcam::source::SourceSpec;
    use std::sync::Arc;
    use tokio_util::sync::CancellationToken;
    use tokio_util::task::TaskTracker;

    let server = RtspServer::start(RtspOptions {
        keyint: Some(15),
        ..Default::default()
    });
    let input = FfmpegInput::parse(&server.url()).unwrap().unwrap();
    let stop = CancellationToken::new();
    let cam = Camera::new(
        Arc::new(CameraConfig::new(
            "cam",
            SourceSpec::Ffmpeg(FfmpegOptions::new(input)),
        )),
        Arc::new(EventBus::default()),
        None,
        &stop,
        TaskTracker::new(),
        &farmcam::source::coded::libav::SharedDecoder::new(None),
    );
    let units = cam.units().expect("an ffmpeg camera yields coded video");
    let (none, mut rx) = units.subscribe();
    assert!(none.units.is_empty(), "nothing before the camera opened");
    let _video = cam.subscribe(ConsumerKind::WebRtc);
    // Units arrive, keyframes among them; a new consumer starts at one with parameter sets.
    let mut seen = 0;
    let key = tokio::time::timeout(LIVE_WAIT, async {
        loop {
            let u = rx.recv().await.unwrap();
            seen += 1;
            if u.au.keyframe && u.au.sps.is_some() {
                return u;
            }
        }
    })
    .await
    .expect("a keyframe within the wait");
    assert!(key.au.data.starts_with(&[0, 0, 0, 1]));
    let (start, _) = units.subscribe();
    assert!(start.units[0].au.keyframe && start.units[0].au.sps.is_some());
    common::eventually(LIVE_WAIT, "coded video flowing is live", || {
        (cam.status().state == CameraState::Live).then_some(())
    })
    .await;
    let status = cam.status();
    assert_eq!(
        status.decoder.map(|d| format!("{d:?}")),
        Some("Off".into()),
        "no decoder for coded video"
    );
    assert_eq!(status.frames_decoded, Some(0));
    // A snapshot needs a picture: a decoder runs for it, on the same connection.
    let shot = cam.snapshot(None).await.expect("a snapshot");
    assert!(shot.jpeg.starts_with(b"\xff\xd8"));
    assert_eq!(
        cam.status().upstream_opens,
        1,
        "one camera connection: {seen} units"
    );
    assert_eq!(server.clients.load(SeqCst), 1);
    stop.cancel();
}

/// The largest gap between consecutive frames of a stream (by the frames' capture times), over
/// `frames` live frames.
async fn largest_gap(s: &mut Stream, frames: usize) -> f64 {
    let mut last: Option<f64> = None;
    let mut gap: f64 = 0.0;
    for _ in 0..frames {
        let t = live_frame(s).await.timestamp();
        if let Some(l) = last {
            gap = gap.max(t - l);
        }
        last = Some(t);
    }
    gap
}

/// A `?fps=10` viewer keeps its pictures coming while faster, slower, full-rate and snapshot
/// consumers come and go around it: the decoder is started once for all of it and never waits
/// for a keyframe (a 4 s keyframe interval would show as gaps of seconds).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_never_freezes_while_other_consumers_join_and_leave() {
    let server = RtspServer::start(RtspOptions {
        fps: Some(30),
        keyint: Some(120),
        ..Default::default()
    });
    let d = Daemon::start(&camera(&server.url(), ""));
    let mut viewer = Stream::open(
        d.main,
        "GET /cameras/cam/stream?fps=10 HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .await;
    live_frame(&mut viewer).await;
    let watched = tokio::spawn(async move {
        let gap = largest_gap(&mut viewer, 120).await;
        (gap, viewer)
    });
    let open = |q: &'static str| {
        Stream::open(
            d.main,
            Box::leak(format!("GET /cameras/cam/stream{q} HTTP/1.1\r\nHost: x\r\n\r\n").into_boxed_str()),
        )
    };
    while !watched.is_finished() {
        let mut fast = open("?fps=20").await;
        live_frame(&mut fast).await;
        let mut full = open("").await;
        live_frame(&mut full).await;
        snapshot_age(&d).await;
        drop(fast);
        let mut slow = open("?fps=1").await;
        live_frame(&mut slow).await;
        drop(full);
        snapshot_age(&d).await;
        drop(slow);
    }
    let (gap, _viewer) = watched.await.unwrap();
    let c = d.camera("cam").await;
    // A wait for a keyframe is a gap of up to 4 s, met many times over the loop; a loaded machine
    // may drop a few pictures (a gap of a few of the viewer's 0.1 s intervals), not a second's.
    assert!(
        gap < 1.0,
        "the ?fps=10 viewer waited {gap:.2} s for a picture (keyframes are 4 s apart): {c}"
    );
    assert_eq!(c["decoder_starts"], 1, "{c}");
    assert_eq!(c["upstream_opens"], 1, "{c}");
}

/// Snapshots once a second decode keyframes only (every 4 s here); a viewer joining gets every
/// picture at once, not from the next keyframe: the kept group is replayed into the decoder.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_rate_viewer_joining_a_snapshot_camera_gets_full_rate_at_once() {
    let server = RtspServer::start(RtspOptions {
        keyint: Some(60),
        ..Default::default()
    });
    let d = Daemon::start(&camera(&server.url(), "snapshot_timeout = \"30s\""));
    snapshot_age(&d).await;
    d.wait_for("cam", LIVE_WAIT, |c| {
        c["keyframe_interval_ms"].as_u64().is_some() && c["decoder"] == "keyframes"
    })
    .await;
    for _ in 0..3 {
        // Somewhere in the 4 s group.
        snapshot_age(&d).await;
        let mut viewer = open_stream(&d, "cam").await;
        let first = live_frame(&mut viewer).await.timestamp();
        let age = unix_now() - first;
        let gap = largest_gap(&mut viewer, 15).await;
        let c = d.camera("cam").await;
        // Waiting for the next keyframe would be a gap of up to 4 s (2 s on average, in each
        // of the 3 rounds); a loaded machine may drop a few of the 15 fps, not a second's.
        assert!(gap < 1.0, "{gap:.2} s between pictures after joining: {c}");
        assert!(age < 1.5, "the first picture was {age:.2} s old: {c}");
        drop(viewer);
        d.wait_for("cam", LIVE_WAIT, |c| c["decoder"] == "keyframes")
            .await;
        let c = d.camera("cam").await;
        assert_eq!(c["decoder_starts"], 1, "{c}");
    }
}

/// MQTT snapshots every 10 s with the default `idle_grace` (5 s): the H.264 camera stays
/// connected between them (its video is only copied meanwhile), not reconnected each time, and
/// status says why it is open with nobody attached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_periodic_consumer_keeps_a_cheap_camera_connected() {
    use common::mqtt::{Mosquitto, Sub};
    let server = RtspServer::start(RtspOptions::default());
    let broker = Mosquitto::start("");
    let mut sub = Sub::connect(broker.port, &["farmcam/testnode/cam/snapshot"], None).await;
    let d = Daemon::start(&config(
        "",
        &format!(
            "[mqtt]\nurl = \"{}\"\nnode_id = \"testnode\"\nsnapshot_interval = \"10s\"\n\
             [[camera]]\nid = \"cam\"\nsource = \"{}\"\n",
            broker.url(),
            server.url()
        ),
    ));
    let snapshot = |m: &common::mqtt::Msg| m.topic == "farmcam/testnode/cam/snapshot";
    sub.wait_for(LIVE_WAIT, "the first snapshot", snapshot).await;
    let c = d
        .wait_for("cam", LIVE_WAIT, |c| {
            c["consumers"] == 0 && !c["kept_for"].is_null()
        })
        .await;
    assert_eq!(c["kept_for"], "mqtt every 10s", "{c}");
    assert_eq!(c["state"], "live", "{c}");
    // Half a minute of snapshots: three intervals, each longer than the grace.
    for n in 0..3 {
        sub.wait_for(LIVE_WAIT, &format!("snapshot {}", n + 2), snapshot)
            .await;
    }
    let c = d.camera("cam").await;
    assert_eq!(c["upstream_opens"], 1, "{c}");
    assert_eq!(server.clients.load(SeqCst), 1, "the RTSP server saw one client");
}

/// Poll snapshots as Mainsail's adaptive mode does (`?bypassCache=N`, 10 a second, one after
/// the other) `n` times; the sequence numbers got.
async fn poll_snapshots(d: &Daemon, n: usize) -> Vec<u64> {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seqs = Vec::new();
    for i in 0..n {
        tick.tick().await;
        let r = get(d.main, &format!("/cameras/cam/snapshot?bypassCache={i}")).await;
        assert_eq!(r.status, 200, "{}", d.log_text());
        seqs.push(r.header("x-sequence").unwrap().parse().unwrap());
    }
    seqs
}

/// A client polling snapshots 10 times a second gets a new picture each time from a 30 fps
/// camera (not the cached one again), H.264 included: its polling is a rate demand, which ends
/// when the polling stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_polling_gets_a_new_picture_per_request() {
    let server = RtspServer::start(RtspOptions {
        fps: Some(30),
        ..Default::default()
    });
    for source in [server.url(), "test:".to_string()] {
        let d = Daemon::start(&camera(&source, "fps = 30\nsize = \"320x240\""));
        poll_snapshots(&d, 5).await;
        let seqs = poll_snapshots(&d, 30).await;
        let mut distinct = seqs.clone();
        distinct.dedup();
        let c = d.camera("cam").await;
        assert!(
            distinct.len() >= 27,
            "{source}: {} distinct pictures for 30 requests at 10/s: {seqs:?} {c}",
            distinct.len()
        );
        if source.starts_with("rtsp") {
            assert_eq!(c["decoder"], "full", "polling is a rate demand: {c}");
            // It stops with the polling (snapshots keep the keyframe decoder).
            d.wait_for("cam", LIVE_WAIT, |c| c["decoder"] == "keyframes")
                .await;
        }
    }
}

/// Two wall pages behind one address (two tabs, or two people behind the MainsailOS proxy), each
/// asking for a picture a second and saying so (`every=1000`, as farmcam's wall does), cost what
/// one does: the camera decodes keyframes only. The same two pages saying nothing look like one
/// client polling twice a second, which decodes every picture (today's rule for unknown clients,
/// shown first so the test can tell the two apart).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_wall_pages_behind_one_address_decode_keyframes_only() {
    let server = RtspServer::start(RtspOptions {
        keyint: Some(15),
        ..Default::default()
    });
    let d = Daemon::start(&camera(&server.url(), "idle_grace = \"30s\""));
    let main = d.main;
    // Two pages, half a second apart, each on a once-a-second cadence (the clients under test,
    // as a wall page's timer asks); after each answer a page reads the camera's decoder mode.
    let pages = |query: &'static str, rounds: u32| async move {
        let page = |offset: u64| async move {
            let start = tokio::time::Instant::now() + Duration::from_millis(offset);
            let mut cadence = tokio::time::interval_at(start, Duration::from_secs(1));
            let mut modes = Vec::new();
            for _ in 0..rounds {
                cadence.tick().await;
                let r = get(main, &format!("/cameras/cam/snapshot?width=160{query}")).await;
                assert_eq!(r.status, 200);
                let cams: serde_json::Value =
                    serde_json::from_slice(&get(main, "/api/cameras").await.body).unwrap();
                modes.push(cams[0]["decoder"].to_string());
            }
            modes
        };
        let (a, b) = futures_util::future::join(page(0), page(500)).await;
        a.into_iter()
            .chain(b)
            .collect::<std::collections::BTreeSet<String>>()
    };
    // Saying nothing: a poller at 2 Hz, above the keyframe rate.
    let polling = tokio::spawn(pages("", 30));
    d.wait_for("cam", LIVE_WAIT, |c| c["decoder"] == "full").await;
    polling.abort();
    d.wait_for("cam", LIVE_WAIT, |c| c["decoder"] != "full").await;
    // Saying how often: keyframes only, all along.
    let seen = pages("&every=1000", 8).await;
    assert!(
        !seen.contains("\"full\""),
        "decoder modes while the walls asked: {seen:?}"
    );
    assert!(seen.contains("\"keyframes\""), "{seen:?}");
}

/// Two browsers behind one address (two people behind the MainsailOS proxy), each polling a
/// snapshot once a second and keeping the cookie farmcam gives it: told apart by their cookies,
/// neither is polling, and the camera decodes keyframes only. A client that keeps no cookie
/// (curl, a script) is still one address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_browsers_behind_one_address_are_told_apart_by_their_cookies() {
    let server = RtspServer::start(RtspOptions {
        keyint: Some(15),
        ..Default::default()
    });
    let d = Daemon::start(&camera(&server.url(), "idle_grace = \"30s\""));
    let main = d.main;
    // A browser: its first answer gives it a cookie, which it sends from then on.
    let browser = |offset: u64, rounds: u32| async move {
        let start = tokio::time::Instant::now() + Duration::from_millis(offset);
        let mut cadence = tokio::time::interval_at(start, Duration::from_secs(1));
        let mut cookie: Option<String> = None;
        let mut modes = std::collections::BTreeSet::new();
        for round in 0..rounds {
            cadence.tick().await;
            let jar = cookie
                .as_ref()
                .map(|c| format!("Cookie: theme=dark; {c}\r\n"))
                .unwrap_or_default();
            let r = common::request(
                main,
                &format!("GET /cameras/cam/snapshot?width=160&bypassCache={offset} HTTP/1.1\r\nHost: x\r\n{jar}Connection: close\r\n\r\n"),
            )
            .await;
            assert_eq!(r.status, 200);
            match (r.header("set-cookie"), &cookie) {
                (Some(set), None) => {
                    assert!(
                        set.starts_with("farmcam_client=") && set.contains("HttpOnly"),
                        "{set}"
                    );
                    cookie = Some(set.split(';').next().unwrap().to_string());
                }
                (set, Some(_)) => assert_eq!(set, None, "a browser with its cookie gets no new one"),
                (None, None) => panic!("a polling-capable answer without a cookie"),
            }
            // The first requests (no cookie yet) are one address polling for a moment (its
            // demand lingers up to 3 of its intervals); from the fifth round on, two browsers.
            if round >= 4 {
                let cams: serde_json::Value =
                    serde_json::from_slice(&get(main, "/api/cameras").await.body).unwrap();
                modes.insert(cams[0]["decoder"].to_string());
            }
        }
        modes
    };
    let (a, b) = futures_util::future::join(browser(0, 10), browser(500, 10)).await;
    let seen: std::collections::BTreeSet<String> = a.into_iter().chain(b).collect();
    assert_eq!(
        seen.into_iter().collect::<Vec<_>>(),
        ["\"keyframes\""],
        "decoder modes while two browsers polled once a second each"
    );
}

/// Cameras decoded keyframes only share the helper's spare decoders (a keyframe at a time, each
/// with its parameter sets) instead of holding one each: every camera's snapshots are still its
/// own pictures, of its own size and codec, while the three are decoded side by side; a
/// full-rate viewer gives its camera a decoder of its own, and when it leaves the camera goes
/// back to keyframes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyframe_only_cameras_share_decoders_and_each_gets_its_own_pictures() {
    let servers = [
        ("small", (320, 240), RtspOptions::default()),
        (
            "wide",
            (480, 270),
            RtspOptions {
                size: Some("480x270".into()),
                ..Default::default()
            },
        ),
        (
            "hevc",
            (352, 288),
            RtspOptions {
                size: Some("352x288".into()),
                h265: true,
                ..Default::default()
            },
        ),
    ]
    .map(|(id, size, options)| (id, size, RtspServer::start(options)));
    let cameras: String = servers
        .iter()
        .map(|(id, _, s)| {
            format!(
                "[[camera]]\nid = \"{id}\"\nsource = \"{}\"\nidle_grace = \"30s\"\n",
                s.url()
            )
        })
        .collect();
    let d = Daemon::start(&config("", &cameras));
    // Rounds of one new snapshot of each camera at once, each checked as that camera's picture.
    type Camera = (&'static str, (u16, u16), RtspServer);
    async fn fresh(main: std::net::SocketAddr, id: &'static str, size: (u16, u16), after: f64) -> f64 {
        eventually_async(LIVE_WAIT, &format!("a new picture of {id}"), || async move {
            let r = get(main, &format!("/cameras/{id}/snapshot?every=1000")).await;
            // Until its first picture, a camera still connecting answers 503.
            if r.status == 503 && after == 0.0 {
                return None;
            }
            assert_eq!(r.status, 200, "{id}");
            assert_eq!(decode_jpeg(&r.body), size, "a snapshot of {id}");
            let taken: f64 = r.header("x-timestamp").unwrap().parse().unwrap();
            (taken > after).then_some(taken)
        })
        .await
    }
    async fn rounds(main: std::net::SocketAddr, cameras: &[Camera; 3], taken: &mut [f64; 3], n: usize) {
        for _ in 0..n {
            let [a, b, c] = cameras;
            let new = futures_util::join!(
                fresh(main, a.0, a.1, taken[0]),
                fresh(main, b.0, b.1, taken[1]),
                fresh(main, c.0, c.1, taken[2])
            );
            *taken = [new.0, new.1, new.2];
        }
    }
    let mut taken = [0.0; 3];
    rounds(d.main, &servers, &mut taken, 4).await;
    for (id, _, _) in &servers {
        let c = d.camera(id).await;
        assert_eq!(
            (c["decoder"].as_str(), c["decoded_by"].as_str()),
            (Some("keyframes"), Some("helper")),
            "{c}"
        );
    }
    // A full-rate viewer of one camera: every picture, of its size, then keyframes again.
    let mut viewer = open_stream(&d, "wide").await;
    for _ in 0..20 {
        assert_eq!(decode_jpeg(&live_frame(&mut viewer).await.jpeg), (480, 270));
    }
    assert_eq!(d.camera("wide").await["decoder"], "full");
    rounds(d.main, &servers, &mut taken, 2).await;
    drop(viewer);
    d.wait_for("wide", LIVE_WAIT, |c| c["decoder"] == "keyframes")
        .await;
    rounds(d.main, &servers, &mut taken, 3).await;
    for (id, _, _) in &servers {
        // No decoder failed or restarted on the way.
        assert_eq!(d.camera(id).await["decoder_starts"], 1, "{id}");
    }
}
