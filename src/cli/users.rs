//! `postern user|domain|alias`: managing the SQLite directory on a box
//! without MySQL. Argument handling, password input and exit codes only;
//! the edits (and their checks) are in `directory::sqlite::admin`.
//!
//! Passwords never come from argv or the environment (both are visible to
//! other users through /proc); see password_input.rs.
//!
//! Exit codes (sysexits.h): 65 bad input or a conflicting state, 75 the
//! database is locked (try again), 74 other database failures, 78 a bad
//! configuration.

use std::path::PathBuf;

use argh::FromArgs;

use crate::config::Config;
use crate::directory::sqlite::admin::{AdminError, NewMailbox};
use crate::directory::sqlite::Db;

pub use crate::sysexits::{EX_CANTCREAT, EX_DATAERR, EX_IOERR, EX_TEMPFAIL};

/// The longest password accepted, in bytes.
pub const MAX_PASSWORD: usize = 1024;

/// A leaf subcommand: its own fields, then `--config` and `--data-dir`
/// (as `postern reload` has them).
macro_rules! leaf {
    ($(#[$m:meta])* $name:ident, $sub:literal { $($(#[$f:meta])* $field:ident: $ty:ident $(<$arg:ident>)?,)* }) => {
        $(#[$m])*
        #[derive(FromArgs)]
        #[argh(subcommand, name = $sub)]
        pub struct $name {
            $($(#[$f])* pub $field: $ty $(<$arg>)?,)*
            /// configuration file; without it, the embedded default
            #[argh(option, short = 'c')]
            pub config: Option<PathBuf>,
            /// data directory (overrides data_dir)
            #[argh(option)]
            pub data_dir: Option<PathBuf>,
        }
    };
}

/// Manage mailboxes in the SQLite directory (PostfixAdmin's mailbox table).
#[derive(FromArgs)]
#[argh(subcommand, name = "user")]
pub struct UserCmd {
    #[argh(subcommand)]
    pub action: UserAction,
}

#[derive(FromArgs)]
#[argh(subcommand)]
pub enum UserAction {
    Add(UserAdd),
    Passwd(UserPasswd),
    Del(UserDel),
    List(UserList),
}

leaf! {
    /// Add a mailbox; the password is asked for (or read from stdin's first line).
    UserAdd, "add" {
        /// the full address, e.g. alice@example.test
        #[argh(positional)]
        address: String,
        /// the owner's name
        #[argh(option, default = "String::new()")]
        name: String,
        /// quota in bytes (a K, M or G suffix is allowed); 0, the default, is unlimited
        #[argh(option, from_str_fn(parse_quota), default = "0")]
        quota: u64,
        /// maildir relative to the mailbox base (default: DOMAIN/LOCALPART/)
        #[argh(option)]
        maildir: Option<String>,
    }
}

leaf! {
    /// Set a new password for a mailbox (asked for, or read from stdin's first line).
    UserPasswd, "passwd" {
        /// the mailbox's address
        #[argh(positional)]
        address: String,
    }
}

leaf! {
    /// Delete a mailbox and its own alias row (its Maildir stays on disk).
    UserDel, "del" {
        /// the mailbox's address
        #[argh(positional)]
        address: String,
    }
}

leaf! {
    /// List mailboxes, of one domain or of all.
    UserList, "list" {
        /// only this domain
        #[argh(positional)]
        domain: Option<String>,
    }
}

/// Manage hosted domains in the SQLite directory.
#[derive(FromArgs)]
#[argh(subcommand, name = "domain")]
pub struct DomainCmd {
    #[argh(subcommand)]
    pub action: DomainAction,
}

#[derive(FromArgs)]
#[argh(subcommand)]
pub enum DomainAction {
    Add(DomainAdd),
    Del(DomainDel),
    List(DomainList),
}

leaf! {
    /// Add a domain (active).
    DomainAdd, "add" {
        /// the domain name, e.g. example.test
        #[argh(positional)]
        domain: String,
        /// a description
        #[argh(option, default = "String::new()")]
        description: String,
        /// be a backup MX for it: accept its mail and relay it on, never store it
        #[argh(switch)]
        backup_mx: bool,
    }
}

leaf! {
    /// Delete a domain; refused while it has mailboxes or aliases, unless --force.
    DomainDel, "del" {
        /// the domain name
        #[argh(positional)]
        domain: String,
        /// also delete its mailboxes, aliases and alias domains
        #[argh(switch)]
        force: bool,
    }
}

leaf! {
    /// List domains with their mailbox and alias counts.
    DomainList, "list" {}
}

/// Manage aliases (forwards and catch-alls) in the SQLite directory.
#[derive(FromArgs)]
#[argh(subcommand, name = "alias")]
pub struct AliasCmd {
    #[argh(subcommand)]
    pub action: AliasAction,
}

#[derive(FromArgs)]
#[argh(subcommand)]
pub enum AliasAction {
    Add(AliasAdd),
    Del(AliasDel),
    List(AliasList),
}

leaf! {
    /// Add an alias: ADDRESS (or @DOMAIN, a catch-all) to one or more targets.
    AliasAdd, "add" {
        /// the alias address, or @domain for a catch-all
        #[argh(positional)]
        address: String,
        /// where its mail goes
        #[argh(positional)]
        targets: Vec<String>,
        /// add the targets to an existing alias instead of refusing
        #[argh(switch)]
        append: bool,
    }
}

leaf! {
    /// Delete an alias.
    AliasDel, "del" {
        /// the alias address, or @domain
        #[argh(positional)]
        address: String,
    }
}

leaf! {
    /// List aliases, of one domain or of all.
    AliasList, "list" {
        /// only this domain
        #[argh(positional)]
        domain: Option<String>,
    }
}

fn parse_quota(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (num, mult) = match t.find(|c: char| !c.is_ascii_digit()) {
        None => (t, 1u64),
        Some(i) => {
            let m = match t[i..].to_ascii_uppercase().as_str() {
                "B" => 1,
                "K" | "KB" | "KIB" => 1 << 10,
                "M" | "MB" | "MIB" => 1 << 20,
                "G" | "GB" | "GIB" => 1 << 30,
                _ => {
                    return Err(format!(
                        "{s:?} is not a size (bytes, or e.g. 512K, 10M, 1G)"
                    ))
                }
            };
            (&t[..i], m)
        }
    };
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .filter(|n| i64::try_from(*n).is_ok())
        .ok_or_else(|| format!("{s:?} is not a size (bytes, or e.g. 512K, 10M, 1G)"))
}

/// Config and database for one command, or the exit code.
fn open(
    cmd: &str,
    config: Option<&PathBuf>,
    data_dir: Option<PathBuf>,
) -> Result<(Config, Db), i32> {
    let cfg = super::config_for(config, data_dir)?;
    super::as_service_user(cmd, &cfg)?;
    let path = cfg.database_path();
    if let Some(dir) = path.parent() {
        if let Err(e) = crate::fsutil::ensure_dir(dir, 0o755) {
            eprintln!("postern {cmd}: cannot create {}: {e}", dir.display());
            return Err(EX_CANTCREAT);
        }
    }
    let (db, problem) = Db::open(&path, cfg.directory.lookup_timeout.0);
    if let Some(p) = problem {
        eprintln!("postern {cmd}: cannot open the user directory {p}");
        return Err(if p.busy { EX_TEMPFAIL } else { EX_IOERR });
    }
    Ok((cfg, db))
}

/// Prints the error and gives its exit code.
fn fail(cmd: &str, e: &AdminError) -> i32 {
    eprintln!("postern {cmd}: {e}");
    match e {
        AdminError::Invalid(_) => EX_DATAERR,
        AdminError::Locked(_) => EX_TEMPFAIL,
        AdminError::Database(_) => EX_IOERR,
    }
}

/// Shows a result with `show`, or the error; gives the exit code.
fn report<T>(cmd: &str, r: Result<T, AdminError>, show: impl FnOnce(T)) -> i32 {
    match r {
        Ok(v) => {
            show(v);
            0
        }
        Err(e) => fail(cmd, &e),
    }
}

/// The config and database of a command, or return its exit code.
macro_rules! open_or_return {
    ($cmd:expr, $args:expr) => {
        match open($cmd, $args.config.as_ref(), $args.data_dir.clone()) {
            Ok(v) => v,
            Err(code) => return code,
        }
    };
}

pub fn user(u: UserCmd) -> i32 {
    match u.action {
        UserAction::Add(a) => {
            let cmd = "user add";
            let (cfg, db) = open_or_return!(cmd, a);
            let hash = match password_for(cmd, &cfg, &db, &a.address, false) {
                Ok(h) => h,
                Err(code) => return code,
            };
            let new = NewMailbox {
                address: &a.address,
                name: &a.name,
                quota: a.quota,
                maildir: a.maildir.as_deref(),
                password_hash: &hash,
            };
            report(cmd, db.mailbox_add(&new), |(user, maildir)| {
                println!("added mailbox {user} (maildir {maildir})")
            })
        }
        UserAction::Passwd(a) => {
            let cmd = "user passwd";
            let (cfg, db) = open_or_return!(cmd, a);
            let hash = match password_for(cmd, &cfg, &db, &a.address, true) {
                Ok(h) => h,
                Err(code) => return code,
            };
            report(cmd, db.mailbox_passwd(&a.address, &hash), |user| {
                println!("changed the password of {user}")
            })
        }
        UserAction::Del(a) => {
            let cmd = "user del";
            let (_, db) = open_or_return!(cmd, a);
            report(cmd, db.mailbox_del(&a.address), |(user, pointing)| {
                println!("deleted mailbox {user} and its alias (its Maildir is left on disk)");
                if !pointing.is_empty() {
                    println!(
                        "note: these aliases still point at {user}: {}",
                        pointing.join(", ")
                    );
                }
            })
        }
        UserAction::List(a) => {
            let cmd = "user list";
            let (_, db) = open_or_return!(cmd, a);
            report(cmd, db.mailbox_list(a.domain.as_deref()), |rows| {
                let rows: Vec<Vec<String>> = rows
                    .into_iter()
                    .map(|m| {
                        let (q, on, smtp) =
                            (m.quota.to_string(), yes_no(m.active), yes_no(m.smtp_active));
                        vec![m.username, q, on, smtp, m.name]
                    })
                    .collect();
                table(&["USERNAME", "QUOTA", "ACTIVE", "SMTP", "NAME"], &rows);
            })
        }
    }
}

const DOMAIN_COLUMNS: [&str; 6] = [
    "DOMAIN",
    "MAILBOXES",
    "ALIASES",
    "BACKUPMX",
    "ACTIVE",
    "DESCRIPTION",
];

pub fn domain(d: DomainCmd) -> i32 {
    match d.action {
        DomainAction::Add(a) => {
            let cmd = "domain add";
            let (_, db) = open_or_return!(cmd, a);
            report(
                cmd,
                db.domain_add(&a.domain, &a.description, a.backup_mx),
                |name| {
                    let note = if a.backup_mx {
                        " (backup MX: its mail is relayed on, not stored)"
                    } else {
                        ""
                    };
                    println!("added domain {name}{note}");
                },
            )
        }
        DomainAction::Del(a) => {
            let cmd = "domain del";
            let (_, db) = open_or_return!(cmd, a);
            report(cmd, db.domain_del(&a.domain, a.force), |(name, r)| {
                println!(
                    "deleted domain {name} with {} mailbox(es), {} alias(es) and {} alias domain(s)",
                    r.mailboxes, r.aliases, r.alias_domains
                )
            })
        }
        DomainAction::List(a) => {
            let cmd = "domain list";
            let (_, db) = open_or_return!(cmd, a);
            report(cmd, db.domain_list(), |rows| {
                let rows: Vec<Vec<String>> = rows
                    .into_iter()
                    .map(|d| {
                        let (m, al) = (d.mailboxes.to_string(), d.aliases.to_string());
                        let (bmx, on) = (yes_no(d.backupmx), yes_no(d.active));
                        vec![d.domain, m, al, bmx, on, d.description]
                    })
                    .collect();
                table(&DOMAIN_COLUMNS, &rows);
            })
        }
    }
}

pub fn alias(a: AliasCmd) -> i32 {
    match a.action {
        AliasAction::Add(a) => {
            let cmd = "alias add";
            let (_, db) = open_or_return!(cmd, a);
            report(
                cmd,
                db.alias_add(&a.address, &a.targets, a.append),
                |(address, goto)| println!("alias {address} -> {goto}"),
            )
        }
        AliasAction::Del(a) => {
            let cmd = "alias del";
            let (_, db) = open_or_return!(cmd, a);
            report(cmd, db.alias_del(&a.address), |what| println!("{what}"))
        }
        AliasAction::List(a) => {
            let cmd = "alias list";
            let (_, db) = open_or_return!(cmd, a);
            report(cmd, db.alias_list(a.domain.as_deref()), |rows| {
                for r in rows {
                    let inactive = if r.active { "" } else { " (inactive)" };
                    println!("{} -> {}{inactive}", r.address, r.goto);
                }
            })
        }
    }
}

/// Refuses first what the edit would refuse anyway (a bad address, a
/// missing domain, a mailbox that exists for `user add` or does not for
/// `user passwd`), so nobody types a password in vain; then reads the
/// password and hashes it.
fn password_for(
    cmd: &str,
    cfg: &Config,
    db: &Db,
    address: &str,
    exists: bool,
) -> Result<String, i32> {
    db.mailbox_precheck(address, exists)
        .map_err(|e| fail(cmd, &e))?;
    super::password_input::new_password_hash(cmd, cfg, address)
}

fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.to_string()
}

/// Left-aligned columns under a header; the last column is not padded.
fn table(header: &[&str], rows: &[Vec<String>]) {
    let mut width: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  ", w = width[i]));
            }
        }
        println!("{}", s.trim_end());
    };
    line(header.to_vec());
    for r in rows {
        line(r.iter().map(String::as_str).collect());
    }
}
