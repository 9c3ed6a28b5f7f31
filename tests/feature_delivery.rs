//! Delivery into Maildir (issue 2, section 7, and the log lines of section
//! 8): mail sent with real clients (raw SMTP, swaks, Python smtplib, msmtp)
//! lands in `<data>/mail/example.test/alice/` with Dovecot-style names, the
//! trace headers in front and the body byte for byte; Dovecot reads it; the
//! files belong to the configured delivery user; loops bounce instead of
//! being delivered, and a bounce never bounces.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::*;

const WAIT: Duration = Duration::from_secs(15);

/// The queue ID from `250 2.0.0 Ok: queued as <ID>`.
fn queue_id(reply: &Reply) -> String {
    assert_eq!(reply.code, 250, "message accepted: {reply:?}");
    let id = queue_id_in(&reply.first).expect("queue id");
    assert_eq!(id.len(), 11, "queue id in {:?}", reply.first);
    id
}

/// Checks a Maildir file name against
/// `^\d+\.M\d+P\d+Q\d+\.mx\.example\.test,S=(\d+)$` and returns S=.
fn maildir_name_size(name: &str) -> Option<u64> {
    fn digits(s: &str) -> Option<(&str, &str)> {
        let n = s.bytes().take_while(u8::is_ascii_digit).count();
        (n > 0).then(|| s.split_at(n))
    }
    let (_, rest) = digits(name)?;
    let rest = rest.strip_prefix(".M")?;
    let (_, rest) = digits(rest)?;
    let rest = rest.strip_prefix('P')?;
    let (_, rest) = digits(rest)?;
    let rest = rest.strip_prefix('Q')?;
    let (_, rest) = digits(rest)?;
    let rest = rest.strip_prefix(".mx.example.test,S=")?;
    let (size, rest) = digits(rest)?;
    rest.is_empty().then(|| size.parse().ok()).flatten()
}

#[test]
fn maildir_name_pattern_helper() {
    assert_eq!(
        maildir_name_size("1795826316.M123456P42Q1.mx.example.test,S=1234"),
        Some(1234)
    );
    assert_eq!(
        maildir_name_size("1795826316.M123456P42Q1.mx.example.test,S=12,W=13"),
        None
    );
    assert_eq!(
        maildir_name_size("1795826316.M123456P42.mx.example.test,S=12"),
        None
    );
    assert_eq!(maildir_name_size("x.M1P1Q1.mx.example.test,S=1"), None);
}

/// The header lines postern put in front of the message, unfolded, and the
/// rest of the file (the message as the client sent it, LF line ends).
fn split_trace(file: &[u8]) -> (Vec<String>, Vec<u8>) {
    let mut lines: Vec<String> = Vec::new();
    let mut pos = 0;
    // Return-Path, Delivered-To, Received (folded over continuation lines).
    while pos < file.len() {
        let end = file[pos..]
            .iter()
            .position(|&c| c == b'\n')
            .expect("header line ends")
            + pos;
        let line = String::from_utf8_lossy(&file[pos..end]).into_owned();
        let continuation = line.starts_with('\t') || line.starts_with(' ');
        if !continuation && lines.len() == 3 {
            break;
        }
        if continuation {
            let last = lines.last_mut().expect("continuation after a header");
            last.push(' ');
            last.push_str(line.trim());
        } else {
            lines.push(line);
        }
        pos = end + 1;
    }
    (lines, file[pos..].to_vec())
}

