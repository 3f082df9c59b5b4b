//! The real `geofilter` binary, run as a daemon inside a test namespace and driven by its CLI.

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Output, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use geofilter_common::Verdict;
use geofilter_daemon::control::protocol::{StatsReply, StatusReply, WhyAnswer};
use serde::de::DeserializeOwned;

use crate::netns::{Netns, unique};

/// `geofilter <args>` run directly, for verbs that need no daemon (`db check`, `db info`).
pub fn offline(args: &[&str]) -> Output {
    Command::new(binary())
        .args(args)
        .env("GEOFILTER_LOG", "warn")
        .output()
        .expect("running geofilter")
}

/// A finished command's exit status and output, for assertion messages.
pub fn output_text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The binary under test: `GEOFILTER_BIN` (set by `cargo xtask test`), else the debug build.
pub fn binary() -> PathBuf {
    let path = std::env::var_os("GEOFILTER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/geofilter"));
    assert!(
        path.is_file(),
        "geofilter binary not found at {} (run the tests with `cargo xtask test`)",
        path.display()
    );
    path
}

/// How the daemon enters its namespace.
enum Launch {
    /// Network namespace only: it pins into the host's bpffs under a pin root of its own
    /// (`GEOFILTER_PIN_ROOT`), where the test can check that nothing is left.
    Setns { netns: Netns, pin_root: PathBuf },
    /// Under a wrapper command that puts it in the namespace, as an operator would: `ip netns
    /// exec` (a fresh mount namespace whose /sys hides the host's bpffs), `unshare -m` plus
    /// `nsenter --net` (a container's private mounts that still see the host's bpffs). The
    /// daemon is given `pin_root` as GEOFILTER_PIN_ROOT and must pin where the test sees it.
    Wrapped {
        wrapper: Vec<String>,
        pin_root: PathBuf,
    },
}

pub struct Daemon {
    child: Option<Child>,
    launch: Launch,
    /// Per-daemon folder: socket, state file, log.
    dir: PathBuf,
    pub socket: PathBuf,
    /// Extra environment for every launch (e.g. `NOTIFY_SOCKET`).
    env: Vec<(String, PathBuf)>,
}

impl Daemon {
    /// Starts `geofilter run <args>` in `ns` (network namespace only) and waits until it reports
    /// ready (at most 60 s: a world database takes a while in a debug build).
    pub fn start(ns: &Netns, args: &[&str]) -> Self {
        Self::start_with_env(ns, args, &[])
    }

    /// [`start`](Self::start) with extra environment variables, kept for restarts.
    pub fn start_with_env(ns: &Netns, args: &[&str], env: &[(&str, &Path)]) -> Self {
        let pin_root = PathBuf::from("/sys/fs/bpf").join(unique("geofilter-test-"));
        Self::new(
            Launch::Setns {
                netns: Netns::borrowed(&ns.name),
                pin_root,
            },
            args,
            env,
        )
    }

    /// Starts the daemon under `ip netns exec` (see [`Launch::Wrapped`]).
    pub fn start_with_ip_netns_exec(ns: &Netns, args: &[&str]) -> Self {
        Self::start_wrapped(&["ip", "netns", "exec", &ns.name], args)
    }

    /// Starts the daemon as `<wrapper...> geofilter run <args>` (see [`Launch::Wrapped`]).
    pub fn start_wrapped(wrapper: &[&str], args: &[&str]) -> Self {
        Self::new(
            Launch::Wrapped {
                wrapper: wrapper.iter().map(|s| s.to_string()).collect(),
                pin_root: PathBuf::from("/sys/fs/bpf").join(unique("geofilter-test-")),
            },
            args,
            &[],
        )
    }

