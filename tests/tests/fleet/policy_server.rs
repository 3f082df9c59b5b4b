//! The fleet tests' HTTP source (tests/src/policy_server.rs) on its own, so what the daemons are
//! judged against is itself checked.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use geofilter_tests::{
    netns::Netns,
    policy_server::{PolicyServer, get_with, http_date, parse_http_date},
    require_root,
};

/// The test server itself: validators, conditional requests with RFC 9110's precedence, counts,
/// a restart on the same port, and the mode that never answers.
#[test]
fn policy_server_speaks_conditional_http() {
    require_root();
    assert_eq!(http_date(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT");
    for t in [0, 784_111_777, 951_782_400, 1_796_083_200, 4_107_542_399] {
        assert_eq!(parse_http_date(&http_date(t)), Some(t), "{}", http_date(t));
    }
    let ns = Netns::new("gfp");
    let mut server = PolicyServer::start(&ns, "127.0.0.1:0".parse().unwrap());
    let addr: SocketAddr = server.addr();
    let t = Duration::from_secs(5);
    let get = |headers: &[(&str, &str)]| get_with(&ns, addr, "p.toml", headers, t).expect("GET");
    server.publish("p.toml", "one");
    let first = get(&[]);
    assert_eq!((first.status, first.body.as_str()), (200, "one"));
    let etag = first.header("ETag").expect("ETag").to_owned();
    let modified = first
        .header("Last-Modified")
        .expect("Last-Modified")
        .to_owned();
    assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");
    assert!(parse_http_date(&modified).is_some(), "{modified}");
    assert_eq!(get(&[("If-None-Match", &etag)]).status, 304);
    assert_eq!(get(&[("If-None-Match", &format!("W/{etag}"))]).status, 304);
    assert_eq!(get(&[("If-Modified-Since", &modified)]).status, 304);
    // If-None-Match wins over If-Modified-Since (RFC 9110 §13.2.2).
    let other = get(&[("If-None-Match", "\"x\""), ("If-Modified-Since", &modified)]);
    assert_eq!((other.status, other.body.as_str()), (200, "one"));
    server.publish("p.toml", "two");
    let second = get(&[("If-None-Match", &etag), ("If-Modified-Since", &modified)]);
    assert_eq!((second.status, second.body.as_str()), (200, "two"));
    let later = second.header("Last-Modified").and_then(parse_http_date);
    assert!(
        later > parse_http_date(&modified),
        "Last-Modified must move on"
    );
    assert_eq!(
        get_with(&ns, addr, "missing", &[], t).expect("GET").status,
        404
    );
    let counts = server.counts();
    assert_eq!(counts[&200].requests, 3);
    assert_eq!(counts[&304].requests, 3);
    assert_eq!(counts[&404].requests, 1);
    assert!(counts[&304].bytes_out > 0 && counts[&304].bytes_out < counts[&200].bytes_out);

    server.stop();
    assert!(get_with(&ns, addr, "p.toml", &[], t).is_err(), "stopped");
    server.resume();
    assert_eq!(server.addr(), addr, "the same address after a restart");
    assert_eq!(get(&[]).body, "two");
    server.set_hang(true);
    let asked = Instant::now();
    let hung = get_with(&ns, addr, "p.toml", &[], Duration::from_millis(500));
    assert!(hung.is_err(), "a hung server answered");
    assert!(asked.elapsed() >= Duration::from_millis(450));
    server.set_hang(false);
    assert_eq!(get(&[]).status, 200);
}
