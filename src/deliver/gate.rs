//! A gate: at most N deliveries through one command transport at once,
//! with a line of deliveries that wait on no thread at all.
//!
//! Deliveries wait for a gate in two ways. A task on the executor waits
//! for a permit of the gate's semaphore ([`Gate::acquire`]), and a thread
//! of the blocking pool then runs it. A delivery that needs nobody to
//! wait for it (a message just committed, on the thread that wrote it,
//! or a runner task that can end) instead joins the gate's line
//! ([`Gate::enter`]): whoever lets go of a permit next hands it to the
//! first delivery in line, and when that is a thread whose command
//! through the same gate has just ended, it runs the next one itself
//! ([`GatePermit::pass`]). On a small box every hand-off between threads
//! is a good part of a piped message's cost; a message that waits in
//! line costs none.
//!
//! Nothing waits in line while a permit is free: the line is joined and
//! left under one lock, and every permit, however it ends, looks at the
//! line first. Tasks waiting on the semaphore are not overtaken: while
//! any waits, the line takes nobody new, so it empties and they go next.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use smol::lock::{Semaphore, SemaphoreGuardArc};

/// A delivery waiting in a gate's line: given the permit, it runs (on
/// the thread that passes it) and may give back the next one to run.
pub struct Waiter(Box<Run>);

type Run = dyn FnOnce(GatePermit) -> Option<(Waiter, GatePermit)> + Send;

impl Waiter {
    pub fn new(
        f: impl FnOnce(GatePermit) -> Option<(Waiter, GatePermit)> + Send + 'static,
    ) -> Waiter {
        Waiter(Box::new(f))
    }
}

pub struct Gate {
    sem: Arc<Semaphore>,
    line: Mutex<VecDeque<Waiter>>,
    /// Tasks and threads waiting on `sem`.
    waiting: AtomicUsize,
}

/// One of a gate's permits. Dropped, it goes to the first delivery in
/// line (run on a new thread of the pool), else back to the semaphore.
pub struct GatePermit {
    gate: Arc<Gate>,
    guard: Option<SemaphoreGuardArc>,
}

/// What [`Gate::enter`] did with a delivery.
pub enum Entered {
    /// A permit was free: run it now.
    Now(Waiter, GatePermit),
    /// In line: a delivery that ends will run it.
    InLine,
    /// Others wait on the semaphore: wait with them.
    Wait(Waiter),
}

/// Counts a waiter on the semaphore, until dropped (also when cancelled).
struct Counted<'a>(&'a AtomicUsize);

