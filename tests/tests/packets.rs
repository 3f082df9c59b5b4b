//! Tier 2: crafted frames through the loaded XDP program with BPF_PROG_TEST_RUN, one row per
//! case: the verdict and exactly which counters moved (cilium's PKTGEN/SETUP/CHECK, as a table).

use std::net::{Ipv4Addr, Ipv6Addr};

use aya::programs::{TestRun, TestRunOptions};
use geofilter_common::{
    PacketClass, PrefixInfo, UNKNOWN_COUNTRY, Verdict,
    country::country_id,
    events::{EVENT_PORT, EVENTS_PASSED, Event, EventConfig},
};
use geofilter_daemon::{
    datapath::{Counters, Datapath},
    geoip::Prefix,
    policy::{DesiredPolicy, Mode, UnknownAction},
    rules::{ExceptionAction, PortScope},
};
use geofilter_tests::{
    frame::{
        self, ETH_P_8021AD, ETH_P_8021Q, ETH_P_ARP, ETH_P_IP, ETH_P_IPV6, ETH_P_LLDP, IPPROTO_UDP,
        Ipv4Opts,
    },
    require_root,
};

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;

const RU_V4: Ipv4Addr = Ipv4Addr::new(5, 45, 200, 7);
const DE_V4: Ipv4Addr = Ipv4Addr::new(46, 114, 1, 1);
const UNKNOWN_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const DST_V4: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const RU_V6: Ipv6Addr = Ipv6Addr::new(0x2a02, 0x6b8, 0, 0, 0, 0, 0, 7);
const DE_V6: Ipv6Addr = Ipv6Addr::new(0x2a01, 0x598, 1, 0, 0, 0, 0, 1);
const DST_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1);

fn cc(code: &[u8; 2]) -> u16 {
    country_id(*code).expect("valid code")
}

fn prefix(addr: u128, len: u8, code: &[u8; 2]) -> Prefix {
    Prefix {
        addr,
        len,
        info: PrefixInfo {
            country: cc(code),
            source: 0,
        },
    }
}

/// RU and DE in both families; everything else unknown.
fn datapath(policy: &DesiredPolicy) -> Datapath {
    require_root();
    let mut dp = Datapath::load().expect("loading the XDP program");
    let v4 = [
        prefix(
            u128::from(u32::from(Ipv4Addr::new(5, 45, 192, 0))),
            18,
            b"RU",
        ),
        prefix(
            u128::from(u32::from(Ipv4Addr::new(46, 114, 0, 0))),
            16,
            b"DE",
        ),
    ];
    let v6 = [
        prefix(
            u128::from(Ipv6Addr::new(0x2a01, 0x598, 0, 0, 0, 0, 0, 0)),
            32,
            b"DE",
        ),
        prefix(
            u128::from(Ipv6Addr::new(0x2a02, 0x6b8, 0, 0, 0, 0, 0, 0)),
            32,
            b"RU",
        ),
    ];
    dp.install_tables(&v4, &v6).expect("installing tables");
    dp.set_policy(&policy.compile()).expect("setting policy");
    dp
}

fn block_ru() -> DesiredPolicy {
    DesiredPolicy {
        countries: [cc(b"RU")].into(),
        ..Default::default()
    }
}

fn udp4(src: Ipv4Addr, opts: Ipv4Opts) -> Vec<u8> {
    frame::ipv4(src, DST_V4, IPPROTO_UDP, &frame::udp(b"geofilter"), opts)
}

fn udp6(src: Ipv6Addr) -> Vec<u8> {
    frame::ipv6(src, DST_V6, IPPROTO_UDP, &frame::udp(b"geofilter"))
}

/// What a row expects: the XDP action, the class counter that moves, and the country counter
/// that moves (none for frames that never reach a lookup).
struct Case {
    name: &'static str,
    frame: Vec<u8>,
    action: u32,
    class: PacketClass,
    country: Option<(u16, Verdict)>,
}

fn run(dp: &Datapath, frame: &[u8]) -> u32 {
    let result = dp
        .program()
        .test_run(TestRunOptions {
            data_in: Some(frame),
            ..TestRunOptions::new()
        })
        .expect("BPF_PROG_TEST_RUN");
    result.return_value
}

fn check_row(dp: &Datapath, case: &Case) {
    let before = dp.counters().expect("counters");
    let action = run(dp, &case.frame);
    let after = dp.counters().expect("counters");
    assert_eq!(action, case.action, "{}: XDP action", case.name);
    let len = case.frame.len() as u64;
    let mut expected = before.clone();
    let class = &mut expected.classes[case.class as usize];
    class.packets += 1;
    class.bytes += len;
    if let Some((country, verdict)) = case.country {
        let row = expected.countries.entry(country).or_default();
        row[verdict as usize].packets += 1;
        row[verdict as usize].bytes += len;
    }
    assert_counters_eq(&after, &expected, case.name);
}

fn assert_counters_eq(actual: &Counters, expected: &Counters, name: &str) {
    assert_eq!(actual.classes, expected.classes, "{name}: class counters");
    assert_eq!(
        actual.countries, expected.countries,
        "{name}: country counters"
    );
}

fn eth4(tags: &[(u16, u16)], ip: &[u8]) -> Vec<u8> {
    frame::ethernet(tags, ETH_P_IP, ip)
}