/// CRLF → LF, as postern stores messages.
fn lf(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\r' && bytes.get(i + 1) == Some(&b'\n') {
            i += 1;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// For the tests that deliver as another uid, which takes root: CI (and
/// these machines) run as root, so there a non-root run fails loudly
/// instead of passing without testing anything; elsewhere it says why it
/// skips. Returns true when the test should go on.
fn root_or_skip(test: &str) -> bool {
    root_or_skip_because(test, "delivering as another uid needs root")
}

fn owner(p: &Path) -> (u32, u32) {
    let m = std::fs::metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    (m.uid(), m.gid())
}

fn files_containing(maildir: &Path, needle: &str) -> Vec<PathBuf> {
    maildir_files(maildir)
        .into_iter()
        .filter(|f| String::from_utf8_lossy(&std::fs::read(f).unwrap()).contains(needle))
        .collect()
}

#[test]
fn maildir_layout_name_size_and_trace_headers() {
    let srv = Server::start();
    let alice = srv.mailbox("example.test/alice/");
    assert!(!alice.exists(), "no Maildir before the first delivery");

    // 8-bit bytes (Latin-1 and UTF-8), a dot-stuffed line, a lone dot line.
    let mut msg: Vec<u8> =
        b"From: sender@client.test\r\nTo: alice@example.test\r\nSubject: layout\r\n\r\n".to_vec();
    msg.extend_from_slice(b"first line\r\n..starts with a dot\r\n..\r\nGr\xc3\xbc\xc3\x9fe and raw \xff\xfe\x80 bytes\r\nlast line");
    let mut c = srv.smtp();
    c.hello();
    c.expect("MAIL FROM:<sender@client.test>", "250");
    c.expect("RCPT TO:<alice@example.test>", "250");
    c.expect("DATA", "354");
    c.send(&msg);
    c.send(b"\r\n.\r\n");
    let id = queue_id(&c.reply());
    c.expect("QUIT", "221");

    let files = wait_maildir(&alice, 1, WAIT);
    assert_eq!(files.len(), 1, "one message delivered:\n{}", srv.log());
    for sub in ["tmp", "new", "cur"] {
        assert!(alice.join(sub).is_dir(), "{sub}/ created on first delivery");
    }
    assert_eq!(
        std::fs::read_dir(alice.join("tmp")).unwrap().count(),
        0,
        "nothing left in tmp/"
    );
    let file = &files[0];
    assert_eq!(
        file.parent().unwrap(),
        alice.join("new"),
        "delivered into new/"
    );
    let name = file.file_name().unwrap().to_string_lossy().into_owned();
    let size = maildir_name_size(&name)
        .unwrap_or_else(|| panic!("file name {name:?} has the Maildir form"));
    let bytes = std::fs::read(file).unwrap();
    assert_eq!(size, bytes.len() as u64, "S= in {name} is the file size");
    assert!(
        !bytes.contains(&b'\r'),
        "LF line ends only, no CR in the file"
    );

    let (head, rest) = split_trace(&bytes);
    assert_eq!(head[0], "Return-Path: <sender@client.test>");
    assert_eq!(head[1], "Delivered-To: alice@example.test");
    let received = &head[2];
    let mut at = 0;
    for part in [
        "Received: from client.test (unknown [127.0.0.1])",
        "by mx.example.test with ESMTP",
        &format!("id {id}"),
        "for <alice@example.test>;",
    ] {
        let found = received[at..]
            .find(part)
            .unwrap_or_else(|| panic!("{part:?} in order in {received:?}"));
        at += found + part.len();
    }
    let date = received[at..].trim();
    let when =
        mailparse::dateparse(date).unwrap_or_else(|e| panic!("date {date:?} in Received: {e}"));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!(
        (when - now).abs() < 86_400,
        "Received: date {date:?} is today"
    );

    // Dot-unstuffing (RFC 5321 4.5.2) and CRLF → LF, nothing else.
    let want: Vec<u8> = [
        &b"From: sender@client.test\nTo: alice@example.test\nSubject: layout\n\n"[..],
        b"first line\n.starts with a dot\n.\nGr\xc3\xbc\xc3\x9fe and raw \xff\xfe\x80 bytes\nlast line\n",
    ]
    .concat();
    assert_eq!(
        rest,
        want,
        "the message byte for byte:\n{}",
        String::from_utf8_lossy(&rest)
    );
}

/// Sends with Python's smtplib; returns the reply text to DATA.
fn python_send(port: u16, from: &str, to: &str, msg: &[u8], dir: &Path) -> String {
    let file = dir.join("py-msg");
    std::fs::write(&file, msg).unwrap();
    let script = r#"
import smtplib, sys
port, sender, rcpt, path = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
data = open(path, 'rb').read()
s = smtplib.SMTP('127.0.0.1', port, local_hostname='python.client.test', timeout=30)
s.ehlo()
code, text = s.mail(sender)
assert code == 250, (code, text)
code, text = s.rcpt(rcpt)
assert code == 250, (code, text)
code, text = s.data(data)
print(code, text.decode())
s.quit()
"#;
    let (ok, out) = run(python()
        .arg("-c")
        .arg(script)
        .arg(port.to_string())
        .arg(from)
        .arg(to)
        .arg(&file));
    assert!(ok && out.starts_with("250 "), "python smtplib: {out}");
    out
}

#[test]
fn real_clients_deliver_byte_exact_bodies() {
    require("swaks");
    require("msmtp");
    let srv = Server::start();
    let alice = srv.mailbox("example.test/alice/");

    // Python: 8-bit body, a line starting with a dot (smtplib stuffs it).
    let py_msg = b"From: bob@example.test\r\nTo: alice@example.test\r\nSubject: from python\r\n\r\n\xc3\xa4\xc3\xb6\xc3\xbc 8-bit\r\n.hidden line\r\n..two dots\r\n";
    let out = python_send(
        srv.port,
        "bob@example.test",
        "alice@example.test",
        py_msg,
        srv.dir.path(),
    );
    let py_id = queue_id_in(&out).expect("queue id in smtplib's output");

    // msmtp, message on stdin.
    // Date and Message-ID given, so msmtp adds no headers of its own.
    let msmtp_msg = b"Date: Thu, 1 Jan 2026 00:00:00 +0000\r\nMessage-ID: <m1@client.test>\r\n\
        From: carol@example.test\r\nTo: alice@example.test\r\nSubject: from msmtp\r\n\r\nmsmtp body\r\n.dot line\r\n";
    let mut child = peer("msmtp")
        .args([
            "--file=/dev/null",
            "--host=127.0.0.1",
            "--auth=off",
            "--tls=off",
            "--domain=msmtp.client.test",
        ])
        .arg(format!("--port={}", srv.port))
        .args(["--from=carol@example.test", "alice@example.test"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(msmtp_msg).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "msmtp: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // swaks.
    let (ok, out) = run(peer("swaks")
        .args([
            "--server",
            "127.0.0.1",
            "--port",
            &srv.port.to_string(),
            "--helo",
            "swaks.client.test",
        ])
        .args(["--from", "dave@example.test", "--to", "alice@example.test"])
        .args([
            "--header",
            "Subject: from swaks",
            "--body",
            "swaks body line",
        ]));
    assert!(
        ok && out.contains("250 2.0.0 Ok: queued as"),
        "swaks: {out}"
    );

    let files = wait_maildir(&alice, 3, WAIT);
    assert_eq!(files.len(), 3, "three messages:\n{}", srv.log());

    let py = files_containing(&alice, "Subject: from python");
    assert_eq!(py.len(), 1);
    let bytes = std::fs::read(&py[0]).unwrap();
    let (head, rest) = split_trace(&bytes);
    assert_eq!(head[0], "Return-Path: <bob@example.test>");
    assert!(
        head[2].starts_with("Received: from python.client.test (unknown [127.0.0.1])"),
        "{}",
        head[2]
    );
    assert!(
        head[2].contains(&format!("with ESMTP id {py_id}")),
        "{}",
        head[2]
    );
    assert_eq!(rest, lf(py_msg), "python message byte for byte");

    let ms = files_containing(&alice, "Subject: from msmtp");
    assert_eq!(ms.len(), 1);
    let bytes = std::fs::read(&ms[0]).unwrap();
    let (head, rest) = split_trace(&bytes);
    assert_eq!(head[0], "Return-Path: <carol@example.test>");
    assert!(
        head[2].starts_with("Received: from msmtp.client.test (unknown [127.0.0.1])"),
        "{}",
        head[2]
    );
    assert_eq!(rest, lf(msmtp_msg), "msmtp message byte for byte");

    let sw = files_containing(&alice, "Subject: from swaks");
    assert_eq!(sw.len(), 1);
    let text = std::fs::read_to_string(&sw[0]).unwrap();
    assert!(
        text.starts_with("Return-Path: <dave@example.test>\nDelivered-To: alice@example.test\n"),
        "{text}"
    );
    assert!(text.contains("\nswaks body line\n"), "{text}");
    for f in &files {
        let b = std::fs::read(f).unwrap();
        assert!(!b.contains(&b'\r'), "no CR in {}", f.display());
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        assert_eq!(
            maildir_name_size(&name),
            Some(b.len() as u64),
            "S= of {name}"
        );
    }
}

/// Runs `doveadm fetch` on a copy of `maildir`; returns (ok, stdout, stderr).
fn dovecot_fetch(maildir: &Path, work: &Path) -> (bool, String, String) {
    require("doveadm");
    let copy = work.join("maildir");
    let home = work.join("home");
    std::fs::create_dir_all(&home).unwrap();
    let (ok, out) = run(peer("cp").arg("-a").arg(maildir).arg(&copy));
    assert!(ok, "cp: {out}");
    // Dovecot refuses mail access as root: read as nobody then.
    let (uid, gid) = if is_root() {
        for p in [&copy, &home, &work.to_path_buf()] {
            let (ok, out) = run(peer("chown").arg("-R").arg("65534:65534").arg(p));
            assert!(ok, "chown: {out}");
        }
        (65534, 65534)
    } else {
        let m = std::fs::metadata(&home).unwrap();
        (m.uid(), m.gid())
    };
    let conf = work.join("dovecot.conf");
    std::fs::write(
        &conf,
        format!(
            "mail_location = maildir:{}:LAYOUT=maildir++\nmail_uid = {uid}\nmail_gid = {gid}\n\
             first_valid_uid = 1\nfirst_valid_gid = 1\nprotocols = imap\nssl = no\nlog_path = /dev/stderr\n\
             userdb {{\n  driver = static\n}}\npassdb {{\n  driver = static\n}}\n",
            copy.display()
        ),
    )
    .unwrap();
    let out = peer("doveadm")
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("USER", "check")
        .env("HOME", &home)
        .arg("-c")
        .arg(&conf)
        .args([
            "fetch",
            "uid flags size.physical hdr body",
            "mailbox",
            "INBOX",
            "ALL",
        ])
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn dovecot_reads_what_postern_wrote() {
    require("swaks");
    require("doveadm");
    let srv = Server::start();
    let alice = srv.mailbox("example.test/alice/");

    let mut c = srv.smtp();
    c.hello();
    let r = c.send_mail(
        "sender@client.test",
        &["alice@example.test"],
        &message("dove raw", "plain body one"),
    );
    queue_id(&r);
    let r = c.send_mail(
        "sender@client.test",
        &["alice@example.test"],
        &message("dove dots", "before\r\n..dot-stuffed line\r\nafter"),
    );
    queue_id(&r);
    c.expect("MAIL FROM:<sender@client.test> BODY=8BITMIME", "250");
    c.expect("RCPT TO:<alice@example.test>", "250");
    c.expect("DATA", "354");
    c.send(b"From: sender@client.test\r\nSubject: dove 8bit\r\n\r\nK\xc3\xa4se und Gr\xc3\xbc\xc3\x9fe\r\n.\r\n");
    queue_id(&c.reply());
    c.expect("QUIT", "221");
    python_send(
        srv.port,
        "bob@example.test",
        "alice@example.test",
        b"From: bob@example.test\r\nSubject: dove python\r\n\r\npython body\r\n.leading dot\r\n",
        srv.dir.path(),
    );
    let (ok, out) = run(peer("swaks")
        .args(["--server", "127.0.0.1", "--port", &srv.port.to_string()])
        .args(["--from", "carol@example.test", "--to", "alice@example.test"])
        .args(["--header", "Subject: dove swaks", "--body", "swaks body"]));
    assert!(ok, "swaks: {out}");

    let files = wait_maildir(&alice, 5, WAIT);
    assert_eq!(files.len(), 5, "five messages delivered:\n{}", srv.log());

    let work = TestDir::new("dovecot");
    let (ok, stdout, stderr) = dovecot_fetch(&alice, work.path());
    assert!(ok, "doveadm fetch failed:\n{stderr}\n{stdout}");
    for bad in ["Cached message size", "Broken", "Error", "Panic", "Fatal"] {
        assert!(
            !stderr.contains(bad),
            "Dovecot complains ({bad}):\n{stderr}"
        );
    }
    assert_eq!(
        stdout.matches("\nuid: ").count() + usize::from(stdout.starts_with("uid: ")),
        5,
        "{stdout}"
    );
    for want in [
        "Subject: dove raw",
        "plain body one",
        "Subject: dove dots",
        "\n.dot-stuffed line\n",
        "Subject: dove 8bit",
        "K\u{e4}se und Gr\u{fc}\u{df}e",
        "Subject: dove python",
        "\n.leading dot\n",
        "Subject: dove swaks",
        "swaks body",
        "Delivered-To: alice@example.test",
    ] {
        assert!(stdout.contains(want), "Dovecot shows {want:?}:\n{stdout}");
    }
    // Dovecot's physical sizes are the S= values postern wrote.
    let mut sizes: Vec<u64> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("size.physical: "))
        .map(|s| s.trim().parse().unwrap())
        .collect();
    let mut named: Vec<u64> = files
        .iter()
        .map(|f| maildir_name_size(&f.file_name().unwrap().to_string_lossy()).expect("name"))
        .collect();
    sizes.sort();
    named.sort();
    assert_eq!(sizes, named, "size.physical matches S=");
}

#[test]
fn delivery_runs_as_configured_uid_and_gid() {
    // What a non-root serve says about delivery.uid is tested by
    // serve_as_unprivileged_user_refuses_other_delivery_uid, as root too.
    if !root_or_skip("delivery_runs_as_configured_uid_and_gid") {
        return;
    }
    let srv = Server::builder()
        .set("delivery", "uid = 5000")
        .set("delivery", "gid = 5000")
        .set("delivery", "minimum_uid = 1000")
        .start();
    let mut c = srv.smtp();
    c.hello();
    queue_id(&c.send_mail(
        "sender@client.test",
        &["alice@example.test"],
        &message("owned", "owned body"),
    ));
    queue_id(&c.send_mail(
        "sender@client.test",
        &["team@example.test"],
        &message("owned team", "team body"),
    ));
    let alice = srv.mailbox("example.test/alice/");
    let bob = srv.mailbox("example.test/bob/");
    let files = wait_maildir(&alice, 2, WAIT);
    assert_eq!(files.len(), 2, "delivered as uid 5000:\n{}", srv.log());
    assert_eq!(wait_maildir(&bob, 1, WAIT).len(), 1, "{}", srv.log());
    let mut paths = vec![srv.data.join("mail"), srv.data.join("mail/example.test")];
    for mb in [&alice, &bob] {
        paths.push(mb.clone());
        for sub in ["tmp", "new", "cur"] {
            paths.push(mb.join(sub));
        }
        paths.extend(maildir_files(mb));
    }
    for p in &paths {
        assert_eq!(
            owner(p),
            (5000, 5000),
            "{} is owned by the delivery user",
            p.display()
        );
    }
    // The queue stays postern's own.
    assert_eq!(owner(&srv.queue_dir()), (0, 0), "queue directory");
}

#[test]
fn serve_as_unprivileged_user_refuses_other_delivery_uid() {
    // The non-root case, also when the test itself runs as root: serve is
    // started as nobody (setpriv) with delivery.uid = 5000.
    let dir = TestDir::new("uid-nobody");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let cfg = Server::builder()
        .set("delivery", "uid = 5000")
        .set("delivery", "gid = 5000")
        .set("delivery", "minimum_uid = 1000")
        .config_text(&data, None);
    let conf = dir.path().join("postern.toml");
    std::fs::write(&conf, cfg).unwrap();
    let mut cmd = if is_root() {
        require("setpriv");
        let (ok, out) = run(peer("chown").arg("-R").arg("65534:65534").arg(dir.path()));
        assert!(ok, "chown: {out}");
        let mut c = peer("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", BIN]);
        c
    } else {
        postern()
    };
    let mut child = cmd
        .arg("serve")
        .arg("--config")
        .arg(&conf)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("err")).unwrap())
        .spawn()
        .unwrap();
    let status = wait_timeout(&mut child, Duration::from_secs(20));
    let err = std::fs::read_to_string(dir.path().join("err")).unwrap();
    assert_eq!(status.code(), Some(78), "serve exits EX_CONFIG (78): {err}");
    assert!(
        err.contains("delivery.uid") && err.contains("5000"),
        "clear message naming the key: {err}"
    );
}

