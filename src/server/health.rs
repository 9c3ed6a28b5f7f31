//! systemd's watchdog and status line. When started by systemd
//! (`NOTIFY_SOCKET`), a task on the executor sends `WATCHDOG=1` every half
//! of `WATCHDOG_USEC` (when `WatchdogSec=` is set) and a `STATUS=` line
//! with the queue and the last delivery error whenever that changes. The
//! pings come from the executor that runs every session and delivery: if
//! it stalls, they stop, and systemd restarts the service.

use std::sync::Arc;
use std::time::Duration;

use smol::Executor;

use crate::queue::runner::Runner;

/// How often the status line is looked at without a watchdog.
const STATUS_EVERY: Duration = Duration::from_secs(30);

/// The task, when there is a service manager to tell; stops on drop.
pub fn start(ex: &Arc<Executor<'static>>, runner: Arc<Runner>) -> Option<smol::Task<()>> {
    std::env::var_os("NOTIFY_SOCKET")?;
    let watchdog = sd_notify::watchdog_enabled();
    let period = watchdog
        .map(|w| w / 2)
        .unwrap_or(STATUS_EVERY)
        .max(Duration::from_millis(10));
    Some(ex.spawn(async move {
        let mut said = String::new();
        loop {
            let r = runner.clone();
            let counts = crate::pool::unblock(move || r.counts()).await;
            let line = crate::status::board().status_line(counts);
            let mut states = Vec::with_capacity(2);
            if watchdog.is_some() {
                states.push(sd_notify::NotifyState::Watchdog);
            }
            if line != said {
                states.push(sd_notify::NotifyState::Status(&line));
            }
            if !states.is_empty() {
                let _ = sd_notify::notify(&states);
            }
            said = line;
            smol::Timer::after(period).await;
        }
    }))
}
