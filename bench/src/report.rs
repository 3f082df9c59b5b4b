//! The human table and the JSON line.

use std::{process::Command, time::Duration};

use geofilter_common::maps as names;
use geofilter_daemon::datapath::memory::MapMemory;

use crate::{
    control::{CountryChange, WorldLoad},
    data::{Family, World},
    live::Rate,
    test_run::{Costs, Lookups, Results as TestRun},
};

pub struct Live {
    /// A parse-and-drop XDP program: the fastest receiver; not in the JSON.
    pub drop_floor: Rate,
    /// IPv4, the default source count (as all rows without a family or "flood" in the name).
    pub geofilter: Rate,
    pub lpm_trie: Rate,
    pub geofilter_v6: Rate,
    pub lpm_trie_v6: Rate,
    /// IPv4 from [`crate::live::FLOOD_SOURCES`] distinct blocked sources.
    pub geofilter_flood: Rate,
    pub lpm_trie_flood: Rate,
    pub nftables: Rate,
    pub iptables_ipset: Rate,
    pub iptables_version: String,
}

pub struct Control {
    pub world_load: WorldLoad,
    /// Peak resident memory (`VmHWM`) of the real daemon after starting on the world database:
    /// its start-up compiled the database and loaded the tables.
    pub daemon_peak_rss: u64,
    pub change: CountryChange,
    pub memory: Vec<MapMemory>,
    /// Issue 14: ASN blocks and list switches through the CLI, and the maps' memory after
    /// them (the ASN data and a list in the tables).
    pub net_changes: crate::control::NetChanges,
    pub net_memory: Vec<MapMemory>,
    pub nft_load: Duration,
    pub nft_elements: usize,
    pub ipset_load: Duration,
    pub ipset_elements: usize,
}

pub struct Results<'a> {
    pub world: &'a World,
    pub test_run: TestRun,
    pub dispatcher: crate::dispatcher::Cost,
    pub nets: crate::nets::Results,
    pub live: Live,
    pub control: Control,
    pub fleet: crate::fleet::Results,
}

/// The first line of `program --version`, for the record.
pub fn command_version(program: &str) -> String {
    Command::new(program)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.lines().next().map(str::to_owned))
        .unwrap_or_else(|| format!("{program} (version unknown)"))
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
            })
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_owned();
    format!("{cpu}, {cpus} CPUs, Linux {kernel}")
}

pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Kernel memory of one family's country tables: its map-of-maps slot and every map whose name
/// starts with the slot's (the inner table `NAME[0]`), whatever structure the table has.
pub fn table_bytes(memory: &[MapMemory], family: Family) -> u64 {
    let name = match family {
        Family::V4 => names::TABLE_V4,
        Family::V6 => names::TABLE_V6,
    };
    memory
        .iter()
        .filter(|m| m.name.starts_with(name))
        .map(|m| m.bytes)
        .sum()
}

/// The issue-12 targets of one family: geofilter's cost over the floor at 65,536 sources over its
/// cost at one source (target ≤ 2), and the LPM trie's over geofilter's at 65,536 (target ≥ 20).
pub fn targets(t: &TestRun, family: Family) -> Option<(f64, f64)> {
    let pick = |n| {
        t.at(n).map(|p| match family {
            Family::V4 => p.v4,
            Family::V6 => p.v6,
        })
    };
    let (one, wide) = (pick(1)?, pick(65_536)?);
    Some((
        wide.geofilter_over_floor() / one.geofilter_over_floor(),
        wide.lpm_over_floor() / wide.geofilter_over_floor(),
    ))
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "NOT met" }
}

