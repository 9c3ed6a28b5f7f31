//! The SMTP client as a pure state machine (RFC 5321, with PIPELINING RFC
//! 2920, STARTTLS RFC 3207, AUTH RFC 4954, SIZE RFC 1870, 8BITMIME RFC
//! 6152, SMTPUTF8 RFC 6531, ENHANCEDSTATUSCODES RFC 2034, DSN RFC 3461 and
//! Postfix's XFORWARD).
//!
//! Replies go in with [`Client::feed`]; [`Client::step`] says what to do
//! next: write bytes, read (and how long to wait), do the TLS handshake,
//! write the message, or take a result. Events the machine cannot see
//! (a timeout, the server closing, the handshake's outcome) are told with
//! [`Client::timed_out`], [`Client::lost`], [`Client::tls_started`] and
//! [`Client::tls_failed`]. No sockets, files or clock: the driver does the
//! I/O and the waiting, which is what makes this testable line by line
//! (tests/client_dialogs/) and fuzzable.
//!
//! Session setup (greeting, EHLO/HELO, STARTTLS) lives here, AUTH in
//! auth.rs, one message (RSET, XFORWARD, MAIL, RCPT, DATA) in
//! transaction.rs.
//!
//! Rules kept here:
//! - A greeting other than 2xx ends the session (the caller tries the next
//!   host); EHLO answered with 5xx falls back to HELO (RFC 5321 4.1.4),
//!   any other failure ends the session.
//! - STARTTLS only when offered and the policy wants it. After its `220`,
//!   no byte may be left in the receive buffer (response injection); after
//!   the handshake everything learnt before is forgotten and EHLO is sent
//!   again (RFC 3207 4.2).
//! - AUTH (auth.rs) only inside TLS unless the configuration allows it.
//! - 421 at any point ends the session without QUIT (RFC 5321 3.8).
//! - Replies arriving when none is expected are a protocol error.

use std::collections::VecDeque;

mod auth;
pub mod ehlo;
pub mod encoder;
pub mod response;
mod transaction;
mod types;
pub mod xforward;

pub use ehlo::Capabilities;
pub use response::{Response, ResponseError};
pub use types::*;
pub use xforward::XForward;

use transaction::Txn;

/// A command sent whose reply is awaited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pending {
    Greeting,
    Ehlo,
    Helo,
    StartTls,
    AuthPlain,
    AuthLogin,
    AuthLoginUser,
    AuthLoginPassword,
    XForward,
    Rset,
    Mail,
    Rcpt(usize),
    Data,
    EndOfData,
    /// `.` after a 354 that no recipient needs (RFC 2920 3.1).
    LoneDot,
    Quit,
}

impl Pending {
    fn stage(self) -> Stage {
        match self {
            Pending::Greeting => Stage::Greeting,
            Pending::Ehlo => Stage::Ehlo,
            Pending::Helo => Stage::Helo,
            Pending::StartTls => Stage::StartTls,
            Pending::AuthPlain
            | Pending::AuthLogin
            | Pending::AuthLoginUser
            | Pending::AuthLoginPassword => Stage::Auth,
            Pending::XForward => Stage::XForward,
            Pending::Rset => Stage::Rset,
            Pending::Mail => Stage::Mail,
            Pending::Rcpt(_) => Stage::Rcpt,
            Pending::Data => Stage::Data,
            Pending::EndOfData | Pending::LoneDot => Stage::DataDone,
            Pending::Quit => Stage::Quit,
        }
    }

    /// RFC 2920 3.1: only these may be followed by more commands in a group.
    fn may_continue_group(self) -> bool {
        matches!(self, Pending::Rset | Pending::Mail | Pending::Rcpt(_))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Commands and replies are going back and forth.
    Talking,
    /// Waiting for the driver's TLS handshake.
    Tls,
    Ready,
    /// The driver is writing the message content.
    Body,
    Closed,
}

pub struct Client {
    cfg: ClientConfig,
    reader: response::ResponseReader,
    state: State,
    /// `None` until EHLO succeeds (and again after STARTTLS); default
    /// after HELO.
    caps: Option<Capabilities>,
    esmtp: bool,
    tls: Option<String>,
    authenticated: bool,
    steps: VecDeque<Step>,
    /// Commands to send, each with the reply it will get.
    todo: VecDeque<(Pending, Wire)>,
    /// Commands sent, oldest first.
    inflight: VecDeque<Pending>,
    txn: Option<Txn>,
    /// A transaction is open on the server: RSET before the next MAIL.
    dirty: bool,
    failure: Option<ConnFailure>,
}

impl Client {
    pub fn new(cfg: ClientConfig) -> Client {
        let mut inflight = VecDeque::new();
        inflight.push_back(Pending::Greeting);
        Client {
            cfg,
            reader: response::ResponseReader::new(),
            state: State::Talking,
            caps: None,
            esmtp: false,
            tls: None,
            authenticated: false,
            steps: VecDeque::new(),
            todo: VecDeque::new(),
            inflight,
            txn: None,
            dirty: false,
            failure: None,
        }
    }

