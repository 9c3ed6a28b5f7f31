//! Issue 3, section 6: managing users without MySQL. `postern domain|user|
//! alias add|del|list` edit the SQLite directory directly, with
//! PostfixAdmin's semantics; new passwords are stored as
//! `{SHA512-CRYPT}$6$...` (or `{BLF-CRYPT}$2y$...`) and read from a prompt
//! without echo (driven through a pty the test makes itself) or from stdin,
//! never from argv. The new users are then checked against a real running
//! server: Python's smtplib logs in over STARTTLS and sends mail that lands
//! in the new Maildir; `user passwd` and `user del` take effect in that same
//! server. Tables are read back with Python's sqlite3.

mod common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;

const WAIT: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------- helpers

/// What one `postern ...` run gave.
#[derive(Debug)]
struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs `postern ARGS --data-dir DATA` (or `--config CFG` when `cfg` is
/// given) with `stdin` piped in (closed at once when `None`). While it
/// runs, its argv and environment, as `ps` and /proc show them, are
/// checked for `secret`.
fn postern_with(args: &[&str], at: &At, stdin: Option<&[u8]>, secret: Option<&str>) -> Out {
    let mut cmd = common::postern();
    cmd.args(args);
    match at {
        At::Data(d) => cmd.arg("--data-dir").arg(d),
        At::Config(c) => cmd.arg("--config").arg(c),
    };
    if let Some(s) = secret {
        for a in cmd.get_args() {
            assert!(
                !a.to_string_lossy().contains(s),
                "the password is in argv: {cmd:?}"
            );
        }
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("run postern");
    if let Some(s) = secret {
        // postern is now waiting for its stdin: look at it from outside,
        // once the exec has happened.
        let proc = format!("/proc/{}/cmdline", child.id());
        let deadline = Instant::now() + Duration::from_secs(5);
        while !std::fs::read(&proc)
            .unwrap_or_default()
            .starts_with(format!("{BIN}\0").as_bytes())
            && Instant::now() < deadline
            && child.try_wait().unwrap().is_none()
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        for f in ["cmdline", "environ"] {
            let seen = std::fs::read(format!("/proc/{}/{f}", child.id())).unwrap_or_default();
            assert!(
                !String::from_utf8_lossy(&seen).contains(s),
                "the password is in /proc/PID/{f}"
            );
        }
    }
    {
        let mut input = child.stdin.take().unwrap();
        if let Some(bytes) = stdin {
            // A refused command may exit before reading: ignore EPIPE.
            let _ = input.write_all(bytes);
        }
    }
    let status = wait_timeout(&mut child, WAIT);
    let mut stdout = String::new();
    let mut stderr = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    Out {
        code: status.code().unwrap_or(-1),
        stdout,
        stderr,
    }
}

enum At {
    Data(PathBuf),
    Config(PathBuf),
}

fn postern(args: &[&str], data: &Path) -> Out {
    postern_with(args, &At::Data(data.to_path_buf()), None, None)
}

/// Expects success and returns stdout.
fn ok(args: &[&str], data: &Path) -> String {
    let o = postern(args, data);
    assert_eq!(o.code, 0, "postern {args:?} failed: {o:?}");
    o.stdout
}

/// Expects a refusal with `code` whose message contains `needle`.
fn refused(o: Out, code: i32, needle: &str) {
    assert_eq!(o.code, code, "expected exit {code}: {o:?}");
    assert!(
        o.stderr.contains(needle),
        "stderr should say {needle:?}: {o:?}"
    );
    assert!(o.stdout.is_empty(), "nothing on stdout for an error: {o:?}");
}

/// `user add` with the password on stdin.
fn add_user(data: &At, address: &str, password: &str) -> Out {
    postern_with(
        &["user", "add", address],
        data,
        Some(format!("{password}\n").as_bytes()),
        Some(password),
    )
}

/// One query through Python's sqlite3; rows as `a|b|c` lines.
fn sql(db: &Path, query: &str) -> String {
    let (ok, out) = run(python()
        .arg("-c")
        .arg(
            "import sqlite3, sys\n\
             c = sqlite3.connect(sys.argv[1])\n\
             for r in c.execute(sys.argv[2]): print('|'.join(str(x) for x in r))\n",
        )
        .arg(db)
        .arg(query));
    assert!(ok, "sqlite3 query failed: {out}");
    out.trim_end().to_string()
}

fn stored_hash(data: &Path, user: &str) -> String {
    sql(
        &data.join("directory.sqlite"),
        &format!("SELECT password FROM mailbox WHERE username = '{user}'"),
    )
}

/// A config for `serve` (and the CLI) on a port the kernel picks:
/// STARTTLS with the self-signed certificate postern makes at first start,
/// AUTH against the SQLite directory.
fn write_config(dir: &Path, data: &Path, scheme: &str) -> PathBuf {
    let text = format!(
        "data_dir = \"{}\"\n\
         hostname = \"mx.example.test\"\n\
         trusted_networks = [\"127.0.0.1/32\"]\n\
         local_domains = [\"mx.example.test\"]\n\
         \n[[listener]]\naddress = \"127.0.0.1:0\"\nmode = \"starttls\"\n\
         \n[smtp]\nerror_delay = \"0s\"\n\
         \n[auth]\nbackend = \"sqlite\"\npassword_scheme = \"{scheme}\"\nfailure_delay = \"0s\"\n\
         \n[directory]\nlookup_timeout = \"1s\"\n",
        data.display()
    );
    let p = dir.join("postern.toml");
    std::fs::write(&p, text).unwrap();
    p
}

/// `postern serve` on `config` (data under `dir/data`); killed on drop.
fn serve(config: &Path, dir: &Path) -> Served {
    let mut cmd = common::postern();
    cmd.arg("serve").arg("--config").arg(config);
    Served::start(cmd, &dir.join("serve.log"), &dir.join("data"))
}

const PY_LOGIN: &str = r#"
import smtplib, ssl, sys
port, user = int(sys.argv[1]), sys.argv[2]
rcpt = sys.argv[3] if len(sys.argv) > 3 else None
password = sys.stdin.readline().rstrip("\n")
s = smtplib.SMTP("127.0.0.1", port, timeout=30)
s.ehlo("client.test")
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
s.starttls(context=ctx)
s.ehlo("client.test")
try:
    s.login(user, password)
except smtplib.SMTPAuthenticationError as e:
    print("auth %d" % e.smtp_code)
    s.quit()
    sys.exit(0)
print("auth 235")
if rcpt:
    msg = "From: %s\r\nTo: %s\r\nSubject: hello from a new user\r\n\r\nfirst message\r\n" % (user, rcpt)
    refused = s.sendmail(user, [rcpt], msg)
    print("sent %r" % (refused,))
s.quit()
"#;

/// Logs in with smtplib over STARTTLS (the password on its stdin) and,
/// if `rcpt` is given, sends one message; returns its report.
fn login(port: u16, user: &str, password: &str, rcpt: Option<&str>) -> String {
    let mut cmd = python();
    cmd.arg("-c")
        .arg(PY_LOGIN)
        .arg(port.to_string())
        .arg(user)
        .args(rcpt)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{password}\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "smtplib failed: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// Every file under `dir` that contains `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if std::fs::read(&p)
                .map(|b| b.windows(needle.len()).any(|w| w == needle))
                .unwrap_or(false)
            {
                hits.push(p);
            }
        }
    }
    hits
}

