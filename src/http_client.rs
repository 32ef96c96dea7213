//! farmcam as an HTTP/1 client (Moonraker's API, other gateways for the wall): one connection
//! per exchange, whose driver task stops when the caller drops it.

use hyper::body::Body as HttpBody;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// The task driving one client connection; aborted on drop.
pub struct Driver(tokio::task::JoinHandle<()>);

impl Drop for Driver {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Connect to `host:port` and set up HTTP/1 on it. The caller bounds the time (`timeout`).
pub async fn connect<B>(host: &str, port: u16) -> Result<(SendRequest<B>, Driver), String>
where
    B: HttpBody + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let tcp = TcpStream::connect((host, port))
        .await
        .map_err(|e| e.to_string())?;
    let _ = tcp.set_nodelay(true);
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| e.to_string())?;
    let driver = Driver(tokio::spawn(async move {
        let _ = conn.await;
    }));
    Ok((sender, driver))
}
