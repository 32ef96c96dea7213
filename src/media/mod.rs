//! Pictures and coded video, without I/O: the H.264/H.265 splitter and what an SPS says, the
//! JPEG splitter, libjpeg-turbo (decode, scale, encode, lossless turns), the camera's mounting
//! (orientation, turn), sizes on request and the placeholder renderer. Sources, the pump and the
//! outputs use them; they use only [`crate::frame`].

pub mod codec;
pub mod h264;
pub mod jpeg;
pub mod orientation;
pub mod render;
pub mod sizes;
pub mod sps;
pub mod turn;
