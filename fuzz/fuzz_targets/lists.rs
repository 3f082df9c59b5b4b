#![no_main]
//! Fuzzes the blocklist reader (every format, detected): no input may panic it, and what it
//! accepts is sorted, disjoint, merged ranges within their family, whose CIDR cover and counts
//! agree with them and whose lookups agree at every boundary.

#[path = "common.rs"]
mod common;

use geofilter_daemon::{family::Family, lists};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = common::scratch().join("list.txt");
    std::fs::write(&path, data).expect("scratch write");
    let Ok(l) = lists::read_list(&[path], None, None) else {
        return;
    };
    for family in Family::ALL {
        let ranges = l.ranges(family);
        let mut total = 0u128;
        for (i, &(start, end)) in ranges.iter().enumerate() {
            assert!(start <= end && end <= family.max(), "{family:?} {start}..{end}");
            if i > 0 {
                assert!(ranges[i - 1].1.saturating_add(1) < start, "not merged: {ranges:?}");
            }
            total = total.saturating_add(end - start + 1);
            // IPv4-mapped IPv6 addresses are looked up as IPv4 (the v6 ranges skip them).
            let probe = |a: u128| {
                let ip = family.ip(a);
                (ip.to_canonical() == ip).then(|| l.contains(ip))
            };
            for a in [start, end] {
                assert_ne!(probe(a), Some(false), "{a} is in the list");
            }
            if start > 0 && (i == 0 || ranges[i - 1].1 < start - 1) {
                assert_ne!(probe(start - 1), Some(true), "{} is not", start - 1);
            }
            if end < family.max() {
                assert_ne!(probe(end + 1), Some(true), "{} is not", end + 1);
            }
        }
        let cidrs = l.cidrs(family);
        let covered = cidrs.iter().fold(0u128, |n, &(_, len)| {
            let host = family.bits() - u32::from(len);
            n.saturating_add(if host >= 128 { u128::MAX } else { 1 << host })
        });
        match family {
            Family::V4 => {
                assert_eq!(u128::from(l.counts.addresses_v4), total);
                assert_eq!(l.counts.prefixes_v4, cidrs.len());
            }
            Family::V6 => {
                assert_eq!(l.counts.addresses_v6, total);
                assert_eq!(l.counts.prefixes_v6, cidrs.len());
            }
        }
        assert_eq!(covered, total, "the CIDR cover is exact");
    }
});
