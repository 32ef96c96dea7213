//! ffmpeg's command lines: the child that reads the camera, and the decoder that makes JPEGs.

use std::time::Duration;

use super::FfmpegInput;
use crate::frame::Size;
use crate::media::h264::Codec;
use crate::source::process::{script, Invocation};

/// Everything that decides ffmpeg's arguments.
#[derive(Clone, Debug)]
pub struct Plan<'a> {
    pub input: &'a FfmpegInput,
    pub size: Option<Size>,
    pub fps: Option<u32>,
    pub quality: u8,
    pub extra_input_args: &'a [String],
    /// Socket I/O timeout; the pump's stall timeout acts first, this is ffmpeg's own backstop.
    pub io_timeout: Duration,
    pub rtsp_timeout_option: Option<&'static str>,
    /// Convert to full range with `zscale` (see [`Probe::zscale`]).
    pub zscale: bool,
    /// Copy MJPEG input through (`-c:v copy`) instead of decoding and encoding it.
    pub copy: bool,
    /// Hand the camera's H.264/H.265 over untouched (Annex B, parameter sets before every
    /// keyframe) for farmcam's own decoder: overrides `copy`, `size` and `fps`.
    pub ingest: Option<Codec>,
}

impl Plan<'_> {
    /// The arguments alone (the URL inline even with credentials: for tests and messages).
    pub fn args(&self) -> Vec<String> {
        self.build(false).args
    }

    /// The command line to run: a URL with credentials is handed over in a script, so that no
    /// other user can read them on ffmpeg's command line.
    pub fn invocation(&self) -> Invocation {
        self.build(true)
    }

    fn build(&self, hide: bool) -> Invocation {
        let mut a: Vec<String> = ["-hide_banner", "-nostdin", "-nostats", "-loglevel", "level+info"]
            .map(String::from)
            .to_vec();
        let us = self.io_timeout.as_micros().to_string();
        // Options of the input itself (demuxer and protocol), and of how ffmpeg decodes it.
        let mut input: Vec<(String, String)> = Vec::new();
        let mut opt = |k: &str, v: &str| input.push((k.to_string(), v.to_string()));
        let mut decoding: Vec<&str> = Vec::new();
        match self.input {
            FfmpegInput::Rtsp(_) | FfmpegInput::BambuRtsps(_) => {
                opt("rtsp_transport", "tcp");
                if let Some(o) = self.rtsp_timeout_option {
                    opt(o.trim_start_matches('-'), &us);
                }
                // Printers (Bambu among them) send frozen or jumping RTP timestamps.
                opt("use_wallclock_as_timestamps", "1");
                opt("fflags", "nobuffer");
                decoding.extend(["-flags", "low_delay"]);
                if matches!(self.input, FfmpegInput::BambuRtsps(_)) {
                    // Bambu streams start slowly (sparse parameter sets): probe longer.
                    opt("probesize", "5000000");
                    opt("analyzeduration", "3000000");
                } else {
                    opt("probesize", "1000000");
                    opt("analyzeduration", "1000000");
                }
            }
            FfmpegInput::Http(_) => {
                // No "-fflags nobuffer" here: it drops the packets read while probing, which
                // for a short or slow HTTP stream can be all of them.
                opt("timeout", &us);
                decoding.extend(["-flags", "low_delay"]);
            }
            FfmpegInput::Raw(_) => {}
        }
        let url = match self.input {
            FfmpegInput::Rtsp(u) | FfmpegInput::BambuRtsps(u) | FfmpegInput::Http(u) => Some(u),
            FfmpegInput::Raw(_) => None,
        };
        let secret = url.is_some_and(|u| crate::util::redact::has_credentials(u));
        let mut script = None;
        let hidden = match (url, split_extra(self.extra_input_args)) {
            (Some(u), Ok(extra)) if hide && secret => {
                let mut options = input.clone();
                options.extend(extra.demuxer);
                script::text(u, &options).ok().map(|text| (text, extra.cli))
            }
            _ => None,
        };
        match hidden {
            Some((text, cli)) => {
                script = Some(text);
                let probe: Vec<String> = input
                    .iter()
                    .filter(|(k, _)| k == "probesize" || k == "analyzeduration")
                    .flat_map(|(k, v)| [format!("-{k}"), v.clone()])
                    .collect();
                a.extend(
                    [
                        "-f",
                        "concat",
                        "-safe",
                        "0",
                        "-protocol_whitelist",
                        script::PROTOCOLS,
                    ]
                    .map(String::from),
                );
                a.extend(probe);
                a.extend(decoding.iter().map(|w| w.to_string()));
                // ffmpeg's own input options (not the demuxer's) stay here: no secret in them.
                a.extend(cli);
                a.extend(["-i".to_string(), script::PLACEHOLDER.to_string()]);
            }
            None => {
                for (k, v) in &input {
                    a.extend([format!("-{k}"), v.clone()]);
                }
                a.extend(decoding.iter().map(|w| w.to_string()));
                a.extend(self.extra_input_args.iter().cloned());
                match self.input {
                    FfmpegInput::Raw(words) => a.extend(words.iter().cloned()),
                    _ => a.extend(["-i".to_string(), url.cloned().unwrap_or_default()]),
                }
            }
        }
        a.extend(["-map", "0:v:0", "-an", "-sn", "-dn"].map(String::from));
        if let Some(codec) = self.ingest {
            a.extend(
                [
                    "-c:v",
                    "copy",
                    "-bsf:v",
                    "dump_extra=freq=keyframe",
                    "-f",
                    codec.ffmpeg_format(),
                    "-flush_packets",
                    "1",
                    "pipe:1",
                ]
                .map(String::from),
            );
            return Invocation { args: a, script };
        }
        if self.copy {
            a.extend(["-c:v", "copy"].map(String::from));
        } else {
            let rate = self.fps.map(|f| format!("fps={f}"));
            a.extend(jpeg_output(self.size, self.zscale, self.quality, rate, "-q:v"));
        }
        a.extend(["-f", "mjpeg", "-flush_packets", "1", "pipe:1"].map(String::from));
        Invocation { args: a, script }
    }
}

