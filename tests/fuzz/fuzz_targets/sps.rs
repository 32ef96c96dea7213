//! Feeds arbitrary bytes to the SPS readers (picture size, frame rate) as H.264 and H.265.
//! Checks: no panic (also no overflow in debug builds), and a size that is whole pixels.
#![no_main]

use farmcam::media::h264::Codec;
use farmcam::media::sps::{frame_rate, picture_size};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for codec in [Codec::H264, Codec::H265] {
        if let Some((w, h)) = picture_size(codec, data) {
            assert!(w > 0 && h > 0);
        }
        if let Some(fps) = frame_rate(codec, data) {
            assert!(fps.is_finite() && fps > 0.0);
        }
    }
});
