//! Klipper printers as timelapse triggers: each `[[moonraker]]` entry (with `[timelapse]` on and
//! `cameras` named) keeps Moonraker's websocket open and subscribes to `print_stats`. A print
//! that starts (`printing`) starts a timelapse of each of the entry's cameras, named after the
//! printer and the file; `info.current_layer` gives a picture per layer; `complete`, `cancelled`
//! or `error` stops them with that outcome (`standby` as `stopped`). A Moonraker that is away
//! (printers are switched off) is retried with backoff; Klipper restarting is waited for
//! (`notify_klippy_ready`) and subscribed to again. A timelapse goes on through a lost
//! connection: what the printer says when it is back decides.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use super::{StartRequest, Timelapses};
use crate::config::MoonrakerConfig;
use crate::moonraker_api::{request, websocket, Socket};
use crate::util::backoff::Backoff;
use crate::util::log_limit::{held_back, LogLimit};

/// Moonraker sends something at least every second (`notify_proc_stat_update`); after this long
/// without anything, the connection is taken as dead and opened again.
const SILENCE: Duration = Duration::from_secs(60);
const IDENTIFY: u64 = 1;
const SERVER_INFO: u64 = 2;
const SUBSCRIBE: u64 = 3;

/// The running triggers.
pub struct Triggers {
    stop: CancellationToken,
    tracker: TaskTracker,
}

impl Triggers {
    pub async fn stop(self) {
        self.stop.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }
}

/// Watch every `[[moonraker]]` printer that records timelapses.
pub fn start(configs: &[MoonrakerConfig], timelapses: &Arc<Timelapses>) -> Triggers {
    let t = Triggers {
        stop: CancellationToken::new(),
        tracker: TaskTracker::new(),
    };
    for c in configs.iter().filter(|c| c.timelapse) {
        let cameras = match &c.cameras {
            Some(ids) if !ids.is_empty() => ids.clone(),
            _ => {
                info!(
                    "moonraker {}: no timelapses of its prints: name its cameras in [[moonraker]] (cameras = [\"…\"])",
                    c.url
                );
                continue;
            }
        };
        info!(
            "moonraker {}: timelapses of printer {:?}'s prints by {}",
            c.url,
            c.printer,
            cameras.join(", ")
        );
        t.tracker
            .spawn(watch(c.clone(), cameras, timelapses.clone(), t.stop.clone()));
    }
    t
}

/// What the printer said last (updates are partial: fields left out keep their values).
#[derive(Debug, Default)]
pub struct Printer {
    state: Option<String>,
    filename: Option<String>,
    layer: Option<u64>,
}

/// What a change of `print_stats` asks of the timelapses.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    Start { file: Option<String> },
    Layer(u64),
    Stop(&'static str),
}

impl Printer {
    /// Take an update of `print_stats`; what it means for a printer `recording` or not.
    pub fn update(&mut self, stats: &Value, recording: bool) -> Vec<Step> {
        if let Some(s) = stats.get("state").and_then(Value::as_str) {
            self.state = Some(s.to_string());
        }
        if let Some(f) = stats.get("filename").and_then(Value::as_str) {
            self.filename = (!f.is_empty()).then(|| f.to_string());
        }
        let layer = stats
            .get("info")
            .and_then(|i| i.get("current_layer"))
            .and_then(Value::as_u64);
        let mut steps = Vec::new();
        match self.state.as_deref() {
            Some("printing" | "paused") if !recording => steps.push(Step::Start {
                file: self.filename.clone(),
            }),
            Some(s @ ("complete" | "cancelled" | "error" | "standby")) if recording => {
                steps.push(Step::Stop(match s {
                    "complete" => "complete",
                    "cancelled" => "cancelled",
                    "error" => "error",
                    _ => "stopped",
                }));
                self.layer = None;
                return steps;
            }
            _ => {}
        }
        if let Some(n) = layer {
            if self.layer != Some(n) && matches!(self.state.as_deref(), Some("printing" | "paused")) {
                steps.push(Step::Layer(n));
            }
            self.layer = Some(n);
        }
        steps
    }
}

async fn watch(
    config: MoonrakerConfig,
    cameras: Vec<String>,
    timelapses: Arc<Timelapses>,
    stop: CancellationToken,
) {
    let mut backoff = Backoff::default();
    let mut log = LogLimit::new();
    loop {
        let why = tokio::select! {
            _ = stop.cancelled() => return,
            r = session(&config, &cameras, &timelapses, &mut backoff) => r,
        };
        let retry = backoff.next_delay();
        match log.check(&why) {
            Some(n) => warn!(
                "moonraker {}: {why}{}; timelapses of its prints wait for it (retrying in {retry:.0?})",
                config.url,
                held_back(n)
            ),
            None => debug!("moonraker {}: {why} (again)", config.url),
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(retry) => {}
        }
    }
}

