//! The broker connection: poll, route what arrives, reconnect with backoff; at stop, "offline"
//! and a clean DISCONNECT.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use rumqttc::{
    ConnAck, ConnectReturnCode, ConnectionError, Event, EventLoop, Outgoing, Packet, Publish, QoS,
};
use tokio::sync::watch;
use tokio::time::{sleep, sleep_until, Instant};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{Shared, GOODBYE};
use crate::config::MqttConfig;
use crate::util::backoff::Backoff;
use crate::util::log_limit::{held_back, LogLimit};

impl Shared {
    /// The broker connection: poll, route what arrives, reconnect with backoff. Owns the
    /// `connected` flag. At stop: "offline", DISCONNECT.
    pub(super) async fn connection(
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
        if self.timelapse_command(topic, &p.payload) {
            return;
        }
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
