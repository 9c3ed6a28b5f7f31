//! Signals: blocked in every thread at start and waited for by the main
//! thread. SIGTERM and SIGINT stop the server; SIGHUP reloads the TLS
//! certificate.

use nix::sys::signal::{SigSet, Signal};

use super::{Fatal, Shared};
use crate::clock::now_secs;
use crate::config::Config;
use crate::log;
use crate::sysexits::EX_UNAVAILABLE;

/// Blocks the signals the main thread waits for; must run before any other
/// thread starts, so they all inherit the mask.
pub fn block() -> Result<SigSet, Fatal> {
    let mut sigs = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        sigs.add(s);
    }
    sigs.thread_block()
        .map_err(|e| Fatal(EX_UNAVAILABLE, format!("cannot block signals: {e}")))?;
    // A file size limit must give EFBIG (a 452 to the client), not kill us.
    // SAFETY: SIG_IGN installs no handler code; called before other threads
    // start, so nothing races with the disposition change.
    unsafe {
        nix::libc::signal(nix::libc::SIGXFSZ, nix::libc::SIG_IGN);
    }
    Ok(sigs)
}

/// Waits for SIGTERM/SIGINT; SIGHUP reloads the TLS certificate and
/// syncs the directory from [sync.mysql], if there is one.
pub fn wait_for_stop(sigs: &SigSet, cfg: &Config, shared: &Shared, sync: Option<&super::sync::SyncTask>) {
    loop {
        match sigs.wait() {
            Ok(Signal::SIGHUP) => {
                reload(cfg, shared);
                sync.inspect(|s| s.trigger());
            }
            Ok(sig) => {
                log::started(&format!("{sig}: stopping"));
                return;
            }
            Err(e) => {
                log::error(&format!("sigwait: {e}"));
                return;
            }
        }
    }
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