#[test]
fn check_config_refuses_uid_below_minimum() {
    let dir = TestDir::new("minuid");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let cfg = Server::builder()
        .set("delivery", "uid = 500")
        .set("delivery", "gid = 500")
        .set("delivery", "minimum_uid = 1000")
        .config_text(&data, None);
    let conf = dir.path().join("postern.toml");
    std::fs::write(&conf, &cfg).unwrap();
    let out = postern().arg("check-config").arg(&conf).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "check-config exits 78: {err}");
    assert!(
        err.contains("delivery.uid") && err.contains("500") && err.contains("minimum_uid"),
        "{err}"
    );
    let line = cfg
        .lines()
        .position(|l| l.starts_with("uid = 500"))
        .unwrap()
        + 1;
    assert!(
        err.contains(&format!("{}:{line}: delivery.uid", conf.display())),
        "FILE:LINE: key form: {err}"
    );

    // The same values with uid at the minimum pass.
    let ok_cfg = cfg
        .replace("uid = 500", "uid = 1000")
        .replace("gid = 500", "gid = 1000");
    std::fs::write(&conf, ok_cfg).unwrap();
    let out = postern().arg("check-config").arg(&conf).output().unwrap();
    assert!(
        out.status.success(),
        "uid = minimum_uid is fine: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn received_lines(n: usize) -> String {
    (0..n)
        .map(|i| format!("Received: from hop{i}.remote.test by hop{}.remote.test; Thu, 1 Jan 2026 00:00:00 +0000\r\n", i + 1))
        .collect()
}

