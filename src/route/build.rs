//! The [`Router`] a configuration makes: the default relay, the
//! `[[relay.route]]` entries by domain and by name, the pipe transports,
//! virtual_transport, quotas, local users' home_mailbox or
//! mailbox_command. One function, so that the server and `postern
//! explain` route with the same router.

use super::transport::next_hop;
use super::{DefaultRelay, NextHop, PipeRoute, Route, Router, SmtpRoute, TlsPolicy};
use crate::config::hooks::resolve_user;
use crate::config::{Config, TlsMode};
use crate::smtp::reply::Esc;

/// `tls = "..."` of the config as the SMTP agent's policy.
pub fn tls_policy(m: TlsMode) -> TlsPolicy {
    match m {
        TlsMode::None => TlsPolicy::None,
        TlsMode::May => TlsPolicy::May,
        TlsMode::Encrypt => TlsPolicy::Encrypt,
        TlsMode::Verify => TlsPolicy::Verify,
    }
}

impl Router {
    /// The router of `cfg`; `owner`: who delivered files belong to. An
    /// error names the config file and the key (a user that does not
    /// exist).
    pub fn from_config(cfg: &Config, owner: Option<(u32, u32)>) -> Result<Router, String> {
        let mut r = Router::new(cfg.mailbox_base(), cfg.local_mailbox_base(), owner);
        let tls = tls_policy(cfg.relay.tls);
        let smtp = |name: String, hops: Vec<NextHop>, fallbacks, tls| {
            let credentials = hops.first().and_then(|h| cfg.credentials.key_for(h));
            SmtpRoute {
                name,
                hops,
                fallbacks,
                tls,
                credentials,
            }
        };
        r.default_relay = match cfg.relay.default.as_str() {
            "mx" => DefaultRelay::Mx {
                port: cfg.relay.port,
                tls,
            },
            hop => {
                let h = next_hop(hop, 25).expect("checked by config");
                DefaultRelay::Route(smtp(hop.to_string(), vec![h], Vec::new(), tls))
            }
        };
        for rr in &cfg.relay_routes {
            let target = rr.target.trim();
            let route = if target == "discard" {
                Route::Discard(format!("route for {}", rr.domain))
            } else if let Some(text) = target.strip_prefix("error:") {
                Route::Bounce(Esc(5, 0, 0), text.trim().to_string())
            } else {
                let hop = next_hop(&rr.primary, 25).expect("checked by config");
                let fallbacks = rr
                    .fallback
                    .iter()
                    .map(|f| next_hop(f, 25).expect("checked by config"))
                    .collect();
                let name = rr.name.clone().unwrap_or_else(|| rr.domain.clone());
                Route::Smtp(smtp(
                    name,
                    vec![hop],
                    fallbacks,
                    rr.tls.map(tls_policy).unwrap_or(tls),
                ))
            };
            r.domains
                .push((rr.domain.to_ascii_lowercase(), route.clone()));
            let name = rr.name.clone().unwrap_or_else(|| rr.domain.clone());
            r.named.insert(name.to_ascii_lowercase(), route);
        }
        for t in &cfg.transports {
            let user = resolve_user(&t.user)
                .map_err(|e| format!("{}: transport {}: user: {e}", cfg.source, t.name))?;
            r.named.insert(
                t.name.to_ascii_lowercase(),
                Route::Pipe(PipeRoute {
                    transport: t.name.to_ascii_lowercase(),
                    argv: t.command.clone(),
                    user,
                    flags: t.flags.clone(),
                    timeout: t.timeout.0,
                    output_limit: t.output_limit.0 as usize,
                    mailbox: None,
                    home: None,
                    local_env: false,
                }),
            );
        }
        r.virtual_transport = cfg.delivery.virtual_transport.to_ascii_lowercase();
        r.mailbox_transports = cfg
            .delivery
            .mailbox_transports
            .iter()
            .map(|(a, t)| (a.to_ascii_lowercase(), t.to_ascii_lowercase()))
            .collect();
        r.quota_limits = cfg.quota_limits.clone();
        r.quota_multiplier = cfg.quota.multiplier;
        r.home_mailbox = cfg.delivery.home_mailbox.clone();
        r.mailbox_command = cfg.delivery.mailbox_command.clone();
        // Commands never run as root: default_privs stands in for root.
        let needs_privs = !r.mailbox_command.is_empty() || cfg.aliases.runs_programs();
        let am_root = nix::unistd::geteuid().is_root();
        let me = (
            nix::unistd::geteuid().as_raw(),
            nix::unistd::getegid().as_raw(),
        );
        r.default_privs = match resolve_user(&cfg.delivery.default_privs) {
            Ok(u) => u,
            Err(e) if needs_privs && am_root => {
                return Err(format!("{}: delivery.default_privs: {e}", cfg.source))
            }
            Err(_) => me,
        };
        r.command_user = match owner {
            Some(o) => o,
            None if am_root => r.default_privs,
            None => me,
        };
        Ok(r)
    }
}
