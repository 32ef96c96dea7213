//! Farm timelapses (issue 42): started and stopped through the API on a `test:` camera, pictures
//! spooled as they come, the video rendered (ffprobe reads H.264 with one frame per picture and
//! the held ones, at the camera's size) and served with Range requests; a recording farmcam did
//! not finish (killed) rendered at the next start; the budget removing the oldest video; a disk
//! below `min_free` taking no pictures and losing no video.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{config, eventually, get, request, Daemon};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(60);

fn farm(dir: &Path, extra: &str) -> Daemon {
    Daemon::start(&config(
        "",
        &format!(
            "[timelapse]\ndir = \"{}\"\ninterval = \"500ms\"\nfps = 10\nhold = \"1s\"\n{extra}\n\
             [[camera]]\nid = \"cam\"\nsource = \"test:\"\nsize = \"320x240\"\nfps = 10\n",
            dir.display()
        ),
    ))
}

async fn post(d: &Daemon, path: &str) -> (u16, Value) {
    let r = request(
        d.main,
        &format!("POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
    )
    .await;
    (r.status, serde_json::from_slice(&r.body).unwrap_or(Value::Null))
}

async fn list(d: &Daemon) -> Vec<Value> {
    let r = get(d.main, "/api/timelapses").await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    serde_json::from_slice::<Value>(&r.body)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

/// Wait until the timelapse `name` satisfies `ok`.
async fn wait_for(d: &Daemon, name: &str, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    common::eventually_async(WAIT, &format!("timelapse {name}: {what}"), || async {
        list(d).await.into_iter().find(|t| t["name"] == name && ok(t))
    })
    .await
}

/// What ffprobe says of a video: codec, size and the frames it decodes.
fn probe(path: &Path) -> String {
    let out = std::process::Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v", "-count_frames"])
        .args([
            "-show_entries",
            "stream=codec_name,width,height,nb_read_frames",
            "-of",
            "csv=p=0",
        ])
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timelapse_started_and_stopped_through_the_api_is_rendered_and_served() {
    let dir = tempfile::tempdir().unwrap();
    let d = farm(dir.path(), "");
    let (status, started) = post(&d, "/cameras/cam/timelapse/start?printer=voron&file=benchy.gcode").await;
    assert_eq!(status, 200, "{started}");
    assert_eq!(started["state"], "recording", "{started}");
    let name = started["name"].as_str().unwrap().to_string();
    assert!(
        name.starts_with("voron_benchy_") && name.ends_with("_cam"),
        "{name}"
    );
    // Starting again while it records: the same timelapse.
    let (_, again) = post(&d, "/cameras/cam/timelapse/start").await;
    assert_eq!(again["name"], name);
    // Pictures spool as they come.
    let rec = wait_for(&d, &name, "6 pictures", |t| t["pictures"].as_u64() >= Some(6)).await;
    assert_eq!(rec["state"], "recording");
    let cam = d.camera("cam").await;
    assert_eq!(cam["timelapse"]["recording"], true, "{cam}");
    let spooled = std::fs::read_dir(dir.path().join(format!("{name}.spool")))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "jpg"))
        .count();
    assert!(spooled >= 6, "{spooled} pictures on disk");
    let (status, stopped) = post(&d, "/cameras/cam/timelapse/stop?outcome=complete").await;
    assert_eq!(status, 200, "{stopped}");
    let (status, _) = post(&d, "/cameras/cam/timelapse/stop").await;
    assert_eq!(status, 409, "not recording any more");
    let ready = wait_for(&d, &name, "the video", |t| t["state"] == "ready").await;
    let pictures = ready["pictures"].as_u64().unwrap();
    assert!(pictures >= 6, "{ready}");
    assert_eq!(ready["outcome"], "complete");
    assert_eq!(ready["printer"], "voron");
    assert_eq!(ready["file"], "benchy.gcode");
    assert_eq!(ready["url"], format!("/timelapses/{name}.mp4"));
    // One frame per picture at 10 fps, then the last held for a second (10 more).
    let video = dir.path().join(format!("{name}.mp4"));
    assert_eq!(probe(&video), format!("h264,320,240,{}", pictures + 10));
    assert!(
        !dir.path().join(format!("{name}.spool")).exists(),
        "pictures removed once the video exists"
    );
    let size = std::fs::metadata(&video).unwrap().len();
    assert_eq!(ready["size"], size);
    let cam = d.camera("cam").await;
    assert_eq!(cam["timelapse"]["recording"], false, "{cam}");
    assert_eq!(cam["timelapse"]["latest_name"], name.as_str(), "{cam}");
    assert_eq!(
        cam["timelapse"]["latest_url"],
        format!("http://{}/timelapses/{name}.mp4", d.main)
    );

    // Served: whole, and by ranges as browsers and Home Assistant ask.
    let url = ready["url"].as_str().unwrap();
    let whole = get(d.main, url).await;
    assert_eq!(whole.status, 200);
    assert_eq!(whole.header("content-type"), Some("video/mp4"));
    assert_eq!(whole.header("accept-ranges"), Some("bytes"));
    assert_eq!(whole.body, std::fs::read(&video).unwrap());
    let ranged = |r: &str| {
        let raw = format!("GET {url} HTTP/1.1\r\nHost: x\r\nRange: {r}\r\nConnection: close\r\n\r\n");
        async move { request(d.main, &raw).await }
    };
    let part = ranged("bytes=100-199").await;
    assert_eq!(part.status, 206);
    assert_eq!(
        part.header("content-range"),
        Some(format!("bytes 100-199/{size}").as_str())
    );
    assert_eq!(part.body, whole.body[100..200]);
    let tail = ranged("bytes=-50").await;
    assert_eq!(
        (tail.status, &tail.body[..]),
        (206, &whole.body[size as usize - 50..])
    );
    let beyond = ranged(&format!("bytes={size}-")).await;
    assert_eq!(beyond.status, 416);
    assert_eq!(
        beyond.header("content-range"),
        Some(format!("bytes */{size}").as_str())
    );

    // Deleted: gone from the list and the disk.
    let del = request(
        d.main,
        &format!("DELETE /api/timelapses/{name} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
    )
    .await;
    assert_eq!(del.status, 200, "{}", String::from_utf8_lossy(&del.body));
    assert!(list(&d).await.is_empty());
    assert!(!video.exists());
    assert_eq!(get(d.main, url).await.status, 404);
    // Nothing named otherwise is served or deleted.
    assert_eq!(get(d.main, "/timelapses/..%2Ffarmcam.toml.mp4").await.status, 400);
    let (status, body) = post(&d, "/cameras/nope/timelapse/start").await;
    assert_eq!(status, 404, "{body}");
}

/// farmcam killed while it records: at the next start the pictures spooled so far become the
/// video (`interrupted`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recording_cut_by_a_crash_is_rendered_at_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = farm(dir.path(), "");
    let (_, started) = post(&d, "/cameras/cam/timelapse/start").await;
    let name = started["name"].as_str().unwrap().to_string();
    wait_for(&d, &name, "4 pictures", |t| t["pictures"].as_u64() >= Some(4)).await;
    d.signal(libc::SIGKILL);
    d.wait_exit(WAIT).expect("killed");
    let d = farm(dir.path(), "");
    let ready = wait_for(&d, &name, "the video after the restart", |t| {
        t["state"] == "ready"
    })
    .await;
    assert_eq!(ready["outcome"], "interrupted", "{ready}");
    let pictures = ready["pictures"].as_u64().unwrap();
    assert!(pictures >= 4, "{ready}");
    assert_eq!(
        probe(&dir.path().join(format!("{name}.mp4"))),
        format!("h264,320,240,{}", pictures + 10)
    );
    d.logged("farmcam stopped while it recorded").await;
}

/// The budget: a new video that takes the directory over `max_size` removes the oldest, said in
/// the log. A disk with less than `min_free` takes no pictures (said once) and loses no video.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_budget_removes_the_oldest_and_a_full_disk_stops_spooling() {
    let dir = tempfile::tempdir().unwrap();
    // Two old videos of 1 MiB each, as an earlier farmcam left them.
    for (name, started) in [("old_1", 1_000), ("old_2", 2_000)] {
        std::fs::write(dir.path().join(format!("{name}.mp4")), vec![0u8; 1 << 20]).unwrap();
        std::fs::write(
            dir.path().join(format!("{name}.json")),
            format!("{{\"name\":\"{name}\",\"camera\":\"cam\",\"trigger\":\"api\",\"started\":{started},\"pictures\":10}}"),
        )
        .unwrap();
    }
    let d = farm(dir.path(), "max_size = \"2MiB\"\n");
    assert_eq!(list(&d).await.len(), 2);
    let (_, started) = post(&d, "/cameras/cam/timelapse/start").await;
    let name = started["name"].as_str().unwrap().to_string();
    wait_for(&d, &name, "2 pictures", |t| t["pictures"].as_u64() >= Some(2)).await;
    post(&d, "/cameras/cam/timelapse/stop").await;
    wait_for(&d, &name, "the video", |t| t["state"] == "ready").await;
    eventually(WAIT, "the oldest removed", || {
        (!dir.path().join("old_1.mp4").exists()).then_some(())
    })
    .await;
    assert!(
        dir.path().join("old_2.mp4").exists(),
        "only as much as needed is removed"
    );
    d.logged("timelapse old_1: removed").await;
    drop(d);

    // A disk "full" for farmcam: min_free above what is free.
    let d = farm(dir.path(), "min_free = \"1000TiB\"\n");
    let before = list(&d).await;
    let (_, started) = post(&d, "/cameras/cam/timelapse/start").await;
    let name = started["name"].as_str().unwrap().to_string();
    eventually(WAIT, "the full disk said", || {
        d.log_text().contains("not taking pictures").then_some(())
    })
    .await;
    let rec = wait_for(&d, &name, "recording", |t| t["state"] == "recording").await;
    assert_eq!(rec["pictures"], 0, "{rec}");
    post(&d, "/cameras/cam/timelapse/stop").await;
    eventually(WAIT, "the empty recording dropped", || {
        d.log_text().contains("no pictures were taken").then_some(())
    })
    .await;
    assert_eq!(
        d.log_text().matches("not taking pictures").count(),
        1,
        "said once"
    );
    let after = list(&d).await;
    assert_eq!(after, before, "no video lost, nothing added");
}

