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
    Ok(match dir.classify(&rcpt.domain)? {
        // reject_unauth_destination
        DomainClass::Remote if may_relay(client) => Ok(()),
        DomainClass::Remote => Err(reply::relay_denied(&rcpt.to_string())),
        // We are its backup MX: the recipient is checked by the primary.
        DomainClass::Backup => Ok(()),
        DomainClass::Local | DomainClass::Hosted => match dir.resolve(rcpt)? {
            Resolution::Deliver(_) => Ok(()),
            Resolution::Unknown => Err(reply::unknown_user(&rcpt.to_string())),
            Resolution::Loop => Err(reply::alias_loop(&rcpt.to_string())),
        },
    })
}
