//! Outbound SMTP sessions (postern::outbound) against real servers on
//! loopback: Python aiosmtpd sinks that accept, refuse (4xx/5xx), stall,
//! hang up, offer STARTTLS (certificates made here with rcgen) and AUTH,
//! Postfix's smtp-sink for several pipelined messages on one connection,
//! and raw listeners that never greet or hang up.
//!
//! python3 with aiosmtpd and smtp-sink (package postfix) are required: a
//! missing one fails the test, it never skips.

mod common;
#[path = "common/smtp_peers.rs"]
mod smtp_peers;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::TestDir;
use postern::outbound::{self, Options, Outgoing, Report, SessionFailure, Target};
use postern::smtp::address::{Address, ReversePath};
use postern::smtp::client::{
    ClientConfig, ClientCredentials, ConnFailure, Envelope, Stage, Status, TlsPolicy,
};
use postern::smtp::reply::Esc;
use postern::smtp::sasl::Secret;
use smtp_peers::{PySink, SmtpSink};

const MESSAGE: &[u8] = b"From: a@x.test\nTo: b@y.test\nSubject: outbound\n\n\
.leading dot\nbare\rcr and crlf\r\nlast line without LF";
/// What the server must get back after dot-unstuffing: CRLF everywhere.
const ON_THE_WIRE: &[u8] = b"From: a@x.test\r\nTo: b@y.test\r\nSubject: outbound\r\n\r\n\
.leading dot\r\nbare\r\ncr and crlf\r\nlast line without LF\r\n";

fn addr(s: &str) -> Address {
    let (l, d) = s.split_once('@').unwrap();
    Address::new(l, d)
}

fn message(rcpts: &[&str]) -> Outgoing {
    let env = Envelope::new(
        ReversePath::Address(addr("a@x.test")),
        rcpts.iter().map(|r| addr(r)).collect(),
        ON_THE_WIRE.len() as u64,
    );
    Outgoing {
        envelope: env,
        content: Box::new(smol::io::Cursor::new(MESSAGE.to_vec())),
    }
}

fn options(tls: TlsPolicy) -> Options {
    Options {
        client: ClientConfig {
            helo_name: "client.example.test".into(),
            tls,
            ..ClientConfig::default()
        },
        connect_timeout: Duration::from_secs(5),
        roots: None,
    }
}

fn run(to: SocketAddr, host: &str, opts: &Options, msgs: Vec<Outgoing>) -> Report {
    let target = Target {
        host: host.into(),
        addr: to,
    };
    smol::block_on(outbound::deliver(&target, opts, msgs))
}

fn statuses(r: &Report, i: usize) -> Vec<Status> {
    let m = r.results[i].as_ref().expect("a result");
    m.recipients.iter().map(|x| x.status).collect()
}

/// A CA and a certificate for mx.example.test signed by it, as PEM files.
struct Certs {
    dir: TestDir,
    ca_pem: String,
}

impl Certs {
    fn new() -> Certs {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
        let dir = TestDir::new("outbound-certs");
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(rcgen::DnType::CommonName, "postern test CA");
        let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
        let key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["mx.example.test".to_string()])
            .unwrap()
            .signed_by(&key, &ca)
            .unwrap();
        std::fs::write(dir.path().join("cert.pem"), leaf.pem()).unwrap();
        std::fs::write(dir.path().join("key.pem"), key.serialize_pem()).unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
        Certs {
            ca_pem: ca.pem(),
            dir,
        }
    }

    fn args(&self) -> Vec<String> {
        let p = |f: &str| self.dir.path().join(f).display().to_string();
        vec!["--tls".into(), p("cert.pem"), p("key.pem")]
    }

    fn roots(&self) -> Arc<rustls::RootCertStore> {
        let _ = &self.ca_pem;
        Arc::new(outbound::tls::roots_from_pem_file(&self.dir.path().join("ca.pem")).unwrap())
    }
}

#[test]
fn plain_delivery_with_exact_content() {
    let sink = PySink::start(&[]);
    let r = run(
        sink.addr,
        "mx.example.test",
        &options(TlsPolicy::May),
        vec![message(&["b@y.test"])],
    );
    assert_eq!(r.failure, None, "{r:?}");
    assert_eq!(r.tls, None);
    assert_eq!(statuses(&r, 0), [Status::Delivered]);
    let got = sink.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].from, "a@x.test");
    assert_eq!(got[0].rcpts, ["b@y.test"]);
    assert!(
        got[0]
            .options
            .contains(&format!("SIZE={}", ON_THE_WIRE.len())),
        "{:?}",
        got[0].options
    );
    assert_eq!(
        String::from_utf8_lossy(&got[0].content),
        String::from_utf8_lossy(ON_THE_WIRE)
    );
}

