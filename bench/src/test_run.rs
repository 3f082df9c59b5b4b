//! `test_run`: per-packet cost through BPF_PROG_TEST_RUN, a different source on every run.
//!
//! The harness is the benchmark object's driver program (`geofilter_common::bench`): run with a
//! large `repeat`, it writes the next of N source addresses into the frame and tail-calls the
//! program under test. The kernel reports the mean time per run. Every program (the parse-only
//! floor, the LPM-trie variant, geofilter) is measured through the same driver on the same frames
//! and sources, so the floor's figure holds the harness cost and the parse, and `program - floor`
//! is what the lookup, policy and counters add.
//!
//! N sweeps over [`SWEEP`] (issue 12: how the cost grows as sources stop fitting in the caches).
//! One draw of the largest N per family is written to the source map once; the N-source set is
//! its first N addresses (a random sample of N, since the draw is random), so switching N is one
//! write of the driver's config. Within each round every N and every program runs in turn, so
//! drift (frequency, other load) hits all of them alike; each result is the median of the
//! rounds.

use geofilter_common::{
    bench::{self as names, MAX_SOURCES},
    events::EventConfig,
};
use geofilter_daemon::datapath::{Datapath, events::DEFAULT_RATE, variants::LpmDatapath};
use geofilter_tests::rng::Rng;

use crate::{
    data::{Family, World},
    harness::{Bench, udp_frame},
};

/// Source counts of the sweep: one source (everything cached), the default, 65,536 (issue 12's
/// target row), and 2^20 (the source map's capacity: what a flood of spoofed sources looks like).
pub const SWEEP: [usize; 4] = [1, crate::data::SOURCES, 65_536, MAX_SOURCES as usize];

/// Nanoseconds per packet of the three programs, medians.
#[derive(Clone, Copy, Debug, Default)]
pub struct Lookups {
    pub floor: f64,
    pub lpm_trie: f64,
    pub geofilter: f64,
}

impl Lookups {
    /// What geofilter's lookup, policy and counters cost beyond the parse.
    pub fn geofilter_over_floor(&self) -> f64 {
        self.geofilter - self.floor
    }

    /// The same for the LPM-trie variant.
    pub fn lpm_over_floor(&self) -> f64 {
        self.lpm_trie - self.floor
    }
}

/// The programs at the default source count, and geofilter with a listener.
#[derive(Clone, Copy, Debug, Default)]
pub struct Costs {
    pub lookups: Lookups,
    /// geofilter while a `log --follow` client listens (drop events on, default rate limit).
    pub listening: f64,
}

/// One source count of the sweep.
#[derive(Clone, Copy, Debug)]
pub struct Point {
    pub sources: usize,
    pub v4: Lookups,
    pub v6: Lookups,
}

pub struct Results {
    /// At `sources` (the figures the JSON has always had).
    pub v4: Costs,
    pub v6: Costs,
    /// Every source count of the sweep, ascending (`sources` among them).
    pub by_sources: Vec<Point>,
    pub rounds: usize,
    pub repeat: u32,
    pub sources: usize,
}

impl Results {
    /// The sweep's point at `sources`, if it was measured.
    pub fn at(&self, sources: usize) -> Option<&Point> {
        self.by_sources.iter().find(|p| p.sources == sources)
    }
}

