//! Test helpers: run the real `farmcam` binary on port 0 and talk raw HTTP/1.1 to it.
#![allow(dead_code)]

pub mod aiortc;
pub mod fake_moonraker;
pub mod mjpeg_server;
pub mod moonraker;
pub mod mqtt;
pub mod nginx;
pub mod peers;
pub mod proc;
pub mod prusa_connect;
pub mod pty;
pub mod rtsp;
pub mod rtsp_client;
pub mod tls;
pub mod webdriver;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub const BIN: &str = env!("CARGO_BIN_EXE_farmcam");

/// How often a waiting test looks at its condition again.
const POLL: Duration = Duration::from_millis(50);

/// Poll until `f` returns Some, at most `limit`: how every test waits for a condition.
pub async fn eventually<T>(limit: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    eventually_async(limit, what, || std::future::ready(f())).await
}

/// [`eventually`] for a condition that has to await (a request, a query of the daemon).
pub async fn eventually_async<T, Fut>(limit: Duration, what: &str, mut f: impl FnMut() -> Fut) -> T
where
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "not within {limit:?}: {what}");
        tokio::time::sleep(POLL).await;
    }
}

/// Poll until `f` returns Some, at most `limit`, blocking (set-up outside async code); `None`
/// when the time is up.
pub fn poll_blocking<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(POLL);
    }
}

/// [`eventually`], blocking: for peers started outside async code.
pub fn eventually_blocking<T>(limit: Duration, what: &str, f: impl FnMut() -> Option<T>) -> T {
    poll_blocking(limit, f).unwrap_or_else(|| panic!("not within {limit:?}: {what}"))
}

/// The farmcam binary the daemon tests run: `FARMCAM_BIN` if set (the V4L2 tests in the emulated
/// guest use the release build), else the one cargo built with the tests.
pub fn bin() -> String {
    std::env::var("FARMCAM_BIN").unwrap_or_else(|_| BIN.to_string())
}

/// How long a camera may take to go live or show its placeholder in these tests: generous, for a
/// loaded machine and the emulated V4L2 guest (a test that passes does not wait for it).
/// A camera key that has an `rtsp://` camera read by an ffmpeg child rather than farmcam's own
/// RTSP client (any `ffmpeg_args` do; this one is ffmpeg's default anyway).
pub const FFMPEG_INGEST: &str = "ffmpeg_args = [\"-rtsp_transport\", \"tcp\"]\n";

pub const LIVE_WAIT: Duration = Duration::from_secs(90);

/// A running farmcam, killed (and reaped) on drop.
pub struct Daemon {
    pub child: Child,
    pub main: SocketAddr,
    /// Dedicated listeners: camera id → address.
    pub cameras: HashMap<String, SocketAddr>,
    /// The RTSP listener, when `[rtsp]` is on.
    pub rtsp: Option<SocketAddr>,
    pub log: Arc<Mutex<Vec<String>>>,
    /// Told each time a line is added to `log`.
    log_grew: Arc<tokio::sync::Notify>,
    _notify: Option<Notify>,
    _dir: tempfile::TempDir,
}

/// A NOTIFY_SOCKET for one daemon, drained for its whole life (a full socket would block the
/// daemon's notifications).
struct Notify {
    path: std::path::PathBuf,
    got: Arc<Mutex<Vec<String>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl Notify {
    fn bind(path: &std::path::Path) -> Notify {
        let sock = std::os::unix::net::UnixDatagram::bind(path).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        let got = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (g, st) = (got.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while !st.load(std::sync::atomic::Ordering::SeqCst) {
                if let Ok(n) = sock.recv(&mut buf) {
                    g.lock()
                        .unwrap()
                        .push(String::from_utf8_lossy(&buf[..n]).into_owned());
                }
            }
        });
        Notify {
            path: path.to_path_buf(),
            got,
            stop,
        }
    }

    fn ready(&self) -> bool {
        self.got
            .lock()
            .unwrap()
            .iter()
            .any(|m| m.lines().any(|l| l == "READY=1"))
    }
}

