//! Camera state changes as a numbered event log, for `/api/events` (Server-Sent Events).
//!
//! Every event gets an increasing id; the last [`KEEP`] are kept so that a client reconnecting with
//! `Last-Event-ID` receives exactly what it missed.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use serde::Serialize;
use tokio::sync::broadcast;

/// How many past events are kept for reconnecting clients.
pub const KEEP: usize = 512;

/// What a camera is doing, as shown in the API, events and logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CameraState {
    /// No pump: nobody is watching, the camera is closed.
    Idle,
    /// Opening the upstream, no frame yet.
    Starting,
    /// Frames are flowing.
    Live,
    /// The upstream failed; viewers get the placeholder while farmcam retries.
    Offline,
}

/// A light's state, as events, `/api/cameras`, metrics and MQTT show it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LightState {
    /// Not switched yet since farmcam started.
    Unknown,
    Off,
    On,
    /// The port is missing or failing; farmcam retries.
    Unavailable,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    Started,
    Live,
    Offline,
    Stopped,
    Viewers,
    /// A camera's light changed state.
    Light,
}

/// One event, serialised once and shared by every listener.
#[derive(Debug)]
pub struct Event {
    pub id: u64,
    /// The camera it is about.
    pub camera: String,
    /// The JSON payload (the SSE `data:` line).
    pub json: String,
}

#[derive(Serialize)]
struct Payload<'a> {
    id: u64,
    camera: &'a str,
    kind: EventKind,
    state: CameraState,
    viewers: usize,
    time: f64,
}

pub struct EventBus {
    ring: Mutex<Ring>,
    tx: broadcast::Sender<Arc<Event>>,
}

struct Ring {
    next_id: u64,
    events: VecDeque<Arc<Event>>,
}

impl Default for EventBus {
    fn default() -> Self {
        EventBus {
            ring: Mutex::new(Ring {
                next_id: 1,
                events: VecDeque::with_capacity(KEEP),
            }),
            tx: broadcast::channel(KEEP).0,
        }
    }
}

impl EventBus {
    pub fn publish(&self, camera: &str, kind: EventKind, state: CameraState, viewers: usize) {
        self.push(camera, |id, time| {
            serde_json::to_string(&Payload {
                id,
                camera,
                kind,
                state,
                viewers,
                time,
            })
        });
    }

    /// A light used by `camera` is now `state` (`{"kind":"light","light":ID,"light_state":…}`).
    pub fn publish_light(&self, camera: &str, light: &str, state: LightState) {
        self.push(camera, |id, time| {
            serde_json::to_string(&serde_json::json!({
                "id": id,
                "camera": camera,
                "kind": EventKind::Light,
                "light": light,
                "light_state": state,
                "time": time,
            }))
        });
    }

    fn push(&self, camera: &str, payload: impl FnOnce(u64, f64) -> serde_json::Result<String>) {
        let mut ring = self.ring.lock().unwrap();
        let id = ring.next_id;
        ring.next_id += 1;
        let time = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        let json = payload(id, time).expect("event serialises");
        let event = Arc::new(Event {
            id,
            camera: camera.to_string(),
            json,
        });
        if ring.events.len() == KEEP {
            ring.events.pop_front();
        }
        ring.events.push_back(event.clone());
        // Sent under the lock so that subscribe() sees each event exactly once (backlog or live).
        let _ = self.tx.send(event);
    }

    /// The kept events after `last_id` (none when `None`: a new client starts from now), and a
    /// receiver for everything after them, with no gap and no duplicate.
    pub fn subscribe(&self, last_id: Option<u64>) -> (Vec<Arc<Event>>, broadcast::Receiver<Arc<Event>>) {
        let ring = self.ring.lock().unwrap();
        let backlog = match last_id {
            Some(last) => ring.events.iter().filter(|e| e.id > last).cloned().collect(),
            None => Vec::new(),
        };
        (backlog, self.tx.subscribe())
    }

    /// The id the next event will get.
    pub fn next_id(&self) -> u64 {
        self.ring.lock().unwrap().next_id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resume_gets_exactly_the_missed_events() {
        let bus = EventBus::default();
        for _ in 0..5 {
            bus.publish("a", EventKind::Viewers, CameraState::Live, 1);
        }
        let (backlog, mut rx) = bus.subscribe(Some(3));
        assert_eq!(backlog.iter().map(|e| e.id).collect::<Vec<_>>(), vec![4, 5]);
        bus.publish("a", EventKind::Stopped, CameraState::Idle, 0);
        let e = rx.try_recv().unwrap();
        assert_eq!(e.id, 6);
        assert!(e.json.contains("\"kind\":\"stopped\"") && e.json.contains("\"camera\":\"a\""));
    }

    #[test]
    fn only_the_last_events_are_kept() {
        let bus = EventBus::default();
        for _ in 0..KEEP + 10 {
            bus.publish("a", EventKind::Viewers, CameraState::Live, 1);
        }
        let (backlog, _) = bus.subscribe(Some(0));
        assert_eq!(backlog.len(), KEEP);
        assert_eq!(backlog[0].id, 11);
    }
}
