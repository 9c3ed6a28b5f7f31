//! Header and body rules: Postfix `regexp:` tables, as `header_checks`,
//! `mime_header_checks`, `nested_header_checks` and `body_checks` use
//! them, parsed and evaluated. Pure: the caller hands in the table's text
//! and one header or body line at a time, and acts on the answer. Nothing
//! here reads files, logs, or changes a message.
//!
//! ```text
//! let table = Table::parse("/etc/postern/header_checks", &text, Kind::Header)?;
//! match table.first_match(b"Received: from x\n\tby y") {
//!     Some(Hit { line, action: Action::Ignore }) => { /* drop the header */ }
//!     ...
//! }
//! ```
//!
//! - [`Table::parse`] reads the whole text and reports every problem at
//!   once as [`RuleError`]s (`file:line: problem`); [`Table::parse_at`]
//!   does the same for rules that start at some line of a bigger file
//!   (inline in the TOML config).
//! - [`Table::first_match`] takes one logical header (its folded lines
//!   joined by `\n`, without CR, at most [`HEADER_SIZE_LIMIT`] bytes) or
//!   one body line (within the first [`BODY_CHECKS_SIZE_LIMIT`] bytes of
//!   its part) and returns the first rule that matches, in file order
//!   through `if`/`endif` blocks, as a [`Hit`]: its line and its
//!   [`Action`], `$n` filled in. The input is cut at its first NUL byte,
//!   as the C string Postfix hands to regexec() is. What to do next (stop
//!   checking this message or go on) is [`Action::ends_checks`].
//!
//! File format (regexp_table(5), parse.rs): `/pattern/flags ACTION text`,
//! `!/pattern/` for "does not match", `if /pattern/` ... `endif` blocks,
//! `#` comments, lines starting with white space continue a rule. Actions
//! (header_checks(5), action.rs): IGNORE STRIP WARN INFO REJECT DISCARD
//! HOLD FILTER REPLACE PREPEND REDIRECT BCC PASS DUNNO OK.
//!
//! Patterns are POSIX regexps as glibc reads them in the C locale
//! (extended by default, basic with the `x` flag), translated for the
//! `regex-lite` crate (translate.rs, bracket.rs). Matching is on bytes:
//! each input byte is handed to regex-lite as the char of the same value,
//! so `.` takes one byte and case folds for ASCII letters only, as in
//! glibc. Anything that cannot be translated exactly is refused with its
//! file and line: back-references, Perl's `(?...)` and `\d`-style
//! escapes, collating elements, and `$`/`^` with more pattern after/before
//! them in the same sequence without `m` (where glibc is inconsistent).
//! Two differences are left, both only about *which* text `$n` gets,
//! never about whether a rule matches:
//! - POSIX picks the longest match and then the longest first group,
//!   regex-lite the first alternative that matches (`(a|ab)(c|bcd)(d*)`
//!   on "abcd" gives `$1` = "ab" in Postfix, "a" here). A rule using `$n`
//!   whose pattern has `|` or repeats a group, where this can happen, is
//!   refused; without those the two agree (checked on some 60,000 random
//!   cases against glibc while writing this).
//! - Postfix copies the captured bytes; here `$n` text is made valid
//!   UTF-8, a `�` standing for each byte that is not.
//!
//! regex-lite runs in time linear in the input (O(pattern × input)): no
//! pattern can backtrack for ever, `(a+)+$` included. What a pattern may
//! cost is its compiled size, capped by [`MAX_COMPILED_SIZE`].

mod action;
mod bracket;
mod emit;
mod parse;
mod translate;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_glibc;

use std::borrow::Cow;
use std::fmt;

use regex_lite::{Regex, RegexBuilder};

use action::Template;
pub use action::{Action, CONTENT_REJECTED};
use parse::{Line, Source};

/// Largest compiled form of one pattern, in bytes (regex-lite's
/// `size_limit`; its default is 10 MiB). `(a{1,1000}){1,1000}` needs more.
pub const MAX_COMPILED_SIZE: usize = 1 << 20;

/// Postfix's default `header_size_limit`: a logical header is cut to this
/// many bytes before the checks see it. The caller cuts.
pub const HEADER_SIZE_LIMIT: usize = 102_400;

/// Postfix's default `body_checks_size_limit`: body_checks see only this
/// many bytes of each body part. The caller stops there; it keeps the cost
/// of a long body bounded (regex-lite is linear but not fast: about 2 MB/s
/// for twenty rules).
pub const BODY_CHECKS_SIZE_LIMIT: usize = 51_200;

