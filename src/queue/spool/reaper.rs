//! Finished queue files are unlinked off the delivery path.
//!
//! Unlinking a queue file frees its blocks, and on a filesystem mounted
//! `discard` (common on flash) that can wait for the device's TRIM: a
//! millisecond or more here, on ext4 without a journal, for every message.
//! A delivery thread that waited for it held its transport's slot idle
//! meanwhile. So a finished message is renamed into `done/` (a rename
//! frees nothing), and one thread unlinks what is there, as Postfix's
//! qmgr deletes queue files apart from its delivery agents. A file left
//! in `done/` by a crash is removed at the next start: its message was
//! finished.
//!
//! The last few small ones are not unlinked at all but kept as spares: a
//! new message is written over one (see `Spool::create`), so the disk
//! neither frees its blocks nor allocates an inode for it. A new inode is
//! dear on ext4 without a journal, which passes over every inode freed in
//! the last minute before it picks one.

use std::fs;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// Files waiting at most for the reaper; past that, the caller unlinks
/// its own (the disk is slower than the deliveries: memory stays bounded).
const BACKLOG: usize = 1024;

/// Finished files kept for reuse, at most: more than the deliveries that
/// finish between two messages arriving, under load.
const SPARES: usize = 64;

/// Larger files are not kept (64 spares of this size are 4 MiB of disk at
/// most; most mail is smaller).
pub(super) const SPARE_MAX: u64 = 64 * 1024;

pub(super) struct Reaper(Arc<Inner>);

struct Inner {
    dir: PathBuf,
    todo: Mutex<Todo>,
    wake: Condvar,
}

#[derive(Default)]
struct Todo {
    names: Vec<String>,
    /// The thread is there (it ends when its spool is gone).
    running: bool,
    /// Names in done/ kept for reuse; the last in goes out first (the
    /// likeliest still in the page cache).
    spares: Vec<String>,
}

impl Reaper {
    pub(super) fn new(dir: PathBuf) -> Reaper {
        Reaper(Arc::new(Inner {
            dir,
            todo: Mutex::new(Todo::default()),
            wake: Condvar::new(),
        }))
    }

    /// `done/NAME`, of `len` bytes, is finished: kept as a spare while
    /// there is room and it is small, else unlinked.
    pub(super) fn finished(&self, name: String, len: u64) {
        if len <= SPARE_MAX {
            let mut todo = self.0.lock();
            if todo.spares.len() < SPARES {
                todo.spares.push(name);
                return;
            }
        }
        self.unlink_later(name)
    }

    /// A spare in done/ to write a new message over, if there is one.
    pub(super) fn take_spare(&self) -> Option<String> {
        self.0.lock().spares.pop()
    }

    /// done/ is being emptied.
    pub(super) fn forget_spares(&self) {
        self.0.lock().spares.clear();
    }

