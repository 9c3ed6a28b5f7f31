//! Message intake: where the bytes of a message being received go, and
//! what makes them durable before the 250.
//!
//! Two roads (DESIGN.md, "Contracts"):
//! - **queue**: the message is written to the spool (`incoming/` →
//!   `messages/`, see queue/spool) and delivered by the runner afterwards;
//! - **direct** (one synchronous write per copy): when every recipient
//!   routes to a local Maildir and nothing has to run after queueing, the
//!   copies are written straight into the Maildirs (`tmp/`, fsync, link
//!   into `new/`, `new/` fsynced with syncs shared between sessions) and
//!   only then is the 250 sent. No queue file exists at any point. If any
//!   Maildir write fails, the message falls back to the queue (accepted
//!   and deferred, never refused for that), with the copies that did land
//!   recorded as done so none is delivered twice.
//!
//! Every function here blocks (files, fsync, lookups): the session driver
//! calls them through `crate::pool::unblock`.

pub mod content;
mod direct;
mod qualify;
pub mod rules;

use std::collections::HashSet;
use std::io;
use std::sync::Arc;

use crate::config::Config;
use crate::deliver::maildir::MaildirAgent;
use crate::directory::{Directory, Resolution};
use crate::queue::envelope::QueueEnvelope;
use crate::queue::spool::{Spool, SpoolWriter};
use crate::route::{Route, Router};

pub use direct::Copy;

pub struct Intake {
    spool: Arc<Spool>,
    directory: Arc<Directory>,
    router: Router,
    maildir: Arc<MaildirAgent>,
    /// `[delivery] direct`
    direct: bool,
    /// The free-space reserve of the queue's filesystem.
    reserve: crate::space::Reserve,
    max_received: usize,
}

/// Where a message being received is written.
pub enum Sink {
    Queue(SpoolWriter),
    Direct(Box<direct::Writer>),
}

/// How an accepted message was made durable.
pub enum Committed {
    /// In the queue: hand it to the runner.
    Queued,
    /// In the hold queue (a HOLD rule): nothing to do until released.
    Held,
    /// Written into these Maildirs; nothing is left to do.
    Delivered(Vec<Copy>),
}

/// One local destination of the direct road.
#[derive(Clone, Debug)]
struct Local {
    route: crate::route::MaildirRoute,
    address: String,
    orig: String,
    key: String,
    index: usize,
}

impl Intake {
    pub fn new(
        cfg: &Config,
        spool: Arc<Spool>,
        directory: Arc<Directory>,
        router: Router,
        maildir: Arc<MaildirAgent>,
    ) -> Intake {
        Intake {
            spool,
            directory,
            router,
            maildir,
            direct: cfg.delivery.direct,
            reserve: crate::space::Reserve::new(
                cfg.queue_dir(),
                cfg.min_free(),
                "new mail and Maildir deliveries",
            ),
            max_received: cfg.delivery.max_received_headers,
        }
    }

    /// MAIL: room on the queue's filesystem for a message of `size` bytes
    /// (the client's SIZE=, 0 if none) and still the whole reserve?
    pub fn room_for_mail(&self, size: u64) -> bool {
        self.reserve.min_free() == 0 || self.reserve.accepts_mail(size)
    }

    /// Does this recipient resolve (from memory) to one local mailbox
    /// with a quota? Cheap: no I/O.
    pub fn has_quota(&self, rcpt: &crate::smtp::address::Address) -> bool {
        self.quota_route(rcpt).is_some()
    }

    fn quota_route(
        &self,
        rcpt: &crate::smtp::address::Address,
    ) -> Option<crate::route::MaildirRoute> {
        let Some(Ok(Resolution::Deliver(dests))) = self.directory.from_memory(|d| d.resolve(rcpt))
        else {
            return None;
        };
        quota_mailbox(&self.router, &dests)
    }

    /// RCPT for a single local mailbox: refused when its quota is already
    /// used up, or would be by a message of `size` (MAIL's SIZE=).
    /// Blocking (reads maildirsize).
    pub fn quota_at_rcpt(
        &self,
        rcpt: &crate::smtp::address::Address,
        size: u64,
    ) -> Result<(), crate::smtp::reply::Reply> {
        match self.quota_route(rcpt) {
            Some(m) => quota_verdict(&self.maildir, &m, rcpt, size),
            None => Ok(()),
        }
    }

    /// Opens the sink for a message with this envelope: direct when every
    /// destination is a local Maildir, the queue otherwise.
    /// `queue_only`: a rule said HOLD.
    pub fn start(&self, env: QueueEnvelope, queue_only: bool) -> io::Result<Sink> {
        // Mail for the content filter is queued first, always.
        if self.direct && !queue_only && env.handling.filter.is_none() {
            if let Some(locals) = self.local_destinations(&env) {
                // A Maildir that cannot be opened is the queue's problem.
                if let Ok(w) = direct::Writer::start(self.maildir.clone(), env.clone(), locals) {
                    return Ok(Sink::Direct(Box::new(w)));
                }
            }
        }
        self.spool.create(&env).map(Sink::Queue)
    }

