//! Maildir delivery (the seed's virtual(8) with `home_mailbox = mail/`).
//!
//! Each copy is written as an anonymous file (O_TMPFILE) in `new/`,
//! fsynced, then linked into `new/` under its final name and the directory
//! fsynced (group commit, see fsutil): one directory change per copy, and
//! a crash before the link leaves nothing behind. Where O_TMPFILE is not
//! supported (an old kernel, some filesystems), the classic way: write in
//! `tmp/`, fsync, link into `new/`, unlink from `tmp/`. File names follow the form
//! Dovecot writes, `<secs>.M<usecs>P<pid>Q<n>.<host>,S=<size>`, but every
//! part is taken from the queue entry (arrival time, receiving pid, the
//! destination's index), not from the clock: the same message delivered
//! again after a crash gets the same name, so the copy that already landed
//! is recognised instead of duplicated. `S=` is the file's size, which is
//! what Dovecot checks.
//!
//! The steps ([`MaildirAgent::create`], [`MaildirAgent::publish`],
//! [`MaildirAgent::sync_new`]) are shared by the queue's agent and by the
//! one-write path of intake (mail written straight into Maildirs before
//! the 250).
//!
//! Files are created with the route's owner uid/gid (the seed's
//! virtual_uid_maps / virtual_gid_maps) by switching this thread's
//! filesystem ids around the creation; the rest of the process keeps its
//! own, and an open file needs no switch to be written.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::quota;
use super::{BlockingAgent, Outcome, Target};
use crate::fsutil::{self, DirSyncs};
use crate::queue::spool::QueuedMessage;
use crate::route::{MaildirRoute, Route};
use crate::smtp::reply::Esc;
use crate::space::Reserve;

pub struct MaildirAgent {
    /// Host part of file names, with `/` and `:` escaped as the spec asks.
    host: String,
    /// The free-space reserve of each base's filesystem.
    reserves: Vec<(PathBuf, Reserve)>,
    /// [quota] over_quota = "bounce" (else defer).
    bounce_over_quota: bool,
    /// The mailbox base directories: everything below them belongs to the
    /// delivery user; they are recreated if someone removes them.
    bases: Vec<PathBuf>,
    syncs: DirSyncs,
    /// Directories are made by one thread at a time, so none sees another's
    /// half-made (not yet chowned) Maildir as finished.
    making: std::sync::Mutex<()>,
}

/// The parts of a Maildir file name that identify one message copy.
#[derive(Clone, Copy, Debug)]
pub struct CopyId {
    pub arrival_micros: u64,
    pub pid: u32,
    /// The destination's position in the message (0-based).
    pub index: usize,
}

impl CopyId {
    /// `<secs>.M<usecs>P<pid>Q`: shared by every copy of one message.
    pub fn stem(&self) -> String {
        let secs = self.arrival_micros / 1_000_000;
        let usecs = self.arrival_micros % 1_000_000;
        format!("{secs}.M{usecs}P{}Q", self.pid)
    }
}

/// A copy being written: an anonymous inode (O_TMPFILE), or a file in
/// `tmp/` where that is not supported.
pub struct TmpFile {
    pub file: File,
    /// The `tmp/` name, if it has one.
    pub path: Option<PathBuf>,
}

impl TmpFile {
    /// Removes the `tmp/` name, if any (an anonymous file goes away with
    /// its descriptor).
    pub fn remove(&self) {
        if let Some(p) = &self.path {
            let _ = fs::remove_file(p);
        }
    }
}

