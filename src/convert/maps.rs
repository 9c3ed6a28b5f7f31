//! The lookup tables main.cf names, read for conversion. Pure: the text
//! comes from [`super::source::Source`].
//!
//! - `type:name` references (`hash:/etc/aliases`, `proxy:mysql:/x.cf`,
//!   `static:5000`, `regexp:/etc/postfix/header_checks`).
//! - postmap(1) source files (`transport`, `sasl_passwd`, vquota-style
//!   `key value` tables): `key value` per logical line, `#` comments,
//!   indented lines continue.
//! - `mysql:` files (mysql_table(5)): main.cf syntax with `user`,
//!   `password`, `hosts`, `dbname`, `table`, `select_field`,
//!   `where_field`, `additional_conditions` or `query`.

use super::maincf::{self, logical_lines};
use super::Finding;

/// `type:name` as main.cf writes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapRef {
    pub kind: String,
    pub name: String,
}

impl MapRef {
    /// `proxy:` is dropped (postern reads tables itself).
    pub fn parse(s: &str) -> Option<MapRef> {
        let s = s.trim();
        let s = s.strip_prefix("proxy:").unwrap_or(s);
        let (kind, name) = s.split_once(':')?;
        if kind.is_empty() || !kind.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return None;
        }
        Some(MapRef {
            kind: kind.to_ascii_lowercase(),
            name: name.to_string(),
        })
    }

    /// Map types whose source is a postmap(1) text file.
    pub fn is_indexed(&self) -> bool {
        ["hash", "btree", "lmdb", "cdb", "dbm", "sdbm", "texthash"].contains(&self.kind.as_str())
    }
}

/// One `key value` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pair {
    pub line: usize,
    pub key: String,
    pub value: String,
}

/// A postmap(1) source file; a key without a value is a problem.
pub fn pairs(file: &str, text: &str) -> (Vec<Pair>, Vec<Finding>) {
    let mut out = Vec::new();
    let mut problems = Vec::new();
    for (line, l) in logical_lines(text) {
        match l.split_once(char::is_whitespace) {
            Some((k, v)) if !v.trim().is_empty() => out.push(Pair {
                line,
                key: k.to_string(),
                value: v.trim().to_string(),
            }),
            _ => problems.push(Finding::error(
                file,
                line,
                "",
                &format!("{l:?}: a key without a value"),
            )),
        }
    }
    (out, problems)
}

/// A transport(5) entry: `domain transport:nexthop`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransportEntry {
    pub line: usize,
    pub domain: String,
    pub transport: String,
    pub nexthop: String,
}

pub fn transport_entries(file: &str, text: &str) -> (Vec<TransportEntry>, Vec<Finding>) {
    let (pairs, mut problems) = pairs(file, text);
    let mut out = Vec::new();
    for p in pairs {
        let (t, n) = p.value.split_once(':').unwrap_or((p.value.as_str(), ""));
        if p.value.contains(char::is_whitespace) {
            problems.push(Finding::error(
                file,
                p.line,
                "",
                &format!("{:?}: one `transport:nexthop` per key", p.value),
            ));
            continue;
        }
        out.push(TransportEntry {
            line: p.line,
            domain: p.key.to_ascii_lowercase(),
            transport: t.to_string(),
            nexthop: n.to_string(),
        });
    }
    (out, problems)
}

/// A `mysql:` map file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MysqlMap {
    pub file: String,
    pub user: String,
    pub password: Option<String>,
    pub hosts: Vec<String>,
    pub dbname: String,
    pub table: String,
    pub select_field: String,
    pub where_field: String,
    pub additional_conditions: String,
    pub query: String,
}