/// Without `[timelapse]`, the API says how to turn timelapses on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timelapses_off_say_how_to_turn_them_on() {
    let d = Daemon::start(&config("", "[[camera]]\nid = \"cam\"\nsource = \"test:\"\n"));
    let r = get(d.main, "/api/timelapses").await;
    assert_eq!(r.status, 404);
    assert!(String::from_utf8_lossy(&r.body).contains("[timelapse]"));
}

/// A Klipper printer: Moonraker's `print_stats` (over its websocket) starts the timelapse when
/// the print starts, takes a picture per layer, goes on through a lost connection, and stops it
/// with the print's outcome.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_klipper_print_is_recorded_layer_by_layer() {
    let dir = tempfile::tempdir().unwrap();
    let m = common::fake_moonraker::FakeMoonraker::start().await;
    let d = Daemon::start(&config(
        "",
        &format!(
            "[timelapse]\ndir = \"{}\"\ninterval = \"1h\"\nfps = 10\nhold = \"0s\"\n\
             [[camera]]\nid = \"cam\"\nsource = \"test:\"\nsize = \"320x240\"\nfps = 10\n\
             [[moonraker]]\nurl = \"{}\"\nname = \"voron\"\ncameras = [\"cam\"]\nfarmcam_url = \"http://127.0.0.1:1\"\n",
            dir.path().display(),
            m.url()
        ),
    ));
    eventually(WAIT, "farmcam subscribed to print_stats", || {
        (m.subscriptions() == 1).then_some(())
    })
    .await;
    assert!(list(&d).await.is_empty(), "nothing printing, nothing recorded");
    m.update(serde_json::json!({ "state": "printing", "filename": "benchy.gcode", "info": { "current_layer": 1 } }));
    let name = common::eventually_async(WAIT, "the print's timelapse", || async {
        list(&d)
            .await
            .first()
            .map(|t| t["name"].as_str().unwrap().to_string())
    })
    .await;
    assert!(
        name.starts_with("voron_benchy_") && name.ends_with("_cam"),
        "{name}"
    );
    let t = wait_for(&d, &name, "the first pictures", |t| {
        t["pictures"].as_u64() >= Some(1)
    })
    .await;
    assert_eq!(t["trigger"], "moonraker");
    // One picture per layer (the interval is an hour).
    for layer in 2..=5u64 {
        let before = wait_for(&d, &name, "pictures", |_| true).await["pictures"]
            .as_u64()
            .unwrap();
        m.update(serde_json::json!({ "info": { "current_layer": layer } }));
        wait_for(&d, &name, "a picture for the layer", |t| {
            t["pictures"].as_u64() > Some(before)
        })
        .await;
    }
    // Moonraker restarts mid-print: farmcam subscribes again, the recording goes on.
    m.drop_connections();
    eventually(WAIT, "subscribed again", || {
        (m.subscriptions() >= 2).then_some(())
    })
    .await;
    let before = wait_for(&d, &name, "still recording", |t| t["state"] == "recording").await["pictures"]
        .as_u64()
        .unwrap();
    m.update(serde_json::json!({ "info": { "current_layer": 6 } }));
    wait_for(&d, &name, "a picture after the reconnect", |t| {
        t["pictures"].as_u64() > Some(before)
    })
    .await;
    m.update(serde_json::json!({ "state": "complete" }));
    let ready = wait_for(&d, &name, "the video", |t| t["state"] == "ready").await;
    assert_eq!(ready["outcome"], "complete");
    assert_eq!(ready["printer"], "voron");
    assert_eq!(ready["file"], "benchy.gcode");
    let pictures = ready["pictures"].as_u64().unwrap();
    assert!(
        (6..=8).contains(&pictures),
        "a picture at the start and one per layer: {ready}"
    );
    assert_eq!(
        probe(&dir.path().join(format!("{name}.mp4"))),
        format!("h264,320,240,{pictures}")
    );
}

