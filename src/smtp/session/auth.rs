//! STARTTLS (RFC 3207) and AUTH (RFC 4954) in the session.
//!
//! STARTTLS: after `220 Ready to start TLS` every byte the client sent
//! behind the STARTTLS line is thrown away (CVE-2011-0411: plaintext must
//! never be executed inside TLS), and once TLS is up the session forgets
//! everything it knew (EHLO, login, transaction), RFC 3207 4.2.
//!
//! AUTH: PLAIN and LOGIN, with or without an initial response; `*`
//! cancels. The credentials go to the driver as a question; the session
//! counts failures and closes after too many in one session.

use std::time::Duration;

use super::{Pending, Question, Sasl, Session, Step, TlsInfo};
use crate::smtp::reply::{self, Reply};
use crate::smtp::sasl::{self, Credentials, Mechanism, SaslError};
use crate::smtp::session::AuthFailure;

/// RFC 4954 4: an AUTH command or response line may be 12288 octets.
pub(super) const AUTH_LINE_LIMIT: usize = 12_288;

/// `Username:` and `Password:`, the LOGIN mechanism's challenges.
const LOGIN_USER: &str = "VXNlcm5hbWU6";
const LOGIN_PASSWORD: &str = "UGFzc3dvcmQ6";

impl Session {
    /// AUTH is offered now: configured, and inside TLS if it must be.
    pub(super) fn auth_offered(&self) -> bool {
        self.cfg.auth_enabled && (self.tls.is_some() || !self.cfg.auth_tls_only)
    }

    pub(super) fn starttls(&mut self) {
        self.current_verb = "starttls";
        if self.tls.is_some() {
            return self.reject(reply::TLS_ALREADY_ACTIVE, None);
        }
        if !self.cfg.starttls {
            return self.reject(reply::TLS_NOT_AVAILABLE, None);
        }
        if self.cfg.helo_required && self.helo.is_none() {
            return self.reject(reply::NEED_HELO, None);
        }
        self.ok(reply::READY_FOR_TLS);
        // CVE-2011-0411: nothing pipelined behind STARTTLS is ever read.
        self.discarded_after_starttls = self.inbuf.len() - self.pos;
        self.pos = self.inbuf.len();
        self.pending = Pending::Tls;
        self.steps.push_back(Step::StartTls);
    }

    /// TLS is up (after STARTTLS, or from the first byte on an implicit-TLS
    /// listener). RFC 3207 4.2: start over as if newly connected.
    pub fn tls_started(&mut self, info: TlsInfo) {
        if self.pending == Pending::Tls {
            self.pending = Pending::None;
        }
        self.tls = Some(info);
        self.helo = None;
        self.esmtp = false;
        self.txn = None;
        self.auth_user = None;
        self.sasl = None;
        self.inbuf.clear();
        self.pos = 0;
    }

    /// Plaintext bytes thrown away after STARTTLS (for the log).
    pub fn discarded_after_starttls(&self) -> usize {
        self.discarded_after_starttls
    }

    pub fn tls(&self) -> Option<&TlsInfo> {
        self.tls.as_ref()
    }

    /// The login name, once AUTH succeeded.
    pub fn auth_user(&self) -> Option<&str> {
        self.auth_user.as_deref()
    }

    pub(super) fn auth(&mut self, arg: &str) {
        self.current_verb = "auth";
        if !self.cfg.auth_enabled {
            return self.reject(reply::AUTH_NOT_ENABLED, None);
        }
        if !self.auth_offered() {
            return self.reject(reply::AUTH_NEEDS_TLS, None);
        }
        if !self.esmtp {
            return self.reject(reply::NEED_HELO, None);
        }
        if self.auth_user.is_some() {
            return self.reject(reply::AUTH_ALREADY, None);
        }
        if self.txn.is_some() {
            return self.reject(reply::AUTH_IN_TRANSACTION, None);
        }
        let mut words = arg.split(' ').filter(|w| !w.is_empty());
        let (Some(mech), initial, None) = (words.next(), words.next(), words.next()) else {
            return self.reject(reply::SYNTAX_AUTH, None);
        };
        let Some(mech) = Mechanism::parse(mech) else {
            return self.reject(reply::AUTH_UNKNOWN_MECHANISM, None);
        };
        match (mech, initial) {
            (Mechanism::Plain, Some(ir)) => match sasl::decode(ir) {
                Ok(bytes) => self.finish_auth(mech, sasl::plain(bytes)),
                Err(e) => self.sasl_error(e),
            },
            (Mechanism::Plain, None) => self.challenge(Sasl::Plain, ""),
            (Mechanism::Login, None) => self.challenge(Sasl::LoginUser, LOGIN_USER),
            (Mechanism::Login, Some(ir)) => match sasl::decode(ir) {
                Ok(user) => self.challenge(Sasl::LoginPassword(user), LOGIN_PASSWORD),
                Err(e) => self.sasl_error(e),
            },
        }
    }

    /// A `334` challenge; the next line is the client's answer.
    fn challenge(&mut self, state: Sasl, text: &'static str) {
        self.sasl = Some(state);
        self.push_reply(Reply::plain(334, text), Duration::ZERO, None);
    }

    /// One line of the client during an AUTH exchange.
    pub(super) fn sasl_response(&mut self, line: Result<String, Reply>) {
        let state = self.sasl.take().expect("in an AUTH exchange");
        let line = match line {
            Ok(l) => l,
            Err(r) => return self.reject(r, None),
        };
        if line.trim_end() == "*" {
            return self.reject(reply::AUTH_ABORTED, None);
        }
        let bytes = match sasl::decode(&line) {
            Ok(b) => b,
            Err(e) => return self.sasl_error(e),
        };
        match state {
            Sasl::Plain => self.finish_auth(Mechanism::Plain, sasl::plain(bytes)),
            Sasl::LoginUser => self.challenge(Sasl::LoginPassword(bytes), LOGIN_PASSWORD),
            Sasl::LoginPassword(user) => {
                self.finish_auth(Mechanism::Login, sasl::login(user, bytes))
            }
        }
    }

    fn sasl_error(&mut self, e: SaslError) {
        let r = match e {
            SaslError::Base64 => reply::AUTH_BAD_BASE64,
            SaslError::Malformed => reply::AUTH_MALFORMED,
        };
        self.reject(r, None);
    }

    fn finish_auth(&mut self, mechanism: Mechanism, creds: Result<Credentials, SaslError>) {
        match creds {
            Ok(credentials) => {
                self.pending = Pending::Auth;
                self.steps.push_back(Step::Ask(Question::Authenticate {
                    mechanism,
                    credentials,
                }));
            }
            Err(e) => self.sasl_error(e),
        }
    }

    pub(super) fn auth_answer(&mut self, r: Result<String, AuthFailure>) {
        self.current_verb = "auth";
        match r {
            Ok(user) => {
                self.auth_user = Some(user);
                self.ok(reply::AUTH_OK);
            }
            Err(AuthFailure::Invalid) => {
                self.auth_failures += 1;
                self.reject(reply::AUTH_INVALID, None);
                if self.auth_failures >= self.cfg.auth_session_failures {
                    self.closed = true;
                    self.push_reply(reply::AUTH_TOO_MANY_FAILURES, Duration::ZERO, None);
                }
            }
            Err(AuthFailure::Temporary) => self.reject(reply::AUTH_TEMPFAIL, None),
            Err(AuthFailure::Throttled) => self.reject(reply::AUTH_THROTTLED, None),
        }
    }
}
