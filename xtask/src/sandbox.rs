//! The one runner of every privileged test binary, on the host and in the kernel-matrix VMs: a
//! private sandbox that looks like a fresh machine, so a step that only passes because an earlier
//! run (or the developer) left something mounted can never pass here.
//!
//! `unshare --mount --pid --fork --mount-proc --propagation private` gives the tests their own
//! mount and PID namespaces. Inside, a small shell is PID 1: it unmounts every bpffs stacked on
//! /sys/fs/bpf (only in the sandbox: propagation is private, the host keeps its mount), runs the
//! test binary as its child and returns its status. The shell reaps orphans while it waits (dash
//! and bash wait for any child); when it exits the kernel kills whatever is left in the PID
//! namespace, so a leaked daemon cannot outlive its tier.

use std::{fs, path::PathBuf};

use anyhow::{Context as _, bail};

use crate::cmd;

/// PID 1 of the sandbox. Exit 125 says the sandbox itself failed, not the tests.
const SCRIPT: &str = r#"# Written by `cargo xtask test` (xtask/src/sandbox.rs): PID 1 of the test sandbox.
# A fresh machine has no bpffs on /sys/fs/bpf: unmount each one stacked there (this mount
# namespace only).
while [ "$(stat -f -c %T /sys/fs/bpf 2>/dev/null)" = bpf_fs ]; do
    umount /sys/fs/bpf || { echo "sandbox: cannot unmount /sys/fs/bpf" >&2; exit 125; }
done
"$@"
"#;

/// Writes the sandbox script under target/ and returns the words of the runner: `[sudo -E]
/// unshare ... private sh <script>`, to be followed by the test binary and its arguments.
/// `as_root` says whether the caller already is root (in a VM guest it always is).
pub fn runner(as_root: bool) -> anyhow::Result<Vec<String>> {
    let dir = cmd::workspace_root().join("target/xtask");
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let script: PathBuf = dir.join("sandbox.sh");
    fs::write(&script, SCRIPT).with_context(|| format!("writing {}", script.display()))?;
    let script = script
        .to_str()
        .context("the workspace path is not UTF-8")?
        .to_owned();
    // Cargo splits a runner given in the environment at whitespace.
    if script.contains(char::is_whitespace) {
        bail!("the workspace path {script:?} holds whitespace: the test runner cannot name it");
    }
    let mut words: Vec<String> = Vec::new();
    if !as_root {
        words.extend(["sudo".into(), "-E".into()]);
    }
    words.extend(
        [
            "unshare",
            "--mount",
            "--pid",
            "--fork",
            "--mount-proc",
            "--propagation",
            "private",
            "sh",
        ]
        .map(String::from),
    );
    words.push(script);
    Ok(words)
}
