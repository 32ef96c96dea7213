//! Bambu Lab printer cameras.
//!
//! `bambu://bblp:CODE@IP[:6000]`: the P1/A1 camera protocol, spoken natively (no ffmpeg, no
//! middleman): TLS to port 6000, an 80-byte login, then per frame a 16-byte little-endian header
//! (payload size, itrack, flags, 0) and that many bytes of JPEG. One connection per pump; the
//! printers allow very few, so a replacement connects only after the old socket is closed (the
//! pump awaits `close`).
//!
//! `bambu-rtsps://bblp:CODE@IP[:322]`: X1/H2/P2S, through the ffmpeg source (see
//! [`super::ffmpeg::FfmpegInput::BambuRtsps`]).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::ffmpeg::{FfmpegInput, FfmpegOptions};
use super::{Common, SourceError, SourceSpec, Upstream};
use crate::frame::Captured;
use crate::media::jpeg;

pub const DEFAULT_PORT: u16 = 6000;
pub const RTSPS_PORT: u16 = 322;
/// A frame size above this means a broken stream.
const MAX_FRAME: usize = 10 * 1024 * 1024;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// `bambu://`: where and how to log in.
#[derive(Clone, PartialEq, Eq)]
pub struct BambuSpec {
    pub host: String,
    pub port: u16,
    pub access_code: String,
    /// The printer certificate's pinned SHA-256 (`tls_fingerprint`); `None`: not verified.
    pub fingerprint: Option<[u8; 32]>,
}

impl std::fmt::Debug for BambuSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "bambu://***@{}:{}", self.host, self.port)
    }
}

impl BambuSpec {
    pub fn redacted(&self) -> String {
        format!("bambu://***@{}:{}", self.host, self.port)
    }
}

/// The port of a Bambu printer's MQTT broker (TLS; user `bblp`, the access code as password).
pub const MQTT_PORT: u16 = 8883;

/// A Bambu printer as its camera's source names it: where it is and how to log in (its MQTT
/// broker takes the same access code, and its certificate the same pin).
#[derive(Clone, PartialEq, Eq)]
pub struct Printer {
    pub host: String,
    pub access_code: String,
    pub fingerprint: Option<[u8; 32]>,
}

impl std::fmt::Debug for Printer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Bambu printer at {}", self.host)
    }
}

/// The printer of a `bambu://` or `bambu-rtsps://` camera.
pub fn printer_of(spec: &SourceSpec) -> Option<Printer> {
    match spec {
        SourceSpec::Bambu(b) => Some(Printer {
            host: b.host.clone(),
            access_code: b.access_code.clone(),
            fingerprint: b.fingerprint,
        }),
        SourceSpec::Ffmpeg(o) => match &o.input {
            FfmpegInput::BambuRtsps(url) => {
                // rtsps://bblp:CODE@HOST:PORT/streaming/live/1, as parse() wrote it.
                let rest = url.strip_prefix("rtsps://bblp:")?;
                let (code, hostport) = rest.split_once('@')?;
                let hostport = hostport.split('/').next()?;
                let (host, _) = crate::util::hostport::split(hostport)?;
                Some(Printer {
                    host: host.to_string(),
                    access_code: code.to_string(),
                    fingerprint: None,
                })
            }
            _ => None,
        },
        _ => None,
    }
}

/// The TLS settings for a Bambu printer: its self-signed certificate accepted, or checked
/// against the pinned fingerprint.
pub fn tls_config(fingerprint: Option<[u8; 32]>) -> rustls::ClientConfig {
    let verifier = Arc::new(Verifier {
        fingerprint,
        provider: Arc::new(rustls::crypto::ring::default_provider()),
    });
    rustls::ClientConfig::builder_with_provider(verifier.provider.clone())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions")
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth()
}

