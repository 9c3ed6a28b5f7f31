//! Routing: from an expanded destination to the route its delivery agent
//! needs. A pure function of (destination, directory answer, config): no
//! lookups, no files, no clock, so it is unit-tested as such.
//!
//! A route says everything its agent needs: a Maildir (path, quota,
//! owner), a pipe command, an SMTP next-hop list with TLS policy,
//! credentials reference and fallbacks, a content filter; or it is a
//! decision that needs no agent: hold, discard, bounce with a text, defer
//! with a reason.
//!
//! Which route: the domain's `transport` column (PostfixAdmin's
//! `domain.transport`, the seed's `transport_maps`) overrides the default
//! for every address of that domain; see [`transport`] for its syntax.
//! Without one, virtual mailboxes go to `[delivery] virtual_transport`
//! (a Maildir under the mailbox base, the seed's virtual_mailbox_base +
//! mailbox.maildir), local users to their Maildir under the local mailbox
//! base, and every other address to the default relay (MX by default).

mod build;
pub mod transport;

pub use build::tls_policy;

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use crate::directory::{Dest, FailReason};
use crate::smtp::reply::Esc;

/// Where one destination goes, with what its agent needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    Maildir(MaildirRoute),
    Pipe(PipeRoute),
    /// Append to a file in mbox format (an aliases-file `/path` target).
    File(FileRoute),
    Smtp(SmtpRoute),
    /// The whole message goes through an after-queue content filter.
    Filter(FilterRoute),
    /// Keep the message on hold (queue/hold/) until released.
    Hold,
    /// Accept and drop, with the reason for the log.
    Discard(String),
    Bounce(Esc, String),
    Defer(Esc, String),
}

/// The delivery agents; each has its own concurrency.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AgentKind {
    Maildir,
    Pipe,
    Smtp,
    Filter,
}

impl Route {
    /// The agent that delivers this route; `None` for decisions the queue
    /// runner carries out itself.
    pub fn agent(&self) -> Option<AgentKind> {
        match self {
            Route::Maildir(_) => Some(AgentKind::Maildir),
            Route::Pipe(_) | Route::File(_) => Some(AgentKind::Pipe),
            Route::Smtp(_) => Some(AgentKind::Smtp),
            Route::Filter(_) => Some(AgentKind::Filter),
            Route::Hold | Route::Discard(_) | Route::Bounce(..) | Route::Defer(..) => None,
        }
    }
}

/// Mailbox limits (Maildir++ `maildirsize` semantics); 0 = no limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Quota {
    pub bytes: u64,
    pub messages: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MaildirRoute {
    /// The Maildir (holding tmp/, new/, cur/).
    pub path: PathBuf,
    pub quota: Quota,
    /// uid/gid files are created as; `None`: postern's own.
    pub owner: Option<(u32, u32)>,
}

/// A command run with the message on stdin (pipe(8), e.g. procmail).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PipeRoute {
    /// The transport's name, for logs and its concurrency.
    pub transport: String,
    /// argv with `${user}`, `${extension}`, ... not yet expanded.
    pub argv: Vec<String>,
    /// uid/gid the command runs as (never root).
    pub user: (u32, u32),
    /// pipe(8) flags such as "R", "DRO".
    pub flags: String,
    pub timeout: Duration,
    /// Most bytes of the command's output kept.
    pub output_limit: usize,
    /// The recipient's Maildir when it has one (`${mailbox}`, quota).
    pub mailbox: Option<MaildirRoute>,
    /// HOME and working directory; `None`: the user's home, else `/`.
    pub home: Option<PathBuf>,
    /// local(8)'s extra environment (SENDER, RECIPIENT, LOCAL, DOMAIN,
    /// EXTENSION, ORIGINAL_RECIPIENT): for mailbox_command and aliases.
    pub local_env: bool,
}

impl PipeRoute {
    /// A local(8)-style command: `/bin/sh -c` for aliases, the argv of
    /// mailbox_command; `From ` line, Return-Path:, X-Original-To: and
    /// Delivered-To: (with its loop check), Postfix's command_time_limit.
    pub fn local(
        transport: &str,
        argv: Vec<String>,
        user: (u32, u32),
        home: Option<PathBuf>,
    ) -> PipeRoute {
        PipeRoute {
            transport: transport.to_string(),
            argv,
            user,
            flags: "FROD>".into(),
            timeout: Duration::from_secs(1000),
            output_limit: 4096,
            mailbox: None,
            home,
            local_env: true,
        }
    }
}

