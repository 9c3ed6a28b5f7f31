//! The after-queue content filter in the amavis pattern (issue 9, part
//! 4), end to end with a real SMTP filter on loopback
//! (tests/common/content_filter.py, aiosmtpd): postern queues a message,
//! hands it to the filter with XFORWARD, the filter adds
//! `X-Virus-Scanned:` and gives it back on postern's reinjection listener
//! (`role = "reinject"`, trusted networks only), where aliases are
//! expanded and the message is delivered. A filter that rejects bounces
//! the message; one that is down, answers garbage, hangs up in DATA or
//! answers 4xx leaves it queued, never delivered unfiltered, and a flush
//! once it is back delivers it filtered, once.

mod common;
#[path = "common/hooks.rs"]
mod hooks;
#[path = "common/smtp_peers.rs"]
mod smtp_peers;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use common::*;
use hooks::*;

const MARKER: &str = "EICAR-STANDARD-ANTIVIRUS-TEST-FILE";

/// The Python filter, started with its options; killed when dropped.
struct Filter {
    _child: ChildGuard,
    dir: PathBuf,
}

/// One message the filter handed back, as it recorded it.
#[derive(Debug)]
struct Record {
    xforward: String,
    from: String,
    rcpts: Vec<String>,
    content: String,
}

impl Filter {
    /// Listens on `port`, hands back to `reinject`, records into `dir`.
    fn start(port: u16, reinject: SocketAddr, dir: &Path, opts: &[&str]) -> Filter {
        Filter::try_start(port, reinject, dir, opts)
            .unwrap_or_else(|log| panic!("the content filter did not start on port {port}:\n{log}"))
    }

    /// As [`Filter::start`]; `Err` with its log if it did not start.
    fn try_start(
        port: u16,
        reinject: SocketAddr,
        dir: &Path,
        opts: &[&str],
    ) -> Result<Filter, String> {
        require_python_module("aiosmtpd");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/common/content_filter.py");
        std::fs::create_dir_all(dir).unwrap();
        let log = dir.join(format!(
            "filter-{}.log",
            std::fs::read_dir(dir).unwrap().count()
        ));
        let mut child = python()
            .arg(&script)
            .args([
                "--port",
                &port.to_string(),
                "--reinject",
                &reinject.to_string(),
                "--dir",
            ])
            .arg(dir)
            .args(opts)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start the content filter");
        let mut line = String::new();
        let _ = BufReader::new(child.stdout.take().unwrap()).read_line(&mut line);
        let guard = ChildGuard::new(child);
        if line.trim() != "READY" {
            return Err(std::fs::read_to_string(&log).unwrap_or_default());
        }
        Ok(Filter {
            _child: guard,
            dir: dir.to_path_buf(),
        })
    }

    fn records(&self) -> Vec<Record> {
        records(&self.dir)
    }
}

fn records(dir: &Path) -> Vec<Record> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "msg"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|p| {
            let text = std::fs::read_to_string(p).unwrap();
            let (head, content) = text.split_once("\n\n").unwrap();
            let field = |k: &str| {
                head.lines()
                    .find_map(|l| l.strip_prefix(k))
                    .unwrap_or_else(|| panic!("no {k} in {head}"))
                    .to_string()
            };
            Record {
                xforward: field("XFORWARD "),
                from: field("FROM "),
                rcpts: field("RCPTS ")
                    .split_whitespace()
                    .map(String::from)
                    .collect(),
                content: content.to_string(),
            }
        })
        .collect()
}

/// A server with the content filter on `port` and a reinjection
/// listener (number 2) that trusts 127.0.0.1 only.
fn filtered_server(port: u16) -> Server {
    Server::builder()
        .set("content", &format!("filter = \"[127.0.0.1]:{port}\""))
        .listener(
            "plain",
            "role = \"reinject\"\ntrusted_networks = [\"127.0.0.1/32\"]\n",
        )
        .start()
}

/// A server, and the filter started for it (recording into `dir`). The
/// filter's port is picked before postern starts (its config names it);
/// should something take it meanwhile, both start again on another.
fn with_filter(dir: &Path, opts: &[&str]) -> (Server, Filter, u16) {
    let mut last = String::new();
    for _ in 0..5 {
        let port = smtp_peers::free_port();
        let srv = filtered_server(port);
        match Filter::try_start(port, srv.listener_addr(2), dir, opts) {
            Ok(f) => return (srv, f, port),
            Err(log) if log.contains("in use") => last = log,
            Err(log) => panic!("the content filter did not start on port {port}:\n{log}"),
        }
    }
    panic!("no free port for the content filter:\n{last}");
}

