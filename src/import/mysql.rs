//! The MySQL/MariaDB side of a sync: connect as the seed's mysql_*.cf
//! did, check the schema, take one consistent snapshot and stream the
//! rows of each table, one row packet in memory at a time.
//!
//! - `host = "localhost"` is the Unix socket, anything else TCP with
//!   `prefer_socket(false)`: the crate would otherwise connect by TCP and
//!   then switch to the socket the server names (appliance.md §1), and
//!   MySQL's grants for user@localhost and user@127.0.0.1 differ.
//! - The snapshot: `START TRANSACTION READ ONLY, WITH CONSISTENT SNAPSHOT`
//!   sent as a plain statement. The crate's own `start_transaction` with a
//!   consistent snapshot unwraps the result of its START and panics when
//!   the link drops at that moment (mysql 28.0.4).
//! - Tables in an engine without snapshots (MyISAM, old installs) are
//!   read under `LOCK TABLES ... READ` instead, when the user may.
//! - Rows come in descending key order. PostfixAdmin's keys are
//!   case-insensitive (`latin1_general_ci`), so they cannot differ only by
//!   case; a schema with a binary collation can hold `Alice@Example.test`
//!   and `alice@example.test`, and in descending binary order the
//!   all-lower-case spelling (PostfixAdmin's own) comes first and wins:
//!   the mirror, like its lookups, holds one row per address.
//! - Timeouts: connecting, and every read and write, give up after
//!   `[sync.mysql] timeout`, so a server that accepts and never answers
//!   is a temporary failure, not a hang.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};

use mysql::prelude::Queryable;
use mysql::{Conn, OptsBuilder, SslOpts, Value};

use super::validate::{decode, Decoded};
use super::SyncError;
use crate::config::sync::TABLES;
use crate::config::Config;
use crate::directory::sqlite::import::{Table, TableWriter};
use crate::log;

/// A connection to the source, inside its snapshot once [`Source::begin`]
/// has run.
pub struct Source {
    conn: Conn,
    /// Per mirrored table: the SELECT that streams it.
    selects: HashMap<Table, String>,
    /// Tables read under LOCK TABLES instead of a snapshot.
    locked: bool,
}

/// Rows between two looks at the cancel flag.
const CANCEL_CHECK: u64 = 1024;

impl Source {
    /// Connects and checks that every table and column the sync reads
    /// exists (all missing ones are named at once).
    pub fn connect(cfg: &Config, tables: &[Table]) -> Result<Source, SyncError> {
        let m = cfg
            .sync
            .mysql
            .as_ref()
            .ok_or_else(|| SyncError::Config("no [sync.mysql] in the config".into()))?;
        let password = cfg.sync_password().map_err(SyncError::Config)?;
        let password = String::from_utf8(password.expose().to_vec())
            .map_err(|_| SyncError::Config("the MySQL password is not UTF-8".into()))?;
        let t = Some(m.timeout.0);
        let mut b = OptsBuilder::new()
            .user(Some(m.user.clone()))
            .pass(Some(password))
            .db_name(Some(m.database.clone()))
            .read_timeout(t)
            .write_timeout(t)
            .tcp_connect_timeout(t)
            .stmt_cache_size(Some(0));
        if m.host == "localhost" {
            b = b.socket(Some(m.socket.display().to_string()));
        } else {
            b = b
                .ip_or_hostname(Some(m.host.clone()))
                .tcp_port(m.port)
                .prefer_socket(false);
        }
        if m.tls {
            b = b.ssl_opts(SslOpts::default().with_root_cert_path(cfg.sync_ca_file()));
        }
        let conn = Conn::new(b).map_err(|e| classify(e, &m.user, &m.database))?;
        let mut s = Source {
            conn,
            selects: HashMap::new(),
            locked: false,
        };
        s.check_schema(cfg, tables)?;
        Ok(s)
    }

