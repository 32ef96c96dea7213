//! MQTT: JPEG snapshots, camera state and Home Assistant discovery, published to a broker.
//!
//! Snapshots are taken from the shared pumps like any other consumer (`Camera::snapshot`), so a
//! camera watched over HTTP and published over MQTT is opened once. Nothing here can block a pump
//! or HTTP: publishes go through rumqttc's bounded request queue with `try_publish`, and what does
//! not fit (a slow broker) is skipped and counted. The connection is retried with backoff; on every
//! (re)connect farmcam re-subscribes and re-announces its status, discovery and state.
//!
//! Topics under `topic_prefix` (default `farmcam/<node_id>`):
//! `status` (online/offline, retained, offline is also the last will), `<camera>/snapshot` (JPEG),
//! `<camera>/state` (JSON, retained), `<camera>/snapshot/request` (any message: snapshot now).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rumqttc::{
    AsyncClient, ConnAck, ConnectReturnCode, ConnectionError, Event, EventLoop, LastWill, MqttOptions,
    Outgoing, Packet, Publish, QoS, TlsConfiguration, Transport,
};
use serde_json::json;
use tokio::sync::{watch, Notify};
use tokio::time::{sleep, sleep_until, timeout, Instant};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::backoff::Backoff;
use crate::config::MqttConfig;
use crate::events::CameraState;
use crate::log_limit::{held_back, LogLimit};
use crate::registry::{Camera, Registry, SnapshotError};

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

/// Check everything that can be checked before connecting (TLS files); one line on error.
pub fn options(c: &MqttConfig) -> Result<MqttOptions, String> {
    let topics = Topics::new(c);
    let mut o = MqttOptions::new(&c.client_id, &c.host, c.port);
    o.set_keep_alive(KEEP_ALIVE)
        .set_clean_session(true)
        .set_max_packet_size(c.max_packet_size, c.max_packet_size)
        .set_last_will(LastWill::new(topics.status(), "offline", QoS::AtLeastOnce, true));
    if let Some(user) = &c.username {
        let password = c.password.as_ref().map(|p| p.0.clone()).unwrap_or_default();
        o.set_credentials(user, password);
    }
    if c.tls {
        o.set_transport(Transport::Tls(TlsConfiguration::Rustls(Arc::new(tls_config(c)?))));
    }
    Ok(o)
}

fn tls_config(c: &MqttConfig) -> Result<rustls::ClientConfig, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    match &c.ca_file {
        Some(path) => {
            let shown = path.display();
            let certs: Vec<CertificateDer> = CertificateDer::pem_file_iter(path)
                .and_then(|it| it.collect::<Result<_, _>>())
                .map_err(|e| format!("mqtt.ca_file: cannot read certificates from {shown}: {e}"))?;
            if certs.is_empty() {
                return Err(format!("mqtt.ca_file: no PEM certificate in {shown}"));
            }
            for cert in certs {
                roots
                    .add(cert)
                    .map_err(|e| format!("mqtt.ca_file: unusable certificate in {shown}: {e}"))?;
            }
        }
        None => {
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
            if roots.is_empty() {
                return Err("mqtt.ca_file: no system CA certificates found; set ca_file".into());
            }
        }
    }
    let builder =
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("mqtt: TLS setup: {e}"))?
            .with_root_certificates(roots);
    match &c.client_auth {
        None => Ok(builder.with_no_client_auth()),
        Some((cert, key)) => {
            let chain: Vec<CertificateDer> = CertificateDer::pem_file_iter(cert)
                .and_then(|it| it.collect::<Result<_, _>>())
                .map_err(|e| format!("mqtt.client_cert: cannot read {}: {e}", cert.display()))?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| format!("mqtt.client_key: cannot read {}: {e}", key.display()))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("mqtt.client_cert: {e}"))
        }
    }
}

