//! Timelapses over MQTT: `<prefix>/<camera>/timelapse/start` and `…/stop` commands (for OctoPrint,
//! PrusaLink, a script, a Home Assistant automation), each finished timelapse published retained
//! on `<prefix>/<camera>/timelapse` (JSON, with its URL), and a Home Assistant sensor whose state
//! is the latest timelapse's URL.

use std::sync::Arc;

use rumqttc::QoS;
use serde_json::{json, Value};
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::Shared;
use crate::registry::Camera;
use crate::timelapse::{Info, StartRequest};

impl Shared {
    /// A command on `<prefix>/<camera>/timelapse/start|stop`; false if the topic is not one.
    pub(super) fn timelapse_command(&self, topic: &str, payload: &[u8]) -> bool {
        let Some(t) = &self.timelapses else { return false };
        let Some(rest) = topic.strip_prefix(&format!("{}/", self.topics.prefix)) else {
            return false;
        };
        let (camera, start) = match (
            rest.strip_suffix("/timelapse/start"),
            rest.strip_suffix("/timelapse/stop"),
        ) {
            (Some(c), _) => (c, true),
            (_, Some(c)) => (c, false),
            _ => return false,
        };
        let body: Value = serde_json::from_slice(payload).unwrap_or(Value::Null);
        let text = |k: &str| {
            body.get(k)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        };
        let result = if start {
            t.start_recording(
                camera,
                StartRequest {
                    printer: text("printer"),
                    file: text("file"),
                    trigger: "mqtt",
                },
            )
        } else {
            let said = String::from_utf8_lossy(payload).trim().to_string();
            let outcome = text("outcome").unwrap_or(said);
            let outcome = match outcome.as_str() {
                "complete" | "cancelled" | "error" => outcome.as_str(),
                _ => "stopped",
            };
            t.stop_recording(camera, outcome)
        };
        match result {
            Ok(info) => info!(
                "mqtt: timelapse {} {}",
                info.name,
                if start { "recording" } else { "stopped" }
            ),
            Err(e) => warn!("mqtt: {topic}: {e}"),
        }
        true
    }

    /// Publish each finished timelapse (retained, per camera), until `stop`.
    pub(super) async fn finished_timelapses(self: Arc<Self>, stop: CancellationToken) {
        let Some(t) = &self.timelapses else { return };
        let mut rx = t.finished();
        loop {
            let info = tokio::select! {
                _ = stop.cancelled() => return,
                r = rx.recv() => match r {
                    Ok(i) => i,
                    Err(RecvError::Lagged(_)) => continue,
                    Err(RecvError::Closed) => return,
                },
            };
            let payload = self.timelapse_payload(&info);
            if let Err(e) = self.client.try_publish(
                self.topics.timelapse(&info.camera),
                QoS::AtLeastOnce,
                true,
                payload.to_string(),
            ) {
                debug!("mqtt: timelapse {} not published: {e}", info.name);
            }
        }
    }

    /// A finished timelapse as published: its fields, the URL made absolute with
    /// `[http] public_url` when set.
    fn timelapse_payload(&self, info: &Info) -> Value {
        let mut v = serde_json::to_value(info).unwrap_or(Value::Null);
        if let (Some(base), Some(url)) = (&self.base_url, &info.url) {
            v["url"] = json!(format!("{}{url}", base.trim_end_matches('/')));
        }
        v
    }

    /// Home Assistant discovery for a camera's latest timelapse: a sensor holding its URL.
    pub(super) fn timelapse_discovery(
        &self,
        camera: &Camera,
        device: &Value,
        availability: &Value,
    ) -> String {
        let object_id = format!("farmcam_{}_timelapse", self.topics.object_id(camera.id()));
        json!({
            "name": format!("{} timelapse", camera.config().name),
            "unique_id": object_id,
            "object_id": object_id,
            "default_entity_id": format!("sensor.{object_id}"),
            "state_topic": self.topics.timelapse(camera.id()),
            "value_template": "{{ value_json.url }}",
            "json_attributes_topic": self.topics.timelapse(camera.id()),
            "icon": "mdi:timelapse",
            "availability_mode": "all",
            "availability": availability,
            "device": device,
        })
        .to_string()
    }
}
