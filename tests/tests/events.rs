//! Tier 3: sampled drop events from the real program, through the real daemon, under a real
//! flood over veth: `geofilter log --follow`, `log`, `top`, and the kernel's rate limit.

use std::{
    io::{BufRead, BufReader},
    net::{SocketAddr, UdpSocket},
    process::{Child, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use geofilter_daemon::{
    control::protocol::{LogLine, TopReply},
    datapath::events::LoggedEvent,
};
use geofilter_tests::{
    daemon::Daemon,
    netns::{Netns, SERVER_V4},
    scenario::{DE_V4, RU_V4, Scene, ip},
    traffic::UDP_PORT,
};

/// Datagrams of a flood, sent as fast as the socket takes them, for at most [`FLOOD_MAX`].
const FLOOD: u64 = 20_000;
const FLOOD_MAX: Duration = Duration::from_secs(2);
const RATE: u64 = 50;
const BURST: u64 = 20;

/// Sends up to `count` datagrams from `source` to the server's UDP port, about `per_s` a second
/// (in bursts of 100), stopping at `max`; returns how many went out.
fn flood(client: &Netns, source: &str, count: u64, per_s: u64, max: Duration) -> u64 {
    let socket = client.run_in(|| UdpSocket::bind(SocketAddr::new(ip(source), 0)).expect("bind"));
    let target = SocketAddr::new(ip(SERVER_V4), UDP_PORT);
    let start = Instant::now();
    let mut sent = 0;
    while sent < count && start.elapsed() < max {
        // A full socket buffer (ENOBUFS) under a flood is expected: the packet is not sent.
        if socket.send_to(b"geofilter flood", target).is_ok() {
            sent += 1;
        }
        if sent % 100 == 0 {
            let due = Duration::from_secs_f64(sent as f64 / per_s as f64);
            std::thread::sleep(due.saturating_sub(start.elapsed()));
        }
    }
    sent
}

/// Fast enough to be a flood, slow enough that the flood lasts the bucket a while.
const FLOOD_PER_S: u64 = 10_000;

/// `geofilter log --follow --json` running, its lines read on a thread.
struct Follower {
    child: Child,
    lines: mpsc::Receiver<LogLine>,
}

impl Follower {
    /// Starts it and waits (at most 10 s) for its `started` line: from then on the program emits.
    fn start(daemon: &Daemon, extra: &[&str]) -> Self {
        let mut args = vec!["log", "--follow", "--json"];
        args.extend_from_slice(extra);
        let mut child = daemon
            .cli_command(&args)
            .stdout(Stdio::piped())
            .spawn()
            .expect("starting geofilter log --follow");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let parsed: LogLine = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("log --follow printed {line:?}: {e}"));
                if tx.send(parsed).is_err() {
                    break;
                }
            }
        });
        match lines.recv_timeout(Duration::from_secs(10)) {
            Ok(LogLine::Started(started)) => assert!(started.follow, "{started:?}"),
            other => panic!("log --follow did not start: {other:?}\n{}", daemon.log()),
        }
        Self { child, lines }
    }

    /// The events printed within `quiet` of each other, stopping the follower.
    fn finish(self, quiet: Duration) -> Vec<LoggedEvent> {
        let mut events = Vec::new();
        while let Ok(line) = self.lines.recv_timeout(quiet) {
            match line {
                LogLine::Event(event) => events.push(event),
                other => panic!("unexpected line while following: {other:?}"),
            }
        }
        events
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn possible_cpus() -> u64 {
    aya::util::nr_cpus().expect("reading the possible CPUs") as u64
}

fn run_flags() -> Vec<&'static str> {
    vec!["--block", "RU", "--event-rate", "50", "--event-burst", "20"]
}

