//! Config text → [`model::File`], with errors that name the file, line, column and key.
//!
//! toml reports a byte span and a message but not the key path (toml_edit tracks the keys and
//! only prints them when it has no source text to show). So the path is rebuilt here from the
//! span by [`key_path_at`], a small tolerant scanner of the TOML text, and validation reuses
//! [`Source::error_at`] with the spans kept in the model.

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;

use super::model;

/// One error in a config file, pointing at what the user wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    pub file: String,
    /// 1-based.
    pub line: usize,
    /// 1-based, in characters.
    pub column: usize,
    /// The dotted path a user would grep for: `listen.https`, `routes[2].rate_limit.rate`.
    /// Array indices are 0-based, in file order.
    pub key: Option<String>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            // About the file as a whole (unreadable): no position to give.
            write!(f, "{}: ", self.file)?;
        } else {
            write!(f, "{}:{}:{}: ", self.file, self.line, self.column)?;
        }
        if let Some(key) = &self.key {
            write!(f, "{key}: ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Every error found in one config, one per line when displayed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            e.fmt(f)?;
        }
        Ok(())
    }
}

impl From<ConfigError> for ConfigErrors {
    fn from(e: ConfigError) -> Self {
        ConfigErrors(vec![e])
    }
}

/// The text of one config file and the name to show in its errors.
#[derive(Debug, Clone)]
pub struct Source {
    pub file: String,
    pub text: String,
}

impl Source {
    pub fn new(file: impl Into<String>, text: String) -> Self {
        Source {
            file: file.into(),
            text,
        }
    }

    /// Parses the text into the raw model. toml stops at the first error, so this returns one.
    pub fn parse(&self) -> Result<model::File, ConfigErrors> {
        toml::from_str(&self.text).map_err(|e| self.toml_error(&e).into())
    }

    /// An error at a span of the text (from [`toml::Spanned::span`]). An empty `key` means none.
    pub fn error_at(
        &self,
        span: Range<usize>,
        key: &str,
        message: impl Into<String>,
    ) -> ConfigError {
        let (line, column) = self.position(span.start);
        self.error(line, column, non_empty(key), message.into())
    }

    /// Where a dotted key such as `client.max_header_bytes` is written: the `key =` line inside
    /// its `[table]`, else the table's header, else the start of the file. For values that
    /// carry no span of their own (plain types, defaults).
    pub fn span_of_key(&self, dotted: &str) -> Range<usize> {
        let (table, key) = dotted.rsplit_once('.').unwrap_or(("", dotted));
        let mut current = String::new();
        let mut table_start = None;
        let mut offset = 0;
        for line in self.text.split_inclusive('\n') {
            let trimmed = line.trim();
            if let Some(header) = trimmed.strip_prefix('[') {
                current = header
                    .trim_matches(|c| c == '[' || c == ']')
                    .trim()
                    .to_string();
                if current == table && table_start.is_none() {
                    table_start = Some(offset);
                }
            } else if current == table {
                if let Some(after) = trimmed.strip_prefix(key) {
                    if after.trim_start().starts_with('=') {
                        let indent = line.len() - line.trim_start().len();
                        return offset + indent..offset + line.trim_end().len();
                    }
                }
            }
            offset += line.len();
        }
        table_start.map_or(0..0, |start| start..start)
    }

    /// An error when only the line is known (column 1). An empty `key` means none.
    pub fn error_at_line(&self, line: usize, key: &str, message: impl Into<String>) -> ConfigError {
        self.error(line.max(1), 1, non_empty(key), message.into())
    }

    fn error(
        &self,
        line: usize,
        column: usize,
        key: Option<String>,
        message: String,
    ) -> ConfigError {
        ConfigError {
            file: self.file.clone(),
            line,
            column,
            key: key.map(escape_controls),
            message: escape_controls(message),
        }
    }

