//! farmcam: a camera gateway for 3D-printer farms.
//!
//! Data flows one way: [`source`] → [`pump`] (one per camera, owned by the [`registry`]) → sinks
//! ([`http`]). The pump is the only owner of "is the camera open?".

pub mod backoff;
pub mod bench;
pub mod codec;
pub mod config;
pub mod daemon;
pub mod events;
pub mod frame;
pub mod h264;
pub mod histogram;
pub mod hostport;
pub mod http;
pub mod http_client;
pub mod jpeg;
pub mod light;
pub mod lit;
pub mod live;
pub mod log_limit;
pub mod moonraker;
pub mod mqtt;
pub mod orientation;
pub mod password;
pub mod polls;
pub mod prusa_connect;
pub mod pump;
pub mod redact;
pub mod registry;
pub mod render;
pub mod rtsp;
pub mod sizes;
pub mod source;
pub mod sps;
pub mod systemd;
pub mod tls_roots;
pub mod turn;
pub mod unix_time;
pub mod webrtc;
