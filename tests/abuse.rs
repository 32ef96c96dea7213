//! The live doors under abuse, as a host on the LAN without credentials would try them (the
//! third review, issue 39). Each test is one attack and what farmcam must still do; a later review
//! adds its own here.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use common::proc::open_fds;
use common::rtsp::{RtspOptions, RtspServer};
use common::rtsp_client::Client;
use common::{config, eventually_async, Daemon};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

const WAIT: Duration = Duration::from_secs(60);

/// A TCP connection to `to` from the loopback address `from` (127.0.0.0/8 is all ours).
async fn connect_from(from: IpAddr, to: SocketAddr) -> TcpStream {
    common::proc::connect_from(from, to).await.unwrap()
}

/// Whatever the server says before it closes (bounded); `None` if it kept the connection open.
async fn said_before_close(s: &mut TcpStream, limit: Duration) -> Option<String> {
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(String::from_utf8_lossy(&got).into_owned()),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// Hundreds of idle RTSP connections from one host and from many: the ones beyond the caps are
/// answered and closed at once, the silent ones within seconds; farmcam's descriptors stay
/// bounded and HTTP keeps answering throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_rtsp_connections_cannot_exhaust_descriptors() {
    let d = Daemon::start(&config(
        "",
        "[rtsp]\nlisten = \"127.0.0.1:0\"\nudp = false\nmax_sessions = 4\nmax_sessions_per_client = 2\n\
         [[camera]]\nid = \"pattern\"\nsource = \"test:\"\n",
    ));
    let pid = d.child.id();
    let rtsp = d.rtsp.unwrap();
    let before = open_fds(pid);
    // One host: 300 connections that say nothing.
    let one: IpAddr = "127.0.0.1".parse().unwrap();
    let mut held = Vec::new();
    for _ in 0..300 {
        held.push(connect_from(one, rtsp).await);
    }
    // Many hosts: 10 connections from each of 20 addresses.
    for host in 2..22u8 {
        for _ in 0..10 {
            held.push(connect_from(IpAddr::from([127, 0, 0, host]), rtsp).await);
        }
    }
    // farmcam holds at most its cap (2 x 4 + 16 = 24 connections), never hundreds.
    let fds = open_fds(pid);
    assert!(
        fds < before + 60,
        "{before} descriptors before, {fds} with 500 connections"
    );
    // HTTP answers while they are held.
    let r = tokio::time::timeout(WAIT, common::get(d.main, "/api/cameras"))
        .await
        .expect("/api/cameras answers under the flood");
    assert_eq!(r.status, 200);
    // Every connection ends: refused ones at once (with a status line), silent ones after the
    // first-request timeout.
    let started = Instant::now();
    let mut refused = 0;
    for s in &mut held {
        let said = said_before_close(s, WAIT.saturating_sub(started.elapsed()))
            .await
            .expect("closed by farmcam: a refusal, or no request within seconds");
        if said.starts_with("RTSP/1.0 453") || said.starts_with("RTSP/1.0 503") {
            refused += 1;
        } else {
            assert_eq!(said, "", "a silent connection is closed without an answer");
        }
    }
    // Most at once (a slow machine connecting for longer than the 5 s first-request timeout
    // frees a few seats meanwhile).
    assert!(refused >= 250, "{refused} of 500 refused at accept");
    drop(held);
    eventually_async(WAIT, "descriptors back to where they were", || async {
        (open_fds(pid) <= before).then_some(())
    })
    .await;
    // And a client that speaks is served.
    let mut c = Client::connect(&d).await;
    assert_eq!(
        c.request("OPTIONS", &d.rtsp_url("pattern"), "")
            .await
            .unwrap()
            .status,
        200
    );
    d.logged("connection from 127.0.0.1 refused").await;
    assert!(!d.log_text().contains("Too many open files"));
}

/// DESCRIBE and SETUP over TCP: the status of the last.
async fn setup(c: &mut Client, url: &str) -> u16 {
    let r = c.request("DESCRIBE", url, "").await.unwrap();
    if r.status != 200 {
        return r.status;
    }
    c.setup_tcp(url).await.unwrap().status
}

