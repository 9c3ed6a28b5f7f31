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
pub mod example;
pub mod schema;
pub mod values;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::de::{DeTable, DeValue};

use crate::section;
pub use schema::ConfigError;
use schema::Ctx;
pub use values::{Cidr, ListenerMode, LocalUsers, Secs, Size};

/// The configuration `postern serve` runs with when given no file.
pub const EMBEDDED_DEFAULT: &str = include_str!("default.toml");
pub const EMBEDDED_NAME: &str = "(embedded default)";

fn loopback() -> Vec<Cidr> {
    vec![
        Cidr::parse("127.0.0.0/8").unwrap(),
        Cidr::parse("::1/128").unwrap(),
    ]
}

section! {
    /// Names, trusted networks and where postern keeps its files.
    pub struct Main ("") {
        /// This host's name: in the greeting, in Received: headers, in bounces
        /// (Postfix's myhostname).
        hostname: Option<String> = None, example "\"mail.example.test\"", default "the system's host name";
        /// Domain added to addresses that have none, such as `<postmaster>`
        /// (myorigin).
        origin: Option<String> = None, example "\"mail.example.test\"", default "the hostname";
        /// Domains whose mail is for this machine itself (mydestination): the
        /// aliases file is consulted first, then local users.
        local_domains: Option<Vec<String>> = None, example "[\"mail.example.test\", \"localhost\"]",
            default "[hostname, \"localhost\"]";
        /// Clients in these networks may relay to any domain (mynetworks).
        /// Everyone else may only send to the domains this box serves.
        trusted_networks: Vec<Cidr> = loopback(), example "[\"127.0.0.0/8\", \"::1/128\", \"192.168.0.0/24\"]",
            default "[\"127.0.0.0/8\", \"::1/128\"]";
        /// Where the queue, the user directory and the mailboxes live by
        /// default. Relative to the directory postern is started in.
        data_dir: PathBuf = PathBuf::from("postern-data"), example "\"/var/lib/postern\"",
            default "\"postern-data\"";
        /// Characters that separate a user from an address extension:
        /// `alice+lists@example.test` goes to alice (recipient_delimiter).
        /// Empty turns extensions off.
        recipient_delimiter: String = "+".into(), example "\"+\"";
    }
}

section! {
    /// A port postern accepts SMTP on. Repeat the table for more listeners.
    pub struct Listener ("[listener]") {
        /// Address and port to listen on.
        address: Option<SocketAddr> = None, example "\"0.0.0.0:25\"", default "none: required";
        /// "plain": SMTP without TLS.
        mode: ListenerMode = ListenerMode::Plain, example "\"plain\"";
    }
}

section! {
    /// The SMTP server: protocol switches and limits.
    pub struct Smtp ("smtp") {
        /// Refuse MAIL until the client said HELO or EHLO (smtpd_helo_required).
        helo_required: bool = true, example "true";
        /// Answer VRFY with lookups. Off, VRFY gets 252 and discloses nothing
        /// (disable_vrfy_command = yes).
        vrfy: bool = false, example "false";
        /// Largest message accepted, in bytes; announced with SIZE and
        /// enforced at MAIL and during DATA (message_size_limit).
        message_size_limit: Size = Size(10 * 1024 * 1024), example "10485760";
        /// Longest command line, in octets with CRLF (RFC 5321: at least 512).
        command_line_limit: usize = 512, example "512";
        /// Longest message text line, in octets with CRLF; longer lines get
        /// the message refused, never truncated (RFC 5321: at least 1000).
        text_line_limit: usize = 1000, example "1000";
        /// Recipients per message; more get 452 4.5.3 (smtpd_recipient_limit).
        recipient_limit: usize = 100, example "100";
        /// Errors after which every error reply is delayed by error_delay
        /// (smtpd_soft_error_limit).
        soft_error_limit: u32 = 10, example "10";
        /// Errors after which the client is disconnected (smtpd_hard_error_limit).
        hard_error_limit: u32 = 20, example "20";
        /// Delay added to each error reply past the soft limit (smtpd_error_sleep_time).
        error_delay: Secs = Secs(Duration::from_secs(1)), example "\"1s\"";
        /// Idle time allowed while waiting for a command (smtpd_timeout).
        command_timeout: Secs = Secs(Duration::from_secs(300)), example "\"300s\"";
        /// Idle time allowed while receiving message data.
        data_timeout: Secs = Secs(Duration::from_secs(300)), example "\"300s\"";
        /// Connections served at once, all listeners together; more get 421.
        max_connections: usize = 100, example "100";
        /// Connections at once from one client address; more get 421
        /// (smtpd_client_connection_count_limit).
        max_connections_per_client: usize = 50, example "50";
    }
}

section! {
    /// Who exists: the SQLite mirror of the PostfixAdmin tables (domain,
    /// mailbox, alias, alias_domain) and the local aliases file.
    pub struct DirectoryCfg ("directory") {
        /// The SQLite database; created with the PostfixAdmin schema if missing.
        database: PathBuf = PathBuf::from("directory.sqlite"), example "\"/var/lib/postern/directory.sqlite\"",
            default "\"directory.sqlite\" in data_dir";
        /// aliases(5) file for the local domains (`root: admin@example.test`).
        /// `:include:`, `|command` and `/file` targets are refused.
        aliases_file: Option<PathBuf> = None, example "\"/etc/postern/aliases\"", default "none";
        /// Which local parts of the local domains exist: "any" (each gets a
        /// Maildir of its own) or "aliases-only" (only names in the aliases file).
        local_users: LocalUsers = LocalUsers::Any, example "\"aliases-only\"", default "\"any\"";
        /// How deep aliases may point at aliases before expansion stops.
        alias_depth_limit: usize = 20, example "20";
        /// How long a lookup may wait for a locked database before the client
        /// gets 451 4.3.0.
        lookup_timeout: Secs = Secs(Duration::from_secs(5)), example "\"5s\"";
    }
}

