//! What each policy change does to the desired policy, and how one change made with `--confirm`
//! is undone alone. A change arrives parsed (see [`crate::control::protocol`]), so one with a
//! bad country code or CIDR was refused whole before it got here.

use std::{
    collections::BTreeSet,
    net::{IpAddr, Ipv6Addr},
};

use geofilter_common::CountryId;

use crate::{
    control::protocol::Change,
    policy::{self, DesiredPolicy},
    rules::{Cidr, ExceptionAction},
};

/// Refuses an IPv6 exception that no packet can meet: every address in it embeds an IPv4
/// address, and packets from those are filtered as that IPv4 address, whose exceptions apply
/// ([`policy::filtered_as`]).
fn refuse_embedded(cidr: &Cidr) -> Result<(), String> {
    let IpAddr::V6(first) = cidr.addr else {
        return Ok(());
    };
    let last =
        Ipv6Addr::from(u128::from(first) | u128::MAX.checked_shr(cidr.len.into()).unwrap_or(0));
    match (
        policy::filtered_as(first.into()),
        policy::filtered_as(last.into()),
    ) {
        ((v4, Some(kind)), (_, Some(last_kind))) if kind == last_kind => Err(format!(
            "exception {cidr} can never apply: packets from {} addresses are filtered as the IPv4 \
             address they carry ({first} as {v4}), so give the exception as IPv4",
            kind.name()
        )),
        _ => Ok(()),
    }
}

/// One part of the policy that a change sets independently of the others.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Element {
    Mode,
    Unknown,
    Monitor,
    /// The port scope as a whole: `ports set` replaces both lists at once.
    Ports,
    /// Whether this country is listed.
    Country(CountryId),
    /// Whether this ASN is listed.
    Asn(u32),
    /// This exception's action, or its absence.
    Exception(Cidr),
}

/// A change's result: the policy after it, and every element it set (even to the value it had).
#[derive(Debug)]
pub struct Applied {
    pub policy: DesiredPolicy,
    pub touched: BTreeSet<Element>,
}

/// The policy after `change`, or why the change is refused.
pub fn apply(current: &DesiredPolicy, change: &Change) -> Result<Applied, String> {
    let mut next = current.clone();
    let mut touched = BTreeSet::new();
    match change {
        Change::Block { countries, asns } => {
            for &c in countries {
                next.countries.insert(c);
                touched.insert(Element::Country(c));
            }
            for &a in asns {
                next.asns.insert(a);
                touched.insert(Element::Asn(a));
            }
        }
        Change::Unblock { countries, asns } => {
            for &c in countries {
                next.countries.remove(&c);
                touched.insert(Element::Country(c));
            }
            for &a in asns {
                next.asns.remove(&a);
                touched.insert(Element::Asn(a));
            }
        }
        Change::Mode { mode } => {
            next.mode = *mode;
            touched.insert(Element::Mode);
        }
        Change::Unknown { action } => {
            next.unknown = *action;
            touched.insert(Element::Unknown);
        }
        Change::Monitor { on } => {
            next.monitor = *on;
            touched.insert(Element::Monitor);
        }
        Change::ExceptAdd { cidrs, drop } => {
            let action = if *drop {
                ExceptionAction::Drop
            } else {
                ExceptionAction::Pass
            };
            for &cidr in cidrs {
                refuse_embedded(&cidr)?;
                next.exceptions.insert(cidr, action);
                touched.insert(Element::Exception(cidr));
            }
        }
        Change::ExceptDel { cidrs } => {
            for &cidr in cidrs {
                if next.exceptions.remove(&cidr).is_none() {
                    return Err(format!("no exception {cidr} to delete"));
                }
                touched.insert(Element::Exception(cidr));
            }
        }
        Change::PortsSet { only, exempt } => {
            if only.is_empty() && exempt.is_empty() {
                return Err(
                    "ports set needs --only or --exempt (use `ports clear` to remove the scope)"
                        .into(),
                );
            }
            next.ports.only = only.iter().copied().collect();
            next.ports.exempt = exempt.iter().copied().collect();
            touched.insert(Element::Ports);
        }
        Change::PortsClear {} => {
            next.ports = Default::default();
            touched.insert(Element::Ports);
        }
    }
    check_exception_capacity(current, &next)?;
    Ok(Applied {
        policy: next,
        touched,
    })
}

