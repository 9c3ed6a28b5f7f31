//! The syntax of a transport value, as Postfix's transport(5) writes it
//! and PostfixAdmin's `domain.transport` column holds it:
//! `transport:nexthop`, `transport:`, `:nexthop`, `transport` or empty.
//!
//! | value | meaning |
//! |---|---|
//! | empty | the default for the address (Maildir for mailboxes, the default relay otherwise) |
//! | `virtual`, `maildir` (PostfixAdmin's default) | Maildir delivery |
//! | `smtp`, `relay` | the default relay |
//! | `smtp:[host]:port`, `relay:host`, `:[host]` | SMTP to that next hop; brackets: no MX lookup |
//! | `error:text` | bounce with that text (5.0.0) |
//! | `retry:text` | defer with that text (4.0.0) |
//! | `discard:text` | accept and drop |
//! | any other `name[:nexthop]` | the transport of that name in the config |
//!
//! Pure; no lookups.

use super::NextHop;

/// A parsed transport value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Spec {
    Default,
    Maildir,
    Relay(Option<NextHop>),
    Error(String),
    Retry(String),
    Discard(String),
    Named(String),
    /// Unusable; the text says why.
    Bad(String),
}

pub fn parse(value: &str) -> Spec {
    let value = value.trim();
    if value.is_empty() {
        return Spec::Default;
    }
    let (name, rest) = match value.split_once(':') {
        Some((n, r)) => (n.trim().to_ascii_lowercase(), Some(r.trim())),
        None => (value.to_ascii_lowercase(), None),
    };
    let text = |default: &str| {
        rest.filter(|r| !r.is_empty())
            .unwrap_or(default)
            .to_string()
    };
    match name.as_str() {
        // PostfixAdmin writes "virtual" into every domain by default: it
        // means "the virtual transport", whatever [delivery]
        // virtual_transport names (the seed's procmail), as it did for
        // Postfix, which never read the column there.
        "virtual" if rest.is_none_or(str::is_empty) => Spec::Default,
        "maildir" if rest.is_none_or(str::is_empty) => Spec::Maildir,
        "virtual" | "maildir" => Spec::Bad(format!(
            "transport {value:?}: a Maildir transport takes no next hop"
        )),
        "smtp" | "relay" | "" => match rest.filter(|r| !r.is_empty()) {
            None => Spec::Relay(None),
            Some(hop) => match next_hop(hop, 25) {
                Some(h) => Spec::Relay(Some(h)),
                None => Spec::Bad(format!("transport {value:?}: bad next hop {hop:?}")),
            },
        },
        "error" => Spec::Error(text("mail for this domain is refused")),
        "retry" => Spec::Retry(text("mail for this domain is held back")),
        "discard" => Spec::Discard(text("discarded by transport")),
        _ if name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) =>
        {
            Spec::Named(name)
        }
        _ => Spec::Bad(format!("transport {value:?} is not a transport name")),
    }
}

/// `[host]:port`, `[host]`, `host:port` or `host` (an MX lookup domain).
/// IPv6 literals only in brackets, with or without Postfix's `ipv6:`.
pub fn next_hop(s: &str, default_port: u16) -> Option<NextHop> {
    let s = s.trim();
    let (host, port, mx) = if let Some(inner) = s.strip_prefix('[') {
        let (host, after) = inner.split_once(']')?;
        let host = host
            .strip_prefix("ipv6:")
            .or_else(|| host.strip_prefix("IPv6:"))
            .unwrap_or(host);
        let port = match after {
            "" => default_port,
            p => p.strip_prefix(':')?.parse().ok()?,
        };
        (host, port, false)
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (h, p.parse().ok()?, true),
            None => (s, default_port, true),
        }
    };
    let ok = !host.is_empty()
        && host.len() <= 253
        && (host.parse::<std::net::IpAddr>().is_ok()
            || host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.'));
    (ok && port != 0).then(|| NextHop {
        host: host.to_ascii_lowercase(),
        port,
        mx,
    })
}
