//! Mailbox quotas (issue 9, part 2), as Maildir++ `maildirsize` keeps
//! them: the fixture's tiny@example.test has mailbox.quota = 20,000
//! bytes. Mail under the quota lands and is counted; mail over it bounces
//! 552 5.2.2 or is deferred 4.2.2 as `[quota] over_quota` says; a mailbox
//! already full is refused at RCPT; `[quota] limits_file` (the seed's
//! vquota) gives limits per address and per `@domain`; the quota holds
//! for the real procmail as a pipe too; and Dovecot's quota plugin
//! (doveadm) reads the same usage from the same file.

mod common;
#[path = "common/hooks.rs"]
mod hooks;

use std::path::{Path, PathBuf};

use common::*;
use hooks::*;

const LIMIT: u64 = 20_000;

/// A body of `n` bytes as stored (lines of x's with LF ends, the last
/// one without: `send_mail` ends it), sent with CRLF.
fn body_of(n: usize) -> String {
    assert!(n >= 1);
    let mut lines = Vec::new();
    let mut left = n;
    // Each stored line is 72 x's and LF (73 bytes); the last one takes
    // the rest, its LF being the one send_mail adds.
    while left > 73 {
        lines.push("x".repeat(72));
        left -= 73;
    }
    lines.push("y".repeat(left - 1));
    lines.join("\r\n")
}

/// Sizes of the message files in a Maildir (new/ and cur/).
fn file_sizes(maildir: &Path) -> Vec<u64> {
    maildir_files(maildir)
        .iter()
        .map(|f| std::fs::metadata(f).unwrap().len())
        .collect()
}

/// maildirsize: the header line and the (bytes, count) lines.
fn maildirsize(maildir: &Path) -> (String, Vec<(i64, i64)>) {
    let text = std::fs::read_to_string(maildir.join("maildirsize"))
        .unwrap_or_else(|e| panic!("{}/maildirsize: {e}", maildir.display()));
    let mut lines = text.lines();
    let head = lines.next().unwrap_or("").to_string();
    let deltas = lines
        .map(|l| {
            let mut w = l.split_whitespace();
            let b = w.next().and_then(|v| v.parse().ok());
            let c = w.next().and_then(|v| v.parse().ok());
            match (b, c, w.next()) {
                (Some(b), Some(c), None) => (b, c),
                _ => panic!("bad maildirsize line {l:?} in:\n{text}"),
            }
        })
        .collect();
    (head, deltas)
}

/// The usage maildirsize says: (bytes, messages).
fn usage(maildir: &Path) -> (i64, i64) {
    maildirsize(maildir)
        .1
        .iter()
        .fold((0, 0), |(b, c), (db, dc)| (b + db, c + dc))
}

fn tiny(srv: &Server) -> PathBuf {
    srv.mailbox("example.test/tiny/")
}

fn server(over_quota: &str) -> Server {
    Server::builder()
        .set("quota", &format!("over_quota = \"{over_quota}\""))
        .start()
}

/// Mail owned by the delivery uid 5000, for Dovecot to read as that uid.
fn server_as_vmail() -> Server {
    Server::builder()
        .set("delivery", "uid = 5000")
        .set("delivery", "gid = 5000")
        .start()
}

/// Sends a message with a body of `n` stored bytes from bob to `to`.
fn send_sized(srv: &Server, to: &str, subject: &str, n: usize) -> String {
    send(
        srv,
        "bob@example.test",
        &[to],
        &mail(to, subject, "", &body_of(n)),
    )
}

/// Fills tiny's mailbox to exactly the limit: a first message, then one
/// whose copy (our trace headers and all) takes every byte left, its
/// size worked out from the first copy's overhead.
fn fill_tiny(srv: &Server) {
    let first = mail("tiny@example.test", "first", "", &body_of(1000));
    send(srv, "bob@example.test", &["tiny@example.test"], &first);
    let files = wait_maildir(&tiny(srv), 1, WAIT);
    assert_eq!(files.len(), 1, "{}", srv.log());
    let s1 = std::fs::metadata(&files[0]).unwrap().len() as usize;
    let overhead = s1 - stored(&first).len();
    let head = mail("tiny@example.test", "fill", "", "");
    let want = LIMIT as usize - s1 - overhead - (stored(&head).len() - 1);
    let fill = mail("tiny@example.test", "fill", "", &body_of(want));
    send(srv, "bob@example.test", &["tiny@example.test"], &fill);
    let files = wait_maildir(&tiny(srv), 2, WAIT);
    assert_eq!(
        files.len(),
        2,
        "the filling message fits exactly:\n{}",
        srv.log()
    );
    assert_eq!(
        file_sizes(&tiny(srv)).iter().sum::<u64>(),
        LIMIT,
        "files fill the quota to the byte"
    );
    assert_eq!(
        usage(&tiny(srv)),
        (LIMIT as i64, 2),
        "maildirsize says full"
    );
}

