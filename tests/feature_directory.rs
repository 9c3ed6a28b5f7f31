//! Issue 2, section 5: who exists, from the SQLite mirror of PostfixAdmin's
//! tables (loaded with the fixture's own INSERT statements) and, for the
//! local domains, from an aliases(5) file. Driven by swaks, Python's smtplib
//! and raw SMTP against the real server.
//!
//! Fixture: example.test hosts alice, bob, carol, ... and frank (inactive);
//! aliases team→alice,bob, fwd→someone@remote.test, loop1↔loop2, old
//! (inactive), postmaster→alice, @catchall.test→alice; alias.test is an alias
//! domain of example.test; backup.test is backupmx=1; inactive.test is off.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use common::*;

const WAIT: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------- clients

/// One message with swaks from `local_ip`; returns the queue ID.
fn swaks_send(srv: &Server, local_ip: &str, to: &str, subject: &str) -> String {
    require("swaks");
    let (ok, out) = run(peer("swaks")
        .args(["--server", "127.0.0.1", "--port", &srv.port.to_string()])
        .args(["--local-interface", local_ip, "--helo", "client.test"])
        .args(["--from", "sender@client.test", "--to", to])
        .args(["--header", &format!("Subject: {subject}")])
        .args(["--body", "directory test\n"]));
    assert!(ok, "swaks to {to} failed:\n{out}");
    queue_id_in(&out).unwrap_or_else(|| panic!("no queue ID in swaks output:\n{out}"))
}

/// What Python's smtplib saw: the reply to each RCPT, and to DATA.
struct PyResult {
    rcpt: Vec<(u16, String)>,
    data: Option<(u16, String)>,
}

const PY_CLIENT: &str = r#"
import smtplib, sys
port, source, sender, subject = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
rcpts = sys.argv[5:]
s = smtplib.SMTP("127.0.0.1", port, source_address=(source, 0), timeout=30)
s.ehlo("client.test")
code, msg = s.mail(sender)
assert code == 250, (code, msg)
accepted = False
for r in rcpts:
    code, msg = s.docmd("RCPT", "TO:<%s>" % r)
    print("rcpt\t%d\t%s" % (code, msg.decode().replace("\n", " ")))
    accepted = accepted or code == 250
if accepted:
    body = "From: sender@client.test\r\nSubject: %s\r\n\r\nsent with smtplib\r\n" % subject
    code, msg = s.data(body.encode())
    print("data\t%d\t%s" % (code, msg.decode().replace("\n", " ")))
else:
    s.rset()
s.quit()
"#;

/// Sends RCPT for each address with smtplib (each answered separately),
/// then DATA if any was accepted.
fn smtplib(srv: &Server, source: &str, subject: &str, rcpts: &[&str]) -> PyResult {
    let out = python()
        .args([
            "-c",
            PY_CLIENT,
            &srv.port.to_string(),
            source,
            "sender@client.test",
            subject,
        ])
        .args(rcpts)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "smtplib failed:\n{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut r = PyResult {
        rcpt: Vec::new(),
        data: None,
    };
    for l in stdout.lines() {
        let mut f = l.splitn(3, '\t');
        let (kind, code, text) = (f.next().unwrap(), f.next().unwrap(), f.next().unwrap_or(""));
        let entry = (code.parse().unwrap(), text.to_string());
        match kind {
            "rcpt" => r.rcpt.push(entry),
            "data" => r.data = Some(entry),
            _ => panic!("{l}"),
        }
    }
    assert_eq!(r.rcpt.len(), rcpts.len(), "{stdout}");
    r
}

/// The reply to `RCPT TO:<rcpt>` in a fresh transaction from `client`.
fn rcpt_reply(c: &mut Smtp, rcpt: &str) -> Reply {
    c.expect("MAIL FROM:<sender@client.test>", "250");
    let r = c.cmd(&format!("RCPT TO:<{rcpt}>"));
    c.expect("RSET", "250");
    r
}

