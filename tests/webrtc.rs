//! Live H.264 over WebRTC in the real browser (Debian's Chromium): both signalling forms as the
//! players send them, frames decoded at the camera's size, one camera connection, no decoder for
//! a WebRTC-only audience, and sessions that end leave nothing behind.

mod common;

use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

use common::rtsp::{RtspOptions, RtspServer};
use common::webdriver::Browser;
use common::{config, Daemon};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(45);

fn farm(url: &str) -> Daemon {
    Daemon::start(&config(
        "",
        &format!("[webrtc]\nlisten = \"127.0.0.1:0\"\n[[camera]]\nid = \"cam\"\nsource = \"{url}\"\nidle_grace = \"2s\"\n"),
    ))
}

/// What `getStats()` says of the received video.
const STATS: &str = "return (async () => {
    const s = await window.pc.getStats();
    let v = null;
    s.forEach(r => { if (r.type === 'inbound-rtp' && r.kind === 'video')
        v = { decoded: r.framesDecoded || 0, width: r.frameWidth || 0, height: r.frameHeight || 0,
              bytes: r.bytesReceived || 0 }; });
    return { video: v, state: window.pc.connectionState };
})()";

async fn frames_flow(browser: &Browser, what: &str) -> Value {
    browser
        .wait_for(WAIT, what, STATS, |v| {
            v["video"]["decoded"].as_u64() > Some(10) && v["video"]["width"] == 320
        })
        .await
}

/// camera-streamer's form, as Mainsail sends it (no Content-Type): the server offers, the
/// browser answers; the picture is the camera's own H.264 (320x240, High profile, which this
/// Chromium does not list among the profiles it offers), not a transcode.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn camera_streamer_signalling_plays_in_chromium() {
    let server = RtspServer::start(RtspOptions {
        profile: Some("high".into()),
        ..Default::default()
    });
    let probe = std::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-rtsp_transport",
            "tcp",
            "-select_streams",
            "v",
            "-show_entries",
            "stream=profile",
            "-of",
            "csv=p=0",
        ])
        .arg(server.url())
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&probe.stdout).trim(),
        "High",
        "the camera sends High profile"
    );
    let d = farm(&server.url());
    let browser = Browser::start(800, 600).await;
    browser.goto(&format!("http://{}/api/cameras", d.main)).await;
    let started = browser
        .eval(
            "return (async () => {
                const pc = new RTCPeerConnection();
                window.pc = pc;
                const r = await fetch('/cameras/cam/webrtc', { method: 'POST',
                    body: JSON.stringify({ type: 'request', iceServers: [], keepAlive: true }) });
                const offer = await r.json();
                await pc.setRemoteDescription({ type: 'offer', sdp: offer.sdp });
                const answer = await pc.createAnswer();
                await pc.setLocalDescription(answer);
                const a = await fetch('/cameras/cam/webrtc', { method: 'POST',
                    headers: { 'Content-Type': 'application/json' },
                    body: JSON.stringify({ type: 'answer', id: offer.id, sdp: answer.sdp }) });
                return { status: r.status, type: r.headers.get('content-type'), id: offer.id,
                         answered: a.status, answerType: a.headers.get('content-type'),
                         body: await a.text() };
            })()",
        )
        .await;
    assert_eq!(started["status"], 200, "{started}");
    assert_eq!(started["type"], "application/json");
    assert_eq!(
        (started["answered"].as_u64(), started["body"].as_str()),
        (Some(200), Some("{}"))
    );
    let stats = frames_flow(&browser, "frames decoded over WebRTC").await;
    assert_eq!(stats["video"]["height"], 240, "{stats}");
    // Watched only over WebRTC: live, one viewer of that kind, and still no decoder.
    let cam = d
        .wait_for("cam", WAIT, |c| c["webrtc_bytes_sent"].as_u64() > Some(5_000))
        .await;
    assert_eq!(cam["decoder"], "off", "no decoder for a WebRTC viewer: {cam}");
    assert_eq!(cam["state"], "live", "{cam}");
    assert_eq!(
        (cam["viewers"].as_u64(), &cam["viewers_by_kind"]),
        (Some(1), &serde_json::json!({ "mjpeg": 0, "webrtc": 1 })),
        "{cam}"
    );
    let m = String::from_utf8(common::get(d.main, "/metrics").await.body).unwrap();
    assert!(
        m.contains("farmcam_camera_viewers_by_kind{camera=\"cam\",kind=\"webrtc\"} 1"),
        "{m}"
    );
    assert_eq!(
        server.clients.load(SeqCst),
        2,
        "one camera connection besides ffprobe's"
    );
    let s = &cam["webrtc_sessions"][0];
    assert_eq!(s["id"], started["id"], "{cam}");
    assert!(
        s["connected"] == true && s["bytes_sent"].as_u64() > Some(5_000),
        "{cam}"
    );
    assert!(
        s["peer"].as_str().is_some_and(|p| p.starts_with("127.0.0.1:")),
        "{cam}"
    );
    browser.quit().await;
}

