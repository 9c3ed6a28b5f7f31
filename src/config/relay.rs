//! The checks of `[relay]` and `[[relay.route]]`, and the relay logins of
//! `[relay] credentials_file` (the seed's sasl_passwd):
//!
//! ```text
//! # next hop, exactly as the route or default names it   login:password
//! [smtp.isp.test]:587      alice@isp.test:s3cret
//! [mail01p.example.test]   relayuser:other-secret
//! ```
//!
//! The file must be mode 0600 or stricter (else postern refuses to start,
//! as a password readable by others is a leak waiting to happen); a bad
//! line is an error naming its line. Passwords live in [`Secret`]s and
//! never reach a log line or an error message.

use std::collections::HashMap;
use std::path::Path;

use toml::de::{DeTable, DeValue};

use super::schema::Ctx;
use super::{is_domain, Config};
use crate::route::transport::next_hop;
use crate::route::NextHop;
use crate::smtp::client::ClientCredentials;
use crate::smtp::sasl::Secret;

/// Relay logins by next hop.
#[derive(Clone, Debug, Default)]
pub struct Credentials {
    by_hop: HashMap<String, (String, Secret)>,
}

impl Credentials {
    /// The login for `hop`: the entry for `[host]:port` (as written), else
    /// `[host]`, else `host` (Postfix's lookup order).
    pub fn for_hop(&self, hop: &NextHop) -> Option<ClientCredentials> {
        self.entry(hop).map(|(_, (user, pw))| ClientCredentials {
            user: user.clone(),
            password: pw.clone(),
        })
    }

    /// Which line serves `hop`: its key as written and the login name
    /// (never the password), for `postern explain`.
    pub fn entry_for(&self, hop: &NextHop) -> Option<(String, String)> {
        self.entry(hop).map(|(key, (user, _))| (key, user.clone()))
    }

    fn entry(&self, hop: &NextHop) -> Option<(String, &(String, Secret))> {
        let host = hop.host.to_ascii_lowercase();
        let keys = if hop.mx {
            vec![format!("{host}:{}", hop.port), host]
        } else {
            vec![format!("[{host}]:{}", hop.port), format!("[{host}]"), host]
        };
        keys.into_iter()
            .find_map(|k| self.by_hop.get(&k).map(|v| (k, v)))
    }

    /// The key a route's hop is filed under, if it has a login.
    pub fn key_for(&self, hop: &NextHop) -> Option<String> {
        self.for_hop(hop).map(|_| hop.to_string())
    }

    pub fn len(&self) -> usize {
        self.by_hop.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_hop.is_empty()
    }

    /// Reads a credentials file; errors are (line, problem), never with a
    /// password in them.
    pub fn read(path: &Path) -> Result<Credentials, Vec<(usize, String)>> {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(path).map_err(|e| vec![(0, format!("cannot read: {e}"))])?;
        if meta.mode() & 0o077 != 0 {
            return Err(vec![(
                0,
                format!(
                    "mode {:o} lets others read the passwords; allowed: 0600 or stricter (chmod 600 {})",
                    meta.mode() & 0o777,
                    path.display()
                ),
            )]);
        }
        let text = std::fs::read(path).map_err(|e| vec![(0, format!("cannot read: {e}"))])?;
        let text = String::from_utf8(text).map_err(|_| vec![(0, "not UTF-8".to_string())])?;
        let mut c = Credentials::default();
        let mut errors = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut words = line.split_whitespace();
            let (Some(hop), Some(login), None) = (words.next(), words.next(), words.next()) else {
                errors.push((i + 1, "expected \"[host]:port login:password\"".to_string()));
                continue;
            };
            let Some((user, password)) = login.split_once(':') else {
                errors.push((
                    i + 1,
                    "the login has no \":password\" after the name".to_string(),
                ));
                continue;
            };
            if user.is_empty() {
                errors.push((i + 1, "empty login name".to_string()));
                continue;
            }
            let Some(parsed) = next_hop(hop, 25) else {
                errors.push((
                    i + 1,
                    format!("{hop:?} is not a next hop such as [smtp.isp.test]:587"),
                ));
                continue;
            };
            let key = hop.to_ascii_lowercase();
            let _ = parsed;
            c.by_hop.insert(
                key,
                (user.to_string(), Secret::new(password.as_bytes().to_vec())),
            );
        }
        if errors.is_empty() {
            Ok(c)
        } else {
            Err(errors)
        }
    }
}

