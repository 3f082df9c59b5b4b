//! Databases end to end: the embedded default, `db update` from a local HTTP server inside a test
//! namespace, and a corpus of bad files that `db check` refuses with file, line and text, and
//! that a running daemon refuses to load while it keeps filtering as before.
//!
//! Every answer about the live filter comes from the loaded XDP program: `geofilter why` (a
//! BPF_PROG_TEST_RUN probe against the live maps) and real UDP through the veth pair.

use std::{
    collections::HashMap,
    io::{Read, Write},
    net::{SocketAddr, TcpListener},
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use geofilter_daemon::{
    control::protocol::{ReloadReply, wire_name},
    country::code_str,
    geoip::embedded,
};
use geofilter_tests::{
    daemon::{Daemon, binary, offline as geofilter, output_text as text},
    netns::{Netns, Pair},
    require_root,
    scenario::{DE_V4, DE_V6, RU_V4, RU_V6, Scene, TempDir, ip, server_for},
    traffic::{UdpSink, send_udp},
};
use serde_json::Value;

/// What the live program says about one address: (country or "unknown", verdict).
fn why(daemon: &Daemon, addr: &str) -> (String, String) {
    let v = daemon.why(addr);
    (
        v.country.unwrap_or_else(|| "unknown".to_owned()),
        wire_name(&v.verdict),
    )
}

fn assert_why(daemon: &Daemon, addr: &str, country: &str, verdict: &str, when: &str) {
    let got = why(daemon, addr);
    assert_eq!(
        got,
        (country.to_owned(), verdict.to_owned()),
        "{when}: why {addr}\ndaemon log:\n{}",
        daemon.log()
    );
}

/// Reloads the scene's own database files, which must succeed.
fn reload_scene_files(scene: &Scene) {
    let (v4, v6) = (scene.db_dir.0.join("v4.csv"), scene.db_dir.0.join("v6.csv"));
    scene.daemon.ok(&[
        "db",
        "reload",
        "--db",
        v4.to_str().unwrap(),
        "--db",
        v6.to_str().unwrap(),
    ]);
}

/// Sends UDP from every source and checks which arrive: all of `allowed`, none of `blocked`.
fn assert_traffic(pair: &Pair, blocked: &[&str], allowed: &[&str]) {
    const N: u64 = 50;
    let servers = [
        ip(geofilter_tests::netns::SERVER_V4),
        ip(geofilter_tests::netns::SERVER_V6),
    ];
    let sink = UdpSink::bind(&pair.server, &servers);
    for src in blocked.iter().chain(allowed) {
        send_udp(&pair.client, ip(src), server_for(src), N);
    }
    let got = sink.collect(Duration::from_millis(500));
    for src in blocked {
        assert_eq!(
            got.get(&ip(src)).copied().unwrap_or(0),
            0,
            "datagrams from blocked {src} arrived"
        );
    }
    for src in allowed {
        assert_eq!(
            got.get(&ip(src)).copied().unwrap_or(0),
            N,
            "datagrams from allowed {src}"
        );
    }
}

// ---------------------------------------------------------------------------------------------

#[test]
fn the_embedded_database_is_the_default() {
    require_root();
    // What the embedded data says about the test's addresses (checked first, so a data refresh
    // that moves them fails here with a clear message rather than as a traffic surprise).
    let db = embedded::load().expect("embedded database");
    let country = |a: &str| db.lookup(ip(a)).map(|p| code_str(p.info.country));
    let (ru_v4, ru_v6, de_v4, de_v6) = ("77.88.8.8", RU_V6, DE_V4, DE_V6);
    for (a, want) in [(ru_v4, "RU"), (ru_v6, "RU"), (de_v4, "DE"), (de_v6, "DE")] {
        assert_eq!(
            country(a).as_deref(),
            Some(want),
            "embedded database at {a}"
        );
    }
    let label = embedded::meta().label();
    assert!(
        label.starts_with("embedded geo-whois-asn-country "),
        "{label}"
    );

    // `db info` needs no daemon.
    let out = geofilter(&["db", "info", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let info: Value = serde_json::from_slice(&out.stdout).expect("db info --json");
    assert_eq!(info["sources"][0]["source"], label.as_str());
    assert_eq!(info["sources"][0]["format"], "embedded");
    assert_eq!(info["prefixes_v4"].as_u64(), Some(db.v4.len() as u64));
    assert_eq!(info["prefixes_v6"].as_u64(), Some(db.v6.len() as u64));
    let stale = info["sources"][0]["age_days"].as_u64().expect("age") > 90;
    assert_eq!(
        info["warnings"].as_array().map(|w| !w.is_empty()),
        Some(stale)
    );
    let out = geofilter(&["db", "info"]);
    assert!(out.status.success(), "{}", text(&out));
    let human = String::from_utf8_lossy(&out.stdout);
    assert!(
        human.contains(&format!("source: {label} (embedded)")),
        "{human}"
    );
    assert!(human.contains("licence: CC BY 4.0"), "{human}");
    assert_eq!(human.contains("WARNING: "), stale, "{human}");

    // `run` with no --db anywhere.
    let pair = Pair::new();
    for a in [ru_v4, ru_v6, de_v4, de_v6] {
        pair.add_source(ip(a));
    }
    let daemon = Daemon::start(&pair.server, &["--iface", &pair.server_if, "--block", "RU"]);
    let status = daemon.status();
    assert!(status.database.paths.is_empty(), "{status:?}");
    assert_eq!(
        status.database.sources[0].path.to_str(),
        Some(label.as_str()),
        "{status:?}"
    );
    assert_eq!(status.database.prefixes_v4, db.v4.len());
    let human = daemon.ok(&["status"]);
    assert!(human.contains(&format!("from {label}")), "{human}");

    assert_why(&daemon, ru_v4, "RU", "drop", "embedded");
    assert_why(&daemon, ru_v6, "RU", "drop", "embedded");
    assert_why(&daemon, de_v4, "DE", "pass", "embedded");
    assert_why(
        &daemon,
        "10.1.2.3",
        "unknown",
        "pass",
        "embedded, private space",
    );
    assert_traffic(&pair, &[ru_v4, ru_v6], &[de_v4, de_v6]);

    // Reloading with no files reloads the embedded database.
    let v: ReloadReply = daemon.cli_typed(&["db", "reload"]);
    assert_eq!(v.prefixes_v4, db.v4.len(), "{v:?}");
    assert_eq!(v.prefixes_v6, db.v6.len(), "{v:?}");
    assert_why(
        &daemon,
        ru_v4,
        "RU",
        "drop",
        "after reloading the embedded database",
    );
    let answer = daemon.why(ru_v4);
    assert_eq!(
        answer.source.as_deref(),
        Some(label.as_str()),
        "why names the embedded source: {answer:?}"
    );

    // Switch to a file that moves the address to NL, and back to the embedded database.
    let dir = geofilter_tests::scenario::TempDir::new();
    let moved = dir.0.join("moved.csv");
    std::fs::write(&moved, "77.88.0.0,77.88.63.255,NL\n").unwrap();
    daemon.ok(&["db", "reload", "--db", moved.to_str().unwrap()]);
    assert_why(&daemon, ru_v4, "NL", "pass", "from the file");
    daemon.ok(&["db", "reload", "--embedded"]);
    assert_why(
        &daemon,
        ru_v4,
        "RU",
        "drop",
        "back on the embedded database",
    );
    assert!(daemon.status().database.paths.is_empty());
}

// ---------------------------------------------------------------------------------------------

/// What the test server answers for a path.
#[derive(Clone)]
enum Reply {
    Ok(Vec<u8>),
    Status(u16),
    /// Declares `declared` bytes, sends `body`, then closes: a transfer cut short.
    Short {
        declared: usize,
        body: Vec<u8>,
    },
}

/// A tiny HTTP/1.1 file server on 127.0.0.1 inside a test namespace, serving what the test puts
/// in it. Bounded: stops on drop, and after five minutes in any case.
struct FileServer {
    addr: SocketAddr,
    files: Arc<Mutex<HashMap<String, Reply>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FileServer {
    fn start(ns: &Netns) -> Self {
        let listener = ns.run_in(|| {
            let l = TcpListener::bind("127.0.0.1:0").expect("bind the test HTTP server");
            l.set_nonblocking(true).expect("nonblocking");
            l
        });
        let addr = listener.local_addr().expect("local addr");
        let files: Arc<Mutex<HashMap<String, Reply>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (files, stop) = (files.clone(), stop.clone());
            std::thread::spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(300);
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    match listener.accept() {
                        Ok((stream, _)) => serve(stream, &files),
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            })
        };
        Self {
            addr,
            files,
            stop,
            thread: Some(thread),
        }
    }

    fn put(&self, path: &str, reply: Reply) -> String {
        self.files.lock().unwrap().insert(path.to_owned(), reply);
        format!("http://{}{path}", self.addr)
    }
}

fn serve(mut stream: std::net::TcpStream, files: &Mutex<HashMap<String, Reply>>) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut request = Vec::new();
    let mut buf = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 16 * 1024 {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&buf[..n]),
        }
    }
    let line = String::from_utf8_lossy(&request);
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_owned();
    let reply = files
        .lock()
        .unwrap()
        .get(&path)
        .cloned()
        .unwrap_or(Reply::Status(404));
    let (status, declared, body) = match reply {
        Reply::Ok(body) => (200, body.len(), body),
        Reply::Status(code) => (code, 0, Vec::new()),
        Reply::Short { declared, body } => (200, declared, body),
    };
    let head = format!(
        "HTTP/1.1 {status} X\r\nContent-Length: {declared}\r\nContent-Type: \
         application/octet-stream\r\nConnection: close\r\n\r\n"
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(&body);
}

