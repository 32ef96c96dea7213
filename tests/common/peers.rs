//! Real upstream peers for the ffmpeg source tests: GStreamer's RTSP server (RTSP and RTSPS, in a
//! child process the test can stop, pause and restart) and a small MJPEG-over-HTTP camera.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

const RTSP_SERVER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/rtsp_server.py");

/// A self-signed certificate and key (PEM), made once per test process with openssl.
pub fn test_certificate() -> (&'static Path, &'static Path) {
    static CERT: OnceLock<(tempfile::TempDir, PathBuf, PathBuf)> = OnceLock::new();
    let (_, cert, key) = CERT.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        openssl(
            dir.path(),
            "req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=01P00A000000000 -keyout key.pem -out cert.pem",
        );
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        (dir, cert, key)
    });
    (cert, key)
}

/// Run openssl in `dir` with space-separated arguments (none of them contain spaces).
fn openssl(dir: &Path, args: &str) {
    let ok = Command::new("openssl")
        .args(args.split(' '))
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("openssl runs (packaging/dev.sh deps installs it)");
    assert!(ok.success(), "openssl {args}");
}

#[derive(Clone, Default)]
pub struct RtspOptions {
    pub tls: bool,
    pub credentials: Option<(String, String)>,
    /// Mount path (default `/cam`).
    pub path: Option<String>,
}

/// GStreamer's RTSP server serving an H.264 test camera at `/cam` (320x240, 15 fps).
pub struct RtspServer {
    child: Option<Child>,
    pub port: u16,
    options: RtspOptions,
}

impl RtspServer {
    /// Start on a free port.
    pub fn start(options: RtspOptions) -> RtspServer {
        Self::start_on(0, options)
    }

