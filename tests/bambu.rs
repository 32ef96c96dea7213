//! Bambu Lab P1/A1 cameras against a faithful fake printer: TLS on a port with a self-signed
//! certificate, the 80-byte login checked byte for byte, JPEGs framed by 16-byte headers, and the
//! failure modes of real printers. The fake counts concurrent connections.

mod common;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::eventually;
use common::proc::{cmdline, ffmpeg_children};
use common::rtsp::{RtspOptions, RtspServer};
use common::tls::test_certificate;
use common::{config, decode_jpeg, get, Daemon, Stream, BIN};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

const CODE: &str = "31415926";
const WAIT: Duration = Duration::from_secs(20);
/// Like a real printer, the fake takes a moment after the client's close before it closes its
/// own side and counts the connection as gone.
const LINGER: Duration = Duration::from_millis(400);

#[derive(Clone, Copy, Debug)]
enum Mode {
    Normal,
    /// Close right after the login, as a printer does on a wrong access code.
    Reject,
    /// Headers and payloads written a few bytes at a time.
    Split,
    /// A header announcing 20 MiB.
    Oversized,
    /// A few frames, then silence with the connection open.
    Stall,
    /// Two frames, then half a frame, then close.
    DropMidFrame,
}

struct FakePrinter {
    port: u16,
    accepted: Arc<AtomicUsize>,
    logins_ok: Arc<AtomicUsize>,
    current: Arc<AtomicUsize>,
    max_concurrent: Arc<AtomicUsize>,
    stop: CancellationToken,
    cert_der: Vec<u8>,
}

