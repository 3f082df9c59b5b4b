//! Tier 3, control plane: live changes under continuous traffic, crash and restart, lockout,
//! commit-confirm, access control, monitor mode, port scopes and metrics — all with the real
//! daemon and CLI on a veth pair between fresh namespaces.

use std::{
    collections::{HashMap, HashSet},
    io::{Read, Write},
    net::IpAddr,
    os::unix::{fs::PermissionsExt, net::UnixStream, process::CommandExt},
    time::Duration,
};

use geofilter_daemon::rules::ExceptionAction;
use geofilter_tests::{
    daemon::policy_codes,
    netns::{Pair, SERVER_V4, SERVER_V6},
    scenario::{DE_V4, DE_V6, RU_V4, RU_V6, Scene, TempDir, US_V4, ip, server_for},
    traffic::{HttpServer, StampedSender, UdpSink, curl, now_ns},
};

/// Send-time windows (CLOCK_MONOTONIC ns) in which a source must be dropped, or delivered.
#[derive(Default)]
struct Windows {
    blocked: Vec<(u64, u64)>,
    open: Vec<(u64, u64)>,
}

/// Per source: the send time of every datagram sent, and the send times that arrived.
type Traffic = HashMap<IpAddr, (Vec<u64>, HashSet<u64>)>;

/// Margin before a change starts within which a datagram may still be in flight when the change
/// lands; only used for the "must be delivered" side, never for "must be dropped".
const IN_FLIGHT_NS: u64 = 20_000_000;

/// Continuous traffic from every source while `body` runs; returns, per source, what was sent
/// and the send times that arrived.
fn under_traffic(
    pair: &Pair,
    sources: &[&str],
    body: impl FnOnce() -> Windows,
) -> (Windows, Traffic) {
    let sink = UdpSink::bind(&pair.server, &[ip(SERVER_V4), ip(SERVER_V6)]);
    let senders: Vec<(IpAddr, StampedSender)> = sources
        .iter()
        .map(|s| {
            (
                ip(s),
                StampedSender::start(
                    &pair.client,
                    ip(s),
                    server_for(s),
                    Duration::from_micros(500),
                ),
            )
        })
        .collect();
    std::thread::sleep(Duration::from_millis(50));
    let windows = body();
    let sent: Vec<(IpAddr, Vec<u64>)> = senders.into_iter().map(|(a, s)| (a, s.stop())).collect();
    let got = sink.finish(Duration::from_millis(300));
    let mut result: Traffic = HashMap::new();
    for (addr, stamps) in sent {
        result.entry(addr).or_default().0 = stamps;
    }
    for (addr, stamp) in got {
        result.entry(addr).or_default().1.insert(stamp);
    }
    (windows, result)
}

/// No datagram sent inside a blocked window arrived; every one sent inside an open window did.
fn check_windows(source: &str, windows: &Windows, traffic: &Traffic) {
    let (sent, got) = &traffic[&ip(source)];
    let inside =
        |w: &[(u64, u64)], t: u64, margin: u64| w.iter().any(|&(a, b)| t >= a && t + margin < b);
    let leaked = sent
        .iter()
        .filter(|&&t| got.contains(&t) && inside(&windows.blocked, t, 0))
        .count();
    let lost = sent
        .iter()
        .filter(|&&t| !got.contains(&t) && inside(&windows.open, t, IN_FLIGHT_NS))
        .count();
    let in_blocked = sent
        .iter()
        .filter(|&&t| inside(&windows.blocked, t, 0))
        .count();
    let in_open = sent
        .iter()
        .filter(|&&t| inside(&windows.open, t, IN_FLIGHT_NS))
        .count();
    assert!(
        in_blocked > 100 && in_open > 100,
        "{source}: too little traffic to judge ({in_blocked} blocked, {in_open} open)"
    );
    assert_eq!(
        leaked, 0,
        "{source}: {leaked} of {in_blocked} datagrams sent while blocked were delivered"
    );
    assert_eq!(
        lost, 0,
        "{source}: {lost} of {in_open} datagrams sent while open were dropped"
    );
}

