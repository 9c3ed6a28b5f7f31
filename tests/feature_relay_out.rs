//! Sending mail onward by MX, end to end: the real binary, a real dnsmasq
//! on a high loopback port holding the `.test` zone of each test, and
//! aiosmtpd sinks as the MX hosts, each on an address of its own in
//! 127.0.0.0/8 and all on `[relay] port`, so which host got a message is
//! which sink stored it. A private Postfix is the receiving MTA of one
//! test.
//!
//! Covers: MX preference order, the next MX when one refuses, equal
//! preferences shared out, every MX down (the destination is left alone
//! for a while); null MX, NXDOMAIN and SERVFAIL; an MX that is ourselves
//! (by address and by name); backup MX for a `backupmx = 1` domain; the
//! attempt's log line (host, address, port, TLS version, the reply) and
//! `postern queue list` (last reply, next attempt); Postfix receiving over
//! STARTTLS.
//!
//! dnsmasq, python3 with aiosmtpd and Postfix are required: a missing one
//! fails the test. Nothing here reaches the machine's resolver or a real
//! MX: postern asks only the test's dnsmasq, which answers only `.test`.

mod common;
#[path = "common/dnsmasq.rs"]
mod dnsmasq;
#[path = "common/relay.rs"]
mod relay;
#[path = "common/smtp_peers.rs"]
mod smtp_peers;

use common::*;
use dnsmasq::{Dnsmasq, Fake, FakeDns};
use relay::*;
use smtp_peers::{opts, sinks_on_one_port, Certs};

fn dns(records: &[&str]) -> Dnsmasq {
    let r: Vec<String> = records.iter().map(|s| s.to_string()).collect();
    Dnsmasq::start(&r)
}

