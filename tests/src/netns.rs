//! Network namespaces and a veth pair between them: the only place test traffic flows.
//!
//! Every object is removed on drop (also when a test panics): deleting a namespace deletes the
//! veth end inside it, and with it the pair.

use std::{
    fs::File,
    net::IpAddr,
    os::fd::AsRawFd,
    process::{Command, Output},
    sync::atomic::{AtomicU32, Ordering},
};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A short name unique to this process and call (interface names are limited to 15 bytes).
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}{}x{}",
        std::process::id() % 100_000,
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

pub fn sh(program: &str, args: &[&str]) -> Output {
    checked(Command::new(program).args(args))
}

/// Runs `command`, failing the test with its command line, status and output unless it
/// succeeds.
pub fn checked(command: &mut Command) -> Output {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(
        out.status.success(),
        "{command:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub struct Netns {
    pub name: String,
    /// Whether dropping this value deletes the namespace.
    owned: bool,
}

impl Netns {
    pub fn new(prefix: &str) -> Self {
        let name = unique(prefix);
        sh("ip", &["netns", "add", &name]);
        let ns = Self { name, owned: true };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// `ip -n <ns> <args>`.
    pub fn ip(&self, args: &[&str]) -> Output {
        let mut all = vec!["-n", &self.name];
        all.extend_from_slice(args);
        sh("ip", &all)
    }

    /// `ip <args>` in this network namespace but the caller's mount namespace (`ip -n` remounts
    /// /sys, which hides the host's bpffs and its pins).
    pub fn ip_keeping_mounts(&self, args: &[&str]) -> Output {
        let mut command = Command::new("ip");
        command.args(args);
        self.enter_network_only(&mut command);
        checked(&mut command)
    }

    /// Makes `command` run in this network namespace only (`setns` between fork and exec),
    /// keeping the caller's mounts: unlike `ip netns exec`, the host's bpffs stays visible.
    pub fn enter_network_only(&self, command: &mut Command) {
        let netns = File::open(format!("/run/netns/{}", self.name)).expect("netns file");
        // SAFETY: setns is async-signal-safe; the fd stays open until after the fork.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(command, move || {
                if libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }

    /// A command run inside the namespace (`ip netns exec`).
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    /// Runs `f` on a thread that has entered this namespace. Sockets created there stay in the
    /// namespace and may be used from any thread afterwards.
    pub fn run_in<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = format!("/run/netns/{}", self.name);
        std::thread::scope(|s| {
            s.spawn(|| {
                let file = File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
                // SAFETY: a valid namespace fd; this only changes the calling thread's namespace.
                let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
                assert_eq!(rc, 0, "setns({path}): {}", std::io::Error::last_os_error());
                f()
            })
            .join()
            .expect("namespace thread panicked")
        })
    }
}

impl Netns {
    /// A handle on a namespace someone else owns (and deletes).
    pub fn borrowed(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            owned: false,
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if self.owned {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.name])
                .status();
        }
    }
}

/// Two namespaces joined by a veth pair: `client` sends, `server` runs the filter on `server_if`.
///
/// Neighbours are static both ways: IPv6 neighbour solicitations carry the (possibly blocked)
/// source address and would be dropped by the filter, leaving the sender unable to resolve the
/// server's MAC; static entries keep the test's packets the only packets from test sources.
pub struct Pair {
    pub client: Netns,
    pub server: Netns,
    pub client_if: String,
    pub server_if: String,
    client_mac: String,
    server_mac: String,
}

pub const SERVER_V4: &str = "10.200.0.2";
pub const CLIENT_V4: &str = "10.200.0.1";
pub const SERVER_V6: &str = "fd00:200::2";
pub const CLIENT_V6: &str = "fd00:200::1";

impl Pair {
    pub fn new() -> Self {
        let client = Netns::new("gfc");
        let server = Netns::new("gfs");
        let client_if = unique("gvc");
        let server_if = unique("gvs");
        sh(
            "ip",
            &[
                "link",
                "add",
                &client_if,
                "netns",
                &client.name,
                "type",
                "veth",
                "peer",
                "name",
                &server_if,
                "netns",
                &server.name,
            ],
        );
        let client_mac = "02:00:00:00:c0:01".to_owned();
        let server_mac = "02:00:00:00:c0:02".to_owned();
        for (ns, ifname, mac, v4, v6) in [
            (&client, &client_if, &client_mac, CLIENT_V4, CLIENT_V6),
            (&server, &server_if, &server_mac, SERVER_V4, SERVER_V6),
        ] {
            ns.ip(&["link", "set", ifname, "address", mac]);
            ns.ip(&["addr", "add", &format!("{v4}/24"), "dev", ifname]);
            ns.ip(&[
                "-6",
                "addr",
                "add",
                &format!("{v6}/64"),
                "dev",
                ifname,
                "nodad",
            ]);
            ns.ip(&["link", "set", ifname, "up"]);
        }
        client.ip(&[
            "neigh",
            "replace",
            SERVER_V4,
            "lladdr",
            &server_mac,
            "dev",
            &client_if,
            "nud",
            "permanent",
        ]);
        client.ip(&[
            "-6",
            "neigh",
            "replace",
            SERVER_V6,
            "lladdr",
            &server_mac,
            "dev",
            &client_if,
            "nud",
            "permanent",
        ]);
        Self {
            client,
            server,
            client_if,
            server_if,
            client_mac,
            server_mac,
        }
    }

    /// Gives the client a source address (of any country) and the server a host route and a
    /// static neighbour back to it. Routes are host routes on the veth: never a default route.
    pub fn add_source(&self, addr: IpAddr) {
        let (plen, fam) = if addr.is_ipv4() {
            ("32", "-4")
        } else {
            ("128", "-6")
        };
        let a = addr.to_string();
        let cidr = format!("{a}/{plen}");
        let mut add = vec![fam, "addr", "add", &cidr, "dev", &self.client_if];
        if addr.is_ipv6() {
            add.push("nodad");
        }
        self.client.ip(&add);
        self.server
            .ip(&[fam, "route", "add", &a, "dev", &self.server_if]);
        self.server.ip(&[
            fam,
            "neigh",
            "replace",
            &a,
            "lladdr",
            &self.client_mac,
            "dev",
            &self.server_if,
            "nud",
            "permanent",
        ]);
    }

    /// Whether an XDP program is attached to the server's end (`ip link` shows `xdp...`).
    pub fn server_has_xdp(&self) -> bool {
        let link = self.server.ip(&["link", "show", "dev", &self.server_if]);
        String::from_utf8_lossy(&link.stdout).contains("xdp")
    }

    pub fn server_mac(&self) -> &str {
        &self.server_mac
    }
}

impl Default for Pair {
    fn default() -> Self {
        Self::new()
    }
}
