//! RTSP out: real clients (ffmpeg/ffprobe, GStreamer's rtspsrc, Retina, the RTSP library of the
//! Moonfire NVR) play each camera's H.264 over TCP and UDP from the camera's one connection, while
//! MJPEG viewers watch the same camera; sessions end with TEARDOWN, a dropped connection or the
//! limits, and bad requests get clear status codes.

mod common;

use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

use common::proc::open_fds;
use common::rtsp::{decode, probe, RtspOptions, RtspServer};
use common::rtsp_client::Client;
use common::{config, eventually_async, Daemon};
use futures_util::StreamExt;

const WAIT: Duration = Duration::from_secs(60);

fn farm(camera_url: &str, http_extra: &str, rtsp_extra: &str) -> Daemon {
    Daemon::start(&config(
        http_extra,
        &format!(
            "[rtsp]\nlisten = \"127.0.0.1:0\"\nudp_port = 0\n{rtsp_extra}\n\
             [[camera]]\nid = \"cam\"\nsource = \"{camera_url}\"\nidle_grace = \"2s\"\n\
             [[camera]]\nid = \"pattern\"\nsource = \"test:\"\n"
        ),
    ))
}

async fn rtsp_sessions(d: &Daemon) -> usize {
    d.camera("cam").await["rtsp_sessions"]
        .as_array()
        .map_or(0, |a| a.len())
}

/// Retina plays `frames` frames: the picture size its parameters say, and the frames it got.
async fn retina_plays(
    url: &str,
    transport: retina::client::Transport,
    creds: Option<(&str, &str)>,
) -> ((u32, u32), usize) {
    use retina::client::{Credentials, PlayOptions, Session, SessionOptions, SetupOptions};
    use retina::codec::{CodecItem, ParametersRef};
    let url = rtsp_types::Url::parse(url).unwrap();
    let creds = creds.map(|(u, p)| Credentials {
        username: u.into(),
        password: p.into(),
    });
    let mut session = Session::describe(url, SessionOptions::default().creds(creds))
        .await
        .expect("Retina describes");
    let i = session
        .streams()
        .iter()
        .position(|s| s.media() == "video")
        .unwrap();
    let sdp = session.sdp().to_vec();
    session
        .setup(i, SetupOptions::default().transport(transport))
        .await
        .expect("Retina sets up");
    let from_sdp = match session.streams()[i].parameters() {
        Some(ParametersRef::Video(v)) => Some(v.pixel_dimensions()),
        _ => None,
    };
    let mut playing = session
        .play(PlayOptions::default())
        .await
        .expect("Retina plays")
        .demuxed()
        .unwrap();
    let mut frames = 0;
    tokio::time::timeout(WAIT, async {
        while frames < 30 {
            let item = playing
                .next()
                .await
                .expect("the stream goes on")
                .expect("no protocol error");
            if let CodecItem::VideoFrame(f) = item {
                assert!(
                    frames > 0 || f.is_random_access_point(),
                    "the first frame is a keyframe"
                );
                assert_eq!(f.loss(), 0, "no packet lost");
                frames += 1;
            }
        }
    })
    .await
    .expect("30 frames within the limit");
    let dims = match playing.streams()[i].parameters() {
        Some(ParametersRef::Video(v)) => v.pixel_dimensions(),
        other => panic!("no video parameters: {other:?}"),
    };
    assert_eq!(
        from_sdp,
        Some(dims),
        "the SDP's parameter sets say the size: {}",
        String::from_utf8_lossy(&sdp)
    );
    (dims, frames)
}

