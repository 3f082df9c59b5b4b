//! A fresh Debian 12 root with the package under test: the inputs `cargo xtask test` builds
//! (`package::test_inputs`: GEOFILTER_DEB, GEOFILTER_DEB_OLD, GEOFILTER_DEB_ROOT), and a root
//! unpacked from the cached bookworm tarball, removed on drop, also when a test fails.
//!
//! Used by `package.rs` (dpkg in a chroot, as piuparts does it) and `systemd.rs` (the same root
//! booted under systemd-nspawn).

use std::{
    collections::BTreeSet,
    fs,
    path::{Path, PathBuf},
    process::{Command, Output},
};

use crate::netns::{checked as run, unique};

/// One of the package test inputs, by its variable's name.
pub fn package_input(name: &str) -> PathBuf {
    let path = PathBuf::from(std::env::var_os(name).unwrap_or_else(|| {
        panic!("{name} is not set: run this test through `cargo xtask test`, which builds it")
    }));
    assert!(path.is_file(), "{name}={} does not exist", path.display());
    path
}

/// A bookworm minbase + systemd root in a folder of its own.
pub struct DebRoot(PathBuf);

impl DebRoot {
    pub fn new() -> Self {
        let dir = std::env::temp_dir().join(unique("gf-pkg-root-"));
        fs::create_dir_all(&dir).expect("creating the root folder");
        let root = Self(dir);
        run(Command::new("tar")
            .arg("-C")
            .arg(&root.0)
            .arg("-xf")
            .arg(package_input("GEOFILTER_DEB_ROOT")));
        root
    }

    pub fn dir(&self) -> &Path {
        &self.0
    }

    /// `rel` (absolute inside the root) as a host path.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.0.join(rel.trim_start_matches('/'))
    }

    /// Runs `args` inside the root with chroot, with no standard input (a dpkg prompt fails,
    /// as in CI).
    pub fn exec(&self, args: &[&str]) -> Output {
        run(Command::new("chroot")
            .arg(&self.0)
            .args(args)
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(std::process::Stdio::null()))
    }

    /// Copies a package from the host into the root's /var/tmp (a booted root has a tmpfs on
    /// /tmp that hides the folder's contents); returns its path inside the root.
    pub fn copy_in(&self, deb: &Path) -> String {
        let name = deb
            .file_name()
            .expect("deb name")
            .to_string_lossy()
            .into_owned();
        fs::copy(deb, self.path("/var/tmp").join(&name)).expect("copying the package in");
        format!("/var/tmp/{name}")
    }

    /// `dpkg -i` of a package from the host, in a chroot; returns dpkg's output.
    pub fn install(&self, deb: &Path) -> String {
        let inside = self.copy_in(deb);
        let out = self.exec(&["dpkg", "-i", &inside]);
        fs::remove_file(self.path(&inside)).expect("removing the copied package");
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    /// dpkg's status abbreviation and version of geofilter ("ii 0.1.0"), empty when unknown.
    pub fn status(&self) -> String {
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

    /// Every path in the root but the bookkeeping that installing anything changes.
    pub fn tree(&self) -> BTreeSet<String> {
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

impl Default for DebRoot {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for DebRoot {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}
