//! Once started, postern lets go of the pages of its own binary that
//! start-up touched. The kernel maps a file's pages in runs of 64 KiB
//! around each page touched (fault-around), so after start-up nearly the
//! whole binary is mapped, and counted in RSS, though an idle server runs
//! little of it. The binary's read-only mappings hold only clean copies
//! of the file: dropping them (MADV_DONTNEED) costs nothing but a minor
//! fault the next time a page is needed, when it is mapped again from the
//! page cache. Writable mappings, and any page that is not a clean copy
//! of the file (relocated data), are never touched.

use nix::libc;

/// Drops the clean read-only mappings of the running binary; returns the
/// KiB it let go of.
pub fn drop_startup_pages() -> u64 {
    let Ok(exe) = std::fs::read_link("/proc/self/exe") else {
        return 0;
    };
    let exe = exe.to_string_lossy().into_owned();
    let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") else {
        return 0;
    };
    let mut dropped = 0;
    for (range, rss, clean) in regions(&smaps, &exe) {
        if !clean {
            continue;
        }
        // SAFETY: a read-only private mapping of the binary whose pages are
        // all clean copies of the file: MADV_DONTNEED only unmaps them, and
        // the next access maps the same bytes again from the page cache
        // (the kernel keeps a running binary from being written).
        let r = unsafe {
            libc::madvise(
                range.0 as *mut libc::c_void,
                range.1 - range.0,
                libc::MADV_DONTNEED,
            )
        };
        if r == 0 {
            dropped += rss;
        }
    }
    dropped
}

/// ((start, end), Rss KiB, safe to drop) of each mapping of `exe`.
fn regions(smaps: &str, exe: &str) -> Vec<((usize, usize), u64, bool)> {
    let mut out = Vec::new();
    let mut cur: Option<((usize, usize), bool)> = None;
    let (mut rss, mut dirty, mut anon) = (0u64, 0u64, 0u64);
    let mut flush = |cur: &mut Option<((usize, usize), bool)>, rss: u64, dirty: u64, anon: u64| {
        if let Some((range, readonly)) = cur.take() {
            out.push((range, rss, readonly && dirty == 0 && anon == 0));
        }
    };
    for line in smaps.lines() {
        let mut f = line.split_whitespace();
        let first = f.next().unwrap_or("");
        if let Some((a, b)) = first
            .split_once('-')
            .filter(|(a, _)| a.chars().all(|c| c.is_ascii_hexdigit()))
        {
            flush(&mut cur, rss, dirty, anon);
            (rss, dirty, anon) = (0, 0, 0);
            let perms = f.next().unwrap_or("");
            let path = f.nth(3).unwrap_or("");
            if path == exe {
                if let (Ok(a), Ok(b)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16))
                {
                    let readonly = perms.starts_with('r')
                        && perms.as_bytes().get(1) == Some(&b'-')
                        && perms.ends_with('p');
                    cur = Some(((a, b), readonly));
                }
            }
            continue;
        }
        let value = || {
            f.clone()
                .next()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(u64::MAX)
        };
        match first {
            "Rss:" => rss = value(),
            "Private_Dirty:" | "Shared_Dirty:" => dirty = dirty.saturating_add(value()),
            "Anonymous:" => anon = value(),
            _ => {}
        }
    }
    flush(&mut cur, rss, dirty, anon);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_clean_read_only_mappings_of_the_binary_are_candidates() {
        let smaps = "\
55d0-55e0 r--p 00000000 08:01 42 /usr/bin/postern
Rss:                  64 kB
Private_Dirty:         0 kB
Anonymous:             0 kB
55e0-5600 r-xp 00010000 08:01 42 /usr/bin/postern
Rss:                 128 kB
Private_Dirty:         0 kB
Anonymous:             0 kB
5600-5610 r--p 00030000 08:01 42 /usr/bin/postern
Rss:                  64 kB
Private_Dirty:        64 kB
Anonymous:            64 kB
5610-5620 rw-p 00040000 08:01 42 /usr/bin/postern
Rss:                   8 kB
Private_Dirty:         8 kB
Anonymous:             8 kB
7f00-7f10 r-xp 00000000 08:01 7 /usr/lib/libc.so.6
Rss:                 100 kB
Private_Dirty:         0 kB
Anonymous:             0 kB
";
        let r = regions(smaps, "/usr/bin/postern");
        let safe: Vec<u64> = r.iter().filter(|x| x.2).map(|x| x.1).collect();
        assert_eq!(r.len(), 4);
        assert_eq!(safe, vec![64, 128], "{r:?}");
    }

    #[test]
    fn dropping_is_harmless_to_the_running_test() {
        drop_startup_pages();
        // Code and constants still work after their pages were let go.
        assert_eq!(format!("{}", 6 * 7), "42");
    }
}
