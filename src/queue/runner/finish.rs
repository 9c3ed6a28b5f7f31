//! Step three of a delivery attempt (blocking): log each destination's
//! result, give up on mail past its lifetime, bounce failures to the
//! sender, then remove the finished message or save its state and
//! schedule the next attempt.

use super::plan::{Done, Plan};
use super::{Job, Runner};
use crate::clock::{now_micros, now_secs};
use crate::deliver::{Outcome, Status};
use crate::log;
use crate::queue::dsn::{self, Failure};
use crate::queue::envelope::{LastResult, QueueEnvelope};
use crate::queue::schedule::Next;
use crate::smtp::address::{Address, ReversePath};
use crate::smtp::reply::Esc;

impl Runner {
    pub(super) fn finish(&self, job: &Job, plan: Plan) {
        log::batch(|| self.finish_logged(job, plan));
    }

    fn finish_logged(&self, job: &Job, mut plan: Plan) {
        if let Some(why) = plan.hold.take() {
            self.hold_message(&job.id, &why);
            return;
        }
        let now = now_secs();
        self.expire(&mut plan, now);
        self.log_results(&job.id, &plan);
        let failures: Vec<&Done> = plan
            .results
            .iter()
            .filter(|d| d.outcome.is_failed())
            .collect();
        let bounced = failures.is_empty()
            || self.notify(
                Notice::Failed,
                &plan.msg.env,
                plan.msg.headers(),
                &failures,
                now,
            );
        for d in &plan.results {
            let finished = match d.outcome.status {
                Status::Delivered => true,
                Status::Failed => bounced,
                Status::Deferred => false,
            };
            if let (true, Some(k)) = (finished, &d.key) {
                plan.state.done.insert(k.clone());
            }
        }
        let pending: Vec<&Done> = plan
            .results
            .iter()
            .filter(|d| match d.outcome.status {
                Status::Deferred => true,
                Status::Failed => !bounced,
                Status::Delivered => false,
            })
            .collect();
        if pending.is_empty() {
            let with_state = !job.fresh;
            match self.spool.remove(&job.id, with_state) {
                Ok(()) => log::removed(&job.id),
                Err(e) => {
                    log::queue_problem(&job.id, &format!("cannot remove finished message: {e}"))
                }
            }
            return;
        }
        self.warn_if_late(&mut plan.state, &plan.msg, &pending, now);
        let last: Vec<LastResult> = pending
            .iter()
            .map(|d| LastResult {
                orig: d.orig.clone(),
                to: d.to.clone(),
                status: d.outcome.status_word().to_string(),
                text: format!("{} {}", esc_text(d.outcome.esc), d.outcome.text),
            })
            .collect();
        self.reschedule(job, plan, last, now);
    }

    /// Past the queue lifetime, a deferral becomes a failure (bounce).
    fn expire(&self, plan: &mut Plan, now: i64) {
        let deferred = plan.results.iter().any(|d| d.outcome.is_deferred());
        let arrival = plan.msg.env.arrival_secs();
        let give_up = deferred
            && self
                .parts()
                .settings
                .backoff
                .next(plan.state.attempts + 1, arrival, now)
                == Next::GiveUp;
        if !give_up {
            return;
        }
        for d in plan.results.iter_mut() {
            if d.outcome.is_deferred() {
                let text = format!("delivery time expired; last problem: {}", d.outcome.text);
                let remote = d.outcome.remote.take();
                d.outcome = Outcome::failed(Esc(5, 4, 7), text);
                d.outcome.remote = remote;
            }
        }
    }

    fn log_results(&self, id: &str, plan: &Plan) {
        let delay = (now_micros().saturating_sub(plan.msg.env.arrival_micros)) as f64 / 1e6;
        for d in &plan.results {
            let dsn = esc_text(d.outcome.esc);
            log::delivery(&log::DeliveryInfo {
                id,
                to: &d.to,
                orig_to: (!d.orig.eq_ignore_ascii_case(&d.to)).then_some(d.orig.as_str()),
                relay: &d.relay,
                tls: d.outcome.remote.as_ref().and_then(|r| r.tls.as_deref()),
                delay_secs: delay,
                dsn: &dsn,
                status: d.outcome.status_word(),
                text: &d.outcome.text,
            });
        }
    }

    /// Saves what was done and when to try again, and sets the timer.
    fn reschedule(&self, job: &Job, mut plan: Plan, last: Vec<LastResult>, now: i64) {
        let arrival = plan.msg.env.arrival_secs();
        plan.state.attempts += 1;
        let next = match self
            .parts()
            .settings
            .backoff
            .next(plan.state.attempts, arrival, now)
        {
            Next::RetryAt(t) => t,
            Next::GiveUp => now + self.parts().settings.backoff.min.as_secs() as i64,
        };
        plan.state.next_attempt = next;
        plan.state.last = last;
        if let Err(e) = self.spool.save_state(&job.id, &plan.state) {
            log::queue_problem(&job.id, &format!("cannot save delivery state: {e}"));
        }
        self.schedule(job.id.clone(), next);
    }

