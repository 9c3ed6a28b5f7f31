//! The SMTP delivery agent: sends mail onward by MX, through a smarthost,
//! or along a per-domain route with fallbacks (the seed's default_transport
//! = relay:, transport.maps and fallback_relay).
//!
//! For each destination of a message (one recipient domain by MX, or one
//! route), within that destination's connection limit:
//! 1. the hosts: the domain's MX hosts in preference order (equal ones
//!    shuffled, at most 5, ourselves and everything at or below our
//!    preference dropped; see dns/), or the route's relay;
//! 2. each address in turn, over a connection kept from an earlier message
//!    when one is idle (pool.rs), else a new one; a STARTTLS handshake that
//!    fails under `tls = may` is tried once more without TLS, unless a
//!    login is due on that connection;
//! 3. each recipient's answer is final where the server gave one: 2xx
//!    delivered, 5xx bounced, 4xx deferred — never tried at another host;
//!    only recipients left without an answer (refused connection, timeout,
//!    4xx or 5xx greeting, 421, dropped connection) go on to the next
//!    address, the next host, and then the route's fallback relays. A
//!    route never falls back to MX delivery.
//!
//! Time-outs, TLS, the login and the protocol are outbound/'s and the pure
//! client's (smtp/client); this file decides where to go and what the
//! answers mean for the queue.

pub mod hosts;
mod outcome;
pub mod pool;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::RootCertStore;
use smol::lock::{OnceCell, Semaphore};

use self::hosts::Host;
use self::outcome::{Failed, Peer};
use self::pool::{ConnKey, Destination, Destinations};
use super::{AsyncAgent, BoxFuture, Outcome, Target};
use crate::config::relay::Credentials;
use crate::dns::hosts::HostLookup;
use crate::dns::mx::Me;
use crate::dns::Resolver;
use crate::outbound::{Connection, Options, Outgoing};
use crate::queue::spool::QueuedMessage;
use crate::route::{NextHop, Route, SmtpRoute, TlsPolicy};
use crate::smtp::client::{ClientConfig, Detail, Envelope, Timeouts};
use crate::smtp::reply::Esc;

/// What the agent takes from the configuration.
pub struct Settings {
    pub helo_name: String,
    pub host_lookup: Vec<HostLookup>,
    pub connect_timeout: Duration,
    pub command_timeout: Duration,
    pub data_done_timeout: Duration,
    /// How long an idle connection waits for the next message.
    pub reuse: Duration,
    /// Connections at once, all destinations together.
    pub concurrency: usize,
    pub per_destination: usize,
    /// Roots for `tls = verify`.
    pub roots: Option<Arc<RootCertStore>>,
    pub credentials: Credentials,
    /// Who we are, to find ourselves among MX hosts.
    pub me: Me,
    /// Tell the server who the original client was (XFORWARD), when it
    /// offers that: the content filter's agent.
    pub xforward: bool,
    /// DKIM keys (dkim/): the outbound agent's only, never the content
    /// filter's, so mail is signed once, after the filter's changes.
    pub dkim: Option<Arc<crate::dkim::Signer>>,
}

pub struct SmtpAgent {
    s: Settings,
    resolver: Resolver,
    dests: Destinations,
    total: Arc<Semaphore>,
    rng: Mutex<u64>,
}

/// What one try at one address came to.
enum Attempt {
    /// Results for the recipients given (in their order): `Answer::Final`
    /// where the server answered, `Answer::Open` where the session ended
    /// before it did (a dropped connection, a timeout, a 421), so another
    /// address may still take them.
    Answered(Vec<Answer>),
    Failed(Failed),
}

enum Answer {
    Final(Outcome),
    /// Tried, not answered: what to report if no other address takes it.
    Open(Outcome),
}

impl SmtpAgent {
    pub fn new(s: Settings, resolver: Resolver) -> SmtpAgent {
        let seed = crate::clock::now_micros() | 1;
        SmtpAgent {
            dests: Destinations::new(s.per_destination),
            total: Arc::new(Semaphore::new(s.concurrency.max(1))),
            resolver,
            rng: Mutex::new(seed),
            s,
        }
    }

    /// A random number below `n` (the MX shuffle; not for secrets).
    fn pick(&self, n: usize) -> usize {
        let mut x = self.rng.lock().unwrap_or_else(|e| e.into_inner());
        *x ^= *x << 13;
        *x ^= *x >> 7;
        *x ^= *x << 17;
        (*x % n.max(1) as u64) as usize
    }

    /// Closes connections idle past the reuse time (run from a timer).
    pub async fn expire_idle(&self) {
        for c in self.dests.expired(self.s.reuse) {
            let _ = c.quit().await;
        }
    }

