//! A camera's coded video for consumers that take it as it is (WebRTC viewers): the access units
//! its one connection yields, fanned out without a copy, and the latest keyframe with its
//! parameter sets, where every new consumer starts (a picture at once, not at the next keyframe).
//! Each unit carries a presentation time on one 90 kHz clock per camera (what RTP carries), made
//! from when it arrived, smoothed to the camera's own frame interval.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::{broadcast, watch};

use crate::media::h264::{AccessUnit, Codec};

/// Units a slow consumer may fall behind before it misses some (it then waits for the next
/// keyframe): about two seconds of 30 fps video.
const BACKLOG: usize = 64;
/// The group of pictures kept for new consumers is at most this long; a longer one keeps only
/// its keyframe (a new consumer then shows that picture and waits for the next keyframe).
pub const GROUP_MAX_UNITS: usize = 300;
const GROUP_MAX_BYTES: usize = 2 << 20;

/// One unit as consumers get it.
#[derive(Clone, Debug)]
pub struct Unit {
    pub codec: Codec,
    pub au: AccessUnit,
    /// Presentation time, 90 kHz ticks on this camera's unit clock.
    pub pts: u64,
    /// Its place among this camera's units: one more than the unit before, across reconnects
    /// (a consumer that joins a shared subscription skips what its start already had).
    pub seq: u64,
}

/// Where a new consumer starts: the latest keyframe (with parameter sets) and the units after it,
/// so that its decoder has every reference and shows the current picture at once.
#[derive(Debug, Default)]
pub struct Start {
    pub units: Vec<Arc<Unit>>,
    /// Whether `units` run up to now; if not (the group was too long to keep) only the keyframe is
    /// there, and the consumer waits for the next keyframe after it.
    pub complete: bool,
    /// The units were timed on the rate's grid as they came (an encoder's, see
    /// [`UnitFeed::time_by_arrival`]): their own times are steady already.
    pub on_grid: bool,
}

impl Start {
    /// The presentation times a consumer starting here gives its units: the latest unit's own,
    /// and the earlier ones whole steps of `rate` before it, so that a client's first packets
    /// are already at the camera's steady rate (the kept units may have been timed by their
    /// arrival, before the rate was known). Units timed on the grid keep their own times (a
    /// 10 fps camera encoded with a nominal 30 starts at 100 ms steps, not 33).
    pub fn steady_pts(&self, rate: Option<f64>) -> Vec<u64> {
        if self.on_grid {
            return self.units.iter().map(|u| u.pts).collect();
        }
        let Some(last) = self.units.last().map(|u| u.pts) else {
            return Vec::new();
        };
        let Some(step) = rate.filter(|r| *r > 0.0).map(|r| Clock::HZ / r) else {
            return self.units.iter().map(|u| u.pts).collect();
        };
        let n = self.units.len();
        (0..n)
            .map(|i| last.saturating_sub(((n - 1 - i) as f64 * step).round() as u64))
            .collect()
    }
}

#[derive(Debug, Default)]
struct Group {
    start: Start,
    bytes: usize,
    /// The last unit's [`Unit::seq`].
    seq: u64,
}

