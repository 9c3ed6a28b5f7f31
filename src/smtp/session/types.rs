//! What goes in and out of the session: its configuration, the client,
//! the envelope, the questions it asks and the steps it hands out.

use std::net::IpAddr;
use std::time::Duration;

use crate::smtp::address::{Address, ReversePath};
use crate::smtp::reply::Reply;

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
        }
    }
}

#[derive(Clone, Debug)]
pub struct Peer {
    pub ip: IpAddr,
    pub port: u16,
    /// Reverse-DNS name, or "unknown".
    pub name: String,
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
}

#[derive(Debug)]
pub enum Question {
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
}

#[derive(Debug)]
pub enum Answer {
    Recipient(Result<(), Reply>),
    DataStart(Result<String, Reply>),
    Commit(Result<String, Reply>),
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
