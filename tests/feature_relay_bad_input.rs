//! Bad input on the way out, as the whole server meets it: what it
//! decides (next host, retry later, bounce), the log line that says why,
//! and that nothing is lost, duplicated or crashed. The parsers' own
//! limits are tested in tests/client_dialogs.rs and tests/feature_dns.rs;
//! here the same inputs come from raw servers and name servers on
//! loopback, to the real binary.
//!
//! Covers: a 10,000-line reply (to EHLO, and to RCPT), a reply without a
//! code, a server that never answers, one that trickles its greeting a
//! byte at a time (a reply must come whole within `[relay]
//! command_timeout`); 100 MX records; a CNAME loop; an MX name that is an
//! IP address; a credentials file with a bad line or a loose mode
//! (`postern check-config` and `serve` refuse, naming the file and line).
//!
//! dnsmasq and python3 with aiosmtpd are required: a missing one fails the
//! test.

mod common;
#[path = "common/dnsmasq.rs"]
mod dnsmasq;
#[path = "common/relay.rs"]
mod relay;
#[path = "common/smtp_peers.rs"]
mod smtp_peers;

use std::time::Duration;

use common::*;
use dnsmasq::{Dnsmasq, Fake, FakeDns};
use relay::*;
use smtp_peers::{normal, Answer, PySink, RawSmtp};

/// `count` lines of a `code` reply, the last one `code SP`.
fn long_reply(code: u16, count: usize) -> Vec<u8> {
    let mut r = Vec::new();
    for i in 1..count {
        r.extend_from_slice(
            format!("{code}-line {i} of a reply that goes on and on\r\n").as_bytes(),
        );
    }
    r.extend_from_slice(format!("{code} the end\r\n").as_bytes());
    r
}

/// The bad servers, each a "host" of its own on one port.
struct Bad {
    port: u16,
    _servers: Vec<RawSmtp>,
    good: PySink,
}

type Script = fn(&str) -> Answer;

fn start_bad() -> Bad {
    let scripts: [(&str, Script); 5] = [
        ("127.0.0.2", |l| {
            if l.to_ascii_uppercase().starts_with("EHLO") {
                return Answer::Send(long_reply(250, 10_000));
            }
            normal(l)
        }),
        ("127.0.0.3", |l| {
            if l.to_ascii_uppercase().starts_with("RCPT") {
                return Answer::Send(long_reply(550, 10_000));
            }
            normal(l)
        }),
        ("127.0.0.4", |l| {
            if l.to_ascii_uppercase().starts_with("RCPT") {
                return Answer::Send(b"Sure, why not\r\n".to_vec());
            }
            normal(l)
        }),
        ("127.0.0.5", |_| Answer::Silent),
        ("127.0.0.6", |l| match l {
            "" => Answer::Trickle(
                b"220 trickle.test ESMTP\r\n".to_vec(),
                Duration::from_millis(500),
            ),
            _ => normal(l),
        }),
    ];
    'port: for _ in 0..5 {
        let port = smtp_peers::free_port();
        let mut servers = Vec::new();
        for (ip, script) in scripts {
            match RawSmtp::start(&format!("{ip}:{port}"), script) {
                Ok(s) => servers.push(s),
                Err(_) => continue 'port,
            }
        }
        let Ok(good) = PySink::start_on("127.0.0.9", port, &[]) else {
            continue;
        };
        return Bad {
            port,
            _servers: servers,
            good,
        };
    }
    panic!("no port free on every address");
}

const KINDS: [(&str, &str); 5] = [
    ("longehlo", "127.0.0.2"),
    ("longrcpt", "127.0.0.3"),
    ("nocode", "127.0.0.4"),
    ("silent", "127.0.0.5"),
    ("trickle", "127.0.0.6"),
];

