//! Issue 2, "Receive mail over SMTP": the protocol features driven by real
//! clients over TCP against the real binary: Python's smtplib, swaks and
//! curl, plus a raw client where a real one cannot send what is needed
//! (smuggling, stalls, limits). Delivered Maildir files and log lines are
//! checked, not only replies.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;

const WAIT: Duration = Duration::from_secs(15);

/// Runs a Python script with arguments; fails the test (with its output)
/// unless it exits 0. Returns stdout + stderr.
fn python(script: &str, args: &[&str]) -> String {
    let (ok, out) = run(common::python().arg("-c").arg(script).args(args));
    assert!(ok, "python script failed:\n{out}");
    out
}

/// The value after `KEY ` on a line the script printed.
fn printed<'a>(out: &'a str, key: &str) -> &'a str {
    out.lines()
        .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("script printed no {key}:\n{out}"))
}

fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn read_str(p: &Path) -> String {
    String::from_utf8_lossy(&read(p)).into_owned()
}

/// The one message in a Maildir, waiting for it; fails on more.
fn only_message(maildir: &Path) -> PathBuf {
    let files = wait_maildir(maildir, 1, WAIT);
    assert_eq!(
        files.len(),
        1,
        "{}: expected one message, got {files:?}",
        maildir.display()
    );
    files[0].clone()
}

/// The queue ID out of `250 2.0.0 Ok: queued as ID`.
fn queue_id(text: &str) -> String {
    queue_id_in(text).expect("queue id")
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        if let Ok(rd) = std::fs::read_dir(&d) {
            for e in rd.flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    out.push(p);
                }
            }
        }
    }
    out
}

// --- full sends with real clients --------------------------------------------

const SMTPLIB_SEND: &str = r#"
import smtplib, sys
port = int(sys.argv[1])
s = smtplib.SMTP('127.0.0.1', port, local_hostname='client.test', timeout=30)
code, msg = s.ehlo()
assert code == 250, (code, msg)
f = s.esmtp_features
print('FEATURES', ' '.join(sorted(f)))
# A listener offers STARTTLS by default; AUTH only inside TLS.
for k in ['pipelining', '8bitmime', 'enhancedstatuscodes', 'smtputf8', 'size', 'starttls']:
    assert k in f, ('missing extension', k, f)
assert f['size'] == '10485760', f
for k in ['vrfy', 'expn', 'auth', 'dsn', 'chunking']:
    assert k not in f, ('unexpected extension', k, f)
code, msg = s.mail('sender@client.test')
assert code == 250 and msg.startswith(b'2.1.0'), (code, msg)
for r in ['alice@example.test', 'bob@example.test']:
    code, msg = s.rcpt(r)
    assert code == 250 and msg.startswith(b'2.1.5'), (code, msg)
code, msg = s.data(b'From: sender@client.test\r\nTo: alice@example.test\r\nSubject: smtplib\r\n\r\nHello from smtplib.\r\n')
assert code == 250 and msg.startswith(b'2.0.0 Ok: queued as '), (code, msg)
print('QUEUED', msg.decode().rsplit(' ', 1)[1])
code, msg = s.quit()
assert code == 221, (code, msg)
"#;

#[test]
fn smtplib_full_send_with_esmtp_features() {
    let srv = Server::start();
    let out = python(SMTPLIB_SEND, &[&srv.port.to_string()]);
    let qid = printed(&out, "QUEUED").to_string();
    for user in ["alice", "bob"] {
        let f = only_message(&srv.mailbox(&format!("example.test/{user}/")));
        let text = read_str(&f);
        assert!(text.contains("Hello from smtplib."), "{text}");
        assert!(
            text.starts_with("Return-Path: <sender@client.test>\n"),
            "{text}"
        );
        assert!(
            text.contains(&format!("Delivered-To: {user}@example.test\n")),
            "{text}"
        );
        assert!(
            text.contains(&format!("with ESMTP id {qid}")),
            "Received: names the queue ID {qid}:\n{text}"
        );
    }
    assert!(
        srv.wait_log(&format!("{qid}: removed"), WAIT),
        "{}",
        srv.log()
    );
}

#[test]
fn swaks_pipelines_a_whole_transaction() {
    require("swaks");
    let srv = Server::start();
    let port = srv.port.to_string();
    let (ok, out) = run(peer("swaks").args([
        "--server",
        "127.0.0.1",
        "--port",
        &port,
        "--helo",
        "client.test",
        "--from",
        "sender@client.test",
        "--to",
        "alice@example.test,bob@example.test",
        "--pipeline",
        "--header",
        "Subject: swaks pipeline",
        "--body",
        "Hello from swaks.",
    ]));
    assert!(ok, "swaks failed:\n{out}");
    // swaks really pipelined: MAIL, both RCPTs and DATA went out before the
    // first reply came back.
    let sent_data = out.find(" -> DATA").expect("DATA sent");
    let first_250 = out.find("<-  250 2.1.0").expect("MAIL answered");
    assert!(sent_data < first_250, "swaks did not pipeline:\n{out}");
    assert!(out.contains("<-  250 2.0.0 Ok: queued as "), "{out}");
    for user in ["alice", "bob"] {
        let text = read_str(&only_message(
            &srv.mailbox(&format!("example.test/{user}/")),
        ));
        assert!(text.contains("Hello from swaks."), "{text}");
    }
}

