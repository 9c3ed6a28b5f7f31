//! The queue runner: takes queued messages to delivery, records what is
//! done, schedules retries and sends bounces.
//!
//! Each message is one task on the executor, in three steps: prepare
//! (blocking: open it, expand and route every recipient; plan.rs), deliver
//! (each agent's share of the destinations, concurrently, each agent
//! within its own concurrency limit; see deliver/registry.rs), finish
//! (blocking: log, bounce, save state or remove; finish.rs); when one
//! blocking agent has the whole message, its delivery and the finish run
//! on the same thread (plan.rs, `deliver_and_finish`). New mail is
//! handed over the moment it is committed; deferred mail waits in a timer
//! heap until its next attempt.
//!
//! The runner knows which messages are in flight. A control command
//! (`postern queue hold|delete|...`) takes a message exclusively with
//! [`Runner::exclusive`]: it waits until a delivery in progress has
//! finished, and no delivery starts while it holds the message, so nothing
//! is delivered twice or half-deleted. A job that finds its message taken
//! (a flush during a delivery, a retry during a control command) runs
//! when the holder lets go, so it is never lost. A message is removed
//! only when every destination is delivered or bounced; what was done is
//! written to its state file first.

mod finish;
mod plan;

pub(crate) use plan::scan_headers;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use smol::channel::{Receiver, Sender};
use smol::future::FutureExt;
use smol::lock::{Semaphore, SemaphoreGuardArc};
use smol::Executor;

use super::schedule::Backoff;
use super::spool::Spool;
use crate::clock::now_secs;
use crate::deliver::gate::{run_line, Entered};
use crate::deliver::registry::Registry;
use crate::directory::Directory;
use crate::log;
use crate::route::Router;

#[derive(Clone, Debug)]
pub struct Job {
    pub id: String,
    /// Queued when postern started: an earlier run may have delivered parts.
    pub recovered: bool,
    /// Just committed: never tried, so there is no state file to read or remove.
    pub fresh: bool,
}

/// What the runner is given besides the spool, directory and agents.
pub struct Settings {
    pub backoff: Backoff,
    pub hostname: String,
    /// A message with this many Received: headers is a loop.
    pub max_received: usize,
    /// Messages being worked on at once (each holds its envelope and
    /// header section in memory, not a file descriptor, while it waits for
    /// an agent).
    pub active_limit: usize,
    /// One delay notice after this long undelivered; zero: never.
    pub delay_warning: Duration,
    /// How long the content filter may take to answer the end of data.
    pub filter_data_timeout: Duration,
}

/// What the runner delivers with, from the configuration: replaced as a
/// whole when the configuration is reloaded (a delivery in progress keeps
/// the parts it started with).
pub struct Parts {
    pub directory: Arc<Directory>,
    pub router: Router,
    pub registry: Registry,
    pub settings: Settings,
}

pub struct Runner {
    pub spool: Arc<Spool>,
    parts: std::sync::RwLock<Arc<Parts>>,
    jobs: Sender<Job>,
    timer: Sender<(i64, String)>,
    flights: Mutex<HashMap<String, Flight>>,
    closed: AtomicBool,
    /// Permits for the blocking steps (prepare, finish).
    steps: Semaphore,
    /// Messages worked on at once (`active_limit`).
    active: Arc<Semaphore>,
    /// Where message tasks run; set by [`Runner::start`].
    ex: std::sync::OnceLock<Arc<Executor<'static>>>,
}

/// What a message's delivery holds from the moment it is claimed until it
/// is finished: its claim and its place among the active messages.
pub(super) struct Hold {
    _landing: Landing,
    _active: SemaphoreGuardArc,
}

/// A delivery handed to a gate's line and never run (its task or thread
/// went away, or it panicked): the message is tried again later, never
/// left in the queue until the next start.
struct Unrun {
    runner: Arc<Runner>,
    id: String,
    armed: bool,
}

impl Drop for Unrun {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if std::thread::panicking() {
            log::queue_problem(&self.id, "delivery attempt crashed; retrying later");
        }
        self.runner
            .schedule(std::mem::take(&mut self.id), now_secs() + 60);
    }
}

/// Prepare and finish steps running at once. Each holds a thread of the
/// blocking pool while it works (its stack and, with glibc, a malloc
/// arena): without a bound, a flush of thousands of queued messages
/// started a step for each of `active_limit` messages at once, and the
/// pool grew to hundreds of threads (50 MB of RSS for a 10,000-message
/// flush). The steps are short file work; more of them at once than this
/// only adds threads, not throughput.
pub const BLOCKING_STEPS: usize = 16;

