//! Delivery agents. Each takes a queued message and the destinations
//! routed to it, and answers one [`Outcome`] per destination: delivered,
//! deferred (try later) or failed (bounce), each with an enhanced status
//! code, a text and, for remote deliveries, the remote host and its whole
//! reply. Whether a problem is temporary or permanent is decided inside
//! the agent, in one place.
//!
//! Agents come in two shapes: blocking ones (file work: Maildir, pipe) run
//! on threads of the blocking pool; async ones (network: SMTP, content
//! filter) run on the executor. The [`registry::Registry`] maps each
//! [`AgentKind`] to its agent and gives each its own concurrency limit,
//! so a hung remote host never holds up Maildir delivery.

pub mod gate;
pub mod macros;
pub mod maildir;
pub mod pipe;
pub mod quota;
pub mod registry;
pub mod smtp;
mod spawn;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use crate::queue::spool::QueuedMessage;
use crate::route::Route;
use crate::smtp::reply::Esc;

pub use crate::route::AgentKind;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Delivered,
    Deferred,
    Failed,
}

/// The remote side of a delivery attempt, for logs (`relay=host[addr]:port`)
/// and bounces (`Remote-MTA`, `Diagnostic-Code: smtp; ...`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Remote {
    /// The host name as looked up (MX target, relay name).
    pub host: String,
    pub addr: Option<SocketAddr>,
    /// The server's whole reply, all lines joined with spaces, when the
    /// outcome came from one (`550 5.1.1 <x@y>: user unknown`).
    pub reply: Option<String>,
    /// The TLS version of the connection (`TLSv1.3`), if it had TLS.
    pub tls: Option<String>,
}

/// One destination's result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub status: Status,
    pub esc: Esc,
    pub text: String,
    pub remote: Option<Remote>,
}

impl Outcome {
    pub fn delivered(text: impl Into<String>) -> Outcome {
        Outcome {
            status: Status::Delivered,
            esc: Esc(2, 0, 0),
            text: text.into(),
            remote: None,
        }
    }

    pub fn deferred(esc: Esc, text: impl Into<String>) -> Outcome {
        Outcome {
            status: Status::Deferred,
            esc,
            text: text.into(),
            remote: None,
        }
    }

    pub fn failed(esc: Esc, text: impl Into<String>) -> Outcome {
        Outcome {
            status: Status::Failed,
            esc,
            text: text.into(),
            remote: None,
        }
    }

    pub fn with_remote(mut self, remote: Remote) -> Outcome {
        self.remote = Some(remote);
        self
    }

    pub fn is_delivered(&self) -> bool {
        self.status == Status::Delivered
    }

    pub fn is_deferred(&self) -> bool {
        self.status == Status::Deferred
    }

    pub fn is_failed(&self) -> bool {
        self.status == Status::Failed
    }

    /// `sent`, `deferred`, `bounced`: the log's status= word.
    pub fn status_word(&self) -> &'static str {
        match self.status {
            Status::Delivered => "sent",
            Status::Deferred => "deferred",
            Status::Failed => "bounced",
        }
    }
}

/// One destination handed to an agent.
#[derive(Clone, Debug)]
pub struct Target {
    /// What the agent needs (its own kind of route).
    pub route: Route,
    /// The final address, for `Delivered-To:` and the log.
    pub address: String,
    /// The envelope recipient it was expanded from.
    pub orig: String,
    /// Position of this destination in the message, part of stable names.
    pub index: usize,
}

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// An agent whose work blocks (files, fsync, child processes): run on a
/// thread of the blocking pool.
pub trait BlockingAgent: Send + Sync {
    /// The `relay=` name in log lines.
    fn name(&self) -> &'static str;
    /// `recovered`: the message was queued when postern started, so an
    /// earlier run may already have delivered some copies.
    fn deliver(&self, msg: &QueuedMessage, targets: &[Target], recovered: bool) -> Vec<Outcome>;
    /// A limit of the agent's own that a delivery of `targets` needs:
    /// the runner waits for one of its permits before it takes a thread
    /// (on the executor, or in the gate's line: see gate.rs), and holds
    /// it while `deliver` runs (which then takes none itself: it must
    /// answer the same for the same targets). A delivery waiting for a
    /// busy command then parks no thread, and a freed permit wakes no
    /// thread only to hand over.
    fn gate(&self, _targets: &mut dyn Iterator<Item = &Target>) -> Option<Arc<gate::Gate>> {
        None
    }
}

/// An agent that waits on the network: run on the executor.
pub trait AsyncAgent: Send + Sync {
    fn name(&self) -> &'static str;
    /// True when the agent keeps limits of its own (per destination, say)
    /// and takes no permit of the registry's, which a delivery waiting
    /// inside the agent would hold from deliveries that need none of its
    /// busy resources.
    fn limits_itself(&self) -> bool {
        false
    }
    /// Forgets which destinations were found unreachable, so that the
    /// next delivery tries them (an operator's flush: "it is back").
    fn revive(&self) {}
    fn deliver(
        self: Arc<Self>,
        msg: Arc<QueuedMessage>,
        targets: Vec<Target>,
        recovered: bool,
    ) -> BoxFuture<'static, Vec<Outcome>>;
}

#[derive(Clone)]
pub enum Agent {
    Blocking(Arc<dyn BlockingAgent>),
    Async(Arc<dyn AsyncAgent>),
}

impl Agent {
    pub fn name(&self) -> &'static str {
        match self {
            Agent::Blocking(a) => a.name(),
            Agent::Async(a) => a.name(),
        }
    }
}

/// Runs futures concurrently on the current task and returns their
/// outputs in order (the few agent groups of one message).
pub async fn join_all<T, F: std::future::Future<Output = T> + Unpin>(mut futs: Vec<F>) -> Vec<T> {
    let mut out: Vec<Option<T>> = futs.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, slot) in futs.iter_mut().zip(out.iter_mut()) {
            if slot.is_none() {
                match Pin::new(f).poll(cx) {
                    std::task::Poll::Ready(v) => *slot = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter()
        .map(|v| v.expect("every future finished"))
        .collect()
}
