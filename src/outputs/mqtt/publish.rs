//! What is published and when: status, discovery and state on every (re)connect, state on
//! every camera event, snapshots periodically and on request.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rumqttc::QoS;
use serde_json::json;
use tokio::sync::Notify;
use tokio::time::{sleep_until, Instant};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::Shared;
use crate::events::CameraState;
use crate::media::sizes::WidthWanted;
use crate::registry::{Camera, SnapshotError};

impl Shared {
    /// On every connect (and when Home Assistant restarts): subscribe, say online, announce
    /// discovery and state; also clears stale discovery entries.
    pub(super) async fn announcer(self: Arc<Self>, stop: CancellationToken) {
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
            if self.timelapses.is_some() {
                subs.push(format!("{}/+/timelapse/start", self.topics.prefix));
                subs.push(format!("{}/+/timelapse/stop", self.topics.prefix));
            }
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
                    let (cam, button, timelapse) = self.discovery(&camera);
                    if let Some(t) = timelapse {
                        let _ = self
                            .client
                            .publish(self.topics.ha_timelapse(camera.id()), QoS::AtLeastOnce, true, t)
                            .await;
                    }
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

    fn publish_state(&self, camera: &Camera) {
        if !*self.connected.borrow() {
            return;
        }
        let s = camera.status();
        let last = self.last_snapshot.lock().unwrap().get(camera.id()).copied();
        // The rate is measured over a second: right after going live it is not known yet.
        let fps = (s.measured_fps > 0.0 || s.state != CameraState::Live).then_some(s.measured_fps);
        let available = if s.available { "online" } else { "offline" };
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
    pub(super) async fn states(self: Arc<Self>, stop: CancellationToken) {
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
    pub(super) async fn snapshots(
        self: Arc<Self>,
        camera: Arc<Camera>,
        interval: Option<Duration>,
        width: Option<u32>,
        request: Arc<Notify>,
        stop: CancellationToken,
    ) {
        let mut connected = self.connected.clone();
        let mut size = WidthWanted::new(width);
        let mut due = Instant::now();
        // While connected, the camera knows these snapshots come back every `interval`.
        let mut periodic = None;
        loop {
            if !*connected.borrow_and_update() {
                periodic = None;
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = connected.changed() => {}
                }
                due = Instant::now();
                continue;
            }
            if periodic.is_none() {
                periodic = interval.map(|i| camera.expect_periodic("mqtt", i));
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
                Ok(frame) => {
                    let frame = size.apply(camera.id(), &camera.shared().sizes, frame).await;
                    self.publish_snapshot(&camera, &frame.jpeg)
                }
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
