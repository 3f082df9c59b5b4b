//! Shared definitions of the benchmark programs (`geofilter-bench` object; `cargo xtask bench`).
//!
//! Nothing here is used by the filter itself. The benchmark object holds three XDP programs:
//!
//! - [`FLOOR_PROGRAM`]: parses the frame exactly as the filter does, then passes it: the cost
//!   every filter pays before its lookup. [`DROP_PROGRAM`] is the same but drops: the fastest
//!   possible receiver of the live test.
//! - [`DRIVER_PROGRAM`]: run with `BPF_PROG_TEST_RUN` and a large `repeat`; each run writes the
//!   next source address from [`SOURCES`] into the frame and tail-calls the program under test
//!   in [`TARGET`] slot 0. Every measured program thus sees a different source on every run and
//!   pays the same harness cost, which subtracting the floor (run the same way) removes.
//! - [`GENERATOR_PROGRAM`]: run with `BPF_F_TEST_XDP_LIVE_FRAMES`; each frame gets the next
//!   source (and, for IPv4, a correct header checksum) and is redirected to
//!   [`BenchConfig::ifindex`].

/// `PROG_ARRAY[1]`: the program the driver tail-calls.
pub const TARGET: &str = "GF_BENCH_TARGET";
/// `ARRAY` of source addresses, `[u8; 16]` each (an IPv4 address in the first four bytes).
pub const SOURCES: &str = "GF_BENCH_SRC";
/// `ARRAY[1]` of [`BenchConfig`].
pub const CONFIG: &str = "GF_BENCH_CFG";
/// `PERCPU_ARRAY[1]` of `u32`: the index of the next source, per CPU.
pub const NEXT: &str = "GF_BENCH_NEXT";
/// Capacity of [`SOURCES`]: 2^20 sources, 16 MiB of kernel memory while the benchmark runs. Enough
/// for the largest test_run set and for the live flood of at least a million distinct sources
/// (issue 12); an `ARRAY`'s only size limit is its memory (kernel/bpf/arraymap.c,
/// `array_map_alloc_check`).
pub const MAX_SOURCES: u32 = 1 << 20;

pub const FLOOR_PROGRAM: &str = "bench_floor";
pub const DROP_PROGRAM: &str = "bench_drop";
pub const DRIVER_PROGRAM: &str = "bench_driver";
pub const GENERATOR_PROGRAM: &str = "bench_generator";

/// How the driver and the generator rewrite frames.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BenchConfig {
    /// Sources in use (`1..=MAX_SOURCES`); taken round-robin.
    pub sources: u32,
    /// 4 (IPv4 frames, source at byte 26) or 16 (IPv6 frames, source at byte 22).
    pub address_len: u32,
    /// Where the generator redirects frames.
    pub ifindex: u32,
    pub _reserved: u32,
}

/// Offset of the IPv4 source address in an untagged Ethernet frame.
pub const IPV4_SOURCE_OFFSET: usize = 14 + 12;
/// Offset of the IPv6 source address in an untagged Ethernet frame.
pub const IPV6_SOURCE_OFFSET: usize = 14 + 8;

const _: () = assert!(core::mem::size_of::<BenchConfig>() == 16);
