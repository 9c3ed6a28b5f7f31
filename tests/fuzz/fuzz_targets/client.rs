#![no_main]

#[path = "../client_harness.rs"]
mod client_harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| client_harness::client(data));
