//! Issue 13: DKIM signing of outgoing mail, through the real binary over
//! TCP. postern relays to an aiosmtpd sink (its smarthost, on loopback);
//! the message the sink received is checked by independent verifiers:
//! Python dkimpy (RSA and Ed25519), asking the tests' dnsmasq for the keys,
//! and OpenDKIM's opendkim-testmsg, which can only ask the system resolver,
//! so it runs in a network and mount namespace of its own where
//! /etc/resolv.conf names a dnsmasq on that namespace's loopback.
//!
//! Keys come from `postern dkim keygen` (RSA through openssl, Ed25519),
//! from opendkim-genkey, and from openssl as PKCS#1. Peers: python3 with
//! aiosmtpd, dkimpy, PyNaCl and dnspython (scripts/install-peers), dnsmasq,
//! openssl, opendkim-tools, unshare and ip. A missing one fails the test,
//! it never skips.

mod common;
#[path = "common/dnsmasq.rs"]
mod dnsmasq;
#[path = "common/smtp_peers.rs"]
mod smtp_peers;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::*;
use dnsmasq::Dnsmasq;
use smtp_peers::{PySink, Received};

const WAIT: Duration = Duration::from_secs(20);

/// A key made for a test and the DNS record that goes with it.
struct Key {
    path: PathBuf,
    /// `s1._domainkey.example.test`
    name: String,
    /// The record's strings, as printed (each at most 255 bytes).
    strings: Vec<String>,
}

impl Key {
    /// The dnsmasq line serving the record.
    fn dnsmasq(&self) -> String {
        let quoted: Vec<String> = self.strings.iter().map(|s| format!("\"{s}\"")).collect();
        format!("txt-record={},{}", self.name, quoted.join(","))
    }
}

/// Parses `NAME. IN TXT "a" "b"` as keygen prints it.
fn parse_zone_line(line: &str) -> (String, Vec<String>) {
    let (name, rest) = line
        .split_once(". IN TXT ")
        .unwrap_or_else(|| panic!("not a zone line: {line:?}"));
    let strings: Vec<String> = rest
        .split('"')
        .skip(1)
        .step_by(2)
        .map(String::from)
        .collect();
    (name.to_string(), strings)
}

/// `postern dkim keygen` into `dir`.
fn keygen(dir: &Path, domain: &str, selector: &str, algorithm: &str) -> Key {
    let path = dir.join(format!("{selector}.{domain}.pem"));
    let (ok, out) = run(postern()
        .args([
            "dkim",
            "keygen",
            domain,
            "--selector",
            selector,
            "--algorithm",
            algorithm,
            "--out",
        ])
        .arg(&path));
    assert!(ok, "keygen: {out}");
    let line = out.lines().next().unwrap();
    let (name, strings) = parse_zone_line(line);
    Key {
        path,
        name,
        strings,
    }
}

