//! The privileged test binaries of `geofilter-tests`, as cargo reports them: every
//! `tests/tests/*.rs` runs without a hand-kept list (aya's xtask does the same).

use std::path::PathBuf;

use crate::{build, cmd, setup};

/// Builds the test binaries on the host; returns (test name, executable), sorted by name.
pub fn build() -> anyhow::Result<Vec<(String, PathBuf)>> {
    let mut cargo = build::cargo(&setup::tools_dir().join("bin"))?;
    cargo.args([
        "test",
        "--package",
        "geofilter-tests",
        "--no-run",
        "--message-format=json",
    ]);
    eprintln!("xtask: $ {}", cmd::display(&cargo));
    let out = cmd::output(&mut cargo)?;
    let mut found = Vec::new();
    for line in out.lines() {
        let Ok(message) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let is_test = message["target"]["kind"]
            .as_array()
            .is_some_and(|kinds| kinds.iter().any(|k| k == "test"));
        if let (true, Some(name), Some(exe)) = (
            is_test,
            message["target"]["name"].as_str(),
            message["executable"].as_str(),
        ) {
            found.push((name.to_owned(), PathBuf::from(exe)));
        }
    }
    anyhow::ensure!(
        !found.is_empty(),
        "cargo built no test binary of geofilter-tests"
    );
    found.sort();
    Ok(found)
}
