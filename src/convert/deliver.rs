//! Who exists and where their mail goes: the `mysql:` maps → `[sync.mysql]`
//! (password to a 0600 side file), Maildir base and ids, the
//! virtual_transport pipe → `[[transport]]`, local delivery and aliases,
//! with the lint findings about the pipe (content.rs: rules, filter,
//! quotas).

use super::maincf;
use super::map::Cx;
use super::maps::{self, MapRef, MysqlMap};
use super::out::Val;
use super::Kind;

/// PostfixAdmin's lookups, as the seed's mysql_*.cf files write them:
/// (parameter, table, select_field, where_field, conditions postern
/// applies by itself).
const POSTFIXADMIN: &[(&str, &str, &str, &str, &[&str])] = &[
    (
        "virtual_mailbox_domains",
        "domain",
        "domain",
        "domain",
        &["backupmx='0'", "active='1'", "backupmx=0", "active=1"],
    ),
    (
        "virtual_mailbox_maps",
        "mailbox",
        "maildir",
        "username",
        &["active='1'", "active=1"],
    ),
    (
        "virtual_alias_maps",
        "alias",
        "goto",
        "address",
        &["active='1'", "active=1"],
    ),
    (
        "virtual_mailbox_limit_maps",
        "mailbox",
        "quota",
        "username",
        &["active='1'", "active=1"],
    ),
];

