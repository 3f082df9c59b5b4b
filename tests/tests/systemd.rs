//! The Debian package under a real systemd: a fresh bookworm root with the package installed,
//! booted with `systemd-nspawn --boot` into the server namespace of a veth pair, and driven with
//! `systemctl` as an operator would.
//!
//! What only a real service manager shows: `systemctl start` returns once the daemon sent
//! READY=1, and by then the filter drops (`Type=notify`); the unit's ExecStartPre mounts the
//! bpffs where the pins outlive the service; `dpkg -i` of a newer build restarts the running
//! service without one packet passing unfiltered; `systemctl stop` leaves the filter in place
//! (--keep) and `geofilter unload` removes it.
//!
//! nspawn's default seccomp filter refuses bpf(2) with EPERM (a container is not meant to load
//! programs); `--system-call-filter=bpf` allows it, as a host's systemd does.

use std::{
    fs,
    net::IpAddr,
    process::{Child, Command, Output, Stdio},
    thread,
    time::{Duration, Instant},
};

use geofilter_tests::{
    debroot::{DebRoot, package_input},
    ensure_command,
    netns::{Netns, Pair, SERVER_V4},
    require_root,
    scenario::{DE_V4, RU_V4, ip},
    traffic::{StampedSender, UdpSink, send_udp},
};

/// The root, booted. Dropping it powers the container off (then kills it if it hangs) and
/// removes the root.
struct Booted {
    nspawn: Child,
    /// The container's PID 1 (systemd), as the host sees it.
    init: u32,
    root: DebRoot,
}

/// The children of `pid`, from /proc (the container's processes are the host's too).
fn children(pid: u32) -> Vec<u32> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&p| {
            // Field 4 of /proc/PID/stat, after the parenthesised command name.
            fs::read_to_string(format!("/proc/{p}/stat")).is_ok_and(|stat| {
                stat.rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok())
                    == Some(pid)
            })
        })
        .collect()
}

fn comm(pid: u32) -> String {
    fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim()
        .to_owned()
}

