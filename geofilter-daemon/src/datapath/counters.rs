//! Reading the per-CPU counters and summing them across CPUs.

use std::collections::BTreeMap;

use aya::maps::{MapData, PerCpuArray, PerCpuValues};
use geofilter_common::{
    COUNTRY_SLOTS, Counter, CountryId, PacketClass, Verdict, asn_counter_index,
    country_counter_index, list_counter_index, maps as names, table::LIST_SLOTS,
};

use super::{Datapath, DatapathError, map_err};

/// Per-country counters, one per verdict (indexed by `Verdict as usize`).
pub type CountryCounters = [Counter; Verdict::COUNT as usize];

/// A snapshot of every counter, summed over CPUs. Only countries with traffic appear; ASNs are
/// those the policy names (by AS number), lists by slot.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub countries: BTreeMap<CountryId, CountryCounters>,
    pub classes: [Counter; PacketClass::COUNT as usize],
    pub asns: BTreeMap<u32, CountryCounters>,
    pub lists: BTreeMap<u32, CountryCounters>,
}

fn add(a: &mut Counter, b: &Counter) {
    a.packets += b.packets;
    a.bytes += b.bytes;
}

impl Datapath {
    pub fn counters(&self) -> Result<Counters, DatapathError> {
        let mut out = Counters::default();
        for class in PacketClass::ALL {
            let per_cpu = self
                .class_counters
                .get(&(class as u32), 0)
                .map_err(map_err(names::CLASS_COUNTERS))?;
            for c in per_cpu.iter() {
                add(&mut out.classes[class as usize], c);
            }
        }
        for country in 0..COUNTRY_SLOTS as CountryId {
            let row = verdicts(&self.country_counters, names::COUNTRY_COUNTERS, |v| {
                country_counter_index(country, v)
            })?;
            if row.iter().any(|c| c.packets != 0) {
                out.countries.insert(country, row);
            }
        }
        for (&asn, &k) in &self.listed {
            let row = verdicts(&self.asn_counters, names::ASN_COUNTERS, |v| {
                asn_counter_index(u32::from(k), v)
            })?;
            out.asns.insert(asn, row);
        }
        for list in 0..LIST_SLOTS {
            let row = verdicts(&self.list_counters, names::LIST_COUNTERS, |v| {
                list_counter_index(list, v)
            })?;
            if row.iter().any(|c| c.packets != 0) {
                out.lists.insert(list, row);
            }
        }
        Ok(out)
    }

    /// Zeroes the counters of listed index `k` (before an ASN takes an index another had).
    pub(super) fn reset_asn_counters(&mut self, k: u16) -> Result<(), DatapathError> {
        let cpus = aya::util::nr_cpus().map_err(|(_, e)| DatapathError::Cpus(e))?;
        for verdict in Verdict::ALL {
            let zeros = PerCpuValues::try_from(vec![Counter::default(); cpus])
                .map_err(DatapathError::Cpus)?;
            self.asn_counters
                .set(asn_counter_index(u32::from(k), verdict), zeros, 0)
                .map_err(map_err(names::ASN_COUNTERS))?;
        }
        Ok(())
    }
}

/// One row of a per-CPU counter array, summed: the entry `index(verdict)` of each verdict.
fn verdicts(
    map: &PerCpuArray<MapData, Counter>,
    name: &'static str,
    index: impl Fn(Verdict) -> u32,
) -> Result<CountryCounters, DatapathError> {
    let mut row = CountryCounters::default();
    for verdict in Verdict::ALL {
        let per_cpu = map.get(&index(verdict), 0).map_err(map_err(name))?;
        for c in per_cpu.iter() {
            add(&mut row[verdict as usize], c);
        }
    }
    Ok(row)
}
