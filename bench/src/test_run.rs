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

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, MapData, ProgramArray},
    programs::{ProgramFd, TestRun, TestRunOptions, Xdp},
};
use geofilter_common::{
    bench::{self as names, BenchConfig, MAX_SOURCES},
    events::EventConfig,
};
use geofilter_daemon::datapath::{
    Datapath,
    events::DEFAULT_RATE,
    variants::{BENCH_OBJECT, LpmDatapath},
};
use geofilter_tests::{frame, rng::Rng};

use crate::data::{Family, World, source_bytes};

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

/// The benchmark object, loaded: its programs and the maps the driver reads.
pub struct Bench {
    pub ebpf: Ebpf,
    /// What the config map holds.
    config: BenchConfig,
    /// Sources written to the source map by the last [`Self::configure`].
    loaded: usize,
}

impl Bench {
    pub fn load() -> Self {
        assert!(
            !BENCH_OBJECT.is_empty(),
            "the benchmark programs were not built (bpf-linker missing at build time)"
        );
        let mut ebpf = EbpfLoader::new()
            .load(BENCH_OBJECT)
            .expect("loading the benchmark object");
        for name in [
            names::FLOOR_PROGRAM,
            names::DROP_PROGRAM,
            names::DRIVER_PROGRAM,
            names::GENERATOR_PROGRAM,
        ] {
            let program: &mut Xdp = ebpf
                .program_mut(name)
                .unwrap_or_else(|| panic!("program {name} missing"))
                .try_into()
                .expect("an XDP program");
            program
                .load()
                .unwrap_or_else(|e| panic!("loading {name}: {e}"));
        }
        Self {
            ebpf,
            config: BenchConfig::default(),
            loaded: 0,
        }
    }

    pub fn program(&self, name: &str) -> &Xdp {
        self.ebpf
            .program(name)
            .and_then(|p| p.try_into().ok())
            .expect("loaded in Bench::load")
    }

    pub fn program_mut(&mut self, name: &str) -> &mut Xdp {
        self.ebpf
            .program_mut(name)
            .and_then(|p| p.try_into().ok())
            .expect("loaded in Bench::load")
    }

    /// Sets the sources the driver and the generator take round-robin, and where the generator
    /// sends frames.
    pub fn configure(&mut self, family: Family, sources: &[u128], ifindex: u32) {
        assert!(
            !sources.is_empty() && sources.len() <= MAX_SOURCES as usize,
            "{} sources: the source map holds 1 to {MAX_SOURCES}",
            sources.len()
        );
        let mut array: Array<&mut MapData, [u8; 16]> = self
            .ebpf
            .map_mut(names::SOURCES)
            .expect("source map")
            .try_into()
            .expect("an array");
        for (i, &addr) in sources.iter().enumerate() {
            array
                .set(i as u32, source_bytes(family, addr), 0)
                .expect("writing a source");
        }
        self.loaded = sources.len();
        self.config = BenchConfig {
            sources: sources.len() as u32,
            address_len: match family {
                Family::V4 => 4,
                Family::V6 => 16,
            },
            ifindex,
            _reserved: 0,
        };
        self.write_config();
    }

    /// Makes the driver take only the first `n` of the configured sources. The per-CPU index
    /// may point past `n` for one more packet, which then wraps it to 0.
    fn use_first(&mut self, n: usize) {
        assert!(
            (1..=self.loaded).contains(&n),
            "{n} sources asked for, {} written",
            self.loaded
        );
        self.config.sources = n as u32;
        self.write_config();
    }

    fn write_config(&mut self) {
        let mut config: Array<&mut MapData, BenchConfig> = self
            .ebpf
            .map_mut(names::CONFIG)
            .expect("config map")
            .try_into()
            .expect("an array");
        config.set(0, self.config, 0).expect("writing the config");
    }

    /// Makes the driver tail-call `target`.
    fn target(&mut self, target: &ProgramFd) {
        let mut slot: ProgramArray<&mut MapData> = self
            .ebpf
            .map_mut(names::TARGET)
            .expect("target map")
            .try_into()
            .expect("a program array");
        slot.set(0, target, 0)
            .expect("setting the tail-call target");
    }

    /// Mean ns per run of the driver (and `target`) over `repeat` runs.
    fn run(&mut self, target: &ProgramFd, frame: &[u8], repeat: u32) -> f64 {
        self.target(target);
        let driver = self.program(names::DRIVER_PROGRAM);
        let result = driver
            .test_run(TestRunOptions {
                data_in: Some(frame),
                repeat,
                ..TestRunOptions::new()
            })
            .expect("BPF_PROG_TEST_RUN of the driver");
        // XDP_ABORTED means the driver could not write a source or tail-call.
        assert_ne!(result.return_value, 0, "the benchmark driver aborted");
        result.duration.as_nanos() as f64
    }
}

/// A UDP frame of `family` whose source the driver overwrites.
pub fn udp_frame(family: Family, dst_mac: [u8; 6], src_mac: [u8; 6]) -> Vec<u8> {
    let ip = match family {
        Family::V4 => frame::ipv4(
            "192.0.2.1".parse().unwrap(),
            "10.200.0.2".parse().unwrap(),
            frame::IPPROTO_UDP,
            &frame::udp(b"geofilter"),
            frame::Ipv4Opts::default(),
        ),
        Family::V6 => frame::ipv6(
            "2001:db8::1".parse().unwrap(),
            "fd00:200::2".parse().unwrap(),
            frame::IPPROTO_UDP,
            &frame::udp(b"geofilter"),
        ),
    };
    let ether_type = match family {
        Family::V4 => frame::ETH_P_IP,
        Family::V6 => frame::ETH_P_IPV6,
    };
    let mut f = Vec::with_capacity(14 + ip.len());
    f.extend_from_slice(&dst_mac);
    f.extend_from_slice(&src_mac);
    f.extend_from_slice(&ether_type.to_be_bytes());
    f.extend_from_slice(&ip);
    f
}

fn median(mut v: Vec<f64>) -> f64 {
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
