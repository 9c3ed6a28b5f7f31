//! The declarations of every config section and key (see schema.rs for
//! the `section!` macro). Help text here is what `postern config example`
//! prints.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::values::{
    AuthBackend, Cidr, ListenerMode, ListenerRole, LocalUsers, OverQuota, PasswordScheme, Secs,
    Size, TlsMode, TransportKind,
};
use crate::section;
use std::collections::BTreeMap;

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
        /// Started as root, postern binds its ports and then runs as this
        /// user (and its primary group), keeping only the capabilities to
        /// deliver as other users (CAP_SETUID, CAP_SETGID) and to bind new
        /// low ports at a reload (mail_owner). Unset: it keeps running as
        /// whoever started it. Ignored when not started as root.
        user: Option<String> = None, example "\"postern\"", default "unset: stay who started it";
    }
}

section! {
    /// A port postern accepts SMTP on. Repeat the table for more listeners.
    pub struct Listener ("[listener]") {
        /// Address and port to listen on. Port 0 lets the kernel pick a free
        /// port; the bound addresses are logged and written to
        /// data_dir/listening (one line per listener: index, configured
        /// address, bound address, mode).
        address: Option<SocketAddr> = None, example "\"0.0.0.0:25\"", default "none: required";
        /// "plain": SMTP without TLS; "starttls": plain, with STARTTLS offered
        /// (RFC 3207; ports 25 and 587); "implicit-tls": TLS from the first
        /// byte (RFC 8314; port 465, the seed's smtps wrappermode).
        mode: ListenerMode = ListenerMode::StartTls, example "\"starttls\"";
        /// Refuse MAIL until the client has logged in (530 5.7.0): the
        /// submission ports 587 and 465.
        require_auth: bool = false, example "false";
        /// "smtp", or "reinject": the content filter's way back (the seed's
        /// 127.0.0.1:10025): no filter, aliases expanded here (not before the
        /// filter), only trusted networks may send, XFORWARD accepted.
        role: ListenerRole = ListenerRole::Smtp, example "\"smtp\"";
        /// This listener's after-queue content filter, instead of [content]
        /// filter (master.cf's -o content_filter=): "" = none. A reinject
        /// listener never filters.
        filter: Option<String> = None, example "\"[127.0.0.1]:10026\"", default "[content] filter";
        /// Who may send here, instead of [main] trusted_networks (-o
        /// mynetworks=): on a reinject listener, only these.
        trusted_networks: Option<Vec<Cidr>> = None, example "[\"127.0.0.0/8\"]", default "[main] trusted_networks";
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
        /// enforced at MAIL and during DATA (message_size_limit). 0: no
        /// limit (announced as `SIZE 0`, RFC 1870).
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
        /// Threads that run the SMTP sessions, the queue runner and outbound
        /// connections (file work has threads of its own). 0: one less than
        /// the CPUs, at least 1 and at most 4.
        threads: usize = 0, example "0";
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
        /// `|command`, `/file`, `/dir/` and `:include:/file` targets work
        /// only when this file is owned by root or by postern's user and
        /// writable by no one else (then as its owner, or default_privs
        /// for root). Read at start.
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
        /// Who aliases-file |commands and /files of a root-owned aliases
        /// file, and mailbox_command when uid is unset, run as
        /// (default_privs): a user name or uid[:gid], never root.
        default_privs: String = "nobody".into(), example "\"nobody\"";
        /// A message with this many Received: headers (ours included) is a
        /// loop and bounces (hopcount_limit).
        max_received_headers: usize = 50, example "50";
        /// Maildir deliveries at once (each agent has its own limit, so a slow
        /// relay never holds up local mail).
        concurrency: usize = 8, example "8";
        /// Write mail whose every recipient is a local Maildir straight into
        /// those Maildirs before answering 250 (one synchronous write per
        /// copy, no queue file). If a Maildir cannot be written, the message
        /// is queued instead, never refused for that. false: every message
        /// goes through the queue first.
        direct: bool = true, example "true";
        /// How virtual mailboxes are delivered: "maildir", or the name of a
        /// [[transport]] such as "procmail" (virtual_transport). The domain's
        /// `transport` column and mailbox_transports override it.
        virtual_transport: String = "maildir".into(), example "\"maildir\"";
        /// Per mailbox: the transport of single addresses, e.g.
        /// { "alice@example.test" = "procmail" }.
        mailbox_transports: BTreeMap<String, String> = BTreeMap::new(), example "{}";
        /// Local users' Maildir below their own directory in
        /// local_mailbox_base (home_mailbox = "mail/"): "" = that directory.
        home_mailbox: String = String::new(), example "\"\"";
        /// A command local users' mail is piped to instead
        /// (mailbox_command), run as the delivery uid with the pipe
        /// transports' environment plus local(8)'s (RECIPIENT, LOCAL, ...;
        /// HOME is the user's directory in local_mailbox_base). Macros as
        /// in [[transport]]. Local users need not have a passwd entry, and
        /// procmail takes its idea of home from there: name the rc file,
        /// e.g. ["/usr/bin/procmail", "-m", "LOCALUSER=${user}",
        /// "/etc/postern/procmailrc"]. Empty: none.
        mailbox_command: Vec<String> = Vec::new(), example "[]";
    }
}

