//! Header and body rules (issue 9, part 3), through the real binary with
//! a real SMTP client: the seed's `/^Received:/ IGNORE` on every road (the
//! one-write Maildir path, the queue, and mail relayed to another MTA — an
//! aiosmtpd sink — which must see no `Received:` at all, ours included),
//! while loops are still caught; REJECT at the end of DATA, DISCARD, HOLD
//! (and release), REPLACE/PREPEND, body_checks, mime_header_checks on an
//! attachment's part headers, rules from a file and inline together; and
//! the bad input: a table with a syntax error at line 12 and a rule the
//! engine cannot express exactly are config errors naming file and line.

mod common;
#[path = "common/hooks.rs"]
mod hooks;
#[path = "common/smtp_peers.rs"]
mod smtp_peers;

use std::path::Path;

use common::*;
use hooks::*;

fn seed_rule() -> ServerBuilder {
    Server::builder().set("content", "header_rules = \"/^Received:/ IGNORE\"")
}

fn alice(srv: &Server) -> std::path::PathBuf {
    srv.mailbox("example.test/alice/")
}

#[test]
fn the_seeds_rule_leaves_no_received_header_in_a_maildir_on_either_road() {
    for direct in ["true", "false"] {
        let srv = seed_rule()
            .set("delivery", &format!("direct = {direct}"))
            .start();
        let body = mail(
            "alice@example.test",
            "trace",
            "Received: from outside.test by mx.outside.test; Tue, 1 Dec 2026 10:00:00 +0000\r\nReceived: from inner.test\r\n\tby outside.test; Tue, 1 Dec 2026 09:59:00 +0000\r\n",
            "body line\r\nReceived: in the body is kept",
        );
        let id = send(&srv, "sender@client.test", &["alice@example.test"], &body);
        let got = String::from_utf8(only_message(&srv, &alice(&srv))).unwrap();
        let head = got.split("\n\n").next().unwrap();
        assert!(
            !head.to_ascii_lowercase().contains("received:"),
            "direct={direct}: {got}"
        );
        assert!(got.starts_with("Return-Path: <sender@client.test>\nDelivered-To: alice@example.test\nFrom: sender@client.test\n"), "{got}");
        assert!(
            got.ends_with("\n\nbody line\nReceived: in the body is kept\n"),
            "{got}"
        );
        let road = if direct == "true" {
            "(delivered directly)"
        } else {
            "(queue active)"
        };
        assert!(accepted_line(&srv, &id).contains(road), "{}", srv.log());
    }
}

#[test]
fn relayed_mail_leaves_without_any_received_header() {
    let sink = smtp_peers::PySink::start(&[]);
    let srv = seed_rule()
        .set(
            "relay",
            &format!("default = \"[127.0.0.1]:{}\"", sink.addr.port()),
        )
        .set("relay", "tls = \"none\"")
        .start();
    let body = mail(
        "friend@remote.test",
        "out",
        "Received: from lan.test by router.test; Tue, 1 Dec 2026 10:00:00 +0000\r\n",
        "hi",
    );
    // Trusted (loopback) clients relay.
    let id = send(&srv, "alice@example.test", &["friend@remote.test"], &body);
    wait_status(&srv, &id, "friend@remote.test", "sent");
    let got = sink.received();
    assert_eq!(got.len(), 1);
    let text = String::from_utf8_lossy(&got[0].content).into_owned();
    let head = text.split("\r\n\r\n").next().unwrap();
    assert!(!head.to_ascii_lowercase().contains("received:"), "{text}");
    assert!(head.contains("Subject: out"), "{text}");
}

#[test]
fn loops_are_caught_although_the_received_headers_are_removed() {
    let srv = seed_rule().start();
    let trace: String = (0..60)
        .map(|i| {
            format!(
                "Received: from hop{i}.test by hop{}.test; Tue, 1 Dec 2026 10:00:00 +0000\r\n",
                i + 1
            )
        })
        .collect();
    let id = send(
        &srv,
        "sender@client.test",
        &["alice@example.test"],
        &mail("alice@example.test", "loop", &trace, "x"),
    );
    let line = wait_status(&srv, &id, "alice@example.test", "bounced");
    assert!(
        line.contains("dsn=5.4.6") && line.contains("hops"),
        "{line}"
    );
    assert!(maildir_files(&alice(&srv)).is_empty());
}

