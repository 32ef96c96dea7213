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

pub fn render(ctx: &Ctx) -> String {
    let mut out = String::new();
    let cameras = ctx.registry.cameras();
    let cams: Vec<_> = cameras.iter().map(|c| c.status()).collect();
    fn family(out: &mut String, name: &str, kind: &str, help: &str, rows: Vec<(String, f64)>) {
        let _ = writeln!(out, "# HELP farmcam_{name} {help}\n# TYPE farmcam_{name} {kind}");
        for (labels, v) in rows {
            let _ = writeln!(out, "farmcam_{name}{labels} {v}");
        }
    }
    family(
        &mut out,
        "gateway_info",
        "gauge",
        "1, naming this gateway (node_id: [mqtt] node_id, else the host name) for a farm's central Prometheus.",
        vec![(
            format!(
                "{{node_id=\"{}\",version=\"{}\"}}",
                label(&ctx.node_id),
                env!("CARGO_PKG_VERSION")
            ),
            1.0,
        )],
    );
    let states = [
        CameraState::Idle,
        CameraState::Starting,
        CameraState::Live,
        CameraState::Offline,
    ];
    family(
        &mut out,
        "camera_state",
        "gauge",
        "1 for the camera's current state (idle, starting, live, offline).",
        cams.iter()
            .flat_map(|c| {
                states.iter().map(move |s| {
                    let name = serde_json::to_value(s)
                        .ok()
                        .and_then(|v| v.as_str().map(String::from))
                        .unwrap_or_default();
                    (
                        format!("{{camera=\"{}\",state=\"{name}\"}}", label(&c.id)),
                        f64::from(u8::from(c.state == *s)),
                    )
                })
            })
            .collect(),
    );
    let per = |f: &dyn Fn(&crate::registry::CameraStatus) -> f64| -> Vec<(String, f64)> {
        cams.iter()
            .map(|c| (format!("{{camera=\"{}\"}}", label(&c.id)), f(c)))
            .collect()
    };
    family(
        &mut out,
        "camera_viewers",
        "gauge",
        "Live viewers: MJPEG streams and WebRTC.",
        per(&|c| c.viewers as f64),
    );
    family(
        &mut out,
        "camera_viewers_by_kind",
        "gauge",
        "Live viewers by kind: mjpeg (HTTP streams) and webrtc.",
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
            .collect(),
    );
    family(
        &mut out,
        "camera_consumers",
        "gauge",
        "All consumers: viewers, snapshots, MQTT.",
        per(&|c| c.consumers as f64),
    );
    family(
        &mut out,
        "camera_fps",
        "gauge",
        "Frames per second measured over the last second.",
        per(&|c| c.measured_fps),
    );
    family(
        &mut out,
        "frames_captured_total",
        "counter",
        "Frames received from the camera.",
        per(&|c| c.frames_captured as f64),
    );
    family(
        &mut out,
        "frames_delivered_total",
        "counter",
        "Frames written to consumers.",
        per(&|c| c.frames_delivered as f64),
    );
    family(
        &mut out,
        "frames_skipped_total",
        "counter",
        "Frames slow consumers skipped.",
        per(&|c| c.frames_skipped as f64),
    );
    family(
        &mut out,
        "frames_invalid_total",
        "counter",
        "Broken frames dropped (truncated, oversized, not JPEG).",
        per(&|c| c.frames_invalid as f64),
    );
    family(
        &mut out,
        "frames_scaled_total",
        "counter",
        "Frames made at a size consumers asked for (each size of each frame once).",
        per(&|c| c.frames_scaled as f64),
    );
    family(
        &mut out,
        "upstream_opens_total",
        "counter",
        "Times the camera was opened (starts and restarts).",
        per(&|c| c.upstream_opens as f64),
    );
    let optional = |f: &dyn Fn(&CameraStatus) -> Option<f64>| -> Vec<(String, f64)> {
        cams.iter()
            .filter_map(|c| Some((format!("{{camera=\"{}\"}}", label(&c.id)), f(c)?)))
            .collect()
    };
    family(
        &mut out,
        "frames_decoded_total",
        "counter",
        "Pictures handed to the decoder (H.264/H.265 cameras).",
        optional(&|c| c.frames_decoded.map(|n| n as f64)),
    );
    family(
        &mut out,
        "decoder_starts_total",
        "counter",
        "Decoder processes started (H.264/H.265 cameras).",
        optional(&|c| c.decoder_starts.map(|n| n as f64)),
    );
    family(
        &mut out,
        "frames_encoded_total",
        "counter",
        "JPEGs encoded for the camera (cameras whose frames are not passed through).",
        optional(&|c| c.frames_encoded.map(|n| n as f64)),
    );
    family(
        &mut out,
        "keyframe_interval_seconds",
        "gauge",
        "Measured time between keyframes (H.264/H.265 cameras).",
        optional(&|c| c.keyframe_interval_ms.map(|ms| ms as f64 / 1000.0)),
    );
    family(
        &mut out,
        "decoder_mode",
        "gauge",
        "1 for the decoder's current mode (off, keyframes, full) of H.264/H.265 cameras.",
        cams.iter()
            .filter_map(|c| Some((c, c.decoder?)))
            .flat_map(|(c, mode)| {
                [DecoderMode::Off, DecoderMode::Keyframes, DecoderMode::Full].map(|m| {
                    let name = serde_json::to_value(m)
                        .ok()
                        .and_then(|v| v.as_str().map(String::from))
                        .unwrap_or_default();
                    (
                        format!("{{camera=\"{}\",mode=\"{name}\"}}", label(&c.id)),
                        if m == mode { 1.0 } else { 0.0 },
                    )
                })
            })
            .collect(),
    );
    family(
        &mut out,
        "light_on",
        "gauge",
        "1 while the camera's light is on; -1 while its port is unavailable.",
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
            .collect(),
    );
    family(
        &mut out,
        "bytes_sent_total",
        "counter",
        "Bytes sent to HTTP viewers and snapshot clients.",
        cameras
            .iter()
            .map(|c| {
                (
                    format!("{{camera=\"{}\"}}", label(c.id())),
                    c.shared().bytes_sent.load(Relaxed) as f64,
                )
            })
            .collect(),
    );
    let _ = writeln!(
        out,
        "# HELP farmcam_snapshot_seconds Time to answer a snapshot request with a frame.\n# TYPE farmcam_snapshot_seconds histogram"
    );
    for c in &cameras {
        c.shared().snapshot_latency.render(
            &mut out,
            "farmcam_snapshot_seconds",
            &format!("camera=\"{}\"", label(c.id())),
        );
    }
    let (rss, cpu) = process();
    family(
        &mut out,
        "process_resident_memory_bytes",
        "gauge",
        "Resident memory of farmcam.",
        vec![(String::new(), rss)],
    );
    family(
        &mut out,
        "process_cpu_seconds_total",
        "counter",
        "CPU time of farmcam (user + system).",
        vec![(String::new(), cpu)],
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
            per(&|c| c.webrtc_bytes_sent as f64),
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
            per(&|c| c.rtsp_bytes_sent as f64),
        );
    }
    family(
        &mut out,
        "password_checks_total",
        "counter",
        "Password hashes checked for Basic logins (verified logins are remembered for 10 minutes).",
        vec![(String::new(), ctx.login_stats.checks.load(Relaxed) as f64)],
    );
    family(
        &mut out,
        "login_failures_total",
        "counter",
        "Basic logins refused for a wrong user name or password.",
        vec![(String::new(), ctx.login_stats.failures.load(Relaxed) as f64)],
    );
    let uploads = ctx.prusa.statuses();
    if !uploads.is_empty() {
        family(
            &mut out,
            "prusa_connect_attempts_total",
            "counter",
            "Snapshot uploads to Prusa Connect by result: ok, refused (token, deleted camera or fingerprint), rejected (other 4xx), failed (unreachable, 5xx), offline (no picture, nothing sent).",
            uploads
                .iter()
                .flat_map(|(id, s)| {
                    crate::prusa_connect::Outcome::ALL.iter().map(move |o| {
                        (
                            format!("{{camera=\"{}\",result=\"{}\"}}", label(id), o.name()),
                            s.attempts.get(o.name()).copied().unwrap_or(0) as f64,
                        )
                    })
                })
                .collect(),
        );
        family(
            &mut out,
            "prusa_connect_bytes_uploaded_total",
            "counter",
            "Bytes of JPEG Prusa Connect took.",
            uploads
                .iter()
                .map(|(id, s)| (format!("{{camera=\"{}\"}}", label(id)), s.bytes_uploaded as f64))
                .collect(),
        );
        family(
            &mut out,
            "prusa_connect_last_upload_timestamp_seconds",
            "gauge",
            "Unix time of the last snapshot Prusa Connect took (0: none yet).",
            uploads
                .iter()
                .map(|(id, s)| {
                    (
                        format!("{{camera=\"{}\"}}", label(id)),
                        s.last_upload.unwrap_or(0.0),
                    )
                })
                .collect(),
        );
    }
    if let Some(m) = &ctx.mqtt {
        family(
            &mut out,
            "mqtt_connected",
            "gauge",
            "1 while connected to the broker.",
            vec![(String::new(), f64::from(u8::from(m.connected())))],
        );
        family(
            &mut out,
            "mqtt_snapshots_published_total",
            "counter",
            "Snapshots published.",
            vec![(String::new(), m.stats.snapshots_published.load(Relaxed) as f64)],
        );
        family(
            &mut out,
            "mqtt_snapshots_skipped_total",
            "counter",
            "Snapshots not published (too large, slow broker, no frame).",
            vec![(String::new(), m.stats.snapshots_skipped.load(Relaxed) as f64)],
        );
        family(
            &mut out,
            "mqtt_connects_total",
            "counter",
            "Successful broker connections.",
            vec![(String::new(), m.stats.connects.load(Relaxed) as f64)],
        );
    }
    out
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