section! {
    /// A named delivery transport: a command the message is piped to
    /// (pipe(8), e.g. procmail). Repeat the table for more transports; use
    /// them in [delivery] virtual_transport, the domain.transport column,
    /// or mailbox_transports.
    pub struct Transport ("[transport]") {
        /// Its name.
        name: String = String::new(), example "\"procmail\"", default "none: required";
        /// "pipe".
        kind: TransportKind = TransportKind::Pipe, example "\"pipe\"";
        /// The command and its arguments, no shell. Expanded per recipient:
        /// ${user} ${extension} ${domain} ${nexthop} ${recipient}
        /// ${original_recipient} ${mailbox} ${sender} ${size} ${queue_id}.
        command: Vec<String> = Vec::new(), example "[\"/usr/bin/procmail\", \"-t\", \"-m\", \"USER=${user}\", \"DOMAIN=${nexthop}\", \"EXTENSION=${extension}\", \"/etc/procmailrc\"]", default "none: required";
        /// Who it runs as: a user name or uid[:gid]; never root.
        user: String = String::new(), example "\"vmail\"", default "none: required";
        /// pipe(8) flags: R (Return-Path:), D (Delivered-To:), O
        /// (X-Original-To:), F (mbox From_ line), B (final blank line), h q
        /// u (lower-case domain, quote and lower-case local part), > (quote
        /// From_ lines), . (dot-stuff).
        flags: String = String::new(), example "\"R\"";
        /// Deliveries at once.
        concurrency: usize = 8, example "8";
        /// Longest run; then the command's process group is killed and the
        /// recipient bounces, as in Postfix.
        timeout: Secs = Secs(Duration::from_secs(1000)), example "\"1000s\"";
        /// Most bytes of the command's output kept for the bounce/log.
        output_limit: Size = Size(4096), example "4096";
    }
}

section! {
    /// What is done to message content: header and body rules (Postfix
    /// regexp: tables) and the after-queue content filter (the seed's
    /// amavis at [127.0.0.1]:10026).
    pub struct Content ("content") {
        /// A file of rules in Postfix regexp: table syntax for the headers
        /// (header_checks). "" = none.
        header_checks: String = String::new(), example "\"/etc/postern/header_checks\"", default "\"\"";
        /// Rules written here, in the same syntax; with header_checks too,
        /// they are consulted after the file's.
        header_rules: String = String::new(), example "\"/^Received:/ IGNORE\"", default "\"\"";
        /// Rules for body lines (body_checks). "" = none.
        body_checks: String = String::new(), example "\"\"";
        /// Rules for the headers of MIME parts (mime_header_checks). "" =
        /// the header rules apply there too.
        mime_header_checks: String = String::new(), example "\"\"";
        /// The after-queue content filter: "[127.0.0.1]:10026"; "" = none.
        filter: String = String::new(), example "\"[127.0.0.1]:10026\"", default "\"\"";
        /// Messages handed to the filter at once.
        filter_concurrency: usize = 4, example "4";
        /// Time the filter may take to answer the end of a message
        /// (smtp_data_done_timeout = 1200 in the seed).
        filter_data_timeout: Secs = Secs(Duration::from_secs(1200)), example "\"1200s\"";
    }
}

