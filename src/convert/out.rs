//! The TOML the converter writes: tables in the order `postern config
//! example` shows them, each key with the comment that says where it came
//! from. Paths are kept apart from other strings so that `--root DIR`
//! can put every absolute one under DIR when the file is written.

use std::path::Path;

#[derive(Clone, Debug, PartialEq)]
pub enum Val {
    Str(String),
    /// A file or directory: moved under `--root`.
    Path(String),
    Int(i64),
    Bool(bool),
    List(Vec<Val>),
    /// An inline table `{ "k" = "v" }`.
    Map(Vec<(String, Val)>),
    /// Text of several lines (rules), written as a multi-line string.
    Text(String),
}

impl Val {
    pub fn s(s: impl Into<String>) -> Val {
        Val::Str(s.into())
    }
    pub fn strs<S: AsRef<str>>(v: &[S]) -> Val {
        Val::List(v.iter().map(|s| Val::s(s.as_ref())).collect())
    }
}

#[derive(Clone, Debug)]
struct Entry {
    key: String,
    val: Val,
    comment: Vec<String>,
}

#[derive(Clone, Debug)]
struct Table {
    /// "" for the top level, `smtp`, `relay.route`, ...
    name: String,
    array: bool,
    entries: Vec<Entry>,
}

/// Tables in the order of `postern config example`.
const ORDER: &[&str] = &[
    "",
    "listener",
    "smtp",
    "tls",
    "auth",
    "directory",
    "delivery",
    "transport",
    "content",
    "quota",
    "queue",
    "relay",
    "relay.route",
    "control",
    "sync",
    "sync.mysql",
    "sync.mysql.tables",
    "sync.mysql.columns",
];

#[derive(Clone, Debug, Default)]
pub struct Doc {
    tables: Vec<Table>,
}

/// A handle on one table while it is filled.
pub struct TableRef<'a> {
    t: &'a mut Table,
}

impl TableRef<'_> {
    /// Sets `key` (replacing an earlier value) with a comment: where it
    /// came from.
    pub fn set(&mut self, key: &str, val: Val, comment: &str) -> &mut Self {
        let comment: Vec<String> = comment
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect();
        match self.t.entries.iter_mut().find(|e| e.key == key) {
            Some(e) => {
                e.val = val;
                e.comment = comment;
            }
            None => self.t.entries.push(Entry {
                key: key.to_string(),
                val,
                comment,
            }),
        }
        self
    }

    pub fn has(&self, key: &str) -> bool {
        self.t.entries.iter().any(|e| e.key == key)
    }
}

impl Doc {
    /// The table `[name]` (`""`: the top level), made when first asked for.
    pub fn table(&mut self, name: &str) -> TableRef<'_> {
        let i = match self.tables.iter().position(|t| t.name == name && !t.array) {
            Some(i) => i,
            None => {
                self.tables.push(Table {
                    name: name.to_string(),
                    array: false,
                    entries: Vec::new(),
                });
                self.tables.len() - 1
            }
        };
        TableRef {
            t: &mut self.tables[i],
        }
    }

    /// A new `[[name]]` table.
    pub fn push(&mut self, name: &str) -> TableRef<'_> {
        self.tables.push(Table {
            name: name.to_string(),
            array: true,
            entries: Vec::new(),
        });
        TableRef {
            t: self.tables.last_mut().expect("pushed"),
        }
    }

    /// The `[[name]]` tables made so far.
    pub fn count(&self, name: &str) -> usize {
        self.tables
            .iter()
            .filter(|t| t.array && t.name == name)
            .count()
    }

    /// Every path value, absolute ones under `root` when given.
    pub fn render(&self, root: Option<&Path>) -> String {
        let mut tables: Vec<&Table> = self
            .tables
            .iter()
            .filter(|t| !t.entries.is_empty() || t.array)
            .collect();
        tables.sort_by_key(|t| {
            ORDER
                .iter()
                .position(|n| *n == t.name)
                .unwrap_or(ORDER.len())
        });
        let mut out = String::new();
        for t in tables {
            if !t.name.is_empty() {
                let header = if t.array {
                    format!("[[{}]]", t.name)
                } else {
                    format!("[{}]", t.name)
                };
                out.push_str(&format!("\n{header}\n"));
            }
            for e in &t.entries {
                for c in &e.comment {
                    out.push_str(&format!("# {c}\n"));
                }
                out.push_str(&format!("{} = {}\n", key(&e.key), value(&e.val, root)));
            }
        }
        out
    }
}

fn key(k: &str) -> String {
    if !k.is_empty()
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        k.to_string()
    } else {
        quote(k)
    }
}

fn value(v: &Val, root: Option<&Path>) -> String {
    match v {
        Val::Str(s) => quote(s),
        Val::Path(p) => quote(&reroot(p, root)),
        Val::Int(n) => n.to_string(),
        Val::Bool(b) => b.to_string(),
        Val::List(items) => {
            let items: Vec<String> = items.iter().map(|i| value(i, root)).collect();
            format!("[{}]", items.join(", "))
        }
        Val::Map(items) => {
            if items.is_empty() {
                return "{}".into();
            }
            let items: Vec<String> = items
                .iter()
                .map(|(k, v)| format!("{} = {}", quote(k), value(v, root)))
                .collect();
            format!("{{ {} }}", items.join(", "))
        }
        Val::Text(t) if !t.contains("'''") && !t.contains('\r') => {
            let t = if t.ends_with('\n') {
                t.clone()
            } else {
                format!("{t}\n")
            };
            format!("'''\n{t}'''")
        }
        Val::Text(t) => quote(t),
    }
}

/// `p` under `root` when both are given and `p` is absolute.
pub fn reroot(p: &str, root: Option<&Path>) -> String {
    match root {
        Some(r) if p.starts_with('/') => r.join(p.trim_start_matches('/')).display().to_string(),
        _ => p.to_string(),
    }
}

/// A TOML basic string.
pub fn quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\u{:04X}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_come_in_example_order_and_paths_move_under_root() {
        let mut d = Doc::default();
        d.table("smtp").set(
            "helo_required",
            Val::Bool(true),
            "smtpd_helo_required = yes",
        );
        d.push("listener").set("address", Val::s("0.0.0.0:25"), "");
        d.table("").set("hostname", Val::s("a\"b"), "");
        d.table("tls")
            .set("cert_file", Val::Path("/etc/x.pem".into()), "");
        d.table("content")
            .set("header_rules", Val::Text("/^Received:/ IGNORE".into()), "");
        let out = d.render(Some(Path::new("/tmp/r")));
        assert_eq!(
            out,
            "hostname = \"a\\\"b\"\n\n[[listener]]\naddress = \"0.0.0.0:25\"\n\n[smtp]\n# smtpd_helo_required = yes\nhelo_required = true\n\n[tls]\ncert_file = \"/tmp/r/etc/x.pem\"\n\n[content]\nheader_rules = '''\n/^Received:/ IGNORE\n'''\n"
        );
    }
}
