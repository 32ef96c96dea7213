//! farmcam: a camera gateway for 3D-printer farms.
//!
//! Data flows one way, from the cameras to the people and programs watching:
//!
//! ```text
//! source (v4l2, ffmpeg + farmcam's RTSP client, bambu, test pattern)
//!   └─ pump, one per camera, owned by the registry: "is the camera open?" is answered there
//!        └─ outputs
//!             ├─ pictures (JPEG): http (MJPEG, snapshots, the wall), mqtt, prusa_connect
//!             └─ coded video (the camera's H.264/H.265 units, opened through `live`): rtsp, webrtc
//! ```
//!
//! [`config`] validates into the sources' options (sources never import it); [`daemon`] starts
//! everything and tells systemd; [`media`] holds the codecs and picture work without I/O,
//! [`util`] the helpers none of which knows a camera. [`outputs`]'s `moonraker` registers the
//! cameras with Klipper's frontends; `light` switches lights as pumps start and stop.

pub mod bench;
pub mod config;
pub mod daemon;
pub mod encode;
pub mod events;
pub mod frame;
pub mod light;
pub mod lit;
pub mod live;
pub mod media;
pub mod moonraker_api;
pub mod outputs;
pub mod password;
pub mod polls;
pub mod pump;
pub mod registry;
pub mod source;
pub mod systemd;
pub mod timelapse;
pub mod util;
