//! geofilter and Debian's xdp-filter (libxdp) filtering one interface together through libxdp's
//! dispatcher, in both load orders: each drops what it must, everything else is delivered, a
//! geofilter restart (`--keep` adoption) leaves xdp-filter's slot alone and loses nothing, and
//! either one unloading leaves the other filtering.
//!
//! Traffic: UDP to port 9000 (nobody filters it) and 9999 (`xdp-filter port 9999` drops it),
//! from RU sources (geofilter's `--block RU` drops them) and allowed sources, one source address
//! per (country, port), so the sink's per-source counts tell which filter did what.

use std::{
    net::{IpAddr, SocketAddr},
    process::{Command, Output},
    time::Duration,
};

use geofilter_tests::{
    daemon::Daemon,
    ensure_command,
    netns::{Netns, Pair, SERVER_V4},
    require_root,
    scenario::{DE_V4, RU_V4, RU_V4_UNALIGNED, Scene, ip},
    traffic::{StampedSender, UDP_PORT, UdpSink, send_udp_to},
};

/// The port xdp-filter is told to drop.
const XDPFILTER_PORT: u16 = 9999;
/// A second German source (46.114.0.0/16 is DE in the scene's database), for port 9999.
const DE2_V4: &str = "46.114.9.9";
const SOURCES: [&str; 4] = [RU_V4, RU_V4_UNALIGNED, DE_V4, DE2_V4];
const N: u64 = 200;

/// Runs an xdp-tools command in the server's network namespace, keeping the host's mounts so
/// it sees the same bpffs (and libxdp folder) as geofilter.
fn xdp_tool(ns: &Netns, program: &str, args: &[&str]) -> Output {
    let mut command = Command::new(program);
    ns.enter_network_only(&mut command);
    command
        .args(args)
        .output()
        .expect("running an xdp-tools command")
}

fn xdp_tool_ok(ns: &Netns, program: &str, args: &[&str]) -> String {
    let out = xdp_tool(ns, program, args);
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Removes xdp-filter (and any dispatcher left) from the server interface on drop, also when
/// the test fails.
struct XdpFilterGuard {
    ns: Netns,
    iface: String,
}

impl Drop for XdpFilterGuard {
    fn drop(&mut self) {
        let _ = xdp_tool(&self.ns, "xdp-filter", &["unload", &self.iface]);
    }
}

/// Both tests change the one interface-independent libxdp folder and count packets on two
/// cores: one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Installs xdp-tools if missing and mounts a bpffs on /sys/fs/bpf if there is none: libxdp
/// (unlike geofilter) never mounts one and refuses to work without ("Could not find BPF working
/// dir"). The test runner's private mount namespace takes the mount away afterwards.
fn setup_tools() -> std::sync::MutexGuard<'static, ()> {
    require_root();
    let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    ensure_command("xdp-filter", "xdp-tools");
    ensure_command("xdp-loader", "xdp-tools");
    let fs_type = Command::new("stat")
        .args(["-f", "-c", "%T", "/sys/fs/bpf"])
        .output()
        .expect("stat /sys/fs/bpf");
    if String::from_utf8_lossy(&fs_type.stdout).trim() != "bpf_fs" {
        let mount = Command::new("mount")
            .args(["-t", "bpf", "bpf", "/sys/fs/bpf"])
            .output()
            .expect("mount");
        assert!(
            mount.status.success(),
            "mounting a bpffs for libxdp: {mount:?}"
        );
    }
    serial
}

fn load_xdp_filter(pair: &Pair) -> XdpFilterGuard {
    let iface = pair.server_if.clone();
    let guard = XdpFilterGuard {
        ns: Netns::borrowed(&pair.server.name),
        iface: iface.clone(),
    };
    xdp_tool_ok(&pair.server, "xdp-filter", &["load", &iface]);
    xdp_tool_ok(
        &pair.server,
        "xdp-filter",
        &["port", &XDPFILTER_PORT.to_string()],
    );
    guard
}

