//! Tier 3, usability: how the real CLI meets an operator — global options in either position,
//! clear refusals of bad input — against real daemons on a veth pair between fresh namespaces.

use std::{
    io::{BufRead as _, Read as _},
    os::unix::process::CommandExt as _,
    path::Path,
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use geofilter_daemon::{
    control::protocol::{Exceptions, Outcome, UnloadOutput, Unloaded},
    iface,
    state::SavedState,
};
use geofilter_tests::{
    daemon::binary,
    netns::{Netns, Pair, unique},
    require_root,
    scenario::{DE_V4, RU_V4, Scene, TempDir, write_db},
};

/// `geofilter <args>` exactly as given (no `--socket` appended), outside any SSH session.
fn geofilter(args: &[&str]) -> Output {
    Command::new(binary())
        .args(args)
        .env_remove("SSH_CONNECTION")
        .env_remove("SSH_CLIENT")
        .output()
        .expect("running the geofilter CLI")
}

/// Its stdout; panics with its stderr when it fails.
fn ok(args: &[&str]) -> String {
    let out = geofilter(args);
    assert!(
        out.status.success(),
        "geofilter {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Where the global options go relative to the verb.
#[derive(Clone, Copy, Debug)]
enum Position {
    /// `geofilter --socket S --json VERB ...`
    Before,
    /// `geofilter VERB ... --socket S --json`
    After,
    /// `geofilter --socket S VERB ... --json`
    Split,
}

fn with_globals(position: Position, socket: &Path, json: bool, verb: &[&str]) -> Vec<String> {
    let socket = socket.to_str().expect("utf-8 socket path");
    let s = |v: &[&str]| v.iter().map(|a| a.to_string()).collect::<Vec<_>>();
    let (mut front, mut back) = match position {
        Position::Before => (s(&["--socket", socket]), vec![]),
        Position::After => (vec![], s(&["--socket", socket])),
        Position::Split => (s(&["--socket", socket]), vec![]),
    };
    if json {
        match position {
            Position::Before => front.push("--json".into()),
            Position::After | Position::Split => back.push("--json".into()),
        }
    }
    [front, s(verb), back].concat()
}

/// Every client verb, in an order that ends where it began (each "do" is followed by its
/// "undo"), so the whole table can run once per position against one daemon.
const VERBS: &[&[&str]] = &[
    &["status"],
    &["stats"],
    &["block", "DE"],
    &["unblock", "DE"],
    &["policy", "allow-only"],
    &["policy", "deny"],
    &["policy", "unknown", "drop"],
    &["policy", "unknown", "pass"],
    &["monitor", "on"],
    &["monitor", "off"],
    &["except", "add", "192.0.2.1"],
    &["except", "list"],
    &["except", "del", "192.0.2.1"],
    &["ports", "set", "--exempt", "tcp:80"],
    &["ports", "clear"],
    &["block", "DE", "--confirm", "600"],
    &["confirm"],
    &["unblock", "DE"],
    &["why", RU_V4],
    &["db", "reload"],
];

#[test]
fn socket_and_json_work_before_and_after_every_verb() {
    let scene = Scene::new(&[RU_V4, DE_V4], &["--block", "RU"]);
    let socket = &scene.daemon.socket;
    for position in [Position::Before, Position::After, Position::Split] {
        for json in [true, false] {
            for verb in VERBS {
                let args = with_globals(position, socket, json, verb);
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                let out = ok(&args);
                for line in out.lines() {
                    let parsed = serde_json::from_str::<serde_json::Value>(line);
                    // Without --json the same verb prints text (and still finds the socket).
                    assert_eq!(
                        parsed.is_ok(),
                        json,
                        "geofilter {}: JSON expected: {json}, got {line:?}",
                        args.join(" ")
                    );
                }
            }
        }
        // The options reached the daemon that was named: a change made with them shows there.
        let args = with_globals(position, socket, false, &["block", "DE"]);
        ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(scene.daemon.countries(), ["DE", "RU"], "{position:?}");
        scene.daemon.ok(&["unblock", "DE"]);
    }
}

#[test]
fn unload_takes_the_socket_before_or_after_the_verb() {
    for position in [Position::Before, Position::After] {
        let mut scene = Scene::new(&[], &[]);
        let args = with_globals(position, &scene.daemon.socket, false, &["unload"]);
        ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(scene.daemon.wait_exit().success(), "{position:?}");
        let root = scene.daemon.pin_root().expect("pin root").to_owned();
        assert!(!root.exists(), "{position:?}: {} left", root.display());
    }
}

/// Asks the kernel itself whether it accepts `name`: renames a down dummy interface to it with
/// SIOCSIFNAME (dev_change_name -> dev_get_valid_name -> dev_valid_name) and back.
fn kernel_accepts(ns: &Netns, name: &str) -> bool {
    assert!(name.len() < 16, "SIOCSIFNAME cannot carry {name:?}");
    ns.run_in(|| {
        let ifname = |s: &[u8]| {
            let mut out = [0 as libc::c_char; 16];
            for (o, &b) in out.iter_mut().zip(s) {
                *o = b as libc::c_char;
            }
            out
        };
        let rename = |from: &[u8], to: &[u8]| {
            // SAFETY: a zeroed ifreq is valid; the socket is closed below.
            unsafe {
                let mut req: libc::ifreq = std::mem::zeroed();
                req.ifr_name = ifname(from);
                req.ifr_ifru.ifru_newname = ifname(to);
                let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0);
                assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
                let rc = libc::ioctl(fd, libc::SIOCSIFNAME, &mut req);
                let err = std::io::Error::last_os_error();
                libc::close(fd);
                (rc == 0).then_some(()).ok_or(err)
            }
        };
        match rename(b"gfdummy", name.as_bytes()) {
            Ok(()) => {
                rename(name.as_bytes(), b"gfdummy").expect("renaming back");
                true
            }
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(libc::EINVAL), "{name:?}: {e}");
                false
            }
        }
    })
}

