//! The operator's policy (which countries, which mode) and its compilation into the single
//! [`Policy`] value the program reads.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
};

use geofilter_common::{
    ACTION_DROP, ACTION_PASS, ASN_DROP, ASN_PASS, CountryId, POLICY_ASNS, POLICY_EXCEPTIONS_V4,
    POLICY_EXCEPTIONS_V6, POLICY_MONITOR, POLICY_PORT_SCOPE, POLICY_PORTLESS_IN_SCOPE, Policy,
    UNKNOWN_COUNTRY,
    embedded::{Embedding, embedded_ipv4},
};
use serde::{Deserialize, Serialize};

use crate::{
    datapath::{Datapath, DatapathError},
    rules::{Cidr, ExceptionAction, PortScope},
};

/// The address a packet from `addr` is filtered as: the IPv4 address an IPv6 source embeds
/// (IPv4-mapped, 6to4, NAT64, ...: see [`geofilter_common::embedded`]) with how, else `addr`.
/// The XDP program applies the same function, so every user-space check that classifies an
/// address (`why`, the lockout check) goes through this one to answer as the program does.
pub fn filtered_as(addr: IpAddr) -> (IpAddr, Option<Embedding>) {
    match addr {
        IpAddr::V6(v6) => match embedded_ipv4(&v6.octets()) {
            Some((v4, kind)) => (IpAddr::from(v4), Some(kind)),
            None => (addr, None),
        },
        IpAddr::V4(_) => (addr, None),
    }
}

/// How the listed countries are treated.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Drop the listed countries, pass the rest.
    #[default]
    Deny,
    /// Pass only the listed countries, drop the rest.
    AllowOnly,
}

/// What happens to addresses that no database places.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum UnknownAction {
    #[default]
    Pass,
    Drop,
}

/// The desired filtering state as the operator states it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DesiredPolicy {
    #[serde(default)]
    pub mode: Mode,
    #[serde(default, with = "country_codes")]
    pub countries: BTreeSet<CountryId>,
    /// Autonomous systems listed like countries: dropped in deny mode, passed in allow-only
    /// mode, whatever country their addresses are in.
    #[serde(
        default,
        with = "crate::keys::asn_names",
        skip_serializing_if = "BTreeSet::is_empty"
    )]
    pub asns: BTreeSet<u32>,
    #[serde(default)]
    pub unknown: UnknownAction,
    #[serde(default)]
    pub monitor: bool,
    /// Per-address rules, checked before the country policy.
    #[serde(default)]
    pub exceptions: BTreeMap<Cidr, ExceptionAction>,
    #[serde(default)]
    pub ports: PortScope,
}

/// Countries are stored as their codes (`["RU", "BY"]`), readable and stable across versions.
pub(crate) mod country_codes {
    use std::collections::BTreeSet;

    use geofilter_common::CountryId;
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::country::{code_str, parse_user_code};

    pub fn serialize<S: Serializer>(set: &BTreeSet<CountryId>, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(set.iter().map(|&c| code_str(c)))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeSet<CountryId>, D::Error> {
        Vec::<String>::deserialize(d)?
            .iter()
            .map(|c| parse_user_code(c).map_err(serde::de::Error::custom))
            .collect()
    }
}

impl DesiredPolicy {
    /// [`Self::compile_with`] no listed ASNs (a policy with ASNs needs the datapath's listed
    /// indices: see `datapath::asns`).
    pub fn compile(&self) -> Policy {
        self.compile_with(&BTreeMap::new())
    }

