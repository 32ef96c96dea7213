//! Value parsers shared by every section: ids, durations, sizes, byte counts, bounded numbers and
//! addresses. Each error is one line naming the fix.

use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::diag::Validator;
use crate::frame::Size;

/// A password, token or API key: shown as `***` by `Debug`, so no configuration dump can leak it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// `[a-z0-9][a-z0-9_-]*`, at most 64 characters.
pub fn valid_id(id: &str) -> bool {
    let mut chars = id.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c.is_ascii_digit())
        && id.len() <= 64
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

/// `http://HOST[:PORT]` (a trailing slash allowed, nothing else after the authority) → the URL
/// without the slash, the host and the port (`default_port` when not given).
pub fn parse_http_base(url: &str, default_port: u16) -> Option<(String, String, u16)> {
    let url = url.trim().trim_end_matches('/');
    let rest = url.strip_prefix("http://")?;
    let (host, port) = crate::util::hostport::split(rest)?;
    (!host.is_empty() && !host.contains(['/', '@', '?', '#']))
        .then(|| (url.to_string(), host.to_string(), port.unwrap_or(default_port)))
}

/// Human durations: "250ms", "5s", "2m", "1h 30m". Zero is allowed (e.g. no idle grace).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("{s:?} is not a duration ({e}); write e.g. \"250ms\", \"5s\" or \"2m\""))
}

/// "1280x720".
pub fn parse_size(s: &str) -> Result<Size, String> {
    let bad = || format!("{s:?} is not a size; write WIDTHxHEIGHT, e.g. \"1280x720\" (16..7680 x 16..4320)");
    let (w, h) = s.trim().split_once(['x', 'X']).ok_or_else(bad)?;
    let width: u32 = w.trim().parse().map_err(|_| bad())?;
    let height: u32 = h.trim().parse().map_err(|_| bad())?;
    if !(16..=7680).contains(&width) || !(16..=4320).contains(&height) {
        return Err(bad());
    }
    Ok(Size { width, height })
}

/// A byte count as written: a whole number, or a string like "512KiB".
#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum IntOrString {
    Int(i64),
    Str(String),
}

/// A byte count: a whole number, or a string like "512KiB", "8MiB", "8MB", within `range`
/// (whose bounds the message names as `range_text`). Never overflows: a number too large for
/// any range is out of range.
pub(super) fn parse_bytes(
    v: &IntOrString,
    range: RangeInclusive<u64>,
    range_text: &str,
) -> Result<usize, String> {
    let n = parse_bytes_u64(v, range, range_text)?;
    usize::try_from(n).map_err(|_| format!("must be {range_text}"))
}

/// [`parse_bytes`] for sizes beyond what a 32-bit box addresses (disk budgets); also "T"/"TiB".
pub(super) fn parse_bytes_u64(
    v: &IntOrString,
    range: RangeInclusive<u64>,
    range_text: &str,
) -> Result<u64, String> {
    let out_of_range = || format!("must be {range_text}");
    let n: u64 = match v {
        IntOrString::Int(n) => u64::try_from(*n).map_err(|_| out_of_range())?,
        IntOrString::Str(s) => {
            let bad = || format!("{s:?} is not a size in bytes; write e.g. \"8MiB\" or \"512KiB\"");
            let t = s.trim();
            let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
            let (num, unit) = t.split_at(split);
            let mult: u64 = match unit.trim() {
                "" | "B" => 1,
                "K" | "KB" | "KiB" | "k" | "kB" => 1 << 10,
                "M" | "MB" | "MiB" => 1 << 20,
                "G" | "GB" | "GiB" => 1 << 30,
                "T" | "TB" | "TiB" => 1 << 40,
                _ => return Err(bad()),
            };
            if num.is_empty() {
                return Err(bad());
            }
            num.parse::<u64>()
                .ok()
                .and_then(|n| n.checked_mul(mult))
                .ok_or_else(out_of_range)?
        }
    };
    if !range.contains(&n) {
        return Err(out_of_range());
    }
    Ok(n)
}

/// A whole number within `range`, converted to the type the setting is kept in.
pub(super) fn in_range<T: TryFrom<i64>>(n: i64, range: RangeInclusive<i64>) -> Option<T> {
    range.contains(&n).then(|| T::try_from(n).ok()).flatten()
}