/// Presentation times from arrival times. Units come through a pipe, so they arrive in bursts
/// around the camera's steady rate (and all at once after ffmpeg's probing): each time is the
/// previous one plus a steady step, drift against the arrivals taken back slowly; a gap of several
/// steps (frames the camera did not send) is kept as a gap of whole steps, so that the times stay
/// on the camera's rate.
///
/// The step is known before the first consumer's first unit leaves (see [`UnitFeed::watch_codec`]):
/// the SPS's rate (H.264 VUI timing) where it has one, else the camera's configured `fps`, else
/// the arrivals' rate measured over the first units, rounded to whole frames per second. Once a
/// consumer follows the feed, the step is locked: it never changes under a session (a camera
/// sending slower than its SPS says shows as gaps), also across a reconnect, after which the
/// times go on from where they were (never backwards).
///
/// Where the camera's connection tells the camera's own time of each unit (farmcam's RTSP client:
/// RTP timestamps), a unit the camera timed one step after the previous is its next picture
/// however late this box read it (a busy core is not a gap), and the rate is measured on the
/// camera's clock, as long as that clock moves on with the units (some printers send frozen RTP
/// timestamps: then the arrivals, as for ffmpeg's pipe).
#[derive(Debug)]
struct Clock {
    origin: Instant,
    /// The rate the stream's SPS says (H.264 VUI timing), if any: the step from the first unit,
    /// while the arrivals agree with it.
    hint: Option<f64>,
    /// The camera's configured `fps`: the step when the SPS says none.
    configured: Option<f64>,
    /// The step consumers were given: kept while any follows the feed.
    locked: Option<f64>,
    /// The latest arrivals (ticks), at most [`Clock::WINDOW`]: their mean interval is the rate
    /// (unless the camera's clock says it, see [`Clock::window`]).
    arrivals: std::collections::VecDeque<f64>,
    /// The same units' times by the camera's clock, where its connection says.
    camera_times: std::collections::VecDeque<f64>,
    /// The camera's clock moves on with its units on this connection (some printers send frozen
    /// RTP timestamps; B-frames go back): until it does not, it is the one the rate is read on.
    camera_ok: bool,
    /// Units on this connection.
    units: u64,
    /// The latest presentation time, unrounded (given rounded); `None` before the first unit.
    exact: Option<f64>,
    /// Times are the arrivals put on the nominal rate's grid (an encoder's pictures, which come
    /// as the camera makes them, one by one): a camera slower than its nominal rate keeps its
    /// own pace in whole steps instead of being pressed onto one step per unit.
    by_arrival: bool,
    /// With `by_arrival`: where the grid starts (the first unit's time, on this connection).
    anchor: Option<f64>,
    /// The camera's own time of the latest unit (RTP, 90 kHz ticks), where its connection says.
    camera: Option<f64>,
}

impl Clock {
    const HZ: f64 = 90_000.0;
    /// Without a rate from the SPS or the config, the first units keep their arrival times and
    /// consumers wait for these many before they get any.
    const WARM_UP: u64 = 16;
    /// Arrivals the rate is measured over: long enough that units arriving in pairs bias it by
    /// less than half a percent.
    const WINDOW: usize = 128;
    /// Where times start: far from zero, so that a consumer's first units can be timed back from
    /// the latest one (see [`Start::steady_pts`]).
    const BASE: f64 = 90_000.0 * 3600.0;

    fn new() -> Clock {
        Clock {
            origin: Instant::now(),
            hint: None,
            configured: None,
            locked: None,
            arrivals: std::collections::VecDeque::with_capacity(Self::WINDOW),
            camera_times: std::collections::VecDeque::new(),
            camera_ok: true,
            units: 0,
            exact: None,
            by_arrival: false,
            anchor: None,
            camera: None,
        }
    }

    /// The times the rate is measured over: the camera's own while they move on steadily (a
    /// stalled read does not make the camera look slower than its SPS), else the arrivals.
    fn window(&self) -> &std::collections::VecDeque<f64> {
        if self.camera_ok && self.camera_times.len() >= 2 {
            &self.camera_times
        } else {
            &self.arrivals
        }
    }

    /// The mean interval of the units in the window (ticks).
    fn measured(&self) -> Option<f64> {
        let w = self.window();
        let (first, last) = (w.front()?, w.back()?);
        let n = w.len();
        (n >= 2 && last > first).then(|| (last - first) / (n - 1) as f64)
    }

