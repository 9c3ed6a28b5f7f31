//! Issue 10: `postern sync` mirrors the PostfixAdmin MySQL database into
//! the SQLite directory, against a real MariaDB (Debian's mariadb-server,
//! a throwaway instance per test process, see common/mariadb.rs) loaded
//! with ../shared/fixtures/postfixadmin-mysql.sql. Each test has a
//! database of its own; the seed's `postfix-user-db` proves the hyphen.
//!
//! Covered: socket and TCP; first sync, change, delete, no-op, dry run,
//! status; one bad row per validation class, and the bad input of the
//! issue (wrong password or database, a server that never answers,
//! non-UTF-8 bytes, a 10 MB goto, keys differing only by case, a wrong
//! schema); local edits reported as conflicts unless local-only; MySQL
//! killed in the middle of a sync (exit 75, the old mirror stays, the
//! server keeps serving); a running server taking a new mailbox at its
//! next sync (SIGHUP) without a restart and without dropping a session;
//! two servers syncing from one MariaDB.

mod common;
#[path = "common/mariadb.rs"]
mod mariadb;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use mariadb::MariaDb;

/// What one `postern sync` run gave.
#[derive(Debug)]
struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

/// A config whose data_dir is `dir/data`, syncing `database` of `db`.
fn write_config(dir: &Path, db: &MariaDb, database: &str, tcp: bool, extra: &str) -> PathBuf {
    let pw = mariadb::password_file(dir);
    let cfg = dir.join(if tcp {
        "postern-tcp.toml"
    } else {
        "postern.toml"
    });
    std::fs::write(
        &cfg,
        format!(
            "data_dir = \"{}\"\n[[listener]]\naddress = \"127.0.0.1:0\"\n{extra}\n[sync.mysql]\n{}",
            dir.join("data").display(),
            db.config(database, &pw, tcp)
        ),
    )
    .unwrap();
    cfg
}

