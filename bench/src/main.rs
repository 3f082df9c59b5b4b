//! `geofilter-bench`: the measuring half of `cargo xtask bench`, which builds it (release) and
//! runs it as root with the database files. A crate of its own, out of the default members: it
//! needs what the privileged tests need (the daemon library with its `test-helpers` feature for
//! the program variants and map memory, aya, and the tests crate's namespace and daemon helpers),
//! and xtask itself stays free of them.
//!
//! Sections, in order (see each module): `test_run` (ns per packet through BPF_PROG_TEST_RUN, at
//! every source count of its sweep), `nets` (what ASNs and blocklists cost per packet and in
//! kernel memory), `control` (database load, country change latency, kernel
//! memory per map and per family's tables, the daemon's peak memory, nftables/ipset load times),
//! `live` (Mpps dropped on a veth pair: IPv4, IPv6 and a flood of a million distinct sources),
//! `fleet` (daemons following one policy source: convergence for 1, 10 and 50 hosts, and what
//! polling costs the source when nothing changes).
//! Progress goes to stderr; the table (`report`, and with `--json` one JSON object as the last
//! line, `json`) to stdout. `harness` loads the benchmark object both sections drive.
//!
//! Network rules: traffic flows only between two namespaces created here and removed on exit
//! (also on panic); every traffic run is bounded in packets and time.

mod control;
mod data;
mod dispatcher;
mod fleet;
mod harness;
mod json;
mod live;
mod nets;
mod report;
mod test_run;

use std::path::PathBuf;

use geofilter_common::Policy;
use geofilter_daemon::{datapath::variants::LpmDatapath, policy::DesiredPolicy};
use geofilter_tests::{daemon::Daemon, netns::Pair, require_root, rng::Rng};

use crate::data::{Family, World};

struct Args {
    dbs: Vec<PathBuf>,
    json: bool,
    /// Fewer rounds and runs: a smoke test of the whole pipeline.
    quick: bool,
    /// Distinct sources per family of the headline test_run figures and the live rows (default
    /// [`data::SOURCES`]); the sweep measures it beside its own counts.
    sources: usize,
    /// Stop after the test_run section.
    test_run_only: bool,
    /// Only the fleet section (needs no database).
    fleet_only: bool,
}

fn args() -> Args {
    let mut out = Args {
        dbs: Vec::new(),
        json: false,
        quick: false,
        sources: data::SOURCES,
        test_run_only: false,
        fleet_only: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--db" => out.dbs.push(it.next().expect("--db needs a file").into()),
            "--json" => out.json = true,
            "--quick" => out.quick = true,
            "--sources" => {
                out.sources = it
                    .next()
                    .and_then(|n| n.parse().ok())
                    .expect("--sources needs a number")
            }
            "--test-run-only" => out.test_run_only = true,
            "--fleet-only" => out.fleet_only = true,
            other => panic!(
                "unknown argument {other:?} (expected --db FILE, --json, --quick, --sources N, \
                 --test-run-only, --fleet-only)"
            ),
        }
    }
    assert!(
        out.fleet_only || !out.dbs.is_empty(),
        "give at least one --db FILE"
    );
    out
}

/// The policy every measured filter enforces: drop the blocked half of the world.
pub fn policy(world: &World) -> Policy {
    DesiredPolicy {
        countries: world.blocked.clone(),
        ..Default::default()
    }
    .compile()
}

fn say(msg: &str) {
    eprintln!("bench: {msg}");
}

