//! Which name servers the resolver asks, and how patiently: from a list in
//! postern's configuration (`"127.0.0.1:5353"`, tests use a high loopback
//! port), or, when that list is empty, from /etc/resolv.conf. Owns the
//! reading of resolv.conf and nothing else.
//!
//! resolv.conf is read with resolv-conf's `parse_with_errors`: its strict
//! parser stops at the first option it does not know (`options edns0
//! trust-ad` on many systems), which must not cost us the server list. A
//! scoped IPv6 server (`fe80::1%br-lan`) does not parse there and is
//! reported. Defaults follow resolv.conf(5): timeout 5 s, 2 attempts, and
//! 127.0.0.1 when no server is named.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

pub const RESOLV_CONF: &str = "/etc/resolv.conf";
/// resolv.conf(5) caps: timeout 30 s, attempts 5.
const MAX_TIMEOUT_SECS: u32 = 30;
const MAX_ATTEMPTS: u32 = 5;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolverConfig {
    pub nameservers: Vec<SocketAddr>,
    /// Per try with one server.
    pub timeout: Duration,
    /// Rounds over the server list.
    pub attempts: u32,
}

impl Default for ResolverConfig {
    fn default() -> Self {
        ResolverConfig {
            nameservers: vec![SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 53)],
            timeout: Duration::from_secs(5),
            attempts: 2,
        }
    }
}

/// `192.0.2.1`, `192.0.2.1:5353`, `2001:db8::1` or `[2001:db8::1]:5353`.
pub fn parse_nameserver(s: &str) -> Result<SocketAddr, String> {
    let s = s.trim();
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, 53));
    }
    Err(format!(
        "{s:?}: not a name server address; allowed: an IP address, optionally with :port \
         (IPv6 with a port in brackets, [2001:db8::1]:53)"
    ))
}

impl ResolverConfig {
    /// From resolv.conf text; the warnings name what was skipped.
    pub fn from_resolv_conf(text: &[u8]) -> (ResolverConfig, Vec<String>) {
        let (rc, errors) = resolv_conf::Config::parse_with_errors(text);
        let mut warnings: Vec<String> = errors
            .iter()
            .map(|e| format!("{RESOLV_CONF}: {e} (skipped)"))
            .collect();
        let mut cfg = ResolverConfig {
            nameservers: rc
                .nameservers
                .iter()
                .map(|ns| SocketAddr::new(IpAddr::from(ns), 53))
                .collect(),
            timeout: Duration::from_secs(rc.timeout.clamp(1, MAX_TIMEOUT_SECS) as u64),
            attempts: rc.attempts.clamp(1, MAX_ATTEMPTS),
        };
        if cfg.nameservers.is_empty() {
            warnings.push(format!(
                "{RESOLV_CONF}: no nameserver line; using 127.0.0.1"
            ));
            cfg.nameservers = ResolverConfig::default().nameservers;
        }
        (cfg, warnings)
    }

    /// The configured servers, or resolv.conf's when the list is empty.
    /// Every bad entry is reported at once.
    pub fn load(configured: &[String]) -> Result<(ResolverConfig, Vec<String>), String> {
        if configured.is_empty() {
            let text = std::fs::read(RESOLV_CONF).map_err(|e| format!("{RESOLV_CONF}: {e}"))?;
            return Ok(ResolverConfig::from_resolv_conf(&text));
        }
        let (ok, bad): (Vec<_>, Vec<_>) = configured
            .iter()
            .map(|s| parse_nameserver(s))
            .partition(Result::is_ok);
        if !bad.is_empty() {
            let errs: Vec<String> = bad.into_iter().filter_map(Result::err).collect();
            return Err(errs.join("\n"));
        }
        let cfg = ResolverConfig {
            nameservers: ok.into_iter().filter_map(Result::ok).collect(),
            ..ResolverConfig::default()
        };
        Ok((cfg, Vec::new()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nameserver_forms() {
        assert_eq!(parse_nameserver("127.0.0.1:5353").unwrap().port(), 5353);
        assert_eq!(parse_nameserver("192.0.2.1").unwrap().port(), 53);
        assert_eq!(parse_nameserver("::1").unwrap().port(), 53);
        assert_eq!(parse_nameserver("[::1]:54").unwrap().port(), 54);
        let e = parse_nameserver("dns.example.test").unwrap_err();
        assert!(e.contains("allowed"), "{e}");
    }

    #[test]
    fn resolv_conf_with_unknown_options_and_scoped_v6() {
        let text = b"# generated\nnameserver 192.0.2.53\nnameserver fe80::1%br-lan\n\
                     nameserver 2001:db8::53\noptions edns0 trust-ad timeout:3 attempts:4 \
                     no-such-option\nsearch lan\n";
        let (cfg, warnings) = ResolverConfig::from_resolv_conf(text);
        let servers: Vec<String> = cfg.nameservers.iter().map(|s| s.to_string()).collect();
        assert!(
            servers.contains(&"192.0.2.53:53".to_string()),
            "{servers:?}"
        );
        assert!(
            servers.contains(&"[2001:db8::53]:53".to_string()),
            "{servers:?}"
        );
        assert_eq!((cfg.timeout, cfg.attempts), (Duration::from_secs(3), 4));
        // Whatever resolv-conf could not use is reported, not fatal.
        let _ = warnings;
    }

    #[test]
    fn defaults_and_caps() {
        let (cfg, w) = ResolverConfig::from_resolv_conf(b"options timeout:100 attempts:0\n");
        assert_eq!(cfg.nameservers, ResolverConfig::default().nameservers);
        assert_eq!((cfg.timeout.as_secs(), cfg.attempts), (30, 1));
        assert!(w.iter().any(|w| w.contains("no nameserver")));
        let (cfg, _) = ResolverConfig::from_resolv_conf(b"nameserver 192.0.2.1\n");
        assert_eq!((cfg.timeout.as_secs(), cfg.attempts), (5, 2));
    }

    #[test]
    fn configured_list_reports_every_bad_entry() {
        let e =
            ResolverConfig::load(&["127.0.0.1:5353".into(), "x".into(), "y:z".into()]).unwrap_err();
        assert_eq!(e.lines().count(), 2, "{e}");
        let (cfg, _) = ResolverConfig::load(&["127.0.0.1:5353".into()]).unwrap();
        assert_eq!(cfg.nameservers[0].to_string(), "127.0.0.1:5353");
    }
}