#[test]
fn mx_hosts_are_tried_in_preference_order_then_the_next_one() {
    let d = dns(&[
        "mx-host=order.test,mx1.order.test,10",
        "mx-host=order.test,mx2.order.test,20",
        "mx-host=order.test,mx3.order.test,30",
        "host-record=mx1.order.test,127.0.0.2",
        "host-record=mx2.order.test,127.0.0.3",
        "host-record=mx3.order.test,127.0.0.4",
        "mx-host=equal.test,a.equal.test,10",
        "mx-host=equal.test,b.equal.test,10",
        "host-record=a.equal.test,127.0.0.5",
        "host-record=b.equal.test,127.0.0.6",
    ]);
    let (port, mut sinks) = sinks_on_one_port(&[
        ("127.0.0.2", vec![]),
        ("127.0.0.3", vec![]),
        ("127.0.0.5", vec![]),
        ("127.0.0.6", vec![]),
    ]);
    let srv = builder(d.addr, port).start();

    // The best MX gets it.
    let id = send(&srv, "alice@example.test", &["rcpt@order.test"], "first");
    let line = final_line(&srv, &id, "rcpt@order.test");
    assert!(
        line.contains(&format!("relay=mx1.order.test[127.0.0.2]:{port}, "))
            && line.contains("dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as SINK1)"),
        "{line}"
    );
    let got = sinks[0].wait_received(1, WAIT);
    assert_eq!(got.len(), 1);
    assert_eq!(
        (got[0].from.as_str(), &got[0].rcpts[..]),
        ("alice@example.test", &["rcpt@order.test".to_string()][..])
    );
    let content = String::from_utf8_lossy(&got[0].content);
    assert!(
        content.contains("Subject: first\r\n") && content.contains("Received: "),
        "{content}"
    );
    assert!(sinks[1].received().is_empty());

    // mx1 goes away: the next message goes to mx2, in the same attempt.
    let mx1 = sinks.remove(0);
    drop(mx1);
    let id = send(&srv, "alice@example.test", &["rcpt@order.test"], "second");
    let line = final_line(&srv, &id, "rcpt@order.test");
    assert!(
        line.contains(&format!("relay=mx2.order.test[127.0.0.3]:{port}, "))
            && line.contains("status=sent"),
        "{line}\n{}",
        srv.log()
    );
    assert_eq!(
        sinks[0].wait_received(1, WAIT).len(),
        1,
        "mx2 got the second message"
    );
    assert_eq!(
        lines_with(&srv, &[&id, "status="]).len(),
        1,
        "one attempt, one line: {}",
        srv.log()
    );

    // Every MX down: deferred with the last host's error; the whole
    // destination is then left alone for a while, and the next message
    // for it is deferred at once, naming why.
    let mx2 = sinks.remove(0);
    drop(mx2);
    let id = send(&srv, "alice@example.test", &["rcpt@order.test"], "third");
    let line = wait_line(&srv, &[&id, "status=deferred"]);
    assert!(
        line.contains(&format!("relay=mx3.order.test[127.0.0.4]:{port}, "))
            && line.contains(&format!(
                "dsn=4.4.1, status=deferred (connect to mx3.order.test[127.0.0.4]:{port}: Connection refused)"
            )),
        "{line}"
    );
    let id = send(&srv, "alice@example.test", &["rcpt@order.test"], "fourth");
    let line = wait_line(&srv, &[&id, "status=deferred"]);
    assert!(
        line.contains("status=deferred (delivery temporarily suspended: connect to mx3.order.test"),
        "{line}"
    );
    assert!(
        srv.queue_dir().join("messages").join(&id).is_file(),
        "still queued"
    );

    // Equal preferences are shared out: over 24 messages, each of the two
    // hosts gets some (all to one: a chance of 2^-23).
    for i in 0..24 {
        send(
            &srv,
            "alice@example.test",
            &["rcpt@equal.test"],
            &format!("equal {i}"),
        );
    }
    let (a, b) = (&sinks[0], &sinks[1]);
    let deadline = std::time::Instant::now() + WAIT;
    while a.received().len() + b.received().len() < 24 {
        assert!(std::time::Instant::now() < deadline, "{}", srv.log());
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let (na, nb) = (a.received().len(), b.received().len());
    eprintln!("equal preferences: a got {na}, b got {nb}");
    assert_eq!(na + nb, 24, "nothing lost or duplicated");
    assert!(
        na > 0 && nb > 0,
        "a {na}, b {nb}: equal MX hosts are not shuffled"
    );
}

#[test]
fn null_mx_and_nxdomain_bounce_at_once_servfail_waits() {
    let d = dns(&["mx-host=nullmx.test,.,0"]);
    let srv = builder(d.addr, 25).start();
    let id = send(
        &srv,
        "alice@example.test",
        &["x@nullmx.test", "y@nosuch.test"],
        "nowhere",
    );
    let null = final_line(&srv, &id, "x@nullmx.test");
    assert!(
        null.contains(
            "dsn=5.1.10, status=bounced (Domain nullmx.test does not accept mail (nullMX))"
        ),
        "{null}"
    );
    let nx = final_line(&srv, &id, "y@nosuch.test");
    assert!(
        nx.contains("dsn=5.4.4, status=bounced (Host or domain name not found. Name service error for name=nosuch.test type=MX: Host not found)"),
        "{nx}"
    );
    // One attempt: final answers are not retried.
    assert_eq!(lines_with(&srv, &[&id, "to=<x@nullmx.test>"]).len(), 1);
    let bounce = wait_line(&srv, &[&id, "sender non-delivery notification: "]);
    let bounce_id = id_after(&bounce, "notification: ");
    final_line(&srv, &bounce_id, "alice@example.test");
    let files = wait_maildir(&srv.mailbox("example.test/alice/"), 1, WAIT);
    let p = Parsed::of(&files[0]);
    assert_eq!(p.get("rcpt status"), "5.1.10", "{}", p.0);
    assert_eq!(p.all("rcpt status"), ["5.1.10", "5.4.4"], "{}", p.0);
    wait_queue_empty(&srv);

    // A name server that fails (SERVFAIL): a temporary failure.
    let fake = FakeDns::start(Fake::ServFail);
    let srv = builder(fake.addr, 25).start();
    let id = send(&srv, "alice@example.test", &["x@servfail.test"], "later");
    let line = wait_line(&srv, &[&id, "status=deferred"]);
    assert!(
        line.contains("dsn=4.4.3, status=deferred (Host or domain name not found. Name service error for name=servfail.test type=MX: Host not found, try again"),
        "{line}"
    );
    assert!(srv.queue_dir().join("messages").join(&id).is_file());
}

#[test]
fn an_mx_that_is_ourselves_is_a_loop() {
    let d = dns(&[
        // By address: our listener is on 127.0.0.1.
        "mx-host=selfloop.test,mx.selfloop.test,10",
        "host-record=mx.selfloop.test,127.0.0.1",
        // By name: our hostname is mx.example.test.
        "mx-host=byname.test,mx.example.test,10",
        "host-record=mx.example.test,127.0.0.9",
        // We are the best MX; a worse one would loop back to us too.
        "mx-host=ourfirst.test,mx.selfloop.test,10",
        "mx-host=ourfirst.test,mx2.ourfirst.test,20",
        "host-record=mx2.ourfirst.test,127.0.0.3",
        // We are second: only the better one is used.
        "mx-host=oursecond.test,mx1.oursecond.test,10",
        "mx-host=oursecond.test,mx.selfloop.test,20",
        "host-record=mx1.oursecond.test,127.0.0.2",
    ]);
    let (port, sinks) = sinks_on_one_port(&[("127.0.0.2", vec![]), ("127.0.0.3", vec![])]);
    let srv = builder(d.addr, port).start();
    let to = [
        "a@selfloop.test",
        "b@byname.test",
        "c@ourfirst.test",
        "d@oursecond.test",
    ];
    let id = send(&srv, "alice@example.test", &to, "loops");
    for domain in ["selfloop.test", "byname.test", "ourfirst.test"] {
        let rcpt = to.iter().find(|r| r.ends_with(domain)).unwrap();
        let line = final_line(&srv, &id, rcpt);
        assert!(
            line.contains(&format!(
                "dsn=5.4.6, status=bounced (mail for {domain} loops back to myself)"
            )),
            "{line}"
        );
    }
    let line = final_line(&srv, &id, "d@oursecond.test");
    assert!(
        line.contains(&format!("relay=mx1.oursecond.test[127.0.0.2]:{port}, "))
            && line.contains("status=sent"),
        "{line}"
    );
    assert_eq!(
        sinks[0].wait_received(1, WAIT)[0].rcpts,
        ["d@oursecond.test"]
    );
    // The attempt is over: the MX worse than us was never tried.
    wait_line(&srv, &[&id, "sender non-delivery notification"]);
    assert!(sinks[1].received().is_empty() && sinks[1].count("connect") == 0);
    let files = wait_maildir(&srv.mailbox("example.test/alice/"), 1, WAIT);
    let p = Parsed::of(&files[0]);
    assert_eq!(p.all("rcpt status"), ["5.4.6", "5.4.6", "5.4.6"], "{}", p.0);
}

#[test]
fn a_backup_mx_relays_only_to_better_mx_hosts() {
    // backup.test is `backupmx = 1` in the fixture: we are its MX 20.
    let d = dns(&[
        "mx-host=backup.test,mx1.backup.test,10",
        "mx-host=backup.test,mx.example.test,20",
        "mx-host=backup.test,mx3.backup.test,30",
        "host-record=mx1.backup.test,127.0.0.2",
        "host-record=mx.example.test,127.0.0.1",
        "host-record=mx3.backup.test,127.0.0.3",
    ]);
    let (port, mut sinks) = sinks_on_one_port(&[("127.0.0.2", vec![]), ("127.0.0.3", vec![])]);
    let srv = builder(d.addr, port).start();
    // From a stranger (127.0.0.2 is not trusted): accepted for backup.test.
    let mut c = srv.smtp_untrusted();
    c.hello();
    let r = c.send_mail(
        "someone@far.test",
        &["user@backup.test"],
        &message("held for the primary", "x\r\n"),
    );
    assert_eq!(r.code, 250, "{r:?}");
    c.expect("QUIT", "221");
    let id = queue_id_in(&r.first).unwrap();
    let line = final_line(&srv, &id, "user@backup.test");
    assert!(
        line.contains(&format!("relay=mx1.backup.test[127.0.0.2]:{port}, ")),
        "{line}"
    );
    assert_eq!(sinks[0].wait_received(1, WAIT)[0].from, "someone@far.test");

    // The primary is down: the mail waits for it and never goes to the
    // MX behind us.
    drop(sinks.remove(0));
    let id = send(
        &srv,
        "alice@example.test",
        &["user@backup.test"],
        "primary down",
    );
    let line = wait_line(&srv, &[&id, "status=deferred"]);
    assert!(
        line.contains(&format!(
            "(connect to mx1.backup.test[127.0.0.2]:{port}: Connection refused)"
        )),
        "{line}"
    );
    assert_eq!(
        sinks[0].count("connect"),
        0,
        "mx3 (worse than us) was never tried"
    );
    let (ok, out) = queue_cmd(&srv, &["list"]);
    assert!(
        ok && out.contains(&id) && out.contains("user@backup.test"),
        "{out}"
    );
}

#[test]
fn each_attempt_is_logged_and_queue_list_shows_the_last_reply() {
    let certs = Certs::new(&["mx1.grey.test"]);
    let d = dns(&[
        "mx-host=grey.test,mx1.grey.test,10",
        "host-record=mx1.grey.test,127.0.0.2",
    ]);
    let mut sink_opts = certs.sink_args();
    sink_opts.extend(opts(&["--defer-rcpt", "late"]));
    let (port, sinks) = sinks_on_one_port(&[("127.0.0.2", sink_opts)]);
    let srv = builder(d.addr, port)
        .set("queue", "min_backoff = \"1h\"")
        .set("queue", "max_backoff = \"2h\"")
        .start();
    let id = send(
        &srv,
        "alice@example.test",
        &["late@grey.test", "now@grey.test"],
        "greylisted",
    );
    let now = final_line(&srv, &id, "now@grey.test");
    let late = wait_line(&srv, &[&id, "to=<late@grey.test>", "status=deferred"]);
    let relay = format!("relay=mx1.grey.test[127.0.0.2]:{port}, ");
    for l in [&now, &late] {
        assert!(l.contains(&relay) && l.contains(", tls=TLSv1.3, "), "{l}");
    }
    assert!(
        late.contains(
            "dsn=4.2.0, status=deferred (host mx1.grey.test[127.0.0.2] said: 450 4.2.0 \
             <late@grey.test>: Recipient address rejected: Greylisted (in reply to RCPT TO command))"
        ),
        "{late}"
    );
    assert!(
        now.contains("dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as SINK1)"),
        "{now}"
    );
    let got = sinks[0].wait_received(1, WAIT);
    assert_eq!(got[0].rcpts, ["now@grey.test"]);
    assert!(got[0].tls);

    // queue list: per recipient still queued, the reply and the next attempt.
    let (ok, out) = queue_cmd(&srv, &["list"]);
    assert!(ok, "{out}");
    assert!(
        out.contains("(4.2.0 host mx1.grey.test[127.0.0.2] said: 450 4.2.0 <late@grey.test>: Recipient address rejected: Greylisted (in reply to RCPT TO command); next attempt "),
        "{out}"
    );
    assert!(
        out.contains("late@grey.test") && !out.contains("now@grey.test"),
        "{out}"
    );
    let (ok, json) = queue_cmd(&srv, &["list", "--json"]);
    assert!(
        ok && json.contains("\"next_attempt\": \"") && json.contains("Greylisted"),
        "{json}"
    );
}

#[test]
fn postfix_receives_what_postern_relays() {
    if !nix::unistd::geteuid().is_root() {
        skip_unless_ci(
            "postfix_receives_what_postern_relays",
            "Postfix's master must start as root",
        );
        return;
    }
    let certs = Certs::new(&["postfix.pf.test"]);
    let d = dns(&[
        "mx-host=pf.test,postfix.pf.test,10",
        "host-record=postfix.pf.test,127.0.0.7",
    ]);
    let port = smtp_peers::free_port();
    let pf = smtp_peers::Postfix::start(
        "127.0.0.7",
        port,
        "pf.test",
        Some((&certs.cert(), &certs.key())),
    );
    let srv = builder(d.addr, port).start();
    let id = send(
        &srv,
        "alice@example.test",
        &["someone@pf.test"],
        "to Postfix",
    );
    let line = final_line(&srv, &id, "someone@pf.test");
    assert!(
        line.contains(&format!("relay=postfix.pf.test[127.0.0.7]:{port}, "))
            && line.contains("tls=TLSv1.3")
            && line.contains("status=sent (250 2.0.0 Ok: queued as "),
        "{line}\n{}",
        pf.log()
    );
    let files = wait_maildir(&pf.maildir(), 1, WAIT);
    assert_eq!(files.len(), 1, "{}", pf.log());
    let text = std::fs::read_to_string(&files[0]).unwrap();
    assert!(
        text.starts_with("Return-Path: <alice@example.test>\n"),
        "{text}"
    );
    assert!(text.contains("Delivered-To: someone@pf.test\n"), "{text}");
    assert!(
        text.contains("Subject: to Postfix\n") && text.contains("sent onward by the relay tests\n"),
        "{text}"
    );
    // Postfix's own Received: line says it came from us over TLS.
    assert!(
        text.contains("from mx.example.test (") && text.contains("(using TLSv1.3 with cipher"),
        "{text}"
    );
    // Our Received: line is below Postfix's, as it travelled.
    let ours = text.find("by mx.example.test").expect("our Received:");
    let theirs = text
        .find("by postfix.pf.test")
        .expect("Postfix's Received:");
    assert!(theirs < ours, "{text}");
    drop(pf);
}