#[test]
fn misbehaving_servers_are_retried_later_or_passed_over_for_the_next_mx() {
    let bad = start_bad();
    let mut records = vec!["host-record=good.test,127.0.0.9".to_string()];
    for (kind, ip) in KINDS {
        // Alone: the mail waits. With a second MX: that one takes it.
        records.push(format!("mx-host={kind}.test,mx.{kind}.test,10"));
        records.push(format!("mx-host={kind}2.test,mx.{kind}.test,10"));
        records.push(format!("mx-host={kind}2.test,good.test,20"));
        records.push(format!("host-record=mx.{kind}.test,{ip}"));
    }
    let d = Dnsmasq::start(&records);
    let srv = builder(d.addr, bad.port)
        .set("relay", "command_timeout = \"2s\"")
        .set("queue", "min_backoff = \"1h\"")
        .set("queue", "max_backoff = \"2h\"")
        .start();
    let alone: Vec<String> = KINDS.iter().map(|(k, _)| format!("x@{k}.test")).collect();
    let paired: Vec<String> = KINDS.iter().map(|(k, _)| format!("y@{k}2.test")).collect();
    let to: Vec<&str> = alone.iter().chain(&paired).map(String::as_str).collect();
    let id = send(&srv, "alice@example.test", &to, "bad servers");

    let expect = [
        ("x@longehlo.test", "dsn=4.5.0, status=deferred (protocol error in reply to EHLO command: reply longer than 1000 lines with mx.longehlo.test[127.0.0.2])"),
        ("x@longrcpt.test", "dsn=4.5.0, status=deferred (protocol error in reply to RCPT TO command: reply longer than 1000 lines with mx.longrcpt.test[127.0.0.3])"),
        ("x@nocode.test", "dsn=4.5.0, status=deferred (protocol error in reply to RCPT TO command: "),
        ("x@silent.test", "dsn=4.4.2, status=deferred (conversation timed out while receiving the initial server greeting with mx.silent.test[127.0.0.5])"),
        ("x@trickle.test", "dsn=4.4.2, status=deferred (conversation timed out while receiving the initial server greeting with mx.trickle.test[127.0.0.6])"),
    ];
    for (rcpt, text) in expect {
        let line = wait_line(&srv, &[&id, &format!("to=<{rcpt}>")]);
        assert!(line.contains(text), "{rcpt}: {line}");
    }
    // Each recipient with a second MX reached it, exactly once.
    for rcpt in &paired {
        let line = final_line(&srv, &id, rcpt);
        assert!(
            line.contains(&format!("relay=good.test[127.0.0.9]:{}, ", bad.port))
                && line.contains("status=sent"),
            "{line}"
        );
    }
    let got = bad.good.wait_received(1, WAIT);
    let mut rcpts: Vec<String> = got.iter().flat_map(|m| m.rcpts.clone()).collect();
    rcpts.sort();
    let mut want = paired.clone();
    want.sort();
    assert_eq!(rcpts, want, "each once: {got:?}");
    // Still alive, still taking mail; the others wait in the queue.
    let mut c = srv.smtp();
    c.hello();
    c.expect("QUIT", "221");
    let (ok, out) = queue_cmd(&srv, &["list"]);
    assert!(
        ok && alone.iter().all(|a| out.contains(a.as_str())),
        "{out}"
    );
}

#[test]
fn a_hundred_mx_records_only_the_best_five_are_tried() {
    let good = PySink::start_free("127.0.0.9", &[]);
    let port = good.addr.port();
    let mut records = Vec::new();
    for i in 1..=100 {
        records.push(format!("mx-host=big.test,mx{i}.big.test,{i}"));
    }
    // The best five refuse (nothing listens there); the sixth would take it.
    for i in 1..=5 {
        records.push(format!("host-record=mx{i}.big.test,127.0.1.{i}"));
    }
    records.push("host-record=mx6.big.test,127.0.0.9".to_string());
    let d = Dnsmasq::start(&records);
    let srv = builder(d.addr, port).start();
    let id = send(&srv, "alice@example.test", &["x@big.test"], "too many MX");
    let line = wait_line(&srv, &[&id, "status=deferred"]);
    assert!(
        line.contains(&format!("relay=mx5.big.test[127.0.1.5]:{port}, "))
            && line.contains(&format!("dsn=4.4.1, status=deferred (connect to mx5.big.test[127.0.1.5]:{port}: Connection refused)")),
        "{line}"
    );
    assert_eq!(good.count("connect"), 0, "the sixth MX is never tried");
    assert!(srv.queue_dir().join("messages").join(&id).is_file());
}

#[test]
fn a_cname_loop_defers() {
    let fake = FakeDns::start(Fake::CnameLoop);
    let srv = builder(fake.addr, 25).start();
    let id = send(
        &srv,
        "alice@example.test",
        &["x@loop1.test"],
        "round and round",
    );
    let line = wait_line(&srv, &[&id, "status=deferred"]);
    assert!(
        line.contains("dsn=4.4.3, status=deferred (Host or domain name not found. Name service error for name=loop1.test type=MX: Host not found, try again"),
        "{line}"
    );
    assert!(line.to_lowercase().contains("cname"), "says why: {line}");
}