    fn toml_error(&self, e: &toml::de::Error) -> ConfigError {
        // Syntax errors come as "invalid table header\nexpected `.`, `]`": keep one line.
        let message = e
            .message()
            .trim()
            .lines()
            .map(str::trim)
            .collect::<Vec<_>>()
            .join("; ");
        // toml has no text for some syntax errors (a control character in a comment, found by
        // fuzzing): `check` must still say what is wrong.
        let message = if message.is_empty() {
            "invalid TOML syntax".to_string()
        } else {
            message
        };
        let Some(span) = e.span() else {
            return self.error(1, 1, missing_field(&message).map(str::to_owned), message);
        };
        let (line, column) = self.position(span.start);
        // serde errors about the root table (a missing `[listen]`) come with the empty span 0..0.
        let root = span == (0..0);
        let mut key = if root {
            None
        } else {
            key_path_at(&self.text, span.start).or_else(|| self.key_on_line(line))
        };
        // "missing field `x`" spans the table that lacks it: name the key that should be there.
        if let Some(field) = missing_field(&message) {
            key = Some(match key {
                Some(table) => format!("{table}.{field}"),
                None => field.to_owned(),
            });
        }
        self.error(line, column, key, message)
    }

    /// The key written on a line (`key = …`), when the path scan found nothing.
    fn key_on_line(&self, line: usize) -> Option<String> {
        let text = self.text.lines().nth(line - 1)?;
        let (key, _) = text.split_once('=')?;
        non_empty(key.trim())
    }

    /// 1-based line and character column of a byte offset.
    fn position(&self, offset: usize) -> (usize, usize) {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        (line, before[line_start..].chars().count() + 1)
    }
}

/// Control characters the text put in a key or message (`"a\nb"`, a raw CR) are shown escaped,
/// so each error stays on one line of `check`'s output (found by fuzzing).
fn escape_controls(text: String) -> String {
    if !text.contains(char::is_control) {
        return text;
    }
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

fn non_empty(key: &str) -> Option<String> {
    (!key.is_empty()).then(|| key.to_owned())
}

/// `x` from serde's "missing field `x`".
fn missing_field(message: &str) -> Option<&str> {
    message.strip_prefix("missing field `")?.split('`').next()
}

/// The dotted key path of the TOML element at byte `offset`: the key, table header, or array
/// element that starts last at or before it (`routes[1].rate_limit.rate`, `client.trusted_proxies[0]`).
///
/// Best effort, for error messages: it scans the text the way a TOML parser would (headers,
/// dotted and quoted keys, strings, inline tables, arrays, comments) but never fails; on
/// broken input it names the last key it understood.
pub fn key_path_at(text: &str, offset: usize) -> Option<String> {
    let mut scan = Scanner {
        s: text.as_bytes(),
        pos: 0,
        target: offset,
        stop: false,
        found: None,
        aot: HashMap::new(),
    };
    scan.document();
    scan.found
}

struct Scanner<'a> {
    s: &'a [u8],
    pos: usize,
    target: usize,
    /// Set once an element starts after `target`: nothing later can contain it.
    stop: bool,
    found: Option<String>,
    /// Elements seen so far of each array of tables, by its path (`routes`, `routes[1].x`).
    aot: HashMap<String, usize>,
}

