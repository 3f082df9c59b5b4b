//! The ASN rules restated as the plainest possible code, to check [`super::load`] (and the
//! kernel's table) against: a scan over every range of every file. Slow (linear per lookup) and
//! obviously right, on purpose; shares nothing with the compiler.

use std::net::IpAddr;

use super::{AsnSource, NO_ASN};

/// The AS of `ip` by the rules of [`super`]: among all ranges containing the address, the
/// smallest; among equally small ones, the one from the later file, then the later line. `None`
/// when no range contains it or the winner is AS 0 ("no AS").
pub fn reference_lookup(sources: &[AsnSource], ip: IpAddr) -> Option<u32> {
    let addr = match ip {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    };
    // (size - 1, AS) of the best range so far. Files and lines are visited in order, so `<=`
    // lets a later range of equal size take over.
    let mut best: Option<(u128, u32)> = None;
    for source in sources {
        let ranges = match ip {
            IpAddr::V4(_) => &source.v4,
            IpAddr::V6(_) => &source.v6,
        };
        for r in ranges {
            if r.start <= addr && addr <= r.end {
                let size = r.end - r.start;
                if best.is_none_or(|(best_size, _)| size <= best_size) {
                    best = Some((size, r.asn));
                }
            }
        }
    }
    best.map(|(_, asn)| asn).filter(|&a| a != NO_ASN)
}