impl Drop for Notify {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Daemon {
    /// Start `farmcam run` on a config (its `listen` should be "127.0.0.1:0") and wait until ready.
    pub fn start(config: &str) -> Daemon {
        Self::start_with_log(config, "info")
    }

    /// Start with another `RUST_LOG` filter (e.g. "debug").
    pub fn start_with_log(config: &str, rust_log: &str) -> Daemon {
        Self::start_with_env(config, &[("RUST_LOG", rust_log)])
    }

    /// Start with extra environment variables (`RUST_LOG` defaults to "info").
    pub fn start_with_env(config: &str, env: &[(&str, &str)]) -> Daemon {
        Self::start_with(config, env, |_| {})
    }

    /// Start with the open-file limit (soft, hard) set as a service manager would.
    pub fn start_with_nofile(config: &str, soft: u64, hard: u64) -> Daemon {
        Self::start_with_nofile_env(config, soft, hard, &[])
    }

    /// The same, with extra environment variables (e.g. `RUST_LOG`).
    pub fn start_with_nofile_env(config: &str, soft: u64, hard: u64, env: &[(&str, &str)]) -> Daemon {
        use std::os::unix::process::CommandExt;
        Self::start_with(config, env, |cmd| {
            // SAFETY: only setrlimit between fork and exec.
            unsafe {
                cmd.pre_exec(move || {
                    let lim = libc::rlimit {
                        rlim_cur: soft,
                        rlim_max: hard,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        })
    }

    fn start_with(config: &str, env: &[(&str, &str)], prepare: impl FnOnce(&mut Command)) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("farmcam.toml");
        // WebRTC on a free loopback port unless the test sets its own: tests never listen beyond
        // loopback, nor compete for the default port.
        let config = if config.contains("[webrtc]") {
            config.to_string()
        } else {
            format!("{config}\n[webrtc]\nlisten = \"127.0.0.1:0\"\n")
        };
        std::fs::write(&path, config).unwrap();
        // Readiness as systemd sees it: READY=1 on NOTIFY_SOCKET (unless the test listens itself).
        let notify = (!env.iter().any(|(k, _)| *k == "NOTIFY_SOCKET"))
            .then(|| Notify::bind(&dir.path().join("notify")));
        let mut cmd = Command::new(bin());
        prepare(&mut cmd);
        if let Some(n) = &notify {
            cmd.env("NOTIFY_SOCKET", &n.path);
        }
        let mut child = cmd
            .args(["run", "--config"])
            .arg(&path)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("farmcam starts");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let sink = log.clone();
        let log_grew = Arc::new(tokio::sync::Notify::new());
        let grew = log_grew.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                sink.lock().unwrap().push(line.clone());
                grew.notify_waiters();
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        let not_ready = |log: &Arc<Mutex<Vec<String>>>| -> ! {
            panic!("farmcam did not become ready; log: {:#?}", log.lock().unwrap())
        };
        if let Some(n) = &notify {
            while !n.ready() {
                if Instant::now() >= deadline || child.try_wait().unwrap().is_some() {
                    std::thread::sleep(Duration::from_millis(100)); // the last log lines
                    not_ready(&log);
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        // The listeners' addresses (port 0 in tests) are logged before READY=1 is sent.
        let mut main = None;
        let mut cameras = HashMap::new();
        let mut rtsp = None;
        loop {
            let Ok(line) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) else {
                not_ready(&log)
            };
            if let Some(rest) = line.split("listening on http://").nth(1) {
                let (addr, what) = rest.split_once(' ').unwrap();
                let addr: SocketAddr = addr.parse().unwrap();
                match what.strip_prefix("(camera ").and_then(|s| s.strip_suffix(')')) {
                    Some(id) => {
                        cameras.insert(id.to_string(), addr);
                    }
                    None => main = main.or(Some(addr)),
                }
            }
            if let Some(rest) = line.split("rtsp: listening on rtsp://").nth(1) {
                rtsp = rest.split('/').next().and_then(|a| a.parse().ok());
            }
            if line.contains(" ready: ") {
                break;
            }
        }
        Daemon {
            child,
            main: main.expect("main listener logged"),
            cameras,
            rtsp,
            log,
            log_grew,
            _notify: notify,
            _dir: dir,
        }
    }

    /// The configuration file farmcam was started with.
    pub fn config_path(&self) -> std::path::PathBuf {
        self._dir.path().join("farmcam.toml")
    }

    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Wait until farmcam's log has said `text`, at most 30 s: the log is read on a thread of
    /// its own, so a line can arrive a moment after what it tells of is seen another way.
    pub async fn logged(&self, text: &str) {
        let seen = async {
            loop {
                // Armed before looking, so a line added in between is not missed.
                let grew = self.log_grew.notified();
                tokio::pin!(grew);
                grew.as_mut().enable();
                if self.log_text().contains(text) {
                    return;
                }
                grew.await;
            }
        };
        if tokio::time::timeout(Duration::from_secs(30), seen).await.is_err() {
            panic!("farmcam never logged {text:?}:\n{}", self.log_text());
        }
    }

    pub fn signal(&self, sig: i32) {
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    /// Wait for the process to exit, at most `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// `rtsp://HOST:PORT/PATH` of this daemon's RTSP listener.
    pub fn rtsp_url(&self, path: &str) -> String {
        format!("rtsp://{}/{path}", self.rtsp.expect("RTSP listener logged"))
    }

    /// GET /api/cameras, as JSON.
    pub async fn cameras_json(&self) -> serde_json::Value {
        let r = get(self.main, "/api/cameras").await;
        assert_eq!(r.status, 200);
        serde_json::from_slice(&r.body).unwrap()
    }

    pub async fn camera(&self, id: &str) -> serde_json::Value {
        let all = self.cameras_json().await;
        all.as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == id)
            .cloned()
            .expect("camera listed")
    }

    /// Poll a camera's status until `pred` holds (at most `limit`).
    pub async fn wait_for(
        &self,
        id: &str,
        limit: Duration,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + limit;
        loop {
            let c = self.camera(id).await;
            if pred(&c) {
                return c;
            }
            assert!(
                Instant::now() < deadline,
                "condition not reached within {limit:?}: {c}"
            );
            tokio::time::sleep(POLL).await;
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A config with the main listener on port 0, followed by `rest`.
pub fn config(http_extra: &str, rest: &str) -> String {
    format!("[http]\nlisten = \"127.0.0.1:0\"\n{http_extra}\n{rest}")
}

pub struct Response {
    pub status: u16,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(&name.to_ascii_lowercase()).map(|s| s.as_str())
    }
}

/// A complete GET (Content-Length or chunked body), connection closed afterwards.
pub async fn get(addr: SocketAddr, path: &str) -> Response {
    request(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"),
    )
    .await
}

pub async fn request(addr: SocketAddr, raw: &str) -> Response {
    whole(Stream::open(addr, raw).await).await
}

/// `request` from the local address `from` (another loopback address, 127.0.0.2 say: another
/// client as farmcam sees it).
pub async fn request_from(from: std::net::IpAddr, addr: SocketAddr, raw: &str) -> Response {
    let tcp = proc::connect_from(from, addr).await.unwrap();
    whole(Stream::on(tcp, raw).await).await
}

/// The rest of a response, read to its end.
async fn whole(mut s: Stream) -> Response {
    while s.fill().await {}
    Response {
        status: s.status,
        headers: s.headers.clone(),
        body: std::mem::take(&mut s.body),
    }
}

/// `farmcam hash-password ARGS` with `password` typed on standard input: what it prints.
fn run_hash_password(args: &[&str], password: &str) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new(BIN)
        .arg("hash-password")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// `farmcam hash-password --rtsp-digest NAME`, as a user would run it.
pub fn rtsp_digest(name: &str, password: &str) -> String {
    run_hash_password(&["--rtsp-digest", name], password)
}

/// `farmcam hash-password`, as a user runs it: the hash of `password`.
pub fn hash_password(password: &str) -> String {
    let h = run_hash_password(&[], password);
    assert!(h.starts_with("pbkdf2-sha256$") && !h.contains(password), "{h}");
    h
}

/// `user:password` for Basic authentication, base64.
pub fn basic_credentials(user: &str, password: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
}

/// A response read incrementally: status and headers, then a decoded body that grows as `fill`
/// reads from the socket in random-sized pieces (so parsers meet every possible split).
pub struct Stream {
    pub sock: TcpStream,
    pub status: u16,
    pub headers: HashMap<String, String>,
    raw: Vec<u8>,
    pub body: Vec<u8>,
    chunked: bool,
    /// Remaining bytes of the current chunk (chunked) or of the body (Content-Length).
    left: Option<usize>,
    pub ended: bool,
}

impl Stream {
    pub async fn open(addr: SocketAddr, raw_request: &str) -> Stream {
        let sock = TcpStream::connect(addr).await.unwrap();
        Self::on(sock, raw_request).await
    }

    pub async fn on(mut sock: TcpStream, raw_request: &str) -> Stream {
        sock.write_all(raw_request.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        let head_end = loop {
            if let Some(i) = find(&raw, b"\r\n\r\n") {
                break i;
            }
            let mut buf = [0u8; 4096];
            let n = sock.read(&mut buf).await.unwrap();
            assert!(
                n > 0,
                "connection closed before the response head: {:?}",
                String::from_utf8_lossy(&raw)
            );
            raw.extend_from_slice(&buf[..n]);
        };
        let head = String::from_utf8(raw[..head_end].to_vec()).unwrap();
        let rest = raw[head_end + 4..].to_vec();
        let mut lines = head.split("\r\n");
        let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
        let headers: HashMap<String, String> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let chunked = headers
            .get("transfer-encoding")
            .is_some_and(|v| v.contains("chunked"));
        let left = if chunked {
            None
        } else {
            headers.get("content-length").map(|v| v.parse().unwrap())
        };
        let mut s = Stream {
            sock,
            status,
            headers,
            raw: rest,
            body: Vec::new(),
            chunked,
            left,
            ended: false,
        };
        s.decode();
        s
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(&name.to_ascii_lowercase()).map(|s| s.as_str())
    }

    /// Read one more piece from the socket; false once the body or the connection ended.
    pub async fn fill(&mut self) -> bool {
        if self.ended {
            return false;
        }
        let mut buf = vec![0u8; fastrand::usize(1..=8192)];
        let n = self.sock.read(&mut buf).await.unwrap_or(0);
        if n == 0 {
            self.ended = true;
            return false;
        }
        self.raw.extend_from_slice(&buf[..n]);
        self.decode();
        !self.ended
    }

    fn decode(&mut self) {
        if !self.chunked {
            let take = match self.left {
                Some(left) => left.min(self.raw.len()),
                None => self.raw.len(),
            };
            self.body.extend(self.raw.drain(..take));
            if let Some(left) = &mut self.left {
                *left -= take;
                if *left == 0 {
                    self.ended = true;
                }
            }
            return;
        }
        loop {
            match self.left {
                Some(0) => {
                    // CRLF after a chunk's data.
                    if self.raw.len() < 2 {
                        return;
                    }
                    assert_eq!(&self.raw[..2], b"\r\n", "chunk framing");
                    self.raw.drain(..2);
                    self.left = None;
                }
                Some(n) => {
                    let take = n.min(self.raw.len());
                    if take == 0 {
                        return;
                    }
                    self.body.extend(self.raw.drain(..take));
                    self.left = Some(n - take);
                }
                None => {
                    let Some(eol) = find(&self.raw, b"\r\n") else {
                        return;
                    };
                    let size =
                        usize::from_str_radix(std::str::from_utf8(&self.raw[..eol]).unwrap().trim(), 16)
                            .unwrap();
                    self.raw.drain(..eol + 2);
                    if size == 0 {
                        self.ended = true;
                        return;
                    }
                    self.left = Some(size);
                }
            }
        }
    }

    /// Read until the body holds at least `n` bytes (false if the stream ended first).
    async fn want(&mut self, n: usize) -> bool {
        while self.body.len() < n {
            if !self.fill().await {
                return self.body.len() >= n;
            }
        }
        true
    }

    /// The next multipart part (headers lower-cased, the JPEG), or None when the stream ended.
    pub async fn next_part(&mut self) -> Option<Part> {
        let boundary = self
            .header("content-type")
            .and_then(|ct| ct.split("boundary=").nth(1))
            .expect("multipart content type")
            .to_string();
        let delimiter = format!("--{boundary}\r\n");
        loop {
            if let Some(end) = find(&self.body, b"\r\n\r\n") {
                // Leading CRLF (end of the previous part) is allowed before the delimiter.
                let start = if self.body.starts_with(b"\r\n") { 2 } else { 0 };
                let head = String::from_utf8(self.body[start..end].to_vec()).unwrap();
                assert!(
                    head.starts_with(&delimiter),
                    "part starts with the boundary: {head:?}"
                );
                let headers: HashMap<String, String> = head[delimiter.len()..]
                    .split("\r\n")
                    .filter_map(|l| l.split_once(':'))
                    .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
                    .collect();
                let len: usize = headers["content-length"].parse().unwrap();
                if !self.want(end + 4 + len + 2).await {
                    return None;
                }
                let jpeg = self.body[end + 4..end + 4 + len].to_vec();
                assert_eq!(
                    &self.body[end + 4 + len..end + 4 + len + 2],
                    b"\r\n",
                    "part ends with CRLF"
                );
                self.body.drain(..end + 4 + len + 2);
                return Some(Part { headers, jpeg });
            }
            if !self.fill().await {
                return None;
            }
        }
    }
}

pub struct Part {
    pub headers: HashMap<String, String>,
    pub jpeg: Vec<u8>,
}

impl Part {
    pub fn seq(&self) -> u64 {
        self.headers["x-sequence"].parse().unwrap()
    }
    pub fn timestamp(&self) -> f64 {
        self.headers["x-timestamp"].parse().unwrap()
    }
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Decode a JPEG fully; returns (width, height).
pub fn decode_jpeg(jpeg: &[u8]) -> (u16, u16) {
    let mut d = jpeg_decoder::Decoder::new(jpeg);
    d.decode().expect("a valid JPEG");
    let info = d.info().unwrap();
    (info.width, info.height)
}

pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Whether a streamed part is a real frame (not the offline placeholder).
pub fn is_live(p: &Part) -> bool {
    !p.headers.contains_key("x-placeholder")
}

pub async fn open_stream(d: &Daemon, id: &str) -> Stream {
    let s = Stream::open(
        d.main,
        &format!("GET /cameras/{id}/stream HTTP/1.1\r\nHost: x\r\n\r\n"),
    )
    .await;
    assert_eq!(s.status, 200);
    s
}

/// Read parts until one satisfies `pred`; panics if the stream ends or `limit` passes.
pub async fn part_where(s: &mut Stream, limit: Duration, what: &str, pred: impl Fn(&Part) -> bool) -> Part {
    let r = tokio::time::timeout(limit, async {
        loop {
            let p = s.next_part().await.expect("the viewer's stream stays open");
            if pred(&p) {
                return p;
            }
        }
    })
    .await;
    r.unwrap_or_else(|_| panic!("no {what} within {limit:?}"))
}

pub async fn live_frame(s: &mut Stream) -> Part {
    part_where(s, LIVE_WAIT, "live frame", is_live).await
}

pub async fn placeholder_frame(s: &mut Stream) -> Part {
    part_where(s, LIVE_WAIT, "placeholder", |p| !is_live(p)).await
}

/// Offsets of the DHT segments before the scan, as (start, length including the marker).
pub fn dht_segments(jpeg: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut i = 2;
    while i + 4 <= jpeg.len() && jpeg[i] == 0xff {
        let marker = jpeg[i + 1];
        let len = u16::from_be_bytes([jpeg[i + 2], jpeg[i + 3]]) as usize;
        if marker == 0xc4 {
            out.push((i, len + 2));
        }
        if marker == 0xda {
            break;
        }
        i += 2 + len;
    }
    out
}

pub fn strip_dht(jpeg: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(jpeg.len());
    let mut at = 0;
    for (start, len) in dht_segments(jpeg) {
        out.extend_from_slice(&jpeg[at..start]);
        at = start + len;
    }
    out.extend_from_slice(&jpeg[at..]);
    out
}
