//! The registry over local files: add, show, update (changed, unchanged, malformed, missing),
//! restore from the copies without the sources, del, and the name rules.

use std::{fs, path::Path};

use super::*;
use crate::geoip::tests::{ip, testdata};

fn spec(name: &str, source: &Path) -> ListSpec {
    ListSpec {
        name: name.to_owned(),
        source: ListSource::File(source.to_owned()),
        action: ListAction::Drop,
        min_score: None,
        format: None,
    }
}

#[test]
fn file_list_lifecycle_keeps_the_last_good_copy() {
    let work = tempfile::tempdir().unwrap();
    let cache = work.path().join("lists");
    let src = work.path().join("mine.txt");
    fs::write(&src, "192.0.2.0/24\n2001:db8::/32 # v6\n").unwrap();
    let mut lists = Lists::new(&cache);
    let entry = lists.add(spec("mine", &src)).unwrap().clone();
    assert!(entry.enabled);
    assert_eq!(entry.prefixes, 2);
    assert_eq!(
        entry.sha256.as_deref(),
        Some(crate::fleet::sha256_hex(&fs::read(&src).unwrap()).as_str())
    );
    assert!(cache.join("mine/mine.txt").is_file(), "a copy is kept");
    assert!(lists.prefixes("mine").unwrap().contains(ip("192.0.2.9")));
    assert_eq!(lists.holding(ip("2001:db8::1")), ["mine"]);
    assert!(lists.holding(ip("198.51.100.1")).is_empty());

    // Same content: unchanged. New content: changed.
    let r = lists.update(None).unwrap();
    assert_eq!(
        (r.changed.len(), r.unchanged, r.failed.len()),
        (0, vec!["mine".to_owned()], 0)
    );
    fs::write(&src, "192.0.2.0/24\n198.51.100.0/24\n").unwrap();
    let r = lists.update(Some("mine")).unwrap();
    assert_eq!(r.changed, ["mine"]);
    assert!(lists.prefixes("mine").unwrap().contains(ip("198.51.100.1")));
    assert!(!lists.prefixes("mine").unwrap().contains(ip("2001:db8::1")));
    let good = lists.prefixes("mine").unwrap().clone();
    let good_copy = fs::read(cache.join("mine/mine.txt")).unwrap();

    // A malformed update: refused with list, source, file, line and text; nothing replaced.
    fs::write(&src, "192.0.2.0/24\n198.51.100.0/24\nnot-an-address\n").unwrap();
    let r = lists.update(None).unwrap();
    assert!(r.changed.is_empty() && r.unchanged.is_empty());
    let e = r.failed[0].to_string();
    let source = src.display().to_string();
    assert_eq!(
        e,
        format!(
            "list mine ({source}): the list from {source} is not valid, nothing was replaced: \
             mine.txt:3: bad network \"not-an-address\" in \"not-an-address\""
        )
    );
    assert_eq!(lists.prefixes("mine"), Some(&good));
    assert_eq!(fs::read(cache.join("mine/mine.txt")).unwrap(), good_copy);
    let row = &lists.show()[0];
    assert_eq!(row.error.as_deref(), Some(e.as_str()));
    assert_eq!(
        (row.prefixes_v4, row.prefixes_v6),
        (2, 0),
        "the last good counts"
    );
    // The source gone: the same.
    fs::remove_file(&src).unwrap();
    let r = lists.update(Some("mine")).unwrap();
    assert!(
        r.failed[0].to_string().contains("failed to open"),
        "{}",
        r.failed[0]
    );
    assert_eq!(lists.prefixes("mine"), Some(&good));

    // A restart without the source: the copy serves.
    let (restored, errors) = Lists::restore(&cache, lists.entries());
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(restored.prefixes("mine"), Some(&good));
    assert_eq!(restored.entries(), lists.entries());
    // Without the copy either: kept, without addresses, with the error.
    fs::remove_dir_all(cache.join("mine")).unwrap();
    let (restored, errors) = Lists::restore(&cache, lists.entries());
    assert!(
        errors[0].to_string().contains("no such cached list"),
        "{}",
        errors[0]
    );
    assert!(restored.prefixes("mine").is_none());
    assert!(restored.show()[0].error.is_some());

    // del removes the list and its copy.
    fs::write(&src, "192.0.2.0/24\n").unwrap();
    lists.update(None).unwrap();
    assert!(cache.join("mine").is_dir());
    assert_eq!(lists.del("mine").unwrap().name, "mine");
    assert!(!cache.join("mine").exists());
    assert!(lists.show().is_empty());
    assert!(matches!(lists.del("mine"), Err(ListError::NoSuchList(_))));
    assert!(matches!(
        lists.update(Some("mine")),
        Err(ListError::NoSuchList(_))
    ));
}

