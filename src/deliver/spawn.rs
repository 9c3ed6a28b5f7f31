//! Starting a pipe command without copying postern.
//!
//! `std::process::Command` falls back to `fork()` as soon as a command
//! needs a uid, groups or a `pre_exec` hook, which every pipe delivery
//! does. postern is one process with dozens of threads: each fork copies
//! its page tables, write-protects every page, and after it every thread
//! that writes takes a copy-on-write fault with a TLB shootdown on every
//! core; the copy is then thrown away by `exec`. Measured with
//! `scripts/bench --hooks` and perf, that was about 60 % of postern's CPU
//! per procmail delivery, and made it slower than Postfix, whose small
//! single-threaded pipe(8) processes fork cheaply.
//!
//! This does what glibc's `posix_spawn` does instead: `clone(CLONE_VM |
//! CLONE_VFORK)` on a stack of its own, so nothing is copied and the
//! parent thread waits until the child has called `execve` (or failed).
//! posix_spawn itself cannot change uid and groups, so the child does
//! that here, between the clone and the exec.
//!
//! The child shares postern's memory, so it may only make system calls on
//! data prepared beforehand: no allocation, no locks, no thread-locals.
//! uid, gid and groups change through raw system calls: glibc's
//! `setuid()` family would broadcast the change to all of *postern's*
//! threads (its setxid machinery), which the child would look like. All
//! signals are blocked around the clone; the child sets caught signals
//! back to their default before it unblocks them, so no postern handler
//! ever runs in it, and resets SIGPIPE and SIGXFSZ, which postern ignores,
//! as std does for SIGPIPE.

use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::ExitStatus;

use nix::libc;

/// What to run and how.
pub struct Spec<'a> {
    pub argv: &'a [String],
    /// "NAME=value" pairs: the whole environment.
    pub env: &'a [(String, String)],
    pub cwd: &'a Path,
    /// Switch to uid, gid and these groups (only when running as root).
    pub creds: Option<(u32, u32, Vec<u32>)>,
}

/// A running command: its pid and our ends of its standard streams.
pub struct Spawned {
    pub pid: i32,
    pub stdin: File,
    pub stdout: File,
    pub stderr: File,
}

/// Everything the child needs, as raw pointers into memory the parent keeps
/// alive (and does not touch) until the child has exec'd or exited.
struct ChildArgs {
    path: *const libc::c_char,
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
    cwd: *const libc::c_char,
    /// stdin, stdout, stderr of the child.
    fds: [RawFd; 3],
    set_creds: bool,
    uid: libc::uid_t,
    gid: libc::gid_t,
    groups: *const libc::gid_t,
    ngroups: usize,
    /// Highest signal number.
    sigmax: libc::c_int,
    /// The errno of the step that failed (0: exec'd).
    error: libc::c_int,
}

#[cfg(any(target_arch = "arm", target_arch = "x86"))]
mod ids {
    // 32-bit ARM and x86: the plain calls take 16-bit ids.
    pub use nix::libc::{
        SYS_setgroups32 as SETGROUPS, SYS_setresgid32 as SETRESGID, SYS_setresuid32 as SETRESUID,
    };
}
#[cfg(not(any(target_arch = "arm", target_arch = "x86")))]
mod ids {
    pub use nix::libc::{
        SYS_setgroups as SETGROUPS, SYS_setresgid as SETRESGID, SYS_setresuid as SETRESUID,
    };
}

fn cstring(s: &[u8]) -> io::Result<CString> {
    CString::new(s).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "a NUL byte in a command argument or the environment",
        )
    })
}

/// argv[0] as execve needs it: a name without a slash is looked up in
/// the PATH the command gets (as execvp would do in the child).
fn resolve(program: &str, env: &[(String, String)]) -> String {
    if program.contains('/') {
        return program.to_string();
    }
    let path = env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.as_str())
        .unwrap_or("/usr/bin:/bin");
    for dir in path.split(':').filter(|d| !d.is_empty()) {
        let p = Path::new(dir).join(program);
        if let Ok(m) = std::fs::metadata(&p) {
            use std::os::unix::fs::PermissionsExt;
            if m.is_file() && m.permissions().mode() & 0o111 != 0 {
                return p.to_string_lossy().into_owned();
            }
        }
    }
    program.to_string()
}

