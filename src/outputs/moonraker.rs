//! Moonraker registration: each camera appears in the webcam list of the configured Moonraker
//! instances (what Mainsail and Fluidd show), without anyone typing URLs.
//!
//! farmcam marks the entries it creates (`extra_data.farmcam`: the gateway's name and the camera),
//! updates them in place by `uid` when a camera changes, deletes them when a camera is removed,
//! and never touches an entry it did not create (a name already taken by a hand-made entry gets
//! " (farmcam)" appended). A Moonraker that is down (printers are switched off) is retried with
//! backoff; once it answers, the list is brought up to date, and checked again every minute (so
//! a Moonraker whose database was reset gets the cameras back).

use std::sync::Arc;
use std::time::Duration;

use hyper::Method;
use serde_json::{json, Value};
use tokio::sync::Notify;
use tokio::time::{sleep, timeout};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::config::{MoonrakerConfig, MoonrakerService};
use crate::moonraker_api::call;
use crate::registry::{Camera, Registry};
use crate::util::backoff::Backoff;
use crate::util::log_limit::{held_back, LogLimit};

/// The list is checked again this often while Moonraker answers.
const RESYNC: Duration = Duration::from_secs(60);

/// The running registrations.
pub struct Moonraker {
    changed: Arc<Notify>,
    stop: CancellationToken,
    tracker: TaskTracker,
}

/// Start keeping the cameras in every configured Moonraker; `None` when there is none.
pub fn start(configs: &[MoonrakerConfig], registry: Arc<Registry>) -> Option<Moonraker> {
    if configs.is_empty() {
        return None;
    }
    let m = Moonraker {
        changed: Arc::new(Notify::new()),
        stop: CancellationToken::new(),
        tracker: TaskTracker::new(),
    };
    for c in configs {
        info!("moonraker: registering cameras at {}", c.url);
        m.tracker.spawn(keep(
            c.clone(),
            registry.clone(),
            m.changed.clone(),
            m.stop.clone(),
        ));
    }
    Some(m)
}

impl Moonraker {
    /// The camera set changed (reload): bring every list up to date now.
    pub fn cameras_changed(&self) {
        self.changed.notify_waiters();
    }

    /// Stop without waiting (a reload replaces the registrations; requests in flight end within
    /// their own timeout).
    pub fn cancel(&self) {
        self.stop.cancel();
        self.tracker.close();
    }

    /// Stop (bounded); the entries stay registered for when farmcam is back.
    pub async fn stop(&self) {
        self.stop.cancel();
        self.tracker.close();
        let _ = timeout(Duration::from_secs(2), self.tracker.wait()).await;
    }
}

async fn keep(
    config: MoonrakerConfig,
    registry: Arc<Registry>,
    changed: Arc<Notify>,
    stop: CancellationToken,
) {
    let mut backoff = Backoff::default();
    let mut said = LogLimit::new();
    loop {
        let notified = changed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        // A stopped registration (replaced at a reload) makes no further change, not even the
        // rest of a pass in flight: it would undo what its successor just wrote.
        let synced = tokio::select! {
            _ = stop.cancelled() => return,
            r = sync(&config, &registry) => r,
        };
        let delay = match synced {
            Ok(n) => {
                if n > 0 {
                    info!("moonraker: {} is up to date ({n} change(s))", config.url);
                }
                backoff.reset();
                RESYNC
            }
            Err(e) => {
                let d = backoff.next_delay();
                match said.check(&e) {
                    Some(n) => warn!("moonraker: {e}{}; retrying in {d:.1?}", held_back(n)),
                    None => debug!("moonraker: {e}; retrying in {d:.1?}"),
                }
                d
            }
        };
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = notified => {}
            _ = sleep(delay) => {}
        }
    }
}