// ---------------------------------------------------------------- domains

#[test]
fn domain_add_list_and_delete_with_and_without_force() {
    let t = TestDir::new("users-domain");
    let data = t.path().join("data");

    let out = ok(
        &["domain", "add", "Shop.TEST", "--description", "the shop"],
        &data,
    );
    assert!(out.contains("added domain shop.test"), "{out}");
    ok(&["domain", "add", "backup.test", "--backup-mx"], &data);
    refused(
        postern(&["domain", "add", "shop.test"], &data),
        65,
        "already exists",
    );
    refused(
        postern(&["domain", "add", "bad_name.test"], &data),
        65,
        "not a valid domain",
    );
    let db = data.join("directory.sqlite");
    let row = sql(
        &db,
        "SELECT domain, description, backupmx, active, length(created), created = modified FROM domain ORDER BY domain",
    );
    assert_eq!(
        row, "backup.test||1|1|19|1\nshop.test|the shop|0|1|19|1",
        "domain rows as PostfixAdmin writes them"
    );

    add_user(&At::Data(data.clone()), "ann@shop.test", "ann-pw-1");
    ok(&["alias", "add", "sales@shop.test", "ann@shop.test"], &data);
    let list = ok(&["domain", "list"], &data);
    let shop = list
        .lines()
        .find(|l| l.starts_with("shop.test"))
        .unwrap_or_else(|| panic!("{list}"));
    let cols: Vec<&str> = shop.split_whitespace().collect();
    // DOMAIN MAILBOXES ALIASES BACKUPMX ACTIVE DESCRIPTION
    assert_eq!(&cols[..5], ["shop.test", "1", "1", "no", "yes"], "{list}");
    let backup = list.lines().find(|l| l.starts_with("backup.test")).unwrap();
    assert_eq!(
        &backup.split_whitespace().collect::<Vec<_>>()[..5],
        ["backup.test", "0", "0", "yes", "yes"]
    );

    // Mailboxes cannot go into a backup-MX domain.
    refused(
        add_user(&At::Data(data.clone()), "x@backup.test", "pw-x-1"),
        65,
        "backup MX",
    );

    // A domain with mailboxes and aliases is kept, unless --force.
    refused(
        postern(&["domain", "del", "shop.test"], &data),
        65,
        "--force",
    );
    assert_eq!(sql(&db, "SELECT COUNT(*) FROM mailbox"), "1");
    sql(
        &db,
        "INSERT INTO alias_domain (alias_domain, target_domain) VALUES ('shop-alias.test', 'shop.test')",
    );
    let out = ok(&["domain", "del", "shop.test", "--force"], &data);
    assert!(out.contains("deleted domain shop.test"), "{out}");
    assert_eq!(
        sql(
            &db,
            "SELECT (SELECT COUNT(*) FROM mailbox) || ' ' || (SELECT COUNT(*) FROM alias) || ' ' || \
             (SELECT COUNT(*) FROM alias_domain) || ' ' || (SELECT COUNT(*) FROM domain)"
        ),
        "0 0 0 1",
        "mailboxes, aliases and alias domains went with the domain"
    );
    // An empty domain goes without --force.
    ok(&["domain", "del", "backup.test"], &data);
    refused(
        postern(&["domain", "del", "backup.test"], &data),
        65,
        "does not exist",
    );
    let list = ok(&["domain", "list"], &data);
    assert_eq!(list.lines().count(), 1, "only the header is left: {list}");
}

