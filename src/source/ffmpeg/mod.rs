//! `rtsp://`, `rtsps://`, `bambu-rtsps://`, `http(s)://` and `ffmpeg:ARGS` sources, read by
//! ffmpeg children (started, stopped and heard by [`crate::source::process`]). One room each:
//! [`input`] (what ffmpeg reads), [`probe`] (the installed ffmpeg), [`args`] (command lines),
//! [`mjpeg`] (an MJPEG pipe cut into frames), [`ingest`] (an H.264/H.265 camera's video copied
//! to farmcam by ffmpeg, or read by farmcam's own RTSP client,
//! [`crate::source::coded::rtsp_client`], for plain `rtsp://` cameras), [`decoding`] (who decodes
//! it: the shared decoder helper, [`crate::source::coded::libav`], or a decoder child of its own,
//! [`decoder`]).
//!
//! Per open upstream: MJPEG cameras are copied through (or transcoded when `size`/`fps` ask for
//! it); H.264 and H.265 cameras are copied to farmcam, which decodes only what the demand needs.
//! The input codec is learned from what ffmpeg prints and remembered, so the next open takes the
//! right route. Children live exactly as long as their upstream, die with farmcam
//! (`PR_SET_PDEATHSIG`), never see `NOTIFY_SOCKET`, and everything they print is logged
//! rate-limited with credentials removed.

mod args;
mod decoder;
mod decoding;
pub mod ingest;
mod input;
mod mjpeg;
mod probe;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU8, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tracing::{debug, warn};

pub use crate::source::process::script::private_dir;
pub use args::{qscale, DecoderPlan, Plan};
pub use input::FfmpegInput;
pub use probe::{probe, Probe};

use super::coded::libav::SharedDecoder;
use super::coded::rtsp_client::{Connect, RtspClient};
use super::process::{child, script, CODEC_H264, CODEC_HEVC, CODEC_MJPEG, CODEC_OTHER, CODEC_UNKNOWN};
use super::{Common, DemandRx, IngestBy, Source, SourceError, Upstream, Work};
use crate::frame::Size;
use crate::media::h264::Codec;
use crate::util::log_limit::LogLimit;
use crate::util::redact;

/// JPEG quality when the camera sets none (ffmpeg `-q:v 5`).
pub const DEFAULT_QUALITY: u8 = 90;
/// ffmpeg stderr lines logged per camera per minute; the rest are counted and summarised.
const LOG_LINES_PER_MINUTE: u32 = 20;
/// A camera farmcam's own RTSP client could not read is read by ffmpeg; the client tries it
/// again after this long (the camera may have been updated, or was in a state it left).
const OWN_CLIENT_RETRY: std::time::Duration = std::time::Duration::from_secs(600);
/// The ffmpeg program when `[ffmpeg] path` is not set: looked up in PATH.
pub const DEFAULT_PROGRAM: &str = "ffmpeg";

/// Where ffmpeg is and what it is told, for one camera.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FfmpegOptions {
    pub input: FfmpegInput,
    /// Extra input options, placed before `-i` (`ffmpeg_args`).
    pub args: Vec<String>,
    /// The ffmpeg program (`[ffmpeg] path`).
    pub program: PathBuf,
    /// JPEG quality 1..=100 where ffmpeg encodes; `None`: [`DEFAULT_QUALITY`].
    pub quality: Option<u8>,
    /// The H.264/H.265 decoder to use (`decoder`, e.g. `h264_v4l2m2m`); `None`: ffmpeg's own.
    pub decoder: Option<String>,
}

impl FfmpegOptions {
    /// `input` with the defaults: no extra arguments, `ffmpeg` from PATH.
    pub fn new(input: FfmpegInput) -> Self {
        FfmpegOptions {
            input,
            args: Vec::new(),
            program: PathBuf::from(DEFAULT_PROGRAM),
            quality: None,
            decoder: None,
        }
    }

    /// Whether a password of this camera stands on ffmpeg's command line, which every local user
    /// can read: only `ffmpeg:` sources with credentials in their words (a URL source hands its
    /// credentials over in the private input script; see [`Self::script_problem`]).
    pub fn exposes_secret(&self) -> bool {
        match &self.input {
            FfmpegInput::Raw(words) => words.iter().any(|w| redact::has_credentials(w)),
            _ => false,
        }
    }