/// One pass: read the list, then add, update and delete farmcam's own entries. Returns how many
/// changes were made.
async fn sync(config: &MoonrakerConfig, registry: &Registry) -> Result<usize, String> {
    let list = call(config, Method::GET, "/server/webcams/list", None).await?;
    let entries = list["result"]["webcams"]
        .as_array()
        .cloned()
        .ok_or_else(|| format!("{} answered without a webcam list: is it Moonraker?", config.url))?;
    let ours = |e: &Value| e["extra_data"]["farmcam"]["gateway"] == config.gateway;
    let mut changes = 0;
    let wanted: Vec<_> = registry
        .cameras()
        .into_iter()
        .filter(|c| {
            config
                .cameras
                .as_ref()
                .is_none_or(|ids| ids.iter().any(|id| id == c.id()))
        })
        .collect();
    for cam in &wanted {
        let mine = entries
            .iter()
            .find(|e| ours(e) && e["extra_data"]["farmcam"]["camera"] == cam.id());
        let name = cam.config().name.clone();
        // Never take the name of an entry someone else made (Moonraker would update it).
        let taken = entries
            .iter()
            .any(|e| !ours(e) && e["name"].as_str() == Some(name.as_str()));
        let name = if taken { format!("{name} (farmcam)") } else { name };
        let base = format!("{}/cameras/{}", config.farmcam_url, cam.id());
        let (service, stream_url) = if webrtc(config, cam) {
            // camera-streamer's signalling, which both players' `webrtc-camerastreamer` POST to.
            ("webrtc-camerastreamer", format!("{base}/webrtc"))
        } else {
            ("mjpegstreamer-adaptive", format!("{base}/stream"))
        };
        let mut desired = json!({
            "name": name,
            "location": "printer",
            "service": service,
            "target_fps": cam.config().fps.unwrap_or(15),
            "target_fps_idle": 5,
            "stream_url": stream_url,
            "snapshot_url": format!("{base}/snapshot"),
            // farmcam turns the picture itself (`rotate`, `flip`): frontends must not turn it
            // again. The aspect ratio is the turned picture's.
            "rotation": 0,
            "flip_horizontal": false,
            "flip_vertical": false,
            "aspect_ratio": aspect_ratio(cam.output_size()),
            "extra_data": { "farmcam": { "gateway": config.gateway, "camera": cam.id() } },
        });
        match mine {
            Some(e) if same(e, &desired) => {}
            Some(e) => {
                desired["uid"] = e["uid"].clone();
                call(config, Method::POST, "/server/webcams/item", Some(desired)).await?;
                info!(camera = %cam.id(), "moonraker: updated at {}", config.url);
                changes += 1;
            }
            None => {
                call(config, Method::POST, "/server/webcams/item", Some(desired)).await?;
                info!(camera = %cam.id(), "moonraker: added to {}", config.url);
                changes += 1;
            }
        }
    }
    for e in entries.iter().filter(|e| ours(e)) {
        let camera = e["extra_data"]["farmcam"]["camera"].as_str().unwrap_or("");
        if wanted.iter().any(|c| c.id() == camera) {
            continue;
        }
        let Some(uid) = e["uid"]
            .as_str()
            .filter(|u| u.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
        else {
            continue;
        };
        call(
            config,
            Method::DELETE,
            &format!("/server/webcams/item?uid={uid}"),
            None,
        )
        .await?;
        info!(camera, "moonraker: removed from {}", config.url);
        changes += 1;
    }
    Ok(changes)
}

/// Whether `cam` is registered for WebRTC: its `moonraker_service`, or (`auto`) whether it sends
/// H.264/H.265; never while WebRTC is off.
fn webrtc(config: &MoonrakerConfig, cam: &Camera) -> bool {
    config.webrtc
        && match cam.config().moonraker_service {
            MoonrakerService::Mjpeg => false,
            MoonrakerService::Webrtc => true,
            MoonrakerService::Auto => cam.sends_coded_video(),
        }
}

/// `"16:9"` for 1280x720, `"9:16"` turned; Moonraker's default (`"4:3"`) when not known yet.
fn aspect_ratio(size: Option<crate::frame::Size>) -> String {
    let Some(s) = size.filter(|s| s.width > 0 && s.height > 0) else {
        return "4:3".into();
    };
    let (mut a, mut b) = (s.width, s.height);
    while b != 0 {
        (a, b) = (b, a % b);
    }
    format!("{}:{}", s.width / a, s.height / a)
}

/// Whether Moonraker's entry already says what farmcam would register.
fn same(entry: &Value, desired: &Value) -> bool {
    [
        "name",
        "service",
        "target_fps",
        "stream_url",
        "snapshot_url",
        "location",
        "rotation",
        "flip_horizontal",
        "flip_vertical",
        "aspect_ratio",
    ]
    .iter()
    .all(|k| entry[k] == desired[k])
}
