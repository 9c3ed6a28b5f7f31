//! What each final destination's route means, for `postern explain`:
//! the route is [`Router::route`]'s; this only reads it out, and for SMTP
//! routes asks the configured resolver where the hops lead, as the SMTP
//! agent would (dns::hosts: MX in preference order, ourselves removed).

use super::json::J;
use super::{Destination, Request};
use crate::config::Config;
use crate::deliver::maildir::MaildirAgent;
use crate::deliver::pipe::{expanded_argv, runs_per_recipient, MacroInput};
use crate::directory::Dest;
use crate::dns::hosts::HostLookup;
use crate::dns::{Lookup, Resolver};
use crate::route::{MaildirRoute, NextHop, Route, Router, SmtpRoute, TlsPolicy};
use crate::smtp::address::Address;

pub struct Ctx<'a> {
    cfg: &'a Config,
    router: &'a Router,
    maildir: &'a MaildirAgent,
    sender: String,
    orig: String,
    /// `None`: --no-dns, or the resolver could not be set up (why).
    resolver: Result<(Resolver, Vec<HostLookup>, crate::dns::mx::Me), String>,
}

impl<'a> Ctx<'a> {
    pub fn new(
        cfg: &'a Config,
        router: &'a Router,
        maildir: &'a MaildirAgent,
        req: &Request,
        orig: &Address,
    ) -> Ctx<'a> {
        let resolver = if !req.dns {
            Err("not looked up (--no-dns)".to_string())
        } else {
            resolver(cfg)
        };
        Ctx {
            cfg,
            router,
            maildir,
            sender: req
                .from
                .trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_string(),
            orig: orig.to_string(),
            resolver,
        }
    }

    pub fn destination(&self, d: &Dest) -> Destination {
        let route = self.router.route(d);
        let mut fields = Vec::new();
        let kind = match &route {
            Route::Maildir(m) => {
                self.maildir_fields(d, m, &mut fields);
                "maildir"
            }
            Route::Pipe(p) => {
                let input = MacroInput {
                    address: &d.address(),
                    orig: &self.orig,
                    sender: &self.sender,
                    size: None,
                    queue_id: None,
                };
                fields.push(("transport", J::s(&p.transport)));
                fields.push((
                    "argv",
                    J::strs(expanded_argv(p, &self.cfg.main.recipient_delimiter, &input)),
                ));
                fields.push(("user", J::s(format!("{}:{}", p.user.0, p.user.1))));
                fields.push(("flags", J::s(&p.flags)));
                fields.push(("timeout", J::s(format!("{}s", p.timeout.as_secs()))));
                fields.push((
                    "runs",
                    J::s(match runs_per_recipient(p) {
                        true => "once per recipient",
                        false => "once per message, for all its recipients of this transport",
                    }),
                ));
                if let Some(m) = &p.mailbox {
                    self.maildir_fields(d, m, &mut fields);
                }
                "pipe"
            }
            Route::File(f) => {
                fields.push(("path", J::s(f.path.display().to_string())));
                fields.push(("user", J::s(format!("{}:{}", f.user.0, f.user.1))));
                "file"
            }
            Route::Smtp(s) => {
                self.smtp_fields(s, &mut fields);
                "smtp"
            }
            Route::Filter(f) => {
                fields.push(("next_hop", J::s(f.hop.to_string())));
                "filter"
            }
            Route::Hold => "hold",
            Route::Discard(why) => {
                fields.push(("reason", J::s(why)));
                "discard"
            }
            Route::Bounce(esc, text) => {
                fields.push(("status", J::s(format!("{}.{}.{}", esc.0, esc.1, esc.2))));
                fields.push(("text", J::s(text)));
                "bounce"
            }
            Route::Defer(esc, text) => {
                fields.push(("status", J::s(format!("{}.{}.{}", esc.0, esc.1, esc.2))));
                fields.push(("text", J::s(text)));
                "defer"
            }
        };
        Destination {
            address: d.address(),
            route: kind,
            fields,
        }
    }

    fn maildir_fields(&self, d: &Dest, m: &MaildirRoute, fields: &mut Vec<(&'static str, J)>) {
        fields.push(("maildir", J::s(m.path.display().to_string())));
        fields.push((
            "owner",
            match m.owner {
                Some((u, g)) => J::s(format!("{u}:{g}")),
                None => J::s("postern's own user"),
            },
        ));
        fields.push(("quota_bytes", J::Num(m.quota.bytes)));
        if let Dest::Mailbox {
            username,
            quota,
            maxquota_mb,
            ..
        } = d
        {
            let table = self.router.quota_limits.for_address(username);
            fields.push((
                "quota_from",
                J::s(format!(
                    "mailbox.quota = {quota}, domain maxquota = {maxquota_mb} MB (x {}), limits_file: {}",
                    self.router.quota_multiplier,
                    table.map_or("no entry".to_string(), |b| format!("{b} bytes"))
                )),
            ));
        }
        if m.quota.bytes > 0 || m.quota.messages > 0 {
            let state = match self.maildir.quota_check(m, 1) {
                Ok(Ok(())) => "room left".to_string(),
                Ok(Err(o)) => format!("full: {}", o.text),
                Err(e) => format!("usage unknown: {e}"),
            };
            fields.push(("quota_state", J::s(state)));
        }
    }

    fn smtp_fields(&self, s: &SmtpRoute, fields: &mut Vec<(&'static str, J)>) {
        fields.push(("route", J::s(&s.name)));
        fields.push((
            "tls",
            J::s(match s.tls {
                TlsPolicy::None => "none",
                TlsPolicy::May => "may",
                TlsPolicy::Encrypt => "encrypt",
                TlsPolicy::Verify => "verify",
            }),
        ));
        fields.push((
            "primary",
            J::List(s.hops.iter().map(|h| self.hop(s, h)).collect()),
        ));
        fields.push((
            "fallback",
            J::List(s.fallbacks.iter().map(|h| self.hop(s, h)).collect()),
        ));
    }

    /// One next hop: the login it would use and where DNS says it leads.
    fn hop(&self, s: &SmtpRoute, h: &NextHop) -> J {
        // The agent logs in only on a route that has credentials, with the
        // line that serves the hop of the host it reached.
        let login = s
            .credentials
            .as_ref()
            .and_then(|_| self.cfg.credentials.entry_for(h))
            .map(|(key, user)| J::s(format!("{key} (login {user})")))
            .unwrap_or(J::Null);
        J::Obj(vec![
            ("hop", J::s(h.to_string())),
            ("mx_lookup", J::Bool(h.mx)),
            ("credentials", login),
            ("lookup", self.lookup(h)),
        ])
    }

    fn lookup(&self, h: &NextHop) -> J {
        let (resolver, order, me) = match &self.resolver {
            Ok(r) => r,
            Err(why) => return J::Obj(vec![("error", J::s(why))]),
        };
        let found = smol::block_on(async {
            if h.mx {
                resolver
                    .mail_hosts(order, &h.host, me, &mut |n| n - 1)
                    .await
                    .map(|(targets, warnings)| {
                        let hosts = targets
                            .into_iter()
                            .map(|t| {
                                J::Obj(vec![
                                    ("host", J::s(t.host)),
                                    ("preference", J::Num(t.preference.into())),
                                    ("addresses", J::strs(t.addrs.iter().map(|a| a.to_string()))),
                                ])
                            })
                            .collect();
                        (hosts, warnings)
                    })
                    .map_err(|f| f.text)
            } else {
                match resolver.host_addrs(order, &h.host).await {
                    Lookup::Found(addrs) => Ok((
                        vec![J::Obj(vec![
                            ("host", J::s(&h.host)),
                            ("addresses", J::strs(addrs.iter().map(|a| a.to_string()))),
                        ])],
                        Vec::new(),
                    )),
                    Lookup::NxDomain | Lookup::NoData => {
                        Err(format!("relay host {} not found", h.host))
                    }
                    Lookup::TempFail(e) => {
                        Err(format!("cannot look up relay host {}: {e}", h.host))
                    }
                }
            }
        });
        match found {
            Ok((hosts, warnings)) => J::Obj(vec![
                ("hosts", J::List(hosts)),
                ("warnings", J::strs(warnings)),
            ]),
            Err(e) => J::Obj(vec![("error", J::s(e))]),
        }
    }
}

/// The resolver of `[relay]`, as the SMTP agent makes it.
fn resolver(cfg: &Config) -> Result<(Resolver, Vec<HostLookup>, crate::dns::mx::Me), String> {
    let (rc, _warnings) = crate::dns::ResolverConfig::load(&cfg.relay.dns_servers)
        .map_err(|e| format!("relay.dns_servers: {e}"))?;
    let order = HostLookup::parse_list(&cfg.relay.host_lookup)?;
    let bound: Vec<std::net::SocketAddr> = cfg.listeners.iter().filter_map(|l| l.address).collect();
    let me = crate::deliver::smtp::hosts::me(cfg, &bound);
    Ok((Resolver::new(rc), order, me))
}