#[test]
fn interface_names_are_checked_as_the_kernel_checks_them() {
    require_root();
    let ns = Netns::new("gf-ifname-");
    ns.ip(&[
        "link", "add", "gfdummy", "type", "veth", "peer", "name", "gfpeer",
    ]);
    for name in [
        "eth0",
        "0123456789abcde",
        "...",
        "veth-a.100",
        "é",
        "x_y@z",
        ".",
        "..",
        "../maps/X",
        "a/b",
        "eth0:1",
        "a b",
        "a\tb",
        "a\nb",
        "a\u{b}b",
        "a\u{c}b",
        "a\rb",
        // UTF-8 `à` is c3 a0: the kernel's isspace() (lib/ctype.c) counts Latin-1 0xA0 as space.
        "à",
        "a\u{a0}",
    ] {
        let ours = iface::check_name(name);
        assert_eq!(
            ours.is_ok(),
            kernel_accepts(&ns, name),
            "{name:?}: we say {ours:?}"
        );
    }
    // Longer than IFNAMSIZ - 1: SIOCSIFNAME truncates, so ask through netlink (`ip link add`).
    let long = "0123456789abcdef";
    assert!(iface::check_name(long).is_err());
    let out = Command::new("ip")
        .args(["-n", &ns.name, "link", "add", long, "type", "veth"])
        .output()
        .expect("ip");
    assert!(!out.status.success(), "the kernel took a 16-byte name");
}

/// A `geofilter run` of this file's own (the harness's `Daemon` puts its options after the verb
/// and must become ready): in `ns`, with its own socket, state file and pin root, all removed
/// (and the process killed) on drop.
struct Run {
    child: std::process::Child,
    dir: TempDir,
    pin_root: std::path::PathBuf,
}

