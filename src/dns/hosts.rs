//! Where mail for a domain goes: the MX lookup, each MX host's addresses
//! in Postfix's smtp_host_lookup order (DNS, the system's own lookup, or
//! both), and the selection rules of mx.rs. Owns the one call into the C
//! library's resolver (getaddrinfo) and nothing else.
//!
//! Lookup order (postconf(5) smtp_host_lookup):
//! - `dns`: MX, then A/AAAA from the name servers (the default).
//! - `native`: no MX lookup; the domain's addresses from getaddrinfo
//!   (/etc/hosts, nsswitch), as an implicit MX.
//! - `dns, native`: the system lookup only for names DNS says do not exist
//!   (NXDOMAIN or no data), never after a DNS failure.
//! - `native, dns`: the other way round.
//!
//! getaddrinfo is called directly rather than through ToSocketAddrs: the
//! standard library folds its error codes into a message, and whether a
//! name is missing (bounce) or the lookup failed (try later) must not
//! depend on matching a possibly translated string. It blocks, so it runs
//! on smol's blocking thread pool.

use std::ffi::CString;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use nix::libc;

use super::mx::{self, Failure, Me, MxHost, Target};
use super::{Lookup, Resolver};

/// Names resolved per domain: enough to find ourselves among any sane MX
/// set; a 100-record answer does not cost 100 lookups per message.
pub const MAX_RESOLVE: usize = 32;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostLookup {
    Dns,
    Native,
}

impl HostLookup {
    /// `["dns", "native"]` as in Postfix; every bad word is reported.
    pub fn parse_list(words: &[String]) -> Result<Vec<HostLookup>, String> {
        let mut out = Vec::new();
        let mut bad = Vec::new();
        for w in words {
            match w.trim().to_ascii_lowercase().as_str() {
                "dns" => out.push(HostLookup::Dns),
                "native" => out.push(HostLookup::Native),
                _ => bad.push(format!("{w:?}")),
            }
        }
        if !bad.is_empty() {
            return Err(format!(
                "host_lookup: {} not known; allowed: \"dns\", \"native\"",
                bad.join(", ")
            ));
        }
        if out.is_empty() {
            return Err("host_lookup: empty; allowed: \"dns\", \"native\"".into());
        }
        out.dedup();
        Ok(out)
    }
}

/// The system resolver (getaddrinfo), off the async threads.
pub async fn native(name: &str) -> Lookup<Vec<IpAddr>> {
    let name = name.to_string();
    crate::pool::unblock(move || getaddrinfo(&name)).await
}

fn getaddrinfo(name: &str) -> Lookup<Vec<IpAddr>> {
    let Ok(c) = CString::new(name) else {
        return Lookup::NxDomain;
    };
    // SAFETY: addrinfo is a plain C struct for which all-zero is the
    // documented "no hints" value; we then set two integer fields.
    let mut hints: libc::addrinfo = unsafe { std::mem::zeroed() };
    hints.ai_family = libc::AF_UNSPEC;
    hints.ai_socktype = libc::SOCK_STREAM;
    let mut res: *mut libc::addrinfo = std::ptr::null_mut();
    // SAFETY: `c` is a NUL-terminated string that outlives the call, the
    // service is NULL (allowed), `hints` and `res` point to valid memory.
    let rc = unsafe { libc::getaddrinfo(c.as_ptr(), std::ptr::null(), &hints, &mut res) };
    match rc {
        0 => {}
        libc::EAI_NONAME => return Lookup::NxDomain,
        libc::EAI_NODATA => return Lookup::NoData,
        _ => {
            // SAFETY: gai_strerror returns a pointer to a static string.
            let msg = unsafe { std::ffi::CStr::from_ptr(libc::gai_strerror(rc)) };
            return Lookup::TempFail(format!("{name}: {}", msg.to_string_lossy()));
        }
    }
    let mut out: Vec<IpAddr> = Vec::new();
    let mut p = res;
    while !p.is_null() {
        // SAFETY: `p` is a node of the list getaddrinfo returned, not yet
        // freed; ai_addr points to a sockaddr of the family ai_family says.
        unsafe {
            let ai = &*p;
            let ip = match ai.ai_family {
                libc::AF_INET if !ai.ai_addr.is_null() => {
                    let sa = &*(ai.ai_addr as *const libc::sockaddr_in);
                    Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(sa.sin_addr.s_addr))))
                }
                libc::AF_INET6 if !ai.ai_addr.is_null() => {
                    let sa = &*(ai.ai_addr as *const libc::sockaddr_in6);
                    Some(IpAddr::V6(Ipv6Addr::from(sa.sin6_addr.s6_addr)))
                }
                _ => None,
            };
            if let Some(ip) = ip.filter(|ip| !out.contains(ip)) {
                out.push(ip);
            }
            p = ai.ai_next;
        }
    }
    if !res.is_null() {
        // SAFETY: `res` came from a successful getaddrinfo and is freed once.
        unsafe { libc::freeaddrinfo(res) };
    }
    if out.is_empty() {
        Lookup::NoData
    } else {
        Lookup::Found(out)
    }
}