#[test]
fn curl_upload_with_leading_dots_delivered_unchanged() {
    require("curl");
    let srv = Server::start();
    let dir = TestDir::new("curl-dots");
    let msg = "From: sender@client.test\r\nTo: alice@example.test\r\nSubject: dots\r\n\r\n.\r\n..\r\n.leading\r\n. space\r\nend\r\n";
    let file = dir.path().join("msg.txt");
    std::fs::write(&file, msg).unwrap();
    let url = format!("smtp://127.0.0.1:{}/client.test", srv.port);
    let (ok, out) = run(peer("curl")
        .args([
            "-sS",
            &url,
            "--mail-from",
            "sender@client.test",
            "--mail-rcpt",
            "alice@example.test",
            "--upload-file",
        ])
        .arg(&file));
    assert!(ok, "curl failed: {out}");
    let text = read_str(&only_message(&srv.mailbox("example.test/alice/")));
    // curl stuffs the dots, postern unstuffs them: the text arrives as sent.
    let body = msg.replace("\r\n", "\n");
    assert!(
        text.ends_with(&body),
        "delivered text differs from what curl uploaded:\n{text:?}\nwant tail:\n{body:?}"
    );
}

#[test]
fn raw_dot_stuffed_lines_are_unstuffed_in_maildir() {
    let srv = Server::start();
    let mut c = srv.smtp();
    c.hello();
    let r = c.send_mail(
        "sender@client.test",
        &["alice@example.test"],
        "Subject: stuffed\r\n\r\n..\r\n...\r\n..leading dot\r\n.x\r\nplain\r\n.. two",
    );
    assert!(r.first.starts_with("250 2.0.0"), "{r:?}");
    let text = read_str(&only_message(&srv.mailbox("example.test/alice/")));
    assert!(
        text.ends_with("Subject: stuffed\n\n.\n..\n.leading dot\nx\nplain\n. two\n"),
        "RFC 5321 4.5.2 unstuffing: one leading dot removed per line:\n{text:?}"
    );
}

// --- SIZE ----------------------------------------------------------------------

#[test]
fn size_refused_at_mail_with_smtplib() {
    let srv = Server::start();
    let out = python(
        r#"
import smtplib, sys
s = smtplib.SMTP('127.0.0.1', int(sys.argv[1]), local_hostname='client.test', timeout=30)
s.ehlo()
code, msg = s.mail('sender@client.test', ['SIZE=20000000'])
print('BIG', code, msg.decode())
assert code == 552 and msg.startswith(b'5.3.4'), (code, msg)
code, msg = s.mail('sender@client.test', ['SIZE=10485761'])
assert code == 552, (code, msg)
code, msg = s.mail('sender@client.test', ['SIZE=5000'])
assert code == 250, (code, msg)
s.rcpt('alice@example.test')
code, msg = s.data(b'Subject: declared\r\n\r\nsmall\r\n')
assert code == 250, (code, msg)
s.quit()
"#,
        &[&srv.port.to_string()],
    );
    assert!(out.contains("BIG 552 5.3.4"), "{out}");
    only_message(&srv.mailbox("example.test/alice/"));
}

#[test]
fn size_enforced_during_data() {
    let srv = Server::builder()
        .set("smtp", "message_size_limit = 2000")
        .start();
    let out = python(
        r#"
import smtplib, sys
s = smtplib.SMTP('127.0.0.1', int(sys.argv[1]), local_hostname='client.test', timeout=30)
s.ehlo()
assert s.esmtp_features['size'] == '2000', s.esmtp_features
big = b'Subject: big\r\n\r\n' + (b'x' * 70 + b'\r\n') * 60
# sendmail declares SIZE= itself: refused at MAIL.
try:
    s.sendmail('sender@client.test', ['alice@example.test'], big)
    raise SystemExit('accepted a message over the limit')
except smtplib.SMTPSenderRefused as e:
    print('AT_MAIL', e.smtp_code, e.smtp_error.decode())
s.rset()
# Without SIZE=, the limit is enforced while the data comes in.
code, msg = s.mail('sender@client.test')
assert code == 250
code, msg = s.rcpt('alice@example.test')
assert code == 250
code, msg = s.data(big)
print('IN_DATA', code, msg.decode())
# The session is still usable.
r = s.sendmail('sender@client.test', ['alice@example.test'], b'Subject: small\r\n\r\nfits\r\n')
assert r == {}, r
s.quit()
"#,
        &[&srv.port.to_string()],
    );
    assert!(out.contains("AT_MAIL 552 5.3.4"), "{out}");
    assert!(out.contains("IN_DATA 552 5.3.4"), "{out}");
    let text = read_str(&only_message(&srv.mailbox("example.test/alice/")));
    assert!(
        text.contains("Subject: small"),
        "only the small message is delivered: {text}"
    );
    assert_eq!(srv.log().matches(", nrcpt=").count(), 1, "{}", srv.log());
}

