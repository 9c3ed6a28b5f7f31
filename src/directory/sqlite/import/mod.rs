//! Writing the mirror: the import API `postern sync` drives. All of one
//! sync is ONE SQLite transaction on the live file, in WAL mode:
//!
//! - lookups keep reading the previous mirror until the commit, then see
//!   the whole new one — never a mix (WAL readers read a snapshot, and are
//!   never locked out, however many pages the import writes);
//! - a sync that is killed, loses its source or finds a wrong schema rolls
//!   back and leaves the previous mirror as it was;
//! - the file is never replaced by a rename: a rename over a database in
//!   WAL mode loses the import (a reader's checkpoint writes the old `-wal`
//!   back over the new file; ../shared/notes/appliance.md §2).
//!
//! Per table: every source row is compared with the mirror's row of the
//! same key (keys folded to lower case, as lookups fold them) and written
//! only if it differs; rows the source no longer has are deleted at the
//! end. Counting is exact without `modified` timestamps, and a sync with
//! no change writes nothing but its record in `sync_state`.
//!
//! Rows are checked before they are written ([`rows::check`]): one that
//! would break delivery is skipped, and the mirror keeps its previous row
//! of that key, if it had one. A second row whose key differs from an
//! earlier one only by case is skipped as a duplicate.
//!
//! Local edits: triggers record every change to a mirrored table made
//! outside a sync (`postern user|domain|alias`, sqlite3) in
//! `sync_local_edit`; the next sync reports those it overwrites as
//! conflicts. The import drops the triggers inside its own transaction, so
//! its writes are not recorded, and restores them before the commit.
//!
//! `dry_run`: the same comparison inside a read transaction; nothing is
//! written and the journal mode is left alone.

mod rows;
mod state;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use rusqlite::types::Value;
use rusqlite::{params_from_iter, Connection, ErrorCode, OpenFlags, OptionalExtension, Statement};

pub use rows::{Alias, AliasDomain, Domain, Mailbox, Row, Table, MAX_FIELD, MAX_GOTO, NO_TIME};
pub use state::SyncStatus;

use super::Db;

/// Why an import could not go on; the mirror is left as it was.
#[derive(Debug)]
pub enum ImportError {
    /// Locked by another writer longer than the busy timeout, or the disk
    /// is full: trying again later may work.
    Busy(String),
    /// The database could not be read or written.
    Database(String),
}

impl std::fmt::Display for ImportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ImportError::Busy(m) | ImportError::Database(m) => f.write_str(m),
        }
    }
}

impl From<rusqlite::Error> for ImportError {
    fn from(e: rusqlite::Error) -> ImportError {
        match e.sqlite_error_code() {
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked | ErrorCode::DiskFull) => {
                ImportError::Busy(e.to_string())
            }
            _ => ImportError::Database(e.to_string()),
        }
    }
}

/// What happened to one row or key, for the log and for `--dry-run`.
/// Never carries a column's value (passwords are columns).
#[derive(Debug)]
pub enum Event<'a> {
    Added {
        table: Table,
        key: &'a str,
    },
    /// `columns`: the names of the columns that differ.
    Changed {
        table: Table,
        key: &'a str,
        columns: &'a [&'static str],
    },
    Removed {
        table: Table,
        key: &'a str,
    },
    /// Refused by the checks; `kept`: the mirror keeps its previous row.
    Skipped {
        table: Table,
        key: &'a str,
        why: &'a str,
        kept: bool,
    },
    /// Differs from an earlier row's key only by case.
    Duplicate {
        table: Table,
        key: &'a str,
    },
    /// A local edit that the source's row overwrites.
    Conflict {
        table: Table,
        key: &'a str,
        what: &'a str,
    },
}

/// Counts of one table.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Source rows read.
    pub rows: u64,
    pub added: u64,
    pub changed: u64,
    pub removed: u64,
    pub skipped: u64,
    pub conflicts: u64,
}

impl Counts {
    pub fn changes(&self) -> u64 {
        self.added + self.changed + self.removed
    }
}

/// An import in progress. Dropped without [`Import::commit`], it rolls
/// back.
pub struct Import<'s> {
    conn: Connection,
    dry_run: bool,
    /// Local edits since the last sync, by table: key → what was done.
    edits: HashMap<Table, HashMap<String, String>>,
    /// No sync has succeeded yet: every row the mirror has is local.
    first: bool,
    /// Keys of the domains this sync brought (when it syncs `domain`).
    domains: Option<HashSet<String>>,
    synced: Vec<Table>,
    sink: Box<dyn FnMut(&Event) + 's>,
}

/// Page cache of the import's connection: enough to keep the B-tree
/// interior pages, small enough for a router (KiB).
const IMPORT_CACHE_KIB: i64 = 4096;
/// The WAL is cut back to this after the import's checkpoint.
const WAL_SIZE_LIMIT: i64 = 4 << 20;

