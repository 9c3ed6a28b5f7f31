//! One table of an import: each source row compared with the mirror's
//! row of its key and written only if it differs; duplicates, refused rows
//! and overwritten local edits reported. See mod.rs for the whole.

use std::collections::{HashMap, HashSet};

use rusqlite::types::Value;
use rusqlite::{params_from_iter, Connection, OptionalExtension, Statement};

use super::{rows, Counts, Event, ImportError, Row, Table};

/// Writes the rows of one table.
pub struct TableWriter<'i, 's> {
    pub(super) table: Table,
    pub(super) conn: &'i Connection,
    pub(super) select: Statement<'i>,
    pub(super) insert: Statement<'i>,
    pub(super) update: Statement<'i>,
    pub(super) domain_exists: Statement<'i>,
    pub(super) seen: RowSet,
    pub(super) counts: Counts,
    pub(super) dry_run: bool,
    pub(super) first: bool,
    pub(super) edits: HashMap<String, String>,
    pub(super) domains: &'i mut Option<HashSet<String>>,
    pub(super) sink: &'i mut Box<dyn FnMut(&Event) + 's>,
    /// A database error met inside `put`: the table fails with it.
    pub(super) failed: Option<ImportError>,
    /// Dry run: hashes of the keys it would add (nothing is inserted, so
    /// the rowid bitmap cannot tell a duplicate new key).
    pub(super) added: HashSet<u64>,
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
pub(super) struct RowSet {
    bits: Vec<u64>,
    sparse: HashSet<i64>,
}

/// Rowids below this go into the bitmap (16 MiB at most).
const DENSE_ROWIDS: i64 = 1 << 27;

impl RowSet {
    pub(super) fn insert(&mut self, rowid: i64) {
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

    pub(super) fn contains(&self, rowid: i64) -> bool {
        if (0..DENSE_ROWIDS).contains(&rowid) {
            let (w, b) = ((rowid / 64) as usize, rowid % 64);
            self.bits.get(w).is_some_and(|x| x & (1 << b) != 0)
        } else {
            self.sparse.contains(&rowid)
        }
    }
}
