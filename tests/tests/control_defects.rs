//! Tier 3, control plane: the control-plane defects of issue 10 (commit-confirm persistence and
//! rollback, bounds, lockout on every change, SIGHUP, `why` explanations), each with the real
//! daemon and CLI on a veth pair between fresh namespaces.

use std::{
    io::{Read, Write},
    time::{Duration, Instant},
};

use geofilter_daemon::{control::protocol::wire_name, rules::ExceptionAction, state::SavedState};
use geofilter_tests::{
    daemon::policy_codes,
    netns::SERVER_V4,
    scenario::{DE_V4, RU_V4, Scene, TempDir, ip},
    traffic::{HttpServer, curl},
};

/// What the live program does with packets from `addr`, as `why` reports it.
fn verdict(scene: &Scene, addr: &str) -> String {
    wire_name(&scene.daemon.why(addr).verdict)
}

/// The countries of the policy in the daemon's state file.
fn saved_countries(scene: &Scene) -> Vec<String> {
    let path = scene.daemon.state_file();
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let saved: SavedState = serde_json::from_str(&text).expect("state file is a saved state");
    policy_codes(&saved.policy)
}

fn status_countries(scene: &Scene) -> Vec<String> {
    scene.daemon.countries()
}

/// Defect 6: `confirm` must write the confirmed policy to the state file, or a restart silently
/// reverts it.
#[test]
fn a_confirmed_change_is_saved_and_survives_a_restart() {
    let mut scene = Scene::new(&[], &["--block", "RU"]);
    scene.daemon.ok(&["block", "CN", "--confirm", "60"]);
    assert_eq!(
        saved_countries(&scene),
        ["RU"],
        "while unconfirmed, the state file holds the state to roll back to"
    );
    scene.daemon.ok(&["confirm"]);
    assert_eq!(saved_countries(&scene), ["CN", "RU"]);
    scene.daemon.stop();
    let args = scene.run_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    scene.daemon.restart(&args);
    assert_eq!(status_countries(&scene), ["CN", "RU"]);
}

/// Defect 8: an out-of-range `--confirm` is refused with a clear error before anything is
/// applied; it used to panic the handler half-way, leaving BY blocked while the state file and
/// `pending_confirm_s` said otherwise.
#[test]
fn an_out_of_range_confirm_window_is_refused_and_changes_nothing() {
    let scene = Scene::new(&[], &["--block", "RU"]);
    for secs in ["18446744073709551615", "0", "86401"] {
        let out = scene.daemon.cli(&["block", "BY", "--confirm", secs]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "--confirm {secs} accepted");
        assert!(
            err.contains(secs) && err.contains("1 to 86400 seconds"),
            "--confirm {secs}: {err}"
        );
        let status = scene.daemon.status();
        assert_eq!(policy_codes(&status.policy), ["RU"]);
        assert!(status.pending_confirm_s.is_none(), "{status:?}");
        assert_eq!(saved_countries(&scene), ["RU"]);
    }
    // The longest window is accepted, and the handler is still there to confirm it.
    scene.daemon.ok(&["block", "BY", "--confirm", "86400"]);
    let pending = scene.daemon.status().pending_confirm_s;
    assert!(pending.is_some_and(|s| s > 86_000), "{pending:?}");
    scene.daemon.ok(&["confirm"]);
    assert_eq!(status_countries(&scene), ["BY", "RU"]);
}

