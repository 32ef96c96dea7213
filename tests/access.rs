//! The access layer as a user meets it behind the proxy README recommends: open listeners open
//! only the areas they name, every path (odd spellings, relays) is checked as what it is served
//! as, Basic logins cannot be locked out or enumerated by someone else's guessing, reloads revoke,
//! and tokens with base64 characters work from the wall.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::process::Command;
use std::time::Duration;

use common::proc::free_port;
use common::{
    basic_credentials, eventually_async, hash_password as hash, request, request_from, Daemon, BIN,
};

fn basic(user: &str, password: &str) -> String {
    format!("Authorization: Basic {}\r\n", basic_credentials(user, password))
}

const TOKEN: &str = "0123456789abcdef-token-for-ha";
/// A base64 token: '+', '/' and '=' must survive the wall's percent-encoding.
const B64_TOKEN: &str = "q+Zk/9Lw3Xy1Vb0Hn7Tr4Ae==";
const CAM: &str = "[[camera]]\nid = \"cam\"\nsource = \"test:\"\nsize = \"160x120\"\n";

async fn code(addr: SocketAddr, method: &str, path: &str, headers: &str) -> u16 {
    request(
        addr,
        &format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{headers}\r\n"),
    )
    .await
    .status
}

async fn get_code(addr: SocketAddr, path: &str) -> u16 {
    code(addr, "GET", path, "").await
}

/// Another gateway (B) with one camera and its own token, for the relay.
fn gateway_b() -> Daemon {
    Daemon::start(
        "[http]\nlisten = \"127.0.0.1:0\"\n[http.auth]\ntokens = [\"b-gateway-token-0123456789\"]\n\
         [[camera]]\nid = \"b1\"\nsource = \"test:\"\nsize = \"160x120\"\n",
    )
}

fn gateway_entry(b: &Daemon) -> String {
    format!(
        "[[wall.gateway]]\nname = \"b\"\nurl = \"http://{}\"\ntoken = \"b-gateway-token-0123456789\"\n",
        b.main
    )
}

/// README's advice combined: farmcam behind a proxy on this box, the proxy's listener open for
/// streams. The API, metrics and the other gateway's API and metrics stay closed there, also
/// when spelled oddly; an address written alone (the old form) opens streams only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_listener_opens_only_its_areas() {
    let b = gateway_b();
    let (proxy, old) = (free_port(), free_port());
    let d = Daemon::start(&format!(
        "[http]\nlisten = [\"127.0.0.1:0\", \"127.0.0.1:{proxy}\", \"127.0.0.1:{old}\"]\n\
         [http.auth]\ntokens = [\"{TOKEN}\"]\n\
         open_listeners = [{{ listen = \"127.0.0.1:{proxy}\", areas = [\"streams\"] }}, \"127.0.0.1:{old}\"]\n\
         {CAM}{}",
        gateway_entry(&b)
    ));
    for port in [proxy, old] {
        let at: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        for open in [
            "/cameras/cam/snapshot",
            "/?action=snapshot",
            "/snapshot",
            "/gateways/b/cameras/b1/snapshot",
            "/gateways/b/snapshot",
        ] {
            assert_eq!(get_code(at, open).await, 200, "{port} {open}");
        }
        for closed in [
            "/api/cameras",
            "/api/cameras/",
            "//api//cameras",
            "/metrics",
            "/metrics/",
            "/api/events",
            "/",
            "/gateways/b/metrics",
            "/gateways/b/api/cameras",
            "/gateways/b/",
            "/gateways/b/%2e%2e/metrics",
            "/gateways/b/gateways/a/metrics",
            "/nothing",
        ] {
            assert_eq!(get_code(at, closed).await, 401, "{port} {closed}");
            assert_eq!(code(at, "HEAD", closed, "").await, 401, "HEAD {port} {closed}");
        }
    }
    let log = d.log_text();
    assert!(
        log.contains(&format!("\"127.0.0.1:{old}\" opens only the \"streams\" area")),
        "the old form is warned about: {log}"
    );
    // `farmcam check` says so too.
    let out = Command::new(BIN)
        .args(["check", "--config"])
        .arg(d.config_path())
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("opens only the \"streams\" area"));
}

