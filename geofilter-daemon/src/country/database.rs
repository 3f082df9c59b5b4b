//! Country codes as database files write them: case-insensitive, pseudo-codes for "no country",
//! and the rule that withdrawn, reserved and never-assigned codes read as unknown (with one
//! warning per code) instead of failing the whole file.

use geofilter_common::{CountryId, UNKNOWN_COUNTRY, country::country_id};

use super::table::{PSEUDO_CODES, RESERVED_CODES, known};

/// A country code from a database row.
///
/// Case-insensitive (per-country list files are named `ru.zone`), surrounding blanks ignored.
/// Returns `Some(id)` for a known country; `Some(UNKNOWN_COUNTRY)` for a pseudo-code, an empty
/// field, a [reserved code](RESERVED_CODES) and any other two letters ISO 3166-1 has not
/// assigned (Debian's tor-geoipdb of 2026 carries `OS` and `AB`); and `None` for anything
/// malformed (digits, punctuation, wrong length), which the readers report as an error with
/// file and line: such a column is more likely misread than right.
pub fn parse_database_code(s: &str) -> Option<CountryId> {
    classify(s).map(|(id, _)| id)
}

/// Why a database code reads as unknown, for the warning (`None`: nothing to warn about).
type Stale = Option<&'static str>;

/// [`parse_database_code`], and what to warn about.
fn classify(s: &str) -> Option<(CountryId, Stale)> {
    let s = s.trim();
    match s.as_bytes() {
        [] => Some((UNKNOWN_COUNTRY, None)),
        &[a, b] if a.is_ascii_alphabetic() && b.is_ascii_alphabetic() => {
            let code = [a.to_ascii_uppercase(), b.to_ascii_uppercase()];
            let is = |list: &[&str]| list.iter().any(|p| p.as_bytes() == code);
            if known(code) {
                country_id(code).map(|id| (id, None))
            } else if is(PSEUDO_CODES) {
                Some((UNKNOWN_COUNTRY, None))
            } else if is(RESERVED_CODES) {
                Some((UNKNOWN_COUNTRY, Some("withdrawn or reserved")))
            } else {
                Some((UNKNOWN_COUNTRY, Some("not assigned")))
            }
        }
        _ if PSEUDO_CODES.contains(&s) => Some((UNKNOWN_COUNTRY, None)),
        _ => None,
    }
}

/// [`parse_database_code`] for a reader: counts the codes it read as unknown with a warning, to
/// warn once per code (with a count and the first place) rather than once per row.
#[derive(Debug, Default)]
pub(crate) struct CodeReader {
    /// Code (upper case) -> why, how many rows, where first.
    stale: std::collections::BTreeMap<String, (&'static str, usize, String)>,
}

impl CodeReader {
    /// Parses one row's code; `at` says where the row is (`line 12`, `network 1.2.3.0/24`), and
    /// is only called the first time a code needs a warning.
    pub(crate) fn parse(&mut self, s: &str, at: impl FnOnce() -> String) -> Option<CountryId> {
        let (id, stale) = classify(s)?;
        if let Some(why) = stale {
            self.stale
                .entry(s.trim().to_ascii_uppercase())
                .or_insert_with(|| (why, 0, at()))
                .1 += 1;
        }
        Some(id)
    }

    /// Logs one warning per code of `path` that was read as unknown.
    pub(crate) fn warn(&self, path: &std::path::Path) {
        for (code, (why, rows, first)) in &self.stale {
            tracing::warn!(
                "{}: country code {code} is {why} in ISO 3166-1 (seen {rows} time(s), first at \
                 {first}); read as unknown",
                path.display()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::country::test_id as id;

    #[test]
    fn database_codes() {
        assert_eq!(parse_database_code("RU"), Some(id("RU")));
        assert_eq!(parse_database_code("ru"), Some(id("RU")));
        assert_eq!(parse_database_code(" XK "), Some(id("XK")));
        for pseudo in [
            "??", "EU", "AP", "ZZ", "XX", "A1", "A2", "O1", "", "-", "--",
        ] {
            assert_eq!(
                parse_database_code(pseudo),
                Some(UNKNOWN_COUNTRY),
                "{pseudo}"
            );
        }
        // Withdrawn or reserved: unknown, not an error (real data has a stale `AN`).
        for reserved in ["AN", "yu", "UK", "SU"] {
            assert_eq!(
                parse_database_code(reserved),
                Some(UNKNOWN_COUNTRY),
                "{reserved}"
            );
        }
        // Two letters ISO has not assigned: unknown too (Debian's tor-geoipdb has `OS`).
        for unassigned in ["QQ", "AA", "os", "AB"] {
            assert_eq!(
                parse_database_code(unassigned),
                Some(UNKNOWN_COUNTRY),
                "{unassigned}"
            );
        }
        let mut reader = CodeReader::default();
        let at = |n: u32| move || format!("line {n}");
        assert_eq!(reader.parse("an", at(1)), Some(UNKNOWN_COUNTRY));
        assert_eq!(reader.parse("AN", at(2)), Some(UNKNOWN_COUNTRY));
        assert_eq!(reader.parse("OS", at(3)), Some(UNKNOWN_COUNTRY));
        assert_eq!(reader.parse("DE", at(4)), Some(id("DE")));
        assert_eq!(reader.parse("??", at(5)), Some(UNKNOWN_COUNTRY));
        assert_eq!(
            reader.stale.get("AN"),
            Some(&("withdrawn or reserved", 2, "line 1".to_owned()))
        );
        assert_eq!(
            reader.stale.get("OS"),
            Some(&("not assigned", 1, "line 3".to_owned()))
        );
        assert_eq!(reader.stale.len(), 2);
        // Malformed: still errors.
        for bad in ["R", "RUS", "1.2", "R?", "É", "12", "R1", "1R", "r-"] {
            assert_eq!(parse_database_code(bad), None, "{bad}");
        }
    }
}