section! {
    /// Mailbox quotas (Maildir++ maildirsize, as Dovecot keeps them):
    /// mailbox.quota in bytes, domain.maxquota as the default and cap per
    /// mailbox, and a table like the seed's vquota.
    pub struct QuotaCfg ("quota") {
        /// Over quota: "bounce" (552 5.2.2; the seed's
        /// virtual_overquota_bounce = yes) or "defer" (452 4.2.2).
        over_quota: OverQuota = OverQuota::Bounce, example "\"bounce\"";
        /// A table of limits: lines "address bytes" and "@domain bytes" (a
        /// default per mailbox of that domain). "" = none.
        limits_file: String = String::new(), example "\"/etc/postern/vquota\"", default "\"\"";
        /// PostfixAdmin's quota_multiplier: domain quotas are in MB of this
        /// many bytes.
        multiplier: u64 = 1024000, example "1024000";
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
        /// Free space kept on the queue's filesystem for logs, the user
        /// directory and the queue's own state (queue_minfree): below it,
        /// MAIL is refused with 452 4.3.1 before any data is sent (the
        /// client's SIZE counts), and Maildir deliveries defer when a copy
        /// would leave less than half of it free on the Maildir's
        /// filesystem. 0 turns the reserve off.
        min_free: Option<Size> = None, example "\"20M\"", default "twice smtp.message_size_limit (20 MiB when that is 0)";
        /// A message still undelivered after this long gets one delay notice
        /// (delay_warning_time). 0: never.
        delay_warning: Secs = Secs(Duration::from_secs(4 * 3600)), example "\"4h\"";
        /// Messages being delivered at once, all agents together
        /// (qmgr_message_active_limit). A message waiting for a busy agent
        /// holds its envelope and headers in memory, not a file.
        active_limit: usize = 1000, example "1000";
    }
}

section! {
    /// The control socket: how `postern queue ...` reaches the running
    /// server. A Unix socket that only root, postern's own user and members
    /// of its group may use (mode 0660 in a 0750 directory; the peer's
    /// credentials are checked and logged).
    pub struct Control ("control") {
        /// Path of the socket (systemd: /run/postern/control).
        socket: PathBuf = PathBuf::from("run/control"), example "\"/run/postern/control\"",
            default "\"run/control\" in data_dir";
        /// How long a command on a message waits for a delivery of that
        /// message already in progress before it answers "busy".
        busy_wait: Secs = Secs(Duration::from_secs(30)), example "\"30s\"";
        /// The submission socket `sendmail` uses: any local user may
        /// connect (mode 0666 in a 0755 directory); the server takes the
        /// user's uid from the socket (SO_PEERCRED) and names it in
        /// Received:.
        submit_socket: PathBuf = PathBuf::from("public/submit"), example "\"/var/lib/postern/public/submit\"",
            default "\"public/submit\" in data_dir";
        /// Where `sendmail` leaves mail while the server is not running
        /// (mode 1733: anyone may drop a file, nobody may list or take
        /// another's); the server picks it up at start and every minute.
        maildrop: PathBuf = PathBuf::from("maildrop"), example "\"/var/lib/postern/maildrop\"",
            default "\"maildrop\" in data_dir";
    }
}

