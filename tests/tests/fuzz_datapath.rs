//! Differential fuzzing of the datapath: random and mutated frames through the loaded program
//! (BPF_PROG_TEST_RUN), each verdict compared with the reference model (`geofilter_tests::model`),
//! and the counters compared with the model's totals after every batch. A short run by default;
//! `GEOFILTER_LONG=1` (`cargo xtask test --long`) runs a long one. `GEOFILTER_FUZZ_SEED` replays a
//! run; the seed is printed on failure.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use aya::programs::{TestRun, TestRunOptions};
use geofilter_common::country::country_id;
use geofilter_daemon::{
    datapath::{Counters, Datapath},
    geoip::CompiledDb,
    policy::{DesiredPolicy, Mode, UnknownAction},
    rules::{ExceptionAction, PortScope},
};
use geofilter_tests::{model, require_root, rng::Rng};

fn cc(code: &[u8; 2]) -> u16 {
    country_id(*code).unwrap()
}

/// A small world compiled by the real compiler from nested ranges of a few countries (so the
/// table is what the daemon would load), in both families.
fn world() -> CompiledDb {
    let dir = geofilter_tests::scenario::TempDir::new();
    let path = dir.0.join("world.csv");
    std::fs::write(
        &path,
        "5.45.192.0,5.45.255.255,RU\n46.114.0.0,46.114.255.255,DE\n77.88.0.0,77.88.31.255,RU\n\
         77.88.32.0,77.88.47.255,BY\n77.88.40.0,77.88.40.127,??\n203.0.113.0,203.0.113.255,US\n\
         203.0.114.7,203.0.114.7,CN\n2a01:598::,2a01:598:ffff:ffff:ffff:ffff:ffff:ffff,DE\n\
         2a02:6b8::,2a02:6b9:ffff:ffff:ffff:ffff:ffff:ffff,RU\n2a02:6b9::,2a02:6b9:0:ffff:ffff:ffff:ffff:ffff,BY\n\
         2001:db8:1:2::,2001:db8:1:2:ffff:ffff:ffff:ffff,CN\n2001:db8:1:3::5,2001:db8:1:3::5,US\n",
    )
    .unwrap();
    geofilter_daemon::geoip::load(&[path], None).expect("compiling the fuzz world")
}

fn source(rng: &mut Rng, v6: bool) -> IpAddr {
    let v4_pool = [
        "5.45.200.7",
        "46.114.9.9",
        "77.88.1.1",
        "77.88.40.2",
        "203.0.113.9",
        "203.0.114.7",
        "203.0.114.8",
        "192.0.2.1",
        "10.1.2.3",
    ];
    let v6_pool = [
        "2a01:598::1",
        "2a02:6b8::7",
        "2a02:6b9::1",
        "2a02:6b9:0:1::1",
        "2001:db8:1:2::9",
        "2001:db8:1:3::5",
        "2001:db8:1:3::6",
        "fd00::1",
        // Embedding IPv4 addresses of the pool (filtered as those) and near misses.
        "::ffff:5.45.200.7",
        "::ffff:77.88.40.2",
        "::46.114.9.9",
        "::1",
        "::",
        "64:ff9b::203.0.114.7",
        "64:ff9b:1::203.0.114.7",
        "2002:4d58:2802::1",
        "2002:cb00:7109:ffff::1",
        "2001:0:4136:e378:8000:63bf:fad2:37f8",
        "2001:0:4136:e378:8000:63bf:34ff:8ef6",
        "::fffe:5.45.200.7",
    ];
    if v6 && rng.chance(5) {
        // Any IPv4 address, embedded in any of the five ways.
        let v4 = rng.next_u64() as u32;
        let (hi, lo) = ((v4 >> 16) as u16, v4 as u16);
        let (nhi, nlo) = ((!v4 >> 16) as u16, !v4 as u16);
        let tail = rng.next_u64() as u16;
        return IpAddr::V6(*rng.pick(&[
            Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, hi, lo),
            Ipv6Addr::new(0, 0, 0, 0, 0, 0, hi, lo),
            Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, hi, lo),
            Ipv6Addr::new(0x2002, hi, lo, tail, 0, 0, 0, tail),
            Ipv6Addr::new(0x2001, 0, tail, tail, 0, tail, nhi, nlo),
        ]));
    }
    if rng.chance(20) {
        // Anywhere at all.
        return if v6 {
            IpAddr::V6(Ipv6Addr::from(
                u128::from(rng.next_u64()) << 64 | u128::from(rng.next_u64()),
            ))
        } else {
            IpAddr::V4(Ipv4Addr::from(rng.next_u64() as u32))
        };
    }
    if v6 {
        rng.pick(&v6_pool).parse().unwrap()
    } else {
        rng.pick(&v4_pool).parse().unwrap()
    }
}