/// Defect 7: a rollback undoes only the change made with `--confirm`; a later change (here, of
/// another country) stays, in the kernel and in the state file.
#[test]
fn a_rollback_keeps_the_changes_made_after_it() {
    let scene = Scene::new(&[RU_V4, DE_V4], &["--block", "RU"]);
    scene.daemon.ok(&["block", "DE", "--confirm", "2"]);
    scene.daemon.ok(&["block", "CN"]);
    assert_eq!(saved_countries(&scene), ["CN", "RU"]);
    // The same country set again after the confirmed change: the later word stays.
    scene.daemon.ok(&["unblock", "RU"]);
    scene.daemon.ok(&["block", "RU"]);
    std::thread::sleep(Duration::from_millis(2600));
    let status = scene.daemon.status();
    assert!(status.pending_confirm_s.is_none(), "{status:?}");
    assert_eq!(policy_codes(&status.policy), ["CN", "RU"]);
    assert_eq!(saved_countries(&scene), ["CN", "RU"]);
    assert_eq!(verdict(&scene, DE_V4), "pass", "DE rolled back");
    assert_eq!(verdict(&scene, RU_V4), "drop");
}

/// A CLI verb run as from an SSH session at `from`; its output.
fn as_ssh(scene: &Scene, from: &str, args: &[&str]) -> std::process::Output {
    let mut c = scene.daemon.cli_command(args);
    c.env("SSH_CONNECTION", format!("{from} 51234 {SERVER_V4} 22"));
    c.output().expect("running the geofilter CLI")
}

/// The CLI verb failed with a lockout refusal naming `from`.
fn assert_refused(out: &std::process::Output, from: &str, what: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{what} was accepted");
    assert!(
        err.contains("refused") && err.contains(from) && err.contains("--force"),
        "{what}: {err}"
    );
}

/// Defect 9: every change that can drop the caller is checked, a database reload included.
#[test]
fn every_change_that_would_drop_the_caller_is_refused() {
    let scene = Scene::new(&[DE_V4], &["--block", "RU"]);
    // A database that places the caller's DE range in RU.
    let moved = TempDir::new();
    let v4 = moved.0.join("v4.csv");
    std::fs::write(&v4, "46.114.0.0,46.114.255.255,RU\n").unwrap();
    let v4 = v4.to_str().unwrap();
    let reload = ["db", "reload", "--db", v4];
    assert_refused(&as_ssh(&scene, DE_V4, &reload), DE_V4, "db reload");
    let status = scene.daemon.status();
    assert_eq!(status.database.reloads, 0, "tables kept: {status:?}");
    assert_eq!(status.database.sources.len(), 2, "{status:?}");
    assert_eq!(verdict(&scene, DE_V4), "pass");
    // A reload that keeps the caller placed as before goes through.
    assert!(as_ssh(&scene, DE_V4, &["db", "reload"]).status.success());

    // Policy changes: unknown drop for an unplaced caller, monitor off, an exception to drop.
    let unplaced = "192.0.2.9";
    assert_refused(
        &as_ssh(&scene, unplaced, &["policy", "unknown", "drop"]),
        unplaced,
        "unknown drop",
    );
    scene.daemon.ok(&["monitor", "on"]);
    scene.daemon.ok(&["block", "DE"]);
    assert_refused(
        &as_ssh(&scene, DE_V4, &["monitor", "off"]),
        DE_V4,
        "monitor off",
    );
    scene.daemon.ok(&["monitor", "off", "--force"]);
    scene.daemon.ok(&["unblock", "DE"]);
    assert_refused(
        &as_ssh(&scene, DE_V4, &["except", "add", "--drop", "46.114.0.0/16"]),
        DE_V4,
        "a drop exception",
    );

    // A change that is only safe while a pending change stays is refused: the rollback would run
    // unattended and drop the caller.
    assert!(
        as_ssh(&scene, DE_V4, &["except", "add", DE_V4, "--confirm", "60"])
            .status
            .success()
    );
    let out = as_ssh(&scene, DE_V4, &["block", "DE"]);
    assert_refused(&out, DE_V4, "block DE while its exception awaits confirm");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("rolls back"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    scene.daemon.ok(&["confirm"]);
    assert!(as_ssh(&scene, DE_V4, &["block", "DE"]).status.success());

    // --force applies the reload anyway.
    scene.daemon.ok(&["except", "del", DE_V4, "--force"]);
    scene.daemon.ok(&["unblock", "DE"]);
    assert!(
        as_ssh(&scene, DE_V4, &["db", "reload", "--db", v4, "--force"])
            .status
            .success()
    );
    assert_eq!(verdict(&scene, DE_V4), "drop");
}

/// Serves `body` once over HTTP on 127.0.0.1 in the server namespace (for `db update`); gives
/// up after 10 s. Returns the URL.
fn serve_once(scene: &Scene, body: &'static [u8]) -> (String, std::thread::JoinHandle<()>) {
    let listener = scene.pair.server.run_in(|| {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.set_nonblocking(true).expect("nonblocking");
        l
    });
    let url = format!("http://{}/v4.csv", listener.local_addr().unwrap());
    let thread = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let Ok((mut stream, _)) = listener.accept() else {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            };
            let _ = stream.set_nonblocking(false);
            let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
            let _ = stream.read(&mut [0u8; 4096]);
            let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(body);
            return;
        }
    });
    (url, thread)
}