/// Every client together, over TCP and UDP, while an MJPEG viewer watches: each sees the
/// camera's own H.264 (codec, size, rate), frames decode without errors or gaps, and the camera
/// has one connection. When the last one leaves, the camera closes after its grace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_clients_play_the_cameras_h264_over_tcp_and_udp_from_one_connection() {
    let server = RtspServer::start(RtspOptions {
        keyint: Some(15),
        ..Default::default()
    });
    let d = farm(&server.url(), "", "");
    let url = d.rtsp_url("cam");
    let mut viewer = common::open_stream(&d, "cam").await;
    common::part_where(&mut viewer, WAIT, "a live MJPEG frame", common::is_live).await;
    let c = d.camera("cam").await;
    assert_eq!(
        c["rtsp_url"],
        format!("rtsp://127.0.0.1:{}/cam", d.rtsp.unwrap().port()),
        "{c}"
    );
    let pattern = d.camera("pattern").await;
    assert!(
        pattern["rtsp_url"].is_null(),
        "an MJPEG camera has no RTSP URL: {pattern}"
    );

    let mut clients = Vec::new();
    for transport in ["tcp", "udp"] {
        let u = url.clone();
        clients.push(tokio::task::spawn_blocking(move || {
            assert_eq!(
                probe(&u, transport),
                "h264,320,240,15/1",
                "ffprobe over {transport}"
            );
            let (times, errors) = decode(&u, transport, 60);
            assert!(
                errors.trim().is_empty(),
                "ffmpeg decodes without errors over {transport}: {errors}"
            );
            assert!(times.len() >= 55, "frames over {transport}: {times:?}");
            let worst = times.windows(2).map(|w| w[1] - w[0]).fold(0.0, f64::max);
            assert!(
                worst <= 1.5 / 15.0,
                "no gap of more than a frame over {transport}: {worst} s in {times:?}"
            );
        }));
        let (u, log) = (url.clone(), d.log.clone());
        clients.push(tokio::task::spawn_blocking(move || {
            let out = common::rtsp::gst_plays(&u, transport);
            assert!(
                out.status.success(),
                "GStreamer's rtspsrc plays over {transport}: {}\nfarmcam's RTSP log: {:#?}",
                String::from_utf8_lossy(&out.stderr),
                log.lock()
                    .unwrap()
                    .iter()
                    .filter(|l| l.contains("rtsp"))
                    .collect::<Vec<_>>()
            );
        }));
    }
    for transport in [
        retina::client::Transport::Tcp(Default::default()),
        retina::client::Transport::Udp(Default::default()),
    ] {
        let u = url.clone();
        clients.push(tokio::spawn(async move {
            let (dims, frames) = retina_plays(&u, transport, None).await;
            assert_eq!((dims, frames), ((320, 240), 30));
        }));
    }
    // All of them at once: one connection at the camera.
    eventually_async(WAIT, "RTSP clients listed", || async {
        (rtsp_sessions(&d).await >= 3).then_some(())
    })
    .await;
    for c in clients {
        c.await.unwrap();
    }
    assert_eq!(
        server.clients.load(SeqCst),
        1,
        "one connection at the camera for everyone"
    );
    let c = d.camera("cam").await;
    assert!(c["rtsp_bytes_sent"].as_u64() > Some(10_000), "{c}");
    let metrics = String::from_utf8(common::get(d.main, "/metrics").await.body).unwrap();
    assert!(
        metrics.contains("farmcam_rtsp_bytes_sent_total{camera=\"cam\"}"),
        "{metrics}"
    );
    eventually_async(WAIT, "every RTSP session ended", || async {
        (rtsp_sessions(&d).await == 0 && d.camera("cam").await["rtsp_clients"] == 0).then_some(())
    })
    .await;
    drop(viewer);
    d.wait_for("cam", WAIT, |c| c["state"] == "idle").await;
    assert_eq!(server.clients.load(SeqCst), 1);
}