    /// Start on `port` (e.g. again after `stop`).
    pub fn start_on(port: u16, options: RtspOptions) -> RtspServer {
        let mut cmd = Command::new("/usr/bin/python3");
        cmd.arg(RTSP_SERVER).args(["--port", &port.to_string()]);
        if options.tls {
            let (cert, key) = test_certificate();
            cmd.arg("--cert").arg(cert).arg("--key").arg(key);
        }
        if let Some((u, p)) = &options.credentials {
            cmd.args(["--user", u, "--password", p]);
        }
        if let Some(path) = &options.path {
            cmd.args(["--path", path]);
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let mut child = cmd
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("/usr/bin/python3 runs (packaging/dev.sh deps installs the GStreamer RTSP server)");
            let mut line = String::new();
            BufReader::new(child.stdout.take().unwrap())
                .read_line(&mut line)
                .unwrap();
            if let Some(p) = line.strip_prefix("ready ") {
                return RtspServer {
                    child: Some(child),
                    port: p.trim().parse().unwrap(),
                    options,
                };
            }
            let _ = child.kill();
            let _ = child.wait();
            // Rebinding a port right after the previous server died can fail for a moment.
            assert!(
                Instant::now() < deadline,
                "RTSP server did not start on port {port}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The camera's URL, with credentials when the server wants them.
    pub fn url(&self) -> String {
        let scheme = if self.options.tls { "rtsps" } else { "rtsp" };
        let auth = match &self.options.credentials {
            Some((u, p)) => format!("{u}:{p}@"),
            None => String::new(),
        };
        let path = self.options.path.as_deref().unwrap_or("/cam");
        format!("{scheme}://{auth}127.0.0.1:{}{path}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Kill the server (connections drop at once).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Start again on the same port.
    pub fn restart(&mut self) {
        self.stop();
        let again = Self::start_on(self.port, self.options.clone());
        *self = again;
    }

    /// Freeze / thaw the server: connections stay open but nothing flows (a stalled camera).
    pub fn pause(&self) {
        unsafe { libc::kill(self.pid() as i32, libc::SIGSTOP) };
    }
    pub fn resume(&self) {
        unsafe { libc::kill(self.pid() as i32, libc::SIGCONT) };
    }
}

impl Drop for RtspServer {
    fn drop(&mut self) {
        self.stop();
    }
}

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
                let mut c = farmcam::render::Canvas::new(width, height, [20, 60 + i * 15, 90]);
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

// ---------------------------------------------------------------------------------------------
// /proc

/// Direct children of a process.
pub fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            if let Ok(s) = std::fs::read_to_string(t.path().join("children")) {
                out.extend(s.split_whitespace().filter_map(|p| p.parse::<u32>().ok()));
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// A process's command line, arguments joined by spaces ("" once it is gone).
pub fn cmdline(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| {
            String::from_utf8_lossy(&b)
                .split('\0')
                .collect::<Vec<_>>()
                .join(" ")
                .trim()
                .to_string()
        })
        .unwrap_or_default()
}

/// The process state letter (R, S, Z, …), or None when no such process exists.
pub fn proc_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(") ")?.1.chars().next()
}

/// farmcam's ffmpeg children whose command line contains `needle`.
pub fn ffmpeg_children(farmcam: u32, needle: &str) -> Vec<u32> {
    children(farmcam)
        .into_iter()
        .filter(|p| {
            let c = cmdline(*p);
            c.contains("ffmpeg") && c.contains(needle)
        })
        .collect()
}

/// Poll until `f` returns Some, at most `limit`.
pub async fn eventually<T>(limit: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "not within {limit:?}: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A free TCP port on 127.0.0.1 (nothing listens on it when this returns).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

// ---------------------------------------------------------------------------------------------
// MQTT: a real mosquitto, and a subscriber to watch what farmcam publishes

/// A mosquitto broker on 127.0.0.1 with a temp config; no persistence (a restart forgets
/// retained messages, so re-announcements can be checked).
pub struct Mosquitto {
    child: Option<Child>,
    pub port: u16,
    /// Extra listeners, e.g. a TLS one.
    pub extra_port: u16,
    pub dir: tempfile::TempDir,
    extra: String,
}

impl Mosquitto {
    /// `extra` goes into mosquitto.conf; `{dir}` is replaced by the broker's temp dir and
    /// `{extra_port}` by a second free port.
    pub fn start(extra: &str) -> Mosquitto {
        let dir = tempfile::tempdir().unwrap();
        let mut m = Mosquitto {
            child: None,
            port: free_port(),
            extra_port: free_port(),
            extra: String::new(),
            dir,
        };
        m.extra = extra
            .replace("{dir}", &m.dir.path().display().to_string())
            .replace("{extra_port}", &m.extra_port.to_string());
        m.spawn();
        m
    }

    fn spawn(&mut self) {
        let conf = self.dir.path().join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "user root\npersistence false\nlog_dest stderr\nlog_type error\nlistener {} 127.0.0.1\nallow_anonymous true\n{}\n",
                self.port, self.extra
            ),
        )
        .unwrap();
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("mosquitto runs (packaging/dev.sh deps installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "mosquitto did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A password file for mosquitto with one user.
pub fn mosquitto_password_file(path: &Path, user: &str, password: &str) {
    let ok = Command::new("mosquitto_passwd")
        .args(["-b", "-c"])
        .arg(path)
        .args([user, password])
        .status()
        .unwrap();
    assert!(ok.success());
}

/// A test CA, a server certificate it signed for 127.0.0.1 and a client certificate, written to
/// `dir` as ca.pem, server.pem, server.key, client.pem and client.key.
pub fn test_ca(dir: &Path) {
    for args in [
        "req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=farmcam-test-CA -keyout ca.key -out ca.pem",
        "req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1,DNS:localhost \
         -keyout server.key -out server.csr",
        "x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -copy_extensions copyall \
         -out server.pem",
        "req -newkey rsa:2048 -nodes -subj /CN=farmcam-client -addext extendedKeyUsage=clientAuth \
         -keyout client.key -out client.csr",
        "x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -copy_extensions copyall \
         -out client.pem",
    ] {
        openssl(dir, args);
    }
}

#[derive(Clone, Debug)]
pub struct Msg {
    pub topic: String,
    pub payload: Vec<u8>,
    pub retain: bool,
    pub at: Instant,
}

impl Msg {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.payload).unwrap_or_else(|e| panic!("{}: not JSON ({e})", self.topic))
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.payload).into_owned()
    }
}

/// An MQTT subscriber (rumqttc) that records everything it receives.
pub struct Sub {
    pub client: rumqttc::AsyncClient,
    rx: tokio::sync::mpsc::UnboundedReceiver<Msg>,
    /// Everything received so far, in order.
    pub seen: Vec<Msg>,
    stop: CancellationToken,
}

impl Sub {
    pub async fn connect(port: u16, topics: &[&str], login: Option<(&str, &str)>) -> Sub {
        let mut o = rumqttc::MqttOptions::new(format!("test-{}", fastrand::u32(..)), "127.0.0.1", port);
        o.set_max_packet_size(16 << 20, 16 << 20);
        if let Some((u, p)) = login {
            o.set_credentials(u, p);
        }
        let (client, mut el) = rumqttc::AsyncClient::new(o, 64);
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let (subscribed_tx, mut subscribed) = tokio::sync::mpsc::unbounded_channel();
        let stop = CancellationToken::new();
        let st = stop.clone();
        tokio::spawn(async move {
            loop {
                let e = tokio::select! {
                    _ = st.cancelled() => return,
                    e = el.poll() => e,
                };
                match e {
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p))) => {
                        let _ = tx.send(Msg {
                            topic: p.topic.clone(),
                            payload: p.payload.to_vec(),
                            retain: p.retain,
                            at: Instant::now(),
                        });
                    }
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::SubAck(_))) => {
                        let _ = subscribed_tx.send(());
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        for t in topics {
            client.subscribe(*t, rumqttc::QoS::AtLeastOnce).await.unwrap();
        }
        for _ in topics {
            tokio::time::timeout(Duration::from_secs(10), subscribed.recv())
                .await
                .expect("subscribed");
        }
        Sub {
            client,
            rx,
            seen: Vec::new(),
            stop,
        }
    }

    /// Wait for a message satisfying `pred` (received before or after this call, but not yet
    /// returned by `wait_for`), at most `limit`.
    pub async fn wait_for(&mut self, limit: Duration, what: &str, pred: impl Fn(&Msg) -> bool) -> Msg {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(m)) => {
                    self.seen.push(m.clone());
                    if pred(&m) {
                        return m;
                    }
                }
                _ => panic!(
                    "no {what} within {limit:?}; seen: {:?}",
                    self.seen
                        .iter()
                        .map(|m| (&m.topic, m.payload.len()))
                        .collect::<Vec<_>>()
                ),
            }
        }
    }

