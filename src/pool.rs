//! The blocking thread pool: where file work, fsyncs, lookups and pipe
//! commands run, off the executor.
//!
//! It replaces `smol::unblock` (the `blocking` crate) for one reason: the
//! cost of waking threads. On a small VM a context switch is dear (65–75
//! µs a round trip here) and a piped message made about 22 of them; the
//! `blocking` crate wakes a sleeping worker while it still holds its
//! queue's lock (so the worker wakes only to block on that lock again:
//! about 3 extra switches per message) and wakes every idle worker when
//! none is free. Here a job is queued under the lock, and the one worker
//! it needs is woken after the lock is released.
//!
//! Every job gets a worker of its own: a sleeping one that is woken for
//! it, or a new thread. A job never waits behind another one that may run
//! for long (a pipe command may take minutes). Workers idle for
//! [`IDLE`] end, so a burst leaves no threads behind.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

use async_task::Runnable;

/// How long a worker with nothing to do waits before it ends.
const IDLE: Duration = Duration::from_millis(500);
/// Threads at most (as the `blocking` crate's default).
const MAX_THREADS: usize = 500;

struct Pool {
    state: Mutex<State>,
    wake: Condvar,
}

struct State {
    queue: VecDeque<Runnable>,
    /// Workers waiting for a job.
    sleeping: usize,
    /// Wake-ups sent and not yet taken by a worker: each stands for a
    /// queued job that a sleeping worker will come for.
    wakeups: usize,
    threads: usize,
}

static POOL: Pool = Pool {
    state: Mutex::new(State {
        queue: VecDeque::new(),
        sleeping: 0,
        wakeups: 0,
        threads: 0,
    }),
    wake: Condvar::new(),
};

/// Runs `f` on a worker thread, starting now (as `smol::unblock` does);
/// the task gives its result. Dropping the task before `f` has started
/// cancels it; once started, `f` runs to its end.
pub fn unblock<T, F>(f: F) -> async_task::Task<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let (runnable, task) = async_task::spawn(async move { f() }, |r| POOL.schedule(r));
    runnable.schedule();
    task
}

impl Pool {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn schedule(&'static self, r: Runnable) {
        let mut st = self.lock();
        st.queue.push_back(r);
        if st.sleeping > st.wakeups {
            st.wakeups += 1;
            drop(st);
            self.wake.notify_one();
            return;
        }
        if st.threads >= MAX_THREADS {
            // Every thread is busy: the job waits for the first to finish.
            return;
        }
        st.threads += 1;
        drop(st);
        let started = std::thread::Builder::new()
            .name("blocking".into())
            .spawn(move || self.work());
        if started.is_err() {
            // Out of threads: the job waits for a busy worker.
            self.lock().threads -= 1;
        }
    }

    fn work(&'static self) {
        let mut st = self.lock();
        loop {
            if let Some(r) = st.queue.pop_front() {
                drop(st);
                // A panic is the job's: its task reports it to the awaiter.
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| r.run()));
                st = self.lock();
                continue;
            }
            st.sleeping += 1;
            let idle_since = std::time::Instant::now();
            loop {
                let left = IDLE.saturating_sub(idle_since.elapsed());
                let (g, _) = self
                    .wake
                    .wait_timeout(st, left)
                    .unwrap_or_else(|e| e.into_inner());
                st = g;
                if st.wakeups > 0 {
                    st.wakeups -= 1;
                    break;
                }
                if idle_since.elapsed() >= IDLE {
                    if st.queue.is_empty() {
                        st.sleeping -= 1;
                        st.threads -= 1;
                        return;
                    }
                    // A job came for a thread being started: take it.
                    break;
                }
            }
            st.sleeping -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[test]
    fn a_result_comes_back() {
        assert_eq!(smol::block_on(unblock(|| 6 * 7)), 42);
    }

    #[test]
    fn a_job_never_waits_behind_a_long_one() {
        // Many jobs that block until the last one has run: they finish
        // only if each got a thread of its own.
        let n = 40;
        let gate = Arc::new((Mutex::new(0usize), Condvar::new()));
        let jobs: Vec<_> = (0..n)
            .map(|_| {
                let gate = gate.clone();
                unblock(move || {
                    let (m, c) = &*gate;
                    let mut arrived = m.lock().unwrap();
                    *arrived += 1;
                    c.notify_all();
                    while *arrived < n {
                        let (g, t) = c.wait_timeout(arrived, Duration::from_secs(10)).unwrap();
                        arrived = g;
                        assert!(!t.timed_out(), "a job waited for a thread");
                    }
                })
            })
            .collect();
        smol::block_on(async {
            for j in jobs {
                j.await;
            }
        });
    }

    #[test]
    fn a_panicking_job_leaves_the_pool_working() {
        let r = std::panic::catch_unwind(|| smol::block_on(unblock(|| panic!("job fails"))));
        assert!(r.is_err());
        let ran = Arc::new(AtomicUsize::new(0));
        let jobs: Vec<_> = (0..8)
            .map(|_| {
                let ran = ran.clone();
                unblock(move || ran.fetch_add(1, Ordering::SeqCst))
            })
            .collect();
        smol::block_on(async {
            for j in jobs {
                j.await;
            }
        });
        assert_eq!(ran.load(Ordering::SeqCst), 8);
    }
}
