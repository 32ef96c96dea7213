//! The fault suite: what a demanding operator or a hostile LAN host does to farmcam, and what a
//! user checks afterwards: nothing lost, no orphan process, file descriptors and memory back to
//! where they were, a fair share for the well-behaved.
//!
//! Short form (CI, seconds per case): `cargo nextest run --test faults`. Long form, with the
//! figures BENCHMARKS.md records (minutes per case, beyond nextest's timeout):
//! `FARMCAM_FAULTS=long cargo test --test faults -- --nocapture --test-threads=1`
//! (each case prints one `fault:` line).

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::mjpeg_server::MjpegServer;
use common::mqtt::{Mosquitto, Sub};
use common::proc::{children, cmdline, ffmpeg_children, proc_state};
use common::rtsp::{RtspOptions, RtspServer};
use common::{
    config, eventually, eventually_async, get, live_frame, open_stream, placeholder_frame, request, Daemon,
    Stream,
};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const WAIT: Duration = Duration::from_secs(30);

/// Iterations: the short form's, or the long form's.
fn n(short: usize, long: usize) -> usize {
    if std::env::var("FARMCAM_FAULTS").as_deref() == Ok("long") {
        long
    } else {
        short
    }
}

fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Wait until farmcam's descriptors are back to `base` (a few may be in flight: the journal,
/// a probe), and its memory within `slack_kb` of `base_rss`.
async fn back_to_baseline(d: &Daemon, base: usize, base_rss: u64, slack_kb: u64) -> (usize, u64) {
    let pid = d.child.id();
    eventually(WAIT, "descriptors back to the baseline", || {
        (fds(pid) <= base + 2).then_some(())
    })
    .await;
    let rss = rss_kb(pid);
    assert!(
        rss <= base_rss + slack_kb,
        "RSS {rss} kB after, {base_rss} kB before"
    );
    (fds(pid), rss)
}

fn connect_from(ip: &str, to: SocketAddr) -> impl std::future::Future<Output = std::io::Result<TcpStream>> {
    common::proc::connect_from(ip.parse().unwrap(), to)
}

/// ffmpeg SIGKILLed again and again under a viewer: the viewer stays, each time frames come
/// back from a fresh ffmpeg; no zombie, no orphan; once the viewer leaves, no child at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_kill_storm() {
    let rtsp = RtspServer::start(RtspOptions::default());
    let d = Daemon::start(&config(
        "",
        &format!(
            "[[camera]]\nid = \"cam\"\nsource = \"{}\"\nidle_grace = \"1s\"\n{}",
            rtsp.url(),
            common::FFMPEG_INGEST
        ),
    ));
    let pid = d.child.id();
    let (base, base_rss) = (fds(pid), rss_kb(pid));
    let mut s = open_stream(&d, "cam").await;
    live_frame(&mut s).await;
    // Each kill is a failure of the camera's connection: farmcam backs off (1 s doubling to
    // 30 s) so as not to hammer a camera, which bounds how fast a storm can go.
    let kills = n(4, 15);
    let recovery = Duration::from_secs(60);
    let started = Instant::now();
    let mut recoveries = Vec::new();
    for _ in 0..kills {
        let ingest = ffmpeg_children(pid, "/cam");
        assert_eq!(ingest.len(), 1, "one ffmpeg reads the camera");
        // SAFETY: kill(2) on a child of the daemon under test.
        unsafe { libc::kill(ingest[0] as i32, libc::SIGKILL) };
        let t = Instant::now();
        eventually(recovery, "a fresh ffmpeg", || {
            ffmpeg_children(pid, "/cam")
                .iter()
                .any(|c| *c != ingest[0])
                .then_some(())
        })
        .await;
        common::part_where(&mut s, recovery, "a live frame from the new ffmpeg", |p| {
            common::is_live(p) && ffmpeg_children(pid, "/cam").first() != Some(&ingest[0])
        })
        .await;
        recoveries.push(t.elapsed());
        assert!(proc_state(ingest[0]).is_none(), "the killed ffmpeg was reaped");
    }
    for c in children(pid) {
        assert_ne!(proc_state(c), Some('Z'), "zombie {c}: {}", cmdline(c));
    }
    drop(s);
    eventually(WAIT, "no child once the viewer left", || {
        children(pid).is_empty().then_some(())
    })
    .await;
    let (f, rss) = back_to_baseline(&d, base, base_rss, 30_000).await;
    recoveries.sort();
    println!(
        "fault: ffmpeg kill storm: {kills} SIGKILLs in {:.0?}, recovery median {:.1?} max {:.1?}; fds {base} -> {f}, RSS {base_rss} -> {rss} kB",
        started.elapsed(),
        recoveries[recoveries.len() / 2],
        recoveries.last().unwrap()
    );
}

