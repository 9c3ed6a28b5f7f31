//! Who exists and where their mail goes: domain classes, mailboxes and
//! alias expansion, over the SQLite mirror and the local aliases file.
//!
//! All lookups go through here; answers are found / not found / temporary
//! failure ([`TempFail`]). Expansion follows the seed's Postfix set-up:
//! for a hosted domain, an alias row wins (`alias.goto`, a comma list; an
//! alias pointing at its own address means "deliver to the mailbox"), then
//! the mailbox, then the domain's alias domain target (`alias_domain`),
//! then the catch-all `@domain`. Local domains use the aliases file, then
//! local users. Aliases may point at aliases down to a depth limit; an
//! address that reappears among its own ancestors is a loop.
//!
//! The rules live here and only here; the rows come from a [`Store`]: the
//! SQLite mirror in the server ([`sqlite::Db`]), or a static in-memory
//! table ([`memory::MemoryStore`]) in tests, so that tests exercise the
//! same rules the server uses.

pub mod memory;
pub mod sqlite;
mod store;
mod trace;

use std::collections::HashSet;
use std::sync::Arc;

use crate::config::aliases::{AliasMap, AliasTarget};
use crate::config::{Config, LocalUsers};
use crate::smtp::address::Address;
use sqlite::Db;
use store::Peek;
pub use store::{Answer, DomainRow, LoginRow, Lookup, MailboxRow, Store};
use trace::mailbox_note;
pub use trace::{Trace, TraceStep};

/// A lookup that could not be answered now (locked or damaged database).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TempFail(pub String);

impl std::fmt::Display for TempFail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DomainClass {
    /// mydestination: aliases file, then local users.
    Local,
    /// A hosted virtual domain (`domain.active = 1 AND backupmx = 0`).
    Hosted,
    /// We are a backup MX for it: accept, then relay onward.
    Backup,
    /// Not ours.
    Remote,
}

/// Where one copy of a message goes after expansion.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Dest {
    /// A virtual mailbox: `maildir` is relative to the mailbox base.
    Mailbox {
        username: String,
        maildir: String,
        /// Bytes; 0 = no limit.
        quota: i64,
        /// The domain's `maxquota` (MB; 0 = none): the default and the cap
        /// of mailbox quotas in PostfixAdmin.
        maxquota_mb: i64,
        /// The domain's `transport` column ("" = default).
        transport: String,
    },
    /// A local user of a local domain (the domain as addressed).
    Local { user: String, domain: String },
    /// An aliases-file `|command` of the alias `alias` (an address), run
    /// as `owner` (0: default_privs).
    Command {
        alias: String,
        command: String,
        owner: u32,
    },
    /// An aliases-file `/file` (mbox) or `/dir/` (Maildir) target.
    File {
        alias: String,
        path: std::path::PathBuf,
        owner: u32,
    },
    /// Somewhere else (a forward, a backup-MX domain, a relayed recipient).
    /// `transport`: the domain's `transport` column when the domain is in
    /// the directory (a backup-MX domain), else "".
    Remote { address: Address, transport: String },
    /// A branch of an alias that leads nowhere.
    Fail { address: String, why: FailReason },
}

impl Dest {
    /// Identity for de-duplication and delivery state.
    pub fn key(&self) -> String {
        match self {
            Dest::Mailbox { username, .. } => format!("mailbox:{}", username.to_lowercase()),
            Dest::Local { user, .. } => format!("local:{user}"),
            Dest::Command { command, .. } => format!("command:{command}"),
            Dest::File { path, .. } => format!("file:{}", path.display()),
            Dest::Remote { address, .. } => format!("remote:{}", address.key().to_lowercase()),
            Dest::Fail { address, .. } => format!("fail:{}", address.to_lowercase()),
        }
    }

