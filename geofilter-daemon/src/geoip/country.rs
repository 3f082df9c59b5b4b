//! Which two-letter codes are countries: the ISO 3166-1 alpha-2 list, the pseudo-codes databases
//! use for "no country", and the parsers for user input and database input.
//!
//! [`geofilter_common::country`] only numbers the codes `AA..=ZZ`; this module decides which of
//! them are real, so a typo such as `--block RX` fails instead of silently blocking nothing.

use std::fmt;

use geofilter_common::{
    CountryId, UNKNOWN_COUNTRY,
    country::{country_code, country_id},
};

/// The 249 officially assigned ISO 3166-1 alpha-2 codes with English short names, plus `XK`
/// (Kosovo): user-assigned in ISO terms, but MaxMind, IPFire, the RIRs' geofeeds and most
/// databases use it, so refusing it would refuse real database files. Sorted by code.
pub const COUNTRIES: &[(&str, &str)] = &[
    ("AD", "Andorra"),
    ("AE", "United Arab Emirates"),
    ("AF", "Afghanistan"),
    ("AG", "Antigua and Barbuda"),
    ("AI", "Anguilla"),
    ("AL", "Albania"),
    ("AM", "Armenia"),
    ("AO", "Angola"),
    ("AQ", "Antarctica"),
    ("AR", "Argentina"),
    ("AS", "American Samoa"),
    ("AT", "Austria"),
    ("AU", "Australia"),
    ("AW", "Aruba"),
    ("AX", "Åland Islands"),
    ("AZ", "Azerbaijan"),
    ("BA", "Bosnia and Herzegovina"),
    ("BB", "Barbados"),
    ("BD", "Bangladesh"),
    ("BE", "Belgium"),
    ("BF", "Burkina Faso"),
    ("BG", "Bulgaria"),
    ("BH", "Bahrain"),
    ("BI", "Burundi"),
    ("BJ", "Benin"),
    ("BL", "Saint Barthélemy"),
    ("BM", "Bermuda"),
    ("BN", "Brunei Darussalam"),
    ("BO", "Bolivia"),
    ("BQ", "Bonaire, Sint Eustatius and Saba"),
    ("BR", "Brazil"),
    ("BS", "Bahamas"),
    ("BT", "Bhutan"),
    ("BV", "Bouvet Island"),
    ("BW", "Botswana"),
    ("BY", "Belarus"),
    ("BZ", "Belize"),
    ("CA", "Canada"),
    ("CC", "Cocos (Keeling) Islands"),
    ("CD", "Congo (Democratic Republic)"),
    ("CF", "Central African Republic"),
    ("CG", "Congo"),
    ("CH", "Switzerland"),
    ("CI", "Côte d'Ivoire"),
    ("CK", "Cook Islands"),
    ("CL", "Chile"),
    ("CM", "Cameroon"),
    ("CN", "China"),
    ("CO", "Colombia"),
    ("CR", "Costa Rica"),
    ("CU", "Cuba"),
    ("CV", "Cabo Verde"),
    ("CW", "Curaçao"),
    ("CX", "Christmas Island"),
    ("CY", "Cyprus"),
    ("CZ", "Czechia"),
    ("DE", "Germany"),
    ("DJ", "Djibouti"),
    ("DK", "Denmark"),
    ("DM", "Dominica"),
    ("DO", "Dominican Republic"),
    ("DZ", "Algeria"),
    ("EC", "Ecuador"),
    ("EE", "Estonia"),
    ("EG", "Egypt"),
    ("EH", "Western Sahara"),
    ("ER", "Eritrea"),
    ("ES", "Spain"),
    ("ET", "Ethiopia"),
    ("FI", "Finland"),
    ("FJ", "Fiji"),
    ("FK", "Falkland Islands"),
    ("FM", "Micronesia"),
    ("FO", "Faroe Islands"),
    ("FR", "France"),
    ("GA", "Gabon"),
    ("GB", "United Kingdom"),
    ("GD", "Grenada"),
    ("GE", "Georgia"),
    ("GF", "French Guiana"),
    ("GG", "Guernsey"),
    ("GH", "Ghana"),
    ("GI", "Gibraltar"),
    ("GL", "Greenland"),
    ("GM", "Gambia"),
    ("GN", "Guinea"),
    ("GP", "Guadeloupe"),
    ("GQ", "Equatorial Guinea"),
    ("GR", "Greece"),
    ("GS", "South Georgia and the South Sandwich Islands"),
    ("GT", "Guatemala"),
    ("GU", "Guam"),
    ("GW", "Guinea-Bissau"),
    ("GY", "Guyana"),
    ("HK", "Hong Kong"),
    ("HM", "Heard Island and McDonald Islands"),
    ("HN", "Honduras"),
    ("HR", "Croatia"),
    ("HT", "Haiti"),
    ("HU", "Hungary"),
    ("ID", "Indonesia"),
    ("IE", "Ireland"),
    ("IL", "Israel"),
    ("IM", "Isle of Man"),
    ("IN", "India"),
    ("IO", "British Indian Ocean Territory"),
    ("IQ", "Iraq"),
    ("IR", "Iran"),
    ("IS", "Iceland"),
    ("IT", "Italy"),
    ("JE", "Jersey"),
    ("JM", "Jamaica"),
    ("JO", "Jordan"),
    ("JP", "Japan"),
    ("KE", "Kenya"),
    ("KG", "Kyrgyzstan"),
    ("KH", "Cambodia"),
    ("KI", "Kiribati"),
    ("KM", "Comoros"),
    ("KN", "Saint Kitts and Nevis"),
    ("KP", "North Korea"),
    ("KR", "South Korea"),
    ("KW", "Kuwait"),
    ("KY", "Cayman Islands"),
    ("KZ", "Kazakhstan"),
    ("LA", "Laos"),
    ("LB", "Lebanon"),
    ("LC", "Saint Lucia"),
    ("LI", "Liechtenstein"),
    ("LK", "Sri Lanka"),
    ("LR", "Liberia"),
    ("LS", "Lesotho"),
    ("LT", "Lithuania"),
    ("LU", "Luxembourg"),
    ("LV", "Latvia"),
    ("LY", "Libya"),
    ("MA", "Morocco"),
    ("MC", "Monaco"),
    ("MD", "Moldova"),
    ("ME", "Montenegro"),
    ("MF", "Saint Martin (French part)"),
    ("MG", "Madagascar"),
    ("MH", "Marshall Islands"),
    ("MK", "North Macedonia"),
    ("ML", "Mali"),
    ("MM", "Myanmar"),
    ("MN", "Mongolia"),
    ("MO", "Macao"),
    ("MP", "Northern Mariana Islands"),
    ("MQ", "Martinique"),
    ("MR", "Mauritania"),
    ("MS", "Montserrat"),
    ("MT", "Malta"),
    ("MU", "Mauritius"),
    ("MV", "Maldives"),
    ("MW", "Malawi"),
    ("MX", "Mexico"),
    ("MY", "Malaysia"),
    ("MZ", "Mozambique"),
    ("NA", "Namibia"),
    ("NC", "New Caledonia"),
    ("NE", "Niger"),
    ("NF", "Norfolk Island"),
    ("NG", "Nigeria"),
    ("NI", "Nicaragua"),
    ("NL", "Netherlands"),
    ("NO", "Norway"),
    ("NP", "Nepal"),
    ("NR", "Nauru"),
    ("NU", "Niue"),
    ("NZ", "New Zealand"),
    ("OM", "Oman"),
    ("PA", "Panama"),
    ("PE", "Peru"),
    ("PF", "French Polynesia"),
    ("PG", "Papua New Guinea"),
    ("PH", "Philippines"),
    ("PK", "Pakistan"),
    ("PL", "Poland"),
    ("PM", "Saint Pierre and Miquelon"),
    ("PN", "Pitcairn"),
    ("PR", "Puerto Rico"),
    ("PS", "Palestine"),
    ("PT", "Portugal"),
    ("PW", "Palau"),
    ("PY", "Paraguay"),
    ("QA", "Qatar"),
    ("RE", "Réunion"),
    ("RO", "Romania"),
    ("RS", "Serbia"),
    ("RU", "Russia"),
    ("RW", "Rwanda"),
    ("SA", "Saudi Arabia"),
    ("SB", "Solomon Islands"),
    ("SC", "Seychelles"),
    ("SD", "Sudan"),
    ("SE", "Sweden"),
    ("SG", "Singapore"),
    ("SH", "Saint Helena, Ascension and Tristan da Cunha"),
    ("SI", "Slovenia"),
    ("SJ", "Svalbard and Jan Mayen"),
    ("SK", "Slovakia"),
    ("SL", "Sierra Leone"),
    ("SM", "San Marino"),
    ("SN", "Senegal"),
    ("SO", "Somalia"),
    ("SR", "Suriname"),
    ("SS", "South Sudan"),
    ("ST", "Sao Tome and Principe"),
    ("SV", "El Salvador"),
    ("SX", "Sint Maarten (Dutch part)"),
    ("SY", "Syria"),
    ("SZ", "Eswatini"),
    ("TC", "Turks and Caicos Islands"),
    ("TD", "Chad"),
    ("TF", "French Southern Territories"),
    ("TG", "Togo"),
    ("TH", "Thailand"),
    ("TJ", "Tajikistan"),
    ("TK", "Tokelau"),
    ("TL", "Timor-Leste"),
    ("TM", "Turkmenistan"),
    ("TN", "Tunisia"),
    ("TO", "Tonga"),
    ("TR", "Türkiye"),
    ("TT", "Trinidad and Tobago"),
    ("TV", "Tuvalu"),
    ("TW", "Taiwan"),
    ("TZ", "Tanzania"),
    ("UA", "Ukraine"),
    ("UG", "Uganda"),
    ("UM", "United States Minor Outlying Islands"),
    ("US", "United States"),
    ("UY", "Uruguay"),
    ("UZ", "Uzbekistan"),
    ("VA", "Holy See"),
    ("VC", "Saint Vincent and the Grenadines"),
    ("VE", "Venezuela"),
    ("VG", "Virgin Islands (British)"),
    ("VI", "Virgin Islands (U.S.)"),
    ("VN", "Viet Nam"),
    ("VU", "Vanuatu"),
    ("WF", "Wallis and Futuna"),
    ("WS", "Samoa"),
    ("XK", "Kosovo"),
    ("YE", "Yemen"),
    ("YT", "Mayotte"),
    ("ZA", "South Africa"),
    ("ZM", "Zambia"),
    ("ZW", "Zimbabwe"),
];

