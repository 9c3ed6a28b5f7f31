//! Who exists and where their mail goes: the `mysql:` maps → `[sync.mysql]`
//! (password to a 0600 side file), Maildir base and ids, the
//! virtual_transport pipe → `[[transport]]`, header checks and the
//! content filter → `[content]`, quotas → `[quota]`. And the lint
//! findings these parts of the seed are known for.

use super::listen::filter_address;
use super::map::Cx;
use super::maincf;
use super::maps::{self, MapRef, MysqlMap};
use super::out::Val;
use super::Kind;

/// PostfixAdmin's lookups, as the seed's mysql_*.cf files write them:
/// (parameter, table, select_field, where_field, conditions postern
/// applies by itself).
const POSTFIXADMIN: &[(&str, &str, &str, &str, &[&str])] = &[
    ("virtual_mailbox_domains", "domain", "domain", "domain", &["backupmx='0'", "active='1'", "backupmx=0", "active=1"]),
    ("virtual_mailbox_maps", "mailbox", "maildir", "username", &["active='1'", "active=1"]),
    ("virtual_alias_maps", "alias", "goto", "address", &["active='1'", "active=1"]),
    ("virtual_mailbox_limit_maps", "mailbox", "quota", "username", &["active='1'", "active=1"]),
];

/// Macros whose value differs per recipient: a pipe naming one must run
/// once per recipient.
const PER_RECIPIENT: &[&str] = &["user", "extension", "mailbox", "recipient", "original_recipient", "domain", "nexthop"];