// --- text lines ----------------------------------------------------------------

const LONG_LINE: &str = r#"
import smtplib, sys
s = smtplib.SMTP('127.0.0.1', int(sys.argv[1]), local_hostname='client.test', timeout=30)
s.ehlo()
n = int(sys.argv[2])
s.mail('sender@client.test')
s.rcpt('alice@example.test')
code, msg = s.data(b'Subject: long line\r\n\r\n' + b'L' * n + b'\r\nafter\r\n')
print('LONG', code, msg.decode())
r = s.sendmail('sender@client.test', ['alice@example.test'], b'Subject: short\r\n\r\nshort\r\n')
assert r == {}, r
s.quit()
"#;

#[test]
fn text_line_over_limit_refuses_the_message() {
    let srv = Server::start();
    // 999 + CRLF = 1001 octets, over the default 1000.
    let out = python(LONG_LINE, &[&srv.port.to_string(), "999"]);
    assert!(out.contains("LONG 500 5.5.2"), "{out}");
    let text = read_str(&only_message(&srv.mailbox("example.test/alice/")));
    assert!(
        text.contains("Subject: short") && !text.contains("LLLL"),
        "{text}"
    );
}

#[test]
fn text_line_limit_is_configurable_and_never_truncates() {
    let srv = Server::builder()
        .set("smtp", "text_line_limit = 2000")
        .start();
    let out = python(LONG_LINE, &[&srv.port.to_string(), "1500"]);
    assert!(out.contains("LONG 250 2.0.0"), "{out}");
    let files = wait_maildir(&srv.mailbox("example.test/alice/"), 2, WAIT);
    assert_eq!(files.len(), 2);
    let all: String = files.iter().map(|f| read_str(f)).collect();
    assert!(
        all.contains(&format!("\n{}\nafter\n", "L".repeat(1500))),
        "line delivered whole"
    );
}

/// RFC 5321 4.5.3.1.6: the 1000-octet limit does "not count the leading
/// dot duplicated for transparency". smtplib stuffs a line of 998 octets
/// that starts with a dot into 999 + CRLF on the wire; it must be accepted.
#[test]
fn text_line_limit_does_not_count_the_stuffing_dot() {
    let srv = Server::start();
    let out = python(
        r#"
import smtplib, sys
s = smtplib.SMTP('127.0.0.1', int(sys.argv[1]), local_hostname='client.test', timeout=30)
s.ehlo()
s.mail('sender@client.test')
s.rcpt('alice@example.test')
code, msg = s.data(b'Subject: dot line\r\n\r\n.' + b'd' * 997 + b'\r\n')
print('DOTLINE', code, msg.decode())
s.quit()
"#,
        &[&srv.port.to_string()],
    );
    assert!(
        out.contains("DOTLINE 250 2.0.0"),
        "a 1000-octet line starting with a dot was refused:\n{out}"
    );
    let text = read_str(&only_message(&srv.mailbox("example.test/alice/")));
    assert!(
        text.contains(&format!("\n.{}\n", "d".repeat(997))),
        "{text}"
    );
}

// --- recipients ------------------------------------------------------------------

#[test]
fn recipient_limit_configured_452_4_5_3() {
    let srv = Server::builder().set("smtp", "recipient_limit = 3").start();
    let out = python(
        r#"
import smtplib, sys
s = smtplib.SMTP('127.0.0.1', int(sys.argv[1]), local_hostname='client.test', timeout=30)
s.ehlo()
s.mail('sender@client.test')
for r in ['alice', 'bob', 'carol', 'dave']:
    code, msg = s.rcpt(r + '@example.test')
    print('RCPT', r, code, msg.decode())
code, msg = s.data(b'Subject: three\r\n\r\nto three\r\n')
assert code == 250, (code, msg)
s.quit()
"#,
        &[&srv.port.to_string()],
    );
    for r in ["alice", "bob", "carol"] {
        assert!(out.contains(&format!("RCPT {r} 250 2.1.5")), "{out}");
    }
    assert!(out.contains("RCPT dave 452 4.5.3"), "{out}");
    for r in ["alice", "bob", "carol"] {
        only_message(&srv.mailbox(&format!("example.test/{r}/")));
    }
    assert!(srv.wait_log("nrcpt=3", WAIT), "{}", srv.log());
    assert!(maildir_files(&srv.mailbox("example.test/dave/")).is_empty());
}

#[test]
fn recipient_limit_default_is_100() {
    let srv = Server::start();
    let mut c = srv.smtp();
    c.hello();
    c.expect("MAIL FROM:<sender@client.test>", "250 2.1.0");
    // 127.0.0.1 is trusted by default, so remote recipients are accepted.
    let mut burst = String::new();
    for i in 1..=101 {
        burst.push_str(&format!("RCPT TO:<user{i}@remote.test>\r\n"));
    }
    c.send(burst.as_bytes());
    for i in 1..=100 {
        let r = c.reply();
        assert!(r.first.starts_with("250 2.1.5"), "RCPT {i}: {r:?}");
    }
    let r = c.reply();
    assert!(r.first.starts_with("452 4.5.3"), "RCPT 101: {r:?}");
    c.expect("RSET", "250");
    c.expect("QUIT", "221");
}

