//! Farm timelapses: every print of every printer, from the cameras watching it (issue 42).
//!
//! A timelapse is started and stopped by a trigger (the API, an MQTT command, a Moonraker
//! printer's `print_stats`, a Bambu printer's report) for one camera. While it records, one task
//! takes a picture every `interval`, or one per layer when the trigger says layers, through the
//! camera's snapshot path (an H.264 camera decodes a keyframe; nothing runs in between beyond
//! what the camera already does), and spools it to disk at once ([`spool`]). When it stops, one
//! render worker makes the video ([`render`], at idle priority), keeps it, removes the pictures,
//! and keeps the directory within its budget (oldest videos first). A recording farmcam did not
//! finish (a crash, a power loss, a restart) is rendered when farmcam starts again; a render that
//! fails is said and tried again, its pictures kept.

pub mod bambu;
pub mod moonraker;
pub mod print;
pub mod render;
pub mod spool;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::sync::{broadcast, watch, Notify};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::config::TimelapseConfig;
use crate::registry::Registry;
use spool::{Meta, Spool};

/// A failed render is tried again after this long.
const RETRY: Duration = Duration::from_secs(60);
/// The budget is checked again after this many pictures of a recording.
const BUDGET_EVERY: u64 = 20;

/// The running tasks of a kind of trigger (Moonraker's printers, Bambu's), stopped together.
#[derive(Default)]
pub struct Triggers {
    stop: CancellationToken,
    tracker: TaskTracker,
}

impl Triggers {
    pub async fn stop(self) {
        self.stop.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }
}

/// What starts a timelapse, and what it knows of the print.
#[derive(Clone, Debug, Default)]
pub struct StartRequest {
    pub printer: Option<String>,
    pub file: Option<String>,
    /// `api`, `mqtt`, `moonraker`, `bambu`.
    pub trigger: &'static str,
}

/// Why a request about a timelapse was refused; the message names the fix.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error("no camera {0:?}; GET /api/cameras lists them")]
    NoCamera(String),
    #[error("camera {0:?} is not recording a timelapse")]
    NotRecording(String),
    #[error("no timelapse {0:?}; GET /api/timelapses lists them")]
    NoTimelapse(String),
    #[error("timelapse {0:?} is still recording; stop it first (POST /cameras/CAMERA/timelapse/stop)")]
    Recording(String),
    #[error("cannot write the timelapse to {0}: {1}")]
    Disk(String, String),
}

/// A camera's timelapses in a word, for `/api/cameras` and the wall.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Brief {
    pub recording: bool,
    /// Its latest ready timelapse's video, relative to farmcam's address.
    pub latest_url: Option<String>,
    pub latest_name: Option<String>,
}

/// One timelapse as `/api/timelapses` and MQTT show it.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Info {
    pub name: String,
    pub camera: String,
    pub printer: Option<String>,
    pub file: Option<String>,
    pub trigger: String,
    /// `recording`, `waiting` (for its video), `rendering`, `failed` (tried again later), `ready`.
    pub state: &'static str,
    pub started: String,
    pub stopped: Option<String>,
    pub outcome: Option<String>,
    pub pictures: u64,
    /// Seconds of video (ready timelapses).
    pub duration: Option<f64>,
    /// Bytes: the video's, else the pictures'.
    pub size: u64,
    /// Where the video is served (ready timelapses), relative to farmcam's address.
    pub url: Option<String>,
    /// Why its last render failed.
    pub error: Option<String>,
}

struct Recording {
    meta: Meta,
    spool: Spool,
    pictures: Arc<AtomicU64>,
    /// The latest layer the trigger reported.
    layer: watch::Sender<Option<u64>>,
    /// Cancelled to stop; the task then writes the outcome and hands the spool to the renderer.
    stop: CancellationToken,
    outcome: Arc<Mutex<String>>,
}

#[derive(Default)]
struct State {
    recording: HashMap<String, Recording>,
    rendering: Option<String>,
    /// Spools whose last render failed: why, and not before when to try again.
    failed: HashMap<String, (String, tokio::time::Instant)>,
}

pub struct Timelapses {
    config: TimelapseConfig,
    ffmpeg: PathBuf,
    registry: Arc<Registry>,
    state: Mutex<State>,
    render_wake: Notify,
    finished: broadcast::Sender<Info>,
    /// Each camera's latest ready timelapse (videos are listed once at start, then followed).
    latest: Mutex<HashMap<String, Info>>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
}

