//! The right-hand side of a rule: `ACTION [text]`, with `$1` `${1}` `$(1)`
//! substitutions from the pattern's groups and `$$` for a dollar sign
//! (Postfix mac_parse(3) and dict_regexp.c). Owns the action words, their
//! checks and the REJECT reply; nothing here matches or reads files.
//!
//! Postfix checks most actions only when they fire, logs a warning and
//! carries on without them (cleanup_message.c). Postern checks them when
//! the table is loaded and refuses the table instead, so that a rule never
//! silently does nothing: FILTER needs `transport:destination`, REDIRECT
//! and BCC an `@`, REPLACE and PREPEND in header tables a `name: value`
//! header, and these must hold whatever `$n` brings in, so the `:` or `@`
//! (and for a header the name and its colon) must be written out.
//! `$name` must be a group number between 1 and the pattern's group count:
//! `$1abc` is the group "1abc" and refused, as in Postfix (`${1}abc`).

use std::borrow::Cow;

use crate::smtp::reply::{Esc, Reply};

/// What a REJECT without text answers (Postfix cleanup_strerror.c:
/// CLEANUP_STAT_CONT), at the end of DATA.
pub const CONTENT_REJECTED: Reply = Reply::fixed(550, Esc(5, 7, 1), "message content rejected");

/// What a matching rule asks for, its `$n` already substituted. Which
/// actions end the checking of a message is [`Action::ends_checks`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// IGNORE: delete this header (or body line).
    Ignore,
    /// STRIP: delete it and log the text (Postfix 3.2).
    Strip(String),
    /// WARN: log a warning with the text, keep going.
    Warn(String),
    /// INFO: log the text, keep going.
    Info(String),
    /// REJECT: refuse the message at the end of DATA. 550 with the text's
    /// enhanced status code (default 5.7.1), or 451 when that code is 4.x.x.
    Reject(Reply),
    /// DISCARD: accept the message and drop it (logged with the text).
    Discard(String),
    /// HOLD: put the message on hold (logged with the text).
    Hold(String),
    /// FILTER: send the message through this `transport:destination`.
    Filter(String),
    /// REPLACE: put this line in place of the matched one.
    Replace(String),
    /// PREPEND: insert this line before the matched one (not inspected).
    Prepend(String),
    /// REDIRECT: deliver to this address instead of the recipients.
    Redirect(String),
    /// BCC: also deliver to this address (Postfix 3.0).
    Bcc(String),
    /// PASS: stop all header and body checks, keep the message.
    Pass(String),
    /// DUNNO (and its old spelling OK): stop checking this line only.
    Dunno,
}

impl Action {
    /// True for the actions after which Postfix inspects no further header
    /// or body line of the message (REJECT, DISCARD, PASS, REDIRECT:
    /// cleanup_message.c clears CLEANUP_FLAG_FILTER_ALL).
    pub fn ends_checks(&self) -> bool {
        matches!(
            self,
            Action::Reject(_) | Action::Discard(_) | Action::Pass(_) | Action::Redirect(_)
        )
    }
}

