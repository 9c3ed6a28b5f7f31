//! sendmail, mailq and newaliases (issue 11, part 1): the real binary
//! under symlinks with those names, as cron, mail(1), smartd, PHP and a
//! NAS's scripts run it, with the server running and stopped. Every flag
//! the issue names, the real mail programs that call /usr/sbin/sendmail
//! (GNU mailutils' and BSD mailx, in a mount namespace that puts postern
//! there), Python's subprocess, and the bad input: a message without
//! headers, bare LF and CR line ends, a 2 MB line, binary junk, `-t`
//! without recipients, a truncated drop file.
//!
//! How sendmail finds its config: `-C FILE`, else `$POSTERN_CONFIG`, else
//! /etc/postern/postern.toml (the appliance), else the embedded default.
//! Most tests set `POSTERN_CONFIG`; the mail-program tests use the
//! appliance's path.

mod common;
#[path = "common/sendmail.rs"]
mod sendmail;

use std::path::Path;
use std::time::Duration;

use common::*;
use sendmail::*;

const ORIGIN: &str = "example.test";

/// A server whose origin (myorigin) is example.test, the fixture loaded:
/// mail for <name>@localhost lands in data/local/<name>, for
/// alice@example.test in data/mail/example.test/alice.
fn server() -> ServerBuilder {
    Server::builder().top(&format!("origin = \"{ORIGIN}\""))
}

fn started() -> (Server, Sendmail) {
    let srv = server().start();
    let sm = Sendmail::new(&srv.config);
    (srv, sm)
}

/// The delivered message for local user `user` holding `needle`.
fn local(srv: &Server, user: &str, needle: &str) -> String {
    wait_message(srv, &srv.local_mailbox(user), needle)
}

fn ok(ran: &Ran) {
    assert_eq!(ran.code, 0, "{}", ran.all());
}

/// Nothing with `needle` reached `maildir` (checked after a message sent
/// later has arrived, so no waiting on a negative).
fn absent(maildir: &Path, needle: &str) {
    for f in maildir_files(maildir) {
        let text = std::fs::read_to_string(&f).unwrap_or_default();
        assert!(!text.contains(needle), "{} holds {needle:?}:\n{text}", f.display());
    }
}

fn drop_files(srv: &Server) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(srv.data.join("maildrop"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().unwrap().is_file())
        .map(|e| e.path())
        .collect();
    v.sort();
    v
}

// ---------------------------------------------------------------- basics

#[test]
fn submits_as_the_caller_at_origin_with_its_uid_in_received() {
    let (srv, sm) = started();
    let ran = sm.send(&["bob@localhost"], b"Subject: plain\n\nfrom a script\n");
    ok(&ran);
    let m = local(&srv, "bob", "Subject: plain");
    assert_eq!(field(&m, "Return-Path").as_deref(), Some("<root@example.test>"), "{m}");
    assert!(received_header(&m).contains("(postern, from userid 0)"), "{m}");
    // postern adds what the script left out.
    assert_eq!(field(&m, "From").as_deref(), Some("root@example.test"), "{m}");
    assert!(field(&m, "Date").is_some() && field(&m, "Message-ID").is_some(), "{m}");
    assert!(body_of(&m).starts_with("from a script"), "{m}");

    // Any local user may submit: no set-gid helper, the socket is 0666
    // and the uid comes from the socket, not from anything the client says.
    let ran = sm.send_as_nobody(&["bob@localhost"], b"Subject: from nobody\n\nx\n");
    ok(&ran);
    let m = local(&srv, "bob", "Subject: from nobody");
    assert_eq!(field(&m, "Return-Path").as_deref(), Some("<nobody@example.test>"), "{m}");
    assert!(received_header(&m).contains(&format!("(postern, from userid {NOBODY})")), "{m}");

    // A bare user name is user@origin, as Postfix qualifies it.
    ok(&sm.send(&["alice"], b"Subject: to a bare name\n\nx\n"));
    wait_message(&srv, &srv.mailbox("example.test/alice"), "Subject: to a bare name");

    // -C names the config; the subcommand form is the same program.
    let mut c = peer(sm.path("sendmail").to_str().unwrap());
    c.args(["-C", srv.config.to_str().unwrap(), "bob@localhost"]);
    ok(&run_with_input(&mut c, b"Subject: with -C\n\nx\n"));
    local(&srv, "bob", "Subject: with -C");
    let mut c = postern();
    c.args(["sendmail", "-C", srv.config.to_str().unwrap(), "bob@localhost"]);
    ok(&run_with_input(&mut c, b"Subject: postern sendmail\n\nx\n"));
    local(&srv, "bob", "Subject: postern sendmail");
}