section! {
    /// Delivery into Maildirs.
    pub struct Delivery ("delivery") {
        /// Base of the virtual mailboxes; mailbox.maildir is appended
        /// (virtual_mailbox_base).
        mailbox_base: PathBuf = PathBuf::from("mail"), example "\"/var/mail/vhosts\"",
            default "\"mail\" in data_dir";
        /// Base of the local users' Maildirs: mail for bob@localhost lands in
        /// <local_mailbox_base>/bob/.
        local_mailbox_base: PathBuf = PathBuf::from("local"), example "\"/var/lib/postern/local\"",
            default "\"local\" in data_dir";
        /// User ID that owns delivered mail (virtual_uid_maps = static:N).
        /// Unset: the user postern runs as.
        uid: Option<u32> = None, example "5000", default "unset";
        /// Group ID that owns delivered mail (virtual_gid_maps = static:N).
        gid: Option<u32> = None, example "5000", default "unset";
        /// Deliveries as a uid below this are refused (virtual_minimum_uid).
        minimum_uid: u32 = 100, example "5000", default "100";
        /// A message with this many Received: headers (ours included) is a
        /// loop and bounces (hopcount_limit).
        max_received_headers: usize = 50, example "50";
        /// Messages delivered at once.
        concurrency: usize = 8, example "8";
    }
}

section! {
    /// The queue: where accepted mail waits, and how long.
    pub struct Queue ("queue") {
        /// Spool directory, owned by postern alone.
        directory: PathBuf = PathBuf::from("queue"), example "\"/var/spool/postern\"",
            default "\"queue\" in data_dir";
        /// First retry delay after a temporary failure (minimal_backoff_time).
        min_backoff: Secs = Secs(Duration::from_secs(300)), example "\"5m\"";
        /// Longest delay between retries (maximal_backoff_time).
        max_backoff: Secs = Secs(Duration::from_secs(4000)), example "\"4000s\"";
        /// Mail still undeliverable after this long bounces (maximal_queue_lifetime).
        max_lifetime: Secs = Secs(Duration::from_secs(5 * 86_400)), example "\"5d\"";
    }
}

/// The sections in the order the example config shows them.
pub const SECTIONS: &[schema::SectionDoc] = &[
    Main::DOC,
    Listener::DOC,
    Smtp::DOC,
    DirectoryCfg::DOC,
    Delivery::DOC,
    Queue::DOC,
];

const SUBSECTIONS: &[&str] = &["listener", "smtp", "directory", "delivery", "queue"];

#[derive(Clone, Debug)]
pub struct Config {
    /// File name, or [`EMBEDDED_NAME`].
    pub source: String,
    pub main: Main,
    pub listeners: Vec<Listener>,
    pub smtp: Smtp,
    pub directory: DirectoryCfg,
    pub delivery: Delivery,
    pub queue: Queue,
    hostname: String,
    local_domains: Vec<String>,
    data_dir: PathBuf,
    /// The aliases file, read and checked with the config.
    pub aliases: aliases::AliasMap,
}

impl Config {
    /// Reads and checks a config file. All problems are returned together.
    pub fn load_file(path: &Path) -> Result<Config, Vec<ConfigError>> {
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
        Config::parse(&name, &src)
    }

    pub fn embedded() -> Config {
        Config::parse(EMBEDDED_NAME, EMBEDDED_DEFAULT)
            .expect("the embedded default config is valid")
    }

    pub fn parse(file: &str, src: &str) -> Result<Config, Vec<ConfigError>> {
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
        let t = sub(&mut ctx, root, "directory").unwrap_or(&empty);
        let directory = DirectoryCfg::read(&mut ctx, "directory", t, &[]);
        let t = sub(&mut ctx, root, "delivery").unwrap_or(&empty);
        let delivery = Delivery::read(&mut ctx, "delivery", t, &[]);
        let t = sub(&mut ctx, root, "queue").unwrap_or(&empty);
        let queue = Queue::read(&mut ctx, "queue", t, &[]);
        let listeners = read_listeners(&mut ctx, root);

        let mut cfg = Config {
            source: file.to_string(),
            main,
            listeners,
            smtp,
            directory,
            delivery,
            queue,
            hostname: String::new(),
            local_domains: Vec::new(),
            data_dir: PathBuf::new(),
            aliases: Default::default(),
        };
        cfg.check(&mut ctx, root);
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

    pub fn session_config(&self) -> crate::smtp::session::SessionConfig {
        let s = &self.smtp;
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
        }
    }
}

/// The table `[name]`, if present; an error if `name` is not a table.
fn sub<'a, 'i>(ctx: &mut Ctx<'_>, root: &'a DeTable<'i>, name: &str) -> Option<&'a DeTable<'i>> {
    schema::as_table(ctx, name, root.get(name)?)
}

fn read_listeners(ctx: &mut Ctx<'_>, root: &DeTable<'_>) -> Vec<Listener> {
    let Some(v) = root.get("listener") else {
        return Vec::new();
    };
    let DeValue::Array(arr) = v.get_ref() else {
        ctx.error(
            v.span().start,
            "listener",
            "expected [[listener]] tables",
            "one or more [[listener]] tables",
        );
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, item) in arr.iter().enumerate() {
        let prefix = format!("listener[{}]", i + 1);
        if let Some(t) = schema::as_table(ctx, &prefix, item) {
            out.push(Listener::read(ctx, &prefix, t, &[]));
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