#[test]
fn refusals_4xx_and_5xx() {
    let sink = PySink::start(&["--reject-rcpt", "bad", "--defer-rcpt", "grey"]);
    let r = run(
        sink.addr,
        "mx.example.test",
        &options(TlsPolicy::None),
        vec![message(&["bad@y.test", "ok@y.test", "grey@y.test"])],
    );
    assert_eq!(r.failure, None);
    assert_eq!(
        statuses(&r, 0),
        [Status::Permanent, Status::Delivered, Status::Temporary]
    );
    let m = r.results[0].as_ref().unwrap();
    assert_eq!(m.recipients[0].esc(), Esc(5, 1, 1));
    assert!(m.recipients[0]
        .text()
        .contains("User unknown (in reply to RCPT TO command)"));
    assert_eq!(sink.received()[0].rcpts, ["ok@y.test"]);

    let sink = PySink::start(&["--data-reply", "451 4.3.0 Error: queue file write error"]);
    let r = run(
        sink.addr,
        "mx.example.test",
        &options(TlsPolicy::None),
        vec![message(&["b@y.test"])],
    );
    assert_eq!(statuses(&r, 0), [Status::Temporary]);
    let m = r.results[0].as_ref().unwrap();
    assert_eq!(m.recipients[0].esc(), Esc(4, 3, 0));
}

#[test]
fn size_limit_is_checked_before_sending() {
    let sink = PySink::start(&["--size", "100"]);
    let r = run(
        sink.addr,
        "mx.example.test",
        &options(TlsPolicy::None),
        vec![message(&["b@y.test"])],
    );
    assert_eq!(statuses(&r, 0), [Status::Permanent]);
    assert_eq!(
        r.results[0].as_ref().unwrap().recipients[0].esc(),
        Esc(5, 3, 4)
    );
    assert!(sink.received().is_empty());
    assert_eq!(r.failure, None, "the session itself was fine: {r:?}");
}

#[test]
fn stalls_and_hang_ups_are_connection_failures() {
    // The end of data never answered: the data-done timeout (shortened).
    let sink = PySink::start(&["--stall-data"]);
    let mut opts = options(TlsPolicy::None);
    opts.client.timeouts.data_done = Duration::from_millis(500);
    let r = run(
        sink.addr,
        "mx.example.test",
        &opts,
        vec![message(&["b@y.test"]), message(&["c@y.test"])],
    );
    assert_eq!(
        r.failure,
        Some(SessionFailure::Smtp(ConnFailure::Timeout {
            stage: Stage::DataDone
        }))
    );
    assert_eq!(statuses(&r, 0), [Status::Temporary]);
    assert!(r.results[1].is_none(), "the second message was never tried");

    // The server hangs up at MAIL.
    let sink = PySink::start(&["--drop-at-mail"]);
    let r = run(
        sink.addr,
        "mx.example.test",
        &options(TlsPolicy::None),
        vec![message(&["b@y.test"])],
    );
    assert!(matches!(r.failure, Some(SessionFailure::Smtp(_))), "{r:?}");
    assert_eq!(statuses(&r, 0), [Status::Temporary]);

    // Never a greeting.
    let silent = smtp_peers::raw_server(smtp_peers::silent);
    let mut opts = options(TlsPolicy::None);
    opts.client.timeouts.greeting = Duration::from_millis(300);
    let r = run(
        silent,
        "mx.example.test",
        &opts,
        vec![message(&["b@y.test"])],
    );
    assert_eq!(
        r.failure,
        Some(SessionFailure::Smtp(ConnFailure::Timeout {
            stage: Stage::Greeting
        }))
    );
    assert_eq!(r.results, [None]);

    // A greeting, then gone.
    let flaky = smtp_peers::raw_server(smtp_peers::hang_up_after_ehlo);
    let r = run(
        flaky,
        "mx.example.test",
        &options(TlsPolicy::None),
        vec![message(&["b@y.test"])],
    );
    assert_eq!(
        r.failure,
        Some(SessionFailure::Smtp(ConnFailure::Lost {
            stage: Stage::Ehlo
        }))
    );

    // Nobody listening.
    let closed = smtp_peers::free_port();
    let to: SocketAddr = format!("127.0.0.1:{closed}").parse().unwrap();
    let r = run(
        to,
        "mx.example.test",
        &options(TlsPolicy::None),
        vec![message(&["b@y.test"])],
    );
    assert!(
        matches!(r.failure, Some(SessionFailure::Connect(_))),
        "{r:?}"
    );
}

