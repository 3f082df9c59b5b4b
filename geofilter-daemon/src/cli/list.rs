//! `geofilter list`: its clap types, and the text form of its replies (`--json` prints the
//! replies as they are).

use clap::Subcommand;

use crate::{
    control::protocol::{ListRows, ListSpec, ListUpdateReply},
    lists::{ListAction, ListFormat, ListSource, check_name},
};

#[derive(Subcommand, Clone, Debug)]
pub enum ListCommand {
    /// Add a named list of networks from a file, an http(s) URL or a preset, read and validated
    /// whole (a bad line refuses it, naming file, line and text), and use it at once. Presets:
    /// spamhaus-drop (Spamhaus DROP, IPv4 and IPv6), firehol-level1 (FireHOL level 1; includes
    /// the private ranges), ipsum (stamparm/ipsum, from a score of 3).
    Add {
        /// The list's name: lower-case letters, digits, - and _, at most 32 characters. It names
        /// the list in `why`, `stats` and the metrics.
        #[arg(value_parser = parse_name)]
        name: String,
        /// A file (one network or address per line, `#` or `;` comments; Spamhaus DROP text or
        /// JSON; FireHOL .netset; ipsum), an http:// or https:// URL of one, or a preset name
        /// (spamhaus-drop, firehol-level1, ipsum; `./ipsum` for a file of that name).
        #[arg(value_parser = parse_source)]
        source: ListSource,
        /// What packets from listed addresses get: drop (a blocklist), or pass whatever their
        /// country (an allowlist).
        #[arg(long, value_enum, default_value_t)]
        action: ListAction,
        /// ipsum lists only: keep the addresses that at least N blocklists name. Lower keeps
        /// more, with more false positives. [default: 3, ipsum's recommendation]
        #[arg(long, value_name = "N")]
        min_score: Option<u32>,
        /// Read the list as this format [default: the preset's, else detected from the first
        /// entry].
        #[arg(long, value_enum, value_name = "FORMAT")]
        format: Option<ListFormat>,
        /// Add it even if it holds this SSH session's own address.
        #[arg(long)]
        force: bool,
    },
    /// Switch a list on: its action applies again (a policy swap, immediate and O(1)).
    Enable {
        #[arg(value_parser = parse_name)]
        name: String,
        /// Enable it even if it holds this SSH session's own address.
        #[arg(long)]
        force: bool,
    },
    /// Switch a list off, keeping its addresses for `why` and for `enable`.
    Disable {
        #[arg(value_parser = parse_name)]
        name: String,
    },
    /// Remove a list and its cached copy.
    Del {
        #[arg(value_parser = parse_name)]
        name: String,
    },
    /// Fetch lists again (this one, or all) and replace each that reads whole; one that fails
    /// (server down, HTTP error, a bad line) keeps its last good copy and is reported.
    Update {
        #[arg(value_parser = parse_name)]
        name: Option<String>,
    },
    /// Show the lists: source, action, format, entries, prefixes, last update, last error.
    Show,
}

impl ListCommand {
    /// The request of `list add`.
    pub fn spec(&self) -> Option<ListSpec> {
        match self {
            ListCommand::Add {
                name,
                source,
                action,
                min_score,
                format,
                ..
            } => Some(ListSpec {
                name: name.clone(),
                source: source.clone(),
                action: *action,
                min_score: *min_score,
                format: *format,
            }),
            _ => None,
        }
    }
}

fn parse_name(s: &str) -> Result<String, String> {
    check_name(s).map_err(|e| e.to_string())?;
    Ok(s.to_owned())
}

fn parse_source(s: &str) -> Result<ListSource, String> {
    ListSource::from_cli(s).map_err(|e| e.to_string())
}

/// `list show` (and `add`, `del`) as text: one block per list.
pub fn rows_text(rows: &ListRows) -> String {
    if rows.lists.is_empty() {
        return "no lists\n".into();
    }
    let now = crate::fleet::unix_now();
    let mut s = String::new();
    for r in &rows.lists {
        let action = match r.action {
            ListAction::Drop => "drop",
            ListAction::Pass => "pass",
        };
        let state = if r.enabled { "enabled" } else { "disabled" };
        s += &format!("{} ({action}, {state}): {}\n", r.name, r.source);
        let format = r.format.map_or("not read".into(), |f| f.to_string());
        let score = r
            .min_score
            .map_or(String::new(), |m| format!(", min score {m}"));
        s += &format!(
            "  {format}{score}: {} entries, {} IPv4 + {} IPv6 prefixes, {} IPv4 addresses\n",
            r.entries, r.prefixes_v4, r.prefixes_v6, r.addresses_v4
        );
        let age = r.last_update.map_or("never".into(), |t| {
            format!("{} s ago", now.saturating_sub(t))
        });
        let sha = r.sha256.as_deref().map_or("-", |h| &h[..h.len().min(12)]);
        s += &format!("  updated {age}, sha256 {sha}\n");
        if let Some(e) = &r.error {
            s += &format!("  last update FAILED (last good copy in force): {e}\n");
        }
    }
    s
}

/// `list update` as text.
pub fn update_text(r: &ListUpdateReply) -> String {
    let mut s = String::new();
    let names = |v: &[String]| v.join(", ");
    if !r.changed.is_empty() {
        s += &format!("changed: {}\n", names(&r.changed));
    }
    if !r.unchanged.is_empty() {
        s += &format!("unchanged: {}\n", names(&r.unchanged));
    }
    for k in &r.skipped {
        s += &format!("skipped {}: {}\n", k.name, k.reason);
    }
    for f in &r.failed {
        s += &format!("FAILED {}\n", f.error);
    }
    if s.is_empty() {
        s = "no lists\n".into();
    }
    s
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::args::{Cli, Command};

    fn parse(args: &[&str]) -> Result<ListCommand, String> {
        let mut all = vec!["geofilter", "list"];
        all.extend_from_slice(args);
        match Cli::try_parse_from(all).map_err(|e| e.to_string())?.command {
            Command::List(c) => Ok(c),
            _ => unreachable!(),
        }
    }

    #[test]
    fn verbs_parse() {
        let add = parse(&["add", "bad", "ipsum", "--min-score", "5"]).unwrap();
        let spec = add.spec().unwrap();
        assert_eq!(spec.source, ListSource::Preset(crate::lists::Preset::Ipsum));
        assert_eq!((spec.action, spec.min_score), (ListAction::Drop, Some(5)));
        let add = parse(&[
            "add", "mine", "mine.txt", "--action", "pass", "--format", "cidr",
        ]);
        let spec = add.unwrap().spec().unwrap();
        assert!(matches!(&spec.source, ListSource::File(p) if p.is_absolute()));
        assert_eq!(
            (spec.action, spec.format),
            (ListAction::Pass, Some(ListFormat::Cidr))
        );
        assert!(
            parse(&["add", "Bad", "ipsum"])
                .unwrap_err()
                .contains("lower-case")
        );
        assert!(
            parse(&["add", "x", "ftp://h/l"])
                .unwrap_err()
                .contains("only http")
        );
        assert!(parse(&["add", "x", "ipsum", "--format", "csv"]).is_err());
        assert!(matches!(
            parse(&["update"]).unwrap(),
            ListCommand::Update { name: None }
        ));
        assert!(matches!(
            parse(&["del", "x"]).unwrap(),
            ListCommand::Del { .. }
        ));
        assert!(matches!(parse(&["show"]).unwrap(), ListCommand::Show));
        assert!(parse(&["show", "--json"]).is_ok(), "--json is global");
    }
}
