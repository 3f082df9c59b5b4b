//! Country numbering shared by kernel and user space.
//!
//! A country is its two-letter code packed into a dense number, so per-country state (policy,
//! counters) lives in plain arrays indexed by it: no hashing on the packet path.

/// A country number: 0 is "unknown", `1..=676` are the two-letter codes `AA..=ZZ`.
pub type CountryId = u16;

/// Addresses that no database places, and database pseudo-codes such as `??`.
pub const UNKNOWN_COUNTRY: CountryId = 0;

/// Slots in per-country arrays: 677 ids rounded up to a multiple of 8.
pub const COUNTRY_SLOTS: u32 = 680;

/// The id of an upper-case two-letter code, or `None` for anything else.
///
/// Whether the code is an assigned ISO 3166-1 country is the daemon's concern; this is only the
/// numbering.
pub const fn country_id(code: [u8; 2]) -> Option<CountryId> {
    let [a, b] = code;
    if a.is_ascii_uppercase() && b.is_ascii_uppercase() {
        Some((a - b'A') as CountryId * 26 + (b - b'A') as CountryId + 1)
    } else {
        None
    }
}

/// The code of a country id, or `None` for [`UNKNOWN_COUNTRY`] and out-of-range ids.
pub const fn country_code(id: CountryId) -> Option<[u8; 2]> {
    if id == UNKNOWN_COUNTRY || id > 676 {
        return None;
    }
    let n = id - 1;
    Some([b'A' + (n / 26) as u8, b'A' + (n % 26) as u8])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_round_trips_and_fits_the_slots() {
        for a in b'A'..=b'Z' {
            for b in b'A'..=b'Z' {
                let id = country_id([a, b]).unwrap();
                assert!(id != UNKNOWN_COUNTRY && (id as u32) < COUNTRY_SLOTS);
                assert_eq!(country_code(id), Some([a, b]));
            }
        }
    }

    #[test]
    fn rejects_non_letters() {
        assert_eq!(country_id(*b"ru"), None);
        assert_eq!(country_id(*b"??"), None);
        assert_eq!(country_id(*b"A1"), None);
        assert_eq!(country_code(UNKNOWN_COUNTRY), None);
        assert_eq!(country_code(677), None);
    }
}
