//! Source values → rows: the bytes of each column (MySQL's text protocol,
//! in the order of `config::sync::TABLES`) decoded into the mirror's
//! types. What cannot be decoded makes the row a [`Decoded::Bad`] with the
//! column named; the meaning of a decoded row (addresses, paths, quotas)
//! is checked by the mirror's import API, which refuses rows that would
//! break delivery whoever writes them.
//!
//! Text must be UTF-8 (the connection asks for utf8mb4, so latin1 columns
//! arrive converted); only binary columns can hold other bytes. Where
//! such bytes would only spoil a display name (`name`, `description`),
//! they are replaced by U+FFFD and the row is kept, with a note.

use crate::directory::sqlite::import::{
    Alias, AliasDomain, Domain, Mailbox, Row, Table, MAX_GOTO, NO_TIME,
};

/// A decoded row (with notes for the log), or why it could not be.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    Row(Row, Vec<String>),
    Bad { key: String, why: String },
}

/// The columns of one source row, by position.
struct Cols {
    values: Vec<Option<Vec<u8>>>,
    names: &'static [(&'static str, bool)],
    notes: Vec<String>,
}

impl Cols {
    fn raw(&self, i: usize) -> Option<&[u8]> {
        self.values.get(i).and_then(|v| v.as_deref())
    }

    fn name(&self, i: usize) -> &'static str {
        self.names[i].0
    }

    /// Text; NULL is "".
    fn text(&self, i: usize) -> Result<String, String> {
        let Some(b) = self.raw(i) else {
            return Ok(String::new());
        };
        let limit = if self.name(i) == "goto" {
            usize::MAX
        } else {
            MAX_GOTO
        };
        if b.len() > limit {
            return Err(format!("{} is {} bytes long", self.name(i), b.len()));
        }
        String::from_utf8(b.to_vec()).map_err(|e| {
            format!(
                "{} is not UTF-8 (byte {} of {})",
                self.name(i),
                e.utf8_error().valid_up_to() + 1,
                b.len()
            )
        })
    }

    /// Text only shown to people: bad bytes become U+FFFD, with a note.
    fn display(&mut self, i: usize) -> String {
        let Some(b) = self.raw(i) else {
            return String::new();
        };
        match std::str::from_utf8(b) {
            Ok(s) => s.to_string(),
            Err(_) => {
                let s = String::from_utf8_lossy(b).into_owned();
                self.notes.push(format!(
                    "{} is not UTF-8; stored with U+FFFD for the bad bytes",
                    self.name(i)
                ));
                s
            }
        }
    }

    /// An integer; NULL is `default`.
    fn int(&self, i: usize, default: i64) -> Result<i64, String> {
        let Some(b) = self.raw(i) else {
            return Ok(default);
        };
        let s = String::from_utf8_lossy(b);
        s.trim()
            .parse::<i64>()
            .map_err(|_| format!("{} {:?} is not a number", self.name(i), s))
    }

    /// A flag: 1/0 as PostfixAdmin stores it, y/n and true/false as older
    /// schemas did; NULL is `default`.
    fn flag(&self, i: usize, default: bool) -> Result<bool, String> {
        let Some(b) = self.raw(i) else {
            return Ok(default);
        };
        let s = String::from_utf8_lossy(b).trim().to_ascii_lowercase();
        match s.as_str() {
            "y" | "yes" | "t" | "true" => Ok(true),
            "n" | "no" | "f" | "false" => Ok(false),
            _ => s
                .parse::<i64>()
                .map(|n| n != 0)
                .map_err(|_| format!("{} {s:?} is not 0 or 1", self.name(i))),
        }
    }

    /// A `datetime`; NULL is PostfixAdmin's default.
    fn time(&self, i: usize) -> Result<String, String> {
        match self.raw(i) {
            None => Ok(NO_TIME.to_string()),
            Some(_) => self.text(i),
        }
    }
}

