//! What the loaded program does to a source, asked with real datagrams: one from the source in
//! the client namespace to the server, and whether it arrived. Used to time how long a policy
//! change takes to be enforced, so every probe is short and bounded.
//!
//! A datagram carries a nonce, so a late one from an earlier probe is never taken for this one's.
//! Absence is only read as a drop after several tries: a veth pair loses nothing on its own, but
//! "passed" is the answer that cannot be wrong.

use std::{
    net::{IpAddr, SocketAddr, UdpSocket},
    time::{Duration, Instant},
};

use crate::netns::Pair;

/// The port probes go to (clear of [`crate::traffic::UDP_PORT`]'s sinks).
pub const PROBE_PORT: u16 = 9001;
/// How long one datagram may take to arrive before the probe counts it missing.
const ARRIVAL: Duration = Duration::from_millis(150);
/// Tries before a source counts as dropped.
const TRIES: usize = 3;
/// How often [`Probe::time_until_passes`] sends: the resolution of the times it measures.
const PACE: Duration = Duration::from_millis(20);

pub struct Probe {
    receiver: UdpSocket,
    target: SocketAddr,
    senders: Vec<(IpAddr, UdpSocket)>,
    nonce: u64,
}

impl Probe {
    /// Probes from `sources` (which the pair's client must own, [`Pair::add_source`]) to the
    /// server's IPv4 or IPv6 address.
    pub fn new(pair: &Pair, server: IpAddr, sources: &[IpAddr]) -> Self {
        let target = SocketAddr::new(server, PROBE_PORT);
        let receiver = pair
            .server
            .run_in(|| UdpSocket::bind(target).unwrap_or_else(|e| panic!("bind {target}: {e}")));
        let senders = pair.client.run_in(|| {
            sources
                .iter()
                .map(|&s| {
                    let socket = UdpSocket::bind(SocketAddr::new(s, 0))
                        .unwrap_or_else(|e| panic!("bind a sender on {s}: {e}"));
                    (s, socket)
                })
                .collect()
        });
        Self {
            receiver,
            target,
            senders,
            nonce: 0,
        }
    }

    /// One datagram from `source`: whether it arrived within [`ARRIVAL`].
    pub fn once(&mut self, source: IpAddr) -> bool {
        let nonce = self.send(source);
        self.receive(Instant::now() + ARRIVAL, source, nonce)
    }

    /// Sends the next nonce from `source`; returns it.
    fn send(&mut self, source: IpAddr) -> u64 {
        self.nonce += 1;
        self.sender(source)
            .send_to(&self.nonce.to_be_bytes(), self.target)
            .expect("send_to");
        self.nonce
    }

    /// Whether a datagram from `source` with a nonce of at least `first` arrives by `deadline`
    /// (older ones, and other sources', are skipped).
    fn receive(&self, deadline: Instant, source: IpAddr, first: u64) -> bool {
        let mut buf = [0u8; 16];
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            if left.is_zero() {
                break;
            }
            self.receiver
                .set_read_timeout(Some(left))
                .expect("read timeout");
            let Ok((n, from)) = self.receiver.recv_from(&mut buf) else {
                break;
            };
            let nonce = (n == 8).then(|| u64::from_be_bytes(buf[..8].try_into().expect("8")));
            if from.ip() == source && nonce.is_some_and(|k| k >= first) {
                return true;
            }
        }
        false
    }

    /// Whether the program passes `source`: a datagram arrived in one of [`TRIES`] tries.
    pub fn passes(&mut self, source: IpAddr) -> bool {
        (0..TRIES).any(|_| self.once(source))
    }

    /// Panics (naming `what`) unless every `passed` source passes and every `dropped` one is
    /// dropped.
    pub fn assert_enforces(&mut self, passed: &[IpAddr], dropped: &[IpAddr], what: &str) {
        for &s in passed {
            assert!(self.passes(s), "{what}: {s} should pass, but was dropped");
        }
        for &s in dropped {
            assert!(!self.passes(s), "{what}: {s} should be dropped, but passed");
        }
    }

    /// Sends a datagram from `source` every [`PACE`] until one arrives or `limit` has gone by
    /// since `since`; how long after `since` the first arrived (the change was enforced by
    /// then), or `None`.
    pub fn time_until_passes(
        &mut self,
        source: IpAddr,
        since: Instant,
        limit: Duration,
    ) -> Option<Duration> {
        let first = self.nonce + 1;
        while since.elapsed() < limit {
            self.send(source);
            if self.receive(Instant::now() + PACE, source, first) {
                return Some(since.elapsed());
            }
        }
        None
    }

    fn sender(&self, source: IpAddr) -> &UdpSocket {
        &self
            .senders
            .iter()
            .find(|(s, _)| *s == source)
            .unwrap_or_else(|| panic!("the probe has no sender on {source}"))
            .1
    }
}
