//! What goes in and out of the SMTP client: its configuration, the
//! envelope of a message to send, the steps it hands the driver and the
//! results it reports. Types only; the rules live in mod.rs and
//! transaction.rs.

use std::fmt;
use std::time::Duration;

use super::response::Response;
use super::xforward::XForward;
use crate::smtp::address::{Address, ReversePath};
use crate::smtp::reply::Esc;
use crate::smtp::sasl::Secret;

/// Whether to use STARTTLS (Postfix's smtp_tls_security_level). Certificate
/// checks are the driver's: the machine only needs to know whether TLS is
/// wanted and whether it is required.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsPolicy {
    /// Never send STARTTLS.
    None,
    /// STARTTLS when offered; plaintext otherwise.
    May,
    /// TLS required, certificate not checked.
    Encrypt,
    /// TLS required, certificate checked against the host name.
    Verify,
}

impl TlsPolicy {
    pub fn wants_tls(self) -> bool {
        self != TlsPolicy::None
    }

    pub fn requires_tls(self) -> bool {
        matches!(self, TlsPolicy::Encrypt | TlsPolicy::Verify)
    }
}

/// How long to wait for each reply; defaults are Postfix's (postconf(5)).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// smtp_helo_timeout covers the greeting too.
    pub greeting: Duration,
    pub helo: Duration,
    pub starttls: Duration,
    pub auth: Duration,
    pub xforward: Duration,
    pub mail: Duration,
    pub rcpt: Duration,
    /// The reply to DATA (smtp_data_init_timeout).
    pub data: Duration,
    /// Each write of message content (smtp_data_xfer_timeout).
    pub data_xfer: Duration,
    /// The reply to the end of data (smtp_data_done_timeout, RFC 5321
    /// 4.5.3.2.6). A content filter that scans slowly may need 1200 s.
    pub data_done: Duration,
    pub rset: Duration,
    pub quit: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        let s = Duration::from_secs;
        Timeouts {
            greeting: s(300),
            helo: s(300),
            starttls: s(300),
            auth: s(300),
            xforward: s(300),
            mail: s(300),
            rcpt: s(300),
            data: s(120),
            data_xfer: s(180),
            data_done: s(600),
            rset: s(20),
            quit: s(300),
        }
    }
}

/// A login for SMTP AUTH; the password never prints (`***`).
#[derive(Clone, Debug)]
pub struct ClientCredentials {
    pub user: String,
    pub password: Secret,
}

#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// The name sent with EHLO/HELO (Postfix's smtp_helo_name).
    pub helo_name: String,
    pub tls: TlsPolicy,
    /// Log in when the server offers AUTH PLAIN or LOGIN.
    pub credentials: Option<ClientCredentials>,
    /// Allow AUTH outside TLS (a loopback content filter, say).
    pub auth_without_tls: bool,
    /// Use PIPELINING when the server offers it.
    pub pipelining: bool,
    pub timeouts: Timeouts,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            helo_name: "localhost".into(),
            tls: TlsPolicy::May,
            credentials: None,
            auth_without_tls: false,
            pipelining: true,
            timeouts: Timeouts::default(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recipient {
    pub address: Address,
    /// RFC 3461 NOTIFY value (`SUCCESS,FAILURE`), relayed when the server
    /// offers DSN and the sender gave one.
    pub notify: Option<String>,
    /// RFC 3461 ORCPT value, already xtext (`rfc822;a+40b`).
    pub orcpt: Option<String>,
}

impl Recipient {
    pub fn new(address: Address) -> Recipient {
        Recipient {
            address,
            notify: None,
            orcpt: None,
        }
    }
}

/// One message to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    pub sender: ReversePath,
    pub recipients: Vec<Recipient>,
    /// Message size with CRLF line ends, for `SIZE=` (RFC 1870).
    pub size: u64,
    /// The body has 8-bit data: `BODY=8BITMIME` when offered (RFC 6152).
    /// When not offered it is sent as is, as most MTAs do.
    pub body_8bit: bool,
    /// The message needs SMTPUTF8 (RFC 6531); also implied by any
    /// non-ASCII address.
    pub smtputf8: bool,
    /// RFC 3461 RET and ENVID (ENVID already xtext), relayed with DSN.
    pub ret: Option<String>,
    pub envid: Option<String>,
    /// Sent when the server offers XFORWARD.
    pub xforward: Option<XForward>,
}

