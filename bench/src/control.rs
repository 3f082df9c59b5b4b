//! `control`: how fast the world database loads, how fast a country change takes effect, what
//! the kernel holds for it, and how long nftables and ipset take to load the blocked set.

use std::{
    fmt::Write as _,
    path::Path,
    process::Stdio,
    time::{Duration, Instant},
};

use aya::maps::{Array, ArrayOfMaps, Map, MapData};
use geofilter_common::{ACTION_DROP, Policy, maps as names};
use geofilter_daemon::{
    country::code_str,
    datapath::{Datapath, memory},
    geoip,
    paths::PinLayout,
};
use geofilter_tests::{daemon::Daemon, netns::Netns};

use crate::data::{Family, World};

pub struct WorldLoad {
    /// Medians over the runs.
    pub compile: Duration,
    pub load: Duration,
    pub total: Duration,
    pub runs: usize,
    pub chunks_v4: usize,
    pub chunks_v6: usize,
}

/// Compiling the database files and loading the result into a fresh program's tables, as the
/// daemon does at start-up and on reload (program verification not included).
pub fn world_load(world: &World, runs: usize) -> WorldLoad {
    let mut samples = Vec::new();
    let mut chunks = (0, 0);
    for _ in 0..runs {
        let start = Instant::now();
        let db = geoip::load(&world.paths, None).expect("compiling the database");
        let compile = start.elapsed();
        let mut datapath = Datapath::load().expect("loading geofilter");
        let start = Instant::now();
        let stats = datapath
            .install_tables(&db.v4, &db.v6)
            .expect("installing tables");
        let load = start.elapsed();
        chunks = (stats.chunks_v4, stats.chunks_v6);
        samples.push((compile, load));
    }
    samples.sort_by_key(|&(c, l)| c + l);
    let (compile, load) = samples[samples.len() / 2];
    WorldLoad {
        compile,
        load,
        total: compile + load,
        runs,
        chunks_v4: chunks.0,
        chunks_v6: chunks.1,
    }
}

pub struct CountryChange {
    pub country: String,
    /// Command sent → policy live in the kernel, per change (blocks and unblocks alternate).
    pub samples: Vec<Duration>,
}

impl CountryChange {
    pub fn median(&self) -> Duration {
        let mut s = self.samples.clone();
        s.sort();
        s[s.len() / 2]
    }

    pub fn max(&self) -> Duration {
        self.samples.iter().copied().max().unwrap_or_default()
    }
}

/// `geofilter block CC` / `unblock CC` through the CLI, `cycles` times each: from just before the
/// CLI starts to the moment the program's policy slot holds the new policy (from then on every
/// packet is judged by it; the program reads the slot afresh for each packet).
pub fn country_change(daemon: &Daemon, world: &World, cycles: usize) -> CountryChange {
    let country = *world
        .db
        .countries()
        .iter()
        .find(|c| !world.blocked.contains(c))
        .expect("an unblocked country");
    let code = code_str(country);
    let samples = timed_cli(
        daemon,
        cycles,
        &["block", &code],
        &["unblock", &code],
        |p| p.actions[usize::from(country)] == ACTION_DROP,
    );
    CountryChange {
        country: code,
        samples,
    }
}

/// The live policy, read from the pinned policy slot the program uses (`None` when the slot
/// changed under the read).
fn live_policy(outer: &ArrayOfMaps<MapData, Array<MapData, Policy>>) -> Option<Policy> {
    outer.get(&0, 0).ok()?.get(&0, 0).ok()
}

/// What issue 14's changes take through the CLI, as [`country_change`] measures a country's.
pub struct NetChanges {
    /// The first `block AS...`: loads the embedded ASN database into the tables (once).
    pub asn_data_load: Duration,
    /// `block ASn` / `unblock ASn` with the ASN data loaded.
    pub asn: CountryChange,
    /// `list enable` / `list disable` of a list of `list_prefixes` blocks.
    pub list: CountryChange,
    pub list_prefixes: usize,
}

/// Runs `on` and `off` through the CLI `cycles` times each, timing each from just before the CLI
/// starts until `in_effect(policy)` says so in the live policy slot.
fn timed_cli(
    daemon: &Daemon,
    cycles: usize,
    on: &[&str],
    off: &[&str],
    in_effect: impl Fn(&Policy) -> bool,
) -> Vec<Duration> {
    let pin_root = daemon
        .pin_root()
        .expect("the daemon pins where we can see it");
    let layout = PinLayout::new(pin_root.to_path_buf());
    let outer: ArrayOfMaps<MapData, Array<MapData, Policy>> =
        Map::from_map_data(MapData::from_pin(layout.map(names::POLICY)).expect("policy pin"))
            .and_then(Map::try_into)
            .expect("policy map");
    let state = |outer: &_| live_policy(outer).map(|p| in_effect(&p));
    let mut samples = Vec::new();
    for _ in 0..cycles {
        for (args, want) in [(on, true), (off, false)] {
            assert_eq!(state(&outer), Some(!want), "{args:?}: already in effect");
            let start = Instant::now();
            let mut child = daemon
                .cli_command(args)
                .stdout(Stdio::null())
                .spawn()
                .expect("running the CLI");
            let deadline = start + Duration::from_secs(5);
            let mut took = None;
            while Instant::now() < deadline {
                if state(&outer) == Some(want) {
                    took = Some(start.elapsed());
                    break;
                }
            }
            assert!(
                child.wait().expect("CLI").success(),
                "geofilter {args:?} failed"
            );
            samples.push(took.unwrap_or_else(|| panic!("{args:?}: not in effect after 5 s")));
        }
    }
    samples
}

