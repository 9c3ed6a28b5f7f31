//! Issue 3, SMTP AUTH (RFC 4954) against the PostfixAdmin directory: PLAIN
//! (RFC 4616) and LOGIN for every password scheme of the fixture, through
//! swaks, Python smtplib and curl over STARTTLS and implicit TLS; the
//! refusals (wrong password, receive-only, inactive, before TLS); the SASL
//! exchange's corner cases on a raw socket (with `auth.tls_only = false` so
//! the harness's plaintext client can speak it); relaying after login,
//! submission listeners, the Received: header, and the brute-force limiter.
//! No password may ever show up in the log.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use postern::smtp::sasl::encode as b64;

const WAIT: Duration = Duration::from_secs(20);

/// (login, password) of the fixture, one per scheme.
const USERS: [(&str, &str, &str); 6] = [
    ("alice@example.test", "alice-secret", "$6$ sha512-crypt"),
    ("bob@example.test", "bob-secret", "$1$ md5crypt"),
    ("carol@example.test", "carol-secret", "{SHA256-CRYPT}"),
    ("dave@example.test", "dave-secret", "{BLF-CRYPT} bcrypt"),
    ("erin@example.test", "erin-secret", "{SSHA512}"),
    ("gail@example.test", "gail-secret", "{PLAIN}"),
];

const WRONG: &str = "Wr0ng-Passw0rd-xyzzy";

// --- servers -------------------------------------------------------------------

struct AuthServer {
    srv: Server,
    /// STARTTLS.
    st: u16,
    /// Implicit TLS.
    imp: u16,
    /// STARTTLS with require_auth (submission).
    sub: u16,
}

impl AuthServer {
    fn addr(port: u16) -> SocketAddr {
        format!("127.0.0.1:{port}").parse().unwrap()
    }
}

/// Fast failures and no per-address limit unless the test sets its own.
fn quick(b: ServerBuilder) -> ServerBuilder {
    b.set("auth", "failure_delay = \"10ms\"")
        .set("auth", "max_failures = 1000")
}

/// Listeners 2, 3 and 4 besides the harness's own (1).
fn auth_server(b: ServerBuilder) -> AuthServer {
    let srv = b
        .listener("starttls", "")
        .listener("implicit-tls", "")
        .listener("starttls", "require_auth = true")
        .start();
    AuthServer {
        st: srv.listener_port(2),
        imp: srv.listener_port(3),
        sub: srv.listener_port(4),
        srv,
    }
}

/// A server whose harness listener offers AUTH in plaintext, for the raw
/// protocol checks.
fn plaintext_auth_server(b: ServerBuilder) -> Server {
    quick(b).set("auth", "tls_only = false").start()
}

// --- clients ---------------------------------------------------------------------

fn swaks(args: &[&str]) -> (bool, String) {
    require("swaks");
    run(peer("swaks")
        .args([
            "--server",
            "127.0.0.1",
            "--ehlo",
            "client.test",
            "--timeout",
            "20",
        ])
        .args(args))
}

/// swaks login only (quits after AUTH).
fn swaks_login(
    port: u16,
    tls: &str,
    mech: &str,
    user: &str,
    pass: &str,
    extra: &[&str],
) -> (bool, String) {
    let port = port.to_string();
    let mut args = vec!["--port", &port];
    if !tls.is_empty() {
        args.push(tls);
    }
    args.extend([
        "--auth",
        mech,
        "--auth-user",
        user,
        "--auth-password",
        pass,
        "--quit-after",
        "AUTH",
    ]);
    args.extend(extra);
    swaks(&args)
}

fn python(script: &str, args: &[&str]) -> (bool, String) {
    run(common::python().arg("-c").arg(script).args(args))
}

const PY_PRELUDE: &str = r#"
import smtplib, ssl, sys
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
def connect(mode, port, source=None):
    src = (source, 0) if source else None
    if mode == 'implicit':
        s = smtplib.SMTP_SSL('127.0.0.1', port, local_hostname='client.test', timeout=20, context=ctx, source_address=src)
        s.ehlo()
    else:
        s = smtplib.SMTP('127.0.0.1', port, local_hostname='client.test', timeout=20, source_address=src)
        s.ehlo()
        if mode == 'starttls':
            s.starttls(context=ctx)
            s.ehlo()
    return s
"#;

fn plain_ir(authzid: &str, user: &str, pass: &str) -> String {
    b64(format!("{authzid}\0{user}\0{pass}").as_bytes())
}

/// Greets and says EHLO on a raw plaintext connection.
fn raw(srv: &Server) -> Smtp {
    let mut c = srv.smtp();
    c.hello();
    c
}

/// No password (raw, or base64 in any PLAIN/LOGIN form we sent) in the log.
fn assert_no_passwords(srv: &Server, extra: &[&str]) {
    let log = srv.log();
    let mut secrets: Vec<String> = USERS.iter().map(|u| u.1.to_string()).collect();
    secrets.push(WRONG.to_string());
    secrets.extend(extra.iter().map(|s| s.to_string()));
    for p in &secrets {
        assert!(
            !log.contains(p.as_str()),
            "password {p:?} in the log:\n{log}"
        );
        assert!(
            !log.contains(&b64(p.as_bytes())),
            "base64 of {p:?} in the log"
        );
        for (u, _, _) in USERS {
            let blob = plain_ir("", u, p);
            assert!(!log.contains(&blob), "PLAIN blob for {u}/{p} in the log");
        }
    }
}

fn delivered(srv: &Server, mailbox: &str, subject: &str) -> String {
    wait_message(srv, &srv.mailbox(mailbox), subject)
}

// --- logins with real clients ----------------------------------------------------------

#[test]
fn every_fixture_user_logs_in_with_swaks_plain_and_login() {
    let a = auth_server(quick(Server::builder()));
    for (user, pass, scheme) in USERS {
        for mech in ["PLAIN", "LOGIN"] {
            let (ok, out) = swaks_login(a.st, "--tls", mech, user, pass, &[]);
            assert!(ok, "{user} ({scheme}) {mech}:\n{out}");
            assert!(
                out.contains("235 2.7.0 Authentication successful"),
                "{user} {mech}:\n{out}"
            );
            assert!(
                a.srv.log().contains(&format!(
                    "sasl_method={mech}, sasl_username={user}: authenticated"
                )),
                "{user} {mech}:\n{}",
                a.srv.log()
            );
        }
        // Implicit TLS, and a wrong password for the same user.
        let (ok, out) = swaks_login(a.imp, "--tlsc", "PLAIN", user, pass, &[]);
        assert!(ok && out.contains("235 2.7.0"), "{user} implicit:\n{out}");
        let (ok, out) = swaks_login(a.st, "--tls", "LOGIN", user, WRONG, &[]);
        assert!(!ok, "{user} with a wrong password:\n{out}");
        assert!(out.contains("535 5.7.8"), "{user}:\n{out}");
        assert!(!out.contains("235 "), "{out}");
    }
    assert_no_passwords(&a.srv, &[]);
}