    async fn deliver_all(
        self: Arc<Self>,
        msg: Arc<QueuedMessage>,
        targets: Vec<Target>,
    ) -> Vec<Outcome> {
        // One group per destination: a recipient domain by MX, or a route.
        let mut groups: Vec<(String, SmtpRoute, Vec<usize>)> = Vec::new();
        let mut out: Vec<Option<Outcome>> = vec![None; targets.len()];
        for (i, t) in targets.iter().enumerate() {
            let filter;
            let r = match &t.route {
                Route::Smtp(r) => r,
                // A content filter is one next hop, no TLS, no login.
                Route::Filter(f) => {
                    filter = SmtpRoute {
                        name: format!("content filter {}", f.hop),
                        hops: vec![f.hop.clone()],
                        fallbacks: Vec::new(),
                        tls: TlsPolicy::None,
                        credentials: None,
                    };
                    &filter
                }
                _ => {
                    out[i] = Some(Outcome::deferred(Esc(4, 3, 5), "not an SMTP route"));
                    continue;
                }
            };
            let key = destination_key(r);
            match groups.iter_mut().find(|(k, _, _)| *k == key) {
                Some(g) => g.2.push(i),
                None => groups.push((key, r.clone(), vec![i])),
            }
        }
        // Read once for all destinations, when the first of them has a
        // connection slot: messages waiting for a busy destination hold
        // no content in memory.
        let content: OnceCell<Result<Arc<Content>, String>> = OnceCell::new();
        let runs: Vec<_> = groups
            .iter()
            .map(|(key, route, idx)| {
                let rcpts: Vec<&Target> = idx.iter().map(|&i| &targets[i]).collect();
                Box::pin(self.deliver_group(key, route, &msg, &content, rcpts))
            })
            .collect();
        let results = super::join_all(runs).await;
        for ((_, _, idx), outs) in groups.iter().zip(results) {
            for (&i, o) in idx.iter().zip(outs) {
                out[i] = Some(o);
            }
        }
        out.into_iter()
            .map(|o| o.unwrap_or_else(|| Outcome::deferred(Esc(4, 3, 0), "no result")))
            .collect()
    }

    /// One destination's share of a message.
    async fn deliver_group(
        &self,
        key: &str,
        route: &SmtpRoute,
        msg: &Arc<QueuedMessage>,
        content: &OnceCell<Result<Arc<Content>, String>>,
        rcpts: Vec<&Target>,
    ) -> Vec<Outcome> {
        let dest = self.dests.get(key);
        if let Some(why) = dest.dead() {
            let o = Outcome::deferred(
                Esc(4, 4, 1),
                format!("delivery temporarily suspended: {why}"),
            );
            return rcpts.iter().map(|_| o.clone()).collect();
        }
        let _slot = dest.limit.acquire_arc().await;
        let _conn = self.total.acquire_arc().await;
        let loaded = content
            .get_or_init(|| {
                let msg = msg.clone();
                let dkim = self.s.dkim.clone();
                async move {
                    crate::pool::unblock(move || Content::load(&msg, dkim.as_ref()))
                        .await
                        .map(Arc::new)
                        .map_err(|e| e.to_string())
                }
            })
            .await;
        let content = match loaded {
            Ok(c) => c,
            Err(e) => {
                let o =
                    Outcome::deferred(Esc(4, 3, 0), format!("cannot read the queued message: {e}"));
                return rcpts.iter().map(|_| o.clone()).collect();
            }
        };
        // A session's future is large (its read buffer is part of it):
        // allocated by the deliveries that hold a connection slot, not by
        // each of the messages waiting for one (up to the active limit).
        Box::pin(self.try_hosts(&dest, route, msg, content, &rcpts)).await
    }

