//! `farmcam bench`: a load generator for any MJPEG-over-HTTP server (farmcam, mjpg-streamer,
//! µStreamer, Motion). N viewers read multipart streams incrementally and measure what a farm
//! operator asks: how many viewers, how regular, how late.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

#[derive(Clone, Debug)]
pub struct Target {
    pub addr: SocketAddr,
    pub host: String,
    pub path: String,
}

/// `http://host:port/path` → where to connect and what to ask for. One-line errors.
pub fn parse_url(url: &str) -> Result<Target, String> {
    let rest = url.strip_prefix("http://").ok_or_else(|| {
        format!(
            "{url:?}: only http:// stream URLs are supported, e.g. http://127.0.0.1:8080/cameras/demo/stream"
        )
    })?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let with_port = if authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    use std::net::ToSocketAddrs;
    let addr = with_port
        .to_socket_addrs()
        .map_err(|e| format!("{url:?}: cannot resolve {authority:?}: {e}"))?
        .next()
        .ok_or_else(|| format!("{url:?}: {authority:?} has no address"))?;
    Ok(Target {
        addr,
        host: authority.to_string(),
        path: path.to_string(),
    })
}

/// What one viewer saw.
#[derive(Default, Clone)]
struct ViewerStats {
    connect_ms: Vec<f64>,
    first_byte_ms: Vec<f64>,
    first_frame_ms: Vec<f64>,
    frames: u64,
    bytes: u64,
    invalid: u64,
    errors: u64,
    reconnects: u64,
    intervals_ms: Vec<f64>,
    latency_ms: Vec<f64>,
    last_error: Option<String>,
}

#[derive(Serialize, Debug)]
pub struct Percentiles {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

fn percentiles(v: &mut [f64]) -> Option<Percentiles> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    Some(Percentiles {
        p50: round(at(0.5)),
        p95: round(at(0.95)),
        p99: round(at(0.99)),
        max: round(*v.last().unwrap()),
    })
}