#[test]
fn quota_mail_under_the_limit_lands_and_maildirsize_counts_each_copy() {
    let srv = server("bounce");
    let a = send_sized(&srv, "tiny@example.test", "one", 3000);
    wait_status(&srv, &a, "tiny@example.test", "sent");
    let b = send_sized(&srv, "tiny@example.test", "two", 5000);
    wait_status(&srv, &b, "tiny@example.test", "sent");
    let files = maildir_files(&tiny(&srv));
    assert_eq!(files.len(), 2);
    // Each file's S= is its size.
    let mut sizes = Vec::new();
    for f in &files {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        let s: u64 = name.rsplit_once(",S=").unwrap().1.parse().unwrap();
        assert_eq!(s, std::fs::metadata(f).unwrap().len(), "{name}");
        sizes.push(s);
    }
    // Made at the first RCPT (counted: empty), then one line per copy.
    let text = std::fs::read_to_string(tiny(&srv).join("maildirsize")).unwrap();
    let expected: Vec<String> = ["20000S".to_string(), "0 0".to_string()]
        .into_iter()
        .chain(sizes.iter().map(|s| format!("{s} 1")))
        .collect();
    let mut got: Vec<&str> = text.lines().collect();
    // The two copies' lines may come in either order relative to names.
    got[2..].sort();
    let mut want: Vec<&str> = expected.iter().map(String::as_str).collect();
    want[2..].sort();
    assert_eq!(got, want, "maildirsize:\n{text}");
    assert!(text.ends_with('\n'));
    // Other mailboxes without a quota have no maildirsize.
    let c = send_sized(&srv, "alice@example.test", "no quota", 100);
    wait_status(&srv, &c, "alice@example.test", "sent");
    assert!(!srv
        .mailbox("example.test/alice/")
        .join("maildirsize")
        .exists());
}

#[test]
fn quota_exceeded_bounces_552_5_2_2() {
    let srv = server("bounce");
    let a = send_sized(&srv, "tiny@example.test", "fits", 2000);
    wait_status(&srv, &a, "tiny@example.test", "sent");
    let before = std::fs::read(tiny(&srv).join("maildirsize")).unwrap();
    // Accepted (the client gave no SIZE=, the mailbox is not full yet),
    // then bounced: it would pass 20,000 bytes.
    let big = send_sized(&srv, "tiny@example.test", "too big", 19_000);
    let line = wait_status(&srv, &big, "tiny@example.test", "bounced");
    assert!(
        line.contains("dsn=5.2.2, status=bounced (mailbox is full"),
        "{line}"
    );
    let bounce = wait_bounce(&srv, &srv.mailbox("example.test/bob/"), "Status: 5.2.2");
    assert!(
        bounce.contains("Final-Recipient: rfc822; tiny@example.test"),
        "{bounce}"
    );
    assert!(srv.wait_log(&format!("{big}: removed"), WAIT));
    assert_eq!(
        maildir_files(&tiny(&srv)).len(),
        1,
        "only the first message"
    );
    assert_eq!(
        std::fs::read(tiny(&srv).join("maildirsize")).unwrap(),
        before,
        "nothing counted"
    );
}

#[test]
fn quota_exceeded_defers_4_2_2_when_configured() {
    let srv = server("defer");
    let a = send_sized(&srv, "tiny@example.test", "fits", 2000);
    wait_status(&srv, &a, "tiny@example.test", "sent");
    let big = send_sized(&srv, "tiny@example.test", "too big", 19_000);
    let line = wait_status(&srv, &big, "tiny@example.test", "deferred");
    assert!(
        line.contains("dsn=4.2.2, status=deferred (mailbox is full"),
        "{line}"
    );
    assert!(is_queued(&srv, &big), "kept for a later try");
    assert_eq!(maildir_files(&tiny(&srv)).len(), 1);
    assert!(!srv.log().contains("status=bounced"), "{}", srv.log());
}

