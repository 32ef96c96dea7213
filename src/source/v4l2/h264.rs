//! A V4L2 camera that encodes H.264 itself (`format = "h264"`, UVC cameras with their own
//! encoder): each buffer is one access unit. They go to the same ingest as an RTSP camera's
//! video ([`crate::source::ffmpeg::ingest`]): passed through to WebRTC and RTSP consumers as
//! they are, decoded by the shared helper only as much as MJPEG viewers and snapshots need.

use std::path::PathBuf;
use std::sync::atomic::AtomicU8;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use super::{Delivered, V4l2Upstream};
use crate::media::h264::{nal_type, nal_units, AccessUnit, AuSplitter, Codec};
use crate::source::coded::encoding::Units as ParameterSets;
use crate::source::coded::libav::SharedDecoder;
use crate::source::ffmpeg::ingest::{Connection, DecoderConfig, Ingest, UnitSource};
use crate::source::process::{child::Chatter, CODEC_H264};
use crate::source::{DemandRx, IngestBy, Upstream, Work};
use crate::util::log_limit::LogLimit;

/// Whether a buffer holds an IDR picture (where a decoder can start).
pub fn is_keyframe(data: &[u8]) -> bool {
    nal_units(data).any(|n| nal_type(Codec::H264, n) == 5)
}

/// The camera's buffers as access units; a keyframe without its parameter sets (many cameras
/// send them once, at the start) gets the latest ones in front.
struct DeviceUnits {
    upstream: Box<V4l2Upstream>,
    splitter: AuSplitter,
    params: ParameterSets,
}

#[async_trait]
impl UnitSource for DeviceUnits {
    async fn next(&mut self, out: &mut Vec<AccessUnit>) -> Result<(), String> {
        loop {
            match self.upstream.frames.recv().await {
                Some(Ok(Delivered::Unit(data))) => {
                    let mut cut = Vec::new();
                    self.splitter.push(&data, &mut cut);
                    self.splitter.finish(&mut cut);
                    out.extend(cut.iter().map(|au| self.params.unit(&au.data, au.keyframe)));
                    return Ok(());
                }
                Some(Ok(Delivered::Frame(_))) => continue,
                Some(Err(why)) => return Err(why),
                None => return Err("the capture thread ended".into()),
            }
        }
    }

    async fn stop(&mut self) {
        self.upstream.release().await;
    }
}

/// The upstream of an open V4L2 camera that sends H.264.
#[allow(clippy::too_many_arguments)]
pub async fn ingest(
    upstream: Box<V4l2Upstream>,
    demand: DemandRx,
    camera: String,
    quality: u8,
    shared: Arc<SharedDecoder>,
    stall: Duration,
    max_frame: usize,
    work: Arc<Work>,
) -> Box<dyn Upstream> {
    // An ffmpeg decoder child is the fallback for a stream the shared helper cannot decode;
    // without ffmpeg the helper still decodes.
    let program = PathBuf::from(crate::source::ffmpeg::DEFAULT_PROGRAM);
    let probe = crate::source::ffmpeg::probe(&program).await.ok();
    let config = DecoderConfig {
        program,
        shared,
        decoder: None,
        size: None,
        quality,
        zscale: probe.as_ref().is_some_and(|p| p.zscale),
        fps_mode_option: probe.as_ref().map_or("-fps_mode", |p| p.fps_mode_option),
        max_frame,
        keepalive: stall / 3,
    };
    let chatter = Chatter {
        camera: camera.clone(),
        secrets: Arc::new(Vec::new()),
        log: Arc::new(Mutex::new(LogLimit::with_cap(20))),
        codec: Arc::new(AtomicU8::new(CODEC_H264)),
    };
    work.set_ingest(Some(IngestBy::Farmcam));
    let units = DeviceUnits {
        upstream,
        splitter: AuSplitter::new(Codec::H264, max_frame),
        params: ParameterSets::default(),
    };
    Box::new(Ingest::new(
        camera,
        Codec::H264,
        Connection::Device(Box::new(units)),
        demand,
        config,
        chatter,
        stall,
        work,
    ))
}
