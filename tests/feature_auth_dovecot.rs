//! Issue 3, `auth.backend = "dovecot"`: postern as a client of a real
//! Dovecot auth service (Debian's dovecot-core, started here with a
//! passwd-file and its auth-client socket in a temp dir). Dovecot delays
//! failed logins by about 2 s (auth_failure_delay), so the failing cases are
//! few and run side by side. A small Python stand-in on a Unix socket checks
//! what postern asks (service, client address, `secured` inside TLS) and
//! how it takes answers that make no sense (454, never a login).

mod common;

use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::*;
use postern::smtp::sasl::encode as b64;

const WAIT: Duration = Duration::from_secs(20);
const USER: &str = "dora@example.test";
const SECRET: &str = "dora-dovecot-secret";
const WRONG: &str = "not-doras-password";

/// A Dovecot with only the auth service, killed (by its pid) on drop.
struct Dovecot {
    dir: TestDir,
    child: Option<Child>,
    socket: PathBuf,
}

impl Dovecot {
    fn start() -> Dovecot {
        require("dovecot");
        require("doveadm");
        let dir = TestDir::new("dovecot");
        let (ok, hash) = run(peer("doveadm").args(["pw", "-s", "SHA512-CRYPT", "-p", SECRET]));
        assert!(ok, "doveadm pw: {hash}");
        let hash = hash.trim();
        assert!(hash.starts_with("{SHA512-CRYPT}$6$"), "{hash}");
        let passwd = dir.path().join("passwd");
        std::fs::write(&passwd, format!("{USER}:{hash}::::::\n")).unwrap();
        // The auth process runs as `dovecot`: the file and the way to it
        // must be readable.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&passwd, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let base = dir.path().join("run");
        let conf = dir.path().join("dovecot.conf");
        std::fs::write(
            &conf,
            format!(
                "base_dir = {base}\n\
                 state_dir = {state}\n\
                 instance_name = postern-test-{pid}-{tag}\n\
                 log_path = /dev/stderr\n\
                 protocols = none\n\
                 ssl = no\n\
                 auth_mechanisms = plain login\n\
                 passdb {{\n  driver = passwd-file\n  args = scheme=SHA512-CRYPT {passwd}\n}}\n\
                 userdb {{\n  driver = static\n  args = uid=65534 gid=65534 home=/nonexistent\n}}\n\
                 service auth {{\n  unix_listener auth-client {{\n    mode = 0666\n  }}\n}}\n",
                base = base.display(),
                state = dir.path().join("state").display(),
                pid = std::process::id(),
                tag = dir.path().file_name().unwrap().to_string_lossy(),
                passwd = passwd.display(),
            ),
        )
        .unwrap();
        let log = dir.path().join("dovecot.log");
        let child = peer("dovecot")
            .arg("-c")
            .arg(&conf)
            .arg("-F")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start dovecot");
        let mut d = Dovecot {
            socket: base.join("auth-client"),
            dir,
            child: Some(child),
        };
        let deadline = Instant::now() + WAIT;
        while !d.socket.exists() {
            if let Some(st) = d.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("dovecot exited ({st}):\n{}", d.log());
            }
            assert!(
                Instant::now() < deadline,
                "dovecot did not start:\n{}",
                d.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        d
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dovecot.log")).unwrap_or_default()
    }

    /// SIGTERM to the master (ours, by pid); it takes its children along.
    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = signal(c.id(), nix::sys::signal::Signal::SIGTERM);
            let deadline = Instant::now() + WAIT;
            while c.try_wait().unwrap().is_none() {
                if Instant::now() > deadline {
                    let _ = c.kill();
                    let _ = c.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A postern that checks logins with Dovecot at `socket`, with a STARTTLS
/// listener (the harness's, plus one named explicitly) and an implicit one.
fn postern(socket: &std::path::Path) -> (Server, u16, u16) {
    postern_with(socket, Server::builder())
}

fn postern_with(socket: &std::path::Path, b: ServerBuilder) -> (Server, u16, u16) {
    let b = b
        .set("auth", "backend = \"dovecot\"")
        .set(
            "auth",
            &format!("dovecot_socket = \"{}\"", socket.display()),
        )
        .set("auth", "failure_delay = \"10ms\"")
        .listener("starttls", "")
        .listener("implicit-tls", "");
    let srv = b.start();
    let (st, imp) = (srv.listener_port(2), srv.listener_port(3));
    (srv, st, imp)
}

fn swaks_login(port: u16, tls: &str, mech: &str, user: &str, pass: &str) -> (bool, String) {
    require("swaks");
    run(peer("swaks")
        .args(["--server", "127.0.0.1", "--port", &port.to_string(), tls])
        .args(["--ehlo", "client.test", "--timeout", "30"])
        .args(["--auth", mech, "--auth-user", user, "--auth-password", pass])
        .args(["--quit-after", "AUTH"]))
}

/// Runs the cases side by side (each failure costs Dovecot's ~2 s).
fn parallel(
    cases: Vec<(u16, &'static str, &'static str, &'static str, &'static str)>,
) -> Vec<(bool, String)> {
    let handles: Vec<_> = cases
        .into_iter()
        .map(|(port, tls, mech, user, pass)| {
            std::thread::spawn(move || swaks_login(port, tls, mech, user, pass))
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

fn assert_no_passwords(srv: &Server) {
    let log = srv.log();
    for p in [SECRET, WRONG] {
        assert!(!log.contains(p), "{p:?} in the log:\n{log}");
        assert!(!log.contains(&b64(p.as_bytes())));
        assert!(!log.contains(&b64(format!("\0{USER}\0{p}").as_bytes())));
    }
}

#[test]
fn dovecot_checks_the_password() {
    let dv = Dovecot::start();
    let (srv, st, imp) = postern(&dv.socket);
    let results = parallel(vec![
        (st, "--tls", "PLAIN", USER, SECRET),
        (st, "--tls", "LOGIN", USER, SECRET),
        (imp, "--tlsc", "PLAIN", USER, SECRET),
        (st, "--tls", "PLAIN", USER, WRONG),
        (imp, "--tlsc", "LOGIN", USER, WRONG),
        (st, "--tls", "PLAIN", "nobody@example.test", SECRET),
    ]);
    for (i, (ok, out)) in results.into_iter().enumerate() {
        if i < 3 {
            assert!(
                ok && out.contains("235 2.7.0 Authentication successful"),
                "case {i}:\n{out}\n{}",
                dv.log()
            );
        } else {
            assert!(!ok, "case {i} logged in:\n{out}");
            assert!(
                out.contains("535 5.7.8"),
                "case {i}: expected 535:\n{out}\n{}",
                dv.log()
            );
        }
    }
    let log = srv.log();
    assert_eq!(
        log.matches(&format!("sasl_username={USER}: authenticated"))
            .count(),
        3,
        "{log}"
    );
    assert!(
        log.contains("SASL LOGIN authentication failed for user dora@example.test"),
        "{log}"
    );

    // A logged-in client relays from an untrusted address, and the
    // Received: header says ESMTPSA.
    require("swaks");
    let (ok, out) = run(peer("swaks")
        .args(["--server", "127.0.0.1", "--port", &st.to_string(), "--tls"])
        .args(["--local-interface", "127.0.0.2", "--ehlo", "client.test"])
        .args([
            "--auth",
            "PLAIN",
            "--auth-user",
            USER,
            "--auth-password",
            SECRET,
        ])
        .args(["--from", USER, "--to", "x@remote.test"]));
    assert!(ok && out.contains("250 2.0.0 Ok: queued as"), "{out}");
    let (ok, out) = run(peer("swaks")
        .args(["--server", "127.0.0.1", "--port", &st.to_string(), "--tls"])
        .args(["--local-interface", "127.0.0.2", "--ehlo", "client.test"])
        .args([
            "--auth",
            "LOGIN",
            "--auth-user",
            USER,
            "--auth-password",
            SECRET,
        ])
        .args([
            "--from",
            USER,
            "--to",
            "alice@example.test",
            "--header",
            "Subject: via-dovecot",
        ]));
    assert!(ok, "{out}");
    let files = wait_maildir(&srv.mailbox("example.test/alice/"), 1, WAIT);
    let text = std::fs::read_to_string(&files[0]).unwrap();
    assert!(
        text.contains("via-dovecot") && text.contains("with ESMTPSA id"),
        "{text}"
    );
    assert_no_passwords(&srv);
}

#[test]
fn dovecot_unreachable_is_a_temporary_failure_never_535() {
    // Nothing at the socket path.
    let dir = TestDir::new("nodovecot");
    let nowhere = dir.path().join("no-such-socket");
    let (srv, st, _) = postern(&nowhere);
    let results = parallel(vec![
        (st, "--tls", "PLAIN", USER, SECRET),
        (st, "--tls", "LOGIN", USER, SECRET),
        (st, "--tls", "PLAIN", USER, WRONG),
    ]);
    for (ok, out) in results {
        assert!(!ok, "{out}");
        assert!(
            out.contains("454 4.7.0 Temporary authentication failure"),
            "{out}"
        );
        assert!(!swaks_replied(&out, "535"), "{out}");
    }
    let log = srv.log();
    assert!(
        log.contains(&format!("dovecot auth {}", nowhere.display())),
        "{log}"
    );
    assert!(
        log.contains("authentication could not be checked (temporary failure)"),
        "{log}"
    );
    // Temporary failures do not count as guesses: the session is not closed
    // after three, and the address is not throttled.
    let more = parallel(vec![
        (st, "--tls", "PLAIN", USER, SECRET),
        (st, "--tls", "PLAIN", USER, SECRET),
    ]);
    for (_, out) in &more {
        assert!(out.contains("454 4.7.0 Temporary"), "{out}");
        assert!(!out.contains("Too many failed"), "{out}");
    }
    drop(srv);

    // A path that is a regular file, not a socket.
    let file = dir.path().join("a-file");
    std::fs::write(&file, "not a socket").unwrap();
    let (srv, st, _) = postern(&file);
    let (ok, out) = swaks_login(st, "--tls", "PLAIN", USER, SECRET);
    assert!(!ok && out.contains("454 4.7.0"), "{out}");
    drop(srv);

    // Dovecot up, then stopped.
    let mut dv = Dovecot::start();
    let (srv, st, imp) = postern(&dv.socket);
    let (ok, out) = swaks_login(imp, "--tlsc", "PLAIN", USER, SECRET);
    assert!(ok && swaks_replied(&out, "235"), "{out}\n{}", dv.log());
    dv.stop();
    for (port, tls, mech) in [(st, "--tls", "PLAIN"), (imp, "--tlsc", "LOGIN")] {
        let (ok, out) = swaks_login(port, tls, mech, USER, SECRET);
        assert!(!ok, "{out}");
        assert!(out.contains("454 4.7.0"), "Dovecot stopped, {mech}: {out}");
        assert!(!swaks_replied(&out, "535"), "{out}");
    }
    assert!(!srv.log().contains("crashed"));
    assert_no_passwords(&srv);
}

/// A stand-in for Dovecot's auth-client socket, in one of a few bad
/// moods, or recording what postern asks.
const FAKE_PEER: &str = r#"
import socket, sys, os
path, mode = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX)
s.bind(path)
s.listen(8)
print('READY', flush=True)
while True:
    c, _ = s.accept()
    c.recv(4096)
    if mode == 'garbage':
        c.sendall(b'\x00\xff garbage without an end\n')
    elif mode == 'nomech':
        c.sendall(b'VERSION\t1\t2\nMECH\tCRAM-MD5\nDONE\n')
    elif mode == 'record':
        c.sendall(b'VERSION\t1\t2\nMECH\tPLAIN\tplaintext\nMECH\tLOGIN\tplaintext\nSPID\t1\nCUID\t1\nCOOKIE\tc0ffee\nDONE\n')
        data = b''
        while not data.endswith(b'\n'):
            more = c.recv(4096)
            if not more:
                break
            data += more
        with open(path + '.requests', 'ab') as f:
            f.write(data)
        rid = data.split(b'\t')[1]
        c.sendall(b'OK\t' + rid + b'\tuser=dora@example.test\n')
    elif mode == 'badanswer':
        c.sendall(b'VERSION\t1\t2\nMECH\tPLAIN\tplaintext\nDONE\n')
        c.recv(4096)
        c.sendall(b'OK\t99\tuser=mallory@example.test\n')
    c.close()
"#;

#[test]
fn a_peer_that_speaks_nonsense_is_a_temporary_failure() {
    // A Unix socket that answers with garbage, then one that hangs up.
    let dir = TestDir::new("fakedovecot");
    let sock = dir.path().join("fake-auth");
    let script = FAKE_PEER;
    for mode in ["garbage", "nomech", "badanswer"] {
        let _ = std::fs::remove_file(&sock);
        let mut fake = python()
            .arg("-c")
            .arg(script)
            .arg(&sock)
            .arg(mode)
            .stdout(Stdio::piped())
            .spawn()
            .map(ChildGuard::new)
            .unwrap();
        {
            use std::io::BufRead;
            let mut line = String::new();
            std::io::BufReader::new(fake.stdout.as_mut().unwrap())
                .read_line(&mut line)
                .unwrap();
            assert!(line.starts_with("READY"), "{line}");
        }
        let (srv, st, _) = postern(&sock);
        let (ok, out) = swaks_login(st, "--tls", "PLAIN", USER, SECRET);
        fake.kill();
        assert!(!ok, "{mode}: {out}");
        assert!(out.contains("454 4.7.0"), "{mode}: {out}");
        assert!(!srv.log().contains("mallory"), "{}", srv.log());
        assert!(!srv.log().contains("crashed"));
    }
}

#[test]
fn the_request_to_dovecot_names_the_service_client_and_tls() {
    // A recording stand-in for Dovecot's auth-client socket: it checks what
    // postern sends (what a real Dovecot would base its decisions on).
    let dir = TestDir::new("recdovecot");
    let sock = dir.path().join("rec-auth");
    let script = FAKE_PEER;
    let mut fake = python()
        .arg("-c")
        .arg(script)
        .arg(&sock)
        .arg("record")
        .stdout(Stdio::piped())
        .spawn()
        .map(ChildGuard::new)
        .unwrap();
    {
        use std::io::BufRead;
        let mut line = String::new();
        std::io::BufReader::new(fake.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(line.starts_with("READY"), "{line}");
    }
    let b = Server::builder().set("auth", "tls_only = false");
    let (srv, st, _) = postern_with(&sock, b);
    // Over STARTTLS, with LOGIN (postern always asks Dovecot with PLAIN).
    let (ok, out) = swaks_login(st, "--tls", "LOGIN", USER, SECRET);
    assert!(ok && swaks_replied(&out, "235"), "{out}");
    // In plaintext (tls_only = false), from 127.0.0.2.
    let mut c = Smtp::connect_from("127.0.0.2", srv.addr());
    c.hello();
    c.expect(
        &format!(
            "AUTH PLAIN {}",
            b64(format!("\0{USER}\0{SECRET}").as_bytes())
        ),
        "235",
    );
    fake.kill();
    let requests = std::fs::read_to_string(format!("{}.requests", sock.display())).unwrap();
    let lines: Vec<&str> = requests.lines().collect();
    assert_eq!(lines.len(), 2, "{requests}");
    let fields = |l: &str| l.split('\t').map(str::to_string).collect::<Vec<_>>();
    let (tls, plain) = (fields(lines[0]), fields(lines[1]));
    for f in [&tls, &plain] {
        assert_eq!(f[0], "AUTH");
        assert_eq!(f[2], "PLAIN");
        assert!(f.contains(&"service=smtp".to_string()), "{f:?}");
        let resp = f
            .iter()
            .find_map(|x| x.strip_prefix("resp="))
            .expect("resp=");
        assert_eq!(resp, b64(format!("\0{USER}\0{SECRET}").as_bytes()));
    }
    assert!(tls.contains(&"rip=127.0.0.1".to_string()), "{tls:?}");
    assert!(
        tls.contains(&"secured".to_string()),
        "TLS session not marked secured: {tls:?}"
    );
    assert!(plain.contains(&"rip=127.0.0.2".to_string()), "{plain:?}");
    assert!(
        !plain.contains(&"secured".to_string()),
        "plaintext session marked secured: {plain:?}"
    );
    assert_no_passwords(&srv);
}
