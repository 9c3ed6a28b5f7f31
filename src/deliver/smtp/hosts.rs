//! Where a next hop leads: its hosts and their addresses, in the order to
//! try. A hop with MX lookup (`isp.test`, or a recipient domain) goes to
//! its MX hosts (dns::hosts::Resolver::mail_hosts: preference order, equal
//! preferences shuffled, at most 5, ourselves removed, null MX and
//! NXDOMAIN final, other DNS trouble temporary); a bracketed one
//! (`[smtp.isp.test]:587`) to that host's addresses.

use std::net::IpAddr;

use crate::deliver::Outcome;
use crate::dns::hosts::HostLookup;
use crate::dns::mx::Me;
use crate::dns::{Lookup, Resolver};
use crate::route::NextHop;
use crate::smtp::reply::Esc;

/// Addresses tried per host (Postfix tries at most 5 addresses in all).
pub const MAX_ADDRS: usize = 5;

/// One host to try.
#[derive(Clone, Debug)]
pub struct Host {
    pub name: String,
    pub port: u16,
    pub addrs: Vec<IpAddr>,
    /// The next hop it came from (its relay login is filed under it).
    pub hop: Option<NextHop>,
}

/// The hosts of one next hop, or the outcome for every recipient when
/// there are none (final or temporary, as the lookup said).
pub async fn resolve(
    resolver: &Resolver,
    order: &[HostLookup],
    hop: &NextHop,
    me: &Me,
    pick: &mut (dyn FnMut(usize) -> usize + Send),
) -> Result<Vec<Host>, Outcome> {
    if hop.mx {
        return match resolver.mail_hosts(order, &hop.host, me, pick).await {
            Ok((targets, warnings)) => {
                // Records skipped while others were usable (an MX that is
                // an IP address): the mail goes on, the DNS needs a fix.
                for w in warnings {
                    crate::log::warning(&w);
                }
                Ok(targets
                    .into_iter()
                    .map(|t| Host {
                        name: t.host,
                        port: hop.port,
                        addrs: t.addrs,
                        hop: Some(hop.clone()),
                    })
                    .collect())
            }
            Err(f) => Err(if f.permanent {
                Outcome::failed(f.esc, f.text)
            } else {
                Outcome::deferred(f.esc, f.text)
            }),
        };
    }
    match resolver.host_addrs(order, &hop.host).await {
        Lookup::Found(addrs) => Ok(vec![Host {
            name: hop.host.clone(),
            port: hop.port,
            addrs,
            hop: Some(hop.clone()),
        }]),
        // A relay the configuration names but DNS does not know: the
        // configuration can be fixed, so the mail waits (Postfix defers).
        Lookup::NxDomain | Lookup::NoData => Err(Outcome::deferred(
            Esc(4, 4, 4),
            format!("relay host {} not found", hop.host),
        )),
        Lookup::TempFail(e) => Err(Outcome::deferred(
            Esc(4, 4, 3),
            format!("cannot look up relay host {}: {e}", hop.host),
        )),
    }
}

/// Who we are, to find ourselves among MX hosts: the hostname, the
/// listeners' addresses `bound` (every interface's, for a wildcard
/// listener) and `[relay] own_addresses` (a NAT's public address).
pub fn me(cfg: &crate::config::Config, bound: &[std::net::SocketAddr]) -> Me {
    let mut addrs: Vec<IpAddr> = bound
        .iter()
        .map(|b| b.ip())
        .filter(|ip| !ip.is_unspecified())
        .collect();
    if bound.iter().any(|b| b.ip().is_unspecified()) {
        if let Ok(ifs) = nix::ifaddrs::getifaddrs() {
            for a in ifs.filter_map(|i| i.address) {
                if let Some(v4) = a.as_sockaddr_in() {
                    addrs.push(IpAddr::V4(v4.ip()));
                } else if let Some(v6) = a.as_sockaddr_in6() {
                    addrs.push(IpAddr::V6(v6.ip()));
                }
            }
        }
    }
    addrs.extend(
        cfg.relay
            .own_addresses
            .iter()
            .filter_map(|a| a.parse::<IpAddr>().ok()),
    );
    addrs.sort();
    addrs.dedup();
    Me {
        addrs,
        names: vec![cfg.hostname().to_ascii_lowercase()],
    }
}
