//! The pump contract, point by point, against a scripted source (counts opens, can fail, can be
//! slow to close) under paused tokio time.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use farmcam::config::CameraConfig;
use farmcam::events::{CameraState, EventBus};
use farmcam::frame::Captured;
use farmcam::pump::ConsumerKind::{Other, Snapshot, Viewer};
use farmcam::registry::{Camera, SnapshotError};
use farmcam::source::{Source, SourceError, SourceSpec, Upstream};
use tokio::time::{sleep, timeout, Instant};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

const FRAME_EVERY: Duration = Duration::from_millis(100);

#[derive(Default)]
struct Script {
    opens: AtomicUsize,
    open_now: AtomicUsize,
    max_open: AtomicUsize,
    closes: AtomicUsize,
    /// Fail this many of the next opens.
    fail_opens: AtomicUsize,
    /// The upstream fails after this many frames (0 = never).
    fail_after: AtomicU64,
    close_delay_ms: AtomicU64,
    /// Frame interval in ms (0 = FRAME_EVERY).
    frame_ms: AtomicU64,
    /// While set, upstreams deliver nothing.
    frozen: AtomicBool,
    open_times: Mutex<Vec<Instant>>,
    close_times: Mutex<Vec<Instant>>,
}

struct Scripted(Arc<Script>);

#[async_trait]
impl Source for Scripted {
    async fn open(&self, _demand: farmcam::source::DemandRx) -> Result<Box<dyn Upstream>, SourceError> {
        let s = &self.0;
        s.opens.fetch_add(1, SeqCst);
        s.open_times.lock().unwrap().push(Instant::now());
        if s.fail_opens.load(SeqCst) > 0 {
            s.fail_opens.fetch_sub(1, SeqCst);
            return Err(SourceError::Open("scripted failure".into()));
        }
        let now = s.open_now.fetch_add(1, SeqCst) + 1;
        s.max_open.fetch_max(now, SeqCst);
        Ok(Box::new(Up { s: s.clone(), n: 0 }))
    }
}

struct Up {
    s: Arc<Script>,
    n: u64,
}

#[async_trait]
impl Upstream for Up {
    async fn next_frame(&mut self) -> Result<Captured, SourceError> {
        match self.s.frame_ms.load(SeqCst) {
            0 => sleep(FRAME_EVERY).await,
            ms => sleep(Duration::from_millis(ms)).await,
        }
        while self.s.frozen.load(SeqCst) {
            sleep(FRAME_EVERY).await;
        }
        self.n += 1;
        let fail_after = self.s.fail_after.load(SeqCst);
        if fail_after > 0 && self.n > fail_after {
            return Err(SourceError::Failed("scripted stream failure".into()));
        }
        Ok(Captured {
            jpeg: Bytes::from(format!("frame {}", self.n)),
            width: 16,
            height: 16,
            captured_at: SystemTime::now(),
            oriented: false,
        })
    }

    async fn close(self: Box<Self>) {
        sleep(Duration::from_millis(self.s.close_delay_ms.load(SeqCst))).await;
        self.s.close_times.lock().unwrap().push(Instant::now());
        self.s.closes.fetch_add(1, SeqCst);
        self.s.open_now.fetch_sub(1, SeqCst);
    }
}

struct Rig {
    camera: Arc<Camera>,
    script: Arc<Script>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    grace: Duration,
}

fn rig(grace: Duration) -> Rig {
    rig_with_stall(grace, Duration::from_secs(10))
}

fn rig_with_stall(grace: Duration, stall: Duration) -> Rig {
    let script = Arc::new(Script::default());
    let mut config = CameraConfig::new("cam", SourceSpec::TestPattern);
    config.idle_grace = grace;
    config.stall_timeout = stall;
    let shutdown = CancellationToken::new();
    let tracker = TaskTracker::new();
    let camera = Arc::new(Camera::with_source(
        Arc::new(config),
        Arc::new(Scripted(script.clone())),
        Arc::new(EventBus::default()),
        None,
        &shutdown,
        tracker.clone(),
    ));
    Rig {
        camera,
        script,
        shutdown,
        tracker,
        grace,
    }
}