fn print_sweep(t: &TestRun) {
    println!(
        "test_run by source count: ns/packet, the same programs, every count and program \
         interleaved in each round (median of {} rounds x {} packets)",
        t.rounds, t.repeat
    );
    println!(
        "          {:>9} {:>8} {:>10} {:>10}   {:>12} {:>12} {:>9}",
        "sources", "floor", "lpm_trie", "geofilter", "geo - floor", "lpm - floor", "lpm/geo"
    );
    for (name, family) in [("IPv4", Family::V4), ("IPv6", Family::V6)] {
        for p in &t.by_sources {
            let l: Lookups = match family {
                Family::V4 => p.v4,
                Family::V6 => p.v6,
            };
            let (go, lo) = (l.geofilter_over_floor(), l.lpm_over_floor());
            println!(
                "  {name:<6}  {:>9} {:>8.1} {:>10.1} {:>10.1}   {go:>12.1} {lo:>12.1} {:>9.1}",
                p.sources,
                l.floor,
                l.lpm_trie,
                l.geofilter,
                lo / go
            );
        }
        if let Some((growth, lead)) = targets(t, family) {
            println!(
                "  {name:<6}  targets: geofilter over floor at 65,536 / at 1 = {growth:.2} (<= 2: {}); \
                 LPM over floor / geofilter over floor at 65,536 = {lead:.1} (>= 20: {})",
                verdict(growth <= 2.0),
                verdict(lead >= 20.0)
            );
        }
    }
}

