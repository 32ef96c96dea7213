//! The farm wall (`GET /`) in a real headless Chromium, driven through chromedriver: tiles,
//! images, badges following the event stream, the live view, and cameras idling after the wall
//! closes. Saves a screenshot to target/test-artifacts/wall.png.

mod common;

use std::time::Duration;

use common::mjpeg_server::MjpegServer;
use common::webdriver::Browser;
use common::{config, Daemon};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(30);

const TILES: &str = "return [...document.querySelectorAll('.tile')].map(t => ({
    id: t.dataset.camera,
    name: t.querySelector('.name').textContent,
    badge: t.querySelector('.badge').textContent,
    width: t.querySelector('img').naturalWidth,
    loaded: t.dataset.loaded === '1',
}));";

fn tile<'a>(tiles: &'a Value, id: &str) -> &'a Value {
    tiles
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == id)
        .unwrap_or_else(|| panic!("no tile {id}: {tiles}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wall_in_a_real_browser() {
    let http = MjpegServer::start(320, 240).await;
    let mut cams = String::new();
    for i in 1..=7 {
        // p1 is a 720p camera: its tile asks for the tile's width, not the whole frame.
        let size = if i == 1 { "1280x720" } else { "320x180" };
        let name = if i == 2 {
            "<Bench> & co".to_string()
        } else {
            format!("Printer {i}")
        };
        cams.push_str(&format!(
            "[[camera]]\nid = \"p{i}\"\nname = \"{name}\"\nsource = \"test:\"\nsize = \"{size}\"\nfps = 5\nidle_grace = \"3s\"\n"
        ));
    }
    cams.push_str(&format!(
        "[[camera]]\nid = \"k1\"\nname = \"Creality K1\"\nsource = \"{}\"\nidle_grace = \"3s\"\n\
         [[camera]]\nid = \"dead\"\nname = \"Voron (offline)\"\nsource = \"test:offline\"\nsize = \"320x180\"\n",
        http.url()
    ));
    let d = Daemon::start(&config("", &cams));
    let base = format!("http://{}", d.main);
    let browser = Browser::start(1280, 900).await;
    browser.goto(&format!("{base}/")).await;

    // Nine tiles; every live one shows a real image; the offline one says so.
    let tiles = browser
        .wait_for(WAIT, "9 tiles, 8 with an image", TILES, |v| {
            let a = v.as_array().unwrap();
            a.len() == 9
                && a.iter()
                    .filter(|t| t["id"] != "dead")
                    .all(|t| t["width"].as_u64() > Some(0) && t["badge"] == "live")
        })
        .await;
    assert_eq!(tile(&tiles, "dead")["badge"], "offline");
    assert_eq!(
        tile(&tiles, "p2")["name"],
        "<Bench> & co",
        "names are shown as text"
    );
    // Tiles ask for their shown width in device pixels, rounded up to a step of 160: a 720p
    // camera's tile gets a smaller frame; a camera smaller than its tile sends its own.
    let w = tile(&tiles, "p1")["width"].as_u64().unwrap();
    assert!(w % 160 == 0 && w < 1280, "p1 tile is {w} pixels wide");
    assert_eq!(tile(&tiles, "k1")["width"], 320);
    let p1 = d.camera("p1").await;
    let asked = format!("width={w}");
    assert!(p1["sizes"].as_array().unwrap().contains(&asked.into()), "{p1}");
    assert!(p1["frames_scaled"].as_u64() > Some(0), "{p1}");
    browser
        .wait_for(
            WAIT,
            "event stream connected",
            "return document.querySelector('#conn').textContent",
            |v| v == "live updates",
        )
        .await;
    let png = browser.screenshot().await;
    assert!(png.starts_with(b"\x89PNG"));
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("wall.png"), &png).unwrap();

    // The wall keeps its cameras open (refresh 1 s < idle_grace 3 s).
    for c in d.cameras_json().await.as_array().unwrap() {
        if c["id"] != "dead" {
            assert_eq!(c["state"], "live", "{c}");
        }
    }

    // The HTTP camera dies: its badge flips through the event stream.
    drop(http);
    browser
        .wait_for(WAIT, "k1 badge offline", TILES, |v| {
            tile(v, "k1")["badge"] == "offline"
        })
        .await;

    // Clicking a tile opens it live (one MJPEG viewer); closing ends that stream.
    browser.click("article[data-camera=p3]").await;
    let live = browser
        .wait_for(
            WAIT,
            "live view playing",
            "const i = document.querySelector('#live-img');
             return { open: document.querySelector('#live').classList.contains('open'),
                      src: i.getAttribute('src'), width: i.naturalWidth,
                      urls: document.querySelector('#live-urls').textContent };",
            |v| v["open"] == true && v["width"].as_u64() > Some(0),
        )
        .await;
    assert!(
        live["src"] == "cameras/p3/stream",
        "relative to the page (works under a proxy prefix): {live}"
    );
    assert!(
        live["src"].as_str().unwrap().ends_with("cameras/p3/stream"),
        "{live}"
    );
    assert!(
        live["urls"]
            .as_str()
            .unwrap()
            .contains(&format!("{base}/cameras/p3/snapshot")),
        "{live}"
    );
    d.wait_for("p3", WAIT, |c| c["viewers"] == 1).await;
    browser.click("#live-close").await;
    d.wait_for("p3", WAIT, |c| c["viewers"] == 0).await;

    // farmcam restarts (same port): the page notices, reconnects its event stream by itself and
    // keeps showing live images.
    let port = d.main.port();
    drop(d);
    browser
        .wait_for(
            WAIT,
            "connection lost shown",
            "return document.querySelector('#conn').textContent",
            |v| v == "reconnecting…",
        )
        .await;
    let d = Daemon::start(&format!("[http]\nlisten = \"127.0.0.1:{port}\"\n{cams}"));
    browser
        .wait_for(
            WAIT,
            "event stream back",
            "return document.querySelector('#conn').textContent",
            |v| v == "live updates",
        )
        .await;
    browser
        .wait_for(WAIT, "p1 live again", TILES, |v| tile(v, "p1")["badge"] == "live")
        .await;

    // Wall closed: nothing refreshes, every camera idles after its grace.
    browser.quit().await;
    for i in 1..=7 {
        d.wait_for(&format!("p{i}"), WAIT, |c| c["state"] == "idle").await;
    }
}