// --- error limits ----------------------------------------------------------------

#[test]
fn hard_error_limit_disconnects_with_421() {
    let srv = Server::builder()
        .set("smtp", "hard_error_limit = 3")
        .start();
    let mut c = srv.smtp();
    c.hello();
    for i in 1..=3 {
        let r = c.cmd(&format!("BOGUS {i}"));
        assert!(r.first.starts_with("500 5.5.2"), "{r:?}");
    }
    let r = c.cmd("NOOP");
    assert!(r.first.starts_with("421 4.7.0"), "after 3 errors: {r:?}");
    assert!(c.is_closed(), "connection closed after 421");
    // The server itself goes on.
    let mut c = srv.smtp();
    c.hello();
    c.expect("NOOP", "250");
    assert!(srv.wait_log("disconnect from unknown[127.0.0.1]", WAIT));
}

#[test]
fn soft_error_limit_delays_but_still_answers() {
    // `set` replaces the harness's error_delay = "0s".
    let srv = Server::builder()
        .set("smtp", "soft_error_limit = 1")
        .set("smtp", "hard_error_limit = 4")
        .set("smtp", "error_delay = \"300ms\"")
        .start();
    assert!(
        std::fs::read_to_string(&srv.config)
            .unwrap()
            .contains("error_delay = \"300ms\""),
        "the tarpit is on"
    );
    let out = python(
        r#"
import smtplib, sys
s = smtplib.SMTP('127.0.0.1', int(sys.argv[1]), local_hostname='client.test', timeout=30)
s.ehlo()
for i in range(4):
    code, msg = s.docmd('BOGUS')
    print('ERR', i, code, msg.decode())
    assert code == 500, (code, msg)
code, msg = s.docmd('NOOP')
print('LAST', code, msg.decode())
try:
    code, msg = s.docmd('NOOP')
    print('AFTER', code)
except smtplib.SMTPServerDisconnected:
    print('AFTER disconnected')
"#,
        &[&srv.port.to_string()],
    );
    assert!(out.contains("LAST 421 4.7.0"), "{out}");
    assert!(out.contains("AFTER disconnected"), "{out}");
}

// --- timeouts --------------------------------------------------------------------

#[test]
fn idle_client_gets_421_4_4_2_and_is_closed() {
    let srv = Server::builder()
        .set("smtp", "command_timeout = \"1s\"")
        .start();
    let mut c = srv.smtp();
    c.hello();
    // Say nothing: the server gives up.
    let r = c.reply();
    assert!(r.first.starts_with("421 4.4.2"), "{r:?}");
    assert!(c.is_closed());
    assert!(
        srv.wait_log("timeout after command from unknown[127.0.0.1]", WAIT),
        "{}",
        srv.log()
    );
}

#[test]
fn stalled_data_gets_421_4_4_2_and_nothing_is_queued() {
    let srv = Server::builder()
        .set("smtp", "command_timeout = \"60s\"")
        .set("smtp", "data_timeout = \"1s\"")
        .start();
    let mut c = srv.smtp();
    c.hello();
    c.expect("MAIL FROM:<sender@client.test>", "250");
    c.expect("RCPT TO:<alice@example.test>", "250");
    c.expect("DATA", "354");
    c.send(b"Subject: stalled\r\n\r\nhalf a messa");
    let r = c.reply();
    assert!(r.first.starts_with("421 4.4.2"), "{r:?}");
    assert!(c.is_closed());
    assert!(
        srv.wait_log("timeout after DATA from unknown[127.0.0.1]", WAIT),
        "{}",
        srv.log()
    );
    // The half-received message is gone, never queued or delivered.
    assert!(srv.wait_log("disconnect from", WAIT));
    let q: Vec<_> = files_under(&srv.queue_dir())
        .into_iter()
        .filter(|p| !p.ends_with("lock"))
        .collect();
    assert!(q.is_empty(), "queue holds {q:?}");
    assert!(!srv.log().contains(", nrcpt="), "{}", srv.log());
}

// --- connection limits -------------------------------------------------------------

fn greeting(c: &mut Smtp) -> Reply {
    c.try_reply().expect("a reply on connect")
}

