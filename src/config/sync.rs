//! `[sync]` and `[sync.mysql]`: where `postern sync` (and the server's
//! timer) reads the PostfixAdmin database it mirrors into the SQLite
//! directory, and their checks. The key names of `[sync.mysql]` — `host`,
//! `port`, `socket`, `user`, `password_file`, `database`, `interval` — are
//! fixed: the docs, the converter of an existing Postfix set-up and outside
//! checks rely on them.
//!
//! `host` follows the seed's mysql_*.cf rule (and libmysql's): `localhost`
//! is the Unix socket (`socket`), anything else is TCP to `host:port`.
//!
//! The password lives in `password_file` (mode 0600 or stricter, else the
//! config is refused), is read in server scope only (serve, sync,
//! check-config) and is kept in a [`Secret`]; it never reaches argv, a log
//! line or an error message. An inline `password` is refused unless
//! `allow_inline_password = true` says the admin means it.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::de::{DeTable, DeValue};

use super::schema::{self, Ctx, FromToml};
use super::values::Secs;
use super::Config;
use crate::section;
use crate::smtp::sasl::Secret;

section! {
    /// Mirroring a PostfixAdmin MySQL/MariaDB database into the SQLite
    /// directory (`postern sync`; the server syncs every
    /// [sync.mysql] interval and on `postern reload`). Only with a
    /// [sync.mysql] table. Rows of the mirrored tables changed locally
    /// (`postern user|domain|alias`, sqlite3) are reported as conflicts and
    /// overwritten by the source at the next sync.
    pub struct SyncCfg ("sync") {
        /// Tables this box keeps itself: a sync neither reads nor touches
        /// them, so local edits stay. Any of "domain", "mailbox", "alias",
        /// "alias_domain".
        local_only: Vec<String> = Vec::new(), example "[]";
        /// The server logs a warning while the last successful sync is older
        /// than this (the source has been unreachable or refused the data).
        /// 0: never.
        warn_after: Secs = Secs(Duration::from_secs(86_400)), example "\"1d\"";
        /// A sync that would remove more than this percentage of the
        /// mirror's domains or mailboxes (10 rows at least) is refused and
        /// changes nothing, until `postern sync --force`: a source restored
        /// empty, or the wrong database, must not bounce everyone's mail.
        /// 100: no limit.
        removal_limit: u32 = 50, example "50";
    }
}

section! {
    /// The PostfixAdmin database (the seed's mysql_virtual_*_maps.cf).
    pub struct SyncMysql ("sync.mysql") {
        /// "localhost": the Unix socket at `socket` (as Postfix's
        /// `hosts = localhost`); anything else, "127.0.0.1" included: TCP to
        /// host:port.
        host: String = "localhost".into(), example "\"localhost\"";
        /// TCP port, when host is not "localhost".
        port: u16 = 3306, example "3306";
        /// The server's Unix socket, when host is "localhost".
        socket: PathBuf = PathBuf::from("/run/mysqld/mysqld.sock"), example "\"/run/mysqld/mysqld.sock\"";
        /// The MySQL user (read-only SELECT on the tables is enough).
        user: String = String::new(), example "\"postfix-mysql-user\"", default "none: required";
        /// A file holding the password (one line). Must be mode 0600 or
        /// stricter, or postern refuses it.
        password_file: String = String::new(), example "\"/etc/postern/mysql-password\"", default "none: required";
        /// The password itself, in this file: refused unless
        /// allow_inline_password = true (use password_file).
        password: String = String::new(), example "\"\"";
        /// Accept `password` in the config file.
        allow_inline_password: bool = false, example "false";
        /// The database; hyphens are fine ("postfix-user-db").
        database: String = String::new(), example "\"postfix-user-db\"", default "none: required";
        /// How often the server syncs ("5m"); 0: only on `postern sync` and
        /// `postern reload`.
        interval: Secs = Secs(Duration::from_secs(300)), example "\"5m\"";
        /// Time to connect, and to wait for any answer of the server.
        timeout: Secs = Secs(Duration::from_secs(30)), example "\"30s\"";
        /// TLS to the server (TCP only): required, and its certificate must
        /// chain to ca_file (or a public CA) and name `host`.
        tls: bool = false, example "false";
        /// CA certificates (PEM) the server's certificate is checked
        /// against, with tls = true.
        ca_file: String = String::new(), example "\"\"";
    }
}

