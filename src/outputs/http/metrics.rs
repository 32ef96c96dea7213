//! `GET /metrics`: Prometheus text format, per camera and for the process and MQTT.

use std::fmt::Write;
use std::sync::atomic::Ordering::Relaxed;

use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Response, StatusCode};

use super::{api, Body, Ctx};
use crate::events::{CameraState, LightState};
use crate::registry::{CameraStatus, DecoderMode};

/// Per camera, how many of `of` (camera ids, one per session) are its.
fn per_camera_count(
    cameras: &[std::sync::Arc<crate::registry::Camera>],
    of: &[String],
) -> Vec<(String, f64)> {
    cameras
        .iter()
        .map(|c| {
            let n = of.iter().filter(|id| *id == c.id()).count();
            (format!("{{camera=\"{}\"}}", label(c.id())), n as f64)
        })
        .collect()
}

/// Prometheus label values: backslash, quote and newline escaped.
fn label(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// One family: its HELP and TYPE lines, then its rows (labels, value).
fn family(out: &mut String, name: &str, kind: &str, help: &str, rows: Vec<(String, f64)>) {
    let _ = writeln!(out, "# HELP farmcam_{name} {help}\n# TYPE farmcam_{name} {kind}");
    for (labels, v) in rows {
        let _ = writeln!(out, "farmcam_{name}{labels} {v}");
    }
}

/// A family of one number per camera, read from its status (`None`: the camera has none, and
/// no row).
struct PerCamera {
    name: &'static str,
    kind: &'static str,
    help: &'static str,
    value: fn(&CameraStatus) -> Option<f64>,
}

/// The per-camera families that are one number of the camera's status, in the order shown.
const PER_CAMERA: &[PerCamera] = &[
    PerCamera {
        name: "camera_viewers",
        kind: "gauge",
        help: "Live viewers: MJPEG streams and WebRTC.",
        value: |c| Some(c.viewers as f64),
    },
    PerCamera {
        name: "camera_consumers",
        kind: "gauge",
        help: "All consumers: viewers, snapshots, MQTT.",
        value: |c| Some(c.consumers as f64),
    },
    PerCamera {
        name: "camera_fps",
        kind: "gauge",
        help: "Frames per second measured over the last second (units per second for a camera watched only as H.264/H.265).",
        value: |c| Some(c.measured_fps),
    },
    PerCamera {
        name: "frames_captured_total",
        kind: "counter",
        help: "Frames received from the camera.",
        value: |c| Some(c.frames_captured as f64),
    },
    PerCamera {
        name: "frames_delivered_total",
        kind: "counter",
        help: "Frames written to consumers.",
        value: |c| Some(c.frames_delivered as f64),
    },
    PerCamera {
        name: "frames_skipped_total",
        kind: "counter",
        help: "Frames slow consumers skipped.",
        value: |c| Some(c.frames_skipped as f64),
    },
    PerCamera {
        name: "frames_invalid_total",
        kind: "counter",
        help: "Broken frames dropped (truncated, oversized, not JPEG).",
        value: |c| Some(c.frames_invalid as f64),
    },
    PerCamera {
        name: "frames_scaled_total",
        kind: "counter",
        help: "Frames made at a size consumers asked for (each size of each frame once).",
        value: |c| Some(c.frames_scaled as f64),
    },
    PerCamera {
        name: "upstream_opens_total",
        kind: "counter",
        help: "Times the camera was opened (starts and restarts).",
        value: |c| Some(c.upstream_opens as f64),
    },
    PerCamera {
        name: "frames_decoded_total",
        kind: "counter",
        help: "Access units handed to the decoder, not pictures out of it (H.264/H.265 cameras).",
        value: |c| c.frames_decoded.map(|n| n as f64),
    },
    PerCamera {
        name: "decoder_starts_total",
        kind: "counter",
        help: "Decoders started (H.264/H.265 cameras).",
        value: |c| c.decoder_starts.map(|n| n as f64),
    },
    PerCamera {
        name: "frames_encoded_total",
        kind: "counter",
        help: "JPEGs encoded for the camera (cameras whose frames are not passed through).",
        value: |c| c.frames_encoded.map(|n| n as f64),
    },
    PerCamera {
        name: "keyframe_interval_seconds",
        kind: "gauge",
        help: "Measured time between keyframes (H.264/H.265 cameras).",
        value: |c| c.keyframe_interval_ms.map(|ms| ms as f64 / 1000.0),
    },
];

/// `{camera="…"}`.
fn camera_label(id: &str) -> String {
    format!("{{camera=\"{}\"}}", label(id))
}

/// A serde enum's name (`"live"`, `"keyframes"`).
fn name_of(v: impl serde::Serialize) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default()
}

/// 1 for each camera's state, 0 for its other states.
fn camera_states(cams: &[CameraStatus]) -> Vec<(String, f64)> {
    let states = [
        CameraState::Idle,
        CameraState::Starting,
        CameraState::Live,
        CameraState::Offline,
    ];
    cams.iter()
        .flat_map(|c| {
            states.iter().map(move |s| {
                (
                    format!("{{camera=\"{}\",state=\"{}\"}}", label(&c.id), name_of(s)),
                    f64::from(u8::from(c.state == *s)),
                )
            })
        })
        .collect()
}

