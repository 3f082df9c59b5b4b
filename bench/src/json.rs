//! The JSON line: one object, keys in the order of the issues that defined them (issue 5 the
//! first ones, issue 12 `by_sources`, the IPv6 and flood rows and `memory`, issue 13 `fleet`).

use serde_json::Value;

use crate::{
    report::{Results, table_bytes},
    test_run::{Costs, Lookups},
};

/// A JSON object that keeps its keys in the order they were added (serde_json's own maps sort
/// them unless its `preserve_order` feature is on, which would change every user's build).
struct Object(Vec<(String, String)>);

impl Object {
    fn new() -> Self {
        Self(Vec::new())
    }

    /// Adds a scalar.
    fn num(self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.raw(key, value.into().to_string())
    }

    /// Adds a nested object.
    fn obj(self, key: impl Into<String>, value: Object) -> Self {
        self.raw(key, value.render())
    }

    fn raw(mut self, key: impl Into<String>, text: String) -> Self {
        self.0.push((key.into(), text));
        self
    }

    fn render(&self) -> String {
        let fields: Vec<String> = self
            .0
            .iter()
            .map(|(k, v)| format!("{}:{v}", Value::from(k.as_str())))
            .collect();
        format!("{{{}}}", fields.join(","))
    }
}

fn lookups(l: &Lookups) -> Object {
    Object::new()
        .num("floor_ns", l.floor)
        .num("lpm_trie_ns", l.lpm_trie)
        .num("geofilter_ns", l.geofilter)
}

/// One family's test_run object: the figures at the default source count, then the sweep.
fn family(costs: &Costs, sweep: impl Iterator<Item = (usize, Lookups)>) -> Object {
    let mut by_sources = Object::new();
    for (n, l) in sweep {
        by_sources = by_sources.obj(n.to_string(), lookups(&l));
    }
    lookups(&costs.lookups)
        .num("geofilter_listening_ns", costs.listening)
        .obj("by_sources", by_sources)
}

/// `{exclusive_ns, dispatcher_ns}`, or `{error}` where the kernel refused the dispatcher.
fn dispatcher(cost: &crate::dispatcher::Cost) -> Object {
    match cost {
        Ok(c) => Object::new()
            .num("exclusive_ns", c.exclusive)
            .num("dispatcher_ns", c.dispatcher),
        Err(e) => Object::new().num("error", e.as_str()),
    }
}

/// `fleet`: `converge_ms.<hosts>` (median of the rounds' slowest host), and the idle cost per
/// host per hour at the default interval.
fn fleet(f: &crate::fleet::Results) -> Object {
    let mut converge = Object::new();
    for c in &f.converge {
        converge = converge.num(c.hosts.to_string(), c.median().as_secs_f64() * 1e3);
    }
    Object::new()
        .num("interval_s", crate::fleet::INTERVAL_S)
        .obj("converge_ms", converge)
        .num("requests_per_host_hour", f.idle.requests_per_host_hour())
        .num("bytes_per_host_hour", f.idle.bytes_per_host_hour())
        .num("bytes_per_request", f.idle.wire_bytes_per_request())
}

/// The JSON line of `--fleet-only`: `{"fleet": ...}`.
pub fn fleet_line(f: &crate::fleet::Results) -> String {
    Object::new().obj("fleet", fleet(f)).render()
}

pub fn line(r: &Results) -> String {
    let (t, l, c) = (&r.test_run, &r.live, &r.control);
    let memory: u64 = c.memory.iter().map(|m| m.bytes).sum();
    let test_run = Object::new()
        .obj(
            "ipv4",
            family(&t.v4, t.by_sources.iter().map(|p| (p.sources, p.v4))),
        )
        .obj(
            "ipv6",
            family(&t.v6, t.by_sources.iter().map(|p| (p.sources, p.v6))),
        )
        .obj(
            "prefixes",
            Object::new()
                .num("ipv4", r.world.db.v4.len())
                .num("ipv6", r.world.db.v6.len()),
        )
        .obj("dispatcher", dispatcher(&r.dispatcher));
    let live = Object::new()
        .num("geofilter_mpps", l.geofilter.mpps)
        .num("lpm_trie_mpps", l.lpm_trie.mpps)
        .num("nftables_mpps", l.nftables.mpps)
        .num("iptables_ipset_mpps", l.iptables_ipset.mpps)
        .num("geofilter_ipv6_mpps", l.geofilter_v6.mpps)
        .num("lpm_trie_ipv6_mpps", l.lpm_trie_v6.mpps)
        .obj(
            "flood",
            Object::new()
                .num("distinct_sources", l.geofilter_flood.distinct_sources)
                .num("geofilter_mpps", l.geofilter_flood.mpps)
                .num("lpm_trie_mpps", l.lpm_trie_flood.mpps),
        );
    let control = Object::new()
        .num("world_load_s", c.world_load.total.as_secs_f64())
        .num("country_change_ms", c.change.median().as_secs_f64() * 1e3)
        .num(
            "asn_change_ms",
            c.net_changes.asn.median().as_secs_f64() * 1e3,
        )
        .num(
            "list_switch_ms",
            c.net_changes.list.median().as_secs_f64() * 1e3,
        )
        .num("kernel_memory_bytes", memory)
        .num("nftables_load_s", c.nft_load.as_secs_f64())
        .num("ipset_load_s", c.ipset_load.as_secs_f64());
    let memory = Object::new()
        .obj(
            "tables",
            Object::new()
                .num(
                    "ipv4_bytes",
                    table_bytes(&c.memory, crate::data::Family::V4),
                )
                .num(
                    "ipv6_bytes",
                    table_bytes(&c.memory, crate::data::Family::V6),
                ),
        )
        .num("kernel_bytes", memory)
        .num("daemon_peak_bytes", c.daemon_peak_rss);
    Object::new()
        .obj("test_run", test_run)
        .obj("live", live)
        .obj("control", control)
        .obj("memory", memory)
        .obj("fleet", fleet(&r.fleet))
        .raw("nets", crate::nets::json(&r.nets))
        .render()
}

#[cfg(test)]
mod tests;
