//! `[[moonraker]]` blocks: Moonraker instances (Mainsail/Fluidd's backend) whose webcam list
//! farmcam keeps its cameras in.

use serde::Deserialize;
use toml::Spanned;

use super::diag::Validator;
use super::values::parse_http_base;
use super::values::Secret;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MoonrakerConfig {
    /// `http://HOST:PORT` of the Moonraker API (no trailing slash).
    pub url: String,
    pub host: String,
    pub port: u16,
    /// Sent as `X-Api-Key` when set.
    pub api_key: Option<Secret>,
    /// The cameras to register (`None`: all of them).
    pub cameras: Option<Vec<String>>,
    /// How the printer host reaches farmcam (`http://192.168.1.10:8080`), for the stream and
    /// snapshot URLs registered.
    pub farmcam_url: String,
    /// This gateway's name (`[mqtt] node_id`, else the host name): marks the entries it made,
    /// so they are still its own after `farmcam_url` changes, and another gateway's are not.
    pub gateway: String,
    /// Whether WebRTC is on (`[webrtc]`): H.264 cameras are then registered for it.
    pub webrtc: bool,
    /// The printer's name in timelapses (`name`, else the host).
    pub printer: String,
    /// With `[timelapse]`: its prints are recorded by its `cameras` (`timelapse = false`: not).
    pub timelapse: bool,
}

/// How a camera is registered in Moonraker (its `moonraker_service`): the player Mainsail and
/// Fluidd open for it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MoonrakerService {
    /// WebRTC (`webrtc-camerastreamer`) for a camera that sends H.264/H.265 while WebRTC is on;
    /// MJPEG otherwise.
    #[default]
    Auto,
    /// `mjpegstreamer-adaptive`: the MJPEG stream and snapshots.
    Mjpeg,
    /// `webrtc-camerastreamer`: live H.264 over WebRTC, with the JPEG snapshot URL.
    Webrtc,
}

impl MoonrakerService {
    pub fn parse(s: &str) -> Result<MoonrakerService, String> {
        match s {
            "auto" => Ok(MoonrakerService::Auto),
            "mjpeg" => Ok(MoonrakerService::Mjpeg),
            "webrtc" => Ok(MoonrakerService::Webrtc),
            _ => Err(format!(
                "{s:?}: write \"auto\" (WebRTC for H.264 cameras), \"mjpeg\" or \"webrtc\""
            )),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMoonraker {
    url: Spanned<String>,
    api_key: Option<String>,
    cameras: Option<Spanned<Vec<String>>>,
    farmcam_url: Option<Spanned<String>>,
    name: Option<Spanned<String>>,
    timelapse: Option<bool>,
}

impl Validator<'_> {
    /// `default_farmcam_url`: `[http] public_url`, or the main listener when it is one address.
    pub(super) fn moonrakers(
        &mut self,
        raw: &[RawMoonraker],
        camera_ids: &[&str],
        default_farmcam_url: Option<String>,
        gateway: &str,
        webrtc: bool,
    ) -> Vec<MoonrakerConfig> {
        let mut out = Vec::new();
        for (i, m) in raw.iter().enumerate() {
            let at = |k: &str| format!("moonraker[{i}].{k}");
            let Some((_, host, port)) = parse_http_base(m.url.get_ref(), 7125) else {
                self.problem(
                    Some(m.url.span()),
                    &at("url"),
                    &format!(
                        "{:?}: write Moonraker's address, e.g. \"http://printer.local:7125\"",
                        crate::util::redact::url(m.url.get_ref().trim())
                    ),
                );
                continue;
            };
            if let Some(c) = &m.cameras {
                for id in c.get_ref() {
                    if !camera_ids.contains(&id.as_str()) {
                        self.problem(
                            Some(c.span()),
                            &at("cameras"),
                            &format!("{id:?} is not a camera id in this file"),
                        );
                    }
                }
            }
            let farmcam_url = match &m.farmcam_url {
                Some(f) => {
                    let v = f.get_ref().trim().trim_end_matches('/');
                    if !(v.starts_with("http://") || v.starts_with("https://")) || v.contains(['@', ' ']) {
                        self.problem(
                            Some(f.span()),
                            &at("farmcam_url"),
                            "write how the printer reaches farmcam, e.g. \"http://192.168.1.10:8080\"",
                        );
                        continue;
                    }
                    v.to_string()
                }
                None => match &default_farmcam_url {
                    Some(u) => u.clone(),
                    None => {
                        self.problem(
                            Some(m.url.span()),
                            &at("farmcam_url"),
                            "is needed: farmcam listens on every address, so say how the printer reaches it, e.g. farmcam_url = \"http://192.168.1.10:8080\" (or set [http] public_url)",
                        );
                        continue;
                    }
                },
            };
            let printer = match &m.name {
                Some(n) if n.get_ref().trim().is_empty() => {
                    self.problem(
                        Some(n.span()),
                        &at("name"),
                        "is empty: name the printer, e.g. \"voron-2\"",
                    );
                    continue;
                }
                Some(n) => n.get_ref().trim().to_string(),
                None => host.clone(),
            };
            out.push(MoonrakerConfig {
                url: format!("http://{host}:{port}"),
                printer,
                timelapse: m.timelapse.unwrap_or(true),
                host,
                port,
                api_key: m.api_key.clone().map(Secret),
                cameras: m.cameras.as_ref().map(|c| c.get_ref().clone()),
                farmcam_url,
                gateway: gateway.to_string(),
                webrtc,
            });
        }
        out
    }
}