impl Drop for FileServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut child = Command::new("gzip")
        .arg("-c")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("running gzip");
    let mut stdin = child.stdin.take().expect("stdin");
    let data = data.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&data));
    let out = child.wait_with_output().expect("gzip output");
    writer
        .join()
        .expect("gzip writer")
        .expect("writing to gzip");
    assert!(out.status.success(), "gzip failed");
    out.stdout
}

/// Pseudo-random bytes (a fixed xorshift sequence).
fn junk(n: usize) -> Vec<u8> {
    let mut x = 0x2545_f491_4f6c_dd1d_u64;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Every file in `dir` with its content.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut all: Vec<_> = std::fs::read_dir(dir)
        .expect("listing the destination")
        .map(|e| {
            let p = e.expect("entry").path();
            let content = std::fs::read(&p).unwrap_or_default();
            (p, content)
        })
        .collect();
    all.sort();
    all
}

#[test]
fn db_update_fetches_validates_stores_and_reloads() {
    // RU until the update, DE after it; and an address that becomes RU.
    const MOVES_TO_DE: &str = RU_V4; // 5.45.200.7
    const BECOMES_RU: &str = "198.51.100.7";
    let scene = Scene::new(&[MOVES_TO_DE, BECOMES_RU, DE_V4], &["--block", "RU"]);
    let daemon = &scene.daemon;
    assert_why(daemon, MOVES_TO_DE, "RU", "drop", "before the update");
    assert_why(daemon, BECOMES_RU, "unknown", "pass", "before the update");

    let server = FileServer::start(&scene.pair.server);
    let dest = TempDir::new();
    let dest_str = dest.0.to_str().expect("UTF-8 temp path");
    // `db update` runs in the server's namespace, where the HTTP server is.
    let update_with = |extra: &[&str], urls: &[&str]| -> Output {
        let mut args = vec!["db", "update", "--dest", dest_str];
        args.extend(extra);
        for u in urls {
            args.extend(["--url", u]);
        }
        let mut command = daemon.cli_command(&args);
        scene.pair.server.enter_network_only(&mut command);
        command
            .env("GEOFILTER_LOG", "warn")
            .output()
            .expect("running db update")
    };
    let update = |urls: &[&str]| update_with(&[], urls);

    let new_v4 = b"5.45.192.0,5.45.255.255,DE\n46.114.0.0,46.114.255.255,DE\n198.51.100.0,198.51.100.255,RU\n";
    let new_v6 = b"2a02:6b8::,2a02:6b8:ffff:ffff:ffff:ffff:ffff:ffff,RU\n";
    let v4_url = server.put("/data/world-v4.csv", Reply::Ok(new_v4.to_vec()));
    let v6_gz = gzip(new_v6);
    let v6_url = server.put("/data/world-v6.csv.gz", Reply::Ok(v6_gz.clone()));
    let out = update(&[&v4_url, &v6_url]);
    assert!(
        out.status.success(),
        "db update: {}\ndaemon log:\n{}",
        text(&out),
        daemon.log()
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("daemon reloaded"), "{stdout}");
    let stored = [dest.0.join("world-v4.csv"), dest.0.join("world-v6.csv.gz")];
    assert_eq!(std::fs::read(&stored[0]).unwrap(), new_v4);
    assert_eq!(
        std::fs::read(&stored[1]).unwrap(),
        v6_gz,
        "stored as served (gzip'd)"
    );
    let status = daemon.status();
    assert_eq!(status.database.paths, stored, "{status:?}");
    assert_why(daemon, MOVES_TO_DE, "DE", "pass", "after the update");
    assert_why(daemon, BECOMES_RU, "RU", "drop", "after the update");
    assert_why(
        daemon,
        RU_V6,
        "RU",
        "drop",
        "after the update (gzip'd IPv6 file)",
    );
    assert_eq!(
        snapshot(&dest.0).len(),
        2,
        "only the two files, no staging left"
    );
    let good = snapshot(&dest.0);
    let reloads = status.database.reloads;

    // Bad downloads: each is refused, nothing in the destination changes, the daemon is not
    // asked to reload and keeps filtering with the new tables.
    let half = v6_gz.len() / 2;
    let bad: Vec<(&str, Reply, &str, &[&str])> = vec![
        (
            "truncated gzip (served whole, cut in half)",
            Reply::Ok(v6_gz[..half].to_vec()),
            "world-v6.csv.gz",
            &[
                "not a valid database",
                "nothing was replaced",
                "read failed",
            ],
        ),
        (
            "binary junk",
            Reply::Ok(junk(50_000)),
            "world-v4.csv",
            &["not a valid database", "not a text file"],
        ),
        (
            "an HTML error page with status 200",
            Reply::Ok(b"<html><body>Please log in</body></html>\n".to_vec()),
            "world-v4.csv",
            &["not a valid database", "cannot detect the database format"],
        ),
        (
            "an invalid country code on line 2",
            Reply::Ok(b"5.45.192.0,5.45.255.255,DE\n198.51.100.0,198.51.100.255,Q1\n".to_vec()),
            "world-v4.csv",
            &["world-v4.csv:2: invalid country code \"Q1\""],
        ),
        (
            "HTTP 404",
            Reply::Status(404),
            "world-v4.csv",
            &["HTTP 404"],
        ),
        (
            "a transfer cut short",
            Reply::Short {
                declared: new_v4.len() * 10,
                body: new_v4.to_vec(),
            },
            "world-v4.csv",
            &["fetching http://"],
        ),
    ];
    for (what, reply, name, expect) in bad {
        let url = server.put(&format!("/bad/{name}"), reply);
        // The good file of the other family goes along, so a set is refused as a whole.
        let other = if name.starts_with("world-v4") {
            &v6_url
        } else {
            &v4_url
        };
        let out = update(&[other, &url]);
        assert!(
            !out.status.success(),
            "{what}: db update succeeded: {}",
            text(&out)
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        for e in expect {
            assert!(
                stderr.contains(e),
                "{what}: expected {e:?} in:\n{}",
                text(&out)
            );
        }
        assert_eq!(snapshot(&dest.0), good, "{what}: the destination changed");
        assert_why(daemon, BECOMES_RU, "RU", "drop", what);
        assert_why(daemon, MOVES_TO_DE, "DE", "pass", what);
    }
    let status = daemon.status();
    assert_eq!(status.database.reloads, reloads, "{status:?}");

    // `--no-reload`: a good set is stored, but the running daemon is left alone.
    let later_v4 = b"5.45.192.0,5.45.255.255,DE\n198.51.100.0,198.51.100.255,DE\n";
    let later_url = server.put("/later/world-v4.csv", Reply::Ok(later_v4.to_vec()));
    let out = update_with(&["--no-reload"], &[&later_url, &v6_url]);
    assert!(
        out.status.success(),
        "db update --no-reload: {}",
        text(&out)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        !stdout.contains("reloaded") && !stdout.contains("no daemon"),
        "--no-reload: {stdout}"
    );
    assert_eq!(std::fs::read(&stored[0]).unwrap(), later_v4);
    let status = daemon.status();
    assert_eq!(
        status.database.reloads, reloads,
        "--no-reload reloaded: {status:?}"
    );
    assert_why(
        daemon,
        BECOMES_RU,
        "RU",
        "drop",
        "after db update --no-reload",
    );

    // Real packets agree with `why`.
    assert_traffic(&scene.pair, &[BECOMES_RU], &[MOVES_TO_DE, DE_V4]);
}

// ---------------------------------------------------------------------------------------------

/// One bad file: name, content, and what `db check` must say besides the file's path.
struct BadFile {
    name: &'static str,
    content: Vec<u8>,
    expect: Vec<&'static str>,
}

fn bad_corpus() -> Vec<BadFile> {
    let mmdb = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../geofilter-daemon/testdata/iptoasn-country/iptoasn-country-ipv4.mmdb"),
    )
    .expect("committed MMDB");
    let n = mmdb.len();
    let corrupt = |range: std::ops::Range<usize>, byte: u8| {
        let mut c = mmdb.clone();
        c[range].fill(byte);
        c
    };
    let slice = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join(
        "../geofilter-daemon/testdata/geo-whois-asn-country/geo-whois-asn-country-ipv4.slice.csv",
    ))
    .expect("committed slice");
    let gz = gzip(&slice);
    let mut long_second = b"1.2.3.0,1.2.3.255,DE\n".to_vec();
    long_second.extend(std::iter::repeat_n(b'7', 10 << 20));
    long_second.push(b'\n');
    let bad = |name, content: &[u8], expect: &[&'static str]| BadFile {
        name,
        content: content.to_vec(),
        expect: expect.to_vec(),
    };
    vec![
        bad(
            "truncated.mmdb",
            &mmdb[..n / 2],
            &["not a valid MaxMind DB file", "metadata"],
        ),
        bad(
            "corrupt-tree.mmdb",
            &corrupt(1000..3000, 0xff),
            &["not a valid MaxMind DB file"],
        ),
        bad(
            "corrupt-data.mmdb",
            &corrupt(n - 200_000..n - 190_000, 0xee),
            &["not a valid MaxMind DB file"],
        ),
        bad(
            "corrupt-metadata.mmdb",
            &corrupt(n - 150..n - 100, 0),
            &["not a valid MaxMind DB file"],
        ),
        bad(
            "bad-address.csv",
            b"1.2.3.0,1.2.3.255,DE\n1.2.4.0,1.2.4.999,DE\n",
            &[":2: bad end address \"1.2.4.999\" in \"1.2.4.0,1.2.4.999,DE\""],
        ),
        bad(
            "bad-ipv6.csv",
            b"2001:db8::,2001:db8::ffff,DE\n2001:db8:1::,2001:db8:1::g,DE\n",
            &[":2: bad end address \"2001:db8:1::g\""],
        ),
        bad(
            "reversed.csv",
            b"1.2.3.255,1.2.3.0,DE\n",
            &[":1: start 1.2.3.255 is after end 1.2.3.0 in \"1.2.3.255,1.2.3.0,DE\""],
        ),
        bad(
            "invalid-code.csv",
            b"1.2.3.0,1.2.3.255,DE\n1.2.4.0,1.2.4.255,Q1\n",
            &[":2: invalid country code \"Q1\" in \"1.2.4.0,1.2.4.255,Q1\""],
        ),
        bad(
            "mixed-families.csv",
            b"1.2.3.0,2001:db8::1,DE\n",
            &[":1: start 1.2.3.0 and end 2001:db8::1 are of different address families"],
        ),
        bad("empty.csv", b"", &["no data lines"]),
        bad(
            "comments-only.csv",
            b"# nothing here\n\n",
            &["no data lines"],
        ),
        bad("junk.bin", &junk(100_000), &["not a text file"]),
        bad(
            "ten-mb-line.csv",
            &vec![b'1'; 10 << 20],
            &["not a text file: line 1 is longer than 65536 bytes"],
        ),
        bad(
            "ten-mb-second-line.csv",
            &long_second,
            &[":2: line is longer than 65536 bytes"],
        ),
        bad(
            "not-utf8.csv",
            b"1.2.3.0,1.2.3.255,DE\n1.2.4.0,1.2.4.255,\xff\xfe\n",
            &[":2: not UTF-8 text"],
        ),
        bad(
            "truncated.csv.gz",
            &gz[..gz.len() / 2],
            &["read failed", "truncated or corrupt"],
        ),
        bad(
            "geoip",
            b"# tor\n16777216,16777471,AU\n16777472,abc,CN\n",
            &["geoip:3: bad end address \"abc\""],
        ),
        bad(
            "delegated-test-extended-latest",
            b"2|test|1|1|1|1|+0000\nripencc|DE|ipv4|5.44.248.0|768|20121009|allocated|x\n\
              ripencc|DE|ipv4|5.44.300.0|768|20121009|allocated|x\n",
            &[":3: bad start address \"5.44.300.0\""],
        ),
        bad(
            "maxmind/GeoLite2-Country-Locations-en.csv",
            b"geoname_id,locale_code,continent_code,continent_name,country_iso_code\n\
              2921044,en,EU,Europe,DE\n",
            &[],
        ),
        bad(
            "maxmind/GeoLite2-Country-Blocks-IPv4.csv",
            b"network,geoname_id,registered_country_geoname_id\n1.0.0.0/24,2921044,\n\
              1.0.1.0/33,2921044,\n",
            &[":3: bad network \"1.0.1.0/33\""],
        ),
        bad(
            "maxmind-alone/GeoLite2-Country-Blocks-IPv6.csv",
            b"network,geoname_id,registered_country_geoname_id\n2001:db8::/32,2921044,\n",
            &["needs its *-Locations-en.csv file beside it"],
        ),
        bad(
            "de.zone",
            b"5.45.192.0/18\n5.45.0.0-5.45.1.0\n",
            &["de.zone:2: bad network \"5.45.0.0-5.45.1.0\""],
        ),
    ]
}

