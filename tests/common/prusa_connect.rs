//! A faithful fake of Prusa Connect's camera API, over HTTPS with a test CA: `PUT /c/snapshot`
//! (headers `Token` and `Fingerprint`, `Content-Type: image/jpg`, a JPEG body of at most
//! 16 MiB; 204) and `PUT /c/info` (JSON with a `config` object; 204). A token it does not know
//! is answered 401; a known token used with another fingerprint than its first, 409; a missing
//! header or a body that is not a JPEG, 400. It keeps what it took, and can go down and come
//! back on the same port.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio_util::sync::CancellationToken;

/// One request as the fake saw it, and what it answered.
#[derive(Clone, Debug)]
pub struct Seen {
    pub at: Instant,
    pub method: String,
    pub path: String,
    pub token: Option<String>,
    pub fingerprint: Option<String>,
    pub content_type: Option<String>,
    pub status: u16,
    /// For a snapshot taken: the picture's size.
    pub size: Option<(u16, u16)>,
    /// For camera info taken: the JSON.
    pub info: Option<serde_json::Value>,
}

#[derive(Default)]
struct Books {
    seen: Vec<Seen>,
    /// token → the fingerprint it was first used with.
    bound: Vec<(String, String)>,
}

pub struct FakePrusa {
    pub port: u16,
    /// The test CA farmcam checks the fake with (`[prusa_connect] ca_file`).
    pub ca_file: PathBuf,
    tokens: Arc<Mutex<Vec<String>>>,
    books: Arc<Mutex<Books>>,
    running: Option<(CancellationToken, std::thread::JoinHandle<()>)>,
    dir: PathBuf,
    _dir: tempfile::TempDir,
}

impl FakePrusa {
    /// Up on a free port, taking uploads made with `tokens`.
    pub fn start(tokens: &[&str]) -> FakePrusa {
        let dir = tempfile::tempdir().unwrap();
        super::tls::test_ca(dir.path());
        let mut fake = FakePrusa {
            port: 0,
            ca_file: dir.path().join("ca.pem"),
            tokens: Arc::new(Mutex::new(tokens.iter().map(|t| t.to_string()).collect())),
            books: Arc::default(),
            running: None,
            dir: dir.path().to_path_buf(),
            _dir: dir,
        };
        fake.up();
        fake
    }

    /// `[prusa_connect]` pointing farmcam at this fake.
    pub fn config(&self) -> String {
        format!(
            "[prusa_connect]\nurl = \"https://127.0.0.1:{}\"\nca_file = \"{}\"\n",
            self.port,
            self.ca_file.display()
        )
    }

    /// Stop answering: the port is closed and open connections are cut.
    pub fn down(&mut self) {
        if let Some((stop, thread)) = self.running.take() {
            stop.cancel();
            let _ = thread.join();
        }
    }

    /// Answer again (on the same port after [`Self::down`]).
    pub fn up(&mut self) {
        assert!(self.running.is_none(), "already up");
        let listener =
            std::net::TcpListener::bind(("127.0.0.1", self.port)).expect("the fake's port is free");
        listener.set_nonblocking(true).unwrap();
        self.port = listener.local_addr().unwrap().port();
        let tls = super::tls::server_config(&self.dir.join("server.pem"), &self.dir.join("server.key"));
        let stop = CancellationToken::new();
        let (s, tokens, books) = (stop.clone(), self.tokens.clone(), self.books.clone());
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(serve(listener, tls, tokens, books, s));
        });
        self.running = Some((stop, thread));
    }

    /// Take `token` from now on too (the user made it valid in Prusa Connect).
    pub fn allow(&self, token: &str) {
        self.tokens.lock().unwrap().push(token.to_string());
    }

    /// Everything seen so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.books.lock().unwrap().seen.clone()
    }

    /// Snapshots taken (answered 204) with `token`.
    pub fn snapshots(&self, token: &str) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|s| s.path == "/c/snapshot" && s.status == 204 && s.token.as_deref() == Some(token))
            .collect()
    }
}