#[test]
fn reject_discard_hold_and_rewrites() {
    let dir = TestDir::new("rules-file");
    let file = dir.path().join("header_checks");
    std::fs::write(
        &file,
        "# the seed's rule and a few more\n\
         /^Received:/ IGNORE\n\
         /^Subject:.*buy now/ REJECT 5.7.1 no advertising, please\n\
         /^Subject:.*nobody/ DISCARD not for anyone\n\
         /^X-Review:/ HOLD held for review\n\
         /^X-Old-Header:/ REPLACE X-New-Header: replaced\n\
         /^Subject:.*tag me/ PREPEND X-Tagged: yes\n",
    )
    .unwrap();
    let srv = Server::builder()
        .set(
            "content",
            &format!("header_checks = \"{}\"", file.display()),
        )
        // Inline rules too: consulted after the file's.
        .set("content", "header_rules = \"/^X-Inline:/ IGNORE\"")
        .start();
    let box_ = alice(&srv);

    // REJECT: refused at the end of DATA with the rule's text; nothing kept.
    let mut c = srv.smtp();
    c.hello();
    let r = c.send_mail(
        "sender@client.test",
        &["alice@example.test"],
        &mail("alice@example.test", "buy now!", "", "x"),
    );
    assert_eq!(
        (r.code, r.first.contains("5.7.1 no advertising, please")),
        (550, true),
        "{r:?}"
    );
    assert!(
        srv.wait_log(
            &format!("reject: header Subject: buy now! ({}:3)", file.display()),
            WAIT
        ),
        "{}",
        srv.log()
    );

    // DISCARD: accepted, logged, delivered nowhere.
    let r = c.send_mail(
        "sender@client.test",
        &["alice@example.test"],
        &mail("alice@example.test", "for nobody", "", "x"),
    );
    assert_eq!(r.code, 250, "{r:?}");
    let id = queue_id_in(&r.first).unwrap();
    assert!(
        srv.wait_log(&format!("{id}: discard: header Subject: for nobody"), WAIT),
        "{}",
        srv.log()
    );

    // HOLD: in the hold queue until released, then delivered.
    let r = c.send_mail(
        "sender@client.test",
        &["alice@example.test"],
        &mail("alice@example.test", "held", "X-Review: please\r\n", "x"),
    );
    assert_eq!(r.code, 250, "{r:?}");
    let held = queue_id_in(&r.first).unwrap();
    assert!(
        accepted_line(&srv, &held).contains("(queue hold)"),
        "{}",
        srv.log()
    );
    assert!(srv.queue_dir().join("hold").join(&held).is_file());
    let (ok, list) = queue_list(&srv);
    assert!(ok && list.contains(&format!("{held}!")), "{list}");

    // REPLACE, PREPEND, inline IGNORE.
    let r = c.send_mail(
        "sender@client.test",
        &["alice@example.test"],
        &mail(
            "alice@example.test",
            "tag me",
            "X-Old-Header: 1\r\nX-Inline: gone\r\n",
            "body",
        ),
    );
    assert_eq!(r.code, 250, "{r:?}");
    let got = String::from_utf8(only_message(&srv, &box_)).unwrap();
    assert_eq!(
        got,
        "Return-Path: <sender@client.test>\nDelivered-To: alice@example.test\nFrom: sender@client.test\nTo: alice@example.test\nX-Tagged: yes\nSubject: tag me\nX-New-Header: replaced\n\nbody\n"
    );
    c.expect("QUIT", "221");

    // The held message: released, delivered.
    let (ok, out) = run(postern()
        .arg("queue")
        .arg("--config")
        .arg(&srv.config)
        .args(["release", &held]));
    assert!(ok, "{out}");
    wait_status(&srv, &held, "alice@example.test", "sent");
    assert_eq!(wait_maildir(&box_, 2, WAIT).len(), 2);
}

