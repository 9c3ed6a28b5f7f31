//! A command's standard streams and its end, watched by one thread with
//! poll(2): the message goes in, what it prints comes back (the first
//! `limit` bytes of each stream are kept, the rest drained and dropped),
//! and its exit is seen through a pidfd the moment it happens.
//!
//! This replaced a feeder thread, two reader threads and a 10 ms waitpid
//! loop per delivery: three thread starts and up to 10 ms of a pipe slot
//! per message were most of what postern added to procmail's own cost.
//! Kernels without pidfd_open (before 5.3) fall back to WNOHANG polls
//! every 10 ms.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use nix::libc;

use super::super::spawn::{self, Spawned};

/// How the exchange ended.
pub(super) struct Ended {
    pub status: ExitStatus,
    /// Killed at the time limit while still running.
    pub timed_out: bool,
    /// The first `limit` bytes of standard error, then of standard output.
    pub output: Vec<u8>,
}

/// Time the command's leftovers (a background job holding its output
/// open) get after the time limit has killed its process group.
const GRACE: Duration = Duration::from_secs(1);
/// Without a pidfd: how often to ask whether the command has ended.
const NO_PIDFD_TICK: Duration = Duration::from_millis(10);

/// Our end of the command's standard input and what is left to send.
struct Feed {
    pipe: File,
    body: Box<dyn Read + Send>,
    buf: Vec<u8>,
    at: usize,
    body_done: bool,
}

impl Feed {
    /// Writes what the pipe takes now. `Ok(true)`: all sent, or the command
    /// stopped reading (EPIPE; it is judged by its exit). `Err`: the
    /// message itself could not be read.
    fn pump(&mut self) -> io::Result<bool> {
        loop {
            if self.at == self.buf.len() {
                if self.body_done {
                    return Ok(true);
                }
                self.buf.resize(64 * 1024, 0);
                let n = self.body.read(&mut self.buf)?;
                self.buf.truncate(n);
                self.at = 0;
                self.body_done = n == 0;
                continue;
            }
            match self.pipe.write(&self.buf[self.at..]) {
                Ok(n) => self.at += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Ok(true),
            }
        }
    }
}

/// Our end of standard output or error (until its end of file) and what
/// was kept of it.
struct Drain {
    pipe: Option<File>,
    kept: Vec<u8>,
}

