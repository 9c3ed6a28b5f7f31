//! The queue's long paths end to end, against the real binary with short
//! configured backoffs (`[queue] min_backoff = "1s"`, `max_backoff = "2s"`):
//! a message whose delivery fails for a temporary reason is retried on the
//! backoff schedule, stays queued meanwhile, and is delivered once the
//! cause goes away; one that is still undeliverable when `max_lifetime`
//! ends is bounced with an RFC 3464 delivery status notification into the
//! sender's Maildir, which Python's `email` package parses.
//!
//! The temporary failure is one the test controls and that needs no root:
//! the recipient's Maildir has a plain file where its `new/` directory
//! should be, so every write fails (4.3.0, deferred) until the test puts
//! the directory back.
//!
//! Timing is asserted loosely: the queue schedules in whole seconds, so an
//! attempt due `d` seconds after a failure comes between d-1 and d+1
//! seconds later; the bounds below allow that and a slow machine, and no
//! assertion waits a fixed time for something not to happen.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;

const WAIT: Duration = Duration::from_secs(20);

/// A server whose deferred mail is retried after 1 s, then every 2 s.
fn fast_retry_server(lifetime: &str) -> Server {
    Server::builder()
        .set("queue", "min_backoff = \"1s\"")
        .set("queue", "max_backoff = \"2s\"")
        .set("queue", &format!("max_lifetime = \"{lifetime}\""))
        .start()
}

/// Makes `maildir` undeliverable: tmp/ and cur/ are there, new/ is a file.
fn break_maildir(maildir: &Path) {
    std::fs::create_dir_all(maildir.join("tmp")).unwrap();
    std::fs::create_dir_all(maildir.join("cur")).unwrap();
    std::fs::write(maildir.join("new"), b"not a directory\n").unwrap();
}

/// Puts new/ back.
fn repair_maildir(maildir: &Path) {
    std::fs::remove_file(maildir.join("new")).unwrap();
    std::fs::create_dir(maildir.join("new")).unwrap();
}

