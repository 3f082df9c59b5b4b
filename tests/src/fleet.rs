//! A fleet in namespaces: N [`Pair`]s, each a host whose daemon filters `server_if` in the
//! pair's server namespace, and one hub namespace holding the policy source, joined to each
//! host's server namespace by a veth link of its own.
//!
//! Addresses: link `k` is `10.210.k.0/30` (hub `.1`, host `.2`), clear of the pairs'
//! `10.200.0.0/24` (netns.rs) and the test countries' ranges (scenario.rs). The source listens on
//! one service address on the hub's loopback, [`SOURCE_V4`], which every host reaches through a
//! host route over its own link: one URL for the whole fleet, as operators publish one, so the
//! document's database URLs name the same server on every host. No default route anywhere; the
//! links carry IPv4 only (IPv6 is disabled on them before they come up, so no router or
//! neighbour solicitations add to the bytes the benchmark counts).
//!
//! Everything lives in the namespaces: dropping the fleet (also on a panic) deletes them, and the
//! veth links with them.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    time::{Duration, Instant},
};

use crate::{
    daemon::Daemon,
    netns::{Netns, Pair, unique},
    policy_server::PolicyServer,
    probe::Probe,
    scenario::{DB_V4, DB_V6},
};

/// The policy source's address, on the hub's loopback.
pub const SOURCE_V4: Ipv4Addr = Ipv4Addr::new(10, 210, 255, 1);

/// The port the source listens on.
pub const SOURCE_PORT: u16 = 8080;
/// The document's path on the source.
pub const POLICY_PATH: &str = "policy.toml";
/// Where each daemon serves metrics and `/ready`, inside its host's server namespace.
pub const METRICS: &str = "127.0.0.1:9753";
/// Daemons started at once: each loads and verifies its program, and the machine may have two
/// cores.
const STARTS_AT_ONCE: usize = 5;

/// Hosts per fleet at most: one /30 per host in `10.210.0.0/16`, below the service address's.
pub const MAX_HOSTS: usize = 255;

/// One host: its pair, and its link to the hub.
pub struct Host {
    pub pair: Pair,
    /// The link's end in the hub namespace.
    pub hub_if: String,
    /// The link's end in the pair's server namespace.
    pub link_if: String,
    /// The host's address on its link (the source sees its requests come from here).
    pub link_v4: Ipv4Addr,
}

pub struct Fleet {
    // Hosts before the hub: dropping a host's namespaces deletes its link, then the hub goes.
    pub hosts: Vec<Host>,
    pub hub: Netns,
}

/// Writes `value` to `/proc/sys/<key>` as seen from `netns` (`/proc/sys/net` shows the network
/// namespace of the task that opens it).
fn sysctl(netns: &Netns, key: &str, value: &str) {
    let path = format!("/proc/sys/{key}");
    netns.run_in(|| std::fs::write(&path, value).unwrap_or_else(|e| panic!("{path}: {e}")));
}

impl Fleet {
    /// `n` hosts, each with `sources` (client addresses of any country, see
    /// [`Pair::add_source`]), and a hub that owns [`SOURCE_V4`].
    pub fn new(n: usize, sources: &[IpAddr]) -> Self {
        assert!(
            (1..=MAX_HOSTS).contains(&n),
            "a fleet has 1 to {MAX_HOSTS} hosts"
        );
        let hub = Netns::new("gfh");
        hub.ip(&["addr", "add", &format!("{SOURCE_V4}/32"), "dev", "lo"]);
        let mut fleet = Self {
            hosts: Vec::with_capacity(n),
            hub,
        };
        for k in 0..n {
            let host = fleet.join(k as u8, sources);
            fleet.hosts.push(host);
        }
        fleet
    }

    fn join(&self, k: u8, sources: &[IpAddr]) -> Host {
        let pair = Pair::new();
        for &s in sources {
            pair.add_source(s);
        }
        let (hub_if, link_if) = (unique("gvh"), unique("gvl"));
        let hub_v4 = Ipv4Addr::new(10, 210, k, 1);
        let link_v4 = Ipv4Addr::new(10, 210, k, 2);
        crate::netns::sh(
            "ip",
            &[
                "link",
                "add",
                &hub_if,
                "netns",
                &self.hub.name,
                "type",
                "veth",
                "peer",
                "name",
                &link_if,
                "netns",
                &pair.server.name,
            ],
        );
        for (ns, ifname, addr) in [
            (&self.hub, &hub_if, hub_v4),
            (&pair.server, &link_if, link_v4),
        ] {
            sysctl(ns, &format!("net/ipv6/conf/{ifname}/disable_ipv6"), "1");
            ns.ip(&["addr", "add", &format!("{addr}/30"), "dev", ifname]);
            ns.ip(&["link", "set", ifname, "up"]);
        }
        pair.server.ip(&[
            "route",
            "add",
            &format!("{SOURCE_V4}/32"),
            "via",
            &hub_v4.to_string(),
            "dev",
            &link_if,
        ]);
        Host {
            pair,
            hub_if,
            link_if,
            link_v4,
        }
    }
}

