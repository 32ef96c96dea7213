//! Demand: what a camera's consumers need, combined by its pump and handed to the open upstream.
//! Sources that can save work act on it (an H.264 camera decodes only keyframes for a wall tile,
//! the test pattern and YUYV cameras encode only the frames someone will take); the rest ignore
//! it.

use std::time::Duration;

use tokio::sync::watch;

/// What one consumer needs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Want {
    /// Every frame the camera sends (a full-rate viewer).
    Every,
    /// At most this many frames per second (`?fps=N`).
    Rate(f64),
    /// Single frames now and then (a snapshot, a wall tile, MQTT).
    One,
    /// No JPEG at all: the camera's own coded video (a WebRTC viewer takes the access units the
    /// camera connection yields). It keeps the camera connected without a decoder.
    Units,
    /// Every picture, for the camera's H.264 encoder: raw ones from the source's
    /// [`RawFeed`](super::raw::RawFeed) where it makes them (no JPEG is made for it), else the JPEG
    /// frames a camera that sends JPEG delivers anyway. Asks no JPEG of the source, as `Units`.
    Raw,
}

impl Want {
    /// A viewer asking for at most `fps` (None: every frame).
    pub fn viewer(fps: Option<f64>) -> Want {
        match fps {
            Some(r) if r.is_finite() && r > 0.0 => Want::Rate(r),
            _ => Want::Every,
        }
    }
}

/// What all consumers of a camera need together.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Demand {
    /// Consumers (0: nobody; the upstream is kept only for the idle grace).
    pub consumers: usize,
    /// Of those, the ones that take JPEG frames (the others take coded video: `Want::Units`).
    pub pictures: usize,
    /// The highest rate anyone asked for, in frames per second; `None`: every frame. Zero: only
    /// single frames (snapshots).
    pub rate: Option<f64>,
    /// A snapshot is waiting for a frame right now: the next one is wanted, whatever the rate.
    pub waiting: bool,
}

impl Default for Demand {
    /// Before the pump says anything: every frame, as if a viewer were there.
    fn default() -> Self {
        Demand {
            consumers: 1,
            pictures: 1,
            rate: None,
            waiting: false,
        }
    }
}

impl Demand {
    /// Combine the wants of the attached consumers.
    pub fn of<'a>(wants: impl IntoIterator<Item = &'a Want>) -> Demand {
        let mut d = Demand {
            consumers: 0,
            pictures: 0,
            rate: Some(0.0),
            waiting: false,
        };
        for w in wants {
            d.consumers += 1;
            if matches!(w, Want::Units | Want::Raw) {
                continue;
            }
            d.pictures += 1;
            d.waiting |= *w == Want::One;
            d.rate = match (d.rate, w) {
                (None, _) | (_, Want::Every) => None,
                (Some(r), Want::Rate(x)) => Some(r.max(*x)),
                (Some(r), _) => Some(r),
            };
        }
        d
    }

    /// `wants` plus the single frames that snapshot takers, gone for now, will come back for.
    pub fn expecting_snapshots<'a>(wants: impl IntoIterator<Item = &'a Want>) -> Demand {
        let mut d = Demand::of(wants);
        d.consumers += 1;
        d.pictures += 1;
        d
    }

    /// Whether anyone is there at all (the upstream is needed).
    pub fn any(&self) -> bool {
        self.consumers > 0
    }

    /// Whether anyone takes JPEG frames.
    pub fn wants_pictures(&self) -> bool {
        self.pictures > 0
    }

    /// The shortest useful time between two frames: `None` for every frame (or nobody).
    pub fn min_interval(&self) -> Option<Duration> {
        match self.rate {
            Some(r) if self.any() && r > 0.0 => {
                Some(Duration::try_from_secs_f64(1.0 / r).unwrap_or(Duration::MAX))
            }
            Some(_) if self.any() => Some(Duration::MAX),
            _ => None,
        }
    }

    /// Whether a frame `since` after the last one delivered is wanted. Frames are also taken at
    /// least every `keepalive` (the pump's stall detection, a snapshot arriving at any moment).
    /// A frame a little early (a tenth of the interval) is taken: frames come on the camera's
    /// clock, and waiting for the one after would give `?fps=5` of a 30 fps camera 4.3 fps.
    pub fn wants_frame(&self, since: Duration, keepalive: Duration) -> bool {
        if self.waiting {
            return true;
        }
        match self.min_interval() {
            None => self.any() || since >= keepalive,
            Some(i) => since >= i.mul_f64(0.9).min(keepalive),
        }
    }
}

/// How an upstream watches its camera's demand.
pub type DemandRx = watch::Receiver<Demand>;

/// A demand that never changes: every frame (tests, benches, `farmcam` tools).
pub fn every_frame() -> DemandRx {
    watch::channel(Demand::default()).1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_highest_rate_wins_and_every_frame_beats_any_rate() {
        assert_eq!(
            Demand::of(&[]),
            Demand {
                consumers: 0,
                pictures: 0,
                rate: Some(0.0),
                waiting: false
            }
        );
        let d = Demand::of(&[Want::One, Want::Rate(1.0), Want::Rate(5.0)]);
        assert_eq!(
            d,
            Demand {
                consumers: 3,
                pictures: 3,
                rate: Some(5.0),
                waiting: true
            }
        );
        // Coded-video takers keep the camera connected and want no pictures.
        let units = Demand::of(&[Want::Units, Want::Raw]);
        assert!(units.any() && !units.wants_pictures());
        assert_eq!(units.rate, Some(0.0));
        let mixed = Demand::of(&[Want::Units, Want::Rate(2.0)]);
        assert_eq!((mixed.consumers, mixed.pictures, mixed.rate), (2, 1, Some(2.0)));
        assert_eq!(d.min_interval(), Some(Duration::from_millis(200)));
        let d = Demand::of(&[Want::Rate(5.0), Want::Every, Want::One]);
        assert_eq!(d.rate, None);
        assert_eq!(d.min_interval(), None);
        assert_eq!(Want::viewer(Some(f64::NAN)), Want::Every);
        assert_eq!(Want::viewer(Some(1e-300)), Want::Rate(1e-300));
        assert_eq!(
            Demand::of(&[Want::Rate(1e-300)]).min_interval(),
            Some(Duration::MAX)
        );
    }

    #[test]
    fn frames_wanted() {
        let k = Duration::from_secs(3);
        let waiting = Demand::of(&[Want::One]);
        assert!(
            waiting.wants_frame(Duration::ZERO, k),
            "a waiting snapshot gets the next frame"
        );
        let expecting = Demand::expecting_snapshots(&[]);
        assert!(!expecting.wants_frame(Duration::from_secs(1), k));
        assert!(expecting.wants_frame(k, k), "kept alive");
        assert_eq!(expecting.rate, Some(0.0));
        assert!(expecting.any());
        let one_fps = Demand::of(&[Want::Rate(1.0)]);
        assert!(!one_fps.wants_frame(Duration::from_millis(500), k));
        assert!(!one_fps.wants_frame(Duration::from_millis(850), k));
        assert!(
            one_fps.wants_frame(Duration::from_millis(900), k),
            "a little early"
        );
        assert!(one_fps.wants_frame(Duration::from_secs(1), k));
        assert!(Demand::of(&[Want::Every]).wants_frame(Duration::ZERO, k));
        let nobody = Demand::of(&[]);
        assert!(!nobody.wants_frame(Duration::from_secs(1), k));
        assert!(nobody.wants_frame(k, k));
    }
}
