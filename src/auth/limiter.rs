//! Failed logins counted per client address, across connections (what
//! Postfix's anvil does for smtpd_client_auth_rate_limit). Pure: the time
//! is passed in.
//!
//! Every failure is answered after `base_delay`. Past `max_failures`
//! within `window`, the address's AUTH commands are refused without
//! looking at the password, and the delay doubles with each further try,
//! up to a minute. Entries expire a window after their last failure; the
//! table is bounded.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const MAX_DELAY: Duration = Duration::from_secs(60);
const MAX_ENTRIES: usize = 10_000;

pub struct Limiter {
    max_failures: u32,
    window: Duration,
    base_delay: Duration,
    table: Mutex<HashMap<IpAddr, Entry>>,
}

#[derive(Clone, Copy)]
struct Entry {
    failures: u32,
    last: Instant,
}

impl Limiter {
    pub fn new(max_failures: u32, window: Duration, base_delay: Duration) -> Limiter {
        Limiter {
            max_failures,
            window,
            base_delay,
            table: Mutex::new(HashMap::new()),
        }
    }

    fn delay_for(&self, failures: u32) -> Duration {
        let over = failures.saturating_sub(self.max_failures).min(16);
        self.base_delay.saturating_mul(1 << over).min(MAX_DELAY)
    }

    /// `Some(delay)` when this address has failed too often: refuse after
    /// waiting that long, and count the attempt.
    pub fn throttled(&self, ip: IpAddr, now: Instant) -> Option<Duration> {
        let mut t = self.table.lock().unwrap_or_else(|e| e.into_inner());
        let e = t.get_mut(&ip)?;
        if now.duration_since(e.last) > self.window {
            t.remove(&ip);
            return None;
        }
        if e.failures < self.max_failures {
            return None;
        }
        e.failures += 1;
        e.last = now;
        Some(self.delay_for(e.failures))
    }

    /// Records a failed login; returns how long to wait before answering.
    pub fn failed(&self, ip: IpAddr, now: Instant) -> Duration {
        let mut t = self.table.lock().unwrap_or_else(|e| e.into_inner());
        if t.len() >= MAX_ENTRIES {
            let window = self.window;
            t.retain(|_, e| now.duration_since(e.last) <= window);
            if t.len() >= MAX_ENTRIES {
                t.clear();
            }
        }
        let e = t.entry(ip).or_insert(Entry {
            failures: 0,
            last: now,
        });
        if now.duration_since(e.last) > self.window {
            e.failures = 0;
        }
        e.failures += 1;
        e.last = now;
        self.delay_for(e.failures)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_address_and_forgets_after_the_window() {
        let l = Limiter::new(3, Duration::from_secs(600), Duration::from_millis(100));
        let (a, b): (IpAddr, IpAddr) = ("127.0.0.2".parse().unwrap(), "127.0.0.3".parse().unwrap());
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(l.throttled(a, t0), None);
            assert_eq!(l.failed(a, t0), Duration::from_millis(100));
        }
        // The fourth try is refused, with a growing delay.
        assert_eq!(l.throttled(a, t0), Some(Duration::from_millis(200)));
        assert_eq!(l.throttled(a, t0), Some(Duration::from_millis(400)));
        // Another address is not affected.
        assert_eq!(l.throttled(b, t0), None);
        // After the window, a clean slate.
        assert_eq!(l.throttled(a, t0 + Duration::from_secs(601)), None);
    }

    #[test]
    fn delay_is_capped() {
        let l = Limiter::new(1, Duration::from_secs(600), Duration::from_secs(1));
        let t0 = Instant::now();
        l.failed("::1".parse().unwrap(), t0);
        let mut last = Duration::ZERO;
        for _ in 0..40 {
            last = l.throttled("::1".parse().unwrap(), t0).unwrap();
        }
        assert_eq!(last, MAX_DELAY);
    }
}