/// `xdp-loader status` for the interface: libxdp's own view of what runs there.
fn loader_status(pair: &Pair) -> String {
    xdp_tool_ok(&pair.server, "xdp-loader", &["status", &pair.server_if])
}

/// Whether libxdp itself runs xdp-filter in a dispatcher here; says loudly why not. libxdp
/// falls back to a single program where the kernel refuses freplace (`BPF_PROG_TYPE_EXT`):
/// kernels before 5.10 cannot re-attach one, and some sandboxes refuse loading one (EPERM, seen
/// on this project's 6.18 build host), so no program can share an interface there.
fn libxdp_dispatcher_works(pair: &Pair) -> bool {
    let status = loader_status(pair);
    if status.contains("xdp_dispatcher") {
        return true;
    }
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    // The kernel matrix sets this: its kernels all run the dispatcher, so a fallback there is a
    // failure, never a skip.
    assert!(
        std::env::var_os("GEOFILTER_REQUIRE_DISPATCHER").is_none(),
        "libxdp fell back to a single program on kernel {}, where the dispatcher must work:\n{status}",
        kernel.trim()
    );
    eprintln!(
        "skipping test - libxdp could not build its dispatcher on kernel {} (xdp-filter fell \
         back to a single program: the kernel refuses freplace programs here); the kernel \
         matrix (`cargo xtask test --kernel 6.1`) runs this test. xdp-loader status:\n{status}",
        kernel.trim()
    );
    false
}

/// Sends N datagrams from every source (RU_V4, DE_V4 to 9000; RU_V4_UNALIGNED, DE2_V4 to
/// 9999) and returns what arrived per source.
fn traffic(pair: &Pair) -> std::collections::HashMap<IpAddr, u64> {
    let server = ip(SERVER_V4);
    let sink = UdpSink::bind_ports(&pair.server, &[server], &[UDP_PORT, XDPFILTER_PORT]);
    for (source, port) in [
        (RU_V4, UDP_PORT),
        (DE_V4, UDP_PORT),
        (RU_V4_UNALIGNED, XDPFILTER_PORT),
        (DE2_V4, XDPFILTER_PORT),
    ] {
        send_udp_to(&pair.client, ip(source), SocketAddr::new(server, port), N);
    }
    sink.collect(Duration::from_millis(500))
}

fn got(arrived: &std::collections::HashMap<IpAddr, u64>, source: &str) -> u64 {
    arrived.get(&ip(source)).copied().unwrap_or(0)
}

/// Both filters on: RU dropped by geofilter (which runs first and counts them), DE to 9999
/// dropped by xdp-filter (geofilter counted it as passed), DE to 9000 delivered.
fn assert_both_filter(pair: &Pair, daemon: &Daemon, when: &str) {
    let (ru_before, de_before) = (daemon.packets("RU", "drop"), daemon.packets("DE", "pass"));
    let arrived = traffic(pair);
    assert_eq!(got(&arrived, RU_V4), 0, "{when}: RU to 9000 delivered");
    assert_eq!(
        got(&arrived, RU_V4_UNALIGNED),
        0,
        "{when}: RU to 9999 delivered"
    );
    assert_eq!(
        got(&arrived, DE2_V4),
        0,
        "{when}: DE to 9999 delivered past xdp-filter"
    );
    assert_eq!(got(&arrived, DE_V4), N, "{when}: DE to 9000 lost");
    let ru = daemon.packets("RU", "drop") - ru_before;
    let de = daemon.packets("DE", "pass") - de_before;
    assert_eq!(ru, 2 * N, "{when}: RU drops counted by geofilter");
    assert_eq!(de, 2 * N, "{when}: DE passes counted by geofilter");
    eprintln!(
        "{when}: geofilter dropped {ru} (RU), xdp-filter dropped {} (DE to {XDPFILTER_PORT}), \
         delivered {} of {N} that should pass, 0 that should not",
        N - got(&arrived, DE2_V4),
        got(&arrived, DE_V4)
    );
}

