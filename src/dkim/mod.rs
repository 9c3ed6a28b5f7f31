//! DKIM signing of mail leaving over SMTP (RFC 6376; Ed25519 per RFC 8463).
//!
//! Owns which message is signed with which keys, and the signature itself.
//! Touches no socket and no spool file: the SMTP agent feeds it the
//! message while reading it from the queue (one pass, the same read that
//! counts the SIZE= of the message), asks for the signature header at the
//! end, and sends that header before the message. Time is an argument.
//!
//! Which mail (decided in two places):
//! - at intake, the envelope's `sign` line ([`from_our_side`]): the client
//!   was in the trusted networks or logged in; on a reinject listener
//!   (the content filter's way back) only what the filter passes on as
//!   XFORWARD `SOURCE=LOCAL`, which postern sends for such mail. Mail from
//!   outside — a backup MX's relay, a forward through an alias — has no
//!   `sign` line;
//! - when it leaves over a real SMTP route (never towards the content
//!   filter, whose agent has no keys): the keys of the `From:` domain; else
//!   of its nearest parent domain with a key that signs subdomains; else of
//!   the envelope sender's domain (or parent), where the key allows it.
//!   Every key of the chosen domain signs, so an RSA and an Ed25519
//!   signature go side by side. Mail without the `sign` line is signed only
//!   by keys that sign forwards, chosen by the envelope recipients'
//!   domains (the domain that forwards).
//!
//! A message with no `From:` field, or several, is not signed (§5.4: From
//! must be signed, and two would be ambiguous). Signing failures never
//! hold mail back: the message goes unsigned and a warning is logged.

pub mod canon;
pub mod key;
pub mod sign;

use std::sync::Arc;

use self::canon::{Canon, MessageScan};
use self::sign::SigningKey;
use crate::queue::envelope::QueueEnvelope;
use crate::smtp::address::ReversePath;

/// One `[[dkim]]` entry: a key and the mail it may sign.
#[derive(Debug)]
pub struct Entry {
    pub key: SigningKey,
    /// Also mail whose domain is a subdomain of the key's.
    pub subdomains: bool,
    /// Also mail whose `From:` domain has no key, by its envelope sender.
    pub sender: bool,
    /// Also mail from outside that is sent on (aliases, backup MX), by the
    /// envelope recipients' domains.
    pub forwards: bool,
}

/// The configured keys, shared by every delivery.
#[derive(Debug)]
pub struct Signer {
    entries: Vec<Entry>,
    rng: ring::rand::SystemRandom,
}

/// Whether a message being received comes from our side, so that it may
/// be signed when it leaves (the envelope's `sign` line).
///
/// `reinject`: the listener is the content filter's way back, whose
/// clients are all trusted; there only the filter's word counts, the
/// XFORWARD `SOURCE` postern sent it (`LOCAL` for mail of our side).
pub fn from_our_side(
    trusted: bool,
    authenticated: bool,
    reinject: bool,
    forwarded_source: Option<&str>,
) -> bool {
    if reinject {
        return forwarded_source.is_some_and(|s| s.eq_ignore_ascii_case("LOCAL"));
    }
    trusted || authenticated
}

/// What came of signing one message.
#[derive(Debug)]
pub enum Signed {
    /// No key applies (or nothing could be signed): sent as it is.
    Not,
    /// The DKIM-Signature fields to send before the message, with LF line
    /// ends as the queued message has them; and `d=... s=...` for the log.
    Header(Vec<u8>, Vec<String>),
    /// Sent unsigned; the reason is logged.
    Failed(String),
}

/// One message being read for signing.
pub struct Job {
    signer: Arc<Signer>,
    scan: MessageScan,
    ours: bool,
    sender: Option<String>,
    rcpt_domains: Vec<String>,
}

