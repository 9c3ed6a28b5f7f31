//! One message on an established session: RSET, XFORWARD, MAIL, RCPT,
//! DATA and the content, with a result per recipient. Part of the pure
//! client (mod.rs owns the session; this file owns nothing else).
//!
//! Rules:
//! - Checked before anything is sent: SMTPUTF8 needed but not offered is a
//!   permanent 5.6.7 (RFC 6531 3.4); a message bigger than the server's
//!   SIZE is a permanent 5.3.4 (RFC 1870 6, as Postfix does); an address
//!   with a control character is refused here (5.1.7 sender, 5.1.3
//!   recipient) so no CR or LF can ever reach a command line.
//! - With PIPELINING, MAIL, every RCPT and DATA go in one write (RFC 2920
//!   3.1: only RSET, MAIL and RCPT may be followed by more in a group) and
//!   every reply is read, in order. If DATA gets 354 although no recipient
//!   was accepted, a lone `.` ends the empty message (RFC 2920 3.1).
//! - Without PIPELINING one command at a time: no RCPT after a refused
//!   MAIL, no DATA when every RCPT was refused.
//! - A refused MAIL (or XFORWARD) answers for every recipient. DATA
//!   refused, or the reply to the end of data, answers for the recipients
//!   RCPT accepted. 4xx is temporary, 5xx permanent.
//! - RSET goes before the next MAIL only when a transaction was left open
//!   on the server (MAIL accepted, no end of data): after the end of data
//!   the server has reset itself (RFC 5321 4.1.1.4).

use super::encoder::DataEncoder;
use super::{Client, ConnFailure, Pending, State, Wire};
use super::{Detail, Envelope, MessageResult, RcptResult, Response, Stage, Status, Step};
use crate::smtp::reply::Esc;

pub(super) struct Txn {
    env: Envelope,
    results: Vec<Option<RcptResult>>,
    /// Recipients RCPT accepted, waiting for the outcome of DATA.
    accepted: Vec<usize>,
    /// MAIL or XFORWARD refused: this reply answers for everyone.
    refused: Option<(Stage, Response)>,
    encoder: DataEncoder,
}

fn from_reply(stage: Stage, response: Response) -> RcptResult {
    let status = match response.class() {
        2 => Status::Delivered,
        5 => Status::Permanent,
        _ => Status::Temporary,
    };
    RcptResult {
        status,
        detail: Detail::Server { stage, response },
    }
}

fn local(status: Status, esc: Esc, text: String) -> RcptResult {
    RcptResult {
        status,
        detail: Detail::Local { esc, text },
    }
}

/// No control characters (CR, LF, NUL...) in anything we put on a line.
fn clean(s: &str) -> bool {
    !s.chars().any(|c| c.is_control())
}

/// An xtext parameter value from the caller: printable ASCII, no `=`, no
/// space (RFC 3461 4). Anything else is dropped rather than sent.
fn param_ok(v: &str) -> bool {
    !v.is_empty() && v.bytes().all(|b| (b'!'..=b'~').contains(&b) && b != b'=')
}

impl Txn {
    fn finish(self) -> MessageResult {
        let refused = self.refused;
        let recipients = self
            .results
            .into_iter()
            .map(|r| match (r, &refused) {
                (Some(r), _) => r,
                (None, Some((stage, resp))) => from_reply(*stage, resp.clone()),
                (None, None) => local(
                    Status::Temporary,
                    Esc(4, 3, 0),
                    "no reply for this recipient".into(),
                ),
            })
            .collect();
        MessageResult { recipients }
    }

    /// The session failed: what has no result yet is tried again later.
    pub(super) fn abort(mut self, f: &ConnFailure) -> MessageResult {
        if self.refused.is_none() {
            let stage = match f {
                ConnFailure::Closing { stage, .. } => *stage,
                _ => Stage::Quit,
            };
            for r in self.results.iter_mut().filter(|r| r.is_none()) {
                *r = Some(match f {
                    ConnFailure::Closing { response, .. } => RcptResult {
                        status: Status::Temporary,
                        detail: Detail::Server {
                            stage,
                            response: response.clone(),
                        },
                    },
                    _ => local(Status::Temporary, f.esc(), f.to_string()),
                });
            }
        }
        self.finish()
    }
}