section! {
    /// TLS for the listeners (rustls, TLS 1.2 and 1.3 only). Without a
    /// certificate, postern makes a self-signed one for its hostname at first
    /// start (in data_dir/tls/) and logs its fingerprint, so STARTTLS works
    /// out of the box. SIGHUP or `postern reload` picks up new files.
    pub struct Tls ("tls") {
        /// Certificate chain in PEM, the server's own certificate first
        /// (smtpd_tls_cert_file). RSA or ECDSA.
        cert_file: Option<PathBuf> = None, example "\"/etc/postern/tls/fullchain.pem\"", default "unset: self-signed";
        /// Private key of that certificate in PEM (smtpd_tls_key_file).
        key_file: Option<PathBuf> = None, example "\"/etc/postern/tls/privkey.pem\"", default "unset: self-signed";
        /// Time a client has to finish the TLS handshake.
        handshake_timeout: Secs = Secs(Duration::from_secs(30)), example "\"30s\"";
    }
}

section! {
    /// SMTP AUTH (the seed's smtpd_sasl_*): PLAIN and LOGIN, checked against
    /// the user directory or a Dovecot auth socket. Logged-in clients may
    /// relay (permit_sasl_authenticated).
    pub struct Auth ("auth") {
        /// Where passwords are checked: "sqlite" (mailbox.password of the
        /// user directory), "dovecot" (a Dovecot auth socket), or "none"
        /// (AUTH not offered).
        backend: AuthBackend = AuthBackend::Sqlite, example "\"sqlite\"";
        /// Dovecot's auth client socket (smtpd_sasl_path), for backend "dovecot".
        dovecot_socket: Option<PathBuf> = None, example "\"/run/dovecot/auth-client\"", default "unset";
        /// Offer and accept AUTH only inside TLS (smtpd_tls_auth_only).
        tls_only: bool = true, example "true";
        /// Also announce `AUTH=PLAIN LOGIN` for old clients (broken_sasl_auth_clients).
        broken_clients: bool = true, example "true";
        /// Name the logged-in user in the Received: header
        /// (smtpd_sasl_authenticated_header).
        authenticated_header: bool = false, example "true", default "false";
        /// How `postern user add|passwd` stores new passwords:
        /// "SHA512-CRYPT" or "BLF-CRYPT" (bcrypt).
        password_scheme: PasswordScheme = PasswordScheme::Sha512Crypt, example "\"SHA512-CRYPT\"";
        /// Failed logins from one client address, within failure_window,
        /// after which its AUTH commands are refused (454 4.7.0).
        max_failures: u32 = 5, example "5";
        /// How long failed logins count against a client address.
        failure_window: Secs = Secs(Duration::from_secs(15 * 60)), example "\"15m\"";
        /// Delay before answering a failed login; it doubles with each
        /// failure past max_failures (up to a minute).
        failure_delay: Secs = Secs(Duration::from_secs(1)), example "\"1s\"";
        /// Failed logins in one session before it is closed (421 4.7.0).
        session_failures: u32 = 3, example "3";
    }
}

