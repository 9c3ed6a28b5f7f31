//! Queue IDs: the arrival time in microseconds, strictly increasing within
//! a process, written as 11 characters of Crockford base32. They sort by
//! arrival, name the spool files, and give each Maildir file its stable
//! unique part (so a redelivery after a crash can be recognised).

use std::sync::atomic::{AtomicU64, Ordering};

const ALPHABET: &[u8; 32] = b"0123456789BCDFGHJKLMNPQRSTVWXYZa";
pub const LEN: usize = 11;

static LAST: AtomicU64 = AtomicU64::new(0);

/// A new ID for a message arriving at `now_micros`: never equal to an
/// earlier one from this process, even within one microsecond.
pub fn next(now_micros: u64) -> (String, u64) {
    let mut last = LAST.load(Ordering::Relaxed);
    loop {
        let t = now_micros.max(last + 1);
        match LAST.compare_exchange_weak(last, t, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return (encode(t), t),
            Err(cur) => last = cur,
        }
    }
}

pub fn encode(mut micros: u64) -> String {
    let mut out = [b'0'; LEN];
    for slot in out.iter_mut().rev() {
        *slot = ALPHABET[(micros & 31) as usize];
        micros >>= 5;
    }
    String::from_utf8(out.to_vec()).expect("ascii")
}

pub fn decode(id: &str) -> Option<u64> {
    if id.len() != LEN {
        return None;
    }
    let mut v: u64 = 0;
    for c in id.bytes() {
        let d = ALPHABET.iter().position(|&a| a == c)? as u64;
        v = v.checked_mul(32)?.checked_add(d)?;
    }
    Some(v)
}

/// True for names that can be queue IDs (so stray files are not touched).
pub fn is_valid(id: &str) -> bool {
    decode(id).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_order() {
        let (a, ta) = next(1_795_826_316_000_000);
        let (b, tb) = next(1_795_826_316_000_000);
        assert!(tb > ta && b > a);
        assert_eq!(decode(&a), Some(ta));
        assert_eq!(a.len(), LEN);
        assert!(!is_valid("../../etc"));
        assert!(!is_valid("0000000000I"));
    }
}
