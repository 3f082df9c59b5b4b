//! `live`: packets per second dropped on a veth pair, generated in the kernel.
//!
//! The generator (the benchmark object's `bench_generator`) runs with
//! `BPF_F_TEST_XDP_LIVE_FRAMES` in the client namespace: every frame gets the next source from
//! the blocked countries (and, for IPv4, a fresh header checksum), and is redirected out of the
//! client's veth. It arrives at the server's veth, where one receiver at a time drops it:
//! geofilter (the real daemon, native XDP), the LPM-trie variant (native XDP), nftables (an
//! interval set at netdev ingress) or iptables with an ipset `hash:net` (raw PREROUTING). For the
//! last two the server's veth has GRO on, which gives it the NAPI instance redirected frames need
//! (drivers/net/veth.c, `veth_xdp_xmit`), and frames become socket buffers there.
//!
//! Rows: IPv4 and IPv6 frames from [`crate::data::SOURCES`] blocked sources, and the flood:
//! IPv4 frames from [`FLOOD_SOURCES`] distinct random blocked addresses, every one of them sent
//! in every measured run (see [`Generator::flood`]).
//!
//! The generator thread is pinned to CPU 0, and the receiver's NAPI poll runs on the CPU that
//! scheduled it, so each packet costs generation plus reception on one core: the figures compare
//! receivers side by side; they are not a NIC's line rate. The count is what the receiver itself
//! counted as dropped (its own counters), divided by the wall time of the generating syscall.

use std::time::{Duration, Instant};

use aya::{
    Ebpf,
    maps::PerCpuArray,
    programs::{TestRun, TestRunAttrs, TestRunOptions, Xdp, XdpMode, xdp::XdpLinkId},
};
use geofilter_common::{
    COUNTRY_SLOTS, Counter, Verdict, bench as names, country_counter_index, maps as map_names,
};
use geofilter_tests::{daemon::Daemon, netns::Pair};

use crate::{
    data::Family,
    harness::{Bench, udp_frame},
};

/// Live-frame batch size: the kernel's default (64), well inside veth's 256-frame ring.
const BATCH: u32 = 64;
/// Generated frames per measured run are sized for about this long...
const RUN_TIME: Duration = Duration::from_millis(1500);
/// ...within these bounds.
const MIN_PACKETS: u32 = 200_000;
const MAX_PACKETS: u32 = 30_000_000;

/// Distinct sources of the flood row: the source map's capacity, 1,048,576 (issue 12 asks for at
/// least a million).
pub const FLOOD_SOURCES: usize = names::MAX_SOURCES as usize;
const _: () = assert!(FLOOD_SOURCES >= 1_000_000);

/// Frames of one family from one set of sources, out of the client's veth.
pub struct Generator<'a> {
    pair: &'a Pair,
    family: Family,
    sources: Vec<u128>,
    ifindex: u32,
    frame: Vec<u8>,
    /// Frames per measured run at least.
    min_packets: u32,
}

fn mac(text: &str) -> [u8; 6] {
    let mut out = [0u8; 6];
    for (o, part) in out.iter_mut().zip(text.split(':')) {
        *o = u8::from_str_radix(part, 16).expect("MAC byte");
    }
    out
}

impl<'a> Generator<'a> {
    /// A generator of `family` frames from `sources`, taken round-robin, to the server.
    pub fn new(pair: &'a Pair, family: Family, sources: Vec<u128>) -> Self {
        let ifname = std::ffi::CString::new(pair.client_if.clone()).expect("ifname");
        let ifindex = pair.client.run_in(|| {
            // SAFETY: a valid NUL-terminated name.
            unsafe { libc::if_nametoindex(ifname.as_ptr()) }
        });
        assert_ne!(ifindex, 0, "no interface {}", pair.client_if);
        // Any unicast source MAC will do; the destination must be the server's, or its stack
        // discards the frame as PACKET_OTHERHOST before netfilter sees it. The destination
        // address is the server's too (`udp_frame`), so the stack (iptables) sees a packet for
        // this host.
        let frame = udp_frame(family, mac(pair.server_mac()), [0x02, 0, 0, 0, 0xbe, 0x01]);
        Self {
            pair,
            family,
            sources,
            ifindex,
            frame,
            min_packets: MIN_PACKETS,
        }
    }