/// Sends from 127.0.0.2 (outside the trusted networks: any client on
/// the internet), EHLO client.test; returns the queue ID.
fn send_untrusted(srv: &Server, from: &str, to: &[&str], body: &str) -> String {
    let mut c = srv.smtp_untrusted();
    c.hello();
    let r = c.send_mail(from, to, body);
    assert_eq!(r.code, 250, "{r:?}\n{}", srv.log());
    c.expect("QUIT", "221");
    queue_id_in(&r.first).expect("queue id")
}

/// The queue ID the reinjection gave the message first queued as `id`
/// (its `client=..., orig_queue_id=<id>` line), waiting for it.
fn reinjected_id(srv: &Server, id: &str) -> String {
    let needle = format!(", orig_queue_id={id}");
    let mut found = String::new();
    let ok = wait_until(WAIT, || {
        match srv.log().lines().find(|l| l.contains(&needle)) {
            Some(l) => {
                found = l.to_string();
                true
            }
            None => false,
        }
    });
    assert!(ok, "no reinjection of {id}:\n{}", srv.log());
    let rest = found.split("]: ").nth(1).expect("log line");
    rest.split(':').next().unwrap().to_string()
}

/// The headers a delivered copy must start with after the filter, in
/// order: ours (Return-Path, Delivered-To, the reinjection's Received:),
/// the filter's header, the first pass's Received:.
fn check_filtered_copy(text: &str, first: &str, second: &str, rcpt: &str, sent: &str) {
    let blocks = header_blocks(text);
    assert_eq!(blocks[0], "Return-Path: <sender@client.test>", "{text}");
    assert_eq!(blocks[1], format!("Delivered-To: {rcpt}"), "{text}");
    // The reinjection's Received: names the original client (XFORWARD
    // ADDR and HELO), not the filter on 127.0.0.1.
    let r2 = &blocks[2];
    assert!(
        r2.starts_with("Received: from client.test (unknown [127.0.0.2])\n"),
        "{r2}"
    );
    assert!(r2.contains(&format!(" id {second}")), "{r2}");
    assert_eq!(blocks[3], "X-Virus-Scanned: postern-test-filter", "{text}");
    let r1 = &blocks[4];
    assert!(
        r1.starts_with("Received: from client.test (unknown [127.0.0.2])\n"),
        "{r1}"
    );
    assert!(r1.contains(&format!(" id {first}")), "{r1}");
    assert_eq!(
        text.matches("X-Virus-Scanned:").count(),
        1,
        "scanned once:\n{text}"
    );
    let head_len: usize = blocks[..5].iter().map(|b| b.len() + 1).sum();
    assert_eq!(
        &text[head_len..],
        stored(sent),
        "the message intact after the trace"
    );
}

#[test]
fn filter_scans_once_and_the_reinjected_message_is_delivered_once() {
    let t = TestDir::new("filter-e2e");
    let (srv, f, port) = with_filter(&t.path().join("filter"), &[]);
    let msg = mail("alice@example.test", "scan me", "", "clean content");
    let id = send_untrusted(&srv, "sender@client.test", &["alice@example.test"], &msg);
    // Queued first, never written straight into the Maildir.
    assert!(
        accepted_line(&srv, &id).ends_with("(queue active)"),
        "{}",
        accepted_line(&srv, &id)
    );
    let line = wait_status(&srv, &id, "alice@example.test", "sent");
    assert!(
        line.contains(&format!("relay=127.0.0.1[127.0.0.1]:{port}")),
        "{line}"
    );
    let second = reinjected_id(&srv, &id);
    assert_ne!(second, id);
    let client_line = srv
        .log()
        .lines()
        .find(|l| l.contains(&format!("{second}: client=")))
        .unwrap()
        .to_string();
    assert!(
        client_line.ends_with(&format!(
            "{second}: client=unknown[127.0.0.1], orig_queue_id={id}, orig_client=unknown[127.0.0.2]"
        )),
        "{client_line}"
    );
    wait_status(&srv, &second, "alice@example.test", "sent");
    let alice = srv.mailbox("example.test/alice/");
    let text = String::from_utf8(only_message(&srv, &alice)).unwrap();
    check_filtered_copy(&text, &id, &second, "alice@example.test", &msg);
    // What the filter got: XFORWARD with the original client.
    let rec = f.records();
    assert_eq!(rec.len(), 1);
    for attr in [
        "ADDR=127.0.0.2",
        "HELO=client.test",
        &format!("IDENT={id}"),
        "PROTO=ESMTP",
    ] {
        assert!(
            rec[0].xforward.split(' ').any(|a| a == attr),
            "{attr} in {:?}",
            rec[0].xforward
        );
    }
    assert_eq!(rec[0].from, "<sender@client.test>");
    assert_eq!(rec[0].rcpts, ["<alice@example.test>"]);
    assert!(srv.wait_log(&format!("{second}: removed"), WAIT));
    assert_eq!(maildir_files(&alice).len(), 1, "exactly one copy");
}