#[test]
fn bad_files_are_refused_and_the_daemon_keeps_blocking() {
    let scene = Scene::new(&[RU_V4, DE_V4, RU_V6, DE_V6], &["--block", "RU"]);
    let daemon = &scene.daemon;
    let dir = TempDir::new();
    let corpus = bad_corpus();
    for f in &corpus {
        let path = dir.0.join(f.name);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("corpus subfolder");
        std::fs::write(&path, &f.content).expect("writing a bad file");
    }
    // Files with no expectation are companions (the Locations file of a Blocks file).
    let corpus: Vec<&BadFile> = corpus.iter().filter(|f| !f.expect.is_empty()).collect();
    for f in &corpus {
        let path = dir.0.join(f.name);
        let p = path.to_str().expect("UTF-8 path");

        let out = geofilter(&["db", "check", p]);
        assert!(
            !out.status.success(),
            "db check accepted {}: {}",
            f.name,
            text(&out)
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(p),
            "{}: the error does not name the file:\n{stderr}",
            f.name
        );
        for e in &f.expect {
            assert!(
                stderr.contains(e),
                "{}: expected {e:?} in:\n{stderr}",
                f.name
            );
        }

        let out = daemon.cli(&["db", "reload", "--db", p]);
        assert!(
            !out.status.success(),
            "the daemon loaded {}: {}",
            f.name,
            text(&out)
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("database not reloaded, the current tables stay"),
            "{}: {stderr}",
            f.name
        );
        assert!(stderr.contains(f.expect[0]), "{}: {stderr}", f.name);
        assert_why(daemon, RU_V4, "RU", "drop", f.name);
        assert_why(daemon, DE_V6, "DE", "pass", f.name);
    }
    let status = daemon.status();
    assert_eq!(
        status.database.reload_failures,
        corpus.len() as u64,
        "{status:?}"
    );
    assert_eq!(status.database.reloads, 0, "{status:?}");
    assert_traffic(&scene.pair, &[RU_V4, RU_V6], &[DE_V4, DE_V6]);

    // `db check` goes through every file and says which are fine.
    let good = scene.db_dir.0.join("v4.csv");
    let bad = dir.0.join("reversed.csv");
    let out = geofilter(&["db", "check", good.to_str().unwrap(), bad.to_str().unwrap()]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("{}: ok", good.display())));
    assert!(String::from_utf8_lossy(&out.stderr).contains("1 of 2 database file(s) invalid"));
    // And a good reload still works afterwards.
    reload_scene_files(&scene);
    assert_why(daemon, RU_V4, "RU", "drop", "after a good reload");
}

