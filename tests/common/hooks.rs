//! Helpers for the delivery-hook tests (pipes, procmail, quotas, aliases'
//! programs, the content filter): executable scripts, directories other
//! uids may write, messages sent and their log lines waited for.
//!
//! Declared by the test files that use it with
//! `#[path = "common/hooks.rs"] mod hooks;` next to `mod common;`.
#![allow(dead_code)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::common::*;

pub const WAIT: Duration = Duration::from_secs(20);

/// The uid:gid pipes and Maildirs belong to in these tests. It needs no
/// entry in the password database (a fresh CI machine has none).
pub const VMAIL: (u32, u32) = (5000, 5000);

/// Writes `body` as an executable script `dir/name` (mode 0755).
pub fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, body).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

/// A directory every uid may write (mode 0777, set explicitly): where
/// commands running as other users leave what the test reads.
pub fn open_dir(p: &Path) -> PathBuf {
    std::fs::create_dir_all(p).unwrap();
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o777)).unwrap();
    p.to_path_buf()
}

/// Polls `f` every 20 ms until it is true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The contents of `path` once it exists (written by rename, or complete
/// once non-empty), waiting up to [`WAIT`].
pub fn wait_file(srv: &Server, path: &Path) -> Vec<u8> {
    let mut got = Vec::new();
    let ok = wait_until(WAIT, || match std::fs::read(path) {
        Ok(b) if !b.is_empty() => {
            got = b;
            true
        }
        _ => false,
    });
    assert!(ok, "{} never appeared:\n{}", path.display(), srv.log());
    got
}

/// One whole transaction on a fresh connection; the queue ID.
pub fn send(srv: &Server, from: &str, to: &[&str], body: &str) -> String {
    let mut c = srv.smtp();
    c.hello();
    let r = c.send_mail(from, to, body);
    assert_eq!(r.code, 250, "{r:?}\n{}", srv.log());
    c.expect("QUIT", "221");
    queue_id_in(&r.first).expect("queue id")
}

/// A message with CRLF line ends, `extra` headers (each ending in CRLF)
/// after Subject. `body` should not end in CRLF: [`Smtp::send_mail`] adds it.
pub fn mail(to: &str, subject: &str, extra: &str, body: &str) -> String {
    format!("From: sender@client.test\r\nTo: {to}\r\nSubject: {subject}\r\n{extra}\r\n{body}")
}

/// The delivery log line `ID: to=<to>, ...` that says `status=<status>`,
/// waiting for it; panics with the log if it never comes.
pub fn wait_status(srv: &Server, id: &str, to: &str, status: &str) -> String {
    let head = format!("{id}: to=<{to}>");
    let want = format!("status={status} ");
    let mut line = String::new();
    let ok = wait_until(WAIT, || {
        match srv
            .log()
            .lines()
            .find(|l| l.contains(&head) && l.contains(&want))
        {
            Some(l) => {
                line = l.to_string();
                true
            }
            None => false,
        }
    });
    assert!(ok, "no {head} ... {want} line:\n{}", srv.log());
    line
}

/// The line that logged the message's acceptance: `ID: from=<...>,
/// size=N, nrcpt=N (queue active)` or `(delivered directly)`.
pub fn accepted_line(srv: &Server, id: &str) -> String {
    let needle = format!("{id}: from=<");
    srv.log()
        .lines()
        .find(|l| l.contains(&needle) && l.contains(", nrcpt="))
        .unwrap_or_else(|| panic!("no {needle}... line:\n{}", srv.log()))
        .to_string()
}

/// Is the message still in the queue?
pub fn is_queued(srv: &Server, id: &str) -> bool {
    srv.queue_dir().join("messages").join(id).is_file()
}

/// `postern queue list` against the running server: (success, output).
pub fn queue_list(srv: &Server) -> (bool, String) {
    run(postern()
        .arg("queue")
        .arg("--config")
        .arg(&srv.config)
        .arg("list"))
}

/// The one message in `maildir` (waiting for it), as bytes.
pub fn only_message(srv: &Server, maildir: &Path) -> Vec<u8> {
    let files = wait_maildir(maildir, 1, WAIT);
    assert_eq!(
        files.len(),
        1,
        "one message in {}:\n{}",
        maildir.display(),
        srv.log()
    );
    std::fs::read(&files[0]).unwrap()
}