#[test]
fn smtplib_and_curl_log_in_over_starttls_and_implicit_tls() {
    let a = auth_server(quick(Server::builder()));
    let script = format!(
        "{PY_PRELUDE}{}",
        r#"
mode, port = sys.argv[1], int(sys.argv[2])
creds = sys.stdin.read().split()
for i in range(0, len(creds), 2):
    user, pw = creds[i], creds[i + 1]
    for mech in ('PLAIN', 'LOGIN'):
        for ir in (True, False):
            s = connect(mode, port)
            assert s.has_extn('auth'), s.esmtp_features
            auth = s.auth_plain if mech == 'PLAIN' else s.auth_login
            s.user, s.password = user, pw
            code, msg = s.auth(mech, auth, initial_response_ok=ir)
            print('LOGIN', mode, user, mech, ir, code)
            assert code == 235, (code, msg)
            msg = 'From: %s\r\nTo: alice@example.test\r\nSubject: smtplib-%s-%s-%s-%s\r\n\r\nhi\r\n' % (user, mode, user, mech, ir)
            s.sendmail(user, ['alice@example.test'], msg)
            s.quit()
    # And login() with a wrong password raises.
    s = connect(mode, port)
    try:
        s.login(user, pw + 'x')
        print('WRONG ACCEPTED')
    except smtplib.SMTPAuthenticationError as e:
        print('WRONG', e.smtp_code)
    s.quit()
print('DONE')
"#
    );
    let creds = "alice@example.test alice-secret dave@example.test dave-secret gail@example.test gail-secret";
    for (mode, port) in [("starttls", a.st), ("implicit", a.imp)] {
        let out = common::python()
            .arg("-c")
            .arg(&script)
            .args([mode, &port.to_string()])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write;
                c.stdin.take().unwrap().write_all(creds.as_bytes())?;
                c.wait_with_output()
            })
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success() && text.contains("DONE"),
            "{mode}:\n{text}"
        );
        assert_eq!(text.matches("WRONG 535").count(), 3, "{text}");
        assert!(!text.contains("WRONG ACCEPTED"), "{text}");
    }
    let msg = delivered(
        &a.srv,
        "example.test/alice/",
        "smtplib-implicit-dave@example.test-LOGIN-False",
    );
    let rcv = received_header(&msg);
    assert!(rcv.contains("with ESMTPSA id"), "{rcv}");
    assert!(
        !rcv.contains("Authenticated sender"),
        "off by default: {rcv}"
    );

    // curl: --user over STARTTLS (--ssl-reqd) and smtps://, PLAIN and LOGIN.
    require("curl");
    let dir = TestDir::new("curl");
    for (url, opts) in [
        (
            format!("smtp://127.0.0.1:{}/client.test", a.st),
            "AUTH=PLAIN",
        ),
        (
            format!("smtp://127.0.0.1:{}/client.test", a.st),
            "AUTH=LOGIN",
        ),
        (
            format!("smtps://127.0.0.1:{}/client.test", a.imp),
            "AUTH=PLAIN",
        ),
        (
            format!("smtps://127.0.0.1:{}/client.test", a.imp),
            "AUTH=LOGIN",
        ),
    ] {
        let subject = format!("curl {url} {opts}");
        let f = dir.path().join("msg");
        std::fs::write(&f, message(&subject, "via curl\r\n")).unwrap();
        let (ok, out) = run(peer("curl")
            .args(["-sS", "-v", "--ssl-reqd", "-k", "--max-time", "20"])
            .args(["--login-options", opts])
            .args(["--user", "carol@example.test:carol-secret"])
            .arg(&url)
            .args([
                "--mail-from",
                "carol@example.test",
                "--mail-rcpt",
                "alice@example.test",
            ])
            .arg("-T")
            .arg(&f));
        assert!(ok, "curl {url} {opts}:\n{out}");
        assert!(out.contains("235 2.7.0"), "{out}");
        let rcv = received_header(&delivered(&a.srv, "example.test/alice/", &subject));
        assert!(rcv.contains("with ESMTPSA"), "{rcv}");
        // And a wrong password fails.
        let (ok, out) = run(peer("curl")
            .args(["-sS", "-v", "--ssl-reqd", "-k", "--max-time", "20"])
            .args(["--login-options", opts])
            .args(["--user", &format!("carol@example.test:{WRONG}")])
            .arg(&url)
            .args([
                "--mail-from",
                "carol@example.test",
                "--mail-rcpt",
                "alice@example.test",
            ])
            .arg("-T")
            .arg(&f));
        assert!(!ok, "curl with a wrong password: {out}");
        assert!(out.contains("535 5.7.8"), "{out}");
    }
    assert_no_passwords(&a.srv, &["dave-secretx", "gail-secretx", "alice-secretx"]);
}

#[test]
fn wrong_password_unknown_inactive_and_receive_only_users_are_refused() {
    let a = auth_server(quick(Server::builder()));
    for (user, pass, why) in [
        ("alice@example.test", WRONG, "wrong password"),
        ("alice@example.test", "", "empty password"),
        ("nobody@example.test", "alice-secret", "unknown user"),
        ("alice@remote.test", "alice-secret", "unknown domain"),
        ("alice", "alice-secret", "bare local part"),
        ("frank@example.test", "alice-secret", "inactive mailbox"),
        ("hank@example.test", "alice-secret", "smtp_active = 0"),
        (
            "alice@alias.test",
            "alice-secret",
            "alias domain is not a login name",
        ),
    ] {
        for mech in ["PLAIN", "LOGIN"] {
            let (ok, out) = swaks_login(a.st, "--tls", mech, user, pass, &[]);
            assert!(!ok, "{why} {mech} logged in:\n{out}");
            assert!(!out.contains("235 "), "{why}:\n{out}");
            if !pass.is_empty() {
                assert!(
                    out.contains("535 5.7.8 Error: authentication failed"),
                    "{why} {mech}:\n{out}"
                );
            }
        }
    }
    let log = a.srv.log();
    assert!(
        log.contains("hank@example.test: login refused: smtp_active = 0"),
        "{log}"
    );
    assert!(
        log.contains("SASL PLAIN authentication failed for user frank@example.test"),
        "{log}"
    );
    // hank still receives mail.
    let mut c = Smtp::connect(AuthServer::addr(a.st));
    c.hello();
    let r = c.send_mail(
        "s@client.test",
        &["hank@example.test"],
        &message("for-hank", "x"),
    );
    assert!(r.first.starts_with("250 2.0.0 Ok: queued"), "{r:?}");
    delivered(&a.srv, "example.test/hank/", "for-hank");
    // An inactive domain's mailbox cannot log in either.
    let db = a.srv.data.join("directory.sqlite");
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute(
        "UPDATE domain SET active = 0 WHERE domain = 'example.test'",
        [],
    )
    .unwrap();
    let (ok, out) = swaks_login(
        a.st,
        "--tls",
        "PLAIN",
        "alice@example.test",
        "alice-secret",
        &[],
    );
    assert!(!ok && out.contains("535 5.7.8"), "inactive domain:\n{out}");
    conn.execute(
        "UPDATE domain SET active = 1 WHERE domain = 'example.test'",
        [],
    )
    .unwrap();
    let (ok, out) = swaks_login(
        a.st,
        "--tls",
        "PLAIN",
        "alice@example.test",
        "alice-secret",
        &[],
    );
    assert!(ok && swaks_replied(&out, "235"), "active again:\n{out}");
    assert_no_passwords(&a.srv, &[]);
}

