//! Tier 3 for ASNs: the real daemon with the embedded country and ASN databases (no `--db`, no
//! `--asn-db`), real UDP through a veth pair from addresses of real networks.

use std::{net::IpAddr, time::Duration};

use geofilter_tests::{
    daemon::Daemon,
    netns::{Pair, SERVER_V4},
    require_root,
    scenario::ip,
    traffic::{UdpSink, send_udp},
};

/// Cloudflare's resolver (AS13335) and Google's (AS15169).
const CLOUDFLARE: &str = "1.1.1.1";
const GOOGLE: &str = "8.8.8.8";

/// Datagrams delivered from each of `sources` when each sends `n`.
fn delivered(pair: &Pair, sources: &[&str], n: u64) -> Vec<u64> {
    let sink = UdpSink::bind(&pair.server, &[ip(SERVER_V4)]);
    for src in sources {
        send_udp(&pair.client, ip(src), ip(SERVER_V4), n);
    }
    let got = sink.collect(Duration::from_millis(500));
    sources
        .iter()
        .map(|s| got.get(&ip(s)).copied().unwrap_or(0))
        .collect()
}

#[test]
fn an_asn_blocked_at_start_with_the_embedded_databases_drops_only_its_addresses() {
    require_root();
    let pair = Pair::new();
    for s in [CLOUDFLARE, GOOGLE] {
        pair.add_source(ip(s));
    }
    let daemon = Daemon::start(
        &pair.server,
        &["--iface", &pair.server_if, "--block", "AS13335"],
    );
    const N: u64 = 200;
    assert_eq!(
        delivered(&pair, &[CLOUDFLARE, GOOGLE], N),
        [0, N],
        "AS13335 dropped, AS15169 passed"
    );

    let why = daemon.why(CLOUDFLARE);
    assert_eq!(why.asn, Some(13335), "{why:?}");
    let org = why.organisation.clone().unwrap_or_default();
    assert!(org.contains("Cloudflare"), "organisation {org:?}");
    assert_eq!(why.decided_by, "asn", "{why:?}");
    assert!(
        why.reason.contains("AS13335") && why.reason.ends_with("-> drop"),
        "{}",
        why.reason
    );
    let why = daemon.why(GOOGLE);
    assert_eq!(
        (why.asn, why.decided_by.as_str()),
        (Some(15169), "country"),
        "{why:?}"
    );
    assert!(why.reason.ends_with("-> pass"), "{}", why.reason);

    let stats = daemon.stats();
    let row = stats
        .asns
        .iter()
        .find(|r| r.name == "AS13335")
        .unwrap_or_else(|| panic!("no AS13335 row in {:?}", stats.asns));
    assert_eq!((row.drop.packets, row.pass.packets), (N, 0), "{row:?}");
    assert_eq!(stats.asns.len(), 1, "only the listed ASN is counted");

    // Unblocking and blocking again changes only the policy, under the same tables.
    daemon.ok(&["unblock", "AS13335"]);
    assert_eq!(delivered(&pair, &[CLOUDFLARE, GOOGLE], N), [N, N]);
    daemon.ok(&["block", "AS15169"]);
    assert_eq!(delivered(&pair, &[CLOUDFLARE, GOOGLE], N), [N, 0]);
    let status = daemon.status();
    assert_eq!(
        serde_json::to_value(&status.policy).unwrap()["asns"],
        serde_json::json!(["AS15169"]),
        "the policy names the ASN as operators write it"
    );
}

#[test]
fn the_first_asn_in_a_running_policy_brings_the_asn_data_in() {
    require_root();
    let pair = Pair::new();
    for s in [CLOUDFLARE, GOOGLE] {
        pair.add_source(ip(s));
    }
    // Countries only at start: no ASN data in the tables.
    let daemon = Daemon::start(&pair.server, &["--iface", &pair.server_if, "--block", "RU"]);
    const N: u64 = 100;
    assert_eq!(delivered(&pair, &[CLOUDFLARE, GOOGLE], N), [N, N]);
    assert_eq!(daemon.why(CLOUDFLARE).asn, None);
    daemon.ok(&["block", "as13335"]);
    assert_eq!(delivered(&pair, &[CLOUDFLARE, GOOGLE], N), [0, N]);
    assert_eq!(daemon.why(CLOUDFLARE).asn, Some(13335));
    // A bad AS number is refused naming it, and nothing changes.
    let out = daemon.cli(&["block", "AS0"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("AS0"), "{err}");
    assert_eq!(delivered(&pair, &[CLOUDFLARE, GOOGLE], N), [0, N]);
    let _: IpAddr = ip(GOOGLE);
}