fn round(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

#[derive(Serialize, Debug)]
pub struct Report {
    pub url: String,
    pub viewers: usize,
    pub slow_viewers: usize,
    pub duration_s: f64,
    pub connect_ms: Option<Percentiles>,
    pub first_byte_ms: Option<Percentiles>,
    pub first_frame_ms: Option<Percentiles>,
    /// Frames per second of each viewer: min, median, max (fairness).
    pub fps_min: f64,
    pub fps_median: f64,
    pub fps_max: f64,
    pub interval_ms: Option<Percentiles>,
    /// Receive time minus the server's X-Timestamp (when it sends one).
    pub latency_ms: Option<Percentiles>,
    pub frames: u64,
    pub bytes: u64,
    pub invalid_frames: u64,
    pub errors: u64,
    pub reconnects: u64,
    pub last_error: Option<String>,
}

impl Report {
    pub fn table(&self) -> String {
        let p = |p: &Option<Percentiles>| match p {
            Some(p) => format!(
                "p50 {:>8.2}  p95 {:>8.2}  p99 {:>8.2}  max {:>8.2}",
                p.p50, p.p95, p.p99, p.max
            ),
            None => "-".to_string(),
        };
        let mut s = format!(
            "{} viewers{} on {} for {:.1} s\n",
            self.viewers,
            if self.slow_viewers > 0 {
                format!(" (+{} slow)", self.slow_viewers)
            } else {
                String::new()
            },
            self.url,
            self.duration_s
        );
        s += &format!("  connect ms        {}\n", p(&self.connect_ms));
        s += &format!("  first byte ms     {}\n", p(&self.first_byte_ms));
        s += &format!("  first frame ms    {}\n", p(&self.first_frame_ms));
        s += &format!("  frame interval ms {}\n", p(&self.interval_ms));
        s += &format!("  latency ms        {}\n", p(&self.latency_ms));
        s += &format!(
            "  fps per viewer    min {:.2}  median {:.2}  max {:.2}\n",
            self.fps_min, self.fps_median, self.fps_max
        );
        s += &format!(
            "  frames {}  bytes {}  invalid {}  errors {}  reconnects {}\n",
            self.frames, self.bytes, self.invalid_frames, self.errors, self.reconnects
        );
        if let Some(e) = &self.last_error {
            s += &format!("  last error: {e}\n");
        }
        s
    }
}

/// Run the load: `viewers` full-speed readers plus `slow` readers that read a little, rarely.
pub async fn run(
    url: &str,
    target: Target,
    viewers: usize,
    slow: usize,
    duration: Duration,
    progress: bool,
) -> Report {
    let stop = CancellationToken::new();
    let started = Instant::now();
    let total_frames = Arc::new(AtomicU64::new(0));
    let mut handles = Vec::new();
    for _ in 0..viewers {
        let (t, stop, total) = (target.clone(), stop.clone(), total_frames.clone());
        handles.push(tokio::spawn(async move { viewer(t, stop, total).await }));
    }
    for _ in 0..slow {
        let (t, stop) = (target.clone(), stop.clone());
        tokio::spawn(async move { slow_viewer(t, stop).await });
    }
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    while started.elapsed() < duration {
        tokio::select! {
            _ = tick.tick() => {
                if progress {
                    let secs = started.elapsed().as_secs_f64();
                    eprintln!("bench: {secs:.0} s, {} frames, {:.1} fps per viewer", total_frames.load(Relaxed),
                        total_frames.load(Relaxed) as f64 / secs / viewers.max(1) as f64);
                }
            }
            _ = tokio::time::sleep(duration.saturating_sub(started.elapsed())) => {}
        }
    }
    stop.cancel();
    let elapsed = started.elapsed().as_secs_f64();
    let mut all = Vec::new();
    for h in handles {
        all.push(h.await.unwrap_or_default());
    }
    let cat = |f: fn(&ViewerStats) -> &Vec<f64>| {
        all.iter()
            .flat_map(|v| f(v).iter().copied())
            .collect::<Vec<f64>>()
    };
    let mut fps: Vec<f64> = all.iter().map(|v| v.frames as f64 / elapsed).collect();
    fps.sort_by(|a, b| a.total_cmp(b));
    Report {
        url: url.to_string(),
        viewers,
        slow_viewers: slow,
        duration_s: round(elapsed),
        connect_ms: percentiles(&mut cat(|v| &v.connect_ms)),
        first_byte_ms: percentiles(&mut cat(|v| &v.first_byte_ms)),
        first_frame_ms: percentiles(&mut cat(|v| &v.first_frame_ms)),
        fps_min: round(fps.first().copied().unwrap_or(0.0)),
        fps_median: round(fps.get(fps.len() / 2).copied().unwrap_or(0.0)),
        fps_max: round(fps.last().copied().unwrap_or(0.0)),
        interval_ms: percentiles(&mut cat(|v| &v.intervals_ms)),
        latency_ms: percentiles(&mut cat(|v| &v.latency_ms)),
        frames: all.iter().map(|v| v.frames).sum(),
        bytes: all.iter().map(|v| v.bytes).sum(),
        invalid_frames: all.iter().map(|v| v.invalid).sum(),
        errors: all.iter().map(|v| v.errors).sum(),
        reconnects: all.iter().map(|v| v.reconnects).sum(),
        last_error: all.iter().rev().find_map(|v| v.last_error.clone()),
    }
}

fn request(t: &Target) -> String {
    format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: farmcam-bench\r\nAccept: */*\r\n\r\n",
        t.path, t.host
    )
}

/// One full-speed viewer; reconnects if the stream ends before the run does.
async fn viewer(t: Target, stop: CancellationToken, total: Arc<AtomicU64>) -> ViewerStats {
    let mut st = ViewerStats::default();
    let mut first = true;
    while !stop.is_cancelled() {
        if !first {
            st.reconnects += 1;
            tokio::select! { _ = stop.cancelled() => break, _ = tokio::time::sleep(Duration::from_millis(500)) => {} }
        }
        first = false;
        if let Err(e) = tokio::select! {
            _ = stop.cancelled() => Ok(()),
            r = one_stream(&t, &mut st, &total) => r,
        } {
            st.errors += 1;
            st.last_error = Some(e);
        }
    }
    st
}

async fn one_stream(t: &Target, st: &mut ViewerStats, total: &AtomicU64) -> Result<(), String> {
    let t0 = Instant::now();
    let mut sock = TcpStream::connect(t.addr)
        .await
        .map_err(|e| format!("connect {}: {e}", t.addr))?;
    let _ = sock.set_nodelay(true);
    st.connect_ms.push(t0.elapsed().as_secs_f64() * 1000.0);
    sock.write_all(request(t).as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut buf: Vec<u8> = Vec::with_capacity(256 * 1024);
    let mut chunk = vec![0u8; 64 * 1024];
    // Response head.
    let head_end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i;
        }
        let n = sock.read(&mut chunk).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("the server closed the connection before answering".into());
        }
        if buf.is_empty() {
            st.first_byte_ms.push(t0.elapsed().as_secs_f64() * 1000.0);
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let status = head.split_whitespace().nth(1).unwrap_or("");
    if status != "200" {
        return Err(format!("HTTP status {status}"));
    }
    let boundary = head
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("content-type:"))
        .and_then(|l| l.split("boundary=").nth(1))
        .map(|b| b.trim().trim_matches('"').trim_start_matches("--").to_string())
        .ok_or("not a multipart (MJPEG) stream")?;
    let delimiter = format!("--{boundary}").into_bytes();
    let chunked = head.to_ascii_lowercase().contains("transfer-encoding: chunked");
    let raw = buf.split_off(head_end + 4);
    let mut body = BodyReader {
        sock,
        raw,
        chunked,
        left: None,
        chunk,
    };
    let mut buf = Vec::with_capacity(256 * 1024);
    body.decode(&mut buf)?;
    let mut last_frame: Option<Instant> = None;
    loop {
        // Part headers: from the delimiter to the blank line.
        let (part_start, headers_end) = loop {
            if let Some(d) = find(&buf, &delimiter) {
                if let Some(h) = find(&buf[d..], b"\r\n\r\n") {
                    break (d, d + h + 4);
                }
            }
            body.more(&mut buf).await?;
        };
        let headers = String::from_utf8_lossy(&buf[part_start..headers_end]).to_ascii_lowercase();
        let field = |name: &str| {
            headers.lines().find_map(|l| {
                l.strip_prefix(name)
                    .map(|v| v.trim_start_matches(':').trim().to_string())
            })
        };
        let length: Option<usize> = field("content-length").and_then(|v| v.parse().ok());
        let stamp: Option<f64> = field("x-timestamp").and_then(|v| v.parse().ok());
        // The JPEG: Content-Length bytes, or up to the next delimiter.
        let body_end = loop {
            let have = buf.len() - headers_end;
            match length {
                Some(len) if have >= len => break headers_end + len,
                None => {
                    if let Some(d) = find(&buf[headers_end..], &delimiter) {
                        break headers_end + d;
                    }
                }
                _ => {}
            }
            body.more(&mut buf).await?;
        };
        let now = Instant::now();
        let jpeg = &buf[headers_end..body_end];
        let jpeg = jpeg.strip_suffix(b"\r\n").unwrap_or(jpeg);
        if jpeg.starts_with(&[0xff, 0xd8]) && jpeg.ends_with(&[0xff, 0xd9]) {
            st.frames += 1;
            total.fetch_add(1, Relaxed);
            st.bytes += jpeg.len() as u64;
            match last_frame {
                None => st.first_frame_ms.push(t0.elapsed().as_secs_f64() * 1000.0),
                Some(prev) => st
                    .intervals_ms
                    .push(now.duration_since(prev).as_secs_f64() * 1000.0),
            }
            last_frame = Some(now);
            if let Some(ts) = stamp {
                let unix = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_secs_f64();
                st.latency_ms.push(((unix - ts) * 1000.0).max(0.0));
            }
        } else {
            st.invalid += 1;
        }
        buf.drain(..body_end);
    }
}

/// A viewer on a bad link: reads 4 KiB every 2 seconds.
async fn slow_viewer(t: Target, stop: CancellationToken) {
    let Ok(mut sock) = TcpStream::connect(t.addr).await else {
        return;
    };
    if sock.write_all(request(&t).as_bytes()).await.is_err() {
        return;
    }
    let mut buf = vec![0u8; 4096];
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
        if matches!(sock.read(&mut buf).await, Ok(0) | Err(_)) {
            return;
        }
    }
}

/// The response body as it arrives, de-chunked when the server uses chunked encoding.
struct BodyReader {
    sock: TcpStream,
    raw: Vec<u8>,
    chunked: bool,
    /// Bytes left in the current chunk (chunked only); None: at a chunk-size line.
    left: Option<usize>,
    chunk: Vec<u8>,
}

impl BodyReader {
    /// Append more body bytes to `out`. Errors when the stream ends.
    async fn more(&mut self, out: &mut Vec<u8>) -> Result<(), String> {
        loop {
            let before = out.len();
            self.decode(out)?;
            if out.len() > before {
                return Ok(());
            }
            let n = self.sock.read(&mut self.chunk).await.map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("the server closed the stream".into());
            }
            self.raw.extend_from_slice(&self.chunk[..n]);
        }
    }

    fn decode(&mut self, out: &mut Vec<u8>) -> Result<(), String> {
        if !self.chunked {
            out.append(&mut self.raw);
            return Ok(());
        }
        loop {
            match self.left {
                Some(0) => {
                    if self.raw.len() < 2 {
                        return Ok(());
                    }
                    self.raw.drain(..2);
                    self.left = None;
                }
                Some(n) => {
                    let take = n.min(self.raw.len());
                    if take == 0 {
                        return Ok(());
                    }
                    out.extend(self.raw.drain(..take));
                    self.left = Some(n - take);
                }
                None => {
                    let Some(eol) = find(&self.raw, b"\r\n") else {
                        return Ok(());
                    };
                    let line = String::from_utf8_lossy(&self.raw[..eol]).to_string();
                    let size = usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16)
                        .map_err(|_| format!("bad chunk size {line:?}"))?;
                    self.raw.drain(..eol + 2);
                    if size == 0 {
                        return Err("the server ended the stream".into());
                    }
                    self.left = Some(size);
                }
            }
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_percentiles() {
        let t = parse_url("http://127.0.0.1:8080/cameras/a/stream").unwrap();
        assert_eq!((t.addr.port(), t.path.as_str()), (8080, "/cameras/a/stream"));
        assert!(parse_url("https://x/").unwrap_err().contains("only http://"));
        let mut v: Vec<f64> = (1..=100).map(f64::from).collect();
        let p = percentiles(&mut v).unwrap();
        assert_eq!((p.p50, p.p95, p.p99, p.max), (51.0, 95.0, 99.0, 100.0));
        assert!(percentiles(&mut []).is_none());
    }
}