/// The bounce in `maildir` whose text mentions `needle`, parsed checks done.
fn assert_bounce(maildir: &Path, status: &str, rcpt: &str) -> String {
    let files = wait_maildir(maildir, 1, WAIT);
    assert_eq!(files.len(), 1, "one bounce in {}", maildir.display());
    let bytes = std::fs::read(&files[0]).unwrap();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    assert!(
        text.starts_with("Return-Path: <>\n"),
        "a bounce comes from <>:\n{text}"
    );
    let parsed = mailparse::parse_mail(&bytes).unwrap();
    assert_eq!(parsed.ctype.mimetype, "multipart/report", "{text}");
    assert_eq!(
        parsed.ctype.params.get("report-type").map(String::as_str),
        Some("delivery-status")
    );
    let ds = parsed
        .subparts
        .iter()
        .find(|p| p.ctype.mimetype == "message/delivery-status")
        .unwrap_or_else(|| panic!("a message/delivery-status part:\n{text}"));
    let ds = ds.get_body().unwrap();
    assert!(ds.contains(&format!("Status: {status}")), "{ds}");
    assert!(
        ds.contains(&format!("Final-Recipient: rfc822; {rcpt}")),
        "{ds}"
    );
    assert!(ds.contains("Action: failed"), "{ds}");
    text
}

