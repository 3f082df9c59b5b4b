//! Tier 2 for nets: ASN and blocklist verdicts through the loaded, verified XDP program with
//! BPF_PROG_TEST_RUN, one row per case, in both modes; the counters of listed ASNs and lists;
//! and the `why` probe's report of the net, all against tables compiled from countries, ASNs
//! and lists together (geofilter_daemon::nets).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use aya::programs::{TestRun, TestRunOptions};
use geofilter_common::{Decider, PrefixInfo, Verdict, country::country_id};
use geofilter_daemon::{
    asn::{AsnDb, AsnRange},
    datapath::{Datapath, ListMasks},
    geoip::{CompiledDb, Prefix},
    nets::{self, ListRanges},
    policy::{DesiredPolicy, Mode},
    rules::ExceptionAction,
};
use geofilter_tests::{
    frame::{self, ETH_P_IP, ETH_P_IPV6, IPPROTO_UDP, Ipv4Opts},
    require_root,
};

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;

fn v4(a: [u8; 4]) -> u128 {
    u128::from(u32::from(Ipv4Addr::from(a)))
}

fn cc(code: &[u8; 2]) -> u16 {
    country_id(*code).expect("valid code")
}

/// RU 5.45.192.0/18 and DE 46.114.0.0/16 (and DE 2a01:598::/32); AS64500 covers part of each
/// (5.45.200.0/24 in RU, 46.114.1.0/24 in DE) and 198.51.100.0/24, which has no country; AS64501
/// is 46.114.2.0/24. List 0 ("drop") holds 46.114.3.0/24 and 5.45.201.0/24; list 3 ("pass")
/// holds 5.45.200.7/32, inside AS64500 and RU.
fn datapath() -> Datapath {
    require_root();
    let mut dp = Datapath::load().expect("loading the XDP program");
    let info = |code| PrefixInfo {
        country: cc(code),
        source: 0,
    };
    let db = CompiledDb {
        sources: Vec::new(),
        v4: vec![
            Prefix {
                addr: v4([5, 45, 192, 0]),
                len: 18,
                info: info(b"RU"),
            },
            Prefix {
                addr: v4([46, 114, 0, 0]),
                len: 16,
                info: info(b"DE"),
            },
        ],
        v6: vec![Prefix {
            addr: u128::from(Ipv6Addr::new(0x2a01, 0x598, 0, 0, 0, 0, 0, 0)),
            len: 32,
            info: info(b"DE"),
        }],
    };
    let range = |a: [u8; 4], b: [u8; 4], asn| AsnRange {
        start: v4(a),
        end: v4(b),
        asn,
    };
    let asn = AsnDb {
        sources: Vec::new(),
        v4: vec![
            range([5, 45, 200, 0], [5, 45, 200, 255], 64500),
            range([46, 114, 1, 0], [46, 114, 1, 255], 64500),
            range([46, 114, 2, 0], [46, 114, 2, 255], 64501),
            range([198, 51, 100, 0], [198, 51, 100, 255], 64500),
        ],
        v6: vec![AsnRange {
            start: u128::from(Ipv6Addr::new(0x2a01, 0x598, 1, 0, 0, 0, 0, 0)),
            end: u128::from(Ipv6Addr::new(
                0x2a01, 0x598, 1, 0, 0xffff, 0xffff, 0xffff, 0xffff,
            )),
            asn: 64500,
        }],
        names: Default::default(),
    };
    let drop_list = [
        (v4([5, 45, 201, 0]), v4([5, 45, 201, 255])),
        (v4([46, 114, 3, 0]), v4([46, 114, 3, 255])),
    ];
    let pass_list = [(v4([5, 45, 200, 7]), v4([5, 45, 200, 7]))];
    let lists = [
        ListRanges {
            slot: 0,
            v4: &drop_list,
            v6: &[],
        },
        ListRanges {
            slot: 3,
            v4: &pass_list,
            v6: &[],
        },
    ];
    let (t4, t6) = nets::inputs(&db, Some(&asn), &lists).expect("compiling nets");
    dp.install_inputs(&t4, &t6).expect("installing tables");
    dp
}

/// Makes `policy` (with the lists of `masks` on) the live one, the way the daemon does.
fn enforce(dp: &mut Datapath, policy: &DesiredPolicy, masks: ListMasks) {
    dp.list_asns(&policy.asns).expect("listing ASNs");
    dp.set_list_masks(masks);
    dp.set_policy(&dp.compile_policy(policy)).expect("policy");
    dp.unlist_asns(&policy.asns).expect("unlisting ASNs");
}

