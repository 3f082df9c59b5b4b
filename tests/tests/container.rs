//! The OCI image (`cargo xtask image`, `Containerfile`) run with podman as a node runs the
//! DaemonSet of deploy/kubernetes/: in the server namespace of a veth pair (as `hostNetwork`
//! puts it in the node's), with the host's bpffs (HostToContainer: `rslave`), a state folder and
//! the control socket's folder mounted from the host, the policy folder read-only. Privileged, it
//! must filter real UDP (RU dropped, DE delivered), answer `geofilter status` from the host
//! through the mounted socket, and detach when stopped. With the DaemonSet's securityContext and
//! `--keep`, a new container must adopt the filter the old one left, with no moment unfiltered,
//! and a ConfigMap update (the kubelet's `..data` swap) must reach the daemon within a second.
//!
//! `cargo xtask test` builds the image once and names it in GEOFILTER_IMAGE; nothing is pulled
//! (`--pull=never`), so the test behaves the same on a machine whose podman storage held nothing
//! before. Everything it makes is removed on drop, also when it fails: the container, the
//! namespaces, the pins, the folders.

use std::{
    net::IpAddr,
    path::PathBuf,
    process::{Command, Output},
    time::{Duration, Instant},
};

use geofilter_common::Verdict;
use geofilter_daemon::control::protocol::{StatsReply, StatusReply};
use geofilter_tests::{
    daemon::{binary, policy_codes},
    ensure_command,
    netns::{Pair, SERVER_V4, checked, unique},
    podman::{self, Container, DAEMONSET, PRIVILEGED, Spec, ensure_host_bpffs},
    require_root,
    scenario::{DE_V4, RU_V4, TempDir, ip, write_db},
    traffic::{StampedSender, UdpSink, send_udp},
};

/// Datagrams per source: enough that a leak cannot hide, few enough for a loaded machine.
const DATAGRAMS: u64 = 200;

/// A policy document that drops `country`, on the test's small database (in the mounted folder).
fn policy_document(country: &str) -> String {
    format!(
        "dbs = [\"/etc/geofilter/v4.csv\", \"/etc/geofilter/v6.csv\"]\n\n[policy]\nmode = \
         \"deny\"\ncountries = [\"{country}\"]\nunknown = \"pass\"\nmonitor = false\n"
    )
}

/// `podman run` of the image with `security` flags and `extra` ones, the host's folders mounted
/// (`host`), and `args` for its `geofilter` entry point, in the server namespace of `pair`.
fn podman_run(
    pair: &Pair,
    host: &Host,
    security: &[&str],
    extra: &[&str],
    args: &[&str],
) -> Command {
    podman::run(&host.spec(pair, security), extra, args)
}

/// A pin root removed on drop (a container killed before it detached leaves its pins).
struct Pins(PathBuf);

impl Drop for Pins {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The host's side of the container: its folders, mounted into it.
struct Host {
    dir: TempDir,
    pins: Pins,
}

impl Host {
    fn new() -> Self {
        let dir = TempDir::new();
        for sub in ["state", "run", "etc"] {
            std::fs::create_dir_all(dir.0.join(sub)).expect("creating a container folder");
        }
        write_db(&dir.0.join("etc"));
        Self {
            dir,
            pins: Pins(PathBuf::from("/sys/fs/bpf").join(unique("gf-ctr-pins-"))),
        }
    }

    /// The policy document the DaemonSet's ConfigMap would hold, written as a plain file.
    fn write_policy(&self) {
        std::fs::write(self.dir.0.join("etc/policy.toml"), policy_document("RU"))
            .expect("writing policy.toml");
    }

    /// Publishes the document dropping `country` as the kubelet updates a mounted ConfigMap
    /// (its atomic writer): the files in a new hidden folder `..REVISION`, then a `..data_tmp`
    /// symlink to it renamed over `..data`, which `policy.toml` points through; the old folder
    /// is removed after the swap.
    fn publish_configmap(&self, country: &str, revision: u32) {
        let etc = self.dir.0.join("etc");
        let folder = format!("..rev{revision}");
        std::fs::create_dir(etc.join(&folder)).expect("creating the revision folder");
        std::fs::write(
            etc.join(&folder).join("policy.toml"),
            policy_document(country),
        )
        .expect("writing the revision's policy.toml");
        let old = std::fs::read_link(etc.join("..data")).ok();
        std::os::unix::fs::symlink(&folder, etc.join("..data_tmp")).expect("..data_tmp");
        std::fs::rename(etc.join("..data_tmp"), etc.join("..data")).expect("swapping ..data");
        if !etc.join("policy.toml").exists() {
            std::os::unix::fs::symlink("..data/policy.toml", etc.join("policy.toml"))
                .expect("the policy.toml symlink");
        }
        if let Some(old) = old {
            std::fs::remove_dir_all(etc.join(old)).expect("removing the old revision");
        }
    }

