//! Tier 3, systemd readiness: the real daemon, given a `NOTIFY_SOCKET` of the test's own (a Unix
//! datagram socket in a temporary folder, as systemd gives a `Type=notify` service), says
//! `READY=1` only once it filters, keeps `STATUS=` current, says `STOPPING=1` on SIGTERM; and
//! `run --check` validates a configuration without touching the kernel.

use std::{
    os::unix::net::UnixDatagram,
    path::Path,
    process::{Command, Output},
    time::{Duration, Instant},
};

use geofilter_tests::{
    daemon::{Daemon, binary},
    ensure_command,
    netns::{Pair, unique},
    require_root,
    scenario::{DE_V4, RU_V4, TempDir, ip, server_for, write_db},
    traffic::{UdpSink, send_udp},
};

/// The next notification, waiting at most `within`; `None` if none came.
fn next(socket: &UnixDatagram, within: Duration) -> Option<String> {
    socket.set_read_timeout(Some(within)).expect("read timeout");
    let mut buf = [0u8; 4096];
    let n = socket.recv(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// The first notification within `within` that contains `wanted`, with those before it.
fn wait_for(socket: &UnixDatagram, wanted: &str, within: Duration) -> (String, Vec<String>) {
    let deadline = Instant::now() + within;
    let mut before = Vec::new();
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match next(socket, left) {
            Some(m) if m.contains(wanted) => return (m, before),
            Some(m) => before.push(m),
            None => break,
        }
    }
    panic!("no notification with {wanted:?} within {within:?}; got {before:?}");
}

/// The `STATUS=` line of a notification.
fn status(message: &str) -> &str {
    message
        .lines()
        .find_map(|l| l.strip_prefix("STATUS="))
        .unwrap_or_else(|| panic!("no STATUS= in {message:?}"))
}

#[test]
fn ready_only_once_filtering_then_status_on_changes_and_stopping() {
    require_root();
    let pair = Pair::new();
    for s in [RU_V4, DE_V4] {
        pair.add_source(ip(s));
    }
    let dir = TempDir::new();
    let (v4, v6) = write_db(&dir.0);
    let notify_path = dir.0.join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).expect("binding NOTIFY_SOCKET");
    let sink = UdpSink::bind(&pair.server, &[server_for(RU_V4)]);

    std::thread::scope(|scope| {
        // Checks the filter at the moment READY=1 arrives, while the daemon may still be on its
        // way from the notification to anything else.
        let watcher = scope.spawn(|| {
            let (ready, before) = wait_for(&notify, "READY=1", Duration::from_secs(90));
            let attached = pair.server_has_xdp();
            send_udp(&pair.client, ip(RU_V4), server_for(RU_V4), 20);
            send_udp(&pair.client, ip(DE_V4), server_for(DE_V4), 20);
            (ready, before, attached)
        });
        let args = [
            "--iface",
            &pair.server_if,
            "--db",
            v4.to_str().expect("utf-8"),
            "--db",
            v6.to_str().expect("utf-8"),
            "--block",
            "RU",
        ];
        let mut daemon = Daemon::start_with_env(
            &pair.server,
            &args,
            &[("NOTIFY_SOCKET", notify_path.as_path())],
        );
        let (ready, before, attached) = watcher.join().expect("watcher thread");
        assert!(
            before.is_empty(),
            "notifications before READY=1: {before:?}"
        );
        assert!(attached, "READY=1 came before XDP was attached: {ready:?}");
        let received = sink.collect(Duration::from_millis(300));
        assert_eq!(
            received.get(&ip(RU_V4)).copied().unwrap_or(0),
            0,
            "traffic from the blocked country passed right after READY=1; log:\n{}",
            daemon.log()
        );
        assert_eq!(received.get(&ip(DE_V4)).copied(), Some(20), "DE traffic");
        let first = status(&ready);
        assert!(
            first.contains(&pair.server_if) && first.contains("deny RU;"),
            "STATUS at READY: {first:?}"
        );

        // Every policy change shows, without asking.
        daemon.ok(&["block", "DE"]);
        let (changed, _) = wait_for(&notify, "STATUS=", Duration::from_secs(5));
        assert!(
            status(&changed).contains("deny DE,RU;"),
            "STATUS after `block DE`: {changed:?}"
        );
        daemon.ok(&["policy", "unknown", "drop"]);
        let (changed, _) = wait_for(&notify, "STATUS=", Duration::from_secs(5));
        assert!(
            status(&changed).contains("unknown drop"),
            "STATUS after `policy unknown drop`: {changed:?}"
        );

        daemon.signal(libc::SIGTERM);
        let (stopping, _) = wait_for(&notify, "STOPPING=1", Duration::from_secs(10));
        assert!(daemon.wait_exit().success(), "exit after SIGTERM");
        assert!(status(&stopping).contains("stopping"), "{stopping:?}");
        assert!(!pair.server_has_xdp(), "still attached after SIGTERM");
    });
}