/// Decodes the values of one row of `table`.
pub fn decode(table: Table, values: Vec<Option<Vec<u8>>>) -> Decoded {
    let names = crate::config::sync::TABLES
        .iter()
        .find(|(n, _)| *n == table.name())
        .map(|(_, c)| *c)
        .expect("config lists every mirrored table");
    let mut c = Cols {
        values,
        names,
        notes: Vec::new(),
    };
    let key = c
        .raw(0)
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .unwrap_or_default();
    let row = match table {
        Table::Domain => domain(&mut c),
        Table::AliasDomain => alias_domain(&c),
        Table::Mailbox => mailbox(&mut c),
        Table::Alias => alias(&c),
    };
    match row {
        Ok(r) => Decoded::Row(r, c.notes),
        Err(why) => Decoded::Bad { key, why },
    }
}

fn domain(c: &mut Cols) -> Result<Row, String> {
    Ok(Row::Domain(Domain {
        domain: c.text(0)?,
        description: c.display(1),
        transport: c.text(2)?,
        backupmx: c.flag(3, false)?,
        quota: c.int(4, 0)?,
        maxquota: c.int(5, 0)?,
        active: c.flag(6, true)?,
        created: c.time(7)?,
        modified: c.time(8)?,
    }))
}

fn alias_domain(c: &Cols) -> Result<Row, String> {
    Ok(Row::AliasDomain(AliasDomain {
        alias_domain: c.text(0)?,
        target_domain: c.text(1)?,
        active: c.flag(2, true)?,
        created: c.time(3)?,
        modified: c.time(4)?,
    }))
}

fn mailbox(c: &mut Cols) -> Result<Row, String> {
    Ok(Row::Mailbox(Mailbox {
        username: c.text(0)?,
        password: c.text(1).map_err(|_| "password is not UTF-8".to_string())?,
        name: c.display(2),
        maildir: c.text(3)?,
        quota: c.int(4, 0)?,
        local_part: c.text(5)?,
        domain: c.text(6)?,
        active: c.flag(7, true)?,
        smtp_active: c.flag(8, true)?,
        created: c.time(9)?,
        modified: c.time(10)?,
    }))
}

fn alias(c: &Cols) -> Result<Row, String> {
    Ok(Row::Alias(Alias {
        address: c.text(0)?,
        goto: c.text(1)?,
        domain: c.text(2)?,
        active: c.flag(3, true)?,
        created: c.time(4)?,
        modified: c.time(5)?,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<Option<Vec<u8>>> {
        s.iter().map(|x| Some(x.as_bytes().to_vec())).collect()
    }

    #[test]
    fn bytes_become_rows_or_say_which_column_failed() {
        let mut m = v(&[
            "alice@example.test",
            "{PLAIN}x",
            "Alice",
            "example.test/alice/",
            "0",
            "alice",
            "example.test",
            "1",
            "0",
            "2000-01-01 00:00:00",
            "2000-01-01 00:00:00",
        ]);
        m[2] = Some(b"Al\xffce".to_vec());
        m[9] = None;
        let Decoded::Row(Row::Mailbox(r), notes) = decode(Table::Mailbox, m.clone()) else {
            panic!()
        };
        assert_eq!(r.name, "Al\u{fffd}ce");
        assert!(!r.smtp_active);
        assert_eq!(r.created, NO_TIME);
        assert!(notes[0].contains("name is not UTF-8"), "{notes:?}");

        m[4] = Some(b"lots".to_vec());
        assert_eq!(
            decode(Table::Mailbox, m.clone()),
            Decoded::Bad {
                key: "alice@example.test".into(),
                why: "quota \"lots\" is not a number".into()
            }
        );
        m[4] = Some(b"0".to_vec());
        m[3] = Some(b"example.test/\xe9/".to_vec());
        let Decoded::Bad { why, .. } = decode(Table::Mailbox, m) else {
            panic!()
        };
        assert!(why.starts_with("maildir is not UTF-8"), "{why}");
        let Decoded::Bad { why, .. } = decode(
            Table::Alias,
            v(&["a@x.test", "b@x.test", "x.test", "maybe", "", ""]),
        ) else {
            panic!()
        };
        assert!(why.contains("active \"maybe\""), "{why}");
    }
}
