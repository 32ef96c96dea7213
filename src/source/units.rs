//! A camera's coded video for consumers that take it as it is (WebRTC viewers): the access units
//! its one connection yields, fanned out without a copy, and the latest keyframe with its
//! parameter sets, where every new consumer starts (a picture at once, not at the next keyframe).
//! Each unit carries a presentation time on one 90 kHz clock per camera (what RTP carries), made
//! from when it arrived, smoothed to the camera's own frame interval.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::{broadcast, watch};

use crate::h264::{AccessUnit, Codec};

/// Units a slow consumer may fall behind before it misses some (it then waits for the next
/// keyframe): about two seconds of 30 fps video.
const BACKLOG: usize = 64;
/// The group of pictures kept for new consumers is at most this long; a longer one keeps only
/// its keyframe (a new consumer then shows that picture and waits for the next keyframe).
const GROUP_MAX_UNITS: usize = 300;
const GROUP_MAX_BYTES: usize = 2 << 20;

/// One unit as consumers get it.
#[derive(Clone, Debug)]
pub struct Unit {
    pub codec: Codec,
    pub au: AccessUnit,
    /// Presentation time, 90 kHz ticks on this camera's unit clock.
    pub pts: u64,
}

/// Where a new consumer starts: the latest keyframe (with parameter sets) and the units after it,
/// so that its decoder has every reference and shows the current picture at once.
#[derive(Debug, Default)]
pub struct Start {
    pub units: Vec<Arc<Unit>>,
    /// Whether `units` run up to now; if not (the group was too long to keep) only the keyframe is
    /// there, and the consumer waits for the next keyframe after it.
    pub complete: bool,
}

#[derive(Debug, Default)]
struct Group {
    start: Start,
    bytes: usize,
}

/// Presentation times from arrival times. Units come through a pipe, so they arrive in bursts
/// around the camera's steady rate: each time is the previous one plus the mean interval, pulled
/// an eighth of the way towards the arrival; a gap of several intervals (frames the camera did not
/// send) is kept as a gap.
#[derive(Debug)]
struct Clock {
    origin: Instant,
    /// When the first unit came, ticks.
    first: f64,
    last_pts: u64,
    /// Mean interval between units, ticks (0 until two units came).
    interval: f64,
    units: u64,
}

impl Clock {
    const HZ: f64 = 90_000.0;
    const WARM_UP: u64 = 16;

    fn new() -> Clock {
        Clock {
            origin: Instant::now(),
            first: 0.0,
            last_pts: 0,
            interval: 0.0,
            units: 0,
        }
    }

    fn stamp(&mut self, at: Instant) -> u64 {
        let arrived = at.saturating_duration_since(self.origin).as_secs_f64() * Self::HZ;
        self.units += 1;
        let pts = if self.units <= Self::WARM_UP {
            // The first units: their arrival times, and the mean interval between them.
            if self.units == 1 {
                self.first = arrived;
            } else {
                self.interval = (arrived - self.first) / (self.units - 1) as f64;
            }
            arrived
        } else {
            let interval = self.interval.max(Self::HZ / 240.0);
            let predicted = self.last_pts as f64 + interval;
            let error = arrived - predicted;
            // The rate follows slowly (a mean over about 32 units), a gap counting as 4 units.
            let delta = (arrived - self.last_pts as f64).clamp(0.0, 4.0 * interval);
            self.interval = interval + (delta - interval) / 32.0;
            if error.abs() > 4.0 * interval {
                // A gap (or a stall) of several frames: time jumps with it.
                arrived
            } else {
                predicted + error / 8.0
            }
        };
        self.last_pts = if self.units == 1 {
            pts as u64
        } else {
            (pts as u64).max(self.last_pts + 1)
        };
        self.last_pts
    }

    /// Units per second, once measured.
    fn rate(&self) -> Option<f64> {
        (self.units >= Self::WARM_UP && self.interval > 0.0).then(|| Self::HZ / self.interval)
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
}

impl Default for UnitFeed {
    fn default() -> Self {
        UnitFeed {
            tx: broadcast::channel(BACKLOG).0,
            group: Mutex::new(Group::default()),
            clock: Mutex::new(Clock::new()),
            codec: watch::Sender::new(None),
            seen: Mutex::new(None),
        }
    }
}

impl UnitFeed {
    /// A unit from the camera (costs one allocation when nobody takes units, and the group kept
    /// for new consumers).
    pub fn publish(&self, codec: Codec, au: &AccessUnit) {
        let pts = self.clock.lock().unwrap().stamp(Instant::now());
        let unit = Arc::new(Unit {
            codec,
            au: au.clone(),
            pts,
        });
        let mut group = self.group.lock().unwrap();
        // A keyframe without its parameter sets cannot start a decoder on its own.
        if au.keyframe && au.sps.is_some() {
            group.bytes = au.data.len();
            group.start = Start {
                units: vec![unit.clone()],
                complete: true,
            };
            if self.codec.send_if_modified(|c| c.replace(codec) != Some(codec)) {
                *self.seen.lock().unwrap() = Some(codec);
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
        // Sent under the lock: a consumer subscribing gets each unit once, in the group or after.
        let _ = self.tx.send(unit);
    }

    /// Where a new consumer starts, and every unit after it.
    pub fn subscribe(&self) -> (Start, broadcast::Receiver<Arc<Unit>>) {
        let group = self.group.lock().unwrap();
        let start = Start {
            units: group.start.units.clone(),
            complete: group.start.complete,
        };
        (start, self.tx.subscribe())
    }

    /// The codec this camera sent last time it was connected, if it ever sent coded video.
    pub fn seen(&self) -> Option<Codec> {
        *self.seen.lock().unwrap()
    }

    /// The codec of the latest keyframe on this connection (`None` until one arrived): the
    /// camera's coded video flows once it is `Some`.
    pub fn watch_codec(&self) -> watch::Receiver<Option<Codec>> {
        self.codec.subscribe()
    }

    /// The camera's frame rate as its units arrive (`None` until a few came).
    pub fn rate(&self) -> Option<f64> {
        self.clock.lock().unwrap().rate()
    }

    /// Forget the kept group (the connection closed: a new one may change the stream).
    pub fn reset(&self) {
        *self.group.lock().unwrap() = Group::default();
        *self.clock.lock().unwrap() = Clock::new();
        self.codec.send_replace(None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

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
    fn presentation_times_keep_the_cameras_rate_through_bursts_and_jump_over_gaps() {
        let mut clock = Clock::new();
        let t0 = clock.origin;
        let ms = |n: u64| t0 + std::time::Duration::from_millis(n);
        // 25 fps arriving in pairs: 0, 0, 80, 80, 160, 160 … ms.
        let mut pts = Vec::new();
        for i in 0..200u64 {
            pts.push(clock.stamp(ms(i / 2 * 80)));
        }
        let steps: Vec<i64> = pts.windows(2).map(|w| w[1] as i64 - w[0] as i64).collect();
        let late = &steps[100..];
        assert!(late.iter().all(|&d| (2700..=4500).contains(&d)), "{late:?}");
        let rate = clock.rate().unwrap();
        assert!((rate - 25.0).abs() < 1.0, "{rate}");
        // Two seconds without units, then units again: the gap is kept.
        let before = *pts.last().unwrap();
        let after = clock.stamp(ms(100 * 80 + 2000));
        assert!(after - before > 150_000, "{before} {after}");
        assert!(clock.stamp(ms(100 * 80 + 2000)) > after, "never backwards");
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
