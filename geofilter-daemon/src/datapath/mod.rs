//! The kernel side as the daemon sees it: load the XDP program, install tables and policy, attach
//! to interfaces, pin, read counters.
//!
//! Tables and policy are installed by building a fresh inner map and swapping it into its
//! map-of-maps slot with one `bpf_map_update_elem`. The kernel keeps the old inner map alive until
//! every program run that looked it up has finished (RCU; see
//! <https://docs.kernel.org/bpf/map_of_maps.html>), so each packet sees the old state or the new,
//! never a mix, and no prefix is ever missing while a table is replaced.

mod asns;
mod attach;
pub mod bpffs;
pub mod compact;
mod counters;
pub mod dispatcher;
pub mod events;
mod exceptions;
mod features;
#[cfg(feature = "test-helpers")]
pub mod memory;
mod netlink;
pub mod owner;
mod probe;
pub mod stride;
mod tables;
#[cfg(feature = "test-helpers")]
pub mod variants;

pub use asns::ListMasks;
pub use attach::{AttachOptions, Attachment, XdpAttach, XdpModeChoice};
use aya::{
    Ebpf, EbpfError, EbpfLoader,
    maps::{Array, ArrayOfMaps, LpmTrie, MapData, MapError, PerCpuArray},
    programs::{Extension, ProgramError, Xdp},
};
pub use counters::{Counters, CountryCounters};
use geofilter_common::{Counter, POLICY_SCHEMA, Policy, maps as names};
pub use probe::Classification;
use tables::{FamilyTables, LiveTable};
pub use tables::{TableInput, TableStats};

use crate::{family::Family, geoip, paths::PinLayout};

/// The program object built by `build.rs`; empty when bpf-linker was missing at build time.
static PROGRAM_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/geofilter"));