#[test]
fn an_mx_that_is_an_ip_address_is_skipped() {
    // Something listens at the literal's address: it must get nothing.
    let (port, sinks) =
        smtp_peers::sinks_on_one_port(&[("127.0.0.2", vec![]), ("127.0.0.3", vec![])]);
    let d = Dnsmasq::start(&[
        "mx-host=iplit.test,127.0.0.2,10".to_string(),
        "mx-host=iplit.test,mx2.iplit.test,20".to_string(),
        "host-record=mx2.iplit.test,127.0.0.3".to_string(),
        "mx-host=onlyiplit.test,127.0.0.2,10".to_string(),
    ]);
    let srv = builder(d.addr, port).start();
    let id = send(
        &srv,
        "alice@example.test",
        &["x@iplit.test", "y@onlyiplit.test"],
        "ip literal",
    );
    let line = final_line(&srv, &id, "x@iplit.test");
    assert!(
        line.contains(&format!("relay=mx2.iplit.test[127.0.0.3]:{port}, ")),
        "{line}"
    );
    let only = wait_line(&srv, &[&id, "to=<y@onlyiplit.test>"]);
    assert!(
        only.contains("dsn=4.4.4, status=deferred (no usable MX host for onlyiplit.test: MX 10 \"127.0.0.2\" is not a host name"),
        "{only}"
    );
    wait_line(
        &srv,
        &["warning: iplit.test: MX 10 \"127.0.0.2\" is not a host name; skipped"],
    );
    assert_eq!(sinks[0].count("connect"), 0);
    assert_eq!(sinks[1].wait_received(1, WAIT)[0].rcpts, ["x@iplit.test"]);
}

/// A config with `[relay] credentials_file` = `creds`, for check-config
/// and serve.
fn config_with_credentials(dir: &std::path::Path, creds: &std::path::Path) -> std::path::PathBuf {
    let config = dir.join("postern.toml");
    std::fs::create_dir_all(dir.join("data")).unwrap();
    std::fs::write(
        &config,
        format!(
            "data_dir = \"{}\"\nhostname = \"mx.example.test\"\n\n[[listener]]\naddress = \"127.0.0.1:0\"\n\n\
             [relay]\ndefault = \"[smtp.isp.test]:587\"\ndns_servers = [\"127.0.0.1:1\"]\n\
             credentials_file = \"{}\"\n",
            dir.join("data").display(),
            creds.display()
        ),
    )
    .unwrap();
    config
}

#[test]
fn a_bad_credentials_file_stops_check_config_and_serve() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TestDir::new("badcreds");
    let creds = dir.path().join("relay-credentials");
    let config = config_with_credentials(dir.path(), &creds);
    let check = |expect: &[&str]| {
        let out = postern().arg("check-config").arg(&config).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(78), "{text}");
        for e in expect {
            assert!(text.contains(e), "{e:?} not in:\n{text}");
        }
        assert!(!text.contains("hunter2"), "a password in an error: {text}");
        let mut serve = postern()
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let status = wait_timeout(&mut serve, Duration::from_secs(20));
        let mut err = String::new();
        use std::io::Read;
        serve
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        assert_eq!(status.code(), Some(78), "serve must refuse: {err}");
        for e in expect {
            assert!(err.contains(e), "{e:?} not in:\n{err}");
        }
        assert!(!err.contains("hunter2"));
    };
    // A bad line: its file and line number.
    std::fs::write(
        &creds,
        "# relay logins\n[smtp.isp.test]:587 alice:hunter2\n[smtp.isp.test]:465 alice-hunter2\nnot a hop at all\n",
    )
    .unwrap();
    std::fs::set_permissions(&creds, std::fs::Permissions::from_mode(0o600)).unwrap();
    let c = creds.display().to_string();
    check(&[
        &format!("{c}:3: the login has no \":password\" after the name"),
        &format!("{c}:4: expected \"[host]:port login:password\""),
        "relay.credentials_file",
    ]);
    // A good file others may read: refused, with the fix.
    std::fs::write(&creds, "[smtp.isp.test]:587 alice:hunter2\n").unwrap();
    std::fs::set_permissions(&creds, std::fs::Permissions::from_mode(0o644)).unwrap();
    check(&[
        "mode 644 lets others read the passwords",
        &format!("chmod 600 {c}"),
    ]);
    // Fixed: accepted.
    std::fs::set_permissions(&creds, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = postern().arg("check-config").arg(&config).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
