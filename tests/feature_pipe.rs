//! Pipe delivery (issue 9, part 1): the real /usr/bin/procmail run exactly
//! as the seed's master.cf runs it (`procmail -t -m USER=${user}
//! DOMAIN=${nexthop} EXTENSION=${extension} <procmailrc>`, flags=R, as the
//! delivery uid), sorting into Maildir++ folders; and small shell scripts
//! as pipes for what procmail cannot be made to do on request: each
//! sysexits class, a command that hangs, one that prints 100 MB, the
//! flags' lines byte for byte, the user and the environment a command
//! gets, and the routing that picks a pipe (globally, per domain, per
//! mailbox).

mod common;
#[path = "common/hooks.rs"]
mod hooks;

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;
use hooks::*;

/// The seed's transport, with the test's procmailrc.
fn procmail_transport(rc: &Path) -> String {
    transport(
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
    )
}

/// A procmailrc that uses $USER, $DOMAIN and $EXTENSION and sorts by a
/// header, as the seed's comments describe: `alice+lists@` into
/// `.lists/`, mail with the announce List-Id: into `.announce/`, the rest
/// into the inbox. Written in a root-owned 0755 directory (procmail
/// refuses a "suspicious" rcfile).
fn write_procmailrc(dir: &Path, mail_base: &Path) -> std::path::PathBuf {
    let rc = dir.join("procmailrc");
    std::fs::write(
        &rc,
        format!(
            "MAILDIR={}/$DOMAIN/$USER/\nDEFAULT=$MAILDIR\n\n\
             :0\n* EXTENSION ?? ^^lists^^\n.lists/\n\n\
             :0\n* ^List-Id:.*<announce\\.example\\.test>\n.announce/\n\n\
             :0\n./\n",
            mail_base.display()
        ),
    )
    .unwrap();
    rc
}

/// A server whose example.test mailboxes are delivered by the seed's
/// procmail transport (`[delivery] virtual_transport = "procmail"`), with
/// the Maildirs under `<t>/mail` so that the procmailrc can name them.
/// `column`: the example.test row's transport column ("" = empty it, so
/// virtual_transport applies; None = the fixture's "virtual").
fn procmail_server(t: &TestDir, column: Option<&str>) -> Server {
    require("procmail");
    let base = t.path().join("mail");
    let rc = write_procmailrc(t.path(), &base);
    let mut b = Server::builder()
        .set(
            "delivery",
            &format!("mailbox_base = \"{}\"", base.display()),
        )
        .set("delivery", "uid = 5000")
        .set("delivery", "gid = 5000")
        .set("delivery", "virtual_transport = \"procmail\"")
        .raw(&procmail_transport(&rc));
    if let Some(c) = column {
        b = b.sql(&format!(
            "UPDATE domain SET transport = '{c}' WHERE domain = 'example.test'"
        ));
    }
    b.start()
}

/// The file procmail wrote: `Return-Path: <sender>` (flag R), then our
/// Received:, then the message as sent (LF line ends), byte for byte.
fn assert_procmail_copy(file: &[u8], id: &str, rcpt: &str, sent: &str) {
    let text = String::from_utf8(file.to_vec()).expect("UTF-8 copy");
    let rp = "Return-Path: <sender@client.test>\n";
    assert!(text.starts_with(rp), "Return-Path: first:\n{text}");
    let rest = &text[rp.len()..];
    let received = format!("{}\n", header_blocks(rest)[0]);
    check_received(&received, id, rcpt);
    assert_eq!(
        &rest[received.len()..],
        stored(sent),
        "the message intact after Received:"
    );
}

#[test]
fn procmail_run_as_the_seed_runs_it_sorts_into_maildir_folders() {
    if !root_or_skip("procmail_run_as_the_seed_runs_it_sorts_into_maildir_folders") {
        return;
    }
    let t = TestDir::new("pipe-procmail");
    let srv = procmail_server(&t, Some(""));
    let alice = t.path().join("mail/example.test/alice");

    let inbox = mail(
        "alice@example.test",
        "for the inbox",
        "",
        "plain mail\r\nFrom here on, a From_ line",
    );
    let lists = mail(
        "alice+lists@example.test",
        "by extension",
        "",
        "to alice+lists",
    );
    let announce = mail(
        "alice@example.test",
        "by header",
        "List-Id: Announcements <announce.example.test>\r\n",
        "sorted by List-Id",
    );
    let id1 = send(&srv, "sender@client.test", &["alice@example.test"], &inbox);
    let id2 = send(
        &srv,
        "sender@client.test",
        &["alice+lists@example.test"],
        &lists,
    );
    let id3 = send(
        &srv,
        "sender@client.test",
        &["alice@example.test"],
        &announce,
    );
    for id in [&id1, &id2, &id3] {
        let line = wait_status(&srv, id, "alice@example.test", "sent");
        assert!(
            line.contains("relay=procmail,"),
            "relay= names the transport: {line}"
        );
        // A pipe is not the one-write local path: the message is queued.
        let accepted = accepted_line(&srv, id);
        assert!(accepted.ends_with(", nrcpt=1 (queue active)"), "{accepted}");
    }

    let inbox_files = maildir_files(&alice);
    let lists_files = maildir_files(&alice.join(".lists"));
    let announce_files = maildir_files(&alice.join(".announce"));
    assert_eq!(
        (inbox_files.len(), lists_files.len(), announce_files.len()),
        (1, 1, 1),
        "one message in each folder: {inbox_files:?} {lists_files:?} {announce_files:?}\n{}",
        srv.log()
    );
    assert_procmail_copy(
        &std::fs::read(&inbox_files[0]).unwrap(),
        &id1,
        "alice@example.test",
        &inbox,
    );
    assert_procmail_copy(
        &std::fs::read(&lists_files[0]).unwrap(),
        &id2,
        "alice+lists@example.test",
        &lists,
    );
    assert_procmail_copy(
        &std::fs::read(&announce_files[0]).unwrap(),
        &id3,
        "alice@example.test",
        &announce,
    );
    // Written by procmail as the transport's user, into the Maildir
    // postern made for it (procmail makes no parents).
    // (Only the uid: Debian's procmail is set-uid root and takes the gid
    // from the password entry when the uid has one, whatever it was given.)
    let m = std::fs::metadata(&inbox_files[0]).unwrap();
    assert_eq!(m.uid(), VMAIL.0, "procmail ran as uid 5000");
}

