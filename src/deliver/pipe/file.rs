//! Aliases-file `/path` targets: one copy appended to an mbox file, as
//! local(8) does.

use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use super::{delivered_to_us, PipeAgent};
use crate::deliver::{Outcome, Target};
use crate::queue::spool::QueuedMessage;
use crate::route::{FileRoute, PipeRoute};
use crate::smtp::reply::Esc;

impl PipeAgent {
    /// Appends one copy to an mbox file as local(8) does: `From ` line,
    /// Return-Path:, X-Original-To:, Delivered-To:, `>From ` quoting, a
    /// blank line after; under an fcntl lock; written as the file's user,
    /// and cut back to its old length if anything fails.
    pub(super) fn append(&self, msg: &QueuedMessage, f: &FileRoute, t: &Target) -> Outcome {
        if delivered_to_us(msg, &t.address) {
            return Outcome::failed(
                Esc(5, 4, 6),
                format!("mail forwarding loop for {}", t.address),
            );
        }
        if f.path == std::path::Path::new("/dev/null") {
            return Outcome::delivered("discarded to /dev/null");
        }
        let route = PipeRoute::local("file", Vec::new(), f.user, None);
        let text = (|| {
            let (mut head, mut rest) = self.input(msg, &route, t)?;
            rest.read_to_end(&mut head)?;
            if !head.ends_with(b"\n") {
                head.push(b'\n');
            }
            head.push(b'\n');
            Ok::<_, io::Error>(head)
        })();
        let text = match text {
            Ok(t) => t,
            Err(e) => {
                return Outcome::deferred(
                    Esc(4, 3, 0),
                    format!("cannot read the queued message: {e}"),
                )
            }
        };
        match append_locked(&f.path, f.user, &text) {
            Ok(()) => Outcome::delivered(format!("delivered to file: {}", f.path.display())),
            Err(e) => {
                let mut o = crate::deliver::maildir::write_failure(&f.path, &e);
                o.text = format!("cannot append to {}: {e}", f.path.display());
                o
            }
        }
    }
}

/// O_APPEND under an fcntl write lock (waits up to a minute), as `user`;
/// a regular file only (no symlinks), created 0600 if missing.
fn append_locked(path: &std::path::Path, user: (u32, u32), text: &[u8]) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    use std::os::unix::io::AsRawFd;
    let am_root = crate::privs::can_switch_users();
    let _ids = crate::deliver::maildir::FsIds::switch(am_root.then_some(user))?;
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::other("not a regular file"));
    }
    let fd = file.as_raw_fd();
    let lock = nix::libc::flock {
        l_type: nix::libc::F_WRLCK as i16,
        l_whence: nix::libc::SEEK_SET as i16,
        l_start: 0,
        l_len: 0,
        l_pid: 0,
    };
    let give_up = Instant::now() + Duration::from_secs(60);
    loop {
        // SAFETY: fd is open for the call; lock is a valid flock struct.
        if unsafe { nix::libc::fcntl(fd, nix::libc::F_SETLK, &lock) } == 0 {
            break;
        }
        let e = io::Error::last_os_error();
        if !matches!(
            e.raw_os_error(),
            Some(nix::libc::EAGAIN) | Some(nix::libc::EACCES)
        ) || Instant::now() >= give_up
        {
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                format!("cannot lock: {e}"),
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // The length under the lock: what to cut back to.
    let before = file.metadata()?.len();
    let written = file.write_all(text).and_then(|()| file.sync_data());
    if let Err(e) = written {
        let _ = file.set_len(before);
        return Err(e);
    }
    Ok(())
}
