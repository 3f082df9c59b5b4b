//! Why a database could not be read: every error names the file, and text formats the line.

use std::{io, path::PathBuf};

use super::Format;

/// Why a database could not be read. Every variant names the file; text formats also give the
/// line number and the line.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("failed to {op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Reading a text file failed part-way (a truncated or corrupt gzip stream, an I/O error).
    #[error("{}:{line}: read failed: {source} (truncated or corrupt file?)", path.display())]
    ReadAt {
        path: PathBuf,
        /// The line being read when it failed.
        line: u64,
        #[source]
        source: io::Error,
    },
    #[error("{}:{line}: {problem} in \"{text}\"", path.display())]
    Line {
        path: PathBuf,
        line: u64,
        problem: LineProblem,
        /// The line, cut to about 80 characters.
        text: String,
    },
    #[error(
        "{}:{line}: line is longer than {max} bytes; is this really a {format} file?",
        path.display()
    )]
    LineTooLong {
        path: PathBuf,
        line: u64,
        max: usize,
        format: Format,
    },
    /// A problem with one record of a binary format (MMDB), or a file of a directory format.
    #[error("{}: {record}: {problem}", path.display())]
    Record {
        path: PathBuf,
        record: String,
        problem: LineProblem,
    },
    #[error("{}: not a valid MaxMind DB file: {source}", path.display())]
    Mmdb {
        path: PathBuf,
        #[source]
        source: maxminddb::MaxMindDbError,
    },
    #[error("{}: {reason}", path.display())]
    Invalid { path: PathBuf, reason: String },
    #[error("{}: no IPv4 or IPv6 ranges found as {format} (wrong file or --db-format?)", path.display())]
    Empty { path: PathBuf, format: Format },
    #[error("no database files given")]
    NoFiles,
    #[error("too many database files: {count} (at most {max})")]
    TooManyFiles { count: usize, max: usize },
    /// The files together hold more ranges, or compile to more prefixes, than
    /// [`Limits`](super::Limits) allow.
    #[error(
        "{files}: {what} more than {limit} {family} {unit}, the most a table budget of \
         {table_mib} MiB (--max-table-mib) allows"
    )]
    OverBudget {
        /// The files, joined with ", ".
        files: String,
        what: &'static str,
        family: &'static str,
        unit: &'static str,
        limit: usize,
        table_mib: usize,
    },
}

/// What is wrong with one line or record.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LineProblem {
    #[error("expected {expected}, found {found} field(s)")]
    Fields {
        expected: &'static str,
        found: usize,
    },
    #[error("bad {field} address {value:?}")]
    Address { field: &'static str, value: String },
    #[error("bad network {value:?}")]
    Network { value: String },
    #[error("start {start} and end {end} are of different address families")]
    MixedFamilies { start: String, end: String },
    #[error("start {start} is after end {end}")]
    Reversed { start: String, end: String },
    #[error("invalid country code {value:?}")]
    Country { value: String },
    /// An ASN database's AS number column ([`crate::asn`]).
    #[error("invalid AS number {value:?} (expected 0 to 4294967295, optionally after \"AS\")")]
    Asn { value: String },
    #[error("not UTF-8 text")]
    NotUtf8,
    #[error(
        "more than {limit} {family} ranges, the most one load may read with a table budget of \
         {table_mib} MiB (--max-table-mib)"
    )]
    TooMany {
        family: &'static str,
        limit: usize,
        table_mib: usize,
    },
    #[error("{0}")]
    Other(String),
}
