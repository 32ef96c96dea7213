//! The sizes consumers ask for (`?width=`, `?height=`, MQTT `snapshot_width`). Each distinct size
//! of a camera is made at most once per frame, only for the frames someone takes (a tile fetching
//! once a second scales one frame a second), and shared by everyone asking for that size. A
//! camera serves a bounded number of distinct sizes at once.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use tokio::time::Instant;
use tracing::debug;

use crate::frame::{Frame, Size};
use crate::media::codec::{self, RECODE_QUALITY};

/// Distinct sizes a camera serves at once (besides its own).
pub const MAX_SIZES: usize = 4;
/// The smallest width or height that may be asked for.
pub const MIN_SIDE: u32 = 48;
/// The largest (larger than any camera: the frame is then served as it is).
pub const MAX_SIDE: u32 = 7680;
/// A size nobody holds stays listed this long after its last use (a wall tile asks once a
/// second, Home Assistant every 10 s). When all slots are taken, the size nobody holds that was
/// used longest ago makes room, so nobody can keep others from their sizes by asking odd ones.
pub const LINGER: Duration = Duration::from_secs(30);
/// Sides asked for are rounded to the nearest multiple of this (whole JPEG blocks; a client asking
/// 100, 101, 102, … asks for one size, not many).
pub const STEP: u32 = 8;

/// A size asked for: one side; the other follows the frame's aspect ratio.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scale {
    Width(u32),
    Height(u32),
}

impl std::fmt::Display for Scale {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scale::Width(w) => write!(f, "width={w}"),
            Scale::Height(h) => write!(f, "height={h}"),
        }
    }
}

impl Scale {
    /// From `?width=` and `?height=` (neither: the camera's own size).
    pub fn from_query(width: Option<&str>, height: Option<&str>) -> Result<Option<Scale>, String> {
        let side = |name: &str, v: &str| {
            v.parse::<u32>()
                .ok()
                .filter(|n| (MIN_SIDE..=MAX_SIDE).contains(n))
                .map(|n| ((n + STEP / 2) / STEP * STEP).clamp(MIN_SIDE, MAX_SIDE))
                .ok_or_else(|| {
                    format!(
                        "{name} must be a whole number of pixels from {MIN_SIDE} to {MAX_SIDE}, e.g. ?{name}=320 (the other side follows the picture's aspect ratio)"
                    )
                })
        };
        match (width, height) {
            (None, None) => Ok(None),
            (Some(w), None) => side("width", w).map(|w| Some(Scale::Width(w))),
            (None, Some(h)) => side("height", h).map(|h| Some(Scale::Height(h))),
            (Some(_), Some(_)) => Err(
                "give width or height, not both: the other side follows the picture's aspect ratio".into(),
            ),
        }
    }

    /// The size a `of` frame gets; `None` when that is not smaller than the frame (it is then
    /// served as it is).
    pub fn target(self, of: Size) -> Option<Size> {
        let (w, h) = (of.width as u64, of.height as u64);
        let size = match self {
            Scale::Width(t) if (t as u64) < w => Size {
                width: t,
                height: ((h * t as u64 + w / 2) / w).max(1) as u32,
            },
            Scale::Height(t) if (t as u64) < h => Size {
                width: ((w * t as u64 + h / 2) / h).max(1) as u32,
                height: t,
            },
            _ => return None,
        };
        Some(size)
    }
}

/// One camera's sizes in use.
#[derive(Default)]
pub struct Sizes {
    entries: Mutex<Vec<Entry>>,
    /// Frames scaled (each distinct size of each frame once).
    pub frames_scaled: AtomicU64,
}

struct Entry {
    scale: Scale,
    /// Consumers holding it now.
    users: usize,
    last_used: Instant,
    latest: Arc<tokio::sync::Mutex<Recent>>,
}

/// Scaled frames kept per size: consumers a frame or two apart share them too.
const KEEP: usize = 4;

type Recent = std::collections::VecDeque<Scaled>;