    /// The presentation time of a unit that arrived `at`, which the camera timed `camera` (see
    /// [`UnitFeed::publish_timed`]).
    fn stamp(&mut self, at: Instant, camera: Option<f64>) -> u64 {
        let arrived = at.saturating_duration_since(self.origin).as_secs_f64() * Self::HZ + Self::BASE;
        self.units += 1;
        // The step as the earlier arrivals say (this one may be the end of a gap).
        let step = self.step();
        // The camera's own clock says this is its next picture, one step after the last: a late
        // arrival is then this box's delay (a busy core, a stalled read), not a gap in the video.
        let mut camera = camera.filter(|_| self.camera_ok);
        if let (Some(now), Some(last)) = (camera, self.camera) {
            // Frozen, going back, or leaping more than 4 s: not a clock to go by on this connection.
            if !(now > last && now - last <= 4.0 * Self::HZ) {
                self.camera_ok = false;
                self.camera_times.clear();
                camera = None;
            }
        }
        let last_camera = std::mem::replace(&mut self.camera, camera);
        let next_picture = match (camera, last_camera, step) {
            (Some(now), Some(last), Some(step)) => (now - last - step).abs() <= step / 2.0,
            _ => false,
        };
        if self.arrivals.len() == Self::WINDOW {
            self.arrivals.pop_front();
        }
        self.arrivals.push_back(arrived);
        if let Some(c) = camera {
            if self.camera_times.len() == Self::WINDOW {
                self.camera_times.pop_front();
            }
            self.camera_times.push_back(c);
        }
        let Some(last) = self.exact else {
            self.exact = Some(arrived.round());
            return arrived.round() as u64;
        };
        let pts = match step {
            // On the nominal rate's grid, where the arrival is: steady steps for a camera at
            // its rate (a player guessing the rate from the timestamps reads it), whole steps
            // apart for a slower one, never the same time twice.
            Some(step) if self.by_arrival => {
                let anchor = *self.anchor.get_or_insert(last);
                let snapped = anchor + ((arrived - anchor) / step).round() * step;
                snapped.max(last + step)
            }
            None if self.by_arrival => arrived,
            // The warm-up without a known rate: arrival times (nobody gets these units timed so).
            None => arrived,
            // The first unit after a reconnect: one step on, or where it arrived if later.
            Some(step) if self.units == 1 => arrived.max(last + step),
            Some(step) => {
                let predicted = last + step;
                let error = arrived - predicted;
                if next_picture && error.abs() <= Self::HZ {
                    // Within a second of the arrivals, the camera's word is taken: its next
                    // picture, one step on, however late this box got it (a gap or a drift
                    // read into a stall would show a player a rate the camera never had).
                    predicted
                } else if error > 4.0 * step {
                    // A gap (or a stall) of several frames: time jumps with it, by whole steps,
                    // and a measured rate is measured again from here (the SPS's is checked
                    // against the window as it is: a camera sending less than it announces
                    // shows as gaps).
                    if !self.uses_hint() {
                        self.arrivals.clear();
                        self.arrivals.push_back(arrived);
                        self.camera_times.clear();
                        self.camera_times.extend(camera);
                    }
                    last + step * ((arrived - last) / step).round()
                } else if error < -Self::HZ {
                    // More than a second ahead of the arrivals (a long burst): half steps until
                    // they catch up.
                    last + step / 2.0
                } else if error.abs() <= 2.0 * step {
                    // Steady steps while the arrivals are within two steps of them: jitter (a
                    // loaded box, a bursty pipe) changes nothing, so a player guessing the rate
                    // from the first timestamps reads the camera's (6000 ticks give 15/1; 6060
                    // would read 15000/1001).
                    predicted
                } else {
                    // Real drift beyond that is taken back slowly, at most 1 % of a step at a
                    // time, so that bursts through the pipe hardly show.
                    predicted + (error / 64.0).clamp(-step / 100.0, step / 100.0)
                }
            }
        };
        // Kept exact (a whole number of ticks per step only when rounded at the end).
        let pts = pts.max(last + 1.0);
        self.exact = Some(pts);
        pts.round() as u64
    }

    /// Whether the SPS's rate is the step: unless the arrivals (32 at least) come more than
    /// 10 % slower (a camera may announce more than it sends). Faster is a burst (what ffmpeg
    /// buffered while probing), not a rate.
    fn uses_hint(&self) -> bool {
        let Some(fps) = self.hint else { return false };
        match self.measured() {
            Some(m) if self.window().len() >= 32 => Self::HZ / m >= fps * 0.9,
            _ => true,
        }
    }

    /// The step between units (ticks): the locked one; else the SPS's rate while the arrivals
    /// agree with it; else the configured rate; else the measured rate after the warm-up.
    fn step(&self) -> Option<f64> {
        if let Some(step) = self.locked {
            return Some(step);
        }
        if let (true, Some(fps)) = (self.uses_hint(), self.hint) {
            return Some(Self::HZ / fps);
        }
        if let Some(fps) = self.configured {
            return Some(Self::HZ / fps);
        }
        if self.units <= Self::WARM_UP {
            return None;
        }
        self.measured().map(|m| Self::nominal(m.max(Self::HZ / 240.0)))
    }