#[test]
fn max_connections_421_then_serves_again() {
    let srv = Server::builder().set("smtp", "max_connections = 2").start();
    let mut a = srv.smtp();
    let mut b = srv.smtp();
    assert_eq!(greeting(&mut a).code, 220);
    assert_eq!(greeting(&mut b).code, 220);
    let mut c = srv.smtp();
    let r = greeting(&mut c);
    assert!(r.first.starts_with("421 4.7.0"), "{r:?}");
    assert!(c.is_closed());
    assert!(
        srv.wait_log("too many connections: refused unknown[127.0.0.1]", WAIT),
        "{}",
        srv.log()
    );
    // The two served sessions still work.
    a.expect("EHLO client.test", "250");
    a.expect("QUIT", "221");
    assert!(a.is_closed());
    // Once a slot is free, a new client is served and can send.
    let deadline = Instant::now() + WAIT;
    let mut d = loop {
        let mut d = srv.smtp();
        if greeting(&mut d).code == 220 {
            break d;
        }
        assert!(Instant::now() < deadline, "no slot freed");
        std::thread::sleep(Duration::from_millis(50));
    };
    d.expect("EHLO client.test", "250");
    let r = d.send_mail(
        "sender@client.test",
        &["alice@example.test"],
        &message("after limit", "x"),
    );
    assert!(r.first.starts_with("250 2.0.0"), "{r:?}");
    b.expect("QUIT", "221");
    only_message(&srv.mailbox("example.test/alice/"));
}

#[test]
fn max_connections_per_client_421_other_clients_served() {
    let srv = Server::builder()
        .set("smtp", "max_connections = 10")
        .set("smtp", "max_connections_per_client = 2")
        .start();
    let mut a = srv.smtp();
    let mut b = srv.smtp();
    assert_eq!(greeting(&mut a).code, 220);
    assert_eq!(greeting(&mut b).code, 220);
    let mut c = srv.smtp();
    let r = greeting(&mut c);
    assert!(r.first.starts_with("421 4.7.0"), "{r:?}");
    assert!(r.text.contains("your address"), "{r:?}");
    assert!(c.is_closed());
    assert!(srv.wait_log(
        "too many connections from this client: refused unknown[127.0.0.1]",
        WAIT
    ));
    // Another address is not affected.
    let mut o = srv.smtp_untrusted();
    assert_eq!(greeting(&mut o).code, 220);
    o.expect("EHLO other.test", "250");
    let r = o.send_mail(
        "sender@other.test",
        &["bob@example.test"],
        &message("other client", "x"),
    );
    assert!(r.first.starts_with("250 2.0.0"), "{r:?}");
    o.expect("QUIT", "221");
    // And 127.0.0.1 is served again once one of its sessions ends.
    a.expect("QUIT", "221");
    assert!(a.is_closed());
    let deadline = Instant::now() + WAIT;
    loop {
        let mut d = srv.smtp();
        if greeting(&mut d).code == 220 {
            d.expect("EHLO client.test", "250");
            break;
        }
        assert!(Instant::now() < deadline, "no slot freed");
        std::thread::sleep(Duration::from_millis(50));
    }
    b.expect("NOOP", "250");
    only_message(&srv.mailbox("example.test/bob/"));
}

// --- HELO, VRFY ----------------------------------------------------------------

#[test]
fn helo_required_by_default_and_configurable() {
    let srv = Server::start();
    let mut c = srv.smtp();
    assert_eq!(c.reply().code, 220);
    c.expect("MAIL FROM:<sender@client.test>", "503 5.5.1");
    c.expect("QUIT", "221");

    let srv = Server::builder()
        .set("smtp", "helo_required = false")
        .start();
    let mut c = srv.smtp();
    assert_eq!(c.reply().code, 220);
    let r = c.send_mail(
        "sender@client.test",
        &["alice@example.test"],
        &message("no helo", "body"),
    );
    assert!(r.first.starts_with("250 2.0.0"), "{r:?}");
    c.expect("QUIT", "221");
    let text = read_str(&only_message(&srv.mailbox("example.test/alice/")));
    assert!(text.contains("Subject: no helo"), "{text}");
    assert!(
        text.contains(
            "Received: from unknown (unknown [127.0.0.1])\n\tby mx.example.test with SMTP id "
        ),
        "no HELO: the Received: header says unknown and SMTP:\n{text}"
    );
}

#[test]
fn vrfy_enabled_answers_from_the_directory() {
    let srv = Server::builder().set("smtp", "vrfy = true").start();
    let out = python(
        r#"
import smtplib, sys
s = smtplib.SMTP('127.0.0.1', int(sys.argv[1]), local_hostname='client.test', timeout=30)
s.ehlo()
assert 'vrfy' in s.esmtp_features, s.esmtp_features
for a in ['alice@example.test', 'nosuch@example.test']:
    code, msg = s.verify(a)
    print('VRFY', a, code, msg.decode())
s.quit()
"#,
        &[&srv.port.to_string()],
    );
    assert!(
        out.contains("VRFY alice@example.test 250 2.1.5 <alice@example.test>"),
        "{out}"
    );
    assert!(out.contains("VRFY nosuch@example.test 550 5.1.1"), "{out}");
}

