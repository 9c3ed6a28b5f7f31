//! The I/O loop of one outbound session: connect with a timeout, then do
//! what the client machine says (write, read with the timeout it names,
//! STARTTLS, stream the message through its encoder) until it closes.
//! Owns the socket and the reads of message content; every protocol
//! decision is the machine's.
//!
//! Timeouts: connect ([`super::Options::connect_timeout`]), each read (the
//! one the machine names for its stage), the TLS handshake (STARTTLS's),
//! each write of message content (data_xfer), other writes the MAIL/RCPT
//! one. A write that fails or times out is told to the machine as a lost
//! connection or a timeout, like a read.
//!
//! Content that cannot be read (a spool file gone bad) aborts the session
//! before the final dot, so the server drops the partial message, and the
//! recipients are deferred with 4.3.0 rather than blamed on the server.

use std::future::Future;
use std::io;
use std::time::Duration;

use futures_rustls::client::TlsStream;
use futures_rustls::TlsConnector;
use rustls::pki_types::ServerName;
use smol::io::{AsyncReadExt, AsyncWriteExt};
use smol::net::TcpStream;

use super::{tls, Options, Outgoing, Report, SessionFailure, Target};
use crate::smtp::client::{
    Client, Detail, MessageResult, RcptResult, Stage, Status, Step, TlsPolicy,
};
use crate::smtp::reply::Esc;

/// Message content is read and encoded in pieces of this size.
const CONTENT_CHUNK: usize = 64 * 1024;

enum Conn {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    /// In the middle of the STARTTLS handshake.
    Gone,
}

