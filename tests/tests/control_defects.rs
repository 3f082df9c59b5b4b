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