    /// A consumer follows: the step stays as it is from now on (if known).
    fn lock(&mut self) {
        if self.locked.is_none() {
            self.locked = self.step();
        }
    }

    /// A new connection: its rate is learnt again (unless a consumer still follows: `keep`),
    /// and times go on from the last one.
    fn reconnect(&mut self, keep: bool) {
        self.hint = None;
        self.arrivals.clear();
        self.camera_times.clear();
        self.camera_ok = true;
        self.units = 0;
        self.anchor = None;
        self.camera = None;
        if !keep {
            self.locked = None;
        }
    }

    /// The step for a mean interval: a whole number of frames per second when the mean is
    /// within 1 % of one (cameras run at 5, 10, 15, 25, 30 fps: the pipe's jitter should not
    /// make 15 fps look like 14.98), else the mean itself.
    fn nominal(mean: f64) -> f64 {
        let fps = Self::HZ / mean;
        let whole = fps.round();
        if whole >= 1.0 && (fps - whole).abs() <= whole * 0.01 {
            Self::HZ / whole
        } else {
            mean
        }
    }

    /// Units per second, once known.
    fn rate(&self) -> Option<f64> {
        self.step().map(|s| Self::HZ / s)
    }
}

#[derive(Debug)]
pub struct UnitFeed {
    tx: broadcast::Sender<Arc<Unit>>,
    group: Mutex<Group>,
    clock: Mutex<Clock>,
    codec: watch::Sender<Option<Codec>>,
    /// The codec last seen on any connection (kept when it closes).
    seen: Mutex<Option<Codec>>,
    /// The picture size the latest SPS says (kept when the connection closes).
    size: Mutex<Option<(u32, u32)>>,
}

impl Default for UnitFeed {
    fn default() -> Self {
        UnitFeed {
            tx: broadcast::channel(BACKLOG).0,
            group: Mutex::new(Group::default()),
            clock: Mutex::new(Clock::new()),
            codec: watch::Sender::new(None),
            seen: Mutex::new(None),
            size: Mutex::new(None),
        }
    }
}

impl UnitFeed {
    /// A unit from the camera (costs one allocation when nobody takes units, and the group kept
    /// for new consumers).
    pub fn publish(&self, codec: Codec, au: &AccessUnit) {
        self.publish_arrived(codec, au, Instant::now(), None);
    }

    /// [`Self::publish`] of a unit the camera timed at `camera_time` (90 kHz ticks by its own
    /// clock, from any origin), when its connection says (RTP): see [`Clock::stamp`].
    pub fn publish_timed(&self, codec: Codec, au: &AccessUnit, camera_time: Option<f64>) {
        self.publish_arrived(codec, au, Instant::now(), camera_time);
    }

    /// [`Self::publish_timed`] of a unit that arrived `at`.
    fn publish_arrived(&self, codec: Codec, au: &AccessUnit, at: Instant, camera_time: Option<f64>) {
        let (pts, stepped) = {
            let mut clock = self.clock.lock().unwrap();
            if let Some(sps) = &au.sps {
                // Its start code first (4 bytes).
                clock.hint = crate::media::sps::frame_rate(codec, sps.get(4..).unwrap_or_default());
            }
            let pts = clock.stamp(at, camera_time);
            (pts, clock.step().is_some())
        };
        let mut group = self.group.lock().unwrap();
        group.seq += 1;
        let unit = Arc::new(Unit {
            codec,
            au: au.clone(),
            pts,
            seq: group.seq,
        });
        // A keyframe without its parameter sets cannot start a decoder on its own.
        if au.keyframe && au.sps.is_some() {
            group.bytes = au.data.len();
            group.start = Start {
                units: vec![unit.clone()],
                complete: true,
                on_grid: false,
            };
            *self.seen.lock().unwrap() = Some(codec);
            if let Some(sps) = &au.sps {
                // Its start code first (4 bytes).
                if let Some(size) = crate::media::sps::picture_size(codec, sps.get(4..).unwrap_or_default()) {
                    *self.size.lock().unwrap() = Some(size);
                }
            }
        } else if group.start.complete {
            if group.start.units.len() < GROUP_MAX_UNITS && group.bytes + au.data.len() <= GROUP_MAX_BYTES {
                group.bytes += au.data.len();
                group.start.units.push(unit.clone());
            } else {
                group.start.units.truncate(1);
                group.bytes = group.start.units[0].au.data.len();
                group.start.complete = false;
            }
        }
        // Ready for consumers once a keyframe is kept and the clock's step is known.
        if stepped {
            if let Some(c) = group.start.units.first().map(|u| u.codec) {
                self.codec.send_if_modified(|now| now.replace(c) != Some(c));
            }
        }
        // Sent under the lock: a consumer subscribing gets each unit once, in the group or after.
        let _ = self.tx.send(unit);
    }

