//! MQTT against a real mosquitto started by each test: snapshots, state, status, last will,
//! Home Assistant discovery, broker restarts, TLS, bad credentials, oversized frames, and sharing
//! the camera with HTTP viewers.

mod common;

use std::time::Duration;

use common::eventually;
use common::mqtt::{mosquitto_password_file, Mosquitto, Msg, Sub};
use common::tls::test_ca;
use common::{config, decode_jpeg, get, Daemon, Stream};

const WAIT: Duration = Duration::from_secs(15);

fn mqtt_section(url: &str, extra: &str) -> String {
    format!("[mqtt]\nurl = \"{url}\"\nnode_id = \"testnode\"\n{extra}\n")
}

fn is(topic: &'static str) -> impl Fn(&Msg) -> bool {
    move |m| m.topic == topic
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_state_status_and_home_assistant_discovery() {
    let broker = Mosquitto::start("");
    // Left over from an earlier configuration of this gateway, and another integration's entity.
    let seed = Sub::connect(broker.port, &[], None).await;
    let stale =
        r#"{"name":"old","unique_id":"farmcam_testnode_old","device":{"identifiers":["farmcam_testnode"]}}"#;
    let other = r#"{"name":"doorbell","unique_id":"doorbell","device":{"identifiers":["someone_else"]}}"#;
    seed.publish("homeassistant/camera/testnode_old/config", stale.as_bytes(), true)
        .await;
    seed.publish("homeassistant/camera/doorbell/config", other.as_bytes(), true)
        .await;

    let mut sub = Sub::connect(broker.port, &["farmcam/#", "homeassistant/#"], None).await;
    let _d = Daemon::start(&config(
        "",
        &format!(
            "{}[[camera]]\nid = \"p1\"\nname = \"Printer one\"\nsource = \"test:\"\nsize = \"320x240\"\nfps = 10\nsnapshot_width = 160\n\
             [[camera]]\nid = \"p2\"\nsource = \"test:\"\nsize = \"160x120\"\nfps = 5\nsnapshot_interval = \"off\"\n\
             [[camera]]\nid = \"down\"\nsource = \"test:offline\"\nsize = \"160x120\"\n",
            mqtt_section(&broker.url(), "snapshot_interval = \"1s\"\nsnapshot_width = 100")
        ),
    ));

    let status = sub.wait_for(WAIT, "status", is("farmcam/testnode/status")).await;
    assert_eq!(status.text(), "online");
    let cam = sub
        .wait_for(
            WAIT,
            "camera discovery",
            is("homeassistant/camera/testnode_p1/config"),
        )
        .await
        .json();
    assert_eq!(cam["topic"], "farmcam/testnode/p1/snapshot");
    assert_eq!(cam["unique_id"], "farmcam_testnode_p1");
    assert_eq!(cam["name"], "Printer one");
    assert_eq!(cam["availability"][0]["topic"], "farmcam/testnode/status");
    assert_eq!(
        cam["availability"][1]["topic"],
        "farmcam/testnode/p1/availability"
    );
    assert_eq!(cam["availability_mode"], "all");
    // Old and new Home Assistant versions name the entity alike.
    assert_eq!(cam["object_id"], "farmcam_testnode_p1");
    assert_eq!(cam["default_entity_id"], "camera.farmcam_testnode_p1");
    assert_eq!(cam["device"]["identifiers"][0], "farmcam_testnode");
    let button = sub
        .wait_for(
            WAIT,
            "button discovery",
            is("homeassistant/button/testnode_p1_snapshot/config"),
        )
        .await
        .json();
    assert_eq!(button["command_topic"], "farmcam/testnode/p1/snapshot/request");
    assert_eq!(button["object_id"], "farmcam_testnode_p1_snapshot");
    assert_eq!(button["default_entity_id"], "button.farmcam_testnode_p1_snapshot");

    sub.wait_for(WAIT, "stale entity removed (empty retained config)", |m| {
        m.topic == "homeassistant/camera/testnode_old/config" && m.payload.is_empty()
    })
    .await;

    // Periodic snapshots of p1 about every second, as complete JPEGs at its snapshot_width;
    // none of p2.
    let first = sub
        .wait_for(WAIT, "first snapshot", is("farmcam/testnode/p1/snapshot"))
        .await;
    assert_eq!(decode_jpeg(&first.payload), (160, 120));
    // Three more, each a complete JPEG, paced by the interval (not a flood).
    let mut snaps = vec![first.clone()];
    for _ in 0..3 {
        let after = snaps.last().unwrap().at;
        let next = sub
            .wait_for(WAIT, "next snapshot", |m| {
                m.topic == "farmcam/testnode/p1/snapshot" && m.at > after
            })
            .await;
        assert_eq!(decode_jpeg(&next.payload), (160, 120));
        snaps.push(next);
    }
    let span = snaps[3].at - snaps[0].at;
    assert!(
        span >= Duration::from_millis(2500),
        "3 intervals of 1 s took {span:?}"
    );
    assert!(!sub.seen.iter().any(|m| m.topic == "farmcam/testnode/p2/snapshot"));
    let state = sub
        .seen
        .iter()
        .rev()
        .find(|m| m.topic == "farmcam/testnode/p1/state")
        .expect("state published")
        .json();
    assert!(state["last_snapshot"].as_f64().unwrap() > 1.7e9, "{state}");
    assert_eq!(state["size"], "320x240");
    assert!(!sub
        .seen
        .iter()
        .any(|m| m.topic == "homeassistant/camera/doorbell/config" && m.payload.is_empty()));

    // Home Assistant restarted (it publishes "online"): discovery is announced again.
    sub.publish("homeassistant/status", b"online", false).await;
    sub.wait_for(
        WAIT,
        "discovery after HA restart",
        is("homeassistant/camera/testnode_p1/config"),
    )
    .await;

    // A camera that cannot be opened is unavailable in Home Assistant; a working one available.
    for (topic, payload) in [
        ("farmcam/testnode/down/availability", "offline"),
        ("farmcam/testnode/p1/availability", "online"),
    ] {
        let pred = |m: &Msg| m.topic == topic && m.text() == payload;
        if !sub.seen.iter().any(pred) {
            sub.wait_for(WAIT, "availability", pred).await;
        }
    }

    // A request on p2's topic: one snapshot, promptly.
    sub.publish("farmcam/testnode/p2/snapshot/request", b"snapshot", false)
        .await;
    let snap = sub
        .wait_for(
            Duration::from_secs(5),
            "requested snapshot",
            is("farmcam/testnode/p2/snapshot"),
        )
        .await;
    // [mqtt] snapshot_width for a camera without its own.
    assert_eq!(decode_jpeg(&snap.payload), (100, 75));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_on_clean_stop_and_last_will_on_sigkill() {
    let broker = Mosquitto::start("");
    let mut sub = Sub::connect(broker.port, &["farmcam/testnode/status"], None).await;
    let cfg = config(
        "",
        &format!(
            "{}[[camera]]\nid = \"p1\"\nsource = \"test:\"\nsize = \"160x120\"\n",
            mqtt_section(&broker.url(), "")
        ),
    );
    let mut d = Daemon::start_with_log(&cfg, "debug");
    assert_eq!(sub.wait_for(WAIT, "online", |_| true).await.text(), "online");
    d.signal(libc::SIGTERM);
    assert!(d.wait_exit(Duration::from_secs(5)).unwrap().success());
    let m = sub.wait_for(WAIT, "offline", |_| true).await;
    assert_eq!(
        (m.text().as_str(), m.retain),
        ("offline", false),
        "live delivery of the retained message"
    );

    // A clean DISCONNECT: the broker does not fire the last will on top.
    let after = sub.collect(Duration::from_secs(1)).await;
    assert!(
        after.is_empty(),
        "nothing after a clean stop: {after:?}\n{}",
        d.log_text()
    );

    let mut d = Daemon::start(&cfg);
    assert_eq!(sub.wait_for(WAIT, "online", |_| true).await.text(), "online");
    d.signal(libc::SIGKILL);
    d.wait_exit(Duration::from_secs(5)).unwrap();
    assert_eq!(sub.wait_for(WAIT, "last will", |_| true).await.text(), "offline");
    // Retained: a dashboard connecting later sees the gateway is offline.
    let mut late = Sub::connect(broker.port, &["farmcam/testnode/status"], None).await;
    let m = late.wait_for(WAIT, "retained status", |_| true).await;
    assert_eq!((m.text().as_str(), m.retain), ("offline", true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_restart_resumes_and_reannounces() {
    let mut broker = Mosquitto::start("");
    let d = Daemon::start(&config(
        "",
        &format!(
            "{}[[camera]]\nid = \"p1\"\nsource = \"test:\"\nsize = \"160x120\"\nfps = 5\n",
            mqtt_section(&broker.url(), "snapshot_interval = \"1s\"")
        ),
    ));
    let mut sub = Sub::connect(broker.port, &["farmcam/#"], None).await;
    sub.wait_for(WAIT, "snapshot", is("farmcam/testnode/p1/snapshot"))
        .await;

    broker.stop();
    eventually(WAIT, "the lost broker noticed", || {
        let log = d.log_text();
        (log.contains("mqtt: connection to") || log.contains("mqtt: cannot reach")).then_some(())
    })
    .await;
    // farmcam keeps serving HTTP while the broker is gone.
    assert_eq!(get(d.main, "/cameras/p1/snapshot").await.status, 200);
    broker.restart();
    // The restarted broker lost every retained message: farmcam says it all again.
    let mut sub = Sub::connect(broker.port, &["farmcam/#", "homeassistant/#"], None).await;
    let status = sub
        .wait_for(
            Duration::from_secs(40),
            "status again",
            is("farmcam/testnode/status"),
        )
        .await;
    assert_eq!(status.text(), "online");
    sub.wait_for(
        WAIT,
        "discovery again",
        is("homeassistant/camera/testnode_p1/config"),
    )
    .await;
    let snap = sub
        .wait_for(WAIT, "snapshots again", is("farmcam/testnode/p1/snapshot"))
        .await;
    assert_eq!(decode_jpeg(&snap.payload), (160, 120));
    eventually(WAIT, "the second connection logged", || {
        (d.log_text().matches("mqtt: connected").count() >= 2).then_some(())
    })
    .await;
    let log = d.log_text();
    assert_eq!(log.matches("mqtt: connected").count(), 2, "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_test_ca_and_a_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    test_ca(dir.path());
    let d = dir.path().display();
    let broker = Mosquitto::start(&format!(
        "listener {{extra_port}} 127.0.0.1\ncafile {d}/ca.pem\ncertfile {d}/server.pem\nkeyfile {d}/server.key\n\
         require_certificate true\n"
    ));
    let mut sub = Sub::connect(broker.port, &["farmcam/#"], None).await;
    let url = format!("mqtts://127.0.0.1:{}", broker.extra_port);
    let daemon = Daemon::start(&config(
        "",
        &format!(
            "{}[[camera]]\nid = \"p1\"\nsource = \"test:\"\nsize = \"160x120\"\n",
            mqtt_section(
                &url,
                &format!(
                    "ca_file = \"{d}/ca.pem\"\nclient_cert = \"{d}/client.pem\"\n\
                     client_key = \"{d}/client.key\"\nsnapshot_interval = \"1s\""
                )
            )
        ),
    ));
    let snap = sub
        .wait_for(WAIT, "snapshot over TLS", is("farmcam/testnode/p1/snapshot"))
        .await;
    assert_eq!(decode_jpeg(&snap.payload), (160, 120));
    assert!(daemon.log_text().contains(&format!("mqtt: connected to {url}")));

    // Without the CA, the broker's certificate is not trusted: a clear error, HTTP still fine.
    let other = tempfile::tempdir().unwrap();
    test_ca(other.path());
    let daemon = Daemon::start(&config(
        "",
        &format!(
            "{}[[camera]]\nid = \"p1\"\nsource = \"test:\"\nsize = \"160x120\"\n",
            mqtt_section(&url, &format!("ca_file = \"{}/ca.pem\"", other.path().display()))
        ),
    ));
    eventually(WAIT, "TLS error logged", || {
        daemon.log_text().contains("TLS with").then_some(())
    })
    .await;
    assert_eq!(get(daemon.main, "/cameras/p1/snapshot").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_are_one_clear_line_and_http_keeps_serving() {
    const PASSWORD: &str = "Corr3ct-H0rse";
    const WRONG: &str = "Wr0ng-B4ttery";
    let dir = tempfile::tempdir().unwrap();
    let pwfile = dir.path().join("passwords");
    mosquitto_password_file(&pwfile, "farm", PASSWORD);
    let broker = Mosquitto::start(&format!(
        "password_file {}\nallow_anonymous false\n",
        pwfile.display()
    ));
    let secret = dir.path().join("mqtt-password");
    std::fs::write(&secret, format!("{WRONG}\n")).unwrap();
    let d = Daemon::start_with_log(
        &config(
            "",
            &format!(
                "{}[[camera]]\nid = \"p1\"\nsource = \"test:\"\nsize = \"160x120\"\n",
                mqtt_section(
                    &broker.url(),
                    &format!("username = \"farm\"\npassword_file = \"{}\"", secret.display())
                )
            ),
        ),
        "debug",
    );
    eventually(WAIT, "refusal logged", || {
        d.log_text().contains("refused the login").then_some(())
    })
    .await;
    let r = get(d.main, "/cameras/p1/snapshot").await;
    assert_eq!(r.status, 200);
    // Retries go on (1 s, 2 s, … apart): wait for two more refusals, said at debug level.
    eventually(WAIT, "repeated refusals", || {
        (d.log_text().matches("refused the login").count() >= 3).then_some(())
    })
    .await;
    let log = d.log_text();
    let loud = log
        .lines()
        .filter(|l| l.contains("refused the login") && l.contains("WARN"))
        .count();
    assert_eq!(loud, 1, "one warning, repeats at debug:\n{log}");
    assert!(log.contains("check [mqtt] username and password"));
    assert!(!log.contains(WRONG) && !log.contains(PASSWORD), "{log}");

    // The right password (same broker) works.
    std::fs::write(&secret, PASSWORD).unwrap();
    let _ok = Daemon::start(&config(
        "",
        &format!(
            "{}[[camera]]\nid = \"p1\"\nsource = \"test:\"\nsize = \"160x120\"\n",
            mqtt_section(
                &broker.url(),
                &format!("username = \"farm\"\npassword_file = \"{}\"", secret.display())
            )
        ),
    ));
    let mut sub = Sub::connect(
        broker.port,
        &["farmcam/testnode/status"],
        Some(("farm", PASSWORD)),
    )
    .await;
    assert_eq!(sub.wait_for(WAIT, "online", |_| true).await.text(), "online");
}

/// Viewers and MQTT share one upstream; a frozen broker never slows the viewers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewers_and_mqtt_share_one_upstream_and_a_stuck_broker_slows_nothing() {
    let broker = Mosquitto::start("");
    let mut sub = Sub::connect(broker.port, &["farmcam/testnode/p1/snapshot"], None).await;
    let d = Daemon::start(&config(
        "",
        &format!(
            "{}[[camera]]\nid = \"p1\"\nsource = \"test:\"\nsize = \"320x240\"\nfps = 10\n",
            mqtt_section(&broker.url(), "snapshot_interval = \"1s\"")
        ),
    ));
    let mut viewer = Stream::open(d.main, "GET /cameras/p1/stream HTTP/1.1\r\nHost: x\r\n\r\n").await;
    viewer.next_part().await.unwrap();
    for _ in 0..3 {
        sub.wait_for(WAIT, "snapshot", |_| true).await;
    }
    let c = d.camera("p1").await;
    assert_eq!(c["upstream_opens"], 1, "{c}");

    // Freeze the broker: the viewer still gets every frame at 10 fps.
    unsafe { libc::kill(broker.pid() as i32, libc::SIGSTOP) };
    let start = std::time::Instant::now();
    let first = viewer.next_part().await.unwrap().seq();
    let mut last = first;
    while start.elapsed() < Duration::from_secs(3) {
        last = viewer.next_part().await.unwrap().seq();
    }
    unsafe { libc::kill(broker.pid() as i32, libc::SIGCONT) };
    assert!(
        last - first >= 25,
        "{} frames in 3 s with the broker frozen",
        last - first
    );
    assert_eq!(d.camera("p1").await["upstream_opens"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_snapshot_is_skipped_without_dropping_the_connection() {
    let broker = Mosquitto::start("");
    let mut sub = Sub::connect(broker.port, &["farmcam/#"], None).await;
    let d = Daemon::start(&config(
        "",
        &format!(
            "{}[[camera]]\nid = \"big\"\nsource = \"test:\"\nsize = \"1280x720\"\n\
             [[camera]]\nid = \"small\"\nsource = \"test:\"\nsize = \"64x48\"\n",
            mqtt_section(
                &broker.url(),
                "snapshot_interval = \"1s\"\nmax_packet_size = \"8KiB\""
            )
        ),
    ));
    // The big camera's first snapshot is refused (the pattern takes a moment to prepare)...
    eventually(WAIT, "oversized snapshot refused", || {
        d.log_text()
            .contains("larger than mqtt.max_packet_size")
            .then_some(())
    })
    .await;
    // ...and later ones too (said once a minute), while the small camera keeps publishing over
    // the same connection.
    for _ in 0..3 {
        let m = sub
            .wait_for(WAIT, "small snapshot", is("farmcam/testnode/small/snapshot"))
            .await;
        assert_eq!(decode_jpeg(&m.payload), (64, 48));
    }
    assert!(!sub
        .seen
        .iter()
        .any(|m| m.topic == "farmcam/testnode/big/snapshot"));
    d.logged("larger than mqtt.max_packet_size").await;
    let log = d.log_text();
    assert_eq!(
        log.matches("larger than mqtt.max_packet_size").count(),
        1,
        "{log}"
    );
    assert_eq!(
        log.matches("mqtt: connected").count(),
        1,
        "the connection stayed up: {log}"
    );
}

/// A camera that cannot be opened stays unavailable in Home Assistant between its attempts: its
/// pump stops after each failed snapshot attempt (idle), and availability follows whether the
/// camera can give a picture, not whether a pump happens to run. Before, each idle spell
/// published "online" while last_error still said why the camera was down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_camera_stays_unavailable_between_attempts() {
    let broker = Mosquitto::start("");
    let mut sub = Sub::connect(broker.port, &["farmcam/#"], None).await;
    let _d = Daemon::start(&config(
        "",
        &format!(
            "{}[[camera]]\nid = \"down\"\nsource = \"test:offline\"\nsize = \"160x120\"\nidle_grace = \"0s\"\n",
            mqtt_section(&broker.url(), "snapshot_interval = \"1s\"")
        ),
    ));
    let idle_after_failing = |m: &Msg| {
        m.topic == "farmcam/testnode/down/state"
            && serde_json::from_slice::<serde_json::Value>(&m.payload)
                .is_ok_and(|s| s["state"] == "idle" && s["last_error"].is_string())
    };
    // Two idle spells after failures, with attempts in between.
    sub.wait_for(WAIT, "idle after a failed attempt", idle_after_failing)
        .await;
    sub.wait_for(WAIT, "idle after the next attempt", idle_after_failing)
        .await;
    let availability: Vec<String> = sub
        .seen
        .iter()
        .filter(|m| m.topic == "farmcam/testnode/down/availability")
        .map(Msg::text)
        .collect();
    // Before its first attempt nothing is known against it; once it failed, it stays offline.
    let first_failure = availability.iter().position(|a| a == "offline");
    assert!(
        first_failure.is_some_and(|i| availability[i..].iter().all(|a| a == "offline")),
        "availability flapped: {availability:?}"
    );
}

/// Timelapses over MQTT: started and stopped by commands (as a script or an automation sends
/// them), the finished one published retained with its absolute URL, and a Home Assistant sensor
/// announced for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timelapses_are_commanded_and_published() {
    let broker = Mosquitto::start("");
    let mut sub = Sub::connect(broker.port, &["farmcam/#", "homeassistant/sensor/#"], None).await;
    let dir = tempfile::tempdir().unwrap();
    let _d = Daemon::start(&config(
        "public_url = \"http://farm.local:8080\"",
        &format!(
            "{}[timelapse]\ndir = \"{}\"\ninterval = \"300ms\"\nfps = 10\nhold = \"0s\"\n\
             [[camera]]\nid = \"p1\"\nsource = \"test:\"\nsize = \"160x120\"\n",
            mqtt_section(&broker.url(), "snapshot_interval = \"off\""),
            dir.path().display()
        ),
    ));
    let sensor = sub
        .wait_for(
            WAIT,
            "the timelapse sensor",
            is("homeassistant/sensor/testnode_p1_timelapse/config"),
        )
        .await
        .json();
    assert_eq!(sensor["state_topic"], "farmcam/testnode/p1/timelapse", "{sensor}");
    assert_eq!(sensor["value_template"], "{{ value_json.url }}");
    // Announced after farmcam subscribed to the commands.
    sub.client
        .publish(
            "farmcam/testnode/p1/timelapse/start",
            rumqttc::QoS::AtLeastOnce,
            false,
            r#"{"printer":"mk4","file":"cube.gcode"}"#,
        )
        .await
        .unwrap();
    let spool = eventually(WAIT, "pictures spooled", || {
        let d = std::fs::read_dir(dir.path())
            .ok()?
            .flatten()
            .find(|e| e.path().extension().is_some_and(|x| x == "spool"))?;
        (std::fs::read_dir(d.path()).ok()?.count() >= 4).then(|| d.path())
    })
    .await;
    assert!(
        spool
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("mk4_cube_"),
        "{spool:?}"
    );
    sub.client
        .publish(
            "farmcam/testnode/p1/timelapse/stop",
            rumqttc::QoS::AtLeastOnce,
            false,
            "complete",
        )
        .await
        .unwrap();
    let done = sub
        .wait_for(
            WAIT,
            "the finished timelapse",
            is("farmcam/testnode/p1/timelapse"),
        )
        .await;
    let v = done.json();
    assert_eq!(v["state"], "ready", "{v}");
    assert_eq!(
        (&v["printer"], &v["file"], &v["outcome"], &v["trigger"]),
        (
            &"mk4".into(),
            &"cube.gcode".into(),
            &"complete".into(),
            &"mqtt".into()
        )
    );
    let name = v["name"].as_str().unwrap();
    assert_eq!(v["url"], format!("http://farm.local:8080/timelapses/{name}.mp4"));
    assert!(dir.path().join(format!("{name}.mp4")).is_file());
    // Retained: a dashboard connecting later gets the latest timelapse of the camera.
    let mut later = Sub::connect(broker.port, &["farmcam/testnode/p1/timelapse"], None).await;
    let kept = later
        .wait_for(
            WAIT,
            "the retained timelapse",
            is("farmcam/testnode/p1/timelapse"),
        )
        .await;
    assert!(kept.retain);
    assert_eq!(kept.json()["name"], name);
}
