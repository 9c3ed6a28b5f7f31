//! A small stub resolver for outbound mail: MX, A and AAAA questions to
//! the configured recursive name servers over smol UDP/TCP, answered as
//! [`Lookup`]: records, no data, no such domain, or a temporary failure.
//! No cache (the box's local resolver, dnsmasq or unbound, has one).
//!
//! What lives where: wire.rs builds and reads packets (pure), transport.rs
//! asks one server once, conf.rs reads the server list (resolv.conf),
//! mx.rs turns MX answers into the hosts to try (pure, RFC 5321 5.1), and
//! hosts.rs puts it together with the system's own lookup (getaddrinfo)
//! in Postfix's smtp_host_lookup order. This module must not open files
//! other than resolv.conf, nor decide anything about delivery.
//!
//! Rules here:
//! - Servers are tried in order, `attempts` rounds, each try with its own
//!   `timeout` (resolv.conf semantics, defaults 5 s and 2).
//! - SERVFAIL, REFUSED and friends, a timeout or garbage: the next server;
//!   when every try failed, a temporary failure. NXDOMAIN and NOERROR are
//!   final (RFC 2308).
//! - CNAMEs are followed, in the answer and by asking again for the
//!   target, at most [`MAX_CNAME_HOPS`] in all; a longer chain or a loop is
//!   a temporary failure (a resolver fix may come, a bounce cannot be
//!   taken back).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ring::rand::SystemRandom;

pub mod conf;
pub mod hosts;
pub mod mx;
mod transport;
pub mod wire;

pub use conf::ResolverConfig;
pub use mx::MxRecord;
use wire::{Chain, Data, Qtype, Rcode};

/// CNAMEs followed for one question (mox uses the same bound).
pub const MAX_CNAME_HOPS: usize = 16;

/// The answer to one question.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lookup<T> {
    Found(T),
    /// The name exists, without records of this type.
    NoData,
    /// The name does not exist (RFC 1035 rcode 3).
    NxDomain,
    /// No usable answer now: timeouts, SERVFAIL, garbage.
    TempFail(String),
}

impl<T> Lookup<T> {
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Lookup<U> {
        match self {
            Lookup::Found(t) => Lookup::Found(f(t)),
            Lookup::NoData => Lookup::NoData,
            Lookup::NxDomain => Lookup::NxDomain,
            Lookup::TempFail(e) => Lookup::TempFail(e),
        }
    }

    /// NXDOMAIN or NODATA: the name has nothing of this kind.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Lookup::NoData | Lookup::NxDomain)
    }
}

pub struct Resolver {
    cfg: ResolverConfig,
    rng: SystemRandom,
}

impl Resolver {
    pub fn new(cfg: ResolverConfig) -> Resolver {
        Resolver {
            cfg,
            rng: SystemRandom::new(),
        }
    }

    pub fn config(&self) -> &ResolverConfig {
        &self.cfg
    }

    pub async fn mx(&self, domain: &str) -> Lookup<Vec<MxRecord>> {
        self.query(domain, Qtype::Mx).await.map(|v| {
            v.into_iter()
                .filter_map(|d| match d {
                    Data::Mx(preference, exchange) => Some(MxRecord {
                        preference,
                        exchange,
                    }),
                    _ => None,
                })
                .collect()
        })
    }

    pub async fn a(&self, name: &str) -> Lookup<Vec<Ipv4Addr>> {
        self.query(name, Qtype::A).await.map(|v| {
            v.into_iter()
                .filter_map(|d| match d {
                    Data::A(a) => Some(a),
                    _ => None,
                })
                .collect()
        })
    }

    pub async fn aaaa(&self, name: &str) -> Lookup<Vec<Ipv6Addr>> {
        self.query(name, Qtype::Aaaa).await.map(|v| {
            v.into_iter()
                .filter_map(|d| match d {
                    Data::Aaaa(a) => Some(a),
                    _ => None,
                })
                .collect()
        })
    }

    /// A and AAAA, asked at the same time. IPv4 addresses come first:
    /// on the small boxes this runs on, IPv6 is the one more often
    /// configured but unroutable.
    pub async fn ip_addrs(&self, name: &str) -> Lookup<Vec<IpAddr>> {
        let (v4, v6) = smol::future::zip(self.a(name), self.aaaa(name)).await;
        combine_addrs(v4, v6)
    }

