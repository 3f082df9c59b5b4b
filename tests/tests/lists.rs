//! Blocklists fetched over real HTTP: `geofilter_daemon::lists` against the tests' HTTP server
//! (tests/src/policy_server.rs: ETag, Last-Modified, conditional requests, stop and restart) in a
//! namespace of the test's own. An update that is unchanged costs a 304; one that is malformed,
//! missing (404), too large, or whose server is dead keeps the last good addresses and the copy
//! on disk, with an error that names the list, the URL and the cause; a restart without the
//! server reads the copy.

use std::{fs, path::PathBuf};

use geofilter_daemon::lists::{ListAction, ListError, ListSource, ListSpec, Lists, MAX_LIST_BYTES};
use geofilter_tests::{netns::Netns, policy_server::PolicyServer, require_root, scenario::TempDir};

fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../geofilter-daemon/testdata/lists")
        .join(name);
    fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn ip(s: &str) -> std::net::IpAddr {
    s.parse().unwrap()
}

fn requests(server: &PolicyServer, status: u16) -> u64 {
    server.counts().get(&status).map_or(0, |c| c.requests)
}

#[test]
fn lists_fetch_conditionally_and_keep_the_last_good_copy() {
    require_root();
    let ns = Netns::new("gfl");
    let mut server = PolicyServer::start(&ns, "127.0.0.1:0".parse().unwrap());
    let state = TempDir::new();
    let cache = state.0.join("lists");
    let url = server.url("feeds/ipsum.txt");
    server.publish("feeds/ipsum.txt", fixture("ipsum.txt"));
    let mut lists = Lists::new(&cache);
    let spec = ListSpec {
        name: "ipsum".into(),
        source: ListSource::Url(url.clone()),
        action: ListAction::Drop,
        min_score: None,
        format: None,
    };
    let added = ns.run_in(|| lists.add(spec)).expect("add").clone();
    assert_eq!(
        added.prefixes, 4,
        "scores 3 and up: 192.0.2.10/31, 198.51.100.1/32, 198.51.100.2/32, 2001:db8::5/128"
    );
    let copy = cache.join("ipsum/ipsum.txt");
    assert_eq!(fs::read(&copy).unwrap(), fixture("ipsum.txt"));
    let good = lists.prefixes("ipsum").unwrap().clone();
    assert!(good.contains(ip("198.51.100.2")) && !good.contains(ip("203.0.113.5")));
    assert_eq!(requests(&server, 200), 1);

    // Unchanged: asked conditionally, answered 304, nothing read again.
    let r = ns.run_in(|| lists.update(None)).unwrap();
    assert_eq!(
        (r.unchanged.as_slice(), r.failed.len()),
        (&["ipsum".to_owned()][..], 0)
    );
    assert_eq!((requests(&server, 200), requests(&server, 304)), (1, 1));

    // Malformed: refused whole, naming list, URL, line and text; the copy and addresses stay.
    let mut bad = fixture("ipsum.txt");
    bad.extend_from_slice(b"198.51.100.300\t9\n");
    server.publish("feeds/ipsum.txt", bad);
    let r = ns.run_in(|| lists.update(Some("ipsum"))).unwrap();
    let e = r.failed.first().expect("a failure").to_string();
    assert_eq!(
        e,
        format!(
            "list ipsum ({url}): the list from {url} is not valid, nothing was replaced: \
             ipsum.txt:15: bad network \"198.51.100.300\" in \"198.51.100.300\\t9\""
        )
    );
    assert_eq!(lists.prefixes("ipsum"), Some(&good));
    assert_eq!(fs::read(&copy).unwrap(), fixture("ipsum.txt"));
    assert!(lists.show()[0].error.as_deref() == Some(e.as_str()));

    // A server error page, a 404, a file over the size limit: the same.
    server.publish(
        "feeds/ipsum.txt",
        "<html><body>503 Service Unavailable</body></html>\n",
    );
    let r = ns.run_in(|| lists.update(None)).unwrap();
    assert!(
        r.failed[0]
            .to_string()
            .contains(":1: bad network \"<html><body>503"),
        "{}",
        r.failed[0]
    );
    server.remove("feeds/ipsum.txt");
    let r = ns.run_in(|| lists.update(None)).unwrap();
    assert!(
        r.failed[0]
            .to_string()
            .ends_with(&format!("fetching {url}: the server answered HTTP 404")),
        "{}",
        r.failed[0]
    );
    let mut huge = b"192.0.2.1\t9\n".repeat(((MAX_LIST_BYTES / 12) + 1) as usize);
    huge.truncate(MAX_LIST_BYTES as usize + 1);
    server.publish("feeds/ipsum.txt", huge);
    let r = ns.run_in(|| lists.update(None)).unwrap();
    assert!(
        r.failed[0].to_string().contains("larger than 64 MiB"),
        "{}",
        r.failed[0]
    );
    assert_eq!(lists.prefixes("ipsum"), Some(&good));
    assert_eq!(fs::read(&copy).unwrap(), fixture("ipsum.txt"));
    assert!(
        !cache.join("ipsum").read_dir().unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with(".staging")),
        "no staging folder left behind"
    );

    // A good new version replaces it.
    let newer = b"# IPsum\n203.0.113.77\t6\n2001:db8::77\t3\n".to_vec();
    server.publish("feeds/ipsum.txt", newer.clone());
    let r = ns.run_in(|| lists.update(None)).unwrap();
    assert_eq!(r.changed, ["ipsum"]);
    let now = lists.prefixes("ipsum").unwrap().clone();
    assert!(now.contains(ip("203.0.113.77")) && !now.contains(ip("198.51.100.2")));
    assert_eq!(fs::read(&copy).unwrap(), newer);
    assert_eq!(lists.show()[0].error, None);

    // A dead server: refused, last good kept; and a restart without it reads the copy.
    server.stop();
    let r = ns.run_in(|| lists.update(None)).unwrap();
    let e = r.failed[0].to_string();
    assert!(
        e.starts_with(&format!("list ipsum ({url}): fetching {url}: ")),
        "{e}"
    );
    assert_eq!(lists.prefixes("ipsum"), Some(&now));
    let (restored, errors) = Lists::restore(&cache, lists.entries());
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(restored.prefixes("ipsum"), Some(&now));

    // Back up: the copy was kept, so the request is conditional again.
    server.resume();
    server.reset_counts();
    let r = ns.run_in(|| lists.update(None)).unwrap();
    assert_eq!(r.unchanged, ["ipsum"]);
    assert_eq!((requests(&server, 200), requests(&server, 304)), (0, 1));
    // Without the copy the validators are not sent: a whole fetch.
    fs::remove_file(&copy).unwrap();
    let r = ns.run_in(|| lists.update(None)).unwrap();
    assert_eq!(r.unchanged, ["ipsum"]);
    assert_eq!(requests(&server, 200), 1);
    assert_eq!(fs::read(&copy).unwrap(), newer);
}