/// Raw SMTP bytes of `content`: CRLF line ends, dot-stuffed.
fn wire(content: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut start = true;
    for (i, &c) in content.iter().enumerate() {
        if start && c == b'.' {
            out.push(b'.');
        }
        if c == b'\n' && (i == 0 || content[i - 1] != b'\r') {
            out.push(b'\r');
        }
        out.push(c);
        start = c == b'\n';
    }
    if !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Sends one message from `ip` (127.0.0.1 is trusted, 127.0.0.2 is not);
/// returns the reply to the end of data.
fn submit(srv: &Server, ip: &str, from: &str, rcpts: &[&str], content: &[u8]) -> Reply {
    let mut c = Smtp::connect_from(ip, srv.addr());
    c.hello();
    c.expect(&format!("MAIL FROM:<{from}> BODY=8BITMIME"), "250");
    for r in rcpts {
        c.expect(&format!("RCPT TO:<{r}>"), "250");
    }
    c.expect("DATA", "354");
    c.send(&wire(content));
    c.send(b".\r\n");
    let r = c.reply();
    let _ = c.cmd("QUIT");
    r
}

/// Waits until the sink holds `n` messages.
fn wait_received(sink: &PySink, srv: &Server, n: usize) -> Vec<Received> {
    let deadline = Instant::now() + WAIT;
    loop {
        let got = sink.received();
        if got.len() >= n {
            return got;
        }
        assert!(
            Instant::now() < deadline,
            "the sink got {} of {n} messages; postern's log:\n{}",
            got.len(),
            srv.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// dkimpy's verdict per signature ("ok d=... s=... a=... c=..." or
/// "fail ..."), or ["none"].
fn dkimpy(dns: SocketAddr, message: &[u8]) -> Vec<String> {
    require_python_module("dkim");
    require_python_module("nacl");
    require_python_module("dns.resolver");
    let dir = TestDir::new("dkimpy");
    let file = dir.path().join("message.eml");
    std::fs::write(&file, message).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/common/dkim_verify.py");
    let (ok, out) = run(python()
        .arg(script)
        .args(["--dns", &dns.to_string()])
        .arg(&file));
    assert!(ok, "dkim_verify.py: {out}");
    out.lines().map(String::from).collect()
}

fn all_ok(verdicts: &[String]) -> bool {
    !verdicts.is_empty() && verdicts.iter().all(|v| v.starts_with("ok "))
}

/// OpenDKIM's verdict on `message`, with `keys` in DNS: (passed, output).
/// opendkim-testmsg asks the system resolver only, so it runs in new
/// network and mount namespaces: a loopback of its own with a dnsmasq on
/// port 53, and /etc/resolv.conf bound over with one naming it.
fn opendkim(keys: &[&Key], message: &[u8]) -> (bool, String) {
    let testmsg = require("opendkim-testmsg");
    let ip = require("ip");
    let dnsmasq = require("dnsmasq");
    let dir = TestDir::new("opendkim");
    let mut conf = String::from("no-resolv\nno-hosts\nno-poll\nlocal=/test/\nlisten-address=127.0.0.1\nport=53\nbind-interfaces\n");
    for k in keys {
        conf.push_str(&k.dnsmasq());
        conf.push('\n');
    }
    std::fs::write(dir.path().join("dnsmasq.conf"), conf).unwrap();
    std::fs::write(
        dir.path().join("resolv.conf"),
        "nameserver 127.0.0.1\noptions attempts:1 timeout:2\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("message.eml"), message).unwrap();
    let script = format!(
        "set -e\n\
         {ip} link set lo up\n\
         {dnsmasq} --conf-file=\"$PWD/dnsmasq.conf\" --pid-file=\"$PWD/dnsmasq.pid\" --user=root --log-facility=\"$PWD/dnsmasq.log\"\n\
         mount --bind resolv.conf /etc/resolv.conf\n\
         set +e\n\
         {testmsg} < message.eml\n\
         rc=$?\n\
         kill $(cat dnsmasq.pid)\n\
         exit $rc\n",
        ip = ip.display(),
        dnsmasq = dnsmasq.display(),
        testmsg = testmsg.display(),
    );
    let (ok, out) = run(peer("unshare")
        .arg("--net")
        .arg("--mount")
        .args(["sh", "-c", &script])
        .current_dir(dir.path()));
    (ok, out)
}

/// A server relaying everything remote to `sink`, with `dkim` tables.
fn server(sink: &PySink, dns: &Dnsmasq, dkim: &str) -> Server {
    Server::builder()
        .set(
            "relay",
            &format!("default = \"[127.0.0.1]:{}\"", sink.addr.port()),
        )
        .set("relay", "tls = \"none\"")
        .set("relay", &format!("dns_servers = [\"{}\"]", dns.addr))
        .top(dkim)
        .start()
}

fn dkim_table(domain: &str, key: &Key, extra: &str) -> String {
    let selector = key.name.split('.').next().unwrap();
    format!(
        "\n[[dkim]]\ndomain = \"{domain}\"\nselector = \"{selector}\"\nkey_file = \"{}\"\n{extra}\n",
        key.path.display()
    )
}

/// A message full of what canonicalization must get right: folded
/// headers, trailing whitespace in headers and body, runs of blanks, a
/// line starting with a dot, 8-bit text, a 998-byte line, empty lines at
/// the end.
fn awkward_message(from: &str) -> Vec<u8> {
    let mut m = format!(
        "From: Sender Name <{from}>\n\
         To: someone@remote.test\n\
         Subject: a subject folded\n  \tover two lines   \n\
         Date: Tue, 01 Dec 2026 10:00:00 +0000\n\
         Message-ID: <dkim-1@example.test>\n\
         MIME-Version: 1.0\n\
         Content-Type: text/plain; charset=utf-8\n\
         Content-Transfer-Encoding: 8bit\n\
         X-Trailing:   value with blanks   \t\n\
         \n\
         First line with trailing blanks   \t\n\
         \tindented\tline  with   runs\n\
         .a line starting with a dot\n\
         Grüße aus Köln, 8-bit text\n"
    )
    .into_bytes();
    m.extend(std::iter::repeat_n(b'x', 998));
    m.extend_from_slice(b"\nlast text line\n\n\n\n");
    m
}

#[test]
fn relayed_mail_is_signed_rsa_and_ed25519_and_both_verifiers_agree() {
    let keys = TestDir::new("dkim-keys");
    let rsa = keygen(keys.path(), "example.test", "s1", "rsa-2048");
    let ed = keygen(keys.path(), "example.test", "e1", "ed25519");
    assert!(
        rsa.strings.len() >= 2,
        "an RSA-2048 record needs two strings: {:?}",
        rsa.strings
    );
    assert!(rsa.strings.iter().all(|s| s.len() <= 255));
    let dns = Dnsmasq::start(&[rsa.dnsmasq(), ed.dnsmasq()]);
    let sink = PySink::start(&[]);
    let srv = server(
        &sink,
        &dns,
        &(dkim_table("example.test", &rsa, "") + &dkim_table("example.test", &ed, "")),
    );

    let r = submit(
        &srv,
        "127.0.0.1",
        "alice@example.test",
        &["someone@remote.test"],
        &awkward_message("alice@example.test"),
    );
    assert_eq!(r.code, 250, "{r:?}");
    let got = wait_received(&sink, &srv, 1);
    let msg = &got[0].content;
    let text = String::from_utf8_lossy(msg);
    assert_eq!(text.matches("DKIM-Signature:").count(), 2, "{text}");
    assert!(
        text.starts_with("DKIM-Signature: "),
        "the signatures come first:\n{text}"
    );
    let v = dkimpy(dns.addr, msg);
    assert!(all_ok(&v), "{v:?}\n{text}");
    assert!(
        v.iter()
            .any(|l| l.contains("a=rsa-sha256") && l.contains("s=s1")),
        "{v:?}"
    );
    assert!(
        v.iter()
            .any(|l| l.contains("a=ed25519-sha256") && l.contains("s=e1")),
        "{v:?}"
    );
    let (ok, out) = opendkim(&[&rsa, &ed], msg);
    assert!(
        ok,
        "opendkim-testmsg refused postern's signatures:\n{out}\n{text}"
    );
    assert!(
        srv.log()
            .contains("dkim: signed d=example.test s=s1 a=rsa-sha256"),
        "{}",
        srv.log()
    );
}

/// Keys for example.test under every canonicalization: simple/simple and
/// relaxed/simple with RSA (one key, two selectors), simple/relaxed and
/// relaxed/relaxed with Ed25519.
struct CanonKeys {
    _dir: TestDir,
    rsa: Key,
    rsa2: Key,
    ed: Key,
    ed2: Key,
}

impl CanonKeys {
    fn new() -> CanonKeys {
        let dir = TestDir::new("dkim-canon");
        let rsa = keygen(dir.path(), "example.test", "ss", "rsa-2048");
        let rsa2 = Key {
            path: rsa.path.clone(),
            name: "rs._domainkey.example.test".into(),
            strings: rsa.strings.clone(),
        };
        let ed = keygen(dir.path(), "example.test", "sr", "ed25519");
        let ed2 = Key {
            path: ed.path.clone(),
            name: "rr._domainkey.example.test".into(),
            strings: ed.strings.clone(),
        };
        CanonKeys {
            _dir: dir,
            rsa,
            rsa2,
            ed,
            ed2,
        }
    }

    fn all(&self) -> [&Key; 4] {
        [&self.rsa, &self.rsa2, &self.ed, &self.ed2]
    }

    fn tables(&self) -> String {
        dkim_table(
            "example.test",
            &self.rsa,
            "canonicalization = \"simple/simple\"",
        ) + &dkim_table(
            "example.test",
            &self.rsa2,
            "canonicalization = \"relaxed/simple\"",
        ) + &dkim_table(
            "example.test",
            &self.ed,
            "canonicalization = \"simple/relaxed\"",
        ) + &dkim_table(
            "example.test",
            &self.ed2,
            "canonicalization = \"relaxed/relaxed\"",
        )
    }
}

/// Every canonicalization, on awkward content, an empty body, a message
/// that is all header, and one too large to be held in memory (streamed
/// from the queue file, the signature sent ahead of it).
#[test]
fn every_canonicalization_on_awkward_empty_and_large_messages() {
    let keys = CanonKeys::new();
    let dns = Dnsmasq::start(&keys.all().map(|k| k.dnsmasq()));
    let sink = PySink::start(&[]);
    let srv = server(&sink, &dns, &keys.tables());
    // OpenDKIM refuses to look at a message without Date: (RFC 5322 3.6).
    const DATE: &str = "Date: Tue, 01 Dec 2026 10:00:00 +0000";
    let mut large = format!("From: alice@example.test\n{DATE}\nSubject: large\n\n").into_bytes();
    for i in 0..6000 {
        large.extend_from_slice(
            format!("line {i} of a message larger than 256 KiB, with  runs \t of blanks   \n")
                .as_bytes(),
        );
    }
    assert!(large.len() > 300 * 1024);
    let messages: Vec<(&str, Vec<u8>)> = vec![
        ("awkward", awkward_message("alice@example.test")),
        (
            "empty body",
            format!("From: alice@example.test\n{DATE}\nSubject: empty body\n\n").into_bytes(),
        ),
        (
            "all header",
            format!("From: alice@example.test\n{DATE}\nSubject: no blank line").into_bytes(),
        ),
        (
            "blank body",
            format!("From: alice@example.test\n{DATE}\nSubject: blank lines\n\n \t\n\n\n")
                .into_bytes(),
        ),
        ("large", large),
    ];
    for (i, (what, m)) in messages.iter().enumerate() {
        let r = submit(
            &srv,
            "127.0.0.1",
            "alice@example.test",
            &["someone@remote.test"],
            m,
        );
        assert_eq!(r.code, 250, "{what}: {r:?}");
        let got = wait_received(&sink, &srv, i + 1);
        let msg = &got[i].content;
        let v = dkimpy(dns.addr, msg);
        assert_eq!(v.len(), 4, "{what}: {v:?}");
        assert!(
            all_ok(&v),
            "{what}: {v:?}\n{}",
            String::from_utf8_lossy(&msg[..msg.len().min(4000)])
        );
        for c in [
            "c=simple/simple",
            "c=relaxed/simple",
            "c=simple/relaxed",
            "c=relaxed/relaxed",
        ] {
            assert!(v.iter().any(|l| l.ends_with(c)), "{what}: no {c} in {v:?}");
        }
        let (ok, out) = opendkim(&keys.all(), msg);
        assert!(ok, "{what}: opendkim-testmsg:\n{out}");
    }
}

/// One body byte changed after signing: every signature fails, with both
/// verifiers; the untouched copy passes.
#[test]
fn a_changed_body_byte_fails_verification() {
    let keys = CanonKeys::new();
    let dns = Dnsmasq::start(&keys.all().map(|k| k.dnsmasq()));
    let sink = PySink::start(&[]);
    let srv = server(&sink, &dns, &keys.tables());
    let r = submit(
        &srv,
        "127.0.0.1",
        "alice@example.test",
        &["someone@remote.test"],
        &awkward_message("alice@example.test"),
    );
    assert_eq!(r.code, 250);
    let msg = wait_received(&sink, &srv, 1).remove(0).content;
    assert!(all_ok(&dkimpy(dns.addr, &msg)));
    let at = find(&msg, b"indented").expect("body text");
    let mut tampered = msg.clone();
    tampered[at] = b'I';
    let v = dkimpy(dns.addr, &tampered);
    assert_eq!(v.len(), 4, "{v:?}");
    assert!(
        v.iter().all(|l| l.starts_with("fail ")),
        "a changed body must fail every signature: {v:?}"
    );
    let (ok, out) = opendkim(&keys.all(), &tampered);
    assert!(
        !ok && out.contains("Bad signature"),
        "opendkim-testmsg passed a changed body:\n{out}"
    );
    // A header changed: fails too (the subject is signed).
    let mut tampered = msg.clone();
    let at = find(&msg, b"a subject").unwrap();
    tampered[at] = b'A';
    assert!(dkimpy(dns.addr, &tampered)
        .iter()
        .all(|l| l.starts_with("fail ")));
    // A second From: added above the signed one: oversigning breaks it.
    let mut added = b"From: mallory@evil.test\r\n".to_vec();
    added.extend_from_slice(&msg);
    let v = dkimpy(dns.addr, &added);
    assert!(v.iter().all(|l| l.starts_with("fail ")), "{v:?}");
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The key is chosen by the From: domain, then a parent domain, then the
/// envelope sender's; a From: domain with no key anywhere is not signed.
#[test]
fn which_domain_signs() {
    let dir = TestDir::new("dkim-which");
    let key = keygen(dir.path(), "example.test", "s1", "ed25519");
    let dns = Dnsmasq::start(&[key.dnsmasq()]);
    let sink = PySink::start(&[]);
    let srv = server(&sink, &dns, &dkim_table("example.test", &key, ""));
    let cases: [(&str, &str, bool); 4] = [
        (
            "alice@example.test",
            "From: Alice <alice@example.test>",
            true,
        ),
        ("alice@example.test", "From: news@lists.example.test", true),
        ("alice@example.test", "From: printer@lan.test", true),
        ("someone@other.test", "From: someone@other.test", false),
    ];
    for (i, (sender, from, signed)) in cases.iter().enumerate() {
        let m = format!("{from}\nTo: someone@remote.test\nSubject: case {i}\n\nbody {i}\n");
        assert_eq!(
            submit(
                &srv,
                "127.0.0.1",
                sender,
                &["someone@remote.test"],
                m.as_bytes()
            )
            .code,
            250
        );
        let got = wait_received(&sink, &srv, i + 1);
        let v = dkimpy(dns.addr, &got[i].content);
        if *signed {
            assert_eq!(
                v,
                ["ok d=example.test s=s1 a=ed25519-sha256 c=relaxed/relaxed"],
                "{from}"
            );
        } else {
            assert_eq!(v, ["none"], "{from}: no key, no signature");
        }
    }
}

/// Mail from outside that postern sends on is not signed, even with a
/// From: in a domain that has a key: a message for a domain we are backup
/// MX for, and one for an alias pointing at a remote address. A key with
/// `forwards = true` signs the alias's forward as the forwarding domain.
#[test]
fn mail_from_outside_is_not_signed_unless_forwards_are() {
    let dir = TestDir::new("dkim-outside");
    let key = keygen(dir.path(), "example.test", "s1", "ed25519");
    let dns = Dnsmasq::start(&[key.dnsmasq()]);
    let sink = PySink::start(&[]);
    let srv = server(&sink, &dns, &dkim_table("example.test", &key, ""));
    let m = b"From: alice@example.test\nSubject: from outside\n\nclaims to be alice\n";
    assert_eq!(
        submit(
            &srv,
            "127.0.0.2",
            "alice@example.test",
            &["user@backup.test"],
            m
        )
        .code,
        250
    );
    assert_eq!(
        submit(
            &srv,
            "127.0.0.2",
            "alice@example.test",
            &["fwd@example.test"],
            m
        )
        .code,
        250
    );
    let got = wait_received(&sink, &srv, 2);
    let rcpts: Vec<&str> = got.iter().map(|g| g.rcpts[0].as_str()).collect();
    assert!(
        rcpts.contains(&"user@backup.test") && rcpts.contains(&"someone@remote.test"),
        "{rcpts:?}"
    );
    for g in &got {
        assert_eq!(
            dkimpy(dns.addr, &g.content),
            ["none"],
            "{:?} must not be signed",
            g.rcpts
        );
    }
    // The same from a trusted client is signed: the key works.
    assert_eq!(
        submit(
            &srv,
            "127.0.0.1",
            "alice@example.test",
            &["someone@remote.test"],
            m
        )
        .code,
        250
    );
    let got = wait_received(&sink, &srv, 3);
    assert!(all_ok(&dkimpy(dns.addr, &got[2].content)));
    drop(srv);

    let sink = PySink::start(&[]);
    let srv = server(
        &sink,
        &dns,
        &dkim_table("example.test", &key, "forwards = true"),
    );
    let m = b"From: friend@elsewhere.test\nSubject: for the alias\n\nhello\n";
    assert_eq!(
        submit(
            &srv,
            "127.0.0.2",
            "friend@elsewhere.test",
            &["fwd@example.test"],
            m
        )
        .code,
        250
    );
    assert_eq!(
        submit(
            &srv,
            "127.0.0.2",
            "friend@elsewhere.test",
            &["user@backup.test"],
            m
        )
        .code,
        250
    );
    let got = wait_received(&sink, &srv, 2);
    for g in &got {
        let v = dkimpy(dns.addr, &g.content);
        match g.rcpts[0].as_str() {
            "someone@remote.test" => assert_eq!(
                v,
                ["ok d=example.test s=s1 a=ed25519-sha256 c=relaxed/relaxed"]
            ),
            // backup.test has no key: nothing signs it.
            _ => assert_eq!(v, ["none"]),
        }
    }
}

/// A client outside the trusted networks that logs in is one of ours.
#[test]
fn logged_in_clients_mail_is_signed() {
    let dir = TestDir::new("dkim-auth");
    let key = keygen(dir.path(), "example.test", "s1", "rsa-2048");
    let dns = Dnsmasq::start(&[key.dnsmasq()]);
    let sink = PySink::start(&[]);
    let srv = Server::builder()
        .set(
            "relay",
            &format!("default = \"[127.0.0.1]:{}\"", sink.addr.port()),
        )
        .set("relay", "tls = \"none\"")
        .set("auth", "tls_only = false")
        .top(&dkim_table("example.test", &key, ""))
        .start();
    let mut c = Smtp::connect_from("127.0.0.2", srv.addr());
    c.hello();
    use base64::Engine as _;
    let token =
        base64::engine::general_purpose::STANDARD.encode(b"\0gail@example.test\0gail-secret");
    c.expect(&format!("AUTH PLAIN {token}"), "235");
    let r = c.send_mail(
        "gail@example.test",
        &["someone@remote.test"],
        "From: gail@example.test\r\nSubject: logged in\r\n\r\nhi",
    );
    assert_eq!(r.code, 250, "{r:?}");
    let got = wait_received(&sink, &srv, 1);
    let v = dkimpy(dns.addr, &got[0].content);
    assert_eq!(v, ["ok d=example.test s=s1 a=rsa-sha256 c=relaxed/relaxed"]);
}

/// The content filter's way: a message is signed once, after the filter
/// changed it, never on its way to the filter; mail from outside that
/// comes back from the filter stays unsigned (XFORWARD SOURCE=REMOTE).
#[test]
fn signed_once_after_the_content_filter() {
    require_python_module("aiosmtpd");
    let dir = TestDir::new("dkim-filter");
    let key = keygen(dir.path(), "example.test", "s1", "rsa-2048");
    let dns = Dnsmasq::start(&[key.dnsmasq()]);
    let sink = PySink::start(&[]);
    // Kept until the filter binds it: postern starts in between.
    let held = smtp_peers::hold_port();
    let filter_port = held.port;
    let srv = Server::builder()
        .set(
            "relay",
            &format!("default = \"[127.0.0.1]:{}\"", sink.addr.port()),
        )
        .set("relay", "tls = \"none\"")
        .set(
            "content",
            &format!("filter = \"[127.0.0.1]:{filter_port}\""),
        )
        .listener("plain", "role = \"reinject\"")
        .top(&dkim_table("example.test", &key, ""))
        .start();
    let recorded = TestDir::new("dkim-filter-copies");
    let _filter = start_filter(filter_port, srv.listener_addr(2), recorded.path());
    drop(held);

    let inside = b"From: alice@example.test\nSubject: from a trusted client\n\nbody\n";
    let outside = b"From: alice@example.test\nSubject: from outside\n\nbody\n";
    assert_eq!(
        submit(
            &srv,
            "127.0.0.1",
            "alice@example.test",
            &["someone@remote.test"],
            inside
        )
        .code,
        250
    );
    assert_eq!(
        submit(
            &srv,
            "127.0.0.2",
            "alice@example.test",
            &["fwd@example.test"],
            outside
        )
        .code,
        250
    );
    let got = wait_received(&sink, &srv, 2);
    for g in &got {
        let text = String::from_utf8_lossy(&g.content);
        assert!(
            text.contains("X-Virus-Scanned: postern-test-filter"),
            "it went through the filter:\n{text}"
        );
        let v = dkimpy(dns.addr, &g.content);
        if text.contains("Subject: from a trusted client") {
            assert_eq!(
                text.matches("DKIM-Signature:").count(),
                1,
                "signed once:\n{text}"
            );
            assert_eq!(v, ["ok d=example.test s=s1 a=rsa-sha256 c=relaxed/relaxed"]);
        } else {
            assert_eq!(v, ["none"], "{text}");
        }
    }
    // What the filter was handed carries no signature; the trusted
    // client's copy went with SOURCE=LOCAL, the other with REMOTE.
    let copies: Vec<String> = std::fs::read_dir(recorded.path())
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    assert_eq!(copies.len(), 2);
    assert!(
        copies.iter().all(|c| !c.contains("DKIM-Signature")),
        "{copies:?}"
    );
    assert!(
        copies.iter().any(|c| c.contains("SOURCE=LOCAL"))
            && copies.iter().any(|c| c.contains("SOURCE=REMOTE")),
        "{copies:?}"
    );
}

/// tests/common/content_filter.py on `port`, handing back to `reinject`.
fn start_filter(port: u16, reinject: SocketAddr, dir: &Path) -> ChildGuard {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/common/content_filter.py");
    let mut child: Child = python()
        .arg(script)
        .args([
            "--port",
            &port.to_string(),
            "--reinject",
            &reinject.to_string(),
            "--dir",
        ])
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the content filter");
    let mut line = String::new();
    let _ = BufReader::new(child.stdout.take().unwrap()).read_line(&mut line);
    assert_eq!(line.trim(), "READY", "the content filter did not start");
    ChildGuard::new(child)
}

/// postern's own notices are ours: a bounce sent to a remote sender over
/// SMTP is signed by the key of its hostname's parent domain.
#[test]
fn bounces_are_signed() {
    let dir = TestDir::new("dkim-bounce");
    let key = keygen(dir.path(), "example.test", "s1", "ed25519");
    let dns = Dnsmasq::start(&[key.dnsmasq()]);
    let sink = PySink::start(&["--reject-rcpt", "nobody"]);
    let srv = server(&sink, &dns, &dkim_table("example.test", &key, ""));
    let m = b"From: someone@remote.test\nSubject: will bounce\n\nbody\n";
    assert_eq!(
        submit(
            &srv,
            "127.0.0.1",
            "someone@remote.test",
            &["nobody@remote.test"],
            m
        )
        .code,
        250
    );
    let got = wait_received(&sink, &srv, 1);
    assert_eq!(got[0].from, "<>", "a bounce");
    let text = String::from_utf8_lossy(&got[0].content);
    assert!(text.contains("MAILER-DAEMON@mx.example.test"), "{text}");
    assert_eq!(
        dkimpy(dns.addr, &got[0].content),
        ["ok d=example.test s=s1 a=ed25519-sha256 c=relaxed/relaxed"]
    );
}

/// Several messages to one destination in a row (a kept connection): each
/// with its own valid signature.
#[test]
fn signing_keeps_connection_reuse_working() {
    let dir = TestDir::new("dkim-reuse");
    let key = keygen(dir.path(), "example.test", "s1", "rsa-2048");
    let dns = Dnsmasq::start(&[key.dnsmasq()]);
    let sink = PySink::start(&[]);
    let srv = Server::builder()
        .set(
            "relay",
            &format!("default = \"[127.0.0.1]:{}\"", sink.addr.port()),
        )
        .set("relay", "tls = \"none\"")
        .set("relay", "connection_reuse_time = \"10s\"")
        .top(&dkim_table("example.test", &key, ""))
        .start();
    let mut c = Smtp::connect(srv.addr());
    c.hello();
    for i in 0..5 {
        let body = format!("From: alice@example.test\r\nSubject: reuse {i}\r\n\r\nmessage {i}");
        assert_eq!(
            c.send_mail("alice@example.test", &["someone@remote.test"], &body)
                .code,
            250
        );
    }
    let got = wait_received(&sink, &srv, 5);
    for g in &got {
        assert!(all_ok(&dkimpy(dns.addr, &g.content)));
    }
}

fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Keys made elsewhere are taken as they are: opendkim-genkey's (with its
/// own record, `h=sha256` and all) and a PKCS#1 key from `openssl genrsa
/// -traditional`, whose record `postern dkim record` prints.
#[test]
fn keys_from_opendkim_genkey_and_openssl_pkcs1() {
    let dir = TestDir::new("dkim-foreign");
    let (ok, out) = run(peer("opendkim-genkey").arg("-D").arg(dir.path()).args([
        "-d",
        "example.test",
        "-s",
        "og",
    ]));
    assert!(ok, "opendkim-genkey: {out}");
    let og_txt = std::fs::read_to_string(dir.path().join("og.txt")).unwrap();
    let og = Key {
        path: dir.path().join("og.private"),
        name: "og._domainkey.example.test".into(),
        strings: og_txt
            .split('"')
            .skip(1)
            .step_by(2)
            .map(String::from)
            .collect(),
    };
    chmod(&og.path, 0o600);
    let pkcs1 = dir.path().join("p1.pem");
    let (ok, out) = run(peer("openssl")
        .args(["genrsa", "-traditional", "-out"])
        .arg(&pkcs1)
        .arg("2048"));
    assert!(ok, "openssl genrsa: {out}");
    assert!(std::fs::read_to_string(&pkcs1)
        .unwrap()
        .starts_with("-----BEGIN RSA PRIVATE KEY-----"));
    chmod(&pkcs1, 0o600);
    let p1_table = format!(
        "\n[[dkim]]\ndomain = \"example.test\"\nselector = \"p1\"\nkey_file = \"{}\"\n",
        pkcs1.display()
    );

    // The record of the PKCS#1 key, from the configuration.
    let cfg = dir.path().join("postern.toml");
    std::fs::write(
        &cfg,
        format!(
            "data_dir = \"{}\"\n[[listener]]\naddress = \"127.0.0.1:0\"\n{p1_table}",
            dir.path().display()
        ),
    )
    .unwrap();
    let (ok, out) = run(postern().args(["dkim", "record", "-c"]).arg(&cfg));
    assert!(ok, "dkim record: {out}");
    let (name, strings) = parse_zone_line(out.lines().next().unwrap());
    assert_eq!(name, "p1._domainkey.example.test");
    let p1 = Key {
        path: pkcs1.clone(),
        name,
        strings,
    };

    let dns = Dnsmasq::start(&[og.dnsmasq(), p1.dnsmasq()]);
    let sink = PySink::start(&[]);
    let srv = server(
        &sink,
        &dns,
        &(dkim_table("example.test", &og, "") + &p1_table),
    );
    let r = submit(
        &srv,
        "127.0.0.1",
        "alice@example.test",
        &["someone@remote.test"],
        &awkward_message("alice@example.test"),
    );
    assert_eq!(r.code, 250);
    let got = wait_received(&sink, &srv, 1);
    let v = dkimpy(dns.addr, &got[0].content);
    assert_eq!(v.len(), 2, "{v:?}");
    assert!(all_ok(&v), "{v:?}");
    let (ok, out) = opendkim(&[&og, &p1], &got[0].content);
    assert!(ok, "{out}");
}

/// keygen: the key under the data directory (mode 0600, in a 0700
/// directory), the record on stdout in strings of at most 255 bytes, a
/// default selector, and no second key over the first.
#[test]
fn keygen_writes_a_private_key_and_prints_the_record() {
    let dir = TestDir::new("dkim-keygen");
    let data = dir.path().join("data");
    let (ok, out) = run(postern()
        .args(["dkim", "keygen", "example.test", "--data-dir"])
        .arg(&data));
    assert!(ok, "{out}");
    let line = out.lines().next().unwrap();
    let (name, strings) = parse_zone_line(line);
    let selector = name.strip_suffix("._domainkey.example.test").expect(&name);
    assert!(
        selector.len() == 7
            && selector.starts_with('s')
            && selector[1..].bytes().all(|b| b.is_ascii_digit()),
        "{selector}"
    );
    assert!(
        strings.len() == 2 && strings.iter().all(|s| s.len() <= 255),
        "{strings:?}"
    );
    assert!(strings
        .concat()
        .starts_with("v=DKIM1; k=rsa; p=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"));
    let key = data
        .join("dkim")
        .join(format!("{selector}.example.test.pem"));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        std::fs::metadata(data.join("dkim"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o700
    );
    assert!(
        out.contains("[[dkim]]") && out.contains(&format!("selector = \"{selector}\"")),
        "{out}"
    );
    // openssl agrees on the public key.
    let (ok, spki) = run(peer("openssl").args(["pkey", "-pubout", "-in"]).arg(&key));
    assert!(ok, "{spki}");
    let b64: String = spki.lines().filter(|l| !l.starts_with("-----")).collect();
    assert!(strings.concat().ends_with(&format!("p={b64}")));

    // Once more: the key is kept.
    let before = std::fs::read(&key).unwrap();
    let again = postern()
        .args([
            "dkim",
            "keygen",
            "example.test",
            "--selector",
            selector,
            "--data-dir",
        ])
        .arg(&data)
        .output()
        .unwrap();
    assert_eq!(
        again.status.code(),
        Some(73),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists"));
    assert_eq!(std::fs::read(&key).unwrap(), before);

    let ed = postern()
        .args([
            "dkim",
            "keygen",
            "example.test",
            "--algorithm",
            "ed25519",
            "--data-dir",
        ])
        .arg(&data)
        .output()
        .unwrap();
    assert!(ed.status.success());
    let (_, s) = parse_zone_line(String::from_utf8_lossy(&ed.stdout).lines().next().unwrap());
    assert_eq!(s.len(), 1);
    assert!(
        s[0].starts_with("v=DKIM1; k=ed25519; p=") && s[0].len() == 66,
        "{s:?}"
    );
    for (args, code) in [
        (
            &["dkim", "keygen", "example.test", "--algorithm", "dsa"][..],
            64,
        ),
        (&["dkim", "keygen", "not a domain"][..], 64),
    ] {
        let o = postern()
            .args(args)
            .arg("--data-dir")
            .arg(&data)
            .output()
            .unwrap();
        assert_eq!(
            o.status.code(),
            Some(code),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
}

/// A key that is missing, too weak, readable by every user or not what
/// `algorithm` says: `file:line: dkim[N].key_file: PATH: problem;
/// allowed: ...`, every one at once, exit 78.
#[test]
fn bad_keys_are_config_errors_naming_the_file() {
    let dir = TestDir::new("dkim-badkeys");
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/dkim");
    let weak = dir.path().join("weak.pem");
    std::fs::copy(fixtures.join("rsa1024.pem"), &weak).unwrap();
    chmod(&weak, 0o600);
    let open = dir.path().join("open.pem");
    std::fs::copy(fixtures.join("rsa2048.pem"), &open).unwrap();
    chmod(&open, 0o644);
    let ed = dir.path().join("ed.pem");
    std::fs::copy(fixtures.join("ed25519.pem"), &ed).unwrap();
    chmod(&ed, 0o600);
    let missing = dir.path().join("missing.pem");
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a key\n").unwrap();
    chmod(&garbage, 0o600);
    let mut text = format!(
        "data_dir = \"{}\"\n\n[[listener]]\naddress = \"127.0.0.1:0\"\n",
        dir.path().display()
    );
    for (i, (path, extra)) in [
        (&missing, ""),
        (&weak, ""),
        (&open, ""),
        (&ed, "algorithm = \"rsa-sha256\""),
        (&garbage, ""),
    ]
    .iter()
    .enumerate()
    {
        text.push_str(&format!("\n[[dkim]]\ndomain = \"example.test\"\nselector = \"k{i}\"\nkey_file = \"{}\"\n{extra}\n", path.display()));
    }
    let cfg = dir.path().join("postern.toml");
    std::fs::write(&cfg, &text).unwrap();
    let o = postern().arg("check-config").arg(&cfg).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(78), "{err}");
    let expect = [
        format!(
            "dkim[1].key_file: {}: cannot read: No such file or directory",
            missing.display()
        ),
        format!(
            "dkim[2].key_file: {}: the RSA key is too weak: under 2048 bits",
            weak.display()
        ),
        format!(
            "dkim[3].key_file: {}: mode 644 lets every user read the private key (chmod 600 {})",
            open.display(),
            open.display()
        ),
        format!(
            "dkim[4].key_file: {}: the key is ed25519, not rsa-sha256",
            ed.display()
        ),
        format!(
            "dkim[5].key_file: {}: no private key in it",
            garbage.display()
        ),
    ];
    for e in &expect {
        let line = err
            .lines()
            .find(|l| l.contains(e.as_str()))
            .unwrap_or_else(|| panic!("no {e:?} in:\n{err}"));
        assert!(
            line.starts_with(&format!("{}:", cfg.display())),
            "file:line: first: {line}"
        );
    }
    // serve refuses to start on it.
    let o = postern().args(["serve", "-c"]).arg(&cfg).output().unwrap();
    assert_eq!(o.status.code(), Some(78));
}