impl Config {
    /// `[relay]` and its routes: the values, and their files in server scope.
    pub(super) fn check_relay(&mut self, ctx: &mut Ctx<'_>, root: &DeTable<'_>, files: bool) {
        let at = |k: &str| key_offset(root, &["relay", k]);
        let r = &self.relay;
        if r.default != "mx" && next_hop(&r.default, 25).is_none() {
            ctx.error(
                at("default"),
                "relay.default",
                format!("{:?} is not \"mx\" or a next hop", r.default),
                "\"mx\", \"[smtp.isp.test]:587\" or \"isp.test\"",
            );
        }
        if let Err(e) = crate::dns::hosts::HostLookup::parse_list(&r.host_lookup) {
            ctx.error(
                at("host_lookup"),
                "relay.host_lookup",
                e,
                "a list of \"dns\", \"native\"",
            );
        }
        for (i, s) in r.dns_servers.iter().enumerate() {
            if let Err(e) = crate::dns::conf::parse_nameserver(s) {
                ctx.error(
                    at("dns_servers"),
                    "relay.dns_servers",
                    format!("item {}: {e}", i + 1),
                    "",
                );
            }
        }
        for (i, a) in r.own_addresses.iter().enumerate() {
            if a.parse::<std::net::IpAddr>().is_err() {
                ctx.error(
                    at("own_addresses"),
                    "relay.own_addresses",
                    format!("item {}: {a:?} is not an IP address", i + 1),
                    "IP addresses such as \"203.0.113.7\"",
                );
            }
        }
        for (key, v) in [
            ("concurrency", r.concurrency),
            ("concurrency_per_destination", r.concurrency_per_destination),
        ] {
            if v == 0 || v > 1000 {
                ctx.error(
                    at(key),
                    &format!("relay.{key}"),
                    format!("{v} is out of range"),
                    "1 to 1000",
                );
            }
        }
        self.check_routes(ctx, root);
        if files {
            self.read_relay_files(ctx, root);
        }
    }

    fn check_routes(&self, ctx: &mut Ctx<'_>, root: &DeTable<'_>) {
        for (i, route) in self.relay_routes.iter().enumerate() {
            let at = route_offset(root, i);
            let key = |k: &str| format!("relay.route[{}].{k}", i + 1);
            let d = route.domain.strip_prefix('.').unwrap_or(&route.domain);
            if !is_domain(d) {
                ctx.error(
                    at,
                    &key("domain"),
                    format!("{:?} is not a domain", route.domain),
                    "\"mail01.example.test\" or \".example.test\"",
                );
            }
            let target = route.target.trim();
            let target_ok = target.is_empty()
                || target == "discard"
                || target
                    .strip_prefix("error:")
                    .is_some_and(|t| !t.trim().is_empty());
            if !target_ok {
                ctx.error(
                    at,
                    &key("target"),
                    format!("{target:?} is not a target"),
                    "\"discard\" or \"error: text\"",
                );
            }
            if target.is_empty() && route.primary.is_empty() {
                ctx.error(
                    at,
                    &key("primary"),
                    "missing",
                    "a relay \"[host]:port\", or a target",
                );
            }
            for (k, hop) in std::iter::once(("primary", &route.primary))
                .filter(|(_, h)| !h.is_empty())
                .chain(route.fallback.iter().map(|h| ("fallback", h)))
            {
                if next_hop(hop, 25).is_none() {
                    ctx.error(
                        at,
                        &key(k),
                        format!("{hop:?} is not a next hop"),
                        "\"[host]:port\", \"[host]\" or \"host\"",
                    );
                }
            }
        }
    }