/// `open = ["streams"]`: streams and snapshots open, the API and metrics closed however spelled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_streams_leave_the_api_closed() {
    let d = Daemon::start(&format!(
        "[http]\nlisten = \"127.0.0.1:0\"\n[http.auth]\ntokens = [\"{TOKEN}\"]\nopen = [\"streams\"]\n{CAM}"
    ));
    for open in [
        "/cameras/cam/snapshot",
        "/cameras/cam/snapshot/",
        "//cameras//cam//snapshot",
        "/?action=snapshot",
    ] {
        assert_eq!(get_code(d.main, open).await, 200, "{open}");
        assert_eq!(code(d.main, "HEAD", open, "").await, 200, "HEAD {open}");
    }
    for closed in [
        "/api/cameras",
        "//api/cameras/",
        "/api/%63ameras",
        "/metrics",
        "/",
        "/api/gateways",
    ] {
        assert_eq!(get_code(d.main, closed).await, 401, "{closed}");
        assert_eq!(code(d.main, "HEAD", closed, "").await, 401, "HEAD {closed}");
    }
}

/// `open = ["wall", "api"]`: a relayed stream or snapshot is a stream (closed), whatever path
/// form reaches it; nested relays are refused; relayed answers are inert on this origin and the
/// relayed camera list names this gateway's URLs, never B's address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relayed_paths_carry_the_other_gateways_areas() {
    let b = gateway_b();
    let d = Daemon::start(&format!(
        "[http]\nlisten = \"127.0.0.1:0\"\n[http.auth]\ntokens = [\"{TOKEN}\"]\nopen = [\"wall\", \"api\"]\n{CAM}{}",
        gateway_entry(&b)
    ));
    for closed in [
        "/gateways/b/snapshot",
        "/gateways/b/?action=stream",
        "/gateways/b/?action=snapshot",
        "/gateways/b/cameras/b1/snapshot",
        "/gateways/b/metrics",
        "/gateways/b//cameras/b1/snapshot",
        "/gateways/b/cameras/%62%31/snapshot",
    ] {
        assert_eq!(get_code(d.main, closed).await, 401, "{closed}");
    }
    assert_eq!(get_code(d.main, "/gateways/b/api/cameras").await, 200);
    let auth = format!("Authorization: Bearer {TOKEN}\r\n");
    assert_eq!(
        code(d.main, "GET", "/gateways/b/cameras/b1/snapshot", &auth).await,
        200
    );
    assert_eq!(
        code(d.main, "GET", "/gateways/b/cameras/%62%31/snapshot", &auth).await,
        200
    );
    assert_eq!(
        code(d.main, "GET", "/gateways/b/gateways/b/api/cameras", &auth).await,
        404
    );
    assert_eq!(code(d.main, "GET", "/cameras/%2e%2e/metrics", &auth).await, 400);
    assert_eq!(code(d.main, "GET", "/cameras/a%2Fb/snapshot", &auth).await, 400);

    let r = request(
        d.main,
        &format!("GET /gateways/b/ HTTP/1.1\r\nHost: farm.local:8080\r\n{auth}Connection: close\r\n\r\n"),
    )
    .await;
    assert_eq!(r.status, 200, "B's wall page");
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(r.header("content-security-policy"), Some("sandbox"));

    let r = request(
        d.main,
        "GET /gateways/b/api/cameras HTTP/1.1\r\nHost: farm.local:8080\r\nConnection: close\r\n\r\n",
    )
    .await;
    let text = String::from_utf8(r.body).unwrap();
    assert!(
        !text.contains(&b.main.to_string()),
        "B's address is not shown: {text}"
    );
    let list: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        list[0]["stream_url"],
        "http://farm.local:8080/gateways/b/cameras/b1/stream"
    );
}