    /// Why this camera's URL, which carries credentials, cannot be handed to ffmpeg in the private
    /// input script with its `ffmpeg_args` (so the camera is refused rather than its password put
    /// on the command line).
    pub fn script_problem(&self) -> Option<String> {
        let url = match &self.input {
            FfmpegInput::Rtsp(u) | FfmpegInput::BambuRtsps(u) | FfmpegInput::Http(u) => u,
            FfmpegInput::Raw(_) => return None,
        };
        if !redact::has_credentials(url) {
            return None;
        }
        args::split_extra(&self.args)
            .and_then(|extra| script::text(url, &extra.demuxer).map(|_| ()))
            .err()
            .map(|why| {
                format!(
                    "{why}; with credentials in the URL, ffmpeg_args go with it into a private file that keeps them off ffmpeg's command line, and this one cannot: remove it"
                )
            })
    }
}

/// The value a codec has in `Chatter::codec` (the input codec learned from ffmpeg's
/// "Stream #0:0: Video: CODEC" line, remembered across restarts of the same camera so each open
/// takes the right route).
fn codec_code(c: Codec) -> u8 {
    match c {
        Codec::H264 => CODEC_H264,
        Codec::H265 => CODEC_HEVC,
    }
}

/// How an open upstream gets its frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Route {
    /// ffmpeg writes MJPEG: copied (`copy`) or transcoded.
    Mjpeg { copy: bool },
    /// ffmpeg copies the compressed video; farmcam decodes on demand.
    Ingest(Codec),
}

pub struct FfmpegSource {
    camera: String,
    program: PathBuf,
    input: FfmpegInput,
    size: Option<Size>,
    fps: Option<u32>,
    quality: u8,
    decoder: Option<String>,
    extra_input_args: Vec<String>,
    stall: Duration,
    io_timeout: Duration,
    max_frame: usize,
    chatter: child::Chatter,
    work: Arc<Work>,
    /// The daemon's shared decoder helper.
    shared: Arc<SharedDecoder>,
    /// farmcam's own RTSP client could not read this camera: ffmpeg does from now on.
    rtsp_unsupported: Mutex<Option<std::time::Instant>>,
}

impl FfmpegSource {
    pub fn new(common: &Common, options: FfmpegOptions, shared: Arc<SharedDecoder>) -> Self {
        let mut secrets = options.input.secrets();
        for a in &options.args {
            secrets.extend(redact::secrets_of(a));
        }
        FfmpegSource {
            camera: common.id.clone(),
            program: options.program,
            size: common.size,
            fps: common.fps,
            quality: options.quality.unwrap_or(DEFAULT_QUALITY),
            decoder: options.decoder,
            extra_input_args: options.args,
            stall: common.stall_timeout,
            io_timeout: common.stall_timeout + Duration::from_secs(5),
            max_frame: common.max_frame_size,
            chatter: child::Chatter {
                camera: common.id.clone(),
                secrets: Arc::new(secrets),
                log: Arc::new(Mutex::new(LogLimit::with_cap(LOG_LINES_PER_MINUTE))),
                codec: Arc::new(AtomicU8::new(CODEC_UNKNOWN)),
            },
            work: {
                let work = Arc::<Work>::default();
                // The clock's step for a camera whose SPS gives no rate.
                work.units.set_configured_rate(common.fps);
                work
            },
            shared,
            rtsp_unsupported: Mutex::new(None),
            input: options.input,
        }
    }

    /// The URL farmcam's own RTSP client reads, if it reads this camera: a plain `rtsp://`
    /// H.264/H.265 camera without `ffmpeg_args` (those are ffmpeg's options), unless the client
    /// could not read it lately ([`OWN_CLIENT_RETRY`]).
    fn own_client_url(&self, route: Route) -> Option<&str> {
        match &self.input {
            FfmpegInput::Rtsp(u)
                if u.get(..7).is_some_and(|s| s.eq_ignore_ascii_case("rtsp://"))
                    && self.extra_input_args.is_empty()
                    && matches!(route, Route::Ingest(_))
                    && self
                        .rtsp_unsupported
                        .lock()
                        .unwrap()
                        .is_none_or(|at| at.elapsed() >= OWN_CLIENT_RETRY) =>
            {
                Some(u)
            }
            _ => None,
        }
    }

