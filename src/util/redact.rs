//! Keeping secrets out of logs, status and errors.

/// Every URL in `s` with its `user:password@` part replaced by `***@` (the user is hidden too: for
/// printers the "user" is often fixed and the access code is the secret, but some put the code
/// there). Works on a bare URL and on free text such as a line ffmpeg printed, and on passwords
/// that contain `#`, `/`, `?` or `@` without percent-encoding (generated passwords do).
pub fn url(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(sep) = rest.find("://") {
        let start = sep + 3;
        let after = &rest[start..];
        let token = &after[..token_end(after)];
        out.push_str(&rest[..start]);
        match userinfo_at(token) {
            Some(at) => {
                out.push_str("***@");
                out.push_str(&token[at + 1..]);
            }
            None => out.push_str(token),
        }
        rest = &after[token.len()..];
    }
    out.push_str(rest);
    out
}

/// Where a URL (after `scheme://`) ends in free text.
fn token_end(after: &str) -> usize {
    after
        .find(|c: char| matches!(c, '\'' | '"' | '<' | '>') || c.is_whitespace())
        .unwrap_or(after.len())
}

/// The `@` that ends the user-info part of a URL token (after `scheme://`), if it has one. The
/// last `@` counts, as long as what precedes it can be user info: no `/` at all, or a `:` before
/// the first `/` that is not a port (`host:554/path@x` has no user info).
fn userinfo_at(token: &str) -> Option<usize> {
    let at = token.rfind('@')?;
    let before = &token[..at];
    let userinfo = match (before.find(':'), before.find('/')) {
        (_, None) => true,
        (Some(colon), Some(slash)) if colon < slash => {
            !before[colon + 1..slash].chars().all(|c| c.is_ascii_digit())
        }
        _ => false,
    };
    userinfo.then_some(at)
}

/// The `host[:port]` of what follows a URL's `scheme://`: after the user info (which may contain
/// `/`, `?`, `#` and `@`), up to the path, query or fragment.
pub fn host_port(after_scheme: &str) -> &str {
    let token = &after_scheme[..token_end(after_scheme)];
    let rest = match userinfo_at(token) {
        Some(at) => &token[at + 1..],
        None => token,
    };
    &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())]
}

/// The password of a URL's `user:password@` part (and its percent-decoded form), so that text a
/// tool prints about the URL in other shapes can be scrubbed too. Short values are not returned:
/// replacing every "1" in a log line would hide nothing and garble everything.
/// Whether `url` carries credentials (`user:password@` or `token@`), however short: such a URL
/// never goes on a command line, even when its password is too short to scrub from text.
pub fn has_credentials(url: &str) -> bool {
    let Some(sep) = url.find("://") else {
        return false;
    };
    let after = &url[sep + 3..];
    userinfo_at(&after[..token_end(after)]).is_some_and(|at| at > 0)
}

pub fn secrets_of(url: &str) -> Vec<String> {
    let Some(sep) = url.find("://") else {
        return Vec::new();
    };
    let after = &url[sep + 3..];
    let token = &after[..token_end(after)];
    let Some(at) = userinfo_at(token) else {
        return Vec::new();
    };
    let userinfo = &token[..at];
    let password = userinfo.split_once(':').map(|(_, p)| p).unwrap_or(userinfo);
    let mut out = Vec::new();
    for s in [password.to_string(), percent_decode(password)] {
        if s.chars().count() >= 4 && !out.contains(&s) {
            out.push(s);
        }
    }
    out
}

/// `s` with every URL redacted and every occurrence of `secrets` replaced by `***`.
pub fn scrub(s: &str, secrets: &[String]) -> String {
    let mut out = url(s);
    for secret in secrets {
        if out.contains(secret.as_str()) {
            out = out.replace(secret.as_str(), "***");
        }
    }
    out
}

/// `s` with every occurrence of `secret`, in any ASCII letter case, replaced by `***` (an
/// empty secret changes nothing).
pub fn replace_ignoring_case(s: &str, secret: &str) -> String {
    if secret.is_empty() || secret.len() > s.len() {
        return s.to_string();
    }
    let (hay, needle) = (s.to_ascii_lowercase(), secret.to_ascii_lowercase());
    let mut out = String::with_capacity(s.len());
    let mut at = 0;
    while let Some(i) = hay[at..].find(&needle) {
        out.push_str(&s[at..at + i]);
        out.push_str("***");
        at += i + needle.len();
    }
    out.push_str(&s[at..]);
    out
}

pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = |c: u8| (c as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_removed() {
        assert_eq!(
            url("rtsps://bblp:12345678@10.0.0.2:322/streaming/live/1"),
            "rtsps://***@10.0.0.2:322/streaming/live/1"
        );
        assert_eq!(url("rtsp://cam/x@y"), "rtsp://cam/x@y");
        assert_eq!(url("test:"), "test:");
        assert_eq!(url("http://u:p@w@h/"), "http://***@h/");
        // Generated passwords with URL characters in them, not percent-encoded.
        assert_eq!(
            url("rtsp://admin:Rtsp#HashS3cret@127.0.0.1:18654/cam"),
            "rtsp://***@127.0.0.1:18654/cam"
        );
        assert_eq!(url("rtsp://u:a/b?c#d@h:554/s"), "rtsp://***@h:554/s");
        assert_eq!(
            url("rtsp://host:554/cam@2"),
            "rtsp://host:554/cam@2",
            "a port, not a password"
        );
        assert_eq!(url("rtsp://tok#en@h/"), "rtsp://***@h/");
    }

    #[test]
    fn urls_inside_text_are_redacted() {
        assert_eq!(
            url("Input #0, rtsp, from 'rtsps://bblp:code@10.0.0.2:322/live':"),
            "Input #0, rtsp, from 'rtsps://***@10.0.0.2:322/live':"
        );
        assert_eq!(
            url("a rtsp://u:p@h b http://x:y@z"),
            "a rtsp://***@h b http://***@z"
        );
        assert_eq!(url("no url here"), "no url here");
    }

    #[test]
    fn secrets_are_found_and_scrubbed() {
        let s = secrets_of("rtsps://bblp:ab%40cd12@10.0.0.2:322/x");
        assert_eq!(s, vec!["ab%40cd12".to_string(), "ab@cd12".to_string()]);
        assert_eq!(scrub("auth ab@cd12 failed", &s), "auth *** failed");
        assert!(secrets_of("rtsp://10.0.0.2/x").is_empty());
        assert!(secrets_of("rtsp://u:123@h/").is_empty());
    }
}