impl Run {
    /// `geofilter [--socket S] run <args> [--socket S] --state-file F`, the socket before the
    /// verb when `socket_first`.
    fn spawn(ns: &Netns, args: &[&str], socket_first: bool, stdout: Stdio) -> Self {
        let dir = TempDir::new();
        let pin_root = Path::new("/sys/fs/bpf").join(unique("geofilter-test-"));
        let socket = dir.0.join("ctl.sock");
        let mut command = Command::new(binary());
        ns.enter_network_only(&mut command);
        if socket_first {
            command.arg("--socket").arg(&socket).arg("run").args(args);
        } else {
            command.arg("run").args(args).arg("--socket").arg(&socket);
        }
        let child = command
            .arg("--state-file")
            .arg(dir.0.join("state.json"))
            .env("GEOFILTER_PIN_ROOT", &pin_root)
            .stdout(stdout)
            .stderr(Stdio::piped())
            .spawn()
            .expect("geofilter run");
        Self {
            child,
            dir,
            pin_root,
        }
    }

    fn socket(&self) -> String {
        self.dir.0.join("ctl.sock").display().to_string()
    }

    /// Waits at most `limit` for the process to exit; `None` if it still runs.
    fn wait(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("waiting for geofilter run") {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.pin_root);
    }
}

/// `geofilter run <args>` in `ns`: it must fail, and pin nothing; its stderr.
fn run_refused(ns: &Netns, args: &[&str]) -> String {
    let mut run = Run::spawn(ns, args, false, Stdio::null());
    // A daemon that starts anyway would serve forever: bound the wait.
    let status = run.wait(Duration::from_secs(30));
    let mut err = String::new();
    let _ = run
        .child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut err);
    assert!(
        status.is_some_and(|s| !s.success()),
        "geofilter run {} started ({status:?}): {err}",
        args.join(" ")
    );
    assert!(
        !run.pin_root.exists() && !run.dir.0.join("state.json").exists(),
        "a refused start left state behind: {err}"
    );
    err
}