// ---------------------------------------------------------------- users

#[test]
fn new_user_logs_in_receives_changes_password_and_is_deleted() {
    let t = TestDir::new("users-live");
    let data = t.path().join("data");
    let config = write_config(t.path(), &data, "SHA512-CRYPT");
    let at = At::Config(config.clone());

    ok(&["domain", "add", "example.test"], &data);
    let pw1 = "Sup3r-first-pw";
    let o = postern_with(
        &["user", "add", "Newbie@Example.test", "--name", "New Bie"],
        &at,
        Some(format!("{pw1}\n").as_bytes()),
        Some(pw1),
    );
    assert_eq!(o.code, 0, "{o:?}");
    assert!(
        o.stdout
            .contains("added mailbox newbie@example.test (maildir example.test/newbie/)"),
        "{o:?}"
    );
    let hash = stored_hash(&data, "newbie@example.test");
    assert!(hash.starts_with("{SHA512-CRYPT}$6$"), "stored: {hash}");
    let db = data.join("directory.sqlite");
    assert_eq!(
        sql(
            &db,
            "SELECT username, local_part, domain, maildir, name, quota, active, smtp_active FROM mailbox"
        ),
        "newbie@example.test|newbie|example.test|example.test/newbie/|New Bie|0|1|1"
    );
    assert_eq!(
        sql(&db, "SELECT address, goto, domain, active FROM alias"),
        "newbie@example.test|newbie@example.test|example.test|1",
        "the PostfixAdmin self-alias row"
    );
    let list = ok(&["user", "list"], &data);
    assert!(list.contains("newbie@example.test"), "{list}");
    assert!(list.contains("New Bie"), "{list}");
    assert!(
        !list.contains("$6$") && !list.contains("SHA512"),
        "no hash in the list: {list}"
    );

    let srv = serve(&config, t.path());
    let port = srv.addr().port();
    let r = login(
        port,
        "newbie@example.test",
        pw1,
        Some("newbie@example.test"),
    );
    assert!(r.contains("auth 235"), "the new user logs in: {r}");
    assert!(r.contains("sent {}"), "and sends: {r}");
    let maildir = data.join("mail/example.test/newbie");
    let files = wait_maildir(&maildir, 1, WAIT);
    assert_eq!(
        files.len(),
        1,
        "the message lands in the new Maildir:\n{}",
        srv.log()
    );
    let msg = std::fs::read_to_string(&files[0]).unwrap();
    assert!(msg.contains("first message"), "{msg}");

    // A new password (CRLF-terminated, as from a Windows pipe) replaces
    // the old one in the running server at once.
    let pw2 = "Sec0nd-pw-here";
    let o = postern_with(
        &["user", "passwd", "NEWBIE@example.test"],
        &at,
        Some(format!("{pw2}\r\n").as_bytes()),
        Some(pw2),
    );
    assert_eq!(o.code, 0, "{o:?}");
    assert!(o
        .stdout
        .contains("changed the password of newbie@example.test"));
    assert_ne!(stored_hash(&data, "newbie@example.test"), hash);
    let r = login(port, "newbie@example.test", pw1, None);
    assert!(r.contains("auth 535"), "the old password fails: {r}");
    let r = login(port, "newbie@example.test", pw2, None);
    assert!(r.contains("auth 235"), "the new one works: {r}");
    refused(
        postern_with(
            &["user", "passwd", "ghost@example.test"],
            &at,
            Some(b"whatever-pw\n"),
            Some("whatever-pw"),
        ),
        65,
        "no mailbox ghost@example.test",
    );

    // Deleting the mailbox takes its self-alias along; others stay, and
    // the one still pointing at it is reported.
    ok(
        &[
            "alias",
            "add",
            "group@example.test",
            "newbie@example.test",
            "x@remote.test",
        ],
        &data,
    );
    let o = postern(&["user", "del", "newbie@example.test"], &data);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(
        o.stdout.contains("deleted mailbox newbie@example.test"),
        "{o:?}"
    );
    assert!(
        o.stdout.contains("group@example.test"),
        "reports the alias: {o:?}"
    );
    assert_eq!(sql(&db, "SELECT COUNT(*) FROM mailbox"), "0");
    assert_eq!(sql(&db, "SELECT address FROM alias"), "group@example.test");
    let mut c = Smtp::connect(srv.addr());
    c.hello();
    c.expect("MAIL FROM:<sender@client.test>", "250");
    c.expect("RCPT TO:<newbie@example.test>", "550 5.1.1");
    let r = login(port, "newbie@example.test", pw2, None);
    assert!(r.contains("auth 535"), "a deleted user cannot log in: {r}");
    refused(
        postern(&["user", "del", "newbie@example.test"], &data),
        65,
        "no mailbox",
    );

    // The passwords are nowhere in plain text: not in the database, the
    // queue, the Maildirs, the config or the server's log.
    drop(srv);
    for pw in [pw1, pw2] {
        let hits = files_containing(t.path(), pw.as_bytes());
        assert!(hits.is_empty(), "{pw} found in {hits:?}");
    }
}