/// Which lines a table checks: headers need REPLACE and PREPEND to write
/// a header (`name: value`), body lines take any text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// header_checks, mime_header_checks, nested_header_checks.
    Header,
    /// body_checks.
    Body,
}

/// One problem in a table, shown as `file:line: problem`; where a list of
/// choices helps, the problem ends with `; allowed: ...`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleError {
    pub file: String,
    pub line: usize,
    pub problem: String,
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.problem)
    }
}

/// The rule that matched: its (first) line in the file and its action.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hit {
    pub line: usize,
    pub action: Action,
}

struct Pattern {
    re: Regex,
    negated: bool,
}

impl Pattern {
    fn matches(&self, input: &str) -> bool {
        self.re.is_match(input) != self.negated
    }
}

/// The input as regex-lite sees it: each byte becomes the char of the
/// same value (U+0000..U+00FF), so that `.` takes one byte and `\xE9` is
/// the byte E9, as in glibc's C locale. ASCII needs no copy.
fn as_chars(input: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(input) {
        Ok(s) if s.is_ascii() => Cow::Borrowed(s),
        _ => Cow::Owned(input.iter().map(|&b| char::from(b)).collect()),
    }
}

/// The bytes `as_chars` made a text of, as UTF-8 (lossily, for a group
/// that ends inside a character or input that was not UTF-8).
fn as_text(chars: &str) -> Cow<'_, str> {
    if chars.is_ascii() {
        return Cow::Borrowed(chars);
    }
    let bytes: Vec<u8> = chars.chars().map(|c| c as u32 as u8).collect();
    Cow::Owned(String::from_utf8_lossy(&bytes).into_owned())
}

enum Op {
    Match {
        first: Pattern,
        second: Option<Pattern>,
        action: Template,
    },
    /// When the pattern does not match, go on after the rule at `endif`.
    If {
        pattern: Pattern,
        endif: usize,
    },
    Endif,
}

struct Rule {
    line: usize,
    op: Op,
}

/// A parsed table: its rules in file order.
pub struct Table {
    file: String,
    rules: Vec<Rule>,
}

impl Table {
    /// Parses a whole file.
    pub fn parse(file: &str, text: &str, kind: Kind) -> Result<Table, Vec<RuleError>> {
        Table::parse_at(file, 1, text, kind)
    }

    /// Parses rules whose first line is line `first_line` of `file`.
    pub fn parse_at(
        file: &str,
        first_line: usize,
        text: &str,
        kind: Kind,
    ) -> Result<Table, Vec<RuleError>> {
        let error = |line: usize, problem: String| RuleError {
            file: file.to_string(),
            line,
            problem,
        };
        let (lines, errs) = parse::logical_lines(text, first_line);
        let mut errors: Vec<RuleError> = errs.into_iter().map(|(l, p)| error(l, p)).collect();
        let mut rules: Vec<Rule> = Vec::new();
        // Indexes (in `rules`) of the open `if`s.
        let mut open: Vec<usize> = Vec::new();
        for l in &lines {
            let op = match parse::line(&l.text).and_then(|line| build(line, kind)) {
                Ok(op) => op,
                Err(e) => {
                    errors.push(error(l.line, e));
                    // Keep the nesting right so one bad `if` is one error.
                    if starts_with_keyword(&l.text, "if") {
                        open.push(usize::MAX);
                    } else if starts_with_keyword(&l.text, "endif") {
                        open.pop();
                    }
                    continue;
                }
            };
            match op {
                Op::If { .. } => open.push(rules.len()),
                Op::Endif => match open.pop() {
                    Some(usize::MAX) => {}
                    Some(i) => {
                        let here = rules.len();
                        if let Op::If { endif, .. } = &mut rules[i].op {
                            *endif = here;
                        }
                    }
                    None => {
                        errors.push(error(l.line, "`endif` without an `if` before it".into()));
                        continue;
                    }
                },
                Op::Match { .. } => {}
            }
            rules.push(Rule { line: l.line, op });
        }
        for i in open.into_iter().filter(|&i| i != usize::MAX) {
            let line = rules[i].line;
            errors.push(error(line, "this `if` has no `endif`".into()));
        }
        if errors.is_empty() {
            Ok(Table {
                file: file.to_string(),
                rules,
            })
        } else {
            errors.sort_by_key(|e| e.line);
            Err(errors)
        }
    }

