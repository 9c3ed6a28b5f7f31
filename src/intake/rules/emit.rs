//! Writes a parsed POSIX regexp (translate.rs) in regex-lite's syntax.
//! Owns that spelling only: every byte outside ASCII letters, digits and
//! blanks is escaped, every bracket is an explicit byte set, and nested
//! repetitions get a group each so that none reads as lazy.

use std::fmt::Write as _;

use super::bracket::Bytes;

/// A parsed pattern.
pub enum Node {
    /// One byte, matched with the pattern's case folding.
    Lit(u8),
    /// Any of these bytes (case already folded in).
    Set(Box<Bytes>),
    /// `.`: any byte, or any but a newline under REG_NEWLINE (flag m),
    /// as the pattern's `(?s)`/`(?m)` prefix says.
    Any,
    /// A zero-width assertion, in regex-lite's spelling.
    Assert(&'static str),
    /// A capturing group.
    Group(Box<Node>),
    /// `{min,max}`, no max for unbounded.
    Repeat(Box<Node>, u32, Option<u32>),
    Concat(Vec<Node>),
    Alt(Vec<Node>),
}

/// Appends `node` to `out`; `icase` says the pattern folds case.
pub fn emit(node: &Node, icase: bool, out: &mut String) {
    match node {
        Node::Lit(c) => emit_byte(*c, out),
        Node::Set(set) => emit_set(set, icase, out),
        Node::Any => out.push('.'),
        Node::Assert(a) => out.push_str(a),
        Node::Group(inner) => {
            out.push('(');
            emit(inner, icase, out);
            out.push(')');
        }
        Node::Repeat(inner, min, max) => {
            // Nested repetitions get a group each: `a*?` in POSIX is
            // `(a*)?`, never the lazy `*?` of regex-lite.
            let wrap = matches!(**inner, Node::Repeat(..));
            out.push_str(if wrap { "(?:" } else { "" });
            emit(inner, icase, out);
            out.push_str(if wrap { ")" } else { "" });
            let _ = match (min, max) {
                (0, None) => write!(out, "*"),
                (1, None) => write!(out, "+"),
                (0, Some(1)) => write!(out, "?"),
                (m, None) => write!(out, "{{{m},}}"),
                (m, Some(n)) if m == n => write!(out, "{{{m}}}"),
                (m, Some(n)) => write!(out, "{{{m},{n}}}"),
            };
        }
        Node::Concat(items) => items.iter().for_each(|n| emit(n, icase, out)),
        Node::Alt(branches) => {
            for (i, b) in branches.iter().enumerate() {
                if i > 0 {
                    out.push('|');
                }
                emit(b, icase, out);
            }
        }
    }
}

fn emit_byte(c: u8, out: &mut String) {
    if c.is_ascii_alphanumeric() || c == b' ' {
        out.push(c as char);
    } else if c.is_ascii_graphic() {
        out.push_str(&regex_lite::escape(&(c as char).to_string()));
    } else {
        let _ = write!(out, "\\x{c:02X}");
    }
}

/// An explicit byte class; case folding was already applied.
fn emit_set(set: &Bytes, icase: bool, out: &mut String) {
    out.push_str(if icase { "(?-i:[" } else { "[" });
    let mut b = 0;
    while b < 256 {
        if !set[b] {
            b += 1;
            continue;
        }
        let lo = b;
        while b + 1 < 256 && set[b + 1] {
            b += 1;
        }
        let _ = write!(out, "\\x{lo:02X}");
        if b > lo {
            let _ = write!(out, "-\\x{b:02X}");
        }
        b += 1;
    }
    out.push_str(if icase { "])" } else { "]" });
}
