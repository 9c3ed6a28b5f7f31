//! Issue 3, TLS: STARTTLS (RFC 3207) and implicit TLS (RFC 8314) with RSA,
//! ECDSA and chained certificates, through real clients (openssl s_client,
//! swaks, curl, Python smtplib) and a rustls client of our own where no tool
//! can do the job (STARTTLS injection, fingerprints, many sessions at once).
//! Certificates are made at test time (openssl for RSA, rcgen for ECDSA).

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;

const WAIT: Duration = Duration::from_secs(20);

// --- certificates ------------------------------------------------------------

/// An RSA 2048 certificate for mx.example.test made by openssl (CA:FALSE, as
/// rustls wants for a server certificate).
fn openssl_rsa(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let (cert, key) = (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key")),
    );
    let (ok, out) = run(peer("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30",
        ])
        .args(["-subj", "/CN=mx.example.test"])
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .args(["-addext", "subjectAltName=DNS:mx.example.test"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert));
    assert!(ok, "openssl req: {out}");
    (cert, key)
}

fn leaf_params(not_before: (i32, u8, u8), not_after: (i32, u8, u8)) -> rcgen::CertificateParams {
    let mut p = rcgen::CertificateParams::new(vec!["mx.example.test".to_string()]).unwrap();
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::CommonName, "mx.example.test");
    p.distinguished_name = dn;
    p.is_ca = rcgen::IsCa::ExplicitNoCa;
    p.not_before = rcgen::date_time_ymd(not_before.0, not_before.1, not_before.2);
    p.not_after = rcgen::date_time_ymd(not_after.0, not_after.1, not_after.2);
    p
}

/// An ECDSA P-256 self-signed certificate (rcgen), valid in the given range.
fn rcgen_ecdsa_dated(
    dir: &Path,
    name: &str,
    not_before: (i32, u8, u8),
    not_after: (i32, u8, u8),
) -> (PathBuf, PathBuf) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let cert = leaf_params(not_before, not_after)
        .self_signed(&key)
        .unwrap();
    let (c, k) = (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key")),
    );
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    (c, k)
}

fn rcgen_ecdsa(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    rcgen_ecdsa_dated(dir, name, (2020, 1, 1), (2090, 1, 1))
}

/// A leaf signed by a test CA; the certificate file holds leaf + CA.
fn rcgen_chain(dir: &Path) -> (PathBuf, PathBuf) {
    let ca_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::CommonName, "Postern Test CA");
    ca.distinguished_name = dn;
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    let ca = rcgen::CertifiedIssuer::self_signed(ca, ca_key).unwrap();
    let leaf_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let leaf = leaf_params((2020, 1, 1), (2090, 1, 1))
        .signed_by(&leaf_key, &ca)
        .unwrap();
    let (c, k) = (dir.join("chain.pem"), dir.join("chain.key"));
    std::fs::write(&c, format!("{}{}", leaf.pem(), ca.pem())).unwrap();
    std::fs::write(&k, leaf_key.serialize_pem()).unwrap();
    (c, k)
}