/// xdp-filter's program id in the interface's dispatcher, from `geofilter status`.
fn xdp_filter_id(daemon: &Daemon) -> u32 {
    let status = daemon.status();
    let programs = &status.interfaces[0].programs;
    programs
        .iter()
        .find(|p| p.name.starts_with("xdpfilt"))
        .unwrap_or_else(|| panic!("no xdp-filter program in {programs:?}"))
        .id
}

fn assert_status_lists_both(daemon: &Daemon) {
    let status = daemon.status();
    let programs = &status.interfaces[0].programs;
    assert_eq!(programs.len(), 2, "{programs:?}");
    let ours = programs
        .iter()
        .find(|p| p.owner == "geofilter")
        .expect("geofilter listed");
    let theirs = programs
        .iter()
        .find(|p| p.owner != "geofilter")
        .expect("xdp-filter listed");
    assert_eq!(ours.priority, Some(5), "{programs:?}");
    assert_eq!(
        theirs.priority,
        Some(10),
        "xdp-filter's own priority: {programs:?}"
    );
    assert!(
        ours.slot < theirs.slot,
        "geofilter runs first: {programs:?}"
    );
}

/// Restarts geofilter (`--keep`, then adoption) while DE datagrams flow: none may be lost, and
/// xdp-filter's program stays the same.
fn restart_under_traffic(s: &mut Scene, args: &[String]) {
    let before = xdp_filter_id(&s.daemon);
    let sink = UdpSink::bind(&s.pair.server, &[ip(SERVER_V4)]);
    let sender = StampedSender::start(
        &s.pair.client,
        ip(DE_V4),
        ip(SERVER_V4),
        Duration::from_millis(1),
    );
    std::thread::sleep(Duration::from_millis(200));
    s.daemon.stop();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    s.daemon.restart(&args);
    std::thread::sleep(Duration::from_millis(200));
    let sent = sender.stop().len() as u64;
    let arrived = got(&sink.collect(Duration::from_millis(500)), DE_V4);
    assert_eq!(
        arrived, sent,
        "datagrams lost across the restart: {arrived} of {sent}"
    );
    eprintln!("restart under traffic: {arrived} of {sent} delivered");
    assert_eq!(
        xdp_filter_id(&s.daemon),
        before,
        "xdp-filter's program was replaced"
    );
    assert_status_lists_both(&s.daemon);
}

fn run_args(s: &Scene, extra: &[&str]) -> Vec<String> {
    let mut args = s.run_args();
    args.extend(extra.iter().map(|a| a.to_string()));
    args
}

#[test]
fn geofilter_first_then_xdp_filter() {
    let _serial = setup_tools();
    let extra = ["--block", "RU", "--xdp-attach", "dispatcher", "--keep"];
    let pair = Pair::new();
    for source in SOURCES {
        pair.add_source(ip(source));
    }
    // Whether this kernel lets libxdp share an interface at all, before geofilter tries.
    let probe = load_xdp_filter(&pair);
    if !libxdp_dispatcher_works(&pair) {
        return;
    }
    drop(probe);
    let mut s = Scene::start_on(pair, &extra);
    let status = loader_status(&s.pair);
    assert!(
        status.contains("xdp_dispatcher") && status.contains("geofilter"),
        "{status}"
    );
    let xdp_filter = load_xdp_filter(&s.pair);
    assert_status_lists_both(&s.daemon);
    assert_both_filter(&s.pair, &s.daemon, "geofilter first");
    let args = run_args(&s, &extra);
    restart_under_traffic(&mut s, &args);
    assert_both_filter(&s.pair, &s.daemon, "after the restart");

    // `geofilter unload`: xdp-filter alone keeps filtering.
    s.daemon.ok(&["unload"]);
    s.daemon.wait_exit();
    let status = loader_status(&s.pair);
    assert!(
        !status.contains("geofilter"),
        "geofilter still listed:\n{status}"
    );
    let arrived = traffic(&s.pair);
    assert_eq!(got(&arrived, RU_V4), N, "RU to 9000 after geofilter unload");
    assert_eq!(got(&arrived, DE_V4), N, "DE to 9000 after geofilter unload");
    assert_eq!(
        got(&arrived, DE2_V4) + got(&arrived, RU_V4_UNALIGNED),
        0,
        "9999 after unload"
    );
    drop(xdp_filter);
}

