//! Least privilege without systemd: started as root, postern binds its
//! ports, then becomes `[main] user` (setgroups, setgid, setuid, each
//! checked), keeping only CAP_SETUID and CAP_SETGID (to deliver and run
//! commands as other users, never as root) and CAP_NET_BIND_SERVICE (a
//! reload may add a listener on port 25). The spool and the configuration
//! must not be writable by others.
//!
//! The capability sets are per thread: the drop happens before the
//! executor and the blocking pool start, so every thread postern makes
//! afterwards inherits the small sets.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use nix::libc;
use nix::unistd::{Uid, User};

const CAP_SETGID: u32 = 6;
const CAP_SETUID: u32 = 7;
const CAP_NET_BIND_SERVICE: u32 = 10;
const CAPABILITY_VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

fn capget() -> Option<[CapData; 2]> {
    let mut h = CapHeader {
        version: CAPABILITY_VERSION_3,
        pid: 0,
    };
    let mut d = [CapData::default(); 2];
    // SAFETY: the kernel writes two CapData for version 3, as allocated.
    let r = unsafe { libc::syscall(libc::SYS_capget, &mut h as *mut CapHeader, d.as_mut_ptr()) };
    (r == 0).then_some(d)
}

fn capset(caps: u32) -> std::io::Result<()> {
    let mut h = CapHeader {
        version: CAPABILITY_VERSION_3,
        pid: 0,
    };
    let d = [
        CapData {
            effective: caps,
            permitted: caps,
            inheritable: 0,
        },
        CapData::default(),
    ];
    // SAFETY: the kernel reads two CapData for version 3.
    let r = unsafe { libc::syscall(libc::SYS_capset, &mut h as *mut CapHeader, d.as_ptr()) };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn has(cap: u32) -> bool {
    capget().is_some_and(|d| d[0].effective & (1 << cap) != 0)
}

/// Whether this process may act as other users: root, or a dropped
/// postern that kept CAP_SETUID and CAP_SETGID.
pub fn can_switch_users() -> bool {
    nix::unistd::geteuid().is_root() || (has(CAP_SETUID) && has(CAP_SETGID))
}

/// Becomes `user` when running as root (nothing otherwise). Must run
/// before any thread that should not keep root's rights is started.
/// Returns the new uid and gid, and whether it may still switch users,
/// when it dropped.
///
/// `switch_users`: keep CAP_SETUID and CAP_SETGID, for deliveries and
/// commands that run as other users. With them root could be had back
/// (that is what CAP_SETUID is), so they are kept only when the
/// configuration needs them; without them, that root is gone is checked.
pub fn drop_to(
    user: Option<&str>,
    switch_users: impl FnOnce(u32) -> bool,
) -> Result<Option<(u32, u32, bool)>, String> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(None);
    }
    let Some(name) = user.filter(|u| !u.is_empty()) else {
        return Ok(None);
    };
    let u = match name.parse::<u32>() {
        Ok(uid) => User::from_uid(Uid::from_raw(uid)),
        Err(_) => User::from_name(name),
    }
    .map_err(|e| format!("user {name:?}: {e}"))?
    .ok_or_else(|| format!("user {name:?}: no such user (add it, e.g. with systemd-sysusers)"))?;
    if u.uid.is_root() {
        return Err(format!(
            "user {name:?} is root; name the unprivileged user postern runs as"
        ));
    }
    let fail = |what: &str, e: nix::Error| {
        format!(
            "cannot drop to {name} (uid {} gid {}): {what}: {e}",
            u.uid, u.gid
        )
    };
    nix::unistd::setgroups(&[u.gid]).map_err(|e| fail("setgroups", e))?;
    nix::unistd::setresgid(u.gid, u.gid, u.gid).map_err(|e| fail("setgid", e))?;
    // SAFETY: prctl with integer arguments only.
    unsafe {
        libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0);
    }
    nix::unistd::setresuid(u.uid, u.uid, u.uid).map_err(|e| fail("setuid", e))?;
    // SAFETY: as above.
    unsafe {
        libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0);
    }
    let keep_switch = switch_users(u.uid.as_raw());
    let caps = if keep_switch {
        (1 << CAP_SETUID) | (1 << CAP_SETGID) | (1 << CAP_NET_BIND_SERVICE)
    } else {
        1 << CAP_NET_BIND_SERVICE
    };
    capset(caps).map_err(|e| format!("cannot set the capabilities it keeps: {e}"))?;
    // Verified: no id is root any more and root cannot be had back.
    let (ru, eu) = (nix::unistd::getuid(), nix::unistd::geteuid());
    let (rg, eg) = (nix::unistd::getgid(), nix::unistd::getegid());
    if ru != u.uid || eu != u.uid || rg != u.gid || eg != u.gid {
        return Err(format!(
            "dropping to {name} did not take: uid {ru}/{eu} gid {rg}/{eg}"
        ));
    }
    if !keep_switch {
        // This thread only (no libc broadcast): if it worked, the process
        // stops here anyway.
        // SAFETY: a plain system call with an integer argument.
        let back = unsafe { libc::syscall(libc::SYS_setuid, 0) };
        if back == 0 {
            return Err(format!(
                "dropping to {name} did not take: uid 0 could be had back"
            ));
        }
    }
    Ok(Some((u.uid.as_raw(), u.gid.as_raw(), keep_switch)))
}

/// Refuses a file or directory that others may write to: the
/// configuration, the data directory and the queue decide where mail
/// goes. Owned by root or by us, and not group- or world-writable unless
/// the group is ours (the sticky drop directory is not checked here).
pub fn check_not_writable_by_others(path: &Path, what: &str) -> Result<(), String> {
    let m = match std::fs::metadata(path) {
        Ok(m) => m,
        // Made later, by us.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(format!("{what} {}: {e}", path.display())),
    };
    let me = nix::unistd::geteuid().as_raw();
    let my_gid = nix::unistd::getegid().as_raw();
    let mode = m.mode() & 0o7777;
    if m.uid() != 0 && m.uid() != me {
        return Err(format!(
            "{what} {} belongs to uid {}, not to root or to postern's user (uid {me}); refusing to trust it",
            path.display(),
            m.uid()
        ));
    }
    if mode & 0o002 != 0 {
        return Err(format!(
            "{what} {} is writable by everyone (mode {mode:04o}); chmod o-w it",
            path.display()
        ));
    }
    if mode & 0o020 != 0 && m.gid() != my_gid && m.gid() != 0 {
        return Err(format!(
            "{what} {} is writable by group {} (mode {mode:04o}); chmod g-w it",
            path.display(),
            m.gid()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn world_writable_is_refused_and_ours_is_fine() {
        let dir = std::env::temp_dir().join(format!("postern-privs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("postern.toml");
        std::fs::write(&f, "x").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(check_not_writable_by_others(&f, "config").is_ok());
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o666)).unwrap();
        let e = check_not_writable_by_others(&f, "config").unwrap_err();
        assert!(e.contains("writable by everyone (mode 0666)"), "{e}");
        assert!(check_not_writable_by_others(&dir.join("missing"), "x").is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn not_root_means_no_drop() {
        if !nix::unistd::geteuid().is_root() {
            assert_eq!(drop_to(Some("nobody"), |_| true), Ok(None));
        }
    }
}
