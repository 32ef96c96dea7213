//! aiortc as a WebRTC viewer (tests/peers/aiortc).

use std::time::Duration;

use serde_json::Value;

const WAIT: Duration = Duration::from_secs(45);

/// A WebRTC viewer that is not a browser: aiortc (its own ICE, DTLS, SRTP and H.264 decoder),
/// run by `tests/peers/aiortc/run.sh`. Its progress lines are kept as they come.
pub struct Aiortc {
    child: std::process::Child,
    last: std::sync::Arc<std::sync::Mutex<Value>>,
}

impl Aiortc {
    pub fn start(form: &str, url: &str) -> Aiortc {
        super::peers::require_aiortc();
        let mut child = std::process::Command::new("bash")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/aiortc/run.sh"))
            .args([form, url])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("the aiortc peer starts");
        let last = std::sync::Arc::new(std::sync::Mutex::new(Value::Null));
        let out = child.stdout.take().unwrap();
        let keep = last.clone();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                // Kept merged: the latest value of each key (`first_frame_ms` comes once).
                if let Ok(Value::Object(v)) = serde_json::from_str::<Value>(&line) {
                    let mut kept = keep.lock().unwrap();
                    if !kept.is_object() {
                        *kept = Value::Object(Default::default());
                    }
                    kept.as_object_mut().unwrap().extend(v);
                }
            }
        });
        Aiortc { child, last }
    }

    /// What it said last, key by key.
    pub fn said(&self) -> Value {
        self.last.lock().unwrap().clone()
    }

    pub fn frames(&self) -> u64 {
        self.last.lock().unwrap()["frames"].as_u64().unwrap_or(0)
    }

    /// Wait until it decoded `n` frames, and check they are 320x240 (the test cameras').
    pub async fn wait_frames(&self, n: u64) {
        self.wait_frames_of(n, 320, 240).await;
    }

    /// Wait until it decoded `n` frames; returns its last progress line. The frames are
    /// `width` x `height`.
    pub async fn wait_frames_of(&self, n: u64, width: u64, height: u64) -> Value {
        super::eventually(WAIT, "frames decoded by aiortc", || {
            let v = self.last.lock().unwrap().clone();
            assert!(v["error"].is_null(), "aiortc: {v}");
            (v["frames"].as_u64() >= Some(n)).then_some(v)
        })
        .await;
        let v = self.last.lock().unwrap().clone();
        assert_eq!(
            (v["width"].as_u64(), v["height"].as_u64()),
            (Some(width), Some(height)),
            "{v}"
        );
        v
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: a signal to our own child.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }
}

impl Drop for Aiortc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