/// Defect 9, `db update`: the reload it asks for is checked like any other change.
#[test]
fn db_update_does_not_load_a_database_that_drops_the_caller() {
    let scene = Scene::new(&[DE_V4], &["--block", "RU"]);
    let (url, server) = serve_once(&scene, b"46.114.0.0,46.114.255.255,RU\n");
    let dest = TempDir::new();
    let mut update = scene.daemon.cli_command(&[
        "db",
        "update",
        "--dest",
        dest.0.to_str().unwrap(),
        "--url",
        &url,
    ]);
    scene.pair.server.enter_network_only(&mut update);
    update.env("SSH_CONNECTION", format!("{DE_V4} 51234 {SERVER_V4} 22"));
    let out = update.output().expect("running db update");
    server.join().unwrap();
    assert_refused(&out, DE_V4, "db update");
    assert!(dest.0.join("v4.csv").exists(), "the download is stored");
    assert_eq!(verdict(&scene, DE_V4), "pass", "but not loaded");
    assert_eq!(scene.daemon.status().database.reloads, 0);
}

/// Waits (at most 10 s) until the daemon's log holds `needle` `times` times.
fn wait_for_log(scene: &Scene, needle: &str, times: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while scene.daemon.log().matches(needle).count() < times {
        assert!(
            Instant::now() < deadline,
            "no {needle:?} (x{times}) in the log within 10 s:\n{}",
            scene.daemon.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Defect 10: SIGHUP re-reads the databases (and is logged) instead of killing the daemon; a bad
/// file on SIGHUP is logged and the last good tables stay.
#[test]
fn sighup_reloads_the_databases_and_keeps_the_last_good_tables() {
    let mut scene = Scene::new(&[RU_V4, DE_V4], &["--block", "RU"]);
    let _http = HttpServer::start(&scene.pair, &[ip(SERVER_V4)]);
    let reachable = |scene: &Scene, src: &str| {
        curl(&scene.pair.client, ip(src), ip(SERVER_V4), 1)
            .status
            .success()
    };
    assert!(!reachable(&scene, RU_V4) && reachable(&scene, DE_V4));

    // Unchanged files: the daemon keeps running and filtering.
    scene.daemon.signal(libc::SIGHUP);
    wait_for_log(&scene, "database reloaded", 1);
    assert!(scene.daemon.is_running(), "SIGHUP killed the daemon");
    assert!(
        scene.daemon.log().contains("SIGHUP"),
        "{}",
        scene.daemon.log()
    );
    assert!(!reachable(&scene, RU_V4) && reachable(&scene, DE_V4));

    // The operator's database now places the RU range in NL: SIGHUP picks that up.
    let v4 = scene.db_dir.0.join("v4.csv");
    let original = std::fs::read_to_string(&v4).unwrap();
    std::fs::write(
        &v4,
        original.replace("5.45.192.0,5.45.255.255,RU", "5.45.192.0,5.45.255.255,NL"),
    )
    .unwrap();
    scene.daemon.signal(libc::SIGHUP);
    wait_for_log(&scene, "database reloaded", 2);
    assert!(
        reachable(&scene, RU_V4),
        "the reloaded table places it in NL"
    );
    assert_eq!(scene.daemon.why(RU_V4).country.as_deref(), Some("NL"));

    // A broken file: logged, the last good tables stay, the daemon carries on.
    std::fs::write(&v4, "5.45.192.0,5.45.255.255,RU\nthis is not a range\n").unwrap();
    scene.daemon.signal(libc::SIGHUP);
    wait_for_log(&scene, "SIGHUP reload failed", 1);
    assert!(scene.daemon.is_running());
    let log = scene.daemon.log();
    let failure = log
        .lines()
        .find(|l| l.contains("SIGHUP reload failed"))
        .unwrap();
    assert!(
        failure.contains("v4.csv"),
        "the error names the file: {failure}"
    );
    assert_eq!(scene.daemon.why(RU_V4).country.as_deref(), Some("NL"));
    assert!(reachable(&scene, RU_V4) && reachable(&scene, DE_V4));
    let status = scene.daemon.status();
    assert_eq!(status.database.reloads, 2, "{status:?}");
    assert_eq!(status.database.reload_failures, 1, "{status:?}");

    // A signal carries no caller: the sessions that made changes are protected instead.
    assert!(as_ssh(&scene, DE_V4, &["block", "CN"]).status.success());
    std::fs::write(
        &v4,
        original.replace(
            "46.114.0.0,46.114.255.255,DE",
            "46.114.0.0,46.114.255.255,RU",
        ),
    )
    .unwrap();
    scene.daemon.signal(libc::SIGHUP);
    wait_for_log(&scene, "SIGHUP reload failed", 2);
    let log = scene.daemon.log();
    let refusal = log
        .lines()
        .rfind(|l| l.contains("SIGHUP reload failed"))
        .unwrap();
    assert!(
        refusal.contains("refused") && refusal.contains(DE_V4),
        "{refusal}"
    );
    assert!(
        reachable(&scene, DE_V4),
        "the session's address still passes"
    );
}

/// Defect 11: `why` names the exception that decided (its CIDR and action), and the port scope
/// its country verdict holds for.
#[test]
fn why_names_the_exception_or_port_scope_that_decided() {
    let scene = Scene::new(&[DE_V4], &[]);
    let _http = HttpServer::start(&scene.pair, &[ip(SERVER_V4)]);
    scene.daemon.ok(&["except", "add", "--drop", DE_V4]);
    let answer = scene.daemon.why(DE_V4);
    let reason = &answer.reason;
    assert!(
        reason.contains("exception 46.114.1.1/32 (drop) decides") && reason.ends_with("-> drop"),
        "{answer:?}"
    );
    let exception = answer.exception.expect("the exception that decided");
    assert_eq!(exception.cidr.to_string(), "46.114.1.1/32", "{answer:?}");
    assert_eq!(exception.action, ExceptionAction::Drop, "{answer:?}");
    assert!(
        !curl(&scene.pair.client, ip(DE_V4), ip(SERVER_V4), 1)
            .status
            .success(),
        "and the program agrees"
    );

    scene.daemon.ok(&["except", "del", DE_V4]);
    scene.daemon.ok(&["block", "DE"]);
    scene.daemon.ok(&["ports", "set", "--exempt", "tcp:22"]);
    let answer = scene.daemon.why(DE_V4);
    assert!(
        answer
            .reason
            .contains("DE is blocked (deny list), for packets in the port scope (exempt: tcp:22"),
        "{answer:?}"
    );
    assert!(answer.exception.is_none(), "{answer:?}");
    // The human form names the exception too.
    scene.daemon.ok(&["except", "add", "46.114.0.0/16"]);
    let text = scene.daemon.ok(&["why", DE_V4]);
    assert!(
        text.contains("exception 46.114.0.0/16 (pass) decides") && text.contains("-> pass"),
        "{text}"
    );
}
