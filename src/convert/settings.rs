//! The settings that are one key each, or nearly: SMTP limits, the
//! queue, the relay policy's restrictions, TLS and AUTH, and SuSE's
//! sysconfig file.

use super::maincf;
use super::map::{postfix_time, Cx};
use super::out::Val;
use super::{Finding, Kind};

impl Cx<'_> {
    /// [smtp]: protocol switches and limits.
    pub(super) fn smtp_limits(&mut self) {
        let flags = [
            ("smtpd_helo_required", "helo_required", false),
            ("disable_vrfy_command", "vrfy", true),
        ];
        for (p, k, invert) in flags {
            if let Some(b) = self.flag(p) {
                let line = self.line(p);
                self.doc.table("smtp").set(
                    k,
                    Val::Bool(b != invert),
                    &format!("{p} (main.cf line {line})"),
                );
            }
        }
        let numbers = [
            ("message_size_limit", "message_size_limit"),
            ("smtpd_recipient_limit", "recipient_limit"),
            ("smtpd_soft_error_limit", "soft_error_limit"),
            ("smtpd_hard_error_limit", "hard_error_limit"),
            ("default_process_limit", "max_connections"),
            (
                "smtpd_client_connection_count_limit",
                "max_connections_per_client",
            ),
        ];
        for (p, k) in numbers {
            if let Some(n) = self.number(p) {
                let line = self.line(p);
                self.doc
                    .table("smtp")
                    .set(k, Val::Int(n), &format!("{p} (main.cf line {line})"));
            }
        }
        self.duration("smtpd_error_sleep_time", "smtp", "error_delay");
        self.duration("smtpd_timeout", "smtp", "command_timeout");
    }

    pub fn number(&mut self, p: &str) -> Option<i64> {
        let v = self.get(p)?;
        match v.trim().parse::<i64>() {
            Ok(n) if n >= 0 => Some(n),
            _ => {
                self.problem(p, &format!("{v:?} is not a number"));
                None
            }
        }
    }

    /// A Postfix time value (`300`, `300s`, `5m`, `1d`) as `table.key`.
    pub fn duration(&mut self, p: &str, table: &str, key: &str) {
        let Some(v) = self.get(p) else { return };
        match postfix_time(&v) {
            Some(d) => {
                let line = self.line(p);
                self.doc
                    .table(table)
                    .set(key, Val::s(d), &format!("{p} (main.cf line {line})"));
            }
            None => self.problem(
                p,
                &format!("{v:?} is not a time (a number with s, m, h, d or w)"),
            ),
        }
    }

    /// [queue]: retries and lifetime.
    pub(super) fn queue(&mut self) {
        self.duration("minimal_backoff_time", "queue", "min_backoff");
        self.duration("maximal_backoff_time", "queue", "max_backoff");
        self.duration("maximal_queue_lifetime", "queue", "max_lifetime");
        self.duration("delay_warning_time", "queue", "delay_warning");
        if let Some(n) = self.number("queue_minfree") {
            let line = self.line("queue_minfree");
            self.doc.table("queue").set(
                "min_free",
                Val::Int(n),
                &format!("queue_minfree (main.cf line {line})"),
            );
        }
        if let Some(n) = self.number("qmgr_message_active_limit") {
            let line = self.line("qmgr_message_active_limit");
            self.doc.table("queue").set(
                "active_limit",
                Val::Int(n),
                &format!("qmgr_message_active_limit (main.cf line {line})"),
            );
        }
        if let Some(n) = self.number("hopcount_limit") {
            let line = self.line("hopcount_limit");
            self.doc.table("delivery").set(
                "max_received_headers",
                Val::Int(n),
                &format!("hopcount_limit (main.cf line {line})"),
            );
        }
    }

    /// smtpd_recipient_restrictions and smtpd_relay_restrictions: postern's
    /// policy is fixed; anything beyond it is reported.
    pub(super) fn restrictions(&mut self) {
        const KNOWN: &[&str] = &[
            "permit_mynetworks",
            "permit_sasl_authenticated",
            "reject_unauth_destination",
            "defer_unauth_destination",
            "reject_unlisted_recipient",
            "reject_unauth_pipelining",
        ];
        for p in ["smtpd_recipient_restrictions", "smtpd_relay_restrictions"] {
            let Some(v) = self.get(p) else { continue };
            let other: Vec<String> = maincf::list(&v)
                .into_iter()
                .filter(|i| !KNOWN.contains(&i.as_str()))
                .collect();
            if !other.is_empty() {
                self.find(
                    Kind::Unsupported,
                    p,
                    &format!(
                        "{} not supported: postern's policy is fixed (trusted networks and logged-in clients relay, others may only send to our domains)",
                        other.join(", ")
                    ),
                );
            }
        }
        if let Some(v) = self.get("relay_domains") {
            let ours = self
                .cf
                .text("mydestination")
                .map(|d| maincf::list(&d))
                .unwrap_or_default();
            let other: Vec<String> = maincf::list(&v)
                .into_iter()
                .filter(|d| !ours.contains(d))
                .collect();
            if !other.is_empty() {
                self.find(
                    Kind::Unsupported,
                    "relay_domains",
                    &format!("{}: postern relays for the domains of the directory with backupmx = 1 (PostfixAdmin), or by [[relay.route]]: add them there", other.join(", ")),
                );
            }
        }
        for p in [
            "smtpd_client_restrictions",
            "smtpd_helo_restrictions",
            "smtpd_sender_restrictions",
            "smtpd_restriction_classes",
        ] {
            if let Some(v) = self.get(p) {
                if !v.trim().is_empty() {
                    self.find(
                        Kind::Unsupported,
                        p,
                        &format!(
                            "{v:?}: these checks are not supported; postern's policy is fixed"
                        ),
                    );
                }
            }
        }
    }

    /// [tls] files, [auth] backend and switches.
    pub(super) fn tls_auth(&mut self) {
        for (p, k) in [
            ("smtpd_tls_cert_file", "cert_file"),
            ("smtpd_tls_key_file", "key_file"),
        ] {
            if let Some(v) = self.get(p) {
                let line = self.line(p);
                self.doc
                    .table("tls")
                    .set(k, Val::Path(v), &format!("{p} (main.cf line {line})"));
            }
        }
        let enabled = self.flag("smtpd_sasl_auth_enable").unwrap_or(false)
            || self
                .services
                .iter()
                .any(|s| s.get("smtpd_sasl_auth_enable").is_some_and(|v| v == "yes"));
        if !enabled {
            self.doc.table("auth").set(
                "backend",
                Val::s("none"),
                "smtpd_sasl_auth_enable is not yes: no AUTH",
            );
            return;
        }
        let sasl_type = self
            .get("smtpd_sasl_type")
            .unwrap_or_else(|| "cyrus".into());
        let path = self.get("smtpd_sasl_path");
        let postfixadmin = self
            .cf
            .raw("virtual_mailbox_maps")
            .is_some_and(|v| v.contains("mysql:"));
        if postfixadmin {
            self.doc.table("auth").set(
                "backend",
                Val::s("sqlite"),
                &format!("smtpd_sasl_type = {sasl_type}: the PostfixAdmin mailbox passwords, checked by postern"),
            );
            self.find(
                Kind::Note,
                "smtpd_sasl_type",
                &format!(
                    "{sasl_type}: postern checks the same PostfixAdmin mailbox.password hashes itself, from its mirror.\nTo keep asking Dovecot: [auth] backend = \"dovecot\", dovecot_socket = its auth-client socket"
                ),
            );
        } else if sasl_type == "dovecot" {
            let queue_dir = self.cf.text("queue_directory").unwrap_or_default();
            let path = path.unwrap_or_else(|| "private/auth".into());
            let path = if path.starts_with('/') {
                path
            } else {
                format!("{}/{path}", queue_dir.trim_end_matches('/'))
            };
            self.doc
                .table("auth")
                .set("backend", Val::s("dovecot"), "smtpd_sasl_type = dovecot");
            self.doc.table("auth").set(
                "dovecot_socket",
                Val::Path(path),
                "smtpd_sasl_path, from the queue directory",
            );
        } else {
            self.find(Kind::Unsupported, "smtpd_sasl_type", &format!("{sasl_type}: only Dovecot's protocol and postern's own directory are supported; the directory's passwords are used"));
            self.doc.table("auth").set(
                "backend",
                Val::s("sqlite"),
                "smtpd_sasl_type: not supported, the directory's passwords",
            );
        }
        let switches = [
            ("smtpd_tls_auth_only", "tls_only"),
            ("broken_sasl_auth_clients", "broken_clients"),
            ("smtpd_sasl_authenticated_header", "authenticated_header"),
        ];
        for (p, k) in switches {
            if let Some(b) = self.flag(p) {
                let line = self.line(p);
                self.doc
                    .table("auth")
                    .set(k, Val::Bool(b), &format!("{p} (main.cf line {line})"));
            }
        }
        if let Some(v) = self.get("smtpd_sasl_security_options") {
            let other: Vec<String> = maincf::list(&v)
                .into_iter()
                .filter(|o| o != "noanonymous")
                .collect();
            if !other.is_empty() {
                self.find(
                    Kind::Unsupported,
                    "smtpd_sasl_security_options",
                    &format!(
                        "{}: postern offers PLAIN and LOGIN (inside TLS with tls_only)",
                        other.join(", ")
                    ),
                );
            }
        }
    }

    /// /etc/sysconfig/postfix: SuSEconfig wrote main.cf from it; what is
    /// left are the POSTFIX_ADD_* values main.cf does not agree with.
    pub(super) fn sysconfig(&mut self, name: &str, text: &str) {
        for (i, line) in text.lines().enumerate() {
            let l = line.trim();
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            let Some((k, v)) = l.split_once('=') else {
                self.findings.push(Finding::error(
                    name,
                    i + 1,
                    "",
                    &format!("{l:?} is not VARIABLE=\"value\""),
                ));
                continue;
            };
            let v = v.trim().trim_matches('"');
            let Some(param) = k.trim().strip_prefix("POSTFIX_ADD_") else {
                continue;
            };
            let param = param.to_ascii_lowercase();
            let current = self.cf.raw(&param).map(str::to_string);
            if current.as_deref() != Some(v) {
                let now = current
                    .map(|c| format!("main.cf has {c:?}, which is converted"))
                    .unwrap_or_else(|| "main.cf does not set it: not converted".into());
                self.findings.push(Finding::new(
                    Kind::Note,
                    name,
                    i + 1,
                    k.trim(),
                    &format!("SuSEconfig would set {param} = {v}; {now}"),
                ));
            }
        }
    }
}