/// ffmpeg's own options of an input (not the demuxer's or protocol's, so not for the script's
/// `option` lines): they stay on the command line before the script's `-i`. A stream specifier
/// (`-c:v`) is allowed after the name.
const CLI_INPUT_OPTIONS: &[&str] = &[
    "c",
    "codec",
    "vcodec",
    "hwaccel",
    "hwaccel_device",
    "hwaccel_output_format",
    "thread_queue_size",
    "readrate",
    "stream_loop",
    "itsoffset",
    "itsscale",
    "ss",
    "sseof",
    "t",
    "to",
    "discard",
    "r",
    "s",
    "pix_fmt",
    "display_rotation",
    "canvas_size",
    "guess_layout_max",
];
/// ffmpeg's own input options that take no value.
const CLI_INPUT_FLAGS: &[&str] = &[
    "re",
    "autorotate",
    "noautorotate",
    "accurate_seek",
    "noaccurate_seek",
    "find_stream_info",
    "nofind_stream_info",
];

/// `ffmpeg_args` sorted for a camera whose URL goes into the input script.
#[derive(Debug, Default, PartialEq)]
pub struct Extra {
    /// ffmpeg's own input options, kept on the command line.
    pub cli: Vec<String>,
    /// The demuxer's and protocols' options, written as the script's `option` lines.
    pub demuxer: Vec<(String, String)>,
}

