//! Why a blocklist could not be read, fetched or changed. Every error names what it is about: the
//! file (and line and text, through [`DbError`]), the URL, or the list and its source.

use std::{io, path::PathBuf};

use super::{ListFormat, MAX_LISTS};
use crate::geoip::{DbError, update::UpdateError};

#[derive(Debug, thiserror::Error)]
pub enum ListError {
    /// Opening or reading a file, or one bad line: `path:line: problem in "text"`.
    #[error(transparent)]
    Read(#[from] DbError),
    #[error("{}:{line}: line is longer than {max} bytes; is this really a blocklist?", path.display())]
    LineTooLong {
        path: PathBuf,
        line: u64,
        max: usize,
    },
    #[error(
        "{}: no entries found as {format} (one address or network per line); wrong file or \
         --format?",
        path.display()
    )]
    Empty { path: PathBuf, format: ListFormat },
    #[error(
        "{}: none of its {entries} entries has a score of at least {min_score} (the highest is \
         {best}); lower --min-score",
        path.display()
    )]
    NoneAtScore {
        path: PathBuf,
        entries: usize,
        min_score: u32,
        best: u32,
    },
    #[error(
        "{}: --min-score applies to ipsum lists (address and score per line); this is a {format} \
         list",
        path.display()
    )]
    ScoreUnused { path: PathBuf, format: ListFormat },
    /// Fetching failed: the server is unreachable, answered an error, sent too much.
    #[error(transparent)]
    Fetch(#[from] UpdateError),
    /// New content (a download, or a file's copy) is not a valid list.
    #[error("the list from {from} is not valid, nothing was replaced: {cause}")]
    Invalid {
        /// The URL(s) or the file it came from.
        from: String,
        #[source]
        cause: Box<ListError>,
    },
    #[error("failed to {op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}: no such cached list; it was never fetched or the cache was removed", path.display())]
    NotCached { path: PathBuf },
    #[error("invalid list name {name:?}: {reason}")]
    BadName { name: String, reason: &'static str },
    #[error("invalid list source {text:?}: {reason}")]
    BadSource { text: String, reason: String },
    #[error(
        "a list named {0} already exists (`list update {0}` refreshes it; `list del` removes it)"
    )]
    Exists(String),
    #[error("no list named {0}")]
    NoSuchList(String),
    #[error(
        "{name}: at most {MAX_LISTS} lists (each is one bit of the kernel's 32-bit list mask); \
         `list del` one first"
    )]
    TooMany { name: String },
    /// Loading or updating one list failed; its last good copy (if any) stays in force.
    #[error("list {name} ({from}): {cause}")]
    List {
        name: String,
        /// The list's source, as written on the command line.
        from: String,
        #[source]
        cause: Box<ListError>,
    },
}

impl ListError {
    /// The error with every path inside `dir` (a staging folder, a cache folder) cut to its file
    /// name: a message about new content names the file as the source calls it, not the
    /// temporary place it was read from.
    pub(crate) fn relative_to(self, dir: &std::path::Path) -> Self {
        let cut = |path: PathBuf| match path.file_name() {
            Some(name) if path.starts_with(dir) => PathBuf::from(name),
            _ => path,
        };
        match self {
            ListError::Read(e) => ListError::Read(match e {
                DbError::Io { op, path, source } => DbError::Io {
                    op,
                    path: cut(path),
                    source,
                },
                DbError::ReadAt { path, line, source } => DbError::ReadAt {
                    path: cut(path),
                    line,
                    source,
                },
                DbError::Line {
                    path,
                    line,
                    problem,
                    text,
                } => DbError::Line {
                    path: cut(path),
                    line,
                    problem,
                    text,
                },
                DbError::Invalid { path, reason } => DbError::Invalid {
                    path: cut(path),
                    reason,
                },
                other => other,
            }),
            ListError::LineTooLong { path, line, max } => ListError::LineTooLong {
                path: cut(path),
                line,
                max,
            },
            ListError::Empty { path, format } => ListError::Empty {
                path: cut(path),
                format,
            },
            ListError::NoneAtScore {
                path,
                entries,
                min_score,
                best,
            } => ListError::NoneAtScore {
                path: cut(path),
                entries,
                min_score,
                best,
            },
            ListError::ScoreUnused { path, format } => ListError::ScoreUnused {
                path: cut(path),
                format,
            },
            other => other,
        }
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| ListError::Io { op, path, source }
    }
}
