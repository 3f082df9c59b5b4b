//! Prometheus metrics (`--metrics ADDR:PORT`): per-country packets and bytes by verdict, database
//! size and reloads, encoded with `prometheus-client` and served over a minimal HTTP/1.0 responder
//! (one GET per connection; scrapers need nothing more).

use std::{net::SocketAddr, sync::Arc};

use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{
        counter::{ConstCounter, Counter},
        family::Family,
        gauge::ConstGauge,
    },
    registry::Registry,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
    task::JoinHandle,
};
use tracing::warn;

use crate::{country::code_or_unknown, daemon::Daemon};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CountryLabels {
    country: String,
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
    let mut registry = Registry::with_prefix("geofilter");
    registry.register("packets", "Packets by source country and verdict", packets);
    registry.register("bytes", "Bytes by source country and verdict", bytes);
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
    let newest = state
        .saved
        .dbs
        .iter()
        .filter_map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
        .max();
    if let Some(age) = newest.and_then(|t| t.elapsed().ok()) {
        registry.register(
            "database_age_seconds",
            "Seconds since the newest database file was written",
            ConstGauge::new(age.as_secs() as i64),
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
        "blocked_countries",
        "Countries on the policy list",
        ConstGauge::new(state.saved.policy.countries.len() as i64),
    );
    let mut out = String::new();
    encode(&mut out, &registry).map_err(|e| e.to_string())?;
    Ok(out)
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
                let _ =
                    tokio::time::timeout(std::time::Duration::from_secs(5), stream.read(&mut buf))
                        .await;
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
