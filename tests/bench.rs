//! `farmcam bench` against farmcam (chunked, X-Timestamp), an mjpg-streamer-like server
//! (Content-Length parts, no timestamps) and a closed port.

mod common;

use std::process::Command;

use common::mjpeg_server::MjpegServer;
use common::proc::free_port;
use common::{config, Daemon, BIN};

fn bench(url: &str, viewers: &str, duration: &str) -> (Option<i32>, serde_json::Value) {
    let out = Command::new(BIN)
        .args([
            "bench",
            url,
            "--viewers",
            viewers,
            "--duration",
            duration,
            "--slow",
            "1",
            "--json",
        ])
        .output()
        .unwrap();
    let report = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("JSON report ({e}): {}", String::from_utf8_lossy(&out.stdout)));
    (out.status.code(), report)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_measures_farmcam_and_other_mjpeg_servers() {
    let d = Daemon::start(&config(
        "",
        "[[camera]]\nid = \"p1\"\nsource = \"test:\"\nsize = \"160x120\"\nfps = 10\n",
    ));
    let url = format!("http://{}/cameras/p1/stream", d.main);
    let (code, r) = tokio::task::spawn_blocking(move || bench(&url, "3", "3s"))
        .await
        .unwrap();
    assert_eq!(code, Some(0), "{r}");
    assert_eq!(
        (r["viewers"].as_u64(), r["slow_viewers"].as_u64()),
        (Some(3), Some(1))
    );
    assert!(
        r["frames"].as_u64().unwrap() >= 3 && r["fps_min"].as_f64().unwrap() > 0.0,
        "{r}"
    );
    assert_eq!(
        (r["invalid_frames"].as_u64(), r["errors"].as_u64()),
        (Some(0), Some(0)),
        "{r}"
    );
    assert!(
        r["latency_ms"]["p50"].as_f64().is_some(),
        "farmcam sends X-Timestamp: {r}"
    );
    assert!(r["interval_ms"]["p99"].as_f64().unwrap() > 0.0, "{r}");

    let http = MjpegServer::start(64, 48).await;
    let url = http.url();
    let (code, r) = tokio::task::spawn_blocking(move || bench(&url, "2", "2s"))
        .await
        .unwrap();
    assert_eq!(code, Some(0), "{r}");
    assert!(r["frames"].as_u64().unwrap() >= 2, "{r}");
    assert!(r["latency_ms"].is_null(), "no X-Timestamp, no latency: {r}");

    let url = format!("http://127.0.0.1:{}/stream", free_port());
    let (code, r) = tokio::task::spawn_blocking(move || bench(&url, "1", "1s"))
        .await
        .unwrap();
    assert_eq!(code, Some(1));
    assert!(
        r["errors"].as_u64().unwrap() >= 1 && r["last_error"].as_str().unwrap().contains("connect"),
        "{r}"
    );
}
