//! The operator's policy (which countries, which mode) and its compilation into the single
//! [`Policy`] value the program reads.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
};

use geofilter_common::{
    ACTION_DROP, ACTION_PASS, CountryId, POLICY_EXCEPTIONS_V4, POLICY_EXCEPTIONS_V6,
    POLICY_MONITOR, POLICY_PORT_SCOPE, POLICY_PORTLESS_IN_SCOPE, Policy, UNKNOWN_COUNTRY,
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
    /// One action per country slot; both modes become a plain lookup table.
    pub fn compile(&self) -> Policy {
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

    /// Whether a packet from `addr` (of `country`) to a port in scope would be dropped, as far as
    /// user space can tell; the lockout check uses this before a change is applied.
    pub fn would_drop(&self, addr: IpAddr, country: CountryId) -> bool {
        match self.exception_for(addr) {
            Some((_, action)) => action == ExceptionAction::Drop && !self.monitor,
            None => !self.monitor && self.drops(country),
        }
    }
}

/// Makes the kernel enforce `new` where it enforced `old`.
///
/// Exception additions go into the tries first (their lookups are enabled by the policy flag),
/// then the policy value is swapped in one step, then removed exceptions are deleted. A packet
/// sees each exception, and the policy value, before or after the change, never torn.
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
    datapath.set_policy(&new.compile())?;
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
            !desired.would_drop("5.45.200.9".parse().unwrap(), ru),
            "excepted"
        );
        assert!(
            desired.would_drop("5.45.201.9".parse().unwrap(), ru),
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
