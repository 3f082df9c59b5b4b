//! Tier 3, torture: the daemon killed at random points of changes and reloads, a hundred CLI
//! clients at once, and restarts under traffic. `GEOFILTER_LONG=1` repeats more.

use std::{
    collections::BTreeSet,
    net::IpAddr,
    time::{Duration, Instant},
};

use geofilter_daemon::control::protocol::wire_name;
use geofilter_tests::{
    daemon::policy_codes,
    netns::{SERVER_V4, SERVER_V6},
    rng::Rng,
    scenario::{DE_V4, DE_V6, RU_V4, RU_V6, Scene, TempDir, ip, server_for},
    traffic::{StampedSender, UdpSink},
};

fn long() -> bool {
    std::env::var_os("GEOFILTER_LONG").is_some()
}

/// The verdict the live program gives an address, by `why` (a probe of the loaded program).
fn kernel_verdict(scene: &Scene, addr: &str) -> String {
    wire_name(&scene.daemon.why(addr).verdict)
}

#[test]
fn sigkill_at_random_points_of_changes_and_reloads() {
    let mut scene = Scene::new(&[], &["--block", "RU"]);
    let args = scene.run_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let other = TempDir::new();
    let moved = other.0.join("moved.csv");
    // The RU ranges placed in NL: reloading this unblocks RU_V4 without touching the policy.
    std::fs::write(
        &moved,
        "5.45.192.0,5.45.255.255,NL\n2a02:6b8::,2a02:6b8:ffff:ffff:ffff:ffff:ffff:ffff,NL\n",
    )
    .unwrap();
    let seed = Rng::seed_from_env();
    eprintln!("kill delays from seed {seed}; replay with GEOFILTER_FUZZ_SEED={seed}");
    let mut rng = Rng(seed);
    let rounds = if long() { 100 } else { 20 };
    for round in 0..rounds {
        // A change in flight: block/unblock DE, add/remove an exception, or reload a database.
        let verb: Vec<String> = match round % 4 {
            0 => vec!["block".into(), "DE".into()],
            1 => vec!["unblock".into(), "DE".into()],
            2 => vec!["except".into(), "add".into(), format!("198.51.100.{round}")],
            _ => {
                let db = if round % 8 == 3 {
                    moved.display().to_string()
                } else {
                    scene.db_dir.0.join("v4.csv").display().to_string()
                };
                vec![
                    "db".into(),
                    "reload".into(),
                    "--db".into(),
                    db,
                    "--db".into(),
                    scene.db_dir.0.join("v6.csv").display().to_string(),
                ]
            }
        };
        let verb: Vec<&str> = verb.iter().map(String::as_str).collect();
        let mut client = scene.daemon.cli_command(&verb).spawn().expect("CLI");
        std::thread::sleep(Duration::from_micros(rng.below(20_000)));
        scene.daemon.kill();
        let committed = client.wait().expect("CLI exit").success();
        scene.daemon.restart(&args);
        // What the daemon believes and what the kernel does must agree, whatever the kill hit.
        let status = scene.daemon.status();
        let countries: BTreeSet<String> = policy_codes(&status.policy).into_iter().collect();
        assert!(
            countries.contains("RU"),
            "round {round}: RU stays blocked: {status:?}"
        );
        let de_blocked = countries.contains("DE");
        assert_eq!(
            kernel_verdict(&scene, DE_V4) == "drop",
            de_blocked,
            "round {round}: DE in the kernel vs {status:?}"
        );
        let paths = &status.database.paths;
        let ru_placed_in_ru = paths
            .iter()
            .any(|p| p.to_str().unwrap().ends_with("v4.csv"))
            || paths.is_empty();
        assert_eq!(
            kernel_verdict(&scene, RU_V4) == "drop",
            ru_placed_in_ru,
            "round {round}: RU_V4 in the kernel vs {status:?}"
        );
        if committed {
            // A change the CLI saw succeed survives the kill.
            match round % 4 {
                0 => assert!(de_blocked, "round {round}: committed block lost"),
                1 => assert!(!de_blocked, "round {round}: committed unblock lost"),
                2 => assert!(
                    status
                        .policy
                        .exceptions
                        .contains_key(&format!("198.51.100.{round}/32").parse().unwrap()),
                    "round {round}: committed exception lost"
                ),
                _ => {}
            }
        }
        let root = scene.daemon.pin_root().unwrap().to_path_buf();
        let mut pins: Vec<String> = walk(&root);
        pins.sort();
        let expected_links = [format!("links/{}", scene.pair.server_if)];
        assert!(
            pins.iter()
                .all(|p| p == "prog" || p.starts_with("maps/GF_") || expected_links.contains(p)),
            "round {round}: unexpected pins {pins:?}"
        );
    }
    let root = scene.daemon.pin_root().unwrap().to_path_buf();
    scene.daemon.ok(&["unload"]);
    assert!(scene.daemon.wait_exit().success());
    assert!(!root.exists(), "pins left after unload: {:?}", walk(&root));
}

fn walk(root: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    out
}

