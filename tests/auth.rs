//! Opt-in access control: `[http.auth]` users (Basic) and tokens (header or `?token=`), open areas
//! and open listeners, `allowed_hosts`, `allowed_origins`; and that no credential reaches the log.

mod common;

use std::process::Command;

use common::proc::free_port;
use common::{basic_credentials as basic, config, hash_password as hash, request, Daemon, BIN};

const PASSWORD: &str = "Wall#Pass/2026";
const TOKEN: &str = "0123456789abcdef-token-for-ha";

async fn status(addr: std::net::SocketAddr, path: &str, headers: &str) -> (u16, common::Response) {
    let r = request(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{headers}\r\n"),
    )
    .await;
    (r.status, r)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_and_tokens_guard_what_is_not_open() {
    let open_port = free_port();
    let d = Daemon::start_with_log(
        &format!(
            "[http]\nlisten = [\"127.0.0.1:0\", \"127.0.0.1:{open_port}\"]\n\
             [http.auth]\ntokens = [\"{TOKEN}\"]\nopen = [\"wall\"]\nopen_listeners = [{{ listen = \"127.0.0.1:{open_port}\", areas = [\"api\", \"streams\"] }}]\n\
             [[http.auth.users]]\nname = \"farm\"\npassword_hash = \"{}\"\n\
             [[camera]]\nid = \"cam\"\nsource = \"test:\"\nsize = \"160x120\"\n",
            hash(PASSWORD)
        ),
        "debug",
    );
    let good = format!("Authorization: Basic {}\r\n", basic("farm", PASSWORD));
    let wrong = format!("Authorization: Basic {}\r\n", basic("farm", "Wall#Pass"));
    let bearer = format!("Authorization: Bearer {TOKEN}\r\n");
    for path in [
        "/api/cameras",
        "/cameras/cam/snapshot",
        "/metrics",
        "/?action=snapshot",
    ] {
        let (code, r) = status(d.main, path, "").await;
        assert_eq!(code, 401, "{path}");
        assert!(
            r.header("www-authenticate")
                .is_some_and(|c| c.starts_with("Basic")),
            "{path}"
        );
        assert_eq!(
            status(d.main, path, &wrong).await.0,
            401,
            "{path}: wrong password"
        );
        assert_eq!(status(d.main, path, &good).await.0, 200, "{path}: Basic");
        assert_eq!(status(d.main, path, &bearer).await.0, 200, "{path}: Bearer token");
        let sep = if path.contains('?') { '&' } else { '?' };
        assert_eq!(
            status(d.main, &format!("{path}{sep}token={TOKEN}"), "").await.0,
            200,
            "{path}: ?token="
        );
        assert_eq!(
            status(d.main, &format!("{path}{sep}token=not-the-token-at-all"), "")
                .await
                .0,
            401
        );
    }
    // The wall's page is open; so are the areas the open listener names (a proxy on this box).
    assert_eq!(status(d.main, "/", "").await.0, 200);
    let local: std::net::SocketAddr = format!("127.0.0.1:{open_port}").parse().unwrap();
    assert_eq!(status(local, "/api/cameras", "").await.0, 200);
    assert_eq!(status(local, "/cameras/cam/snapshot", "").await.0, 200);
    assert_eq!(status(local, "/metrics", "").await.0, 401);
    // Nothing of the credentials reaches the log, at debug level.
    let log = d.log_text();
    for secret in [PASSWORD, TOKEN, &basic("farm", PASSWORD)] {
        assert!(!log.contains(secret), "the log shows {secret}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_and_origins_are_limited_when_configured() {
    let d = Daemon::start(&config(
        "allowed_hosts = [\"127.0.0.1\", \"farm.local\"]\nallowed_origins = [\"http://mainsail.local\"]",
        "[[camera]]\nid = \"cam\"\nsource = \"test:\"\nsize = \"160x120\"\n",
    ));
    let host = |h: &str| {
        let addr = d.main;
        let h = h.to_string();
        async move {
            request(
                addr,
                &format!("GET /api/cameras HTTP/1.1\r\nHost: {h}\r\nOrigin: http://Mainsail.local\r\nConnection: close\r\n\r\n"),
            )
            .await
        }
    };
    let r = host(&format!("127.0.0.1:{}", d.main.port())).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("http://Mainsail.local")
    );
    assert_eq!(host("farm.local").await.status, 200);
    // A page on another site reaching farmcam by DNS rebinding names that site.
    let r = host("evil.example:8080").await;
    assert_eq!(r.status, 421);
    assert!(String::from_utf8_lossy(&r.body).contains("allowed_hosts"));
    // Another origin's page may not read the answers.
    let r = request(
        d.main,
        "GET /api/cameras HTTP/1.1\r\nHost: farm.local\r\nOrigin: http://evil.example\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("access-control-allow-origin"), None);

    // Without the keys: any host, any origin (the default, for Mainsail's cross-origin polling).
    let open = Daemon::start(&config(
        "",
        "[[camera]]\nid = \"cam\"\nsource = \"test:\"\nsize = \"160x120\"\n",
    ));
    let r = request(
        open.main,
        "GET /cameras/cam/snapshot HTTP/1.1\r\nHost: anything\r\nOrigin: http://x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
}

#[test]
fn auth_mistakes_are_config_errors_without_the_secrets() {
    let dir = tempfile::tempdir().unwrap();
    for (text, words) in [
        ("[http.auth]\nopen = [\"wall\"]\n", "neither users nor tokens"),
        ("[http.auth]\ntokens = [\"short-secret\"]\n", "at least 16"),
        (
            "[http.auth]\n[[http.auth.users]]\nname = \"farm\"\npassword_hash = \"hunter2-plain\"\n",
            "farmcam hash-password",
        ),
        (
            "[http.auth]\ntokens = [\"0123456789abcdef0\"]\nopen = [\"everything\"]\n",
            "not an area",
        ),
        (
            "[http.auth]\ntokens = [\"0123456789abcdef0\"]\nopen_listeners = [\"127.0.0.1:9\"]\n",
            "not an address in http.listen",
        ),
        (
            "[http]\nallowed_origins = [\"mainsail.local\"]\n",
            "not an origin",
        ),
    ] {
        let path = dir.path().join("f.toml");
        std::fs::write(&path, text).unwrap();
        let out = Command::new(BIN)
            .args(["check", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(78), "{text}: {err}");
        assert!(err.contains(words), "{text}: {err}");
        assert!(!err.contains("short-secret") && !err.contains("hunter2"), "{err}");
    }
}

/// A wall TV without a keyboard: `/?token=…` opens the wall, and the page passes the token on to
/// its snapshots, the camera list and the event stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wall_passes_its_token_on() {
    let d = Daemon::start(&format!(
        "[http]\nlisten = \"127.0.0.1:0\"\n[http.auth]\ntokens = [\"{TOKEN}\"]\n\
         [[camera]]\nid = \"cam\"\nsource = \"test:\"\nsize = \"320x180\"\n"
    ));
    let browser = common::webdriver::Browser::start(1024, 768).await;
    browser.goto(&format!("http://{}/?token={TOKEN}", d.main)).await;
    browser
        .wait_for(
            std::time::Duration::from_secs(30),
            "the tile shows an image and the event stream is connected",
            "const i = document.querySelector('.tile img');
             return { width: i ? i.naturalWidth : 0,
                      conn: document.querySelector('#conn').textContent };",
            |v| v["width"].as_u64() > Some(0) && v["conn"] == "live updates",
        )
        .await;
    browser.quit().await;
}
