//! postern's configuration: one TOML file, read once into typed structs.
//!
//! The only module that parses TOML. Every key is declared once in the
//! sections below (type, default, example, help); the reader, the defaults
//! and `postern config example` all come from those declarations. Errors
//! are collected, not thrown: a broken file gets every problem reported at
//! once as `FILE:LINE: key: problem; allowed: ...`.
//!
//! Paths: `data_dir` is relative to the directory postern starts in; every
//! other relative path is relative to `data_dir`.

pub mod aliases;
mod check;
pub mod dkim;
pub mod example;
pub mod hooks;
pub mod relay;
mod root;
pub mod schema;
mod sections;
pub mod sync;
pub mod values;

use std::path::{Path, PathBuf};

use toml::de::{DeTable, DeValue};

pub use schema::ConfigError;
use schema::Ctx;
pub use sections::*;
pub use values::{
    AuthBackend, Cidr, ListenerMode, ListenerRole, LocalUsers, OverQuota, PasswordScheme, Secs,
    Size, TlsMode, TransportKind,
};

/// The configuration `postern serve` runs with when given no file.
pub const EMBEDDED_DEFAULT: &str = include_str!("default.toml");
pub const EMBEDDED_NAME: &str = "(embedded default)";

/// The sections in the order the example config shows them.
pub const SECTIONS: &[schema::SectionDoc] = &[
    Main::DOC,
    Listener::DOC,
    Smtp::DOC,
    Tls::DOC,
    Auth::DOC,
    DirectoryCfg::DOC,
    Delivery::DOC,
    Transport::DOC,
    Content::DOC,
    QuotaCfg::DOC,
    Queue::DOC,
    Relay::DOC,
    RelayRoute::DOC,
    dkim::Dkim::DOC,
    Control::DOC,
    sync::SyncCfg::DOC,
    sync::SyncMysql::DOC,
    sync::SyncTables::DOC,
    sync::SyncColumns::DOC,
];

const SUBSECTIONS: &[&str] = &[
    "listener",
    "smtp",
    "tls",
    "auth",
    "directory",
    "delivery",
    "transport",
    "content",
    "quota",
    "queue",
    "relay",
    "control",
    "sync",
    "dkim",
];

#[derive(Clone, Debug)]
pub struct Config {
    /// File name, or [`EMBEDDED_NAME`].
    pub source: String,
    pub main: Main,
    pub listeners: Vec<Listener>,
    pub smtp: Smtp,
    pub tls: Tls,
    pub auth: Auth,
    pub directory: DirectoryCfg,
    pub delivery: Delivery,
    pub queue: Queue,
    pub transports: Vec<Transport>,
    pub content: Content,
    pub quota: QuotaCfg,
    /// `[quota] limits_file`, read in server scope.
    pub quota_limits: hooks::QuotaLimits,
    /// `[content]` header and body rules, read and compiled with the config.
    pub content_rules: std::sync::Arc<crate::intake::content::ContentRules>,
    pub relay: Relay,
    pub relay_routes: Vec<RelayRoute>,
    /// The relay logins of `[relay] credentials_file` (read in server scope).
    pub credentials: relay::Credentials,
    pub control: Control,
    /// `[sync]` and `[sync.mysql]`: the database `postern sync` mirrors.
    pub sync: sync::SyncSettings,
    /// `[[dkim]]`: the keys outgoing mail is signed with (read in server scope).
    pub dkim: dkim::DkimSettings,
    hostname: String,
    local_domains: Vec<String>,
    data_dir: PathBuf,
    /// `--root`: the directory every path of the file was taken under.
    root: Option<PathBuf>,
    /// `--data-dir` overrode data_dir: a reload keeps the override.
    data_dir_overridden: bool,
    /// The aliases file, read and checked with the config.
    pub aliases: aliases::AliasMap,
}

impl Config {
    /// Reads and checks a config file. All problems are returned together.
    pub fn load_file(path: &Path) -> Result<Config, Vec<ConfigError>> {
        Config::load_scoped(path, true, None)
    }

    /// A config file for a client command (see [`Config::parse_client`]).
    pub fn load_client(path: &Path) -> Result<Config, Vec<ConfigError>> {
        Config::load_scoped(path, false, None)
    }

