//! Issue 12, parts 1-3 and 5: `postern convert` turns a Postfix directory
//! into a postern TOML file. The seed's own files (tests/fixtures/
//! seed-postfix/, transcribed verbatim from the guide) convert without an
//! error, the result passes `postern check-config` with its paths moved
//! under a temporary root (`--root`), the seed's mistakes are reported
//! and fixed, bad input gets clear errors naming file and line (output
//! only with --force), nothing outside the given directory is read, and
//! README's "Coming from Postfix" table is the converter's own.
//!
//! And the converted seed runs (part 3): with its ports on loopback, the
//! throwaway MariaDB as its MySQL, real procmail and the aiosmtpd content
//! filter, a LAN client relays, a stranger cannot, AUTH over TLS on 465
//! works, a virtual user's mail passes the filter and lands via procmail
//! without Received: headers, and mail01's mail goes to its primary, then,
//! with the primary down, to its secondary.

mod common;
#[path = "common/hooks.rs"]
mod hooks;
#[path = "common/mariadb.rs"]
mod mariadb;
#[path = "common/smtp_peers.rs"]
mod smtp_peers;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::*;
use mariadb::MariaDb;
use smtp_peers::{hold_port, sinks_on_one_port};

const EX_DATAERR: i32 = 65;

fn seed_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/seed-postfix")
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn convert(args: &[&str]) -> Run {
    let out = postern()
        .arg("convert")
        .args(args)
        .output()
        .expect("run postern convert");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A copy of the seed's files in `dir`, with `edit` applied to main.cf.
fn seed_copy(dir: &Path, edit: impl Fn(String) -> String) -> PathBuf {
    let to = dir.join("postfix");
    std::fs::create_dir_all(&to).unwrap();
    for e in std::fs::read_dir(seed_dir()).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
    let main = std::fs::read_to_string(to.join("main.cf")).unwrap();
    std::fs::write(to.join("main.cf"), edit(main)).unwrap();
    to
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn the_seed_converts_and_check_config_accepts_it() {
    let tmp = TestDir::new("convert-seed");
    let root = tmp.path().join("root");
    let seed = seed_dir();
    let sysconfig = seed.join("sysconfig-postfix");
    let r = convert(&[p(&seed), "--sysconfig", p(&sysconfig), "--root", p(&root)]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);

    // The listeners of master.cf, the policy, TLS and AUTH.
    for want in [
        "hostname = \"mail.hoge.org\"",
        "trusted_networks = [\"192.168.0.0/24\", \"127.0.0.1/32\"]",
        "address = \"0.0.0.0:25\"\nmode = \"starttls\"",
        "address = \"0.0.0.0:465\"\nmode = \"implicit-tls\"",
        "address = \"127.0.0.1:10025\"\nmode = \"plain\"",
        "role = \"reinject\"",
        "message_size_limit = 10485760",
        "backend = \"sqlite\"",
        "tls_only = true",
        // Delivery: the procmail pipe, Maildir base and ids.
        "virtual_transport = \"procmail\"",
        "command = [\"/usr/bin/procmail\", \"-t\", \"-m\", \"USER=${user}\", \"DOMAIN=${nexthop}\", \"EXTENSION=${extension}\", \"/etc/procmailrc\"]",
        "user = \"postfixadmin\"",
        "flags = \"R\"",
        "uid = 5000",
        "minimum_uid = 5000",
        // Content: header checks inline, the filter and its service.
        "/^Received:/ IGNORE",
        "filter = \"[127.0.0.1]:10026\"",
        "filter_concurrency = 4",
        "filter_data_timeout = \"1200s\"",
        "over_quota = \"bounce\"",
        // The fallback-relay pattern: a route with a fallback.
        "domain = \"mail01.hoge.org\"\n# master.cf service relay-mail01\nname = \"relay-mail01\"\nprimary = \"[mail01p.hoge.org]\"",
        "fallback = [\"[mail01s.hoge.org]\"]",
        // The directory: PostfixAdmin's MySQL database.
        "[sync.mysql]\n",
        "user = \"postfix-mysql-user\"",
        "database = \"postfix-user-db\"",
        // The seed's missing recipient_delimiter, written as meant.
        "recipient_delimiter = \"+\"",
    ] {
        assert!(r.stdout.contains(want), "missing {want:?} in\n{}", r.stdout);
    }
    // Paths are under the root; the password is in a 0600 file, never in the TOML.
    let rooted = |path: &str| format!("{}{path}", root.display());
    assert!(
        r.stdout.contains(&format!(
            "mailbox_base = \"{}\"",
            rooted("/var/hoge/mail-spool")
        )),
        "{}",
        r.stdout
    );
    assert!(!r.stdout.contains("postfix-mysql-pass"), "{}", r.stdout);
    let pw = root.join("etc/postern/mysql-password");
    assert_eq!(
        std::fs::read_to_string(&pw).unwrap(),
        "postfix-mysql-pass\n"
    );
    assert_eq!(
        std::fs::metadata(&pw).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(root.join("etc/postern/vquota").is_file());

    // Irrelevant and unsupported parameters: in the comment block and on stderr.
    for (want, why) in [
        ("debugger_command", "irrelevant"),
        ("html_directory", "irrelevant"),
        ("virtual_mailbox_limit_inbox", "not supported"),
        ("smtpd_hard_error_limit", "not supported"),
    ] {
        let line = r
            .stderr
            .lines()
            .find(|l| l.contains(want))
            .unwrap_or_else(|| panic!("{want} not on stderr:\n{}", r.stderr));
        assert!(line.contains(why), "{line}");
        assert!(
            r.stdout
                .lines()
                .any(|l| l.starts_with("# - ") && l.contains(want)),
            "{want} not in the comment block"
        );
    }
    // Postfix defaults and built-in behaviour are not copied.
    assert!(!r.stdout.contains("smtpd_banner ="));

    // check-config accepts it once the files it names exist under the
    // root (the certificate, /etc/aliases) and the pipe's user exists on
    // this machine (the seed's postfixadmin does not).
    let ck = rcgen::generate_simple_self_signed(vec!["mail.hoge.org".to_string()]).unwrap();
    std::fs::create_dir_all(root.join("etc/pki/tls")).unwrap();
    std::fs::write(root.join("etc/pki/tls/mail.hoge.crt"), ck.cert.pem()).unwrap();
    std::fs::write(
        root.join("etc/pki/tls/mail.hoge.key"),
        ck.signing_key.serialize_pem(),
    )
    .unwrap();
    std::fs::write(root.join("etc/aliases"), "root: hoge-owner@mail.hoge.org\n").unwrap();
    let toml = tmp.path().join("postern.toml");
    std::fs::write(
        &toml,
        r.stdout
            .replace("user = \"postfixadmin\"", "user = \"nobody\""),
    )
    .unwrap();
    let (ok, out) = run(postern().arg("check-config").arg(&toml));
    assert!(
        ok,
        "check-config refused the converted seed:\n{out}\n{}",
        r.stdout
    );
}

#[test]
fn the_seeds_mistakes_are_reported_and_fixed() {
    let tmp = TestDir::new("convert-lint");
    let r = convert(&[p(&seed_dir()), "--root", p(tmp.path())]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    for (param, says) in [
        (
            "procmail_destination_recipient_limit",
            "one run per recipient",
        ),
        (
            "receive_override_options",
            "aliases expand after the filter",
        ),
        ("smtpd_authorized_xforward_hosts", "accepts XFORWARD"),
        ("recipient_delimiter", "EXTENSION was always empty"),
        ("virtual_mailbox_limit_maps", "no quota was ever enforced"),
        ("@mail.hoge.org", "default limit of each mailbox"),
        ("transport_maps", "Postfix never routed by it"),
    ] {
        let line = r
            .stderr
            .lines()
            .position(|l| l.contains(param) && l.contains("finding"))
            .unwrap_or_else(|| panic!("no finding about {param}:\n{}", r.stderr));
        // The finding, with what postern does and how to get the old
        // behaviour, on the next lines.
        let text: String = r
            .stderr
            .lines()
            .skip(line)
            .take(4)
            .collect::<Vec<_>>()
            .join("\n");
        assert!(text.contains(says), "{text}");
        assert!(
            r.stdout.contains(says),
            "{says:?} not in the output's comments"
        );
    }
    assert!(r.stderr.contains("Old behaviour"), "{}", r.stderr);
}

/// One bad input: no output without --force (exit 65, every problem on
/// stderr naming file and line); with --force the output, listing them.
fn bad_input(tag: &str, edit: impl Fn(&Path), wants: &[&str]) {
    let tmp = TestDir::new(tag);
    let dir = seed_copy(tmp.path(), |m| m);
    edit(&dir);
    let root = tmp.path().join("root");
    let r = convert(&[p(&dir), "--root", p(&root)]);
    assert_eq!(
        r.code,
        Some(EX_DATAERR),
        "{tag}: {}\n{}",
        r.stderr,
        r.stdout
    );
    assert!(
        r.stdout.is_empty(),
        "{tag}: output without --force:\n{}",
        r.stdout
    );
    assert!(!root.exists(), "{tag}: side files written without --force");
    for w in wants {
        assert!(r.stderr.contains(w), "{tag}: {w:?} not in\n{}", r.stderr);
    }
    assert!(r.stderr.contains("nothing written"), "{}", r.stderr);
    let r = convert(&[p(&dir), "--root", p(&root), "--force"]);
    assert_eq!(r.code, Some(0), "{tag} --force: {}", r.stderr);
    assert!(
        r.stdout.contains("# Problems: this output is INCOMPLETE"),
        "{}",
        r.stdout
    );
    for w in wants {
        assert!(
            r.stdout
                .lines()
                .any(|l| l.starts_with("# - ") && l.contains(w)),
            "{tag} --force: {w:?} not listed in\n{}",
            r.stdout
        );
    }
}

fn append(file: PathBuf, text: &str) {
    let mut s = std::fs::read(&file).unwrap();
    s.extend_from_slice(text.as_bytes());
    std::fs::write(file, s).unwrap();
}

#[test]
fn a_100_kb_line_is_refused_with_its_line() {
    bad_input(
        "convert-long",
        |d| {
            append(
                d.join("main.cf"),
                &format!("junk = {}\n", "x".repeat(100 * 1024)),
            )
        },
        &["main.cf:243", "longer than"],
    );
}

#[test]
fn binary_junk_is_refused_with_its_line() {
    bad_input(
        "convert-binary",
        |d| {
            let mut s = std::fs::read(d.join("master.cf")).unwrap();
            s.splice(0..0, b"\x7fELF\x02\x01\x01\x00\x00\n".iter().copied());
            std::fs::write(d.join("master.cf"), s).unwrap();
        },
        &["master.cf:1", "binary data"],
    );
}

#[test]
fn a_missing_map_file_is_an_error_naming_the_parameter() {
    bad_input(
        "convert-missing-map",
        |d| std::fs::remove_file(d.join("mysql_virtual_alias_maps.cf")).unwrap(),
        &[
            "main.cf:186: virtual_alias_maps: error: ",
            "mysql_virtual_alias_maps.cf: cannot read",
        ],
    );
}

#[test]
fn a_mysql_file_without_password_is_an_error() {
    bad_input(
        "convert-no-password",
        |d| {
            let f = d.join("mysql_virtual_domains_maps.cf");
            let s = std::fs::read_to_string(&f).unwrap();
            std::fs::write(&f, s.replace("password = postfix-mysql-pass\n", "")).unwrap();
        },
        &["mysql_virtual_domains_maps.cf: password: error: missing"],
    );
}

#[test]
fn a_parameter_loop_is_an_error_naming_the_chain() {
    bad_input(
        "convert-loop",
        |d| append(d.join("main.cf"), "a = $b\nb = $a\nmyorigin = $a\n"),
        &["main.cf:245: myorigin", "$myorigin -> $a -> $b -> $a"],
    );
}

#[test]
fn nothing_outside_the_directory_is_read() {
    let tmp = TestDir::new("convert-confined");
    let secret = tmp.path().join("outside.cf");
    std::fs::write(&secret, "/^Subject:/ REJECT outside\n").unwrap();
    let dir = seed_copy(tmp.path(), |m| {
        m.replace(
            "header_checks = regexp:/etc/postfix/header_checks",
            &format!("header_checks = regexp:{}", secret.display()),
        )
        .replace("regexp:/etc/postfix/header_checks", "")
            + "body_checks = regexp:/etc/postfix/linked\n"
    });
    std::os::unix::fs::symlink(&secret, dir.join("linked")).unwrap();
    let r = convert(&[p(&dir), "--root", p(&tmp.path().join("root")), "--force"]);
    assert!(
        r.stderr
            .contains("outside /etc/postfix, the directory given: not read"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("outside the directory given: not read"),
        "{}",
        r.stderr
    );
    assert!(!r.stdout.contains("REJECT outside"), "{}", r.stdout);
}

#[test]
fn unsupported_parameters_are_listed_with_their_reason() {
    let tmp = TestDir::new("convert-unsupported");
    let dir = seed_copy(tmp.path(), |m| {
        m + "smtpd_restriction_classes = friends\n\
             debug_peer_list = 192.168.0.9\n\
             smtpd_sender_restrictions = reject_unknown_sender_domain\n\
             smtpd_recipient_restrictions = permit_mynetworks, check_policy_service inet:127.0.0.1:10023, reject_unauth_destination\n\
             relay_domains = $mydestination, other.test\n\
             frobnicate_level = 3\n\
             mailbox_command = /usr/bin/procmail -a \"$EXTENSION\"\n\
             smtp_tls_security_level = dane\n"
    });
    std::fs::write(
        dir.join("master.cf"),
        std::fs::read_to_string(dir.join("master.cf")).unwrap()
            + "submission inet n - n - - smtpd\n    -o smtpd_tls_security_level=may\n    -o smtpd_client_restrictions=permit_sasl_authenticated,reject\n    -o milter_macro_daemon_name=ORIGINATING\n",
    )
    .unwrap();
    let r = convert(&[p(&dir), "--root", p(&tmp.path().join("root"))]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    for (param, why) in [
        ("smtpd_restriction_classes", "not supported"),
        ("debug_peer_list", "per-client verbose logging"),
        ("smtpd_sender_restrictions", "not supported"),
        ("smtpd_recipient_restrictions", "check_policy_service"),
        ("relay_domains", "other.test"),
        ("frobnicate_level", "not known to postern convert"),
        ("milter_macro_daemon_name", "not known to postern convert"),
        ("mailbox_command", "without a shell"),
        ("smtp_tls_security_level", "dane: not supported"),
    ] {
        let line = r
            .stderr
            .lines()
            .find(|l| l.contains(param) && l.contains(why));
        assert!(
            line.is_some(),
            "{param}: {why:?} not on stderr:\n{}",
            r.stderr
        );
        assert!(
            r.stdout
                .lines()
                .any(|l| l.starts_with("# - ") && l.contains(param)),
            "{param} not in the comment block"
        );
    }
    // The submission service: STARTTLS on 587, login required.
    assert!(
        r.stdout.contains("address = \"0.0.0.0:587\"\nmode = \"starttls\"\n# -o smtpd_client_restrictions=permit_sasl_authenticated,reject\nrequire_auth = true"),
        "{}",
        r.stdout
    );
}

#[test]
fn readme_table_is_the_converters_own() {
    let r = convert(&["--table"]);
    assert_eq!(r.code, Some(0));
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    assert!(
        readme.contains(&r.stdout),
        "README's \"Coming from Postfix\" table differs from `postern convert --table`; paste its output:\n{}",
        r.stdout
    );
}

#[test]
fn without_a_directory_it_says_what_it_needs() {
    let r = convert(&[]);
    assert_eq!(r.code, Some(64), "{}", r.stderr);
    assert!(
        r.stderr.contains("postern convert /etc/postfix"),
        "{}",
        r.stderr
    );
    let r = convert(&["/nonexistent/postfix"]);
    assert_eq!(r.code, Some(66), "{}", r.stderr);
}

/// Replaces `from` (which must be there) in the converted file: the only
/// changes the end-to-end run makes, each one named.
fn edit(text: &mut String, from: &str, to: &str) {
    assert!(
        text.contains(from),
        "{from:?} not in the converted file:\n{text}"
    );
    *text = text.replace(from, to);
}

/// The aiosmtpd content filter (tests/common/content_filter.py) on
/// `port`, handing back to `reinject`; killed when dropped.
fn start_filter(port: u16, reinject: std::net::SocketAddr, dir: &Path) -> ChildGuard {
    require_python_module("aiosmtpd");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/common/content_filter.py");
    std::fs::create_dir_all(dir).unwrap();
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
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.join("filter.log")).unwrap())
        .spawn()
        .expect("start the content filter");
    let mut line = String::new();
    let _ = BufReader::new(child.stdout.take().unwrap()).read_line(&mut line);
    let guard = ChildGuard::new(child);
    assert_eq!(
        line.trim(),
        "READY",
        "{}",
        std::fs::read_to_string(dir.join("filter.log")).unwrap_or_default()
    );
    guard
}

/// A message with a Received: header of its own (the seed strips them all).
fn seed_message(subject: &str) -> String {
    format!("Received: from lan-host.test by mail.hoge.org; Mon, 1 Dec 2025 00:00:00 +0000\r\nFrom: <lan@example.test>\r\nSubject: {subject}\r\n\r\n{subject}\r\n")
}

/// Part 3: the converted seed runs. Ports moved to loopback ports the
/// kernel picks, MySQL = the throwaway MariaDB with PostfixAdmin's
/// fixture (the seed's own user, password and database name), procmail
/// real with a test rcfile, the amavis filter = the aiosmtpd filter, the
/// seed's relay domains and relays moved to .test names and loopback
/// addresses. Everything else is the converter's output as it is.
#[test]
fn the_converted_seed_runs() {
    if !hooks::root_or_skip("the_converted_seed_runs") {
        return;
    }
    require("procmail");
    let tmp = TestDir::new("convert-e2e");
    let root = tmp.path().join("root");

    // The seed's MySQL database, user and password, in the throwaway MariaDB.
    let db = MariaDb::shared();
    db.source("postfix-user-db");
    db.sql(
        None,
        "CREATE USER IF NOT EXISTS 'postfix-mysql-user'@'localhost' IDENTIFIED BY 'postfix-mysql-pass';\n\
         GRANT SELECT ON `postfix-user-db`.* TO 'postfix-mysql-user'@'localhost';",
    );

    let r = convert(&[p(&seed_dir()), "--root", p(&root)]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let mut cfg = r.stdout.clone();

    // Ports: the kernel's (read back from data_dir/listening), in order
    // smtp (25), smtps (465), the reinjection listener (10025).
    edit(
        &mut cfg,
        "address = \"0.0.0.0:25\"",
        "address = \"127.0.0.1:0\"",
    );
    edit(
        &mut cfg,
        "address = \"0.0.0.0:465\"",
        "address = \"127.0.0.1:0\"",
    );
    edit(
        &mut cfg,
        "address = \"127.0.0.1:10025\"",
        "address = \"127.0.0.1:0\"",
    );
    // The LAN (192.168.0.0/24) is 127.0.0.64/26 here; 127.0.0.2 is a stranger.
    edit(&mut cfg, "\"192.168.0.0/24\"", "\"127.0.0.64/26\"");
    // Kept until the filter binds it: postern starts in between.
    let held = hold_port();
    let filter_port = held.port;
    edit(
        &mut cfg,
        "filter = \"[127.0.0.1]:10026\"",
        &format!("filter = \"[127.0.0.1]:{filter_port}\""),
    );
    // MariaDB's socket (the seed's `hosts = localhost` is the socket too).
    edit(
        &mut cfg,
        "[sync.mysql]\n",
        &format!("[sync.mysql]\nsocket = \"{}\"\n", db.socket.display()),
    );
    // procmail: the delivery uid (the seed's postfixadmin does not exist
    // here) and a test rcfile instead of the machine's /etc/procmailrc.
    let base = root.join("var/hoge/mail-spool");
    let rc = tmp.path().join("procmailrc");
    std::fs::write(
        &rc,
        format!(
            "MAILDIR={}/$DOMAIN/$USER/\nDEFAULT=$MAILDIR\n\n:0\n./\n",
            base.display()
        ),
    )
    .unwrap();
    edit(&mut cfg, "user = \"postfixadmin\"", "user = \"5000:5000\"");
    edit(
        &mut cfg,
        "\"/etc/procmailrc\"",
        &format!("{:?}", rc.display().to_string()),
    );
    // The seed's relay domains and relays: mail01.example.test, its
    // primary on 127.0.0.2 and its secondary on 127.0.0.3, one port.
    let (relay_port, mut relays) =
        sinks_on_one_port(&[("127.0.0.2", vec![]), ("127.0.0.3", vec![])]);
    edit(&mut cfg, "\"mail01.hoge.org\"", "\"mail01.example.test\"");
    edit(
        &mut cfg,
        "\"[mail01p.hoge.org]\"",
        &format!("\"[127.0.0.2]:{relay_port}\""),
    );
    edit(
        &mut cfg,
        "\"[mail01s.hoge.org]\"",
        &format!("\"[127.0.0.3]:{relay_port}\""),
    );
    edit(&mut cfg, "\"mail02.hoge.org\"", "\"mail02.example.test\"");
    edit(
        &mut cfg,
        "\"[mail02p.hoge.org]\"",
        &format!("\"[127.0.0.2]:{relay_port}\""),
    );
    edit(
        &mut cfg,
        "\"[mail02s.hoge.org]\"",
        &format!("\"[127.0.0.3]:{relay_port}\""),
    );
    // Short retries, so that nothing here waits on Postfix's defaults.
    cfg.push_str("\n[queue]\nmin_backoff = \"1s\"\nmax_backoff = \"2s\"\n");
    // The files the seed names: its certificate, /etc/aliases.
    let ck = rcgen::generate_simple_self_signed(vec!["mail.hoge.org".to_string()]).unwrap();
    std::fs::create_dir_all(root.join("etc/pki/tls")).unwrap();
    std::fs::write(root.join("etc/pki/tls/mail.hoge.crt"), ck.cert.pem()).unwrap();
    std::fs::write(
        root.join("etc/pki/tls/mail.hoge.key"),
        ck.signing_key.serialize_pem(),
    )
    .unwrap();
    std::fs::write(root.join("etc/aliases"), "root: alice@example.test\n").unwrap();
    let toml = tmp.path().join("postern.toml");
    std::fs::write(&toml, &cfg).unwrap();

    let data = root.join("var/lib/postern");
    let log = tmp.path().join("postern.log");
    let mut cmd = postern();
    cmd.arg("serve").arg("--config").arg(&toml);
    let srv = Served::start(cmd, &log, &data);
    assert_eq!(srv.listeners.len(), 3, "{:?}", srv.listeners);
    let (smtp, smtps, reinject) = (
        srv.listeners[0].addr,
        srv.listeners[1].addr,
        srv.listeners[2].addr,
    );
    let _filter = start_filter(filter_port, reinject, &tmp.path().join("filter"));
    drop(held);

    // A LAN client relays (to the routed mail01.example.test: its primary).
    let mut c = Smtp::connect_from("127.0.0.65", smtp);
    c.hello();
    let reply = c.send_mail(
        "lan@example.test",
        &["someone@mail01.example.test"],
        &seed_message("from the LAN"),
    );
    assert_eq!(reply.code, 250, "{reply:?}\n{}", srv.log());
    c.expect("QUIT", "221");
    let primary = relays.remove(0);
    let got = primary.wait_received(1, Duration::from_secs(30));
    assert_eq!(
        got.len(),
        1,
        "the primary relay got the LAN's mail\n{}",
        srv.log()
    );
    assert_eq!(got[0].rcpts, ["someone@mail01.example.test"]);

    // A stranger cannot relay, not even to the routed domain.
    let mut c = Smtp::connect_from("127.0.0.2", smtp);
    c.hello();
    c.expect("MAIL FROM:<x@elsewhere.test>", "250");
    c.expect("RCPT TO:<someone@mail01.example.test>", "554");
    c.expect("QUIT", "221");

    // AUTH over TLS on 465 (gail's PostfixAdmin password, mirrored from
    // MariaDB): a logged-in stranger relays.
    let out = python()
        .arg("-c")
        .arg(format!(
            "import smtplib, ssl\n\
             ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE\n\
             s = smtplib.SMTP_SSL('127.0.0.1', {port}, source_address=('127.0.0.2', 0), context=ctx, timeout=30)\n\
             s.login('gail@example.test', 'gail-secret')\n\
             s.sendmail('gail@example.test', ['after-auth@mail01.example.test'], 'Subject: over 465\\r\\n\\r\\nlogged in\\r\\n')\n\
             s.quit()\n\
             print('SENT')\n",
            port = smtps.port()
        ))
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("SENT"),
        "AUTH on 465 failed: {said}\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        srv.log()
    );
    let got = primary.wait_received(2, Duration::from_secs(30));
    assert_eq!(got.len(), 2, "{}", srv.log());
    assert_eq!(got[1].rcpts, ["after-auth@mail01.example.test"]);

    // Mail for a virtual user passes the filter and lands via procmail,
    // its Received: headers stripped by the seed's header_checks.
    let mut c = Smtp::connect_from("127.0.0.2", smtp);
    c.hello();
    let reply = c.send_mail(
        "friend@elsewhere.test",
        &["alice@example.test"],
        &seed_message("for alice"),
    );
    assert_eq!(reply.code, 250, "{reply:?}\n{}", srv.log());
    c.expect("QUIT", "221");
    let alice = base.join("example.test/alice");
    let files = wait_maildir(&alice, 1, Duration::from_secs(30));
    assert_eq!(files.len(), 1, "alice's mail landed\n{}", srv.log());
    let text = std::fs::read_to_string(&files[0]).unwrap();
    assert!(
        text.contains("X-Virus-Scanned:"),
        "it passed the filter:\n{text}"
    );
    assert!(
        text.starts_with("Return-Path: <friend@elsewhere.test>"),
        "procmail's copy (flag R):\n{text}"
    );
    // First to the filter, then (reinjected) by the procmail pipe.
    // (The log line follows the file: procmail wrote it before it exited.)
    let sent = |relay: &str| {
        srv.log().lines().any(|l| {
            l.contains("to=<alice@example.test>") && l.contains(relay) && l.contains("status=sent")
        })
    };
    let both =
        || sent(&format!("relay=127.0.0.1[127.0.0.1]:{filter_port}")) && sent("relay=procmail");
    assert!(
        hooks::wait_until(Duration::from_secs(30), both),
        "through the filter, then procmail:\n{}",
        srv.log()
    );
    assert!(
        !text
            .lines()
            .any(|l| l.to_ascii_lowercase().starts_with("received:")),
        "Received: stripped:\n{text}"
    );

    // With the primary down, mail01.example.test goes to its secondary.
    drop(primary);
    let secondary = relays.remove(0);
    let mut c = Smtp::connect_from("127.0.0.65", smtp);
    c.hello();
    let reply = c.send_mail(
        "lan@example.test",
        &["later@mail01.example.test"],
        &seed_message("primary down"),
    );
    assert_eq!(reply.code, 250, "{reply:?}\n{}", srv.log());
    c.expect("QUIT", "221");
    let got = secondary.wait_received(1, Duration::from_secs(30));
    assert_eq!(got.len(), 1, "the secondary took over\n{}", srv.log());
    assert_eq!(got[0].rcpts, ["later@mail01.example.test"]);
}
