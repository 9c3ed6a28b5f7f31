//! The checks of the delivery hooks: `[[transport]]` pipes, `[delivery]
//! virtual_transport` and `mailbox_transports`, `[content]` and `[quota]`,
//! and the quota table of `[quota] limits_file` (the seed's vquota):
//!
//! ```text
//! # address or @domain        bytes (suffixes K, M, G as in the config)
//! alice@example.test          50M
//! @example.test               20M     (a default per mailbox of the domain)
//! ```

use std::collections::HashMap;
use std::path::Path;

use toml::de::{DeTable, DeValue};

use super::schema::Ctx;
use super::{Config, TransportKind};
use crate::route::transport::next_hop;

/// Transport names that mean something built in.
const BUILT_IN: &[&str] = &[
    "maildir", "virtual", "smtp", "relay", "error", "retry", "discard",
];

/// Quota limits by address and by `@domain`.
#[derive(Clone, Debug, Default)]
pub struct QuotaLimits {
    map: HashMap<String, u64>,
}

impl QuotaLimits {
    /// The limit for `address`: its own line, else its domain's.
    pub fn for_address(&self, address: &str) -> Option<u64> {
        let a = address.to_ascii_lowercase();
        if let Some(v) = self.map.get(&a) {
            return Some(*v);
        }
        let domain = a.rsplit_once('@').map(|(_, d)| d)?;
        self.map.get(&format!("@{domain}")).copied()
    }

    /// Parses the table; errors are (line, problem).
    pub fn parse(text: &str) -> Result<QuotaLimits, Vec<(usize, String)>> {
        let mut q = QuotaLimits::default();
        let mut errors = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let mut w = line.split_whitespace();
            let (Some(key), Some(size), None) = (w.next(), w.next(), w.next()) else {
                errors.push((
                    i + 1,
                    "expected \"address bytes\" or \"@domain bytes\"".into(),
                ));
                continue;
            };
            if !key.contains('@') {
                errors.push((i + 1, format!("{key:?} is not an address or @domain")));
                continue;
            }
            match parse_size(size) {
                Some(n) => {
                    q.map.insert(key.to_ascii_lowercase(), n);
                }
                None => errors.push((i + 1, format!("{size:?} is not a size such as 20M"))),
            }
        }
        if errors.is_empty() {
            Ok(q)
        } else {
            Err(errors)
        }
    }
}

fn parse_size(s: &str) -> Option<u64> {
    let (num, mult) = match s.find(|c: char| !c.is_ascii_digit()) {
        None => (s, 1u64),
        Some(i) => {
            let m = match s[i..].to_ascii_uppercase().as_str() {
                "K" | "KB" => 1 << 10,
                "M" | "MB" => 1 << 20,
                "G" | "GB" => 1 << 30,
                _ => return None,
            };
            (&s[..i], m)
        }
    };
    num.parse::<u64>().ok()?.checked_mul(mult)
}

/// A user for a pipe: a name from the password database, or uid[:gid].
/// Root is refused: a pipe never runs as root.
pub fn resolve_user(s: &str) -> Result<(u32, u32), String> {
    let (uid, gid) = if let Some((u, g)) = s.split_once(':') {
        let uid = u
            .parse::<u32>()
            .map_err(|_| format!("{u:?} is not a uid"))?;
        let gid = g
            .parse::<u32>()
            .map_err(|_| format!("{g:?} is not a gid"))?;
        (uid, gid)
    } else if let Ok(uid) = s.parse::<u32>() {
        let gid = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
            .ok()
            .flatten()
            .map(|u| u.gid.as_raw())
            .ok_or_else(|| {
                format!("uid {uid} has no entry in the password database: give uid:gid")
            })?;
        (uid, gid)
    } else {
        let u = nix::unistd::User::from_name(s)
            .map_err(|e| format!("cannot look up user {s:?}: {e}"))?
            .ok_or_else(|| format!("no user {s:?}"))?;
        (u.uid.as_raw(), u.gid.as_raw())
    };
    if uid == 0 || gid == 0 {
        return Err("never root: pipes run as an unprivileged user".into());
    }
    Ok((uid, gid))
}