    /// [`Config::load_file`] with `--root`: every path in the file is
    /// taken under `root` ([`Config::reroot`]) before the files it names
    /// are read. `path` itself is taken as given.
    pub fn load_file_under(path: &Path, root: Option<&Path>) -> Result<Config, Vec<ConfigError>> {
        Config::load_scoped(path, true, root)
    }

    /// [`Config::load_client`] with `--root`.
    pub fn load_client_under(path: &Path, root: Option<&Path>) -> Result<Config, Vec<ConfigError>> {
        Config::load_scoped(path, false, root)
    }

    /// The same file again, under the same root: what a reload reads.
    pub fn reread(&self) -> Result<Config, Vec<ConfigError>> {
        let mut cfg = if self.source == EMBEDDED_NAME {
            Config::embedded()
        } else {
            Config::load_file_under(Path::new(&self.source), self.root.as_deref())
        }?;
        if self.data_dir_overridden {
            cfg.set_data_dir(self.data_dir.clone());
        }
        Ok(cfg)
    }

    /// The `--root` the paths were taken under, if any.
    pub fn root(&self) -> Option<&Path> {
        self.root.as_deref()
    }

    fn load_scoped(
        path: &Path,
        files: bool,
        root: Option<&Path>,
    ) -> Result<Config, Vec<ConfigError>> {
        let name = path.display().to_string();
        let src = std::fs::read_to_string(path).map_err(|e| {
            vec![ConfigError {
                file: name.clone(),
                line: 0,
                key: "(file)".into(),
                problem: format!("cannot read: {e}"),
                allowed: String::new(),
            }]
        })?;
        Config::parse_scoped(&name, &src, files, root)
    }

    /// The embedded default. Its text is valid (a test checks), but the
    /// checks that look at files can still fail here, e.g. a database in
    /// ./postern-data that this user may not read.
    pub fn embedded() -> Result<Config, Vec<ConfigError>> {
        Config::parse(EMBEDDED_NAME, EMBEDDED_DEFAULT)
    }

    /// The embedded default for a client command.
    pub fn embedded_client() -> Result<Config, Vec<ConfigError>> {
        Config::parse_client(EMBEDDED_NAME, EMBEDDED_DEFAULT)
    }

    /// Parses and checks a config, reading the files it names (aliases,
    /// certificate, database), as the server and check-config need.
    pub fn parse(file: &str, src: &str) -> Result<Config, Vec<ConfigError>> {
        Config::parse_scoped(file, src, true, None)
    }

    /// For client commands (`postern queue`, later `sendmail`), which
    /// any permitted user runs: the same checks, without reading the
    /// server's files (they may not be readable to that user).
    pub fn parse_client(file: &str, src: &str) -> Result<Config, Vec<ConfigError>> {
        Config::parse_scoped(file, src, false, None)
    }