    /// A generator whose every measured run sends each of its `sources` at least once: a run is
    /// at least as many frames as there are sources, and the generator takes them round-robin.
    /// The sources are distinct (asserted here), so a run's distinct sources are exactly
    /// `sources.len()`.
    pub fn flood(pair: &'a Pair, family: Family, sources: Vec<u128>) -> Self {
        let distinct: std::collections::HashSet<u128> = sources.iter().copied().collect();
        assert_eq!(distinct.len(), sources.len(), "flood sources repeat");
        let min_packets = u32::try_from(sources.len())
            .expect("sources fit the map")
            .max(MIN_PACKETS);
        Self {
            min_packets,
            ..Self::new(pair, family, sources)
        }
    }

    /// Distinct sources this generator draws from.
    pub fn distinct_sources(&self) -> usize {
        self.sources.len()
    }

    /// Sends `count` frames; returns the wall time of the generating syscall.
    fn send(&self, bench: &Bench, count: u32) -> Duration {
        let generator = bench.program(names::GENERATOR_PROGRAM);
        let frame = &self.frame;
        self.pair.client.run_in(|| {
            pin_to_cpu(0);
            let start = Instant::now();
            // Live mode reports no verdict; the receiver's counters show what arrived.
            generator
                .test_run(TestRunOptions {
                    data_in: Some(frame),
                    repeat: count,
                    attrs: TestRunAttrs::new().xdp_live_frames(BATCH),
                    ..TestRunOptions::new()
                })
                .expect("BPF_PROG_TEST_RUN with live frames");
            start.elapsed()
        })
    }

    /// Median drop rate (packets per second) over `runs` runs, counting drops with `dropped`.
    /// Writes this generator's sources and frame target into the benchmark maps first.
    pub fn measure(
        &self,
        bench: &mut Bench,
        runs: usize,
        mut dropped: impl FnMut() -> u64,
    ) -> Rate {
        bench.configure(self.family, &self.sources, self.ifindex);
        // Calibrate the run length on a short run (which also warms everything up).
        let before = dropped();
        let elapsed = self.send(bench, MIN_PACKETS);
        settle();
        let seen = dropped() - before;
        assert!(
            seen > u64::from(MIN_PACKETS) / 2,
            "the receiver dropped only {seen} of {MIN_PACKETS} frames: is it filtering?"
        );
        let rate = seen as f64 / elapsed.as_secs_f64();
        let count = (rate * RUN_TIME.as_secs_f64())
            .clamp(f64::from(self.min_packets), f64::from(MAX_PACKETS)) as u32;
        let mut rates = Vec::new();
        let mut delivered = 0.0;
        for _ in 0..runs {
            let before = dropped();
            let elapsed = self.send(bench, count);
            settle();
            let seen = dropped() - before;
            delivered += seen as f64 / f64::from(count);
            rates.push(seen as f64 / elapsed.as_secs_f64());
        }
        rates.sort_by(f64::total_cmp);
        Rate {
            mpps: rates[rates.len() / 2] / 1e6,
            packets: count,
            dropped_share: delivered / runs as f64,
            distinct_sources: self.sources.len().min(count as usize),
        }
    }
}

#[derive(Clone, Copy, Debug, Default)]
pub struct Rate {
    pub mpps: f64,
    /// Frames generated per run.
    pub packets: u32,
    /// Share of generated frames the receiver counted as dropped (the rest were lost before it,
    /// e.g. on a full veth ring).
    pub dropped_share: f64,
    /// Distinct source addresses each run sent: the sources are distinct and taken round-robin,
    /// so a run of `packets` frames sends `min(sources, packets)` of them.
    pub distinct_sources: usize,
}

