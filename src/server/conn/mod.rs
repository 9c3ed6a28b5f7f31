//! One SMTP connection: the thin driver around the pure session. It reads
//! the socket, feeds the session, sends its replies (buffered, flushed
//! before every read, which is what PIPELINING needs), answers its
//! questions from the policy, the directory, the auth backend and the
//! spool, runs the TLS handshake when asked, and logs.

mod message;

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use smol::io::{AsyncReadExt, AsyncWriteExt};
use smol::net::TcpStream;

use super::limits::LimitHit;
use super::stream::Stream;
use super::{ListenerCtx, Shared};
use crate::clock::{now_micros, now_secs};
use crate::intake::content::{Scanner, Verdict};
use crate::intake::{Committed, Intake, Sink};
use crate::log;
use crate::policy::{self, Client};
use crate::queue::envelope::QueueEnvelope;
use crate::queue::id;
use crate::smtp::reply::{self, Esc, Reply};
use crate::smtp::sasl::{Credentials, Mechanism};
use crate::smtp::session::{Answer, AuthFailure, Peer, Question, Rejected, Session, Step};

/// Read buffer per connection.
const READ_BUF: usize = 8 * 1024;
/// Replies are sent once this much is buffered, even mid-pipeline.
const OUT_HIGH_WATER: usize = 16 * 1024;
/// Body bytes are handed to the sink in pieces of at least this size; a
/// small message is written in one go with its commit.
const BODY_WRITE: usize = 64 * 1024;

/// `::ffff:1.2.3.4` is 1.2.3.4 for networks, logs and limits.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// Writes and flushes (a TLS stream only sends on flush), within `t`.
async fn write_timeout(stream: &mut Stream, bytes: &[u8], t: Duration) -> io::Result<()> {
    smol::future::or(
        async {
            stream.write_all(bytes).await?;
            stream.flush().await
        },
        async {
            smol::Timer::after(t).await;
            Err(io::Error::new(io::ErrorKind::TimedOut, "write timeout"))
        },
    )
    .await
}

async fn flush(stream: &mut Stream, out: &mut Vec<u8>, t: Duration) -> io::Result<()> {
    if out.is_empty() {
        return Ok(());
    }
    let r = write_timeout(stream, out, t).await;
    out.clear();
    r
}

/// A connection being served: the socket, the session, and what the
/// current message is being written into.
struct Conn {
    shared: Arc<Shared>,
    listener: Arc<ListenerCtx>,
    stream: Stream,
    ip: IpAddr,
    client: String,
    trusted: bool,
    s: Session,
    out: Vec<u8>,
    buf: Vec<u8>,
    msg: Msg,
    /// Body bytes not yet handed to the sink (written in large pieces,
    /// off the executor).
    pending: Vec<u8>,
    size: u64,
    /// MAIL's SIZE= (0: not given), for the quota check at RCPT.
    mail_size: u64,
    /// Header and body rules at work on the message being received.
    scan: Option<Scanner>,
    /// What the rules had decided when the sink was opened.
    opened_with: Option<Verdict>,
}

/// The message being received. Its sink (a queue file, or the Maildir
/// copies) is opened with the first large write or at the end of data,
/// in the same trip to a blocking thread: a small message costs one trip.
enum Msg {
    None,
    /// DATA said 354; nothing is on disk yet.
    Waiting(Box<QueueEnvelope>),
    Open(Sink),
    /// The sink could not be opened: 452 at the end of data.
    Failed(String),
}

/// Go on with the session, or close it.
enum Flow {
    Go,
    Stop,
}

pub async fn handle(
    shared: Arc<Shared>,
    listener: Arc<ListenerCtx>,
    tcp: TcpStream,
    peer: SocketAddr,
) {
    let ip = canonical(peer.ip());
    let client = log::client("unknown", ip);
    log::connect(&client);
    let mut stream = Stream::Plain(tcp);
    let _slot = match shared.limits.try_acquire(ip) {
        Ok(g) => g,
        Err(hit) => return refuse(&mut stream, &listener, &client, hit).await,
    };
    let trusted =
        Client::new(ip, listener.trusted.as_ref().unwrap_or(&shared.trusted)).trusted_network;
    // XFORWARD only for trusted clients (smtpd_authorized_xforward_hosts).
    let session_cfg = if listener.session_cfg.xforward && !trusted {
        let mut c = (*listener.session_cfg).clone();
        c.xforward = false;
        Arc::new(c)
    } else {
        listener.session_cfg.clone()
    };
    let s = Session::new(
        session_cfg,
        Peer {
            ip,
            port: peer.port(),
            name: "unknown".into(),
            uid: None,
        },
        now_secs(),
    );
    let mut c = Conn::new(trusted, shared, listener, stream, ip, client, s);
    if c.listener.implicit_tls && !c.start_tls().await {
        return;
    }
    while let Flow::Go = c.step().await {}
    c.discard().await;
    let _ = c.stream.close().await;
    log::disconnect(&c.client, c.s.stats());
}

