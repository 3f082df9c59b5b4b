//! What a client asks. Every field is parsed on the way in (countries, CIDRs, port ranges,
//! addresses), so a request with one bad item is refused whole when it is decoded, before any
//! handler runs, and the handlers work on values that are already valid.

use std::{collections::BTreeSet, net::IpAddr, path::PathBuf};

use geofilter_common::CountryId;
use serde::{Deserialize, Serialize};

use crate::{
    policy::{Mode, UnknownAction},
    rules::{Cidr, PortRange},
};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Replied to with a [`StatusReply`](super::StatusReply).
    Status {},
    /// Replied to with a [`StatsReply`](super::StatsReply).
    Stats {},
    /// Detach, unpin, and stop the daemon ([`UnloadReply`](super::UnloadReply)).
    Unload {},
    /// What the live program does with packets from these addresses; at most
    /// [`MAX_WHY_ADDRESSES`](super::MAX_WHY_ADDRESSES) per request. One
    /// [`WhyAnswer`](super::WhyAnswer) per address, in order.
    Why { addresses: Vec<IpAddr> },
    /// The exceptions ([`Exceptions`](super::Exceptions)).
    ExceptList {},
    /// Keep the change that is waiting for confirmation (see [`ChangeOptions::confirm_s`]);
    /// [`ConfirmReply`](super::ConfirmReply).
    Confirm {},
    /// Change the policy; replied to with the policy after the change.
    Change {
        change: Change,
        #[serde(default)]
        opts: ChangeOptions,
    },
    /// Re-read the database files (the given ones, or the current ones; with `embedded`, the
    /// database built into the binary) and swap the tables ([`ReloadReply`](super::ReloadReply)).
    Reload {
        #[serde(default)]
        dbs: Vec<PathBuf>,
        #[serde(default)]
        embedded: bool,
        /// ASN database files to load instead of the current ones (empty: the current ones are
        /// re-read when ASN data is in the tables).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        asn_dbs: Vec<PathBuf>,
        /// As in [`ChangeOptions`]: a reload that would drop this address is refused unless
        /// `force` is set.
        #[serde(default)]
        caller: Option<IpAddr>,
        #[serde(default)]
        force: bool,
    },
    /// Sampled packet events, streamed: one [`LogLine`](super::LogLine) response per line, a
    /// `started` line first.
    Log(LogRequest),
    /// The most-sampled source prefixes and countries ([`TopReply`](super::TopReply)).
    Top {
        /// Over the events of this many seconds back (at least 1).
        window_s: u64,
    },
    /// Add a blocklist, read whole, and use it ([`ListRows`](super::ListRows): the new one).
    ListAdd {
        spec: super::ListSpec,
        /// As in [`ChangeOptions`]: refused if the list would drop this address, unless `force`.
        #[serde(default)]
        caller: Option<IpAddr>,
        #[serde(default)]
        force: bool,
    },
    /// Remove a list ([`ListRows`](super::ListRows): the one removed).
    ListDel { name: String },
    /// Fetch lists again ([`ListUpdateReply`](super::ListUpdateReply)).
    ListUpdate {
        #[serde(default)]
        name: Option<String>,
    },
    /// Switch a list on or off: a policy swap, O(1) ([`ListRows`](super::ListRows): the list).
    ListEnable {
        name: String,
        on: bool,
        #[serde(default)]
        caller: Option<IpAddr>,
        #[serde(default)]
        force: bool,
    },
    /// Every list ([`ListRows`](super::ListRows)).
    ListShow {},
}

/// What `geofilter log` asks for.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogRequest {
    /// Keep the connection open and stream events as they come; without it, the recent events
    /// the daemon kept, then the end.
    #[serde(default)]
    pub follow: bool,
    /// Only these countries (all when empty).
    #[serde(default, with = "crate::policy::country_codes")]
    pub countries: BTreeSet<CountryId>,
    /// With `follow`: have the program report passed packets too while this client listens.
    #[serde(default)]
    pub passed: bool,
}

// Variants without fields are written `Name {}`: serde ignores unknown fields on unit variants of
// an internally tagged enum even under `deny_unknown_fields`, and a request with a field we do not
// know is more likely a mistake than something to ignore.

/// One policy change. Each is applied whole or not at all.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Change {
    Block {
        /// Codes on the wire (`["RU"]`), read with the same parser as the command line.
        #[serde(with = "crate::policy::country_codes")]
        countries: BTreeSet<CountryId>,
        /// ASNs on the wire (`["AS13335"]`).
        #[serde(
            default,
            with = "crate::keys::asn_names",
            skip_serializing_if = "BTreeSet::is_empty"
        )]
        asns: BTreeSet<u32>,
    },
    Unblock {
        #[serde(with = "crate::policy::country_codes")]
        countries: BTreeSet<CountryId>,
        #[serde(
            default,
            with = "crate::keys::asn_names",
            skip_serializing_if = "BTreeSet::is_empty"
        )]
        asns: BTreeSet<u32>,
    },
    Mode {
        mode: Mode,
    },
    Unknown {
        action: UnknownAction,
    },
    Monitor {
        on: bool,
    },
    ExceptAdd {
        cidrs: Vec<Cidr>,
        #[serde(default)]
        drop: bool,
    },
    ExceptDel {
        cidrs: Vec<Cidr>,
    },
    PortsSet {
        #[serde(default)]
        only: Vec<PortRange>,
        #[serde(default)]
        exempt: Vec<PortRange>,
    },
    PortsClear {},
}

/// How a change is applied.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangeOptions {
    /// The address the operator is connected from (the CLI takes it from `SSH_CONNECTION` or
    /// `SSH_CLIENT`). A change that would drop it is refused unless it is an exception or
    /// `force` is set.
    #[serde(default)]
    pub caller: Option<IpAddr>,
    #[serde(default)]
    pub force: bool,
    /// Roll the change back unless `confirm` arrives within this many seconds (1 to
    /// [`MAX_CONFIRM_S`](super::MAX_CONFIRM_S)).
    #[serde(default)]
    pub confirm_s: Option<u64>,
}
