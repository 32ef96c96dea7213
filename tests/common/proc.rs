//! What /proc says about processes (children, command lines, states), and free ports.

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
/// farmcam's shared decoder helper (`farmcam decode-helper`), if it runs.
pub fn decoder_helpers(farmcam: u32) -> Vec<u32> {
    children(farmcam)
        .into_iter()
        .filter(|p| cmdline(*p).contains("decode-helper"))
        .collect()
}

pub fn ffmpeg_children(farmcam: u32, needle: &str) -> Vec<u32> {
    children(farmcam)
        .into_iter()
        .filter(|p| {
            let c = cmdline(*p);
            c.contains("ffmpeg") && c.contains(needle)
        })
        .collect()
}

/// How many descriptors process `pid` holds open (`usize::MAX` if it cannot be read).
pub fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(usize::MAX, |d| d.count())
}

/// A TCP connection to `to` from the local address `from` (127.0.0.0/8 is all loopback: another
/// client as farmcam sees it).
pub async fn connect_from(
    from: std::net::IpAddr,
    to: std::net::SocketAddr,
) -> std::io::Result<tokio::net::TcpStream> {
    let s = tokio::net::TcpSocket::new_v4()?;
    s.bind(std::net::SocketAddr::new(from, 0))?;
    s.connect(to).await
}

/// A free TCP port on 127.0.0.1 (nothing listens on it when this returns).
pub fn free_port() -> u16 {
    // Below Linux's ephemeral range (32768–60999): a port the kernel hands out for `bind(0)` or
    // an outgoing connection could be taken again between this check and the peer's bind (the
    // tests open hundreds of connections); one from here is taken only by another test picking
    // the same number, which the bind below rules out.
    loop {
        let port = fastrand::u16(20_000..32_000);
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
            && std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok()
        {
            return port;
        }
    }
}

/// Ask a child to stop with `signal`, wait (at most 5 s), then kill it; always reaped.
pub fn terminate(child: &mut std::process::Child, signal: i32) {
    unsafe { libc::kill(child.id() as i32, signal) };
    super::poll_blocking(std::time::Duration::from_secs(5), || {
        child.try_wait().ok().flatten()
    });
    let _ = child.kill();
    let _ = child.wait();
}
