//! The decoder child: an ffmpeg that reads access units farmcam writes to its stdin and writes
//! each picture it decodes, raw, as a YUV4MPEG2 stream (read here into [`Picture`]s). It runs
//! only while someone needs JPEG frames; stopping or restarting it never touches the camera
//! connection.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

use bytes::Bytes;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::mjpeg::READ_CHUNK;
use crate::frame::Size;
use crate::source::coded::picture::{planes_len, Picture, FEED_BYTES, FEED_QUEUE};
use crate::source::process::child::{self, Chatter, Ffmpeg};
use crate::source::process::Invocation;

/// Decoded pictures waiting for farmcam (a 720p one is 1.4 MB).
const FRAME_QUEUE: usize = 2;
/// The pipe the pictures come through: a 720p picture in a few reads, not twenty.
const PIPE_SIZE: libc::c_int = 1 << 20;
/// The longest header line of the stream (ffmpeg writes well under 100 bytes).
const HEADER_MAX: u64 = 512;

/// The picture size a YUV4MPEG2 stream header announces (4:2:0 only, at most
/// [`crate::media::codec::MAX_PIXELS`]).
fn stream_size(header: &str) -> Result<Size, String> {
    let mut words = header.trim_end().split(' ');
    if words.next() != Some("YUV4MPEG2") {
        return Err("the decoder's output is not a YUV4MPEG2 stream".into());
    }
    let (mut width, mut height) = (0u32, 0u32);
    for w in words {
        match w.split_at_checked(1) {
            Some(("W", v)) => width = v.parse().unwrap_or(0),
            Some(("H", v)) => height = v.parse().unwrap_or(0),
            Some(("C", v)) if !v.starts_with("420") => {
                return Err(format!("the decoder writes {v} pictures, not 4:2:0"))
            }
            _ => {}
        }
    }
    if width == 0 || height == 0 || width as usize * height as usize > crate::media::codec::MAX_PIXELS {
        return Err(format!("the decoder writes {width}x{height} pictures"));
    }
    Ok(Size { width, height })
}

/// One header line (bounded), into `line`.
async fn header_line(r: &mut (impl AsyncBufReadExt + Unpin), line: &mut Vec<u8>) -> std::io::Result<usize> {
    line.clear();
    r.take(HEADER_MAX).read_until(b'\n', line).await
}

/// Read pictures from a YUV4MPEG2 stream until it ends or is broken (then why, for the log).
async fn read_pictures(out: impl AsyncRead + Unpin, pictures: mpsc::Sender<Picture>) -> Option<String> {
    let mut r = BufReader::with_capacity(READ_CHUNK, out);
    let mut line = Vec::new();
    match header_line(&mut r, &mut line).await {
        Ok(0) | Err(_) => return None,
        Ok(_) => {}
    }
    let size = match stream_size(&String::from_utf8_lossy(&line)) {
        Ok(s) => s,
        Err(e) => return Some(e),
    };
    let (y, c) = planes_len(size);
    loop {
        match header_line(&mut r, &mut line).await {
            Ok(0) | Err(_) => return None,
            Ok(_) if line.starts_with(b"FRAME") && line.ends_with(b"\n") => {}
            Ok(_) => return Some("the decoder's output lost its frame markers".into()),
        }
        let mut planes = vec![0u8; y + 2 * c];
        if r.read_exact(&mut planes).await.is_err() {
            return None;
        }
        let p = Picture {
            planes: Bytes::from(planes),
            size,
        };
        if pictures.send(p).await.is_err() {
            return None;
        }
    }
}

pub struct Decoder {
    ff: Ffmpeg,
    /// None once the input ended: the decoder finishes what it has, then exits.
    feed: Option<mpsc::Sender<Bytes>>,
    /// Bytes queued and not yet written to the decoder.
    queued: Arc<AtomicUsize>,
    pictures: mpsc::Receiver<Picture>,
    writer: JoinHandle<()>,
    reader: JoinHandle<()>,
}

impl Decoder {
    pub fn start(program: &Path, args: &[String], chatter: &Chatter) -> Result<Decoder, String> {
        // The decoder reads farmcam's pipe: no URL, no script.
        let run = Invocation {
            args: args.to_vec(),
            script: None,
        };
        let mut ff = child::spawn(program, &run, chatter, true, None, "decoder")?;
        let mut stdin = ff.stdin.take().expect("piped stdin");
        let stdout = ff.stdout.take().expect("piped stdout");
        {
            use std::os::fd::AsRawFd;
            // SAFETY: fcntl(2) on the pipe farmcam holds; a refusal only keeps the default size.
            unsafe { libc::fcntl(stdout.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_SIZE) };
        }
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
        let (pictures_tx, pictures) = mpsc::channel(FRAME_QUEUE);
        let camera = chatter.camera.clone();
        let reader = tokio::spawn(async move {
            if let Some(why) = read_pictures(stdout, pictures_tx).await {
                tracing::warn!(camera = %camera, "{why}");
            }
        });
        Ok(Decoder {
            ff,
            feed: Some(feed),
            queued,
            pictures,
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

    /// The next picture; `None` once the decoder has exited.
    pub async fn next(&mut self) -> Option<Picture> {
        self.pictures.recv().await
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stream_header_gives_the_size_of_4_2_0_pictures_only() {
        let s = stream_size("YUV4MPEG2 W1280 H720 F30:1 Ip A1:1 C420jpeg XYSCSS=420JPEG XCOLORRANGE=FULL\n");
        assert_eq!(
            s,
            Ok(Size {
                width: 1280,
                height: 720
            })
        );
        assert!(stream_size("YUV4MPEG2 W1280 H720 C444\n")
            .unwrap_err()
            .contains("444"));
        assert!(stream_size("YUV4MPEG2 W99999 H99999\n").is_err());
        assert!(stream_size("YUV4MPEG2 H720\n").is_err());
        assert!(stream_size("GIF89a").is_err());
        assert_eq!(planes_len(Size { width: 5, height: 3 }), (15, 6));
    }

    #[tokio::test]
    async fn pictures_are_read_whole_and_a_broken_stream_is_said() {
        let mut stream = b"YUV4MPEG2 W4 H2 F30:1 C420jpeg\n".to_vec();
        for v in [1u8, 2] {
            stream.extend_from_slice(b"FRAME\n");
            stream.extend_from_slice(&[v; 8 + 2 + 2]);
        }
        let (tx, mut rx) = mpsc::channel(8);
        assert_eq!(read_pictures(&stream[..], tx).await, None, "a clean end");
        let (a, b) = (rx.recv().await.unwrap(), rx.recv().await.unwrap());
        assert_eq!((a.planes.len(), a.planes[0], b.planes[11]), (12, 1, 2));
        assert!(a.encode(90).is_ok());
        let mut broken = b"YUV4MPEG2 W4 H2\nFRAME\n".to_vec();
        broken.extend_from_slice(&[0; 12]);
        broken.extend_from_slice(b"junk\n");
        let (tx, _rx) = mpsc::channel(8);
        assert!(read_pictures(&broken[..], tx)
            .await
            .unwrap()
            .contains("frame markers"));
    }
}
