//! A viewer's packets to one address, sent together: Linux's UDP segmentation offload
//! (`UDP_SEGMENT`) takes a run of equal-sized datagrams (the last may be shorter) in one system
//! call, where each would otherwise be its own `sendto` (an H.264 picture is several RTP packets
//! of the path's size, then a shorter one). A kernel or device that refuses it gets one `sendto`
//! per packet from then on.

use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

/// Datagrams in one send at most (the kernel takes 64).
const MAX_SEGMENTS: usize = 32;
/// Bytes in one send at most (a UDP datagram's limit, with room for headers).
const MAX_BYTES: usize = 60_000;

/// Whether this kernel takes `UDP_SEGMENT`: false after the first refusal.
static OFFLOAD: AtomicBool = AtomicBool::new(true);

/// Packets to one address waiting to be sent together.
#[derive(Debug)]
pub struct Batch {
    buf: Vec<u8>,
    /// Every packet's size but the last's (which may be shorter, and ends the batch).
    segment: usize,
    count: usize,
    dest: Option<SocketAddr>,
    /// Send segments together (else one `sendto` each).
    offload: bool,
}

impl Default for Batch {
    fn default() -> Self {
        Batch::new(true)
    }
}

impl Batch {
    pub fn new(offload: bool) -> Batch {
        Batch {
            buf: Vec::new(),
            segment: 0,
            count: 0,
            dest: None,
            offload,
        }
    }

    /// Send `packet` to `dest`, now or with the packets after it; returns the bytes sent by this
    /// call (a full socket buffer drops packets, as the network would).
    pub fn send(&mut self, socket: &impl AsFd, packet: &[u8], dest: SocketAddr) -> u64 {
        let offload = self.offload && OFFLOAD.load(Relaxed);
        let joins = offload
            && self.dest == Some(dest)
            && packet.len() <= self.segment
            && self.count < MAX_SEGMENTS
            && self.buf.len() + packet.len() <= MAX_BYTES;
        let mut sent = if joins { 0 } else { self.flush(socket) };
        if !offload {
            return sent + sendto(socket, packet, dest);
        }
        if self.count == 0 {
            self.dest = Some(dest);
            self.segment = packet.len();
        }
        self.buf.extend_from_slice(packet);
        self.count += 1;
        if packet.len() < self.segment {
            sent += self.flush(socket);
        }
        sent
    }

    /// Send what waits; returns the bytes sent.
    pub fn flush(&mut self, socket: &impl AsFd) -> u64 {
        let Some(dest) = self.dest.take() else {
            return 0;
        };
        let count = std::mem::take(&mut self.count);
        let sent = if count == 1 {
            sendto(socket, &self.buf, dest)
        } else {
            match send(socket, &self.buf, dest, Some(self.segment)) {
                Ok(n) => n as u64,
                // Not offload's fault (a full buffer, no route): dropped, as one by one.
                Err(e) if !refused(&e) => 0,
                Err(e) => {
                    if OFFLOAD.swap(false, Relaxed) {
                        tracing::debug!(
                            "webrtc: UDP segmentation offload refused ({e}); one send per packet"
                        );
                    }
                    self.buf
                        .chunks(self.segment)
                        .map(|p| sendto(socket, p, dest))
                        .sum()
                }
            }
        };
        self.buf.clear();
        sent
    }
}

/// Whether a send failed because the kernel or the device does not take `UDP_SEGMENT` (no
/// checksum offload: EIO; an old kernel: EINVAL, ENOPROTOOPT, EOPNOTSUPP).
fn refused(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EIO | libc::EINVAL | libc::ENOPROTOOPT | libc::EOPNOTSUPP)
    )
}

/// One datagram (0 bytes sent when the socket buffer is full).
fn sendto(socket: &impl AsFd, packet: &[u8], dest: SocketAddr) -> u64 {
    send(socket, packet, dest, None).map_or(0, |n| n as u64)
}

