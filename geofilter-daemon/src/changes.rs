//! What each policy change does to the desired policy. Parsing happens here, so a change with one
//! bad country code or CIDR is refused whole, before anything reaches the kernel.

use crate::{
    control::protocol::Change,
    daemon::parse_countries,
    policy::DesiredPolicy,
    rules::{Cidr, ExceptionAction, PortRange},
};

fn parse_all<T: std::str::FromStr<Err = String>>(items: &[String]) -> Result<Vec<T>, String> {
    items.iter().map(|i| i.parse()).collect()
}

/// The policy after `change`, or why the change is refused.
pub fn apply(current: &DesiredPolicy, change: &Change) -> Result<DesiredPolicy, String> {
    let mut next = current.clone();
    match change {
        Change::Block { countries } => next.countries.extend(parse_countries(countries)?),
        Change::Unblock { countries } => {
            for c in parse_countries(countries)? {
                next.countries.remove(&c);
            }
        }
        Change::Mode { mode } => next.mode = *mode,
        Change::Unknown { action } => next.unknown = *action,
        Change::Monitor { on } => next.monitor = *on,
        Change::ExceptAdd { cidrs, drop } => {
            let action = if *drop {
                ExceptionAction::Drop
            } else {
                ExceptionAction::Pass
            };
            for cidr in parse_all::<Cidr>(cidrs)? {
                next.exceptions.insert(cidr, action);
            }
        }
        Change::ExceptDel { cidrs } => {
            for cidr in parse_all::<Cidr>(cidrs)? {
                if next.exceptions.remove(&cidr).is_none() {
                    return Err(format!("no exception {cidr} to delete"));
                }
            }
        }
        Change::PortsSet { only, exempt } => {
            if only.is_empty() && exempt.is_empty() {
                return Err(
                    "ports set needs --only or --exempt (use `ports clear` to remove the scope)"
                        .into(),
                );
            }
            next.ports.only = parse_all::<PortRange>(only)?.into_iter().collect();
            next.ports.exempt = parse_all::<PortRange>(exempt)?.into_iter().collect();
        }
        Change::PortsClear {} => next.ports = Default::default(),
    }
    check_exception_capacity(current, &next)?;
    Ok(next)
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

    #[test]
    fn one_bad_item_refuses_the_whole_change() {
        let base = DesiredPolicy::default();
        let err = apply(
            &base,
            &Change::Block {
                countries: vec!["RU".into(), "XQ".into()],
            },
        )
        .unwrap_err();
        assert!(err.contains("XQ"), "{err}");
        let err = apply(
            &base,
            &Change::ExceptAdd {
                cidrs: vec!["10.0.0.0/8".into(), "10.0.0.1/8".into()],
                drop: false,
            },
        )
        .unwrap_err();
        assert!(err.contains("host bits"), "{err}");
        let err = apply(
            &base,
            &Change::ExceptDel {
                cidrs: vec!["10.0.0.0/8".into()],
            },
        )
        .unwrap_err();
        assert!(err.contains("no exception"), "{err}");
    }

    #[test]
    fn changes_compose() {
        let p = apply(
            &DesiredPolicy::default(),
            &Change::Block {
                countries: vec!["ru".into(), "BY".into()],
            },
        )
        .unwrap();
        let p = apply(
            &p,
            &Change::Unblock {
                countries: vec!["by".into()],
            },
        )
        .unwrap();
        assert_eq!(p.countries.len(), 1);
        let p = apply(
            &p,
            &Change::PortsSet {
                only: vec![],
                exempt: vec!["tcp:80".into()],
            },
        )
        .unwrap();
        assert_eq!(p.ports.exempt.len(), 1);
        let p = apply(&p, &Change::PortsClear {}).unwrap();
        assert!(p.ports.is_everything());
    }

    #[test]
    fn exceptions_past_a_familys_capacity_are_refused_before_the_kernel() {
        let capacity = geofilter_common::maps::EXCEPT_CAPACITY as usize;
        let v4 = |i: usize| format!("10.{}.{}.{}", i >> 16 & 255, i >> 8 & 255, i & 255);
        let add = |cidrs: Vec<String>| Change::ExceptAdd { cidrs, drop: false };
        let full = apply(
            &DesiredPolicy::default(),
            &add((0..capacity).map(v4).collect()),
        )
        .unwrap();
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
        apply(&full, &add(vec!["2001:db8::/32".into()])).unwrap();
        apply(&full, &Change::ExceptDel { cidrs: vec![v4(0)] }).unwrap();
    }
}
