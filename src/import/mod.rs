//! `postern sync`: one run of the PostfixAdmin MySQL/MariaDB → SQLite
//! mirror, and its summary. The source side is mysql.rs (behind the cargo
//! feature `mysql`), decoding is validate.rs; every write to the mirror
//! goes through `directory::sqlite::import`, in one transaction.
//!
//! Order of a run: read the password, connect and check the schema (a
//! wrong one fails before the mirror is touched), open the snapshot, then
//! for each mirrored table (domain, alias_domain, mailbox, alias; minus
//! `[sync] local_only`) stream its rows into the import, commit the import
//! with the record of this sync, end the snapshot. Any failure on the way
//! rolls the import back: the previous mirror stays, and its record notes
//! the failed attempt.

#[cfg(feature = "mysql")]
mod mysql;
// Decoding is the source's; without one it is unused (and still tested).
#[cfg_attr(not(feature = "mysql"), allow(dead_code))]
mod validate;

use std::sync::atomic::AtomicBool;
use std::time::Duration;

use crate::config::Config;
use crate::directory::sqlite::import::{Counts, Event, ImportError, Table};
use crate::directory::sqlite::Db;
use crate::log;
use crate::sysexits::{EX_CONFIG, EX_DATAERR, EX_IOERR, EX_TEMPFAIL, EX_UNAVAILABLE};

/// Why a sync did not happen; the mirror is as it was.
#[derive(Debug)]
pub enum SyncError {
    /// The source cannot be reached, timed out, went away mid-way, or the
    /// mirror is locked: try again later (75).
    Unavailable(String),
    /// The config does not let a sync happen: no [sync.mysql], a bad
    /// password file, access denied, no such database (78).
    Config(String),
    /// The source's tables or columns are not what the config says (65).
    Schema(String),
    /// The mirror could not be read or written (74).
    Mirror(String),
    /// The server is stopping (75).
    Cancelled,
    /// This postern was built without the cargo feature `mysql` (69).
    NotBuilt,
    /// The source would take away more of the mirror than `[sync]
    /// removal_limit` allows (an emptied or wrong database?): nothing is
    /// changed until `postern sync --force` (65).
    TooManyRemovals(String),
}

impl SyncError {
    pub fn exit_code(&self) -> i32 {
        match self {
            SyncError::Unavailable(_) | SyncError::Cancelled => EX_TEMPFAIL,
            SyncError::Config(_) => EX_CONFIG,
            SyncError::Schema(_) | SyncError::TooManyRemovals(_) => EX_DATAERR,
            SyncError::Mirror(_) => EX_IOERR,
            SyncError::NotBuilt => EX_UNAVAILABLE,
        }
    }
}

impl std::fmt::Display for SyncError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SyncError::Unavailable(m)
            | SyncError::Config(m)
            | SyncError::Schema(m)
            | SyncError::Mirror(m)
            | SyncError::TooManyRemovals(m) => f.write_str(m),
            SyncError::Cancelled => f.write_str("cancelled: the server is stopping"),
            SyncError::NotBuilt => {
                f.write_str("this postern was built without MySQL support (cargo feature `mysql`)")
            }
        }
    }
}

impl From<ImportError> for SyncError {
    fn from(e: ImportError) -> SyncError {
        match e {
            ImportError::Busy(m) => SyncError::Unavailable(format!("the mirror: {m}")),
            ImportError::Database(m) => SyncError::Mirror(format!("the mirror: {m}")),
        }
    }
}

/// What one successful run did.
#[derive(Clone, Debug)]
pub struct Summary {
    pub source: String,
    pub tables: Vec<(Table, Counts)>,
    pub duration: Duration,
    pub dry_run: bool,
}

impl Summary {
    fn total(&self, f: impl Fn(&Counts) -> u64) -> u64 {
        self.tables.iter().map(|(_, c)| f(c)).sum()
    }

    pub fn changes(&self) -> u64 {
        self.total(Counts::changes)
    }

    pub fn skipped(&self) -> u64 {
        self.total(|c| c.skipped)
    }