/// One client cannot take the other gateway's per-client limit for the whole wall: relayed
/// requests per client are capped here (503 naming the limit), and another client still gets one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relayed_streams_are_limited_per_client() {
    let b = gateway_b();
    let d = Daemon::start(&format!(
        "[http]\nlisten = \"127.0.0.1:0\"\n{CAM}{}",
        gateway_entry(&b)
    ));
    let req = "GET /gateways/b/cameras/b1/stream HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut held = Vec::new();
    for _ in 0..8 {
        let s = common::Stream::open(d.main, req).await;
        assert_eq!(s.status, 200);
        held.push(s);
    }
    let r = request(
        d.main,
        &format!("{}Connection: close\r\n\r\n", req.trim_end_matches("\r\n")),
    )
    .await;
    assert_eq!(r.status, 503);
    assert!(String::from_utf8_lossy(&r.body).contains("at most 8"));
    let other: IpAddr = "127.0.0.2".parse().unwrap();
    let r = request_from(
        other,
        d.main,
        "GET /gateways/b/cameras/b1/snapshot HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(r.status, 200, "another client is still relayed");
    // Streams that end give their slots back.
    held.clear();
    eventually_async(Duration::from_secs(20), "a relayed slot comes back", || async {
        (get_code(d.main, "/gateways/b/cameras/b1/snapshot").await == 200).then_some(())
    })
    .await;
}

/// Someone guessing passwords from one address cannot lock out a user at another: each address
/// gets one check at a time and 10 failures a minute (then 429 without a check); unknown names
/// cost a check like known ones; failures never push out a verified login; failures are logged
/// with the client's address and never the password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_logins_are_bounded_per_client_and_cannot_be_flushed() {
    const PASSWORD: &str = "Farm#Pass/2026";
    let d = Daemon::start(&format!(
        "[http]\nlisten = \"127.0.0.1:0\"\n[http.auth]\nopen = [\"metrics\"]\n\
         [[http.auth.users]]\nname = \"farm\"\npassword_hash = \"{}\"\n{CAM}",
        hash(PASSWORD)
    ));
    let checks = || async {
        let m = String::from_utf8(common::get(d.main, "/metrics").await.body).unwrap();
        m.lines()
            .find_map(|l| l.strip_prefix("farmcam_password_checks_total "))
            .map(|v| v.parse::<f64>().unwrap() as u64)
            .unwrap()
    };
    let good = basic("farm", PASSWORD);
    let path = "/api/cameras";
    assert_eq!(code(d.main, "GET", path, &good).await, 200);
    assert_eq!(checks().await, 1);
    assert_eq!(code(d.main, "GET", path, &good).await, 200);
    assert_eq!(checks().await, 1, "a verified login is remembered");
    // An unknown name costs a check too (its answer cannot tell that the name does not exist).
    assert_eq!(code(d.main, "GET", path, &basic("nobody", "x")).await, 401);
    assert_eq!(checks().await, 2);

    // 40 concurrent wrong logins from another address.
    let guesser: IpAddr = "127.0.0.2".parse().unwrap();
    let addr = d.main;
    let guesses: Vec<_> = (0..40)
        .map(|i| {
            let h = basic("farm", &format!("guess-{i}"));
            tokio::spawn(async move {
                request_from(
                    guesser,
                    addr,
                    &format!("GET /api/cameras HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{h}\r\n"),
                )
                .await
                .status
            })
        })
        .collect();
    let mut codes = Vec::new();
    for g in guesses {
        codes.push(g.await.unwrap());
    }
    assert!(codes.iter().all(|c| *c == 401 || *c == 429), "{codes:?}");
    let refused_unchecked = codes.iter().filter(|c| **c == 429).count();
    assert!(
        refused_unchecked >= 30,
        "at most 10 checks per address a minute: {codes:?}"
    );
    assert!(checks().await <= 2 + 10, "checks: {}", checks().await);
    // 1,100 wrong logins under unknown names (from a third address) do not flush the verified one.
    let flood: IpAddr = "127.0.0.3".parse().unwrap();
    for i in 0..1100 {
        let h = basic(&format!("user{i}"), "x");
        let c = request_from(
            flood,
            d.main,
            &format!("GET /api/cameras HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{h}\r\n"),
        )
        .await
        .status;
        assert!(c == 401 || c == 429);
    }
    let before = checks().await;
    assert_eq!(
        code(d.main, "GET", path, &good).await,
        200,
        "the user is not locked out"
    );
    assert_eq!(checks().await, before, "and still remembered");
    d.logged("failed login from 127.0.0.2").await;
    d.logged("login refused from 127.0.0.2").await;
    assert!(!d.log_text().contains("guess-"), "no password in the log");
}

