//! Explaining one classification for `geofilter why`: the kernel's answer, put in words with the
//! prefix and database it came from and the rule that decided.

use std::net::IpAddr;

use geofilter_common::{UNKNOWN_COUNTRY, Verdict};
use serde_json::{Value, json};

use crate::{
    datapath::{Classification, stride::Family},
    geoip::{CompiledDb, country::code_str},
    policy::{self, DesiredPolicy, Mode},
};

/// `{"address", "country", "verdict", "prefix", "source", "reason"}`; `verdict` is what happens to
/// the packet (`pass` in monitor mode even where the policy would drop).
pub fn explain(
    addr: IpAddr,
    found: &Classification,
    db: &CompiledDb,
    policy: &DesiredPolicy,
) -> Value {
    let country = found.info.country;
    let known = country != UNKNOWN_COUNTRY;
    let code = code_str(country);
    // The program looked up the IPv4 address an IPv6 source embeds, if it embeds one.
    let (filtered, embedding) = policy::filtered_as(addr);
    let prefix = db
        .lookup(filtered)
        .filter(|p| p.info == found.info)
        .map(|p| format!("{}/{}", Family::of(filtered).ip(p.addr), p.len));
    // The database file (or the embedded database's label) the prefix came from.
    let source = db
        .sources
        .get(usize::from(found.info.source))
        .map(|s| s.path.display().to_string());
    let listed = policy.countries.contains(&country);
    let rule = match (known, policy.mode) {
        (false, _) => format!(
            "no database places this address; unknown addresses {} (policy unknown {})",
            if policy.drops(UNKNOWN_COUNTRY) {
                "drop"
            } else {
                "pass"
            },
            serde_json::to_value(policy.unknown)
                .unwrap_or_default()
                .as_str()
                .unwrap_or("?"),
        ),
        (true, Mode::Deny) if listed => format!("{code} is blocked (deny list)"),
        (true, Mode::Deny) => format!("{code} is not blocked (deny list)"),
        (true, Mode::AllowOnly) if listed => format!("{code} is allowed (allow-only list)"),
        (true, Mode::AllowOnly) => format!("{code} is not on the allow-only list"),
    };
    let place = match (&prefix, &source) {
        (Some(p), Some(s)) => format!("{p} from {s}: "),
        (None, Some(s)) => format!("from {s}: "),
        _ => String::new(),
    };
    let verdict = match found.verdict {
        Verdict::Drop => "drop",
        Verdict::Pass | Verdict::WouldDrop => "pass",
    };
    let alias = embedding.map_or(String::new(), |kind| {
        format!("{} address, filtered as {filtered}: ", kind.name())
    });
    let mut reason = format!("{alias}{place}{rule} -> {verdict}");
    if found.verdict == Verdict::WouldDrop {
        reason += " (monitor mode: counted as would-drop)";
    }
    json!({
        "address": addr.to_string(),
        "filtered_as": embedding.map(|_| filtered.to_string()),
        "country": known.then_some(code),
        "verdict": verdict,
        "prefix": prefix,
        "source": source,
        "reason": reason,
    })
}