// ---------------------------------------------------------------------------------------------

/// What one run of the real binary cost: its output, wall time and peak resident memory.
struct Measured {
    out: Output,
    elapsed: Duration,
    peak_rss: u64,
}

/// A peak above this for reading a file of at most a few KiB means the reader expanded it.
const HOSTILE_PEAK_RSS: u64 = 96 << 20;

/// Runs `geofilter <args>` under `/usr/bin/time`, which reports that one process's peak
/// resident size. Not getrusage/wait4 from here: exec(2) folds the old address space's peak
/// into the new program's `ru_maxrss`, so a child of this (large, multi-test) process would
/// report this process's peak. The child may use at most 2 GiB of address space (`ulimit -v`,
/// then exec), so a reader that expands a hostile file fails the test quickly instead of
/// exhausting the host.
fn geofilter_measured(args: &[&str]) -> Measured {
    let time = Path::new("/usr/bin/time");
    assert!(
        time.is_file(),
        "this test measures peak memory with /usr/bin/time (Debian package `time`)"
    );
    let dir = TempDir::new();
    let report = dir.0.join("maxrss");
    let started = Instant::now();
    let mut child = Command::new(time)
        .arg("-f")
        .arg("%M")
        .arg("-o")
        .arg(&report)
        .args(["sh", "-c", "ulimit -v 2097152 && exec \"$0\" \"$@\""])
        .arg(binary())
        .args(args)
        .env("GEOFILTER_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running geofilter under /usr/bin/time");
    // Bounded: a reader blocked for good (a FIFO) is killed after 30 s.
    let deadline = started + Duration::from_secs(30);
    while child.try_wait().expect("waiting for geofilter").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("geofilter {} ran for over 30 s", args.join(" "));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let elapsed = started.elapsed();
    let out = child.wait_with_output().expect("geofilter output");
    let kib = std::fs::read_to_string(&report).unwrap_or_default();
    // `time` adds "Command exited with non-zero status N" before the number.
    let kib: u64 = kib
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("no peak in /usr/bin/time's report {kib:?}"));
    Measured {
        out,
        elapsed,
        peak_rss: kib * 1024,
    }
}

