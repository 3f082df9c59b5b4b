//! The database under test and what the benchmark draws from it: the blocked countries, the
//! source addresses, and the blocked address space as ranges (nftables) and CIDRs (ipset).

use std::{
    collections::{BTreeSet, HashSet},
    path::PathBuf,
    time::{Duration, Instant},
};

use geofilter_common::CountryId;
pub use geofilter_daemon::family::Family;
use geofilter_daemon::{
    country::code_str,
    geoip::{self, CompiledDb, Prefix},
};
use geofilter_tests::rng::Rng;

/// Distinct source addresses per family for the test_run section and the live generator.
pub const SOURCES: usize = 16_384;

pub struct World {
    pub paths: Vec<PathBuf>,
    pub db: CompiledDb,
    /// How long `geoip::load` took (the first time; `control` measures it again).
    pub compile: Duration,
    /// Every second country of the database (by id): half the world, so the blocked set is as
    /// fragmented as a world table gets, and no interval set can collapse it.
    pub blocked: BTreeSet<CountryId>,
}

impl World {
    pub fn load(paths: &[PathBuf]) -> Self {
        let start = Instant::now();
        let db = geoip::load(paths, None)
            .unwrap_or_else(|e| panic!("loading the database {paths:?}: {e}"));
        let compile = start.elapsed();
        let blocked = db.countries().into_iter().step_by(2).collect();
        Self {
            paths: paths.to_vec(),
            db,
            compile,
            blocked,
        }
    }

    pub fn blocked_codes(&self) -> Vec<String> {
        self.blocked.iter().map(|&c| code_str(c)).collect()
    }

    /// `n` distinct addresses: a prefix drawn uniformly from those `keep` accepts, then an
    /// address drawn uniformly inside it. Every prefix is equally likely, so long prefixes (deep
    /// table levels) are drawn as often as short ones.
    pub fn sources(
        &self,
        family: Family,
        n: usize,
        rng: &mut Rng,
        keep: impl Fn(&Prefix) -> bool,
    ) -> Vec<u128> {
        let prefixes: Vec<&Prefix> = self.prefixes(family).iter().filter(|p| keep(p)).collect();
        assert!(!prefixes.is_empty(), "no {family:?} prefixes to draw from");
        let bits = family.bits();
        let mut seen = HashSet::new();
        let mut out = Vec::with_capacity(n);
        let mut attempts = 0;
        while out.len() < n && attempts < n * 100 {
            attempts += 1;
            let p = rng.pick(&prefixes);
            let host = bits - u32::from(p.len);
            let random = u128::from(rng.next_u64()) << 64 | u128::from(rng.next_u64());
            let offset = if host == 0 { 0 } else { random >> (128 - host) };
            let addr = p.addr | offset;
            if seen.insert(addr) {
                out.push(addr);
            }
        }
        out
    }

    pub fn prefixes(&self, family: Family) -> &[Prefix] {
        match family {
            Family::V4 => &self.db.v4,
            Family::V6 => &self.db.v6,
        }
    }

    pub fn is_blocked(&self, p: &Prefix) -> bool {
        self.blocked.contains(&p.info.country)
    }

    /// The blocked address space as inclusive ranges, adjacent prefixes merged.
    pub fn blocked_ranges(&self, family: Family) -> Vec<(u128, u128)> {
        let bits = family.bits();
        let mut out: Vec<(u128, u128)> = Vec::new();
        for p in self.prefixes(family).iter().filter(|p| self.is_blocked(p)) {
            let host = bits - u32::from(p.len);
            let last = p.addr
                | if host == 128 {
                    u128::MAX
                } else {
                    (1 << host) - 1
                };
            match out.last_mut() {
                Some((_, end)) if end.checked_add(1) == Some(p.addr) => *end = last,
                _ => out.push((p.addr, last)),
            }
        }
        out
    }

    /// The same space as the fewest CIDR blocks (what ipset `hash:net` takes).
    pub fn blocked_cidrs(&self, family: Family) -> Vec<(u128, u8)> {
        let bits = family.bits();
        let mut out = Vec::new();
        for (mut start, end) in self.blocked_ranges(family) {
            loop {
                // The largest aligned block at `start` that does not pass `end`.
                let mut host = if start == 0 {
                    bits
                } else {
                    start.trailing_zeros().min(bits)
                };
                while host > 0 && block_end(start, host).is_none_or(|e| e > end) {
                    host -= 1;
                }
                out.push((start, (bits - host) as u8));
                match block_end(start, host).and_then(|e| e.checked_add(1)) {
                    Some(next) if next <= end => start = next,
                    _ => break,
                }
            }
        }
        out
    }
}

fn block_end(start: u128, host: u32) -> Option<u128> {
    if host == 128 {
        (start == 0).then_some(u128::MAX)
    } else {
        start.checked_add((1 << host) - 1)
    }
}

/// The address as the bytes the benchmark's source array holds (`[u8; 16]`, IPv4 first).
pub fn source_bytes(family: Family, addr: u128) -> [u8; 16] {
    let mut out = [0u8; 16];
    match family {
        Family::V4 => out[..4].copy_from_slice(&(addr as u32).to_be_bytes()),
        Family::V6 => out = addr.to_be_bytes(),
    }
    out
}
