//! Retrying and giving up politely, end to end: the real binary with short
//! backoffs, dnsmasq for the MX records, aiosmtpd sinks that greylist,
//! raw servers that refuse or record the exact bytes they were sent, and
//! Postfix's smtp-sink as a fast remote next to a hung one.
//!
//! Covers: the retry schedule (1 s, then 2 s) with per-recipient state (a
//! recipient accepted at the first attempt is never sent again); one delay
//! notice after `delay_warning`, then the bounce at the end of the
//! lifetime, both RFC 3464 reports that Python's `email` package parses;
//! bounces sent from the null sender with CRLF line ends only; a bounce
//! that cannot be delivered goes to the postmaster once, and a report to
//! the postmaster that fails is dropped, never bounced again; a hung
//! remote host next to local mail and another remote that keep flowing.
//!
//! dnsmasq, python3 with aiosmtpd and smtp-sink (package postfix) are
//! required: a missing one fails the test.

mod common;
#[path = "common/dnsmasq.rs"]
mod dnsmasq;
#[path = "common/relay.rs"]
mod relay;
#[path = "common/smtp_peers.rs"]
mod smtp_peers;

use std::time::{Duration, Instant};

use common::*;
use dnsmasq::Dnsmasq;
use relay::*;
use smtp_peers::{normal, opts, sinks_on_one_port, Answer, RawSmtp, SmtpSink};

fn dns(records: &[&str]) -> Dnsmasq {
    let r: Vec<String> = records.iter().map(|s| s.to_string()).collect();
    Dnsmasq::start(&r)
}

