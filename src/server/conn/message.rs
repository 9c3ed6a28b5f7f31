//! The message a session is receiving: its sink (queue file or Maildir
//! copies) opened with the first large write or at the end of data, the
//! header and body rules' verdict carried out, the accepted message
//! logged.

use super::*;

impl Conn {
    pub(super) async fn body(&mut self, bytes: Vec<u8>) {
        if matches!(self.msg, Msg::None) {
            return;
        }
        self.size += bytes.len() as u64;
        let bytes = match self.scan.as_mut() {
            Some(s) => s.feed(&bytes),
            None => bytes,
        };
        if self.pending.is_empty() {
            self.pending = bytes;
        } else {
            self.pending.extend_from_slice(&bytes);
        }
        if self.pending.len() >= BODY_WRITE && !matches!(self.msg, Msg::Failed(_)) {
            let intake = self.shared.intake.clone();
            let msg = std::mem::replace(&mut self.msg, Msg::None);
            let bytes = std::mem::take(&mut self.pending);
            // The header section is complete: its rules have decided.
            let how = self.scan.as_ref().map(|s| (s.verdict.clone(), s.hops));
            if matches!(msg, Msg::Waiting(_)) {
                self.opened_with = how.as_ref().map(|h| h.0.clone());
            }
            self.msg = crate::pool::unblock(move || match open(&intake, msg, how.as_ref()) {
                Msg::Open(mut sink) => {
                    intake.write(&mut sink, &bytes);
                    Msg::Open(sink)
                }
                other => other,
            })
            .await;
        }
    }

    /// Drops the message being received, if any.
    pub(super) async fn discard(&mut self) {
        self.pending.clear();
        if let Msg::Open(sink) = std::mem::replace(&mut self.msg, Msg::None) {
            let intake = self.shared.intake.clone();
            crate::pool::unblock(move || intake.discard(sink)).await;
        }
    }

    /// Gives the message about to be received its queue ID. Nothing is
    /// opened yet (see [`Msg`]).
    pub(super) fn start_data(&mut self) -> Result<String, Reply> {
        let env = self.s.envelope().expect("DATA has a transaction");
        let (qid, micros) = id::next(now_micros());
        // Back from the content filter: the original client, as told.
        let f = env.forwarded.unwrap_or_default();
        let local = self.listener.local;
        let qenv = QueueEnvelope {
            id: qid,
            arrival_micros: micros,
            pid: log::pid(),
            client_ip: if local {
                None
            } else {
                Some(f.addr.unwrap_or(self.ip))
            },
            client_name: f.name.unwrap_or_else(|| self.s.peer().name.clone()),
            helo: f.helo.unwrap_or(env.helo),
            protocol: env.protocol,
            sender: env.sender,
            recipients: env.recipients,
            smtputf8: env.smtputf8,
            handling: crate::queue::envelope::Handling {
                hops: 0,
                filter: self.listener.filter.clone(),
                ident: f.ident,
                // DKIM (dkim/): may be signed when it leaves.
                sign: crate::dkim::from_our_side(
                    self.trusted,
                    self.s.auth_user().is_some(),
                    self.listener.reinject,
                    f.source.as_deref(),
                ),
            },
        };
        let qid = qenv.id.clone();
        self.msg = Msg::Waiting(Box::new(qenv));
        self.pending.clear();
        self.size = 0;
        let rules = &self.shared.content_rules;
        self.scan = (!rules.is_empty() || local)
            .then(|| Scanner::new(rules.clone(), self.listener.reinject));
        if let (true, Some(s)) = (local, self.scan.as_mut()) {
            let now = now_secs();
            let from = match self.s.sender() {
                Some(crate::smtp::address::ReversePath::Address(a)) => a.to_string(),
                _ => format!("MAILER-DAEMON@{}", self.shared.hostname),
            };
            let id = format!(
                "{}.{qid}@{}",
                crate::timefmt::compact(now),
                self.shared.hostname
            );
            s.add_missing(&from, &crate::timefmt::rfc5322(now), &id);
            s.qualify_addresses(&self.listener.session_cfg.origin);
        }
        self.opened_with = None;
        Ok(qid)
    }

