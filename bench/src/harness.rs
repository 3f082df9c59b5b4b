//! The benchmark object (`geofilter_common::bench`), loaded: the floor, the test_run driver and
//! the live-frame generator, and the maps that tell the last two which sources to write. Shared by
//! the `test_run` and `live` sections.

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, MapData, ProgramArray},
    programs::{ProgramFd, TestRun, TestRunOptions, Xdp},
};
use geofilter_common::bench::{self as names, BenchConfig, MAX_SOURCES};
use geofilter_daemon::datapath::variants::BENCH_OBJECT;
use geofilter_tests::frame;

use crate::data::{Family, source_bytes};

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
    pub fn use_first(&mut self, n: usize) {
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
    pub fn run(&mut self, target: &ProgramFd, frame: &[u8], repeat: u32) -> f64 {
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