fn viewers_by_kind(cams: &[CameraStatus]) -> Vec<(String, f64)> {
    cams.iter()
        .flat_map(|c| {
            let id = label(&c.id);
            [
                (
                    format!("{{camera=\"{id}\",kind=\"mjpeg\"}}"),
                    c.viewers_by_kind.mjpeg as f64,
                ),
                (
                    format!("{{camera=\"{id}\",kind=\"webrtc\"}}"),
                    c.viewers_by_kind.webrtc as f64,
                ),
            ]
        })
        .collect()
}

fn decoder_modes(cams: &[CameraStatus]) -> Vec<(String, f64)> {
    cams.iter()
        .filter_map(|c| Some((c, c.decoder?)))
        .flat_map(|(c, mode)| {
            [DecoderMode::Off, DecoderMode::Keyframes, DecoderMode::Full].map(|m| {
                (
                    format!("{{camera=\"{}\",mode=\"{}\"}}", label(&c.id), name_of(m)),
                    f64::from(u8::from(m == mode)),
                )
            })
        })
        .collect()
}

fn lights(cams: &[CameraStatus]) -> Vec<(String, f64)> {
    cams.iter()
        .filter_map(|c| {
            let l = c.light.as_ref()?;
            let v = match l.state {
                LightState::On => 1.0,
                LightState::Unavailable => -1.0,
                _ => 0.0,
            };
            Some((
                format!("{{camera=\"{}\",light=\"{}\"}}", label(&c.id), label(&l.id)),
                v,
            ))
        })
        .collect()
}

/// One row without labels.
fn one(v: f64) -> Vec<(String, f64)> {
    vec![(String::new(), v)]
}

pub fn render(ctx: &Ctx) -> String {
    let mut out = String::new();
    let cameras = ctx.registry.cameras();
    let cams: Vec<_> = cameras.iter().map(|c| c.status()).collect();
    let per = |f: &dyn Fn(&CameraStatus) -> Option<f64>| -> Vec<(String, f64)> {
        cams.iter()
            .filter_map(|c| Some((camera_label(&c.id), f(c)?)))
            .collect()
    };
    let gateway = format!(
        "{{node_id=\"{}\",version=\"{}\"}}",
        label(&ctx.node_id),
        env!("CARGO_PKG_VERSION")
    );
    family(&mut out, "gateway_info", "gauge", "1, naming this gateway (node_id: [mqtt] node_id, else the host name) for a farm's central Prometheus.", vec![(gateway, 1.0)]);
    family(
        &mut out,
        "camera_state",
        "gauge",
        "1 for the camera's current state (idle, starting, live, offline).",
        camera_states(&cams),
    );
    family(
        &mut out,
        "camera_viewers_by_kind",
        "gauge",
        "Live viewers by kind: mjpeg (HTTP streams) and webrtc.",
        viewers_by_kind(&cams),
    );
    for f in PER_CAMERA {
        family(&mut out, f.name, f.kind, f.help, per(&f.value));
    }
    family(
        &mut out,
        "decoder_mode",
        "gauge",
        "1 for the decoder's current mode (off, keyframes, full) of H.264/H.265 cameras.",
        decoder_modes(&cams),
    );
    family(
        &mut out,
        "light_on",
        "gauge",
        "1 while the camera's light is on; -1 while its port is unavailable.",
        lights(&cams),
    );
    let sent = cameras
        .iter()
        .map(|c| (camera_label(c.id()), c.shared().bytes_sent.load(Relaxed) as f64))
        .collect();
    family(
        &mut out,
        "bytes_sent_total",
        "counter",
        "Bytes sent to HTTP viewers and snapshot clients.",
        sent,
    );
    let _ = writeln!(
        out,
        "# HELP farmcam_snapshot_seconds Time to answer a snapshot request with a frame.\n# TYPE farmcam_snapshot_seconds histogram"
    );
    for c in &cameras {
        let labels = format!("camera=\"{}\"", label(c.id()));
        c.shared()
            .snapshot_latency
            .render(&mut out, "farmcam_snapshot_seconds", &labels);
    }
    let (rss, cpu) = process();
    family(
        &mut out,
        "process_resident_memory_bytes",
        "gauge",
        "Resident memory of farmcam.",
        one(rss),
    );
    family(
        &mut out,
        "process_cpu_seconds_total",
        "counter",
        "CPU time of farmcam (user + system).",
        one(cpu),
    );
    if let Some(rtc) = &ctx.webrtc {
        let sessions: Vec<String> = rtc.sessions().into_iter().map(|s| s.camera).collect();
        family(
            &mut out,
            "webrtc_sessions",
            "gauge",
            "WebRTC viewers per camera (live H.264 without transcoding).",
            per_camera_count(&cameras, &sessions),
        );
        family(
            &mut out,
            "webrtc_bytes_sent_total",
            "counter",
            "Bytes sent to WebRTC viewers (media and control).",
            per(&|c| Some(c.webrtc_bytes_sent as f64)),
        );
    }
    if let Some(rtsp) = &ctx.rtsp {
        let sessions: Vec<String> = rtsp.sessions().into_iter().map(|s| s.camera).collect();
        family(
            &mut out,
            "rtsp_sessions",
            "gauge",
            "RTSP sessions per camera (Home Assistant, Frigate, NVRs, VLC).",
            per_camera_count(&cameras, &sessions),
        );
        family(
            &mut out,
            "rtsp_bytes_sent_total",
            "counter",
            "Bytes of RTP sent to RTSP clients.",
            per(&|c| Some(c.rtsp_bytes_sent as f64)),
        );
    }
    let logins = &ctx.login_stats;
    family(
        &mut out,
        "password_checks_total",
        "counter",
        "Password hashes checked for Basic logins (verified logins are remembered for 10 minutes).",
        one(logins.checks.load(Relaxed) as f64),
    );
    family(
        &mut out,
        "login_failures_total",
        "counter",
        "Basic logins refused for a wrong user name or password.",
        one(logins.failures.load(Relaxed) as f64),
    );
    prusa_connect(&mut out, ctx);
    if let Some(m) = &ctx.mqtt {
        family(
            &mut out,
            "mqtt_connected",
            "gauge",
            "1 while connected to the broker.",
            one(f64::from(u8::from(m.connected()))),
        );
        family(
            &mut out,
            "mqtt_snapshots_published_total",
            "counter",
            "Snapshots published.",
            one(m.stats.snapshots_published.load(Relaxed) as f64),
        );
        family(
            &mut out,
            "mqtt_snapshots_skipped_total",
            "counter",
            "Snapshots not published (too large, slow broker, no frame).",
            one(m.stats.snapshots_skipped.load(Relaxed) as f64),
        );
        family(
            &mut out,
            "mqtt_connects_total",
            "counter",
            "Successful broker connections.",
            one(m.stats.connects.load(Relaxed) as f64),
        );
    }
    out
}