fn transport(rng: &mut Rng) -> (u8, Vec<u8>) {
    let any = rng.next_u64() as u16;
    let port = *rng.pick(&[22u16, 53, 80, 443, 8080, 0, 65535, any]);
    match rng.below(5) {
        0 => (6, {
            let mut t = vec![0x9c, 0x40];
            t.extend_from_slice(&port.to_be_bytes());
            t.extend((0..16).map(|_| 0));
            t
        }),
        1 => (17, {
            let mut u = vec![0x9c, 0x40];
            u.extend_from_slice(&port.to_be_bytes());
            u.extend([0, 8, 0, 0]);
            u
        }),
        2 => (1, vec![8, 0, 0, 0, 0, 1, 0, 1]),
        3 => (
            *rng.pick(&[132u8, 136, 47, 58]),
            (0..8).map(|_| rng.byte()).collect(),
        ),
        _ => (rng.byte(), (0..rng.below(12)).map(|_| rng.byte()).collect()),
    }
}

/// A structured random frame: VLAN stacks, IPv4 with options/bad IHL/fragments, IPv6 with
/// extension chains, TCP/UDP/ICMP with short headers; then maybe cut and maybe mutated.
fn frame(rng: &mut Rng) -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];
    // VLAN stacks of 0-6 tags, now and then up to 10 (past the eight the program follows), half
    // the VIDs 0 (priority tags, which the kernel strips), the rest anything with any PCP.
    let tags = if rng.chance(5) {
        7 + rng.below(4)
    } else if rng.chance(50) {
        0
    } else {
        rng.below(7)
    };
    for _ in 0..tags {
        // 0x9100 (no VLAN TPID to the kernel) ends the stack, so it is rare.
        let tpid = if rng.chance(5) {
            0x9100
        } else {
            *rng.pick(&[0x8100u16, 0x88a8])
        };
        let tci = if rng.chance(50) {
            u16::from(rng.byte() & 0xe0) << 8
        } else {
            rng.next_u64() as u16
        };
        f.extend_from_slice(&tpid.to_be_bytes());
        f.extend_from_slice(&tci.to_be_bytes());
    }
    let v6 = rng.chance(45);
    let ether_type = match rng.below(20) {
        0 => 0x0806,
        1 => rng.next_u64() as u16,
        _ if v6 => 0x86dd,
        _ => 0x0800,
    };
    f.extend_from_slice(&u16::to_be_bytes(ether_type));
    let (mut protocol, mut l4) = transport(rng);
    if v6 {
        // Extension headers, sometimes many.
        for _ in 0..rng.below(10) {
            if !rng.chance(50) {
                break;
            }
            let kind = *rng.pick(&[0u8, 43, 60, 44, 51]);
            let mut h = vec![protocol];
            match kind {
                44 => {
                    let offset: u16 = if rng.chance(70) {
                        0
                    } else {
                        rng.below(8000) as u16
                    };
                    h.push(0);
                    h.extend_from_slice(&(offset << 3 | u16::from(rng.chance(50))).to_be_bytes());
                    h.extend([0, 0, 0, 1]);
                }
                51 => {
                    let len = rng.below(4) as u8 + 1;
                    h.push(len);
                    h.extend((0..(usize::from(len) + 2) * 4 - 2).map(|_| 0));
                }
                _ => {
                    let len = rng.below(3) as u8;
                    h.push(len);
                    h.extend((0..(usize::from(len) + 1) * 8 - 2).map(|_| 0));
                }
            }
            h.extend_from_slice(&l4);
            l4 = h;
            protocol = kind;
        }
        let version = if rng.chance(95) {
            0x60
        } else {
            rng.byte() & 0xf0
        };
        f.extend([version, 0, 0, 0]);
        f.extend_from_slice(&(l4.len() as u16).to_be_bytes());
        f.extend([protocol, 64]);
        if let IpAddr::V6(a) = source(rng, true) {
            f.extend_from_slice(&a.octets());
        }
        f.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
    } else {
        let words = if rng.chance(80) {
            5 + rng.below(3) as u8 * rng.below(5) as u8
        } else {
            rng.below(16) as u8
        };
        let version = if rng.chance(95) {
            0x40
        } else {
            rng.byte() & 0xf0
        };
        f.push(version | (words & 0x0f));
        f.push(0);
        f.extend_from_slice(&((usize::from(words) * 4 + l4.len()) as u16).to_be_bytes());
        f.extend([0x12, 0x34]);
        let frag = match rng.below(4) {
            0 => 0x2000,
            1 => rng.next_u64() as u16 & 0x3fff,
            _ => 0,
        };
        f.extend_from_slice(&u16::to_be_bytes(frag));
        f.extend([64, protocol, 0, 0]);
        if let IpAddr::V4(a) = source(rng, false) {
            f.extend_from_slice(&a.octets());
        }
        f.extend([10, 0, 0, 1]);
        f.extend(std::iter::repeat_n(
            1u8,
            usize::from(words.saturating_sub(5)) * 4,
        ));
    }
    f.extend_from_slice(&l4);
    if rng.chance(25) {
        let keep = 14 + rng.below(f.len() as u64 - 13) as usize;
        f.truncate(keep);
    }
    if rng.chance(15) {
        for _ in 0..1 + rng.below(4) {
            let at = rng.below(f.len() as u64) as usize;
            f[at] = rng.byte();
        }
    }
    f
}