    pub fn feed(&mut self, bytes: &[u8]) {
        self.reader.feed(bytes);
    }

    /// What the server announced (after EHLO; empty after HELO).
    pub fn capabilities(&self) -> Option<&Capabilities> {
        self.caps.as_ref()
    }

    pub fn esmtp(&self) -> bool {
        self.esmtp
    }

    /// The TLS version given to [`Client::tls_started`], once it was.
    pub fn tls(&self) -> Option<&str> {
        self.tls.as_deref()
    }

    pub fn authenticated(&self) -> bool {
        self.authenticated
    }

    /// Bytes received and not yet used.
    pub fn buffered(&self) -> usize {
        self.reader.buffered()
    }

    pub fn step(&mut self) -> Step {
        loop {
            if let Some(s) = self.steps.pop_front() {
                return s;
            }
            match self.state {
                State::Closed => return Step::Closed(self.failure.clone()),
                State::Ready => return Step::Ready,
                State::Tls => return Step::StartTls,
                State::Body => {
                    return Step::SendBody {
                        timeout: self.cfg.timeouts.data_xfer,
                    }
                }
                State::Talking => {}
            }
            if let Some(&p) = self.inflight.front() {
                match self.reader.next_reply() {
                    Ok(Some(r)) => {
                        self.inflight.pop_front();
                        self.handle(p, r);
                    }
                    Ok(None) => {
                        let stage = p.stage();
                        let timeout = self.timeout(stage);
                        return Step::Read { stage, timeout };
                    }
                    Err(e) => self.fail(
                        ConnFailure::Protocol {
                            stage: p.stage(),
                            problem: e.to_string(),
                        },
                        false,
                    ),
                }
            } else if !self.todo.is_empty() {
                self.send_group();
            } else {
                // Nothing sent, nothing to send: a handler forgot to move on.
                debug_assert!(false, "client stalled");
                self.fail(
                    ConnFailure::Protocol {
                        stage: Stage::Quit,
                        problem: "client stalled".into(),
                    },
                    false,
                );
            }
        }
    }

    /// The wait the last [`Step::Read`] named timed out (or a write did).
    /// Ignored once closed: a QUIT that cannot be written changes nothing.
    pub fn timed_out(&mut self) {
        if self.state == State::Closed {
            return;
        }
        let stage = self.current_stage();
        if stage == Stage::Quit {
            self.close(None);
        } else {
            self.fail(ConnFailure::Timeout { stage }, false);
        }
    }

    /// The server closed the connection, or a read or write failed.
    pub fn lost(&mut self) {
        if self.state == State::Closed {
            return;
        }
        let stage = self.current_stage();
        if stage == Stage::Quit {
            self.close(None);
        } else {
            self.fail(ConnFailure::Lost { stage }, false);
        }
    }

    /// The handshake after [`Step::StartTls`] worked; `version` is for the
    /// caller's logs (`TLSv1.3`).
    pub fn tls_started(&mut self, version: &str) {
        assert_eq!(self.state, State::Tls, "tls_started without StartTls");
        // RFC 3207 4.2: forget everything learnt in plaintext.
        self.reader.clear();
        self.caps = None;
        self.esmtp = false;
        self.tls = Some(version.to_string());
        self.state = State::Talking;
        self.queue_hello();
    }

    pub fn tls_failed(&mut self, problem: &str) {
        assert_eq!(self.state, State::Tls, "tls_failed without StartTls");
        self.fail(
            ConnFailure::TlsFailed {
                problem: problem.to_string(),
            },
            false,
        );
    }

    /// Ends a ready session politely.
    pub fn quit(&mut self) {
        assert_eq!(self.state, State::Ready, "quit when not ready");
        self.state = State::Talking;
        self.queue(Pending::Quit, b"QUIT\r\n".to_vec());
    }

    fn current_stage(&self) -> Stage {
        match self.state {
            State::Body => Stage::Body,
            State::Tls => Stage::TlsHandshake,
            _ => self.inflight.front().map_or(Stage::Quit, |p| p.stage()),
        }
    }

    fn timeout(&self, stage: Stage) -> std::time::Duration {
        let t = &self.cfg.timeouts;
        match stage {
            Stage::Greeting => t.greeting,
            Stage::Ehlo | Stage::Helo => t.helo,
            Stage::StartTls | Stage::TlsHandshake => t.starttls,
            Stage::Auth => t.auth,
            Stage::XForward => t.xforward,
            Stage::Rset => t.rset,
            Stage::Mail => t.mail,
            Stage::Rcpt => t.rcpt,
            Stage::Data => t.data,
            Stage::Body => t.data_xfer,
            Stage::DataDone => t.data_done,
            Stage::Quit => t.quit,
        }
    }