impl Envelope {
    pub fn new(sender: ReversePath, recipients: Vec<Address>, size: u64) -> Envelope {
        Envelope {
            sender,
            recipients: recipients.into_iter().map(Recipient::new).collect(),
            size,
            body_8bit: false,
            smtputf8: false,
            ret: None,
            envid: None,
            xforward: None,
        }
    }
}

/// The part of the conversation a reply, a timeout or a failure belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    Greeting,
    Ehlo,
    Helo,
    StartTls,
    TlsHandshake,
    Auth,
    XForward,
    Rset,
    Mail,
    Rcpt,
    Data,
    /// Writing the message content.
    Body,
    /// Waiting for the reply to the end of data.
    DataDone,
    Quit,
}

impl Stage {
    /// Postfix's wording: "in reply to RCPT TO command", "while receiving
    /// the initial server greeting".
    pub fn describe(self) -> &'static str {
        match self {
            Stage::Greeting => "while receiving the initial server greeting",
            Stage::Ehlo => "in reply to EHLO command",
            Stage::Helo => "in reply to HELO command",
            Stage::StartTls => "in reply to STARTTLS command",
            Stage::TlsHandshake => "during the TLS handshake",
            Stage::Auth => "in reply to AUTH command",
            Stage::XForward => "in reply to XFORWARD command",
            Stage::Rset => "in reply to RSET command",
            Stage::Mail => "in reply to MAIL FROM command",
            Stage::Rcpt => "in reply to RCPT TO command",
            Stage::Data => "in reply to DATA command",
            Stage::Body => "while sending message body",
            Stage::DataDone => "in reply to end of DATA command",
            Stage::Quit => "in reply to QUIT command",
        }
    }
}

/// Bytes to write. Lines that carry a password (AUTH) are marked, and
/// their `Debug` prints `***`; they are wiped when dropped.
pub struct Wire {
    bytes: Vec<u8>,
    sensitive: bool,
}

impl Wire {
    pub(super) fn new(bytes: Vec<u8>, sensitive: bool) -> Wire {
        Wire { bytes, sensitive }
    }

    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn is_sensitive(&self) -> bool {
        self.sensitive
    }
}

impl fmt::Debug for Wire {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.sensitive {
            f.write_str("Wire(***)")
        } else {
            write!(f, "Wire({:?})", String::from_utf8_lossy(&self.bytes))
        }
    }
}

impl Drop for Wire {
    fn drop(&mut self) {
        if self.sensitive {
            // Dropping a Secret wipes its bytes.
            drop(Secret::new(std::mem::take(&mut self.bytes)));
        }
    }
}

/// What the driver does next.
#[derive(Debug)]
pub enum Step {
    /// Write these bytes and flush, within the current stage's timeout.
    Send(Wire),
    /// Read from the server and [`super::Client::feed`] what came; after
    /// `timeout` without a complete reply, call [`super::Client::timed_out`].
    Read { stage: Stage, timeout: Duration },
    /// `220` to STARTTLS with nothing behind it: do the TLS handshake now,
    /// then call `tls_started` or `tls_failed`.
    StartTls,
    /// Write the message content: pass it through
    /// [`super::Client::body`], then [`super::Client::body_end`]; each
    /// write within `timeout`.
    SendBody { timeout: Duration },
    /// The session is ready: call `send` with a message, or `quit`.
    Ready,
    /// The message given to `send` is finished, one result per recipient.
    Done(MessageResult),
    /// The connection is over; close it. `Some` says what went wrong at
    /// connection level (the caller tries the next host).
    Closed(Option<ConnFailure>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Delivered,
    /// Try again later (4xx, or a connection problem).
    Temporary,
    /// Bounce (5xx, or a refusal decided here such as SIZE).
    Permanent,
}

/// Why a recipient got its status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Detail {
    /// The server's reply (DSN `Diagnostic-Code: smtp; ...`).
    Server { stage: Stage, response: Response },
    /// Decided on this side, with no server reply to quote.
    Local { esc: Esc, text: String },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RcptResult {
    pub status: Status,
    pub detail: Detail,
}

impl RcptResult {
    pub fn esc(&self) -> Esc {
        match &self.detail {
            Detail::Server { response, .. } => response.status(),
            Detail::Local { esc, .. } => *esc,
        }
    }