/// One `sendmsg` of `buf` to `dest`, without waiting: one datagram, or with `segment` datagrams
/// of that size (the last may be shorter). Straight to the socket, not through tokio's
/// readiness: nothing waits for the socket to be writable (a full buffer drops packets).
fn send(socket: &impl AsFd, buf: &[u8], dest: SocketAddr, segment: Option<usize>) -> std::io::Result<usize> {
    let segment = segment
        .map(|s| u16::try_from(s).map_err(|_| std::io::ErrorKind::InvalidInput))
        .transpose()?;
    // SAFETY: every pointer in the message points at a local or `buf`, which outlive the call;
    // the control buffer is aligned for a cmsghdr and large enough for one u16 (CMSG_SPACE).
    unsafe {
        let (mut addr, addr_len) = sockaddr(dest);
        let mut iov = libc::iovec {
            iov_base: buf.as_ptr() as *mut libc::c_void,
            iov_len: buf.len(),
        };
        let mut control = [0u64; 4];
        let space = libc::CMSG_SPACE(size_of::<u16>() as u32) as usize;
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_name = &mut addr as *mut libc::sockaddr_storage as *mut libc::c_void;
        msg.msg_namelen = addr_len;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        if let Some(segment) = segment {
            msg.msg_control = control.as_mut_ptr() as *mut libc::c_void;
            msg.msg_controllen = space as _;
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_UDP;
            (*cmsg).cmsg_type = libc::UDP_SEGMENT;
            (*cmsg).cmsg_len = libc::CMSG_LEN(size_of::<u16>() as u32) as _;
            std::ptr::write_unaligned(libc::CMSG_DATA(cmsg) as *mut u16, segment);
        }
        let n = libc::sendmsg(socket.as_fd().as_raw_fd(), &msg, libc::MSG_DONTWAIT);
        if n < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }
}

/// `dest` as the C library takes it.
fn sockaddr(dest: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain data, zero is a valid value; the writes below are of the
    // structure of the address's family, which it is large enough for.
    unsafe {
        let mut storage: libc::sockaddr_storage = std::mem::zeroed();
        let len = match dest {
            SocketAddr::V4(a) => {
                let sin = &mut *(&mut storage as *mut _ as *mut libc::sockaddr_in);
                sin.sin_family = libc::AF_INET as libc::sa_family_t;
                sin.sin_port = a.port().to_be();
                sin.sin_addr.s_addr = u32::from_ne_bytes(a.ip().octets());
                size_of::<libc::sockaddr_in>()
            }
            SocketAddr::V6(a) => {
                let sin6 = &mut *(&mut storage as *mut _ as *mut libc::sockaddr_in6);
                sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
                sin6.sin6_port = a.port().to_be();
                sin6.sin6_addr.s6_addr = a.ip().octets();
                sin6.sin6_flowinfo = a.flowinfo();
                sin6.sin6_scope_id = a.scope_id();
                size_of::<libc::sockaddr_in6>()
            }
        };
        (storage, len as libc::socklen_t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::UdpSocket;

    /// What a receiver gets: the same datagrams, in order, whether sent together or one by one;
    /// a packet to another address or of another size starts a new batch.
    #[tokio::test]
    async fn batched_packets_arrive_as_the_datagrams_they_were() {
        for offload in [true, false] {
            let tx = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let a = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let b = UdpSocket::bind("[::1]:0").await.ok();
            let tx6 = UdpSocket::bind("[::1]:0").await.ok();
            let to_a = a.local_addr().unwrap();
            let packets: Vec<Vec<u8>> = (0..40u8)
                .map(|i| vec![i; if i % 7 == 6 { 300 } else { 1200 }])
                .chain([vec![99; 50], vec![100; 1200]])
                .collect();
            let mut batch = Batch::new(offload);
            let mut sent = 0;
            for p in &packets {
                sent += batch.send(&tx, p, to_a);
            }
            sent += batch.flush(&tx);
            let total: usize = packets.iter().map(Vec::len).sum();
            assert_eq!(sent, total as u64, "offload {offload}");
            let mut buf = [0u8; 2000];
            for p in &packets {
                let n = tokio::time::timeout(std::time::Duration::from_secs(10), a.recv(&mut buf))
                    .await
                    .expect("a datagram")
                    .unwrap();
                assert_eq!(&buf[..n], &p[..], "offload {offload}");
            }
            // IPv6, where this box has it.
            if let (true, Some(b), Some(tx6)) = (offload, b, tx6) {
                let to_b = b.local_addr().unwrap();
                assert_eq!(batch.send(&tx6, &[1; 1000], to_b), 0, "waits for more");
                batch.send(&tx6, &[2; 1000], to_b);
                assert_eq!(batch.flush(&tx6), 2000);
                for v in [1u8, 2] {
                    let n = b.recv(&mut buf).await.unwrap();
                    assert_eq!(&buf[..n], &[v; 1000][..]);
                }
            }
        }
    }
}
