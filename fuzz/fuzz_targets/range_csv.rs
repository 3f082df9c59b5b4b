#![no_main]
//! Fuzzes the range csv reader: no input may panic it, and what it accepts compiles exactly.

#[path = "common.rs"]
mod common;

use geofilter_daemon::geoip::Format;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| common::read_and_check("db.csv", data, Format::RangeCsv));