impl Drain {
    /// Reads what is there; at end of file (or an error: nothing more will
    /// come) closes the pipe.
    fn pump(&mut self, limit: usize) {
        let Some(pipe) = &mut self.pipe else { return };
        let mut buf = [0u8; 8192];
        loop {
            match pipe.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    let room = limit.saturating_sub(self.kept.len());
                    self.kept.extend_from_slice(&buf[..n.min(room)]);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        self.pipe = None;
    }
}

/// O_NONBLOCK on our end only (the command's end stays blocking): one
/// ioctl rather than fcntl's read-modify-write pair.
fn nonblocking(f: &File) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: FIONBIO reads one int from a live local.
    if unsafe { libc::ioctl(f.as_raw_fd(), libc::FIONBIO, &on) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A descriptor that becomes readable when `pid` (our child) ends.
fn pidfd(pid: i32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags, no memory.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    // SAFETY: a new descriptor that nothing else owns.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

fn kill_group(pid: i32) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(-pid),
        nix::sys::signal::Signal::SIGKILL,
    );
}

/// One command being served: its pid, our ends of its streams, and what
/// is known of its end.
struct Serving {
    pid: i32,
    pidfd: Option<OwnedFd>,
    feed: Option<Feed>,
    /// Standard error first: its first line is the diagnostic.
    drains: [Drain; 2],
    limit: usize,
    status: Option<ExitStatus>,
    timed_out: bool,
    /// The time limit, then the end of the grace after the kill.
    end: Instant,
    killed: bool,
}

/// Feeds `head` then `body` to the command, keeps what it prints, and
/// waits for it until `timeout`; then kills its process group (a pipe
/// command runs in a session of its own).
///
/// The command gone, a child it left behind (a recipe's background job)
/// may still hold its standard input or output: those ends are served
/// until the time limit, then the group is killed and given `GRACE`. A
/// delivery never hangs on an orphan.
pub(super) fn exchange(
    child: Spawned,
    head: Vec<u8>,
    body: Box<dyn Read + Send>,
    limit: usize,
    timeout: Duration,
) -> io::Result<Ended> {
    for f in [&child.stdin, &child.stdout, &child.stderr] {
        nonblocking(f)?;
    }
    let mut s = Serving {
        pid: child.pid,
        pidfd: pidfd(child.pid),
        feed: Some(Feed {
            pipe: child.stdin,
            body,
            buf: head,
            at: 0,
            body_done: false,
        }),
        drains: [child.stderr, child.stdout].map(|p| Drain {
            pipe: Some(p),
            kept: Vec::new(),
        }),
        limit,
        status: None,
        timed_out: false,
        end: Instant::now() + timeout,
        killed: false,
    };
    loop {
        if let Err(e) = s.pump() {
            s.abandon();
            return Err(e);
        }
        if s.status.is_some() && !s.open() {
            break;
        }
        let now = Instant::now();
        if now < s.end {
            if let Err(e) = s.wait(s.end - now) {
                s.abandon();
                return Err(e);
            }
        } else if s.killed {
            break; // leftovers that even SIGKILL did not end: not waited for
        } else {
            s.kill(now)?;
        }
    }
    // Cut short by the grace period or not: what was read.
    let [err, out] = s.drains;
    let mut output = err.kept;
    output.extend_from_slice(&out.kept);
    output.truncate(limit);
    Ok(Ended {
        status: s
            .status
            .expect("the loop ends only once the status is known"),
        timed_out: s.timed_out,
        output,
    })
}

impl Serving {
    /// Moves what can move now: input out, output in, the exit status.
    /// `Err`: the queue file could not be read (the command must not take
    /// a truncated message for the whole one), or waitpid failed.
    fn pump(&mut self) -> io::Result<()> {
        if let Some(f) = &mut self.feed {
            if f.pump()? {
                self.feed = None;
            }
        }
        for d in &mut self.drains {
            d.pump(self.limit);
        }
        if self.status.is_none() {
            self.status = spawn::try_wait(self.pid)?;
        }
        Ok(())
    }

    fn open(&self) -> bool {
        self.feed.is_some() || self.drains.iter().any(|d| d.pipe.is_some())
    }

    /// Sleeps in poll(2) until a stream is ready, the command ends, or
    /// `left` has passed.
    fn wait(&self, left: Duration) -> io::Result<()> {
        let mut fds: Vec<libc::pollfd> = Vec::with_capacity(4);
        let mut watch = |fd: RawFd, events: libc::c_short| {
            fds.push(libc::pollfd {
                fd,
                events,
                revents: 0,
            })
        };
        if let Some(f) = &self.feed {
            watch(f.pipe.as_raw_fd(), libc::POLLOUT);
        }
        for p in self.drains.iter().filter_map(|d| d.pipe.as_ref()) {
            watch(p.as_raw_fd(), libc::POLLIN);
        }
        let mut left = left;
        match (&self.pidfd, self.status.is_none()) {
            (Some(p), true) => watch(p.as_raw_fd(), libc::POLLIN),
            (None, true) => left = left.min(NO_PIDFD_TICK),
            _ => {}
        }
        let ms = left.as_millis().clamp(1, i32::MAX as u128) as libc::c_int;
        // SAFETY: `fds` is a live array of `fds.len()` pollfd structures.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
        Ok(())
    }

    /// The time limit has come: the whole group is killed, the command
    /// reaped, and what is left gets `GRACE`.
    fn kill(&mut self, now: Instant) -> io::Result<()> {
        kill_group(self.pid);
        if self.status.is_none() {
            self.status = Some(spawn::wait(self.pid)?);
            self.timed_out = true;
        }
        self.killed = true;
        self.end = now + GRACE;
        Ok(())
    }

    /// Gives up on the command after an error: kills it and reaps it.
    fn abandon(&mut self) {
        kill_group(self.pid);
        if self.status.is_none() {
            let _ = spawn::wait(self.pid);
        }
    }
}