/// `None` if `s` is not a Bambu source at all.
pub fn parse(s: &str) -> Option<Result<SourceSpec, String>> {
    let (rtsps, rest) = if let Some(r) = s.strip_prefix("bambu://") {
        (false, r)
    } else if let Some(r) = s.strip_prefix("bambu-rtsps://") {
        (true, r)
    } else {
        return None;
    };
    let scheme = if rtsps { "bambu-rtsps" } else { "bambu" };
    let shown = crate::util::redact::url(s);
    let example = format!("write \"{scheme}://bblp:<access code>@<printer ip>\"");
    let rest = rest.trim_end_matches('/');
    let Some((userinfo, hostport)) = rest.rsplit_once('@') else {
        return Some(Err(format!("{shown:?} has no access code; {example}")));
    };
    let (user, code) = userinfo.split_once(':').unwrap_or(("", userinfo));
    if user != "bblp" || code.is_empty() {
        return Some(Err(format!(
            "{shown:?}: the user is always bblp and the access code follows it; {example}"
        )));
    }
    let default_port = if rtsps { RTSPS_PORT } else { DEFAULT_PORT };
    let (host, port) = match crate::util::hostport::split(hostport) {
        Some((h, None)) => (h, default_port),
        Some((h, Some(p))) if p > 0 => (h, p),
        _ => {
            let port = hostport.rsplit(':').next().unwrap_or("");
            return Some(Err(format!("{shown:?}: {port:?} is not a port; {example}")));
        }
    };
    if host.is_empty() || host.contains('/') {
        return Some(Err(format!("{shown:?} has no printer address; {example}")));
    }
    Some(Ok(if rtsps {
        SourceSpec::Ffmpeg(FfmpegOptions::new(FfmpegInput::BambuRtsps(format!(
            "rtsps://bblp:{code}@{host}:{port}/streaming/live/1"
        ))))
    } else {
        SourceSpec::Bambu(BambuSpec {
            host: host.to_string(),
            port,
            access_code: code.to_string(),
            fingerprint: None,
        })
    }))
}

/// Parse a SHA-256 certificate fingerprint: 64 hex digits, colons and spaces allowed.
pub fn parse_fingerprint(s: &str) -> Result<[u8; 32], String> {
    let hex: String = s.chars().filter(|c| !matches!(c, ':' | ' ')).collect();
    let bad = || {
        format!("{s:?} is not a SHA-256 fingerprint (64 hex digits); get it with: openssl s_client -connect <printer ip>:6000 </dev/null 2>/dev/null | openssl x509 -noout -fingerprint -sha256")
    };
    // Checked per character first: slicing a string with a multi-byte character at an odd
    // offset would panic.
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad());
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
    }
    Ok(out)
}

/// The 80-byte login: u32 LE 0x40, 0x3000, 0, 0, then user and access code, each NUL-padded
/// to 32 bytes.
pub fn auth_packet(access_code: &str) -> [u8; 80] {
    let mut p = [0u8; 80];
    p[0..4].copy_from_slice(&0x40u32.to_le_bytes());
    p[4..8].copy_from_slice(&0x3000u32.to_le_bytes());
    let user = b"bblp";
    p[16..16 + user.len()].copy_from_slice(user);
    let code = access_code.as_bytes();
    let n = code.len().min(32);
    p[48..48 + n].copy_from_slice(&code[..n]);
    p
}

pub struct BambuSource {
    spec: BambuSpec,
    connector: TlsConnector,
    max_frame: usize,
}

impl BambuSource {
    pub fn new(common: &Common, spec: BambuSpec) -> Self {
        let config = tls_config(spec.fingerprint);
        BambuSource {
            spec,
            connector: TlsConnector::from(Arc::new(config)),
            max_frame: common.max_frame_size.min(MAX_FRAME),
        }
    }
}