impl Client {
    /// Starts sending one message; only after [`Step::Ready`].
    pub fn send(&mut self, env: Envelope) {
        assert_eq!(self.state, State::Ready, "send when not ready");
        let caps = self.caps.clone().unwrap_or_default();
        let utf8 = env.smtputf8
            || !env.recipients.iter().all(|r| r.address.is_ascii())
            || matches!(&env.sender, crate::smtp::address::ReversePath::Address(a) if !a.is_ascii());
        let n = env.recipients.len();
        let everyone = |r: RcptResult| vec![Some(r); n];
        let mut results: Vec<Option<RcptResult>> = vec![None; n];
        let sender = env.sender.to_string();
        if utf8 && !caps.smtputf8 {
            let text = "SMTPUTF8 is required, but was not offered by host".to_string();
            results = everyone(local(Status::Permanent, Esc(5, 6, 7), text));
        } else if let Some(limit) = caps.size_limit().filter(|&l| env.size > l) {
            let text = format!(
                "message size {} exceeds size limit {limit} of server",
                env.size
            );
            results = everyone(local(Status::Permanent, Esc(5, 3, 4), text));
        } else if !clean(&sender) {
            let text = "bad sender address syntax".to_string();
            results = everyone(local(Status::Permanent, Esc(5, 1, 7), text));
        } else {
            for (i, r) in env.recipients.iter().enumerate() {
                if !clean(&r.address.to_string()) {
                    let text = "bad recipient address syntax".to_string();
                    results[i] = Some(local(Status::Permanent, Esc(5, 1, 3), text));
                }
            }
        }
        let mut txn = Txn {
            env,
            results,
            accepted: Vec::new(),
            refused: None,
            encoder: DataEncoder::new(),
        };
        if txn.results.iter().all(Option::is_some) {
            self.steps.push_back(Step::Done(txn.finish()));
            return;
        }
        if self.dirty {
            self.queue(Pending::Rset, b"RSET\r\n".to_vec());
        }
        if let Some(x) = &txn.env.xforward {
            for line in x.commands(&caps.xforward) {
                self.queue(Pending::XForward, line.into_bytes());
            }
        }
        let mut mail = format!("MAIL FROM:<{sender}>");
        if caps.size.is_some() {
            mail.push_str(&format!(" SIZE={}", txn.env.size));
        }
        if txn.env.body_8bit && caps.eightbitmime {
            mail.push_str(" BODY=8BITMIME");
        }
        if utf8 {
            mail.push_str(" SMTPUTF8");
        }
        if caps.dsn {
            if let Some(ret) = txn.env.ret.as_deref().filter(|v| param_ok(v)) {
                mail.push_str(&format!(" RET={ret}"));
            }
            if let Some(id) = txn.env.envid.as_deref().filter(|v| param_ok(v)) {
                mail.push_str(&format!(" ENVID={id}"));
            }
        }
        self.queue(Pending::Mail, (mail + "\r\n").into_bytes());
        for (i, r) in txn.env.recipients.iter().enumerate() {
            if txn.results[i].is_some() {
                continue;
            }
            let mut rcpt = format!("RCPT TO:<{}>", r.address);
            if caps.dsn {
                if let Some(v) = r.notify.as_deref().filter(|v| param_ok(v)) {
                    rcpt.push_str(&format!(" NOTIFY={v}"));
                }
                if let Some(v) = r.orcpt.as_deref().filter(|v| param_ok(v)) {
                    rcpt.push_str(&format!(" ORCPT={v}"));
                }
            }
            self.queue(Pending::Rcpt(i), (rcpt + "\r\n").into_bytes());
        }
        self.queue(Pending::Data, b"DATA\r\n".to_vec());
        txn.encoder = DataEncoder::new();
        self.txn = Some(txn);
        self.state = State::Talking;
    }

