//! Asking one name server one question, over smol: UDP first, TCP when the
//! UDP answer is truncated (RFC 7766 5). Owns the sockets of the resolver;
//! what a reply means is wire.rs's business, which server to ask and how
//! often is mod.rs's.
//!
//! Rules:
//! - A fresh UDP socket per query, connected to the server (the kernel
//!   then drops datagrams from anyone else; the source is checked again
//!   here), a random query ID from the system's CSPRNG (RFC 5452 9.2).
//! - Datagrams that are not a reply to our question are ignored and the
//!   wait goes on until the timeout; a malformed reply from the server
//!   ends the try with an error.
//! - TCP messages carry a two-byte length (RFC 1035 4.2.2); the whole TCP
//!   exchange, connect included, gets one timeout.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ring::rand::{SecureRandom, SystemRandom};
use smol::io::{AsyncReadExt, AsyncWriteExt};
use smol::net::{TcpStream, UdpSocket};

use super::wire::{self, Qtype, Reply, WireError};

/// Why one try with one server gave nothing usable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TryError {
    Timeout,
    Io(String),
    Malformed(String),
}

impl std::fmt::Display for TryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TryError::Timeout => f.write_str("timed out"),
            TryError::Io(e) => write!(f, "{e}"),
            TryError::Malformed(e) => write!(f, "malformed reply: {e}"),
        }
    }
}

pub fn random_id(rng: &SystemRandom) -> u16 {
    let mut b = [0u8; 2];
    // The system RNG does not fail on Linux once booted; a fixed ID would
    // still be checked against the question, so degrade rather than panic.
    let _ = rng.fill(&mut b);
    u16::from_be_bytes(b)
}

async fn with_timeout<T>(
    timeout: Duration,
    f: impl std::future::Future<Output = Result<T, TryError>>,
) -> Result<T, TryError> {
    smol::future::or(f, async {
        smol::Timer::after(timeout).await;
        Err(TryError::Timeout)
    })
    .await
}

/// One question to one server: UDP, then TCP if truncated.
pub async fn ask(
    server: SocketAddr,
    name: &str,
    qtype: Qtype,
    timeout: Duration,
    rng: &SystemRandom,
) -> Result<Reply, TryError> {
    let id = random_id(rng);
    let query = wire::build_query(id, name, qtype).map_err(TryError::Malformed)?;
    let start = Instant::now();
    let reply = with_timeout(timeout, udp(server, &query, id, name, qtype)).await?;
    if !reply.truncated {
        return Ok(reply);
    }
    // The same server over TCP, with what is left of the time and at
    // least one second (a TCP connect on loopback is instant; elsewhere a
    // second is a fair floor).
    let left = timeout
        .saturating_sub(start.elapsed())
        .max(Duration::from_secs(1));
    let id = random_id(rng);
    let query = wire::build_query(id, name, qtype).map_err(TryError::Malformed)?;
    with_timeout(left, tcp(server, &query, id, name, qtype)).await
}

async fn udp(
    server: SocketAddr,
    query: &[u8],
    id: u16,
    name: &str,
    qtype: Qtype,
) -> Result<Reply, TryError> {
    let io = |e: std::io::Error| TryError::Io(e.to_string());
    let local = if server.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    };
    let sock = UdpSocket::bind(local).await.map_err(io)?;
    sock.connect(server).await.map_err(io)?;
    sock.send(query).await.map_err(io)?;
    let mut buf = vec![0u8; 4096];
    loop {
        let (n, from) = sock.recv_from(&mut buf).await.map_err(io)?;
        if from != server {
            continue;
        }
        match wire::parse_reply(id, name, qtype, &buf[..n]) {
            Ok(r) => return Ok(r),
            // Someone else's datagram (or a spoofing attempt): keep waiting.
            Err(WireError::NotOurs) => continue,
            Err(WireError::Malformed(e)) => return Err(TryError::Malformed(e)),
        }
    }
}

async fn tcp(
    server: SocketAddr,
    query: &[u8],
    id: u16,
    name: &str,
    qtype: Qtype,
) -> Result<Reply, TryError> {
    let io = |e: std::io::Error| TryError::Io(format!("TCP: {e}"));
    let mut s = TcpStream::connect(server).await.map_err(io)?;
    let len =
        u16::try_from(query.len()).map_err(|_| TryError::Malformed("query too big".into()))?;
    let mut msg = len.to_be_bytes().to_vec();
    msg.extend_from_slice(query);
    s.write_all(&msg).await.map_err(io)?;
    s.flush().await.map_err(io)?;
    let mut len = [0u8; 2];
    s.read_exact(&mut len).await.map_err(io)?;
    let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
    s.read_exact(&mut buf).await.map_err(io)?;
    match wire::parse_reply(id, name, qtype, &buf) {
        Ok(r) => Ok(r),
        Err(WireError::NotOurs) => Err(TryError::Malformed("TCP reply to another query".into())),
        Err(WireError::Malformed(e)) => Err(TryError::Malformed(e)),
    }
}
