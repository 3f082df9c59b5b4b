//! `nets` (issue 14): what ASNs and blocklists cost. The same world database three ways through
//! the test_run driver, at the default source count, interleaved in every round:
//!
//! - *countries*: the country-only table and policy (the `test_run` section's geofilter);
//! - *combined, country policy*: the embedded ASN database and two lists compiled into the same
//!   table, the same country policy (no packet reads its net);
//! - *combined, full policy*: the same table with the policy naming 100 ASNs and both lists on,
//!   so every packet reads its net and its ASN slot.
//!
//! Also the kernel memory of both tables, and how long the kernel side of an ASN block and of a
//! list switch takes in-process (the CLI round trip adds what it adds to a country change, which
//! `control` measures).

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Instant,
};

use geofilter_common::bench as names;
use geofilter_daemon::{
    asn,
    datapath::{Datapath, ListMasks},
    nets::{self, ListRanges},
    policy::DesiredPolicy,
};
use geofilter_tests::rng::Rng;

use crate::{
    data::{Family, World},
    harness::{Bench, udp_frame},
    test_run::median,
};

/// ns per packet of one family: the floor and the three ways.
#[derive(Clone, Copy, Debug, Default)]
pub struct Costs {
    pub floor: f64,
    pub countries: f64,
    pub combined: f64,
    pub full_policy: f64,
}

impl Costs {
    /// The full policy's cost over the floor against the country-only one's.
    pub fn ratio_over_floor(&self) -> f64 {
        (self.full_policy - self.floor) / (self.countries - self.floor)
    }

    /// The same with the floor included (what a packet costs in all).
    pub fn ratio(&self) -> f64 {
        self.full_policy / self.countries
    }
}

pub struct Results {
    pub v4: Costs,
    pub v6: Costs,
    pub asns_in_db: usize,
    pub asns_listed: usize,
    pub list_prefixes: usize,
    /// Kernel bytes of the IPv4 and IPv6 tables, country-only and combined.
    pub bytes_countries: (usize, usize),
    pub bytes_combined: (usize, usize),
    /// Compiling and installing the combined tables (the embedded ASN database already read).
    pub combined_load_s: f64,
    /// In-process, median: list one more ASN and swap the policy (both families' nets of it),
    /// and switch a list (a policy swap).
    pub asn_block_ms: f64,
    pub list_switch_ms: f64,
    pub sources: usize,
}

/// `n` distinct /24 (IPv4) or /48 (IPv6) blocks drawn from the database, as merged ranges.
fn random_blocks(world: &World, family: Family, n: usize, rng: &mut Rng) -> Vec<(u128, u128)> {
    let host = if family == Family::V4 { 8 } else { 80 };
    let mut set: BTreeSet<u128> = BTreeSet::new();
    for s in world.sources(family, n, rng, |_| true) {
        set.insert(s >> host << host);
    }
    set.into_iter()
        .map(|start| (start, start | ((1u128 << host) - 1)))
        .collect()
}

