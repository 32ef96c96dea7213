//! Bambu printers as timelapse triggers: for each printer that a `bambu://` or `bambu-rtsps://`
//! camera watches (with `[timelapse]` on), one MQTT connection to the printer's own broker (TLS on
//! 8883, user `bblp`, the camera's access code, its certificate accepted or pinned as the
//! camera's), subscribed to `device/SERIAL/report` (`device/+/report` until the serial is known),
//! asking for the whole state (`pushall`) since P1 and A1 printers send only what changed.
//! `gcode_state` RUNNING starts the timelapse (named after `subtask_name`), `layer_num` gives a
//! picture per layer, FINISH / FAILED / IDLE stop it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{
    AsyncClient, ConnAck, ConnectReturnCode, Event, MqttOptions, Packet, QoS, TlsConfiguration, Transport,
};
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::print::{Phase, Print, Report};
use super::{Timelapses, Triggers};
use crate::config::CameraConfig;
use crate::source::bambu::{printer_of, tls_config, Printer};
use crate::util::backoff::Backoff;
use crate::util::log_limit::{held_back, LogLimit};

/// Reports of an X1 carry its whole state: tens of kB.
const MAX_PACKET: usize = 1 << 20;
const KEEP_ALIVE: Duration = Duration::from_secs(30);

/// One printer: how to reach it, its serial if configured, and its cameras.
struct Watched {
    /// The printer's name in timelapses: its (first) camera's name.
    name: String,
    printer: Printer,
    port: u16,
    serial: Option<String>,
    cameras: Vec<String>,
}

/// Watch every Bambu printer a camera of `cameras` records.
pub fn start(cameras: &[Arc<CameraConfig>], timelapses: &Arc<Timelapses>) -> Triggers {
    let t = Triggers::default();
    let mut printers: BTreeMap<(String, u16), Watched> = BTreeMap::new();
    for c in cameras.iter().filter(|c| c.timelapse) {
        let Some(printer) = printer_of(&c.source) else {
            continue;
        };
        let w = printers
            .entry((printer.host.clone(), c.bambu_mqtt_port))
            .or_insert_with(|| Watched {
                name: c.name.clone(),
                printer,
                port: c.bambu_mqtt_port,
                serial: None,
                cameras: Vec::new(),
            });
        w.serial = w.serial.take().or_else(|| c.bambu_serial.clone());
        w.cameras.push(c.id.clone());
    }
    for (_, w) in printers {
        info!(
            "bambu {}: timelapses of its prints by {}",
            w.printer.host,
            w.cameras.join(", ")
        );
        t.tracker.spawn(watch(w, timelapses.clone(), t.stop.clone()));
    }
    t
}

/// A printer's `print` report as a [`Report`].
pub fn report(print: &Value) -> Report {
    Report {
        phase: print.get("gcode_state").and_then(Value::as_str).map(|s| match s {
            "RUNNING" | "PAUSE" => Phase::Printing,
            "FINISH" => Phase::Ended("complete"),
            "FAILED" => Phase::Ended("error"),
            // IDLE, PREPARE (heating, levelling: not printing yet), SLICING, unknown.
            _ => Phase::Idle,
        }),
        file: print
            .get("subtask_name")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .or_else(|| print.get("gcode_file").and_then(Value::as_str))
            .map(str::to_string),
        layer: print.get("layer_num").and_then(Value::as_u64),
    }
}

async fn watch(w: Watched, timelapses: Arc<Timelapses>, stop: CancellationToken) {
    let host = w.printer.host.clone();
    let mut options = MqttOptions::new(format!("farmcam-{}", fastrand::u32(..)), &host, w.port);
    options
        .set_credentials("bblp", w.printer.access_code.clone())
        .set_keep_alive(KEEP_ALIVE)
        .set_clean_session(true)
        .set_max_packet_size(MAX_PACKET, MAX_PACKET)
        .set_transport(Transport::Tls(TlsConfiguration::Rustls(Arc::new(tls_config(
            w.printer.fingerprint,
        )))));
    let (client, mut eventloop) = AsyncClient::new(options, 10);
    let mut serial = w.serial.clone();
    let mut print = Print::default();
    let mut backoff = Backoff::default();
    let mut log = LogLimit::new();
    loop {
        let event = tokio::select! {
            _ = stop.cancelled() => break,
            e = eventloop.poll() => e,
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(ConnAck {
                code: ConnectReturnCode::Success,
                ..
            }))) => {
                backoff.reset();
                info!("bambu {host}: connected to the printer's MQTT");
                let topic = format!("device/{}/report", serial.as_deref().unwrap_or("+"));
                let _ = client.try_subscribe(topic, QoS::AtMostOnce);
                if let Some(s) = &serial {
                    push_all(&client, s);
                }
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                let Some(from) = p
                    .topic
                    .strip_prefix("device/")
                    .and_then(|t| t.strip_suffix("/report"))
                else {
                    continue;
                };
                if serial.is_none() {
                    // Learnt from the first report: from now on the whole state is asked for.
                    serial = Some(from.to_string());
                    push_all(&client, from);
                }
                let Ok(v) = serde_json::from_slice::<Value>(&p.payload) else {
                    continue;
                };
                if let Some(p) = v.get("print") {
                    timelapses.follow(&w.name, &w.cameras, &mut print, report(p), "bambu");
                }
            }
            Ok(_) => {}
            Err(e) => {
                let why = match &e {
                    rumqttc::ConnectionError::ConnectionRefused(code) => format!(
                        "the printer refused the login ({code:?}): check the camera's access code (it changes when the printer's LAN mode is reset)"
                    ),
                    e => e.to_string(),
                };
                let retry = backoff.next_delay();
                match log.check(&why) {
                    Some(n) => warn!(
                        "bambu {host}: MQTT: {why}{}; timelapses of its prints wait for it (retrying in {retry:.0?})",
                        held_back(n)
                    ),
                    None => debug!("bambu {host}: MQTT: {why} (again)"),
                }
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(retry) => {}
                }
            }
        }
    }
    let _ = client.try_disconnect();
}

/// Ask the printer for its whole state (P1 and A1 printers send only what changed).
fn push_all(client: &AsyncClient, serial: &str) {
    let body = serde_json::json!({ "pushing": { "sequence_id": "0", "command": "pushall" } });
    let _ = client.try_publish(
        format!("device/{serial}/request"),
        QoS::AtMostOnce,
        false,
        body.to_string(),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn bambu_reports_as_print_reports() {
        assert_eq!(
            report(
                &json!({"gcode_state": "RUNNING", "subtask_name": "Benchy", "layer_num": 12, "mc_percent": 5})
            ),
            Report {
                phase: Some(Phase::Printing),
                file: Some("Benchy".into()),
                layer: Some(12)
            }
        );
        assert_eq!(
            report(&json!({"gcode_state": "PAUSE"})).phase,
            Some(Phase::Printing)
        );
        assert_eq!(
            report(&json!({"gcode_state": "FINISH"})).phase,
            Some(Phase::Ended("complete"))
        );
        assert_eq!(
            report(&json!({"gcode_state": "FAILED"})).phase,
            Some(Phase::Ended("error"))
        );
        assert_eq!(
            report(&json!({"gcode_state": "PREPARE"})).phase,
            Some(Phase::Idle)
        );
        assert_eq!(
            report(&json!({"mc_percent": 50})),
            Report::default(),
            "a P1's partial report"
        );
    }
}
