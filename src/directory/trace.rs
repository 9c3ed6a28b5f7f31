//! The steps of an alias expansion, noted for `postern explain` by the
//! same rules the server expands with (see [`super::Directory::resolve_traced`]).

use super::MailboxRow;
use crate::smtp::address::Address;

pub(super) fn mailbox_note(m: &MailboxRow) -> String {
    format!(
        "mailbox row {}: maildir = {}, quota = {}",
        m.username, m.maildir, m.quota
    )
}

/// One step of an expansion, as `postern explain` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceStep {
    /// 0 for the address asked about, 1 for its alias targets, ...
    pub depth: usize,
    pub address: String,
    /// What decided this step: "alias", "mailbox", "alias_domain",
    /// "catch_all", "aliases_file", "local_user", "postmaster", "remote",
    /// "backup_mx", "unknown", "loop".
    pub rule: &'static str,
    /// The row or file line, for people.
    pub detail: String,
}

/// Where an expansion notes its steps; off (and free) in the server.
#[derive(Default)]
pub struct Trace(Option<Vec<TraceStep>>);

impl Trace {
    pub fn off() -> Trace {
        Trace(None)
    }

    pub fn on() -> Trace {
        Trace(Some(Vec::new()))
    }

    pub fn steps(self) -> Vec<TraceStep> {
        self.0.unwrap_or_default()
    }

    pub(super) fn note(
        &mut self,
        depth: usize,
        address: &Address,
        rule: &'static str,
        detail: impl FnOnce() -> String,
    ) {
        if let Some(steps) = &mut self.0 {
            steps.push(TraceStep {
                depth,
                address: address.to_string(),
                rule,
                detail: detail(),
            });
        }
    }
}