    /// The credentials file and the CA file.
    fn read_relay_files(&mut self, ctx: &mut Ctx<'_>, root: &DeTable<'_>) {
        let at = |k: &str| key_offset(root, &["relay", k]);
        if !self.relay.credentials_file.is_empty() {
            let path = self.resolve(Path::new(&self.relay.credentials_file));
            match Credentials::read(&path) {
                Ok(c) => self.credentials = c,
                Err(errors) => {
                    for (line, problem) in errors {
                        let where_ = if line == 0 {
                            problem
                        } else {
                            format!("{}:{line}: {problem}", path.display())
                        };
                        ctx.error(
                            at("credentials_file"),
                            "relay.credentials_file",
                            where_,
                            "lines \"[host]:port login:password\", mode 0600",
                        );
                    }
                }
            }
        }
        if !self.relay.ca_file.is_empty() {
            let path = self.resolve(Path::new(&self.relay.ca_file));
            if let Err(e) = crate::outbound::tls::roots_from_pem_file(&path) {
                ctx.error(
                    at("ca_file"),
                    "relay.ca_file",
                    format!("{}: {e}", path.display()),
                    "a PEM file of CA certificates",
                );
            }
        }
    }
}

fn key_offset(root: &DeTable<'_>, path: &[&str]) -> usize {
    let mut table = root;
    let mut best = 0;
    for (i, k) in path.iter().enumerate() {
        let Some((key, v)) = table.get_key_value(*k) else {
            return best;
        };
        best = key.span().start;
        if i + 1 < path.len() {
            match v.get_ref() {
                DeValue::Table(t) => table = t,
                _ => return best,
            }
        }
    }
    best
}

fn route_offset(root: &DeTable<'_>, i: usize) -> usize {
    let Some(DeValue::Table(relay)) = root.get("relay").map(|v| v.get_ref()) else {
        return 0;
    };
    match relay.get("route").map(|v| v.get_ref()) {
        Some(DeValue::Array(a)) => a.get(i).map(|v| v.span().start).unwrap_or(0),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(mode: u32, text: &str) -> std::path::PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let p = std::env::temp_dir().join(format!("postern-cred-{}-{mode:o}", std::process::id()));
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    #[test]
    fn credentials_by_hop_and_their_errors() {
        let p = write(
            0o600,
            "# comment\n[smtp.isp.test]:587 alice:s3cr:et\n[relay.test] bob:pw\n",
        );
        let c = Credentials::read(&p).unwrap();
        let hop = |s: &str| next_hop(s, 25).unwrap();
        let a = c.for_hop(&hop("[smtp.isp.test]:587")).unwrap();
        assert_eq!(
            (a.user.as_str(), a.password.expose()),
            ("alice", &b"s3cr:et"[..])
        );
        assert_eq!(c.for_hop(&hop("[relay.test]:2525")).unwrap().user, "bob");
        assert!(c.for_hop(&hop("[other.test]:587")).is_none());
        assert!(
            !format!("{c:?}").contains("s3cr"),
            "Debug never shows a password"
        );
        std::fs::remove_file(&p).unwrap();

        let p = write(0o644, "[a.test]:25 u:p\n");
        let e = Credentials::read(&p).unwrap_err();
        assert!(e[0].1.contains("mode 644"), "{e:?}");
        std::fs::remove_file(&p).unwrap();

        let p = write(0o600, "[a.test]:25 secretonly\nnot-a-hop!! u:p\njunk\n");
        let e = Credentials::read(&p).unwrap_err();
        assert_eq!(e.iter().map(|(l, _)| *l).collect::<Vec<_>>(), [1, 2, 3]);
        assert!(e.iter().all(|(_, m)| !m.contains("secretonly")), "{e:?}");
        std::fs::remove_file(&p).unwrap();
    }
}