impl Signer {
    /// None when there is nothing to sign with.
    pub fn new(entries: Vec<Entry>) -> Option<Arc<Signer>> {
        (!entries.is_empty()).then(|| {
            Arc::new(Signer {
                entries,
                rng: ring::rand::SystemRandom::new(),
            })
        })
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Starts reading a message, or None when no key could apply to it
    /// whatever its headers say (then it costs nothing).
    pub fn start(self: &Arc<Self>, env: &QueueEnvelope) -> Option<Job> {
        let ours = env.handling.sign;
        let candidates = self.entries.iter().filter(|e| ours || e.forwards);
        let (mut simple, mut relaxed) = (false, false);
        for e in candidates {
            match e.key.canon.body {
                Canon::Simple => simple = true,
                Canon::Relaxed => relaxed = true,
            }
        }
        if !simple && !relaxed {
            return None;
        }
        let sender = match &env.sender {
            ReversePath::Address(a) => Some(a.domain.to_ascii_lowercase()),
            ReversePath::Null => None,
        };
        Some(Job {
            signer: self.clone(),
            scan: MessageScan::new(simple, relaxed),
            ours,
            sender,
            rcpt_domains: env
                .recipients
                .iter()
                .map(|r| r.domain.to_ascii_lowercase())
                .collect(),
        })
    }

    /// The keys for a message (see the module comment for the order).
    fn choose(
        &self,
        ours: bool,
        from: Option<&str>,
        sender: Option<&str>,
        rcpts: &[String],
    ) -> Vec<&Entry> {
        let pick = |domain: &str, ok: &dyn Fn(&Entry) -> bool| -> Vec<&Entry> {
            let domain = domain.trim_end_matches('.');
            let exact: Vec<&Entry> = self
                .entries
                .iter()
                .filter(|e| e.key.domain == domain && ok(e))
                .collect();
            if !exact.is_empty() {
                return exact;
            }
            let mut d = domain;
            while let Some((_, parent)) = d.split_once('.') {
                let found: Vec<&Entry> = self
                    .entries
                    .iter()
                    .filter(|e| e.subdomains && e.key.domain == parent && ok(e))
                    .collect();
                if !found.is_empty() {
                    return found;
                }
                d = parent;
            }
            Vec::new()
        };
        if ours {
            if let Some(f) = from {
                let found = pick(f, &|_| true);
                if !found.is_empty() {
                    return found;
                }
            }
            if let Some(s) = sender {
                return pick(s, &|e| e.sender);
            }
            return Vec::new();
        }
        for r in rcpts {
            let found = pick(r, &|e| e.forwards);
            if !found.is_empty() {
                return found;
            }
        }
        Vec::new()
    }
}

/// The domain of a `From:` value when it names exactly one domain.
fn from_domain(value: &str) -> Option<String> {
    let list = mailparse::addrparse(value).ok()?;
    let mut domain: Option<String> = None;
    let mut one = |addr: &str| -> bool {
        let Some((_, d)) = addr.rsplit_once('@') else {
            return false;
        };
        let d = d.trim().trim_end_matches('.').to_ascii_lowercase();
        match &domain {
            Some(x) => *x == d,
            None => {
                domain = Some(d);
                true
            }
        }
    };
    for a in list.iter() {
        let ok = match a {
            mailparse::MailAddr::Single(s) => one(&s.addr),
            mailparse::MailAddr::Group(g) => g.addrs.iter().all(|s| one(&s.addr)),
        };
        if !ok {
            return None;
        }
    }
    domain.filter(|d| !d.is_empty())
}

impl Job {
    /// The next bytes of the message, as queued.
    pub fn update(&mut self, chunk: &[u8]) {
        self.scan.update(chunk);
    }

