//! The standard scene of the end-to-end tests: a small country database, a client and a server
//! namespace joined by veth, source addresses of several countries on the client, and the real
//! daemon filtering the server's end.

use std::{
    net::IpAddr,
    path::{Path, PathBuf},
};

use crate::{
    daemon::Daemon,
    netns::{Pair, SERVER_V4, SERVER_V6, unique},
    require_root,
};

pub const RU_V4: &str = "5.45.200.7";
/// The first address of a range that is not CIDR-aligned (`77.88.0.1-77.88.63.254`).
pub const RU_V4_UNALIGNED: &str = "77.88.0.1";
pub const DE_V4: &str = "46.114.1.1";
pub const US_V4: &str = "8.8.8.8";
pub const RU_V6: &str = "2a02:6b8::7";
pub const DE_V6: &str = "2a01:598:1::1";

pub fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

/// The server address of the source's family.
pub fn server_for(source: &str) -> IpAddr {
    if ip(source).is_ipv4() {
        ip(SERVER_V4)
    } else {
        ip(SERVER_V6)
    }
}

/// A temporary folder removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> Self {
        let p = std::env::temp_dir().join(unique("gf-db-"));
        std::fs::create_dir_all(&p).expect("temp dir");
        Self(p)
    }
}

impl Default for TempDir {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The IPv4 file of [`write_db`].
pub const DB_V4: &str = "5.45.192.0,5.45.255.255,RU\n46.114.0.0,46.114.255.255,DE\n77.88.0.1,77.88.63.254,RU\n8.8.8.0,8.8.8.255,US\n";
/// The IPv6 file of [`write_db`].
pub const DB_V6: &str = "2a01:598::,2a01:598:ffff:ffff:ffff:ffff:ffff:ffff,DE\n2a02:6b8::,2a02:6b8:ffff:ffff:ffff:ffff:ffff:ffff,RU\n";

/// A small range database in the CSV shape of DB-IP lite and ip-location-db: one IPv4 file and
/// one IPv6 file, merged by giving both.
pub fn write_db(dir: &Path) -> (PathBuf, PathBuf) {
    let v4 = dir.join("v4.csv");
    let v6 = dir.join("v6.csv");
    std::fs::write(&v4, DB_V4).expect("writing v4.csv");
    std::fs::write(&v6, DB_V6).expect("writing v6.csv");
    (v4, v6)
}

pub struct Scene {
    pub pair: Pair,
    pub daemon: Daemon,
    pub db_dir: TempDir,
}

impl Scene {
    /// The client owns `sources`; the daemon runs with the small database and `extra` flags.
    pub fn new(sources: &[&str], extra: &[&str]) -> Self {
        require_root();
        let pair = Pair::new();
        for s in sources {
            pair.add_source(ip(s));
        }
        Self::start_on(pair, extra)
    }

    /// The daemon with the small database and `extra` flags on a pair set up by the caller.
    pub fn start_on(pair: Pair, extra: &[&str]) -> Self {
        let db_dir = TempDir::new();
        let (v4, v6) = write_db(&db_dir.0);
        let mut args = vec![
            "--iface",
            &pair.server_if,
            "--db",
            v4.to_str().unwrap(),
            "--db",
            v6.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let daemon = Daemon::start(&pair.server, &args);
        Self {
            pair,
            daemon,
            db_dir,
        }
    }

    /// The `run` arguments the scene started with (for restarts).
    pub fn run_args(&self) -> Vec<String> {
        let (v4, v6) = (self.db_dir.0.join("v4.csv"), self.db_dir.0.join("v6.csv"));
        vec![
            "--iface".into(),
            self.pair.server_if.clone(),
            "--db".into(),
            v4.display().to_string(),
            "--db".into(),
            v6.display().to_string(),
        ]
    }
}
