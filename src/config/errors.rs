//! Located errors: one problem in the profiles file at its line and column, why a file could not
//! be used, and the collection that finds line and column for a byte offset.

use std::fmt;
use std::path::{Path, PathBuf};

/// One problem in the profiles file, located.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based.
    pub line: usize,
    /// 1-based, in characters.
    pub column: usize,
    /// Dotted key path, e.g. `profiles.acme-prod.url`; `None` for syntax errors outside any key.
    pub key: Option<String>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file.display(), self.line, self.column)?;
        if let Some(key) = &self.key {
            write!(f, "{key}: ")?;
        }
        f.write_str(&self.message)
    }
}

/// Why a profiles file could not be used.
#[derive(Debug)]
pub enum LoadError {
    /// The file could not be read.
    Io {
        file: PathBuf,
        error: std::io::Error,
    },
    /// The file was read, and has these problems (at least one).
    Invalid(Vec<ConfigError>),
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Io { file, error } if error.kind() == std::io::ErrorKind::NotFound => {
                write!(
                    f,
                    "{}: no profiles file here yet. To start: copy profiles.example.toml (in the \
                 source tree) to that path and edit it, pass --profiles FILE (or set \
                 SUGAR_SESSIONS_PROFILES), or try the built-in demo: sugar-sessions demo",
                    file.display()
                )
            }
            LoadError::Io { file, error } => write!(
                f,
                "{}: cannot read the profiles file: {error}",
                file.display()
            ),
            LoadError::Invalid(errors) => {
                for (i, e) in errors.iter().enumerate() {
                    if i > 0 {
                        writeln!(f)?;
                    }
                    write!(f, "{e}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for LoadError {}

/// The problems found in one file; owns a copy of its text to locate them.
pub(super) struct Errors {
    text: String,
    pub(super) file: PathBuf,
    /// Byte offset where each line starts.
    line_starts: Vec<usize>,
    /// With the byte offset they were found at, to sort them into file order.
    found: Vec<(usize, ConfigError)>,
}

impl Errors {
    pub(super) fn new(text: &str, file: &Path) -> Self {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Errors {
            text: text.to_string(),
            file: file.to_path_buf(),
            line_starts,
            found: Vec::new(),
        }
    }

    pub(super) fn push(&mut self, at: usize, key: Option<String>, message: impl Into<String>) {
        let (line, column) = self.locate(at);
        let error = ConfigError {
            file: self.file.clone(),
            line,
            column,
            key,
            message: message.into(),
        };
        self.found.push((at, error));
    }

    /// `FILE:LINE:COLUMN` of a byte offset, as messages name another place.
    pub(super) fn place(&self, at: usize) -> String {
        let (line, column) = self.locate(at);
        format!("{}:{line}:{column}", self.file.display())
    }

    /// The 1-based line of a byte offset, as `list --origin` shows where a key was set.
    pub(super) fn line_of(&self, at: usize) -> usize {
        self.locate(at).0
    }

    /// 1-based line and column (in characters) of a byte offset.
    fn locate(&self, at: usize) -> (usize, usize) {
        let mut at = at.min(self.text.len());
        while !self.text.is_char_boundary(at) {
            at -= 1;
        }
        let line = self.line_starts.partition_point(|&start| start <= at);
        let start = self.line_starts[line - 1];
        let mut column = self.text[start..at].chars().count() + 1;
        if start == 0 && at > 0 && self.text.starts_with('\u{feff}') {
            column -= 1;
        }
        (line, column)
    }

    pub(super) fn is_empty(&self) -> bool {
        self.found.is_empty()
    }

    pub(super) fn finish(mut self) -> Vec<ConfigError> {
        self.found.sort_by_key(|(at, _)| *at);
        self.found.into_iter().map(|(_, e)| e).collect()
    }

    /// Every problem, in file order, each message followed by `note` (the include chain of an
    /// included file, e.g. ` (included from profiles.toml:1:12)`).
    pub(super) fn finish_noted(self, note: &str) -> Vec<ConfigError> {
        let mut found = self.finish();
        for e in &mut found {
            e.message.push_str(note);
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_columns() {
        let text = "ab\r\nçd\n\nx";
        let errs = Errors::new(text, Path::new("f"));
        assert_eq!(errs.locate(0), (1, 1));
        assert_eq!(errs.locate(1), (1, 2));
        assert_eq!(errs.locate(4), (2, 1));
        // `ç` is two bytes, one column.
        assert_eq!(errs.locate(6), (2, 2));
        assert_eq!(errs.locate(8), (3, 1));
        assert_eq!(errs.locate(9), (4, 1));
        // Past the end, and inside a character: clamped.
        assert_eq!(errs.locate(100), (4, 2));
        assert_eq!(errs.locate(5), (2, 1));
        // A byte order mark takes no column.
        let errs = Errors::new("\u{feff}[x]", Path::new("f"));
        assert_eq!(errs.locate(3), (1, 1));
        assert_eq!(errs.locate(4), (1, 2));
    }
}
