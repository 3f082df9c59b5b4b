//! Interface names as the operator gives them (`--iface`, the config, the state file), checked
//! before anything is built from them: each one becomes a pin path (`<pin root>/links/<name>`),
//! so `--iface ../maps/X` must never reach the filesystem.

use std::collections::BTreeSet;

/// The kernel's limit including the terminating NUL (`IFNAMSIZ`, include/uapi/linux/if.h).
const IFNAMSIZ: usize = 16;

/// An interface name the kernel would refuse, or one given twice.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IfaceError {
    /// Not a name the kernel accepts for an interface.
    #[error(
        "interface name {name:?} is not valid: {why} (the kernel accepts 1-15 bytes, not \".\" \
         or \"..\", without '/', ':' or whitespace)"
    )]
    Invalid { name: String, why: &'static str },
    /// The same interface twice, probably a typo for another one.
    #[error("interface {name} is given twice: did you mean another interface?")]
    Duplicate { name: String },
}

/// Checks `name` by the kernel's own rule, `dev_valid_name()` in net/core/dev.c (unchanged in
/// substance since the whitespace check of v3.16, and the rule of the 6.18 kernel these tests
/// run on; `tests/tests/usability.rs` checks each case against `ip link add`): not empty,
/// shorter than `IFNAMSIZ`, not `.` or `..`, and no `/`, `:` or `isspace()` byte. The kernel's
/// `isspace()` (lib/ctype.c) also counts 0xA0 (Latin-1 no-break space) as space; a NUL byte
/// cannot be part of a C string at all.
pub fn check_name(name: &str) -> Result<(), IfaceError> {
    let invalid = |why| {
        Err(IfaceError::Invalid {
            name: name.to_owned(),
            why,
        })
    };
    let bytes = name.as_bytes();
    if bytes.is_empty() {
        return invalid("empty");
    }
    if bytes.len() >= IFNAMSIZ {
        return invalid("longer than 15 bytes");
    }
    if name == "." || name == ".." {
        return invalid("a path component");
    }
    for &b in bytes {
        match b {
            b'/' => return invalid("contains '/'"),
            b':' => return invalid("contains ':'"),
            0 => return invalid("contains a NUL byte"),
            b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r' | 0xa0 => {
                return invalid("contains whitespace");
            }
            _ => {}
        }
    }
    Ok(())
}

/// Checks every name, and that none is given twice.
pub fn check_names(names: &[String]) -> Result<(), IfaceError> {
    let mut seen = BTreeSet::new();
    for name in names {
        check_name(name)?;
        if !seen.insert(name) {
            return Err(IfaceError::Duplicate { name: name.clone() });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Names the kernel refuses, with the reason reported (`tests/tests/usability.rs` asks the
    /// kernel about each).
    const INVALID: &[(&str, &str)] = &[
        ("", "empty"),
        ("0123456789abcdef", "longer than 15 bytes"),
        (".", "a path component"),
        ("..", "a path component"),
        ("../maps/X", "contains '/'"),
        ("eth0/1", "contains '/'"),
        ("eth0:1", "contains ':'"),
        ("eth 0", "contains whitespace"),
        ("eth0\n", "contains whitespace"),
        ("a\u{a0}", "contains whitespace"),
        ("a\0b", "contains a NUL byte"),
    ];

    #[test]
    fn names_the_kernel_accepts_and_refuses() {
        for name in [
            "eth0",
            "lo",
            "0123456789abcde",
            "veth-a.100",
            "...",
            "é",
            "-x_y@z",
        ] {
            assert_eq!(check_name(name), Ok(()), "{name:?}");
        }
        for &(name, why) in INVALID {
            let err = check_name(name).unwrap_err();
            assert_eq!(
                err,
                IfaceError::Invalid {
                    name: name.into(),
                    why
                },
                "{name:?}"
            );
            assert!(err.to_string().contains("1-15 bytes"), "{err}");
        }
    }

    #[test]
    fn an_interface_given_twice_is_refused() {
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(check_names(&names(&["eth0", "eth1"])), Ok(()));
        let err = check_names(&names(&["eth0", "eth1", "eth0"])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "interface eth0 is given twice: did you mean another interface?"
        );
        assert!(matches!(
            check_names(&names(&["eth0", "a/b"])),
            Err(IfaceError::Invalid { .. })
        ));
    }
}