#[test]
fn login_names_are_case_insensitive() {
    let a = auth_server(quick(Server::builder()));
    for user in [
        "ALICE@Example.TEST",
        "Alice@example.test",
        "alice@EXAMPLE.test",
    ] {
        for mech in ["PLAIN", "LOGIN"] {
            let (ok, out) = swaks_login(a.st, "--tls", mech, user, "alice-secret", &[]);
            assert!(ok && out.contains("235 2.7.0"), "{user} {mech}:\n{out}");
        }
    }
    // The name recorded is the directory's.
    let log = a.srv.log();
    assert!(
        log.contains("sasl_username=alice@example.test: authenticated"),
        "{log}"
    );
    // The password is not case-insensitive.
    let (ok, out) = swaks_login(
        a.st,
        "--tls",
        "PLAIN",
        "alice@example.test",
        "ALICE-SECRET",
        &[],
    );
    assert!(!ok && swaks_replied(&out, "535"), "{out}");
    assert_no_passwords(&a.srv, &["ALICE-SECRET"]);
}

// --- AUTH and TLS ---------------------------------------------------------------------

#[test]
fn auth_before_tls_is_refused() {
    let a = auth_server(quick(Server::builder()));
    let mut c = Smtp::connect(AuthServer::addr(a.st));
    assert_eq!(c.reply().code, 220);
    let ehlo = c.expect("EHLO client.test", "250");
    assert!(ehlo.text.contains("STARTTLS"), "{}", ehlo.text);
    assert!(
        !ehlo.text.contains("AUTH"),
        "AUTH offered before TLS: {}",
        ehlo.text
    );
    let ir = plain_ir("", "alice@example.test", "alice-secret");
    c.expect(&format!("AUTH PLAIN {ir}"), "538 5.7.11");
    c.expect("AUTH PLAIN", "538 5.7.11");
    c.expect("AUTH LOGIN", "538 5.7.11");
    // No 334 was sent: the next line is a command again.
    c.expect("NOOP", "250");
    // Not logged in: the credentials were not even looked at.
    assert!(!a.srv.log().contains("sasl_username"), "{}", a.srv.log());
    c.expect("QUIT", "221");
    // swaks without TLS cannot log in; with STARTTLS it can.
    let (ok, out) = swaks_login(a.st, "", "PLAIN", "alice@example.test", "alice-secret", &[]);
    assert!(!ok && !out.contains("235 "), "{out}");
    let (ok, out) = swaks_login(
        a.st,
        "--tls",
        "PLAIN",
        "alice@example.test",
        "alice-secret",
        &[],
    );
    assert!(ok && out.contains("235 2.7.0"), "{out}");
    // smtplib: no AUTH extension before STARTTLS, AUTH after.
    let (ok, out) = python(
        &format!(
            "{PY_PRELUDE}{}",
            r#"
s = connect('plain', int(sys.argv[1]))
print('BEFORE', s.has_extn('auth'))
code, msg = s.docmd('AUTH', 'PLAIN ' + sys.argv[2])
print('PLAINTEXT', code, msg.decode())
s.starttls(context=ctx)
s.ehlo()
print('AFTER', s.has_extn('auth'), s.esmtp_features.get('auth'))
code, msg = s.docmd('AUTH', 'PLAIN ' + sys.argv[2])
print('INSIDE', code)
s.quit()
"#
        ),
        &[&a.st.to_string(), &ir],
    );
    assert!(ok, "{out}");
    assert!(out.contains("BEFORE False"), "{out}");
    assert!(out.contains("PLAINTEXT 538 5.7.11"), "{out}");
    assert!(out.contains("AFTER True  PLAIN LOGIN"), "{out}");
    assert!(out.contains("INSIDE 235"), "{out}");
    // On the implicit-TLS listener AUTH is offered at once.
    let (ok, out) = swaks_login(
        a.imp,
        "--tlsc",
        "LOGIN",
        "bob@example.test",
        "bob-secret",
        &[],
    );
    assert!(ok && out.contains("250-AUTH PLAIN LOGIN"), "{out}");
    assert_no_passwords(&a.srv, &[]);
}

#[test]
fn tls_only_false_offers_auth_in_plaintext_with_the_old_clients_line() {
    let srv = plaintext_auth_server(Server::builder());
    let mut c = srv.smtp();
    assert_eq!(c.reply().code, 220);
    let ehlo = c.expect("EHLO client.test", "250");
    let lines: Vec<&str> = ehlo.text.lines().collect();
    assert!(lines.contains(&"AUTH PLAIN LOGIN"), "{lines:?}");
    assert!(lines.contains(&"AUTH=PLAIN LOGIN"), "{lines:?}");
    c.expect(
        &format!(
            "AUTH PLAIN {}",
            plain_ir("", "erin@example.test", "erin-secret")
        ),
        "235 2.7.0",
    );
    // swaks without TLS.
    let (ok, out) = swaks_login(
        srv.port,
        "",
        "LOGIN",
        "carol@example.test",
        "carol-secret",
        &[],
    );
    assert!(ok && out.contains("235 2.7.0"), "{out}");
    // HELO does not get the extensions, and AUTH needs EHLO.
    let mut c = srv.smtp();
    assert_eq!(c.reply().code, 220);
    let helo = c.expect("HELO client.test", "250");
    assert!(!helo.text.contains("AUTH"), "{}", helo.text);
    c.expect(
        &format!(
            "AUTH PLAIN {}",
            plain_ir("", "erin@example.test", "erin-secret")
        ),
        "503 5.5.1",
    );
    assert_no_passwords(&srv, &[]);
}