impl Db {
    /// Starts an import on a connection of its own. `sink` hears of every
    /// added, changed, removed, skipped or conflicting row.
    pub fn begin_import<'s>(
        &self,
        dry_run: bool,
        sink: impl FnMut(&Event) + 's,
    ) -> Result<Import<'s>, ImportError> {
        let located = |e: rusqlite::Error| match ImportError::from(e) {
            ImportError::Busy(m) => ImportError::Busy(format!("{}: {m}", self.path.display())),
            ImportError::Database(m) => {
                ImportError::Database(format!("{}: {m}", self.path.display()))
            }
        };
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(located)?;
        conn.busy_timeout(self.busy_timeout.max(Duration::from_secs(5)))
            .map_err(located)?;
        conn.execute_batch(&format!(
            "PRAGMA cache_size = -{IMPORT_CACHE_KIB}; PRAGMA temp_store = FILE;"
        ))
        .map_err(located)?;
        if dry_run {
            conn.execute_batch("BEGIN").map_err(located)?;
        } else {
            let mode: String = conn
                .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
                .map_err(located)?;
            if !mode.eq_ignore_ascii_case("wal") {
                return Err(ImportError::Busy(format!(
                    "{}: cannot switch to WAL mode (still {mode}): another process holds it",
                    self.path.display()
                )));
            }
            conn.execute_batch(&format!(
                "PRAGMA journal_size_limit = {WAL_SIZE_LIMIT}; BEGIN IMMEDIATE;"
            ))
            .map_err(located)?;
            state::prepare(&conn).map_err(located)?;
        }
        let first = state::last_success(&conn).map_err(located)?.is_none();
        let edits = state::local_edits(&conn).map_err(located)?;
        Ok(Import {
            conn,
            dry_run,
            edits,
            first,
            domains: None,
            synced: Vec::new(),
            sink: Box::new(sink),
        })
    }

    /// When and from where the mirror was last synced.
    pub fn sync_status(&self) -> Result<Option<SyncStatus>, ImportError> {
        self.with(state::status)
            .map_err(|e| ImportError::Database(e.0))
    }

    /// Records a sync that failed (the time and why), so that the status
    /// tells how long the source has been away. Best effort.
    pub fn record_sync_failure(
        &self,
        source: &str,
        why: &str,
        now: i64,
    ) -> Result<(), ImportError> {
        self.with(|c| state::record_failure(c, source, why, now))
            .map_err(|e| ImportError::Database(e.0))
    }
}