#[test]
fn packet_table_deny_ru() {
    let dp = datapath(&block_ru());
    let ru = cc(b"RU");
    let de = cc(b"DE");
    let ru_frame = eth4(&[], &udp4(RU_V4, Ipv4Opts::default()));
    let cases = vec![
        Case {
            name: "IPv4 from RU",
            frame: ru_frame.clone(),
            action: XDP_DROP,
            class: PacketClass::Ipv4,
            country: Some((ru, Verdict::Drop)),
        },
        Case {
            name: "IPv4 from DE",
            frame: eth4(&[], &udp4(DE_V4, Ipv4Opts::default())),
            action: XDP_PASS,
            class: PacketClass::Ipv4,
            country: Some((de, Verdict::Pass)),
        },
        Case {
            name: "IPv4 from unplaced space",
            frame: eth4(&[], &udp4(UNKNOWN_V4, Ipv4Opts::default())),
            action: XDP_PASS,
            class: PacketClass::Ipv4,
            country: Some((UNKNOWN_COUNTRY, Verdict::Pass)),
        },
        Case {
            name: "IPv4 with 40 bytes of options from RU",
            frame: eth4(
                &[],
                &udp4(
                    RU_V4,
                    Ipv4Opts {
                        option_words: 10,
                        ..Default::default()
                    },
                ),
            ),
            action: XDP_DROP,
            class: PacketClass::Ipv4,
            country: Some((ru, Verdict::Drop)),
        },
        Case {
            name: "IPv4 first fragment from RU",
            frame: eth4(
                &[],
                &udp4(
                    RU_V4,
                    Ipv4Opts {
                        more_fragments: true,
                        ..Default::default()
                    },
                ),
            ),
            action: XDP_DROP,
            class: PacketClass::Ipv4,
            country: Some((ru, Verdict::Drop)),
        },
        Case {
            name: "IPv4 later fragment from RU",
            frame: eth4(
                &[],
                &frame::ipv4(
                    RU_V4,
                    DST_V4,
                    IPPROTO_UDP,
                    b"tail of a datagram",
                    Ipv4Opts {
                        frag_offset: 185,
                        ..Default::default()
                    },
                ),
            ),
            action: XDP_DROP,
            class: PacketClass::Ipv4,
            country: Some((ru, Verdict::Drop)),
        },
        Case {
            name: "IPv4 later fragment from DE",
            frame: eth4(
                &[],
                &frame::ipv4(
                    DE_V4,
                    DST_V4,
                    IPPROTO_UDP,
                    b"tail",
                    Ipv4Opts {
                        frag_offset: 3,
                        more_fragments: true,
                        ..Default::default()
                    },
                ),
            ),
            action: XDP_PASS,
            class: PacketClass::Ipv4,
            country: Some((de, Verdict::Pass)),
        },
        Case {
            name: "IPv6 from RU",
            frame: frame::ethernet(&[], ETH_P_IPV6, &udp6(RU_V6)),
            action: XDP_DROP,
            class: PacketClass::Ipv6,
            country: Some((ru, Verdict::Drop)),
        },
        Case {
            name: "IPv6 from DE",
            frame: frame::ethernet(&[], ETH_P_IPV6, &udp6(DE_V6)),
            action: XDP_PASS,
            class: PacketClass::Ipv6,
            country: Some((de, Verdict::Pass)),
        },
        Case {
            name: "IPv6 from unplaced space",
            frame: frame::ethernet(&[], ETH_P_IPV6, &udp6(DST_V6)),
            action: XDP_PASS,
            class: PacketClass::Ipv6,
            country: Some((UNKNOWN_COUNTRY, Verdict::Pass)),
        },
        Case {
            name: "802.1Q IPv4 from RU",
            frame: eth4(&[(ETH_P_8021Q, 10)], &udp4(RU_V4, Ipv4Opts::default())),
            action: XDP_DROP,
            class: PacketClass::Ipv4,
            country: Some((ru, Verdict::Drop)),
        },
        Case {
            name: "802.1Q IPv6 from DE",
            frame: frame::ethernet(&[(ETH_P_8021Q, 10)], ETH_P_IPV6, &udp6(DE_V6)),
            action: XDP_PASS,
            class: PacketClass::Ipv6,
            country: Some((de, Verdict::Pass)),
        },
        Case {
            name: "802.1ad+802.1Q IPv4 from RU",
            frame: eth4(
                &[(ETH_P_8021AD, 100), (ETH_P_8021Q, 10)],
                &udp4(RU_V4, Ipv4Opts::default()),
            ),
            action: XDP_DROP,
            class: PacketClass::Ipv4,
            country: Some((ru, Verdict::Drop)),
        },
        Case {
            name: "802.1ad+802.1Q IPv6 from RU",
            frame: frame::ethernet(
                &[(ETH_P_8021AD, 100), (ETH_P_8021Q, 10)],
                ETH_P_IPV6,
                &udp6(RU_V6),
            ),
            action: XDP_DROP,
            class: PacketClass::Ipv6,
            country: Some((ru, Verdict::Drop)),
        },
        Case {
            name: "two 802.1Q tags IPv4 from RU",
            frame: eth4(
                &[(ETH_P_8021Q, 100), (ETH_P_8021Q, 10)],
                &udp4(RU_V4, Ipv4Opts::default()),
            ),
            action: XDP_DROP,
            class: PacketClass::Ipv4,
            country: Some((ru, Verdict::Drop)),
        },
        Case {
            name: "ARP",
            frame: frame::ethernet(&[], ETH_P_ARP, &frame::arp(RU_V4, DST_V4)),
            action: XDP_PASS,
            class: PacketClass::NonIp,
            country: None,
        },
        Case {
            name: "LLDP (unknown EtherType)",
            frame: frame::ethernet(&[], ETH_P_LLDP, &[0u8; 32]),
            action: XDP_PASS,
            class: PacketClass::NonIp,
            country: None,
        },
        Case {
            name: "Ethernet header only, IPv4 EtherType",
            frame: frame::ethernet(&[], ETH_P_IP, &[]),
            action: XDP_PASS,
            class: PacketClass::Malformed,
            country: None,
        },
        Case {
            name: "IPv4 header cut before the source address",
            frame: ru_frame[..14 + 14].to_vec(),
            action: XDP_PASS,
            class: PacketClass::Malformed,
            country: None,
        },
        Case {
            name: "IPv4 header cut inside the destination address",
            frame: ru_frame[..14 + 18].to_vec(),
            action: XDP_PASS,
            class: PacketClass::Malformed,
            country: None,
        },
        Case {
            name: "IPv6 header cut before the source address ends",
            frame: frame::ethernet(&[], ETH_P_IPV6, &udp6(RU_V6)[..20]),
            action: XDP_PASS,
            class: PacketClass::Malformed,
            country: None,
        },
        Case {
            name: "VLAN tag cut short",
            frame: frame::ethernet(&[], ETH_P_8021Q, &[0, 10]),
            action: XDP_PASS,
            class: PacketClass::Malformed,
            country: None,
        },
        Case {
            name: "IPv4 EtherType with version 6 inside",
            frame: eth4(&[], &udp6(RU_V6)),
            action: XDP_PASS,
            class: PacketClass::Malformed,
            country: None,
        },
        Case {
            name: "IPv4 with IHL 4",
            frame: {
                let mut f = ru_frame.clone();
                f[14] = 0x44;
                f
            },
            action: XDP_PASS,
            class: PacketClass::Malformed,
            country: None,
        },
    ];
    for case in &cases {
        check_row(&dp, case);
    }
}