    /// One action per country slot, and one per listed index of the ASNs in `listed` that this
    /// policy names; both modes become plain lookup tables.
    pub fn compile_with(&self, asn_index: &BTreeMap<u32, u16>) -> Policy {
        let (listed, unlisted) = match self.mode {
            Mode::Deny => (ACTION_DROP, ACTION_PASS),
            Mode::AllowOnly => (ACTION_PASS, ACTION_DROP),
        };
        let mut policy = Policy::pass_all();
        for (id, action) in policy.actions.iter_mut().enumerate() {
            *action = if self.countries.contains(&(id as CountryId)) {
                listed
            } else {
                unlisted
            };
        }
        policy.actions[UNKNOWN_COUNTRY as usize] = match self.unknown {
            UnknownAction::Pass => ACTION_PASS,
            UnknownAction::Drop => ACTION_DROP,
        };
        let asn_action = match self.mode {
            Mode::Deny => ASN_DROP,
            Mode::AllowOnly => ASN_PASS,
        };
        for asn in &self.asns {
            if let Some(&k) = asn_index.get(asn) {
                policy.asn_actions[usize::from(k)] = asn_action;
                policy.flags |= POLICY_ASNS;
            }
        }
        if self.monitor {
            policy.flags |= POLICY_MONITOR;
        }
        if self.exceptions.keys().any(|c| c.addr.is_ipv4()) {
            policy.flags |= POLICY_EXCEPTIONS_V4;
        }
        if self.exceptions.keys().any(|c| c.addr.is_ipv6()) {
            policy.flags |= POLICY_EXCEPTIONS_V6;
        }
        if !self.ports.is_everything() {
            let (tcp, udp, portless) = self.ports.compile();
            policy.flags |= POLICY_PORT_SCOPE;
            if portless {
                policy.flags |= POLICY_PORTLESS_IN_SCOPE;
            }
            policy.tcp_ports = tcp;
            policy.udp_ports = udp;
        }
        policy
    }

    /// Whether this policy's country rule drops `country` (ignoring exceptions and ports).
    pub fn drops(&self, country: CountryId) -> bool {
        let listed = self.countries.contains(&country);
        match (country, self.mode) {
            (UNKNOWN_COUNTRY, _) => self.unknown == UnknownAction::Drop,
            (_, Mode::Deny) => listed,
            (_, Mode::AllowOnly) => !listed,
        }
    }

    /// The most specific exception covering `addr`, as the kernel's LPM lookup finds it.
    pub fn exception_for(&self, addr: IpAddr) -> Option<(Cidr, ExceptionAction)> {
        self.exceptions
            .iter()
            .filter(|(c, _)| c.contains(addr))
            .max_by_key(|(c, _)| c.len)
            .map(|(c, a)| (*c, *a))
    }

    /// Whether this policy drops an address of `country` in `asn` (ignoring exceptions, ports
    /// and lists): a listed ASN decides, else the country.
    pub fn drops_in(&self, country: CountryId, asn: Option<u32>) -> bool {
        match (asn.is_some_and(|a| self.asns.contains(&a)), self.mode) {
            (true, Mode::Deny) => true,
            (true, Mode::AllowOnly) => false,
            (false, _) => self.drops(country),
        }
    }