pub fn print(r: &Results, json: bool) {
    let w = r.world;
    let t = &r.test_run;
    let l = &r.live;
    let c = &r.control;
    let memory: u64 = c.memory.iter().map(|m| m.bytes).sum();
    let tables = table_bytes(&c.memory, Family::V4) + table_bytes(&c.memory, Family::V6);

    println!("geofilter bench");
    println!("machine:  {}", machine());
    println!(
        "database: {} ({} IPv4 + {} IPv6 prefixes, {} countries; {} blocked: every second one)",
        w.paths
            .iter()
            .map(|p| p
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned())
            .collect::<Vec<_>>()
            .join(" + "),
        w.db.v4.len(),
        w.db.v6.len(),
        w.db.countries().len(),
        w.blocked.len(),
    );
    println!();
    println!(
        "test_run: ns/packet through BPF_PROG_TEST_RUN, a different source each packet \
         ({} sources per family drawn from the database), median of {} rounds x {} packets",
        t.sources, t.rounds, t.repeat
    );
    println!(
        "          {:>8} {:>10} {:>10}   {:>12} {:>12} {:>8}   {:>10} {:>12}",
        "floor",
        "lpm_trie",
        "geofilter",
        "lpm - floor",
        "geo - floor",
        "ratio",
        "listening",
        "listen - geo"
    );
    for (name, costs) in [("IPv4", t.v4), ("IPv6", t.v6)] {
        let Costs {
            lookups:
                Lookups {
                    floor,
                    lpm_trie,
                    geofilter,
                },
            listening,
        } = costs;
        let (lo, go) = (lpm_trie - floor, geofilter - floor);
        println!(
            "  {name:<6}  {floor:>8.1} {lpm_trie:>10.1} {geofilter:>10.1}   {lo:>12.1} {go:>12.1} {:>8}   {listening:>10.1} {:>12.1}",
            if go > 0.0 {
                format!("1/{:.1}", lo / go)
            } else {
                "-".to_owned()
            },
            listening - geofilter
        );
    }
    println!(
        "          (geofilter: nobody follows `geofilter log`; listening: one client does, drop \
         events on at the default rate)"
    );
    crate::dispatcher::print(&r.dispatcher);
    println!();
    crate::nets::print(&r.nets);
    println!();
    print_sweep(t);
    println!();
    println!(
        "live: Mpps dropped, XDP live frames of random blocked sources into a veth pair, \
         generator and receiver on one core, median of runs; IPv4 and {} sources unless named",
        t.sources
    );
    let flood = format!("{} distinct sources", l.geofilter_flood.distinct_sources);
    for (name, rate, reference) in [
        (
            "floor: parse + XDP_DROP (native XDP)".to_owned(),
            l.drop_floor,
            l.geofilter,
        ),
        (
            "geofilter (native XDP)".to_owned(),
            l.geofilter,
            l.geofilter,
        ),
        ("lpm_trie (native XDP)".to_owned(), l.lpm_trie, l.geofilter),
        (
            "nftables (netdev ingress, interval set)".to_owned(),
            l.nftables,
            l.geofilter,
        ),
        (
            "iptables + ipset hash:net (raw)".to_owned(),
            l.iptables_ipset,
            l.geofilter,
        ),
        ("geofilter, IPv6".to_owned(), l.geofilter_v6, l.geofilter_v6),
        ("lpm_trie, IPv6".to_owned(), l.lpm_trie_v6, l.geofilter_v6),
        (
            format!("geofilter, flood: {flood}"),
            l.geofilter_flood,
            l.geofilter_flood,
        ),
        (
            format!("lpm_trie, flood: {flood}"),
            l.lpm_trie_flood,
            l.geofilter_flood,
        ),
    ] {
        println!(
            "  {name:<42} {:>7.2} Mpps   geofilter = {:>5.1}x   ({} frames/run, {:.1}% counted)",
            rate.mpps,
            reference.mpps / rate.mpps,
            rate.packets,
            rate.dropped_share * 100.0
        );
    }
    println!("  ({})", l.iptables_version);
    println!();
    println!("control");
    println!(
        "  world compile + load        {:>8.3} s   (compile {:.3} + tables {:.3}; {} + {} chunks; median of {})",
        c.world_load.total.as_secs_f64(),
        c.world_load.compile.as_secs_f64(),
        c.world_load.load.as_secs_f64(),
        c.world_load.chunks_v4,
        c.world_load.chunks_v6,
        c.world_load.runs
    );
    println!(
        "  daemon peak memory          {:>8.1} MiB (VmHWM after start-up: world compile + load)",
        mib(c.daemon_peak_rss)
    );
    println!(
        "  country change (CLI)        {:>8.2} ms  (median of {} block/unblock of {}, max {:.2} ms)",
        c.change.median().as_secs_f64() * 1e3,
        c.change.samples.len(),
        c.change.country,
        c.change.max().as_secs_f64() * 1e3
    );
    println!(
        "  kernel memory, all maps     {:>8.1} MiB ({} bytes; tables {:.1} MiB)",
        mib(memory),
        memory,
        mib(tables)
    );
    println!(
        "  kernel memory, tables       {:>8.2} MiB IPv4 + {:.2} MiB IPv6 (memlock of each map)",
        mib(table_bytes(&c.memory, Family::V4)),
        mib(table_bytes(&c.memory, Family::V6)),
    );
    let n = &c.net_changes;
    println!(
        "  ASN change (CLI)            {:>8.2} ms  (median of {} block/unblock of {}, max {:.2} ms; \
         the first ASN loaded the ASN data in {:.2} s)",
        n.asn.median().as_secs_f64() * 1e3,
        n.asn.samples.len(),
        n.asn.country,
        n.asn.max().as_secs_f64() * 1e3,
        n.asn_data_load.as_secs_f64()
    );
    println!(
        "  list switch (CLI)           {:>8.2} ms  (median of {} enable/disable of a list of {} /24s, max {:.2} ms)",
        n.list.median().as_secs_f64() * 1e3,
        n.list.samples.len(),
        n.list_prefixes,
        n.list.max().as_secs_f64() * 1e3
    );
    println!(
        "  kernel memory, tables       {:>8.2} MiB IPv4 + {:.2} MiB IPv6 with the ASN data and the list",
        mib(table_bytes(&c.net_memory, Family::V4)),
        mib(table_bytes(&c.net_memory, Family::V6)),
    );
    println!(
        "  nftables load               {:>8.3} s   ({} intervals)",
        c.nft_load.as_secs_f64(),
        c.nft_elements
    );
    println!(
        "  ipset load                  {:>8.3} s   ({} CIDRs)",
        c.ipset_load.as_secs_f64(),
        c.ipset_elements
    );
    println!();
    crate::fleet::print(&r.fleet);

    if json {
        println!("{}", crate::json::line(r));
    }
}
