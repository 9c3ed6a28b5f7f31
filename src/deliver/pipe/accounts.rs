//! The pipe transports' users as the system's user database knows them:
//! name (USER, LOGNAME), home directory and supplementary groups.
//!
//! Looked up once a minute per uid:gid, not per delivery, as Postfix's
//! pipe(8) keeps its password entries: with nss-systemd or LDAP in
//! nsswitch.conf a getpwuid plus a getgrouplist cost more than the rest
//! of starting a command. A change to the user (a new group, a moved
//! home) is seen within `FRESH`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long an answer is used.
const FRESH: Duration = Duration::from_secs(60);

/// One uid:gid's answer. `name` and `home` are None for a uid with no
/// entry; `groups` is then just the gid.
pub(super) struct Who {
    pub name: Option<String>,
    pub home: Option<PathBuf>,
    pub groups: Vec<u32>,
}

/// uid:gid → when it was looked up, and the answer.
type Known = HashMap<(u32, u32), (Instant, Arc<Who>)>;

#[derive(Default)]
pub(super) struct Accounts {
    known: Mutex<Known>,
}

impl Accounts {
    pub fn get(&self, (uid, gid): (u32, u32)) -> Arc<Who> {
        let now = Instant::now();
        if let Some((at, who)) = self.lock().get(&(uid, gid)) {
            if now.duration_since(*at) < FRESH {
                return who.clone();
            }
        }
        // Looked up outside the lock: a slow name service holds up only
        // the deliveries that need the answer.
        let who = Arc::new(look_up(uid, gid));
        self.lock().insert((uid, gid), (now, who.clone()));
        who
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Known> {
        self.known.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn look_up(uid: u32, gid: u32) -> Who {
    let user = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten();
    let groups = user
        .as_ref()
        .and_then(|u| {
            let name = std::ffi::CString::new(u.name.as_bytes()).ok()?;
            nix::unistd::getgrouplist(&name, nix::unistd::Gid::from_raw(gid)).ok()
        })
        .map(|g| g.into_iter().map(|g| g.as_raw()).collect())
        .unwrap_or_else(|| vec![gid]);
    Who {
        name: user.as_ref().map(|u| u.name.clone()),
        home: user.map(|u| u.dir),
        groups,
    }
}