    pub fn conflicts(&self) -> u64 {
        self.total(|c| c.conflicts)
    }

    /// One line: per table rows and +added ~changed -removed, the totals
    /// and the duration.
    pub fn line(&self) -> String {
        let per: Vec<String> = self
            .tables
            .iter()
            .map(|(t, c)| {
                format!(
                    "{} {} (+{} ~{} -{})",
                    t.name(),
                    c.rows,
                    c.added,
                    c.changed,
                    c.removed
                )
            })
            .collect();
        let what = match (self.changes(), self.dry_run) {
            (0, _) => "no change".to_string(),
            (n, false) => format!("{n} changes"),
            (n, true) => format!("{n} changes would be made"),
        };
        format!(
            "{what}; {}; {} skipped, {} conflicts; {:.2} s",
            per.join(", "),
            self.skipped(),
            self.conflicts(),
            self.duration.as_secs_f64()
        )
    }
}

/// How a run reports single rows.
pub struct Options<'a> {
    pub dry_run: bool,
    /// Past `[sync] removal_limit` too (the operator means it).
    pub force: bool,
    /// Set when the server stops: the run rolls back and returns.
    pub cancel: &'a AtomicBool,
    /// Every added, changed, removed, skipped or conflicting row.
    pub events: &'a mut dyn FnMut(&Event),
}

/// Names the source in logs and in the mirror's record (never the
/// password): `mysql://user@localhost/db (socket /run/mysqld/mysqld.sock)`.
pub fn source_name(cfg: &Config) -> String {
    match &cfg.sync.mysql {
        None => "(no [sync.mysql])".into(),
        Some(m) if m.host == "localhost" => format!(
            "mysql://{}@localhost/{} (socket {})",
            m.user,
            m.database,
            m.socket.display()
        ),
        Some(m) => format!(
            "mysql://{}@{}:{}/{}{}",
            m.user,
            m.host,
            m.port,
            m.database,
            if m.tls { " (TLS)" } else { "" }
        ),
    }
}

/// The tables a sync mirrors, in order.
pub fn synced_tables(cfg: &Config) -> Vec<Table> {
    Table::ALL
        .into_iter()
        .filter(|t| !cfg.sync.is_local_only(t.name()))
        .collect()
}

/// One sync. On failure the attempt is recorded in the mirror (not on a
/// dry run) and the mirror is otherwise untouched.
pub fn run(cfg: &Config, db: &Db, opts: Options<'_>) -> Result<Summary, SyncError> {
    let dry_run = opts.dry_run;
    let r = run_inner(cfg, db, opts);
    if let Err(e) = &r {
        if !dry_run && !matches!(e, SyncError::NotBuilt | SyncError::Cancelled) {
            let _ =
                db.record_sync_failure(&source_name(cfg), &e.to_string(), crate::clock::now_secs());
        }
    }
    r
}

#[cfg(not(feature = "mysql"))]
fn run_inner(_cfg: &Config, _db: &Db, _opts: Options<'_>) -> Result<Summary, SyncError> {
    Err(SyncError::NotBuilt)
}

#[cfg(feature = "mysql")]
fn run_inner(cfg: &Config, db: &Db, opts: Options<'_>) -> Result<Summary, SyncError> {
    let started = std::time::Instant::now();
    let tables = synced_tables(cfg);
    let mut source = mysql::Source::connect(cfg, &tables)?;
    source.begin(cfg, &tables)?;
    let mut import = db.begin_import(opts.dry_run, opts.events)?;
    let mut counts = Vec::new();
    for &t in &tables {
        let mut failed = None;
        let r = import.table(t, |w| {
            source.stream(t, w, opts.cancel).map_err(|e| {
                let text = e.to_string();
                failed = Some(e);
                text
            })
        })?;
        match r {
            Ok(c) => counts.push((t, c)),
            Err(text) => return Err(failed.unwrap_or(SyncError::Unavailable(text))),
        }
    }
    if !opts.force {
        check_removals(cfg, &counts)?;
    }
    let summary = Summary {
        source: source_name(cfg),
        tables: counts,
        duration: started.elapsed(),
        dry_run: opts.dry_run,
    };
    import.commit(&summary.source, crate::clock::now_secs(), &summary.line())?;
    source.finish();
    Ok(summary)
}

