//! Reading a new password for `postern user add|passwd`: from a prompt on
//! /dev/tty with echo off (asked twice), or the first line of stdin when
//! stdin is not a terminal; never from argv or the environment. The
//! terminal is restored on every way out, signals included, and the bytes
//! are wiped once hashed (they live in a [`Secret`]).

use std::fs::File;
use std::io::{IsTerminal, Write};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::sync::OnceLock;

use nix::errno::Errno;
use nix::libc;
use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg, Termios};

use super::users::{EX_DATAERR, MAX_PASSWORD};
use crate::auth::password::{self, Scheme};
use crate::config::{Config, PasswordScheme};
use crate::smtp::sasl::Secret;

/// Reads the new password (terminal or stdin) and hashes it.
pub(super) fn new_password_hash(cmd: &str, cfg: &Config, address: &str) -> Result<String, i32> {
    let pw = if std::io::stdin().is_terminal() {
        prompt_twice(address)
    } else {
        read_line(std::io::stdin().as_fd()).map(|p| p.unwrap_or(Secret::new(Vec::new())))
    };
    let pw = match pw {
        Ok(p) => p,
        Err(e) => {
            eprintln!("postern {cmd}: {e}");
            return Err(EX_DATAERR);
        }
    };
    if pw.expose().is_empty() {
        eprintln!("postern {cmd}: an empty password is refused");
        return Err(EX_DATAERR);
    }
    let scheme = match cfg.auth.password_scheme {
        PasswordScheme::Sha512Crypt => Scheme::Sha512Crypt,
        PasswordScheme::BlfCrypt => Scheme::BlfCrypt,
    };
    Ok(password::hash(scheme, pw.expose()))
}

/// One line from `fd`, read a byte at a time so nothing past it is
/// consumed or left in a buffer; one trailing `\n` or `\r\n` is removed.
/// `None` at end of input before any byte.
fn read_line(fd: impl AsFd) -> Result<Option<Secret>, String> {
    // Room for the longest password: pushing never reallocates, which
    // would leave a copy in freed memory.
    let mut pw = Secret::with_capacity(MAX_PASSWORD + 1);
    let mut byte = [0u8; 1];
    let mut newline = false;
    loop {
        match nix::unistd::read(&fd, &mut byte) {
            Ok(0) => break,
            Ok(_) if byte[0] == b'\n' => {
                newline = true;
                break;
            }
            Ok(_) if pw.len() >= MAX_PASSWORD => {
                // Consume the rest of the line: left unread on a terminal,
                // the shell would run it as a command.
                while matches!(nix::unistd::read(&fd, &mut byte), Ok(1) | Err(Errno::EINTR))
                    && byte[0] != b'\n'
                {}
                return Err(format!("the password is longer than {MAX_PASSWORD} bytes"));
            }
            Ok(_) => pw.push(byte[0]),
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(format!("cannot read the password: {e}")),
        }
    }
    // SAFETY: a valid, aligned, exclusive reference to a local byte.
    unsafe { std::ptr::write_volatile(&mut byte[0], 0) };
    if newline && pw.expose().last() == Some(&b'\r') {
        pw.pop();
    }
    Ok(if pw.expose().is_empty() && !newline {
        None
    } else {
        Some(pw)
    })
}

/// Asks for the password twice on /dev/tty with echo off.
fn prompt_twice(address: &str) -> Result<Secret, String> {
    let tty = File::options()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .map_err(|e| format!("cannot open /dev/tty to ask for the password: {e}"))?;
    let guard = EchoOff::new(&tty)?;
    let ask = |prompt: &str| -> Result<Secret, String> {
        let mut out = &tty;
        out.write_all(prompt.as_bytes())
            .and_then(|()| out.flush())
            .map_err(|e| format!("cannot write to /dev/tty: {e}"))?;
        let answer = read_line(&tty);
        // The typed newline was not echoed.
        let _ = out.write_all(b"\n");
        answer?.ok_or_else(|| "no password given".to_string())
    };
    let first = ask(&format!("New password for {address}: "))?;
    let second = ask("Retype the new password: ")?;
    drop(guard);
    if first.expose() != second.expose() {
        return Err("the passwords do not match".into());
    }
    Ok(first)
}

/// The terminal state to put back if a signal ends the process while echo
/// is off.
static SAVED: OnceLock<(RawFd, libc::termios)> = OnceLock::new();

const RESTORE_ON: [Signal; 4] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
];

extern "C" fn restore_and_die(sig: libc::c_int) {
    // Only async-signal-safe calls: tcsetattr and raise. SA_RESETHAND has
    // put back the default action; the raised signal is delivered when
    // this handler returns.
    if let Some((fd, t)) = SAVED.get() {
        // SAFETY: tcsetattr is async-signal-safe; `t` points to a termios
        // that lives in a static for the rest of the process.
        unsafe { libc::tcsetattr(*fd, libc::TCSANOW, t) };
    }
    // SAFETY: raise is async-signal-safe and takes any signal number.
    unsafe { libc::raise(sig) };
}

/// Echo off on a terminal while alive; restored on drop and on signals.
struct EchoOff<'a> {
    tty: &'a File,
    saved: Termios,
    old_actions: Vec<(Signal, SigAction)>,
}

impl<'a> EchoOff<'a> {
    fn new(tty: &'a File) -> Result<EchoOff<'a>, String> {
        let saved =
            tcgetattr(tty).map_err(|e| format!("cannot read the terminal settings: {e}"))?;
        let _ = SAVED.set((tty.as_raw_fd(), saved.clone().into()));
        let action = SigAction::new(
            SigHandler::Handler(restore_and_die),
            SaFlags::SA_RESETHAND,
            SigSet::empty(),
        );
        let mut guard = EchoOff {
            tty,
            saved: saved.clone(),
            old_actions: Vec::new(),
        };
        for s in RESTORE_ON {
            // SAFETY: the handler only calls async-signal-safe functions
            // (tcsetattr, raise) on data set before it is installed.
            if let Ok(old) = unsafe { sigaction(s, &action) } {
                if matches!(old.handler(), SigHandler::SigIgn) {
                    // Ignored by whoever started us (nohup): keep it so.
                    // SAFETY: puts back the disposition we found.
                    let _ = unsafe { sigaction(s, &old) };
                } else {
                    guard.old_actions.push((s, old));
                }
            }
        }
        let mut quiet = saved;
        quiet
            .local_flags
            .remove(LocalFlags::ECHO | LocalFlags::ECHOE | LocalFlags::ECHOK | LocalFlags::ECHONL);
        // TCSAFLUSH, as getpass(3): what was typed before the prompt is dropped.
        tcsetattr(tty, SetArg::TCSAFLUSH, &quiet)
            .map_err(|e| format!("cannot turn off echo: {e}"))?;
        Ok(guard)
    }
}

impl Drop for EchoOff<'_> {
    fn drop(&mut self) {
        // TCSAFLUSH: nothing typed during the prompt reaches the shell.
        let _ = tcsetattr(self.tty, SetArg::TCSAFLUSH, &self.saved);
        for (s, old) in self.old_actions.drain(..) {
            // SAFETY: puts back the disposition that was there before.
            let _ = unsafe { sigaction(s, &old) };
        }
    }
}
