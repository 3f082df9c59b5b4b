#![no_main]
//! Fuzzes the control-socket decoder: any bytes give a request or an error, never a panic, and a
//! decoded request encodes back to something that decodes to the same request.

use geofilter_daemon::control::protocol::decode_request;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = decode_request(data) {
        let again = serde_json::to_vec(&request).expect("requests encode");
        assert_eq!(decode_request(&again).expect("re-decodes"), request);
    }
});
