//! `${NAME}` and `${NAME:-default}` in string values, expanded from the environment at every
//! load (start, reload, `check`).
//!
//! The expansion works on the TOML text before it is deserialized: toml_edit finds every string
//! value with its span, and each one holding a `$` is written back as a basic string of its
//! expanded value, on the same line. Keys and comments are never touched, line numbers stay
//! those of the file, and an unset variable is reported at the string that names it.
//!
//! Values taken from the environment are secrets until shown otherwise (a Redis password, an EAB
//! key): [`Redactions`] replaces them with `${NAME}` in every error, warning and `--diff` line.
//!
//! The syntax: `${NAME}` (an error when NAME is unset), `${NAME:-default}` (the default when
//! NAME is unset or empty), `$$` for a literal `$`. A `$` followed by anything else is kept as
//! written, so a value without `${` reads as it always did.

use std::ops::Range;

use super::source::{key_path_at, ConfigErrors, Source};

/// Environment values shorter than this are not hidden: replacing every `1` or `on` in a
/// message would garble it, and such values are no secrets.
pub const MIN_HIDDEN_LEN: usize = 4;

/// What came from the environment, to be hidden from anything printed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Redactions {
    /// (value, `${NAME}`), longest value first.
    values: Vec<(String, String)>,
    /// Each rewritten string: its line, its first column and its last column (exclusive) in the
    /// expanded text, and its length in characters as written in the file. Errors found in the
    /// expanded text are moved back to the columns of the file.
    moved: Vec<Moved>,
}

#[derive(Debug, Clone, PartialEq)]
struct Moved {
    line: usize,
    start: usize,
    end: usize,
    written: usize,
}

impl Redactions {
    fn add(&mut self, value: &str, name: &str) {
        if value.chars().count() < MIN_HIDDEN_LEN {
            return;
        }
        let shown = format!("${{{name}}}");
        if !self.values.iter().any(|(v, _)| v == value) {
            self.values.push((value.to_string(), shown));
            self.values.sort_by_key(|v| std::cmp::Reverse(v.0.len()));
        }
    }

