//! master.cf `inet ... smtpd` services → `[[listener]]` tables: address
//! from the service name and inet_interfaces, mode from the TLS
//! settings, `require_auth` from a submission service's client
//! restrictions, and the content filter's way back (`-o content_filter=`
//! on loopback) as `role = "reinject"`.

use super::maincf;
use super::map::Cx;
use super::mastercf::Service;
use super::out::Val;
use super::Kind;

/// Overrides of a reinjection service that postern's reinject role
/// covers by itself.
const REINJECT_BUILT_IN: &[&str] = &[
    "smtpd_client_restrictions",
    "smtpd_helo_restrictions",
    "smtpd_sender_restrictions",
    "smtpd_restriction_classes",
    "smtpd_data_restrictions",
    "smtpd_end_of_data_restrictions",
    "local_recipient_maps",
    "relay_recipient_maps",
    "smtpd_authorized_xforward_hosts",
    "receive_override_options",
    "smtpd_milters",
    "strict_rfc821_envelopes",
];

fn port_of(name: &str) -> Option<u16> {
    match name {
        "smtp" => Some(25),
        "smtps" | "submissions" => Some(465),
        "submission" => Some(587),
        p => p.parse().ok().filter(|&p| p != 0),
    }
}

impl Cx<'_> {
    pub(super) fn listeners(&mut self) {
        let services: Vec<Service> = self
            .services
            .iter()
            .filter(|s| s.kind == "inet" && (s.command == "smtpd" || s.command == "postscreen"))
            .cloned()
            .collect();
        let interfaces = self.get("inet_interfaces").unwrap_or_else(|| "all".into());
        let protocols = self.get("inet_protocols").unwrap_or_else(|| "all".into());
        for s in services {
            self.listener(&s, &interfaces, &protocols);
        }
        if self.doc.count("listener") == 0 {
            self.findings.push(super::Finding::error(
                &self.master_file,
                0,
                "",
                "no `inet ... smtpd` service: postern needs at least one listener",
            ));
        }
    }

    fn listener(&mut self, s: &Service, interfaces: &str, protocols: &str) {
        let (host, port) = match s.name.rsplit_once(':') {
            Some((h, p)) => (Some(h.trim_matches(['[', ']']).to_string()), p),
            None => (None, s.name.as_str()),
        };
        let Some(port) = port_of(port) else {
            self.svc_find(
                Kind::Unsupported,
                s,
                "",
                &format!("service {:?}: not a port postern can listen on", s.name),
            );
            return;
        };
        if s.command == "postscreen" {
            self.svc_find(
                Kind::Unsupported,
                s,
                "",
                "postscreen: its checks are not supported; a plain listener takes its place",
            );
        }
        let addresses = self.addresses(host.as_deref(), port, interfaces, protocols);
        let global_filter = self
            .cf
            .raw("content_filter")
            .is_some_and(|v| !v.trim().is_empty());
        let reinject = s.get("content_filter").is_some_and(|v| v.trim().is_empty())
            && global_filter
            && addresses
                .iter()
                .all(|a| a.starts_with("127.") || a.starts_with("[::1]"));
        let mode = self.mode(s, reinject);
        let (require_auth, nets) = self.access(s, reinject);
        if reinject {
            self.reinject_overrides(s);
        }
        for (i, a) in addresses.iter().enumerate() {
            let mut from = format!("master.cf line {} ({})", s.line, s.name);
            if i > 0 {
                from.push_str(", another inet_interfaces address");
            }
            let mut t = self.doc.push("listener");
            t.set("address", Val::s(a), &from);
            t.set("mode", Val::s(mode), "");
            if require_auth {
                t.set(
                    "require_auth",
                    Val::Bool(true),
                    "-o smtpd_client_restrictions=permit_sasl_authenticated,reject",
                );
            }
            if reinject {
                t.set(
                    "role",
                    Val::s("reinject"),
                    "-o content_filter= : the content filter's way back",
                );
            } else if let Some(f) = s.get("content_filter") {
                t.set(
                    "filter",
                    Val::s(filter_address(f).unwrap_or_default()),
                    "-o content_filter=",
                );
            }
            if let Some(n) = &nets {
                t.set("trusted_networks", Val::strs(n), "-o mynetworks=");
            }
        }
    }

    /// The addresses a service listens on: its own host, or every
    /// `inet_interfaces` address (IPv4 only for "all" unless `inet_protocols`
    /// is ipv6).
    fn addresses(
        &mut self,
        host: Option<&str>,
        port: u16,
        interfaces: &str,
        protocols: &str,
    ) -> Vec<String> {
        let mut addresses = Vec::new();
        match host {
            Some("localhost") => addresses.push(format!("127.0.0.1:{port}")),
            Some(h) if h.contains(':') => addresses.push(format!("[{h}]:{port}")),
            Some(h) => addresses.push(format!("{h}:{port}")),
            None => {
                for i in maincf::list(interfaces) {
                    match i.as_str() {
                        "all" => {
                            if protocols != "ipv6" {
                                addresses.push(format!("0.0.0.0:{port}"));
                            }
                            if protocols == "ipv6" {
                                addresses.push(format!("[::]:{port}"));
                            }
                        }
                        "loopback-only" | "localhost" => {
                            addresses.push(format!("127.0.0.1:{port}"))
                        }
                        a if a.contains(':') => {
                            addresses.push(format!("[{}]:{port}", a.trim_matches(['[', ']'])))
                        }
                        a => addresses.push(format!("{a}:{port}")),
                    }
                }
                if protocols == "all" && interfaces.contains("all") {
                    self.find(Kind::Note, "inet_protocols", "all: only IPv4 listeners are written; add `[[listener]] address = \"[::]:PORT\"` for IPv6");
                }
            }
        }
        addresses
    }

    /// The listener's mode from the service's TLS settings: implicit TLS
    /// (wrapper mode), STARTTLS, or plain (always plain for a reinjection).
    fn mode(&mut self, s: &Service, reinject: bool) -> &'static str {
        let cf = self.cf.with_overrides(&s.overrides);
        let yes = |n: &str| cf.text(n).is_ok_and(|v| v == "yes");
        for n in [
            "smtpd_tls_wrappermode",
            "smtpd_use_tls",
            "smtpd_tls_security_level",
            "smtpd_enforce_tls",
            "smtpd_sasl_auth_enable",
            "content_filter",
        ] {
            self.consume(s, n);
        }
        for n in [
            "smtpd_use_tls",
            "smtpd_tls_security_level",
            "smtpd_enforce_tls",
        ] {
            self.mark_used(n);
        }
        let level = cf.text("smtpd_tls_security_level").unwrap_or_default();
        let mode = if yes("smtpd_tls_wrappermode") {
            "implicit-tls"
        } else if reinject {
            "plain"
        } else if yes("smtpd_use_tls")
            || yes("smtpd_enforce_tls")
            || level == "may"
            || level == "encrypt"
        {
            "starttls"
        } else {
            "plain"
        };
        if level == "encrypt" || yes("smtpd_enforce_tls") {
            self.svc_find(Kind::Unsupported, s, "smtpd_tls_security_level", "encrypt: postern offers STARTTLS but does not refuse mail without it (AUTH still needs TLS with tls_only)");
        }
        if s.get("smtpd_sasl_auth_enable") == Some("no") {
            self.svc_find(
                Kind::Unsupported,
                s,
                "smtpd_sasl_auth_enable",
                "no: AUTH cannot be switched off per listener; it is offered on every listener",
            );
        }
        mode
    }

    /// `smtpd_client_restrictions` (only "permit_sasl_authenticated,
    /// reject": require_auth) and `mynetworks` of one service.
    fn access(&mut self, s: &Service, reinject: bool) -> (bool, Option<Vec<String>>) {
        let mut require_auth = false;
        if let Some(v) = s.get("smtpd_client_restrictions").map(str::to_string) {
            let items = maincf::list(&v);
            if items == ["permit_sasl_authenticated", "reject"] {
                require_auth = true;
                self.consume(s, "smtpd_client_restrictions");
            } else if !reinject && !items.is_empty() {
                self.consume(s, "smtpd_client_restrictions");
                self.svc_find(Kind::Unsupported, s, "smtpd_client_restrictions", &format!("{v:?}: only `permit_sasl_authenticated, reject` (require_auth) is supported"));
            }
        }
        let mut nets = None;
        if let Some(v) = s.get("mynetworks").map(str::to_string) {
            self.consume(s, "mynetworks");
            nets = self.cidrs("mynetworks", &v);
        }
        (require_auth, nets)
    }

    /// The reinjection service's overrides: what postern's reinject role
    /// does by itself, what it cannot do, and the seed's two mistakes.
    fn reinject_overrides(&mut self, s: &Service) {
        for n in REINJECT_BUILT_IN {
            self.consume(s, n);
        }
        if let Some(v) = s.get("smtpd_recipient_restrictions") {
            self.consume(s, "smtpd_recipient_restrictions");
            let items = maincf::list(v);
            if !(items == ["permit_mynetworks", "reject"] || items.is_empty()) {
                self.svc_find(
                    Kind::Unsupported,
                    s,
                    "smtpd_recipient_restrictions",
                    &format!(
                        "{v:?}: a reinject listener takes mail from its trusted networks only"
                    ),
                );
            }
        }
        for n in [
            "smtpd_error_sleep_time",
            "smtpd_soft_error_limit",
            "smtpd_hard_error_limit",
        ] {
            if let Some(v) = s.get(n) {
                self.consume(s, n);
                self.svc_find(
                    Kind::Unsupported,
                    s,
                    n,
                    &format!("{v}: error limits are the same on every listener ([smtp]); the filter's own SMTP client rarely makes errors"),
                );
            }
        }
        let global_ro = self
            .cf
            .raw("receive_override_options")
            .unwrap_or("")
            .to_string();
        if global_ro.contains("no_address_mappings") && s.get("receive_override_options").is_none()
        {
            self.mark_used("receive_override_options");
            self.svc_find(
                Kind::Lint,
                s,
                "receive_override_options",
                "main.cf sets no_address_mappings and this reinjection service never undoes it.\n\
                 Postfix: virtual aliases were expanded neither before nor after the filter: mail to an alias address was refused or lost.\n\
                 postern: aliases expand after the filter, on the reinject listener (what no_address_mappings is meant for).\n\
                 Old behaviour: none (it lost mail).",
            );
        }
        let header_checks = self
            .cf
            .raw("header_checks")
            .is_some_and(|v| !v.trim().is_empty());
        let service_ro = s
            .get("receive_override_options")
            .unwrap_or(&global_ro)
            .to_string();
        if header_checks && !service_ro.contains("no_header_body_checks") {
            self.svc_find(
                Kind::Lint,
                s,
                "receive_override_options",
                "no no_header_body_checks here: Postfix ran header_checks a second time on what the filter handed back.\n\
                 postern: the rules decide once, on arrival; after the filter only their rewrites (IGNORE, STRIP, REPLACE) run again, on what the filter added.\n\
                 Old behaviour: none (a REJECT or WARN acted twice).",
            );
        }
        if s.get("smtpd_authorized_xforward_hosts").is_none()
            && self.cf.raw("smtpd_authorized_xforward_hosts").is_none()
        {
            self.svc_find(
                Kind::Lint,
                s,
                "smtpd_authorized_xforward_hosts",
                "not set: Postfix ignored the filter's XFORWARD, so logs and Received: named the filter, not the client.\n\
                 postern: the reinject listener accepts XFORWARD from its trusted networks.\n\
                 Old behaviour: a listener with role = \"smtp\" and filter = \"\" instead of \"reinject\".",
            );
        }
    }
}

/// `amavis:[localhost]:10026` → `[127.0.0.1]:10026` (a filter address
/// needs brackets: no MX lookup). `None`: not an smtp-style next hop.
pub fn filter_address(v: &str) -> Option<String> {
    let v = v.trim();
    if v.is_empty() {
        return Some(String::new());
    }
    let (_, hop) = v.split_once(':')?;
    let hop = hop.replace("[localhost]", "[127.0.0.1]");
    let hop = if hop.starts_with('[') {
        hop
    } else if hop.contains(':') {
        format!("[{}", hop.replacen(':', "]:", 1))
    } else {
        format!("[{hop}]")
    };
    Some(hop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_addresses() {
        assert_eq!(
            filter_address("amavis:[localhost]:10026").unwrap(),
            "[127.0.0.1]:10026"
        );
        assert_eq!(
            filter_address("smtp:127.0.0.1:10026").unwrap(),
            "[127.0.0.1]:10026"
        );
        assert_eq!(filter_address("").unwrap(), "");
        assert_eq!(filter_address("amavis"), None);
    }
}