/// When each log line holding all of `needles` was first seen, until `n`
/// of them were (polling every 10 ms).
fn watch(srv: &Server, needles: &[&str], n: usize) -> Vec<Instant> {
    let deadline = Instant::now() + WAIT;
    let mut seen = Vec::new();
    while seen.len() < n {
        let count = lines_with(srv, needles).len();
        while seen.len() < count.min(n) {
            seen.push(Instant::now());
        }
        assert!(
            Instant::now() < deadline,
            "saw {needles:?} {} of {n} times:\n{}",
            seen.len(),
            srv.log()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    seen
}

/// A raw server bound to `ip` on a free port.
fn raw_on(ip: &str, script: impl Fn(&str) -> Answer + Send + Sync + Clone + 'static) -> RawSmtp {
    for _ in 0..5 {
        if let Ok(s) = RawSmtp::start(&format!("{ip}:{}", smtp_peers::free_port()), script.clone())
        {
            return s;
        }
    }
    panic!("no free port on {ip}");
}

#[test]
fn greylisted_mail_is_retried_on_schedule_and_each_recipient_sent_once() {
    let d = dns(&[
        "mx-host=grey.test,mx1.grey.test,10",
        "host-record=mx1.grey.test,127.0.0.2",
    ]);
    // The first three RCPTs for grey* are greylisted, then accepted.
    let (port, sinks) = sinks_on_one_port(&[(
        "127.0.0.2",
        opts(&["--defer-rcpt", "grey", "--defer-times", "3"]),
    )]);
    let srv = builder(d.addr, port).start();
    let id = send(
        &srv,
        "alice@example.test",
        &["ok@grey.test", "grey@grey.test"],
        "greylisted",
    );
    let deferred = watch(&srv, &[&id, "to=<grey@grey.test>", "status=deferred"], 3);
    let sent = final_line(&srv, &id, "grey@grey.test");
    let delivered = Instant::now();
    assert!(sent.contains("status=sent"), "{sent}");
    wait_line(&srv, &[&id, "removed"]);
    // Gaps: 1 s, then 2 s (min_backoff doubling up to max_backoff), give
    // or take the queue's whole-second clock; slack for a loaded machine.
    let mut times = deferred.clone();
    times.push(delivered);
    let gaps: Vec<f64> = times
        .windows(2)
        .map(|w| (w[1] - w[0]).as_secs_f64())
        .collect();
    eprintln!("seconds between attempts: {gaps:.2?}");
    for (gap, nominal) in gaps.iter().zip([1.0, 2.0, 2.0]) {
        assert!(*gap >= nominal - 1.0 && *gap <= nominal + 3.0, "{gaps:?}");
    }
    // ok@ was accepted at the first attempt and never sent again.
    let got = sinks[0].wait_received(2, WAIT);
    let rcpts: Vec<Vec<String>> = got.iter().map(|m| m.rcpts.clone()).collect();
    assert_eq!(
        rcpts,
        [
            vec!["ok@grey.test".to_string()],
            vec!["grey@grey.test".to_string()]
        ]
    );
    assert_eq!(lines_with(&srv, &[&id, "to=<ok@grey.test>"]).len(), 1);
    let asked: Vec<String> = sinks[0]
        .events()
        .into_iter()
        .filter(|e| e.contains(" ok@grey.test "))
        .collect();
    assert_eq!(asked.len(), 1, "{asked:?}");
}

#[test]
fn one_delay_notice_then_a_bounce_at_the_end_of_the_lifetime() {
    let d = dns(&[
        "mx-host=grey.test,mx1.grey.test,10",
        "host-record=mx1.grey.test,127.0.0.2",
    ]);
    let (port, _sinks) = sinks_on_one_port(&[("127.0.0.2", opts(&["--defer-rcpt", "grey"]))]);
    let srv = builder(d.addr, port)
        .set("queue", "delay_warning = \"2s\"")
        .set("queue", "max_lifetime = \"7s\"")
        .start();
    let id = send(&srv, "alice@example.test", &["grey@grey.test"], "slow one");
    let delay = wait_line(&srv, &[&id, "sender delay notification: "]);
    let bounce = wait_line(&srv, &[&id, "sender non-delivery notification: "]);
    wait_line(&srv, &[&id, "removed"]);
    let expired = final_line(&srv, &id, "grey@grey.test");
    assert!(
        expired.contains("dsn=5.4.7, status=bounced (delivery time expired; last problem: host mx1.grey.test[127.0.0.2] said: 450 4.2.0"),
        "{expired}"
    );
    let attempts = lines_with(&srv, &[&id, "to=<grey@grey.test>", "status=deferred"]).len();
    assert!(attempts >= 3, "retried meanwhile: {}", srv.log());
    assert_eq!(
        lines_with(&srv, &[&id, "delay notification"]).len(),
        1,
        "one delay notice only"
    );
    for notice in [&delay, &bounce] {
        final_line(
            &srv,
            &id_after(notice, "notification: "),
            "alice@example.test",
        );
    }
    let files = wait_maildir(&srv.mailbox("example.test/alice/"), 2, WAIT);
    assert_eq!(files.len(), 2);
    let parsed: Vec<Parsed> = files.iter().map(|f| Parsed::of(f)).collect();
    let by_action = |a: &str| {
        parsed
            .iter()
            .find(|p| p.get("rcpt action") == a)
            .unwrap_or_else(|| panic!("no {a} report"))
    };
    for p in &parsed {
        assert_eq!(p.get("content-type"), "multipart/report", "{}", p.0);
        assert_eq!(p.get("report-type"), "delivery-status", "{}", p.0);
        assert_eq!(p.get("defects"), "0", "{}", p.0);
        assert_eq!(
            p.get("return-path"),
            "<>",
            "sent from the null sender: {}",
            p.0
        );
        assert_eq!(p.get("auto-submitted"), "auto-replied");
        assert_eq!(
            p.get("parts"),
            "text/plain message/delivery-status text/rfc822-headers",
            "{}",
            p.0
        );
        assert_eq!(p.get("blocks"), "2", "{}", p.0);
        assert_eq!(p.get("reporting-mta"), "dns; mx.example.test");
        assert_eq!(p.get("rcpt final-recipient"), "rfc822; grey@grey.test");
        assert_eq!(p.get("rcpt remote-mta"), "dns; mx1.grey.test", "{}", p.0);
        assert_eq!(
            p.get("rcpt diagnostic-code"),
            "smtp; 450 4.2.0 <grey@grey.test>: Recipient address rejected: Greylisted",
            "{}",
            p.0
        );
        assert!(
            p.all("returned").contains(&"Subject: slow one".to_string()),
            "{}",
            p.0
        );
        assert!(
            !p.0.contains("sent onward by the relay tests"),
            "headers only, no body: {}",
            p.0
        );
    }
    let d = by_action("delayed");
    assert_eq!(d.get("subject"), "Delayed Mail (still being retried)");
    assert_eq!(d.get("rcpt status"), "4.2.0");
    assert!(!d.get("rcpt will-retry-until").is_empty());
    let b = by_action("failed");
    assert_eq!(b.get("subject"), "Undelivered Mail Returned to Sender");
    assert_eq!(b.get("rcpt status"), "5.4.7");
    assert!(b.all("rcpt will-retry-until").is_empty());
}

/// A remote server that refuses these recipients with 550 (and records
/// what it was sent).
fn refusing(
    prefixes: &'static [&'static str],
) -> impl Fn(&str) -> Answer + Send + Sync + Clone + 'static {
    move |l: &str| {
        let lower = l.to_ascii_lowercase();
        if lower.starts_with("rcpt to:<") && prefixes.iter().any(|p| lower[9..].starts_with(p)) {
            return Answer::Send(b"550 5.1.1 No such user here\r\n".to_vec());
        }
        normal(l)
    }
}

