//! Program objects other than the filter, for tests and `cargo xtask bench`; the daemon never
//! attaches them.
//!
//! - [`LPM_OBJECT`]: geofilter with kernel LPM tries as its country tables (same parsing,
//!   policy, exceptions and counters, same map names). [`LpmDatapath`] loads it and fills its
//!   tries; it is the benchmark baseline and an oracle independent of the stride tables.
//! - [`BENCH_OBJECT`]: the benchmark harness programs (see [`geofilter_common::bench`]).

use std::time::Duration;

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, ArrayOfMaps, LpmTrie, MapData, lpm_trie::Key},
    programs::Xdp,
};
use geofilter_common::{Policy, PrefixInfo, maps as names};

use super::{DatapathError, load_program, map_err, take_map};
use crate::geoip::Prefix;

/// The `geofilter-lpm` object (empty when bpf-linker was missing at build time).
pub static LPM_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/geofilter-lpm"));

/// The `geofilter-bench` object (empty when bpf-linker was missing at build time).
pub static BENCH_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/geofilter-bench"));

/// `BPF_F_NO_PREALLOC`: mandatory for LPM tries (kernel/bpf/lpm_trie.c, `trie_alloc`), and the
/// inner map must carry the same flags as the template the program was verified against.
const BPF_F_NO_PREALLOC: u32 = 1;

type LpmV4 = LpmTrie<MapData, [u8; 4], PrefixInfo>;
type LpmV6 = LpmTrie<MapData, [u8; 16], PrefixInfo>;

/// The LPM-trie variant, loaded and verified, with handles on its policy and tables.
pub struct LpmDatapath {
    ebpf: Ebpf,
    policy: ArrayOfMaps<MapData, Array<MapData, Policy>>,
    table_v4: ArrayOfMaps<MapData, LpmV4>,
    table_v6: ArrayOfMaps<MapData, LpmV6>,
}

impl LpmDatapath {
    /// Loads the variant (unpinned) with an all-pass policy and empty tables.
    pub fn load() -> Result<Self, DatapathError> {
        let mut ebpf = load_program(&mut EbpfLoader::new(), LPM_OBJECT)?;
        let policy = take_map(&mut ebpf, names::POLICY)?;
        let table_v4 = take_map(&mut ebpf, names::TABLE_V4)?;
        let table_v6 = take_map(&mut ebpf, names::TABLE_V6)?;
        let mut lpm = Self {
            ebpf,
            policy,
            table_v4,
            table_v6,
        };
        lpm.set_policy(&Policy::pass_all())?;
        lpm.install_tables(&[], &[])?;
        Ok(lpm)
    }

    pub fn program(&self) -> &Xdp {
        self.ebpf
            .program(names::PROGRAM)
            .and_then(|p| p.try_into().ok())
            .expect("program was loaded in LpmDatapath::load")
    }

    pub fn program_mut(&mut self) -> &mut Xdp {
        self.ebpf
            .program_mut(names::PROGRAM)
            .and_then(|p| p.try_into().ok())
            .expect("program was loaded in LpmDatapath::load")
    }

    /// Replaces the policy in one step.
    pub fn set_policy(&mut self, policy: &Policy) -> Result<(), DatapathError> {
        let mut inner = Array::<MapData, Policy>::create(1, 0).map_err(map_err(names::POLICY))?;
        inner.set(0, policy, 0).map_err(map_err(names::POLICY))?;
        self.policy
            .set(0, &inner, 0)
            .map_err(map_err(names::POLICY))
    }

    /// Builds new tries holding exactly `v4` and `v6` and swaps them in.
    pub fn install_tables(&mut self, v4: &[Prefix], v6: &[Prefix]) -> Result<(), DatapathError> {
        let mut new_v4 = LpmV4::create(names::TABLE_CAPACITY, BPF_F_NO_PREALLOC)
            .map_err(map_err(names::TABLE_V4))?;
        fill(
            &mut new_v4,
            v4,
            |addr| (addr as u32).to_be_bytes(),
            names::TABLE_V4,
        )?;
        let mut new_v6 = LpmV6::create(names::TABLE_CAPACITY, BPF_F_NO_PREALLOC)
            .map_err(map_err(names::TABLE_V6))?;
        fill(&mut new_v6, v6, u128::to_be_bytes, names::TABLE_V6)?;
        self.table_v4
            .set(0, &new_v4, 0)
            .map_err(map_err(names::TABLE_V4))?;
        self.table_v6
            .set(0, &new_v6, 0)
            .map_err(map_err(names::TABLE_V6))
    }

    /// Runs a `why` probe from `addr` through the variant (see [`super::Datapath::classify`]).
    pub fn classify(&self, addr: std::net::IpAddr) -> Result<super::Classification, DatapathError> {
        super::probe::classify(&self.ebpf, addr)
    }

    /// The loaded object, e.g. for its counters.
    pub fn ebpf(&self) -> &Ebpf {
        &self.ebpf
    }
}

fn fill<const N: usize>(
    trie: &mut LpmTrie<MapData, [u8; N], PrefixInfo>,
    prefixes: &[Prefix],
    bytes: impl Fn(u128) -> [u8; N],
    name: &'static str,
) -> Result<(), DatapathError> {
    for prefix in prefixes {
        let key = Key::new(u32::from(prefix.len), bytes(prefix.addr));
        insert_retrying(trie, &key, prefix.info, name)?;
    }
    Ok(())
}

/// LPM trie nodes are allocated with GFP_NOWAIT (bpf_mem_alloc since 6.14), so a burst of
/// inserts can see a transient ENOMEM that succeeds when retried.
fn insert_retrying<const N: usize>(
    trie: &mut LpmTrie<MapData, [u8; N], PrefixInfo>,
    key: &Key<[u8; N]>,
    info: PrefixInfo,
    name: &'static str,
) -> Result<(), DatapathError> {
    let mut attempts = 0;
    loop {
        match trie.insert(key, info, 0) {
            Ok(()) => return Ok(()),
            Err(aya::maps::MapError::SyscallError(e))
                if e.io_error.raw_os_error() == Some(libc::ENOMEM) && attempts < 100 =>
            {
                attempts += 1;
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => return Err(map_err(name)(e)),
        }
    }
}
