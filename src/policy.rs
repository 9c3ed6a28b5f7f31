//! Who may send what: the seed's `smtpd_recipient_restrictions =
//! permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination`,
//! and the recipient checks behind `unknown_local_recipient_reject_code`.
//!
//! The relay decision lives in [`may_relay`] and nowhere else. Mail for our
//! own domains (local, hosted, backup MX) is open to everyone, provided the
//! recipient exists; mail for any other domain only to trusted clients.
//! Address tricks cannot change the domain this decides on: the parser
//! drops source routes and keeps `%`, `!` and quoted `@` inside the local
//! part (see smtp/address.rs), and the directory never reads them as
//! routing.

use std::net::IpAddr;

use crate::config::Cidr;
use crate::directory::{Directory, DomainClass, Resolution, TempFail};
use crate::log;
use crate::smtp::address::Address;
use crate::smtp::reply::{self, Reply};

/// What is known about the client when a recipient is checked.
#[derive(Clone, Copy, Debug)]
pub struct Client {
    /// In the trusted networks (mynetworks).
    pub trusted_network: bool,
    /// Logged in with SMTP AUTH.
    pub authenticated: bool,
}

impl Client {
    pub fn new(ip: IpAddr, trusted: &[Cidr]) -> Client {
        Client {
            trusted_network: trusted.iter().any(|c| c.contains(ip)),
            authenticated: false,
        }
    }
}

/// permit_mynetworks, permit_sasl_authenticated.
pub fn may_relay(c: &Client) -> bool {
    c.trusted_network || c.authenticated
}

/// A lookup that failed: the client is told to retry, the log says why.
fn tempfail(e: TempFail) -> Reply {
    log::warning(&format!("recipient lookup failed: {e}"));
    reply::LOOKUP_TEMPFAIL
}

/// RCPT TO: accept, or the reply that refuses it. Blocking (lookups).
pub fn check_recipient(dir: &Directory, client: &Client, rcpt: &Address) -> Result<(), Reply> {
    verdict(dir, client, rcpt).unwrap_or_else(|e| Err(tempfail(e)))
}

/// The same answer, if it can be given from memory (the directory's
/// cache); `None` when a lookup needs I/O: ask [`check_recipient`] off the
/// executor then.
pub fn check_recipient_cached(
    dir: &Directory,
    client: &Client,
    rcpt: &Address,
) -> Option<Result<(), Reply>> {
    dir.from_memory(|d| verdict(d, client, rcpt))
        .and_then(|v| v.ok())
}

fn verdict(
    dir: &Directory,
    client: &Client,
    rcpt: &Address,
) -> Result<Result<(), Reply>, TempFail> {
    decide(dir, client, rcpt).map(|(_, v)| v)
}

/// Which rule of the recipient restrictions decided, in their order
/// (`postern explain` names it; the server only needs the verdict).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rule {
    /// permit_mynetworks: another domain, a client of the trusted networks.
    TrustedNetwork,
    /// permit_sasl_authenticated: another domain, a logged-in client.
    Authenticated,
    /// reject_unauth_destination: another domain, anyone else.
    RelayDenied,
    /// We are a backup MX for the domain: its primary checks recipients.
    BackupMx,
    /// One of our domains, and the recipient exists there.
    Exists(DomainClass),
    /// One of our domains, no such recipient (550 5.1.1).
    UnknownUser,
    /// One of our domains, its aliases loop (550 5.4.6).
    AliasLoop,
}

impl Rule {
    /// A short name for scripts (`--json`).
    pub fn name(self) -> &'static str {
        match self {
            Rule::TrustedNetwork => "trusted_network",
            Rule::Authenticated => "authenticated",
            Rule::RelayDenied => "relay_denied",
            Rule::BackupMx => "backup_mx",
            Rule::Exists(DomainClass::Local) => "local_domain",
            Rule::Exists(_) => "hosted_domain",
            Rule::UnknownUser => "unknown_user",
            Rule::AliasLoop => "alias_loop",
        }
    }

    /// What the rule says, for people.
    pub fn describe(self) -> &'static str {
        match self {
            Rule::TrustedNetwork => "not our domain; the client is in the trusted networks, so it may relay (permit_mynetworks)",
            Rule::Authenticated => "not our domain; the client is logged in, so it may relay (permit_sasl_authenticated)",
            Rule::RelayDenied => "not our domain, and the client is neither in the trusted networks nor logged in (reject_unauth_destination)",
            Rule::BackupMx => "we are a backup MX for this domain (backupmx = 1): accepted for any recipient and relayed onward",
            Rule::Exists(DomainClass::Local) => "a local domain (local_domains), and the recipient exists",
            Rule::Exists(_) => "a hosted domain, and the recipient exists",
            Rule::UnknownUser => "one of our domains, but no such recipient (unknown_local_recipient_reject_code)",
            Rule::AliasLoop => "one of our domains, but its aliases loop or nest too deep",
        }
    }
}

/// The verdict on RCPT and the rule that gave it.
pub fn decide(
    dir: &Directory,
    client: &Client,
    rcpt: &Address,
) -> Result<(Rule, Result<(), Reply>), TempFail> {
    Ok(match dir.classify(&rcpt.domain)? {
        // reject_unauth_destination
        DomainClass::Remote if client.trusted_network => (Rule::TrustedNetwork, Ok(())),
        DomainClass::Remote if may_relay(client) => (Rule::Authenticated, Ok(())),
        DomainClass::Remote => (
            Rule::RelayDenied,
            Err(reply::relay_denied(&rcpt.to_string())),
        ),
        // We are its backup MX: the recipient is checked by the primary.
        DomainClass::Backup => (Rule::BackupMx, Ok(())),
        class @ (DomainClass::Local | DomainClass::Hosted) => match dir.resolve(rcpt)? {
            Resolution::Deliver(_) => (Rule::Exists(class), Ok(())),
            Resolution::Unknown => (
                Rule::UnknownUser,
                Err(reply::unknown_user(&rcpt.to_string())),
            ),
            Resolution::Loop => (Rule::AliasLoop, Err(reply::alias_loop(&rcpt.to_string()))),
        },
    })
}

/// RCPT on a reinjection listener (the content filter's way back):
/// trusted clients only, and the recipients are not checked again (they
/// were on the first pass).
pub fn reinject_recipient(trusted_network: bool, rcpt: &Address) -> Result<(), Reply> {
    match trusted_network {
        true => Ok(()),
        false => Err(reply::reinject_denied(&rcpt.to_string())),
    }
}
