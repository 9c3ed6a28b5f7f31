//! The command handlers of the session: HELO/EHLO, MAIL, RCPT, DATA, VRFY.

use super::Forwarded;
use super::{Pending, Question, Session, Step, Transaction};
use crate::smtp::address::{self, Address, PathError, ReversePath};
use crate::smtp::reply::{self, Esc, Reply};

impl Session {
    pub(super) fn hello(&mut self, name: &str, esmtp: bool) {
        self.current_verb = if esmtp { "ehlo" } else { "helo" };
        // RFC 5321 4.1.4: HELO/EHLO resets the transaction.
        self.txn = None;
        self.forwarded = Forwarded::default();
        self.helo = Some(name.to_string());
        self.esmtp = esmtp;
        let text = if esmtp {
            let mut lines = vec![self.cfg.hostname.clone(), "PIPELINING".into()];
            lines.push(format!("SIZE {}", self.cfg.max_message_size));
            if self.cfg.vrfy_enabled {
                lines.push("VRFY".into());
            }
            if self.cfg.starttls && self.tls.is_none() {
                lines.push("STARTTLS".into());
            }
            if self.cfg.xforward {
                lines.push("XFORWARD NAME ADDR PORT PROTO HELO IDENT SOURCE".into());
            }
            if self.auth_offered() {
                lines.push("AUTH PLAIN LOGIN".into());
                if self.cfg.auth_broken_clients {
                    lines.push("AUTH=PLAIN LOGIN".into());
                }
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

    pub(super) fn mail(&mut self, arg: &str) {
        self.current_verb = "mail";
        if self.cfg.helo_required && self.helo.is_none() {
            return self.reject(reply::NEED_HELO, None);
        }
        if self.txn.is_some() {
            return self.reject(reply::NESTED_MAIL, None);
        }
        if self.cfg.require_auth && self.auth_user.is_none() {
            return self.reject(reply::AUTH_REQUIRED, None);
        }
        let parsed = match address::parse_path(arg, true) {
            Ok(p) => p,
            // RFC 5321 4.1.1.2: a reverse-path is required (`<>` at least).
            Err(PathError::Missing) => return self.reject(reply::SYNTAX_MAIL, None),
            Err(PathError::NoMailbox) => return self.reject(reply::SENDER_PATH_EMPTY, None),
            Err(_) => return self.reject(reply::BAD_SENDER_SYNTAX, None),
        };
        let Some(params) = address::parse_params(parsed.params) else {
            return self.reject(reply::BAD_PARAMETER_SYNTAX, None);
        };
        let (mut smtputf8, mut body_8bit, mut size) = (false, false, 0);
        for p in &params {
            let kw = p.keyword.to_ascii_uppercase();
            match (kw.as_str(), p.value) {
                ("SIZE", Some(v)) if self.esmtp => match v.parse::<u64>() {
                    Ok(n) if v.len() <= 20 => {
                        if self.cfg.max_message_size > 0 && n > self.cfg.max_message_size {
                            return self.reject(reply::SIZE_EXCEEDED, None);
                        }
                        size = n;
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
        // RFC 6531 3.4: without SMTPUTF8 the whole path must be ASCII, even
        // the parts parsing drops (a source route) or folds (U+212A → k).
        if !smtputf8 && !arg.is_ascii() {
            return self.reject(reply::NEED_SMTPUTF8, None);
        }
        let sender = match (parsed.path, parsed.bare_local) {
            (Some(a), _) => a,
            (None, Some(local)) => Address::new(&local, &self.cfg.origin),
            (None, None) => {
                let txn = Transaction::new(ReversePath::Null, smtputf8, body_8bit);
                return self.ask_room(txn, size);
            }
        };
        if !sender.is_ascii() && !smtputf8 {
            return self.reject(reply::NEED_SMTPUTF8, Some(sender.to_string()));
        }
        let txn = Transaction::new(ReversePath::Address(sender), smtputf8, body_8bit);
        self.ask_room(txn, size);
    }

    /// A good MAIL: the transaction opens once the driver says there is
    /// room for it (the free-space reserve, Postfix's queue_minfree).
    fn ask_room(&mut self, txn: Transaction, size: u64) {
        self.pending = Pending::Mail;
        self.pending_txn = Some(txn);
        self.steps.push_back(Step::Ask(Question::Mail { size }));
    }

    pub(super) fn rcpt(&mut self, arg: &str) {
        self.current_verb = "rcpt";
        let Some(t) = self.txn.as_mut() else {
            return self.reject(reply::NEED_MAIL, None);
        };
        t.rcpt_attempts += 1;
        let utf8 = t.smtputf8;
        // RFC 6531 3.4, checked on the text as sent (see `mail`).
        if !utf8 && !arg.is_ascii() {
            return self.reject(reply::NEED_SMTPUTF8, None);
        }
        let parsed = match address::parse_path(arg, true) {
            Ok(p) => p,
            Err(PathError::NeedsUtf8) => return self.reject(reply::NEED_SMTPUTF8, None),
            // RFC 5321 4.1.1.3: a forward-path is required.
            Err(PathError::Missing) => return self.reject(reply::SYNTAX_RCPT, None),
            Err(PathError::NoMailbox) => return self.reject(reply::RECIPIENT_PATH_EMPTY, None),
            Err(_) => return self.reject(reply::BAD_RECIPIENT_SYNTAX, None),
        };
        match address::parse_params(parsed.params) {
            None => return self.reject(reply::BAD_PARAMETER_SYNTAX, None),
            // No RCPT parameters are supported (no DSN yet).
            Some(p) if !p.is_empty() => return self.reject(reply::UNKNOWN_PARAMETER, None),
            Some(_) => {}
        }
        let addr = match (parsed.path, parsed.bare_local) {
            (Some(a), _) => a,
            (None, Some(local)) => Address::new(&local, &self.cfg.origin),
            // `<>`: the null path is a sender's only (RFC 5321 4.5.5).
            (None, None) => return self.reject(reply::RECIPIENT_PATH_EMPTY, None),
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

    pub(super) fn data_cmd(&mut self) {
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

    pub(super) fn vrfy(&mut self, arg: &str) {
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
}

impl Session {
    /// XFORWARD (Postfix XFORWARD_README): the original client of a
    /// message coming back from a content filter. Only where the listener
    /// allows it, only outside a transaction; values are xtext, and
    /// `[UNAVAILABLE]`/`[TEMPUNAVAIL]` mean unknown.
    pub(super) fn xforward(&mut self, arg: &str) {
        self.current_verb = "xforward";
        if !self.cfg.xforward {
            return self.reject(reply::XFORWARD_DENIED, None);
        }
        if self.txn.is_some() {
            return self.reject(reply::XFORWARD_IN_MAIL, None);
        }
        let mut f = self.forwarded.clone();
        for pair in arg.split(' ').filter(|p| !p.is_empty()) {
            let Some((k, v)) = pair.split_once('=') else {
                return self.reject(reply::XFORWARD_BAD, None);
            };
            let Some(v) = xtext_decode(v) else {
                return self.reject(reply::XFORWARD_BAD, None);
            };
            let v = (!v.is_empty() && v != "[UNAVAILABLE]" && v != "[TEMPUNAVAIL]").then_some(v);
            match k.to_ascii_uppercase().as_str() {
                "NAME" => f.name = v,
                "ADDR" => {
                    f.addr = match v {
                        None => None,
                        Some(a) => {
                            let bare = a
                                .strip_prefix("IPV6:")
                                .or(a.strip_prefix("ipv6:"))
                                .unwrap_or(&a);
                            match bare.parse() {
                                Ok(ip) => Some(ip),
                                Err(_) => return self.reject(reply::XFORWARD_BAD, None),
                            }
                        }
                    }
                }
                "PORT" => f.port = v.and_then(|p| p.parse().ok()),
                "PROTO" => f.proto = v,
                "HELO" => f.helo = v,
                "IDENT" => f.ident = v,
                "SOURCE" => f.source = v,
                _ => return self.reject(reply::XFORWARD_BAD, None),
            }
        }
        // Whatever a filter says ends up in headers and logs: printable
        // ASCII only, bounded.
        for v in [
            &mut f.name,
            &mut f.proto,
            &mut f.helo,
            &mut f.ident,
            &mut f.source,
        ]
        .into_iter()
        .flatten()
        {
            v.retain(|c| c.is_ascii_graphic());
            v.truncate(255);
        }
        self.forwarded = f;
        self.ok(reply::XFORWARD_OK);
    }
}

/// RFC 3461 xtext: `+HH` is a byte, the rest as is.
fn xtext_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'+' {
            let h = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(h, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}
