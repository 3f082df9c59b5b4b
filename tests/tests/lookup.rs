//! The stride tables in the kernel: the loaded program against the LPM-trie variant (the kernel's
//! own LPM trie, the independent oracle) and against the policy model, including the exception
//! marks that decide which packets look exceptions up.
//!
//! Every answer comes from a `why` probe (BPF_PROG_TEST_RUN with the probe record) through the
//! verified programs, so these tests check the walk the program does, not a user-space copy.

use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use geofilter_common::{PrefixInfo, Verdict, country::country_id};
use geofilter_daemon::{
    datapath::{Datapath, variants::LpmDatapath},
    geoip::{self, Prefix},
    paths::PinLayout,
    policy::{self, DesiredPolicy},
    rules::{Cidr, ExceptionAction},
};
use geofilter_tests::{netns::unique, require_root, rng::Rng};

fn v4(s: &str) -> u128 {
    u128::from(u32::from(s.parse::<Ipv4Addr>().unwrap()))
}

fn v6(s: &str) -> u128 {
    u128::from(s.parse::<Ipv6Addr>().unwrap())
}

fn p(addr: u128, len: u8, code: &[u8; 2], source: u16) -> Prefix {
    Prefix {
        addr,
        len,
        info: PrefixInfo {
            country: country_id(*code).unwrap(),
            source,
        },
    }
}

fn ip4(addr: u128) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(addr as u32))
}

fn ip6(addr: u128) -> IpAddr {
    IpAddr::V6(Ipv6Addr::from(addr))
}

/// Nested, adjacent and deep prefixes: an LPM table resolves them to the most specific, and the
/// stride tables must answer the same. Shapes: a /8 holding a /20 holding a /32; /25 /26 /31 /32
/// side by side in one /24; a /12 across 16 root entries; IPv6 /32s, a /48 with a /70, /80 and
/// /128 below it (the levels past /64), and a /1.
fn nested() -> (Vec<Prefix>, Vec<Prefix>) {
    let table_v4 = vec![
        p(v4("7.0.0.0"), 8, b"DE", 0),
        p(v4("7.1.0.0"), 20, b"FR", 1),
        p(v4("7.1.2.3"), 32, b"RU", 0),
        p(v4("192.0.2.0"), 25, b"RU", 0),
        p(v4("192.0.2.128"), 26, b"DE", 1),
        p(v4("192.0.2.192"), 31, b"FR", 0),
        p(v4("192.0.2.255"), 32, b"IT", 0),
        p(v4("100.16.0.0"), 12, b"US", 2),
        p(v4("5.45.192.0"), 18, b"RU", 0),
    ];
    let table_v6 = vec![
        p(v6("2a01:598::"), 32, b"DE", 0),
        p(v6("2a02:6b8::"), 32, b"RU", 0),
        p(v6("2001:db8::"), 48, b"FR", 1),
        p(v6("2001:db8:0:2::"), 70, b"DE", 0),
        p(v6("2001:db8:0:2:ffff::"), 80, b"IT", 0),
        p(v6("2001:db8:0:2:3:4:5:6"), 128, b"RU", 0),
        p(v6("8000::"), 1, b"US", 2),
    ];
    (table_v4, table_v6)
}

/// Full nodes: `count` neighbouring prefixes of length `len` from `base`, three countries in
/// turn, so the chunk they fill has a run per entry (the largest node the kernel holds, 266
/// words, and every bitmap word and run count in use).
fn alternating(base: u128, len: u8, bits: u32, count: u128) -> Vec<Prefix> {
    let codes = [b"DE", b"RU", b"FR"];
    (0..count)
        .map(|i| {
            p(
                base + (i << (bits - u32::from(len))),
                len,
                codes[(i % 3) as usize],
                0,
            )
        })
        .collect()
}

