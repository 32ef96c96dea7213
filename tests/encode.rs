//! Live H.264 of cameras that send pictures (issue 41): a `test:` camera with the software
//! encoder plays over WebRTC (aiortc, both signalling forms) and RTSP (ffprobe over TCP and
//! UDP); the encoder runs only while such a viewer watches (never for MJPEG viewers); an encoder
//! that cannot open is said once and the camera stays MJPEG; an encoder killed mid-stream is
//! replaced and the viewer plays on.

mod common;

use std::time::{Duration, Instant};

use common::aiortc::Aiortc;
use common::proc::decoder_helpers;
use common::rtsp::{decode, gst_plays, packet_times, probe};
use common::{config, live_frame, open_stream, Daemon};

const WAIT: Duration = Duration::from_secs(45);

fn farm(cameras: &str) -> Daemon {
    Daemon::start(&config(
        "",
        &format!(
            "[webrtc]\nlisten = \"127.0.0.1:0\"\n[rtsp]\nlisten = \"127.0.0.1:0\"\nudp_port = 0\n{cameras}"
        ),
    ))
}

const ENCODED: &str = "[[camera]]\nid = \"cam\"\nsource = \"test:\"\nsize = \"640x360\"\nfps = 30\n\
                       h264_encoder = \"software\"\nidle_grace = \"2s\"\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_test_camera_with_the_software_encoder_plays_over_webrtc_and_rtsp() {
    let d = farm(ENCODED);
    let cam = d.camera("cam").await;
    assert!(cam["encoder"].is_null(), "nobody watches: no encoder: {cam}");
    assert!(
        decoder_helpers(d.child.id()).is_empty(),
        "no helper before a viewer"
    );
    let base = format!("http://{}/cameras/cam", d.main);
    // The first viewer of an idle camera: a picture within a second of asking.
    let whep = Aiortc::start("--whep", &format!("{base}/whep"));
    whep.wait_frames_of(1, 640, 360).await;
    let first = whep.said()["first_frame_ms"].as_f64().expect("first frame timed");
    assert!(first <= 1000.0, "first frame after {first} ms");
    let cam = d.wait_for("cam", WAIT, |c| c["encoder"] == "libx264").await;
    assert_eq!(cam["viewers_by_kind"]["webrtc"], 1, "{cam}");
    // The camera's rate: 125 frames decoded, at 25 per second or more of the stream's own clock
    // (the timestamps farmcam gave them as it sent them; how fast aiortc decodes does not count).
    let jpegs0 = cam["frames_encoded"]
        .as_u64()
        .expect("the test pattern counts its JPEGs");
    let from = whep.said();
    let n0 = from["frames"].as_u64().unwrap_or(0);
    let to = whep.wait_frames_of(n0 + 125, 640, 360).await;
    let played = to["frames"].as_u64().unwrap() - n0;
    let pts = |v: &serde_json::Value| v["pts"].as_u64().expect("aiortc gives the frame's timestamp") as u32;
    let span = f64::from(pts(&to).wrapping_sub(pts(&from))) / 90_000.0;
    let fps = played as f64 / span;
    assert!(
        fps >= 25.0,
        "{played} frames over {span:.2} s of the stream's clock: {fps:.1} a second"
    );
    // The encoder takes the pattern's raw pictures: no JPEG is made for it (only the pump's
    // keep-alive frames, one every few seconds).
    let jpegs = d.camera("cam").await["frames_encoded"].as_u64().unwrap() - jpegs0;
    assert!(
        jpegs * 10 <= played as u64,
        "{jpegs} JPEGs made while {played} pictures played"
    );
    // camera-streamer's form (Mainsail's and Fluidd's webrtc-camerastreamer): a keyframe at
    // once for the joining viewer, the first one plays on.
    let cs = Aiortc::start("--camera-streamer", &format!("{base}/webrtc"));
    cs.wait_frames_of(30, 640, 360).await;
    // RTSP out, both transports, from the same encoder.
    let url = d.rtsp_url("cam");
    for transport in ["tcp", "udp"] {
        assert_eq!(probe(&url, transport), "h264,640,360,30/1", "over {transport}");
        let (times, complaints) = decode(&url, transport, 30);
        assert!(times.len() >= 29, "{transport}: {times:?} {complaints}");
        assert!(!complaints.contains("error"), "{transport}: {complaints}");
        // GStreamer's rtspsrc (Home Assistant's go2rtc and Frigate use the same RTP path).
        let played = gst_plays(&url, transport);
        assert!(
            played.status.success(),
            "rtspsrc over {transport}: {}",
            String::from_utf8_lossy(&played.stderr)
        );
    }
    let cam = d.camera("cam").await;
    assert_eq!(cam["encoder"], "libx264", "{cam}");
    assert_eq!(
        decoder_helpers(d.child.id()).len(),
        1,
        "one helper encodes for every viewer"
    );
    // Everyone leaves: the encoder stops, then the helper.
    drop((whep, cs));
    d.wait_for("cam", WAIT, |c| c["encoder"].is_null()).await;
    common::eventually(WAIT, "the helper gone", || {
        decoder_helpers(d.child.id()).is_empty().then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mjpeg_viewer_alone_starts_no_encoder() {
    let d = farm(ENCODED);
    let mut s = open_stream(&d, "cam").await;
    for _ in 0..30 {
        live_frame(&mut s).await;
    }
    let snap = common::get(d.main, "/cameras/cam/snapshot").await;
    assert_eq!(snap.status, 200);
    let cam = d.camera("cam").await;
    assert!(cam["encoder"].is_null(), "{cam}");
    assert_eq!(cam["viewers_by_kind"]["mjpeg"], 1, "{cam}");
    assert!(
        decoder_helpers(d.child.id()).is_empty(),
        "no encoder process for MJPEG viewers"
    );
    // It says it has live H.264 (for Mainsail's WebRTC mode) all the same.
    let all = d.cameras_json().await;
    assert!(all[0]["webrtc_url"].is_string(), "{all}");
}

/// An encoder libavcodec has but cannot open here (NVENC without an NVIDIA GPU): the RTSP and
/// WebRTC clients are told why at once, the log says it once, and the MJPEG stream goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encoder_that_cannot_open_is_said_once_and_mjpeg_goes_on() {
    let d = farm(&ENCODED.replace("\"software\"", "\"h264_nvenc\""));
    let mut s = open_stream(&d, "cam").await;
    live_frame(&mut s).await;
    let url = d.rtsp_url("cam");
    let asked = Instant::now();
    let out = std::process::Command::new("ffprobe")
        .args(["-v", "error", "-rtsp_transport", "tcp", &url])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{said}");
    assert!(
        asked.elapsed() < Duration::from_secs(15),
        "refused without waiting for a keyframe: {:?}",
        asked.elapsed()
    );
    let cam = d.wait_for("cam", WAIT, |c| c["encoder_error"].is_string()).await;
    let why = cam["encoder_error"].as_str().unwrap();
    assert!(why.contains("h264_nvenc"), "{cam}");
    assert!(cam["encoder"].is_null(), "{cam}");
    // Asked again over WebRTC: refused with the reason, no new attempt.
    let r = common::request(
        d.main,
        "POST /cameras/cam/webrtc HTTP/1.1\r\nHost: x\r\nContent-Length: 18\r\n\r\n{\"type\":\"request\"}",
    )
    .await;
    let body = String::from_utf8_lossy(&r.body);
    assert!(r.status >= 400, "{} {body}", r.status);
    assert!(
        body.contains("no live H.264") || body.contains("does not send H.264"),
        "{body}"
    );
    d.logged("no live H.264").await;
    let said = d.log_text().matches("no live H.264").count();
    assert_eq!(said, 1, "said once: {}", d.log_text());
    // The MJPEG viewer never noticed.
    for _ in 0..10 {
        live_frame(&mut s).await;
    }
    let all = d.cameras_json().await;
    assert!(
        all[0]["webrtc_url"].is_null(),
        "no WebRTC offered any more: {all}"
    );
}

/// The helper killed under a viewer (a crash in libavcodec): a new encoder starts, the viewer
/// plays on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encoder_killed_mid_stream_is_replaced_and_the_viewer_plays_on() {
    let d = farm(ENCODED);
    let v = Aiortc::start("--whep", &format!("http://{}/cameras/cam/whep", d.main));
    v.wait_frames_of(30, 640, 360).await;
    let helpers = decoder_helpers(d.child.id());
    assert_eq!(helpers.len(), 1);
    // SAFETY: a signal to farmcam's own child.
    unsafe { libc::kill(helpers[0] as i32, libc::SIGKILL) };
    let before = v.frames();
    v.wait_frames_of(before + 60, 640, 360).await;
    let now = decoder_helpers(d.child.id());
    assert!(
        now.len() == 1 && now[0] != helpers[0],
        "a new helper: {helpers:?} → {now:?}"
    );
    d.logged("starting another").await;
}

