//! A camera's coded video for consumers that take it as it is (WebRTC viewers): the access units
//! its one connection yields, fanned out without a copy, and the latest keyframe with its
//! parameter sets, where every new consumer starts (a picture at once, not at the next keyframe).

use std::sync::{Arc, Mutex};

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

#[derive(Debug)]
pub struct UnitFeed {
    tx: broadcast::Sender<Arc<Unit>>,
    group: Mutex<Group>,
    codec: watch::Sender<Option<Codec>>,
    /// The codec last seen on any connection (kept when it closes).
    seen: Mutex<Option<Codec>>,
}

impl Default for UnitFeed {
    fn default() -> Self {
        UnitFeed {
            tx: broadcast::channel(BACKLOG).0,
            group: Mutex::new(Group::default()),
            codec: watch::Sender::new(None),
            seen: Mutex::new(None),
        }
    }
}

impl UnitFeed {
    /// A unit from the camera (costs one allocation when nobody takes units, and the group kept
    /// for new consumers).
    pub fn publish(&self, codec: Codec, au: &AccessUnit) {
        let unit = Arc::new(Unit {
            codec,
            au: au.clone(),
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

    /// Forget the kept group (the connection closed: a new one may change the stream).
    pub fn reset(&self) {
        *self.group.lock().unwrap() = Group::default();
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