impl Conn {
    async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Plain(s) => s.read(buf).await,
            Conn::Tls(s) => s.read(buf).await,
            Conn::Gone => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    /// Writes and flushes: futures-rustls only buffers until flushed.
    async fn write_all(&mut self, b: &[u8]) -> io::Result<()> {
        match self {
            Conn::Plain(s) => {
                s.write_all(b).await?;
                s.flush().await
            }
            Conn::Tls(s) => {
                s.write_all(b).await?;
                s.flush().await
            }
            Conn::Gone => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    async fn close(&mut self) {
        let _ = match self {
            Conn::Plain(s) => s.close().await,
            Conn::Tls(s) => s.close().await,
            Conn::Gone => Ok(()),
        };
    }
}

enum Wait<T> {
    Done(T),
    Failed(io::Error),
    TimedOut,
}

async fn timed<T>(d: Duration, f: impl Future<Output = io::Result<T>>) -> Wait<T> {
    smol::future::or(
        async {
            match f.await {
                Ok(t) => Wait::Done(t),
                Err(e) => Wait::Failed(e),
            }
        },
        async {
            smol::Timer::after(d).await;
            Wait::TimedOut
        },
    )
    .await
}

/// The name for SNI and certificate checks: the host name, or for `may`
/// and `encrypt` the address when the host is not a DNS name.
fn server_name(target: &Target, policy: TlsPolicy) -> Result<ServerName<'static>, String> {
    let host = target.host.trim_start_matches('[').trim_end_matches(']');
    match ServerName::try_from(host.to_string()) {
        Ok(n) => Ok(n),
        Err(_) if policy != TlsPolicy::Verify => Ok(ServerName::from(target.addr.ip())),
        Err(e) => Err(format!(
            "{host:?}: not a name a certificate can be checked against: {e}"
        )),
    }
}

/// Runs one session with `target`, sending `messages` in order over the
/// same connection.
pub async fn deliver(target: &Target, opts: &Options, messages: Vec<Outgoing>) -> Report {
    let mut report = Report {
        target: target.clone(),
        tls: None,
        results: Vec::with_capacity(messages.len()),
        failure: None,
    };
    let mut c = match Connection::open(target, opts).await {
        Ok(c) => c,
        Err(f) => {
            report.results = messages.iter().map(|_| None).collect();
            report.failure = Some(f);
            return report;
        }
    };
    report.tls = c.tls().map(str::to_string);
    for m in messages {
        if report.failure.is_some() {
            report.results.push(None);
            continue;
        }
        match c.send(m).await {
            Ok(r) => report.results.push(Some(r)),
            Err((r, f)) => {
                report.results.push(r);
                report.failure = Some(f);
            }
        }
    }
    if report.failure.is_none() {
        report.failure = c.quit().await;
    }
    report
}

/// An open session, ready for a message: connected, greeted, EHLO said,
/// TLS and login done as the options ask. Send messages one after the
/// other over it (a provider that counts logins sees one), then quit.
pub struct Connection {
    s: Session,
    target: Target,
    tls: Option<String>,
    /// Why the session is over, once it is.
    failure: Option<SessionFailure>,
}

impl Connection {
    /// Connects and talks until the server is ready for a message.
    pub async fn open(target: &Target, opts: &Options) -> Result<Connection, SessionFailure> {
        let policy = opts.client.tls;
        let tls_setup = if policy.wants_tls() {
            tls::client_config(policy, opts.roots.clone())
                .and_then(|cfg| Ok((TlsConnector::from(cfg), server_name(target, policy)?)))
                .map(Some)
                .map_err(SessionFailure::Config)?
        } else {
            None
        };
        let tcp = match timed(opts.connect_timeout, TcpStream::connect(target.addr)).await {
            Wait::Done(s) => s,
            Wait::Failed(e) => {
                return Err(SessionFailure::Connect(format!("{}: {e}", target.addr)))
            }
            Wait::TimedOut => {
                return Err(SessionFailure::Connect(format!(
                    "{}: timed out",
                    target.addr
                )))
            }
        };
        let _ = tcp.set_nodelay(true);
        let mut c = Connection {
            s: Session {
                conn: Conn::Plain(tcp),
                client: Client::new(opts.client.clone()),
                command_write: opts.client.timeouts.mail,
                starttls_timeout: opts.client.timeouts.starttls,
                tls_setup,
                current: None,
                content_error: None,
                reading: None,
            },
            target: target.clone(),
            tls: None,
            failure: None,
        };
        match c.run_until_ready().await {
            Some(f) => {
                c.close().await;
                Err(f)
            }
            None => Ok(c),
        }
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    /// `TLSv1.3` when STARTTLS succeeded.
    pub fn tls(&self) -> Option<&str> {
        self.tls.as_deref()
    }

    /// Can it take another message?
    pub fn is_open(&self) -> bool {
        self.failure.is_none()
    }

    /// One transaction. `Err` when the session ended with it: the message's
    /// result if it got one (a 421 after the end of data, say), and why.
    pub async fn send(
        &mut self,
        m: Outgoing,
    ) -> Result<MessageResult, (Option<MessageResult>, SessionFailure)> {
        if let Some(f) = &self.failure {
            return Err((None, f.clone()));
        }
        self.s.current = Some(m.content);
        self.s.content_error = None;
        self.s.client.send(m.envelope);
        let mut result = None;
        loop {
            match self.s.client.step() {
                Step::Done(r) => {
                    self.s.current = None;
                    result = Some(match &self.s.content_error {
                        Some(e) => content_failed(r, e),
                        None => r,
                    });
                }
                Step::Ready => {
                    return result.ok_or_else(|| {
                        (
                            None,
                            SessionFailure::Smtp(crate::smtp::client::ConnFailure::Protocol {
                                stage: crate::smtp::client::Stage::DataDone,
                                problem: "the transaction ended without a result".into(),
                            }),
                        )
                    })
                }
                Step::Closed(f) => {
                    let f = match self.s.content_error.take() {
                        Some(e) => SessionFailure::Content(e),
                        None => f
                            .map(SessionFailure::Smtp)
                            .unwrap_or_else(|| SessionFailure::Connect("closed".into())),
                    };
                    self.failure = Some(f.clone());
                    self.close().await;
                    return Err((result, f));
                }
                other => self.s.io(other, &mut self.tls).await,
            }
        }
    }

    /// QUIT and close; the failure if the goodbye went wrong (of no
    /// consequence to messages already sent).
    pub async fn quit(mut self) -> Option<SessionFailure> {
        if self.failure.is_none() {
            self.s.client.quit();
            loop {
                match self.s.client.step() {
                    Step::Closed(f) => {
                        self.failure = f.map(SessionFailure::Smtp);
                        break;
                    }
                    Step::Ready | Step::Done(_) => {}
                    other => self.s.io(other, &mut self.tls).await,
                }
            }
        }
        self.close().await;
        self.failure
    }

    async fn run_until_ready(&mut self) -> Option<SessionFailure> {
        loop {
            match self.s.client.step() {
                Step::Ready => return None,
                Step::Closed(f) => {
                    let f = f
                        .map(SessionFailure::Smtp)
                        .unwrap_or_else(|| SessionFailure::Connect("closed".into()));
                    self.failure = Some(f.clone());
                    return Some(f);
                }
                Step::Done(_) => {}
                other => self.s.io(other, &mut self.tls).await,
            }
        }
    }

    /// close_notify for TLS; a server that stopped reading gets a second.
    async fn close(&mut self) {
        let _ = timed(Duration::from_secs(1), async {
            self.s.conn.close().await;
            Ok(())
        })
        .await;
    }
}

struct Session {
    conn: Conn,
    client: Client,
    command_write: Duration,
    starttls_timeout: Duration,
    tls_setup: Option<(TlsConnector, ServerName<'static>)>,
    current: Option<Box<dyn smol::io::AsyncRead + Unpin + Send>>,
    content_error: Option<String>,
    /// The stage being read and when its wait ends: a reply must arrive
    /// whole within the stage's timeout, however slowly it trickles in.
    reading: Option<(Stage, std::time::Instant)>,
}

impl Session {
    /// The I/O of one step that is not a transaction boundary.
    async fn io(&mut self, step: Step, tls: &mut Option<String>) {
        let mut buf = [0u8; 16 * 1024];
        match step {
            Step::Send(w) => {
                self.reading = None;
                let r = timed(self.command_write, self.conn.write_all(w.bytes())).await;
                self.io_outcome(r);
            }
            Step::Read { timeout, stage } => {
                let now = std::time::Instant::now();
                let deadline = match self.reading {
                    Some((s, d)) if s == stage => d,
                    _ => now + timeout,
                };
                self.reading = Some((stage, deadline));
                let left = deadline.saturating_duration_since(now);
                match timed(left, self.conn.read(&mut buf)).await {
                    Wait::Done(0) => self.client.lost(),
                    Wait::Done(n) => self.client.feed(&buf[..n]),
                    Wait::Failed(_) => self.client.lost(),
                    Wait::TimedOut => self.client.timed_out(),
                }
            }
            Step::StartTls => {
                if let Some(v) = self.starttls().await {
                    *tls = Some(v);
                }
            }
            Step::SendBody { timeout } => {
                self.reading = None;
                self.send_content(timeout).await
            }
            Step::Ready | Step::Done(_) | Step::Closed(_) => {
                unreachable!("transaction boundaries are handled by the caller")
            }
        }
    }

