//! From what an SMTP session said to the queue's outcomes: each
//! recipient's status with the remote host, its address and its whole
//! reply (a DSN's Remote-MTA and Diagnostic-Code), and Postfix's wording
//! for log lines (`host mx.example.test[192.0.2.1] said: 550 5.1.1 ...`).

use std::net::SocketAddr;

use crate::deliver::{Outcome, Remote};
use crate::outbound::SessionFailure;
use crate::smtp::client::{ConnFailure, Detail, RcptResult, Status};
use crate::smtp::reply::Esc;

/// The remote side of an attempt.
#[derive(Clone, Debug)]
pub struct Peer {
    pub host: String,
    pub addr: SocketAddr,
    pub tls: Option<String>,
}

impl Peer {
    fn remote(&self, reply: Option<String>) -> Remote {
        Remote {
            host: self.host.clone(),
            addr: Some(self.addr),
            reply,
            tls: self.tls.clone(),
        }
    }

    /// `mx.example.test[192.0.2.1]`
    pub fn named(&self) -> String {
        format!("{}[{}]", self.host, self.addr.ip())
    }
}

/// One recipient's result from the server.
pub fn recipient(peer: &Peer, r: &RcptResult) -> Outcome {
    let (reply, text) = match &r.detail {
        Detail::Server { stage, response } => {
            let d = response.diagnostic();
            let text = match r.status {
                Status::Delivered => d.clone(),
                _ => format!("host {} said: {d} ({})", peer.named(), stage.describe()),
            };
            (Some(d), text)
        }
        Detail::Local { text, .. } => (None, text.clone()),
    };
    let o = match r.status {
        Status::Delivered => Outcome::delivered(text),
        Status::Temporary => Outcome::deferred(r.esc(), text),
        Status::Permanent => Outcome::failed(r.esc(), text),
    };
    o.with_remote(peer.remote(reply))
}

/// Did the session end (`f`) before the server answered for this
/// recipient? A dropped connection, a timeout, a garbled reply or a 421
/// leave the recipients without an answer of their own (RFC 5321 3.8:
/// 421 is the server closing, not a verdict on the mail), and the next
/// address or host may take them, as Postfix's smtp_bulk_fail keeps them
/// for a backup server. A 4xx or 5xx to RCPT or DATA is an answer.
pub fn unanswered(r: &RcptResult, f: &SessionFailure) -> bool {
    let SessionFailure::Smtp(_) = f else {
        // Unreadable content is our own problem: no other host helps.
        return false;
    };
    r.status == Status::Temporary
        && match &r.detail {
            Detail::Local { .. } => true,
            Detail::Server { response, .. } => response.code == 421,
        }
}

/// A session that failed before the message's recipients had results.
pub struct Failed {
    /// Deferred, or failed for a 5xx greeting (final if no other host is
    /// left to try).
    pub outcome: Outcome,
    /// No connection at all (refused, unreachable, timed out).
    pub connect: bool,
    /// The TLS handshake failed (a `may` session retries in plaintext).
    pub tls: bool,
}

pub fn session(peer: &Peer, f: &SessionFailure) -> Failed {
    let (esc, text, reply) = match f {
        SessionFailure::Connect(e) => (
            Esc(4, 4, 1),
            format!(
                "connect to {}:{}: {}",
                peer.named(),
                peer.addr.port(),
                strip_addr(e)
            ),
            None,
        ),
        SessionFailure::Smtp(c) => {
            let reply = c.response().map(|r| r.diagnostic());
            let text = match c {
                ConnFailure::Refused { .. } | ConnFailure::Closing { .. } => {
                    format!("host {} {c}", peer.named())
                }
                _ => format!("{c} with {}", peer.named()),
            };
            (c.esc(), text, reply)
        }
        SessionFailure::Config(e) => (
            Esc(4, 3, 5),
            format!("outbound TLS configuration: {e}"),
            None,
        ),
        SessionFailure::Content(e) => (
            Esc(4, 3, 0),
            format!("cannot read the queued message: {e}"),
            None,
        ),
    };
    let permanent = matches!(f, SessionFailure::Smtp(c) if c.is_permanent());
    let outcome = if permanent {
        Outcome::failed(esc, text)
    } else {
        Outcome::deferred(esc, text)
    };
    Failed {
        outcome: outcome.with_remote(peer.remote(reply)),
        connect: matches!(f, SessionFailure::Connect(_)),
        tls: matches!(f, SessionFailure::Smtp(ConnFailure::TlsFailed { .. })),
    }
}

/// `127.0.0.1:25: Connection refused (os error 111)` → `Connection refused`.
fn strip_addr(e: &str) -> String {
    let e = e.split_once(": ").map(|(_, rest)| rest).unwrap_or(e);
    match e.find(" (os error") {
        Some(i) => e[..i].to_string(),
        None => e.to_string(),
    }
}