/// How to undo one change made with `--confirm`, and only that change.
///
/// The rule: a rollback returns every element the confirmed change altered to its value before
/// that change, unless a later change has set that element since (even to the same value). The
/// later change is the operator's newer word on it and stays, and so does everything the
/// confirmed change did not alter. A later `policy` (mode) change counts as setting every country:
/// it changes what the whole list means, so the list it was made with stays.
///
/// So `block BY --confirm 3; block CN` rolls back to the old list plus CN, and
/// `block BY --confirm 3; unblock BY; block BY` leaves BY blocked.
#[derive(Clone, Debug)]
pub struct Undo {
    before: DesiredPolicy,
    /// The elements the confirmed change altered that no later change has set.
    owned: BTreeSet<Element>,
}

impl Undo {
    /// The undo of the change that turned `before` into `after`.
    pub fn new(before: &DesiredPolicy, after: &DesiredPolicy) -> Self {
        let mut owned = BTreeSet::new();
        for (element, differs) in [
            (Element::Mode, before.mode != after.mode),
            (Element::Unknown, before.unknown != after.unknown),
            (Element::Monitor, before.monitor != after.monitor),
            (Element::Ports, before.ports != after.ports),
        ] {
            if differs {
                owned.insert(element);
            }
        }
        owned.extend(
            before
                .countries
                .symmetric_difference(&after.countries)
                .map(|&c| Element::Country(c)),
        );
        owned.extend(
            before
                .exceptions
                .keys()
                .chain(after.exceptions.keys())
                .filter(|c| before.exceptions.get(c) != after.exceptions.get(c))
                .map(|&c| Element::Exception(c)),
        );
        Self {
            before: before.clone(),
            owned,
        }
    }

    /// Hands the elements a later change set over to that change.
    pub fn later_change(&mut self, touched: &BTreeSet<Element>) {
        let mode = touched.contains(&Element::Mode);
        let taken = |e: &Element| {
            touched.contains(e) || mode && matches!(e, Element::Country(_) | Element::Asn(_))
        };
        self.owned.retain(|e| !taken(e));
    }

    /// `current` with the confirmed change's remaining elements put back.
    pub fn revert(&self, current: &DesiredPolicy) -> DesiredPolicy {
        let (before, mut next) = (&self.before, current.clone());
        for element in &self.owned {
            match *element {
                Element::Mode => next.mode = before.mode,
                Element::Unknown => next.unknown = before.unknown,
                Element::Monitor => next.monitor = before.monitor,
                Element::Ports => next.ports = before.ports.clone(),
                Element::Country(c) => {
                    if before.countries.contains(&c) {
                        next.countries.insert(c);
                    } else {
                        next.countries.remove(&c);
                    }
                }
                Element::Asn(a) => {
                    if before.asns.contains(&a) {
                        next.asns.insert(a);
                    } else {
                        next.asns.remove(&a);
                    }
                }
                Element::Exception(cidr) => match before.exceptions.get(&cidr) {
                    Some(&action) => {
                        next.exceptions.insert(cidr, action);
                    }
                    None => {
                        next.exceptions.remove(&cidr);
                    }
                },
            }
        }
        next
    }
}

/// Refuses a policy with more exceptions in one family than its kernel trie holds, before
/// anything reaches the kernel (an insert into a full trie fails half-way through a change).
fn check_exception_capacity(current: &DesiredPolicy, next: &DesiredPolicy) -> Result<(), String> {
    let capacity = geofilter_common::maps::EXCEPT_CAPACITY as usize;
    for (family, v4) in [("IPv4", true), ("IPv6", false)] {
        let count = |p: &DesiredPolicy| {
            p.exceptions
                .keys()
                .filter(|c| c.addr.is_ipv4() == v4)
                .count()
        };
        let (now, wanted) = (count(current), count(next));
        if wanted > capacity && wanted > now {
            return Err(format!(
                "exception limit reached: the filter holds at most {capacity} {family} \
                 exceptions ({now} now, this change would make {wanted}); nothing changed"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