/// A local submission (sendmail) over the submission socket, or a file
/// of the drop directory handed over by pickup: `uid` submitted it.
pub async fn handle_local(
    shared: Arc<Shared>,
    listener: Arc<ListenerCtx>,
    stream: smol::net::unix::UnixStream,
    uid: u32,
) {
    let ip = IpAddr::from([127, 0, 0, 1]);
    let client = format!("local (uid={uid})");
    let s = Session::new(
        listener.session_cfg.clone(),
        Peer {
            ip,
            port: 0,
            name: "localhost".into(),
            uid: Some(uid),
        },
        now_secs(),
    );
    let mut c = Conn::new(true, shared, listener, Stream::Local(stream), ip, client, s);
    while let Flow::Go = c.step().await {}
    c.discard().await;
    let _ = c.stream.close().await;
}

impl Conn {
    fn new(
        trusted: bool,
        shared: Arc<Shared>,
        listener: Arc<ListenerCtx>,
        stream: Stream,
        ip: IpAddr,
        client: String,
        s: Session,
    ) -> Conn {
        Conn {
            trusted,
            shared,
            listener,
            stream,
            ip,
            client,
            s,
            out: Vec::with_capacity(512),
            buf: vec![0u8; READ_BUF],
            msg: Msg::None,
            pending: Vec::new(),
            size: 0,
            mail_size: 0,
            scan: None,
            opened_with: None,
        }
    }
}

/// Over the connection limits: say so (unless TLS is expected) and close.
async fn refuse(stream: &mut Stream, listener: &ListenerCtx, client: &str, hit: LimitHit) {
    log::too_many_connections(client, hit == LimitHit::PerClient);
    let r = match hit {
        LimitHit::Total => reply::TOO_MANY_CONNECTIONS,
        LimitHit::PerClient => reply::TOO_MANY_CONNECTIONS_FROM_YOU,
    };
    // A TLS client would read a plaintext reply as garbage: just close.
    if !listener.implicit_tls {
        let _ = write_timeout(stream, &r.to_wire(), Duration::from_secs(10)).await;
    }
}

impl Conn {
    fn write_t(&self) -> Duration {
        self.listener.session_cfg.command_timeout
    }

    async fn flush(&mut self) -> bool {
        let t = self.write_t();
        flush(&mut self.stream, &mut self.out, t).await.is_ok()
    }

    /// One step of the session, dispatched.
    async fn step(&mut self) -> Flow {
        match self.s.step(now_secs()) {
            Step::Reply {
                reply,
                delay,
                rejected,
            } => self.reply(reply, delay, rejected).await,
            Step::Ask(q) => {
                self.answer(q).await;
                Flow::Go
            }
            Step::Body(bytes) => {
                self.body(bytes).await;
                Flow::Go
            }
            Step::Discard => {
                self.discard().await;
                Flow::Go
            }
            Step::StartTls => self.starttls().await,
            Step::NeedInput => self.read().await,
            Step::Close => {
                self.flush().await;
                Flow::Stop
            }
        }
    }

    async fn reply(&mut self, reply: Reply, delay: Duration, rejected: Option<Rejected>) -> Flow {
        if !delay.is_zero() {
            if !self.flush().await {
                return Flow::Stop;
            }
            smol::Timer::after(delay).await;
        }
        if let Some(r) = rejected {
            log::reject(&log::RejectInfo {
                queue_id: None,
                verb: r.verb,
                client: &self.client,
                reply: &reply,
                from: self.s.sender().map(|f| f.to_string()),
                to: r.address.as_deref(),
                proto: &self.s.protocol(),
                helo: self.s.helo(),
            });
        }
        reply.render_into(&mut self.out);
        if self.out.len() >= OUT_HIGH_WATER && !self.flush().await {
            return Flow::Stop;
        }
        Flow::Go
    }

    /// Answers the session's question.
    async fn answer(&mut self, q: Question) {
        let a = match q {
            // statvfs, at most every 200 ms while far from the reserve.
            Question::Mail { size } => {
                self.mail_size = size;
                Answer::Mail(match self.shared.intake.room_for_mail(size) {
                    true => Ok(()),
                    false => Err(reply::INSUFFICIENT_STORAGE),
                })
            }
            // The filter's way back: trusted clients only; the recipients
            // were checked on the first pass.
            // Local submissions take every recipient; what cannot be
            // delivered bounces to the local sender.
            Question::Recipient(_) if self.listener.local => Answer::Recipient(Ok(())),
            Question::Recipient(addr) if self.listener.reinject => {
                Answer::Recipient(match self.trusted {
                    true => Ok(()),
                    false => Err(reply::reinject_denied(&addr.to_string())),
                })
            }
            Question::Recipient(addr) => {
                let verdict = self.recipient_verdict(addr.clone()).await;
                let verdict = match verdict {
                    Ok(()) => self.quota_verdict(addr).await,
                    e => e,
                };
                Answer::Recipient(verdict)
            }
            Question::Verify(addr) => Answer::Recipient(self.recipient_verdict(addr).await),
            Question::Authenticate {
                mechanism,
                credentials,
            } => {
                let secured = self.s.tls().is_some();
                let shared = &self.shared;
                Answer::Auth(
                    authenticate(
                        shared,
                        self.ip,
                        &self.client,
                        mechanism,
                        credentials,
                        secured,
                    )
                    .await,
                )
            }
            Question::StartData => Answer::DataStart(self.start_data()),
            Question::Commit => Answer::Commit(self.commit().await),
        };
        self.s.answer(a);
    }

