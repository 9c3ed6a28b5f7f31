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
mod writer;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OpenFlags};

pub use rows::{Alias, AliasDomain, Domain, Mailbox, Row, Table, MAX_FIELD, MAX_GOTO, NO_TIME};
pub use state::SyncStatus;
use writer::RowSet;
pub use writer::TableWriter;

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
    /// Rows the mirror had before this sync.
    pub before: u64,
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
        let mut all = 0u64;
        {
            let mut st = self.conn.prepare(&format!(
                "SELECT rowid, {} FROM {}",
                table.key(),
                table.name()
            ))?;
            let mut rows = st.query([])?;
            while let Some(r) = rows.next()? {
                let rowid: i64 = r.get(0)?;
                all += 1;
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
        counts.before = all.saturating_sub(counts.added);
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

#[cfg(test)]
mod tests;