/// `db check` refuses `path` within a few seconds and a bounded peak, naming it and `expect`.
fn assert_check_refuses(path: &Path, expect: &str) {
    let p = path.to_str().expect("UTF-8 path");
    let m = geofilter_measured(&["db", "check", p]);
    let out = text(&m.out);
    assert!(!m.out.status.success(), "db check accepted {p}: {out}");
    let stderr = String::from_utf8_lossy(&m.out.stderr);
    assert!(
        stderr.contains(&format!("geofilter: invalid database: {p}")) && stderr.contains(expect),
        "{p}: expected {expect:?}: {out}"
    );
    assert!(
        m.elapsed < Duration::from_secs(10),
        "{p}: db check took {:?}",
        m.elapsed
    );
    assert!(
        m.peak_rss < HOSTILE_PEAK_RSS,
        "{p}: db check peaked at {} MiB (bound {} MiB)",
        m.peak_rss >> 20,
        HOSTILE_PEAK_RSS >> 20
    );
    eprintln!(
        "db check {p}: refused in {:?}, peak {} MiB",
        m.elapsed,
        m.peak_rss >> 20
    );
}

/// A reload of `path` is refused, and the daemon kept its tables and memory bounded.
fn assert_reload_refused(scene: &Scene, path: &Path, expect: &str) {
    let daemon = &scene.daemon;
    let p = path.to_str().expect("UTF-8 path");
    daemon.reset_peak_rss();
    let started = Instant::now();
    let out = daemon.cli(&["db", "reload", "--db", p]);
    let elapsed = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "the daemon loaded {p}: {}",
        text(&out)
    );
    assert!(
        stderr.contains("database not reloaded, the current tables stay")
            && stderr.contains(expect),
        "{p}: expected {expect:?}: {stderr}"
    );
    assert!(
        elapsed < Duration::from_secs(10),
        "{p}: reload took {elapsed:?}"
    );
    let peak = daemon.peak_rss_bytes();
    assert!(
        peak < HOSTILE_PEAK_RSS,
        "{p}: the daemon peaked at {} MiB while refusing it",
        peak >> 20
    );
    assert_why(daemon, RU_V4, "RU", "drop", p);
    assert_why(daemon, DE_V6, "DE", "pass", p);
}

