//! Trust anchors for farmcam's TLS clients (MQTT, Prusa Connect): a CA file, or the system's
//! store; and the one way their client configurations are built (ring, safe protocol versions).

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

/// The certificates in `ca_file`, else the system's; `key` names the setting in errors
/// (`mqtt.ca_file`).
pub fn roots(ca_file: Option<&Path>, key: &str) -> Result<rustls::RootCertStore, String> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let shown = path.display();
            let certs: Vec<CertificateDer> = CertificateDer::pem_file_iter(path)
                .and_then(|it| it.collect::<Result<_, _>>())
                .map_err(|e| format!("{key}: cannot read certificates from {shown}: {e}"))?;
            if certs.is_empty() {
                return Err(format!("{key}: no PEM certificate in {shown}"));
            }
            for cert in certs {
                roots
                    .add(cert)
                    .map_err(|e| format!("{key}: unusable certificate in {shown}: {e}"))?;
            }
        }
        None => {
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
            if roots.is_empty() {
                return Err(format!(
                    "{key}: no system CA certificates found (apt install ca-certificates); or set {key}"
                ));
            }
        }
    }
    Ok(roots)
}

/// A client configuration builder checking servers against `roots`.
pub fn builder(
    roots: rustls::RootCertStore,
    what: &str,
) -> Result<rustls::ConfigBuilder<rustls::ClientConfig, rustls::client::WantsClientCert>, String> {
    Ok(
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("{what}: TLS setup: {e}"))?
            .with_root_certificates(roots),
    )
}