#[test]
fn vrfy_disabled_by_default_discloses_nothing() {
    let srv = Server::start();
    let out = python(
        r#"
import smtplib, sys
s = smtplib.SMTP('127.0.0.1', int(sys.argv[1]), local_hostname='client.test', timeout=30)
s.ehlo()
assert 'vrfy' not in s.esmtp_features, s.esmtp_features
for a in ['alice@example.test', 'nosuch@example.test']:
    code, msg = s.verify(a)
    print('VRFY', a, code, msg.decode())
s.quit()
"#,
        &[&srv.port.to_string()],
    );
    let answers: Vec<&str> = out
        .lines()
        .filter_map(|l| l.split_once(".test ").map(|x| x.1))
        .collect();
    assert_eq!(answers.len(), 2, "{out}");
    assert!(answers[0].starts_with("252 2.5.2"), "{out}");
    assert_eq!(
        answers[0], answers[1],
        "same answer for an existing and a missing user"
    );
}

// --- SMTPUTF8, 8BITMIME ---------------------------------------------------------

#[test]
fn smtputf8_with_smtplib_delivered_intact() {
    let srv = Server::start();
    let msg = "From: Jörg <jörg@bücher.test>\r\nTo: alice@example.test\r\nSubject: Grüße aus Köln ✓\r\n\r\nUnicode body: ½ € 日本語\r\n";
    let dir = TestDir::new("utf8");
    let file = dir.path().join("msg");
    std::fs::write(&file, msg).unwrap();
    let out = python(
        r#"
import smtplib, sys
s = smtplib.SMTP('127.0.0.1', int(sys.argv[1]), local_hostname='client.test', timeout=30)
s.ehlo()
assert 'smtputf8' in s.esmtp_features
msg = open(sys.argv[2], 'rb').read()
r = s.sendmail('jörg@bücher.test', ['alice@example.test'], msg, mail_options=['SMTPUTF8', 'BODY=8BITMIME'])
assert r == {}, r
s.quit()
print('SENT')
"#,
        &[&srv.port.to_string(), file.to_str().unwrap()],
    );
    assert!(out.contains("SENT"), "{out}");
    let text = String::from_utf8(read(&only_message(&srv.mailbox("example.test/alice/"))))
        .expect("UTF-8 kept");
    assert!(
        text.starts_with("Return-Path: <jörg@bücher.test>\n"),
        "{text}"
    );
    assert!(
        text.contains("with UTF8SMTP id "),
        "RFC 6531 protocol in Received:\n{text}"
    );
    assert!(text.ends_with(&msg.replace("\r\n", "\n")), "{text}");
    assert!(
        srv.wait_log("from=<jörg@bücher.test>", WAIT),
        "{}",
        srv.log()
    );
}

#[test]
fn eight_bit_body_delivered_byte_exact() {
    let srv = Server::start();
    // Every byte from 0x80 to 0xFF, Latin-1 and UTF-8 text, not valid UTF-8
    // as a whole.
    let mut msg = b"From: sender@client.test\r\nTo: alice@example.test\r\nSubject: 8bit\r\nContent-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: 8bit\r\n\r\n".to_vec();
    msg.extend_from_slice(b"caf\xe9 na\xefve \xa9 \xbd\r\n");
    for chunk in (0x80u8..=0xff).collect::<Vec<_>>().chunks(32) {
        msg.extend_from_slice(chunk);
        msg.extend_from_slice(b"\r\n");
    }
    msg.extend_from_slice("UTF-8 too: Grüße ✓\r\n".as_bytes());
    msg.extend_from_slice(b"tab\there, trailing space \r\nlast line\r\n");
    let dir = TestDir::new("8bit");
    let file = dir.path().join("msg");
    std::fs::write(&file, &msg).unwrap();
    python(
        r#"
import smtplib, sys
s = smtplib.SMTP('127.0.0.1', int(sys.argv[1]), local_hostname='client.test', timeout=30)
s.ehlo()
assert '8bitmime' in s.esmtp_features
msg = open(sys.argv[2], 'rb').read()
r = s.sendmail('sender@client.test', ['alice@example.test'], msg, mail_options=['BODY=8BITMIME'])
assert r == {}, r
s.quit()
"#,
        &[&srv.port.to_string(), file.to_str().unwrap()],
    );
    let got = read(&only_message(&srv.mailbox("example.test/alice/")));
    // CRLF → LF is the Maildir form; nothing else may change.
    let mut want = Vec::new();
    let mut i = 0;
    while i < msg.len() {
        if msg[i] == b'\r' && msg.get(i + 1) == Some(&b'\n') {
            want.push(b'\n');
            i += 2;
        } else {
            want.push(msg[i]);
            i += 1;
        }
    }
    assert!(
        got.ends_with(&want),
        "8-bit message not delivered byte for byte:\n{}",
        String::from_utf8_lossy(&got)
    );
    // Only the three trace headers come before it.
    let prefix = String::from_utf8_lossy(&got[..got.len() - want.len()]).into_owned();
    assert!(
        prefix.starts_with("Return-Path: ")
            && prefix.contains("Delivered-To: ")
            && prefix.contains("Received: "),
        "{prefix}"
    );
}

// --- Received:, log lines ---------------------------------------------------------

