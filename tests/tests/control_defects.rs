//! Tier 3, control plane: the control-plane defects of issue 10 (commit-confirm persistence and
//! rollback, bounds, lockout on every change, SIGHUP, `why` explanations), each with the real
//! daemon and CLI on a veth pair between fresh namespaces.

use geofilter_tests::scenario::Scene;

/// The countries of the policy in the daemon's state file.
fn saved_countries(scene: &Scene) -> serde_json::Value {
    let path = scene.daemon.state_file();
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let saved: serde_json::Value = serde_json::from_str(&text).expect("state file is JSON");
    saved["policy"]["countries"].clone()
}

fn status_countries(scene: &Scene) -> serde_json::Value {
    scene.daemon.cli_json(&["status"])["policy"]["countries"].clone()
}

/// Defect 6: `confirm` must write the confirmed policy to the state file, or a restart silently
/// reverts it.
#[test]
fn a_confirmed_change_is_saved_and_survives_a_restart() {
    let mut scene = Scene::new(&[], &["--block", "RU"]);
    scene.daemon.ok(&["block", "CN", "--confirm", "60"]);
    assert_eq!(
        saved_countries(&scene),
        serde_json::json!(["RU"]),
        "while unconfirmed, the state file holds the state to roll back to"
    );
    scene.daemon.ok(&["confirm"]);
    assert_eq!(saved_countries(&scene), serde_json::json!(["CN", "RU"]));
    scene.daemon.stop();
    let args = scene.run_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    scene.daemon.restart(&args);
    assert_eq!(status_countries(&scene), serde_json::json!(["CN", "RU"]));
}

/// Defect 8: an out-of-range `--confirm` is refused with a clear error before anything is
/// applied; it used to panic the handler half-way, leaving BY blocked while the state file and
/// `pending_confirm_s` said otherwise.
#[test]
fn an_out_of_range_confirm_window_is_refused_and_changes_nothing() {
    let scene = Scene::new(&[], &["--block", "RU"]);
    for secs in ["18446744073709551615", "0", "86401"] {
        let out = scene.daemon.cli(&["block", "BY", "--confirm", secs]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "--confirm {secs} accepted");
        assert!(
            err.contains(secs) && err.contains("1 to 86400 seconds"),
            "--confirm {secs}: {err}"
        );
        let status = scene.daemon.cli_json(&["status"]);
        assert_eq!(status["policy"]["countries"], serde_json::json!(["RU"]));
        assert!(status["pending_confirm_s"].is_null(), "{status}");
        assert_eq!(saved_countries(&scene), serde_json::json!(["RU"]));
    }
    // The longest window is accepted, and the handler is still there to confirm it.
    scene.daemon.ok(&["block", "BY", "--confirm", "86400"]);
    let pending = scene.daemon.cli_json(&["status"])["pending_confirm_s"].clone();
    assert!(pending.as_u64().is_some_and(|s| s > 86_000), "{pending}");
    scene.daemon.ok(&["confirm"]);
    assert_eq!(status_countries(&scene), serde_json::json!(["BY", "RU"]));
}
