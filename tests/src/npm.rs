//! Real datasets from the npm registry (ip-location-db publishes its data there), fetched once
//! with `npm pack` into `target/exactness-data/` for the full-dataset tests.

use std::{
    io::Write as _,
    path::{Path, PathBuf},
    process::Command,
};

/// `target/exactness-data/<name>-<version>/package/` of the npm package `@scope/<name>`, fetched
/// and unpacked on first use; `files` must all be in it. `Err` says why it could not be fetched.
pub fn package(scoped: &str, version: &str, files: &[&str]) -> Result<PathBuf, String> {
    let name = scoped.rsplit('/').next().expect("a package name");
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/exactness-data");
    let dir = base.join(format!("{name}-{version}"));
    let package = dir.join("package");
    if files.iter().all(|f| package.join(f).is_file()) {
        return Ok(package);
    }
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let _ = writeln!(
        std::io::stderr(),
        "npm: fetching {scoped}@{version} with npm pack"
    );
    let out = Command::new("npm")
        .args(["pack", "--loglevel=error", "--pack-destination"])
        .arg(&dir)
        .arg(format!("{scoped}@{version}"))
        .output()
        .map_err(|e| format!("cannot run npm: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "npm pack failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    // `@scope/name` packs to `scope-name-<version>.tgz`.
    let tgz = format!(
        "{}-{version}.tgz",
        scoped.trim_start_matches('@').replace('/', "-")
    );
    let status = Command::new("tar")
        .args(["xzf", &tgz])
        .current_dir(&dir)
        .status()
        .map_err(|e| format!("cannot run tar: {e}"))?;
    if !status.success() || !files.iter().all(|f| package.join(f).is_file()) {
        return Err(format!("{tgz} did not unpack into the expected files"));
    }
    Ok(package)
}
