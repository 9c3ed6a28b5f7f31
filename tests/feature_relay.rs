//! Issue 2, section 4: who may send what. The seed's
//! `smtpd_recipient_restrictions = permit_mynetworks, permit_sasl_authenticated,
//! reject_unauth_destination`: clients in trusted_networks may relay anywhere,
//! everyone else only to our own domains (554 5.7.1 Relay access denied).
//! Address tricks (`%`, `!`, source routes, quoted `@`, literals, odd
//! spellings of remote domains) must never open a relay.
//!
//! The harness trusts 127.0.0.1/32 only, so a client bound to 127.0.0.2 is
//! untrusted. Driven by swaks, Python's smtplib and raw SMTP.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::*;

const WAIT: Duration = Duration::from_secs(20);

fn swaks(srv: &Server, local_ip: &str, to: &str) -> (bool, String) {
    require("swaks");
    run(peer("swaks")
        .args(["--server", "127.0.0.1", "--port", &srv.port.to_string()])
        .args(["--local-interface", local_ip, "--helo", "client.test"])
        .args(["--from", "sender@client.test", "--to", to])
        .args(["--header", "Subject: relay test", "--body", "relay test\n"]))
}

/// (RCPT code, RCPT text, DATA code or 0) with smtplib from `source`.
fn smtplib_rcpt(srv: &Server, source: &str, rcpt: &str) -> (u16, String, u16) {
    let script = r#"
import smtplib, sys
s = smtplib.SMTP("127.0.0.1", int(sys.argv[1]), source_address=(sys.argv[2], 0), timeout=30)
s.ehlo("client.test")
s.mail("sender@client.test")
code, msg = s.rcpt(sys.argv[3])
data = 0
if code == 250:
    data, _ = s.data(b"Subject: smtplib relay test\r\n\r\nhello\r\n")
print("%d\t%d\t%s" % (code, data, msg.decode().replace("\n", " ")))
s.quit()
"#;
    let (ok, out) = run(python().args(["-c", script, &srv.port.to_string(), source, rcpt]));
    assert!(ok, "{out}");
    let mut f = out.trim().splitn(3, '\t');
    let code = f.next().unwrap().parse().unwrap();
    let data = f.next().unwrap().parse().unwrap();
    (code, f.next().unwrap_or("").to_string(), data)
}

