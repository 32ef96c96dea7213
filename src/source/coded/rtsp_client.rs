//! farmcam's own RTSP client for plain `rtsp://` H.264/H.265 cameras (`retina`, the client
//! moonfire-nvr uses): RTP interleaved over the RTSP TCP connection, each frame handed over as
//! an Annex B access unit with its parameter sets before every keyframe, as the ffmpeg ingest
//! writes them. It replaces an ffmpeg process per camera (BENCHMARKS.md). What it cannot open
//! (RTSPS, a camera whose server it does not understand, a stream that is not H.264/H.265) is
//! left to ffmpeg: [`Connect::Unsupported`].

use std::time::Duration;

use futures_util::StreamExt;
use retina::client::{Credentials, Demuxed, PlayOptions, Session, SessionOptions, SetupOptions, Transport};
use retina::codec::{CodecItem, FrameFormat};

use crate::media::h264::{AccessUnit, AuSplitter, Codec};
use crate::util::redact;

/// Why a connection could not be made.
#[derive(Debug)]
pub enum Connect {
    /// The camera is down, refused, or did not answer: the same for ffmpeg.
    Failed(String),
    /// This client cannot read this camera: ffmpeg should.
    Unsupported(String),
}

pub struct RtspClient {
    session: Demuxed,
    stream: usize,
    codec: Codec,
    splitter: AuSplitter,
    secrets: Vec<String>,
}

/// A client error in one line (retina adds lines of connection context), without secrets.
fn one_line(e: &dyn std::fmt::Display, secrets: &[String]) -> String {
    let text = e.to_string();
    redact::scrub(text.lines().next().unwrap_or_default(), secrets)
}

/// `url` without its credentials, and them.
fn split_credentials(url: &str) -> Result<(rtsp_types::Url, Option<Credentials>), String> {
    let mut u = rtsp_types::Url::parse(url).map_err(|e| format!("{}: {e}", redact::url(url)))?;
    let decode = redact::percent_decode;
    let creds = (!u.username().is_empty()).then(|| Credentials {
        username: decode(u.username()),
        password: decode(u.password().unwrap_or("")),
    });
    let _ = u.set_username("");
    let _ = u.set_password(None);
    Ok((u, creds))
}

/// What a SETUP or PLAY error means: a camera that says this client's request cannot work
/// (TCP interleaving unsupported: 461; a method or option it lacks: 405, 455, 501, 551) is left
/// to ffmpeg; anything else (a busy camera's 453 or 503, a reset, a timeout) is a failure
/// retried with the backoff, by this client.
fn refusal(said: String) -> Connect {
    let status = said
        .split(" response to ")
        .next()
        .and_then(|head| head.rsplit(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse::<u16>().ok());
    match status {
        Some(405 | 455 | 461 | 501 | 551) => Connect::Unsupported(said),
        _ => Connect::Failed(said),
    }
}

impl RtspClient {
    /// DESCRIBE, SETUP and PLAY the camera's first H.264/H.265 video stream, within `timeout`.
    pub async fn connect(url: &str, max_frame: usize, timeout: Duration) -> Result<RtspClient, Connect> {
        let secrets = redact::secrets_of(url);
        // Errors name the camera (credentials removed), as ffmpeg's do.
        let shown = redact::url(url);
        let scrub = |e: &dyn std::fmt::Display| format!("{shown}: {}", one_line(e, &secrets));
        let (u, creds) = split_credentials(url).map_err(Connect::Unsupported)?;
        let options = SessionOptions::default()
            .creds(creds)
            .user_agent(format!("farmcam/{}", env!("CARGO_PKG_VERSION")));
        let open = async {
            let mut session = Session::describe(u, options)
                .await
                .map_err(|e| Connect::Failed(scrub(&e)))?;
            let found = session.streams().iter().enumerate().find_map(|(i, s)| {
                let codec = match (s.media(), s.encoding_name()) {
                    ("video", "h264") => Codec::H264,
                    ("video", "h265") => Codec::H265,
                    _ => return None,
                };
                Some((i, codec))
            });
            let Some((stream, codec)) = found else {
                return Err(Connect::Unsupported(
                    "the camera sends no H.264 or H.265 video".into(),
                ));
            };
            let setup = SetupOptions::default()
                .transport(Transport::Tcp(Default::default()))
                .frame_format(FrameFormat::SIMPLE);
            session
                .setup(stream, setup)
                .await
                .map_err(|e| refusal(scrub(&e)))?;
            let session = session
                .play(PlayOptions::default())
                .await
                .map_err(|e| refusal(scrub(&e)))?
                .demuxed()
                .map_err(|e| Connect::Unsupported(scrub(&e)))?;
            Ok(RtspClient {
                session,
                stream,
                codec,
                splitter: AuSplitter::new(codec, max_frame),
                secrets: secrets.clone(),
            })
        };
        match tokio::time::timeout(timeout, open).await {
            Ok(r) => r,
            Err(_) => Err(Connect::Failed(format!(
                "{shown}: no answer within {}",
                humantime::format_duration(timeout)
            ))),
        }
    }

    pub fn codec(&self) -> Codec {
        self.codec
    }

    /// The next access units (cancel-safe) and the camera's time of them (90 kHz ticks since
    /// the connection's first frame, by the camera's own clock); `Err(why)` once the connection
    /// ended.
    pub async fn next(&mut self, out: &mut Vec<AccessUnit>) -> Result<f64, String> {
        loop {
            match self.session.next().await {
                Some(Ok(CodecItem::VideoFrame(f))) if f.stream_id() == self.stream => {
                    // A frame is one whole access unit: cut (and checked) at once.
                    self.splitter.push(f.data(), out);
                    self.splitter.finish(out);
                    let t = f.timestamp();
                    return Ok(t.elapsed() as f64 * 90_000.0 / f64::from(t.clock_rate().get()));
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(one_line(&e, &self.secrets)),
                None => return Err("the camera closed the RTSP connection".into()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busy_camera_is_retried_and_only_a_definite_no_goes_to_ffmpeg() {
        let kind = |said: &str| match refusal(said.to_string()) {
            Connect::Failed(_) => "retry",
            Connect::Unsupported(_) => "ffmpeg",
        };
        assert_eq!(
            kind("rtsp://***@h/live: 453 response to SETUP CSeq=3: Not Enough Bandwidth"),
            "retry"
        );
        assert_eq!(
            kind("rtsp://h/live: 503 response to PLAY CSeq=4: Service Unavailable"),
            "retry"
        );
        assert_eq!(kind("rtsp://h/live: Connection reset by peer"), "retry");
        assert_eq!(
            kind("rtsp://h/live: 461 response to SETUP CSeq=3: Unsupported Transport"),
            "ffmpeg"
        );
        assert_eq!(
            kind("rtsp://h/live: 501 response to PLAY CSeq=4: Not Implemented"),
            "ffmpeg"
        );
    }

    #[test]
    fn credentials_leave_the_url_percent_decoded() {
        let (u, c) = split_credentials("rtsp://admin:p%40ss%3Aw@10.0.0.2:554/live").unwrap();
        assert_eq!(u.as_str(), "rtsp://10.0.0.2:554/live");
        let c = c.unwrap();
        assert_eq!((c.username.as_str(), c.password.as_str()), ("admin", "p@ss:w"));
        let (u, c) = split_credentials("rtsp://10.0.0.2/live").unwrap();
        assert_eq!((u.as_str(), c.is_none()), ("rtsp://10.0.0.2/live", true));
    }
}
