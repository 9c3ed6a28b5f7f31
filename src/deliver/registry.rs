//! Which agent delivers which kind of route, and how many deliveries each
//! may run at once. A blocking agent runs on the blocking thread pool, an
//! async one on the executor; each holds a permit of its own semaphore
//! while it works, so a slow agent only ever waits for itself. An agent
//! with finer limits of its own (the SMTP agent's per destination) takes
//! none: within one agent, a busy destination must not hold up the others.

use std::collections::HashMap;
use std::sync::Arc;

use smol::lock::{Semaphore, SemaphoreGuardArc};

use super::gate::{Gate, GatePermit};
use super::{Agent, AgentKind, BlockingAgent, Outcome, Target};
use crate::queue::spool::QueuedMessage;
use crate::smtp::reply::Esc;

struct Slot {
    agent: Agent,
    limit: Arc<Semaphore>,
    concurrency: usize,
}

#[derive(Default)]
pub struct Registry {
    slots: HashMap<AgentKind, Slot>,
}

impl Registry {
    pub fn new() -> Registry {
        Registry::default()
    }

    /// Registers `agent` for `kind`, at most `concurrency` deliveries at once.
    pub fn add(&mut self, kind: AgentKind, agent: Agent, concurrency: usize) {
        self.slots.insert(
            kind,
            Slot {
                agent,
                limit: Arc::new(Semaphore::new(concurrency.max(1))),
                concurrency: concurrency.max(1),
            },
        );
    }

    /// The `relay=` name of the agent for `kind`.
    pub fn name(&self, kind: AgentKind) -> &'static str {
        self.slots
            .get(&kind)
            .map(|s| s.agent.name())
            .unwrap_or("none")
    }

    pub fn concurrency(&self, kind: AgentKind) -> usize {
        self.slots.get(&kind).map(|s| s.concurrency).unwrap_or(0)
    }

    /// Every agent forgets its unreachable destinations (a flush).
    pub fn revive(&self) {
        for slot in self.slots.values() {
            if let Agent::Async(a) = &slot.agent {
                a.revive();
            }
        }
    }

    /// Delivers `targets` with the agent for `kind`, once one of its
    /// permits is free. One outcome per target, in order.
    pub async fn deliver(
        &self,
        kind: AgentKind,
        msg: Arc<QueuedMessage>,
        targets: Vec<Target>,
        recovered: bool,
    ) -> Vec<Outcome> {
        let Some(slot) = self.slots.get(&kind) else {
            let text = format!("no delivery agent for {kind:?} routes");
            return targets
                .iter()
                .map(|_| Outcome::deferred(Esc(4, 3, 5), text.clone()))
                .collect();
        };
        let n = targets.len();
        let mut out = match &slot.agent {
            Agent::Blocking(_) => {
                let admitted = (self.admit(kind, &targets).await).expect("a blocking agent");
                crate::pool::unblock(move || {
                    let out = admitted.agent.deliver(&msg, &targets, recovered);
                    drop(admitted);
                    out
                })
                .await
            }
            Agent::Async(a) => {
                let _permit = match a.limits_itself() {
                    true => None,
                    false => Some(slot.limit.acquire_arc().await),
                };
                a.clone().deliver(msg, targets, recovered).await
            }
        };
        answer_all(&mut out, n);
        out
    }

    /// Is the agent for `kind` a blocking one?
    pub fn is_blocking(&self, kind: AgentKind) -> bool {
        matches!(
            self.slots.get(&kind),
            Some(Slot {
                agent: Agent::Blocking(_),
                ..
            })
        )
    }

    /// The blocking agent for `kind` and the gate of its own that a
    /// delivery of `targets` must pass (see [`BlockingAgent::gate`]).
    /// `None`: no blocking agent for `kind`.
    pub fn blocking<'t>(
        &self,
        kind: AgentKind,
        targets: impl Iterator<Item = &'t Target>,
    ) -> Option<(Arc<dyn BlockingAgent>, Option<GateRef>)> {
        let mut targets = targets;
        match self.slots.get(&kind) {
            Some(Slot {
                agent: Agent::Blocking(agent),
                ..
            }) => Some((agent.clone(), agent.gate(&mut targets))),
            _ => None,
        }
    }

    /// The blocking agent for `kind`, once `targets` may be delivered:
    /// through its own gate when it has one for them (the gate bounds
    /// those deliveries, and a delivery waiting there holds nothing that
    /// deliveries through other gates need), else with one of the
    /// agent's thread permits. `None`: no blocking agent for `kind`.
    pub async fn admit(&self, kind: AgentKind, targets: &[Target]) -> Option<Admitted> {
        let Some(Slot {
            agent: Agent::Blocking(agent),
            limit,
            ..
        }) = self.slots.get(&kind)
        else {
            return None;
        };
        Some(match agent.gate(&mut targets.iter()) {
            Some(g) => Admitted {
                agent: agent.clone(),
                gate: Some(g.acquire().await),
                _permit: None,
            },
            None => Admitted {
                agent: agent.clone(),
                gate: None,
                _permit: Some(limit.acquire_arc().await),
            },
        })
    }
}

type GateRef = Arc<Gate>;

/// A blocking delivery let in: the agent, and the permit it holds until
/// dropped.
pub struct Admitted {
    pub agent: Arc<dyn BlockingAgent>,
    pub gate: Option<GatePermit>,
    _permit: Option<SemaphoreGuardArc>,
}

/// An agent must answer for every target; a short answer defers the rest.
pub fn answer_all(out: &mut Vec<Outcome>, n: usize) {
    out.resize_with(n, || {
        Outcome::deferred(Esc(4, 3, 0), "delivery agent gave no result")
    });
}