#[test]
fn xdp_filter_first_then_geofilter() {
    let _serial = setup_tools();
    let pair = Pair::new();
    for source in SOURCES {
        pair.add_source(ip(source));
    }
    let xdp_filter = load_xdp_filter(&pair);
    if !libxdp_dispatcher_works(&pair) {
        return;
    }
    // The default `--xdp-attach auto` joins the dispatcher xdp-filter's libxdp attached.
    let mut s = Scene::start_on(pair, &["--block", "RU", "--keep"]);
    assert_status_lists_both(&s.daemon);
    assert_both_filter(&s.pair, &s.daemon, "xdp-filter first");
    let args = run_args(&s, &["--block", "RU", "--keep"]);
    restart_under_traffic(&mut s, &args);

    // `xdp-filter unload`: geofilter alone keeps filtering, in the dispatcher.
    drop(xdp_filter);
    let arrived = traffic(&s.pair);
    assert_eq!(
        got(&arrived, RU_V4) + got(&arrived, RU_V4_UNALIGNED),
        0,
        "RU delivered"
    );
    assert_eq!(
        got(&arrived, DE_V4),
        N,
        "DE to 9000 after xdp-filter unload"
    );
    assert_eq!(
        got(&arrived, DE2_V4),
        N,
        "DE to 9999 after xdp-filter unload"
    );
    let status = s.daemon.status();
    assert_eq!(status.interfaces[0].programs.len(), 1, "{status:?}");
    s.daemon.ok(&["unload"]);
    s.daemon.wait_exit();
    assert!(!s.pair.server_has_xdp(), "something left on the interface");
}

/// `--xdp-attach dispatcher` never displaces a program attached alone (here another geofilter,
/// exclusive): `run` refuses, naming it, and the program keeps running. Runs on every kernel.
#[test]
fn dispatcher_mode_refuses_a_program_attached_alone() {
    let _serial = setup_tools();
    let s = Scene::new(&[RU_V4], &["--block", "RU", "--xdp-attach", "exclusive"]);
    let before = s.daemon.status().interfaces[0].programs.clone();
    assert_eq!(before.len(), 1, "{before:?}");
    assert_eq!(
        (before[0].owner.as_str(), before[0].priority),
        ("geofilter", None)
    );

    let dir = geofilter_tests::scenario::TempDir::new();
    let mut second = Command::new(geofilter_tests::daemon::binary());
    s.pair.server.enter_network_only(&mut second);
    let out = second
        .args([
            "run",
            "--iface",
            &s.pair.server_if,
            "--xdp-attach",
            "dispatcher",
        ])
        .args(["--db", s.db_dir.0.join("v4.csv").to_str().unwrap()])
        .arg("--socket")
        .arg(dir.0.join("s.sock"))
        .arg("--state-file")
        .arg(dir.0.join("state.json"))
        .env(
            "GEOFILTER_PIN_ROOT",
            format!(
                "/sys/fs/bpf/{}",
                geofilter_tests::netns::unique("gf-second-")
            ),
        )
        .output()
        .expect("second geofilter run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("not a libxdp dispatcher"),
        "the second run did not refuse: {err}"
    );
    assert_eq!(
        s.daemon.status().interfaces[0].programs,
        before,
        "the program changed"
    );
    let arrived = {
        let sink = UdpSink::bind(&s.pair.server, &[ip(SERVER_V4)]);
        geofilter_tests::traffic::send_udp(&s.pair.client, ip(RU_V4), ip(SERVER_V4), N);
        sink.collect(Duration::from_millis(300))
    };
    assert_eq!(
        got(&arrived, RU_V4),
        0,
        "RU delivered after the refused run"
    );
}
