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
use tracing::{debug, info, warn};

use super::print::{Phase, Print, Report};
use super::{Timelapses, Triggers};
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

/// Watch every `[[moonraker]]` printer that records timelapses.
pub fn start(configs: &[MoonrakerConfig], timelapses: &Arc<Timelapses>) -> Triggers {
    let t = Triggers::default();
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

/// `print_stats` fields as a [`Report`].
pub fn report(stats: &Value) -> Report {
    Report {
        phase: stats.get("state").and_then(Value::as_str).map(|s| match s {
            "printing" | "paused" => Phase::Printing,
            "complete" => Phase::Ended("complete"),
            "cancelled" => Phase::Ended("cancelled"),
            "error" => Phase::Ended("error"),
            _ => Phase::Idle,
        }),
        file: stats.get("filename").and_then(Value::as_str).map(str::to_string),
        layer: stats
            .get("info")
            .and_then(|i| i.get("current_layer"))
            .and_then(Value::as_u64),
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
    let mut printer = Print::default();
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
    print: &mut Print,
    stats: &Value,
) {
    timelapses.follow(&config.printer, cameras, print, report(stats), "moonraker");
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn print_stats_as_reports() {
        assert_eq!(
            report(&json!({"state": "printing", "filename": "benchy.gcode", "info": {"current_layer": 3}})),
            Report {
                phase: Some(Phase::Printing),
                file: Some("benchy.gcode".into()),
                layer: Some(3)
            }
        );
        assert_eq!(report(&json!({"state": "paused"})).phase, Some(Phase::Printing));
        assert_eq!(
            report(&json!({"state": "cancelled"})).phase,
            Some(Phase::Ended("cancelled"))
        );
        assert_eq!(report(&json!({"state": "standby"})).phase, Some(Phase::Idle));
        assert_eq!(
            report(&json!({"info": {"current_layer": null}})),
            Report::default()
        );
    }
}
