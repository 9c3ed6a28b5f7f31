//! `postern serve`: opens the queue, the directory and the listeners,
//! recovers queued mail, starts delivery, and serves SMTP until SIGTERM.
//!
//! Threads: a small async executor for the sessions, a fixed pool of
//! delivery threads, the blocking pool for fsync and lookups, and one
//! thread that waits for signals (they are blocked everywhere else).

pub mod conn;
pub mod limits;
pub mod stream;

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::{SigSet, Signal};
use smol::Executor;

use crate::auth::backend::Backend;
use crate::auth::limiter::Limiter;
use crate::clock::now_secs;
use crate::config::{AuthBackend, Cidr, Config, ListenerMode};
use crate::deliver::maildir::MaildirAgent;
use crate::directory::Directory;
use crate::log;
use crate::queue::runner::Runner;
use crate::queue::schedule::Backoff;
use crate::queue::spool::Spool;
use crate::route::Router;
use crate::smtp::session::SessionConfig;
use limits::ConnLimits;

/// sysexits(3) codes `serve` exits with.
pub const EX_CONFIG: i32 = 78;
pub const EX_UNAVAILABLE: i32 = 69;
pub const EX_CANTCREAT: i32 = 73;
pub const EX_TEMPFAIL: i32 = 75;

/// What every session needs.
pub struct Shared {
    pub trusted: Vec<Cidr>,
    pub directory: Arc<Directory>,
    pub spool: Arc<Spool>,
    pub runner: Arc<Runner>,
    pub limits: Arc<ConnLimits>,
    /// The TLS configuration in use, when some listener speaks TLS.
    pub tls: Option<Arc<crate::tls::Reloadable>>,
    pub handshake_timeout: Duration,
    pub auth: Option<Arc<Backend>>,
    pub limiter: Limiter,
}

/// What differs between listeners.
pub struct ListenerCtx {
    pub session_cfg: Arc<SessionConfig>,
    pub implicit_tls: bool,
}

/// A start-up failure: exit code and message.
pub struct Fatal(pub i32, pub String);

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