/// RCPT to tiny once full; another recipient in the same transaction is
/// still accepted.
fn rcpt_when_full(over_quota: &str, expect: &str) {
    let srv = server(over_quota);
    fill_tiny(&srv);
    let mut c = srv.smtp();
    c.hello();
    c.expect("MAIL FROM:<bob@example.test>", "250");
    let r = c.cmd("RCPT TO:<tiny@example.test>");
    assert_eq!(
        r.first,
        format!("{expect} <tiny@example.test>: Recipient address rejected: mailbox is full"),
        "refused at RCPT, not accepted and bounced"
    );
    c.expect("RCPT TO:<alice@example.test>", "250");
    c.expect("RSET", "250");
    c.expect("QUIT", "221");
    assert_eq!(maildir_files(&tiny(&srv)).len(), 2);
}

#[test]
fn quota_full_mailbox_is_refused_at_rcpt_552_5_2_2() {
    rcpt_when_full("bounce", "552 5.2.2");
}

#[test]
fn quota_full_mailbox_is_refused_at_rcpt_452_4_2_2_with_defer() {
    rcpt_when_full("defer", "452 4.2.2");
}

#[test]
fn quota_size_given_at_mail_that_would_pass_the_limit_is_refused_at_rcpt() {
    // A mailbox that never had mail (no Maildir yet): its quota is known
    // all the same.
    let srv = server("bounce");
    assert!(!tiny(&srv).exists());
    let mut c = srv.smtp();
    c.hello();
    c.expect("MAIL FROM:<bob@example.test> SIZE=25000", "250");
    c.expect("RCPT TO:<tiny@example.test>", "552 5.2.2");
    c.expect("RSET", "250");
    c.expect("MAIL FROM:<bob@example.test> SIZE=15000", "250");
    c.expect("RCPT TO:<tiny@example.test>", "250");
    c.expect("QUIT", "221");
}

#[test]
fn quota_first_mail_to_a_new_mailbox_through_the_queue_is_delivered() {
    // The queue's Maildir agent checks the quota before it makes the
    // Maildir: a mailbox that never had mail has nothing to count.
    let srv = Server::builder().set("delivery", "direct = false").start();
    assert!(!tiny(&srv).exists());
    let id = send_sized(&srv, "tiny@example.test", "first ever", 500);
    let line = wait_status(&srv, &id, "tiny@example.test", "sent");
    assert!(line.contains("relay=maildir,"), "{line}");
    let id = send_sized(&srv, "tiny@example.test", "second", 700);
    wait_status(&srv, &id, "tiny@example.test", "sent");
    let sizes = file_sizes(&tiny(&srv));
    assert_eq!(sizes.len(), 2);
    assert_eq!(
        usage(&tiny(&srv)),
        (sizes.iter().sum::<u64>() as i64, 2),
        "both counted"
    );
}

#[test]
fn quota_limits_file_gives_address_and_domain_limits() {
    let t = TestDir::new("vquota");
    let vquota = t.path().join("vquota");
    std::fs::write(
        &vquota,
        "# the seed's vquota\nalice@example.test 3000\n@example.test     5000\n",
    )
    .unwrap();
    let srv = Server::builder()
        .set("quota", &format!("limits_file = \"{}\"", vquota.display()))
        .start();
    // From outside: the bounces must not land in the mailboxes measured.
    let send_sized = |_: &Server, to: &str, subject: &str, n: usize| {
        send(
            &srv,
            "sender@client.test",
            &[to],
            &mail(to, subject, "", &body_of(n)),
        )
    };
    // alice: her own line, 3,000.
    let a = send_sized(&srv, "alice@example.test", "alice big", 3200);
    let line = wait_status(&srv, &a, "alice@example.test", "bounced");
    assert!(
        line.contains("dsn=5.2.2") && line.contains("of 3000 bytes used"),
        "{line}"
    );
    // bob: the @domain line, 5,000: one fits, a second does not.
    let b1 = send_sized(&srv, "bob@example.test", "bob one", 3200);
    wait_status(&srv, &b1, "bob@example.test", "sent");
    let b2 = send_sized(&srv, "bob@example.test", "bob two", 2000);
    let line = wait_status(&srv, &b2, "bob@example.test", "bounced");
    assert!(
        line.contains("dsn=5.2.2") && line.contains("of 5000 bytes used"),
        "{line}"
    );
    assert_eq!(maildirsize(&srv.mailbox("example.test/bob/")).0, "5000S");
    // tiny: mailbox.quota is its own (20,000), the table does not lower it.
    let c = send_sized(&srv, "tiny@example.test", "tiny", 6000);
    wait_status(&srv, &c, "tiny@example.test", "sent");
    assert_eq!(maildirsize(&tiny(&srv)).0, "20000S");
    assert!(maildir_files(&srv.mailbox("example.test/alice/")).is_empty());
}