    /// The route's hosts in turn, until every recipient has an answer.
    async fn try_hosts(
        &self,
        dest: &Destination,
        route: &SmtpRoute,
        msg: &QueuedMessage,
        content: &Arc<Content>,
        rcpts: &[&Target],
    ) -> Vec<Outcome> {
        let mut out: Vec<Option<Outcome>> = vec![None; rcpts.len()];
        // Per recipient: why the last session that had it ended unanswered.
        let mut open: Vec<Option<Outcome>> = vec![None; rcpts.len()];
        let mut last: Option<Outcome> = None;
        let mut all_connect = true;
        let mut tried = 0;
        for hops in [&route.hops, &route.fallbacks] {
            if out.iter().all(Option::is_some) {
                break;
            }
            let hosts = match self.hosts(hops).await {
                Ok(h) => h,
                Err(o) => {
                    all_connect = false;
                    last = Some(o);
                    continue;
                }
            };
            for h in hosts {
                for addr in h.addrs.iter().take(hosts::MAX_ADDRS) {
                    let pending: Vec<usize> =
                        (0..rcpts.len()).filter(|&i| out[i].is_none()).collect();
                    if pending.is_empty() {
                        break;
                    }
                    tried += 1;
                    let peer = Peer {
                        host: h.name.clone(),
                        addr: std::net::SocketAddr::new(*addr, h.port),
                        tls: None,
                    };
                    let mine: Vec<&Target> = pending.iter().map(|&i| rcpts[i]).collect();
                    match self
                        .attempt(dest, route, &h, peer, msg, content, &mine)
                        .await
                    {
                        Attempt::Answered(outs) => {
                            all_connect = false;
                            for (i, a) in pending.into_iter().zip(outs) {
                                match a {
                                    Answer::Final(o) => out[i] = Some(o),
                                    Answer::Open(o) => open[i] = Some(o),
                                }
                            }
                        }
                        Attempt::Failed(f) => {
                            all_connect &= f.connect;
                            last = Some(f.outcome);
                        }
                    }
                }
            }
        }
        if out.iter().any(Option::is_none) && tried > 0 && all_connect {
            if let Some(o) = &last {
                dest.mark_dead(&o.text);
            }
        } else if tried > 0 {
            dest.mark_alive();
        }
        let fallback = last.unwrap_or_else(|| {
            Outcome::deferred(Esc(4, 4, 1), format!("no host to try for {}", route.name))
        });
        out.into_iter()
            .zip(open)
            .map(|(o, open)| o.or(open).unwrap_or_else(|| fallback.clone()))
            .collect()
    }

    /// The hosts of a list of next hops, in order.
    async fn hosts(&self, hops: &[NextHop]) -> Result<Vec<Host>, Outcome> {
        let mut all = Vec::new();
        let mut last = None;
        for hop in hops {
            let pick = &mut |n| self.pick(n);
            match hosts::resolve(&self.resolver, &self.s.host_lookup, hop, &self.s.me, pick).await {
                Ok(mut h) => all.append(&mut h),
                Err(o) => last = Some(o),
            }
        }
        match (all.is_empty(), last) {
            (true, Some(o)) => Err(o),
            _ => Ok(all),
        }
    }

    /// One address: a connection (kept or new), the message, the answers.
    #[allow(clippy::too_many_arguments)]
    async fn attempt(
        &self,
        dest: &Destination,
        route: &SmtpRoute,
        host: &Host,
        mut peer: Peer,
        msg: &QueuedMessage,
        content: &Arc<Content>,
        rcpts: &[&Target],
    ) -> Attempt {
        let login = route
            .credentials
            .as_ref()
            .and(host.hop.as_ref())
            .and_then(|hop| self.s.credentials.for_hop(hop));
        let mut policy = route.tls;
        let key = |policy| ConnKey {
            addr: peer.addr,
            tls: policy,
            login: login.as_ref().map(|l| l.user.clone()),
        };
        for fresh in [false, true] {
            let kept = match fresh {
                false => dest.take(&key(policy), self.s.reuse),
                true => None,
            };
            let reused = kept.is_some();
            let conn = match kept {
                Some(c) => Ok(c),
                None => self.open(&peer, policy, login.clone()).await,
            };
            let mut conn = match conn {
                Ok(c) => c,
                Err(f) => {
                    let failed = outcome::session(&peer, &f);
                    // rustls speaks only TLS 1.2+: an old server fails the
                    // handshake, and `may` means plaintext is acceptable —
                    // but never with a login due (it would go in clear).
                    if failed.tls && policy == TlsPolicy::May && login.is_none() {
                        policy = TlsPolicy::None;
                        match self.open(&peer, policy, None).await {
                            Ok(c) => c,
                            Err(f) => return Attempt::Failed(outcome::session(&peer, &f)),
                        }
                    } else {
                        return Attempt::Failed(failed);
                    }
                }
            };
            peer.tls = conn.tls().map(str::to_string);
            let mut envelope = content.envelope(msg, rcpts);
            if self.s.xforward {
                envelope.xforward = Some(xforward_of(msg));
            }
            let out = Outgoing {
                envelope,
                content: content.reader(),
            };
            match conn.send(out).await {
                Ok(r) => {
                    let outs = r
                        .recipients
                        .iter()
                        .map(|rr| Answer::Final(outcome::recipient(&peer, rr)))
                        .collect();
                    for stale in dest.put(key(policy), conn, self.s.reuse) {
                        let _ = stale.quit().await;
                    }
                    return Attempt::Answered(outs);
                }
                Err((Some(r), f)) => {
                    let outs: Vec<Answer> = r
                        .recipients
                        .iter()
                        .map(|rr| match outcome::unanswered(rr, &f) {
                            true if matches!(rr.detail, Detail::Local { .. }) => {
                                Answer::Open(outcome::session(&peer, &f).outcome)
                            }
                            true => Answer::Open(outcome::recipient(&peer, rr)),
                            false => Answer::Final(outcome::recipient(&peer, rr)),
                        })
                        .collect();
                    // A kept connection the server has closed since (an
                    // idle timeout): once more on a new one, which is not
                    // a failure of the host.
                    if reused && outs.iter().all(|a| matches!(a, Answer::Open(_))) {
                        continue;
                    }
                    return Attempt::Answered(outs);
                }
                Err((None, _)) if reused => continue,
                Err((None, f)) => return Attempt::Failed(outcome::session(&peer, &f)),
            }
        }
        unreachable!("the second round returns")
    }

