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
        assert!(
            !text.contains(needle),
            "{} holds {needle:?}:\n{text}",
            f.display()
        );
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
    assert_eq!(
        field(&m, "Return-Path").as_deref(),
        Some("<root@example.test>"),
        "{m}"
    );
    assert!(
        received_header(&m).contains("(postern, from userid 0)"),
        "{m}"
    );
    // postern adds what the script left out.
    assert_eq!(
        field(&m, "From").as_deref(),
        Some("root@example.test"),
        "{m}"
    );
    assert!(
        field(&m, "Date").is_some() && field(&m, "Message-ID").is_some(),
        "{m}"
    );
    assert!(body_of(&m).starts_with("from a script"), "{m}");

    // Any local user may submit: no set-gid helper, the socket is 0666
    // and the uid comes from the socket, not from anything the client says.
    let ran = sm.send_as_nobody(&["bob@localhost"], b"Subject: from nobody\n\nx\n");
    ok(&ran);
    let m = local(&srv, "bob", "Subject: from nobody");
    assert_eq!(
        field(&m, "Return-Path").as_deref(),
        Some("<nobody@example.test>"),
        "{m}"
    );
    assert!(
        received_header(&m).contains(&format!("(postern, from userid {NOBODY})")),
        "{m}"
    );

    // A bare user name is user@origin, as Postfix qualifies it.
    ok(&sm.send(&["alice"], b"Subject: to a bare name\n\nx\n"));
    wait_message(
        &srv,
        &srv.mailbox("example.test/alice"),
        "Subject: to a bare name",
    );

    // -C names the config; the subcommand form is the same program.
    let mut c = peer(sm.path("sendmail").to_str().unwrap());
    c.args(["-C", srv.config.to_str().unwrap(), "bob@localhost"]);
    ok(&run_with_input(&mut c, b"Subject: with -C\n\nx\n"));
    local(&srv, "bob", "Subject: with -C");
    let mut c = postern();
    c.args([
        "sendmail",
        "-C",
        srv.config.to_str().unwrap(),
        "bob@localhost",
    ]);
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
        assert!(
            field(&m, "Bcc").is_none() && hidden == 0,
            "Bcc: left in {user}'s copy:\n{m}"
        );
        assert!(m.contains("To: body-only@localhost is not a header"), "{m}");
    }
    // Recipients on the command line are added to those of the header
    // (Postfix's way; Sendmail and Exim subtract them).
    ok(&sm.send(
        &["-t", "-i", "frank@localhost"],
        b"To: bob@localhost\nSubject: t plus argv\n\nx\n",
    ));
    local(&srv, "frank", "Subject: t plus argv");
    local(&srv, "bob", "Subject: t plus argv");
    // Resent-* fields, when present, are the only ones that count.
    ok(&sm.send(
        &["-t"],
        b"To: bob@localhost\nResent-To: gina@localhost\nSubject: resent\n\nx\n",
    ));
    local(&srv, "gina", "Subject: resent");
    ok(&sm.send(&["-t"], b"To: bob@localhost\nSubject: after resent\n\nx\n"));
    local(&srv, "bob", "Subject: after resent");
    absent(&srv.local_mailbox("bob"), "Subject: resent\n");
    absent(&srv.local_mailbox("body-only"), "");
}