    /// Makes the message durable (off the executor: fsync blocks). Only
    /// after this returns Ok may the client hear 250. The header and body
    /// rules have the last word first: REJECT refuses, DISCARD accepts
    /// and drops, HOLD/FILTER/REDIRECT/BCC change where it goes.
    pub(super) async fn commit(&mut self) -> Result<String, Reply> {
        let msg = std::mem::replace(&mut self.msg, Msg::None);
        if matches!(msg, Msg::None) {
            return Err(reply::LOCAL_ERROR);
        }
        let intake = self.shared.intake.clone();
        let mut bytes = std::mem::take(&mut self.pending);
        let scanned = self.scan.take().map(|mut s| {
            bytes.extend(s.finish());
            s
        });
        let opened_with = self.opened_with.take();
        let qid = match &msg {
            Msg::Waiting(env) => env.id.clone(),
            Msg::Open(sink) => sink.id().to_string(),
            _ => String::new(),
        };
        if let Some(s) = &scanned {
            self.log_rules(&qid, s);
            let v = &s.verdict;
            if v.reject.is_some() || v.discard.is_some() {
                if let Msg::Open(sink) = msg {
                    crate::pool::unblock(move || intake.discard(sink)).await;
                }
                return match &v.reject {
                    Some(r) => Err(r.clone()),
                    None => Ok(qid),
                };
            }
        }
        let how = scanned.map(|s| (s.verdict, s.hops));
        let runner = self.shared.runner.clone();
        let (tx, rx) = smol::channel::bounded(1);
        let write = move || {
            let held = how.as_ref().is_some_and(|(v, _)| v.hold.is_some());
            let mut sink = match msg {
                Msg::Open(sink) => match &how {
                    Some((v, _)) if rerouted_late(&sink, v, opened_with.as_ref()) => intake
                        .reroute(sink, &|env| {
                            v.apply(env);
                        })
                        .map_err(|e| e.to_string())?,
                    _ => sink,
                },
                waiting => match open(&intake, waiting, how.as_ref()) {
                    Msg::Open(sink) => sink,
                    Msg::Failed(problem) => return Err(problem),
                    _ => return Err("no message".into()),
                },
            };
            intake.write(&mut sink, &bytes);
            if let Some(e) = sink.failed() {
                let problem = e.to_string();
                intake.discard(sink);
                return Err(problem);
            }
            let qid = sink.id().to_string();
            intake
                .commit(sink, held)
                .map(|c| (qid, c))
                .map_err(|e| e.to_string())
        };
        // The session has its answer the moment the message is safe; the
        // thread goes on with the runner's first step (see
        // `Runner::take_fresh`), so a slow lookup there never holds the
        // client's reply.
        crate::pool::unblock(move || {
            let result = write();
            let fresh = match &result {
                Ok((qid, Committed::Queued)) => Some(qid.clone()),
                _ => None,
            };
            let _ = tx.try_send(result);
            if let Some(qid) = fresh {
                runner.take_fresh(qid);
            }
        })
        .detach();
        let result = rx
            .recv()
            .await
            .unwrap_or_else(|_| Err("the queue writer stopped".into()));
        match result {
            Ok((qid, committed)) => {
                self.log_accepted(&qid, &committed);
                Ok(qid)
            }
            Err(problem) => {
                log::queue_write_failed(&self.client, &problem);
                Err(reply::INSUFFICIENT_STORAGE)
            }
        }
    }