/// Every datagram from an allowed source arrived.
fn check_all_delivered(source: &str, traffic: &Traffic) {
    let (sent, got) = &traffic[&ip(source)];
    assert!(
        sent.len() > 100,
        "{source}: only {} datagrams sent",
        sent.len()
    );
    assert_eq!(
        got.len(),
        sent.len(),
        "{source}: {} of {} delivered",
        got.len(),
        sent.len()
    );
}

/// Alternates `enter` (the source becomes blocked) and `leave` 20 times, recording the windows.
fn alternate(scene: &Scene, enter: &[&str], leave: &[&str]) -> Windows {
    alternate_by(20, || scene.daemon.ok(enter), || scene.daemon.ok(leave))
}

/// Runs `enter` (after it returns, the source is blocked) and `leave` (after it returns, open)
/// `rounds` times each, recording the windows between them.
fn alternate_by<T, U>(
    rounds: usize,
    mut enter: impl FnMut() -> T,
    mut leave: impl FnMut() -> U,
) -> Windows {
    let mut w = Windows::default();
    let mut open_from = now_ns();
    for _ in 0..rounds {
        let t0 = now_ns();
        enter();
        let t1 = now_ns();
        w.open.push((open_from, t0));
        std::thread::sleep(Duration::from_millis(60));
        let t2 = now_ns();
        leave();
        w.blocked.push((t1, t2));
        open_from = now_ns();
        std::thread::sleep(Duration::from_millis(60));
    }
    w.open.push((open_from, now_ns()));
    w
}

#[test]
fn twenty_blocks_and_unblocks_under_traffic_are_exact() {
    let sources = [RU_V4, RU_V6, DE_V4, DE_V6];
    let scene = Scene::new(&sources, &[]);
    let (windows, traffic) = under_traffic(&scene.pair, &sources, || {
        alternate(&scene, &["block", "RU"], &["unblock", "RU"])
    });
    check_windows(RU_V4, &windows, &traffic);
    check_windows(RU_V6, &windows, &traffic);
    check_all_delivered(DE_V4, &traffic);
    check_all_delivered(DE_V6, &traffic);
    assert_eq!(scene.daemon.packets("DE", "drop"), 0);
}

/// The small database's DE ranges as one ASN, and Google's resolver's as another, in
/// ip-location-db's `asn` CSV form.
fn write_asn_db(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("asn-ipv4.csv");
    std::fs::write(
        &path,
        "46.114.0.0,46.114.255.255,64500,\"Example DE Net, GmbH\"\n8.8.8.0,8.8.8.255,15169,Google LLC\n\
         2a01:598::,2a01:598:ffff:ffff:ffff:ffff:ffff:ffff,64500,\"Example DE Net, GmbH\"\n",
    )
    .unwrap();
    path
}

#[test]
fn twenty_asn_blocks_and_unblocks_under_traffic_are_exact() {
    let sources = [DE_V4, DE_V6, RU_V4, US_V4];
    let dir = TempDir::new();
    let asn_db = write_asn_db(&dir.0);
    let scene = Scene::new(&sources, &["--asn-db", asn_db.to_str().unwrap()]);
    let (windows, traffic) = under_traffic(&scene.pair, &sources, || {
        alternate(&scene, &["block", "AS64500"], &["unblock", "AS64500"])
    });
    check_windows(DE_V4, &windows, &traffic);
    check_windows(DE_V6, &windows, &traffic);
    check_all_delivered(RU_V4, &traffic);
    check_all_delivered(US_V4, &traffic);
    let stats = scene.daemon.stats();
    assert!(
        stats.asns.is_empty(),
        "no ASN listed at the end: {:?}",
        stats.asns
    );
}

