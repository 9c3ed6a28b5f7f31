//! How the tests start other programs — postern itself and the real peers —
//! so that no test depends on how the suite was started. A suite started by
//! `nohup`, as a background job of a non-interactive shell
//! (`scripts/test > log &`), under `setsid`, from cron or a CI runner
//! inherits things an interactive terminal never shows:
//!
//! - signal dispositions: SIGINT and SIGQUIT ignored (background jobs),
//!   SIGHUP ignored (nohup); an ignored signal stays ignored across exec,
//!   and `sh` cannot even trap it;
//! - a blocked signal mask;
//! - no controlling terminal (setsid), or one (a terminal): a child that
//!   inherits stdin from a terminal may prompt on it;
//! - HOME with the user's own `~/.swaksrc`, `~/.curlrc`, `~/.msmtprc`;
//! - LANG/LC_ALL (translated tool messages), TZ, the umask.
//!
//! So every child gets, explicitly: all signals at their default action and
//! none blocked, umask 022, stdin from /dev/null unless the test pipes it,
//! and (peers) a clean environment with an empty HOME, `LC_ALL=C.UTF-8`,
//! `TZ=UTC`. Children that must outlive a statement are held in a
//! [`ChildGuard`], which kills them on drop, panics included.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

use nix::libc;

use super::BIN;

/// Between fork and exec: every catchable signal back to its default
/// action, an empty signal mask, umask 022. Only async-signal-safe calls
/// (sigaction, sigprocmask, umask).
pub fn reset_in_child() -> std::io::Result<()> {
    // SAFETY: called in the forked child before exec; sigaction,
    // sigprocmask and umask are async-signal-safe and touch no Rust state.
    unsafe {
        let mut dfl: libc::sigaction = std::mem::zeroed();
        dfl.sa_sigaction = libc::SIG_DFL;
        libc::sigemptyset(&mut dfl.sa_mask);
        // 1..=64: every signal number Linux has (NSIG is 65).
        for sig in 1..65 {
            if sig == libc::SIGKILL || sig == libc::SIGSTOP {
                continue;
            }
            // glibc refuses its own internal signals (EINVAL): fine.
            libc::sigaction(sig, &dfl, std::ptr::null_mut());
        }
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
        libc::umask(0o022);
    }
    Ok(())
}

/// Puts `cmd`'s child in the known state of [`reset_in_child`].
pub fn known_state(cmd: &mut Command) -> &mut Command {
    // SAFETY: the closure only makes async-signal-safe calls.
    unsafe { cmd.pre_exec(reset_in_child) }
}

/// The test process's own umask, set once: the files and directories the
/// tests write themselves (configs, fixtures, Maildirs a peer reads) must
/// not depend on the umask the suite was started with.
pub fn init_process() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        // SAFETY: umask has no preconditions; every test wants the same value.
        unsafe { libc::umask(0o022) };
    });
}

/// True under CI (`CI=true`), where a test that cannot test its feature
/// must fail instead of skipping.
pub fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// For a test that cannot run here (e.g. needs root): under CI this fails
/// the test, loudly; elsewhere it prints why it skips, and the caller
/// returns.
pub fn skip_unless_ci(test: &str, why: &str) {
    assert!(
        !under_ci(),
        "{test}: cannot test the feature here ({why}), and CI=true forbids a silent pass"
    );
    eprintln!("SKIPPED {test}: {why}");
}

/// Root runs the suite (CI does): true. Elsewhere a test that needs root
/// says why it skips, and under CI=true it fails instead of passing.
pub fn root_or_skip_because(test: &str, why: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    skip_unless_ci(test, why);
    false
}

/// The target directory (for the peers' virtual environment).
pub fn target_dir() -> PathBuf {
    // CARGO_TARGET_TMPDIR is <target>/tmp for integration tests.
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target dir")
        .to_path_buf()
}

/// The Python virtual environment scripts/install-peers makes (with
/// aiosmtpd), when it is there.
pub fn peers_venv() -> Option<PathBuf> {
    let v = target_dir().join("peers-venv");
    v.join("bin/python3").is_file().then_some(v)
}

/// PATH for peers: the peers' venv first, then what the suite was given.
fn peer_path() -> OsString {
    let mut dirs: Vec<PathBuf> = peers_venv().map(|v| v.join("bin")).into_iter().collect();
    if let Some(p) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&p));
    }
    for d in ["/usr/sbin", "/sbin"] {
        if !dirs.iter().any(|x| x == Path::new(d)) {
            dirs.push(d.into());
        }
    }
    std::env::join_paths(dirs).expect("PATH")
}

/// An empty directory used as HOME by every peer: no user's dot files.
pub fn empty_home() -> PathBuf {
    static HOME: OnceLock<PathBuf> = OnceLock::new();
    HOME.get_or_init(|| {
        let h = Path::new(env!("CARGO_TARGET_TMPDIR")).join("empty-home");
        std::fs::create_dir_all(&h).expect("empty home");
        h
    })
    .clone()
}

