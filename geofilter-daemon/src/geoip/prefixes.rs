//! Cutting an address range into CIDR prefixes, and the inverse: the last address of a prefix.

use geofilter_common::PrefixInfo;

use super::{Prefix, text::host_mask};

/// Splits `start..=end` into the fewest CIDR prefixes (see [`for_each_prefix`]).
pub(crate) fn split_into_prefixes(
    start: u128,
    end: u128,
    bits: u32,
    info: PrefixInfo,
    out: &mut Vec<Prefix>,
) {
    for_each_prefix(start, end, bits, |addr, len| {
        out.push(Prefix { addr, len, info })
    });
}

/// Calls `f(addr, len)` for each of the fewest CIDR prefixes that make up `start..=end`, in
/// order (greedy: at each step the largest block that starts at `start`, is aligned to its
/// size, and does not pass `end`).
pub(crate) fn for_each_prefix(mut start: u128, end: u128, bits: u32, mut f: impl FnMut(u128, u8)) {
    debug_assert!(start <= end && (bits == 128 || end >> bits == 0));
    loop {
        let align = start.trailing_zeros().min(bits);
        let span = end - start; // addresses in the rest, minus one
        // floor(log2(span + 1)): the largest power of two that fits.
        let fit = match span.checked_add(1) {
            Some(count) => 127 - count.leading_zeros(),
            None => 128,
        };
        let k = align.min(fit);
        f(start, (bits - k) as u8);
        if k == 128 {
            break;
        }
        match start.checked_add(1 << k) {
            Some(next) if next <= end => start = next,
            _ => break,
        }
    }
}

/// The last address of a prefix.
pub(crate) fn last_addr(addr: u128, len: u8, bits: u32) -> u128 {
    addr | host_mask(len.into(), bits)
}

#[cfg(test)]
mod tests {
    use super::{super::tests::v4, *};

    fn split(start: u128, end: u128, bits: u32) -> Vec<(u128, u8)> {
        let mut out = Vec::new();
        let info = PrefixInfo {
            country: 1,
            source: 0,
        };
        split_into_prefixes(start, end, bits, info, &mut out);
        // Contiguous cover of exactly start..=end, each block aligned.
        let mut next = Some(start);
        for p in &out {
            assert_eq!(Some(p.addr), next);
            assert_eq!(p.addr & host_mask(p.len.into(), bits), 0, "unaligned");
            next = last_addr(p.addr, p.len, bits).checked_add(1);
        }
        assert_eq!(next, end.checked_add(1));
        out.iter().map(|p| (p.addr, p.len)).collect()
    }

    #[test]
    fn prefixes_of_edge_ranges() {
        assert_eq!(split(0, u32::MAX as u128, 32), [(0, 0)]);
        assert_eq!(split(0, u128::MAX, 128), [(0, 0)]);
        assert_eq!(split(u128::MAX, u128::MAX, 128), [(u128::MAX, 128)]);
        assert_eq!(
            split(u32::MAX as u128, u32::MAX as u128, 32),
            [(u32::MAX as u128, 32)]
        );
        assert_eq!(split(0, 0, 32), [(0, 32)]);
        // The upper half of each space, ending at the very last address.
        assert_eq!(split(1 << 31, u32::MAX as u128, 32), [(1 << 31, 1)]);
        assert_eq!(split(1 << 127, u128::MAX, 128), [(1 << 127, 1)]);
        // Everything but the first address: one prefix per bit.
        assert_eq!(split(1, u32::MAX as u128, 32).len(), 32);
        assert_eq!(split(1, u128::MAX, 128).len(), 128);
        // Everything but the last address.
        assert_eq!(split(0, u128::MAX - 1, 128).len(), 128);
        // Worst case: 2 * (bits - 1) prefixes.
        assert_eq!(split(1, u32::MAX as u128 - 1, 32).len(), 62);
        assert_eq!(split(1, u128::MAX - 1, 128).len(), 254);
        // Real unaligned range from GeoLite2.
        let p = split(v4("6.0.0.0"), v4("7.81.167.144"), 32);
        assert_eq!(p[0], (v4("6.0.0.0"), 8));
        assert_eq!(p[1], (v4("7.0.0.0"), 10));
        assert_eq!(*p.last().unwrap(), (v4("7.81.167.144"), 32));
        assert_eq!(
            split(v4("1.0.0.0"), v4("1.0.0.255"), 32),
            [(v4("1.0.0.0"), 24)]
        );
        assert_eq!(
            split(v4("10.0.0.1"), v4("10.0.0.6"), 32),
            [
                (v4("10.0.0.1"), 32),
                (v4("10.0.0.2"), 31),
                (v4("10.0.0.4"), 31),
                (v4("10.0.0.6"), 32)
            ]
        );
    }
}
