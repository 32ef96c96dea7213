//! The `[mqtt]` section: broker, identity, TLS, topics and the snapshot schedule.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::diag::Validator;
use super::values::{parse_duration, IntOrString, Secret};

pub const DEFAULT_SNAPSHOT_INTERVAL: Duration = Duration::from_secs(30);
pub const DEFAULT_MQTT_MAX_PACKET: usize = 4 * 1024 * 1024;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MqttConfig {
    pub host: String,
    pub port: u16,
    /// `mqtts://`: TLS (with `ca_file`, or the system's CA store).
    pub tls: bool,
    /// The URL as it may be shown.
    pub url: String,
    pub client_id: String,
    pub node_id: String,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub ca_file: Option<PathBuf>,
    /// Client certificate and key (PEM) for brokers that want mutual TLS.
    pub client_auth: Option<(PathBuf, PathBuf)>,
    pub topic_prefix: String,
    pub qos: u8,
    pub retain: bool,
    pub ha_discovery: bool,
    pub ha_prefix: String,
    /// Largest MQTT packet sent or accepted; bigger snapshots are skipped with a warning.
    pub max_packet_size: usize,
    /// How often each camera publishes a snapshot unless it says otherwise (`None`: "off").
    pub snapshot_interval: Option<Duration>,
    /// Width of published snapshots (cameras may set their own); None: the camera's size.
    pub snapshot_width: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMqtt {
    url: Spanned<String>,
    client_id: Option<Spanned<String>>,
    node_id: Option<Spanned<String>>,
    username: Option<String>,
    password: Option<String>,
    password_file: Option<Spanned<String>>,
    ca_file: Option<Spanned<String>>,
    client_cert: Option<Spanned<String>>,
    client_key: Option<Spanned<String>>,
    topic_prefix: Option<Spanned<String>>,
    qos: Option<Spanned<i64>>,
    retain: Option<bool>,
    snapshot_interval: Option<Spanned<String>>,
    snapshot_width: Option<Spanned<i64>>,
    ha_discovery: Option<bool>,
    ha_prefix: Option<Spanned<String>>,
    max_packet_size: Option<Spanned<IntOrString>>,
}

impl Validator<'_> {
    pub(super) fn mqtt(&mut self, raw: &RawMqtt) -> Option<MqttConfig> {
        let before = self.problems.len();
        let (tls, host, port) = match parse_url(raw.url.get_ref()) {
            Ok(v) => v,
            Err(msg) => {
                self.problem(Some(raw.url.span()), "mqtt.url", &msg);
                (false, String::new(), 0)
            }
        };
        let node_id = match &raw.node_id {
            Some(n) if valid_topic_word(n.get_ref()) => n.get_ref().clone(),
            Some(n) => {
                self.problem(
                    Some(n.span()),
                    "mqtt.node_id",
                    &format!(
                        "{:?} is not usable in topics: use letters, digits, '-' and '_'",
                        n.get_ref()
                    ),
                );
                String::new()
            }
            None => sanitise(&hostname()),
        };
        let client_id = match &raw.client_id {
            Some(c) if !c.get_ref().trim().is_empty() && c.get_ref().len() <= 128 => c.get_ref().clone(),
            Some(c) => {
                self.problem(Some(c.span()), "mqtt.client_id", "must be 1 to 128 characters");
                String::new()
            }
            None => format!("farmcam-{node_id}"),
        };
        let password = match (&raw.password, &raw.password_file) {
            (Some(_), Some(f)) => {
                self.problem(
                    Some(f.span()),
                    "mqtt.password_file",
                    "give either password or password_file, not both",
                );
                None
            }
            (Some(p), None) => Some(Secret(p.clone())),
            (None, Some(f)) => match std::fs::read_to_string(f.get_ref()) {
                Ok(p) => Some(Secret(p.trim_end_matches(['\n', '\r']).to_string())),
                Err(e) => {
                    self.problem(
                        Some(f.span()),
                        "mqtt.password_file",
                        &format!("cannot read {:?}: {e}", f.get_ref()),
                    );
                    None
                }
            },
            (None, None) => None,
        };
        if password.is_some() && raw.username.is_none() {
            let span = raw.password_file.as_ref().map(|f| f.span());
            self.problem(span, "mqtt.username", "a password needs a username");
        }
        let mut file = |v: &Option<Spanned<String>>, key: &str| -> Option<PathBuf> {
            let v = v.as_ref()?;
            let path = PathBuf::from(v.get_ref());
            if let Err(e) = std::fs::metadata(&path) {
                self.problem(
                    Some(v.span()),
                    key,
                    &format!("cannot read {:?}: {e}", v.get_ref()),
                );
            }
            Some(path)
        };
        let ca_file = file(&raw.ca_file, "mqtt.ca_file");
        let cert = file(&raw.client_cert, "mqtt.client_cert");
        let key = file(&raw.client_key, "mqtt.client_key");
        let client_auth = match (cert, key) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            _ => {
                self.problem(
                    raw.client_cert
                        .as_ref()
                        .or(raw.client_key.as_ref())
                        .map(|s| s.span()),
                    "mqtt.client_cert",
                    "client_cert and client_key go together",
                );
                None
            }
        };
        if !tls && (ca_file.is_some() || client_auth.is_some()) {
            self.problem(
                Some(raw.url.span()),
                "mqtt.url",
                "TLS files are set but the URL is mqtt://; use mqtts://HOST:8883",
            );
        }
        let topic_prefix = match &raw.topic_prefix {
            Some(t) => {
                let p = t.get_ref().trim_end_matches('/');
                if p.is_empty() || p.contains(['+', '#']) || p.starts_with('/') {
                    self.problem(
                        Some(t.span()),
                        "mqtt.topic_prefix",
                        "must be a topic without wildcards (+, #) or a leading '/', e.g. \"farmcam/shop1\"",
                    );
                }
                p.to_string()
            }
            None => format!("farmcam/{node_id}"),
        };
        let ha_prefix = match &raw.ha_prefix {
            Some(t) if !t.get_ref().is_empty() && !t.get_ref().contains(['+', '#']) => {
                t.get_ref().trim_end_matches('/').to_string()
            }
            Some(t) => {
                self.problem(
                    Some(t.span()),
                    "mqtt.ha_prefix",
                    "must be a topic without wildcards",
                );
                String::new()
            }
            None => "homeassistant".to_string(),
        };
        let qos = self
            .int(&raw.qos, "mqtt.qos", 0..=2, "must be 0, 1 or 2")
            .unwrap_or(1);
        let max_packet_size = self.bytes(
            &raw.max_packet_size,
            "mqtt.max_packet_size",
            8 * 1024..=256 * 1024 * 1024,
            "between 8KiB and 256MiB (default 4MiB)",
            DEFAULT_MQTT_MAX_PACKET,
        );
        let snapshot_interval = match &raw.snapshot_interval {
            None => Some(DEFAULT_SNAPSHOT_INTERVAL),
            Some(i) => parse_interval(i.get_ref()).unwrap_or_else(|msg| {
                self.problem(Some(i.span()), "mqtt.snapshot_interval", &msg);
                None
            }),
        };
        let snapshot_width = self.snapshot_width(&raw.snapshot_width, "mqtt.snapshot_width");
        if self.problems.len() > before {
            return None;
        }
        Some(MqttConfig {
            url: format!("{}://{host}:{port}", if tls { "mqtts" } else { "mqtt" }),
            host,
            port,
            tls,
            client_id,
            node_id,
            username: raw.username.clone(),
            password,
            ca_file,
            client_auth,
            topic_prefix,
            qos,
            retain: raw.retain.unwrap_or(true),
            ha_discovery: raw.ha_discovery.unwrap_or(true),
            ha_prefix,
            max_packet_size,
            snapshot_interval,
            snapshot_width,
        })
    }

    /// `snapshot_width` (in `[mqtt]` or a camera): MQTT snapshots scaled to that width.
    pub(super) fn snapshot_width(&mut self, raw: &Option<Spanned<i64>>, key: &str) -> Option<u32> {
        use crate::media::sizes::{MAX_SIDE, MIN_SIDE};
        self.int(
            raw,
            key,
            MIN_SIDE as i64..=MAX_SIDE as i64,
            &format!("must be a width in pixels from {MIN_SIDE} to {MAX_SIDE}, e.g. 640 (the height follows the picture)"),
        )
    }

    /// A camera's MQTT snapshot interval: its own, else `[mqtt] snapshot_interval`; None when
    /// MQTT is off or the interval is "off".
    pub(super) fn snapshot_interval(
        &mut self,
        own: &Option<Spanned<String>>,
        key: &str,
        mqtt: Option<&MqttConfig>,
    ) -> Option<Duration> {
        let inherited = mqtt.and_then(|m| m.snapshot_interval);
        let Some(o) = own else { return inherited };
        match parse_interval(o.get_ref()) {
            Ok(v) => v.filter(|_| mqtt.is_some()),
            Err(msg) => {
                self.problem(Some(o.span()), key, &msg);
                inherited
            }
        }
    }
}

