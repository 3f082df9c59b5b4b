//! Why an ASN database could not be read. Errors of the machinery shared with the country
//! readers (opening, gzip, lines, addresses) are [`DbError`]s and keep their file, line and
//! text; the ASN readers add their own.

use std::path::PathBuf;

use super::AsnFormat;
use crate::geoip::DbError;

/// Why an ASN database could not be read. Every variant that concerns a file names it; text
/// formats also give the line number and the line.
#[derive(Debug, thiserror::Error)]
pub enum AsnError {
    /// Opening or reading the file, or one of its lines or records, failed (file, line, text).
    #[error(transparent)]
    Db(#[from] DbError),
    /// A text line longer than any real one: almost always a binary or wrong file.
    #[error(
        "{}:{line}: line is longer than {max} bytes; is this really a {format} ASN file?",
        path.display()
    )]
    LineTooLong {
        path: PathBuf,
        line: u64,
        max: usize,
        format: AsnFormat,
    },
    /// A file without one range: the wrong file or the wrong format.
    #[error(
        "{}: no IPv4 or IPv6 ranges found as {format} (wrong file or --asn-format?)",
        path.display()
    )]
    Empty { path: PathBuf, format: AsnFormat },
    /// Ranges, but not one with an AS number (all "Not routed" / AS 0).
    #[error("{}: {ranges} ranges but none with an AS number; is it an ASN database?", path.display())]
    NoAsns { path: PathBuf, ranges: usize },
    /// Detection found no ASN format in the file.
    #[error("{}: not an ASN database ({why}); give --asn-format if it is one", path.display())]
    NotAsn { path: PathBuf, why: String },
    /// The packed embedded database is corrupt (a build defect).
    #[error("embedded ASN database: {reason}")]
    Packed { reason: String },
    /// [`load`](super::load) was given no files.
    #[error("no ASN database files given")]
    NoFiles,
    /// The files together hold more ranges than the [`Limits`](crate::geoip::Limits) allow.
    #[error(
        "{files}: together hold more than {limit} {family} ranges, the most a table budget of \
         {table_mib} MiB (--max-table-mib) allows"
    )]
    OverBudget {
        /// The files, joined with ", ".
        files: String,
        family: &'static str,
        limit: usize,
        table_mib: usize,
    },
}

impl AsnError {
    /// A shared reader's error, with the ASN format named where the message names one.
    pub(crate) fn from_db(e: DbError, format: AsnFormat) -> Self {
        match e {
            DbError::LineTooLong {
                path, line, max, ..
            } => AsnError::LineTooLong {
                path,
                line,
                max,
                format,
            },
            e => AsnError::Db(e),
        }
    }
}