#[test]
fn too_many_received_headers_bounce_instead_of_delivering() {
    let srv = Server::start();
    let alice = srv.mailbox("example.test/alice/");
    let bob = srv.mailbox("example.test/bob/");
    let mut c = srv.smtp();
    c.hello();
    let body = format!(
        "{}{}",
        received_lines(51),
        message("looping", "round and round")
    );
    let id = queue_id(&c.send_mail("bob@example.test", &["alice@example.test"], &body));
    assert!(
        srv.wait_log(&format!("{id}: removed"), WAIT),
        "{}",
        srv.log()
    );
    let text = assert_bounce(&bob, "5.4.6", "alice@example.test");
    assert!(
        text.contains("Subject: looping"),
        "the bounce returns the headers:\n{text}"
    );
    assert!(
        !text.contains("round and round"),
        "the bounce does not return the body:\n{text}"
    );
    assert!(
        maildir_files(&alice).is_empty(),
        "the looping message is not delivered to alice"
    );
    let log = srv.log();
    assert!(
        log.contains(&format!("{id}: to=<alice@example.test>, relay=none")),
        "{log}"
    );
    assert!(log.contains("dsn=5.4.6, status=bounced"), "{log}");
    assert!(
        log.contains(&format!("{id}: sender non-delivery notification: ")),
        "{log}"
    );

    // Well below the limit: delivered.
    let body = format!(
        "{}{}",
        received_lines(40),
        message("many hops", "still fine")
    );
    queue_id(&c.send_mail("bob@example.test", &["alice@example.test"], &body));
    assert_eq!(
        wait_maildir(&alice, 1, WAIT).len(),
        1,
        "40 Received: headers are no loop:\n{}",
        srv.log()
    );
    assert_eq!(maildir_files(&bob).len(), 1, "no second bounce");
}