/// The seed's procmail transport for tiny only, with a procmailrc that
/// also logs every run (LOGFILE) to `logs/procmail.log`.
fn procmail_quota_server(t: &TestDir) -> Server {
    require("procmail");
    let base = t.path().join("mail");
    let logs = open_dir(&t.path().join("logs"));
    let rc = t.path().join("procmailrc");
    std::fs::write(
        &rc,
        format!(
            "LOGFILE={}/procmail.log\nMAILDIR={}/$DOMAIN/$USER/\nDEFAULT=$MAILDIR\n:0\n./\n",
            logs.display(),
            base.display()
        ),
    )
    .unwrap();
    Server::builder()
        .set(
            "delivery",
            &format!("mailbox_base = \"{}\"", base.display()),
        )
        .set("delivery", "uid = 5000")
        .set("delivery", "gid = 5000")
        .set(
            "delivery",
            "mailbox_transports = { \"tiny@example.test\" = \"procmail\" }",
        )
        .raw(&transport(
            "procmail",
            &[
                "/usr/bin/procmail",
                "-t",
                "-m",
                "USER=${user}",
                "DOMAIN=${nexthop}",
                "EXTENSION=${extension}",
                &rc.display().to_string(),
            ],
            "5000:5000",
            "R",
            "",
        ))
        .start()
}

/// procmail's LOGFILE abstract has one ` Folder: ` line per delivery.
fn procmail_runs(t: &TestDir) -> usize {
    std::fs::read_to_string(t.path().join("logs/procmail.log"))
        .unwrap_or_default()
        .matches("  Folder: ")
        .count()
}

#[test]
fn quota_holds_for_procmail_pipe_deliveries() {
    if !root_or_skip("quota_holds_for_procmail_pipe_deliveries") {
        return;
    }
    let t = TestDir::new("quota-procmail");
    let srv = procmail_quota_server(&t);
    let maildir = t.path().join("mail/example.test/tiny");
    let a = send_sized(&srv, "tiny@example.test", "through procmail", 4000);
    let line = wait_status(&srv, &a, "tiny@example.test", "sent");
    assert!(line.contains("relay=procmail,"), "{line}");
    assert_eq!(procmail_runs(&t), 1, "procmail ran once");
    // procmail writes no maildirsize line; postern adds the copy's size:
    // the file procmail wrote (Return-Path: and the message).
    let files = file_sizes(&maildir);
    assert_eq!(files.len(), 1);
    let (head, _) = maildirsize(&maildir);
    assert_eq!(head, "20000S");
    assert_eq!(
        usage(&maildir),
        (files[0] as i64, 1),
        "maildirsize counts the copy as written"
    );

    // Over the quota: bounced before procmail ever sees it.
    let big = send_sized(&srv, "tiny@example.test", "too big for procmail", 17_000);
    let line = wait_status(&srv, &big, "tiny@example.test", "bounced");
    assert!(
        line.contains("dsn=5.2.2, status=bounced (mailbox is full"),
        "{line}"
    );
    assert_eq!(
        procmail_runs(&t),
        1,
        "over-quota mail never reached procmail"
    );
    assert_eq!(file_sizes(&maildir).len(), 1);
    wait_bounce(
        &srv,
        &t.path().join("mail/example.test/bob"),
        "Status: 5.2.2",
    );
}