fn policy(rng: &mut Rng) -> DesiredPolicy {
    let mut p = DesiredPolicy::default();
    for code in [b"RU", b"DE", b"BY", b"US", b"CN"] {
        if rng.chance(40) {
            p.countries.insert(cc(code));
        }
    }
    if rng.chance(30) {
        p.mode = Mode::AllowOnly;
    }
    if rng.chance(30) {
        p.unknown = UnknownAction::Drop;
    }
    p.monitor = rng.chance(15);
    let exceptions = [
        "5.45.200.0/24",
        "77.88.40.2/32",
        "203.0.0.0/8",
        "2a02:6b8::/48",
        "2001:db8:1:3::/64",
        "2a02:6b9::/32",
        // Cover the v4 pool, so embedded sources meet exceptions too.
        "77.88.32.0/20",
        "46.114.9.9/32",
    ];
    for e in exceptions {
        if rng.chance(25) {
            let action = if rng.chance(50) {
                ExceptionAction::Pass
            } else {
                ExceptionAction::Drop
            };
            p.exceptions.insert(e.parse().unwrap(), action);
        }
    }
    let ports = [
        "tcp:22",
        "tcp:80",
        "udp:53",
        "tcp:8000-8100",
        "udp:0-1000",
        "tcp:65535",
    ];
    let mut scope = PortScope::default();
    if rng.chance(50) {
        for port in ports {
            if rng.chance(30) {
                scope.only.insert(port.parse().unwrap());
            }
            if rng.chance(20) {
                scope.exempt.insert(port.parse().unwrap());
            }
        }
    }
    p.ports = scope;
    p
}

fn add(expected: &mut Counters, e: &model::Expected, len: u64) {
    let class = &mut expected.classes[e.class as usize];
    class.packets += 1;
    class.bytes += len;
    if let Some((country, verdict)) = e.country {
        let row = expected.countries.entry(country).or_default();
        row[verdict as usize].packets += 1;
        row[verdict as usize].bytes += len;
    }
}

#[test]
fn random_frames_agree_with_the_reference_model() {
    require_root();
    let long = std::env::var_os("GEOFILTER_LONG").is_some();
    let (policies, frames_per_policy) = if long { (1_000, 10_000) } else { (100, 2_000) };
    let seed = std::env::var("GEOFILTER_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!(
        "fuzz seed {seed} ({policies} policies x {frames_per_policy} frames); replay with GEOFILTER_FUZZ_SEED={seed}"
    );
    let mut rng = Rng(seed);
    let db = world();
    let mut dp = Datapath::load().expect("loading the XDP program");
    dp.install_tables(&db.v4, &db.v6).expect("tables");
    let mut current = DesiredPolicy::default();
    for round in 0..policies {
        let next = policy(&mut rng);
        geofilter_daemon::policy::apply(&mut dp, &current, &next).expect("applying policy");
        current = next;
        let mut expected = dp.counters().expect("counters");
        for i in 0..frames_per_policy {
            let f = frame(&mut rng);
            let want = model::expect(&f, &db, &current);
            let got = dp
                .program()
                .test_run(TestRunOptions {
                    data_in: Some(&f),
                    ..TestRunOptions::new()
                })
                .expect("BPF_PROG_TEST_RUN")
                .return_value;
            assert_eq!(
                got, want.action,
                "seed {seed}, round {round}, frame {i}: program returned {got}, model says {want:?}\nframe: {f:02x?}\npolicy: {current:?}"
            );
            add(&mut expected, &want, f.len() as u64);
        }
        let actual = dp.counters().expect("counters");
        assert_eq!(
            actual.classes, expected.classes,
            "seed {seed}, round {round}: class counters"
        );
        assert_eq!(
            actual.countries, expected.countries,
            "seed {seed}, round {round}: country counters"
        );
    }
}
