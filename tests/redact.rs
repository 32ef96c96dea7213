//! Secrets never survive redaction, whatever they contain: random passwords and access codes
//! with `#`, `/`, `?`, `@`, `:` and `%` in every source syntax, through the redacted source, its
//! debug form, parse errors and scrubbed tool output.

use farmcam::redact;
use farmcam::source::SourceSpec;
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
