//! Sampled packet events from the program's ring buffer (see `geofilter_common::events`): read
//! here, kept in a small in-memory history, and streamed to `geofilter log --follow` clients.
//!
//! The program emits only while [`EventConfig::listeners`] is set; [`EventHub`] sets it while at
//! least one follower is connected (or always, with `run --event-history`) and clears it when the
//! last one leaves, so an unwatched filter pays one array read per packet for events.

use std::{
    collections::{BTreeSet, VecDeque},
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    sync::{Arc, Mutex},
    time::{SystemTime, UNIX_EPOCH},
};

use aya::{
    Ebpf,
    maps::{Array, MapData, RingBuf},
};
use geofilter_common::{
    CountryId, Verdict,
    events::{EVENT_PORT, EVENTS_PASSED, Event, EventConfig},
    maps as names,
};
use serde::{Deserialize, Serialize};
use tokio::{io::unix::AsyncFd, sync::broadcast};
use tracing::warn;

use super::{DatapathError, map_err, take_map};
use crate::{country::code_str, family::Family, geoip::CompiledDb};

/// Events kept for `log` (the last [`LOG_RECENT`]) and `top` (all of them): at the default rate
/// on two CPUs, about 80 s.
pub const HISTORY: usize = 16 * 1024;
/// Events `log` without `--follow` prints.
pub const LOG_RECENT: usize = 1000;
/// Default of `run --event-rate`.
pub const DEFAULT_RATE: u32 = 100;

/// The program's event maps.
pub struct EventMaps {
    ring: RingBuf<MapData>,
    config: Array<MapData, EventConfig>,
}

impl EventMaps {
    pub(super) fn take(ebpf: &mut Ebpf) -> Result<Self, DatapathError> {
        Ok(Self {
            ring: take_map(ebpf, names::EVENTS)?,
            config: take_map(ebpf, names::EVENT_CONFIG)?,
        })
    }

    /// Tells the program whether and how to emit.
    pub fn configure(&mut self, config: &EventConfig) -> Result<(), DatapathError> {
        self.config
            .set(0, config, 0)
            .map_err(map_err(names::EVENT_CONFIG))
    }

    /// The events waiting in the ring buffer, without blocking.
    pub fn drain(&mut self) -> Vec<Event> {
        let mut events = Vec::new();
        while let Some(item) = self.ring.next() {
            events.extend(decode(&item));
        }
        events
    }
}

fn decode(bytes: &[u8]) -> Option<Event> {
    if bytes.len() < size_of::<Event>() {
        return None;
    }
    // SAFETY: `Event` is plain `repr(C)` integers (any bit pattern is valid); the length was
    // checked and `read_unaligned` needs no alignment.
    Some(unsafe { bytes.as_ptr().cast::<Event>().read_unaligned() })
}

/// One event as clients see it (`log --json` prints these).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoggedEvent {
    /// Wall-clock time of the packet, milliseconds since the Unix epoch.
    pub unix_ms: u64,
    /// The source address the packet was filtered as (an IPv4 address an IPv6 source embeds).
    pub address: IpAddr,
    /// Two-letter code, `??` for addresses no database places.
    pub country: String,
    #[serde(skip)]
    pub country_id: CountryId,
    /// IP protocol number (6 TCP, 17 UDP, 1 ICMP, 58 ICMPv6, ...).
    pub protocol: u8,
    /// Destination port, for TCP and UDP with a readable header.
    pub port: Option<u16>,
    /// `drop`, `would_drop` (monitor mode) or `pass` (with `--passed`).
    pub verdict: String,
    /// The database prefix the address fell in (as `why` names it), when the database the
    /// daemon holds places it in the event's country.
    pub prefix: Option<String>,
}

impl LoggedEvent {
    /// `event` with its kernel time (CLOCK_MONOTONIC) turned into wall-clock time as of now.
    pub fn from_kernel(event: &Event) -> Self {
        let now_mono = monotonic_ns();
        let unix_ns = unix_ns().saturating_sub(now_mono.saturating_sub(event.time_ns));
        let address = if event.family == 4 {
            let [a, b, c, d, ..] = event.addr;
            IpAddr::V4(Ipv4Addr::new(a, b, c, d))
        } else {
            IpAddr::V6(Ipv6Addr::from(event.addr))
        };
        let verdict = Verdict::ALL
            .into_iter()
            .find(|v| *v as u8 == event.verdict)
            .map_or("unknown", Verdict::name);
        Self {
            unix_ms: unix_ns / 1_000_000,
            address,
            country: code_str(event.country),
            country_id: event.country,
            protocol: event.protocol,
            port: (event.flags & EVENT_PORT != 0).then_some(event.port),
            verdict: verdict.to_owned(),
            prefix: None,
        }
    }
}

fn unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// bpf_ktime_get_ns's clock (kernel/bpf/helpers.c: `ktime_get_mono_fast_ns`, CLOCK_MONOTONIC).
fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid clock id and a pointer to a live timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Whether a client that asked for `countries` (all when empty) wants `event`.
pub fn wanted(countries: &BTreeSet<CountryId>, event: &LoggedEvent) -> bool {
    countries.is_empty() || countries.contains(&event.country_id)
}

