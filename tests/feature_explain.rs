//! `postern explain`: one test per branch of the answer, each against the
//! real binary with the configuration and directory of a real server the
//! harness started (so the config is one postern serves with): a trusted
//! client relays, an unknown one is refused, a logged-in one relays; a
//! local Maildir with its quota (and refused at RCPT once full); an alias
//! chain through the aliases file and the alias table; a pipe's argv
//! after macro expansion; a routed domain with its fallback and
//! credentials lines; MX hosts from the test's own dnsmasq (and a DNS
//! failure that does not fail the command); a listener's content filter
//! and header rules; --json read by python3.
//!
//! dnsmasq, procmail and python3 are required: a missing one fails the
//! test.

mod common;
#[path = "common/dnsmasq.rs"]
mod dnsmasq;

use std::io::Write;
use std::process::Stdio;

use common::*;
use dnsmasq::Dnsmasq;

/// Runs `postern explain ARGS -c <the server's config>`: exit code,
/// stdout, stderr.
fn explain(srv: &Server, args: &[&str]) -> (i32, String, String) {
    let out = postern()
        .arg("explain")
        .args(args)
        .arg("-c")
        .arg(&srv.config)
        .output()
        .expect("run postern explain");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn has(text: &str, needle: &str) {
    assert!(text.contains(needle), "expected {needle:?} in:\n{text}");
}

#[test]
fn trusted_client_relays() {
    let srv = Server::start();
    let (code, out, _) = explain(
        &srv,
        &["x@remote.test", "--client", "127.0.0.1", "--no-dns"],
    );
    assert_eq!(code, 0, "{out}");
    has(&out, "in the trusted networks");
    has(&out, "RCPT TO:<x@remote.test> -> 250 2.1.5");
    has(&out, "[trusted_network]");
    has(&out, "x@remote.test: not one of our domains: sent onward");
    has(&out, "x@remote.test -> smtp");
    has(&out, "route: mx");
    has(&out, "remote.test:25 (no login)");
    has(&out, "lookup: not looked up (--no-dns)");
}

#[test]
fn unauthenticated_relay_is_denied() {
    let srv = Server::start();
    let (code, out, _) = explain(
        &srv,
        &["x@remote.test", "--client", "127.0.0.2", "--no-dns"],
    );
    assert_eq!(code, 1, "{out}");
    has(&out, "not in the trusted networks");
    has(&out, "RCPT TO:<x@remote.test> -> 554 5.7.1");
    has(&out, "Refused");
    has(&out, "[relay_denied]");
    assert!(!out.contains("Destinations:"), "{out}");
    // Our own domains stay open to everyone; unknown users are named.
    let (code, out, _) = explain(&srv, &["alice@example.test", "--client", "127.0.0.2"]);
    assert_eq!(code, 0, "{out}");
    has(&out, "[hosted_domain]");
    let (code, out, _) = explain(&srv, &["nobody@example.test", "--client", "127.0.0.2"]);
    assert_eq!(code, 1, "{out}");
    has(&out, "550 5.1.1");
    has(&out, "[unknown_user]");
    has(
        &out,
        "nobody@example.test: no alias, mailbox or catch-all for it",
    );
}

#[test]
fn authenticated_client_relays_and_submission_needs_a_login() {
    let srv = Server::builder()
        .listener("starttls", "require_auth = true")
        .start();
    let (code, out, _) = explain(
        &srv,
        &[
            "x@remote.test",
            "--client",
            "127.0.0.2",
            "--auth",
            "alice@example.test",
            "--listener",
            "2",
            "--no-dns",
        ],
    );
    assert_eq!(code, 0, "{out}");
    has(&out, "STARTTLS -> 220");
    has(&out, "AUTH PLAIN (alice@example.test) -> 235");
    has(&out, "logged in as alice@example.test");
    has(&out, "[authenticated]");
    has(&out, "require_auth");
    // Without a login the submission listener refuses MAIL already.
    let (code, out, _) = explain(
        &srv,
        &["x@remote.test", "--client", "127.0.0.2", "--listener", "2"],
    );
    assert_eq!(code, 1, "{out}");
    has(&out, "MAIL FROM:<> -> 530 5.7.0");
    assert!(!out.contains("RCPT TO"), "{out}");
    // A login the directory would refuse is pointed out.
    let (_, out, _) = explain(
        &srv,
        &[
            "x@remote.test",
            "--auth",
            "hank@example.test",
            "--listener",
            "2",
            "--no-dns",
        ],
    );
    has(&out, "hank@example.test has smtp_active = 0");
}

#[test]
fn local_maildir_with_its_quota() {
    let srv = Server::start();
    let maildir = srv.mailbox("example.test/tiny/");
    let (code, out, _) = explain(&srv, &["tiny@example.test", "--client", "127.0.0.2"]);
    assert_eq!(code, 0, "{out}");
    has(
        &out,
        "tiny@example.test: alias row tiny@example.test: goto = tiny@example.test",
    );
    has(&out, "tiny@example.test: mailbox row tiny@example.test: maildir = example.test/tiny/, quota = 20000");
    has(&out, "tiny@example.test -> maildir");
    has(&out, &format!("maildir: {}", maildir.display()));
    has(&out, "quota_bytes: 20000");
    has(&out, "quota_state: room left");
    // Full (Maildir++ maildirsize, as Dovecot keeps it): refused at RCPT.
    for d in ["new", "cur", "tmp"] {
        std::fs::create_dir_all(maildir.join(d)).unwrap();
    }
    std::fs::write(maildir.join("maildirsize"), "20000S\n25000 1\n").unwrap();
    let (code, out, _) = explain(&srv, &["tiny@example.test", "--client", "127.0.0.2"]);
    assert_eq!(code, 1, "{out}");
    has(&out, "RCPT TO:<tiny@example.test> -> 552 5.2.2");
    has(&out, "[quota_full]");
}

#[test]
fn alias_chain_through_the_aliases_file_and_the_alias_table() {
    let srv = Server::builder()
        .aliases("# admins\nroot: ops\nops: team@example.test\n")
        .start();
    let (code, out, _) = explain(&srv, &["root@localhost"]);
    assert_eq!(code, 0, "{out}");
    let file = srv.dir.path().join("aliases");
    has(
        &out,
        &format!("root@localhost: {}:2: root: ops", file.display()),
    );
    has(
        &out,
        &format!(
            "  ops@localhost: {}:3: ops: team@example.test",
            file.display()
        ),
    );
    has(&out, "    team@example.test: alias row team@example.test: goto = alice@example.test,bob@example.test");
    has(
        &out,
        "      alice@example.test: alias row alice@example.test: goto = alice@example.test",
    );
    has(
        &out,
        "        alice@example.test: mailbox row alice@example.test",
    );
    has(&out, "alice@example.test -> maildir");
    has(&out, "bob@example.test -> maildir");
    // A loop in the alias table is refused and shown.
    let (code, out, _) = explain(&srv, &["loop1@example.test"]);
    assert_eq!(code, 1, "{out}");
    has(&out, "[alias_loop]");
    has(
        &out,
        "loop1@example.test: already expanded above it: an alias loop",
    );
}

#[test]
fn pipe_transport_argv_after_macro_expansion() {
    let procmail = require("procmail");
    let procmail = procmail.display().to_string();
    let srv = Server::builder()
        .top("recipient_delimiter = \"+\"")
        .set("delivery", "virtual_transport = \"procmail\"")
        .raw(&format!(
            "[[transport]]\nname = \"procmail\"\nkind = \"pipe\"\ncommand = [\"{procmail}\", \"-t\", \"-m\", \"USER=${{user}}\", \"DOMAIN=${{nexthop}}\", \"EXTENSION=${{extension}}\", \"SIZE=${{size}}\", \"/etc/procmailrc\"]\nuser = \"5000:5000\"\nflags = \"R\"\n"
        ))
        .start();
    let (code, out, _) = explain(
        &srv,
        &["alice+lists@example.test", "--from", "me@remote.test"],
    );
    assert_eq!(code, 0, "{out}");
    has(&out, "alice@example.test -> pipe");
    has(&out, "transport: procmail");
    // ${size} is not known before a message exists: left as written.
    has(&out, &format!("argv: {procmail} -t -m USER=alice DOMAIN=example.test EXTENSION=lists SIZE=${{size}} /etc/procmailrc"));
    has(&out, "user: 5000:5000");
    has(&out, "flags: R");
    has(&out, "runs: once per recipient");
    has(
        &out,
        &format!("maildir: {}", srv.mailbox("example.test/alice/").display()),
    );
}

/// A credentials file (mode 0600).
fn credentials(dir: &std::path::Path, text: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join("relay-credentials");
    std::fs::write(&p, text).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    p
}

#[test]
fn routed_domain_with_fallback_and_credentials() {
    let d = Dnsmasq::start(&[
        "host-record=mail01p.example.test,127.0.0.21".to_string(),
        "host-record=mail01s.example.test,127.0.0.22".to_string(),
    ]);
    let dir = TestDir::new("explain-creds");
    let creds = credentials(
        dir.path(),
        "[mail01p.example.test]:2525 relayuser:primary-Secret\n[mail01s.example.test]:2526 backupuser:fallback-Secret\n",
    );
    let srv = Server::builder()
        .set("relay", &format!("dns_servers = [\"{}\"]", d.addr))
        .set("relay", &format!("credentials_file = \"{}\"", creds.display()))
        .set(
            "[relay.route]",
            "domain = \"mail01.example.test\"\nname = \"relay-mail01\"\nprimary = \"[mail01p.example.test]:2525\"\nfallback = [\"[mail01s.example.test]:2526\"]\ntls = \"encrypt\"",
        )
        .start();
    let (code, out, _) = explain(&srv, &["user@mail01.example.test"]);
    assert_eq!(code, 0, "{out}");
    has(&out, "user@mail01.example.test -> smtp");
    has(&out, "route: relay-mail01");
    has(&out, "tls: encrypt");
    has(&out, "primary:\n      [mail01p.example.test]:2525 (credentials [mail01p.example.test]:2525 (login relayuser))\n        mail01p.example.test: 127.0.0.21");
    has(&out, "fallback:\n      [mail01s.example.test]:2526 (credentials [mail01s.example.test]:2526 (login backupuser))\n        mail01s.example.test: 127.0.0.22");
    assert!(!out.contains("Secret"), "a password in the output:\n{out}");
}

#[test]
fn mx_hosts_from_the_configured_resolver() {
    let d = Dnsmasq::start(&[
        "mx-host=remote.test,mx1.remote.test,10".to_string(),
        "mx-host=remote.test,mx2.remote.test,20".to_string(),
        "host-record=mx1.remote.test,127.0.0.31".to_string(),
        "host-record=mx2.remote.test,127.0.0.32".to_string(),
    ]);
    let srv = Server::builder()
        .set("relay", &format!("dns_servers = [\"{}\"]", d.addr))
        .start();
    let (code, out, _) = explain(&srv, &["x@remote.test"]);
    assert_eq!(code, 0, "{out}");
    has(&out, "remote.test:25 (no login)\n        mx1.remote.test (MX preference 10): 127.0.0.31\n        mx2.remote.test (MX preference 20): 127.0.0.32");
    // A domain that does not exist is part of the answer, not an error.
    let (code, out, _) = explain(&srv, &["x@nowhere.test"]);
    assert_eq!(code, 0, "{out}");
    has(
        &out,
        "lookup: Host or domain name not found. Name service error for name=nowhere.test type=MX",
    );
}

#[test]
fn a_dns_failure_never_fails_the_command() {
    // The harness's resolver is a closed loopback port.
    let srv = Server::start();
    let (code, out, err) = explain(&srv, &["x@remote.test"]);
    assert_eq!(code, 0, "{out}{err}");
    has(&out, "x@remote.test -> smtp");
    has(&out, "try again");
}

#[test]
fn content_filter_and_header_rules_of_a_listener() {
    let srv = Server::builder()
        .listener("plain", "filter = \"[127.0.0.1]:10026\"")
        .listener(
            "plain",
            "role = \"reinject\"\ntrusted_networks = [\"127.0.0.1/32\"]",
        )
        .set("content", "header_rules = \"/^Received:/ IGNORE\"")
        .start();
    let config = srv.config.display().to_string();
    let (code, out, _) = explain(&srv, &["team@example.test", "--listener", "2"]);
    assert_eq!(code, 0, "{out}");
    has(&out, "listener 2 127.0.0.1:0 bound to 127.0.0.1:");
    has(
        &out,
        "Content filter [127.0.0.1]:10026: the message goes there first",
    );
    has(
        &out,
        "aliases expand when it comes back on listener 3 (127.0.0.1:0)",
    );
    has(&out, "alice@example.test -> maildir");
    has(&out, &format!("header: {config}:"));
    has(&out, "/^Received:/ IGNORE");
    // The same listener, named by the address it is bound to.
    let bound = srv.listener_addr(2).to_string();
    let (_, out, _) = explain(&srv, &["team@example.test", "--listener", &bound]);
    has(&out, "where the running server is bound");
    has(&out, "Content filter [127.0.0.1]:10026");
    // The listener without a filter of its own has none.
    let (_, out, _) = explain(&srv, &["team@example.test", "--listener", "1"]);
    assert!(!out.contains("Content filter"), "{out}");
    // The reinjection listener: only its trusted clients, only rewrites.
    let (code, out, _) = explain(&srv, &["team@example.test", "--listener", "3"]);
    assert_eq!(code, 0, "{out}");
    has(&out, "[reinject]");
    has(&out, "only IGNORE, STRIP and REPLACE act");
    let (code, out, _) = explain(
        &srv,
        &[
            "team@example.test",
            "--listener",
            "3",
            "--client",
            "127.0.0.2",
        ],
    );
    assert_eq!(code, 1, "{out}");
    has(&out, "RCPT TO:<team@example.test> -> 554 5.7.1");
}

#[test]
fn json_parses_with_python() {
    let srv = Server::start();
    let (code, out, _) = explain(
        &srv,
        &["team@example.test", "--from", "me@remote.test", "--json"],
    );
    assert_eq!(code, 0, "{out}");
    let check = r#"
import json, sys
r = json.load(sys.stdin)
assert r["accepted"] is True, r
assert r["rule"] == "hosted_domain", r
assert r["sender"] == "me@remote.test", r
assert r["listener"]["index"] == 1, r
assert [s["rule"] for s in r["expansion"]][:2] == ["alias", "alias"], r["expansion"]
dests = sorted(d["address"] for d in r["destinations"])
assert dests == ["alice@example.test", "bob@example.test"], dests
assert all(d["route"] == "maildir" and d["quota_bytes"] == 0 for d in r["destinations"]), r
print("ok")
"#;
    let mut child = python()
        .arg("-c")
        .arg(check)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(out.as_bytes())
        .unwrap();
    let res = child.wait_with_output().unwrap();
    assert!(
        res.status.success() && String::from_utf8_lossy(&res.stdout).trim() == "ok",
        "python3 did not accept the JSON:\n{}\n{out}",
        String::from_utf8_lossy(&res.stderr)
    );
}

#[test]
fn bad_input_gets_a_clear_error() {
    let srv = Server::start();
    let (code, _, err) = explain(&srv, &["x@remote.test", "--listener", "7"]);
    assert_eq!(code, 64, "{err}");
    has(
        &err,
        "no listener number 7; allowed: an index 1..1 or an address (1 = 127.0.0.1:0)",
    );
    let (code, _, err) = explain(&srv, &["x@remote.test", "--listener", "smtp"]);
    assert_eq!(code, 64, "{err}");
    has(&err, "not an index or an address");
    let (code, _, err) = explain(&srv, &["x@remote.test", "--client", "here"]);
    assert_eq!(code, 64, "{err}");
    has(&err, "--client \"here\" is not an IP address");
    let (code, out, _) = explain(&srv, &["not an address"]);
    assert_eq!(code, 1, "{out}");
    has(&out, "RCPT TO:<not an address> -> 553 5.1.3");
    has(&out, "[session]");
}