/// Parses a mysql_table(5) file; a missing user, password, hosts or
/// dbname is a problem naming the file.
pub fn mysql(file: &str, text: &str) -> (MysqlMap, Vec<Finding>) {
    let (cf, mut problems) = maincf::parse(file, text);
    let get = |k: &str| cf.raw(k).unwrap_or("").to_string();
    let m = MysqlMap {
        file: file.to_string(),
        user: get("user"),
        password: cf.raw("password").map(str::to_string),
        hosts: maincf::list(&get("hosts")),
        dbname: get("dbname"),
        table: get("table"),
        select_field: get("select_field"),
        where_field: get("where_field"),
        additional_conditions: get("additional_conditions"),
        query: get("query"),
    };
    let missing = |k: &str, why: &str| Finding::error(file, 0, k, &format!("missing: {why}"));
    if m.user.is_empty() {
        problems.push(missing("user", "the MySQL user postern sync logs in as"));
    }
    if m.password.is_none() {
        problems.push(missing(
            "password",
            "postern sync needs the password (it goes to a 0600 file, never into the TOML); add `password = ...` here",
        ));
    }
    if m.hosts.is_empty() {
        problems.push(missing("hosts", "\"localhost\" (the socket) or a host"));
    }
    if m.dbname.is_empty() {
        problems.push(missing("dbname", "the PostfixAdmin database"));
    }
    if m.query.is_empty()
        && (m.table.is_empty() || m.select_field.is_empty() || m.where_field.is_empty())
    {
        problems.push(missing(
            "query",
            "either `query` or `table`, `select_field` and `where_field`",
        ));
    }
    for known in cf.params.iter().map(|p| p.name.as_str()) {
        if ![
            "user",
            "password",
            "hosts",
            "dbname",
            "table",
            "select_field",
            "where_field",
            "additional_conditions",
            "query",
            "result_format",
            "domain",
            "expansion_limit",
            "option_file",
            "option_group",
            "tls_cert_file",
            "tls_key_file",
            "tls_CAfile",
            "tls_CApath",
            "tls_verify_cert",
            "tls_ciphers",
            "idle_interval",
            "retry_interval",
        ]
        .contains(&known)
        {
            problems.push(Finding::error(
                file,
                cf.line(known),
                known,
                "not a mysql_table(5) parameter",
            ));
        }
    }
    (m, problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_references() {
        assert_eq!(
            MapRef::parse("proxy:mysql:/etc/postfix/x.cf"),
            Some(MapRef {
                kind: "mysql".into(),
                name: "/etc/postfix/x.cf".into()
            })
        );
        assert_eq!(MapRef::parse("static:5000").unwrap().name, "5000");
        assert!(MapRef::parse("hash:/etc/aliases").unwrap().is_indexed());
        assert_eq!(MapRef::parse("/etc/aliases"), None);
    }

    #[test]
    fn transport_maps_with_comments() {
        let (e, p) = transport_entries("transport.maps", "# routes\nmail01.hoge.org relay-mail01:[mail01p.hoge.org]\n\nMAIL02.hoge.org  relay-mail02:[mail02p.hoge.org]:2525\nlonely\n");
        assert_eq!(e.len(), 2);
        assert_eq!(
            (e[0].line, e[0].transport.as_str(), e[0].nexthop.as_str()),
            (2, "relay-mail01", "[mail01p.hoge.org]")
        );
        assert_eq!(
            (e[1].domain.as_str(), e[1].nexthop.as_str()),
            ("mail02.hoge.org", "[mail02p.hoge.org]:2525")
        );
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].line, 5);
    }

    #[test]
    fn mysql_files() {
        let (m, p) = mysql("a.cf", "user = u\npassword = p w\nhosts = localhost 127.0.0.1\ndbname = db\ntable = alias\nselect_field = goto\nwhere_field = address\n");
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(m.password.as_deref(), Some("p w"));
        assert_eq!(m.hosts, vec!["localhost", "127.0.0.1"]);
        let (_, p) = mysql("b.cf", "user = u\nhosts = localhost\ndbname = db\ntable = alias\nselect_field = goto\nwhere_field = address\nbogus = 1\n");
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(p[0].text.contains("password"));
        assert_eq!((p[1].param.as_str(), p[1].line), ("bogus", 7));
    }
}