#[test]
fn body_checks_and_attachment_part_headers() {
    let dir = TestDir::new("rules-body");
    let body = dir.path().join("body_checks");
    std::fs::write(&body, "/^password: / REPLACE password: [removed]\n/^STOP-THIS-MESSAGE$/ REJECT 5.7.1 stopped by body rule\n").unwrap();
    let mime = dir.path().join("mime_header_checks");
    std::fs::write(&mime, "/^Content-(Type|Disposition):.*name=\"?[^\"]*\\.(exe|scr)\"?/ REJECT 5.7.1 no programs as attachments\n").unwrap();
    let srv = Server::builder()
        .set("content", &format!("body_checks = \"{}\"", body.display()))
        .set(
            "content",
            &format!("mime_header_checks = \"{}\"", mime.display()),
        )
        .start();
    let mut c = srv.smtp();
    c.hello();
    let r = c.send_mail(
        "sender@client.test",
        &["alice@example.test"],
        &mail(
            "alice@example.test",
            "creds",
            "",
            "user: me\r\npassword: hunter2\r\nbye",
        ),
    );
    assert_eq!(r.code, 250, "{r:?}");
    let got = String::from_utf8(only_message(&srv, &alice(&srv))).unwrap();
    assert!(
        got.ends_with("\n\nuser: me\npassword: [removed]\nbye\n"),
        "{got}"
    );

    let r = c.send_mail(
        "sender@client.test",
        &["alice@example.test"],
        &mail(
            "alice@example.test",
            "stop",
            "",
            "a\r\nSTOP-THIS-MESSAGE\r\nb",
        ),
    );
    assert_eq!(
        (r.code, r.first.contains("stopped by body rule")),
        (550, true),
        "{r:?}"
    );

    let attachment = "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n";
    let parts = "--b1\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n--b1\r\nContent-Type: application/octet-stream; name=\"setup.exe\"\r\nContent-Transfer-Encoding: base64\r\n\r\nTVqQAAMAAAAEAAAA\r\n--b1--";
    let r = c.send_mail(
        "sender@client.test",
        &["alice@example.test"],
        &mail("alice@example.test", "program", attachment, parts),
    );
    assert_eq!(
        (r.code, r.first.contains("no programs as attachments")),
        (550, true),
        "{r:?}"
    );
    // The same name in the message's own headers is no part header.
    let r = c.send_mail(
        "sender@client.test",
        &["alice@example.test"],
        &mail(
            "alice@example.test",
            "plain",
            "X-Note: name=\"setup.exe\"\r\n",
            "x",
        ),
    );
    assert_eq!(r.code, 250, "{r:?}");
    c.expect("QUIT", "221");
    assert_eq!(wait_maildir(&alice(&srv), 2, WAIT).len(), 2);
}

fn check_config(dir: &Path, config: &str) -> (Option<i32>, String) {
    std::fs::write(dir.join("postern.toml"), config).unwrap();
    let out = postern()
        .arg("check-config")
        .arg("postern.toml")
        .current_dir(dir)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_bad_table_is_a_config_error_with_its_file_and_line() {
    let dir = TestDir::new("rules-bad");
    let mut table: String = (1..=11).map(|i| format!("/^X-Ok-{i}:/ IGNORE\n")).collect();
    table.push_str("/^Subject:.*(unclosed/ REJECT\n");
    table.push_str("/^X-Twice:(.*)\\1/ REJECT back-reference\n");
    table.push_str("/^X-Fine:/ FROBNICATE\n");
    std::fs::write(dir.path().join("header_checks"), &table).unwrap();
    let table_path = dir.path().join("header_checks");
    let base = format!("data_dir = \"data\"\n[[listener]]\naddress = \"127.0.0.1:0\"\n[content]\nheader_checks = \"{}\"\n", table_path.display());
    let (code, err) = check_config(dir.path(), &base);
    assert_eq!(code, Some(78), "{err}");
    for line in [12, 13, 14] {
        assert!(
            err.contains(&format!("header_checks:{line}: ")),
            "no line {line}:\n{err}"
        );
    }
    assert!(
        err.contains("back-reference") || err.contains("\\1"),
        "{err}"
    );
    assert!(err.contains("unknown action"), "{err}");
    // Inline rules: lines of the config file.
    let inline = format!(
        "{}header_rules = \"\"\"\n/^A:/ IGNORE\n/^B:(/ IGNORE\n\"\"\"\n",
        base.replace(
            &format!("header_checks = \"{}\"\n", table_path.display()),
            ""
        )
    );
    let (code, err) = check_config(dir.path(), &inline);
    assert_eq!(code, Some(78), "{err}");
    assert!(err.contains("postern.toml:7: "), "{err}");
    // serve refuses to start with it too.
    let out = postern()
        .args(["serve", "--config", "postern.toml"])
        .current_dir(dir.path())
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("postern.toml:7: "));
}
