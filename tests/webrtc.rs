//! Live H.264 over WebRTC in the real browser (Debian's Chromium): both signalling forms as the
//! players send them, frames decoded at the camera's size, one camera connection, no decoder for
//! a WebRTC-only audience, and sessions that end leave nothing behind.

mod common;

use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

use common::aiortc::Aiortc;
use common::proc::open_fds;
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
                // Mainsail's request (no Content-Type), then Fluidd's way on: a recvonly
                // transceiver before the offer, candidates trickled, JSON with Content-Type.
                const r = await fetch('/cameras/cam/webrtc', { method: 'POST',
                    body: JSON.stringify({ type: 'request', iceServers: [], keepAlive: true }) });
                const offer = await r.json();
                const pc = new RTCPeerConnection({ iceServers: offer.iceServers });
                window.pc = pc;
                pc.addTransceiver('video', { direction: 'recvonly' });
                window.trickled = [];
                pc.onicecandidate = e => { if (e.candidate) window.trickled.push(fetch('/cameras/cam/webrtc', {
                    method: 'POST', headers: { 'Content-Type': 'application/json' },
                    body: JSON.stringify({ type: 'remote_candidate', id: offer.id, candidates: [e.candidate] })
                }).then(r => r.status)); };
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
    let trickled = browser
        .eval("return (async () => await Promise.all(window.trickled))()")
        .await;
    assert!(
        trickled.as_array().is_some_and(|t| t.iter().all(|s| s == 200)),
        "trickled candidates accepted: {trickled}"
    );
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
    // Listed by a number, never by the id that controls the session.
    assert!(s["id"].is_string() && s["id"] != started["id"], "{cam}");
    assert!(
        !cam.to_string().contains(started["id"].as_str().unwrap()),
        "{cam}"
    );
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

/// WHEP as Mainsail's `webrtc-mediamtx` player sends it: video and audio, both sendrecv. The
/// answer rejects audio with a line Chromium parses (the offered format kept), and the video plays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mainsails_whep_offer_with_audio_plays_in_chromium() {
    let server = RtspServer::start(RtspOptions::default());
    let d = farm(&server.url());
    let browser = Browser::start(800, 600).await;
    browser.goto(&format!("http://{}/api/cameras", d.main)).await;
    let started = browser
        .eval(
            "return (async () => {
                const pc = new RTCPeerConnection();
                window.pc = pc;
                pc.addTransceiver('video', { direction: 'sendrecv' });
                pc.addTransceiver('audio', { direction: 'sendrecv' });
                await pc.setLocalDescription(await pc.createOffer());
                const r = await fetch('/cameras/cam/whep', { method: 'POST',
                    headers: { 'Content-Type': 'application/sdp' }, body: pc.localDescription.sdp });
                const sdp = await r.text();
                let error = null;
                try { await pc.setRemoteDescription({ type: 'answer', sdp }); }
                catch (e) { error = String(e); }
                return { status: r.status, error, audio: sdp.split('\\r\\n').filter(l => l.startsWith('m=audio')) };
            })()",
        )
        .await;
    assert_eq!(started["status"], 201, "{started}");
    assert_eq!(
        started["error"],
        Value::Null,
        "Chromium takes the answer: {started}"
    );
    let audio = started["audio"][0].as_str().unwrap();
    assert!(
        audio.starts_with("m=audio 0 ") && audio.split(' ').count() >= 4,
        "{started}"
    );
    frames_flow(&browser, "frames decoded over Mainsail's WHEP offer").await;
    browser.quit().await;
}

