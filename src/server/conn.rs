//! One SMTP connection: the thin driver around the pure session. It reads
//! the socket, feeds the session, sends its replies (buffered, flushed
//! before every read, which is what PIPELINING needs), answers its
//! questions from the policy, the directory and the spool, and logs.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use smol::io::{AsyncReadExt, AsyncWriteExt};
use smol::net::TcpStream;

use super::limits::LimitHit;
use super::Shared;
use crate::clock::{now_micros, now_secs};
use crate::log;
use crate::policy::{self, Client};
use crate::queue::envelope::QueueEnvelope;
use crate::queue::id;
use crate::queue::spool::SpoolWriter;
use crate::smtp::reply::{self, Reply};
use crate::smtp::session::{Answer, Peer, Question, Session, Step};

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

async fn write_timeout(stream: &mut TcpStream, bytes: &[u8], t: Duration) -> io::Result<()> {
    smol::future::or(stream.write_all(bytes), async {
        smol::Timer::after(t).await;
        Err(io::Error::new(io::ErrorKind::TimedOut, "write timeout"))
    })
    .await
}

async fn flush(stream: &mut TcpStream, out: &mut Vec<u8>, t: Duration) -> io::Result<()> {
    if out.is_empty() {
        return Ok(());
    }
    let r = write_timeout(stream, out, t).await;
    out.clear();
    r
}

pub async fn handle(shared: Arc<Shared>, mut stream: TcpStream, peer: SocketAddr) {
    let ip = canonical(peer.ip());
    let client = log::client("unknown", ip);
    log::connect(&client);
    let write_t = shared.session_cfg.command_timeout;
    let _slot = match shared.limits.try_acquire(ip) {
        Ok(g) => g,
        Err(hit) => {
            log::too_many_connections(&client, hit == LimitHit::PerClient);
            let r = match hit {
                LimitHit::Total => reply::TOO_MANY_CONNECTIONS,
                LimitHit::PerClient => reply::TOO_MANY_CONNECTIONS_FROM_YOU,
            };
            let _ = write_timeout(&mut stream, &r.to_wire(), Duration::from_secs(10)).await;
            return;
        }
    };
    let policy_client = Client::new(ip, &shared.trusted);
    let mut s = Session::new(
        shared.session_cfg.clone(),
        Peer {
            ip,
            port: peer.port(),
            name: "unknown".into(),
        },
        now_secs(),
    );
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
                let verdict =
                    smol::unblock(move || policy::check_recipient(&dir, &policy_client, &addr))
                        .await;
                s.answer(Answer::Recipient(verdict));
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
    log::disconnect(&client, s.stats());
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
            log::queued(&qid, client, &from, size, nrcpt);
            shared.runner.enqueue(qid.clone());
            Ok(qid)
        }
        Err(e) => {
            log::queue_write_failed(client, &e.to_string());
            Err(reply::INSUFFICIENT_STORAGE)
        }
    }
}