fn rfc3339(secs: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs)).to_string()
}

impl Timelapses {
    /// Start the renderer; recordings farmcam did not finish are stopped (`interrupted`) and
    /// rendered.
    pub fn start(
        config: TimelapseConfig,
        ffmpeg: PathBuf,
        registry: Arc<Registry>,
        shutdown: &CancellationToken,
    ) -> Arc<Timelapses> {
        let t = Arc::new(Timelapses {
            config,
            ffmpeg,
            registry,
            state: Mutex::default(),
            render_wake: Notify::new(),
            finished: broadcast::channel(16).0,
            latest: Mutex::default(),
            tracker: TaskTracker::new(),
            shutdown: shutdown.child_token(),
        });
        if let Err(e) = std::fs::create_dir_all(&t.config.dir) {
            warn!(
                "timelapse: cannot create {}: {e}; timelapses cannot be recorded until it exists and farmcam may write it",
                t.config.dir.display()
            );
        }
        spool::remove_leftovers(&t.config.dir);
        for (spool, mut meta) in spool::scan(&t.config.dir).spools {
            if meta.stopped.is_none() {
                meta.stopped = Some(spool::now());
                meta.outcome = Some("interrupted".into());
                let _ = spool.write_meta(&meta);
                info!(
                    "timelapse {}: farmcam stopped while it recorded ({} pictures); rendering it",
                    meta.name,
                    spool.pictures()
                );
            }
        }
        t.find_latest();
        t.tracker.spawn(t.clone().renderer());
        t
    }

    /// Finished timelapses as they are kept (for MQTT).
    pub fn finished(&self) -> broadcast::Receiver<Info> {
        self.finished.subscribe()
    }

    /// Start recording `camera`. Already recording: the running timelapse, unchanged.
    pub fn start_recording(self: &Arc<Self>, camera: &str, req: StartRequest) -> Result<Info, Refused> {
        let cam = self
            .registry
            .get(camera)
            .ok_or_else(|| Refused::NoCamera(camera.to_string()))?;
        let mut state = self.state.lock().unwrap();
        if let Some(r) = state.recording.get(camera) {
            return Ok(self.recording_info(r));
        }
        let started = SystemTime::now();
        let meta = Meta {
            name: spool::name(camera, req.printer.as_deref(), req.file.as_deref(), started),
            camera: camera.to_string(),
            printer: req.printer,
            file: req.file,
            trigger: req.trigger.to_string(),
            started: spool::now(),
            ..Default::default()
        };
        let spool = Spool::create(&self.config.dir, &meta)
            .map_err(|e| Refused::Disk(self.config.dir.display().to_string(), e.to_string()))?;
        let r = Recording {
            meta: meta.clone(),
            spool: spool.clone(),
            pictures: Arc::default(),
            layer: watch::Sender::new(None),
            stop: self.shutdown.child_token(),
            outcome: Arc::new(Mutex::new("interrupted".into())),
        };
        info!(
            camera,
            "timelapse {}: recording camera {camera} ({}{}), started by {}",
            meta.name,
            meta.printer.as_deref().unwrap_or("no printer"),
            meta.file.as_deref().map(|f| format!(", {f}")).unwrap_or_default(),
            meta.trigger
        );
        let info = self.recording_info(&r);
        self.tracker.spawn(self.clone().record(
            cam,
            spool,
            meta,
            r.pictures.clone(),
            r.layer.subscribe(),
            r.stop.clone(),
            r.outcome.clone(),
        ));
        state.recording.insert(camera.to_string(), r);
        Ok(info)
    }

    /// The trigger says the print reached `layer`: a picture, if pictures follow layers.
    pub fn layer(&self, camera: &str, layer: u64) {
        if let Some(r) = self.state.lock().unwrap().recording.get(camera) {
            r.layer.send_if_modified(|l| l.replace(layer) != Some(layer));
        }
    }

    /// Stop recording `camera` (`outcome`: how the print ended); its video is rendered next.
    pub fn stop_recording(&self, camera: &str, outcome: &str) -> Result<Info, Refused> {
        let mut state = self.state.lock().unwrap();
        let r = state
            .recording
            .remove(camera)
            .ok_or_else(|| Refused::NotRecording(camera.to_string()))?;
        *r.outcome.lock().unwrap() = outcome.to_string();
        r.stop.cancel();
        let mut info = self.recording_info(&r);
        info.state = "waiting";
        info.stopped = Some(rfc3339(spool::now()));
        info.outcome = Some(outcome.to_string());
        Ok(info)
    }