impl Rig {
    fn open_now(&self) -> usize {
        self.script.open_now.load(SeqCst)
    }
    fn opens(&self) -> usize {
        self.script.opens.load(SeqCst)
    }
}

/// 1. At most one upstream per camera, whatever the number and kind of consumers.
#[tokio::test(start_paused = true)]
async fn one_upstream_for_many_consumers() {
    let r = rig(Duration::from_secs(5));
    let mut subs: Vec<_> = (0..50)
        .map(|i| r.camera.subscribe([Viewer, Snapshot, Other][i % 3]))
        .collect();
    let snaps: Vec<_> = (0..10).map(|_| r.camera.snapshot(None)).collect();
    for s in &mut subs {
        assert!(s.next().await.is_some());
    }
    for s in futures_util::future::join_all(snaps).await {
        assert!(s.is_ok());
    }
    assert_eq!(r.opens(), 1);
    assert_eq!(r.script.max_open.load(SeqCst), 1);
    let status = r.camera.status();
    assert_eq!(
        (status.consumers, status.viewers, status.upstream_opens),
        (50, 17, 1)
    );
}

/// 2. A consumer that keeps up receives every frame, in order, exactly once.
#[tokio::test(start_paused = true)]
async fn keeping_up_consumer_gets_every_frame_in_order() {
    let r = rig(Duration::from_secs(5));
    let mut sub = r.camera.subscribe(Viewer);
    let first = sub.next().await.unwrap();
    let mut last = first.seq;
    for _ in 0..200 {
        let f = sub.next().await.unwrap();
        assert_eq!(f.seq, last + 1, "no gap, no repeat");
        assert_eq!(&f.jpeg[..], format!("frame {}", f.seq).as_bytes());
        last = f.seq;
    }
    assert_eq!(sub.skipped(), 0);
}

/// 3. A consumer that does not read never delays the others, and skips ahead (counted) instead
/// of buffering.
#[tokio::test(start_paused = true)]
async fn stalled_consumer_skips_ahead_and_never_delays_others() {
    let r = rig(Duration::from_secs(5));
    let mut stalled = r.camera.subscribe(Viewer);
    let mut fast = r.camera.subscribe(Viewer);
    assert!(stalled.next().await.is_some());
    let start = Instant::now();
    let mut last = fast.next().await.unwrap().seq;
    for _ in 0..500 {
        let f = fast.next().await.unwrap();
        assert_eq!(f.seq, last + 1);
        last = f.seq;
    }
    // 500 frames at the source rate: the stalled consumer cost the fast one nothing.
    assert!(start.elapsed() <= FRAME_EVERY * 501, "{:?}", start.elapsed());
    // The stalled consumer resumes at the newest frame; what it missed is counted.
    let f = stalled.next().await.unwrap();
    assert!(f.seq >= last - 1, "resumed at {} (newest {last})", f.seq);
    assert_eq!(
        stalled.skipped(),
        f.seq - 2,
        "skipped exactly the frames it never saw"
    );
    assert_eq!(r.camera.status().frames_skipped, stalled.skipped());
}

/// 4. A consumer joining a live pump gets the latest frame immediately.
#[tokio::test(start_paused = true)]
async fn joining_a_live_pump_gets_the_latest_frame_at_once() {
    let r = rig(Duration::from_secs(5));
    let mut a = r.camera.subscribe(Viewer);
    let mut latest = 0;
    for _ in 0..5 {
        latest = a.next().await.unwrap().seq;
    }
    let t = Instant::now();
    let mut b = r.camera.subscribe(Viewer);
    assert_eq!(b.next().await.unwrap().seq, latest);
    assert_eq!(t.elapsed(), Duration::ZERO);
}