#[async_trait]
impl super::Source for BambuSource {
    async fn open(&self, _demand: crate::source::DemandRx) -> Result<Box<dyn Upstream>, SourceError> {
        let (host, port) = (&self.spec.host, self.spec.port);
        let at = format!("{host}:{port}");
        let tcp = timeout(CONNECT_TIMEOUT, TcpStream::connect((host.as_str(), port)))
            .await
            .map_err(|_| SourceError::Open(format!("{at} did not answer within {CONNECT_TIMEOUT:?}")))?
            .map_err(|e| SourceError::Open(format!("cannot connect to {at}: {e}")))?;
        let _ = tcp.set_nodelay(true);
        let name = match host.parse::<IpAddr>() {
            Ok(ip) => ServerName::IpAddress(ip.into()),
            Err(_) => ServerName::try_from(host.clone())
                .map_err(|_| SourceError::Open(format!("{host:?} is not a host name")))?,
        };
        let mut tls = timeout(CONNECT_TIMEOUT, self.connector.connect(name, tcp))
            .await
            .map_err(|_| {
                SourceError::Open(format!(
                    "TLS with {at} did not complete within {CONNECT_TIMEOUT:?}"
                ))
            })?
            .map_err(|e| SourceError::Open(format!("TLS with {at}: {e}")))?;
        tls.write_all(&auth_packet(&self.spec.access_code))
            .await
            .map_err(|e| SourceError::Open(format!("sending the login to {at}: {e}")))?;
        tls.flush()
            .await
            .map_err(|e| SourceError::Open(format!("{at}: {e}")))?;
        Ok(Box::new(BambuStream {
            tls,
            host: host.clone(),
            buf: BytesMut::with_capacity(256 * 1024),
            frames: 0,
            invalid: 0,
            max_frame: self.max_frame,
        }))
    }
}

struct BambuStream {
    tls: TlsStream<TcpStream>,
    host: String,
    buf: BytesMut,
    frames: u64,
    invalid: u64,
    max_frame: usize,
}

impl BambuStream {
    /// Read until `buf` holds `n` bytes. `Ok(false)` on a clean end of stream.
    async fn fill(&mut self, n: usize) -> Result<bool, SourceError> {
        while self.buf.len() < n {
            self.buf.reserve(n - self.buf.len());
            match self.tls.read_buf(&mut self.buf).await {
                Ok(0) => return Ok(false),
                Ok(_) => {}
                Err(e) => return Err(SourceError::Failed(format!("{}: {e}", self.host))),
            }
        }
        Ok(true)
    }

    fn closed(&self) -> SourceError {
        if self.frames == 0 && self.buf.is_empty() {
            SourceError::Failed(format!(
                "access code rejected by {} (the printer closed the connection after the login; \
                 check the access code on the printer's screen)",
                self.host
            ))
        } else {
            SourceError::Failed(format!("{} closed the connection", self.host))
        }
    }
}

#[async_trait]
impl Upstream for BambuStream {
    async fn next_frame(&mut self) -> Result<Captured, SourceError> {
        loop {
            if !self.fill(16).await? {
                return Err(self.closed());
            }
            let size = u32::from_le_bytes(self.buf[0..4].try_into().expect("4 bytes")) as usize;
            if size == 0 || size > self.max_frame {
                return Err(SourceError::Failed(format!(
                    "{}: broken stream (frame size {size}); reconnecting",
                    self.host
                )));
            }
            if !self.fill(16 + size).await? {
                return Err(SourceError::Failed(format!(
                    "{} closed the connection mid-frame",
                    self.host
                )));
            }
            let _header = self.buf.split_to(16);
            let payload: Bytes = self.buf.split_to(size).freeze();
            match jpeg::dimensions(&payload) {
                Some((width, height)) if payload.ends_with(&jpeg::EOI) => {
                    self.frames += 1;
                    return Ok(Captured {
                        jpeg: payload,
                        width,
                        height,
                        captured_at: SystemTime::now(),
                        oriented: false,
                    });
                }
                _ => self.invalid += 1,
            }
        }
    }

    fn take_invalid(&mut self) -> u64 {
        std::mem::take(&mut self.invalid)
    }

