//! Prometheus metrics (`--metrics ADDR:PORT`): per-country packets and bytes by verdict, database
//! size, age and reloads, policy changes and refusals (dist/grafana/geofilter.json charts them),
//! encoded with `prometheus-client` and served over a minimal HTTP/1.0 responder (one GET per
//! connection; scrapers need nothing more). With `--policy`, the followed revision too, and
//! `GET /ready` for a Kubernetes readiness probe: 200 once the desired revision is enforced,
//! 503 otherwise (without `--policy`, 200: the listener only starts once the filter runs).

use std::{
    net::SocketAddr,
    sync::{Arc, atomic::Ordering},
};

use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{
        counter::{ConstCounter, Counter},
        family::Family,
        gauge::ConstGauge,
        info::Info,
    },
    registry::Registry,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
    task::JoinHandle,
};
use tracing::warn;

use crate::{
    country::code_or_unknown,
    daemon::Daemon,
    geoip::{embedded, info::parse_date},
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CountryLabels {
    country: String,
    verdict: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AsnLabels {
    asn: String,
    verdict: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListLabels {
    list: String,
    verdict: &'static str,
}

/// Renders the current counters in the Prometheus text format.
pub fn render(daemon: &Daemon) -> Result<String, String> {
    let state = daemon.lock();
    let counters = state.datapath.counters().map_err(|e| e.to_string())?;
    // A fresh registry per scrape, filled from the kernel's counters: the counters live in the
    // BPF maps, not here.
    let packets = Family::<CountryLabels, Counter>::default();
    let bytes = Family::<CountryLabels, Counter>::default();
    for (&id, row) in &counters.countries {
        for verdict in geofilter_common::Verdict::ALL {
            let labels = CountryLabels {
                country: code_or_unknown(id),
                verdict: verdict.name(),
            };
            let c = row[verdict as usize];
            packets.get_or_create(&labels).inc_by(c.packets);
            bytes.get_or_create(&labels).inc_by(c.bytes);
        }
    }
    // Only the ASNs the policy names have counters: never one series per ASN of the world.
    let asn_packets = Family::<AsnLabels, Counter>::default();
    let asn_bytes = Family::<AsnLabels, Counter>::default();
    for (asn, row) in &counters.asns {
        for verdict in geofilter_common::Verdict::ALL {
            let labels = AsnLabels {
                asn: format!("AS{asn}"),
                verdict: verdict.name(),
            };
            let c = row[verdict as usize];
            asn_packets.get_or_create(&labels).inc_by(c.packets);
            asn_bytes.get_or_create(&labels).inc_by(c.bytes);
        }
    }
    let list_packets = Family::<ListLabels, Counter>::default();
    let list_bytes = Family::<ListLabels, Counter>::default();
    for (&slot, row) in &counters.lists {
        let Some(name) = daemon.list_name(&state, slot) else {
            continue;
        };
        for verdict in geofilter_common::Verdict::ALL {
            let labels = ListLabels {
                list: name.clone(),
                verdict: verdict.name(),
            };
            let c = row[verdict as usize];
            list_packets.get_or_create(&labels).inc_by(c.packets);
            list_bytes.get_or_create(&labels).inc_by(c.bytes);
        }
    }
    let mut registry = Registry::with_prefix("geofilter");
    registry.register("packets", "Packets by source country and verdict", packets);
    registry.register("bytes", "Bytes by source country and verdict", bytes);
    registry.register(
        "asn_packets",
        "Packets from the addresses of each ASN the policy names, by verdict",
        asn_packets,
    );
    registry.register(
        "asn_bytes",
        "Bytes from the addresses of each ASN the policy names, by verdict",
        asn_bytes,
    );
    registry.register(
        "list_packets",
        "Packets each blocklist decided, by verdict",
        list_packets,
    );
    registry.register(
        "list_bytes",
        "Bytes of the packets each blocklist decided, by verdict",
        list_bytes,
    );
    registry.register(
        "prefixes_v4",
        "IPv4 prefixes in the country table",
        ConstGauge::new(state.db.v4.len() as i64),
    );
    registry.register(
        "prefixes_v6",
        "IPv6 prefixes in the country table",
        ConstGauge::new(state.db.v6.len() as i64),
    );
    // The embedded database has no file: its age is that of the data it was built from.
    let newest = if state.saved.dbs.is_empty() {
        parse_date(&embedded::meta().built)
    } else {
        state
            .saved
            .dbs
            .iter()
            .filter_map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
            .max()
    };
    if let Some(newest) = newest {
        // A date in the future (clock skew) counts as new.
        let age = newest.elapsed().map_or(0, |a| a.as_secs());
        registry.register(
            "database_age_seconds",
            "Seconds since the newest database file was written (the embedded database: since \
             its data was built)",
            ConstGauge::new(age as i64),
        );
    }
    registry.register(
        "reloads",
        "Database reloads that succeeded",
        ConstCounter::new(state.reloads),
    );
    registry.register(
        "reload_failures",
        "Database reloads that failed",
        ConstCounter::new(state.reload_failures),
    );
    registry.register(
        "policy_changes",
        "Policy changes applied over the control socket",
        ConstCounter::new(daemon.policy_changes.load(Ordering::Relaxed)),
    );
    registry.register(
        "policy_refusals",
        "Policy changes refused (invalid, lockout check, kernel error); nothing was applied",
        ConstCounter::new(daemon.policy_refusals.load(Ordering::Relaxed)),
    );
    registry.register(
        "blocked_countries",
        "Countries on the policy list",
        ConstGauge::new(state.saved.policy.countries.len() as i64),
    );
    drop(state);
    if let Some(follower) = daemon.follower() {
        register_policy_source(&mut registry, follower);
    }
    let mut out = String::new();
    encode(&mut out, &registry).map_err(|e| e.to_string())?;
    Ok(out)
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RevisionLabels {
    source: String,
    revision: String,
    etag: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

/// The fleet view of one host: which revision it enforces, since when, and what failed.
fn register_policy_source(registry: &mut Registry, follower: &crate::fleet::Follower) {
    use crate::fleet::Reason;
    let status = follower.status();
    if let Some(applied) = &status.applied {
        registry.register(
            "policy_revision",
            "The policy revision enforced (SHA-256 of the document) and where it came from",
            Info::new(RevisionLabels {
                source: follower.source.to_string(),
                revision: applied.sha256.clone(),
                etag: applied.etag.clone().unwrap_or_default(),
            }),
        );
    }
    for (name, help, value) in [
        (
            "policy_last_success_timestamp_seconds",
            "When the policy source last answered (a document or 304), Unix time",
            status.last_success,
        ),
        (
            "policy_last_change_timestamp_seconds",
            "When a policy revision was last applied, Unix time",
            status.last_change,
        ),
    ] {
        if let Some(t) = value {
            registry.register(name, help, ConstGauge::new(t as i64));
        }
    }
    registry.register(
        "policy_ready",
        "1 when the last document read from the source is the one enforced (as /ready)",
        ConstGauge::new(i64::from(status.ready())),
    );
    let errors = Family::<ReasonLabels, Counter>::default();
    for reason in [
        Reason::Fetch,
        Reason::Document,
        Reason::Database,
        Reason::Apply,
    ] {
        let n = status.errors.get(&reason).copied().unwrap_or(0);
        errors
            .get_or_create(&ReasonLabels {
                reason: reason.name(),
            })
            .inc_by(n);
    }
    registry.register(
        "policy_errors",
        "Policy checks that changed nothing, by reason: fetch (source unreachable, HTTP error), \
         document (invalid), database (fetch, SHA-256 or load failed), apply (lockout, kernel)",
        errors,
    );
}

/// `GET /ready`: the status line and body.
fn readiness(daemon: &Daemon) -> (&'static str, String) {
    let Some(follower) = daemon.follower() else {
        return ("200 OK", "ready\n".into());
    };
    let status = follower.status();
    if status.ready() {
        return ("200 OK", "ready\n".into());
    }
    let why = match (&status.applied, &status.last_error) {
        (_, Some(error)) => error.clone(),
        (Some(_), None) => {
            "enforcing the last good revision; the source has not answered yet".into()
        }
        (None, None) => "no revision applied yet".into(),
    };
    ("503 Service Unavailable", format!("not ready: {why}\n"))
}

/// Binds `addr` and serves `/metrics` until the task is aborted.
pub async fn spawn(addr: SocketAddr, daemon: Arc<Daemon>) -> anyhow::Result<JoinHandle<()>> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("binding metrics address {addr}: {e}"))?;
    Ok(tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            let daemon = daemon.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let n =
                    tokio::time::timeout(std::time::Duration::from_secs(5), stream.read(&mut buf))
                        .await
                        .ok()
                        .and_then(Result::ok)
                        .unwrap_or(0);
                let path = std::str::from_utf8(&buf[..n])
                    .ok()
                    .and_then(|r| r.split_whitespace().nth(1))
                    .unwrap_or("/metrics");
                if path == "/ready" {
                    let (status, body) = readiness(&daemon);
                    let response = format!(
                        "HTTP/1.0 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = stream.write_all(response.as_bytes()).await;
                    return;
                }
                let response = match render(&daemon) {
                    Ok(body) => format!(
                        "HTTP/1.0 200 OK\r\nContent-Type: application/openmetrics-text; version=1.0.0; charset=utf-8\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    ),
                    Err(e) => {
                        warn!(error = %e, "rendering metrics failed");
                        "HTTP/1.0 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n".to_owned()
                    }
                };
                let _ = stream.write_all(response.as_bytes()).await;
            });
        }
    }))
}