/// 5. After the last consumer leaves, the pump waits `idle_grace`, then closes the upstream.
#[tokio::test(start_paused = true)]
async fn upstream_closes_after_the_grace_period() {
    let r = rig(Duration::from_secs(5));
    let mut sub = r.camera.subscribe(Viewer);
    sub.next().await.unwrap();
    drop(sub);
    let left = Instant::now();
    sleep(r.grace - Duration::from_millis(100)).await;
    assert_eq!(r.open_now(), 1, "still open inside the grace period");
    assert_eq!(r.camera.status().state, CameraState::Live);
    while r.open_now() == 1 {
        sleep(Duration::from_millis(10)).await;
    }
    let closed_after = left.elapsed();
    assert!(
        closed_after >= r.grace && closed_after <= r.grace + FRAME_EVERY * 2,
        "{closed_after:?}"
    );
    assert_eq!(r.script.closes.load(SeqCst), 1);
    sleep(Duration::from_millis(10)).await;
    assert_eq!(r.camera.status().state, CameraState::Idle);
}

/// 6. A consumer arriving during the grace window cancels the teardown.
#[tokio::test(start_paused = true)]
async fn arrival_during_grace_cancels_teardown() {
    let r = rig(Duration::from_secs(5));
    let mut sub = r.camera.subscribe(Viewer);
    sub.next().await.unwrap();
    drop(sub);
    sleep(Duration::from_secs(4)).await;
    let mut again = r.camera.subscribe(Viewer);
    assert!(again.next().await.is_some());
    sleep(Duration::from_secs(30)).await;
    assert_eq!((r.opens(), r.open_now()), (1, 1), "same upstream throughout");
    // The grace restarts from the next time the pump empties.
    drop(again);
    sleep(r.grace + Duration::from_secs(1)).await;
    assert_eq!(r.open_now(), 0);
}

/// 7 and 8. Consumers racing with teardowns never land on a stopped pump, and a fresh pump does
/// not open before the previous upstream has closed. Arrivals come 300 ms apart, longer than a
/// frame plus the 100 ms grace, so the pump keeps stopping; closing takes 250 ms, so some
/// newcomers arrive while the old upstream is still closing, others just before the grace ends.
#[tokio::test(start_paused = true)]
async fn fifty_consumers_racing_teardowns() {
    let r = rig(Duration::from_millis(100));
    r.script.close_delay_ms.store(250, SeqCst);
    let mut tasks = Vec::new();
    for i in 0..50u64 {
        let cam = r.camera.clone();
        tasks.push(tokio::spawn(async move {
            sleep(Duration::from_millis(i * 300 + (i % 4) * 7)).await;
            if i % 5 == 0 {
                return cam.snapshot(None).await.map(|_| 1).map_err(|e| format!("{e:?}"));
            }
            let mut s = cam.subscribe(if i % 2 == 0 { Viewer } else { Other });
            let got = timeout(Duration::from_secs(20), s.next()).await;
            sleep(Duration::from_millis((i % 3) * 90)).await;
            let n = s.detach();
            assert_eq!(s.detach(), n, "detaching twice is harmless");
            match got {
                Ok(Some(_)) => Ok(1),
                other => Err(format!("consumer {i} stranded: {other:?}")),
            }
        }));
    }
    let mut served = 0;
    for t in tasks {
        served += t.await.unwrap().unwrap();
    }
    assert_eq!(served, 50, "every consumer got a frame");
    assert_eq!(r.script.max_open.load(SeqCst), 1, "never two upstreams at once");
    let opens = r.script.open_times.lock().unwrap().clone();
    let closes = r.script.close_times.lock().unwrap().clone();
    assert!(
        opens.len() >= 15,
        "the pump stopped and restarted repeatedly ({} opens)",
        opens.len()
    );
    for (i, open) in opens.iter().enumerate().skip(1) {
        assert!(*open >= closes[i - 1], "open {i} came before close {}", i - 1);
    }
    sleep(Duration::from_secs(10)).await;
    assert_eq!(r.open_now(), 0, "everything closed at the end");
    assert_eq!(opens.len(), r.script.closes.load(SeqCst));
    let s = r.camera.status();
    assert_eq!((s.consumers, s.viewers, s.state), (0, 0, CameraState::Idle));
}

