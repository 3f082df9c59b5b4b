//! The JSON line carries every field the issues named, with the values it was given.

use std::time::Duration;

use geofilter_daemon::datapath::memory::MapMemory;
use serde_json::Value;

use crate::{
    control::{CountryChange, WorldLoad},
    data::World,
    live::Rate,
    report::{Control, Live, Results},
    test_run::{Costs, Lookups, Point, Results as TestRun},
};

fn rate(mpps: f64) -> Rate {
    Rate {
        mpps,
        packets: 1_048_576,
        dropped_share: 1.0,
        distinct_sources: 1_048_576,
    }
}

fn lookups(base: f64) -> Lookups {
    Lookups {
        floor: base,
        lpm_trie: base + 1.0,
        geofilter: base + 2.0,
    }
}

fn mem(name: &str, bytes: u64) -> MapMemory {
    MapMemory {
        name: name.into(),
        bytes,
    }
}

/// Every field `cargo xtask bench --json` promises, from a results set whose values are all
/// distinct so a field wired to the wrong value shows.
#[test]
fn json_has_every_field() {
    let dir = crate::TempDir::new();
    let csv = dir.join("db.csv");
    std::fs::write(&csv, "1.0.0.0,1.0.0.255,AU\n2001:db8::,2001:db8::ffff,DE\n").unwrap();
    let world = World::load(&[csv]);
    let results = Results {
        world: &world,
        test_run: TestRun {
            v4: Costs {
                lookups: lookups(10.0),
                listening: 13.0,
            },
            v6: Costs {
                lookups: lookups(20.0),
                listening: 23.0,
            },
            by_sources: [1, 16_384, 65_536, 1_048_576]
                .into_iter()
                .enumerate()
                .map(|(i, sources)| Point {
                    sources,
                    v4: lookups(100.0 * (i + 1) as f64),
                    v6: lookups(1000.0 * (i + 1) as f64),
                })
                .collect(),
            rounds: 3,
            repeat: 1_000_000,
            sources: 16_384,
        },
        live: Live {
            drop_floor: rate(1.0),
            geofilter: rate(2.0),
            lpm_trie: rate(3.0),
            nftables: rate(4.0),
            iptables_ipset: rate(5.0),
            geofilter_v6: rate(6.0),
            lpm_trie_v6: rate(7.0),
            geofilter_flood: rate(8.0),
            lpm_trie_flood: rate(9.0),
            iptables_version: "iptables v1.8.9".into(),
        },
        dispatcher: Ok(crate::dispatcher::Costs {
            exclusive: 30.0,
            dispatcher: 31.0,
        }),
        control: Control {
            world_load: WorldLoad {
                compile: Duration::from_millis(100),
                load: Duration::from_millis(200),
                total: Duration::from_millis(300),
                runs: 1,
                chunks_v4: 1,
                chunks_v6: 2,
            },
            daemon_peak_rss: 123_456_789,
            change: CountryChange {
                country: "AU".into(),
                samples: vec![Duration::from_millis(4)],
            },
            memory: vec![
                mem("GF_POLICY", 1),
                mem("GF_TABLE_V4", 10),
                mem("GF_TABLE_V4[0]", 1000),
                mem("GF_TABLE_V6", 20),
                mem("GF_TABLE_V6[0]", 2000),
            ],
            net_changes: crate::control::NetChanges {
                asn_data_load: Duration::from_millis(900),
                asn: CountryChange {
                    country: "AS13335".into(),
                    samples: vec![Duration::from_millis(3)],
                },
                list: CountryChange {
                    country: "bench".into(),
                    samples: vec![Duration::from_millis(2)],
                },
                list_prefixes: 4_000,
            },
            net_memory: Vec::new(),
            nft_load: Duration::from_millis(1500),
            nft_elements: 1,
            ipset_load: Duration::from_millis(700),
            ipset_elements: 1,
        },
        nets: crate::nets::Results {
            v4: crate::nets::Costs {
                floor: 40.0,
                countries: 41.0,
                combined: 42.0,
                full_policy: 43.0,
            },
            v6: crate::nets::Costs {
                floor: 50.0,
                countries: 51.0,
                combined: 52.0,
                full_policy: 53.0,
            },
            asns_in_db: 91_065,
            asns_listed: 100,
            list_prefixes: 5_100,
            bytes_countries: (60, 61),
            bytes_combined: (62, 63),
            combined_load_s: 0.9,
            asn_block_ms: 0.2,
            list_switch_ms: 0.1,
            sources: 16_384,
        },
        fleet: crate::fleet::Results {
            converge: [(1, 700), (10, 1100), (50, 2300)]
                .into_iter()
                .map(|(hosts, ms)| crate::fleet::Convergence {
                    hosts,
                    rounds: [9999, ms, 1].map(Duration::from_millis).to_vec(),
                    peak_rss: 1,
                    kernel_bytes: 1,
                })
                .collect(),
            idle: crate::fleet::Idle {
                hosts: 10,
                seconds: 60.0,
                // 0.5 requests per host per s at the 2 s interval: 120 per hour at 30 s.
                requests: 300,
                not_modified: 300,
                http_bytes: 300 * 400,
                wire_bytes: 300 * 1000,
            },
        },
    };
    let line = super::line(&results);
    let json: Value = serde_json::from_str(&line).expect("valid JSON");
    let num = |path: &str| -> f64 {
        path.split('.')
            .try_fold(&json, |v, key| v.get(key))
            .and_then(Value::as_f64)
            .unwrap_or_else(|| panic!("no number at {path} in {line}"))
    };
    // Issue 5's fields, meaning what they always did (the figures at the default source count).
    assert_eq!(num("test_run.ipv4.floor_ns"), 10.0);
    assert_eq!(num("test_run.ipv4.lpm_trie_ns"), 11.0);
    assert_eq!(num("test_run.ipv4.geofilter_ns"), 12.0);
    assert_eq!(num("test_run.ipv4.geofilter_listening_ns"), 13.0);
    assert_eq!(num("test_run.ipv6.geofilter_ns"), 22.0);
    assert_eq!(num("test_run.ipv6.geofilter_listening_ns"), 23.0);
    assert_eq!(num("test_run.prefixes.ipv4"), 1.0);
    assert_eq!(num("test_run.prefixes.ipv6"), 1.0);
    assert_eq!(num("live.geofilter_mpps"), 2.0);
    assert_eq!(num("live.lpm_trie_mpps"), 3.0);
    assert_eq!(num("live.nftables_mpps"), 4.0);
    assert_eq!(num("live.iptables_ipset_mpps"), 5.0);
    assert_eq!(num("control.world_load_s"), 0.3);
    assert_eq!(num("control.country_change_ms"), 4.0);
    assert_eq!(num("control.kernel_memory_bytes"), 3031.0);
    assert_eq!(num("control.nftables_load_s"), 1.5);
    assert_eq!(num("control.ipset_load_s"), 0.7);
    // Issue 12's.
    for (i, n) in ["1", "16384", "65536", "1048576"].into_iter().enumerate() {
        let (v4, v6) = (100.0 * (i + 1) as f64, 1000.0 * (i + 1) as f64);
        for (family, base) in [("ipv4", v4), ("ipv6", v6)] {
            let at = |field: &str| num(&format!("test_run.{family}.by_sources.{n}.{field}"));
            assert_eq!(at("floor_ns"), base);
            assert_eq!(at("lpm_trie_ns"), base + 1.0);
            assert_eq!(at("geofilter_ns"), base + 2.0);
        }
    }
    assert_eq!(num("live.geofilter_ipv6_mpps"), 6.0);
    assert_eq!(num("live.lpm_trie_ipv6_mpps"), 7.0);
    assert_eq!(num("live.flood.geofilter_mpps"), 8.0);
    assert_eq!(num("live.flood.lpm_trie_mpps"), 9.0);
    assert_eq!(num("live.flood.distinct_sources"), 1_048_576.0);
    assert_eq!(num("test_run.dispatcher.exclusive_ns"), 30.0);
    assert_eq!(num("test_run.dispatcher.dispatcher_ns"), 31.0);
    assert_eq!(num("memory.tables.ipv4_bytes"), 1010.0);
    assert_eq!(num("memory.tables.ipv6_bytes"), 2020.0);
    assert_eq!(num("memory.kernel_bytes"), 3031.0);
    assert_eq!(num("memory.daemon_peak_bytes"), 123_456_789.0);
    // Issue 13's: the median of each size's rounds; 120 requests of 1,000 wire bytes an hour.
    assert_eq!(num("fleet.interval_s"), 2.0);
    assert_eq!(num("fleet.converge_ms.1"), 700.0);
    assert_eq!(num("fleet.converge_ms.10"), 1100.0);
    assert_eq!(num("fleet.converge_ms.50"), 2300.0);
    let fleet: Value = serde_json::from_str(&super::fleet_line(&results.fleet)).expect("JSON");
    assert_eq!(fleet["fleet"]["converge_ms"]["50"], 2300.0);
    assert_eq!(num("fleet.requests_per_host_hour"), 120.0);
    assert_eq!(num("fleet.bytes_per_host_hour"), 120_000.0);
    assert_eq!(num("fleet.bytes_per_request"), 1000.0);
    // Issue 14's.
    assert_eq!(num("nets.ipv4.floor_ns"), 40.0);
    assert_eq!(num("nets.ipv4.countries_ns"), 41.0);
    assert_eq!(num("nets.ipv4.combined_ns"), 42.0);
    assert_eq!(num("nets.ipv4.full_policy_ns"), 43.0);
    assert_eq!(num("nets.ipv6.full_policy_ns"), 53.0);
    assert_eq!(num("nets.asns_listed"), 100.0);
    assert_eq!(num("nets.list_prefixes"), 5_100.0);
    assert_eq!(num("nets.tables.countries_ipv4_bytes"), 60.0);
    assert_eq!(num("nets.tables.combined_ipv6_bytes"), 63.0);
    assert_eq!(num("nets.combined_load_s"), 0.9);
    assert_eq!(num("nets.asn_block_ms"), 0.2);
    assert_eq!(num("nets.list_switch_ms"), 0.1);
    assert_eq!(num("control.asn_change_ms"), 3.0);
    assert_eq!(num("control.list_switch_ms"), 2.0);
    // Keys keep the order issue 5 gave them: the line opens as it always did.
    assert!(
        line.starts_with(r#"{"test_run":{"ipv4":{"floor_ns":10.0,"lpm_trie_ns":11.0,"#),
        "{line}"
    );
}

/// The issue's two ratios, from the sweep: growth of geofilter's cost, and the LPM trie's lead.
#[test]
fn targets_are_the_issue_ratios() {
    let point = |sources, geofilter, lpm_trie| Point {
        sources,
        v4: Lookups {
            floor: 10.0,
            lpm_trie,
            geofilter,
        },
        v6: Lookups::default(),
    };
    let t = TestRun {
        v4: Costs::default(),
        v6: Costs::default(),
        by_sources: vec![point(1, 20.0, 110.0), point(65_536, 40.0, 610.0)],
        rounds: 1,
        repeat: 1,
        sources: 1,
    };
    let (growth, lead) = crate::report::targets(&t, crate::data::Family::V4).unwrap();
    assert_eq!(growth, 3.0);
    assert_eq!(lead, 20.0);
}
