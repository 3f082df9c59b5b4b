//! What an operator names in a policy: countries (`RU`) and autonomous systems (`AS13335`), in
//! one list wherever a list is accepted (`block`, `unblock`, `--block`, `countries` / `asns` in
//! the config and policy TOML).

use std::collections::BTreeSet;

use geofilter_common::CountryId;

use crate::country::{UnknownCountry, parse_user_code};

/// Countries and ASNs from one list the operator gave.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Keys {
    pub countries: BTreeSet<CountryId>,
    pub asns: BTreeSet<u32>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error(transparent)]
    Country(#[from] UnknownCountry),
    #[error("{text:?} is not an AS number: write AS followed by 1 to 4294967294 (e.g. AS13335)")]
    Asn { text: String },
}

/// The ASN `text` names (`AS13335`, `as13335`), `None` if it does not start with `AS` and a
/// digit (then it is a country code), or an error for `AS` with a bad number.
pub fn parse_asn(text: &str) -> Result<Option<u32>, KeyError> {
    let t = text.trim();
    let Some(digits) = t
        .get(..2)
        .filter(|p| p.eq_ignore_ascii_case("as"))
        .map(|_| &t[2..])
    else {
        return Ok(None);
    };
    if !digits.starts_with(|c: char| c.is_ascii_digit()) {
        return Ok(None);
    }
    // AS 0 is "no AS" in the databases, 4294967295 is reserved (RFC 7300).
    match digits.parse::<u32>() {
        Ok(n) if n != 0 && n != u32::MAX && !digits.starts_with('0') => Ok(Some(n)),
        _ => Err(KeyError::Asn { text: t.to_owned() }),
    }
}

/// Reads a list of codes and ASNs (either may be comma-separated by the caller).
pub fn parse_user_keys<S: AsRef<str>>(items: &[S]) -> Result<Keys, KeyError> {
    let mut keys = Keys::default();
    for item in items {
        let item = item.as_ref();
        match parse_asn(item)? {
            Some(asn) => {
                keys.asns.insert(asn);
            }
            None => {
                keys.countries.insert(parse_user_code(item)?);
            }
        }
    }
    Ok(keys)
}

/// ASNs are stored as their names (`["AS13335"]`), as operators write them; numbers are read too.
pub(crate) mod asn_names {
    use std::collections::BTreeSet;

    use serde::{Deserialize, Deserializer, Serializer};

    use super::parse_asn;

    pub fn serialize<S: Serializer>(set: &BTreeSet<u32>, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(set.iter().map(|a| format!("AS{a}")))
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Item {
        Number(u32),
        Text(String),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeSet<u32>, D::Error> {
        Vec::<Item>::deserialize(d)?
            .into_iter()
            .map(|item| match item {
                Item::Number(n) if n != 0 && n != u32::MAX => Ok(n),
                Item::Number(n) => Err(serde::de::Error::custom(format!(
                    "{n} is not an AS number (1 to 4294967294)"
                ))),
                Item::Text(t) => match parse_asn(&t) {
                    Ok(Some(n)) => Ok(n),
                    Ok(None) => Err(serde::de::Error::custom(format!(
                        "{t:?} is not an AS number: write AS followed by the number (AS13335)"
                    ))),
                    Err(e) => Err(serde::de::Error::custom(e)),
                },
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::country::test_id;

    #[test]
    fn codes_and_asns_are_told_apart() {
        let keys = parse_user_keys(&["RU", "AS13335", "as12389", "by"]).unwrap();
        assert_eq!(keys.countries, [test_id("RU"), test_id("BY")].into());
        assert_eq!(keys.asns, [13335, 12389].into());
    }

    #[test]
    fn bad_asns_and_codes_are_refused_naming_them() {
        for bad in ["AS0", "AS4294967295", "AS99999999999", "AS013335", "AS1x"] {
            let err = parse_user_keys(&[bad]).unwrap_err();
            assert!(matches!(err, KeyError::Asn { .. }), "{bad}: {err}");
            assert!(err.to_string().contains(bad), "{err}");
        }
        assert!(matches!(
            parse_user_keys(&["XQ"]).unwrap_err(),
            KeyError::Country(_)
        ));
        // `AS` alone is American Samoa.
        assert_eq!(
            parse_user_keys(&["AS"]).unwrap().countries,
            [test_id("AS")].into()
        );
    }

    #[test]
    fn asn_lists_round_trip_through_json_and_toml() {
        #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
        struct Holder {
            #[serde(with = "asn_names")]
            asns: BTreeSet<u32>,
        }
        let h: Holder = toml::from_str("asns = [\"AS13335\", 15169, \"as3\"]").unwrap();
        assert_eq!(h.asns, [3, 13335, 15169].into());
        let json = serde_json::to_string(&h).unwrap();
        assert_eq!(json, r#"{"asns":["AS3","AS13335","AS15169"]}"#);
        assert_eq!(serde_json::from_str::<Holder>(&json).unwrap(), h);
        assert!(toml::from_str::<Holder>("asns = [\"RU\"]").is_err());
        assert!(toml::from_str::<Holder>("asns = [0]").is_err());
    }
}