/// `n` 802.1Q priority tags (VID 0), which the kernel strips one after another and delivers the
/// packet inside (see parse.rs).
fn priority_tags(n: usize) -> Vec<(u16, u16)> {
    vec![(ETH_P_8021Q, 0); n]
}

#[test]
fn vlan_stacks_are_classified_by_the_packet_inside() {
    let dp = datapath(&block_ru());
    let ru = cc(b"RU");
    let de = cc(b"DE");
    let qinq_mix = [
        (ETH_P_8021AD, 100),
        (ETH_P_8021Q, 0),
        (ETH_P_8021AD, 0),
        (ETH_P_8021Q, 10),
        (ETH_P_8021Q, 0),
        (ETH_P_8021Q, 4095),
    ];
    let cases = vec![
        Case {
            name: "three VID-0 tags IPv4 from RU",
            frame: eth4(&priority_tags(3), &udp4(RU_V4, Ipv4Opts::default())),
            action: XDP_DROP,
            class: PacketClass::Ipv4,
            country: Some((ru, Verdict::Drop)),
        },
        Case {
            name: "four VID-0 tags IPv4 from RU",
            frame: eth4(&priority_tags(4), &udp4(RU_V4, Ipv4Opts::default())),
            action: XDP_DROP,
            class: PacketClass::Ipv4,
            country: Some((ru, Verdict::Drop)),
        },
        Case {
            name: "three VID-0 tags IPv6 from RU",
            frame: frame::ethernet(&priority_tags(3), ETH_P_IPV6, &udp6(RU_V6)),
            action: XDP_DROP,
            class: PacketClass::Ipv6,
            country: Some((ru, Verdict::Drop)),
        },
        Case {
            name: "four VID-0 tags IPv6 from RU",
            frame: frame::ethernet(&priority_tags(4), ETH_P_IPV6, &udp6(RU_V6)),
            action: XDP_DROP,
            class: PacketClass::Ipv6,
            country: Some((ru, Verdict::Drop)),
        },
        Case {
            name: "three tags, non-zero VIDs (802.1ad, 802.1Q, 802.1Q) IPv4 from RU",
            frame: eth4(
                &[(ETH_P_8021AD, 1), (ETH_P_8021Q, 2), (ETH_P_8021Q, 3)],
                &udp4(RU_V4, Ipv4Opts::default()),
            ),
            action: XDP_DROP,
            class: PacketClass::Ipv4,
            country: Some((ru, Verdict::Drop)),
        },
        Case {
            name: "six tags, QinQ and VID 0 mixed, IPv4 from RU",
            frame: eth4(&qinq_mix, &udp4(RU_V4, Ipv4Opts::default())),
            action: XDP_DROP,
            class: PacketClass::Ipv4,
            country: Some((ru, Verdict::Drop)),
        },
        Case {
            name: "six tags, QinQ and VID 0 mixed, IPv6 from RU",
            frame: frame::ethernet(&qinq_mix, ETH_P_IPV6, &udp6(RU_V6)),
            action: XDP_DROP,
            class: PacketClass::Ipv6,
            country: Some((ru, Verdict::Drop)),
        },
        Case {
            name: "six VID-0 tags IPv4 from DE",
            frame: eth4(&priority_tags(6), &udp4(DE_V4, Ipv4Opts::default())),
            action: XDP_PASS,
            class: PacketClass::Ipv4,
            country: Some((de, Verdict::Pass)),
        },
        Case {
            name: "six VID-0 tags IPv6 from DE",
            frame: frame::ethernet(&priority_tags(6), ETH_P_IPV6, &udp6(DE_V6)),
            action: XDP_PASS,
            class: PacketClass::Ipv6,
            country: Some((de, Verdict::Pass)),
        },
        Case {
            name: "eight VID-0 tags (the most followed) IPv4 from RU",
            frame: eth4(&priority_tags(8), &udp4(RU_V4, Ipv4Opts::default())),
            action: XDP_DROP,
            class: PacketClass::Ipv4,
            country: Some((ru, Verdict::Drop)),
        },
        Case {
            name: "nine VID-0 tags IPv4 from DE: dropped unclassified",
            frame: eth4(&priority_tags(9), &udp4(DE_V4, Ipv4Opts::default())),
            action: XDP_DROP,
            class: PacketClass::TooManyVlanTags,
            country: None,
        },
        Case {
            name: "twelve VID-0 tags IPv6 from RU: dropped unclassified",
            frame: frame::ethernet(&priority_tags(12), ETH_P_IPV6, &udp6(RU_V6)),
            action: XDP_DROP,
            class: PacketClass::TooManyVlanTags,
            country: None,
        },
        Case {
            name: "nine tags then nothing: the ninth TPID is all there is",
            frame: frame::ethernet(&priority_tags(8), ETH_P_8021AD, &[]),
            action: XDP_DROP,
            class: PacketClass::TooManyVlanTags,
            country: None,
        },
        Case {
            name: "five tags then ARP",
            frame: frame::ethernet(&priority_tags(5), ETH_P_ARP, &frame::arp(RU_V4, DST_V4)),
            action: XDP_PASS,
            class: PacketClass::NonIp,
            country: None,
        },
        Case {
            // 0x9100 is an old pre-802.1ad QinQ TPID; the kernel's eth_type_vlan() does not
            // know it, so nothing behind it reaches the IP stack.
            name: "0x9100 tag: not a VLAN TPID to the kernel",
            frame: eth4(&[(0x9100, 0)], &udp4(RU_V4, Ipv4Opts::default())),
            action: XDP_PASS,
            class: PacketClass::NonIp,
            country: None,
        },
        Case {
            name: "fourth tag cut after its TCI",
            frame: frame::ethernet(&priority_tags(3), ETH_P_8021Q, &[0, 0]),
            action: XDP_PASS,
            class: PacketClass::Malformed,
            country: None,
        },
        Case {
            name: "five tags, IPv4 header cut before the source address",
            frame: eth4(&priority_tags(5), &udp4(RU_V4, Ipv4Opts::default())[..14]),
            action: XDP_PASS,
            class: PacketClass::Malformed,
            country: None,
        },
        Case {
            name: "seven tags, IPv6 header cut inside the source address",
            frame: frame::ethernet(&priority_tags(7), ETH_P_IPV6, &udp6(RU_V6)[..20]),
            action: XDP_PASS,
            class: PacketClass::Malformed,
            country: None,
        },
    ];
    for case in &cases {
        check_row(&dp, case);
    }
}