    /// The file the rules came from.
    pub fn file(&self) -> &str {
        &self.file
    }

    /// The (first) line of each rule and `if`, in file order.
    pub fn rule_lines(&self) -> Vec<usize> {
        self.rules
            .iter()
            .filter(|r| !matches!(r.op, Op::Endif))
            .map(|r| r.line)
            .collect()
    }

    /// The first rule matching `input` (see the top of this file).
    pub fn first_match(&self, input: impl AsRef<[u8]>) -> Option<Hit> {
        let input = input.as_ref();
        let input = input
            .iter()
            .position(|&b| b == 0)
            .map_or(input, |n| &input[..n]);
        let chars = as_chars(input);
        let input: &str = &chars;
        let mut i = 0;
        while let Some(rule) = self.rules.get(i) {
            i += 1;
            let (first, second, action) = match &rule.op {
                Op::Match {
                    first,
                    second,
                    action,
                } => (first, second, action),
                Op::If { pattern, endif } => {
                    if !pattern.matches(input) {
                        i = endif + 1;
                    }
                    continue;
                }
                Op::Endif => continue,
            };
            let caps = if action.max_group > 0 {
                // Never negated: `$n` with `!` is refused at parse time.
                match first.re.captures(input) {
                    Some(c) => Some(c),
                    None => continue,
                }
            } else if first.matches(input) {
                None
            } else {
                continue;
            };
            if second.as_ref().is_some_and(|p| !p.matches(input)) {
                continue;
            }
            let group = |n: usize| -> Cow<'_, str> {
                match caps.as_ref().and_then(|c| c.get(n)) {
                    Some(m) => as_text(m.as_str()),
                    None => Cow::Borrowed(""),
                }
            };
            return Some(Hit {
                line: rule.line,
                action: action.expand(group),
            });
        }
        None
    }
}

fn starts_with_keyword(text: &str, word: &str) -> bool {
    let b = text.as_bytes();
    b.len() >= word.len()
        && b[..word.len()].eq_ignore_ascii_case(word.as_bytes())
        && !b.get(word.len()).is_some_and(|c| c.is_ascii_alphanumeric())
}

/// Turns a read line into a rule: patterns compiled, action checked.
fn build(line: Line, kind: Kind) -> Result<Op, String> {
    match line {
        Line::Endif => Ok(Op::Endif),
        Line::If(src) => Ok(Op::If {
            pattern: compile(&src, false)?.0,
            endif: usize::MAX,
        }),
        Line::Match {
            first,
            second,
            value,
        } => {
            let action = Template::parse(&value, kind == Kind::Header)?;
            let (first_pat, groups) = compile(&first, action.max_group > 0)?;
            if action.max_group > 0 && first.negated {
                return Err("`$n` in the action of a negated pattern (`!/…/`), \
                            which captures nothing"
                    .into());
            }
            if action.max_group > groups {
                return Err(format!(
                    "`${}` but the pattern has {groups} group{}",
                    action.max_group,
                    if groups == 1 { "" } else { "s" }
                ));
            }
            let second = match &second {
                Some(s) => Some(compile(s, false)?.0),
                None => None,
            };
            Ok(Op::Match {
                first: first_pat,
                second,
                action,
            })
        }
    }
}

/// Translates and compiles one pattern; with `captures` (the action uses
/// `$n`) refuses a pattern whose groups could capture other text than in
/// Postfix. Returns the pattern and its group count.
fn compile(src: &Source, captures: bool) -> Result<(Pattern, usize), String> {
    let t = translate::translate(&src.text, src.flags)?;
    if let (true, Some(why)) = (captures, t.capture_hazard) {
        return Err(format!(
            "the action uses `$n` but the pattern's groups may capture other \
             text than in Postfix because {why} (POSIX takes the longest match, \
             postern's engine the first alternative); drop the `$n` or rewrite \
             the pattern"
        ));
    }
    // The translation is valid syntax: what can fail here are the limits.
    let re = RegexBuilder::new(&t.rust)
        .size_limit(MAX_COMPILED_SIZE)
        .build()
        .map_err(|e| {
            format!(
                "the pattern is too big or too deeply nested once compiled ({e}; \
                 the limit is {MAX_COMPILED_SIZE} bytes); split it or lower its \
                 repetition counts"
            )
        })?;
    Ok((
        Pattern {
            re,
            negated: src.negated,
        },
        t.groups,
    ))
}