/// Viewers of one camera share its one subscription in the session task, joining and leaving at
/// any time: a viewer that joins while another watches plays at once, and from then on both
/// decode the same frames (each unit once for each of them); the second plays on alone when
/// the first leaves, and a viewer after both have gone gets a new subscription.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewers_join_and_leave_a_cameras_shared_subscription() {
    let server = RtspServer::start(RtspOptions::default());
    let d = farm(&server.url());
    let browser = Browser::start(800, 600).await;
    browser.goto(&format!("http://{}/api/cameras", d.main)).await;
    browser
        .eval(
            "window.pcs = {};
            window.play = async name => {
                const pc = new RTCPeerConnection();
                window.pcs[name] = pc;
                pc.addTransceiver('video', { direction: 'recvonly' });
                await pc.setLocalDescription(await pc.createOffer());
                const r = await fetch('/cameras/cam/whep', { method: 'POST',
                    headers: { 'Content-Type': 'application/sdp' }, body: pc.localDescription.sdp });
                await pc.setRemoteDescription({ type: 'answer', sdp: await r.text() });
                pc.whep = new URL(r.headers.get('location'), new URL('/cameras/cam/', location.href)).href;
            };
            window.stop = async name => {
                const pc = window.pcs[name];
                await fetch(pc.whep, { method: 'DELETE' });
                pc.close();
                delete window.pcs[name];
            };
            window.stats = async () => {
                const out = {};
                for (const [name, pc] of Object.entries(window.pcs)) {
                    const s = await pc.getStats();
                    s.forEach(r => { if (r.type === 'inbound-rtp' && r.kind === 'video')
                        out[name] = { decoded: r.framesDecoded || 0, pli: r.pliCount || 0,
                                      width: r.frameWidth || 0 }; });
                }
                return out;
            };
            return null;",
        )
        .await;
    const STATS: &str = "return window.stats();";
    let play = |name: &str| format!("return window.play('{name}');");
    let stop = |name: &str| format!("return window.stop('{name}');");
    // At 15 fps: `n` more frames decoded by `name` than `after` says.
    async fn more(browser: &Browser, name: &str, after: &Value, n: u64) -> Value {
        let from = after[name]["decoded"].as_u64().unwrap_or(0);
        browser
            .wait_for(WAIT, &format!("{n} more frames for {name}"), STATS, |v| {
                v[name]["decoded"].as_u64() >= Some(from + n) && v[name]["width"] == 320
            })
            .await
    }
    browser.eval(&play("first")).await;
    let v = more(&browser, "first", &Value::Null, 20).await;
    browser.eval(&play("second")).await;
    let v = more(&browser, "second", &v, 20).await;
    // Three seconds of video, counted by both at once.
    let w = more(&browser, "first", &v, 45).await;
    let counted = |name: &str| w[name]["decoded"].as_i64().unwrap() - v[name]["decoded"].as_i64().unwrap();
    assert!(
        (counted("first") - counted("second")).abs() <= 5,
        "both viewers decode every frame once: {v} then {w}"
    );
    browser.eval(&stop("first")).await;
    let v = w;
    let v = more(&browser, "second", &v, 30).await;
    assert_eq!(v["second"]["pli"], 0, "no picture missing or broken: {v}");
    browser.eval(&stop("second")).await;
    d.wait_for("cam", WAIT, |c| c["webrtc_sessions"] == serde_json::json!([]))
        .await;
    browser.eval(&play("third")).await;
    let v = more(&browser, "third", &Value::Null, 20).await;
    assert_eq!(v["third"]["pli"], 0, "{v}");
    browser.quit().await;
}