#[test]
fn broken_clients_false_drops_the_auth_equals_line() {
    let srv = plaintext_auth_server(Server::builder().set("auth", "broken_clients = false"));
    let mut c = srv.smtp();
    assert_eq!(c.reply().code, 220);
    let ehlo = c.expect("EHLO client.test", "250");
    assert!(
        ehlo.text.lines().any(|l| l == "AUTH PLAIN LOGIN"),
        "{}",
        ehlo.text
    );
    assert!(!ehlo.text.contains("AUTH="), "{}", ehlo.text);
    // And backend = "none": no AUTH at all, AUTH refused.
    let srv = Server::builder()
        .set("auth", "backend = \"none\"")
        .set("auth", "tls_only = false")
        .start();
    let mut c = srv.smtp();
    assert_eq!(c.reply().code, 220);
    let ehlo = c.expect("EHLO client.test", "250");
    assert!(!ehlo.text.contains("AUTH"), "{}", ehlo.text);
    c.expect("AUTH PLAIN", "503 5.5.1");
}

// --- the SASL exchange ------------------------------------------------------------------

#[test]
fn sasl_exchange_corner_cases() {
    let srv = plaintext_auth_server(Server::builder());
    // PLAIN without an initial response: 334 and an empty challenge.
    let mut c = raw(&srv);
    let r = c.cmd("AUTH PLAIN");
    assert_eq!(r.code, 334, "{r:?}");
    assert_eq!(
        r.first.trim_end(),
        "334",
        "PLAIN's challenge is empty: {r:?}"
    );
    c.expect(
        &plain_ir("", "alice@example.test", "alice-secret"),
        "235 2.7.0",
    );
    // AUTH twice.
    c.expect(
        &format!(
            "AUTH PLAIN {}",
            plain_ir("", "bob@example.test", "bob-secret")
        ),
        "503 5.5.1",
    );
    c.expect("AUTH LOGIN", "503 5.5.1");
    // Logged in, the session goes on.
    let r = c.send_mail(
        "alice@example.test",
        &["bob@example.test"],
        &message("after-auth", "x"),
    );
    assert!(r.first.starts_with("250"), "{r:?}");
    c.expect("QUIT", "221");

    // LOGIN, step by step, with the RFC's challenges.
    let mut c = raw(&srv);
    let r = c.expect("AUTH LOGIN", "334 VXNlcm5hbWU6");
    assert_eq!(r.text, "VXNlcm5hbWU6");
    c.expect(&b64(b"bob@example.test"), "334 UGFzc3dvcmQ6");
    c.expect(&b64(b"bob-secret"), "235 2.7.0");
    c.expect("QUIT", "221");
    // LOGIN with the user name as initial response.
    let mut c = raw(&srv);
    c.expect(
        &format!("AUTH LOGIN {}", b64(b"carol@example.test")),
        "334 UGFzc3dvcmQ6",
    );
    c.expect(&b64(b"carol-secret"), "235 2.7.0");
    c.expect("QUIT", "221");
    // Lower-case mechanism names.
    let mut c = raw(&srv);
    c.expect(
        &format!(
            "auth plain {}",
            plain_ir("", "gail@example.test", "gail-secret")
        ),
        "235",
    );
    c.expect("QUIT", "221");

    // `*` cancels, at each step (RFC 4954 4: 501).
    let logins = srv.log().matches(": authenticated").count();
    assert_eq!(logins, 4, "{}", srv.log());
    let mut c = raw(&srv);
    c.expect("AUTH PLAIN", "334");
    c.expect("*", "501 5.0.0");
    c.expect("AUTH LOGIN", "334");
    c.expect("*", "501 5.0.0");
    c.expect("AUTH LOGIN", "334");
    c.expect(&b64(b"alice@example.test"), "334");
    c.expect("*", "501 5.0.0");
    // Back to commands: NOOP is a command again, not a response.
    c.expect("NOOP", "250 2.0.0");
    // Unknown mechanisms, ANONYMOUS (noanonymous), and syntax.
    c.expect("AUTH CRAM-MD5", "504 5.5.4");
    c.expect("AUTH ANONYMOUS", "504 5.5.4");
    c.expect(&format!("AUTH ANONYMOUS {}", b64(b"guest")), "504 5.5.4");
    c.expect("AUTH DIGEST-MD5", "504 5.5.4");
    c.expect("AUTH XOAUTH2 dGVzdA==", "504 5.5.4");
    c.expect("AUTH", "501 5.5.4");
    c.expect("AUTH PLAIN a b", "501 5.5.4");
    // Truncated or invalid base64.
    c.expect("AUTH PLAIN dGVzd", "501 5.5.2");
    c.expect("AUTH PLAIN !!!!", "501 5.5.2");
    c.expect("AUTH PLAIN", "334");
    c.expect("AGFsaWNlQGV4YW1wbGUudGVzdABhbGljZS1zZWNyZX", "501 5.5.2");
    c.expect("AUTH LOGIN", "334");
    c.expect("not base64 at all", "501 5.5.2");
    // `=` is the empty response: PLAIN with nothing in it is malformed.
    c.expect("AUTH PLAIN =", "501 5.5.2");
    // An empty LOGIN user name is refused (once the password is in).
    c.expect("AUTH LOGIN", "334");
    c.expect("=", "334 UGFzc3dvcmQ6");
    c.expect(&b64(b"alice-secret"), "501 5.5.2");
    c.expect("AUTH LOGIN", "334");
    c.expect(&b64(b"alice@example.test"), "334");
    c.expect("=", "501 5.5.2");
    c.expect("NOOP", "250");
    // Not logged in after all that.
    assert_eq!(
        srv.log().matches(": authenticated").count(),
        logins,
        "{}",
        srv.log()
    );
    c.expect("QUIT", "221");

    // AUTH inside a mail transaction.
    let mut c = raw(&srv);
    c.expect("MAIL FROM:<s@client.test>", "250");
    c.expect(
        &format!(
            "AUTH PLAIN {}",
            plain_ir("", "alice@example.test", "alice-secret")
        ),
        "503 5.5.1",
    );
    c.expect("RSET", "250");
    c.expect(
        &format!(
            "AUTH PLAIN {}",
            plain_ir("", "alice@example.test", "alice-secret")
        ),
        "235",
    );
    c.expect("QUIT", "221");

    // Pipelined: AUTH with IR, then MAIL in the same write (RFC 4954 4
    // allows the client to pipeline behind an AUTH with initial response).
    let mut c = raw(&srv);
    c.send(
        format!(
            "AUTH PLAIN {}\r\nMAIL FROM:<alice@example.test>\r\nRCPT TO:<x@remote.test>\r\nRSET\r\n",
            plain_ir("", "alice@example.test", "alice-secret")
        )
        .as_bytes(),
    );
    assert!(c.reply().first.starts_with("235"));
    assert!(c.reply().first.starts_with("250"));
    // 127.0.0.1 is trusted here anyway; the point is that replies pair up.
    assert!(c.reply().first.starts_with("250"));
    assert!(c.reply().first.starts_with("250"));
    c.expect("QUIT", "221");
    assert!(!srv.log().contains("crashed"));
    assert_no_passwords(&srv, &[]);
}