section! {
    /// Table names in the source, for installs whose schema differs from
    /// PostfixAdmin's.
    pub struct SyncTables ("sync.mysql.tables") {
        /// Domains.
        domain: String = "domain".into(), example "\"domain\"";
        /// Mailboxes.
        mailbox: String = "mailbox".into(), example "\"mailbox\"";
        /// Aliases (and catch-alls).
        alias: String = "alias".into(), example "\"alias\"";
        /// Alias domains.
        alias_domain: String = "alias_domain".into(), example "\"alias_domain\"";
    }
}

section! {
    /// Column names in the source that differ from PostfixAdmin's, per
    /// table: `mailbox = { username = "email", smtp_active = "" }`. "" means
    /// the source has no such column: its default is used (not allowed for
    /// key columns, goto, password, maildir and mailbox.domain).
    pub struct SyncColumns ("sync.mysql.columns") {
        /// Columns of the domain table.
        domain: ColumnMap = ColumnMap::default(), example "{}";
        /// Columns of the mailbox table.
        mailbox: ColumnMap = ColumnMap::default(), example "{}";
        /// Columns of the alias table.
        alias: ColumnMap = ColumnMap::default(), example "{}";
        /// Columns of the alias_domain table.
        alias_domain: ColumnMap = ColumnMap::default(), example "{}";
    }
}

/// The mirrored tables, and the columns a sync reads from each (mirror
/// names; `true` = the source must have it).
pub const TABLES: &[(&str, &[(&str, bool)])] = &[
    (
        "domain",
        &[
            ("domain", true),
            ("description", false),
            ("transport", false),
            ("backupmx", false),
            ("quota", false),
            ("maxquota", false),
            ("active", false),
            ("created", false),
            ("modified", false),
        ],
    ),
    (
        "alias_domain",
        &[
            ("alias_domain", true),
            ("target_domain", true),
            ("active", false),
            ("created", false),
            ("modified", false),
        ],
    ),
    (
        "mailbox",
        &[
            ("username", true),
            ("password", true),
            ("name", false),
            ("maildir", true),
            ("quota", false),
            ("local_part", false),
            ("domain", true),
            ("active", false),
            ("smtp_active", false),
            ("created", false),
            ("modified", false),
        ],
    ),
    (
        "alias",
        &[
            ("address", true),
            ("goto", true),
            ("domain", false),
            ("active", false),
            ("created", false),
            ("modified", false),
        ],
    ),
];

/// Source column names that differ from the mirror's, for one table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ColumnMap(pub Vec<(String, String)>);

impl FromToml for ColumnMap {
    fn allowed() -> Cow<'static, str> {
        "an inline table of column = \"source column\" (or \"\"), e.g. { username = \"email\" }"
            .into()
    }
    fn from_toml(v: &DeValue<'_>) -> Result<Self, String> {
        let DeValue::Table(t) = v else {
            return Err(format!("expected an inline table, found {}", v.type_str()));
        };
        let mut out = Vec::new();
        for (k, v) in t.iter() {
            let Some(s) = v.get_ref().as_str() else {
                return Err(format!("{}: expected a string", k.get_ref()));
            };
            out.push((k.get_ref().to_string(), s.to_string()));
        }
        Ok(ColumnMap(out))
    }
}

/// Everything under `[sync]`.
#[derive(Clone, Debug, Default)]
pub struct SyncSettings {
    pub main: SyncCfg,
    /// `None`: no `[sync.mysql]`, nothing to sync from.
    pub mysql: Option<SyncMysql>,
    pub tables: SyncTables,
    pub columns: SyncColumns,
}

impl SyncSettings {
    /// The source's name of `table` (a mirror name from [`TABLES`]).
    pub fn source_table(&self, table: &str) -> &str {
        let t = &self.tables;
        match table {
            "domain" => &t.domain,
            "mailbox" => &t.mailbox,
            "alias" => &t.alias,
            _ => &t.alias_domain,
        }
    }

    /// The source's name of a column ("" = the source has none).
    pub fn source_column<'a>(&'a self, table: &str, column: &'a str) -> &'a str {
        self.column_map(table)
            .0
            .iter()
            .find(|(k, _)| k == column)
            .map(|(_, v)| v.as_str())
            .unwrap_or(column)
    }

