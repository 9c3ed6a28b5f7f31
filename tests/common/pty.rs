//! A pseudo-terminal made by the test itself, for the prompts that need
//! one (`postern user add` asks on /dev/tty). The child becomes the leader
//! of a new session with the pty's slave side as its controlling terminal
//! and as stdin, stdout and stderr; the terminal's modes are set here,
//! not inherited (echo on, canonical input, ^C sends SIGINT); its signals
//! are reset to their defaults ([`super::proc::reset_in_child`]). So it
//! behaves the same whether the suite runs in a terminal, as a background
//! job (SIGINT ignored), or under `setsid` (no controlling terminal).
//!
//! The test reads everything the terminal shows from the master side and
//! types into it.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use nix::fcntl::OFlag;
use nix::libc;
use nix::pty::{grantpt, posix_openpt, ptsname_r, unlockpt};
use nix::sys::termios::{self, LocalFlags, SetArg, SpecialCharacterIndices};

use super::proc::{reset_in_child, ChildGuard};

/// A child running on its own terminal.
pub struct PtyChild {
    pub child: ChildGuard,
    master: File,
    seen: Arc<Mutex<Vec<u8>>>,
    reader: Option<JoinHandle<()>>,
}

/// Opens a pty pair; both ends close-on-exec (so no other test's child,
/// forked meanwhile, keeps the slave open and the master from seeing EOF).
fn open_pair() -> (File, OwnedFd) {
    let master =
        posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC).expect("posix_openpt");
    grantpt(&master).expect("grantpt");
    unlockpt(&master).expect("unlockpt");
    let name = ptsname_r(&master).expect("ptsname");
    let slave = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY)
        .open(&name)
        .unwrap_or_else(|e| panic!("open {name}: {e}"));
    // The modes the prompt tests rely on, whatever a fresh pty defaults to.
    let mut t = termios::tcgetattr(&slave).expect("tcgetattr");
    t.local_flags |= LocalFlags::ECHO
        | LocalFlags::ECHOE
        | LocalFlags::ECHOK
        | LocalFlags::ICANON
        | LocalFlags::ISIG;
    t.control_chars[SpecialCharacterIndices::VINTR as usize] = 0x03;
    termios::tcsetattr(&slave, SetArg::TCSANOW, &t).expect("tcsetattr");
    (File::from(OwnedFd::from(master)), OwnedFd::from(slave))
}

impl PtyChild {
    /// Starts `cmd` on a new terminal.
    pub fn spawn(mut cmd: Command) -> PtyChild {
        super::proc::init_process();
        let (master, slave) = open_pair();
        cmd.stdin(Stdio::from(slave.try_clone().unwrap()))
            .stdout(Stdio::from(slave.try_clone().unwrap()))
            .stderr(Stdio::from(slave));
        // SAFETY: only async-signal-safe calls (setsid, ioctl, sigaction,
        // sigprocmask, umask) between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                reset_in_child()?;
                if libc::setsid() < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // stdin is the slave by now: make it our controlling terminal.
                if libc::ioctl(0, libc::TIOCSCTTY as _, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("start a child on a pty");
        // The Command holds our copies of the slave side: only once they
        // are closed does the master see the end when the child is done.
        drop(cmd);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let reader = {
            let seen = seen.clone();
            let mut out = master.try_clone().unwrap();
            std::thread::spawn(move || {
                let mut buf = [0u8; 1024];
                // EIO once every holder of the slave side has closed it.
                while let Ok(n) = out.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    seen.lock().unwrap().extend_from_slice(&buf[..n]);
                }
            })
        };
        PtyChild {
            // setsid made it a process group leader: kill the group.
            child: ChildGuard::group(child),
            master,
            seen,
            reader: Some(reader),
        }
    }

    /// Everything the terminal has shown so far.
    pub fn seen(&self) -> String {
        String::from_utf8_lossy(&self.seen.lock().unwrap()).into_owned()
    }

    /// Types `bytes`, as a user at the keyboard.
    pub fn type_in(&mut self, bytes: &[u8]) {
        self.master.write_all(bytes).unwrap();
        self.master.flush().unwrap();
    }

    /// Waits for the child to exit and for the terminal's last output.
    pub fn finish(mut self, timeout: std::time::Duration) -> (std::process::ExitStatus, String) {
        let deadline = std::time::Instant::now() + timeout;
        let status = loop {
            if let Some(st) = self.child.child().try_wait().unwrap() {
                break st;
            }
            if std::time::Instant::now() > deadline {
                // Still running, so its group can be killed whole.
                self.child.kill();
                panic!(
                    "process did not exit within {timeout:?}; the terminal showed {:?}",
                    self.seen()
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        // Once nothing holds the slave side any more, the reader sees EIO
        // and stops; a grandchild left holding it fails the test.
        let reader = self.reader.take().expect("reader");
        while !reader.is_finished() {
            assert!(
                std::time::Instant::now() < deadline,
                "something the child started still holds its terminal: {:?}",
                self.seen()
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        reader.join().unwrap();
        (status, self.seen())
    }
}