/// The camera and the MQTT broker go away and come back, again and again: the viewer sees the
/// offline image and then live frames each time; farmcam is online on the broker after each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_and_broker_flaps() {
    let mut rtsp = RtspServer::start(RtspOptions::default());
    let mut broker = Mosquitto::start("");
    let mut sub = Sub::connect(broker.port, &["farmcam/#"], None).await;
    let d = Daemon::start(&config(
        "",
        &format!(
            "[mqtt]\nurl = \"{}\"\nnode_id = \"faults\"\nsnapshot_interval = \"off\"\n\
             [[camera]]\nid = \"cam\"\nsource = \"{}\"\nidle_grace = \"1s\"\n",
            broker.url(),
            rtsp.url()
        ),
    ));
    let pid = d.child.id();
    sub.wait_for(WAIT, "online", |m| {
        m.topic == "farmcam/faults/status" && m.text() == "online"
    })
    .await;
    let mut s = open_stream(&d, "cam").await;
    live_frame(&mut s).await;
    let flaps = n(2, 15);
    for _ in 0..flaps {
        rtsp.stop();
        placeholder_frame(&mut s).await;
        rtsp.restart();
        live_frame(&mut s).await;

        broker.restart();
        sub = Sub::connect(broker.port, &["farmcam/#"], None).await;
        sub.wait_for(WAIT, "online again", |m| {
            m.topic == "farmcam/faults/status" && m.text() == "online"
        })
        .await;
    }
    let ffmpegs = children(pid)
        .into_iter()
        .filter(|c| cmdline(*c).contains("ffmpeg"))
        .count();
    assert!(ffmpegs <= 2, "one ingest and one decoder at most: {ffmpegs}");
    let opens = d.camera("cam").await["upstream_opens"].as_u64().unwrap();
    println!("fault: {flaps} camera flaps and {flaps} broker restarts: viewer kept, {opens} camera opens, {ffmpegs} ffmpeg after");
}

/// Viewers come and go, and some never read: the well-behaved viewer keeps its frames, the
/// never-reading ones are dropped by the write timeout, and afterwards nothing is left over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewer_churn_with_never_reading_clients() {
    let d = Daemon::start(&config(
        "write_timeout = \"2s\"\nmax_connections_per_client = 512",
        "[[camera]]\nid = \"cam\"\nsource = \"test:\"\nsize = \"640x480\"\nfps = 15\nidle_grace = \"1s\"\n",
    ));
    let pid = d.child.id();
    let (base, base_rss) = (fds(pid), rss_kb(pid));
    let mut good = open_stream(&d, "cam").await;
    live_frame(&mut good).await;
    // Never-reading viewers: they ask for the stream and read nothing, ever.
    let mut stuck = Vec::new();
    for _ in 0..n(20, 200) {
        let mut s = TcpStream::connect(d.main).await.unwrap();
        s.write_all(b"GET /cameras/cam/stream HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        stuck.push(s);
    }
    // Churn: viewers that connect, take a frame or two, and leave.
    let rounds = n(30, 600);
    let started = Instant::now();
    let first = d.camera("cam").await["frames_captured"].as_u64().unwrap();
    let mut seen = 0u64;
    for i in 0..rounds {
        let mut v = open_stream(&d, "cam").await;
        v.next_part().await.expect("a churning viewer gets a frame");
        if i % 3 == 0 {
            v.next_part().await.expect("and another");
        }
        drop(v);
        // The good viewer is not held up: drain what it has.
        while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(1), good.next_part()).await {
            seen += 1;
        }
    }
    let captured = d.camera("cam").await["frames_captured"].as_u64().unwrap() - first;
    // The steady viewer was not held up by the churn or the stuck viewers: it read most of the
    // frames captured meanwhile (it drains only between rounds, so not necessarily all).
    assert!(
        seen * 2 >= captured && captured > 0,
        "the steady viewer read {seen} of {captured} frames during the churn"
    );
    // The never-reading viewers are dropped (write timeout), the good one keeps getting frames.
    let c = d
        .wait_for("cam", Duration::from_secs(90), |c| c["viewers"] == 1)
        .await;
    let skipped = c["frames_skipped"].as_u64().unwrap_or(0);
    live_frame(&mut good).await;
    drop(stuck);
    drop(good);
    d.wait_for("cam", WAIT, |c| c["state"] == "idle").await;
    let (f, rss) = back_to_baseline(&d, base, base_rss, 30_000).await;
    println!(
        "fault: viewer churn: {rounds} viewers in {:.0?} next to {} never-reading ones; the steady viewer read {seen} of {captured} frames meanwhile; {skipped} frames skipped by slow viewers; fds {base} -> {f}, RSS {base_rss} -> {rss} kB",
        started.elapsed(),
        n(20, 200)
    );
}

