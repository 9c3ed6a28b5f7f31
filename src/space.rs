//! Free space: the reserve that keeps a full disk from taking the box
//! down (Postfix's queue_minfree).
//!
//! Mail fills the filesystem that logs, the SQLite directory and the
//! queue's own state files also need. Below `[queue] min_free` free bytes
//! on the queue's filesystem, MAIL is refused with 452 4.3.1 before any
//! data is sent (the client's SIZE counts); deliveries into a Maildir defer
//! when the copy would leave less than half the reserve free on that
//! filesystem. The log says so once when a filesystem goes below the
//! reserve and once when it is back above, never once per message.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::log;

/// Free bytes for unprivileged users on the filesystem holding `path`.
pub fn free_bytes(path: &Path) -> std::io::Result<u64> {
    let s = nix::sys::statvfs::statvfs(path).map_err(std::io::Error::from)?;
    Ok((s.blocks_available() as u64).saturating_mul(s.fragment_size() as u64))
}

/// The reserve of one filesystem (named by a directory on it), with the
/// memory of whether its shortage has been logged.
pub struct Reserve {
    dir: PathBuf,
    min_free: u64,
    /// What a shortage stops, for the log line.
    stops: &'static str,
    short: AtomicBool,
    /// The last reading: (when, free bytes). Reused for a short while when
    /// far from the reserve, so a busy box does not statvfs every message.
    last: std::sync::Mutex<Option<(std::time::Instant, u64)>>,
}

/// How long a reading far from the reserve stays good.
const FRESH: std::time::Duration = std::time::Duration::from_millis(200);

impl Reserve {
    /// `stops`: what the log says a shortage stops ("new mail",
    /// "deliveries").
    pub fn new(dir: PathBuf, min_free: u64, stops: &'static str) -> Reserve {
        Reserve {
            dir,
            min_free,
            stops,
            short: AtomicBool::new(false),
            last: std::sync::Mutex::new(None),
        }
    }

    pub fn min_free(&self) -> u64 {
        self.min_free
    }

    /// Is there room for `size` more bytes and still `keep` free? Logs the
    /// change when the answer changes. A failed statvfs is not a shortage
    /// (the write itself will tell).
    pub fn room_for(&self, size: u64, keep: u64) -> bool {
        let Some(free) = self.free(size, keep) else {
            return true;
        };
        let ok = free >= keep.saturating_add(size);
        // Said once each way: short when a check fails, back only with half
        // the reserve to spare (no line per message near the edge).
        if !ok && !self.short.swap(true, Ordering::Relaxed) {
            log::warning(&format!(
                "{}: {free} bytes free, below the reserve of {keep} bytes (queue.min_free): {} wait until space is freed",
                self.dir.display(),
                self.stops
            ));
        } else if ok
            && free >= keep.saturating_add(keep / 2)
            && self.short.swap(false, Ordering::Relaxed)
        {
            log::started(&format!(
                "{}: {free} bytes free again, above the reserve of {keep} bytes: {} go on",
                self.dir.display(),
                self.stops
            ));
        }
        ok
    }

    /// Free bytes: a recent reading if it was far (more than 64 MiB and
    /// four times the reserve) from mattering, else a new statvfs.
    fn free(&self, size: u64, keep: u64) -> Option<u64> {
        let now = std::time::Instant::now();
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let margin = keep.saturating_mul(4).max(64 << 20).saturating_add(size);
        if let Some((at, free)) = *last {
            if now.duration_since(at) < FRESH && free > margin {
                return Some(free);
            }
        }
        let free = free_bytes(&self.dir).ok()?;
        *last = Some((now, free));
        Some(free)
    }

    /// MAIL with an announced size (0 if none): the whole reserve must stay.
    pub fn accepts_mail(&self, size: u64) -> bool {
        self.room_for(size, self.min_free)
    }

    /// A delivery of `size` bytes: half the reserve must stay.
    pub fn accepts_delivery(&self, size: u64) -> bool {
        self.room_for(size, self.min_free / 2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_is_measured_on_the_real_filesystem() {
        let dir = std::env::temp_dir();
        let free = free_bytes(&dir).unwrap();
        assert!(free > 0);
        let r = Reserve::new(dir, 1024, "tests");
        assert!(r.accepts_mail(0));
        assert!(!r.accepts_mail(u64::MAX / 2), "no filesystem has that much");
        assert!(r.accepts_mail(0), "and back");
    }
}