#[test]
fn plain_credentials_with_extra_nuls_or_a_foreign_authzid_never_succeed() {
    let srv = plaintext_auth_server(Server::builder());
    let mut c = raw(&srv);
    let cases: Vec<(Vec<u8>, &[&str])> = vec![
        (
            b"\0alice@example.test\0alice-secret\0".to_vec(),
            &["501", "535"],
        ),
        (
            b"\0alice@example.test\0alice-secret\0extra".to_vec(),
            &["501", "535"],
        ),
        (
            b"\0alice@example.test\0alice\0-secret".to_vec(),
            &["501", "535"],
        ),
        (
            b"\0\0alice@example.test\0alice-secret".to_vec(),
            &["501", "535"],
        ),
        (
            b"alice@example.test\0\0alice-secret".to_vec(),
            &["501", "535"],
        ),
        (b"\0alice@example.test\0".to_vec(), &["501", "535"]),
        (b"\0alice@example.test".to_vec(), &["501", "535"]),
        (
            b"alice@example.test\0alice-secret".to_vec(),
            &["501", "535"],
        ),
        (b"\0\0".to_vec(), &["501", "535"]),
        (
            b"\0alice@example.test\xff\0alice-secret".to_vec(),
            &["501", "535"],
        ),
        // An authorization identity other than the login name.
        (
            b"bob@example.test\0alice@example.test\0alice-secret".to_vec(),
            &["535 5.7.8"],
        ),
        (
            b"postmaster@example.test\0alice@example.test\0alice-secret".to_vec(),
            &["535 5.7.8"],
        ),
    ];
    for (i, (blob, want)) in cases.iter().enumerate() {
        // A fresh session every few tries: three failures close it.
        if i % 2 == 0 {
            c = raw(&srv);
        }
        let r = c.cmd(&format!("AUTH PLAIN {}", b64(blob)));
        assert!(
            want.iter().any(|w| r.first.starts_with(w)),
            "{:?}: expected one of {want:?}, got {r:?}",
            String::from_utf8_lossy(blob)
        );
        // The same through the 334 path.
        let mut d = raw(&srv);
        d.expect("AUTH PLAIN", "334");
        let r = d.cmd(&b64(blob));
        assert!(want.iter().any(|w| r.first.starts_with(w)), "{r:?}");
    }
    // LOGIN with a NUL inside the user name.
    let mut c = raw(&srv);
    c.expect("AUTH LOGIN", "334");
    c.expect(&b64(b"alice@example.test\0bob@example.test"), "334");
    let r = c.cmd(&b64(b"alice-secret"));
    assert!(r.code == 501 || r.code == 535, "{r:?}");
    // And the authzid equal to the user is fine (RFC 4616: acting as oneself).
    let mut c = raw(&srv);
    c.expect(
        &format!(
            "AUTH PLAIN {}",
            plain_ir("alice@example.test", "alice@example.test", "alice-secret")
        ),
        "235",
    );
    assert!(!srv.log().contains("sasl_username=bob"), "{}", srv.log());
    assert!(!srv.log().contains("crashed"));
    assert_eq!(
        srv.log().matches(": authenticated").count(),
        1,
        "{}",
        srv.log()
    );
}

#[test]
fn long_auth_lines_get_clear_replies() {
    let srv = plaintext_auth_server(Server::builder());
    // 10 KB of base64 that decodes to NULs: malformed, not too long.
    let mut c = raw(&srv);
    let r = c.cmd(&format!("AUTH PLAIN {}", "A".repeat(10_000)));
    assert!(r.code == 501 || r.code == 535, "{r:?}");
    c.expect("NOOP", "250");
    // A 10 KB password: a valid PLAIN message, a wrong password.
    let long_pw = "p".repeat(7_000);
    let r = c.cmd(&format!(
        "AUTH PLAIN {}",
        plain_ir("", "alice@example.test", &long_pw)
    ));
    assert!(r.first.starts_with("535 5.7.8"), "{r:?}");
    c.expect("NOOP", "250");
    // Also as the response to 334.
    c.expect("AUTH PLAIN", "334");
    let r = c.cmd(&plain_ir("", "alice@example.test", &long_pw));
    assert!(r.first.starts_with("535"), "{r:?}");
    c.expect("NOOP", "250");
    // Past 12288 octets: line too long, the session stays in step.
    let mut c = raw(&srv);
    let r = c.cmd(&format!("AUTH PLAIN {}", "QUFB".repeat(4_000)));
    assert!(r.first.starts_with("500 5.5.2"), "{r:?}");
    c.expect("NOOP", "250");
    c.expect("AUTH LOGIN", "334");
    let r = c.cmd(&"QUFB".repeat(4_000));
    assert!(r.code == 500 || r.code == 501, "{r:?}");
    c.expect("NOOP", "250");
    // Other commands keep their 512 limit.
    let r = c.cmd(&format!("NOOP {}", "x".repeat(1_000)));
    assert!(r.first.starts_with("500 5.5.2"), "{r:?}");
    // 1 MB in an AUTH line: no crash, no hang.
    let mut c = raw(&srv);
    c.send(format!("AUTH PLAIN {}\r\n", "A".repeat(1 << 20)).as_bytes());
    let r = c.reply();
    assert!(r.first.starts_with("500 5.5.2"), "{r:?}");
    c.expect("NOOP", "250");
    // The server is fine, and a normal login still works.
    let mut c = raw(&srv);
    c.expect(
        &format!(
            "AUTH PLAIN {}",
            plain_ir("", "alice@example.test", "alice-secret")
        ),
        "235",
    );
    assert!(!srv.log().contains("crashed"));
    assert!(!srv.log().contains(&long_pw[..64]));
}