    /// A printer's report: start, a picture per layer, or stop the timelapses of its `cameras`
    /// (those with `timelapse = false` are left out), as [`print::Print`] says.
    pub fn follow(
        self: &Arc<Self>,
        printer: &str,
        cameras: &[String],
        print: &mut print::Print,
        report: print::Report,
        trigger: &'static str,
    ) {
        let cameras: Vec<&String> = cameras
            .iter()
            .filter(|c| self.registry.get(c).is_none_or(|cam| cam.config().timelapse))
            .collect();
        let recording = cameras.iter().any(|c| self.recording(c));
        for step in print.update(report, recording) {
            for camera in &cameras {
                match &step {
                    print::Step::Start { file } => {
                        let req = StartRequest {
                            printer: Some(printer.to_string()),
                            file: file.clone(),
                            trigger,
                        };
                        if let Err(e) = self.start_recording(camera, req) {
                            warn!("timelapse: printer {printer}: cannot record camera {camera}: {e}");
                        }
                    }
                    print::Step::Layer(n) => self.layer(camera, *n),
                    print::Step::Stop(outcome) => {
                        let _ = self.stop_recording(camera, outcome);
                    }
                }
            }
        }
    }

    /// Whether `camera` records now.
    pub fn recording(&self, camera: &str) -> bool {
        self.state.lock().unwrap().recording.contains_key(camera)
    }

    fn recording_info(&self, r: &Recording) -> Info {
        let mut info = self.info(&r.meta, "recording");
        info.pictures = r.pictures.load(Relaxed);
        info.size = r.spool.contents().1;
        info
    }

    fn info(&self, meta: &Meta, state: &'static str) -> Info {
        Info {
            name: meta.name.clone(),
            camera: meta.camera.clone(),
            printer: meta.printer.clone(),
            file: meta.file.clone(),
            trigger: meta.trigger.clone(),
            state,
            started: rfc3339(meta.started),
            stopped: meta.stopped.map(rfc3339),
            outcome: meta.outcome.clone(),
            pictures: meta.pictures.unwrap_or(0),
            duration: None,
            size: 0,
            url: None,
            error: None,
        }
    }

    fn video_info(&self, meta: &Meta, size: u64) -> Info {
        let mut info = self.info(meta, "ready");
        info.size = size;
        info.duration = meta
            .pictures
            .map(|n| n as f64 / self.config.fps as f64 + self.config.hold.as_secs_f64());
        info.url = Some(format!("/timelapses/{}.mp4", meta.name));
        info
    }

    /// Every timelapse: recording, waiting for or being rendered, and ready; oldest first.
    pub fn list(&self) -> Vec<Info> {
        let found = spool::scan(&self.config.dir);
        let state = self.state.lock().unwrap();
        let mut out: Vec<Info> = Vec::new();
        for (s, meta) in &found.spools {
            if let Some(r) = state.recording.values().find(|r| r.meta.name == meta.name) {
                out.push(self.recording_info(r));
                continue;
            }
            let (st, error) = if state.rendering.as_deref() == Some(&meta.name) {
                ("rendering", None)
            } else if let Some((why, _)) = state.failed.get(&meta.name) {
                ("failed", Some(why.clone()))
            } else {
                ("waiting", None)
            };
            let mut info = self.info(meta, st);
            (info.pictures, info.size) = s.contents();
            info.error = error;
            out.push(info);
        }
        for (_, meta, size) in &found.videos {
            out.push(self.video_info(meta, *size));
        }
        out.sort_by(|a, b| a.started.cmp(&b.started).then(a.name.cmp(&b.name)));
        out
    }

    /// What a camera's tile shows: whether it records, and its latest ready timelapse.
    pub fn brief(&self, camera: &str) -> Brief {
        let latest = self
            .latest
            .lock()
            .unwrap()
            .get(camera)
            .filter(|i| spool::video(&self.config.dir, &i.name).is_file())
            .cloned();
        Brief {
            recording: self.recording(camera),
            latest_url: latest.as_ref().and_then(|i| i.url.clone()),
            latest_name: latest.map(|i| i.name),
        }
    }

    /// Note the latest ready timelapse of each camera, from the directory.
    fn find_latest(&self) {
        let mut latest = HashMap::new();
        for (_, meta, size) in spool::scan(&self.config.dir).videos {
            latest.insert(meta.camera.clone(), self.video_info(&meta, size));
        }
        *self.latest.lock().unwrap() = latest;
    }