    async fn open(
        &self,
        peer: &Peer,
        tls: TlsPolicy,
        login: Option<crate::smtp::client::ClientCredentials>,
    ) -> Result<Connection, crate::outbound::SessionFailure> {
        let t = self.s.command_timeout;
        let opts = Options {
            client: ClientConfig {
                helo_name: self.s.helo_name.clone(),
                tls: client_tls(tls),
                credentials: login,
                auth_without_tls: false,
                pipelining: true,
                timeouts: Timeouts {
                    greeting: t,
                    helo: t,
                    starttls: t,
                    auth: t,
                    xforward: t,
                    mail: t,
                    rcpt: t,
                    data_done: self.s.data_done_timeout,
                    ..Timeouts::default()
                },
            },
            connect_timeout: self.s.connect_timeout,
            roots: self.s.roots.clone(),
        };
        let target = crate::outbound::Target {
            host: peer.host.clone(),
            addr: peer.addr,
        };
        Connection::open(&target, &opts).await
    }
}

impl AsyncAgent for SmtpAgent {
    fn name(&self) -> &'static str {
        "smtp"
    }

    /// Per destination and in all (`concurrency_per_destination`,
    /// `concurrency`): a permit of the registry's would be held by mail
    /// waiting for a busy destination, which mail for others needs.
    fn limits_itself(&self) -> bool {
        true
    }

    fn revive(&self) {
        self.dests.revive();
    }

    fn deliver(
        self: Arc<Self>,
        msg: Arc<QueuedMessage>,
        targets: Vec<Target>,
        _recovered: bool,
    ) -> BoxFuture<'static, Vec<Outcome>> {
        Box::pin(self.deliver_all(msg, targets))
    }
}

/// The original client of a queued message, for the content filter.
fn xforward_of(msg: &QueuedMessage) -> crate::smtp::client::XForward {
    let e = &msg.env;
    let proto = if e.protocol.to_ascii_uppercase().starts_with("ESMTP") {
        "ESMTP"
    } else {
        "SMTP"
    };
    crate::smtp::client::XForward {
        name: e.client_ip.map(|_| e.client_name.clone()),
        addr: e.client_ip,
        port: None,
        proto: e.client_ip.map(|_| proto.to_string()),
        helo: (!e.helo.is_empty()).then(|| e.helo.clone()),
        ident: Some(e.id.clone()),
        // LOCAL: mail of our side (Postfix: local_header_rewrite_clients),
        // which the reinject listener then knows it may DKIM-sign.
        source: Some(if e.handling.sign { "LOCAL" } else { "REMOTE" }.into()),
    }
}

fn client_tls(p: TlsPolicy) -> crate::smtp::client::TlsPolicy {
    use crate::smtp::client::TlsPolicy as C;
    match p {
        TlsPolicy::None => C::None,
        TlsPolicy::May => C::May,
        TlsPolicy::Encrypt => C::Encrypt,
        TlsPolicy::Verify => C::Verify,
    }
}

/// Destinations are counted apart: each MX domain, each route.
fn destination_key(r: &SmtpRoute) -> String {
    match (r.name.as_str(), r.hops.first()) {
        ("mx", Some(h)) => format!("mx:{}", h.host),
        (name, _) => format!("route:{name}"),
    }
}

/// The message as it is sent: small ones in memory (read once for all
/// destinations), large ones streamed from the queue file each time. The
/// size is with CRLF line ends; File's last field holds the DKIM-Signature
/// fields sent before the file's bytes (Memory has them in place).
enum Content {
    Memory(Arc<Vec<u8>>, u64),
    File(std::path::PathBuf, u64, u64, u64, Arc<Vec<u8>>),
}

