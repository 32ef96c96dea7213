//! Prusa Connect uploads against a faithful fake of its camera API (tests/common/prusa_connect.rs,
//! HTTPS with a test CA): snapshots arrive at the interval with the documented headers and the
//! asked size, the camera info follows, the derived fingerprint survives a restart, a refused
//! token or fingerprint is said once and retried slowly until fixed by a reload, the service
//! going down and coming back is survived, an offline camera uploads nothing, and the token is
//! on no surface.

mod common;

use std::time::Duration;

use common::prusa_connect::FakePrusa;
use common::rtsp::{RtspOptions, RtspServer};
use common::{config, get, Daemon, BIN, LIVE_WAIT};

const WAIT: Duration = Duration::from_secs(60);
const TOKEN: &str = "Tok3nMK4aaaaBBBBccccDDDD";
const TOKEN_XL: &str = "Tok3nXLzzzzYYYYxxxxWWWW";

/// Wait until the fake holds at least `n` snapshots taken with `token`.
async fn snapshots(fake: &FakePrusa, token: &str, n: usize) -> Vec<common::prusa_connect::Seen> {
    common::eventually(WAIT, &format!("{n} snapshot(s) with {token}"), || {
        let s = fake.snapshots(token);
        (s.len() >= n).then_some(s)
    })
    .await
}

async fn metrics(d: &Daemon) -> String {
    String::from_utf8_lossy(&get(d.main, "/metrics").await.body).to_string()
}