    /// The video of a ready timelapse.
    pub fn video(&self, name: &str) -> Option<PathBuf> {
        let path = spool::video(&self.config.dir, name);
        (spool::valid_name(name) && path.is_file()).then_some(path)
    }

    /// Remove a timelapse: its video, or the pictures of one waiting for its video.
    pub fn delete(&self, name: &str) -> Result<(), Refused> {
        if !spool::valid_name(name) {
            return Err(Refused::NoTimelapse(name.to_string()));
        }
        let state = self.state.lock().unwrap();
        if state.recording.values().any(|r| r.meta.name == name) || state.rendering.as_deref() == Some(name) {
            return Err(Refused::Recording(name.to_string()));
        }
        let video = spool::video(&self.config.dir, name);
        let spool = Spool {
            dir: Spool::path(&self.config.dir, name),
        };
        let disk = |e: std::io::Error| Refused::Disk(self.config.dir.display().to_string(), e.to_string());
        if video.is_file() {
            spool::remove_video(&self.config.dir, name).map_err(disk)?;
        } else if spool.dir.is_dir() {
            spool.remove().map_err(disk)?;
        } else {
            return Err(Refused::NoTimelapse(name.to_string()));
        }
        info!("timelapse {name}: deleted");
        drop(state);
        self.find_latest();
        Ok(())
    }

