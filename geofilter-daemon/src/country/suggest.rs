//! What the user probably meant by a country code this project does not know: the assigned
//! codes ISO points to for a reserved one (`UK` -> `GB`), codes one typo away (`RX` -> `RS`),
//! and countries typed by name (`germany` -> `DE`).

use std::fmt;

use geofilter_common::{CountryId, country::country_id};

use super::{code_str, english_name, table::COUNTRIES};

/// The error for `input`, which is not a known country: what it is if ISO reserves it, and the
/// closest known countries.
pub(super) fn unknown(input: &str) -> UnknownCountry {
    let t = input.trim();
    UnknownCountry {
        input: input.to_owned(),
        reserved_for: reservation(t).map(|&(_, name, _)| name),
        suggestions: suggest(t),
    }
}

/// Two-letter codes people type that are not assigned ISO 3166-1 codes, with what they are and
/// the assigned codes to use instead: the exceptional reservations (`UK`, `SU`,
/// `FX`, ...; ISO 3166-1 keeps them for the UPU, the EU or the ITU), the transitional
/// reservations of withdrawn codes (`YU`, `ZR`, ...), and `EL`, the EU's code for Greece.
///
/// They are suggestions, never accepted as aliases: the policy and the state file hold only
/// assigned codes, and what the operator meant by `SU` or `YU` is theirs to say.
const RESERVATIONS: &[(&str, &str, &[&str])] = &[
    ("AC", "reserved for Ascension Island", &["SH"]),
    (
        "AN",
        "withdrawn, was the Netherlands Antilles",
        &["CW", "SX", "BQ"],
    ),
    ("BU", "withdrawn, was Burma", &["MM"]),
    ("CP", "reserved for Clipperton Island", &["FR"]),
    ("CQ", "reserved for Sark", &["GG"]),
    ("CS", "withdrawn, was Serbia and Montenegro", &["RS", "ME"]),
    ("DG", "reserved for Diego Garcia", &["IO"]),
    ("EA", "reserved for Ceuta and Melilla", &["ES"]),
    ("EL", "the EU's code for Greece", &["GR"]),
    ("EU", "reserved for the European Union", &[]),
    ("EZ", "reserved for the Eurozone", &[]),
    ("FX", "reserved for Metropolitan France", &["FR"]),
    ("IC", "reserved for the Canary Islands", &["ES"]),
    ("SU", "reserved for the Soviet Union", &["RU"]),
    ("TA", "reserved for Tristan da Cunha", &["SH"]),
    ("TP", "withdrawn, was East Timor", &["TL"]),
    ("UK", "reserved for the United Kingdom", &["GB"]),
    ("UN", "reserved for the United Nations", &[]),
    ("YU", "withdrawn, was Yugoslavia", &["RS", "ME"]),
    ("ZR", "withdrawn, was Zaire", &["CD"]),
];

/// Names people use that are not the short names in [`COUNTRIES`] (former, informal or
/// English-keyboard spellings), lower case and unaccented, as [`fold`] makes them.
const OTHER_NAMES: &[(&str, &str)] = &[
    ("america", "US"),
    ("britain", "GB"),
    ("burma", "MM"),
    ("cape verde", "CV"),
    ("czech republic", "CZ"),
    ("east timor", "TL"),
    ("england", "GB"),
    ("great britain", "GB"),
    ("holland", "NL"),
    ("ivory coast", "CI"),
    ("macedonia", "MK"),
    ("northern ireland", "GB"),
    ("persia", "IR"),
    ("russian federation", "RU"),
    ("scotland", "GB"),
    ("swaziland", "SZ"),
    ("turkey", "TR"),
    ("uae", "AE"),
    ("usa", "US"),
    ("vatican", "VA"),
    ("vietnam", "VN"),
    ("wales", "GB"),
    ("zaire", "CD"),
];

/// The reservation of a two-letter input (any case), if ISO 3166-1 has one.
fn reservation(
    input: &str,
) -> Option<&'static (&'static str, &'static str, &'static [&'static str])> {
    let upper = input.to_ascii_uppercase();
    RESERVATIONS.iter().find(|(code, _, _)| *code == upper)
}