/// The sweep's source counts with `default` among them, ascending.
pub fn sweep(default: usize) -> Vec<usize> {
    let mut out: Vec<usize> = SWEEP.iter().copied().chain([default]).collect();
    out.sort_unstable();
    out.dedup();
    out
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// What the daemon writes while a follower is connected, at the default rate.
const LISTENING: EventConfig = EventConfig {
    listeners: 1,
    ..EventConfig::limit(DEFAULT_RATE, DEFAULT_RATE)
};

fn listen(geofilter: &mut Datapath, config: &EventConfig) {
    geofilter
        .events_mut()
        .expect("event maps")
        .configure(config)
        .expect("event config");
}

/// Medians of one program's rounds, per point of the sweep.
#[derive(Default)]
struct Samples {
    floor: Vec<f64>,
    lpm_trie: Vec<f64>,
    geofilter: Vec<f64>,
}

impl Samples {
    fn medians(self) -> Lookups {
        Lookups {
            floor: median(self.floor),
            lpm_trie: median(self.lpm_trie),
            geofilter: median(self.geofilter),
        }
    }
}

/// Measures all three programs at every source count of [`sweep`]`(n_sources)`, and geofilter
/// with a listener at `n_sources`; fills `lpm` with the database and the policy on the way (the
/// live section reuses it).
pub fn run(
    world: &World,
    bench: &mut Bench,
    lpm: &mut LpmDatapath,
    n_sources: usize,
    rounds: usize,
    repeat: u32,
) -> Results {
    let policy = crate::policy(world);
    let mut geofilter = Datapath::load().expect("loading geofilter");
    geofilter
        .install_tables(&world.db.v4, &world.db.v6)
        .expect("installing geofilter's tables");
    geofilter.set_policy(&policy).expect("geofilter policy");
    lpm.install_tables(&world.db.v4, &world.db.v6)
        .expect("installing the LPM tries");
    lpm.set_policy(&policy).expect("LPM policy");

    let floor_fd = bench
        .program(names::FLOOR_PROGRAM)
        .fd()
        .expect("floor fd")
        .try_clone()
        .expect("dup");
    let lpm_fd = lpm.program().fd().expect("fd").try_clone().expect("dup");
    let geofilter_fd = geofilter
        .program()
        .fd()
        .expect("fd")
        .try_clone()
        .expect("dup");

    let counts = sweep(n_sources);
    let largest = *counts.last().expect("a non-empty sweep");
    let mut rng = Rng(0x6765_6f66_696c_7465);
    let mut costs = [Costs::default(); 2];
    let mut lookups: Vec<[Lookups; 2]> = vec![Default::default(); counts.len()];
    for (slot, family) in [Family::V4, Family::V6].into_iter().enumerate() {
        let sources = world.sources(family, largest, &mut rng, |_| true);
        assert_eq!(
            sources.len(),
            largest,
            "the {family:?} database has too few distinct addresses for the sweep"
        );
        bench.configure(family, &sources, 0);
        let frame = udp_frame(family, [2, 0, 0, 0, 0, 2], [2, 0, 0, 0, 0, 1]);
        // One untimed pass each to warm caches and the branch predictors alike.
        for fd in [&floor_fd, &lpm_fd, &geofilter_fd] {
            bench.run(fd, &frame, repeat / 4);
        }
        let mut samples: Vec<Samples> = counts.iter().map(|_| Samples::default()).collect();
        let mut listening = Vec::new();
        for _ in 0..rounds {
            for (&n, s) in counts.iter().zip(&mut samples) {
                bench.use_first(n);
                s.floor.push(bench.run(&floor_fd, &frame, repeat));
                s.lpm_trie.push(bench.run(&lpm_fd, &frame, repeat));
                s.geofilter.push(bench.run(&geofilter_fd, &frame, repeat));
                if n == n_sources {
                    // The same program with a listener: drops take the event path (the bucket
                    // check on each, the ring buffer for the few the rate lets through). Nobody
                    // reads the ring; once full, reserving fails and the event is lost, which
                    // costs about what success does.
                    listen(&mut geofilter, &LISTENING);
                    listening.push(bench.run(&geofilter_fd, &frame, repeat));
                    listen(&mut geofilter, &EventConfig::default());
                }
            }
        }
        for ((&n, s), point) in counts.iter().zip(samples).zip(&mut lookups) {
            point[slot] = s.medians();
            eprintln!("bench: test_run {family:?}, {n} sources: {:?}", point[slot]);
            if n == n_sources {
                costs[slot] = Costs {
                    lookups: point[slot],
                    listening: median(std::mem::take(&mut listening)),
                };
            }
        }
    }
    Results {
        v4: costs[0],
        v6: costs[1],
        by_sources: counts
            .iter()
            .zip(lookups)
            .map(|(&sources, [v4, v6])| Point { sources, v4, v6 })
            .collect(),
        rounds,
        repeat,
        sources: n_sources,
    }
}

#[cfg(test)]
mod tests {
    /// The counts issue 12 names are all measured, once each, ascending, the default among them.
    #[test]
    fn sweep_covers_the_issue_counts() {
        let counts = super::sweep(crate::data::SOURCES);
        assert_eq!(counts, [1, 16_384, 65_536, 1_048_576]);
        assert_eq!(super::sweep(5), [1, 5, 16_384, 65_536, 1_048_576]);
    }
}
