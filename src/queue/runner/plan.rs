//! Step one of a delivery attempt (blocking): open the message, read its
//! state, expand every recipient, check for loops and route each final
//! destination — into the agents' shares and the decisions the runner
//! carries out itself (defer, bounce, discard, hold).

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use super::{Hold, Job, Parts, Runner, Unrun};
use crate::clock::now_secs;
use crate::deliver::gate::{Gate, GatePermit, Waiter};
use crate::deliver::{AgentKind, BlockingAgent, Outcome, Target};
use crate::directory::{Dest, FailReason, Resolution};
use crate::log;
use crate::queue::envelope::DeliveryState;
use crate::queue::spool::{OpenError, QueuedMessage};
use crate::route::Route;
use crate::smtp::reply::Esc;

/// One destination's result, for logging, state and bounces.
pub(super) struct Done {
    /// `None`: not a destination (the recipient could not be expanded).
    pub key: Option<String>,
    pub orig: String,
    pub to: String,
    /// The log's relay= field.
    pub relay: String,
    pub outcome: Outcome,
}

/// Everything one attempt at one message works on.
pub(super) struct Plan {
    pub msg: Arc<QueuedMessage>,
    pub state: DeliveryState,
    /// The state file could not be read: deliver as after a crash.
    pub recovered: bool,
    /// Results known without an agent.
    pub results: Vec<Done>,
    /// Each agent's share: targets with their destination keys.
    pub groups: BTreeMap<AgentKind, Vec<(Target, String)>>,
    /// A route said: hold the whole message, for this reason.
    pub hold: Option<String>,
}

impl Runner {
    /// `None` when there is nothing to deliver (gone, damaged: handled).
    pub(super) fn prepare(&self, job: &Job) -> Option<Plan> {
        let msg = match self.spool.open_message(&job.id) {
            Ok(m) => m,
            Err(OpenError::NotFound) => return None,
            Err(OpenError::Corrupt(problem)) => {
                log::queue_problem(
                    &job.id,
                    &format!("damaged queue file moved to corrupt/: {problem}"),
                );
                self.spool.quarantine(&job.id);
                return None;
            }
            Err(OpenError::Io(e)) => {
                log::queue_problem(&job.id, &format!("cannot read queue file: {e}"));
                self.schedule(job.id.clone(), now_secs() + 60);
                return None;
            }
        };
        let mut recovered = job.recovered;
        let state = if job.fresh {
            DeliveryState::default()
        } else {
            self.spool.load_state(&job.id).unwrap_or_else(|e| {
                // What was delivered is unknown: redeliver as after a crash,
                // so Maildir copies that landed are recognised by name.
                log::queue_problem(
                    &job.id,
                    &format!("damaged state file ignored ({e}); delivering as after a restart"),
                );
                recovered = true;
                DeliveryState::default()
            })
        };
        let mut plan = Plan {
            msg: Arc::new(msg),
            state,
            recovered,
            results: Vec::new(),
            groups: BTreeMap::new(),
            hold: None,
        };
        self.route_all(&mut plan);
        Some(plan)
    }

