//! JSON renderings of the daemon's state for `status`, `stats` and the change verbs.

use geofilter_common::{Counter, PacketClass, Verdict};
use serde_json::{Value, json};

use crate::{country::code_or_unknown, datapath::Counters, policy::DesiredPolicy};

pub fn policy_json(policy: &DesiredPolicy) -> Value {
    serde_json::to_value(policy).expect("policy serializes")
}

fn counter(c: &Counter) -> Value {
    json!({"packets": c.packets, "bytes": c.bytes})
}

/// `{"countries": [{"country", "pass", "drop", "would_drop"}...], "classes": {...}}`.
pub fn counters_json(counters: &Counters) -> Value {
    let countries: Vec<Value> = counters
        .countries
        .iter()
        .map(|(&id, row)| {
            let mut entry = json!({ "country": code_or_unknown(id) });
            for verdict in Verdict::ALL {
                entry[verdict.name()] = counter(&row[verdict as usize]);
            }
            entry
        })
        .collect();
    let mut classes = json!({});
    for class in PacketClass::ALL {
        classes[class.name()] = counter(&counters.classes[class as usize]);
    }
    json!({ "countries": countries, "classes": classes })
}
