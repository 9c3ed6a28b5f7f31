//! sendmail as scripts and mail programs run it: the real binary under a
//! symlink named `sendmail` (`mailq`, `newaliases`), so it picks its
//! personality from argv[0] the way the appliance's symlinks make it.
//!
//! Two ways to reach the config, as on a real box:
//! - [`Sendmail::cmd`]: `POSTERN_CONFIG` names the test server's file
//!   (what a script may set; `-C FILE` works too);
//! - [`Appliance`]: nothing set, sendmail finds /etc/postern/postern.toml.
//!   The test's config is put there, and the symlink at /usr/sbin/sendmail
//!   (where mail(1), cron and PHP look), inside a private mount namespace
//!   (`unshare -m`, two overlays), so the machine's own /etc and /usr/sbin
//!   are never touched. Needs root.
//!
//! Used from tests/feature_sendmail.rs as `#[path]` module, next to
//! `mod common`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::common::*;

/// The user the tests submit as when they want someone other than root.
pub const NOBODY: u32 = 65534;

/// What a run of sendmail (or a program calling it) left.
#[derive(Debug)]
pub struct Ran {
    /// The exit code; -1 when killed by a signal.
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    /// Both streams, for assertion messages.
    pub fn all(&self) -> String {
        format!(
            "exit {}\nstdout:\n{}\nstderr:\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Runs `cmd` with `input` on its stdin (written from a thread, so a
/// child that answers while reading cannot deadlock us).
pub fn run_with_input(cmd: &mut Command, input: &[u8]) -> Ran {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let mut stdin = child.stdin.take().expect("stdin");
    let input = input.to_vec();
    // A child may exit before reading everything (a usage error): EPIPE
    // is its business, not the test's.
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().expect("wait");
    let _ = writer.join();
    Ran {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A directory with `sendmail`, `mailq` and `newaliases` symlinks to the
/// postern binary, and the config they are pointed at.
pub struct Sendmail {
    pub dir: TestDir,
    pub config: PathBuf,
}

impl Sendmail {
    /// Symlinks for the config at `config` (a test server's).
    pub fn new(config: &Path) -> Sendmail {
        let dir = TestDir::new("sendmail");
        for name in ["sendmail", "mailq", "newaliases"] {
            std::os::unix::fs::symlink(BIN, dir.path().join(name)).unwrap();
        }
        Sendmail {
            dir,
            config: config.to_path_buf(),
        }
    }

    /// The symlink named `name`.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `name` (sendmail, mailq, newaliases) as a child in the known state,
    /// with `POSTERN_CONFIG` naming the config.
    pub fn cmd(&self, name: &str) -> Command {
        let mut c = peer(self.path(name).to_str().unwrap());
        c.env("POSTERN_CONFIG", &self.config);
        c
    }

    /// `sendmail ARGS` with `input` on stdin.
    pub fn send(&self, args: &[&str], input: &[u8]) -> Ran {
        run_with_input(self.cmd("sendmail").args(args), input)
    }

    /// The same, as uid/gid 65534 (nobody).
    pub fn send_as_nobody(&self, args: &[&str], input: &[u8]) -> Ran {
        use std::os::unix::process::CommandExt;
        run_with_input(
            self.cmd("sendmail").args(args).uid(NOBODY).gid(NOBODY),
            input,
        )
    }

    /// `name ARGS`, nothing on stdin.
    pub fn run(&self, name: &str, args: &[&str]) -> Ran {
        run_with_input(self.cmd(name).args(args), b"")
    }
}

/// The appliance's layout in a private mount namespace: `config` at
/// /etc/postern/postern.toml, a symlink to postern at /usr/sbin/sendmail.
pub struct Appliance {
    dir: TestDir,
}

impl Appliance {
    /// Needs root (mounts); callers check first.
    pub fn new(config: &Path) -> Appliance {
        let dir = TestDir::new("appliance");
        let etc = dir.path().join("etc-upper/postern");
        std::fs::create_dir_all(&etc).unwrap();
        std::fs::copy(config, etc.join("postern.toml")).unwrap();
        let sbin = dir.path().join("sbin-upper");
        std::fs::create_dir_all(&sbin).unwrap();
        std::os::unix::fs::symlink(BIN, sbin.join("sendmail")).unwrap();
        for w in ["etc-work", "sbin-work"] {
            std::fs::create_dir_all(dir.path().join(w)).unwrap();
        }
        Appliance { dir }
    }

    /// `program ARGS...` run inside the namespace: `unshare -m` mounts
    /// the overlays, then execs the program, with the peers' clean
    /// environment (no POSTERN_CONFIG).
    pub fn cmd(&self, program: &str) -> Command {
        let d = self.dir.path().display();
        let script = format!(
            "set -e\n\
             mount -t overlay overlay -o lowerdir=/etc,upperdir={d}/etc-upper,workdir={d}/etc-work /etc\n\
             mount -t overlay overlay -o lowerdir=/usr/sbin,upperdir={d}/sbin-upper,workdir={d}/sbin-work /usr/sbin\n\
             exec \"$@\""
        );
        let mut c = peer("unshare");
        c.args([
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            &script,
            "sh",
            program,
        ]);
        c
    }
}

/// Fails (CI) or skips (elsewhere) a test that needs root; true to go on.
pub fn root_or_skip(test: &str, why: &str) -> bool {
    crate::common::root_or_skip_because(test, why)
}

/// The header section of a delivered message (up to its blank line).
pub fn head_of(msg: &str) -> &str {
    msg.split("\n\n").next().unwrap_or(msg)
}

/// The body of a delivered message (after its blank line).
pub fn body_of(msg: &str) -> &str {
    msg.split_once("\n\n").map(|x| x.1).unwrap_or("")
}

/// The value of the first header field `name` (case-insensitive), folds
/// joined.
pub fn field(msg: &str, name: &str) -> Option<String> {
    let mut lines = head_of(msg).lines().peekable();
    while let Some(l) = lines.next() {
        let Some((k, v)) = l.split_once(':') else {
            continue;
        };
        if !k.eq_ignore_ascii_case(name) || l.starts_with([' ', '\t']) {
            continue;
        }
        let mut v = v.trim().to_string();
        while let Some(n) = lines.peek().filter(|n| n.starts_with([' ', '\t'])) {
            v.push(' ');
            v.push_str(n.trim());
            lines.next();
        }
        return Some(v);
    }
    None
}