impl Scanner<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn at(&self, lit: &[u8]) -> bool {
        self.s[self.pos.min(self.s.len())..].starts_with(lit)
    }

    /// Records that the element at `start` has this path.
    fn mark(&mut self, start: usize, path: String) {
        if start <= self.target {
            self.found = Some(path);
        } else {
            self.stop = true;
        }
    }

    fn document(&mut self) {
        let mut table = String::new();
        while !self.stop {
            self.skip_trivia(true);
            let start = self.pos;
            match self.peek() {
                None => break,
                Some(b'[') => table = self.header(),
                Some(_) => self.keyval(&table),
            }
            if self.pos == start {
                // Not TOML we understand: skip the line rather than loop.
                self.skip_line();
            }
            self.skip_trivia(false);
        }
    }

    /// `[a.b]` or `[[a.b]]`; returns the table path with array indices.
    fn header(&mut self) -> String {
        let start = self.pos;
        let array = self.at(b"[[");
        self.pos += if array { 2 } else { 1 };
        let keys = self.dotted_key();
        let mut path = String::new();
        for (i, key) in keys.iter().enumerate() {
            path = child(&path, key);
            let last = i + 1 == keys.len();
            if last && array {
                let n = self.aot.entry(path.clone()).or_insert(0);
                path = format!("{path}[{n}]");
                *n += 1;
            } else if let Some(n) = self.aot.get(&path) {
                // `[routes.x]` after `[[routes]]` belongs to the latest route.
                path = format!("{path}[{}]", n.saturating_sub(1));
            }
        }
        self.mark(start, path.clone());
        self.skip_line();
        path
    }

    /// `a.b = value`.
    fn keyval(&mut self, parent: &str) {
        let start = self.pos;
        let keys = self.dotted_key();
        if keys.is_empty() {
            return;
        }
        let path = keys.iter().fold(parent.to_owned(), |p, k| child(&p, k));
        self.mark(start, path.clone());
        self.skip_spaces();
        if self.peek() == Some(b'=') {
            self.pos += 1;
            self.skip_spaces();
            self.value(&path);
        }
    }

    fn value(&mut self, path: &str) {
        if self.stop {
            return;
        }
        match self.peek() {
            Some(b'"' | b'\'') => self.string(),
            Some(b'{') => {
                self.pos += 1;
                while !self.stop {
                    self.skip_trivia(true);
                    let before = self.pos;
                    match self.peek() {
                        None => return,
                        Some(b'}') => {
                            self.pos += 1;
                            return;
                        }
                        Some(b',') => self.pos += 1,
                        Some(_) => self.keyval(path),
                    }
                    if self.pos == before {
                        return;
                    }
                }
            }
            Some(b'[') => {
                self.pos += 1;
                let mut index = 0;
                while !self.stop {
                    self.skip_trivia(true);
                    let before = self.pos;
                    match self.peek() {
                        None => return,
                        Some(b']') => {
                            self.pos += 1;
                            return;
                        }
                        Some(b',') => {
                            self.pos += 1;
                            index += 1;
                        }
                        Some(_) => {
                            let element = format!("{path}[{index}]");
                            self.mark(self.pos, element.clone());
                            self.value(&element);
                        }
                    }
                    if self.pos == before {
                        return;
                    }
                }
            }
            // Numbers, booleans, dates (which may hold a space): up to a delimiter.
            _ => {
                while let Some(c) = self.peek() {
                    if matches!(c, b',' | b']' | b'}' | b'\n' | b'#') {
                        break;
                    }
                    self.pos += 1;
                }
            }
        }
    }

    /// A key made of bare or quoted parts separated by dots, rendered for display.
    fn dotted_key(&mut self) -> Vec<String> {
        let mut keys = Vec::new();
        loop {
            self.skip_spaces();
            let start = self.pos;
            let key = match self.peek() {
                Some(b'"' | b'\'') => {
                    self.string();
                    let inner = self
                        .s
                        .get(start + 1..self.pos.saturating_sub(1))
                        .unwrap_or_default();
                    render_key(&String::from_utf8_lossy(inner))
                }
                _ => {
                    while self.peek().is_some_and(is_bare) {
                        self.pos += 1;
                    }
                    String::from_utf8_lossy(&self.s[start..self.pos]).into_owned()
                }
            };
            if self.pos == start {
                return keys;
            }
            keys.push(key);
            self.skip_spaces();
            if self.peek() != Some(b'.') {
                return keys;
            }
            self.pos += 1;
        }
    }

    /// Any of the four string forms; stops at an unterminated single-line string's newline.
    fn string(&mut self) {
        let quote = self.s[self.pos];
        let multiline = self.at(&[quote; 3]);
        self.pos += if multiline { 3 } else { 1 };
        while let Some(c) = self.peek() {
            if c == b'\\' && quote == b'"' {
                self.pos += 2;
            } else if c == quote && (!multiline || self.at(&[quote; 3])) {
                self.pos += if multiline { 3 } else { 1 };
                // `""""` ends a multi-line string with a quote inside it.
                while multiline && self.peek() == Some(quote) {
                    self.pos += 1;
                }
                return;
            } else if c == b'\n' && !multiline {
                return;
            } else {
                self.pos += 1;
            }
        }
        self.pos = self.pos.min(self.s.len());
    }

    fn skip_spaces(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }

    /// Spaces and comments, and newlines too when `newlines`.
    fn skip_trivia(&mut self, newlines: bool) {
        loop {
            match self.peek() {
                Some(b' ' | b'\t' | b'\r') => self.pos += 1,
                Some(b'\n') if newlines => self.pos += 1,
                Some(b'#') => {
                    while self.peek().is_some_and(|c| c != b'\n') {
                        self.pos += 1;
                    }
                }
                _ => return,
            }
        }
    }

    fn skip_line(&mut self) {
        while self.peek().is_some_and(|c| c != b'\n') {
            if matches!(self.peek(), Some(b'"' | b'\'')) {
                self.string();
            } else {
                self.pos += 1;
            }
        }
    }
}