    /// The camera's configured frame rate (`fps`): the clock's step when its SPS says none.
    pub fn set_configured_rate(&self, fps: Option<u32>) {
        self.clock.lock().unwrap().configured = fps.filter(|f| *f > 0).map(f64::from);
    }

    /// Time units by their arrival, on the nominal rate's grid (for an encoder's output: its
    /// pictures come one by one as the camera makes them, at whatever rate it runs).
    pub fn time_by_arrival(&self) {
        self.clock.lock().unwrap().by_arrival = true;
    }

    /// Where a new consumer starts, and every unit after it. The clock's step is locked from
    /// now on (see [`Clock`]).
    pub fn subscribe(&self) -> (Start, broadcast::Receiver<Arc<Unit>>) {
        let group = self.group.lock().unwrap();
        let mut clock = self.clock.lock().unwrap();
        clock.lock();
        let start = Start {
            units: group.start.units.clone(),
            complete: group.start.complete,
            on_grid: clock.by_arrival,
        };
        drop(clock);
        // Under the lock: no unit published in between is lost or seen twice.
        (start, self.tx.subscribe())
    }

    /// Where a new consumer would start now (the decoder replays it when it goes from keyframes
    /// to every picture).
    pub fn group(&self) -> Start {
        let group = self.group.lock().unwrap();
        Start {
            units: group.start.units.clone(),
            complete: group.start.complete,
            on_grid: self.clock.lock().unwrap().by_arrival,
        }
    }

    /// The codec this camera sent last time it was connected, if it ever sent coded video.
    pub fn seen(&self) -> Option<Codec> {
        *self.seen.lock().unwrap()
    }

    /// The codec of the latest keyframe on this connection (`None` until one arrived and the
    /// clock's step is known): the camera's coded video is ready for consumers once it is `Some`.
    pub fn watch_codec(&self) -> watch::Receiver<Option<Codec>> {
        self.codec.subscribe()
    }

    /// The picture size the camera's latest parameter sets say (`None` before any came).
    pub fn picture_size(&self) -> Option<(u32, u32)> {
        *self.size.lock().unwrap()
    }

    /// Units per second as they come now, on the camera's clock where its connection says
    /// (`None` while not connected, or before a few came).
    pub fn arrival_rate(&self) -> Option<f64> {
        let clock = self.clock.lock().unwrap();
        (clock.window().len() >= 8)
            .then(|| clock.measured())
            .flatten()
            .map(|m| Clock::HZ / m)
    }

    /// The camera's frame rate as its units arrive (`None` until a few came).
    pub fn rate(&self) -> Option<f64> {
        self.clock.lock().unwrap().rate()
    }