#[test]
fn f_r_and_f_name_set_the_sender_and_from() {
    let (srv, sm) = started();
    ok(&sm.send(
        &["-f", "bounces@example.test", "bob@localhost"],
        b"Subject: dash f\n\nx\n",
    ));
    let m = local(&srv, "bob", "Subject: dash f");
    assert_eq!(
        field(&m, "Return-Path").as_deref(),
        Some("<bounces@example.test>"),
        "{m}"
    );
    ok(&sm.send(
        &["-rrunner@example.test", "bob@localhost"],
        b"Subject: dash r\n\nx\n",
    ));
    let m = local(&srv, "bob", "Subject: dash r");
    assert_eq!(
        field(&m, "Return-Path").as_deref(),
        Some("<runner@example.test>"),
        "{m}"
    );
    // The null sender, as a bounce-sending script gives it.
    ok(&sm.send(
        &["-f", "<>", "bob@localhost"],
        b"Subject: null sender\n\nx\n",
    ));
    let m = local(&srv, "bob", "Subject: null sender");
    assert_eq!(field(&m, "Return-Path").as_deref(), Some("<>"), "{m}");
    // -F names the From: that postern adds; a From: of the message wins.
    ok(&sm.send(
        &["-F", "Cron Daemon", "bob@localhost"],
        b"Subject: dash F\n\nx\n",
    ));
    let m = local(&srv, "bob", "Subject: dash F");
    assert_eq!(
        field(&m, "From").as_deref(),
        Some("Cron Daemon <root@example.test>"),
        "{m}"
    );
    ok(&sm.send(
        &["-FNAS, box 2", "-f", "nas@example.test", "bob@localhost"],
        b"Subject: F quoted\n\nx\n",
    ));
    let m = local(&srv, "bob", "Subject: F quoted");
    assert_eq!(
        field(&m, "From").as_deref(),
        Some("\"NAS, box 2\" <nas@example.test>"),
        "{m}"
    );
    ok(&sm.send(
        &["-F", "Ignored", "bob@localhost"],
        b"From: Own <own@example.test>\nSubject: own from\n\nx\n",
    ));
    let m = local(&srv, "bob", "Subject: own from");
    assert_eq!(
        field(&m, "From").as_deref(),
        Some("Own <own@example.test>"),
        "{m}"
    );
}

#[test]
fn a_lone_dot_ends_input_unless_i_or_oi() {
    let (srv, sm) = started();
    let msg = |s: &str| format!("Subject: {s}\n\nbefore\n.\nafter the dot\n..\nend\n").into_bytes();
    ok(&sm.send(&["bob@localhost"], &msg("no i")));
    for flag in ["-i", "-oi"] {
        ok(&sm.send(&[flag, "bob@localhost"], &msg(flag)));
        let m = local(&srv, "bob", &format!("Subject: {flag}\n"));
        assert!(
            body_of(&m).starts_with("before\n.\nafter the dot\n..\nend\n"),
            "{flag}:\n{m}"
        );
    }
    let m = local(&srv, "bob", "Subject: no i\n");
    assert_eq!(
        body_of(&m),
        "before\n",
        "without -i the lone dot ends the message:\n{m}"
    );
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
        &[
            "-FCronDaemon",
            "-i",
            "-odi",
            "-oem",
            "-oi",
            "-t",
            "-f",
            "root",
        ],
        &["-i", "--", "bob@localhost"],
    ];
    for (n, args) in calls.iter().enumerate() {
        let subject = format!("Subject: call {n}");
        let ran = sm.send(
            args,
            format!("To: bob@localhost\n{subject}\n\nx\n").as_bytes(),
        );
        assert_eq!(ran.code, 0, "sendmail {args:?}: {}", ran.all());
        local(&srv, "bob", &subject);
    }
    let ran = sm.send(&["-v", "-oem", "bob@localhost"], b"Subject: verbose\n\nx\n");
    ok(&ran);
    let id =
        queue_id_in(&ran.stderr).unwrap_or_else(|| panic!("-v names the queue ID: {}", ran.all()));
    assert!(
        ran.stderr.contains(">>> RCPT TO:<bob@localhost>") && ran.stderr.contains("ignoring -oem"),
        "{}",
        ran.all()
    );
    let m = local(&srv, "bob", "Subject: verbose");
    assert!(m.contains(&id), "{id} not in\n{m}");
    // Quiet without -v: nothing on stdout or stderr.
    let ran = sm.send(&["bob@localhost"], b"Subject: quiet\n\nx\n");
    assert_eq!(
        (ran.code, ran.stdout.as_str(), ran.stderr.as_str()),
        (0, "", "")
    );
}

