//! Moonraker registration against a real Moonraker: cameras appear in its webcam list (what
//! Mainsail and Fluidd show), follow renames, URL changes and removals across reloads, entries
//! made by hand are left alone, and a Moonraker started after farmcam still gets the cameras.

mod common;

use std::time::Duration;

use common::moonraker::Moonraker;
use common::{config, eventually, Daemon};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(60);

fn ours(list: &[Value]) -> Vec<&Value> {
    list.iter()
        .filter(|w| w["extra_data"]["farmcam"].is_object())
        .collect()
}

/// Wait until Moonraker's list satisfies `pred`.
async fn list_where(m: &Moonraker, what: &str, pred: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let list = m.webcams().await;
        if pred(&list) {
            return list;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not within {WAIT:?}: {what}: {list:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn file(moonraker: &str, farmcam_url: &str, cameras: &str) -> String {
    config(
        "",
        &format!("[[moonraker]]\nurl = \"{moonraker}\"\nfarmcam_url = \"{farmcam_url}\"\n{cameras}"),
    )
}

fn cam(id: &str, name: &str) -> String {
    format!("[[camera]]\nid = \"{id}\"\nname = \"{name}\"\nsource = \"test:\"\nfps = 10\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cameras_follow_the_configuration_and_hand_made_entries_survive() {
    let m = Moonraker::start();
    // Someone's own webcam, and one that has the name farmcam would use.
    m.add(r#"{"name":"Nozzle cam","service":"mjpegstreamer","stream_url":"http://x/stream","snapshot_url":"http://x/snap"}"#)
        .await;
    m.add(r#"{"name":"Printer 2","service":"mjpegstreamer","stream_url":"http://y/stream","snapshot_url":"http://y/snap"}"#)
        .await;
    let d = Daemon::start(&file(
        &m.url(),
        "http://10.0.0.5:8080",
        &(cam("p1", "Printer 1") + "size = \"1280x720\"\nrotate = 90\n" + &cam("p2", "Printer 2")),
    ));

    let list = list_where(&m, "both cameras registered", |l| ours(l).len() == 2).await;
    let p1 = list
        .iter()
        .find(|w| w["extra_data"]["farmcam"]["camera"] == "p1")
        .unwrap();
    assert_eq!(p1["name"], "Printer 1");
    assert_eq!(p1["service"], "mjpegstreamer-adaptive");
    assert_eq!(p1["stream_url"], "http://10.0.0.5:8080/cameras/p1/stream");
    assert_eq!(p1["snapshot_url"], "http://10.0.0.5:8080/cameras/p1/snapshot");
    assert_eq!(p1["target_fps"], 10);
    // farmcam turns the picture: the frontend must not; the shape is the turned one.
    assert_eq!(p1["rotation"], 0);
    assert_eq!(p1["flip_horizontal"], false);
    assert_eq!(p1["aspect_ratio"], "9:16");
    let p2 = list
        .iter()
        .find(|w| w["extra_data"]["farmcam"]["camera"] == "p2")
        .unwrap();
    assert_eq!(
        p2["name"], "Printer 2 (farmcam)",
        "the hand-made name is not taken over"
    );
    let uid = p1["uid"].clone();

    // Rename p1, change where farmcam is reached, remove p2: a reload.
    std::fs::write(
        d.config_path(),
        file(&m.url(), "https://farm.example", &cam("p1", "Left printer")),
    )
    .unwrap();
    d.signal(libc::SIGHUP);
    let list = list_where(&m, "p1 renamed and moved in place, p2 removed", |l| {
        let o = ours(l);
        o.len() == 1
            && o[0]["name"] == "Left printer"
            && o[0]["stream_url"] == "https://farm.example/cameras/p1/stream"
    })
    .await;
    assert_eq!(ours(&list)[0]["uid"], uid, "updated in place by uid");
    assert_eq!(
        ours(&list)[0]["snapshot_url"],
        "https://farm.example/cameras/p1/snapshot"
    );
    // The hand-made entries are untouched.
    for name in ["Nozzle cam", "Printer 2"] {
        let w = list
            .iter()
            .find(|w| w["name"] == name)
            .unwrap_or_else(|| panic!("{name} kept: {list:#?}"));
        assert!(w["extra_data"]["farmcam"].is_null());
        assert!(w["stream_url"].as_str().unwrap().starts_with("http://"));
    }
    assert_eq!(list.len(), 3);
    assert!(!d.log_text().contains("panicked"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moonraker_started_later_still_gets_the_cameras() {
    let port = common::proc::free_port();
    let url = format!("http://127.0.0.1:{port}");
    let d = Daemon::start(&file(&url, "http://10.0.0.5:8080", &cam("p1", "Printer 1")));
    eventually(WAIT, "the failure is said", || {
        d.log_text()
            .contains(&format!("cannot reach {url}"))
            .then_some(())
    })
    .await;
    // farmcam serves meanwhile.
    assert_eq!(common::get(d.main, "/api/cameras").await.status, 200);
    let m = Moonraker::start_on(port);
    let list = list_where(&m, "registered once Moonraker is up", |l| ours(l).len() == 1).await;
    assert_eq!(
        ours(&list)[0]["stream_url"],
        "http://10.0.0.5:8080/cameras/p1/stream"
    );
}

/// H.264 cameras are registered for WebRTC (`webrtc-camerastreamer`, the URL both players POST
/// camera-streamer's signalling to) with a real JPEG snapshot URL; `moonraker_service = "mjpeg"`
/// keeps one on MJPEG, and a camera sending JPEG stays on MJPEG.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h264_cameras_are_registered_for_webrtc_with_a_jpeg_snapshot() {
    let server = common::rtsp::RtspServer::start(common::rtsp::RtspOptions::default());
    let m = Moonraker::start();
    let rtsp = |id: &str, extra: &str| {
        format!(
            "[[camera]]\nid = \"{id}\"\nsource = \"{}\"\nidle_grace = \"1s\"\n{extra}",
            server.url()
        )
    };
    let d = Daemon::start(&file(
        &m.url(),
        "http://10.0.0.5:8080",
        &(rtsp("h264", "") + &rtsp("mj", "moonraker_service = \"mjpeg\"\n") + &cam("pattern", "Pattern")),
    ));
    let list = list_where(&m, "three cameras registered", |l| ours(l).len() == 3).await;
    let entry = |id: &str| {
        list.iter()
            .find(|w| w["extra_data"]["farmcam"]["camera"] == id)
            .unwrap()
            .clone()
    };
    let h264 = entry("h264");
    assert_eq!(h264["service"], "webrtc-camerastreamer", "{h264}");
    assert_eq!(h264["stream_url"], "http://10.0.0.5:8080/cameras/h264/webrtc");
    assert_eq!(h264["snapshot_url"], "http://10.0.0.5:8080/cameras/h264/snapshot");
    for id in ["mj", "pattern"] {
        let e = entry(id);
        assert_eq!(e["service"], "mjpegstreamer-adaptive", "{e}");
        assert_eq!(
            e["stream_url"],
            format!("http://10.0.0.5:8080/cameras/{id}/stream")
        );
    }
    // What the registered URLs answer (farmcam reached here on its test address).
    let path = |url: &Value| url.as_str().unwrap().replace("http://10.0.0.5:8080", "");
    let shot = common::get(d.main, &path(&h264["snapshot_url"])).await;
    assert_eq!(shot.status, 200);
    assert_eq!(
        common::decode_jpeg(&shot.body),
        (320, 240),
        "a real JPEG snapshot"
    );
    let body = r#"{"type":"request"}"#;
    let offer = common::request(
        d.main,
        &format!(
            "POST {} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            path(&h264["stream_url"]),
            body.len()
        ),
    )
    .await;
    assert_eq!(offer.status, 200, "{}", String::from_utf8_lossy(&offer.body));
    let offer: Value = serde_json::from_slice(&offer.body).unwrap();
    assert_eq!(offer["type"], "offer");
}

/// With `[timelapse]`, farmcam also holds the real Moonraker's websocket (it identifies itself and
/// waits for Klipper, which this Moonraker has not: no subscription is made, nothing fails), and
/// still registers the cameras.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_timelapse_trigger_holds_the_real_moonrakers_websocket() {
    let m = Moonraker::start();
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&config(
        "",
        &format!(
            "[timelapse]\ndir = \"{}\"\n[[moonraker]]\nurl = \"{}\"\nfarmcam_url = \"http://10.0.0.5:8080\"\nname = \"voron\"\ncameras = [\"p1\"]\n{}",
            dir.path().display(),
            m.url(),
            cam("p1", "Printer 1")
        ),
    ));
    list_where(&m, "the camera registered", |l| ours(l).len() == 1).await;
    let clients = common::eventually_async(WAIT, "farmcam's websocket client at Moonraker", || async {
        let r = common::get(m.addr(), "/server/info").await;
        let v: Value = serde_json::from_slice(&r.body).ok()?;
        (v["result"]["websocket_count"].as_u64() >= Some(1)).then_some(v)
    })
    .await;
    assert_eq!(clients["result"]["klippy_state"], "disconnected", "{clients}");
    d.logged("timelapses of printer \"voron\"'s prints by p1").await;
    assert!(
        !d.log_text().contains("websocket:"),
        "no websocket error: {}",
        d.log_text()
    );
}