fn sync(cfg: &Path, args: &[&str]) -> Out {
    let out = postern()
        .arg("sync")
        .arg("--config")
        .arg(cfg)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("run postern sync");
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn ok(cfg: &Path) -> Out {
    let o = sync(cfg, &[]);
    assert_eq!(o.code, 0, "postern sync failed: {o:#?}");
    o
}

/// The mirror's rows of one column, sorted, read with rusqlite.
fn mirror(dir: &Path, sql: &str) -> Vec<String> {
    let c = rusqlite::Connection::open(dir.join("data/directory.sqlite")).unwrap();
    let mut st = c.prepare(sql).unwrap();
    let mut v: Vec<String> = st
        .query_map([], |r| r.get::<_, rusqlite::types::Value>(0))
        .unwrap()
        .map(|v| match v.unwrap() {
            rusqlite::types::Value::Text(t) => t,
            rusqlite::types::Value::Integer(i) => i.to_string(),
            other => format!("{other:?}"),
        })
        .collect();
    v.sort();
    v
}

fn usernames(dir: &Path) -> Vec<String> {
    mirror(dir, "SELECT username FROM mailbox")
}

#[test]
fn first_sync_change_delete_and_no_op_over_socket_and_tcp() {
    let db = MariaDb::shared();
    db.source("postfix-user-db");
    let tmp = TestDir::new("sync-cycle");
    let socket_cfg = write_config(tmp.path(), db, "postfix-user-db", false, "");

    // First sync, by the socket: everything arrives.
    let o = ok(&socket_cfg);
    assert!(
        o.stdout
            .contains("from mysql://postern-sync@localhost/postfix-user-db (socket"),
        "{o:#?}"
    );
    assert!(
        o.stdout.contains("mailbox 9 (+9 ~0 -0)") && o.stdout.contains("alias 16 (+16 ~0 -0)"),
        "{o:#?}"
    );
    assert!(usernames(tmp.path()).contains(&"alice@example.test".to_string()));
    assert_eq!(
        mirror(tmp.path(), "SELECT alias_domain FROM alias_domain"),
        ["alias.test"]
    );

    // The same source by TCP: no change, nothing written.
    let tcp_cfg = write_config(tmp.path(), db, "postfix-user-db", true, "");
    let o = ok(&tcp_cfg);
    assert!(
        o.stdout.contains(&format!(
            "from mysql://postern-sync@127.0.0.1:{}/postfix-user-db",
            db.port
        )),
        "{o:#?}"
    );
    assert!(o.stdout.contains("postern sync: no change"), "{o:#?}");

    // A change, an addition and a deletion in MySQL.
    db.sql(
        Some("postfix-user-db"),
        "UPDATE mailbox SET quota = 5000000, modified = NOW() WHERE username = 'bob@example.test';
         INSERT INTO mailbox (username, password, name, maildir, local_part, domain)
           VALUES ('newbie@example.test', '{PLAIN}n', 'Newbie', 'example.test/newbie/', 'newbie', 'example.test');
         INSERT INTO alias (address, goto, domain) VALUES ('newbie@example.test', 'newbie@example.test', 'example.test');
         DELETE FROM alias WHERE address = 'fwd@example.test';",
    );
    // --dry-run names them, changes nothing.
    let o = sync(&tcp_cfg, &["--dry-run"]);
    assert_eq!(o.code, 0, "{o:#?}");
    for line in [
        "+ mailbox newbie@example.test",
        "~ mailbox bob@example.test (quota, modified)",
        "- alias fwd@example.test",
        "+ alias newbie@example.test",
    ] {
        assert!(o.stdout.contains(line), "dry run lacks {line:?}: {o:#?}");
    }
    assert!(
        !o.stdout.contains("$6$") && !o.stdout.contains("{PLAIN}"),
        "no password in the output"
    );
    assert!(!usernames(tmp.path()).contains(&"newbie@example.test".to_string()));

    let o = ok(&socket_cfg);
    assert!(o.stdout.contains("4 changes"), "{o:#?}");
    assert!(
        o.stdout.contains("mailbox 10 (+1 ~1 -0)") && o.stdout.contains("alias 16 (+1 ~0 -1)"),
        "{o:#?}"
    );
    assert!(usernames(tmp.path()).contains(&"newbie@example.test".to_string()));
    assert_eq!(
        mirror(
            tmp.path(),
            "SELECT quota FROM mailbox WHERE username = 'bob@example.test'"
        ),
        ["5000000"]
    );
    assert!(mirror(
        tmp.path(),
        "SELECT address FROM alias WHERE address = 'fwd@example.test'"
    )
    .is_empty());

    // No-op again, and the status names the source and the time.
    let o = ok(&socket_cfg);
    assert!(o.stdout.contains("no change"), "{o:#?}");
    let s = sync(&socket_cfg, &["--status"]);
    assert_eq!(s.code, 0, "{s:#?}");
    assert!(
        s.stdout.starts_with("last synced 20")
            && s.stdout.contains("postfix-user-db")
            && s.stdout.contains("no change"),
        "{s:#?}"
    );
    // A synced mirror is in WAL mode: one transaction per sync.
    let mode = mirror(tmp.path(), "PRAGMA journal_mode");
    assert_eq!(mode, ["wal"]);
}

#[test]
fn a_bad_row_of_each_class_is_skipped_and_named() {
    let db = MariaDb::shared();
    db.source("t-bad-rows");
    db.sql(
        Some("t-bad-rows"),
        "INSERT INTO domain (domain) VALUES ('bad_domain!.test');
         INSERT INTO mailbox (username, password, maildir, local_part, domain, quota) VALUES
           ('abs@example.test', 'x', '/var/vmail/abs/', 'abs', 'example.test', 0),
           ('dots@example.test', 'x', 'example.test/../../etc/', 'dots', 'example.test', 0),
           ('neg@example.test', 'x', 'example.test/neg/', 'neg', 'example.test', -1),
           ('orphan@nowhere.test', 'x', 'nowhere.test/orphan/', 'orphan', 'nowhere.test', 0);
         INSERT INTO alias (address, goto, domain) VALUES
           ('badgoto@example.test', 'alice@example.test,not an address', 'example.test');",
    );
    let tmp = TestDir::new("sync-bad-rows");
    let cfg = write_config(tmp.path(), db, "t-bad-rows", false, "");
    let o = sync(&cfg, &[]);
    assert_eq!(o.code, 65, "rows skipped: exit 65 (EX_DATAERR): {o:#?}");
    for (key, why) in [
        (
            "skipped domain \"bad_domain!.test\"",
            "not a valid domain name",
        ),
        (
            "skipped mailbox \"abs@example.test\"",
            "relative to the mailbox base",
        ),
        ("skipped mailbox \"dots@example.test\"", "without '..'"),
        (
            "skipped mailbox \"neg@example.test\"",
            "quota -1 is negative",
        ),
        (
            "skipped mailbox \"orphan@nowhere.test\"",
            "its domain nowhere.test does not exist",
        ),
        (
            "skipped alias \"badgoto@example.test\"",
            "goto: target \"not an address\"",
        ),
    ] {
        assert!(
            o.stderr.lines().any(|l| l.contains(key) && l.contains(why)),
            "no line with {key:?} and {why:?}:\n{}",
            o.stderr
        );
    }
    assert!(o.stderr.contains("6 rows skipped"), "{o:#?}");
    // The rest is there.
    let users = usernames(tmp.path());
    assert_eq!(users.len(), 9, "{users:?}");
    assert!(!users
        .iter()
        .any(|u| u.starts_with("abs@") || u.starts_with("orphan@")));
    assert!(mirror(tmp.path(), "SELECT domain FROM domain").contains(&"example.test".to_string()));

    // Fixed at the source: the next sync takes the rows and says 0.
    db.sql(
        Some("t-bad-rows"),
        "UPDATE mailbox SET maildir = 'example.test/abs/' WHERE username = 'abs@example.test';
         DELETE FROM mailbox WHERE username IN ('dots@example.test', 'neg@example.test', 'orphan@nowhere.test');
         DELETE FROM domain WHERE domain = 'bad_domain!.test';
         UPDATE alias SET goto = 'alice@example.test' WHERE address = 'badgoto@example.test';",
    );
    let o = ok(&cfg);
    assert!(o.stdout.contains("0 skipped"), "{o:#?}");
    assert!(usernames(tmp.path()).contains(&"abs@example.test".to_string()));
}

#[test]
fn bad_input_gets_clear_messages_and_keeps_the_mirror() {
    let db = MariaDb::shared();
    db.source("t-bad-input");
    let tmp = TestDir::new("sync-bad-input");
    let cfg = write_config(tmp.path(), db, "t-bad-input", false, "");
    ok(&cfg);
    let before = usernames(tmp.path());
    let same = |what: &str| {
        assert_eq!(
            usernames(tmp.path()),
            before,
            "the mirror changed after {what}"
        )
    };

    // Keys differing only by case, non-UTF-8 bytes in a name, a 10 MB goto:
    // the schema has to be loosened to hold them at all.
    db.sql(
        Some("t-bad-input"),
        "ALTER TABLE mailbox MODIFY username varchar(255) COLLATE latin1_bin NOT NULL;
         INSERT INTO mailbox (username, password, maildir, local_part, domain)
           VALUES ('Alice@Example.test', 'x', 'example.test/alice2/', 'Alice', 'example.test');
         ALTER TABLE mailbox MODIFY name varbinary(255) NOT NULL DEFAULT '';
         UPDATE mailbox SET name = 0x426fff62 WHERE username = 'bob@example.test';
         ALTER TABLE alias MODIFY goto longtext NOT NULL;
         INSERT INTO alias (address, goto, domain)
           VALUES ('huge@example.test', REPEAT('x@example.test,', 700000), 'example.test');",
    );
    let o = sync(&cfg, &[]);
    assert_eq!(o.code, 65, "{o:#?}");
    assert!(
        o.stderr.contains(
            "skipped mailbox \"Alice@Example.test\": the same key as an earlier row but for case"
        ),
        "the lower-case spelling wins: {o:#?}"
    );
    assert!(
        o.stderr
            .contains("mailbox bob@example.test: name is not UTF-8; stored with U+FFFD"),
        "{o:#?}"
    );
    assert!(
        o.stderr.contains(
            "skipped alias \"huge@example.test\": goto is 10500000 bytes long; at most 65535"
        ),
        "{o:#?}"
    );
    assert_eq!(
        mirror(
            tmp.path(),
            "SELECT name FROM mailbox WHERE username = 'bob@example.test'"
        ),
        ["Bo\u{fffd}b"]
    );
    assert_eq!(
        mirror(
            tmp.path(),
            "SELECT maildir FROM mailbox WHERE username = 'alice@example.test'"
        ),
        ["example.test/alice/"]
    );
    same("the case duplicate");
    db.sql(Some("t-bad-input"), "DELETE FROM mailbox WHERE username = BINARY 'Alice@Example.test'; DELETE FROM alias WHERE address = 'huge@example.test';");

    // Wrong password, wrong database: configuration (78), named.
    let pw = tmp.path().join("mysql-password");
    std::fs::write(&pw, "not-the-password\n").unwrap();
    let o = sync(&cfg, &[]);
    assert_eq!(o.code, 78, "{o:#?}");
    assert!(
        o.stderr.contains("refused \"postern-sync\"")
            && o.stderr.contains("check user and password_file"),
        "{o:#?}"
    );
    assert!(
        !o.stderr.contains("not-the-password") && !o.stderr.contains(mariadb::PASSWORD),
        "no password in messages"
    );
    let cfg = write_config(tmp.path(), db, "t-no-such-db", false, "");
    let o = sync(&cfg, &[]);
    assert_eq!(o.code, 78, "{o:#?}");
    assert!(o.stderr.contains("t-no-such-db"), "{o:#?}");
    same("a wrong password or database");

    // A password file others may read is refused, by check-config too.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o644)).unwrap();
    let o = postern().arg("check-config").arg(&cfg).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(78), "{err}");
    assert!(
        err.contains("sync.mysql.password_file") && err.contains("mode 644"),
        "{err}"
    );

    // A server that accepts the connection and never answers: a timeout.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let held = std::thread::spawn(move || {
        let c = silent.accept();
        std::thread::sleep(Duration::from_secs(4));
        drop(c);
    });
    let cfg_silent = tmp.path().join("silent.toml");
    std::fs::write(
        &cfg_silent,
        format!(
            "data_dir = \"{}\"\n[[listener]]\naddress = \"127.0.0.1:0\"\n[sync.mysql]\nhost = \"127.0.0.1\"\nport = {port}\n\
             user = \"u\"\npassword_file = \"{}\"\ndatabase = \"d\"\ntimeout = \"1s\"\n",
            tmp.path().join("data").display(),
            mariadb::password_file(tmp.path()).display()
        ),
    )
    .unwrap();
    let t = Instant::now();
    let o = sync(&cfg_silent, &[]);
    assert_eq!(o.code, 75, "{o:#?}");
    assert!(
        o.stderr
            .contains("did not answer within [sync.mysql] timeout"),
        "{o:#?}"
    );
    assert!(
        t.elapsed() < Duration::from_secs(4),
        "took {:?}",
        t.elapsed()
    );
    held.join().unwrap();
    same("a silent server");

    // A wrong schema: every missing table and column named, nothing imported.
    db.sql(
        Some("t-bad-input"),
        "ALTER TABLE mailbox DROP COLUMN maildir; DROP TABLE alias_domain;",
    );
    let cfg = write_config(tmp.path(), db, "t-bad-input", true, "");
    let o = sync(&cfg, &[]);
    assert_eq!(o.code, 65, "{o:#?}");
    assert!(
        o.stderr.contains("table `alias_domain` does not exist")
            && o.stderr.contains("table `mailbox` has no column `maildir`"),
        "{o:#?}"
    );
    same("a wrong schema");
    let s = sync(&cfg, &["--status"]);
    assert!(
        s.stdout.contains("last attempt") && s.stdout.contains("no column `maildir`"),
        "{s:#?}"
    );
}