#[test]
fn bs_speaks_smtp_on_stdin_and_stdout() {
    let (srv, sm) = started();
    let dialog = b"EHLO script.test\r\nMAIL FROM:<batch@example.test>\r\nRCPT TO:<bob@localhost>\r\nDATA\r\nSubject: over -bs\r\n\r\nhello\r\n.\r\nQUIT\r\n";
    let ran = sm.send(&["-bs"], dialog);
    ok(&ran);
    let codes: Vec<&str> = ran.stdout.lines().map(|l| &l[..3]).collect();
    assert_eq!(codes.first(), Some(&"220"), "{}", ran.all());
    assert!(
        ran.stdout.contains("354 ") && ran.stdout.contains("221 "),
        "{}",
        ran.all()
    );
    let id = queue_id_in(&ran.stdout).unwrap_or_else(|| panic!("{}", ran.all()));
    let m = local(&srv, "bob", "Subject: over -bs");
    assert!(
        m.contains(&id) && received_header(&m).contains("from userid 0"),
        "{m}"
    );
    assert_eq!(
        field(&m, "Return-Path").as_deref(),
        Some("<batch@example.test>"),
        "{m}"
    );
}

#[test]
fn bp_and_mailq_list_the_queue_and_q_flushes_it() {
    let (srv, sm) = started();
    // Mail for another domain defers here (the tests' resolver is a
    // closed port), so it stays in the queue.
    let ran = sm.send(&["-v", "someone@remote.test"], b"Subject: deferred\n\nx\n");
    ok(&ran);
    let id = queue_id_in(&ran.stderr).unwrap();
    assert!(
        srv.wait_log(
            &format!("{id}: to=<someone@remote.test>"),
            Duration::from_secs(15)
        ),
        "{}",
        srv.log()
    );
    for (name, args) in [("mailq", &[][..]), ("sendmail", &["-bp"][..])] {
        let ran = sm.run(name, args);
        ok(&ran);
        assert!(
            ran.stdout.contains(&id) && ran.stdout.contains("someone@remote.test"),
            "{name} {args:?}: {}",
            ran.all()
        );
    }
    let ran = sm.run("sendmail", &["-q"]);
    ok(&ran);
    assert!(ran.stdout.contains("scheduled"), "{}", ran.all());
    assert!(
        srv.wait_log_count(
            &format!("{id}: to=<someone@remote.test>"),
            2,
            Duration::from_secs(15)
        ),
        "-q tried again:\n{}",
        srv.log()
    );
}

#[test]
fn bi_and_newaliases_make_the_server_read_the_aliases() {
    let srv = server().aliases("postmaster: root\nroot: bob\n").start();
    let sm = Sendmail::new(&srv.config);
    let aliases = srv.dir.path().join("aliases");
    for (n, (name, args)) in [("newaliases", &[][..]), ("sendmail", &["-bi"][..])]
        .into_iter()
        .enumerate()
    {
        let target = ["carol", "dave"][n];
        std::fs::write(
            &aliases,
            format!("postmaster: root\nroot: bob\nops: {target}\n"),
        )
        .unwrap();
        let ran = sm.run(name, args);
        ok(&ran);
        assert!(
            srv.wait_log_count("reloaded ", n + 1, Duration::from_secs(15)),
            "{}",
            srv.log()
        );
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
        assert!(
            ran.stderr.contains(says) && ran.stderr.contains("usage: sendmail"),
            "sendmail {args:?}: {}",
            ran.all()
        );
    }
}

// ------------------------------------------------------ server stopped

