//! What is done to message content, and how much a mailbox may hold:
//! header and body checks (`[content]` rules), the after-queue content
//! filter and its master.cf service, quotas (`[quota]`, the seed's
//! vquota), with the lint findings about them.

use super::listen::filter_address;
use super::maincf;
use super::map::Cx;
use super::maps::MapRef;
use super::out::Val;
use super::Kind;

impl Cx<'_> {
    /// header_checks (inline rules), body and MIME header checks (side
    /// files), the after-queue filter and its service.
    pub(super) fn content(&mut self) {
        for (p, key) in [
            ("header_checks", "header_rules"),
            ("mime_header_checks", "mime_header_checks"),
            ("body_checks", "body_checks"),
        ] {
            let Some(v) = self.get(p) else { continue };
            let items = maincf::list(&v);
            if items.len() > 1 {
                self.find(
                    Kind::Unsupported,
                    p,
                    "more than one table: only the first is converted",
                );
            }
            let Some(item) = items.first() else { continue };
            let Some(r) = MapRef::parse(item).filter(|r| r.kind == "regexp" || r.kind == "pcre")
            else {
                self.find(
                    Kind::Unsupported,
                    p,
                    &format!(
                        "{item}: only regexp: (and pcre: read as regexp:) tables are supported"
                    ),
                );
                continue;
            };
            if r.kind == "pcre" {
                self.find(Kind::Note, p, "a pcre: table, read with regexp: rules (POSIX): Perl-only syntax is refused with its line");
            }
            let Some((file, text)) = self.read_map(p, &r.name) else {
                continue;
            };
            let kind = if p == "body_checks" {
                crate::intake::rules::Kind::Body
            } else {
                crate::intake::rules::Kind::Header
            };
            if let Err(errors) = crate::intake::rules::Table::parse(&file, &text, kind) {
                for e in errors {
                    self.findings
                        .push(super::Finding::error(&e.file, e.line, "", &e.problem));
                }
                continue;
            }
            if text.lines().any(|l| {
                l.trim_start()
                    .to_ascii_lowercase()
                    .starts_with("/^received:/")
            }) {
                self.findings.push(super::Finding::new(Kind::Note, &file, 0, "", "a rule drops Received: headers: also postern's own and the filter's (mail loops are then found by the hop count of the other headers only); kept as written"));
            }
            let line = self.line(p);
            if key == "header_rules" {
                self.doc.table("content").set(
                    key,
                    Val::Text(text),
                    &format!("{p} (main.cf line {line}): {file}, copied"),
                );
            } else {
                let path = self.side_file(p, text, 0o644);
                self.doc.table("content").set(
                    key,
                    Val::Path(path),
                    &format!("{p} (main.cf line {line}): {file}, copied"),
                );
            }
        }
        let Some(f) = self.get("content_filter") else {
            return;
        };
        if f.trim().is_empty() {
            return;
        }
        let transport = f.split(':').next().unwrap_or("").to_string();
        let service = self
            .services
            .iter()
            .find(|s| s.name == transport && s.kind == "unix")
            .cloned();
        let ok_service =
            service.as_ref().is_some_and(|s| s.command == "smtp") || transport == "smtp";
        match filter_address(&f).filter(|a| ok_service && !a.is_empty()) {
            None => self.find(
                Kind::Unsupported,
                "content_filter",
                &format!("{f}: only an SMTP filter ([host]:port) is supported"),
            ),
            Some(a) => {
                let line = self.line("content_filter");
                self.doc.table("content").set(
                    "filter",
                    Val::s(a),
                    &format!("content_filter = {f} (main.cf line {line})"),
                );
            }
        }
        let Some(s) = service else { return };
        if let Some(n) = s.maxproc {
            self.doc.table("content").set(
                "filter_concurrency",
                Val::Int(n.clamp(1, 256).into()),
                &format!("maxproc of master.cf service {} (line {})", s.name, s.line),
            );
        }
        if let Some(v) = s.get("smtp_data_done_timeout") {
            self.consume(&s, "smtp_data_done_timeout");
            match super::map::postfix_time(v) {
                Some(d) => {
                    self.doc.table("content").set(
                        "filter_data_timeout",
                        Val::s(d),
                        &format!("-o smtp_data_done_timeout (master.cf line {})", s.line),
                    );
                }
                None => self.svc_find(
                    Kind::Error,
                    &s,
                    "smtp_data_done_timeout",
                    &format!("{v:?} is not a time"),
                ),
            }
        }
        for n in [
            "smtp_send_xforward_command",
            "disable_dns_lookups",
            "smtp_dns_support_level",
        ] {
            self.consume(&s, n);
        }
    }

    /// [quota]: over-quota action, a static limits table, vquota; the
    /// VDA lint findings.
    pub(super) fn quota(&mut self) {
        if let Some(b) = self.flag("virtual_overquota_bounce") {
            let line = self.line("virtual_overquota_bounce");
            self.doc.table("quota").set(
                "over_quota",
                Val::s(if b { "bounce" } else { "defer" }),
                &format!("virtual_overquota_bounce (main.cf line {line})"),
            );
        }
        let mut limits: Option<(String, String, usize)> = None;
        if let Some(v) = self.get("virtual_mailbox_limit_maps") {
            for item in maincf::list(&v) {
                if let Some(r) = MapRef::parse(&item).filter(|r| r.is_indexed()) {
                    if let Some((file, text)) = self.read_map("virtual_mailbox_limit_maps", &r.name)
                    {
                        limits = Some((file, text, self.line("virtual_mailbox_limit_maps")));
                    }
                }
            }
        }
        if limits.is_none() && self.src.exists("vquota") {
            if let Ok(text) = self.src.read("vquota") {
                let file = self.src.display("vquota");
                self.findings.push(super::Finding::new(
                    Kind::Lint,
                    &file,
                    0,
                    "",
                    "no parameter names this table: Postfix never read it.\n\
                     postern: its limits apply ([quota] limits_file), as its comments intend.\n\
                     Old behaviour: remove limits_file.",
                ));
                limits = Some((file, text, 0));
            }
        }
        if let Some((file, text, _)) = limits {
            match crate::config::hooks::QuotaLimits::parse(&text) {
                Err(errors) => {
                    for (line, problem) in errors {
                        self.findings
                            .push(super::Finding::error(&file, line, "", &problem));
                    }
                }
                Ok(_) => {
                    for (i, l) in text.lines().enumerate() {
                        let l = l.trim();
                        if let Some(domain) = l
                            .strip_prefix('@')
                            .and_then(|r| r.split_whitespace().next())
                        {
                            self.findings.push(super::Finding::new(
                                Kind::Lint,
                                &file,
                                i + 1,
                                "",
                                &format!(
                                    "@{domain}: its comment calls it the domain's total, but the VDA patch (and postern) read it as the default limit of each mailbox of {domain}.\n\
                                     postern: kept as that per-mailbox default; a domain total is PostfixAdmin's domain.quota, which it checks when quotas are handed out."
                                ),
                            ));
                        }
                    }
                    let path = self.side_file("vquota", text, 0o644);
                    self.doc.table("quota").set(
                        "limits_file",
                        Val::Path(path),
                        &format!("{file}, copied"),
                    );
                }
            }
        }
        self.mark_used("virtual_mailbox_limit_override");
        let vda: Vec<&str> = [
            "virtual_mailbox_limit_maps",
            "virtual_overquota_bounce",
            "virtual_mailbox_limit_inbox",
            "virtual_mailbox_limit_override",
        ]
        .into_iter()
        .filter(|p| self.cf.get(p).is_some())
        .collect();
        let vt = self
            .cf
            .raw("virtual_transport")
            .unwrap_or("virtual")
            .to_string();
        if !vda.is_empty() && vt.split(':').next() != Some("virtual") {
            let first = vda[0];
            self.find(
                Kind::Lint,
                first,
                &format!(
                    "{}: only Postfix's virtual(8) reads these, and virtual_transport = {vt}: no quota was ever enforced.\n\
                     postern: mailbox.quota (and limits_file) hold for the {vt} pipe too, checked before it runs.\n\
                     Old behaviour: quota 0 in PostfixAdmin's mailbox rows, and no limits_file.",
                    vda.join(", ")
                ),
            );
        }
    }
}