/// An mbox file an alias appends to, as `user`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileRoute {
    pub path: PathBuf,
    pub user: (u32, u32),
}

/// TLS policy of an outbound SMTP connection (smtp_tls_security_level).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TlsPolicy {
    None,
    /// Opportunistic: STARTTLS when offered, any certificate.
    #[default]
    May,
    /// TLS required, certificate not checked.
    Encrypt,
    /// TLS required, certificate must chain to the roots and name the host.
    Verify,
}

/// One next hop of an SMTP route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NextHop {
    /// A host name (or a domain, when `mx`), or an IP address.
    pub host: String,
    pub port: u16,
    /// Look up the host's MX records first (`host` without brackets).
    pub mx: bool,
}

impl std::fmt::Display for NextHop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.mx {
            write!(f, "{}:{}", self.host, self.port)
        } else {
            write!(f, "[{}]:{}", self.host, self.port)
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SmtpRoute {
    /// The route's name for logs, state and per-route limits: "mx", a
    /// `[[relay.route]]` domain, or the transport column's value.
    pub name: String,
    /// Primary next hops, tried in order.
    pub hops: Vec<NextHop>,
    /// Tried when every primary hop failed at the connection level
    /// (refused, timeout, 4xx greeting, dropped); never after a 5xx.
    pub fallbacks: Vec<NextHop>,
    pub tls: TlsPolicy,
    /// Key of the credentials entry (`[host]:port` as in sasl_passwd).
    pub credentials: Option<String>,
}

impl SmtpRoute {
    /// Delivery by the MX records of the recipient's domain.
    pub fn mx(domain: &str, port: u16, tls: TlsPolicy) -> SmtpRoute {
        SmtpRoute {
            name: "mx".into(),
            hops: vec![NextHop {
                host: domain.to_ascii_lowercase(),
                port,
                mx: true,
            }],
            fallbacks: Vec::new(),
            tls,
            credentials: None,
        }
    }
}

/// An after-queue content filter (the seed's amavis:[127.0.0.1]:10026).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FilterRoute {
    pub hop: NextHop,
    /// End-of-data timeout (smtp_data_done_timeout = 1200 in the seed).
    pub data_timeout: Duration,
}

/// How remote destinations leave by default.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DefaultRelay {
    /// By the recipient domain's MX records, on this port.
    Mx { port: u16, tls: TlsPolicy },
    /// Through this route (a smarthost).
    Route(SmtpRoute),
}

/// What routing needs from the configuration.
#[derive(Clone, Debug)]
pub struct Router {
    pub mailbox_base: PathBuf,
    pub local_base: PathBuf,
    /// Owner of delivered files (the seed's virtual_uid_maps/gid_maps).
    pub owner: Option<(u32, u32)>,
    /// `[delivery] virtual_transport`: "maildir", or a named transport.
    pub virtual_transport: String,
    pub default_relay: DefaultRelay,
    /// Transports by name (pipes, relay routes), for `virtual_transport`
    /// and the `transport` column.
    pub named: HashMap<String, Route>,
    /// `[[relay.route]]` by domain: "example.test" exactly, or
    /// ".example.test" for its subdomains.
    pub domains: Vec<(String, Route)>,
    /// `[delivery] mailbox_transports`: address → transport.
    pub mailbox_transports: HashMap<String, String>,
    /// `[quota] limits_file` (the seed's vquota).
    pub quota_limits: crate::config::hooks::QuotaLimits,
    /// PostfixAdmin's quota_multiplier (bytes per "MB" of maxquota).
    pub quota_multiplier: u64,
    /// Local users' Maildir below their directory (home_mailbox).
    pub home_mailbox: String,
    /// Local users' mail goes through this command (mailbox_command).
    pub mailbox_command: Vec<String>,
    /// Who mailbox_command runs as.
    pub command_user: (u32, u32),
    /// Who commands and files of a root-owned aliases file run as.
    pub default_privs: (u32, u32),
}