#[test]
fn malformed_hashes_in_the_directory_fail_cleanly() {
    let srv = plaintext_auth_server(Server::builder());
    let db = srv.data.join("directory.sqlite");
    let conn = rusqlite::Connection::open(&db).unwrap();
    let set = |user: &str, hash: &str| {
        conn.execute(
            "UPDATE mailbox SET password = ?1 WHERE username = ?2",
            rusqlite::params![hash, user],
        )
        .unwrap();
    };
    for (user, hash, pass, log_needle) in [
        (
            "bob@example.test",
            "",
            "bob-secret",
            "stored password hash is malformed",
        ),
        (
            "carol@example.test",
            "$6$",
            "carol-secret",
            "stored password hash is malformed",
        ),
        (
            "dave@example.test",
            "{FOOBAR}x",
            "dave-secret",
            "password scheme FOOBAR is not supported",
        ),
        (
            "erin@example.test",
            "{SSHA512}",
            "erin-secret",
            "stored password hash is malformed",
        ),
        (
            "gail@example.test",
            "{PLAIN",
            "gail-secret",
            "stored password hash is malformed",
        ),
        (
            "tiny@example.test",
            "$2y$10$short",
            "alice-secret",
            "stored password hash is malformed (bcrypt",
        ),
        (
            "alice@example.test",
            "{SHA512-CRYPT}$6$rounds=999999999999$x$y",
            "alice-secret",
            "stored password hash is malformed (sha-crypt rounds=",
        ),
        (
            "hank@example.test",
            "plaintext-without-scheme",
            "plaintext-without-scheme",
            "password scheme none (no {SCHEME} prefix and not a crypt string) is not supported",
        ),
    ] {
        set(user, hash);
        for mech in ["PLAIN", "LOGIN"] {
            let mut c = raw(&srv);
            let r = match mech {
                "PLAIN" => c.cmd(&format!("AUTH PLAIN {}", plain_ir("", user, pass))),
                _ => {
                    c.expect(&format!("AUTH LOGIN {}", b64(user.as_bytes())), "334");
                    c.cmd(&b64(pass.as_bytes()))
                }
            };
            assert!(
                r.first.starts_with("535 5.7.8"),
                "{user} with {hash:?} ({mech}): {r:?}"
            );
            c.expect("NOOP", "250");
        }
        let log = srv.log();
        assert!(
            log.lines()
                .any(|l| l.contains(&format!("{user}: {log_needle}"))),
            "no log line {log_needle:?} for {user}'s hash {hash:?}:\n{log}"
        );
    }
    // The empty hash and the unknown scheme say which.
    let log = srv.log();
    assert!(log.contains("bob@example.test: stored password hash is malformed (the stored password hash is empty)"), "{log}");
    assert!(
        log.contains("dave@example.test: password scheme FOOBAR is not supported; login refused"),
        "{log}"
    );
    assert!(!log.contains("crashed"), "{log}");
    // The server is well: a good row still logs in.
    set("bob@example.test", "{PLAIN}bob-secret");
    let mut c = raw(&srv);
    c.expect(
        &format!(
            "AUTH PLAIN {}",
            plain_ir("", "bob@example.test", "bob-secret")
        ),
        "235",
    );
    assert_no_passwords(&srv, &["plaintext-without-scheme"]);
}

// --- what a login allows ----------------------------------------------------------------

#[test]
fn untrusted_client_may_relay_only_after_auth() {
    let a = auth_server(quick(Server::builder()));
    let script = format!(
        "{PY_PRELUDE}{}",
        r#"
port = int(sys.argv[1])
s = connect('starttls', port, source='127.0.0.2')
s.mail('someone@client.test')
code, msg = s.rcpt('x@remote.test')
print('UNAUTH', code, msg.decode())
s.rset()
s.login('alice@example.test', sys.stdin.readline().strip())
s.mail('alice@example.test')
code, msg = s.rcpt('x@remote.test')
print('AUTH', code, msg.decode())
code, msg = s.data('From: alice@example.test\r\nTo: x@remote.test\r\nSubject: relayed\r\n\r\nhi\r\n')
print('DATA', code, msg.decode())
s.quit()
"#
    );
    let out = common::python()
        .arg("-c")
        .arg(&script)
        .arg(a.st.to_string())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(b"alice-secret\n")?;
            c.wait_with_output()
        })
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("UNAUTH 554 5.7.1 <x@remote.test>: Relay access denied"),
        "{text}"
    );
    assert!(text.contains("AUTH 250"), "{text}");
    assert!(text.contains("DATA 250 2.0.0 Ok: queued as "), "{text}");
    let id = queue_id_in(&text).unwrap();
    // Accepted, and it stays queued (the tests give postern no DNS).
    assert!(
        a.srv.wait_log(&format!("{id}: to=<x@remote.test>"), WAIT),
        "{}",
        a.srv.log()
    );
    assert!(a.srv.queue_dir().join("messages").join(&id).exists());
    assert!(
        a.srv.log().contains(&format!(
            "{id}: client=unknown[127.0.0.2], sasl_username=alice@example.test"
        )),
        "{}",
        a.srv.log()
    );

    // swaks from 127.0.0.2: refused without AUTH, accepted with it.
    let port = a.st.to_string();
    let (ok, out) = swaks(&[
        "--port",
        &port,
        "--tls",
        "--local-interface",
        "127.0.0.2",
        "--from",
        "s@client.test",
        "--to",
        "y@remote.test",
    ]);
    assert!(!ok && out.contains("554 5.7.1"), "{out}");
    let (ok, out) = swaks(&[
        "--port",
        &port,
        "--tls",
        "--local-interface",
        "127.0.0.2",
        "--auth",
        "LOGIN",
        "--auth-user",
        "bob@example.test",
        "--auth-password",
        "bob-secret",
        "--from",
        "bob@example.test",
        "--to",
        "y@remote.test",
    ]);
    assert!(ok && out.contains("250 2.0.0 Ok: queued as"), "{out}");
    // A failed login does not open the relay.
    let (ok, out) = swaks(&[
        "--port",
        &port,
        "--tls",
        "--local-interface",
        "127.0.0.2",
        "--auth",
        "PLAIN",
        "--auth-user",
        "bob@example.test",
        "--auth-password",
        WRONG,
        "--auth-optional",
        "--from",
        "bob@example.test",
        "--to",
        "z@remote.test",
    ]);
    assert!(
        !ok && out.contains("535 5.7.8") && out.contains("554 5.7.1"),
        "{out}"
    );
    // Local delivery from the untrusted address needs no login.
    let (ok, out) = swaks(&[
        "--port",
        &port,
        "--tls",
        "--local-interface",
        "127.0.0.2",
        "--from",
        "s@client.test",
        "--to",
        "alice@example.test",
    ]);
    assert!(ok, "{out}");
    assert_no_passwords(&a.srv, &[]);
}

