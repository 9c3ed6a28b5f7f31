//! From a domain's MX answer to the hosts to try, best first (RFC 5321
//! 5.1). Pure: answers and randomness come in, a list or a typed failure
//! goes out; the lookups are hosts.rs's.
//!
//! Rules:
//! - Sort by preference, lowest first; hosts of equal preference are
//!   shuffled (RFC 5321 5.1 says SHOULD randomise them) with the caller's
//!   randomness, so tests can fix it.
//! - NOERROR without MX records: the domain itself is the one host, at
//!   preference 0 (the implicit MX). With MX records, the domain's own
//!   addresses are never used.
//! - A null MX (`0 .`, RFC 7505) as the only record: permanent, 556
//!   5.1.10. Mixed with real MX records (which RFC 7505 3 forbids), the
//!   `.` is ignored.
//! - NXDOMAIN: permanent 5.4.4. SERVFAIL, timeouts, garbage: temporary
//!   4.4.3 (Postfix smtp_addr.c, OpenSMTPD mta.c).
//! - An MX name that is an IP address (`10 192.0.2.1`) is not a host name
//!   (RFC 5321 5.1: MX data is a domain name). Postfix rejects it as a
//!   malformed name; we skip it with a warning and use the other MX hosts;
//!   if nothing else is left, that is a temporary failure (a DNS fix is
//!   likely, a bounce is final).
//! - Ourselves (Postfix smtp_find_self): an MX whose addresses include one
//!   of ours, or whose name is ours, is us. We and every MX at our
//!   preference or worse are dropped: that is also the backup-MX rule
//!   (a backup MX relays only to hosts with a lower preference value than
//!   its own). Nothing left: "mail for D loops back to myself", 5.4.6 when
//!   we were at the best preference, else 4.4.4.
//! - At most [`MAX_MX_HOSTS`] hosts per attempt (chasquid's limit; Postfix
//!   caps addresses at 5).

use std::net::IpAddr;

use super::Lookup;
use crate::smtp::reply::Esc;

pub const MAX_MX_HOSTS: usize = 5;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MxRecord {
    pub preference: u16,
    /// Lower-cased, no trailing dot; `""` is the root (null MX).
    pub exchange: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MxHost {
    pub name: String,
    pub preference: u16,
    /// The domain itself, for want of MX records.
    pub implicit: bool,
}

/// A host to connect to, with its addresses in resolver order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub host: String,
    pub preference: u16,
    pub addrs: Vec<IpAddr>,
}

/// Why there is nowhere to send mail for a domain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub permanent: bool,
    /// SMTP code for a DSN or a log line: 556 for a null MX, else 550/450.
    pub code: u16,
    pub esc: Esc,
    pub text: String,
}

impl Failure {
    fn new(permanent: bool, esc: Esc, text: String) -> Failure {
        let code = if permanent { 550 } else { 450 };
        Failure {
            permanent,
            code,
            esc,
            text,
        }
    }
}

/// Who we are, to find ourselves among the MX hosts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Me {
    /// Interface addresses plus any public address we are reached by
    /// (NAT; Postfix's proxy_interfaces).
    pub addrs: Vec<IpAddr>,
    /// Our host names, lower-cased.
    pub names: Vec<String>,
}