/// Messages up to this size are read into memory once.
const IN_MEMORY: u64 = 256 * 1024;

impl Content {
    /// Reads the message (blocking): its bytes, or where it is, and its
    /// size with CRLF line ends for SIZE= (RFC 1870). With DKIM keys, the
    /// same pass signs it (dkim/).
    fn load(
        msg: &QueuedMessage,
        dkim: Option<&Arc<crate::dkim::Signer>>,
    ) -> std::io::Result<Content> {
        use std::io::Read;
        let mut job = dkim.and_then(|d| d.start(&msg.env));
        let mut r = msg.body()?;
        if msg.body_len <= IN_MEMORY {
            let mut v = Vec::with_capacity(msg.body_len as usize);
            r.read_to_end(&mut v)?;
            if let Some(mut j) = job {
                j.update(&v);
                let sig = dkim_header(msg, j);
                v.splice(0..0, sig.iter().copied());
            }
            let lines = v.iter().filter(|&&c| c == b'\n').count() as u64;
            let len = v.len() as u64;
            return Ok(Content::Memory(Arc::new(v), len + lines));
        }
        let mut buf = vec![0u8; 64 * 1024];
        let mut lines = 0u64;
        loop {
            let n = r.read(&mut buf)?;
            if n == 0 {
                break;
            }
            lines += buf[..n].iter().filter(|&&c| c == b'\n').count() as u64;
            if let Some(j) = &mut job {
                j.update(&buf[..n]);
            }
        }
        let sig = job.map(|j| dkim_header(msg, j)).unwrap_or_default();
        let extra = sig.len() as u64 + sig.iter().filter(|&&c| c == b'\n').count() as u64;
        let (path, off) = msg.location();
        Ok(Content::File(
            path,
            off,
            msg.body_len,
            msg.body_len + lines + extra,
            Arc::new(sig),
        ))
    }

    fn envelope(&self, msg: &QueuedMessage, rcpts: &[&Target]) -> Envelope {
        let size = match self {
            Content::Memory(_, s) | Content::File(_, _, _, s, _) => *s,
        };
        let to = rcpts
            .iter()
            .filter_map(|t| crate::smtp::address::Address::parse(&t.address, true).ok())
            .collect();
        let mut e = Envelope::new(msg.env.sender.clone(), to, size);
        e.smtputf8 = msg.env.smtputf8;
        e.body_8bit = msg.env.smtputf8;
        e
    }

    fn reader(&self) -> Box<dyn smol::io::AsyncRead + Unpin + Send> {
        match self {
            Content::Memory(v, _) => Box::new(smol::io::Cursor::new(SharedBytes(v.clone()))),
            Content::File(path, off, len, _, sig) => {
                let opened = std::fs::File::open(path).and_then(|mut f| {
                    use std::io::{Read, Seek, SeekFrom};
                    f.seek(SeekFrom::Start(*off))?;
                    Ok(f.take(*len))
                });
                match opened {
                    Ok(r) if sig.is_empty() => Box::new(smol::Unblock::new(r)),
                    Ok(r) => {
                        use smol::io::AsyncReadExt;
                        let head = smol::io::Cursor::new(SharedBytes(sig.clone()));
                        Box::new(head.chain(smol::Unblock::new(r)))
                    }
                    Err(e) => Box::new(FailingReader(Some(e))),
                }
            }
        }
    }
}

/// The DKIM-Signature fields for a message read by `job` (empty: none),
/// logged either way.
fn dkim_header(msg: &QueuedMessage, job: crate::dkim::Job) -> Vec<u8> {
    match job.finish(crate::clock::now_secs()) {
        crate::dkim::Signed::Header(h, names) => {
            crate::log::dkim_signed(&msg.env.id, &names);
            h
        }
        crate::dkim::Signed::Not => Vec::new(),
        crate::dkim::Signed::Failed(why) => {
            crate::log::dkim_failed(&msg.env.id, &why);
            Vec::new()
        }
    }
}

/// Bytes shared between the sessions of one message.
struct SharedBytes(Arc<Vec<u8>>);

impl AsRef<[u8]> for SharedBytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// A reader that reports why the message could not be opened.
struct FailingReader(Option<std::io::Error>);

impl smol::io::AsyncRead for FailingReader {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        _buf: &mut [u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let e = self
            .0
            .take()
            .unwrap_or_else(|| std::io::Error::other("unreadable"));
        std::task::Poll::Ready(Err(e))
    }
}
