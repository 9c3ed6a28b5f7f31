//! The text of a `regexp:` table, cut into rules: logical lines as
//! Postfix readllines(3) makes them, then each line as dict_regexp.c reads
//! it. Owns the table's line syntax; the patterns go to translate.rs, the
//! right-hand sides to action.rs.
//!
//! Lines: empty and white-space-only lines and lines whose first non-blank
//! character is `#` are dropped, even in the middle of a rule; a line that
//! starts with white space continues the rule above it, joined without the
//! line break (its leading blanks are kept); trailing blanks are trimmed.
//! A CR before the line feed is dropped (a CRLF file reads as LF).
//!
//! Rules: `[!]/pattern/flags[!/pattern2/flags] ACTION [text]` with any
//! delimiter other than a backslash or blank (`\` escapes it inside; the
//! backslash stays in the pattern, as in Postfix), each `!` toggling
//! negation; `if [!]/pattern/flags` and `endif` (any case), whose inner
//! lines are not indented. Flags toggle: `i` (on by default: ignore case),
//! `m` (off: multi-line, REG_NEWLINE), `x` (on: extended syntax; `x` turns
//! it off, giving a POSIX basic regexp).
//!
//! Where Postfix logs a warning and skips a line, postern refuses the
//! table: an unknown flag, a missing delimiter or action, text after `if`
//! or `endif`, `endif` without `if`, a continuation line with nothing to
//! continue.

use super::translate::Flags;

/// One logical line: the number of its first physical line and its text.
#[derive(Debug)]
pub struct Logical {
    pub line: usize,
    pub text: String,
}

/// Joins continuation lines. `first_line` numbers the first line of
/// `text`; a continuation with nothing before it is an error at its line.
pub fn logical_lines(text: &str, first_line: usize) -> (Vec<Logical>, Vec<(usize, String)>) {
    let mut out: Vec<Logical> = Vec::new();
    let mut errors = Vec::new();
    for (i, raw) in text.split('\n').enumerate() {
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        let content = line.trim_start_matches(is_blank);
        if content.is_empty() || content.starts_with('#') {
            continue;
        }
        let number = first_line + i;
        if !line.starts_with(is_blank) {
            out.push(Logical {
                line: number,
                text: line.to_string(),
            });
        } else if let Some(last) = out.last_mut() {
            last.text.push_str(line);
        } else if errors.is_empty() {
            errors.push((
                number,
                "line starts with white space but there is no rule above it to \
                 continue (lines inside if ... endif are not indented)"
                    .to_string(),
            ));
        }
    }
    for l in &mut out {
        let end = l.text.trim_end_matches(is_blank).len();
        l.text.truncate(end);
    }
    (out, errors)
}

/// isspace() in the C locale.
fn is_blank(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\x0b' | '\x0c' | '\r')
}

/// A pattern as written: its source bytes (between the delimiters),
/// whether it is negated, and its flags.
#[derive(Debug)]
pub struct Source {
    pub text: Vec<u8>,
    pub negated: bool,
    pub flags: Flags,
}

/// One logical line, read.
#[derive(Debug)]
pub enum Line {
    Match {
        first: Source,
        second: Option<Source>,
        /// `ACTION [text]`, not yet read.
        value: String,
    },
    If(Source),
    Endif,
}

/// Reads one logical line (which starts with a non-blank).
pub fn line(text: &str) -> Result<Line, String> {
    let b = text.as_bytes();
    let keyword = |word: &str| {
        b.len() >= word.len()
            && b[..word.len()].eq_ignore_ascii_case(word.as_bytes())
            && !b.get(word.len()).is_some_and(|c| c.is_ascii_alphanumeric())
    };
    if !b[0].is_ascii_alphanumeric() {
        let mut pos = 0;
        let first = pattern(b, &mut pos)?;
        let second = if b.get(pos) == Some(&b'!') {
            Some(pattern(b, &mut pos)?)
        } else {
            None
        };
        let value = text[pos..].trim_start_matches(is_blank);
        if value.is_empty() {
            return Err("no action after the pattern".into());
        }
        return Ok(Line::Match {
            first,
            second,
            value: value.to_string(),
        });
    }
    if keyword("if") {
        let mut pos = 2;
        let src = pattern(b, &mut pos)?;
        let rest = text[pos..].trim_start_matches(is_blank);
        if !rest.is_empty() {
            return Err(format!(
                "text after `if /pattern/`: `{rest}` (the rules of the block go on \
                 the next lines, not indented, and the block ends with `endif`)"
            ));
        }
        return Ok(Line::If(src));
    }
    if keyword("endif") {
        let rest = text[5..].trim_start_matches(is_blank);
        if !rest.is_empty() {
            return Err(format!("text after `endif`: `{rest}`"));
        }
        return Ok(Line::Endif);
    }
    Err(format!(
        "not a rule: `{}`; a rule is `/pattern/ ACTION text`, or `if /pattern/` \
         or `endif`",
        shorten(text)
    ))
}

/// Reads `[!...]<delim>pattern<delim>[flags]` from `b[*pos..]`.
fn pattern(b: &[u8], pos: &mut usize) -> Result<Source, String> {
    let mut p = *pos;
    let mut negated = false;
    while let Some(&c) = b.get(p) {
        match c {
            b'!' => negated = !negated,
            c if is_blank(c as char) => {}
            _ => break,
        }
        p += 1;
    }
    let Some(&delim) = b.get(p) else {
        return Err("a pattern is missing".into());
    };
    if delim == b'\\' || !delim.is_ascii() {
        return Err(format!(
            "`{}` cannot delimit a pattern; use `/` or another ASCII punctuation mark",
            char_at(b, p)
        ));
    }
    p += 1;
    let start = p;
    while p < b.len() && b[p] != delim {
        // A backslash escapes the next byte (the delimiter among others).
        p += if b[p] == b'\\' && p + 1 < b.len() {
            2
        } else {
            1
        };
    }
    if p >= b.len() {
        return Err(format!("no closing `{}` after the pattern", delim as char));
    }
    let text = b[start..p].to_vec();
    p += 1;
    let mut flags = Flags {
        extended: true,
        icase: true,
        newline: false,
    };
    while let Some(&c) = b.get(p) {
        match c {
            b'i' => flags.icase = !flags.icase,
            b'm' => flags.newline = !flags.newline,
            b'x' => flags.extended = !flags.extended,
            b'!' => break,
            c if is_blank(c as char) => break,
            _ => {
                return Err(format!(
                    "unknown flag `{}` after the pattern; allowed: i (case), m \
                     (multi-line), x (basic regexp)",
                    char_at(b, p)
                ))
            }
        }
        p += 1;
    }
    *pos = p;
    Ok(Source {
        text,
        negated,
        flags,
    })
}

/// The character starting at byte `i` (which may be inside a UTF-8 one).
fn char_at(b: &[u8], i: usize) -> char {
    String::from_utf8_lossy(&b[i..(i + 4).min(b.len())])
        .chars()
        .next()
        .unwrap_or('?')
}

fn shorten(s: &str) -> String {
    match s.char_indices().nth(40) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}