#[test]
fn monitor_mode_counts_would_drop_and_passes() {
    let dp = datapath(&DesiredPolicy {
        monitor: true,
        ..block_ru()
    });
    check_row(
        &dp,
        &Case {
            name: "monitor: IPv4 from RU",
            frame: eth4(&[], &udp4(RU_V4, Ipv4Opts::default())),
            action: XDP_PASS,
            class: PacketClass::Ipv4,
            country: Some((cc(b"RU"), Verdict::WouldDrop)),
        },
    );
    check_row(
        &dp,
        &Case {
            name: "monitor: IPv6 from DE",
            frame: frame::ethernet(&[], ETH_P_IPV6, &udp6(DE_V6)),
            action: XDP_PASS,
            class: PacketClass::Ipv6,
            country: Some((cc(b"DE"), Verdict::Pass)),
        },
    );
    check_row(
        &dp,
        &Case {
            name: "monitor: nine VLAN tags pass, counted",
            frame: eth4(&priority_tags(9), &udp4(RU_V4, Ipv4Opts::default())),
            action: XDP_PASS,
            class: PacketClass::TooManyVlanTags,
            country: None,
        },
    );
}

/// IPv6 sources that embed an IPv4 address, written out by hand (RU_V4 is 5.45.200.7 =
/// 052d:c807, DE_V4 is 46.114.1.1 = 2e72:0101).
const RU_MAPPED: Ipv6Addr = Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0x052d, 0xc807);
const DE_MAPPED: Ipv6Addr = Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0x2e72, 0x0101);
const RU_COMPATIBLE: Ipv6Addr = Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0x052d, 0xc807);
const RU_NAT64: Ipv6Addr = Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0x052d, 0xc807);
const RU_6TO4: Ipv6Addr = Ipv6Addr::new(0x2002, 0x052d, 0xc807, 0, 0, 0, 0, 1);
const DE_6TO4: Ipv6Addr = Ipv6Addr::new(0x2002, 0x2e72, 0x0101, 0x77, 0, 0, 0, 1);
/// Teredo server 65.54.227.120, client 5.45.200.7 stored inverted (RFC 4380 section 4).
const RU_TEREDO: Ipv6Addr =
    Ipv6Addr::new(0x2001, 0, 0x4136, 0xe378, 0x8000, 0x63bf, 0xfad2, 0x37f8);

