//! Talking to systemd (`Type=notify`): READY once listeners are bound, a STATUS line kept
//! current, WATCHDOG pings only while the runtime and every running pump's supervisor are
//! responsive, STOPPING at shutdown. Without `NOTIFY_SOCKET` (not under systemd) all of it is a
//! no-op.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use sd_notify::NotifyState;
use tokio::time::{interval, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info};

use crate::events::CameraState;
use crate::outputs::mqtt::Mqtt;
use crate::registry::{Camera, Registry};

/// How often the STATUS line is refreshed (sent only when it changed).
const STATUS_EVERY: Duration = Duration::from_secs(2);

fn notify(state: &[NotifyState]) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    if let Err(e) = sd_notify::notify(false, state) {
        debug!("sd_notify: {e}");
    }
}

pub fn ready(status: &str) {
    notify(&[NotifyState::Ready, NotifyState::Status(status)]);
}

pub fn reloading() {
    notify(&[
        NotifyState::Reloading,
        NotifyState::Status("reloading the configuration"),
    ]);
}

pub fn stopping() {
    notify(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
}

/// "4 cameras, 2 live, 5 viewers, mqtt connected".
pub fn status_line(registry: &Registry, mqtt: Option<&Mqtt>) -> String {
    let cameras = registry.cameras();
    let statuses: Vec<_> = cameras.iter().map(|c| c.status()).collect();
    let live = statuses.iter().filter(|s| s.state == CameraState::Live).count();
    let offline = statuses
        .iter()
        .filter(|s| s.state == CameraState::Offline)
        .count();
    let viewers: usize = statuses.iter().map(|s| s.viewers).sum();
    let mut line = format!("{} cameras, {live} live, {viewers} viewers", cameras.len());
    if offline > 0 {
        line.push_str(&format!(", {offline} offline"));
    }
    if let Some(m) = mqtt {
        line.push_str(if m.connected() {
            ", mqtt connected"
        } else {
            ", mqtt disconnected"
        });
    }
    line
}

/// Keeps STATUS current and feeds the watchdog (if `WATCHDOG_USEC` asks for it) until `stop`.
pub async fn run(registry: Arc<Registry>, mqtt: Option<Arc<Mqtt>>, stop: CancellationToken) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    let watchdog = watchdog_interval();
    if let Some(every) = watchdog {
        info!("systemd watchdog: pinging every {every:?} while every pump is responsive");
    }
    let mut check = Watchdog::default();
    let mut status_tick = interval(STATUS_EVERY);
    let mut dog_tick = interval(watchdog.unwrap_or(Duration::from_secs(3600)));
    dog_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last_status = String::new();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = status_tick.tick() => {
                let line = status_line(&registry, mqtt.as_deref());
                if line != last_status {
                    notify(&[NotifyState::Status(&line)]);
                    last_status = line;
                }
            }
            _ = dog_tick.tick(), if watchdog.is_some() => {
                // This task running at all shows the runtime is alive; the pumps show themselves.
                match check.wedged(&registry.cameras()) {
                    None => notify(&[NotifyState::Watchdog]),
                    Some(camera) => {
                        if check.reported.insert(camera.clone()) {
                            error!(camera = %camera, "pump supervisor is not responding: not feeding the systemd watchdog");
                        }
                    }
                }
            }
        }
    }
}

/// Half of `WATCHDOG_USEC`, as sd_watchdog_enabled(3) reads it: `WATCHDOG_PID`, when set, must be
/// this process.
fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.parse::<u32>().ok()? != std::process::id() {
            return None;
        }
    }
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}

/// Remembers each running pump's heartbeat count between watchdog checks.
#[derive(Default)]
pub struct Watchdog {
    seen: HashMap<String, u64>,
    reported: std::collections::HashSet<String>,
}

impl Watchdog {
    /// A camera whose running pump made no heartbeat since the previous check, if any. Call at
    /// intervals longer than [`crate::pump::HEARTBEAT`].
    pub fn wedged(&mut self, cameras: &[Arc<Camera>]) -> Option<String> {
        let mut wedged = None;
        let mut now = HashMap::new();
        for c in cameras {
            if let Some(beats) = c.heartbeat() {
                if self.seen.get(c.id()) == Some(&beats) && wedged.is_none() {
                    wedged = Some(c.id().to_string());
                }
                now.insert(c.id().to_string(), beats);
            }
        }
        self.seen = now;
        if wedged.is_none() {
            self.reported.clear();
        }
        wedged
    }
}
