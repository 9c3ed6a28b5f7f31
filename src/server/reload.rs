//! Everything the server makes from its configuration, made so that it can
//! be made again: at start, and on reload (SIGHUP, `postern reload`,
//! systemd's ExecReload). A reload reads and checks the file again (its
//! aliases, rules and quota files too), then makes every part beside the
//! running ones — listeners bound, certificate loaded, directory opened,
//! delivery agents made — and only when all of it worked swaps them in at
//! once. Sessions already open and deliveries already running finish with
//! what they started with. A config that does not check, or a part that
//! cannot be made, is refused with the reason in the log, and the running
//! configuration stays. What only a restart can change (data_dir, the
//! queue, the sockets, executor threads) is named in the log and left.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use smol::Executor;

use super::limits::ConnLimits;
use super::{conn, setup, Fatal, ListenerCtx, Shared};
use crate::auth::limiter::Limiter;
use crate::config::Config;
use crate::intake::Intake;
use crate::log;
use crate::queue::runner::{Parts, Runner};
use crate::queue::spool::Spool;

/// The current [`Shared`]: each new session takes the one in place when
/// it starts.
pub struct Hub(RwLock<Arc<Shared>>);

impl Hub {
    pub fn new(s: Arc<Shared>) -> Hub {
        Hub(RwLock::new(s))
    }

    pub fn get(&self) -> Arc<Shared> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set(&self, s: Arc<Shared>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = s;
    }
}

/// A listener being served: its accept loop and the configuration its new
/// sessions get.
pub struct Live {
    pub configured: SocketAddr,
    pub local: SocketAddr,
    pub mode: crate::config::ListenerMode,
    ctx: Arc<RwLock<Arc<ListenerCtx>>>,
    _task: smol::Task<()>,
}

/// The server while it runs, as the main thread keeps it.
pub struct Running {
    pub cfg: Config,
    pub owner: Option<(u32, u32)>,
    pub ex: Arc<Executor<'static>>,
    pub spool: Arc<Spool>,
    pub runner: Arc<Runner>,
    pub hub: Arc<Hub>,
    pub listeners: Vec<Live>,
    pub sync: Option<super::sync::SyncTask>,
}

/// The parts of the runner and of [`Shared`] a configuration makes.
pub struct Made {
    parts: Option<Parts>,
    directory: Arc<crate::directory::Directory>,
    intake: Arc<Intake>,
    auth: Option<Arc<crate::auth::backend::Backend>>,
}

impl Made {
    /// The runner's share (taken once).
    pub fn take_parts(&mut self) -> Parts {
        self.parts.take().expect("parts taken once")
    }
}

/// Makes the runner's parts and the session side for `cfg`. `addrs`: the
/// addresses listened on (to know ourselves among MX hosts).
pub fn make(
    cfg: &Config,
    owner: Option<(u32, u32)>,
    ex: &Arc<Executor<'static>>,
    spool: &Arc<Spool>,
    addrs: &[SocketAddr],
) -> Result<Made, Fatal> {
    let directory = setup::directory(cfg);
    let maildir = setup::maildir_agent(cfg);
    let router = setup::router(cfg, owner)?;
    let registry = setup::registry(cfg, maildir.clone(), ex, addrs)?;
    let intake = Arc::new(Intake::new(
        cfg,
        spool.clone(),
        directory.clone(),
        router.clone(),
        maildir,
    ));
    let auth = setup::auth(cfg, &directory);
    Ok(Made {
        parts: Some(Parts {
            directory: directory.clone(),
            router,
            registry,
            settings: setup::settings(cfg),
        }),
        directory,
        intake,
        auth,
    })
}

/// The session side: what `made` and `cfg` give, with the parts that live
/// across reloads (the connection counts, the login throttle, the
/// certificate holder) passed in.
pub fn shared(
    cfg: &Config,
    made: &Made,
    runner: Arc<Runner>,
    tls: Option<Arc<crate::tls::Reloadable>>,
    limits: Arc<ConnLimits>,
    limiter: Arc<Limiter>,
) -> Arc<Shared> {
    Arc::new(Shared {
        trusted: cfg.main.trusted_networks.clone(),
        hostname: cfg.hostname().to_string(),
        content_rules: cfg.content_rules.clone(),
        intake: made.intake.clone(),
        directory: made.directory.clone(),
        runner,
        limits,
        tls,
        handshake_timeout: cfg.tls.handshake_timeout.0,
        auth: made.auth.clone(),
        limiter,
        local_ctx: super::local::local_ctx(cfg),
    })
}

