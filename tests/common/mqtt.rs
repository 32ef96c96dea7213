//! MQTT: a real mosquitto, and a subscriber to watch what farmcam publishes.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::proc::free_port;

/// A mosquitto broker on 127.0.0.1 with a temp config; no persistence (a restart forgets
/// retained messages, so re-announcements can be checked).
pub struct Mosquitto {
    child: Option<Child>,
    pub port: u16,
    /// Extra listeners, e.g. a TLS one.
    pub extra_port: u16,
    pub dir: tempfile::TempDir,
    extra: String,
}

impl Mosquitto {
    /// `extra` goes into mosquitto.conf; `{dir}` is replaced by the broker's temp dir and
    /// `{extra_port}` by a second free port.
    pub fn start(extra: &str) -> Mosquitto {
        super::peers::require("mosquitto", "mosquitto");
        let dir = tempfile::tempdir().unwrap();
        let mut m = Mosquitto {
            child: None,
            port: free_port(),
            extra_port: free_port(),
            extra: String::new(),
            dir,
        };
        m.extra = extra
            .replace("{dir}", &m.dir.path().display().to_string())
            .replace("{extra_port}", &m.extra_port.to_string());
        m.spawn();
        m
    }

    fn spawn(&mut self) {
        let conf = self.dir.path().join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "user root\npersistence false\nlog_dest stderr\nlog_type error\nlistener {} 127.0.0.1\nallow_anonymous true\n{}\n",
                self.port, self.extra
            ),
        )
        .unwrap();
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("mosquitto runs (packaging/dev.sh deps installs it)");
        self.child = Some(child);
        super::eventually_blocking(Duration::from_secs(10), "mosquitto listening", || {
            std::net::TcpStream::connect(("127.0.0.1", self.port)).ok()
        });
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A password file for mosquitto with one user.
pub fn mosquitto_password_file(path: &Path, user: &str, password: &str) {
    let ok = Command::new("mosquitto_passwd")
        .args(["-b", "-c"])
        .arg(path)
        .args([user, password])
        .status()
        .unwrap();
    assert!(ok.success());
}

#[derive(Clone, Debug)]
pub struct Msg {
    pub topic: String,
    pub payload: Vec<u8>,
    pub retain: bool,
    pub at: Instant,
}

impl Msg {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.payload).unwrap_or_else(|e| panic!("{}: not JSON ({e})", self.topic))
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.payload).into_owned()
    }
}

/// An MQTT subscriber (rumqttc) that records everything it receives.
pub struct Sub {
    pub client: rumqttc::AsyncClient,
    rx: tokio::sync::mpsc::UnboundedReceiver<Msg>,
    /// Everything received so far, in order.
    pub seen: Vec<Msg>,
    stop: CancellationToken,
}

impl Sub {
    pub async fn connect(port: u16, topics: &[&str], login: Option<(&str, &str)>) -> Sub {
        let mut o = rumqttc::MqttOptions::new(format!("test-{}", fastrand::u32(..)), "127.0.0.1", port);
        o.set_max_packet_size(16 << 20, 16 << 20);
        if let Some((u, p)) = login {
            o.set_credentials(u, p);
        }
        let (client, mut el) = rumqttc::AsyncClient::new(o, 64);
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let (subscribed_tx, mut subscribed) = tokio::sync::mpsc::unbounded_channel();
        let stop = CancellationToken::new();
        let st = stop.clone();
        tokio::spawn(async move {
            loop {
                let e = tokio::select! {
                    _ = st.cancelled() => return,
                    e = el.poll() => e,
                };
                match e {
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p))) => {
                        let _ = tx.send(Msg {
                            topic: p.topic.clone(),
                            payload: p.payload.to_vec(),
                            retain: p.retain,
                            at: Instant::now(),
                        });
                    }
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::SubAck(_))) => {
                        let _ = subscribed_tx.send(());
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        for t in topics {
            client.subscribe(*t, rumqttc::QoS::AtLeastOnce).await.unwrap();
        }
        for _ in topics {
            tokio::time::timeout(Duration::from_secs(10), subscribed.recv())
                .await
                .expect("subscribed");
        }
        Sub {
            client,
            rx,
            seen: Vec::new(),
            stop,
        }
    }

    /// Wait for a message satisfying `pred` (received before or after this call, but not yet
    /// returned by `wait_for`), at most `limit`.
    pub async fn wait_for(&mut self, limit: Duration, what: &str, pred: impl Fn(&Msg) -> bool) -> Msg {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(m)) => {
                    self.seen.push(m.clone());
                    if pred(&m) {
                        return m;
                    }
                }
                _ => panic!(
                    "no {what} within {limit:?}; seen: {:?}",
                    self.seen
                        .iter()
                        .map(|m| (&m.topic, m.payload.len()))
                        .collect::<Vec<_>>()
                ),
            }
        }
    }

    /// Everything that arrives during `window`.
    pub async fn collect(&mut self, window: Duration) -> Vec<Msg> {
        let deadline = tokio::time::Instant::now() + window;
        let mut out = Vec::new();
        while let Ok(Some(m)) = tokio::time::timeout_at(deadline, self.rx.recv()).await {
            self.seen.push(m.clone());
            out.push(m);
        }
        out
    }

    pub async fn publish(&self, topic: &str, payload: &[u8], retain: bool) {
        self.client
            .publish(topic, rumqttc::QoS::AtLeastOnce, retain, payload.to_vec())
            .await
            .unwrap();
    }
}

impl Drop for Sub {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
