//! A real Moonraker (the webcam API Mainsail and Fluidd read), run by `tests/peers/moonraker/run.sh`
//! (a venv from PyPI that `packaging/dev.sh deps` makes) with its state in a temp dir. No Klipper
//! is needed.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::proc::{free_port, terminate};

/// The peer's start script, in this repository.
fn run_sh() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/moonraker/run.sh").to_string()
}

pub struct Moonraker {
    child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl Moonraker {
    pub fn start() -> Moonraker {
        Self::start_on(free_port())
    }

    /// On a given port (Moonraker cannot report a port it picked).
    pub fn start_on(port: u16) -> Moonraker {
        Self::start_in(port, tempfile::tempdir().unwrap())
    }

    fn start_in(port: u16, dir: tempfile::TempDir) -> Moonraker {
        super::peers::require_moonraker();
        let child = Command::new("bash")
            .arg(run_sh())
            .arg(port.to_string())
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("tests/peers/moonraker/run.sh starts (packaging/dev.sh deps installs its venv)");
        let m = Moonraker {
            child: Some(child),
            port,
            dir,
        };
        m.wait_ready();
        m
    }

    fn wait_ready(&self) {
        super::eventually_blocking(
            Duration::from_secs(60),
            "Moonraker answering /access/info",
            || {
                use std::io::{Read, Write};
                let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).ok()?;
                let _ = s.write_all(b"GET /access/info HTTP/1.0\r\nHost: x\r\n\r\n");
                let mut head = [0u8; 12];
                (s.read_exact(&mut head).is_ok() && head.ends_with(b"200")).then_some(())
            },
        );
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn addr(&self) -> SocketAddr {
        ([127, 0, 0, 1], self.port).into()
    }

    /// Stop it (SIGTERM); its database stays in the temp dir.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            terminate(&mut c, libc::SIGTERM);
        }
    }

    /// The webcam list, as Moonraker returns it.
    pub async fn webcams(&self) -> Vec<serde_json::Value> {
        let r = super::get(self.addr(), "/server/webcams/list").await;
        assert_eq!(r.status, 200);
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        v["result"]["webcams"].as_array().cloned().unwrap_or_default()
    }

    /// Add an entry by hand, as a user would in Mainsail.
    pub async fn add(&self, json: &str) {
        let raw = format!(
            "POST /server/webcams/item HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{json}",
            json.len()
        );
        let r = super::request(self.addr(), &raw).await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    }
}

impl Drop for Moonraker {
    fn drop(&mut self) {
        self.stop();
        let _ = &self.dir;
    }
}