#[test]
fn t_takes_recipients_from_to_cc_bcc_and_drops_bcc() {
    let (srv, sm) = started();
    let msg = b"From: Script <root@example.test>\n\
                To: Bob <bob@localhost>, carol@localhost\n\
                Cc: dave@localhost\n\
                Bcc: erin@localhost,\n hidden@localhost\n\
                Subject: with -t\n\n\
                To: body-only@localhost is not a header\n";
    ok(&sm.send(&["-t"], msg));
    for user in ["bob", "carol", "dave", "erin", "hidden"] {
        let m = local(&srv, user, "Subject: with -t");
        // (Delivered-To: names the copy's own recipient.)
        let hidden = m.matches("hidden@localhost").count() - usize::from(user == "hidden");
        assert!(field(&m, "Bcc").is_none() && hidden == 0, "Bcc: left in {user}'s copy:\n{m}");
        assert!(m.contains("To: body-only@localhost is not a header"), "{m}");
    }
    // Recipients on the command line are added to those of the header
    // (Postfix's way; Sendmail and Exim subtract them).
    ok(&sm.send(&["-t", "-i", "frank@localhost"], b"To: bob@localhost\nSubject: t plus argv\n\nx\n"));
    local(&srv, "frank", "Subject: t plus argv");
    local(&srv, "bob", "Subject: t plus argv");
    // Resent-* fields, when present, are the only ones that count.
    ok(&sm.send(&["-t"], b"To: bob@localhost\nResent-To: gina@localhost\nSubject: resent\n\nx\n"));
    local(&srv, "gina", "Subject: resent");
    ok(&sm.send(&["-t"], b"To: bob@localhost\nSubject: after resent\n\nx\n"));
    local(&srv, "bob", "Subject: after resent");
    absent(&srv.local_mailbox("bob"), "Subject: resent\n");
    absent(&srv.local_mailbox("body-only"), "");
}

#[test]
fn f_r_and_f_name_set_the_sender_and_from() {
    let (srv, sm) = started();
    ok(&sm.send(&["-f", "bounces@example.test", "bob@localhost"], b"Subject: dash f\n\nx\n"));
    let m = local(&srv, "bob", "Subject: dash f");
    assert_eq!(field(&m, "Return-Path").as_deref(), Some("<bounces@example.test>"), "{m}");
    ok(&sm.send(&["-rrunner@example.test", "bob@localhost"], b"Subject: dash r\n\nx\n"));
    let m = local(&srv, "bob", "Subject: dash r");
    assert_eq!(field(&m, "Return-Path").as_deref(), Some("<runner@example.test>"), "{m}");
    // The null sender, as a bounce-sending script gives it.
    ok(&sm.send(&["-f", "<>", "bob@localhost"], b"Subject: null sender\n\nx\n"));
    let m = local(&srv, "bob", "Subject: null sender");
    assert_eq!(field(&m, "Return-Path").as_deref(), Some("<>"), "{m}");
    // -F names the From: that postern adds; a From: of the message wins.
    ok(&sm.send(&["-F", "Cron Daemon", "bob@localhost"], b"Subject: dash F\n\nx\n"));
    let m = local(&srv, "bob", "Subject: dash F");
    assert_eq!(field(&m, "From").as_deref(), Some("Cron Daemon <root@example.test>"), "{m}");
    ok(&sm.send(&["-FNAS, box 2", "-f", "nas@example.test", "bob@localhost"], b"Subject: F quoted\n\nx\n"));
    let m = local(&srv, "bob", "Subject: F quoted");
    assert_eq!(field(&m, "From").as_deref(), Some("\"NAS, box 2\" <nas@example.test>"), "{m}");
    ok(&sm.send(&["-F", "Ignored", "bob@localhost"], b"From: Own <own@example.test>\nSubject: own from\n\nx\n"));
    let m = local(&srv, "bob", "Subject: own from");
    assert_eq!(field(&m, "From").as_deref(), Some("Own <own@example.test>"), "{m}");
}

#[test]
fn a_lone_dot_ends_input_unless_i_or_oi() {
    let (srv, sm) = started();
    let msg = |s: &str| format!("Subject: {s}\n\nbefore\n.\nafter the dot\n..\nend\n").into_bytes();
    ok(&sm.send(&["bob@localhost"], &msg("no i")));
    for flag in ["-i", "-oi"] {
        ok(&sm.send(&[flag, "bob@localhost"], &msg(flag)));
        let m = local(&srv, "bob", &format!("Subject: {flag}\n"));
        assert!(body_of(&m).starts_with("before\n.\nafter the dot\n..\nend\n"), "{flag}:\n{m}");
    }
    let m = local(&srv, "bob", "Subject: no i\n");
    assert_eq!(body_of(&m), "before\n", "without -i the lone dot ends the message:\n{m}");
}

