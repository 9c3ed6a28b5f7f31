//! The rows a sync brings, as the source holds them, and the checks that
//! keep a row that would break delivery out of the mirror: domain names,
//! addresses and `goto` targets, maildir paths under the base, quotas.
//! Each check says what is wrong in words a log line can carry; no value
//! of a password column ever appears in one.

use rusqlite::types::Value;

use super::super::validate::{
    alias_address, domain_name, goto_list, mailbox_address, maildir_path, target_address,
};

/// The longest `alias.goto` taken: what PostfixAdmin's TEXT column holds.
pub const MAX_GOTO: usize = 65_535;
/// The longest value of any other column: PostfixAdmin's varchar(255),
/// with room for multi-byte characters.
pub const MAX_FIELD: usize = 1024;

/// The mirrored tables, in the order a sync fills them: domains first, so
/// that a mailbox can be checked against the domains of this same sync.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Table {
    Domain,
    AliasDomain,
    Mailbox,
    Alias,
}

impl Table {
    pub const ALL: [Table; 4] = [
        Table::Domain,
        Table::AliasDomain,
        Table::Mailbox,
        Table::Alias,
    ];

    /// PostfixAdmin's (and the mirror's) name.
    pub fn name(self) -> &'static str {
        match self {
            Table::Domain => "domain",
            Table::AliasDomain => "alias_domain",
            Table::Mailbox => "mailbox",
            Table::Alias => "alias",
        }
    }

    pub fn from_name(name: &str) -> Option<Table> {
        Table::ALL.into_iter().find(|t| t.name() == name)
    }

    /// The primary key column.
    pub(super) fn key(self) -> &'static str {
        self.columns()[0]
    }

    /// The columns a sync writes, the key first. Others (PostfixAdmin's
    /// tokens, phone, quota2...) keep their values or defaults.
    pub(super) fn columns(self) -> &'static [&'static str] {
        match self {
            Table::Domain => &[
                "domain",
                "description",
                "transport",
                "backupmx",
                "quota",
                "maxquota",
                "active",
                "created",
                "modified",
            ],
            Table::AliasDomain => &[
                "alias_domain",
                "target_domain",
                "active",
                "created",
                "modified",
            ],
            Table::Mailbox => &[
                "username",
                "password",
                "name",
                "maildir",
                "quota",
                "local_part",
                "domain",
                "active",
                "smtp_active",
                "created",
                "modified",
            ],
            Table::Alias => &["address", "goto", "domain", "active", "created", "modified"],
        }
    }
}

