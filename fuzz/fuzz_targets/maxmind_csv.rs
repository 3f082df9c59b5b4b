#![no_main]
//! Fuzzes the MaxMind CSV reader: the input is a blocks file and a locations file separated by
//! the first NUL byte.

#[path = "common.rs"]
mod common;

use geofilter_daemon::geoip::{self, Format};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let split = data.iter().position(|&b| b == 0).unwrap_or(data.len());
    let (blocks, locations) = data.split_at(split);
    let dir = common::scratch();
    let blocks_path = dir.join("GeoLite2-Country-Blocks-IPv4.csv");
    std::fs::write(&blocks_path, blocks).expect("scratch write");
    std::fs::write(dir.join("GeoLite2-Country-Locations-en.csv"), locations.get(1..).unwrap_or_default())
        .expect("scratch write");
    if let Ok(source) = geoip::read_source(&blocks_path, Some(Format::MaxmindCsv)) {
        common::check(source);
    }
});
