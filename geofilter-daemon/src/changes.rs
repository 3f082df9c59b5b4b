//! What each policy change does to the desired policy. Parsing happens here, so a change with one
//! bad country code or CIDR is refused whole, before anything reaches the kernel.

use std::net::{IpAddr, Ipv6Addr};

use crate::{
    control::protocol::Change,
    daemon::parse_countries,
    policy::{self, DesiredPolicy},
    rules::{Cidr, ExceptionAction, PortRange},
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
                refuse_embedded(&cidr)?;
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
    Ok(next)
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
    fn ipv6_exceptions_inside_ranges_filtered_as_ipv4_are_refused() {
        let add = |cidr: &str| {
            apply(
                &DesiredPolicy::default(),
                &Change::ExceptAdd {
                    cidrs: vec![cidr.into()],
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
}
