//! DNS messages on the wire (RFC 1035 4), pure: building a query and
//! checking and reading a reply. Owns the use of simple-dns; nothing else
//! in postern touches packet bytes. No sockets here (transport.rs).
//!
//! Rules:
//! - Queries ask for recursion and carry EDNS0 with a 1232-byte UDP size
//!   (RFC 6891; the DNS Flag Day 2020 value that avoids fragmentation).
//! - A reply is taken only if its ID, QR bit, opcode and question match
//!   the query (RFC 5452 9.1); names compare case-insensitively.
//! - A malformed packet is an error value, never a panic; the counts in
//!   its header are checked against its length before anything is
//!   allocated for them.
//! - Names come out lower-cased, without the trailing dot, and only when
//!   they are host-name-like (letters, digits, `-`, `_`); the root name
//!   is `""` (how a null MX's `.` arrives, RFC 7505).

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use simple_dns::rdata::{RData, OPT};
use simple_dns::{Name, Packet, PacketFlag, Question, CLASS, OPCODE, QCLASS, QTYPE, RCODE, TYPE};

/// RFC 6891 6.2.5 / DNS Flag Day 2020.
pub const EDNS_UDP_SIZE: u16 = 1232;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Qtype {
    A,
    Aaaa,
    Mx,
}

impl Qtype {
    fn code(self) -> TYPE {
        match self {
            Qtype::A => TYPE::A,
            Qtype::Aaaa => TYPE::AAAA,
            Qtype::Mx => TYPE::MX,
        }
    }
}