#[test]
fn require_auth_listener_refuses_mail_before_login() {
    let a = auth_server(quick(Server::builder()));
    let port = a.sub.to_string();
    // Inside TLS, not logged in: 530 5.7.0 at MAIL.
    let (ok, out) = swaks(&[
        "--port",
        &port,
        "--tls",
        "--from",
        "s@client.test",
        "--to",
        "alice@example.test",
    ]);
    assert!(!ok, "{out}");
    assert!(out.contains("530 5.7.0 Authentication required"), "{out}");
    // Plaintext (before STARTTLS): also 530.
    let mut c = Smtp::connect(AuthServer::addr(a.sub));
    c.hello();
    c.expect("MAIL FROM:<s@client.test>", "530 5.7.0");
    c.expect("RCPT TO:<alice@example.test>", "503");
    c.expect("QUIT", "221");
    // Logged in: accepted.
    let (ok, out) = swaks(&[
        "--port",
        &port,
        "--tls",
        "--auth",
        "PLAIN",
        "--auth-user",
        "dave@example.test",
        "--auth-password",
        "dave-secret",
        "--from",
        "dave@example.test",
        "--to",
        "alice@example.test",
        "--header",
        "Subject: submitted",
    ]);
    assert!(ok && out.contains("250 2.0.0 Ok: queued"), "{out}");
    let rcv = received_header(&delivered(&a.srv, "example.test/alice/", "submitted"));
    assert!(rcv.contains("with ESMTPSA"), "{rcv}");
    // The other listeners do not require it.
    let (ok, out) = swaks(&[
        "--port",
        &a.st.to_string(),
        "--tls",
        "--from",
        "s@client.test",
        "--to",
        "alice@example.test",
    ]);
    assert!(ok, "{out}");
    // check-config refuses require_auth where nobody could log in.
    let dir = TestDir::new("reqauth");
    let b = Server::builder().set("auth", "backend = \"none\"");
    let b = b.listener("starttls", "require_auth = true");
    let conf = dir.path().join("p.toml");
    std::fs::write(&conf, b.config_text(&dir.path().join("data"), None)).unwrap();
    let (ok, out) = run(postern().arg("check-config").arg(&conf));
    assert!(!ok && out.contains("require_auth"), "{out}");
    let b = Server::builder();
    let b = b.listener("plain", "require_auth = true");
    std::fs::write(&conf, b.config_text(&dir.path().join("data"), None)).unwrap();
    let (ok, out) = run(postern().arg("check-config").arg(&conf));
    assert!(!ok && out.contains("require_auth"), "{out}");
}

#[test]
fn authenticated_header_names_the_user_and_protocol_is_esmtpsa() {
    let a = auth_server(quick(Server::builder()).set("auth", "authenticated_header = true"));
    let (ok, out) = swaks(&[
        "--port",
        &a.imp.to_string(),
        "--tlsc",
        "--auth",
        "PLAIN",
        "--auth-user",
        "ALICE@example.test",
        "--auth-password",
        "alice-secret",
        "--from",
        "alice@example.test",
        "--to",
        "bob@example.test",
        "--header",
        "Subject: with-auth-header",
    ]);
    assert!(ok, "{out}");
    let rcv = received_header(&delivered(&a.srv, "example.test/bob/", "with-auth-header"));
    assert!(
        rcv.contains("(Authenticated sender: alice@example.test)"),
        "{rcv}"
    );
    assert!(rcv.contains("(using TLSv1.3 with cipher TLS_"), "{rcv}");
    assert!(rcv.contains("with ESMTPSA id"), "{rcv}");
    // Without a login: no such line, ESMTPS.
    let (ok, out) = swaks(&[
        "--port",
        &a.imp.to_string(),
        "--tlsc",
        "--from",
        "x@client.test",
        "--to",
        "bob@example.test",
        "--header",
        "Subject: without-auth",
    ]);
    assert!(ok, "{out}");
    let rcv = received_header(&delivered(&a.srv, "example.test/bob/", "without-auth"));
    assert!(!rcv.contains("Authenticated"), "{rcv}");
    assert!(rcv.contains("with ESMTPS id"), "{rcv}");
    // Plaintext AUTH (tls_only = false): ESMTPA.
    let srv = plaintext_auth_server(Server::builder().set("auth", "authenticated_header = true"));
    let mut c = raw(&srv);
    c.expect(
        &format!(
            "AUTH PLAIN {}",
            plain_ir("", "carol@example.test", "carol-secret")
        ),
        "235",
    );
    let r = c.send_mail(
        "carol@example.test",
        &["bob@example.test"],
        &message("plain-esmtpa", "x"),
    );
    assert!(r.first.starts_with("250"), "{r:?}");
    let rcv = received_header(&delivered(&srv, "example.test/bob/", "plain-esmtpa"));
    assert!(
        rcv.contains("(Authenticated sender: carol@example.test)"),
        "{rcv}"
    );
    assert!(rcv.contains("with ESMTPA id"), "{rcv}");
    assert_no_passwords(&a.srv, &[]);
}

// --- guessing -------------------------------------------------------------------------------

