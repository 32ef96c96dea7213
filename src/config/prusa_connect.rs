//! `[prusa_connect]` (where snapshots go) and each camera's `[camera.prusa_connect]` (its token,
//! fingerprint, interval and width): the cameras whose snapshots are uploaded to Prusa Connect.
//!
//! The uploads live beside the cameras, not in them: a new token or interval restarts that
//! camera's uploads at a reload, never the camera (its viewers see nothing).

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::diag::Validator;
use super::values::{parse_duration, Secret};

/// Prusa's camera API (the snapshot upload and the camera-info call are under `/c/`).
pub const DEFAULT_PRUSA_CONNECT_URL: &str = "https://webcam.connect.prusa3d.com";
/// One snapshot per camera every 10 s is the most Prusa Connect takes.
pub const PRUSA_MIN_INTERVAL: Duration = Duration::from_secs(10);

/// Where snapshots are uploaded, and the cameras that upload them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrusaConnectConfig {
    pub endpoint: Endpoint,
    pub cameras: Vec<PrusaCamera>,
}

/// `[prusa_connect] url` taken apart, and the certificates it is checked against.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// As shown in logs and status: `https://HOST[:PORT][/PREFIX]`.
    pub url: String,
    pub https: bool,
    pub host: String,
    pub port: u16,
    /// Prepended to `/c/snapshot` and `/c/info` (a reverse proxy's path); empty for Prusa's.
    pub prefix: String,
    /// PEM CA certificates to check the server with (None: the system's store).
    pub ca_file: Option<PathBuf>,
}

impl Default for Endpoint {
    fn default() -> Self {
        parse_url(DEFAULT_PRUSA_CONNECT_URL).expect("the default URL parses")
    }
}

impl Endpoint {
    /// Whether this is Prusa's own service (whose limits apply).
    pub fn is_prusa(&self) -> bool {
        self.url == DEFAULT_PRUSA_CONNECT_URL
    }
}

/// One camera's uploads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrusaCamera {
    pub camera: String,
    /// The token Prusa Connect made for this camera ("Add new other camera").
    pub token: Secret,
    /// Sent with every snapshot; Prusa Connect ties it to the token at the first upload. None:
    /// derived from the gateway's name and the camera id (see the uploader).
    pub fingerprint: Option<String>,
    pub interval: Duration,
    /// Snapshots scaled to this width (None: the camera's own size).
    pub width: Option<u32>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPrusaConnect {
    url: Option<Spanned<String>>,
    ca_file: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCameraPrusa {
    token: Option<Spanned<String>>,
    fingerprint: Option<Spanned<String>>,
    interval: Option<Spanned<String>>,
    width: Option<Spanned<i64>>,
}

impl Validator<'_> {
    /// `cameras`: each camera's id and its `[camera.prusa_connect]`, in file order.
    pub(super) fn prusa_connect(
        &mut self,
        raw: &RawPrusaConnect,
        cameras: &[(usize, &str, &Spanned<RawCameraPrusa>)],
    ) -> PrusaConnectConfig {
        let mut endpoint = match &raw.url {
            None => Endpoint::default(),
            Some(u) => parse_url(u.get_ref()).unwrap_or_else(|msg| {
                self.problem(Some(u.span()), "prusa_connect.url", &msg);
                Endpoint::default()
            }),
        };
        if let Some(f) = &raw.ca_file {
            if let Err(e) = std::fs::metadata(f.get_ref()) {
                self.problem(
                    Some(f.span()),
                    "prusa_connect.ca_file",
                    &format!("cannot read {:?}: {e}", f.get_ref()),
                );
            } else if !endpoint.https {
                self.problem(
                    Some(f.span()),
                    "prusa_connect.ca_file",
                    "is for an https:// url; remove it or write the url with https://",
                );
            }
            endpoint.ca_file = Some(PathBuf::from(f.get_ref()));
        }
        let mut out = Vec::new();
        for &(i, id, c) in cameras {
            let at = |k: &str| format!("camera[{i}].prusa_connect.{k}");
            let span = c.span();
            let c = c.get_ref();
            // Every value is checked, so that one `farmcam check` names all of a block's problems.
            let token = match &c.token {
                Some(t) if valid_header_word(t.get_ref().trim()) => Some(t.get_ref().trim().to_string()),
                Some(t) => {
                    self.problem(
                        Some(t.span()),
                        &at("token"),
                        "is not a Prusa Connect token: copy it again from Prusa Connect (the printer's Camera tab → Add new other camera)",
                    );
                    None
                }
                None => {
                    self.problem(
                        Some(span),
                        &at("token"),
                        "is missing: in Prusa Connect, open the printer's Camera tab, choose \"Add new other camera\" and copy its token here",
                    );
                    None
                }
            };
            let fingerprint = c.fingerprint.as_ref().and_then(|f| {
                let v = f.get_ref().trim();
                if (16..=64).contains(&v.len()) && valid_header_word(v) {
                    Some(v.to_string())
                } else {
                    self.problem(
                        Some(f.span()),
                        &at("fingerprint"),
                        "must be 16 to 64 letters, digits or -_.+/=: (e.g. from uuidgen), and the same one for as long as the token is used; or remove it to let farmcam derive one",
                    );
                    None
                }
            });
            let interval = match &c.interval {
                None => PRUSA_MIN_INTERVAL,
                Some(s) => match parse_duration(s.get_ref()) {
                    Ok(d) if endpoint.is_prusa() && d < PRUSA_MIN_INTERVAL => {
                        self.problem(
                            Some(s.span()),
                            &at("interval"),
                            "Prusa Connect takes one snapshot per camera every 10 s at most; write \"10s\" or more",
                        );
                        PRUSA_MIN_INTERVAL
                    }
                    Ok(d) if d < Duration::from_secs(1) => {
                        self.problem(Some(s.span()), &at("interval"), "must be at least \"1s\"");
                        PRUSA_MIN_INTERVAL
                    }
                    Ok(d) => d,
                    Err(msg) => {
                        self.problem(Some(s.span()), &at("interval"), &msg);
                        PRUSA_MIN_INTERVAL
                    }
                },
            };
            let width = self.snapshot_width(&c.width, &at("width"));
            let Some(token) = token else { continue };
            out.push(PrusaCamera {
                camera: id.to_string(),
                token: Secret(token),
                fingerprint,
                interval,
                width,
            });
        }
        PrusaConnectConfig {
            endpoint,
            cameras: out,
        }
    }
}