/// Sort `ffmpeg_args` into ffmpeg's own options and the demuxer's; the error says what cannot go
/// with the URL into the script (`-f`, which picks the demuxer the script replaces; a flag
/// ffmpeg's demuxers do not have; a value with a line break).
pub fn split_extra(args: &[String]) -> Result<Extra, String> {
    let mut out = Extra::default();
    let mut words = args.iter().peekable();
    while let Some(w) = words.next() {
        let Some(key) = w.strip_prefix('-').filter(|k| !k.is_empty()) else {
            return Err(format!("{w:?} is not an option (-name value)"));
        };
        let base = key.split(':').next().unwrap_or(key);
        if base == "f" {
            return Err("-f picks a demuxer, which the script that carries the URL replaces".into());
        }
        if CLI_INPUT_FLAGS.contains(&base) {
            out.cli.push(w.clone());
            continue;
        }
        let Some(value) = words.next_if(|v| !v.starts_with('-') || v.parse::<f64>().is_ok()) else {
            return Err(format!("{w} has no value"));
        };
        if CLI_INPUT_OPTIONS.contains(&base) {
            out.cli.extend([w.clone(), value.clone()]);
        } else {
            out.demuxer.push((key.to_string(), value.clone()));
        }
    }
    // The same check the script itself makes (line breaks, option names).
    script::text("x", &out.demuxer)?;
    Ok(out)
}

/// Filters and encoder options that turn decoded pictures into JPEG: `first` (a rate filter)
/// first, then the size or the range conversion. `quality_option` is `-q:v` or `-qmin`: the
/// same quantiser, but with `-q:v` ffmpeg holds each picture back until the next input arrives,
/// which a decoder fed one keyframe a second cannot afford.
fn jpeg_output(
    size: Option<Size>,
    zscale: bool,
    quality: u8,
    first: Option<String>,
    quality_option: &str,
) -> Vec<String> {
    let mut a = full_range(size, zscale, first);
    let q = qscale(quality).to_string();
    a.extend(["-c:v", "mjpeg"].map(String::from));
    match quality_option {
        "-qmin" => a.extend(["-qmin", &q, "-qmax", &q].map(String::from)),
        other => a.extend([other, &q].map(String::from)),
    }
    a.extend(["-pix_fmt", "yuvj420p"].map(String::from));
    a
}

/// The filters that give full-range 4:2:0 pictures at `size` (after `first`), as JPEG wants.
fn full_range(size: Option<Size>, zscale: bool, first: Option<String>) -> Vec<String> {
    let mut filters: Vec<String> = first.into_iter().collect();
    // JPEG wants full-range YUV; H.264 cameras mostly send video range (16..235). Letting
    // `-pix_fmt yuvj420p` convert it runs swscale's generic scaler on every frame: a third of
    // ffmpeg's instructions for 720p (BENCHMARKS.md). zscale does the same conversion for a
    // fraction, and passes full-range input through. When scaling anyway, the scaler converts
    // the range in the same pass.
    if let Some(s) = size {
        filters.push(format!("scale={}:{}:out_range=full", s.width, s.height));
    } else if zscale {
        filters.push("zscale=r=full".to_string());
    }
    if filters.is_empty() {
        Vec::new()
    } else {
        vec!["-vf".to_string(), filters.join(",")]
    }
}

/// The decoder child: reads the access units farmcam writes to its stdin and writes every
/// picture it decodes, raw (full-range 4:2:0 in a YUV4MPEG2 stream), for farmcam to encode the
/// ones its consumers take. What is decoded (keyframes only, or every picture) is which units
/// farmcam writes, and what is encoded is farmcam's choice per picture: neither needs a restart.
#[derive(Clone, Debug)]
pub struct DecoderPlan<'a> {
    pub codec: Codec,
    /// A decoder to use instead of ffmpeg's default, e.g. `h264_v4l2m2m` on a Raspberry Pi.
    pub decoder: Option<&'a str>,
    pub size: Option<Size>,
    pub zscale: bool,
    /// `-fps_mode` (ffmpeg 5.1 and later) or `-vsync`.
    pub fps_mode_option: &'static str,
}

