//! Maildir delivery (the seed's virtual(8) with `home_mailbox = mail/`).
//!
//! Each copy is written to `tmp/`, fsynced, linked into `new/` and the
//! directory fsynced (group commit, see fsutil). File names follow the form
//! Dovecot writes, `<secs>.M<usecs>P<pid>Q<n>.<host>,S=<size>`, but every
//! part is taken from the queue entry (arrival time, receiving pid, the
//! destination's index), not from the clock: the same message delivered
//! again after a crash gets the same name, so the copy that already landed
//! is recognised instead of duplicated. `S=` is the file's size, which is
//! what Dovecot checks.
//!
//! Files are created with the configured delivery uid/gid (the seed's
//! virtual_uid_maps / virtual_gid_maps) by switching this thread's
//! filesystem ids around the write; the rest of the process keeps its own.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::{Agent, Outcome, Target};
use crate::fsutil::{self, DirSyncs};
use crate::queue::spool::QueuedMessage;
use crate::smtp::reply::Esc;

pub struct MaildirAgent {
    /// Host part of file names, with `/` and `:` escaped as the spec asks.
    host: String,
    owner: Option<(u32, u32)>,
    /// The mailbox base directories: everything below them belongs to the
    /// delivery user; they are recreated if someone removes them.
    bases: Vec<PathBuf>,
    syncs: DirSyncs,
    /// Directories are made by one thread at a time, so none sees another's
    /// half-made (not yet chowned) Maildir as finished.
    making: std::sync::Mutex<()>,
}

impl MaildirAgent {
    /// `owner`: uid/gid to create files as, when it differs from ours.
    pub fn new(hostname: &str, owner: Option<(u32, u32)>, bases: Vec<PathBuf>) -> MaildirAgent {
        let host = hostname.replace('/', "\\057").replace(':', "\\072");
        MaildirAgent {
            host,
            owner,
            bases,
            syncs: DirSyncs::default(),
            making: std::sync::Mutex::new(()),
        }
    }

    /// Creates the Maildir (and any missing directory between it and its
    /// base) owned by the delivery user. Done with our own ids: a missing
    /// base sits in a directory the delivery user may not write.
    fn make_dirs(&self, place: &Path) -> io::Result<()> {
        let subs = [place.join("tmp"), place.join("new"), place.join("cur")];
        if subs.iter().all(|d| d.is_dir()) {
            return Ok(());
        }
        let base = self.bases.iter().find(|b| place.starts_with(b));
        let (Some((uid, gid)), Some(base)) = (self.owner, base) else {
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

    fn deliver_one(&self, msg: &QueuedMessage, t: &Target, recovered: bool) -> io::Result<String> {
        let mut ids = FsIds::switch(self.owner)?;
        let env = &msg.env;
        let head = format!(
            "Return-Path: <{}>\nDelivered-To: {}\n",
            env.sender, t.address
        );
        let size = head.len() as u64 + msg.body_len;
        let secs = env.arrival_micros / 1_000_000;
        let usecs = env.arrival_micros % 1_000_000;
        let stem = format!("{secs}.M{usecs}P{}Q", env.pid);
        let name = format!("{stem}{}.{},S={size}", t.index + 1, self.host);
        let (tmp, new, cur) = (
            t.place.join("tmp"),
            t.place.join("new"),
            t.place.join("cur"),
        );
        let tmp_path = tmp.join(&name);
        if recovered && already_delivered(&new, &cur, &stem)? {
            // A crash may have cut in between the link and the unlink.
            let _ = fs::remove_file(&tmp_path);
            return Ok("already delivered before restart".into());
        }
        let mut f = match create_excl(&tmp_path) {
            // First delivery, someone removed the Maildir, or another
            // thread is making it right now (its directories are not yet
            // chowned to the delivery user): make it, with our own ids.
            Err(e)
                if e.kind() == io::ErrorKind::NotFound
                    || (e.kind() == io::ErrorKind::PermissionDenied && self.owner.is_some()) =>
            {
                ids.pause();
                {
                    let _one_at_a_time = self.making.lock().unwrap_or_else(|e| e.into_inner());
                    self.make_dirs(&t.place)?;
                }
                ids.resume()?;
                create_excl(&tmp_path)?
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                // A leftover from an attempt cut short: start it over.
                fs::remove_file(&tmp_path)?;
                create_excl(&tmp_path)?
            }
            other => other?,
        };
        let written = (|| {
            f.write_all(head.as_bytes())?;
            io::copy(&mut msg.body()?, &mut f)?;
            f.sync_all()
        })();
        drop(f);
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp_path);
            return Err(e);
        }
        let new_path = new.join(&name);
        let linked = fs::hard_link(&tmp_path, &new_path);
        let _ = fs::remove_file(&tmp_path);
        match linked {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                if fs::metadata(&new_path)?.size() != size {
                    return Err(io::Error::other(format!(
                        "{} exists with another size",
                        new_path.display()
                    )));
                }
                return Ok("already delivered".into());
            }
            Err(e) => return Err(e),
        }
        self.syncs.get(&new).sync()?;
        Ok(format!("delivered to maildir as {name}"))
    }
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
        .create_new(true)
        .mode(0o600)
        .open(p)
}

/// A copy of this message (any destination index) in `new/` or `cur/`;
/// Dovecot moves files to `cur/` and appends flags, never changing the stem.
fn already_delivered(new: &Path, cur: &Path, stem: &str) -> io::Result<bool> {
    for d in [new, cur] {
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

impl Agent for MaildirAgent {
    fn name(&self) -> &'static str {
        "maildir"
    }

    fn deliver(&self, msg: &QueuedMessage, targets: &[Target], recovered: bool) -> Vec<Outcome> {
        targets
            .iter()
            .map(|t| match self.deliver_one(msg, t, recovered) {
                Ok(text) => Outcome::Delivered { text },
                Err(e) => {
                    let esc = match e.raw_os_error() {
                        Some(nix::libc::ENOSPC) => Esc(4, 3, 1),
                        Some(nix::libc::EDQUOT) => Esc(4, 2, 2),
                        _ => Esc(4, 3, 0),
                    };
                    Outcome::deferred(
                        esc,
                        format!("cannot write to maildir {}: {e}", t.place.display()),
                    )
                }
            })
            .collect()
    }
}

/// This thread's filesystem uid/gid switched for the scope (Linux
/// setfsuid/setfsgid are per thread), restored on drop.
struct FsIds {
    owner: Option<(u32, u32)>,
    restore: Option<(u32, u32)>,
}

impl FsIds {
    fn switch(owner: Option<(u32, u32)>) -> io::Result<FsIds> {
        let mut ids = FsIds {
            owner,
            restore: None,
        };
        ids.resume()?;
        Ok(ids)
    }

    /// Back to our own ids until [`FsIds::resume`].
    fn pause(&mut self) {
        if let Some((uid, gid)) = self.restore.take() {
            nix::unistd::setfsuid(nix::unistd::Uid::from_raw(uid));
            nix::unistd::setfsgid(nix::unistd::Gid::from_raw(gid));
        }
    }

    fn resume(&mut self) -> io::Result<()> {
        let Some((uid, gid)) = self.owner else {
            return Ok(());
        };
        use nix::unistd::{setfsgid, setfsuid, Gid, Uid};
        let old_gid = setfsgid(Gid::from_raw(gid));
        let old_uid = setfsuid(Uid::from_raw(uid));
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
        self.restore = Some((old_uid.as_raw(), old_gid.as_raw()));
        Ok(())
    }
}

impl Drop for FsIds {
    fn drop(&mut self) {
        self.pause();
    }
}