/// One wall for the farm: gateway A lists gateway B (`[[wall.gateway]]`) and its wall shows B's
/// cameras next to its own, relayed through A (B's token stays in A's configuration). B going
/// down turns its tiles unreachable while A's keep refreshing; B coming back brings them back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_wall_for_two_gateways() {
    const TOKEN: &str = "b-gateway-token-0123456789";
    let pb = common::proc::free_port();
    let b_config = format!(
        "[http]\nlisten = \"127.0.0.1:{pb}\"\n[http.auth]\ntokens = [\"{TOKEN}\"]\n\
         [[camera]]\nid = \"b1\"\nname = \"Shelf B printer\"\nsource = \"test:\"\nsize = \"320x180\"\nfps = 5\n"
    );
    let b = Daemon::start(&b_config);
    let a = Daemon::start(&config(
        "",
        &format!(
            "[[camera]]\nid = \"a1\"\nsource = \"test:\"\nsize = \"320x180\"\nfps = 5\n\
             [[wall.gateway]]\nname = \"shelf-b\"\nurl = \"http://127.0.0.1:{pb}\"\ntoken = \"{TOKEN}\"\n"
        ),
    ));
    let browser = Browser::start(1280, 900).await;
    browser.goto(&format!("http://{}/", a.main)).await;
    browser
        .wait_for(WAIT, "tiles of both gateways with images", TILES, |v| {
            let a = v.as_array().unwrap();
            a.len() == 2
                && a.iter()
                    .all(|t| t["width"].as_u64() > Some(0) && t["badge"] == "live")
        })
        .await;
    let groups = browser
        .eval("return [...document.querySelectorAll('.group')].map(g => g.textContent);")
        .await;
    assert_eq!(groups, serde_json::json!(["this gateway", "shelf-b"]));
    let html = browser.eval("return document.documentElement.outerHTML;").await;
    assert!(!html.to_string().contains(TOKEN), "B's token is not in A's page");
    let listed = String::from_utf8(common::get(a.main, "/api/gateways").await.body).unwrap();
    assert!(listed.contains("shelf-b") && !listed.contains(TOKEN), "{listed}");

    // B's camera opens live, relayed through A.
    browser.click("article[data-camera='shelf-b/b1']").await;
    let live = browser
        .wait_for(
            WAIT,
            "B's camera live through A",
            "const i = document.querySelector('#live-img');
             return { src: i.getAttribute('src'), width: i.naturalWidth };",
            |v| v["width"].as_u64() > Some(0),
        )
        .await;
    assert_eq!(live["src"], "gateways/shelf-b/cameras/b1/stream", "{live}");
    browser.click("#live-close").await;

    // B goes down: its tile says so; A's keeps refreshing.
    drop(b);
    browser
        .wait_for(WAIT, "B's tile unreachable", TILES, |v| {
            tile(v, "shelf-b/b1")["badge"] == "unreachable"
        })
        .await;
    let src = "return document.querySelector('article[data-camera=a1] img').src;";
    let before = browser.eval(src).await;
    browser
        .wait_for(WAIT, "A's tile still refreshing", src, |v| *v != before)
        .await;
    assert_eq!(tile(&browser.eval(TILES).await, "a1")["badge"], "live");

    // B comes back on its address: its tile is live again.
    let _b = Daemon::start(&b_config);
    browser
        .wait_for(WAIT, "B's tile back", TILES, |v| {
            tile(v, "shelf-b/b1")["badge"] == "live"
        })
        .await;
    browser.quit().await;
}