/// Watches the log for `needle` until it has appeared `n` times; returns
/// when the test saw each occurrence (polling every 10 ms).
fn watch(srv: &Server, needle: &str, n: usize, timeout: Duration) -> Vec<Instant> {
    let deadline = Instant::now() + timeout;
    let mut seen = Vec::new();
    while seen.len() < n {
        let count = srv.log().matches(needle).count();
        while seen.len() < count.min(n) {
            seen.push(Instant::now());
        }
        assert!(
            Instant::now() < deadline,
            "saw {needle:?} {} times of {n}:\n{}",
            seen.len(),
            srv.log()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    seen
}

/// Waits for a log line that `pred` accepts; returns when the test saw it.
fn watch_line(srv: &Server, pred: impl Fn(&str) -> bool) -> Instant {
    let deadline = Instant::now() + WAIT;
    loop {
        if srv.log().lines().any(&pred) {
            return Instant::now();
        }
        assert!(Instant::now() < deadline, "no such line:\n{}", srv.log());
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// Sends one message; returns its queue ID.
fn send(srv: &Server, from: &str, to: &str, subject: &str) -> String {
    let mut c = srv.smtp();
    c.hello();
    let r = c.send_mail(from, &[to], &message(subject, "queued for a while"));
    assert_eq!(r.code, 250, "{r:?}");
    c.expect("QUIT", "221");
    queue_id_in(&r.first).expect("queue id")
}

#[test]
fn deferred_mail_is_retried_on_schedule_and_delivered_once_the_cause_is_gone() {
    let srv = fast_retry_server("1h");
    let alice = srv.mailbox("example.test/alice/");
    break_maildir(&alice);
    let sent_at = Instant::now();
    let id = send(&srv, "carol@example.test", "alice@example.test", "retried");

    // Four attempts, each deferred: the first at once, then after about
    // 1 s, 2 s and 2 s (min_backoff doubling up to max_backoff).
    let deferred = format!("{id}: to=<alice@example.test>, relay=maildir");
    let attempts = watch(&srv, &format!("{deferred}, delay="), 4, WAIT);
    let log = srv.log();
    let lines: Vec<&str> = log.lines().filter(|l| l.contains(&deferred)).collect();
    for l in &lines {
        assert!(
            l.contains("dsn=4.3.0, status=deferred (cannot write to maildir"),
            "{l}"
        );
    }
    assert!(
        secs(attempts[0] - sent_at) < 5.0,
        "the first attempt is made at once, not after a backoff"
    );
    let gaps: Vec<f64> = attempts.windows(2).map(|w| secs(w[1] - w[0])).collect();
    eprintln!("seconds between attempts: {gaps:.2?}");
    // Nominal gaps 1, 2, 2 s; whole-second scheduling moves each by up to
    // 1 s either way; 2 s more of slack for a loaded machine.
    for (gap, nominal) in gaps.iter().zip([1.0, 2.0, 2.0]) {
        assert!(
            *gap <= nominal + 3.0,
            "a retry came {gap:.2} s after the previous attempt, due after {nominal} s: {gaps:?}"
        );
    }
    let span: f64 = gaps.iter().sum();
    assert!(
        span >= 2.0,
        "three retries within {span:.2} s: the backoff (1 s, 2 s, 2 s) was not applied: {gaps:?}"
    );
    // Still queued, nothing delivered, nothing bounced.
    assert!(srv.queue_dir().join("messages").join(&id).is_file());
    assert!(maildir_files(&alice).is_empty());
    assert!(!srv.log().contains("status=bounced"), "{}", srv.log());

    // The cause goes away: the next retry delivers, within max_backoff
    // (and the whole-second rounding, and slack).
    repair_maildir(&alice);
    let fixed_at = Instant::now();
    let delivered_at = watch_line(&srv, |l| l.contains(&deferred) && l.contains("status=sent"));
    assert!(
        srv.wait_log(&format!("{id}: removed"), WAIT),
        "{}",
        srv.log()
    );
    let log = srv.log();
    let last = log.lines().rfind(|l| l.contains(&deferred)).unwrap();
    assert!(last.contains("dsn=2.0.0, status=sent"), "{log}");
    assert!(
        secs(delivered_at - fixed_at) <= 2.0 + 3.0,
        "delivered {:.2} s after the repair, the retry was due within 2 s",
        secs(delivered_at - fixed_at)
    );
    let files = maildir_files(&alice);
    assert_eq!(files.len(), 1, "delivered exactly once: {files:?}");
    let text = std::fs::read_to_string(&files[0]).unwrap();
    assert!(text.contains("Subject: retried"), "{text}");
    assert!(!log.contains("non-delivery notification"), "{log}");
    assert!(maildir_files(&srv.mailbox("example.test/carol/")).is_empty());
}

/// Parses a delivered bounce with Python's `email` package and prints what
/// the test checks, one `key: value` per line.
const PARSE_DSN: &str = r#"
import email, sys
from email import policy
msg = email.message_from_binary_file(open(sys.argv[1], 'rb'), policy=policy.compat32)
print('content-type:', msg.get_content_type())
print('report-type:', msg.get_param('report-type'))
print('from:', msg['From'])
print('to:', msg['To'])
print('return-path:', msg['Return-Path'])
parts = msg.get_payload()
print('parts:', ' '.join(p.get_content_type() for p in parts))
for p in parts:
    if p.get_content_type() == 'message/delivery-status':
        blocks = p.get_payload()
        print('blocks:', len(blocks))
        print('reporting-mta:', blocks[0]['Reporting-MTA'])
        for b in blocks[1:]:
            for k in ('Final-Recipient', 'Action', 'Status', 'Diagnostic-Code'):
                print('rcpt %s: %s' % (k.lower(), b[k]))
    elif p.get_content_type() in ('text/rfc822-headers', 'message/rfc822'):
        body = p.get_payload()
        if isinstance(body, list):
            body = body[0].as_string()
        print('returned-subject:', [l for l in body.splitlines() if l.startswith('Subject:')])
"#;

#[test]
fn mail_still_deferred_at_the_end_of_its_lifetime_bounces_to_the_sender() {
    let lifetime = 4.0;
    let srv = fast_retry_server("4s");
    let alice = srv.mailbox("example.test/alice/");
    break_maildir(&alice);
    let sent_at = Instant::now();
    let id = send(&srv, "bob@example.test", "alice@example.test", "too late");

    let notified = watch(
        &srv,
        &format!("{id}: sender non-delivery notification: "),
        1,
        WAIT,
    )[0];
    assert!(
        srv.wait_log(&format!("{id}: removed"), WAIT),
        "{}",
        srv.log()
    );
    let log = srv.log();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(&format!("{id}: to=<alice@example.test>")))
        .collect();
    let (last, earlier) = lines.split_last().unwrap();
    assert!(
        earlier.len() >= 2 && earlier.iter().all(|l| l.contains("status=deferred")),
        "deferred and retried before giving up:\n{log}"
    );
    assert!(
        last.contains("dsn=5.4.7, status=bounced (delivery time expired; last problem: cannot write to maildir"),
        "{last}"
    );
    // Not before the lifetime is over; at the first attempt after it,
    // which comes within max_backoff (2 s), rounding and slack. The queue
    // counts the age in whole seconds from a truncated arrival time, so
    // "over" may come up to 1 s early (seen here: 3.09 s for 4 s).
    let age = secs(notified - sent_at);
    eprintln!("bounced {age:.2} s after acceptance, lifetime {lifetime} s");
    assert!(
        age >= lifetime - 1.0,
        "bounced after {age:.2} s, lifetime {lifetime} s"
    );
    assert!(
        age <= lifetime + 2.0 + 4.0,
        "bounced only after {age:.2} s, lifetime {lifetime} s"
    );

    // The bounce is queued as a message of its own, from <>, and delivered
    // to the sender's Maildir.
    let bounce_id: String = log
        .split(&format!("{id}: sender non-delivery notification: "))
        .nth(1)
        .unwrap()
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric())
        .collect();
    assert!(
        srv.wait_log(
            &format!("{bounce_id}: to=<bob@example.test>, relay=maildir"),
            WAIT
        ) && srv.wait_log(&format!("{bounce_id}: removed"), WAIT),
        "{}",
        srv.log()
    );
    let bob = wait_maildir(&srv.mailbox("example.test/bob/"), 1, WAIT);
    assert_eq!(bob.len(), 1, "one bounce for bob:\n{}", srv.log());
    assert!(maildir_files(&alice).is_empty(), "alice got nothing");
    assert!(
        !srv.queue_dir().join("messages").join(&id).exists(),
        "the message left the queue"
    );

    let (ok, out) = run(python().args(["-c", PARSE_DSN]).arg(&bob[0]));
    assert!(ok, "python email: {out}");
    let field = |k: &str| -> String {
        out.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}: ")))
            .unwrap_or_else(|| panic!("no {k:?} in:\n{out}"))
            .to_string()
    };
    assert_eq!(field("content-type"), "multipart/report", "{out}");
    assert_eq!(field("report-type"), "delivery-status", "{out}");
    assert_eq!(field("return-path"), "<>", "{out}");
    assert!(field("to").contains("bob@example.test"), "{out}");
    let parts = field("parts");
    assert!(
        parts.starts_with("text/plain message/delivery-status "),
        "RFC 3464 2: human text, then the status, then the original: {parts}"
    );
    assert_eq!(
        field("blocks"),
        "2",
        "per-message block and one recipient: {out}"
    );
    assert!(field("reporting-mta").starts_with("dns;"), "{out}");
    assert_eq!(
        field("rcpt final-recipient").replace(' ', ""),
        "rfc822;alice@example.test"
    );
    assert_eq!(field("rcpt action"), "failed");
    assert_eq!(field("rcpt status"), "5.4.7");
    assert!(
        field("returned-subject").contains("Subject: too late"),
        "{out}"
    );
}