impl Drop for FakePrinter {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The login a printer expects, built here independently of farmcam's code.
fn expected_login(code: &str) -> Vec<u8> {
    let mut p = vec![0x40, 0, 0, 0, 0x00, 0x30, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    let mut user = b"bblp".to_vec();
    user.resize(32, 0);
    let mut c = code.as_bytes().to_vec();
    c.resize(32, 0);
    p.extend(user);
    p.extend(c);
    p
}

impl FakePrinter {
    /// Connection n gets `modes[n]` (the last one repeats).
    async fn start(modes: &[Mode]) -> FakePrinter {
        let (cert, key) = test_certificate();
        let certs: Vec<CertificateDer> = CertificateDer::pem_file_iter(cert)
            .unwrap()
            .map(|c| c.unwrap())
            .collect();
        let cert_der = certs[0].as_ref().to_vec();
        let acceptor = tokio_rustls::TlsAcceptor::from(common::tls::server_config(cert, key));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let frames: Arc<Vec<Vec<u8>>> = Arc::new(
            (0..5)
                .map(|i| {
                    let mut c = farmcam::media::render::Canvas::new(320, 240, [40, 40 + i * 30, 60]);
                    c.text(10, 10, 2, &format!("P1S frame {i}"), [255, 255, 255]);
                    c.encode(false)
                })
                .collect(),
        );
        let printer = FakePrinter {
            port,
            accepted: Default::default(),
            logins_ok: Default::default(),
            current: Default::default(),
            max_concurrent: Default::default(),
            stop: CancellationToken::new(),
            cert_der,
        };
        let modes = Arc::new(Mutex::new(modes.iter().copied().collect::<VecDeque<_>>()));
        let (accepted, logins_ok, current, max_c, stop) = (
            printer.accepted.clone(),
            printer.logins_ok.clone(),
            printer.current.clone(),
            printer.max_concurrent.clone(),
            printer.stop.clone(),
        );
        tokio::spawn(async move {
            loop {
                let (tcp, _) = tokio::select! {
                    _ = stop.cancelled() => return,
                    r = listener.accept() => r.unwrap(),
                };
                accepted.fetch_add(1, SeqCst);
                let now = current.fetch_add(1, SeqCst) + 1;
                max_c.fetch_max(now, SeqCst);
                let mode = {
                    let mut m = modes.lock().unwrap();
                    if m.len() > 1 {
                        m.pop_front().unwrap()
                    } else {
                        m[0]
                    }
                };
                let (acceptor, frames, logins_ok, current, stop) = (
                    acceptor.clone(),
                    frames.clone(),
                    logins_ok.clone(),
                    current.clone(),
                    stop.clone(),
                );
                tokio::spawn(async move {
                    let counted = Arc::new(std::sync::atomic::AtomicBool::new(false));
                    let leave = |c: &Arc<std::sync::atomic::AtomicBool>| {
                        if !c.swap(true, SeqCst) {
                            current.fetch_sub(1, SeqCst);
                        }
                    };
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        leave(&counted);
                        return;
                    };
                    let (mut rd, mut wr) = tokio::io::split(tls);
                    let mut login = [0u8; 80];
                    let ok = tokio::time::timeout(Duration::from_secs(5), rd.read_exact(&mut login)).await;
                    if !matches!(ok, Ok(Ok(_)))
                        || login[..] != expected_login(CODE)[..]
                        || matches!(mode, Mode::Reject)
                    {
                        leave(&counted);
                        let _ = wr.shutdown().await;
                        return;
                    }
                    logins_ok.fetch_add(1, SeqCst);
                    // The client closing is noticed at once (the printer counts connections).
                    let closed = CancellationToken::new();
                    let (c2, cnt2, cur2) = (closed.clone(), counted.clone(), current.clone());
                    tokio::spawn(async move {
                        let mut buf = [0u8; 64];
                        while matches!(rd.read(&mut buf).await, Ok(n) if n > 0) {}
                        tokio::time::sleep(LINGER).await;
                        if !cnt2.swap(true, SeqCst) {
                            cur2.fetch_sub(1, SeqCst);
                        }
                        c2.cancel();
                    });
                    tokio::select! {
                        _ = stop.cancelled() => {}
                        _ = closed.cancelled() => {}
                        _ = send(&mut wr, &frames, mode) => {}
                    }
                    leave(&counted);
                    let _ = wr.shutdown().await;
                });
            }
        });
        printer
    }

    fn url(&self) -> String {
        format!("bambu://bblp:{CODE}@127.0.0.1:{}", self.port)
    }

    fn fingerprint(&self) -> String {
        let d = ring::digest::digest(&ring::digest::SHA256, &self.cert_der);
        d.as_ref()
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect::<Vec<_>>()
            .join(":")
    }
}

async fn send<W: AsyncWriteExt + Unpin>(w: &mut W, frames: &[Vec<u8>], mode: Mode) -> std::io::Result<()> {
    let header = |len: usize| {
        let mut h = Vec::with_capacity(16);
        for v in [len as u32, 0, 1, 0] {
            h.extend_from_slice(&v.to_le_bytes());
        }
        h
    };
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    for i in 0.. {
        tick.tick().await;
        let f = &frames[i % frames.len()];
        match mode {
            Mode::Oversized => {
                w.write_all(&header(20 << 20)).await?;
                w.flush().await?;
                std::future::pending::<()>().await;
            }
            Mode::Stall if i >= 3 => std::future::pending::<()>().await,
            Mode::DropMidFrame if i == 2 => {
                w.write_all(&header(f.len())).await?;
                w.write_all(&f[..f.len() / 2]).await?;
                w.flush().await?;
                return Ok(());
            }
            Mode::Split => {
                let all: Vec<u8> = header(f.len()).into_iter().chain(f.iter().copied()).collect();
                // 1..7 bytes per TLS record: headers land split across records.
                let mut at = 0;
                while at < all.len() {
                    let n = (1 + (at * 7 + i) % 7).min(all.len() - at);
                    w.write_all(&all[at..at + n]).await?;
                    w.flush().await?;
                    at += n;
                    if at < 64 {
                        tokio::task::yield_now().await;
                    }
                }
            }
            _ => {
                w.write_all(&header(f.len())).await?;
                w.write_all(f).await?;
                w.flush().await?;
            }
        }
    }
    Ok(())
}

fn camera(url: &str, extra: &str) -> String {
    config(
        "",
        &format!("[[camera]]\nid = \"p1s\"\nname = \"P1S\"\nsource = \"{url}\"\n{extra}\n"),
    )
}

async fn viewer(d: &Daemon) -> Stream {
    let s = Stream::open(d.main, "GET /cameras/p1s/stream HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(s.status, 200);
    s
}

async fn live_frames(s: &mut Stream, n: usize) {
    let mut got = 0;
    let r = tokio::time::timeout(WAIT, async {
        while got < n {
            let p = s.next_part().await.expect("stream open");
            if !p.headers.contains_key("x-placeholder") {
                assert_eq!(decode_jpeg(&p.jpeg), (320, 240));
                got += 1;
            }
        }
    })
    .await;
    assert!(r.is_ok(), "only {got} of {n} live frames");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_reach_several_viewers_over_one_printer_connection() {
    let printer = FakePrinter::start(&[Mode::Normal]).await;
    let d = Daemon::start(&camera(&printer.url(), ""));
    let mut viewers = Vec::new();
    for _ in 0..4 {
        viewers.push(viewer(&d).await);
    }
    for v in viewers.iter_mut() {
        live_frames(v, 5).await;
    }
    assert_eq!(printer.accepted.load(SeqCst), 1);
    assert_eq!(printer.max_concurrent.load(SeqCst), 1);
    let c = d.camera("p1s").await;
    assert_eq!(
        (c["viewers"].as_u64(), c["size"].as_str()),
        (Some(4), Some("320x240"))
    );
    assert_eq!(c["source"], format!("bambu://***@127.0.0.1:{}", printer.port));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_changes_the_camera_opens_the_printer_only_after_the_old_connection_closed() {
    let printer = FakePrinter::start(&[Mode::Normal]).await;
    let d = Daemon::start(&camera(&printer.url(), ""));
    let mut v = viewer(&d).await;
    live_frames(&mut v, 2).await;
    // A changed camera is restarted: its viewers are closed and come back to the new one at once.
    std::fs::write(d.config_path(), camera(&printer.url(), "stall_timeout = \"11s\"")).unwrap();
    d.signal(libc::SIGHUP);
    let ended = tokio::time::timeout(WAIT, async { while v.next_part().await.is_some() {} }).await;
    assert!(ended.is_ok(), "the restarted camera's viewer was not closed");
    let mut v = viewer(&d).await;
    live_frames(&mut v, 2).await;
    assert_eq!(printer.accepted.load(SeqCst), 2);
    assert_eq!(
        printer.max_concurrent.load(SeqCst),
        1,
        "the new camera connected while the old connection was still open"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_access_code_is_one_clear_error_without_the_code() {
    let printer = FakePrinter::start(&[Mode::Reject]).await;
    let d = Daemon::start_with_log(&camera(&printer.url(), ""), "debug");
    let mut v = viewer(&d).await;
    let p = v.next_part().await.unwrap();
    assert!(p.headers.contains_key("x-placeholder"));
    eventually(WAIT, "rejection logged", || {
        d.log_text()
            .contains("access code rejected by 127.0.0.1")
            .then_some(())
    })
    .await;
    // Backoff: attempts come 1 s, 2 s, 4 s … apart (±20 %), not in a flood; HTTP keeps working.
    // Measured between two attempts seen by the printer, after the first retry: at least 1.6 s
    // apart, less whatever this test's polling adds to the first sighting.
    let attempt = |n: usize| {
        let accepted = printer.accepted.clone();
        eventually(WAIT, "another attempt", move || {
            (accepted.load(SeqCst) >= n).then(std::time::Instant::now)
        })
    };
    let seen = printer.accepted.load(SeqCst).max(1);
    let t1 = attempt(seen + 1).await;
    let t2 = attempt(seen + 2).await;
    assert!(
        t2 - t1 >= Duration::from_millis(1000),
        "retries {:?} apart: not backing off",
        t2 - t1
    );
    let c = d.camera("p1s").await;
    assert!(
        c["last_error"].as_str().unwrap().contains("access code rejected"),
        "{c}"
    );
    let log = d.log_text();
    let warnings = log
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("access code rejected"))
        .count();
    assert_eq!(warnings, 1, "{log}");
    let api = String::from_utf8(get(d.main, "/api/cameras").await.body).unwrap();
    let metrics = String::from_utf8(get(d.main, "/metrics").await.body).unwrap();
    let mut events = Stream::open(
        d.main,
        "GET /api/events?last_event_id=0 HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .await;
    let _ = tokio::time::timeout(Duration::from_millis(500), async { while events.fill().await {} }).await;
    let events = String::from_utf8_lossy(&events.body).into_owned();
    assert!(events.contains("offline"), "{events}");
    let check = std::process::Command::new(BIN)
        .args(["check", "--config"])
        .arg(d.config_path())
        .output()
        .unwrap();
    let check = String::from_utf8_lossy(&check.stdout).into_owned() + &String::from_utf8_lossy(&check.stderr);
    assert!(check.contains("bambu://***@127.0.0.1"), "{check}");
    let out = std::process::Command::new(BIN).args(["--help"]).output().unwrap();
    for text in [
        log,
        api,
        metrics,
        events,
        check,
        String::from_utf8_lossy(&out.stdout).into_owned(),
    ] {
        assert!(!text.contains(CODE), "access code leaked: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_split_across_tls_records_are_reassembled() {
    let printer = FakePrinter::start(&[Mode::Split]).await;
    let d = Daemon::start(&camera(&printer.url(), ""));
    let mut v = viewer(&d).await;
    live_frames(&mut v, 8).await;
    assert_eq!(printer.accepted.load(SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_streams_reconnect_with_never_more_than_one_connection() {
    // Oversized header, then a frame cut off, then a stall, then a healthy stream.
    let printer = FakePrinter::start(&[Mode::Oversized, Mode::DropMidFrame, Mode::Stall, Mode::Normal]).await;
    let d = Daemon::start(&camera(&printer.url(), "stall_timeout = \"2s\""));
    let mut v = viewer(&d).await;
    eventually(Duration::from_secs(40), "four connections", || {
        (printer.accepted.load(SeqCst) >= 4).then_some(())
    })
    .await;
    live_frames(&mut v, 5).await;
    assert_eq!(
        printer.max_concurrent.load(SeqCst),
        1,
        "a replacement waits for the old socket"
    );
    d.logged("broken stream (frame size 20971520)").await;
    d.logged("closed the connection mid-frame").await;
    d.logged("no frame for 2s").await;
    assert_eq!(
        d.camera("p1s").await["viewers"],
        1,
        "the viewer stayed attached throughout"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fingerprint_pinning_accepts_the_printer_and_rejects_another_certificate() {
    let printer = FakePrinter::start(&[Mode::Normal]).await;
    let good = format!(
        "tls_verify = \"fingerprint\"\ntls_fingerprint = \"{}\"",
        printer.fingerprint()
    );
    let d = Daemon::start(&camera(&printer.url(), &good));
    let mut v = viewer(&d).await;
    live_frames(&mut v, 3).await;
    drop(v);
    drop(d);

    let other = "AA:".repeat(31) + "AA";
    let d = Daemon::start(&camera(&printer.url(), &format!("tls_fingerprint = \"{other}\"")));
    let _v = viewer(&d).await;
    eventually(WAIT, "mismatch logged", || {
        d.log_text()
            .contains("not the pinned tls_fingerprint")
            .then_some(())
    })
    .await;
    assert_eq!(
        printer.logins_ok.load(SeqCst),
        1,
        "no login is ever sent to an unpinned certificate"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bambu_rtsps_is_the_x1_url_through_ffmpeg() {
    let code = "27182818";
    let server = RtspServer::start(RtspOptions {
        tls: true,
        credentials: Some(("bblp".into(), code.into())),
        path: Some("/streaming/live/1".into()),
        ..Default::default()
    });
    let d = Daemon::start(&camera(
        &format!("bambu-rtsps://bblp:{code}@127.0.0.1:{}", server.port),
        "",
    ));
    let mut s = viewer(&d).await;
    live_frames(&mut s, 3).await;
    let c = d.camera("p1s").await;
    assert_eq!(
        c["source"],
        format!("rtsps://***@127.0.0.1:{}/streaming/live/1", server.port)
    );
    // The access code is on no command line: ffmpeg reads the URL, with the printers' input
    // options, from a file only farmcam's user can read.
    let ff = ffmpeg_children(d.child.id(), "p1s-");
    assert_eq!(ff.len(), 1);
    let cmd = cmdline(ff[0]);
    assert!(!cmd.contains(code) && cmd.contains("-probesize 5000000"), "{cmd}");
    let script = cmd.split(' ').find(|w| w.ends_with(".ffconcat")).unwrap();
    let text = std::fs::read_to_string(script).unwrap();
    assert!(
        text.contains("/streaming/live/1")
            && text.contains("option use_wallclock_as_timestamps '1'")
            && text.contains("option probesize '5000000'"),
        "{text}"
    );
    assert!(!d.log_text().contains(code));
}

/// With `[timelapse]`, the printer's own MQTT reports (its broker: TLS, user bblp, the camera's
/// access code) start the timelapse of its camera when a print runs, take a picture per layer,
/// and stop it when the print finishes. The serial is learnt from the first report, and the
/// whole state asked for (`pushall`), as P1 printers send only what changed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_print_is_recorded_from_the_printers_mqtt_reports() {
    use common::mqtt::{mosquitto_password_file, Mosquitto, Sub};
    const SERIAL: &str = "01P00A000000000";
    let printer = FakePrinter::start(&[Mode::Normal]).await;
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = test_certificate();
    let passwords = dir.path().join("passwords");
    mosquitto_password_file(&passwords, "bblp", CODE);
    let broker = Mosquitto::start(&format!(
        "password_file {}\nlistener {{extra_port}} 127.0.0.1\ncertfile {}\nkeyfile {}\n",
        passwords.display(),
        cert.display(),
        key.display()
    ));
    let mut sub = Sub::connect(broker.port, &["device/+/request"], None).await;
    let timelapses = dir.path().join("timelapses");
    let d = Daemon::start(&config(
        "",
        &format!(
            "[timelapse]\ndir = \"{}\"\ninterval = \"1h\"\nfps = 10\nhold = \"0s\"\n\
             [[camera]]\nid = \"p1s\"\nname = \"P1S-01\"\nsource = \"{}\"\nbambu_mqtt_port = {}\n",
            timelapses.display(),
            printer.url(),
            broker.extra_port
        ),
    ));
    eventually(WAIT, "farmcam logged in to the printer's MQTT", || {
        d.log_text()
            .contains("connected to the printer's MQTT")
            .then_some(())
    })
    .await;
    let client = sub.client.clone();
    let report = |v: serde_json::Value| {
        let client = client.clone();
        async move {
            client
                .publish(
                    format!("device/{SERIAL}/report"),
                    rumqttc::QoS::AtLeastOnce,
                    false,
                    v.to_string(),
                )
                .await
                .unwrap();
        }
    };
    let list = || async {
        let r = get(d.main, "/api/timelapses").await;
        serde_json::from_slice::<serde_json::Value>(&r.body).unwrap()
    };
    let pictures = |v: &serde_json::Value| v[0]["pictures"].as_u64().unwrap_or(0);
    report(serde_json::json!({ "print": { "gcode_state": "RUNNING", "subtask_name": "Benchy", "layer_num": 1 } })).await;
    let all = common::eventually_async(WAIT, "the print's timelapse with its first picture", || async {
        let all = list().await;
        (pictures(&all) >= 1).then_some(all)
    })
    .await;
    let name = all[0]["name"].as_str().expect("a timelapse").to_string();
    assert!(
        name.starts_with("P1S-01_Benchy_") && name.ends_with("_p1s"),
        "{all}"
    );
    assert_eq!(all[0]["trigger"], "bambu");
    // The serial came with the first report; the whole state is asked for under it.
    sub.wait_for(WAIT, "pushall", |m| {
        m.topic == format!("device/{SERIAL}/request") && m.text().contains("pushall")
    })
    .await;
    for layer in 2..=3u64 {
        let before = pictures(&list().await);
        report(serde_json::json!({ "print": { "layer_num": layer } })).await;
        common::eventually_async(WAIT, &format!("a picture for layer {layer}"), || async {
            (pictures(&list().await) > before).then_some(())
        })
        .await;
    }
    report(serde_json::json!({ "print": { "gcode_state": "FINISH" } })).await;
    let done = common::eventually_async(WAIT * 3, "the video", || async {
        let all = list().await;
        (all[0]["state"] == "ready").then_some(all)
    })
    .await;
    assert_eq!(done[0]["outcome"], "complete");
    assert_eq!(done[0]["file"], "Benchy");
    assert!(done[0]["pictures"].as_u64() >= Some(3), "{done}");
    assert!(
        !d.log_text().contains(CODE),
        "the access code never reaches the log"
    );
}

/// A P1/A1 camera's JPEGs with the software encoder: live H.264 over RTSP at the camera's size,
/// on the one printer connection MJPEG viewers use (issue 41).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_printers_jpegs_play_as_h264_with_the_software_encoder() {
    let printer = FakePrinter::start(&[Mode::Normal]).await;
    let d = Daemon::start(&format!(
        "{}\n[rtsp]\nlisten = \"127.0.0.1:0\"\nudp_port = 0\n",
        camera(&printer.url(), "h264_encoder = \"software\"\nidle_grace = \"2s\"")
    ));
    let mut s = viewer(&d).await;
    live_frames(&mut s, 2).await;
    let url = d.rtsp_url("p1s");
    let probed = common::rtsp::probe(&url, "tcp");
    assert!(probed.starts_with("h264,320,240,"), "{probed}\n{}", d.log_text());
    let (times, complaints) = common::rtsp::decode(&url, "tcp", 10);
    assert!(times.len() >= 9, "{times:?} {complaints}");
    live_frames(&mut s, 2).await;
    assert_eq!(
        printer.max_concurrent.load(SeqCst),
        1,
        "one printer connection for both"
    );
}