/// SHA-256 of the first certificate in a PEM file, as openssl prints it
/// (`AB:CD:...`).
fn openssl_fingerprint(pem: &Path) -> String {
    let (ok, out) = run(peer("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
        .arg(pem));
    assert!(ok, "openssl x509: {out}");
    out.trim()
        .rsplit('=')
        .next()
        .unwrap()
        .trim()
        .to_ascii_uppercase()
}

fn fingerprint_der(der: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

// --- servers with TLS listeners -----------------------------------------------

fn with_cert(b: ServerBuilder, cert: &Path, key: &Path) -> ServerBuilder {
    b.set("tls", &format!("cert_file = \"{}\"", cert.display()))
        .set("tls", &format!("key_file = \"{}\"", key.display()))
}

struct TlsServer {
    srv: Server,
    starttls: u16,
    implicit: u16,
    plain: u16,
}

impl TlsServer {
    fn st(&self) -> SocketAddr {
        format!("127.0.0.1:{}", self.starttls).parse().unwrap()
    }
    fn imp(&self) -> SocketAddr {
        format!("127.0.0.1:{}", self.implicit).parse().unwrap()
    }
    fn plain(&self) -> SocketAddr {
        format!("127.0.0.1:{}", self.plain).parse().unwrap()
    }
}

/// A server with a STARTTLS listener (2), an implicit-TLS one (3) and a
/// plain one (4), besides the harness's own (1, the default mode).
fn tls_server(b: ServerBuilder) -> TlsServer {
    let srv = b
        .listener("starttls", "")
        .listener("implicit-tls", "")
        .listener("plain", "")
        .start();
    TlsServer {
        starttls: srv.listener_port(2),
        implicit: srv.listener_port(3),
        plain: srv.listener_port(4),
        srv,
    }
}

// --- a rustls SMTP client -------------------------------------------------------

mod client {
    use super::*;
    use rustls::pki_types::ServerName;
    use rustls::ClientConnection;

    enum Conn {
        Plain(TcpStream),
        Tls(Box<rustls::StreamOwned<ClientConnection, TcpStream>>),
        Gone,
    }

    /// SMTP over a socket that may turn into TLS.
    pub struct TlsSmtp {
        conn: Conn,
        inbuf: Vec<u8>,
        tls12_only: bool,
    }

    #[allow(dead_code)]
    impl TlsSmtp {
        pub fn connect(addr: SocketAddr) -> TlsSmtp {
            let s = TcpStream::connect(addr).expect("connect");
            Self::wrap(s)
        }

        pub fn connect_from(ip: &str, addr: SocketAddr) -> TlsSmtp {
            let sock =
                socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
            let local: SocketAddr = format!("{ip}:0").parse().unwrap();
            sock.bind(&local.into()).unwrap();
            sock.connect(&addr.into()).expect("connect");
            Self::wrap(sock.into())
        }

        fn wrap(s: TcpStream) -> TlsSmtp {
            s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            s.set_nodelay(true).unwrap();
            TlsSmtp {
                conn: Conn::Plain(s),
                inbuf: Vec::new(),
                tls12_only: false,
            }
        }

        pub fn tls12_only(mut self) -> TlsSmtp {
            self.tls12_only = true;
            self
        }

        /// Implicit TLS: handshake first, then the greeting.
        pub fn implicit(addr: SocketAddr) -> TlsSmtp {
            let mut c = Self::connect(addr);
            c.handshake().expect("TLS handshake");
            c
        }

        /// Runs the TLS handshake on the plain socket (after `220 Ready`).
        pub fn handshake(&mut self) -> Result<(), String> {
            assert!(
                self.inbuf.is_empty(),
                "plaintext left unread before the handshake: {:?}",
                String::from_utf8_lossy(&self.inbuf)
            );
            let Conn::Plain(mut tcp) = std::mem::replace(&mut self.conn, Conn::Gone) else {
                panic!("TLS already active");
            };
            let name = ServerName::try_from("mx.example.test").unwrap();
            let mut conn =
                ClientConnection::new(crate::common::tls::client_config(self.tls12_only), name)
                    .unwrap();
            while conn.is_handshaking() {
                conn.complete_io(&mut tcp).map_err(|e| e.to_string())?;
            }
            self.conn = Conn::Tls(Box::new(rustls::StreamOwned::new(conn, tcp)));
            Ok(())
        }

        fn tls(&self) -> &ClientConnection {
            match &self.conn {
                Conn::Tls(s) => &s.conn,
                _ => panic!("not in TLS"),
            }
        }

        /// (`TLSv1.3`, `TLS13_AES_256_GCM_SHA384`)
        pub fn tls_info(&self) -> (String, String) {
            let c = self.tls();
            (
                format!("{:?}", c.protocol_version().unwrap()),
                format!("{:?}", c.negotiated_cipher_suite().unwrap().suite()),
            )
        }

        pub fn peer_fingerprint(&self) -> String {
            fingerprint_der(&self.tls().peer_certificates().unwrap()[0])
        }

        pub fn send(&mut self, bytes: &[u8]) {
            let r = match &mut self.conn {
                Conn::Plain(s) => s.write_all(bytes).and_then(|_| s.flush()),
                Conn::Tls(s) => s.write_all(bytes).and_then(|_| s.flush()),
                Conn::Gone => panic!("gone"),
            };
            r.expect("write");
        }

        fn read_some(&mut self) -> Option<usize> {
            let mut buf = [0u8; 4096];
            let r = match &mut self.conn {
                Conn::Plain(s) => s.read(&mut buf),
                Conn::Tls(s) => s.read(&mut buf),
                Conn::Gone => return None,
            };
            match r {
                Ok(0) | Err(_) => None,
                Ok(n) => {
                    self.inbuf.extend_from_slice(&buf[..n]);
                    Some(n)
                }
            }
        }

        fn line(&mut self) -> Option<String> {
            loop {
                if let Some(i) = self.inbuf.iter().position(|&c| c == b'\n') {
                    let l: Vec<u8> = self.inbuf.drain(..=i).collect();
                    return Some(String::from_utf8_lossy(&l).trim_end().to_string());
                }
                self.read_some()?;
            }
        }

        pub fn try_reply(&mut self) -> Option<Reply> {
            parse_reply(|| self.line())
        }

        pub fn reply(&mut self) -> Reply {
            self.try_reply()
                .expect("connection closed while waiting for a reply")
        }

        pub fn cmd(&mut self, line: &str) -> Reply {
            self.send(format!("{line}\r\n").as_bytes());
            self.reply()
        }

        pub fn expect(&mut self, line: &str, want: &str) -> Reply {
            let r = self.cmd(line);
            assert!(
                r.first.starts_with(want),
                "{line:?}: expected {want:?}, got {:?}",
                r.first
            );
            r
        }

        /// True when the server closed the connection (EOF or reset).
        pub fn is_closed(&mut self) -> bool {
            self.inbuf.clear();
            self.read_some().is_none()
        }

        /// Greeting, EHLO, STARTTLS, handshake, EHLO again.
        pub fn starttls_session(addr: SocketAddr) -> TlsSmtp {
            let mut c = Self::connect(addr);
            c.starttls_here();
            c
        }

        pub fn starttls_here(&mut self) {
            assert_eq!(self.reply().code, 220);
            let ehlo = self.expect("EHLO client.test", "250");
            assert!(ehlo.text.contains("STARTTLS"), "{}", ehlo.text);
            self.expect("STARTTLS", "220 2.0.0");
            self.handshake().expect("TLS handshake after STARTTLS");
            self.expect("EHLO client.test", "250");
        }

        pub fn send_mail(&mut self, from: &str, to: &str, body: &str) -> Reply {
            self.expect(&format!("MAIL FROM:<{from}>"), "250");
            self.expect(&format!("RCPT TO:<{to}>"), "250");
            self.expect("DATA", "354");
            self.send(body.as_bytes());
            self.send(b"\r\n.\r\n");
            self.reply()
        }
    }
}

use client::TlsSmtp;

// --- helpers for the real clients ---------------------------------------------

/// openssl s_client against `addr`; returns (exit ok, stdout + stderr).
fn s_client(addr: SocketAddr, starttls: bool, extra: &[&str]) -> (bool, String) {
    let mut c = peer("openssl");
    c.arg("s_client");
    if starttls {
        c.args(["-starttls", "smtp"]);
    }
    c.arg("-connect")
        .arg(addr.to_string())
        .args(["-servername", "mx.example.test"])
        .args(extra)
        .stdin(Stdio::null());
    run(&mut c)
}

fn swaks(args: &[&str]) -> (bool, String) {
    require("swaks");
    run(peer("swaks")
        .args(["--server", "127.0.0.1", "--ehlo", "client.test"])
        .args(["--timeout", "20"])
        .args(args))
}

fn python(script: &str, args: &[&str]) -> (bool, String) {
    run(common::python().arg("-c").arg(script).args(args))
}

/// Delivered message with `subject` in alice's mailbox.
fn delivered(srv: &Server, subject: &str) -> String {
    wait_message(srv, &srv.mailbox("example.test/alice/"), subject)
}

// --- tests -------------------------------------------------------------------------

/// Runs the s_client / swaks / curl / smtplib checks against one server.
fn check_tls_listeners(t: &TlsServer, kind: &str, chain: bool) {
    // STARTTLS: TLS 1.3 by default, 1.2 on request, 1.1 refused.
    let (ok, out) = s_client(t.st(), true, &["-brief"]);
    assert!(ok, "{kind}: s_client -starttls failed:\n{out}");
    assert!(out.contains("Protocol version: TLSv1.3"), "{kind}:\n{out}");
    assert!(out.contains("CN = mx.example.test"), "{kind}:\n{out}");
    let (ok, out) = s_client(t.st(), true, &["-brief", "-tls1_2"]);
    assert!(ok, "{kind}: -tls1_2 failed:\n{out}");
    assert!(out.contains("Protocol version: TLSv1.2"), "{kind}:\n{out}");
    for old in [
        &["-brief", "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"][..],
        &["-brief", "-tls1", "-cipher", "DEFAULT@SECLEVEL=0"][..],
    ] {
        let failed_before = t.srv.log().matches("TLS handshake failed").count();
        let (ok, out) = s_client(t.st(), true, old);
        assert!(!ok, "{kind}: {old:?} was accepted:\n{out}");
        assert!(!out.contains("CONNECTION ESTABLISHED"), "{kind}:\n{out}");
        // The server refused it (not just our openssl).
        assert!(
            t.srv
                .wait_log_count("TLS handshake failed", failed_before + 1, WAIT),
            "{kind}: {old:?}: no refusal in the log:\n{}",
            t.srv.log()
        );
    }
    // Implicit TLS.
    let (ok, out) = s_client(t.imp(), false, &["-brief"]);
    assert!(ok, "{kind}: s_client implicit failed:\n{out}");
    assert!(out.contains("Protocol version: TLSv1.3"), "{kind}:\n{out}");
    let (ok, out) = s_client(t.imp(), false, &["-brief", "-tls1_2"]);
    assert!(
        ok && out.contains("Protocol version: TLSv1.2"),
        "{kind}:\n{out}"
    );
    let (ok, out) = s_client(
        t.imp(),
        false,
        &["-brief", "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"],
    );
    assert!(
        !ok && !out.contains("CONNECTION ESTABLISHED"),
        "{kind}:\n{out}"
    );
    // The chain as sent.
    let (ok, out) = s_client(t.imp(), false, &["-showcerts"]);
    assert!(ok, "{kind}: -showcerts:\n{out}");
    let certs = out.matches("-----BEGIN CERTIFICATE-----").count();
    if chain {
        assert_eq!(certs, 2, "{kind}: the chain has leaf + CA:\n{out}");
        assert!(out.contains("i:CN = Postern Test CA"), "{kind}:\n{out}");
        assert!(out.contains(" 1 s:CN = Postern Test CA"), "{kind}:\n{out}");
    } else {
        assert_eq!(certs, 1, "{kind}:\n{out}");
    }

    // swaks over both.
    let port_st = t.starttls.to_string();
    let port_imp = t.implicit.to_string();
    for (flag, port, how) in [
        ("--tls", &port_st, "starttls"),
        ("--tlsc", &port_imp, "implicit"),
    ] {
        let subject = format!("Subject: swaks-{kind}-{how}");
        let (ok, out) = swaks(&[
            "--port",
            port,
            flag,
            "--from",
            "sender@client.test",
            "--to",
            "alice@example.test",
            "--header",
            &subject,
        ]);
        assert!(ok, "{kind}: swaks {flag}:\n{out}");
        assert!(
            out.contains("TLS started with cipher TLSv1.3"),
            "{kind}:\n{out}"
        );
        assert!(out.contains("250 2.0.0 Ok: queued as"), "{kind}:\n{out}");
        let msg = delivered(&t.srv, &format!("swaks-{kind}-{how}"));
        let rcv = received_header(&msg);
        assert!(
            rcv.contains("(using TLSv1.3 with cipher TLS_AES_"),
            "{kind} {how}: {rcv}"
        );
        assert!(rcv.contains("with ESMTPS id"), "{kind} {how}: {rcv}");
    }
}

#[test]
fn starttls_and_implicit_tls_with_an_rsa_certificate() {
    require("openssl");
    let certs = TestDir::new("rsa");
    let (cert, key) = openssl_rsa(certs.path(), "rsa");
    let t = tls_server(with_cert(Server::builder(), &cert, &key));
    assert!(t.srv.log().contains(&openssl_fingerprint(&cert)));
    check_tls_listeners(&t, "rsa", false);
    // s_client shows an RSA key.
    let (_, out) = s_client(t.st(), true, &["-brief"]);
    assert!(out.contains("Signature type: RSA-PSS"), "{out}");

    // curl: STARTTLS required, and smtps://.
    require("curl");
    let msgdir = TestDir::new("curlmsg");
    for (url, subject) in [
        (
            format!("smtp://127.0.0.1:{}/client.test", t.starttls),
            "curl-starttls",
        ),
        (
            format!("smtps://127.0.0.1:{}/client.test", t.implicit),
            "curl-smtps",
        ),
    ] {
        let f = msgdir.path().join(subject);
        std::fs::write(&f, message(subject, "via curl\r\n")).unwrap();
        let (ok, out) = run(peer("curl")
            .args(["-sS", "-v", "--ssl-reqd", "-k", "--max-time", "20"])
            .arg(&url)
            .args(["--mail-from", "sender@client.test"])
            .args(["--mail-rcpt", "alice@example.test"])
            .arg("-T")
            .arg(&f));
        assert!(ok, "curl {url}:\n{out}");
        assert!(out.contains("TLSv1.3"), "{out}");
        let rcv = received_header(&delivered(&t.srv, subject));
        assert!(rcv.contains("with ESMTPS"), "{rcv}");
    }
    // Without TLS on a plain listener, curl --ssl-reqd gives up.
    let f = msgdir.path().join("plain");
    std::fs::write(&f, message("curl-plain", "x\r\n")).unwrap();
    let (ok, out) = run(peer("curl")
        .args(["-sS", "--ssl-reqd", "-k", "--max-time", "20"])
        .arg(format!("smtp://127.0.0.1:{}/client.test", t.plain))
        .args([
            "--mail-from",
            "sender@client.test",
            "--mail-rcpt",
            "alice@example.test",
        ])
        .arg("-T")
        .arg(&f));
    assert!(
        !ok,
        "curl --ssl-reqd against a plain listener succeeded: {out}"
    );
}

#[test]
fn starttls_and_implicit_tls_with_an_ecdsa_certificate() {
    require("openssl");
    let certs = TestDir::new("ecdsa");
    let (cert, key) = rcgen_ecdsa(certs.path(), "ecdsa");
    let t = tls_server(with_cert(Server::builder(), &cert, &key));
    check_tls_listeners(&t, "ecdsa", false);
    let (_, out) = s_client(t.st(), true, &["-brief"]);
    assert!(out.contains("Signature type: ECDSA"), "{out}");

    // Python smtplib: starttls() and SMTP_SSL.
    let script = r#"
import smtplib, ssl, sys
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
st, imp = int(sys.argv[1]), int(sys.argv[2])
msg = "From: s@client.test\r\nTo: alice@example.test\r\nSubject: %s\r\n\r\nbody\r\n"
s = smtplib.SMTP('127.0.0.1', st, local_hostname='client.test', timeout=20)
s.ehlo()
assert s.has_extn('starttls'), s.esmtp_features
s.starttls(context=ctx)
print('STARTTLS', s.sock.version(), s.sock.cipher()[0])
s.ehlo()
assert not s.has_extn('starttls'), 'STARTTLS offered again inside TLS'
s.sendmail('s@client.test', ['alice@example.test'], msg % 'smtplib-starttls')
s.quit()
s = smtplib.SMTP_SSL('127.0.0.1', imp, local_hostname='client.test', timeout=20, context=ctx)
print('IMPLICIT', s.sock.version(), s.sock.cipher()[0])
s.ehlo()
assert not s.has_extn('starttls')
s.sendmail('s@client.test', ['alice@example.test'], msg % 'smtplib-implicit')
s.quit()
print('DONE')
"#;
    let (ok, out) = python(script, &[&t.starttls.to_string(), &t.implicit.to_string()]);
    assert!(ok && out.contains("DONE"), "{out}");
    assert!(out.contains("STARTTLS TLSv1.3 TLS_AES_"), "{out}");
    assert!(out.contains("IMPLICIT TLSv1.3 TLS_AES_"), "{out}");
    for s in ["smtplib-starttls", "smtplib-implicit"] {
        let rcv = received_header(&delivered(&t.srv, s));
        assert!(rcv.contains("(using TLSv1.3 with cipher TLS_AES_"), "{rcv}");
        assert!(rcv.contains("with ESMTPS id"), "{rcv}");
    }
}

#[test]
fn a_certificate_chain_is_sent_whole() {
    require("openssl");
    let certs = TestDir::new("chain");
    let (cert, key) = rcgen_chain(certs.path());
    let t = tls_server(with_cert(Server::builder(), &cert, &key));
    check_tls_listeners(&t, "chain", true);
    // The logged fingerprint is the leaf's.
    let fp = openssl_fingerprint(&cert);
    assert!(
        t.srv.log().contains(&format!("SHA-256 {fp}")),
        "{}",
        t.srv.log()
    );
    let c = TlsSmtp::implicit(t.imp());
    assert_eq!(c.peer_fingerprint(), fp);
}

#[test]
fn received_header_records_tls_version_and_cipher_over_tls12() {
    let certs = TestDir::new("tls12");
    let (cert, key) = rcgen_ecdsa(certs.path(), "e");
    let t = tls_server(with_cert(Server::builder(), &cert, &key));
    let mut c = TlsSmtp::connect(t.st()).tls12_only();
    c.starttls_here();
    let (version, cipher) = c.tls_info();
    assert_eq!(version, "TLSv1_2");
    let r = c.send_mail(
        "s@client.test",
        "alice@example.test",
        &message("tls12-rcv", "x"),
    );
    assert!(r.first.starts_with("250 2.0.0 Ok: queued"), "{r:?}");
    c.expect("QUIT", "221");
    let rcv = received_header(&delivered(&t.srv, "tls12-rcv"));
    assert!(rcv.contains("(using TLSv1.2 with cipher "), "{rcv}");
    // The cipher named is the one negotiated (IANA name, e.g.
    // TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384).
    assert!(rcv.contains(&cipher), "{cipher} not in {rcv}");
    assert!(rcv.contains("with ESMTPS id"), "{rcv}");
    // Plaintext on the plain listener: no TLS comment, ESMTP.
    let mut p = Smtp::connect(t.plain());
    p.hello();
    let r = p.send_mail(
        "s@client.test",
        &["alice@example.test"],
        &message("plain-rcv", "x"),
    );
    assert!(r.first.starts_with("250"), "{r:?}");
    let rcv = received_header(&delivered(&t.srv, "plain-rcv"));
    assert!(!rcv.contains("using TLS"), "{rcv}");
    assert!(rcv.contains("with ESMTP id"), "{rcv}");
}

#[test]
fn self_signed_certificate_is_made_at_first_start() {
    require("openssl");
    let t = tls_server(Server::builder());
    let tls_dir = t.srv.data.join("tls");
    let cert = tls_dir.join("self-signed.pem");
    assert!(
        cert.is_file(),
        "no self-signed certificate in {}",
        tls_dir.display()
    );
    let key = tls_dir.join("self-signed.key");
    assert!(key.is_file());
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode & 0o077, 0, "private key readable by others: {mode:o}");
    let log = t.srv.log();
    assert!(
        log.contains("created a self-signed certificate for mx.example.test"),
        "{log}"
    );
    let fp = openssl_fingerprint(&cert);
    assert!(
        log.contains(&format!("SHA-256 {fp}")),
        "fingerprint {fp} not logged:\n{log}"
    );
    // openssl agrees it is for our hostname.
    let (_, text) = run(peer("openssl")
        .args([
            "x509",
            "-noout",
            "-subject",
            "-ext",
            "subjectAltName",
            "-in",
        ])
        .arg(&cert));
    assert!(text.contains("mx.example.test"), "{text}");
    // STARTTLS works with it, and the client sees that very certificate.
    let (ok, out) = s_client(t.st(), true, &["-brief"]);
    assert!(ok && out.contains("Protocol version: TLSv1.3"), "{out}");
    let mut c = TlsSmtp::starttls_session(t.st());
    assert_eq!(c.peer_fingerprint(), fp);
    c.expect("QUIT", "221");
    let c = TlsSmtp::implicit(t.imp());
    assert_eq!(c.peer_fingerprint(), fp);
    drop(c);

    // SIGHUP with no certificate files configured keeps the self-signed one.
    let (ok, out) = run(postern().arg("reload").arg("--config").arg(&t.srv.config));
    assert!(ok, "{out}");
    assert!(
        t.srv
            .wait_log("SIGHUP: no certificate files configured", WAIT),
        "{}",
        t.srv.log()
    );
    assert_eq!(TlsSmtp::implicit(t.imp()).peer_fingerprint(), fp);

    // A restart keeps it: same fingerprint, not created again.
    let TlsServer { mut srv, .. } = t;
    srv.stop();
    srv.restart();
    assert_eq!(openssl_fingerprint(&cert), fp);
    let log = srv.log();
    assert_eq!(
        log.matches("created a self-signed certificate").count(),
        1,
        "{log}"
    );
    assert_eq!(log.matches(&format!("SHA-256 {fp}")).count(), 2, "{log}");
}

#[test]
fn a_plain_only_server_makes_no_certificate() {
    let dir = TestDir::new("plainonly");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let text = Server::builder().config_text(&data, None);
    let addr = "address = \"127.0.0.1:0\"\n";
    assert!(text.contains(addr));
    let text = text.replace(addr, &format!("{addr}mode = \"plain\"\n"));
    let conf = dir.path().join("postern.toml");
    std::fs::write(&conf, text).unwrap();
    let log = dir.path().join("log");
    let mut cmd = postern();
    cmd.arg("serve").arg("--config").arg(&conf);
    let served = Served::start(cmd, &log, &data);
    let mut c = Smtp::connect(served.addr());
    assert_eq!(c.reply().code, 220);
    let ehlo = c.expect("EHLO client.test", "250");
    drop(served);
    assert!(!ehlo.text.contains("STARTTLS"), "{}", ehlo.text);
    assert!(
        !data.join("tls").exists(),
        "a certificate was made for a plain-only server"
    );
    assert!(!std::fs::read_to_string(&log)
        .unwrap()
        .contains("TLS certificate"));
}

/// check-config and serve on a config whose [tls] is broken in `how`.
fn bad_cert_case(cert: &Path, key: &Path, key_line: &str, needle: &[&str]) {
    let dir = TestDir::new("badcert");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let b = with_cert(Server::builder(), cert, key);
    let b = b.listener("starttls", "");
    let text = b.config_text(&data, None);
    let conf = dir.path().join("postern.toml");
    std::fs::write(&conf, &text).unwrap();
    // The line of the key named in the error.
    let line_no = text
        .lines()
        .position(|l| l.starts_with(&format!("{key_line} =")))
        .unwrap()
        + 1;
    let out = postern().arg("check-config").arg(&conf).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(78), "check-config: {err}");
    let prefix = format!("{}:{line_no}: tls.{key_line}: ", conf.display());
    assert!(
        err.lines().any(|l| l.starts_with(&prefix)),
        "expected a line starting {prefix:?}:\n{err}"
    );
    for n in needle {
        assert!(err.contains(n), "expected {n:?} in:\n{err}");
    }
    // serve refuses to start, saying the same.
    let mut child = postern()
        .arg("serve")
        .arg("--config")
        .arg(&conf)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_timeout(&mut child, WAIT);
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(status.code(), Some(78), "serve: {err}");
    for n in needle {
        assert!(err.contains(n), "serve: expected {n:?} in:\n{err}");
    }
    assert!(!err.contains("listening on"), "{err}");
}

