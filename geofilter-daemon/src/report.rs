//! The daemon's state in the reply types for `stats`, and country names as the output shows them.

use geofilter_common::{PacketClass, UNKNOWN_COUNTRY, Verdict};

use crate::{
    control::protocol::{Count, CountryCounters, StatsReply},
    datapath::Counters,
    geoip::country::code_str,
};

fn count(c: &geofilter_common::Counter) -> Count {
    Count {
        packets: c.packets,
        bytes: c.bytes,
    }
}

pub fn country_name(id: u16) -> String {
    if id == UNKNOWN_COUNTRY {
        "unknown".to_owned()
    } else {
        code_str(id)
    }
}

/// The counters, one row per country seen, and one per packet class.
pub fn stats(counters: &Counters) -> StatsReply {
    let countries = counters
        .countries
        .iter()
        .map(|(&id, row)| CountryCounters {
            country: country_name(id),
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
    StatsReply { countries, classes }
}