/// TEARDOWN and a dropped TCP connection both free the session: gone from the status, the
/// camera's consumer released, no descriptor left open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn teardown_and_a_dropped_connection_free_the_session() {
    let server = RtspServer::start(RtspOptions::default());
    let d = farm(&server.url(), "", "");
    let pid = d.child.id();
    let url = d.rtsp_url("cam");
    let before = open_fds(pid);

    let mut c = Client::connect(&d).await;
    let r = c.request("OPTIONS", &url, "").await.unwrap();
    assert_eq!(r.status, 200);
    assert!(r.header("public").unwrap().contains("DESCRIBE"), "{r:?}");
    let id = c.play_tcp(&url).await;
    c.media(0, 20).await;
    let s = d.camera("cam").await;
    assert_eq!(s["rtsp_clients"], 1, "{s}");
    let listed = &s["rtsp_sessions"][0];
    assert_eq!(
        (
            listed["id"].as_str(),
            listed["transport"].as_str(),
            listed["playing"].as_bool()
        ),
        (Some(id.as_str()), Some("tcp"), Some(true)),
        "{s}"
    );
    // GET_PARAMETER keeps it alive; PAUSE stops the media, PLAY resumes it.
    let r = c
        .request("GET_PARAMETER", &url, &format!("Session: {id}\r\n"))
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let r = c
        .request("PAUSE", &url, &format!("Session: {id}\r\n"))
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    d.wait_for("cam", WAIT, |c| c["rtsp_sessions"][0]["playing"] == false)
        .await;
    let r = c
        .request("PLAY", &url, &format!("Session: {id}\r\n"))
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    c.media(0, 10).await;
    let r = c
        .request("TEARDOWN", &url, &format!("Session: {id}\r\n"))
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    d.wait_for("cam", WAIT, |c| {
        c["rtsp_sessions"].as_array().is_some_and(|a| a.is_empty()) && c["rtsp_clients"] == 0
    })
    .await;
    // The connection stays usable; a PLAY of the ended session is refused.
    let r = c
        .request("PLAY", &url, &format!("Session: {id}\r\n"))
        .await
        .unwrap();
    assert_eq!(r.status, 454, "{r:?}");

    // A client that vanishes mid-stream.
    let mut c2 = Client::connect(&d).await;
    c2.play_tcp(&url).await;
    c2.media(0, 10).await;
    assert_eq!(rtsp_sessions(&d).await, 1);
    drop(c2);
    drop(c);
    d.wait_for("cam", WAIT, |c| {
        c["rtsp_sessions"].as_array().is_some_and(|a| a.is_empty())
    })
    .await;
    d.wait_for("cam", WAIT, |c| c["state"] == "idle").await;
    eventually_async(WAIT, "descriptors back to where they were", || async {
        (open_fds(pid) <= before).then_some(())
    })
    .await;
}

