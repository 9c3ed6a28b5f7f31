//! Signals: blocked in every thread at start and waited for by the main
//! thread. SIGTERM and SIGINT stop the server; SIGHUP reloads the TLS
//! certificate.

use nix::sys::signal::{SigSet, Signal};

use super::reload::Running;
use super::Fatal;
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

/// Waits for SIGTERM/SIGINT; SIGHUP reloads the configuration (and with
/// it the certificate, aliases, rules and directory) and syncs the
/// directory from [sync.mysql], if there is one.
pub fn wait_for_stop(sigs: &SigSet, running: &mut Running) {
    loop {
        match sigs.wait() {
            Ok(Signal::SIGHUP) => {
                reload(running);
                if let Some(s) = running.sync.as_ref() {
                    s.trigger();
                }
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

/// SIGHUP, with systemd's reload protocol around it (RELOADING=1 with
/// the monotonic time, then READY=1).
fn reload(running: &mut Running) {
    let _ = sd_notify::notify(&[
        sd_notify::NotifyState::Reloading,
        sd_notify::NotifyState::monotonic_usec_now()
            .unwrap_or(sd_notify::NotifyState::Status("reloading")),
    ]);
    running.reload();
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
}
