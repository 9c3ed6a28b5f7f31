//! `postern serve`: opens the queue, the directory and the listeners,
//! recovers queued mail, starts delivery and the control socket, and
//! serves SMTP until SIGTERM.
//!
//! Threads: a small async executor for the sessions, the queue runner and
//! the control socket; the blocking pool for fsync, lookups and Maildir
//! delivery; and one thread that waits for signals (they are blocked
//! everywhere else).

mod activation;
pub mod conn;
mod health;
pub mod limits;
mod local;
mod reload;
mod setup;
mod signals;
pub mod stream;
mod sync;
mod trim;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use smol::Executor;

use crate::auth::backend::Backend;
use crate::auth::limiter::Limiter;
use crate::config::{Cidr, Config, ListenerMode};
use crate::directory::Directory;
use crate::intake::Intake;
use crate::log;
use crate::queue::runner::Runner;
use crate::smtp::session::SessionConfig;
use limits::ConnLimits;

pub use crate::sysexits::{EX_CANTCREAT, EX_CONFIG, EX_TEMPFAIL, EX_UNAVAILABLE};

/// What every session needs.
pub struct Shared {
    pub trusted: Vec<Cidr>,
    /// This host's name (Message-IDs of local submissions).
    pub hostname: String,
    /// `[content]` header and body rules.
    pub content_rules: Arc<crate::intake::content::ContentRules>,
    pub directory: Arc<Directory>,
    pub intake: Arc<Intake>,
    pub runner: Arc<Runner>,
    pub limits: Arc<ConnLimits>,
    /// The TLS configuration in use, when some listener speaks TLS.
    pub tls: Option<Arc<crate::tls::Reloadable>>,
    pub handshake_timeout: Duration,
    pub auth: Option<Arc<Backend>>,
    pub limiter: Arc<Limiter>,
    /// What the local submission socket's sessions are configured with.
    pub local_ctx: Arc<ListenerCtx>,
}

/// What differs between listeners.
pub struct ListenerCtx {
    pub session_cfg: Arc<SessionConfig>,
    pub implicit_tls: bool,
    /// The content filter's way back: trusted clients only, no filter,
    /// recipients not checked again.
    pub reinject: bool,
    /// The content filter mail received here must pass.
    pub filter: Option<String>,
    /// Who is trusted here, when not [main] trusted_networks.
    pub trusted: Option<Vec<Cidr>>,
    /// The local submission socket (sendmail): every recipient is taken
    /// (unknown ones bounce to the local sender later, as with Postfix's
    /// pickup), missing From:/Date:/Message-ID: are added.
    pub local: bool,
}

/// A start-up failure: exit code and message.
pub struct Fatal(pub i32, pub String);

pub fn serve(mut cfg: Config) -> Result<(), Fatal> {
    // Sockets systemd passed (postern.socket), before any thread starts:
    // taking them clears LISTEN_FDS from the environment.
    let mut inherited = activation::inherited_listeners();
    let sigs = signals::block()?;
    cfg.absolutize();
    crate::status::board();
    // Ports first (root may be needed for 25), then root's rights go,
    // before anything else is made or any worker thread started.
    let bound = setup::listeners(&cfg, &mut inherited)?;
    for (addr, _) in inherited.drain(..) {
        log::warning(&format!(
            "socket activation: systemd passed {addr}, which no [[listener]] has; closed"
        ));
    }
    setup::least_privilege(&cfg)?;
    let ex = Arc::new(Executor::new());
    let owner = setup::storage(&cfg)?;
    let spool = setup::spool(&cfg)?;
    let addrs: Vec<SocketAddr> = bound.iter().map(|b| b.local).collect();
    let tls = setup::tls(&cfg)?;
    let mut made = reload::make(&cfg, owner, &ex, &spool, &addrs)?;
    let (runner, channels) = Runner::new(spool.clone(), made.take_parts());
    let runner = Arc::new(runner);
    let recovery = setup::recover(&spool)?;
    let limits = ConnLimits::new(
        cfg.smtp.max_connections,
        cfg.smtp.max_connections_per_client,
    );
    let limiter = Arc::new(Limiter::new(
        cfg.auth.max_failures,
        cfg.auth.failure_window.0,
        cfg.auth.failure_delay.0,
    ));
    let shared = reload::shared(&cfg, &made, runner.clone(), tls, limits, limiter);
    let hub = Arc::new(reload::Hub::new(shared));

    runner.start(&ex, channels);
    runner.enqueue_recovered(recovery.queued);
    let control = crate::control::server::start(&cfg, &ex, runner.clone(), spool.clone())
        .map_err(|e| Fatal(EX_CANTCREAT, e))?;
    let submit = local::start(&cfg, &ex, hub.clone()).map_err(|e| Fatal(EX_CANTCREAT, e))?;
    let listed: Vec<_> = bound
        .iter()
        .map(|b| (b.configured, b.local, b.mode))
        .collect();
    let listeners = reload::serve_listeners(&ex, bound, &hub);
    write_listening(cfg.data_dir(), &listed);
    post_listeners(&listed);
    crate::status::board().set_config(&cfg.source);
    announce(&cfg, &listed);
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    let _health = health::start(&ex, runner.clone());
    // Start-up done (and the first threads' code run): its pages can go.
    ex.spawn(async {
        smol::Timer::after(Duration::from_secs(3)).await;
        crate::pool::unblock(trim::drop_startup_pages).await;
    })
    .detach();
    let (stop, threads) = run_executor(&ex, cfg.smtp.threads);
    let sync = sync::start(&cfg);
    let mut running = reload::Running {
        cfg,
        owner,
        ex,
        spool,
        runner,
        hub,
        listeners,
        sync,
    };

    signals::wait_for_stop(&sigs, &mut running);
    running.sync = None;
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    running.listeners.clear();
    shut_down(&running.hub.get());
    drop(control);
    drop(submit);
    drop(stop);
    for h in threads {
        let _ = h.join();
    }
    let _ = std::fs::remove_file(running.cfg.data_dir().join("listening"));
    log::started("stopped");
    Ok(())
}

