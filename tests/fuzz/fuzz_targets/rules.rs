#![no_main]

#[path = "../rules_harness.rs"]
mod rules_harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| rules_harness::rules(data));