    fn hold_message(&self, id: &str, why: &str) {
        match self.spool.hold(id) {
            Ok(()) => log::held(id, why),
            Err(e) => {
                log::queue_problem(id, &format!("cannot put on hold ({why}): {e}"));
                self.schedule(id.to_string(), now_secs() + 60);
            }
        }
    }

    /// One delay notice to the sender once a message has waited
    /// `delay_warning` (Postfix's delay_warning_time; RFC 3464
    /// `Action: delayed`), never for the null sender.
    fn warn_if_late(
        &self,
        state: &mut crate::queue::envelope::DeliveryState,
        msg: &crate::queue::spool::QueuedMessage,
        pending: &[&Done],
        now: i64,
    ) {
        let limit = self.parts().settings.delay_warning.as_secs() as i64;
        let age = now - msg.env.arrival_secs();
        if state.warned || limit == 0 || age < limit || pending.is_empty() {
            return;
        }
        if let ReversePath::Null = msg.env.sender {
            return;
        }
        let until =
            msg.env.arrival_secs() + self.parts().settings.backoff.lifetime.as_secs() as i64;
        if self.notify(
            Notice::Delayed { until },
            &msg.env,
            msg.headers(),
            pending,
            now,
        ) {
            state.warned = true;
        }
    }

    /// Queues a notice about `about`: a bounce or a delay notice to the
    /// sender, or, for a notice that itself failed, one report to the
    /// postmaster, which is never reported again. Returns false if it could
    /// not be queued (then the failures stay pending and are retried).
    fn notify(
        &self,
        kind: Notice,
        env: &QueueEnvelope,
        headers: &[u8],
        about: &[&Done],
        now: i64,
    ) -> bool {
        let (dsn_kind, to, proto) = match (&env.sender, kind) {
            (ReversePath::Address(sender), Notice::Failed) => {
                (dsn::Kind::Bounce, sender.clone(), "bounce")
            }
            (ReversePath::Address(sender), Notice::Delayed { until }) => {
                (dsn::Kind::Delay { until }, sender.clone(), "delay")
            }
            // A double bounce that fails is the end of the line (RFC 5321
            // 4.5.5: never bounce a bounce; Postfix drops it too).
            (ReversePath::Null, _) if env.protocol == DOUBLE_BOUNCE => {
                log::queue_problem(&env.id, "undeliverable report to the postmaster dropped");
                return true;
            }
            (ReversePath::Null, Notice::Failed) => (
                dsn::Kind::DoubleBounce,
                Address::new("postmaster", &self.parts().settings.hostname),
                DOUBLE_BOUNCE,
            ),
            (ReversePath::Null, Notice::Delayed { .. }) => return true,
        };
        let (notice_id, micros) = crate::queue::id::next(now_micros());
        let list: Vec<Failure> = about
            .iter()
            .map(|d| Failure {
                final_rcpt: d.to.clone(),
                orig_rcpt: d.orig.clone(),
                esc: d.outcome.esc,
                text: d.outcome.text.clone(),
                remote: d.outcome.remote.clone(),
            })
            .collect();
        let body = dsn::build(&dsn::Report {
            kind: dsn_kind,
            hostname: &self.parts().settings.hostname,
            queue_id: &env.id,
            bounce_id: &notice_id,
            sender: &to.to_string(),
            arrival: env.arrival_secs(),
            now,
            headers,
            failures: &list,
        });
        let nenv = QueueEnvelope {
            id: notice_id.clone(),
            arrival_micros: micros,
            pid: std::process::id(),
            client_ip: None,
            client_name: "localhost".into(),
            helo: String::new(),
            protocol: proto.into(),
            sender: ReversePath::Null,
            recipients: vec![to],
            smtputf8: env.smtputf8,
            // Our own notice: it may be DKIM-signed (dkim/).
            handling: crate::queue::envelope::Handling {
                sign: true,
                ..Default::default()
            },
        };
        match self.spool.submit(&nenv, &body) {
            Ok(()) => {
                match kind {
                    Notice::Failed if proto == DOUBLE_BOUNCE => log::notice_queued(
                        &env.id,
                        "postmaster non-delivery notification",
                        &notice_id,
                    ),
                    Notice::Failed => log::bounce_queued(&env.id, &notice_id),
                    Notice::Delayed { .. } => {
                        log::notice_queued(&env.id, "sender delay notification", &notice_id)
                    }
                }
                self.enqueue(notice_id);
                true
            }
            Err(e) => {
                log::queue_problem(
                    &env.id,
                    &format!("cannot queue a delivery status notification: {e}"),
                );
                false
            }
        }
    }
}

/// What a notice is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Notice {
    Failed,
    Delayed { until: i64 },
}

/// The protocol recorded for a report to the postmaster about a notice
/// that could not be delivered: its own failures are not reported again.
const DOUBLE_BOUNCE: &str = "double-bounce";

pub(crate) fn esc_text(Esc(c, s, d): Esc) -> String {
    format!("{c}.{s}.{d}")
}