#[test]
fn procmail_virtual_transport_applies_to_postfixadmin_domains_whose_column_says_virtual() {
    // The seed sets virtual_transport = procmail and has no transport_maps:
    // every virtual mailbox goes through procmail. PostfixAdmin fills the
    // domain.transport column with its default "virtual" (the fixture
    // too); the seed never reads that column, so a converted seed must
    // still deliver through procmail.
    if !root_or_skip(
        "procmail_virtual_transport_applies_to_postfixadmin_domains_whose_column_says_virtual",
    ) {
        return;
    }
    let t = TestDir::new("pipe-seed-column");
    let srv = procmail_server(&t, None);
    let msg = mail(
        "alice@example.test",
        "seed routing",
        "",
        "through procmail?",
    );
    let id = send(&srv, "sender@client.test", &["alice@example.test"], &msg);
    let line = wait_status(&srv, &id, "alice@example.test", "sent");
    assert!(
        line.contains("relay=procmail,"),
        "virtual_transport = \"procmail\" with the fixture's domain.transport = 'virtual' \
         must deliver through procmail, as the seed does: {line}"
    );
}

#[test]
fn procmail_two_recipients_of_one_domain_each_get_their_copy() {
    if !root_or_skip("procmail_two_recipients_of_one_domain_each_get_their_copy") {
        return;
    }
    let t = TestDir::new("pipe-two");
    let srv = procmail_server(&t, Some(""));
    let msg = mail(
        "alice@example.test, bob@example.test",
        "for both",
        "",
        "one message, two mailboxes",
    );
    let id = send(
        &srv,
        "sender@client.test",
        &["alice@example.test", "bob@example.test"],
        &msg,
    );
    for who in ["alice", "bob"] {
        let line = wait_status(&srv, &id, &format!("{who}@example.test"), "sent");
        assert!(line.contains("relay=procmail,"), "{line}");
    }
    for who in ["alice", "bob"] {
        let files = maildir_files(&t.path().join("mail/example.test").join(who));
        assert_eq!(files.len(), 1, "{who} got exactly one copy:\n{}", srv.log());
        let text = std::fs::read_to_string(&files[0]).unwrap();
        let rp = "Return-Path: <sender@client.test>\n";
        assert!(text.starts_with(rp), "{text}");
        // Our Received: names no single recipient for a message to two.
        let received = format!("{}\n", header_blocks(&text[rp.len()..])[0]);
        assert!(
            received.contains(&format!("with ESMTP id {id};")),
            "{received}"
        );
        assert_eq!(
            &text[rp.len() + received.len()..],
            stored(&msg),
            "{who}'s copy intact"
        );
    }
}

/// A pipe whose exit code is the number after "Subject: exit " in the
/// message it reads; its first stderr line says which, a second line
/// must never reach the diagnostic. It keeps what it read in `out`.
fn exit_script(dir: &Path, out: &Path) -> std::path::PathBuf {
    script(
        dir,
        "exit.sh",
        &format!(
            "#!/bin/sh\n\
             out={out}\n\
             cat > \"$out/msg.$$\"\n\
             code=$(sed -n 's/^Subject: exit //p' \"$out/msg.$$\" | head -n 1)\n\
             echo \"the script says exit $code\" >&2\n\
             echo \"a second line that is not the diagnostic\" >&2\n\
             if [ \"$code\" = signal ]; then kill -TERM $$; fi\n\
             exit \"$code\"\n",
            out = out.display()
        ),
    )
}

