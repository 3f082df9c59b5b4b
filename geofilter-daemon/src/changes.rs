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
        Change::Block { countries } => {
            for &c in countries {
                next.countries.insert(c);
                touched.insert(Element::Country(c));
            }
        }
        Change::Unblock { countries } => {
            for &c in countries {
                next.countries.remove(&c);
                touched.insert(Element::Country(c));
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
        let taken = |e: &Element| touched.contains(e) || mode && matches!(e, Element::Country(_));
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
mod tests {
    use super::*;

    /// Items as a request carries them, parsed.
    fn parsed<T: std::str::FromStr<Err: std::fmt::Debug>>(items: &[&str]) -> Vec<T> {
        items.iter().map(|i| i.parse().unwrap()).collect()
    }

    fn set(codes: &[&str]) -> BTreeSet<CountryId> {
        codes
            .iter()
            .map(|c| crate::country::parse_user_code(c).unwrap())
            .collect()
    }

    #[test]
    fn one_bad_item_refuses_the_whole_change() {
        // Items are parsed when the request is decoded: one bad one refuses all of it.
        let decode =
            |v: serde_json::Value| serde_json::from_value::<Change>(v).unwrap_err().to_string();
        let err = decode(serde_json::json!({"kind": "block", "countries": ["RU", "XQ"]}));
        assert!(err.contains("XQ"), "{err}");
        let err = decode(serde_json::json!({"kind": "except_add",
            "cidrs": ["10.0.0.0/8", "10.0.0.1/8"]}));
        assert!(err.contains("host bits"), "{err}");
        let base = DesiredPolicy::default();
        let err = apply(
            &base,
            &Change::ExceptDel {
                cidrs: parsed(&["10.0.0.0/8"]),
            },
        )
        .unwrap_err();
        assert!(err.contains("no exception"), "{err}");
    }

    #[test]
    fn ipv6_exceptions_inside_ranges_filtered_as_ipv4_are_refused() {
        let add = |cidr: &str| {
            apply(
                &DesiredPolicy::default(),
                &Change::ExceptAdd {
                    cidrs: parsed(&[cidr]),
                    drop: true,
                },
            )
        };
        for cidr in [
            "::ffff:77.88.8.8",
            "::ffff:0:0/96",
            "2002::/16",
            "2002:4d58:808::/48",
            "64:ff9b::/96",
            "2001::/32",
            "::77.88.8.0/120",
        ] {
            let err = add(cidr).expect_err(cidr);
            assert!(err.contains("never apply") && err.contains("IPv4"), "{err}");
        }
        // Wider ranges also hold ordinary IPv6 addresses, and IPv4 itself is what to write.
        for cidr in ["2000::/3", "::/0", "::/96", "2001::/16", "77.88.8.8"] {
            add(cidr).unwrap_or_else(|e| panic!("{cidr}: {e}"));
        }
    }

    #[test]
    fn changes_compose() {
        let p = apply(
            &DesiredPolicy::default(),
            &Change::Block {
                countries: set(&["ru", "BY"]),
            },
        )
        .unwrap()
        .policy;
        let p = apply(
            &p,
            &Change::Unblock {
                countries: set(&["by"]),
            },
        )
        .unwrap()
        .policy;
        assert_eq!(p.countries.len(), 1);
        let p = apply(
            &p,
            &Change::PortsSet {
                only: vec![],
                exempt: parsed(&["tcp:80"]),
            },
        )
        .unwrap()
        .policy;
        assert_eq!(p.ports.exempt.len(), 1);
        let p = apply(&p, &Change::PortsClear {}).unwrap().policy;
        assert!(p.ports.is_everything());
    }

    fn block(countries: &[&str]) -> Change {
        Change::Block {
            countries: set(countries),
        }
    }

    fn unblock(countries: &[&str]) -> Change {
        Change::Unblock {
            countries: set(countries),
        }
    }

    /// Applies `confirmed` (as with `--confirm`), then `later`, then rolls back; returns the
    /// policy after the rollback.
    fn roll_back(base: &DesiredPolicy, confirmed: &Change, later: &[Change]) -> DesiredPolicy {
        let after = apply(base, confirmed).unwrap().policy;
        let mut undo = Undo::new(base, &after);
        let mut current = after;
        for change in later {
            let applied = apply(&current, change).unwrap();
            undo.later_change(&applied.touched);
            current = applied.policy;
        }
        undo.revert(&current)
    }

    fn countries(p: &DesiredPolicy) -> Vec<String> {
        p.countries
            .iter()
            .map(|&c| crate::country::code_str(c).to_string())
            .collect()
    }

    #[test]
    fn a_rollback_undoes_only_the_confirmed_change() {
        let ru = apply(&DesiredPolicy::default(), &block(&["RU"]))
            .unwrap()
            .policy;
        // Alone, the rollback is a plain restore.
        assert_eq!(roll_back(&ru, &block(&["BY"]), &[]), ru);
        // A later change of another country stays.
        let p = roll_back(&ru, &block(&["BY"]), &[block(&["CN"])]);
        assert_eq!(countries(&p), ["CN", "RU"]);
        // A later change that set the same country again is the newer word on it.
        let p = roll_back(&ru, &block(&["BY"]), &[unblock(&["BY"]), block(&["BY"])]);
        assert_eq!(countries(&p), ["BY", "RU"]);
        let p = roll_back(&ru, &block(&["BY"]), &[block(&["BY"])]);
        assert_eq!(countries(&p), ["BY", "RU"]);
        // An element the confirmed change did not alter is not its to undo.
        let p = roll_back(&ru, &block(&["RU", "BY"]), &[unblock(&["RU"])]);
        assert!(countries(&p).is_empty(), "{:?}", countries(&p));
        // A mode switch takes over the whole list; other elements still roll back.
        let p = roll_back(
            &ru,
            &block(&["BY"]),
            &[Change::Mode {
                mode: crate::policy::Mode::AllowOnly,
            }],
        );
        assert_eq!(countries(&p), ["BY", "RU"]);
        assert_eq!(p.mode, crate::policy::Mode::AllowOnly);
    }

    #[test]
    fn a_rollback_restores_exceptions_and_ports_element_by_element() {
        let mut base = DesiredPolicy::default();
        base.exceptions
            .insert("10.0.0.0/8".parse().unwrap(), ExceptionAction::Pass);
        // The confirmed change turns 10/8 into a drop and adds 192.0.2.0/24; a later change adds
        // another exception and sets the port scope.
        let confirmed = Change::ExceptAdd {
            cidrs: parsed(&["10.0.0.0/8", "192.0.2.0/24"]),
            drop: true,
        };
        let later = [
            Change::ExceptAdd {
                cidrs: parsed(&["198.51.100.0/24"]),
                drop: false,
            },
            Change::PortsSet {
                only: vec![],
                exempt: parsed(&["tcp:80"]),
            },
        ];
        let p = roll_back(&base, &confirmed, &later);
        let shown: Vec<String> = p
            .exceptions
            .iter()
            .map(|(c, a)| format!("{c} {a:?}"))
            .collect();
        assert_eq!(shown, ["10.0.0.0/8 Pass", "198.51.100.0/24 Pass"]);
        assert_eq!(p.ports.exempt.len(), 1, "the later port scope stays");
        // Deleting an exception with --confirm brings it back.
        let p = roll_back(
            &base,
            &Change::ExceptDel {
                cidrs: parsed(&["10.0.0.0/8"]),
            },
            &[],
        );
        assert_eq!(p, base);
    }

    #[test]
    fn exceptions_past_a_familys_capacity_are_refused_before_the_kernel() {
        let capacity = geofilter_common::maps::EXCEPT_CAPACITY as usize;
        let v4 = |i: usize| -> Cidr {
            format!("10.{}.{}.{}", i >> 16 & 255, i >> 8 & 255, i & 255)
                .parse()
                .unwrap()
        };
        let add = |cidrs: Vec<Cidr>| Change::ExceptAdd { cidrs, drop: false };
        let full = apply(
            &DesiredPolicy::default(),
            &add((0..capacity).map(v4).collect()),
        )
        .unwrap()
        .policy;
        let err = apply(&full, &add(vec![v4(capacity)])).unwrap_err();
        assert_eq!(
            err,
            format!(
                "exception limit reached: the filter holds at most {capacity} IPv4 exceptions \
                 ({capacity} now, this change would make {}); nothing changed",
                capacity + 1
            )
        );
        // Replacing an action, the other family, and removing all still work when full.
        apply(&full, &add(vec![v4(7)])).unwrap();
        apply(&full, &add(parsed(&["2001:db8::/32"]))).unwrap();
        apply(&full, &Change::ExceptDel { cidrs: vec![v4(0)] }).unwrap();
    }
}