    /// Everything that arrives during `window`.
    pub async fn collect(&mut self, window: Duration) -> Vec<Msg> {
        let deadline = tokio::time::Instant::now() + window;
        let mut out = Vec::new();
        while let Ok(Some(m)) = tokio::time::timeout_at(deadline, self.rx.recv()).await {
            self.seen.push(m.clone());
            out.push(m);
        }
        out
    }

    pub async fn publish(&self, topic: &str, payload: &[u8], retain: bool) {
        self.client
            .publish(topic, rumqttc::QoS::AtLeastOnce, retain, payload.to_vec())
            .await
            .unwrap();
    }
}

impl Drop for Sub {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

// ---------------------------------------------------------------------------------------------
// Serial: a real pseudo-terminal pair; farmcam opens the slave path like a USB serial adapter

/// The test's end of a pty. `path` is the device farmcam opens.
pub struct Pty {
    master: std::os::fd::OwnedFd,
    pub path: PathBuf,
    rx: std::sync::mpsc::Receiver<(std::time::Instant, Vec<u8>)>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    reader: Option<std::thread::JoinHandle<()>>,
    /// Bytes received but not yet consumed.
    pending: Vec<u8>,
}

impl Pty {
    pub fn new() -> Pty {
        use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
        let (mut m, mut s) = (0, 0);
        let mut name = [0 as libc::c_char; 128];
        let rc = unsafe {
            libc::openpty(
                &mut m,
                &mut s,
                name.as_mut_ptr(),
                std::ptr::null(),
                std::ptr::null(),
            )
        };
        assert_eq!(rc, 0, "openpty");
        let path = PathBuf::from(
            unsafe { std::ffi::CStr::from_ptr(name.as_ptr()) }
                .to_string_lossy()
                .into_owned(),
        );
        // The slave stays closed until farmcam opens it, as a serial device would be.
        unsafe { libc::close(s) };
        let master = unsafe { OwnedFd::from_raw_fd(m) };
        let fd = master.as_raw_fd();
        let (tx, rx) = std::sync::mpsc::channel();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let st = stop.clone();
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 256];
            while !st.load(SeqCst) {
                let mut pfd = libc::pollfd {
                    fd,
                    events: libc::POLLIN,
                    revents: 0,
                };
                if unsafe { libc::poll(&mut pfd, 1, 50) } <= 0 || pfd.revents & libc::POLLIN == 0 {
                    // POLLHUP while no slave is open: wait for one.
                    if pfd.revents & libc::POLLHUP != 0 {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    continue;
                }
                let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
                if n > 0
                    && tx
                        .send((std::time::Instant::now(), buf[..n as usize].to_vec()))
                        .is_err()
                {
                    return;
                }
            }
        });
        Pty {
            master,
            path,
            rx,
            stop,
            reader: Some(reader),
            pending: Vec::new(),
        }
    }

    /// Write to the port (what the device says, e.g. "ok\n").
    pub fn write(&self, bytes: &[u8]) {
        use std::os::fd::AsRawFd;
        let n = unsafe { libc::write(self.master.as_raw_fd(), bytes.as_ptr().cast(), bytes.len()) };
        assert_eq!(n, bytes.len() as isize);
    }

    /// Exactly `n` bytes farmcam sent, and when the last of them arrived.
    pub async fn read(&mut self, n: usize, limit: Duration) -> (Vec<u8>, std::time::Instant) {
        let deadline = std::time::Instant::now() + limit;
        let mut at = std::time::Instant::now();
        while self.pending.len() < n {
            match self.rx.try_recv() {
                Ok((t, b)) => {
                    at = t;
                    self.pending.extend(b);
                }
                Err(_) => {
                    assert!(
                        std::time::Instant::now() < deadline,
                        "expected {n} bytes within {limit:?}, got {:02x?}",
                        self.pending
                    );
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
        (self.pending.drain(..n).collect(), at)
    }

    /// One line farmcam sent (without the newline).
    pub async fn read_line(&mut self, limit: Duration) -> String {
        let deadline = std::time::Instant::now() + limit;
        loop {
            if let Some(i) = self.pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=i).collect();
                return String::from_utf8_lossy(&line[..i]).into_owned();
            }
            match self.rx.try_recv() {
                Ok((_, b)) => self.pending.extend(b),
                Err(_) => {
                    assert!(
                        std::time::Instant::now() < deadline,
                        "no line within {limit:?}: {:?}",
                        self.pending
                    );
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    }

    /// Whatever arrives during `window` (e.g. to check that nothing does).
    pub async fn drain(&mut self, window: Duration) -> Vec<u8> {
        tokio::time::sleep(window).await;
        while let Ok((_, b)) = self.rx.try_recv() {
            self.pending.extend(b);
        }
        std::mem::take(&mut self.pending)
    }
}

impl Drop for Pty {
    fn drop(&mut self) {
        self.stop.store(true, SeqCst);
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}