/// A server where alice's mail goes through the exit script (per
/// mailbox), everything else into Maildirs. Bounces go to the sender.
fn exit_server(t: &TestDir) -> Server {
    let out = open_dir(&t.path().join("out"));
    let sh = exit_script(t.path(), &out);
    Server::builder()
        .set("delivery", "uid = 5000")
        .set("delivery", "gid = 5000")
        .set(
            "delivery",
            "mailbox_transports = { \"alice@example.test\" = \"exits\" }",
        )
        .raw(&transport(
            "exits",
            &[&sh.display().to_string(), "${recipient}"],
            "5000:5000",
            "",
            "",
        ))
        .start()
}

fn send_exit(srv: &Server, code: &str) -> String {
    let msg = mail(
        "alice@example.test",
        &format!("exit {code}"),
        "",
        "exit code test",
    );
    send(srv, "bob@example.test", &["alice@example.test"], &msg)
}

#[test]
fn pipe_exit_0_is_delivered() {
    if !root_or_skip("pipe_exit_0_is_delivered") {
        return;
    }
    let t = TestDir::new("pipe-exit0");
    let srv = exit_server(&t);
    let id = send_exit(&srv, "0");
    let line = wait_status(&srv, &id, "alice@example.test", "sent");
    assert!(
        line.contains("relay=exits,") && line.contains("dsn=2.0.0"),
        "{line}"
    );
    assert!(
        srv.wait_log(&format!("{id}: removed"), WAIT),
        "{}",
        srv.log()
    );
    assert!(!is_queued(&srv, &id));
    // The command read the whole message (no flags: nothing prepended).
    let got: Vec<_> = std::fs::read_dir(t.path().join("out"))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(got.len(), 1);
    let text = std::fs::read_to_string(got[0].path()).unwrap();
    assert!(text.starts_with("Received: from client.test"), "{text}");
    assert!(
        text.ends_with("Subject: exit 0\n\nexit code test\n"),
        "{text}"
    );
    assert!(maildir_files(&srv.mailbox("example.test/alice/")).is_empty());
    assert!(
        maildir_files(&srv.mailbox("example.test/bob/")).is_empty(),
        "no bounce"
    );
}

#[test]
fn pipe_exit_75_defers_and_the_message_stays_queued() {
    if !root_or_skip("pipe_exit_75_defers_and_the_message_stays_queued") {
        return;
    }
    let t = TestDir::new("pipe-exit75");
    let srv = exit_server(&t);
    let id = send_exit(&srv, "75");
    let line = wait_status(&srv, &id, "alice@example.test", "deferred");
    assert!(
        line.contains("relay=exits,")
            && line.contains(
                "dsn=4.3.0, status=deferred (temporary failure (exit 75): the script says exit 75)"
            ),
        "{line}"
    );
    assert!(is_queued(&srv, &id), "still queued:\n{}", srv.log());
    let (ok, out) = queue_list(&srv);
    assert!(ok, "{out}");
    assert!(
        out.contains(&id) && out.contains("alice@example.test"),
        "queue list:\n{out}"
    );
    assert!(
        out.contains("the script says exit 75"),
        "the last error is listed:\n{out}"
    );
    assert!(!srv.log().contains("status=bounced"), "{}", srv.log());
    assert!(
        maildir_files(&srv.mailbox("example.test/bob/")).is_empty(),
        "no bounce"
    );
}

#[test]
fn pipe_exit_73_and_the_other_temporary_codes_and_signals_defer() {
    if !root_or_skip("pipe_exit_73_and_the_other_temporary_codes_and_signals_defer") {
        return;
    }
    let t = TestDir::new("pipe-exit73");
    let srv = exit_server(&t);
    // 73 EX_CANTCREAT, 74 EX_IOERR, 69 EX_UNAVAILABLE, 71 EX_OSERR: retried
    // (a full disk or a service down is no reason to lose mail); a
    // command killed by a signal too.
    for (code, dsn) in [
        ("73", "4.2.0"),
        ("74", "4.3.0"),
        ("69", "4.3.0"),
        ("71", "4.3.0"),
        ("signal", "4.3.0"),
    ] {
        let id = send_exit(&srv, code);
        let line = wait_status(&srv, &id, "alice@example.test", "deferred");
        assert!(
            line.contains(&format!("dsn={dsn}, status=deferred")),
            "exit {code}: {line}"
        );
        assert!(is_queued(&srv, &id), "exit {code}: still queued");
    }
    assert!(!srv.log().contains("status=bounced"), "{}", srv.log());
}

#[test]
fn pipe_exit_67_bounces_5_1_1_with_the_first_stderr_line() {
    if !root_or_skip("pipe_exit_67_bounces_5_1_1_with_the_first_stderr_line") {
        return;
    }
    let t = TestDir::new("pipe-exit67");
    let srv = exit_server(&t);
    let id = send_exit(&srv, "67");
    let line = wait_status(&srv, &id, "alice@example.test", "bounced");
    assert!(
        line.contains(
            "dsn=5.1.1, status=bounced (user unknown (exit 67): the script says exit 67)"
        ),
        "{line}"
    );
    assert!(!line.contains("second line"), "only the first line: {line}");
    let bounce = wait_bounce(&srv, &srv.mailbox("example.test/bob/"), "exit 67");
    assert!(bounce.contains("Status: 5.1.1"), "{bounce}");
    assert!(
        bounce.contains("the script says exit 67"),
        "the diagnostic in the bounce:\n{bounce}"
    );
    assert!(!bounce.contains("a second line that is not"), "{bounce}");
    assert!(srv.wait_log(&format!("{id}: removed"), WAIT));
    // 68 EX_NOHOST: 5.1.2.
    let id = send_exit(&srv, "68");
    let line = wait_status(&srv, &id, "alice@example.test", "bounced");
    assert!(line.contains("dsn=5.1.2, status=bounced"), "{line}");
}

