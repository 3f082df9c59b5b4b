//! The Debian package (`cargo xtask package`): lintian, then install, upgrade and purge in a
//! fresh Debian 12 root, as piuparts does it: `dpkg -i` in a chroot where systemd is not PID 1,
//! with a `policy-rc.d` that records every service action the maintainer scripts ask for and
//! refuses it (exit 101, the interface `deb-systemd-invoke` honours).
//!
//! `cargo xtask test` passes the packages and the root: GEOFILTER_DEB (this version),
//! GEOFILTER_DEB_OLD (the same build as version 0.0.1) and GEOFILTER_DEB_ROOT (a bookworm
//! minbase + systemd tarball made by mmdebstrap, cached under target/).

use std::{
    collections::BTreeSet,
    fs,
    path::{Path, PathBuf},
    process::{Command, Output},
};

use geofilter_tests::{netns::unique, require_root};

fn env_path(name: &str) -> PathBuf {
    let path = PathBuf::from(std::env::var_os(name).unwrap_or_else(|| {
        panic!("{name} is not set: run this test through `cargo xtask test`, which builds it")
    }));
    assert!(path.is_file(), "{name}={} does not exist", path.display());
    path
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("starting {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A fresh root unpacked from the cached tarball; removed on drop, also when a test fails.
struct Chroot(PathBuf);

impl Chroot {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(unique("gf-pkg-root-"));
        fs::create_dir_all(&dir).expect("creating the chroot folder");
        let chroot = Self(dir);
        run(Command::new("tar")
            .arg("-C")
            .arg(&chroot.0)
            .arg("-xf")
            .arg(env_path("GEOFILTER_DEB_ROOT")));
        // Scripts test `-d /run/systemd/system` before any service action: make them take the
        // systemd branch, so policy-rc.d sees (and refuses) what they would do on a real host.
        fs::create_dir_all(chroot.0.join("run/systemd/system")).expect("run/systemd/system");
        let policy = chroot.0.join("usr/sbin/policy-rc.d");
        fs::write(
            &policy,
            "#!/bin/sh\necho \"$*\" >> /var/log/policy-rc.d.log\nexit 101\n",
        )
        .expect("writing policy-rc.d");
        run(Command::new("chmod").arg("0755").arg(&policy));
        chroot
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.0.join(rel.trim_start_matches('/'))
    }

    /// Runs `args` inside the root, with no standard input (a dpkg prompt fails, as in CI).
    fn exec(&self, args: &[&str]) -> Output {
        run(Command::new("chroot")
            .arg(&self.0)
            .args(args)
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(std::process::Stdio::null()))
    }

    /// `dpkg -i` of a package from the host; returns dpkg's output.
    fn install(&self, deb: &Path) -> String {
        let name = deb
            .file_name()
            .expect("deb name")
            .to_string_lossy()
            .into_owned();
        fs::copy(deb, self.path("/tmp").join(&name)).expect("copying the package in");
        let out = self.exec(&["dpkg", "-i", &format!("/tmp/{name}")]);
        fs::remove_file(self.path("/tmp").join(&name)).expect("removing the copied package");
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    fn status(&self) -> String {
        let out = Command::new("chroot")
            .arg(&self.0)
            .args([
                "dpkg-query",
                "-W",
                "-f=${db:Status-Abbrev}${Version}",
                "geofilter",
            ])
            .output()
            .expect("dpkg-query");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
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

    /// Every path in the root but the bookkeeping that installing anything changes.
    fn tree(&self) -> BTreeSet<String> {
        // dpkg's own database and logs, debconf's and man-db's caches (man-db's trigger indexes
        // the pages; `systemd-analyze verify` runs `man`, which leaves a cat page), and /run,
        // where `systemd-analyze` keeps runtime state: they record that a package came and went,
        // not files of the package.
        const BOOKKEEPING: &[&str] = &[
            "var/lib/dpkg/status",
            "var/lib/dpkg/status-old",
            "var/lib/dpkg/available",
            "var/lib/dpkg/lock",
            "var/lib/dpkg/lock-frontend",
            "var/lib/dpkg/triggers/",
            "var/lib/dpkg/updates/",
            "var/cache/debconf/",
            "var/cache/man/",
            "run/",
            "var/log/",
            "tmp/",
        ];
        let out = run(Command::new("find").arg(".").current_dir(&self.0));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.trim_start_matches("./").to_owned())
            .filter(|p| {
                !BOOKKEEPING
                    .iter()
                    .any(|b| p == b.trim_end_matches('/') || (b.ends_with('/') && p.starts_with(b)))
            })
            .collect()
    }
}

impl Drop for Chroot {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
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
    let deb = env_path("GEOFILTER_DEB");
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
    let files = payload(&env_path("GEOFILTER_DEB"));
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
    let (old, new) = (env_path("GEOFILTER_DEB_OLD"), env_path("GEOFILTER_DEB"));
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