/// Full nodes at the root, one level below and at the last level, for both families.
fn full_nodes() -> (Vec<Prefix>, Vec<Prefix>) {
    let mut t4 = alternating(v4("11.0.0.0"), 16, 32, 256);
    t4.extend(alternating(v4("12.0.0.0"), 24, 32, 256));
    t4.extend(alternating(v4("12.0.7.0"), 32, 32, 256));
    t4.sort_by_key(|q| (q.addr, q.len));
    let mut t6 = alternating(v6("2a00::"), 16, 128, 256);
    t6.extend(alternating(v6("2001:db8::"), 40, 128, 256));
    t6.extend(alternating(
        v6("2001:db8:1234:5678:9abc:def0:1234:5600"),
        128,
        128,
        256,
    ));
    t6.sort_by_key(|q| (q.addr, q.len));
    (t4, t6)
}

/// Every prefix's first and last address and their neighbours, plus random addresses inside
/// each prefix and anywhere.
fn probes(prefixes: &[Prefix], bits: u32, rng: &mut Rng, random: usize) -> Vec<u128> {
    let max = if bits == 128 {
        u128::MAX
    } else {
        (1 << bits) - 1
    };
    let mut out = vec![0, max];
    for q in prefixes {
        let host = bits - u32::from(q.len);
        let span = if host == 128 {
            u128::MAX
        } else {
            (1u128 << host) - 1
        };
        let last = q.addr | span;
        out.extend([
            q.addr,
            q.addr.saturating_sub(1),
            last,
            last.saturating_add(1).min(max),
        ]);
        for _ in 0..4 {
            out.push(q.addr | (wide(rng) & span));
        }
    }
    for _ in 0..random {
        out.push(wide(rng) & max);
    }
    out
}

fn wide(rng: &mut Rng) -> u128 {
    u128::from(rng.next_u64()) << 64 | u128::from(rng.next_u64())
}

fn assert_same_answers(
    dp: &Datapath,
    lpm: &LpmDatapath,
    addrs: impl IntoIterator<Item = IpAddr>,
    what: &str,
) -> usize {
    let mut n = 0;
    for addr in addrs {
        let stride = dp.classify(addr).expect("probe");
        let trie = lpm.classify(addr).expect("probe");
        assert_eq!(stride, trie, "{what}: {addr}");
        n += 1;
    }
    n
}

#[test]
fn stride_tables_answer_like_the_kernel_lpm_trie() {
    require_root();
    let mut dp = Datapath::load().expect("loading geofilter");
    let mut lpm = LpmDatapath::load().expect("loading the LPM-trie variant");
    let block = DesiredPolicy {
        countries: [country_id(*b"RU").unwrap(), country_id(*b"US").unwrap()].into(),
        ..Default::default()
    }
    .compile();
    dp.set_policy(&block).unwrap();
    lpm.set_policy(&block).unwrap();
    let mut rng = Rng(0x100c_u64);

    // Hand-made nesting (which compiled databases never have, but the table API accepts).
    let (table_v4, table_v6) = nested();
    dp.install_tables(&table_v4, &table_v6).unwrap();
    lpm.install_tables(&table_v4, &table_v6).unwrap();
    let mut n = assert_same_answers(
        &dp,
        &lpm,
        probes(&table_v4, 32, &mut rng, 2000).into_iter().map(ip4),
        "nested IPv4",
    );
    n += assert_same_answers(
        &dp,
        &lpm,
        probes(&table_v6, 128, &mut rng, 2000).into_iter().map(ip6),
        "nested IPv6",
    );

    // Nodes with a run per entry (full bitmaps, every run count, the largest nodes a page holds).
    let (full_v4, full_v6) = full_nodes();
    dp.install_tables(&full_v4, &full_v6).unwrap();
    lpm.install_tables(&full_v4, &full_v6).unwrap();
    n += assert_same_answers(
        &dp,
        &lpm,
        probes(&full_v4, 32, &mut rng, 500).into_iter().map(ip4),
        "full nodes IPv4",
    );
    n += assert_same_answers(
        &dp,
        &lpm,
        probes(&full_v6, 128, &mut rng, 500).into_iter().map(ip6),
        "full nodes IPv6",
    );

    // The real geo-whois-asn-country slices, compiled as the daemon compiles them.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../geofilter-daemon/testdata/geo-whois-asn-country");
    let db = geoip::load(
        &[
            dir.join("geo-whois-asn-country-ipv4.slice.csv"),
            dir.join("geo-whois-asn-country-ipv6.slice.csv"),
        ],
        None,
    )
    .unwrap();
    dp.install_tables(&db.v4, &db.v6).unwrap();
    lpm.install_tables(&db.v4, &db.v6).unwrap();
    n += assert_same_answers(
        &dp,
        &lpm,
        probes(&db.v4, 32, &mut rng, 5000).into_iter().map(ip4),
        "database IPv4",
    );
    n += assert_same_answers(
        &dp,
        &lpm,
        probes(&db.v6, 128, &mut rng, 5000).into_iter().map(ip6),
        "database IPv6",
    );
    eprintln!("lookup: {n} addresses, stride tables and LPM trie agree");
}

