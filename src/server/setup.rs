//! The start-up steps of `postern serve`, each a function with one job:
//! storage and ownership, the spool, the directory, the listeners, the
//! delivery agents and the runner, TLS, the auth backend. Each failure is a
//! [`Fatal`] with its sysexits code and a message naming what to fix.

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::sync::Arc;

use super::{Fatal, ListenerCtx};
use crate::auth::backend::Backend;
use crate::clock::now_secs;
use crate::config::{AuthBackend, Config, ListenerMode};
use crate::deliver::maildir::MaildirAgent;
use crate::deliver::pipe::{PipeAgent, ALIAS_COMMAND, LOCAL_COMMAND};
use crate::deliver::registry::Registry;
use crate::deliver::{Agent, AgentKind};
use crate::directory::Directory;
use crate::log;
use crate::queue::runner::Settings;
use crate::queue::schedule::Backoff;
use crate::queue::spool::{Recovery, Spool};
use crate::route::Router;
use crate::sysexits::{EX_CANTCREAT, EX_CONFIG, EX_TEMPFAIL, EX_UNAVAILABLE};

/// A listener bound and ready to accept.
pub struct Bound {
    pub configured: SocketAddr,
    pub local: SocketAddr,
    pub mode: ListenerMode,
    pub socket: smol::net::TcpListener,
    pub ctx: Arc<ListenerCtx>,
}

/// Creates the data directory and the mailbox bases; returns the owner of
/// delivered files, after checking we can act as it.
pub fn storage(cfg: &Config) -> Result<Option<(u32, u32)>, Fatal> {
    let data = cfg.data_dir();
    crate::fsutil::ensure_dir(data, 0o755).map_err(|e| {
        Fatal(
            EX_CANTCREAT,
            format!("cannot create data_dir {}: {e}", data.display()),
        )
    })?;
    let owner = delivery_owner(cfg)?;
    prepare_base(&cfg.mailbox_base(), owner)?;
    prepare_base(&cfg.local_mailbox_base(), owner)?;
    Ok(owner)
}

/// Who owns delivered files, after checking we can act as them.
fn delivery_owner(cfg: &Config) -> Result<Option<(u32, u32)>, Fatal> {
    let (Some(uid), Some(gid)) = (cfg.delivery.uid, cfg.delivery.gid) else {
        return Ok(None);
    };
    let euid = nix::unistd::geteuid().as_raw();
    let egid = nix::unistd::getegid().as_raw();
    if uid < cfg.delivery.minimum_uid {
        return Err(Fatal(
            EX_CONFIG,
            format!(
                "delivery.uid {uid} is below delivery.minimum_uid {}",
                cfg.delivery.minimum_uid
            ),
        ));
    }
    if (uid, gid) == (euid, egid) {
        return Ok(None);
    }
    if !crate::privs::can_switch_users() {
        return Err(Fatal(
            EX_CONFIG,
            format!("{}: delivery.uid: postern runs as uid {euid} and cannot deliver as uid {uid} gid {gid}; run it as root (with `user` it keeps the right to), or as that user", cfg.source),
        ));
    }
    Ok(Some((uid, gid)))
}

/// Creates a mailbox base directory, owned by the delivery user, and
/// checks that user can write in it.
fn prepare_base(dir: &Path, owner: Option<(u32, u32)>) -> Result<(), Fatal> {
    let created = crate::fsutil::ensure_dir(dir, 0o755).map_err(|e| {
        Fatal(
            EX_CANTCREAT,
            format!("cannot create {}: {e}", dir.display()),
        )
    })?;
    if let (true, Some((uid, gid))) = (created, owner) {
        nix::unistd::chown(
            dir,
            Some(nix::unistd::Uid::from_raw(uid)),
            Some(nix::unistd::Gid::from_raw(gid)),
        )
        .map_err(|e| Fatal(EX_CANTCREAT, format!("cannot chown {}: {e}", dir.display())))?;
    }
    crate::deliver::maildir::check_writable(owner, dir).map_err(|e| {
        let who = match owner {
            Some((uid, gid)) => format!("uid {uid} gid {gid}"),
            None => "postern".to_string(),
        };
        Fatal(
            EX_CANTCREAT,
            format!(
                "{}: delivery as {who} cannot create files here: {e}; every directory above it must be searchable by that user",
                dir.display()
            ),
        )
    })
}