#[test]
fn twenty_list_switches_under_traffic_are_exact() {
    let sources = [DE_V4, RU_V4, DE_V6];
    let scene = Scene::new(&sources, &[]);
    let list = scene.db_dir.0.join("de.txt");
    std::fs::write(&list, format!("# one address\n{DE_V4}\n2a01:598::/32\n")).unwrap();
    scene
        .daemon
        .ok(&["list", "add", "de", list.to_str().unwrap()]);
    scene.daemon.ok(&["list", "disable", "de"]);
    let (windows, traffic) = under_traffic(&scene.pair, &sources, || {
        alternate(
            &scene,
            &["list", "enable", "de"],
            &["list", "disable", "de"],
        )
    });
    check_windows(DE_V4, &windows, &traffic);
    check_windows(DE_V6, &windows, &traffic);
    check_all_delivered(RU_V4, &traffic);
}

#[test]
fn list_updates_under_traffic_are_exact() {
    let sources = [DE_V4, DE_V6, RU_V4];
    let scene = Scene::new(&sources, &[]);
    let list = scene.db_dir.0.join("moving.txt");
    // Two versions of one list: the DE addresses in it, or only an address nobody sends from.
    let with_de = format!("# version A\n{DE_V4}\n2a01:598::/32\n");
    let without = "# version B\n192.0.2.1\n".to_string();
    std::fs::write(&list, &without).unwrap();
    scene
        .daemon
        .ok(&["list", "add", "moving", list.to_str().unwrap()]);
    let update = |text: &str| {
        std::fs::write(&list, text).unwrap();
        scene.daemon.ok(&["list", "update", "moving"])
    };
    let (windows, traffic) = under_traffic(&scene.pair, &sources, || {
        alternate_by(10, || update(&with_de), || update(&without))
    });
    check_windows(DE_V4, &windows, &traffic);
    check_windows(DE_V6, &windows, &traffic);
    check_all_delivered(RU_V4, &traffic);
}

#[test]
fn exception_changes_under_traffic_are_exact() {
    let sources = [RU_V4, RU_V6, DE_V4, DE_V6];
    let scene = Scene::new(&sources, &["--block", "RU"]);
    // Removing the exception blocks the source again; adding it opens it.
    scene.daemon.ok(&["except", "add", RU_V4, RU_V6]);
    let (windows, traffic) = under_traffic(&scene.pair, &sources, || {
        alternate(
            &scene,
            &["except", "del", RU_V4, RU_V6],
            &["except", "add", RU_V4, RU_V6],
        )
    });
    check_windows(RU_V4, &windows, &traffic);
    check_windows(RU_V6, &windows, &traffic);
    check_all_delivered(DE_V4, &traffic);
    check_all_delivered(DE_V6, &traffic);
}

/// Sends one raw request line on the control socket and returns the response line.
fn raw_request(scene: &Scene, line: &str) -> serde_json::Value {
    let mut stream = UnixStream::connect(&scene.daemon.socket).expect("connect");
    stream.write_all(line.as_bytes()).unwrap();
    stream.write_all(b"\n").unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).unwrap();
    serde_json::from_str(&reply).expect("JSON response")
}

#[test]
fn database_reloads_under_traffic_are_exact() {
    let sources = [RU_V4, RU_V6, DE_V4, DE_V6];
    let scene = Scene::new(&sources, &["--block", "RU"]);
    // A second database that places the RU ranges in NL instead.
    let other = TempDir::new();
    let moved_v4 = other.0.join("v4.csv");
    let moved_v6 = other.0.join("v6.csv");
    std::fs::write(
        &moved_v4,
        "5.45.192.0,5.45.255.255,NL\n46.114.0.0,46.114.255.255,DE\n",
    )
    .unwrap();
    std::fs::write(
        &moved_v6,
        "2a01:598::/32,DE\n".replace("/32", ",2a01:598:ffff:ffff:ffff:ffff:ffff:ffff")
            + "2a02:6b8::,2a02:6b8:ffff:ffff:ffff:ffff:ffff:ffff,NL\n",
    )
    .unwrap();
    let reload = |v4: &std::path::Path, v6: &std::path::Path| {
        let line = serde_json::json!({"op": "reload", "dbs": [v4, v6]}).to_string();
        let reply = raw_request(&scene, &line);
        assert_eq!(reply["ok"], true, "reload: {reply}");
    };
    let (original_v4, original_v6) = (scene.db_dir.0.join("v4.csv"), scene.db_dir.0.join("v6.csv"));
    let (windows, traffic) = under_traffic(&scene.pair, &sources, || {
        let mut w = Windows::default();
        let mut blocked_from = now_ns();
        for _ in 0..20 {
            let t0 = now_ns();
            reload(&moved_v4, &moved_v6);
            let t1 = now_ns();
            w.blocked.push((blocked_from, t0));
            std::thread::sleep(Duration::from_millis(60));
            let t2 = now_ns();
            reload(&original_v4, &original_v6);
            w.open.push((t1, t2.saturating_sub(IN_FLIGHT_NS)));
            blocked_from = now_ns();
            std::thread::sleep(Duration::from_millis(60));
        }
        w.blocked.push((blocked_from, now_ns()));
        w
    });
    check_windows(RU_V4, &windows, &traffic);
    check_windows(RU_V6, &windows, &traffic);
    check_all_delivered(DE_V4, &traffic);
    check_all_delivered(DE_V6, &traffic);
    let status = scene.daemon.status();
    assert_eq!(status.database.reloads, 40, "{status:?}");
}