#[test]
fn bad_certificates_are_config_errors_naming_the_file() {
    let d = TestDir::new("badcerts");
    let (good_cert, good_key) = rcgen_ecdsa(d.path(), "good");
    let (_, other_key) = rcgen_ecdsa(d.path(), "other");
    let (expired, expired_key) = rcgen_ecdsa_dated(d.path(), "expired", (2019, 1, 1), (2020, 1, 1));
    let (future, future_key) = rcgen_ecdsa_dated(d.path(), "future", (2090, 1, 1), (2095, 1, 1));
    let missing = d.path().join("no-such-cert.pem");
    let garbage = d.path().join("garbage.pem");
    std::fs::write(&garbage, "this is not a certificate\n").unwrap();
    let a_dir = d.path().join("a-directory.pem");
    std::fs::create_dir_all(&a_dir).unwrap();
    let show = |p: &Path| p.display().to_string();

    bad_cert_case(
        &missing,
        &good_key,
        "cert_file",
        &[&show(&missing), "No such file"],
    );
    bad_cert_case(&a_dir, &good_key, "cert_file", &[&show(&a_dir)]);
    bad_cert_case(
        &garbage,
        &good_key,
        "cert_file",
        &[&show(&garbage), "no CERTIFICATE"],
    );
    bad_cert_case(
        &expired,
        &expired_key,
        "cert_file",
        &[&show(&expired), "expired"],
    );
    bad_cert_case(
        &future,
        &future_key,
        "cert_file",
        &[&show(&future), "not valid before"],
    );
    bad_cert_case(
        &good_cert,
        &other_key,
        "key_file",
        &[&show(&other_key), &show(&good_cert), "does not match"],
    );
    let missing_key = d.path().join("no-such.key");
    bad_cert_case(&good_cert, &missing_key, "key_file", &[&show(&missing_key)]);
    // A certificate file given as the key.
    bad_cert_case(
        &good_cert,
        &good_cert,
        "key_file",
        &[&show(&good_cert), "private key"],
    );
}