/// Every surface farmcam shows: the log, the status, the metrics and `farmcam check`.
async fn surfaces(d: &Daemon) -> String {
    let check = std::process::Command::new(BIN)
        .args(["check", "--config"])
        .arg(d.config_path())
        .output()
        .unwrap();
    format!(
        "{}\n{}\n{}\n{}{}",
        d.log_text(),
        d.cameras_json().await,
        metrics(d).await,
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_arrive_at_the_interval_with_the_documented_headers_and_size() {
    let fake = FakePrusa::start(&[TOKEN, TOKEN_XL]);
    let cfg = config(
        "",
        &format!(
            "{}[[camera]]\nid = \"mk4\"\nname = \"MK4 left\"\nsource = \"test:\"\nsize = \"640x480\"\n\
             [camera.prusa_connect]\ntoken = \"{TOKEN}\"\ninterval = \"2s\"\nwidth = 320\n\
             [[camera]]\nid = \"xl\"\nsource = \"test:\"\nsize = \"640x480\"\n\
             [camera.prusa_connect]\ntoken = \"{TOKEN_XL}\"\nfingerprint = \"xl-0123456789abcdef\"\ninterval = \"3s\"\n\
             [[camera]]\nid = \"other\"\nsource = \"test:\"\n",
            fake.config()
        ),
    );
    let mut d = Daemon::start(&cfg);
    let mk4 = snapshots(&fake, TOKEN, 3).await;
    let xl = snapshots(&fake, TOKEN_XL, 2).await;
    let fingerprint = mk4[0].fingerprint.clone().unwrap();
    assert!(
        fingerprint.starts_with("farmcam-") && fingerprint.len() == 40,
        "derived: {fingerprint}"
    );
    for s in &mk4 {
        assert_eq!(
            (s.method.as_str(), s.content_type.as_deref()),
            ("PUT", Some("image/jpg"))
        );
        assert_eq!(s.fingerprint.as_deref(), Some(fingerprint.as_str()));
        assert_eq!(s.size, Some((320, 240)), "scaled to width = 320");
    }
    for s in &xl {
        assert_eq!(s.fingerprint.as_deref(), Some("xl-0123456789abcdef"));
        assert_eq!(s.size, Some((640, 480)), "the camera's own size");
    }
    // At the interval: never faster (an upload may come late, so the bound is half of it).
    for w in mk4.windows(2) {
        let gap = w[1].at - w[0].at;
        assert!(gap >= Duration::from_secs(1), "{gap:?} between uploads every 2 s");
    }
    // The camera info call, once per picture size: the camera's name and the size uploaded.
    let infos: Vec<_> = fake
        .seen()
        .into_iter()
        .filter(|s| s.path == "/c/info" && s.token.as_deref() == Some(TOKEN))
        .collect();
    assert_eq!(infos.len(), 1, "{infos:?}");
    let info = infos[0].info.as_ref().unwrap();
    assert_eq!(info["config"]["name"], "MK4 left");
    assert_eq!(info["config"]["resolution"]["width"], 320);
    assert_eq!(info["config"]["resolution"]["height"], 240);
    assert!(
        fake.seen().iter().all(|s| s.status == 204),
        "the fake took everything: {:?}",
        fake.seen()
    );

    // The fake answers before farmcam counts the upload: wait for the count, do not read it once.
    let c = d
        .wait_for("mk4", Duration::from_secs(30), |c| {
            c["prusa_connect"]["attempts"]["ok"].as_u64() >= Some(3)
        })
        .await;
    let p = &c["prusa_connect"];
    assert_eq!(p["last_result"], "ok", "{c}");
    assert_eq!(p["fingerprint"], fingerprint.as_str());
    assert_eq!(p["interval_ms"], 2000);
    assert!(p["last_upload"].as_f64().unwrap() > 1e9, "{p}");
    assert!(p["attempts"]["ok"].as_u64().unwrap() >= 3, "{p}");
    assert!(d.camera("other").await["prusa_connect"].is_null());
    let m = metrics(&d).await;
    let ok = m
        .lines()
        .find(|l| l.starts_with("farmcam_prusa_connect_attempts_total{camera=\"mk4\",result=\"ok\"}"))
        .unwrap_or_else(|| panic!("{m}"));
    assert!(
        ok.split(' ').nth(1).unwrap().parse::<f64>().unwrap() >= 3.0,
        "{ok}"
    );
    assert!(m.contains("farmcam_prusa_connect_attempts_total{camera=\"xl\",result=\"refused\"} 0"));
    assert!(!m.contains("camera=\"other\",result"), "only cameras that upload");

    let shown = surfaces(&d).await;
    assert!(
        shown.contains(&fingerprint) && shown.contains("prusa connect"),
        "the surfaces talk about it"
    );
    assert!(
        shown.contains(&format!(
            "prusa connect mk4: a snapshot every 2s, 320 wide to https://127.0.0.1:{}",
            fake.port
        )),
        "farmcam check says it: {shown}"
    );
    for token in [TOKEN, TOKEN_XL] {
        assert!(!shown.contains(token), "{token} is shown");
    }

    // The derived fingerprint is the same after a restart: Prusa Connect, which tied the token
    // to it at the first upload, keeps taking snapshots (the fake answers 409 otherwise).
    let before = fake.snapshots(TOKEN).len();
    d.signal(libc::SIGTERM);
    assert!(d.wait_exit(Duration::from_secs(10)).is_some());
    let _d = Daemon::start(&cfg);
    snapshots(&fake, TOKEN, before + 1).await;
    assert!(fake.seen().iter().all(|s| s.status == 204), "{:?}", fake.seen());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_token_is_said_once_and_retried_slowly_until_a_reload_fixes_it() {
    const WRONG: &str = "WrongTokenQQQQrrrrSSSS";
    let fake = FakePrusa::start(&[TOKEN]);
    let d = Daemon::start(&config(
        "",
        &format!(
            "{}[[camera]]\nid = \"mk4\"\nsource = \"test:\"\n\
             [camera.prusa_connect]\ntoken = \"{WRONG}\"\ninterval = \"1s\"\n",
            fake.config()
        ),
    ));
    // Edit the file farmcam runs with, as a user would, and reload.
    let edit = |from: &str, to: &str| {
        let text = std::fs::read_to_string(d.config_path()).unwrap();
        assert!(text.contains(from));
        std::fs::write(d.config_path(), text.replace(from, to)).unwrap();
        d.signal(libc::SIGHUP);
    };
    let c = d
        .wait_for("mk4", WAIT, |c| c["prusa_connect"]["last_result"] == "refused")
        .await;
    let p = &c["prusa_connect"];
    // Retried slowly: the next try is minutes away, not at the 1 s interval.
    assert!(p["next_attempt_in_ms"].as_u64().unwrap() > 60_000, "{p}");
    let error = p["last_error"].as_str().unwrap();
    assert!(
        error.contains("refused the token (401") && error.contains("Add new other camera"),
        "{error}"
    );
    let said: Vec<String> = d
        .log_text()
        .lines()
        .filter(|l| l.contains("refused the token"))
        .map(String::from)
        .collect();
    assert_eq!(said.len(), 1, "said once: {said:?}");
    assert!(said[0].contains("retrying every 5m"), "{said:?}");
    let tried: Vec<_> = fake
        .seen()
        .into_iter()
        .filter(|s| s.path == "/c/snapshot")
        .collect();
    assert_eq!(tried.len(), 1, "one refused upload, then a slow retry: {tried:?}");
    assert_eq!(tried[0].status, 401);

    // The user copies the right token and reloads: uploads start at once.
    edit(WRONG, TOKEN);
    snapshots(&fake, TOKEN, 2).await;
    let c = d
        .wait_for("mk4", WAIT, |c| c["prusa_connect"]["last_result"] == "ok")
        .await;
    assert!(c["prusa_connect"]["last_error"].is_null(), "{c}");
    // A new token does not restart the camera.
    d.logged("reload: 1 camera(s) unchanged, 0 added, 0 restarted, 0 removed")
        .await;
    let log = d.log_text();
    assert!(!log.contains("take effect when farmcam restarts"), "{log}");

    // A fingerprint other than the one the token was first used with: Prusa Connect answers 409.
    edit(
        "interval = \"1s\"\n",
        "interval = \"1s\"\nfingerprint = \"another-fingerprint-0001\"\n",
    );
    let c = d
        .wait_for("mk4", WAIT, |c| c["prusa_connect"]["last_result"] == "refused")
        .await;
    let error = c["prusa_connect"]["last_error"].as_str().unwrap().to_string();
    assert!(
        error.contains("refused the fingerprint another-fingerprint-0001 (409"),
        "{error}"
    );
    assert!(error.contains("first used with another one"), "{error}");
    let shown = surfaces(&d).await;
    for token in [TOKEN, WRONG] {
        assert!(!shown.contains(token), "{token} is shown");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prusa_connect_going_down_and_coming_back_is_survived() {
    let mut fake = FakePrusa::start(&[TOKEN]);
    let d = Daemon::start(&config(
        "",
        &format!(
            "{}[[camera]]\nid = \"mk4\"\nsource = \"test:\"\n\
             [camera.prusa_connect]\ntoken = \"{TOKEN}\"\ninterval = \"1s\"\n",
            fake.config()
        ),
    ));
    snapshots(&fake, TOKEN, 2).await;
    fake.down();
    let failed =
        |n: u64| move |c: &serde_json::Value| c["prusa_connect"]["attempts"]["failed"].as_u64() >= Some(n);
    d.wait_for("mk4", WAIT, failed(3)).await;
    let third = std::time::Instant::now();
    let c = d.wait_for("mk4", WAIT, failed(4)).await;
    // Backing off: at the 1 s interval the fourth try would follow the third within a second;
    // doubling, it waits 4 s or more. (A lower bound: a slow machine only makes it longer.)
    let gap = third.elapsed();
    assert!(
        gap >= std::time::Duration::from_secs(2),
        "tries {gap:?} apart while down"
    );
    let p = &c["prusa_connect"];
    assert_eq!(p["last_result"], "failed", "{p}");
    let error = p["last_error"].as_str().unwrap();
    assert!(
        error.starts_with(&format!("cannot upload to https://127.0.0.1:{}", fake.port)),
        "{error}"
    );
    let before = fake.snapshots(TOKEN).len();
    fake.up();
    snapshots(&fake, TOKEN, before + 2).await;
    let c = d
        .wait_for("mk4", WAIT, |c| c["prusa_connect"]["last_result"] == "ok")
        .await;
    assert!(c["prusa_connect"]["last_error"].is_null(), "{c}");
    let said = d
        .log_text()
        .lines()
        .filter(|l| l.contains("cannot upload to") && l.contains("WARN"))
        .count();
    assert!(said >= 1, "the outage was said: {}", d.log_text());
    assert!(!d.log_text().contains(TOKEN));
}

/// A camera that is down gives no picture: nothing is uploaded (not the "offline" placeholder),
/// and nothing is even sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offline_camera_uploads_nothing() {
    let fake = FakePrusa::start(&[TOKEN]);
    let closed = common::proc::free_port();
    let d = Daemon::start(&config(
        "",
        &format!(
            "{}[[camera]]\nid = \"down\"\nsource = \"rtsp://127.0.0.1:{closed}/stream\"\nsnapshot_timeout = \"1s\"\n\
             [camera.prusa_connect]\ntoken = \"{TOKEN}\"\ninterval = \"1s\"\n",
            fake.config()
        ),
    ));
    let c = d
        .wait_for("down", WAIT, |c| {
            c["prusa_connect"]["attempts"]["offline"].as_u64() >= Some(2)
        })
        .await;
    assert_eq!(c["prusa_connect"]["last_result"], "offline", "{c}");
    assert!(c["prusa_connect"]["last_upload"].is_null(), "{c}");
    assert!(fake.seen().is_empty(), "nothing sent: {:?}", fake.seen());
}

/// Uploads every 3 s keep an H.264 camera connected in between (cheaper than reconnecting),
/// and status says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_declare_their_interval_to_the_camera() {
    let fake = FakePrusa::start(&[TOKEN]);
    let server = RtspServer::start(RtspOptions::default());
    let d = Daemon::start(&config(
        "",
        &format!(
            "{}[[camera]]\nid = \"cam\"\nsource = \"{}\"\nidle_grace = \"1s\"\n\
             [camera.prusa_connect]\ntoken = \"{TOKEN}\"\ninterval = \"3s\"\n",
            fake.config(),
            server.url()
        ),
    ));
    snapshots(&fake, TOKEN, 1).await;
    let c = d
        .wait_for("cam", LIVE_WAIT, |c| {
            c["consumers"] == 0 && !c["kept_for"].is_null()
        })
        .await;
    assert_eq!(c["kept_for"], "prusa-connect every 3s", "{c}");
    snapshots(&fake, TOKEN, 3).await;
    let c = d.camera("cam").await;
    assert_eq!(c["upstream_opens"], 1, "connected once: {c}");
}
