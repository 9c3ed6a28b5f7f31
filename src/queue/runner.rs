//! The queue runner: takes queued messages to delivery, records what is
//! done, schedules retries and sends bounces.
//!
//! Delivery runs on a fixed set of plain threads (blocking file I/O and
//! fsync belong there, not on the async executor), fed by a channel of
//! queue IDs. New mail is handed over the moment it is committed; deferred
//! mail waits in a timer heap until its next attempt. A message is removed
//! only when every destination is delivered or bounced; what was done is
//! written to its state file first, so nothing is delivered twice.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use smol::channel::{Receiver, Sender};

use super::dsn::{self, Failure};
use super::envelope::QueueEnvelope;
use super::schedule::{Backoff, Next};
use super::spool::{OpenError, QueuedMessage, Spool};
use crate::clock::{now_micros, now_secs};
use crate::deliver::{Agent, Outcome, Target};
use crate::directory::{Dest, Directory, FailReason, Resolution};
use crate::log;
use crate::route::{Route, Router};
use crate::smtp::address::{Address, ReversePath};
use crate::smtp::reply::Esc;

#[derive(Clone, Debug)]
pub struct Job {
    pub id: String,
    /// Queued when postern started: an earlier run may have delivered parts.
    pub recovered: bool,
    /// Just committed: never tried, so there is no state file to read or remove.
    pub fresh: bool,
}

pub struct Runner {
    pub spool: Arc<Spool>,
    pub directory: Arc<Directory>,
    pub router: Router,
    pub maildir: Box<dyn Agent>,
    pub backoff: Backoff,
    pub hostname: String,
    pub max_received: usize,
    jobs: Sender<Job>,
    timer: Sender<(i64, String)>,
}

/// The receiving ends, consumed by [`Runner::start`].
pub struct Channels {
    jobs: Receiver<Job>,
    timer: Receiver<(i64, String)>,
}

/// One destination's result, for logging, state and bounces.
struct Done {
    key: Option<String>,
    orig: String,
    to: String,
    relay: &'static str,
    outcome: Outcome,
}