fn copy_cert(from: &(PathBuf, PathBuf), to: &(PathBuf, PathBuf)) {
    std::fs::copy(&from.0, &to.0).unwrap();
    std::fs::copy(&from.1, &to.1).unwrap();
}

#[test]
fn sighup_and_reload_pick_up_a_new_certificate_without_dropping_sessions() {
    let d = TestDir::new("reload");
    let a = rcgen_ecdsa(d.path(), "a");
    let b = openssl_rsa(d.path(), "b");
    let c = rcgen_ecdsa(d.path(), "c");
    let expired = rcgen_ecdsa_dated(d.path(), "expired", (2019, 1, 1), (2020, 1, 1));
    let (_, other_key) = rcgen_ecdsa(d.path(), "other");
    let cur = (d.path().join("cur.pem"), d.path().join("cur.key"));
    copy_cert(&a, &cur);
    let (fa, fb, fc) = (
        openssl_fingerprint(&a.0),
        openssl_fingerprint(&b.0),
        openssl_fingerprint(&c.0),
    );
    let t = tls_server(with_cert(Server::builder(), &cur.0, &cur.1));

    // Two sessions in TLS before the reload.
    let mut old_st = TlsSmtp::starttls_session(t.st());
    assert_eq!(old_st.peer_fingerprint(), fa);
    let mut old_imp = TlsSmtp::implicit(t.imp());
    assert_eq!(old_imp.reply().code, 220);
    old_imp.expect("EHLO client.test", "250");
    assert_eq!(old_imp.peer_fingerprint(), fa);

    // `postern reload --config FILE` sends SIGHUP to the running server.
    copy_cert(&b, &cur);
    let (ok, out) = run(postern().arg("reload").arg("--config").arg(&t.srv.config));
    assert!(ok, "postern reload: {out}");
    assert!(
        out.contains(&format!("sent SIGHUP to {}", t.srv.pid())),
        "{out}"
    );
    assert!(
        t.srv.wait_log(
            &format!("SIGHUP: reloaded TLS certificate {}", cur.0.display()),
            WAIT
        ),
        "{}",
        t.srv.log()
    );
    assert!(t.srv.log().contains(&format!("SHA-256 {fb}")));
    // The old sessions go on, on the old certificate.
    old_st.expect("NOOP", "250");
    let r = old_st.send_mail(
        "s@client.test",
        "alice@example.test",
        &message("after-reload-1", "x"),
    );
    assert!(r.first.starts_with("250 2.0.0 Ok: queued"), "{r:?}");
    old_imp.expect("NOOP", "250");
    // New sessions see the new one.
    assert_eq!(TlsSmtp::implicit(t.imp()).peer_fingerprint(), fb);
    let mut n = TlsSmtp::starttls_session(t.st());
    assert_eq!(n.peer_fingerprint(), fb);
    n.expect("QUIT", "221");
    let (ok, out) = s_client(t.st(), true, &["-brief"]);
    assert!(ok && out.contains("Signature type: RSA-PSS"), "{out}");

    // A plain SIGHUP works the same.
    copy_cert(&c, &cur);
    signal(t.srv.pid(), nix::sys::signal::Signal::SIGHUP).expect("SIGHUP to postern");
    assert!(
        t.srv.wait_log(&format!("SHA-256 {fc}"), WAIT),
        "{}",
        t.srv.log()
    );
    assert_eq!(TlsSmtp::implicit(t.imp()).peer_fingerprint(), fc);

    // A bad new certificate keeps the current one, and the log says why.
    // `postern reload` checks the config first and refuses to signal.
    for (bad, why, n) in [
        (&expired, "expired", 1),
        (&(c.0.clone(), other_key.clone()), "does not match", 2),
    ] {
        copy_cert(bad, &cur);
        let (ok, out) = run(postern().arg("reload").arg("--config").arg(&t.srv.config));
        assert!(
            !ok,
            "postern reload signalled with a bad certificate: {out}"
        );
        assert!(out.contains(why), "{out}");
        assert!(!out.contains("sent SIGHUP"), "{out}");
        assert_eq!(
            TlsSmtp::implicit(t.imp()).peer_fingerprint(),
            fc,
            "after reload, {why}"
        );
        // A plain SIGHUP reaches the server, which keeps the old one.
        signal(t.srv.pid(), nix::sys::signal::Signal::SIGHUP).expect("SIGHUP to postern");
        assert!(
            t.srv
                .wait_log_count("SIGHUP: keeping the current certificate", n, WAIT),
            "{}",
            t.srv.log()
        );
        let log = t.srv.log();
        let line = log
            .lines()
            .filter(|l| l.contains("keeping the current certificate"))
            .nth(n - 1)
            .unwrap();
        assert!(line.contains(why), "{line}");
        assert!(
            line.contains(&cur.0.display().to_string())
                || line.contains(&cur.1.display().to_string()),
            "{line}"
        );
        assert_eq!(
            TlsSmtp::implicit(t.imp()).peer_fingerprint(),
            fc,
            "after SIGHUP, {why}"
        );
        let mut s = TlsSmtp::starttls_session(t.st());
        assert_eq!(s.peer_fingerprint(), fc);
        s.expect("QUIT", "221");
    }
    // The oldest sessions are still fine.
    old_st.expect("NOOP", "250");
    old_st.expect("QUIT", "221");
    let r = old_imp.send_mail(
        "s@client.test",
        "alice@example.test",
        &message("after-reload-2", "x"),
    );
    assert!(r.first.starts_with("250 2.0.0 Ok: queued"), "{r:?}");
    old_imp.expect("QUIT", "221");
    delivered(&t.srv, "after-reload-1");
    delivered(&t.srv, "after-reload-2");
    assert!(!t.srv.log().contains("crashed"));
}