pub fn serve(mut cfg: Config) -> Result<(), Fatal> {
    // Signals are handled by one thread; block them before any other starts.
    let mut sigs = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        sigs.add(s);
    }
    sigs.thread_block()
        .map_err(|e| Fatal(EX_UNAVAILABLE, format!("cannot block signals: {e}")))?;
    // A file size limit must give EFBIG (a 452 to the client), not kill us.
    unsafe {
        nix::libc::signal(nix::libc::SIGXFSZ, nix::libc::SIG_IGN);
    }

    cfg.absolutize();
    let data = cfg.data_dir().to_path_buf();
    crate::fsutil::ensure_dir(&data, 0o755).map_err(|e| {
        Fatal(
            EX_CANTCREAT,
            format!("cannot create data_dir {}: {e}", data.display()),
        )
    })?;
    let owner = delivery_owner(&cfg)?;
    prepare_base(&cfg.mailbox_base(), owner)?;
    prepare_base(&cfg.local_mailbox_base(), owner)?;

    let spool = Arc::new(Spool::open(&cfg.queue_dir()).map_err(|e| {
        let code = if e.kind() == std::io::ErrorKind::WouldBlock {
            EX_TEMPFAIL
        } else {
            EX_CANTCREAT
        };
        Fatal(code, format!("queue {}: {e}", cfg.queue_dir().display()))
    })?);
    let (directory, warning) = Directory::open(&cfg);
    if let Some(w) = warning {
        log::warning(&format!(
            "user directory unusable, lookups will answer 451 until it is fixed: {w}"
        ));
    }
    let directory = Arc::new(directory);

    let mut listeners = Vec::new();
    let mut bound = Vec::new();
    for l in &cfg.listeners {
        let addr = l.address.expect("checked by config");
        let sock = TcpListener::bind(addr)
            .map_err(|e| Fatal(EX_UNAVAILABLE, format!("cannot listen on {addr}: {e}")))?;
        let local = sock
            .local_addr()
            .map_err(|e| Fatal(EX_UNAVAILABLE, format!("{addr}: {e}")))?;
        bound.push((addr, local, l.mode));
        let sock =
            smol::Async::new(sock).map_err(|e| Fatal(EX_UNAVAILABLE, format!("{addr}: {e}")))?;
        let ctx = ListenerCtx {
            session_cfg: Arc::new(cfg.session_config(l)),
            implicit_tls: l.mode == ListenerMode::ImplicitTls,
        };
        listeners.push((smol::net::TcpListener::from(sock), Arc::new(ctx)));
    }

    let router = Router {
        mailbox_base: cfg.mailbox_base(),
        local_base: cfg.local_mailbox_base(),
    };
    let backoff = Backoff {
        min: cfg.queue.min_backoff.0,
        max: cfg.queue.max_backoff.0,
        lifetime: cfg.queue.max_lifetime.0,
    };
    let agent = Box::new(MaildirAgent::new(
        cfg.hostname(),
        owner,
        vec![cfg.mailbox_base(), cfg.local_mailbox_base()],
    ));
    let (runner, channels) = Runner::new(
        spool.clone(),
        directory.clone(),
        router,
        agent,
        backoff,
        cfg.hostname().to_string(),
        cfg.delivery.max_received_headers,
    );
    let runner = Arc::new(runner);
    let recovery = spool
        .recover(now_secs())
        .map_err(|e| Fatal(EX_CANTCREAT, format!("queue recovery: {e}")))?;
    for (id, problem) in &recovery.quarantined {
        log::queue_problem(
            id,
            &format!("damaged queue file moved to corrupt/: {problem}"),
        );
    }
    if recovery.removed_incoming > 0 || !recovery.queued.is_empty() {
        log::started(&format!(
            "queue recovered: {} queued, {} half-received removed",
            recovery.queued.len(),
            recovery.removed_incoming
        ));
    }
    let (delivery_threads, timer) = runner.start(cfg.delivery.concurrency, channels);
    runner.enqueue_recovered(recovery.queued);

    let tls = if cfg.needs_tls() {
        Some(Arc::new(load_tls(&cfg)?))
    } else {
        None
    };
    let auth = match cfg.auth.backend {
        AuthBackend::Sqlite => Some(Arc::new(Backend::Directory(directory.clone()))),
        AuthBackend::Dovecot => Some(Arc::new(Backend::Dovecot(
            cfg.dovecot_socket().expect("checked by config"),
        ))),
        AuthBackend::None => None,
    };
    let a = &cfg.auth;
    let shared = Arc::new(Shared {
        trusted: cfg.main.trusted_networks.clone(),
        directory,
        spool,
        runner: runner.clone(),
        limits: ConnLimits::new(
            cfg.smtp.max_connections,
            cfg.smtp.max_connections_per_client,
        ),
        tls,
        handshake_timeout: cfg.tls.handshake_timeout.0,
        auth,
        limiter: Limiter::new(a.max_failures, a.failure_window.0, a.failure_delay.0),
    });

    let ex = Arc::new(Executor::new());
    ex.spawn(timer).detach();
    let mut accept_tasks = Vec::new();
    for (l, lctx) in listeners {
        let shared = shared.clone();
        let ex2 = ex.clone();
        accept_tasks.push(ex.spawn(async move {
            loop {
                match l.accept().await {
                    Ok((stream, peer)) => {
                        let _ = stream.set_nodelay(true);
                        let shared = shared.clone();
                        let lctx = lctx.clone();
                        ex2.spawn(async move {
                            use smol::future::FutureExt;
                            if std::panic::AssertUnwindSafe(conn::handle(
                                shared, lctx, stream, peer,
                            ))
                            .catch_unwind()
                            .await
                            .is_err()
                            {
                                log::error(&format!(
                                    "session with {peer} crashed; the connection was closed"
                                ));
                            }
                        })
                        .detach();
                    }
                    Err(e) => {
                        // EMFILE and friends: wait a little instead of spinning.
                        log::warning(&format!("accept: {e}"));
                        smol::Timer::after(Duration::from_millis(100)).await;
                    }
                }
            }
        }));
    }

    write_listening(&data, &bound);
    announce(&cfg, &bound);
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);

    let (stop_tx, stop_rx) = smol::channel::unbounded::<()>();
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .clamp(1, 4);
    let mut exec_threads = Vec::new();
    for i in 0..workers {
        let ex = ex.clone();
        let stop = stop_rx.clone();
        exec_threads.push(
            std::thread::Builder::new()
                .name(format!("smtp-{i}"))
                .spawn(move || smol::block_on(ex.run(stop.recv())))
                .expect("spawn executor thread"),
        );
    }

    // Wait for SIGTERM/SIGINT; SIGHUP reloads the TLS certificate.
    loop {
        match sigs.wait() {
            Ok(Signal::SIGHUP) => reload(&cfg, &shared),
            Ok(sig) => {
                log::started(&format!("{sig}: stopping"));
                break;
            }
            Err(e) => {
                log::error(&format!("sigwait: {e}"));
                break;
            }
        }
    }
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    drop(accept_tasks);
    // Sessions get a moment to finish what they are doing; nothing is lost
    // if they do not: unacknowledged mail was never promised.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while shared.limits.active() > 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    runner.close();
    for h in delivery_threads {
        let _ = h.join();
    }
    drop(stop_tx);
    for h in exec_threads {
        let _ = h.join();
    }
    let _ = std::fs::remove_file(data.join("listening"));
    log::started("stopped");
    Ok(())
}

