//! The real binary, over real sockets: streams, snapshots, API, events, limits and shutdown.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};

const CAM: &str = "[[camera]]\nid = \"cam\"\nname = \"Test cam\"\nsource = \"test:\"\nsize = \"320x240\"\nfps = 20\nidle_grace = \"1s\"\n";

#[tokio::test]
async fn stream_delivers_every_frame_in_order_as_valid_jpegs() {
    let d = Daemon::start(&config("", CAM));
    let t0 = Instant::now();
    let mut s = Stream::open(d.main, "GET /cameras/cam/stream HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(s.status, 200);
    assert!(s
        .header("content-type")
        .unwrap()
        .starts_with("multipart/x-mixed-replace;boundary="));
    assert!(s.header("cache-control").unwrap().contains("no-cache"));
    let first = s.next_part().await.unwrap();
    println!("time to first frame from a cold camera: {:?}", t0.elapsed());
    let mut last = first.seq();
    let mut last_ts = first.timestamp();
    for _ in 0..40 {
        let p = s.next_part().await.expect("stream goes on");
        assert_eq!(p.headers["content-type"], "image/jpeg");
        assert_eq!(p.seq(), last + 1, "every frame, in order, once");
        assert!(p.timestamp() > last_ts, "timestamps increase");
        assert!(
            (unix_now() - p.timestamp()).abs() < 10.0,
            "X-Timestamp is the capture wall-clock time"
        );
        assert_eq!(decode_jpeg(&p.jpeg), (320, 240));
        last = p.seq();
        last_ts = p.timestamp();
    }
    let cam = d.camera("cam").await;
    assert_eq!(cam["state"], "live");
    assert_eq!(cam["viewers"], 1);
    assert_eq!(cam["size"], "320x240");
    assert_eq!(cam["source"], "test:");
}

#[tokio::test]
async fn many_viewers_and_snapshots_share_one_upstream_and_leave_cleanly() {
    let d = Daemon::start(&config("", CAM));
    let mut viewers = Vec::new();
    for _ in 0..10 {
        viewers.push(Stream::open(d.main, "GET /cameras/cam/stream HTTP/1.1\r\nHost: x\r\n\r\n").await);
    }
    let snaps = futures_util::future::join_all((0..5).map(|_| get(d.main, "/cameras/cam/snapshot"))).await;
    for s in &snaps {
        assert_eq!(s.status, 200);
        assert_eq!(decode_jpeg(&s.body), (320, 240));
    }
    for v in &mut viewers {
        for _ in 0..3 {
            v.next_part().await.unwrap();
        }
    }
    let cam = d.camera("cam").await;
    assert_eq!(cam["upstream_opens"], 1, "{cam}");
    assert_eq!(cam["viewers"], 10);
    drop(viewers);
    // Closed sockets are noticed, and after the 1 s grace the camera is closed.
    d.wait_for("cam", Duration::from_secs(5), |c| c["viewers"] == 0)
        .await;
    d.wait_for("cam", Duration::from_secs(10), |c| c["state"] == "idle")
        .await;
    assert_eq!(d.camera("cam").await["upstream_opens"], 1);
}

/// Point 11: a viewer whose socket closed is detached within 1 s even while no frames flow
/// (a 1 fps camera: detection must not wait for the next write).
#[tokio::test]
async fn closed_viewer_is_detached_without_waiting_for_a_frame() {
    let d = Daemon::start(&config(
        "",
        "[[camera]]\nid = \"slow\"\nsource = \"test:\"\nsize = \"160x120\"\nfps = 1\nidle_grace = \"30s\"\n",
    ));
    let mut v = Stream::open(d.main, "GET /cameras/slow/stream HTTP/1.1\r\nHost: x\r\n\r\n").await;
    v.next_part().await.unwrap();
    v.next_part().await.unwrap();
    d.wait_for("slow", Duration::from_secs(2), |c| c["viewers"] == 1)
        .await;
    let closed = Instant::now();
    drop(v);
    d.wait_for("slow", Duration::from_millis(900), |c| c["viewers"] == 0)
        .await;
    println!("viewer detached {:?} after its socket closed", closed.elapsed());
    assert_eq!(
        d.camera("slow").await["state"],
        "live",
        "the grace period still runs"
    );
}

/// A client that never reads does not slow a fast one, and is disconnected after write_timeout.
#[tokio::test]
async fn stalled_viewer_is_dropped_and_never_slows_a_fast_one() {
    let d = Daemon::start(&config(
        "write_timeout = \"1s\"",
        "[[camera]]\nid = \"cam\"\nsource = \"test:\"\nsize = \"640x480\"\nfps = 25\n",
    ));
    let sock = TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let mut stalled = sock.connect(d.main).await.unwrap();
    stalled
        .write_all(b"GET /cameras/cam/stream HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut fast = Stream::open(d.main, "GET /cameras/cam/stream HTTP/1.1\r\nHost: x\r\n\r\n").await;
    d.wait_for("cam", Duration::from_secs(5), |c| c["viewers"] == 2)
        .await;
    let mut last = fast.next_part().await.unwrap().seq();
    let (mut got, mut gaps) = (0, 0);
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(4) {
        let p = fast.next_part().await.expect("fast viewer keeps streaming");
        gaps += p.seq() - last - 1;
        last = p.seq();
        got += 1;
    }
    println!("fast viewer: {got} frames, {gaps} skipped in 4 s next to a stalled one");
    assert!(
        got > 40,
        "the fast viewer got frames at the source rate, not the stalled one's"
    );
    assert!(
        gaps * 10 <= got,
        "the fast viewer missed at most a few frames ({gaps} of {got})"
    );
    let cam = d
        .wait_for("cam", Duration::from_secs(10), |c| c["viewers"] == 1)
        .await;
    assert!(
        cam["frames_skipped"].as_u64().unwrap() > 0,
        "the stalled viewer skipped frames: {cam}"
    );
    // The stalled connection is closed by the server.
    drop(stalled);
    assert!(fast.next_part().await.is_some());
}

#[tokio::test]
async fn snapshot_statuses_and_errors() {
    let d = Daemon::start(&config(
        "",
        &format!("{CAM}[[camera]]\nid = \"down\"\nname = \"Dead printer\"\nsource = \"test:offline\"\nsize = \"320x240\"\n"),
    ));
    let r = get(d.main, "/cameras/cam/snapshot").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("image/jpeg"));
    assert!(r.header("x-timestamp").is_some());
    assert_eq!(decode_jpeg(&r.body), (320, 240));
    // A cached frame is fine with max_age.
    let cached = get(d.main, "/cameras/cam/snapshot?max_age=60000").await;
    assert_eq!(cached.status, 200);

    let r = get(d.main, "/cameras/down/snapshot").await;
    assert_eq!(r.status, 503);
    let retry: u64 = r.header("retry-after").expect("Retry-After").parse().unwrap();
    assert!((1..=30).contains(&retry));
    assert_eq!(
        decode_jpeg(&r.body),
        (320, 240),
        "the placeholder image is the body"
    );
    let down = d.camera("down").await;
    assert_eq!(down["state"], "offline");

    let r = get(d.main, "/cameras/nope/snapshot").await;
    assert_eq!(r.status, 404);
    let e: Value = serde_json::from_slice(&r.body).unwrap();
    assert!(e["error"].as_str().unwrap().contains("nope"));
    assert_eq!(get(d.main, "/nowhere").await.status, 404);
    assert_eq!(
        get(d.main, "/cameras/cam/snapshot?max_age=soon").await.status,
        400
    );
    let post = request(
        d.main,
        "POST /cameras/cam/snapshot HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(post.status, 405);
    assert_eq!(post.header("allow"), Some("GET, HEAD, OPTIONS"));
}

/// HEAD wherever GET works (OctoPrint's URL test uses it): the same status and headers, no body,
/// and no camera started for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_answers_like_get_without_a_body_or_a_camera() {
    let d = Daemon::start(&config(
        "",
        "[[camera]]\nid = \"cam\"\nsource = \"test:\"\nsize = \"160x120\"\n",
    ));
    let head = |path: &str| {
        let raw = format!("HEAD {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let addr = d.main;
        async move { request(addr, &raw).await }
    };
    for path in [
        "/",
        "/api/cameras",
        "/metrics",
        "/nowhere",
        "/cameras/nope/stream",
    ] {
        let (h, g) = (head(path).await, get(d.main, path).await);
        assert_eq!(h.status, g.status, "{path}");
        assert_eq!(h.header("content-type"), g.header("content-type"), "{path}");
        assert!(h.body.is_empty(), "{path}: HEAD has no body");
    }
    let h = head("/api/cameras").await;
    assert!(
        h.header("content-length").is_some_and(|l| l != "0"),
        "{:?}",
        h.headers
    );
    for (path, kind) in [
        ("/cameras/cam/stream", "multipart/x-mixed-replace"),
        ("/cameras/cam/snapshot", "image/jpeg"),
        ("/cameras/cam/?action=snapshot", "image/jpeg"),
        ("/?action=stream", "multipart/x-mixed-replace"),
    ] {
        let h = head(path).await;
        assert_eq!(h.status, 200, "{path}");
        assert!(h.header("content-type").unwrap().starts_with(kind), "{path}");
        assert!(h.body.is_empty());
    }
    let c = d.camera("cam").await;
    assert_eq!(
        (c["state"].as_str(), c["upstream_opens"].as_u64()),
        (Some("idle"), Some(0)),
        "{c}"
    );
}

/// HEAD of a dead camera's snapshot answers what GET answers (503, so OctoPrint's URL test fails
/// for it), from the last known state, also once the camera is closed again, without opening it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_of_a_dead_cameras_snapshot_is_a_503_like_get() {
    let d = Daemon::start(&config(
        "",
        "[[camera]]\nid = \"down\"\nsource = \"test:offline\"\nsize = \"160x120\"\nidle_grace = \"0s\"\n",
    ));
    let head = || {
        let addr = d.main;
        async move {
            request(
                addr,
                "HEAD /cameras/down/snapshot HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            )
            .await
        }
    };
    let g = get(d.main, "/cameras/down/snapshot").await;
    assert_eq!(g.status, 503);
    let c = d
        .wait_for("down", Duration::from_secs(30), |c| {
            c["state"] == "idle" && c["available"] == false
        })
        .await;
    let opens = c["upstream_opens"].as_u64();
    let h = head().await;
    assert_eq!((h.status, h.header("content-type")), (503, Some("image/jpeg")));
    assert!(h.header("retry-after").is_some());
    assert_eq!(
        d.camera("down").await["upstream_opens"].as_u64(),
        opens,
        "HEAD opened nothing"
    );
}

/// The main port's mjpg-streamer URLs (where MainsailOS points /webcam/) serve the only camera,
/// or `[http] default_camera`; with several and no default, a 404 that names them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn main_port_mjpg_streamer_urls_serve_the_default_camera() {
    let cam = |id: &str| format!("[[camera]]\nid = \"{id}\"\nsource = \"test:\"\nsize = \"160x120\"\n");
    let one = Daemon::start(&config("", &cam("only")));
    for path in ["/?action=snapshot", "/snapshot"] {
        let r = get(one.main, path).await;
        assert_eq!(
            (r.status, r.header("content-type")),
            (200, Some("image/jpeg")),
            "{path}"
        );
        assert_eq!(decode_jpeg(&r.body), (160, 120));
    }
    for path in ["/?action=stream", "/stream"] {
        let mut s = Stream::open(one.main, &format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n")).await;
        assert_eq!(s.status, 200, "{path}");
        assert_eq!(
            s.header("x-accel-buffering"),
            Some("no"),
            "proxies must not buffer streams"
        );
        s.next_part().await.expect("a frame");
    }
    let wall = get(one.main, "/").await;
    assert!(wall.header("content-type").unwrap().starts_with("text/html"));
    let events = Stream::open(one.main, "GET /api/events HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(
        events.header("x-accel-buffering"),
        Some("no"),
        "events pass proxies at once"
    );
    assert_eq!(events.header("cache-control"), Some("no-store"));

    let two = Daemon::start(&config("", &(cam("a") + &cam("b"))));
    let r = get(two.main, "/?action=snapshot").await;
    assert_eq!(r.status, 404);
    let e: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(e["cameras"], serde_json::json!(["a", "b"]), "{e}");
    assert!(e["error"].as_str().unwrap().contains("default_camera"), "{e}");
    assert_eq!(e["urls"][1]["snapshot"], "/cameras/b/snapshot");

    let chosen = Daemon::start(&config("default_camera = \"b\"\n", &(cam("a") + &cam("b"))));
    assert_eq!(get(chosen.main, "/?action=snapshot").await.status, 200);
    assert_eq!(chosen.camera("b").await["upstream_opens"], 1);
    assert_eq!(chosen.camera("a").await["upstream_opens"], 0);
}

#[tokio::test]
async fn offline_camera_streams_the_placeholder() {
    let d = Daemon::start(&config(
        "",
        "[[camera]]\nid = \"down\"\nsource = \"test:offline\"\nsize = \"160x120\"\n",
    ));
    let mut s = Stream::open(d.main, "GET /cameras/down/stream HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let a = s.next_part().await.unwrap();
    let b = s.next_part().await.unwrap();
    assert_eq!(decode_jpeg(&a.jpeg), (160, 120));
    assert_eq!(a.headers.get("x-placeholder").map(String::as_str), Some("1"));
    let gap = b.timestamp() - a.timestamp();
    assert!(
        (0.5..3.0).contains(&gap),
        "about one placeholder per second ({gap:.2}s)"
    );
    d.logged("test:offline never delivers frames").await;
}

#[tokio::test]
async fn mjpg_streamer_compatible_paths_and_dedicated_port() {
    let d = Daemon::start(&config("", &format!("{CAM}listen = \"127.0.0.1:0\"\n")));
    let port = d.cameras["cam"];
    for (addr, path) in [
        (d.main, "/cameras/cam/?action=snapshot"),
        (port, "/?action=snapshot"),
        (port, "/snapshot"),
    ] {
        let r = get(addr, path).await;
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(decode_jpeg(&r.body), (320, 240), "{path}");
    }
    for (addr, path) in [
        (d.main, "/cameras/cam/?action=stream"),
        (port, "/?action=stream"),
        (port, "/stream"),
    ] {
        let mut s = Stream::open(addr, &format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n")).await;
        assert_eq!(s.status, 200, "{path}");
        assert_eq!(decode_jpeg(&s.next_part().await.unwrap().jpeg), (320, 240));
    }
    let page = get(port, "/").await;
    assert!(
        String::from_utf8_lossy(&page.body).contains("src=\"?action=stream\""),
        "relative: works under any proxy prefix"
    );
    assert_eq!(d.camera("cam").await["upstream_opens"], 1);
}

#[tokio::test]
async fn per_viewer_fps_cap() {
    let d = Daemon::start(&config(
        "",
        "[[camera]]\nid = \"cam\"\nsource = \"test:\"\nsize = \"160x120\"\nfps = 20\n",
    ));
    let mut capped = Stream::open(
        d.main,
        "GET /cameras/cam/stream?fps=4 HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .await;
    let mut full = Stream::open(d.main, "GET /cameras/cam/stream HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let mut stamps = Vec::new();
    for _ in 0..8 {
        stamps.push(capped.next_part().await.unwrap().timestamp());
    }
    let mean = (stamps[7] - stamps[1]) / 6.0;
    assert!(
        (0.18..0.4).contains(&mean),
        "capped viewer gets ~4 fps (mean interval {mean:.3}s)"
    );
    let a = full.next_part().await.unwrap().seq();
    let b = full.next_part().await.unwrap().seq();
    assert_eq!(b, a + 1, "the other viewer still gets every frame");
    assert_eq!(d.camera("cam").await["upstream_opens"], 1);
    assert_eq!(get(d.main, "/cameras/cam/stream?fps=zero").await.status, 400);
    // A rate too small to represent never means "no cap": below one a minute is refused.
    for fps in ["1e-300", "0.001", "0", "-1", "121", "inf", "NaN"] {
        let r = get(d.main, &format!("/cameras/cam/stream?fps={fps}")).await;
        assert_eq!(r.status, 400, "fps={fps}");
        assert!(
            String::from_utf8_lossy(&r.body).contains("one a minute"),
            "fps={fps}"
        );
    }
}

#[tokio::test]
async fn events_resume_with_last_event_id() {
    let d = Daemon::start(&config(
        "",
        &format!("{CAM}[[camera]]\nid = \"other\"\nsource = \"test:\"\nsize = \"160x120\"\n"),
    ));
    let mut ev = Stream::open(d.main, "GET /api/events HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(ev.status, 200);
    assert_eq!(ev.header("content-type"), Some("text/event-stream"));
    while find(&ev.body, b"\n\n").is_none() {
        assert!(ev.fill().await);
    }
    assert!(
        ev.body.starts_with(b"retry: 2000\n"),
        "{:?}",
        String::from_utf8_lossy(&ev.body)
    );
    assert_eq!(get(d.main, "/cameras/cam/snapshot").await.status, 200);
    let seen = read_events(&mut ev, |e| e.iter().any(|(_, j)| j["kind"] == "live")).await;
    assert_eq!(seen[0].1["kind"], "started");
    assert_eq!(seen[0].1["camera"], "cam");
    let last_id = seen.last().unwrap().0;
    // The camera list says which events it already reflects (a page following both keeps a
    // newer event's state over an older list).
    let list = get(d.main, "/api/cameras").await;
    let listed: u64 = list.header("x-event-id").expect("X-Event-Id").parse().unwrap();
    assert!(
        listed >= last_id,
        "list reflects events up to {listed}, saw {last_id}"
    );
    drop(ev);

    // While disconnected: another camera starts, and the first one's pump stops after its grace.
    assert_eq!(get(d.main, "/cameras/other/snapshot").await.status, 200);
    d.wait_for("cam", Duration::from_secs(10), |c| c["state"] == "idle")
        .await;

    let mut ev = Stream::open(
        d.main,
        &format!("GET /api/events HTTP/1.1\r\nHost: x\r\nLast-Event-ID: {last_id}\r\n\r\n"),
    )
    .await;
    let missed = read_events(&mut ev, |e| {
        e.iter()
            .any(|(_, j)| j["camera"] == "cam" && j["kind"] == "stopped")
    })
    .await;
    let ids: Vec<u64> = missed.iter().map(|(id, _)| *id).collect();
    assert_eq!(
        ids[0],
        last_id + 1,
        "resumes right after the last seen event: {ids:?}"
    );
    assert!(
        ids.windows(2).all(|w| w[1] == w[0] + 1),
        "no gap, no repeat: {ids:?}"
    );
    assert!(missed
        .iter()
        .any(|(_, j)| j["camera"] == "other" && j["kind"] == "live"));
}

/// Read SSE events (id, JSON) until `done` holds for what was read.
async fn read_events(s: &mut Stream, done: impl Fn(&[(u64, Value)]) -> bool) -> Vec<(u64, Value)> {
    let mut events = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        while let Some(end) = find(&s.body, b"\n\n") {
            let block = String::from_utf8(s.body.drain(..end + 2).collect()).unwrap();
            let id = block
                .lines()
                .find_map(|l| l.strip_prefix("id: "))
                .map(|v| v.parse().unwrap());
            let data = block.lines().find_map(|l| l.strip_prefix("data: "));
            if let (Some(id), Some(data)) = (id, data) {
                events.push((id, serde_json::from_str(data).unwrap()));
            }
        }
        if done(&events) {
            return events;
        }
        assert!(Instant::now() < deadline, "events so far: {events:?}");
        assert!(
            tokio::time::timeout(Duration::from_secs(15), s.fill())
                .await
                .unwrap(),
            "event stream ended"
        );
    }
}

/// A camera that makes frames only on demand (the test pattern between glances) holds an old
/// frame: a snapshot never returns one captured more than a second before it was asked for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_are_fresh_when_frames_are_made_on_demand() {
    let d = Daemon::start(&config(
        "",
        "[[camera]]\nid = \"cam\"\nsource = \"test:\"\nsize = \"320x240\"\nidle_grace = \"30s\"\n",
    ));
    let mut seqs = std::collections::HashSet::new();
    // A glance every half second (the pace of the test, not a wait for a condition).
    let mut glances = tokio::time::interval(Duration::from_millis(500));
    // Glances half a second apart (a wall tile refreshes every second): the camera stays open,
    // making frames only when asked.
    for _ in 0..10 {
        glances.tick().await;
        let asked = unix_now();
        let r = get(d.main, "/cameras/cam/snapshot").await;
        assert_eq!(r.status, 200);
        let captured: f64 = r.header("x-timestamp").unwrap().parse().unwrap();
        assert!(
            captured >= asked - 1.05,
            "captured {:.2} s before it was asked for",
            asked - captured
        );
        seqs.insert(r.header("x-sequence").unwrap().to_string());
    }
    assert!(seqs.len() >= 3, "new frames for the glances: {seqs:?}");
}

#[tokio::test]
async fn connection_cap_answers_503() {
    let d = Daemon::start(&config("max_connections = 2", CAM));
    let mut a = Stream::open(d.main, "GET /cameras/cam/stream HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let _b = Stream::open(d.main, "GET /cameras/cam/stream HTTP/1.1\r\nHost: x\r\n\r\n").await;
    a.next_part().await.unwrap();
    let r = get(d.main, "/api/cameras").await;
    assert_eq!(r.status, 503);
    assert!(r.header("retry-after").is_some());
    drop(a);
    eventually_async(
        Duration::from_secs(5),
        "a slot frees when a viewer leaves",
        || async { (get(d.main, "/api/cameras").await.status == 200).then_some(()) },
    )
    .await;
}

/// One client address cannot take every slot: beyond `max_connections_per_client` it gets a 503
/// naming the limit, while another address still connects; every refusal is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_client_cannot_take_every_connection() {
    let d = Daemon::start(&config("max_connections_per_client = 3", CAM));
    let from = |ip: &str| {
        let ip: std::net::IpAddr = ip.parse().unwrap();
        async move {
            let s = tokio::net::TcpSocket::new_v4().unwrap();
            s.bind(std::net::SocketAddr::new(ip, 0)).unwrap();
            s.connect(d.main).await.unwrap()
        }
    };
    let stream = "GET /cameras/cam/stream HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut s = Stream::on(from("127.0.0.1").await, stream).await;
        assert_eq!(s.status, 200);
        s.next_part().await.unwrap();
        held.push(s);
    }
    // A burst of refused connections from the same address: each one is answered.
    for _ in 0..20 {
        let r = Stream::on(
            from("127.0.0.1").await,
            "GET /api/cameras HTTP/1.1\r\nHost: x\r\n\r\n",
        )
        .await;
        assert_eq!(r.status, 503);
        assert!(r.header("retry-after").is_some());
        let mut r = r;
        while r.fill().await {}
        let body = String::from_utf8_lossy(&r.body).to_string();
        assert!(
            body.contains("127.0.0.1") && body.contains("max_connections_per_client"),
            "{body}"
        );
    }
    // Another address is served meanwhile.
    let other = Stream::on(
        from("127.0.0.2").await,
        "GET /api/cameras HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .await;
    assert_eq!(other.status, 200);
    // A viewer leaves: its address gets a slot again.
    held.pop();
    eventually_async(
        Duration::from_secs(10),
        "the slot comes back when a viewer leaves",
        || async {
            let s = from("127.0.0.1").await;
            let r = Stream::on(
                s,
                "GET /api/cameras HTTP/1.1
Host: x

",
            )
            .await;
            (r.status == 200).then_some(())
        },
    )
    .await;
}

/// A service starts with 1024 open files at most (soft limit): farmcam raises its own limit so
/// `max_connections` viewers really fit, and says so when the hard limit does not allow it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_file_limit_is_raised_to_fit_max_connections() {
    let d = Daemon::start_with_nofile(
        &config("max_connections = 1000\nmax_connections_per_client = 1000", CAM),
        256,
        4096,
    );
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", d.child.id())).unwrap();
    let line = limits.lines().find(|l| l.starts_with("Max open files")).unwrap();
    assert_eq!(
        line.split_whitespace().collect::<Vec<_>>()[3..5],
        ["1128", "4096"],
        "{line}"
    );
    // More viewers than the limit farmcam was started with.
    let mut viewers = Vec::new();
    for _ in 0..400 {
        viewers.push(Stream::open(d.main, "GET /cameras/cam/stream HTTP/1.1\r\nHost: x\r\n\r\n").await);
    }
    for v in viewers.iter_mut() {
        v.next_part().await.expect("every viewer gets frames");
    }
    assert_eq!(d.camera("cam").await["viewers"].as_u64(), Some(400));
    assert!(!d.log_text().contains("LimitNOFILE"), "{}", d.log_text());

    let low = Daemon::start_with_nofile(&config("max_connections = 1000", CAM), 256, 300);
    low.logged("1000 connections (http.max_connections, and RTSP's: 2 x rtsp.max_sessions + 16) need about 1128 open files but the limit is 300").await;
}

/// Out of file descriptors, accepting fails again and again: said once a minute, not ten times a
/// second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accept_failures_are_said_once() {
    let d = Daemon::start_with_nofile_env(
        &config("max_connections = 1000", CAM),
        64,
        64,
        &[("RUST_LOG", "farmcam=debug")],
    );
    // Idle connections beyond the limit (each accepted one holds a descriptor).
    let mut socks = Vec::new();
    for _ in 0..80 {
        if let Ok(s) = TcpStream::connect(d.main).await {
            socks.push(s);
        }
    }
    eventually(Duration::from_secs(30), "repeated accept failures", || {
        (d.log_text().matches("accept failed").count() >= 5).then_some(())
    })
    .await;
    let log = d.log_text();
    let loud = log
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("accept failed"))
        .count();
    assert_eq!(loud, 1, "{log}");
    assert!(log.contains("raise LimitNOFILE"), "{log}");
}

#[tokio::test]
async fn silent_clients_are_dropped_after_the_header_timeout() {
    let d = Daemon::start(&config("header_read_timeout = \"1s\"", CAM));
    let mut sock = TcpStream::connect(d.main).await.unwrap();
    sock.write_all(b"GET /api/cameras HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap(); // never finished
    let t = Instant::now();
    let mut buf = Vec::new();
    let r = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::io::AsyncReadExt::read_to_end(&mut sock, &mut buf),
    )
    .await;
    assert!(r.is_ok(), "the server closed the connection");
    println!("slow client dropped after {:?}", t.elapsed());
    assert!(t.elapsed() >= Duration::from_millis(900));
}

#[tokio::test]
async fn oversized_request_head_is_refused() {
    let d = Daemon::start(&config("", CAM));
    let big = "x".repeat(100 * 1024);
    let mut sock = TcpStream::connect(d.main).await.unwrap();
    let req = format!("GET /api/cameras HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n");
    let _ = sock.write_all(req.as_bytes()).await; // the server may close before reading it all
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::io::AsyncReadExt::read_to_end(&mut sock, &mut buf),
    )
    .await;
    let head = String::from_utf8_lossy(&buf);
    println!("answer: {:?}", head.lines().next());
    assert!(head.is_empty() || head.starts_with("HTTP/1.1 431"), "{head}");
    // The daemon is unaffected.
    assert_eq!(get(d.main, "/api/cameras").await.status, 200);
}

#[tokio::test]
async fn sigterm_ends_streams_and_exits_zero() {
    let mut d = Daemon::start(&config("", CAM));
    let mut viewers = Vec::new();
    for _ in 0..3 {
        let mut v = Stream::open(d.main, "GET /cameras/cam/stream HTTP/1.1\r\nHost: x\r\n\r\n").await;
        v.next_part().await.unwrap();
        viewers.push(v);
    }
    let mut ev = Stream::open(d.main, "GET /api/events HTTP/1.1\r\nHost: x\r\n\r\n").await;
    ev.fill().await;
    let t = Instant::now();
    d.signal(libc::SIGTERM);
    let status = d.wait_exit(Duration::from_secs(10)).expect("exits after SIGTERM");
    println!("exit after SIGTERM with 3 viewers took {:?}", t.elapsed());
    assert!(status.success(), "{status:?}");
    assert!(t.elapsed() < Duration::from_secs(5));
    for v in &mut viewers {
        while v.next_part().await.is_some() {}
        assert!(v.ended, "stream ended");
    }
    while ev.fill().await {}
    d.logged("SIGTERM: shutting down").await;
}

#[tokio::test]
async fn index_page_and_api_list_cameras() {
    let d = Daemon::start(&config(
        "",
        &format!("{CAM}[[camera]]\nid = \"b\"\nname = \"<Bench> & co\"\nsource = \"test:\"\n"),
    ));
    let page = get(d.main, "/").await;
    assert_eq!(page.status, 200);
    assert_eq!(page.header("content-type"), Some("text/html; charset=utf-8"));
    let html = String::from_utf8(page.body).unwrap();
    // The wall builds its tiles from /api/cameras (names set as text, never as HTML; the
    // browser test checks what it shows).
    assert!(
        html.contains("<body data-refresh=\"1\">") && html.contains("EventSource(authed(\"api/events\"))")
    );
    let all = d.cameras_json().await;
    let list = all.as_array().unwrap();
    assert_eq!(list.len(), 2);
    let c = &list[0];
    for key in [
        "id",
        "name",
        "state",
        "viewers",
        "fps",
        "measured_fps",
        "frames_delivered",
        "frames_skipped",
        "last_frame_age_ms",
        "size",
        "source",
        "stream_url",
        "snapshot_url",
    ] {
        assert!(c.get(key).is_some(), "{key} missing in {c}");
    }
    assert_eq!(c["state"], "idle");
    assert_eq!(c["stream_url"], format!("http://{}/cameras/cam/stream", d.main));
}

#[tokio::test]
async fn metrics_in_prometheus_text_format() {
    let d = Daemon::start(&config("", CAM));
    let mut s = Stream::open(d.main, "GET /cameras/cam/stream HTTP/1.1\r\nHost: x\r\n\r\n").await;
    for _ in 0..3 {
        s.next_part().await.unwrap();
    }
    assert_eq!(get(d.main, "/cameras/cam/snapshot").await.status, 200);
    let r = get(d.main, "/metrics").await;
    assert_eq!(r.status, 200);
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let text = String::from_utf8(r.body).unwrap();
    let value = |series: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series).and_then(|v| v.strip_prefix(' ')))
            .unwrap_or_else(|| panic!("no {series} in:\n{text}"))
            .parse()
            .unwrap()
    };
    assert_eq!(value("farmcam_camera_state{camera=\"cam\",state=\"live\"}"), 1.0);
    assert_eq!(value("farmcam_camera_state{camera=\"cam\",state=\"idle\"}"), 0.0);
    assert_eq!(value("farmcam_camera_viewers{camera=\"cam\"}"), 1.0);
    assert!(value("farmcam_frames_delivered_total{camera=\"cam\"}") >= 3.0);
    assert!(value("farmcam_process_resident_memory_bytes") > 1e6);
    assert_eq!(value("farmcam_snapshot_seconds_count{camera=\"cam\"}"), 1.0);
    assert_eq!(
        value("farmcam_snapshot_seconds_bucket{camera=\"cam\",le=\"+Inf\"}"),
        1.0
    );
    assert!(value("farmcam_bytes_sent_total{camera=\"cam\"}") > 3000.0);
    // Every line is a comment or `name{labels} number`.
    for l in text.lines().filter(|l| !l.starts_with('#')) {
        let (series, v) = l.rsplit_once(' ').unwrap();
        assert!(v.parse::<f64>().is_ok() && series.starts_with("farmcam_"), "{l}");
    }
}

