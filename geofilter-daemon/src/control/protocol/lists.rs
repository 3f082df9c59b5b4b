//! `list add|del|update|show` on the control socket: the payloads, for [`Request`](super::Request)
//! variants such as `ListAdd(ListSpec)`, `ListDel(ListName)`, `ListUpdate(ListUpdate)` and
//! `ListShow {}`, and their replies. The handlers are thin over [`crate::lists::Lists`].

use serde::{Deserialize, Serialize};

use crate::lists::{ListError, UpdateReport};
pub use crate::lists::{ListRow, ListSpec};

/// `list del NAME`, and any request about one list by name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListName {
    pub name: String,
}

/// `list update [NAME]`: one list, or all when `name` is absent.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListUpdate {
    #[serde(default)]
    pub name: Option<String>,
}

/// The reply to `list show` (every list), `list add` (the new one) and `list del` (the one
/// removed).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListRows {
    pub lists: Vec<ListRow>,
}

/// The reply to `list update`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListUpdateReply {
    /// Lists whose addresses changed (their tables were rebuilt).
    pub changed: Vec<String>,
    /// Lists read again with the same addresses.
    pub unchanged: Vec<String>,
    /// Lists not fetched this time, and why.
    pub skipped: Vec<ListSkipped>,
    /// Lists that kept their last good copy, and why.
    pub failed: Vec<ListFailed>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListSkipped {
    pub name: String,
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListFailed {
    pub name: String,
    /// The whole message: list, source and cause.
    pub error: String,
}

impl From<&UpdateReport> for ListUpdateReply {
    fn from(r: &UpdateReport) -> Self {
        Self {
            changed: r.changed.clone(),
            unchanged: r.unchanged.clone(),
            skipped: r
                .skipped
                .iter()
                .map(|(name, reason)| ListSkipped {
                    name: name.clone(),
                    reason: reason.clone(),
                })
                .collect(),
            failed: r
                .failed
                .iter()
                .map(|e| ListFailed {
                    name: match e {
                        ListError::List { name, .. } => name.clone(),
                        _ => String::new(),
                    },
                    error: e.to_string(),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lists::{ListAction, ListSource, Preset};

    #[test]
    fn wire_forms() {
        let add: ListSpec =
            serde_json::from_str(r#"{"name":"ipsum","source":{"preset":"ipsum"},"min_score":4}"#)
                .unwrap();
        assert_eq!(add.source, ListSource::Preset(Preset::Ipsum));
        assert_eq!((add.action, add.min_score), (ListAction::Drop, Some(4)));
        let bad = serde_json::from_str::<ListSpec>(r#"{"name":"x","source":{"url":"u"},"y":1}"#);
        assert!(bad.unwrap_err().to_string().contains("unknown field"));
        let all: ListUpdate = serde_json::from_str("{}").unwrap();
        assert_eq!(all.name, None);
        let report = UpdateReport {
            changed: vec!["a".into()],
            failed: vec![ListError::List {
                name: "b".into(),
                from: "https://x.example/b.txt".into(),
                cause: Box::new(ListError::NoSuchList("z".into())),
            }],
            ..Default::default()
        };
        let reply = ListUpdateReply::from(&report);
        assert_eq!(reply.failed[0].name, "b");
        assert_eq!(
            reply.failed[0].error,
            "list b (https://x.example/b.txt): no list named z"
        );
        // Replies go through serde_json::Value in the CLI: IPv6 counts as decimal strings.
        let row = ListRow {
            name: "a".into(),
            source: "ipsum".into(),
            action: ListAction::Pass,
            enabled: true,
            format: None,
            min_score: None,
            entries: 1,
            prefixes_v4: 0,
            prefixes_v6: 1,
            addresses_v4: 0,
            addresses_v6: 1 << 96,
            last_update: None,
            sha256: None,
            error: None,
        };
        let v = serde_json::to_value(ListRows {
            lists: vec![row.clone()],
        })
        .unwrap();
        assert_eq!(
            v["lists"][0]["addresses_v6"],
            "79228162514264337593543950336"
        );
        assert_eq!(v["lists"][0]["action"], "pass");
        let back: ListRows = serde_json::from_value(v).unwrap();
        assert_eq!(back.lists, [row]);
    }
}