/// What [`EventHub::top`] found.
pub struct Top {
    pub events: u64,
    pub prefixes: Vec<(String, String, u64)>,
    pub countries: Vec<(String, String, u64)>,
}

/// `run`'s event settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventSettings {
    /// Events per second per CPU; 0 turns events off.
    pub rate: u32,
    /// Events a CPU may emit at once after a quiet spell.
    pub burst: u32,
    /// Keep listening with no client connected, so `log` and `top` have a history.
    pub always: bool,
}

#[derive(Default)]
struct Listeners {
    followers: usize,
    passed: usize,
}

/// The daemon's side of the events: the config map, the history and the followers.
pub struct EventHub {
    settings: EventSettings,
    maps_config: Mutex<Array<MapData, EventConfig>>,
    listeners: Mutex<Listeners>,
    history: Mutex<VecDeque<LoggedEvent>>,
    feed: broadcast::Sender<LoggedEvent>,
    /// The database the tables were compiled from (replaced on every reload): the kernel's
    /// record has no prefix, so the daemon names it, at most --event-rate times a second per CPU.
    db: Mutex<Option<Arc<CompiledDb>>>,
}

/// A follower's subscription: events as they arrive. Dropping it stops the program emitting once
/// nobody else listens.
pub struct Follow {
    hub: Arc<EventHub>,
    passed: bool,
    pub events: broadcast::Receiver<LoggedEvent>,
}

impl Drop for Follow {
    fn drop(&mut self) {
        let mut listeners = self.hub.lock_listeners();
        listeners.followers -= 1;
        if self.passed {
            listeners.passed -= 1;
        }
        self.hub.apply(&listeners);
    }
}

impl EventHub {
    /// The hub over `maps`, and the ring buffer for [`pump`] to read.
    pub fn new(
        maps: EventMaps,
        settings: EventSettings,
    ) -> Result<(Arc<Self>, RingBuf<MapData>), DatapathError> {
        let EventMaps { ring, config } = maps;
        let hub = Arc::new(Self {
            settings,
            maps_config: Mutex::new(config),
            listeners: Mutex::default(),
            history: Mutex::new(VecDeque::with_capacity(HISTORY)),
            feed: broadcast::channel(4096).0,
            db: Mutex::new(None),
        });
        hub.write(&Listeners::default())?;
        Ok((hub, ring))
    }

    pub fn settings(&self) -> EventSettings {
        self.settings
    }

    fn lock_listeners(&self) -> std::sync::MutexGuard<'_, Listeners> {
        self.listeners.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self, listeners: &Listeners) -> Result<(), DatapathError> {
        let on = self.settings.rate > 0 && (self.settings.always || listeners.followers > 0);
        let mut config = EventConfig::limit(self.settings.rate.max(1), self.settings.burst.max(1));
        config.listeners = u32::from(on);
        if listeners.passed > 0 {
            config.flags |= EVENTS_PASSED;
        }
        let mut map = self.maps_config.lock().unwrap_or_else(|e| e.into_inner());
        map.set(0, config, 0).map_err(map_err(names::EVENT_CONFIG))
    }

    /// Writes the config for `listeners`; a failure only loses events, so it is logged.
    fn apply(&self, listeners: &Listeners) {
        if let Err(e) = self.write(listeners) {
            warn!(error = %e, "updating the event config failed");
        }
    }

    /// Starts following (with passed packets too if `passed`).
    pub fn follow(self: &Arc<Self>, passed: bool) -> Follow {
        let events = self.feed.subscribe();
        let mut listeners = self.lock_listeners();
        listeners.followers += 1;
        if passed {
            listeners.passed += 1;
        }
        self.apply(&listeners);
        Follow {
            hub: self.clone(),
            passed,
            events,
        }
    }

    /// The history, oldest first.
    pub fn history(&self) -> Vec<LoggedEvent> {
        let history = self.history.lock().unwrap_or_else(|e| e.into_inner());
        history.iter().cloned().collect()
    }

    /// Events `log` prints without `--follow`: the last [`LOG_RECENT`] of `countries` (all when
    /// empty), oldest first.
    pub fn recent(&self, countries: &BTreeSet<CountryId>) -> Vec<LoggedEvent> {
        let history = self.history.lock().unwrap_or_else(|e| e.into_inner());
        let mut recent: Vec<LoggedEvent> = history
            .iter()
            .rev()
            .filter(|e| wanted(countries, e))
            .take(LOG_RECENT)
            .cloned()
            .collect();
        recent.reverse();
        recent
    }

    /// `top` over the events of the last `window_s` seconds: how many there were, and the
    /// `limit` most frequent source aggregates and countries as `(key, country, events)`.
    pub fn top(&self, window_s: u64, limit: usize) -> Top {
        let since = unix_ns() / 1_000_000 - window_s.saturating_mul(1000);
        let history = self.history.lock().unwrap_or_else(|e| e.into_inner());
        let window: Vec<&LoggedEvent> = history.iter().filter(|e| e.unix_ms >= since).collect();
        Top {
            events: window.len() as u64,
            prefixes: ranked(
                window
                    .iter()
                    .map(|e| (aggregate(e.address), e.country.as_str())),
                limit,
            ),
            countries: ranked(
                window
                    .iter()
                    .map(|e| (e.country.clone(), e.country.as_str())),
                limit,
            ),
        }
    }

    /// The database events are explained with from now on.
    pub fn use_db(&self, db: Arc<CompiledDb>) {
        *self.db.lock().unwrap_or_else(|e| e.into_inner()) = Some(db);
    }

    fn record(&self, mut event: LoggedEvent) {
        if let Some(db) = &*self.db.lock().unwrap_or_else(|e| e.into_inner()) {
            event.prefix = db
                .lookup(event.address)
                .filter(|p| p.info.country == event.country_id)
                .map(|p| format!("{}/{}", Family::of(event.address).ip(p.addr), p.len));
        }
        {
            let mut history = self.history.lock().unwrap_or_else(|e| e.into_inner());
            if history.len() == HISTORY {
                history.pop_front();
            }
            history.push_back(event.clone());
        }
        // No receiver is not an error: events go to the history either way.
        let _ = self.feed.send(event);
    }
}