#[test]
fn with_the_server_stopped_mail_waits_in_the_drop_directory() {
    let (mut srv, sm) = started();
    srv.stop();
    let ran = sm.send(&["-v", "bob@localhost"], b"Subject: while down\n\nkept\n");
    ok(&ran);
    assert!(
        ran.stderr.contains("kept in"),
        "-v says where: {}",
        ran.all()
    );
    ok(&sm.send_as_nobody(
        &["-t"],
        b"To: carol@localhost\nSubject: nobody while down\n\nkept\n",
    ));
    assert_eq!(drop_files(&srv).len(), 2, "{:?}", drop_files(&srv));
    // mailq says the drop directory holds them, not that all is empty.
    let ran = sm.run("mailq", &[]);
    ok(&ran);
    assert!(
        ran.stdout.contains("2 messages in the drop directory"),
        "{}",
        ran.all()
    );
    // -bs needs the server: it says so in SMTP, nothing was taken.
    let ran = sm.send(&["-bs"], b"EHLO x\r\nQUIT\r\n");
    assert!(ran.stdout.starts_with("421 "), "{}", ran.all());
    assert_eq!(ran.code, 69, "{}", ran.all());
    // -q has nothing to flush without a server: it says so.
    let ran = sm.run("sendmail", &["-q"]);
    assert_eq!(ran.code, 69, "{}", ran.all());
    assert!(ran.stderr.contains("not running"), "{}", ran.all());
    // newaliases: the server reads the aliases when it starts.
    let ran = sm.run("newaliases", &[]);
    ok(&ran);
    assert!(ran.stdout.contains("when it starts"), "{}", ran.all());

    srv.restart();
    let m = local(&srv, "bob", "Subject: while down");
    assert!(received_header(&m).contains("from userid 0"), "{m}");
    assert_eq!(
        field(&m, "Return-Path").as_deref(),
        Some("<root@example.test>"),
        "{m}"
    );
    let m = local(&srv, "carol", "Subject: nobody while down");
    // The uid is the drop file's owner, as the file system says.
    assert!(
        received_header(&m).contains(&format!("from userid {NOBODY}")),
        "{m}"
    );
    assert_eq!(
        field(&m, "Return-Path").as_deref(),
        Some("<nobody@example.test>"),
        "{m}"
    );
    // Each file goes once the server has its message (logged after).
    assert!(
        srv.wait_log_count(") queued as ", 2, Duration::from_secs(10)),
        "{}",
        srv.log()
    );
    assert!(drop_files(&srv).is_empty(), "{:?}", drop_files(&srv));
}

#[test]
fn exit_75_only_when_the_message_cannot_be_kept() {
    // A drop directory that cannot be written (here: a file in its
    // place) and no server: the one case for EX_TEMPFAIL.
    let srv = server()
        .set("control", "maildrop = \"not-a-directory\"")
        .start();
    let sm = Sendmail::new(&srv.config);
    let mut srv = srv;
    srv.stop();
    std::fs::remove_dir_all(srv.data.join("not-a-directory")).unwrap();
    std::fs::write(srv.data.join("not-a-directory"), "x").unwrap();
    let ran = sm.send(&["bob@localhost"], b"Subject: nowhere to go\n\nx\n");
    assert_eq!(ran.code, 75, "{}", ran.all());
    assert!(
        ran.stderr.contains("cannot be kept") && ran.stderr.contains("not-a-directory"),
        "{}",
        ran.all()
    );
}

// ------------------------------------------------- the real mail programs

/// mail(1) from GNU mailutils and BSD mailx, as smartd and scripts use
/// them, calling /usr/sbin/sendmail, which is postern's symlink here and
/// finds /etc/postern/postern.toml: with the server running and stopped.
#[test]
fn mail_programs_reach_postern_as_usr_sbin_sendmail() {
    if !root_or_skip(
        "mail_programs_reach_postern_as_usr_sbin_sendmail",
        "the mount namespace needs root",
    ) {
        return;
    }
    let mailutils = require("mail.mailutils");
    let mailx = require("bsd-mailx");
    require("unshare");
    let mut srv = server().start();
    let box_ = Appliance::new(&srv.config);
    let mail = |prog: &Path, subject: &str, to: &str| {
        let mut c = box_.cmd(prog.to_str().unwrap());
        c.args(["-s", subject, to]);
        run_with_input(&mut c, format!("{subject} body\n").as_bytes())
    };
    ok(&mail(&mailutils, "from mailutils", "bob@localhost"));
    ok(&mail(&mailx, "from bsd-mailx", "bob@localhost"));
    let m = local(&srv, "bob", "Subject: from mailutils");
    assert!(received_header(&m).contains("from userid 0"), "{m}");
    let m = local(&srv, "bob", "Subject: from bsd-mailx");
    // mailx leaves the sender to sendmail: user@origin.
    assert_eq!(
        field(&m, "Return-Path").as_deref(),
        Some("<root@example.test>"),
        "{m}"
    );
    assert!(body_of(&m).contains("from bsd-mailx body"), "{m}");

    // The same with no server: kept, then delivered at start.
    srv.stop();
    ok(&mail(&mailutils, "mailutils while down", "carol@localhost"));
    ok(&mail(&mailx, "mailx while down", "carol@localhost"));
    assert_eq!(drop_files(&srv).len(), 2);
    srv.restart();
    local(&srv, "carol", "Subject: mailutils while down");
    local(&srv, "carol", "Subject: mailx while down");
}