/// The wall shows each camera's latest timelapse as a link that plays it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wall_links_each_cameras_latest_timelapse() {
    let dir = tempfile::tempdir().unwrap();
    let d = farm(dir.path(), "");
    let (_, started) = post(&d, "/cameras/cam/timelapse/start").await;
    let name = started["name"].as_str().unwrap().to_string();
    wait_for(&d, &name, "2 pictures", |t| t["pictures"].as_u64() >= Some(2)).await;
    post(&d, "/cameras/cam/timelapse/stop").await;
    wait_for(&d, &name, "the video", |t| t["state"] == "ready").await;
    let browser = common::webdriver::Browser::start(1024, 768).await;
    browser.goto(&format!("http://{}/", d.main)).await;
    let link = browser
        .wait_for(
            WAIT,
            "the timelapse link",
            "const a = document.querySelector('article[data-camera=cam] .tl');
             return a && !a.hidden ? a.href : null;",
            |v| v.is_string(),
        )
        .await;
    assert_eq!(link, format!("http://{}/timelapses/{name}.mp4", d.main));
    // It plays: the browser reads the video's length.
    let duration = browser
        .eval(&format!(
            "return await new Promise(ok => {{ const v = document.createElement('video');
               v.onloadedmetadata = () => ok(v.duration); v.onerror = () => ok(-1);
               v.src = '/timelapses/{name}.mp4'; }});"
        ))
        .await;
    assert!(duration.as_f64().is_some_and(|s| s > 0.0), "{duration}");
    browser.quit().await;
}