impl DecoderPlan<'_> {
    pub fn args(&self) -> Vec<String> {
        let mut a: Vec<String> = ["-hide_banner", "-nostats", "-loglevel", "level+info"]
            .map(String::from)
            .to_vec();
        if let Some(d) = self.decoder {
            a.extend(["-c:v".to_string(), d.to_string()]);
        }
        // Each picture comes out as soon as its unit went in: frame threads would hold a
        // keyframe until the next few units arrive (in keyframes mode: seconds). Slice threads
        // still share a picture of several slices out.
        a.extend(["-thread_type", "slice"].map(String::from));
        // Without a tiny probe the decoder reads megabytes before its first picture. (Not
        // "-fflags nobuffer": it drops the first keyframe, the very picture a newcomer waits for.)
        a.extend(["-probesize", "32", "-analyzeduration", "0", "-flags", "low_delay"].map(String::from));
        a.extend(
            [
                "-f",
                self.codec.ffmpeg_format(),
                "-i",
                "pipe:0",
                self.fps_mode_option,
                "passthrough",
            ]
            .map(String::from),
        );
        a.extend(full_range(self.size, self.zscale, None));
        // yuvj420p (full range) is not in the YUV4MPEG2 standard set: ffmpeg writes it with
        // "-strict -1" as C420jpeg XCOLORRANGE=FULL.
        a.extend(
            [
                "-pix_fmt",
                "yuvj420p",
                "-strict",
                "-1",
                "-f",
                "yuv4mpegpipe",
                "-flush_packets",
                "1",
                "pipe:1",
            ]
            .map(String::from),
        );
        a
    }
}

/// Quality 1..=100 (100 best) to ffmpeg's MJPEG `-q:v` 31..=2 (2 best). 90 → 5.
pub fn qscale(quality: u8) -> u32 {
    let q = quality.clamp(1, 100) as u32;
    2 + ((100 - q) * 29 + 49) / 99
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_arguments_are_sorted_into_ffmpegs_own_and_the_demuxers() {
        let words = |s: &str| s.split(' ').map(String::from).collect::<Vec<_>>();
        let e = split_extra(&words(
            "-hwaccel auto -rtsp_flags prefer_tcp -re -c:v h264 -itsoffset -0.5",
        ))
        .unwrap();
        assert_eq!(e.cli, words("-hwaccel auto -re -c:v h264 -itsoffset -0.5"));
        assert_eq!(
            e.demuxer,
            vec![("rtsp_flags".to_string(), "prefer_tcp".to_string())]
        );
        for bad in ["-f rtsp", "-rtsp_flags", "value", "-headers A\r\nB"] {
            let w = if bad.contains('\r') {
                vec!["-headers".to_string(), "A\r\nB".to_string()]
            } else {
                words(bad)
            };
            assert!(split_extra(&w).is_err(), "{bad}");
        }
    }

    fn plan(input: &FfmpegInput) -> Plan<'_> {
        Plan {
            input,
            size: None,
            fps: None,
            quality: 90,
            extra_input_args: &[],
            io_timeout: Duration::from_secs(15),
            rtsp_timeout_option: Some("-timeout"),
            zscale: false,
            copy: false,
            ingest: None,
        }
    }

    #[test]
    fn rtsp_gets_low_latency_flags_and_the_probed_timeout() {
        let input = FfmpegInput::Rtsp("rtsp://h/x".into());
        let a = plan(&input).args().join(" ");
        assert!(
            a.contains("-rtsp_transport tcp -timeout 15000000 -use_wallclock_as_timestamps 1"),
            "{a}"
        );
        assert!(
            a.contains("-i rtsp://h/x -map 0:v:0 -an -sn -dn -c:v mjpeg -q:v 5 -pix_fmt yuvj420p"),
            "{a}"
        );
        assert!(a.ends_with("-f mjpeg -flush_packets 1 pipe:1"), "{a}");
        let old = Plan {
            rtsp_timeout_option: Some("-stimeout"),
            ..plan(&input)
        }
        .args()
        .join(" ");
        assert!(
            old.contains("-stimeout 15000000") && !old.contains("-timeout"),
            "{old}"
        );
    }

    #[test]
    fn copy_scale_fps_and_extra_args() {
        let input = FfmpegInput::Http("http://h/".into());
        let extra = vec!["-headers".to_string(), "X: y".to_string()];
        let p = Plan {
            copy: true,
            ingest: None,
            extra_input_args: &extra,
            ..plan(&input)
        };
        let a = p.args();
        let i = a.iter().position(|w| w == "-i").unwrap();
        assert_eq!(&a[i - 2..i], &extra[..], "extra args go right before -i");
        assert!(a.join(" ").contains("-c:v copy -f mjpeg"));
        let p = Plan {
            size: Some(Size {
                width: 640,
                height: 360,
            }),
            fps: Some(5),
            quality: 100,
            ..plan(&input)
        };
        let a = p.args().join(" ");
        assert!(
            a.contains("-vf fps=5,scale=640:360:out_range=full -c:v mjpeg -q:v 2 -pix_fmt yuvj420p"),
            "{a}"
        );
        // Without scaling, zscale converts the range when the ffmpeg has it.
        let z = Plan {
            zscale: true,
            ..plan(&input)
        };
        assert!(z.args().join(" ").contains("-vf zscale=r=full -c:v mjpeg"));
        assert!(!plan(&input).args().join(" ").contains("-vf"));
    }

    #[test]
    fn quality_maps_to_qscale() {
        assert_eq!((qscale(100), qscale(90), qscale(1)), (2, 5, 31));
    }
}

