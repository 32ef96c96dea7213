//! Small helpers every part may use, none of which knows farmcam's cameras: back-off, a
//! histogram, log rate limits, secret redaction, time, host:port parsing, TLS trust anchors and
//! a tiny HTTP client. Nothing here imports anything else of farmcam.

pub mod backoff;
pub mod histogram;
pub mod hostport;
pub mod http_client;
pub mod log_limit;
pub mod redact;
pub mod tls_roots;
pub mod unix_time;
