//! Coded video (H.264/H.265), whoever reads it: the camera's access units fanned out to the
//! consumers that take them as they are, with the group kept for new ones and one clock
//! ([`units`]); farmcam's own RTSP client ([`rtsp_client`]); the shared decoder helper that turns
//! them into pictures for everything else ([`libav`]), and the picture decoders hand over
//! ([`picture`]). None of it is the ffmpeg command line ([`super::ffmpeg`] uses it).

pub mod encoding;
pub mod libav;
pub mod picture;
pub mod rtsp_client;
pub mod units;
