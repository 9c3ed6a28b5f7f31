//! One SMTP connection: the thin driver around the pure session. It reads
//! the socket, feeds the session, sends its replies (buffered, flushed
//! before every read, which is what PIPELINING needs), answers its
//! questions from the policy, the directory, the auth backend and the
//! spool, runs the TLS handshake when asked, and logs.

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
use crate::log;
use crate::policy::{self, Client};
use crate::queue::envelope::QueueEnvelope;
use crate::queue::id;
use crate::queue::spool::SpoolWriter;
use crate::smtp::reply::{self, Reply};
use crate::smtp::sasl::{Credentials, Mechanism};
use crate::smtp::session::{Answer, AuthFailure, Peer, Question, Session, Step};

/// Read buffer per connection.
const READ_BUF: usize = 8 * 1024;
/// Replies are sent once this much is buffered, even mid-pipeline.
const OUT_HIGH_WATER: usize = 16 * 1024;

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
    let write_t = listener.session_cfg.command_timeout;
    let _slot = match shared.limits.try_acquire(ip) {
        Ok(g) => g,
        Err(hit) => {
            log::too_many_connections(&client, hit == LimitHit::PerClient);
            let r = match hit {
                LimitHit::Total => reply::TOO_MANY_CONNECTIONS,
                LimitHit::PerClient => reply::TOO_MANY_CONNECTIONS_FROM_YOU,
            };
            // A TLS client would read a plaintext reply as garbage: just close.
            if !listener.implicit_tls {
                let _ = write_timeout(&mut stream, &r.to_wire(), Duration::from_secs(10)).await;
            }
            return;
        }
    };
    let mut s = Session::new(
        listener.session_cfg.clone(),
        Peer {
            ip,
            port: peer.port(),
            name: "unknown".into(),
        },
        now_secs(),
    );
    if listener.implicit_tls {
        match start_tls(&shared, &mut stream, &client).await {
            Some(info) => s.tls_started(info),
            None => return,
        }
    }
    let trusted = Client::new(ip, &shared.trusted).trusted_network;
    let mut out = Vec::with_capacity(512);
    let mut buf = vec![0u8; READ_BUF];
    let mut spool: Option<SpoolWriter> = None;
    let mut size = 0u64;
    loop {
        match s.step(now_secs()) {
            Step::Reply {
                reply,
                delay,
                rejected,
            } => {
                if !delay.is_zero() {
                    if flush(&mut stream, &mut out, write_t).await.is_err() {
                        break;
                    }
                    smol::Timer::after(delay).await;
                }
                if let Some(r) = rejected {
                    log::reject(&log::RejectInfo {
                        queue_id: None,
                        verb: r.verb,
                        client: &client,
                        reply: &reply,
                        from: s.sender().map(|f| f.to_string()),
                        to: r.address.as_deref(),
                        proto: &s.protocol(),
                        helo: s.helo(),
                    });
                }
                reply.render_into(&mut out);
                if out.len() >= OUT_HIGH_WATER
                    && flush(&mut stream, &mut out, write_t).await.is_err()
                {
                    break;
                }
            }
            Step::Ask(Question::Recipient(addr) | Question::Verify(addr)) => {
                let dir = shared.directory.clone();
                let who = Client {
                    trusted_network: trusted,
                    authenticated: s.auth_user().is_some(),
                };
                let verdict =
                    smol::unblock(move || policy::check_recipient(&dir, &who, &addr)).await;
                s.answer(Answer::Recipient(verdict));
            }
            Step::Ask(Question::Authenticate {
                mechanism,
                credentials,
            }) => {
                let secured = s.tls().is_some();
                let r = authenticate(&shared, ip, &client, mechanism, credentials, secured).await;
                s.answer(Answer::Auth(r));
            }
            Step::Ask(Question::StartData) => {
                let answer = start_data(&shared, &s, ip).map(|w| {
                    let qid = w.id().to_string();
                    spool = Some(w);
                    size = 0;
                    qid
                });
                s.answer(Answer::DataStart(answer));
            }
            Step::Body(bytes) => {
                if let Some(w) = spool.as_mut() {
                    size += bytes.len() as u64;
                    w.write(&bytes);
                }
            }
            Step::Discard => {
                if let Some(w) = spool.take() {
                    shared.spool.discard(w);
                }
            }
            Step::Ask(Question::Commit) => {
                let answer = commit(&shared, &s, spool.take(), &client, size).await;
                s.answer(Answer::Commit(answer));
            }
            Step::StartTls => {
                if flush(&mut stream, &mut out, write_t).await.is_err() {
                    break;
                }
                if s.discarded_after_starttls() > 0 {
                    log::warning(&format!(
                        "{client}: discarded {} bytes pipelined after STARTTLS (they are never executed)",
                        s.discarded_after_starttls()
                    ));
                }
                match start_tls(&shared, &mut stream, &client).await {
                    Some(info) => s.tls_started(info),
                    None => break,
                }
            }
            Step::NeedInput => {
                if flush(&mut stream, &mut out, write_t).await.is_err() {
                    break;
                }
                let t = s.idle_timeout();
                let read = smol::future::or(async { Some(stream.read(&mut buf).await) }, async {
                    smol::Timer::after(t).await;
                    None
                })
                .await;
                match read {
                    Some(Ok(0)) | Some(Err(_)) => break,
                    Some(Ok(n)) => s.feed(&buf[..n]),
                    None => {
                        log::timeout(&client, s.in_data());
                        let r = s.timeout();
                        let _ =
                            write_timeout(&mut stream, &r.to_wire(), Duration::from_secs(5)).await;
                        break;
                    }
                }
            }
            Step::Close => {
                let _ = flush(&mut stream, &mut out, write_t).await;
                break;
            }
        }
    }
    if let Some(w) = spool.take() {
        shared.spool.discard(w);
    }
    let _ = stream.close().await;
    log::disconnect(&client, s.stats());
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
    let r = smol::unblock(move || backend.check(&creds, ip, secured)).await;
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