#[test]
fn sigkill_keeps_filtering_and_a_restart_adopts_without_a_gap() {
    let sources = [RU_V4, RU_V6, DE_V4, DE_V6];
    let mut scene = Scene::new(&sources, &["--block", "RU"]);
    scene.daemon.ok(&["except", "add", "203.0.113.0/24"]);
    let args = scene.run_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let Scene { pair, daemon, .. } = &mut scene;
    let (_, traffic) = under_traffic(pair, &sources, || {
        std::thread::sleep(Duration::from_millis(200));
        daemon.kill();
        std::thread::sleep(Duration::from_millis(300));
        // Restarted without --block: the state file restores the policy.
        daemon.restart(&args);
        std::thread::sleep(Duration::from_millis(300));
        Windows::default()
    });
    for ru in [RU_V4, RU_V6] {
        let (sent, got) = &traffic[&ip(ru)];
        assert!(sent.len() > 300, "{ru}: traffic ran throughout");
        assert!(
            got.is_empty(),
            "{ru}: {} datagrams passed across the kill and restart",
            got.len()
        );
    }
    check_all_delivered(DE_V4, &traffic);
    check_all_delivered(DE_V6, &traffic);
    assert!(
        scene.daemon.log().contains("adopting"),
        "restart adopted the pins:\n{}",
        scene.daemon.log()
    );
    let status = scene.daemon.status();
    assert_eq!(policy_codes(&status.policy), ["RU"], "{status:?}");
    assert_eq!(
        status
            .policy
            .exceptions
            .get(&"203.0.113.0/24".parse().unwrap()),
        Some(&ExceptionAction::Pass),
        "{status:?}"
    );
    assert_eq!(
        status.interfaces[0].name, scene.pair.server_if,
        "{status:?}"
    );
    // Counters live in the adopted maps: every RU datagram of the whole run is counted.
    let ru_sent = traffic[&ip(RU_V4)].0.len() + traffic[&ip(RU_V6)].0.len();
    assert_eq!(
        scene.daemon.packets("RU", "drop"),
        ru_sent as u64,
        "drops counted across the restart"
    );
}