    /// One log line per rule that fired (Postfix's cleanup lines).
    fn log_rules(&self, qid: &str, s: &Scanner) {
        if s.events.is_empty() {
            return;
        }
        let env = self.s.envelope();
        let from = env
            .as_ref()
            .map(|e| e.sender.to_string())
            .unwrap_or_default();
        let to = env
            .as_ref()
            .and_then(|e| e.recipients.first().map(|r| r.to_string()))
            .unwrap_or_default();
        let envelope = format!(
            "from=<{from}> to=<{to}> proto={} helo=<{}>",
            self.s.protocol(),
            self.s.helo().unwrap_or("")
        );
        for e in &s.events {
            use crate::intake::rules::Action;
            let (word, detail) = match &e.action {
                Action::Reject(r) => (
                    "reject",
                    match r.esc {
                        Some(Esc(c, s, d)) => format!("{} {c}.{s}.{d} {}", r.code, r.text),
                        None => format!("{} {}", r.code, r.text),
                    },
                ),
                Action::Discard(t) => ("discard", t.clone()),
                Action::Hold(t) => ("hold", t.clone()),
                Action::Filter(t) => ("filter", t.clone()),
                Action::Redirect(t) => ("redirect", t.clone()),
                Action::Bcc(t) => ("bcc", t.clone()),
                Action::Warn(t) => ("warning", t.clone()),
                Action::Info(t) => ("info", t.clone()),
                Action::Strip(t) => ("strip", t.clone()),
                Action::Pass(t) => ("pass", t.clone()),
                _ => continue,
            };
            let what = format!("{} {} ({}:{})", e.place.name(), e.text, e.file, e.line);
            log::content_rule(qid, word, &what, &self.client, &envelope, &detail);
        }
    }

    fn log_accepted(&self, qid: &str, committed: &Committed) {
        log::batch(|| self.log_accepted_lines(qid, committed));
    }

    fn log_accepted_lines(&self, qid: &str, committed: &Committed) {
        let env = self.s.envelope();
        let from = env
            .as_ref()
            .map(|e| e.sender.to_string())
            .unwrap_or_default();
        let nrcpt = env.as_ref().map(|e| e.recipients.len()).unwrap_or(0);
        let stored = match committed {
            Committed::Queued => log::Stored::Queue,
            Committed::Delivered(_) => log::Stored::Direct,
            Committed::Held => log::Stored::Held,
        };
        // Postfix's way of naming where a filtered message came from.
        let client = match env.as_ref().and_then(|e| e.forwarded.as_ref()) {
            Some(f) => {
                let mut c = self.client.clone();
                if let Some(i) = &f.ident {
                    c.push_str(&format!(", orig_queue_id={i}"));
                }
                if let Some(a) = f.addr {
                    c.push_str(&format!(
                        ", orig_client={}",
                        log::client(f.name.as_deref().unwrap_or("unknown"), a)
                    ));
                }
                c
            }
            None => self.client.clone(),
        };
        log::queued(
            qid,
            &client,
            self.s.auth_user(),
            &from,
            self.size,
            nrcpt,
            stored,
        );
        if let Committed::Delivered(copies) = committed {
            for c in copies {
                log::delivery(&log::DeliveryInfo {
                    id: qid,
                    to: &c.address,
                    orig_to: (!c.orig.eq_ignore_ascii_case(&c.address)).then_some(c.orig.as_str()),
                    relay: "maildir",
                    tls: None,
                    delay_secs: 0.0,
                    dsn: "2.0.0",
                    status: "sent",
                    text: &c.text,
                });
            }
            log::removed(qid);
        }
    }
}

/// Opens the sink of a waiting message (blocking: lookups, file creation).
/// `how`: what the header rules decided, and the hops they counted.
fn open(intake: &Intake, msg: Msg, how: Option<&(Verdict, u32)>) -> Msg {
    match msg {
        Msg::Waiting(mut env) => {
            let mut queue_only = false;
            if let Some((v, hops)) = how {
                v.apply(&mut env);
                env.handling.hops = *hops;
                queue_only = v.hold.is_some();
            }
            match intake.start(*env, queue_only) {
                Ok(sink) => Msg::Open(sink),
                Err(e) => Msg::Failed(e.to_string()),
            }
        }
        other => other,
    }
}

/// Did a body rule decide, after the sink was opened, something the
/// envelope or the road must follow?
fn rerouted_late(sink: &Sink, v: &Verdict, opened: Option<&Verdict>) -> bool {
    let changed = match opened {
        Some(o) => v.filter != o.filter || v.redirect != o.redirect || v.bcc != o.bcc,
        None => v.reroutes(),
    };
    changed || (matches!(sink, Sink::Direct(_)) && v.hold.is_some())
}
