//! Explaining one classification for `geofilter why`: the kernel's answer, put in words with the
//! prefix and database it came from and the rule that decided: an exception, else the country
//! policy, for the ports the port scope geo-filters.

use std::net::IpAddr;

use geofilter_common::{Decider, UNKNOWN_COUNTRY, Verdict};

use crate::{
    control::protocol::{ExceptionMatch, Outcome, WhyAnswer, wire_name},
    country::code_str,
    datapath::Classification,
    family::Family,
    geoip::CompiledDb,
    policy::{self, DesiredPolicy, Mode},
    rules::{PortRange, PortScope},
};

/// What the kernel's net for an address means, in the daemon's words: the ASN its slot is, the
/// ASN's organisation, and the names of the lists its bits are.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetNames {
    pub asn: Option<u32>,
    pub organisation: Option<String>,
    /// Every list holding the address (enabled or not).
    pub lists: Vec<String>,
    /// The list that decided, when one did.
    pub deciding_list: Option<String>,
}

/// The answer for `addr` (see [`WhyAnswer`]).
///
/// The order is the program's (geofilter-ebpf/src/filter.rs `decide`): an exception decides
/// outright, whatever the port; otherwise a packet outside the port scope passes; then an
/// enabled list, the address's ASN when the policy names it, and the country policy decides the
/// rest. The probe frame has no transport header, so its verdict is the one for packets in the
/// scope. What decided is the program's own answer ([`Classification::decided_by`]).
pub fn explain(
    addr: IpAddr,
    found: &Classification,
    db: &CompiledDb,
    policy: &DesiredPolicy,
    net: &NetNames,
) -> WhyAnswer {
    let country = found.country;
    let known = country != UNKNOWN_COUNTRY;
    let code = code_str(country);
    // The program looked up the IPv4 address an IPv6 source embeds, if it embeds one.
    let (filtered, embedding) = policy::filtered_as(addr);
    // The prefix the kernel's country came from, as the compiled database has it (the daemon
    // compiled the table from it, so they agree; the check keeps a disagreement visible).
    let placed = db
        .lookup(filtered)
        .filter(|p| p.info.country == found.country);
    let prefix = placed.map(|p| format!("{}/{}", Family::of(filtered).ip(p.addr), p.len));
    // The database file (or the embedded database's label) the prefix came from.
    let source = placed
        .and_then(|p| db.sources.get(usize::from(p.info.source)))
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
            wire_name(&policy.unknown),
        ),
        (true, Mode::Deny) if listed => format!("{code} is blocked (deny list)"),
        (true, Mode::Deny) => format!("{code} is not blocked (deny list)"),
        (true, Mode::AllowOnly) if listed => format!("{code} is allowed (allow-only list)"),
        (true, Mode::AllowOnly) => format!("{code} is not on the allow-only list"),
    };
    let asn_name = net.asn.map(|asn| match &net.organisation {
        Some(org) => format!("AS{asn} ({org})"),
        None => format!("AS{asn}"),
    });
    let rule = match (found.decided_by, &asn_name, &net.deciding_list) {
        (Decider::Asn, Some(asn), _) => {
            let listed = match policy.mode {
                Mode::Deny => "is blocked (deny list)",
                Mode::AllowOnly => "is allowed (allow-only list)",
            };
            format!("{asn} {listed}, before the country ({rule})")
        }
        (Decider::List, _, Some(list)) => format!(
            "list {list} ({}) decides, before ASNs and countries ({rule})",
            match found.verdict {
                Verdict::Pass => "pass",
                Verdict::Drop | Verdict::WouldDrop => "drop",
            }
        ),
        _ => rule,
    };
    let exception = policy.exception_for(filtered);
    let scope = (!policy.ports.is_everything()).then(|| scope_text(&policy.ports));
    let rule = match (exception, &scope) {
        (Some((cidr, action)), _) => format!(
            "exception {cidr} ({}) decides, before the lists, ASNs and country policy ({rule})",
            wire_name(&action)
        ),
        (None, Some(scope)) => format!("{rule}, for packets in the port scope ({scope})"),
        (None, None) => rule,
    };
    let place = match (&prefix, &source) {
        (Some(p), Some(s)) => format!("{p} from {s}"),
        (None, Some(s)) => format!("from {s}"),
        _ => String::new(),
    };
    let network = match (&asn_name, net.lists.is_empty()) {
        (Some(asn), true) => asn.to_string(),
        (Some(asn), false) => format!("{asn}, in {}", net.lists.join(", ")),
        (None, false) => format!("in {}", net.lists.join(", ")),
        (None, true) => String::new(),
    };
    let place = match (place.is_empty(), network.is_empty()) {
        (true, true) => String::new(),
        (false, true) => format!("{place}: "),
        (true, false) => format!("{network}: "),
        (false, false) => format!("{place}, {network}: "),
    };
    let verdict = match found.verdict {
        Verdict::Drop => Outcome::Drop,
        Verdict::Pass | Verdict::WouldDrop => Outcome::Pass,
    };
    let alias = embedding.map_or(String::new(), |kind| {
        format!("{} address, filtered as {filtered}: ", kind.name())
    });
    let mut reason = format!("{alias}{place}{rule} -> {}", wire_name(&verdict));
    if found.verdict == Verdict::WouldDrop {
        reason += " (monitor mode: counted as would-drop)";
    }
    WhyAnswer {
        address: addr,
        filtered_as: embedding.map(|_| filtered),
        country: known.then_some(code),
        verdict,
        prefix,
        source,
        exception: exception.map(|(cidr, action)| ExceptionMatch { cidr, action }),
        ports: scope,
        asn: net.asn,
        organisation: net.organisation.clone(),
        lists: net.lists.clone(),
        decided_by: match found.decided_by {
            Decider::Country => "country",
            Decider::Exception => "exception",
            Decider::PortScope => "ports",
            Decider::List => "list",
            Decider::Asn => "asn",
        }
        .into(),
        deciding_list: net.deciding_list.clone(),
        reason,
    }
}

