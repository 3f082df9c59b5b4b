//! The ASN rules restated as the plainest possible code, to check [`super::load`] (and the
//! kernel's table) against: a scan over every range of every file, with the country reference's
//! rule ([`crate::geoip::reference`]). Slow (linear per lookup) and obviously right, on purpose;
//! shares nothing with the compiler.

use std::net::IpAddr;

use super::{AsnSource, NO_ASN};
use crate::geoip::reference::smallest_containing;

/// The AS of `ip` by the rules of [`super`]: among all ranges containing the address, the
/// smallest; among equally small ones, the one from the later file, then the later line. `None`
/// when no range contains it or the winner is AS 0 ("no AS").
pub fn reference_lookup(sources: &[AsnSource], ip: IpAddr) -> Option<u32> {
    let ranges = sources.iter().flat_map(|s| match ip {
        IpAddr::V4(_) => &s.v4,
        IpAddr::V6(_) => &s.v6,
    });
    smallest_containing(ranges.map(|r| (r.start, r.end, r.asn)), ip).filter(|&a| a != NO_ASN)
}