    /// Expands every recipient and routes each destination not yet done.
    fn route_all(&self, plan: &mut Plan) {
        // One configuration for the whole message.
        let parts = self.parts();
        let (received, delivered_to) = scan_headers(plan.msg.headers());
        // Trace headers now, or on arrival before rules removed any.
        let hops = (received + delivered_to.len()).max(plan.msg.env.handling.hops as usize);
        let filter = plan
            .state
            .filter
            .clone()
            .or_else(|| plan.msg.env.handling.filter.clone());
        if let Some(f) = filter {
            return self.route_to_filter(plan, &f, hops);
        }
        let received = hops;
        let mut seen = HashSet::new();
        let mut index = 0;
        for rcpt in plan.msg.env.recipients.clone() {
            let orig = rcpt.to_string();
            let dests = match parts.directory.resolve(&rcpt) {
                Ok(Resolution::Deliver(d)) => d,
                Ok(Resolution::Unknown) => vec![fail_dest(&orig, FailReason::Unknown)],
                Ok(Resolution::Loop) => vec![fail_dest(&orig, FailReason::Loop)],
                Err(e) => {
                    plan.results.push(Done {
                        key: None,
                        orig: orig.clone(),
                        to: orig,
                        relay: "none".into(),
                        outcome: Outcome::deferred(
                            Esc(4, 3, 0),
                            format!("temporary lookup failure: {e}"),
                        ),
                    });
                    continue;
                }
            };
            for dest in dests {
                index += 1;
                let key = dest.key();
                if !seen.insert(key.clone()) || plan.state.done.contains(&key) {
                    continue;
                }
                let to = dest.address();
                let done = |outcome| Done {
                    key: Some(key.clone()),
                    orig: orig.clone(),
                    to: to.clone(),
                    relay: "none".into(),
                    outcome,
                };
                if let Some(why) = self.loop_problem(received, &delivered_to, &to) {
                    plan.results.push(done(Outcome::failed(Esc(5, 4, 6), why)));
                    continue;
                }
                let route = parts.router.route(&dest);
                match route.agent() {
                    Some(kind) => {
                        let target = Target {
                            route,
                            address: to.clone(),
                            orig: orig.clone(),
                            index: index - 1,
                        };
                        plan.groups.entry(kind).or_default().push((target, key));
                    }
                    None => match route {
                        Route::Defer(esc, text) => {
                            plan.results.push(done(Outcome::deferred(esc, text)))
                        }
                        Route::Bounce(esc, text) => {
                            plan.results.push(done(Outcome::failed(esc, text)))
                        }
                        Route::Discard(why) => plan
                            .results
                            .push(done(Outcome::delivered(format!("discarded: {why}")))),
                        Route::Hold => plan.hold = Some(format!("held by the route of {to}")),
                        _ => unreachable!("routes with an agent are handled above"),
                    },
                }
            }
        }
    }

    /// The whole message, with its recipients as they came (no alias
    /// expansion: that happens when the filter hands it back), goes to
    /// the content filter. Never around it: a filter that is down or
    /// misconfigured keeps the mail waiting.
    fn route_to_filter(&self, plan: &mut Plan, filter: &str, hops: usize) {
        let hop = crate::route::transport::next_hop(filter, 25);
        for (index, rcpt) in plan.msg.env.recipients.clone().into_iter().enumerate() {
            let orig = rcpt.to_string();
            let key = format!("filter:{}", orig.to_lowercase());
            if plan.state.done.contains(&key) {
                continue;
            }
            let done = |outcome| Done {
                key: Some(key.clone()),
                orig: orig.clone(),
                to: orig.clone(),
                relay: "none".into(),
                outcome,
            };
            if hops >= self.parts().settings.max_received {
                plan.results.push(done(Outcome::failed(
                    Esc(5, 4, 6),
                    format!("mail forwarding loop: {hops} hops"),
                )));
                continue;
            }
            let Some(hop) = hop.clone() else {
                plan.results.push(done(Outcome::deferred(
                    Esc(4, 3, 5),
                    format!("content filter {filter:?} is not a next hop"),
                )));
                continue;
            };
            let target = Target {
                route: Route::Filter(crate::route::FilterRoute {
                    hop,
                    data_timeout: self.parts().settings.filter_data_timeout,
                }),
                address: orig.clone(),
                orig: orig.clone(),
                index,
            };
            plan.groups
                .entry(AgentKind::Filter)
                .or_default()
                .push((target, key));
        }
    }