    /// How the container runs, with `security`: in the server namespace of `pair`; the host's
    /// bpffs mounted as the DaemonSet mounts it, the state, socket and policy folders; pins in a
    /// root of the test's own, so tests never share (or remove) each other's.
    fn spec<'a>(&self, pair: &'a Pair, security: &'a [&'a str]) -> Spec<'a> {
        let d = self.dir.0.display();
        Spec {
            netns: &pair.server.name,
            security,
            volumes: vec![
                "/sys/fs/bpf:/sys/fs/bpf:rslave".into(),
                format!("{d}/state:/var/lib/geofilter"),
                format!("{d}/run:/run/geofilter"),
                format!("{d}/etc:/etc/geofilter:ro"),
            ],
            env: vec![format!("GEOFILTER_PIN_ROOT={}", self.pins.0.display())],
        }
    }

    /// `geofilter <args> --json` run on the host against the container's control socket.
    fn cli<T: serde::de::DeserializeOwned>(&self, container: &Container, args: &[&str]) -> T {
        let out: Output = Command::new(binary())
            .args(args)
            .arg("--json")
            .arg("--socket")
            .arg(self.dir.0.join("run/geofilter.sock"))
            .output()
            .expect("running the geofilter CLI");
        assert!(
            out.status.success(),
            "geofilter {} against the container failed: {}\ncontainer log:\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr),
            container.logs()
        );
        serde_json::from_slice(&out.stdout).expect("geofilter --json output")
    }
}

/// Starts the container with `args` and waits until it is ready and filtering: the policy
/// `status` shows through the mounted socket, XDP on the interface, pins in the host's bpffs.
fn started(host: &Host, pair: &Pair, security: &[&str], args: &[&str]) -> Container {
    let container = Container::start(&host.spec(pair, security), args);
    container.wait_ready();
    let status: StatusReply = host.cli(&container, &["status"]);
    assert_eq!(policy_codes(&status.policy), ["RU"], "{status:?}");
    assert!(
        pair.server_has_xdp(),
        "no XDP program on {}",
        pair.server_if
    );
    assert!(
        host.pins.0.is_dir(),
        "the container did not pin into the host's bpffs at {}",
        host.pins.0.display()
    );
    container
}

/// Real UDP from two sources: every datagram from `blocked` dropped, every one from `passed`
/// delivered. `when` names the moment for the failure message.
fn assert_filtering(pair: &Pair, blocked: &str, passed: &str, when: &str) {
    let sink = UdpSink::bind(&pair.server, &[ip(SERVER_V4)]);
    for source in [blocked, passed] {
        send_udp(&pair.client, ip(source), ip(SERVER_V4), DATAGRAMS);
    }
    let arrived = sink.collect(Duration::from_millis(500));
    assert_eq!(
        arrived.get(&ip(blocked)),
        None,
        "{when}: datagrams from {blocked} got through"
    );
    assert_eq!(
        arrived.get(&ip(passed)).copied(),
        Some(DATAGRAMS),
        "{when}: datagrams from {passed} lost"
    );
}

/// The case of a container run privileged and without --keep (`run --iface SERVER_IF <run>`):
/// it filters, and SIGTERM detaches and unpins, so nothing of the filter outlives it.
fn filters_and_detaches_on_stop(host: &Host, pair: &Pair, run: &[&str]) {
    let args = [&["run", "--iface", &pair.server_if][..], run].concat();
    let container = started(host, pair, PRIVILEGED, &args);
    assert_filtering(pair, RU_V4, DE_V4, "with the container running");
    let stats: StatsReply = host.cli(&container, &["stats"]);
    assert_eq!(stats.count("RU", Verdict::Drop).packets, DATAGRAMS);

    assert_eq!(container.stop(), 0, "log:\n{}", container.logs());
    assert!(
        !pair.server_has_xdp(),
        "the stopped container left XDP attached"
    );
    assert!(
        !host.pins.0.exists(),
        "the stopped container left pins at {}",
        host.pins.0.display()
    );
}