#[derive(Debug, thiserror::Error)]
pub enum DatapathError {
    #[error(transparent)]
    Kernel(#[from] features::Missing),
    #[error(
        "this geofilter binary was built without its XDP program (bpf-linker was missing); \
         rebuild it with `cargo xtask build`"
    )]
    NotBuilt,
    #[error("failed to load the XDP program object: {0}")]
    Object(#[source] EbpfError),
    #[error("the kernel refused the XDP program: {0}")]
    Program(#[source] ProgramError),
    #[error(transparent)]
    TooManyListed(#[from] asns::TooManyListed),
    #[error("reading the number of possible CPUs: {0}")]
    Cpus(#[source] std::io::Error),
    #[error("map {name}: {source}")]
    Map {
        name: &'static str,
        #[source]
        source: MapError,
    },
    #[error("map {name} is missing from the program object")]
    MissingMap { name: &'static str },
    #[error("attaching to interface {iface}: {source}")]
    Attach {
        iface: String,
        #[source]
        source: ProgramError,
    },
    #[error("interface {iface}: the kernel gave no BPF link for the attachment: {source}")]
    Link {
        iface: String,
        #[source]
        source: aya::programs::links::LinkError,
    },
    #[error(
        "the pinned geofilter state has policy schema {found}, this geofilter uses {POLICY_SCHEMA}: \
         it cannot be adopted. Run `geofilter unload` (this detaches the old filter) and start again"
    )]
    Schema { found: u32 },
    #[error(
        "interface {iface} already has an XDP program that this geofilter did not attach \
         (see `ip link show dev {iface}`); {}",
        if *forced {
            "it is held by another process's BPF link (another geofilter with a different pin \
             root, a libxdp dispatcher, ...), which --force cannot remove: stop that process or \
             remove its pinned link"
        } else {
            "refusing to replace it. `geofilter run --force` replaces a program attached with \
             `ip link` or xdp-loader; see README \"Other XDP programs\""
        }
    )]
    Foreign { iface: String, forced: bool },
    /// Boxed: the largest error by far, and rare.
    #[error(transparent)]
    Dispatcher(Box<dispatcher::DispatcherError>),
    #[error("why probe: {0}")]
    Probe(String),
    #[error("compiling table {name}: {source}")]
    Table {
        name: &'static str,
        #[source]
        source: stride::BuildError,
    },
    #[error(
        "table {name} would need {needed_mib} MiB ({pages} pages of 4 KiB), more than the \
         {limit_mib} MiB limit (--max-table-mib); nothing was changed"
    )]
    TooLarge {
        name: &'static str,
        pages: usize,
        needed_mib: usize,
        limit_mib: usize,
    },
    #[error("pinned map {name} cannot be adopted: {detail}")]
    BadPin { name: &'static str, detail: String },
    #[error(transparent)]
    Bpffs(#[from] bpffs::BpffsError),
    #[error("{what} {path}: {source}")]
    Pin {
        what: &'static str,
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl From<dispatcher::DispatcherError> for DatapathError {
    fn from(e: dispatcher::DispatcherError) -> Self {
        Self::Dispatcher(Box::new(e))
    }
}

pub(crate) fn map_err(name: &'static str) -> impl FnOnce(MapError) -> DatapathError {
    move |source| DatapathError::Map { name, source }
}

/// Loads `object` with `loader` and its XDP program into the kernel (the verifier runs here).
pub(crate) fn load_program(loader: &mut EbpfLoader, object: &[u8]) -> Result<Ebpf, DatapathError> {
    if object.is_empty() {
        return Err(DatapathError::NotBuilt);
    }
    let mut ebpf = loader.load(object).map_err(DatapathError::Object)?;
    xdp_program(&mut ebpf)?
        .load()
        .map_err(DatapathError::Program)?;
    probe::why_program_mut(&mut ebpf)?
        .load()
        .map_err(DatapathError::Program)?;
    Ok(ebpf)
}

/// The object's XDP program.
pub(crate) fn xdp_program(ebpf: &mut Ebpf) -> Result<&mut Xdp, DatapathError> {
    ebpf.program_mut(names::PROGRAM)
        .ok_or(DatapathError::Program(ProgramError::NotLoaded))?
        .try_into()
        .map_err(DatapathError::Program)
}

/// Takes map `name` out of `ebpf` as its typed handle.
pub(crate) fn take_map<T>(ebpf: &mut Ebpf, name: &'static str) -> Result<T, DatapathError>
where
    T: TryFrom<aya::maps::Map, Error = MapError>,
{
    ebpf.take_map(name)
        .ok_or(DatapathError::MissingMap { name })?
        .try_into()
        .map_err(map_err(name))
}

type PolicyMap = Array<MapData, Policy>;

/// A loaded (verified) program and handles on all its maps.
pub struct Datapath {
    ebpf: Ebpf,
    /// The maps were adopted from an earlier daemon's pins (see [`Datapath::load_pinned`]).
    pub adopted: bool,
    policy: ArrayOfMaps<MapData, PolicyMap>,
    v4: FamilyTables,
    v6: FamilyTables,
    except_v4: LpmTrie<MapData, [u8; 4], u32>,
    except_v6: LpmTrie<MapData, [u8; 16], u32>,
    country_counters: PerCpuArray<MapData, Counter>,
    class_counters: PerCpuArray<MapData, Counter>,
    asn_counters: PerCpuArray<MapData, Counter>,
    list_counters: PerCpuArray<MapData, Counter>,
    /// The listed index of each ASN the tables' nets carry (see `asns.rs`).
    listed: std::collections::BTreeMap<u32, u16>,
    /// The enabled lists (see `asns.rs`).
    list_masks: asns::ListMasks,
    /// Until the daemon takes them to read events ([`Datapath::take_events`]).
    events: Option<events::EventMaps>,
}

impl Datapath {
    /// Loads the embedded program into the kernel (the verifier runs here) with an all-pass
    /// policy and empty tables. Nothing is pinned: the program and maps go away with `self`.
    pub fn load() -> Result<Self, DatapathError> {
        Self::load_with(None)
    }

    /// Loads the program with its maps pinned under `layout`, so the filter outlives this
    /// process (links are pinned by [`Datapath::attach`]).
    ///
    /// Maps already pinned there (left by an earlier daemon, which may have been killed) are
    /// adopted as they are: the live policy, tables, exceptions and counters carry on, and
    /// [`Datapath::adopted`] says so. The new program is only swapped into the existing links by
    /// `attach`, so filtering never stops.
    pub fn load_pinned(layout: &PinLayout) -> Result<Self, DatapathError> {
        Self::load_with(Some(layout))
    }

    fn load_with(pin: Option<&PinLayout>) -> Result<Self, DatapathError> {
        features::require()?;
        let mut loader = EbpfLoader::new();
        let map_paths: Vec<(&str, std::path::PathBuf)> = match pin {
            Some(layout) => names::PINNED.iter().map(|&n| (n, layout.map(n))).collect(),
            None => Vec::new(),
        };
        let adopted = match pin {
            Some(layout) => attach::prepare_pin_dirs(layout)?,
            None => false,
        };
        for (name, path) in &map_paths {
            loader.map_pin_path(name, path.as_path());
        }
        let mut ebpf = load_program(&mut loader, PROGRAM_OBJECT)?;
        if let Some(layout) = pin {
            attach::pin_program(xdp_program(&mut ebpf)?, layout)?;
        }
        let policy = take_map(&mut ebpf, names::POLICY)?;
        let outer_v4 = take_map(&mut ebpf, names::TABLE_V4)?;
        let outer_v6 = take_map(&mut ebpf, names::TABLE_V6)?;
        let except_v4 = take_map(&mut ebpf, names::EXCEPT_V4)?;
        let except_v6 = take_map(&mut ebpf, names::EXCEPT_V6)?;
        let country_counters = take_map(&mut ebpf, names::COUNTRY_COUNTERS)?;
        let class_counters = take_map(&mut ebpf, names::CLASS_COUNTERS)?;
        let asn_counters = take_map(&mut ebpf, names::ASN_COUNTERS)?;
        let list_counters = take_map(&mut ebpf, names::LIST_COUNTERS)?;
        let events = Some(events::EventMaps::take(&mut ebpf)?);
        let mut datapath = Self {
            ebpf,
            adopted,
            policy,
            v4: FamilyTables {
                family: Family::V4,
                name: names::TABLE_V4,
                outer: outer_v4,
                live: LiveTable::placeholder(Family::V4, names::TABLE_V4)?,
                exceptions: Default::default(),
                max_pages: geoip::DEFAULT_MAX_TABLE_MIB * tables::PAGES_PER_MIB,
            },
            v6: FamilyTables {
                family: Family::V6,
                name: names::TABLE_V6,
                outer: outer_v6,
                live: LiveTable::placeholder(Family::V6, names::TABLE_V6)?,
                exceptions: Default::default(),
                max_pages: geoip::DEFAULT_MAX_TABLE_MIB * tables::PAGES_PER_MIB,
            },
            except_v4,
            except_v6,
            country_counters,
            class_counters,
            asn_counters,
            list_counters,
            listed: Default::default(),
            list_masks: Default::default(),
            events,
        };
        if adopted {
            let schema = datapath.policy()?.schema;
            if schema != POLICY_SCHEMA {
                return Err(DatapathError::Schema { found: schema });
            }
            datapath.adopt_exceptions_and_tables()?;
        } else {
            datapath.set_policy(&Policy::pass_all())?;
            datapath.install_inputs(&TableInput::default(), &TableInput::default())?;
        }
        Ok(datapath)
    }

    /// The event maps, for the daemon's reader (once; later calls get `None`).
    pub fn take_events(&mut self) -> Option<events::EventMaps> {
        self.events.take()
    }

    /// The event maps while nobody has taken them (the packet tests read them directly).
    pub fn events_mut(&mut self) -> Option<&mut events::EventMaps> {
        self.events.as_mut()
    }

    /// The loaded program, e.g. for `BPF_PROG_TEST_RUN`.
    pub fn program(&self) -> &Xdp {
        self.ebpf
            .program(names::PROGRAM)
            .and_then(|p| p.try_into().ok())
            .expect("program was loaded in Datapath::load")
    }

    fn program_mut(&mut self) -> &mut Xdp {
        self.ebpf
            .program_mut(names::PROGRAM)
            .and_then(|p| p.try_into().ok())
            .expect("program was loaded in Datapath::load")
    }

    /// The program in slot 0 of a dispatcher attached nowhere (see
    /// [`dispatcher::standalone`]); the returned object holds the dispatcher, whose program
    /// (`xdp_dispatcher`) runs geofilter as long as `self` lives.
    #[cfg(feature = "test-helpers")]
    pub fn standalone_dispatcher(&mut self) -> Result<Ebpf, DatapathError> {
        Ok(dispatcher::standalone(self.extension_mut()?)?)
    }

    /// The dispatcher-slot twin of the program (loaded when it first joins a dispatcher).
    fn extension_mut(&mut self) -> Result<&mut Extension, DatapathError> {
        self.ebpf
            .program_mut(names::EXT_PROGRAM)
            .ok_or(DatapathError::Program(ProgramError::NotLoaded))?
            .try_into()
            .map_err(DatapathError::Program)
    }

    /// Replaces the policy in one step.
    pub fn set_policy(&mut self, policy: &Policy) -> Result<(), DatapathError> {
        let mut inner = PolicyMap::create(1, 0).map_err(map_err(names::POLICY))?;
        inner.set(0, policy, 0).map_err(map_err(names::POLICY))?;
        self.policy
            .set(0, &inner, 0)
            .map_err(map_err(names::POLICY))
    }

    /// The policy the program is using now.
    pub fn policy(&self) -> Result<Policy, DatapathError> {
        let inner: PolicyMap = self.policy.get(&0, 0).map_err(map_err(names::POLICY))?;
        inner.get(&0, 0).map_err(map_err(names::POLICY))
    }
}