    /// Forget the kept group (the connection closed: a new one may change the stream). The
    /// clock goes on: times never run back for a consumer that stays across the reconnect.
    pub fn reset(&self) {
        let mut group = self.group.lock().unwrap();
        *group = Group::default();
        let following = self.tx.receiver_count() > 0;
        self.clock.lock().unwrap().reconnect(following);
        self.codec.send_replace(None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use std::time::Duration;

    impl Clock {
        /// A unit from a connection that does not say the camera's time (ffmpeg's pipe).
        fn stamp_at(&mut self, at: Instant) -> u64 {
            self.stamp(at, None)
        }
    }

    fn au(keyframe: bool, sps: bool, byte: u8) -> AccessUnit {
        AccessUnit {
            data: Bytes::from(vec![0, 0, 0, 1, byte]),
            keyframe,
            sps: sps.then(|| Bytes::from_static(&[0, 0, 0, 1, 0x67])),
        }
    }

    #[test]
    fn a_new_consumer_starts_at_the_latest_keyframe_with_parameter_sets() {
        let feed = UnitFeed::default();
        feed.set_configured_rate(Some(15));
        assert!(feed.subscribe().0.units.is_empty());
        // Before the first keyframe with parameter sets there is nothing to start from.
        feed.publish(Codec::H264, &au(false, false, 9));
        assert!(feed.subscribe().0.units.is_empty() && feed.watch_codec().borrow().is_none());
        feed.publish(Codec::H264, &au(true, true, 1));
        feed.publish(Codec::H264, &au(false, false, 2));
        // A keyframe without parameter sets does not start a new group.
        feed.publish(Codec::H264, &au(true, false, 3));
        let (start, mut rx) = feed.subscribe();
        let bytes: Vec<u8> = start.units.iter().map(|u| u.au.data[4]).collect();
        assert_eq!(bytes, [1, 2, 3]);
        assert!(start.complete);
        feed.publish(Codec::H264, &au(false, false, 4));
        assert_eq!(rx.try_recv().unwrap().au.data[4], 4);
        assert!(rx.try_recv().is_err(), "each unit once");
        assert_eq!(*feed.watch_codec().borrow(), Some(Codec::H264));
        feed.publish(Codec::H264, &au(true, true, 5));
        assert_eq!(feed.subscribe().0.units.len(), 1);
        feed.reset();
        assert_eq!(*feed.watch_codec().borrow(), None);
        assert_eq!(feed.seen(), Some(Codec::H264), "remembered after the connection");
        assert!(feed.subscribe().0.units.is_empty());
    }

    #[test]
    fn without_a_rate_consumers_wait_until_it_is_measured() {
        let feed = UnitFeed::default();
        feed.publish(Codec::H264, &au(true, true, 1));
        assert!(
            feed.watch_codec().borrow().is_none(),
            "no SPS rate, no configured fps yet"
        );
        for _ in 0..Clock::WARM_UP + 2 {
            std::thread::sleep(std::time::Duration::from_millis(2));
            feed.publish(Codec::H264, &au(false, false, 2));
        }
        assert_eq!(*feed.watch_codec().borrow(), Some(Codec::H264));
        assert!(feed.rate().is_some());
    }

    #[test]
    fn a_consumers_first_units_are_timed_at_the_steady_rate() {
        let feed = UnitFeed::default();
        feed.publish(Codec::H264, &au(true, true, 1));
        for _ in 0..Clock::WARM_UP + 2 {
            std::thread::sleep(std::time::Duration::from_millis(1));
            feed.publish(Codec::H264, &au(false, false, 2));
        }
        let (start, _) = feed.subscribe();
        let rate = feed.rate().unwrap();
        let pts = start.steady_pts(Some(rate));
        let step = (90_000.0 / rate).round() as i64;
        let steps: Vec<i64> = pts.windows(2).map(|w| w[1] as i64 - w[0] as i64).collect();
        assert!(steps.iter().all(|d| (d - step).abs() <= 1), "{step}: {steps:?}");
        assert_eq!(pts.last(), start.units.last().map(|u| &u.pts));
    }

    #[test]
    fn times_go_on_across_a_reconnect_at_the_locked_step() {
        let feed = UnitFeed::default();
        feed.set_configured_rate(Some(30));
        feed.publish(Codec::H264, &au(true, true, 1));
        let (_, mut rx) = feed.subscribe();
        assert_eq!(feed.rate(), Some(30.0));
        feed.publish(Codec::H264, &au(false, false, 2));
        let before = rx.try_recv().unwrap().pts;
        feed.reset();
        // The new connection's SPS says 15 fps: a following consumer keeps its step.
        feed.set_configured_rate(Some(15));
        feed.publish(Codec::H264, &au(true, true, 3));
        let after = rx.try_recv().unwrap().pts;
        assert!(after > before, "{before} {after}");
        assert_eq!(feed.rate(), Some(30.0));
    }

    #[test]
    fn presentation_times_keep_the_cameras_rate_through_bursts_and_jump_over_gaps() {
        let mut clock = Clock::new();
        let t0 = clock.origin;
        let ms = |n: u64| t0 + std::time::Duration::from_millis(n);
        // 25 fps arriving in pairs: 0, 0, 80, 80, 160, 160 … ms.
        let mut pts = Vec::new();
        for i in 0..200u64 {
            pts.push(clock.stamp_at(ms(i / 2 * 80)));
        }
        let steps: Vec<i64> = pts.windows(2).map(|w| w[1] as i64 - w[0] as i64).collect();
        let late = &steps[100..];
        assert!(
            late.iter().all(|&d| (3500..=3700).contains(&d)),
            "steady 25 fps steps: {late:?}"
        );
        assert_eq!(clock.rate(), Some(25.0));
        // Two seconds without units, then units again: the gap is kept, in whole steps.
        let before = *pts.last().unwrap();
        let after = clock.stamp_at(ms(100 * 80 + 2000));
        assert!(after - before > 150_000, "{before} {after}");
        let steps = (after - before) as f64 / 3600.0;
        assert!((steps - steps.round()).abs() < 0.01, "{before} {after}");
        assert!(clock.stamp_at(ms(100 * 80 + 2000)) > after, "never backwards");
    }

    #[test]
    fn the_sps_rate_paces_the_first_units_even_in_a_burst() {
        let mut clock = Clock::new();
        clock.hint = Some(15.0);
        let t0 = clock.origin;
        // ffmpeg hands on what it buffered while probing all at once, then the camera's pace.
        let mut pts: Vec<u64> = (0..10).map(|_| clock.stamp_at(t0)).collect();
        for i in 1..40u64 {
            pts.push(clock.stamp_at(t0 + std::time::Duration::from_micros(i * 66_667)));
        }
        let steps: Vec<u64> = pts.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(steps.iter().all(|d| (5900..=6100).contains(d)), "{steps:?}");
        assert_eq!(clock.rate(), Some(15.0));
        // A camera sending a third of what its SPS says: its own rate wins once measured.
        let mut clock = Clock::new();
        clock.hint = Some(30.0);
        for i in 0..100u64 {
            clock.stamp_at(t0 + std::time::Duration::from_millis(i * 100));
        }
        assert_eq!(clock.rate(), Some(10.0));
    }

    #[test]
    fn a_stalled_box_is_no_gap_when_the_camera_says_its_pictures_follow() {
        // 15 fps, every picture one step after the last by the camera's clock; this box stops
        // reading now and then (a busy core: for 150 ms, for 400 ms), then gets what came
        // meanwhile all at once.
        let stalls = [(1_300_000u64, 150_000u64), (2_700_000, 400_000)];
        let times = |camera_timed: bool| {
            let mut clock = Clock::new();
            clock.hint = Some(15.0);
            let t0 = clock.origin;
            (0..60u64)
                .map(|i| {
                    let sent = i * 66_667;
                    let read = stalls
                        .iter()
                        .find(|(from, long)| (*from..from + long).contains(&sent))
                        .map_or(sent, |(from, long)| from + long);
                    clock.stamp(
                        t0 + Duration::from_micros(read),
                        camera_timed.then_some(i as f64 * 6000.0),
                    )
                })
                .collect::<Vec<u64>>()
        };
        let steps: Vec<u64> = times(true).windows(2).map(|w| w[1] - w[0]).collect();
        assert!(steps.iter().all(|d| *d == 6000), "{steps:?}");
        // Without the camera's word, a stall of several steps reads as a gap (as it must: it
        // may be one).
        let steps: Vec<u64> = times(false).windows(2).map(|w| w[1] - w[0]).collect();
        assert!(steps.iter().any(|d| *d > 6000), "{steps:?}");
        // A real gap by the camera's clock (five pictures it did not send) is kept.
        let mut clock = Clock::new();
        clock.hint = Some(15.0);
        let t0 = clock.origin;
        let before = clock.stamp(t0, Some(0.0));
        let after = clock.stamp(t0 + Duration::from_micros(6 * 66_667), Some(6.0 * 6000.0));
        assert_eq!(after - before, 6 * 6000);
        // A printer's frozen RTP clock: the rate is read on the arrivals, as without one.
        let mut clock = Clock::new();
        let t0 = clock.origin;
        for i in 0..40u64 {
            clock.stamp(t0 + Duration::from_millis(i * 100), Some(1234.0));
        }
        assert_eq!(clock.rate(), Some(10.0));
    }

    #[test]
    fn an_encoders_units_are_timed_as_they_come_whatever_the_nominal_rate() {
        // An HTTP camera at 10 fps, encoded with a nominal 30: every picture 100 ms on, not
        // three steps of 33 ms crammed together and then a jump.
        let feed = UnitFeed::default();
        feed.set_configured_rate(Some(30));
        feed.time_by_arrival();
        let mut clock = feed.clock.lock().unwrap();
        clock.hint = Some(30.0);
        let t0 = clock.origin;
        let pts: Vec<u64> = (0..40u64)
            .map(|i| clock.stamp_at(t0 + std::time::Duration::from_millis(i * 100)))
            .collect();
        let steps: Vec<u64> = pts.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(steps.iter().all(|&d| d == 9000), "{steps:?}");
        assert_eq!(
            clock.rate(),
            Some(30.0),
            "the nominal rate, for those who announce one"
        );
        assert!(clock.stamp_at(t0) > *pts.last().unwrap(), "never backwards");
        drop(clock);
        // A camera at the nominal 30 fps whose pictures arrive with up to ±4 ms of jitter:
        // steady steps (ffprobe reads 30/1, not 30000/1001).
        let feed = UnitFeed::default();
        feed.set_configured_rate(Some(30));
        feed.time_by_arrival();
        let mut clock = feed.clock.lock().unwrap();
        let t0 = clock.origin;
        let pts: Vec<u64> = (0..60u64)
            .map(|i| {
                let jitter = [0i64, 4, -3, 3, -4, 1][(i % 6) as usize];
                let at = (i as i64 * 33_333 + 10_000 + jitter * 1000) as u64;
                clock.stamp_at(t0 + std::time::Duration::from_micros(at))
            })
            .collect();
        let steps: Vec<u64> = pts.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(steps.iter().all(|&d| d == 3000), "{steps:?}");
    }

    /// A consumer joining an encoded 10 fps camera (nominal 30) mid-group starts at the units'
    /// own 100 ms steps: retimed at 33 ms, ffprobe read 20 packets as 30 fps in CI.
    #[test]
    fn a_consumer_of_an_encoders_units_starts_at_their_own_times() {
        let feed = UnitFeed::default();
        feed.set_configured_rate(Some(30));
        feed.time_by_arrival();
        let t0 = feed.clock.lock().unwrap().origin;
        let at = |i: u64| t0 + std::time::Duration::from_millis(i * 100);
        feed.publish_arrived(Codec::H264, &au(true, true, 1), at(0), None);
        for i in 1..8 {
            feed.publish_arrived(Codec::H264, &au(false, false, 2), at(i), None);
        }
        let (start, _) = feed.subscribe();
        let pts = start.steady_pts(Some(30.0));
        let steps: Vec<u64> = pts.windows(2).map(|w| w[1] - w[0]).collect();
        assert_eq!(steps, [9000; 7]);
    }

    #[test]
    fn a_group_too_long_to_keep_keeps_its_keyframe_only() {
        let feed = UnitFeed::default();
        feed.publish(Codec::H264, &au(true, true, 1));
        for _ in 0..GROUP_MAX_UNITS + 5 {
            feed.publish(Codec::H264, &au(false, false, 2));
        }
        let (start, _) = feed.subscribe();
        assert_eq!(start.units.len(), 1);
        assert!(start.units[0].au.keyframe && !start.complete);
        // The next keyframe starts a whole group again.
        feed.publish(Codec::H264, &au(true, true, 3));
        feed.publish(Codec::H264, &au(false, false, 4));
        let (start, _) = feed.subscribe();
        assert_eq!(start.units.len(), 2);
        assert!(start.complete);
    }
}