fn is_bare(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'-'
}

fn render_key(key: &str) -> String {
    if !key.is_empty() && key.bytes().all(is_bare) {
        key.to_owned()
    } else {
        format!("{key:?}")
    }
}

fn child(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LISTEN: &str = "[listen]\nhttps = \"0.0.0.0:8443\"\n";

    fn err(text: &str) -> ConfigError {
        let mut errors = Source::new("rampart.toml", text.to_owned())
            .parse()
            .map(|_| ())
            .unwrap_err()
            .0;
        assert_eq!(errors.len(), 1);
        errors.remove(0)
    }

    /// `(line, key)` of the error, and its message must contain `needle`.
    fn at(text: &str, needle: &str) -> (usize, Option<String>) {
        let e = err(text);
        assert!(e.message.contains(needle), "{e}");
        assert!(!e.message.contains('\n'), "{e}");
        (e.line, e.key)
    }

    fn key(k: &str) -> Option<String> {
        Some(k.to_owned())
    }

    #[test]
    fn design_example_parses_through_source() {
        let f = Source::new(
            "rampart.toml",
            crate::config::model::tests::DESIGN_EXAMPLE.to_owned(),
        )
        .parse()
        .unwrap();
        assert_eq!(f.routes.len(), 7);
    }

    #[test]
    fn display() {
        let e = ConfigError {
            file: "a.toml".into(),
            line: 3,
            column: 9,
            key: key("listen.https"),
            message: "bad".into(),
        };
        assert_eq!(e.to_string(), "a.toml:3:9: listen.https: bad");
        let e2 = ConfigError {
            key: None,
            line: 4,
            ..e.clone()
        };
        assert_eq!(e2.to_string(), "a.toml:4:9: bad");
        assert_eq!(
            ConfigErrors(vec![e, e2]).to_string(),
            "a.toml:3:9: listen.https: bad\na.toml:4:9: bad"
        );
    }

    #[test]
    fn error_at_span_and_line() {
        let src = Source::new("f.toml", "a = 1\n  é = \"x\"\n".to_owned());
        // Columns count characters, not bytes: `"x"` is the 7th character of `  é = "x"`.
        let e = src.error_at(13..16, "é", "nope");
        assert_eq!((e.line, e.column, e.key.as_deref()), (2, 7, Some("é")));
        assert_eq!(e.to_string(), "f.toml:2:7: é: nope");
        // Defaulted Spanned values have 0..0; out-of-range spans clamp instead of panicking.
        assert_eq!(src.error_at(0..0, "", "x").to_string(), "f.toml:1:1: x");
        assert_eq!((src.error_at(999..999, "k", "x").line), 3);
        assert_eq!(
            src.error_at_line(7, "routes[1]", "two actions").to_string(),
            "f.toml:7:1: routes[1]: two actions"
        );
    }

    #[test]
    fn unknown_key_top_level() {
        let text = format!("# top\nbogus = 1\n{LISTEN}");
        assert_eq!(at(&text, "unknown field `bogus`"), (2, key("bogus")));
        // After a header, a key belongs to that table.
        let text = format!("{LISTEN}\nbogus = 1\n");
        assert_eq!(at(&text, "unknown field `bogus`"), (4, key("listen.bogus")));
        let text = format!("{LISTEN}[bogus]\nx = 1\n");
        assert_eq!(at(&text, "unknown field `bogus`"), (3, key("bogus")));
    }

    #[test]
    fn unknown_key_in_listen() {
        let e = err("[listen]\nhttps = \":1\"\nhttp_port = 80\n");
        assert_eq!(
            (e.line, e.column, e.key.as_deref()),
            (3, 1, Some("listen.http_port"))
        );
        assert!(
            e.message
                .starts_with("unknown field `http_port`, expected one of"),
            "{e}"
        );
        assert!(
            e.to_string()
                .starts_with("rampart.toml:3:1: listen.http_port: unknown field"),
            "{e}"
        );
    }

    #[test]
    fn unknown_key_in_a_route() {
        let text = format!("{LISTEN}\n[[routes]]\nupstream = \"a\"\n\n[[routes]]\nupstream = \"a\"\n  pathh = \"/x\"\n");
        assert_eq!(
            at(&text, "unknown field `pathh`"),
            (9, key("routes[1].pathh"))
        );
    }

    #[test]
    fn unknown_key_in_inline_tables() {
        let text = format!("{LISTEN}[[routes]]\nupstream = \"a\"\nrate_limit = {{ rate = \"5/min\", brust = 3 }}\n");
        assert_eq!(
            at(&text, "unknown field `brust`"),
            (5, key("routes[0].rate_limit.brust"))
        );
        let text = format!("{LISTEN}[upstreams.app]\nservers = []\nhealth_check = {{ path = \"/\", intervall = \"1s\" }}\n");
        assert_eq!(
            at(&text, "unknown field `intervall`"),
            (5, key("upstreams.app.health_check.intervall"))
        );
        let text = format!(
            "{LISTEN}[[routes]]\nstatic = {{ root = \"/x\" }}\nheaders = {{ preset = \"off\" }}\n"
        );
        assert_eq!(
            at(&text, "unknown field `preset`"),
            (5, key("routes[0].headers.preset"))
        );
        let text = format!(
            "{LISTEN}[[tls.certificates]]\nhosts = []\ncert = \"a\"\nkey = \"b\"\nsni = 1\n"
        );
        assert_eq!(
            at(&text, "unknown field `sni`"),
            (7, key("tls.certificates[0].sni"))
        );
    }

    #[test]
    fn unknown_key_in_a_sub_table_of_a_route() {
        let text = format!("{LISTEN}[[routes]]\nupstream = \"a\"\n[[routes]]\nupstream = \"b\"\n[routes.cors]\nallow_origins = []\norigins = []\n");
        assert_eq!(
            at(&text, "unknown field `origins`"),
            (9, key("routes[1].cors.origins"))
        );
    }

    #[test]
    fn bad_values_name_line_and_key() {
        let text = format!("{LISTEN}[client]\nheader_timeout = \"10\"\n");
        assert_eq!(at(&text, "no unit"), (4, key("client.header_timeout")));
        let e = err(&text);
        assert_eq!(e.column, 18);
        let text = format!("{LISTEN}[client]\nmax_body = \"50 MiBs\"\n");
        assert_eq!(
            at(&text, "expected a size like"),
            (4, key("client.max_body"))
        );
        let text = format!("{LISTEN}[client]\nmax_body = 1024\n");
        assert_eq!(
            at(&text, "invalid type: integer `1024`, expected a size like"),
            (4, key("client.max_body"))
        );
        let text = format!("{LISTEN}[[routes]]\nupstream = \"a\"\n\n[[routes]]\nupstream = \"a\"\n[[routes]]\nupstream = \"a\"\nrate_limit = {{ rate = \"0/s\" }}\n");
        assert_eq!(
            at(&text, "a rate of 0 lets nothing through"),
            (10, key("routes[2].rate_limit.rate"))
        );
        let text = format!(
            "{LISTEN}[client]\ntrusted_proxies = [\n  \"10.0.0.0/8\",\n  \"10.0.0/8\",\n]\n"
        );
        assert_eq!(
            at(&text, "expected a CIDR"),
            (6, key("client.trusted_proxies[1]"))
        );
        let text = format!(
            "{LISTEN}[[routes]]\nupstream = \"a\"\nallow = [\"10.0.0.0/8\", \"127.0.0.1/33\"]\n"
        );
        assert_eq!(at(&text, "expected a CIDR"), (5, key("routes[0].allow[1]")));
        let text = "[listen]\nhttps = 8443\n";
        assert_eq!(at(text, "expected a string"), (2, key("listen.https")));
        let text = format!("{LISTEN}[headers]\nset = {{ \"X Bad\" = 1 }}\n");
        assert_eq!(at(&text, "invalid type"), (4, key("headers.set.\"X Bad\"")));
    }

    #[test]
    fn missing_keys_name_the_key() {
        assert_eq!(
            at("[listen]\nhttp = \":80\"\n", "missing field `https`"),
            (1, key("listen.https"))
        );
        assert_eq!(
            at("# nothing\n", "missing field `listen`"),
            (1, key("listen"))
        );
        assert_eq!(
            at("[client]\nmax_body = \"1MiB\"\n", "missing field `listen`"),
            (1, key("listen"))
        );
        let text = format!("{LISTEN}[[routes]]\nupstream = \"a\"\nrate_limit = {{ burst = 3 }}\n");
        assert_eq!(
            at(&text, "missing field `rate`"),
            (5, key("routes[0].rate_limit.rate"))
        );
        let text = format!("{LISTEN}\n[upstreams.app]\nretries = 2\n");
        assert_eq!(
            at(&text, "missing field `servers`"),
            (4, key("upstreams.app.servers"))
        );
    }

    #[test]
    fn syntax_errors_are_one_line() {
        let (line, _) = at("[listen\nhttps = \":1\"\n", "invalid table header");
        assert_eq!(line, 1);
        let (line, k) = at(&format!("{LISTEN}https = \":2\"\n"), "duplicate key");
        assert_eq!((line, k), (3, key("listen.https")));
        let (line, k) = at(&format!("{LISTEN}[client]\nmax_body = \"1MiB\n"), "");
        assert_eq!((line, k), (4, key("client.max_body")));
    }

    #[test]
    fn key_paths() {
        let text = r#"a = 1
"quoted key".b = { c = [1, { d = 2 }], 'e' = """x
y""" }
[t.u]  # c
v = [
  # comment ] with brackets
  "s]", 'x' ,
]
[[arr]]
[[arr]]
[arr.sub]
w = 1
[[arr.list]]
z = 0
"#;
        let path = |needle: &str| key_path_at(text, text.find(needle).unwrap());
        assert_eq!(path("a ="), key("a"));
        assert_eq!(path("{ d"), key("\"quoted key\".b.c[1]"));
        assert_eq!(path("d ="), key("\"quoted key\".b.c[1].d"));
        assert_eq!(path("'e'"), key("\"quoted key\".b.e"));
        assert_eq!(path("[t.u]"), key("t.u"));
        assert_eq!(path("'x'"), key("t.u.v[1]"));
        assert_eq!(path("[arr.sub]"), key("arr[1].sub"));
        assert_eq!(path("w ="), key("arr[1].sub.w"));
        assert_eq!(path("z ="), key("arr[1].list[0].z"));
        assert_eq!(key_path_at("# only a comment\n", 3), None);
    }
}

#[cfg(test)]
mod key_position_tests {
    use super::*;

    #[test]
    fn finds_keys_inside_their_table() {
        let text = "[listen]\nhttps = \"x\"\n\n[client]\n  idle_timeout = \"0s\"\nmax_header_bytes = \"1B\"\n";
        let source = Source::new("f.toml", text.to_string());
        let err = source.error_at(
            source.span_of_key("client.max_header_bytes"),
            "client.max_header_bytes",
            "m",
        );
        assert_eq!((err.line, err.column), (6, 1));
        let err = source.error_at(source.span_of_key("client.idle_timeout"), "k", "m");
        assert_eq!((err.line, err.column), (5, 3));
        // absent key: the table header; absent table: the file start
        let err = source.error_at(source.span_of_key("client.header_timeout"), "k", "m");
        assert_eq!(err.line, 4);
        let err = source.error_at(source.span_of_key("tls"), "tls", "m");
        assert_eq!(err.line, 1);
    }
}