/// A frame made at a size: which source frame it came from, and the result.
struct Scaled {
    seq: u64,
    captured_at: SystemTime,
    frame: Frame,
}

impl Sizes {
    /// Hold a size for a consumer: every frame it takes through [`SizeLease::apply`] comes at that
    /// size. Refused when the camera already serves [`MAX_SIZES`] others.
    pub fn lease(self: &Arc<Self>, scale: Scale) -> Result<SizeLease, String> {
        let mut entries = self.entries.lock().unwrap();
        let now = Instant::now();
        let latest = match entries.iter_mut().find(|e| e.scale == scale) {
            Some(e) => {
                e.users += 1;
                e.last_used = now;
                e.latest.clone()
            }
            None => {
                entries.retain(|e| e.users > 0 || now.duration_since(e.last_used) < LINGER);
                if entries.len() >= MAX_SIZES {
                    // Room from the size nobody holds that was used longest ago.
                    let unheld = entries
                        .iter()
                        .enumerate()
                        .filter(|(_, e)| e.users == 0)
                        .min_by_key(|(_, e)| e.last_used)
                        .map(|(i, _)| i);
                    if let Some(i) = unheld {
                        entries.remove(i);
                    }
                }
                if entries.len() >= MAX_SIZES {
                    let serving: Vec<String> = entries.iter().map(|e| e.scale.to_string()).collect();
                    return Err(format!(
                        "this camera serves at most {MAX_SIZES} sizes at once and streams {} now; ask for one of those, or leave width and height out for the full size",
                        serving.join(", ")
                    ));
                }
                let latest = Arc::new(tokio::sync::Mutex::new(Recent::new()));
                entries.push(Entry {
                    scale,
                    users: 1,
                    last_used: now,
                    latest: latest.clone(),
                });
                latest
            }
        };
        Ok(SizeLease {
            sizes: self.clone(),
            scale,
            latest,
        })
    }

    /// The sizes held or recently used.
    pub fn in_use(&self) -> Vec<String> {
        let now = Instant::now();
        self.entries
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.users > 0 || now.duration_since(e.last_used) < LINGER)
            .map(|e| e.scale.to_string())
            .collect()
    }
}

/// A periodic consumer that wants its pictures `width` wide (MQTT snapshots, Prusa Connect
/// uploads): the size is leased at its first picture and held for the consumer's life; while the
/// camera refuses it (too many sizes), pictures come at full size and it is asked again next time.
pub struct WidthWanted {
    width: Option<u32>,
    lease: Option<SizeLease>,
}

impl WidthWanted {
    pub fn new(width: Option<u32>) -> Self {
        WidthWanted { width, lease: None }
    }

    /// `f` at the wanted width (of camera `camera`, whose sizes are `sizes`).
    pub async fn apply(&mut self, camera: &str, sizes: &Arc<Sizes>, f: Frame) -> Frame {
        if let (None, Some(w)) = (&self.lease, self.width) {
            self.lease = sizes
                .lease(Scale::Width(w))
                .map_err(|e| debug!(camera, "full-size pictures for now: {e}"))
                .ok();
        }
        match &self.lease {
            Some(lease) => lease.apply(f).await,
            None => f,
        }
    }
}

/// A consumer's hold on one size; dropping it releases the size (after [`LINGER`]).
pub struct SizeLease {
    sizes: Arc<Sizes>,
    scale: Scale,
    latest: Arc<tokio::sync::Mutex<Recent>>,
}

impl SizeLease {
    pub fn scale(&self) -> Scale {
        self.scale
    }

