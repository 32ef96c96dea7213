//! One farm, several controllers: two farmcam gateways, each publishing to its own mosquitto,
//! both bridged into a central mosquitto that the farm's dashboards read (three real brokers,
//! two farmcam processes). The bridge configuration is the one README shows.

mod common;

use std::time::{Duration, Instant};

use common::mqtt::{Mosquitto, Msg, Sub};
use common::{config, decode_jpeg, get, Daemon};

const WAIT: Duration = Duration::from_secs(30);

/// The bridge section of a gateway's own mosquitto, as README gives it: only this gateway's
/// topics go both ways (bridging all of `farmcam/#` both ways from several brokers would send
/// every message round in circles).
fn bridge(central: u16, node: &str) -> String {
    format!(
        "connection farm-central-{node}\n\
         address 127.0.0.1:{central}\n\
         topic farmcam/{node}/# both 1\n\
         topic homeassistant/# out 1\n\
         topic homeassistant/status in 1\n\
         cleansession true\n\
         try_private true\n\
         restart_timeout 1 5\n"
    )
}

fn gateway(broker: &Mosquitto, node: &str, camera: &str, interval: &str) -> Daemon {
    Daemon::start(&config(
        "",
        &format!(
            "[mqtt]\nurl = \"{}\"\nnode_id = \"{node}\"\nsnapshot_interval = \"{interval}\"\n\
             [[camera]]\nid = \"{camera}\"\nsource = \"test:\"\nsize = \"320x240\"\nfps = 5\n",
            broker.url()
        ),
    ))
}

fn is(topic: String) -> impl Fn(&Msg) -> bool {
    move |m| m.topic == topic
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_bridged_into_one_broker() {
    let central = Mosquitto::start("");
    let mut sub = Sub::connect(central.port, &["farmcam/#", "homeassistant/#"], None).await;
    let local_a = Mosquitto::start(&bridge(central.port, "gwa"));
    let local_b = Mosquitto::start(&bridge(central.port, "gwb"));
    let a = gateway(&local_a, "gwa", "p1", "1s");
    let mut b = gateway(&local_b, "gwb", "p2", "off");

    // Both gateways' discovery, availability, state and snapshots reach the central broker,
    // each under its own node id.
    for (node, cam) in [("gwa", "p1"), ("gwb", "p2")] {
        let disc = sub
            .wait_for(
                WAIT,
                "discovery",
                is(format!("homeassistant/camera/{node}_{cam}/config")),
            )
            .await
            .json();
        assert_eq!(disc["unique_id"], format!("farmcam_{node}_{cam}"));
        assert_eq!(disc["topic"], format!("farmcam/{node}/{cam}/snapshot"));
        let online = move |m: &Msg| m.topic == format!("farmcam/{node}/status") && m.text() == "online";
        if !sub.seen.iter().any(&online) {
            sub.wait_for(WAIT, "online", online).await;
        }
        sub.wait_for(WAIT, "state", is(format!("farmcam/{node}/{cam}/state")))
            .await;
    }
    // Status and metrics name the gateway, for a central Prometheus scraping them all.
    for (d, node) in [(&a, "gwa"), (&b, "gwb")] {
        let cams = d.cameras_json().await;
        assert!(
            cams.as_array().unwrap().iter().all(|c| c["node_id"] == node),
            "{cams}"
        );
        let metrics = String::from_utf8(get(d.main, "/metrics").await.body).unwrap();
        assert!(
            metrics.contains(&format!("farmcam_gateway_info{{node_id=\"{node}\"")),
            "{metrics}"
        );
    }
    let snap = sub
        .wait_for(
            WAIT,
            "gateway A's periodic snapshot",
            is("farmcam/gwa/p1/snapshot".into()),
        )
        .await;
    assert_eq!(decode_jpeg(&snap.payload), (320, 240));

    // A snapshot request published on the central broker reaches gateway B (which publishes
    // none by itself), and its answer comes back.
    let asked = Instant::now();
    sub.publish("farmcam/gwb/p2/snapshot/request", b"snapshot", false)
        .await;
    let answer = sub
        .wait_for(WAIT, "gateway B's requested snapshot", |m| {
            m.topic == "farmcam/gwb/p2/snapshot" && m.at > asked
        })
        .await;
    assert_eq!(decode_jpeg(&answer.payload), (320, 240));

    // Gateway B dies: only its entities become unavailable (its broker sends its last will
    // over the bridge); gateway A's keep coming.
    let died = Instant::now();
    b.signal(libc::SIGKILL);
    let _ = b.wait_exit(WAIT);
    sub.wait_for(WAIT, "gateway B offline", |m| {
        m.topic == "farmcam/gwb/status" && m.text() == "offline" && m.at > died
    })
    .await;
    sub.wait_for(WAIT, "gateway A still publishing", |m| {
        m.topic == "farmcam/gwa/p1/snapshot" && m.at > died
    })
    .await;
    assert!(
        !sub.seen
            .iter()
            .any(|m| m.topic == "farmcam/gwa/status" && m.text() == "offline"),
        "gateway A stays available"
    );
    // Nothing goes round in circles: each retained discovery message arrived a handful of
    // times at most (once per announcement), not hundreds.
    let discovery = sub
        .seen
        .iter()
        .filter(|m| m.topic == "homeassistant/camera/gwa_p1/config")
        .count();
    assert!(discovery <= 3, "discovery of A seen {discovery} times");
    drop(a);
}