    fn parse_scoped(
        file: &str,
        src: &str,
        files: bool,
        image_root: Option<&Path>,
    ) -> Result<Config, Vec<ConfigError>> {
        let mut ctx = Ctx::new(file, src);
        let (doc, syntax) = DeTable::parse_recoverable(src);
        for e in syntax {
            let offset = e.span().map(|s| s.start).unwrap_or(0);
            let msg = e
                .message()
                .lines()
                .next()
                .unwrap_or("syntax error")
                .to_string();
            ctx.error(
                offset,
                "(syntax)",
                msg,
                "TOML, see `postern config example`",
            );
        }
        let root = doc.get_ref();
        let main = Main::read(&mut ctx, "", root, SUBSECTIONS);
        let empty = DeTable::new();
        let t = sub(&mut ctx, root, "smtp").unwrap_or(&empty);
        let smtp = Smtp::read(&mut ctx, "smtp", t, &[]);
        let t = sub(&mut ctx, root, "tls").unwrap_or(&empty);
        let tls = Tls::read(&mut ctx, "tls", t, &[]);
        let t = sub(&mut ctx, root, "auth").unwrap_or(&empty);
        let auth = Auth::read(&mut ctx, "auth", t, &[]);
        let t = sub(&mut ctx, root, "directory").unwrap_or(&empty);
        let directory = DirectoryCfg::read(&mut ctx, "directory", t, &[]);
        let t = sub(&mut ctx, root, "delivery").unwrap_or(&empty);
        let delivery = Delivery::read(&mut ctx, "delivery", t, &[]);
        let t = sub(&mut ctx, root, "queue").unwrap_or(&empty);
        let queue = Queue::read(&mut ctx, "queue", t, &[]);
        let transports = read_tables(&mut ctx, root, "transport", "transport", Transport::read);
        let t = sub(&mut ctx, root, "content").unwrap_or(&empty);
        let content = Content::read(&mut ctx, "content", t, &[]);
        let t = sub(&mut ctx, root, "quota").unwrap_or(&empty);
        let quota = QuotaCfg::read(&mut ctx, "quota", t, &[]);
        let t = sub(&mut ctx, root, "relay").unwrap_or(&empty);
        let relay = Relay::read(&mut ctx, "relay", t, &["route"]);
        let relay_routes = read_tables(&mut ctx, t, "route", "relay.route", RelayRoute::read);
        let t = sub(&mut ctx, root, "control").unwrap_or(&empty);
        let control = Control::read(&mut ctx, "control", t, &[]);
        let listeners = read_listeners(&mut ctx, root);
        let sync = sync::read(&mut ctx, root);
        let dkim = dkim::read(&mut ctx, root);

        let mut cfg = Config {
            source: file.to_string(),
            main,
            listeners,
            smtp,
            tls,
            auth,
            directory,
            delivery,
            queue,
            transports,
            content,
            quota,
            quota_limits: Default::default(),
            content_rules: Default::default(),
            relay,
            relay_routes,
            credentials: Default::default(),
            control,
            sync,
            dkim,
            hostname: String::new(),
            local_domains: Vec::new(),
            data_dir: PathBuf::new(),
            root: None,
            data_dir_overridden: false,
            aliases: Default::default(),
        };
        if let Some(dir) = image_root {
            cfg.reroot(dir);
        }
        cfg.check(&mut ctx, root, files);
        cfg.check_sync(&mut ctx, root, files);
        cfg.check_dkim(&mut ctx, root, files);
        if ctx.errors.is_empty() {
            Ok(cfg)
        } else {
            ctx.errors.sort_by(|a, b| {
                (a.file != file, &a.file, a.line).cmp(&(b.file != file, &b.file, b.line))
            });
            Err(ctx.errors)
        }
    }

    /// Replaces `data_dir` (the `--data-dir` flag).
    pub fn set_data_dir(&mut self, dir: PathBuf) {
        self.main.data_dir = dir.clone();
        self.data_dir = dir;
        self.data_dir_overridden = true;
    }

    /// Makes `data_dir` absolute against the current directory, once at start.
    pub fn absolutize(&mut self) {
        if self.data_dir.is_relative() {
            if let Ok(cwd) = std::env::current_dir() {
                self.data_dir = cwd.join(&self.data_dir);
            }
        }
    }

    pub fn hostname(&self) -> &str {
        &self.hostname
    }

    pub fn origin(&self) -> &str {
        self.main.origin.as_deref().unwrap_or(&self.hostname)
    }