#[test]
fn a_flood_gives_events_within_the_bucket_that_match_the_packets() {
    let s = Scene::new(&[RU_V4, DE_V4], &run_flags());
    let follower = Follower::start(&s.daemon, &[]);
    let start = Instant::now();
    let sent = flood(&s.pair.client, RU_V4, FLOOD, FLOOD_PER_S, FLOOD_MAX);
    // Passed traffic during the flood: no event unless asked (`--passed`).
    let passed = flood(&s.pair.client, DE_V4, 500, FLOOD_PER_S, FLOOD_MAX);
    let elapsed = start.elapsed();
    let events = follower.finish(Duration::from_millis(700));
    let dropped = s.daemon.packets("RU", "drop");
    assert!(
        dropped > 1000 && passed > 0,
        "the flood reached the filter: {dropped} of {sent} RU datagrams dropped, {passed} DE sent"
    );
    let cpus = possible_cpus();
    // Every CPU may spend its burst and `RATE` per second of the flood (timed here from before
    // the first datagram to after the last, so the kernel's span is shorter).
    let secs = elapsed.as_secs_f64();
    // (+1 a CPU: the event at the very start of its span.)
    let bound = (RATE as f64 * secs * cpus as f64) as u64 + (BURST + 1) * cpus;
    assert!(
        events.len() as u64 <= bound,
        "{} events for {dropped} drops in {elapsed:?} on {cpus} CPUs: over the bucket ({bound})",
        events.len()
    );
    // And the bucket refills: at least one CPU's burst and its rate over most of the flood.
    let floor = BURST + (RATE as f64 * (secs - 0.5)) as u64;
    assert!(
        events.len() as u64 >= floor,
        "only {} events for {dropped} drops in {elapsed:?}: fewer than {floor}",
        events.len()
    );
    for e in &events {
        assert_eq!(e.address, ip(RU_V4), "{e:?}");
        assert_eq!(
            (e.country.as_str(), e.protocol, e.port, e.verdict.as_str()),
            ("RU", 17, Some(UDP_PORT), "drop"),
            "{e:?}"
        );
        // The database's range 5.45.192.0-5.45.255.255 (`write_db`), as `why` names it.
        assert_eq!(e.prefix.as_deref(), Some("5.45.192.0/18"), "{e:?}");
    }
    println!(
        "events: {} for {dropped} drops of {sent} sent in {elapsed:?}, bound {bound}",
        events.len()
    );
}

#[test]
fn passed_traffic_has_events_only_when_asked() {
    let s = Scene::new(&[RU_V4, DE_V4], &run_flags());
    let follower = Follower::start(&s.daemon, &["--passed", "--country", "DE"]);
    flood(&s.pair.client, DE_V4, 200, FLOOD_PER_S, FLOOD_MAX);
    flood(&s.pair.client, RU_V4, 200, FLOOD_PER_S, FLOOD_MAX);
    let events = follower.finish(Duration::from_millis(700));
    assert!(
        !events.is_empty(),
        "no event for passed DE traffic with --passed"
    );
    for e in &events {
        assert_eq!(
            (e.address, e.country.as_str(), e.verdict.as_str()),
            (ip(DE_V4), "DE", "pass"),
            "--country DE --passed: {e:?}"
        );
    }
}

#[test]
fn nothing_is_recorded_while_nobody_listens() {
    let s = Scene::new(&[RU_V4], &run_flags());
    flood(&s.pair.client, RU_V4, 2000, FLOOD_PER_S, FLOOD_MAX);
    assert!(
        s.daemon.packets("RU", "drop") > 0,
        "the flood reached the filter"
    );
    let log = log_lines(&s.daemon, &["log"]);
    assert!(
        log.iter().all(|l| !matches!(l, LogLine::Event(_))),
        "events recorded with no listener and no --event-history: {log:?}"
    );
}

#[test]
fn history_serves_log_and_top_names_the_flooding_prefix() {
    let mut flags = run_flags();
    flags.push("--event-history");
    let s = Scene::new(&[RU_V4, DE_V4], &flags);
    flood(&s.pair.client, RU_V4, 5000, FLOOD_PER_S, FLOOD_MAX);
    std::thread::sleep(Duration::from_millis(300));
    let log = log_lines(&s.daemon, &["log"]);
    let events: Vec<&LoggedEvent> = log
        .iter()
        .filter_map(|l| match l {
            LogLine::Event(e) => Some(e),
            _ => None,
        })
        .collect();
    assert!(!events.is_empty(), "log kept no events: {log:?}");
    assert!(events.iter().all(|e| e.address == ip(RU_V4)), "{events:?}");
    let de_only = log_lines(&s.daemon, &["log", "--country", "DE"]);
    assert_eq!(
        de_only.len(),
        1,
        "only the started line for DE: {de_only:?}"
    );

    let top: TopReply = s.daemon.cli_typed(&["top", "--window", "60s"]);
    assert_eq!(top.events, events.len() as u64, "{top:?}");
    assert_eq!(top.prefixes[0].key, "5.45.200.0/24", "{top:?}");
    assert_eq!(
        (top.countries[0].key.as_str(), top.countries.len()),
        ("RU", 1),
        "{top:?}"
    );
    let text = s.daemon.ok(&["top"]);
    assert!(
        text.contains("sampled") && text.contains("5.45.200.0/24"),
        "{text}"
    );
    let text = s.daemon.ok(&["log"]);
    assert!(
        text.contains("5.45.200.7") && text.contains("udp/9000"),
        "{text}"
    );
}

fn log_lines(daemon: &Daemon, args: &[&str]) -> Vec<LogLine> {
    let mut all = args.to_vec();
    all.push("--json");
    daemon
        .ok(&all)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect()
}

#[test]
fn bad_windows_are_refused_with_the_reason() {
    let s = Scene::new(&[], &[]);
    for (window, reason) in [("0s", "1 second"), ("5x", "unit"), ("s", "number")] {
        let out = s.daemon.cli(&["top", "--window", window]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(reason),
            "{window}: {err}"
        );
    }
}
