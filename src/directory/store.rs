//! The rows the directory rules read, the [`Store`] interface that gives
//! them (the SQLite mirror, a static table in tests), and [`Peek`], a
//! store that answers only from memory.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use super::TempFail;

/// An active domain row (`domain.active = 1`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DomainRow {
    pub backupmx: bool,
    /// `domain.transport`: a per-domain route override ("" = the default;
    /// "virtual" = Maildir; see route.rs for the rest).
    pub transport: String,
    /// PostfixAdmin's `domain.quota` (total for the domain) and `maxquota`
    /// (per mailbox), in MB; 0 = no limit.
    pub quota_mb: i64,
    pub maxquota_mb: i64,
}

/// An active mailbox in an active domain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MailboxRow {
    pub username: String,
    pub maildir: String,
    /// Bytes; 0 = no limit.
    pub quota: i64,
}

/// What a login is checked against.
#[derive(Clone, Debug)]
pub struct LoginRow {
    pub username: String,
    pub password: String,
    pub smtp_active: bool,
}

/// Where the rows come from. Every answer is found (`Some`), not found
/// (`None`) or a temporary failure; "active" filtering is the store's job
/// (the seed's mysql_*.cf `active = '1'` conditions), case-insensitive keys
/// as PostfixAdmin's collation makes them.
pub trait Store: Send + Sync {
    /// An active domain.
    fn domain(&self, name: &str) -> Result<Option<DomainRow>, TempFail>;
    /// The target of an active alias domain whose target domain is active.
    fn alias_domain_target(&self, name: &str) -> Result<Option<String>, TempFail>;
    /// `alias.goto` of an active alias.
    fn alias_goto(&self, address: &str) -> Result<Option<String>, TempFail>;
    /// An active mailbox in an active domain.
    fn mailbox(&self, username: &str) -> Result<Option<MailboxRow>, TempFail>;
    /// The login row of an active mailbox in an active domain.
    fn login(&self, username: &str) -> Result<Option<LoginRow>, TempFail>;
    /// The answer to `q` if it is known without I/O (a cache hit), so a
    /// session can be answered without leaving the executor. `None`: it
    /// takes I/O.
    /// `checked`: set once the store has made sure its cache is current
    /// (the SQLite mirror stats its file), so later peeks of the same
    /// question round skip that.
    fn peek(&self, q: Lookup<'_>, checked: &AtomicBool) -> Option<Answer> {
        let _ = (q, checked);
        None
    }
}

/// A store that answers only what its inner store knows without I/O, and
/// remembers whether anything was missing.
pub(super) struct Peek {
    pub(super) inner: Arc<dyn Store>,
    pub(super) missed: AtomicBool,
    pub(super) checked: AtomicBool,
}

impl Peek {
    fn get(&self, q: Lookup<'_>) -> Result<Answer, TempFail> {
        self.inner.peek(q, &self.checked).ok_or_else(|| {
            self.missed
                .store(true, std::sync::atomic::Ordering::Relaxed);
            TempFail("not in memory".into())
        })
    }
}

impl Store for Peek {
    fn domain(&self, name: &str) -> Result<Option<DomainRow>, TempFail> {
        match self.get(Lookup::Domain(name))? {
            Answer::Domain(d) => Ok(d),
            _ => Err(TempFail("lookup kinds mixed up".into())),
        }
    }
    fn alias_domain_target(&self, name: &str) -> Result<Option<String>, TempFail> {
        match self.get(Lookup::AliasDomain(name))? {
            Answer::Text(t) => Ok(t),
            _ => Err(TempFail("lookup kinds mixed up".into())),
        }
    }
    fn alias_goto(&self, address: &str) -> Result<Option<String>, TempFail> {
        match self.get(Lookup::Alias(address))? {
            Answer::Text(t) => Ok(t),
            _ => Err(TempFail("lookup kinds mixed up".into())),
        }
    }
    fn mailbox(&self, username: &str) -> Result<Option<MailboxRow>, TempFail> {
        match self.get(Lookup::Mailbox(username))? {
            Answer::Mailbox(m) => Ok(m),
            _ => Err(TempFail("lookup kinds mixed up".into())),
        }
    }
    fn login(&self, _username: &str) -> Result<Option<LoginRow>, TempFail> {
        self.missed
            .store(true, std::sync::atomic::Ordering::Relaxed);
        Err(TempFail("logins are never cached".into()))
    }
}

/// One lookup a store may answer from memory (see [`Store::peek`]).
#[derive(Clone, Copy, Debug)]
pub enum Lookup<'a> {
    Domain(&'a str),
    AliasDomain(&'a str),
    Alias(&'a str),
    Mailbox(&'a str),
}

/// The answer to a [`Lookup`].
#[derive(Clone, Debug)]
pub enum Answer {
    Domain(Option<DomainRow>),
    Text(Option<String>),
    Mailbox(Option<MailboxRow>),
}