impl Booted {
    fn boot(root: DebRoot, server: &Netns) -> Self {
        let log = fs::File::create(root.dir().with_extension("console"))
            .expect("creating the console log");
        let nspawn = Command::new("systemd-nspawn")
            .args(["--boot", "--register=no", "--keep-unit", "--quiet"])
            .arg(format!(
                "--network-namespace-path=/run/netns/{}",
                server.name
            ))
            .args(["--capability=all", "--system-call-filter=bpf"])
            .arg("--directory")
            .arg(root.dir())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("console log"))
            .stderr(log)
            .spawn()
            .expect("starting systemd-nspawn");
        let mut booted = Self {
            nspawn,
            init: 0,
            root,
        };
        // The container's systemd is nspawn's child, or its grandchild when nspawn forks a helper
        // first (it does with a terminal on its standard streams).
        let deadline = Instant::now() + Duration::from_secs(60);
        while booted.init == 0 {
            assert!(
                Instant::now() < deadline,
                "the container's systemd did not appear: {}",
                booted.console()
            );
            if let Ok(Some(status)) = booted.nspawn.try_wait() {
                panic!("systemd-nspawn exited ({status}): {}", booted.console());
            }
            let nspawn = booted.nspawn.id();
            booted.init = children(nspawn)
                .into_iter()
                .flat_map(|c| std::iter::once(c).chain(children(c)))
                .find(|&p| comm(p) == "systemd")
                .unwrap_or(0);
            thread::sleep(Duration::from_millis(100));
        }
        // Until the boot is done, systemctl's answers describe a half-started system.
        loop {
            let out = booted.try_exec(&["systemctl", "is-system-running"]);
            let state = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout).trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
            if state == "running" || state == "degraded" {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the container (PID 1 {}) did not finish booting (state {state:?}): {}",
                booted.init,
                booted.console()
            );
            thread::sleep(Duration::from_millis(200));
        }
        booted
    }

    fn console(&self) -> String {
        fs::read_to_string(self.root.dir().with_extension("console")).unwrap_or_default()
    }

    /// Runs `args` in the container's namespaces (as `machinectl shell` would), whatever it
    /// returns.
    fn try_exec(&self, args: &[&str]) -> Output {
        Command::new("nsenter")
            .args(["-t", &self.init.to_string(), "-m", "-u", "-i", "-n", "-p"])
            .arg("--")
            .args(args)
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .output()
            .expect("running nsenter")
    }

    fn exec(&self, args: &[&str]) -> Output {
        let out = self.try_exec(args);
        assert!(
            out.status.success(),
            "{args:?} in the container failed ({}):\n{}{}\njournal:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.journal()
        );
        out
    }

    fn journal(&self) -> String {
        let out = self.try_exec(&["journalctl", "-u", "geofilter", "--no-pager", "-b"]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn show(&self, property: &str) -> String {
        let out = self.exec(&["systemctl", "show", "-p", property, "--value", "geofilter"]);
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}

impl Drop for Booted {
    fn drop(&mut self) {
        // SIGTERM asks nspawn to power the container off; give systemd time to stop it.
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.nspawn.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline && !matches!(self.nspawn.try_wait(), Ok(Some(_))) {
            thread::sleep(Duration::from_millis(100));
        }
        let _ = self.nspawn.kill();
        let _ = self.nspawn.wait();
        let _ = fs::remove_file(self.root.dir().with_extension("console"));
    }
}

/// Datagrams that arrived from each of `sources`, `count` sent from each, in turn.
fn deliveries(pair: &Pair, sources: &[IpAddr], count: u64) -> Vec<u64> {
    let server = ip(SERVER_V4);
    let sink = UdpSink::bind(&pair.server, &[server]);
    for &source in sources {
        send_udp(&pair.client, source, server, count);
    }
    let got = sink.collect(Duration::from_millis(300));
    sources
        .iter()
        .map(|s| got.get(s).copied().unwrap_or(0))
        .collect()
}

#[test]
fn systemctl_start_is_ready_when_filtering_and_an_upgrade_leaves_no_gap() {
    require_root();
    ensure_command("systemd-nspawn", "systemd-container");
    ensure_command("nsenter", "util-linux");
    let (old, new) = (
        package_input("GEOFILTER_DEB_OLD"),
        package_input("GEOFILTER_DEB"),
    );
    let pair = Pair::new();
    let (ru, de) = (ip(RU_V4), ip(DE_V4));
    pair.add_source(ru);
    pair.add_source(de);

    // The older build, configured as the README says: the example config, with the interface.
    let root = DebRoot::new();
    root.install(&old);
    let conf = root.path("/etc/geofilter/geofilter.toml");
    let example = fs::read_to_string(&conf).expect("reading the example configuration");
    assert!(
        example.contains("interfaces = [\"eth0\"]") && example.contains("countries = [\"RU\"]"),
        "the example configuration changed; this test edits its interface line:\n{example}"
    );
    fs::write(
        &conf,
        example.replace(
            "interfaces = [\"eth0\"]",
            &format!("interfaces = [\"{}\"]", pair.server_if),
        ),
    )
    .expect("writing the configuration");
    let booted = Booted::boot(root, &pair.server);
    // The boot mounted no bpffs (nspawn's /sys is read-only): the unit's ExecStartPre must.
    let premounted = booted.try_exec(&["mountpoint", "-q", "/sys/fs/bpf"]);
    assert!(
        !premounted.status.success(),
        "the container has a bpffs before the unit ran: this test would not see the unit mount it"
    );

    // `systemctl start` waits for READY=1: the moment it returns, the filter drops.
    booted.exec(&["systemctl", "start", "geofilter"]);
    assert!(
        pair.server_has_xdp(),
        "started, but no XDP program attached"
    );
    assert_eq!(
        deliveries(&pair, &[ru, de], 200),
        vec![0, 200],
        "right after `systemctl start`: datagrams delivered from RU, DE\njournal:\n{}",
        booted.journal()
    );
    let status = booted.show("StatusText");
    assert!(
        status.contains("deny RU"),
        "systemctl status shows no policy summary: {status:?}"
    );
    // The bpffs is PID 1's, not the unit's private one: pins outlive the service.
    booted.exec(&["mountpoint", "-q", "/sys/fs/bpf"]);
    let journal = booted.journal();
    assert!(
        !journal.contains("WILL NOT OUTLIVE"),
        "the daemon pinned into a bpffs that dies with the service:\n{journal}"
    );

    // An upgrade while traffic flows: postinst try-restarts the service; the old daemon leaves
    // its pinned program attached and the new one adopts it.
    let before = booted.show("MainPID");
    let server = ip(SERVER_V4);
    let sink = UdpSink::bind(&pair.server, &[server]);
    let blocked = StampedSender::start(&pair.client, ru, server, Duration::from_millis(1));
    let allowed = StampedSender::start(&pair.client, de, server, Duration::from_millis(1));
    thread::sleep(Duration::from_millis(200));
    let inside = booted.root.copy_in(&new);
    booted.exec(&["dpkg", "-i", &inside]);
    thread::sleep(Duration::from_millis(300));
    let (blocked_sent, allowed_sent) = (blocked.stop(), allowed.stop());
    let arrived = sink.finish(Duration::from_millis(300));
    let from = |s: IpAddr| arrived.iter().filter(|(a, _)| *a == s).count();
    let after = booted.show("MainPID");
    eprintln!(
        "upgrade under traffic: daemon PID {before} -> {after}; RU sent {} delivered {}, DE sent \
         {} delivered {}",
        blocked_sent.len(),
        from(ru),
        allowed_sent.len(),
        from(de)
    );
    assert_ne!(before, after, "the upgrade did not restart the daemon");
    assert_eq!(
        booted.show("ActiveState"),
        "active",
        "after the upgrade:\n{}",
        booted.journal()
    );
    assert_eq!(
        (from(ru), from(de)),
        (0, allowed_sent.len()),
        "during the upgrade ({} RU and {} DE datagrams sent): delivered from RU, DE",
        blocked_sent.len(),
        allowed_sent.len()
    );
    assert!(
        blocked_sent.len() > 100,
        "too little traffic during the upgrade to show a gap"
    );

    // Stopping keeps the filter (--keep); `geofilter unload` removes it.
    booted.exec(&["systemctl", "stop", "geofilter"]);
    assert_eq!(
        deliveries(&pair, &[ru, de], 100),
        vec![0, 100],
        "after `systemctl stop`: delivered from RU, DE"
    );
    booted.exec(&["geofilter", "unload"]);
    assert!(!pair.server_has_xdp(), "unload left a program attached");
    assert_eq!(
        deliveries(&pair, &[ru, de], 100),
        vec![100, 100],
        "after unload: delivered from RU, DE"
    );
}