/// Codes that databases use for "no single country": `??` and `ZZ`/`XX` (unknown), `EU`/`AP`
/// (a whole region; IPFire/Tor and old MaxMind data), `A1`/`A2`/`O1` (anonymous proxy, satellite,
/// other: legacy MaxMind), `-` (IP2Location LITE). They all mean [`UNKNOWN_COUNTRY`].
pub const PSEUDO_CODES: &[&str] = &["??", "--", "-", "ZZ", "XX", "EU", "AP", "A1", "A2", "O1"];

/// Codes ISO 3166 keeps reserved but that name no current country: withdrawn ones still found in
/// stale records (`AN` Netherlands Antilles, `YU`, `CS`, `TP`, ...), exceptional reservations
/// (`UK`, `FX`, `SU`, `AC`, ...) and the indeterminate ones. The geo-whois-asn-country data of
/// June 2026 carries one `AN` row. Databases are read with these as unknown (and a warning), so
/// one stale row does not make a whole world database unusable; so are codes that were never
/// assigned (they warn as "not assigned" rather than "withdrawn or reserved").
pub const RESERVED_CODES: &[&str] = &[
    "AC", "AN", "BU", "CP", "CS", "DG", "DY", "EA", "EW", "EZ", "FL", "FX", "IC", "JA", "LF", "NT",
    "PI", "RA", "RB", "RC", "RH", "RI", "RL", "RM", "RN", "RP", "SU", "TA", "TP", "UK", "UN", "WG",
    "WL", "WV", "YU", "YV", "ZR",
];