#[test]
fn own_delivered_to_header_bounces_for_that_recipient_only() {
    let srv = Server::start();
    let alice = srv.mailbox("example.test/alice/");
    let bob = srv.mailbox("example.test/bob/");
    let mut c = srv.smtp();
    c.hello();
    let body = format!(
        "Delivered-To: alice@example.test\r\n{}",
        message("been here", "loop body")
    );
    let id = queue_id(&c.send_mail("bob@example.test", &["alice@example.test"], &body));
    assert!(
        srv.wait_log(&format!("{id}: removed"), WAIT),
        "{}",
        srv.log()
    );
    assert_bounce(&bob, "5.4.6", "alice@example.test");
    assert!(
        maildir_files(&alice).is_empty(),
        "not delivered to alice again"
    );

    // Delivered-To for someone else is no loop for alice.
    let body = format!(
        "Delivered-To: carol@example.test\r\n{}",
        message("passing", "fine")
    );
    queue_id(&c.send_mail("bob@example.test", &["alice@example.test"], &body));
    let files = wait_maildir(&alice, 1, WAIT);
    assert_eq!(files.len(), 1, "{}", srv.log());
    let text = std::fs::read_to_string(&files[0]).unwrap();
    assert!(
        text.starts_with("Return-Path: <bob@example.test>\nDelivered-To: alice@example.test\n"),
        "{text}"
    );
    assert_eq!(maildir_files(&bob).len(), 1, "only the one bounce");
}