#[test]
fn brute_force_is_throttled_per_address() {
    let srv = Server::builder()
        .set("auth", "tls_only = false")
        .set("auth", "max_failures = 3")
        .set("auth", "failure_delay = \"50ms\"")
        .start();
    let wrong = |n: usize| format!("guess-{n}-{WRONG}");
    let mut guesses = Vec::new();
    // One session from 127.0.0.2: three wrong passwords, then 421 and closed.
    let mut c = Smtp::connect_from("127.0.0.2", srv.addr());
    c.hello();
    for i in 0..3 {
        guesses.push(wrong(i));
        let mech_plain = i % 2 == 0;
        let r = if mech_plain {
            c.cmd(&format!(
                "AUTH PLAIN {}",
                plain_ir("", "alice@example.test", &wrong(i))
            ))
        } else {
            c.expect("AUTH LOGIN", "334");
            c.expect(&b64(b"alice@example.test"), "334");
            c.cmd(&b64(wrong(i).as_bytes()))
        };
        assert!(r.first.starts_with("535 5.7.8"), "try {i}: {r:?}");
    }
    let r = c.reply();
    assert!(r.first.starts_with("421 4.7.0"), "after 3 failures: {r:?}");
    assert!(
        c.try_reply().is_none() || c.is_closed(),
        "session not closed"
    );

    // The next sessions from 127.0.0.2: refused even with the right password.
    for round in 0..3 {
        let mut c = Smtp::connect_from("127.0.0.2", srv.addr());
        c.hello();
        let r = c.cmd(&format!(
            "AUTH PLAIN {}",
            plain_ir("", "alice@example.test", "alice-secret")
        ));
        assert!(
            r.first.starts_with("454 4.7.0"),
            "round {round}, right password: {r:?}"
        );
        guesses.push(wrong(10 + round));
        let r = c.cmd(&format!(
            "AUTH PLAIN {}",
            plain_ir("", "bob@example.test", &wrong(10 + round))
        ));
        assert!(r.first.starts_with("454 4.7.0"), "{r:?}");
        // Not logged in: relaying stays closed.
        c.expect("MAIL FROM:<alice@example.test>", "250");
        c.expect("RCPT TO:<x@remote.test>", "554 5.7.1");
        c.expect("QUIT", "221");
    }
    // swaks from 127.0.0.2 with the right password: 454 too.
    let (ok, out) = swaks(&[
        "--port",
        &srv.port.to_string(),
        "--local-interface",
        "127.0.0.2",
        "--auth",
        "PLAIN",
        "--auth-user",
        "alice@example.test",
        "--auth-password",
        "alice-secret",
        "--quit-after",
        "AUTH",
    ]);
    assert!(!ok && out.contains("454 4.7.0"), "{out}");
    // Another address is not affected.
    let mut c = Smtp::connect_from("127.0.0.3", srv.addr());
    c.hello();
    c.expect(
        &format!(
            "AUTH PLAIN {}",
            plain_ir("", "alice@example.test", "alice-secret")
        ),
        "235 2.7.0",
    );
    let r = c.send_mail(
        "alice@example.test",
        &["x@remote.test"],
        &message("relay-from-3", "x"),
    );
    assert!(r.first.starts_with("250"), "{r:?}");
    let (ok, out) = swaks(&[
        "--port",
        &srv.port.to_string(),
        "--local-interface",
        "127.0.0.3",
        "--auth",
        "LOGIN",
        "--auth-user",
        "bob@example.test",
        "--auth-password",
        "bob-secret",
        "--quit-after",
        "AUTH",
    ]);
    assert!(ok && swaks_replied(&out, "235"), "{out}");
    let log = srv.log();
    assert!(
        log.contains("unknown[127.0.0.2]: SASL PLAIN refused: too many failed logins"),
        "{log}"
    );
    assert!(
        log.contains("sasl_username=alice@example.test: authenticated"),
        "{log}"
    );
    assert!(
        !log.contains("unknown[127.0.0.2]: sasl_method"),
        "127.0.0.2 logged in: {log}"
    );
    let g: Vec<&str> = guesses.iter().map(String::as_str).collect();
    assert_no_passwords(&srv, &g);
}

#[test]
fn passwords_never_reach_the_log_or_the_process() {
    let a = auth_server(quick(Server::builder()).set("auth", "tls_only = false"));
    let mut used = Vec::new();
    // Right and wrong passwords, PLAIN and LOGIN, plaintext and TLS, and a
    // password typed as the user name's answer to "Password:" by mistake.
    // Each run must really have reached the password check: a clean log
    // proves nothing if swaks never connected.
    for (user, pass, _) in USERS {
        for mech in ["PLAIN", "LOGIN"] {
            let (ok, out) = swaks_login(a.st, "--tls", mech, user, pass, &[]);
            assert!(
                ok && out.contains("235 2.7.0"),
                "{user} {mech} over STARTTLS did not log in:\n{out}"
            );
            let bad = format!("{pass}-bad-{mech}");
            let (ok, out) = swaks_login(a.st, "", mech, user, &bad, &[]);
            assert!(
                !ok && out.contains("535 5.7.8"),
                "{user} {mech} in plaintext with a wrong password was not refused by the check:\n{out}"
            );
            used.push(bad);
        }
    }
    let mut c = a.srv.smtp();
    c.hello();
    c.expect("AUTH PLAIN", "334");
    c.expect("*", "501");
    c.expect(
        &format!(
            "AUTH PLAIN {}",
            b64(b"\0alice@example.test\0alice-secret\0x")
        ),
        "501",
    );
    c.expect("AUTH PLAIN bm90LWEtcGFzc3dvcmQ=", "501");
    c.expect("AUTH LOGIN", "334");
    c.expect(&b64(b"frank@example.test"), "334");
    c.expect(&b64(b"frank-typed-this-secret"), "535");
    used.push("frank-typed-this-secret".into());
    // The server saw every login: one success line per good swaks run, one
    // failure line per bad one and frank's.
    let good = USERS.len() * 2;
    let failed = USERS.len() * 2 + 1;
    assert!(
        a.srv.wait_log_count(": authenticated", good, WAIT)
            && a.srv
                .wait_log_count("authentication failed for user", failed, WAIT),
        "expected {good} logins and {failed} failures in the log:\n{}",
        a.srv.log()
    );
    let u: Vec<&str> = used.iter().map(String::as_str).collect();
    assert_no_passwords(&a.srv, &u);
    // Nothing secret in postern's own command line or environment.
    let pid = a.srv.pid();
    for what in ["cmdline", "environ"] {
        let bytes = std::fs::read(format!("/proc/{pid}/{what}")).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        for p in USERS.iter().map(|u| u.1).chain(u.iter().copied()) {
            assert!(!text.contains(p), "{p:?} in /proc/{pid}/{what}");
        }
    }
    // And after a stop, the log is still clean (the stop line is there).
    let mut srv = a.srv;
    srv.stop();
    assert_no_passwords(&srv, &u);
}

#[test]
fn an_unreadable_directory_is_a_temporary_failure() {
    let srv = plaintext_auth_server(Server::builder());
    let mut c = raw(&srv);
    c.expect(
        &format!(
            "AUTH PLAIN {}",
            plain_ir("", "alice@example.test", "alice-secret")
        ),
        "235",
    );
    // The database turns to garbage under the running server.
    let db = srv.data.join("directory.sqlite");
    let len = std::fs::metadata(&db).unwrap().len() as usize;
    std::fs::write(&db, vec![0x5a; len.max(4096)]).unwrap();
    let mut c = raw(&srv);
    let r = c.cmd(&format!(
        "AUTH PLAIN {}",
        plain_ir("", "bob@example.test", "bob-secret")
    ));
    assert!(
        r.first.starts_with("454 4.7.0"),
        "login with the directory unreadable: {r:?}\n{}",
        srv.log()
    );
    assert!(!srv.log().contains("crashed"));
}
