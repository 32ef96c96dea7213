//! Lights over serial ports (tokio-serial): on before a camera opens, off `off_delay` after the
//! last camera using the light closed (see [`crate::lit`]: the light's part of a camera's source).
//!
//! Each light counts the pumps using it. One task per serial port owns the port (opened
//! exclusively) and serialises the commands of every light on it; it reconciles what each light
//! should be with what it is, so a port that comes back (replugged, renumbered by-id link
//! restored) gets the right state at once. A missing or failing port never affects a camera:
//! it is logged once a minute and retried with backoff.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{watch, Notify};
use tokio::time::{sleep, sleep_until, timeout, Instant};
use tokio_serial::{SerialPortBuilderExt, SerialStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::config::{LightConfig, Protocol};
use crate::events::{EventBus, LightState};
use crate::util::backoff::Backoff;
use crate::util::log_limit::{held_back, LogLimit};

/// A pump waits at most this long for its light's "on" command to be written before opening
/// the camera (a failing port must not delay the camera more than that).
pub const ON_WAIT: Duration = Duration::from_secs(1);
/// At shutdown, lights that are on get this long to be switched off.
const SHUTDOWN_OFF: Duration = Duration::from_secs(1);

/// A light as `/api/cameras` and MQTT show it.
#[derive(Clone, Debug, Serialize)]
pub struct LightStatus {
    pub id: String,
    pub state: LightState,
    /// Cameras whose pumps hold it on.
    pub users: usize,
    pub error: Option<String>,
}

#[derive(Clone, Debug)]
struct Actual {
    state: LightState,
    /// Wall-clock time the "on" command completed.
    on_since: Option<SystemTime>,
    error: Option<String>,
}

struct Want {
    users: usize,
    on: bool,
    /// Pending switch-off (the last user left at `off_at - off_delay`).
    off_at: Option<Instant>,
}

pub struct Light {
    pub config: LightConfig,
    want: Mutex<Want>,
    actual: watch::Sender<Actual>,
    /// The port task's wake-up (shared by every light on the port).
    wake: Arc<Notify>,
    events: Arc<EventBus>,
    /// Cameras that use this light, for events.
    cameras: Vec<String>,
}

/// A hold on a light: it is on while anyone holds it, and goes off `off_delay` after the last
/// hold is dropped, however the holder ends (closed, stopped, or unwound by a panic).
pub struct LightHold(Arc<Light>);

impl Drop for LightHold {
    fn drop(&mut self) {
        let light = &self.0;
        {
            let mut w = light.want.lock().unwrap();
            w.users = w.users.saturating_sub(1);
            if w.users == 0 {
                w.off_at = Some(Instant::now() + light.config.off_delay);
            }
        }
        light.wake.notify_one();
    }
}

impl Light {
    /// Hold the light on (cancelling a pending switch-off); see [`Light::wait_on`].
    pub fn hold(self: &Arc<Self>) -> LightHold {
        {
            let mut w = self.want.lock().unwrap();
            w.users += 1;
            w.on = true;
            w.off_at = None;
        }
        self.wake.notify_one();
        LightHold(self.clone())
    }

    /// Wait, at most [`ON_WAIT`], until the light's "on" command was written (or the port is
    /// known unavailable). Dropping the wait (a camera stopped meanwhile) is fine.
    pub async fn wait_on(&self) {
        let mut rx = self.actual.subscribe();
        let _ = timeout(
            ON_WAIT,
            rx.wait_for(|a| matches!(a.state, LightState::On | LightState::Unavailable)),
        )
        .await;
    }

    /// When a frame must have been captured for a snapshot to count as lit: `settle` after the
    /// light came on. None when the light is not on (nothing to wait for).
    pub fn settled_at(&self) -> Option<SystemTime> {
        let a = self.actual.borrow();
        match a.state {
            LightState::On => a.on_since.map(|t| t + self.config.settle),
            _ => None,
        }
    }

    pub fn status(&self) -> LightStatus {
        let a = self.actual.borrow().clone();
        LightStatus {
            id: self.config.id.clone(),
            state: a.state,
            users: self.want.lock().unwrap().users,
            error: a.error,
        }
    }

    /// Apply a due switch-off; returns the next pending one.
    fn expire(&self, now: Instant) -> Option<Instant> {
        let mut w = self.want.lock().unwrap();
        match w.off_at {
            Some(t) if t <= now => {
                w.on = false;
                w.off_at = None;
                None
            }
            other => other,
        }
    }

    fn wants_on(&self) -> bool {
        self.want.lock().unwrap().on
    }

    fn set(&self, state: LightState, error: Option<String>) {
        let changed = self.actual.send_if_modified(|a| {
            let changed = a.state != state || a.error != error;
            if a.state != LightState::On && state == LightState::On {
                a.on_since = Some(SystemTime::now());
            }
            a.state = state;
            a.error = error;
            changed
        });
        if changed {
            for camera in &self.cameras {
                self.events.publish_light(camera, &self.config.id, state);
            }
        }
    }
}

/// Every configured light, by id.
#[derive(Clone, Default)]
pub struct Lights {
    lights: HashMap<String, Arc<Light>>,
}

impl Lights {
    /// Start one task per serial port. `cameras` maps light id → ids of cameras using it.
    pub fn start(
        configs: &[LightConfig],
        cameras: &HashMap<String, Vec<String>>,
        events: Arc<EventBus>,
        stop: CancellationToken,
        tracker: &TaskTracker,
    ) -> Lights {
        let mut by_port: HashMap<PathBuf, Vec<Arc<Light>>> = HashMap::new();
        let mut wakes: HashMap<PathBuf, Arc<Notify>> = HashMap::new();
        let mut lights = HashMap::new();
        for c in configs {
            let wake = wakes.entry(c.port.clone()).or_default().clone();
            let light = Arc::new(Light {
                config: c.clone(),
                want: Mutex::new(Want {
                    users: 0,
                    on: false,
                    off_at: None,
                }),
                actual: watch::channel(Actual {
                    state: LightState::Unknown,
                    on_since: None,
                    error: None,
                })
                .0,
                wake,
                events: events.clone(),
                cameras: cameras.get(&c.id).cloned().unwrap_or_default(),
            });
            by_port.entry(c.port.clone()).or_default().push(light.clone());
            lights.insert(c.id.clone(), light);
        }
        for (path, lights) in by_port {
            let wake = wakes[&path].clone();
            tracker.spawn(port_task(path, lights, wake, stop.clone()));
        }
        Lights { lights }
    }

    pub fn get(&self, id: &str) -> Option<Arc<Light>> {
        self.lights.get(id).cloned()
    }
}

/// Owns one serial port: opens it (retrying), switches its lights to what they should be, and
/// notices when the port goes away.
async fn port_task(path: PathBuf, lights: Vec<Arc<Light>>, wake: Arc<Notify>, stop: CancellationToken) {
    let shown = path.display().to_string();
    let ids = lights
        .iter()
        .map(|l| l.config.id.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    let baud = lights[0].config.baud;
    let mut backoff = Backoff::default();
    let mut repeats = LogLimit::new();
    let mut warnings = LogLimit::new();
    let mut report = |lights: &[Arc<Light>], msg: String, retry: Duration| {
        for l in lights {
            l.set(LightState::Unavailable, Some(msg.clone()));
        }
        match repeats.check(&msg) {
            Some(n) => warn!(
                "light {ids}: {msg}{}; retrying in {retry:.1?} (cameras are not affected)",
                held_back(n)
            ),
            None => debug!("light {ids}: {msg}; retrying in {retry:.1?}"),
        }
    };
    'reopen: loop {
        if stop.is_cancelled() {
            return;
        }
        let mut port = match open(&path, baud) {
            Ok(p) => p,
            Err(e) => {
                let retry = backoff.next_delay();
                report(&lights, format!("cannot open {shown}: {e}"), retry);
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = sleep(retry) => continue 'reopen,
                }
            }
        };
        info!("light {ids}: {shown} open");
        let mut input = Vec::new();
        loop {
            let stopping = stop.is_cancelled();
            let now = Instant::now();
            let mut next_off: Option<Instant> = None;
            for l in &lights {
                if stopping {
                    l.want.lock().unwrap().on = false;
                } else if let Some(t) = l.expire(now) {
                    next_off = Some(next_off.map_or(t, |n| n.min(t)));
                }
            }
            // Reconcile: each light to what it should be.
            for l in &lights {
                let want = if l.wants_on() {
                    LightState::On
                } else {
                    LightState::Off
                };
                if l.actual.borrow().state == want {
                    continue;
                }
                let limit = if stopping {
                    SHUTDOWN_OFF
                } else {
                    Duration::from_secs(30)
                };
                match timeout(
                    limit,
                    switch(&mut port, &mut input, &l.config, want == LightState::On),
                )
                .await
                {
                    Ok(Ok(None)) => {
                        backoff.reset();
                        debug!("light {}: {:?}", l.config.id, want);
                        l.set(want, None);
                    }
                    Ok(Ok(Some(warning))) => {
                        // The printer did not confirm; the command was sent, so count it done
                        // rather than resend it forever.
                        if warnings.check(&warning).is_some() {
                            warn!("light {}: {warning}", l.config.id);
                        }
                        l.set(want, Some(warning));
                    }
                    Ok(Err(_)) | Err(_) if stopping => {
                        warn!("light {}: could not be switched off at shutdown", l.config.id);
                        return;
                    }
                    Ok(Err(e)) => {
                        let retry = backoff.next_delay();
                        report(&lights, format!("{shown} failed: {e}"), retry);
                        tokio::select! {
                            _ = stop.cancelled() => return,
                            _ = sleep(retry) => continue 'reopen,
                        }
                    }
                    Err(_) => {
                        let retry = backoff.next_delay();
                        report(
                            &lights,
                            format!("{shown} did not accept a command within {limit:?}"),
                            retry,
                        );
                        tokio::select! {
                            _ = stop.cancelled() => return,
                            _ = sleep(retry) => continue 'reopen,
                        }
                    }
                }
            }
            if stopping {
                return;
            }
            let mut buf = [0u8; 256];
            tokio::select! {
                _ = wake.notified() => {}
                _ = stop.cancelled() => {}
                _ = sleep_until(next_off.unwrap_or_else(Instant::now)), if next_off.is_some() => {}
                r = port.read(&mut buf) => match r {
                    // Chatter (a printer's temperature reports): ignored.
                    Ok(n) if n > 0 => {}
                    Ok(_) | Err(_) => {
                        let retry = backoff.next_delay();
                        let why = match r {
                            Err(e) => e.to_string(),
                            Ok(_) => "closed".to_string(),
                        };
                        report(&lights, format!("{shown} went away ({why})"), retry);
                        tokio::select! {
                            _ = stop.cancelled() => return,
                            _ = sleep(retry) => continue 'reopen,
                        }
                    }
                },
            }
        }
    }
}