impl Drop for FakePrusa {
    fn drop(&mut self) {
        self.down();
    }
}

async fn serve(
    listener: std::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
    tokens: Arc<Mutex<Vec<String>>>,
    books: Arc<Mutex<Books>>,
    stop: CancellationToken,
) {
    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let tasks = tokio_util::task::TaskTracker::new();
    loop {
        let (tcp, _): (tokio::net::TcpStream, SocketAddr) = tokio::select! {
            _ = stop.cancelled() => break,
            a = listener.accept() => match a { Ok(a) => a, Err(_) => continue },
        };
        let (acceptor, tokens, books, stop) = (acceptor.clone(), tokens.clone(), books.clone(), stop.clone());
        tasks.spawn(async move {
            let Ok(stream) = acceptor.accept(tcp).await else {
                return;
            };
            let service = hyper::service::service_fn(move |req| {
                let (tokens, books) = (tokens.clone(), books.clone());
                async move { Ok::<_, std::convert::Infallible>(answer(req, &tokens, &books).await) }
            });
            let conn =
                hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = conn => {}
            }
        });
    }
    // Connections are cut when the runtime stops (the tasks are dropped with it).
    drop(listener);
}

async fn answer(
    req: Request<Incoming>,
    tokens: &Mutex<Vec<String>>,
    books: &Mutex<Books>,
) -> Response<Full<Bytes>> {
    let header = |n: &str| {
        req.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let mut seen = Seen {
        at: Instant::now(),
        method: req.method().to_string(),
        path: req.uri().path().to_string(),
        token: header("token"),
        fingerprint: header("fingerprint"),
        content_type: header("content-type"),
        status: 0,
        size: None,
        info: None,
    };
    let body = Limited::new(req.into_body(), 16 << 20)
        .collect()
        .await
        .map(|b| b.to_bytes());
    let (status, text) = judge(&mut seen, body.ok(), tokens, books);
    seen.status = status;
    books.lock().unwrap().seen.push(seen);
    let mut resp = Response::new(Full::new(Bytes::from(text)));
    *resp.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
    resp
}

fn judge(
    seen: &mut Seen,
    body: Option<Bytes>,
    tokens: &Mutex<Vec<String>>,
    books: &Mutex<Books>,
) -> (u16, &'static str) {
    if seen.path != "/c/snapshot" && seen.path != "/c/info" {
        return (404, "Not found");
    }
    if seen.method != "PUT" {
        return (405, "Method not allowed");
    }
    let Some(body) = body else {
        return (413, "Payload too large");
    };
    let (Some(token), Some(fingerprint)) = (&seen.token, &seen.fingerprint) else {
        return (401, "Missing token or fingerprint");
    };
    if !tokens.lock().unwrap().contains(token) {
        return (401, "Invalid token");
    }
    if fingerprint.len() < 16 || fingerprint.len() > 64 {
        return (400, "Invalid fingerprint");
    }
    {
        let mut b = books.lock().unwrap();
        match b.bound.iter().find(|(t, _)| t == token) {
            Some((_, f)) if f != fingerprint => return (409, "Token already used with another fingerprint"),
            Some(_) => {}
            None => b.bound.push((token.clone(), fingerprint.clone())),
        }
    }
    if seen.path == "/c/info" {
        if seen.content_type.as_deref() != Some("application/json") {
            return (415, "Unsupported media type");
        }
        return match serde_json::from_slice::<serde_json::Value>(&body) {
            Ok(v) if v["config"].is_object() => {
                seen.info = Some(v);
                (204, "")
            }
            _ => (400, "Invalid camera info"),
        };
    }
    if !matches!(seen.content_type.as_deref(), Some("image/jpg" | "image/jpeg")) {
        return (415, "Unsupported media type");
    }
    let mut d = jpeg_decoder::Decoder::new(&body[..]);
    if d.decode().is_err() {
        return (400, "Not a JPEG");
    }
    let info = d.info().expect("decoded");
    seen.size = Some((info.width, info.height));
    (204, "")
}
