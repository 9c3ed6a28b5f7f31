//! The SMTP server session as a pure state machine (RFC 5321, with
//! PIPELINING RFC 2920, SIZE RFC 1870, 8BITMIME RFC 6152,
//! ENHANCEDSTATUSCODES RFC 2034 and SMTPUTF8 RFC 6531).
//!
//! Bytes go in with [`Session::feed`]; [`Session::step`] hands out what to do
//! next: send a reply, answer a question (is this recipient ours? open a
//! spool file, make the message durable), store body bytes, read more, or
//! close. No sockets, files or clock: the driver passes the time in, which
//! is what makes this fuzzable and testable line by line.
//!
//! Line discipline: a command line ends at LF; it must be CRLF, hold no
//! other CR, no NUL, and fit the command line limit, or the whole line is
//! refused and the session stays in step at the next line.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use super::address::{self, Address, PathError, ReversePath};
use super::command::{self, Command, Verb};
use super::data::{DataDecoder, DataError};
use super::received;
use super::reply::{self, Esc, Reply};

/// Body bytes are handed out in chunks of about this size.
const BODY_CHUNK: usize = 64 * 1024;

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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pending {
    None,
    Recipient,
    Verify,
    DataStart,
    Commit,
}

struct Transaction {
    sender: ReversePath,
    recipients: Vec<Address>,
    /// RCPT commands tried, so DATA can tell "none valid" from "none sent".
    rcpt_attempts: u32,
    smtputf8: bool,
    body_8bit: bool,
}

/// Per-command counters for the disconnect log line (`ehlo=1 mail=1 ...`).
#[derive(Default, Clone, Debug)]
pub struct Stats {
    /// (verb, ok, total) in first-use order.
    pub counts: Vec<(&'static str, u32, u32)>,
}

impl Stats {
    fn count(&mut self, verb: &'static str, ok: bool) {
        match self.counts.iter_mut().find(|(v, _, _)| *v == verb) {
            Some(c) => {
                c.1 += ok as u32;
                c.2 += 1;
            }
            None => self.counts.push((verb, ok as u32, 1)),
        }
    }
}

pub struct Session {
    cfg: Arc<SessionConfig>,
    peer: Peer,
    now: i64,
    inbuf: Vec<u8>,
    pos: usize,
    steps: VecDeque<Step>,
    helo: Option<String>,
    esmtp: bool,
    txn: Option<Transaction>,
    pending: Pending,
    pending_addr: Option<Address>,
    data: Option<DataDecoder>,
    errors: u32,
    /// Discarding the rest of an over-long command line.
    skipping_line: bool,
    closed: bool,
    stats: Stats,
    /// The verb of the command being answered, for stats.
    current_verb: &'static str,
}

impl Session {
    pub fn new(cfg: Arc<SessionConfig>, peer: Peer, now: i64) -> Session {
        let mut s = Session {
            peer,
            now,
            inbuf: Vec::new(),
            pos: 0,
            steps: VecDeque::new(),
            helo: None,
            esmtp: false,
            txn: None,
            pending: Pending::None,
            pending_addr: None,
            data: None,
            errors: 0,
            skipping_line: false,
            closed: false,
            stats: Stats::default(),
            current_verb: "",
            cfg,
        };
        let greeting = reply::greeting(&s.cfg.hostname);
        s.steps.push_back(Step::Reply {
            reply: greeting,
            delay: Duration::ZERO,
            rejected: None,
        });
        s
    }

    pub fn feed(&mut self, bytes: &[u8]) {
        if self.pos > 0 && (self.pos == self.inbuf.len() || self.pos > 8192) {
            self.inbuf.drain(..self.pos);
            self.pos = 0;
        }
        self.inbuf.extend_from_slice(bytes);
    }

    /// Bytes received but not yet consumed (pipelined input).
    pub fn buffered(&self) -> usize {
        self.inbuf.len() - self.pos
    }

    pub fn peer(&self) -> &Peer {
        &self.peer
    }