/// A WHEP viewer starts at the camera's kept group of pictures, as a camera-streamer viewer
/// does, not at the camera's next keyframe: here the camera sends one keyframe every 11 minutes,
/// so only the kept one can give the viewer its pictures.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whep_viewer_starts_at_the_kept_keyframe() {
    let server = RtspServer::start(RtspOptions {
        keyint: Some(10_000),
        ..Default::default()
    });
    let d = farm(&server.url());
    let browser = Browser::start(800, 600).await;
    browser.goto(&format!("http://{}/api/cameras", d.main)).await;
    for round in 0..2 {
        let status = browser
            .eval(
                "return (async () => {
                    if (window.pc) window.pc.close();
                    const pc = new RTCPeerConnection();
                    window.pc = pc;
                    pc.addTransceiver('video', { direction: 'recvonly' });
                    await pc.setLocalDescription(await pc.createOffer());
                    const r = await fetch('/cameras/cam/whep', { method: 'POST',
                        headers: { 'Content-Type': 'application/sdp' }, body: pc.localDescription.sdp });
                    await pc.setRemoteDescription({ type: 'answer', sdp: await r.text() });
                    return r.status;
                })()",
            )
            .await;
        assert_eq!(status, 201);
        frames_flow(
            &browser,
            &format!("viewer {round}: frames from the kept keyframe"),
        )
        .await;
    }
    browser.quit().await;
}

