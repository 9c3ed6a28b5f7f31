//! Outbound SMTP sessions: one connection to one address of one host,
//! driving the pure client (crate::smtp::client) over a smol TcpStream,
//! with STARTTLS through futures-rustls and a timeout on every wait.
//!
//! This is a building block for the delivery pipeline (issue 8): it knows
//! nothing of the queue, of routing or of DNS. The caller picks the host
//! and address (crate::dns), hands over messages with their envelopes and
//! content, and gets one result per recipient per message, the TLS
//! version used and, when the session failed, why (to try the next
//! address or host). Result types are its own; mapping them to the
//! queue's outcomes is the pipeline's job.
//!
//! With `tls = may`, a failed handshake ends the session (TlsFailed).
//! Postfix then retries in plaintext, but only for a message older than
//! minimal_backoff_time and without SASL credentials: that decision is the
//! caller's, by running the session again with `TlsPolicy::None`.
//!
//! conn.rs holds the I/O loop, tls.rs the rustls configurations.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::RootCertStore;
use smol::io::AsyncRead;

use crate::smtp::client::{ClientConfig, ConnFailure, Envelope, MessageResult};

mod conn;
pub mod tls;

pub use conn::{deliver, Connection};

/// Postfix's smtp_connect_timeout.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Where to connect: the host name (for certificate checks and logs) and
/// one of its addresses, port included.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub host: String,
    pub addr: SocketAddr,
}

#[derive(Clone, Debug)]
pub struct Options {
    pub client: ClientConfig,
    pub connect_timeout: Duration,
    /// Trusted roots for `tls = verify` (see [`tls::roots_from_pem_file`]).
    pub roots: Option<Arc<RootCertStore>>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            client: ClientConfig::default(),
            connect_timeout: CONNECT_TIMEOUT,
            roots: None,
        }
    }
}

/// A message to send: its envelope and its content (the queued file, LF
/// or CRLF line ends; the client makes the wire form).
pub struct Outgoing {
    pub envelope: Envelope,
    pub content: Box<dyn AsyncRead + Unpin + Send>,
}

/// Why a session ended badly.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionFailure {
    /// No connection (refused, unreachable, timed out): next address.
    Connect(String),
    /// The SMTP conversation failed (see [`ConnFailure`]).
    Smtp(ConnFailure),
    /// The options cannot work (e.g. `verify` without roots).
    Config(String),
    /// The message content could not be read; the session was dropped
    /// before the end of data.
    Content(String),
}

impl std::fmt::Display for SessionFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SessionFailure::Connect(e) => write!(f, "connect: {e}"),
            SessionFailure::Smtp(e) => write!(f, "{e}"),
            SessionFailure::Config(e) => write!(f, "configuration: {e}"),
            SessionFailure::Content(e) => write!(f, "cannot read the queued message: {e}"),
        }
    }
}

/// What one session did.
#[derive(Debug)]
pub struct Report {
    pub target: Target,
    /// `TLSv1.3` when STARTTLS succeeded.
    pub tls: Option<String>,
    /// One entry per message given, in order; `None` for a message the
    /// session never got to (it failed before).
    pub results: Vec<Option<MessageResult>>,
    pub failure: Option<SessionFailure>,
}