    fn column_map(&self, table: &str) -> &ColumnMap {
        let c = &self.columns;
        match table {
            "domain" => &c.domain,
            "mailbox" => &c.mailbox,
            "alias" => &c.alias,
            _ => &c.alias_domain,
        }
    }

    pub fn is_local_only(&self, table: &str) -> bool {
        self.main.local_only.iter().any(|t| t == table)
    }
}

/// Reads `[sync]` and its subtables.
pub(super) fn read(ctx: &mut Ctx<'_>, root: &DeTable<'_>) -> SyncSettings {
    let mut out = SyncSettings::default();
    let Some(v) = root.get("sync") else {
        return out;
    };
    let Some(t) = schema::as_table(ctx, "sync", v) else {
        return out;
    };
    out.main = SyncCfg::read(ctx, "sync", t, &["mysql"]);
    let Some(v) = t.get("mysql") else {
        return out;
    };
    let Some(m) = schema::as_table(ctx, "sync.mysql", v) else {
        return out;
    };
    out.mysql = Some(SyncMysql::read(
        ctx,
        "sync.mysql",
        m,
        &["tables", "columns"],
    ));
    if let Some(v) = m.get("tables") {
        if let Some(t) = schema::as_table(ctx, "sync.mysql.tables", v) {
            out.tables = SyncTables::read(ctx, "sync.mysql.tables", t, &[]);
        }
    }
    if let Some(v) = m.get("columns") {
        if let Some(t) = schema::as_table(ctx, "sync.mysql.columns", v) {
            out.columns = SyncColumns::read(ctx, "sync.mysql.columns", t, &[]);
        }
    }
    out
}

/// A MySQL identifier as a config value may give it: what backquotes can
/// hold, within MySQL's 64 characters.
fn identifier_ok(s: &str) -> bool {
    !s.is_empty() && s.chars().count() <= 64 && !s.contains(['`', '\0']) && s.trim() == s
}

impl Config {
    /// `[sync]`: the values, and in server scope the password and CA files.
    pub(super) fn check_sync(&mut self, ctx: &mut Ctx<'_>, root: &DeTable<'_>, files: bool) {
        let at = |path: &[&str]| offset(root, path);
        for t in &self.sync.main.local_only {
            if !TABLES.iter().any(|(n, _)| n == t) {
                ctx.error(
                    at(&["sync", "local_only"]),
                    "sync.local_only",
                    format!("{t:?} is not a mirrored table"),
                    "\"domain\", \"mailbox\", \"alias\", \"alias_domain\"",
                );
            }
        }
        let Some(m) = self.sync.mysql.clone() else {
            return;
        };
        let key = |k: &str| format!("sync.mysql.{k}");
        let m_at = |k: &str| at(&["sync", "mysql", k]);
        if !cfg!(feature = "mysql") {
            ctx.error(
                at(&["sync", "mysql"]),
                "sync.mysql",
                "this postern was built without MySQL support (cargo feature `mysql`)",
                "no [sync.mysql], or a build with the feature",
            );
        }
        if m.host.is_empty() || m.host.contains(['/', ' ', '`']) {
            ctx.error(
                m_at("host"),
                &key("host"),
                format!("{:?} is not a host", m.host),
                "\"localhost\" (the Unix socket), a host name or an IP address",
            );
        }
        for (k, v) in [("user", &m.user), ("database", &m.database)] {
            if v.is_empty() {
                ctx.error(
                    m_at(k),
                    &key(k),
                    "missing",
                    "a MySQL name such as \"postfix-user-db\"",
                );
            } else if !identifier_ok(v) {
                ctx.error(
                    m_at(k),
                    &key(k),
                    format!("{v:?} is not a MySQL name"),
                    "up to 64 characters, no backquote",
                );
            }
        }
        match (m.password_file.is_empty(), m.password.is_empty()) {
            (true, true) => ctx.error(
                m_at("password_file"),
                &key("password_file"),
                "missing",
                "a file holding the password, mode 0600",
            ),
            (false, false) => ctx.error(
                m_at("password"),
                &key("password"),
                "given with password_file",
                "one of password_file, password",
            ),
            (true, false) if !m.allow_inline_password => ctx.error(
                m_at("password"),
                &key("password"),
                "a password in the config file is refused",
                "password_file (mode 0600), or allow_inline_password = true",
            ),
            _ => {}
        }
        if m.tls && m.host == "localhost" {
            ctx.error(
                m_at("tls"),
                &key("tls"),
                "host \"localhost\" is the Unix socket, which has no TLS",
                "tls = false, or host = \"127.0.0.1\" or a name",
            );
        }
        if !m.ca_file.is_empty() && !m.tls {
            ctx.error(
                m_at("ca_file"),
                &key("ca_file"),
                "set without tls = true",
                "\"\", or tls = true",
            );
        }
        self.check_sync_names(ctx, root);
        if files {
            if !m.password_file.is_empty() {
                let p = self.resolve(Path::new(&m.password_file));
                if let Err(e) = read_password(&p) {
                    ctx.error(
                        m_at("password_file"),
                        &key("password_file"),
                        e,
                        "a readable file of mode 0600 or stricter",
                    );
                }
            }
            if !m.ca_file.is_empty() {
                let p = self.resolve(Path::new(&m.ca_file));
                if let Err(e) = crate::outbound::tls::roots_from_pem_file(&p) {
                    ctx.error(
                        m_at("ca_file"),
                        &key("ca_file"),
                        format!("{}: {e}", p.display()),
                        "a PEM file of CA certificates",
                    );
                }
            }
        }
    }