#[test]
fn pipe_exit_64_and_other_codes_bounce() {
    if !root_or_skip("pipe_exit_64_and_other_codes_bounce") {
        return;
    }
    let t = TestDir::new("pipe-exit64");
    let srv = exit_server(&t);
    for (code, dsn) in [
        ("64", "5.3.0"),
        ("65", "5.6.0"),
        ("77", "5.7.0"),
        ("78", "5.3.5"),
        ("1", "5.3.0"),
        ("100", "5.3.0"),
    ] {
        let id = send_exit(&srv, code);
        let line = wait_status(&srv, &id, "alice@example.test", "bounced");
        assert!(
            line.contains(&format!("dsn={dsn}, status=bounced")),
            "exit {code}: {line}"
        );
        assert!(
            line.contains(&format!("(exit {code}): the script says exit {code})")),
            "exit {code}: {line}"
        );
        assert!(srv.wait_log(&format!("{id}: removed"), WAIT), "exit {code}");
    }
    let bounces = wait_maildir(&srv.mailbox("example.test/bob/"), 6, WAIT);
    assert_eq!(bounces.len(), 6, "one bounce per message:\n{}", srv.log());
}

#[test]
fn pipe_that_hangs_is_killed_with_its_process_group_and_bounces_5_3_0() {
    if !root_or_skip("pipe_that_hangs_is_killed_with_its_process_group_and_bounces_5_3_0") {
        return;
    }
    let t = TestDir::new("pipe-hang");
    let out = open_dir(&t.path().join("out"));
    // A child of its own (in the command's process group), then wait.
    let sh = script(
        t.path(),
        "hang.sh",
        &format!(
            "#!/bin/sh\ncat > /dev/null\nsleep 2971 &\necho $! > {out}/child.pid\necho $$ > {out}/shell.pid\nwait\n",
            out = out.display()
        ),
    );
    let srv = Server::builder()
        .set(
            "delivery",
            "mailbox_transports = { \"alice@example.test\" = \"hang\" }",
        )
        .raw(&transport(
            "hang",
            &[&sh.display().to_string()],
            "5000:5000",
            "",
            "timeout = \"2s\"\n",
        ))
        .start();
    let id = send(
        &srv,
        "bob@example.test",
        &["alice@example.test"],
        &mail("alice@example.test", "hang", "", "x"),
    );
    let child: u32 = String::from_utf8(wait_file(&srv, &out.join("child.pid")))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let line = wait_status(&srv, &id, "alice@example.test", "bounced");
    assert!(
        line.contains("dsn=5.3.0, status=bounced (command time limit exceeded"),
        "{line}"
    );
    let gone = wait_until(Duration::from_secs(5), || {
        live_processes("sleep 2971").is_empty()
    });
    assert!(
        gone,
        "the command's child (pid {child}) survived the kill: {:?}",
        live_processes("sleep 2971")
    );
    wait_bounce(&srv, &srv.mailbox("example.test/bob/"), "time limit");
}

#[test]
fn pipe_that_exits_but_leaves_a_child_holding_its_output_finishes_in_time() {
    // A command that exits 0 but leaves a background child holding its
    // stdout/stderr (a procmail recipe that forks a slow helper): the
    // delivery must not wait for that child forever.
    if !root_or_skip("pipe_that_exits_but_leaves_a_child_holding_its_output_finishes_in_time") {
        return;
    }
    let t = TestDir::new("pipe-orphan");
    let sh = script(
        t.path(),
        "orphan.sh",
        "#!/bin/sh\ncat > /dev/null\nsleep 2972 &\nexit 0\n",
    );
    let srv = Server::builder()
        .set(
            "delivery",
            "mailbox_transports = { \"alice@example.test\" = \"orphan\" }",
        )
        .raw(&transport(
            "orphan",
            &[&sh.display().to_string()],
            "5000:5000",
            "",
            "timeout = \"3s\"\n",
        ))
        .start();
    let id = send(
        &srv,
        "bob@example.test",
        &["alice@example.test"],
        &mail("alice@example.test", "orphan", "", "x"),
    );
    let head = format!("{id}: to=<alice@example.test>");
    let done = wait_until(Duration::from_secs(15), || {
        srv.log().lines().any(|l| l.contains(&head))
    });
    let leftover = live_processes("sleep 2972");
    for p in &leftover {
        let _ = signal(*p, nix::sys::signal::Signal::SIGKILL);
    }
    assert!(
        done,
        "no result 15 s after a 3 s time limit: the agent waits for the command's orphan:\n{}",
        srv.log()
    );
    // Judged by the command's own exit: delivered; the orphan was killed
    // with the rest of the process group at the time limit.
    let line = wait_status(&srv, &id, "alice@example.test", "sent");
    assert!(line.contains("dsn=2.0.0"), "{line}");
    assert!(
        leftover.is_empty(),
        "the orphan outlived the delivery: {leftover:?}"
    );
}

