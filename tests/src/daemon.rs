//! The real `geofilter` binary, run as a daemon inside a test namespace and driven by its CLI.

use std::{
    io::{BufRead, BufReader},
    os::{fd::AsRawFd, unix::process::CommandExt},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Output, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use crate::netns::{Netns, unique};

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

pub struct Daemon {
    child: Option<Child>,
    pub socket: PathBuf,
    stderr_log: PathBuf,
    pin_root: Option<PathBuf>,
}

impl Daemon {
    /// Starts `geofilter run <args> --socket <fresh path>` in `ns` and waits until it reports
    /// ready (at most 60 s: a world database takes a while in a debug build).
    ///
    /// The daemon enters only the network namespace, so it pins into the host's bpffs under a pin
    /// root of its own (`GEOFILTER_PIN_ROOT`), where the test can check that nothing is left.
    pub fn start(ns: &Netns, args: &[&str]) -> Self {
        let netns = std::fs::File::open(format!("/run/netns/{}", ns.name)).expect("netns file");
        let mut command = Command::new(binary());
        // SAFETY: setns is async-signal-safe; the fd stays open until after the fork.
        unsafe {
            command.pre_exec(move || {
                if libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let pin_root = PathBuf::from("/sys/fs/bpf").join(unique("geofilter-test-"));
        command.env("GEOFILTER_PIN_ROOT", &pin_root);
        Self::spawn(command, args, Some(pin_root))
    }

    /// Starts the daemon the way an operator would inside a namespace: `ip netns exec`, which
    /// gives it a fresh mount namespace without bpffs (the daemon must mount one itself).
    pub fn start_with_ip_netns_exec(ns: &Netns, args: &[&str]) -> Self {
        Self::spawn(
            ns.command(binary().to_str().expect("UTF-8 path")),
            args,
            None,
        )
    }

    /// The bpffs folder this daemon pins into, when the test can see it.
    pub fn pin_root(&self) -> Option<&Path> {
        self.pin_root.as_deref()
    }

    fn spawn(mut command: Command, args: &[&str], pin_root: Option<PathBuf>) -> Self {
        let dir = std::env::temp_dir().join(unique("geofilter-test-"));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let socket = dir.join("ctl.sock");
        let stderr_log = dir.join("daemon.log");
        let mut child = command
            .arg("run")
            .args(args)
            .arg("--socket")
            .arg(&socket)
            .arg("--state-file")
            .arg(dir.join("state.json"))
            .env("GEOFILTER_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr_log).expect("log file"))
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
        let mut daemon = Self {
            child: Some(child),
            socket,
            stderr_log,
            pin_root,
        };
        if rx.recv_timeout(Duration::from_secs(60)).is_err() {
            let status = daemon
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            panic!(
                "geofilter run did not become ready (exit: {status:?}); its log:\n{}",
                daemon.log()
            );
        }
        daemon
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr_log).unwrap_or_default()
    }

    /// Runs a CLI verb against this daemon: `geofilter <verb...> --socket <socket>`.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(binary())
            .args(args)
            .arg("--socket")
            .arg(&self.socket)
            .output()
            .expect("running the geofilter CLI")
    }

    /// A CLI verb that must succeed; its JSON output.
    pub fn cli_json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = args.to_vec();
        all.push("--json");
        let out = self.cli(&all);
        assert!(
            out.status.success(),
            "geofilter {} failed: {}\ndaemon log:\n{}",
            all.join(" "),
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        serde_json::from_slice(&out.stdout).expect("CLI printed JSON")
    }

    /// Packets counted for `country` ("RU", "unknown") under `verdict` ("pass", "drop", ...).
    pub fn packets(&self, country: &str, verdict: &str) -> u64 {
        let stats = self.cli_json(&["stats"]);
        stats["countries"]
            .as_array()
            .expect("countries array")
            .iter()
            .find(|c| c["country"] == country)
            .map_or(0, |c| c[verdict]["packets"].as_u64().expect("packet count"))
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// SIGTERM, then waits (at most 10 s) for a clean exit.
    pub fn stop(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        stop_child(&mut child)
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
        if let Some(dir) = self.socket.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
        // A daemon that was killed leaves its pins (that is the point of pinning); removing them
        // detaches the filter and frees the maps.
        if let Some(root) = &self.pin_root {
            let _ = std::fs::remove_dir_all(root);
        }
    }
}