/// Signalling mistakes get a clear 4xx and leave nothing behind; the limits answer 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_signalling_is_refused_clearly() {
    let server = RtspServer::start(RtspOptions::default());
    let d = Daemon::start(&config(
        "",
        &format!(
            "[webrtc]\nlisten = \"127.0.0.1:0\"\nmax_sessions_per_client = 1\nconnect_timeout = \"3s\"\n\
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
    let request = || {
        post(
            "/cameras/cam/webrtc",
            "application/json",
            "{\"type\":\"request\"}",
        )
    };
    let first = request().await;
    assert_eq!(first.status, 200, "{}", error(&first));
    let offer: Value = serde_json::from_slice(&first.body).unwrap();
    assert!(offer["sdp"].as_str().unwrap().contains("H264"), "{offer}");
    assert!(
        offer["sdp"].as_str().unwrap().contains("127.0.0.1"),
        "our candidate: {offer}"
    );
    // A host asking a thousand times gets the limit's answer every time, and nothing piles up.
    for _ in 0..1000 {
        let again = request().await;
        assert_eq!(again.status, 503, "{}", error(&again));
        assert!(error(&again).contains("max_sessions_per_client"));
    }
    assert_eq!(
        d.camera("cam").await["webrtc_sessions"].as_array().map(Vec::len),
        Some(1)
    );
    let m = String::from_utf8(common::get(d.main, "/metrics").await.body).unwrap();
    assert!(m.contains("farmcam_webrtc_sessions{camera=\"cam\"} 1"), "{m}");
    // Never answered: dropped after the connect timeout (3 s here); the camera is released,
    // and farmcam holds no more descriptors (sockets, pipes) than before any of this.
    d.wait_for("cam", Duration::from_secs(90), |c| {
        c["webrtc_sessions"].as_array().is_some_and(|s| s.is_empty()) && c["state"] == "idle"
    })
    .await;
    common::eventually(WAIT, "descriptors back to where they were", || {
        (open_fds(d.child.id()) <= fds_before).then_some(())
    })
    .await;
}

/// Five WebRTC viewers (aiortc, both signalling forms), three MJPEG viewers and snapshots every
/// second share one camera connection; the decoder runs for the JPEG consumers only. A viewer
/// that goes silent (stopped: it reads and answers nothing) is cut after a timeout while the
/// others keep the camera's rate, and nothing is left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crowd_of_viewers_shares_one_connection_and_a_silent_one_is_cut() {
    let server = RtspServer::start(RtspOptions::default());
    let d = farm(&server.url());
    let fds_before = open_fds(d.child.id());
    let base = format!("http://{}/cameras/cam", d.main);
    let viewers: Vec<Aiortc> = (0..5)
        .map(|i| {
            if i % 2 == 0 {
                Aiortc::start("--whep", &format!("{base}/whep"))
            } else {
                Aiortc::start("--camera-streamer", &format!("{base}/webrtc"))
            }
        })
        .collect();
    for v in &viewers {
        v.wait_frames(20).await;
    }
    let cam = d.camera("cam").await;
    assert_eq!(
        (cam["decoder"].as_str(), cam["state"].as_str()),
        (Some("off"), Some("live")),
        "WebRTC viewers alone decode nothing: {cam}"
    );
    // Live MJPEG frames seen by the viewers, counted as they arrive.
    let counted = std::sync::Arc::new(tokio::sync::watch::Sender::new(0u64));
    let mut mjpeg = Vec::new();
    for _ in 0..3 {
        let mut s = common::open_stream(&d, "cam").await;
        let counted = counted.clone();
        mjpeg.push(tokio::spawn(async move {
            while let Some(p) = s.next_part().await {
                if common::is_live(&p) {
                    counted.send_modify(|n| *n += 1);
                }
            }
        }));
    }
    let stop_snapshots = tokio_util::sync::CancellationToken::new();
    // A snapshot per second of the camera's video (every 45 frames the three viewers see, at
    // 15 fps), paced by the frames themselves rather than the clock.
    let snapshots = {
        let (stop, addr, mut frames) = (stop_snapshots.clone(), d.main, counted.subscribe());
        tokio::spawn(async move {
            let mut ok = 0u32;
            while !stop.is_cancelled() {
                let r = common::get(addr, "/cameras/cam/snapshot").await;
                if r.status == 200 && r.header("x-placeholder").is_none() {
                    ok += 1;
                }
                let next = *frames.borrow() + 45;
                tokio::select! {
                    _ = stop.cancelled() => {}
                    _ = frames.wait_for(|n| *n >= next) => {}
                }
            }
            ok
        })
    };
    let cam = d
        .wait_for("cam", WAIT, |c| {
            c["viewers_by_kind"] == serde_json::json!({ "mjpeg": 3, "webrtc": 5 }) && c["decoder"] == "full"
        })
        .await;
    common::eventually(WAIT, "MJPEG viewers get frames", || {
        (*counted.borrow() >= 30).then_some(())
    })
    .await;
    assert_eq!(server.clients.load(SeqCst), 1, "one camera connection: {cam}");
    stop_snapshots.cancel();
    assert!(snapshots.await.unwrap() >= 1, "snapshots answered with pictures");
    // The MJPEG viewers leave: full decoding stops (keyframes only are left for the snapshot
    // takers, who come back), WebRTC goes on.
    for m in mjpeg {
        m.abort();
    }
    d.wait_for("cam", WAIT, |c| {
        c["decoder"] == "keyframes" && c["viewers_by_kind"]["mjpeg"] == 0
    })
    .await;
    let now = viewers[1].frames();
    viewers[1].wait_frames(now + 30).await;

    // One viewer goes silent; the session is cut, the others keep the camera's rate.
    let (silent, rest) = viewers.split_first().unwrap();
    let before: Vec<u64> = rest.iter().map(Aiortc::frames).collect();
    let stopped = std::time::Instant::now();
    silent.signal(libc::SIGSTOP);
    let cam = d
        .wait_for("cam", Duration::from_secs(90), |c| {
            c["webrtc_sessions"].as_array().map(Vec::len) == Some(4)
        })
        .await;
    assert_eq!(cam["viewers_by_kind"]["webrtc"], 4, "{cam}");
    let secs = stopped.elapsed().as_secs_f64();
    for (v, b) in rest.iter().zip(before) {
        // The camera sends 15 fps; half of it over the whole cut is a loose floor.
        let got = v.frames() - b;
        assert!(
            got as f64 >= secs * 15.0 / 2.0,
            "a viewer kept {got} frames in {secs:.1} s while another was cut"
        );
    }
    silent.signal(libc::SIGCONT);
    drop(viewers);
    d.wait_for("cam", Duration::from_secs(90), |c| {
        c["webrtc_sessions"].as_array().is_some_and(|s| s.is_empty()) && c["state"] == "idle"
    })
    .await;
    assert_eq!(server.clients.load(SeqCst), 1, "still that one connection");
    common::eventually(WAIT, "descriptors back to where they were", || {
        (open_fds(d.child.id()) <= fds_before).then_some(())
    })
    .await;
}