#[test]
fn received_header_names_client_protocol_and_queue_id() {
    let srv = Server::start();
    let mut c = srv.smtp_untrusted();
    c.hello();
    let r = c.send_mail(
        "sender@client.test",
        &["alice@example.test"],
        &message("trace", "x"),
    );
    assert!(r.first.starts_with("250 2.0.0 Ok: queued as "), "{r:?}");
    let qid = queue_id(&r.first);
    c.expect("HELO old.client.test", "250");
    let r = c.send_mail(
        "sender@client.test",
        &["bob@example.test"],
        &message("trace helo", "x"),
    );
    let qid2 = queue_id(&r.first);
    c.expect("QUIT", "221");
    let text = read_str(&only_message(&srv.mailbox("example.test/alice/")));
    let want = format!(
        "Received: from client.test (unknown [127.0.0.2])\n\tby mx.example.test with ESMTP id {qid}\n\tfor <alice@example.test>; "
    );
    assert!(text.contains(&want), "want {want:?} in:\n{text}");
    let text = read_str(&only_message(&srv.mailbox("example.test/bob/")));
    assert!(
        text.contains(&format!(
            "from old.client.test (unknown [127.0.0.2])\n\tby mx.example.test with SMTP id {qid2}"
        )),
        "HELO gives protocol SMTP:\n{text}"
    );
}

#[test]
fn log_lines_connect_disconnect_reject_and_queue() {
    let srv = Server::start();
    let mut c = srv.smtp_untrusted();
    c.hello();
    c.expect("MAIL FROM:<sender@client.test>", "250");
    c.expect("RCPT TO:<someone@remote.test>", "554 5.7.1");
    c.expect("RCPT TO:<nosuch@example.test>", "550 5.1.1");
    c.expect("RCPT TO:<alice@example.test>", "250");
    c.expect("DATA", "354");
    c.send(
        message(
            "logged",
            "the body is never logged: SECRET-BODY-TEXT\r\n.\r\n",
        )
        .as_bytes(),
    );
    let r = c.reply();
    let qid = queue_id(&r.first);
    c.expect("QUIT", "221");
    assert!(
        srv.wait_log(&format!("{qid}: removed"), WAIT),
        "{}",
        srv.log()
    );
    assert!(srv.wait_log("disconnect from unknown[127.0.0.2]", WAIT));
    let log = srv.log();
    let has = |s: &str| assert!(log.contains(s), "log lacks {s:?}:\n{log}");
    has("connect from unknown[127.0.0.2]");
    has("NOQUEUE: reject: RCPT from unknown[127.0.0.2]: 554 5.7.1 <someone@remote.test>: Relay access denied; from=<sender@client.test> to=<someone@remote.test> proto=ESMTP helo=<client.test>");
    has("NOQUEUE: reject: RCPT from unknown[127.0.0.2]: 550 5.1.1 <nosuch@example.test>: Recipient address rejected: User unknown; from=<sender@client.test> to=<nosuch@example.test> proto=ESMTP helo=<client.test>");
    has(&format!("{qid}: client=unknown[127.0.0.2]"));
    has(&format!("{qid}: from=<sender@client.test>, size="));
    has(&format!("{qid}: to=<alice@example.test>, relay=maildir, "));
    has("disconnect from unknown[127.0.0.2] ehlo=1 mail=1 rcpt=1/3 data=1 quit=1 commands=5/7");
    assert!(
        !log.contains("SECRET-BODY-TEXT"),
        "a message body reached the log"
    );
}

// --- SMTP smuggling over TCP ------------------------------------------------------

