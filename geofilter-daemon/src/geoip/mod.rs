//! GeoIP databases: reading every supported format into country ranges, and compiling the ranges
//! of one or more files into the disjoint prefix table the datapath loads.
//!
//! Contract with the rest of the daemon (keep these names and shapes):
//! - [`load`] reads and compiles `--db` files (in order) into a [`CompiledDb`], or fails with a
//!   [`DbError`] naming the file, the line (text formats) and the offending text. Nothing is
//!   half-loaded: the caller only swaps tables after `load` succeeded.
//! - [`CompiledDb::v4`] / [`CompiledDb::v6`]: sorted, disjoint prefixes; `addr` is the numeric
//!   address within its family (an IPv4 address is a value below 2^32), `len` the prefix length.
//! - [`CompiledDb::lookup`]: the reference answer for one address (binary search), used by `why`
//!   and by tests that compare the kernel's answer with it.
//!
//! # Semantics
//!
//! Every format is first read into inclusive address ranges with a country ([`read_source`]);
//! [`compile()`] then turns the ranges of all files into one table:
//!
//! - **Most specific wins.** Where ranges overlap or nest, an address takes the country of the
//!   smallest range that contains it (the longest-prefix rule of an LPM table, extended to ranges
//!   that are not CIDR blocks). Real data needs this: geo-whois-asn-country nests
//!   `3.2.35.40-3.2.35.47 TR` inside `3.2.35.0-3.2.35.63 DE`.
//! - **Ties go to the later entry.** Between ranges of equal size, the file given later on the
//!   command line wins, and within one file the later line. So a small override file given after
//!   a world database replaces its entries of the same size.
//! - **Pseudo-codes are "unknown".** `??`, `EU`, `AP`, `ZZ`, `XX`, `A1`, `A2`, `O1`, `-` and an
//!   empty code mean "no country" ([`UNKNOWN_COUNTRY`]). Such a range still takes part in the two
//!   rules above (a small `??` range inside a large `DE` range makes that part unknown), but is
//!   not written to the table: a lookup miss means unknown anyway. Codes ISO keeps reserved but
//!   that name no current country (`AN`, `YU`, `UK`, ...; see [`crate::country::table::RESERVED_CODES`]) are
//!   unknown too, with a warning: real data still carries a stale `AN`. So are two letters ISO
//!   has not assigned at all (Debian's tor-geoipdb has `OS`), also with a warning, one per code
//!   and file. A malformed code (digits, punctuation, wrong length) is an error.
//! - **Case** does not matter in database codes (`ru.zone`); user input goes through
//!   [`crate::country::parse_user_code`].
//! - **IPv4-mapped IPv6** (`::ffff:0:0/96`) in IPv6 input is read as IPv4, so IPv6 files that
//!   repeat the IPv4 space that way (IP2Location) also fill the IPv4 table.
//! - The result is then merged (adjacent pieces with the same country and file become one) and
//!   split into the fewest CIDR prefixes per piece (ranges are often not CIDR-aligned, e.g.
//!   `6.0.0.0,7.81.167.144,US`).
//!
//! [`reference::reference_lookup`] restates these rules as a plain scan over all ranges; tests
//! compare the compiled table with it.
//!
//! [`UNKNOWN_COUNTRY`]: geofilter_common::UNKNOWN_COUNTRY

mod cidr_dir;
mod compile;
pub mod embedded;
pub mod info;
mod input;
mod maxmind_csv;
mod mmdb;
mod range_csv;
pub mod reference;
mod rir;
mod text;
mod tor;
pub mod update;

use std::{
    collections::BTreeSet,
    fmt, io,
    net::IpAddr,
    path::{Path, PathBuf},
    str::FromStr,
};

use geofilter_common::{CountryId, PrefixInfo};
use serde::{Deserialize, Serialize};

pub use self::compile::{compile, compile_within};
#[doc(hidden)]
pub use self::mmdb::writer as mmdb_writer;
use crate::family::Family;

/// An inclusive range of addresses of one family with one country.
///
/// IPv4 values are below 2^32; the family is given by the list the range is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Range {
    pub start: u128,
    pub end: u128,
    /// [`UNKNOWN_COUNTRY`](geofilter_common::UNKNOWN_COUNTRY) for database pseudo-codes.
    pub country: CountryId,
}