/// One connection, until it fails (why).
async fn session(
    config: &MoonrakerConfig,
    cameras: &[String],
    timelapses: &Arc<Timelapses>,
    backoff: &mut Backoff,
) -> String {
    let mut ws = match websocket(config).await {
        Ok(ws) => ws,
        Err(why) => return why,
    };
    let identify = request(
        IDENTIFY,
        "server.connection.identify",
        serde_json::json!({ "client_name": "farmcam", "version": env!("CARGO_PKG_VERSION"), "type": "other", "url": "farmcam" }),
    );
    for msg in [identify, request(SERVER_INFO, "server.info", Value::Null)] {
        if let Err(e) = ws.send(Message::text(msg)).await {
            return format!("websocket: {e}");
        }
    }
    let mut printer = Printer::default();
    loop {
        let msg = match tokio::time::timeout(SILENCE, ws.next()).await {
            Err(_) => return format!("said nothing for {}", humantime::format_duration(SILENCE)),
            Ok(None) => return "closed the websocket".into(),
            Ok(Some(Err(e))) => return format!("websocket: {e}"),
            Ok(Some(Ok(m))) => m,
        };
        let Message::Text(text) = msg else { continue };
        let Ok(v) = serde_json::from_str::<Value>(text.as_str()) else {
            continue;
        };
        let subscribe = match (
            v.get("id").and_then(Value::as_u64),
            v.get("method").and_then(Value::as_str),
        ) {
            (Some(SERVER_INFO), _) => {
                backoff.reset();
                v["result"]["klippy_state"] == "ready"
            }
            (Some(SUBSCRIBE), _) => {
                if let Some(err) = v.get("error") {
                    // Klipper went away between server.info and the subscription: its ready
                    // notification brings the next one.
                    debug!("moonraker {}: subscribing to print_stats: {err}", config.url);
                } else {
                    apply(
                        config,
                        cameras,
                        timelapses,
                        &mut printer,
                        &v["result"]["status"]["print_stats"],
                    );
                }
                false
            }
            (_, Some("notify_klippy_ready")) => true,
            (_, Some("notify_status_update")) => {
                if let Some(stats) = v["params"].get(0).and_then(|p| p.get("print_stats")) {
                    apply(config, cameras, timelapses, &mut printer, stats);
                }
                false
            }
            _ => false,
        };
        if subscribe {
            let sub = request(
                SUBSCRIBE,
                "printer.objects.subscribe",
                serde_json::json!({ "objects": { "print_stats": ["state", "filename", "info"] } }),
            );
            if let Err(e) = send(&mut ws, sub).await {
                return e;
            }
        }
    }
}

async fn send(ws: &mut Socket, text: String) -> Result<(), String> {
    ws.send(Message::text(text))
        .await
        .map_err(|e| format!("websocket: {e}"))
}

fn apply(
    config: &MoonrakerConfig,
    cameras: &[String],
    timelapses: &Arc<Timelapses>,
    printer: &mut Printer,
    stats: &Value,
) {
    let recording = cameras.iter().any(|c| timelapses.recording(c));
    for step in printer.update(stats, recording) {
        for camera in cameras {
            match &step {
                Step::Start { file } => {
                    let req = StartRequest {
                        printer: Some(config.printer.clone()),
                        file: file.clone(),
                        trigger: "moonraker",
                    };
                    if let Err(e) = timelapses.start_recording(camera, req) {
                        warn!(
                            "moonraker {}: cannot start the timelapse of camera {camera}: {e}",
                            config.url
                        );
                    }
                }
                Step::Layer(n) => timelapses.layer(camera, *n),
                Step::Stop(outcome) => {
                    let _ = timelapses.stop_recording(camera, outcome);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn print_stats_start_layer_and_stop_timelapses() {
        let mut p = Printer::default();
        assert!(p
            .update(&json!({"state": "standby", "filename": ""}), false)
            .is_empty());
        assert_eq!(
            p.update(
                &json!({"state": "printing", "filename": "benchy.gcode", "info": {"current_layer": 0}}),
                false
            ),
            vec![
                Step::Start {
                    file: Some("benchy.gcode".into())
                },
                Step::Layer(0)
            ]
        );
        assert_eq!(
            p.update(&json!({"info": {"current_layer": 1}}), true),
            vec![Step::Layer(1)]
        );
        assert!(
            p.update(&json!({"info": {"current_layer": 1}}), true).is_empty(),
            "the same layer again"
        );
        assert!(p.update(&json!({"state": "paused"}), true).is_empty());
        assert_eq!(
            p.update(&json!({"state": "cancelled"}), true),
            vec![Step::Stop("cancelled")]
        );
        assert!(
            p.update(&json!({"state": "cancelled"}), false).is_empty(),
            "stopped already"
        );
        // A print under way when farmcam connects.
        let mut p = Printer::default();
        assert_eq!(
            p.update(
                &json!({"state": "printing", "filename": "a.gcode", "info": {}}),
                false
            ),
            vec![Step::Start {
                file: Some("a.gcode".into())
            }]
        );
        assert_eq!(
            p.update(&json!({"state": "complete"}), true),
            vec![Step::Stop("complete")]
        );
    }
}
