//! farmcam as an HTTP/1 client (Moonraker's API, other gateways for the wall, Prusa Connect):
//! one connection per exchange or kept by its caller, whose driver task stops when the caller
//! drops it; plain TCP, or TLS checked against the caller's roots.

use std::sync::Arc;

use hyper::body::Body as HttpBody;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
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
    handshake(tcp(host, port).await?).await
}

/// [`connect`] over TLS: the server's certificate must be valid for `host` under `tls`'s roots.
pub async fn connect_tls<B>(
    host: &str,
    port: u16,
    tls: Arc<rustls::ClientConfig>,
) -> Result<(SendRequest<B>, Driver), String>
where
    B: HttpBody + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let name = rustls::pki_types::ServerName::try_from(host.to_string())
        .map_err(|_| format!("{host:?} is not a host name for TLS"))?;
    let tcp = tcp(host, port).await?;
    let stream = tokio_rustls::TlsConnector::from(tls)
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS: {e}"))?;
    handshake(stream).await
}

async fn tcp(host: &str, port: u16) -> Result<TcpStream, String> {
    let tcp = TcpStream::connect((host, port))
        .await
        .map_err(|e| e.to_string())?;
    let _ = tcp.set_nodelay(true);
    Ok(tcp)
}

async fn handshake<B, I>(io: I) -> Result<(SendRequest<B>, Driver), String>
where
    B: HttpBody + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| e.to_string())?;
    let driver = Driver(tokio::spawn(async move {
        let _ = conn.await;
    }));
    Ok((sender, driver))
}