fn udp6_row(name: &'static str, src: Ipv6Addr, action: u32, country: (u16, Verdict)) -> Case {
    Case {
        name,
        frame: frame::ethernet(&[], ETH_P_IPV6, &udp6(src)),
        action,
        class: PacketClass::Ipv6,
        country: Some(country),
    }
}

#[test]
fn ipv6_sources_embedding_ipv4_are_filtered_as_that_ipv4_address() {
    let dp = datapath(&block_ru());
    let ru = (cc(b"RU"), Verdict::Drop);
    let de = (cc(b"DE"), Verdict::Pass);
    let unknown = (UNKNOWN_COUNTRY, Verdict::Pass);
    let cases = [
        udp6_row("IPv4-mapped RU", RU_MAPPED, XDP_DROP, ru),
        udp6_row("IPv4-mapped DE", DE_MAPPED, XDP_PASS, de),
        udp6_row("IPv4-compatible RU", RU_COMPATIBLE, XDP_DROP, ru),
        udp6_row("NAT64 well-known prefix RU", RU_NAT64, XDP_DROP, ru),
        udp6_row("6to4 RU", RU_6TO4, XDP_DROP, ru),
        udp6_row("6to4 DE", DE_6TO4, XDP_PASS, de),
        udp6_row("Teredo client in RU", RU_TEREDO, XDP_DROP, ru),
        udp6_row(
            "IPv4-mapped unplaced",
            Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0xc000, 0x0201),
            XDP_PASS,
            unknown,
        ),
        udp6_row(
            "::1 is no IPv4-compatible address",
            Ipv6Addr::LOCALHOST,
            XDP_PASS,
            unknown,
        ),
        udp6_row(
            "local-use NAT64 prefix 64:ff9b:1::/48: an IPv6 address",
            Ipv6Addr::new(0x64, 0xff9b, 1, 0, 0, 0, 0x052d, 0xc807),
            XDP_PASS,
            unknown,
        ),
        udp6_row(
            "::fffe:5.45.200.7: an IPv6 address",
            Ipv6Addr::new(0, 0, 0, 0, 0, 0xfffe, 0x052d, 0xc807),
            XDP_PASS,
            unknown,
        ),
    ];
    for case in &cases {
        check_row(&dp, case);
    }
    let allow_de = datapath(&DesiredPolicy {
        mode: Mode::AllowOnly,
        countries: [cc(b"DE")].into(),
        unknown: UnknownAction::Drop,
        ..Default::default()
    });
    check_row(
        &allow_de,
        &udp6_row("allow-only DE: 6to4 DE", DE_6TO4, XDP_PASS, de),
    );
    check_row(
        &allow_de,
        &udp6_row("allow-only DE: NAT64 RU", RU_NAT64, XDP_DROP, ru),
    );
}

#[test]
fn ipv4_exceptions_decide_for_ipv6_sources_embedding_them() {
    let dp = with_rules(
        block_ru(),
        &[
            ("5.45.200.7/32", ExceptionAction::Pass),
            ("46.114.0.0/16", ExceptionAction::Drop),
        ],
        PortScope::default(),
    );
    check_row(
        &dp,
        &udp6_row(
            "IPv4-mapped RU under an IPv4 pass exception",
            RU_MAPPED,
            XDP_PASS,
            (cc(b"RU"), Verdict::Pass),
        ),
    );
    check_row(
        &dp,
        &udp6_row(
            "6to4 DE under an IPv4 drop exception",
            DE_6TO4,
            XDP_DROP,
            (cc(b"DE"), Verdict::Drop),
        ),
    );
}

#[test]
fn allow_only_with_unknown_dropped() {
    let policy = DesiredPolicy {
        mode: Mode::AllowOnly,
        countries: [cc(b"DE")].into(),
        unknown: UnknownAction::Drop,
        monitor: false,
        ..Default::default()
    };
    let dp = datapath(&policy);
    for (name, frame, action, class, country) in [
        (
            "allow-only: DE passes",
            eth4(&[], &udp4(DE_V4, Ipv4Opts::default())),
            XDP_PASS,
            PacketClass::Ipv4,
            (cc(b"DE"), Verdict::Pass),
        ),
        (
            "allow-only: RU drops",
            frame::ethernet(&[], ETH_P_IPV6, &udp6(RU_V6)),
            XDP_DROP,
            PacketClass::Ipv6,
            (cc(b"RU"), Verdict::Drop),
        ),
        (
            "allow-only: unknown drops",
            eth4(&[], &udp4(UNKNOWN_V4, Ipv4Opts::default())),
            XDP_DROP,
            PacketClass::Ipv4,
            (UNKNOWN_COUNTRY, Verdict::Drop),
        ),
    ] {
        check_row(
            &dp,
            &Case {
                name,
                frame,
                action,
                class,
                country: Some(country),
            },
        );
    }
}

