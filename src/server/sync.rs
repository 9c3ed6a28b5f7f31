//! The server's syncs of `[sync.mysql]`: one at start, then every
//! `interval` (0: none) and on SIGHUP (`postern reload`), on a thread of
//! their own, since the MySQL client blocks. A sync commits into the live
//! mirror in one transaction; lookups see the new rows at their next
//! question (the directory watches the file), sessions are never
//! interrupted. A failed sync leaves the mirror as it was and the server
//! serving from it; while the last success is older than `[sync]
//! warn_after`, each failure also logs how old the mirror is.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::clock::now_secs;
use crate::config::Config;
use crate::directory::sqlite::Db;
use crate::import::{self, EventLog, Options};
use crate::log;

/// Skipped and conflicting rows named in the log, at most this many a run.
const EVENT_LINES: usize = 100;
/// With `interval = 0`, how often the age of the mirror is looked at.
const STALE_CHECK: std::time::Duration = std::time::Duration::from_secs(3600);

enum Msg {
    Now,
    Stop,
}

/// The sync thread; stopped (a sync in progress rolls back) when dropped.
pub struct SyncTask {
    tx: mpsc::Sender<Msg>,
    cancel: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// Starts the sync thread, if the config has a source.
pub fn start(cfg: &Config) -> Option<SyncTask> {
    cfg.sync.mysql.as_ref()?;
    let (tx, rx) = mpsc::channel();
    let cancel = Arc::new(AtomicBool::new(false));
    let (cfg, stop) = (cfg.clone(), cancel.clone());
    let thread = std::thread::Builder::new()
        .name("sync".into())
        .spawn(move || run(&cfg, &rx, &stop))
        .map_err(|e| log::error(&format!("sync: cannot start its thread: {e}")))
        .ok()?;
    Some(SyncTask {
        tx,
        cancel,
        thread: Some(thread),
    })
}

impl SyncTask {
    /// Sync now (SIGHUP); triggers during a sync make one more.
    pub fn trigger(&self) {
        let _ = self.tx.send(Msg::Now);
    }
}

impl Drop for SyncTask {
    fn drop(&mut self) {
        self.cancel.store(true, Ordering::Relaxed);
        let _ = self.tx.send(Msg::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(cfg: &Config, rx: &mpsc::Receiver<Msg>, cancel: &AtomicBool) {
    let (db, problem) = Db::open(&cfg.database_path(), cfg.directory.lookup_timeout.0);
    if let Some(p) = problem {
        log::warning(&format!("sync: the mirror: {p}"));
    }
    announce(cfg, &db);
    let interval = cfg
        .sync
        .mysql
        .as_ref()
        .map(|m| m.interval.0)
        .unwrap_or_default();
    let wake = if interval.is_zero() {
        STALE_CHECK
    } else {
        interval
    };
    let mut sync = true;
    loop {
        if sync {
            once(cfg, &db, cancel);
            // Signals that came during the sync are answered by it.
            while let Ok(Msg::Now) = rx.try_recv() {}
        } else if let Some(w) = import::staleness(cfg, &db, now_secs()) {
            // interval = 0: syncs come from `postern sync` (cron); say
            // when they stopped coming.
            log::warning(&w);
        }
        sync = match rx.recv_timeout(wake) {
            Ok(Msg::Now) => true,
            Err(RecvTimeoutError::Timeout) => !interval.is_zero(),
            Ok(Msg::Stop) | Err(RecvTimeoutError::Disconnected) => return,
        };
        if cancel.load(Ordering::Relaxed) {
            return;
        }
    }
}

/// The log line at start: when and from where the mirror was last synced.
fn announce(cfg: &Config, db: &Db) {
    let now = now_secs();
    let line = match db.sync_status() {
        Ok(Some(st)) if st.last_success.is_some() => {
            let t = st.last_success.unwrap_or(0);
            format!(
                "sync: the mirror was last synced {} ago ({}) from {}",
                import::ago(now - t),
                crate::timefmt::rfc3339(t),
                st.source
            )
        }
        _ => format!(
            "sync: the mirror has not been synced yet; source {}",
            import::source_name(cfg)
        ),
    };
    log::started(&line);
}

fn once(cfg: &Config, db: &Db, cancel: &AtomicBool) {
    let mut events = EventLog::new(EVENT_LINES);
    let mut sink = |e: &crate::directory::sqlite::import::Event| events.event(e);
    let r = import::run(
        cfg,
        db,
        Options {
            dry_run: false,
            force: false,
            cancel,
            events: &mut sink,
        },
    );
    events.finish();
    match r {
        Ok(s) => log::started(&format!("sync from {}: {}", s.source, s.line())),
        Err(import::SyncError::Cancelled) => {}
        Err(e) => {
            log::warning(&format!(
                "sync from {} failed: {e}; serving from the mirror as it was",
                import::source_name(cfg)
            ));
            if let Some(w) = import::staleness(cfg, db, now_secs()) {
                log::warning(&w);
            }
        }
    }
}
