//! Which agent delivers which kind of route, and how many deliveries each
//! may run at once. A blocking agent runs on the blocking thread pool, an
//! async one on the executor; each holds a permit of its own semaphore
//! while it works, so a slow agent only ever waits for itself. An agent
//! with finer limits of its own (the SMTP agent's per destination) takes
//! none: within one agent, a busy destination must not hold up the others.

use std::collections::HashMap;
use std::sync::Arc;

use smol::lock::Semaphore;

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
        // The agent's own gate first: a delivery waiting there holds none
        // of the permits that deliveries through other gates need.
        let _gate = match &slot.agent {
            Agent::Blocking(a) => match a.gate(&targets) {
                Some(g) => Some(g.acquire_arc().await),
                None => None,
            },
            Agent::Async(_) => None,
        };
        let _permit = match &slot.agent {
            Agent::Async(a) if a.limits_itself() => None,
            _ => Some(slot.limit.acquire_arc().await),
        };
        let n = targets.len();
        let mut out = match &slot.agent {
            Agent::Blocking(a) => {
                let a = a.clone();
                crate::pool::unblock(move || a.deliver(&msg, &targets, recovered)).await
            }
            Agent::Async(a) => a.clone().deliver(msg, targets, recovered).await,
        };
        answer_all(&mut out, n);
        out
    }

    /// The blocking agent for `kind` and its permits, for a caller that
    /// runs it on a thread it has anyway (the runner: delivery and the
    /// step after it in one hand-off). `None`: not a blocking agent.
    pub fn blocking(&self, kind: AgentKind) -> Option<(Arc<dyn BlockingAgent>, Arc<Semaphore>)> {
        match self.slots.get(&kind) {
            Some(Slot {
                agent: Agent::Blocking(a),
                limit,
                ..
            }) => Some((a.clone(), limit.clone())),
            _ => None,
        }
    }
}

/// An agent must answer for every target; a short answer defers the rest.
pub fn answer_all(out: &mut Vec<Outcome>, n: usize) {
    out.resize_with(n, || {
        Outcome::deferred(Esc(4, 3, 0), "delivery agent gave no result")
    });
}
