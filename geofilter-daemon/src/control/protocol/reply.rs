//! What the daemon answers, one type per request, shared by the daemon (which fills them), the
//! CLI (which renders them) and the tests (which read them).
//!
//! `--json` prints these as they are: the field names are the documented output (README,
//! "Machine-readable output"), so renaming one breaks scripts. The CLI prints them through
//! `serde_json::Value`, whose objects keep their keys sorted, so the output stays byte for byte
//! what earlier versions printed whatever the order of the fields here.

use std::{collections::BTreeMap, net::IpAddr, path::PathBuf};

use geofilter_common::Verdict;
use serde::{Deserialize, Serialize};

use crate::{
    datapath::{XdpModeChoice, events::LoggedEvent},
    geoip::SourceSummary,
    policy::DesiredPolicy,
    rules::{Cidr, ExceptionAction},
};

/// Any reply; on the wire it is the inner value alone (the request says which to expect).
#[derive(Clone, Debug, Serialize)]
#[serde(untagged)]
pub enum Reply {
    Status(Box<StatusReply>),
    /// The policy after a change.
    Policy(DesiredPolicy),
    Stats(StatsReply),
    Why(Vec<WhyAnswer>),
    Exceptions(Exceptions),
    Confirmed(ConfirmReply),
    Reloaded(ReloadReply),
    Unloading(UnloadReply),
    Top(TopReply),
    Lists(super::ListRows),
    ListUpdated(super::ListUpdateReply),
}

/// One line of a `log` stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogLine {
    /// First: what the events are (they are sampled) and whether more will follow.
    Started(LogStarted),
    Event(LoggedEvent),
    /// This follower fell behind and `missed` events were skipped for it.
    Lagged {
        missed: u64,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogStarted {
    pub follow: bool,
    /// The kernel's limit: events per second per CPU, and the burst.
    pub rate_per_cpu: u32,
    pub burst: u32,
    /// The daemon records events with no client connected (`run --event-history`).
    pub history_always: bool,
}

/// `top`: the most-sampled prefixes and countries over a window. Counts are of sampled events,
/// not packets: under the rate limit they show who drops most, not how much.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopReply {
    pub window_s: u64,
    /// Sampled events in the window.
    pub events: u64,
    pub rate_per_cpu: u32,
    pub history_always: bool,
    /// IPv4 /24 and IPv6 /48 aggregates of the sources, most events first.
    pub prefixes: Vec<TopEntry>,
    pub countries: Vec<TopEntry>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopEntry {
    /// A prefix (`192.0.2.0/24`) or a country code.
    pub key: String,
    pub country: String,
    pub events: u64,
}

/// `except list`: each exception and what it does.
pub type Exceptions = BTreeMap<Cidr, ExceptionAction>;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReply {
    pub interfaces: Vec<InterfaceStatus>,
    pub database: DatabaseStatus,
    pub policy: DesiredPolicy,
    /// Seconds until the change waiting for `confirm` rolls back, if one waits.
    pub pending_confirm_s: Option<u64>,
    /// The pin root as configured.
    pub pin_root: PathBuf,
    /// Where the pins are and whether they outlive the daemon, in words.
    pub pins: String,
    pub state_file: Option<PathBuf>,
    pub uptime_s: u64,
    /// The policy source this daemon follows (`run --policy`), `None` when it has none.
    #[serde(default)]
    pub policy_source: Option<PolicySourceStatus>,
}

/// A followed policy source, for the fleet view. Times are Unix seconds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicySourceStatus {
    pub source: String,
    /// SHA-256 of the document in force (`sha256sum` of the published file).
    pub revision: Option<String>,
    pub etag: Option<String>,
    pub applied_at: Option<u64>,
    pub last_check: Option<u64>,
    pub last_success: Option<u64>,
    pub last_error: Option<String>,
    /// Failed checks since start.
    pub errors: u64,
    /// The last document read from the source is the one enforced (`/ready`).
    pub ready: bool,
    /// The source's addresses, always passed.
    pub exempt: Vec<std::net::IpAddr>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterfaceStatus {
    pub name: String,
    pub xdp_mode: XdpModeChoice,
    /// Every XDP program on the interface, in run order: geofilter's and others' (a libxdp
    /// dispatcher's slots, or the one program attached directly).
    #[serde(default)]
    pub programs: Vec<ProgramStatus>,
}

/// One XDP program on an interface.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgramStatus {
    /// Dispatcher slot (run order); 0 for a program attached alone.
    pub slot: usize,
    /// The kernel's name of the program (at most 15 bytes).
    pub name: String,
    /// The kernel's program id (`bpftool prog show id N`).
    pub id: u32,
    /// Run priority in a libxdp dispatcher (lower runs first); none outside one.
    pub priority: Option<u32>,
    /// `geofilter`, `libxdp` (another dispatcher component), or `other` (attached alone by
    /// something else).
    pub owner: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatabaseStatus {
    /// The files, in `--db` order; empty for the embedded database.
    pub paths: Vec<PathBuf>,
    pub sources: Vec<SourceSummary>,
    pub prefixes_v4: usize,
    pub prefixes_v6: usize,
    pub countries: usize,
    /// Kernel bytes of each family's live country table (its pages of nodes).
    pub table_bytes_v4: usize,
    pub table_bytes_v6: usize,
    pub reloads: u64,
    pub reload_failures: u64,
}

/// The kernel's counters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsReply {
    pub countries: Vec<CountryCounters>,
    /// Per packet class, by [`PacketClass::name`](geofilter_common::PacketClass::name).
    pub classes: BTreeMap<String, Count>,
    /// Per ASN the policy names (`AS13335`): packets from its addresses, by verdict.
    #[serde(default)]
    pub asns: Vec<NamedCounters>,
    /// Per blocklist: packets it decided, by verdict.
    #[serde(default)]
    pub lists: Vec<NamedCounters>,
}