#[test]
fn policy_and_table_swaps_take_effect_at_once() {
    let mut dp = datapath(&DesiredPolicy::default());
    let ru_frame = eth4(&[], &udp4(RU_V4, Ipv4Opts::default()));
    assert_eq!(run(&dp, &ru_frame), XDP_PASS, "nothing blocked yet");
    dp.set_policy(&block_ru().compile()).unwrap();
    assert_eq!(
        run(&dp, &ru_frame),
        XDP_DROP,
        "blocked right after set_policy returned"
    );
    assert_eq!(
        dp.policy().unwrap(),
        block_ru().compile(),
        "policy reads back"
    );
    // A new table where the RU prefix is gone: the address becomes unknown and passes.
    dp.install_tables::<Prefix>(&[], &[]).unwrap();
    assert_eq!(run(&dp, &ru_frame), XDP_PASS, "empty table: unknown passes");
    let v4 = [prefix(u128::from(u32::from(RU_V4)), 32, b"RU")];
    dp.install_tables(&v4, &[]).unwrap();
    assert_eq!(run(&dp, &ru_frame), XDP_DROP, "a /32 prefix matches");
}

#[test]
fn why_probes_report_the_kernel_classification_and_count_nothing() {
    use geofilter_common::Decider;
    let dp = datapath(&block_ru());
    let before = dp.counters().unwrap();
    let ru = dp.classify(RU_V4.into()).expect("probe");
    assert_eq!(
        (ru.verdict, ru.country, ru.decided_by),
        (Verdict::Drop, cc(b"RU"), Decider::Country)
    );
    let de = dp.classify(DE_V6.into()).expect("probe");
    assert_eq!((de.verdict, de.country), (Verdict::Pass, cc(b"DE")));
    let unknown = dp.classify(UNKNOWN_V4.into()).expect("probe");
    assert_eq!(
        (unknown.verdict, unknown.country, unknown.net),
        (Verdict::Pass, UNKNOWN_COUNTRY, 0)
    );
    assert_counters_eq(
        &dp.counters().unwrap(),
        &before,
        "probes leave counters alone",
    );
}

fn with_rules(
    policy: DesiredPolicy,
    exceptions: &[(&str, ExceptionAction)],
    ports: PortScope,
) -> Datapath {
    let mut desired = policy;
    for (cidr, action) in exceptions {
        desired.exceptions.insert(cidr.parse().unwrap(), *action);
    }
    desired.ports = ports;
    let mut dp = datapath(&DesiredPolicy::default());
    geofilter_daemon::policy::apply(&mut dp, &DesiredPolicy::default(), &desired)
        .expect("applying rules");
    dp
}

#[test]
fn exceptions_decide_before_the_country() {
    let dp = with_rules(
        block_ru(),
        &[
            ("5.45.200.0/24", ExceptionAction::Pass),
            ("46.114.1.1", ExceptionAction::Drop),
            ("2a01:598:1::/48", ExceptionAction::Drop),
        ],
        PortScope::default(),
    );
    let ru = cc(b"RU");
    let de = cc(b"DE");
    for (name, frame, action, class, country) in [
        (
            "RU inside a pass exception",
            eth4(&[], &udp4(RU_V4, Ipv4Opts::default())),
            XDP_PASS,
            PacketClass::Ipv4,
            (ru, Verdict::Pass),
        ),
        (
            "RU outside it",
            eth4(
                &[],
                &udp4(Ipv4Addr::new(5, 45, 201, 1), Ipv4Opts::default()),
            ),
            XDP_DROP,
            PacketClass::Ipv4,
            (ru, Verdict::Drop),
        ),
        (
            "DE address with a drop exception",
            eth4(&[], &udp4(DE_V4, Ipv4Opts::default())),
            XDP_DROP,
            PacketClass::Ipv4,
            (de, Verdict::Drop),
        ),
        (
            "DE IPv6 in a drop exception",
            frame::ethernet(&[], ETH_P_IPV6, &udp6(DE_V6)),
            XDP_DROP,
            PacketClass::Ipv6,
            (de, Verdict::Drop),
        ),
        (
            "RU IPv6, no exception",
            frame::ethernet(&[], ETH_P_IPV6, &udp6(RU_V6)),
            XDP_DROP,
            PacketClass::Ipv6,
            (ru, Verdict::Drop),
        ),
    ] {
        check_row(
            &dp,
            &Case {
                name,
                frame,
                action,
                class,
                country: Some(country),
            },
        );
    }
}

