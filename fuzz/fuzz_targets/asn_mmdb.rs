#![no_main]
//! Fuzzes the ASN mmdb reader: no input may panic it, and what it accepts resolves exactly.

#[path = "common.rs"]
mod common;

use geofilter_daemon::asn::AsnFormat;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| common::read_and_check_asn("asn.mmdb", data, AsnFormat::Mmdb));