/// Macros whose value differs per recipient: a pipe naming one must run
/// once per recipient.
const PER_RECIPIENT: &[&str] = &[
    "user",
    "extension",
    "mailbox",
    "recipient",
    "original_recipient",
    "domain",
    "nexthop",
];

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
                    if *param == "virtual_mailbox_limit_maps"
                        && (r.is_indexed() || r.kind == "static")
                    {
                        continue; // quota() takes these
                    }
                    self.find(Kind::Unsupported, param, &format!("{item}: postern's directory is the PostfixAdmin schema in SQLite: load these with `postern domain|user|alias add`, or mirror them with [sync.mysql]"));
                    continue;
                }
                let Some((file, text)) = self.read_map(param, &r.name) else {
                    continue;
                };
                let (m, problems) = maps::mysql(&file, &text);
                self.findings.extend(problems);
                self.check_postfixadmin(param, &m, table, select, key, conds);
                found.push(m);
            }
        }
        let Some(first) = found.first().cloned() else {
            return;
        };
        for m in &found[1..] {
            if (&m.user, &m.password, &m.hosts, &m.dbname)
                != (&first.user, &first.password, &first.hosts, &first.dbname)
            {
                self.findings.push(super::Finding::error(&m.file, 0, "", &format!("another database than {} (user, password, hosts or dbname differ): postern sync mirrors one database", first.file)));
            }
        }
        let mut t = self.doc.table("sync.mysql");
        let host = first.hosts.first().cloned().unwrap_or_default();
        let (host, port, socket) = mysql_host(&host);
        t.set(
            "host",
            Val::s(host),
            &format!(
                "hosts in {} (\"localhost\": the Unix socket, as in Postfix)",
                first.file
            ),
        );
        if let Some(p) = port {
            t.set("port", Val::Int(p.into()), "");
        }
        if let Some(s) = socket {
            t.set("socket", Val::Path(s), "");
        }
        t.set("user", Val::s(&first.user), "");
        t.set("database", Val::s(&first.dbname), "dbname");
        if first.hosts.len() > 1 {
            self.findings.push(super::Finding::new(
                Kind::Unsupported,
                &first.file,
                0,
                "hosts",
                &format!(
                    "{}: postern sync uses the first host only",
                    first.hosts.join(" ")
                ),
            ));
        }
        if let Some(pw) = &first.password {
            let path = self.side_file("mysql-password", format!("{pw}\n"), 0o600);
            self.doc.table("sync.mysql").set(
                "password_file",
                Val::Path(path),
                "the password of the mysql_*.cf files, in a file of mode 0600 (never in this file)",
            );
        }
    }

    /// The lookup is PostfixAdmin's: other table or column names become
    /// [sync.mysql.tables] / [sync.mysql.columns]; other conditions and
    /// custom queries are reported.
    fn check_postfixadmin(
        &mut self,
        param: &str,
        m: &MysqlMap,
        table: &str,
        select: &str,
        key: &str,
        conds: &[&str],
    ) {
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
            self.doc.table("sync.mysql.tables").set(
                tables_key,
                Val::s(&m.table),
                &format!("{param}: table in {}", m.file),
            );
        }
        let mut columns = Vec::new();
        for (ours, theirs) in [(select, &m.select_field), (key, &m.where_field)] {
            if !theirs.eq_ignore_ascii_case(ours) {
                columns.push((ours.to_string(), Val::s(theirs)));
            }
        }
        if !columns.is_empty() {
            self.doc.table("sync.mysql.columns").set(
                tables_key,
                Val::Map(columns),
                &format!("{param}: columns in {}", m.file),
            );
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
            self.doc.table("delivery").set(
                "mailbox_base",
                Val::Path(b),
                &format!("virtual_mailbox_base (main.cf line {line})"),
            );
        }
        for (p, k) in [("virtual_uid_maps", "uid"), ("virtual_gid_maps", "gid")] {
            let Some(v) = self.get(p) else { continue };
            match v
                .trim()
                .strip_prefix("static:")
                .and_then(|n| n.trim().parse::<i64>().ok())
            {
                Some(n) => {
                    let line = self.line(p);
                    self.doc.table("delivery").set(
                        k,
                        Val::Int(n),
                        &format!("{p} (main.cf line {line})"),
                    );
                }
                None => self.find(
                    Kind::Unsupported,
                    p,
                    &format!("{v}: only static:N is supported (one owner for all mailboxes)"),
                ),
            }
        }
        if let Some(n) = self.number("virtual_minimum_uid") {
            let line = self.line("virtual_minimum_uid");
            self.doc.table("delivery").set(
                "minimum_uid",
                Val::Int(n),
                &format!("virtual_minimum_uid (main.cf line {line})"),
            );
        }
        if let Some(vt) = self.get("virtual_transport") {
            let name = vt.split(':').next().unwrap_or("").to_string();
            match name.as_str() {
                "virtual" => {}
                _ => match self
                    .services
                    .iter()
                    .find(|s| s.name == name && s.command == "pipe")
                    .cloned()
                {
                    Some(s) => {
                        self.pipe_transport(&s);
                        let line = self.line("virtual_transport");
                        self.doc.table("delivery").set(
                            "virtual_transport",
                            Val::s(&name),
                            &format!("virtual_transport (main.cf line {line})"),
                        );
                    }
                    None => self.find(
                        Kind::Unsupported,
                        "virtual_transport",
                        &format!(
                            "{vt}: only virtual (Maildir) and pipe services can deliver mailboxes"
                        ),
                    ),
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
            self.doc.table("delivery").set(
                "home_mailbox",
                Val::s(h),
                &format!("home_mailbox (main.cf line {line})"),
            );
        }
        if let Some(c) = command.filter(|c| !c.trim().is_empty()) {
            if c.contains(['|', '&', ';', '<', '>', '$', '`', '\'', '"', '*']) {
                self.find(Kind::Unsupported, "mailbox_command", &format!("{c:?}: shell syntax; postern runs a command without a shell: write it as a list"));
            } else {
                let argv: Vec<&str> = c.split_whitespace().collect();
                let line = self.line("mailbox_command");
                self.doc.table("delivery").set(
                    "mailbox_command",
                    Val::strs(&argv),
                    &format!("mailbox_command (main.cf line {line})"),
                );
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
                    _ => self.find(
                        Kind::Unsupported,
                        "alias_maps",
                        &format!("{item}: only an aliases(5) text file is supported"),
                    ),
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
                self.svc_find(
                    Kind::Unsupported,
                    s,
                    n,
                    &format!("{a}: pipe attribute not supported (postern: user, flags, argv)"),
                );
            }
        }
        let mut t = self.doc.push("transport");
        t.set(
            "name",
            Val::s(&s.name),
            &format!("master.cf line {} ({} ... pipe)", s.line, s.name),
        );
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
        let per_recipient = PER_RECIPIENT
            .iter()
            .any(|m| argv.contains(&format!("${{{m}}}")) || argv.contains(&format!("${m}")));
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
                    self.doc.table("").set(
                        "recipient_delimiter",
                        Val::s(d),
                        &format!("recipient_delimiter (main.cf line {line})"),
                    );
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
                    self.doc.table("").set(
                        "recipient_delimiter",
                        Val::s("+"),
                        "not in main.cf: see the finding above",
                    );
                }
            }
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
        Some((host, port)) if port.parse::<u16>().is_ok() => {
            (host.to_string(), port.parse().ok(), None)
        }
        _ => (h.to_string(), None, None),
    }
}
