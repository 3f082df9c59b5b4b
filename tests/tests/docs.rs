//! Man pages and shell completions, from the real binary: `geofilter manpages DIR` writes pages
//! that groff renders without a warning, and `geofilter completions SHELL` prints scripts that
//! each shell accepts and that complete every verb.
//!
//! Needs no kernel, but installs groff, zsh and fish with apt when they are missing (hence root,
//! like the other tiers): a check that is skipped because a tool is absent would pass silently.

use std::{
    path::Path,
    process::{Command, Output},
};

use geofilter_tests::{daemon::binary, require_root, scenario::TempDir};

/// Runs `program args`, panicking with its stderr if it fails.
fn run(program: &str, args: &[&str]) -> Output {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Installs `package` with apt unless `command` is already on the PATH.
fn ensure(command: &str, package: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {command}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if found {
        return;
    }
    require_root();
    eprintln!("installing {package} for `{command}`");
    let install = || {
        Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends", package])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .is_ok_and(|s| s.success())
    };
    // An image whose package lists were never fetched knows no package at all.
    if !install() {
        run("apt-get", &["update", "-q"]);
        assert!(install(), "apt-get install {package} failed");
    }
}

fn geofilter(args: &[&str]) -> String {
    let bin = binary();
    let out = run(bin.to_str().expect("utf-8 binary path"), args);
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// The verb paths the binary's own help lists (`["db", "update"]`...), walked from `--help`, so
/// the test does not trust the generator it checks.
fn verbs(prefix: &[&str]) -> Vec<Vec<String>> {
    let mut args = prefix.to_vec();
    args.push("--help");
    let help = geofilter(&args);
    let Some((_, commands)) = help.split_once("Commands:\n") else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for line in commands.lines() {
        // Verbs are the lines indented by two spaces; a blank line ends the list.
        let Some(name) = line
            .strip_prefix("  ")
            .and_then(|l| l.split_whitespace().next())
        else {
            break;
        };
        if name == "help" || line.starts_with("   ") {
            continue;
        }
        let mut path: Vec<&str> = prefix.to_vec();
        path.push(name);
        found.extend(verbs(&path));
        found.push(path.iter().map(|s| s.to_string()).collect());
    }
    found
}

/// What bash completes after `words` (the last one being the partial word, often "").
fn bash_complete(script: &Path, words: &[&str]) -> Vec<String> {
    let line = words
        .iter()
        .map(|w| format!("'{w}'"))
        .collect::<Vec<_>>()
        .join(" ");
    let program = format!(
        "source {script}; COMP_WORDS=(geofilter {line}); COMP_CWORD={cword}; \
         COMP_LINE='geofilter {plain}'; COMP_POINT=${{#COMP_LINE}}; \
         _geofilter geofilter '{cur}' '{prev}'; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        script = script.display(),
        cword = words.len(),
        plain = words.join(" "),
        cur = words.last().copied().unwrap_or(""),
        prev = words.len().checked_sub(2).map_or("geofilter", |i| words[i]),
    );
    let out = run("bash", &["-c", &program]);
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

#[test]
fn bash_completes_every_verb() {
    let dir = TempDir::new();
    let script = dir.0.join("geofilter.bash");
    std::fs::write(&script, geofilter(&["completions", "bash"])).expect("writing the script");
    run("bash", &["-n", script.to_str().expect("utf-8 path")]);
    let verbs = verbs(&[]);
    assert!(verbs.len() > 20, "too few verbs in --help: {verbs:?}");
    for verb in &verbs {
        let (name, parent) = verb.split_last().expect("non-empty verb path");
        let mut words: Vec<&str> = parent.iter().map(String::as_str).collect();
        words.push("");
        let offered = bash_complete(&script, &words);
        assert!(
            offered.contains(name),
            "`geofilter {} <TAB>` does not offer `{name}`: {offered:?}",
            parent.join(" ")
        );
    }
    // Options complete too, e.g. the run flags an operator types most.
    let offered = bash_complete(&script, &["run", "--"]);
    for flag in ["--iface", "--config", "--keep", "--metrics"] {
        assert!(
            offered.iter().any(|o| o == flag),
            "run --<TAB> lacks {flag}: {offered:?}"
        );
    }
}

#[test]
fn zsh_and_fish_accept_their_completion_scripts() {
    let dir = TempDir::new();
    for (shell, package, check) in [("zsh", "zsh", "-n"), ("fish", "fish", "--no-execute")] {
        ensure(shell, package);
        let script = dir.0.join(format!("geofilter.{shell}"));
        let text = geofilter(&["completions", shell]);
        assert!(
            text.contains("run") && text.contains("db"),
            "{shell} script: {text}"
        );
        std::fs::write(&script, text).expect("writing the script");
        run(shell, &[check, script.to_str().expect("utf-8 path")]);
    }
}

#[test]
fn man_pages_cover_every_verb_and_render_without_warnings() {
    ensure("groff", "groff-base");
    ensure("man", "man-db");
    let dir = TempDir::new();
    let listed = geofilter(&["manpages", dir.0.to_str().expect("utf-8 path")]);
    let mut expected = vec!["geofilter.8".to_owned()];
    expected.extend(
        verbs(&[])
            .iter()
            .map(|v| format!("geofilter-{}.8", v.join("-"))),
    );
    for page in &expected {
        let path = dir.0.join(page);
        assert!(
            listed.lines().any(|l| Path::new(l) == path),
            "{page} not written: {listed}"
        );
        let path = path.to_str().expect("utf-8 path");
        // -ww: every warning; -z: no output, only the diagnostics.
        let groff = run("groff", &["-man", "-Tutf8", "-ww", "-z", path]);
        assert!(
            groff.stderr.is_empty(),
            "groff warns about {page}: {}",
            String::from_utf8_lossy(&groff.stderr)
        );
        let man = Command::new("man")
            .args(["-l", path])
            .env("MANPAGER", "cat")
            .env("MANWIDTH", "80")
            .output()
            .expect("running man");
        let text = String::from_utf8_lossy(&man.stdout);
        assert!(
            man.status.success() && text.contains("SYNOPSIS"),
            "man -l {page}: {}{text}",
            String::from_utf8_lossy(&man.stderr)
        );
    }
    // The main page points at each verb's page, as git(1) does.
    let main = run(
        "man",
        &["-l", &dir.0.join("geofilter.8").display().to_string()],
    );
    let main = String::from_utf8_lossy(&main.stdout);
    for page in ["geofilter-run(8)", "geofilter-db(8)", "geofilter-except(8)"] {
        assert!(main.contains(page), "geofilter(8) does not name {page}");
    }
    // Hidden maintainer verbs get no page.
    for hidden in ["geofilter-manpages.8", "geofilter-db-pack.8"] {
        assert!(!dir.0.join(hidden).exists(), "{hidden} was written");
    }
}
