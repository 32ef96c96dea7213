//! systemd integration: READY only once listening, STATUS kept current, WATCHDOG pings that stop
//! when a pump supervisor is wedged, STOPPING at shutdown. A real datagram socket stands in for
//! systemd's NOTIFY_SOCKET.

mod common;

use std::os::unix::net::UnixDatagram;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use common::{config, Daemon, Stream};
use farmcam::config::CameraConfig;
use farmcam::events::EventBus;
use farmcam::pump::ConsumerKind::Viewer;
use farmcam::registry::Camera;
use farmcam::source::{Source, SourceError, SourceSpec, TestPattern, Upstream};
use farmcam::systemd::Watchdog;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Everything sent to the socket within `limit`, until `done` holds on what was received.
fn receive(sock: &UnixDatagram, limit: Duration, done: impl Fn(&[String]) -> bool) -> Vec<String> {
    let deadline = Instant::now() + limit;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline && !done(&got) {
        sock.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        if let Ok(n) = sock.recv(&mut buf) {
            got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_status_watchdog_and_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify");
    let sock = UnixDatagram::bind(&path).unwrap();
    let mut d = Daemon::start_with_env(
        &config(
            "",
            "[[camera]]\nid = \"p1\"\nsource = \"test:\"\nsize = \"160x120\"\nfps = 5\n",
        ),
        &[
            ("NOTIFY_SOCKET", path.to_str().unwrap()),
            ("WATCHDOG_USEC", "3000000"),
        ],
    );
    let first = receive(&sock, Duration::from_secs(10), |g| !g.is_empty());
    assert!(first[0].contains("READY=1"), "{first:?}");
    assert!(
        first[0].contains("STATUS=1 cameras, 0 live, 0 viewers"),
        "{first:?}"
    );
    // READY came after the listeners were bound: the port answers.
    assert!(std::net::TcpStream::connect(d.main).is_ok());

    let mut viewer = Stream::open(d.main, "GET /cameras/p1/stream HTTP/1.1\r\nHost: x\r\n\r\n").await;
    viewer.next_part().await.unwrap();
    let got = receive(&sock, Duration::from_secs(10), |g| {
        g.iter()
            .any(|m| m.contains("STATUS=1 cameras, 1 live, 1 viewers"))
            && g.iter().filter(|m| m.contains("WATCHDOG=1")).count() >= 2
    });
    assert!(
        got.iter()
            .any(|m| m.contains("STATUS=1 cameras, 1 live, 1 viewers")),
        "{got:?}"
    );
    assert!(
        got.iter().filter(|m| m.contains("WATCHDOG=1")).count() >= 2,
        "{got:?}"
    );

    d.signal(libc::SIGTERM);
    let got = receive(&sock, Duration::from_secs(5), |g| {
        g.iter().any(|m| m.contains("STOPPING=1"))
    });
    assert!(got.iter().any(|m| m.contains("STOPPING=1")), "{got:?}");
    assert!(d.wait_exit(Duration::from_secs(5)).unwrap().success());
}

/// A source whose open blocks its thread (a driver call that does not return) until released.
struct Blocking(Arc<std::sync::atomic::AtomicBool>);

#[async_trait]
impl Source for Blocking {
    async fn open(&self, _demand: farmcam::source::DemandRx) -> Result<Box<dyn Upstream>, SourceError> {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.0.load(std::sync::atomic::Ordering::SeqCst) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        Err(SourceError::Open("blocked".into()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn a_wedged_pump_supervisor_stops_the_watchdog() {
    let stop = CancellationToken::new();
    let tracker = TaskTracker::new();
    let events = Arc::new(EventBus::default());
    let camera = |id: &str, source: Arc<dyn Source>| {
        Arc::new(Camera::with_source(
            Arc::new(CameraConfig::new(id, SourceSpec::TestPattern)),
            source,
            events.clone(),
            None,
            &stop,
            tracker.clone(),
        ))
    };
    let healthy = camera(
        "healthy",
        Arc::new(TestPattern::new(
            &CameraConfig::new("healthy", SourceSpec::TestPattern).common(),
        )),
    );
    let cams = vec![healthy.clone()];
    let _v = healthy.subscribe(Viewer);
    let mut dog = Watchdog::default();
    // A full heartbeat between two checks: the watchdog's own calling rule.
    let beat_passes = |dog: &mut Watchdog, cams: &[Arc<Camera>]| {
        let verdict = dog.wedged(cams);
        let seen = healthy.heartbeat().unwrap_or(0);
        (verdict, seen)
    };
    let (_, seen) = beat_passes(&mut dog, &cams);
    common::eventually(Duration::from_secs(30), "a heartbeat", || {
        (healthy.heartbeat().unwrap_or(0) >= seen + 2).then_some(())
    })
    .await;
    assert_eq!(
        dog.wedged(&cams),
        None,
        "a responsive pump keeps the watchdog fed"
    );

    let release = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stuck = camera("stuck", Arc::new(Blocking(release.clone())));
    let cams = vec![healthy.clone(), stuck.clone()];
    // The stuck pump runs on a runtime of its own: a task blocking a worker of the test's runtime
    // could strand the healthy pump's wakeups queued on that worker (not stealable), making the
    // healthy camera look wedged too, which is not what this test is about.
    let side = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let _w = {
        let _on = side.enter();
        stuck.subscribe(Viewer)
    };
    let (_, seen) = beat_passes(&mut dog, &cams);
    common::eventually(Duration::from_secs(30), "a heartbeat", || {
        (healthy.heartbeat().unwrap_or(0) >= seen + 2).then_some(())
    })
    .await;
    assert_eq!(dog.wedged(&cams).as_deref(), Some("stuck"));
    release.store(true, std::sync::atomic::Ordering::SeqCst);
    stop.cancel();
    side.shutdown_background();
}

/// Started as if by systemd (JOURNAL_STREAM set) on a machine without a journal: logs fall back to
/// stderr with a note, nothing is lost.
#[tokio::test]
async fn without_a_journal_logs_fall_back_to_stderr() {
    let d = Daemon::start_with_env(
        &config("", "[[camera]]\nid = \"p1\"\nsource = \"test:\"\n"),
        &[("JOURNAL_STREAM", "8:12345")],
    );
    let log = d.log_text();
    assert!(log.contains("no systemd journal here"), "{log}");
    assert!(log.contains(" ready: 1 camera(s): p1"), "{log}");
}

/// The shipped unit passes `systemd-analyze verify` silently and is hardened to an exposure of at
/// most 2.0.
#[test]
fn the_unit_file_verifies_and_is_hardened() {
    let unit =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/systemd/farmcam.service")).unwrap();
    assert!(
        unit.contains("Type=notify")
            && unit.contains("WatchdogSec=")
            && unit.contains("RestartPreventExitStatus=78")
    );
    assert!(!unit.contains("PrivateDevices="), "it would hide /dev/video*");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("farmcam.service");
    // verify checks that ExecStart exists: point it at the binary under test.
    std::fs::write(&path, unit.replace("/usr/bin/farmcam", common::BIN)).unwrap();
    let out = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze (packaging/dev.sh deps installs systemd)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && text.trim().is_empty(), "{text}");
    let out = std::process::Command::new("systemd-analyze")
        .args(["security", "--offline=true"])
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let level: f64 = text
        .lines()
        .find_map(|l| l.split("Overall exposure level for farmcam.service: ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in: {text}"));
    assert!(level <= 2.0, "exposure {level}: {text}");
}

/// SIGHUP reloads: kept cameras' viewers see no gap, changed and removed cameras' viewers are
/// closed, new cameras appear; RELOADING=1 then READY=1; an invalid file changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_cameras_and_rejects_a_bad_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify");
    let sock = UnixDatagram::bind(&path).unwrap();
    let cam = |id: &str, fps: u32| {
        format!("[[camera]]\nid = \"{id}\"\nsource = \"test:\"\nsize = \"160x120\"\nfps = {fps}\n")
    };
    let d = Daemon::start_with_env(
        &config("", &(cam("keep", 10) + &cam("change", 10) + &cam("gone", 10))),
        &[("NOTIFY_SOCKET", path.to_str().unwrap())],
    );
    receive(&sock, Duration::from_secs(10), |g| {
        g.iter().any(|m| m.contains("READY=1"))
    });
    let addr = d.main;
    let open = |id: &str| {
        let req = format!("GET /cameras/{id}/stream HTTP/1.1\r\nHost: x\r\n\r\n");
        async move { Stream::open(addr, &req).await }
    };
    let (mut keep, mut change, mut gone) = (open("keep").await, open("change").await, open("gone").await);
    for s in [&mut keep, &mut change, &mut gone] {
        s.next_part().await.unwrap();
    }

    // A broken file: rejected, nothing changes.
    std::fs::write(
        d.config_path(),
        "[[camera]]\nid = \"Bad Id\"\nsource = \"test:\"\n",
    )
    .unwrap();
    d.signal(libc::SIGHUP);
    common::eventually(Duration::from_secs(5), "rejection logged", || {
        d.log_text()
            .contains("configuration rejected, the running one is kept")
            .then_some(())
    })
    .await;
    d.logged("camera[0].id").await;
    assert_eq!(d.cameras_json().await.as_array().unwrap().len(), 3);

    // An empty file (a truncated write, a full disk): rejected too, nothing removed.
    std::fs::write(d.config_path(), "# nothing\n\n").unwrap();
    d.signal(libc::SIGHUP);
    common::eventually(Duration::from_secs(5), "empty file rejected", || {
        d.log_text().contains("is empty (a truncated write").then_some(())
    })
    .await;
    assert_eq!(d.cameras_json().await.as_array().unwrap().len(), 3);
    let mut streams_alive = keep.next_part().await.is_some();
    streams_alive &= change.next_part().await.is_some();
    assert!(streams_alive, "no viewer was disconnected");

    // keep: same; change: new rate; gone: removed; new: added.
    std::fs::write(
        d.config_path(),
        config("", &(cam("keep", 10) + &cam("change", 5) + &cam("new", 10))),
    )
    .unwrap();
    let before = keep.next_part().await.unwrap().seq();
    d.signal(libc::SIGHUP);
    let got = receive(&sock, Duration::from_secs(10), |g| {
        g.iter().any(|m| m.contains("RELOADING=1")) && g.iter().any(|m| m.contains("READY=1"))
    });
    let reloading = got
        .iter()
        .position(|m| m.contains("RELOADING=1"))
        .expect("RELOADING=1");
    assert!(got[reloading..].iter().any(|m| m.contains("READY=1")), "{got:?}");
    common::eventually(Duration::from_secs(5), "reload logged", || {
        d.log_text()
            .contains("reload: 1 camera(s) unchanged, 1 added, 1 restarted, 1 removed (gone)")
            .then_some(())
    })
    .await;
    // The kept camera's viewer sees every frame, without a gap, across the reload.
    let mut last = before;
    for _ in 0..15 {
        let seq = keep.next_part().await.expect("kept stream continues").seq();
        assert_eq!(seq, last + 1, "no gap for an unchanged camera");
        last = seq;
    }
    // Changed and removed cameras' viewers were closed.
    for s in [&mut change, &mut gone] {
        let ended = tokio::time::timeout(Duration::from_secs(5), async {
            while s.next_part().await.is_some() {}
        })
        .await;
        assert!(ended.is_ok(), "stream of a changed/removed camera ends");
    }
    let ids: Vec<String> = d
        .cameras_json()
        .await
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, ["keep", "change", "new"]);
    assert_eq!(d.camera("change").await["fps"], 5);
    assert_eq!(common::get(d.main, "/cameras/gone/snapshot").await.status, 404);
    assert_eq!(common::get(d.main, "/cameras/new/snapshot").await.status, 200);
    let mut again = open("change").await;
    again.next_part().await.unwrap();
}

/// A reload is checked as `farmcam check` checks: MQTT TLS files that cannot be read reject the
/// whole file, and the running configuration (cameras included) is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_with_unreadable_mqtt_tls_files_is_rejected() {
    let (cert, _key) = common::tls::test_certificate();
    let port = common::proc::free_port();
    let file = |ca: &str, cameras: &str| {
        config(
            "",
            &format!("[mqtt]\nurl = \"mqtts://127.0.0.1:{port}\"\nca_file = \"{ca}\"\n{cameras}"),
        )
    };
    let one = "[[camera]]\nid = \"a\"\nsource = \"test:\"\n";
    let d = Daemon::start(&file(cert.to_str().unwrap(), one));
    let two = format!("{one}[[camera]]\nid = \"b\"\nsource = \"test:\"\n");
    std::fs::write(d.config_path(), file("/nonexistent/ca.pem", &two)).unwrap();
    d.signal(libc::SIGHUP);
    common::eventually(Duration::from_secs(20), "rejection logged", || {
        d.log_text()
            .lines()
            .any(|l| {
                l.contains("configuration rejected, the running one is kept") && l.contains("mqtt.ca_file")
            })
            .then_some(())
    })
    .await;
    assert_eq!(d.cameras_json().await.as_array().unwrap().len(), 1);
}
