//! The human table and the JSON line.

use std::{process::Command, time::Duration};

use geofilter_daemon::datapath::memory::MapMemory;
use serde_json::json;

use crate::{
    control::{CountryChange, WorldLoad},
    data::World,
    live::Rate,
    test_run::{Costs, Results as TestRun},
};

pub struct Live {
    /// A parse-and-drop XDP program: the fastest receiver; not in the JSON.
    pub drop_floor: Rate,
    pub geofilter: Rate,
    pub lpm_trie: Rate,
    pub nftables: Rate,
    pub iptables_ipset: Rate,
    pub iptables_version: String,
}

pub struct Control {
    pub world_load: WorldLoad,
    /// Peak resident memory of the real daemon after starting on the world database; not in the
    /// JSON (the issue fixed its keys).
    pub daemon_peak_rss: u64,
    pub change: CountryChange,
    pub memory: Vec<MapMemory>,
    pub nft_load: Duration,
    pub nft_elements: usize,
    pub ipset_load: Duration,
    pub ipset_elements: usize,
}

pub struct Results<'a> {
    pub world: &'a World,
    pub test_run: TestRun,
    pub dispatcher: crate::dispatcher::Cost,
    pub live: Live,
    pub control: Control,
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

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

pub fn print(r: &Results, json: bool) {
    let w = r.world;
    let t = &r.test_run;
    let l = &r.live;
    let c = &r.control;
    let memory: u64 = c.memory.iter().map(|m| m.bytes).sum();
    let tables: u64 = c
        .memory
        .iter()
        .filter(|m| m.name.starts_with("GF_TABLE"))
        .map(|m| m.bytes)
        .sum();

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
            floor,
            lpm_trie,
            geofilter,
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
    println!(
        "live: Mpps dropped, XDP live frames (random blocked IPv4 sources) into a veth pair, \
         generator and receiver on one core, median of runs"
    );
    for (name, rate) in [
        ("floor: parse + XDP_DROP (native XDP)", l.drop_floor),
        ("geofilter (native XDP)", l.geofilter),
        ("lpm_trie (native XDP)", l.lpm_trie),
        ("nftables (netdev ingress, interval set)", l.nftables),
        ("iptables + ipset hash:net (raw)", l.iptables_ipset),
    ] {
        println!(
            "  {name:<42} {:>7.2} Mpps   geofilter = {:>5.1}x   ({} frames/run, {:.1}% counted)",
            rate.mpps,
            l.geofilter.mpps / rate.mpps,
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
        "  nftables load               {:>8.3} s   ({} intervals)",
        c.nft_load.as_secs_f64(),
        c.nft_elements
    );
    println!(
        "  ipset load                  {:>8.3} s   ({} CIDRs)",
        c.ipset_load.as_secs_f64(),
        c.ipset_elements
    );

    if json {
        println!("{}", json_line(r, memory));
    }
}

/// The JSON object, keys in the order of the issue that defined it (serde_json's maps would sort
/// them).
fn json_line(r: &Results, memory: u64) -> String {
    let costs = |c: Costs| {
        format!(
            r#"{{"floor_ns":{},"lpm_trie_ns":{},"geofilter_ns":{},"geofilter_listening_ns":{}}}"#,
            json!(c.floor),
            json!(c.lpm_trie),
            json!(c.geofilter),
            json!(c.listening)
        )
    };
    let (t, l, c) = (&r.test_run, &r.live, &r.control);
    format!(
        r#"{{"test_run":{{"ipv4":{},"ipv6":{},"prefixes":{{"ipv4":{},"ipv6":{}}}}},"live":{{"geofilter_mpps":{},"lpm_trie_mpps":{},"nftables_mpps":{},"iptables_ipset_mpps":{}}},"control":{{"world_load_s":{},"country_change_ms":{},"kernel_memory_bytes":{},"nftables_load_s":{},"ipset_load_s":{}}}}}"#,
        costs(t.v4),
        costs(t.v6),
        r.world.db.v4.len(),
        r.world.db.v6.len(),
        json!(l.geofilter.mpps),
        json!(l.lpm_trie.mpps),
        json!(l.nftables.mpps),
        json!(l.iptables_ipset.mpps),
        json!(c.world_load.total.as_secs_f64()),
        json!(c.change.median().as_secs_f64() * 1e3),
        memory,
        json!(c.nft_load.as_secs_f64()),
        json!(c.ipset_load.as_secs_f64()),
    )
}