/// Opens and locks the queue.
pub fn spool(cfg: &Config) -> Result<Arc<Spool>, Fatal> {
    Spool::open(&cfg.queue_dir()).map(Arc::new).map_err(|e| {
        let code = if e.kind() == std::io::ErrorKind::WouldBlock {
            EX_TEMPFAIL
        } else {
            EX_CANTCREAT
        };
        Fatal(code, format!("queue {}: {e}", cfg.queue_dir().display()))
    })
}

/// Opens the user directory; a damaged one is a warning, not a stop.
pub fn directory(cfg: &Config) -> Arc<Directory> {
    let (directory, warning) = Directory::open(cfg);
    if let Some(w) = warning {
        log::warning(&format!(
            "user directory unusable, lookups will answer 451 until it is fixed: {w}"
        ));
    }
    Arc::new(directory)
}

/// Binds every listener (port 0: the kernel picks).
/// `inherited`: sockets systemd passed; a listener whose address is among
/// them takes its socket instead of binding.
pub fn listeners(
    cfg: &Config,
    inherited: &mut Vec<(SocketAddr, std::net::TcpListener)>,
) -> Result<Vec<Bound>, Fatal> {
    let mut out = Vec::new();
    for l in &cfg.listeners {
        let addr = l.address.expect("checked by config");
        let (local, socket) = match super::activation::take_for(inherited, addr) {
            Some((local, sock)) => {
                let sock = smol::Async::new(sock)
                    .map_err(|e| Fatal(EX_UNAVAILABLE, format!("{addr} (from systemd): {e}")))?;
                log::started(&format!("socket activation: {addr} taken from systemd"));
                (local, smol::net::TcpListener::from(sock))
            }
            None => bind(addr)?,
        };
        out.push(Bound {
            configured: addr,
            local,
            mode: l.mode,
            socket,
            ctx: listener_ctx(cfg, l),
        });
    }
    Ok(out)
}

/// Started as root with `[main] user`: becomes that user. Then refuses a
/// configuration, data directory or queue that others may write to.
pub fn least_privilege(cfg: &Config) -> Result<(), Fatal> {
    let was_root = nix::unistd::geteuid().is_root();
    let needs_switch = |uid: u32| {
        let other = |name: &str| {
            crate::config::hooks::resolve_user(name)
                .map(|(u, _)| u != uid)
                .unwrap_or(true)
        };
        cfg.delivery.uid.is_some_and(|u| u != uid)
            || cfg.transports.iter().any(|t| other(&t.user))
            || !cfg.delivery.mailbox_command.is_empty()
            || cfg.aliases.runs_programs()
    };
    match crate::privs::drop_to(cfg.main.user.as_deref(), needs_switch) {
        Ok(Some((uid, gid, switch))) => log::started(&format!(
            "running as {} (uid {uid}, gid {gid}), keeping only {}",
            cfg.main.user.as_deref().unwrap_or("?"),
            if switch {
                "CAP_SETUID and CAP_SETGID (deliveries and commands as other users, never root) and CAP_NET_BIND_SERVICE"
            } else {
                "CAP_NET_BIND_SERVICE"
            }
        )),
        Ok(None) if was_root => log::warning(&format!(
            "{}: running as root; set `user` (e.g. \"postern\") to drop root's rights after binding the ports",
            cfg.source
        )),
        Ok(None) => {}
        Err(e) => return Err(Fatal(crate::sysexits::EX_NOPERM, format!("{}: user: {e}", cfg.source))),
    }
    let mut checks = vec![
        (cfg.data_dir().to_path_buf(), "data_dir"),
        (cfg.queue_dir(), "queue directory"),
    ];
    if cfg.source != crate::config::EMBEDDED_NAME {
        checks.push((std::path::PathBuf::from(&cfg.source), "configuration file"));
    }
    for (path, what) in checks {
        crate::privs::check_not_writable_by_others(&path, what).map_err(|e| Fatal(EX_CONFIG, e))?;
    }
    Ok(())
}

