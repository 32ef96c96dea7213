//! A faithful fake of Moonraker's JSON-RPC websocket for the timelapse trigger (a real Moonraker
//! runs without Klipper here, so it has no `print_stats` to give): `/websocket`, answering
//! `server.connection.identify`, `server.info` (Klipper ready) and `printer.objects.subscribe`
//! (the current `print_stats`), then sending `notify_status_update` with the fields that change
//! (as Moonraker does: partial updates) and `notify_proc_stat_update` every second.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

pub struct FakeMoonraker {
    pub port: u16,
    /// The printer's `print_stats` as a subscription returns it.
    stats: Arc<Mutex<Value>>,
    updates: broadcast::Sender<Value>,
    /// Subscriptions to `print_stats` made so far.
    pub subscriptions: Arc<Mutex<u32>>,
    /// Cancelled to drop every connection (Moonraker restarting); replaced for the next ones.
    drop_all: Arc<Mutex<CancellationToken>>,
    stop: CancellationToken,
}

impl FakeMoonraker {
    pub async fn start() -> FakeMoonraker {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let f = FakeMoonraker {
            port,
            stats: Arc::new(Mutex::new(
                json!({ "state": "standby", "filename": "", "info": { "total_layer": null, "current_layer": null } }),
            )),
            updates: broadcast::channel(64).0,
            subscriptions: Arc::default(),
            drop_all: Arc::new(Mutex::new(CancellationToken::new())),
            stop: CancellationToken::new(),
        };
        let (stats, updates, subs, drop_all, stop) = (
            f.stats.clone(),
            f.updates.clone(),
            f.subscriptions.clone(),
            f.drop_all.clone(),
            f.stop.clone(),
        );
        tokio::spawn(async move {
            loop {
                let (tcp, _) = tokio::select! {
                    _ = stop.cancelled() => return,
                    r = listener.accept() => r.unwrap(),
                };
                let (stats, mut rx, subs) = (stats.clone(), updates.subscribe(), subs.clone());
                let gone = drop_all.lock().unwrap().clone();
                let stop = stop.clone();
                tokio::spawn(async move {
                    // Plain HTTP (farmcam's webcam registration) is not served by this fake.
                    let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
                        return;
                    };
                    let mut tick = tokio::time::interval(Duration::from_secs(1));
                    let mut subscribed = false;
                    loop {
                        let out = tokio::select! {
                            _ = stop.cancelled() => return,
                            _ = gone.cancelled() => return,
                            _ = tick.tick() => Some(json!({ "jsonrpc": "2.0", "method": "notify_proc_stat_update",
                                "params": [{ "cpu_temp": 45.0, "websocket_connections": 1 }] })),
                            u = rx.recv() => match u {
                                Ok(u) if subscribed => Some(json!({ "jsonrpc": "2.0", "method": "notify_status_update",
                                    "params": [{ "print_stats": u }, 12345.6] })),
                                Ok(_) => None,
                                Err(_) => return,
                            },
                            m = ws.next() => {
                                let Some(Ok(Message::Text(t))) = m else {
                                    if matches!(m, None | Some(Err(_)) | Some(Ok(Message::Close(_)))) { return }
                                    continue;
                                };
                                let req: Value = serde_json::from_str(t.as_str()).unwrap();
                                let id = req["id"].clone();
                                let result = match req["method"].as_str().unwrap() {
                                    "server.connection.identify" => json!({ "connection_id": 1 }),
                                    "server.info" => json!({ "klippy_connected": true, "klippy_state": "ready",
                                        "components": [], "moonraker_version": "v0.11.0" }),
                                    "printer.objects.subscribe" => {
                                        subscribed = true;
                                        *subs.lock().unwrap() += 1;
                                        json!({ "eventtime": 12345.6, "status": { "print_stats": stats.lock().unwrap().clone() } })
                                    }
                                    m => panic!("the fake Moonraker does not know {m}"),
                                };
                                Some(json!({ "jsonrpc": "2.0", "result": result, "id": id }))
                            }
                        };
                        if let Some(out) = out {
                            if ws.send(Message::text(out.to_string())).await.is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        f
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The printer changes: `fields` of `print_stats` (merged; `info` too) are sent to subscribers.
    pub fn update(&self, fields: Value) {
        let mut stats = self.stats.lock().unwrap();
        for (k, v) in fields.as_object().unwrap() {
            if k == "info" {
                for (ik, iv) in v.as_object().unwrap() {
                    stats["info"][ik] = iv.clone();
                }
            } else {
                stats[k] = v.clone();
            }
        }
        let _ = self.updates.send(fields);
    }

    pub fn subscriptions(&self) -> u32 {
        *self.subscriptions.lock().unwrap()
    }

    /// Drop every open connection, as a Moonraker restart does.
    pub fn drop_connections(&self) {
        let mut t = self.drop_all.lock().unwrap();
        t.cancel();
        *t = CancellationToken::new();
    }
}

impl Drop for FakeMoonraker {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