/// What the policy model says about `addr` (the rules of `DesiredPolicy`), as a verdict.
fn expected(policy: &DesiredPolicy, table: &[Prefix], bits: u32, addr: IpAddr) -> Verdict {
    let numeric = match addr {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    };
    let country = table
        .iter()
        .filter(|q| {
            let host = bits - u32::from(q.len);
            host == 128 || numeric >> host == q.addr >> host
        })
        .max_by_key(|q| q.len)
        .map_or(0, |q| q.info.country);
    if policy.would_drop(addr, country, None) {
        Verdict::Drop
    } else {
        Verdict::Pass
    }
}

/// Exceptions at every depth of the table, changed while the tables are replaced: each probe's
/// verdict follows the model, addresses far from every exception do not look exceptions up, and
/// removing the exceptions leaves no mark behind.
#[test]
fn exception_marks_follow_exceptions_and_table_reloads() {
    require_root();
    let mut dp = Datapath::load().expect("loading geofilter");
    let (table_v4, table_v6) = nested();
    dp.install_tables(&table_v4, &table_v6).unwrap();
    let base = DesiredPolicy {
        countries: [country_id(*b"RU").unwrap(), country_id(*b"DE").unwrap()].into(),
        ..Default::default()
    };
    policy::apply(&mut dp, &DesiredPolicy::default(), &base).unwrap();
    let rules: BTreeMap<Cidr, ExceptionAction> = [
        // A /32 inside a /18 leaf of the root (the leaf is marked).
        ("5.45.200.7", ExceptionAction::Pass),
        // Two in one /24 chunk, sharing a leaf: removing one keeps the other working.
        ("192.0.2.0/27", ExceptionAction::Pass),
        ("192.0.2.64/26", ExceptionAction::Pass),
        // A /10 across 64 root entries, and a /20 covering 16 entries of a chunk.
        ("100.0.0.0/10", ExceptionAction::Drop),
        ("7.1.0.0/20", ExceptionAction::Drop),
        // IPv6: below /64 in the deep chain, and a /40 on a /32 leaf.
        ("2001:db8:0:2:3:4:5:6", ExceptionAction::Pass),
        ("2a02:6b8:10::/44", ExceptionAction::Pass),
    ]
    .into_iter()
    .map(|(c, a)| (c.parse().unwrap(), a))
    .collect();
    let with_rules = DesiredPolicy {
        exceptions: rules.clone(),
        ..base.clone()
    };
    let far = [
        IpAddr::from([46, 114, 1, 1]),
        IpAddr::from([7, 2, 0, 1]),
        "2a01:598::1".parse().unwrap(),
        "2001:db8:0:3::1".parse().unwrap(),
    ];
    let mut rng = Rng(0xe8c_u64);

    let check = |dp: &Datapath, policy: &DesiredPolicy, what: &str, rng: &mut Rng| {
        let mut addrs: Vec<IpAddr> = probes(&table_v4, 32, rng, 500)
            .into_iter()
            .map(ip4)
            .chain(probes(&table_v6, 128, rng, 500).into_iter().map(ip6))
            .collect();
        for cidr in rules.keys() {
            let bits = if cidr.addr.is_ipv4() { 32 } else { 128 };
            let span = if bits - u32::from(cidr.len) == 128 {
                u128::MAX
            } else {
                (1u128 << (bits - u32::from(cidr.len))) - 1
            };
            let last = cidr.bits() | span;
            for a in [
                cidr.bits(),
                last,
                cidr.bits().wrapping_sub(1),
                last.wrapping_add(1),
            ] {
                addrs.push(if bits == 32 {
                    ip4(a & 0xffff_ffff)
                } else {
                    ip6(a)
                });
            }
        }
        for addr in addrs {
            let (table, bits) = if addr.is_ipv4() {
                (&table_v4, 32)
            } else {
                (&table_v6, 128)
            };
            let want = expected(policy, table, bits, addr);
            let got = dp.classify(addr).expect("probe").verdict;
            assert_eq!(got, want, "{what}: {addr}");
            if policy.exception_for(addr).is_some() {
                assert!(
                    dp.exception_lookup_needed(addr).unwrap(),
                    "{what}: {addr} is excepted but its path carries no mark"
                );
            }
        }
    };

    check(&dp, &base, "no exceptions", &mut rng);
    policy::apply(&mut dp, &base, &with_rules).unwrap();
    check(&dp, &with_rules, "exceptions set", &mut rng);
    for addr in far {
        assert!(
            !dp.exception_lookup_needed(addr).unwrap(),
            "{addr} is far from every exception but would look them up"
        );
    }

    // A reload builds new tables: the marks must be on them before they go live.
    dp.install_tables(&table_v4, &table_v6).unwrap();
    check(&dp, &with_rules, "after a table reload", &mut rng);

    // Remove one of the two exceptions sharing a leaf, then all of them.
    let mut fewer = with_rules.clone();
    fewer.exceptions.remove(&"192.0.2.0/27".parse().unwrap());
    policy::apply(&mut dp, &with_rules, &fewer).unwrap();
    check(&dp, &fewer, "one exception removed", &mut rng);
    policy::apply(&mut dp, &fewer, &base).unwrap();
    check(&dp, &base, "all removed", &mut rng);
    for cidr in rules.keys() {
        assert!(
            !dp.exception_lookup_needed(cidr.addr).unwrap(),
            "{cidr}: a mark survived its exception"
        );
    }
}