#[test]
fn local_edits_are_conflicts_unless_the_table_is_local_only() {
    let db = MariaDb::shared();
    db.source("t-local");
    let tmp = TestDir::new("sync-local");
    let cfg = write_config(
        tmp.path(),
        db,
        "t-local",
        false,
        "[sync]\nlocal_only = [\"alias\"]\n",
    );
    ok(&cfg);
    let run = |args: &[&str]| {
        let o = postern()
            .args(args)
            .arg("--config")
            .arg(&cfg)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "postern {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    // A mailbox added here is overwritten (removed) by the source, and said so.
    let mut add = postern();
    add.args(["user", "add", "local@example.test", "--config"])
        .arg(&cfg);
    let o = add
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut o = o;
        o.stdin
            .take()
            .unwrap()
            .write_all(b"local-secret\n")
            .unwrap();
        assert!(o.wait().unwrap().success());
    }
    run(&["alias", "add", "kept@example.test", "alice@example.test"]);
    let o = ok(&cfg);
    assert!(
        o.stderr.contains(
            "conflict: mailbox \"local@example.test\" was made here and not in the source: removed"
        ),
        "{o:#?}"
    );
    assert!(!usernames(tmp.path()).contains(&"local@example.test".to_string()));
    // The alias table is local-only: untouched by the sync.
    assert_eq!(
        mirror(
            tmp.path(),
            "SELECT goto FROM alias WHERE address = 'kept@example.test'"
        ),
        ["alice@example.test"]
    );
    assert!(!o.stdout.contains("alias "), "alias is not synced: {o:#?}");
}