/// A database file format (`--db-format`); detected from the path and content when not given.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// `start,end,CC[,...]` per line, addresses as text or integers, optionally quoted: DB-IP
    /// lite, IP2Location LITE DB1, ip-location-db, the daemon's own override files.
    RangeCsv,
    /// MaxMind DB (`.mmdb`): GeoLite2/GeoIP2 Country or City, or ip-location-db's layout.
    Mmdb,
    /// MaxMind GeoLite2/GeoIP2 Country or City CSV: a `*-Blocks-IPv4.csv` or `*-Blocks-IPv6.csv`
    /// file with its `*-Locations-en.csv` beside it.
    MaxmindCsv,
    /// Tor's `geoip` / `geoip6` files (IPFire location data, Debian's `tor-geoipdb`).
    Tor,
    /// A directory of per-country CIDR lists (`ru.zone`, `ipv4/ru.cidr`; ipdeny,
    /// herrbischoff/country-ip-blocks), or one such file.
    CidrDir,
    /// RIR delegated statistics (`delegated-ripencc-extended-latest`).
    Rir,
    /// The database compiled into the binary ([`embedded`]); not a file format, so not in
    /// [`Format::ALL`] and not accepted by `--db-format`.
    Embedded,
}

impl Format {
    pub const ALL: [Format; 6] = [
        Format::RangeCsv,
        Format::Mmdb,
        Format::MaxmindCsv,
        Format::Tor,
        Format::CidrDir,
        Format::Rir,
    ];

    /// The name used by `--db-format` and in output.
    pub const fn name(self) -> &'static str {
        match self {
            Format::RangeCsv => "range-csv",
            Format::Mmdb => "mmdb",
            Format::MaxmindCsv => "maxmind-csv",
            Format::Tor => "tor",
            Format::CidrDir => "cidr-dir",
            Format::Rir => "rir",
            Format::Embedded => "embedded",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Format {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Format::ALL
            .into_iter()
            .find(|f| f.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                let names: Vec<_> = Format::ALL.iter().map(|f| f.name()).collect();
                format!(
                    "unknown database format {s:?}; expected one of {}",
                    names.join(", ")
                )
            })
    }
}

/// The ranges read from one database file (or directory), in file order.
#[derive(Clone, Debug)]
pub struct SourceRanges {
    pub path: PathBuf,
    pub format: Format,
    pub v4: Vec<Range>,
    pub v6: Vec<Range>,
}

impl SourceRanges {
    /// The ranges of one family.
    pub fn ranges(&self, family: Family) -> &[Range] {
        match family {
            Family::V4 => &self.v4,
            Family::V6 => &self.v6,
        }
    }
}

/// One prefix of the compiled table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Prefix {
    /// The network address within its family (IPv4: below 2^32), host bits zero.
    pub addr: u128,
    pub len: u8,
    pub info: PrefixInfo,
}

/// What one database file contributed, for `status` output.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SourceSummary {
    pub path: PathBuf,
    pub format: Format,
    pub ranges_v4: usize,
    pub ranges_v6: usize,
}

/// The table the datapath loads: sorted, disjoint prefixes per family. Only prefixes with a
/// country are present; [`PrefixInfo::source`] indexes [`CompiledDb::sources`].
#[derive(Clone, Debug, Default)]
pub struct CompiledDb {
    pub sources: Vec<SourceSummary>,
    pub v4: Vec<Prefix>,
    pub v6: Vec<Prefix>,
}

impl CompiledDb {
    /// The prefix an address falls in, as the kernel's LPM lookup would find it, or `None` when
    /// the address has no country.
    pub fn lookup(&self, ip: IpAddr) -> Option<&Prefix> {
        let (table, bits, addr) = match ip {
            IpAddr::V4(a) => (&self.v4, 32, u128::from(u32::from(a))),
            IpAddr::V6(a) => (&self.v6, 128, u128::from(a)),
        };
        let i = table.partition_point(|p| p.addr <= addr).checked_sub(1)?;
        let p = &table[i];
        (addr <= compile::last_addr(p.addr, p.len, bits)).then_some(p)
    }

    /// Every country that has at least one prefix.
    pub fn countries(&self) -> BTreeSet<CountryId> {
        self.v4
            .iter()
            .chain(&self.v6)
            .map(|p| p.info.country)
            .collect()
    }
}

