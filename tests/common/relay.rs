//! What the outbound relay tests share: a postern that resolves through
//! the test's dnsmasq and delivers MX mail to the test's port, sending
//! mail into it, reading its log line by line, and parsing the bounces
//! it delivers with Python's `email` package.
//!
//! Declared by the test files that use it with
//! `#[path = "common/relay.rs"] mod relay;` next to `mod common;`.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::*;

/// Longest wait for anything postern is expected to do.
pub const WAIT: Duration = Duration::from_secs(30);

/// A server that asks only `dns` and sends MX mail to `port`, with short
/// time-outs and backoffs (1 s, then 2 s), so that failures show quickly.
pub fn builder(dns: SocketAddr, port: u16) -> ServerBuilder {
    Server::builder()
        .set("relay", &format!("dns_servers = [\"{dns}\"]"))
        .set("relay", &format!("port = {port}"))
        .set("relay", "connect_timeout = \"2s\"")
        .set("relay", "command_timeout = \"5s\"")
        .set("queue", "min_backoff = \"1s\"")
        .set("queue", "max_backoff = \"2s\"")
}

/// Sends one message from 127.0.0.1 (trusted: it may relay); returns its
/// queue ID.
pub fn send(srv: &Server, from: &str, to: &[&str], subject: &str) -> String {
    let mut c = srv.smtp();
    c.hello();
    let r = c.send_mail(
        from,
        to,
        &message(subject, "sent onward by the relay tests\r\n"),
    );
    assert_eq!(r.code, 250, "{r:?}\n{}", srv.log());
    c.expect("QUIT", "221");
    queue_id_in(&r.first).expect("queue id")
}

/// The first log line holding every one of `needles`, waiting for it.
pub fn wait_line(srv: &Server, needles: &[&str]) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let log = srv.log();
        if let Some(l) = log.lines().find(|l| needles.iter().all(|n| l.contains(n))) {
            return l.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "no log line with {needles:?}:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Every log line holding all of `needles` (now, without waiting).
pub fn lines_with(srv: &Server, needles: &[&str]) -> Vec<String> {
    srv.log()
        .lines()
        .filter(|l| needles.iter().all(|n| l.contains(n)))
        .map(String::from)
        .collect()
}

/// The delivery log line of `id` to `to` with a final status (sent or
/// bounced), waiting for it.
pub fn final_line(srv: &Server, id: &str, to: &str) -> String {
    let deadline = Instant::now() + WAIT;
    let head = format!("{id}: to=<{to}>");
    loop {
        let log = srv.log();
        if let Some(l) = log.lines().find(|l| {
            l.contains(&head) && (l.contains("status=sent") || l.contains("status=bounced"))
        }) {
            return l.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "{id} to {to} never ended:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The queue ID a log line names after `what: ` (`ID: sender
/// non-delivery notification: BOUNCEID`).
pub fn id_after(line: &str, what: &str) -> String {
    line.split(what)
        .nth(1)
        .unwrap_or_else(|| panic!("{what:?} not in {line:?}"))
        .trim()
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric())
        .collect()
}

/// Waits until the queue holds no message (every one delivered or bounced).
pub fn wait_queue_empty(srv: &Server) {
    let dir = srv.queue_dir().join("messages");
    let deadline = Instant::now() + WAIT;
    loop {
        let n = std::fs::read_dir(&dir).map(|d| d.count()).unwrap_or(0);
        if n == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{n} message(s) still queued:\n{}",
            srv.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `postern queue --config CONFIG ARGS...`: (success, output).
pub fn queue_cmd(srv: &Server, args: &[&str]) -> (bool, String) {
    run(postern()
        .arg("queue")
        .arg("--config")
        .arg(&srv.config)
        .args(args))
}

/// A delivered notice (bounce, delay notice) parsed by Python's `email`
/// package: the top-level fields, the parts, and each delivery-status
/// block, one `key: value` per line (see [`PARSE_DSN`]).
pub struct Parsed(pub String);

impl Parsed {
    pub fn of(file: &Path) -> Parsed {
        let (ok, out) = run(python().args(["-c", PARSE_DSN]).arg(file));
        assert!(ok, "python email: {out}");
        Parsed(out)
    }

    /// The value of the first `key: value` line.
    pub fn get(&self, key: &str) -> String {
        self.all(key)
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("no {key:?} in:\n{}", self.0))
    }

    /// The values of every `key: value` line.
    pub fn all(&self, key: &str) -> Vec<String> {
        let head = format!("{key}: ");
        self.0
            .lines()
            .filter_map(|l| l.strip_prefix(&head).map(String::from))
            .collect()
    }
}

/// Parses a notice with Python's `email` package (compat32, as MUAs do).
pub const PARSE_DSN: &str = r#"
import email, sys
from email import policy
msg = email.message_from_binary_file(open(sys.argv[1], 'rb'), policy=policy.compat32)
print('content-type:', msg.get_content_type())
print('report-type:', msg.get_param('report-type'))
print('from:', msg['From'])
print('to:', msg['To'])
print('subject:', msg['Subject'])
print('auto-submitted:', msg['Auto-Submitted'])
print('return-path:', msg['Return-Path'])
print('defects:', len(msg.defects))
parts = msg.get_payload()
print('parts:', ' '.join(p.get_content_type() for p in parts))
for p in parts:
    t = p.get_content_type()
    if t == 'text/plain':
        for l in p.get_payload(decode=True).decode('utf-8').splitlines():
            print('text:', l)
    elif t == 'message/delivery-status':
        blocks = p.get_payload()
        print('blocks:', len(blocks))
        print('reporting-mta:', blocks[0]['Reporting-MTA'])
        print('arrival-date:', blocks[0]['Arrival-Date'])
        for b in blocks[1:]:
            for k in ('Final-Recipient', 'Original-Recipient', 'Action', 'Status',
                      'Remote-MTA', 'Diagnostic-Code', 'Will-Retry-Until'):
                if b[k] is not None:
                    print('rcpt %s: %s' % (k.lower(), b[k]))
    elif t in ('text/rfc822-headers', 'message/rfc822'):
        body = p.get_payload()
        if isinstance(body, list):
            body = body[0].as_string()
        for l in body.splitlines():
            print('returned:', l)
"#;