fn run(dp: &Datapath, src: IpAddr) -> u32 {
    let frame = match src {
        IpAddr::V4(a) => frame::ethernet(
            &[],
            ETH_P_IP,
            &frame::ipv4(
                a,
                Ipv4Addr::new(10, 0, 0, 1),
                IPPROTO_UDP,
                &frame::udp(b"geofilter"),
                Ipv4Opts::default(),
            ),
        ),
        IpAddr::V6(a) => frame::ethernet(
            &[],
            ETH_P_IPV6,
            &frame::ipv6(
                a,
                Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1),
                IPPROTO_UDP,
                &frame::udp(b"geofilter"),
            ),
        ),
    };
    dp.program()
        .test_run(TestRunOptions {
            data_in: Some(&frame),
            ..TestRunOptions::new()
        })
        .expect("BPF_PROG_TEST_RUN")
        .return_value
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// (source, action, what decided) for each case under one policy.
fn check(dp: &Datapath, name: &str, rows: &[(&str, u32, Decider)]) {
    for &(src, action, decider) in rows {
        assert_eq!(run(dp, ip(src)), action, "{name}: {src}");
        let probe = dp.classify(ip(src)).expect("probe");
        assert_eq!(probe.decided_by, decider, "{name}: {src}: {probe:?}");
    }
}

#[test]
fn asns_and_lists_decide_in_order_in_both_modes() {
    use Decider::{Asn, Country, Exception, List};
    let mut dp = datapath();
    let drop0 = ListMasks { drop: 1, pass: 0 };
    let both = ListMasks {
        drop: 1,
        pass: 1 << 3,
    };

    // Deny mode, RU blocked, AS64500 blocked, the drop list and the pass list on.
    let mut policy = DesiredPolicy {
        countries: [cc(b"RU")].into(),
        asns: [64500].into(),
        ..Default::default()
    };
    enforce(&mut dp, &policy, both);
    check(
        &dp,
        "deny",
        &[
            ("5.45.192.1", XDP_DROP, Country),    // RU, no ASN
            ("46.114.0.1", XDP_PASS, Country),    // DE, no ASN
            ("46.114.1.1", XDP_DROP, Asn),        // DE in AS64500
            ("46.114.2.1", XDP_PASS, Country),    // DE in AS64501 (not listed)
            ("198.51.100.9", XDP_DROP, Asn),      // no country, AS64500
            ("46.114.3.1", XDP_DROP, List),       // the drop list
            ("5.45.200.7", XDP_PASS, List),       // the pass list beats RU and AS64500
            ("5.45.200.8", XDP_DROP, Asn),        // beside it: AS64500
            ("2a01:598:1::1", XDP_DROP, Asn),     // IPv6 in AS64500
            ("2a01:598:2::1", XDP_PASS, Country), // IPv6 DE
        ],
    );
    let probe = dp.classify(ip("5.45.200.7")).unwrap();
    assert_eq!(probe.lists, 1 << 3, "{probe:?}");
    assert_eq!(dp.net_asn(ip("5.45.200.7"), probe.net), Some(64500));
    assert_ne!(probe.listed, 0, "the net carries AS64500's listed index");

    // An exception still decides first.
    policy
        .exceptions
        .insert("46.114.1.0/24".parse().unwrap(), ExceptionAction::Pass);
    dp.set_exception(&"46.114.1.0/24".parse().unwrap(), ExceptionAction::Pass)
        .unwrap();
    enforce(&mut dp, &policy, both);
    check(&dp, "exception", &[("46.114.1.1", XDP_PASS, Exception)]);
    dp.remove_exception(&"46.114.1.0/24".parse().unwrap())
        .unwrap();
    policy.exceptions.clear();

    // The pass list off: AS64500 decides its address again; the drop list still on.
    enforce(&mut dp, &policy, drop0);
    check(
        &dp,
        "pass list off",
        &[
            ("5.45.200.7", XDP_DROP, Asn),
            ("46.114.3.1", XDP_DROP, List),
        ],
    );

    // Unblocking the ASN is a policy change only: its addresses fall back to their country.
    policy.asns.clear();
    enforce(&mut dp, &policy, ListMasks::default());
    check(
        &dp,
        "no asn",
        &[
            ("46.114.1.1", XDP_PASS, Country),
            ("198.51.100.9", XDP_PASS, Country),
            ("5.45.200.7", XDP_DROP, Country),
            ("46.114.3.1", XDP_PASS, Country),
        ],
    );
    assert!(dp.listed_asns().is_empty());

    // Allow-only DE plus AS64500: a packet passes when its country or its ASN is listed.
    let allow = DesiredPolicy {
        mode: Mode::AllowOnly,
        countries: [cc(b"DE")].into(),
        asns: [64500].into(),
        ..Default::default()
    };
    enforce(&mut dp, &allow, ListMasks::default());
    check(
        &dp,
        "allow-only",
        &[
            ("46.114.0.1", XDP_PASS, Country),
            ("5.45.192.1", XDP_DROP, Country),
            ("5.45.200.8", XDP_PASS, Asn), // RU, but in the allowed ASN
            ("198.51.100.9", XDP_PASS, Asn), // no country, allowed ASN
            ("46.114.2.1", XDP_PASS, Country),
        ],
    );
}