/// The most database files one table can name: [`PrefixInfo::source`] is a `u16`.
const MAX_SOURCES: usize = u16::MAX as usize + 1;

/// [`load_within`] the default [`Limits`].
pub fn load(paths: &[PathBuf], format: Option<Format>) -> Result<CompiledDb, DbError> {
    load_within(paths, format, &Limits::default())
}

/// Reads and compiles database files, in order (later files win ties, see the module docs),
/// refusing them once they exceed `limits`.
///
/// `format` forces one format for every file; `None` detects each file's format.
pub fn load_within(
    paths: &[PathBuf],
    format: Option<Format>,
    limits: &Limits,
) -> Result<CompiledDb, DbError> {
    if paths.is_empty() {
        return Err(DbError::NoFiles);
    }
    if paths.len() > MAX_SOURCES {
        return Err(DbError::TooManyFiles {
            count: paths.len(),
            max: MAX_SOURCES,
        });
    }
    // Files are independent: read them on up to as many threads as there are CPUs (a world
    // database is usually two files, IPv4 and IPv6).
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(paths.len());
    let mut results: Vec<Option<Result<SourceRanges, DbError>>> = Vec::new();
    results.resize_with(paths.len(), || None);
    if threads <= 1 {
        for (slot, path) in results.iter_mut().zip(paths) {
            *slot = Some(read_source_within(path, format, limits));
        }
    } else {
        let chunk = paths.len().div_ceil(threads);
        std::thread::scope(|s| {
            for (slots, paths) in results.chunks_mut(chunk).zip(paths.chunks(chunk)) {
                s.spawn(move || {
                    for (slot, path) in slots.iter_mut().zip(paths) {
                        *slot = Some(read_source_within(path, format, limits));
                    }
                });
            }
        });
    }
    let sources = results
        .into_iter()
        .map(|r| r.expect("every file was read"))
        .collect::<Result<Vec<_>, _>>()?;
    compile::compile_within(sources, limits)
}

/// [`load`], or the [embedded](embedded) database when `paths` is empty: an empty database list
/// (on the command line, in the state file, in a reload request) means "the embedded one".
pub fn load_or_embedded(
    paths: &[PathBuf],
    format: Option<Format>,
    limits: &Limits,
) -> Result<CompiledDb, DbError> {
    if paths.is_empty() {
        embedded::load()
    } else {
        load_within(paths, format, limits)
    }
}

/// Reads one database file (or directory, for [`Format::CidrDir`]) into ranges.
///
/// `format` forces the format; `None` detects it from the path and the content. Gzip-compressed
/// files (any format) are recognised by their magic bytes. A file without a single range is an
/// error ([`DbError::Empty`]): it is almost always the wrong file or the wrong format.
pub fn read_source(path: &Path, format: Option<Format>) -> Result<SourceRanges, DbError> {
    read_source_within(path, format, &Limits::default())
}

/// [`read_source`], refusing a file with more ranges than `limits` allow.
pub fn read_source_within(
    path: &Path,
    format: Option<Format>,
    limits: &Limits,
) -> Result<SourceRanges, DbError> {
    let format = match format {
        Some(f) => f,
        None => detect(path)?,
    };
    let out = Ranges::new(limits);
    let ranges = match format {
        Format::RangeCsv => range_csv::read(path, Format::RangeCsv, out)?,
        Format::Tor => tor::read(path, out)?,
        Format::Mmdb => mmdb::read(path, out)?,
        Format::MaxmindCsv => maxmind_csv::read(path, out)?,
        Format::CidrDir => cidr_dir::read(path, out)?,
        Format::Rir => rir::read(path, out)?,
        Format::Embedded => {
            return Err(DbError::Invalid {
                path: path.to_owned(),
                reason: "the embedded database is not read from a file".into(),
            });
        }
    };
    if ranges.v4.is_empty() && ranges.v6.is_empty() {
        return Err(DbError::Empty {
            path: path.to_owned(),
            format,
        });
    }
    Ok(SourceRanges {
        path: path.to_owned(),
        format,
        v4: ranges.v4,
        v6: ranges.v6,
    })
}