/// Sessions set up and never played (and cameras described and never set up) hold nothing for
/// longer than `session_timeout`, over TCP too: a newcomer gets a session after them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtsp_sessions_that_never_play_expire_over_tcp() {
    let server = RtspServer::start(RtspOptions::default());
    let d = Daemon::start(&config(
        "",
        &format!(
            "[rtsp]\nlisten = \"127.0.0.1:0\"\nudp = false\nmax_sessions = 3\nmax_sessions_per_client = 2\n\
             session_timeout = \"2s\"\n[[camera]]\nid = \"cam\"\nsource = \"{}\"\n",
            server.url()
        ),
    ));
    let url = d.rtsp_url("cam");
    // Two hosts take every seat: two sessions set up without PLAY, one camera described.
    let from = |host: u8| {
        let to = d.rtsp.unwrap();
        async move {
            Client {
                sock: connect_from(IpAddr::from([127, 0, 0, host]), to).await,
                buf: Vec::new(),
                cseq: 0,
            }
        }
    };
    let mut a = from(2).await;
    let mut b = from(3).await;
    assert_eq!(setup(&mut a, &url).await, 200);
    assert_eq!(setup(&mut b, &url).await, 200);
    let mut c = from(3).await;
    assert_eq!(c.request("DESCRIBE", &url, "").await.unwrap().status, 200);
    let mut late = from(4).await;
    let r = late.request("DESCRIBE", &url, "").await.unwrap();
    assert_eq!(r.status, 503, "every seat taken: {r:?}");
    assert!(r.body.contains("max_sessions"), "{r:?}");
    // They say nothing more: their sessions and the described camera are let go.
    d.wait_for("cam", WAIT, |c| {
        c["rtsp_sessions"].as_array().is_some_and(|a| a.is_empty())
    })
    .await;
    // The described camera's seat is given back too: a newcomer sets up a session.
    eventually_async(WAIT, "a session for a newcomer", || async {
        let mut newcomer = from(4).await;
        match setup(&mut newcomer, &url).await {
            200 => Some(()),
            503 => None,
            other => panic!("a newcomer got {other}"),
        }
    })
    .await;
    d.logged("timed out").await;
    drop((a, b, c, late));
}

/// Without credentials, a camera that exists and one that does not are answered alike; a Digest
/// header works only on the connection it was made for, and only for the URL it names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtsp_tells_nothing_without_credentials_and_digest_is_bound() {
    let server = RtspServer::start(RtspOptions::default());
    let digest = common::rtsp_digest("ha", "s3cret-pw");
    let hash = common::hash_password("s3cret-pw");
    let d = Daemon::start(&config(
        &format!(
            "[http.auth]\nusers = [{{ name = \"ha\", password_hash = \"{hash}\", rtsp_digest = \"{digest}\" }}]\n"
        ),
        &format!(
            "[rtsp]\nlisten = \"127.0.0.1:0\"\nudp = false\n[[camera]]\nid = \"cam\"\nsource = \"{}\"\n\
             [[camera]]\nid = \"other\"\nsource = \"{}\"\n",
            server.url(),
            server.url()
        ),
    ));
    let url = d.rtsp_url("cam");
    let mut a = Client::connect(&d).await;
    let real = a.request("DESCRIBE", &url, "").await.unwrap();
    let unknown = a
        .request("DESCRIBE", &d.rtsp_url("no-such-camera"), "")
        .await
        .unwrap();
    assert_eq!((real.status, unknown.status), (401, 401), "{real:?} {unknown:?}");
    assert_eq!(real.body, unknown.body);

    // A Digest answer as RFC 2617 computes it, for `uri`, from connection `c`'s challenge.
    let answer = |challenge: &str, uri: &str| {
        let nonce = challenge
            .split("nonce=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap()
            .to_string();
        let md5 = |s: &str| {
            use md5::Digest;
            md5::Md5::digest(s.as_bytes())
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        };
        let response = md5(&format!("{digest}:{nonce}:{}", md5(&format!("DESCRIBE:{uri}"))));
        format!(
            "Authorization: Digest username=\"ha\", realm=\"farmcam\", nonce=\"{nonce}\", uri=\"{uri}\", response=\"{response}\"\r\n"
        )
    };
    let challenge = |r: &common::rtsp_client::Reply| {
        r.headers
            .iter()
            .find(|(n, v)| n.eq_ignore_ascii_case("www-authenticate") && v.starts_with("Digest"))
            .map(|(_, v)| v.clone())
            .expect("a Digest challenge")
    };
    let on_a = challenge(&real);
    // Made for another URL: refused.
    let other = d.rtsp_url("other");
    let r = a.request("DESCRIBE", &url, &answer(&on_a, &other)).await.unwrap();
    assert_eq!(
        r.status, 401,
        "a header computed for /other does not open /cam: {r:?}"
    );
    let r = a
        .request("DESCRIBE", &url, &answer(&on_a, "/totally/other"))
        .await
        .unwrap();
    assert_eq!(r.status, 401, "{r:?}");
    // Right, on its own connection: served.
    let good = answer(&on_a, &url);
    let r = a.request("DESCRIBE", &url, &good).await.unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    // The same header replayed on another connection: refused.
    let mut b = Client::connect(&d).await;
    let r = b.request("DESCRIBE", &url, &good).await.unwrap();
    assert_eq!(r.status, 401, "a replayed header opens nothing: {r:?}");
}