    pub fn local_domains(&self) -> &[String] {
        &self.local_domains
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// A path from the config, relative ones taken from `data_dir`.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.data_dir.join(p)
        }
    }

    pub fn queue_dir(&self) -> PathBuf {
        self.resolve(&self.queue.directory)
    }

    /// `[queue] min_free`, or its default: room for two messages of the
    /// size limit.
    pub fn min_free(&self) -> u64 {
        match self.queue.min_free {
            Some(s) => s.0,
            None if self.smtp.message_size_limit.0 == 0 => 20 << 20,
            None => self.smtp.message_size_limit.0.saturating_mul(2),
        }
    }

    pub fn control_socket(&self) -> PathBuf {
        self.resolve(&self.control.socket)
    }

    pub fn submit_socket(&self) -> PathBuf {
        self.resolve(&self.control.submit_socket)
    }

    pub fn maildrop(&self) -> PathBuf {
        self.resolve(&self.control.maildrop)
    }

    pub fn database_path(&self) -> PathBuf {
        self.resolve(&self.directory.database)
    }

    pub fn mailbox_base(&self) -> PathBuf {
        self.resolve(&self.delivery.mailbox_base)
    }

    pub fn local_mailbox_base(&self) -> PathBuf {
        self.resolve(&self.delivery.local_mailbox_base)
    }

    pub fn aliases_file(&self) -> Option<PathBuf> {
        self.directory
            .aliases_file
            .as_ref()
            .map(|p| self.resolve(p))
    }

    /// What the SMTP session on `listener` needs to know.
    pub fn session_config(&self, listener: &Listener) -> crate::smtp::session::SessionConfig {
        let s = &self.smtp;
        let a = &self.auth;
        crate::smtp::session::SessionConfig {
            hostname: self.hostname.clone(),
            origin: self.origin().to_string(),
            helo_required: s.helo_required,
            vrfy_enabled: s.vrfy,
            max_message_size: s.message_size_limit.0,
            command_line_limit: s.command_line_limit,
            text_line_limit: s.text_line_limit,
            recipient_limit: s.recipient_limit,
            soft_error_limit: s.soft_error_limit,
            hard_error_limit: s.hard_error_limit,
            error_delay: s.error_delay.0,
            command_timeout: s.command_timeout.0,
            data_timeout: s.data_timeout.0,
            starttls: listener.mode == ListenerMode::StartTls,
            auth_enabled: a.backend != AuthBackend::None,
            auth_tls_only: a.tls_only,
            auth_broken_clients: a.broken_clients,
            auth_header: a.authenticated_header,
            auth_session_failures: a.session_failures,
            require_auth: listener.require_auth,
            xforward: listener.role == ListenerRole::Reinject,
        }
    }

    /// Does any listener speak TLS?
    pub fn needs_tls(&self) -> bool {
        self.listeners.iter().any(|l| l.mode != ListenerMode::Plain)
    }

    /// Certificate and key files named in the config, resolved.
    pub fn tls_files(&self) -> Option<(PathBuf, PathBuf)> {
        match (&self.tls.cert_file, &self.tls.key_file) {
            (Some(c), Some(k)) => Some((self.resolve(c), self.resolve(k))),
            _ => None,
        }
    }

    pub fn dovecot_socket(&self) -> Option<PathBuf> {
        self.auth.dovecot_socket.as_ref().map(|p| self.resolve(p))
    }
}

/// The table `[name]`, if present; an error if `name` is not a table.
fn sub<'a, 'i>(ctx: &mut Ctx<'_>, root: &'a DeTable<'i>, name: &str) -> Option<&'a DeTable<'i>> {
    schema::as_table(ctx, name, root.get(name)?)
}

fn read_listeners(ctx: &mut Ctx<'_>, root: &DeTable<'_>) -> Vec<Listener> {
    read_tables(ctx, root, "listener", "listener", Listener::read)
}

/// An array of tables `[[path]]` (key `key` of `table`), each read by `read`.
fn read_tables<T>(
    ctx: &mut Ctx<'_>,
    table: &DeTable<'_>,
    key: &str,
    path: &str,
    read: fn(&mut Ctx<'_>, &str, &DeTable<'_>, &[&str]) -> T,
) -> Vec<T> {
    let Some(v) = table.get(key) else {
        return Vec::new();
    };
    let DeValue::Array(arr) = v.get_ref() else {
        ctx.error(
            v.span().start,
            path,
            format!("expected [[{path}]] tables"),
            format!("one or more [[{path}]] tables"),
        );
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, item) in arr.iter().enumerate() {
        let prefix = format!("{path}[{}]", i + 1);
        if let Some(t) = schema::as_table(ctx, &prefix, item) {
            out.push(read(ctx, &prefix, t, &[]));
        }
    }
    out
}

/// A host or domain name: letters, digits, hyphens and dots, non-ASCII allowed.
pub fn is_domain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_alphanumeric() || c == '-')
        })
}

pub fn system_hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| is_domain(h))
        .map(|h| h.to_ascii_lowercase())
        .unwrap_or_else(|| "localhost".to_string())
}