#[test]
fn bcrypt_is_used_when_configured() {
    let t = TestDir::new("users-bcrypt");
    let data = t.path().join("data");
    let config = write_config(t.path(), &data, "BLF-CRYPT");
    let at = At::Config(config.clone());
    let o = postern_with(&["domain", "add", "example.test"], &at, None, None);
    assert_eq!(o.code, 0, "{o:?}");
    let o = add_user(&at, "bea@example.test", "bea-blowfish-pw");
    assert_eq!(o.code, 0, "{o:?}");
    let hash = stored_hash(&data, "bea@example.test");
    assert!(hash.starts_with("{BLF-CRYPT}$2y$"), "stored: {hash}");

    let srv = serve(&config, t.path());
    let port = srv.addr().port();
    let r = login(port, "bea@example.test", "bea-blowfish-pw", None);
    assert!(r.contains("auth 235"), "{r}");
    let r = login(port, "bea@example.test", "bea-blowfish-PW", None);
    assert!(r.contains("auth 535"), "{r}");
}

#[test]
fn user_add_refuses_bad_input() {
    let t = TestDir::new("users-errors");
    let data = t.path().join("data");
    let at = At::Data(data.clone());
    ok(&["domain", "add", "example.test"], &data);

    refused(
        add_user(&at, "amy@missing.test", "amy-pw-1"),
        65,
        "domain missing.test does not exist; add it with `postern domain add missing.test`",
    );
    assert_eq!(add_user(&at, "amy@example.test", "amy-pw-1").code, 0);
    refused(
        add_user(&at, "AMY@example.test", "amy-pw-2"),
        65,
        "mailbox amy@example.test already exists",
    );
    for bad in [
        "amy",
        "amy@",
        "a b@example.test",
        "amy@[127.0.0.1]",
        "a/b@example.test",
    ] {
        refused(add_user(&at, bad, "bad-pw-1"), 65, "");
    }
    // Empty passwords: an empty line, a lone CRLF, no input at all.
    for input in [&b"\n"[..], b"\r\n", b""] {
        let o = postern_with(&["user", "add", "bo@example.test"], &at, Some(input), None);
        refused(o, 65, "empty password");
    }
    // An over-long line is refused whole: nothing of it is stored.
    let long = format!("{}\n", "p".repeat(2000));
    let o = postern_with(
        &["user", "add", "bo@example.test"],
        &at,
        Some(long.as_bytes()),
        None,
    );
    refused(o, 65, "longer than 1024 bytes");
    // An address that is an alias already is not silently shadowed.
    ok(
        &["alias", "add", "info@example.test", "amy@example.test"],
        &data,
    );
    refused(
        add_user(&at, "info@example.test", "info-pw-1"),
        65,
        "is an alias",
    );
    refused(
        postern(&["user", "add", "q@example.test", "--quota", "lots"], &data),
        // argh's own usage error.
        1,
        "not a size",
    );
    let o = postern_with(
        &["user", "add", "quota@example.test", "--quota", "10M"],
        &at,
        Some(b"quota-pw-1\n"),
        None,
    );
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(
        sql(
            &data.join("directory.sqlite"),
            "SELECT quota FROM mailbox WHERE username = 'quota@example.test'"
        ),
        "10485760"
    );
    // Only the two good mailboxes exist: no refusal left a row behind.
    assert_eq!(
        sql(
            &data.join("directory.sqlite"),
            "SELECT username FROM mailbox ORDER BY 1"
        ),
        "amy@example.test\nquota@example.test"
    );
}