    /// Merges another file's values (`--diff` prints both).
    pub fn extend(&mut self, other: &Redactions) {
        for (value, shown) in &other.values {
            if !self.values.iter().any(|(v, _)| v == value) {
                self.values.push((value.clone(), shown.clone()));
            }
        }
        self.values.sort_by_key(|v| std::cmp::Reverse(v.0.len()));
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// `text` with every environment value replaced by `${NAME}`.
    pub fn apply(&self, text: &str) -> String {
        let mut out = text.to_string();
        for (value, shown) in &self.values {
            if out.contains(value.as_str()) {
                out = out.replace(value.as_str(), shown);
            }
        }
        out
    }

    /// A column of the expanded text as a column of the file.
    fn column_in_file(&self, line: usize, column: usize) -> usize {
        let mut shift: isize = 0;
        for m in self.moved.iter().filter(|m| m.line == line) {
            if column >= m.end {
                shift += m.written as isize - (m.end - m.start) as isize;
            } else if column > m.start {
                // Inside the rewritten string: its start.
                return (m.start as isize + shift).max(1) as usize;
            }
        }
        (column as isize + shift).max(1) as usize
    }

    /// The key and message of each error (never the file name or position).
    pub fn errors(&self, mut errors: ConfigErrors) -> ConfigErrors {
        if self.values.is_empty() && self.moved.is_empty() {
            return errors;
        }
        for e in &mut errors.0 {
            e.column = self.column_in_file(e.line, e.column);
            e.message = self.apply(&e.message);
            e.key = e.key.as_deref().map(|k| self.apply(k));
        }
        errors
    }
}

/// The text with every string value's `${…}` expanded (from `lookup`), and what to hide.
/// Text that is not valid TOML is returned unchanged: the parser reports it next.
pub fn expand(
    source: &Source,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<(Source, Redactions), ConfigErrors> {
    let mut redactions = Redactions::default();
    if !source.text.contains('$') {
        return Ok((source.clone(), redactions));
    }
    let Ok(doc) = toml_edit::ImDocument::parse(source.text.as_str()) else {
        return Ok((source.clone(), redactions));
    };
    let mut strings = Vec::new();
    collect_table(doc.as_table(), &mut strings);
    strings.sort_by_key(|(span, _)| span.start);

    let mut errors = Vec::new();
    let mut text = String::with_capacity(source.text.len());
    let mut copied = 0;
    for (span, value) in strings {
        if !value.contains('$') || span.start < copied {
            continue;
        }
        match expand_value(&value, lookup, &mut redactions) {
            Ok(expanded) => {
                text.push_str(&source.text[copied..span.start]);
                let (line, start) = position(&text, text.len());
                let raw = &source.text[span.clone()];
                let written = basic_string_over(&expanded, raw.matches('\n').count());
                text.push_str(&written);
                redactions.moved.push(Moved {
                    line,
                    start,
                    end: start + written.chars().count(),
                    written: source.text[span.clone()].chars().count(),
                });
                copied = span.end;
            }
            Err(message) => {
                let key = key_path_at(&source.text, span.start).unwrap_or_default();
                errors.push(source.error_at(span, &key, message));
            }
        }
    }
    if !errors.is_empty() {
        return Err(redactions.errors(ConfigErrors(errors)));
    }
    text.push_str(&source.text[copied..]);
    Ok((Source::new(source.file.clone(), text), redactions))
}

/// The process environment, as [`expand`] reads it.
pub fn from_process(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

fn collect_table(table: &toml_edit::Table, out: &mut Vec<(Range<usize>, String)>) {
    for (_, item) in table.iter() {
        collect_item(item, out);
    }
}

fn collect_item(item: &toml_edit::Item, out: &mut Vec<(Range<usize>, String)>) {
    match item {
        toml_edit::Item::None => {}
        toml_edit::Item::Value(value) => collect_value(value, out),
        toml_edit::Item::Table(table) => collect_table(table, out),
        toml_edit::Item::ArrayOfTables(tables) => {
            for table in tables.iter() {
                collect_table(table, out);
            }
        }
    }
}

fn collect_value(value: &toml_edit::Value, out: &mut Vec<(Range<usize>, String)>) {
    match value {
        toml_edit::Value::String(s) => {
            if let Some(span) = s.span() {
                out.push((span, s.value().clone()));
            }
        }
        toml_edit::Value::Array(array) => {
            for v in array.iter() {
                collect_value(v, out);
            }
        }
        toml_edit::Value::InlineTable(table) => {
            for (_, v) in table.iter() {
                collect_value(v, out);
            }
        }
        _ => {}
    }
}

/// One string value with its `${…}` replaced; the error message names the first problem.
pub fn expand_value(
    value: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    redactions: &mut Redactions,
) -> Result<String, String> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
            continue;
        }
        let Some(inner_start) = after.strip_prefix('{') else {
            out.push('$');
            rest = after;
            continue;
        };
        let Some(close) = inner_start.find('}') else {
            return Err(
                "`${` without its closing `}` (write `$${` for a literal `${`)".to_string(),
            );
        };
        let inner = &inner_start[..close];
        rest = &inner_start[close + 1..];
        let (name, default) = match inner.split_once(":-") {
            Some((name, default)) => (name, Some(default)),
            None => (inner, None),
        };
        if !valid_name(name) {
            return Err(format!(
                "`${{{inner}}}`: a variable name is letters, digits and `_`, not starting with a digit \
                 (write `$${{` for a literal `${{`)"
            ));
        }
        match (lookup(name), default) {
            (Some(found), Some(_)) if !found.is_empty() => {
                redactions.add(&found, name);
                out.push_str(&found);
            }
            (Some(found), None) => {
                redactions.add(&found, name);
                out.push_str(&found);
            }
            (_, Some(default)) => out.push_str(default),
            (None, None) => {
                return Err(format!(
                    "environment variable `{name}` is not set (write `${{{name}:-default}}` to give a default)"
                ))
            }
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// 1-based line and column of a byte offset.
fn position(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// [`basic_string`], over as many lines as the literal it replaces: a multi-line literal
/// becomes a multi-line basic string whose line breaks are line-ending backslashes (which TOML
/// trims), so every later line keeps its number.
fn basic_string_over(value: &str, newlines: usize) -> String {
    if newlines == 0 {
        return basic_string(value);
    }
    let single = basic_string(value);
    let content = &single[1..single.len() - 1];
    format!("\"\"\"{content}{}\"\"\"", "\\\n".repeat(newlines))
}

/// A TOML basic string on one line (newlines escaped, so later lines keep their numbers).
fn basic_string(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "PASSWORD" => Some("s3cret-value".into()),
            "EMPTY" => Some(String::new()),
            "PORT" => Some("6379".into()),
            _ => None,
        }
    }

    fn run(text: &str) -> Result<(String, Redactions), ConfigErrors> {
        expand(&Source::new("f.toml", text.to_string()), &env).map(|(s, r)| (s.text, r))
    }

    #[test]
    fn expands_strings_and_leaves_keys_and_comments() {
        let text = "# ${NOPE} in a comment\n[a]\n\"${KEY}\" = \"x${PASSWORD}y\"\nb = ['${PORT}', { c = \"${UNSET:-dflt}\" }]\nd = \"\"\"${EMPTY:-e}\"\"\"\n";
        let (out, redactions) = run(text).unwrap();
        assert_eq!(
            out,
            "# ${NOPE} in a comment\n[a]\n\"${KEY}\" = \"xs3cret-valuey\"\nb = [\"6379\", { c = \"dflt\" }]\nd = \"e\"\n"
        );
        assert_eq!(
            redactions.apply("url x s3cret-value 6379"),
            "url x ${PASSWORD} ${PORT}"
        );
    }

    #[test]
    fn escapes_and_plain_dollars() {
        assert_eq!(
            run("a = \"$$ $${HOME} $5 a$\"\n").unwrap().0,
            "a = \"$ ${HOME} $5 a$\"\n"
        );
        assert_eq!(
            run("a = \"quote\\\"${PASSWORD}\"\n").unwrap().0,
            "a = \"quote\\\"s3cret-value\"\n"
        );
    }

    #[test]
    fn unset_and_bad_names_are_errors_with_line_and_key() {
        let e =
            run("[x]\nb = 1\n[rate_limit]\nredis_url = \"redis://:${REDIS_PW}@r\"\n").unwrap_err();
        assert_eq!(e.0.len(), 1);
        assert_eq!(
            e.to_string(),
            "f.toml:4:13: rate_limit.redis_url: environment variable `REDIS_PW` is not set (write `${REDIS_PW:-default}` to give a default)"
        );
        let e = run("a = [\"${1X}\"]\n").unwrap_err();
        assert!(
            e.to_string().starts_with("f.toml:1:6: a[0]: `${1X}`"),
            "{e}"
        );
        let e = run("a = \"${OPEN\"\n").unwrap_err();
        assert!(e.to_string().contains("without its closing"), "{e}");
    }

    #[test]
    fn a_multi_line_literal_keeps_its_lines() {
        let text = "a = \"\"\"\nx ${PASSWORD}\ny\"\"\"\nb = 1\n";
        let (out, _) = run(text).unwrap();
        assert_eq!(out.lines().count(), text.lines().count(), "{out}");
        let parsed: toml::Table = toml::from_str(&out).unwrap();
        assert_eq!(parsed["a"].as_str(), Some("x s3cret-value\ny"));
        assert_eq!(out.lines().position(|l| l == "b = 1"), Some(3));
    }

    #[test]
    fn invalid_toml_is_left_to_the_parser() {
        let text = "a = \"${X}\nb = [\n";
        assert_eq!(run(text).unwrap().0, text);
    }

    #[test]
    fn columns_of_later_errors_are_those_of_the_file() {
        let text = "a = { b = \"${PASSWORD}\", c = \"$$\", d = 5 }\n";
        let (out, r) = run(text).unwrap();
        let at = |needle: &str| out.find(needle).unwrap();
        let d = Source::new("f.toml", out.clone()).error_at(at("d =")..at("d =") + 1, "a.d", "x");
        let e = r.errors(ConfigErrors(vec![d]));
        assert_eq!(e.0[0].column, text.find("d =").unwrap() + 1);
        // inside a rewritten string: its start in the file
        let b = Source::new("f.toml", out.clone()).error_at(at("cret")..at("cret") + 1, "a.b", "x");
        assert_eq!(
            r.errors(ConfigErrors(vec![b])).0[0].column,
            text.find("\"${").unwrap() + 1
        );
    }

    /// The fuzz oracle over 20,000 strings of the characters that matter (a small xorshift, so
    /// the run is the same every time), and each as a whole config value.
    #[test]
    fn random_values_keep_the_fuzz_invariants() {
        const ALPHABET: &[char] = &[
            '$', '{', '}', ':', '-', 'S', 'E', 'T', '_', '1', 'x', '"', '\n', 'é',
        ];
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..20_000 {
            let len = (next() % 12) as usize;
            let text: String = (0..len)
                .map(|_| ALPHABET[(next() % ALPHABET.len() as u64) as usize])
                .collect();
            crate::config::fuzz::env_values(&text);
            let toml = format!("a = {}\n", basic_string(&text));
            let _ = expand(&Source::new("f.toml", toml), &env);
        }
    }

    #[test]
    fn short_values_are_not_hidden() {
        let mut r = Redactions::default();
        r.add("on", "FLAG");
        r.add("abcd", "LONG");
        assert_eq!(r.apply("on abcd"), "on ${LONG}");
    }
}
