//! `farmcam run`: wire configuration, cameras and listeners together; stop cleanly on a signal.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::signal::unix::{signal, SignalKind};
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use crate::config::{Config, ConfigError};
use crate::events::EventBus;
use crate::light::Lights;
use crate::outputs::http::{self, Server};
use crate::registry::Registry;

/// Upstreams get this long to close at shutdown; HTTP connections the rest of the 3 s budget.
const PUMPS_GRACE: Duration = Duration::from_millis(1500);
const HTTP_GRACE: Duration = Duration::from_millis(1000);

/// Read and check a configuration as `farmcam run`, `farmcam check` and every reload do: the
/// file itself (see [`crate::config::load`]), then what can only be checked by opening files it
/// names (MQTT TLS certificates and keys, the CA certificates Prusa Connect is checked with).
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let config = crate::config::load(path)?;
    let invalid = |e: String| ConfigError::Invalid {
        problems: vec![format!("{}: {e}", path.display())],
    };
    if let Some(m) = &config.mqtt {
        crate::outputs::mqtt::options(m).map_err(invalid)?;
    }
    if !config.prusa_connect.cameras.is_empty() {
        crate::outputs::prusa_connect::tls_config(&config.prusa_connect.endpoint).map_err(invalid)?;
    }
    Ok(config)
}

