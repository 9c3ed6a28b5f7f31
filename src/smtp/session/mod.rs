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
//! STARTTLS and AUTH live in auth.rs, the other commands in commands.rs.
//!
//! Line discipline: a command line ends at LF; it must be CRLF, hold no
//! other CR, no NUL, and fit the command line limit, or the whole line is
//! refused and the session stays in step at the next line.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

mod auth;
mod commands;
mod types;

pub use types::*;

use super::address::{Address, ReversePath};
use super::command::{self, Command, Verb};
use super::data::{DataDecoder, DataError};
use super::received;
use super::reply::{self, Esc, Reply};

/// Body bytes are handed out in chunks of about this size.
const BODY_CHUNK: usize = 64 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pending {
    None,
    Mail,
    Recipient,
    Verify,
    DataStart,
    Commit,
    Auth,
    /// STARTTLS said; waiting for the handshake.
    Tls,
}

/// Where an AUTH exchange stands (its next line is not a command).
enum Sasl {
    Plain,
    LoginUser,
    LoginPassword(Vec<u8>),
}

struct Transaction {
    sender: ReversePath,
    recipients: Vec<Address>,
    /// RCPT commands tried, so DATA can tell "none valid" from "none sent".
    rcpt_attempts: u32,
    smtputf8: bool,
    body_8bit: bool,
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
    /// The transaction MAIL opens once the driver says there is room.
    pending_txn: Option<Transaction>,
    data: Option<DataDecoder>,
    errors: u32,
    /// Discarding the rest of an over-long command line.
    skipping_line: bool,
    closed: bool,
    stats: Stats,
    /// The verb of the command being answered, for stats.
    current_verb: &'static str,
    tls: Option<TlsInfo>,
    auth_user: Option<String>,
    sasl: Option<Sasl>,
    auth_failures: u32,
    discarded_after_starttls: usize,
    /// XFORWARD attributes for the next transaction.
    forwarded: Forwarded,
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
            pending_txn: None,
            data: None,
            errors: 0,
            skipping_line: false,
            closed: false,
            stats: Stats::default(),
            current_verb: "",
            tls: None,
            auth_user: None,
            sasl: None,
            auth_failures: 0,
            discarded_after_starttls: 0,
            forwarded: Forwarded::default(),
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
        received::protocol(
            self.esmtp,
            self.tls.is_some(),
            self.auth_user.is_some(),
            utf8,
        )
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
            forwarded: (!self.forwarded.is_empty()).then(|| self.forwarded.clone()),
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
                Some(line) if self.sasl.is_some() => self.sasl_response(line),
                Some(line) => self.handle_line(line),
                None => return Step::NeedInput,
            }
        }
    }

    pub fn answer(&mut self, a: Answer) {
        let pending = std::mem::replace(&mut self.pending, Pending::None);
        match (pending, a) {
            (Pending::Mail, Answer::Mail(r)) => {
                let txn = self.pending_txn.take().expect("MAIL pending");
                match r {
                    Ok(()) => {
                        self.txn = Some(txn);
                        self.ok(reply::SENDER_OK);
                    }
                    Err(reply) => self.reject(reply, None),
                }
            }
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
                    // message_size_limit = 0: no limit (RFC 1870 "SIZE 0").
                    let max = match self.cfg.max_message_size {
                        0 => u64::MAX,
                        n => n,
                    };
                    self.data = Some(DataDecoder::new(max, self.cfg.text_line_limit));
                }
                Err(reply) => self.reject(reply, None),
            },
            (Pending::Commit, Answer::Commit(r)) => {
                self.txn = None;
                self.forwarded = Forwarded::default();
                match r {
                    Ok(id) => self.ok(reply::queued(&id)),
                    Err(reply) => self.reject(reply, None),
                }
            }
            (Pending::Auth, Answer::Auth(r)) => self.auth_answer(r),
            (p, a) => panic!("answer {a:?} does not match question {p:?}"),
        }
    }

    fn received_header(&self, queue_id: &str) -> String {
        let t = self.txn.as_ref().expect("transaction");
        let single = (t.recipients.len() == 1).then(|| t.recipients[0].to_string());
        let protocol = self.protocol();
        let tls = self
            .tls
            .as_ref()
            .map(|t| format!("using {} with cipher {}", t.version, t.cipher));
        let auth = self.auth_user.as_deref().filter(|_| self.cfg.auth_header);
        // Through a content filter: the original client (XFORWARD).
        let f = &self.forwarded;
        received::header(&received::TraceInfo {
            helo: f.helo.as_deref().or(self.helo.as_deref()).unwrap_or(""),
            client_name: f.name.as_deref().unwrap_or(&self.peer.name),
            client_ip: f.addr.unwrap_or(self.peer.ip),
            hostname: &self.cfg.hostname,
            protocol: &protocol,
            queue_id,
            single_recipient: single.as_deref(),
            tls: tls.as_deref(),
            auth,
            local_uid: self.peer.uid,
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
        // AUTH lines may be longer than commands (RFC 4954 4).
        let limit =
            if self.sasl.is_some() || (self.auth_offered() && starts_with_ci(rest, b"AUTH ")) {
                self.cfg.command_line_limit.max(auth::AUTH_LINE_LIMIT)
            } else {
                self.cfg.command_line_limit
            };
        let Some(lf) = rest.iter().position(|&c| c == b'\n') else {
            if rest.len() > limit {
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
        if line.len() + 2 > limit {
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
                self.forwarded = Forwarded::default();
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
                    Verb::StartTls => ("starttls", reply::SYNTAX_STARTTLS),
                    Verb::Auth => ("auth", reply::SYNTAX_AUTH),
                    Verb::Xforward => ("xforward", reply::XFORWARD_BAD),
                };
                self.current_verb = v;
                self.reject(r, None);
            }
            Command::StartTls => self.starttls(),
            Command::Auth(arg) => self.auth(arg),
            Command::Xforward(arg) => self.xforward(arg),
            Command::Unknown => {
                self.current_verb = "unknown";
                self.reject(reply::UNKNOWN_COMMAND, None);
            }
        }
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

fn starts_with_ci(b: &[u8], prefix: &[u8]) -> bool {
    b.len() >= prefix.len() && b[..prefix.len()].eq_ignore_ascii_case(prefix)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn session(cfg: SessionConfig) -> Session {
        let peer = Peer {
            ip: "127.0.0.1".parse().unwrap(),
            port: 4000,
            name: "unknown".into(),
            uid: None,
        };
        Session::new(Arc::new(cfg), peer, 0)
    }

    /// Runs until input is needed, answering recipients with `rcpt` and
    /// data questions with success; returns reply first lines and body.
    fn drive(
        s: &mut Session,
        input: &[u8],
        rcpt: impl Fn(&Address) -> Result<(), Reply>,
    ) -> (Vec<String>, Vec<u8>) {
        s.feed(input);
        let (mut replies, mut body) = (Vec::new(), Vec::new());
        loop {
            match s.step(0) {
                Step::Reply { reply, .. } => replies.push(reply.summary()),
                Step::Ask(Question::Mail { .. }) => s.answer(Answer::Mail(Ok(()))),
                Step::Ask(Question::Recipient(a)) => s.answer(Answer::Recipient(rcpt(&a))),
                Step::Ask(Question::Verify(_)) => s.answer(Answer::Recipient(Ok(()))),
                Step::Ask(Question::StartData) => s.answer(Answer::DataStart(Ok("QID".into()))),
                Step::Ask(Question::Commit) => s.answer(Answer::Commit(Ok("QID".into()))),
                Step::Body(b) => body.extend(b),
                Step::Discard => body.clear(),
                Step::StartTls => s.tls_started(TlsInfo {
                    version: "TLSv1.3".into(),
                    cipher: "TLS_X".into(),
                }),
                Step::Ask(Question::Authenticate { credentials, .. }) => {
                    let ok = credentials.password.expose() == b"good";
                    s.answer(Answer::Auth(if ok {
                        Ok(credentials.authcid)
                    } else {
                        Err(AuthFailure::Invalid)
                    }))
                }
                Step::NeedInput | Step::Close => return (replies, body),
            }
        }
    }

    #[test]
    fn pipelined_transaction_in_one_write() {
        let mut s = session(SessionConfig::default());
        let input = b"EHLO c.test\r\nMAIL FROM:<a@c.test>\r\nRCPT TO:<x@example.test>\r\nRCPT TO:<y@example.test>\r\nDATA\r\nSubject: s\r\n\r\n..dot\r\n.\r\nQUIT\r\n";
        let (replies, body) = drive(&mut s, input, |a| {
            if a.local == "x" {
                Ok(())
            } else {
                Err(reply::unknown_user(&a.to_string()))
            }
        });
        let codes: Vec<&str> = replies.iter().map(|r| &r[..3]).collect();
        assert_eq!(
            codes,
            ["220", "250", "250", "250", "550", "354", "250", "221"]
        );
        assert!(replies[6].contains("queued as QID"));
        let body = String::from_utf8(body).unwrap();
        assert!(body.starts_with("Received: from c.test (unknown [127.0.0.1])\n\tby localhost with ESMTP id QID\n\tfor <x@example.test>;"));
        assert!(body.ends_with("Subject: s\n\n.dot\n"));
        assert_eq!(
            s.stats().counts.iter().find(|c| c.0 == "rcpt"),
            Some(&("rcpt", 1, 2))
        );
    }

    #[test]
    fn nothing_proceeds_while_a_question_is_open() {
        let mut s = session(SessionConfig::default());
        s.feed(b"HELO c\r\nMAIL FROM:<a@c.test>\r\nRCPT TO:<x@example.test>\r\nNOOP\r\n");
        let mut asked = false;
        loop {
            match s.step(0) {
                Step::Ask(Question::Mail { size }) => {
                    assert_eq!(size, 0, "no SIZE= given");
                    // Unanswered: the RCPT behind it waits too.
                    assert!(matches!(s.step(0), Step::NeedInput));
                    s.answer(Answer::Mail(Ok(())));
                }
                Step::Ask(Question::Recipient(_)) => {
                    asked = true;
                    // Unanswered: the NOOP behind it waits.
                    assert!(matches!(s.step(0), Step::NeedInput));
                    s.answer(Answer::Recipient(Ok(())));
                }
                Step::Reply { reply, .. } if reply.code == 250 && reply.text == "Ok" && asked => {
                    break
                }
                Step::NeedInput => panic!("NOOP was never answered"),
                _ => {}
            }
        }
    }

    #[test]
    fn mail_waits_for_room_and_a_refusal_opens_no_transaction() {
        let mut s = session(SessionConfig::default());
        s.feed(b"EHLO c\r\nMAIL FROM:<a@c.test> SIZE=12345\r\nRCPT TO:<x@e.test>\r\n");
        let mut codes = Vec::new();
        loop {
            match s.step(0) {
                Step::Reply { reply, .. } => codes.push(reply.code),
                Step::Ask(Question::Mail { size }) => {
                    assert_eq!(size, 12345);
                    s.answer(Answer::Mail(Err(reply::INSUFFICIENT_STORAGE)));
                }
                Step::NeedInput => break,
                other => panic!("unexpected {other:?}"),
            }
        }
        // 452 to MAIL, then RCPT without a transaction: 503.
        assert_eq!(codes, [220, 250, 452, 503]);
    }

    #[test]
    fn hard_error_limit_closes_and_soft_limit_delays() {
        let cfg = SessionConfig {
            soft_error_limit: 1,
            hard_error_limit: 3,
            ..SessionConfig::default()
        };
        let mut s = session(cfg);
        s.feed(b"XX\r\nXX\r\nXX\r\nNOOP\r\n");
        let mut delays = Vec::new();
        let mut codes = Vec::new();
        loop {
            match s.step(0) {
                Step::Reply { reply, delay, .. } => {
                    codes.push(reply.code);
                    delays.push(delay);
                }
                Step::Close => break,
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(codes, [220, 500, 500, 500, 421]);
        assert_eq!(delays[1], Duration::ZERO);
        assert_eq!(delays[2], Duration::from_secs(1));
    }

    #[test]
    fn timeout_says_421_and_closes() {
        let mut s = session(SessionConfig::default());
        assert!(matches!(s.step(0), Step::Reply { .. }));
        assert_eq!(s.timeout().code, 421);
        assert!(matches!(s.step(0), Step::Close));
    }

    #[test]
    fn rejected_data_is_discarded_and_session_continues() {
        let mut s = session(SessionConfig::default());
        let (replies, body) = drive(
            &mut s,
            b"HELO c\r\nMAIL FROM:<>\r\nRCPT TO:<x@e.test>\r\nDATA\r\nbad\nline\r\n.\r\nNOOP\r\n",
            |_| Ok(()),
        );
        let codes: Vec<&str> = replies.iter().map(|r| &r[..3]).collect();
        assert_eq!(codes, ["220", "250", "250", "250", "354", "554", "250"]);
        assert!(body.is_empty(), "a refused message leaves nothing behind");
    }
}
