//! Routing: from an expanded destination to the agent that delivers it.
//!
//! Virtual mailboxes go to their Maildir under the mailbox base (the
//! seed's virtual_mailbox_base + mailbox.maildir), local users to theirs
//! under the local mailbox base. Remote destinations (forwards, backup-MX
//! domains, mail relayed for trusted clients) need an outbound transport;
//! until one is configured they stay queued and are retried, never lost.

use std::path::{Component, Path, PathBuf};

use crate::directory::{Dest, FailReason};
use crate::smtp::reply::Esc;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    Maildir(PathBuf),
    /// Outbound SMTP to this domain.
    Relay(String),
    Defer(Esc, String),
    Bounce(Esc, String),
}

pub struct Router {
    pub mailbox_base: PathBuf,
    pub local_base: PathBuf,
}

impl Router {
    pub fn route(&self, dest: &Dest) -> Route {
        match dest {
            Dest::Mailbox { username, maildir, .. } => match safe_relative(maildir) {
                Some(rel) => Route::Maildir(self.mailbox_base.join(rel)),
                None => Route::Defer(
                    Esc(4, 3, 5),
                    format!("mailbox {username} has an unsafe maildir path {maildir:?} in the directory"),
                ),
            },
            Dest::Local { user, .. } => Route::Maildir(self.local_base.join(user)),
            Dest::Remote(a) => Route::Relay(a.domain.clone()),
            Dest::Fail { why: FailReason::Loop, .. } => Route::Bounce(Esc(5, 4, 6), "mail forwarding loop".into()),
            Dest::Fail { why: FailReason::Unknown, .. } => Route::Bounce(Esc(5, 1, 1), "user unknown".into()),
        }
    }
}

/// A relative path with no `..`, no root and no odd components.
fn safe_relative(p: &str) -> Option<&Path> {
    let path = Path::new(p);
    if p.is_empty() || p.contains('\0') {
        return None;
    }
    path.components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
        .then_some(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maildir_paths_stay_under_the_base() {
        assert!(safe_relative("example.test/alice/").is_some());
        assert!(safe_relative("../etc").is_none());
        assert!(safe_relative("/etc/passwd").is_none());
        assert!(safe_relative("a/../../b").is_none());
        assert!(safe_relative("").is_none());
    }
}
