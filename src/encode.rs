//! Live H.264 of a camera that sends pictures: while a coded-video consumer (WebRTC, RTSP)
//! holds it, one task keeps the camera's pump open and has the decoder helper encode its
//! pictures: raw ones from the source's raw feed where it makes them (a YUYV camera, the test
//! pattern: no JPEG is made for the encoder), else its JPEG frames (decoded there, once); the coded pictures go to the
//! camera's [`Encoding`] feed, which consumers read as an RTSP camera's. MJPEG viewers and
//! snapshots never start it. [`LINGER`](crate::source::coded::encoding::LINGER) after the last
//! consumer left, the task ends, and the encoder with it.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::media::h264::Codec;
use crate::pump::{ConsumerKind, Want};
use crate::registry::Camera;
use crate::source::coded::encoding::{EncodeHold, Encoding, Units};
use crate::source::coded::libav::{EncodeSession, EncodeSettings, Encoded};
use crate::source::raw::RawPicture;

/// A picture for the encoder.
enum Picture {
    Jpeg(bytes::Bytes),
    Raw(Arc<RawPicture>),
}

/// Seconds from one keyframe to the next (and a joining consumer gets one at once).
pub const KEYFRAME_SECS: u32 = 2;
/// After the helper died, a new encoder is opened this much later at the soonest.
const RESTART_AFTER: Duration = Duration::from_secs(1);

/// Hold `cam`'s encoding for a consumer (`None`: the camera is not encoded, or its encoder
/// failed: it stays MJPEG-only until farmcam restarts or its configuration changes): its
/// encoder runs while this lives.
pub fn hold(cam: &Arc<Camera>) -> Option<EncodeHold> {
    let encoding = cam.encoding()?.clone();
    if encoding.failed.lock().unwrap().is_some() {
        return None;
    }
    let c = cam.clone();
    let e = encoding.clone();
    Some(encoding.hold(move |token| {
        tokio::spawn(run(c, e, token));
    }))
}

/// The encoder task of one camera, until `token` is cancelled (no consumer left), the camera
/// stops (shutdown), or its encoder fails (said once; the camera stays MJPEG until a consumer
/// comes again).
async fn run(cam: Arc<Camera>, encoding: Arc<Encoding>, token: CancellationToken) {
    let id = cam.id().to_string();
    let settings = EncodeSettings {
        encoders: encoding.encoders.clone(),
        fps: encoding.fps,
        bitrate: encoding.bitrate,
        keyframe_secs: KEYFRAME_SECS,
        device: encoding.device.clone(),
    };
    // Raw pictures where the source makes them (no JPEG is made for the encoder), else the
    // JPEG frames the camera delivers anyway.
    let raw_feed = cam.raw_pictures();
    let mut raw = raw_feed.map(|f| f.subscribe());
    let mut pictures = cam.subscribe_wanting(ConsumerKind::Other, Want::Raw);
    let mut session: Option<EncodeSession> = None;
    let mut units = Units::default();
    let mut not_before = tokio::time::Instant::now();
    let ended = loop {
        let picture = tokio::select! {
            _ = token.cancelled() => break None,
            frame = pictures.next() => {
                let Some(frame) = frame else { break None };
                if frame.placeholder || raw_feed.is_some_and(|f| f.native()) {
                    continue;
                }
                Picture::Jpeg(frame.jpeg)
            }
            changed = async { raw.as_mut().expect("checked").changed().await }, if raw.is_some() => {
                if changed.is_err() {
                    raw = None;
                    continue;
                }
                let Some(p) = raw.as_mut().expect("checked").borrow_and_update().clone() else { continue };
                Picture::Raw(p)
            }
            said = async { session.as_mut().expect("checked").next().await }, if session.is_some() => {
                match said {
                    Some(Encoded::Opened(name)) => {
                        info!(camera = %id, "camera {id}: encoding H.264 with {name} ({})", encoding.why);
                        encoding.set_name(Some(name));
                    }
                    Some(Encoded::Packet { data, keyframe }) => {
                        let au = units.unit(&data, keyframe);
                        encoding.units.publish(Codec::H264, &au);
                    }
                    None => {
                        let s = session.take().expect("checked");
                        let why = s.exit_reason();
                        encoding.set_name(None);
                        encoding.units.reset();
                        if s.refused() {
                            break Some(why);
                        }
                        // The helper died or was replaced: a new encoder, a keyframe first.
                        warn!(camera = %id, "camera {id}: its H.264 encoder ended ({why}); starting another");
                        not_before = tokio::time::Instant::now() + RESTART_AFTER;
                        units = Units::default();
                    }
                }
                continue;
            }
        };
        if session.is_none() {
            if tokio::time::Instant::now() < not_before {
                continue;
            }
            match EncodeSession::open(cam.decoder(), &settings) {
                Ok(s) => session = Some(s),
                Err(why) => break Some(why),
            }
        }
        let Some(s) = session.as_mut() else { continue };
        // The first picture of an encoder is a keyframe anyway.
        let key = encoding.take_keyframe();
        let queued = s.ready()
            && match &picture {
                Picture::Jpeg(jpeg) => s.feed_jpeg(jpeg, key),
                Picture::Raw(p) => s.feed_raw(&p.picture, p.limited, key),
            };
        if queued {
            encoding.pictures.fetch_add(1, Relaxed);
        } else {
            encoding.skipped.fetch_add(1, Relaxed);
            if key {
                encoding.want_keyframe();
            }
        }
    };
    drop(session);
    drop(raw);
    if let Some(feed) = raw_feed.filter(|f| !f.wanted()) {
        feed.clear();
    }
    encoding.set_name(None);
    encoding.units.reset();
    if let Some(why) = ended {
        *encoding.failed.lock().unwrap() = Some(why.clone());
        warn!(camera = %id, "camera {id}: no live H.264: {why}; its MJPEG stream and snapshots go on");
    }
    token.cancel();
}