    async fn recipient_verdict(
        &self,
        addr: crate::smtp::address::Address,
    ) -> Result<(), reply::Reply> {
        let dir = self.shared.directory.clone();
        let who = Client {
            trusted_network: self.trusted,
            authenticated: self.s.auth_user().is_some(),
        };
        match policy::check_recipient_cached(&dir, &who, &addr) {
            Some(v) => v,
            None => crate::pool::unblock(move || policy::check_recipient(&dir, &who, &addr)).await,
        }
    }

    /// A single local mailbox with a quota it has already reached (or
    /// that MAIL's SIZE= would pass): refused now rather than bounced.
    async fn quota_verdict(&self, addr: crate::smtp::address::Address) -> Result<(), reply::Reply> {
        let intake = self.shared.intake.clone();
        let size = self.mail_size;
        if !intake.has_quota(&addr) {
            return Ok(());
        }
        crate::pool::unblock(move || intake.quota_at_rcpt(&addr, size)).await
    }

    async fn starttls(&mut self) -> Flow {
        if !self.flush().await {
            return Flow::Stop;
        }
        if self.s.discarded_after_starttls() > 0 {
            log::warning(&format!(
                "{}: discarded {} bytes pipelined after STARTTLS (they are never executed)",
                self.client,
                self.s.discarded_after_starttls()
            ));
        }
        if self.start_tls().await {
            Flow::Go
        } else {
            Flow::Stop
        }
    }

    /// The handshake; false (after a log line) if it failed.
    async fn start_tls(&mut self) -> bool {
        match start_tls(&self.shared, &mut self.stream, &self.client).await {
            Some(info) => {
                self.s.tls_started(info);
                true
            }
            None => false,
        }
    }

    async fn read(&mut self) -> Flow {
        if !self.flush().await {
            return Flow::Stop;
        }
        let t = self.s.idle_timeout();
        let stream = &mut self.stream;
        let buf = &mut self.buf;
        let read = smol::future::or(async { Some(stream.read(buf).await) }, async {
            smol::Timer::after(t).await;
            None
        })
        .await;
        match read {
            Some(Ok(0)) | Some(Err(_)) => Flow::Stop,
            Some(Ok(n)) => {
                self.s.feed(&self.buf[..n]);
                Flow::Go
            }
            None => {
                log::timeout(&self.client, self.s.in_data());
                let r = self.s.timeout();
                let _ = write_timeout(&mut self.stream, &r.to_wire(), Duration::from_secs(5)).await;
                Flow::Stop
            }
        }
    }
}

/// The handshake; `None` (after a log line) if it failed.
async fn start_tls(
    shared: &Shared,
    stream: &mut Stream,
    client: &str,
) -> Option<crate::smtp::session::TlsInfo> {
    let Some(tls) = &shared.tls else {
        log::error("TLS requested but no TLS configuration is loaded");
        return None;
    };
    match stream.start_tls(tls.get(), shared.handshake_timeout).await {
        Ok(info) => Some(info),
        Err(e) => {
            log::warning(&format!("{client}: TLS handshake failed: {e}"));
            None
        }
    }
}

/// Checks a login, with the per-address limiter in front and the failure
/// delay behind. Blocking work (hashing, sockets) runs off the executor.
async fn authenticate(
    shared: &Shared,
    ip: IpAddr,
    client: &str,
    mechanism: Mechanism,
    creds: Credentials,
    secured: bool,
) -> Result<String, AuthFailure> {
    let Some(backend) = shared.auth.clone() else {
        return Err(AuthFailure::Temporary);
    };
    if let Some(delay) = shared.limiter.throttled(ip, Instant::now()) {
        log::auth_throttled(client, mechanism.name());
        smol::Timer::after(delay).await;
        return Err(AuthFailure::Throttled);
    }
    let user = creds.authcid.clone();
    let started = Instant::now();
    let r = crate::pool::unblock(move || backend.check(&creds, ip, secured)).await;
    match &r {
        Ok(name) => log::auth_ok(client, mechanism.name(), name),
        Err(AuthFailure::Invalid) => {
            log::auth_failed(client, mechanism.name(), &user);
            // The answer comes `delay` after the question, however long the
            // check took: whether the name exists, or how its password is
            // hashed, does not show in the timing (unless hashing takes
            // longer than the delay).
            let delay = shared.limiter.failed(ip, Instant::now());
            smol::Timer::at(started + delay).await;
        }
        Err(_) => log::auth_tempfail(client, mechanism.name()),
    }
    r
}