/// Lower case without accents or punctuation, so `Turkiye`, `cote divoire` and `Côte d'Ivoire`
/// meet.
fn fold(s: &str) -> String {
    let mut out = String::new();
    for c in s.to_lowercase().chars() {
        let c = match c {
            'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' => 'a',
            'ç' => 'c',
            'è' | 'é' | 'ê' | 'ë' => 'e',
            'ì' | 'í' | 'î' | 'ï' => 'i',
            'ñ' => 'n',
            'ò' | 'ó' | 'ô' | 'õ' | 'ö' => 'o',
            'ù' | 'ú' | 'û' | 'ü' => 'u',
            'ý' | 'ÿ' => 'y',
            c => c,
        };
        if c.is_alphanumeric() {
            out.push(c);
        } else if c.is_whitespace() || c == '-' {
            // Word breaks stay, once: "Timor-Leste" and "timor leste" meet.
            if !out.ends_with(' ') && !out.is_empty() {
                out.push(' ');
            }
        }
    }
    out.trim_end().to_owned()
}

/// A user named a country this project does not know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownCountry {
    /// What the user typed.
    pub input: String,
    /// What the code is, when it is a well-known unassigned one (`UK`: "reserved for the United
    /// Kingdom").
    pub reserved_for: Option<&'static str>,
    /// Up to three close known countries, best first.
    pub suggestions: Vec<CountryId>,
}

impl fmt::Display for UnknownCountry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown country code {:?}", self.input)?;
        if let Some(what) = self.reserved_for {
            write!(f, " (not an assigned ISO 3166-1 code: {what})")?;
        }
        for (i, &id) in self.suggestions.iter().enumerate() {
            f.write_str(if i == 0 { ": did you mean " } else { ", " })?;
            f.write_str(&code_str(id))?;
            if let Some(name) = english_name(id) {
                write!(f, " ({name})")?;
            }
        }
        if self.suggestions.is_empty() {
            f.write_str(" (expected an ISO 3166-1 alpha-2 code such as DE or US)")
        } else {
            f.write_str("?")
        }
    }
}

impl std::error::Error for UnknownCountry {}

/// Close known countries for a wrong input: for a reserved two-letter code, the assigned codes
/// ISO points to (`UK` → `GB`); then, for two letters, the codes that differ in one letter (same
/// first letter first, then keys close on a QWERTY keyboard); for longer input, countries whose
/// name (or [other name](OTHER_NAMES)) is it, starts with it or contains it.
fn suggest(input: &str) -> Vec<CountryId> {
    let id_of = |code: &str| {
        let b = code.as_bytes();
        country_id([b[0], b[1]]).expect("known codes are letters")
    };
    let mut out: Vec<CountryId> = Vec::new();
    let mut add = |id: CountryId| {
        if out.len() < 3 && !out.contains(&id) {
            out.push(id);
        }
    };
    let upper = input.to_ascii_uppercase();
    if let &[a, b] = upper.as_bytes() {
        if let Some((_, _, codes)) = reservation(input) {
            codes.iter().for_each(|c| add(id_of(c)));
        }
        let mut close: Vec<(u32, &str)> = COUNTRIES
            .iter()
            .filter_map(|&(code, _)| {
                let c = code.as_bytes();
                let score = match (c[0] == a, c[1] == b) {
                    (true, false) => key_distance(b, c[1]),
                    (false, true) => 100 + key_distance(a, c[0]),
                    _ => return None,
                };
                Some((score, code))
            })
            .collect();
        close.sort();
        close.iter().for_each(|&(_, code)| add(id_of(code)));
        return out;
    }
    let wanted = fold(input);
    if wanted.chars().count() < 3 {
        return out;
    }
    // 0: the whole name, 1: its start, 2: inside it.
    let names = COUNTRIES
        .iter()
        .map(|&(code, name)| (code, fold(name)))
        .chain(
            OTHER_NAMES
                .iter()
                .map(|&(name, code)| (code, name.to_owned())),
        );
    let mut hits: Vec<(u8, &str)> = names
        .filter_map(|(code, name)| {
            let rank = if name == wanted {
                0
            } else if name.starts_with(&wanted) {
                1
            } else if name.contains(&wanted) {
                2
            } else {
                return None;
            };
            Some((rank, code))
        })
        .collect();
    hits.sort();
    hits.iter().for_each(|&(_, code)| add(id_of(code)));
    out
}