fn queued_files(srv: &Server) -> Vec<PathBuf> {
    std::fs::read_dir(srv.queue_dir().join("messages"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

#[test]
fn untrusted_client_may_not_relay() {
    let srv = Server::start();
    let (ok, out) = swaks(&srv, "127.0.0.2", "someone@remote.test");
    assert!(!ok, "swaks from 127.0.0.2 must fail:\n{out}");
    assert!(
        out.contains("554 5.7.1 <someone@remote.test>: Relay access denied"),
        "{out}"
    );

    let (code, text, data) = smtplib_rcpt(&srv, "127.0.0.2", "someone@remote.test");
    assert_eq!((code, data), (554, 0), "{text}");
    assert!(
        text.starts_with("5.7.1") && text.contains("Relay access denied"),
        "{text}"
    );

    let log = srv.log();
    assert!(
        log.contains("NOQUEUE: reject: RCPT from unknown[127.0.0.2]: 554 5.7.1"),
        "the refusal is logged with the client:\n{log}"
    );
    assert!(queued_files(&srv).is_empty(), "nothing queued");
}

#[test]
fn trusted_client_may_relay_and_the_message_stays_queued() {
    let srv = Server::start();
    let (ok, out) = swaks(&srv, "127.0.0.1", "someone@remote.test");
    assert!(ok, "swaks from 127.0.0.1 (trusted):\n{out}");
    let id = queue_id_in(&out).expect("queue ID");

    let (code, text, data) = smtplib_rcpt(&srv, "127.0.0.1", "other@REMOTE.test");
    assert_eq!((code, data), (250, 250), "{text}");

    assert!(
        srv.wait_log(&format!("{id}: to=<someone@remote.test>"), WAIT),
        "{}",
        srv.log()
    );
    let log = srv.log();
    let line = log
        .lines()
        .find(|l| l.contains(&format!("{id}: to=<someone@remote.test>")))
        .unwrap();
    assert!(
        line.contains("status=deferred"),
        "no DNS for remote.test in tests: deferred, {line}"
    );
    assert!(
        srv.queue_dir().join("messages").join(&id).is_file(),
        "stays in queue/messages"
    );
    assert!(!log.contains(&format!("{id}: removed")), "{log}");
}

/// RCPT arguments that try to smuggle a remote destination past the relay
/// check. Each must be refused for an untrusted client.
const TRICKS: &[&str] = &[
    "<user%remote.test@example.test>",
    "<remote.test!user@example.test>",
    "<user%remote.test@localhost>",
    "<remote.test!user@localhost>",
    "<user%remote.test@mx.example.test>",
    "<@example.test:user@remote.test>",
    "<@example.test,@mx.example.test:user@remote.test>",
    "<@localhost:user@remote.test>",
    "<\"user@remote.test\"@example.test>",
    "<\"user%remote.test\"@example.test>",
    "<\"user@remote.test\"@localhost>",
    "<\"user@remote.test\"@catchall.test>",
    "<user@remote.test@example.test>",
    "<user@[127.0.0.1]>",
    "<user@[127.0.0.2]>",
    "<user@[IPv6:::1]>",
    "<user@remote.test.>",
    "<user@REMOTE.TEST>",
    "<user@Remote.Test.>",
    "<USER%REMOTE.TEST@EXAMPLE.TEST>",
    "<user@remote.test>",
    "user@remote.test",
    "<user@remote.test> ",
    "<user@inactive.test>",
    "<user@example.test.remote.test>",
];

#[test]
fn address_tricks_never_open_a_relay() {
    let srv = Server::start();
    let mut ids = Vec::new();
    let mut accepted = Vec::new();
    for trick in TRICKS {
        let mut c = srv.smtp_untrusted();
        c.hello();
        c.expect("MAIL FROM:<sender@client.test>", "250");
        let r = c.cmd(&format!("RCPT TO:{trick}"));
        if r.code < 400 {
            accepted.push(format!("RCPT TO:{trick} -> {}", r.first));
        }
        // A real recipient in the same transaction: the message is queued,
        // and its envelope must hold alice alone.
        c.expect("RCPT TO:<alice@example.test>", "250");
        c.expect("DATA", "354");
        c.send(message("trick", &format!("{trick}\r\n")).as_bytes());
        let r = c.cmd("\r\n.");
        assert!(r.first.starts_with("250"), "{trick}: {r:?}");
        ids.push(queue_id_in(&r.first).unwrap());
        c.cmd("QUIT");
    }
    assert!(
        accepted.is_empty(),
        "relay tricks accepted:\n{}",
        accepted.join("\n")
    );
    for id in &ids {
        assert!(
            srv.wait_log(&format!("{id}: removed"), WAIT),
            "{id}:\n{}",
            srv.log()
        );
    }
    let log = srv.log();
    for l in log.lines().filter(|l| l.contains(": to=<")) {
        assert!(
            l.contains("to=<alice@example.test>"),
            "delivered somewhere else: {l}"
        );
        assert!(l.contains("status=sent"), "{l}");
    }
    assert!(!log.contains("status=deferred"), "{log}");
    assert!(
        log.lines()
            .all(|l| !l.contains("nrcpt=") || l.contains("nrcpt=1 ")),
        "{log}"
    );
    assert!(
        queued_files(&srv).is_empty(),
        "left in the queue: {:?}",
        queued_files(&srv)
    );
    assert_eq!(
        maildir_files(&srv.mailbox("example.test/alice/")).len(),
        TRICKS.len()
    );
}

/// Tricks inside an address that is ours are only characters of a local
/// part: a catch-all takes them like any other name, and a source route
/// is dropped (RFC 5321 appendix C). The mail stays here.
#[test]
fn accepted_odd_addresses_are_delivered_here_not_relayed() {
    let srv = Server::start();
    let alice = srv.mailbox("example.test/alice/");
    let cases = [
        "<user%remote.test@catchall.test>",
        "<remote.test!user@catchall.test>",
        "<@remote.test:alice@example.test>",
        "<@remote.test,@other.test:postmaster@example.test>",
    ];
    let mut ids = Vec::new();
    for rcpt in cases {
        let mut c = srv.smtp_untrusted();
        c.hello();
        c.expect("MAIL FROM:<sender@client.test>", "250");
        c.expect(&format!("RCPT TO:{rcpt}"), "250");
        c.expect("DATA", "354");
        c.send(message("odd", rcpt).as_bytes());
        let r = c.cmd("\r\n.");
        assert!(r.first.starts_with("250"), "{rcpt}: {r:?}");
        ids.push(queue_id_in(&r.first).unwrap());
    }
    for id in &ids {
        assert!(
            srv.wait_log(&format!("{id}: removed"), WAIT),
            "{id}:\n{}",
            srv.log()
        );
    }
    assert_eq!(wait_maildir(&alice, cases.len(), WAIT).len(), cases.len());
    let log = srv.log();
    assert!(!log.contains("status=deferred"), "{log}");
    assert!(!log.contains("to=<user@remote.test>"), "{log}");
    assert!(queued_files(&srv).is_empty());
}

/// Even a trusted client's `%` and `!` are local-part characters: they
/// are not rewritten into a route (no percent hack).
#[test]
fn percent_hack_is_not_a_route_even_for_trusted_clients() {
    let srv = Server::start();
    let mut c = srv.smtp();
    c.hello();
    for rcpt in [
        "<user%remote.test@example.test>",
        "<remote.test!user@example.test>",
    ] {
        c.expect("MAIL FROM:<sender@client.test>", "250");
        let r = c.cmd(&format!("RCPT TO:{rcpt}"));
        assert!(r.first.starts_with("550 5.1.1"), "{rcpt}: {r:?}");
        c.expect("RSET", "250");
    }
}