/// 7. An arrival at the instant the grace expires is never stranded: either it keeps the pump
/// alive or it gets a fresh one. This race is between threads, so it runs on two worker threads in
/// real time, with arrivals jittered around the grace expiry (asserts outcomes, not timings).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arrival_at_the_instant_the_grace_expires() {
    let r = rig(Duration::from_millis(3));
    r.script.frame_ms.store(1, SeqCst);
    for round in 0..300u64 {
        let mut a = r.camera.subscribe(Viewer);
        timeout(Duration::from_secs(5), a.next()).await.unwrap().unwrap();
        drop(a);
        std::thread::sleep(Duration::from_micros(2500 + fastrand::u64(0..1000)));
        let mut b = r.camera.subscribe(Viewer);
        let got = timeout(Duration::from_secs(5), b.next()).await;
        assert!(matches!(got, Ok(Some(_))), "round {round}: consumer stranded");
        drop(b);
        if round % 2 == 0 {
            sleep(Duration::from_millis(10)).await;
        }
    }
    assert_eq!(r.script.max_open.load(SeqCst), 1);
}

/// 8. A fresh pump waits for the previous upstream to close.
#[tokio::test(start_paused = true)]
async fn fresh_pump_waits_for_previous_close() {
    let r = rig(Duration::ZERO);
    r.script.close_delay_ms.store(3000, SeqCst);
    let mut a = r.camera.subscribe(Viewer);
    a.next().await.unwrap();
    drop(a);
    sleep(Duration::from_millis(50)).await; // grace 0: the pump is now stopping (closing 3 s)
    let t = Instant::now();
    let mut b = r.camera.subscribe(Viewer);
    b.next().await.unwrap();
    assert!(
        t.elapsed() >= Duration::from_millis(2900),
        "opened after {:?}",
        t.elapsed()
    );
    assert_eq!(r.opens(), 2);
    assert_eq!(r.script.max_open.load(SeqCst), 1);
}

/// 9. Upstream failure (also on the very first open): consumers stay attached and get the
/// placeholder about once per second; reopening backs off 1 s, 2 s, 4 s (±20 %), and frames return.
#[tokio::test(start_paused = true)]
async fn failing_upstream_shows_placeholder_and_backs_off() {
    let r = rig(Duration::from_secs(5));
    r.script.fail_opens.store(3, SeqCst);
    let start = Instant::now();
    let mut sub = r.camera.subscribe(Viewer);
    let mut placeholders = 0;
    let good = loop {
        let f = sub.next().await.expect("stays attached");
        if f.placeholder {
            placeholders += 1;
            assert!(f.jpeg.starts_with(&[0xff, 0xd8]), "placeholder is a JPEG");
            if placeholders == 1 {
                let snap = r.camera.snapshot(None).await;
                assert!(matches!(snap, Err(SnapshotError::Offline { .. })), "{snap:?}");
            }
        } else {
            break f;
        }
    };
    let elapsed = start.elapsed();
    assert_eq!(r.opens(), 4);
    let opens = r.script.open_times.lock().unwrap().clone();
    let gaps: Vec<f64> = opens.windows(2).map(|w| (w[1] - w[0]).as_secs_f64()).collect();
    for (gap, base) in gaps.iter().zip([1.0, 2.0, 4.0]) {
        assert!(
            *gap >= base * 0.8 && *gap <= base * 1.2 + 0.01,
            "backoff gaps {gaps:?}"
        );
    }
    // About one placeholder per second of downtime, plus one at each of the 3 failures (the
    // backoff is jittered, so the downtime varies from run to run).
    let down = elapsed.as_secs_f64();
    assert!(
        (placeholders as f64) >= down - 3.0 && (placeholders as f64) <= down.ceil() + 3.0 + 1.0,
        "{placeholders} in {down:.1}s"
    );
    assert!(!good.placeholder);
    assert_eq!(r.camera.status().state, CameraState::Live);
}