fn open(path: &Path, baud: u32) -> tokio_serial::Result<SerialStream> {
    let mut port = tokio_serial::new(path.to_string_lossy(), baud)
        .data_bits(tokio_serial::DataBits::Eight)
        .parity(tokio_serial::Parity::None)
        .stop_bits(tokio_serial::StopBits::One)
        .flow_control(tokio_serial::FlowControl::None)
        .open_native_async()?;
    // One owner per port: a second program (or farmcam) opening it gets EBUSY.
    port.set_exclusive(true)?;
    Ok(port)
}

/// The bytes that switch a light.
pub fn command(protocol: &Protocol, on: bool) -> Vec<u8> {
    match protocol {
        Protocol::Lcus { channel } => {
            let v = u8::from(on);
            let sum = 0xa0u8.wrapping_add(*channel).wrapping_add(v);
            vec![0xa0, *channel, v, sum]
        }
        Protocol::Gcode { on: line_on, off, .. } => {
            format!("{}\n", if on { line_on } else { off }).into_bytes()
        }
        Protocol::Raw { on: b_on, off } => if on { b_on } else { off }.clone(),
    }
}

/// Send one command; for G-code wait for the firmware's `ok`. `Ok(Some(warning))`: sent but not
/// confirmed.
async fn switch(
    port: &mut SerialStream,
    input: &mut Vec<u8>,
    config: &LightConfig,
    on: bool,
) -> std::io::Result<Option<String>> {
    input.clear();
    port.write_all(&command(&config.protocol, on)).await?;
    port.flush().await?;
    let Protocol::Gcode {
        timeout: limit,
        on: l_on,
        off,
        ..
    } = &config.protocol
    else {
        return Ok(None);
    };
    let line = if on { l_on } else { off };
    let deadline = Instant::now() + *limit;
    let mut buf = [0u8; 256];
    loop {
        while let Some(nl) = input.iter().position(|&b| b == b'\n') {
            let got: Vec<u8> = input.drain(..=nl).collect();
            if String::from_utf8_lossy(&got).trim_start().starts_with("ok") {
                return Ok(None);
            }
        }
        match tokio::time::timeout_at(deadline, port.read(&mut buf)).await {
            Err(_) => {
                return Ok(Some(format!(
                    "no \"ok\" from the printer within {limit:?} after {line:?}"
                )))
            }
            Ok(Ok(0)) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "port closed",
                ))
            }
            Ok(Ok(n)) => input.extend_from_slice(&buf[..n]),
            Ok(Err(e)) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lcus_commands() {
        assert_eq!(
            command(&Protocol::Lcus { channel: 1 }, true),
            vec![0xa0, 0x01, 0x01, 0xa2]
        );
        assert_eq!(
            command(&Protocol::Lcus { channel: 1 }, false),
            vec![0xa0, 0x01, 0x00, 0xa1]
        );
        assert_eq!(
            command(&Protocol::Lcus { channel: 4 }, true),
            vec![0xa0, 0x04, 0x01, 0xa5]
        );
        assert_eq!(
            command(&Protocol::Lcus { channel: 8 }, false),
            vec![0xa0, 0x08, 0x00, 0xa8]
        );
    }
}