#[cfg(test)]
mod decoder_tests {
    use super::*;

    fn decoder(hw: Option<&str>) -> String {
        DecoderPlan {
            codec: Codec::H264,
            decoder: hw,
            size: None,
            zscale: true,
            fps_mode_option: "-fps_mode",
        }
        .args()
        .join(" ")
    }

    #[test]
    fn ingest_copies_the_video_with_parameter_sets_before_keyframes() {
        let input = FfmpegInput::Rtsp("rtsp://cam/s".into());
        let mut p = Plan {
            input: &input,
            size: Some(Size {
                width: 640,
                height: 480,
            }),
            fps: Some(5),
            quality: 90,
            extra_input_args: &[],
            io_timeout: Duration::from_secs(15),
            rtsp_timeout_option: Some("-timeout"),
            zscale: true,
            copy: false,
            ingest: Some(Codec::H265),
        };
        let a = p.args().join(" ");
        assert!(
            a.ends_with("-i rtsp://cam/s -map 0:v:0 -an -sn -dn -c:v copy -bsf:v dump_extra=freq=keyframe -f hevc -flush_packets 1 pipe:1"),
            "{a}"
        );
        assert!(
            !a.contains("scale") && !a.contains("fps="),
            "size and rate are the decoder's: {a}"
        );
        p.ingest = Some(Codec::H264);
        assert!(p.args().join(" ").contains("-f h264"));
    }

    #[test]
    fn decoder_reads_stdin_and_writes_raw_pictures() {
        let k = decoder(None);
        assert!(
            k.contains("-thread_type slice -probesize 32 -analyzeduration 0 -flags low_delay -f h264 -i pipe:0 -fps_mode passthrough"),
            "{k}"
        );
        assert!(
            k.ends_with(
                "-vf zscale=r=full -pix_fmt yuvj420p -strict -1 -f yuv4mpegpipe -flush_packets 1 pipe:1"
            ),
            "{k}"
        );
        let hw = decoder(Some("h264_v4l2m2m"));
        assert!(
            hw.contains("-c:v h264_v4l2m2m -thread_type slice"),
            "the decoder is named before -i: {hw}"
        );
        assert!(
            !k.contains("nobuffer"),
            "nobuffer would drop the first keyframe: {k}"
        );
    }
}