impl Runner {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        spool: Arc<Spool>,
        directory: Arc<Directory>,
        router: Router,
        maildir: Box<dyn Agent>,
        backoff: Backoff,
        hostname: String,
        max_received: usize,
    ) -> (Runner, Channels) {
        let (jobs_tx, jobs_rx) = smol::channel::unbounded();
        let (timer_tx, timer_rx) = smol::channel::unbounded();
        let r = Runner {
            spool,
            directory,
            router,
            maildir,
            backoff,
            hostname,
            max_received,
            jobs: jobs_tx,
            timer: timer_tx,
        };
        (
            r,
            Channels {
                jobs: jobs_rx,
                timer: timer_rx,
            },
        )
    }

    /// Hands a committed message to delivery now.
    pub fn enqueue(&self, id: String) {
        let _ = self.jobs.try_send(Job {
            id,
            recovered: false,
            fresh: true,
        });
    }

    /// Messages found at start: due ones now, the others at their time.
    pub fn enqueue_recovered(&self, queued: Vec<(String, i64)>) {
        let now = now_secs();
        for (id, next) in queued {
            if next <= now {
                let _ = self.jobs.try_send(Job {
                    id,
                    recovered: true,
                    fresh: false,
                });
            } else {
                let _ = self.timer.try_send((next, id));
            }
        }
    }

    /// Stops taking new jobs; delivery threads finish the one in hand.
    pub fn close(&self) {
        self.jobs.close();
        self.timer.close();
    }

    /// Starts `threads` delivery threads and returns the timer task, which
    /// must be spawned on the executor.
    pub fn start(
        self: &Arc<Self>,
        threads: usize,
        ch: Channels,
    ) -> (
        Vec<std::thread::JoinHandle<()>>,
        impl std::future::Future<Output = ()>,
    ) {
        let mut handles = Vec::new();
        for i in 0..threads {
            let me = self.clone();
            let rx = ch.jobs.clone();
            let h = std::thread::Builder::new()
                .name(format!("deliver-{i}"))
                .spawn(move || {
                    while let Ok(job) = rx.recv_blocking() {
                        let id = job.id.clone();
                        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            me.process(&job)
                        }))
                        .is_err()
                        {
                            log::queue_problem(&id, "delivery attempt crashed; retrying later");
                            let _ = me.timer.try_send((now_secs() + 60, id));
                        }
                    }
                })
                .expect("spawn delivery thread");
            handles.push(h);
        }
        let jobs = self.jobs.clone();
        (handles, timer_loop(ch.timer, jobs))
    }

    fn process(&self, job: &Job) {
        let msg = match self.spool.open_message(&job.id) {
            Ok(m) => m,
            Err(OpenError::NotFound) => return,
            Err(OpenError::Corrupt(problem)) => {
                log::queue_problem(
                    &job.id,
                    &format!("damaged queue file moved to corrupt/: {problem}"),
                );
                self.spool.quarantine(&job.id);
                return;
            }
            Err(OpenError::Io(e)) => {
                log::queue_problem(&job.id, &format!("cannot read queue file: {e}"));
                let _ = self.timer.try_send((now_secs() + 60, job.id.clone()));
                return;
            }
        };
        let mut state = if job.fresh {
            Default::default()
        } else {
            self.spool.load_state(&job.id).unwrap_or_else(|e| {
                log::queue_problem(&job.id, &format!("damaged state file ignored: {e}"));
                Default::default()
            })
        };
        let headers = msg.header_bytes(256 * 1024).unwrap_or_default();
        let mut results = self.deliver_all(&msg, &headers, &state.done, job.recovered);

        let now = now_secs();
        let deferred = results
            .iter()
            .filter(|d| matches!(d.outcome, Outcome::Deferred { .. }))
            .count();
        let give_up = deferred > 0
            && self
                .backoff
                .next(state.attempts + 1, msg.env.arrival_secs(), now)
                == Next::GiveUp;
        if give_up {
            for d in results.iter_mut() {
                if let Outcome::Deferred { text, .. } = &d.outcome {
                    let text = format!("delivery time expired; last problem: {text}");
                    d.outcome = Outcome::failed(Esc(5, 4, 7), text);
                }
            }
        }
        let delay = (now_micros().saturating_sub(msg.env.arrival_micros)) as f64 / 1e6;
        for d in &results {
            let (status, dsn) = match &d.outcome {
                Outcome::Delivered { .. } => ("sent", "2.0.0".to_string()),
                Outcome::Deferred { esc, .. } => ("deferred", esc_text(*esc)),
                Outcome::Failed { esc, .. } => ("bounced", esc_text(*esc)),
            };
            log::delivery(&log::DeliveryInfo {
                id: &job.id,
                to: &d.to,
                orig_to: (!d.orig.eq_ignore_ascii_case(&d.to)).then_some(d.orig.as_str()),
                relay: d.relay,
                delay_secs: delay,
                dsn: &dsn,
                status,
                text: d.outcome.text(),
            });
        }
        let failures: Vec<&Done> = results
            .iter()
            .filter(|d| matches!(d.outcome, Outcome::Failed { .. }))
            .collect();
        let bounced = failures.is_empty() || self.bounce(&msg.env, &headers, &failures, now);
        for d in &results {
            let finished = match d.outcome {
                Outcome::Delivered { .. } => true,
                Outcome::Failed { .. } => bounced,
                Outcome::Deferred { .. } => false,
            };
            if let (true, Some(k)) = (finished, &d.key) {
                state.done.insert(k.clone());
            }
        }
        let pending = results.iter().any(|d| match d.outcome {
            Outcome::Deferred { .. } => true,
            Outcome::Failed { .. } => !bounced,
            Outcome::Delivered { .. } => false,
        });
        if !pending {
            match self.spool.remove(&job.id, !job.fresh) {
                Ok(()) => log::removed(&job.id),
                Err(e) => {
                    log::queue_problem(&job.id, &format!("cannot remove finished message: {e}"))
                }
            }
            return;
        }
        state.attempts += 1;
        let next = match self
            .backoff
            .next(state.attempts, msg.env.arrival_secs(), now)
        {
            Next::RetryAt(t) => t,
            Next::GiveUp => now + self.backoff.min.as_secs() as i64,
        };
        state.next_attempt = next;
        if let Err(e) = self.spool.save_state(&job.id, &state) {
            log::queue_problem(&job.id, &format!("cannot save delivery state: {e}"));
        }
        let _ = self.timer.try_send((next, job.id.clone()));
    }

    /// Expands every recipient, routes each destination, and delivers.
    fn deliver_all(
        &self,
        msg: &QueuedMessage,
        headers: &[u8],
        done: &std::collections::BTreeSet<String>,
        recovered: bool,
    ) -> Vec<Done> {
        let (received, delivered_to) = scan_headers(headers);
        let mut results = Vec::new();
        let mut targets: Vec<(Target, String, String, String)> = Vec::new();
        let mut seen = HashSet::new();
        let mut index = 0;
        for rcpt in &msg.env.recipients {
            let orig = rcpt.to_string();
            let dests = match self.directory.resolve(rcpt) {
                Ok(Resolution::Deliver(d)) => d,
                Ok(Resolution::Unknown) => vec![Dest::Fail {
                    address: orig.clone(),
                    why: FailReason::Unknown,
                }],
                Ok(Resolution::Loop) => vec![Dest::Fail {
                    address: orig.clone(),
                    why: FailReason::Loop,
                }],
                Err(e) => {
                    let outcome =
                        Outcome::deferred(Esc(4, 3, 0), format!("temporary lookup failure: {e}"));
                    results.push(Done {
                        key: None,
                        orig: orig.clone(),
                        to: orig,
                        relay: "none",
                        outcome,
                    });
                    continue;
                }
            };
            for dest in dests {
                index += 1;
                let key = dest.key();
                if !seen.insert(key.clone()) || done.contains(&key) {
                    continue;
                }
                let to = dest.address();
                let fail = |esc, text: String| Done {
                    key: Some(key.clone()),
                    orig: orig.clone(),
                    to: to.clone(),
                    relay: "none",
                    outcome: Outcome::failed(esc, text),
                };
                if received >= self.max_received {
                    results.push(fail(
                        Esc(5, 4, 6),
                        format!("mail forwarding loop: {received} Received: headers"),
                    ));
                    continue;
                }
                if delivered_to.iter().any(|d| d.eq_ignore_ascii_case(&to)) {
                    results.push(fail(Esc(5, 4, 6), format!("mail forwarding loop for {to}")));
                    continue;
                }
                match self.router.route(&dest) {
                    Route::Maildir(place) => {
                        targets.push((Target { place, address: to.clone(), index: index - 1 }, key, orig.clone(), to))
                    }
                    Route::Relay(domain) => results.push(Done {
                        key: Some(key),
                        orig: orig.clone(),
                        to,
                        relay: "none",
                        outcome: Outcome::deferred(
                            Esc(4, 4, 1),
                            format!("no outbound relay is configured for {domain}; the message stays queued"),
                        ),
                    }),
                    Route::Defer(esc, text) => {
                        results.push(Done { key: Some(key), orig: orig.clone(), to, relay: "none", outcome: Outcome::deferred(esc, text) })
                    }
                    Route::Bounce(esc, text) => results.push(fail(esc, text)),
                }
            }
        }
        if !targets.is_empty() {
            let list: Vec<Target> = targets.iter().map(|t| t.0.clone()).collect();
            let outcomes = self.maildir.deliver(msg, &list, recovered);
            for ((_, key, orig, to), outcome) in targets.into_iter().zip(outcomes) {
                results.push(Done {
                    key: Some(key),
                    orig,
                    to,
                    relay: self.maildir.name(),
                    outcome,
                });
            }
        }
        results
    }

    /// Queues a bounce to the sender. Returns false if it could not be
    /// queued (the failures then stay pending and are retried).
    fn bounce(&self, env: &QueueEnvelope, headers: &[u8], failures: &[&Done], now: i64) -> bool {
        let ReversePath::Address(sender) = &env.sender else {
            // Never bounce a bounce (RFC 5321 4.5.5).
            return true;
        };
        let (bounce_id, micros) = super::id::next(now_micros());
        let list: Vec<Failure> = failures
            .iter()
            .map(|d| Failure {
                final_rcpt: d.to.clone(),
                orig_rcpt: d.orig.clone(),
                esc: d.outcome.esc(),
                text: d.outcome.text().to_string(),
            })
            .collect();
        let body = dsn::build(&dsn::Report {
            hostname: &self.hostname,
            queue_id: &env.id,
            bounce_id: &bounce_id,
            sender: &sender.to_string(),
            arrival: env.arrival_secs(),
            now,
            headers,
            failures: &list,
        });
        let benv = QueueEnvelope {
            id: bounce_id.clone(),
            arrival_micros: micros,
            pid: std::process::id(),
            client_ip: None,
            client_name: "localhost".into(),
            helo: String::new(),
            protocol: "bounce".into(),
            sender: ReversePath::Null,
            recipients: vec![Address::clone(sender)],
            smtputf8: env.smtputf8,
        };
        match self.spool.submit(&benv, &body) {
            Ok(()) => {
                log::bounce_queued(&env.id, &bounce_id);
                self.enqueue(bounce_id);
                true
            }
            Err(e) => {
                log::queue_problem(&env.id, &format!("cannot queue bounce: {e}"));
                false
            }
        }
    }
}