#[test]
fn a_bounce_never_bounces() {
    // A failed message with the null sender is a bounce that could not be
    // delivered: no bounce of it, one report to the postmaster.
    let mut srv = Server::start();
    let alice = srv.mailbox("example.test/alice/");
    let mut c = srv.smtp();
    c.hello();
    let body = format!("{}{}", received_lines(51), message("null sender loop", "x"));
    let id = queue_id(&c.send_mail("", &["alice@example.test"], &body));
    assert!(
        srv.wait_log(&format!("{id}: removed"), WAIT),
        "{}",
        srv.log()
    );
    let log = srv.log();
    assert!(
        log.contains(&format!("{id}: to=<alice@example.test>")) && log.contains("status=bounced"),
        "{log}"
    );
    assert!(
        !log.contains("sender non-delivery notification"),
        "no bounce of a bounce:\n{log}"
    );
    // Nothing queued, nothing delivered anywhere. A bounce would have been
    // queued before the message was removed (its notification line comes
    // first); a clean stop then proves nothing is still on its way: every
    // delivery thread has finished, and what was queued is still queued.
    assert!(srv.stop().success(), "{}", srv.log());
    let log = srv.log();
    let queued: Vec<_> = std::fs::read_dir(srv.queue_dir().join("messages"))
        .unwrap()
        .collect();
    assert!(queued.is_empty(), "queue is empty: {queued:?}");
    assert!(maildir_files(&alice).is_empty());
    let delivered: usize = ["alice", "bob", "carol", "dave"]
        .iter()
        .map(|u| maildir_files(&srv.mailbox(&format!("example.test/{u}/"))).len())
        .sum();
    assert_eq!(delivered, 0, "nothing delivered");
    // The one report a failed bounce gets (issue 8): the local postmaster
    // hears of it once, and that report is never reported on again.
    assert_eq!(
        log.matches("postmaster non-delivery notification").count(),
        1,
        "{log}"
    );
    assert_eq!(
        log.matches("status=sent").count(),
        1,
        "only the postmaster's report:\n{log}"
    );
    let postmaster = maildir_files(&srv.data.join("local/postmaster"));
    assert_eq!(postmaster.len(), 1, "{log}");
    let report = std::fs::read_to_string(&postmaster[0]).unwrap();
    assert!(
        report.contains("null sender loop") && report.contains("5.4.6"),
        "{report}"
    );
}

#[test]
fn missing_maildir_parent_directory_is_recreated() {
    let srv = Server::start();
    let base = srv.data.join("mail");
    assert!(base.is_dir(), "mailbox base made at start");
    std::fs::remove_dir_all(&base).unwrap();
    let mut c = srv.smtp();
    c.hello();
    let id = queue_id(&c.send_mail(
        "sender@client.test",
        &["alice@example.test"],
        &message("recreated", "hello"),
    ));
    let alice = srv.mailbox("example.test/alice/");
    let files = wait_maildir(&alice, 1, WAIT);
    assert_eq!(
        files.len(),
        1,
        "delivered after the base was removed:\n{}",
        srv.log()
    );
    assert!(srv.wait_log(&format!("{id}: removed"), WAIT));

    // And again with only the domain directory gone.
    std::fs::remove_dir_all(base.join("example.test")).unwrap();
    queue_id(&c.send_mail(
        "sender@client.test",
        &["bob@example.test"],
        &message("recreated 2", "hello"),
    ));
    assert_eq!(
        wait_maildir(&srv.mailbox("example.test/bob/"), 1, WAIT).len(),
        1,
        "{}",
        srv.log()
    );
}

#[test]
fn log_lines_for_queue_delivery_and_removal_never_show_the_body() {
    let srv = Server::start();
    let secret = "xyzzy-body-secret-4242";
    let mut c = srv.smtp();
    c.hello();
    let body = message("log check", &format!("the secret word is {secret}\r\nbye"));
    let id = queue_id(&c.send_mail("sender@client.test", &["alice@example.test"], &body));
    let team_id = queue_id(&c.send_mail(
        "sender@client.test",
        &["team@example.test"],
        &message("team", &format!("again {secret}")),
    ));
    c.expect("QUIT", "221");
    assert!(
        srv.wait_log(&format!("{id}: removed"), WAIT),
        "{}",
        srv.log()
    );
    assert!(
        srv.wait_log(&format!("{team_id}: removed"), WAIT),
        "{}",
        srv.log()
    );
    let log = srv.log();
    let line = |needle: &str| -> String {
        log.lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("a log line with {needle:?}:\n{log}"))
            .to_string()
    };
    let queued = line(&format!("{id}: from=<sender@client.test>, size="));
    let size: u64 = queued
        .split("size=")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("size=N in {queued}"));
    assert!(
        size >= lf(body.as_bytes()).len() as u64,
        "size covers the message: {queued}"
    );
    assert!(
        queued.ends_with(", nrcpt=1 (delivered directly)"),
        "{queued}"
    );
    line(&format!("{id}: client=unknown[127.0.0.1]"));
    let sent = line(&format!(
        "{id}: to=<alice@example.test>, relay=maildir, delay="
    ));
    assert!(sent.contains(", dsn=2.0.0, status=sent ("), "{sent}");
    line(&format!("{id}: removed"));

    for who in ["alice", "bob"] {
        let l = line(&format!(
            "{team_id}: to=<{who}@example.test>, orig_to=<team@example.test>, relay=maildir"
        ));
        assert!(l.contains("status=sent"), "{l}");
    }
    line(&format!("{team_id}: from=<sender@client.test>, size="));
    assert!(
        !log.contains(secret),
        "the message body never appears in the log:\n{log}"
    );
    assert!(
        !log.contains("Subject: log check"),
        "nor its headers:\n{log}"
    );
}

