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
use crate::deliver::{Agent, AgentKind, Target, Unavailable};
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

/// Routing as configured.
pub fn router(cfg: &Config, owner: Option<(u32, u32)>) -> Router {
    Router::new(cfg.mailbox_base(), cfg.local_mailbox_base(), owner)
}

/// Deferral text of remote routes until an outbound agent exists.
fn no_relay(t: &Target) -> String {
    let dest = match &t.route {
        Route::Smtp(s) if s.name == "mx" => {
            s.hops.first().map(|h| h.host.clone()).unwrap_or_default()
        }
        Route::Smtp(s) => s.name.clone(),
        _ => String::new(),
    };
    format!("no outbound relay is configured for {dest}; the message stays queued")
}

/// The delivery agents, each with its concurrency.
pub fn registry(cfg: &Config, maildir: Arc<MaildirAgent>) -> Registry {
    let mut r = Registry::new();
    r.add(
        AgentKind::Maildir,
        Agent::Blocking(maildir),
        cfg.delivery.concurrency,
    );
    let unavailable = |name, why, esc| Agent::Async(Arc::new(Unavailable { name, why, esc }));
    r.add(
        AgentKind::Smtp,
        unavailable("none", no_relay, Esc(4, 4, 1)),
        1,
    );
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
    r
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