    /// `done/NAME` is to be unlinked: by the reaper, or now when it is
    /// behind (or cannot start).
    pub(super) fn unlink_later(&self, name: String) {
        let mut todo = self.0.lock();
        if todo.names.len() < BACKLOG {
            if !todo.running {
                let inner = self.0.clone();
                let spawned = std::thread::Builder::new()
                    .name("reaper".into())
                    .spawn(move || inner.run());
                todo.running = spawned.is_ok();
            }
            if todo.running {
                let was_empty = todo.names.is_empty();
                todo.names.push(name);
                drop(todo);
                if was_empty {
                    self.0.wake.notify_one();
                }
                return;
            }
        }
        drop(todo);
        let _ = fs::remove_file(self.0.dir.join(name));
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, Todo> {
        self.todo.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn run(self: Arc<Self>) {
        loop {
            let batch = {
                let mut todo = self.lock();
                while todo.names.is_empty() {
                    // Its spool is gone: nothing more will come.
                    if Arc::strong_count(&self) == 1 {
                        todo.running = false;
                        return;
                    }
                    todo = self
                        .wake
                        .wait_timeout(todo, Duration::from_secs(1))
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
                std::mem::take(&mut todo.names)
            };
            for name in batch {
                let _ = fs::remove_file(self.dir.join(name));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::os::unix::fs::MetadataExt;
    use std::path::Path;
    use std::time::{Duration, Instant};

    use super::{SPARES, SPARE_MAX};
    use crate::queue::envelope::QueueEnvelope;
    use crate::queue::spool::Spool;
    use crate::smtp::address::Address;

    fn envelope(id_micros: u64) -> QueueEnvelope {
        crate::queue::envelope::for_test(id_micros, Address::new("alice", "example.test"))
    }

    fn count(dir: &Path) -> usize {
        std::fs::read_dir(dir).map(|d| d.count()).unwrap()
    }

    fn inodes(dir: &Path) -> HashSet<u64> {
        std::fs::read_dir(dir)
            .unwrap()
            // The reaper may unlink one between the listing and its stat.
            .filter_map(|e| e.unwrap().metadata().ok().map(|m| m.ino()))
            .collect()
    }

    fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(Instant::now() < deadline, "{what}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn finished_files_are_kept_as_spares_written_over_or_unlinked() {
        let root = std::env::temp_dir().join(format!("postern-reaper-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let spool = Spool::open_unlocked(&root).unwrap();
        let (done, messages) = (root.join("done"), root.join("messages"));
        let at = std::cell::Cell::new(crate::clock::now_micros());
        let next = || {
            at.set(at.get() + 1);
            envelope(at.get())
        };
        let submit = |body: &[u8]| {
            let env = next();
            spool.submit(&env, body).unwrap();
            (env.id.clone(), [env.serialize().as_bytes(), body].concat())
        };
        let long_body = format!("Subject: long\n\n{}\n", "x".repeat(3000));
        let ids: Vec<String> = (0..SPARES + 16)
            .map(|_| submit(long_body.as_bytes()).0)
            .collect();
        for id in &ids {
            spool.remove(id, false).unwrap();
            // Gone from the queue the moment remove returns.
            assert!(!messages.join(id).exists());
        }
        assert!(spool.list().unwrap().is_empty());
        // A second remove finds nothing, as before.
        assert!(spool.remove(&ids[0], false).is_err());
        // The small ones past the spares are unlinked; the spares stay.
        wait_for(
            "the reaper never unlinked the files past the spares",
            || count(&done) == SPARES,
        );

        // A new message is written over a spare: the same inode, and not
        // a byte of the longer message it replaces is left.
        let spares = inodes(&done);
        let (id, expected) = submit(b"Subject: short\n\nbody\n");
        let file = messages.join(&id);
        assert!(spares.contains(&std::fs::metadata(&file).unwrap().ino()));
        assert_eq!(std::fs::read(&file).unwrap(), expected);
        assert_eq!(count(&done), SPARES - 1);
        let m = spool.open_message(&id).unwrap();
        assert_eq!(m.env.id, id);
        drop(m);
        spool.remove(&id, false).unwrap();
        assert_eq!(count(&done), SPARES);

        // A body rule gives it another envelope while it comes in: only
        // what was written is copied behind it, none of the spare's rest.
        let env = next();
        let mut w = spool.create(&env).unwrap();
        w.write(b"Subject: rewritten\n\nbody\n");
        let w = spool
            .rewrite_envelope(w, &|e: &mut QueueEnvelope| e.handling.hops = 7)
            .unwrap();
        spool.commit(w).unwrap();
        let mut changed = env.clone();
        changed.handling.hops = 7;
        let expected = [
            changed.serialize().as_bytes(),
            b"Subject: rewritten\n\nbody\n",
        ]
        .concat();
        assert_eq!(std::fs::read(messages.join(&env.id)).unwrap(), expected);
        spool.remove(&env.id, false).unwrap();

        // One longer than the spare grows it.
        let bigger = format!("Subject: longer\n\n{}\n", "y".repeat(6000));
        let (id, expected) = submit(bigger.as_bytes());
        assert_eq!(std::fs::read(messages.join(&id)).unwrap(), expected);
        spool.remove(&id, false).unwrap();

        // A large file is never kept, even with room for it.
        for _ in 0..3 {
            submit(b"Subject: t\n\nbody\n");
        }
        assert_eq!(count(&done), SPARES - 3);
        let huge = vec![b'z'; SPARE_MAX as usize + 1];
        let (id, _) = submit(&huge);
        let ino = std::fs::metadata(messages.join(&id)).unwrap().ino();
        spool.remove(&id, false).unwrap();
        wait_for("a large finished file was kept", || {
            !inodes(&done).contains(&ino)
        });

        // Left in done/ (the spares, or by a crash): removed at start,
        // not queued.
        std::fs::write(done.join(&ids[1]), b"finished").unwrap();
        let r = spool.recover(crate::clock::now_secs()).unwrap();
        assert_eq!(r.queued.len(), 3);
        assert_eq!(r.removed_incoming, 0);
        assert_eq!(count(&done), 0);
        drop(spool);
        let _ = std::fs::remove_dir_all(&root);
    }
}