    /// Builds the SELECTs, naming every missing table or column.
    fn check_schema(&mut self, cfg: &Config, tables: &[Table]) -> Result<(), SyncError> {
        let rows: Vec<(String, String)> = self
            .conn
            .query(
                "SELECT TABLE_NAME, COLUMN_NAME FROM information_schema.COLUMNS \
                 WHERE TABLE_SCHEMA = DATABASE()",
            )
            .map_err(|e| classify(e, "", ""))?;
        let mut have: HashMap<String, HashSet<String>> = HashMap::new();
        for (t, c) in rows {
            have.entry(t.to_lowercase())
                .or_default()
                .insert(c.to_lowercase());
        }
        let mut missing = Vec::new();
        for &table in tables {
            let (_, columns) = TABLES
                .iter()
                .find(|(n, _)| *n == table.name())
                .expect("config lists every mirrored table");
            let name = cfg.sync.source_table(table.name());
            let Some(cols) = have.get(&name.to_lowercase()) else {
                missing.push(format!("table `{name}` does not exist"));
                continue;
            };
            let mut select = Vec::new();
            for (col, _) in *columns {
                let src = cfg.sync.source_column(table.name(), col);
                if src.is_empty() {
                    select.push("NULL".to_string());
                } else if cols.contains(&src.to_lowercase()) {
                    select.push(quote(src));
                } else {
                    missing.push(format!("table `{name}` has no column `{src}`"));
                }
            }
            let key = quote(cfg.sync.source_column(table.name(), columns[0].0));
            self.selects.insert(
                table,
                format!(
                    "SELECT {} FROM {} ORDER BY {key} DESC",
                    select.join(", "),
                    quote(name)
                ),
            );
        }
        if missing.is_empty() {
            Ok(())
        } else {
            Err(SyncError::Schema(format!(
                "the source's schema differs: {} (see [sync.mysql.tables] and [sync.mysql.columns])",
                missing.join("; ")
            )))
        }
    }

    /// Takes the snapshot every table is then read from.
    pub fn begin(&mut self, cfg: &Config, tables: &[Table]) -> Result<(), SyncError> {
        let names: Vec<String> = tables
            .iter()
            .map(|t| cfg.sync.source_table(t.name()).to_string())
            .collect();
        let engines: Vec<(String, Option<String>)> = self
            .conn
            .query(
                "SELECT TABLE_NAME, ENGINE FROM information_schema.TABLES \
                 WHERE TABLE_SCHEMA = DATABASE()",
            )
            .map_err(|e| classify(e, "", ""))?;
        let no_snapshot: Vec<&String> = names
            .iter()
            .filter(|n| {
                engines.iter().any(|(t, e)| {
                    t.eq_ignore_ascii_case(n)
                        && !e
                            .as_deref()
                            .is_some_and(|e| e.eq_ignore_ascii_case("InnoDB"))
                })
            })
            .collect();
        if no_snapshot.is_empty() {
            let q = |c: &mut Conn, s: &str| c.query_drop(s).map_err(|e| classify(e, "", ""));
            q(
                &mut self.conn,
                "SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ",
            )?;
            return q(
                &mut self.conn,
                "START TRANSACTION READ ONLY, WITH CONSISTENT SNAPSHOT",
            );
        }
        let list: Vec<String> = names.iter().map(|n| format!("{} READ", quote(n))).collect();
        match self.conn.query_drop(format!("LOCK TABLES {}", list.join(", "))) {
            Ok(()) => self.locked = true,
            Err(e @ mysql::Error::MySqlError(_)) => log::warning(&format!(
                "sync: {} cannot be read in one snapshot (not InnoDB) and LOCK TABLES was refused ({e}): \
                 rows changed during the sync may be seen half-way",
                no_snapshot.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
            )),
            Err(e) => return Err(classify(e, "", "")),
        }
        Ok(())
    }