/// Waits until the queue is done with `id` (delivered, or deferred).
fn wait_done(srv: &Server, id: &str) {
    let removed = format!("{id}: removed");
    let deferred = format!("{id}: to=");
    let ok = (0..1000).any(|_| {
        let log = srv.log();
        if log.contains(&removed) || (log.contains(&deferred) && log.contains("status=deferred")) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
        false
    });
    assert!(
        ok,
        "{id} was neither delivered nor deferred:\n{}",
        srv.log()
    );
}

fn wait_removed(srv: &Server, id: &str) {
    assert!(
        srv.wait_log(&format!("{id}: removed"), WAIT),
        "{id} not delivered:\n{}",
        srv.log()
    );
}

/// Files of a Maildir whose text contains `needle`.
fn files_with(maildir: &Path, needle: &str) -> usize {
    maildir_files(maildir)
        .iter()
        .filter(|f| {
            std::fs::read_to_string(f)
                .unwrap_or_default()
                .contains(needle)
        })
        .count()
}

/// Every regular file under `dir`, recursively.
fn all_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(all_files(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

// ---------------------------------------------------------------- fixture

#[test]
fn fixture_inserts_run_unchanged_against_the_schema() {
    let dir = TestDir::new("fixture");
    let db = dir.path().join("directory.sqlite");
    let statements = fixture_statements();
    assert!(statements.len() >= 5, "{statements:?}");
    assert!(
        statements.iter().all(|s| s.contains('`')),
        "the statements are the dump's, backquotes and all"
    );
    load_fixture(&db);
    let conn = rusqlite::Connection::open(&db).unwrap();
    let count = |sql: &str| -> i64 { conn.query_row(sql, [], |r| r.get(0)).unwrap() };
    assert_eq!(count("SELECT count(*) FROM domain"), 5);
    assert_eq!(count("SELECT count(*) FROM mailbox"), 9);
    assert_eq!(count("SELECT count(*) FROM alias"), 16);
    assert_eq!(count("SELECT count(*) FROM alias_domain"), 1);
    assert_eq!(count("SELECT count(*) FROM domain WHERE backupmx = 1"), 1);
    assert_eq!(count("SELECT count(*) FROM mailbox WHERE active = 0"), 1);
    assert_eq!(
        count("SELECT smtp_active FROM mailbox WHERE username = 'hank@example.test'"),
        0
    );
    // Defaults of columns the INSERTs leave out, as PostfixAdmin's schema has them.
    assert_eq!(
        count("SELECT smtp_active FROM mailbox WHERE username = 'alice@example.test'"),
        1
    );
    // Key columns are case-insensitive, as latin1_general_ci makes them.
    assert_eq!(
        count("SELECT count(*) FROM mailbox WHERE username = 'ALICE@Example.TEST'"),
        1
    );
}

// ---------------------------------------------------------------- mailboxes

#[test]
fn mailbox_any_case_and_address_extension_reach_the_maildir() {
    let srv = Server::start();
    let alice = srv.mailbox("example.test/alice/");
    assert_eq!(alice, srv.data.join("mail/example.test/alice/"));
    let id1 = swaks_send(&srv, "127.0.0.2", "alice@example.test", "plain-address");
    let py = smtplib(&srv, "127.0.0.2", "any-case", &["ALICE@Example.TEST"]);
    assert_eq!(py.rcpt[0].0, 250, "{:?}", py.rcpt);
    let id2 = queue_id_in(&py.data.as_ref().unwrap().1).expect("queued");
    let id3 = swaks_send(&srv, "127.0.0.2", "alice+lists@example.test", "extension");
    for id in [&id1, &id2, &id3] {
        wait_removed(&srv, id);
    }
    let files = wait_maildir(&alice, 3, WAIT);
    assert_eq!(files.len(), 3, "{files:?}\n{}", srv.log());
    for s in [
        "Subject: plain-address",
        "Subject: any-case",
        "Subject: extension",
    ] {
        assert_eq!(files_with(&alice, s), 1, "{s}");
    }
    assert!(
        alice.join("tmp").is_dir() && alice.join("cur").is_dir(),
        "a Maildir with tmp/ new/ cur/"
    );
    // Nobody else got anything; the extension did not make a mailbox of its own.
    let others: Vec<PathBuf> = all_files(&srv.data.join("mail"))
        .into_iter()
        .filter(|p| !p.starts_with(&alice))
        .collect();
    assert!(others.is_empty(), "{others:?}");
}

// ---------------------------------------------------------------- aliases

#[test]
fn multi_target_alias_gives_one_copy_per_mailbox() {
    let srv = Server::start();
    let alice = srv.mailbox("example.test/alice/");
    let bob = srv.mailbox("example.test/bob/");
    let id = swaks_send(&srv, "127.0.0.2", "team@example.test", "to-team");
    wait_removed(&srv, &id);
    assert_eq!(files_with(&alice, "Subject: to-team"), 1);
    assert_eq!(files_with(&bob, "Subject: to-team"), 1);

    // team (→ alice, bob) and alice in one message: alice still gets one copy.
    let py = smtplib(
        &srv,
        "127.0.0.2",
        "team-and-alice",
        &["team@example.test", "alice@example.test"],
    );
    assert!(py.rcpt.iter().all(|r| r.0 == 250), "{:?}", py.rcpt);
    let id = queue_id_in(&py.data.unwrap().1).expect("queued");
    wait_removed(&srv, &id);
    assert_eq!(
        files_with(&alice, "Subject: team-and-alice"),
        1,
        "alice gets ONE copy"
    );
    assert_eq!(files_with(&bob, "Subject: team-and-alice"), 1);
    assert_eq!(maildir_files(&alice).len(), 2);
    assert_eq!(maildir_files(&bob).len(), 2);
}

#[test]
fn alias_domain_catchall_and_postmaster() {
    let srv = Server::start();
    let alice = srv.mailbox("example.test/alice/");
    let bob = srv.mailbox("example.test/bob/");
    let id = swaks_send(&srv, "127.0.0.2", "bob@alias.test", "via-alias-domain");
    wait_removed(&srv, &id);
    assert_eq!(
        files_with(&bob, "Subject: via-alias-domain"),
        1,
        "{}",
        srv.log()
    );

    let id = swaks_send(
        &srv,
        "127.0.0.2",
        "anything.at.all@catchall.test",
        "catch-all",
    );
    wait_removed(&srv, &id);
    assert_eq!(files_with(&alice, "Subject: catch-all"), 1, "{}", srv.log());

    let id = swaks_send(
        &srv,
        "127.0.0.2",
        "postmaster@example.test",
        "postmaster-alias",
    );
    wait_removed(&srv, &id);
    assert_eq!(
        files_with(&alice, "Subject: postmaster-alias"),
        1,
        "{}",
        srv.log()
    );

    // The alias domain adds no users of its own.
    let mut c = srv.smtp_untrusted();
    c.hello();
    let r = rcpt_reply(&mut c, "nobody@alias.test");
    assert!(r.first.starts_with("550 5.1.1"), "{r:?}");
    // Case and extension work through the alias domain too.
    assert!(rcpt_reply(&mut c, "Bob+x@ALIAS.test")
        .first
        .starts_with("250"));
}

#[test]
fn postmaster_without_domain_and_at_localhost_is_accepted() {
    let srv = Server::start();
    let mut c = srv.smtp_untrusted();
    c.hello();
    for rcpt in [
        "postmaster",
        "Postmaster",
        "POSTMASTER@localhost",
        "postmaster@mx.example.test",
        "PostMaster@Example.Test",
    ] {
        let r = rcpt_reply(&mut c, rcpt);
        assert!(
            r.first.starts_with("250"),
            "RCPT TO:<{rcpt}> (RFC 5321 4.5.1): {r:?}"
        );
    }
    let r = c.send_mail(
        "sender@client.test",
        &["postmaster"],
        &message("bare postmaster", "hi\r\n"),
    );
    assert!(r.first.starts_with("250"), "{r:?}");
    let id = queue_id_in(&r.first).unwrap();
    wait_removed(&srv, &id);
    assert!(
        srv.log()
            .contains(&format!("{id}: to=<postmaster@mx.example.test>")),
        "{}",
        srv.log()
    );
}

#[test]
fn forward_to_a_remote_address_is_accepted_and_stays_queued() {
    let srv = Server::start();
    let id = swaks_send(&srv, "127.0.0.2", "fwd@example.test", "forwarded");
    wait_done(&srv, &id);
    let log = srv.log();
    let line = log
        .lines()
        .find(|l| l.contains(&format!("{id}: to=<someone@remote.test>")))
        .unwrap_or_else(|| panic!("no delivery line for the forward target:\n{log}"));
    assert!(line.contains("status=deferred"), "{line}");
    assert!(line.contains("orig_to=<fwd@example.test>"), "{line}");
    assert!(!log.contains(&format!("{id}: removed")), "{log}");
    assert!(
        srv.queue_dir().join("messages").join(&id).is_file(),
        "the message stays in queue/messages"
    );
    assert!(
        all_files(&srv.data.join("mail")).is_empty(),
        "nothing stored in a Maildir"
    );
}

#[test]
fn unknown_inactive_and_looping_recipients_are_refused_at_rcpt() {
    let srv = Server::start();
    let py = smtplib(
        &srv,
        "127.0.0.2",
        "refused",
        &[
            "loop1@example.test",
            "unknown@example.test",
            "frank@example.test",
            "old@example.test",
            "someone@inactive.test",
            "alice@example.test",
        ],
    );
    let codes: Vec<String> = py.rcpt.iter().map(|(c, t)| format!("{c} {t}")).collect();
    assert!(codes[0].starts_with("550 5.4.6"), "loop1: {codes:?}");
    assert!(codes[1].starts_with("550 5.1.1"), "unknown: {codes:?}");
    assert!(
        codes[2].starts_with("550 5.1.1"),
        "frank (inactive mailbox): {codes:?}"
    );
    assert!(
        codes[3].starts_with("550 5.1.1"),
        "old (inactive alias): {codes:?}"
    );
    assert!(
        codes[4].starts_with("554 5.7.1"),
        "inactive.test from an untrusted client: {codes:?}"
    );
    assert!(codes[4].contains("Relay access denied"), "{codes:?}");
    assert!(codes[5].starts_with("250"), "alice: {codes:?}");
    let (code, text) = py.data.unwrap();
    assert_eq!(code, 250, "{text}");
    let id = queue_id_in(&text).unwrap();
    wait_removed(&srv, &id);
    // Only alice was in the envelope: no bounce for the refused ones, ever.
    let log = srv.log();
    assert!(
        log.contains(&format!("{id}: from=<sender@client.test>, size=")),
        "{log}"
    );
    assert!(log.contains("nrcpt=1"), "{log}");
    assert!(
        !log.contains("bounce"),
        "refused recipients must not bounce later:\n{log}"
    );
    assert!(!log.contains("status=deferred"), "{log}");
    assert_eq!(maildir_files(&srv.mailbox("example.test/alice/")).len(), 1);
    assert!(
        !srv.mailbox("example.test/frank/").exists(),
        "frank is inactive"
    );
    let left = std::fs::read_dir(srv.queue_dir().join("messages"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(left, 0, "queue not empty");

    // The same from a raw client, one at a time, each with its own reply.
    let mut c = srv.smtp_untrusted();
    c.hello();
    for (rcpt, want) in [
        ("loop2@example.test", "550 5.4.6"),
        ("nobody@example.test", "550 5.1.1"),
        ("FRANK@example.test", "550 5.1.1"),
        ("frank+x@example.test", "550 5.1.1"),
        ("Old@Example.Test", "550 5.1.1"),
        ("alice@inactive.test", "554 5.7.1"),
    ] {
        let r = rcpt_reply(&mut c, rcpt);
        assert!(r.first.starts_with(want), "{rcpt}: want {want}, got {r:?}");
    }
}

#[test]
fn backup_mx_domain_accepts_any_local_part_and_keeps_it_queued() {
    let srv = Server::start();
    let mut c = srv.smtp_untrusted();
    c.hello();
    for rcpt in [
        "anyone@backup.test",
        "no.such.user@backup.test",
        "X+Y@Backup.Test",
    ] {
        assert!(rcpt_reply(&mut c, rcpt).first.starts_with("250"), "{rcpt}");
    }
    drop(c);
    let id = swaks_send(&srv, "127.0.0.2", "anyone@backup.test", "for-the-primary");
    wait_done(&srv, &id);
    let log = srv.log();
    assert!(
        log.contains(&format!("{id}: to=<anyone@backup.test>")),
        "{log}"
    );
    assert!(
        log.lines()
            .any(|l| l.contains(&format!("{id}: to=")) && l.contains("status=deferred")),
        "{log}"
    );
    assert!(
        srv.queue_dir().join("messages").join(&id).is_file(),
        "stays queued for the onward relay"
    );
    assert!(
        all_files(&srv.data.join("mail")).is_empty(),
        "never stored in a Maildir"
    );
    assert!(
        all_files(&srv.data.join("local")).is_empty(),
        "never stored in a Maildir"
    );
}

// ---------------------------------------------------------------- local domains

const ALIASES: &str =
    "root: alice@example.test\nops: root, bob@example.test\n  , carol@example.test\n# comment\n";

#[test]
fn local_domains_use_the_aliases_file_then_local_users() {
    let srv = Server::builder().aliases(ALIASES).start();
    let alice = srv.mailbox("example.test/alice/");
    let bob = srv.mailbox("example.test/bob/");
    let carol = srv.mailbox("example.test/carol/");

    let id = swaks_send(&srv, "127.0.0.2", "root@localhost", "to-root");
    wait_removed(&srv, &id);
    assert_eq!(files_with(&alice, "Subject: to-root"), 1, "{}", srv.log());

    // ops: root (→ alice), bob, and carol from the continuation line.
    let py = smtplib(&srv, "127.0.0.2", "to-ops", &["ops@mx.example.test"]);
    assert_eq!(py.rcpt[0].0, 250);
    let id = queue_id_in(&py.data.unwrap().1).unwrap();
    wait_removed(&srv, &id);
    for (who, m) in [("alice", &alice), ("bob", &bob), ("carol", &carol)] {
        assert_eq!(files_with(m, "Subject: to-ops"), 1, "{who}:\n{}", srv.log());
    }

    // Names not in the file are local users (local_users = "any").
    let id = swaks_send(&srv, "127.0.0.2", "zed@localhost", "to-zed");
    wait_removed(&srv, &id);
    let zed = srv.local_mailbox("zed");
    assert_eq!(zed, srv.data.join("local/zed"));
    assert_eq!(files_with(&zed, "Subject: to-zed"), 1, "{}", srv.log());
    // "# comment" is not an alias named "#".
    let mut c = srv.smtp_untrusted();
    c.hello();
    assert!(rcpt_reply(&mut c, "ROOT@LocalHost")
        .first
        .starts_with("250"));
}

#[test]
fn aliases_only_refuses_names_not_in_the_aliases_file() {
    let srv = Server::builder()
        .aliases(ALIASES)
        .set("directory", "local_users = \"aliases-only\"")
        .start();
    let mut c = srv.smtp_untrusted();
    c.hello();
    for rcpt in ["zed@localhost", "nobody@mx.example.test", "alice@localhost"] {
        let r = rcpt_reply(&mut c, rcpt);
        assert!(r.first.starts_with("550 5.1.1"), "{rcpt}: {r:?}");
    }
    for rcpt in [
        "root@localhost",
        "ops@mx.example.test",
        "postmaster@localhost",
        "postmaster",
    ] {
        let r = rcpt_reply(&mut c, rcpt);
        assert!(r.first.starts_with("250"), "{rcpt}: {r:?}");
    }
    assert!(!srv.data.join("local/zed").exists());
}

#[test]
fn aliases_file_others_may_write_cannot_run_programs_and_stops_serve() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TestDir::new("badaliases");
    let aliases = dir.path().join("aliases");
    std::fs::write(
        &aliases,
        "root: alice@example.test\nbackup: |/bin/cmd\narchive: /tmp/file\n# fine\nlists: :include:/x\n",
    )
    .unwrap();
    // Writable by others: whoever can write it could run commands as us.
    std::fs::set_permissions(&aliases, std::fs::Permissions::from_mode(0o666)).unwrap();
    let config = dir.path().join("postern.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"{}\"\nhostname = \"mx.example.test\"\n\n[[listener]]\naddress = \"127.0.0.1:0\"\n\n[directory]\naliases_file = \"{}\"\n",
            dir.path().join("data").display(),
            aliases.display()
        ),
    )
    .unwrap();
    let mut child = postern()
        .args(["serve", "--config"])
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_timeout(&mut child, WAIT);
    let stderr = std::io::read_to_string(child.stderr.take().unwrap()).unwrap();
    assert_eq!(status.code(), Some(78), "{stderr}");
    let a = aliases.display().to_string();
    for want in [
        format!("{a}:2: alias backup: |/bin/cmd: command targets are only honoured"),
        format!("{a}:3: alias archive: /tmp/file: file targets are only honoured"),
        // An include is read whatever the file's owner; this one is missing.
        format!("{a}:5: alias lists: :include:/x: cannot read /x"),
    ] {
        assert!(stderr.contains(&want), "missing {want:?} in:\n{stderr}");
    }
    assert!(!stderr.contains("listening on"), "{stderr}");
}

// ---------------------------------------------------------------- lookup failures

const GARBAGE: &[u8] = b"this is not an SQLite database, it was damaged on purpose\n";

fn expect_tempfail(srv: &Server, rcpt: &str) {
    let mut c = srv.smtp_untrusted();
    c.hello();
    let r = rcpt_reply(&mut c, rcpt);
    assert!(
        r.first.starts_with("451 4.3.0"),
        "a lookup failure is 451 4.3.0, never 550: {r:?}\n{}",
        srv.log()
    );
    c.cmd("QUIT");
}

fn expect_accepted(srv: &Server, rcpt: &str) {
    let mut c = srv.smtp_untrusted();
    c.hello();
    let r = rcpt_reply(&mut c, rcpt);
    assert!(r.first.starts_with("250"), "{r:?}\n{}", srv.log());
    c.cmd("QUIT");
}

/// The log says why lookups fail, not just that they do.
fn assert_log_explains(srv: &Server, why: &[&str]) {
    let log = srv.log();
    assert!(
        why.iter().any(|w| log.to_lowercase().contains(w)),
        "the log does not say why the lookup failed (looked for {why:?}):\n{log}"
    );
}

#[test]
fn damaged_database_after_start_answers_451_then_recovers() {
    let srv = Server::start();
    expect_accepted(&srv, "alice@example.test");
    let db = srv.data.join("directory.sqlite");
    let good = std::fs::read(&db).unwrap();
    std::fs::write(&db, GARBAGE.repeat(200)).unwrap();
    expect_tempfail(&srv, "alice@example.test");
    expect_tempfail(&srv, "unknown@example.test");
    // Repaired in place: lookups work again without a restart.
    std::fs::write(&db, good).unwrap();
    expect_accepted(&srv, "alice@example.test");
    assert_log_explains(&srv, &["not a database", "malformed", "corrupt"]);
}

#[test]
fn damaged_database_before_start_answers_451() {
    let mut srv = Server::start();
    srv.stop();
    std::fs::write(srv.data.join("directory.sqlite"), GARBAGE.repeat(200)).unwrap();
    srv.restart();
    expect_tempfail(&srv, "alice@example.test");
    expect_tempfail(&srv, "bob@alias.test");
    assert_log_explains(&srv, &["not a database", "malformed", "corrupt"]);
}

/// A python3 process holding `BEGIN EXCLUSIVE` on the database.
struct Locker(Child);

impl Locker {
    fn hold(db: &Path) -> Locker {
        let mut child = python()
            .args([
                "-c",
                "import sqlite3, sys\n\
                 c = sqlite3.connect(sys.argv[1], isolation_level=None)\n\
                 c.execute('BEGIN EXCLUSIVE')\n\
                 print('locked', flush=True)\n\
                 sys.stdin.readline()\n\
                 c.execute('COMMIT')\n",
            ])
            .arg(db)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "locked");
        Locker(child)
    }

    fn release(mut self) {
        self.0.stdin.as_mut().unwrap().write_all(b"\n").unwrap();
        let status = wait_timeout(&mut self.0, WAIT);
        assert!(status.success());
    }
}

impl Drop for Locker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn locked_database_answers_451_and_250_once_released() {
    let srv = Server::builder()
        .set("directory", "lookup_timeout = \"1s\"")
        .start();
    expect_accepted(&srv, "alice@example.test");
    let lock = Locker::hold(&srv.data.join("directory.sqlite"));
    // A lookup that needs the database waits lookup_timeout, then 451.
    expect_tempfail(&srv, "bob@example.test");
    // An answer read before the lock, from the unchanged file, still holds.
    expect_accepted(&srv, "alice@example.test");
    lock.release();
    expect_accepted(&srv, "bob@example.test");
    // And a whole message goes through again.
    let id = swaks_send(&srv, "127.0.0.2", "alice@example.test", "after-the-lock");
    wait_removed(&srv, &id);
    assert_log_explains(&srv, &["locked", "busy"]);
}

/// A new mirror renamed into place (as a sync or an admin copying a file
/// in would do) is read by the very next lookup, even while other clients
/// keep every pooled database connection busy on the old file.
#[test]
fn database_renamed_into_place_under_load_answers_the_next_rcpt() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;
    let srv = Server::start();
    let db = srv.data.join("directory.sqlite");
    assert_eq!(
        rcpt_reply(&mut hello(&srv), "newbie@example.test").code,
        550
    );

    // Load: clients asking for recipients without pause, so the server's
    // connection pool is full of connections opened on the old file.
    let stop = Arc::new(AtomicBool::new(false));
    let asked = Arc::new(AtomicUsize::new(0));
    let load: Vec<_> = (0..4)
        .map(|i| {
            let (stop, asked, addr) = (stop.clone(), asked.clone(), srv.addr());
            std::thread::spawn(move || {
                let mut c = Smtp::connect(addr);
                c.hello();
                c.expect("MAIL FROM:<load@client.test>", "250");
                let who = ["alice", "bob", "carol", "dave"][i];
                while !stop.load(Ordering::SeqCst) {
                    c.expect(&format!("RCPT TO:<{who}@example.test>"), "250");
                    asked.fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect();
    while asked.load(Ordering::SeqCst) < 200 {
        std::thread::sleep(Duration::from_millis(5));
    }

    // The new mirror: the fixture plus one mailbox, written beside the
    // old file and renamed over it.
    let fresh = srv.data.join("directory.sqlite.new");
    load_fixture(&fresh);
    rusqlite::Connection::open(&fresh)
        .unwrap()
        .execute_batch(
            "INSERT INTO mailbox (username, password, maildir, local_part, domain) \
             VALUES ('newbie@example.test', '{PLAIN}x', 'example.test/newbie/', 'newbie', 'example.test');",
        )
        .unwrap();
    std::fs::rename(&fresh, &db).unwrap();
    let after = asked.load(Ordering::SeqCst);

    let mut c = hello(&srv);
    let r = rcpt_reply(&mut c, "newbie@example.test");
    assert_eq!(r.code, 250, "the first RCPT after the rename: {r:?}");
    while asked.load(Ordering::SeqCst) < after + 100 {
        std::thread::sleep(Duration::from_millis(5));
    }
    stop.store(true, Ordering::SeqCst);
    for t in load {
        t.join().expect("load client saw only 250s");
    }
    // And the old mailboxes are still there in the new file.
    assert_eq!(rcpt_reply(&mut c, "alice@example.test").code, 250);
}

fn hello(srv: &Server) -> Smtp {
    let mut c = srv.smtp();
    c.hello();
    c
}