    /// The signature fields, signed at Unix time `now`.
    pub fn finish(self, now: i64) -> Signed {
        let scanned = self.scan.finish();
        if scanned.overflow {
            return Signed::Failed(format!(
                "header larger than {} bytes",
                canon::MAX_HEADER_BYTES
            ));
        }
        let froms: Vec<&canon::Field> =
            scanned.fields.iter().filter(|f| f.name == "from").collect();
        let [from] = froms[..] else {
            return Signed::Not;
        };
        let from = from_domain(&from.value());
        let chosen = self.signer.choose(
            self.ours,
            from.as_deref(),
            self.sender.as_deref(),
            &self.rcpt_domains,
        );
        if chosen.is_empty() {
            return Signed::Not;
        }
        let mut header = String::new();
        let mut names = Vec::new();
        for e in chosen {
            let bh = match e.key.canon.body {
                Canon::Simple => scanned.simple.as_ref(),
                Canon::Relaxed => scanned.relaxed.as_ref(),
            };
            let Some(bh) = bh else {
                return Signed::Failed("no body hash".into());
            };
            match e
                .key
                .sign(&scanned.fields, bh.as_ref(), now, &self.signer.rng)
            {
                Ok(h) => header.push_str(&h),
                Err(err) => {
                    return Signed::Failed(format!(
                        "d={} s={}: {err}",
                        e.key.domain, e.key.selector
                    ))
                }
            }
            names.push(format!(
                "d={} s={} a={}",
                e.key.domain,
                e.key.selector,
                e.key.key.algorithm().tag()
            ));
        }
        Signed::Header(header.replace("\r\n", "\n").into_bytes(), names)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dkim::canon::Canonicalization;
    use crate::dkim::key::PrivateKey;
    use crate::queue::envelope::Handling;
    use crate::smtp::address::Address;

    fn entry(
        domain: &str,
        selector: &str,
        subdomains: bool,
        sender: bool,
        forwards: bool,
    ) -> Entry {
        let pem = include_str!("../../tests/fixtures/dkim/ed25519.pem");
        Entry {
            key: SigningKey {
                domain: domain.into(),
                selector: selector.into(),
                key: PrivateKey::from_pem(pem.as_bytes()).unwrap(),
                headers: vec!["from".into(), "from".into(), "subject".into()],
                canon: Canonicalization::RELAXED,
                expire: None,
            },
            subdomains,
            sender,
            forwards,
        }
    }

    fn signer() -> Arc<Signer> {
        Signer::new(vec![
            entry("example.test", "rsa", true, true, false),
            entry("example.test", "ed", true, true, false),
            entry("strict.test", "s", false, false, false),
            entry("forwarder.test", "f", false, false, true),
        ])
        .unwrap()
    }

    fn env(sign: bool, from: &str, rcpt: &str) -> QueueEnvelope {
        let (l, d) = from.split_once('@').unwrap();
        let (rl, rd) = rcpt.split_once('@').unwrap();
        QueueEnvelope {
            id: "X".into(),
            arrival_micros: 1,
            pid: 1,
            client_ip: None,
            client_name: "unknown".into(),
            helo: String::new(),
            protocol: "ESMTP".into(),
            sender: ReversePath::Address(Address::new(l, d)),
            recipients: vec![Address::new(rl, rd)],
            smtputf8: false,
            handling: Handling {
                sign,
                ..Default::default()
            },
        }
    }

    fn run(sign: bool, sender: &str, rcpt: &str, msg: &[u8]) -> Vec<String> {
        let Some(mut job) = signer().start(&env(sign, sender, rcpt)) else {
            return Vec::new();
        };
        job.update(msg);
        match job.finish(1_800_000_000) {
            Signed::Header(h, names) => {
                let text = String::from_utf8(h).unwrap();
                assert_eq!(text.matches("DKIM-Signature:").count(), names.len());
                assert!(!text.contains('\r'));
                names
            }
            Signed::Not => Vec::new(),
            Signed::Failed(e) => panic!("{e}"),
        }
    }

    #[test]
    fn by_from_domain_then_parent_then_sender() {
        let both = [
            "d=example.test s=rsa a=ed25519-sha256",
            "d=example.test s=ed a=ed25519-sha256",
        ];
        let m = b"From: A <a@Example.Test>\nSubject: x\n\nhi\n";
        assert_eq!(run(true, "x@other.test", "r@far.test", m), both);
        let m = b"From: a@lists.example.test\n\nhi\n";
        assert_eq!(run(true, "x@other.test", "r@far.test", m), both);
        // No key for the From: domain: the envelope sender's.
        let m = b"From: printer@lan.test\n\nhi\n";
        assert_eq!(run(true, "x@example.test", "r@far.test", m), both);
        // strict.test signs neither subdomains nor by sender.
        assert!(run(
            true,
            "x@other.test",
            "r@far.test",
            b"From: a@sub.strict.test\n\n"
        )
        .is_empty());
        assert!(run(true, "x@strict.test", "r@far.test", b"From: a@lan.test\n\n").is_empty());
        assert_eq!(
            run(
                true,
                "x@other.test",
                "r@far.test",
                b"From: a@strict.test\n\n"
            ),
            ["d=strict.test s=s a=ed25519-sha256"]
        );
    }

    #[test]
    fn mail_from_outside_only_by_keys_that_sign_forwards() {
        let m = b"From: a@example.test\n\nspoofed\n";
        assert!(run(false, "a@example.test", "r@far.test", m).is_empty());
        assert_eq!(
            run(false, "a@gmail.test", "alias@forwarder.test", m),
            ["d=forwarder.test s=f a=ed25519-sha256"]
        );
        // No key signs forwards: not even read.
        let s = Signer::new(vec![entry("example.test", "s", true, true, false)]).unwrap();
        assert!(s.start(&env(false, "a@x.test", "b@example.test")).is_none());
    }

    #[test]
    fn no_single_from_no_signature() {
        assert!(run(true, "x@example.test", "r@far.test", b"Subject: x\n\nhi\n").is_empty());
        let two = b"From: a@example.test\nFrom: b@example.test\n\nhi\n";
        assert!(run(true, "x@example.test", "r@far.test", two).is_empty());
        // One field, two domains: no From: domain; the sender's key then.
        assert_eq!(from_domain("a@x.test, b@y.test"), None);
        assert_eq!(
            from_domain("\"Name, Inc\" <a@X.test.>"),
            Some("x.test".into())
        );
        assert_eq!(
            from_domain("group: a@x.test, b@x.test;"),
            Some("x.test".into())
        );
    }

    #[test]
    fn our_side() {
        assert!(from_our_side(true, false, false, None));
        assert!(from_our_side(false, true, false, None));
        assert!(!from_our_side(false, false, false, Some("LOCAL")));
        // The filter's way back: only its word.
        assert!(!from_our_side(true, false, true, None));
        assert!(!from_our_side(true, false, true, Some("REMOTE")));
        assert!(from_our_side(true, false, true, Some("LOCAL")));
    }
}
