//! Test harness shared by the integration tests: starts the real postern
//! binary with a config of the test's choosing, loads the PostfixAdmin
//! fixture into its SQLite directory, talks raw SMTP, and finds delivered
//! files. Everything on loopback, every domain .test.
//!
//! Servers (`server`) listen on port 0 and the harness reads the bound
//! ports from `data_dir/listening`; `smtp` is the raw client and the reply
//! parser. Children (postern and the peers) are started as `proc` describes: in a
//! known state whatever state the suite itself was started in.
#![allow(dead_code)]

pub mod proc;
pub mod pty;
pub mod server;
pub mod smtp;
pub mod tls;

pub use proc::*;
pub use server::*;
pub use smtp::*;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_postern");
pub const FIXTURE_SQL: &str = include_str!("../fixtures/postfixadmin-mysql.sql");

/// Where `program` is: on PATH, else in /usr/sbin or /sbin.
pub fn find_program(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join(program))
                .find(|f| f.is_file())
        })
        .or_else(|| {
            ["/usr/sbin", "/sbin"]
                .iter()
                .map(|d| Path::new(d).join(program))
                .find(|f| f.is_file())
        })
}

/// Fails the test when a real peer (swaks, curl, doveadm...) is missing.
/// Peers are installed by scripts/install-peers, which scripts/test runs;
/// a test never skips itself for want of one.
pub fn require(program: &str) -> PathBuf {
    find_program(program).unwrap_or_else(|| {
        panic!("peer `{program}` is not installed: run scripts/install-peers (scripts/test does)")
    })
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A fresh directory under the system temp dir, removed on drop unless
/// POSTERN_KEEP_TEST_DIRS is set.
pub struct TestDir(pub PathBuf);

/// Where test directories go: TMPDIR when every directory on its path
/// lets others through, else /tmp. Tests deliver as uid 5000 and read
/// Maildirs as nobody, who must reach their files: a private TMPDIR (say
/// under a 0700 home) would fail them for a reason that is not postern's.
fn test_root() -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let t = std::env::temp_dir();
    let open = t.ancestors().all(|d| {
        std::fs::metadata(d).is_ok_and(|m| m.is_dir() && m.permissions().mode() & 0o001 != 0)
    });
    if open {
        t
    } else {
        PathBuf::from("/tmp")
    }
}

impl TestDir {
    pub fn new(tag: &str) -> TestDir {
        use std::os::unix::fs::PermissionsExt;
        init_process();
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let p = test_root().join(format!("postern-test-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        // Explicit, not the umask's: other users (the delivery uid, nobody
        // for Dovecot) must get through it.
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        TestDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        if std::env::var_os("POSTERN_KEEP_TEST_DIRS").is_none() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// Runs the fixture's INSERT and UPDATE statements, unchanged, against a
/// SQLite database with postern's schema.
pub fn load_fixture(db: &Path) {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.execute_batch(postern::directory::sqlite::SCHEMA)
        .unwrap();
    for stmt in fixture_statements() {
        conn.execute_batch(&stmt)
            .unwrap_or_else(|e| panic!("fixture statement failed: {e}\n{stmt}"));
    }
}

/// The data statements of the PostfixAdmin dump (INSERT, UPDATE), as written.
pub fn fixture_statements() -> Vec<String> {
    let without_comments: String = FIXTURE_SQL
        .lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .map(|l| format!("{l}\n"))
        .collect();
    without_comments
        .split(";\n")
        .map(str::trim)
        .filter(|s| s.starts_with("INSERT") || s.starts_with("UPDATE"))
        .map(|s| format!("{s};"))
        .collect()
}

/// Files in `maildir/new` (and `cur`), sorted.
pub fn maildir_files(maildir: &Path) -> Vec<PathBuf> {
    let mut v = Vec::new();
    for sub in ["new", "cur"] {
        if let Ok(rd) = std::fs::read_dir(maildir.join(sub)) {
            v.extend(rd.filter_map(|e| e.ok()).map(|e| e.path()));
        }
    }
    v.sort();
    v
}

/// Waits until `maildir` holds at least `n` messages.
pub fn wait_maildir(maildir: &Path, n: usize, timeout: Duration) -> Vec<PathBuf> {
    let deadline = Instant::now() + timeout;
    loop {
        let f = maildir_files(maildir);
        if f.len() >= n || Instant::now() > deadline {
            return f;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The queue ID in a `250 2.0.0 Ok: queued as <ID>` reply (or any text
/// holding one, such as a client's transcript).
pub fn queue_id_in(text: &str) -> Option<String> {
    let i = text.find("queued as ")?;
    let id: String = text[i + 10..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric())
        .collect();
    (!id.is_empty()).then_some(id)
}

/// The delivered message in `maildir` whose text contains `needle`,
/// waiting for it up to 10 s.
pub fn wait_message(srv: &Server, maildir: &Path, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        for f in maildir_files(maildir) {
            let text = std::fs::read_to_string(&f).unwrap_or_default();
            if text.contains(needle) {
                return text;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no message with {needle:?} in {}:\n{}",
            maildir.display(),
            srv.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The first Received: header of a message, with its folded lines.
pub fn received_header(msg: &str) -> String {
    let mut out = String::new();
    for l in msg.lines().skip_while(|l| !l.starts_with("Received: ")) {
        if !out.is_empty() && !l.starts_with([' ', '\t']) {
            break;
        }
        out.push_str(l);
        out.push('\n');
    }
    assert!(out.starts_with("Received: "), "{msg}");
    out
}

/// Runs a program and returns (status success, stdout + stderr).
pub fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let mut s = String::from_utf8_lossy(&out.stdout).into_owned();
    s.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), s)
}

/// A message body with CRLF line ends.
pub fn message(subject: &str, body: &str) -> String {
    format!(
        "From: sender@client.test\r\nTo: someone@example.test\r\nSubject: {subject}\r\n\r\n{body}"
    )
}