/// ASN blocks and list switches through the CLI on the running daemon: first `block AS64496`
/// (a documentation ASN: no traffic) brings the embedded ASN database in, then AS13335 is
/// blocked and unblocked; a list of `blocks` random /24s of the world is added once and switched
/// on and off.
pub fn net_changes(daemon: &Daemon, world: &World, cycles: usize, dir: &Path) -> NetChanges {
    let start = Instant::now();
    daemon.ok(&["block", "AS64496"]);
    let asn_data_load = start.elapsed();
    let asn = timed_cli(
        daemon,
        cycles,
        &["block", "AS13335"],
        &["unblock", "AS13335"],
        |p| p.asn_actions.iter().filter(|&&a| a != 0).count() == 2,
    );
    let mut rng = geofilter_tests::rng::Rng(0x6c69_7374);
    let mut text = String::from("# random /24s of the world\n");
    let mut seen = std::collections::BTreeSet::new();
    for s in world.sources(Family::V4, 4_500, &mut rng, |_| true) {
        if seen.insert(s >> 8) {
            let a = std::net::Ipv4Addr::from(((s >> 8) << 8) as u32);
            let _ = writeln!(text, "{a}/24");
        }
    }
    let file = dir.join("bench-list.txt");
    std::fs::write(&file, text).expect("writing the list");
    daemon.ok(&["list", "add", "bench", file.to_str().expect("UTF-8 path")]);
    daemon.ok(&["list", "disable", "bench"]);
    let list = timed_cli(
        daemon,
        cycles,
        &["list", "enable", "bench"],
        &["list", "disable", "bench"],
        |p| p.list_drop != 0,
    );
    NetChanges {
        asn_data_load,
        asn: CountryChange {
            country: "AS13335".into(),
            samples: asn,
        },
        list: CountryChange {
            country: "bench".into(),
            samples: list,
        },
        list_prefixes: seen.len(),
    }
}

/// Kernel memory of every map of the daemon's filter (pinned maps and the inner maps they hold).
pub fn kernel_memory(daemon: &Daemon) -> Vec<memory::MapMemory> {
    let pin_root = daemon
        .pin_root()
        .expect("the daemon pins where we can see it");
    memory::pinned_map_memory(&PinLayout::new(pin_root.to_path_buf())).expect("map memory")
}

/// Runs `program args` in `ns`, feeding `input` on stdin when given; panics with its stderr on
/// failure. Returns how long it took.
pub fn timed(ns: &Netns, program: &str, args: &[&str], input: Option<&Path>) -> Duration {
    let mut command = ns.command(program);
    command
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(path) = input {
        command.stdin(std::fs::File::open(path).expect("input file"));
    }
    let start = Instant::now();
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("running {program}: {e}"));
    let elapsed = start.elapsed();
    assert!(
        out.status.success(),
        "{program} {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    elapsed
}

pub const NFT_TABLE: &str = "geofilter_bench";

/// An nftables ruleset dropping the blocked set at netdev ingress of `iface`: one interval set
/// per family with the blocked ranges (adjacent prefixes already merged).
pub fn nft_ruleset(world: &World, iface: &str) -> (String, usize) {
    let mut text = String::new();
    let mut elements = 0;
    writeln!(text, "table netdev {NFT_TABLE} {{").unwrap();
    for (family, set, ty) in [
        (Family::V4, "blocked4", "ipv4_addr"),
        (Family::V6, "blocked6", "ipv6_addr"),
    ] {
        let ranges = world.blocked_ranges(family);
        elements += ranges.len();
        writeln!(text, "  set {set} {{ type {ty}; flags interval;").unwrap();
        if !ranges.is_empty() {
            text.push_str("    elements = { ");
            for (i, &(start, end)) in ranges.iter().enumerate() {
                if i > 0 {
                    text.push_str(", ");
                }
                if start == end {
                    write!(text, "{}", family.ip(start)).unwrap();
                } else {
                    write!(text, "{}-{}", family.ip(start), family.ip(end)).unwrap();
                }
            }
            text.push_str(" }\n");
        }
        text.push_str("  }\n");
    }
    writeln!(
        text,
        "  chain ingress {{ type filter hook ingress device \"{iface}\" priority -500; policy accept;\n    \
         ip saddr @blocked4 counter drop\n    ip6 saddr @blocked6 counter drop\n  }}\n}}"
    )
    .unwrap();
    (text, elements)
}

pub const IPSET_V4: &str = "gfbench4";
pub const IPSET_V6: &str = "gfbench6";

/// `ipset restore` input creating one `hash:net` set per family with the blocked set as the
/// fewest CIDRs.
pub fn ipset_restore(world: &World) -> (String, usize) {
    let mut text = String::new();
    let mut elements = 0;
    for (family, set, inet) in [
        (Family::V4, IPSET_V4, "inet"),
        (Family::V6, IPSET_V6, "inet6"),
    ] {
        let cidrs = world.blocked_cidrs(family);
        elements += cidrs.len();
        // maxelem must hold the set (the default is 65536); hashsize sized to it up front.
        let max = cidrs.len().next_power_of_two().max(1024);
        writeln!(
            text,
            "create {set} hash:net family {inet} hashsize {max} maxelem {}",
            max * 2
        )
        .unwrap();
        for (addr, len) in cidrs {
            writeln!(text, "add {set} {}/{len}", family.ip(addr)).unwrap();
        }
    }
    (text, elements)
}
