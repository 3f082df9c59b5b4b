//! Debian's own kernel packages, fetched into target/kernel-matrix/<version>/ and reused.
//!
//! Each tested version is the kernel of one Debian release: 5.10 is bullseye's (Debian 11), 6.1
//! bookworm's (12), 6.12 trixie's (13). The version is resolved, never hard-coded: it is what the
//! suite's `linux-image-amd64` depends on today. apt runs with a private configuration under
//! target/ (its own sources list, package lists and archive cache), so the system's sources and
//! lists are never touched.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};

use crate::cmd;

/// One kernel of the matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Kernel {
    /// What `--kernel` takes and the matrix prints: "5.10", "6.1", "6.12".
    pub version: &'static str,
    /// The Debian suite whose `linux-image-amd64` it is.
    pub suite: &'static str,
}

pub const KERNELS: [Kernel; 3] = [
    Kernel {
        version: "5.10",
        suite: "bullseye",
    },
    Kernel {
        version: "6.1",
        suite: "bookworm",
    },
    Kernel {
        version: "6.12",
        suite: "trixie",
    },
];

/// An unpacked kernel package.
pub struct Unpacked {
    /// The kernel image (`<root>/boot/vmlinuz-<release>`); vng finds the modules beside it.
    pub vmlinuz: PathBuf,
    /// `uname -r` of the kernel, e.g. `6.1.0-57-amd64`.
    pub release: String,
}

pub fn matrix_dir() -> PathBuf {
    cmd::workspace_root().join("target/kernel-matrix")
}

/// The kernel, unpacked under target/kernel-matrix/<version>/root (fetched on first use).
pub fn ensure(kernel: Kernel) -> anyhow::Result<Unpacked> {
    let dir = matrix_dir().join(kernel.version);
    let root = dir.join("root");
    if let Some(found) = unpacked(&root)? {
        return Ok(found);
    }
    let apt = PrivateApt::new(kernel.suite)?;
    apt.update()?;
    let package = apt.image_package()?;
    eprintln!(
        "xtask: fetching {package} (Debian {}) into {}",
        kernel.suite,
        dir.display()
    );
    let debs = dir.join("deb");
    fs::create_dir_all(&debs).with_context(|| format!("creating {}", debs.display()))?;
    cmd::run(
        apt.command("apt-get")
            .arg("download")
            .arg(&package)
            .current_dir(&debs),
    )?;
    let deb = fs::read_dir(&debs)
        .with_context(|| format!("reading {}", debs.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("{package}_")) && n.ends_with(".deb"))
        })
        .with_context(|| {
            format!(
                "apt-get download left no {package} .deb in {}",
                debs.display()
            )
        })?;
    // Unpack beside, then rename: an interrupted run never leaves a half kernel that looks cached.
    let partial = dir.join("root.partial");
    let _ = fs::remove_dir_all(&partial);
    cmd::run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&partial))?;
    let _ = fs::remove_dir_all(&root);
    fs::rename(&partial, &root).with_context(|| format!("renaming to {}", root.display()))?;
    fs::remove_file(&deb).ok();
    unpacked(&root)?.with_context(|| format!("{} holds no boot/vmlinuz-*", deb.display()))
}

/// The kernel image and its release in an unpacked package, if there is one.
fn unpacked(root: &Path) -> anyhow::Result<Option<Unpacked>> {
    let boot = root.join("boot");
    if !boot.is_dir() {
        return Ok(None);
    }
    for entry in fs::read_dir(&boot).with_context(|| format!("reading {}", boot.display()))? {
        let path = entry?.path();
        let Some(release) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix("vmlinuz-"))
        else {
            continue;
        };
        // trixie's packages are merged-/usr: modules under usr/lib/modules (vng looks there too).
        if ["lib/modules", "usr/lib/modules"]
            .iter()
            .any(|m| root.join(m).join(release).is_dir())
        {
            return Ok(Some(Unpacked {
                release: release.to_owned(),
                vmlinuz: path,
            }));
        }
    }
    Ok(None)
}

/// apt with its own sources list, lists and cache under target/kernel-matrix/apt/<suite>/.
struct PrivateApt {
    options: Vec<String>,
}

impl PrivateApt {
    fn new(suite: &str) -> anyhow::Result<Self> {
        let dir = matrix_dir().join("apt").join(suite);
        let lists = dir.join("lists");
        let archives = dir.join("archives");
        for d in [lists.join("partial"), archives.join("partial")] {
            fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
        }
        let sources = dir.join("sources.list");
        // The kernel security updates of a suite are in <suite>-security, so both are listed.
        let keyring = "/usr/share/keyrings/debian-archive-keyring.gpg";
        fs::write(
            &sources,
            format!(
                "deb [signed-by={keyring}] http://deb.debian.org/debian {suite} main\n\
                 deb [signed-by={keyring}] http://deb.debian.org/debian-security {suite}-security main\n"
            ),
        )
        .with_context(|| format!("writing {}", sources.display()))?;
        let options = [
            format!("Dir::Etc::sourcelist={}", sources.display()),
            "Dir::Etc::sourceparts=-".to_owned(),
            format!("Dir::State::Lists={}", lists.display()),
            format!("Dir::Cache::archives={}", archives.display()),
            "APT::Get::List-Cleanup=0".to_owned(),
        ]
        .into_iter()
        .flat_map(|o| ["-o".to_owned(), o])
        .collect();
        Ok(Self { options })
    }

    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(program);
        command.args(&self.options);
        command
    }

    fn update(&self) -> anyhow::Result<()> {
        cmd::run(self.command("apt-get").args(["update", "-q"]))
    }

    /// The versioned image package the suite's `linux-image-amd64` depends on.
    fn image_package(&self) -> anyhow::Result<String> {
        let out = cmd::output(
            self.command("apt-cache")
                .args(["depends", "linux-image-amd64"]),
        )?;
        // e.g. "  Depends: linux-image-6.1.0-57-amd64"
        match out.lines().find_map(|l| {
            l.trim()
                .strip_prefix("Depends: ")
                .filter(|p| p.starts_with("linux-image-"))
        }) {
            Some(package) => Ok(package.trim().to_owned()),
            None => bail!("linux-image-amd64 depends on no linux-image-*:\n{out}"),
        }
    }
}