impl fmt::Display for Qtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Qtype::A => "A",
            Qtype::Aaaa => "AAAA",
            Qtype::Mx => "MX",
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Data {
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    /// Preference and exchange (`""` for the root, a null MX).
    Mx(u16, String),
    Cname(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub owner: String,
    pub data: Data,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rcode {
    NoError,
    NxDomain,
    /// SERVFAIL, REFUSED, FORMERR...: this server cannot answer; ask the next.
    Failed(u8),
}

/// A reply that belongs to our query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub rcode: Rcode,
    pub truncated: bool,
    /// The answer section's records of the kinds we read.
    pub answers: Vec<Record>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WireError {
    /// Not a DNS message, or a broken one.
    Malformed(String),
    /// A well-formed message for another query (ID or question differ).
    NotOurs,
}

/// Lower-cased text of a name when it looks like a host name.
fn name_text(n: &Name) -> Option<String> {
    let mut out = String::new();
    for (i, label) in n.get_labels().iter().enumerate() {
        let b: &[u8] = label.as_ref();
        if b.is_empty()
            || !b
                .iter()
                .all(|c| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'_')
        {
            return None;
        }
        if i > 0 {
            out.push('.');
        }
        out.push_str(&String::from_utf8_lossy(b).to_ascii_lowercase());
    }
    Some(out)
}

/// `example.test.` → `example.test`, lower-cased.
pub fn normalize(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// The query for `name`/`qtype` with ID `id`.
pub fn build_query(id: u16, name: &str, qtype: Qtype) -> Result<Vec<u8>, String> {
    let name = normalize(name);
    let qname = Name::new(&name).map_err(|e| format!("{name}: not a DNS name: {e}"))?;
    if name.is_empty() || name_text(&qname).is_none() {
        return Err(format!("{name:?}: not a host name"));
    }
    let mut q = Packet::new_query(id);
    q.set_flags(PacketFlag::RECURSION_DESIRED);
    q.questions.push(Question::new(
        qname,
        QTYPE::TYPE(qtype.code()),
        QCLASS::CLASS(CLASS::IN),
        false,
    ));
    *q.opt_mut() = Some(OPT {
        opt_codes: Vec::new(),
        udp_packet_size: EDNS_UDP_SIZE,
        version: 0,
    });
    q.build_bytes_vec()
        .map_err(|e| format!("{name}: cannot build query: {e}"))
}

/// Header counts that cannot fit in the packet mean a broken packet:
/// refuse it before simple-dns reserves room for them.
fn counts_fit(b: &[u8]) -> bool {
    if b.len() < 12 {
        return false;
    }
    let n = |i: usize| u16::from_be_bytes([b[i], b[i + 1]]) as usize;
    let (qd, an, ns, ar) = (n(4), n(6), n(8), n(10));
    // A question is at least 5 bytes, a record at least 11.
    qd * 5 + (an + ns + ar) * 11 <= b.len() - 12
}

/// Checks that `bytes` answers our query and reads it.
pub fn parse_reply(id: u16, name: &str, qtype: Qtype, bytes: &[u8]) -> Result<Reply, WireError> {
    let malformed = |what: &str| WireError::Malformed(what.to_string());
    if bytes.len() >= 2 && u16::from_be_bytes([bytes[0], bytes[1]]) != id {
        return Err(WireError::NotOurs);
    }
    if !counts_fit(bytes) {
        return Err(malformed("truncated or inconsistent header"));
    }
    let p = Packet::parse(bytes).map_err(|e| WireError::Malformed(e.to_string()))?;
    if p.id() != id || !p.has_flags(PacketFlag::RESPONSE) || p.opcode() != OPCODE::StandardQuery {
        return Err(WireError::NotOurs);
    }
    let [question] = p.questions.as_slice() else {
        return Err(WireError::NotOurs);
    };
    let same_name = name_text(&question.qname).is_some_and(|n| n == normalize(name));
    if !same_name
        || question.qtype != QTYPE::TYPE(qtype.code())
        || question.qclass != QCLASS::CLASS(CLASS::IN)
    {
        return Err(WireError::NotOurs);
    }
    let rcode = match p.rcode() {
        RCODE::NoError => Rcode::NoError,
        RCODE::NameError => Rcode::NxDomain,
        other => Rcode::Failed(other as u8),
    };
    let mut answers = Vec::new();
    for rr in &p.answers {
        if rr.class != CLASS::IN {
            continue;
        }
        let Some(owner) = name_text(&rr.name) else {
            continue;
        };
        let data = match &rr.rdata {
            RData::A(a) => Data::A(Ipv4Addr::from(a.address)),
            RData::AAAA(a) => Data::Aaaa(Ipv6Addr::from(a.address)),
            RData::MX(m) => match name_text(&m.exchange) {
                Some(x) => Data::Mx(m.preference, x),
                // An exchange that is not a host name cannot be used: keep
                // it visible as unusable rather than drop it silently.
                None => Data::Mx(m.preference, "?".into()),
            },
            RData::CNAME(c) => match name_text(&c.0) {
                Some(t) if !t.is_empty() => Data::Cname(t),
                _ => continue,
            },
            _ => continue,
        };
        answers.push(Record { owner, data });
    }
    Ok(Reply {
        rcode,
        truncated: p.has_flags(PacketFlag::TRUNCATION),
        answers,
    })
}

/// Where a name's chain of CNAMEs in one answer leads.
#[derive(Debug, PartialEq, Eq)]
pub enum Chain {
    /// Records of the asked type at the end of the chain.
    Found(Vec<Data>),
    /// The chain ends at a name the answer says nothing more about: ask
    /// again for it (`hops` CNAMEs followed).
    Follow { target: String, hops: usize },
    /// The name itself has no records of the type and no CNAME.
    NoData,
    /// More than `max` CNAMEs, or a loop.
    TooLong,
}

/// Follows CNAMEs from `name` inside `answers` (RFC 1034 3.6.2), at most
/// `max` of them.
pub fn follow(answers: &[Record], name: &str, qtype: Qtype, max: usize) -> Chain {
    let mut cur = normalize(name);
    let mut hops = 0;
    loop {
        let found: Vec<Data> = answers
            .iter()
            .filter(|r| r.owner == cur && kind_is(&r.data, qtype))
            .map(|r| r.data.clone())
            .collect();
        if !found.is_empty() {
            return Chain::Found(found);
        }
        let next = answers.iter().find_map(|r| match &r.data {
            Data::Cname(t) if r.owner == cur => Some(t.clone()),
            _ => None,
        });
        match next {
            Some(t) => {
                hops += 1;
                if hops > max {
                    return Chain::TooLong;
                }
                cur = t;
            }
            None if hops == 0 => return Chain::NoData,
            None => return Chain::Follow { target: cur, hops },
        }
    }
}

fn kind_is(d: &Data, q: Qtype) -> bool {
    matches!(
        (d, q),
        (Data::A(_), Qtype::A) | (Data::Aaaa(_), Qtype::Aaaa) | (Data::Mx(..), Qtype::Mx)
    )
}

#[cfg(test)]
mod tests;