#[test]
fn add_refuses_and_leaves_nothing() {
    let work = tempfile::tempdir().unwrap();
    let cache = work.path().join("lists");
    let bad = work.path().join("bad.txt");
    fs::write(&bad, "192.0.2.0/24\n192.0.2.0/40\n").unwrap();
    let mut lists = Lists::new(&cache);
    let e = lists.add(spec("bad", &bad)).unwrap_err().to_string();
    assert!(e.starts_with("list bad ("), "{e}");
    assert!(
        e.ends_with("bad.txt:2: bad network \"192.0.2.0/40\" in \"192.0.2.0/40\""),
        "{e}"
    );
    assert!(lists.show().is_empty());
    assert!(!cache.join("bad").exists());
    // A FIFO is refused, not read until a writer comes.
    let fifo = work.path().join("fifo");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let e = lists.add(spec("fifo", &fifo)).unwrap_err().to_string();
    assert!(
        e.contains("is a FIFO (named pipe), not a regular file"),
        "{e}"
    );
    // --min-score on a list without scores.
    let mut s = spec("drop", &testdata("lists/drop.txt"));
    s.min_score = Some(3);
    let e = lists.add(s).unwrap_err().to_string();
    assert!(e.contains("--min-score applies to ipsum lists"), "{e}");
}

#[test]
fn names_and_the_limit() {
    for bad in ["", "Upper", "-x", "_x", "a b", "a.b", "é", &"a".repeat(33)] {
        assert!(check_name(bad).is_err(), "{bad:?}");
    }
    for good in ["a", "0", "spamhaus-drop", "my_list2", &"a".repeat(32)] {
        check_name(good).unwrap();
    }
    let work = tempfile::tempdir().unwrap();
    let mut lists = Lists::new(work.path());
    let src = testdata("lists/firehol_level1.netset");
    let e = lists.add(spec("bAd", &src)).unwrap_err().to_string();
    assert_eq!(
        e,
        "invalid list name \"bAd\": a name has only lower-case letters, digits, - and _"
    );
    for i in 0..MAX_LISTS {
        lists.add(spec(&format!("l{i}"), &src)).unwrap();
    }
    assert!(matches!(
        lists.add(spec("l0", &src)),
        Err(ListError::Exists(_))
    ));
    let e = lists.add(spec("one-more", &src)).unwrap_err();
    assert!(e.to_string().contains("at most 32 lists"), "{e}");
    assert_eq!(lists.show().len(), 32);
    assert!(lists.set_enabled("l3", false).unwrap());
    assert!(!lists.set_enabled("l3", false).unwrap());
    assert!(!lists.get("l3").unwrap().enabled);
    // A state file that says more than `add` allows: the extra entries are left out, loudly.
    let mut entries = lists.entries();
    entries.push(entries[0].clone());
    let mut bad = entries[1].clone();
    bad.name = "Bad".into();
    entries.push(bad);
    let (restored, errors) = Lists::restore(work.path(), entries);
    assert_eq!(restored.entries().len(), 32);
    let errors: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors[0].starts_with("list l0 (") && errors[0].contains("already exists"));
    assert!(errors[1].contains("invalid list name \"Bad\""));
    lists.del("l5").unwrap();
    let mut entries = lists.entries();
    let mut extra = entries[0].clone();
    for name in ["x1", "x2"] {
        extra.name = name.into();
        entries.push(extra.clone());
    }
    let (restored, errors) = Lists::restore(work.path(), entries);
    assert_eq!(restored.entries().len(), 32);
    assert!(
        errors[0].to_string().contains("no such cached list"),
        "x1 has no copy: {}",
        errors[0]
    );
    assert!(
        errors[1].to_string().contains("at most 32 lists"),
        "{}",
        errors[1]
    );
}

#[test]
fn presets_read_from_their_copy_and_respect_the_publishers_interval() {
    // A Spamhaus copy as a fetch would have left it, and a state file that fetched it just now:
    // a restart reads the copy, and an update within the hour does not ask Spamhaus again.
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("drop");
    fs::create_dir_all(&dir).unwrap();
    for f in ["drop_v4.json", "drop_v6.json"] {
        fs::copy(testdata(&format!("lists/{f}")), dir.join(f)).unwrap();
    }
    let entry = ListEntry {
        name: "drop".into(),
        source: ListSource::Preset(Preset::SpamhausDrop),
        action: ListAction::Drop,
        min_score: None,
        format: None,
        enabled: true,
        last_update: Some(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs(),
        ),
        sha256: None,
        prefixes: 5,
    };
    let (mut lists, errors) = Lists::restore(work.path(), vec![entry.clone()]);
    assert!(errors.is_empty(), "{errors:?}");
    assert!(
        lists
            .prefixes("drop")
            .unwrap()
            .contains(ip("2001:db8:1000::1"))
    );
    let r = lists.update(None).unwrap();
    assert_eq!(r.skipped.len(), 1);
    assert!(
        r.skipped[0]
            .1
            .contains("spamhaus-drop asks for at most one fetch every 3600 s")
    );
    let row = &lists.show()[0];
    assert_eq!(row.format, Some(ListFormat::SpamhausJson));
    assert_eq!(row.source, "spamhaus-drop");
    // The state file form.
    let json = serde_json::to_string(&entry).unwrap();
    let back: ListEntry = serde_json::from_str(&json).unwrap();
    assert_eq!(back, entry);
    let minimal: ListEntry =
        serde_json::from_str(r#"{"name":"x","source":{"preset":"ipsum"}}"#).unwrap();
    assert!(minimal.enabled);
    assert_eq!(minimal.action, ListAction::Drop);
}