/// `"30s"`, `"5m"` or `"off"`. At least one second.
fn parse_interval(s: &str) -> Result<Option<Duration>, String> {
    if s.trim().eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    let d = parse_duration(s).map_err(|m| format!("{m}, or \"off\""))?;
    if d < Duration::from_secs(1) {
        return Err(format!("{s:?} is too often; use at least \"1s\", or \"off\""));
    }
    Ok(Some(d))
}

/// `mqtt://host[:1883]` or `mqtts://host[:8883]` → (tls, host, port).
fn parse_url(url: &str) -> Result<(bool, String, u16), String> {
    let shown = crate::util::redact::url(url);
    let (tls, rest) = if let Some(r) = url.strip_prefix("mqtt://") {
        (false, r)
    } else if let Some(r) = url.strip_prefix("mqtts://") {
        (true, r)
    } else {
        return Err(format!(
            "{shown:?} is not an MQTT URL; write \"mqtt://HOST:1883\" or \"mqtts://HOST:8883\""
        ));
    };
    let authority = rest.trim_end_matches('/');
    if authority.contains('@') {
        return Err(format!(
            "{shown:?}: put the user name and password in username and password (or password_file), not in the URL"
        ));
    }
    if authority.contains('/') {
        return Err(format!(
            "{shown:?}: an MQTT URL has no path; write \"mqtt://HOST:1883\""
        ));
    }
    let default_port = if tls { 8883 } else { 1883 };
    let (host, port) = match crate::util::hostport::split(authority) {
        Some((h, None)) => (h, default_port),
        Some((h, Some(p))) if p > 0 => (h, p),
        _ => {
            let port = authority.rsplit(':').next().unwrap_or("");
            return Err(format!("{shown:?}: {port:?} is not a port"));
        }
    };
    if host.is_empty() {
        return Err(format!(
            "{shown:?} has no host; write e.g. \"mqtt://192.168.1.10:1883\""
        ));
    }
    Ok((tls, host.to_string(), port))
}