#[test]
fn missing_mailbox_base_with_delivery_uid_is_recreated() {
    // Issue 2, Bad input: "a missing Maildir parent directory ... never a
    // crash, hang, or lost message". Here the base itself is gone and
    // delivery runs as uid 5000, which cannot create it under data_dir.
    if !root_or_skip("missing_mailbox_base_with_delivery_uid_is_recreated") {
        return;
    }
    let srv = Server::builder()
        .set("delivery", "uid = 5000")
        .set("delivery", "gid = 5000")
        .set("delivery", "minimum_uid = 1000")
        .start();
    std::fs::remove_dir_all(srv.data.join("mail")).unwrap();
    let mut c = srv.smtp();
    c.hello();
    let id = queue_id(&c.send_mail(
        "sender@client.test",
        &["alice@example.test"],
        &message("recreated uid", "hello"),
    ));
    // The first attempt either delivers or defers; a deferral here would
    // wait for the retry (5 minutes) and fail again the same way.
    assert!(
        srv.wait_log(&format!("{id}: to=<alice@example.test>"), WAIT),
        "{}",
        srv.log()
    );
    let alice = srv.mailbox("example.test/alice/");
    let files = maildir_files(&alice);
    assert_eq!(
        files.len(),
        1,
        "delivered after the mailbox base was removed:\n{}",
        srv.log()
    );
    assert!(srv.wait_log(&format!("{id}: removed"), WAIT));
    assert_eq!(owner(&files[0]), (5000, 5000));
}

#[test]
fn recipient_gone_after_acceptance_bounces_the_rest_is_delivered() {
    // A message accepted while frank existed, found in the queue after he
    // was deactivated: his copy bounces (5.1.1), alice's is delivered.
    let mut srv = Server::start();
    assert!(srv.stop().success());
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64;
    let (id, micros) = postern::queue::id::next(micros);
    let file = format!(
        "POSTERN-QUEUE 1\nid {id}\narrival {micros}\npid 4242\nclient 127.0.0.1 unknown\nhelo client.test\n\
         proto ESMTP\nfrom bob@example.test\nutf8 0\nrcpt frank@example.test\nrcpt alice@example.test\n.\n\
         From: bob@example.test\nSubject: while frank was here\n\nhello both\n"
    );
    std::fs::write(srv.queue_dir().join("messages").join(&id), file).unwrap();
    let before = srv.log().matches("listening on").count();
    srv.restart();
    assert!(srv.wait_log_count("listening on", before + 1, WAIT));
    assert!(
        srv.wait_log(&format!("{id}: removed"), WAIT),
        "{}",
        srv.log()
    );
    let alice = wait_maildir(&srv.mailbox("example.test/alice/"), 1, WAIT);
    assert_eq!(alice.len(), 1, "{}", srv.log());
    let text = assert_bounce(
        &srv.mailbox("example.test/bob/"),
        "5.1.1",
        "frank@example.test",
    );
    assert!(
        !text.contains("Final-Recipient: rfc822; alice@example.test"),
        "{text}"
    );
    assert!(text.contains("Subject: while frank was here"), "{text}");
}

/// A mailbox base the delivery user cannot reach (a directory above it is
/// 0700 root) is a clear start-up error, not mail deferred forever.
#[test]
fn unreachable_mailbox_base_for_delivery_uid_stops_serve() {
    // The non-root refusal is covered by
    // serve_as_unprivileged_user_refuses_other_delivery_uid.
    if !root_or_skip("unreachable_mailbox_base_for_delivery_uid_stops_serve") {
        return;
    }
    let dir = TestDir::new("uid-unreachable");
    let private = dir.path().join("private");
    let data = private.join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::set_permissions(
        &private,
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    let cfg = Server::builder()
        .set("delivery", "uid = 5000")
        .set("delivery", "gid = 5000")
        .set("delivery", "minimum_uid = 1000")
        .config_text(&data, None);
    let conf = dir.path().join("postern.toml");
    std::fs::write(&conf, cfg).unwrap();
    let (ok, err) = run(postern().arg("serve").arg("--config").arg(&conf));
    assert!(!ok, "serve must not start: {err}");
    assert!(
        err.contains("delivery as uid 5000 gid 5000 cannot create files")
            && err.contains("Permission denied"),
        "clear message: {err}"
    );
}