/// Advertised URLs follow a reverse proxy's X-Forwarded-* headers, or `[http] public_url`; a
/// dedicated port is advertised on the host the client used, never the bind address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn advertised_urls_follow_the_proxy_or_public_url() {
    let cam = "[[camera]]\nid = \"cam\"\nsource = \"test:\"\nlisten = \"0.0.0.0:0\"\n";
    let d = Daemon::start(&config("", cam));
    let dedicated = d.cameras["cam"].port();
    let api = |headers: &'static str| {
        let raw = format!("GET /api/cameras HTTP/1.1\r\n{headers}Connection: close\r\n\r\n");
        let addr = d.main;
        async move {
            let r = request(addr, &raw).await;
            let v: Value = serde_json::from_slice(&r.body).unwrap();
            v[0].clone()
        }
    };
    let direct = api("Host: farm-pi:8080\r\n").await;
    assert_eq!(direct["stream_url"], "http://farm-pi:8080/cameras/cam/stream");
    assert_eq!(
        direct["dedicated_url"],
        format!("http://farm-pi:{dedicated}/?action=stream"),
        "the client's host, not 0.0.0.0"
    );
    assert_eq!(
        direct["dedicated_snapshot_url"],
        format!("http://farm-pi:{dedicated}/?action=snapshot")
    );
    // MainsailOS's nginx: its upstream name as Host, the real one in X-Forwarded-*.
    let proxied = api(
        "Host: mjpgstreamer1\r\nX-Forwarded-Host: printer.local\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Prefix: /webcam/\r\n",
    )
    .await;
    assert_eq!(
        proxied["stream_url"],
        "https://printer.local/webcam/cameras/cam/stream"
    );
    assert_eq!(
        proxied["snapshot_url"],
        "https://printer.local/webcam/cameras/cam/snapshot"
    );
    // Junk in a header is not echoed.
    let junk = api("Host: x\"><script>\r\n").await;
    assert_eq!(junk["stream_url"], "http://localhost/cameras/cam/stream");

    let public = Daemon::start(&config("public_url = \"https://farm.example/cams/\"\n", cam));
    let r = get(public.main, "/api/cameras").await;
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v[0]["stream_url"], "https://farm.example/cams/cameras/cam/stream");
    assert_eq!(
        v[0]["dedicated_url"],
        format!(
            "http://farm.example:{}/?action=stream",
            public.cameras["cam"].port()
        )
    );
}

