//! Who decodes one camera's video: a session in the shared decoder helper ([`super::libav`],
//! the default), or a decoder child of its own (an ffmpeg process) when the camera asks for
//! something only ffmpeg does: another decoder (`decoder = "h264_v4l2m2m"`), a `size`, or the
//! helper could not decode this stream. Both take access units and give pictures alike.

use bytes::Bytes;

use super::decoder::Decoder;
use crate::media::h264::{delimiter, Codec};
use crate::source::coded::libav::Session;
use crate::source::coded::picture::Picture;
use crate::source::DecodedBy;

pub enum Decoding {
    Shared(Session),
    Own(Box<Decoder>),
}

impl Decoding {
    pub fn by(&self) -> DecodedBy {
        match self {
            Decoding::Shared(_) => DecodedBy::Helper,
            Decoding::Own(_) => DecodedBy::Ffmpeg,
        }
    }

    /// The shared helper could not decode this stream: ffmpeg should.
    pub fn refused(&self) -> bool {
        matches!(self, Decoding::Shared(s) if s.refused())
    }

    /// The shared helper died or hung with this camera's units in flight.
    pub fn suspect(&self) -> bool {
        matches!(self, Decoding::Shared(s) if s.suspect())
    }

    /// Whether every picture of a replay comes back (a decoder child), or only the last one
    /// (the shared helper decodes the others without sending them).
    pub fn returns_replayed(&self) -> bool {
        matches!(self, Decoding::Own(_))
    }

    /// Queue access units (of a replay, `last_only`, only the last one's picture is wanted);
    /// false when the decoder is behind (nothing was queued).
    pub fn feed(&mut self, codec: Codec, units: &[Bytes], last_only: bool) -> bool {
        match self {
            Decoding::Shared(s) => s.feed(units, last_only),
            Decoding::Own(d) => {
                // A delimiter after each unit makes ffmpeg's parser finish the picture now, not
                // when the next unit (in keyframes mode: the next keyframe) arrives.
                let delimiter = delimiter(codec);
                let len = units.iter().map(|u| u.len() + delimiter.len()).sum();
                let mut data = Vec::with_capacity(len);
                for u in units {
                    data.extend_from_slice(u);
                    data.extend_from_slice(delimiter);
                }
                d.feed(Bytes::from(data))
            }
        }
    }

    /// Whether a keyframe fed alone stays in the decoder for the units after it (a decoder
    /// child), or is forgotten once its picture is out (the shared helper's spare decoders).
    pub fn keeps_keyframes(&self) -> bool {
        matches!(self, Decoding::Own(_))
    }

    /// Queue a keyframe that carries its parameter sets, for a camera decoded keyframes only:
    /// the shared helper decodes it with a spare decoder (the camera holds none between
    /// keyframes); a decoder child takes it as any unit.
    pub fn feed_alone(&mut self, codec: Codec, unit: &Bytes) -> bool {
        match self {
            Decoding::Shared(s) => s.feed_alone(unit),
            Decoding::Own(_) => self.feed(codec, std::slice::from_ref(unit), false),
        }
    }

    pub fn finish(&mut self) {
        match self {
            Decoding::Shared(s) => s.finish(),
            Decoding::Own(d) => d.finish(),
        }
    }

    pub async fn next(&mut self) -> Option<Picture> {
        match self {
            Decoding::Shared(s) => s.next().await,
            Decoding::Own(d) => d.next().await,
        }
    }

    pub async fn exit_reason(&mut self) -> String {
        match self {
            Decoding::Shared(s) => s.exit_reason(),
            Decoding::Own(d) => d.exit_reason().await,
        }
    }

    pub async fn stop(self) {
        match self {
            Decoding::Shared(s) => drop(s),
            Decoding::Own(d) => d.stop().await,
        }
    }
}
