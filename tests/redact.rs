//! Secrets never survive redaction, whatever they contain: random passwords and access codes
//! with `#`, `/`, `?`, `@`, `:` and `%` in every source syntax, through the redacted source, its
//! debug form, parse errors and scrubbed tool output.

mod common;

use std::time::Duration;

use common::mqtt::{Mosquitto, Sub};
use common::proc::free_port;
use common::Daemon;
use common::{config, eventually_async, get, request, BIN};
use farmcam::source::SourceSpec;
use farmcam::util::redact;
use proptest::prelude::*;

const TEMPLATES: [&str; 7] = [
    "rtsp://admin:{}@10.0.0.2:554/cam",
    "rtsps://u:{}@h.local/x",
    "http://u:{}@h:8080/?action=stream",
    "https://u:{}@h/snap",
    "bambu://bblp:{}@10.0.0.9",
    "bambu-rtsps://bblp:{}@10.0.0.9",
    "ffmpeg:-rtsp_transport tcp -i rtsp://u:{}@h/x",
];

fn secret() -> impl Strategy<Value = String> {
    // Starts with letters so it never matches a host or path by accident.
    "[A-Za-z0-9#/?@:%!$&*+=~-]{4,20}".prop_map(|s| format!("Zq9{s}"))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, .. ProptestConfig::default() })]

    #[test]
    fn no_secret_survives_redaction(secret in secret(), t in 0usize..TEMPLATES.len()) {
        let source = TEMPLATES[t].replace("{}", &secret);
        let shown = redact::url(&source);
        prop_assert!(!shown.contains(&secret), "{shown}");
        match SourceSpec::parse(&source) {
            Ok(spec) => {
                prop_assert!(!spec.redacted().contains(&secret), "{}", spec.redacted());
                let debug = format!("{spec:?}");
                prop_assert!(!debug.contains(&secret), "{}", debug);
            }
            Err(msg) => prop_assert!(!msg.contains(&secret), "{msg}"),
        }
        // What a tool prints about the URL in another shape is scrubbed too.
        let url = &source[source.find(|c: char| c.is_ascii_lowercase()).unwrap()..];
        let url = url.rsplit(' ').next().unwrap();
        let printed = format!("[rtsp @ 0x55] method DESCRIBE failed: 401 for {secret} at {url}");
        let scrubbed = redact::scrub(&printed, &redact::secrets_of(url));
        prop_assert!(!scrubbed.contains(&secret), "{scrubbed}");
    }
}

