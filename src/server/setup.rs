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
use crate::deliver::registry::Registry;
use crate::deliver::{Agent, AgentKind, Unavailable};
use crate::directory::Directory;
use crate::log;
use crate::queue::runner::{Channels, Runner, Settings};
use crate::queue::schedule::Backoff;
use crate::queue::spool::{Recovery, Spool};
use crate::route::{Route, Router};
use crate::smtp::reply::Esc;
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
    if euid != 0 {
        return Err(Fatal(
            EX_CONFIG,
            format!("{}: delivery.uid: postern runs as uid {euid} and cannot deliver as uid {uid} gid {gid}; run it as root or as that user", cfg.source),
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
pub fn listeners(cfg: &Config) -> Result<Vec<Bound>, Fatal> {
    let mut out = Vec::new();
    for l in &cfg.listeners {
        let addr = l.address.expect("checked by config");
        let sock = TcpListener::bind(addr)
            .map_err(|e| Fatal(EX_UNAVAILABLE, format!("cannot listen on {addr}: {e}")))?;
        let local = sock
            .local_addr()
            .map_err(|e| Fatal(EX_UNAVAILABLE, format!("{addr}: {e}")))?;
        let sock =
            smol::Async::new(sock).map_err(|e| Fatal(EX_UNAVAILABLE, format!("{addr}: {e}")))?;
        out.push(Bound {
            configured: addr,
            local,
            mode: l.mode,
            socket: smol::net::TcpListener::from(sock),
            ctx: Arc::new(ListenerCtx {
                session_cfg: Arc::new(cfg.session_config(l)),
                implicit_tls: l.mode == ListenerMode::ImplicitTls,
            }),
        });
    }
    Ok(out)
}

/// Routing as configured: the default relay, `[[relay.route]]` by domain
/// and by name.
pub fn router(cfg: &Config, owner: Option<(u32, u32)>) -> Router {
    use crate::route::transport::next_hop;
    use crate::route::{DefaultRelay, SmtpRoute};
    let mut r = Router::new(cfg.mailbox_base(), cfg.local_mailbox_base(), owner);
    let tls = tls_policy(cfg.relay.tls);
    let smtp = |name: String, hops: Vec<crate::route::NextHop>, fallbacks, tls| {
        let credentials = hops.first().and_then(|h| cfg.credentials.key_for(h));
        SmtpRoute {
            name,
            hops,
            fallbacks,
            tls,
            credentials,
        }
    };
    r.default_relay = match cfg.relay.default.as_str() {
        "mx" => DefaultRelay::Mx {
            port: cfg.relay.port,
            tls,
        },
        hop => {
            let h = next_hop(hop, 25).expect("checked by config");
            DefaultRelay::Route(smtp(hop.to_string(), vec![h], Vec::new(), tls))
        }
    };
    for rr in &cfg.relay_routes {
        let target = rr.target.trim();
        let route = if target == "discard" {
            Route::Discard(format!("route for {}", rr.domain))
        } else if let Some(text) = target.strip_prefix("error:") {
            Route::Bounce(crate::smtp::reply::Esc(5, 0, 0), text.trim().to_string())
        } else {
            let hop = next_hop(&rr.primary, 25).expect("checked by config");
            let fallbacks = rr
                .fallback
                .iter()
                .map(|f| next_hop(f, 25).expect("checked by config"))
                .collect();
            let name = rr.name.clone().unwrap_or_else(|| rr.domain.clone());
            Route::Smtp(smtp(name, vec![hop], fallbacks, rr.tls.map(tls_policy).unwrap_or(tls)))
        };
        r.domains.push((rr.domain.to_ascii_lowercase(), route.clone()));
        let name = rr.name.clone().unwrap_or_else(|| rr.domain.clone());
        r.named.insert(name.to_ascii_lowercase(), route);
    }
    r
}

pub fn tls_policy(m: crate::config::TlsMode) -> crate::route::TlsPolicy {
    use crate::config::TlsMode;
    use crate::route::TlsPolicy;
    match m {
        TlsMode::None => TlsPolicy::None,
        TlsMode::May => TlsPolicy::May,
        TlsMode::Encrypt => TlsPolicy::Encrypt,
        TlsMode::Verify => TlsPolicy::Verify,
    }
}

/// The delivery agents, each with its concurrency.
pub fn registry(
    cfg: &Config,
    maildir: Arc<MaildirAgent>,
    ex: &Arc<smol::Executor<'static>>,
    bound: &[Bound],
) -> Result<Registry, Fatal> {
    let mut r = Registry::new();
    r.add(
        AgentKind::Maildir,
        Agent::Blocking(maildir),
        cfg.delivery.concurrency,
    );
    let smtp = Arc::new(smtp_agent(cfg, bound)?);
    let reuse = cfg
        .relay
        .connection_reuse_time
        .0
        .max(std::time::Duration::from_millis(100));
    let expiring = smtp.clone();
    ex.spawn(async move {
        loop {
            smol::Timer::after(reuse).await;
            expiring.expire_idle().await;
        }
    })
    .detach();
    r.add(AgentKind::Smtp, Agent::Async(smtp), cfg.relay.concurrency);
    let unavailable = |name, why, esc| Agent::Async(Arc::new(Unavailable { name, why, esc }));
    r.add(
        AgentKind::Pipe,
        unavailable(
            "pipe",
            |_| "pipe transports are not available".into(),
            Esc(4, 3, 5),
        ),
        1,
    );
    r.add(
        AgentKind::Filter,
        unavailable(
            "filter",
            |_| "content filters are not available".into(),
            Esc(4, 3, 5),
        ),
        1,
    );
    Ok(r)
}

/// The Maildir agent, shared by the runner and the one-write path.
pub fn maildir_agent(cfg: &Config) -> Arc<MaildirAgent> {
    Arc::new(MaildirAgent::new(
        cfg.hostname(),
        vec![cfg.mailbox_base(), cfg.local_mailbox_base()],
        cfg.min_free(),
    ))
}

/// The queue runner (not yet started).
pub fn runner(
    cfg: &Config,
    spool: Arc<Spool>,
    directory: Arc<Directory>,
    router: Router,
    registry: Registry,
) -> (Arc<Runner>, Channels) {
    let settings = Settings {
        backoff: Backoff {
            min: cfg.queue.min_backoff.0,
            max: cfg.queue.max_backoff.0,
            lifetime: cfg.queue.max_lifetime.0,
        },
        hostname: cfg.hostname().to_string(),
        max_received: cfg.delivery.max_received_headers,
        active_limit: cfg.queue.active_limit,
        delay_warning: cfg.queue.delay_warning.0,
    };
    let (runner, channels) = Runner::new(spool, directory, router, registry, settings);
    (Arc::new(runner), channels)
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
fn smtp_agent(cfg: &Config, bound: &[Bound]) -> Result<crate::deliver::smtp::SmtpAgent, Fatal> {
    use crate::deliver::smtp::{Settings, SmtpAgent};
    let rel = &cfg.relay;
    let (resolver_cfg, warnings) = crate::dns::ResolverConfig::load(&rel.dns_servers)
        .map_err(|e| Fatal(EX_CONFIG, format!("{}: relay.dns_servers: {e}", cfg.source)))?;
    for w in warnings {
        log::warning(&format!("resolver: {w}"));
    }
    let roots = outbound_roots(cfg)?;
    let host_lookup = crate::dns::hosts::HostLookup::parse_list(&rel.host_lookup)
        .map_err(|e| Fatal(EX_CONFIG, e))?;
    Ok(SmtpAgent::new(
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

/// Who we are, to find ourselves among MX hosts: the hostname, the
/// listeners' addresses (every interface's, for a wildcard listener) and
/// `[relay] own_addresses` (a NAT's public address).
fn me(cfg: &Config, bound: &[Bound]) -> crate::dns::mx::Me {
    use std::net::IpAddr;
    let mut addrs: Vec<IpAddr> = bound
        .iter()
        .map(|b| b.local.ip())
        .filter(|ip| !ip.is_unspecified())
        .collect();
    if bound.iter().any(|b| b.local.ip().is_unspecified()) {
        if let Ok(ifs) = nix::ifaddrs::getifaddrs() {
            for a in ifs.filter_map(|i| i.address) {
                if let Some(v4) = a.as_sockaddr_in() {
                    addrs.push(IpAddr::V4(v4.ip()));
                } else if let Some(v6) = a.as_sockaddr_in6() {
                    addrs.push(IpAddr::V6(v6.ip()));
                }
            }
        }
    }
    addrs.extend(
        cfg.relay
            .own_addresses
            .iter()
            .filter_map(|a| a.parse::<IpAddr>().ok()),
    );
    addrs.sort();
    addrs.dedup();
    crate::dns::mx::Me {
        addrs,
        names: vec![cfg.hostname().to_ascii_lowercase()],
    }
}