/// Sends a message whose text holds `fake_end` followed by a complete
/// smuggled transaction (MAIL FROM ceo@, RCPT bob@, DATA, "smuggled"), then
/// the real end. With `split`, the fake end closes one write and the
/// smuggled part comes in later writes. Asserts: one 554 5.5.2 reply, the
/// session in step afterwards, and after a barrier message to bob is
/// delivered, nothing smuggled was queued or delivered.
fn smuggle(fake_end: &[u8], at_start: bool, split: bool) {
    let srv = Server::start();
    let mut c = srv.smtp_untrusted();
    c.hello();
    c.expect("MAIL FROM:<sender@client.test>", "250 2.1.0");
    c.expect("RCPT TO:<alice@example.test>", "250 2.1.5");
    c.expect("DATA", "354");
    let mut first = Vec::new();
    if !at_start {
        first.extend_from_slice(b"From: sender@client.test\r\nSubject: outer\r\n\r\nouter body");
    }
    first.extend_from_slice(fake_end);
    let smuggled: &[u8] = b"MAIL FROM:<ceo@example.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\nFrom: ceo@example.test\r\nSubject: smuggled\r\n\r\nSMUGGLED-TEXT\r\n.\r\n";
    if split {
        c.send(&first);
        std::thread::sleep(Duration::from_millis(100));
        let (a, b) = smuggled.split_at(40);
        c.send(a);
        std::thread::sleep(Duration::from_millis(100));
        c.send(b);
    } else {
        first.extend_from_slice(smuggled);
        c.send(&first);
    }
    let r = c.reply();
    assert!(
        r.first.starts_with("554 5.5.2"),
        "the message with a fake end is refused as a whole: {r:?}"
    );
    // In step: the smuggled MAIL/RCPT/DATA got no replies of their own.
    let r = c.cmd("NOOP");
    assert!(
        r.first.starts_with("250 2.0.0"),
        "out of step after the fake end: {r:?}"
    );
    // A transaction in progress would make this MAIL nested.
    let barrier = c.send_mail(
        "sender@client.test",
        &["bob@example.test"],
        &message("barrier", "BARRIER-TEXT"),
    );
    assert!(barrier.first.starts_with("250 2.0.0"), "{barrier:?}");
    let qid = queue_id(&barrier.first);
    c.expect("QUIT", "221");

    assert!(
        srv.wait_log(&format!("{qid}: removed"), WAIT),
        "{}",
        srv.log()
    );
    let bob = only_message(&srv.mailbox("example.test/bob/"));
    assert!(read_str(&bob).contains("BARRIER-TEXT"));
    assert!(
        maildir_files(&srv.mailbox("example.test/alice/")).is_empty(),
        "the refused outer message was delivered"
    );
    for f in files_under(&srv.data.join("mail"))
        .into_iter()
        .chain(files_under(&srv.queue_dir()))
    {
        let text = read_str(&f);
        assert!(
            !text.contains("SMUGGLED-TEXT"),
            "smuggled text stored in {}:\n{text}",
            f.display()
        );
    }
    let log = srv.log();
    assert_eq!(
        log.matches(", nrcpt=").count(),
        1,
        "only the barrier was queued:\n{log}"
    );
    assert!(!log.contains("from=<ceo@example.test>"), "{log}");
    assert!(
        log.contains("reject: DATA from unknown[127.0.0.2]: 554 5.5.2"),
        "{log}"
    );
}

#[test]
fn smuggling_bare_lf_dot_bare_lf() {
    smuggle(b"\n.\n", false, false);
}

#[test]
fn smuggling_bare_lf_dot_crlf() {
    smuggle(b"\n.\r\n", false, false);
}

#[test]
fn smuggling_crlf_dot_bare_lf() {
    smuggle(b"\r\n.\n", false, false);
}

#[test]
fn smuggling_bare_cr_dot_bare_cr() {
    smuggle(b"\r.\r", false, false);
}

#[test]
fn smuggling_bare_cr_dot_crlf() {
    smuggle(b"\r.\r\n", false, false);
}

#[test]
fn smuggling_crlf_dot_bare_cr() {
    smuggle(b"\r\n.\r", false, false);
}

#[test]
fn smuggling_bare_lf_dot_bare_cr() {
    smuggle(b"\n.\r", false, false);
}

#[test]
fn smuggling_bare_cr_dot_bare_lf() {
    smuggle(b"\r.\n", false, false);
}

#[test]
fn smuggling_crlf_dot_cr_crlf() {
    smuggle(b"\r\n.\r\r\n", false, false);
}

#[test]
fn smuggling_crlf_dot_lf_crlf() {
    smuggle(b"\r\n.\n\r\n", false, false);
}

#[test]
fn smuggling_cr_crlf_dot_cr_crlf() {
    smuggle(b"\r\r\n.\r\r\n", false, false);
}

#[test]
fn smuggling_crlf_bare_lf_dot_crlf() {
    smuggle(b"\r\n\n.\r\n", false, false);
}

#[test]
fn smuggling_dot_bare_lf_at_data_start() {
    smuggle(b".\n", true, false);
}

#[test]
fn smuggling_dot_bare_cr_at_data_start() {
    smuggle(b".\r", true, false);
}

#[test]
fn smuggling_bare_lf_dot_bare_lf_split_across_packets() {
    smuggle(b"\n.\n", false, true);
}

#[test]
fn smuggling_bare_cr_dot_bare_cr_split_across_packets() {
    smuggle(b"\r.\r", false, true);
}

/// The real end preceded by a bare LF is an end: the message is refused
/// and what follows is a command again — so a client cannot use this to
/// get a second message in either; the "smuggled" MAIL is a real command.
#[test]
fn bare_lf_before_real_end_refuses_message_commands_follow() {
    let srv = Server::start();
    let mut c = TcpStream::connect(srv.addr()).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    c.write_all(b"EHLO client.test\r\nMAIL FROM:<sender@client.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n").unwrap();
    let mut got = String::new();
    let mut buf = [0u8; 4096];
    while !got.contains("354 ") {
        let n = c.read(&mut buf).unwrap();
        assert!(n > 0, "{got}");
        got.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    c.write_all(b"Subject: x\r\n\r\nbody\n\r\n.\r\nNOOP\r\nQUIT\r\n")
        .unwrap();
    let mut rest = String::new();
    let _ = c.read_to_string(&mut rest);
    let codes: Vec<&str> = rest.lines().map(|l| &l[..l.len().min(9)]).collect();
    assert_eq!(codes, ["554 5.5.2", "250 2.0.0", "221 2.0.0"], "{rest}");
    assert!(!srv.log().contains(", nrcpt="));
}
