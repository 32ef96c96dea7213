//! MQTT connection options: identity, credentials, last will, and TLS (a CA file or the
//! system's store, and an optional client certificate), checked before connecting.

use std::sync::Arc;

use rumqttc::{LastWill, MqttOptions, QoS, TlsConfiguration, Transport};

use super::topics::Topics;
use super::KEEP_ALIVE;
use crate::config::MqttConfig;

/// Check everything that can be checked before connecting (TLS files); one line on error.
pub fn options(c: &MqttConfig) -> Result<MqttOptions, String> {
    let topics = Topics::new(c);
    let mut o = MqttOptions::new(&c.client_id, &c.host, c.port);
    o.set_keep_alive(KEEP_ALIVE)
        .set_clean_session(true)
        .set_max_packet_size(c.max_packet_size, c.max_packet_size)
        .set_last_will(LastWill::new(topics.status(), "offline", QoS::AtLeastOnce, true));
    if let Some(user) = &c.username {
        let password = c.password.as_ref().map(|p| p.0.clone()).unwrap_or_default();
        o.set_credentials(user, password);
    }
    if c.tls {
        o.set_transport(Transport::Tls(TlsConfiguration::Rustls(Arc::new(tls_config(c)?))));
    }
    Ok(o)
}

fn tls_config(c: &MqttConfig) -> Result<rustls::ClientConfig, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let roots = crate::util::tls_roots::roots(c.ca_file.as_deref(), "mqtt.ca_file")?;
    let builder = crate::util::tls_roots::builder(roots, "mqtt")?;
    match &c.client_auth {
        None => Ok(builder.with_no_client_auth()),
        Some((cert, key)) => {
            let chain: Vec<CertificateDer> = CertificateDer::pem_file_iter(cert)
                .and_then(|it| it.collect::<Result<_, _>>())
                .map_err(|e| format!("mqtt.client_cert: cannot read {}: {e}", cert.display()))?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| format!("mqtt.client_key: cannot read {}: {e}", key.display()))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("mqtt.client_cert: {e}"))
        }
    }
}