impl Router {
    /// A router with only the built-in transports: Maildirs under the two
    /// bases, remote mail by MX on port 25.
    pub fn new(mailbox_base: PathBuf, local_base: PathBuf, owner: Option<(u32, u32)>) -> Router {
        Router {
            mailbox_base,
            local_base,
            owner,
            virtual_transport: "maildir".into(),
            default_relay: DefaultRelay::Mx {
                port: 25,
                tls: TlsPolicy::May,
            },
            named: HashMap::new(),
            domains: Vec::new(),
            mailbox_transports: HashMap::new(),
            quota_limits: Default::default(),
            quota_multiplier: 1_024_000,
            home_mailbox: String::new(),
            mailbox_command: Vec::new(),
            command_user: (65534, 65534),
            default_privs: (65534, 65534),
        }
    }

    /// A mailbox's limit in bytes (0: none): mailbox.quota, capped by the
    /// domain's maxquota; without one, the quota table's entry for the
    /// address or its @domain; else the domain's maxquota.
    pub fn quota_bytes(&self, username: &str, quota: i64, maxquota_mb: i64) -> u64 {
        let max = u64::try_from(maxquota_mb)
            .unwrap_or(0)
            .saturating_mul(self.quota_multiplier);
        let own = u64::try_from(quota).unwrap_or(0);
        match (own, max) {
            (0, max) => self.quota_limits.for_address(username).unwrap_or(max),
            (own, 0) => own,
            (own, max) => own.min(max),
        }
    }

    /// The route of `domain` in `[[relay.route]]`: an exact entry, else
    /// the longest ".suffix" entry that matches.
    pub fn domain_route(&self, domain: &str) -> Option<&Route> {
        let d = domain.to_ascii_lowercase();
        if let Some((_, r)) = self.domains.iter().find(|(k, _)| *k == d) {
            return Some(r);
        }
        self.domains
            .iter()
            .filter(|(k, _)| k.starts_with('.') && d.ends_with(k.as_str()))
            .max_by_key(|(k, _)| k.len())
            .map(|(_, r)| r)
    }

    pub fn route(&self, dest: &Dest) -> Route {
        match dest {
            Dest::Mailbox {
                username,
                maildir,
                quota,
                maxquota_mb,
                transport,
            } => {
                let Some(rel) = safe_relative(maildir) else {
                    return Route::Defer(
                        Esc(4, 3, 5),
                        format!("mailbox {username} has an unsafe maildir path {maildir:?} in the directory"),
                    );
                };
                let mailbox = MaildirRoute {
                    path: self.mailbox_base.join(rel),
                    quota: Quota {
                        bytes: self.quota_bytes(username, *quota, *maxquota_mb),
                        messages: 0,
                    },
                    owner: self.owner,
                };
                let per_mailbox = self.mailbox_transports.get(&username.to_ascii_lowercase());
                // The column's "" and "virtual" mean virtual_transport.
                let column = (transport::parse(transport) != transport::Spec::Default)
                    .then_some(transport.as_str());
                let how = per_mailbox
                    .map(String::as_str)
                    .or(column)
                    .unwrap_or(self.virtual_transport.as_str());
                self.local_route(how, mailbox, username)
            }
            Dest::Local { user, .. } => {
                let home = self.local_base.join(user);
                if !self.mailbox_command.is_empty() {
                    return Route::Pipe(PipeRoute::local(
                        crate::deliver::pipe::LOCAL_COMMAND,
                        self.mailbox_command.clone(),
                        self.command_user,
                        Some(home),
                    ));
                }
                let path = match safe_relative(&self.home_mailbox) {
                    Some(rel) => home.join(rel),
                    None => home,
                };
                Route::Maildir(MaildirRoute {
                    path,
                    quota: Quota::default(),
                    owner: self.owner,
                })
            }
            Dest::Command { command, owner, .. } => Route::Pipe(PipeRoute::local(
                crate::deliver::pipe::ALIAS_COMMAND,
                vec!["/bin/sh".into(), "-c".into(), command.clone()],
                self.privileges(*owner),
                None,
            )),
            Dest::File { path, owner, .. } => {
                let user = self.privileges(*owner);
                if path.as_os_str().as_encoded_bytes().ends_with(b"/") {
                    Route::Maildir(MaildirRoute {
                        path: path.clone(),
                        quota: Quota::default(),
                        owner: Some(user),
                    })
                } else {
                    Route::File(FileRoute {
                        path: path.clone(),
                        user,
                    })
                }
            }
            Dest::Remote { address, transport } => {
                match transport::parse(transport) {
                    // A Maildir transport names no place for a remote
                    // address (a backup-MX domain marked "virtual"): relay.
                    transport::Spec::Default | transport::Spec::Maildir => {
                        match self.domain_route(&address.domain) {
                            Some(r) => r.clone(),
                            None => self.relay(&address.domain),
                        }
                    }
                    spec => self.spec_route(spec, None, &address.domain),
                }
            }
            Dest::Fail {
                why: FailReason::Loop,
                ..
            } => Route::Bounce(Esc(5, 4, 6), "mail forwarding loop".into()),
            Dest::Fail {
                why: FailReason::Unknown,
                ..
            } => Route::Bounce(Esc(5, 1, 1), "user unknown".into()),
        }
    }

