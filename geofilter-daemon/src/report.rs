//! The daemon's state in the reply types for `stats`.

use geofilter_common::{PacketClass, Verdict};

use crate::{
    control::protocol::{Count, CountryCounters, StatsReply},
    country::code_or_unknown,
    datapath::Counters,
};

fn count(c: &geofilter_common::Counter) -> Count {
    Count {
        packets: c.packets,
        bytes: c.bytes,
    }
}

/// The counters, one row per country seen, and one per packet class.
pub fn stats(counters: &Counters) -> StatsReply {
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
    StatsReply { countries, classes }
}