#[test]
fn a_hundred_concurrent_clients_lose_nothing() {
    let scene = Scene::new(&[], &[]);
    let codes: Vec<String> = [
        "AD", "AE", "AF", "AG", "AL", "AM", "AO", "AR", "AT", "AU", "AZ", "BA", "BB", "BD", "BE",
        "BF", "BG", "BH", "BI", "BJ", "BN", "BO", "BR", "BS", "BT", "BW", "BY", "BZ", "CA", "CD",
        "CF", "CG", "CH", "CI", "CL", "CM", "CN", "CO", "CR", "CU", "CV", "CY", "CZ", "DE", "DJ",
        "DK", "DM", "DO", "DZ", "EC",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let started = Instant::now();
    let children: Vec<(String, std::process::Child)> = (0..100)
        .map(|i| {
            let args: Vec<String> = if i % 2 == 0 {
                vec!["block".into(), codes[i / 2].clone()]
            } else {
                vec![
                    "except".into(),
                    "add".into(),
                    format!("10.{}.0.0/16", i),
                    format!("2001:db8:{i:x}::/48"),
                ]
            };
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            (
                args.join(" "),
                scene
                    .daemon
                    .cli_command(&refs)
                    .stdout(std::process::Stdio::null())
                    .spawn()
                    .expect("CLI"),
            )
        })
        .collect();
    for (what, mut child) in children {
        let out = child.wait().expect("CLI");
        assert!(
            out.success(),
            "`geofilter {what}` failed\n{}",
            scene.daemon.log()
        );
    }
    eprintln!("100 concurrent changes applied in {:?}", started.elapsed());
    let status = scene.daemon.status();
    let countries: BTreeSet<String> = policy_codes(&status.policy).into_iter().collect();
    assert_eq!(
        countries,
        codes.iter().cloned().collect(),
        "every block landed"
    );
    let exceptions = &status.policy.exceptions;
    assert_eq!(
        exceptions.len(),
        100,
        "every exception landed: {exceptions:?}"
    );
    // And the kernel holds them: an address in each exception passes even under allow-only.
    scene.daemon.ok(&["policy", "allow-only"]);
    for i in (1..100).step_by(2) {
        assert_eq!(
            kernel_verdict(&scene, &format!("10.{i}.1.1")),
            "pass",
            "exception 10.{i}.0.0/16"
        );
        assert_eq!(
            kernel_verdict(&scene, &format!("2001:db8:{i:x}::1")),
            "pass",
            "exception 2001:db8:{i:x}::/48"
        );
    }
    assert_eq!(
        kernel_verdict(&scene, "10.200.1.1"),
        "pass",
        "unknown passes by default"
    );
    scene.daemon.ok(&["policy", "unknown", "drop"]);
    assert_eq!(
        kernel_verdict(&scene, "10.200.1.1"),
        "drop",
        "not excepted, unknown: dropped"
    );
}

#[test]
fn graceful_restarts_with_keep_under_traffic_mishandle_nothing() {
    let sources = [RU_V4, RU_V6, DE_V4, DE_V6];
    let mut scene = Scene::new(&sources, &["--block", "RU", "--keep"]);
    let mut args = scene.run_args();
    args.push("--keep".into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let sink = UdpSink::bind(&scene.pair.server, &[ip(SERVER_V4), ip(SERVER_V6)]);
    let senders: Vec<(IpAddr, StampedSender)> = sources
        .iter()
        .map(|s| {
            (
                ip(s),
                StampedSender::start(
                    &scene.pair.client,
                    ip(s),
                    server_for(s),
                    Duration::from_micros(500),
                ),
            )
        })
        .collect();
    for _ in 0..if long() { 20 } else { 5 } {
        std::thread::sleep(Duration::from_millis(100));
        assert!(
            scene.daemon.stop().success(),
            "clean stop\n{}",
            scene.daemon.log()
        );
        std::thread::sleep(Duration::from_millis(100));
        scene.daemon.restart(&args);
    }
    std::thread::sleep(Duration::from_millis(100));
    let sent: Vec<(IpAddr, Vec<u64>)> = senders.into_iter().map(|(a, s)| (a, s.stop())).collect();
    let got = sink.finish(Duration::from_millis(300));
    for (addr, stamps) in sent {
        let arrived = got.iter().filter(|(a, _)| *a == addr).count();
        if addr == ip(RU_V4) || addr == ip(RU_V6) {
            assert_eq!(arrived, 0, "{addr}: blocked source got through a restart");
        } else {
            assert_eq!(
                arrived,
                stamps.len(),
                "{addr}: allowed source lost datagrams across restarts"
            );
        }
    }
    assert!(
        scene.daemon.log().contains("(--keep)"),
        "stopped with --keep"
    );
}

#[test]
fn a_database_larger_than_the_tables_may_grow_is_refused_and_the_old_tables_stay() {
    let scene = Scene::new(&[RU_V4, DE_V4], &["--block", "RU", "--max-table-mib", "1"]);
    // The embedded world database needs about 3 MiB per family (and more than 1 MiB of prefixes).
    let out = scene.daemon.cli(&["db", "reload", "--embedded"]);
    assert!(!out.status.success(), "a 3 MiB table passed a 1 MiB limit");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("MiB limit") && err.contains("current tables stay"),
        "{err}"
    );
    let status = scene.daemon.status();
    assert_eq!(status.database.reload_failures, 1, "{status:?}");
    assert_eq!(
        status.database.prefixes_v4, 29,
        "the small database is still loaded: {status:?}"
    );
    assert_eq!(kernel_verdict(&scene, RU_V4), "drop");
    assert_eq!(kernel_verdict(&scene, DE_V4), "pass");
    let sink = geofilter_tests::traffic::UdpSink::bind(&scene.pair.server, &[ip(SERVER_V4)]);
    geofilter_tests::traffic::send_udp(&scene.pair.client, ip(RU_V4), ip(SERVER_V4), 30);
    geofilter_tests::traffic::send_udp(&scene.pair.client, ip(DE_V4), ip(SERVER_V4), 30);
    let got = sink.collect(Duration::from_millis(300));
    assert_eq!(got.get(&ip(RU_V4)), None);
    assert_eq!(got.get(&ip(DE_V4)), Some(&30));
}
