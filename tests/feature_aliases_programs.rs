//! Programs, files and includes in the local aliases file, and local
//! users' home_mailbox / mailbox_command (issue 9, part 5), as Postfix's
//! local(8) does them: `|command` gets the message on stdin with the
//! From_, Return-Path:, X-Original-To: and Delivered-To: lines, `/file` is
//! an mbox appended to, `/dir/` a Maildir, `:include:` a list of targets;
//! all run or written as `[delivery] default_privs` because the harness's
//! aliases file is root's (the tests run as root; a file owned by
//! someone else, or writable by its group, may name no programs: a config
//! error naming file and line).

mod common;
#[path = "common/hooks.rs"]
mod hooks;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use common::*;
use hooks::*;

/// default_privs in these tests: uid and gid apart, so both show.
const PRIVS: (u32, u32) = (5001, 5002);

fn privs() -> String {
    format!("default_privs = \"{}:{}\"", PRIVS.0, PRIVS.1)
}

fn owner(p: &Path) -> (u32, u32) {
    let m = std::fs::metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    (m.uid(), m.gid())
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Checks `text` starts with local(8)'s lines for a message from
/// sender@client.test to `orig` delivered as `to`, arrived between
/// `from` and `until` (the From_ date); returns the rest.
fn strip_local_head<'a>(text: &'a str, orig: &str, to: &str, from: i64, until: i64) -> &'a str {
    let first = text.lines().next().unwrap_or("");
    let dates: Vec<String> = (from - 1..=until).map(postern::timefmt::mbox).collect();
    assert!(
        dates
            .iter()
            .any(|d| first == format!("From sender@client.test  {d}")),
        "a From_ line with the arrival date (one of {dates:?}): {first:?}\n{text}"
    );
    let rest = &text[first.len() + 1..];
    let head =
        format!("Return-Path: <sender@client.test>\nX-Original-To: {orig}\nDelivered-To: {to}\n");
    assert!(
        rest.starts_with(&head),
        "local(8)'s lines in order:\n{text}"
    );
    &rest[head.len()..]
}

/// Skips our Received: (checked) and returns what follows it.
fn strip_received<'a>(text: &'a str, id: &str, rcpt: &str) -> &'a str {
    let received = format!("{}\n", header_blocks(text)[0]);
    check_received(&received, id, rcpt);
    &text[received.len()..]
}

#[test]
fn alias_command_gets_the_message_and_runs_as_default_privs() {
    if !root_or_skip("alias_command_gets_the_message_and_runs_as_default_privs") {
        return;
    }
    let t = TestDir::new("alias-command");
    let out = open_dir(&t.path().join("out"));
    let o = out.display();
    let srv = Server::builder()
        .set("delivery", &privs())
        .aliases(&format!(
            "archive: \"|cat > {o}/msg.tmp && mv {o}/msg.tmp {o}/msg; env > {o}/env; id -u > {o}/uid; id -g > {o}/gid\"\n"
        ))
        .start();
    // The harness's aliases file is root's, 0644: trusted, default_privs.
    let aliases = srv.dir.path().join("aliases");
    assert_eq!(owner(&aliases), (0, 0));
    assert_eq!(
        std::fs::metadata(&aliases).unwrap().permissions().mode() & 0o777,
        0o644
    );

    let msg = mail(
        "archive@mx.example.test",
        "to a program",
        "",
        "From the top: quoted\r\nbye",
    );
    let before = now_secs();
    let id = send(
        &srv,
        "sender@client.test",
        &["archive@mx.example.test"],
        &msg,
    );
    let after = now_secs();
    let got = String::from_utf8(wait_file(&srv, &out.join("msg"))).unwrap();
    let line = wait_status(&srv, &id, "archive@mx.example.test", "sent");
    assert!(line.contains("relay=alias,"), "{line}");
    assert!(accepted_line(&srv, &id).ends_with("(queue active)"));

    let rest = strip_local_head(
        &got,
        "archive@mx.example.test",
        "archive@mx.example.test",
        before,
        after,
    );
    let rest = strip_received(rest, &id, "archive@mx.example.test");
    assert_eq!(
        rest,
        stored(&msg).replace("\nFrom the top", "\n>From the top"),
        "From_ lines quoted"
    );

    assert_eq!(
        std::fs::read_to_string(out.join("uid")).unwrap().trim(),
        PRIVS.0.to_string()
    );
    assert_eq!(
        std::fs::read_to_string(out.join("gid")).unwrap().trim(),
        PRIVS.1.to_string()
    );
    assert_eq!(
        owner(&out.join("msg")),
        PRIVS,
        "files the command makes are default_privs'"
    );
    let env = std::fs::read_to_string(out.join("env")).unwrap();
    for want in [
        "SENDER=sender@client.test",
        "RECIPIENT=archive@mx.example.test",
        "ORIGINAL_RECIPIENT=archive@mx.example.test",
        "LOCAL=archive",
        "DOMAIN=mx.example.test",
        "PATH=/usr/bin:/bin",
    ] {
        assert!(
            env.lines().any(|l| l == want),
            "{want} in the environment:\n{env}"
        );
    }
}