/// The data as sent has CRLF line ends only, and ends with CRLF.CRLF.
fn crlf_only(data: &[u8]) -> bool {
    data.iter().enumerate().all(|(i, &b)| match b {
        b'\n' => i > 0 && data[i - 1] == b'\r',
        b'\r' => data.get(i + 1) == Some(&b'\n'),
        _ => true,
    }) && data.ends_with(b"\r\n.\r\n")
}

#[test]
fn bounces_leave_from_the_null_sender_with_crlf_line_ends() {
    let rej = raw_on("127.0.0.2", refusing(&["nobody@"]));
    let far = raw_on("127.0.0.3", refusing(&[]));
    let d = dns(&[
        "mx-host=rej.test,mx.rej.test,10",
        "host-record=mx.rej.test,127.0.0.2",
        "mx-host=far.test,mx.far.test,10",
        "host-record=mx.far.test,127.0.0.3",
    ]);
    let srv = with_mx_ports(
        builder(d.addr, 25),
        &[("rej.test", &rej), ("far.test", &far)],
    )
    .start();
    let id = send(&srv, "someone@far.test", &["nobody@rej.test"], "bounce me");
    let line = final_line(&srv, &id, "nobody@rej.test");
    assert!(line.contains("dsn=5.1.1, status=bounced (host mx.rej.test[127.0.0.2] said: 550 5.1.1 No such user here (in reply to RCPT TO command))"), "{line}");
    let bounce = id_after(
        &wait_line(&srv, &[&id, "sender non-delivery notification: "]),
        "notification: ",
    );
    let sent = final_line(&srv, &bounce, "someone@far.test");
    assert!(
        sent.contains("relay=mx.far.test[127.0.0.3]") && sent.contains("status=sent"),
        "{sent}"
    );
    let commands = far.commands();
    assert!(
        commands
            .iter()
            .any(|c| c == "MAIL FROM:<>" || c.starts_with("MAIL FROM:<> ")),
        "{commands:?}"
    );
    let data = far.data();
    assert_eq!(data.len(), 1);
    assert!(
        crlf_only(&data[0]),
        "a bare CR or LF went out:\n{:?}",
        String::from_utf8_lossy(&data[0])
    );
    let text = String::from_utf8_lossy(&data[0]);
    assert!(
        text.contains("Content-Type: multipart/report; report-type=delivery-status;"),
        "{text}"
    );
    assert!(
        text.contains("Diagnostic-Code: smtp; 550 5.1.1 No such user here\r\n"),
        "{text}"
    );
}