    /// Streams one table into `w`. Undecodable rows are skipped there.
    pub fn stream(
        &mut self,
        table: Table,
        w: &mut TableWriter<'_, '_>,
        cancel: &AtomicBool,
    ) -> Result<(), SyncError> {
        let sql = self.selects.get(&table).cloned().unwrap_or_default();
        let mut result = self.conn.query_iter(sql).map_err(|e| classify(e, "", ""))?;
        let mut n = 0u64;
        for row in result.by_ref() {
            let row = row.map_err(|e| classify(e, "", ""))?;
            n += 1;
            if n.is_multiple_of(CANCEL_CHECK) && cancel.load(Ordering::Relaxed) {
                return Err(SyncError::Cancelled);
            }
            let values: Vec<Option<Vec<u8>>> = row
                .unwrap()
                .into_iter()
                .map(|v| match v {
                    Value::NULL => None,
                    Value::Bytes(b) => Some(b),
                    other => Some(other.as_sql(true).into_bytes()),
                })
                .collect();
            match decode(table, values) {
                Decoded::Row(r, notes) => {
                    for note in notes {
                        log::warning(&format!("sync: {} {}: {note}", table.name(), r.raw_key()));
                    }
                    w.put(&r);
                }
                Decoded::Bad { key, why } => w.skip(&key, &why),
            }
        }
        Ok(())
    }

    /// Ends the snapshot (or releases the locks).
    pub fn finish(mut self) {
        let _ = self.conn.query_drop(if self.locked {
            "UNLOCK TABLES"
        } else {
            "COMMIT"
        });
    }
}

/// A MySQL identifier in backquotes (config checks refuse backquotes).
fn quote(name: &str) -> String {
    format!("`{name}`")
}

const TIMED_OUT: &str = "MySQL did not answer within [sync.mysql] timeout";

/// The I/O error under a codec error (the crate does not export the type).
fn codec_io<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a std::io::Error> {
    e.source()?.downcast_ref()
}

/// The rustls error under an I/O error (a certificate that does not
/// verify surfaces as one).
fn tls_error(e: &std::io::Error) -> Option<&rustls::Error> {
    e.get_ref()?.downcast_ref()
}

fn tls_failure(e: &std::io::Error) -> SyncError {
    SyncError::Unavailable(format!(
        "MySQL TLS: {} (is [sync.mysql] ca_file the CA of the server's certificate, and does it name the host?)",
        tls_error(e).map(|t| t.to_string()).unwrap_or_default()
    ))
}

fn timed_out(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

/// What a failure of the source means for the caller; never the password.
fn classify(e: mysql::Error, user: &str, database: &str) -> SyncError {
    use mysql::Error as E;
    match e {
        E::MySqlError(m) => match m.code {
            // ER_ACCESS_DENIED_ERROR, ER_DBACCESS_DENIED_ERROR
            1045 | 1044 => SyncError::Config(format!(
                "the MySQL server refused {user:?} for database {database:?}: check user and \
                 password_file ({})",
                m.message
            )),
            // ER_BAD_DB_ERROR
            1049 => SyncError::Config(format!("the MySQL server has no database {database:?}")),
            // ER_NO_SUCH_TABLE, ER_BAD_FIELD_ERROR
            1146 | 1054 => SyncError::Schema(format!("the source's schema differs: {}", m.message)),
            _ => SyncError::Unavailable(format!("MySQL: {m}")),
        },
        E::IoError(io) if timed_out(&io) => SyncError::Unavailable(TIMED_OUT.into()),
        E::IoError(io) if tls_error(&io).is_some() => tls_failure(&io),
        E::CodecError(c) if codec_io(&c).and_then(tls_error).is_some() => {
            tls_failure(codec_io(&c).expect("checked"))
        }
        E::CodecError(c) if codec_io(&c).is_some_and(timed_out) => {
            SyncError::Unavailable(TIMED_OUT.into())
        }
        E::IoError(io) => SyncError::Unavailable(format!("MySQL unreachable: {io}")),
        E::DriverError(d) => SyncError::Unavailable(format!("MySQL unreachable: {d}")),
        E::CodecError(c) => SyncError::Unavailable(format!("MySQL connection broken: {c}")),
        E::TlsError(t) => SyncError::Unavailable(format!("MySQL TLS: {t}")),
        other => SyncError::Unavailable(format!("MySQL: {other}")),
    }
}