/// `GET /ready` on the metrics port, from the server namespace (the container's network): the
/// HTTP status code, as the DaemonSet's readiness probe sees it.
fn ready_code(pair: &Pair) -> String {
    let out = checked(pair.server.command("curl").args([
        "--silent",
        "--max-time",
        "5",
        "--output",
        "/dev/null",
        "--write-out",
        "%{http_code}",
        "http://127.0.0.1:9477/ready",
    ]));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn setup() -> (Host, Pair) {
    require_root();
    ensure_command("podman", "podman");
    ensure_command("runc", "runc");
    ensure_host_bpffs();
    let pair = Pair::new();
    for source in [RU_V4, DE_V4] {
        pair.add_source(ip(source));
    }
    (Host::new(), pair)
}

#[test]
fn the_image_filters_with_flags() {
    let (host, pair) = setup();
    let db = [
        "--db",
        "/etc/geofilter/v4.csv",
        "--db",
        "/etc/geofilter/v6.csv",
    ];
    filters_and_detaches_on_stop(&host, &pair, &[&["--block", "RU"][..], &db].concat());
}

/// The DaemonSet's way: the policy document from the mounted folder (`--policy`, SPEC-13).
#[test]
fn the_image_filters_with_a_policy_file() {
    let (host, pair) = setup();
    host.write_policy();
    filters_and_detaches_on_stop(&host, &pair, &["--policy", "/etc/geofilter/policy.toml"]);
}

/// The DaemonSet's rolling update on one node: the old pod's daemon (`--keep`) stops and leaves
/// the filter attached, the interface stays filtered with no daemon running, and the new pod's
/// daemon adopts it and reports ready on `/ready`, as the readiness probe asks. Both run with the
/// DaemonSet's capabilities, not privileged.
#[test]
fn a_rolling_update_never_leaves_the_interface_unfiltered() {
    ensure_command("curl", "curl");
    let (host, pair) = setup();
    host.write_policy();
    let args = [
        "run",
        "--iface",
        &pair.server_if,
        "--policy",
        "/etc/geofilter/policy.toml",
        "--keep",
        "--metrics",
        "0.0.0.0:9477",
    ];
    let old = started(&host, &pair, DAEMONSET, &args);
    assert_eq!(
        ready_code(&pair),
        "200",
        "old pod's /ready; log:\n{}",
        old.logs()
    );
    assert_filtering(&pair, RU_V4, DE_V4, "with the old pod running");

    // The update under traffic, from before the old pod stops until the new one is ready: not
    // one RU datagram gets through, every DE one does.
    let (ru, de, server) = (ip(RU_V4), ip(DE_V4), ip(SERVER_V4));
    let sink = UdpSink::bind(&pair.server, &[server]);
    let blocked = StampedSender::start(&pair.client, ru, server, Duration::from_millis(1));
    let allowed = StampedSender::start(&pair.client, de, server, Duration::from_millis(1));
    assert_eq!(old.stop(), 0, "log:\n{}", old.logs());
    drop(old);
    assert!(
        pair.server_has_xdp(),
        "the old pod's --keep left no XDP attached"
    );
    let new = started(&host, &pair, DAEMONSET, &args);
    let (blocked_sent, allowed_sent) = (blocked.stop(), allowed.stop());
    let arrived = sink.finish(Duration::from_millis(300));
    let from = |source: IpAddr| arrived.iter().filter(|(a, _)| *a == source).count();
    eprintln!(
        "rolling update under traffic: RU sent {} delivered {}, DE sent {} delivered {}",
        blocked_sent.len(),
        from(ru),
        allowed_sent.len(),
        from(de)
    );
    assert_eq!(
        (from(ru), from(de)),
        (0, allowed_sent.len()),
        "during the update ({} RU and {} DE datagrams sent): delivered from RU, DE",
        blocked_sent.len(),
        allowed_sent.len()
    );
    assert_eq!(
        ready_code(&pair),
        "200",
        "new pod's /ready; log:\n{}",
        new.logs()
    );
    assert_filtering(&pair, RU_V4, DE_V4, "with the new pod running");

    // `kubectl delete`: the pod stops, and --keep leaves the filter attached. What the README
    // says to run on each node then removes it: `geofilter unload` in a one-off container of the
    // image, with the same mounts and no daemon to talk to.
    assert_eq!(new.stop(), 0, "log:\n{}", new.logs());
    drop(new);
    assert!(
        pair.server_has_xdp(),
        "the deleted pod's --keep left no XDP attached"
    );
    let unload = checked(&mut podman_run(
        &pair,
        &host,
        DAEMONSET,
        &["--rm"],
        &["unload"],
    ));
    eprintln!("unload: {}", String::from_utf8_lossy(&unload.stdout).trim());
    assert!(!pair.server_has_xdp(), "unload left XDP attached");
    assert!(
        !host.pins.0.exists(),
        "unload left pins at {}",
        host.pins.0.display()
    );
}

/// A ConfigMap edit as it reaches a pod: the kubelet's `..data` swap in the mounted folder. The
/// daemon in the container (the DaemonSet's securityContext) applies it within a second, and the
/// traffic shows it.
#[test]
fn a_configmap_update_reaches_the_daemon_in_the_container() {
    let (host, pair) = setup();
    host.publish_configmap("RU", 1);
    let policy = ["--policy", "/etc/geofilter/policy.toml"];
    let args = [&["run", "--iface", &pair.server_if][..], &policy].concat();
    let container = started(&host, &pair, DAEMONSET, &args);
    assert_filtering(&pair, RU_V4, DE_V4, "revision 1");

    let published = Instant::now();
    host.publish_configmap("DE", 2);
    let applied = loop {
        let status: StatusReply = host.cli(&container, &["status"]);
        if policy_codes(&status.policy) == ["DE"] {
            break published.elapsed();
        }
        assert!(
            published.elapsed() < Duration::from_secs(10),
            "revision 2 not applied within 10 s: {status:?}\nlog:\n{}",
            container.logs()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    eprintln!("ConfigMap swap applied in the container after {applied:?}");
    assert!(
        applied <= Duration::from_secs(1),
        "the swap took {applied:?} to apply (at most 1 s)"
    );
    assert_filtering(&pair, DE_V4, RU_V4, "revision 2");
    assert_eq!(container.stop(), 0, "log:\n{}", container.logs());
}