/// An anonymous file in `dir` (O_TMPFILE), or `None` if this kernel or
/// filesystem has none (then `tmp/` is used).
fn open_anonymous(dir: &Path) -> io::Result<Option<File>> {
    match OpenOptions::new()
        .read(true)
        .write(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_TMPFILE)
        .open(dir)
    {
        Ok(f) => Ok(Some(f)),
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(nix::libc::EOPNOTSUPP | nix::libc::EISDIR | nix::libc::EINVAL)
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Gives an anonymous file its name in `dir` (linkat with AT_EMPTY_PATH,
/// which needs CAP_DAC_READ_SEARCH, else through /proc/self/fd).
fn link_anonymous(f: &File, to: &Path) -> io::Result<()> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::io::AsRawFd;
    let to_c = CString::new(to.as_os_str().as_bytes()).map_err(io::Error::other)?;
    let fd = f.as_raw_fd();
    // SAFETY: valid fd, NUL-terminated paths that outlive the call.
    let r = unsafe {
        nix::libc::linkat(
            fd,
            c"".as_ptr(),
            nix::libc::AT_FDCWD,
            to_c.as_ptr(),
            nix::libc::AT_EMPTY_PATH,
        )
    };
    if r == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    if !matches!(e.raw_os_error(), Some(nix::libc::ENOENT | nix::libc::EPERM)) {
        return Err(e);
    }
    let proc_path = CString::new(format!("/proc/self/fd/{fd}")).map_err(io::Error::other)?;
    // SAFETY: as above.
    let r = unsafe {
        nix::libc::linkat(
            nix::libc::AT_FDCWD,
            proc_path.as_ptr(),
            nix::libc::AT_FDCWD,
            to_c.as_ptr(),
            nix::libc::AT_SYMLINK_FOLLOW,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

impl MaildirAgent {
    /// `min_free`: the reserve of free space (see space.rs); 0 for none.
    pub fn new(hostname: &str, bases: Vec<PathBuf>, min_free: u64) -> MaildirAgent {
        let host = hostname.replace('/', "\\057").replace(':', "\\072");
        MaildirAgent {
            host,
            bounce_over_quota: true,
            reserves: bases
                .iter()
                .map(|b| {
                    (
                        b.clone(),
                        Reserve::new(b.clone(), min_free, "Maildir deliveries"),
                    )
                })
                .collect(),
            bases,
            syncs: DirSyncs::default(),
            making: std::sync::Mutex::new(()),
        }
    }

    /// The agent `cfg` describes: its host name, both mailbox bases, the
    /// free-space reserve, and bounce or defer over quota.
    pub fn for_config(cfg: &crate::config::Config) -> MaildirAgent {
        let agent = MaildirAgent::new(
            cfg.hostname(),
            vec![cfg.mailbox_base(), cfg.local_mailbox_base()],
            cfg.min_free(),
        );
        match cfg.quota.over_quota {
            crate::config::OverQuota::Bounce => agent,
            crate::config::OverQuota::Defer => agent.defer_over_quota(),
        }
    }

    /// Over-quota mail defers instead of bouncing.
    pub fn defer_over_quota(mut self) -> Self {
        self.bounce_over_quota = false;
        self
    }

    /// Makes the Maildir if it is missing (before a command such as
    /// procmail is told to deliver into it: procmail makes no parents).
    pub fn prepare(&self, m: &MaildirRoute) -> io::Result<()> {
        let _one_at_a_time = self.making.lock().unwrap_or_else(|e| e.into_inner());
        self.make_dirs(m)
    }

    /// Over quota: bounce (true) or defer?
    pub fn bounces_over_quota(&self) -> bool {
        self.bounce_over_quota
    }

    /// Does a copy of `size` bytes fit the mailbox's quota? `Ok(Err(..))`
    /// with the outcome for an over-quota mailbox (bounce 552 5.2.2 or
    /// defer 452 4.2.2, as [quota] over_quota says).
    pub fn quota_check(&self, m: &MaildirRoute, size: u64) -> io::Result<Result<(), Outcome>> {
        if m.quota == crate::route::Quota::default() {
            return Ok(Ok(()));
        }
        let _ids = FsIds::switch(m.owner)?;
        Ok(quota::fits(&m.path, m.quota, size)?.map_err(|used| self.over_quota(m, used, size)))
    }

    /// The outcome for a mailbox over its quota.
    pub fn over_quota(&self, m: &MaildirRoute, used: quota::Usage, size: u64) -> Outcome {
        let text = format!(
            "mailbox is full: {} of {} bytes used, this message is {size} bytes",
            used.bytes, m.quota.bytes
        );
        if self.bounce_over_quota {
            Outcome::failed(Esc(5, 2, 2), text)
        } else {
            Outcome::deferred(Esc(4, 2, 2), text)
        }
    }

    /// Counts a delivered copy in the mailbox's maildirsize.
    pub fn quota_add(&self, m: &MaildirRoute, size: u64) {
        if m.quota != crate::route::Quota::default() {
            if let Ok(_ids) = FsIds::switch(m.owner) {
                let _ = quota::add(&m.path, size);
            }
        }
    }

    /// Would a copy of `size` bytes leave the reserve free on the Maildir's
    /// filesystem? (A Maildir outside the bases is not checked.)
    pub fn has_room(&self, m: &MaildirRoute, size: u64) -> bool {
        match self.reserves.iter().find(|(b, _)| m.path.starts_with(b)) {
            Some((_, r)) if r.min_free() > 0 => r.accepts_delivery(size),
            _ => true,
        }
    }

    /// The head every copy starts with (Return-Path, Delivered-To).
    pub fn head(sender: &str, address: &str) -> String {
        format!("Return-Path: <{sender}>\nDelivered-To: {address}\n")
    }

    /// The `tmp/` name of a copy whose size is not known yet.
    pub fn tmp_name(&self, id: &CopyId) -> String {
        format!("{}{}.{}", id.stem(), id.index + 1, self.host)
    }

    /// The final file name of a copy of `size` bytes.
    pub fn name(&self, id: &CopyId, size: u64) -> String {
        format!("{}{}.{},S={size}", id.stem(), id.index + 1, self.host)
    }

    /// Creates a copy's file as the route's owner, making the Maildir
    /// first if it is missing: anonymous in `new/`, or `tmp/<name>` (a
    /// leftover of an attempt cut short is replaced).
    pub fn create(&self, m: &MaildirRoute, name: &str) -> io::Result<TmpFile> {
        let new = m.path.join("new");
        let anonymous = {
            let _ids = FsIds::switch(m.owner)?;
            open_anonymous(&new)
        };
        match anonymous {
            Ok(Some(file)) => return Ok(TmpFile { file, path: None }),
            Ok(None) => {}
            Err(e)
                if e.kind() == io::ErrorKind::NotFound
                    || (e.kind() == io::ErrorKind::PermissionDenied && m.owner.is_some()) =>
            {
                {
                    let _one_at_a_time = self.making.lock().unwrap_or_else(|e| e.into_inner());
                    self.make_dirs(m)?;
                }
                let _ids = FsIds::switch(m.owner)?;
                if let Some(file) = open_anonymous(&new)? {
                    return Ok(TmpFile { file, path: None });
                }
            }
            Err(e) => return Err(e),
        }
        let path = m.path.join("tmp").join(name);
        let first = {
            let _ids = FsIds::switch(m.owner)?;
            create_excl(&path)
        };
        let file = match first {
            // First delivery, someone removed the Maildir, or another thread
            // is making it right now (not yet chowned to the delivery user):
            // make it, with our own ids.
            Err(e)
                if e.kind() == io::ErrorKind::NotFound
                    || (e.kind() == io::ErrorKind::PermissionDenied && m.owner.is_some()) =>
            {
                {
                    let _one_at_a_time = self.making.lock().unwrap_or_else(|e| e.into_inner());
                    self.make_dirs(m)?;
                }
                let _ids = FsIds::switch(m.owner)?;
                create_excl(&path)?
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                fs::remove_file(&path)?;
                let _ids = FsIds::switch(m.owner)?;
                create_excl(&path)?
            }
            other => other?,
        };
        Ok(TmpFile {
            file,
            path: Some(path),
        })
    }

    /// Links a complete, fsynced copy into `new/` under `name` (and
    /// removes its `tmp/` name, if it has one). `Ok(false)`: a copy of the
    /// same size was already there (a redelivery). Does not sync `new/`.
    pub fn publish(
        &self,
        m: &MaildirRoute,
        tmp: &TmpFile,
        name: &str,
        size: u64,
    ) -> io::Result<bool> {
        let new_path = m.path.join("new").join(name);
        let linked = match &tmp.path {
            None => link_anonymous(&tmp.file, &new_path),
            Some(p) => {
                let l = fs::hard_link(p, &new_path);
                let _ = fs::remove_file(p);
                l
            }
        };
        match linked {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                if fs::metadata(&new_path)?.size() != size {
                    return Err(io::Error::other(format!(
                        "{} exists with another size",
                        new_path.display()
                    )));
                }
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// Makes the links into `new/` durable (shared by concurrent callers).
    pub fn sync_new(&self, m: &MaildirRoute) -> io::Result<()> {
        self.syncs.get(&m.path.join("new")).sync()
    }

    /// Creates the Maildir (and any missing directory between it and its
    /// base) owned by the delivery user. Done with our own ids: a missing
    /// base sits in a directory the delivery user may not write.
    fn make_dirs(&self, m: &MaildirRoute) -> io::Result<()> {
        let place = &m.path;
        let subs = [place.join("tmp"), place.join("new"), place.join("cur")];
        if subs.iter().all(|d| d.is_dir()) {
            return Ok(());
        }
        let base = self.bases.iter().find(|b| place.starts_with(b));
        let (Some((uid, gid)), Some(base)) = (m.owner, base) else {
            // Outside the bases (an alias's /dir/ target): made by its
            // owner, where that owner may write.
            let _ids = FsIds::switch(m.owner)?;
            for d in &subs {
                fsutil::ensure_dir(d, 0o700)?;
            }
            return Ok(());
        };
        if let Some(parent) = base.parent() {
            fsutil::ensure_dir(parent, 0o755)?;
        }
        let mut dirs = vec![base.clone()];
        let mut p = base.clone();
        for c in place
            .strip_prefix(base)
            .map_err(io::Error::other)?
            .components()
        {
            p.push(c);
            dirs.push(p.clone());
        }
        dirs.extend(subs);
        for (i, d) in dirs.iter().enumerate() {
            let mode = if i == 0 { 0o755 } else { 0o700 };
            match fs::DirBuilder::new().mode(mode).create(d) {
                Ok(()) => std::os::unix::fs::chown(d, Some(uid), Some(gid))?,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// One copy of a queued message, all steps.
    fn deliver_one(
        &self,
        msg: &QueuedMessage,
        t: &Target,
        m: &MaildirRoute,
        recovered: bool,
    ) -> io::Result<Result<String, Outcome>> {
        let env = &msg.env;
        let head = Self::head(&env.sender.to_string(), &t.address);
        let size = head.len() as u64 + msg.body_len;
        let id = CopyId {
            arrival_micros: env.arrival_micros,
            pid: env.pid,
            index: t.index,
        };
        let name = self.name(&id, size);
        if recovered && already_delivered(&m.path, &id.stem())? {
            // A crash may have cut in between the link and the unlink.
            let _ = fs::remove_file(m.path.join("tmp").join(&name));
            return Ok(Ok("already delivered before restart".into()));
        }
        if !self.has_room(m, size) {
            return Err(io::Error::from_raw_os_error(nix::libc::ENOSPC));
        }
        if let Err(over) = self.quota_check(m, size)? {
            return Ok(Err(over));
        }
        let mut tmp = self.create(m, &name)?;
        let written = (|| {
            tmp.file.write_all(head.as_bytes())?;
            io::copy(&mut msg.body()?, &mut tmp.file)?;
            tmp.file.sync_data()
        })();
        if let Err(e) = written {
            tmp.remove();
            return Err(e);
        }
        if !self.publish(m, &tmp, &name, size)? {
            return Ok(Ok("already delivered".into()));
        }
        self.sync_new(m)?;
        self.quota_add(m, size);
        Ok(Ok(format!("delivered to maildir as {name}")))
    }
}

/// Why a Maildir write failed, as a deferral: a full disk or quota is
/// 4.3.1 / 4.2.2, anything else 4.3.0.
pub fn write_failure(place: &Path, e: &io::Error) -> Outcome {
    let esc = match e.raw_os_error() {
        Some(nix::libc::ENOSPC) => Esc(4, 3, 1),
        Some(nix::libc::EDQUOT) => Esc(4, 2, 2),
        _ => Esc(4, 3, 0),
    };
    let why = match e.raw_os_error() {
        Some(nix::libc::ENOSPC) => {
            "not enough free space (queue.min_free is kept free)".to_string()
        }
        _ => e.to_string(),
    };
    Outcome::deferred(
        esc,
        format!("cannot write to maildir {}: {why}", place.display()),
    )
}

/// Checks that the delivery user can create files in `dir` (every
/// directory above it must let that user through). Run once at start, so a
/// permission problem is a clear start-up error instead of deferred mail.
pub fn check_writable(owner: Option<(u32, u32)>, dir: &Path) -> io::Result<()> {
    let dir = dir.to_path_buf();
    // On a thread of its own: the filesystem ids are per thread.
    std::thread::spawn(move || {
        let _ids = FsIds::switch(owner)?;
        let probe = dir.join(format!(".postern-probe-{}", std::process::id()));
        create_excl(&probe)?;
        fs::remove_file(&probe)
    })
    .join()
    .unwrap_or_else(|_| Err(io::Error::other("probe thread failed")))
}

fn create_excl(p: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .read(true)
        .create_new(true)
        .mode(0o600)
        .open(p)
}

/// A copy of this message (any destination index) in `new/` or `cur/`;
/// Dovecot moves files to `cur/` and appends flags, never changing the stem.
fn already_delivered(maildir: &Path, stem: &str) -> io::Result<bool> {
    for d in [maildir.join("new"), maildir.join("cur")] {
        let entries = match fs::read_dir(d) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            other => other?,
        };
        for e in entries {
            if e?.file_name().to_string_lossy().starts_with(stem) {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

impl BlockingAgent for MaildirAgent {
    fn name(&self) -> &'static str {
        "maildir"
    }

    fn deliver(&self, msg: &QueuedMessage, targets: &[Target], recovered: bool) -> Vec<Outcome> {
        targets
            .iter()
            .map(|t| {
                let Route::Maildir(m) = &t.route else {
                    return Outcome::deferred(Esc(4, 3, 5), "not a Maildir route");
                };
                match self.deliver_one(msg, t, m, recovered) {
                    Ok(Ok(text)) => Outcome::delivered(text),
                    Ok(Err(over_quota)) => over_quota,
                    Err(e) => write_failure(&m.path, &e),
                }
            })
            .collect()
    }
}

/// This thread's filesystem uid/gid switched for the scope (Linux
/// setfsuid/setfsgid are per thread), restored on drop.
pub(crate) struct FsIds {
    restore: Option<(u32, u32)>,
}

thread_local! {
    /// The ids this thread has switched to and read back once: a switch
    /// that worked once works again (the capability does not go away), so
    /// later switches skip the read-back's two system calls.
    static VERIFIED: std::cell::Cell<Option<(u32, u32)>> = const { std::cell::Cell::new(None) };
}

impl FsIds {
    pub(crate) fn switch(owner: Option<(u32, u32)>) -> io::Result<FsIds> {
        let Some((uid, gid)) = owner else {
            return Ok(FsIds { restore: None });
        };
        use nix::unistd::{setfsgid, setfsuid, Gid, Uid};
        let old_gid = setfsgid(Gid::from_raw(gid));
        let old_uid = setfsuid(Uid::from_raw(uid));
        if VERIFIED.get() == Some((uid, gid)) {
            return Ok(FsIds {
                restore: Some((old_uid.as_raw(), old_gid.as_raw())),
            });
        }
        // setfsuid reports the previous value, never an error: read back.
        if setfsuid(Uid::from_raw(uid)).as_raw() != uid
            || setfsgid(Gid::from_raw(gid)).as_raw() != gid
        {
            setfsuid(old_uid);
            setfsgid(old_gid);
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("cannot switch to uid {uid} gid {gid}"),
            ));
        }
        VERIFIED.set(Some((uid, gid)));
        Ok(FsIds {
            restore: Some((old_uid.as_raw(), old_gid.as_raw())),
        })
    }
}

impl Drop for FsIds {
    fn drop(&mut self) {
        if let Some((uid, gid)) = self.restore.take() {
            nix::unistd::setfsuid(nix::unistd::Uid::from_raw(uid));
            nix::unistd::setfsgid(nix::unistd::Gid::from_raw(gid));
        }
    }
}