/// cron's MAILTO path: a job's output is mailed through /usr/sbin/sendmail.
/// anacron is the member of the cron family that runs a job at once
/// (`-n`) from a table of the test's own (`-t`); cron itself only starts
/// jobs at a minute boundary from the system's crontabs. Debian cron's
/// and cronie's argv are in `sendmail_options_callers_pass_are_accepted`.
#[test]
fn cron_mailto_through_anacron() {
    if !root_or_skip(
        "cron_mailto_through_anacron",
        "the mount namespace needs root",
    ) {
        return;
    }
    let anacron = require("anacron");
    require("unshare");
    let srv = server().start();
    let box_ = Appliance::new(&srv.config);
    let t = TestDir::new("anacron");
    let tab = t.path().join("anacrontab");
    std::fs::write(&tab, "SHELL=/bin/sh\nPATH=/usr/bin:/bin\nMAILTO=ops@localhost\n1\t0\tnightly\techo backup finished; echo 2 files skipped >&2\n").unwrap();
    let spool = t.path().join("spool");
    std::fs::create_dir(&spool).unwrap();
    let mut c = box_.cmd(anacron.to_str().unwrap());
    c.arg("-f")
        .arg("-n")
        .arg("-d")
        .arg("-t")
        .arg(&tab)
        .arg("-S")
        .arg(&spool);
    let ran = run_with_input(&mut c, b"");
    ok(&ran);
    assert!(ran.stderr.contains("mailing output"), "{}", ran.all());
    let m = local(&srv, "ops", "backup finished");
    assert!(
        m.contains("2 files skipped") && m.contains("Anacron job 'nightly'"),
        "{m}"
    );
    assert!(received_header(&m).contains("from userid 0"), "{m}");
    assert_eq!(
        field(&m, "Return-Path").as_deref(),
        Some("<root@example.test>"),
        "{m}"
    );
    // anacron writes `From: Anacron <root>`: a bare name gets the origin
    // in the header too, as Postfix's cleanup does for local mail.
    let from = field(&m, "From").unwrap_or_default();
    assert!(from.contains("<root@example.test>"), "From: {from}\n{m}");
}