/// Routes that send `domain`'s mail to that raw server's port (raw servers
/// each have a port of their own, MX delivery uses one port for all).
fn with_mx_ports(b: ServerBuilder, servers: &[(&str, &RawSmtp)]) -> ServerBuilder {
    let tables: Vec<String> = servers
        .iter()
        .map(|(domain, s)| {
            format!(
                "domain = \"{domain}\"\nprimary = \"mx.{domain}:{}\"",
                s.addr.port()
            )
        })
        .collect();
    b.set("[relay.route]", &tables.join("\n\n[[relay.route]]\n"))
}

#[test]
fn an_undeliverable_bounce_goes_to_the_postmaster_once() {
    let rej = raw_on("127.0.0.2", refusing(&["nobody@"]));
    let gone = raw_on("127.0.0.3", refusing(&["someone@"]));
    let d = dns(&[
        "mx-host=rej.test,mx.rej.test,10",
        "host-record=mx.rej.test,127.0.0.2",
        "mx-host=gone.test,mx.gone.test,10",
        "host-record=mx.gone.test,127.0.0.3",
    ]);
    let srv = with_mx_ports(
        builder(d.addr, 25),
        &[("rej.test", &rej), ("gone.test", &gone)],
    )
    .start();
    let id = send(
        &srv,
        "someone@gone.test",
        &["nobody@rej.test"],
        "nobody wants it",
    );
    let bounce = id_after(
        &wait_line(&srv, &[&id, "sender non-delivery notification: "]),
        "notification: ",
    );
    let failed = final_line(&srv, &bounce, "someone@gone.test");
    assert!(failed.contains("dsn=5.1.1, status=bounced"), "{failed}");
    let pm = id_after(
        &wait_line(&srv, &[&bounce, "postmaster non-delivery notification: "]),
        "notification: ",
    );
    final_line(&srv, &pm, "postmaster@mx.example.test");
    wait_queue_empty(&srv);
    let files = wait_maildir(&srv.local_mailbox("postmaster"), 1, WAIT);
    assert_eq!(files.len(), 1, "{}", srv.log());
    let p = Parsed::of(&files[0]);
    assert_eq!(
        p.get("subject"),
        "Undeliverable delivery status notification"
    );
    assert_eq!(p.get("rcpt final-recipient"), "rfc822; someone@gone.test");
    assert_eq!(p.get("rcpt action"), "failed");
    // Each message tried once at its server: no loop.
    let rcpts = |s: &RawSmtp| {
        s.commands()
            .iter()
            .filter(|c| c.starts_with("RCPT"))
            .count()
    };
    assert_eq!((rcpts(&rej), rcpts(&gone)), (1, 1));
    assert_eq!(
        lines_with(&srv, &["non-delivery notification"]).len(),
        2,
        "{}",
        srv.log()
    );
}

#[test]
fn a_report_to_the_postmaster_that_fails_is_dropped() {
    let rej = raw_on("127.0.0.2", refusing(&["nobody@"]));
    let gone = raw_on("127.0.0.3", refusing(&["someone@", "pm@"]));
    let d = dns(&[
        "mx-host=rej.test,mx.rej.test,10",
        "host-record=mx.rej.test,127.0.0.2",
        "mx-host=gone.test,mx.gone.test,10",
        "host-record=mx.gone.test,127.0.0.3",
    ]);
    let srv = with_mx_ports(
        builder(d.addr, 25),
        &[("rej.test", &rej), ("gone.test", &gone)],
    )
    .aliases("postmaster: pm@gone.test\n")
    .start();
    let id = send(
        &srv,
        "someone@gone.test",
        &["nobody@rej.test"],
        "nobody at all",
    );
    let bounce = id_after(
        &wait_line(&srv, &[&id, "sender non-delivery notification: "]),
        "notification: ",
    );
    let pm = id_after(
        &wait_line(&srv, &[&bounce, "postmaster non-delivery notification: "]),
        "notification: ",
    );
    let line = final_line(&srv, &pm, "pm@gone.test");
    assert!(
        line.contains("orig_to=<postmaster@mx.example.test>") && line.contains("status=bounced"),
        "{line}"
    );
    wait_line(
        &srv,
        &[&pm, "undeliverable report to the postmaster dropped"],
    );
    wait_queue_empty(&srv);
    assert_eq!(
        lines_with(&srv, &["non-delivery notification"]).len(),
        2,
        "{}",
        srv.log()
    );
    let mails: Vec<String> = gone
        .commands()
        .into_iter()
        .filter(|c| c.starts_with("MAIL"))
        .collect();
    assert_eq!(
        mails.len(),
        2,
        "the bounce and the report, nothing more: {mails:?}"
    );
    assert!(
        mails.iter().all(|m| m.starts_with("MAIL FROM:<>")),
        "{mails:?}"
    );
}