/// The action words, for error messages.
const ACTIONS: &str =
    "IGNORE, STRIP, WARN, INFO, REJECT, DISCARD, HOLD, FILTER, REPLACE, PREPEND, REDIRECT, BCC, PASS, DUNNO, OK";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Word {
    Ignore,
    Strip,
    Warn,
    Info,
    Reject,
    Discard,
    Hold,
    Filter,
    Replace,
    Prepend,
    Redirect,
    Bcc,
    Pass,
    Dunno,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Seg {
    Text(String),
    Group(usize),
}

/// An action with its text still to be filled in from a match.
#[derive(Clone, Debug)]
pub struct Template {
    word: Word,
    text: Vec<Seg>,
    /// The largest `$n`, 0 if none.
    pub max_group: usize,
}

impl Template {
    /// Reads `ACTION [text]`. `header` says the table checks headers, where
    /// REPLACE and PREPEND must produce one.
    pub fn parse(value: &str, header: bool) -> Result<Template, String> {
        let (name, rest) = value.split_once([' ', '\t']).unwrap_or((value, ""));
        let text = parse_text(rest.trim_start_matches([' ', '\t']))?;
        let max_group = text
            .iter()
            .map(|s| if let Seg::Group(n) = s { *n } else { 0 })
            .max()
            .unwrap_or(0);
        let word = match name.to_ascii_uppercase().as_str() {
            "IGNORE" => Word::Ignore,
            "STRIP" => Word::Strip,
            "WARN" => Word::Warn,
            "INFO" => Word::Info,
            "REJECT" => Word::Reject,
            "DISCARD" => Word::Discard,
            "HOLD" => Word::Hold,
            "FILTER" => Word::Filter,
            "REPLACE" => Word::Replace,
            "PREPEND" => Word::Prepend,
            "REDIRECT" => Word::Redirect,
            "BCC" => Word::Bcc,
            "PASS" => Word::Pass,
            "DUNNO" | "OK" => Word::Dunno,
            _ if name.contains('$') => {
                return Err(format!(
                    "the action `{name}` must be written out, not substituted"
                ))
            }
            _ => return Err(format!("unknown action `{name}`; allowed: {ACTIONS}")),
        };
        let t = Template {
            word,
            text,
            max_group,
        };
        t.check(name, header)?;
        Ok(t)
    }

    /// The load-time checks described at the top of this file.
    fn check(&self, name: &str, header: bool) -> Result<(), String> {
        let literal: String = self
            .text
            .iter()
            .map(|s| if let Seg::Text(t) = s { t.as_str() } else { "" })
            .collect();
        let prefix = match self.text.first() {
            Some(Seg::Text(t)) => t.as_str(),
            _ => "",
        };
        let needs = |what: &str| Err(format!("{name} needs {what}"));
        match self.word {
            Word::Filter if !literal.contains(':') => {
                needs("a content filter `transport:destination`, the `:` written out")
            }
            Word::Redirect | Word::Bcc if !literal.contains('@') => {
                needs("an address `user@domain`, the `@` written out")
            }
            Word::Replace | Word::Prepend if self.text.is_empty() => needs("the text of a line"),
            Word::Replace | Word::Prepend if header && header_name_len(prefix).is_none() => {
                needs("a header `name: value`, its name and colon written out (not from $n)")
            }
            Word::Reject => match split_dsn(prefix) {
                Some((Esc(class, ..), _)) if class != 4 && class != 5 => Err(format!(
                    "REJECT with status {class}.x.x: the code must start with 4 (try \
                     later) or 5 (refused)"
                )),
                _ => Ok(()),
            },
            _ => Ok(()),
        }
    }

    /// The action for a match; `group(n)` gives the text of `$n` (empty
    /// when the group did not take part).
    pub fn expand<'a>(&self, group: impl Fn(usize) -> Cow<'a, str>) -> Action {
        let mut text = String::new();
        for seg in &self.text {
            match seg {
                Seg::Text(t) => text.push_str(t),
                Seg::Group(n) => text.push_str(&group(*n)),
            }
        }
        match self.word {
            Word::Ignore => Action::Ignore,
            Word::Strip => Action::Strip(text),
            Word::Warn => Action::Warn(text),
            Word::Info => Action::Info(text),
            Word::Reject => Action::Reject(reject_reply(&text)),
            Word::Discard => Action::Discard(text),
            Word::Hold => Action::Hold(text),
            Word::Filter => Action::Filter(text),
            Word::Replace => Action::Replace(text),
            Word::Prepend => Action::Prepend(text),
            Word::Redirect => Action::Redirect(text),
            Word::Bcc => Action::Bcc(text),
            Word::Pass => Action::Pass(text),
            Word::Dunno => Action::Dunno,
        }
    }
}

