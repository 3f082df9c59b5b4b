//! The control socket's protocol: one JSON request line, one JSON response line. Requests
//! ([`request`]) arrive parsed; replies ([`reply`]) are typed, and the CLI and the tests read
//! them as the same types.

mod lists;
mod reply;
mod request;

use serde::{Deserialize, Serialize};

pub use self::{lists::*, reply::*, request::*};

/// Longest request line the daemon reads. Anything longer is refused without being buffered.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// Longest commit-confirm window: a day. A rollback meant as a safety net for a lost session
/// that fires weeks later would surprise more than it protects, and the bound keeps the deadline
/// arithmetic far from overflowing `Instant`.
pub const MAX_CONFIRM_S: u64 = 24 * 60 * 60;

/// Addresses per `why` request; the CLI splits longer lists (a request must fit in
/// [`MAX_REQUEST_BYTES`]).
pub const MAX_WHY_ADDRESSES: usize = 1000;

/// `{"ok": true, "result": ...}` or `{"ok": false, "error": "..."}`. The daemon sends a
/// `Response<Reply>`; a client reads the reply type its request gets.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Response<R> {
    pub ok: bool,
    // A missing `Option` field reads as `None` (serde's rule), so no `default`: it would ask
    // `R: Default`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<R>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl<R> Response<R> {
    pub fn ok(result: R) -> Self {
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

/// Why the daemon refused a request. On the wire it is the message alone (`error`); the CLI
/// prints it as it came.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("request is not UTF-8: {0}")]
    NotUtf8(#[source] std::str::Utf8Error),
    #[error("malformed request: {0}")]
    Malformed(#[source] serde_json::Error),
    #[error("request longer than {MAX_REQUEST_BYTES} bytes refused")]
    TooLong,
    #[error("empty request")]
    Empty,
    #[error("no complete request within 5 s")]
    Timeout,
    #[error("reading request: {0}")]
    Read(#[source] std::io::Error),
    #[error("cannot read peer credentials: {0}")]
    PeerCredentials(#[source] std::io::Error),
    #[error("permission denied: uid {uid} may not control geofilter (root only)")]
    NotPermitted { uid: u32 },
    #[error("at most {MAX_WHY_ADDRESSES} addresses per request")]
    TooManyAddresses,
    #[error(
        "--confirm {secs} refused: the confirmation window is 1 to {MAX_CONFIRM_S} seconds \
         (24 hours)"
    )]
    ConfirmWindow { secs: u64 },
    #[error("--confirm {secs} refused: the deadline is past this clock's range")]
    ConfirmClock { secs: u64 },
    #[error(
        "another change is waiting for `geofilter confirm`; confirm it or let it roll back first"
    )]
    AlreadyPending,
    #[error("no change is waiting for confirmation")]
    NothingPending,
    /// A change the policy refused (a lockout, a bad exception, a kernel error while applying):
    /// the message says which.
    #[error("{0}")]
    Refused(String),
    /// Reading the kernel's state failed.
    #[error("{0}")]
    Datapath(String),
    #[error("reload either the embedded database or files, not both")]
    ReloadBoth,
    #[error("a reload is in progress; the current tables stay. Try again when it has finished")]
    ReloadBusy,
    #[error("database not reloaded, the current tables stay: {0}")]
    ReloadFailed(String),
    #[error("events are off: the daemon runs with --event-rate 0")]
    EventsOff,
    #[error("--window must be at least 1 second")]
    Window,
    #[error(
        "refused: this daemon follows the policy at {policy} (`run --policy`); change it there. A \
         local change would be undone by the next revision"
    )]
    Following { policy: String },
}

/// Parses one request line, with an error that says what was wrong.
pub fn decode_request(line: &[u8]) -> Result<Request, ControlError> {
    let text = std::str::from_utf8(line).map_err(ControlError::NotUtf8)?;
    serde_json::from_str(text.trim_end()).map_err(ControlError::Malformed)
}

#[cfg(test)]
mod tests {
    use geofilter_common::country::country_id;

    use super::*;

    #[test]
    fn round_trips_and_rejects_garbage() {
        let req = Request::Change {
            change: Change::Block {
                countries: [country_id(*b"RU").unwrap()].into(),
                asns: Default::default(),
            },
            opts: ChangeOptions::default(),
        };
        let line = serde_json::to_string(&req).unwrap();
        assert_eq!(
            line,
            r#"{"op":"change","change":{"kind":"block","countries":["RU"]},"opts":{"caller":null,"force":false,"confirm_s":null}}"#
        );
        let short = r#"{"op":"change","change":{"kind":"block","countries":["ru"]}}"#;
        assert_eq!(
            decode_request(short.as_bytes()).unwrap(),
            req,
            "opts default, codes in any case"
        );
        assert_eq!(decode_request(line.as_bytes()).unwrap(), req);
        let err = |line: &[u8]| decode_request(line).unwrap_err().to_string();
        assert!(err(b"\xff\xfe").contains("UTF-8"));
        assert!(err(b"{\"op\":\"reboot\"}").contains("malformed"));
        assert!(decode_request(b"{\"op\":\"status\",\"x\":1}").is_err());
        // A bad item refuses the whole request, and the message names it.
        let bad =
            r#"{"op":"change","change":{"kind":"except_add","cidrs":["10.0.0.0/8","10.0.0.1/8"]}}"#;
        assert!(
            err(bad.as_bytes()).contains("10.0.0.1/8"),
            "{}",
            err(bad.as_bytes())
        );
    }
}
