//! The child processes farmcam runs (ffmpeg, and farmcam's own decoder helper): starting them
//! ([`child`]: `PR_SET_PDEATHSIG`, no `NOTIFY_SOCKET`, a bounded stop), credentials handed over
//! in a private file, never on a command line ([`script`]), and what they print, logged
//! rate-limited with credentials removed and read for the input's codec ([`stderr`]).

pub mod child;
pub mod script;
pub mod stderr;

/// What to start: the arguments, and for a URL with credentials the ffconcat script carrying it
/// (its path goes where [`script::PLACEHOLDER`] stands).
#[derive(Debug)]
pub struct Invocation {
    pub args: Vec<String>,
    pub script: Option<String>,
}

/// The input codec a child's output says (`Chatter::codec`), as an atomic's value.
pub const CODEC_UNKNOWN: u8 = 0;
pub const CODEC_MJPEG: u8 = 1;
pub const CODEC_OTHER: u8 = 2;
pub const CODEC_H264: u8 = 3;
pub const CODEC_HEVC: u8 = 4;
