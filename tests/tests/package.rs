//! The Debian package (`cargo xtask package`): lintian, then install, upgrade and purge in a
//! fresh Debian 12 root, as piuparts does it: `dpkg -i` in a chroot where systemd is not PID 1,
//! with a `policy-rc.d` that records every service action the maintainer scripts ask for and
//! refuses it (exit 101, the interface `deb-systemd-invoke` honours).
//!
//! `cargo xtask test` passes the packages and the root: GEOFILTER_DEB (this version),
//! GEOFILTER_DEB_OLD (the same build as version 0.0.1) and GEOFILTER_DEB_ROOT (a bookworm
//! minbase + systemd tarball made by mmdebstrap, cached under target/).

use std::{fs, path::Path, process::Command};

use geofilter_tests::{
    debroot::{DebRoot, package_input},
    netns::checked as run,
    require_root,
};

/// A fresh root whose service actions are recorded and refused, as piuparts does it.
struct Chroot(DebRoot);

impl std::ops::Deref for Chroot {
    type Target = DebRoot;
    fn deref(&self) -> &DebRoot {
        &self.0
    }
}

impl Chroot {
    fn new() -> Self {
        let root = DebRoot::new();
        // Scripts test `-d /run/systemd/system` before any service action: make them take the
        // systemd branch, so policy-rc.d sees (and refuses) what they would do on a real host.
        fs::create_dir_all(root.path("/run/systemd/system")).expect("run/systemd/system");
        let policy = root.path("/usr/sbin/policy-rc.d");
        fs::write(
            &policy,
            "#!/bin/sh\necho \"$*\" >> /var/log/policy-rc.d.log\nexit 101\n",
        )
        .expect("writing policy-rc.d");
        run(Command::new("chmod").arg("0755").arg(&policy));
        Self(root)
    }

    /// The service actions asked for so far (and refused), then forgets them.
    fn take_service_actions(&self) -> Vec<String> {
        let log = self.path("/var/log/policy-rc.d.log");
        let actions = fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect();
        let _ = fs::remove_file(log);
        actions
    }
}

/// The paths the package ships (`dpkg-deb -c`), without the leading `./`.
fn payload(deb: &Path) -> Vec<String> {
    let out = run(Command::new("dpkg-deb").arg("-c").arg(deb));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .map(|p| p.trim_start_matches("./").trim_end_matches('/').to_owned())
        .filter(|p| !p.is_empty())
        .collect()
}

#[test]
fn lintian_reports_no_errors() {
    let deb = package_input("GEOFILTER_DEB");
    let out = Command::new("lintian")
        .args([
            "--fail-on",
            "error",
            "--display-info",
            "--tag-display-limit",
            "0",
        ])
        .arg(&deb)
        .output()
        .expect("running lintian");
    let report = String::from_utf8_lossy(&out.stdout);
    // Shown in CI's log either way: warnings do not fail, but should be read.
    eprintln!(
        "lintian {}:\n{report}{}",
        deb.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "lintian reports errors:\n{report}");
    assert!(
        !report.lines().any(|l| l.starts_with("E:")),
        "lintian reports errors:\n{report}"
    );
}

#[test]
fn ships_what_an_operator_expects() {
    let files = payload(&package_input("GEOFILTER_DEB"));
    for expected in [
        "usr/sbin/geofilter",
        "usr/lib/systemd/system/geofilter.service",
        "etc/geofilter/geofilter.toml",
        "usr/share/man/man8/geofilter.8.gz",
        "usr/share/bash-completion/completions/geofilter",
        "usr/share/zsh/vendor-completions/_geofilter",
        "usr/share/fish/vendor_completions.d/geofilter.fish",
        "usr/share/doc/geofilter/README.md.gz",
        "usr/share/doc/geofilter/NOTICE.gz",
        "usr/share/doc/geofilter/copyright",
        "usr/share/doc/geofilter/changelog.gz",
    ] {
        assert!(
            files.iter().any(|f| f == expected),
            "the package lacks {expected}; it holds {files:#?}"
        );
    }
    let pages = files
        .iter()
        .filter(|f| f.starts_with("usr/share/man/man8/"))
        .count();
    assert!(
        pages > 1,
        "only {pages} man page: one per verb group expected"
    );
}

