//! Edits of the SQLite directory for `postern user|domain|alias`, with
//! PostfixAdmin's semantics, so that a box without MySQL can be managed
//! and a later PostfixAdmin (or its sync) finds rows it understands:
//!
//! - a domain row is `active = 1` with `created`/`modified` set; a
//!   mailbox comes with its self-alias row (`address = goto = username`),
//!   written in the same transaction, and its maildir defaults to
//!   `<domain>/<local_part>/`;
//! - addresses are stored lower-cased; `alias.goto` is a comma list;
//! - timestamps are UTC `YYYY-MM-DD HH:MM:SS`.
//!
//! Every edit is one `BEGIN IMMEDIATE` transaction that waits for the
//! database's busy timeout, so it is safe while `postern serve` reads the
//! file: the server sees either the old rows or the new ones, and its
//! lookup cache follows the file's change. Input is validated here (not in
//! the CLI) so that no caller can write a row the server would misread.
//! Passwords arrive hashed; nothing here reads or returns a hash.

use std::fmt;

use rusqlite::{
    params, Connection, ErrorCode, OptionalExtension, Transaction, TransactionBehavior,
};

use super::validate::{
    alias_address, domain_name, goto_list, mailbox_address, maildir_path, now, target_address,
};
use super::Db;

/// Why an edit was not made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AdminError {
    /// Bad input, or a state the request conflicts with; the text says
    /// what to do instead.
    Invalid(String),
    /// Another process held the database longer than the busy timeout.
    Locked(String),
    /// The database could not be read or written.
    Database(String),
}

impl fmt::Display for AdminError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AdminError::Invalid(m) | AdminError::Locked(m) | AdminError::Database(m) => {
                f.write_str(m)
            }
        }
    }
}

impl From<rusqlite::Error> for AdminError {
    fn from(e: rusqlite::Error) -> AdminError {
        match e.sqlite_error_code() {
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
                AdminError::Locked(format!("{e} (another process is writing it; try again)"))
            }
            _ => AdminError::Database(e.to_string()),
        }
    }
}

pub(super) fn invalid<T>(msg: impl Into<String>) -> Result<T, AdminError> {
    Err(AdminError::Invalid(msg.into()))
}

/// One row of `postern domain list`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DomainInfo {
    pub domain: String,
    pub description: String,
    pub backupmx: bool,
    pub active: bool,
    pub mailboxes: i64,
    /// Alias rows other than the self-aliases of mailboxes.
    pub aliases: i64,
}

/// One row of `postern user list` (never the password hash).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MailboxInfo {
    pub username: String,
    pub name: String,
    pub quota: i64,
    pub active: bool,
    pub smtp_active: bool,
}

/// One row of `postern alias list`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AliasInfo {
    pub address: String,
    pub goto: String,
    pub active: bool,
}

/// What `Db::domain_del` removed with the domain.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Removed {
    pub mailboxes: usize,
    pub aliases: usize,
    pub alias_domains: usize,
}

/// A mailbox to create.
#[derive(Clone, Debug)]
pub struct NewMailbox<'a> {
    pub address: &'a str,
    pub name: &'a str,
    /// Bytes; 0 is unlimited.
    pub quota: u64,
    /// Relative to the mailbox base; `<domain>/<local_part>/` when `None`.
    pub maildir: Option<&'a str>,
    /// The stored form, e.g. `{SHA512-CRYPT}$6$...`.
    pub password_hash: &'a str,
}

impl Db {
    /// Runs `f` in one `BEGIN IMMEDIATE` transaction, committed only if it
    /// returns `Ok`.
    fn write<T>(
        &self,
        f: impl FnOnce(&Transaction) -> Result<T, AdminError>,
    ) -> Result<T, AdminError> {
        let r = self.with(|c| {
            Ok((|| {
                let tx = Transaction::new_unchecked(c, TransactionBehavior::Immediate)?;
                let v = f(&tx)?;
                tx.commit()?;
                Ok(v)
            })())
        });
        self.located(r)
    }

