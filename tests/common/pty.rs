//! Serial: a real pseudo-terminal pair; farmcam opens the slave path like a USB serial adapter.

use std::path::PathBuf;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;
use std::time::Duration;

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
