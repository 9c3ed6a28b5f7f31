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

use std::fs;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// Files waiting at most for the reaper; past that, the caller unlinks
/// its own (the disk is slower than the deliveries: memory stays bounded).
const BACKLOG: usize = 1024;

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
}

impl Reaper {
    pub(super) fn new(dir: PathBuf) -> Reaper {
        Reaper(Arc::new(Inner {
            dir,
            todo: Mutex::new(Todo::default()),
            wake: Condvar::new(),
        }))
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
    use std::time::{Duration, Instant};

    use crate::queue::envelope::QueueEnvelope;
    use crate::queue::spool::Spool;
    use crate::smtp::address::Address;

    fn envelope(id_micros: u64) -> QueueEnvelope {
        crate::queue::envelope::for_test(id_micros, Address::new("alice", "example.test"))
    }

    fn count(dir: &std::path::Path) -> usize {
        std::fs::read_dir(dir).map(|d| d.count()).unwrap()
    }

    #[test]
    fn a_removed_message_leaves_at_once_and_is_unlinked_later_or_at_start() {
        let root = std::env::temp_dir().join(format!("postern-reaper-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let spool = Spool::open_unlocked(&root).unwrap();
        let now = crate::clock::now_micros();
        let ids: Vec<String> = (0..50)
            .map(|i| {
                let env = envelope(now + i);
                spool.submit(&env, b"Subject: t\n\nbody\n").unwrap();
                env.id
            })
            .collect();
        for id in &ids {
            spool.remove(id, false).unwrap();
            // Gone from the queue the moment remove returns.
            assert!(!root.join("messages").join(id).exists());
        }
        assert!(spool.list().unwrap().is_empty());
        // A second remove finds nothing, as before.
        assert!(spool.remove(&ids[0], false).is_err());
        let deadline = Instant::now() + Duration::from_secs(10);
        while count(&root.join("done")) > 0 {
            assert!(Instant::now() < deadline, "the reaper never unlinked done/");
            std::thread::sleep(Duration::from_millis(10));
        }

        // Left in done/ by a crash: removed at start, not queued.
        std::fs::write(root.join("done").join(&ids[1]), b"finished").unwrap();
        let r = spool.recover(crate::clock::now_secs()).unwrap();
        assert!(r.queued.is_empty());
        assert_eq!(r.removed_incoming, 0);
        assert_eq!(count(&root.join("done")), 0);
        drop(spool);
        let _ = std::fs::remove_dir_all(&root);
    }
}