    /// Loop detection (hopcount_limit, and our own Delivered-To: as
    /// Postfix's local/virtual agents check it).
    fn loop_problem(&self, received: usize, delivered_to: &[String], to: &str) -> Option<String> {
        if received >= self.parts().settings.max_received {
            return Some(format!(
                "mail forwarding loop: {received} hops (Received: and Delivered-To: headers)"
            ));
        }
        delivered_to
            .iter()
            .any(|d| d.eq_ignore_ascii_case(to))
            .then(|| format!("mail forwarding loop for {to}"))
    }

    /// Step two: every agent's share at once, each within its own limit.
    pub(super) async fn deliver(&self, plan: &mut Plan) {
        let parts = self.parts();
        let groups = std::mem::take(&mut plan.groups);
        let mut keyed = Vec::new();
        let mut runs = Vec::new();
        for (kind, members) in groups {
            let (targets, keys): (Vec<Target>, Vec<String>) = members.into_iter().unzip();
            keyed.push((kind, targets.clone(), keys));
            runs.push(Box::pin(parts.registry.deliver(
                kind,
                plan.msg.clone(),
                targets,
                plan.recovered,
            )));
        }
        let outcomes = crate::deliver::join_all(runs).await;
        for ((kind, targets, keys), outs) in keyed.into_iter().zip(outcomes) {
            record(&parts, plan, kind, targets, keys, outs);
        }
    }

    /// Steps two and three on one thread, when the plan is the share of
    /// one blocking agent (Maildirs, commands) that has no gate for it:
    /// one hand-off to the blocking pool instead of two, which on a small
    /// box is a good part of a message's cost. The plan comes back when
    /// it is not.
    pub(super) async fn deliver_and_finish(
        self: &Arc<Self>,
        job: Job,
        mut plan: Plan,
        hold: Hold,
    ) -> Option<(Job, Plan, Hold)> {
        let parts = self.parts();
        let Some(kind) = one_blocking_agent(&parts, &plan) else {
            return Some((job, plan, hold));
        };
        let share = take_share(&mut plan, kind);
        let admitted =
            (parts.registry.admit(kind, &share.0).await).expect("a blocking agent, checked above");
        let me = self.clone();
        crate::pool::unblock(move || {
            let agent = admitted.agent.clone();
            // No gate: the thread permit is held until the finish is
            // done, so the pool never holds more threads than the agent
            // has permits (what the runner's step limit is for otherwise).
            me.deliver_and_finish_here(job, plan, &parts, kind, share, &*agent, (None, hold));
            drop(admitted);
        })
        .await;
        None
    }

    /// The plan as a delivery for a gate's line, when one blocking agent
    /// has it all and a gate of its own bounds it (one command
    /// transport); else it comes back.
    // The plan comes back by value, as everywhere in the runner: it is
    // moved, not copied, and boxing it would cost an allocation.
    #[allow(clippy::result_large_err)]
    pub(super) fn gated(
        self: &Arc<Self>,
        job: Job,
        mut plan: Plan,
        hold: Hold,
    ) -> Result<(Arc<Gate>, Waiter), (Job, Plan, Hold)> {
        let parts = self.parts();
        let kind = match one_blocking_agent(&parts, &plan) {
            Some(k) if plan.hold.is_none() => k,
            _ => return Err((job, plan, hold)),
        };
        let group = plan.groups.get(&kind).into_iter().flatten();
        let Some((agent, Some(gate))) = parts.registry.blocking(kind, group.map(|(t, _)| t)) else {
            return Err((job, plan, hold));
        };
        let share = take_share(&mut plan, kind);
        let me = self.clone();
        let unrun = Unrun {
            runner: self.clone(),
            id: job.id.clone(),
            armed: true,
        };
        let w = Waiter::new(move |permit| {
            // The whole guard moves in (not just the field it writes).
            let mut unrun = unrun;
            let next = me.deliver_and_finish_here(
                job,
                plan,
                &parts,
                kind,
                share,
                &*agent,
                (Some(permit), hold),
            );
            unrun.armed = false;
            next
        });
        Ok((gate, w))
    }