/// 9. A stream that fails mid-way is reopened; 60 s of health resets the backoff to 1 s.
#[tokio::test(start_paused = true)]
async fn backoff_resets_after_a_healthy_minute() {
    let r = rig(Duration::from_secs(5));
    r.script.fail_after.store(700, SeqCst); // 70 s of frames, then failure
    let mut sub = r.camera.subscribe(Viewer);
    while r.opens() < 2 {
        sub.next().await.unwrap();
    }
    // After one failure the delay would be about 2 s without the reset; health made it about 1 s.
    let opens = r.script.open_times.lock().unwrap().clone();
    let fail_at = opens[0] + FRAME_EVERY * 701;
    let delay = (opens[1] - fail_at).as_secs_f64();
    assert!(
        (0.7..=1.3).contains(&delay),
        "reopened {delay:.2}s after the failure"
    );
}

/// 9. A stalled upstream (no frame for stall_timeout) is closed and reopened.
#[tokio::test(start_paused = true)]
async fn stalled_upstream_is_reopened() {
    let r = rig(Duration::from_secs(5));
    let mut sub = r.camera.subscribe(Viewer);
    sub.next().await.unwrap();
    r.script.frozen.store(true, SeqCst);
    let t = Instant::now();
    let f = sub.next().await.unwrap();
    assert!(f.placeholder, "the next thing a viewer sees is the placeholder");
    assert!(t.elapsed() >= Duration::from_secs(10));
    r.script.frozen.store(false, SeqCst);
    while sub.next().await.unwrap().placeholder {}
    assert_eq!(r.script.closes.load(SeqCst), 1, "the stalled upstream was closed");
    assert_eq!(r.opens(), 2);
}

/// 9b. A fresh upstream gets FIRST_FRAME_TIMEOUT (not a short stall_timeout) for its first frame
/// (ffmpeg connecting and waiting for a key frame); while an offline camera's reopened upstream
/// connects, viewers keep getting the placeholder.
#[tokio::test(start_paused = true)]
async fn first_frame_gets_longer_than_the_stall_timeout() {
    let r = rig_with_stall(Duration::from_secs(5), Duration::from_secs(2));
    r.script.frozen.store(true, SeqCst);
    let mut sub = r.camera.subscribe(Viewer);
    let t = Instant::now();
    // The offline image comes after a second, while the camera is still starting …
    let f = sub.next().await.unwrap();
    assert!(f.placeholder);
    let waited = t.elapsed();
    assert!(
        waited >= farmcam::pump::PLACEHOLDER_EVERY
            && waited < farmcam::pump::PLACEHOLDER_EVERY + Duration::from_secs(1),
        "the offline image after {waited:?}"
    );
    assert_eq!(r.camera.status().state, CameraState::Starting);
    assert_eq!(r.script.closes.load(SeqCst), 0);
    // … and the upstream is given up only after the first-frame timeout.
    while r.camera.status().last_error.is_none() {
        assert!(sub.next().await.unwrap().placeholder);
    }
    let waited = t.elapsed();
    assert!(
        waited >= farmcam::pump::FIRST_FRAME_TIMEOUT
            && waited < farmcam::pump::FIRST_FRAME_TIMEOUT + Duration::from_secs(2),
        "gave up on the first frame after {waited:?}"
    );
    assert_eq!(r.script.closes.load(SeqCst), 1);
    let err = r.camera.status().last_error.unwrap();
    assert!(err.contains("no first frame within 15s"), "{err}");
    // Offline now; the reopened upstream is still connecting: placeholders keep coming ~1/s.
    let a = sub.next().await.unwrap();
    let b = sub.next().await.unwrap();
    assert!(a.placeholder && b.placeholder);
    assert!(b.captured_at.duration_since(a.captured_at).unwrap() <= Duration::from_millis(1500));
    r.script.frozen.store(false, SeqCst);
    while sub.next().await.unwrap().placeholder {}
    assert!(r.camera.status().last_error.is_none(), "cleared once live");
    // Once live, the short stall timeout applies.
    r.script.frozen.store(true, SeqCst);
    let t = Instant::now();
    assert!(sub.next().await.unwrap().placeholder);
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "stalled after {:?}",
        t.elapsed()
    );
}