/// The Prusa Connect families, when a camera uploads there.
fn prusa_connect(out: &mut String, ctx: &Ctx) {
    let uploads = ctx.prusa.statuses();
    if uploads.is_empty() {
        return;
    }
    let attempts = uploads
        .iter()
        .flat_map(|(id, s)| {
            crate::outputs::prusa_connect::Outcome::ALL.iter().map(move |o| {
                (
                    format!("{{camera=\"{}\",result=\"{}\"}}", label(id), o.name()),
                    s.attempts.get(o.name()).copied().unwrap_or(0) as f64,
                )
            })
        })
        .collect();
    family(out, "prusa_connect_attempts_total", "counter", "Snapshot uploads to Prusa Connect by result: ok, refused (token, deleted camera or fingerprint), rejected (other 4xx), failed (unreachable, 5xx), offline (no picture, nothing sent).", attempts);
    let bytes = uploads
        .iter()
        .map(|(id, s)| (camera_label(id), s.bytes_uploaded as f64))
        .collect();
    family(
        out,
        "prusa_connect_bytes_uploaded_total",
        "counter",
        "Bytes of JPEG Prusa Connect took.",
        bytes,
    );
    let last = uploads
        .iter()
        .map(|(id, s)| (camera_label(id), s.last_upload.unwrap_or(0.0)))
        .collect();
    family(
        out,
        "prusa_connect_last_upload_timestamp_seconds",
        "gauge",
        "Unix time of the last snapshot Prusa Connect took (0: none yet).",
        last,
    );
}

/// Resident memory in bytes: pages from /proc/self/statm times the page size, which is not 4 KiB
/// everywhere (Raspberry Pi OS on a Pi 5 runs 16 KiB pages).
fn resident_bytes() -> f64 {
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    let page = if page > 0 { page as f64 } else { 4096.0 };
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1).and_then(|v| v.parse::<f64>().ok()))
        .map_or(0.0, |pages| pages * page)
}

/// (resident bytes, CPU seconds) from /proc/self.
fn process() -> (f64, f64) {
    let rss = resident_bytes();
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let cpu = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let rest = s.rsplit_once(") ")?.1.to_string();
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some((f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?) / ticks.max(1.0))
        })
        .unwrap_or(0.0);
    (rss, cpu)
}

pub fn metrics(ctx: &Ctx) -> Response<Body> {
    let mut resp = api::html(StatusCode::OK, render(ctx));
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    resp
}

#[cfg(test)]
mod tests {
    /// What the kernel itself reports, in kB, independent of the page size.
    fn vm_rss() -> f64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse::<f64>().unwrap() * 1024.0
    }

    #[test]
    fn resident_memory_matches_the_kernels_own_figure() {
        let _ballast = vec![1u8; 8 << 20];
        let (before, ours, after) = (vm_rss(), super::resident_bytes(), vm_rss());
        let (lo, hi) = (before.min(after), before.max(after));
        assert!(
            ours >= lo * 0.9 && ours <= hi * 1.1,
            "statm × page size {ours} vs VmRSS {before}..{after}"
        );
    }
}
