//! Delivery agents. Each one takes a queued message and the destinations
//! routed to it, and answers one [`Outcome`] per destination: delivered,
//! deferred (try later) or failed (bounce), each with an enhanced status
//! code and text. Whether a problem is temporary or permanent is decided
//! inside the agent, in one place.

pub mod maildir;

use crate::queue::spool::QueuedMessage;
use crate::smtp::reply::Esc;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Delivered { text: String },
    Deferred { esc: Esc, text: String },
    Failed { esc: Esc, text: String },
}

impl Outcome {
    pub fn deferred(esc: Esc, text: impl Into<String>) -> Outcome {
        Outcome::Deferred {
            esc,
            text: text.into(),
        }
    }

    pub fn failed(esc: Esc, text: impl Into<String>) -> Outcome {
        Outcome::Failed {
            esc,
            text: text.into(),
        }
    }

    pub fn esc(&self) -> Esc {
        match self {
            Outcome::Delivered { .. } => Esc(2, 0, 0),
            Outcome::Deferred { esc, .. } | Outcome::Failed { esc, .. } => *esc,
        }
    }

    pub fn text(&self) -> &str {
        match self {
            Outcome::Delivered { text }
            | Outcome::Deferred { text, .. }
            | Outcome::Failed { text, .. } => text,
        }
    }
}

/// One destination handed to an agent.
#[derive(Clone, Debug)]
pub struct Target {
    /// Where the agent puts it (for Maildir: the Maildir directory).
    pub place: std::path::PathBuf,
    /// The final address, for `Delivered-To:`.
    pub address: String,
    /// Position of this destination in the message, part of stable names.
    pub index: usize,
}

pub trait Agent: Send + Sync {
    /// The `relay=` name in log lines.
    fn name(&self) -> &'static str;
    /// `recovered`: the message was queued when postern started, so an
    /// earlier run may already have delivered some copies.
    fn deliver(&self, msg: &QueuedMessage, targets: &[Target], recovered: bool) -> Vec<Outcome>;
}
