//! `fleet` (issue 13): daemons following one policy source over HTTP, in the test topology
//! (tests/src/fleet.rs: one pair per host, a hub namespace holding the source, a link per host).
//!
//! - **Convergence**: for 1, 10 and 50 hosts at `--policy-interval 2`, a document change is
//!   published and every host's program is probed with real datagrams until it enforces it; a
//!   round's figure is the slowest host's time, the row's the median of the rounds. Each change
//!   is published at a random phase of the polls (fixed seed). Polling dominates the figure: one
//!   host waits half an interval on average, the slowest of many close to a whole interval (plus
//!   its 10 % jitter).
//! - **Idle cost**: with nothing changing, the 10-host fleet polls for a while at the short
//!   interval; the source's counts give the requests (all `304`) and the hub's link counters the
//!   bytes each exchange takes on the wire (request, response, TCP handshake and teardown). Scaled
//!   to the default 30 s interval: requests per host per hour = measured rate × 2 / 30 × 3600.
//!
//! Every host uses the small test database (scenario.rs, six ranges), not the world one: 50
//! daemons each compiling the world database would measure memory, not the fleet; each daemon's
//! peak memory and BPF map memory are reported.

use std::time::{Duration, Instant};

use geofilter_tests::{
    fleet::{Fleet, POLICY_PATH, assert_all_enforce, converge, document, source_dbs},
    rng::Rng,
    scenario::{DE_V4, RU_V4, ip},
};

use crate::report::mib;

/// The poll interval of these runs (issue 13's acceptance line uses 2 s).
pub const INTERVAL_S: u64 = 2;
/// The daemon's default interval (SPEC-13), at which the idle cost is stated.
pub const DEFAULT_INTERVAL_S: u64 = 30;
pub const SIZES: [usize; 3] = [1, 10, 50];
/// The fleet size whose idle polls are counted.
const IDLE_HOSTS: usize = 10;
/// How long a probe waits for a host before the run fails (far past any interval).
const PROBE_LIMIT: Duration = Duration::from_secs(30);

pub struct Convergence {
    pub hosts: usize,
    /// Per round, the slowest host's time from publishing to enforcing.
    pub rounds: Vec<Duration>,
    /// The daemons' mean peak resident memory (`VmHWM`) at the end, in bytes.
    pub peak_rss: u64,
    /// One daemon's BPF maps (the kernel's `memlock` of each), in bytes.
    pub kernel_bytes: u64,
}

impl Convergence {
    pub fn median(&self) -> Duration {
        let mut sorted = self.rounds.clone();
        sorted.sort();
        sorted[sorted.len() / 2]
    }

    pub fn worst(&self) -> Duration {
        self.rounds.iter().max().copied().unwrap_or_default()
    }
}

/// What the source saw while nothing changed.
#[derive(Clone, Copy, Debug, Default)]
pub struct Idle {
    pub hosts: usize,
    pub seconds: f64,
    pub requests: u64,
    /// Of which `304 Not Modified`.
    pub not_modified: u64,
    /// HTTP bytes, requests and responses.
    pub http_bytes: u64,
    /// Bytes on the hub's links, both directions.
    pub wire_bytes: u64,
}

impl Idle {
    pub fn requests_per_host_s(&self) -> f64 {
        self.requests as f64 / self.hosts as f64 / self.seconds
    }

    /// At the default interval: the measured rate × [`INTERVAL_S`] / [`DEFAULT_INTERVAL_S`] ×
    /// 3600.
    pub fn requests_per_host_hour(&self) -> f64 {
        self.requests_per_host_s() * INTERVAL_S as f64 / DEFAULT_INTERVAL_S as f64 * 3600.0
    }

    pub fn http_bytes_per_request(&self) -> f64 {
        self.http_bytes as f64 / self.requests as f64
    }

    pub fn wire_bytes_per_request(&self) -> f64 {
        self.wire_bytes as f64 / self.requests as f64
    }

    /// Requests per host per hour × the wire bytes of one exchange.
    pub fn bytes_per_host_hour(&self) -> f64 {
        self.requests_per_host_hour() * self.wire_bytes_per_request()
    }
}

pub struct Results {
    pub converge: Vec<Convergence>,
    pub idle: Idle,
}

fn say(msg: &str) {
    eprintln!("bench: fleet: {msg}");
}

/// Every size in [`SIZES`], `rounds` changes each; the idle count lasts `idle_for`.
pub fn run(rounds: usize, idle_for: Duration) -> Results {
    let mut converge = Vec::new();
    let mut idle = Idle::default();
    for hosts in SIZES {
        let (c, i) = one_fleet(hosts, rounds, (hosts == IDLE_HOSTS).then_some(idle_for));
        converge.push(c);
        idle = i.unwrap_or(idle);
    }
    Results { converge, idle }
}

