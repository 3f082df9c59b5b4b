//! Host tests of the change rules and of the rollback of one confirmed change.
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
            asns: Default::default(),
        },
    )
    .unwrap()
    .policy;
    let p = apply(
        &p,
        &Change::Unblock {
            countries: set(&["by"]),
            asns: Default::default(),
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
        asns: Default::default(),
    }
}

fn unblock(countries: &[&str]) -> Change {
    Change::Unblock {
        countries: set(countries),
        asns: Default::default(),
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