    /// Encodes message content after [`Step::SendBody`]: append to `out`
    /// and write it. Any chunking of the message gives the same bytes.
    pub fn body(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        assert_eq!(self.state, State::Body, "body outside SendBody");
        let txn = self.txn.as_mut().expect("transaction");
        txn.encoder.encode(chunk, out);
    }

    /// The end of the message: appends the final line end and `.` CRLF.
    pub fn body_end(&mut self, out: &mut Vec<u8>) {
        assert_eq!(self.state, State::Body, "body_end outside SendBody");
        let txn = self.txn.as_mut().expect("transaction");
        txn.encoder.finish(out);
        self.state = State::Talking;
        self.inflight.push_back(Pending::EndOfData);
    }

    pub(super) fn txn_reply(&mut self, p: Pending, r: Response) {
        let pipelining = self.cfg.pipelining && self.caps.as_ref().is_some_and(|c| c.pipelining);
        // Only DATA may get 3xx, and DATA must not get 2xx.
        let bad = match p {
            Pending::Data => r.class() == 2,
            _ => r.class() == 3,
        };
        if bad {
            let problem = format!("unexpected reply {r}");
            return self.fail(
                ConnFailure::Protocol {
                    stage: p.stage(),
                    problem,
                },
                false,
            );
        }
        let txn = self.txn.as_mut().expect("reply inside a transaction");
        match p {
            Pending::Rset => {
                if r.class() != 2 {
                    return self.refused(Stage::Rset, r);
                }
                self.dirty = false;
            }
            Pending::XForward | Pending::Mail => {
                if r.class() == 2 {
                    self.dirty |= p == Pending::Mail;
                } else if txn.refused.is_none() {
                    txn.refused = Some((p.stage(), r));
                    // Nothing else of this message is sent; with PIPELINING
                    // what is already in flight is read and ignored.
                    self.todo.clear();
                }
            }
            Pending::Rcpt(i) => {
                if txn.refused.is_none() {
                    if r.class() == 2 {
                        txn.accepted.push(i);
                    } else {
                        txn.results[i] = Some(from_reply(Stage::Rcpt, r));
                    }
                }
                let rcpts_done = !matches!(self.inflight.front(), Some(Pending::Rcpt(_)))
                    && !matches!(self.todo.front(), Some((Pending::Rcpt(_), _)));
                if !pipelining && rcpts_done && txn.accepted.is_empty() {
                    // No DATA for nobody; the open transaction gets an RSET
                    // before the next message.
                    self.todo.clear();
                }
            }
            Pending::Data => {
                if r.class() == 3 {
                    if txn.refused.is_some() || txn.accepted.is_empty() {
                        self.inflight.push_back(Pending::LoneDot);
                        let dot = Wire::new(b".\r\n".to_vec(), false);
                        self.steps.push_back(Step::Send(dot));
                    } else {
                        self.state = State::Body;
                    }
                    return;
                }
                if txn.refused.is_none() {
                    for i in std::mem::take(&mut txn.accepted) {
                        txn.results[i] = Some(from_reply(Stage::Data, r.clone()));
                    }
                }
            }
            Pending::EndOfData => {
                self.dirty = false;
                for i in std::mem::take(&mut txn.accepted) {
                    txn.results[i] = Some(from_reply(Stage::DataDone, r.clone()));
                }
            }
            Pending::LoneDot => self.dirty = false,
            _ => unreachable!("not a transaction reply: {p:?}"),
        }
        if self.state == State::Talking && self.inflight.is_empty() && self.todo.is_empty() {
            let txn = self.txn.take().expect("transaction");
            self.steps.push_back(Step::Done(txn.finish()));
            self.state = State::Ready;
        }
    }
}