/// One host holds hundreds of slow-header sockets and reconnects at once; another host's
/// requests are all answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_from_one_address_while_another_connects() {
    let d = Daemon::start(&config(
        "header_read_timeout = \"3s\"",
        "[[camera]]\nid = \"cam\"\nsource = \"test:\"\nsize = \"320x240\"\nidle_grace = \"30s\"\n",
    ));
    let pid = d.child.id();
    let base = fds(pid);
    let addr = d.main;
    let stop = tokio_util::sync::CancellationToken::new();
    let attacker = tokio::spawn({
        let stop = stop.clone();
        async move {
            let mut held: Vec<TcpStream> = Vec::new();
            // A byte per socket every 200 ms: the attack's own pace, not a wait.
            let mut trickle = tokio::time::interval(Duration::from_millis(200));
            let (mut refused, mut opened) = (0u64, 0u64);
            while !stop.is_cancelled() {
                // Top up to 650 sockets, each sending a header line now and then, never the end.
                while held.len() < 650 && !stop.is_cancelled() {
                    match connect_from("127.0.0.1", addr).await {
                        Ok(mut s) => {
                            opened += 1;
                            let _ = s.write_all(b"GET / HTTP/1.1\r\nX-a: ").await;
                            held.push(s);
                        }
                        Err(_) => refused += 1,
                    }
                }
                for s in held.iter_mut() {
                    let _ = s.write_all(b"b").await;
                }
                // Closed ones (refused, timed out) are replaced.
                held.retain(|s| s.peer_addr().is_ok());
                let mut alive = Vec::new();
                for s in held.drain(..) {
                    let mut buf = [0u8; 1];
                    match s.try_read(&mut buf) {
                        Ok(0) => {}
                        Ok(_) | Err(_) => alive.push(s),
                    }
                }
                held = alive;
                trickle.tick().await;
            }
            (opened, refused)
        }
    });
    // Let the attacker take its share of connections.
    eventually(WAIT, "the attacker's sockets open", || {
        (fds(pid) >= base + 60).then_some(())
    })
    .await;
    let probes = n(40, 300);
    let (mut ok, mut unavailable, mut silent) = (0, 0, 0);
    for _ in 0..probes {
        let r = tokio::time::timeout(Duration::from_secs(10), async {
            let s = connect_from("127.0.0.2", addr).await.ok()?;
            let r = Stream::on(
                s,
                "GET /cameras/cam/snapshot HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            )
            .await;
            Some(r.status)
        })
        .await;
        match r {
            Ok(Some(200)) => ok += 1,
            Ok(Some(503)) => unavailable += 1,
            _ => silent += 1,
        }
    }
    stop.cancel();
    let (opened, refused) = attacker.await.unwrap();
    assert_eq!(silent, 0, "every probe got an answer");
    assert_eq!(
        ok, probes,
        "the other host got every request served ({unavailable} 503s)"
    );
    eventually(WAIT, "the attacker's sockets released", || {
        (fds(pid) <= base + 2).then_some(())
    })
    .await;
    println!(
        "fault: slowloris: one host opened {opened} sockets ({refused} refused at connect) while another made {probes} requests: {ok} answered 200, {unavailable} 503, {silent} silent"
    );
}