#[test]
fn starttls_is_not_offered_on_a_plain_listener() {
    let t = tls_server(Server::builder());
    let mut c = Smtp::connect(t.plain());
    assert_eq!(c.reply().code, 220);
    let ehlo = c.expect("EHLO client.test", "250");
    assert!(!ehlo.text.contains("STARTTLS"), "{}", ehlo.text);
    c.expect("STARTTLS", "502 5.5.1");
    // The session goes on in plaintext.
    c.expect("NOOP", "250");
    let r = c.send_mail(
        "s@client.test",
        &["alice@example.test"],
        &message("plain-after-502", "x"),
    );
    assert!(r.first.starts_with("250"), "{r:?}");
    // swaks --tls gives up there.
    let (ok, out) = swaks(&[
        "--port",
        &t.plain.to_string(),
        "--tls",
        "--from",
        "s@client.test",
        "--to",
        "alice@example.test",
    ]);
    assert!(!ok, "{out}");
    assert!(!out.contains("queued as"), "{out}");
}

#[test]
fn starttls_resets_the_session_and_cannot_be_repeated() {
    let t = tls_server(Server::builder());
    let mut c = TlsSmtp::connect(t.st());
    assert_eq!(c.reply().code, 220);
    // Before EHLO: helo_required.
    c.expect("STARTTLS", "503 5.5.1");
    c.expect("EHLO client.test", "250");
    c.expect("STARTTLS now", "501 5.5.4");
    c.expect("STARTTLS", "220 2.0.0 Ready to start TLS");
    c.handshake().unwrap();
    // RFC 3207 4.2: the server forgets the EHLO: MAIL needs a new one.
    c.expect("MAIL FROM:<s@client.test>", "503 5.5.1");
    let ehlo = c.expect("EHLO client.test", "250");
    assert!(
        !ehlo.text.contains("STARTTLS"),
        "STARTTLS offered inside TLS: {}",
        ehlo.text
    );
    assert!(ehlo.text.contains("AUTH PLAIN LOGIN"), "{}", ehlo.text);
    // A second STARTTLS inside TLS.
    c.expect("STARTTLS", "554 5.5.1");
    // And the session is still usable.
    let r = c.send_mail(
        "s@client.test",
        "alice@example.test",
        &message("after-double", "x"),
    );
    assert!(r.first.starts_with("250 2.0.0 Ok: queued"), "{r:?}");
    c.expect("QUIT", "221");

    // STARTTLS in the middle of a transaction forgets the transaction.
    let mut c = TlsSmtp::connect(t.st());
    assert_eq!(c.reply().code, 220);
    c.expect("EHLO client.test", "250");
    c.expect("MAIL FROM:<s@client.test>", "250");
    c.expect("STARTTLS", "220");
    c.handshake().unwrap();
    c.expect("EHLO client.test", "250");
    c.expect("RCPT TO:<alice@example.test>", "503 5.5.1");
    c.expect("MAIL FROM:<s@client.test>", "250");
    c.expect("QUIT", "221");

    // Implicit TLS: no STARTTLS offered, and refused.
    let mut c = TlsSmtp::implicit(t.imp());
    assert_eq!(c.reply().code, 220);
    let ehlo = c.expect("EHLO client.test", "250");
    assert!(!ehlo.text.contains("STARTTLS"), "{}", ehlo.text);
    c.expect("STARTTLS", "554 5.5.1");
    c.expect("QUIT", "221");
}