/// The MX names to look up, best first, and warnings about skipped records.
pub fn plan(
    domain: &str,
    answer: Lookup<Vec<MxRecord>>,
    shuffle: &mut dyn FnMut(usize) -> usize,
) -> Result<(Vec<MxHost>, Vec<String>), Failure> {
    let mut records = match answer {
        Lookup::Found(r) => r,
        Lookup::NoData => {
            let h = MxHost {
                name: domain.to_string(),
                preference: 0,
                implicit: true,
            };
            return Ok((vec![h], Vec::new()));
        }
        Lookup::NxDomain => {
            let text = format!(
                "Host or domain name not found. Name service error for name={domain} type=MX: \
                 Host not found"
            );
            return Err(Failure::new(true, Esc(5, 4, 4), text));
        }
        Lookup::TempFail(e) => {
            let text = format!(
                "Host or domain name not found. Name service error for name={domain} type=MX: \
                 Host not found, try again ({e})"
            );
            return Err(Failure::new(false, Esc(4, 4, 3), text));
        }
    };
    if records.len() == 1 && records[0].exchange.is_empty() {
        return Err(Failure {
            permanent: true,
            code: 556,
            esc: Esc(5, 1, 10),
            text: format!("Domain {domain} does not accept mail (nullMX)"),
        });
    }
    let mut warnings = Vec::new();
    records.retain(|r| {
        let name = r.exchange.trim_start_matches('[').trim_end_matches(']');
        let ok = if r.exchange.is_empty() {
            false
        } else if name.parse::<IpAddr>().is_ok() || r.exchange == "?" {
            warnings.push(format!(
                "{domain}: MX {} {:?} is not a host name; skipped",
                r.preference, r.exchange
            ));
            false
        } else {
            true
        };
        ok
    });
    records.sort_by_key(|r| r.preference);
    // The same name at two preferences: keep its best (already first).
    let mut seen = std::collections::HashSet::new();
    records.retain(|r| seen.insert(r.exchange.clone()));
    if records.is_empty() {
        // Say why: the skipped records are the whole story here.
        let why: Vec<&str> = warnings
            .iter()
            .map(|w| w.strip_prefix(&format!("{domain}: ")).unwrap_or(w))
            .collect();
        let text = match why.is_empty() {
            true => format!("no usable MX host for {domain}"),
            false => format!("no usable MX host for {domain}: {}", why.join("; ")),
        };
        return Err(Failure::new(false, Esc(4, 4, 4), text));
    }
    let mut i = 0;
    while i < records.len() {
        let p = records[i].preference;
        let j = i + records[i..]
            .iter()
            .take_while(|r| r.preference == p)
            .count();
        shuffle_slice(&mut records[i..j], shuffle);
        i = j;
    }
    let hosts = records
        .into_iter()
        .map(|r| MxHost {
            name: r.exchange,
            preference: r.preference,
            implicit: false,
        })
        .collect();
    Ok((hosts, warnings))
}

/// Fisher-Yates with `pick(n)` giving a number in `0..n`.
fn shuffle_slice<T>(v: &mut [T], pick: &mut dyn FnMut(usize) -> usize) {
    for k in (1..v.len()).rev() {
        let j = pick(k + 1) % (k + 1);
        v.swap(k, j);
    }
}

/// The hosts to connect to, given each planned host's address lookup.
pub fn select(
    domain: &str,
    resolved: Vec<(MxHost, Lookup<Vec<IpAddr>>)>,
    me: &Me,
) -> Result<Vec<Target>, Failure> {
    let is_me = |h: &MxHost, a: &Lookup<Vec<IpAddr>>| {
        me.names.iter().any(|n| n.eq_ignore_ascii_case(&h.name))
            || matches!(a, Lookup::Found(v) if v.iter().any(|ip| me.addrs.contains(ip)))
    };
    let best = resolved.iter().map(|(h, _)| h.preference).min();
    let ours = resolved
        .iter()
        .filter(|(h, a)| is_me(h, a))
        .map(|(h, _)| h.preference)
        .min();
    let mut temp = None;
    let mut targets = Vec::new();
    for (h, a) in resolved {
        if ours.is_some_and(|p| h.preference >= p) {
            continue;
        }
        match a {
            Lookup::Found(addrs) if !addrs.is_empty() => targets.push(Target {
                host: h.name,
                preference: h.preference,
                addrs,
            }),
            Lookup::TempFail(e) => temp = Some(format!("{}: {e}", h.name)),
            _ => {}
        }
    }
    if let (true, Some(p)) = (targets.is_empty(), ours) {
        let text = format!("mail for {domain} loops back to myself");
        return Err(if Some(p) == best {
            Failure::new(true, Esc(5, 4, 6), text)
        } else {
            Failure::new(false, Esc(4, 4, 4), text)
        });
    }
    if targets.is_empty() {
        return Err(match temp {
            Some(e) => Failure::new(
                false,
                Esc(4, 4, 3),
                format!("Host or domain name not found for {domain}, try again ({e})"),
            ),
            None => Failure::new(
                true,
                Esc(5, 4, 4),
                format!("Host or domain name not found: no address for any mail host of {domain}"),
            ),
        });
    }
    targets.truncate(MAX_MX_HOSTS);
    Ok(targets)
}

#[cfg(test)]
mod tests;
