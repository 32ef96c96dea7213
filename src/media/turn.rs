//! Turning a camera's frames as it is mounted (`rotate`, `flip`): once per frame, in the pump,
//! before the frame is shared, so every consumer (streams, snapshots, MQTT, the wall) gets the
//! turned picture.
//!
//! JPEGs are turned losslessly when their edges are whole blocks (libjpeg-turbo moves the DCT
//! blocks; nothing is decoded). Otherwise (1920x1080 turned by 90°: 1080 is not a multiple of 16)
//! the frame is decoded, turned and encoded again, so the picture stays whole; that costs an
//! encode per frame, and farmcam says so once. Sources that encode anyway (YUYV cameras) turn
//! the picture before encoding and mark the frame as done.

use std::sync::Mutex;

use bytes::Bytes;
use tracing::info;

use crate::frame::{Captured, Size};
use crate::media::codec::{self, CodecError, RECODE_QUALITY};
use crate::media::orientation::{Op, Orientation};

pub struct Turner {
    camera: String,
    op: Op,
    /// The frame size at which lossless turning was refused (then frames are recoded).
    not_lossless_at: Mutex<Option<Size>>,
}

impl Turner {
    pub fn new(camera: &str, orientation: Orientation) -> Self {
        Turner {
            camera: camera.to_string(),
            op: orientation.op(),
            not_lossless_at: Mutex::new(None),
        }
    }

    pub fn op(&self) -> Op {
        self.op
    }

    /// Whether `c` still needs turning.
    pub fn needed(&self, c: &Captured) -> bool {
        self.op != Op::None && !c.oriented
    }

    /// The frame turned (blocking: call it off the async threads). An error means the frame is
    /// broken (libjpeg-turbo cannot read it).
    pub fn turn(&self, c: Captured) -> Result<Captured, CodecError> {
        if !self.needed(&c) {
            return Ok(c);
        }
        let size = Size {
            width: c.width,
            height: c.height,
        };
        let turned = |jpeg: Vec<u8>, size: Size| Captured {
            jpeg: Bytes::from(jpeg),
            width: size.width,
            height: size.height,
            captured_at: c.captured_at,
            oriented: true,
        };
        let known_lossy = *self.not_lossless_at.lock().unwrap() == Some(size);
        if !known_lossy {
            if let Ok(jpeg) = codec::turn_lossless(&c.jpeg, self.op) {
                return Ok(turned(jpeg, self.op.size(size)));
            }
        }
        let (jpeg, out) = codec::turn_recoded(&c.jpeg, self.op, RECODE_QUALITY)?;
        if !known_lossy {
            // The frame is fine (it decoded): its edges are what kept it from being lossless.
            info!(
                camera = %self.camera,
                "{size} frames cannot be turned losslessly (their edges are not whole JPEG blocks): decoding and encoding each frame instead, which costs CPU; a size whose sides are multiples of 16 avoids it"
            );
            *self.not_lossless_at.lock().unwrap() = Some(size);
        }
        Ok(turned(jpeg, out))
    }
}