impl<'a> Counted<'a> {
    fn new(n: &'a AtomicUsize) -> Counted<'a> {
        n.fetch_add(1, Ordering::SeqCst);
        Counted(n)
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Gate {
    pub fn new(n: usize) -> Arc<Gate> {
        Arc::new(Gate {
            sem: Arc::new(Semaphore::new(n.max(1))),
            line: Mutex::new(VecDeque::new()),
            waiting: AtomicUsize::new(0),
        })
    }

    fn line(&self) -> std::sync::MutexGuard<'_, VecDeque<Waiter>> {
        self.line.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn permit(self: &Arc<Self>, guard: SemaphoreGuardArc) -> GatePermit {
        GatePermit {
            gate: self.clone(),
            guard: Some(guard),
        }
    }

    /// Waits on the executor for a permit.
    pub async fn acquire(self: &Arc<Self>) -> GatePermit {
        let _counted = Counted::new(&self.waiting);
        let guard = self.sem.acquire_arc().await;
        self.permit(guard)
    }

    /// Waits for a permit, blocking this thread.
    pub fn acquire_blocking(self: &Arc<Self>) -> GatePermit {
        let _counted = Counted::new(&self.waiting);
        let guard = self.sem.acquire_arc_blocking();
        self.permit(guard)
    }

    /// A permit if one is free and nobody waits for one.
    #[cfg(test)]
    fn try_acquire(self: &Arc<Self>) -> Option<GatePermit> {
        if self.waiting.load(Ordering::SeqCst) > 0 {
            return None;
        }
        let _line = self.line();
        let guard = self.sem.try_acquire_arc()?;
        Some(self.permit(guard))
    }

    /// Waits on the executor for a permit, then runs `w` (and whatever it
    /// hands on) on a thread of the pool.
    pub async fn wait_then_run(self: Arc<Self>, w: Waiter) {
        let p = self.acquire().await;
        crate::pool::unblock(move || run_line(w, p)).detach();
    }

    /// A delivery on a thread that need not wait: run now, or in line.
    pub fn enter(self: &Arc<Self>, w: Waiter) -> Entered {
        if self.waiting.load(Ordering::SeqCst) > 0 {
            return Entered::Wait(w);
        }
        let mut line = self.line();
        match self.sem.try_acquire_arc() {
            Some(guard) => {
                drop(line);
                Entered::Now(w, self.permit(guard))
            }
            None => {
                line.push_back(w);
                Entered::InLine
            }
        }
    }

    /// Deliveries in line now.
    #[cfg(test)]
    fn in_line(&self) -> usize {
        self.line().len()
    }
}

impl GatePermit {
    /// Lets go of the permit. The first delivery in line gets it and is
    /// given back to run (on this thread); with nobody in line the permit
    /// goes back to the semaphore.
    pub fn pass(mut self) -> Option<(Waiter, GatePermit)> {
        let guard = self.guard.take()?;
        let gate = self.gate.clone();
        let mut line = gate.line();
        match line.pop_front() {
            Some(w) => {
                drop(line);
                Some((w, gate.permit(guard)))
            }
            None => {
                drop(guard);
                None
            }
        }
    }
}

impl Drop for GatePermit {
    fn drop(&mut self) {
        if self.guard.is_none() {
            return;
        }
        let rest = GatePermit {
            gate: self.gate.clone(),
            guard: self.guard.take(),
        };
        if let Some((w, p)) = rest.pass() {
            crate::pool::unblock(move || run_line(w, p)).detach();
        }
    }
}

/// Runs a delivery and every one it hands on, on this thread (a loop, not
/// recursion: a long line must not grow the stack).
pub fn run_line(mut w: Waiter, mut p: GatePermit) {
    while let Some((next, permit)) = (w.0)(p) {
        w = next;
        p = permit;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    /// A waiter that counts itself, checks the limit, and hands on.
    fn counting(
        running: Arc<AtomicUsize>,
        most: Arc<AtomicUsize>,
        done: Arc<AtomicUsize>,
    ) -> Waiter {
        Waiter::new(move |p: GatePermit| {
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(now, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(2));
            running.fetch_sub(1, Ordering::SeqCst);
            done.fetch_add(1, Ordering::SeqCst);
            p.pass()
        })
    }

    #[test]
    fn the_line_runs_at_most_n_and_everyone_gets_through() {
        let gate = Gate::new(2);
        let (running, most, done) = (Arc::default(), Arc::default(), Arc::default());
        let mut threads = Vec::new();
        for _ in 0..8 {
            let g = gate.clone();
            let w = counting(Arc::clone(&running), Arc::clone(&most), Arc::clone(&done));
            threads.push(std::thread::spawn(move || match g.enter(w) {
                Entered::Now(w, p) => run_line(w, p),
                Entered::InLine => {}
                Entered::Wait(_) => panic!("nobody waits on the semaphore"),
            }));
        }
        for t in threads {
            t.join().unwrap();
        }
        // Those in line ran on the threads that passed them on.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while done.load(Ordering::SeqCst) < 8 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(done.load(Ordering::SeqCst), 8);
        assert!(most.load(Ordering::SeqCst) <= 2, "{most:?}");
        assert_eq!(gate.in_line(), 0);
        // Every permit came back.
        let a = gate.try_acquire().expect("first permit");
        let b = gate.try_acquire().expect("second permit");
        assert!(gate.try_acquire().is_none());
        drop((a, b));
    }

    #[test]
    fn a_permit_dropped_without_passing_still_serves_the_line() {
        let gate = Gate::new(1);
        let held = gate.try_acquire().unwrap();
        let done = Arc::new(AtomicUsize::new(0));
        let d = done.clone();
        let w = Waiter::new(move |p| {
            d.fetch_add(1, Ordering::SeqCst);
            drop(p);
            None
        });
        assert!(matches!(gate.enter(w), Entered::InLine));
        drop(held);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while done.load(Ordering::SeqCst) == 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(done.load(Ordering::SeqCst), 1);
        assert!(gate.try_acquire().is_some(), "the permit came back");
    }

    #[test]
    fn the_line_takes_nobody_while_a_task_waits_on_the_semaphore() {
        let gate = Gate::new(1);
        let held = gate.try_acquire().unwrap();
        let g = gate.clone();
        let task = std::thread::spawn(move || smol::block_on(g.acquire()));
        while gate.waiting.load(Ordering::SeqCst) == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        let w = Waiter::new(|_| None);
        assert!(matches!(gate.enter(w), Entered::Wait(_)));
        assert!(gate.try_acquire().is_none());
        drop(held);
        let p = task.join().unwrap();
        drop(p);
        assert!(gate.try_acquire().is_some());
    }
}