#[test]
fn alias_file_target_appends_mbox_entries() {
    if !root_or_skip("alias_file_target_appends_mbox_entries") {
        return;
    }
    let t = TestDir::new("alias-mbox");
    let out = open_dir(&t.path().join("out"));
    let mbox = out.join("archive.mbox");
    let srv = Server::builder()
        .set("delivery", &privs())
        .aliases(&format!("box: {}\n", mbox.display()))
        .start();
    let m1 = mail(
        "box@mx.example.test",
        "first",
        "",
        "From here a line that needs quoting\r\n>From already quoted\r\nend one",
    );
    let m2 = mail("box@mx.example.test", "second", "", "second body");
    let before = now_secs();
    let id1 = send(&srv, "sender@client.test", &["box@mx.example.test"], &m1);
    let l1 = wait_status(&srv, &id1, "box@mx.example.test", "sent");
    let id2 = send(&srv, "sender@client.test", &["box@mx.example.test"], &m2);
    let l2 = wait_status(&srv, &id2, "box@mx.example.test", "sent");
    let after = now_secs();
    for l in [&l1, &l2] {
        assert!(
            l.contains("relay=local,") && l.contains("delivered to file: "),
            "{l}"
        );
    }
    let text = std::fs::read_to_string(&mbox).unwrap();
    assert_eq!(
        text.matches("\nFrom ").count() + usize::from(text.starts_with("From ")),
        2,
        "two From_ lines:\n{text}"
    );
    // Entry one: head, Received:, the message with `From ` lines quoted
    // (only those, as Postfix's local(8) does: not `>From `), a blank line.
    let rest = strip_local_head(
        &text,
        "box@mx.example.test",
        "box@mx.example.test",
        before,
        after,
    );
    let rest = strip_received(rest, &id1, "box@mx.example.test");
    let body1 = stored(&m1).replace("\nFrom here", "\n>From here");
    assert!(
        rest.starts_with(&format!("{body1}\n")),
        "entry one and its blank line:\n{text}"
    );
    let rest = &rest[body1.len() + 1..];
    let rest = strip_local_head(
        rest,
        "box@mx.example.test",
        "box@mx.example.test",
        before,
        after,
    );
    let rest = strip_received(rest, &id2, "box@mx.example.test");
    assert_eq!(
        rest,
        format!("{}\n", stored(&m2)),
        "entry two, ending in a blank line"
    );
    assert_eq!(owner(&mbox), PRIVS, "appended as default_privs");
    assert_eq!(
        std::fs::metadata(&mbox).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

#[test]
fn alias_directory_target_is_a_maildir() {
    if !root_or_skip("alias_directory_target_is_a_maildir") {
        return;
    }
    let t = TestDir::new("alias-maildir");
    let out = open_dir(&t.path().join("out"));
    let md = out.join("saved");
    let srv = Server::builder()
        .set("delivery", &privs())
        .aliases(&format!("save: {}/\n", md.display()))
        .start();
    let msg = mail("save@mx.example.test", "to a maildir", "", "kept");
    let id = send(&srv, "sender@client.test", &["save@mx.example.test"], &msg);
    let line = wait_status(&srv, &id, "save@mx.example.test", "sent");
    assert!(line.contains("delivered to maildir as "), "{line}");
    let files = maildir_files(&md);
    assert_eq!(files.len(), 1, "{}", srv.log());
    assert_eq!(files[0].parent().unwrap(), md.join("new"));
    let text = std::fs::read_to_string(&files[0]).unwrap();
    let head = "Return-Path: <sender@client.test>\nDelivered-To: save@mx.example.test\n";
    assert!(text.starts_with(head), "{text}");
    let rest = strip_received(&text[head.len()..], &id, "save@mx.example.test");
    assert_eq!(rest, stored(&msg));
    assert_eq!(owner(&files[0]), PRIVS, "written as default_privs");
    for sub in ["tmp", "new", "cur"] {
        assert_eq!(owner(&md.join(sub)), PRIVS, "{sub}/ made by default_privs");
    }
}

#[test]
fn alias_include_file_lists_the_targets() {
    let t = TestDir::new("alias-include");
    let list = t.path().join("team.list");
    std::fs::write(
        &list,
        "# the team\nalice@example.test\nbob@example.test, carol@example.test\n",
    )
    .unwrap();
    let srv = Server::builder()
        .aliases(&format!("team: :include:{}\n", list.display()))
        .start();
    let msg = mail(
        "team@mx.example.test",
        "to the list",
        "",
        "for everyone on it",
    );
    let id = send(&srv, "sender@client.test", &["team@mx.example.test"], &msg);
    for who in ["alice", "bob", "carol"] {
        let line = wait_status(&srv, &id, &format!("{who}@example.test"), "sent");
        assert!(line.contains("orig_to=<team@mx.example.test>"), "{line}");
        let got = only_message(&srv, &srv.mailbox(&format!("example.test/{who}/")));
        let text = String::from_utf8(got).unwrap();
        assert!(text.ends_with(&stored(&msg)), "{who}:\n{text}");
    }
}

/// Writes postern.toml and an aliases file with `mode` in a fresh
/// directory and runs `postern check-config` there.
fn check_config_with_aliases(
    aliases: &str,
    mode: u32,
) -> (Option<i32>, String, std::path::PathBuf, TestDir) {
    let t = TestDir::new("alias-check");
    let al = t.path().join("aliases");
    std::fs::write(&al, aliases).unwrap();
    std::fs::set_permissions(&al, std::fs::Permissions::from_mode(mode)).unwrap();
    std::fs::write(
        t.path().join("postern.toml"),
        format!(
            "data_dir = \"{}\"\n\n[[listener]]\naddress = \"127.0.0.1:0\"\n\n[directory]\naliases_file = \"{}\"\n",
            t.path().join("data").display(),
            al.display()
        ),
    )
    .unwrap();
    let out = postern()
        .arg("check-config")
        .arg("postern.toml")
        .current_dir(t.path())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text, al, t)
}

#[test]
fn alias_command_in_a_group_writable_aliases_file_is_a_config_error() {
    let (code, out, al, _t) = check_config_with_aliases(
        "# fine\npostmaster: alice@example.test\nrun: |/bin/cat\nsave: /tmp/never-written\n",
        0o664,
    );
    assert_eq!(code, Some(78), "EX_CONFIG:\n{out}");
    let a = al.display();
    for (line, target, what) in [
        (3, "|/bin/cat", "command"),
        (4, "/tmp/never-written", "file"),
    ] {
        let name = if line == 3 { "run" } else { "save" };
        let want = format!(
            "{a}:{line}: alias {name}: {target}: {what} targets are only honoured from a file owned by root or by the user postern runs as, and writable by no one else; {a} is writable by its group or by others (mode 664); allowed: "
        );
        assert!(
            out.lines().any(|l| l.starts_with(&want)),
            "expected a line starting {want:?} in:\n{out}"
        );
    }
    assert!(
        !out.contains(&format!("{a}:2:")),
        "the address alias is fine:\n{out}"
    );
    // The same file, writable by root alone: accepted.
    let (code, out, _, _t) =
        check_config_with_aliases("postmaster: alice@example.test\nrun: |/bin/cat\n", 0o644);
    assert_eq!(code, Some(0), "{out}");
}

#[test]
fn local_home_mailbox_lands_in_the_users_mail_directory() {
    let srv = Server::builder()
        .set("delivery", "home_mailbox = \"mail/\"")
        .start();
    let msg = mail("carl@localhost", "home mailbox", "", "to a local user");
    let id = send(&srv, "sender@client.test", &["carl@localhost"], &msg);
    let line = wait_status(&srv, &id, "carl@localhost", "sent");
    assert!(line.contains("relay=maildir,"), "{line}");
    let md = srv.local_mailbox("carl").join("mail");
    let files = maildir_files(&md);
    assert_eq!(files.len(), 1, "in local/carl/mail/:\n{}", srv.log());
    assert_eq!(files[0].parent().unwrap(), md.join("new"));
    let text = std::fs::read_to_string(&files[0]).unwrap();
    let head = "Return-Path: <sender@client.test>\nDelivered-To: carl@localhost\n";
    assert!(text.starts_with(head), "{text}");
    assert_eq!(
        strip_received(&text[head.len()..], &id, "carl@localhost"),
        stored(&msg)
    );
    assert!(
        !srv.local_mailbox("carl").join("new").exists(),
        "not in the user's own directory"
    );
}

#[test]
fn local_mailbox_command_script_gets_local8_lines_and_environment() {
    if !root_or_skip("local_mailbox_command_script_gets_local8_lines_and_environment") {
        return;
    }
    let t = TestDir::new("local-command");
    let out = open_dir(&t.path().join("out"));
    let sh = script(
        t.path(),
        "deliver.sh",
        &format!(
            "#!/bin/sh\no={o}/$1\nmkdir -p $o\ncat > $o/msg\nenv > $o/env\nid -u > $o/uid\n/bin/pwd > $o/cwd\n",
            o = out.display()
        ),
    );
    let (uid, gid) = unnamed_ids();
    let local = t.path().join("local");
    let srv = Server::builder()
        .set("delivery", &format!("uid = {uid}"))
        .set("delivery", &format!("gid = {gid}"))
        .set(
            "delivery",
            &format!("local_mailbox_base = \"{}\"", local.display()),
        )
        .set(
            "delivery",
            &format!("mailbox_command = [\"{}\", \"${{user}}\"]", sh.display()),
        )
        .start();
    // carl's home exists (HOME and the working directory); dora's not.
    let carl_home = local.join("carl");
    std::fs::create_dir_all(&carl_home).unwrap();
    std::os::unix::fs::chown(&carl_home, Some(uid), Some(gid)).unwrap();

    let msg = mail(
        "carl+news@localhost",
        "to a local user",
        "",
        "From a command's view",
    );
    let before = now_secs();
    let id = send(&srv, "sender@client.test", &["carl+news@localhost"], &msg);
    let after = now_secs();
    let line = wait_status(&srv, &id, "carl@localhost", "sent");
    assert!(line.contains("relay=mailbox_command,"), "{line}");
    let got = String::from_utf8(wait_file(&srv, &out.join("carl/msg"))).unwrap();
    let rest = strip_local_head(&got, "carl+news@localhost", "carl@localhost", before, after);
    let rest = strip_received(rest, &id, "carl+news@localhost");
    assert_eq!(rest, stored(&msg).replace("\nFrom a", "\n>From a"));
    assert_eq!(
        std::fs::read_to_string(out.join("carl/uid"))
            .unwrap()
            .trim(),
        uid.to_string(),
        "runs as [delivery] uid"
    );
    assert_eq!(
        std::fs::read_to_string(out.join("carl/cwd"))
            .unwrap()
            .trim(),
        carl_home.display().to_string()
    );
    let mut env: Vec<String> = std::fs::read_to_string(out.join("carl/env"))
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("PWD="))
        .map(String::from)
        .collect();
    env.sort();
    // local(8)'s variables: LOCAL and RECIPIENT with the extension, USER
    // (none here: the uid has no password entry).
    let mut want: Vec<String> = vec![
        "DOMAIN=localhost".into(),
        "EXTENSION=news".into(),
        format!("HOME={}", carl_home.display()),
        "LOCAL=carl+news".into(),
        "ORIGINAL_RECIPIENT=carl+news@localhost".into(),
        "PATH=/usr/bin:/bin".into(),
        "RECIPIENT=carl+news@localhost".into(),
        "SENDER=sender@client.test".into(),
        "SHELL=/bin/sh".into(),
        "TZ=UTC".into(),
    ];
    want.sort();
    assert_eq!(env, want, "the command's whole environment");
}