/// CVE-2011-0411: commands pipelined behind STARTTLS in the same packet must
/// never be executed inside TLS.
#[test]
fn starttls_injection_pipelined_plaintext_is_discarded() {
    let t = tls_server(Server::builder());
    for injected in [
        "RSET\r\n",
        "MAIL FROM:<evil@attacker.test>\r\n",
        "MAIL FROM:<evil@attacker.test>\r\nRCPT TO:<alice@example.test>\r\nNOOP\r\n",
    ] {
        let mut c = TlsSmtp::connect(t.st());
        assert_eq!(c.reply().code, 220);
        c.expect("EHLO client.test", "250");
        // One write: STARTTLS and the injection.
        c.send(format!("STARTTLS\r\n{injected}").as_bytes());
        let r = c.reply();
        assert!(r.first.starts_with("220 2.0.0"), "{r:?}");
        c.handshake().expect("handshake after STARTTLS");
        // Inside TLS the first reply answers OUR command.
        let ehlo = c.cmd("EHLO client.test");
        assert!(
            ehlo.code == 250 && ehlo.text.starts_with("mx.example.test\n"),
            "injected {injected:?}: first reply inside TLS is not the EHLO reply: {ehlo:?}"
        );
        // No transaction was started by the injected MAIL.
        c.expect("MAIL FROM:<good@client.test>", "250 2.1.0");
        c.expect("NOOP", "250 2.0.0 Ok");
        c.expect("RSET", "250");
        c.expect("QUIT", "221");
        assert!(
            c.try_reply().is_none(),
            "a reply to the injected commands came late"
        );
        let needle = format!(
            "discarded {} bytes pipelined after STARTTLS",
            injected.len()
        );
        assert!(
            t.srv.wait_log(&needle, WAIT),
            "no {needle:?} in:\n{}",
            t.srv.log()
        );
    }
    // Nothing from the attacker reached the queue.
    assert!(
        !t.srv.log().contains("evil@attacker.test"),
        "{}",
        t.srv.log()
    );
    // And a clean STARTTLS logs nothing about discarding. The session's
    // own "disconnect from" line (written after anything it would have
    // logged about discarding) proves it is over.
    // The three sessions above are over first.
    assert!(
        t.srv.wait_log_count("disconnect from", 3, WAIT),
        "{}",
        t.srv.log()
    );
    let before = t.srv.log().matches("discarded").count();
    let disconnects = t.srv.log().matches("disconnect from").count();
    assert_eq!(disconnects, 3, "{}", t.srv.log());
    let mut c = TlsSmtp::starttls_session(t.st());
    c.expect("QUIT", "221");
    assert!(
        t.srv
            .wait_log_count("disconnect from", disconnects + 1, WAIT),
        "{}",
        t.srv.log()
    );
    assert_eq!(t.srv.log().matches("discarded").count(), before);
}

