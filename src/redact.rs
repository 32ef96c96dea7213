//! Keeping secrets out of logs, status and errors.

/// A URL with any `user:password@` part replaced by `***@` (the user is hidden too: for printers
/// the "user" is often fixed and the access code is the secret, but some put the code there).
pub fn url(s: &str) -> String {
    let Some(scheme_end) = s.find("://") else {
        return s.to_string();
    };
    let rest = &s[scheme_end + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{}://***@{}", &s[..scheme_end], &rest[at + 1..]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn credentials_are_removed() {
        assert_eq!(
            super::url("rtsps://bblp:12345678@10.0.0.2:322/streaming/live/1"),
            "rtsps://***@10.0.0.2:322/streaming/live/1"
        );
        assert_eq!(super::url("rtsp://cam/x@y"), "rtsp://cam/x@y");
        assert_eq!(super::url("test:"), "test:");
        assert_eq!(super::url("http://u:p@w@h/"), "http://***@h/");
    }
}
