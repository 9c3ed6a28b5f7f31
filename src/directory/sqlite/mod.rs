//! The only SQL in postern: the SQLite mirror of PostfixAdmin's tables.
//! Lookups are here; edits (`postern user|domain|alias`) in admin.rs.
//!
//! Schema: PostfixAdmin's `domain`, `mailbox`, `alias`, `alias_domain` and
//! `quota2`, with its column names, defaults and meanings, so that the
//! INSERT statements of a PostfixAdmin MySQL dump run unchanged. Key
//! columns are `COLLATE NOCASE`, as PostfixAdmin's `latin1_general_ci`
//! makes them case-insensitive. The "active" rules of the seed's
//! mysql_*.cf queries are applied here and nowhere else.
//!
//! Answers are cached while the database file stays the same (see
//! [`Db::cached`]): a change by `postern sync` (import/), `sqlite3` or a
//! file swap is seen by the next lookup. A synced mirror is in WAL mode:
//! replace it with `sqlite3 FILE ".restore NEW"`, never by a rename.
//!
//! Every lookup answers found / not found / temporary failure: a locked,
//! missing or damaged database is a [`TempFail`], which clients see as
//! 451 4.3.0 and never as "user unknown".

pub mod admin;
pub mod import;
mod validate;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension};

use super::{Answer, DomainRow, LoginRow, Lookup, MailboxRow, Store, TempFail};

pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS domain (
  domain TEXT NOT NULL COLLATE NOCASE PRIMARY KEY,
  description TEXT NOT NULL DEFAULT '',
  aliases INTEGER NOT NULL DEFAULT 0,
  mailboxes INTEGER NOT NULL DEFAULT 0,
  maxquota INTEGER NOT NULL DEFAULT 0,
  quota INTEGER NOT NULL DEFAULT 0,
  transport TEXT NOT NULL DEFAULT '',
  backupmx INTEGER NOT NULL DEFAULT 0,
  created TEXT NOT NULL DEFAULT '2000-01-01 00:00:00',
  modified TEXT NOT NULL DEFAULT '2000-01-01 00:00:00',
  active INTEGER NOT NULL DEFAULT 1,
  password_expiry INTEGER DEFAULT 0
);
CREATE TABLE IF NOT EXISTS mailbox (
  username TEXT NOT NULL COLLATE NOCASE PRIMARY KEY,
  password TEXT NOT NULL,
  name TEXT NOT NULL DEFAULT '',
  maildir TEXT NOT NULL,
  quota INTEGER NOT NULL DEFAULT 0,
  local_part TEXT NOT NULL COLLATE NOCASE,
  domain TEXT NOT NULL COLLATE NOCASE,
  created TEXT NOT NULL DEFAULT '2000-01-01 00:00:00',
  modified TEXT NOT NULL DEFAULT '2000-01-01 00:00:00',
  active INTEGER NOT NULL DEFAULT 1,
  phone TEXT NOT NULL DEFAULT '',
  email_other TEXT NOT NULL DEFAULT '',
  token TEXT NOT NULL DEFAULT '',
  token_validity TEXT NOT NULL DEFAULT '2000-01-01 00:00:00',
  password_expiry TEXT NOT NULL DEFAULT '2000-01-01 00:00:00',
  totp_secret TEXT DEFAULT NULL,
  smtp_active INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX IF NOT EXISTS mailbox_domain ON mailbox (domain);
CREATE TABLE IF NOT EXISTS alias (
  address TEXT NOT NULL COLLATE NOCASE PRIMARY KEY,
  goto TEXT NOT NULL,
  domain TEXT NOT NULL COLLATE NOCASE,
  description TEXT NOT NULL DEFAULT '',
  created TEXT NOT NULL DEFAULT '2000-01-01 00:00:00',
  modified TEXT NOT NULL DEFAULT '2000-01-01 00:00:00',
  active INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX IF NOT EXISTS alias_domain_idx ON alias (domain);
CREATE TABLE IF NOT EXISTS quota2 (
  username TEXT NOT NULL COLLATE NOCASE PRIMARY KEY,
  bytes INTEGER NOT NULL DEFAULT 0,
  messages INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS alias_domain (
  alias_domain TEXT NOT NULL COLLATE NOCASE PRIMARY KEY,
  target_domain TEXT NOT NULL COLLATE NOCASE,
  description TEXT NOT NULL DEFAULT '',
  created TEXT NOT NULL DEFAULT '2000-01-01 00:00:00',
  modified TEXT NOT NULL DEFAULT '2000-01-01 00:00:00',
  active INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX IF NOT EXISTS alias_domain_target ON alias_domain (target_domain);
";

/// Why the database could not be opened.
#[derive(Clone, Debug)]
pub struct OpenProblem {
    /// Another process holds it locked: trying again later may work.
    pub busy: bool,
    pub text: String,
}

impl std::fmt::Display for OpenProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// A file's (device, inode).
type FileKey = (u64, u64);

/// A small pool of connections to one database file.
pub struct Db {
    path: PathBuf,
    busy_timeout: Duration,
    /// Open connections, each with the file (device, inode) it opened:
    /// one opened on a file since replaced by a rename is not reused.
    pool: Mutex<Vec<(Connection, Option<FileKey>)>>,
    cache: Mutex<Cache>,
}

impl Db {
    /// Opens the database, creating the file and the schema if needed.
    /// A damaged file is not an error here: lookups will fail temporarily
    /// and say why, so the server still starts and keeps mail queued.
    pub fn open(path: &Path, busy_timeout: Duration) -> (Db, Option<OpenProblem>) {
        let db = Db {
            path: path.to_path_buf(),
            busy_timeout,
            pool: Mutex::new(Vec::new()),
            cache: Mutex::default(),
        };
        // It holds password hashes: a new file is readable by its owner only
        // (SQLite gives its journal the same mode).
        if !path.exists() {
            use std::os::unix::fs::OpenOptionsExt;
            let _ = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path);
        }
        let problem = db.init().err().map(|e| OpenProblem {
            busy: matches!(
                e.sqlite_error_code(),
                Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
            ),
            text: format!("{}: {e}", path.display()),
        });
        (db, problem)
    }

    fn init(&self) -> rusqlite::Result<()> {
        let c = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        c.busy_timeout(self.busy_timeout)?;
        c.execute_batch(SCHEMA)?;
        let inode = file_id(&self.path).map(|f| (f.dev, f.ino));
        self.pool
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((c, inode));
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn connect(&self) -> rusqlite::Result<Connection> {
        let c = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        c.busy_timeout(self.busy_timeout)?;
        // Keep the page cache small: this runs on routers.
        c.execute_batch("PRAGMA cache_size = -256;")?;
        Ok(c)
    }

    /// Runs `f` on a pooled connection to the file now at the path. A
    /// database replaced by a rename (a sync swapping in a new mirror, an
    /// admin copying a file in) has a new inode: connections opened on the
    /// old one are dropped, so the next lookup reads the new file.
    fn with<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, TempFail> {
        let current = file_id(&self.path).map(|f| (f.dev, f.ino));
        let pooled = {
            let mut pool = self.pool.lock().unwrap_or_else(|e| e.into_inner());
            pool.retain(|(_, inode)| *inode == current);
            pool.pop()
        };
        let (conn, inode) = match pooled {
            Some(c) => c,
            None => (
                self.connect()
                    .map_err(|e| TempFail(format!("{}: {e}", self.path.display())))?,
                current,
            ),
        };
        match f(&conn) {
            Ok(v) => {
                let mut pool = self.pool.lock().unwrap_or_else(|e| e.into_inner());
                if pool.len() < 8 {
                    pool.push((conn, inode));
                }
                Ok(v)
            }
            // A failed connection is dropped: the next lookup opens afresh,
            // which is what recovers from a replaced or repaired file.
            Err(e) => Err(TempFail(format!("{}: {e}", self.path.display()))),
        }
    }

    /// Answers a lookup from the cache while the database file is unchanged
    /// since the answer was cached (same inode, size, mtime and ctime), and
    /// from SQL otherwise. One stat instead of a locked read transaction.
    fn cached(
        &self,
        kind: Kind,
        key: &str,
        query: impl FnOnce(&Connection) -> rusqlite::Result<Answer>,
    ) -> Result<Answer, TempFail> {
        let id = file_id(&self.path);
        let key = (kind, key.to_ascii_lowercase());
        {
            let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            if cache.file != id || id.is_none() {
                cache.map.clear();
                cache.file = id;
            } else if let Some(v) = cache.map.get(&key) {
                return Ok(v.clone());
            }
        }
        let v = self.with(query)?;
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.file == id && id.is_some() {
            if cache.map.len() >= CACHE_ENTRIES {
                cache.map.clear();
            }
            cache.map.insert(key, v.clone());
        }
        Ok(v)
    }
}

/// The seed's mysql_*.cf queries, over the mirror.
impl Store for Db {
    /// An active domain (`domain.active = 1`).
    fn domain(&self, name: &str) -> Result<Option<DomainRow>, TempFail> {
        let v = self.cached(Kind::Domain, name, |c| {
            c.prepare_cached(
                "SELECT backupmx, transport, quota, maxquota FROM domain WHERE domain = ?1 AND active = 1",
            )?
                .query_row([name], |r| {
                    Ok(DomainRow {
                        backupmx: r.get::<_, i64>(0)? != 0,
                        transport: r.get::<_, Option<String>>(1)?.unwrap_or_default(),
                        quota_mb: r.get::<_, Option<i64>>(2)?.unwrap_or(0),
                        maxquota_mb: r.get::<_, Option<i64>>(3)?.unwrap_or(0),
                    })
                })
                .optional()
                .map(Answer::Domain)
        })?;
        Ok(match v {
            Answer::Domain(d) => d,
            _ => unreachable!("cache kinds are keyed apart"),
        })
    }

    /// The target of an active alias domain whose target domain is active.
    fn alias_domain_target(&self, name: &str) -> Result<Option<String>, TempFail> {
        let v = self.cached(Kind::AliasDomain, name, |c| {
            c.prepare_cached(
                "SELECT ad.target_domain FROM alias_domain ad JOIN domain d ON d.domain = ad.target_domain
                 WHERE ad.alias_domain = ?1 AND ad.active = 1 AND d.active = 1",
            )?
            .query_row([name], |r| r.get(0))
            .optional()
            .map(Answer::Text)
        })?;
        Ok(text(v))
    }

    /// `alias.goto` of an active alias (the seed's virtual_alias_maps).
    fn alias_goto(&self, address: &str) -> Result<Option<String>, TempFail> {
        let v = self.cached(Kind::Alias, address, |c| {
            c.prepare_cached("SELECT goto FROM alias WHERE address = ?1 AND active = 1")?
                .query_row([address], |r| r.get(0))
                .optional()
                .map(Answer::Text)
        })?;
        Ok(text(v))
    }

    /// An active mailbox in an active domain (the seed's virtual_mailbox_maps).
    fn mailbox(&self, username: &str) -> Result<Option<MailboxRow>, TempFail> {
        let v = self.cached(Kind::Mailbox, username, |c| {
            c.prepare_cached(
                "SELECT m.username, m.maildir, m.quota FROM mailbox m JOIN domain d ON d.domain = m.domain
                 WHERE m.username = ?1 AND m.active = 1 AND d.active = 1",
            )?
            .query_row([username], |r| {
                Ok(MailboxRow { username: r.get(0)?, maildir: r.get(1)?, quota: r.get(2)? })
            })
            .optional()
            .map(Answer::Mailbox)
        })?;
        Ok(match v {
            Answer::Mailbox(m) => m,
            _ => unreachable!("cache kinds are keyed apart"),
        })
    }

    /// A cached answer, while the database file is unchanged: one stat
    /// per question round (`checked`).
    fn peek(&self, q: Lookup<'_>, checked: &std::sync::atomic::AtomicBool) -> Option<Answer> {
        use std::sync::atomic::Ordering;
        let (kind, key) = match q {
            Lookup::Domain(k) => (Kind::Domain, k),
            Lookup::AliasDomain(k) => (Kind::AliasDomain, k),
            Lookup::Alias(k) => (Kind::Alias, k),
            Lookup::Mailbox(k) => (Kind::Mailbox, k),
        };
        let id = if checked.load(Ordering::Relaxed) {
            None
        } else {
            Some(file_id(&self.path)?)
        };
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(id) = id {
            if cache.file != Some(id) {
                return None;
            }
            checked.store(true, Ordering::Relaxed);
        }
        cache.map.get(&(kind, key.to_ascii_lowercase())).cloned()
    }

    /// The login row of an active mailbox in an active domain: the name as
    /// stored, its password hash and `smtp_active` (PostfixAdmin's switch
    /// for sending). Not cached: a changed password counts at once.
    fn login(&self, username: &str) -> Result<Option<LoginRow>, TempFail> {
        self.with(|c| {
            c.prepare_cached(
                "SELECT m.username, m.password, m.smtp_active FROM mailbox m JOIN domain d ON d.domain = m.domain
                 WHERE m.username = ?1 AND m.active = 1 AND d.active = 1",
            )?
            .query_row([username], |r| {
                Ok(LoginRow { username: r.get(0)?, password: r.get(1)?, smtp_active: r.get::<_, i64>(2)? != 0 })
            })
            .optional()
        })
    }
}

/// Entries kept before the cache starts over.
const CACHE_ENTRIES: usize = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Kind {
    Domain,
    AliasDomain,
    Alias,
    Mailbox,
}

fn text(v: Answer) -> Option<String> {
    match v {
        Answer::Text(t) => t,
        _ => unreachable!("cache kinds are keyed apart"),
    }
}

/// What identifies one version of the database file. In WAL mode (a
/// synced mirror, see import/) commits land in the `-wal` file and the
/// database file changes only at checkpoints, so the WAL's size and mtime
/// count too.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FileId {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
    wal: Option<(u64, (i64, i64))>,
}

fn file_id(path: &Path) -> Option<FileId> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    let wal = std::fs::metadata(&wal)
        .ok()
        .map(|w| (w.size(), (w.mtime(), w.mtime_nsec())));
    Some(FileId {
        dev: m.dev(),
        ino: m.ino(),
        size: m.size(),
        mtime: (m.mtime(), m.mtime_nsec()),
        ctime: (m.ctime(), m.ctime_nsec()),
        wal,
    })
}

#[derive(Default)]
struct Cache {
    file: Option<FileId>,
    map: HashMap<(Kind, String), Answer>,
}

#[cfg(test)]
impl Db {
    /// Runs SQL statements (tests load the PostfixAdmin fixture with it).
    pub fn execute_script(&self, sql: &str) -> Result<(), TempFail> {
        self.with(|c| c.execute_batch(sql))
    }
}
