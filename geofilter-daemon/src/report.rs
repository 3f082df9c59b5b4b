//! The daemon's state in the reply types for `stats`.

use geofilter_common::{PacketClass, Verdict};

use crate::{
    control::protocol::{Count, CountryCounters, NamedCounters, StatsReply},
    country::code_or_unknown,
    datapath::Counters,
};

fn count(c: &geofilter_common::Counter) -> Count {
    Count {
        packets: c.packets,
        bytes: c.bytes,
    }
}

/// One named row of counters by verdict.
fn named(name: String, row: &crate::datapath::CountryCounters) -> NamedCounters {
    NamedCounters {
        name,
        pass: count(&row[Verdict::Pass as usize]),
        drop: count(&row[Verdict::Drop as usize]),
        would_drop: count(&row[Verdict::WouldDrop as usize]),
    }
}

/// The counters, one row per country seen, one per packet class, one per ASN the policy names
/// and one per list that decided packets (`list_name` names a list slot).
pub fn stats(counters: &Counters, list_name: impl Fn(u32) -> Option<String>) -> StatsReply {
    let countries = counters
        .countries
        .iter()
        .map(|(&id, row)| CountryCounters {
            country: code_or_unknown(id),
            pass: count(&row[Verdict::Pass as usize]),
            drop: count(&row[Verdict::Drop as usize]),
            would_drop: count(&row[Verdict::WouldDrop as usize]),
        })
        .collect();
    let classes = PacketClass::ALL
        .into_iter()
        .map(|class| {
            (
                class.name().to_owned(),
                count(&counters.classes[class as usize]),
            )
        })
        .collect();
    let asns = counters
        .asns
        .iter()
        .map(|(asn, row)| named(format!("AS{asn}"), row))
        .collect();
    let lists = counters
        .lists
        .iter()
        .filter_map(|(&slot, row)| Some(named(list_name(slot)?, row)))
        .collect();
    StatsReply {
        countries,
        classes,
        asns,
        lists,
    }
}