#[test]
fn listed_asns_and_lists_are_counted_and_a_reused_index_starts_at_zero() {
    let mut dp = datapath();
    let mut policy = DesiredPolicy {
        asns: [64500].into(),
        ..Default::default()
    };
    enforce(&mut dp, &policy, ListMasks { drop: 1, pass: 0 });
    for _ in 0..3 {
        run(&dp, ip("46.114.1.1"));
    }
    run(&dp, ip("46.114.3.1"));
    run(&dp, ip("46.114.2.1"));
    let counters = dp.counters().unwrap();
    let row = counters.asns[&64500];
    assert_eq!(row[Verdict::Drop as usize].packets, 3, "{row:?}");
    assert_eq!(counters.asns.len(), 1, "only listed ASNs have counters");
    assert_eq!(counters.lists[&0][Verdict::Drop as usize].packets, 1);
    // AS64501 takes the index AS64500 leaves: its counters start from zero.
    policy.asns = [64501].into();
    enforce(&mut dp, &policy, ListMasks::default());
    let counters = dp.counters().unwrap();
    assert_eq!(counters.asns[&64501][Verdict::Drop as usize].packets, 0);
    run(&dp, ip("46.114.2.1"));
    let counters = dp.counters().unwrap();
    assert_eq!(counters.asns[&64501][Verdict::Drop as usize].packets, 1);
}

/// The whole embedded country and ASN databases in one table: at every range boundary of the
/// ASN database (both sides), and at random addresses, the kernel's country is the country
/// database's answer and its ASN the ASN database's (its own reference lookup, which the ASN
/// tests check against each format's plain scan).
#[test]
fn the_kernel_answers_every_boundary_with_the_embedded_databases_country_and_asn() {
    use geofilter_daemon::{asn, geoip, policy::filtered_as};
    require_root();
    let mut dp = Datapath::load().expect("loading the XDP program");
    let db = geoip::embedded::load().expect("embedded country database");
    let asns = asn::embedded::load().expect("embedded ASN database");
    let (t4, t6) = nets::inputs(&db, Some(&asns), &[]).expect("compiling nets");
    dp.install_inputs(&t4, &t6).expect("installing tables");
    let mut rng = geofilter_tests::rng::Rng(0x5eed_a5a5);
    let mut addrs: Vec<IpAddr> = Vec::new();
    for (family, ranges) in [(4, &asns.v4), (6, &asns.v6)] {
        // Every 37th range's edges, and the address after it: tens of thousands of probes.
        for r in ranges.iter().step_by(37) {
            for a in [r.start, r.end, r.end.wrapping_add(1)] {
                addrs.push(if family == 4 {
                    IpAddr::from(Ipv4Addr::from(a as u32))
                } else {
                    IpAddr::from(Ipv6Addr::from(a))
                });
            }
        }
    }
    for _ in 0..5000 {
        addrs.push(IpAddr::from(Ipv4Addr::from(rng.next_u64() as u32)));
    }
    let mut checked = (0usize, 0usize);
    for addr in addrs {
        let (filtered, _) = filtered_as(addr);
        let got = dp.classify(addr).expect("probe");
        let want_country = db
            .lookup(filtered)
            .map_or(geofilter_common::UNKNOWN_COUNTRY, |p| p.info.country);
        let want_asn = asns.lookup(filtered);
        assert_eq!(got.country, want_country, "country of {addr}");
        assert_eq!(dp.net_asn(filtered, got.net), want_asn, "ASN of {addr}");
        checked.0 += 1;
        checked.1 += usize::from(want_asn.is_some());
    }
    assert!(checked.0 > 20_000 && checked.1 > 10_000, "{checked:?}");
}