fn valid_topic_word(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// This gateway's name where `[mqtt] node_id` does not give one: the host name, made a word.
pub(super) fn default_node_id() -> String {
    sanitise(&hostname())
}

/// Lowercase, and anything but letters, digits, '-' and '_' replaced by '_'.
fn sanitise(s: &str) -> String {
    let out: String = s
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    if out.is_empty() {
        "farmcam".into()
    } else {
        out
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn urls() {
        assert_eq!(
            parse_url("mqtt://broker").unwrap(),
            (false, "broker".into(), 1883)
        );
        assert_eq!(
            parse_url("mqtts://10.0.0.2").unwrap(),
            (true, "10.0.0.2".into(), 8883)
        );
        assert_eq!(parse_url("mqtt://h:1884/").unwrap(), (false, "h".into(), 1884));
        assert_eq!(
            parse_url("mqtt://[::1]:1884").unwrap(),
            (false, "::1".into(), 1884)
        );
        let e = parse_url("mqtt://u:hunter2@h").unwrap_err();
        assert!(e.contains("username") && !e.contains("hunter2"), "{e}");
        assert!(parse_url("tcp://h").unwrap_err().contains("mqtt://HOST:1883"));
        assert!(parse_url("mqtt://h:x").is_err() && parse_url("mqtt://").is_err());
    }

    #[test]
    fn defaults_and_overrides() {
        let c = super::super::parse(
            "[mqtt]\nurl = \"mqtt://10.0.0.2\"\nnode_id = \"shop1\"\nsnapshot_interval = \"10s\"\n\
             [[camera]]\nid = \"a\"\nsource = \"test:\"\n\
             [[camera]]\nid = \"b\"\nsource = \"test:\"\nsnapshot_interval = \"off\"\n\
             [[camera]]\nid = \"c\"\nsource = \"test:\"\nsnapshot_interval = \"2m\"\n",
            Path::new("f.toml"),
        )
        .unwrap();
        let m = c.mqtt.unwrap();
        assert_eq!(
            (m.client_id.as_str(), m.topic_prefix.as_str()),
            ("farmcam-shop1", "farmcam/shop1")
        );
        assert_eq!(
            (m.qos, m.retain, m.ha_discovery, m.ha_prefix.as_str()),
            (1, true, true, "homeassistant")
        );
        let intervals: Vec<_> = c.cameras.iter().map(|c| c.snapshot_interval).collect();
        assert_eq!(
            intervals,
            vec![
                Some(Duration::from_secs(10)),
                None,
                Some(Duration::from_secs(120))
            ]
        );
        // Without [mqtt], nothing is published.
        let c = super::super::parse(
            "[[camera]]\nid = \"a\"\nsource = \"test:\"\n",
            Path::new("f.toml"),
        )
        .unwrap();
        assert!(c.mqtt.is_none() && c.cameras[0].snapshot_interval.is_none());
    }

    #[test]
    fn problems_are_named() {
        let e = super::super::parse(
            "[mqtt]\nurl = \"mqtt://h\"\npassword = \"pw\"\nqos = 3\nnode_id = \"a b\"\ntopic_prefix = \"x/#\"\n\
             snapshot_interval = \"10ms\"\nca_file = \"/nonexistent/ca.pem\"\n",
            Path::new("f.toml"),
        )
        .unwrap_err()
        .lines();
        for key in [
            "mqtt.username",
            "mqtt.qos",
            "mqtt.node_id",
            "mqtt.topic_prefix",
            "mqtt.snapshot_interval",
            "mqtt.ca_file",
        ] {
            assert!(
                e.iter().any(|l| l.contains(&format!(": {key}: "))),
                "missing {key}: {e:#?}"
            );
        }
        assert!(!e.iter().any(|l| l.contains("pw\"")), "{e:#?}");
    }

    #[test]
    fn hostnames_become_topic_words() {
        assert_eq!(sanitise("Farm-Pi.local"), "farm-pi_local");
        assert_eq!(sanitise(""), "farmcam");
    }
}