/// One listening socket.
pub fn bind(addr: SocketAddr) -> Result<(SocketAddr, smol::net::TcpListener), Fatal> {
    let sock = TcpListener::bind(addr)
        .map_err(|e| Fatal(EX_UNAVAILABLE, format!("cannot listen on {addr}: {e}")))?;
    let local = sock
        .local_addr()
        .map_err(|e| Fatal(EX_UNAVAILABLE, format!("{addr}: {e}")))?;
    let sock = smol::Async::new(sock).map_err(|e| Fatal(EX_UNAVAILABLE, format!("{addr}: {e}")))?;
    Ok((local, smol::net::TcpListener::from(sock)))
}

/// What a listener's sessions are configured with.
pub fn listener_ctx(cfg: &Config, l: &crate::config::Listener) -> Arc<ListenerCtx> {
    Arc::new(ListenerCtx {
        session_cfg: Arc::new(cfg.session_config(l)),
        implicit_tls: l.mode == ListenerMode::ImplicitTls,
        reinject: l.role == crate::config::ListenerRole::Reinject,
        filter: l.content_filter(&cfg.content),
        trusted: l.trusted_networks.clone(),
        local: false,
    })
}

/// Routing as configured (see route/build.rs: the same router
/// `postern explain` reads out).
pub fn router(cfg: &Config, owner: Option<(u32, u32)>) -> Result<Router, Fatal> {
    Router::from_config(cfg, owner).map_err(|e| Fatal(EX_CONFIG, e))
}

/// The delivery agents, each with its concurrency.
pub fn registry(
    cfg: &Config,
    maildir: Arc<MaildirAgent>,
    ex: &Arc<smol::Executor<'static>>,
    bound: &[SocketAddr],
) -> Result<Registry, Fatal> {
    let mut r = Registry::new();
    r.add(
        AgentKind::Maildir,
        Agent::Blocking(maildir.clone()),
        cfg.delivery.concurrency,
    );
    let smtp = Arc::new(smtp_agent(cfg, bound)?);
    let reuse = cfg
        .relay
        .connection_reuse_time
        .0
        .max(std::time::Duration::from_millis(100));
    expire_idle(ex, &smtp, reuse);
    r.add(AgentKind::Smtp, Agent::Async(smtp), cfg.relay.concurrency);
    // Each pipe transport has its own limit inside the agent; the agent's
    // threads cover them all, plus local commands and files.
    let limits: Vec<(String, usize)> = cfg
        .transports
        .iter()
        .map(|t| (t.name.clone(), t.concurrency))
        .chain([
            (LOCAL_COMMAND.to_string(), cfg.delivery.concurrency),
            (ALIAS_COMMAND.to_string(), cfg.delivery.concurrency),
        ])
        .collect();
    let threads = limits.iter().map(|(_, n)| *n).sum::<usize>().max(1);
    let pipe = PipeAgent::new(maildir, &cfg.main.recipient_delimiter, &limits);
    r.add(AgentKind::Pipe, Agent::Blocking(Arc::new(pipe)), threads);
    // The content filter: its own SMTP client, so a slow filter never
    // takes connections from mail going out, with XFORWARD and the long
    // end-of-data wait of the seed (smtp_data_done_timeout = 1200).
    let mut filter = smtp_settings(cfg, bound)?;
    filter.0.concurrency = cfg.content.filter_concurrency;
    filter.0.per_destination = cfg.content.filter_concurrency;
    filter.0.data_done_timeout = cfg.content.filter_data_timeout.0;
    filter.0.xforward = true;
    // Mail is DKIM-signed once, on its way out, after the filter.
    filter.0.dkim = None;
    let filter = Arc::new(crate::deliver::smtp::SmtpAgent::new(filter.0, filter.1));
    expire_idle(ex, &filter, reuse);
    r.add(
        AgentKind::Filter,
        Agent::Async(filter),
        cfg.content.filter_concurrency,
    );
    Ok(r)
}

