//! An RTSP exchange as a client makes it, by hand (for what no client library sends).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::Daemon;

const WAIT: Duration = Duration::from_secs(60);

pub struct Client {
    pub sock: TcpStream,
    pub buf: Vec<u8>,
    pub cseq: u32,
}

#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn session(&self) -> String {
        self.header("session")
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_string()
    }
}

impl Client {
    pub async fn connect(d: &Daemon) -> Client {
        Client::connect_to(d.rtsp.unwrap()).await
    }

    pub async fn connect_to(addr: SocketAddr) -> Client {
        Client {
            sock: TcpStream::connect(addr).await.unwrap(),
            buf: Vec::new(),
            cseq: 0,
        }
    }

    pub async fn send_raw(&mut self, raw: &[u8]) {
        self.sock.write_all(raw).await.unwrap();
    }

    /// One request; `extra` are header lines ending in CRLF.
    pub async fn request(&mut self, method: &str, url: &str, extra: &str) -> Option<Reply> {
        self.cseq += 1;
        let req = format!("{method} {url} RTSP/1.0\r\nCSeq: {}\r\n{extra}\r\n", self.cseq);
        self.sock.write_all(req.as_bytes()).await.ok()?;
        self.reply().await
    }

    /// The next response, skipping interleaved media; None once the server closed.
    pub async fn reply(&mut self) -> Option<Reply> {
        tokio::time::timeout(WAIT, async {
            loop {
                while self.buf.first() == Some(&b'$') && self.buf.len() >= 4 {
                    let n = u16::from_be_bytes([self.buf[2], self.buf[3]]) as usize;
                    if self.buf.len() < 4 + n {
                        break;
                    }
                    self.buf.drain(..4 + n);
                }
                if self.buf.first() != Some(&b'$') {
                    if let Some(end) = super::find(&self.buf, b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&self.buf[..end]).to_string();
                        let mut lines = head.lines();
                        let status: u16 = lines.next()?.split(' ').nth(1)?.parse().ok()?;
                        let headers: Vec<(String, String)> = lines
                            .filter_map(|l| l.split_once(':'))
                            .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
                            .collect();
                        let len: usize = headers
                            .iter()
                            .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
                            .map_or(0, |(_, v)| v.parse().unwrap());
                        if self.buf.len() >= end + 4 + len {
                            let body = String::from_utf8_lossy(&self.buf[end + 4..end + 4 + len]).to_string();
                            self.buf.drain(..end + 4 + len);
                            return Some(Reply {
                                status,
                                headers,
                                body,
                            });
                        }
                    }
                }
                let mut chunk = [0u8; 16384];
                let n = self.sock.read(&mut chunk).await.ok()?;
                if n == 0 {
                    return None;
                }
                self.buf.extend_from_slice(&chunk[..n]);
            }
        })
        .await
        .expect("an answer or a close within the limit")
    }

    /// Interleaved packets until `n` arrived on `channel`.
    pub async fn media(&mut self, channel: u8, n: usize) {
        self.packets(channel, n).await;
    }

    /// The next `n` RTP packets on `channel`: sequence number and the first NAL unit type (an
    /// FU-A's own type, with whether it starts the unit).
    pub async fn packets(&mut self, channel: u8, n: usize) -> Vec<(u16, u8)> {
        self.rtp(channel, n)
            .await
            .iter()
            .map(|p| {
                let seq = u16::from_be_bytes([p[2], p[3]]);
                let t = p[12] & 0x1f;
                let t = if t == 28 && p[13] & 0x80 != 0 {
                    p[13] & 0x1f
                } else if t == 28 {
                    0
                } else {
                    t
                };
                (seq, t)
            })
            .collect()
    }

    /// The next `n` RTP packets on `channel`, whole.
    pub async fn rtp(&mut self, channel: u8, n: usize) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        tokio::time::timeout(WAIT, async {
            while out.len() < n {
                if self.buf.len() >= 4 && self.buf[0] == b'$' {
                    let len = u16::from_be_bytes([self.buf[2], self.buf[3]]) as usize;
                    if self.buf.len() >= 4 + len {
                        if self.buf[1] == channel {
                            let p = self.buf[4..4 + len].to_vec();
                            assert!(p.len() > 13 && p[0] >> 6 == 2, "RTP version 2");
                            out.push(p);
                        }
                        self.buf.drain(..4 + len);
                        continue;
                    }
                }
                let mut chunk = [0u8; 16384];
                let r = self.sock.read(&mut chunk).await.unwrap();
                assert!(r > 0, "the server closed while playing");
                self.buf.extend_from_slice(&chunk[..r]);
            }
        })
        .await
        .expect("media within the limit");
        out
    }

    /// SETUP of the camera's track over TCP (interleaved channels 0-1).
    pub async fn setup_tcp(&mut self, url: &str) -> Option<Reply> {
        self.request(
            "SETUP",
            &format!("{url}/trackID=0"),
            "Transport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n",
        )
        .await
    }

    /// DESCRIBE, SETUP over TCP, PLAY: the session id.
    pub async fn play_tcp(&mut self, url: &str) -> String {
        let r = self
            .request("DESCRIBE", url, "Accept: application/sdp\r\n")
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{r:?}");
        let r = self.setup_tcp(url).await.unwrap();
        assert_eq!(r.status, 200, "{r:?}");
        let id = r.session();
        let r = self
            .request("PLAY", url, &format!("Session: {id}\r\n"))
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{r:?}");
        id
    }
}
