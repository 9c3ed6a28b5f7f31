//! The wall clock, read in one place. Pure modules take the time as an
//! argument instead of calling this.

use std::time::{SystemTime, UNIX_EPOCH};

pub fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

pub fn now_secs() -> i64 {
    (now_micros() / 1_000_000) as i64
}