/// A reload revokes: a removed token stops working at once, a new one works, and a changed
/// `[[wall.gateway]]` list is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_revokes_tokens_and_changes_gateways() {
    let b = gateway_b();
    let d = Daemon::start(&format!(
        "[http]\nlisten = \"127.0.0.1:0\"\n[http.auth]\ntokens = [\"{TOKEN}\"]\n{CAM}"
    ));
    let with = |t: &str| format!("/api/gateways?token={t}");
    assert_eq!(get_code(d.main, &with(TOKEN)).await, 200);
    const NEW: &str = "the-new-token-0123456789";
    std::fs::write(
        d.config_path(),
        format!(
            "[http]\nlisten = \"127.0.0.1:0\"\n[http.auth]\ntokens = [\"{NEW}\"]\n{CAM}{}",
            gateway_entry(&b)
        ),
    )
    .unwrap();
    d.signal(libc::SIGHUP);
    eventually_async(Duration::from_secs(30), "the old token is refused", || async {
        (get_code(d.main, &with(TOKEN)).await == 401).then_some(())
    })
    .await;
    let r = common::get(d.main, &with(NEW)).await;
    assert_eq!(r.status, 200);
    assert_eq!(String::from_utf8(r.body).unwrap(), "[{\"name\":\"b\"}]");
    assert_eq!(
        get_code(d.main, &format!("/gateways/b/cameras/b1/snapshot?token={NEW}")).await,
        200
    );
}

/// Base64 tokens work percent-encoded (as the wall sends them) and as typed; a CORS preflight is
/// answered without credentials and allows `Authorization`; a camera's own port passes `?token=`
/// on to its page's image.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_preflights_and_a_cameras_own_page() {
    let own = free_port();
    let d = Daemon::start(&format!(
        "[http]\nlisten = \"127.0.0.1:0\"\nallowed_origins = [\"http://mainsail.local\"]\n\
         [http.auth]\ntokens = [\"{B64_TOKEN}\"]\n\
         [[camera]]\nid = \"cam\"\nsource = \"test:\"\nsize = \"160x120\"\nlisten = \"127.0.0.1:{own}\"\n"
    ));
    let encoded = "q%2BZk%2F9Lw3Xy1Vb0Hn7Tr4Ae%3D%3D";
    assert_eq!(
        get_code(d.main, &format!("/cameras/cam/snapshot?token={encoded}")).await,
        200
    );
    assert_eq!(
        get_code(d.main, &format!("/cameras/cam/snapshot?token={B64_TOKEN}")).await,
        200
    );
    let r = request(
        d.main,
        &format!(
            "OPTIONS /api/cameras HTTP/1.1\r\nHost: {}\r\nOrigin: http://mainsail.local\r\n\
             Access-Control-Request-Method: GET\r\nAccess-Control-Request-Headers: authorization\r\n\
             Connection: close\r\n\r\n",
            d.main
        ),
    )
    .await;
    assert_eq!(r.status, 204);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("http://mainsail.local")
    );
    assert!(r
        .header("access-control-allow-headers")
        .is_some_and(|h| h.contains("authorization")));
    let bearer = format!("Authorization: Bearer {B64_TOKEN}\r\nOrigin: http://mainsail.local\r\n");
    let r = request(
        d.main,
        &format!("GET /api/cameras HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{bearer}\r\n"),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("http://mainsail.local")
    );

    let own: SocketAddr = format!("127.0.0.1:{own}").parse().unwrap();
    let page = common::get(own, &format!("/?token={encoded}")).await;
    assert_eq!(page.status, 200);
    let html = String::from_utf8(page.body).unwrap();
    assert!(
        html.contains(&format!("src=\"?action=stream&amp;token={encoded}\"")),
        "{html}"
    );
    assert_eq!(
        get_code(own, &format!("/?action=snapshot&token={encoded}")).await,
        200
    );
    assert_eq!(get_code(own, "/?action=snapshot").await, 401);
}
