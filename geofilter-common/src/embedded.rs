//! IPv6 source addresses that stand for an IPv4 host, and which host.
//!
//! A packet from one of these addresses is filtered as its IPv4 address (the IPv4 country, the
//! IPv4 exceptions), by the XDP program and by every user-space check (`why`, the lockout check),
//! which all call [`embedded_ipv4`]. The reasoning, per range:
//!
//! - The kernel delivers all of them as ordinary IPv6 (ip6_rcv_core in net/ipv6/ip6_input.c
//!   refuses multicast and loopback sources, nothing here), and a sender picks any of them as
//!   easily as any other source. What matters is where replies go: to the embedded IPv4 host,
//!   so that host is the peer, and its country is the one that counts.
//! - The databases agree or say nothing: MaxMind DB trees point `::ffff:0:0/96` and `2002::/16`
//!   at the IPv4 tree and keep IPv4 itself at `::/96` (MaxMind DB spec, "IPv4 addresses in an
//!   IPv6 tree"); the range files place almost nothing in these IANA special-purpose blocks, so
//!   looked up as IPv6 they were unknown, which a deny list passes: a way around it for any
//!   blocked IPv4 host (issue 10). The whole geo-whois-asn-country 2026-06-17 IPv6 file has one
//!   entry there, `2002:5a0:3602::/112` as CA, while the same database places its IPv4 host
//!   5.160.54.2 in IR: a registration artefact, not where the traffic comes from.
//!
//! | range | RFC | IPv4 at | replies reach the IPv4 host through |
//! |---|---|---|---|
//! | `::ffff:0:0/96` IPv4-mapped | 4291 2.5.5.2 | bits 96-127 | a dual-stack socket, or nothing: it is IPv4 |
//! | `::/96` IPv4-compatible (not `::`, `::1`) | 4291 2.5.5.1, deprecated | bits 96-127 | an automatic sit tunnel |
//! | `64:ff9b::/96` NAT64 well-known prefix | 6052 | bits 96-127 | the site's NAT64 translator |
//! | `2002::/16` 6to4 | 3056 | bits 16-47 | a 6to4 relay |
//! | `2001::/32` Teredo | 4380 | bits 96-127, inverted | a Teredo relay and the client's NAT |
//!
//! Not covered: network-specific NAT64 prefixes (`64:ff9b:1::/48`, RFC 8215, or an operator's
//! own), whose IPv4 position depends on a prefix length only that site knows; ISATAP and 6rd,
//! whose prefixes are ordinary global space. They are looked up as the IPv6 addresses they are.

/// Which of the embeddings in the module table an address uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Embedding {
    Mapped,
    Compatible,
    Nat64,
    SixToFour,
    Teredo,
}

impl Embedding {
    /// How `why` names it.
    pub const fn name(self) -> &'static str {
        match self {
            Embedding::Mapped => "IPv4-mapped",
            Embedding::Compatible => "IPv4-compatible",
            Embedding::Nat64 => "NAT64",
            Embedding::SixToFour => "6to4",
            Embedding::Teredo => "Teredo",
        }
    }
}

/// The IPv4 address (network byte order) an IPv6 address (network byte order) embeds, with the
/// embedding; `None` for every other IPv6 address. Word compares only, so the XDP program pays a
/// few instructions per IPv6 packet and no memcmp.
#[inline(always)]
pub fn embedded_ipv4(addr: &[u8; 16]) -> Option<([u8; 4], Embedding)> {
    // Every range starts with 0x00 or 0x20: most global unicast (2a.., 24.., 26..) leaves here,
    // at one compare, instead of after assembling four words.
    if addr[0] != 0x00 && addr[0] != 0x20 {
        return None;
    }
    let w0 = u32::from_be_bytes([addr[0], addr[1], addr[2], addr[3]]);
    let w1 = u32::from_be_bytes([addr[4], addr[5], addr[6], addr[7]]);
    let w2 = u32::from_be_bytes([addr[8], addr[9], addr[10], addr[11]]);
    let w3 = u32::from_be_bytes([addr[12], addr[13], addr[14], addr[15]]);
    let kind = match w0 {
        0 if w1 == 0 && w2 == 0xffff => Embedding::Mapped,
        // `::` (unspecified) and `::1` (loopback) are no IPv4-compatible addresses.
        0 if w1 == 0 && w2 == 0 && w3 > 1 => Embedding::Compatible,
        0x0064_ff9b if w1 == 0 && w2 == 0 => Embedding::Nat64,
        0x2001_0000 => return Some(((!w3).to_be_bytes(), Embedding::Teredo)),
        _ if w0 >> 16 == 0x2002 => {
            return Some((
                ((w0 << 16) | (w1 >> 16)).to_be_bytes(),
                Embedding::SixToFour,
            ));
        }
        _ => return None,
    };
    Some((w3.to_be_bytes(), kind))
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    fn embedded(v6: &str) -> Option<(Ipv4Addr, Embedding)> {
        let addr: Ipv6Addr = v6.parse().unwrap();
        embedded_ipv4(&addr.octets()).map(|(v4, kind)| (Ipv4Addr::from(v4), kind))
    }

    #[test]
    fn each_embedding_yields_its_ipv4_address() {
        let host = Ipv4Addr::new(77, 88, 8, 8);
        for (v6, kind) in [
            ("::ffff:77.88.8.8", Embedding::Mapped),
            ("::77.88.8.8", Embedding::Compatible),
            ("64:ff9b::77.88.8.8", Embedding::Nat64),
            ("2002:4d58:808::1", Embedding::SixToFour),
            (
                "2002:4d58:808:ffff:ffff:ffff:ffff:ffff",
                Embedding::SixToFour,
            ),
            // RFC 4380 section 4: the client address is stored with every bit inverted.
            ("2001:0:4136:e378:8000:63bf:b2a7:f7f7", Embedding::Teredo),
        ] {
            assert_eq!(embedded(v6), Some((host, kind)), "{v6}");
        }
        assert_eq!(
            embedded("::0.0.0.2"),
            Some((Ipv4Addr::new(0, 0, 0, 2), Embedding::Compatible))
        );
    }

    #[test]
    fn other_ipv6_addresses_embed_nothing() {
        for v6 in [
            "::",
            "::1",
            "::fffe:77.88.8.8",
            "::1:ffff:77.88.8.8",
            "64:ff9b:1::77.88.8.8",
            "64:ff9a::77.88.8.8",
            "2001:1::1",
            "2001:db8::1",
            "2003::1",
            "2a02:6b8::1",
            "fe80::1",
            "ff02::1",
        ] {
            assert_eq!(embedded(v6), None, "{v6}");
        }
    }
}