    fn io_outcome(&mut self, r: Wait<()>) {
        match r {
            Wait::Done(()) => {}
            Wait::Failed(_) => self.client.lost(),
            Wait::TimedOut => self.client.timed_out(),
        }
    }

    /// The handshake; the TLS version on success.
    async fn starttls(&mut self) -> Option<String> {
        let Conn::Plain(tcp) = std::mem::replace(&mut self.conn, Conn::Gone) else {
            self.client.tls_failed("TLS is already active");
            return None;
        };
        let Some((connector, name)) = self.tls_setup.clone() else {
            self.client.tls_failed("no TLS configuration");
            return None;
        };
        let timeout = self.starttls_timeout;
        match timed(timeout, connector.connect(name, tcp)).await {
            Wait::Done(t) => {
                let v = tls::version_name(t.get_ref().1.protocol_version());
                self.conn = Conn::Tls(Box::new(t));
                self.client.tls_started(&v);
                Some(v)
            }
            Wait::Failed(e) => {
                self.client.tls_failed(&e.to_string());
                None
            }
            Wait::TimedOut => {
                self.client.tls_failed("handshake timed out");
                None
            }
        }
    }

    async fn send_content(&mut self, timeout: Duration) {
        let mut chunk = vec![0u8; CONTENT_CHUNK];
        let mut out = Vec::with_capacity(CONTENT_CHUNK + CONTENT_CHUNK / 16);
        loop {
            let content = self.current.as_mut().expect("a message in progress");
            let n = match content.read(&mut chunk).await {
                Ok(n) => n,
                Err(e) => {
                    // No final dot: the server must not take a partial message.
                    self.content_error = Some(e.to_string());
                    self.client.lost();
                    return;
                }
            };
            out.clear();
            if n == 0 {
                self.client.body_end(&mut out);
            } else {
                self.client.body(&chunk[..n], &mut out);
            }
            match timed(timeout, self.conn.write_all(&out)).await {
                Wait::Done(()) if n > 0 => continue,
                other => return self.io_outcome(other),
            }
        }
    }
}

/// Recipients the session left undone because the content could not be
/// read: deferred as a local problem (4.3.0), not a remote one.
fn content_failed(mut r: MessageResult, e: &str) -> MessageResult {
    for rr in &mut r.recipients {
        if rr.status == Status::Temporary && matches!(rr.detail, Detail::Local { .. }) {
            *rr = RcptResult {
                status: Status::Temporary,
                detail: Detail::Local {
                    esc: Esc(4, 3, 0),
                    text: format!("cannot read the queued message: {e}"),
                },
            };
        }
    }
    r
}