/// Waits until the server logged its `n`-th finished sync.
fn wait_syncs(srv: &Server, n: usize) {
    assert!(
        srv.wait_log_count("sync from mysql://", n, Duration::from_secs(20)),
        "no sync number {n}:\n{}",
        srv.log()
    );
}

fn rcpt(srv: &Server, c: &mut Smtp, to: &str) -> u16 {
    let _ = srv;
    c.expect("MAIL FROM:<sender@client.test>", "250");
    let r = c.cmd(&format!("RCPT TO:<{to}>"));
    c.expect("RSET", "250");
    r.code
}

/// A server syncing `database` by the socket every `interval`, with an
/// empty mirror at start; the directory holds its password file.
fn sync_server(
    db: &MariaDb,
    database: &str,
    interval: &str,
    extra: &[(&str, &str)],
) -> (Server, TestDir) {
    let dir = TestDir::new("sync-srv-pw");
    let pw = mariadb::password_file(dir.path());
    let lines = db.config(database, &pw, false);
    let mut b = Server::builder().fixture(false);
    for l in lines.lines() {
        b = b.set("sync.mysql", l);
    }
    for (section, line) in extra {
        b = b.set(section, line);
    }
    let srv = b
        .set("sync.mysql", &format!("interval = \"{interval}\""))
        .start();
    (srv, dir)
}