    /// One recording: a picture at start, then every interval (or per layer), until stopped.
    #[allow(clippy::too_many_arguments)]
    async fn record(
        self: Arc<Self>,
        cam: Arc<crate::registry::Camera>,
        spool: Spool,
        mut meta: Meta,
        pictures: Arc<AtomicU64>,
        mut layers: watch::Receiver<Option<u64>>,
        stop: CancellationToken,
        outcome: Arc<Mutex<String>>,
    ) {
        let interval = self.config.interval;
        let mut next = tokio::time::Instant::now();
        let mut by_layer = false;
        let mut low_disk = false;
        let mut n = spool.pictures();
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep_until(next), if !by_layer => {}
                changed = layers.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    if !self.config.per_layer {
                        continue;
                    }
                    by_layer = true;
                }
            }
            next = (next + interval).max(tokio::time::Instant::now());
            let free = spool::free_space(&spool.dir);
            if free.is_some_and(|f| f < self.config.min_free) {
                if !low_disk {
                    warn!(
                        "timelapse {}: not taking pictures: the disk holding {} has {} free, less than [timelapse] min_free ({}); free space or lower min_free",
                        meta.name,
                        self.config.dir.display(),
                        bytes(free.unwrap_or(0)),
                        bytes(self.config.min_free)
                    );
                    low_disk = true;
                }
                continue;
            }
            if low_disk {
                info!(
                    "timelapse {}: enough free space again; taking pictures",
                    meta.name
                );
                low_disk = false;
            }
            let Ok(frame) = cam.snapshot(None).await else {
                continue; // Offline: no picture (the placeholder is not one).
            };
            let path = spool.clone();
            let k = n + 1;
            let written = tokio::task::spawn_blocking(move || path.add(k, &frame.jpeg)).await;
            match written {
                Ok(Ok(())) => {
                    n = k;
                    pictures.store(n, Relaxed);
                    if n % BUDGET_EVERY == 0 {
                        self.keep_budget();
                    }
                }
                Ok(Err(e)) => warn!("timelapse {}: cannot keep picture {k}: {e}", meta.name),
                Err(_) => {}
            }
        }
        // Stopped by its trigger, or farmcam shuts down (then it stays a recording: rendered
        // when farmcam starts again, as after a crash).
        if self.shutdown.is_cancelled() {
            return;
        }
        meta.stopped = Some(spool::now());
        meta.outcome = Some(outcome.lock().unwrap().clone());
        if let Err(e) = spool.write_meta(&meta) {
            warn!("timelapse {}: cannot write its meta: {e}", meta.name);
        }
        info!(
            "timelapse {}: stopped ({}), {n} pictures; rendering",
            meta.name,
            meta.outcome.as_deref().unwrap_or("")
        );
        self.render_wake.notify_one();
    }

    /// Render stopped recordings one at a time, oldest first, until shutdown.
    async fn renderer(self: Arc<Self>) {
        loop {
            let next = {
                let state = self.state.lock().unwrap();
                let now = tokio::time::Instant::now();
                spool::scan(&self.config.dir).spools.into_iter().find(|(_, m)| {
                    m.stopped.is_some()
                        && !state.recording.values().any(|r| r.meta.name == m.name)
                        && state.failed.get(&m.name).is_none_or(|(_, at)| *at <= now)
                })
            };
            let Some((spool, meta)) = next else {
                tokio::select! {
                    _ = self.shutdown.cancelled() => return,
                    _ = self.render_wake.notified() => {}
                    _ = tokio::time::sleep(RETRY) => {}
                }
                continue;
            };
            if spool.pictures() == 0 {
                warn!(
                    "timelapse {}: no pictures were taken (the camera was offline, or the disk full); nothing to render",
                    meta.name
                );
                if let Err(e) = spool.remove() {
                    warn!("timelapse {}: cannot remove it: {e}", meta.name);
                    self.state.lock().unwrap().failed.insert(
                        meta.name.clone(),
                        (e.to_string(), tokio::time::Instant::now() + RETRY),
                    );
                }
                continue;
            }
            self.state.lock().unwrap().rendering = Some(meta.name.clone());
            let result = tokio::select! {
                _ = self.shutdown.cancelled() => return,
                r = self.render(&spool, meta.clone()) => r,
            };
            let mut state = self.state.lock().unwrap();
            state.rendering = None;
            match result {
                Ok(info) => {
                    state.failed.remove(&meta.name);
                    drop(state);
                    self.latest
                        .lock()
                        .unwrap()
                        .insert(info.camera.clone(), info.clone());
                    let _ = self.finished.send(info);
                    self.keep_budget();
                }
                Err(why) => {
                    warn!(
                        "timelapse {}: its video could not be made: {why}; its pictures are kept and it is tried again in {}",
                        meta.name,
                        humantime::format_duration(RETRY)
                    );
                    state
                        .failed
                        .insert(meta.name.clone(), (why, tokio::time::Instant::now() + RETRY));
                }
            }
        }
    }

    async fn render(&self, spool: &Spool, mut meta: Meta) -> Result<Info, String> {
        let pictures = spool.pictures();
        let tmp = self.config.dir.join(format!(".{}.mp4.tmp", meta.name));
        let started = std::time::Instant::now();
        render::render(&render::Job {
            ffmpeg: &self.ffmpeg,
            spool,
            pictures,
            fps: self.config.fps,
            hold: self.config.hold,
            out: &tmp,
        })
        .await?;
        meta.pictures = Some(pictures);
        spool::keep_video(&self.config.dir, &tmp, &meta)
            .map_err(|e| format!("cannot keep the video: {e}"))?;
        if let Err(e) = spool.remove() {
            warn!("timelapse {}: cannot remove its pictures: {e}", meta.name);
        }
        let size = std::fs::metadata(spool::video(&self.config.dir, &meta.name))
            .map(|m| m.len())
            .unwrap_or(0);
        info!(
            "timelapse {}: video ready, {pictures} pictures, {} (rendered in {:.1?})",
            meta.name,
            bytes(size),
            started.elapsed()
        );
        Ok(self.video_info(&meta, size))
    }

    /// Remove the oldest videos while the directory holds more than `max_size`.
    fn keep_budget(&self) {
        let found = spool::scan(&self.config.dir);
        let mut total: u64 = found.videos.iter().map(|(_, _, s)| s).sum::<u64>()
            + found.spools.iter().map(|(s, _)| s.contents().1).sum::<u64>();
        let mut removed = false;
        for (_, meta, size) in &found.videos {
            if total <= self.config.max_size {
                break;
            }
            removed = true;
            match spool::remove_video(&self.config.dir, &meta.name) {
                Ok(()) => {
                    warn!(
                        "timelapse {}: removed ({}), the oldest, to keep the timelapses within [timelapse] max_size ({})",
                        meta.name,
                        bytes(*size),
                        bytes(self.config.max_size)
                    );
                    total -= size;
                }
                Err(e) => warn!("timelapse {}: cannot remove it: {e}", meta.name),
            }
        }
        if removed {
            self.find_latest();
        }
    }

    /// Stop recording (recordings stay on disk, rendered at the next start) and rendering.
    pub async fn shutdown(&self) {
        self.shutdown.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }
}

/// Bytes as people read them.
fn bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.1} GiB", n as f64 / (1u64 << 30) as f64),
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64),
        n => format!("{} KiB", n.div_ceil(1024)),
    }
}