/// Closes an agent's idle connections every `every`, for as long as the
/// agent is in use (a reload replaces it: the task then ends).
fn expire_idle(
    ex: &Arc<smol::Executor<'static>>,
    agent: &Arc<crate::deliver::smtp::SmtpAgent>,
    every: std::time::Duration,
) {
    let weak = Arc::downgrade(agent);
    ex.spawn(async move {
        loop {
            smol::Timer::after(every).await;
            let Some(agent) = weak.upgrade() else {
                return;
            };
            agent.expire_idle().await;
        }
    })
    .detach();
}

/// The Maildir agent, shared by the runner and the one-write path.
pub fn maildir_agent(cfg: &Config) -> Arc<MaildirAgent> {
    Arc::new(MaildirAgent::for_config(cfg))
}

/// The runner's settings.
pub fn settings(cfg: &Config) -> Settings {
    Settings {
        backoff: Backoff {
            min: cfg.queue.min_backoff.0,
            max: cfg.queue.max_backoff.0,
            lifetime: cfg.queue.max_lifetime.0,
        },
        hostname: cfg.hostname().to_string(),
        max_received: cfg.delivery.max_received_headers,
        active_limit: cfg.queue.active_limit,
        delay_warning: cfg.queue.delay_warning.0,
        filter_data_timeout: cfg.content.filter_data_timeout.0,
    }
}

/// Recovers the queue after a stop or a crash, with a log line.
pub fn recover(spool: &Spool) -> Result<Recovery, Fatal> {
    let recovery = spool
        .recover(now_secs())
        .map_err(|e| Fatal(EX_CANTCREAT, format!("queue recovery: {e}")))?;
    for (id, problem) in &recovery.quarantined {
        log::queue_problem(
            id,
            &format!("damaged queue file moved to corrupt/: {problem}"),
        );
    }
    if recovery.removed_incoming > 0 || !recovery.queued.is_empty() || recovery.held > 0 {
        log::started(&format!(
            "queue recovered: {} queued, {} on hold, {} half-received removed",
            recovery.queued.len(),
            recovery.held,
            recovery.removed_incoming
        ));
    }
    Ok(recovery)
}

/// The certificate from the config, or the self-signed one of a fresh box.
pub fn tls(cfg: &Config) -> Result<Option<Arc<crate::tls::Reloadable>>, Fatal> {
    if !cfg.needs_tls() {
        return Ok(None);
    }
    let now = now_secs();
    let (cert, key) = match cfg.tls_files() {
        Some(files) => files,
        None => {
            let dir = cfg.data_dir().join("tls");
            let (cert, key, created) =
                crate::tls::self_signed(&dir, cfg.hostname(), now).map_err(|e| {
                    Fatal(
                        EX_CANTCREAT,
                        format!("cannot make a self-signed certificate: {e}"),
                    )
                })?;
            if created {
                log::started(&format!(
                    "created a self-signed certificate for {} in {}",
                    cfg.hostname(),
                    dir.display()
                ));
            }
            (cert, key)
        }
    };
    let (config, info) = crate::tls::load(&cert, &key, now)
        .map_err(|e| Fatal(EX_CONFIG, format!("{}: tls: {e}", cfg.source)))?;
    log::started(&format!(
        "TLS certificate {} (SHA-256 {}), valid until {}",
        cert.display(),
        info.fingerprint,
        crate::timefmt::rfc5322(info.not_after)
    ));
    crate::status::board().set_certificate(Some((cert.display().to_string(), info.not_after)));
    Ok(Some(Arc::new(crate::tls::Reloadable::new(config))))
}