/// CRLF → LF, as postern stores and pipes messages.
pub fn lf(s: &str) -> String {
    s.replace("\r\n", "\n")
}

/// What postern keeps of a message the raw client sent with
/// [`Smtp::send_mail`] (which ends the text with CRLF before the dot):
/// LF line ends, one final newline, dot-stuffing undone.
pub fn stored(sent: &str) -> String {
    let mut s = lf(sent);
    s.push('\n');
    s.split_inclusive('\n')
        .map(|l| l.strip_prefix('.').unwrap_or(l))
        .collect()
}

/// The first header block line by line: `(name, whole header with folded
/// lines)` in file order, up to the blank line.
pub fn header_blocks(msg: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for l in msg.lines() {
        if l.is_empty() {
            break;
        }
        if l.starts_with([' ', '\t']) {
            let last = out.last_mut().expect("continuation after a header");
            last.push('\n');
            last.push_str(l);
        } else {
            out.push(l.to_string());
        }
    }
    out
}

/// Our Received: header of queue ID `id` for `rcpt` (client.test from
/// 127.0.0.1 over ESMTP, the raw client's EHLO), with its folded lines
/// and final newline: checked piece by piece, the date parsed.
pub fn check_received(block: &str, id: &str, rcpt: &str) {
    let mut at = 0;
    for part in [
        "Received: from client.test (unknown [127.0.0.1])\n",
        "\tby mx.example.test with ESMTP id ",
        id,
        "\n\tfor <",
        rcpt,
        ">; ",
    ] {
        let found = block[at..]
            .find(part)
            .unwrap_or_else(|| panic!("{part:?} in order in {block:?}"));
        at += found + part.len();
    }
    let date = block[at..].trim();
    mailparse::dateparse(date).unwrap_or_else(|e| panic!("date {date:?}: {e}"));
}

/// The bounce (from <>) in `maildir` that mentions `needle`, waiting for
/// it; returns its text.
pub fn wait_bounce(srv: &Server, maildir: &Path, needle: &str) -> String {
    let mut text = String::new();
    let ok = wait_until(WAIT, || {
        maildir_files(maildir).iter().any(|f| {
            let t = String::from_utf8_lossy(&std::fs::read(f).unwrap_or_default()).into_owned();
            let hit = t.starts_with("Return-Path: <>\n") && t.contains(needle);
            if hit {
                text = t;
            }
            hit
        })
    });
    assert!(
        ok,
        "no bounce mentioning {needle:?} in {}:\n{}",
        maildir.display(),
        srv.log()
    );
    text
}

/// Pids of live processes (not zombies) whose command line contains
/// `needle`.
pub fn live_processes(needle: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if !cmdline.contains(needle) {
            continue;
        }
        let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        // "pid (comm) S ...": the state after the last ')'.
        let state = stat
            .rsplit_once(')')
            .map(|(_, r)| r.trim_start())
            .unwrap_or("");
        if !state.starts_with('Z') && !state.is_empty() {
            out.push(pid);
        }
    }
    out
}

/// The `[[transport]]` table of a pipe.
pub fn transport(name: &str, command: &[&str], user: &str, flags: &str, extra: &str) -> String {
    let argv: Vec<String> = command.iter().map(|a| format!("{a:?}")).collect();
    format!(
        "[[transport]]\nname = \"{name}\"\nkind = \"pipe\"\ncommand = [{}]\nuser = \"{user}\"\nflags = \"{flags}\"\n{extra}",
        argv.join(", ")
    )
}

/// A uid and gid with no entry in the password and group databases (a
/// command run as them gets no HOME, USER or LOGNAME).
pub fn unnamed_ids() -> (u32, u32) {
    (47_000..48_000)
        .find(|&n| {
            nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(n))
                .ok()
                .flatten()
                .is_none()
                && nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(n))
                    .ok()
                    .flatten()
                    .is_none()
        })
        .map(|n| (n, n))
        .expect("a free uid")
}

/// Root runs these tests (CI does); elsewhere a test that needs to switch
/// uids says why it skips, and fails under CI=true.
pub fn root_or_skip(test: &str) -> bool {
    root_or_skip_because(test, "running commands as another uid needs root")
}
