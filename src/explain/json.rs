//! A small JSON value for `postern explain --json`, written by hand (the
//! crate has no serde): strings escaped per RFC 8259 7, objects keep their
//! keys in the order they were built.

use std::fmt::Write;

#[derive(Clone, Debug, PartialEq)]
pub enum J {
    Null,
    Bool(bool),
    Num(u64),
    Str(String),
    List(Vec<J>),
    Obj(Vec<(&'static str, J)>),
}

impl J {
    pub fn s(v: impl Into<String>) -> J {
        J::Str(v.into())
    }

    pub fn strs<I: IntoIterator<Item = S>, S: Into<String>>(v: I) -> J {
        J::List(v.into_iter().map(|s| J::Str(s.into())).collect())
    }

    pub fn opt(v: Option<impl Into<String>>) -> J {
        v.map_or(J::Null, |s| J::Str(s.into()))
    }

    /// The JSON text, on one line.
    pub fn render(&self) -> String {
        let mut out = String::new();
        self.write(&mut out);
        out
    }

    fn write(&self, out: &mut String) {
        match self {
            J::Null => out.push_str("null"),
            J::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            J::Num(n) => {
                let _ = write!(out, "{n}");
            }
            J::Str(s) => quote(s, out),
            J::List(v) => {
                out.push('[');
                for (i, x) in v.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    x.write(out);
                }
                out.push(']');
            }
            J::Obj(v) => {
                out.push('{');
                for (i, (k, x)) in v.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    quote(k, out);
                    out.push_str(": ");
                    x.write(out);
                }
                out.push('}');
            }
        }
    }
}

/// A JSON string: `"`, `\` and control characters escaped.
fn quote(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_keeps_order() {
        let j = J::Obj(vec![
            ("b", J::s("a\"b\\c\nd\u{1}")),
            ("a", J::List(vec![J::Num(1), J::Bool(false), J::Null])),
        ]);
        assert_eq!(
            j.render(),
            r#"{"b": "a\"b\\c\nd\u0001", "a": [1, false, null]}"#
        );
    }
}