    /// One question with CNAME chasing.
    async fn query(&self, name: &str, qtype: Qtype) -> Lookup<Vec<Data>> {
        let mut name = wire::normalize(name);
        let mut hops = 0;
        loop {
            let reply = match self.exchange(&name, qtype).await {
                Ok(r) => r,
                Err(e) => return Lookup::TempFail(e),
            };
            if reply.rcode == Rcode::NxDomain {
                // RFC 6604 3: the rcode is about the last name of the chain.
                return Lookup::NxDomain;
            }
            match wire::follow(&reply.answers, &name, qtype, MAX_CNAME_HOPS - hops) {
                Chain::Found(v) => return Lookup::Found(v),
                Chain::NoData => return Lookup::NoData,
                Chain::Follow { target, hops: h } => {
                    hops += h;
                    name = target;
                }
                Chain::TooLong => {
                    return Lookup::TempFail(format!(
                        "{name}: CNAME chain longer than {MAX_CNAME_HOPS} or a loop"
                    ))
                }
            }
        }
    }

    /// Asks the servers in turn until one gives NOERROR or NXDOMAIN.
    async fn exchange(&self, name: &str, qtype: Qtype) -> Result<wire::Reply, String> {
        if self.cfg.nameservers.is_empty() {
            return Err("no name servers configured".into());
        }
        let mut last = String::new();
        for _ in 0..self.cfg.attempts.max(1) {
            for &server in &self.cfg.nameservers {
                match transport::ask(server, name, qtype, self.cfg.timeout, &self.rng).await {
                    Ok(r) => match r.rcode {
                        Rcode::NoError | Rcode::NxDomain => return Ok(r),
                        Rcode::Failed(code) => {
                            last = format!("{server}: {}", rcode_name(code));
                        }
                    },
                    Err(e) => last = format!("{server}: {e}"),
                }
            }
        }
        Err(format!("{name} {qtype}: {last}"))
    }
}

fn rcode_name(code: u8) -> String {
    match code {
        1 => "FORMERR".into(),
        2 => "SERVFAIL".into(),
        4 => "NOTIMP".into(),
        5 => "REFUSED".into(),
        n => format!("rcode {n}"),
    }
}

/// A and AAAA answers as one: any address is an answer; both names
/// missing is NXDOMAIN; a failure of either, with no address, is a failure.
pub fn combine_addrs(v4: Lookup<Vec<Ipv4Addr>>, v6: Lookup<Vec<Ipv6Addr>>) -> Lookup<Vec<IpAddr>> {
    let mut addrs: Vec<IpAddr> = Vec::new();
    if let Lookup::Found(v) = &v4 {
        addrs.extend(v.iter().map(|a| IpAddr::V4(*a)));
    }
    if let Lookup::Found(v) = &v6 {
        addrs.extend(v.iter().map(|a| IpAddr::V6(*a)));
    }
    if !addrs.is_empty() {
        return Lookup::Found(addrs);
    }
    match (v4, v6) {
        (Lookup::TempFail(e), _) | (_, Lookup::TempFail(e)) => Lookup::TempFail(e),
        (Lookup::NxDomain, Lookup::NxDomain) => Lookup::NxDomain,
        _ => Lookup::NoData,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn combining_a_and_aaaa() {
        let v4 = || Lookup::Found(vec![Ipv4Addr::new(192, 0, 2, 1)]);
        let v6 = || Lookup::Found(vec!["2001:db8::1".parse::<Ipv6Addr>().unwrap()]);
        assert_eq!(
            combine_addrs(v4(), v6()),
            Lookup::Found(vec![
                "192.0.2.1".parse().unwrap(),
                "2001:db8::1".parse().unwrap()
            ])
        );
        assert!(matches!(
            combine_addrs(v4(), Lookup::TempFail("x".into())),
            Lookup::Found(_)
        ));
        assert!(matches!(
            combine_addrs(Lookup::NoData, Lookup::TempFail("x".into())),
            Lookup::TempFail(_)
        ));
        assert_eq!(
            combine_addrs(Lookup::NxDomain, Lookup::NxDomain),
            Lookup::NxDomain
        );
        assert_eq!(
            combine_addrs(Lookup::NoData, Lookup::NxDomain),
            Lookup::NoData
        );
    }

    #[test]
    fn no_servers_is_a_temporary_failure() {
        let r = Resolver::new(ResolverConfig {
            nameservers: Vec::new(),
            ..ResolverConfig::default()
        });
        let got = smol::block_on(r.mx("example.test"));
        assert!(matches!(got, Lookup::TempFail(e) if e.contains("no name servers")));
    }
}
