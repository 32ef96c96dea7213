//! Diagnostics: every problem as `PATH:LINE:COL: key: message`, with secrets never quoted.

use std::ops::Range;
use std::path::PathBuf;

/// Collects the problems of one file while its sections are validated.
pub(super) struct Validator<'a> {
    pub text: &'a str,
    pub path: PathBuf,
    pub problems: Vec<String>,
}

/// Keys whose values may hold a password, an access code or a URL with credentials.
const SECRET_KEYS: [&str; 7] = [
    "password",
    "source",
    "url",
    "ffmpeg_args",
    "tls_fingerprint",
    "api_key",
    "token",
];

impl<'a> Validator<'a> {
    pub fn new(text: &'a str, path: PathBuf) -> Self {
        Validator {
            text,
            path,
            problems: Vec::new(),
        }
    }

    /// One problem at `span` (the start of the file when unknown), naming `key` when given.
    pub fn problem(&mut self, span: Option<Range<usize>>, key: &str, message: &str) {
        let (line, col) = span.map(|s| line_col(self.text, s.start)).unwrap_or((1, 1));
        let key = if key.is_empty() {
            String::new()
        } else {
            format!("{key}: ")
        };
        self.problems
            .push(format!("{}:{line}:{col}: {key}{message}", self.path.display()));
    }

    /// A syntax or type error from the TOML reader, as one problem line.
    pub fn toml_error(&mut self, e: &toml::de::Error) {
        let msg = e
            .message()
            .trim()
            .replace('\n', " ")
            .replace("i64", "a whole number");
        let key = e
            .span()
            .and_then(|s| key_at(self.text, s.start))
            .unwrap_or_default();
        // Type errors quote the value (`invalid type: integer `12345678``): never for keys
        // that may hold a secret.
        let msg = if SECRET_KEYS.iter().any(|k| key.ends_with(k)) {
            hide_quoted(&msg)
        } else {
            msg
        };
        self.problem(e.span(), &key, &msg);
    }
}

/// `a `secret` b` → `a *** b`.
fn hide_quoted(msg: &str) -> String {
    let mut out = String::new();
    for (i, part) in msg.split('`').enumerate() {
        out.push_str(if i % 2 == 1 { "***" } else { part });
    }
    out
}

/// The dotted key whose value starts at `offset` (e.g. `camera[1].fps`), for parse errors that
/// only carry a position.
fn key_at(text: &str, offset: usize) -> Option<String> {
    let offset = floor_char_boundary(text, offset);
    let line_start = text[..offset].rfind('\n').map(|i| i + 1).unwrap_or(0);
    let line = &text[line_start..];
    let line = &line[..line.find('\n').unwrap_or(line.len())];
    let eq = line.find('=')?;
    if line_start + eq >= offset {
        return None;
    }
    let key = line[..eq].trim();
    if key.is_empty()
        || !key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return None;
    }
    // The enclosing table: the last header before this line; arrays of tables are numbered.
    let before = &text[..line_start];
    let header = before.lines().rev().map(str::trim).find(|l| l.starts_with('['));
    Some(match header {
        None => key.to_string(),
        Some(h) if h.starts_with("[[") => {
            let name = h.trim_matches(|c| c == '[' || c == ']').trim();
            let index = before
                .lines()
                .filter(|l| l.trim().starts_with("[[") && l.contains(name))
                .count()
                .saturating_sub(1);
            format!("{name}[{index}].{key}")
        }
        Some(h) => format!("{}.{key}", h.trim_matches(|c| c == '[' || c == ']').trim()),
    })
}

/// 1-based line and column (in characters) of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..floor_char_boundary(text, offset)];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    (line, before[line_start..].chars().count() + 1)
}

/// The largest char boundary at or before `offset` (spans come from another parser).
fn floor_char_boundary(text: &str, offset: usize) -> usize {
    let mut i = offset.min(text.len());
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_in_characters_and_never_split_one() {
        let text = "a = \"é\"\nb = 1\n";
        assert_eq!(line_col(text, 0), (1, 1));
        assert_eq!(line_col(text, 6), (1, 6), "inside 'é' counts as its start");
        assert_eq!(line_col(text, text.find('b').unwrap()), (2, 1));
        assert_eq!(line_col(text, 999), (3, 1));
    }

    #[test]
    fn keys_are_found_with_their_table() {
        let text = "[http]\nlisten = 1\n[[camera]]\nid = 2\n[[camera]]\nfps = 3\n";
        assert_eq!(key_at(text, text.find('1').unwrap()).unwrap(), "http.listen");
        assert_eq!(key_at(text, text.find('3').unwrap()).unwrap(), "camera[1].fps");
        assert_eq!(
            hide_quoted("invalid type: integer `1234`, expected"),
            "invalid type: integer ***, expected"
        );
    }
}
