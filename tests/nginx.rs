//! farmcam behind nginx as MainsailOS and FluiddPI run it: mjpg-streamer URLs, streams,
//! snapshots and the API through `/webcam/`, a dedicated port through `/webcam2/`, streams and
//! events through a proxy with default buffering, and the wall under the prefix in Chromium.

mod common;

use std::time::Duration;

use common::nginx::Nginx;
use common::webdriver::Browser;
use common::{config, decode_jpeg, get, Daemon, Stream};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(30);

fn farm() -> Daemon {
    Daemon::start(&config(
        "default_camera = \"p1\"\n",
        "[[camera]]\nid = \"p1\"\nname = \"Printer 1\"\nsource = \"test:\"\nsize = \"320x240\"\nfps = 10\nlisten = \"127.0.0.1:0\"\nidle_grace = \"3s\"\n\
         [[camera]]\nid = \"p2\"\nname = \"Printer 2\"\nsource = \"test:\"\nsize = \"320x240\"\nfps = 10\nidle_grace = \"3s\"\n",
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mainsail_style_proxy_serves_streams_snapshots_and_advertises_its_own_urls() {
    let d = farm();
    let nginx = Nginx::start(d.main, d.cameras["p1"]);
    let n = nginx.addr();
    for path in [
        "/webcam/?action=snapshot",
        "/webcam/snapshot",
        "/webcam/cameras/p2/snapshot",
        "/webcam2/?action=snapshot",
    ] {
        let r = get(n, path).await;
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(decode_jpeg(&r.body), (320, 240), "{path}");
    }
    for path in [
        "/webcam/?action=stream",
        "/webcam2/?action=stream",
        "/webcam/cameras/p2/stream",
    ] {
        let mut s = Stream::open(n, &format!("GET {path} HTTP/1.1\r\nHost: printer.local\r\n\r\n")).await;
        assert_eq!(s.status, 200, "{path}");
        for _ in 0..3 {
            tokio::time::timeout(WAIT, s.next_part())
                .await
                .expect("frames flow")
                .expect("open");
        }
    }
    // The URLs farmcam advertises are the proxy's, not its upstream name.
    let r = request_json(n, "/webcam/api/cameras", "printer.local").await;
    assert_eq!(
        r[0]["stream_url"], "http://printer.local/webcam/cameras/p1/stream",
        "{r}"
    );
    assert_eq!(r[0]["url_source"], "proxy");
    // A non-default port is kept (README's block forwards $http_host, not $host).
    let r = request_json(n, "/webcam/api/cameras", "printer.local:8443").await;
    assert_eq!(
        r[0]["stream_url"], "http://printer.local:8443/webcam/cameras/p1/stream",
        "{r}"
    );
    // MainsailOS's stock block sends no X-Forwarded-*: farmcam cannot know its public address
    // and says so (the URLs name the proxy's upstream).
    let r = request_json(n, "/stock/api/cameras", "printer.local").await;
    assert_eq!(r[0]["url_source"], "host", "{r}");
    // HEAD through the proxy (OctoPrint's URL test).
    let h = common::request(
        n,
        "HEAD /webcam/?action=snapshot HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(h.status, 200);
    assert_eq!(h.header("content-type"), Some("image/jpeg"));
}

async fn request_json(addr: std::net::SocketAddr, path: &str, host: &str) -> Value {
    let r = common::request(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
    )
    .await;
    assert_eq!(r.status, 200, "{path}");
    serde_json::from_slice(&r.body).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_buffering_proxy_passes_frames_and_events_at_once() {
    let d = farm();
    let nginx = Nginx::start(d.main, d.cameras["p1"]);
    let n = nginx.addr();
    let mut events = Stream::open(n, "GET /buffered/api/events HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(events.status, 200);
    // A viewer starts p2: its "started" event reaches the client through the buffering proxy.
    let mut s = Stream::open(n, "GET /buffered/cameras/p2/stream HTTP/1.1\r\nHost: x\r\n\r\n").await;
    for _ in 0..3 {
        tokio::time::timeout(WAIT, s.next_part())
            .await
            .expect("frames pass the proxy")
            .expect("open");
    }
    let got = tokio::time::timeout(WAIT, async {
        loop {
            let text = String::from_utf8_lossy(&events.body).into_owned();
            if text.contains("\"camera\":\"p2\"") && text.contains("\"kind\":\"live\"") {
                return text;
            }
            assert!(events.fill().await, "the event stream stays open");
        }
    })
    .await;
    assert!(got.is_ok(), "no event through the buffering proxy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wall_works_under_the_prefix() {
    let http = common::mjpeg_server::MjpegServer::start(320, 240).await;
    let d = Daemon::start(&config(
        "",
        &format!(
            "[[camera]]\nid = \"p1\"\nsource = \"test:\"\nsize = \"320x240\"\nfps = 10\nlisten = \"127.0.0.1:0\"\nidle_grace = \"3s\"\n\
             [[camera]]\nid = \"k1\"\nsource = \"{}\"\nidle_grace = \"3s\"\n",
            http.url()
        ),
    ));
    let nginx = Nginx::start(d.main, d.cameras["p1"]);
    let browser = Browser::start(1000, 700).await;
    browser.goto(&format!("http://{}/webcam/", nginx.addr())).await;
    let tiles = "return [...document.querySelectorAll('.tile')].map(t => ({
        id: t.dataset.camera, badge: t.querySelector('.badge').textContent,
        width: t.querySelector('img').naturalWidth }));";
    browser
        .wait_for(WAIT, "both tiles with images, live", tiles, |v| {
            let a = v.as_array().unwrap();
            a.len() == 2
                && a.iter()
                    .all(|t| t["width"].as_u64() > Some(0) && t["badge"] == "live")
        })
        .await;
    browser
        .wait_for(
            WAIT,
            "events through the prefix",
            "return document.querySelector('#conn').textContent",
            |v| v == "live updates",
        )
        .await;
    // Behind MainsailOS's stock block (no forwarded headers), the live view's copy URLs come
    // from the page's own address, not the proxy's upstream name.
    browser.goto(&format!("http://{}/stock/", nginx.addr())).await;
    browser
        .wait_for(WAIT, "tiles under /stock/", tiles, |v| {
            v.as_array().unwrap().len() == 2
        })
        .await;
    browser.click("article[data-camera=p1]").await;
    let urls = browser
        .wait_for(
            WAIT,
            "the live view's URLs",
            "return document.querySelector('#live-urls').textContent",
            |v| v.as_str().is_some_and(|s| s.contains("stream")),
        )
        .await;
    let urls = urls.as_str().unwrap();
    assert!(
        urls.contains(&format!("http://{}/stock/cameras/p1/stream", nginx.addr())),
        "{urls}"
    );
    assert!(!urls.contains("mjpgstreamer1"), "{urls}");
    assert!(
        urls.contains(&format!(
            "http://127.0.0.1:{}/?action=stream",
            d.cameras["p1"].port()
        )),
        "the dedicated port on the page's host: {urls}"
    );
    browser.goto(&format!("http://{}/webcam/", nginx.addr())).await;
    browser
        .wait_for(WAIT, "both tiles again", tiles, |v| {
            v.as_array().unwrap().len() == 2
        })
        .await;
    // A camera fails: its badge flips, through the events under the prefix.
    drop(http);
    browser
        .wait_for(WAIT, "k1 badge offline", tiles, |v| {
            v.as_array()
                .unwrap()
                .iter()
                .any(|t| t["id"] == "k1" && t["badge"] == "offline")
        })
        .await;
    browser.quit().await;
}

/// WHEP through nginx under `/webcam/`, exactly as Fluidd's `webrtc-mediamtx` player calls it
/// (its stream URL is the camera's base URL under the prefix): `OPTIONS` for the ICE servers,
/// the offer, the session URL built from the relative `Location`, trickled candidates by
/// `PATCH`, frames decoded in Chromium, and `DELETE` ending the session. Media goes straight to
/// farmcam's UDP port, not through the proxy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whep_through_the_prefix_as_fluidd_calls_it() {
    let server = common::rtsp::RtspServer::start(common::rtsp::RtspOptions::default());
    let d = Daemon::start(&config(
        "",
        &format!(
            "[[camera]]\nid = \"cam\"\nsource = \"{}\"\nidle_grace = \"2s\"\n",
            server.url()
        ),
    ));
    let nginx = Nginx::start(d.main, d.main);
    let browser = Browser::start(800, 600).await;
    browser.goto(&format!("http://{}/webcam/", nginx.addr())).await;
    let started = browser
        .eval(
            "return (async () => {
                const base = new URL('/webcam/cameras/cam/', location.href);
                const whepUrl = new URL('whep', base).toString();
                const o = await fetch(whepUrl, { method: 'OPTIONS' });
                const pc = new RTCPeerConnection({ iceServers: [] });
                window.pc = pc;
                pc.addTransceiver('video', { direction: 'recvonly' });
                const queued = [];
                pc.onicecandidate = e => { if (e.candidate) queued.push(e.candidate); };
                const offer = await pc.createOffer();
                await pc.setLocalDescription(offer);
                const r = await fetch(whepUrl, { method: 'POST',
                    headers: { 'Content-Type': 'application/sdp' }, body: offer.sdp });
                const loc = r.headers.get('location') || '';
                const sessionUrl = whepUrl + '/' + loc.slice(loc.lastIndexOf('/') + 1);
                window.sessionUrl = sessionUrl;
                await pc.setRemoteDescription({ type: 'answer', sdp: await r.text() });
                // Every candidate gathered (a condition, not a delay), then trickled at once.
                if (pc.iceGatheringState !== 'complete')
                    await new Promise(ok => pc.addEventListener('icegatheringstatechange',
                        () => { if (pc.iceGatheringState === 'complete') ok(); }));
                const ufrag = offer.sdp.match(/a=ice-ufrag:(.*)\\r\\n/)[1];
                const pwd = offer.sdp.match(/a=ice-pwd:(.*)\\r\\n/)[1];
                let frag = 'a=ice-ufrag:' + ufrag + '\\r\\na=ice-pwd:' + pwd + '\\r\\nm=video 9 UDP/TLS/RTP/SAVPF 96\\r\\na=mid:0\\r\\n';
                for (const c of queued) frag += 'a=' + c.candidate + '\\r\\n';
                const p = await fetch(sessionUrl, { method: 'PATCH', headers: {
                    'Content-Type': 'application/trickle-ice-sdpfrag', 'If-Match': '*' }, body: frag });
                return { options: o.status, status: r.status, location: loc, sessionUrl, patched: p.status };
            })()",
        )
        .await;
    assert_eq!(
        (
            started["options"].as_u64(),
            started["status"].as_u64(),
            started["patched"].as_u64()
        ),
        (Some(204), Some(201), Some(204)),
        "{started}"
    );
    assert!(
        started["sessionUrl"]
            .as_str()
            .unwrap()
            .starts_with(&format!("http://{}/webcam/cameras/cam/whep/", nginx.addr())),
        "{started}"
    );
    browser
        .wait_for(
            WAIT,
            "frames decoded through the prefix",
            "return (async () => { let n = 0; (await window.pc.getStats()).forEach(r => {
                if (r.type === 'inbound-rtp' && r.kind === 'video') n = r.framesDecoded || 0; });
                return n; })()",
            |v| v.as_u64() > Some(10),
        )
        .await;
    let ended = browser
        .eval("return (async () => (await fetch(window.sessionUrl, { method: 'DELETE' })).status)()")
        .await;
    assert_eq!(ended, 200);
    d.wait_for("cam", WAIT, |c| {
        c["webrtc_sessions"].as_array().is_some_and(|s| s.is_empty())
    })
    .await;
    browser.quit().await;
}