/// Python scripts call sendmail with subprocess: each flag, the exit
/// codes they see.
#[test]
fn python_subprocess_with_each_flag() {
    let (srv, sm) = started();
    let script = r#"
import subprocess, sys
sendmail = sys.argv[1]
calls = [
    (["-t"], "To: bob@localhost\nSubject: py -t\n\nx\n"),
    (["-t", "-i"], "To: bob@localhost\nSubject: py -t -i (PHP)\n\n.\nafter\n"),
    (["-oi", "bob@localhost"], "Subject: py -oi\n\n.\nafter\n"),
    (["-i", "bob@localhost"], "Subject: py -i\n\nx\n"),
    (["-f", "py@example.test", "bob@localhost"], "Subject: py -f\n\nx\n"),
    (["-r", "py@example.test", "bob@localhost"], "Subject: py -r\n\nx\n"),
    (["-F", "Py Script", "bob@localhost"], "Subject: py -F\n\nx\n"),
    (["-oem", "-oee", "-odb", "-odq", "bob@localhost"], "Subject: py -o\n\nx\n"),
    (["-v", "bob@localhost"], "Subject: py -v\n\nx\n"),
    (["-bs"], "EHLO py\r\nMAIL FROM:<py@example.test>\r\nRCPT TO:<bob@localhost>\r\nDATA\r\nSubject: py -bs\r\n\r\nx\r\n.\r\nQUIT\r\n"),
    (["-bp"], ""),
    (["-q"], ""),
    (["-bi"], ""),
    (["-Z", "bob@localhost"], "Subject: py never\n\nx\n"),
    (["-t"], "Subject: py no recipients\n\nx\n"),
]
for args, text in calls:
    p = subprocess.run([sendmail] + args, input=text.encode(), capture_output=True)
    print(" ".join(args), "=>", p.returncode)
"#;
    let mut c = python();
    c.args(["-c", script, sm.path("sendmail").to_str().unwrap()])
        .env("POSTERN_CONFIG", &srv.config);
    let ran = run_with_input(&mut c, b"");
    ok(&ran);
    let codes: Vec<(String, i32)> = ran
        .stdout
        .lines()
        .map(|l| {
            let (a, c) = l.split_once(" => ").unwrap();
            (a.to_string(), c.parse().unwrap())
        })
        .collect();
    for (args, code) in &codes {
        let want = if args.starts_with("-Z") || args == "-t" && code != &0 {
            64
        } else {
            0
        };
        assert_eq!(*code, want, "sendmail {args}: {}", ran.all());
    }
    assert_eq!(
        codes.iter().filter(|(a, c)| a == "-t" && *c == 64).count(),
        1,
        "{}",
        ran.all()
    );
    for s in [
        "py -t\n",
        "py -t -i (PHP)",
        "py -oi",
        "py -i",
        "py -f",
        "py -r",
        "py -F",
        "py -o",
        "py -v",
        "py -bs",
    ] {
        let m = local(&srv, "bob", &format!("Subject: {s}"));
        match s {
            "py -f" | "py -r" | "py -bs" => assert_eq!(
                field(&m, "Return-Path").as_deref(),
                Some("<py@example.test>"),
                "{m}"
            ),
            "py -F" => assert_eq!(
                field(&m, "From").as_deref(),
                Some("Py Script <root@example.test>"),
                "{m}"
            ),
            "py -oi" | "py -t -i (PHP)" => assert!(body_of(&m).starts_with(".\nafter\n"), "{m}"),
            _ => {}
        }
    }
}

// ------------------------------------------------------------ bad input

#[test]
fn a_message_without_headers_gets_them() {
    let (srv, sm) = started();
    ok(&sm.send(
        &["bob@localhost"],
        b"no header here, a first line of body\nsecond: looks like a header but is body\n",
    ));
    let m = local(&srv, "bob", "no header here");
    assert!(
        field(&m, "From").is_some()
            && field(&m, "Date").is_some()
            && field(&m, "Message-ID").is_some(),
        "{m}"
    );
    assert_eq!(
        body_of(&m),
        "no header here, a first line of body\nsecond: looks like a header but is body\n",
        "{m}"
    );
    // An empty message too.
    ok(&sm.send(&["carol@localhost"], b""));
    let m = local(&srv, "carol", "Message-ID:");
    assert_eq!(body_of(&m), "", "{m}");
}

#[test]
fn line_ends_are_converted() {
    let (srv, sm) = started();
    // Bare LF (every script), CRLF, a mix, and bare CR (old Mac text):
    // all become lines, nothing is refused or lost.
    ok(&sm.send(&["bob@localhost"], b"Subject: lf\n\none\ntwo\n"));
    ok(&sm.send(&["bob@localhost"], b"Subject: crlf\r\n\r\none\r\ntwo\r\n"));
    ok(&sm.send(&["bob@localhost"], b"Subject: mixed\r\n\none\r\ntwo\n"));
    let ran = sm.send(&["bob@localhost"], b"Subject: cr\r\rone\rtwo\r");
    ok(&ran);
    for s in ["lf", "crlf", "mixed", "cr"] {
        let m = local(&srv, "bob", &format!("Subject: {s}\n"));
        assert!(!m.contains('\r'), "{s}: {m:?}");
        assert_eq!(body_of(&m), "one\ntwo\n", "{s}: {m}");
    }
    // No final line end: the last line is kept.
    ok(&sm.send(&["bob@localhost"], b"Subject: no end\n\nlast line"));
    let m = local(&srv, "bob", "Subject: no end");
    assert_eq!(body_of(&m), "last line\n", "{m}");
}

