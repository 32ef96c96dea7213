//! A camera's coded video for consumers that take it as it is (WebRTC viewers): the access units
//! its one connection yields, fanned out without a copy, and the latest keyframe with its
//! parameter sets, where every new consumer starts (a picture at once, not at the next keyframe).

use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;

use crate::h264::{AccessUnit, Codec};

/// Units a slow consumer may fall behind before it misses some (it then waits for the next
/// keyframe): about two seconds of 30 fps video.
const BACKLOG: usize = 64;

/// One unit as consumers get it.
#[derive(Clone, Debug)]
pub struct Unit {
    pub codec: Codec,
    pub au: AccessUnit,
}

#[derive(Debug)]
pub struct UnitFeed {
    tx: broadcast::Sender<Arc<Unit>>,
    keyframe: Mutex<Option<Arc<Unit>>>,
}

impl Default for UnitFeed {
    fn default() -> Self {
        UnitFeed {
            tx: broadcast::channel(BACKLOG).0,
            keyframe: Mutex::new(None),
        }
    }
}

impl UnitFeed {
    /// A unit from the camera (costs one allocation when nobody takes units).
    pub fn publish(&self, codec: Codec, au: &AccessUnit) {
        let unit = Arc::new(Unit {
            codec,
            au: au.clone(),
        });
        if au.keyframe {
            // A keyframe without its parameter sets cannot start a decoder on its own.
            if au.sps.is_some() {
                *self.keyframe.lock().unwrap() = Some(unit.clone());
            }
        }
        let _ = self.tx.send(unit);
    }

    /// The latest keyframe (with parameter sets) and every unit after the call.
    pub fn subscribe(&self) -> (Option<Arc<Unit>>, broadcast::Receiver<Arc<Unit>>) {
        let keyframe = self.keyframe.lock().unwrap();
        (keyframe.clone(), self.tx.subscribe())
    }

    /// The codec of the latest keyframe, once one arrived.
    pub fn codec(&self) -> Option<Codec> {
        self.keyframe.lock().unwrap().as_ref().map(|u| u.codec)
    }

    /// Forget the cached keyframe (the connection closed: a new one may change the stream).
    pub fn reset(&self) {
        *self.keyframe.lock().unwrap() = None;
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
        assert!(feed.subscribe().0.is_none());
        feed.publish(Codec::H264, &au(true, true, 1));
        feed.publish(Codec::H264, &au(false, false, 2));
        // A keyframe without parameter sets does not replace the one that has them.
        feed.publish(Codec::H264, &au(true, false, 3));
        let (key, mut rx) = feed.subscribe();
        assert_eq!(key.unwrap().au.data[4], 1);
        feed.publish(Codec::H264, &au(false, false, 4));
        assert_eq!(rx.try_recv().unwrap().au.data[4], 4);
        assert_eq!(feed.codec(), Some(Codec::H264));
        feed.reset();
        assert_eq!(feed.codec(), None);
    }
}