impl Validator<'_> {
    /// A duration key, or `default` when absent (also after reporting a bad value).
    pub fn duration(&mut self, raw: &Option<Spanned<String>>, key: &str, default: Duration) -> Duration {
        let Some(s) = raw else { return default };
        match parse_duration(s.get_ref()) {
            Ok(d) => d,
            Err(msg) => {
                self.problem(Some(s.span()), key, &msg);
                default
            }
        }
    }

    /// A duration key within `range` (`message` says what is allowed), or `default` when absent
    /// (also after reporting a bad or out-of-range value).
    pub fn duration_within(
        &mut self,
        raw: &Option<Spanned<String>>,
        key: &str,
        default: Duration,
        range: RangeInclusive<Duration>,
        message: &str,
    ) -> Duration {
        let d = self.duration(raw, key, default);
        if range.contains(&d) {
            return d;
        }
        self.problem(raw.as_ref().map(|s| s.span()), key, message);
        default
    }

    /// A whole-number key within `range` (`message` says what is allowed); `None` when absent
    /// or bad (reported).
    pub fn int<T: TryFrom<i64>>(
        &mut self,
        raw: &Option<Spanned<i64>>,
        key: &str,
        range: RangeInclusive<i64>,
        message: &str,
    ) -> Option<T> {
        let n = raw.as_ref()?;
        let v = in_range(*n.get_ref(), range);
        if v.is_none() {
            self.problem(Some(n.span()), key, message);
        }
        v
    }

    /// A byte-count key within `range`, or `default`.
    pub fn bytes(
        &mut self,
        raw: &Option<Spanned<IntOrString>>,
        key: &str,
        range: RangeInclusive<u64>,
        range_text: &str,
        default: usize,
    ) -> usize {
        let Some(m) = raw else { return default };
        parse_bytes(m.get_ref(), range, range_text).unwrap_or_else(|msg| {
            self.problem(Some(m.span()), key, &msg);
            default
        })
    }

    pub fn addr(&mut self, s: &str, span: std::ops::Range<usize>, key: &str) -> Option<SocketAddr> {
        match s.parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                self.problem(
                    Some(span),
                    key,
                    &format!("{s:?} is not an address:port (write e.g. \"127.0.0.1:8080\" or \"0.0.0.0:8081\" or \"[::]:8080\")"),
                );
                None
            }
        }
    }
}

/// An `h264_bitrate`: bits per second as a number, or with `k` or `M` (`"1.5M"`, `"800k"`).
pub(super) fn parse_bitrate(v: &IntOrString) -> Result<u32, String> {
    let shown = match v {
        IntOrString::Int(n) => n.to_string(),
        IntOrString::Str(s) => format!("{s:?}"),
    };
    let bad = || {
        format!(
            "{shown} is not a bitrate; use bits per second between 100k and 50M, e.g. \"1.5M\" or \"800k\""
        )
    };
    let bits = match v {
        IntOrString::Int(n) => *n as f64,
        IntOrString::Str(s) => {
            let s = s.trim();
            let (num, mult) = match s.strip_suffix(['M', 'm']) {
                Some(n) => (n, 1e6),
                None => match s.strip_suffix(['k', 'K']) {
                    Some(n) => (n, 1e3),
                    None => (s, 1.0),
                },
            };
            num.trim().parse::<f64>().map_err(|_| bad())? * mult
        }
    };
    if !(100_000.0..=50_000_000.0).contains(&bits) {
        return Err(bad());
    }
    Ok(bits as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_durations() {
        assert!(
            valid_id("printer-1") && valid_id("0_a") && !valid_id("-a") && !valid_id("A") && !valid_id("")
        );
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("5").is_err());
    }

    #[test]
    fn byte_counts_never_overflow_into_range() {
        let r = 64 * 1024..=256 * 1024 * 1024;
        let s = |t: &str| parse_bytes(&IntOrString::Str(t.into()), r.clone(), "in range");
        assert_eq!(s("512KiB").unwrap(), 512 * 1024);
        assert_eq!(s("8MiB").unwrap(), 8 << 20);
        // 2^64 / 2^20 + 8: multiplying by MiB wraps to 8 MiB in u64; it must be refused.
        let wraps = (u64::MAX / (1 << 20) + 9).to_string() + "MiB";
        assert_eq!(s(&wraps).unwrap_err(), "must be in range");
        assert_eq!(s("99999999999999999999999KiB").unwrap_err(), "must be in range");
        assert!(s("MiB").unwrap_err().contains("not a size in bytes"));
        assert!(s("8 parsecs").unwrap_err().contains("not a size in bytes"));
        assert_eq!(
            parse_bytes(&IntOrString::Int(-1), r.clone(), "in range").unwrap_err(),
            "must be in range"
        );
    }

    #[test]
    fn bounded_numbers() {
        assert_eq!(in_range::<u8>(100, 1..=100), Some(100));
        assert_eq!(in_range::<u8>(0, 1..=100), None);
        assert_eq!(in_range::<u8>(300, 0..=1000), None, "does not fit the type");
    }
}