    fn new(launch: Launch, args: &[&str], env: &[(&str, &Path)]) -> Self {
        let dir = std::env::temp_dir().join(unique("geofilter-test-"));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let socket = dir.join("ctl.sock");
        let mut daemon = Self {
            child: None,
            launch,
            dir,
            socket,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_path_buf()))
                .collect(),
        };
        daemon.launch(args);
        daemon
    }

    /// Runs `geofilter run <args>` with this daemon's socket, state file and pin root.
    fn launch(&mut self, args: &[&str]) {
        assert!(self.child.is_none(), "the daemon is already running");
        let mut command = match &self.launch {
            Launch::Setns { netns, pin_root } => {
                let mut command = Command::new(binary());
                netns.enter_network_only(&mut command);
                command.env("GEOFILTER_PIN_ROOT", pin_root);
                command
            }
            Launch::Wrapped { wrapper, pin_root } => {
                let mut command = Command::new(&wrapper[0]);
                command.args(&wrapper[1..]).arg(binary());
                command.env("GEOFILTER_PIN_ROOT", pin_root);
                command
            }
        };
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("log file");
        let mut child = command
            .arg("run")
            .args(args)
            .arg("--socket")
            .arg(&self.socket)
            .arg("--state-file")
            .arg(self.dir.join("state.json"))
            .env("GEOFILTER_LOG", "info")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("spawning geofilter run");
        let stdout = child.stdout.take().expect("stdout piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.contains("geofilter: ready") {
                    let _ = tx.send(());
                }
            }
        });
        let ready = rx.recv_timeout(Duration::from_secs(60));
        let exited = child.try_wait().ok().flatten();
        self.child = Some(child);
        if ready.is_err() {
            panic!(
                "geofilter run did not become ready (exit: {exited:?}); its log:\n{}",
                self.log()
            );
        }
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("daemon.log")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The bpffs folder this daemon pins into, as the test sees it.
    pub fn pin_root(&self) -> Option<&Path> {
        match &self.launch {
            Launch::Setns { pin_root, .. } | Launch::Wrapped { pin_root, .. } => Some(pin_root),
        }
    }

    /// Runs a second `geofilter run <args> --socket <socket>` on this daemon's pin root, in the
    /// same network namespace, and waits (at most 60 s) for it to exit.
    pub fn second_run(&self, netns: &Netns, args: &[&str], socket: &Path) -> Output {
        let mut command = Command::new(binary());
        netns.enter_network_only(&mut command);
        let pin_root = self.pin_root().expect("pin root");
        let mut child = command
            .arg("run")
            .args(args)
            .arg("--socket")
            .arg(socket)
            .arg("--state-file")
            .arg(self.dir.join("second-state.json"))
            .env("GEOFILTER_PIN_ROOT", pin_root)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning a second geofilter run");
        let deadline = Instant::now() + Duration::from_secs(60);
        while child.try_wait().expect("waiting").is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let out = child.wait_with_output().expect("reaping");
                panic!(
                    "the second geofilter run kept running: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        child.wait_with_output().expect("second run output")
    }

    pub fn state_file(&self) -> PathBuf {
        self.dir.join("state.json")
    }

    /// Runs a CLI verb against this daemon: `geofilter <verb...> --socket <socket>`.
    pub fn cli(&self, args: &[&str]) -> Output {
        self.cli_command(args)
            .output()
            .expect("running the geofilter CLI")
    }

    /// The CLI command for a verb, to add environment or credentials before running it.
    pub fn cli_command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(binary());
        command.args(args).arg("--socket").arg(&self.socket);
        // The lockout check reads these; tests that want it set them explicitly.
        command
            .env_remove("SSH_CONNECTION")
            .env_remove("SSH_CLIENT");
        command
    }

    /// A CLI verb that must succeed; its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "geofilter {} failed: {}\ndaemon log:\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A CLI verb that must succeed; its JSON output, as JSON (for tests of the output's shape).
    pub fn cli_json(&self, args: &[&str]) -> serde_json::Value {
        self.cli_typed(args)
    }

    /// A CLI verb that must succeed; its `--json` output read as the type it prints (the
    /// protocol's reply types, e.g. [`StatusReply`]).
    pub fn cli_typed<T: DeserializeOwned>(&self, args: &[&str]) -> T {
        let mut all = args.to_vec();
        all.push("--json");
        let out = self.ok(&all);
        serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("geofilter {}: unexpected JSON ({e}): {out}", all.join(" ")))
    }

    /// `geofilter status --json`.
    pub fn status(&self) -> StatusReply {
        self.cli_typed(&["status"])
    }

    /// `geofilter stats --json`.
    pub fn stats(&self) -> StatsReply {
        self.cli_typed(&["stats"])
    }

    /// `geofilter why ADDR --json`.
    pub fn why(&self, addr: &str) -> WhyAnswer {
        self.cli_typed(&["why", addr])
    }

    /// The listed countries' codes, as `status` reports them.
    pub fn countries(&self) -> Vec<String> {
        policy_codes(&self.status().policy)
    }

    /// Packets counted for `country` ("RU", "unknown") under `verdict` ("pass", "drop",
    /// "would_drop").
    pub fn packets(&self, country: &str, verdict: &str) -> u64 {
        let verdict = Verdict::ALL
            .into_iter()
            .find(|v| v.name() == verdict)
            .unwrap_or_else(|| panic!("no verdict {verdict:?}"));
        self.stats().count(country, verdict).packets
    }

    /// The daemon's peak resident memory so far (`VmHWM` of /proc/PID/status), in bytes.
    pub fn peak_rss_bytes(&self) -> u64 {
        let pid = self.child.as_ref().expect("running").id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM in /proc status");
        kib * 1024
    }

    /// Sends `signal` (e.g. `libc::SIGHUP`) to the running daemon.
    pub fn signal(&self, signal: i32) {
        let pid = self.child.as_ref().expect("running").id();
        // SAFETY: plain kill(2) on our own child.
        assert_eq!(
            unsafe { libc::kill(pid as i32, signal) },
            0,
            "kill({pid}, {signal})"
        );
    }

    /// Whether the daemon process is still running.
    pub fn is_running(&mut self) -> bool {
        let child = self.child.as_mut().expect("started");
        child.try_wait().expect("waiting for geofilter").is_none()
    }

    /// Starts [`peak_rss_bytes`](Self::peak_rss_bytes) afresh from the current resident size
    /// (`echo 5 > /proc/PID/clear_refs`, Linux 4.0+), to measure one operation's peak.
    pub fn reset_peak_rss(&self) {
        let pid = self.child.as_ref().expect("running").id();
        std::fs::write(format!("/proc/{pid}/clear_refs"), "5").expect("resetting VmHWM");
    }

    /// SIGTERM, then waits (at most 10 s) for a clean exit.
    pub fn stop(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        stop_child(&mut child)
    }

    /// SIGKILL: the daemon gets no chance to clean up (its pins stay, by design).
    pub fn kill(&mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().expect("SIGKILL");
        child.wait().expect("reaping the killed daemon");
    }

    /// Starts the daemon again with the same socket, state file and pin root, as a supervisor
    /// restarting it would.
    pub fn restart(&mut self, args: &[&str]) {
        self.launch(args);
    }

    /// Waits (at most 10 s) for the daemon to exit on its own (after `unload`).
    pub fn wait_exit(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait().expect("waiting for geofilter") {
                return status;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("geofilter did not exit within 10 s; log:\n{}", self.log());
    }
}

fn stop_child(child: &mut Child) -> ExitStatus {
    // SAFETY: plain kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait().expect("waiting for geofilter") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            return child.wait().expect("waiting for killed geofilter");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop_child(&mut child);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        // A daemon that was killed leaves its pins (that is the point of pinning); removing them
        // detaches the filter and frees the maps.
        if let Some(pin_root) = self.pin_root() {
            let _ = std::fs::remove_dir_all(pin_root);
        }
    }
}

/// A policy's countries as their codes, in the order `status` lists them.
pub fn policy_codes(policy: &geofilter_daemon::policy::DesiredPolicy) -> Vec<String> {
    policy
        .countries
        .iter()
        .map(|&c| geofilter_daemon::country::code_str(c))
        .collect()
}