/// Start publishing. `options` comes from [`options`].
pub fn start(config: &MqttConfig, options: MqttOptions, registry: Arc<Registry>) -> Mqtt {
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
    });
    for camera in shared.registry.cameras() {
        shared.spawn_snapshots(camera, &tracker, &stop);
    }
    tracker.spawn(shared.clone().announcer(stop.clone()));
    tracker.spawn(shared.clone().states(stop.clone()));
    tracker.spawn(shared.clone().connection(eventloop, connected_tx, stop.clone()));
    Mqtt {
        stats,
        connected,
        stop,
        tracker,
        shared,
    }
}

struct Topics {
    prefix: String,
    ha: String,
    node: String,
}

impl Topics {
    fn new(c: &MqttConfig) -> Self {
        Topics {
            prefix: c.topic_prefix.clone(),
            ha: c.ha_prefix.clone(),
            node: c.node_id.clone(),
        }
    }
    fn status(&self) -> String {
        format!("{}/status", self.prefix)
    }
    fn snapshot(&self, camera: &str) -> String {
        format!("{}/{camera}/snapshot", self.prefix)
    }
    fn state(&self, camera: &str) -> String {
        format!("{}/{camera}/state", self.prefix)
    }
    fn request(&self, camera: &str) -> String {
        format!("{}/{camera}/snapshot/request", self.prefix)
    }
    /// `online` unless the camera is offline (retained): Home Assistant shows it unavailable.
    fn availability(&self, camera: &str) -> String {
        format!("{}/{camera}/availability", self.prefix)
    }
    fn ha_status(&self) -> String {
        format!("{}/status", self.ha)
    }
    fn object_id(&self, camera: &str) -> String {
        format!("{}_{camera}", self.node)
    }
    fn ha_camera(&self, camera: &str) -> String {
        format!("{}/camera/{}/config", self.ha, self.object_id(camera))
    }
    fn ha_button(&self, camera: &str) -> String {
        format!("{}/button/{}_snapshot/config", self.ha, self.object_id(camera))
    }
    /// Home Assistant's device identifier for this gateway.
    fn device_id(&self) -> String {
        format!("farmcam_{}", self.node)
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
        tracker.spawn(self.clone().snapshots(camera, interval, request, stop.clone()));
    }

    fn qos(&self) -> QoS {
        match self.config.qos {
            0 => QoS::AtMostOnce,
            1 => QoS::AtLeastOnce,
            _ => QoS::ExactlyOnce,
        }
    }