/// A sync that would remove more than `[sync] removal_limit` percent of
/// the mirror's domains or mailboxes (10 rows at least) is refused: a
/// database restored empty, or the wrong one, must not bounce everyone's
/// mail.
pub fn check_removals(cfg: &Config, counts: &[(Table, Counts)]) -> Result<(), SyncError> {
    let limit = u64::from(cfg.sync.main.removal_limit);
    if limit >= 100 {
        return Ok(());
    }
    for (t, c) in counts {
        if !matches!(t, Table::Domain | Table::Mailbox) {
            continue;
        }
        if c.removed >= 10 && c.removed * 100 > c.before * limit {
            return Err(SyncError::TooManyRemovals(format!(
                "the source would remove {} of the mirror's {} {} rows, more than [sync] removal_limit = {limit}%; nothing was changed. If that is right, run `postern sync --force`",
                c.removed,
                c.before,
                t.name()
            )));
        }
    }
    Ok(())
}

/// Logs skipped and conflicting rows (warnings), at most `limit` lines a
/// run, then how many more there were.
pub struct EventLog {
    shown: usize,
    more: usize,
    limit: usize,
}

impl EventLog {
    pub fn new(limit: usize) -> EventLog {
        EventLog {
            shown: 0,
            more: 0,
            limit,
        }
    }

    pub fn event(&mut self, e: &Event) {
        let line = match e {
            Event::Skipped {
                table,
                key,
                why,
                kept,
            } => format!(
                "sync: skipped {} {key:?}: {why}{}",
                table.name(),
                if *kept {
                    "; the mirror keeps its previous row"
                } else {
                    ""
                }
            ),
            Event::Duplicate { table, key } => format!(
                "sync: skipped {} {key:?}: the same key as an earlier row but for case \
                 (addresses and domains are case-insensitive); the first one is kept",
                table.name()
            ),
            Event::Conflict { table, key, what } => {
                format!("sync: conflict: {} {key:?} was {what}", table.name())
            }
            _ => return,
        };
        if self.shown < self.limit {
            self.shown += 1;
            log::warning(&line);
        } else {
            self.more += 1;
        }
    }

    /// The "N more" line, if lines were left out.
    pub fn finish(&self) {
        if self.more > 0 {
            log::warning(&format!(
                "sync: ... and {} more rows skipped or in conflict",
                self.more
            ));
        }
    }
}

/// A warning while the last successful sync is older than
/// `[sync] warn_after` (`None`: fresh enough, or no source configured).
pub fn staleness(cfg: &Config, db: &Db, now: i64) -> Option<String> {
    cfg.sync.mysql.as_ref()?;
    let limit = cfg.sync.main.warn_after.0.as_secs() as i64;
    if limit == 0 {
        return None;
    }
    let status = db.sync_status().ok().flatten().unwrap_or_default();
    let age = status.last_success.map(|t| now - t);
    match age {
        Some(a) if a <= limit => None,
        Some(a) => Some(format!(
            "sync: the mirror was last synced {} ago (at {}), longer than [sync] warn_after; last error: {}",
            ago(a),
            crate::timefmt::rfc3339(status.last_success.unwrap_or(0)),
            if status.last_error.is_empty() { "none" } else { &status.last_error }
        )),
        None => Some(format!(
            "sync: the mirror has never been synced from {}{}",
            source_name(cfg),
            if status.last_error.is_empty() {
                String::new()
            } else {
                format!("; last error: {}", status.last_error)
            }
        )),
    }
}

/// "2 d 3 h", "4 h 10 min", "12 min", "40 s".
pub fn ago(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        0..=59 => format!("{s} s"),
        60..=3599 => format!("{} min", s / 60),
        3600..=86_399 => format!("{} h {} min", s / 3600, s / 60 % 60),
        _ => format!("{} d {} h", s / 86_400, s / 3600 % 24),
    }
}
