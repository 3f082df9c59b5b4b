//! Reading the per-CPU counters and summing them across CPUs.

use std::collections::BTreeMap;

use geofilter_common::{
    COUNTRY_SLOTS, Counter, CountryId, PacketClass, Verdict, country_counter_index, maps as names,
};

use super::{Datapath, DatapathError, map_err};

/// Per-country counters, one per verdict (indexed by `Verdict as usize`).
pub type CountryCounters = [Counter; Verdict::COUNT as usize];

/// A snapshot of every counter, summed over CPUs. Only countries with traffic appear.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub countries: BTreeMap<CountryId, CountryCounters>,
    pub classes: [Counter; PacketClass::COUNT as usize],
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
            let mut row = CountryCounters::default();
            for verdict in Verdict::ALL {
                let per_cpu = self
                    .country_counters
                    .get(&country_counter_index(country, verdict), 0)
                    .map_err(map_err(names::COUNTRY_COUNTERS))?;
                for c in per_cpu.iter() {
                    add(&mut row[verdict as usize], c);
                }
            }
            if row.iter().any(|c| c.packets != 0) {
                out.countries.insert(country, row);
            }
        }
        Ok(out)
    }
}