    /// The address a log line or Delivered-To: names.
    pub fn address(&self) -> String {
        match self {
            Dest::Mailbox { username, .. } => username.clone(),
            Dest::Local { user, domain } => format!("{user}@{domain}"),
            Dest::Command { alias, .. } | Dest::File { alias, .. } => alias.clone(),
            Dest::Remote { address, .. } => address.to_string(),
            Dest::Fail { address, .. } => address.clone(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailReason {
    Unknown,
    Loop,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resolution {
    /// At least one destination; some may be `Dest::Fail`.
    Deliver(Vec<Dest>),
    Unknown,
    Loop,
}

pub struct Directory {
    store: Arc<dyn Store>,
    rules: Arc<Rules>,
}

/// What the expansion rules take from the config.
struct Rules {
    aliases: AliasMap,
    local_domains: Vec<String>,
    local_users: LocalUsers,
    origin: String,
    delimiter: String,
    depth_limit: usize,
}

impl Directory {
    /// Opens the SQLite mirror; the aliases file was read with the config.
    /// Returns a warning that does not stop the server (a damaged
    /// database: lookups answer 451 until it is fixed).
    pub fn open(cfg: &Config) -> (Directory, Option<String>) {
        let (db, warning) = Db::open(&cfg.database_path(), cfg.directory.lookup_timeout.0);
        (
            Directory::with_store(Arc::new(db), cfg),
            warning.map(|w| w.to_string()),
        )
    }

    /// The rules of `cfg` over any store (tests use [`memory::MemoryStore`]).
    pub fn with_store(store: Arc<dyn Store>, cfg: &Config) -> Directory {
        Directory {
            store,
            rules: Arc::new(Rules {
                aliases: cfg.aliases.clone(),
                local_domains: cfg.local_domains().to_vec(),
                local_users: cfg.directory.local_users,
                origin: cfg.origin().to_string(),
                delimiter: cfg.main.recipient_delimiter.clone(),
                depth_limit: cfg.directory.alias_depth_limit,
            }),
        }
    }

    /// Runs `f` on this directory answering only from memory: `None` if
    /// any lookup `f` made would have needed I/O (then ask again, off the
    /// executor). Never a temporary failure of its own.
    pub fn from_memory<T>(&self, f: impl FnOnce(&Directory) -> T) -> Option<T> {
        let peek = Arc::new(Peek {
            inner: self.store.clone(),
            missed: std::sync::atomic::AtomicBool::new(false),
            checked: std::sync::atomic::AtomicBool::new(false),
        });
        let view = Directory {
            store: peek.clone(),
            rules: self.rules.clone(),
        };
        let out = f(&view);
        (!peek.missed.load(std::sync::atomic::Ordering::Relaxed)).then_some(out)
    }

    /// The mailbox a login name belongs to, if it may log in at all.
    pub fn login(&self, username: &str) -> Result<Option<LoginRow>, TempFail> {
        self.store.login(username)
    }

    pub fn is_local_domain(&self, domain: &str) -> bool {
        self.rules
            .local_domains
            .iter()
            .any(|d| d.eq_ignore_ascii_case(domain))
    }

    pub fn classify(&self, domain: &str) -> Result<DomainClass, TempFail> {
        if self.is_local_domain(domain) {
            return Ok(DomainClass::Local);
        }
        if domain.starts_with('[') {
            return Ok(DomainClass::Remote);
        }
        Ok(match self.store.domain(domain)? {
            Some(row) if row.backupmx => DomainClass::Backup,
            Some(_) => DomainClass::Hosted,
            // An alias domain without a row of its own in `domain`.
            None if self.store.alias_domain_target(domain)?.is_some() => DomainClass::Hosted,
            None => DomainClass::Remote,
        })
    }

    /// Expands an address to its final destinations.
    pub fn resolve(&self, addr: &Address) -> Result<Resolution, TempFail> {
        self.resolve_traced(addr, &mut Trace::off())
    }

    /// [`Directory::resolve`], noting each step in `trace` (`postern
    /// explain`): the same rules, whether anyone is watching or not.
    pub fn resolve_traced(
        &self,
        addr: &Address,
        trace: &mut Trace,
    ) -> Result<Resolution, TempFail> {
        let mut out = Vec::new();
        let mut chain = Vec::new();
        match self.expand(addr, &mut chain, &mut out, trace)? {
            Some(FailReason::Unknown) if out.is_empty() => return Ok(Resolution::Unknown),
            Some(FailReason::Loop) if out.is_empty() => return Ok(Resolution::Loop),
            _ => {}
        }
        let mut seen = HashSet::new();
        out.retain(|d| seen.insert(d.key()));
        if out.iter().all(|d| matches!(d, Dest::Fail { .. })) {
            return Ok(match out.first() {
                Some(Dest::Fail {
                    why: FailReason::Loop,
                    ..
                }) => Resolution::Loop,
                _ => Resolution::Unknown,
            });
        }
        Ok(Resolution::Deliver(out))
    }

    /// Appends the destinations of `addr` to `out`. Returns why nothing was
    /// added for it, if nothing was.
    fn expand(
        &self,
        addr: &Address,
        chain: &mut Vec<String>,
        out: &mut Vec<Dest>,
        trace: &mut Trace,
    ) -> Result<Option<FailReason>, TempFail> {
        let key = addr.key().to_lowercase();
        let depth = chain.len();
        if chain.contains(&key) || chain.len() >= self.rules.depth_limit {
            trace.note(depth, addr, "loop", || match chain.contains(&key) {
                true => "already expanded above it: an alias loop".into(),
                false => format!("deeper than alias_depth_limit ({})", self.rules.depth_limit),
            });
            return Ok(Some(FailReason::Loop));
        }
        // `"a@b"@example.test`: an @ inside a local part never names a domain.
        if addr.local.contains('@') {
            trace.note(depth, addr, "unknown", || {
                "an @ inside the local part never names a domain".into()
            });
            return Ok(Some(FailReason::Unknown));
        }
        chain.push(key);
        let before = out.len();
        let r = match self.classify(&addr.domain)? {
            DomainClass::Remote => {
                trace.note(depth, addr, "remote", || {
                    "not one of our domains: sent onward".into()
                });
                out.push(Dest::Remote {
                    address: addr.clone(),
                    transport: String::new(),
                });
                Ok(None)
            }
            DomainClass::Backup => {
                let transport = self.domain_transport(&addr.domain)?;
                let why = || {
                    format!(
                        "domain row {} has backupmx = 1: relayed onward (transport {transport:?})",
                        addr.domain
                    )
                };
                trace.note(depth, addr, "backup_mx", why);
                out.push(Dest::Remote {
                    address: addr.clone(),
                    transport,
                });
                Ok(None)
            }
            DomainClass::Local => self.expand_local(addr, chain, out, trace),
            DomainClass::Hosted => self.expand_hosted(addr, chain, out, trace),
        };
        chain.pop();
        if let (Ok(Some(FailReason::Unknown)), true) = (&r, out.len() == before) {
            trace.note(depth, addr, "unknown", || {
                "no alias, mailbox or catch-all for it".into()
            });
        }
        r
    }

    /// Expands each target of an alias; a target equal to the alias itself
    /// is delivered by `own` (the mailbox behind the alias).
    fn expand_targets(
        &self,
        addr: &Address,
        targets: Vec<Address>,
        chain: &mut Vec<String>,
        out: &mut Vec<Dest>,
        trace: &mut Trace,
        own: impl Fn(&mut Vec<Dest>, &mut Trace) -> Result<bool, TempFail>,
    ) -> Result<Option<FailReason>, TempFail> {
        let before = out.len();
        let mut last_fail = None;
        for t in targets {
            if t.key().eq_ignore_ascii_case(&addr.key()) {
                if !own(out, trace)? {
                    last_fail = Some(FailReason::Unknown);
                }
                continue;
            }
            if let Some(why) = self.expand(&t, chain, out, trace)? {
                out.push(Dest::Fail {
                    address: t.to_string(),
                    why,
                });
                last_fail = Some(why);
            }
        }
        Ok(if out.len() > before {
            None
        } else {
            last_fail.or(Some(FailReason::Unknown))
        })
    }

    fn expand_local(
        &self,
        addr: &Address,
        chain: &mut Vec<String>,
        out: &mut Vec<Dest>,
        trace: &mut Trace,
    ) -> Result<Option<FailReason>, TempFail> {
        let local = addr.local.to_lowercase();
        let base = self.strip_extension(&local);
        let depth = chain.len() - 1;
        for name in [local.as_str(), base] {
            if let Some(targets) = self.rules.aliases.get(name) {
                trace.note(depth, addr, "aliases_file", || {
                    let line = self.rules.aliases.line_of(name).unwrap_or(0);
                    let list: Vec<String> = targets.iter().map(|t| t.to_string()).collect();
                    format!(
                        "{}:{line}: {name}: {}",
                        self.rules.aliases.file(),
                        list.join(", ")
                    )
                });
                let alias = Address::new(name, &addr.domain).to_string();
                let before = out.len();
                let mut addresses = Vec::new();
                for t in targets {
                    match t {
                        AliasTarget::Address(a) => addresses.push(a.clone()),
                        AliasTarget::Local(n) => addresses.push(Address::new(n, &addr.domain)),
                        AliasTarget::Command { command, owner } => out.push(Dest::Command {
                            alias: alias.clone(),
                            command: command.clone(),
                            owner: *owner,
                        }),
                        AliasTarget::File { path, owner } => out.push(Dest::File {
                            alias: alias.clone(),
                            path: path.clone(),
                            owner: *owner,
                        }),
                    }
                }
                if addresses.is_empty() && out.len() > before {
                    return Ok(None);
                }
                let targets = addresses;
                let user = name.to_string();
                let r = self.expand_targets(addr, targets, chain, out, trace, |out, _| {
                    Ok(local_user_ok(&user) && {
                        out.push(Dest::Local {
                            user: user.clone(),
                            domain: addr.domain.clone(),
                        });
                        true
                    })
                })?;
                // Commands and files of the alias count as deliveries.
                let delivers = out[before..]
                    .iter()
                    .any(|d| !matches!(d, Dest::Fail { .. }));
                return Ok(if delivers { None } else { r });
            }
        }
        let is_postmaster = base.eq_ignore_ascii_case("postmaster");
        if local_user_ok(base) && (self.rules.local_users == LocalUsers::Any || is_postmaster) {
            trace.note(depth, addr, "local_user", || {
                match self.rules.local_users == LocalUsers::Any {
                    true => format!("local user {base} (local_users = \"any\")"),
                    false => {
                        format!("local user {base}: postmaster is always accepted (RFC 5321 4.5.1)")
                    }
                }
            });
            out.push(Dest::Local {
                user: base.to_string(),
                domain: addr.domain.clone(),
            });
            return Ok(None);
        }
        Ok(Some(FailReason::Unknown))
    }

    fn expand_hosted(
        &self,
        addr: &Address,
        chain: &mut Vec<String>,
        out: &mut Vec<Dest>,
        trace: &mut Trace,
    ) -> Result<Option<FailReason>, TempFail> {
        let depth = chain.len() - 1;
        let target_domain = self.store.alias_domain_target(&addr.domain)?;
        if let Some(t) = &target_domain {
            trace.note(depth, addr, "alias_domain", || {
                format!("alias_domain row {}: target_domain = {t}", addr.domain)
            });
        }
        let base = self.strip_extension(&addr.local).to_string();
        let mut locals = vec![addr.local.clone()];
        if base != addr.local {
            locals.push(base.clone());
        }
        for local in &locals {
            let mut domains = vec![addr.domain.clone()];
            domains.extend(target_domain.clone());
            for domain in &domains {
                let here = Address::new(local, domain);
                if let Some(r) = self.alias_or_mailbox(&here, chain, out, trace)? {
                    return Ok(r);
                }
            }
        }
        // Catch-all: `@domain`, then the alias domain's target `@target`.
        let mut domains = vec![addr.domain.clone()];
        domains.extend(target_domain);
        for domain in &domains {
            if let Some(goto) = self.store.alias_goto(&format!("@{domain}"))? {
                trace.note(depth, addr, "catch_all", || {
                    format!("alias row @{domain} (catch-all): goto = {goto}")
                });
                return self
                    .expand_targets(addr, split_goto(&goto), chain, out, trace, |_, _| Ok(false));
            }
        }
        // RFC 5321 4.5.1: postmaster must always be accepted.
        if base.eq_ignore_ascii_case("postmaster") {
            let why = || {
                format!("no alias or mailbox: postmaster is always accepted (RFC 5321 4.5.1), as postmaster@{}", self.rules.origin)
            };
            trace.note(depth, addr, "postmaster", why);
            return self.expand(
                &Address::new("postmaster", &self.rules.origin),
                chain,
                out,
                trace,
            );
        }
        Ok(Some(FailReason::Unknown))
    }

    /// The alias row or the mailbox for exactly this address, if either exists.
    fn alias_or_mailbox(
        &self,
        here: &Address,
        chain: &mut Vec<String>,
        out: &mut Vec<Dest>,
        trace: &mut Trace,
    ) -> Result<Option<Option<FailReason>>, TempFail> {
        let key = here.key();
        let depth = chain.len() - 1;
        if let Some(goto) = self.store.alias_goto(&key)? {
            trace.note(depth, here, "alias", || {
                format!("alias row {key}: goto = {goto}")
            });
            let r =
                self.expand_targets(here, split_goto(&goto), chain, out, trace, |out, trace| {
                    Ok(match self.store.mailbox(&key)? {
                        Some(m) => {
                            trace.note(depth + 1, here, "mailbox", || mailbox_note(&m));
                            out.push(self.mailbox_dest(m)?);
                            true
                        }
                        None => false,
                    })
                })?;
            return Ok(Some(r));
        }
        if let Some(m) = self.store.mailbox(&key)? {
            trace.note(depth, here, "mailbox", || mailbox_note(&m));
            out.push(self.mailbox_dest(m)?);
            return Ok(Some(None));
        }
        Ok(None)
    }

    fn mailbox_dest(&self, m: MailboxRow) -> Result<Dest, TempFail> {
        let domain = m.username.rsplit_once('@').map(|(_, d)| d).unwrap_or("");
        let row = self.store.domain(domain)?.unwrap_or_default();
        Ok(Dest::Mailbox {
            username: m.username,
            maildir: m.maildir,
            quota: m.quota,
            maxquota_mb: row.maxquota_mb,
            transport: row.transport.trim().to_string(),
        })
    }

    /// The `transport` column of a domain in the directory, "" if none.
    fn domain_transport(&self, domain: &str) -> Result<String, TempFail> {
        Ok(self
            .store
            .domain(domain)?
            .map(|d| d.transport.trim().to_string())
            .unwrap_or_default())
    }

    /// `user+ext` → `user` with the configured delimiter(s).
    fn strip_extension<'a>(&self, local: &'a str) -> &'a str {
        if self.rules.delimiter.is_empty() || local.eq_ignore_ascii_case("postmaster") {
            return local;
        }
        match local.find(|c| self.rules.delimiter.contains(c)) {
            Some(i) if i > 0 => &local[..i],
            _ => local,
        }
    }
}

/// `alias.goto`: a comma-separated address list. Entries that are not
/// addresses are skipped (PostfixAdmin never writes them).
fn split_goto(goto: &str) -> Vec<Address> {
    goto.split(',')
        .map(str::trim)
        .filter_map(|t| Address::parse(t, true).ok())
        .collect()
}

/// Local user names become directory names: keep them to a safe set.
pub fn local_user_ok(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with(['.', '-'])
        && name
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"._-+".contains(&c))
}

#[cfg(test)]
mod tests;