/// Where logins are checked.
pub fn auth(cfg: &Config, directory: &Arc<Directory>) -> Option<Arc<Backend>> {
    match cfg.auth.backend {
        AuthBackend::Sqlite => Some(Arc::new(Backend::Directory(directory.clone()))),
        AuthBackend::Dovecot => Some(Arc::new(Backend::Dovecot(
            cfg.dovecot_socket().expect("checked by config"),
        ))),
        AuthBackend::None => None,
    }
}

/// The outbound SMTP agent: resolver, TLS roots, our own addresses.
fn smtp_agent(
    cfg: &Config,
    bound: &[SocketAddr],
) -> Result<crate::deliver::smtp::SmtpAgent, Fatal> {
    let (settings, resolver) = smtp_settings(cfg, bound)?;
    Ok(crate::deliver::smtp::SmtpAgent::new(settings, resolver))
}

fn smtp_settings(
    cfg: &Config,
    bound: &[SocketAddr],
) -> Result<(crate::deliver::smtp::Settings, crate::dns::Resolver), Fatal> {
    use crate::deliver::smtp::Settings;
    let rel = &cfg.relay;
    let (resolver_cfg, warnings) = crate::dns::ResolverConfig::load(&rel.dns_servers)
        .map_err(|e| Fatal(EX_CONFIG, format!("{}: relay.dns_servers: {e}", cfg.source)))?;
    for w in warnings {
        log::warning(&format!("resolver: {w}"));
    }
    let roots = outbound_roots(cfg)?;
    let host_lookup = crate::dns::hosts::HostLookup::parse_list(&rel.host_lookup)
        .map_err(|e| Fatal(EX_CONFIG, e))?;
    Ok((
        Settings {
            helo_name: rel
                .helo_name
                .clone()
                .unwrap_or_else(|| cfg.hostname().to_string()),
            host_lookup,
            connect_timeout: rel.connect_timeout.0,
            command_timeout: rel.command_timeout.0,
            data_done_timeout: rel.data_done_timeout.0,
            reuse: rel.connection_reuse_time.0,
            concurrency: rel.concurrency,
            per_destination: rel.concurrency_per_destination,
            roots,
            credentials: cfg.credentials.clone(),
            me: me(cfg, bound),
            xforward: false,
            dkim: cfg.dkim.signer.clone(),
        },
        crate::dns::Resolver::new(resolver_cfg),
    ))
}

/// Roots for `tls = verify`: `[relay] ca_file`, else the system's bundle
/// where there is one. None when nothing verifies.
fn outbound_roots(cfg: &Config) -> Result<Option<Arc<rustls::RootCertStore>>, Fatal> {
    use crate::config::TlsMode;
    let verifies = cfg.relay.tls == TlsMode::Verify
        || cfg
            .relay_routes
            .iter()
            .any(|r| r.tls == Some(TlsMode::Verify));
    if !cfg.relay.ca_file.is_empty() {
        let p = cfg.resolve(Path::new(&cfg.relay.ca_file));
        return crate::outbound::tls::roots_from_pem_file(&p)
            .map(|r| Some(Arc::new(r)))
            .map_err(|e| Fatal(EX_CONFIG, format!("{}: relay.ca_file: {e}", cfg.source)));
    }
    if !verifies {
        return Ok(None);
    }
    for p in SYSTEM_ROOTS {
        if let Ok(r) = crate::outbound::tls::roots_from_pem_file(Path::new(p)) {
            return Ok(Some(Arc::new(r)));
        }
    }
    Err(Fatal(
        EX_CONFIG,
        format!(
            "{}: relay: tls = \"verify\" needs roots: set relay.ca_file (no system bundle in {})",
            cfg.source,
            SYSTEM_ROOTS.join(", ")
        ),
    ))
}

/// Where distributions keep their CA bundle.
const SYSTEM_ROOTS: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

/// Who we are, to find ourselves among MX hosts (deliver/smtp/hosts.rs).
fn me(cfg: &Config, bound: &[SocketAddr]) -> crate::dns::mx::Me {
    crate::deliver::smtp::hosts::me(cfg, bound)
}