fn one_fleet(
    hosts: usize,
    rounds: usize,
    idle_for: Option<Duration>,
) -> (Convergence, Option<Idle>) {
    let (ru, de) = (ip(RU_V4), ip(DE_V4));
    let began = Instant::now();
    let fleet = Fleet::new(hosts, &[ru, de]);
    let source = fleet.source();
    let dbs = source_dbs(&source);
    let (deny_ru, deny_de) = (document(&["RU"], &dbs), document(&["DE"], &dbs));
    source.publish(POLICY_PATH, deny_ru.as_str());
    let interval = INTERVAL_S.to_string();
    let daemons = fleet.start_daemons(&source, &["--policy-interval", &interval]);
    let mut probes = fleet.probes(&[ru, de]);
    say(&format!(
        "{hosts} daemons ready in {:.1} s",
        began.elapsed().as_secs_f64()
    ));
    assert_all_enforce(&mut probes, &[de], &[ru], "the first revision (deny RU)");

    let mut times = Vec::with_capacity(rounds);
    // A fixed seed: runs compare.
    let mut rng = Rng(0x0066_6c65_6574);
    for round in 0..rounds {
        // Publish at a random phase of the polls: straight after a convergence, every daemon has
        // just polled, and each round would measure a whole interval.
        let phase = rng.below(INTERVAL_S * 1000);
        std::thread::sleep(Duration::from_millis(phase));
        // Alternate, so each round is a change: the newly passing source is the sign.
        let (doc, passing) = if round % 2 == 0 {
            (&deny_de, ru)
        } else {
            (&deny_ru, de)
        };
        let since = Instant::now();
        source.publish(POLICY_PATH, doc.as_str());
        let per_host = converge(&mut probes, passing, since, PROBE_LIMIT);
        let slowest = per_host
            .iter()
            .enumerate()
            .map(|(k, t)| {
                t.unwrap_or_else(|| {
                    panic!(
                        "{hosts} hosts, round {round}: host {k} never enforced the change; its \
                         log:\n{}",
                        daemons[k].log()
                    )
                })
            })
            .max()
            .expect("hosts");
        say(&format!(
            "{hosts} hosts, round {round}: all within {} ms",
            slowest.as_millis()
        ));
        times.push(slowest);
    }
    let peak_rss = daemons.iter().map(|d| d.peak_rss_bytes()).sum::<u64>() / hosts as u64;
    let kernel_bytes = crate::control::kernel_memory(&daemons[0])
        .iter()
        .map(|m| m.bytes)
        .sum();

    let idle = idle_for.map(|duration| {
        // Let every daemon's last fetch of the change finish before counting.
        std::thread::sleep(Duration::from_secs(2 * INTERVAL_S));
        let wire = |fleet: &Fleet| -> u64 {
            fleet
                .hosts
                .iter()
                .map(|h| {
                    let (rx, tx) = h.link_bytes(&fleet.hub);
                    rx + tx
                })
                .sum()
        };
        source.reset_counts();
        let (start, wire_before) = (Instant::now(), wire(&fleet));
        std::thread::sleep(duration);
        let wire_bytes = wire(&fleet) - wire_before;
        let seconds = start.elapsed().as_secs_f64();
        let counts = source.counts();
        let total = |f: fn(&geofilter_tests::policy_server::Count) -> u64| -> u64 {
            counts.values().map(f).sum()
        };
        Idle {
            hosts,
            seconds,
            requests: total(|c| c.requests),
            not_modified: counts.get(&304).map_or(0, |c| c.requests),
            http_bytes: total(|c| c.bytes_in + c.bytes_out),
            wire_bytes,
        }
    });
    (
        Convergence {
            hosts,
            rounds: times,
            peak_rss,
            kernel_bytes,
        },
        idle,
    )
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

pub fn print(r: &Results) {
    println!(
        "fleet: one policy source over HTTP (a hub namespace), each host on its own pair and link, \
         --policy-interval {INTERVAL_S}, the small test database on every host"
    );
    for c in &r.converge {
        println!(
            "  change enforced everywhere, {:>2} hosts {:>8.0} ms  (slowest host; median of {} \
             rounds, worst {:.0} ms; each daemon: peak {:.1} MiB, BPF maps {:.1} MiB)",
            c.hosts,
            ms(c.median()),
            c.rounds.len(),
            ms(c.worst()),
            mib(c.peak_rss),
            mib(c.kernel_bytes)
        );
    }
    let i = &r.idle;
    println!(
        "  idle: {} hosts for {:.0} s: {} requests ({} were 304), {:.3} per host per s; per \
         request {:.0} HTTP bytes, {:.0} bytes on the wire (with the TCP handshake)",
        i.hosts,
        i.seconds,
        i.requests,
        i.not_modified,
        i.requests_per_host_s(),
        i.http_bytes_per_request(),
        i.wire_bytes_per_request()
    );
    println!(
        "  at the default {DEFAULT_INTERVAL_S} s: {:.3}/s x {INTERVAL_S}/{DEFAULT_INTERVAL_S} x 3600 = \
         {:.0} requests per host per hour; x {:.0} bytes = {:.0} bytes ({:.1} KiB) per host per hour",
        i.requests_per_host_s(),
        i.requests_per_host_hour(),
        i.wire_bytes_per_request(),
        i.bytes_per_host_hour(),
        i.bytes_per_host_hour() / 1024.0
    );
    println!(
        "  1,000 hosts: {:.0} requests per hour ({:.1} per s), {:.1} MiB per hour",
        i.requests_per_host_hour() * 1000.0,
        i.requests_per_host_hour() * 1000.0 / 3600.0,
        i.bytes_per_host_hour() * 1000.0 / (1024.0 * 1024.0)
    );
}