/// An HTTP MJPEG camera (mjpg-streamer, read through ffmpeg) with the software encoder: its
/// JPEGs are encoded while an RTSP client watches, at the camera's size.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_mjpeg_camera_with_the_software_encoder_plays_over_rtsp() {
    let http = common::mjpeg_server::MjpegServer::start(256, 192).await;
    let d = farm(&format!(
        "[[camera]]\nid = \"k1\"\nsource = \"{}\"\nh264_encoder = \"software\"\nidle_grace = \"2s\"\n",
        http.url()
    ));
    let url = d.rtsp_url("k1");
    let probed = probe(&url, "tcp");
    assert!(probed.starts_with("h264,256,192,"), "{probed}");
    let (times, complaints) = decode(&url, "tcp", 20);
    assert!(times.len() >= 19, "{times:?} {complaints}");
    assert!(!complaints.contains("error"), "{complaints}");
    // Timed at the camera's own 10 fps (its pictures as they came), not the nominal 30: the
    // median step between packets' RTP times is about 100 ms.
    let times = packet_times(&url, "tcp", 20);
    let mut steps: Vec<f64> = times.windows(2).map(|w| w[1] - w[0]).collect();
    steps.sort_by(f64::total_cmp);
    let median = steps[steps.len() / 2];
    assert!(
        (0.07..=0.13).contains(&median),
        "median step {median} s: {times:?}"
    );
    assert_eq!(
        http.accepted.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "one connection to the camera"
    );
    d.wait_for("k1", WAIT, |c| c["encoder"].is_null()).await;
}

