//! The envelope at the head of each queue file, and the delivery state kept
//! beside it.
//!
//! Queue file format (text header, then the message with LF line ends):
//! ```text
//! POSTERN-QUEUE 1
//! id 0Q7ZK3M4B2C
//! arrival 1795826316123456      (Unix time in microseconds)
//! pid 1234                      (receiving process, part of Maildir names)
//! client 127.0.0.1 unknown      (address, reverse name)
//! helo client.example.test
//! proto ESMTP
//! from alice@example.test       (empty for the null sender <>)
//! utf8 0
//! rcpt bob@example.test         (one line per recipient)
//! hops 3                        (optional: trace headers on arrival)
//! filter [127.0.0.1]:10026      (optional: the content filter to pass)
//! ident 0Q7ZK3M4B2B             (optional: the queue ID before the filter)
//! sign 1                        (optional: from our side, may be DKIM-signed)
//! .
//! <message>
//! ```
//! State file format (written only when a message stays queued):
//! ```text
//! attempts 2
//! next 1795826616               (Unix time of the next attempt)
//! done mailbox:bob@example.test (a destination already delivered or bounced)
//! warned 1                      (a delay notice was sent)
//! filter [127.0.0.1]:10026      (a body rule said FILTER late)
//! last <orig>\t<final>\t<status>\t<text>
//!                               (the last result of a destination still
//!                                pending, for `postern queue list`; fields
//!                                separated by tabs, which no field holds)
//! ```

use std::collections::BTreeSet;
use std::net::IpAddr;

use crate::smtp::address::{Address, ReversePath};

const MAGIC: &str = "POSTERN-QUEUE 1";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueEnvelope {
    pub id: String,
    pub arrival_micros: u64,
    pub pid: u32,
    pub client_ip: Option<IpAddr>,
    pub client_name: String,
    pub helo: String,
    pub protocol: String,
    pub sender: ReversePath,
    pub recipients: Vec<Address>,
    pub smtputf8: bool,
    pub handling: Handling,
}

/// What intake decided about a message besides its envelope.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Handling {
    /// `Received:` and `Delivered-To:` headers it arrived with (ours
    /// included), counted before header rules could remove any: loop
    /// detection cannot be switched off by `/^Received:/ IGNORE`.
    pub hops: u32,
    /// The after-queue content filter it must pass ("[127.0.0.1]:10026").
    pub filter: Option<String>,
    /// Its queue ID on the first pass, given by the filter (XFORWARD IDENT).
    pub ident: Option<String>,
    /// It came from our side (a trusted or logged-in client, or our own
    /// notice), so it may be DKIM-signed when it leaves (dkim/).
    pub sign: bool,
}