/// Every surface a secret could reach, end to end, for random secrets in every source kind:
/// the log at every level, `farmcam check`, `/api/cameras`, events, metrics, error bodies and
/// everything published over MQTT, while each camera fails (so its errors are all produced), and
/// a Prusa Connect token whose uploads fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_output_surface_shows_a_secret() {
    const CHARS: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnpqrstuvwxyz23456789#/?@:%!$&*+=~-";
    let mut rng = fastrand::Rng::with_seed(20);
    let closed = free_port();
    let broker = Mosquitto::start("");
    let mut sub = Sub::connect(broker.port, &["farmcam/#", "homeassistant/#"], None).await;
    let mut cams = String::new();
    let mut secrets = Vec::new();
    for round in 0..3 {
        for (i, t) in TEMPLATES.iter().enumerate() {
            let secret: String = std::iter::once('Z')
                .chain((0..14).map(|_| CHARS[rng.usize(..CHARS.len())] as char))
                .collect();
            let source = t
                .replace("{}", &secret)
                .replace("10.0.0.2:554", &format!("127.0.0.1:{closed}"))
                .replace("h.local", &format!("127.0.0.1:{closed}"))
                .replace("h:8080", &format!("127.0.0.1:{closed}"))
                .replace("@h/", &format!("@127.0.0.1:{closed}/"))
                .replace("10.0.0.9", &format!("127.0.0.1:{closed}"));
            // Only sources farmcam accepts: the others' errors are checked by the property test.
            if SourceSpec::parse(&source).is_err() {
                continue;
            }
            cams.push_str(&format!(
                "[[camera]]\nid = \"c{round}-{i}\"\nsource = {}\nsnapshot_timeout = \"1s\"\n",
                toml_string(&source)
            ));
            secrets.push(secret);
        }
    }
    assert!(secrets.len() >= 15, "most random secrets make valid sources");
    // A Prusa Connect token, on a camera that works, uploading to a server that is not there.
    let token: String = (0..20)
        .map(|_| b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnpqrstuvwxyz23456789"[rng.usize(..56)] as char)
        .collect();
    cams.push_str(&format!(
        "[[camera]]\nid = \"prusa\"\nsource = \"test:\"\n[camera.prusa_connect]\ntoken = \"{token}\"\ninterval = \"1s\"\n\
         [prusa_connect]\nurl = \"https://127.0.0.1:{closed}\"\n"
    ));
    secrets.push(token);
    let cfg = config(
        "",
        &format!(
            "[mqtt]\nurl = \"{}\"\nnode_id = \"redact\"\nsnapshot_interval = \"1s\"\n{cams}",
            broker.url()
        ),
    );
    let d = Daemon::start_with_log(&cfg, "trace");
    // Every camera tried and failed at least once (snapshots start them).
    let ids: Vec<String> = (0..3)
        .flat_map(|r| (0..TEMPLATES.len()).map(move |i| format!("c{r}-{i}")))
        .collect();
    eventually_async(
        Duration::from_secs(60),
        "an upload to Prusa Connect failed",
        || async {
            let c = d.camera("prusa").await;
            (c["prusa_connect"]["last_result"] == "failed").then_some(())
        },
    )
    .await;
    for id in &ids {
        let r = get(d.main, &format!("/cameras/{id}/snapshot")).await;
        assert!(r.status == 503 || r.status == 404, "{id}: {}", r.status);
    }
    eventually_async(Duration::from_secs(60), "every camera failed once", || async {
        let list = d.cameras_json().await;
        let failing = list
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| !c["last_error"].is_null())
            .count();
        (failing == ids.len()).then_some(())
    })
    .await;
    let mut shown = vec![d.log_text()];
    for path in [
        "/api/cameras",
        "/metrics",
        "/api/events?last_event_id=0",
        "/cameras/nope/snapshot",
    ] {
        let r = if path.starts_with("/api/events") {
            // The event stream stays open: read what it has now.
            let mut s =
                common::Stream::open(d.main, &format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n")).await;
            let _ = tokio::time::timeout(Duration::from_secs(1), s.fill()).await;
            String::from_utf8_lossy(&s.body).to_string()
        } else {
            String::from_utf8_lossy(
                &request(
                    d.main,
                    &format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
                )
                .await
                .body,
            )
            .to_string()
        };
        shown.push(r);
    }
    let mqtt = sub.collect(Duration::from_secs(2)).await;
    shown.extend(
        mqtt.iter()
            .map(|m| format!("{} {}", m.topic, String::from_utf8_lossy(&m.payload))),
    );
    let check = std::process::Command::new(BIN)
        .args(["check", "--config"])
        .arg(d.config_path())
        .output()
        .unwrap();
    shown.push(String::from_utf8_lossy(&check.stdout).to_string());
    shown.push(String::from_utf8_lossy(&check.stderr).to_string());
    // The secrets are real (in the file farmcam read) and the surfaces did talk about the
    // sources, redacted.
    let file = std::fs::read_to_string(d.config_path()).unwrap();
    assert!(secrets.iter().all(|s| file.contains(s.as_str())));
    assert!(
        shown[0].contains("***@") && shown[1].contains("***@"),
        "redacted URLs in the log and the API"
    );
    assert!(mqtt.len() > 10, "MQTT published: {}", mqtt.len());
    for text in &shown {
        for secret in &secrets {
            let decoded = percent_decode(secret);
            if let Some(at) = text.find(secret.as_str()).or_else(|| text.find(&decoded)) {
                let around = text.get(at.saturating_sub(200)..(at + 100).min(text.len()));
                panic!("{secret:?} is shown: ...{around:?}...");
            }
        }
    }
}

/// A TOML basic string.
fn toml_string(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Some(v) = s.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).to_string()
}