section! {
    /// Sending mail onward over SMTP: by the MX records of the recipient's
    /// domain, or through a smarthost, with per-domain routes below.
    pub struct Relay ("relay") {
        /// "mx": by the recipient domain's MX records (the default); or a
        /// smarthost: "[smtp.isp.test]:587" (brackets: no MX lookup) or
        /// "isp.test" (its MX records) (relayhost).
        default: String = "mx".into(), example "\"mx\"";
        /// Port of MX deliveries (tests use a high loopback port).
        port: u16 = 25, example "25";
        /// How host names are looked up, in this order (smtp_host_lookup):
        /// "dns" (MX, then A/AAAA from the name servers) and "native"
        /// (/etc/hosts and the system resolver); "native" after "dns" is
        /// asked only for names DNS says do not exist.
        host_lookup: Vec<String> = vec!["dns".into()], example "[\"dns\", \"native\"]", default "[\"dns\"]";
        /// Name servers, e.g. "127.0.0.1:5353"; empty: those of /etc/resolv.conf.
        dns_servers: Vec<String> = Vec::new(), example "[]";
        /// Logins for relays, one per line: "[host]:port username:password"
        /// (smtp_sasl_password_maps, the seed's sasl_passwd). Must be mode
        /// 0600 or stricter. "" = none.
        credentials_file: String = String::new(), example "\"/etc/postern/relay-credentials\"", default "\"\"";
        /// STARTTLS: "none", "may" (when offered, any certificate; the
        /// default), "encrypt" (required, any certificate) or "verify"
        /// (required; the certificate must chain to ca_file's roots and name
        /// the host).
        tls: TlsMode = TlsMode::May, example "\"may\"";
        /// Roots for "verify", in PEM. "": the system's bundle
        /// (/etc/ssl/certs/ca-certificates.crt and the like).
        ca_file: String = String::new(), example "\"\"";
        /// Time to wait for a TCP connection (smtp_connect_timeout).
        connect_timeout: Secs = Secs(Duration::from_secs(30)), example "\"30s\"";
        /// Connections to one destination at once (a domain, or a route).
        concurrency_per_destination: usize = 10, example "10";
        /// Outbound connections at once, all destinations together.
        concurrency: usize = 20, example "20";
        /// How long an idle connection waits for the next message to the
        /// same destination before QUIT (smtp_connection_cache_time_limit).
        connection_reuse_time: Secs = Secs(Duration::from_secs(2)), example "\"2s\"";
        /// Name sent with EHLO (smtp_helo_name). Unset: the hostname.
        helo_name: Option<String> = None, example "\"mail.example.test\"", default "the hostname";
        /// Time to wait for each reply to a command (smtp_*_timeout).
        command_timeout: Secs = Secs(Duration::from_secs(300)), example "\"300s\"";
        /// Time to wait for the reply after the message (smtp_data_done_timeout).
        data_done_timeout: Secs = Secs(Duration::from_secs(600)), example "\"600s\"";
        /// Our own public addresses behind NAT (proxy_interfaces): an MX
        /// record pointing at one of them is a mail loop.
        own_addresses: Vec<String> = Vec::new(), example "[\"203.0.113.7\"]", default "[]";
    }
}

section! {
    /// A route for one domain (and, with a leading dot, its subdomains):
    /// a primary relay with fallbacks (the seed's relay-mail01 with
    /// fallback_relay), or mail dropped or refused. A routed domain never
    /// falls back to MX delivery. Repeat the table for more routes.
    pub struct RelayRoute ("[relay.route]") {
        /// "mail01.example.test", or ".example.test" for its subdomains.
        domain: String = String::new(), example "\"mail01.example.test\"", default "none: required";
        /// A name for the domain.transport column to use (`transport =
        /// "relay-mail01"`). Unset: the domain.
        name: Option<String> = None, example "\"relay-mail01\"", default "the domain";
        /// The relay: "[host]:port" (brackets: no MX lookup) or "host".
        primary: String = String::new(), example "\"[mail01p.example.test]:25\"", default "none";
        /// Tried when the primary cannot be reached or answers 4xx to the
        /// greeting; never after a 5xx to MAIL, RCPT or DATA.
        fallback: Vec<String> = Vec::new(), example "[\"[mail01s.example.test]:25\"]", default "[]";
        /// TLS for this route; unset: [relay] tls.
        tls: Option<TlsMode> = None, example "\"may\"", default "[relay] tls";
        /// Instead of a relay: "discard" (accept and drop) or "error: text"
        /// (bounce with that text).
        target: String = String::new(), example "\"\"";
    }
}

impl Listener {
    /// The after-queue content filter of mail received here: its own
    /// `filter` ("" = none), else `[content] filter`; never on a reinject
    /// listener (the filter's way back).
    pub fn content_filter(&self, content: &Content) -> Option<String> {
        match (&self.role, &self.filter) {
            (ListenerRole::Reinject, _) => None,
            (_, Some(f)) => Some(f.clone()),
            (_, None) => Some(content.filter.clone()),
        }
        .filter(|f| !f.trim().is_empty())
    }

    /// Who counts as trusted here: its own `trusted_networks`, else
    /// `[main] trusted_networks`.
    pub fn trusted<'a>(&'a self, main: &'a [Cidr]) -> &'a [Cidr] {
        self.trusted_networks.as_deref().unwrap_or(main)
    }
}