#[test]
fn a_hung_remote_host_holds_up_neither_local_mail_nor_other_remotes() {
    let port = smtp_peers::free_port();
    let hung = RawSmtp::start(&format!("127.0.0.2:{port}"), |_| Answer::Silent).unwrap();
    let fast = SmtpSink::start_on("127.0.0.3", port);
    let d = dns(&[
        "mx-host=hung.test,mx.hung.test,10",
        "host-record=mx.hung.test,127.0.0.2",
        "mx-host=fast.test,mx.fast.test,10",
        "host-record=mx.fast.test,127.0.0.3",
    ]);
    let srv = builder(d.addr, port)
        .set("delivery", "direct = false")
        .set("relay", "command_timeout = \"300s\"")
        .start();
    let local = |srv: &Server, to: &str, n: usize| -> Duration {
        let t0 = Instant::now();
        let mut c = srv.smtp();
        c.hello();
        for i in 0..n {
            c.send_mail(
                "carol@example.test",
                &[to],
                &message(&format!("local {i}"), "x\r\n"),
            );
        }
        c.expect("QUIT", "221");
        let maildir = srv.mailbox(&format!("example.test/{}/", to.split('@').next().unwrap()));
        assert_eq!(wait_maildir(&maildir, n, WAIT).len(), n, "{}", srv.log());
        t0.elapsed()
    };
    // Local mail through the queue, nothing else going on.
    let base = local(&srv, "alice@example.test", 50);
    // Forty messages for the hung host: all its connection slots (10) are
    // taken and the rest wait for them.
    let mut c = srv.smtp();
    c.hello();
    for i in 0..40 {
        c.send_mail(
            "carol@example.test",
            &[&format!("u{i}@hung.test")],
            &message("hung", "x\r\n"),
        );
    }
    c.expect("QUIT", "221");
    let deadline = Instant::now() + WAIT;
    while hung.connections() < 10 {
        assert!(Instant::now() < deadline, "{}", srv.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    // Local mail and another remote meanwhile.
    let t0 = Instant::now();
    let mut c = srv.smtp();
    c.hello();
    for i in 0..50 {
        c.send_mail(
            "carol@example.test",
            &[&format!("r{i}@fast.test")],
            &message("fast", "x\r\n"),
        );
    }
    c.expect("QUIT", "221");
    let beside = local(&srv, "bob@example.test", 50);
    while fast.messages().len() < 50 {
        assert!(
            Instant::now() - t0 < WAIT,
            "{} of 50 reached smtp-sink:\n{}",
            fast.messages().len(),
            srv.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let remote = t0.elapsed();
    eprintln!("50 local messages: {base:.2?} alone, {beside:.2?} next to a hung host; 50 remote: {remote:.2?}");
    // Held up, it would wait for the hung sessions' 300 s timeout; the
    // bound leaves room for a machine busy with other work.
    assert!(
        beside <= base * 3 + Duration::from_secs(5),
        "local mail slowed down by a hung remote: {beside:?} against {base:?}"
    );
    assert!(
        lines_with(&srv, &["@hung.test>", "status="]).is_empty(),
        "still hanging, not given up"
    );
    assert_eq!(
        hung.connections(),
        10,
        "at most concurrency_per_destination connections"
    );
}

#[test]
fn a_flush_once_the_relay_is_back_delivers_at_once() {
    // The relay is down: the first message finds it so, the others are
    // deferred at once ("suspended"), all with an hour's backoff.
    let port = smtp_peers::free_port();
    let d = dns(&["host-record=relayp.test,127.0.0.2"]);
    let srv = builder(d.addr, 25)
        .set("relay", &format!("default = \"[relayp.test]:{port}\""))
        .set("queue", "min_backoff = \"1h\"")
        .set("queue", "max_backoff = \"2h\"")
        .start();
    let ids: Vec<String> = (0..3)
        .map(|i| {
            send(
                &srv,
                "alice@example.test",
                &[&format!("r{i}@far.test")],
                "waiting",
            )
        })
        .collect();
    for (i, id) in ids.iter().enumerate() {
        wait_line(
            &srv,
            &[id, &format!("to=<r{i}@far.test>"), "status=deferred"],
        );
    }
    assert!(
        !lines_with(&srv, &["delivery temporarily suspended"]).is_empty(),
        "{}",
        srv.log()
    );
    // It is back; the operator says "now" (postqueue -f).
    let relay = smtp_peers::PySink::start_on("127.0.0.2", port, &[]).expect("the relay's port");
    let (ok, out) = queue_cmd(&srv, &["flush"]);
    assert!(ok, "{out}");
    for (i, id) in ids.iter().enumerate() {
        let line = final_line(&srv, id, &format!("r{i}@far.test"));
        assert!(line.contains("status=sent"), "{line}");
    }
    assert_eq!(relay.wait_received(3, WAIT).len(), 3);
}

/// `Threads` and `VmRSS` (KiB) of a process.
fn threads_and_rss(pid: u32) -> (usize, usize) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |k: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(k))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("Threads:"), field("VmRSS:"))
}

#[test]
fn draining_a_large_queue_stays_small() {
    // 600 messages wait for a dead relay; the relay comes back and the
    // queue is flushed: all 600 are active at once (active_limit 1000),
    // most of them waiting for one of the relay's 10 connection slots.
    // Waiting must cost little: no thread, no session buffers each.
    let n = 600;
    let source = require("smtp-source");
    let port = smtp_peers::free_port();
    let d = dns(&["host-record=relayp.test,127.0.0.2"]);
    let srv = builder(d.addr, 25)
        .set("relay", &format!("default = \"[relayp.test]:{port}\""))
        .set("queue", "min_backoff = \"1h\"")
        .set("queue", "max_backoff = \"2h\"")
        .start();
    let (ok, out) = run(peer("smtp-source")
        .args([
            "-s",
            "10",
            "-m",
            &n.to_string(),
            "-l",
            "2000",
            "-M",
            "client.test",
        ])
        .args(["-f", "alice@example.test", "-t", "someone@far.test"])
        .arg(srv.addr().to_string()));
    assert!(ok, "{}: {out}", source.display());
    assert!(
        srv.wait_log_count("status=deferred", n, WAIT),
        "{} deferred:\n{}",
        srv.log().matches("status=deferred").count(),
        srv.log()
    );
    let (threads0, rss0) = threads_and_rss(srv.pid());
    let relay = smtp_peers::SmtpSink::start_on("127.0.0.2", port);
    let (ok, out) = queue_cmd(&srv, &["flush"]);
    assert!(ok, "{out}");
    let (mut threads, mut rss) = (threads0, rss0);
    let deadline = Instant::now() + WAIT;
    while relay.messages().len() < n {
        let (t, r) = threads_and_rss(srv.pid());
        (threads, rss) = (threads.max(t), rss.max(r));
        assert!(
            Instant::now() < deadline,
            "{} of {n} relayed",
            relay.messages().len()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    wait_queue_empty(&srv);
    eprintln!("draining {n}: threads {threads0} -> {threads}, RSS {rss0} -> {rss} KiB");
    assert!(threads <= threads0 + 40, "threads {threads0} -> {threads}");
    assert!(rss <= rss0 + 12 * 1024, "RSS {rss0} -> {rss} KiB");
}
