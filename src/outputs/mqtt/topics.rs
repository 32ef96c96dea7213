//! Topic names, and the Home Assistant discovery payloads that point at them.

use serde_json::json;

use super::Shared;
use crate::config::MqttConfig;
use crate::registry::Camera;

pub(super) struct Topics {
    pub(super) prefix: String,
    pub(super) ha: String,
    pub(super) node: String,
}

impl Topics {
    pub(super) fn new(c: &MqttConfig) -> Self {
        Topics {
            prefix: c.topic_prefix.clone(),
            ha: c.ha_prefix.clone(),
            node: c.node_id.clone(),
        }
    }
    pub(super) fn status(&self) -> String {
        format!("{}/status", self.prefix)
    }
    pub(super) fn snapshot(&self, camera: &str) -> String {
        format!("{}/{camera}/snapshot", self.prefix)
    }
    pub(super) fn state(&self, camera: &str) -> String {
        format!("{}/{camera}/state", self.prefix)
    }
    pub(super) fn request(&self, camera: &str) -> String {
        format!("{}/{camera}/snapshot/request", self.prefix)
    }
    /// `online` unless the camera is offline (retained): Home Assistant shows it unavailable.
    pub(super) fn availability(&self, camera: &str) -> String {
        format!("{}/{camera}/availability", self.prefix)
    }
    /// The latest finished timelapse of a camera (JSON, retained).
    pub(super) fn timelapse(&self, camera: &str) -> String {
        format!("{}/{camera}/timelapse", self.prefix)
    }
    pub(super) fn ha_timelapse(&self, camera: &str) -> String {
        format!("{}/sensor/{}_timelapse/config", self.ha, self.object_id(camera))
    }
    pub(super) fn ha_status(&self) -> String {
        format!("{}/status", self.ha)
    }
    pub(super) fn object_id(&self, camera: &str) -> String {
        format!("{}_{camera}", self.node)
    }
    pub(super) fn ha_camera(&self, camera: &str) -> String {
        format!("{}/camera/{}/config", self.ha, self.object_id(camera))
    }
    pub(super) fn ha_button(&self, camera: &str) -> String {
        format!("{}/button/{}_snapshot/config", self.ha, self.object_id(camera))
    }
    /// Home Assistant's device identifier for this gateway.
    pub(super) fn device_id(&self) -> String {
        format!("farmcam_{}", self.node)
    }
}

impl Shared {
    /// Home Assistant discovery payloads: an MQTT camera, a "take snapshot" button, and with
    /// timelapses a sensor of the latest one.
    pub(super) fn discovery(&self, camera: &Camera) -> (String, String, Option<String>) {
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
        let timelapse = self
            .timelapses
            .is_some()
            .then(|| self.timelapse_discovery(camera, &device, &availability));
        (cam.to_string(), button.to_string(), timelapse)
    }
}