#[test]
fn installs_upgrades_and_purges_cleanly_in_a_fresh_bookworm_root() {
    require_root();
    let (old, new) = (
        package_input("GEOFILTER_DEB_OLD"),
        package_input("GEOFILTER_DEB"),
    );
    let root = Chroot::new();
    let before = root.tree();

    // Install the older build: nothing starts, nothing is enabled, the operator is told why.
    let said = root.install(&old);
    assert_eq!(
        root.status(),
        "ii 0.0.1",
        "dpkg -i of the old build:\n{said}"
    );
    assert!(
        said.contains("systemctl enable --now geofilter"),
        "postinst does not tell the operator how to start it:\n{said}"
    );
    assert_eq!(
        root.take_service_actions(),
        Vec::<String>::new(),
        "installing must not start the service"
    );
    assert!(
        !root
            .path("/etc/systemd/system/multi-user.target.wants/geofilter.service")
            .exists(),
        "installing must not enable the service"
    );
    // The binary runs on bookworm's libraries, and systemd accepts the unit as installed.
    root.exec(&["/usr/sbin/geofilter", "--version"]);
    // `man geofilter` finds the installed page, and bash completes the verbs from the installed
    // script (what an operator types first).
    let man = root.exec(&["man", "-P", "cat", "geofilter"]);
    let page = String::from_utf8_lossy(&man.stdout);
    assert!(
        page.contains("geofilter") && page.contains("block"),
        "man geofilter in the installed root:\n{page}"
    );
    let completed = root.exec(&[
        "bash",
        "-c",
        "source /usr/share/bash-completion/completions/geofilter; COMP_WORDS=(geofilter bl); \
         COMP_CWORD=1; _geofilter geofilter bl geofilter; echo \"${COMPREPLY[*]}\"",
    ]);
    let completed = String::from_utf8_lossy(&completed.stdout);
    assert!(
        completed.split_whitespace().any(|w| w == "block"),
        "bash completion of `geofilter bl` in the installed root: {completed:?}"
    );
    let verify = root.exec(&[
        "systemd-analyze",
        "verify",
        "/usr/lib/systemd/system/geofilter.service",
    ]);
    let verify_said = String::from_utf8_lossy(&verify.stderr);
    assert!(
        !verify_said.contains("geofilter"),
        "systemd-analyze verify complains about the unit:\n{verify_said}"
    );

    // The operator edits the conffile; an upgrade keeps it without asking (stdin is closed, so
    // a prompt would fail dpkg) and try-restarts the service, which is a no-op when stopped.
    let conf = root.path("/etc/geofilter/geofilter.toml");
    let edited = fs::read_to_string(&conf).expect("reading the conffile") + "# operator's edit\n";
    fs::write(&conf, &edited).expect("editing the conffile");
    let said = root.install(&new);
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(root.status(), format!("ii {version}"), "upgrade:\n{said}");
    assert_eq!(
        root.take_service_actions(),
        vec!["geofilter.service try-restart".to_owned()],
        "an upgrade must try-restart the service (and nothing else)"
    );
    assert_eq!(
        fs::read_to_string(&conf).expect("reading the conffile"),
        edited,
        "the upgrade replaced the operator's configuration"
    );
    let conffiles = root.exec(&["dpkg-query", "-W", "-f=${Conffiles}", "geofilter"]);
    assert!(
        String::from_utf8_lossy(&conffiles.stdout).contains("/etc/geofilter/geofilter.toml"),
        "geofilter.toml is not a conffile"
    );

    // What a started daemon leaves in its StateDirectory (the daemon cannot run in the chroot:
    // no bpffs, no systemd as PID 1), which purge must remove with the package.
    let state = root.path("/var/lib/geofilter");
    fs::create_dir_all(state.join("db")).expect("creating the state folder");
    fs::write(state.join("state.json"), "{}").expect("writing a state file");

    // Purge: the service is stopped first, and nothing of the package is left.
    root.exec(&["dpkg", "--purge", "geofilter"]);
    assert_eq!(root.status(), "", "dpkg still knows geofilter after purge");
    assert_eq!(
        root.take_service_actions(),
        vec!["geofilter.service stop".to_owned()],
        "removal must stop the service"
    );
    let shipped: Vec<String> = payload(&new)
        .into_iter()
        .filter(|p| !before.contains(p) && root.path(p).exists())
        .collect();
    assert_eq!(
        shipped,
        Vec::<String>::new(),
        "files of the package left after purge"
    );
    let after = root.tree();
    let added: Vec<&String> = after.difference(&before).collect();
    let removed: Vec<&String> = before.difference(&after).collect();
    assert!(
        added.is_empty() && removed.is_empty(),
        "purge left the root changed: added {added:#?}, removed {removed:#?}"
    );
}
