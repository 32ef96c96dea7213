//! Raw pictures a source hands to its camera's H.264 encoder, before any JPEG is made of them:
//! sources whose pictures are raw (a YUYV USB camera, the test pattern) publish each one here
//! while an encoder listens ([`RawFeed::wanted`]), so the encoder takes them without a JPEG
//! round trip; sources that only have JPEGs never publish.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;

use tokio::sync::watch;

use crate::media::codec::I420;

/// One raw picture: even-sized 4:2:0, as the camera's samples are.
pub struct RawPicture {
    pub picture: I420,
    /// Samples in the limited range H.264 players assume (luma 16..=235): a camera's YUYV; else
    /// full range (JPEG's), converted by the encoder.
    pub limited: bool,
}

/// The latest raw picture of a camera, for its encoder.
pub struct RawFeed {
    tx: watch::Sender<Option<Arc<RawPicture>>>,
    /// The open upstream makes raw pictures (its JPEG frames are not the encoder's input).
    native: AtomicBool,
}

impl Default for RawFeed {
    fn default() -> Self {
        RawFeed {
            tx: watch::Sender::new(None),
            native: AtomicBool::new(false),
        }
    }
}

impl std::fmt::Debug for RawFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawFeed")
            .field("listeners", &self.tx.receiver_count())
            .field("native", &self.native())
            .finish()
    }
}

impl RawFeed {
    /// Whether an encoder listens: only then is a raw picture worth publishing.
    pub fn wanted(&self) -> bool {
        self.tx.receiver_count() > 0
    }

    /// Hand a picture to the encoder (it takes the latest; one it missed is skipped). Odd sizes
    /// lose their last column or row: H.264's 4:2:0 needs even ones.
    pub fn publish(&self, picture: I420, limited: bool) {
        let picture = picture.even();
        if picture.size.width >= 2 && picture.size.height >= 2 {
            self.tx
                .send_replace(Some(Arc::new(RawPicture { picture, limited })));
        }
    }

    /// Listen for pictures (while the receiver lives, [`Self::wanted`] is true).
    pub fn subscribe(&self) -> watch::Receiver<Option<Arc<RawPicture>>> {
        self.tx.subscribe()
    }

    /// Drop the held picture (the encoder left: its memory is not kept for nobody).
    pub fn clear(&self) {
        self.tx.send_replace(None);
    }

    /// Say whether the open upstream makes raw pictures (set on open, cleared on close).
    pub fn set_native(&self, native: bool) {
        self.native.store(native, Relaxed);
    }

    /// Whether the open upstream makes raw pictures.
    pub fn native(&self) -> bool {
        self.native.load(Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::Size;

    fn picture(width: u32, height: u32) -> I420 {
        let size = Size { width, height };
        let c = I420::chroma_size(size);
        I420 {
            y: vec![16; (width * height) as usize],
            u: vec![128; (c.width * c.height) as usize],
            v: vec![128; (c.width * c.height) as usize],
            size,
        }
    }

    #[test]
    fn pictures_are_published_only_to_a_listener_and_cut_to_even_sizes() {
        let feed = RawFeed::default();
        assert!(!feed.wanted());
        let mut rx = feed.subscribe();
        assert!(feed.wanted());
        feed.publish(picture(5, 3), true);
        assert!(rx.has_changed().unwrap());
        let p = rx.borrow_and_update().clone().expect("published");
        assert_eq!(p.picture.size, Size { width: 4, height: 2 });
        assert_eq!(
            (p.picture.y.len(), p.picture.u.len(), p.picture.v.len()),
            (8, 2, 2)
        );
        assert!(p.limited);
        feed.publish(picture(1, 1), true);
        assert!(!rx.has_changed().unwrap(), "too small to encode: not published");
        feed.clear();
        assert!(rx.borrow_and_update().is_none());
        drop(rx);
        assert!(!feed.wanted());
    }
}