/// What a header value like a token or fingerprint is made of (base64 and UUID characters).
fn valid_header_word(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 256
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.+/=:".contains(c))
}

/// `https://HOST[:PORT][/PREFIX]` or `http://…`. A URL copied from an upload script (ending in
/// `/c/snapshot`) is taken as its base.
fn parse_url(url: &str) -> Result<Endpoint, String> {
    let shown = crate::util::redact::url(url.trim());
    let bad = || {
        format!("{shown:?}: write Prusa Connect's address, e.g. \"{DEFAULT_PRUSA_CONNECT_URL}\" (or a proxy's, \"https://proxy.lan/prusa\")")
    };
    let url = url.trim();
    let url = url
        .strip_suffix("/c/snapshot")
        .unwrap_or(url)
        .trim_end_matches('/');
    let (https, rest) = if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else {
        return Err(bad());
    };
    let (authority, prefix) = match rest.find('/') {
        Some(at) => rest.split_at(at),
        None => (rest, ""),
    };
    if authority.contains('@') {
        return Err(format!(
            "{shown:?}: Prusa Connect takes no user name or password in the URL; each camera's token goes in [camera.prusa_connect] token"
        ));
    }
    if prefix.contains(['?', '#', ' ']) {
        return Err(bad());
    }
    let (host, port) = crate::util::hostport::split(authority).ok_or_else(bad)?;
    if host.is_empty() || host.contains(['/', '?', '#']) {
        return Err(bad());
    }
    let port = port.unwrap_or(if https { 443 } else { 80 });
    Ok(Endpoint {
        url: url.to_string(),
        https,
        host: host.to_string(),
        port,
        prefix: prefix.to_string(),
        ca_file: None,
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn errors(text: &str) -> Vec<String> {
        match super::super::parse(text, Path::new("f.toml")) {
            Ok(_) => vec![],
            Err(e) => e.lines(),
        }
    }

    const CAM: &str = "[[camera]]\nid = \"mk4\"\nsource = \"test:\"\n";

    #[test]
    fn a_camera_with_a_token_uploads_every_10s_to_prusa() {
        let c = super::super::parse(
            &format!(
                "{CAM}[camera.prusa_connect]\ntoken = \"AbCdEf0123456789xyz\"\n\
                      [[camera]]\nid = \"xl\"\nsource = \"test:\"\n"
            ),
            Path::new("f.toml"),
        )
        .unwrap();
        let p = &c.prusa_connect;
        assert_eq!(p.endpoint.url, "https://webcam.connect.prusa3d.com");
        assert_eq!(
            (
                p.endpoint.host.as_str(),
                p.endpoint.port,
                p.endpoint.prefix.as_str()
            ),
            ("webcam.connect.prusa3d.com", 443, "")
        );
        assert_eq!(p.cameras.len(), 1, "only the camera with a block uploads");
        let u = &p.cameras[0];
        assert_eq!(
            (u.camera.as_str(), u.interval, u.width, u.fingerprint.as_deref()),
            ("mk4", Duration::from_secs(10), None, None)
        );
        assert_eq!(u.token.0, "AbCdEf0123456789xyz");
        assert!(
            !format!("{p:?}").contains("AbCdEf"),
            "the token is not in debug output"
        );
    }

    #[test]
    fn a_proxy_url_a_script_url_and_every_bad_value_are_named() {
        let c = super::super::parse(
            &format!("[prusa_connect]\nurl = \"http://proxy.lan:8080/prusa/\"\n{CAM}[camera.prusa_connect]\n\
                      token = \"t0k3n\"\nfingerprint = \"0123456789abcdef\"\ninterval = \"2s\"\nwidth = 640\n"),
            Path::new("f.toml"),
        )
        .unwrap();
        let e = &c.prusa_connect.endpoint;
        assert_eq!(
            (e.https, e.host.as_str(), e.port, e.prefix.as_str()),
            (false, "proxy.lan", 8080, "/prusa")
        );
        let u = &c.prusa_connect.cameras[0];
        assert_eq!(
            (u.interval, u.width),
            (Duration::from_secs(2), Some(640)),
            "a proxy may take more"
        );
        assert_eq!(
            parse_url("https://webcam.connect.prusa3d.com/c/snapshot").unwrap(),
            Endpoint::default()
        );

        // Every problem of a block is named at once, also when the token is missing.
        let e = errors(&format!("{CAM}[camera.prusa_connect]\ninterval = \"5s\"\n"));
        assert!(
            e.len() == 2
                && e[0].contains("camera[0].prusa_connect.token: is missing")
                && e[0].contains("Add new other camera")
                && e[1].contains("camera[0].prusa_connect.interval"),
            "{e:?}"
        );
        let e = errors(&format!(
            "{CAM}[camera.prusa_connect]\ntoken = \"ok\"\nfingerprint = \"short\"\ninterval = \"5s\"\nwidth = 3\n"
        ));
        for (key, words) in [
            ("camera[0].prusa_connect.fingerprint", "16 to 64"),
            ("camera[0].prusa_connect.interval", "every 10 s at most"),
            ("camera[0].prusa_connect.width", "width in pixels"),
        ] {
            assert!(
                e.iter().any(|l| l.contains(key) && l.contains(words)),
                "missing {key}: {e:#?}"
            );
        }
        assert_eq!(e.len(), 3, "{e:#?}");
        let e = errors(&format!(
            "{CAM}[camera.prusa_connect]\ntoken = \"has space\"\ntoken_typo = 1\n"
        ));
        assert!(
            e.len() == 1 && e[0].contains("token_typo"),
            "unknown keys first: {e:?}"
        );
        let e = errors(&format!("{CAM}[camera.prusa_connect]\ntoken = \"has space\"\n"));
        assert!(
            e.len() == 1
                && e[0].contains("prusa_connect.token: is not a Prusa Connect token")
                && !e[0].contains("has space"),
            "{e:?}"
        );
        for url in ["ftp://x", "https://u:pw@h", "https://", "https://h/p?q"] {
            let e = errors(&format!("[prusa_connect]\nurl = \"{url}\"\n{CAM}"));
            assert!(e.len() == 1 && e[0].contains("prusa_connect.url"), "{url}: {e:?}");
            assert!(!e[0].contains("pw@"), "{e:?}");
        }
        let e = errors(&format!(
            "[prusa_connect]\nurl = \"http://h\"\nca_file = \"/etc/hostname\"\n{CAM}"
        ));
        assert!(
            e.len() == 1 && e[0].contains("prusa_connect.ca_file: is for an https:// url"),
            "{e:?}"
        );
        let e = errors(&format!(
            "[prusa_connect]\nca_file = \"/nonexistent/ca.pem\"\n{CAM}"
        ));
        assert!(
            e.len() == 1 && e[0].contains("prusa_connect.ca_file: cannot read"),
            "{e:?}"
        );
        let warned = |url: &str| {
            super::super::parse(
                &format!("[prusa_connect]\nurl = \"{url}\"\n{CAM}[camera.prusa_connect]\ntoken = \"t\"\n"),
                Path::new("f.toml"),
            )
            .unwrap()
            .warnings()
            .iter()
            .any(|w| w.contains("prusa_connect.url") && w.contains("unencrypted"))
        };
        assert!(
            warned("http://proxy.lan:8080") && !warned("http://127.0.0.1:9") && !warned("https://proxy.lan")
        );
        let e = errors(&format!("{CAM}[camera.prusa_connect]\ntoken = 12345678\n"));
        assert!(
            e.len() == 1 && !e[0].contains("12345678"),
            "a mistyped token is not quoted: {e:?}"
        );
    }
}