impl Host {
    /// Bytes the hub received from and sent to this host over its link so far (the kernel's
    /// counters of the hub's end): every request, response, handshake and ACK.
    pub fn link_bytes(&self, hub: &Netns) -> (u64, u64) {
        let out = hub.ip(&["-s", "-j", "link", "show", "dev", &self.hub_if]);
        let json: serde_json::Value =
            serde_json::from_slice(&out.stdout).expect("`ip -j -s link` JSON");
        let stats = &json[0]["stats64"];
        let read = |dir: &str| {
            stats[dir]["bytes"]
                .as_u64()
                .unwrap_or_else(|| panic!("no {dir} bytes in {json}"))
        };
        (read("rx"), read("tx"))
    }
}

impl Fleet {
    /// The policy source on [`SOURCE_V4`]:[`SOURCE_PORT`] in the hub, serving the small test
    /// database (scenario.rs) as `v4.csv` and `v6.csv`, and no document yet.
    pub fn source(&self) -> PolicyServer {
        let server = PolicyServer::start(&self.hub, SocketAddr::new(SOURCE_V4.into(), SOURCE_PORT));
        server.publish("v4.csv", DB_V4);
        server.publish("v6.csv", DB_V6);
        server
    }

    /// `geofilter run` on every host (see [`daemon_args`]), a few at a time; returns when all
    /// are ready.
    pub fn start_daemons(&self, source: &PolicyServer, extra: &[&str]) -> Vec<Daemon> {
        let mut daemons = Vec::with_capacity(self.hosts.len());
        for chunk in self.hosts.chunks(STARTS_AT_ONCE) {
            std::thread::scope(|s| {
                let started: Vec<_> = chunk
                    .iter()
                    .map(|host| {
                        s.spawn(move || {
                            let args = daemon_args(host, source, extra);
                            let args: Vec<&str> = args.iter().map(String::as_str).collect();
                            Daemon::start(&host.pair.server, &args)
                        })
                    })
                    .collect();
                daemons.extend(started.into_iter().map(|t| t.join().expect("daemon start")));
            });
        }
        daemons
    }

    /// A probe on every host, from `sources` to the server's IPv4 address.
    pub fn probes(&self, sources: &[IpAddr]) -> Vec<Probe> {
        self.hosts
            .iter()
            .map(|h| {
                Probe::new(
                    &h.pair,
                    crate::netns::SERVER_V4.parse().expect("v4"),
                    sources,
                )
            })
            .collect()
    }
}

/// `--iface <server_if> --policy <source URL> --metrics METRICS <extra>`: a host's `run`
/// arguments (also for restarts).
pub fn daemon_args(host: &Host, source: &PolicyServer, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "--iface",
        &host.pair.server_if,
        "--policy",
        &source.url(POLICY_PATH),
        "--metrics",
        METRICS,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// A policy document (SPEC-13) denying `countries`, with the databases at `dbs` (URLs or
/// `{ url, sha256 }` tables, as TOML).
pub fn document(countries: &[&str], dbs: &[String]) -> String {
    let quoted = |items: &mut dyn Iterator<Item = String>| items.collect::<Vec<_>>().join(", ");
    format!(
        "# published by the fleet test\ndbs = [{}]\n\n[policy]\nmode = \"deny\"\ncountries = [{}]\n",
        quoted(&mut dbs.iter().cloned()),
        quoted(&mut countries.iter().map(|c| format!("\"{c}\"")))
    )
}

/// The source's own database URLs, quoted for [`document`].
pub fn source_dbs(source: &PolicyServer) -> Vec<String> {
    ["v4.csv", "v6.csv"]
        .iter()
        .map(|p| format!("\"{}\"", source.url(p)))
        .collect()
}

/// How long after `since` each probe first saw `source` pass (probing all hosts at once), or
/// `None` where it did not within `limit`.
pub fn converge(
    probes: &mut [Probe],
    source: IpAddr,
    since: Instant,
    limit: Duration,
) -> Vec<Option<Duration>> {
    std::thread::scope(|s| {
        let running: Vec<_> = probes
            .iter_mut()
            .map(|p| s.spawn(move || p.time_until_passes(source, since, limit)))
            .collect();
        running
            .into_iter()
            .map(|t| t.join().expect("probe thread"))
            .collect()
    })
}

/// [`Probe::assert_enforces`] on every host at once; `what` names the step.
pub fn assert_all_enforce(probes: &mut [Probe], passed: &[IpAddr], dropped: &[IpAddr], what: &str) {
    std::thread::scope(|s| {
        let running: Vec<_> = probes
            .iter_mut()
            .enumerate()
            .map(|(k, p)| {
                s.spawn(move || p.assert_enforces(passed, dropped, &format!("host {k}, {what}")))
            })
            .collect();
        for t in running {
            if let Err(panic) = t.join() {
                std::panic::resume_unwind(panic);
            }
        }
    });
}

impl Host {
    /// The status of the daemon's `GET /ready` ([`METRICS`], in this host's namespace).
    pub fn ready(&self) -> u16 {
        let addr = METRICS.parse().expect("metrics address");
        crate::policy_server::get(&self.pair.server, addr, "ready", Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("GET http://{addr}/ready: {e}"))
            .0
    }
}