#[test]
fn run_refuses_invalid_and_repeated_interfaces_before_touching_anything() {
    require_root();
    let pair = Pair::new();
    let err = run_refused(&pair.server, &["--iface", "../maps/X"]);
    assert!(
        err.contains(r#"interface name "../maps/X" is not valid: contains '/'"#),
        "{err}"
    );
    let iface = pair.server_if.as_str();
    let err = run_refused(&pair.server, &["--iface", iface, "--iface", iface]);
    assert!(
        err.contains(&format!("interface {iface} is given twice")),
        "{err}"
    );
}

#[test]
fn block_suggests_the_assigned_code_for_reserved_codes_and_names() {
    let scene = Scene::new(&[], &["--block", "RU"]);
    for (input, hint) in [
        ("UK", "did you mean GB (United Kingdom)"),
        ("el", "did you mean GR (Greece)"),
        ("Russia", "did you mean RU (Russia)"),
        ("turkey", "did you mean TR ("),
    ] {
        let out = scene.daemon.cli(&["block", input]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "block {input} was accepted");
        assert!(err.contains(hint), "block {input}: {err}");
    }
    assert_eq!(
        scene.daemon.countries(),
        ["RU"],
        "a refused block changed the policy"
    );
}

/// `geofilter <args> --socket <daemon's>` as uid/gid 65534, with the daemon's pin root as the
/// default one (as an operator's shell would see it), or with the real default one.
fn as_nobody(scene: &Scene, args: &[&str], daemons_pin_root: bool) -> Output {
    let mut command = scene.daemon.cli_command(args);
    if daemons_pin_root {
        let root = scene.daemon.pin_root().expect("pin root");
        command.env("GEOFILTER_PIN_ROOT", root);
    } else {
        command.env_remove("GEOFILTER_PIN_ROOT");
    }
    // SAFETY: setgid/setuid between fork and exec only affect the child.
    unsafe {
        command.pre_exec(|| {
            if libc::setgid(65534) != 0 || libc::setuid(65534) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    command.output().expect("running the CLI as nobody")
}

#[test]
fn a_caller_without_permission_is_told_so_and_unload_never_claims_nothing_ran() {
    let mut scene = Scene::new(&[], &["--block", "RU"]);
    let socket = scene.daemon.socket.display().to_string();
    let pin_root = scene.daemon.pin_root().expect("pin root").to_owned();
    for (verb, daemons_pin_root) in [
        (&["status"][..], true),
        (&["unload"], true),
        (&["unload"], false),
    ] {
        let out = as_nobody(&scene, verb, daemons_pin_root);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{verb:?} as nobody succeeded: {err}");
        assert!(
            err.contains(&format!("permission denied on {socket}: run as root")),
            "{verb:?}: {err}"
        );
        assert!(!err.contains("is `geofilter run` running"), "{err}");
    }
    // The refused unload changed nothing.
    assert_eq!(scene.daemon.countries(), ["RU"]);
    assert!(pin_root.exists());

    // A killed daemon leaves its pins and a socket nobody listens on: unload removes the pins.
    scene.daemon.kill();
    let unload = |json: bool| {
        let mut command = scene.daemon.cli_command(&["unload"]);
        if json {
            command.arg("--json");
        }
        let out = command
            .env("GEOFILTER_PIN_ROOT", &pin_root)
            .output()
            .expect("unload");
        assert!(
            out.status.success(),
            "unload: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let out = unload(false);
    assert!(out.contains("removed pinned state"), "{out}");
    assert!(!pin_root.exists(), "unload left {}", pin_root.display());
    let out: UnloadOutput = serde_json::from_str(&unload(true)).expect("unload --json");
    assert_eq!(out.unloaded, Unloaded::Nothing, "{out:?}");
}

/// `n` distinct host exceptions in 10.0.0.0/8 (outside the test database).
fn host_cidrs(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("10.{}.{}.{}", i >> 16 & 255, i >> 8 & 255, i & 255))
        .collect()
}

fn exception_count(scene: &Scene) -> usize {
    let list: Exceptions = scene.daemon.cli_typed(&["except", "list"]);
    list.len()
}

#[test]
fn ten_thousand_exceptions_in_one_except_add_are_sent_in_parts() {
    let scene = Scene::new(&[], &["--block", "RU"]);
    let cidrs = host_cidrs(10_000);
    let mut add: Vec<&str> = vec!["except", "add", "--drop"];
    add.extend(cidrs.iter().map(String::as_str));

    // A bad CIDR at the very end: refused before any part is sent.
    let mut bad = add.clone();
    bad.push("10.0.0.1/8");
    let out = scene.daemon.cli(&bad);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("10.0.0.1/8"), "{err}");
    assert_eq!(
        exception_count(&scene),
        0,
        "a refused list was applied in part"
    );
    // --confirm covers one request: refused whole, with the reason.
    let mut confirm = add.clone();
    confirm.extend(["--confirm", "60"]);
    let out = scene.daemon.cli(&confirm);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--confirm covers one request") && err.contains("nothing was changed"),
        "{err}"
    );
    assert_eq!(exception_count(&scene), 0);

    let out = scene.daemon.cli(&add);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "except add of 10,000: {err}");
    assert!(err.contains("parts, each applied atomically"), "{err}");
    assert_eq!(exception_count(&scene), 10_000);
    let why = scene.daemon.why("10.0.39.15");
    assert_eq!(why.verdict, Outcome::Drop, "{why:?}");

    let mut del: Vec<&str> = vec!["except", "del"];
    del.extend(cidrs.iter().map(String::as_str));
    scene.daemon.ok(&del);
    assert_eq!(exception_count(&scene), 0);

    // A part refused after others were applied (here by the lockout check: the last CIDR is
    // the caller's own address) says which parts stay.
    let last = cidrs.last().expect("cidrs");
    let out = scene
        .daemon
        .cli_command(&add)
        .env("SSH_CONNECTION", format!("{last} 50000 10.200.0.2 22"))
        .output()
        .expect("except add");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "the caller's own address was dropped"
    );
    assert!(
        err.contains("were applied and stay, the rest was not sent") && err.contains("refused"),
        "{err}"
    );
    let applied = exception_count(&scene);
    assert!(applied > 0 && applied < 10_000, "{applied} applied");
    let why = scene.daemon.why(last);
    assert_eq!(why.verdict, Outcome::Pass, "{why:?}");
}

#[test]
fn past_the_exception_limit_the_error_says_so_and_nothing_changes() {
    let scene = Scene::new(&[], &["--block", "RU"]);
    let capacity = geofilter_common::maps::EXCEPT_CAPACITY as usize;
    let cidrs = host_cidrs(capacity + 1);
    let mut add: Vec<&str> = vec!["except", "add"];
    add.extend(cidrs[..capacity].iter().map(String::as_str));
    scene.daemon.ok(&add);
    assert_eq!(exception_count(&scene), capacity);

    let out = scene
        .daemon
        .cli(&["except", "add", &cidrs[capacity], "192.0.2.0/24"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "exception {} was accepted",
        capacity + 1
    );
    assert!(
        err.contains(&format!("at most {capacity} IPv4 exceptions"))
            && err.contains("nothing changed"),
        "{err}"
    );
    assert!(!err.contains("restoring"), "{err}");
    assert_eq!(exception_count(&scene), capacity);
    let why = scene.daemon.why(&cidrs[capacity]);
    assert!(
        !why.reason.contains("exception"),
        "the refused exception is in force: {why:?}"
    );
    // The limit is per family: IPv6 still has room.
    scene.daemon.ok(&["except", "add", "2001:db8::/32"]);
    assert_eq!(exception_count(&scene), capacity + 1);
}

#[test]
fn the_state_file_forgets_interfaces_no_longer_configured() {
    let mut scene = Scene::new(&[], &[]);
    assert!(scene.daemon.stop().success());
    // An earlier daemon sharing this state file filtered another interface.
    let path = scene.daemon.state_file();
    let mut state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("state file")).expect("JSON");
    state["attached"]["gone0"] = "native".into();
    std::fs::write(&path, state.to_string()).expect("writing the state file");

    let args = scene.run_args();
    scene
        .daemon
        .restart(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let state: SavedState =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("state file")).expect("JSON");
    let attached = &state.attached;
    assert!(!attached.contains_key("gone0"), "{state:?}");
    assert!(attached.contains_key(&scene.pair.server_if), "{state:?}");
}

/// A change that fails half-way is undone by removing what it inserted, including exceptions
/// it never got to insert: removing an absent exception must succeed, or every undo reports
/// "restoring the previous state also failed" although the state is restored.
#[test]
fn removing_an_exception_that_is_not_there_succeeds() {
    require_root();
    let mut dp = geofilter_daemon::datapath::Datapath::load().expect("loading geofilter");
    dp.install_tables::<geofilter_daemon::geoip::Prefix>(&[], &[])
        .expect("empty tables");
    for cidr in ["192.0.2.0/24", "2001:db8::/32"] {
        let cidr: geofilter_daemon::rules::Cidr = cidr.parse().unwrap();
        dp.remove_exception(&cidr)
            .unwrap_or_else(|e| panic!("removing absent {cidr}: {e}"));
    }
}

#[test]
fn run_serves_the_socket_given_before_the_verb() {
    require_root();
    let pair = Pair::new();
    let db = TempDir::new();
    let (v4, _) = write_db(&db.0);
    let args = ["--iface", &pair.server_if, "--db", v4.to_str().unwrap()];
    let mut run = Run::spawn(&pair.server, &args, true, Stdio::piped());
    let stdout = run.child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if line.contains("geofilter: ready") {
                let _ = tx.send(());
            }
        }
    });
    // An exit closes stdout, which ends the wait early.
    assert!(
        rx.recv_timeout(Duration::from_secs(60)).is_ok(),
        "geofilter --socket S run did not become ready"
    );
    let socket = run.socket();
    ok(&["--socket", &socket, "--json", "status"]);
    ok(&["--socket", &socket, "unload"]);
    assert!(
        run.wait(Duration::from_secs(10))
            .is_some_and(|s| s.success()),
        "unload did not stop it"
    );
}