/// The environment every child gets, and nothing else.
fn clean_env(cmd: &mut Command) -> &mut Command {
    init_process();
    cmd.env_clear()
        .env("PATH", peer_path())
        .env("HOME", empty_home())
        .env("LC_ALL", "C.UTF-8")
        .env("TZ", "UTC");
    // Keeps a panicking postern's backtrace readable in the test output.
    if let Some(v) = std::env::var_os("RUST_BACKTRACE") {
        cmd.env("RUST_BACKTRACE", v);
    }
    cmd
}

/// A real peer (swaks, curl, msmtp, openssl, doveadm, ...), found with
/// [`super::require`], with a clean environment, stdin from /dev/null and
/// the known signal state. Tests add their own `.env()` where a peer needs
/// one (Dovecot's USER, say).
pub fn peer(program: &str) -> Command {
    let path = if program == "python3" {
        python_path()
    } else {
        super::require(program)
    };
    let mut cmd = Command::new(path);
    clean_env(&mut cmd).stdin(Stdio::null());
    known_state(&mut cmd);
    cmd
}

/// The Python the tests use: the peers' venv (aiosmtpd in it) when
/// scripts/install-peers made one, otherwise the real interpreter behind
/// `python3` on PATH (resolved once: a pyenv shim needs the user's HOME,
/// which peers do not get).
pub fn python_path() -> PathBuf {
    if let Some(v) = peers_venv() {
        return v.join("bin/python3");
    }
    static REAL: OnceLock<PathBuf> = OnceLock::new();
    REAL.get_or_init(|| {
        let shim = super::require("python3");
        let out = Command::new(&shim)
            .args(["-c", "import sys; print(sys.executable)"])
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", shim.display()));
        let exe = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert!(
            out.status.success() && !exe.is_empty(),
            "{} cannot say where it is: {}",
            shim.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        PathBuf::from(exe)
    })
    .clone()
}

/// `python3` as a peer.
pub fn python() -> Command {
    peer("python3")
}

/// Fails the test when the tests' Python lacks `module` (aiosmtpd comes
/// from scripts/install-peers, in target/peers-venv).
pub fn require_python_module(module: &str) {
    let out = python()
        .args(["-c", &format!("import {module}")])
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "Python module `{module}` is missing from {}: run scripts/install-peers (scripts/test does)\n{}",
        python_path().display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The postern binary as a child: clean environment, stdin from
/// /dev/null (so `user add` never finds a terminal it was not given), the
/// known signal state.
pub fn postern() -> Command {
    postern_at(Path::new(BIN))
}

/// [`postern()`] for a postern binary elsewhere: one installed into an
/// image tree by scripts/install-rootfs, say.
pub fn postern_at(binary: &Path) -> Command {
    let mut cmd = Command::new(binary);
    clean_env(&mut cmd).stdin(Stdio::null());
    known_state(&mut cmd);
    cmd
}

/// A child that is killed (SIGKILL) and reaped when the guard is dropped,
/// on every way out of the test, panics included. With `group`, the kill
/// goes to its whole process group (a child made session leader, which
/// started children of its own).
pub struct ChildGuard {
    child: Option<Child>,
    group: bool,
}

impl ChildGuard {
    pub fn new(child: Child) -> ChildGuard {
        ChildGuard {
            child: Some(child),
            group: false,
        }
    }

    /// A guard that kills the child's whole process group.
    pub fn group(child: Child) -> ChildGuard {
        ChildGuard {
            child: Some(child),
            group: true,
        }
    }

    pub fn id(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub fn child(&mut self) -> &mut Child {
        self.child.as_mut().expect("running")
    }

    /// Takes the child out: the caller waits for it.
    pub fn into_inner(mut self) -> Child {
        self.child.take().expect("running")
    }

    /// Kills (group too, if so made) and reaps now. Only a child that has
    /// not been reaped is signalled: until then its pid, and so its group
    /// id, cannot have been given to another process.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            if matches!(c.try_wait(), Ok(None)) {
                if self.group {
                    // SAFETY: kill(2) on the group our live child leads.
                    unsafe { libc::kill(-(c.id() as libc::pid_t), libc::SIGKILL) };
                }
                let _ = c.kill();
            }
            let _ = c.wait();
        }
    }
}

impl std::ops::Deref for ChildGuard {
    type Target = Child;
    fn deref(&self) -> &Child {
        self.child.as_ref().expect("running")
    }
}

impl std::ops::DerefMut for ChildGuard {
    fn deref_mut(&mut self) -> &mut Child {
        self.child()
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Sends `sig` to `pid` (a child of this test), without a kill(1) child
/// of its own.
pub fn signal(pid: u32, sig: nix::sys::signal::Signal) -> nix::Result<()> {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig)
}

/// Raises this test process's soft limit on open files to `want` (or to
/// the hard limit, if lower), since a suite started from a shell with
/// `ulimit -n 1024` would otherwise run out of descriptors in a test
/// that holds a thousand sockets. Children started after this inherit the
/// raised limit. Returns the soft limit now in force.
pub fn raise_fd_limit(want: u64) -> u64 {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to our own struct.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut r), 0, "getrlimit");
        if r.rlim_cur < want {
            r.rlim_cur = want.min(r.rlim_max);
            assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &r), 0, "setrlimit");
        }
    }
    r.rlim_cur
}