/// Newlines and other control characters never reach a header line.
fn clean(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

impl QueueEnvelope {
    pub fn arrival_secs(&self) -> i64 {
        (self.arrival_micros / 1_000_000) as i64
    }

    pub fn serialize(&self) -> String {
        let mut s = format!(
            "{MAGIC}\nid {}\narrival {}\npid {}\n",
            self.id, self.arrival_micros, self.pid
        );
        let ip = self
            .client_ip
            .map(|i| i.to_string())
            .unwrap_or_else(|| "-".into());
        s.push_str(&format!("client {ip} {}\n", clean(&self.client_name)));
        s.push_str(&format!(
            "helo {}\nproto {}\n",
            clean(&self.helo),
            clean(&self.protocol)
        ));
        s.push_str(&format!(
            "from {}\nutf8 {}\n",
            self.sender,
            u8::from(self.smtputf8)
        ));
        for r in &self.recipients {
            s.push_str(&format!("rcpt {r}\n"));
        }
        let h = &self.handling;
        if h.hops > 0 {
            s.push_str(&format!("hops {}\n", h.hops));
        }
        if let Some(f) = &h.filter {
            s.push_str(&format!("filter {}\n", clean(f)));
        }
        if let Some(i) = &h.ident {
            s.push_str(&format!("ident {}\n", clean(i)));
        }
        if h.sign {
            s.push_str("sign 1\n");
        }
        s.push_str(".\n");
        s
    }

    /// Parses the header of a queue file; returns it and where the message
    /// starts. Any deviation is an error naming the problem.
    pub fn parse(bytes: &[u8]) -> Result<(QueueEnvelope, usize), String> {
        let mut pos = 0;
        let mut next_line = || -> Result<&str, String> {
            let rest = &bytes[pos..];
            let n = rest
                .iter()
                .position(|&c| c == b'\n')
                .ok_or("header is cut short")?;
            pos += n + 1;
            std::str::from_utf8(&rest[..n]).map_err(|_| "header is not UTF-8".to_string())
        };
        if next_line()? != MAGIC {
            return Err("not a postern queue file (bad first line)".into());
        }
        let mut e = QueueEnvelope {
            id: String::new(),
            arrival_micros: 0,
            pid: 0,
            client_ip: None,
            client_name: String::new(),
            helo: String::new(),
            protocol: String::new(),
            sender: ReversePath::Null,
            recipients: Vec::new(),
            smtputf8: false,
            handling: Handling::default(),
        };
        loop {
            let line = next_line()?;
            if line == "." {
                break;
            }
            let (k, v) = line.split_once(' ').unwrap_or((line, ""));
            match k {
                "id" => e.id = v.to_string(),
                "arrival" => {
                    e.arrival_micros = v.parse().map_err(|_| format!("bad arrival {v:?}"))?
                }
                "pid" => e.pid = v.parse().map_err(|_| format!("bad pid {v:?}"))?,
                "client" => {
                    let (ip, name) = v.split_once(' ').unwrap_or((v, "unknown"));
                    e.client_ip = ip.parse().ok();
                    e.client_name = name.to_string();
                }
                "helo" => e.helo = v.to_string(),
                "proto" => e.protocol = v.to_string(),
                "from" if v.is_empty() => e.sender = ReversePath::Null,
                "from" => {
                    e.sender = ReversePath::Address(
                        Address::parse(v, true).map_err(|_| format!("bad sender {v:?}"))?,
                    )
                }
                "utf8" => e.smtputf8 = v == "1",
                "rcpt" => e
                    .recipients
                    .push(Address::parse(v, true).map_err(|_| format!("bad recipient {v:?}"))?),
                "hops" => e.handling.hops = v.parse().map_err(|_| format!("bad hops {v:?}"))?,
                "filter" if !v.is_empty() => e.handling.filter = Some(v.to_string()),
                "ident" if !v.is_empty() => e.handling.ident = Some(v.to_string()),
                "sign" => e.handling.sign = v == "1",
                _ => return Err(format!("unknown header line {k:?}")),
            }
        }
        if e.id.is_empty() || e.recipients.is_empty() || e.arrival_micros == 0 {
            return Err("header lacks id, arrival or recipients".into());
        }
        Ok((e, pos))
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeliveryState {
    pub attempts: u32,
    pub next_attempt: i64,
    /// Destinations finished (delivered, or bounced), by their key.
    pub done: BTreeSet<String>,
    /// The last result of each destination still pending.
    pub last: Vec<LastResult>,
    /// A delay notice has been sent (only one ever is).
    pub warned: bool,
    /// A body rule said FILTER after the envelope was written.
    pub filter: Option<String>,
}

/// What the last attempt said about one destination.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LastResult {
    /// The envelope recipient.
    pub orig: String,
    /// The final address it was expanded to.
    pub to: String,
    /// `deferred` or `bounced`.
    pub status: String,
    /// e.g. `4.4.1 no outbound relay ...` or `host mx.test[1.2.3.4] said: ...`
    pub text: String,
}

impl DeliveryState {
    pub fn serialize(&self) -> String {
        let mut s = format!("attempts {}\nnext {}\n", self.attempts, self.next_attempt);
        if self.warned {
            s.push_str("warned 1\n");
        }
        if let Some(f) = &self.filter {
            s.push_str(&format!("filter {}\n", clean(f)));
        }
        for d in &self.done {
            s.push_str(&format!("done {}\n", clean(d)));
        }
        for l in &self.last {
            s.push_str(&format!(
                "last {}\t{}\t{}\t{}\n",
                clean(&l.orig),
                clean(&l.to),
                clean(&l.status),
                clean(&l.text)
            ));
        }
        s
    }

    pub fn parse(text: &str) -> Result<DeliveryState, String> {
        let mut st = DeliveryState::default();
        for line in text.lines() {
            let (k, v) = line.split_once(' ').unwrap_or((line, ""));
            match k {
                "attempts" => st.attempts = v.parse().map_err(|_| format!("bad attempts {v:?}"))?,
                "next" => st.next_attempt = v.parse().map_err(|_| format!("bad next {v:?}"))?,
                "warned" => st.warned = v == "1",
                "filter" if !v.is_empty() => st.filter = Some(v.to_string()),
                "done" => {
                    st.done.insert(v.to_string());
                }
                "last" => {
                    let f: Vec<&str> = v.splitn(4, '\t').collect();
                    let [orig, to, status, text] = f[..] else {
                        return Err(format!("bad last line {v:?}"));
                    };
                    st.last.push(LastResult {
                        orig: orig.into(),
                        to: to.into(),
                        status: status.into(),
                        text: text.into(),
                    });
                }
                "" => {}
                _ => return Err(format!("unknown state line {k:?}")),
            }
        }
        Ok(st)
    }
}

/// An envelope for tests: one recipient, from sender@client.test, queued
/// at `id_micros` (its ID too).
#[cfg(test)]
pub(crate) fn for_test(id_micros: u64, rcpt: Address) -> QueueEnvelope {
    QueueEnvelope {
        id: crate::queue::id::encode(id_micros),
        arrival_micros: id_micros,
        pid: 7,
        client_ip: None,
        client_name: "localhost".into(),
        helo: "test".into(),
        protocol: "ESMTP".into(),
        sender: ReversePath::Address(Address::new("sender", "client.test")),
        recipients: vec![rcpt],
        smtputf8: false,
        handling: Default::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let e = QueueEnvelope {
            id: "0Q7ZK3M4B2C".into(),
            arrival_micros: 1_795_826_316_123_456,
            pid: 42,
            client_ip: Some("::1".parse().unwrap()),
            client_name: "unknown".into(),
            helo: "evil\nrcpt x@y".into(),
            protocol: "ESMTP".into(),
            sender: ReversePath::Null,
            recipients: vec![
                Address::new("a b", "example.test"),
                Address::new("c", "x.test"),
            ],
            smtputf8: true,
            handling: Handling {
                hops: 4,
                filter: Some("[127.0.0.1]:10026".into()),
                ident: Some("0Q7ZK3M4B2B".into()),
                sign: true,
            },
        };
        let mut bytes = e.serialize().into_bytes();
        let n = bytes.len();
        bytes.extend_from_slice(b"Subject: x\n\nbody\n");
        let (back, off) = QueueEnvelope::parse(&bytes).unwrap();
        assert_eq!(off, n);
        assert_eq!(back.helo, "evil?rcpt x@y");
        assert_eq!(back.recipients, e.recipients);
        assert_eq!(back.client_ip, e.client_ip);
        assert_eq!(back.handling, e.handling);
    }

    #[test]
    fn damaged_headers_are_errors() {
        for bad in [
            &b""[..],
            b"POSTERN-QUEUE 1\nid X\n",
            b"garbage\n.\n",
            b"POSTERN-QUEUE 1\nbogus 1\n.\n",
        ] {
            assert!(QueueEnvelope::parse(bad).is_err());
        }
    }

    #[test]
    fn state_round_trip() {
        let mut s = DeliveryState {
            attempts: 3,
            next_attempt: 99,
            ..Default::default()
        };
        s.done.insert("mailbox:a@b.test".into());
        s.last.push(LastResult {
            orig: "team@b.test".into(),
            to: "x@remote.test".into(),
            status: "deferred".into(),
            text: "4.4.1 host said:\tno\nway".into(),
        });
        let back = DeliveryState::parse(&s.serialize()).unwrap();
        assert_eq!(back.last[0].text, "4.4.1 host said:?no?way");
        s.last[0].text = back.last[0].text.clone();
        assert_eq!(DeliveryState::parse(&s.serialize()).unwrap(), s);
    }
}