/// Is `code` (upper case) a country this project knows? Binary search over [`COUNTRIES`].
fn known(code: [u8; 2]) -> bool {
    COUNTRIES
        .binary_search_by(|(c, _)| c.as_bytes().cmp(&code[..]))
        .is_ok()
}

/// The English short name of a country, or `None` for [`UNKNOWN_COUNTRY`] and unassigned codes.
pub fn country_name(id: CountryId) -> Option<&'static str> {
    let code = country_code(id)?;
    COUNTRIES
        .binary_search_by(|(c, _)| c.as_bytes().cmp(&code[..]))
        .ok()
        .map(|i| COUNTRIES[i].1)
}

/// The two-letter code of an id as text (`"??"` for unknown), for messages and output.
pub fn code_str(id: CountryId) -> String {
    match country_code(id) {
        Some([a, b]) => format!("{}{}", a as char, b as char),
        None => "??".to_owned(),
    }
}

/// A country code from a database row.
///
/// Case-insensitive (per-country list files are named `ru.zone`), surrounding blanks ignored.
/// Returns `Some(id)` for a known country; `Some(UNKNOWN_COUNTRY)` for a pseudo-code, an empty
/// field, a [reserved code](RESERVED_CODES) and any other two letters ISO 3166-1 has not
/// assigned (Debian's tor-geoipdb of 2026 carries `OS` and `AB`); and `None` for anything
/// malformed (digits, punctuation, wrong length), which the readers report as an error with
/// file and line: such a column is more likely misread than right.
pub fn database_country(s: &str) -> Option<CountryId> {
    classify(s).map(|(id, _)| id)
}

/// Why a database code reads as unknown, for the warning (`None`: nothing to warn about).
type Stale = Option<&'static str>;

/// [`database_country`], and what to warn about.
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

/// [`database_country`] for a reader: counts the codes it read as unknown with a warning, to
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