/// Many concurrent WebRTC requests from one address get no more sessions than its share, and
/// the others' share stays free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webrtc_limits_hold_under_concurrent_offers() {
    let server = RtspServer::start(RtspOptions::default());
    let d = Daemon::start(&config(
        "",
        &format!(
            "[webrtc]\nlisten = \"127.0.0.1:0\"\nmax_sessions = 6\nmax_sessions_per_client = 3\n\
             [[camera]]\nid = \"cam\"\nsource = \"{}\"\n",
            server.url()
        ),
    ));
    let request = |from: IpAddr| {
        let main = d.main;
        async move {
            common::request_from(
                from,
                main,
                "POST /cameras/cam/webrtc HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
                 Content-Length: 18\r\nConnection: close\r\n\r\n{\"type\":\"request\"}",
            )
            .await
            .status
        }
    };
    let one: IpAddr = "127.0.0.1".parse().unwrap();
    let results = futures_util::future::join_all((0..20).map(|_| request(one))).await;
    let created = results.iter().filter(|s| **s == 200).count();
    assert_eq!(created, 3, "{results:?}");
    assert!(results.iter().all(|s| *s == 200 || *s == 503), "{results:?}");
    let listed = d.camera("cam").await["webrtc_sessions"]
        .as_array()
        .map_or(0, Vec::len);
    assert_eq!(listed, 3);
    // Another host still gets its share.
    let other: IpAddr = "127.0.0.2".parse().unwrap();
    assert_eq!(request(other).await, 200);
}

