//! When to try a deferred message again (pure): the delay doubles from the
//! minimal backoff up to the maximal one, as Postfix's queue manager does,
//! and a message older than the queue lifetime is given up (bounced).

use std::time::Duration;

#[derive(Clone, Copy, Debug)]
pub struct Backoff {
    pub min: Duration,
    pub max: Duration,
    pub lifetime: Duration,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// Try again at this Unix time.
    RetryAt(i64),
    /// Too old: bounce what is left.
    GiveUp,
}

impl Backoff {
    /// After failed attempt number `attempts` (1 for the first failure).
    pub fn next(&self, attempts: u32, arrival: i64, now: i64) -> Next {
        if now.saturating_sub(arrival) >= self.lifetime.as_secs() as i64 {
            return Next::GiveUp;
        }
        let shift = attempts.saturating_sub(1).min(30);
        let delay = self
            .min
            .as_secs()
            .saturating_mul(1u64 << shift)
            .min(self.max.as_secs())
            .max(1);
        Next::RetryAt(now + delay as i64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_and_caps() {
        let b = Backoff {
            min: Duration::from_secs(300),
            max: Duration::from_secs(4000),
            lifetime: Duration::from_secs(5 * 86400),
        };
        assert_eq!(b.next(1, 0, 10), Next::RetryAt(310));
        assert_eq!(b.next(2, 0, 10), Next::RetryAt(610));
        assert_eq!(b.next(4, 0, 10), Next::RetryAt(2410));
        assert_eq!(b.next(5, 0, 10), Next::RetryAt(4010));
        assert_eq!(b.next(60, 0, 10), Next::RetryAt(4010));
        assert_eq!(b.next(1, 0, 5 * 86400), Next::GiveUp);
    }
}
