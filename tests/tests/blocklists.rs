//! Tier 3 for blocklists: `geofilter list` against the real daemon, real UDP through a veth
//! pair, list files in the formats operators download.

use std::time::Duration;

use geofilter_tests::{
    netns::SERVER_V4,
    require_root,
    scenario::{DE_V4, RU_V4, Scene, ip},
    traffic::{UdpSink, send_udp},
};

/// Documentation ranges (RFC 5737): no database places them, so only lists decide them.
const LISTED: &str = "203.0.113.5";
const LISTED_LATER: &str = "198.51.100.7";

fn delivered(s: &Scene, sources: &[&str], n: u64) -> Vec<u64> {
    let sink = UdpSink::bind(&s.pair.server, &[ip(SERVER_V4)]);
    for src in sources {
        send_udp(&s.pair.client, ip(src), ip(SERVER_V4), n);
    }
    let got = sink.collect(Duration::from_millis(400));
    sources
        .iter()
        .map(|src| got.get(&ip(src)).copied().unwrap_or(0))
        .collect()
}

fn fails(s: &Scene, args: &[&str]) -> String {
    let out = s.daemon.cli(args);
    assert!(!out.status.success(), "geofilter {args:?} succeeded");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_list_drops_its_networks_switches_in_o1_updates_and_survives_a_restart() {
    require_root();
    let sources = [LISTED, LISTED_LATER, DE_V4, RU_V4];
    let mut s = Scene::new(&sources, &["--block", "RU"]);
    const N: u64 = 150;
    let dir = s.db_dir.0.clone();
    // Spamhaus DROP's text form.
    let drop_file = dir.join("drop.txt");
    std::fs::write(
        &drop_file,
        "; Spamhaus DROP List 2026/12/01\n203.0.113.0/24 ; SBL000001\n",
    )
    .unwrap();
    s.daemon
        .ok(&["list", "add", "bad", drop_file.to_str().unwrap()]);
    assert_eq!(delivered(&s, &sources, N), [0, N, N, 0]);
    let why = s.daemon.why(LISTED);
    assert_eq!(
        (why.lists.clone(), why.decided_by.as_str()),
        (vec!["bad".to_string()], "list"),
        "{why:?}"
    );
    assert_eq!(why.deciding_list.as_deref(), Some("bad"));
    let stats = s.daemon.stats();
    let row = stats
        .lists
        .iter()
        .find(|r| r.name == "bad")
        .expect("bad row");
    assert_eq!(row.drop.packets, N, "{row:?}");

    // Off and on: a policy swap each.
    s.daemon.ok(&["list", "disable", "bad"]);
    assert_eq!(delivered(&s, &sources, N), [N, N, N, 0]);
    assert_eq!(s.daemon.why(LISTED).lists, ["bad"], "still known while off");
    s.daemon.ok(&["list", "enable", "bad"]);
    assert_eq!(delivered(&s, &sources, N), [0, N, N, 0]);

    // A pass list wins over the country (and over drop lists).
    let allow = dir.join("partners.netset");
    std::fs::write(&allow, format!("# FireHOL-style netset\n{RU_V4}\n")).unwrap();
    s.daemon.ok(&[
        "list",
        "add",
        "partners",
        allow.to_str().unwrap(),
        "--action",
        "pass",
    ]);
    assert_eq!(delivered(&s, &sources, N), [0, N, N, N]);

    // A malformed list is refused naming file and line; nothing changes.
    let broken = dir.join("broken.txt");
    std::fs::write(&broken, "198.51.100.0/24\n198.51.100.300/32\n").unwrap();
    let err = fails(&s, &["list", "add", "broken", broken.to_str().unwrap()]);
    assert!(
        err.contains("broken.txt") && err.contains('2') && err.contains("198.51.100.300"),
        "{err}"
    );
    assert_eq!(delivered(&s, &sources, N), [0, N, N, N]);

    // An update reads the file again and swaps the tables while the rest stays.
    std::fs::write(
        &drop_file,
        "; Spamhaus DROP List 2026/12/02\n203.0.113.0/24 ; SBL000001\n198.51.100.0/24 ; SBL000002\n",
    )
    .unwrap();
    s.daemon.ok(&["list", "update", "bad"]);
    assert_eq!(delivered(&s, &sources, N), [0, 0, N, N]);
    // A bad update keeps the last good copy.
    std::fs::write(&drop_file, "not a network\n").unwrap();
    let out = s.daemon.cli(&["list", "update", "bad"]);
    assert!(!out.status.success());
    assert_eq!(delivered(&s, &sources, N), [0, 0, N, N]);

    // A restart reads the lists back from their copies, on their slots.
    let args = s.run_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    s.daemon.stop();
    s.daemon.restart(&args);
    assert_eq!(delivered(&s, &sources, N), [0, 0, N, N]);
    let shown = s.daemon.ok(&["list", "show"]);
    assert!(
        shown.contains("bad (drop, enabled)") && shown.contains("partners (pass, enabled)"),
        "{shown}"
    );

    s.daemon.ok(&["list", "del", "bad"]);
    assert_eq!(delivered(&s, &sources, N), [N, N, N, N]);
}