#[test]
fn a_locked_database_is_a_temporary_failure() {
    let t = TestDir::new("users-locked");
    let data = t.path().join("data");
    let config = write_config(t.path(), &data, "SHA512-CRYPT");
    ok(&["domain", "add", "example.test"], &data);
    // A writer that holds the database for longer than lookup_timeout (1s).
    let mut holder = python()
        .arg("-c")
        .arg(
            "import sqlite3, sys, time\n\
             c = sqlite3.connect(sys.argv[1], isolation_level=None)\n\
             c.execute('BEGIN EXCLUSIVE')\n\
             print('locked', flush=True)\n\
             time.sleep(15)\n",
        )
        .arg(data.join("directory.sqlite"))
        .stdout(Stdio::piped())
        .spawn()
        .map(ChildGuard::new)
        .unwrap();
    let mut word = [0u8; 6];
    holder
        .stdout
        .as_mut()
        .unwrap()
        .read_exact(&mut word)
        .unwrap();
    assert_eq!(&word, b"locked");
    let o = add_user(&At::Config(config), "late@example.test", "late-pw-1");
    holder.kill();
    refused(o, 75, "locked");
    // Once free, the same command works.
    assert_eq!(
        add_user(&At::Data(data.clone()), "late@example.test", "late-pw-1").code,
        0
    );
}

// ---------------------------------------------------------------- the prompt

