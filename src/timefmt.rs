//! Dates as mail needs them, from a Unix time passed in (no clock here):
//! RFC 5322 3.3 `date-time` for headers, RFC 3339 for log lines. UTC only,
//! which RFC 5322 allows (`+0000`) and which keeps the box free of a tz
//! database.

/// Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Year, month, day of a Unix time.
pub fn civil(unix: i64) -> (i64, u32, u32) {
    civil_from_days(unix.div_euclid(86_400))
}

/// Unix time of a UTC civil date and time (the inverse of `civil`).
pub fn unix_from_civil(y: i64, m: i64, d: i64, hh: i64, mm: i64, ss: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    days * 86_400 + hh * 3600 + mm * 60 + ss
}

struct Parts {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    min: u32,
    sec: u32,
    weekday: usize,
}

fn parts(unix: i64) -> Parts {
    let days = unix.div_euclid(86_400);
    let rem = unix.rem_euclid(86_400) as u32;
    let (year, month, day) = civil_from_days(days);
    Parts {
        year,
        month,
        day,
        hour: rem / 3600,
        min: rem / 60 % 60,
        sec: rem % 60,
        // 1970-01-01 was a Thursday.
        weekday: (days + 4).rem_euclid(7) as usize,
    }
}

const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// `Sat, 28 Nov 2026 00:38:36 +0000`
pub fn rfc5322(unix: i64) -> String {
    let p = parts(unix);
    format!(
        "{}, {} {} {} {:02}:{:02}:{:02} +0000",
        DAYS[p.weekday],
        p.day,
        MONTHS[p.month as usize - 1],
        p.year,
        p.hour,
        p.min,
        p.sec
    )
}

/// `Sat Nov 28 00:38:36` (UTC), the arrival column of `postern queue list`.
pub fn mailq(unix: i64) -> String {
    let p = parts(unix);
    format!(
        "{} {} {:>2} {:02}:{:02}:{:02}",
        DAYS[p.weekday],
        MONTHS[p.month as usize - 1],
        p.day,
        p.hour,
        p.min,
        p.sec
    )
}

/// `Sat Nov 28 00:38:36 2026` (UTC): the date of an mbox `From ` line.
pub fn mbox(unix: i64) -> String {
    let p = parts(unix);
    format!(
        "{} {} {:>2} {:02}:{:02}:{:02} {}",
        DAYS[p.weekday],
        MONTHS[p.month as usize - 1],
        p.day,
        p.hour,
        p.min,
        p.sec,
        p.year
    )
}

/// `20261128003836` (UTC): the left part of a Message-ID postern makes.
pub fn compact(unix: i64) -> String {
    let p = parts(unix);
    format!(
        "{:04}{:02}{:02}{:02}{:02}{:02}",
        p.year, p.month, p.day, p.hour, p.min, p.sec
    )
}

/// `2026-11-28T00:38:36Z`
pub fn rfc3339(unix: i64) -> String {
    let p = parts(unix);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        p.year, p.month, p.day, p.hour, p.min, p.sec
    )
}

/// `2026-11-28T00:38:36.123456Z`
pub fn rfc3339_micros(unix_micros: i64) -> String {
    let p = parts(unix_micros.div_euclid(1_000_000));
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        p.year,
        p.month,
        p.day,
        p.hour,
        p.min,
        p.sec,
        unix_micros.rem_euclid(1_000_000)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates() {
        assert_eq!(rfc5322(0), "Thu, 1 Jan 1970 00:00:00 +0000");
        assert_eq!(rfc5322(1_795_826_316), "Sat, 28 Nov 2026 00:38:36 +0000");
        assert_eq!(rfc5322(951_782_400), "Tue, 29 Feb 2000 00:00:00 +0000");
        assert_eq!(mailq(1_795_826_316), "Sat Nov 28 00:38:36");
        assert_eq!(mailq(0), "Thu Jan  1 00:00:00");
        assert_eq!(rfc3339(1_795_826_316), "2026-11-28T00:38:36Z");
        assert_eq!(
            rfc3339_micros(1_795_826_316_000_042),
            "2026-11-28T00:38:36.000042Z"
        );
    }
}