#[test]
fn a_two_megabyte_line_is_split_not_lost() {
    let (srv, sm) = started();
    let mut msg = b"Subject: long line\n\n".to_vec();
    let line: Vec<u8> = (0..2 * 1024 * 1024)
        .map(|i| b"abcdefghij"[i % 10])
        .collect();
    msg.extend_from_slice(&line);
    msg.extend_from_slice(b"\nend\n");
    ok(&sm.send(&["bob@localhost"], &msg));
    let m = local(&srv, "bob", "Subject: long line");
    let body = body_of(&m);
    assert!(body.lines().all(|l| l.len() <= 998), "lines over 998 bytes");
    let joined: String = body.lines().take_while(|l| *l != "end").collect();
    assert_eq!(
        joined.as_bytes(),
        &line[..],
        "the long line's bytes, in order"
    );
    assert!(body.ends_with("\nend\n"));
}

#[test]
fn binary_junk_is_delivered_as_it_came() {
    let (srv, sm) = started();
    // Every byte value, NUL and bare CR included, and no header.
    let mut junk = b"JUNK-MARKER ".to_vec();
    for round in 0..20u32 {
        junk.extend((0..=255u8).map(|b| b.wrapping_mul(31).wrapping_add(round as u8)));
    }
    let ran = sm.send(&["bob@localhost"], &junk);
    ok(&ran);
    let f = wait_maildir(&srv.local_mailbox("bob"), 1, Duration::from_secs(10));
    assert_eq!(f.len(), 1, "{}", srv.log());
    let stored = std::fs::read(&f[0]).unwrap();
    let at = stored
        .windows(12)
        .position(|w| w == b"JUNK-MARKER ")
        .expect("the junk is in the message");
    // Line ends aside (a bare CR became one), every byte arrived.
    let strip = |b: &[u8]| -> Vec<u8> {
        b.iter()
            .copied()
            .filter(|&c| c != b'\r' && c != b'\n')
            .collect()
    };
    assert_eq!(strip(&stored[at..]), strip(&junk));
}

#[test]
fn t_without_recipients_is_a_usage_error_and_sends_nothing() {
    let (srv, sm) = started();
    for msg in [
        &b"Subject: nobody to send to\n\nx\n"[..],
        b"To: \nCc:\nSubject: empty fields\n\nx\n",
        b"no header at all\n",
    ] {
        let ran = sm.send(&["-t"], msg);
        assert_eq!(ran.code, 64, "{}", ran.all());
        assert!(
            ran.stderr
                .contains("-t: no recipient addresses found in the message header"),
            "{}",
            ran.all()
        );
    }
    assert!(drop_files(&srv).is_empty());
    assert!(!srv.log().contains("from=<root"), "{}", srv.log());
}