    pub fn helo(&self) -> Option<&str> {
        self.helo.as_deref()
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    pub fn in_data(&self) -> bool {
        self.data.is_some()
    }

    /// How long to wait for the client before [`Session::timeout`].
    pub fn idle_timeout(&self) -> Duration {
        if self.data.is_some() {
            self.cfg.data_timeout
        } else {
            self.cfg.command_timeout
        }
    }

    /// The client was silent too long: the reply to send before closing.
    pub fn timeout(&mut self) -> Reply {
        self.closed = true;
        reply::TIMEOUT
    }

    pub fn protocol(&self) -> String {
        let utf8 = self.txn.as_ref().is_some_and(|t| t.smtputf8);
        received::protocol(self.esmtp, false, false, utf8)
    }

    /// The envelope of the transaction in progress.
    pub fn envelope(&self) -> Option<Envelope> {
        let t = self.txn.as_ref()?;
        Some(Envelope {
            sender: t.sender.clone(),
            recipients: t.recipients.clone(),
            helo: self.helo.clone().unwrap_or_default(),
            protocol: self.protocol(),
            smtputf8: t.smtputf8,
            body_8bit: t.body_8bit,
        })
    }

    pub fn sender(&self) -> Option<&ReversePath> {
        self.txn.as_ref().map(|t| &t.sender)
    }

    pub fn step(&mut self, now: i64) -> Step {
        self.now = now;
        loop {
            if let Some(s) = self.steps.pop_front() {
                return s;
            }
            if self.closed {
                return Step::Close;
            }
            if self.pending != Pending::None {
                // The driver must answer before anything else happens.
                return Step::NeedInput;
            }
            if self.data.is_some() {
                if !self.run_data() {
                    return Step::NeedInput;
                }
                continue;
            }
            match self.next_line() {
                Some(line) => self.handle_line(line),
                None => return Step::NeedInput,
            }
        }
    }

    pub fn answer(&mut self, a: Answer) {
        let pending = std::mem::replace(&mut self.pending, Pending::None);
        match (pending, a) {
            (Pending::Recipient, Answer::Recipient(r)) => {
                let addr = self.pending_addr.take().expect("recipient pending");
                match r {
                    Ok(()) => {
                        let t = self.txn.as_mut().expect("transaction");
                        if !t.recipients.contains(&addr) {
                            t.recipients.push(addr);
                        }
                        self.ok(reply::RCPT_OK);
                    }
                    Err(reply) => self.reject(reply, Some(addr.to_string())),
                }
            }
            (Pending::Verify, Answer::Recipient(r)) => {
                let addr = self.pending_addr.take().expect("verify pending");
                match r {
                    Ok(()) => self.ok(Reply::new(250, Esc(2, 1, 5), format!("<{addr}>"))),
                    Err(reply) => self.reject(reply, Some(addr.to_string())),
                }
            }
            (Pending::DataStart, Answer::DataStart(r)) => match r {
                Ok(queue_id) => {
                    // Not counted: the DATA command is counted once, at its end.
                    self.push_reply(reply::START_DATA, Duration::ZERO, None);
                    let header = self.received_header(&queue_id);
                    self.steps.push_back(Step::Body(header.into_bytes()));
                    self.data = Some(DataDecoder::new(
                        self.cfg.max_message_size,
                        self.cfg.text_line_limit,
                    ));
                }
                Err(reply) => self.reject(reply, None),
            },
            (Pending::Commit, Answer::Commit(r)) => {
                self.txn = None;
                match r {
                    Ok(id) => self.ok(reply::queued(&id)),
                    Err(reply) => self.reject(reply, None),
                }
            }
            (p, a) => panic!("answer {a:?} does not match question {p:?}"),
        }
    }

    fn received_header(&self, queue_id: &str) -> String {
        let t = self.txn.as_ref().expect("transaction");
        let single = (t.recipients.len() == 1).then(|| t.recipients[0].to_string());
        let protocol = self.protocol();
        received::header(&received::TraceInfo {
            helo: self.helo.as_deref().unwrap_or(""),
            client_name: &self.peer.name,
            client_ip: self.peer.ip,
            hostname: &self.cfg.hostname,
            protocol: &protocol,
            queue_id,
            single_recipient: single.as_deref(),
            comment: None,
            unix_time: self.now,
        })
    }

    /// Feeds buffered input to the DATA decoder. Returns false when it needs
    /// more input.
    fn run_data(&mut self) -> bool {
        let d = self.data.as_mut().expect("data phase");
        let used = d.feed(&self.inbuf[self.pos..]);
        self.pos += used;
        if d.pending_output() >= BODY_CHUNK || (d.is_done() && d.pending_output() > 0) {
            let chunk = d.take_output();
            self.steps.push_back(Step::Body(chunk));
        }
        if !d.is_done() {
            return !self.steps.is_empty();
        }
        let d = self.data.take().expect("data phase");
        self.current_verb = "data";
        match d.error() {
            None => {
                self.pending = Pending::Commit;
                self.steps.push_back(Step::Ask(Question::Commit));
            }
            Some(e) => {
                self.steps.push_back(Step::Discard);
                self.txn = None;
                let r = match e {
                    DataError::BareLf => reply::BARE_LF_IN_DATA,
                    DataError::BareCr => reply::BARE_CR_IN_DATA,
                    DataError::LineTooLong => reply::TEXT_LINE_TOO_LONG,
                    DataError::TooBig => reply::size_limit(self.cfg.max_message_size),
                };
                self.reject(r, None);
            }
        }
        true
    }

    /// The next complete command line, or a refusal queued for a bad one.
    fn next_line(&mut self) -> Option<Result<String, Reply>> {
        let rest = &self.inbuf[self.pos..];
        let Some(lf) = rest.iter().position(|&c| c == b'\n') else {
            if rest.len() > self.cfg.command_line_limit {
                // Too long already: drop what we have, refuse at its end.
                self.skipping_line = true;
                self.pos = self.inbuf.len();
            }
            return None;
        };
        let raw = &rest[..lf];
        self.pos += lf + 1;
        if std::mem::take(&mut self.skipping_line) {
            return Some(Err(reply::LINE_TOO_LONG));
        }
        let Some(line) = raw.strip_suffix(b"\r") else {
            return Some(Err(reply::BARE_LF_IN_COMMAND));
        };
        if line.len() + 2 > self.cfg.command_line_limit {
            return Some(Err(reply::LINE_TOO_LONG));
        }
        if line.contains(&b'\r') {
            return Some(Err(reply::BARE_CR_IN_COMMAND));
        }
        if line.contains(&0) {
            return Some(Err(reply::NUL_IN_COMMAND));
        }
        match std::str::from_utf8(line) {
            Ok(s) => Some(Ok(s.to_string())),
            Err(_) => Some(Err(reply::UNKNOWN_COMMAND)),
        }
    }

    fn handle_line(&mut self, line: Result<String, Reply>) {
        if self.errors >= self.cfg.hard_error_limit {
            self.closed = true;
            self.push_reply(reply::TOO_MANY_ERRORS, Duration::ZERO, None);
            return;
        }
        let line = match line {
            Ok(l) => l,
            Err(r) => {
                self.current_verb = "unknown";
                self.reject(r, None);
                return;
            }
        };
        match command::parse(&line) {
            Command::Helo(name) => self.hello(name, false),
            Command::Ehlo(name) => self.hello(name, true),
            Command::Mail(arg) => self.mail(arg),
            Command::Rcpt(arg) => self.rcpt(arg),
            Command::Data => self.data_cmd(),
            Command::Rset => {
                self.current_verb = "rset";
                self.txn = None;
                self.ok(reply::RSET_OK);
            }
            Command::Noop => {
                self.current_verb = "noop";
                self.ok(reply::NOOP_OK);
            }
            Command::Quit => {
                self.current_verb = "quit";
                self.ok(reply::BYE);
                self.closed = true;
            }
            Command::Vrfy(arg) => self.vrfy(arg),
            Command::Expn(_) => {
                self.current_verb = "expn";
                self.reject(reply::NOT_IMPLEMENTED_EXPN, None);
            }
            Command::Help => {
                self.current_verb = "help";
                self.ok(reply::HELP);
            }
            Command::BadSyntax(verb) => {
                let (v, r) = match verb {
                    Verb::Helo => ("helo", reply::SYNTAX_HELO),
                    Verb::Ehlo => ("ehlo", reply::SYNTAX_EHLO),
                    Verb::Mail => ("mail", reply::SYNTAX_MAIL),
                    Verb::Rcpt => ("rcpt", reply::SYNTAX_RCPT),
                    Verb::Vrfy => ("vrfy", reply::SYNTAX_VRFY),
                    Verb::Data => ("data", reply::SYNTAX_NO_ARGS),
                    Verb::Rset => ("rset", reply::SYNTAX_NO_ARGS),
                    Verb::Noop => ("noop", reply::SYNTAX_NO_ARGS),
                    Verb::Quit => ("quit", reply::SYNTAX_NO_ARGS),
                };
                self.current_verb = v;
                self.reject(r, None);
            }
            Command::Unknown => {
                self.current_verb = "unknown";
                self.reject(reply::UNKNOWN_COMMAND, None);
            }
        }
    }

    fn hello(&mut self, name: &str, esmtp: bool) {
        self.current_verb = if esmtp { "ehlo" } else { "helo" };
        // RFC 5321 4.1.4: HELO/EHLO resets the transaction.
        self.txn = None;
        self.helo = Some(name.to_string());
        self.esmtp = esmtp;
        let text = if esmtp {
            let mut lines = vec![self.cfg.hostname.clone(), "PIPELINING".into()];
            lines.push(format!("SIZE {}", self.cfg.max_message_size));
            if self.cfg.vrfy_enabled {
                lines.push("VRFY".into());
            }
            lines.extend([
                "ENHANCEDSTATUSCODES".into(),
                "8BITMIME".into(),
                "SMTPUTF8".into(),
            ]);
            lines.join("\n")
        } else {
            self.cfg.hostname.clone()
        };
        self.ok(Reply::plain(250, text));
    }

    fn mail(&mut self, arg: &str) {
        self.current_verb = "mail";
        if self.cfg.helo_required && self.helo.is_none() {
            return self.reject(reply::NEED_HELO, None);
        }
        if self.txn.is_some() {
            return self.reject(reply::NESTED_MAIL, None);
        }
        let parsed = match address::parse_path(arg, true) {
            Ok(p) => p,
            Err(_) => return self.reject(reply::BAD_SENDER_SYNTAX, None),
        };
        let Some(params) = address::parse_params(parsed.params) else {
            return self.reject(reply::UNKNOWN_PARAMETER, None);
        };
        let (mut smtputf8, mut body_8bit) = (false, false);
        for p in &params {
            let kw = p.keyword.to_ascii_uppercase();
            match (kw.as_str(), p.value) {
                ("SIZE", Some(v)) if self.esmtp => match v.parse::<u64>() {
                    Ok(n) if v.len() <= 20 => {
                        if self.cfg.max_message_size > 0 && n > self.cfg.max_message_size {
                            return self.reject(reply::SIZE_EXCEEDED, None);
                        }
                    }
                    _ => return self.reject(reply::BAD_SIZE_PARAMETER, None),
                },
                ("BODY", Some(v)) if self.esmtp => match v.to_ascii_uppercase().as_str() {
                    "7BIT" => body_8bit = false,
                    "8BITMIME" => body_8bit = true,
                    _ => return self.reject(reply::BAD_BODY_PARAMETER, None),
                },
                ("SMTPUTF8", None) if self.esmtp => {
                    smtputf8 = true;
                    body_8bit = true;
                }
                _ => return self.reject(reply::UNKNOWN_PARAMETER, None),
            }
        }
        let sender = match (parsed.path, parsed.bare_local) {
            (Some(a), _) => a,
            (None, Some(local)) => Address::new(&local, &self.cfg.origin),
            (None, None) => {
                self.txn = Some(Transaction::new(ReversePath::Null, smtputf8, body_8bit));
                return self.ok(reply::SENDER_OK);
            }
        };
        if !sender.is_ascii() && !smtputf8 {
            return self.reject(reply::NEED_SMTPUTF8, Some(sender.to_string()));
        }
        self.txn = Some(Transaction::new(
            ReversePath::Address(sender),
            smtputf8,
            body_8bit,
        ));
        self.ok(reply::SENDER_OK);
    }

    fn rcpt(&mut self, arg: &str) {
        self.current_verb = "rcpt";
        let Some(t) = self.txn.as_mut() else {
            return self.reject(reply::NEED_MAIL, None);
        };
        t.rcpt_attempts += 1;
        let utf8 = t.smtputf8;
        let parsed = match address::parse_path(arg, true) {
            Ok(p) => p,
            Err(PathError::NeedsUtf8) => return self.reject(reply::NEED_SMTPUTF8, None),
            Err(_) => return self.reject(reply::BAD_RECIPIENT_SYNTAX, None),
        };
        if !parsed.params.is_empty() {
            return self.reject(reply::UNKNOWN_PARAMETER, None);
        }
        let addr = match (parsed.path, parsed.bare_local) {
            (Some(a), _) => a,
            (None, Some(local)) => Address::new(&local, &self.cfg.origin),
            (None, None) => return self.reject(reply::BAD_RECIPIENT_SYNTAX, None),
        };
        if !addr.is_ascii() && !utf8 {
            return self.reject(reply::NEED_SMTPUTF8, Some(addr.to_string()));
        }
        let t = self.txn.as_ref().expect("transaction");
        if t.recipients.len() >= self.cfg.recipient_limit && !t.recipients.contains(&addr) {
            return self.reject(reply::TOO_MANY_RECIPIENTS, Some(addr.to_string()));
        }
        self.pending = Pending::Recipient;
        self.pending_addr = Some(addr.clone());
        self.steps.push_back(Step::Ask(Question::Recipient(addr)));
    }

    fn data_cmd(&mut self) {
        self.current_verb = "data";
        let Some(t) = self.txn.as_ref() else {
            return self.reject(reply::NEED_MAIL, None);
        };
        if t.recipients.is_empty() {
            let r = if t.rcpt_attempts > 0 {
                Reply::fixed(554, Esc(5, 5, 1), "Error: no valid recipients")
            } else {
                reply::NEED_RCPT
            };
            return self.reject(r, None);
        }
        self.pending = Pending::DataStart;
        self.steps.push_back(Step::Ask(Question::StartData));
    }

    fn vrfy(&mut self, arg: &str) {
        self.current_verb = "vrfy";
        if !self.cfg.vrfy_enabled {
            return self.ok(reply::VRFY_DISABLED);
        }
        let addr = match address::parse_path(arg, true) {
            Ok(address::ParsedPath { path: Some(a), .. }) => a,
            Ok(address::ParsedPath {
                bare_local: Some(l),
                ..
            }) => Address::new(&l, &self.cfg.origin),
            _ => return self.reject(reply::SYNTAX_VRFY, None),
        };
        self.pending = Pending::Verify;
        self.pending_addr = Some(addr.clone());
        self.steps.push_back(Step::Ask(Question::Verify(addr)));
    }

    fn ok(&mut self, r: Reply) {
        self.stats.count(self.current_verb, true);
        self.push_reply(r, Duration::ZERO, None);
    }

    /// A negative reply: counts toward the error limits, and is delayed once
    /// past the soft limit (the seed's smtpd_soft_error_limit tarpit).
    fn reject(&mut self, r: Reply, address: Option<String>) {
        self.stats.count(self.current_verb, false);
        let delay = if self.errors >= self.cfg.soft_error_limit {
            self.cfg.error_delay
        } else {
            Duration::ZERO
        };
        self.errors += 1;
        let rejected = Some(Rejected {
            verb: self.current_verb,
            address,
        });
        self.push_reply(r, delay, rejected);
    }

    fn push_reply(&mut self, reply: Reply, delay: Duration, rejected: Option<Rejected>) {
        self.steps.push_back(Step::Reply {
            reply,
            delay,
            rejected,
        });
    }
}

impl Transaction {
    fn new(sender: ReversePath, smtputf8: bool, body_8bit: bool) -> Transaction {
        Transaction {
            sender,
            recipients: Vec::new(),
            rcpt_attempts: 0,
            smtputf8,
            body_8bit,
        }
    }
}