/// A daemon that adopts pinned state learns the exceptions and the live tables from the kernel
/// and keeps maintaining the marks.
#[test]
fn adopted_tables_keep_their_exception_marks() {
    require_root();
    let root = std::path::PathBuf::from("/sys/fs/bpf").join(unique("geofilter-lookup-"));
    struct Cleanup(std::path::PathBuf);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let _cleanup = Cleanup(root.clone());
    let layout = PinLayout::new(root);
    let (table_v4, table_v6) = nested();
    let base = DesiredPolicy {
        countries: [country_id(*b"RU").unwrap()].into(),
        ..Default::default()
    };
    let with_rules = DesiredPolicy {
        exceptions: [
            ("5.45.200.7".parse().unwrap(), ExceptionAction::Pass),
            ("2a02:6b8:10::/44".parse().unwrap(), ExceptionAction::Pass),
        ]
        .into(),
        ..base.clone()
    };
    {
        let mut dp = Datapath::load_pinned(&layout).expect("loading pinned");
        assert!(!dp.adopted);
        dp.install_tables(&table_v4, &table_v6).unwrap();
        policy::apply(&mut dp, &DesiredPolicy::default(), &with_rules).unwrap();
    }
    let mut dp = Datapath::load_pinned(&layout).expect("adopting");
    assert!(dp.adopted);
    let excepted: IpAddr = "5.45.200.7".parse().unwrap();
    assert_eq!(dp.classify(excepted).unwrap().verdict, Verdict::Pass);
    assert!(dp.exception_lookup_needed(excepted).unwrap());
    assert_eq!(
        dp.classify("5.45.200.8".parse().unwrap()).unwrap().verdict,
        Verdict::Drop
    );
    policy::apply(&mut dp, &with_rules, &base).unwrap();
    assert_eq!(dp.classify(excepted).unwrap().verdict, Verdict::Drop);
    assert!(!dp.exception_lookup_needed(excepted).unwrap());
}