fn esc_text(Esc(c, s, d): Esc) -> String {
    format!("{c}.{s}.{d}")
}

/// Counts `Received:` headers and collects `Delivered-To:` values.
fn scan_headers(headers: &[u8]) -> (usize, Vec<String>) {
    let Ok((list, _)) = mailparse::parse_headers(headers) else {
        return (0, Vec::new());
    };
    let mut received = 0;
    let mut delivered = Vec::new();
    for h in &list {
        let key = h.get_key_ref();
        if key.eq_ignore_ascii_case("Received") {
            received += 1;
        } else if key.eq_ignore_ascii_case("Delivered-To") {
            delivered.push(h.get_value().trim().trim_matches(['<', '>']).to_string());
        }
    }
    (received, delivered)
}

/// Sleeps until the earliest deferred message is due, then hands it back.
async fn timer_loop(rx: Receiver<(i64, String)>, jobs: Sender<Job>) {
    let mut heap: BinaryHeap<Reverse<(i64, String)>> = BinaryHeap::new();
    loop {
        let now = now_secs();
        while heap.peek().is_some_and(|Reverse((t, _))| *t <= now) {
            let Reverse((_, id)) = heap.pop().expect("peeked");
            if jobs
                .send(Job {
                    id,
                    recovered: false,
                    fresh: false,
                })
                .await
                .is_err()
            {
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
mod tests {
    use super::*;

    #[test]
    fn header_scan() {
        let h = b"Received: from a\n\tby b\nReceived: x\nDelivered-To: Alice@Example.test\nSubject: s\n";
        let (n, d) = scan_headers(h);
        assert_eq!(n, 2);
        assert_eq!(d, vec!["Alice@Example.test".to_string()]);
    }
}
