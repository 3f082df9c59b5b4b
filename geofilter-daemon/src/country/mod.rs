//! Country codes, in one place: which two-letter codes are countries ([`table`]), how database
//! files write them ([`parse_database_code`]), how users type them ([`parse_user_code`]), and
//! what a user probably meant by a wrong one ([`UnknownCountry`]).
//!
//! [`geofilter_common::country`] only numbers the codes `AA..=ZZ` (the numbering the kernel
//! shares); this module decides which of them are real, so a typo such as `--block RX` fails
//! instead of silently blocking nothing.

mod database;
mod suggest;
pub mod table;

use std::collections::BTreeSet;

pub(crate) use database::CodeReader;
pub use database::parse_database_code;
use geofilter_common::country::{country_code, country_id};
pub use geofilter_common::{CountryId, UNKNOWN_COUNTRY};
pub use suggest::UnknownCountry;

/// The English short name of a country, or `None` for [`UNKNOWN_COUNTRY`] and unassigned codes.
pub fn english_name(id: CountryId) -> Option<&'static str> {
    table::position(country_code(id)?).map(|i| table::COUNTRIES[i].1)
}

/// The two-letter code of an id as text (`"??"` for unknown, as databases write it), for
/// database output and the policy.
pub fn code_str(id: CountryId) -> String {
    match country_code(id) {
        Some([a, b]) => format!("{}{}", a as char, b as char),
        None => "??".to_owned(),
    }
}

/// The code of an id as reports show it: `"unknown"` for [`UNKNOWN_COUNTRY`], else the code
/// (`status`, `stats`, metrics labels and refusals use this).
pub fn code_or_unknown(id: CountryId) -> String {
    if id == UNKNOWN_COUNTRY {
        "unknown".to_owned()
    } else {
        code_str(id)
    }
}

/// A country given by a user (`--block ru`): case-insensitive, must be a known country.
///
/// On error the message suggests the closest codes, and the code of a country the user typed by
/// name (`"germany"` → `DE`).
pub fn parse_user_code(s: &str) -> Result<CountryId, UnknownCountry> {
    if let &[a, b] = s.trim().as_bytes() {
        let code = [a.to_ascii_uppercase(), b.to_ascii_uppercase()];
        if table::known(code) {
            return Ok(country_id(code).expect("known codes are letters"));
        }
    }
    Err(suggest::unknown(s))
}

/// User-given country codes; all must be valid or nothing is applied.
pub fn parse_user_codes<S: AsRef<str>>(codes: &[S]) -> Result<BTreeSet<CountryId>, UnknownCountry> {
    codes.iter().map(|c| parse_user_code(c.as_ref())).collect()
}

/// The id of a code the tests know is well-formed.
#[cfg(test)]
pub(crate) fn test_id(code: &str) -> CountryId {
    let b = code.as_bytes();
    country_id([b[0], b[1]]).expect("test codes are two upper-case letters")
}

#[cfg(test)]
mod tests {
    use super::{table::COUNTRIES, test_id as id, *};

    #[test]
    fn list_is_complete_sorted_and_named() {
        // 249 assigned ISO 3166-1 codes plus XK.
        assert_eq!(COUNTRIES.len(), 250);
        assert!(COUNTRIES.windows(2).all(|w| w[0].0 < w[1].0));
        for &(code, name) in COUNTRIES {
            assert_eq!(code.len(), 2);
            assert!(!name.is_empty());
            assert_eq!(english_name(id(code)), Some(name));
        }
        assert_eq!(english_name(id("DE")), Some("Germany"));
        assert_eq!(english_name(UNKNOWN_COUNTRY), None);
        assert_eq!(english_name(id("QQ")), None);
    }

    #[test]
    fn user_codes() {
        assert_eq!(parse_user_code("ru"), Ok(id("RU")));
        assert_eq!(parse_user_code("Us"), Ok(id("US")));
        assert_eq!(parse_user_code("XK"), Ok(id("XK")));
        // Pseudo-codes are not countries a user can block.
        assert!(parse_user_code("EU").is_err());
        assert!(parse_user_code("??").is_err());
    }
}