/// Reads the ring buffer whenever the kernel says it has data (epoll on the map fd, through
/// tokio's `AsyncFd`), until the task is dropped.
pub async fn pump(ring: RingBuf<MapData>, hub: Arc<EventHub>) {
    // SAFETY: the RingBuf owns its map fd (MapData holds an OwnedFd) for as long as the AsyncFd
    // owns the RingBuf, and returns that same fd every time.
    let mut ring = match unsafe { AsyncFd::register(ring) } {
        Ok(ring) => ring,
        Err(e) => {
            let e = e.into_parts().1;
            warn!(error = %e, "cannot poll the event ring buffer; `geofilter log` stays empty");
            return;
        }
    };
    loop {
        let mut guard = match ring.readable_mut().await {
            Ok(guard) => guard,
            Err(e) => {
                warn!(error = %e, "polling the event ring buffer failed; events stop");
                return;
            }
        };
        let ring = guard.get_inner_mut();
        while let Some(item) = ring.next() {
            if let Some(event) = decode(&item) {
                hub.record(LoggedEvent::from_kernel(&event));
            }
        }
        guard.clear_ready();
    }
}

/// The source aggregate `top` counts an address under: its /24 (IPv4) or /48 (IPv6), the sizes
/// operators block and providers assign.
pub fn aggregate(address: IpAddr) -> String {
    match address {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            format!("{}/24", Ipv4Addr::new(a, b, c, 0))
        }
        IpAddr::V6(v6) => {
            let net = u128::from(v6) & !((1u128 << 80) - 1);
            format!("{}/48", Ipv6Addr::from(net))
        }
    }
}

/// The keys of `keys` by how often they occur, most first (ties by key), at most `limit`.
pub fn ranked<'a>(
    keys: impl Iterator<Item = (String, &'a str)>,
    limit: usize,
) -> Vec<(String, String, u64)> {
    let mut counts: std::collections::BTreeMap<String, (String, u64)> = Default::default();
    for (key, country) in keys {
        let entry = counts.entry(key).or_insert_with(|| (country.to_owned(), 0));
        entry.1 += 1;
    }
    let mut rows: Vec<_> = counts.into_iter().map(|(k, (c, n))| (k, c, n)).collect();
    rows.sort_by(|a, b| b.2.cmp(&a.2).then_with(|| a.0.cmp(&b.0)));
    rows.truncate(limit);
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregates_are_slash_24_and_slash_48() {
        assert_eq!(aggregate("5.45.200.7".parse().unwrap()), "5.45.200.0/24");
        assert_eq!(
            aggregate("2a02:6b8:1:2:3::7".parse().unwrap()),
            "2a02:6b8:1::/48"
        );
    }

    #[test]
    fn ranked_counts_most_first() {
        let keys = ["b", "a", "b", "c", "b", "a"].map(|k| (k.to_owned(), "RU"));
        let rows = ranked(keys.into_iter(), 2);
        assert_eq!(
            rows,
            [("b".into(), "RU".into(), 3), ("a".into(), "RU".into(), 2)]
        );
    }

    #[test]
    fn kernel_events_become_wall_clock_records() {
        let event = Event {
            time_ns: monotonic_ns(),
            addr: [5, 45, 200, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            country: geofilter_common::country::country_id(*b"RU").unwrap(),
            port: 53,
            family: 4,
            protocol: 17,
            verdict: Verdict::Drop as u8,
            flags: EVENT_PORT,
        };
        let logged = LoggedEvent::from_kernel(&event);
        assert_eq!(logged.address, "5.45.200.7".parse::<IpAddr>().unwrap());
        assert_eq!((logged.country.as_str(), logged.port), ("RU", Some(53)));
        assert_eq!(logged.verdict, "drop");
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        assert!(
            now_ms.abs_diff(logged.unix_ms) < 1000,
            "{now_ms} vs {logged:?}"
        );
        let portless = Event { flags: 0, ..event };
        assert_eq!(LoggedEvent::from_kernel(&portless).port, None);
    }
}