#[test]
fn local_mailbox_command_procmail_delivers_into_a_maildir() {
    if !root_or_skip("local_mailbox_command_procmail_delivers_into_a_maildir") {
        return;
    }
    require("procmail");
    let t = TestDir::new("local-procmail");
    let local = t.path().join("local");
    // procmail takes HOME from the password entry, not from us: the
    // rcfile is named with -m, the user passed as an assignment.
    let rc = t.path().join("procmailrc");
    std::fs::write(
        &rc,
        format!(
            "MAILDIR={}/$LOCALUSER/\nDEFAULT=Maildir/\n",
            local.display()
        ),
    )
    .unwrap();
    let srv = Server::builder()
        .set("delivery", "uid = 5000")
        .set("delivery", "gid = 5000")
        .set("delivery", &format!("local_mailbox_base = \"{}\"", local.display()))
        .set(
            "delivery",
            &format!("mailbox_command = [\"/usr/bin/procmail\", \"-m\", \"LOCALUSER=${{user}}\", \"{}\"]", rc.display()),
        )
        .start();
    // The user's directory, writable by the delivery uid (procmail makes
    // the Maildir, not its parents).
    std::fs::create_dir_all(local.join("carl")).unwrap();
    std::os::unix::fs::chown(local.join("carl"), Some(VMAIL.0), Some(VMAIL.1)).unwrap();
    let msg = mail("carl@localhost", "via procmail", "", "From procmail's view");
    let id = send(&srv, "sender@client.test", &["carl@localhost"], &msg);
    let line = wait_status(&srv, &id, "carl@localhost", "sent");
    assert!(line.contains("relay=mailbox_command,"), "{line}");
    let files = maildir_files(&local.join("carl/Maildir"));
    assert_eq!(files.len(), 1, "{}", srv.log());
    let text = std::fs::read_to_string(&files[0]).unwrap();
    // procmail drops the From_ line for a Maildir and keeps the rest.
    let head = "Return-Path: <sender@client.test>\nX-Original-To: carl@localhost\nDelivered-To: carl@localhost\n";
    assert!(text.starts_with(head), "{text}");
    let rest = strip_received(&text[head.len()..], &id, "carl@localhost");
    assert_eq!(
        rest,
        stored(&msg).replace("\nFrom procmail", "\n>From procmail")
    );
    assert_eq!(owner(&files[0]).0, VMAIL.0);
}
