//! Talking to Moonraker (Klipper's API server): one JSON request over HTTP, and its JSON-RPC
//! websocket. Used by the webcam registration ([`crate::outputs::moonraker`]) and the timelapse
//! trigger ([`crate::timelapse::moonraker`]).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Method, Request};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::time::timeout;

use crate::config::MoonrakerConfig;

/// One request to Moonraker (or opening its websocket) may take this long.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Moonraker's answers are small; more than this is not Moonraker.
const MAX_BODY: usize = 1 << 20;

/// Moonraker's websocket.
pub type Socket = tokio_tungstenite::WebSocketStream<TcpStream>;

/// One JSON request over a fresh connection (bounded in time and size).
pub async fn call(
    config: &MoonrakerConfig,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> Result<Value, String> {
    let what = format!("{method} {}{path}", config.url);
    let exchange = async {
        let (mut sender, _driver) = crate::util::http_client::connect(&config.host, config.port)
            .await
            .map_err(|e| format!("cannot reach {}: {e}", config.url))?;
        let mut req = Request::builder()
            .method(method.clone())
            .uri(path)
            .header("host", format!("{}:{}", config.host, config.port))
            .header("content-type", "application/json");
        if let Some(key) = &config.api_key {
            req = req.header("x-api-key", key.0.as_str());
        }
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let req = req
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| format!("{what}: {e}"))?;
        let resp = sender.send_request(req).await.map_err(|e| format!("{what}: {e}"));
        let result = match resp {
            Ok(resp) => {
                let status = resp.status();
                let bytes = Limited::new(resp.into_body(), MAX_BODY)
                    .collect()
                    .await
                    .map_err(|e| format!("{what}: {e}"))?
                    .to_bytes();
                match status.as_u16() {
                    200..=299 => serde_json::from_slice(&bytes).map_err(|_| format!("{what}: not JSON")),
                    401 | 403 => Err(format!("{} refused farmcam ({status}): set api_key in [[moonraker]] or add farmcam's address to its trusted_clients", config.url)),
                    _ => Err(format!("{what}: {status}")),
                }
            }
            Err(e) => Err(e),
        };
        result
    };
    timeout(REQUEST_TIMEOUT, exchange)
        .await
        .map_err(|_| format!("{} did not answer within {REQUEST_TIMEOUT:?}", config.url))?
}

/// Open Moonraker's JSON-RPC websocket (`/websocket`); with an `api_key`, authenticated by a
/// one-shot token asked for over HTTP (the key itself never goes into a URL).
pub async fn websocket(config: &MoonrakerConfig) -> Result<Socket, String> {
    let query = match &config.api_key {
        Some(_) => {
            let v = call(config, Method::GET, "/access/oneshot_token", None).await?;
            let token = v["result"]
                .as_str()
                .ok_or_else(|| format!("{}/access/oneshot_token: no token in the answer", config.url))?;
            format!("?token={token}")
        }
        None => String::new(),
    };
    let open = async {
        let tcp = TcpStream::connect((config.host.as_str(), config.port))
            .await
            .map_err(|e| format!("cannot reach {}: {e}", config.url))?;
        // An IPv6 address goes in brackets in the URL (and the Host header made from it).
        let host = if config.host.contains(':') {
            format!("[{}]", config.host)
        } else {
            config.host.clone()
        };
        let url = format!("ws://{host}:{}/websocket{query}", config.port);
        let (ws, _) = tokio_tungstenite::client_async(url, tcp)
            .await
            .map_err(|e| format!("{}/websocket: {e}", config.url))?;
        Ok(ws)
    };
    timeout(REQUEST_TIMEOUT, open).await.map_err(|_| {
        format!(
            "{} did not open its websocket within {REQUEST_TIMEOUT:?}",
            config.url
        )
    })?
}

/// A JSON-RPC request as Moonraker takes it.
pub fn request(id: u64, method: &str, params: Value) -> String {
    serde_json::json!({ "jsonrpc": "2.0", "method": method, "params": params, "id": id }).to_string()
}