/// Rough distance between two letters on a QWERTY keyboard (typos hit neighbouring keys).
fn key_distance(a: u8, b: u8) -> u32 {
    const ROWS: [&[u8]; 3] = [b"QWERTYUIOP", b"ASDFGHJKL", b"ZXCVBNM"];
    let pos = |k: u8| {
        ROWS.iter().enumerate().find_map(|(row, keys)| {
            keys.iter()
                .position(|&x| x == k)
                .map(|col| (row as i32, col as i32 * 2 + row as i32))
        })
    };
    match (pos(a), pos(b)) {
        (Some((ra, ca)), Some((rb, cb))) => ((ra - rb).abs() * 2 + (ca - cb).abs()) as u32,
        _ => 99,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::country::{parse_user_code, table::known};

    #[test]
    fn suggestions_in_messages() {
        let msg = parse_user_code("RX").unwrap_err().to_string();
        assert!(
            msg.starts_with("unknown country code \"RX\": did you mean RS (Serbia), "),
            "{msg}"
        );
        assert!(msg.ends_with('?'), "{msg}");
        let msg = parse_user_code("germany").unwrap_err().to_string();
        assert_eq!(
            msg,
            "unknown country code \"germany\": did you mean DE (Germany)?"
        );
        let msg = parse_user_code("korea").unwrap_err().to_string();
        assert!(
            msg.contains("KP (North Korea)") && msg.contains("KR (South Korea)"),
            "{msg}"
        );
        let msg = parse_user_code("uk").unwrap_err().to_string();
        assert!(
            msg.starts_with(
                "unknown country code \"uk\" (not an assigned ISO 3166-1 code: reserved for the \
                 United Kingdom): did you mean GB (United Kingdom), "
            ),
            "{msg}"
        );
        let first = |input: &str| parse_user_code(input).unwrap_err().suggestions[0];
        for (input, code) in [
            ("EL", "GR"),
            ("SU", "RU"),
            ("FX", "FR"),
            ("AC", "SH"),
            ("CQ", "GG"),
            ("DG", "IO"),
            ("EA", "ES"),
            ("IC", "ES"),
            ("TA", "SH"),
            ("CP", "FR"),
            ("YU", "RS"),
            ("ZR", "CD"),
            ("TP", "TL"),
            ("BU", "MM"),
            ("Russia", "RU"),
            ("russian federation", "RU"),
            ("united kingdom", "GB"),
            ("Britain", "GB"),
            ("USA", "US"),
            ("turkiye", "TR"),
            ("Turkey", "TR"),
            ("cote d'ivoire", "CI"),
            ("Ivory Coast", "CI"),
            ("timor leste", "TL"),
            ("Vietnam", "VN"),
            ("niger", "NE"),
        ] {
            assert_eq!(code_str(first(input)), code, "{input}");
        }
        // Reservations for no single country still get an explanation.
        let msg = parse_user_code("EU").unwrap_err().to_string();
        assert!(msg.contains("reserved for the European Union"), "{msg}");
        // Every reservation points at assigned codes.
        for (code, _, codes) in RESERVATIONS {
            assert!(!known([code.as_bytes()[0], code.as_bytes()[1]]), "{code}");
            assert!(codes.iter().all(|c| parse_user_code(c).is_ok()), "{code}");
        }
        assert!(
            OTHER_NAMES
                .iter()
                .all(|(n, c)| fold(n) == *n && parse_user_code(c).is_ok())
        );
        let msg = parse_user_code("1").unwrap_err().to_string();
        assert_eq!(
            msg,
            "unknown country code \"1\" (expected an ISO 3166-1 alpha-2 code such as DE or US)"
        );
    }
}