/// A message someone is working on: a delivery, or a control command.
#[derive(Default)]
struct Flight {
    control: bool,
    /// Control commands waiting for this flight to land.
    waiters: Vec<Sender<()>>,
    /// A job that came for the message meanwhile (a flush during a
    /// delivery, a retry during a control command): run when it lands.
    again: Option<Job>,
}

/// The receiving ends, consumed by [`Runner::start`].
pub struct Channels {
    jobs: Receiver<Job>,
    timer: Receiver<(i64, String)>,
}

/// A message taken by a control command; released on drop.
pub struct Exclusive<'a> {
    runner: &'a Runner,
    id: String,
}

impl Drop for Exclusive<'_> {
    fn drop(&mut self) {
        self.runner.land(&self.id);
    }
}

/// Releases a delivery's claim on its message, even if the task panicked.
struct Landing {
    runner: Arc<Runner>,
    id: String,
}

impl Drop for Landing {
    fn drop(&mut self) {
        self.runner.land(&self.id);
    }
}

impl Runner {
    pub fn new(spool: Arc<Spool>, parts: Parts) -> (Runner, Channels) {
        let (jobs_tx, jobs_rx) = smol::channel::unbounded();
        let (timer_tx, timer_rx) = smol::channel::unbounded();
        let active = Arc::new(Semaphore::new(parts.settings.active_limit.max(1)));
        let r = Runner {
            spool,
            parts: std::sync::RwLock::new(Arc::new(parts)),
            jobs: jobs_tx,
            timer: timer_tx,
            flights: Mutex::new(HashMap::new()),
            closed: AtomicBool::new(false),
            steps: Semaphore::new(BLOCKING_STEPS),
            active,
            ex: std::sync::OnceLock::new(),
        };
        (
            r,
            Channels {
                jobs: jobs_rx,
                timer: timer_rx,
            },
        )
    }

    /// The parts deliveries start with now.
    pub fn parts(&self) -> Arc<Parts> {
        self.parts.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// A reloaded configuration: deliveries that start from now on use
    /// these parts. The number of messages worked on at once
    /// (active_limit) is the one the runner started with.
    pub fn reconfigure(&self, parts: Parts) {
        *self.parts.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(parts);
    }

    /// Hands a committed message to delivery now.
    pub fn enqueue(&self, id: String) {
        self.send(Job {
            id,
            recovered: false,
            fresh: true,
        });
    }

    /// Destinations found unreachable are tried again at the next
    /// delivery (`postern queue flush`, like Postfix's `postqueue -f`).
    pub fn revive_destinations(&self) {
        self.parts().registry.revive();
    }

    /// Tries a queued message now (flush, release, requeue).
    pub fn flush(&self, id: String) {
        self.send(Job {
            id,
            recovered: false,
            fresh: false,
        });
    }

    /// Tries the message again at Unix time `at`.
    pub fn schedule(&self, id: String, at: i64) {
        let _ = self.timer.try_send((at, id));
    }

    fn send(&self, job: Job) {
        let _ = self.jobs.try_send(job);
    }

    /// Messages found at start: due ones now, the others at their time.
    pub fn enqueue_recovered(&self, queued: Vec<(String, i64)>) {
        let now = now_secs();
        for (id, next) in queued {
            if next <= now {
                self.send(Job {
                    id,
                    recovered: true,
                    fresh: false,
                });
            } else {
                self.schedule(id, next);
            }
        }
    }

    /// Stops taking new jobs; deliveries in flight go on.
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.jobs.close();
        self.timer.close();
    }