#[test]
fn filter_rejection_bounces_and_the_message_is_never_delivered() {
    let t = TestDir::new("filter-eicar");
    let (srv, f, _) = with_filter(&t.path().join("filter"), &[]);
    let msg = mail(
        "alice@example.test",
        "infected",
        "",
        &format!("X5O!P%@AP[4\\PZX54(P^)7CC)7}}${MARKER}!$H+H*"),
    );
    let id = send_untrusted(&srv, "bob@example.test", &["alice@example.test"], &msg);
    let line = wait_status(&srv, &id, "alice@example.test", "bounced");
    assert!(line.contains("dsn=5.7.0, status=bounced"), "{line}");
    assert!(
        line.contains(&format!("virus found: {MARKER}")),
        "the filter's reply in the log: {line}"
    );
    // The bounce reaches the sender's own mailbox (not refused by the
    // filter itself though it quotes the message).
    let bounce = wait_bounce(&srv, &srv.mailbox("example.test/bob/"), "Status: 5.7.0");
    assert!(
        bounce.contains("Final-Recipient: rfc822; alice@example.test"),
        "{bounce}"
    );
    assert!(srv.wait_log(&format!("{id}: removed"), WAIT));
    assert!(
        maildir_files(&srv.mailbox("example.test/alice/")).is_empty(),
        "never delivered"
    );
    assert!(
        f.records()
            .iter()
            .all(|r| !r.content.contains("Subject: infected")),
        "the filter never handed it back"
    );
}

#[test]
fn filter_down_keeps_the_message_queued_until_a_flush_finds_it_back() {
    let t = TestDir::new("filter-down");
    let port = smtp_peers::free_port();
    let srv = filtered_server(port);
    let msg = mail(
        "alice@example.test",
        "waits for the filter",
        "",
        "not unfiltered",
    );
    let id = send_untrusted(&srv, "sender@client.test", &["alice@example.test"], &msg);
    let line = wait_status(&srv, &id, "alice@example.test", "deferred");
    assert!(line.contains("dsn=4."), "{line}");
    assert!(is_queued(&srv, &id));
    let alice = srv.mailbox("example.test/alice/");
    assert!(
        maildir_files(&alice).is_empty(),
        "never delivered around the filter"
    );

    let f = Filter::start(port, srv.listener_addr(2), &t.path().join("filter"), &[]);
    let (ok, out) = run(postern()
        .arg("queue")
        .arg("--config")
        .arg(&srv.config)
        .args(["flush", &id]));
    assert!(ok, "postern queue flush: {out}");
    wait_status(&srv, &id, "alice@example.test", "sent");
    let second = reinjected_id(&srv, &id);
    let text = String::from_utf8(only_message(&srv, &alice)).unwrap();
    check_filtered_copy(&text, &id, &second, "alice@example.test", &msg);
    assert_eq!(f.records().len(), 1);
    assert!(srv.wait_log(&format!("{id}: removed"), WAIT));
    assert!(!is_queued(&srv, &id));
}

#[test]
fn filter_sees_the_alias_and_expansion_happens_on_reinjection() {
    let t = TestDir::new("filter-alias");
    let (srv, f, _) = with_filter(&t.path().join("filter"), &[]);
    // team@example.test is an alias of alice and bob in the fixture.
    let msg = mail(
        "team@example.test",
        "to the alias",
        "",
        "expanded after the filter",
    );
    let id = send_untrusted(&srv, "sender@client.test", &["team@example.test"], &msg);
    let line = wait_status(&srv, &id, "team@example.test", "sent");
    assert!(
        !line.contains("orig_to="),
        "the first pass does not expand: {line}"
    );
    let second = reinjected_id(&srv, &id);
    for who in ["alice", "bob"] {
        let line = wait_status(&srv, &second, &format!("{who}@example.test"), "sent");
        assert!(line.contains("orig_to=<team@example.test>"), "{line}");
        let text = String::from_utf8(only_message(
            &srv,
            &srv.mailbox(&format!("example.test/{who}/")),
        ))
        .unwrap();
        assert_eq!(text.matches("X-Virus-Scanned:").count(), 1, "{text}");
    }
    let rec = f.records();
    assert_eq!(rec.len(), 1, "one message through the filter");
    assert_eq!(
        rec[0].rcpts,
        ["<team@example.test>"],
        "the filter saw the alias, not its targets"
    );
}