/// WHEP as Fluidd sends it (video recvonly, application/sdp): `201` with the answer, a relative
/// `Location` that resolves under the camera's URL, and `DELETE` ending the session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whep_signalling_plays_and_ends_in_chromium() {
    let server = RtspServer::start(RtspOptions::default());
    let d = farm(&server.url());
    let browser = Browser::start(800, 600).await;
    browser.goto(&format!("http://{}/api/cameras", d.main)).await;
    let started = browser
        .eval(
            "return (async () => {
                const pc = new RTCPeerConnection();
                window.pc = pc;
                pc.addTransceiver('video', { direction: 'recvonly' });
                await pc.setLocalDescription(await pc.createOffer());
                const base = new URL('/cameras/cam/', location.href);
                const r = await fetch(new URL('whep', base), { method: 'POST',
                    headers: { 'Content-Type': 'application/sdp' }, body: pc.localDescription.sdp });
                const sdp = await r.text();
                if (r.status === 201) await pc.setRemoteDescription({ type: 'answer', sdp });
                window.whep = new URL(r.headers.get('location'), base).href;
                return { status: r.status, type: r.headers.get('content-type'),
                         location: r.headers.get('location'), etag: r.headers.get('etag'),
                         resolved: window.whep };
            })()",
        )
        .await;
    assert_eq!(started["status"], 201, "{started}");
    assert_eq!(started["type"], "application/sdp");
    let location = started["location"].as_str().unwrap();
    assert!(location.starts_with("whep/"), "relative: {started}");
    assert!(started["etag"].as_str().is_some_and(|e| e.len() > 2));
    assert!(started["resolved"]
        .as_str()
        .unwrap()
        .ends_with(&format!("/cameras/cam/{location}")));
    frames_flow(&browser, "frames decoded over WHEP").await;
    // Offers farmcam cannot serve without transcoding: refused, saying why.
    let refused = browser
        .eval(
            "return (async () => {
                const post = async pc => {
                    await pc.setLocalDescription(await pc.createOffer());
                    const r = await fetch('/cameras/cam/whep', { method: 'POST',
                        headers: { 'Content-Type': 'application/sdp' }, body: pc.localDescription.sdp });
                    pc.close();
                    return [r.status, (await r.json()).error];
                };
                const audio = new RTCPeerConnection();
                audio.addTransceiver('audio', { direction: 'recvonly' });
                const vp8 = new RTCPeerConnection();
                const t = vp8.addTransceiver('video', { direction: 'recvonly' });
                t.setCodecPreferences(RTCRtpReceiver.getCapabilities('video').codecs
                    .filter(c => c.mimeType === 'video/VP8'));
                return { audio: await post(audio), vp8: await post(vp8) };
            })()",
        )
        .await;
    assert_eq!(refused["audio"][0], 400, "{refused}");
    assert!(
        refused["audio"][1].as_str().unwrap().contains("no video"),
        "{refused}"
    );
    assert_eq!(refused["vp8"][0], 400, "{refused}");
    assert!(
        refused["vp8"][1].as_str().unwrap().contains("no H.264"),
        "{refused}"
    );
    assert_eq!(
        d.camera("cam").await["webrtc_sessions"].as_array().map(Vec::len),
        Some(1),
        "refused offers leave no session"
    );
    let ended = browser
        .eval("return (async () => (await fetch(window.whep, { method: 'DELETE' })).status)()")
        .await;
    assert_eq!(ended, 200);
    d.wait_for("cam", WAIT, |c| {
        c["webrtc_sessions"].as_array().is_some_and(|s| s.is_empty())
    })
    .await;
    browser.quit().await;
}