pub fn run(
    world: &World,
    bench: &mut Bench,
    n_sources: usize,
    rounds: usize,
    repeat: u32,
) -> Results {
    let asns = asn::embedded::load().expect("the embedded ASN database");
    let mut rng = Rng(0x6e65_7473);
    // A FireHOL-level-1-sized drop list and a small pass list.
    let drop_v4 = random_blocks(world, Family::V4, 4_500, &mut rng);
    let drop_v6 = random_blocks(world, Family::V6, 500, &mut rng);
    let pass_v4 = random_blocks(world, Family::V4, 100, &mut rng);
    let lists = [
        ListRanges {
            slot: 0,
            v4: &drop_v4,
            v6: &drop_v6,
        },
        ListRanges {
            slot: 1,
            v4: &pass_v4,
            v6: &[],
        },
    ];
    let country_policy = DesiredPolicy {
        countries: world.blocked.clone(),
        ..Default::default()
    };
    // The 100 ASNs with the most ranges: many packets come from them.
    let mut by_ranges: BTreeMap<u32, usize> = BTreeMap::new();
    for r in asns.v4.iter().chain(&asns.v6) {
        *by_ranges.entry(r.asn).or_default() += 1;
    }
    let mut ranked: Vec<(usize, u32)> = by_ranges.iter().map(|(&a, &n)| (n, a)).collect();
    ranked.sort_unstable_by(|a, b| b.cmp(a));
    let full_policy = DesiredPolicy {
        asns: ranked.iter().take(100).map(|&(_, a)| a).collect(),
        ..country_policy.clone()
    };

    let mut countries = Datapath::load().expect("loading geofilter");
    countries
        .install_tables(&world.db.v4, &world.db.v6)
        .expect("country tables");
    countries
        .set_policy(&countries.compile_policy(&country_policy))
        .expect("policy");
    let mut combined = Datapath::load().expect("loading geofilter");
    let start = Instant::now();
    let (t4, t6) = nets::inputs(&world.db, Some(&asns), &lists).expect("nets");
    combined.install_inputs(&t4, &t6).expect("combined tables");
    let combined_load_s = start.elapsed().as_secs_f64();
    combined
        .set_policy(&combined.compile_policy(&country_policy))
        .expect("policy");
    let mut full = Datapath::load().expect("loading geofilter");
    full.install_inputs(&t4, &t6).expect("combined tables");
    full.list_asns(&full_policy.asns).expect("listing ASNs");
    full.set_list_masks(ListMasks { drop: 1, pass: 2 });
    full.set_policy(&full.compile_policy(&full_policy))
        .expect("policy");

    let fd = |dp: &Datapath| dp.program().fd().expect("fd").try_clone().expect("dup");
    let (countries_fd, combined_fd, full_fd) = (fd(&countries), fd(&combined), fd(&full));
    let floor_fd = bench
        .program(names::FLOOR_PROGRAM)
        .fd()
        .expect("floor fd")
        .try_clone()
        .expect("dup");
    let mut costs = [Costs::default(); 2];
    for (slot, family) in [Family::V4, Family::V6].into_iter().enumerate() {
        let sources = world.sources(family, n_sources, &mut rng, |_| true);
        bench.configure(family, &sources, 0);
        bench.use_first(sources.len());
        let frame = udp_frame(family, [2, 0, 0, 0, 0, 2], [2, 0, 0, 0, 0, 1]);
        for fd in [&floor_fd, &countries_fd, &combined_fd, &full_fd] {
            bench.run(fd, &frame, repeat / 4);
        }
        let mut samples: [Vec<f64>; 4] = Default::default();
        for _ in 0..rounds {
            for (fd, s) in [&floor_fd, &countries_fd, &combined_fd, &full_fd]
                .into_iter()
                .zip(&mut samples)
            {
                s.push(bench.run(fd, &frame, repeat));
            }
        }
        let [floor, c, m, f] = samples.map(median);
        costs[slot] = Costs {
            floor,
            countries: c,
            combined: m,
            full_policy: f,
        };
        eprintln!("bench: nets {family:?}: {:?}", costs[slot]);
    }

    // The kernel side of a change: one more ASN listed and the policy swapped; a list switched.
    let extra = ranked[100].1;
    let mut block = Vec::new();
    let mut switch = Vec::new();
    for i in 0..40 {
        let mut policy = full_policy.clone();
        if i % 2 == 0 {
            policy.asns.insert(extra);
        }
        let start = Instant::now();
        full.list_asns(&policy.asns).expect("list");
        full.set_policy(&full.compile_policy(&policy))
            .expect("policy");
        full.unlist_asns(&policy.asns).expect("unlist");
        block.push(start.elapsed().as_secs_f64() * 1e3);
        let start = Instant::now();
        full.set_list_masks(ListMasks {
            drop: (i % 2 == 0).into(),
            pass: 2,
        });
        full.set_policy(&full.compile_policy(&policy))
            .expect("policy");
        switch.push(start.elapsed().as_secs_f64() * 1e3);
    }
    Results {
        v4: costs[0],
        v6: costs[1],
        asns_in_db: by_ranges.len(),
        asns_listed: full_policy.asns.len(),
        list_prefixes: drop_v4.len() + drop_v6.len() + pass_v4.len(),
        bytes_countries: countries.table_bytes(),
        bytes_combined: combined.table_bytes(),
        combined_load_s,
        asn_block_ms: median(block),
        list_switch_ms: median(switch),
        sources: n_sources,
    }
}

/// The section as text.
pub fn print(r: &Results) {
    let mib = |b: usize| b as f64 / (1024.0 * 1024.0);
    println!(
        "nets: ns/packet at {} sources, the world with the embedded ASN database ({} ASNs) and \
         two lists ({} blocks) compiled in; full policy: {} ASNs listed, both lists on",
        r.sources, r.asns_in_db, r.list_prefixes, r.asns_listed
    );
    println!(
        "          {:>8} {:>10} {:>10} {:>12} {:>18} {:>18}",
        "floor", "countries", "combined", "full policy", "full/countries", "over floor: full/c"
    );
    for (name, c) in [("IPv4", r.v4), ("IPv6", r.v6)] {
        println!(
            "  {name:<6} {:>8.0} {:>10.0} {:>10.0} {:>12.0} {:>17.2}x {:>17.2}x",
            c.floor,
            c.countries,
            c.combined,
            c.full_policy,
            c.ratio(),
            c.ratio_over_floor()
        );
    }
    println!(
        "  tables: countries {:.1} + {:.1} MiB, combined {:.1} + {:.1} MiB (IPv4 + IPv6); \
         combined compile + load {:.2} s",
        mib(r.bytes_countries.0),
        mib(r.bytes_countries.1),
        mib(r.bytes_combined.0),
        mib(r.bytes_combined.1),
        r.combined_load_s
    );
    println!(
        "  kernel side of a change (median of 40): ASN block {:.3} ms, list switch {:.3} ms",
        r.asn_block_ms, r.list_switch_ms
    );
    let worst = r.v4.ratio().max(r.v6.ratio());
    println!(
        "  target (issue 14): full policy <= 1.5x the country-only cost per packet: {:.2}x, {}",
        worst,
        if worst <= 1.5 { "met" } else { "NOT met" }
    );
}

/// The section's JSON fields.
pub fn json(r: &Results) -> String {
    let family = |c: &Costs| {
        serde_json::json!({
            "floor_ns": c.floor,
            "countries_ns": c.countries,
            "combined_ns": c.combined,
            "full_policy_ns": c.full_policy,
        })
    };
    serde_json::json!({
        "ipv4": family(&r.v4),
        "ipv6": family(&r.v6),
        "asns_listed": r.asns_listed,
        "list_prefixes": r.list_prefixes,
        "tables": {
            "countries_ipv4_bytes": r.bytes_countries.0,
            "countries_ipv6_bytes": r.bytes_countries.1,
            "combined_ipv4_bytes": r.bytes_combined.0,
            "combined_ipv6_bytes": r.bytes_combined.1,
        },
        "combined_load_s": r.combined_load_s,
        "asn_block_ms": r.asn_block_ms,
        "list_switch_ms": r.list_switch_ms,
    })
    .to_string()
}