/// What a Python smtplib client from `source` sees on the reinjection
/// port: the EHLO keywords, and the replies to MAIL and RCPT.
const PROBE: &str = r#"
import smtplib, sys
port, source = int(sys.argv[1]), sys.argv[2]
s = smtplib.SMTP("127.0.0.1", port, source_address=(source, 0), timeout=30)
code, _ = s.ehlo("probe.test")
print("EHLO", code)
print("XFORWARD", "yes" if s.has_extn("xforward") else "no")
code, msg = s.mail("sender@client.test")
print("MAIL", code, msg.decode())
code, msg = s.rcpt("alice@example.test")
print("RCPT", code, msg.decode())
s.rset()
s.quit()
"#;

#[test]
fn filter_reinjection_port_refuses_untrusted_clients_and_hides_xforward() {
    let port = smtp_peers::free_port();
    let srv = filtered_server(port);
    let reinject = srv.listener_port(2);
    let probe = |source: &str| {
        let (ok, out) = run(python().args(["-c", PROBE, &reinject.to_string(), source]));
        assert!(ok, "smtplib from {source}: {out}");
        out
    };
    let outside = probe("127.0.0.2");
    assert!(
        outside.contains("XFORWARD no"),
        "XFORWARD offered to an untrusted client:\n{outside}"
    );
    assert!(outside.contains("MAIL 250"), "{outside}");
    assert!(
        outside.contains(
            "RCPT 554 5.7.1 <alice@example.test>: Recipient address rejected: Access denied"
        ),
        "the filter cannot be bypassed from outside:\n{outside}"
    );
    let inside = probe("127.0.0.1");
    assert!(inside.contains("XFORWARD yes"), "{inside}");
    assert!(inside.contains("RCPT 250"), "{inside}");
    assert!(maildir_files(&srv.mailbox("example.test/alice/")).is_empty());
    assert!(!srv.log().contains("status=sent"), "{}", srv.log());
}

/// A filter that misbehaves with `bad` defers the message, which stays
/// queued; a good filter on the same port and a flush deliver it once.
fn misbehaving_filter_defers(tag: &str, bad: &str) {
    let t = TestDir::new(tag);
    let (srv, bad_filter, port) = with_filter(&t.path().join("bad"), &[bad]);
    let msg = mail("alice@example.test", tag, "", "nothing lost");
    let id = send_untrusted(&srv, "sender@client.test", &["alice@example.test"], &msg);
    let line = wait_status(&srv, &id, "alice@example.test", "deferred");
    assert!(line.contains("dsn=4."), "{line}");
    assert!(is_queued(&srv, &id));
    let alice = srv.mailbox("example.test/alice/");
    assert!(maildir_files(&alice).is_empty(), "{bad}: nothing delivered");
    assert!(
        bad_filter.records().is_empty(),
        "{bad}: nothing handed back"
    );
    assert!(!srv.log().contains("status=bounced"), "{}", srv.log());
    drop(bad_filter);

    let good = Filter::start(port, srv.listener_addr(2), &t.path().join("good"), &[]);
    let (ok, out) = run(postern()
        .arg("queue")
        .arg("--config")
        .arg(&srv.config)
        .args(["flush", &id]));
    assert!(ok, "postern queue flush: {out}");
    wait_status(&srv, &id, "alice@example.test", "sent");
    let second = reinjected_id(&srv, &id);
    wait_status(&srv, &second, "alice@example.test", "sent");
    let text = String::from_utf8(only_message(&srv, &alice)).unwrap();
    check_filtered_copy(&text, &id, &second, "alice@example.test", &msg);
    assert_eq!(good.records().len(), 1);
}

#[test]
fn filter_answering_garbage_defers() {
    misbehaving_filter_defers("filter-garbage", "--garbage");
}

#[test]
fn filter_closing_in_data_defers() {
    misbehaving_filter_defers("filter-close", "--close-in-data");
}

#[test]
fn filter_tempfail_defers() {
    misbehaving_filter_defers("filter-tempfail", "--tempfail");
}