#[test]
fn the_server_takes_a_new_mailbox_at_its_next_sync_without_a_restart() {
    let db = MariaDb::shared();
    db.source("t-server");
    let (srv, _pw) = sync_server(db, "t-server", "0", &[]);
    wait_syncs(&srv, 1);
    assert!(
        srv.log()
            .contains("sync: the mirror has not been synced yet"),
        "{}",
        srv.log()
    );
    let mut session = srv.smtp_untrusted();
    session.hello();
    assert_eq!(rcpt(&srv, &mut session, "alice@example.test"), 250);
    assert_eq!(rcpt(&srv, &mut session, "newbie@example.test"), 550);

    db.sql(
        Some("t-server"),
        "INSERT INTO mailbox (username, password, maildir, local_part, domain)
           VALUES ('newbie@example.test', '{PLAIN}n', 'example.test/newbie/', 'newbie', 'example.test');
         INSERT INTO alias (address, goto, domain) VALUES ('newbie@example.test', 'newbie@example.test', 'example.test');",
    );
    // Not before the sync (interval 0: only on demand)...
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(rcpt(&srv, &mut session, "newbie@example.test"), 550);
    // ...then `postern reload` (SIGHUP) syncs, and the same session sees it.
    let o = postern()
        .arg("reload")
        .arg("--config")
        .arg(&srv.config)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    wait_syncs(&srv, 2);
    assert!(srv.log().contains("2 changes"), "{}", srv.log());
    assert_eq!(rcpt(&srv, &mut session, "newbie@example.test"), 250);
    session.cmd("QUIT");

    // And mail to it lands in its Maildir.
    let (ok, out) = run(peer("swaks")
        .args(["--server", "127.0.0.1", "--port", &srv.port.to_string()])
        .args(["--local-interface", "127.0.0.2", "--helo", "client.test"])
        .args([
            "--from",
            "sender@client.test",
            "--to",
            "newbie@example.test",
        ])
        .args(["--header", "Subject: after the sync"]));
    assert!(ok, "{out}");
    let got = wait_maildir(
        &srv.mailbox("example.test/newbie/"),
        1,
        Duration::from_secs(10),
    );
    assert_eq!(got.len(), 1, "{}", srv.log());
}