#[test]
fn lists_from_urls_in_every_format_and_gzip() {
    require_root();
    let ns = Netns::new("gfl");
    let server = PolicyServer::start(&ns, "127.0.0.1:0".parse().unwrap());
    let state = TempDir::new();
    let mut lists = Lists::new(state.0.join("lists"));
    let mut gz = Vec::new();
    {
        use std::io::Write as _;
        let mut child = std::process::Command::new("gzip")
            .arg("-c")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("gzip");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(&fixture("firehol_level1.netset"))
            .unwrap();
        std::io::Read::read_to_end(&mut child.stdout.take().unwrap(), &mut gz).unwrap();
        assert!(child.wait().unwrap().success());
    }
    for (path, body, name, holds) in [
        ("drop.txt", fixture("drop.txt"), "drop", "198.51.101.1"),
        (
            "drop_v6.json",
            fixture("drop_v6.json"),
            "drop6",
            "2001:db8:2000::1",
        ),
        ("firehol_level1.netset.gz", gz, "firehol", "198.51.100.13"),
        ("mine.txt", fixture("mine.txt"), "mine", "198.18.0.1"),
    ] {
        server.publish(path, body);
        let spec = ListSpec {
            name: name.into(),
            source: ListSource::Url(server.url(path)),
            action: ListAction::Pass,
            min_score: None,
            format: None,
        };
        ns.run_in(|| lists.add(spec))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(lists.prefixes(name).unwrap().contains(ip(holds)), "{name}");
    }
    assert_eq!(lists.holding(ip("192.0.2.1")), ["drop", "firehol", "mine"]);
    let formats: Vec<String> = lists
        .show()
        .iter()
        .map(|r| r.format.map(|f| f.to_string()).unwrap_or_default())
        .collect();
    assert_eq!(
        formats,
        ["spamhaus-drop", "spamhaus-json", "netset", "spamhaus-drop"]
    );
    // A URL that never answered adds nothing.
    let spec = ListSpec {
        name: "gone".into(),
        source: ListSource::Url(server.url("gone.txt")),
        action: ListAction::Drop,
        min_score: None,
        format: None,
    };
    let e = ns.run_in(|| lists.add(spec)).unwrap_err();
    assert!(
        matches!(&e, ListError::List { name, .. } if name == "gone"),
        "{e}"
    );
    assert!(
        e.to_string().ends_with("the server answered HTTP 404"),
        "{e}"
    );
    assert!(lists.get("gone").is_none());
    assert!(!state.0.join("lists/gone").exists());
}
