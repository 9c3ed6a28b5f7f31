//! What the mirror records about its syncs, in two tables of its own next
//! to PostfixAdmin's:
//!
//! ```text
//! sync_state       one row (id = 1): source, last_success and last_attempt
//!                  (Unix seconds), last_error, summary of the last success
//! sync_local_edit  (tbl, key, op, at): rows of mirrored tables changed
//!                  outside a sync since the last one, filled by triggers
//!                  sync_edit_<table>_{ins,upd,del}
//! ```

use std::collections::HashMap;

use rusqlite::{params, Connection, OptionalExtension};

use super::Table;

const TABLES: &str = "
CREATE TABLE IF NOT EXISTS sync_state (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  source TEXT NOT NULL DEFAULT '',
  last_success INTEGER,
  last_attempt INTEGER,
  last_error TEXT NOT NULL DEFAULT '',
  summary TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS sync_local_edit (
  tbl TEXT NOT NULL,
  key TEXT NOT NULL COLLATE NOCASE,
  op TEXT NOT NULL,
  at TEXT NOT NULL,
  PRIMARY KEY (tbl, key)
) WITHOUT ROWID;
";

/// The mirror's sync record.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncStatus {
    pub source: String,
    /// Unix seconds of the last sync that committed.
    pub last_success: Option<i64>,
    pub last_attempt: Option<i64>,
    /// Why the last attempt failed ("" when it did not).
    pub last_error: String,
    /// The summary line of the last success.
    pub summary: String,
}

fn has_table(c: &Connection, name: &str) -> rusqlite::Result<bool> {
    c.prepare_cached("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1")?
        .exists([name])
}

/// Inside the import's transaction: the tables exist, and no trigger
/// records the import's own writes.
pub(super) fn prepare(c: &Connection) -> rusqlite::Result<()> {
    c.execute_batch(TABLES)?;
    for t in Table::ALL {
        for op in ["ins", "upd", "del"] {
            c.execute_batch(&format!(
                "DROP TRIGGER IF EXISTS sync_edit_{}_{op};",
                t.name()
            ))?;
        }
    }
    Ok(())
}

pub(super) fn last_success(c: &Connection) -> rusqlite::Result<Option<i64>> {
    if !has_table(c, "sync_state")? {
        return Ok(None);
    }
    Ok(c.query_row(
        "SELECT last_success FROM sync_state WHERE id = 1",
        [],
        |r| r.get::<_, Option<i64>>(0),
    )
    .optional()?
    .flatten())
}

/// Local edits since the last sync: table → lower-cased key → operation.
pub(super) fn local_edits(
    c: &Connection,
) -> rusqlite::Result<HashMap<Table, HashMap<String, String>>> {
    let mut out: HashMap<Table, HashMap<String, String>> = HashMap::new();
    if !has_table(c, "sync_local_edit")? {
        return Ok(out);
    }
    let mut st = c.prepare("SELECT tbl, key, op FROM sync_local_edit")?;
    let mut rows = st.query([])?;
    while let Some(r) = rows.next()? {
        let (tbl, key, op): (String, String, String) = (r.get(0)?, r.get(1)?, r.get(2)?);
        if let Some(t) = Table::from_name(&tbl) {
            out.entry(t)
                .or_default()
                .insert(key.to_ascii_lowercase(), op);
        }
    }
    Ok(out)
}

/// Before the commit: forget the local edits of the synced tables (they
/// were reported), record local edits from now on, record the success.
pub(super) fn finish(
    c: &Connection,
    synced: &[Table],
    source: &str,
    now: i64,
    summary: &str,
) -> rusqlite::Result<()> {
    for t in synced {
        let (name, key) = (t.name(), t.key());
        c.execute("DELETE FROM sync_local_edit WHERE tbl = ?1", [name])?;
        let log = |op: &str, row: &str| {
            format!(
                "INSERT OR REPLACE INTO sync_local_edit (tbl, key, op, at) \
                 VALUES ('{name}', {row}.{key}, '{op}', datetime('now'));"
            )
        };
        c.execute_batch(&format!(
            "CREATE TRIGGER sync_edit_{name}_ins AFTER INSERT ON {name} BEGIN {} END;
             CREATE TRIGGER sync_edit_{name}_upd AFTER UPDATE ON {name} BEGIN {} {} END;
             CREATE TRIGGER sync_edit_{name}_del AFTER DELETE ON {name} BEGIN {} END;",
            log("added", "NEW"),
            log("removed", "OLD"),
            log("changed", "NEW"),
            log("removed", "OLD"),
        ))?;
    }
    c.execute(
        "INSERT INTO sync_state (id, source, last_success, last_attempt, last_error, summary)
         VALUES (1, ?1, ?2, ?2, '', ?3)
         ON CONFLICT (id) DO UPDATE SET source = ?1, last_success = ?2, last_attempt = ?2,
           last_error = '', summary = ?3",
        params![source, now, summary],
    )?;
    Ok(())
}

pub(super) fn status(c: &Connection) -> rusqlite::Result<Option<SyncStatus>> {
    if !has_table(c, "sync_state")? {
        return Ok(None);
    }
    c.query_row(
        "SELECT source, last_success, last_attempt, last_error, summary FROM sync_state WHERE id = 1",
        [],
        |r| {
            Ok(SyncStatus {
                source: r.get(0)?,
                last_success: r.get(1)?,
                last_attempt: r.get(2)?,
                last_error: r.get(3)?,
                summary: r.get(4)?,
            })
        },
    )
    .optional()
}

/// A failed attempt: its time and reason; the last success stays.
pub(super) fn record_failure(
    c: &Connection,
    source: &str,
    why: &str,
    now: i64,
) -> rusqlite::Result<()> {
    c.execute_batch(TABLES)?;
    c.execute(
        "INSERT INTO sync_state (id, source, last_attempt, last_error) VALUES (1, ?1, ?2, ?3)
         ON CONFLICT (id) DO UPDATE SET last_attempt = ?2, last_error = ?3",
        params![source, now, why],
    )?;
    Ok(())
}
