//! What ffmpeg reads: `rtsp://`, `rtsps://`, `bambu-rtsps://`, `http(s)://` or `ffmpeg:ARGS`,
//! parsed and shown without credentials.

use crate::util::redact;

/// What ffmpeg reads: a URL it gets options for, or the user's own input arguments. `Debug`
/// shows it redacted.
#[derive(Clone, PartialEq, Eq)]
pub enum FfmpegInput {
    /// `rtsp://` or `rtsps://`.
    Rtsp(String),
    /// `bambu-rtsps://bblp:CODE@IP`: a Bambu X1/H2/P2S camera's RTSPS URL (port 322,
    /// `/streaming/live/1`); like `Rtsp`, with a larger probe for these printers' streams.
    BambuRtsps(String),
    /// `http://` or `https://` (MJPEG streams from mjpg-streamer, Creality, IP cameras, or any
    /// stream ffmpeg can read).
    Http(String),
    /// `ffmpeg:` followed by input arguments (shell-style quoting), including `-i`.
    Raw(Vec<String>),
}

impl std::fmt::Debug for FfmpegInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl FfmpegInput {
    /// `None` when the string is not an ffmpeg source at all; `Some(Err)` when it is one but
    /// malformed.
    pub fn parse(s: &str) -> Option<Result<FfmpegInput, String>> {
        let lower = s.to_ascii_lowercase();
        if let Some(args) = s.strip_prefix("ffmpeg:") {
            return Some(parse_raw(args));
        }
        let (kind, rest): (fn(String) -> FfmpegInput, &str) = if let Some(r) = lower
            .strip_prefix("rtsp://")
            .or_else(|| lower.strip_prefix("rtsps://"))
        {
            (FfmpegInput::Rtsp, r)
        } else if let Some(r) = lower
            .strip_prefix("http://")
            .or_else(|| lower.strip_prefix("https://"))
        {
            (FfmpegInput::Http, r)
        } else {
            return None;
        };
        let host = redact::host_port(rest);
        if host.is_empty() || host.starts_with(':') || s.chars().any(char::is_whitespace) {
            return Some(Err(format!(
                "{:?} has no host or contains spaces; write e.g. \"rtsp://192.168.1.20:554/stream1\" \
                 (percent-encode spaces and special characters in passwords)",
                redact::url(s)
            )));
        }
        Some(Ok(kind(s.to_string())))
    }

    /// Whether the camera may send pictures (MJPEG) rather than H.264/H.265: an HTTP stream or
    /// the user's own ffmpeg input; RTSP cameras send coded video.
    pub fn may_send_pictures(&self) -> bool {
        matches!(self, FfmpegInput::Http(_) | FfmpegInput::Raw(_))
    }

    /// As shown in logs and status: credentials removed.
    pub fn redacted(&self) -> String {
        match self {
            FfmpegInput::Rtsp(u) | FfmpegInput::BambuRtsps(u) | FfmpegInput::Http(u) => redact::url(u),
            FfmpegInput::Raw(args) => {
                let shown: Vec<String> = args.iter().map(|a| redact::url(a)).collect();
                format!("ffmpeg:{}", shown.join(" "))
            }
        }
    }

    /// Passwords in the input's URLs, to scrub from anything ffmpeg prints.
    pub(super) fn secrets(&self) -> Vec<String> {
        match self {
            FfmpegInput::Rtsp(u) | FfmpegInput::BambuRtsps(u) | FfmpegInput::Http(u) => redact::secrets_of(u),
            FfmpegInput::Raw(args) => args.iter().flat_map(|a| redact::secrets_of(a)).collect(),
        }
    }
}

fn parse_raw(args: &str) -> Result<FfmpegInput, String> {
    let bad = |why: &str| {
        format!(
            "\"ffmpeg:{}\" {why}; write input arguments ending in -i, e.g. \"ffmpeg:-f lavfi -i testsrc2\"",
            redact::url(args)
        )
    };
    let words = shlex::split(args).ok_or_else(|| bad("has unbalanced quotes"))?;
    let Some(i) = words.iter().position(|w| w == "-i") else {
        return Err(bad("has no -i INPUT"));
    };
    if i + 1 >= words.len() {
        return Err(bad("has -i without an input after it"));
    }
    Ok(FfmpegInput::Raw(words))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_parse_and_redact() {
        let rtsp = FfmpegInput::parse("rtsps://bblp:12345678@10.0.0.2:322/streaming/live/1")
            .unwrap()
            .unwrap();
        assert_eq!(rtsp.redacted(), "rtsps://***@10.0.0.2:322/streaming/live/1");
        assert_eq!(rtsp.secrets(), vec!["12345678".to_string()]);
        assert!(!format!("{rtsp:?}").contains("12345678"), "Debug is redacted too");
        assert!(matches!(
            FfmpegInput::parse("http://k1:8080/?action=stream"),
            Some(Ok(FfmpegInput::Http(_)))
        ));
        assert!(FfmpegInput::parse("test:").is_none());
        assert!(FfmpegInput::parse("rtsp:///x").unwrap().is_err());
        assert!(FfmpegInput::parse("rtsp://u:p@:554/x").unwrap().is_err());
        // A password with '#', '/' or '?' does not hide a missing host.
        for url in ["rtsp://admin:Reload#S3cret@", "rtsp://admin:a/b?c@/cam"] {
            let e = FfmpegInput::parse(url).unwrap().unwrap_err();
            assert!(
                e.contains("no host") && !e.contains("S3cret") && !e.contains("a/b"),
                "{e}"
            );
        }
        assert!(FfmpegInput::parse("rtsp://admin:a#b@host:554/cam")
            .unwrap()
            .is_ok());
        let raw = FfmpegInput::parse("ffmpeg:-f lavfi -i 'testsrc2=size=320x240'")
            .unwrap()
            .unwrap();
        assert_eq!(
            raw,
            FfmpegInput::Raw(vec![
                "-f".into(),
                "lavfi".into(),
                "-i".into(),
                "testsrc2=size=320x240".into()
            ])
        );
        let e = FfmpegInput::parse("ffmpeg:-f lavfi rtsp://u:secret@h/")
            .unwrap()
            .unwrap_err();
        assert!(e.contains("-i") && !e.contains("secret"), "{e}");
    }
}