#[test]
fn a_truncated_drop_file_is_set_aside_with_a_clear_error() {
    let (mut srv, sm) = started();
    srv.stop();
    ok(&sm.send(&["bob@localhost"], b"Subject: whole\n\nx\n"));
    ok(&sm.send(
        &["bob@localhost"],
        b"Subject: will be cut\n\nthe end of this is lost on the disk\n",
    ));
    let files = drop_files(&srv);
    assert_eq!(files.len(), 2);
    // A crash or a full disk cut the second one short.
    let cut = &files[1];
    let bytes = std::fs::read(cut).unwrap();
    std::fs::write(cut, &bytes[..bytes.len() - 10]).unwrap();
    // Not ours at all: a stray file someone left.
    std::fs::write(srv.data.join("maildrop/stray"), b"hello\n").unwrap();
    srv.restart();
    local(&srv, "bob", "Subject: whole");
    let name = cut.file_name().unwrap().to_str().unwrap();
    assert!(
        srv.wait_log(&format!("{name}: the message is"), Duration::from_secs(10)),
        "{}",
        srv.log()
    );
    // Pickup goes through the directory in its own order: wait for both.
    assert!(
        srv.wait_log("stray: not a drop file", Duration::from_secs(10)),
        "{}",
        srv.log()
    );
    let log = srv.log();
    let line = log
        .lines()
        .find(|l| l.contains(name) && l.contains("cut short"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(
        line.contains("moved to") && line.contains("set-aside"),
        "says where it went: {line}"
    );
    assert!(log.contains("stray: not a drop file"), "{log}");
    // Nothing lost: both kept byte for byte in maildrop/set-aside/, and
    // mailq counts them.
    let aside = srv.data.join("maildrop/set-aside");
    assert_eq!(
        std::fs::read(aside.join(name)).unwrap(),
        &bytes[..bytes.len() - 10]
    );
    assert_eq!(std::fs::read(aside.join("stray")).unwrap(), b"hello\n");
    let ran = sm.run("mailq", &[]);
    ok(&ran);
    assert!(
        ran.stdout
            .contains("2 drop file(s) the server could not submit"),
        "{}",
        ran.all()
    );
    absent(&srv.local_mailbox("bob"), "will be cut");
}

#[test]
fn an_unknown_recipient_bounces_to_the_sender_the_others_get_it() {
    // As with Postfix: sendmail cannot ask the caller, so the server
    // takes the message and a bounce tells the sender which address failed.
    let (srv, sm) = started();
    let ran = sm.send(
        &[
            "-f",
            "carol@localhost",
            "bob@localhost",
            "nosuch@example.test",
        ],
        b"Subject: one good one bad\n\nx\n",
    );
    ok(&ran);
    local(&srv, "bob", "Subject: one good one bad");
    let bounce = local(&srv, "carol", "nosuch@example.test");
    assert!(bounce.contains("5.1.1"), "{bounce}");
}

#[test]
fn a_message_over_the_size_limit_is_refused_with_65() {
    let srv = server().set("smtp", "message_size_limit = \"1k\"").start();
    let sm = Sendmail::new(&srv.config);
    let mut big = b"Subject: too big\n\n".to_vec();
    big.extend(std::iter::repeat_n(b'x', 3000));
    let ran = sm.send(&["bob@localhost"], &big);
    assert_eq!(ran.code, 65, "{}", ran.all());
    assert!(
        ran.stderr.contains("larger than 1024 bytes"),
        "{}",
        ran.all()
    );
    assert!(drop_files(&srv).is_empty());
}

#[test]
fn a_message_saved_from_an_mbox_keeps_its_header() {
    let (srv, sm) = started();
    let msg = b"From alice@example.test Tue Dec  1 10:00:00 2026\nTo: bob@localhost\nSubject: from an mbox\n\nFrom here on, body.\n";
    ok(&sm.send(&["-t"], msg));
    let m = local(&srv, "bob", "Subject: from an mbox");
    assert!(!m.contains("Tue Dec  1 10:00:00 2026"), "{m}");
    assert_eq!(body_of(&m), "From here on, body.\n", "{m}");
}

#[test]
fn a_uid_without_a_login_name_must_give_f() {
    use std::os::unix::process::CommandExt;
    if !root_or_skip(
        "a_uid_without_a_login_name_must_give_f",
        "running as an unknown uid needs root",
    ) {
        return;
    }
    let (srv, sm) = started();
    let ghost = 54321;
    assert!(
        nix::unistd::User::from_uid(ghost.into()).unwrap().is_none(),
        "uid {ghost} exists here"
    );
    let send = |args: &[&str], text: &[u8]| {
        run_with_input(sm.cmd("sendmail").args(args).uid(ghost).gid(ghost), text)
    };
    let ran = send(&["bob@localhost"], b"Subject: ghost\n\nx\n");
    assert_eq!(ran.code, 71, "{}", ran.all());
    assert!(
        ran.stderr.contains(&format!("uid {ghost} has no entry")) && ran.stderr.contains("-f"),
        "{}",
        ran.all()
    );
    // With -f it goes, and Received: names the uid, not the claimed sender.
    ok(&send(
        &["-f", "alice@example.test", "bob@localhost"],
        b"Subject: ghost with f\n\nx\n",
    ));
    let m = local(&srv, "bob", "Subject: ghost with f");
    assert!(
        received_header(&m).contains(&format!("from userid {ghost}")),
        "{m}"
    );
}