impl Cx<'_> {
    /// virtual_* mysql maps → [sync.mysql]; others reported.
    pub(super) fn directory(&mut self) {
        let mut found: Vec<MysqlMap> = Vec::new();
        for (param, table, select, key, conds) in POSTFIXADMIN {
            let Some(v) = self.get(param) else { continue };
            for item in maincf::list(&v) {
                let Some(r) = MapRef::parse(&item) else {
                    self.problem(param, &format!("{item:?} is not type:name"));
                    continue;
                };
                if r.kind != "mysql" {
                    if *param == "virtual_mailbox_limit_maps" && (r.is_indexed() || r.kind == "static") {
                        continue; // quota() takes these
                    }
                    self.find(Kind::Unsupported, param, &format!("{item}: postern's directory is the PostfixAdmin schema in SQLite: load these with `postern domain|user|alias add`, or mirror them with [sync.mysql]"));
                    continue;
                }
                let Some((file, text)) = self.read_map(param, &r.name) else { continue };
                let (m, problems) = maps::mysql(&file, &text);
                self.findings.extend(problems);
                self.check_postfixadmin(param, &m, table, select, key, conds);
                found.push(m);
            }
        }
        let Some(first) = found.first().cloned() else { return };
        for m in &found[1..] {
            if (&m.user, &m.password, &m.hosts, &m.dbname) != (&first.user, &first.password, &first.hosts, &first.dbname) {
                self.findings.push(super::Finding::error(&m.file, 0, "", &format!("another database than {} (user, password, hosts or dbname differ): postern sync mirrors one database", first.file)));
            }
        }
        let mut t = self.doc.table("sync.mysql");
        let host = first.hosts.first().cloned().unwrap_or_default();
        let (host, port, socket) = mysql_host(&host);
        t.set("host", Val::s(host), &format!("hosts in {} (\"localhost\": the Unix socket, as in Postfix)", first.file));
        if let Some(p) = port {
            t.set("port", Val::Int(p.into()), "");
        }
        if let Some(s) = socket {
            t.set("socket", Val::Path(s), "");
        }
        t.set("user", Val::s(&first.user), "");
        t.set("database", Val::s(&first.dbname), "dbname");
        if first.hosts.len() > 1 {
            self.findings.push(super::Finding::new(Kind::Unsupported, &first.file, 0, "hosts", &format!("{}: postern sync uses the first host only", first.hosts.join(" "))));
        }
        if let Some(pw) = &first.password {
            let path = self.side_file("mysql-password", format!("{pw}\n"), 0o600);
            self.doc.table("sync.mysql").set("password_file", Val::Path(path), "the password of the mysql_*.cf files, in a file of mode 0600 (never in this file)");
        }
    }

    /// The lookup is PostfixAdmin's: other table or column names become
    /// [sync.mysql.tables] / [sync.mysql.columns]; other conditions and
    /// custom queries are reported.
    fn check_postfixadmin(&mut self, param: &str, m: &MysqlMap, table: &str, select: &str, key: &str, conds: &[&str]) {
        if !m.query.is_empty() {
            self.findings.push(super::Finding::new(Kind::Unsupported, &m.file, 0, "query", &format!("{:?}: postern sync mirrors PostfixAdmin's tables whole; name differing tables and columns in [sync.mysql.tables] and [sync.mysql.columns]", m.query)));
            return;
        }
        let tables_key = match table {
            "domain" => "domain",
            "alias" => "alias",
            _ => "mailbox",
        };
        if !m.table.eq_ignore_ascii_case(table) {
            self.doc.table("sync.mysql.tables").set(tables_key, Val::s(&m.table), &format!("{param}: table in {}", m.file));
        }
        let mut columns = Vec::new();
        for (ours, theirs) in [(select, &m.select_field), (key, &m.where_field)] {
            if !theirs.eq_ignore_ascii_case(ours) {
                columns.push((ours.to_string(), Val::s(theirs)));
            }
        }
        if !columns.is_empty() {
            self.doc.table("sync.mysql.columns").set(tables_key, Val::Map(columns), &format!("{param}: columns in {}", m.file));
        }
        // `and backupmx = '0' and active = '1'`: the parts between `and`s.
        let mut unknown = Vec::new();
        let mut part = String::new();
        for w in m.additional_conditions.split_whitespace().chain(["and"]) {
            if w.eq_ignore_ascii_case("and") {
                let p = std::mem::take(&mut part).to_ascii_lowercase();
                if !p.is_empty() && !conds.contains(&p.as_str()) {
                    unknown.push(p);
                }
            } else {
                part.push_str(w);
            }
        }
        if !unknown.is_empty() {
            self.findings.push(super::Finding::new(
                Kind::Unsupported,
                &m.file,
                0,
                "additional_conditions",
                &format!("{}: postern applies PostfixAdmin's active and backupmx flags itself; other conditions are not supported", unknown.join(" and ")),
            ));
        }
    }

    /// Maildir base, delivery ids, virtual_transport (a pipe service →
    /// [[transport]]), local delivery.
    pub(super) fn delivery(&mut self) {
        if let Some(b) = self.get("virtual_mailbox_base") {
            let line = self.line("virtual_mailbox_base");
            self.doc.table("delivery").set("mailbox_base", Val::Path(b), &format!("virtual_mailbox_base (main.cf line {line})"));
        }
        for (p, k) in [("virtual_uid_maps", "uid"), ("virtual_gid_maps", "gid")] {
            let Some(v) = self.get(p) else { continue };
            match v.trim().strip_prefix("static:").and_then(|n| n.trim().parse::<i64>().ok()) {
                Some(n) => {
                    let line = self.line(p);
                    self.doc.table("delivery").set(k, Val::Int(n), &format!("{p} (main.cf line {line})"));
                }
                None => self.find(Kind::Unsupported, p, &format!("{v}: only static:N is supported (one owner for all mailboxes)")),
            }
        }
        if let Some(n) = self.number("virtual_minimum_uid") {
            let line = self.line("virtual_minimum_uid");
            self.doc.table("delivery").set("minimum_uid", Val::Int(n), &format!("virtual_minimum_uid (main.cf line {line})"));
        }
        if let Some(vt) = self.get("virtual_transport") {
            let name = vt.split(':').next().unwrap_or("").to_string();
            match name.as_str() {
                "virtual" => {}
                _ => match self.services.iter().find(|s| s.name == name && s.command == "pipe").cloned() {
                    Some(s) => {
                        self.pipe_transport(&s);
                        let line = self.line("virtual_transport");
                        self.doc.table("delivery").set("virtual_transport", Val::s(&name), &format!("virtual_transport (main.cf line {line})"));
                    }
                    None => self.find(Kind::Unsupported, "virtual_transport", &format!("{vt}: only virtual (Maildir) and pipe services can deliver mailboxes")),
                },
            }
        }
        if let Some(lt) = self.get("local_transport") {
            if lt.split(':').next() != Some("local") {
                self.find(Kind::Unsupported, "local_transport", &format!("{lt}: local domains are always delivered by postern's local agent (aliases file, then a Maildir per user)"));
            }
        }
        let command = self.get("mailbox_command");
        if let Some(h) = self.get("home_mailbox") {
            if command.as_deref().is_some_and(|c| !c.trim().is_empty()) {
                self.find(Kind::Note, "home_mailbox", "unused by Postfix while mailbox_command is set; converted for when it is removed");
            }
            let line = self.line("home_mailbox");
            self.doc.table("delivery").set("home_mailbox", Val::s(h), &format!("home_mailbox (main.cf line {line})"));
        }
        if let Some(c) = command.filter(|c| !c.trim().is_empty()) {
            if c.contains(['|', '&', ';', '<', '>', '$', '`', '\'', '"', '*']) {
                self.find(Kind::Unsupported, "mailbox_command", &format!("{c:?}: shell syntax; postern runs a command without a shell: write it as a list"));
            } else {
                let argv: Vec<&str> = c.split_whitespace().collect();
                let line = self.line("mailbox_command");
                self.doc.table("delivery").set("mailbox_command", Val::strs(&argv), &format!("mailbox_command (main.cf line {line})"));
            }
        }
        if let Some(r) = self.get("alias_maps") {
            for item in maincf::list(&r) {
                match MapRef::parse(&item) {
                    Some(m) if m.is_indexed() => {
                        let line = self.line("alias_maps");
                        // Not read (it may be outside the directory given): named.
                        self.doc.table("directory").set("aliases_file", Val::Path(m.name.clone()), &format!("alias_maps (main.cf line {line}): the text file, read by postern itself"));
                    }
                    Some(m) if m.kind == "nis" => {}
                    _ => self.find(Kind::Unsupported, "alias_maps", &format!("{item}: only an aliases(5) text file is supported")),
                }
            }
        }
    }

    /// A master.cf pipe service as a [[transport]], with the lint
    /// findings about its recipient limit and ${extension}.
    fn pipe_transport(&mut self, s: &super::mastercf::Service) {
        let user = s.attr("user").unwrap_or("").to_string();
        let flags = s.attr("flags").unwrap_or("").to_string();
        for a in &s.args {
            let n = a.split('=').next().unwrap_or("");
            if !["user", "flags"].contains(&n) {
                self.svc_find(Kind::Unsupported, s, n, &format!("{a}: pipe attribute not supported (postern: user, flags, argv)"));
            }
        }
        let mut t = self.doc.push("transport");
        t.set("name", Val::s(&s.name), &format!("master.cf line {} ({} ... pipe)", s.line, s.name));
        t.set("kind", Val::s("pipe"), "");
        t.set("command", Val::strs(&s.argv), "argv=");
        t.set("user", Val::s(&user), "user=");
        if !flags.is_empty() {
            t.set("flags", Val::s(&flags), "flags=");
        }
        if let Some(n) = s.maxproc {
            t.set("concurrency", Val::Int(n.clamp(1, 256).into()), "maxproc");
        }
        let argv = s.argv.join(" ");
        let per_recipient = PER_RECIPIENT.iter().any(|m| argv.contains(&format!("${{{m}}}")) || argv.contains(&format!("${m}")));
        let limit_param = format!("{}_destination_recipient_limit", s.name);
        let limit = self.get(&limit_param);
        if per_recipient && limit.as_deref().map(str::trim) != Some("1") {
            self.svc_find(
                Kind::Lint,
                s,
                &limit_param,
                &format!(
                    "not 1 (it is {}): recipients of one domain shared one run of {}; its per-recipient arguments (USER=${{user}}) named only one of them, and the others got nothing.\n\
                     postern: one run per recipient whenever the argv names a per-recipient macro.\n\
                     Old behaviour: none (it lost mail).",
                    limit.unwrap_or_else(|| "unset: 50".into()),
                    s.argv.first().cloned().unwrap_or_default()
                ),
            );
        }
        if argv.contains("extension}") || argv.contains("$extension") {
            let delim = self.get("recipient_delimiter");
            match delim {
                Some(d) => {
                    let line = self.line("recipient_delimiter");
                    self.doc.table("").set("recipient_delimiter", Val::s(d), &format!("recipient_delimiter (main.cf line {line})"));
                }
                None => {
                    self.svc_find(
                        Kind::Lint,
                        s,
                        "recipient_delimiter",
                        "not set while the pipe passes ${extension}: Postfix never split addresses, so EXTENSION was always empty and user+tag@ was an unknown user.\n\
                         postern: recipient_delimiter = \"+\" (user+tag@ goes to user, EXTENSION=tag).\n\
                         Old behaviour: recipient_delimiter = \"\".",
                    );
                    self.doc.table("").set("recipient_delimiter", Val::s("+"), "not in main.cf: see the finding above");
                }
            }
        }
    }

    /// header_checks (inline rules), body and MIME header checks (side
    /// files), the after-queue filter and its service.
    pub(super) fn content(&mut self) {
        for (p, key) in [("header_checks", "header_rules"), ("mime_header_checks", "mime_header_checks"), ("body_checks", "body_checks")] {
            let Some(v) = self.get(p) else { continue };
            let items = maincf::list(&v);
            if items.len() > 1 {
                self.find(Kind::Unsupported, p, "more than one table: only the first is converted");
            }
            let Some(item) = items.first() else { continue };
            let Some(r) = MapRef::parse(item).filter(|r| r.kind == "regexp" || r.kind == "pcre") else {
                self.find(Kind::Unsupported, p, &format!("{item}: only regexp: (and pcre: read as regexp:) tables are supported"));
                continue;
            };
            if r.kind == "pcre" {
                self.find(Kind::Note, p, "a pcre: table, read with regexp: rules (POSIX): Perl-only syntax is refused with its line");
            }
            let Some((file, text)) = self.read_map(p, &r.name) else { continue };
            let kind = if p == "body_checks" { crate::intake::rules::Kind::Body } else { crate::intake::rules::Kind::Header };
            if let Err(errors) = crate::intake::rules::Table::parse(&file, &text, kind) {
                for e in errors {
                    self.findings.push(super::Finding::error(&e.file, e.line, "", &e.problem));
                }
                continue;
            }
            if text.lines().any(|l| l.trim_start().to_ascii_lowercase().starts_with("/^received:/")) {
                self.findings.push(super::Finding::new(Kind::Note, &file, 0, "", "a rule drops Received: headers: also postern's own and the filter's (mail loops are then found by the hop count of the other headers only); kept as written"));
            }
            let line = self.line(p);
            if key == "header_rules" {
                self.doc.table("content").set(key, Val::Text(text), &format!("{p} (main.cf line {line}): {file}, copied"));
            } else {
                let path = self.side_file(p, text, 0o644);
                self.doc.table("content").set(key, Val::Path(path), &format!("{p} (main.cf line {line}): {file}, copied"));
            }
        }
        let Some(f) = self.get("content_filter") else { return };
        if f.trim().is_empty() {
            return;
        }
        let transport = f.split(':').next().unwrap_or("").to_string();
        let service = self.services.iter().find(|s| s.name == transport && s.kind == "unix").cloned();
        let ok_service = service.as_ref().is_some_and(|s| s.command == "smtp") || transport == "smtp";
        match filter_address(&f).filter(|a| ok_service && !a.is_empty()) {
            None => self.find(Kind::Unsupported, "content_filter", &format!("{f}: only an SMTP filter ([host]:port) is supported")),
            Some(a) => {
                let line = self.line("content_filter");
                self.doc.table("content").set("filter", Val::s(a), &format!("content_filter = {f} (main.cf line {line})"));
            }
        }
        let Some(s) = service else { return };
        if let Some(n) = s.maxproc {
            self.doc.table("content").set("filter_concurrency", Val::Int(n.clamp(1, 256).into()), &format!("maxproc of master.cf service {} (line {})", s.name, s.line));
        }
        if let Some(v) = s.get("smtp_data_done_timeout") {
            self.consume(&s, "smtp_data_done_timeout");
            match super::map::postfix_time(v) {
                Some(d) => {
                    self.doc.table("content").set("filter_data_timeout", Val::s(d), &format!("-o smtp_data_done_timeout (master.cf line {})", s.line));
                }
                None => self.svc_find(Kind::Error, &s, "smtp_data_done_timeout", &format!("{v:?} is not a time")),
            }
        }
        for n in ["smtp_send_xforward_command", "disable_dns_lookups", "smtp_dns_support_level"] {
            self.consume(&s, n);
        }
    }

    /// [quota]: over-quota action, a static limits table, vquota; the
    /// VDA lint findings.
    pub(super) fn quota(&mut self) {
        if let Some(b) = self.flag("virtual_overquota_bounce") {
            let line = self.line("virtual_overquota_bounce");
            self.doc.table("quota").set("over_quota", Val::s(if b { "bounce" } else { "defer" }), &format!("virtual_overquota_bounce (main.cf line {line})"));
        }
        let mut limits: Option<(String, String, usize)> = None;
        if let Some(v) = self.get("virtual_mailbox_limit_maps") {
            for item in maincf::list(&v) {
                if let Some(r) = MapRef::parse(&item).filter(|r| r.is_indexed()) {
                    if let Some((file, text)) = self.read_map("virtual_mailbox_limit_maps", &r.name) {
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
                        self.findings.push(super::Finding::error(&file, line, "", &problem));
                    }
                }
                Ok(_) => {
                    for (i, l) in text.lines().enumerate() {
                        let l = l.trim();
                        if let Some(domain) = l.strip_prefix('@').and_then(|r| r.split_whitespace().next()) {
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
                    self.doc.table("quota").set("limits_file", Val::Path(path), &format!("{file}, copied"));
                }
            }
        }
        self.mark_used("virtual_mailbox_limit_override");
        let vda: Vec<&str> = ["virtual_mailbox_limit_maps", "virtual_overquota_bounce", "virtual_mailbox_limit_inbox", "virtual_mailbox_limit_override"]
            .into_iter()
            .filter(|p| self.cf.get(p).is_some())
            .collect();
        let vt = self.cf.raw("virtual_transport").unwrap_or("virtual").to_string();
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

/// A mysql_table(5) `hosts` entry → (host, port, socket).
fn mysql_host(h: &str) -> (String, Option<u16>, Option<String>) {
    if let Some(path) = h.strip_prefix("unix:") {
        return ("localhost".into(), None, Some(path.to_string()));
    }
    let h = h.strip_prefix("inet:").unwrap_or(h);
    match h.rsplit_once(':') {
        Some((host, port)) if port.parse::<u16>().is_ok() => (host.to_string(), port.parse().ok(), None),
        _ => (h.to_string(), None, None),
    }
}