/// `?max_age=0` asks for a frame captured after the request: a live camera answers with the next
/// one (it used to wait the whole snapshot_timeout and answer 503).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_age_zero_is_the_next_frame() {
    let d = Daemon::start(&config("", CAM));
    let mut s = Stream::open(d.main, "GET /cameras/cam/stream HTTP/1.1\r\nHost: x\r\n\r\n").await;
    s.next_part().await.expect("live");
    for _ in 0..3 {
        let asked = unix_now();
        let r = get(d.main, "/cameras/cam/snapshot?max_age=0").await;
        assert_eq!(r.status, 200);
        let taken: f64 = r.header("x-timestamp").unwrap().parse().unwrap();
        assert!(taken >= asked - 0.001, "captured {taken}, asked {asked}");
    }
}

/// No query string makes a handler fail: every answer is a success or a clear 4xx, never a 500,
/// and the daemon goes on (a panic in `Duration::from_secs_f64` used to kill the request).
#[test]
fn no_query_string_makes_a_handler_fail() {
    use proptest::prelude::*;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let d = Daemon::start(&config("", CAM));
    let paths = [
        "/cameras/cam/stream",
        "/cameras/cam/snapshot",
        "/cameras/cam/",
        "/",
        "/api/events",
        "/api/cameras",
        "/snapshot",
    ];
    let keys = [
        "fps",
        "max_age",
        "action",
        "last_event_id",
        "refresh",
        "width",
        "x",
    ];
    // Random values, and the ones that broke handlers before (tiny, huge, not a number).
    let value = prop_oneof![
        3 => "[-+0-9eE.naINfx%/=]{0,24}".boxed(),
        1 => proptest::sample::select(vec!["1e-300", "4.9e-324", "1e-20", "NaN", "inf", "-0", "1e309", "0"])
            .prop_map(String::from)
            .boxed(),
    ];
    let pair = (0..keys.len(), value);
    let strategy = (0..paths.len(), proptest::collection::vec(pair, 0..4));
    let mut runner = proptest::test_runner::TestRunner::new(proptest::test_runner::Config {
        cases: 300,
        ..Default::default()
    });
    runner
        .run(&strategy, |(p, pairs)| {
            let q: Vec<String> = pairs.iter().map(|(k, v)| format!("{}={v}", keys[*k])).collect();
            let target = format!("{}?{}", paths[p], q.join("&"));
            let status = rt.block_on(async {
                let raw = format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n");
                tokio::time::timeout(Duration::from_secs(30), Stream::open(d.main, &raw))
                    .await
                    .map(|s| s.status)
                    .unwrap_or(0)
            });
            prop_assert!((200..500).contains(&status), "{target}: {status}");
            Ok(())
        })
        .unwrap();
    assert!(!d.log_text().contains("internal error"), "{}", d.log_text());
    assert!(rt.block_on(get(d.main, "/api/cameras")).status == 200);
}