    /// The route for the next open: by the codec learned so far, else by what the input
    /// usually carries (HTTP: MJPEG; RTSP: H.264; `ffmpeg:` arguments: anything, transcoded).
    fn route(&self) -> Route {
        let reshape = self.size.is_some() || self.fps.is_some();
        match self.chatter.codec.load(Relaxed) {
            CODEC_MJPEG => Route::Mjpeg { copy: !reshape },
            CODEC_H264 => Route::Ingest(Codec::H264),
            CODEC_HEVC => Route::Ingest(Codec::H265),
            CODEC_OTHER => Route::Mjpeg { copy: false },
            _ => match self.input {
                FfmpegInput::Http(_) => Route::Mjpeg { copy: !reshape },
                FfmpegInput::Rtsp(_) | FfmpegInput::BambuRtsps(_) => Route::Ingest(Codec::H264),
                FfmpegInput::Raw(_) => Route::Mjpeg { copy: false },
            },
        }
    }
}

#[async_trait]
impl Source for FfmpegSource {
    fn work(&self) -> Option<&Work> {
        Some(&self.work)
    }

    /// H.264/H.265 cameras: their video is copied, not decoded, when nobody needs pictures.
    fn cheap_to_keep(&self) -> bool {
        matches!(self.route(), Route::Ingest(_))
    }

    async fn open(&self, demand: DemandRx) -> Result<Box<dyn Upstream>, SourceError> {
        let probe = probe(&self.program).await.map_err(SourceError::Open)?;
        let route = self.route();
        let decoders = ingest::DecoderConfig {
            program: self.program.clone(),
            shared: self.shared.clone(),
            decoder: self.decoder.clone(),
            size: self.size,
            quality: self.quality,
            zscale: probe.zscale,
            fps_mode_option: probe.fps_mode_option,
            max_frame: self.max_frame,
            keepalive: self.stall / 3,
        };
        let make_ingest = |codec, conn| {
            Box::new(ingest::Ingest::new(
                self.camera.clone(),
                codec,
                conn,
                demand,
                decoders,
                self.chatter.clone(),
                self.stall,
                self.work.clone(),
            ))
        };
        if let Some(url) = self.own_client_url(route) {
            match RtspClient::connect(url, self.max_frame, self.io_timeout).await {
                Ok(client) => {
                    let codec = client.codec();
                    self.chatter.codec.store(codec_code(codec), Relaxed);
                    self.work.set_ingest(Some(IngestBy::Farmcam));
                    return Ok(make_ingest(codec, ingest::Connection::Rtsp(Box::new(client))));
                }
                Err(Connect::Failed(why)) => return Err(SourceError::Open(why)),
                Err(Connect::Unsupported(why)) => {
                    warn!(camera = %self.camera, "{why}: reading this camera with ffmpeg instead (farmcam's own client tries again in {})", humantime::format_duration(OWN_CLIENT_RETRY));
                    *self.rtsp_unsupported.lock().unwrap() = Some(std::time::Instant::now());
                }
            }
        }
        let (copy, ingest, expect) = match route {
            Route::Mjpeg { copy } => (copy, None, copy.then_some(CODEC_MJPEG)),
            Route::Ingest(c) => (false, Some(c), Some(codec_code(c))),
        };
        let run = Plan {
            input: &self.input,
            size: self.size,
            fps: self.fps,
            quality: self.quality,
            extra_input_args: &self.extra_input_args,
            io_timeout: self.io_timeout,
            rtsp_timeout_option: probe.rtsp_timeout_option,
            zscale: probe.zscale,
            copy,
            ingest,
        }
        .invocation();
        debug!(camera = %self.camera, "starting {} {}", self.program.display(), redact::scrub(&run.args.join(" "), &self.chatter.secrets));
        let ff = child::spawn(&self.program, &run, &self.chatter, false, expect, "ffmpeg")
            .map_err(SourceError::Open)?;
        Ok(match route {
            Route::Mjpeg { copy } => {
                self.work.set_decoder(None);
                self.work.set_ingest(None);
                Box::new(mjpeg::MjpegUpstream::new(
                    self.camera.clone(),
                    ff,
                    copy,
                    self.max_frame,
                    self.work.clone(),
                ))
            }
            Route::Ingest(codec) => {
                self.work.set_ingest(Some(IngestBy::Ffmpeg));
                make_ingest(codec, ingest::Connection::Ffmpeg(Box::new(ff)))
            }
        })
    }
}
