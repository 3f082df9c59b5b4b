//! The operator's policy (which countries, which mode) and its compilation into the single
//! [`Policy`] value the program reads.

use std::collections::BTreeSet;

use geofilter_common::{
    ACTION_DROP, ACTION_PASS, COUNTRY_SLOTS, CountryId, POLICY_MONITOR, Policy, UNKNOWN_COUNTRY,
};
use serde::{Deserialize, Serialize};

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
pub struct DesiredPolicy {
    pub mode: Mode,
    pub countries: BTreeSet<CountryId>,
    pub unknown: UnknownAction,
    pub monitor: bool,
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
        debug_assert_eq!(policy.actions.len(), COUNTRY_SLOTS as usize);
        policy
    }

    /// The countries whose packets this policy drops (or would drop, in monitor mode).
    pub fn drops(&self, country: CountryId) -> bool {
        self.compile().actions[country as usize] == ACTION_DROP
    }
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
        };
        let p = desired.compile();
        assert_eq!(p.actions[de as usize], ACTION_PASS);
        assert_eq!(p.actions[us as usize], ACTION_DROP);
        assert_eq!(p.actions[UNKNOWN_COUNTRY as usize], ACTION_DROP);
        assert_eq!(p.flags, POLICY_MONITOR);
    }
}
