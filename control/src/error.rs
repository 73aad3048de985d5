//! Configuration errors that name the file, the line and the field.

use std::fmt;

/// Why a configuration was rejected.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("{file}: cannot read: {source}")]
    Io {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}:{line}:{column}: {message}")]
    Syntax {
        file: String,
        line: usize,
        column: usize,
        /// The field the parser was in, when known (e.g. `queues[0].max_wait`).
        field: Option<String>,
        message: String,
    },
    #[error("{file}:{line}: field `{field}`: {message}")]
    Invalid {
        file: String,
        line: usize,
        field: String,
        message: String,
    },
}

impl ConfigError {
    pub(crate) fn from_toml(file: &str, text: &str, e: &toml::de::Error) -> Self {
        let (line, column) = e.span().map(|s| line_col(text, s.start)).unwrap_or((1, 1));
        let field = field_at(text, e.span().map(|s| s.start).unwrap_or(0));
        let mut message = e.message().trim().to_string();
        if let Some(f) = &field {
            message = format!("field `{f}`: {message}");
        }
        ConfigError::Syntax {
            file: file.to_string(),
            line,
            column,
            field,
            message,
        }
    }
}

/// 1-based line and column of a byte offset.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.rfind('\n').map(|i| offset - i).unwrap_or(offset + 1);
    (line, column)
}

/// A path to a field of the document: `queues[1].agents[0]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldPath(Vec<Seg>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Key(&'static str),
    Index(usize),
}

impl FieldPath {
    pub fn key(mut self, k: &'static str) -> Self {
        self.0.push(Seg::Key(k));
        self
    }
    pub fn index(mut self, i: usize) -> Self {
        self.0.push(Seg::Index(i));
        self
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Key(k) if n == 0 => write!(f, "{k}")?,
                Seg::Key(k) => write!(f, ".{k}")?,
                Seg::Index(i) => write!(f, "[{i}]")?,
            }
        }
        Ok(())
    }
}

/// A semantic problem found after parsing, located by field path.
#[derive(Debug)]
pub struct Issue {
    pub path: FieldPath,
    pub message: String,
}

impl Issue {
    pub fn new(path: FieldPath, message: impl Into<String>) -> Self {
        Issue {
            path,
            message: message.into(),
        }
    }

    pub(crate) fn into_error(self, file: &str, text: &str) -> ConfigError {
        let line = span_of(text, &self.path)
            .map(|off| line_col(text, off).0)
            .unwrap_or(1);
        ConfigError::Invalid {
            file: file.to_string(),
            line,
            field: self.path.to_string(),
            message: self.message,
        }
    }
}

/// Byte offset of the value at `path` in the TOML text, found with `toml_edit` spans.
fn span_of(text: &str, path: &FieldPath) -> Option<usize> {
    let doc = toml_edit::Document::parse(text).ok()?;
    let mut item: &toml_edit::Item = doc.as_item();
    let mut best = None;
    for seg in &path.0 {
        let next = match seg {
            Seg::Key(k) => item.get(k),
            Seg::Index(i) => item.get(*i),
        };
        match next {
            Some(n) => {
                item = n;
                if let Some(s) = item_span(item) {
                    best = Some(s);
                }
            }
            None => break,
        }
    }
    best
}

fn item_span(item: &toml_edit::Item) -> Option<usize> {
    match item {
        toml_edit::Item::Value(v) => v.span().map(|s| s.start),
        toml_edit::Item::Table(t) => t.span().map(|s| s.start),
        toml_edit::Item::ArrayOfTables(a) => a.span().map(|s| s.start),
        toml_edit::Item::None => None,
    }
}

/// Best-effort name of the field whose value starts at or contains `offset`:
/// the nearest `key =` on the same line, prefixed with the enclosing table header.
fn field_at(text: &str, offset: usize) -> Option<String> {
    let offset = offset.min(text.len());
    let line_start = text[..offset].rfind('\n').map(|i| i + 1).unwrap_or(0);
    let line = text[line_start..].lines().next().unwrap_or("");
    let key = line.split_once('=').map(|(k, _)| k.trim().to_string());
    let header = text[..line_start]
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('['))
        .map(|l| l.trim().trim_matches(|c| c == '[' || c == ']').to_string());
    match (header, key) {
        (Some(h), Some(k)) => Some(format!("{h}.{k}")),
        (None, Some(k)) => Some(k),
        (Some(h), None) => Some(h),
        (None, None) => None,
    }
}