#[test]
fn pipe_printing_100_mb_to_stderr_is_drained_and_its_diagnostic_bounded() {
    if !root_or_skip("pipe_printing_100_mb_to_stderr_is_drained_and_its_diagnostic_bounded") {
        return;
    }
    let t = TestDir::new("pipe-noise");
    let sh = script(
        t.path(),
        "noise.sh",
        "#!/bin/sh\ncat > /dev/null\nyes 'noise noise noise noise noise noise noise noise noise noise' | head -c 100000000 >&2\nexit 64\n",
    );
    let srv = Server::builder()
        .set(
            "delivery",
            "mailbox_transports = { \"alice@example.test\" = \"noise\" }",
        )
        .raw(&transport(
            "noise",
            &[&sh.display().to_string()],
            "5000:5000",
            "",
            "",
        ))
        .start();
    let id = send(
        &srv,
        "bob@example.test",
        &["alice@example.test"],
        &mail("alice@example.test", "noise", "", "x"),
    );
    let line = wait_status(&srv, &id, "alice@example.test", "bounced");
    assert!(
        line.contains("dsn=5.3.0, status=bounced (command line usage error (exit 64): noise noise"),
        "{line}"
    );
    assert!(
        line.len() < 600,
        "the log line is bounded ({} bytes): {line}",
        line.len()
    );
    assert!(
        srv.log().len() < 64 * 1024,
        "the log did not take the output: {} bytes",
        srv.log().len()
    );
    // Still serving, and never held the 100 MB.
    let mut c = srv.smtp();
    c.hello();
    c.expect("QUIT", "221");
    let status = std::fs::read_to_string(format!("/proc/{}/status", srv.pid())).unwrap();
    let hwm_kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM");
    assert!(
        hwm_kb < 64 * 1024,
        "postern's peak RSS {hwm_kb} kB: the output was kept"
    );
    let bounce = wait_bounce(&srv, &srv.mailbox("example.test/bob/"), "exit 64");
    assert!(
        bounce.len() < 16 * 1024,
        "the bounce is small: {} bytes",
        bounce.len()
    );
}

/// A pipe that writes what it reads to `out/in` (via a temporary name).
fn cat_script(dir: &Path, out: &Path) -> std::path::PathBuf {
    script(
        dir,
        "cat.sh",
        &format!(
            "#!/bin/sh\ncat > {o}/in.tmp && mv {o}/in.tmp {o}/in\n",
            o = out.display()
        ),
    )
}