/// Starts an accept loop per listener.
pub fn serve_listeners(
    ex: &Arc<Executor<'static>>,
    bound: Vec<setup::Bound>,
    hub: &Arc<Hub>,
) -> Vec<Live> {
    bound
        .into_iter()
        .map(|b| {
            let ctx = Arc::new(RwLock::new(b.ctx));
            Live {
                configured: b.configured,
                local: b.local,
                mode: b.mode,
                _task: ex.spawn(accept_loop(ex.clone(), b.socket, ctx.clone(), hub.clone())),
                ctx,
            }
        })
        .collect()
}

async fn accept_loop(
    ex: Arc<Executor<'static>>,
    socket: smol::net::TcpListener,
    ctx: Arc<RwLock<Arc<ListenerCtx>>>,
    hub: Arc<Hub>,
) {
    loop {
        match socket.accept().await {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                let shared = hub.get();
                let lctx = ctx.read().unwrap_or_else(|e| e.into_inner()).clone();
                ex.spawn(async move {
                    use smol::future::FutureExt;
                    let session =
                        std::panic::AssertUnwindSafe(conn::handle(shared, lctx, stream, peer));
                    if session.catch_unwind().await.is_err() {
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
                smol::Timer::after(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

impl Running {
    /// Reads the configuration again and, if all of it can be made, puts
    /// it in place. Logs what happened; `false` when it was refused.
    pub fn reload(&mut self) -> bool {
        let mut cfg = match self.cfg.reread() {
            Ok(c) => c,
            Err(errors) => {
                for e in &errors {
                    if e.key.starts_with("tls.") {
                        log::error(&format!("SIGHUP: keeping the current certificate: {e}"));
                    } else {
                        log::error(&format!("reload: {e}"));
                    }
                }
                log::error(&format!(
                    "reload refused: {} configuration error(s); the running configuration stays",
                    errors.len()
                ));
                return false;
            }
        };
        cfg.absolutize();
        match self.put_in_place(cfg) {
            Ok(()) => true,
            Err(Fatal(_, why)) => {
                log::error(&format!(
                    "reload refused: {why}; the running configuration stays"
                ));
                false
            }
        }
    }

    fn put_in_place(&mut self, cfg: Config) -> Result<(), Fatal> {
        for (what, old, new) in restart_only(&self.cfg, &cfg) {
            log::warning(&format!(
                "reload: {what} changed ({old} -> {new}): that takes a restart; still {old}"
            ));
        }
        let slots = self.match_listeners(&cfg)?;
        let addrs: Vec<SocketAddr> = slots
            .iter()
            .map(|s| match s {
                Slot::Kept(i, _) => self.listeners[*i].local,
                Slot::Fresh(b) => b.local,
            })
            .collect();
        let old = self.hub.get();
        let (tls, cert_note) = load_tls(old.tls.as_ref(), &cfg)?;
        let owner = setup::storage(&cfg)?;
        let mut made = make(&cfg, owner, &self.ex, &self.spool, &addrs)?;
        self.owner = owner;
        let tls = tls.map(|(t, config)| {
            if let Some((c, file, not_after)) = config {
                t.set(c);
                crate::status::board().set_certificate(Some((file, not_after)));
            }
            t
        });
        if tls.is_none() {
            crate::status::board().set_certificate(None);
        }
        // Everything is made: swap.
        old.limits.set_limits(
            cfg.smtp.max_connections,
            cfg.smtp.max_connections_per_client,
        );
        let shared = shared(
            &cfg,
            &made,
            self.runner.clone(),
            tls,
            old.limits.clone(),
            old.limiter.clone(),
        );
        self.runner.reconfigure(made.take_parts());
        self.hub.set(shared);
        self.swap_listeners(slots);
        let listed: Vec<_> = self
            .listeners
            .iter()
            .map(|l| (l.configured, l.local, l.mode))
            .collect();
        super::write_listening(self.cfg.data_dir(), &listed);
        super::post_listeners(&listed);
        if let Some(note) = cert_note {
            log::started(&note);
        }
        crate::status::board().set_config(&cfg.source);
        let sync_changed = format!("{:?}", self.cfg.sync) != format!("{:?}", cfg.sync);
        self.cfg = cfg;
        if sync_changed {
            self.sync = None;
            self.sync = super::sync::start(&self.cfg);
        }
        let addrs: Vec<String> = self.listeners.iter().map(|l| l.local.to_string()).collect();
        log::started(&format!(
            "reloaded {}: serving {}",
            self.cfg.source,
            addrs.join(", ")
        ));
        Ok(())
    }

    /// Each configured listener: one already served (same configured
    /// address and mode), or a socket bound now.
    fn match_listeners(&self, cfg: &Config) -> Result<Vec<Slot>, Fatal> {
        // Listeners: the same configured address keeps its socket (and
        // the sessions on it); new ones are bound now, before anything is
        // swapped; the ones no longer configured stop accepting.
        // Matched in order, so two listeners on the same configured
        // address (port 0 in tests) each keep their own socket.
        let mut used = vec![false; self.listeners.len()];
        let mut slots: Vec<Slot> = Vec::new();
        for l in &cfg.listeners {
            let addr = l.address.expect("checked by config");
            let ctx = setup::listener_ctx(cfg, l);
            let found = (0..self.listeners.len()).find(|&i| {
                !used[i] && self.listeners[i].configured == addr && self.listeners[i].mode == l.mode
            });
            match found {
                Some(i) => {
                    used[i] = true;
                    slots.push(Slot::Kept(i, ctx));
                }
                None => {
                    let (local, socket) = setup::bind(addr)?;
                    slots.push(Slot::Fresh(setup::Bound {
                        configured: addr,
                        local,
                        mode: l.mode,
                        socket,
                        ctx,
                    }));
                }
            }
        }
        Ok(slots)
    }

    /// The listeners of the new configuration replace the old: kept ones
    /// get their new settings, fresh ones start accepting.
    fn swap_listeners(&mut self, slots: Vec<Slot>) {
        let mut old_live: Vec<Option<Live>> = std::mem::take(&mut self.listeners)
            .into_iter()
            .map(Some)
            .collect();
        for slot in slots {
            match slot {
                Slot::Kept(i, ctx) => {
                    let live = old_live[i].take().expect("each kept once");
                    *live.ctx.write().unwrap_or_else(|e| e.into_inner()) = ctx;
                    self.listeners.push(live);
                }
                Slot::Fresh(b) => {
                    self.listeners
                        .extend(serve_listeners(&self.ex, vec![b], &self.hub))
                }
            }
        }
        // What is left in old_live is dropped here: those accept loops
        // stop; their sessions run on to the end.
        drop(old_live);
    }
}

/// A TLS acceptor after a reload, with the certificate to put in it (the
/// server config, the file's name, the end of its validity).
type NewTls = Option<(
    Arc<crate::tls::Reloadable>,
    Option<(Arc<rustls::ServerConfig>, String, i64)>,
)>;

/// TLS after a reload: the running acceptor, with the configured
/// certificate loaded now (put in place with the rest), or a new one when
/// TLS was off; and the note to log once everything is in place.
fn load_tls(
    running: Option<&Arc<crate::tls::Reloadable>>,
    cfg: &Config,
) -> Result<(NewTls, Option<String>), Fatal> {
    let mut cert_note = None;
    let tls = match (running, cfg.needs_tls(), cfg.tls_files()) {
        (Some(t), true, Some((cert, key))) => {
            let (config, info) =
                crate::tls::load(&cert, &key, crate::clock::now_secs()).map_err(|e| {
                    log::error(&format!("SIGHUP: keeping the current certificate: {e}"));
                    Fatal(super::EX_CONFIG, format!("TLS certificate: {e}"))
                })?;
            cert_note = Some(format!(
                "SIGHUP: reloaded TLS certificate {} (SHA-256 {}), valid until {}",
                cert.display(),
                info.fingerprint,
                crate::timefmt::rfc5322(info.not_after)
            ));
            Some((
                t.clone(),
                Some((config, cert.display().to_string(), info.not_after)),
            ))
        }
        (Some(t), true, None) => {
            cert_note = Some(
                "SIGHUP: no certificate files configured, keeping the self-signed certificate"
                    .into(),
            );
            Some((t.clone(), None))
        }
        (None, true, _) => setup::tls(cfg)?.map(|t| (t, None)),
        (_, false, _) => None,
    };
    Ok((tls, cert_note))
}

/// A configured listener at reload: one already served, or one just bound.
enum Slot {
    Kept(usize, Arc<ListenerCtx>),
    Fresh(setup::Bound),
}

/// Settings a reload cannot change: (name, old, new).
fn restart_only(old: &Config, new: &Config) -> Vec<(&'static str, String, String)> {
    let mut out = Vec::new();
    let mut check = |what: &'static str, a: String, b: String| {
        if a != b {
            out.push((what, a, b));
        }
    };
    check(
        "data_dir",
        old.data_dir().display().to_string(),
        new.data_dir().display().to_string(),
    );
    check(
        "queue directory",
        old.queue_dir().display().to_string(),
        new.queue_dir().display().to_string(),
    );
    check(
        "[control] socket",
        old.control_socket().display().to_string(),
        new.control_socket().display().to_string(),
    );
    check(
        "[control] submit_socket",
        old.submit_socket().display().to_string(),
        new.submit_socket().display().to_string(),
    );
    check(
        "[smtp] threads",
        old.smtp.threads.to_string(),
        new.smtp.threads.to_string(),
    );
    check(
        "[queue] active_limit",
        old.queue.active_limit.to_string(),
        new.queue.active_limit.to_string(),
    );
    out
}