/// Guesses the format of a database file from its name and its first lines.
fn detect(path: &Path) -> Result<Format, DbError> {
    let meta = std::fs::metadata(path).map_err(|source| DbError::Io {
        op: "open",
        path: path.to_owned(),
        source,
    })?;
    if meta.is_dir() {
        return Ok(if maxmind_csv::blocks_files(path)?.is_empty() {
            Format::CidrDir
        } else {
            Format::MaxmindCsv
        });
    }
    let name = text::base_name(path);
    if name.ends_with(".mmdb") {
        return Ok(Format::Mmdb);
    }
    if name == "geoip" || name == "geoip6" {
        return Ok(Format::Tor);
    }
    if name.starts_with("delegated-") {
        return Ok(Format::Rir);
    }
    if name.contains("-blocks-ipv4") || name.contains("-blocks-ipv6") {
        return Ok(Format::MaxmindCsv);
    }
    if mmdb::looks_like_mmdb(path)? {
        return Ok(Format::Mmdb);
    }
    text::detect(path)
}

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
    /// [`Limits`] allow.
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

/// How much one load may produce per address family, from the table budget
/// (`--max-table-mib`, [`crate::datapath::DEFAULT_MAX_TABLE_MIB`] unless given).
///
/// Reading and compiling keep every range and every prefix in memory, so a file that is small
/// on disk but expands (an MMDB graph, gzip, short lines of wide unaligned ranges that split
/// into hundreds of prefixes each) could otherwise cost far more than the table it is for. The
/// budget in bytes bounds each: ranges read per family (per file, and all files together) and
/// prefixes compiled per family, each at most the budget's size in memory. A world database
/// (about 350,000 ranges and 600,000 prefixes per family, a 23 MiB table) uses a tenth of the
/// default 256 MiB.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub ranges: usize,
    pub prefixes: usize,
    /// The budget they come from, for messages.
    pub table_mib: usize,
}

impl Limits {
    pub fn for_table_mib(table_mib: usize) -> Self {
        let bytes = table_mib.saturating_mul(1 << 20);
        Self {
            ranges: bytes / std::mem::size_of::<Range>(),
            prefixes: bytes / std::mem::size_of::<Prefix>(),
            table_mib,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self::for_table_mib(crate::datapath::DEFAULT_MAX_TABLE_MIB)
    }
}

/// Both families' ranges of one file while it is read, at most [`Limits::ranges`] each.
#[derive(Debug)]
pub(crate) struct Ranges {
    pub v4: Vec<Range>,
    pub v6: Vec<Range>,
    limits: Limits,
}

impl Ranges {
    pub(crate) fn new(limits: &Limits) -> Self {
        Self {
            v4: Vec::new(),
            v6: Vec::new(),
            limits: *limits,
        }
    }

    /// Adds an IPv4 range (values below 2^32).
    pub(crate) fn push_v4(
        &mut self,
        start: u128,
        end: u128,
        country: CountryId,
    ) -> Result<(), LineProblem> {
        debug_assert!(start <= end && end <= u32::MAX as u128);
        push_within(&mut self.v4, &self.limits, "IPv4", start, end, country)
    }

    /// Adds an IPv6 range; the part inside `::ffff:0:0/96` goes to IPv4 (see the module docs).
    pub(crate) fn push_v6(
        &mut self,
        start: u128,
        end: u128,
        country: CountryId,
    ) -> Result<(), LineProblem> {
        debug_assert!(start <= end);
        const MAPPED: u128 = 0xffff_u128 << 32;
        const MAPPED_END: u128 = MAPPED | u32::MAX as u128;
        let limits = self.limits;
        let mut v6 = |start, end| push_within(&mut self.v6, &limits, "IPv6", start, end, country);
        if end < MAPPED || start > MAPPED_END {
            return v6(start, end);
        }
        if start < MAPPED {
            v6(start, MAPPED - 1)?;
        }
        if end > MAPPED_END {
            v6(MAPPED_END + 1, end)?;
        }
        self.push_v4(
            start.max(MAPPED) - MAPPED,
            end.min(MAPPED_END) - MAPPED,
            country,
        )
    }
}

fn push_within(
    list: &mut Vec<Range>,
    limits: &Limits,
    family: &'static str,
    start: u128,
    end: u128,
    country: CountryId,
) -> Result<(), LineProblem> {
    if list.len() >= limits.ranges {
        return Err(LineProblem::TooMany {
            family,
            limit: limits.ranges,
            table_mib: limits.table_mib,
        });
    }
    list.push(Range {
        start,
        end,
        country,
    });
    Ok(())
}

#[cfg(test)]
mod tests;