/// What can be told of a pipe user without the password database: a
/// name, or uid[:gid] in numbers, and never root.
fn user_form(s: &str) -> Result<(), String> {
    let numbers = |u: &str, g: Option<&str>| -> Result<(), String> {
        let uid = u
            .parse::<u32>()
            .map_err(|_| format!("{u:?} is not a uid"))?;
        let gid = match g {
            Some(g) => Some(
                g.parse::<u32>()
                    .map_err(|_| format!("{g:?} is not a gid"))?,
            ),
            None => None,
        };
        if uid == 0 || gid == Some(0) {
            return Err("never root: pipes run as an unprivileged user".into());
        }
        Ok(())
    };
    match s.split_once(':') {
        Some((u, g)) => numbers(u, Some(g)),
        None if s.bytes().all(|b| b.is_ascii_digit()) && !s.is_empty() => numbers(s, None),
        None if s == "root" => Err("never root: pipes run as an unprivileged user".into()),
        None if s.is_empty() || s.bytes().any(|b| b.is_ascii_whitespace() || b == b'/') => {
            Err(format!("{s:?} is not a user name"))
        }
        None => Ok(()),
    }
}

impl Config {
    /// `[[transport]]`, `[delivery]` transports, `[content]`, `[quota]`.
    pub(super) fn check_hooks(&mut self, ctx: &mut Ctx<'_>, root: &DeTable<'_>, files: bool) {
        let names = self.check_transports(ctx, root, files);
        self.check_transport_choices(ctx, root, &names);
        self.check_filters(ctx, root);
        if files && !self.quota.limits_file.is_empty() {
            self.read_quota_limits(ctx, root);
        }
        self.read_rules(ctx, root, files);
    }