#[test]
fn starttls_may_encrypt_and_verify() {
    let certs = Certs::new();
    let args = certs.args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let sink = PySink::start(&args);
    for policy in [TlsPolicy::May, TlsPolicy::Encrypt] {
        let r = run(
            sink.addr,
            "mx.example.test",
            &options(policy),
            vec![message(&["b@y.test"])],
        );
        assert_eq!(r.failure, None, "{policy:?}: {r:?}");
        assert!(
            r.tls.as_deref().is_some_and(|v| v.starts_with("TLSv1.")),
            "{r:?}"
        );
        assert_eq!(statuses(&r, 0), [Status::Delivered]);
    }
    assert!(sink.received().iter().all(|m| m.tls));
    // verify: the right name and our CA.
    let mut opts = options(TlsPolicy::Verify);
    opts.roots = Some(certs.roots());
    let r = run(
        sink.addr,
        "mx.example.test",
        &opts,
        vec![message(&["b@y.test"])],
    );
    assert_eq!(r.failure, None, "{r:?}");
    // verify: a name the certificate does not carry.
    let r = run(
        sink.addr,
        "other.example.test",
        &opts,
        vec![message(&["b@y.test"])],
    );
    match &r.failure {
        Some(SessionFailure::Smtp(ConnFailure::TlsFailed { problem })) => {
            assert!(problem.to_lowercase().contains("certificate"), "{problem}")
        }
        other => panic!("{other:?}"),
    }
    // verify without roots is a configuration error, before connecting.
    let r = run(
        sink.addr,
        "mx.example.test",
        &options(TlsPolicy::Verify),
        vec![],
    );
    assert!(
        matches!(r.failure, Some(SessionFailure::Config(_))),
        "{r:?}"
    );
    // encrypt with a server that has no STARTTLS.
    let plain = PySink::start(&[]);
    let r = run(
        plain.addr,
        "mx.example.test",
        &options(TlsPolicy::Encrypt),
        vec![message(&["b@y.test"])],
    );
    assert_eq!(
        r.failure,
        Some(SessionFailure::Smtp(ConnFailure::TlsRequired))
    );
    assert_eq!(r.results, [None]);
    assert!(plain.received().is_empty());
}

#[test]
fn auth_inside_tls() {
    let certs = Certs::new();
    let mut args = certs.args();
    args.extend([
        "--auth".to_string(),
        "relay@example.test:s3cret".to_string(),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let sink = PySink::start(&args);
    let creds = |pw: &str| ClientCredentials {
        user: "relay@example.test".into(),
        password: Secret::new(pw.as_bytes().to_vec()),
    };
    let mut opts = options(TlsPolicy::Encrypt);
    opts.client.credentials = Some(creds("s3cret"));
    let r = run(
        sink.addr,
        "mx.example.test",
        &opts,
        vec![message(&["b@y.test"])],
    );
    assert_eq!(r.failure, None, "{r:?}");
    assert!(sink.received()[0].auth);
    opts.client.credentials = Some(creds("wrong-password"));
    let r = run(
        sink.addr,
        "mx.example.test",
        &opts,
        vec![message(&["b@y.test"])],
    );
    match &r.failure {
        Some(SessionFailure::Smtp(f @ ConnFailure::AuthFailed { .. })) => {
            assert_eq!(f.esc().0, 4, "a failed login defers");
        }
        other => panic!("{other:?}"),
    }
    assert!(!format!("{r:?} {opts:?}").contains("wrong-password"));
}

#[test]
fn several_messages_over_one_connection_to_smtp_sink() {
    let sink = SmtpSink::start();
    let msgs = (0..3)
        .map(|i| message(&[&format!("r{i}@y.test"), "s@y.test"]))
        .collect();
    let r = run(
        sink.addr,
        "sink.example.test",
        &options(TlsPolicy::May),
        msgs,
    );
    assert_eq!(r.failure, None, "{r:?}");
    for i in 0..3 {
        assert_eq!(statuses(&r, i), [Status::Delivered, Status::Delivered]);
    }
}

#[test]
fn unreadable_content_defers_without_blaming_the_server() {
    struct Broken;
    impl smol::io::AsyncRead for Broken {
        fn poll_read(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            _: &mut [u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            std::task::Poll::Ready(Err(std::io::Error::other("spool file truncated")))
        }
    }
    let sink = PySink::start(&[]);
    let mut m = message(&["b@y.test"]);
    m.content = Box::new(Broken);
    let r = run(
        sink.addr,
        "mx.example.test",
        &options(TlsPolicy::None),
        vec![m],
    );
    let rr = &r.results[0].as_ref().unwrap().recipients[0];
    assert_eq!((rr.status, rr.esc()), (Status::Temporary, Esc(4, 3, 0)));
    assert!(rr.text().contains("spool file truncated"), "{}", rr.text());
    assert!(
        matches!(r.failure, Some(SessionFailure::Content(_))),
        "{r:?}"
    );
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        sink.received().is_empty(),
        "no partial message may be accepted"
    );
}
