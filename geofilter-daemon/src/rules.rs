//! The operator's per-address and per-port rules: exception CIDRs and destination-port scopes,
//! parsed strictly (a bad CIDR or port names what is wrong) and kept in canonical form.

use std::{collections::BTreeSet, fmt, net::IpAddr, str::FromStr};

use geofilter_common::PortSet;
use ipnetwork::IpNetwork;
use serde::{Deserialize, Serialize};

/// An IPv4 or IPv6 network with no host bits set, e.g. `203.0.113.0/24`; a bare address is a
/// /32 or /128.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cidr {
    pub addr: IpAddr,
    pub len: u8,
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        IpNetwork::new(self.addr, self.len).is_ok_and(|n| n.contains(ip))
    }

    /// The network as a number within its family (IPv4 below 2^32), for map keys.
    pub fn bits(&self) -> u128 {
        match self.addr {
            IpAddr::V4(a) => u128::from(u32::from(a)),
            IpAddr::V6(a) => u128::from(a),
        }
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let text = s.trim();
        let net: IpNetwork = if text.contains('/') {
            text.parse().map_err(|e| format!("bad CIDR {s:?}: {e}"))?
        } else {
            let addr: IpAddr = text
                .parse()
                .map_err(|_| format!("bad CIDR {s:?}: not an address"))?;
            IpNetwork::from(addr)
        };
        let cidr = Cidr {
            addr: net.ip(),
            len: net.prefix(),
        };
        if net.network() != net.ip() {
            return Err(format!(
                "bad CIDR {s:?}: host bits set after /{} (did you mean {}/{}?)",
                net.prefix(),
                net.network(),
                net.prefix()
            ));
        }
        Ok(cidr)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl Serialize for Cidr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// What an exception does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExceptionAction {
    /// Always pass, whatever the country.
    Pass,
    /// Always drop (counted as would-drop in monitor mode).
    Drop,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

/// `tcp:22`, `udp:53`, or a range `tcp:8000-8100`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortRange {
    pub protocol: Protocol,
    pub first: u16,
    pub last: u16,
}

impl FromStr for PortRange {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = |why: &str| {
            format!("bad port {s:?}: {why} (expected tcp:PORT, udp:PORT or tcp:FIRST-LAST)")
        };
        let (proto, ports) = s.trim().split_once(':').ok_or_else(|| bad("no protocol"))?;
        let protocol = match proto.to_ascii_lowercase().as_str() {
            "tcp" => Protocol::Tcp,
            "udp" => Protocol::Udp,
            _ => return Err(bad("protocol must be tcp or udp")),
        };
        let port = |p: &str| {
            p.trim()
                .parse::<u16>()
                .map_err(|_| bad("not a port number 0-65535"))
        };
        let (first, last) = match ports.split_once('-') {
            Some((a, b)) => (port(a)?, port(b)?),
            None => (port(ports)?, port(ports)?),
        };
        if first > last {
            return Err(bad("range is reversed"));
        }
        Ok(PortRange {
            protocol,
            first,
            last,
        })
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let proto = match self.protocol {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        };
        if self.first == self.last {
            write!(f, "{proto}:{}", self.first)
        } else {
            write!(f, "{proto}:{}-{}", self.first, self.last)
        }
    }
}

impl Serialize for PortRange {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PortRange {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// Which destination ports geo-filtering applies to.
///
/// - no rules: every packet (ports are never read);
/// - `only`: just these TCP/UDP ports; protocols without ports (ICMP, ...) are not geo-filtered;
/// - `exempt`: every packet except these TCP/UDP ports (e.g. `tcp:80` for ACME renewals);
/// - both: the `only` ports minus the `exempt` ones.
///
/// A TCP or UDP packet whose port cannot be read (a later IP fragment, a cut header, an IPv6
/// extension chain longer than eight headers) is always geo-filtered, so fragmenting is no way
/// around the filter.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortScope {
    #[serde(default)]
    pub only: BTreeSet<PortRange>,
    #[serde(default)]
    pub exempt: BTreeSet<PortRange>,
}

impl PortScope {
    pub fn is_everything(&self) -> bool {
        self.only.is_empty() && self.exempt.is_empty()
    }

    /// The in-scope bitmaps for TCP and UDP, and whether portless protocols are in scope.
    pub fn compile(&self) -> (PortSet, PortSet, bool) {
        let base = if self.only.is_empty() {
            PortSet::FULL
        } else {
            PortSet::EMPTY
        };
        let (mut tcp, mut udp) = (base, base);
        let mut apply = |ranges: &BTreeSet<PortRange>, on: bool| {
            for r in ranges {
                let set = match r.protocol {
                    Protocol::Tcp => &mut tcp,
                    Protocol::Udp => &mut udp,
                };
                for port in r.first..=r.last {
                    set.set(port, on);
                }
            }
        };
        apply(&self.only, true);
        apply(&self.exempt, false);
        (tcp, udp, self.only.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_are_strict_and_canonical() {
        assert_eq!(
            "203.0.113.0/24".parse::<Cidr>().unwrap().to_string(),
            "203.0.113.0/24"
        );
        assert_eq!(
            "2001:db8::1".parse::<Cidr>().unwrap().to_string(),
            "2001:db8::1/128"
        );
        let err = "203.0.113.7/24".parse::<Cidr>().unwrap_err();
        assert!(
            err.contains("host bits") && err.contains("203.0.113.0/24"),
            "{err}"
        );
        assert!("1.2.3.0/33".parse::<Cidr>().is_err());
        assert!(
            "example.com"
                .parse::<Cidr>()
                .unwrap_err()
                .contains("example.com")
        );
    }

    #[test]
    fn ports_parse_and_compile() {
        let r: PortRange = "TCP:8000-8002".parse().unwrap();
        assert_eq!(r.to_string(), "tcp:8000-8002");
        assert!("tcp:70000".parse::<PortRange>().is_err());
        assert!(
            "icmp:1"
                .parse::<PortRange>()
                .unwrap_err()
                .contains("tcp or udp")
        );
        assert!(
            "udp:9-3"
                .parse::<PortRange>()
                .unwrap_err()
                .contains("reversed")
        );

        let only = PortScope {
            only: ["tcp:22".parse().unwrap()].into(),
            exempt: BTreeSet::new(),
        };
        let (tcp, udp, portless) = only.compile();
        assert!(tcp.contains(22) && !tcp.contains(80) && !udp.contains(22) && !portless);

        let exempt = PortScope {
            only: BTreeSet::new(),
            exempt: ["tcp:80".parse().unwrap()].into(),
        };
        let (tcp, udp, portless) = exempt.compile();
        assert!(!tcp.contains(80) && tcp.contains(22) && udp.contains(80) && portless);
    }
}