#[test]
fn lockout_protection_refuses_to_drop_the_callers_session() {
    let scene = Scene::new(&[RU_V4], &[]);
    let as_ssh = |args: &[&str]| {
        let mut c = scene.daemon.cli_command(args);
        c.env("SSH_CONNECTION", format!("{RU_V4} 51234 {SERVER_V4} 22"));
        c.output().unwrap()
    };
    let out = as_ssh(&["block", "RU"]);
    assert!(
        !out.status.success(),
        "blocking the caller's own country was accepted"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("refused") && err.contains(RU_V4) && err.contains("--force"),
        "{err}"
    );
    assert_eq!(
        scene.daemon.countries(),
        Vec::<String>::new(),
        "nothing applied"
    );
    // Allow-only without the caller's country is a lockout too.
    let out = as_ssh(&["policy", "allow-only"]);
    assert!(
        !out.status.success(),
        "allow-only without the caller's country was accepted"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("refused"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // With the caller excepted, the same change goes through.
    assert!(as_ssh(&["except", "add", RU_V4]).status.success());
    assert!(as_ssh(&["block", "RU"]).status.success());
    // Deleting the exception would now lock the caller out.
    assert!(!as_ssh(&["except", "del", RU_V4]).status.success());
    // --force overrides.
    assert!(
        as_ssh(&["except", "del", RU_V4, "--force"])
            .status
            .success()
    );
}

#[test]
fn commit_confirm_rolls_back_unless_confirmed() {
    let scene = Scene::new(&[RU_V4], &[]);
    let _http = HttpServer::start(&scene.pair, &[ip(SERVER_V4)]);
    let reachable = || {
        curl(&scene.pair.client, ip(RU_V4), ip(SERVER_V4), 1)
            .status
            .success()
    };
    assert!(reachable());
    scene.daemon.ok(&["block", "RU", "--confirm", "2"]);
    assert!(!reachable(), "blocked while waiting for confirmation");
    assert!(scene.daemon.status().pending_confirm_s.is_some());
    std::thread::sleep(Duration::from_millis(2600));
    assert!(reachable(), "rolled back after 2 s without confirm");
    assert_eq!(scene.daemon.countries(), Vec::<String>::new());

    scene.daemon.ok(&["block", "RU", "--confirm", "2"]);
    scene.daemon.ok(&["confirm"]);
    std::thread::sleep(Duration::from_millis(2600));
    assert!(!reachable(), "a confirmed change stays");
    assert!(
        !scene.daemon.cli(&["confirm"]).status.success(),
        "nothing left to confirm"
    );
}

#[test]
fn only_root_may_use_the_control_socket() {
    let scene = Scene::new(&[], &[]);
    let as_nobody = |args: &[&str]| {
        let mut c = scene.daemon.cli_command(args);
        // SAFETY: setgid/setuid between fork and exec only affect the child.
        unsafe {
            c.pre_exec(|| {
                if libc::setgid(65534) != 0 || libc::setuid(65534) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        c.output().unwrap()
    };
    let mode = std::fs::metadata(&scene.daemon.socket)
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600, "socket mode");
    let out = as_nobody(&["status"]);
    assert!(!out.status.success(), "nobody could use the socket");
    // Even with the file opened up, the daemon checks the peer's credentials.
    let dir = scene.daemon.socket.parent().unwrap();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&scene.daemon.socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = as_nobody(&["block", "RU"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("permission denied") && err.contains("65534"),
        "{err}"
    );
    assert_eq!(scene.daemon.countries(), Vec::<String>::new());
}

#[test]
fn monitor_mode_counts_without_dropping_and_port_exemptions_keep_a_port_open() {
    let scene = Scene::new(&[RU_V4, DE_V4], &["--block", "RU"]);
    let _http = HttpServer::start(&scene.pair, &[ip(SERVER_V4)]);
    let fetch = |src: &str| {
        curl(&scene.pair.client, ip(src), ip(SERVER_V4), 1)
            .status
            .success()
    };
    assert!(!fetch(RU_V4));
    scene.daemon.ok(&["monitor", "on"]);
    assert!(fetch(RU_V4), "monitor mode drops nothing");
    assert!(
        scene.daemon.packets("RU", "would_drop") > 0,
        "but counts what it would drop"
    );
    scene.daemon.ok(&["monitor", "off"]);
    assert!(!fetch(RU_V4));
    // The HTTP port exempt from geo-filtering (as for ACME renewals), everything else still filtered.
    scene.daemon.ok(&[
        "ports",
        "set",
        "--exempt",
        &format!("tcp:{}", geofilter_tests::traffic::HTTP_PORT),
    ]);
    assert!(fetch(RU_V4), "exempt port reachable from RU");
    scene.daemon.ok(&["ports", "set", "--only", "tcp:22"]);
    assert!(
        fetch(RU_V4),
        "port outside an --only scope reachable from RU"
    );
    scene.daemon.ok(&[
        "ports",
        "set",
        "--only",
        &format!("tcp:{}", geofilter_tests::traffic::HTTP_PORT),
    ]);
    assert!(!fetch(RU_V4), "port inside the --only scope filtered");
    assert!(fetch(DE_V4));
    scene.daemon.ok(&["ports", "clear"]);
    assert!(!fetch(RU_V4));
    let status = scene.daemon.status();
    assert!(status.policy.ports.only.is_empty(), "{status:?}");
}

#[test]
fn metrics_are_served_in_prometheus_format() {
    let scene = Scene::new(&[RU_V4], &["--block", "RU", "--metrics", "127.0.0.1:9753"]);
    let _ = curl(&scene.pair.client, ip(RU_V4), ip(SERVER_V4), 1);
    let out = scene
        .pair
        .server
        .command("curl")
        .args([
            "--silent",
            "--max-time",
            "3",
            "http://127.0.0.1:9753/metrics",
        ])
        .output()
        .unwrap();
    let body = String::from_utf8_lossy(&out.stdout);
    assert!(
        body.contains(r#"geofilter_packets_total{country="RU",verdict="drop"}"#),
        "{body}"
    );
    assert!(body.contains("geofilter_prefixes_v4"), "{body}");
    assert!(body.contains("geofilter_reloads_total"), "{body}");
}

#[test]
fn metrics_count_listed_asns_and_lists_and_nothing_per_unlisted_asn() {
    let dir = TempDir::new();
    let asn_db = write_asn_db(&dir.0);
    let scene = Scene::new(
        &[DE_V4, US_V4],
        &[
            "--asn-db",
            asn_db.to_str().unwrap(),
            "--block",
            "AS64500",
            "--metrics",
            "127.0.0.1:9754",
        ],
    );
    let list = dir.0.join("google.txt");
    std::fs::write(&list, "8.8.8.0/24\n").unwrap();
    scene
        .daemon
        .ok(&["list", "add", "google", list.to_str().unwrap()]);
    let _ = curl(&scene.pair.client, ip(DE_V4), ip(SERVER_V4), 1);
    let _ = curl(&scene.pair.client, ip(US_V4), ip(SERVER_V4), 1);
    let out = scene
        .pair
        .server
        .command("curl")
        .args([
            "--silent",
            "--max-time",
            "3",
            "http://127.0.0.1:9754/metrics",
        ])
        .output()
        .unwrap();
    let body = String::from_utf8_lossy(&out.stdout);
    let value = |series: &str| -> f64 {
        body.lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {series} in {body}"))
    };
    assert!(value(r#"geofilter_asn_packets_total{asn="AS64500",verdict="drop"}"#) >= 1.0);
    assert!(value(r#"geofilter_list_packets_total{list="google",verdict="drop"}"#) >= 1.0);
    assert!(
        !body.contains("AS15169"),
        "an ASN no policy names has no series: {body}"
    );
}

#[test]
fn stats_watch_redraws_with_rates() {
    let scene = Scene::new(&[RU_V4], &["--block", "RU"]);
    let sender = StampedSender::start(
        &scene.pair.client,
        ip(RU_V4),
        ip(SERVER_V4),
        Duration::from_millis(2),
    );
    let mut watch = scene
        .daemon
        .cli_command(&["stats", "--watch"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    watch.kill().unwrap();
    let out = watch.wait_with_output().unwrap();
    sender.stop();
    let text = String::from_utf8_lossy(&out.stdout);
    // Redrawn about once a second, each frame a table with a per-second drop rate for RU.
    assert!(
        text.matches("\x1b[2J").count() >= 2,
        "at least two frames: {text:?}"
    );
    let last = text.rsplit("\x1b[2J").next().unwrap();
    let ru = last
        .lines()
        .find(|l| l.starts_with("RU"))
        .unwrap_or_else(|| panic!("RU row in {last:?}"));
    assert!(ru.contains("/s"), "RU row has rates: {ru}");
}
