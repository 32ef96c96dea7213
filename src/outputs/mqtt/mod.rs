//! MQTT: JPEG snapshots, camera state and Home Assistant discovery, published to a broker. One
//! subsystem in four rooms: [`tls`] (options and certificates), [`topics`] (topic names and
//! discovery payloads), [`connection`] (the broker connection loop) and [`publish`] (what is
//! published, and when).
//!
//! Snapshots are taken from the shared pumps like any other consumer (`Camera::snapshot`), so a
//! camera watched over HTTP and published over MQTT is opened once. Nothing here can block a pump
//! or HTTP: publishes go through rumqttc's bounded request queue with `try_publish`, and what does
//! not fit (a slow broker) is skipped and counted. The connection is retried with backoff; on every
//! (re)connect farmcam re-subscribes and re-announces its status, discovery and state.
//!
//! Topics under `topic_prefix` (default `farmcam/<node_id>`):
//! `status` (online/offline, retained, offline is also the last will), `<camera>/snapshot` (JPEG),
//! `<camera>/state` (JSON, retained), `<camera>/availability`, `<camera>/snapshot/request` (any
//! message: snapshot now).

mod connection;
mod publish;
mod timelapse;
mod tls;
mod topics;

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rumqttc::{AsyncClient, MqttOptions, QoS};
use tokio::sync::{watch, Notify};
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::debug;

pub use tls::options;
use topics::Topics;

use crate::config::MqttConfig;
use crate::registry::{Camera, Registry};
use crate::util::log_limit::LogLimit;

/// Requests (publishes, subscribes) rumqttc may hold while the network is slow; beyond that
/// snapshots are skipped, never waited for.
const QUEUE: usize = 32;
/// At shutdown: time to send "offline" and a clean DISCONNECT.
const GOODBYE: Duration = Duration::from_secs(1);
const KEEP_ALIVE: Duration = Duration::from_secs(30);

/// What `/metrics`, the status line and tests can read.
#[derive(Default)]
pub struct MqttStats {
    pub snapshots_published: AtomicU64,
    /// Snapshots not published: too large, queue full (slow broker), or no frame in time.
    pub snapshots_skipped: AtomicU64,
    pub connects: AtomicU64,
    pub last_error: Mutex<Option<String>>,
}

/// The running MQTT publisher.
pub struct Mqtt {
    pub stats: Arc<MqttStats>,
    connected: watch::Receiver<bool>,
    stop: CancellationToken,
    tracker: TaskTracker,
    shared: Arc<Shared>,
}

impl Mqtt {
    /// Whether the broker connection is up right now.
    pub fn connected(&self) -> bool {
        *self.connected.borrow()
    }

    /// After a reload: publish snapshots of the started cameras (new or restarted), remove the
    /// Home Assistant entities of removed ones, and announce the new set.
    pub fn cameras_changed(&self, started: &[Arc<Camera>], removed: &[String]) {
        for camera in started {
            self.shared
                .spawn_snapshots(camera.clone(), &self.tracker, &self.stop);
        }
        {
            let mut stale = self.shared.stale.lock().unwrap();
            for id in removed {
                self.shared.requests.lock().unwrap().remove(id);
                stale.push(self.shared.topics.availability(id));
                if self.shared.config.ha_discovery {
                    stale.push(self.shared.topics.ha_camera(id));
                    stale.push(self.shared.topics.ha_button(id));
                    if self.shared.timelapses.is_some() {
                        stale.push(self.shared.topics.ha_timelapse(id));
                    }
                }
            }
        }
        self.shared.announce.notify_one();
    }

    /// Say "offline", disconnect cleanly, and stop every MQTT task (bounded).
    pub async fn stop(&self) {
        self.stop.cancel();
        self.tracker.close();
        if timeout(GOODBYE + Duration::from_millis(500), self.tracker.wait())
            .await
            .is_err()
        {
            debug!("mqtt: tasks did not stop in time");
        }
    }
}

/// Start publishing. `options` comes from [`options`].
/// Start publishing. `timelapses`: take timelapse commands and publish finished ones (their URLs
/// made absolute with `base_url`, `[http] public_url`).
pub fn start(
    config: &MqttConfig,
    options: MqttOptions,
    registry: Arc<Registry>,
    timelapses: Option<Arc<crate::timelapse::Timelapses>>,
    base_url: Option<String>,
) -> Mqtt {
    let (client, eventloop) = AsyncClient::new(options, QUEUE);
    let (connected_tx, connected) = watch::channel(false);
    let stop = CancellationToken::new();
    let tracker = TaskTracker::new();
    let stats = Arc::new(MqttStats::default());
    let shared = Arc::new(Shared {
        config: config.clone(),
        topics: Topics::new(config),
        client,
        registry,
        stats: stats.clone(),
        connected: connected.clone(),
        announce: Notify::new(),
        requests: Default::default(),
        last_snapshot: Default::default(),
        stale: Mutex::new(Vec::new()),
        too_big: Mutex::new(LogLimit::new()),
        timelapses,
        base_url,
    });
    for camera in shared.registry.cameras() {
        shared.spawn_snapshots(camera, &tracker, &stop);
    }
    tracker.spawn(shared.clone().announcer(stop.clone()));
    tracker.spawn(shared.clone().states(stop.clone()));
    tracker.spawn(shared.clone().finished_timelapses(stop.clone()));
    tracker.spawn(shared.clone().connection(eventloop, connected_tx, stop.clone()));
    Mqtt {
        stats,
        connected,
        stop,
        tracker,
        shared,
    }
}

struct Shared {
    config: MqttConfig,
    topics: Topics,
    client: AsyncClient,
    registry: Arc<Registry>,
    stats: Arc<MqttStats>,
    connected: watch::Receiver<bool>,
    /// Wakes the announcer: connected, or Home Assistant came online.
    announce: Notify,
    /// Camera id → "publish a snapshot now".
    requests: Mutex<HashMap<String, Arc<Notify>>>,
    /// Camera id → unix time of the last published snapshot.
    last_snapshot: Mutex<HashMap<String, f64>>,
    /// Discovery topics announced earlier for cameras no longer configured: cleared by the
    /// announcer with an empty retained message.
    stale: Mutex<Vec<String>>,
    too_big: Mutex<LogLimit>,
    timelapses: Option<Arc<crate::timelapse::Timelapses>>,
    /// `[http] public_url`: what makes a timelapse's URL absolute.
    base_url: Option<String>,
}

impl Shared {
    /// One camera's snapshot task (periodic and on request), and its request hook.
    fn spawn_snapshots(
        self: &Arc<Self>,
        camera: Arc<Camera>,
        tracker: &TaskTracker,
        stop: &CancellationToken,
    ) {
        let request = Arc::new(Notify::new());
        self.requests
            .lock()
            .unwrap()
            .insert(camera.id().to_string(), request.clone());
        let interval = camera.config().snapshot_interval;
        let width = camera.config().snapshot_width.or(self.config.snapshot_width);
        tracker.spawn(
            self.clone()
                .snapshots(camera, interval, width, request, stop.clone()),
        );
    }

    fn qos(&self) -> QoS {
        match self.config.qos {
            0 => QoS::AtMostOnce,
            1 => QoS::AtLeastOnce,
            _ => QoS::ExactlyOnce,
        }
    }
}