    /// A virtual mailbox's route under transport `how`.
    fn local_route(&self, how: &str, mailbox: MaildirRoute, username: &str) -> Route {
        let domain = username.rsplit_once('@').map(|(_, d)| d).unwrap_or("");
        match transport::parse(how) {
            transport::Spec::Default | transport::Spec::Maildir => Route::Maildir(mailbox),
            spec => self.spec_route(spec, Some(mailbox), domain),
        }
    }

    fn spec_route(
        &self,
        spec: transport::Spec,
        mailbox: Option<MaildirRoute>,
        domain: &str,
    ) -> Route {
        use transport::Spec;
        match spec {
            Spec::Default | Spec::Maildir => match mailbox {
                Some(m) => Route::Maildir(m),
                None => self.relay(domain),
            },
            Spec::Relay(None) => self.relay(domain),
            Spec::Relay(Some(hop)) => Route::Smtp(SmtpRoute {
                name: hop.to_string(),
                hops: vec![hop],
                fallbacks: Vec::new(),
                tls: TlsPolicy::May,
                credentials: None,
            }),
            Spec::Error(text) => Route::Bounce(Esc(5, 0, 0), text),
            Spec::Retry(text) => Route::Defer(Esc(4, 0, 0), text),
            Spec::Discard(text) => Route::Discard(text),
            Spec::Named(name) => match self.named_route(&name) {
                Some(Route::Pipe(p)) => Route::Pipe(PipeRoute {
                    mailbox,
                    ..p.clone()
                }),
                Some(r) => r.clone(),
                // Postfix defers mail for an unknown transport too: the
                // cause is configuration, which can be fixed.
                None => Route::Defer(
                    Esc(4, 3, 5),
                    format!("mail transport {name:?} is not configured"),
                ),
            },
            Spec::Bad(text) => Route::Defer(Esc(4, 3, 5), text),
        }
    }

    /// Whom a command or file of an aliases file owned by `owner` runs as:
    /// that owner, or default_privs when it is root (local(8)).
    fn privileges(&self, owner: u32) -> (u32, u32) {
        if owner == 0 {
            return self.default_privs;
        }
        let gid = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(owner))
            .ok()
            .flatten()
            .map(|u| u.gid.as_raw())
            .unwrap_or(owner);
        (owner, gid)
    }

    /// A transport by name: a pipe or route of that name, else the
    /// `[[relay.route]]` whose domain it is (the transport column may name
    /// a route either way).
    fn named_route(&self, name: &str) -> Option<&Route> {
        self.named
            .get(name)
            .or_else(|| self.domains.iter().find(|(d, _)| d == name).map(|(_, r)| r))
    }

    /// The default relay toward `domain`.
    pub fn relay(&self, domain: &str) -> Route {
        match &self.default_relay {
            DefaultRelay::Mx { port, tls } => Route::Smtp(SmtpRoute::mx(domain, *port, *tls)),
            DefaultRelay::Route(r) => Route::Smtp(r.clone()),
        }
    }
}

/// A relative path with no `..`, no root and no odd components.
fn safe_relative(p: &str) -> Option<&Path> {
    let path = Path::new(p);
    if p.is_empty() || p.contains('\0') {
        return None;
    }
    path.components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
        .then_some(path)
}

#[cfg(test)]
mod tests;
