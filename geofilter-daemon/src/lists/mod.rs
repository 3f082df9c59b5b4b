//! Blocklists (`geofilter list`): named sets of networks from files, URLs or the presets
//! Spamhaus DROP, FireHOL level 1 and ipsum, each with an action (drop or pass). The policy
//! switches a list on or off; the datapath holds each as prefixes with one bit of a list mask.
//!
//! Contract with the rest of the daemon:
//! - [`read_list`] reads list files into [`ListPrefixes`]: sorted, merged, disjoint inclusive
//!   ranges per family (IPv4 values below 2^32, IPv4-mapped IPv6 read as IPv4, as the country
//!   readers do), with [`ListCounts`]. Bad input fails with a [`ListError`] naming the file, the
//!   line and its text; a file without an entry is an error. Nothing is half-read.
//! - [`Lists`] holds the lists by name ([`ListEntry`] is what the state file keeps), keeps each
//!   list's last good copy under a cache folder the caller gives (the state folder), and does the
//!   verbs: [`Lists::add`], [`Lists::del`], [`Lists::update`], [`Lists::show`]. An update that
//!   fails keeps the last good addresses and copy.
//! - Fetching goes through the database download path ([`crate::geoip::download`]): staged,
//!   validated whole, renamed into place; conditional (ETag, Last-Modified) when a copy exists.
//!
//! Formats: see [`format`](ListFormat).

mod cache;
mod entry;
mod error;
mod format;
mod prefixes;
mod registry;
mod source;

pub use self::{
    cache::MAX_LIST_BYTES,
    entry::{
        ListAction, ListEntry, ListRow, ListSpec, MAX_LISTS, MAX_NAME, UpdateReport, check_name,
    },
    error::ListError,
    format::ListFormat,
    prefixes::{DEFAULT_MIN_SCORE, ListCounts, ListPrefixes, read_list, read_list_within},
    registry::Lists,
    source::{ListSource, Preset},
};

#[cfg(test)]
mod registry_tests;
#[cfg(test)]
mod tests;
