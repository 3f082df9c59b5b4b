//! Tier 3, the Grafana dashboard (dist/grafana/geofilter.json): every metric it queries is one a
//! real daemon exports, and it charts what operators look for (drops and passes per country,
//! table sizes, database age, reload and policy errors). Scraped from a daemon that has filtered
//! traffic and refused a change, so the per-country and error series exist.

use std::{collections::BTreeSet, path::Path, time::Duration};

use geofilter_tests::{
    daemon::Daemon,
    netns::{Netns, Pair, SERVER_V4},
    require_root,
    scenario::{DE_V4, RU_V4, Scene, ip},
    traffic::{UdpSink, send_udp},
};

const METRICS: &str = "127.0.0.1:9753";

/// Every `geofilter_...` identifier in the strings of `value` (PromQL exprs, variable queries,
/// descriptions).
fn referenced(value: &serde_json::Value, found: &mut BTreeSet<String>) {
    match value {
        serde_json::Value::String(s) => {
            let ident = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_';
            for (at, _) in s.match_indices("geofilter_") {
                // `xgeofilter_` would be another identifier.
                if s[..at].chars().next_back().is_some_and(ident) {
                    continue;
                }
                let name: String = s[at..].chars().take_while(|&c| ident(c)).collect();
                found.insert(name);
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| referenced(v, found)),
        serde_json::Value::Object(map) => map.values().for_each(|v| referenced(v, found)),
        _ => {}
    }
}

/// The sample names of a Prometheus/OpenMetrics text body (`geofilter_packets_total`, ...): the
/// names a query can use, suffixes (`_total`, `_bucket`...) included as exported.
fn exported(body: &str) -> BTreeSet<String> {
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            l.split(['{', ' '])
                .next()
                .expect("a sample line has a name")
                .to_owned()
        })
        .collect()
}

/// The metrics of the daemon running in `server`.
fn scrape(server: &Netns) -> String {
    let out = server
        .command("curl")
        .args([
            "--silent",
            "--fail",
            "--max-time",
            "3",
            &format!("http://{METRICS}/metrics"),
        ])
        .output()
        .expect("running curl");
    assert!(out.status.success(), "scraping {METRICS} failed");
    String::from_utf8(out.stdout).expect("utf-8 metrics")
}

#[test]
fn the_dashboard_queries_only_exported_metrics() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../dist/grafana/geofilter.json");
    let text = std::fs::read_to_string(&path).expect("reading dist/grafana/geofilter.json");
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let mut used = BTreeSet::new();
    referenced(&dashboard, &mut used);

    let scene = Scene::new(&[RU_V4, DE_V4], &["--block", "RU", "--metrics", METRICS]);
    let sink = UdpSink::bind(&scene.pair.server, &[ip(SERVER_V4)]);
    send_udp(&scene.pair.client, ip(RU_V4), ip(SERVER_V4), 10);
    send_udp(&scene.pair.client, ip(DE_V4), ip(SERVER_V4), 10);
    sink.collect(Duration::from_millis(200));
    // One change applied, one refused by the daemon itself (a second pending --confirm).
    scene.daemon.ok(&["block", "US", "--confirm", "60"]);
    let refused = scene.daemon.cli(&["block", "DE", "--confirm", "60"]);
    assert!(
        !refused.status.success(),
        "a second pending change was accepted"
    );

    let body = scrape(&scene.pair.server);
    let exported = exported(&body);
    let unknown: Vec<_> = used.difference(&exported).collect();
    assert!(
        unknown.is_empty(),
        "the dashboard queries metrics the daemon does not export: {unknown:?}\nexported: \
         {exported:?}"
    );
    // What the dashboard is for (issue 16): each must be charted.
    for wanted in [
        "geofilter_packets_total",
        "geofilter_bytes_total",
        "geofilter_prefixes_v4",
        "geofilter_prefixes_v6",
        "geofilter_database_age_seconds",
        "geofilter_reload_failures_total",
        "geofilter_policy_refusals_total",
    ] {
        assert!(
            used.contains(wanted),
            "the dashboard does not chart {wanted}"
        );
    }
    for verdict in [r#"verdict=\"drop\""#, r#"verdict=\"pass\""#] {
        assert!(text.contains(verdict), "no panel selects {verdict}");
    }
    // The series it charts carry values from this run.
    for sample in [
        r#"geofilter_packets_total{country="RU",verdict="drop"} 10"#,
        r#"geofilter_packets_total{country="DE",verdict="pass"} 10"#,
        "geofilter_policy_changes_total 1",
        "geofilter_policy_refusals_total 1",
    ] {
        assert!(body.contains(sample), "no `{sample}` in:\n{body}");
    }
}

/// The embedded database has no file to date it by: its age comes from its build date, so the
/// dashboard's "Database age" is never empty on a default install.
#[test]
fn the_embedded_database_has_an_age() {
    require_root();
    let pair = Pair::new();
    let _daemon = Daemon::start(
        &pair.server,
        &["--iface", &pair.server_if, "--metrics", METRICS],
    );
    let body = scrape(&pair.server);
    let age: u64 = body
        .lines()
        .find_map(|l| l.strip_prefix("geofilter_database_age_seconds "))
        .unwrap_or_else(|| panic!("no geofilter_database_age_seconds in:\n{body}"))
        .trim()
        .parse()
        .expect("a whole number of seconds");
    // Built from data of 2026 or later, and this clock is not before 2026.
    let ten_years = 10 * 365 * 86_400;
    assert!(age < ten_years, "database age {age} s");
}