pub fn spawn(spec: &Spec) -> io::Result<Spawned> {
    if spec.argv.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "an empty command",
        ));
    }
    let path = cstring(resolve(&spec.argv[0], spec.env).as_bytes())?;
    let args: Vec<CString> = spec
        .argv
        .iter()
        .map(|a| cstring(a.as_bytes()))
        .collect::<io::Result<_>>()?;
    let envs: Vec<CString> = spec
        .env
        .iter()
        .map(|(k, v)| cstring(&[k.as_bytes(), b"=", v.as_bytes()].concat()))
        .collect::<io::Result<_>>()?;
    let mut argv: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let mut envp: Vec<*const libc::c_char> = envs.iter().map(|e| e.as_ptr()).collect();
    envp.push(std::ptr::null());
    let cwd = cstring(OsStr::as_bytes(spec.cwd.as_os_str()))?;
    let (set_creds, uid, gid, groups) = match &spec.creds {
        Some((u, g, gs)) => (true, *u, *g, gs.clone()),
        None => (false, 0, 0, Vec::new()),
    };

    let flags = nix::fcntl::OFlag::O_CLOEXEC;
    let (in_r, in_w) = nix::unistd::pipe2(flags)?;
    let (out_r, out_w) = nix::unistd::pipe2(flags)?;
    let (err_r, err_w) = nix::unistd::pipe2(flags)?;

    let mut a = ChildArgs {
        path: path.as_ptr(),
        argv: argv.as_ptr(),
        envp: envp.as_ptr(),
        cwd: cwd.as_ptr(),
        fds: [in_r.as_raw_fd(), out_w.as_raw_fd(), err_w.as_raw_fd()],
        set_creds,
        uid,
        gid,
        groups: groups.as_ptr(),
        ngroups: groups.len(),
        sigmax: libc::SIGRTMAX(),
        error: 0,
    };
    // The child's stack: plenty for the few calls it makes.
    let mut stack = vec![0u8; 64 * 1024];
    let top = ((stack.as_mut_ptr() as usize + stack.len()) & !15) as *mut libc::c_void;

    // SAFETY: the child only makes system calls on `a` and the buffers it
    // points into, all alive until clone returns (CLONE_VFORK: after the
    // child's exec or exit). Signals are blocked across the clone so no
    // handler of ours runs on the child's stack before it resets them.
    let (pid, error) = unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        let pid = libc::clone(
            child,
            top,
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            &mut a as *mut ChildArgs as *mut libc::c_void,
        );
        let clone_error = io::Error::last_os_error();
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
        if pid < 0 {
            return Err(clone_error);
        }
        (pid, std::ptr::read_volatile(&a.error))
    };
    drop(stack);
    if error != 0 {
        // It never exec'd: reap it, report why.
        let mut status = 0;
        // SAFETY: waiting for our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        return Err(io::Error::from_raw_os_error(error));
    }
    drop((in_r, out_w, err_w));
    Ok(Spawned {
        pid,
        stdin: File::from(in_w),
        stdout: File::from(out_r),
        stderr: File::from(err_r),
    })
}

/// The child, on its own stack in postern's memory: system calls only.
extern "C" fn child(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the parent's ChildArgs, alive while we run.
    unsafe {
        let a = &mut *(arg as *mut ChildArgs);
        unsafe fn fail(a: &mut ChildArgs) -> ! {
            let e = *libc::__errno_location();
            std::ptr::write_volatile(&mut a.error, if e == 0 { libc::EINVAL } else { e });
            libc::_exit(127)
        }
        // Standard streams. The pipes are close-on-exec; the copies made
        // on 0, 1 and 2 are not. An end that already is 0, 1 or 2 (postern
        // started without them) keeps its number and loses the flag.
        let fds = a.fds;
        for (target, fd) in fds.into_iter().enumerate() {
            let target = target as RawFd;
            if fd == target {
                if libc::fcntl(fd, libc::F_SETFD, 0) < 0 {
                    fail(a);
                }
            } else if libc::dup2(fd, target) < 0 {
                fail(a);
            }
        }
        if libc::chdir(a.cwd) < 0 {
            fail(a);
        }
        if libc::setsid() < 0 {
            fail(a);
        }
        if a.set_creds
            && (libc::syscall(ids::SETGROUPS, a.ngroups, a.groups) < 0
                || libc::syscall(ids::SETRESGID, a.gid, a.gid, a.gid) < 0
                || libc::syscall(ids::SETRESUID, a.uid, a.uid, a.uid) < 0)
        {
            fail(a);
        }
        // A daemon with ambient capabilities (systemd) must not pass them
        // on to the command (capabilities(7)); fails harmlessly on old kernels.
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        );
        // Signals: caught ones (and the two postern ignores) back to their
        // default, then none blocked, as std's spawn leaves them.
        let mut act: libc::sigaction = std::mem::zeroed();
        for sig in 1..=a.sigmax {
            if sig == libc::SIGKILL || sig == libc::SIGSTOP {
                continue;
            }
            if libc::sigaction(sig, std::ptr::null(), &mut act) < 0 {
                continue; // libc's own signals
            }
            if (act.sa_sigaction != libc::SIG_DFL && act.sa_sigaction != libc::SIG_IGN)
                || sig == libc::SIGPIPE
                || sig == libc::SIGXFSZ
            {
                let mut dfl: libc::sigaction = std::mem::zeroed();
                dfl.sa_sigaction = libc::SIG_DFL;
                libc::sigaction(sig, &dfl, std::ptr::null_mut());
            }
        }
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
        libc::execve(a.path, a.argv, a.envp);
        fail(a)
    }
}

/// waitpid, WNOHANG: the status once it has ended.
pub fn try_wait(pid: i32) -> io::Result<Option<ExitStatus>> {
    let mut status = 0;
    // SAFETY: waiting for our own child.
    match unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) } {
        0 => Ok(None),
        p if p == pid => Ok(Some(ExitStatus::from_raw(status))),
        _ => Err(io::Error::last_os_error()),
    }
}

/// waitpid until it has ended.
pub fn wait(pid: i32) -> io::Result<ExitStatus> {
    loop {
        let mut status = 0;
        // SAFETY: waiting for our own child.
        match unsafe { libc::waitpid(pid, &mut status, 0) } {
            p if p == pid => return Ok(ExitStatus::from_raw(status)),
            _ => {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
}
