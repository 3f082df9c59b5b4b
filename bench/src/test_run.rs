//! `test_run`: per-packet cost through BPF_PROG_TEST_RUN, a different source on every run.
//!
//! The harness is the benchmark object's driver program (`geofilter_common::bench`): run with a
//! large `repeat`, it writes the next of a few thousand source addresses into the frame and
//! tail-calls the program under test. The kernel reports the mean time per run. Every program
//! (the parse-only floor, the LPM-trie variant, geofilter) is measured through the same driver
//! on the same frames and sources, so the floor's figure holds the harness cost and the parse,
//! and `program - floor` is what the lookup, policy and counters add. Programs alternate within
//! each round so drift (frequency, other load) hits all of them alike; the result is the median
//! of the rounds.

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, MapData, ProgramArray},
    programs::{ProgramFd, TestRun, TestRunOptions, Xdp},
};
use geofilter_common::{
    bench::{self as names, BenchConfig},
    events::EventConfig,
};
use geofilter_daemon::datapath::{
    Datapath,
    events::DEFAULT_RATE,
    variants::{BENCH_OBJECT, LpmDatapath},
};
use geofilter_tests::{frame, rng::Rng};

use crate::data::{Family, World, source_bytes};

/// Nanoseconds per packet, medians.
#[derive(Clone, Copy, Debug, Default)]
pub struct Costs {
    pub floor: f64,
    pub lpm_trie: f64,
    pub geofilter: f64,
    /// geofilter while a `log --follow` client listens (drop events on, default rate limit).
    pub listening: f64,
}

pub struct Results {
    pub v4: Costs,
    pub v6: Costs,
    pub rounds: usize,
    pub repeat: u32,
    pub sources: usize,
}

/// The benchmark object, loaded: its programs and the maps the driver reads.
pub struct Bench {
    pub ebpf: Ebpf,
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
        Self { ebpf }
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
        assert!(!sources.is_empty() && sources.len() <= names::MAX_SOURCES as usize);
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
        let mut config: Array<&mut MapData, BenchConfig> = self
            .ebpf
            .map_mut(names::CONFIG)
            .expect("config map")
            .try_into()
            .expect("an array");
        let bench = BenchConfig {
            sources: sources.len() as u32,
            address_len: match family {
                Family::V4 => 4,
                Family::V6 => 16,
            },
            ifindex,
            _reserved: 0,
        };
        config.set(0, bench, 0).expect("writing the config");
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

/// Measures all three programs; fills `lpm` with the database and the policy on the way (the
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

    let mut rng = Rng(0x6765_6f66_696c_7465);
    let mut out = [Costs::default(); 2];
    for (slot, family) in [Family::V4, Family::V6].into_iter().enumerate() {
        let sources = world.sources(family, n_sources, &mut rng, |_| true);
        bench.configure(family, &sources, 0);
        let frame = udp_frame(family, [2, 0, 0, 0, 0, 2], [2, 0, 0, 0, 0, 1]);
        // One untimed pass each to warm caches and the branch predictors alike.
        for fd in [&floor_fd, &lpm_fd, &geofilter_fd] {
            bench.run(fd, &frame, repeat / 4);
        }
        let (mut floor, mut trie, mut stride) = (Vec::new(), Vec::new(), Vec::new());
        let mut listening = Vec::new();
        for _ in 0..rounds {
            floor.push(bench.run(&floor_fd, &frame, repeat));
            trie.push(bench.run(&lpm_fd, &frame, repeat));
            stride.push(bench.run(&geofilter_fd, &frame, repeat));
            // The same program with a listener: drops take the event path (the bucket check on
            // each, the ring buffer for the few the rate lets through). Nobody reads the ring;
            // once full, reserving fails and the event is lost, which costs about what success
            // does.
            listen(&mut geofilter, &LISTENING);
            listening.push(bench.run(&geofilter_fd, &frame, repeat));
            listen(&mut geofilter, &EventConfig::default());
        }
        out[slot] = Costs {
            floor: median(floor),
            lpm_trie: median(trie),
            geofilter: median(stride),
            listening: median(listening),
        };
        eprintln!("bench: test_run {family:?}: {:?}", out[slot]);
    }
    Results {
        v4: out[0],
        v6: out[1],
        rounds,
        repeat,
        sources: n_sources,
    }
}