    /// Delivers one blocking agent's share and finishes the message, on
    /// this thread (blocking). Holding a gate's permit, it passes it on
    /// when the command has ended: the next delivery in the gate's line
    /// comes back, to be run by this thread after the finish (which is
    /// short: the queue file's unlink, which can wait for the disk, is
    /// the spool's reaper's).
    #[allow(clippy::too_many_arguments)]
    fn deliver_and_finish_here(
        &self,
        job: Job,
        mut plan: Plan,
        parts: &Parts,
        kind: AgentKind,
        (targets, keys): (Vec<Target>, Vec<String>),
        agent: &dyn BlockingAgent,
        (gate, hold): (Option<GatePermit>, Hold),
    ) -> Option<(Waiter, GatePermit)> {
        let mut outs = agent.deliver(&plan.msg, &targets, plan.recovered);
        let next = gate.and_then(GatePermit::pass);
        crate::deliver::registry::answer_all(&mut outs, targets.len());
        record(parts, &mut plan, kind, targets, keys, outs);
        self.finish(&job, plan);
        drop(hold);
        next
    }
}

/// The agent that has the whole plan, when it is one blocking agent
/// (Maildirs, commands).
fn one_blocking_agent(parts: &Parts, plan: &Plan) -> Option<AgentKind> {
    match (plan.groups.len(), plan.groups.keys().next()) {
        (1, Some(&k)) if parts.registry.is_blocking(k) => Some(k),
        _ => None,
    }
}

/// One agent's targets out of the plan, with their keys.
fn take_share(plan: &mut Plan, kind: AgentKind) -> (Vec<Target>, Vec<String>) {
    plan.groups
        .remove(&kind)
        .unwrap_or_default()
        .into_iter()
        .unzip()
}

/// One agent's outcomes into the plan's results (and `postern status`).
fn record(
    parts: &Parts,
    plan: &mut Plan,
    kind: AgentKind,
    targets: Vec<Target>,
    keys: Vec<String>,
    outs: Vec<Outcome>,
) {
    for ((t, key), outcome) in targets.into_iter().zip(keys).zip(outs) {
        let relay = match &outcome.remote {
            Some(r) => match r.addr {
                Some(a) => format!("{}[{}]:{}", r.host, a.ip(), a.port()),
                None => r.host.clone(),
            },
            None => match &t.route {
                // Postfix names the transport: relay=procmail.
                Route::Pipe(p) => p.transport.clone(),
                Route::File(_) => "local".into(),
                _ => parts.registry.name(kind).to_string(),
            },
        };
        if let Some(name) = status_route(&t.route) {
            let sent = matches!(outcome.status, crate::deliver::Status::Delivered);
            crate::status::board().delivery(&name, sent, &outcome.text);
        }
        plan.results.push(Done {
            key: Some(key),
            orig: t.orig,
            to: t.address,
            relay,
            outcome,
        });
    }
}

fn fail_dest(address: &str, why: FailReason) -> Dest {
    Dest::Fail {
        address: address.to_string(),
        why,
    }
}

/// Counts `Received:` headers and collects `Delivered-To:` values.
pub(crate) fn scan_headers(headers: &[u8]) -> (usize, Vec<String>) {
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

/// The name `postern status` shows a route's health under: relay routes
/// and transports by name, MX delivery by domain; Maildir deliveries are
/// not routes.
fn status_route(route: &Route) -> Option<String> {
    match route {
        Route::Smtp(r) if r.name == "mx" => Some(format!(
            "mx:{}",
            r.hops.first().map(|h| h.host.as_str()).unwrap_or("?")
        )),
        Route::Smtp(r) => Some(r.name.clone()),
        Route::Pipe(p) => Some(format!("transport:{}", p.transport)),
        Route::Filter(f) => Some(format!("filter:{}", f.hop.host)),
        _ => None,
    }
}