/// A render that fails (here: no ffmpeg where `[ffmpeg] path` says) is said with its reason, its
/// pictures are kept, and it is made when farmcam starts again with a working ffmpeg.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_render_is_said_and_its_pictures_kept_until_it_works() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = farm(dir.path(), "[ffmpeg]\npath = \"/nonexistent/ffmpeg\"\n");
    let (_, started) = post(&d, "/cameras/cam/timelapse/start").await;
    let name = started["name"].as_str().unwrap().to_string();
    wait_for(&d, &name, "3 pictures", |t| t["pictures"].as_u64() >= Some(3)).await;
    post(&d, "/cameras/cam/timelapse/stop").await;
    let failed = wait_for(&d, &name, "the render failed", |t| t["state"] == "failed").await;
    let why = failed["error"].as_str().unwrap();
    assert!(
        why.contains("ffmpeg not found") && why.contains("[ffmpeg] path"),
        "{failed}"
    );
    d.logged("its pictures are kept and it is tried again").await;
    let pictures = failed["pictures"].as_u64().unwrap();
    assert!(dir
        .path()
        .join(format!("{name}.spool/{pictures:06}.jpg"))
        .is_file());
    d.signal(libc::SIGTERM);
    d.wait_exit(WAIT).expect("stopped");
    let d = farm(dir.path(), "");
    let ready = wait_for(&d, &name, "the video at the next start", |t| {
        t["state"] == "ready"
    })
    .await;
    assert_eq!(ready["pictures"], pictures);
    assert_eq!(ready["outcome"], "stopped");
}

/// `[timelapse]` changed by a reload is said to take effect at the next restart (recordings go
/// on as they are).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_says_timelapse_settings_wait_for_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let d = farm(dir.path(), "");
    let path = d.config_path();
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("interval = \"500ms\"", "interval = \"2s\"");
    std::fs::write(&path, text).unwrap();
    d.signal(libc::SIGHUP);
    eventually(WAIT, "the reload said", || {
        d.log_text()
            .contains("reload: changes to [timelapse] take effect when farmcam restarts")
            .then_some(())
    })
    .await;
}