    /// Table and column names of `[sync.mysql.tables]` and `.columns`.
    fn check_sync_names(&self, ctx: &mut Ctx<'_>, root: &DeTable<'_>) {
        for (table, columns) in TABLES {
            let name = self.sync.source_table(table);
            if !identifier_ok(name) {
                ctx.error(
                    offset(root, &["sync", "mysql", "tables", table]),
                    &format!("sync.mysql.tables.{table}"),
                    format!("{name:?} is not a MySQL table name"),
                    "up to 64 characters, no backquote",
                );
            }
            for (col, source) in &self.sync.column_map(table).0 {
                let at = offset(root, &["sync", "mysql", "columns", table]);
                let path = format!("sync.mysql.columns.{table}");
                let known: Vec<&str> = columns.iter().map(|(c, _)| *c).collect();
                match columns.iter().find(|(c, _)| c == col) {
                    None => ctx.error(
                        at,
                        &path,
                        format!("{col:?} is not a column postern reads from {table}"),
                        known.join(", "),
                    ),
                    Some((_, true)) if source.is_empty() => ctx.error(
                        at,
                        &path,
                        format!("{col} cannot be \"\": postern needs it"),
                        "the source's name of the column",
                    ),
                    Some(_) if !source.is_empty() && !identifier_ok(source) => ctx.error(
                        at,
                        &path,
                        format!("{source:?} is not a MySQL column name"),
                        "up to 64 characters, no backquote",
                    ),
                    Some(_) => {}
                }
            }
        }
    }

    /// Where the sync's password is, if in a file.
    pub fn sync_password_file(&self) -> Option<PathBuf> {
        let m = self.sync.mysql.as_ref()?;
        (!m.password_file.is_empty()).then(|| self.resolve(Path::new(&m.password_file)))
    }

    /// The sync's password: `password_file`, read now (so a changed
    /// password counts at the next sync), or the allowed inline one.
    pub fn sync_password(&self) -> Result<Secret, String> {
        let Some(m) = &self.sync.mysql else {
            return Err("no [sync.mysql] in the config".into());
        };
        match self.sync_password_file() {
            Some(p) => read_password(&p).map_err(|e| format!("sync.mysql.password_file: {e}")),
            None => Ok(Secret::new(m.password.as_bytes().to_vec())),
        }
    }

    /// The CA file of `[sync.mysql] ca_file`, resolved.
    pub fn sync_ca_file(&self) -> Option<PathBuf> {
        let m = self.sync.mysql.as_ref()?;
        (!m.ca_file.is_empty()).then(|| self.resolve(Path::new(&m.ca_file)))
    }
}