/// Requests that are wrong get a status code saying how, and 200 sessions from one host meet
/// the per-client limit: nothing panics, nothing leaks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_and_too_many_sessions_get_clear_status_codes() {
    let server = RtspServer::start(RtspOptions::default());
    let d = farm(&server.url(), "", "max_sessions_per_client = 4");
    let pid = d.child.id();
    let url = d.rtsp_url("cam");
    let before = open_fds(pid);

    let mut c = Client::connect(&d).await;
    let r = c.request("DESCRIBE", &d.rtsp_url("nope"), "").await.unwrap();
    assert_eq!(r.status, 404);
    assert!(r.body.contains("no camera \"nope\""), "{r:?}");
    let r = c.request("DESCRIBE", &d.rtsp_url("pattern"), "").await.unwrap();
    assert_eq!(r.status, 415, "an MJPEG camera: {r:?}");
    assert!(r.body.contains("MJPEG"), "{r:?}");
    let r = c.setup_tcp(&url).await.unwrap();
    assert_eq!(r.status, 455, "SETUP without DESCRIBE: {r:?}");
    assert!(r.body.contains("DESCRIBE"), "{r:?}");
    let r = c.request("PLAY", &url, "Session: 12345\r\n").await.unwrap();
    assert_eq!(r.status, 454, "{r:?}");
    let r = c.request("ANNOUNCE", &url, "").await.unwrap();
    assert_eq!(r.status, 405, "{r:?}");
    let r = c.request("DESCRIBE", &url, "").await.unwrap();
    assert_eq!(r.status, 200);
    assert!(
        r.body.contains("sprop-parameter-sets=") && r.body.contains("a=x-dimensions:320,240"),
        "{}",
        r.body
    );
    let r = c
        .request(
            "SETUP",
            &format!("{url}/trackID=0"),
            "Transport: RTP/AVP;multicast\r\n",
        )
        .await
        .unwrap();
    assert_eq!(r.status, 461, "{r:?}");
    // Not RTSP at all: 400, and the connection closes.
    let mut g = Client::connect(&d).await;
    g.send_raw(b"\x16\x03\x01\x02\x00garbage garbage\r\n\r\n").await;
    let r = g.reply().await.unwrap();
    assert_eq!(r.status, 400, "{r:?}");
    assert!(g.reply().await.is_none(), "closed after a 400");
    let mut g = Client::connect(&d).await;
    g.send_raw(b"OPTIONS * RTSP/1.0\r\n\r\n").await;
    assert_eq!(g.reply().await.unwrap().status, 400, "no CSeq");

    // 200 sessions from one host, each on its own connection, all kept open.
    let mut held = Vec::new();
    let mut statuses = std::collections::BTreeMap::new();
    for _ in 0..200 {
        let mut k = Client::connect(&d).await;
        let status = match k.request("DESCRIBE", &url, "").await {
            Some(r) if r.status == 200 => k.setup_tcp(&url).await.map_or(0, |r| r.status),
            Some(r) => r.status,
            None => 0,
        };
        *statuses.entry(status).or_insert(0) += 1;
        held.push(k);
    }
    // Four seats for this host: `c`'s DESCRIBE above holds one (a described camera is held
    // open, so it counts), three sessions take the rest.
    assert_eq!(statuses.get(&200), Some(&3), "{statuses:?}");
    // The rest: Not Enough Bandwidth, at DESCRIBE (its seat) or at accept (8 connections per
    // client: answered and closed at once, which a client writing its request meanwhile may
    // see as a reset: 0).
    assert_eq!(
        statuses.get(&453).copied().unwrap_or(0) + statuses.get(&0).copied().unwrap_or(0),
        197,
        "{statuses:?}"
    );
    assert!(statuses.get(&453).copied().unwrap_or(0) >= 4, "{statuses:?}");
    assert_eq!(rtsp_sessions(&d).await, 3);
    drop(held);
    drop((c, g));
    d.wait_for("cam", WAIT, |c| {
        c["rtsp_sessions"].as_array().is_some_and(|a| a.is_empty())
    })
    .await;
    eventually_async(WAIT, "descriptors back to where they were", || async {
        (open_fds(pid) <= before).then_some(())
    })
    .await;
    // Still serving.
    let mut c = Client::connect(&d).await;
    assert_eq!(c.request("OPTIONS", &url, "").await.unwrap().status, 200);
    assert!(!d.log_text().contains("panicked"));
}