#[test]
fn mmdb_graphs_are_refused_quickly_with_bounded_memory() {
    use geofilter_daemon::geoip::mmdb_writer::Writer;
    let dir = TempDir::new();
    let mut files = Vec::new();
    for (version, levels) in [(4, 24), (4, 32), (6, 128)] {
        let bytes = Writer::dag(version, levels);
        assert!(bytes.len() <= 1024, "{} bytes", bytes.len());
        let path = dir.0.join(format!("dag-v{version}-{levels}.mmdb"));
        std::fs::write(&path, &bytes).expect("writing the DAG");
        assert_check_refuses(&path, "not a valid MaxMind DB file: its search tree of");
        files.push(path);
    }
    let scene = Scene::new(&[RU_V4, DE_V4, RU_V6, DE_V6], &["--block", "RU"]);
    for path in &files {
        assert_reload_refused(&scene, path, "search tree of");
    }
    assert_traffic(&scene.pair, &[RU_V4, RU_V6], &[DE_V4, DE_V6]);
}

#[test]
fn special_and_oversized_files_are_refused_without_reading() {
    let dir = TempDir::new();
    let fifo = dir.0.join("fifo.mmdb");
    let c = std::ffi::CString::new(fifo.to_str().expect("UTF-8")).expect("no NUL");
    // SAFETY: a valid C string; mkfifo(3) only creates the node.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
    let zero = dir.0.join("zero.mmdb");
    std::os::unix::fs::symlink("/dev/zero", &zero).expect("symlink to /dev/zero");
    // Sparse: no disk space, but a size that reading would have to go through.
    let sparse = |name: &str, size: u64| {
        let path = dir.0.join(name);
        std::fs::File::create(&path)
            .and_then(|f| f.set_len(size))
            .expect("sparse file");
        path
    };
    let sparse_mmdb = sparse("sparse.mmdb", 2 << 30);
    let sparse_csv = sparse("sparse.csv", 3 << 30);
    let cases = [
        (&fifo, "is a FIFO (named pipe), not a regular file"),
        (&zero, "is a character device, not a regular file"),
        (
            &sparse_mmdb,
            "is 2048 MiB, more than the 1024 MiB a mmdb database may be",
        ),
        (
            &sparse_csv,
            "is 3072 MiB, more than the 2048 MiB a range-csv database may be",
        ),
    ];
    for (path, expect) in cases {
        assert_check_refuses(path, expect);
    }
    // A symbolic link to a regular file is fine.
    let scene = Scene::new(&[RU_V4, DE_V4, RU_V6, DE_V6], &["--block", "RU"]);
    let link = dir.0.join("link.csv");
    std::os::unix::fs::symlink(scene.db_dir.0.join("v4.csv"), &link).expect("symlink");
    let out = geofilter(&["db", "check", link.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));

    for (path, expect) in cases {
        assert_reload_refused(&scene, path, expect);
    }
    let status = scene.daemon.status();
    assert_eq!(
        status.database.reload_failures,
        cases.len() as u64,
        "{status:?}"
    );
    assert_traffic(&scene.pair, &[RU_V4, RU_V6], &[DE_V4, DE_V6]);
}