    fn queue(&mut self, p: Pending, line: Vec<u8>) {
        self.todo.push_back((p, Wire::new(line, false)));
    }

    /// Sends the next group: one command, or with PIPELINING as many as
    /// RFC 2920 3.1 allows in a row.
    fn send_group(&mut self) {
        if self.reader.buffered() > 0 {
            let stage = self.todo.front().map_or(Stage::Quit, |t| t.0.stage());
            return self.fail(
                ConnFailure::Protocol {
                    stage,
                    problem: "the server sent data nobody asked for".into(),
                },
                false,
            );
        }
        let pipelining = self.cfg.pipelining && self.caps.as_ref().is_some_and(|c| c.pipelining);
        let mut out = Vec::new();
        let mut sensitive = false;
        while let Some((p, wire)) = self.todo.pop_front() {
            out.extend_from_slice(wire.bytes());
            sensitive |= wire.is_sensitive();
            self.inflight.push_back(p);
            if !pipelining || !p.may_continue_group() {
                break;
            }
        }
        let wire = Wire::new(out, sensitive);
        self.steps.push_back(Step::Send(wire));
    }

    fn handle(&mut self, p: Pending, r: Response) {
        if r.code == 421 && p != Pending::Quit {
            let stage = p.stage();
            return self.fail(ConnFailure::Closing { stage, response: r }, false);
        }
        match p {
            Pending::Greeting => {
                if r.class() == 2 {
                    self.queue_hello();
                } else {
                    self.refused(Stage::Greeting, r);
                }
            }
            Pending::Ehlo => {
                if r.class() == 2 {
                    self.caps = Some(Capabilities::parse(&r));
                    self.esmtp = true;
                    self.after_hello();
                } else if r.class() == 5 && self.tls.is_none() {
                    let line = format!("HELO {}\r\n", self.cfg.helo_name);
                    self.queue(Pending::Helo, line.into_bytes());
                } else {
                    self.refused(Stage::Ehlo, r);
                }
            }
            Pending::Helo => {
                if r.class() == 2 {
                    self.caps = Some(Capabilities::default());
                    self.after_hello();
                } else {
                    self.refused(Stage::Helo, r);
                }
            }
            Pending::StartTls => self.starttls_reply(r),
            Pending::AuthPlain
            | Pending::AuthLogin
            | Pending::AuthLoginUser
            | Pending::AuthLoginPassword => self.auth_reply(p, r),
            Pending::Quit => self.close(None),
            Pending::XForward
            | Pending::Rset
            | Pending::Mail
            | Pending::Rcpt(_)
            | Pending::Data
            | Pending::EndOfData
            | Pending::LoneDot => self.txn_reply(p, r),
        }
    }

    fn queue_hello(&mut self) {
        let line = format!("EHLO {}\r\n", self.cfg.helo_name);
        self.queue(Pending::Ehlo, line.into_bytes());
    }

    fn after_hello(&mut self) {
        let offered = self.caps.as_ref().is_some_and(|c| c.starttls);
        if self.tls.is_none() && self.cfg.tls.wants_tls() {
            if offered {
                return self.queue(Pending::StartTls, b"STARTTLS\r\n".to_vec());
            }
            if self.cfg.tls.requires_tls() {
                return self.fail(ConnFailure::TlsRequired, true);
            }
        }
        self.auth_or_ready();
    }

    fn starttls_reply(&mut self, r: Response) {
        if r.class() == 2 {
            if self.reader.buffered() > 0 {
                // Anything behind the 220 was sent before the handshake by
                // someone who should not be trusted (nostarttls.secvuln.info).
                return self.fail(ConnFailure::Injection, false);
            }
            self.state = State::Tls;
        } else if self.cfg.tls.requires_tls() {
            self.fail(ConnFailure::TlsRefused { response: r }, true);
        } else {
            // `may`: go on in plaintext.
            self.auth_or_ready();
        }
    }

    fn ready(&mut self) {
        self.state = State::Ready;
    }

    /// A refusal leaves a working connection: say QUIT (RFC 5321 3.1, a
    /// server that greets with 554 waits for it).
    fn refused(&mut self, stage: Stage, response: Response) {
        self.fail(ConnFailure::Refused { stage, response }, true);
    }

    /// Ends the session with `f`. A message in progress is finished first:
    /// recipients without a final result become temporary failures. With
    /// `quit`, QUIT is written (its reply is not awaited).
    fn fail(&mut self, f: ConnFailure, quit: bool) {
        if let Some(txn) = self.txn.take() {
            let result = txn.abort(&f);
            self.steps.push_back(Step::Done(result));
        }
        if quit {
            self.steps
                .push_back(Step::Send(Wire::new(b"QUIT\r\n".to_vec(), false)));
        }
        self.close(Some(f));
    }

    fn close(&mut self, f: Option<ConnFailure>) {
        self.todo.clear();
        self.inflight.clear();
        self.failure = f;
        self.state = State::Closed;
    }
}

#[cfg(test)]
mod tests;