/// A session's URL is a capability for its own camera only; the listing never shows it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webrtc_sessions_are_capabilities_bound_to_their_camera() {
    let server = RtspServer::start(RtspOptions::default());
    let d = Daemon::start(&config(
        "",
        &format!(
            "[webrtc]\nlisten = \"127.0.0.1:0\"\n[[camera]]\nid = \"cam\"\nsource = \"{0}\"\n\
             [[camera]]\nid = \"other\"\nsource = \"{0}\"\n",
            server.url()
        ),
    ));
    let post = |path: &str, body: &str| {
        format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    };
    let r = common::request(d.main, &post("/cameras/cam/webrtc", "{\"type\":\"request\"}")).await;
    assert_eq!(r.status, 200);
    let offer: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    let id = offer["id"].as_str().unwrap().to_string();
    assert!(id.len() >= 32, "128 random bits at least: {id}");
    let listing = String::from_utf8(common::get(d.main, "/api/cameras").await.body).unwrap();
    assert!(!listing.contains(&id), "{listing}");
    let delete = |cam: &str| {
        format!("DELETE /cameras/{cam}/whep/{id} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    };
    // Another camera's URL with this id: no such session there.
    assert_eq!(common::request(d.main, &delete("other")).await.status, 404);
    let patch = |cam: &str| {
        format!("PATCH /cameras/{cam}/whep/{id} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
    };
    assert_eq!(common::request(d.main, &patch("other")).await.status, 404);
    assert_eq!(common::request(d.main, &patch("cam")).await.status, 204);
    // One character off (never the id itself).
    let last = if id.ends_with('0') { '1' } else { '0' };
    let guessed = format!("{}{last}", &id[..id.len() - 1]);
    let r = common::request(
        d.main,
        &format!("DELETE /cameras/cam/whep/{guessed} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
    )
    .await;
    assert_eq!(r.status, 404, "a guessed id");
    assert_eq!(
        d.camera("cam").await["webrtc_sessions"].as_array().map(Vec::len),
        Some(1),
        "still there"
    );
    assert_eq!(common::request(d.main, &delete("cam")).await.status, 200);
}

/// A decoder helper that stops answering (here SIGSTOPped, as a decoder caught in an endless
/// loop would look) is replaced within seconds: every camera's pictures come back, and the
/// stopped process is killed and reaped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_decoder_helper_is_replaced() {
    // A server each: GStreamer's test server can abort when two clients set up one shared
    // stream at the same moment (gst_rtsp_media_get_rates: assertion failed).
    let (one, two) = (
        RtspServer::start(RtspOptions::default()),
        RtspServer::start(RtspOptions::default()),
    );
    let d = Daemon::start(&config(
        "",
        &format!(
            "[[camera]]\nid = \"a\"\nsource = \"{}\"\n[[camera]]\nid = \"b\"\nsource = \"{}\"\n",
            one.url(),
            two.url()
        ),
    ));
    let pid = d.child.id();
    let mut a = common::open_stream(&d, "a").await;
    let mut b = common::open_stream(&d, "b").await;
    common::live_frame(&mut a).await;
    common::live_frame(&mut b).await;
    let helpers = common::proc::decoder_helpers(pid);
    assert_eq!(helpers.len(), 1, "one helper decodes both");
    let stopped = helpers[0];
    unsafe { libc::kill(stopped as i32, libc::SIGSTOP) };
    let at = common::unix_now();
    common::eventually(WAIT, "a new helper, the stopped one reaped", || {
        let now = common::proc::decoder_helpers(pid);
        (now.len() == 1 && now[0] != stopped && !std::path::Path::new(&format!("/proc/{stopped}")).exists())
            .then_some(())
    })
    .await;
    for s in [&mut a, &mut b] {
        common::part_where(s, WAIT, "pictures again", |p| {
            common::is_live(p) && p.timestamp() > at
        })
        .await;
    }
    d.logged("decoder helper: it answered nothing").await;
    // Both cameras stay on the shared helper: neither was blamed alone.
    for id in ["a", "b"] {
        assert_eq!(d.camera(id).await["decoded_by"], "helper");
    }
}

/// Strangers guessing passwords from many addresses at once do not hold up a right login from an
/// address that has not failed: at most the check under way runs before it, never the queue of
/// their guesses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_flood_from_many_addresses_does_not_hold_up_a_right_login() {
    const PASSWORD: &str = "Farm#Pass/2026";
    let hash = common::hash_password(PASSWORD);
    let d = Daemon::start(&config(
        &format!(
            "[http.auth]\nopen = [\"metrics\"]\nusers = [{{ name = \"farm\", password_hash = \"{hash}\" }}]\n"
        ),
        "[[camera]]\nid = \"pattern\"\nsource = \"test:\"\n",
    ));
    let metric = |name: &'static str| {
        let main = d.main;
        async move {
            let m = String::from_utf8(common::get(main, "/metrics").await.body).unwrap();
            m.lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.trim().parse::<f64>().unwrap() as u64)
                .unwrap()
        }
    };
    let login = |from: IpAddr, password: &str| {
        let main = d.main;
        let header = common::basic_credentials("farm", password);
        async move {
            common::request_from(
                from,
                main,
                &format!("GET /api/cameras HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {header}\r\nConnection: close\r\n\r\n"),
            )
            .await
            .status
        }
    };
    // 20 addresses guessing, one guess after another each, until the test ends.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flood: Vec<_> = (1..=20u8)
        .map(|host| {
            let stop = stop.clone();
            let main = d.main;
            tokio::spawn(async move {
                let from = IpAddr::from([127, 0, 1, host]);
                let header = common::basic_credentials("farm", &format!("guess-{host}"));
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    let r = common::request_from(
                        from,
                        main,
                        &format!("GET /api/cameras HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {header}\r\nConnection: close\r\n\r\n"),
                    )
                    .await;
                    // Locked out for the minute: this address is done guessing.
                    if r.status == 429 {
                        return;
                    }
                }
            })
        })
        .collect();
    eventually_async(WAIT, "every flooding address failed once", || async {
        (metric("farmcam_login_failures_total ").await >= 20).then_some(())
    })
    .await;
    let before = metric("farmcam_password_checks_total ").await;
    assert_eq!(login(IpAddr::from([127, 0, 2, 1]), PASSWORD).await, 200);
    let after = metric("farmcam_password_checks_total ").await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    for f in flood {
        let _ = f.await;
    }
    assert!(
        after - before <= 3,
        "{} checks ran between the right login and its answer",
        after - before
    );
}