/// Reads a password file: mode 0600 or stricter, one line (a final line
/// end is not part of it). Errors never hold the password.
pub fn read_password(path: &Path) -> Result<Secret, String> {
    use std::os::unix::fs::MetadataExt;
    let meta =
        std::fs::metadata(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if meta.mode() & 0o077 != 0 {
        return Err(format!(
            "{}: mode {:o} lets others read the password (chmod 600 {})",
            path.display(),
            meta.mode() & 0o777,
            path.display()
        ));
    }
    let mut bytes =
        std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    while matches!(bytes.last(), Some(b'\n' | b'\r')) {
        bytes.pop();
    }
    if bytes.is_empty() {
        return Err(format!("{} is empty", path.display()));
    }
    if bytes.contains(&b'\n') || std::str::from_utf8(&bytes).is_err() {
        return Err(format!(
            "{}: expected one line of UTF-8 text",
            path.display()
        ));
    }
    Ok(Secret::new(bytes))
}

/// Byte offset of a key at `path`, or of the nearest table on the way.
fn offset(root: &DeTable<'_>, path: &[&str]) -> usize {
    let mut table = root;
    let mut best = 0;
    for k in path {
        let Some((key, v)) = table.get_key_value(*k) else {
            return best;
        };
        best = key.span().start;
        match v.get_ref() {
            DeValue::Table(t) => table = t,
            _ => return best,
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, Vec<super::super::ConfigError>> {
        Config::parse_client(
            "t.toml",
            &format!("[[listener]]\naddress = \"127.0.0.1:0\"\n{text}"),
        )
    }

    #[test]
    fn a_source_reads_with_its_defaults() {
        let c = parse(
            "[sync.mysql]\nuser = \"postfix-mysql-user\"\npassword_file = \"pw\"\ndatabase = \"postfix-user-db\"\n\
             [sync.mysql.columns]\nmailbox = { smtp_active = \"\", username = \"email\" }\n",
        )
        .unwrap();
        let m = c.sync.mysql.as_ref().unwrap();
        assert_eq!(
            (m.host.as_str(), m.port, m.interval.0.as_secs()),
            ("localhost", 3306, 300)
        );
        assert_eq!(c.sync.source_column("mailbox", "username"), "email");
        assert_eq!(c.sync.source_column("mailbox", "smtp_active"), "");
        assert_eq!(c.sync.source_column("mailbox", "maildir"), "maildir");
        assert_eq!(c.sync.source_table("alias_domain"), "alias_domain");
        assert!(parse("").unwrap().sync.mysql.is_none());
    }

    #[test]
    fn bad_sources_name_the_key() {
        let e = parse(
            "[sync]\nlocal_only = [\"mailboxes\"]\n[sync.mysql]\nuser = \"u\"\npassword = \"x\"\n\
             tls = true\nbogus = 1\n[sync.mysql.columns]\nmailbox = { maildir = \"\", nope = \"x\" }\n",
        )
        .unwrap_err();
        let text: Vec<String> = e.iter().map(|e| e.to_string()).collect();
        let has = |s: &str| text.iter().any(|t| t.contains(s));
        assert!(
            has("sync.local_only: \"mailboxes\" is not a mirrored table"),
            "{text:#?}"
        );
        assert!(has("sync.mysql.database: missing"), "{text:#?}");
        assert!(
            has("sync.mysql.password: a password in the config file is refused"),
            "{text:#?}"
        );
        assert!(
            has("sync.mysql.tls: host \"localhost\" is the Unix socket"),
            "{text:#?}"
        );
        assert!(has("sync.mysql.bogus: unknown key"), "{text:#?}");
        assert!(has("maildir cannot be \"\""), "{text:#?}");
        assert!(has("\"nope\" is not a column"), "{text:#?}");
        assert!(
            text.iter()
                .all(|t| !t.contains("\"x\"") || t.contains("nope")),
            "no password in errors: {text:#?}"
        );
    }

    #[test]
    fn password_files_must_be_private() {
        use std::os::unix::fs::PermissionsExt;
        let p = std::env::temp_dir().join(format!("postern-sync-pw-{}", std::process::id()));
        std::fs::write(&p, "s3cret\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = read_password(&p).unwrap_err();
        assert!(e.contains("mode 644") && !e.contains("s3cret"), "{e}");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read_password(&p).unwrap().expose(), b"s3cret");
        std::fs::remove_file(&p).unwrap();
    }
}