    fn read<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, AdminError>,
    ) -> Result<T, AdminError> {
        let r = self.with(|c| Ok(f(c)));
        self.located(r)
    }

    /// Names the file in database errors.
    fn located<T>(
        &self,
        r: Result<Result<T, AdminError>, super::TempFail>,
    ) -> Result<T, AdminError> {
        let path = self.path.display();
        match r {
            Err(e) => Err(AdminError::Database(e.0)),
            Ok(Err(AdminError::Locked(m))) => Err(AdminError::Locked(format!("{path}: {m}"))),
            Ok(Err(AdminError::Database(m))) => Err(AdminError::Database(format!("{path}: {m}"))),
            Ok(v) => v,
        }
    }

    /// Adds an active domain.
    pub fn domain_add(
        &self,
        domain: &str,
        description: &str,
        backupmx: bool,
    ) -> Result<String, AdminError> {
        let domain = domain_name(domain)?;
        let now = now();
        self.write(|tx| {
            if let Some(existing) = domain_row(tx, &domain)? {
                return invalid(format!("domain {existing} already exists"));
            }
            tx.execute(
                "INSERT INTO domain (domain, description, backupmx, created, modified, active)
                 VALUES (?1, ?2, ?3, ?4, ?4, 1)",
                params![domain, description, backupmx as i64, now],
            )?;
            Ok(domain.clone())
        })
    }

    /// Deletes a domain. With mailboxes, aliases or alias domains left it is
    /// refused, unless `force`: then they go too, in the same transaction.
    pub fn domain_del(&self, domain: &str, force: bool) -> Result<(String, Removed), AdminError> {
        let domain = domain_name(domain)?;
        self.write(|tx| {
            let Some(name) = domain_row(tx, &domain)? else {
                return invalid(format!("domain {domain} does not exist"));
            };
            let count = |sql: &str| tx.query_row(sql, [&name], |r| r.get::<_, i64>(0));
            let removed = Removed {
                mailboxes: count("SELECT COUNT(*) FROM mailbox WHERE domain = ?1")? as usize,
                aliases: count(
                    "SELECT COUNT(*) FROM alias WHERE domain = ?1
                     AND address NOT IN (SELECT username FROM mailbox)",
                )? as usize,
                alias_domains: count(
                    "SELECT COUNT(*) FROM alias_domain WHERE alias_domain = ?1 OR target_domain = ?1",
                )? as usize,
            };
            if removed != Removed::default() && !force {
                return invalid(format!(
                    "domain {name} still has {} mailbox(es), {} alias(es) and {} alias domain(s); \
                     delete them first, or use --force to delete them with the domain",
                    removed.mailboxes, removed.aliases, removed.alias_domains
                ));
            }
            tx.execute(
                "DELETE FROM quota2 WHERE username IN (SELECT username FROM mailbox WHERE domain = ?1)",
                [&name],
            )?;
            tx.execute("DELETE FROM mailbox WHERE domain = ?1", [&name])?;
            tx.execute("DELETE FROM alias WHERE domain = ?1", [&name])?;
            tx.execute(
                "DELETE FROM alias_domain WHERE alias_domain = ?1 OR target_domain = ?1",
                [&name],
            )?;
            tx.execute("DELETE FROM domain WHERE domain = ?1", [&name])?;
            Ok((name.clone(), removed))
        })
    }

    /// All domains, with their mailbox and alias counts.
    pub fn domain_list(&self) -> Result<Vec<DomainInfo>, AdminError> {
        self.read(|c| {
            let mut st = c.prepare(
                "SELECT d.domain, d.description, d.backupmx, d.active,
                   (SELECT COUNT(*) FROM mailbox m WHERE m.domain = d.domain),
                   (SELECT COUNT(*) FROM alias a WHERE a.domain = d.domain
                      AND a.address NOT IN (SELECT username FROM mailbox))
                 FROM domain d ORDER BY d.domain",
            )?;
            let rows = st.query_map([], |r| {
                Ok(DomainInfo {
                    domain: r.get(0)?,
                    description: r.get(1)?,
                    backupmx: r.get::<_, i64>(2)? != 0,
                    active: r.get::<_, i64>(3)? != 0,
                    mailboxes: r.get(4)?,
                    aliases: r.get(5)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    /// Adds a mailbox and its self-alias; returns (username, maildir).
    pub fn mailbox_add(&self, m: &NewMailbox) -> Result<(String, String), AdminError> {
        let a = mailbox_address(m.address)?;
        let username = a.key();
        let maildir = match m.maildir {
            Some(d) => maildir_path(d)?,
            None => format!("{}/{}/", a.domain, a.local),
        };
        let quota = i64::try_from(m.quota).or_else(|_| invalid("the quota is too large"))?;
        if m.password_hash.is_empty() {
            return invalid("an empty password hash cannot be stored");
        }
        let now = now();
        self.write(|tx| {
            hosted_domain(tx, &a.domain, "mailboxes")?;
            if let Some(u) = tx
                .query_row("SELECT username FROM mailbox WHERE username = ?1", [&username], |r| {
                    r.get::<_, String>(0)
                })
                .optional()?
            {
                return invalid(format!("mailbox {u} already exists"));
            }
            if let Some(goto) = alias_goto(tx, &username)? {
                return invalid(format!(
                    "{username} is an alias (to {goto}); delete it first with `postern alias del {username}`"
                ));
            }
            tx.execute(
                "INSERT INTO mailbox (username, password, name, maildir, quota, local_part, domain,
                   created, modified, active, smtp_active)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8, 1, 1)",
                params![username, m.password_hash, m.name, maildir, quota, a.local, a.domain, now],
            )?;
            tx.execute(
                "INSERT INTO alias (address, goto, domain, created, modified, active)
                 VALUES (?1, ?1, ?2, ?3, ?3, 1)",
                params![username, a.domain, now],
            )?;
            Ok((username.clone(), maildir.clone()))
        })
    }

    /// Refuses what `mailbox_add` (`exists = false`) or `mailbox_passwd`
    /// (`exists = true`) would refuse anyway, before a password is asked for.
    pub fn mailbox_precheck(&self, address: &str, exists: bool) -> Result<(), AdminError> {
        let a = mailbox_address(address)?;
        let username = a.key();
        self.read(|c| match (exists, mailbox_username(c, &username)?) {
            (false, Some(u)) => invalid(format!("mailbox {u} already exists")),
            (false, None) => hosted_domain(c, &a.domain, "mailboxes"),
            (true, None) => invalid(format!("no mailbox {username}")),
            (true, Some(_)) => Ok(()),
        })
    }

    /// Replaces a mailbox's password hash; returns the username as stored.
    pub fn mailbox_passwd(&self, address: &str, password_hash: &str) -> Result<String, AdminError> {
        let username = mailbox_address(address)?.key();
        if password_hash.is_empty() {
            return invalid("an empty password hash cannot be stored");
        }
        let now = now();
        self.write(|tx| {
            let Some(stored) = mailbox_username(tx, &username)? else {
                return invalid(format!("no mailbox {username}"));
            };
            tx.execute(
                "UPDATE mailbox SET password = ?2, modified = ?3 WHERE username = ?1",
                params![stored, password_hash, now],
            )?;
            Ok(stored)
        })
    }

    /// Deletes a mailbox and its self-alias. Other aliases are left alone;
    /// the ones still pointing at the mailbox are returned.
    pub fn mailbox_del(&self, address: &str) -> Result<(String, Vec<String>), AdminError> {
        let username = mailbox_address(address)?.key();
        self.write(|tx| {
            let Some(stored) = mailbox_username(tx, &username)? else {
                return invalid(format!("no mailbox {username}"));
            };
            tx.execute("DELETE FROM mailbox WHERE username = ?1", [&stored])?;
            tx.execute("DELETE FROM quota2 WHERE username = ?1", [&stored])?;
            // The self-alias goes; if it also forwarded elsewhere, so do those
            // forwards (PostfixAdmin keeps them in the same row).
            tx.execute("DELETE FROM alias WHERE address = ?1", [&stored])?;
            let mut st = tx.prepare(
                "SELECT address, goto FROM alias WHERE instr(lower(goto), lower(?1)) > 0",
            )?;
            let rows = st.query_map([&stored], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })?;
            let mut pointing = Vec::new();
            for row in rows {
                let (address, goto) = row?;
                if goto_list(&goto)
                    .iter()
                    .any(|t| t.eq_ignore_ascii_case(&stored))
                {
                    pointing.push(address);
                }
            }
            Ok((stored.clone(), pointing))
        })
    }

    /// Mailboxes of one domain, or of all.
    pub fn mailbox_list(&self, domain: Option<&str>) -> Result<Vec<MailboxInfo>, AdminError> {
        let domain = domain.map(domain_name).transpose()?;
        self.read(|c| {
            let mut st = c.prepare(
                "SELECT username, name, quota, active, smtp_active FROM mailbox
                 WHERE ?1 IS NULL OR domain = ?1 ORDER BY domain, local_part",
            )?;
            let rows = st.query_map([&domain], |r| {
                Ok(MailboxInfo {
                    username: r.get(0)?,
                    name: r.get(1)?,
                    quota: r.get(2)?,
                    active: r.get::<_, i64>(3)? != 0,
                    smtp_active: r.get::<_, i64>(4)? != 0,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    /// Adds an alias (`user@domain`, or `@domain` for a catch-all). An
    /// existing one is refused unless `append`: then the new targets are
    /// added to its list. Returns (address, the goto list now stored).
    pub fn alias_add(
        &self,
        address: &str,
        targets: &[String],
        append: bool,
    ) -> Result<(String, String), AdminError> {
        let (address, domain) = alias_address(address)?;
        if targets.is_empty() {
            return invalid("an alias needs at least one target address");
        }
        let targets = targets
            .iter()
            .map(|t| target_address(t))
            .collect::<Result<Vec<_>, _>>()?;
        let now = now();
        self.write(|tx| {
            hosted_domain(tx, &domain, "aliases")?;
            let existing = tx
                .query_row(
                    "SELECT address, goto FROM alias WHERE address = ?1",
                    [&address],
                    |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)),
                )
                .optional()?;
            let (stored, mut list) = match existing {
                Some((a, goto)) if append => (Some(a), goto_list(&goto)),
                Some((a, _)) if mailbox_username(tx, &a)?.is_some() => {
                    return invalid(format!(
                    "{a} is a mailbox; use --append to forward its mail to more addresses as well"
                ))
                }
                Some((a, goto)) => {
                    return invalid(format!(
                        "alias {a} already exists (to {goto}); use --append to add targets to it"
                    ))
                }
                None => (None, Vec::new()),
            };
            for t in targets {
                if !list.iter().any(|x| x.eq_ignore_ascii_case(&t)) {
                    list.push(t);
                }
            }
            let goto = list.join(",");
            match &stored {
                Some(a) => tx.execute(
                    "UPDATE alias SET goto = ?2, modified = ?3 WHERE address = ?1",
                    params![a, goto, now],
                )?,
                None => tx.execute(
                    "INSERT INTO alias (address, goto, domain, created, modified, active)
                     VALUES (?1, ?2, ?3, ?4, ?4, 1)",
                    params![address, goto, domain, now],
                )?,
            };
            Ok((stored.unwrap_or_else(|| address.clone()), goto))
        })
    }

    /// Deletes an alias. A mailbox's own alias row cannot go (`user del`
    /// does that); if it forwards elsewhere too, the forwards are removed
    /// and the mailbox keeps its mail. Returns what was done, for the user.
    pub fn alias_del(&self, address: &str) -> Result<String, AdminError> {
        let (address, _) = alias_address(address)?;
        let now = now();
        self.write(|tx| {
            let Some(goto) = alias_goto(tx, &address)? else {
                return invalid(format!("no alias {address}"));
            };
            if let Some(user) = mailbox_username(tx, &address)? {
                if goto_list(&goto).iter().all(|t| t.eq_ignore_ascii_case(&user)) {
                    return invalid(format!(
                        "{user} is a mailbox, not an alias; delete it with `postern user del {user}`"
                    ));
                }
                tx.execute(
                    "UPDATE alias SET goto = ?1, modified = ?2 WHERE address = ?1",
                    params![user, now],
                )?;
                return Ok(format!("removed the forwards of mailbox {user} (it keeps its mail)"));
            }
            tx.execute("DELETE FROM alias WHERE address = ?1", [&address])?;
            Ok(format!("deleted alias {address}"))
        })
    }

    /// Aliases of one domain, or of all; a mailbox's plain self-alias is
    /// not listed (it is the mailbox, see `user list`).
    pub fn alias_list(&self, domain: Option<&str>) -> Result<Vec<AliasInfo>, AdminError> {
        let domain = domain.map(domain_name).transpose()?;
        self.read(|c| {
            let mut st = c.prepare(
                "SELECT address, goto, active FROM alias
                 WHERE (?1 IS NULL OR domain = ?1)
                   AND NOT (address = goto AND address IN (SELECT username FROM mailbox))
                 ORDER BY domain, address",
            )?;
            let rows = st.query_map([&domain], |r| {
                Ok(AliasInfo {
                    address: r.get(0)?,
                    goto: r.get(1)?,
                    active: r.get::<_, i64>(2)? != 0,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }
}

/// The domain as stored, if it exists.
fn domain_row(c: &Connection, domain: &str) -> rusqlite::Result<Option<String>> {
    c.query_row(
        "SELECT domain FROM domain WHERE domain = ?1",
        [domain],
        |r| r.get(0),
    )
    .optional()
}

fn mailbox_username(c: &Connection, username: &str) -> rusqlite::Result<Option<String>> {
    c.query_row(
        "SELECT username FROM mailbox WHERE username = ?1",
        [username],
        |r| r.get(0),
    )
    .optional()
}

fn alias_goto(c: &Connection, address: &str) -> rusqlite::Result<Option<String>> {
    c.query_row(
        "SELECT goto FROM alias WHERE address = ?1",
        [address],
        |r| r.get(0),
    )
    .optional()
}

/// Refuses a domain that does not exist, is inactive or is a backup MX
/// (whose mail is relayed, never stored here).
fn hosted_domain(c: &Connection, domain: &str, what: &str) -> Result<(), AdminError> {
    let row = c
        .query_row(
            "SELECT active, backupmx FROM domain WHERE domain = ?1",
            [domain],
            |r| Ok((r.get::<_, i64>(0)? != 0, r.get::<_, i64>(1)? != 0)),
        )
        .optional()?;
    match row {
        None => invalid(format!(
            "domain {domain} does not exist; add it with `postern domain add {domain}`"
        )),
        Some((false, _)) => invalid(format!(
            "domain {domain} is inactive; {what} cannot be added to it"
        )),
        Some((_, true)) => invalid(format!(
            "domain {domain} is a backup MX domain (its mail is relayed, not delivered here); \
             {what} cannot be added to it"
        )),
        Some(_) => Ok(()),
    }
}
