//! What goes in and out of the session: its configuration, the client,
//! the envelope, the questions it asks and the steps it hands out.

use std::net::IpAddr;
use std::time::Duration;

use crate::smtp::address::{Address, ReversePath};
use crate::smtp::reply::Reply;
use crate::smtp::sasl::{Credentials, Mechanism};

#[derive(Clone, Debug)]
pub struct SessionConfig {
    pub hostname: String,
    /// Appended to addresses without a domain (`<postmaster>`).
    pub origin: String,
    pub helo_required: bool,
    pub vrfy_enabled: bool,
    pub max_message_size: u64,
    pub command_line_limit: usize,
    pub text_line_limit: usize,
    pub recipient_limit: usize,
    pub soft_error_limit: u32,
    pub hard_error_limit: u32,
    pub error_delay: Duration,
    pub command_timeout: Duration,
    pub data_timeout: Duration,
    /// This listener offers STARTTLS (RFC 3207).
    pub starttls: bool,
    /// AUTH is available at all (a backend is configured).
    pub auth_enabled: bool,
    /// AUTH only inside TLS (smtpd_tls_auth_only).
    pub auth_tls_only: bool,
    /// Also announce `AUTH=PLAIN LOGIN` (broken_sasl_auth_clients).
    pub auth_broken_clients: bool,
    /// Name the logged-in user in Received: (smtpd_sasl_authenticated_header).
    pub auth_header: bool,
    /// Failed logins in one session before it is closed.
    pub auth_session_failures: u32,
    /// MAIL needs a logged-in client (submission).
    pub require_auth: bool,
    /// Accept XFORWARD (the content filter's reinjection listener).
    pub xforward: bool,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            hostname: "localhost".into(),
            origin: "localhost".into(),
            helo_required: true,
            vrfy_enabled: false,
            max_message_size: 10 * 1024 * 1024,
            command_line_limit: 512,
            text_line_limit: 1000,
            recipient_limit: 100,
            soft_error_limit: 10,
            hard_error_limit: 20,
            error_delay: Duration::from_secs(1),
            command_timeout: Duration::from_secs(300),
            data_timeout: Duration::from_secs(300),
            starttls: false,
            auth_enabled: false,
            auth_tls_only: true,
            auth_broken_clients: true,
            auth_header: false,
            auth_session_failures: 3,
            require_auth: false,
            xforward: false,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Peer {
    pub ip: IpAddr,
    pub port: u16,
    /// Reverse-DNS name, or "unknown".
    pub name: String,
    /// A local submission (sendmail): the submitting user's uid.
    pub uid: Option<u32>,
}

/// The original client as a content filter reports it (XFORWARD); each
/// value `None` when unavailable.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Forwarded {
    pub name: Option<String>,
    pub addr: Option<IpAddr>,
    pub port: Option<u16>,
    pub proto: Option<String>,
    pub helo: Option<String>,
    /// The message's queue ID on the first pass.
    pub ident: Option<String>,
    pub source: Option<String>,
}

impl Forwarded {
    pub fn is_empty(&self) -> bool {
        *self == Forwarded::default()
    }
}

/// What a message carries besides its bytes.
#[derive(Clone, Debug)]
pub struct Envelope {
    pub sender: ReversePath,
    pub recipients: Vec<Address>,
    pub helo: String,
    pub protocol: String,
    pub smtputf8: bool,
    pub body_8bit: bool,
    /// XFORWARD attributes given for this transaction.
    pub forwarded: Option<Forwarded>,
}

#[derive(Debug)]
pub enum Question {
    /// MAIL: is there room for a message of `size` bytes (the client's
    /// SIZE=, 0 when it gave none)? Answer with [`Answer::Mail`].
    Mail { size: u64 },
    /// May this recipient be accepted? Answer with [`Answer::Recipient`].
    Recipient(Address),
    /// VRFY (only when enabled). Answer with [`Answer::Recipient`].
    Verify(Address),
    /// DATA: open a spool file for the current envelope ([`Session::envelope`]).
    /// Answer with [`Answer::DataStart`] carrying the queue ID.
    StartData,
    /// End of data: everything handed out as [`Step::Body`] must now reach
    /// stable storage. Answer with [`Answer::Commit`].
    Commit,
    /// AUTH: are these credentials good? Answer with [`Answer::Auth`]
    /// carrying the login name to record.
    Authenticate {
        mechanism: Mechanism,
        credentials: Credentials,
    },
}

/// Why a login did not succeed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthFailure {
    /// Wrong name or password, or not allowed to log in (535 5.7.8).
    Invalid,
    /// The backend could not answer (454 4.7.0).
    Temporary,
    /// Too many failures from this client address lately (454 4.7.0).
    Throttled,
}

/// The TLS layer under the session, for Received: and the protocol name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsInfo {
    /// e.g. `TLSv1.3`
    pub version: String,
    /// e.g. `TLS13_AES_256_GCM_SHA384`
    pub cipher: String,
}

#[derive(Debug)]
pub enum Answer {
    Mail(Result<(), Reply>),
    Recipient(Result<(), Reply>),
    DataStart(Result<String, Reply>),
    Commit(Result<String, Reply>),
    Auth(Result<String, AuthFailure>),
}

/// A refused command, for the log line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejected {
    pub verb: &'static str,
    /// The address the command named, if any.
    pub address: Option<String>,
}

#[derive(Debug)]
pub enum Step {
    /// Send this reply (after waiting `delay`, the error tarpit).
    Reply {
        reply: Reply,
        delay: Duration,
        rejected: Option<Rejected>,
    },
    Ask(Question),
    /// Message bytes to append to the spool file (LF line ends).
    Body(Vec<u8>),
    /// The message being received was refused: drop the spool file.
    Discard,
    /// `220 Ready to start TLS` was queued: send it, then do the TLS
    /// handshake and call [`Session::tls_started`] (or close on failure).
    StartTls,
    NeedInput,
    Close,
}

/// Per-command counters for the disconnect log line (`ehlo=1 mail=1 ...`).
#[derive(Default, Clone, Debug)]
pub struct Stats {
    /// (verb, ok, total) in first-use order.
    pub counts: Vec<(&'static str, u32, u32)>,
}

impl Stats {
    pub(super) fn count(&mut self, verb: &'static str, ok: bool) {
        match self.counts.iter_mut().find(|(v, _, _)| *v == verb) {
            Some(c) => {
                c.1 += ok as u32;
                c.2 += 1;
            }
            None => self.counts.push((verb, ok as u32, 1)),
        }
    }
}
