//! Sending mail onward: default_transport and relayhost → `[relay]
//! default`, transport maps → `[[relay.route]]` (the seed's
//! `relay-mail01 ... -o fallback_relay=` services become a route with a
//! fallback), smtp_* settings, and sasl_passwd → a 0600 credentials file.

use super::maincf;
use super::map::Cx;
use super::maps::{self, MapRef, TransportEntry};
use super::out::Val;
use super::{Finding, Kind};

impl Cx<'_> {
    pub(super) fn relay(&mut self) {
        if let Some(d) = self.get("default_transport") {
            let (t, hop) = d.split_once(':').unwrap_or((d.as_str(), ""));
            let smtp_like = t == "smtp"
                || t == "relay"
                || self
                    .services
                    .iter()
                    .any(|s| s.name == t && s.command == "smtp");
            if !smtp_like {
                self.find(
                    Kind::Unsupported,
                    "default_transport",
                    &format!(
                        "{d}: mail to other domains goes out over SMTP (by MX or a smarthost)"
                    ),
                );
            } else if !hop.is_empty() {
                let line = self.line("default_transport");
                self.doc.table("relay").set(
                    "default",
                    Val::s(hop),
                    &format!("default_transport (main.cf line {line})"),
                );
            }
        }
        if let Some(h) = self.get("relayhost") {
            let list = maincf::list(&h);
            if let Some(first) = list.first() {
                let line = self.line("relayhost");
                self.doc.table("relay").set(
                    "default",
                    Val::s(first),
                    &format!("relayhost (main.cf line {line})"),
                );
                if list.len() > 1 {
                    self.find(
                        Kind::Unsupported,
                        "relayhost",
                        "a list: postern's smarthost is one host; the others are not converted",
                    );
                }
            }
        }
        self.routes();
        if let Some(v) = self.get("smtp_host_lookup") {
            let list = maincf::list(&v);
            if list.iter().all(|l| l == "dns" || l == "native") && !list.is_empty() {
                let line = self.line("smtp_host_lookup");
                self.doc.table("relay").set(
                    "host_lookup",
                    Val::strs(&list),
                    &format!("smtp_host_lookup (main.cf line {line})"),
                );
            } else {
                self.problem("smtp_host_lookup", &format!("{v:?}: allowed: dns, native"));
            }
        }
        if self.flag("disable_dns_lookups") == Some(true) {
            self.doc.table("relay").set(
                "host_lookup",
                Val::strs(&["native"]),
                "disable_dns_lookups = yes",
            );
        }
        if let Some(v) = self.get("smtp_tls_security_level") {
            let level = match v.as_str() {
                "none" | "may" | "encrypt" | "verify" => v.clone(),
                "secure" | "dane-only" => {
                    self.find(
                        Kind::Note,
                        "smtp_tls_security_level",
                        &format!("{v}: written as \"verify\" (the certificate must name the host)"),
                    );
                    "verify".into()
                }
                "dane" | "fingerprint" => {
                    self.find(
                        Kind::Unsupported,
                        "smtp_tls_security_level",
                        &format!("{v}: not supported; written as \"may\""),
                    );
                    "may".into()
                }
                _ => {
                    self.problem(
                        "smtp_tls_security_level",
                        &format!("{v:?}: allowed: none, may, encrypt, verify, secure"),
                    );
                    return;
                }
            };
            self.doc
                .table("relay")
                .set("tls", Val::s(level), "smtp_tls_security_level");
        } else if self.flag("smtp_use_tls") == Some(true) {
            self.doc
                .table("relay")
                .set("tls", Val::s("may"), "smtp_use_tls = yes");
        }
        if let Some(ca) = self.get("smtp_tls_CAfile") {
            self.doc
                .table("relay")
                .set("ca_file", Val::Path(ca), "smtp_tls_CAfile");
        }
        self.duration("smtp_connect_timeout", "relay", "connect_timeout");
        self.duration("smtp_data_done_timeout", "relay", "data_done_timeout");
        if let Some(h) = self.get("smtp_helo_name") {
            self.doc
                .table("relay")
                .set("helo_name", Val::s(h), "smtp_helo_name");
        }
        if let Some(p) = self.get("proxy_interfaces") {
            self.doc.table("relay").set(
                "own_addresses",
                Val::strs(&maincf::list(&p)),
                "proxy_interfaces",
            );
        }
        self.credentials();
    }

    /// transport_maps, or (the seed) a transport file nothing names.
    fn routes(&mut self) {
        let mut entries: Vec<(String, TransportEntry)> = Vec::new();
        if let Some(v) = self.get("transport_maps") {
            for item in maincf::list(&v) {
                match MapRef::parse(&item).filter(|r| r.is_indexed()) {
                    None => self.find(
                        Kind::Unsupported,
                        "transport_maps",
                        &format!(
                            "{item}: only postmap text tables (hash:, lmdb:, ...) are converted"
                        ),
                    ),
                    Some(r) => {
                        let Some((file, text)) = self.read_map("transport_maps", &r.name) else {
                            continue;
                        };
                        let (e, problems) = maps::transport_entries(&file, &text);
                        self.findings.extend(problems);
                        entries.extend(e.into_iter().map(|e| (file.clone(), e)));
                    }
                }
            }
        } else if let Some(rel) = ["transport.maps", "transport"]
            .into_iter()
            .find(|r| self.src.exists(r))
        {
            if let Ok(text) = self.src.read(rel) {
                let file = self.src.display(rel);
                let (e, problems) = maps::transport_entries(&file, &text);
                if !e.is_empty() {
                    self.findings.push(Finding::new(
                        Kind::Lint,
                        &file,
                        0,
                        "transport_maps",
                        "no transport_maps names this table: Postfix never routed by it.\n\
                         postern: its routes are written below ([[relay.route]]), as the master.cf services made for them intend.\n\
                         Old behaviour: delete the [[relay.route]] tables.",
                    ));
                    self.findings.extend(problems);
                    entries.extend(e.into_iter().map(|e| (file.clone(), e)));
                }
            }
        }
        let global_fallback = self
            .get("smtp_fallback_relay")
            .or_else(|| self.get("fallback_relay"));
        for (file, e) in entries {
            self.route(&file, &e, global_fallback.as_deref());
        }
        if let Some(g) = &global_fallback {
            if !g.trim().is_empty() {
                self.find(
                    Kind::Unsupported,
                    "smtp_fallback_relay",
                    "for all mail: postern has fallbacks per route only; written into each route",
                );
            }
        }
    }

    fn route(&mut self, file: &str, e: &TransportEntry, global_fallback: Option<&str>) {
        let service = self
            .services
            .iter()
            .find(|s| s.name == e.transport && s.kind == "unix")
            .cloned();
        let command = service
            .as_ref()
            .map(|s| s.command.as_str())
            .unwrap_or(e.transport.as_str());
        let from = format!("{file} line {}", e.line);
        match command {
            "smtp" | "relay" => {}
            "error" | "retry" => {
                let mut t = self.doc.push("relay.route");
                t.set("domain", Val::s(&e.domain), &from);
                let text = if e.nexthop.is_empty() {
                    "mail for this domain is refused".to_string()
                } else {
                    e.nexthop.clone()
                };
                t.set("target", Val::s(format!("error: {text}")), "");
                return;
            }
            "discard" => {
                let mut t = self.doc.push("relay.route");
                t.set("domain", Val::s(&e.domain), &from);
                t.set("target", Val::s("discard"), "");
                return;
            }
            other => {
                self.findings.push(Finding::new(Kind::Unsupported, file, e.line, "", &format!("{}: routes through {other} are not supported (only SMTP relays, error, discard)", e.domain)));
                return;
            }
        }
        let mut fallback: Vec<String> = Vec::new();
        if let Some(s) = &service {
            for n in ["fallback_relay", "smtp_fallback_relay"] {
                if let Some(v) = s.get(n) {
                    fallback.extend(maincf::list(v));
                    self.consume(s, n);
                }
            }
        }
        if fallback.is_empty() {
            if let Some(g) = global_fallback {
                fallback.extend(maincf::list(g));
            }
        }
        let primary = if e.nexthop.is_empty() {
            e.domain.trim_start_matches('.').to_string()
        } else {
            e.nexthop.clone()
        };
        let mut t = self.doc.push("relay.route");
        t.set("domain", Val::s(&e.domain), &from);
        if service.is_some() && e.transport != "smtp" && e.transport != "relay" {
            t.set(
                "name",
                Val::s(&e.transport),
                &format!("master.cf service {}", e.transport),
            );
        }
        t.set("primary", Val::s(&primary), "");
        if !fallback.is_empty() {
            let note = match &service {
                Some(s)
                    if s.get("fallback_relay").is_some()
                        || s.get("smtp_fallback_relay").is_some() =>
                {
                    format!("-o fallback_relay (master.cf line {})", s.line)
                }
                _ => "smtp_fallback_relay".to_string(),
            };
            t.set("fallback", Val::strs(&fallback), &note);
        }
    }

    /// smtp_sasl_password_maps → a 0600 credentials file.
    fn credentials(&mut self) {
        let Some(v) = self.get("smtp_sasl_password_maps") else {
            return;
        };
        let Some(r) = MapRef::parse(&v).filter(|r| r.is_indexed()) else {
            self.find(
                Kind::Unsupported,
                "smtp_sasl_password_maps",
                &format!("{v}: only a postmap text table is converted"),
            );
            return;
        };
        let Some((file, text)) = self.read_map("smtp_sasl_password_maps", &r.name) else {
            return;
        };
        let (pairs, problems) = maps::pairs(&file, &text);
        self.findings.extend(problems);
        let mut out = String::new();
        for p in pairs {
            if p.key.contains('@') || !p.value.contains(':') {
                self.findings.push(Finding::new(Kind::Unsupported, &file, p.line, "", &format!("{}: only \"[host]:port user:password\" lines (per relay, not per sender) are supported", p.key)));
                continue;
            }
            out.push_str(&format!("{} {}\n", p.key, p.value));
        }
        let path = self.side_file("relay-credentials", out, 0o600);
        self.doc.table("relay").set(
            "credentials_file",
            Val::Path(path),
            &format!("smtp_sasl_password_maps: {file}, copied (mode 0600)"),
        );
    }
}
