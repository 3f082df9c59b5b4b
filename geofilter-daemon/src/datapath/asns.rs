//! Listed ASNs: which listed index each ASN the policy names has, written into the live tables'
//! nets of that ASN (layout: `geofilter_common::table`, "Nets").
//!
//! A change of the listed ASNs is three steps, so that no packet sees a half-made change:
//! 1. [`Datapath::list_asns`] gives each newly named ASN a free index and writes it into its
//!    nets in both tables; the live policy has no action for a free index, so nothing changes;
//! 2. the policy compiled with [`Datapath::listed_asns`] is swapped in: the one step that
//!    changes verdicts, for every listed ASN at once;
//! 3. [`Datapath::unlist_asns`] clears the nets of ASNs the policy no longer names and frees
//!    their indices (the live policy already has no action for them).
//!
//! Each step writes a word per net of each named ASN in place (a page rewrite where only those
//! words differ; an ASN has one net per distinct set of lists its addresses are in, almost
//! always one or two), whatever the size of the database: O(1) in it.

use std::collections::{BTreeMap, BTreeSet};

use geofilter_common::{LISTED_ASNS, POLICY_LISTS, Policy};

use super::{Datapath, DatapathError, tables::FamilyTables};
use crate::policy::DesiredPolicy;

/// The enabled lists' slots by action, bits of [`geofilter_common::table::Net::lists`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ListMasks {
    pub drop: u32,
    pub pass: u32,
}

#[derive(Debug, thiserror::Error)]
#[error("the policy names more than {} ASNs", LISTED_ASNS - 1)]
pub struct TooManyListed;

impl Datapath {
    /// The policy value for `desired` with this datapath's listed ASN indices and enabled lists.
    pub fn compile_policy(&self, desired: &DesiredPolicy) -> Policy {
        let mut policy = desired.compile_with(&self.listed);
        policy.list_drop = self.list_masks.drop;
        policy.list_pass = self.list_masks.pass;
        if self.list_masks != ListMasks::default() {
            policy.flags |= POLICY_LISTS;
        }
        policy
    }

    /// Sets which list slots the next compiled policy enables (the tables' nets name the slots).
    pub fn set_list_masks(&mut self, masks: ListMasks) {
        self.list_masks = masks;
    }

    /// The listed index of every ASN the tables hold an index for.
    pub fn listed_asns(&self) -> &BTreeMap<u32, u16> {
        &self.listed
    }

    /// Step 1: gives every ASN of `asns` without one a free listed index, and writes the indices
    /// into the live tables' nets of those ASNs.
    pub fn list_asns(&mut self, asns: &BTreeSet<u32>) -> Result<(), DatapathError> {
        let mut used: BTreeSet<u16> = self.listed.values().copied().collect();
        let mut added = Vec::new();
        for &asn in asns {
            if self.listed.contains_key(&asn) {
                continue;
            }
            let free = (1..LISTED_ASNS as u16)
                .find(|k| !used.contains(k))
                .ok_or(DatapathError::TooManyListed(TooManyListed))?;
            used.insert(free);
            added.push((asn, free));
        }
        for &(asn, k) in &added {
            // The index may have counted another ASN before.
            self.reset_asn_counters(k)?;
            self.listed.insert(asn, k);
        }
        write(&mut self.v4, &added)?;
        write(&mut self.v6, &added)
    }

    /// Step 3: clears the listed index of every ASN not in `keep`.
    pub fn unlist_asns(&mut self, keep: &BTreeSet<u32>) -> Result<(), DatapathError> {
        let gone: Vec<(u32, u16)> = self
            .listed
            .keys()
            .filter(|asn| !keep.contains(asn))
            .map(|&asn| (asn, 0))
            .collect();
        write(&mut self.v4, &gone)?;
        write(&mut self.v6, &gone)?;
        for (asn, _) in gone {
            self.listed.remove(&asn);
        }
        Ok(())
    }

    /// Takes `listed` as the assignment (the one an earlier daemon saved), before the first
    /// tables of this daemon are built, so a restart keeps every index where the live policy
    /// has it.
    pub fn restore_listed(&mut self, listed: BTreeMap<u32, u16>) {
        self.listed = listed
            .into_iter()
            .filter(|&(_, k)| k != 0 && u32::from(k) < LISTED_ASNS)
            .collect();
    }
}

/// Writes `(asn, index)` into the nets of each ASN in one family's live table (an ASN with no
/// net is not in that family).
fn write(family: &mut FamilyTables, changes: &[(u32, u16)]) -> Result<(), DatapathError> {
    let nets: Vec<(u32, u16)> = changes
        .iter()
        .flat_map(|&(asn, k)| {
            let nets = family.live.index.asn_nets.get(&asn);
            nets.into_iter().flatten().map(move |&net| (net, k))
        })
        .collect();
    family.set_listed(&nets)
}

impl Datapath {
    /// The ASN the live table gives `addr` (the host's copy of the program's walk; the address
    /// as the program filters it, see `policy::filtered_as`).
    pub fn asn_of(&self, addr: std::net::IpAddr) -> Option<u32> {
        let (family, value) = match addr {
            std::net::IpAddr::V4(a) => (&self.v4, u128::from(u32::from(a))),
            std::net::IpAddr::V6(a) => (&self.v6, u128::from(a)),
        };
        let live = &family.live;
        let (entry, _) = live.compact.lookup(family.family.bits(), value);
        if entry.is_child() {
            return None;
        }
        live.index.asn(entry.info().net)
    }

    /// The ASN of net `net` of the live table of `addr`'s family (what a `why` probe's net
    /// means).
    pub fn net_asn(&self, addr: std::net::IpAddr, net: u32) -> Option<u32> {
        let family = if addr.is_ipv4() { &self.v4 } else { &self.v6 };
        family.live.index.asn(net)
    }
}