#[test]
fn two_boxes_mirror_one_source() {
    let db = MariaDb::shared();
    db.source("t-two-boxes");
    let (a, _pw_a) = sync_server(db, "t-two-boxes", "1s", &[]);
    let (b, _pw_b) = sync_server(db, "t-two-boxes", "1s", &[]);
    wait_syncs(&a, 1);
    wait_syncs(&b, 1);
    for srv in [&a, &b] {
        let mut c = srv.smtp_untrusted();
        c.hello();
        assert_eq!(rcpt(srv, &mut c, "shared@example.test"), 550);
    }
    db.sql(
        Some("t-two-boxes"),
        "INSERT INTO mailbox (username, password, maildir, local_part, domain)
           VALUES ('shared@example.test', '{PLAIN}s', 'example.test/shared/', 'shared', 'example.test');
         INSERT INTO alias (address, goto, domain) VALUES ('shared@example.test', 'shared@example.test', 'example.test');",
    );
    for srv in [&a, &b] {
        assert!(
            srv.wait_log("2 changes", Duration::from_secs(20)),
            "{}",
            srv.log()
        );
        let mut c = srv.smtp_untrusted();
        c.hello();
        assert_eq!(
            rcpt(srv, &mut c, "shared@example.test"),
            250,
            "{}",
            srv.log()
        );
    }
}