/// Malformed requests (a corpus, then random mutations of valid ones): each is answered or
/// closed, never a panic, and afterwards farmcam serves as before with nothing left open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_corpus_and_mutations() {
    let d = Daemon::start(&config(
        "header_read_timeout = \"2s\"\nmax_connections_per_client = 512",
        "[[camera]]\nid = \"cam\"\nsource = \"test:\"\nsize = \"160x120\"\n",
    ));
    let pid = d.child.id();
    let (base, base_rss) = (fds(pid), rss_kb(pid));
    let mut corpus: Vec<Vec<u8>> = [
        &b"\r\n\r\n"[..],
        b"GET\r\n\r\n",
        b"GET / HTTP/9.9\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"POST /api/cameras HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
        b"GET /cameras/cam/stream?fps=1e-300 HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /cameras/cam/snapshot?width=99999999999999999999 HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /cameras/%00/snapshot HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /\xff\xfe HTTP/1.1\r\nHost: \xff\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nX: \x00\x01\r\n\r\n",
        b"GET //////../../etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /?action=stream&action=snapshot&width=abc HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\nGARBAGE\r\n\r\n",
    ]
    .iter()
    .map(|r| r.to_vec())
    .collect();
    corpus.push(format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(70_000)).into_bytes());
    corpus.push(format!("GET / HTTP/1.1\r\n{}\r\n", "X-h: v\r\n".repeat(200)).into_bytes());
    let valid: [&[u8]; 4] = [
        b"GET /cameras/cam/snapshot?width=80 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        b"GET /api/cameras HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        b"GET /cameras/cam/stream?fps=2 HTTP/1.1\r\nHost: x\r\n\r\n",
        b"HEAD /?action=snapshot HTTP/1.1\r\nHost: x\r\n\r\n",
    ];
    let mut rng = fastrand::Rng::with_seed(20);
    for _ in 0..n(300, 6000) {
        let mut r = valid[rng.usize(..valid.len())].to_vec();
        for _ in 0..rng.usize(1..6) {
            if r.is_empty() {
                break;
            }
            let i = rng.usize(..r.len());
            match rng.u8(..4) {
                0 => r[i] = rng.u8(..),
                1 => {
                    r.remove(i);
                }
                2 => r.insert(i, rng.u8(..)),
                _ => r.truncate(i.max(1)),
            }
        }
        corpus.push(r);
    }
    let started = Instant::now();
    let (mut answered, mut closed) = (0, 0);
    for r in &corpus {
        let mut s = TcpStream::connect(d.main).await.unwrap();
        let _ = s.write_all(r).await;
        let _ = s.shutdown().await;
        // An answer or a close, within the header timeout and some.
        let got = tokio::time::timeout(Duration::from_secs(10), async {
            use tokio::io::AsyncReadExt;
            let mut buf = vec![0u8; 4096];
            let mut first = None;
            loop {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => return first,
                    Ok(n) => {
                        // The status of the first answer, if the bytes are one.
                        first.get_or_insert_with(|| {
                            let head = String::from_utf8_lossy(&buf[..n.min(12)]).into_owned();
                            head.strip_prefix("HTTP/1.")
                                .and_then(|h| h.get(2..5))
                                .and_then(|c| c.parse::<u16>().ok())
                        });
                        // A stream stays open: its start is enough.
                        if buf[..n].windows(9).any(|w| w == b"--farmcam") {
                            return first;
                        }
                    }
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no answer and no close for {:?}", String::from_utf8_lossy(r)))
        .flatten();
        match got {
            Some(_) => answered += 1,
            None => closed += 1,
        }
    }
    // A server that closed every connection would pass the loop (a client that half-closes may
    // see its connection closed before the answer, so the loop only counts): what farmcam can
    // answer, it answers, with the status that names the problem.
    for (req, want) in [
        ("POST /api/cameras HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello", 405),
        ("GET /cameras/cam/stream?fps=1e-300 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 400),
        ("GET /cameras/cam/snapshot?width=99999999999999999999 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 400),
        ("GET /cameras/%00/snapshot HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 400),
        ("GET //////../../etc/passwd HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 400),
        ("GET /?action=stream&action=snapshot&width=abc HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\nConnection: close\r\n\r\n", 400),
    ] {
        assert_eq!(request(d.main, req).await.status, want, "{req:?}");
    }
    assert!(
        answered > 0,
        "{answered} of {} requests answered, {closed} closed",
        corpus.len()
    );
    let log = d.log_text();
    assert!(
        !log.contains("internal error"),
        "a request made a handler panic: {log}"
    );
    assert_eq!(
        proc_state(pid).map(|s| s != 'Z'),
        Some(true),
        "farmcam is running"
    );
    assert_eq!(get(d.main, "/cameras/cam/snapshot").await.status, 200);
    let (f, rss) = back_to_baseline(&d, base, base_rss, 30_000).await;
    println!(
        "fault: {} malformed requests in {:.0?}: {answered} answered, {closed} closed; no panic; fds {base} -> {f}, RSS {base_rss} -> {rss} kB",
        corpus.len(),
        started.elapsed()
    );
}

/// Broken configurations on reload, again and again: each is refused with its reason, the
/// running configuration keeps serving its viewer; a good one is then applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_configs_and_reloads() {
    let http = MjpegServer::start(160, 120).await;
    let good = config(
        "",
        &format!("[[camera]]\nid = \"cam\"\nsource = \"{}\"\n", http.url()),
    );
    let d = Daemon::start(&good);
    let pid = d.child.id();
    let mut s = open_stream(&d, "cam").await;
    live_frame(&mut s).await;
    let broken = [
        String::new(),
        "\n# only a comment\n".to_string(),
        "[[camera]\nid =".to_string(),
        good.replace("[[camera]]", "[[kamera]]"),
        good.replace("id = \"cam\"", "id = \"Cam 1\""),
        good.replace("source = ", "rotate = 45\nsource = "),
        format!("{good}[http.auth]\n"),
        good.replace("[http]", "[http]\nmax_connections = 0"),
        "\u{0}\u{1}\u{2}".to_string(),
        "[[camera]]\nid = \"x\"\nsource = \"rtsp://admin:Reload#S3cret@\"\n".to_string(),
    ];
    let rounds = n(1, 10);
    let mut refused = 0;
    for _ in 0..rounds {
        for text in &broken {
            std::fs::write(d.config_path(), text).unwrap();
            let before = d.log_text().matches("configuration rejected").count();
            d.signal(libc::SIGHUP);
            eventually(WAIT, &format!("the reload of {text:?} refused"), || {
                (d.log_text().matches("configuration rejected").count() > before).then_some(())
            })
            .await;
            refused += 1;
            // Still serving the running configuration.
            live_frame(&mut s).await;
        }
    }
    assert!(!d.log_text().contains("S3cret"), "no password in the log");
    // A good one with a second camera is applied; the first camera's viewer saw no gap.
    std::fs::write(
        d.config_path(),
        format!("{good}[[camera]]\nid = \"two\"\nsource = \"test:\"\nsize = \"160x120\"\n"),
    )
    .unwrap();
    d.signal(libc::SIGHUP);
    eventually_async(WAIT, "the good configuration applied", || async {
        let list = d.cameras_json().await;
        list.as_array()
            .unwrap()
            .iter()
            .any(|c| c["id"] == "two")
            .then_some(())
    })
    .await;
    live_frame(&mut s).await;
    assert_eq!(get(d.main, "/cameras/two/snapshot").await.status, 200);
    assert_eq!(proc_state(pid).map(|s| s != 'Z'), Some(true));
    let answered = request(
        d.main,
        "GET /api/cameras HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(answered.status, 200);
    println!("fault: {refused} broken reloads refused, the viewer kept its camera; then a good one applied");
}

/// An H.264 clip (ffmpeg's test source), its pictures then damaged the way the splitter's fuzz
/// targets damage input: bytes flipped in slices, slices cut short, NAL units of random bytes
/// between them; the parameter sets are kept, so the stream still opens and reaches the decoder.
fn hostile_clip(dir: &std::path::Path) -> std::path::PathBuf {
    let clean = common::rtsp::h264_clip(
        &dir.join("clean.h264"),
        60,
        &["-bsf:v", "dump_extra=freq=keyframe"],
    );
    let data = std::fs::read(&clean).unwrap();
    let mut starts: Vec<usize> = (0..data.len().saturating_sub(3))
        .filter(|&i| data[i..i + 3] == [0, 0, 1])
        .collect();
    starts.push(data.len());
    let mut rng = fastrand::Rng::with_seed(29);
    let mut out = Vec::new();
    for w in starts.windows(2) {
        let nal = &data[w[0]..w[1]];
        let kind = nal.get(3).map_or(0, |b| b & 0x1f);
        let mut nal = nal.to_vec();
        if kind == 1 || kind == 5 {
            match rng.u8(0..4) {
                0 => {
                    for _ in 0..rng.usize(1..16) {
                        let i = rng.usize(4..nal.len().max(5));
                        if i < nal.len() {
                            nal[i] ^= 1 << rng.u8(0..8);
                        }
                    }
                }
                1 => nal.truncate(rng.usize(4..nal.len().max(5))),
                2 => {
                    let len = rng.usize(1..400);
                    let junk: Vec<u8> = std::iter::repeat_with(|| rng.u8(1..)).take(len).collect();
                    out.extend_from_slice(&[0, 0, 1, 0x01]);
                    out.extend_from_slice(&junk);
                }
                _ => {}
            }
        }
        out.extend_from_slice(&nal);
    }
    let hostile = dir.join("hostile.h264");
    std::fs::write(&hostile, out).unwrap();
    hostile
}

/// A hostile H.264 stream over RTSP, read by farmcam's own RTSP client and decoded for a viewer
/// and snapshots: farmcam neither panics nor dies, keeps serving, and once everyone left no
/// process and no descriptor is left over.
/// (The shared decoder helper takes the damage: if libavcodec crashed on it, only the helper
/// would die and be started again.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_h264_stream_over_rtsp_neither_panics_nor_leaks() {
    let dir = tempfile::tempdir().unwrap();
    let rtsp = RtspServer::start(RtspOptions {
        clip: Some(hostile_clip(dir.path())),
        ..Default::default()
    });
    let d = Daemon::start(&config(
        "",
        &format!(
            "[[camera]]\nid = \"cam\"\nsource = \"{}\"\nidle_grace = \"1s\"\n",
            rtsp.url()
        ),
    ));
    let pid = d.child.id();
    let (base, base_rss) = (fds(pid), rss_kb(pid));
    let mut s = open_stream(&d, "cam").await;
    // Several passes of the clip through the decoder.
    let c = d
        .wait_for("cam", Duration::from_secs(120), |c| {
            c["frames_decoded"].as_u64().is_some_and(|n| n >= 180)
        })
        .await;
    // farmcam's own RTSP client reads it and the shared decoder helper decodes it.
    assert_eq!(
        (c["ingest"].as_str(), c["decoded_by"].as_str()),
        (Some("farmcam"), Some("helper")),
        "{c}"
    );
    // What survives the damage is decoded: the viewer gets pictures, not only placeholders,
    // and snapshots are pictures.
    common::part_where(
        &mut s,
        Duration::from_secs(60),
        "a decoded picture",
        common::is_live,
    )
    .await;
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(get(d.main, "/cameras/cam/snapshot").await.status);
    }
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 503) && statuses.contains(&200),
        "{statuses:?}"
    );
    assert!(proc_state(pid).is_some_and(|s| s != 'Z'), "farmcam runs");
    let r = get(d.main, "/api/cameras").await;
    assert_eq!(r.status, 200);
    drop(s);
    eventually(Duration::from_secs(60), "no child once the viewer left", || {
        children(pid).is_empty().then_some(())
    })
    .await;
    let (f, rss) = back_to_baseline(&d, base, base_rss, 30_000).await;
    let log = d.log_text();
    assert!(!log.contains("panicked"), "{log}");
    println!(
        "fault: hostile H.264 over RTSP: {} units decoded; fds {base} -> {f}, RSS {base_rss} -> {rss} kB",
        c["frames_decoded"]
    );
}