impl Resolver {
    /// A host's addresses, by the methods of `order` in turn: the next one
    /// is asked only when the previous says the name does not exist.
    pub async fn host_addrs(&self, order: &[HostLookup], name: &str) -> Lookup<Vec<IpAddr>> {
        if let Ok(ip) = name
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
        {
            return Lookup::Found(vec![ip]);
        }
        let mut last = Lookup::NxDomain;
        for m in order {
            last = match m {
                HostLookup::Dns => self.ip_addrs(name).await,
                HostLookup::Native => native(name).await,
            };
            if !last.is_not_found() {
                return last;
            }
        }
        last
    }

    /// The hosts to try for mail to `domain`, best first, ourselves
    /// removed, with the warnings the MX answer gave (skipped records).
    /// `pick(n)` gives a random number below `n` for the MX shuffle.
    pub async fn mail_hosts(
        &self,
        order: &[HostLookup],
        domain: &str,
        me: &Me,
        pick: &mut (dyn FnMut(usize) -> usize + Send),
    ) -> Result<(Vec<Target>, Vec<String>), Failure> {
        let domain = super::wire::normalize(domain);
        // A domain literal (`user@[192.0.2.1]`) names the host itself.
        if let Some(lit) = domain.strip_prefix('[').and_then(|d| d.strip_suffix(']')) {
            let ip = lit.strip_prefix("ipv6:").unwrap_or(lit);
            if let Ok(ip) = ip.parse::<IpAddr>() {
                let host = MxHost {
                    name: domain.clone(),
                    preference: 0,
                    implicit: true,
                };
                let t = mx::select(&domain, vec![(host, Lookup::Found(vec![ip]))], me)?;
                return Ok((t, Vec::new()));
            }
        }
        let answer = if order.contains(&HostLookup::Dns) {
            let a = self.mx(&domain).await;
            // Not in DNS at all, but `native` may know it (/etc/hosts).
            if a == Lookup::NxDomain && order.contains(&HostLookup::Native) {
                Lookup::NoData
            } else {
                a
            }
        } else {
            Lookup::NoData
        };
        let (hosts, warnings) = mx::plan(&domain, answer, pick)?;
        let mut resolved = Vec::new();
        for h in hosts.into_iter().take(MAX_RESOLVE) {
            let addrs = self.host_addrs(order, &h.name).await;
            resolved.push((h, addrs));
        }
        let targets = mx::select(&domain, resolved, me)?;
        Ok((targets, warnings))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_order_words() {
        let l = |w: &[&str]| {
            HostLookup::parse_list(&w.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        };
        assert_eq!(
            l(&["dns", "native"]).unwrap(),
            [HostLookup::Dns, HostLookup::Native]
        );
        assert_eq!(l(&["Native"]).unwrap(), [HostLookup::Native]);
        let e = l(&["dns", "nis", "ldap"]).unwrap_err();
        assert!(
            e.contains("\"nis\", \"ldap\"") && e.contains("allowed"),
            "{e}"
        );
        assert!(l(&[]).is_err());
    }

    #[test]
    fn native_knows_localhost_and_literals() {
        // /etc/hosts only: nothing here may reach a real resolver.
        match smol::block_on(native("localhost")) {
            Lookup::Found(v) => assert!(v.iter().any(|ip| ip.is_loopback()), "{v:?}"),
            other => panic!("localhost: {other:?}"),
        }
        let r = Resolver::new(super::super::ResolverConfig {
            nameservers: Vec::new(),
            ..Default::default()
        });
        let got = smol::block_on(r.host_addrs(&[HostLookup::Dns], "[192.0.2.1]"));
        assert_eq!(got, Lookup::Found(vec!["192.0.2.1".parse().unwrap()]));
    }

    #[test]
    fn dns_failure_does_not_fall_back_to_native() {
        // No servers: DNS fails temporarily; `native` must not be asked,
        // even for a name it would know.
        let r = Resolver::new(super::super::ResolverConfig {
            nameservers: Vec::new(),
            ..Default::default()
        });
        let got = smol::block_on(r.host_addrs(&[HostLookup::Dns, HostLookup::Native], "localhost"));
        assert!(matches!(got, Lookup::TempFail(_)), "{got:?}");
        let got = smol::block_on(r.host_addrs(&[HostLookup::Native, HostLookup::Dns], "localhost"));
        assert!(matches!(got, Lookup::Found(_)), "{got:?}");
    }

    #[test]
    fn address_literal_domain() {
        let r = Resolver::new(super::super::ResolverConfig {
            nameservers: Vec::new(),
            ..Default::default()
        });
        let (t, _) = smol::block_on(r.mail_hosts(
            &[HostLookup::Dns],
            "[IPv6:2001:db8::25]",
            &Me::default(),
            &mut |n| n - 1,
        ))
        .unwrap();
        assert_eq!(t[0].addrs, ["2001:db8::25".parse::<IpAddr>().unwrap()]);
    }
}