#[test]
fn reloads_run_one_at_a_time() {
    let scene = Scene::new(&[RU_V4, DE_V4, RU_V6, DE_V6], &["--block", "RU"]);
    let daemon = &scene.daemon;
    // 315,308 networks: long enough to load that four requests sent together overlap.
    let big = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../geofilter-daemon/testdata/iptoasn-country/iptoasn-country-ipv4.mmdb");
    let big = big.to_str().expect("UTF-8 path");
    // Measure from the same state each time: this database loaded, another load of it running.
    daemon.ok(&["db", "reload", "--db", big]);
    // What a load adds to the resident size it starts from.
    let reset = || {
        daemon.reset_peak_rss();
        daemon.peak_rss_bytes()
    };
    let base = reset();
    let started = Instant::now();
    daemon.ok(&["db", "reload", "--db", big]);
    let one = started.elapsed();
    let single_peak = daemon.peak_rss_bytes();
    let single = single_peak.saturating_sub(base);

    let base = reset();
    let children: Vec<_> = (0..4)
        .map(|_| {
            daemon
                .cli_command(&["db", "reload", "--db", big])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawning db reload")
        })
        .collect();
    let outs: Vec<Output> = children
        .into_iter()
        .map(|c| c.wait_with_output().expect("db reload"))
        .collect();
    let concurrent_peak = daemon.peak_rss_bytes();
    let concurrent = concurrent_peak.saturating_sub(base);
    let ok = outs.iter().filter(|o| o.status.success()).count();
    let busy = outs
        .iter()
        .filter(|o| String::from_utf8_lossy(&o.stderr).contains("a reload is in progress"))
        .count();
    let all: Vec<String> = outs.iter().map(text).collect();
    eprintln!(
        "one reload: {one:?}, peak {} MiB (+{} MiB); four at once: {ok} loaded, {busy} refused, \
         peak {} MiB (+{} MiB)",
        single_peak >> 20,
        single >> 20,
        concurrent_peak >> 20,
        concurrent >> 20
    );
    assert!(
        ok >= 1 && busy >= 1 && ok + busy == 4,
        "one load {one:?}; {ok} succeeded, {busy} refused as busy:\n{}",
        all.join("\n")
    );
    // One load at a time: four requests cost about what one does (allocator arenas make it
    // vary by some tens of MiB; four loads at once cost over three times one).
    assert!(
        concurrent < 2 * single,
        "four concurrent reloads added {} MiB, one added {} MiB",
        concurrent >> 20,
        single >> 20
    );
    // A request refused as busy read no database: it is not a failed reload.
    let status = daemon.status();
    assert_eq!(status.database.reload_failures, 0, "{status:?}");
    // The daemon is idle again: a reload of the scene's files goes through and filters.
    reload_scene_files(&scene);
    assert_why(daemon, RU_V4, "RU", "drop", "after the concurrent reloads");
    assert_traffic(&scene.pair, &[RU_V4, RU_V6], &[DE_V4, DE_V6]);
}

// ---------------------------------------------------------------------------------------------

/// Debian's `tor-geoipdb` (`/usr/share/tor/geoip{,6}`), fetched by the test itself with
/// `apt-get download` and unpacked with `dpkg-deb -x` into `target/tor-geoipdb/` (kept for the
/// next run): the real package's files, so CI needs nothing installed by hand. Fails, naming the
/// command, when the package cannot be fetched.
fn tor_geoipdb() -> (PathBuf, PathBuf) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/tor-geoipdb");
    let share = root.join("usr/share/tor");
    let files = (share.join("geoip"), share.join("geoip6"));
    if files.0.is_file() && files.1.is_file() {
        return files;
    }
    let download = root.join("download");
    std::fs::create_dir_all(&download).expect("target/tor-geoipdb/download");
    let run = |command: &mut Command| {
        let out = command.output().expect("running apt-get / dpkg-deb");
        assert!(
            out.status.success(),
            "{command:?} failed (this test needs Debian's tor-geoipdb from the apt sources): {}",
            text(&out)
        );
    };
    run(Command::new("apt-get")
        .args(["download", "tor-geoipdb"])
        .current_dir(&download));
    let deb = std::fs::read_dir(&download)
        .expect("download folder")
        .map(|e| e.expect("entry").path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .expect("apt-get download left no .deb");
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root));
    assert!(
        files.0.is_file() && files.1.is_file(),
        "{deb:?} has no geoip files"
    );
    files
}

/// Rows of a Tor geoip file: (1-based line, first address, code), comments skipped.
fn tor_rows(path: &Path) -> Vec<(usize, std::net::IpAddr, String)> {
    let content = std::fs::read_to_string(path).expect("reading a tor geoip file");
    content
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.starts_with('#') && !l.trim().is_empty())
        .map(|(i, l)| {
            let f: Vec<&str> = l.split(',').collect();
            let start = match f[0].parse::<u32>() {
                Ok(n) => std::net::IpAddr::V4(n.into()),
                Err(_) => f[0].parse().expect("a tor row's start address"),
            };
            (i + 1, start, f[2].to_owned())
        })
        .collect()
}