#[test]
fn sendmail_options_callers_pass_are_accepted_and_v_tells() {
    let (srv, sm) = started();
    // What cron, mailx, smartd and PHP pass, and the -o options that
    // change nothing here.
    let calls: &[&[&str]] = &[
        &["-oem", "bob@localhost"],
        &["-oee", "bob@localhost"],
        &["-odb", "bob@localhost"],
        &["-odq", "bob@localhost"],
        &["-odi", "-oem", "-oi", "bob@localhost"],
        &["-i", "-FCronDaemon", "-B8BITMIME", "-oem", "bob@localhost"],
        &["-FCronDaemon", "-i", "-odi", "-oem", "-oi", "-t", "-f", "root"],
        &["-i", "--", "bob@localhost"],
    ];
    for (n, args) in calls.iter().enumerate() {
        let subject = format!("Subject: call {n}");
        let ran = sm.send(args, format!("To: bob@localhost\n{subject}\n\nx\n").as_bytes());
        assert_eq!(ran.code, 0, "sendmail {args:?}: {}", ran.all());
        local(&srv, "bob", &subject);
    }
    let ran = sm.send(&["-v", "-oem", "bob@localhost"], b"Subject: verbose\n\nx\n");
    ok(&ran);
    let id = queue_id_in(&ran.stderr).unwrap_or_else(|| panic!("-v names the queue ID: {}", ran.all()));
    assert!(ran.stderr.contains(">>> RCPT TO:<bob@localhost>") && ran.stderr.contains("ignoring -oem"), "{}", ran.all());
    let m = local(&srv, "bob", "Subject: verbose");
    assert!(m.contains(&id), "{id} not in\n{m}");
    // Quiet without -v: nothing on stdout or stderr.
    let ran = sm.send(&["bob@localhost"], b"Subject: quiet\n\nx\n");
    assert_eq!((ran.code, ran.stdout.as_str(), ran.stderr.as_str()), (0, "", ""));
}

#[test]
fn bs_speaks_smtp_on_stdin_and_stdout() {
    let (srv, sm) = started();
    let dialog = b"EHLO script.test\r\nMAIL FROM:<batch@example.test>\r\nRCPT TO:<bob@localhost>\r\nDATA\r\nSubject: over -bs\r\n\r\nhello\r\n.\r\nQUIT\r\n";
    let ran = sm.send(&["-bs"], dialog);
    ok(&ran);
    let codes: Vec<&str> = ran.stdout.lines().map(|l| &l[..3]).collect();
    assert_eq!(codes.first(), Some(&"220"), "{}", ran.all());
    assert!(ran.stdout.contains("354 ") && ran.stdout.contains("221 "), "{}", ran.all());
    let id = queue_id_in(&ran.stdout).unwrap_or_else(|| panic!("{}", ran.all()));
    let m = local(&srv, "bob", "Subject: over -bs");
    assert!(m.contains(&id) && received_header(&m).contains("from userid 0"), "{m}");
    assert_eq!(field(&m, "Return-Path").as_deref(), Some("<batch@example.test>"), "{m}");
}

#[test]
fn bp_and_mailq_list_the_queue_and_q_flushes_it() {
    let (srv, sm) = started();
    // Mail for another domain defers here (the tests' resolver is a
    // closed port), so it stays in the queue.
    let ran = sm.send(&["-v", "someone@remote.test"], b"Subject: deferred\n\nx\n");
    ok(&ran);
    let id = queue_id_in(&ran.stderr).unwrap();
    assert!(srv.wait_log(&format!("{id}: to=<someone@remote.test>"), Duration::from_secs(15)), "{}", srv.log());
    for (name, args) in [("mailq", &[][..]), ("sendmail", &["-bp"][..])] {
        let ran = sm.run(name, args);
        ok(&ran);
        assert!(ran.stdout.contains(&id) && ran.stdout.contains("someone@remote.test"), "{name} {args:?}: {}", ran.all());
    }
    let ran = sm.run("sendmail", &["-q"]);
    ok(&ran);
    assert!(ran.stdout.contains("scheduled"), "{}", ran.all());
    assert!(srv.wait_log_count(&format!("{id}: to=<someone@remote.test>"), 2, Duration::from_secs(15)), "-q tried again:\n{}", srv.log());
}

#[test]
fn bi_and_newaliases_make_the_server_read_the_aliases() {
    let srv = server().aliases("postmaster: root\nroot: bob\n").start();
    let sm = Sendmail::new(&srv.config);
    let aliases = srv.dir.path().join("aliases");
    for (n, (name, args)) in [("newaliases", &[][..]), ("sendmail", &["-bi"][..])].into_iter().enumerate() {
        let target = ["carol", "dave"][n];
        std::fs::write(&aliases, format!("postmaster: root\nroot: bob\nops: {target}\n")).unwrap();
        let ran = sm.run(name, args);
        ok(&ran);
        assert!(srv.wait_log_count("reloaded ", n + 1, Duration::from_secs(15)), "{}", srv.log());
        // The server has the new alias: mail sent after the reload follows it.
        let subject = format!("Subject: to ops after {name}");
        ok(&sm.send(&["ops@localhost"], format!("{subject}\n\nx\n").as_bytes()));
        local(&srv, target, &subject);
    }
}

#[test]
fn an_unknown_flag_is_a_usage_error() {
    let (_srv, sm) = started();
    for (args, says) in [
        (&["-Z", "bob@localhost"][..], "unknown option -Z"),
        (&["-f"][..], "option -f needs a value"),
        (&["-bd"][..], "-bd is not supported"),
        (&[][..], "no recipients"),
    ] {
        let ran = sm.send(args, b"Subject: never sent\n\nx\n");
        assert_eq!(ran.code, 64, "sendmail {args:?}: {}", ran.all());
        assert!(ran.stderr.contains(says) && ran.stderr.contains("usage: sendmail"), "sendmail {args:?}: {}", ran.all());
    }
}