/// Runs `sh -c CMD` on a terminal of its own (a pty this test makes,
/// with its modes and the child's signal dispositions set explicitly, see
/// common::pty), typing each answer once its prompt has appeared; returns
/// (exit code, everything the terminal showed). Nothing here depends on
/// the terminal, signals or stdin the suite was started with: started as
/// a background job, the suite has SIGINT ignored, which `sh` could not
/// trap and the ^C below would never deliver.
fn in_terminal(cmd: &str, answers: &[(&str, &str)]) -> (i32, String) {
    let mut sh = peer("sh");
    sh.args(["-c", cmd]);
    let mut term = pty::PtyChild::spawn(sh);
    for (prompt, answer) in answers {
        let deadline = Instant::now() + WAIT;
        while !term.seen().contains(prompt) {
            assert!(
                Instant::now() < deadline,
                "no prompt {prompt:?}; saw {:?}",
                term.seen()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        // No pause needed: postern turns echo off (flushing what was typed
        // before) before it prints the prompt, so from here on what we
        // type waits in the terminal for its read().
        term.type_in(answer.as_bytes());
        term.type_in(b"\n");
    }
    let (status, text) = term.finish(WAIT);
    (status.code().unwrap_or(-1), text)
}

#[test]
fn terminal_prompt_hides_the_password_and_checks_the_retype() {
    let t = TestDir::new("users-tty");
    let data = t.path().join("data");
    ok(&["domain", "add", "example.test"], &data);
    let add = |user: &str| {
        format!(
            "{BIN} user add {user} --data-dir {}; echo \"rc=$?\"; stty -a",
            data.display()
        )
    };

    // A mismatched retype is refused and nothing is stored.
    let (code, text) = in_terminal(
        &add("tia@example.test"),
        &[
            ("New password for tia@example.test:", "tty-first-pw"),
            ("Retype the new password:", "tty-other-pw"),
        ],
    );
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("the passwords do not match"), "{text}");
    assert!(text.contains("rc=65"), "{text}");
    assert!(
        !text.contains("tty-first-pw") && !text.contains("tty-other-pw"),
        "echoed: {text}"
    );
    assert!(
        text.contains(" echo ") && !text.contains("-echo "),
        "the terminal is left with echo on: {text}"
    );
    assert_eq!(
        sql(
            &data.join("directory.sqlite"),
            "SELECT COUNT(*) FROM mailbox"
        ),
        "0"
    );

    // Matching answers create the user.
    let (_, text) = in_terminal(
        &add("tia@example.test"),
        &[
            ("New password for tia@example.test:", "tty-right-pw"),
            ("Retype the new password:", "tty-right-pw"),
        ],
    );
    assert!(text.contains("added mailbox tia@example.test"), "{text}");
    assert!(text.contains("rc=0"), "{text}");
    assert!(!text.contains("tty-right-pw"), "echoed: {text}");
    assert!(
        text.contains(" echo ") && !text.contains("-echo "),
        "{text}"
    );
    assert!(stored_hash(&data, "tia@example.test").starts_with("{SHA512-CRYPT}$6$"));

    // Interrupted at the prompt (^C): the terminal gets its echo back.
    let (_, text) = in_terminal(
        &format!(
            "sh -c 'trap \"echo interrupted; stty -a; exit 130\" INT; {BIN} user passwd tia@example.test --data-dir {}; echo rc=$?'",
            data.display()
        ),
        &[("New password for tia@example.test:", "half\x03")],
    );
    assert!(text.contains("interrupted"), "{text}");
    assert!(
        text.contains(" echo ") && !text.contains("-echo "),
        "echo restored after SIGINT: {text}"
    );
    assert!(!text.contains("half"), "{text}");
}

// ---------------------------------------------------------------- aliases

#[test]
fn aliases_add_append_list_delete_and_catch_all() {
    let srv = Server::builder().fixture(false).start();
    let data = srv.data.clone();
    ok(&["domain", "add", "shop.test"], &data);
    add_user(&At::Data(data.clone()), "sam@shop.test", "sam-pw-1");

    let out = ok(
        &[
            "alias",
            "add",
            "Sales@Shop.test",
            "sam@shop.test",
            "boss@remote.test",
        ],
        &data,
    );
    assert!(
        out.contains("sales@shop.test -> sam@shop.test,boss@remote.test"),
        "{out}"
    );
    refused(
        postern(&["alias", "add", "sales@shop.test", "x@remote.test"], &data),
        65,
        "--append",
    );
    let out = ok(
        &[
            "alias",
            "add",
            "sales@shop.test",
            "x@remote.test",
            "BOSS@remote.test",
            "--append",
        ],
        &data,
    );
    assert!(
        out.contains("sales@shop.test -> sam@shop.test,boss@remote.test,x@remote.test"),
        "targets appended without duplicates: {out}"
    );

    // The running server sees a catch-all as soon as it is added.
    let mut c = srv.smtp();
    c.hello();
    c.expect("MAIL FROM:<sender@client.test>", "250");
    c.expect("RCPT TO:<anything@shop.test>", "550 5.1.1");
    ok(&["alias", "add", "@shop.test", "sam@shop.test"], &data);
    c.expect("RSET", "250");
    c.expect("MAIL FROM:<sender@client.test>", "250");
    c.expect("RCPT TO:<anything@shop.test>", "250");
    c.expect("DATA", "354");
    let r = c.cmd(&format!("{}\r\n.", message("catch-all", "caught")));
    assert_eq!(r.code, 250, "{r:?}");
    let files = wait_maildir(&srv.mailbox("shop.test/sam/"), 1, WAIT);
    assert_eq!(files.len(), 1, "{}", srv.log());

    let list = ok(&["alias", "list"], &data);
    assert_eq!(
        list.trim_end(),
        "@shop.test -> sam@shop.test\nsales@shop.test -> sam@shop.test,boss@remote.test,x@remote.test",
        "the mailbox's own alias row is not listed"
    );
    ok(&["domain", "add", "other.test"], &data);
    ok(&["alias", "add", "o@other.test", "sam@shop.test"], &data);
    assert_eq!(
        ok(&["alias", "list", "other.test"], &data).trim_end(),
        "o@other.test -> sam@shop.test"
    );

    // A mailbox can forward as well (its row gets the extra target), and
    // `alias del` takes the forward away without touching the mailbox.
    refused(
        postern(&["alias", "add", "sam@shop.test", "x@remote.test"], &data),
        65,
        "is a mailbox",
    );
    ok(
        &["alias", "add", "sam@shop.test", "x@remote.test", "--append"],
        &data,
    );
    let db = data.join("directory.sqlite");
    assert_eq!(
        sql(
            &db,
            "SELECT goto FROM alias WHERE address = 'sam@shop.test'"
        ),
        "sam@shop.test,x@remote.test"
    );
    let out = ok(&["alias", "del", "sam@shop.test"], &data);
    assert!(out.contains("keeps its mail"), "{out}");
    assert_eq!(
        sql(
            &db,
            "SELECT goto FROM alias WHERE address = 'sam@shop.test'"
        ),
        "sam@shop.test"
    );
    refused(
        postern(&["alias", "del", "sam@shop.test"], &data),
        65,
        "user del",
    );

    // Errors.
    refused(
        postern(&["alias", "add", "a@nowhere.test", "sam@shop.test"], &data),
        65,
        "domain nowhere.test does not exist",
    );
    refused(
        postern(&["alias", "add", "b@shop.test", "not an address"], &data),
        65,
        "not a valid mail address",
    );
    refused(
        postern(&["alias", "add", "c@shop.test"], &data),
        65,
        "at least one target",
    );
    refused(
        postern(&["alias", "del", "nope@shop.test"], &data),
        65,
        "no alias",
    );

    // Deleting the catch-all: the server refuses unknown users again.
    let out = ok(&["alias", "del", "@shop.test"], &data);
    assert!(out.contains("deleted alias @shop.test"), "{out}");
    ok(&["alias", "del", "Sales@shop.test"], &data);
    c.expect("RSET", "250");
    c.expect("MAIL FROM:<sender@client.test>", "250");
    c.expect("RCPT TO:<anything@shop.test>", "550 5.1.1");
    c.expect("RCPT TO:<sales@shop.test>", "550 5.1.1");
    c.expect("RCPT TO:<sam@shop.test>", "250");
    assert_eq!(
        ok(&["alias", "list", "shop.test"], &data).trim_end(),
        "",
        "{}",
        sql(&db, "SELECT * FROM alias")
    );
}