fn cat_server(t: &TestDir, flags: &str) -> Server {
    let out = open_dir(&t.path().join("out"));
    let sh = cat_script(t.path(), &out);
    Server::builder()
        .set(
            "delivery",
            "mailbox_transports = { \"alice@example.test\" = \"cat\" }",
        )
        .raw(&transport(
            "cat",
            &[&sh.display().to_string()],
            "5000:5000",
            flags,
            "",
        ))
        .start()
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[test]
fn pipe_flags_f_r_o_d_prepend_their_lines_in_postfix_order() {
    if !root_or_skip("pipe_flags_f_r_o_d_prepend_their_lines_in_postfix_order") {
        return;
    }
    let t = TestDir::new("pipe-flags");
    // Written "DORF": the order of the lines is Postfix's, not the flags'.
    let srv = cat_server(&t, "DORF");
    // postmaster@ is an alias of alice: X-Original-To: keeps the address
    // as sent, Delivered-To: names the mailbox.
    let msg = mail(
        "postmaster@example.test",
        "flags",
        "",
        "From the start, unquoted without >\r\nend",
    );
    let before = now_secs();
    let id = send(
        &srv,
        "sender@client.test",
        &["postmaster@example.test"],
        &msg,
    );
    let after = now_secs();
    let got = String::from_utf8(wait_file(&srv, &t.path().join("out/in"))).unwrap();
    wait_status(&srv, &id, "alice@example.test", "sent");
    let first = got.lines().next().unwrap();
    let dates: Vec<String> = (before - 1..=after).map(postern::timefmt::mbox).collect();
    assert!(
        dates
            .iter()
            .any(|d| first == format!("From sender@client.test  {d}")),
        "From_ line with the arrival date (one of {dates:?}): {first:?}"
    );
    let rest = &got[first.len() + 1..];
    let head = "Return-Path: <sender@client.test>\nX-Original-To: postmaster@example.test\nDelivered-To: alice@example.test\n";
    assert!(
        rest.starts_with(head),
        "F, R, O, D lines in that order:\n{got}"
    );
    let rest = &rest[head.len()..];
    let received = format!("{}\n", header_blocks(rest)[0]);
    check_received(&received, &id, "postmaster@example.test");
    assert_eq!(
        &rest[received.len()..],
        stored(&msg),
        "the message intact, no quoting without >"
    );
}

#[test]
fn pipe_without_flags_adds_nothing_and_quoting_flags_quote() {
    if !root_or_skip("pipe_without_flags_adds_nothing_and_quoting_flags_quote") {
        return;
    }
    // As sent: a dot-stuffed line that starts with two dots, a line
    // that is a lone dot.
    let body = "From the start\r\n...two dots\r\n..\r\nlast";
    // No flags: the message as queued, Received: first.
    let t = TestDir::new("pipe-noflags");
    let srv = cat_server(&t, "");
    let msg = mail("alice@example.test", "plain", "", body);
    let id = send(&srv, "sender@client.test", &["alice@example.test"], &msg);
    let got = String::from_utf8(wait_file(&srv, &t.path().join("out/in"))).unwrap();
    let received = format!("{}\n", header_blocks(&got)[0]);
    check_received(&received, &id, "alice@example.test");
    let head = "From: sender@client.test\nTo: alice@example.test\nSubject: plain\n\n";
    assert_eq!(
        &got[received.len()..],
        format!("{head}From the start\n..two dots\n.\nlast\n")
    );

    // `>` quotes From_ lines, `.` doubles leading dots, B adds a blank line.
    let t = TestDir::new("pipe-quoting");
    let srv = cat_server(&t, ">.B");
    let id = send(&srv, "sender@client.test", &["alice@example.test"], &msg);
    let got = String::from_utf8(wait_file(&srv, &t.path().join("out/in"))).unwrap();
    let received = format!("{}\n", header_blocks(&got)[0]);
    check_received(&received, &id, "alice@example.test");
    assert_eq!(
        &got[received.len()..],
        format!("{head}>From the start\n...two dots\n..\nlast\n\n")
    );
}

/// Runs a pipe as `user` that records `id`, its directory and its
/// environment; returns (id -u, id -g, id -G, cwd, sorted env lines
/// without the PWD that sh itself sets).
fn who_runs(user: &str) -> (String, String, String, String, Vec<String>) {
    let t = TestDir::new("pipe-env");
    let out = open_dir(&t.path().join("out"));
    let sh = script(
        t.path(),
        "who.sh",
        &format!(
            "#!/bin/sh\ncat > /dev/null\no={o}\nid -u > $o/uid\nid -g > $o/gid\nid -G > $o/groups\n/bin/pwd > $o/cwd\nenv > $o/env.tmp && mv $o/env.tmp $o/env\n",
            o = out.display()
        ),
    );
    let srv = Server::builder()
        .env("POSTERN_TEST_LEAK", "must-not-reach-the-pipe")
        .set(
            "delivery",
            "mailbox_transports = { \"alice@example.test\" = \"who\" }",
        )
        .raw(&transport(
            "who",
            &[&sh.display().to_string()],
            user,
            "",
            "",
        ))
        .start();
    let id = send(
        &srv,
        "bob@example.test",
        &["alice@example.test"],
        &mail("alice@example.test", "who", "", "x"),
    );
    let env = String::from_utf8(wait_file(&srv, &out.join("env"))).unwrap();
    wait_status(&srv, &id, "alice@example.test", "sent");
    let read = |f: &str| {
        std::fs::read_to_string(out.join(f))
            .unwrap()
            .trim()
            .to_string()
    };
    let mut env: Vec<String> = env
        .lines()
        .filter(|l| !l.starts_with("PWD="))
        .map(String::from)
        .collect();
    env.sort();
    (read("uid"), read("gid"), read("groups"), read("cwd"), env)
}

#[test]
fn pipe_runs_as_its_uid_with_a_clean_environment() {
    if !root_or_skip("pipe_runs_as_its_uid_with_a_clean_environment") {
        return;
    }
    // uid:gid with no password entry: no HOME, USER or LOGNAME to give.
    let (uid, gid) = unnamed_ids();
    let (u, g, groups, cwd, env) = who_runs(&format!("{uid}:{gid}"));
    assert_eq!(
        (u, g, groups),
        (uid.to_string(), gid.to_string(), gid.to_string()),
        "ids and no other groups"
    );
    assert_eq!(cwd, "/", "no home: the command runs in /");
    // The harness runs postern with TZ=UTC, which is passed on.
    assert_eq!(
        env,
        ["PATH=/usr/bin:/bin", "SHELL=/bin/sh", "TZ=UTC"],
        "nothing inherited"
    );
}

#[test]
fn pipe_run_as_a_named_user_gets_its_name_and_no_inherited_variables() {
    if !root_or_skip("pipe_run_as_a_named_user_gets_its_name_and_no_inherited_variables") {
        return;
    }
    // Debian's nobody: uid 65534, group nogroup, home /nonexistent (not
    // a directory: no HOME, and / as the working directory).
    let (u, g, groups, cwd, env) = who_runs("nobody");
    assert_eq!(
        (u.as_str(), g.as_str(), groups.as_str()),
        ("65534", "65534", "65534")
    );
    assert_eq!(cwd, "/");
    assert_eq!(
        env,
        [
            "LOGNAME=nobody",
            "PATH=/usr/bin:/bin",
            "SHELL=/bin/sh",
            "TZ=UTC",
            "USER=nobody"
        ],
        "USER/LOGNAME from the password entry, nothing inherited (POSTERN_TEST_LEAK)"
    );
}

#[test]
fn pipe_chosen_by_the_domain_transport_column() {
    if !root_or_skip("pipe_chosen_by_the_domain_transport_column") {
        return;
    }
    let t = TestDir::new("pipe-column");
    let out = open_dir(&t.path().join("out"));
    let sh = cat_script(t.path(), &out);
    let srv = Server::builder()
        .sql("UPDATE domain SET transport = 'cat' WHERE domain = 'example.test'")
        .raw(&transport(
            "cat",
            &[&sh.display().to_string()],
            "5000:5000",
            "R",
            "",
        ))
        .start();
    let id = send(
        &srv,
        "bob@example.test",
        &["alice@example.test"],
        &mail("alice@example.test", "column", "", "by domain"),
    );
    let line = wait_status(&srv, &id, "alice@example.test", "sent");
    assert!(line.contains("relay=cat,"), "{line}");
    let got = String::from_utf8(wait_file(&srv, &out.join("in"))).unwrap();
    assert!(
        got.starts_with("Return-Path: <bob@example.test>\nReceived: from client.test"),
        "{got}"
    );
    assert!(
        maildir_files(&srv.mailbox("example.test/alice/")).is_empty(),
        "not in the Maildir"
    );
}

#[test]
fn pipe_chosen_per_mailbox_other_mailboxes_keep_their_maildir() {
    if !root_or_skip("pipe_chosen_per_mailbox_other_mailboxes_keep_their_maildir") {
        return;
    }
    let t = TestDir::new("pipe-mailbox");
    let out = open_dir(&t.path().join("out"));
    let sh = cat_script(t.path(), &out);
    let srv = Server::builder()
        .set(
            "delivery",
            "mailbox_transports = { \"bob@example.test\" = \"cat\" }",
        )
        .raw(&transport(
            "cat",
            &[&sh.display().to_string()],
            "5000:5000",
            "",
            "",
        ))
        .start();
    let to_bob = send(
        &srv,
        "alice@example.test",
        &["bob@example.test"],
        &mail("bob@example.test", "to bob", "", "piped"),
    );
    let to_alice = send(
        &srv,
        "bob@example.test",
        &["alice@example.test"],
        &mail("alice@example.test", "to alice", "", "maildir"),
    );
    let line = wait_status(&srv, &to_bob, "bob@example.test", "sent");
    assert!(line.contains("relay=cat,"), "{line}");
    let got = String::from_utf8(wait_file(&srv, &out.join("in"))).unwrap();
    assert!(got.contains("Subject: to bob"), "{got}");
    let alice = only_message(&srv, &srv.mailbox("example.test/alice/"));
    assert!(String::from_utf8_lossy(&alice).contains("Subject: to alice"));
    let accepted = accepted_line(&srv, &to_alice);
    assert!(
        accepted.ends_with("(delivered directly)"),
        "alice's mail keeps the one-write path: {accepted}"
    );
    assert!(
        maildir_files(&srv.mailbox("example.test/bob/")).is_empty(),
        "bob's went to the pipe only"
    );
}

/// A server whose pipe for alice runs `body` (a shell script; `$OUT` is
/// a directory it may write).
fn shell_pipe_server(t: &TestDir, body: &str) -> (Server, std::path::PathBuf) {
    let out = open_dir(&t.path().join("out"));
    let sh = script(
        t.path(),
        "pipe.sh",
        &format!("#!/bin/sh\nOUT={}\n{body}", out.display()),
    );
    let srv = Server::builder()
        .set(
            "delivery",
            "mailbox_transports = { \"alice@example.test\" = \"sh\" }",
        )
        .raw(&transport(
            "sh",
            &[&sh.display().to_string()],
            "5000:5000",
            "",
            "",
        ))
        .start();
    (srv, out)
}

/// About 1 MB of numbered lines: sixteen times what a pipe holds.
fn big_body() -> String {
    (0..16_000)
        .map(|i| {
            format!(
                "line {i:06} of a message larger than any pipe buffer {}",
                "x".repeat(8)
            )
        })
        .collect::<Vec<_>>()
        .join("\r\n")
}

#[test]
fn pipe_gets_a_message_larger_than_a_pipe_buffer_whole_even_when_it_reads_slowly() {
    if !root_or_skip(
        "pipe_gets_a_message_larger_than_a_pipe_buffer_whole_even_when_it_reads_slowly",
    ) {
        return;
    }
    let t = TestDir::new("pipe-big");
    // Reads nothing for a while (the pipe fills and postern must wait for
    // room), then everything, and says something on both streams.
    let (srv, out) = shell_pipe_server(
        &t,
        "sleep 1\necho to stdout\ncat > $OUT/in.tmp && mv $OUT/in.tmp $OUT/in\n",
    );
    let msg = mail("alice@example.test", "big", "", &big_body());
    let id = send(&srv, "sender@client.test", &["alice@example.test"], &msg);
    let got = String::from_utf8(wait_file(&srv, &out.join("in"))).unwrap();
    wait_status(&srv, &id, "alice@example.test", "sent");
    let received = format!("{}\n", header_blocks(&got)[0]);
    check_received(&received, &id, "alice@example.test");
    assert_eq!(&got[received.len()..], stored(&msg), "every byte, in order");
}

#[test]
fn pipe_that_exits_0_without_reading_a_big_message_is_judged_by_its_exit() {
    if !root_or_skip("pipe_that_exits_0_without_reading_a_big_message_is_judged_by_its_exit") {
        return;
    }
    let t = TestDir::new("pipe-noread");
    let (srv, out) = shell_pipe_server(&t, "touch $OUT/ran\nexit 0\n");
    let msg = mail("alice@example.test", "unread", "", &big_body());
    let id = send(&srv, "sender@client.test", &["alice@example.test"], &msg);
    let line = wait_status(&srv, &id, "alice@example.test", "sent");
    assert!(out.join("ran").exists(), "the command ran: {line}");
    // And a command that exits 75 without reading is deferred, not sent.
    let t = TestDir::new("pipe-noread-75");
    let (srv, _out) = shell_pipe_server(&t, "echo busy, try later >&2\nexit 75\n");
    let id = send(&srv, "sender@client.test", &["alice@example.test"], &msg);
    let line = wait_status(&srv, &id, "alice@example.test", "deferred");
    assert!(line.contains("busy, try later"), "{line}");
}

/// A script that notes how many runs of it are under way when it starts
/// (`$OUT/counts`), takes a while, then keeps the message as `$OUT/in.PID`.
fn counting_script(dir: &Path, name: &str, out: &Path) -> std::path::PathBuf {
    script(
        dir,
        name,
        &format!(
            "#!/bin/sh\nOUT={}\n\
             touch \"$OUT/run.$$\"\n\
             ls \"$OUT\" | grep -c '^run\\.' >> \"$OUT/counts\"\n\
             sleep 0.4\n\
             cat > \"$OUT/in.$$\"\n\
             rm \"$OUT/run.$$\"\n",
            out.display()
        ),
    )
}

#[test]
fn pipe_runs_at_most_its_concurrency_at_once_and_mixed_transports_still_deliver() {
    if !root_or_skip("pipe_runs_at_most_its_concurrency_at_once_and_mixed_transports_still_deliver")
    {
        return;
    }
    let t = TestDir::new("pipe-concurrency");
    let slow_out = open_dir(&t.path().join("slow"));
    let one_out = open_dir(&t.path().join("one"));
    let slow = counting_script(t.path(), "slow.sh", &slow_out);
    let one = counting_script(t.path(), "one.sh", &one_out);
    let srv = Server::builder()
        .set(
            "delivery",
            "mailbox_transports = { \"alice@example.test\" = \"slow\", \"bob@example.test\" = \"one\" }",
        )
        .raw(&transport(
            "slow",
            &[&slow.display().to_string(), "${recipient}"],
            "5000:5000",
            "",
            "concurrency = 2\n",
        ))
        .raw(&transport(
            "one",
            &[&one.display().to_string(), "${recipient}"],
            "5000:5000",
            "",
            "concurrency = 1\n",
        ))
        .start();
    let mut sent = Vec::new();
    for i in 0..6 {
        let msg = mail("alice@example.test", &format!("slow {i}"), "", "waits");
        sent.push((
            send(&srv, "carol@example.test", &["alice@example.test"], &msg),
            "alice",
        ));
    }
    // One message for both transports: each run waits for its own limit.
    for i in 0..2 {
        let msg = mail(
            "alice@example.test",
            &format!("both {i}"),
            "",
            "two commands",
        );
        let id = send(
            &srv,
            "carol@example.test",
            &["alice@example.test", "bob@example.test"],
            &msg,
        );
        sent.push((id.clone(), "alice"));
        sent.push((id, "bob"));
    }
    for (id, who) in &sent {
        wait_status(&srv, id, &format!("{who}@example.test"), "sent");
    }
    let counts = |out: &Path| -> Vec<usize> {
        std::fs::read_to_string(out.join("counts"))
            .unwrap()
            .lines()
            .map(|l| l.trim().parse().unwrap())
            .collect()
    };
    let (slow_counts, one_counts) = (counts(&slow_out), counts(&one_out));
    assert_eq!(slow_counts.len(), 8, "{slow_counts:?}");
    assert_eq!(one_counts.len(), 2, "{one_counts:?}");
    assert_eq!(
        slow_counts.iter().max(),
        Some(&2),
        "slow ran 2 at once, never more: {slow_counts:?}"
    );
    assert_eq!(
        one_counts.iter().max(),
        Some(&1),
        "one ran alone: {one_counts:?}"
    );
    let kept = |out: &Path| {
        std::fs::read_dir(out)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with("in.")
            })
            .count()
    };
    assert_eq!((kept(&slow_out), kept(&one_out)), (8, 2));
}