    async fn close(mut self: Box<Self>) {
        // close_notify, then wait for the printer to close its side: only then has it counted
        // this connection as gone, and a replacement may connect.
        let _ = timeout(CLOSE_TIMEOUT, async {
            let _ = self.tls.shutdown().await;
            let mut sink = [0u8; 4096];
            while matches!(self.tls.read(&mut sink).await, Ok(n) if n > 0) {}
        })
        .await;
    }
}

/// Printers present a certificate from Bambu's own CA with the serial number as CN: not
/// verifiable by name. Either accept it (`tls_verify = "none"`, the common practice) or pin its
/// SHA-256 fingerprint.
#[derive(Debug)]
struct Verifier {
    fingerprint: Option<[u8; 32]>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Some(want) = &self.fingerprint {
            let got = ring::digest::digest(&ring::digest::SHA256, end_entity.as_ref());
            if got.as_ref() != want {
                let hex: String = got.as_ref().iter().map(|b| format!("{b:02X}")).collect();
                return Err(rustls::Error::General(format!(
                    "the printer's certificate fingerprint is {hex}, not the pinned tls_fingerprint"
                )));
            }
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_parse_and_hide_the_code() {
        let s = parse("bambu://bblp:12345678@192.168.1.40").unwrap().unwrap();
        let SourceSpec::Bambu(b) = &s else { panic!() };
        assert_eq!(
            (b.host.as_str(), b.port, b.access_code.as_str()),
            ("192.168.1.40", 6000, "12345678")
        );
        assert_eq!(s.redacted(), "bambu://***@192.168.1.40:6000");
        assert!(!format!("{s:?}").contains("12345678"));
        let r = parse("bambu-rtsps://bblp:87654321@10.0.0.9").unwrap().unwrap();
        assert_eq!(
            r,
            SourceSpec::Ffmpeg(FfmpegOptions::new(FfmpegInput::BambuRtsps(
                "rtsps://bblp:87654321@10.0.0.9:322/streaming/live/1".into()
            )))
        );
        assert_eq!(r.redacted(), "rtsps://***@10.0.0.9:322/streaming/live/1");
        for bad in [
            "bambu://10.0.0.9",
            "bambu://root:x@10.0.0.9",
            "bambu://bblp:@h",
            "bambu://bblp:c0de1234@h:x",
        ] {
            let e = parse(bad).unwrap().unwrap_err();
            assert!(
                e.contains("bblp:<access code>@<printer ip>") && !e.contains("c0de1234"),
                "{e}"
            );
        }
        assert!(parse("rtsp://x").is_none());
    }

    #[test]
    fn fingerprints_with_any_characters_are_errors_not_panics() {
        let good = "ab".repeat(32);
        assert_eq!(parse_fingerprint(&good).unwrap(), [0xab; 32]);
        assert!(parse_fingerprint(&"AB:".repeat(32)).is_ok());
        // 61 'a', one 'é' (two bytes), one 'a': 64 bytes, with 'é' straddling a digit pair.
        let tricky = format!("{}é{}", "a".repeat(61), "a");
        assert_eq!(tricky.len(), 64);
        assert!(parse_fingerprint(&tricky).is_err());
        assert!(parse_fingerprint(&"é".repeat(32)).is_err());
        assert!(parse_fingerprint(&"zz".repeat(32)).is_err());
    }

    #[test]
    fn login_packet_layout() {
        let p = auth_packet("12345678");
        assert_eq!(&p[0..16], &[0x40, 0, 0, 0, 0, 0x30, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&p[16..20], b"bblp");
        assert!(p[20..48].iter().all(|&b| b == 0));
        assert_eq!(&p[48..56], b"12345678");
        assert!(p[56..80].iter().all(|&b| b == 0));
    }

    #[test]
    fn fingerprints() {
        let hex = "AB:CD:".to_string() + &"00".repeat(30);
        let f = parse_fingerprint(&hex).unwrap();
        assert_eq!((f[0], f[1], f[31]), (0xab, 0xcd, 0));
        assert!(parse_fingerprint("abc").is_err());
    }
}