#[test]
fn mysql_killed_mid_sync_leaves_the_mirror_and_the_server_serving() {
    let mut db = MariaDb::start();
    db.source("t-killed");
    let (srv, _pw) = sync_server(&db, "t-killed", "0", &[("sync", "warn_after = \"1s\"")]);
    wait_syncs(&srv, 1);
    let tmp = TestDir::new("sync-killed");
    let cfg = write_config(tmp.path(), &db, "t-killed", false, "");
    ok(&cfg);
    let before = usernames(tmp.path());

    // A change the interrupted sync must not half-apply.
    db.sql(
        Some("t-killed"),
        "INSERT INTO mailbox (username, password, maildir, local_part, domain)
           VALUES ('late@example.test', '{PLAIN}l', 'example.test/late/', 'late', 'example.test');
         DELETE FROM mailbox WHERE username = 'bob@example.test';",
    );
    // Hold the alias table, so the sync stops in the middle: domains and
    // mailboxes read and written into its transaction, aliases pending.
    let (_session, mut stdin) = db.session("t-killed");
    {
        use std::io::Write;
        stdin.write_all(b"LOCK TABLES alias WRITE;\n").unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while db
        .sql(None, "SHOW OPEN TABLES FROM `t-killed` WHERE In_use > 0;")
        .trim()
        .is_empty()
    {
        assert!(
            Instant::now() < deadline,
            "the alias table was never locked"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut child = postern()
        .arg("sync")
        .arg("--config")
        .arg(&cfg)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    loop {
        let waiting = db.sql(
            None,
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = 'postern-sync' AND STATE LIKE '%lock%';",
        );
        if waiting.trim() != "0" {
            break;
        }
        if let Some(st) = child.try_wait().unwrap() {
            panic!(
                "the sync ended ({st}) before the locked table: {:?}",
                child.wait_with_output()
            );
        }
        assert!(
            Instant::now() < deadline,
            "the sync never reached the locked table"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    db.kill();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(75), "{stderr}");
    assert!(stderr.contains("the mirror is unchanged"), "{stderr}");
    assert_eq!(
        usernames(tmp.path()),
        before,
        "half an import reached the mirror"
    );

    // Unreachable now: 75 again; the status says since when.
    let o = sync(&cfg, &[]);
    assert_eq!(o.code, 75, "{o:#?}");
    assert!(
        o.stderr.contains("unreachable") || o.stderr.contains("No such file"),
        "{o:#?}"
    );

    // The server: its sync fails, it says so, and it keeps serving.
    signal(srv.pid(), nix::sys::signal::Signal::SIGHUP).unwrap();
    assert!(
        srv.wait_log("failed: MySQL", Duration::from_secs(20)),
        "{}",
        srv.log()
    );
    assert!(
        srv.log().contains("serving from the mirror as it was"),
        "{}",
        srv.log()
    );
    let mut c = srv.smtp_untrusted();
    c.hello();
    assert_eq!(rcpt(&srv, &mut c, "bob@example.test"), 250);
    assert_eq!(rcpt(&srv, &mut c, "late@example.test"), 550);
}

#[test]
fn tls_to_the_server_is_verified_against_ca_file() {
    let db = MariaDb::shared();
    db.source("t-tls");
    // This account may only log in over TLS.
    db.sql(
        None,
        "CREATE USER 'postern-tls'@'127.0.0.1' IDENTIFIED BY 'tls-pass' REQUIRE SSL;
         GRANT SELECT ON `t-tls`.* TO 'postern-tls'@'127.0.0.1';",
    );
    let tmp = TestDir::new("sync-tls");
    let pw = tmp.path().join("pw");
    std::fs::write(&pw, "tls-pass\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).unwrap();
    let write = |ca: &Path| {
        let cfg = tmp.path().join("tls.toml");
        std::fs::write(
            &cfg,
            format!(
                "data_dir = \"{}\"\n[[listener]]\naddress = \"127.0.0.1:0\"\n[sync.mysql]\n\
                 host = \"127.0.0.1\"\nport = {}\nuser = \"postern-tls\"\npassword_file = \"{}\"\n\
                 database = \"t-tls\"\ntls = true\nca_file = \"{}\"\n",
                tmp.path().join("data").display(),
                db.port,
                pw.display(),
                ca.display()
            ),
        )
        .unwrap();
        cfg
    };
    let o = ok(&write(&db.dir.join("ca.pem")));
    assert!(
        o.stdout.contains("(TLS)") && o.stdout.contains("mailbox 9 (+9"),
        "{o:#?}"
    );

    // A CA that did not sign the server's certificate: refused, nothing read.
    let other = tmp.path().join("other-ca.pem");
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let other_ca =
        rcgen::CertifiedIssuer::self_signed(p, rcgen::KeyPair::generate().unwrap()).unwrap();
    std::fs::write(&other, other_ca.pem()).unwrap();
    let o = sync(&write(&other), &[]);
    assert_eq!(o.code, 75, "{o:#?}");
    assert!(o.stderr.contains("TLS"), "{o:#?}");
}

#[test]
fn a_source_that_lost_most_mailboxes_is_refused_until_forced() {
    let db = MariaDb::shared();
    db.source("emptied");
    let tmp = TestDir::new("sync-emptied");
    let cfg = write_config(tmp.path(), db, "emptied", false, "");
    let many: String = (0..20)
        .map(|i| {
            format!(
                "INSERT INTO mailbox (username, password, name, maildir, local_part, domain)
                   VALUES ('m{i}@example.test', '{{PLAIN}}x', 'M', 'example.test/m{i}/', 'm{i}', 'example.test');\n"
            )
        })
        .collect();
    db.sql(Some("emptied"), &many);
    ok(&cfg);
    assert_eq!(usernames(tmp.path()).len(), 29);

    // A database restored from the wrong dump: 20 of 29 mailboxes gone.
    db.sql(
        Some("emptied"),
        "DELETE FROM mailbox WHERE username REGEXP '^m[0-9]+@';",
    );
    let o = sync(&cfg, &[]);
    assert_eq!(o.code, 65, "refused: {o:#?}");
    assert!(
        o.stderr
            .contains("would remove 20 of the mirror's 29 mailbox rows")
            && o.stderr.contains("--force"),
        "{o:#?}"
    );
    assert_eq!(usernames(tmp.path()).len(), 29, "nothing changed");

    // The operator says it is right.
    let o = sync(&cfg, &["--force"]);
    assert_eq!(o.code, 0, "{o:#?}");
    assert_eq!(usernames(tmp.path()).len(), 9);
}
