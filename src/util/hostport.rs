//! `HOST[:PORT]` as URLs, `Host` headers and configuration write it, IPv6 in brackets: the one
//! place that splits an authority into host and port.

/// `("host", Some(port))`, `("host", None)` without a port, `("::1", …)` for `[::1]…` (brackets
/// removed); `None` when the port is not a number or a bracket is unclosed.
pub fn split(authority: &str) -> Option<(&str, Option<u16>)> {
    if let Some(v6) = authority.strip_prefix('[') {
        let (host, rest) = v6.split_once(']')?;
        return match rest {
            "" => Some((host, None)),
            _ => Some((host, Some(rest.strip_prefix(':')?.parse().ok()?))),
        };
    }
    match authority.rsplit_once(':') {
        // More than one ':' without brackets: a bare IPv6 address, no port.
        Some((host, _)) if host.contains(':') => Some((authority, None)),
        Some((host, port)) => Some((host, Some(port.parse().ok()?))),
        None => Some((authority, None)),
    }
}

#[cfg(test)]
mod tests {
    use super::split;

    #[test]
    fn hosts_ports_and_brackets() {
        assert_eq!(split("farm.local:8080"), Some(("farm.local", Some(8080))));
        assert_eq!(split("farm.local"), Some(("farm.local", None)));
        assert_eq!(split("[::1]:8554"), Some(("::1", Some(8554))));
        assert_eq!(split("[::1]"), Some(("::1", None)));
        assert_eq!(split("::1"), Some(("::1", None)));
        assert_eq!(split("host:port"), None);
        assert_eq!(split("host:99999"), None);
        assert_eq!(split("[::1"), None);
        assert_eq!(split(""), Some(("", None)));
    }
}