/// Signalling mistakes get a clear 4xx and leave nothing behind; the limits answer 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_signalling_is_refused_clearly() {
    let server = RtspServer::start(RtspOptions::default());
    let d = Daemon::start(&config(
        "",
        &format!(
            "[webrtc]\nlisten = \"127.0.0.1:0\"\nmax_sessions_per_client = 1\n\
             [[camera]]\nid = \"cam\"\nsource = \"{}\"\n\
             [[camera]]\nid = \"pattern\"\nsource = \"test:\"\nsize = \"160x120\"\n",
            server.url()
        ),
    ));
    let post = |path: &str, content_type: &str, body: &str| {
        let raw = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let addr = d.main;
        async move { common::request(addr, &raw).await }
    };
    let error = |r: &common::Response| String::from_utf8_lossy(&r.body).into_owned();
    let fds_before = open_fds(d.child.id());
    for (path, ct, body, status, words) in [
        ("/cameras/cam/webrtc", "text/plain", "not json", 400, "send JSON"),
        (
            "/cameras/cam/webrtc",
            "application/json",
            "{\"type\":\"dance\"}",
            400,
            "remote_candidate",
        ),
        (
            "/cameras/cam/webrtc",
            "application/json",
            "{\"type\":\"answer\",\"id\":\"nope\",\"sdp\":\"v=0\"}",
            400,
            "SDP answer",
        ),
        (
            "/cameras/cam/whep",
            "application/sdp",
            "garbage",
            400,
            "SDP offer",
        ),
        (
            "/cameras/pattern/webrtc",
            "application/json",
            "{\"type\":\"request\"}",
            400,
            "does not send H.264",
        ),
        (
            "/cameras/nope/whep",
            "application/sdp",
            "v=0",
            404,
            "no such camera",
        ),
    ] {
        let r = post(path, ct, body).await;
        assert_eq!(r.status, status, "{path} {body}: {}", error(&r));
        assert!(error(&r).contains(words), "{path} {body}: {}", error(&r));
    }
    let r = common::request(
        d.main,
        "DELETE /cameras/cam/whep/unknown HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(r.status, 404, "{}", error(&r));
    let r = common::request(
        d.main,
        "GET /cameras/cam/webrtc HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!((r.status, r.header("allow")), (405, Some("POST, OPTIONS")));
    // One session per client here: the second request is refused until the first ends.
    let first = post(
        "/cameras/cam/webrtc",
        "application/json",
        "{\"type\":\"request\"}",
    )
    .await;
    assert_eq!(first.status, 200, "{}", error(&first));
    let offer: Value = serde_json::from_slice(&first.body).unwrap();
    assert!(offer["sdp"].as_str().unwrap().contains("H264"), "{offer}");
    assert!(
        offer["sdp"].as_str().unwrap().contains("127.0.0.1"),
        "our candidate: {offer}"
    );
    // A host asking a thousand times gets the limit's answer every time, and nothing piles up.
    for _ in 0..1000 {
        let again = post(
            "/cameras/cam/webrtc",
            "application/json",
            "{\"type\":\"request\"}",
        )
        .await;
        assert_eq!(again.status, 503, "{}", error(&again));
        assert!(error(&again).contains("max_sessions_per_client"));
    }
    assert_eq!(
        d.camera("cam").await["webrtc_sessions"].as_array().map(Vec::len),
        Some(1)
    );
    let m = String::from_utf8(common::get(d.main, "/metrics").await.body).unwrap();
    assert!(m.contains("farmcam_webrtc_sessions{camera=\"cam\"} 1"), "{m}");
    // Never answered: dropped after the connect timeout; the camera is released, and farmcam
    // holds no more descriptors (sockets, pipes) than before any of this.
    d.wait_for("cam", Duration::from_secs(90), |c| {
        c["webrtc_sessions"].as_array().is_some_and(|s| s.is_empty()) && c["state"] == "idle"
    })
    .await;
    common::eventually(WAIT, "descriptors back to where they were", || {
        (open_fds(d.child.id()) <= fds_before).then_some(())
    })
    .await;
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(usize::MAX, |d| d.count())
}