/// Reads until EOF or `limit`; returns the time it took and the bytes seen.
fn read_until_closed(s: &mut TcpStream, limit: Duration) -> (Duration, Vec<u8>, bool) {
    let start = Instant::now();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while start.elapsed() < limit {
        match s.read(&mut buf) {
            Ok(0) => return (start.elapsed(), got, true),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return (start.elapsed(), got, true),
        }
    }
    (start.elapsed(), got, false)
}

#[test]
fn garbage_instead_of_a_client_hello_closes_the_connection() {
    let t = tls_server(Server::builder());
    // Pseudo-random bytes (xorshift), then a plaintext SMTP command.
    let mut x: u32 = 0x9e37_79b9;
    let junk: Vec<u8> = (0..600)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect();
    for bytes in [
        junk.clone(),
        b"EHLO client.test\r\n".to_vec(),
        vec![0x16, 3, 1, 0xff, 0xff, 0],
    ] {
        let mut s = TcpStream::connect(t.imp()).unwrap();
        let _ = s.write_all(&bytes);
        let (_, got, closed) = read_until_closed(&mut s, Duration::from_secs(15));
        assert!(
            closed,
            "connection not closed after garbage {:?}",
            &bytes[..8.min(bytes.len())]
        );
        // No SMTP greeting in plaintext.
        assert!(
            !got.starts_with(b"220"),
            "{:?}",
            String::from_utf8_lossy(&got)
        );
    }
    // Garbage after STARTTLS too.
    let mut s = TcpStream::connect(t.st()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let r = read_reply_unbuffered(&mut s).expect("greeting");
    assert_eq!(r.code, 220, "{r:?}");
    s.write_all(b"EHLO client.test\r\n").unwrap();
    let r = read_reply_unbuffered(&mut s).expect("EHLO reply");
    assert_eq!(r.code, 250, "{r:?}");
    s.write_all(b"STARTTLS\r\n").unwrap();
    let r = read_reply_unbuffered(&mut s).expect("STARTTLS reply");
    assert!(r.first.starts_with("220 2.0.0"), "{r:?}");
    s.write_all(&junk).unwrap();
    let (_, _, closed) = read_until_closed(&mut s, Duration::from_secs(15));
    assert!(closed, "STARTTLS + garbage: not closed");

    assert!(
        t.srv.wait_log_count("TLS handshake failed", 4, WAIT),
        "{}",
        t.srv.log()
    );
    // The server is alive and well.
    let (ok, out) = s_client(t.imp(), false, &["-brief"]);
    assert!(ok && out.contains("TLSv1.3"), "{out}");
    let mut c = TlsSmtp::implicit(t.imp());
    assert_eq!(c.reply().code, 220);
    c.expect("EHLO client.test", "250");
    c.expect("QUIT", "221");
    assert!(!t.srv.log().contains("crashed"));
}

#[test]
fn a_stalled_handshake_times_out() {
    let srv = Server::builder()
        .set("tls", "handshake_timeout = \"1s\"")
        .listener("starttls", "")
        .listener("implicit-tls", "")
        .start();
    let (st, imp) = (srv.listener_port(2), srv.listener_port(3));
    // Implicit: connect and say nothing.
    let mut s = TcpStream::connect(format!("127.0.0.1:{imp}")).unwrap();
    let (took, got, closed) = read_until_closed(&mut s, Duration::from_secs(20));
    assert!(closed, "a silent client kept the connection for {took:?}");
    assert!(got.is_empty(), "{got:?}");
    // Well before the 30 s default (not a timing assertion: just which
    // setting was used).
    assert!(took < Duration::from_secs(15), "closed only after {took:?}");
    assert!(srv.wait_log("handshake timed out", WAIT), "{}", srv.log());
    // STARTTLS then silence.
    let mut s = TcpStream::connect(format!("127.0.0.1:{st}")).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let r = read_reply_unbuffered(&mut s).expect("greeting");
    assert_eq!(r.code, 220, "{r:?}");
    s.write_all(b"EHLO c.test\r\n").unwrap();
    let r = read_reply_unbuffered(&mut s).expect("EHLO reply");
    assert_eq!(r.code, 250, "{r:?}");
    s.write_all(b"STARTTLS\r\n").unwrap();
    let r = read_reply_unbuffered(&mut s).expect("STARTTLS reply");
    assert!(r.first.starts_with("220 2.0.0"), "{r:?}");
    let (took, _, closed) = read_until_closed(&mut s, Duration::from_secs(20));
    assert!(closed && took < Duration::from_secs(15), "{took:?}");
    assert!(
        srv.wait_log_count("handshake timed out", 2, WAIT),
        "{}",
        srv.log()
    );
    // The slot was given back: the server still answers.
    let mut c = TlsSmtp::implicit(format!("127.0.0.1:{imp}").parse().unwrap());
    assert_eq!(c.reply().code, 220);
}

#[test]
fn fifty_concurrent_tls_sessions() {
    const N: usize = 50;
    let b = Server::builder()
        .set("smtp", "max_connections = 200")
        .set("smtp", "max_connections_per_client = 200");
    let t = tls_server(b);
    let (st, imp) = (t.st(), t.imp());
    let barrier = Arc::new(std::sync::Barrier::new(N));
    let threads: Vec<_> = (0..N)
        .map(|i| {
            let barrier = barrier.clone();
            std::thread::spawn(move || -> Result<(), String> {
                let mut c = if i % 2 == 0 {
                    TlsSmtp::starttls_session(st)
                } else {
                    let mut c = TlsSmtp::implicit(imp);
                    assert_eq!(c.reply().code, 220);
                    c.expect("EHLO client.test", "250");
                    c
                };
                // All N sessions are in TLS at the same time.
                barrier.wait();
                let r = c.send_mail(
                    "s@client.test",
                    "alice@example.test",
                    &message(&format!("concurrent-{i}"), &"line of text\r\n".repeat(50)),
                );
                if !r.first.starts_with("250 2.0.0 Ok: queued") {
                    return Err(format!("session {i}: {r:?}"));
                }
                c.expect("QUIT", "221");
                Ok(())
            })
        })
        .collect();
    let errors: Vec<String> = threads
        .into_iter()
        .filter_map(|h| match h.join() {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e),
            Err(_) => Some("a client thread panicked".into()),
        })
        .collect();
    assert!(errors.is_empty(), "{errors:?}\n{}", t.srv.log());
    let files = wait_maildir(&t.srv.mailbox("example.test/alice/"), N, WAIT);
    assert_eq!(files.len(), N);
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        assert!(text.contains("with ESMTPS id"), "{text}");
    }
    assert!(!t.srv.log().contains("crashed"));
}