    /// Every final destination of the envelope, if each one routes to a
    /// Maildir (same expansion, de-duplication and numbering as the queue
    /// runner, so names and state keys agree). `None` sends the message
    /// through the queue.
    fn local_destinations(&self, env: &QueueEnvelope) -> Option<Vec<Local>> {
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        let mut index = 0;
        for rcpt in &env.recipients {
            // The session just asked the same: the cache usually knows.
            let resolved = match self.directory.from_memory(|d| d.resolve(rcpt)) {
                Some(r) => r,
                None => self.directory.resolve(rcpt),
            };
            let Ok(Resolution::Deliver(dests)) = resolved else {
                return None;
            };
            for dest in dests {
                index += 1;
                let key = dest.key();
                if !seen.insert(key.clone()) {
                    continue;
                }
                let Route::Maildir(route) = self.router.route(&dest) else {
                    return None;
                };
                out.push(Local {
                    route,
                    address: dest.address(),
                    orig: rcpt.to_string(),
                    key,
                    index: index - 1,
                });
            }
        }
        (!out.is_empty()).then_some(out)
    }

    /// Appends message bytes (LF line ends). A write error is kept and
    /// reported at commit; the direct road switches to the queue instead.
    pub fn write(&self, sink: &mut Sink, bytes: &[u8]) {
        match sink {
            Sink::Queue(w) => w.write(bytes),
            Sink::Direct(d) => d.write(&self.spool, bytes),
        }
    }

    /// Makes the message durable. Only after `Ok` may the client hear
    /// 250. `held`: into the hold queue (the sink is the queue's then:
    /// see [`Intake::reroute`]).
    pub fn commit(&self, sink: Sink, held: bool) -> io::Result<Committed> {
        match sink {
            Sink::Queue(w) if held => self.spool.commit_held(w).map(|()| Committed::Held),
            Sink::Queue(w) => self.spool.commit(w).map(|()| Committed::Queued),
            Sink::Direct(d) => d.commit(&self.spool, self.max_received),
        }
    }

    /// A rule decided late (in the body) that the message needs another
    /// envelope or the queue: the bytes so far move behind the changed
    /// envelope, into a queue file.
    pub fn reroute(&self, sink: Sink, change: &dyn Fn(&mut QueueEnvelope)) -> io::Result<Sink> {
        match sink {
            Sink::Queue(w) => self.spool.rewrite_envelope(w, change).map(Sink::Queue),
            Sink::Direct(mut d) => {
                d.divert(&self.spool, change);
                match d.take_queued() {
                    Some(q) => Ok(Sink::Queue(q)),
                    None => {
                        let e = d
                            .failed()
                            .map(|e| io::Error::new(e.kind(), e.to_string()))
                            .unwrap_or_else(|| {
                                io::Error::other("cannot move the message to the queue")
                            });
                        d.discard(&self.spool);
                        Err(e)
                    }
                }
            }
        }
    }

    /// Drops a message that was refused (nothing of it stays).
    pub fn discard(&self, sink: Sink) {
        match sink {
            Sink::Queue(w) => self.spool.discard(w),
            Sink::Direct(d) => d.discard(&self.spool),
        }
    }
}

/// The mailbox whose quota RCPT checks: a recipient that expands to
/// exactly one destination, routed to a Maildir (or a pipe delivering
/// into one) with a quota. Pure.
pub fn quota_mailbox(
    router: &Router,
    dests: &[crate::directory::Dest],
) -> Option<crate::route::MaildirRoute> {
    let [dest] = dests else {
        return None;
    };
    let m = match router.route(dest) {
        Route::Maildir(m) => m,
        Route::Pipe(p) => p.mailbox?,
        _ => return None,
    };
    (m.quota != crate::route::Quota::default()).then_some(m)
}

/// RCPT's answer for mailbox `m`: refused (552 5.2.2, or 452 4.2.2 with
/// over_quota = "defer") when a message of `size` would not fit. An
/// unreadable maildirsize is decided at delivery. Blocking.
pub fn quota_verdict(
    maildir: &MaildirAgent,
    m: &crate::route::MaildirRoute,
    rcpt: &crate::smtp::address::Address,
    size: u64,
) -> Result<(), crate::smtp::reply::Reply> {
    match maildir.quota_check(m, size.max(1)) {
        Ok(Err(_)) => Err(crate::smtp::reply::mailbox_full(
            &rcpt.to_string(),
            maildir.bounces_over_quota(),
        )),
        _ => Ok(()),
    }
}

impl Sink {
    pub fn id(&self) -> &str {
        match self {
            Sink::Queue(w) => w.id(),
            Sink::Direct(d) => d.id(),
        }
    }

    /// The first write error, if one happened on the queue road.
    pub fn failed(&self) -> Option<&io::Error> {
        match self {
            Sink::Queue(w) => w.failed(),
            Sink::Direct(d) => d.failed(),
        }
    }
}