/// Run until SIGTERM or SIGINT. Errors (e.g. an address in use) are one line for the user.
pub async fn run(mut config: Config, path: &Path) -> anyhow::Result<()> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    for why in config.warnings() {
        warn!("{why}");
    }
    let shutdown = CancellationToken::new();
    let events = Arc::new(EventBus::default());
    let light_tasks = TaskTracker::new();
    let mut light_users: HashMap<String, Vec<String>> = HashMap::new();
    for c in &config.cameras {
        if let Some(l) = &c.light {
            light_users.entry(l.clone()).or_default().push(c.id.clone());
        }
    }
    let lights = Lights::start(
        &config.lights,
        &light_users,
        events.clone(),
        shutdown.clone(),
        &light_tasks,
    );
    // The decoder helper is this program (`farmcam decode-helper`), owned by this daemon.
    let decoder = crate::source::coded::libav::SharedDecoder::this_program();
    let registry = Arc::new(Registry::new(
        &config.cameras,
        events,
        &lights,
        shutdown.clone(),
        decoder,
    ));
    let listeners = http::bind(&config, &registry).await?;
    for l in &listeners {
        info!("listening on http://{} ({})", l.local_addr(), l.describe());
    }
    let timelapses = config.timelapse.clone().map(|t| {
        info!("timelapse: keeping timelapses in {}", t.dir.display());
        crate::timelapse::Timelapses::start(t, config.defaults.ffmpeg.clone(), registry.clone(), &shutdown)
    });
    let mqtt = match &config.mqtt {
        Some(m) => {
            let options = crate::outputs::mqtt::options(m).map_err(anyhow::Error::msg)?;
            info!("mqtt: publishing to {} under {}", m.url, m.topic_prefix);
            Some(Arc::new(crate::outputs::mqtt::start(
                m,
                options,
                registry.clone(),
                timelapses.clone(),
                config.http.public_url.clone(),
            )))
        }
        None => None,
    };
    let mut moonraker = crate::outputs::moonraker::start(&config.moonrakers, registry.clone());
    let mut print_triggers = timelapses
        .as_ref()
        .map(|t| crate::timelapse::moonraker::start(&config.moonrakers, t));
    let mut bambu_triggers = timelapses
        .as_ref()
        .map(|t| crate::timelapse::bambu::start(&config.cameras, t));
    let prusa = crate::outputs::prusa_connect::PrusaConnect::new(registry.clone(), &config.node_id);
    prusa.apply(&config);
    let webrtc_tasks = TaskTracker::new();
    let webrtc = match &config.webrtc {
        None => Ok(None),
        Some(w) => match crate::outputs::webrtc::WebRtc::start(w, shutdown.clone(), &webrtc_tasks).await {
            Ok(rtc) => Ok(Some(rtc)),
            Err(e) => {
                // MJPEG and everything else still work; WebRTC requests say why they cannot.
                error!("{e}");
                Err(e)
            }
        },
    };
    // RTSP out: the port is bound here (a port in use stops the start, like HTTP's).
    let rtsp = match &config.rtsp {
        None => None,
        Some(r) => {
            let bound = crate::outputs::rtsp::bind(r).await.map_err(anyhow::Error::msg)?;
            Some(crate::outputs::rtsp::Rtsp::new(bound, r, registry.clone()))
        }
    };
    let server = Server::start(
        listeners,
        &config,
        registry.clone(),
        http::Services {
            mqtt: mqtt.clone(),
            prusa: prusa.clone(),
            webrtc,
            rtsp,
            timelapses: timelapses.clone(),
        },
        shutdown.clone(),
    );
    check_ffmpeg(&config).await;
    info!(
        "farmcam {} ready: {} camera(s): {}",
        env!("CARGO_PKG_VERSION"),
        config.cameras.len(),
        config
            .cameras
            .iter()
            .map(|c| c.id.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );

    if config.cameras.is_empty() {
        warn!(
            "no cameras configured{}: add [[camera]] blocks to {} (`farmcam devices` prints them for USB cameras) and run systemctl reload farmcam",
            if config.defaults.auto_v4l2 { " and no USB (V4L2) camera found" } else { "" },
            path.display()
        );
    } else if config.cameras_found > 0 {
        info!("no [[camera]] in {}: serving the USB (V4L2) cameras found; `systemctl reload farmcam` looks again", path.display());
    }
    // Listeners are bound and the configuration applied: tell systemd, then keep it informed.
    crate::systemd::ready(&crate::systemd::status_line(&registry, mqtt.as_deref()));
    let systemd = tokio::spawn(crate::systemd::run(
        registry.clone(),
        mqtt.clone(),
        shutdown.clone(),
    ));
    let sig = loop {
        tokio::select! {
            _ = term.recv() => break "SIGTERM",
            _ = int.recv() => break "SIGINT",
            _ = hup.recv() => {
                let before = config.moonrakers.clone();
                config = reload(config, path, &registry, &server, mqtt.as_deref(), moonraker.as_ref());
                prusa.apply(&config);
                if let Some(t) = &timelapses {
                    // The Bambu printers the cameras name now.
                    if let Some(old) = bambu_triggers.take() {
                        old.stop().await;
                    }
                    bambu_triggers = Some(crate::timelapse::bambu::start(&config.cameras, t));
                }
                if config.moonrakers != before {
                    // New Moonraker settings: the registrations start over with them.
                    if let Some(m) = moonraker.take() {
                        m.cancel();
                    }
                    moonraker = crate::outputs::moonraker::start(&config.moonrakers, registry.clone());
                    if let Some(t) = &timelapses {
                        if let Some(old) = print_triggers.take() {
                            old.stop().await;
                        }
                        print_triggers = Some(crate::timelapse::moonraker::start(&config.moonrakers, t));
                    }
                }
            }
        }
    };
    let started = Instant::now();
    info!("{sig}: shutting down");
    crate::systemd::stopping();
    shutdown.cancel();
    let _ = systemd.await;
    let mqtt_stopped = async {
        if let Some(m) = &mqtt {
            m.stop().await;
        }
        if let Some(m) = &moonraker {
            m.stop().await;
        }
        prusa.stop().await;
        if let Some(p) = print_triggers.take() {
            p.stop().await;
        }
        if let Some(b) = bambu_triggers.take() {
            b.stop().await;
        }
        if let Some(t) = &timelapses {
            t.shutdown().await;
        }
    };
    // Lights still on are switched off (each port task gives up after a second); WebRTC
    // sessions end (their cameras are released).
    light_tasks.close();
    webrtc_tasks.close();
    let (closed, (), lights_off, _) = tokio::join!(
        registry.shutdown(PUMPS_GRACE),
        mqtt_stopped,
        timeout(PUMPS_GRACE, light_tasks.wait()),
        timeout(PUMPS_GRACE, webrtc_tasks.wait())
    );
    if !closed {
        warn!("some upstreams did not close within {PUMPS_GRACE:?}");
    }
    if lights_off.is_err() {
        warn!("some light ports did not answer at shutdown");
    }
    if !server.wait(HTTP_GRACE).await {
        warn!("some connections did not finish within {HTTP_GRACE:?}");
    }
    info!("stopped in {} ms", started.elapsed().as_millis());
    Ok(())
}