    /// Waits (blocking) until no delivery is in flight, at most `t`.
    /// Returns how many were still in flight.
    pub fn wait_idle(&self, t: Duration) -> usize {
        let deadline = Instant::now() + t;
        loop {
            let n = self.lock().len();
            if n == 0 || Instant::now() >= deadline {
                return n;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the dispatcher and the timer on `ex`.
    pub fn start(self: &Arc<Self>, ex: &Arc<Executor<'static>>, ch: Channels) {
        let _ = self.ex.set(ex.clone());
        ex.spawn(timer_loop(ch.timer, self.jobs.clone())).detach();
        ex.spawn(self.clone().dispatch(ch.jobs, ex.clone()))
            .detach();
    }

    /// One task per message, at most `active_limit` at once.
    async fn dispatch(self: Arc<Self>, rx: Receiver<Job>, ex: Arc<Executor<'static>>) {
        while let Ok(job) = rx.recv().await {
            let active = self.active.acquire_arc().await;
            let id = job.id.clone();
            let run = self.clone().process(job, active);
            self.spawn_task(&ex, id, run);
        }
    }

    /// Runs one message's work as its own task; a panic in it is logged
    /// and the message tried again later.
    fn spawn_task(
        self: &Arc<Self>,
        ex: &Executor<'static>,
        id: String,
        run: impl std::future::Future<Output = ()> + Send + 'static,
    ) {
        let again = self.clone();
        ex.spawn(async move {
            if std::panic::AssertUnwindSafe(run)
                .catch_unwind()
                .await
                .is_err()
            {
                log::queue_problem(&id, "delivery attempt crashed; retrying later");
                again.schedule(id, now_secs() + 60);
            }
        })
        .detach();
    }

    /// A message just committed, on the thread that committed it
    /// (blocking; the client has its answer already). When the runner has
    /// room, the message is prepared here, while it is still in the page
    /// cache, and when one command transport has it all, it goes straight
    /// into that transport's line (gate.rs): delivered on this thread if a
    /// command may start now, else by the thread whose command ends next.
    /// No hand-off between threads, which on a small box is a good part
    /// of a piped message's cost. Else it goes the usual way.
    pub fn take_fresh(self: &Arc<Self>, id: String) {
        let Some((job, plan, hold)) = self.prepare_fresh(&id) else {
            self.enqueue(id);
            return;
        };
        let (Some(plan), Some(ex)) = (plan, self.ex.get()) else {
            return;
        };
        match self.gated(job, plan, hold) {
            Ok((gate, w)) => match gate.enter(w) {
                Entered::Now(w, p) => run_line(w, p),
                Entered::InLine => {}
                Entered::Wait(w) => ex.spawn(gate.wait_then_run(w)).detach(),
            },
            Err((job, plan, hold)) => {
                let me = self.clone();
                let run = async move { me.carry_on(job, plan, hold).await };
                self.spawn_task(ex, id, run);
            }
        }
    }

    /// The prepare step for a message just committed (blocking). `None`
    /// when the runner is busy (every active place or step taken, or the
    /// message claimed): it then goes the usual way, [`Runner::enqueue`].
    fn prepare_fresh(self: &Arc<Self>, id: &str) -> Option<(Job, Option<plan::Plan>, Hold)> {
        if self.closed.load(Ordering::SeqCst) || self.ex.get().is_none() {
            return None;
        }
        let active = self.active.try_acquire_arc()?;
        let step = self.steps.try_acquire()?;
        let job = Job {
            id: id.to_string(),
            recovered: false,
            fresh: true,
        };
        if !self.claim(&job) {
            return None;
        }
        let hold = Hold {
            _landing: Landing {
                runner: self.clone(),
                id: job.id.clone(),
            },
            _active: active,
        };
        let prepared =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.prepare(&job)));
        drop(step);
        let plan = prepared.unwrap_or_else(|_| {
            log::queue_problem(id, "delivery attempt crashed; retrying later");
            self.schedule(id.to_string(), now_secs() + 60);
            None
        });
        Some((job, plan, hold))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Flight>> {
        self.flights.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Claims a message for delivery: false if a delivery or a control
    /// command already has it; the job then runs again when that lands
    /// (a message gone by then is simply not found).
    fn claim(&self, job: &Job) -> bool {
        let mut f = self.lock();
        if let Some(flight) = f.get_mut(&job.id) {
            // Not fresh any more: the holder may have written a state file.
            let again = flight.again.get_or_insert(Job {
                fresh: false,
                ..job.clone()
            });
            again.recovered |= job.recovered;
            return false;
        }
        f.insert(job.id.clone(), Flight::default());
        true
    }

    fn land(&self, id: &str) {
        let Some(f) = self.lock().remove(id) else {
            return;
        };
        for w in f.waiters {
            let _ = w.try_send(());
        }
        if let Some(job) = f.again {
            self.send(job);
        }
    }

    /// Is a delivery of `id` in progress?
    pub fn in_flight(&self, id: &str) -> bool {
        self.lock().get(id).is_some_and(|f| !f.control)
    }

    /// Messages being delivered now.
    pub fn active_count(&self) -> usize {
        self.lock().values().filter(|f| !f.control).count()
    }

    /// What is in the queue: being delivered, waiting, held (counted in
    /// the spool's directories, blocking).
    pub fn counts(&self) -> crate::status::QueueCounts {
        let queued = self.spool.list().map(|v| v.len()).unwrap_or(0);
        let held = self.spool.held_count();
        let active = self.active_count().min(queued);
        crate::status::QueueCounts {
            active,
            deferred: queued - active,
            held,
        }
    }

    /// Takes `id` for a control command: waits up to `wait` for a delivery
    /// in progress to finish. `Err(())`: still busy after `wait`.
    pub async fn exclusive(&self, id: &str, wait: Duration) -> Result<Exclusive<'_>, ()> {
        let deadline = Instant::now() + wait;
        loop {
            let rx = {
                let mut f = self.lock();
                match f.get_mut(id) {
                    None => {
                        f.insert(
                            id.to_string(),
                            Flight {
                                control: true,
                                ..Flight::default()
                            },
                        );
                        return Ok(Exclusive {
                            runner: self,
                            id: id.to_string(),
                        });
                    }
                    Some(flight) => {
                        let (tx, rx) = smol::channel::bounded(1);
                        flight.waiters.push(tx);
                        rx
                    }
                }
            };
            let left = deadline.saturating_duration_since(Instant::now());
            let landed = smol::future::or(async { rx.recv().await.is_ok() }, async {
                smol::Timer::after(left).await;
                false
            })
            .await;
            if !landed && Instant::now() >= deadline {
                return Err(());
            }
        }
    }

    async fn process(self: Arc<Self>, job: Job, active: SemaphoreGuardArc) {
        if self.closed.load(Ordering::SeqCst) || !self.claim(&job) {
            return;
        }
        let hold = Hold {
            _landing: Landing {
                runner: self.clone(),
                id: job.id.clone(),
            },
            _active: active,
        };
        let me = self.clone();
        let j = job.clone();
        let step = self.steps.acquire().await;
        let prepared = crate::pool::unblock(move || me.prepare(&j)).await;
        drop(step);
        let Some(plan) = prepared else {
            return;
        };
        self.carry_on(job, plan, hold).await;
    }

    /// Steps two and three: deliver, then finish.
    async fn carry_on(self: &Arc<Self>, job: Job, plan: plan::Plan, hold: Hold) {
        let (mut job, mut plan, mut hold) = (job, plan, hold);
        if plan.hold.is_none() {
            match self.gated(job, plan, hold) {
                Ok((gate, w)) => {
                    match gate.enter(w) {
                        Entered::Now(w, p) => {
                            crate::pool::unblock(move || run_line(w, p)).detach();
                        }
                        Entered::InLine => {}
                        Entered::Wait(w) => gate.wait_then_run(w).await,
                    }
                    return;
                }
                Err(back) => (job, plan, hold) = back,
            }
            match self.deliver_and_finish(job, plan, hold).await {
                None => return,
                Some(back) => (job, plan, hold) = back,
            }
            self.deliver(&mut plan).await;
        }
        let me = self.clone();
        let _step = self.steps.acquire().await;
        crate::pool::unblock(move || {
            me.finish(&job, plan);
            drop(hold);
        })
        .await;
    }
}

/// Sleeps until the earliest deferred message is due, then hands it back.
async fn timer_loop(rx: Receiver<(i64, String)>, jobs: Sender<Job>) {
    let mut heap: BinaryHeap<Reverse<(i64, String)>> = BinaryHeap::new();
    loop {
        let now = now_secs();
        while heap.peek().is_some_and(|Reverse((t, _))| *t <= now) {
            let Reverse((_, id)) = heap.pop().expect("peeked");
            let job = Job {
                id,
                recovered: false,
                fresh: false,
            };
            if jobs.send(job).await.is_err() {
                return;
            }
        }
        let wait = heap
            .peek()
            .map(|Reverse((t, _))| Duration::from_secs((t - now).max(1) as u64));
        let next = match wait {
            Some(w) => {
                smol::future::or(async { Some(rx.recv().await) }, async {
                    smol::Timer::after(w).await;
                    None
                })
                .await
            }
            None => Some(rx.recv().await),
        };
        match next {
            Some(Ok(item)) => heap.push(Reverse(item)),
            Some(Err(_)) => return,
            None => {}
        }
    }
}

#[cfg(test)]
mod tests;