/// A country given by a user (`--block ru`): case-insensitive, must be a known country.
///
/// On error the message suggests the closest codes, and the code of a country the user typed by
/// name (`"germany"` → `DE`).
pub fn parse_country(s: &str) -> Result<CountryId, UnknownCountry> {
    let t = s.trim();
    if let &[a, b] = t.as_bytes() {
        let code = [a.to_ascii_uppercase(), b.to_ascii_uppercase()];
        if known(code) {
            return Ok(country_id(code).expect("known codes are letters"));
        }
    }
    Err(UnknownCountry {
        input: s.to_owned(),
        reserved_for: reservation(t).map(|&(_, name, _)| name),
        suggestions: suggest(t),
    })
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
            if let Some(name) = country_name(id) {
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

    fn id(code: &str) -> CountryId {
        let b = code.as_bytes();
        country_id([b[0], b[1]]).unwrap()
    }

    #[test]
    fn list_is_complete_sorted_and_named() {
        // 249 assigned ISO 3166-1 codes plus XK.
        assert_eq!(COUNTRIES.len(), 250);
        assert!(COUNTRIES.windows(2).all(|w| w[0].0 < w[1].0));
        for &(code, name) in COUNTRIES {
            assert_eq!(code.len(), 2);
            assert!(!name.is_empty());
            assert_eq!(country_name(id(code)), Some(name));
        }
        assert_eq!(country_name(id("DE")), Some("Germany"));
        assert_eq!(country_name(UNKNOWN_COUNTRY), None);
        assert_eq!(country_name(id("QQ")), None);
    }

    #[test]
    fn database_codes() {
        assert_eq!(database_country("RU"), Some(id("RU")));
        assert_eq!(database_country("ru"), Some(id("RU")));
        assert_eq!(database_country(" XK "), Some(id("XK")));
        for pseudo in [
            "??", "EU", "AP", "ZZ", "XX", "A1", "A2", "O1", "", "-", "--",
        ] {
            assert_eq!(database_country(pseudo), Some(UNKNOWN_COUNTRY), "{pseudo}");
        }
        // Withdrawn or reserved: unknown, not an error (real data has a stale `AN`).
        for reserved in ["AN", "yu", "UK", "SU"] {
            assert_eq!(
                database_country(reserved),
                Some(UNKNOWN_COUNTRY),
                "{reserved}"
            );
        }
        // Two letters ISO has not assigned: unknown too (Debian's tor-geoipdb has `OS`).
        for unassigned in ["QQ", "AA", "os", "AB"] {
            assert_eq!(
                database_country(unassigned),
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
            assert_eq!(database_country(bad), None, "{bad}");
        }
    }

    #[test]
    fn user_codes() {
        assert_eq!(parse_country("ru"), Ok(id("RU")));
        assert_eq!(parse_country("Us"), Ok(id("US")));
        assert_eq!(parse_country("XK"), Ok(id("XK")));
        // Pseudo-codes are not countries a user can block.
        assert!(parse_country("EU").is_err());
        assert!(parse_country("??").is_err());
    }

    #[test]
    fn suggestions_in_messages() {
        let msg = parse_country("RX").unwrap_err().to_string();
        assert!(
            msg.starts_with("unknown country code \"RX\": did you mean RS (Serbia), "),
            "{msg}"
        );
        assert!(msg.ends_with('?'), "{msg}");
        let msg = parse_country("germany").unwrap_err().to_string();
        assert_eq!(
            msg,
            "unknown country code \"germany\": did you mean DE (Germany)?"
        );
        let msg = parse_country("korea").unwrap_err().to_string();
        assert!(
            msg.contains("KP (North Korea)") && msg.contains("KR (South Korea)"),
            "{msg}"
        );
        let msg = parse_country("uk").unwrap_err().to_string();
        assert!(
            msg.starts_with(
                "unknown country code \"uk\" (not an assigned ISO 3166-1 code: reserved for the \
                 United Kingdom): did you mean GB (United Kingdom), "
            ),
            "{msg}"
        );
        let first = |input: &str| parse_country(input).unwrap_err().suggestions[0];
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
        let msg = parse_country("EU").unwrap_err().to_string();
        assert!(msg.contains("reserved for the European Union"), "{msg}");
        // Every reservation points at assigned codes.
        for (code, _, codes) in RESERVATIONS {
            assert!(!known([code.as_bytes()[0], code.as_bytes()[1]]), "{code}");
            assert!(codes.iter().all(|c| parse_country(c).is_ok()), "{code}");
        }
        assert!(
            OTHER_NAMES
                .iter()
                .all(|(n, c)| fold(n) == *n && parse_country(c).is_ok())
        );
        let msg = parse_country("1").unwrap_err().to_string();
        assert_eq!(
            msg,
            "unknown country code \"1\" (expected an ISO 3166-1 alpha-2 code such as DE or US)"
        );
    }
}
