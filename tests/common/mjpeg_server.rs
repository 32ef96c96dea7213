//! A small mjpg-streamer-like camera: MJPEG over HTTP, counting its connections.

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// An mjpg-streamer-like camera: `multipart/x-mixed-replace` JPEGs over HTTP at 10 fps. Counts
/// connections, so a test can check that farmcam opened exactly one.
pub struct MjpegServer {
    pub port: u16,
    pub accepted: Arc<AtomicUsize>,
    pub active: Arc<AtomicUsize>,
    stop: CancellationToken,
    pub width: u32,
    pub height: u32,
}

/// What the HTTP camera sends.
enum Body {
    /// Multipart JPEGs at 10 fps, forever; every Nth one cut in half if `broken_every` is set.
    Mjpeg(Vec<Vec<u8>>, Option<usize>),
    /// These bytes once (e.g. an MPEG-TS file), then close.
    Once(&'static str, Vec<u8>),
}

impl MjpegServer {
    pub async fn start(width: u32, height: u32) -> MjpegServer {
        Self::start_broken(width, height, None).await
    }

    /// Like `start`, but every `broken_every`th frame is sent cut off in the middle.
    pub async fn start_broken(width: u32, height: u32, broken_every: Option<usize>) -> MjpegServer {
        let frames = (0..10)
            .map(|i| {
                let mut c = farmcam::media::render::Canvas::new(width, height, [20, 60 + i * 15, 90]);
                c.text(8, 8, 1, &format!("http camera frame {i}"), [255, 255, 255]);
                c.encode(false)
            })
            .collect();
        Self::start_with(Body::Mjpeg(frames, broken_every), width, height).await
    }

    /// A camera that answers every request with `data` (of `content_type`) and closes.
    pub async fn start_once(
        content_type: &'static str,
        data: Vec<u8>,
        width: u32,
        height: u32,
    ) -> MjpegServer {
        Self::start_with(Body::Once(content_type, data), width, height).await
    }

    async fn start_with(body: Body, width: u32, height: u32) -> MjpegServer {
        // An HTTP camera is read by farmcam through ffmpeg.
        super::peers::require_ffmpeg();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let frames = Arc::new(body);
        let accepted = Arc::new(AtomicUsize::new(0));
        let active = Arc::new(AtomicUsize::new(0));
        let stop = CancellationToken::new();
        let (acc, act, st) = (accepted.clone(), active.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                let (mut sock, _) = tokio::select! {
                    _ = st.cancelled() => return,
                    r = listener.accept() => r.unwrap(),
                };
                acc.fetch_add(1, SeqCst);
                let (frames, act, st) = (frames.clone(), act.clone(), st.clone());
                tokio::spawn(async move {
                    act.fetch_add(1, SeqCst);
                    let _ = tokio::select! {
                        _ = st.cancelled() => Ok(()),
                        r = serve(&mut sock, &frames) => r,
                    };
                    act.fetch_sub(1, SeqCst);
                });
            }
        });
        MjpegServer {
            port,
            accepted,
            active,
            stop,
            width,
            height,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/?action=stream", self.port)
    }
}

impl Drop for MjpegServer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn serve(sock: &mut tokio::net::TcpStream, body: &Body) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = sock.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let (frames, broken_every) = match body {
        Body::Mjpeg(frames, broken_every) => (frames, *broken_every),
        Body::Once(content_type, data) => {
            let head = format!(
                "HTTP/1.0 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
                data.len()
            );
            sock.write_all(head.as_bytes()).await?;
            sock.write_all(data).await?;
            return sock.shutdown().await;
        }
    };
    sock.write_all(
        b"HTTP/1.0 200 OK\r\nContent-Type: multipart/x-mixed-replace;boundary=boundarydonotcross\r\n\
          Cache-Control: no-cache\r\n\r\n",
    )
    .await?;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    for i in 0.. {
        tick.tick().await;
        let f = &frames[i % frames.len()];
        let f = match broken_every {
            Some(n) if i % n == n - 1 => &f[..f.len() / 2],
            _ => &f[..],
        };
        let part = format!(
            "--boundarydonotcross\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\n\r\n",
            f.len()
        );
        sock.write_all(part.as_bytes()).await?;
        sock.write_all(f).await?;
        sock.write_all(b"\r\n").await?;
    }
    Ok(())
}
