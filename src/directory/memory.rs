//! A static, in-memory [`Store`]: the same rows the SQLite mirror holds,
//! kept in maps. Tests build one to run the real directory rules (alias
//! expansion, recipient policy, logins) without a database file; nothing
//! in the server uses it.
//!
//! It answers as the SQL in sqlite/mod.rs does: keys are case-insensitive
//! (PostfixAdmin's `latin1_general_ci`), inactive rows do not exist, a
//! mailbox or alias domain counts only while its domain is active. It
//! never fails temporarily.

use std::collections::HashMap;

use super::{Answer, DomainRow, LoginRow, Lookup, MailboxRow, Store, TempFail};

#[derive(Clone, Debug)]
struct Domain {
    row: DomainRow,
    active: bool,
}

#[derive(Clone, Debug)]
struct Mailbox {
    row: MailboxRow,
    password: String,
    active: bool,
    smtp_active: bool,
}

/// Rows in memory; see the module comment.
#[derive(Clone, Debug, Default)]
pub struct MemoryStore {
    domains: HashMap<String, Domain>,
    mailboxes: HashMap<String, Mailbox>,
    aliases: HashMap<String, (String, bool)>,
    alias_domains: HashMap<String, (String, bool)>,
}

fn key(s: &str) -> String {
    s.to_ascii_lowercase()
}

impl MemoryStore {
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    /// A hosted domain (`backupmx = 0`, `transport = 'virtual'`).
    pub fn domain(mut self, name: &str) -> Self {
        self.domains.insert(
            key(name),
            Domain {
                row: DomainRow {
                    transport: "virtual".into(),
                    ..DomainRow::default()
                },
                active: true,
            },
        );
        self
    }

    /// A domain row as given, active or not.
    pub fn domain_row(mut self, name: &str, row: DomainRow, active: bool) -> Self {
        self.domains.insert(key(name), Domain { row, active });
        self
    }

    /// An active mailbox with its maildir under the mailbox base, its
    /// quota in bytes and its stored password hash (e.g. `{PLAIN}secret`).
    pub fn mailbox(mut self, username: &str, maildir: &str, quota: i64, password: &str) -> Self {
        self.mailboxes.insert(
            key(username),
            Mailbox {
                row: MailboxRow {
                    username: username.to_string(),
                    maildir: maildir.to_string(),
                    quota,
                },
                password: password.to_string(),
                active: true,
                smtp_active: true,
            },
        );
        self
    }

    /// Switches a mailbox's `active` and `smtp_active` columns.
    pub fn mailbox_flags(mut self, username: &str, active: bool, smtp_active: bool) -> Self {
        if let Some(m) = self.mailboxes.get_mut(&key(username)) {
            m.active = active;
            m.smtp_active = smtp_active;
        }
        self
    }

    /// An alias row: `goto` is PostfixAdmin's comma list.
    pub fn alias(mut self, address: &str, goto: &str, active: bool) -> Self {
        self.aliases
            .insert(key(address), (goto.to_string(), active));
        self
    }

    /// An `alias_domain` row.
    pub fn alias_domain(mut self, alias: &str, target: &str, active: bool) -> Self {
        self.alias_domains
            .insert(key(alias), (target.to_string(), active));
        self
    }

    fn active_domain(&self, name: &str) -> Option<&DomainRow> {
        self.domains
            .get(&key(name))
            .filter(|d| d.active)
            .map(|d| &d.row)
    }

    fn active_mailbox(&self, username: &str) -> Option<&Mailbox> {
        let m = self.mailboxes.get(&key(username)).filter(|m| m.active)?;
        let domain = m.row.username.rsplit_once('@').map(|(_, d)| d)?;
        self.active_domain(domain).map(|_| m)
    }
}

impl Store for MemoryStore {
    fn domain(&self, name: &str) -> Result<Option<DomainRow>, TempFail> {
        Ok(self.active_domain(name).cloned())
    }

    fn alias_domain_target(&self, name: &str) -> Result<Option<String>, TempFail> {
        Ok(self
            .alias_domains
            .get(&key(name))
            .filter(|(target, active)| *active && self.active_domain(target).is_some())
            .map(|(target, _)| target.clone()))
    }

    fn alias_goto(&self, address: &str) -> Result<Option<String>, TempFail> {
        Ok(self
            .aliases
            .get(&key(address))
            .filter(|(_, active)| *active)
            .map(|(goto, _)| goto.clone()))
    }

    fn mailbox(&self, username: &str) -> Result<Option<MailboxRow>, TempFail> {
        Ok(self.active_mailbox(username).map(|m| m.row.clone()))
    }

    /// Everything is in memory.
    fn peek(&self, q: Lookup<'_>, _checked: &std::sync::atomic::AtomicBool) -> Option<Answer> {
        let never = |e: TempFail| -> Answer { unreachable!("a MemoryStore never fails: {e}") };
        Some(match q {
            Lookup::Domain(k) => self.domain(k).map(Answer::Domain).unwrap_or_else(never),
            Lookup::AliasDomain(k) => self
                .alias_domain_target(k)
                .map(Answer::Text)
                .unwrap_or_else(never),
            Lookup::Alias(k) => self.alias_goto(k).map(Answer::Text).unwrap_or_else(never),
            Lookup::Mailbox(k) => self.mailbox(k).map(Answer::Mailbox).unwrap_or_else(never),
        })
    }

    fn login(&self, username: &str) -> Result<Option<LoginRow>, TempFail> {
        Ok(self.active_mailbox(username).map(|m| LoginRow {
            username: m.row.username.clone(),
            password: m.password.clone(),
            smtp_active: m.smtp_active,
        }))
    }
}