/// doveadm with Dovecot's quota plugin over `maildir` (quota=maildir, the
/// same 20,000-byte rule): runs `doveadm <args>` as the delivery uid
/// (mail_uid) with a userdb-free user (USER/HOME), returns stdout.
fn doveadm(t: &TestDir, maildir: &Path, args: &[&str]) -> String {
    require("doveadm");
    let home = t.path().join("dovecot-home");
    let run_dir = t.path().join("dovecot-run");
    for d in [&home, &run_dir] {
        std::fs::create_dir_all(d).unwrap();
        std::os::unix::fs::chown(d, Some(VMAIL.0), Some(VMAIL.1)).unwrap();
    }
    let conf = t.path().join("dovecot.conf");
    std::fs::write(
        &conf,
        format!(
            "mail_location = maildir:{md}:LAYOUT=maildir++\n\
             mail_uid = {uid}\nmail_gid = {gid}\nfirst_valid_uid = 1\nfirst_valid_gid = 1\n\
             protocols =\nssl = no\nlog_path = /dev/stderr\n\
             base_dir = {run}\nstate_dir = {run}\n\
             mail_plugins = quota\n\
             userdb {{\n  driver = static\n  args = uid={uid} gid={gid} home={home}\n}}\n\
             passdb {{\n  driver = static\n}}\n\
             plugin {{\n  quota = maildir:User quota\n  quota_rule = *:storage={LIMIT}B\n}}\n",
            md = maildir.display(),
            uid = VMAIL.0,
            gid = VMAIL.1,
            run = run_dir.display(),
            home = home.display(),
        ),
    )
    .unwrap();
    let out = peer("doveadm")
        .env("USER", "tiny@example.test")
        .env("HOME", &home)
        .current_dir("/")
        .arg("-c")
        .arg(&conf)
        .args(["-f", "tab"])
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "doveadm {args:?}: {}\n{stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// `doveadm quota get`: (STORAGE in kB as Dovecot shows it, MESSAGE).
fn dovecot_quota(t: &TestDir, maildir: &Path) -> (u64, u64) {
    let out = doveadm(t, maildir, &["quota", "get"]);
    let value = |kind: &str| -> u64 {
        out.lines()
            .find_map(|l| {
                let f: Vec<&str> = l.split('\t').collect();
                (f.len() >= 3 && f[1] == kind).then(|| f[2].parse().unwrap())
            })
            .unwrap_or_else(|| panic!("no {kind} in doveadm quota get:\n{out}"))
    };
    (value("STORAGE"), value("MESSAGE"))
}

/// Dovecot shows STORAGE in kB, rounded up.
fn kb(bytes: i64) -> u64 {
    (bytes as u64).div_ceil(1024)
}

#[test]
fn quota_dovecot_agrees_on_the_usage_of_the_same_maildir() {
    if !root_or_skip("quota_dovecot_agrees_on_the_usage_of_the_same_maildir") {
        return;
    }
    let srv = server_as_vmail();
    let t = TestDir::new("quota-dovecot");
    let md = tiny(&srv);
    for (i, n) in [3000, 4500].into_iter().enumerate() {
        let id = send_sized(&srv, "tiny@example.test", &format!("m{i}"), n);
        wait_status(&srv, &id, "tiny@example.test", "sent");
    }
    let (bytes, count) = usage(&md);
    assert_eq!(bytes as u64, file_sizes(&md).iter().sum::<u64>());
    // Dovecot reads postern's maildirsize as it is.
    assert_eq!(
        dovecot_quota(&t, &md),
        (kb(bytes), count as u64),
        "doveadm quota get"
    );
    // Dovecot counts the files itself and writes its own maildirsize:
    // the same bytes and messages.
    doveadm(&t, &md, &["quota", "recalc"]);
    let text = std::fs::read_to_string(md.join("maildirsize")).unwrap();
    assert_eq!(
        text,
        format!("{LIMIT}S\n{bytes} {count}\n"),
        "Dovecot's recount"
    );
    // postern goes on from Dovecot's file, and Dovecot from postern's.
    let id = send_sized(&srv, "tiny@example.test", "after recalc", 2000);
    wait_status(&srv, &id, "tiny@example.test", "sent");
    let (bytes3, count3) = usage(&md);
    assert_eq!(count3, 3);
    assert_eq!(
        bytes3 as u64,
        file_sizes(&md).iter().sum::<u64>(),
        "{}",
        std::fs::read_to_string(md.join("maildirsize")).unwrap()
    );
    assert_eq!(
        dovecot_quota(&t, &md),
        (kb(bytes3), 3),
        "doveadm quota get after postern appended"
    );
}

#[test]
fn quota_dovecot_agrees_after_procmail_deliveries() {
    if !root_or_skip("quota_dovecot_agrees_after_procmail_deliveries") {
        return;
    }
    let t = TestDir::new("quota-dovecot-procmail");
    let srv = procmail_quota_server(&t);
    let md = t.path().join("mail/example.test/tiny");
    for (i, n) in [3000, 1500].into_iter().enumerate() {
        let id = send_sized(&srv, "tiny@example.test", &format!("p{i}"), n);
        wait_status(&srv, &id, "tiny@example.test", "sent");
    }
    let postern_usage = usage(&md);
    // procmail's file names carry no S=: Dovecot stats the files.
    doveadm(&t, &md, &["quota", "recalc"]);
    let text = std::fs::read_to_string(md.join("maildirsize")).unwrap();
    assert_eq!(
        text,
        format!("{LIMIT}S\n{} {}\n", postern_usage.0, postern_usage.1),
        "Dovecot's recount of what procmail wrote equals what postern counted"
    );
}
