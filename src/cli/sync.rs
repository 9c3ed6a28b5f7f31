//! `postern sync`: one sync of the PostfixAdmin MySQL/MariaDB database into
//! the SQLite directory, then exit; `--dry-run` prints what would change,
//! `--status` when and from where the mirror was last synced. Argument
//! handling, printing and exit codes only; the run is `import::run`.
//!
//! Exit codes (sysexits.h): 0 the mirror matches the source (changed, or
//! "no change"); 65 the source's schema differs from the config (nothing
//! imported), or some rows were skipped (the rest imported; each is
//! named); 69 built without MySQL support; 74 the mirror could not be
//! written; 75 the source is unreachable, timed out or went away, or the
//! mirror is locked (try again); 78 configuration (no [sync.mysql], the
//! password file, access denied, no such database).

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use argh::FromArgs;

use crate::directory::sqlite::import::Event;
use crate::directory::sqlite::Db;
use crate::import::{self, EventLog, Options};
use crate::sysexits::{EX_CANTCREAT, EX_CONFIG, EX_DATAERR, EX_IOERR, EX_TEMPFAIL, EX_UNAVAILABLE};

/// Mirror the PostfixAdmin MySQL database ([sync.mysql]) into the SQLite
/// directory once.
#[derive(FromArgs)]
#[argh(subcommand, name = "sync")]
pub struct SyncCmd {
    /// print what would change, change nothing
    #[argh(switch)]
    pub dry_run: bool,
    /// sync even if it removes more than [sync] removal_limit allows
    #[argh(switch)]
    pub force: bool,
    /// print when and from where the mirror was last synced, sync nothing
    #[argh(switch)]
    pub status: bool,
    /// configuration file; without it, the embedded default
    #[argh(option, short = 'c')]
    pub config: Option<PathBuf>,
    /// data directory (overrides data_dir)
    #[argh(option)]
    pub data_dir: Option<PathBuf>,
}

/// Skipped and conflicting rows named on stderr, at most this many a run.
const EVENT_LINES: usize = 1000;

pub fn run(s: SyncCmd) -> i32 {
    if !cfg!(feature = "mysql") && !s.status {
        eprintln!("postern sync: {}", import::SyncError::NotBuilt);
        return EX_UNAVAILABLE;
    }
    let cfg = match super::config_for(s.config.as_ref(), s.data_dir) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if let Err(code) = super::as_service_user("sync", &cfg) {
        return code;
    }
    if cfg.sync.mysql.is_none() && !s.status {
        eprintln!(
            "postern sync: no [sync.mysql] in {}: nothing to sync from (see `postern config example`)",
            cfg.source
        );
        return EX_CONFIG;
    }
    let path = cfg.database_path();
    if let Some(dir) = path.parent() {
        if let Err(e) = crate::fsutil::ensure_dir(dir, 0o755) {
            eprintln!("postern sync: cannot create {}: {e}", dir.display());
            return EX_CANTCREAT;
        }
    }
    let (db, problem) = Db::open(&path, cfg.directory.lookup_timeout.0);
    if let Some(p) = problem {
        eprintln!("postern sync: cannot open the user directory {p}");
        return if p.busy { EX_TEMPFAIL } else { EX_IOERR };
    }
    if s.status {
        return status(&cfg, &db);
    }
    let cancel = AtomicBool::new(false);
    let mut log = EventLog::new(EVENT_LINES);
    let dry_run = s.dry_run;
    let mut events = |e: &Event| {
        if dry_run {
            print_change(e);
        }
        log.event(e);
    };
    let r = import::run(
        &cfg,
        &db,
        Options {
            dry_run,
            force: s.force,
            cancel: &cancel,
            events: &mut events,
        },
    );
    log.finish();
    match r {
        Ok(summary) => {
            println!("postern sync: from {}", summary.source);
            for (t, c) in &summary.tables {
                println!(
                    "  {:<13} {:>8} rows: {} added, {} changed, {} removed, {} skipped, {} conflicts",
                    t.name(),
                    c.rows,
                    c.added,
                    c.changed,
                    c.removed,
                    c.skipped,
                    c.conflicts
                );
            }
            println!("postern sync: {}", summary.line());
            if summary.skipped() > 0 {
                eprintln!(
                    "postern sync: {} rows skipped (named above); the rest was {}",
                    summary.skipped(),
                    if dry_run { "compared" } else { "imported" }
                );
                EX_DATAERR
            } else {
                0
            }
        }
        Err(e) => {
            eprintln!("postern sync: {e}; the mirror is unchanged");
            e.exit_code()
        }
    }
}

/// `--dry-run`: one line per change, `+ table key`, `~ table key
/// (columns)`, `- table key`. Values are never shown (passwords).
fn print_change(e: &Event) {
    match e {
        Event::Added { table, key } => println!("+ {} {key}", table.name()),
        Event::Changed {
            table,
            key,
            columns,
        } => {
            println!("~ {} {key} ({})", table.name(), columns.join(", "))
        }
        Event::Removed { table, key } => println!("- {} {key}", table.name()),
        _ => {}
    }
}

fn status(cfg: &crate::config::Config, db: &Db) -> i32 {
    let now = crate::clock::now_secs();
    match db.sync_status() {
        Err(e) => {
            eprintln!("postern sync: {e}");
            EX_IOERR
        }
        Ok(None) => {
            println!("never synced; source: {}", import::source_name(cfg));
            0
        }
        Ok(Some(st)) => {
            match st.last_success {
                Some(t) => println!(
                    "last synced {} ({} ago) from {}: {}",
                    crate::timefmt::rfc3339(t),
                    import::ago(now - t),
                    st.source,
                    st.summary
                ),
                None => println!("never synced; source: {}", st.source),
            }
            if !st.last_error.is_empty() {
                println!(
                    "last attempt {} failed: {}",
                    st.last_attempt
                        .map(crate::timefmt::rfc3339)
                        .unwrap_or_default(),
                    st.last_error
                );
            }
            0
        }
    }
}