    /// `550 5.1.1 text (in reply to RCPT TO command)` or the local text.
    pub fn text(&self) -> String {
        match &self.detail {
            Detail::Server { stage, response } => {
                format!("{} ({})", response.diagnostic(), stage.describe())
            }
            Detail::Local { text, .. } => text.clone(),
        }
    }
}

/// One result per recipient, in the order of [`Envelope::recipients`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageResult {
    pub recipients: Vec<RcptResult>,
}

/// Connection-level failures: the session cannot go on with this host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConnFailure {
    /// A non-2xx greeting, EHLO/HELO or RSET reply (not 421).
    Refused {
        stage: Stage,
        response: Response,
    },
    /// 421 at any point (RFC 5321 3.8): the server is closing.
    Closing {
        stage: Stage,
        response: Response,
    },
    /// Something that is not a reply, or a reply that makes no sense here.
    Protocol {
        stage: Stage,
        problem: String,
    },
    /// Data after `220` to STARTTLS: a response injection attempt.
    Injection,
    /// The policy requires TLS and the server does not offer STARTTLS.
    TlsRequired,
    /// The policy requires TLS and STARTTLS was refused.
    TlsRefused {
        response: Response,
    },
    /// The TLS handshake failed (reported by the driver).
    TlsFailed {
        problem: String,
    },
    /// The server refused our login.
    AuthFailed {
        response: Response,
    },
    /// We have credentials but cannot use them here (no shared mechanism,
    /// or no TLS).
    AuthUnavailable {
        problem: String,
    },
    Timeout {
        stage: Stage,
    },
    /// The server closed the connection, or a read or write failed.
    Lost {
        stage: Stage,
    },
}

impl ConnFailure {
    pub fn response(&self) -> Option<&Response> {
        match self {
            ConnFailure::Refused { response, .. }
            | ConnFailure::Closing { response, .. }
            | ConnFailure::TlsRefused { response }
            | ConnFailure::AuthFailed { response } => Some(response),
            _ => None,
        }
    }

    /// A 5xx refusal: Postfix bounces on it when this was the last host to
    /// try; every other failure is temporary.
    pub fn is_permanent(&self) -> bool {
        matches!(self, ConnFailure::Refused { response, .. } if response.is_permanent())
    }

    /// The status for recipients this failure leaves undelivered.
    pub fn esc(&self) -> Esc {
        match self {
            ConnFailure::Refused { response, .. } | ConnFailure::Closing { response, .. } => {
                response.status()
            }
            ConnFailure::Protocol { .. } => Esc(4, 5, 0),
            ConnFailure::Injection => Esc(4, 7, 0),
            ConnFailure::TlsRequired => Esc(4, 7, 4),
            ConnFailure::TlsRefused { .. } | ConnFailure::TlsFailed { .. } => Esc(4, 7, 5),
            // Postfix's smtp_sasl_auth_soft_bounce: a login failure defers.
            ConnFailure::AuthFailed { response } => {
                let Esc(_, s, d) = response.status();
                Esc(4, s, d)
            }
            ConnFailure::AuthUnavailable { .. } => Esc(4, 7, 0),
            ConnFailure::Timeout { .. } | ConnFailure::Lost { .. } => Esc(4, 4, 2),
        }
    }
}

impl fmt::Display for ConnFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnFailure::Refused { stage, response } => {
                write!(
                    f,
                    "host refused to talk to us: {response} ({})",
                    stage.describe()
                )
            }
            ConnFailure::Closing { stage, response } => {
                write!(
                    f,
                    "host is closing the connection: {response} ({})",
                    stage.describe()
                )
            }
            ConnFailure::Protocol { stage, problem } => {
                write!(f, "protocol error {}: {problem}", stage.describe())
            }
            ConnFailure::Injection => {
                f.write_str("unexpected data after the reply to STARTTLS (response injection?)")
            }
            ConnFailure::TlsRequired => f.write_str("TLS is required, but was not offered by host"),
            ConnFailure::TlsRefused { response } => {
                write!(
                    f,
                    "TLS is required, but host refused to start TLS: {response}"
                )
            }
            ConnFailure::TlsFailed { problem } => write!(f, "TLS handshake failed: {problem}"),
            ConnFailure::AuthFailed { response } => {
                write!(f, "SASL authentication failed; server said: {response}")
            }
            ConnFailure::AuthUnavailable { problem } => {
                write!(f, "cannot authenticate to server: {problem}")
            }
            ConnFailure::Timeout { stage } => {
                write!(f, "conversation timed out {}", stage.describe())
            }
            ConnFailure::Lost { stage } => write!(f, "lost connection {}", stage.describe()),
        }
    }
}