#[test]
fn debian_tor_geoipdb_loads_with_unassigned_codes_as_unknown() {
    require_root();
    let (geoip, geoip6) = tor_geoipdb();
    let (g4, g6) = (geoip.to_str().unwrap(), geoip6.to_str().unwrap());
    let rows4 = tor_rows(&geoip);
    let rows6 = tor_rows(&geoip6);
    // The row that made the whole load fail: two letters, but no ISO 3166-1 country.
    let os: Vec<_> = rows6.iter().filter(|r| r.2 == "OS").collect();
    assert_eq!(os.len(), 1, "the package's geoip6 has one OS row");
    let (os_line, os_addr, _) = os[0];

    let out = Command::new(binary())
        .args(["db", "check", g4, g6])
        .env("GEOFILTER_LOG", "warn")
        .output()
        .expect("db check");
    assert!(
        out.status.success(),
        "db check refused the package: {}",
        text(&out)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let warning = format!(
        "{g6}: country code OS is not assigned in ISO 3166-1 (seen 1 time(s), first at line \
         {os_line}); read as unknown"
    );
    assert!(
        stderr.contains(&warning),
        "expected {warning:?} in:\n{stderr}"
    );
    // One warning per code, not per row: CS has hundreds of rows in geoip.
    assert!(rows4.iter().filter(|r| r.2 == "CS").count() > 1);
    assert_eq!(stderr.matches("country code CS ").count(), 1, "{stderr}");

    // What the file says, against what the running filter answers.
    let expected = |code: &str| match geofilter_daemon::country::parse_database_code(code) {
        Some(id) if id != geofilter_common::UNKNOWN_COUNTRY => code_str(id),
        _ => "unknown".to_owned(),
    };
    let mut samples: Vec<(std::net::IpAddr, String)> = Vec::new();
    for rows in [&rows4, &rows6] {
        samples.extend(
            rows.iter()
                .step_by(rows.len() / 7)
                .map(|(_, addr, code)| (*addr, expected(code))),
        );
    }
    samples.push((*os_addr, "unknown".to_owned()));
    let ru = rows4.iter().find(|r| r.2 == "RU").expect("an RU row");
    samples.push((ru.1, "RU".to_owned()));

    let pair = Pair::new();
    let daemon = Daemon::start(
        &pair.server,
        &[
            "--iface",
            &pair.server_if,
            "--db",
            g4,
            "--db",
            g6,
            "--block",
            "RU",
        ],
    );
    assert!(
        daemon.log().contains(&warning),
        "the daemon does not warn about OS:\n{}",
        daemon.log()
    );
    for (addr, country) in &samples {
        let verdict = if country == "RU" { "drop" } else { "pass" };
        assert_why(&daemon, &addr.to_string(), country, verdict, "tor-geoipdb");
    }
    eprintln!(
        "tor-geoipdb: {} + {} rows; checked {} addresses: {samples:?}",
        rows4.len(),
        rows6.len(),
        samples.len(),
    );
}

#[test]
fn loads_beyond_the_table_budget_are_refused_while_reading() {
    // A 1 MiB budget: 21,845 ranges and 32,768 prefixes per family.
    let scene = Scene::new(
        &[RU_V4, DE_V4, RU_V6, DE_V6],
        &["--block", "RU", "--max-table-mib", "1"],
    );
    let dir = TempDir::new();
    // 30,000 single addresses: more ranges than the budget.
    let many = dir.0.join("many.csv");
    let lines: String = (0..30_000u32)
        .map(|i| {
            let a = std::net::Ipv4Addr::from(0x0a00_0000 | i << 8 | 1);
            format!("{a},{a},DE\n")
        })
        .collect();
    std::fs::write(&many, lines).expect("writing many.csv");
    // 300 unaligned IPv6 ranges of about 220 prefixes each: few ranges, too many prefixes.
    let wide = dir.0.join("wide.csv");
    let lines: String = (0x1000..0x1000 + 300u32)
        .map(|i| format!("{i:x}::1,{i:x}:ffff:ffff:ffff:ffff:ffff:ffff:fffe,DE\n"))
        .collect();
    std::fs::write(&wide, lines).expect("writing wide.csv");
    assert_reload_refused(
        &scene,
        &many,
        "many.csv:21846: more than 21845 IPv4 ranges, the most one load may read with a table \
         budget of 1 MiB (--max-table-mib)",
    );
    assert_reload_refused(
        &scene,
        &wide,
        "wide.csv: compile to more than 32768 IPv6 prefixes, the most a table budget of 1 MiB \
         (--max-table-mib) allows",
    );
    assert_traffic(&scene.pair, &[RU_V4, RU_V6], &[DE_V4, DE_V6]);
}

#[test]
fn db_update_asn_fetches_validates_stores_and_the_daemon_blocks_by_it() {
    const NET: &str = "198.51.100.7";
    let scene = Scene::new(&[NET, DE_V4], &[]);
    let daemon = &scene.daemon;
    let server = FileServer::start(&scene.pair.server);
    let dest = TempDir::new();
    let dest_str = dest.0.to_str().expect("UTF-8 temp path");
    let update = |urls: &[&str]| -> Output {
        let mut args = vec!["db", "update", "--asn", "--dest", dest_str];
        for u in urls {
            args.extend(["--url", u]);
        }
        let mut command = daemon.cli_command(&args);
        scene.pair.server.enter_network_only(&mut command);
        command
            .env("GEOFILTER_LOG", "warn")
            .output()
            .expect("running db update --asn")
    };
    // A malformed ASN file is refused naming its URL and line; nothing is stored.
    let bad_url = server.put(
        "/asn/bad-asn.csv",
        Reply::Ok(
            b"198.51.100.0,198.51.100.255,64500,Doc Net\n198.51.100.300,1.2.3.4,1,x\n".to_vec(),
        ),
    );
    let out = update(&[&bad_url]);
    assert!(!out.status.success());
    let err = text(&out);
    assert!(
        err.contains("bad-asn.csv") && err.contains("198.51.100.300"),
        "{err}"
    );
    assert!(!dest.0.join("bad-asn.csv").exists());

    let good = b"198.51.100.0,198.51.100.255,64500,\"Doc Net, Inc.\"\n".to_vec();
    let url = server.put("/asn/asn-ipv4.csv", Reply::Ok(good.clone()));
    let out = update(&[&url]);
    assert!(
        out.status.success(),
        "db update --asn: {}\n{}",
        text(&out),
        daemon.log()
    );
    assert_eq!(std::fs::read(dest.0.join("asn-ipv4.csv")).unwrap(), good);
    let why = daemon.why(NET);
    assert_eq!(why.asn, Some(64500), "{why:?}");
    assert_eq!(why.organisation.as_deref(), Some("Doc Net, Inc."));
    daemon.ok(&["block", "AS64500"]);
    assert_eq!(
        daemon.why(NET).verdict,
        geofilter_daemon::control::protocol::Outcome::Drop
    );
    assert_eq!(
        daemon.why(DE_V4).verdict,
        geofilter_daemon::control::protocol::Outcome::Pass
    );
    // The daemon keeps the stored files as its ASN databases across restarts.
    let saved = std::fs::read_to_string(daemon.state_file()).unwrap();
    assert!(saved.contains("asn-ipv4.csv"), "{saved}");
}
