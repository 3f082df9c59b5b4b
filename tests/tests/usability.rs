//! Tier 3, usability: how the real CLI meets an operator — global options in either position,
//! clear refusals of bad input — against real daemons on a veth pair between fresh namespaces.

use std::{
    path::Path,
    process::{Command, Output},
};

use geofilter_tests::{
    daemon::binary,
    scenario::{DE_V4, RU_V4, Scene},
};

/// `geofilter <args>` exactly as given (no `--socket` appended), outside any SSH session.
fn geofilter(args: &[&str]) -> Output {
    Command::new(binary())
        .args(args)
        .env_remove("SSH_CONNECTION")
        .env_remove("SSH_CLIENT")
        .output()
        .expect("running the geofilter CLI")
}

/// Its stdout; panics with its stderr when it fails.
fn ok(args: &[&str]) -> String {
    let out = geofilter(args);
    assert!(
        out.status.success(),
        "geofilter {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Where the global options go relative to the verb.
#[derive(Clone, Copy, Debug)]
enum Position {
    /// `geofilter --socket S --json VERB ...`
    Before,
    /// `geofilter VERB ... --socket S --json`
    After,
    /// `geofilter --socket S VERB ... --json`
    Split,
}

fn with_globals(position: Position, socket: &Path, json: bool, verb: &[&str]) -> Vec<String> {
    let socket = socket.to_str().expect("utf-8 socket path");
    let s = |v: &[&str]| v.iter().map(|a| a.to_string()).collect::<Vec<_>>();
    let (mut front, mut back) = match position {
        Position::Before => (s(&["--socket", socket]), vec![]),
        Position::After => (vec![], s(&["--socket", socket])),
        Position::Split => (s(&["--socket", socket]), vec![]),
    };
    if json {
        match position {
            Position::Before => front.push("--json".into()),
            Position::After | Position::Split => back.push("--json".into()),
        }
    }
    [front, s(verb), back].concat()
}

/// Every client verb, in an order that ends where it began (each "do" is followed by its
/// "undo"), so the whole table can run once per position against one daemon.
const VERBS: &[&[&str]] = &[
    &["status"],
    &["stats"],
    &["block", "DE"],
    &["unblock", "DE"],
    &["policy", "allow-only"],
    &["policy", "deny"],
    &["policy", "unknown", "drop"],
    &["policy", "unknown", "pass"],
    &["monitor", "on"],
    &["monitor", "off"],
    &["except", "add", "192.0.2.1"],
    &["except", "list"],
    &["except", "del", "192.0.2.1"],
    &["ports", "set", "--exempt", "tcp:80"],
    &["ports", "clear"],
    &["block", "DE", "--confirm", "600"],
    &["confirm"],
    &["unblock", "DE"],
    &["why", RU_V4],
    &["db", "reload"],
];

#[test]
fn socket_and_json_work_before_and_after_every_verb() {
    let scene = Scene::new(&[RU_V4, DE_V4], &["--block", "RU"]);
    let socket = &scene.daemon.socket;
    for position in [Position::Before, Position::After, Position::Split] {
        for json in [true, false] {
            for verb in VERBS {
                let args = with_globals(position, socket, json, verb);
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                let out = ok(&args);
                for line in out.lines() {
                    let parsed = serde_json::from_str::<serde_json::Value>(line);
                    // Without --json the same verb prints text (and still finds the socket).
                    assert_eq!(
                        parsed.is_ok(),
                        json,
                        "geofilter {}: JSON expected: {json}, got {line:?}",
                        args.join(" ")
                    );
                }
            }
        }
        // The options reached the daemon that was named: a change made with them shows there.
        let args = with_globals(position, socket, false, &["block", "DE"]);
        ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
        let status = scene.daemon.cli_json(&["status"]);
        assert_eq!(
            status["policy"]["countries"],
            serde_json::json!(["DE", "RU"]),
            "{position:?}"
        );
        scene.daemon.ok(&["unblock", "DE"]);
    }
}

#[test]
fn unload_takes_the_socket_before_or_after_the_verb() {
    for position in [Position::Before, Position::After] {
        let mut scene = Scene::new(&[], &[]);
        let args = with_globals(position, &scene.daemon.socket, false, &["unload"]);
        ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(scene.daemon.wait_exit().success(), "{position:?}");
        let root = scene.daemon.pin_root().expect("pin root").to_owned();
        assert!(!root.exists(), "{position:?}: {} left", root.display());
    }
}