/// The `streams` area of `[http.auth]`: Basic for its users, `?token=` in the URL, and Digest
/// once every user has an `rtsp_digest`; no credential reaches the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtsp_asks_for_the_users_and_tokens_of_http_auth() {
    let server = RtspServer::start(RtspOptions::default());
    let token = "rtsp-token-0123456789abcdef";
    let hash = common::hash_password("s3cret-pw");
    let start = |user: &str| {
        Daemon::start(&config(
            "",
            &format!(
                "[http.auth]\ntokens = [\"{token}\"]\nusers = [{{ name = \"ha\", password_hash = \"{hash}\"{user} }}]\n\
                 [rtsp]\nlisten = \"127.0.0.1:0\"\nudp_port = 0\n[[camera]]\nid = \"cam\"\nsource = \"{}\"\n",
                server.url()
            ),
        ))
    };
    // Basic only (the user has no rtsp_digest).
    let d = start("");
    let url = d.rtsp_url("cam");
    let mut c = Client::connect(&d).await;
    let r = c.request("DESCRIBE", &url, "").await.unwrap();
    assert_eq!(r.status, 401, "{r:?}");
    let challenges: Vec<&str> = r
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("www-authenticate"))
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(
        challenges,
        ["Basic realm=\"farmcam\", charset=\"UTF-8\""],
        "{r:?}"
    );
    let r = c
        .request(
            "DESCRIBE",
            &url,
            &format!(
                "Authorization: Basic {}\r\n",
                common::basic_credentials("ha", "wrong")
            ),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 401);
    // ffprobe answers the challenge with the URL's user and password.
    let with_user = url.replace("rtsp://", "rtsp://ha:s3cret-pw@");
    assert_eq!(probe(&with_user, "tcp"), "h264,320,240,15/1");
    assert_eq!(probe(&format!("{url}?token={token}"), "udp"), "h264,320,240,15/1");
    assert_eq!(
        probe(&format!("{url}?token=not-the-token-at-all"), "tcp"),
        "",
        "a wrong token gets nothing"
    );
    d.logged("failed login from 127.0.0.1").await;
    let log = d.log_text();
    assert!(!log.contains(token) && !log.contains("s3cret-pw"), "{log}");
    drop(d);

    // Digest offered too: ffmpeg and Retina prefer it.
    let digest = common::rtsp_digest("ha", "s3cret-pw");
    let d = start(&format!(", rtsp_digest = \"{digest}\""));
    let url = d.rtsp_url("cam");
    let mut c = Client::connect(&d).await;
    let r = c.request("DESCRIBE", &url, "").await.unwrap();
    assert_eq!(r.status, 401);
    let challenges: Vec<&str> = r
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("www-authenticate"))
        .map(|(_, v)| v.as_str())
        .collect();
    assert!(
        challenges.len() == 2 && challenges[0].starts_with("Digest realm=\"farmcam\", nonce=\""),
        "{challenges:?}"
    );
    let with_user = url.replace("rtsp://", "rtsp://ha:s3cret-pw@");
    assert_eq!(
        probe(&with_user, "tcp"),
        "h264,320,240,15/1",
        "ffprobe over Digest"
    );
    let (dims, _) = retina_plays(
        &url,
        retina::client::Transport::Tcp(Default::default()),
        Some(("ha", "s3cret-pw")),
    )
    .await;
    assert_eq!(dims, (320, 240));
    assert_eq!(
        probe(&url.replace("rtsp://", "rtsp://ha:wrong@"), "tcp"),
        "",
        "a wrong password over Digest gets nothing"
    );
    d.logged("wrong password (Digest)").await;
    let log = d.log_text();
    assert!(!log.contains("s3cret-pw") && !log.contains(&digest), "{log}");
}

/// A client that stops reading falls behind alone: the others keep every packet, and it resumes
/// at a keyframe (with its parameter sets) after a gap, counted in its status as a skip.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_falls_behind_skips_to_the_next_keyframe_alone() {
    // Keyframes five times a second: enough bytes to fill what the kernel buffers soon.
    let server = RtspServer::start(RtspOptions {
        size: Some("640x480".into()),
        fps: Some(30),
        keyint: Some(6),
        ..Default::default()
    });
    let d = farm(&server.url(), "", "");
    let url = d.rtsp_url("cam");
    // The slow one reads through a small window, so the server's queue for it fills soon.
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let mut slow = Client {
        sock: sock.connect(d.rtsp.unwrap()).await.unwrap(),
        buf: Vec::new(),
        cseq: 0,
    };
    let slow_id = slow.play_tcp(&url).await;
    let mut fast = Client::connect(&d).await;
    fast.play_tcp(&url).await;
    slow.packets(0, 5).await;
    // The slow client reads nothing now; the fast one reads on, without a gap.
    let mut last = None;
    let skipped = |c: &serde_json::Value| {
        c["rtsp_sessions"]
            .as_array()
            .and_then(|a| a.iter().find(|s| s["id"] == slow_id.as_str()))
            .map_or(0, |s| s["skips"].as_u64().unwrap_or(0))
    };
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        for (seq, _) in fast.packets(0, 30).await {
            if let Some(l) = last {
                assert_eq!(
                    seq,
                    u16::wrapping_add(l, 1),
                    "the client that keeps up loses nothing"
                );
            }
            last = Some(seq);
        }
        if skipped(&d.camera("cam").await) > 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the slow client never fell behind"
        );
    }
    // Reading again: what was queued, a gap, then a keyframe's first NAL unit (its SPS).
    let mut got = Vec::new();
    let gap = loop {
        got.extend(slow.packets(0, 50).await);
        if let Some(g) = got.windows(2).position(|w| w[1].0 != w[0].0.wrapping_add(1)) {
            if got.len() >= g + 3 {
                break g;
            }
        }
    };
    assert!(
        matches!(got[gap + 1].1, 5 | 7),
        "resumes at a keyframe: {:?}",
        &got[gap..gap + 3]
    );
    assert_eq!(
        d.camera("cam").await["rtsp_sessions"].as_array().unwrap().len(),
        2,
        "both still there"
    );
}