    /// Each `[[transport]]`: a new name, a command by absolute path, a user
    /// that is not root, known flags, a concurrency in range. Returns the
    /// names, in lower case.
    fn check_transports(&self, ctx: &mut Ctx<'_>, root: &DeTable<'_>, files: bool) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for (i, t) in self.transports.iter().enumerate() {
            let at = array_offset(root, "transport", i);
            let key = |k: &str| format!("transport[{}].{k}", i + 1);
            let name = t.name.to_ascii_lowercase();
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            {
                ctx.error(
                    at,
                    &key("name"),
                    format!("{:?} is not a name", t.name),
                    "letters, digits, - _ .",
                );
            } else if BUILT_IN.contains(&name.as_str()) {
                ctx.error(
                    at,
                    &key("name"),
                    format!("{name:?} is a built-in transport"),
                    format!("another name than {}", BUILT_IN.join(", ")),
                );
            } else if names.contains(&name) {
                ctx.error(
                    at,
                    &key("name"),
                    format!("{name:?} is used by another transport"),
                    "one transport per name",
                );
            } else {
                names.push(name);
            }
            let TransportKind::Pipe = t.kind;
            match t.command.first() {
                None => ctx.error(
                    at,
                    &key("command"),
                    "missing",
                    "the program and its arguments",
                ),
                Some(p) if !Path::new(p).is_absolute() => ctx.error(
                    at,
                    &key("command"),
                    format!("{p:?} is not an absolute path"),
                    "an absolute path such as \"/usr/bin/procmail\"",
                ),
                Some(_) => {}
            }
            // The server and check-config look the user up here; a client
            // command, or an image read with --root (its users are in the
            // image's passwd, not this machine's), checks only its form.
            let checked = if files && self.root.is_none() {
                resolve_user(&t.user).map(|_| ())
            } else {
                user_form(&t.user)
            };
            if let Err(e) = checked {
                ctx.error(at, &key("user"), e, "a user name, or uid[:gid], not root");
            }
            if let Some(c) = t.flags.chars().find(|c| !"RDOFBhqu>.X".contains(*c)) {
                ctx.error(
                    at,
                    &key("flags"),
                    format!("unknown flag {c:?}"),
                    "R D O F B h q u > . X",
                );
            }
            if t.concurrency == 0 || t.concurrency > 256 {
                ctx.error(
                    at,
                    &key("concurrency"),
                    format!("{} is out of range", t.concurrency),
                    "1 to 256",
                );
            }
        }
        names
    }

    /// `virtual_transport` and `mailbox_transports` name transports that
    /// exist; `mailbox_command` is an absolute path.
    fn check_transport_choices(&self, ctx: &mut Ctx<'_>, root: &DeTable<'_>, names: &[String]) {
        let known = |n: &str| {
            n.eq_ignore_ascii_case("maildir")
                || n.eq_ignore_ascii_case("virtual")
                || names.iter().any(|m| m.eq_ignore_ascii_case(n))
        };
        if !known(&self.delivery.virtual_transport) {
            ctx.error(
                key_offset(root, &["delivery", "virtual_transport"]),
                "delivery.virtual_transport",
                format!("no transport {:?}", self.delivery.virtual_transport),
                "\"maildir\" or the name of a [[transport]]",
            );
        }
        for (addr, t) in &self.delivery.mailbox_transports {
            if !known(t) {
                ctx.error(
                    key_offset(root, &["delivery", "mailbox_transports"]),
                    "delivery.mailbox_transports",
                    format!("{addr}: no transport {t:?}"),
                    "\"maildir\" or the name of a [[transport]]",
                );
            }
        }
        if let Some(p) = self.delivery.mailbox_command.first() {
            if !Path::new(p).is_absolute() {
                ctx.error(
                    key_offset(root, &["delivery", "mailbox_command"]),
                    "delivery.mailbox_command",
                    format!("{p:?} is not an absolute path"),
                    "an absolute path such as \"/usr/bin/procmail\"",
                );
            }
        }
    }

    /// The content filter, global and per listener: an address in
    /// brackets; never on a reinject listener; a concurrency of 1 or more.
    fn check_filters(&self, ctx: &mut Ctx<'_>, root: &DeTable<'_>) {
        let f = &self.content.filter;
        if !f.is_empty() && next_hop(f, 25).is_none_or(|h| h.mx) {
            ctx.error(
                key_offset(root, &["content", "filter"]),
                "content.filter",
                format!("{f:?} is not a filter address"),
                "\"[127.0.0.1]:10026\" (in brackets: no MX lookup)",
            );
        }
        for (i, l) in self.listeners.iter().enumerate() {
            if let Some(f) = &l.filter {
                if !f.is_empty() && next_hop(f, 25).is_none_or(|h| h.mx) {
                    ctx.error(
                        array_offset(root, "listener", i),
                        &format!("listener[{}].filter", i + 1),
                        format!("{f:?} is not a filter address"),
                        "\"[127.0.0.1]:10026\" (in brackets: no MX lookup), or \"\"",
                    );
                }
                if !f.is_empty() && l.role == crate::config::ListenerRole::Reinject {
                    ctx.error(
                        array_offset(root, "listener", i),
                        &format!("listener[{}].filter", i + 1),
                        "a reinject listener never filters (it is the filter's way back)",
                        "\"\", or another role",
                    );
                }
            }
        }
        if self.content.filter_concurrency == 0 {
            ctx.error(
                key_offset(root, &["content", "filter_concurrency"]),
                "content.filter_concurrency",
                "0 would never filter",
                "1 or more",
            );
        }
    }

    /// The header and body rules, from their files or inline; every
    /// problem is reported with the rules' own file and line.
    fn read_rules(&mut self, ctx: &mut Ctx<'_>, root: &DeTable<'_>, files: bool) {
        use crate::intake::content::ContentRules;
        use crate::intake::rules::{Kind, Table};
        let mut rules = ContentRules::default();
        let load = |ctx: &mut Ctx<'_>, key: &str, file: &str, kind: Kind| -> Option<Table> {
            if file.is_empty() || !files {
                return None;
            }
            let path = self.resolve(Path::new(file));
            match std::fs::read(&path) {
                Err(e) => {
                    ctx.error(
                        key_offset(root, &["content", key]),
                        &format!("content.{key}"),
                        format!("cannot read {}: {e}", path.display()),
                        "a readable file of Postfix regexp: rules, or \"\"",
                    );
                    None
                }
                Ok(bytes) => rule_table(
                    ctx,
                    Table::parse(
                        &path.display().to_string(),
                        &String::from_utf8_lossy(&bytes),
                        kind,
                    ),
                    key,
                ),
            }
        };
        rules.header.0.extend(load(
            ctx,
            "header_checks",
            &self.content.header_checks,
            Kind::Header,
        ));
        rules.mime_header.0.extend(load(
            ctx,
            "mime_header_checks",
            &self.content.mime_header_checks,
            Kind::Header,
        ));
        rules.body.0.extend(load(
            ctx,
            "body_checks",
            &self.content.body_checks,
            Kind::Body,
        ));
        // Inline rules after the file's, as a second table.
        if !self.content.header_rules.is_empty() {
            let first_line = value_line(root, &["content", "header_rules"], ctx);
            let file = ctx.file.to_string();
            rules.header.0.extend(rule_table(
                ctx,
                Table::parse_at(&file, first_line, &self.content.header_rules, Kind::Header),
                "header_rules",
            ));
        }
        self.content_rules = std::sync::Arc::new(rules);
    }

    fn read_quota_limits(&mut self, ctx: &mut Ctx<'_>, root: &DeTable<'_>) {
        let at = key_offset(root, &["quota", "limits_file"]);
        let path = self.resolve(Path::new(&self.quota.limits_file));
        match std::fs::read_to_string(&path) {
            Err(e) => ctx.error(
                at,
                "quota.limits_file",
                format!("cannot read {}: {e}", path.display()),
                "a readable file of \"address bytes\" lines",
            ),
            Ok(text) => match QuotaLimits::parse(&text) {
                Ok(q) => self.quota_limits = q,
                Err(errors) => {
                    for (line, problem) in errors {
                        ctx.error(
                            at,
                            "quota.limits_file",
                            format!("{}:{line}: {problem}", path.display()),
                            "lines \"address bytes\" or \"@domain bytes\"",
                        );
                    }
                }
            },
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

/// A parsed table, or its errors moved into the config's.
fn rule_table(
    ctx: &mut Ctx<'_>,
    parsed: Result<crate::intake::rules::Table, Vec<crate::intake::rules::RuleError>>,
    key: &str,
) -> Option<crate::intake::rules::Table> {
    match parsed {
        Ok(t) => Some(t),
        Err(errors) => {
            for e in errors {
                ctx.errors.push(super::ConfigError {
                    file: e.file,
                    line: e.line,
                    key: format!("content.{key}"),
                    problem: e.problem,
                    allowed: String::new(),
                });
            }
            None
        }
    }
}

/// The line a string value's text starts on (a multi-line string's first
/// newline is not part of it).
fn value_line(root: &DeTable<'_>, path: &[&str], ctx: &Ctx<'_>) -> usize {
    let mut table = root;
    for (i, k) in path.iter().enumerate() {
        let Some(v) = table.get(*k) else {
            return 1;
        };
        if i + 1 == path.len() {
            let start = v.span().start;
            let rest = ctx.source().get(start..).unwrap_or("");
            let multi = ["\"\"\"\n", "'''\n", "\"\"\"\r\n", "'''\r\n"]
                .iter()
                .any(|m| rest.starts_with(m));
            return ctx.line_of(start) + usize::from(multi);
        }
        match v.get_ref() {
            DeValue::Table(t) => table = t,
            _ => return 1,
        }
    }
    1
}

fn array_offset(root: &DeTable<'_>, key: &str, i: usize) -> usize {
    match root.get(key).map(|v| v.get_ref()) {
        Some(DeValue::Array(a)) => a.get(i).map(|v| v.span().start).unwrap_or(0),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_table_by_address_then_domain() {
        let q =
            QuotaLimits::parse("# vquota\nalice@example.test 50M\n@example.test 20M # default\n")
                .unwrap();
        assert_eq!(q.for_address("Alice@Example.test"), Some(50 << 20));
        assert_eq!(q.for_address("bob@example.test"), Some(20 << 20));
        assert_eq!(q.for_address("x@other.test"), None);
        let e = QuotaLimits::parse("ok@a.test 1K\nnodomain 5\n@b.test lots\n").unwrap_err();
        assert_eq!(e.iter().map(|(l, _)| *l).collect::<Vec<_>>(), [2, 3]);
    }

    #[test]
    fn pipe_users_are_never_root() {
        assert!(resolve_user("root").is_err());
        assert!(resolve_user("0:0").is_err());
        assert_eq!(resolve_user("5000:5000"), Ok((5000, 5000)));
        assert!(resolve_user("nosuchuser-xyz").is_err());
        // Without the password database: the form only.
        assert!(user_form("nosuchuser-xyz").is_ok());
        assert!(user_form("root").is_err());
        assert!(user_form("0").is_err());
        assert!(user_form("5000:0").is_err());
        assert!(user_form("5000:x").is_err());
        assert!(user_form("").is_err());
        assert_eq!(user_form("5000:5000"), Ok(()));
    }
}