/// REJECT's reply (Postfix dsn_prepend("5.7.1", text), then smtpd): the
/// text may start with an enhanced status code; 4.x.x answers 451 (try
/// later), anything else 550. A code from `$n` that is neither 4 nor 5 is
/// turned into 4, as Postfix does.
fn reject_reply(text: &str) -> Reply {
    if text.is_empty() {
        return CONTENT_REJECTED;
    }
    let (esc, rest) = split_dsn(text).unwrap_or((Esc(5, 7, 1), text));
    let esc = if esc.0 == 5 {
        esc
    } else {
        Esc(4, esc.1, esc.2)
    };
    let rest = if rest.is_empty() {
        &*CONTENT_REJECTED.text
    } else {
        rest
    };
    let code = if esc.0 == 4 { 451 } else { 550 };
    Reply::new(code, esc, rest.to_string())
}

/// A leading RFC 3463 code `c.sss.ddd` (Postfix dsn_valid: class 2, 4 or
/// 5, one to three digits each, then white space or the end) and the text
/// after it and its white space.
fn split_dsn(text: &str) -> Option<(Esc, &str)> {
    let t = text.trim_start();
    let end = t.find(|c: char| c.is_ascii_whitespace()).unwrap_or(t.len());
    let mut parts = t[..end].split('.');
    let class = match parts.next()? {
        "2" => 2,
        "4" => 4,
        "5" => 5,
        _ => return None,
    };
    let mut num = || -> Option<u16> {
        let p = parts.next()?;
        if p.is_empty() || p.len() > 3 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        p.parse().ok()
    };
    let (subject, detail) = (num()?, num()?);
    if parts.next().is_some() {
        return None;
    }
    Some((Esc(class, subject, detail), t[end..].trim_start()))
}

/// Postfix is_header(): a name of printable ASCII other than `:`, then
/// optional blanks, then `:`. Returns the name's length.
pub fn header_name_len(s: &str) -> Option<usize> {
    let name = s
        .find(|c: char| !c.is_ascii_graphic() || c == ':')
        .unwrap_or(s.len());
    let rest = s[name..].trim_start_matches([' ', '\t']);
    (name > 0 && rest.starts_with(':')).then_some(name)
}

/// Splits the text into literal runs and `$n` references (mac_parse).
fn parse_text(s: &str) -> Result<Vec<Seg>, String> {
    let mut segs = Vec::new();
    let mut lit = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        lit.push_str(&rest[..i]);
        rest = &rest[i + 1..];
        if let Some(r) = rest.strip_prefix('$') {
            lit.push('$');
            rest = r;
            continue;
        }
        let name = match rest.chars().next() {
            Some(open @ ('{' | '(')) => {
                let close = if open == '{' { '}' } else { ')' };
                let mut level = 1;
                let end = rest[1..]
                    .char_indices()
                    .find(|&(_, c)| {
                        level += (c == open) as i32 - (c == close) as i32;
                        level == 0
                    })
                    .map(|(j, _)| j + 1)
                    .ok_or_else(|| format!("`${open}` without its `{close}`"))?;
                let name = &rest[1..end];
                rest = &rest[end + 1..];
                name
            }
            _ => {
                let end = rest
                    .find(|c: char| !c.is_ascii_alphanumeric() && c != '_')
                    .unwrap_or(rest.len());
                let name = &rest[..end];
                rest = &rest[end..];
                name
            }
        };
        if name.is_empty() {
            return Err("`$` without a group number (write `$$` for a dollar sign)".into());
        }
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!(
                "`${name}`: only group numbers can be substituted; to follow a \
                 number with letters write `${{1}}abc`, and `$$` for a dollar sign"
            ));
        }
        let n: usize = name.parse().unwrap_or(usize::MAX);
        if n == 0 {
            return Err("`$0`: groups are numbered from 1".into());
        }
        if !lit.is_empty() {
            segs.push(Seg::Text(std::mem::take(&mut lit)));
        }
        segs.push(Seg::Group(n));
    }
    lit.push_str(rest);
    if !lit.is_empty() {
        segs.push(Seg::Text(lit));
    }
    Ok(segs)
}