impl<'s> Import<'s> {
    /// Imports one table: `fill` is given a writer and feeds it every
    /// source row; then the rows the source did not have are deleted.
    pub fn table(
        &mut self,
        table: Table,
        fill: impl FnOnce(&mut TableWriter<'_, 's>) -> Result<(), String>,
    ) -> Result<Result<Counts, String>, ImportError> {
        let cols = table.columns();
        let list = cols.join(", ");
        let name = table.name();
        let select = format!(
            "SELECT rowid, {list} FROM {name} WHERE {} = ?1",
            table.key()
        );
        let insert = format!(
            "INSERT INTO {name} ({list}) VALUES ({})",
            (1..=cols.len())
                .map(|i| format!("?{i}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let update = format!(
            "UPDATE {name} SET {} WHERE rowid = ?{}",
            cols.iter()
                .enumerate()
                .map(|(i, c)| format!("{c} = ?{}", i + 1))
                .collect::<Vec<_>>()
                .join(", "),
            cols.len() + 1
        );
        if table == Table::Domain {
            self.domains = Some(HashSet::new());
        }
        let edits = self.edits.remove(&table).unwrap_or_default();
        let (seen, mut counts, edits) = {
            let mut w = TableWriter {
                table,
                conn: &self.conn,
                select: self.conn.prepare(&select)?,
                insert: self.conn.prepare(&insert)?,
                update: self.conn.prepare(&update)?,
                domain_exists: self
                    .conn
                    .prepare("SELECT 1 FROM domain WHERE domain = ?1")?,
                seen: RowSet::default(),
                counts: Counts::default(),
                dry_run: self.dry_run,
                first: self.first,
                edits,
                domains: &mut self.domains,
                sink: &mut self.sink,
                failed: None,
                added: HashSet::new(),
            };
            if let Err(e) = fill(&mut w) {
                return Ok(Err(e));
            }
            if let Some(e) = w.failed.take() {
                return Err(e);
            }
            (
                std::mem::take(&mut w.seen),
                w.counts,
                std::mem::take(&mut w.edits),
            )
        };
        self.remove_unseen(table, &seen, &edits, &mut counts)?;
        self.synced.push(table);
        Ok(Ok(counts))
    }

    /// Deletes the rows of `table` no source row matched.
    fn remove_unseen(
        &mut self,
        table: Table,
        seen: &RowSet,
        edits: &HashMap<String, String>,
        counts: &mut Counts,
    ) -> Result<(), ImportError> {
        let mut gone = Vec::new();
        {
            let mut st = self.conn.prepare(&format!(
                "SELECT rowid, {} FROM {}",
                table.key(),
                table.name()
            ))?;
            let mut rows = st.query([])?;
            while let Some(r) = rows.next()? {
                let rowid: i64 = r.get(0)?;
                if seen.contains(rowid) {
                    continue;
                }
                let key: String = r.get::<_, Option<String>>(1)?.unwrap_or_default();
                (self.sink)(&Event::Removed { table, key: &key });
                let lower = key.to_ascii_lowercase();
                if self.first || edits.contains_key(&lower) {
                    counts.conflicts += 1;
                    (self.sink)(&Event::Conflict {
                        table,
                        key: &key,
                        what: "made here and not in the source: removed",
                    });
                }
                gone.push(rowid);
            }
        }
        counts.removed = gone.len() as u64;
        if !self.dry_run {
            let mut del = self
                .conn
                .prepare(&format!("DELETE FROM {} WHERE rowid = ?1", table.name()))?;
            for rowid in gone {
                del.execute([rowid])?;
            }
        }
        Ok(())
    }

    /// Ends the import: records the sync (`source`, `now`, `summary`),
    /// restores the local-edit triggers of the synced tables and commits
    /// all of it at once, then folds the WAL back into the file. A dry run
    /// rolls back instead.
    pub fn commit(self, source: &str, now: i64, summary: &str) -> Result<(), ImportError> {
        if self.dry_run {
            self.conn.execute_batch("ROLLBACK")?;
            return Ok(());
        }
        state::finish(&self.conn, &self.synced, source, now, summary)?;
        self.conn.execute_batch("COMMIT")?;
        // Lookups read the WAL as well; folding it back keeps the file and
        // the WAL small. Readers on an old snapshot make this a no-op.
        let _ = self
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
        let _ = self.conn.release_memory();
        Ok(())
    }
}

/// Writes the rows of one table.
pub struct TableWriter<'i, 's> {
    table: Table,
    conn: &'i Connection,
    select: Statement<'i>,
    insert: Statement<'i>,
    update: Statement<'i>,
    domain_exists: Statement<'i>,
    seen: RowSet,
    counts: Counts,
    dry_run: bool,
    first: bool,
    edits: HashMap<String, String>,
    domains: &'i mut Option<HashSet<String>>,
    sink: &'i mut Box<dyn FnMut(&Event) + 's>,
    /// A database error met inside `put`: the table fails with it.
    failed: Option<ImportError>,
    /// Dry run: hashes of the keys it would add (nothing is inserted, so
    /// the rowid bitmap cannot tell a duplicate new key).
    added: HashSet<u64>,
}

impl TableWriter<'_, '_> {
    /// Takes one source row. Database errors end the import (see
    /// [`Import::table`]); a bad row is reported and skipped.
    pub fn put(&mut self, row: &Row) {
        if self.failed.is_some() {
            return;
        }
        if let Err(e) = self.try_put(row) {
            self.failed = Some(e);
        }
    }

    /// A row the source layer could not even decode (bad bytes, a number
    /// that is not one): reported like a row that fails its checks.
    pub fn skip(&mut self, raw_key: &str, why: &str) {
        if self.failed.is_some() {
            return;
        }
        self.counts.rows += 1;
        if let Err(e) = self.refuse(raw_key, why) {
            self.failed = Some(e);
        }
    }

    pub fn counts(&self) -> Counts {
        self.counts
    }

    fn try_put(&mut self, row: &Row) -> Result<(), ImportError> {
        let table = self.table;
        self.counts.rows += 1;
        let checked = match rows::check(row) {
            Ok(c) => c,
            Err(why) => return self.refuse(row.raw_key(), &why),
        };
        if let Some(d) = &checked.needs_domain {
            if !self.domain_known(d)? {
                let why = format!("its domain {d} does not exist");
                return self.refuse(row.raw_key(), &why);
            }
        }
        if table == Table::Domain {
            if let Some(set) = self.domains.as_mut() {
                set.insert(checked.key.clone());
            }
        }
        let key = checked.key.as_str();
        let existing = self.existing(key)?;
        let conflict = |me: &mut Self, what: &str| {
            if me.edits.contains_key(key) || (me.first && what != "restored") {
                me.counts.conflicts += 1;
                let what = match (me.edits.get(key).map(String::as_str), what) {
                    (Some("removed"), _) => "removed here; the source has it: restored",
                    (_, "added") => "added here too; the source's row wins",
                    _ => "changed here; the source's row wins",
                };
                (me.sink)(&Event::Conflict { table, key, what });
            }
        };
        match existing {
            None if self.dry_run && !self.added.insert(key_hash(key)) => {
                self.counts.skipped += 1;
                (self.sink)(&Event::Duplicate {
                    table,
                    key: row.raw_key(),
                });
            }
            None => {
                if !self.dry_run {
                    self.insert
                        .execute(params_from_iter(checked.values.iter()))?;
                    self.seen.insert(self.conn.last_insert_rowid());
                }
                self.counts.added += 1;
                (self.sink)(&Event::Added { table, key });
                conflict(self, "restored");
            }
            Some((rowid, _)) if self.seen.contains(rowid) => {
                self.counts.skipped += 1;
                (self.sink)(&Event::Duplicate {
                    table,
                    key: row.raw_key(),
                });
            }
            Some((rowid, old)) => {
                self.seen.insert(rowid);
                let cols = table.columns();
                let differ: Vec<&'static str> = cols
                    .iter()
                    .zip(old.iter().zip(&checked.values))
                    .filter(|(_, (a, b))| !same(a, b))
                    .map(|(c, _)| *c)
                    .collect();
                if !differ.is_empty() {
                    if !self.dry_run {
                        let mut p: Vec<&Value> = checked.values.iter().collect();
                        let id = Value::Integer(rowid);
                        p.push(&id);
                        self.update.execute(params_from_iter(p))?;
                    }
                    self.counts.changed += 1;
                    (self.sink)(&Event::Changed {
                        table,
                        key,
                        columns: &differ,
                    });
                    conflict(self, "changed");
                }
            }
        }
        Ok(())
    }

    /// The mirror's row of `key`: rowid and the written columns.
    fn existing(&mut self, key: &str) -> Result<Option<(i64, Vec<Value>)>, ImportError> {
        let n = self.table.columns().len();
        Ok(self
            .select
            .query_row([key], |r| {
                let rowid: i64 = r.get(0)?;
                let mut v = Vec::with_capacity(n);
                for i in 0..n {
                    v.push(r.get::<_, Value>(i + 1)?);
                }
                Ok((rowid, v))
            })
            .optional()?)
    }

    /// Does `domain` exist: among this sync's domains when it syncs the
    /// domain table, else in the mirror.
    fn domain_known(&mut self, domain: &str) -> Result<bool, ImportError> {
        if let Some(set) = self.domains.as_ref() {
            return Ok(set.contains(domain));
        }
        Ok(self.domain_exists.exists([domain])?)
    }

    /// Reports a refused row; the mirror keeps its row of that key.
    fn refuse(&mut self, raw_key: &str, why: &str) -> Result<(), ImportError> {
        self.counts.skipped += 1;
        let lower = raw_key.trim().to_ascii_lowercase();
        let kept = match self.existing(&lower)? {
            Some((rowid, _)) if !self.seen.contains(rowid) => {
                self.seen.insert(rowid);
                if self.table == Table::Domain {
                    if let Some(set) = self.domains.as_mut() {
                        set.insert(lower.clone());
                    }
                }
                true
            }
            _ => false,
        };
        (self.sink)(&Event::Skipped {
            table: self.table,
            key: raw_key,
            why,
            kept,
        });
        Ok(())
    }
}

fn key_hash(key: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut h);
    h.finish()
}

/// Equal as the mirror means it: integers by value, text by bytes.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Integer(x), Value::Text(y)) | (Value::Text(y), Value::Integer(x)) => {
            y.parse::<i64>() == Ok(*x)
        }
        _ => a == b,
    }
}

/// The rowids a sync has matched: a bitmap (rowids of a mirror are dense),
/// with a set for the odd huge one.
#[derive(Default)]
struct RowSet {
    bits: Vec<u64>,
    sparse: HashSet<i64>,
}

/// Rowids below this go into the bitmap (16 MiB at most).
const DENSE_ROWIDS: i64 = 1 << 27;

impl RowSet {
    fn insert(&mut self, rowid: i64) {
        if (0..DENSE_ROWIDS).contains(&rowid) {
            let (w, b) = ((rowid / 64) as usize, rowid % 64);
            if self.bits.len() <= w {
                self.bits.resize(w + 1, 0);
            }
            self.bits[w] |= 1 << b;
        } else {
            self.sparse.insert(rowid);
        }
    }

    fn contains(&self, rowid: i64) -> bool {
        if (0..DENSE_ROWIDS).contains(&rowid) {
            let (w, b) = ((rowid / 64) as usize, rowid % 64);
            self.bits.get(w).is_some_and(|x| x & (1 << b) != 0)
        } else {
            self.sparse.contains(&rowid)
        }
    }
}

#[cfg(test)]
mod tests;