    /// The broker connection: poll, route what arrives, reconnect with backoff. Owns the
    /// `connected` flag. At stop: "offline", DISCONNECT.
    async fn connection(
        self: Arc<Self>,
        mut eventloop: EventLoop,
        connected: watch::Sender<bool>,
        stop: CancellationToken,
    ) {
        let mut backoff = Backoff::default();
        let mut repeats = LogLimit::new();
        // `poll` is never cancelled while connected: dropping it halfway through writing a packet
        // would corrupt the stream. At stop, "offline" and DISCONNECT are queued instead, and the
        // loop ends once the DISCONNECT went out (or after GOODBYE).
        let mut goodbye: Option<Instant> = None;
        'connection: loop {
            let poll = eventloop.poll();
            tokio::pin!(poll);
            let event = loop {
                tokio::select! {
                    biased;
                    e = &mut poll => break e,
                    _ = stop.cancelled(), if goodbye.is_none() => {
                        if !*connected.borrow() {
                            break 'connection;
                        }
                        let _ = self.client.try_publish(self.topics.status(), QoS::AtLeastOnce, true, "offline");
                        let _ = self.client.try_disconnect();
                        goodbye = Some(Instant::now() + GOODBYE);
                    }
                    _ = sleep_until(goodbye.unwrap_or_else(Instant::now)), if goodbye.is_some() => {
                        debug!("mqtt: no clean disconnect within {GOODBYE:?}");
                        break 'connection;
                    }
                }
            };
            match event {
                // Keep reading until the broker closes the connection: closing first with unread
                // data would send a TCP reset, and the broker could lose the DISCONNECT in it
                // and publish the last will.
                Ok(Event::Outgoing(Outgoing::Disconnect)) if goodbye.is_some() => info!("mqtt: disconnected"),
                Ok(Event::Incoming(Packet::ConnAck(ConnAck {
                    code: ConnectReturnCode::Success,
                    ..
                }))) => {
                    backoff.reset();
                    self.stats.connects.fetch_add(1, Relaxed);
                    *self.stats.last_error.lock().unwrap() = None;
                    info!(
                        "mqtt: connected to {} as {}",
                        self.config.url, self.config.client_id
                    );
                    connected.send_replace(true);
                    self.announce.notify_one();
                }
                Ok(Event::Incoming(Packet::Publish(p))) => self.incoming(p),
                Ok(_) => {}
                Err(_) if goodbye.is_some() => break,
                Err(e) => {
                    connected.send_replace(false);
                    let msg = describe(&e, &self.config);
                    let delay = backoff.next_delay();
                    match repeats.check(&msg) {
                        Some(n) => warn!("mqtt: {msg}{}; retrying in {delay:.1?}", held_back(n)),
                        None => debug!("mqtt: {msg}; retrying in {delay:.1?}"),
                    }
                    *self.stats.last_error.lock().unwrap() = Some(msg);
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = sleep(delay) => {}
                    }
                }
            }
        }
        connected.send_replace(false);
    }

    fn incoming(&self, p: Publish) {
        let topic = p.topic.as_str();
        if topic == self.topics.ha_status() {
            if p.payload.as_ref() == b"online" {
                debug!("mqtt: Home Assistant is online: announcing again");
                self.announce.notify_one();
            }
            return;
        }
        if let Some(camera) = topic
            .strip_prefix(&format!("{}/", self.topics.prefix))
            .and_then(|t| t.strip_suffix("/snapshot/request"))
        {
            match self.requests.lock().unwrap().get(camera) {
                Some(n) => n.notify_one(),
                None => debug!("mqtt: snapshot request for unknown camera {camera:?}"),
            }
            return;
        }
        // A retained discovery config: ours, for a camera that is no longer configured?
        if p.retain && !p.payload.is_empty() && topic.starts_with(&format!("{}/", self.topics.ha)) {
            let Ok(v) = serde_json::from_slice::<serde_json::Value>(&p.payload) else {
                return;
            };
            let ours = v["device"]["identifiers"].as_array().is_some_and(|ids| {
                ids.iter()
                    .any(|i| i.as_str() == Some(self.topics.device_id().as_str()))
            });
            let current =
                self.registry.cameras().iter().any(|c| {
                    topic == self.topics.ha_camera(c.id()) || topic == self.topics.ha_button(c.id())
                });
            if ours && !current {
                info!("mqtt: removing Home Assistant entity {topic} (camera no longer configured)");
                self.stale.lock().unwrap().push(topic.to_string());
                self.announce.notify_one();
            }
        }
    }

    /// On every connect (and when Home Assistant restarts): subscribe, say online, announce
    /// discovery and state; also clears stale discovery entries.
    async fn announcer(self: Arc<Self>, stop: CancellationToken) {
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = self.announce.notified() => {}
            }
            if !*self.connected.borrow() {
                continue;
            }
            let stale: Vec<String> = std::mem::take(&mut *self.stale.lock().unwrap());
            for topic in stale {
                let _ = self
                    .client
                    .publish(topic, QoS::AtLeastOnce, true, Vec::new())
                    .await;
            }
            let mut subs = vec![format!("{}/+/snapshot/request", self.topics.prefix)];
            if self.config.ha_discovery {
                subs.push(self.topics.ha_status());
                subs.push(format!("{}/camera/+/config", self.topics.ha));
                subs.push(format!("{}/button/+/config", self.topics.ha));
            }
            for s in subs {
                let _ = self.client.subscribe(s, QoS::AtLeastOnce).await;
            }
            let _ = self
                .client
                .publish(self.topics.status(), QoS::AtLeastOnce, true, "online")
                .await;
            for camera in self.registry.cameras() {
                if self.config.ha_discovery {
                    let (cam, button) = self.discovery(&camera);
                    let _ = self
                        .client
                        .publish(self.topics.ha_camera(camera.id()), QoS::AtLeastOnce, true, cam)
                        .await;
                    let _ = self
                        .client
                        .publish(self.topics.ha_button(camera.id()), QoS::AtLeastOnce, true, button)
                        .await;
                }
                self.publish_state(&camera);
            }
        }
    }

    /// Home Assistant discovery payloads: an MQTT camera and a "take snapshot" button.
    fn discovery(&self, camera: &Camera) -> (String, String) {
        let id = camera.id();
        let device = json!({
            "identifiers": [self.topics.device_id()],
            "name": format!("farmcam {}", self.topics.node),
            "manufacturer": "farmcam",
            "model": "camera gateway",
            "sw_version": env!("CARGO_PKG_VERSION"),
        });
        // Both the gateway and the camera must be online (availability_mode "all").
        let availability = json!([
            { "topic": self.topics.status() },
            { "topic": self.topics.availability(id) },
        ]);
        let object_id = format!("farmcam_{}", self.topics.object_id(id));
        // `object_id` for Home Assistant before 2025.10, `default_entity_id` for later ones
        // (2026.4 ignores `object_id`): both, so every version names the entity the same.
        let cam = json!({
            "name": camera.config().name,
            "unique_id": object_id,
            "object_id": object_id,
            "default_entity_id": format!("camera.{object_id}"),
            "availability_mode": "all",
            "topic": self.topics.snapshot(id),
            "availability": availability,
            "payload_available": "online",
            "payload_not_available": "offline",
            "json_attributes_topic": self.topics.state(id),
            "device": device,
        });
        let button = json!({
            "name": format!("{} snapshot", camera.config().name),
            "unique_id": format!("{object_id}_snapshot"),
            "object_id": format!("{object_id}_snapshot"),
            "default_entity_id": format!("button.{object_id}_snapshot"),
            "availability_mode": "all",
            "command_topic": self.topics.request(id),
            "payload_press": "snapshot",
            "icon": "mdi:camera",
            "availability": availability,
            "device": device,
        });
        (cam.to_string(), button.to_string())
    }

    fn publish_state(&self, camera: &Camera) {
        if !*self.connected.borrow() {
            return;
        }
        let s = camera.status();
        let last = self.last_snapshot.lock().unwrap().get(camera.id()).copied();
        // The rate is measured over a second: right after going live it is not known yet.
        let fps = (s.measured_fps > 0.0 || s.state != CameraState::Live).then_some(s.measured_fps);
        let available = if s.state == CameraState::Offline {
            "offline"
        } else {
            "online"
        };
        let _ = self.client.try_publish(
            self.topics.availability(camera.id()),
            QoS::AtLeastOnce,
            true,
            available,
        );
        let payload = json!({
            "state": s.state,
            "viewers": s.viewers,
            "fps": fps,
            "size": s.size,
            "last_snapshot": last,
            "last_error": s.last_error,
            "light": s.light,
        });
        let _ = self.client.try_publish(
            self.topics.state(camera.id()),
            QoS::AtLeastOnce,
            true,
            payload.to_string(),
        );
    }

    /// Camera state changes (from the event log) → the state topic.
    async fn states(self: Arc<Self>, stop: CancellationToken) {
        let (_, mut rx) = self.registry.events.subscribe(None);
        loop {
            let event = tokio::select! {
                _ = stop.cancelled() => return,
                e = rx.recv() => e,
            };
            let Ok(event) = event else {
                // Lagged (or closed): states are re-read whole, so just carry on.
                continue;
            };
            if let Some(camera) = self.registry.get(&event.camera) {
                self.publish_state(&camera);
            }
        }
    }

    /// One camera's snapshots: every `interval` while connected (the first at once), and on
    /// request.
    async fn snapshots(
        self: Arc<Self>,
        camera: Arc<Camera>,
        interval: Option<Duration>,
        request: Arc<Notify>,
        stop: CancellationToken,
    ) {
        let mut connected = self.connected.clone();
        let mut due = Instant::now();
        loop {
            if !*connected.borrow_and_update() {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = connected.changed() => {}
                }
                due = Instant::now();
                continue;
            }
            let scheduled = tokio::select! {
                _ = stop.cancelled() => return,
                _ = connected.changed() => continue,
                _ = request.notified() => false,
                _ = sleep_until(due), if interval.is_some() => true,
            };
            // A requested snapshot comes on top: it does not move the schedule.
            if let (true, Some(i)) = (scheduled, interval) {
                due = (due + i).max(Instant::now());
            }
            let snapshot = tokio::select! {
                _ = stop.cancelled() => return,
                s = camera.snapshot(None) => s,
            };
            match snapshot {
                Ok(frame) => self.publish_snapshot(&camera, &frame.jpeg),
                Err(e) => {
                    self.stats.snapshots_skipped.fetch_add(1, Relaxed);
                    let why = match e {
                        SnapshotError::Timeout { .. } => "no frame within snapshot_timeout",
                        SnapshotError::Offline { .. } => "the camera is offline",
                        SnapshotError::ShuttingDown => return,
                    };
                    debug!(camera = %camera.id(), "mqtt: no snapshot to publish: {why}");
                }
            }
        }
    }

    fn publish_snapshot(&self, camera: &Camera, jpeg: &[u8]) {
        let topic = self.topics.snapshot(camera.id());
        // Fixed header (≤ 5), topic length (2), topic, packet id (2).
        let packet = jpeg.len() + topic.len() + 9;
        if packet > self.config.max_packet_size {
            self.stats.snapshots_skipped.fetch_add(1, Relaxed);
            let msg = format!(
                "snapshot of {} bytes is larger than mqtt.max_packet_size ({} bytes): skipped",
                jpeg.len(),
                self.config.max_packet_size
            );
            if self.too_big.lock().unwrap().check(camera.id()).is_some() {
                warn!(camera = %camera.id(), "mqtt: {msg}; raise max_packet_size (and the broker's limit) or lower size/quality");
            } else {
                debug!(camera = %camera.id(), "mqtt: {msg}");
            }
            return;
        }
        match self
            .client
            .try_publish(topic, self.qos(), self.config.retain, jpeg.to_vec())
        {
            Ok(()) => {
                self.stats.snapshots_published.fetch_add(1, Relaxed);
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_secs_f64();
                self.last_snapshot
                    .lock()
                    .unwrap()
                    .insert(camera.id().to_string(), (now * 1000.0).round() / 1000.0);
                self.publish_state(camera);
            }
            Err(e) => {
                self.stats.snapshots_skipped.fetch_add(1, Relaxed);
                debug!(camera = %camera.id(), "mqtt: snapshot skipped, the broker is not keeping up: {e}");
            }
        }
    }
}

/// One line a farm operator can act on.
fn describe(e: &ConnectionError, c: &MqttConfig) -> String {
    match e {
        ConnectionError::ConnectionRefused(code) => match code {
            ConnectReturnCode::BadUserNamePassword | ConnectReturnCode::NotAuthorized => format!(
                "{} refused the login ({code:?}): check [mqtt] username and password",
                c.url
            ),
            other => format!("{} refused the connection: {other:?}", c.url),
        },
        ConnectionError::Io(io) => format!("cannot reach {}: {io}", c.url),
        ConnectionError::Tls(t) => format!(
            "TLS with {} failed: {t} (check ca_file and the broker's certificate)",
            c.url
        ),
        ConnectionError::NetworkTimeout => format!("{} did not answer in time", c.url),
        other => format!("connection to {} lost: {other}", c.url),
    }
}