/// The port scope in words, e.g. `geo-filtered: only tcp:22; exempt: tcp:80; other packets pass`.
fn scope_text(ports: &PortScope) -> String {
    let list = |set: &std::collections::BTreeSet<PortRange>| {
        set.iter()
            .map(PortRange::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut parts = Vec::new();
    if !ports.only.is_empty() {
        parts.push(format!("geo-filtered: only {}", list(&ports.only)));
    }
    if !ports.exempt.is_empty() {
        parts.push(format!("exempt: {}", list(&ports.exempt)));
    }
    parts.push(if ports.only.is_empty() {
        "packets to exempt ports pass".into()
    } else {
        "other packets pass".into()
    });
    parts.join("; ")
}

#[cfg(test)]
mod tests {
    use geofilter_common::{PrefixInfo, country::country_id};

    use super::*;
    use crate::{
        geoip::{Prefix, SourceSummary},
        rules::ExceptionAction,
    };

    fn explain_with(policy: &DesiredPolicy, verdict: Verdict) -> WhyAnswer {
        let de = PrefixInfo {
            country: country_id(*b"DE").unwrap(),
            source: 0,
        };
        let db = CompiledDb {
            sources: vec![SourceSummary {
                path: "v4.csv".into(),
                format: crate::geoip::Format::RangeCsv.into(),
                ranges_v4: 1,
                ranges_v6: 0,
            }],
            v4: vec![Prefix {
                addr: u128::from(u32::from_be_bytes([46, 114, 0, 0])),
                len: 16,
                info: de,
            }],
            v6: vec![],
        };
        let found = Classification {
            verdict,
            country: de.country,
            decided_by: geofilter_common::Decider::Country,
            list: 0,
            net: 0,
            listed: 0,
            lists: 0,
        };
        explain(
            "46.114.1.1".parse().unwrap(),
            &found,
            &db,
            policy,
            &NetNames::default(),
        )
    }

    #[test]
    fn the_exception_that_decided_is_named() {
        let mut policy = DesiredPolicy::default();
        policy
            .exceptions
            .insert("46.114.1.1/32".parse().unwrap(), ExceptionAction::Drop);
        policy
            .exceptions
            .insert("46.114.0.0/16".parse().unwrap(), ExceptionAction::Pass);
        let answer = explain_with(&policy, Verdict::Drop);
        assert_eq!(
            answer.reason,
            "46.114.0.0/16 from v4.csv: exception 46.114.1.1/32 (drop) decides, before the \
             lists, ASNs and country policy (DE is not blocked (deny list)) -> drop"
        );
        assert_eq!(
            serde_json::to_value(answer.exception).unwrap(),
            serde_json::json!({"cidr": "46.114.1.1/32", "action": "drop"})
        );
        assert!(answer.ports.is_none());
    }

    #[test]
    fn a_port_scope_is_named_where_the_country_decided() {
        let mut policy = DesiredPolicy {
            countries: [country_id(*b"DE").unwrap()].into(),
            ..Default::default()
        };
        policy.ports.only.insert("tcp:22".parse().unwrap());
        policy.ports.exempt.insert("tcp:22".parse().unwrap());
        let answer = explain_with(&policy, Verdict::Drop);
        assert_eq!(
            answer.reason,
            "46.114.0.0/16 from v4.csv: DE is blocked (deny list), for packets in the port scope \
             (geo-filtered: only tcp:22; exempt: tcp:22; other packets pass) -> drop"
        );
        policy.ports.only.clear();
        let answer = explain_with(&policy, Verdict::Drop);
        assert_eq!(
            answer.ports.as_deref(),
            Some("exempt: tcp:22; packets to exempt ports pass")
        );
        assert!(answer.exception.is_none());
    }
}
