//! Where pictures and coded video go: HTTP (MJPEG, snapshots, the API, the wall, WebRTC
//! signalling), RTSP and WebRTC (the cameras' own H.264/H.265, opened through [`crate::live`]),
//! MQTT (Home Assistant), Prusa Connect uploads, and Moonraker's webcam list. Each takes from the
//! registry and never talks to a source.

pub mod http;
pub mod moonraker;
pub mod mqtt;
pub mod prusa_connect;
pub mod rtsp;
pub mod webrtc;