/// The live view plays an H.264 camera over WebRTC (the camera's own video, no decoder for it)
/// and says so; when WebRTC fails (here: the one session this client may have is taken) it plays
/// MJPEG and says why; a camera without H.264 plays MJPEG; a camera that sends pictures, with an
/// encoder, plays over WebRTC (issue 41).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_view_plays_h264_over_webrtc_and_falls_back_to_mjpeg() {
    let server = common::rtsp::RtspServer::start(common::rtsp::RtspOptions::default());
    let d = Daemon::start(&config(
        "",
        &format!(
            "[webrtc]\nlisten = \"127.0.0.1:0\"\nmax_sessions_per_client = 1\n\
             [[camera]]\nid = \"h264\"\nname = \"Bambu X1C\"\nsource = \"{}\"\nidle_grace = \"2s\"\n\
             [[camera]]\nid = \"pattern\"\nsource = \"test:\"\nsize = \"320x180\"\nfps = 5\n\
             [[camera]]\nid = \"encoded\"\nsource = \"test:\"\nsize = \"320x180\"\nfps = 15\n\
             h264_encoder = \"software\"\nidle_grace = \"2s\"\n",
            server.url()
        ),
    ));
    let cams = d.cameras_json().await;
    let h264 = cams
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "h264")
        .unwrap();
    assert_eq!(
        h264["webrtc_url"],
        format!("http://{}/cameras/h264/webrtc", d.main),
        "{h264}"
    );
    assert!(cams[1]["webrtc_url"].is_null(), "{cams}");
    let browser = Browser::start(1280, 900).await;
    browser.goto(&format!("http://{}/", d.main)).await;
    browser
        .wait_for(WAIT, "tiles", TILES, |v| {
            v.as_array().is_some_and(|t| t.len() == 3)
        })
        .await;
    const LIVE: &str = "const v = document.querySelector('#live-video'),
            i = document.querySelector('#live-img');
        return { mode: document.querySelector('#live-mode').textContent,
                 frames: v.hidden ? 0 : v.getVideoPlaybackQuality().totalVideoFrames,
                 width: v.videoWidth, imgWidth: i.hidden ? 0 : i.naturalWidth };";

    browser.click("article[data-camera=h264]").await;
    let live = browser
        .wait_for(Duration::from_secs(45), "WebRTC playing", LIVE, |v| {
            v["frames"].as_u64() > Some(10)
        })
        .await;
    assert_eq!(live["width"], 320, "{live}");
    assert!(live["mode"].as_str().unwrap().starts_with("WebRTC ("), "{live}");
    let cam = d
        .wait_for("h264", WAIT, |c| c["viewers_by_kind"]["webrtc"] == 1)
        .await;
    assert_eq!(cam["viewers_by_kind"]["mjpeg"], 0, "{cam}");
    browser.click("#live-close").await;
    d.wait_for("h264", WAIT, |c| {
        c["webrtc_sessions"].as_array().is_some_and(|s| s.is_empty())
    })
    .await;

    // The test pattern with the software encoder: H.264 over WebRTC, encoded while watched.
    browser.click("article[data-camera=encoded]").await;
    let live = browser
        .wait_for(
            Duration::from_secs(45),
            "the encoded pattern playing",
            LIVE,
            |v| v["frames"].as_u64() > Some(10),
        )
        .await;
    assert_eq!(live["width"], 320, "{live}");
    assert!(live["mode"].as_str().unwrap().starts_with("WebRTC ("), "{live}");
    let cam = d.wait_for("encoded", WAIT, |c| c["encoder"] == "libx264").await;
    assert_eq!(cam["viewers_by_kind"]["webrtc"], 1, "{cam}");
    browser.click("#live-close").await;
    d.wait_for("encoded", WAIT, |c| {
        c["encoder"].is_null() && c["webrtc_sessions"].as_array().is_some_and(|s| s.is_empty())
    })
    .await;

    // The one session this client may have is taken (signalled, never answered): the live view
    // falls back to MJPEG and says why.
    let body = r#"{"type":"request"}"#;
    let taken = common::request(
        d.main,
        &format!(
            "POST /cameras/h264/webrtc HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    )
    .await;
    assert_eq!(taken.status, 200);
    browser.click("article[data-camera=h264]").await;
    let live = browser
        .wait_for(WAIT, "MJPEG after WebRTC failed", LIVE, |v| {
            v["imgWidth"].as_u64() > Some(0)
        })
        .await;
    let mode = live["mode"].as_str().unwrap();
    assert!(
        mode.starts_with("MJPEG (WebRTC failed:") && mode.contains("max_sessions_per_client"),
        "{live}"
    );
    d.wait_for("h264", WAIT, |c| c["viewers_by_kind"]["mjpeg"] == 1)
        .await;
    browser.click("#live-close").await;

    browser.click("article[data-camera=pattern]").await;
    let live = browser
        .wait_for(WAIT, "the pattern's MJPEG", LIVE, |v| {
            v["imgWidth"].as_u64() > Some(0)
        })
        .await;
    assert_eq!(live["mode"], "MJPEG", "{live}");
    browser.click("#live-close").await;

    browser.quit().await;
}