#[test]
fn port_scopes_and_the_fragment_rule() {
    use frame::{
        IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPV6_DSTOPTS, IPV6_FRAGMENT, IPV6_HOPOPTS,
        icmp_echo, ipv6_ext, ipv6_fragment, tcp_syn, udp_to,
    };
    let ru = cc(b"RU");
    let v4 = |proto: u8, l4: &[u8], opts: Ipv4Opts| {
        eth4(&[], &frame::ipv4(RU_V4, DST_V4, proto, l4, opts))
    };
    let v6 = |next: u8, l4: &[u8]| {
        frame::ethernet(&[], ETH_P_IPV6, &frame::ipv6(RU_V6, DST_V6, next, l4))
    };
    let later = Ipv4Opts {
        frag_offset: 10,
        ..Default::default()
    };
    let first = Ipv4Opts {
        more_fragments: true,
        ..Default::default()
    };

    // Exempt tcp:80 (ACME): everything else from RU stays blocked.
    let exempt = PortScope {
        exempt: ["tcp:80".parse().unwrap()].into(),
        ..Default::default()
    };
    let dp = with_rules(block_ru(), &[], exempt);
    let rows = [
        (
            "exempt: RU TCP 80 passes",
            v4(IPPROTO_TCP, &tcp_syn(80), Ipv4Opts::default()),
            XDP_PASS,
            PacketClass::Ipv4,
        ),
        (
            "exempt: RU TCP 22 drops",
            v4(IPPROTO_TCP, &tcp_syn(22), Ipv4Opts::default()),
            XDP_DROP,
            PacketClass::Ipv4,
        ),
        (
            "exempt: RU UDP 80 drops",
            v4(IPPROTO_UDP, &udp_to(80), Ipv4Opts::default()),
            XDP_DROP,
            PacketClass::Ipv4,
        ),
        (
            "exempt: RU ICMP drops",
            v4(IPPROTO_ICMP, &icmp_echo(), Ipv4Opts::default()),
            XDP_DROP,
            PacketClass::Ipv4,
        ),
        (
            "exempt: RU first fragment to TCP 80 passes",
            v4(IPPROTO_TCP, &tcp_syn(80), first),
            XDP_PASS,
            PacketClass::Ipv4,
        ),
        (
            "exempt: RU later fragment drops (port unknown)",
            v4(IPPROTO_TCP, &tcp_syn(80), later),
            XDP_DROP,
            PacketClass::Ipv4,
        ),
        (
            "exempt: RU TCP header cut drops",
            v4(IPPROTO_TCP, &tcp_syn(80)[..3], Ipv4Opts::default()),
            XDP_DROP,
            PacketClass::Ipv4,
        ),
        (
            "exempt: RU TCP 80 after IP options passes",
            v4(
                IPPROTO_TCP,
                &tcp_syn(80),
                Ipv4Opts {
                    option_words: 3,
                    ..Default::default()
                },
            ),
            XDP_PASS,
            PacketClass::Ipv4,
        ),
        (
            "exempt: RU IPv6 TCP 80 passes",
            v6(IPPROTO_TCP, &tcp_syn(80)),
            XDP_PASS,
            PacketClass::Ipv6,
        ),
        (
            "exempt: RU IPv6 TCP 80 behind hop-by-hop and dest-opts passes",
            v6(
                IPV6_HOPOPTS,
                &ipv6_ext(IPV6_DSTOPTS, 1, &ipv6_ext(IPPROTO_TCP, 2, &tcp_syn(80))),
            ),
            XDP_PASS,
            PacketClass::Ipv6,
        ),
        (
            "exempt: RU IPv6 first fragment TCP 80 passes",
            v6(
                IPV6_FRAGMENT,
                &ipv6_fragment(IPPROTO_TCP, 0, true, &tcp_syn(80)),
            ),
            XDP_PASS,
            PacketClass::Ipv6,
        ),
        (
            "exempt: RU IPv6 later fragment drops",
            v6(
                IPV6_FRAGMENT,
                &ipv6_fragment(IPPROTO_TCP, 8, false, &tcp_syn(80)),
            ),
            XDP_DROP,
            PacketClass::Ipv6,
        ),
        (
            "exempt: RU IPv6 TCP 80 behind six extension headers passes",
            v6(
                IPV6_HOPOPTS,
                &(0..6).fold(tcp_syn(80), |inner, i| {
                    ipv6_ext(if i == 0 { IPPROTO_TCP } else { IPV6_DSTOPTS }, 1, &inner)
                }),
            ),
            XDP_PASS,
            PacketClass::Ipv6,
        ),
        (
            "exempt: RU IPv6 nine extension headers drop (port unknown)",
            v6(
                IPV6_HOPOPTS,
                &(0..9).fold(tcp_syn(80), |inner, i| {
                    ipv6_ext(if i == 0 { IPPROTO_TCP } else { IPV6_DSTOPTS }, 1, &inner)
                }),
            ),
            XDP_DROP,
            PacketClass::Ipv6,
        ),
    ];
    for (name, frame, action, class) in rows {
        let verdict = if action == XDP_DROP {
            Verdict::Drop
        } else {
            Verdict::Pass
        };
        check_row(
            &dp,
            &Case {
                name,
                frame,
                action,
                class,
                country: Some((ru, verdict)),
            },
        );
    }

    // Only tcp:22 is geo-filtered: other ports and portless protocols pass, fragments do not.
    let only = PortScope {
        only: ["tcp:22".parse().unwrap()].into(),
        ..Default::default()
    };
    let dp = with_rules(block_ru(), &[], only);
    let rows = [
        (
            "only: RU TCP 22 drops",
            v4(IPPROTO_TCP, &tcp_syn(22), Ipv4Opts::default()),
            XDP_DROP,
            PacketClass::Ipv4,
        ),
        (
            "only: RU TCP 443 passes",
            v4(IPPROTO_TCP, &tcp_syn(443), Ipv4Opts::default()),
            XDP_PASS,
            PacketClass::Ipv4,
        ),
        (
            "only: RU UDP 22 passes",
            v4(IPPROTO_UDP, &udp_to(22), Ipv4Opts::default()),
            XDP_PASS,
            PacketClass::Ipv4,
        ),
        (
            "only: RU ICMP passes",
            v4(IPPROTO_ICMP, &icmp_echo(), Ipv4Opts::default()),
            XDP_PASS,
            PacketClass::Ipv4,
        ),
        (
            "only: RU ICMPv6 passes",
            v6(IPPROTO_ICMPV6, &icmp_echo()),
            XDP_PASS,
            PacketClass::Ipv6,
        ),
        (
            "only: RU later fragment drops",
            v4(IPPROTO_TCP, &tcp_syn(443), later),
            XDP_DROP,
            PacketClass::Ipv4,
        ),
        (
            "only: RU IPv6 TCP 22 drops",
            v6(IPPROTO_TCP, &tcp_syn(22)),
            XDP_DROP,
            PacketClass::Ipv6,
        ),
    ];
    for (name, frame, action, class) in rows {
        let verdict = if action == XDP_DROP {
            Verdict::Drop
        } else {
            Verdict::Pass
        };
        check_row(
            &dp,
            &Case {
                name,
                frame,
                action,
                class,
                country: Some((ru, verdict)),
            },
        );
    }
}