/// A UDP session that sends neither requests nor RTCP reports ends after `session_timeout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_udp_session_times_out() {
    let server = RtspServer::start(RtspOptions::default());
    let d = farm(&server.url(), "", "session_timeout = \"2s\"");
    let url = d.rtsp_url("cam");
    let rtp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = rtp.local_addr().unwrap().port();
    let mut c = Client::connect(&d).await;
    assert_eq!(c.request("DESCRIBE", &url, "").await.unwrap().status, 200);
    let r = c
        .request(
            "SETUP",
            &format!("{url}/trackID=0"),
            &format!("Transport: RTP/AVP;unicast;client_port={port}-{}\r\n", port + 1),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    let transport = r.header("transport").unwrap().to_string();
    assert!(
        transport.contains(&format!("client_port={port}-")) && transport.contains("server_port="),
        "{transport}"
    );
    let id = r.session();
    assert!(r.header("session").unwrap().ends_with(";timeout=2"), "{r:?}");
    assert_eq!(
        c.request("PLAY", &url, &format!("Session: {id}\r\n"))
            .await
            .unwrap()
            .status,
        200
    );
    let mut buf = [0u8; 2048];
    for _ in 0..5 {
        let n = tokio::time::timeout(WAIT, rtp.recv(&mut buf))
            .await
            .expect("RTP over UDP")
            .unwrap();
        assert!(n > 12 && buf[0] >> 6 == 2);
    }
    d.wait_for("cam", WAIT, |c| {
        c["rtsp_sessions"].as_array().is_some_and(|a| a.is_empty())
    })
    .await;
    d.logged(&format!("rtsp: session {id} timed out")).await;
    // The connection, silent as long and without a session now, is closed too.
    assert!(c.reply().await.is_none(), "the idle connection closes");
}

/// An H.265 camera goes out as H.265 (RFC 7798): its VPS, SPS and PPS in the SDP, ffprobe reads
/// codec and size, Retina plays it without loss from a keyframe.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h265_camera_is_served_as_h265() {
    let server = RtspServer::start(RtspOptions {
        h265: true,
        ..Default::default()
    });
    let d = farm(&server.url(), "", "");
    let url = d.rtsp_url("cam");
    let mut c = Client::connect(&d).await;
    let r = c.request("DESCRIBE", &url, "").await.unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    assert!(
        r.body.contains("a=rtpmap:96 H265/90000")
            && r.body.contains("sprop-vps=")
            && r.body.contains("sprop-sps=")
            && r.body.contains("sprop-pps=")
            && r.body.contains("a=x-dimensions:320,240"),
        "{}",
        r.body
    );
    drop(c);
    let u = url.clone();
    let probed = tokio::task::spawn_blocking(move || probe(&u, "tcp"))
        .await
        .unwrap();
    assert!(probed.starts_with("hevc,320,240,"), "{probed}");
    let (dims, frames) = retina_plays(&url, retina::client::Transport::Udp(Default::default()), None).await;
    assert_eq!((dims, frames), ((320, 240), 30));
}