/// SIGHUP: re-read and validate the file. An invalid file is rejected (problems logged, the
/// running configuration kept). Otherwise cameras are reconciled: unchanged ones untouched, new
/// ones added, changed ones restarted, removed ones stopped. Access settings (`[http.auth]`,
/// `allowed_hosts`, `allowed_origins`), `[[wall.gateway]]` and Prusa Connect uploads apply at
/// once: a revoked token or user stops working with the reload. Listener, MQTT, light and
/// `[timelapse]` settings take effect at the next
/// restart (said in the log). Returns the configuration now in force.
fn reload(
    current: Config,
    path: &Path,
    registry: &Registry,
    server: &Server,
    mqtt: Option<&crate::outputs::mqtt::Mqtt>,
    moonraker: Option<&crate::outputs::moonraker::Moonraker>,
) -> Config {
    crate::systemd::reloading();
    // An empty file is a truncated write or a full disk, not "remove every camera".
    let blank = std::fs::read_to_string(path).is_ok_and(|t| {
        t.lines()
            .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
    });
    if blank {
        error!(
            "reload: configuration rejected, the running one is kept: {} is empty (a truncated write or a full disk?); to serve no camera, say so with at least one setting",
            path.display()
        );
        crate::systemd::ready(&crate::systemd::status_line(registry, mqtt));
        return current;
    }
    let new = match load(path) {
        Ok(new) => new,
        Err(e) => {
            for line in e.lines() {
                error!("reload: configuration rejected, the running one is kept: {line}");
            }
            crate::systemd::ready(&crate::systemd::status_line(registry, mqtt));
            return current;
        }
    };
    let r = registry.apply(&new.cameras);
    if let Some(m) = mqtt {
        m.cameras_changed(&r.started, &r.removed);
    }
    if let Some(m) = moonraker {
        m.cameras_changed();
    }
    info!(
        "reload: {} camera(s) unchanged, {} added, {} restarted, {} removed{}",
        r.kept,
        r.added,
        r.restarted,
        r.removed.len(),
        if r.removed.is_empty() {
            String::new()
        } else {
            format!(" ({})", r.removed.join(", "))
        }
    );
    for why in new.warnings() {
        warn!("reload: {why}");
    }
    if server.reload(&new) {
        info!("reload: access settings ([http.auth], allowed_hosts, allowed_origins) and [[wall.gateway]] applied");
    }
    // What applies at once is in force now; the rest of [http] waits for a restart.
    let http = crate::config::HttpConfig {
        auth: new.http.auth.clone(),
        allowed_origins: new.http.allowed_origins.clone(),
        allowed_hosts: new.http.allowed_hosts.clone(),
        ..current.http.clone()
    };
    let mut later = Vec::new();
    if new.http != http {
        later.push("[http] (listen, limits, timeouts, public_url, default_camera)");
    }
    if new.mqtt != current.mqtt {
        later.push("[mqtt]");
    }
    if new.lights != current.lights {
        later.push("[[light]]");
    }
    if new.webrtc != current.webrtc {
        later.push("[webrtc]");
    }
    if new.rtsp != current.rtsp {
        later.push("[rtsp]");
    }
    if new.timelapse != current.timelapse {
        later.push("[timelapse]");
    }
    let listen = |c: &Config| {
        c.cameras
            .iter()
            .map(|c| (c.id.clone(), c.listen))
            .filter(|(_, l)| l.is_some())
            .collect::<Vec<_>>()
    };
    if listen(&new) != listen(&current) {
        later.push("camera listen ports");
    }
    if !later.is_empty() {
        warn!(
            "reload: changes to {} take effect when farmcam restarts",
            later.join(", ")
        );
    }
    crate::systemd::ready(&crate::systemd::status_line(registry, mqtt));
    // What is in force: the new cameras, Moonraker registrations, Prusa Connect uploads, access
    // settings and gateways; the old listeners, MQTT and lights.
    Config {
        cameras: new.cameras,
        moonrakers: new.moonrakers,
        prusa_connect: new.prusa_connect,
        wall_gateways: new.wall_gateways,
        http,
        ..current
    }
}

/// Probe ffmpeg once at start-up when a camera needs it. Missing ffmpeg is not fatal (the other
/// cameras work, and these show why they are offline); it is said once, here, in plain words.
async fn check_ffmpeg(config: &Config) {
    let users = config.ffmpeg_cameras();
    if users.is_empty() {
        return;
    }
    // Chosen (and cleared of scripts that dead farmcams left) now, not at a camera's first open.
    if let Err(e) = crate::source::ffmpeg::private_dir() {
        error!("{e}; cameras with a password in their URL cannot start");
    }
    let program = &config.defaults.ffmpeg;
    match crate::source::ffmpeg::probe(program).await {
        Ok(p) => info!(
            "{} at {} (RTSP socket timeout option: {})",
            p.version,
            program.display(),
            p.rtsp_timeout_option.unwrap_or("none")
        ),
        Err(e) => error!("{e}; cameras {} cannot start until then", users.join(", ")),
    }
}