    /// `f` at this lease's size: made once per frame for everyone asking for this size (others
    /// wait for the one making it), or `f` itself when it is not larger than the size asked for
    /// or cannot be decoded.
    pub async fn apply(&self, f: Frame) -> Frame {
        let Some(target) = self.scale.target(Size {
            width: f.width,
            height: f.height,
        }) else {
            return f;
        };
        let mut recent = self.latest.lock().await;
        if let Some(s) = recent
            .iter()
            .find(|s| s.seq == f.seq && s.captured_at == f.captured_at)
        {
            return s.frame.clone();
        }
        let jpeg = f.jpeg.clone();
        let made = tokio::task::spawn_blocking(move || codec::scale(&jpeg, target, RECODE_QUALITY)).await;
        let jpeg = match made {
            Ok(Ok(jpeg)) => jpeg,
            Ok(Err(e)) => {
                debug!("cannot scale a frame to {target}: {e}; serving it as it is");
                return f;
            }
            Err(_) => return f,
        };
        self.sizes.frames_scaled.fetch_add(1, Relaxed);
        let frame = Frame {
            jpeg: Bytes::from(jpeg),
            width: target.width,
            height: target.height,
            ..f
        };
        if recent.len() == KEEP {
            recent.pop_front();
        }
        recent.push_back(Scaled {
            seq: frame.seq,
            captured_at: frame.captured_at,
            frame: frame.clone(),
        });
        frame
    }
}

impl Drop for SizeLease {
    fn drop(&mut self) {
        let mut entries = self.sizes.entries.lock().unwrap();
        if let Some(e) = entries.iter_mut().find(|e| e.scale == self.scale) {
            e.users = e.users.saturating_sub(1);
            e.last_used = Instant::now();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_checked() {
        assert_eq!(Scale::from_query(Some("320"), None), Ok(Some(Scale::Width(320))));
        assert_eq!(Scale::from_query(Some("100"), None), Ok(Some(Scale::Width(104))));
        assert_eq!(
            Scale::from_query(Some("7679"), None),
            Ok(Some(Scale::Width(7680)))
        );
        assert_eq!(Scale::from_query(Some("48"), None), Ok(Some(Scale::Width(48))));
        assert_eq!(Scale::from_query(None, Some("180")), Ok(Some(Scale::Height(184))));
        assert_eq!(Scale::from_query(None, None), Ok(None));
        for bad in ["0", "abc", "-5", "47", "99999", ""] {
            let e = Scale::from_query(Some(bad), None).unwrap_err();
            assert!(e.contains("from 48 to 7680"), "{bad}: {e}");
        }
        assert!(Scale::from_query(Some("320"), Some("200"))
            .unwrap_err()
            .contains("not both"));
    }

    #[test]
    fn targets_keep_the_aspect_ratio_and_never_enlarge() {
        let hd = Size {
            width: 1280,
            height: 720,
        };
        assert_eq!(
            Scale::Width(320).target(hd),
            Some(Size {
                width: 320,
                height: 180
            })
        );
        assert_eq!(
            Scale::Height(100).target(hd),
            Some(Size {
                width: 178,
                height: 100
            })
        );
        assert_eq!(Scale::Width(1280).target(hd), None);
        assert_eq!(Scale::Width(4000).target(hd), None);
    }

    #[tokio::test]
    async fn a_fifth_size_is_refused_until_one_is_released() {
        let sizes = Arc::new(Sizes::default());
        tokio::time::pause();
        let held: Vec<_> = (1..=4)
            .map(|i| sizes.lease(Scale::Width(100 * i)).unwrap())
            .collect();
        // The same size again is shared, not a new one.
        let again = sizes.lease(Scale::Width(100)).unwrap();
        let e = sizes.lease(Scale::Width(500)).err().unwrap();
        assert!(e.contains("width=100, width=200, width=300, width=400"), "{e}");
        drop(again);
        // Released, width=100 makes room for a new size; the rest are still held.
        drop(held.into_iter().skip(1).collect::<Vec<_>>());
        tokio::time::advance(Duration::from_secs(1)).await;
        let five = sizes.lease(Scale::Width(500)).unwrap();
        // All released now: the one used longest ago goes first (200, not 500).
        drop(five);
        let six = sizes.lease(Scale::Width(600)).unwrap();
        let listed = sizes.in_use();
        assert!(!listed.contains(&"width=200".to_string()), "{listed:?}");
        assert!(listed.contains(&"width=500".to_string()), "{listed:?}");
        drop(six);
    }
}
