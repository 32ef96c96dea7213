//! The decoder child: an ffmpeg that reads access units farmcam writes to its stdin and writes
//! JPEGs. It runs only while someone needs JPEG frames; stopping or restarting it never touches
//! the camera connection.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::args::Invocation;
use super::child::{self, Chatter, Ffmpeg};
use super::mjpeg::READ_CHUNK;
use crate::jpeg::{Split, Splitter};

/// Access units queued for the decoder (about two seconds of video), and their bytes at most
/// (a unit larger than that alone is still taken when nothing is queued); beyond that the
/// decoder is behind and is resynchronised at the next keyframe.
const FEED_QUEUE: usize = 64;
const FEED_BYTES: usize = 8 << 20;
/// Decoded JPEGs waiting for the pump.
const FRAME_QUEUE: usize = 4;

pub struct Decoder {
    ff: Ffmpeg,
    /// None once the input ended: the decoder finishes what it has, then exits.
    feed: Option<mpsc::Sender<Bytes>>,
    /// Bytes queued and not yet written to the decoder.
    queued: Arc<AtomicUsize>,
    frames: mpsc::Receiver<Split>,
    writer: JoinHandle<()>,
    reader: JoinHandle<()>,
}

impl Decoder {
    pub fn start(
        program: &Path,
        args: &[String],
        chatter: &Chatter,
        max_frame: usize,
    ) -> Result<Decoder, String> {
        // The decoder reads farmcam's pipe: no URL, no script.
        let run = Invocation {
            args: args.to_vec(),
            script: None,
        };
        let mut ff = child::spawn(program, &run, chatter, true, None, "decoder")?;
        let mut stdin = ff.stdin.take().expect("piped stdin");
        let mut stdout = ff.stdout.take().expect("piped stdout");
        let (feed, mut units) = mpsc::channel::<Bytes>(FEED_QUEUE);
        let queued = Arc::new(AtomicUsize::new(0));
        let written = queued.clone();
        let writer = tokio::spawn(async move {
            while let Some(unit) = units.recv().await {
                let ok = stdin.write_all(&unit).await.is_ok() && stdin.flush().await.is_ok();
                written.fetch_sub(unit.len(), Relaxed);
                if !ok {
                    break;
                }
            }
        });
        let (frames_tx, frames) = mpsc::channel(FRAME_QUEUE);
        let reader = tokio::spawn(async move {
            let mut splitter = Splitter::new(max_frame);
            let mut buf = vec![0u8; READ_CHUNK];
            let mut out = Vec::new();
            while let Ok(n) = stdout.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                splitter.push(&buf[..n], &mut out);
                for f in out.drain(..) {
                    if frames_tx.send(f).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok(Decoder {
            ff,
            feed: Some(feed),
            queued,
            frames,
            writer,
            reader,
        })
    }

    /// Queue data for the decoder; false when it is behind (the data was not queued).
    pub fn feed(&self, data: Bytes) -> bool {
        let Some(f) = &self.feed else { return false };
        let len = data.len();
        let before = self.queued.fetch_add(len, Relaxed);
        if (before > 0 && before + len > FEED_BYTES) || f.try_send(data).is_err() {
            self.queued.fetch_sub(len, Relaxed);
            return false;
        }
        true
    }

    /// No more input: the decoder's stdin closes once what is queued was written, so it
    /// decodes the rest and exits.
    pub fn finish(&mut self) {
        self.feed = None;
    }

    /// The next JPEG; `None` once the decoder has exited.
    pub async fn next(&mut self) -> Option<Split> {
        self.frames.recv().await
    }

    /// Why it exited (after `next` returned `None`).
    pub async fn exit_reason(&mut self) -> String {
        self.ff.exit_reason().await
    }

    /// Stop the child and its two pipe tasks (bounded).
    pub async fn stop(mut self) {
        self.writer.abort();
        self.ff.stop().await;
        self.reader.abort();
        let _ = self.writer.await;
        let _ = self.reader.await;
    }
}
