//! `--policy FILE`: the daemon watches the file and applies a change within 1 s, whichever way
//! the file is replaced. The poll interval stays at its default (30 s), so only the watch can
//! explain a change applied within the second.

use std::{
    net::IpAddr,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use geofilter_tests::{
    daemon::Daemon,
    fleet::document,
    netns::{Pair, SERVER_V4},
    probe::Probe,
    require_root,
    scenario::{DE_V4, RU_V4, TempDir, ip, write_db},
};

/// Issue 13's bound for a file source.
const APPLIED_WITHIN: Duration = Duration::from_secs(1);

/// A daemon following `policy` on a fresh pair whose client owns an RU and a DE address.
struct Follower {
    pair: Pair,
    daemon: Daemon,
    probe: Probe,
    ru: IpAddr,
    de: IpAddr,
}

impl Follower {
    fn start(policy: &Path) -> Self {
        let (ru, de) = (ip(RU_V4), ip(DE_V4));
        let pair = Pair::new();
        pair.add_source(ru);
        pair.add_source(de);
        let daemon = Daemon::start(
            &pair.server,
            &[
                "--iface",
                &pair.server_if,
                "--policy",
                policy.to_str().expect("UTF-8 path"),
            ],
        );
        let mut probe = Probe::new(&pair, ip(SERVER_V4), &[ru, de]);
        probe.assert_enforces(&[de], &[ru], "the first revision (deny RU)");
        Self {
            pair,
            daemon,
            probe,
            ru,
            de,
        }
    }

    /// Runs `change` (which makes `now_passing` pass and the other source drop), and checks that
    /// the program enforces it within [`APPLIED_WITHIN`]; prints the time.
    fn change(&mut self, what: &str, now_passing: IpAddr, change: impl FnOnce()) {
        let since = Instant::now();
        change();
        let took = self
            .probe
            .time_until_passes(now_passing, since, Duration::from_secs(5));
        let dropped = if now_passing == self.ru {
            self.de
        } else {
            self.ru
        };
        eprintln!("{what}: enforced after {took:?}");
        assert!(
            took.is_some_and(|t| t <= APPLIED_WITHIN),
            "{what}: enforced after {took:?}, bound {APPLIED_WITHIN:?}; daemon log:\n{}",
            self.daemon.log()
        );
        self.probe
            .assert_enforces(&[now_passing], &[dropped], &format!("after {what}"));
        assert!(self.pair.server_has_xdp(), "{what}: still attached");
    }

    /// `policy_source.errors` in `status --json`.
    fn errors(&self) -> u64 {
        let status = self.daemon.cli_json(&["status"]);
        status["policy_source"]["errors"].as_u64().unwrap_or(0)
    }

    /// Runs `change` (a bad revision), waits (at most 5 s) for `status` to count and show an
    /// error; then the program must still enforce the last good revision, which passes
    /// `passing`.
    fn refuses(&mut self, what: &str, passing: IpAddr, change: impl FnOnce()) {
        let before = self.errors();
        change();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let status = self.daemon.cli_json(&["status"]);
            let source = &status["policy_source"];
            if source["errors"].as_u64().unwrap_or(0) > before && source["last_error"].is_string() {
                eprintln!("{what}: refused: {}", source["last_error"]);
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: no new error in status: {status}\nlog:\n{}",
                self.daemon.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let dropped = if passing == self.ru { self.de } else { self.ru };
        self.probe
            .assert_enforces(&[passing], &[dropped], &format!("after {what}"));
    }
}

/// The databases as local paths, for the document.
fn local_dbs(dir: &Path) -> Vec<String> {
    let (v4, v6) = write_db(dir);
    [v4, v6]
        .iter()
        .map(|p| format!("\"{}\"", p.display()))
        .collect()
}

/// A mounted ConfigMap as the kubelet writes it (its AtomicWriter): the files in a timestamped
/// folder, `..data` a symlink to it, and each key a symlink through `..data`.
struct ConfigMap {
    dir: PathBuf,
    generation: u32,
}

impl ConfigMap {
    fn new(dir: &Path, policy: &str) -> Self {
        let mut map = Self {
            dir: dir.to_owned(),
            generation: 0,
        };
        let first = map.write_folder(policy);
        std::os::unix::fs::symlink(&first, dir.join("..data")).expect("..data");
        std::os::unix::fs::symlink("..data/policy.toml", dir.join("policy.toml"))
            .expect("policy.toml symlink");
        map
    }

    fn write_folder(&mut self, policy: &str) -> String {
        self.generation += 1;
        let name = format!(
            "..2026_12_01_14_00_{:02}.{}",
            self.generation,
            std::process::id()
        );
        std::fs::create_dir(self.dir.join(&name)).expect("timestamped folder");
        std::fs::write(self.dir.join(&name).join("policy.toml"), policy).expect("policy.toml");
        name
    }

    /// The update: a new folder, `..data_tmp` pointing at it renamed over `..data`, the old
    /// folder removed.
    fn update(&mut self, policy: &str) {
        let old = std::fs::read_link(self.dir.join("..data")).expect("..data");
        let new = self.write_folder(policy);
        let tmp = self.dir.join("..data_tmp");
        std::os::unix::fs::symlink(&new, &tmp).expect("..data_tmp");
        std::fs::rename(&tmp, self.dir.join("..data")).expect("renaming over ..data");
        std::fs::remove_dir_all(self.dir.join(old)).expect("removing the old folder");
    }
}

#[test]
fn a_configmap_symlink_swap_is_applied_within_a_second() {
    require_root();
    let dir = TempDir::new();
    let dbs = local_dbs(&dir.0);
    let mounted = dir.0.join("config");
    std::fs::create_dir(&mounted).expect("mount folder");
    let mut map = ConfigMap::new(&mounted, &document(&["RU"], &dbs));
    let mut f = Follower::start(&mounted.join("policy.toml"));
    let (ru, de) = (f.ru, f.de);
    f.change("ConfigMap swap to deny DE", ru, || {
        map.update(&document(&["DE"], &dbs))
    });
    f.refuses("a ConfigMap swap to a bad document", ru, || {
        map.update("[policy\nnot toml")
    });
    f.change("ConfigMap swap back to deny RU", de, || {
        map.update(&document(&["RU"], &dbs))
    });
}

#[test]
fn an_editor_rename_over_and_an_in_place_write_are_applied_within_a_second() {
    require_root();
    let dir = TempDir::new();
    let dbs = local_dbs(&dir.0);
    let policy = dir.0.join("policy.toml");
    std::fs::write(&policy, document(&["RU"], &dbs)).expect("policy.toml");
    let mut f = Follower::start(&policy);
    let (ru, de) = (f.ru, f.de);
    // As vim (backupcopy=no) and most editors save: a temporary file renamed over the original.
    let rename_over = |text: String| {
        let tmp = dir.0.join(".policy.toml.swp");
        std::fs::write(&tmp, text).expect("temporary file");
        std::fs::rename(&tmp, &policy).expect("rename over policy.toml");
    };
    f.change("rename over, to deny DE", ru, || {
        rename_over(document(&["DE"], &dbs))
    });
    f.change("in-place write, to deny RU", de, || {
        std::fs::write(&policy, document(&["RU"], &dbs)).expect("writing in place")
    });
    f.refuses("a rename over with a bad document", de, || {
        rename_over("dbs = 7\n".into())
    });
}