/// The certificate from the config, or the self-signed one of a fresh box.
fn load_tls(cfg: &Config) -> Result<crate::tls::Reloadable, Fatal> {
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
    Ok(crate::tls::Reloadable::new(config))
}

/// SIGHUP: new certificates for new sessions; a bad one keeps the old.
fn reload(cfg: &Config, shared: &Shared) {
    let (Some(tls), Some((cert, key))) = (&shared.tls, cfg.tls_files()) else {
        log::started("SIGHUP: no certificate files configured, nothing to reload");
        return;
    };
    match crate::tls::load(&cert, &key, now_secs()) {
        Ok((config, info)) => {
            tls.set(config);
            log::started(&format!(
                "SIGHUP: reloaded TLS certificate {} (SHA-256 {}), valid until {}",
                cert.display(),
                info.fingerprint,
                crate::timefmt::rfc5322(info.not_after)
            ));
        }
        Err(e) => log::error(&format!("SIGHUP: keeping the current certificate: {e}")),
    }
}

/// `data_dir/listening`: the address each listener is bound to, for tools
/// and tests (a configured port 0 is only known here). One line per
/// listener, in config order: `<n> <configured> <bound> <mode>`. Replaced
/// by a rename, so a reader never sees half a file.
fn write_listening(data: &Path, bound: &[(SocketAddr, SocketAddr, ListenerMode)]) {
    let mut text = String::new();
    for (i, (conf, local, mode)) in bound.iter().enumerate() {
        text.push_str(&format!("{} {conf} {local} {}\n", i + 1, mode.as_str()));
    }
    let tmp = data.join(".listening.tmp");
    let r = std::fs::write(&tmp, text).and_then(|_| std::fs::rename(&tmp, data.join("listening")));
    if let Err(e) = r {
        log::warning(&format!("cannot write {}: {e}", data.join("listening").display()));
    }
}

/// The one line that says where postern listens and where mail lands.
fn announce(cfg: &Config, bound: &[(SocketAddr, SocketAddr, ListenerMode)]) {
    let addrs: Vec<String> = bound.iter().map(|(_, a, _)| a.to_string()).collect();
    let domains = cfg.local_domains();
    let local = if domains.iter().any(|d| d == "localhost") {
        "localhost"
    } else {
        domains.first().map(String::as_str).unwrap_or("localhost")
    };
    log::started(&format!(
        "listening on {}; mail for <name>@{local} lands in {}/<name>/new/, hosted domains under {}; queue in {}",
        addrs.join(", "),
        cfg.local_mailbox_base().display(),
        cfg.mailbox_base().display(),
        cfg.queue_dir().display()
    ));
}