/// With `[http.auth]`, WebRTC signalling is a door like the streams: without credentials every
/// form is answered 401 and opens nothing; a token opens it; a CORS preflight needs none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webrtc_signalling_asks_for_credentials() {
    let server = RtspServer::start(RtspOptions::default());
    let token = "webrtc-token-0123456789abcdef";
    let d = Daemon::start(&config(
        &format!("[http.auth]\ntokens = [\"{token}\"]\n"),
        &format!(
            "[webrtc]\nlisten = \"127.0.0.1:0\"\n[[camera]]\nid = \"cam\"\nsource = \"{}\"\n",
            server.url()
        ),
    ));
    let send = |method: &str, path: &str, ct: &str, body: &str| {
        format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {ct}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    };
    for (method, path, ct, body) in [
        (
            "POST",
            "/cameras/cam/webrtc",
            "application/json",
            "{\"type\":\"request\"}",
        ),
        ("POST", "/cameras/cam/whep", "application/sdp", "v=0\r\n"),
        (
            "PATCH",
            "/cameras/cam/whep/0123456789abcdef0123456789abcdef",
            "application/trickle-ice-sdpfrag",
            "",
        ),
        (
            "DELETE",
            "/cameras/cam/whep/0123456789abcdef0123456789abcdef",
            "text/plain",
            "",
        ),
        ("POST", "/webrtc", "application/json", "{\"type\":\"request\"}"),
    ] {
        let r = common::request(d.main, &send(method, path, ct, body)).await;
        assert_eq!(
            r.status,
            401,
            "{method} {path}: {}",
            String::from_utf8_lossy(&r.body)
        );
    }
    let listed = common::get(d.main, &format!("/api/cameras?token={token}")).await;
    let cams: serde_json::Value = serde_json::from_slice(&listed.body).unwrap();
    assert_eq!(cams[0]["state"], "idle", "nothing was opened: {cams}");
    let preflight = common::request(
        d.main,
        "OPTIONS /cameras/cam/whep HTTP/1.1\r\nHost: x\r\nOrigin: http://mainsail.local\r\n\
         Access-Control-Request-Method: POST\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(preflight.status, 204);
    let r = common::request(
        d.main,
        &send(
            "POST",
            &format!("/cameras/cam/webrtc?token={token}"),
            "application/json",
            "{\"type\":\"request\"}",
        ),
    )
    .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
}

/// Clients over IPv6 are limited like IPv4 ones (the per-client match was a text prefix that no
/// `[::1]` peer ever matched).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_clients_are_limited_too() {
    let server = RtspServer::start(RtspOptions::default());
    let d = Daemon::start(&format!(
        "[http]\nlisten = \"[::1]:0\"\n[webrtc]\nlisten = \"127.0.0.1:0\"\nmax_sessions_per_client = 3\n\
         [[camera]]\nid = \"cam\"\nsource = \"{}\"\n",
        server.url()
    ));
    assert!(d.main.is_ipv6(), "{}", d.main);
    let request = || {
        common::request(
            d.main,
            "POST /cameras/cam/webrtc HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
             Content-Length: 18\r\nConnection: close\r\n\r\n{\"type\":\"request\"}",
        )
    };
    let results: Vec<u16> = futures_util::future::join_all((0..12).map(|_| request()))
        .await
        .iter()
        .map(|r| r.status)
        .collect();
    assert_eq!(results.iter().filter(|s| **s == 200).count(), 3, "{results:?}");
    let listed = d.camera("cam").await;
    let sessions = listed["webrtc_sessions"].as_array().unwrap();
    assert!(
        sessions
            .iter()
            .all(|s| s["peer"].as_str().is_some_and(|p| p.starts_with("[::1]:"))),
        "{listed}"
    );
}