fn main() {
    require_root();
    let args = args();
    let (rounds, runs, cycles, loads) = if args.quick {
        (3, 1, 5, 1)
    } else {
        (11, 3, 20, 3)
    };
    let fleet = || {
        let (changes, idle_s) = if args.quick { (3, 12) } else { (5, 60) };
        fleet::run(changes, std::time::Duration::from_secs(idle_s))
    };
    if args.fleet_only {
        let results = fleet();
        fleet::print(&results);
        if args.json {
            println!("{}", json::fleet_line(&results));
        }
        return;
    }

    say(&format!("compiling {:?}", args.dbs));
    let world = World::load(&args.dbs);
    say(&format!(
        "{} IPv4 + {} IPv6 prefixes compiled in {:.2} s; blocking {} of {} countries",
        world.db.v4.len(),
        world.db.v6.len(),
        world.compile.as_secs_f64(),
        world.blocked.len(),
        world.db.countries().len()
    ));

    say("test_run: loading geofilter, the LPM-trie variant and the harness");
    let mut bench = harness::Bench::load();
    let mut lpm = LpmDatapath::load().expect("loading the LPM-trie variant");
    let test_run = test_run::run(
        &world,
        &mut bench,
        &mut lpm,
        args.sources,
        rounds,
        1_000_000,
    );
    let dispatcher = dispatcher::measure(&world, rounds, 1_000_000);
    say("nets: the world with the embedded ASN database and two lists, three ways");
    let nets = nets::run(&world, &mut bench, args.sources, rounds, 1_000_000);
    if args.test_run_only {
        nets::print(&nets);
        return;
    }

    say("control: world compile + load");
    let world_load = control::world_load(&world, loads);

    let pair = Pair::new();
    let mut rng = Rng(0x6c69_7665);
    let blocked = |family: Family, n: usize, rng: &mut Rng| {
        world.sources(family, n, rng, |p| world.is_blocked(p))
    };
    let v4 = live::Generator::new(
        &pair,
        Family::V4,
        blocked(Family::V4, args.sources, &mut rng),
    );
    let v6 = live::Generator::new(
        &pair,
        Family::V6,
        blocked(Family::V6, args.sources, &mut rng),
    );
    let flood = live::Generator::flood(
        &pair,
        Family::V4,
        blocked(Family::V4, live::FLOOD_SOURCES, &mut rng),
    );
    assert_eq!(
        flood.distinct_sources(),
        live::FLOOD_SOURCES,
        "too few distinct blocked IPv4 addresses for the flood"
    );

    say("live: the parse-and-drop floor (native XDP)");
    let link = live::attach(
        &pair,
        bench.program_mut(geofilter_common::bench::DROP_PROGRAM),
    );
    let drop_floor = v4.measure(&mut bench, runs, || live::veth_xdp_drops(&pair));
    bench
        .program_mut(geofilter_common::bench::DROP_PROGRAM)
        .detach(link)
        .expect("detaching the floor");

    let codes = world.blocked_codes().join(",");
    let db_args: Vec<String> = world
        .paths
        .iter()
        .flat_map(|p| ["--db".to_owned(), p.display().to_string()])
        .collect();
    let mut daemon_args: Vec<&str> = vec!["--iface", &pair.server_if, "--xdp-mode", "native"];
    daemon_args.extend(db_args.iter().map(String::as_str));
    daemon_args.extend(["--block", &codes]);
    say("starting the daemon in the server namespace");
    let mut daemon = Daemon::start(&pair.server, &daemon_args);
    // Its start-up compiled the world database and loaded it into the kernel: the peak so far is
    // what that took (issue 3's memory target).
    let daemon_peak_rss = daemon.peak_rss_bytes();

    say("control: country block/unblock latency");
    let change = control::country_change(&daemon, &world, cycles);
    let memory = control::kernel_memory(&daemon);

    say("live: geofilter (the daemon, native XDP), IPv4, IPv6 and the flood");
    let geofilter = v4.measure(&mut bench, runs, || live::daemon_drops(&daemon));
    let geofilter_v6 = v6.measure(&mut bench, runs, || live::daemon_drops(&daemon));
    let geofilter_flood = flood.measure(&mut bench, runs, || live::daemon_drops(&daemon));
    say("control: ASN blocks and list switches through the CLI, then the tables' memory");
    let net_dir = TempDir::new();
    let net_changes = control::net_changes(&daemon, &world, cycles, &net_dir.0);
    let net_memory = control::kernel_memory(&daemon);
    daemon.stop();

    say("live: the LPM-trie variant (native XDP), the flood, IPv6 and IPv4");
    let link = live::attach(&pair, lpm.program_mut());
    let lpm_flood = flood.measure(&mut bench, runs, || live::program_drops(lpm.ebpf()));
    let lpm_v6 = v6.measure(&mut bench, runs, || live::program_drops(lpm.ebpf()));
    let lpm_rate = v4.measure(&mut bench, runs, || live::program_drops(lpm.ebpf()));
    lpm.program_mut()
        .detach(link)
        .expect("detaching the LPM-trie variant");

    say("control + live: nftables");
    pair.server
        .command("ethtool")
        .args(["-K", &pair.server_if, "gro", "on"])
        .status()
        .expect("ethtool");
    let (ruleset, nft_elements) = control::nft_ruleset(&world, &pair.server_if);
    let dir = TempDir::new();
    let nft_file = dir.join("ruleset.nft");
    std::fs::write(&nft_file, ruleset).expect("writing the ruleset");
    let nft_load = control::timed(
        &pair.server,
        "nft",
        &["-f", nft_file.to_str().expect("UTF-8 path")],
        None,
    );
    let nft_rate = v4.measure(&mut bench, runs, || live::nft_drops(&pair));
    control::timed(
        &pair.server,
        "nft",
        &["delete", "table", "netdev", control::NFT_TABLE],
        None,
    );

    say("control + live: iptables + ipset");
    let (restore, ipset_elements) = control::ipset_restore(&world);
    let ipset_file = dir.join("ipset.restore");
    std::fs::write(&ipset_file, restore).expect("writing the ipset input");
    let ipset_load = control::timed(&pair.server, "ipset", &["restore"], Some(&ipset_file));
    for (program, set) in [
        ("iptables", control::IPSET_V4),
        ("ip6tables", control::IPSET_V6),
    ] {
        control::timed(
            &pair.server,
            program,
            &[
                "-t",
                "raw",
                "-A",
                "PREROUTING",
                "-i",
                &pair.server_if,
                "-m",
                "set",
                "--match-set",
                set,
                "src",
                "-j",
                "DROP",
            ],
            None,
        );
    }
    let ipset_rate = v4.measure(&mut bench, runs, || live::iptables_drops(&pair));
    drop(dir);

    say("fleet: 1, 10 and 50 daemons following one policy source");
    let fleet = fleet();

    let results = report::Results {
        world: &world,
        test_run,
        dispatcher,
        nets,
        live: report::Live {
            drop_floor,
            geofilter,
            lpm_trie: lpm_rate,
            geofilter_v6,
            lpm_trie_v6: lpm_v6,
            geofilter_flood,
            lpm_trie_flood: lpm_flood,
            nftables: nft_rate,
            iptables_ipset: ipset_rate,
            iptables_version: report::command_version("iptables"),
        },
        control: report::Control {
            world_load,
            daemon_peak_rss,
            change,
            memory,
            net_changes,
            net_memory,
            nft_load,
            nft_elements,
            ipset_load,
            ipset_elements,
        },
        fleet,
    };
    report::print(&results, args.json);
}

/// A scratch folder for the nftables and ipset input, removed on drop (also on a panic).
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(geofilter_tests::netns::unique("geofilter-bench-"));
        std::fs::create_dir_all(&dir).expect("temp dir");
        Self(dir)
    }

    fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