/// Mainsail's and Fluidd's `webrtc-camerastreamer` player in the real browser: the encoded test
/// camera plays in Chromium at its size.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_encoded_camera_plays_in_chromium_with_camera_streamers_signalling() {
    let d = farm(ENCODED);
    let browser = common::webdriver::Browser::start(800, 600).await;
    browser.goto(&format!("http://{}/api/cameras", d.main)).await;
    let started = browser
        .eval(
            "return (async () => {
                const r = await fetch('/cameras/cam/webrtc', { method: 'POST',
                    body: JSON.stringify({ type: 'request', iceServers: [] }) });
                const offer = await r.json();
                const pc = new RTCPeerConnection();
                window.pc = pc;
                await pc.setRemoteDescription({ type: 'offer', sdp: offer.sdp });
                const answer = await pc.createAnswer();
                await pc.setLocalDescription(answer);
                const a = await fetch('/cameras/cam/webrtc', { method: 'POST',
                    body: JSON.stringify({ type: 'answer', id: offer.id, sdp: answer.sdp }) });
                return { offered: r.status, answered: a.status };
            })()",
        )
        .await;
    assert_eq!(
        (&started["offered"], &started["answered"]),
        (&200.into(), &200.into()),
        "{started}"
    );
    let stats = browser
        .wait_for(
            WAIT,
            "frames decoded in Chromium",
            "return (async () => {
                const s = await window.pc.getStats();
                let v = {};
                s.forEach(r => { if (r.type === 'inbound-rtp' && r.kind === 'video')
                    v = { decoded: r.framesDecoded || 0, width: r.frameWidth, height: r.frameHeight }; });
                return v;
            })()",
            |v| v["decoded"].as_u64() > Some(30),
        )
        .await;
    assert_eq!(
        (&stats["width"], &stats["height"]),
        (&640.into(), &360.into()),
        "{stats}"
    );
    d.wait_for("cam", WAIT, |c| c["encoder"] == "libx264").await;
    browser.quit().await;
    d.wait_for("cam", WAIT, |c| c["encoder"].is_null()).await;
}