/// The first client of a camera that was idle (an NVR starting to record, Home Assistant's first
/// probe) reads the rate the camera sends: the RTP clock's step is known before the first packet
/// leaves. Ten times in a row, every other time with both cores kept busy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_client_of_an_idle_camera_reads_its_rate() {
    let server = RtspServer::start(RtspOptions::default());
    let d = Daemon::start(&config(
        "",
        &format!(
            "[rtsp]\nlisten = \"127.0.0.1:0\"\nudp_port = 0\n\
             [[camera]]\nid = \"cam\"\nsource = \"{}\"\nidle_grace = \"1s\"\n",
            server.url()
        ),
    ));
    let url = d.rtsp_url("cam");
    for round in 0..10 {
        d.wait_for("cam", WAIT, |c| c["state"] == "idle").await;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let load: Vec<_> = (0..if round % 2 == 1 { 2 } else { 0 })
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut x = 0u64;
                    while !stop.load(SeqCst) {
                        x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
                    }
                })
            })
            .collect();
        let transport = if round % 4 < 2 { "tcp" } else { "udp" };
        let url = url.clone();
        let said = tokio::task::spawn_blocking(move || probe(&url, transport))
            .await
            .unwrap();
        stop.store(true, SeqCst);
        for t in load {
            t.join().unwrap();
        }
        assert_eq!(said, "h264,320,240,15/1", "round {round} ({transport})");
    }
}

/// A camera that reconnects under a playing session: the session goes on with the same SSRC and
/// sequence, and its timestamps never run back (an NVR would see time go backwards).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timestamps_never_run_back_across_a_camera_reconnect() {
    let mut server = RtspServer::start(RtspOptions::default());
    let d = farm(&server.url(), "", "");
    let url = d.rtsp_url("cam");
    let mut c = Client::connect(&d).await;
    c.play_tcp(&url).await;
    let header = |p: &Vec<u8>| {
        (
            u16::from_be_bytes([p[2], p[3]]),
            u32::from_be_bytes([p[4], p[5], p[6], p[7]]),
            u32::from_be_bytes([p[8], p[9], p[10], p[11]]),
        )
    };
    let mut seen: Vec<(u16, u32, u32)> = c.rtp(0, 40).await.iter().map(header).collect();
    server.restart();
    // Packets until the camera is back (a new connection at the server), then some more.
    while server.clients.load(SeqCst) == 0 {
        seen.extend(c.rtp(0, 1).await.iter().map(header));
    }
    seen.extend(c.rtp(0, 60).await.iter().map(header));
    let ssrc = seen[0].2;
    for w in seen.windows(2) {
        let ((s0, t0, _), (s1, t1, x)) = (w[0], w[1]);
        assert_eq!(x, ssrc, "one SSRC for the session");
        assert_eq!(s1, s0.wrapping_add(1), "no sequence gap");
        assert!((t1.wrapping_sub(t0) as i32) >= 0, "time ran back: {t0} then {t1}");
    }
    assert!(
        d.log_text().contains("rtsp: session") && !d.log_text().contains("changed codec"),
        "{}",
        d.log_text()
    );
}

/// A camera watched only over RTSP (no picture decoded) still reports its size, from its SPS, and
/// its rate, from its units: Moonraker's aspect ratio and the metrics follow them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_camera_watched_only_as_coded_video_reports_its_size_and_rate() {
    let server = RtspServer::start(RtspOptions::default());
    let d = farm(&server.url(), "", "");
    let mut c = Client::connect(&d).await;
    c.play_tcp(&d.rtsp_url("cam")).await;
    c.rtp(0, 20).await;
    let cam = d
        .wait_for("cam", WAIT, |c| {
            c["size"] == "320x240" && c["measured_fps"].as_f64().is_some_and(|f| f > 10.0)
        })
        .await;
    assert_eq!(cam["decoder"], "off", "nothing decoded: {cam}");
    let m = String::from_utf8(common::get(d.main, "/metrics").await.body).unwrap();
    let fps = m
        .lines()
        .find_map(|l| l.strip_prefix("farmcam_camera_fps{camera=\"cam\"} "))
        .and_then(|v| v.parse::<f64>().ok());
    assert!(fps.is_some_and(|f| f > 10.0), "{m}");
}
