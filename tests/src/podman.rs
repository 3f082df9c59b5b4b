//! The geofilter OCI image under podman, for the container tier (`tests/tests/container.rs`):
//! the image `cargo xtask test` built, `podman run` as a node's runtime would run the DaemonSet
//! of deploy/kubernetes/, and a container removed on drop.

use std::{
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use crate::netns::{checked, unique};

/// The image under test, which `cargo xtask test` builds (`cargo xtask image`).
pub fn image() -> String {
    let image = std::env::var("GEOFILTER_IMAGE").unwrap_or_else(|_| {
        panic!("GEOFILTER_IMAGE is not set: run this test through `cargo xtask test`, which builds the image")
    });
    let exists = podman().args(["image", "exists", &image]).status();
    assert!(
        exists.is_ok_and(|s| s.success()),
        "GEOFILTER_IMAGE={image} is not in podman's storage (`cargo xtask image` builds it)"
    );
    image
}

/// `podman` with the runtime every host of ours can run: crun, Debian's default, refuses a host
/// whose cgroup v2 hierarchy has controllers while v1 is mounted too ("cgroups in hybrid mode not
/// supported"), as this project's CI machine does; runc runs on every cgroup layout.
pub fn podman() -> Command {
    let mut podman = Command::new("podman");
    podman.args(["--runtime", "runc"]);
    podman
}

/// The limits the container gets. podman asks for 1048576 open files and processes by default,
/// which a host without CAP_SYS_RESOURCE (this CI's) cannot grant: the runtime's setrlimit fails
/// with EPERM. The host's own hard limit of open files, and processes to spare (the daemon runs
/// a handful of threads).
fn ulimits() -> [String; 4] {
    let mut files = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    assert_eq!(
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut files) },
        0
    );
    let files = files.rlim_max.min(65_536);
    [
        "--ulimit".into(),
        format!("nofile={files}:{files}"),
        "--ulimit".into(),
        "nproc=4096:4096".into(),
    ]
}

/// A bpffs on /sys/fs/bpf, shared, as systemd leaves it on every node (sys-fs-bpf.mount, and
/// systemd makes mounts shared): the DaemonSet needs the node's own, and its HostToContainer
/// propagation is a slave of a shared mount. Inside `cargo xtask test`'s sandbox this is the
/// sandbox's mount only.
pub fn ensure_host_bpffs() {
    let bpffs = Path::new("/sys/fs/bpf");
    if !geofilter_daemon::datapath::bpffs::is_bpffs(bpffs).unwrap_or(false) {
        checked(Command::new("mount").args(["-t", "bpf", "bpf", "/sys/fs/bpf"]));
    }
    checked(Command::new("mount").args(["--make-shared", "/sys/fs/bpf"]));
}

/// `podman run` flags for the container's privileges: all of them, as the plain podman case.
pub const PRIVILEGED: &[&str] = &["--privileged"];

/// The securityContext of deploy/kubernetes/daemonset.yaml (keep the two in step): the systemd
/// unit's capabilities only, a read-only root, /tmp a tmpfs (the DaemonSet's emptyDir).
pub const DAEMONSET: &[&str] = &[
    "--cap-drop=all",
    "--cap-add=CAP_BPF,CAP_NET_ADMIN,CAP_SYS_ADMIN,CAP_PERFMON,CAP_SYS_RESOURCE",
    "--read-only",
    "--tmpfs=/tmp",
];

/// What `podman run` gives the container besides the image and its arguments.
pub struct Spec<'a> {
    /// The network namespace (a name under /run/netns) it runs in, as `hostNetwork` runs a pod
    /// in the node's.
    pub netns: &'a str,
    /// Its privileges: [`PRIVILEGED`] or [`DAEMONSET`].
    pub security: &'a [&'a str],
    /// `--volume` values.
    pub volumes: Vec<String>,
    /// `--env` values (`NAME=VALUE`).
    pub env: Vec<String>,
}

/// `podman run` of the image as `spec` says, with `extra` flags (`--detach`, `--rm`), and `args`
/// for its `geofilter` entry point.
pub fn run(spec: &Spec, extra: &[&str], args: &[&str]) -> Command {
    let mut run = podman();
    run.args(["run", "--pull=never"])
        .args(spec.security)
        .args(extra)
        // A plain file podman reads back (`podman logs`): journald may not run here.
        .args(["--log-driver", "k8s-file"])
        .arg(format!("--network=ns:/run/netns/{}", spec.netns))
        .args(ulimits());
    for volume in &spec.volumes {
        run.args(["--volume", volume]);
    }
    for var in &spec.env {
        run.args(["--env", var]);
    }
    run.arg(image()).args(args);
    run
}

/// A running container, removed (with `--force`) on drop.
pub struct Container {
    name: String,
}

impl Container {
    /// `podman run --detach` of the image (see [`run`]).
    pub fn start(spec: &Spec, args: &[&str]) -> Self {
        let name = unique("gf-ctr-");
        checked(&mut run(spec, &["--detach", "--name", &name], args));
        Self { name }
    }

    pub fn logs(&self) -> String {
        let out = podman().args(["logs", &self.name]).output();
        out.map(|o| {
            format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            )
        })
        .unwrap_or_default()
    }

    pub fn running(&self) -> bool {
        let out = podman()
            .args(["inspect", "--format", "{{.State.Running}}", &self.name])
            .output();
        out.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "true")
    }

    /// Waits (at most 60 s) for the daemon's `geofilter: ready` line.
    pub fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let logs = self.logs();
            if logs.contains("geofilter: ready") {
                return;
            }
            assert!(
                self.running(),
                "the container exited before it was ready; its log:\n{logs}"
            );
            assert!(
                Instant::now() < deadline,
                "the container was not ready within 60 s; its log:\n{logs}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// `podman stop` (SIGTERM, then SIGKILL after 10 s); the container's exit status.
    pub fn stop(&self) -> i64 {
        checked(podman().args(["stop", "--time", "10", &self.name]));
        let out =
            checked(podman().args(["inspect", "--format", "{{.State.ExitCode}}", &self.name]));
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("podman's exit code")
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = podman()
            .args(["rm", "--force", "--time", "0", &self.name])
            .output();
    }
}
