//! Test certificates made with openssl: a self-signed one, and a small CA.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, OnceLock};

/// A self-signed certificate and key (PEM), made once per test process with openssl.
pub fn test_certificate() -> (&'static Path, &'static Path) {
    static CERT: OnceLock<(tempfile::TempDir, PathBuf, PathBuf)> = OnceLock::new();
    let (_, cert, key) = CERT.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        openssl(
            dir.path(),
            "req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=01P00A000000000 -keyout key.pem -out cert.pem",
        );
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        (dir, cert, key)
    });
    (cert, key)
}

/// Run openssl in `dir` with space-separated arguments (none of them contain spaces).
fn openssl(dir: &Path, args: &str) {
    let ok = Command::new("openssl")
        .args(args.split(' '))
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("openssl runs (packaging/dev.sh deps installs it)");
    assert!(ok.success(), "openssl {args}");
}

/// A test CA, a server certificate it signed for 127.0.0.1 and a client certificate, written to
/// `dir` as ca.pem, server.pem, server.key, client.pem and client.key.
pub fn test_ca(dir: &Path) {
    for args in [
        "req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=farmcam-test-CA -keyout ca.key -out ca.pem",
        "req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1,DNS:localhost \
         -keyout server.key -out server.csr",
        "x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -copy_extensions copyall \
         -out server.pem",
        "req -newkey rsa:2048 -nodes -subj /CN=farmcam-client -addext extendedKeyUsage=clientAuth \
         -keyout client.key -out client.csr",
        "x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -copy_extensions copyall \
         -out client.pem",
    ] {
        openssl(dir, args);
    }
}

/// A TLS server configuration (ring) presenting `cert` (PEM chain) with `key`.
pub fn server_config(cert: &Path, key: &Path) -> Arc<rustls::ServerConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain: Vec<CertificateDer> = CertificateDer::pem_file_iter(cert)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(key).unwrap();
    let config =
        rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
    Arc::new(config)
}
