//! Lights over real pseudo-terminals: exact bytes, ordering against the camera's pump, shared
//! lights, G-code handshakes, silent printers, ports missing at start and vanishing mid-run.

mod common;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use common::pty::Pty;
use common::{config, Daemon, Stream};
use farmcam::config::{CameraConfig, LightConfig, Protocol};
use farmcam::events::EventBus;
use farmcam::events::LightState;
use farmcam::frame::Captured;
use farmcam::light::{Light, Lights};
use farmcam::pump::ConsumerKind::Viewer;
use farmcam::registry::Camera;
use farmcam::source::{Source, SourceError, SourceSpec, Upstream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

const WAIT: Duration = Duration::from_secs(10);

/// ("open" | "close", when, the light's state then).
type OpenLog = Arc<Mutex<Vec<(&'static str, Instant, LightState)>>>;

/// A camera source that notes, when opened, whether its light was already on.
struct Recording {
    light: Arc<Light>,
    log: OpenLog,
}

#[async_trait]
impl Source for Recording {
    async fn open(&self, _demand: farmcam::source::DemandRx) -> Result<Box<dyn Upstream>, SourceError> {
        self.log
            .lock()
            .unwrap()
            .push(("open", Instant::now(), self.light.status().state));
        Ok(Box::new(Frames(self.log.clone(), self.light.clone())))
    }
}

struct Frames(OpenLog, Arc<Light>);

#[async_trait]
impl Upstream for Frames {
    async fn next_frame(&mut self) -> Result<Captured, SourceError> {
        tokio::time::sleep(Duration::from_millis(50)).await;
        Ok(Captured {
            jpeg: Bytes::from_static(b"frame"),
            width: 16,
            height: 16,
            captured_at: SystemTime::now(),
            oriented: false,
        })
    }
    async fn close(self: Box<Self>) {
        self.0
            .lock()
            .unwrap()
            .push(("close", Instant::now(), self.1.status().state));
    }
}

struct Rig {
    cameras: Vec<Arc<Camera>>,
    lights: Lights,
    log: OpenLog,
    stop: CancellationToken,
    _tracker: TaskTracker,
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn light(id: &str, port: PathBuf, protocol: Protocol, off_delay: Duration) -> LightConfig {
    LightConfig {
        id: id.into(),
        port,
        baud: 9600,
        protocol,
        settle: Duration::from_millis(200),
        off_delay,
    }
}

/// Cameras `(camera id, light id)` with a 100 ms idle grace.
fn rig(lights: Vec<LightConfig>, cameras: &[(&str, &str)]) -> Rig {
    let stop = CancellationToken::new();
    let tracker = TaskTracker::new();
    let events = Arc::new(EventBus::default());
    let mut users: HashMap<String, Vec<String>> = HashMap::new();
    for (c, l) in cameras {
        users.entry(l.to_string()).or_default().push(c.to_string());
    }
    let lights = Lights::start(&lights, &users, events.clone(), stop.clone(), &tracker);
    let log = Arc::new(Mutex::new(Vec::new()));
    let cameras = cameras
        .iter()
        .map(|(c, l)| {
            let mut config = CameraConfig::new(c, SourceSpec::TestPattern);
            config.idle_grace = Duration::from_millis(100);
            config.light = Some(l.to_string());
            let light = lights.get(l).unwrap();
            Arc::new(Camera::with_source(
                Arc::new(config),
                Arc::new(Recording {
                    light: light.clone(),
                    log: log.clone(),
                }),
                events.clone(),
                Some(light),
                &stop,
                tracker.clone(),
            ))
        })
        .collect();
    Rig {
        cameras,
        lights,
        log,
        stop,
        _tracker: tracker,
    }
}

const fn lcus(channel: u8, on: bool) -> [u8; 4] {
    let v = on as u8;
    [0xa0, channel, v, 0xa0u8.wrapping_add(channel).wrapping_add(v)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lcus_bytes_on_before_the_camera_opens_and_off_after_the_delay() {
    let mut pty = Pty::new();
    let off_delay = Duration::from_millis(400);
    let r = rig(
        vec![
            light(
                "relay3",
                pty.path.clone(),
                Protocol::Lcus { channel: 3 },
                off_delay,
            ),
            light(
                "relay5",
                pty.path.clone(),
                Protocol::Lcus { channel: 5 },
                off_delay,
            ),
        ],
        &[("cam", "relay3"), ("other", "relay5")],
    );
    // Both lights share the port: farmcam opens it once and switches both off, in order.
    let (b, _) = pty.read(8, WAIT).await;
    assert_eq!(b, [lcus(3, false), lcus(5, false)].concat());

    let mut sub = r.cameras[0].subscribe(Viewer);
    let (on, _) = pty.read(4, WAIT).await;
    assert_eq!(on, [0xa0, 0x03, 0x01, 0xa4]);
    sub.next().await.unwrap();
    let (_, _, state_at_open) = r.log.lock().unwrap()[0];
    assert_eq!(
        state_at_open,
        LightState::On,
        "the light was on before the camera opened"
    );
    assert_eq!(r.cameras[0].status().light.unwrap().state, LightState::On);
    assert_eq!(r.lights.get("relay5").unwrap().status().state, LightState::Off);

    drop(sub);
    let (off, off_at) = pty.read(4, WAIT).await;
    assert_eq!(off, [0xa0, 0x03, 0x00, 0xa3]);
    let closed_at = r.log.lock().unwrap().iter().find(|e| e.0 == "close").unwrap().1;
    assert!(
        off_at >= closed_at + off_delay,
        "off {:?} after the camera closed, before off_delay",
        off_at - closed_at
    );

    // The other channel on the same port.
    let sub = r.cameras[1].subscribe(Viewer);
    assert_eq!(pty.read(4, WAIT).await.0, [0xa0, 0x05, 0x01, 0xa6]);
    drop(sub);
    assert_eq!(pty.read(4, WAIT).await.0, [0xa0, 0x05, 0x00, 0xa5]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_light_stays_on_while_any_camera_runs() {
    let mut pty = Pty::new();
    let off_delay = Duration::from_millis(300);
    let r = rig(
        vec![light(
            "shared",
            pty.path.clone(),
            Protocol::Lcus { channel: 1 },
            off_delay,
        )],
        &[("a", "shared"), ("b", "shared")],
    );
    assert_eq!(pty.read(4, WAIT).await.0, lcus(1, false));
    let mut a = r.cameras[0].subscribe(Viewer);
    a.next().await.unwrap();
    assert_eq!(pty.read(4, WAIT).await.0, lcus(1, true));
    let mut b = r.cameras[1].subscribe(Viewer);
    b.next().await.unwrap();
    assert_eq!(r.lights.get("shared").unwrap().status().users, 2);
    drop(a);
    // Camera a stopped long ago (grace 100 ms + off_delay 300 ms): b still holds the light on.
    assert_eq!(
        pty.drain(Duration::from_millis(1000)).await,
        b"",
        "nothing sent while b runs"
    );
    assert_eq!(r.lights.get("shared").unwrap().status().users, 1);
    drop(b);
    assert_eq!(pty.read(4, WAIT).await.0, lcus(1, false));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcode_waits_for_ok_and_a_silent_printer_never_stops_the_camera() {
    let mut pty = Pty::new();
    let r = rig(
        vec![light(
            "case",
            pty.path.clone(),
            Protocol::Gcode {
                on: "M355 S1 P255".into(),
                off: "M355 S0".into(),
                timeout: Duration::from_millis(300),
            },
            Duration::from_millis(200),
        )],
        &[("printer", "case")],
    );
    // Initial off, answered like Marlin does (with chatter before the ok).
    assert_eq!(pty.read_line(WAIT).await, "M355 S0");
    pty.write(b"echo:Case light: off\nok\n");
    let mut sub = r.cameras[0].subscribe(Viewer);
    assert_eq!(pty.read_line(WAIT).await, "M355 S1 P255");
    pty.write(b"ok\n");
    sub.next().await.unwrap();
    let status = r.cameras[0].status().light.unwrap();
    assert_eq!((status.state, status.error), (LightState::On, None));
    drop(sub);
    assert_eq!(pty.read_line(WAIT).await, "M355 S0");
    // This time the printer says nothing: logged, the light counted as switched, and the camera
    // opens and streams regardless.
    let t = Instant::now();
    let mut sub = r.cameras[0].subscribe(Viewer);
    for _ in 0..5 {
        sub.next().await.unwrap();
    }
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "camera slowed by the printer: {:?}",
        t.elapsed()
    );
    assert_eq!(pty.read_line(WAIT).await, "M355 S1 P255");
    let status = common::eventually(WAIT, "light counted on after the ok timeout", || {
        let s = r.cameras[0].status().light.unwrap();
        (s.state == LightState::On).then_some(s)
    })
    .await;
    assert!(status.error.unwrap().contains("no \"ok\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_missing_at_start_or_vanishing_is_retried_and_reconciled() {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("usb-1a86_USB_Serial-if00-port0");
    let r = rig(
        vec![light(
            "relay",
            link.clone(),
            Protocol::Lcus { channel: 2 },
            Duration::from_secs(60),
        )],
        &[("cam", "relay")],
    );
    // No port: the camera works all the same, the light says why it is unavailable.
    let mut sub = r.cameras[0].subscribe(Viewer);
    for _ in 0..3 {
        sub.next().await.unwrap();
    }
    let status = r.cameras[0].status().light.unwrap();
    assert_eq!(status.state, LightState::Unavailable);
    assert!(status.error.unwrap().contains("cannot open"));

    // The adapter is plugged in: the light should be on, so it is switched on.
    let mut pty = Pty::new();
    std::os::unix::fs::symlink(&pty.path, &link).unwrap();
    assert_eq!(pty.read(4, Duration::from_secs(20)).await.0, lcus(2, true));
    common::eventually(WAIT, "light on", || {
        (r.cameras[0].status().light.unwrap().state == LightState::On).then_some(())
    })
    .await;

    // Unplugged mid-run, then back under the same by-id name (a new tty behind it).
    drop(pty);
    std::fs::remove_file(&link).unwrap();
    common::eventually(WAIT, "light unavailable", || {
        (r.cameras[0].status().light.unwrap().state == LightState::Unavailable).then_some(())
    })
    .await;
    sub.next().await.unwrap();
    let mut pty = Pty::new();
    std::os::unix::fs::symlink(&pty.path, &link).unwrap();
    assert_eq!(pty.read(4, Duration::from_secs(20)).await.0, lcus(2, true));
    sub.next().await.unwrap();
}

/// The daemon end to end: light state in /api/cameras, events, and off at shutdown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_reports_light_state_and_switches_it_off_at_shutdown() {
    let mut pty = Pty::new();
    let mut d = Daemon::start(&config(
        "",
        &format!(
            "[[light]]\nid = \"relay\"\nport = \"{}\"\nprotocol = \"lcus\"\nchannel = 1\n\
             [[camera]]\nid = \"p1\"\nsource = \"test:\"\nsize = \"160x120\"\nlight = \"relay\"\n",
            pty.path.display()
        ),
    ));
    assert_eq!(pty.read(4, WAIT).await.0, lcus(1, false));
    let mut events = Stream::open(d.main, "GET /api/events HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let mut viewer = Stream::open(d.main, "GET /cameras/p1/stream HTTP/1.1\r\nHost: x\r\n\r\n").await;
    viewer.next_part().await.unwrap();
    assert_eq!(pty.read(4, WAIT).await.0, lcus(1, true));
    let c = d.wait_for("p1", WAIT, |c| c["light"]["state"] == "on").await;
    assert_eq!(c["light"]["id"], "relay");
    let _ = tokio::time::timeout(Duration::from_millis(500), async { while events.fill().await {} }).await;
    let text = String::from_utf8_lossy(&events.body).into_owned();
    assert!(
        text.contains(r#""kind":"light","light":"relay","light_state":"on""#),
        "{text}"
    );
    d.signal(libc::SIGTERM);
    assert_eq!(
        pty.read(4, WAIT).await.0,
        lcus(1, false),
        "switched off at shutdown"
    );
    assert!(d.wait_exit(Duration::from_secs(5)).unwrap().success());
}

/// A snapshot from a cold camera waits until its light has settled; a warm one does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cold_snapshots_wait_for_the_light_to_settle() {
    let mut pty = Pty::new();
    let r = rig(
        vec![light(
            "relay",
            pty.path.clone(),
            Protocol::Lcus { channel: 1 },
            Duration::from_secs(5),
        )],
        &[("cam", "relay")],
    );
    assert_eq!(pty.read(4, WAIT).await.0, lcus(1, false));
    let asked = SystemTime::now();
    let f = r.cameras[0].snapshot(None).await.unwrap();
    let settle = Duration::from_millis(200);
    assert!(
        f.captured_at >= asked + settle,
        "frame taken {:?} after asking, before the light settled",
        f.captured_at.duration_since(asked).unwrap_or_default()
    );
    assert_eq!(pty.read(4, WAIT).await.0, lcus(1, true));
    // Warm: the light has long settled; the latest frame is returned at once.
    let mut viewer = r.cameras[0].subscribe(Viewer);
    for _ in 0..2 {
        // The cached frame, then a new one: frames flow, long after the light settled.
        tokio::time::timeout(WAIT, viewer.next())
            .await
            .expect("frames flow")
            .expect("camera running");
    }
    let asked = SystemTime::now();
    let f = r.cameras[0].snapshot(None).await.unwrap();
    assert!(f.captured_at <= asked + Duration::from_millis(100));
}

/// A camera source that panics on its first frame.
struct Panicking;

#[async_trait]
impl Source for Panicking {
    async fn open(&self, _demand: farmcam::source::DemandRx) -> Result<Box<dyn Upstream>, SourceError> {
        Ok(Box::new(PanicFrames))
    }
}

struct PanicFrames;

#[async_trait]
impl Upstream for PanicFrames {
    async fn next_frame(&mut self) -> Result<Captured, SourceError> {
        panic!("a bug in a source");
    }
}

/// The light is held by the camera's upstream, not switched by hand: when a bug unwinds the
/// camera's pump, the light still goes off after its delay (before, it stayed on for good).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_camera_does_not_leave_its_light_on() {
    let mut pty = Pty::new();
    let stop = CancellationToken::new();
    let tracker = TaskTracker::new();
    let events = Arc::new(EventBus::default());
    let users = HashMap::from([("relay".to_string(), vec!["cam".to_string()])]);
    let config = light(
        "relay",
        pty.path.clone(),
        Protocol::Lcus { channel: 1 },
        Duration::from_millis(200),
    );
    let lights = Lights::start(&[config], &users, events.clone(), stop.clone(), &tracker);
    assert_eq!(pty.read(4, WAIT).await.0, lcus(1, false));
    let mut cam_config = CameraConfig::new("cam", SourceSpec::TestPattern);
    cam_config.light = Some("relay".into());
    let light = lights.get("relay").unwrap();
    let cam = Camera::with_source(
        Arc::new(cam_config),
        Arc::new(Panicking),
        events,
        Some(light.clone()),
        &stop,
        tracker.clone(),
    );
    let _sub = cam.subscribe(Viewer);
    assert_eq!(
        pty.read(4, WAIT).await.0,
        lcus(1, true),
        "on before the camera opened"
    );
    assert_eq!(
        pty.read(4, WAIT).await.0,
        lcus(1, false),
        "off after the pump unwound"
    );
    assert_eq!(light.status().users, 0);
    stop.cancel();
}