/// The events one frame makes the program emit (listening, with a bucket that never runs dry).
fn events_of(dp: &mut Datapath, frame: &[u8], config: EventConfig) -> (u32, Vec<Event>) {
    let events = dp.events_mut().expect("event maps");
    events.configure(&config).expect("event config");
    assert!(events.drain().is_empty(), "events left from an earlier row");
    let action = run(dp, frame);
    (action, dp.events_mut().expect("event maps").drain())
}

#[test]
fn drops_emit_one_event_while_listened_to_and_passes_none_unless_asked() {
    let listening = EventConfig {
        listeners: 1,
        ..EventConfig::limit(1_000_000, 1_000_000)
    };
    let mut dp = datapath(&block_ru());
    let ru = eth4(&[], &udp4(RU_V4, Ipv4Opts::default()));
    let (action, events) = events_of(&mut dp, &ru, listening);
    assert_eq!(action, XDP_DROP);
    let [event] = events[..] else {
        panic!("one event for one drop: {events:?}")
    };
    let mut addr = [0; 16];
    addr[..4].copy_from_slice(&RU_V4.octets());
    assert_eq!(
        (event.addr, event.family, event.country, event.protocol),
        (addr, 4, cc(b"RU"), IPPROTO_UDP),
        "{event:?}"
    );
    assert_eq!(
        (event.port, event.flags, event.verdict),
        (9, EVENT_PORT, Verdict::Drop as u8),
        "{event:?}"
    );
    let ru6 = frame::ethernet(&[], ETH_P_IPV6, &udp6(RU_V6));
    let (_, events) = events_of(&mut dp, &ru6, listening);
    assert_eq!(
        events
            .iter()
            .map(|e| (e.addr, e.family))
            .collect::<Vec<_>>(),
        [(RU_V6.octets(), 6)],
        "IPv6 drop"
    );

    let de = eth4(&[], &udp4(DE_V4, Ipv4Opts::default()));
    let (action, events) = events_of(&mut dp, &de, listening);
    assert_eq!((action, events.len()), (XDP_PASS, 0), "a pass: {events:?}");
    let passed = EventConfig {
        flags: EVENTS_PASSED,
        ..listening
    };
    let (_, events) = events_of(&mut dp, &de, passed);
    assert_eq!(
        events.iter().map(|e| e.verdict).collect::<Vec<_>>(),
        [Verdict::Pass as u8],
        "a pass with EVENTS_PASSED"
    );

    let unheard = EventConfig {
        listeners: 0,
        ..listening
    };
    let (action, events) = events_of(&mut dp, &ru, unheard);
    assert_eq!(
        (action, events.len()),
        (XDP_DROP, 0),
        "nobody listens: {events:?}"
    );

    // A bucket of one: the first drop is reported, the next (within the same nanoseconds'
    // budget of a 1/s rate) is not.
    let one = EventConfig {
        listeners: 1,
        ..EventConfig::limit(1, 1)
    };
    let (_, first) = events_of(&mut dp, &ru, one);
    let (_, second) = events_of(&mut dp, &ru, one);
    assert_eq!((first.len(), second.len()), (1, 0), "rate 1/s, burst 1");

    let mut monitor = datapath(&DesiredPolicy {
        monitor: true,
        ..block_ru()
    });
    let (action, events) = events_of(&mut monitor, &ru, listening);
    assert_eq!(
        (action, events.iter().map(|e| e.verdict).collect::<Vec<_>>()),
        (XDP_PASS, vec![Verdict::WouldDrop as u8]),
        "monitor mode reports would-drops"
    );
}