/// Opens the spool file for the message about to be received.
fn start_data(shared: &Shared, s: &Session, ip: IpAddr) -> Result<SpoolWriter, Reply> {
    let env = s.envelope().expect("DATA has a transaction");
    let (qid, micros) = id::next(now_micros());
    let qenv = QueueEnvelope {
        id: qid,
        arrival_micros: micros,
        pid: std::process::id(),
        client_ip: Some(ip),
        client_name: s.peer().name.clone(),
        helo: env.helo,
        protocol: env.protocol,
        sender: env.sender,
        recipients: env.recipients,
        smtputf8: env.smtputf8,
    };
    shared.spool.create(&qenv).map_err(|e| {
        log::queue_write_failed(&log::client(&s.peer().name, ip), &e.to_string());
        reply::INSUFFICIENT_STORAGE
    })
}

/// Makes the message durable (off the executor: fsync blocks), then hands
/// it to delivery. Only after this returns Ok may the client hear 250.
async fn commit(
    shared: &Arc<Shared>,
    s: &Session,
    w: Option<SpoolWriter>,
    client: &str,
    size: u64,
) -> Result<String, Reply> {
    let Some(w) = w else {
        return Err(reply::LOCAL_ERROR);
    };
    let qid = w.id().to_string();
    if let Some(e) = w.failed() {
        log::queue_write_failed(client, &e.to_string());
        shared.spool.discard(w);
        return Err(reply::INSUFFICIENT_STORAGE);
    }
    let spool = shared.spool.clone();
    match smol::unblock(move || spool.commit(w)).await {
        Ok(()) => {
            let env = s.envelope();
            let from = env
                .as_ref()
                .map(|e| e.sender.to_string())
                .unwrap_or_default();
            let nrcpt = env.as_ref().map(|e| e.recipients.len()).unwrap_or(0);
            log::queued(&qid, client, s.auth_user(), &from, size, nrcpt);
            shared.runner.enqueue(qid.clone());
            Ok(qid)
        }
        Err(e) => {
            log::queue_write_failed(client, &e.to_string());
            Err(reply::INSUFFICIENT_STORAGE)
        }
    }
}
