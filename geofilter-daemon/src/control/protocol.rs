//! Requests and responses on the control socket, and their size limits.

use serde::{Deserialize, Serialize};

use crate::policy::{Mode, UnknownAction};

/// Longest request line the daemon reads. Anything longer is refused without being buffered.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    Status {},
    Stats {},
    /// Detach, unpin, and stop the daemon.
    Unload {},
    /// What the live program does with packets from these addresses; at most
    /// [`MAX_WHY_ADDRESSES`] per request.
    Why {
        addresses: Vec<String>,
    },
    ExceptList {},
    /// Keep the change that is waiting for confirmation (see [`ChangeOptions::confirm_s`]).
    Confirm {},
    /// Change the policy.
    Change {
        change: Change,
        #[serde(default)]
        opts: ChangeOptions,
    },
    /// Re-read the database files (the given ones, or the current ones; with `embedded`, the
    /// database built into the binary) and swap the tables.
    Reload {
        #[serde(default)]
        dbs: Vec<std::path::PathBuf>,
        #[serde(default)]
        embedded: bool,
        /// As in [`ChangeOptions`]: a reload that would drop this address is refused unless
        /// `force` is set.
        #[serde(default)]
        caller: Option<String>,
        #[serde(default)]
        force: bool,
    },
}

// Variants without fields are written `Name {}`: serde ignores unknown fields on unit variants of
// an internally tagged enum even under `deny_unknown_fields`, and a request with a field we do not
// know is more likely a mistake than something to ignore.

/// One policy change. Each is applied whole or not at all.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Change {
    Block {
        countries: Vec<String>,
    },
    Unblock {
        countries: Vec<String>,
    },
    Mode {
        mode: Mode,
    },
    Unknown {
        action: UnknownAction,
    },
    Monitor {
        on: bool,
    },
    ExceptAdd {
        cidrs: Vec<String>,
        #[serde(default)]
        drop: bool,
    },
    ExceptDel {
        cidrs: Vec<String>,
    },
    PortsSet {
        #[serde(default)]
        only: Vec<String>,
        #[serde(default)]
        exempt: Vec<String>,
    },
    PortsClear {},
}

/// How a change is applied.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangeOptions {
    /// The address the operator is connected from (the CLI takes it from `SSH_CONNECTION` or
    /// `SSH_CLIENT`). A change that would drop it is refused unless it is an exception or
    /// `force` is set.
    #[serde(default)]
    pub caller: Option<String>,
    #[serde(default)]
    pub force: bool,
    /// Roll the change back unless `confirm` arrives within this many seconds (1 to
    /// [`MAX_CONFIRM_S`]).
    #[serde(default)]
    pub confirm_s: Option<u64>,
}

/// Longest commit-confirm window: a day. A rollback meant as a safety net for a lost session
/// that fires weeks later would surprise more than it protects, and the bound keeps the deadline
/// arithmetic far from overflowing `Instant`.
pub const MAX_CONFIRM_S: u64 = 24 * 60 * 60;

/// Addresses per `why` request; the CLI splits longer lists (a request must fit in
/// [`MAX_REQUEST_BYTES`]).
pub const MAX_WHY_ADDRESSES: usize = 1000;

/// `{"ok": true, "result": ...}` or `{"ok": false, "error": "..."}`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Response {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Response {
    pub fn ok(result: serde_json::Value) -> Self {
        Self {
            ok: true,
            result: Some(result),
            error: None,
        }
    }
    pub fn error(error: impl std::fmt::Display) -> Self {
        Self {
            ok: false,
            result: None,
            error: Some(error.to_string()),
        }
    }
}

/// Parses one request line, with an error that says what was wrong.
pub fn decode_request(line: &[u8]) -> Result<Request, String> {
    let text = std::str::from_utf8(line).map_err(|e| format!("request is not UTF-8: {e}"))?;
    serde_json::from_str(text.trim_end()).map_err(|e| format!("malformed request: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_garbage() {
        let req = Request::Change {
            change: Change::Block {
                countries: vec!["RU".into()],
            },
            opts: ChangeOptions::default(),
        };
        let line = serde_json::to_string(&req).unwrap();
        assert_eq!(
            line,
            r#"{"op":"change","change":{"kind":"block","countries":["RU"]},"opts":{"caller":null,"force":false,"confirm_s":null}}"#
        );
        let short = r#"{"op":"change","change":{"kind":"block","countries":["RU"]}}"#;
        assert_eq!(
            decode_request(short.as_bytes()).unwrap(),
            req,
            "opts default"
        );
        assert_eq!(decode_request(line.as_bytes()).unwrap(), req);
        assert!(decode_request(b"\xff\xfe").unwrap_err().contains("UTF-8"));
        assert!(
            decode_request(b"{\"op\":\"reboot\"}")
                .unwrap_err()
                .contains("malformed")
        );
        assert!(decode_request(b"{\"op\":\"status\",\"x\":1}").is_err());
    }
}