    /// Whether a packet from `addr` (of `country`, in `asn`) to a port in scope would be
    /// dropped, as far as user space can tell; the lockout check uses this before a change is
    /// applied.
    pub fn would_drop(&self, addr: IpAddr, country: CountryId, asn: Option<u32>) -> bool {
        match self.exception_for(addr) {
            Some((_, action)) => action == ExceptionAction::Drop && !self.monitor,
            None => !self.monitor && self.drops_in(country, asn),
        }
    }
}

/// Makes the kernel enforce `new` where it enforced `old`.
///
/// Exception additions go into the tries first (their lookups are enabled by the policy flag),
/// and newly named ASNs get their listed index in the tables (`datapath::asns`: without an
/// action in the live policy it changes nothing); then the policy value is swapped in one step;
/// then removed exceptions are deleted and unnamed ASNs lose their index. A packet sees each
/// exception, each ASN and the policy value before or after the change, never torn.
pub fn apply(
    datapath: &mut Datapath,
    old: &DesiredPolicy,
    new: &DesiredPolicy,
) -> Result<(), DatapathError> {
    for (cidr, action) in &new.exceptions {
        if old.exceptions.get(cidr) != Some(action) {
            datapath.set_exception(cidr, *action)?;
        }
    }
    datapath.list_asns(&new.asns)?;
    datapath.set_policy(&datapath.compile_policy(new))?;
    datapath.unlist_asns(&new.asns)?;
    for cidr in old.exceptions.keys() {
        if !new.exceptions.contains_key(cidr) {
            datapath.remove_exception(cidr)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use geofilter_common::country::country_id;

    use super::*;

    #[test]
    fn deny_drops_only_listed_and_keeps_unknown_setting() {
        let ru = country_id(*b"RU").unwrap();
        let de = country_id(*b"DE").unwrap();
        let p = DesiredPolicy {
            countries: [ru].into(),
            ..Default::default()
        }
        .compile();
        assert_eq!(p.actions[ru as usize], ACTION_DROP);
        assert_eq!(p.actions[de as usize], ACTION_PASS);
        assert_eq!(p.actions[UNKNOWN_COUNTRY as usize], ACTION_PASS);
        assert_eq!(p.flags, 0);
    }

    #[test]
    fn allow_only_drops_everything_unlisted() {
        let de = country_id(*b"DE").unwrap();
        let us = country_id(*b"US").unwrap();
        let desired = DesiredPolicy {
            mode: Mode::AllowOnly,
            countries: [de].into(),
            unknown: UnknownAction::Drop,
            monitor: true,
            ..Default::default()
        };
        let p = desired.compile();
        assert_eq!(p.actions[de as usize], ACTION_PASS);
        assert_eq!(p.actions[us as usize], ACTION_DROP);
        assert_eq!(p.actions[UNKNOWN_COUNTRY as usize], ACTION_DROP);
        assert_eq!(p.flags, POLICY_MONITOR);
    }

    #[test]
    fn listed_asns_get_the_mode_action_at_their_index_only() {
        let de = country_id(*b"DE").unwrap();
        let listed = BTreeMap::from([(13335, 7), (15169, 3)]);
        let mut desired = DesiredPolicy {
            asns: [13335].into(),
            ..Default::default()
        };
        let p = desired.compile_with(&listed);
        assert_eq!(p.flags, POLICY_ASNS);
        assert_eq!(p.asn_actions[7], ASN_DROP);
        assert_eq!(p.asn_actions.iter().filter(|&&a| a != 0).count(), 1);
        assert!(desired.drops_in(de, Some(13335)) && !desired.drops_in(de, Some(15169)));
        desired.mode = Mode::AllowOnly;
        let p = desired.compile_with(&listed);
        assert_eq!(p.asn_actions[7], ASN_PASS);
        assert!(!desired.drops_in(de, Some(13335)) && desired.drops_in(de, None));
        // Without an index (no database holds the ASN) the policy has no ASN action at all.
        assert_eq!(desired.compile().flags & POLICY_ASNS, 0);
    }

    #[test]
    fn exceptions_and_ports_set_their_flags_and_round_trip_through_json() {
        let ru = country_id(*b"RU").unwrap();
        let mut desired = DesiredPolicy {
            countries: [ru].into(),
            ..Default::default()
        };
        desired
            .exceptions
            .insert("5.45.200.0/24".parse().unwrap(), ExceptionAction::Pass);
        desired.ports.exempt.insert("tcp:80".parse().unwrap());
        let p = desired.compile();
        assert_eq!(
            p.flags,
            POLICY_EXCEPTIONS_V4 | POLICY_PORT_SCOPE | POLICY_PORTLESS_IN_SCOPE
        );
        assert!(!p.tcp_ports.contains(80) && p.tcp_ports.contains(443));
        assert!(
            !desired.would_drop("5.45.200.9".parse().unwrap(), ru, None),
            "excepted"
        );
        assert!(
            desired.would_drop("5.45.201.9".parse().unwrap(), ru, None),
            "blocked country"
        );

        let json = serde_json::to_string(&desired).unwrap();
        assert!(json.contains(r#""countries":["RU"]"#), "{json}");
        assert_eq!(
            serde_json::from_str::<DesiredPolicy>(&json).unwrap(),
            desired
        );
    }
}