/// Runs the executor on a few threads until the returned sender is dropped.
fn run_executor(
    ex: &Arc<Executor<'static>>,
    configured: usize,
) -> (smol::channel::Sender<()>, Vec<std::thread::JoinHandle<()>>) {
    let (stop_tx, stop_rx) = smol::channel::unbounded::<()>();
    // One CPU is left to the blocking threads (fsync, Maildir writes,
    // lookups): on two cores, a second executor thread measured 25 % more
    // CPU per message and fewer messages per second, all of it in waking
    // and switching threads.
    let workers = match configured {
        0 => std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
            .saturating_sub(1)
            .clamp(1, 4),
        n => n,
    };
    let threads = (0..workers)
        .map(|i| {
            let ex = ex.clone();
            let stop = stop_rx.clone();
            std::thread::Builder::new()
                .name(format!("smtp-{i}"))
                .spawn(move || {
                    let _ = smol::block_on(ex.run(stop.recv()));
                })
                .expect("spawn executor thread")
        })
        .collect();
    (stop_tx, threads)
}

/// Sessions get a moment to finish what they are doing, deliveries in
/// flight a little longer; nothing is lost if they do not (unacknowledged
/// mail was never promised, and an interrupted delivery is redone after
/// the restart, its Maildir copies recognised).
fn shut_down(shared: &Shared) {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while shared.limits.active() > 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    shared.runner.close();
    let left = shared.runner.wait_idle(Duration::from_secs(10));
    if left > 0 {
        log::warning(&format!(
            "{left} deliveries still in progress at stop; they are redone at the next start"
        ));
    }
}

/// `data_dir/listening`: the address each listener is bound to, for tools
/// and tests (a configured port 0 is only known here). One line per
/// listener, in config order: `<n> <configured> <bound> <mode>`. Replaced
/// by a rename, so a reader never sees half a file.
pub(super) fn write_listening(data: &Path, bound: &[(SocketAddr, SocketAddr, ListenerMode)]) {
    let mut text = String::new();
    for (i, (conf, local, mode)) in bound.iter().enumerate() {
        text.push_str(&format!("{} {conf} {local} {}\n", i + 1, mode.as_str()));
    }
    let tmp = data.join(".listening.tmp");
    let r = std::fs::write(&tmp, text).and_then(|_| std::fs::rename(&tmp, data.join("listening")));
    if let Err(e) = r {
        log::warning(&format!(
            "cannot write {}: {e}",
            data.join("listening").display()
        ));
    }
}

/// The listeners as `postern status` shows them.
pub(super) fn post_listeners(bound: &[(SocketAddr, SocketAddr, ListenerMode)]) {
    crate::status::board().set_listeners(
        bound
            .iter()
            .map(|(_, local, mode)| format!("{local} ({})", mode.as_str()))
            .collect(),
    );
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