/// 10. Detaching reports the remaining count; twice is harmless.
#[tokio::test(start_paused = true)]
async fn detach_reports_remaining_consumers() {
    let r = rig(Duration::from_secs(5));
    let mut a = r.camera.subscribe(Viewer);
    let mut b = r.camera.subscribe(Snapshot);
    assert_eq!(a.detach(), 1);
    assert_eq!(a.detach(), 1);
    assert!(a.next().await.is_none(), "a detached consumer gets nothing");
    assert_eq!(b.detach(), 0);
    drop(b);
    assert_eq!(r.camera.status().consumers, 0);
}

/// 12. Shutdown wakes every consumer promptly, even with no frames flowing, and closes the
/// upstream.
#[tokio::test(start_paused = true)]
async fn shutdown_wakes_every_consumer() {
    let r = rig(Duration::from_secs(5));
    let mut subs: Vec<_> = (0..20).map(|_| r.camera.subscribe(Viewer)).collect();
    subs[0].next().await.unwrap();
    r.script.frozen.store(true, SeqCst);
    let waiting: Vec<_> = subs
        .into_iter()
        .map(|mut s| tokio::spawn(async move { while s.next().await.is_some() {} }))
        .collect();
    sleep(Duration::from_secs(1)).await;
    let t = Instant::now();
    r.shutdown.cancel();
    for w in waiting {
        timeout(Duration::from_millis(100), w)
            .await
            .expect("woken")
            .unwrap();
    }
    r.tracker.close();
    timeout(Duration::from_secs(6), r.tracker.wait())
        .await
        .expect("pump tasks end");
    assert!(t.elapsed() < Duration::from_secs(6));
    assert_eq!(r.open_now(), 0, "upstream closed at shutdown");
}

/// Snapshot from a cold camera starts the pump, returns the first frame, and lets the grace run.
#[tokio::test(start_paused = true)]
async fn snapshot_from_cold_pump_then_grace() {
    let r = rig(Duration::from_secs(5));
    let f = r.camera.snapshot(None).await.unwrap();
    assert!(!f.placeholder);
    assert_eq!(r.open_now(), 1);
    sleep(Duration::from_secs(7)).await;
    assert_eq!(r.open_now(), 0);
    // A cached frame young enough is served without reopening after the pump stopped.
    let cached = r.camera.snapshot(Some(Duration::from_secs(3600))).await.unwrap();
    assert!(!cached.placeholder);
    assert_eq!(r.opens(), 1);
}

/// Snapshot times out with the placeholder when no frame comes within snapshot_timeout.
#[tokio::test(start_paused = true)]
async fn snapshot_timeout_gives_placeholder() {
    let r = rig(Duration::from_secs(5));
    r.script.frozen.store(true, SeqCst);
    let t = Instant::now();
    match r.camera.snapshot(None).await {
        Err(SnapshotError::Timeout { placeholder }) => assert!(placeholder.starts_with(&[0xff, 0xd8])),
        other => panic!("{other:?}"),
    }
    assert_eq!(t.elapsed(), Duration::from_secs(10));
}

/// A killed camera (removed or changed by a reload) can still be asked for frames by a request
/// or a publisher that held it: each gets a subscription that ends, never a panic, even when the
/// fresh pump's supervisor runs (and stops) before the consumer would have been attached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_camera_gives_ending_subscriptions_and_never_panics() {
    let r = rig(Duration::from_secs(5));
    r.camera.kill();
    for _ in 0..2000 {
        let mut sub = r.camera.subscribe(Viewer);
        let next = timeout(Duration::from_secs(10), sub.next()).await;
        assert!(matches!(next, Ok(None)), "a killed camera's subscription ends");
    }
    r.tracker.close();
    assert!(timeout(Duration::from_secs(10), r.tracker.wait()).await.is_ok());
    // The slot's lock is not poisoned: status still answers.
    assert_eq!(r.camera.status().state, CameraState::Idle);
    assert_eq!(r.opens(), 0, "a killed camera never opens its source");
}