/// `geofilter run --check <args>` in `pair`'s server namespace with its own pin root and state
/// file: what a systemd ExecStartPre runs.
fn check(pair: &Pair, dir: &Path, args: &[&str]) -> (Output, std::path::PathBuf) {
    let pin_root = Path::new("/sys/fs/bpf").join(unique("geofilter-check-"));
    let mut command = Command::new(binary());
    pair.server.enter_network_only(&mut command);
    let out = command
        .args(["run", "--check", "--state-file"])
        .arg(dir.join("state.json"))
        .arg("--socket")
        .arg(dir.join("ctl.sock"))
        .args(args)
        .env("GEOFILTER_PIN_ROOT", &pin_root)
        .env_remove("NOTIFY_SOCKET")
        .output()
        .expect("running geofilter run --check");
    (out, pin_root)
}

/// Asserts that `run --check` changed nothing in the kernel or on disk.
fn assert_untouched(pair: &Pair, dir: &Path, pin_root: &Path) {
    assert!(!pin_root.exists(), "--check pinned {}", pin_root.display());
    assert!(!pair.server_has_xdp(), "--check attached XDP");
    assert!(
        !dir.join("state.json").exists(),
        "--check wrote the state file"
    );
    assert!(
        !dir.join("ctl.sock").exists(),
        "--check bound the control socket"
    );
}

#[test]
fn run_check_validates_without_touching_the_kernel() {
    require_root();
    let pair = Pair::new();
    let dir = TempDir::new();
    let (v4, v6) = write_db(&dir.0);
    let config = dir.0.join("geofilter.toml");
    std::fs::write(
        &config,
        format!(
            "interfaces = [\"{}\"]\ndbs = [\"{}\", \"{}\"]\n[policy]\ncountries = [\"RU\"]\n",
            pair.server_if,
            v4.display(),
            v6.display()
        ),
    )
    .expect("writing the config");
    let (out, pin_root) = check(
        &pair,
        &dir.0,
        &["--config", config.to_str().expect("utf-8")],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("configuration OK") && stdout.contains("deny RU;"),
        "good config: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_untouched(&pair, &dir.0, &pin_root);

    // A syntax error in the config: named with its file and line.
    let bad = dir.0.join("bad.toml");
    std::fs::write(
        &bad,
        "interfaces = [\"x\"]\n[policy]\ncountries = [\"RU\"\n",
    )
    .expect("write");
    let (out, pin_root) = check(&pair, &dir.0, &["--config", bad.to_str().expect("utf-8")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "bad config: {stderr}");
    assert!(
        stderr.contains(&bad.display().to_string()) && stderr.contains("line 3"),
        "the error names the file and line: {stderr}"
    );
    assert_untouched(&pair, &dir.0, &pin_root);

    // A bad database line: named with its file and line.
    let bad_db = dir.0.join("bad.csv");
    std::fs::write(&bad_db, "5.45.192.0,5.45.255.255,RU\n1.2.3.4,nonsense,DE\n").expect("write");
    let (out, pin_root) = check(
        &pair,
        &dir.0,
        &[
            "--iface",
            &pair.server_if,
            "--db",
            bad_db.to_str().expect("utf-8"),
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "bad database: {stderr}");
    assert!(
        stderr.contains(&format!("{}:2:", bad_db.display())),
        "the error names the file and line: {stderr}"
    );
    assert_untouched(&pair, &dir.0, &pin_root);
}

#[test]
fn systemd_accepts_the_unit() {
    ensure_command("systemd-analyze", "systemd");
    let dir = TempDir::new();
    let unit = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../dist/geofilter.service"),
    )
    .expect("reading dist/geofilter.service");
    assert!(
        unit.contains("\nType=notify\n"),
        "the unit is not Type=notify"
    );
    assert!(
        unit.contains("run --check"),
        "the unit does not check its config first"
    );
    // `verify` wants every Exec*= binary to exist: point them at the one under test, wherever
    // the unit installs it.
    let bin = binary().display().to_string();
    let unit = unit
        .replace("/usr/local/bin/geofilter", &bin)
        .replace("/usr/sbin/geofilter", &bin);
    let path = dir.0.join("geofilter.service");
    std::fs::write(&path, unit).expect("writing the unit");
    // `verify` also runs `man` for the unit's `Documentation=man:` link: give it the pages the
    // binary under test generates (the package installs them; this host has none).
    let man = dir.0.join("man");
    let made = Command::new(binary())
        .arg("manpages")
        .arg(man.join("man8"))
        .output()
        .expect("running geofilter manpages");
    assert!(
        made.status.success(),
        "geofilter manpages: {}",
        String::from_utf8_lossy(&made.stderr)
    );
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .env("MANPATH", &man)
        .output()
        .expect("running systemd-analyze");
    // Unknown settings and bad values are only warnings on stderr, with exit status 0.
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "systemd-analyze verify: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