/// `created`/`modified` when the source has none.
pub const NO_TIME: &str = "2000-01-01 00:00:00";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Domain {
    pub domain: String,
    pub description: String,
    pub transport: String,
    pub backupmx: bool,
    /// MB; PostfixAdmin uses -1 for "disabled", so negatives are kept.
    pub quota: i64,
    pub maxquota: i64,
    pub active: bool,
    pub created: String,
    pub modified: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AliasDomain {
    pub alias_domain: String,
    pub target_domain: String,
    pub active: bool,
    pub created: String,
    pub modified: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mailbox {
    pub username: String,
    /// The stored hash; never logged.
    pub password: String,
    pub name: String,
    pub maildir: String,
    /// Bytes; 0 = unlimited.
    pub quota: i64,
    /// "" = the username's.
    pub local_part: String,
    pub domain: String,
    pub active: bool,
    pub smtp_active: bool,
    pub created: String,
    pub modified: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Alias {
    pub address: String,
    pub goto: String,
    /// "" = the address's.
    pub domain: String,
    pub active: bool,
    pub created: String,
    pub modified: String,
}

/// One source row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Row {
    Domain(Domain),
    AliasDomain(AliasDomain),
    Mailbox(Mailbox),
    Alias(Alias),
}

impl Row {
    pub fn table(&self) -> Table {
        match self {
            Row::Domain(_) => Table::Domain,
            Row::AliasDomain(_) => Table::AliasDomain,
            Row::Mailbox(_) => Table::Mailbox,
            Row::Alias(_) => Table::Alias,
        }
    }

    /// The key as the source spells it, for log lines about a row that
    /// failed its checks.
    pub fn raw_key(&self) -> &str {
        match self {
            Row::Domain(d) => &d.domain,
            Row::AliasDomain(a) => &a.alias_domain,
            Row::Mailbox(m) => &m.username,
            Row::Alias(a) => &a.address,
        }
    }
}

/// A checked row: its key (lower-cased, as lookups fold it) and the values
/// of [`Table::columns`]. `domain` is the domain a mailbox needs.
pub(super) struct Checked {
    pub key: String,
    pub values: Vec<Value>,
    pub needs_domain: Option<String>,
}

fn text(s: &str) -> Value {
    Value::Text(s.to_string())
}

fn flag(b: bool) -> Value {
    Value::Integer(b as i64)
}

fn msg(e: super::super::admin::AdminError) -> String {
    e.to_string()
}

fn field_lengths(fields: &[(&str, &str)]) -> Result<(), String> {
    for (name, v) in fields {
        if v.len() > MAX_FIELD {
            return Err(format!(
                "{name} is {} bytes long; at most {MAX_FIELD}",
                v.len()
            ));
        }
        if v.contains('\0') {
            return Err(format!("{name} contains a NUL byte"));
        }
    }
    Ok(())
}

/// Checks a row; the error says what would break delivery.
pub(super) fn check(row: &Row) -> Result<Checked, String> {
    match row {
        Row::Domain(d) => {
            field_lengths(&[("description", &d.description), ("transport", &d.transport)])?;
            let key = domain_name(&d.domain).map_err(msg)?;
            Ok(Checked {
                values: vec![
                    text(&key),
                    text(&d.description),
                    text(&d.transport),
                    flag(d.backupmx),
                    Value::Integer(d.quota),
                    Value::Integer(d.maxquota),
                    flag(d.active),
                    text(&d.created),
                    text(&d.modified),
                ],
                key,
                needs_domain: None,
            })
        }
        Row::AliasDomain(a) => {
            let key = domain_name(&a.alias_domain).map_err(msg)?;
            let target =
                domain_name(&a.target_domain).map_err(|e| format!("target_domain: {e}"))?;
            if target == key {
                return Err(format!("{key} is its own target"));
            }
            Ok(Checked {
                values: vec![
                    text(&key),
                    text(&target),
                    flag(a.active),
                    text(&a.created),
                    text(&a.modified),
                ],
                key,
                needs_domain: None,
            })
        }
        Row::Mailbox(m) => {
            field_lengths(&[("name", &m.name), ("password", &m.password)])?;
            let a = mailbox_address(&m.username).map_err(msg)?;
            let key = a.key();
            let maildir = maildir_path(&m.maildir).map_err(msg)?;
            if m.quota < 0 {
                return Err(format!("quota {} is negative (0 = unlimited)", m.quota));
            }
            let domain = domain_name(&m.domain).map_err(|e| format!("domain: {e}"))?;
            let local = if m.local_part.is_empty() {
                a.local.clone()
            } else {
                m.local_part.to_ascii_lowercase()
            };
            Ok(Checked {
                values: vec![
                    text(&key),
                    text(&m.password),
                    text(&m.name),
                    text(&maildir),
                    Value::Integer(m.quota),
                    text(&local),
                    text(&domain),
                    flag(m.active),
                    flag(m.smtp_active),
                    text(&m.created),
                    text(&m.modified),
                ],
                key,
                needs_domain: Some(domain),
            })
        }
        Row::Alias(a) => {
            if a.goto.len() > MAX_GOTO {
                return Err(format!(
                    "goto is {} bytes long; at most {MAX_GOTO} (PostfixAdmin's TEXT column)",
                    a.goto.len()
                ));
            }
            let (key, own_domain) = alias_address(&a.address).map_err(msg)?;
            let targets = goto_list(&a.goto);
            if targets.is_empty() {
                return Err("goto is empty: the alias leads nowhere".into());
            }
            for t in &targets {
                target_address(t).map_err(|e| format!("goto: {e}"))?;
            }
            let domain = if a.domain.is_empty() {
                own_domain
            } else {
                domain_name(&a.domain).map_err(|e| format!("domain: {e}"))?
            };
            Ok(Checked {
                values: vec![
                    text(&key),
                    text(a.goto.trim()),
                    text(&domain),
                    flag(a.active),
                    text(&a.created),
                    text(&a.modified),
                ],
                key,
                needs_domain: None,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mailbox(username: &str, maildir: &str, quota: i64) -> Row {
        Row::Mailbox(Mailbox {
            username: username.into(),
            password: "{PLAIN}x".into(),
            name: String::new(),
            maildir: maildir.into(),
            quota,
            local_part: String::new(),
            domain: "example.test".into(),
            active: true,
            smtp_active: true,
            created: NO_TIME.into(),
            modified: NO_TIME.into(),
        })
    }

    fn alias(address: &str, goto: &str) -> Row {
        Row::Alias(Alias {
            address: address.into(),
            goto: goto.into(),
            domain: String::new(),
            active: true,
            created: NO_TIME.into(),
            modified: NO_TIME.into(),
        })
    }

    #[test]
    fn each_class_of_bad_row_is_named() {
        let c = check(&mailbox("Alice@Example.TEST", "example.test/alice/", 0)).unwrap();
        assert_eq!(c.key, "alice@example.test");
        assert_eq!(c.needs_domain.as_deref(), Some("example.test"));
        let e = |r: Row| check(&r).err().unwrap();
        assert!(e(mailbox("a@example.test", "/var/mail/a/", 0)).contains("relative"));
        assert!(e(mailbox("a@example.test", "example.test/../../etc/", 0)).contains(".."));
        assert!(e(mailbox("a@example.test", "x/", -5)).contains("negative"));
        assert!(e(mailbox("a@bad_domain.test", "x/", 0)).contains("not a valid"));
        assert!(e(alias("x@example.test", "ok@example.test,not an address")).contains("goto"));
        assert!(e(alias("x@example.test", " , ")).contains("empty"));
        assert!(e(alias("x@example.test", &"a".repeat(MAX_GOTO + 1))).contains("at most 65535"));
        assert!(check(&alias("@Catch.test", "alice@example.test, bob@remote.test")).is_ok());
        let d = |name: &str| {
            check(&Row::Domain(Domain {
                domain: name.into(),
                description: String::new(),
                transport: String::new(),
                backupmx: false,
                quota: -1,
                maxquota: 0,
                active: true,
                created: NO_TIME.into(),
                modified: NO_TIME.into(),
            }))
        };
        assert_eq!(d("Example.TEST").unwrap().key, "example.test");
        assert!(d("exa mple.test").is_err());
    }
}