/// Lets the last batch's NAPI poll finish before reading counters.
fn settle() {
    std::thread::sleep(Duration::from_millis(20));
}

fn pin_to_cpu(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is valid; the calls only touch this thread's affinity.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        let rc = libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set);
        assert_eq!(
            rc,
            0,
            "sched_setaffinity: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// Packets the daemon counted as dropped, over all countries.
pub fn daemon_drops(daemon: &Daemon) -> u64 {
    let stats = daemon.cli_json(&["stats"]);
    stats["countries"]
        .as_array()
        .expect("countries array")
        .iter()
        .map(|c| c["drop"]["packets"].as_u64().unwrap_or(0))
        .sum()
}

/// Packets a geofilter-shaped object (the LPM-trie variant) counted as dropped.
pub fn program_drops(ebpf: &Ebpf) -> u64 {
    let counters: PerCpuArray<_, Counter> = ebpf
        .map(map_names::COUNTRY_COUNTERS)
        .expect("country counters")
        .try_into()
        .expect("a per-CPU array");
    (0..COUNTRY_SLOTS as u16)
        .map(|c| {
            counters
                .get(&country_counter_index(c, Verdict::Drop), 0)
                .expect("counter")
                .iter()
                .map(|v| v.packets)
                .sum::<u64>()
        })
        .sum()
}

/// Attaches `program` natively to the server's veth (detach it with the returned link).
pub fn attach(pair: &Pair, program: &mut Xdp) -> XdpLinkId {
    let iface = pair.server_if.clone();
    pair.server
        .run_in(|| program.attach(&iface, XdpMode::Driver))
        .expect("attaching natively to the server's veth")
}

/// Frames the server's veth counted as dropped by its XDP program (`ethtool -S`), for receivers
/// without counters of their own.
pub fn veth_xdp_drops(pair: &Pair) -> u64 {
    let out = pair
        .server
        .command("ethtool")
        .args(["-S", &pair.server_if])
        .output()
        .expect("ethtool -S");
    assert!(
        out.status.success(),
        "ethtool -S: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().split_once(':'))
        .filter(|(k, _)| k.starts_with("rx_queue_") && k.ends_with("_xdp_drops"))
        .map(|(_, v)| v.trim().parse::<u64>().unwrap_or(0))
        .sum()
}

/// Sum of the packet counters of every rule in the nftables benchmark table.
pub fn nft_drops(pair: &Pair) -> u64 {
    let out = pair
        .server
        .command("nft")
        .args(["-j", "list", "table", "netdev", crate::control::NFT_TABLE])
        .output()
        .expect("nft list");
    assert!(
        out.status.success(),
        "nft list: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("nft JSON");
    let mut total = 0;
    for item in json["nftables"].as_array().expect("nftables array") {
        for expr in item["rule"]["expr"].as_array().into_iter().flatten() {
            total += expr["counter"]["packets"].as_u64().unwrap_or(0);
        }
    }
    total
}

/// Packets dropped by the iptables/ip6tables raw PREROUTING rules (the `[packets:bytes]` of
/// `iptables-save -c`).
pub fn iptables_drops(pair: &Pair) -> u64 {
    let mut total = 0;
    for program in ["iptables-save", "ip6tables-save"] {
        let out = pair
            .server
            .command(program)
            .args(["-c", "-t", "raw"])
            .output()
            .expect("iptables-save");
        assert!(
            out.status.success(),
            "{program}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            if line.contains("-j DROP")
                && let Some(counts) = line.strip_prefix('[')
                && let Some((packets, _)) = counts.split_once(':')
            {
                total += packets.parse::<u64>().unwrap_or(0);
            }
        }
    }
    total
}