/// Counters of one ASN (`AS13335`) or list (its name), by verdict.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamedCounters {
    pub name: String,
    pub pass: Count,
    pub drop: Count,
    pub would_drop: Count,
}

impl StatsReply {
    /// The count for `country` (a code, or `unknown`) under `verdict`; zero if not counted.
    pub fn count(&self, country: &str, verdict: Verdict) -> Count {
        self.countries
            .iter()
            .find(|c| c.country == country)
            .map_or_else(Count::default, |c| c.count(verdict))
    }
}

/// One country's counters; `country` is its code, or `unknown`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CountryCounters {
    pub country: String,
    pub pass: Count,
    pub drop: Count,
    /// Monitor mode: the policy said drop, the packet passed.
    pub would_drop: Count,
}

impl CountryCounters {
    pub fn count(&self, verdict: Verdict) -> Count {
        match verdict {
            Verdict::Pass => self.pass,
            Verdict::Drop => self.drop,
            Verdict::WouldDrop => self.would_drop,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Count {
    pub packets: u64,
    pub bytes: u64,
}

/// What happens to a packet from one address, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WhyAnswer {
    pub address: IpAddr,
    /// The IPv4 address an IPv6 address embeds, which the program filters it as.
    pub filtered_as: Option<IpAddr>,
    /// `None`: no database places the address.
    pub country: Option<String>,
    /// What happens to the packet: `pass` in monitor mode even where the policy would drop.
    pub verdict: Outcome,
    /// The database prefix that placed the address, as `addr/len`.
    pub prefix: Option<String>,
    /// The database file (or the embedded database's label) the prefix came from.
    pub source: Option<String>,
    /// The exception that decided, if one did.
    pub exception: Option<ExceptionMatch>,
    /// The port scope the country verdict holds for, in words; `None` for every port.
    pub ports: Option<String>,
    /// The autonomous system the address is in, and its organisation, as the ASN database has
    /// them.
    #[serde(default)]
    pub asn: Option<u32>,
    #[serde(default)]
    pub organisation: Option<String>,
    /// Every blocklist holding the address.
    #[serde(default)]
    pub lists: Vec<String>,
    /// What decided: `exception`, `ports`, `list`, `asn` or `country`.
    #[serde(default)]
    pub decided_by: String,
    /// The list that decided, when one did.
    #[serde(default)]
    pub deciding_list: Option<String>,
    pub reason: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Pass,
    Drop,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExceptionMatch {
    pub cidr: Cidr,
    pub action: ExceptionAction,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfirmReply {
    pub confirmed: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadReply {
    pub prefixes_v4: usize,
    pub prefixes_v6: usize,
    pub elapsed_ms: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnloadReply {
    pub unloading: bool,
}

/// The name serde gives a value (`allow-only`, `drop`), for text output.
pub fn wire_name<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        _ => "?".into(),
    }
}

// What the CLI prints for verbs the daemon does not answer alone, typed here beside the replies
// so scripts and tests read every `--json` output the same way.

/// `unload --json`: who unloaded (`daemon`, `pins`: the CLI removed them, `nothing`), and the
/// pin root it looked at.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnloadOutput {
    pub unloaded: Unloaded,
    pub pin_root: PathBuf,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Unloaded {
    Daemon,
    Pins,
    Nothing,
}

/// `db update --json`: what was stored, and the daemon's reload if there was one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateOutput {
    pub stored: Vec<PathBuf>,
    pub urls: Vec<String>,
    pub bytes: u64,
    pub prefixes_v4: usize,
    pub prefixes_v6: usize,
    pub countries: usize,
    pub reloaded: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reload: Option<ReloadReply>,
}

/// One line of `db check --json`: a valid file's summary, or why it is invalid.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum CheckOutput {
    Valid {
        file: PathBuf,
        /// Always `true`.
        ok: bool,
        format: crate::geoip::SourceFormat,
        ranges_v4: usize,
        ranges_v6: usize,
        prefixes_v4: usize,
        prefixes_v6: usize,
        countries: usize,
        built: Option<String>,
        warnings: Vec<String>,
    },
    Invalid {
        file: PathBuf,
        /// Always `false`.
        ok: bool,
        error: String,
    },
}
