//! POSIX regular expressions, as Postfix's `regexp:` tables hand them to
//! glibc's `regcomp()`, rewritten into the syntax of the `regex-lite`
//! crate so that both match exactly the same inputs (bytes, each given to
//! regex-lite as the char U+0000..U+00FF of the same value; see mod.rs).
//! It owns nothing but that rewrite: no I/O, no compiling.
//!
//! The reference is glibc in the C locale, the one a program runs in
//! until it calls `setlocale()`, which Postfix's daemons are taken not to
//! do (not checked on a live Postfix): patterns and input are bytes, `i`
//! folds ASCII letters only, the character classes are the ASCII ones.
//! Each construct below was checked against glibc 2.36's `regcomp()` and
//! `regexec()`:
//!
//! - ERE (the default) and BRE (flag `x`): `( ) | + ? { }` are operators
//!   in ERE and need a backslash in BRE (`\+ \? \|` are GNU additions
//!   glibc accepts). In BRE, `^` anchors only at the start, after `\(` and
//!   after `\|`, `$` only at the end, before `\)` and before `\|`; a
//!   repetition at the start of an expression (or after an anchor) is a
//!   literal `*`, `+` or `?`, and `*` or `\{` right after a repetition is
//!   an error. In ERE a repetition there is an error, stacked ones (`a**`,
//!   `a+?`) nest, `?` after a repetition is *not* lazy, and an unmatched
//!   `)` is a literal.
//! - Bracket expressions (bracket.rs): a backslash inside is literal
//!   (`[\/]` is `\` or `/`), and with `i` the range ends are upper-cased
//!   (`[@-a]` is `@`, `A`, `a`); each is computed as a set of bytes.
//! - Escapes: `\w \W \s \S` (ASCII sets), `\b \B`, `\<` `\>` (start/end of
//!   word: `\b{start}` `\b{end}`), `` \` `` `\'` (`\A` `\z`); a backslash
//!   before punctuation is that character.
//! - Without `m`, glibc lets `$.` and `.^` match across a newline but not
//!   `$(.)`; POSIX says they never match there. Refused (check_anchors).
//!
//! Refused, with the reason, so that no rule silently means something
//! else: back-references `\1`-`\9` (not expressible in regex-lite);
//! `(?` (PCRE look-around and inline flags: glibc refuses them too);
//! a backslash before any other letter or digit (`\d` is the letter `d`
//! in glibc, `\n` the letter `n`: almost always written meaning Perl's);
//! collating symbols `[.x.]` and equivalence classes `[=x=]`.

/// glibc's RE_DUP_MAX: the largest count `{n}` accepts.
pub const RE_DUP_MAX: u32 = 0x7fff;
/// Deepest nesting of groups accepted (regex-lite's own limit is 250
/// nested groups and repetitions; this parser recurses once per group).
pub const MAX_NESTING: usize = 100;
/// Most repetitions accepted in a row (`a**` is two). glibc has no limit;
/// each one nests, and more than a few is surely a slip of the finger.
pub const MAX_STACKED: usize = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flags {
    /// ERE (on by default; the `x` flag turns it off: BRE).
    pub extended: bool,
    /// REG_ICASE (on by default; the `i` flag turns it off).
    pub icase: bool,
    /// REG_NEWLINE (off by default; the `m` flag turns it on).
    pub newline: bool,
}

/// A pattern rewritten for regex-lite.
#[derive(Debug)]
pub struct Translated {
    pub rust: String,
    /// Number of capturing groups, `$1`..`$groups`.
    pub groups: usize,
    /// Why `$n` could capture other text than Postfix would, if it could.
    pub capture_hazard: Option<&'static str>,
}

use super::bracket;
use super::emit::{emit, Node};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Tok {
    Char(u8),
    Any,
    Bracket,
    Star,
    Plus,
    Quest,
    OpenBrace,
    CloseBrace,
    Open,
    Close,
    Alt,
    Anchor(&'static str),
    Class(u8),
    End,
}

/// Rewrites one pattern, or says why it cannot be rewritten exactly.
pub fn translate(re: &[u8], flags: Flags) -> Result<Translated, String> {
    let mut p = Parser {
        re,
        pos: 0,
        f: flags,
        groups: 0,
        caret_here: true,
        alternation: false,
        repeated_group: false,
    };
    let node = p.parse_alt(0)?;
    if p.peek()?.0 != Tok::End {
        // Only a `)` at the top can stop the parse early.
        return Err("unmatched `)`".into());
    }
    let mut rust = String::from(match (flags.icase, flags.newline) {
        (true, true) => "(?im)",
        (true, false) => "(?is)",
        (false, true) => "(?m)",
        (false, false) => "(?s)",
    });
    emit(&node, flags.icase, &mut rust);
    let capture_hazard = if p.alternation {
        Some("it has an alternation `|`")
    } else if p.repeated_group {
        Some("it repeats a group")
    } else {
        None
    };
    Ok(Translated {
        rust,
        groups: p.groups,
        capture_hazard,
    })
}

struct Parser<'a> {
    re: &'a [u8],
    pos: usize,
    f: Flags,
    groups: usize,
    /// BRE: the next `^` is an anchor (start, after `\(` or `\|`).
    caret_here: bool,
    alternation: bool,
    repeated_group: bool,
}

impl Parser<'_> {
    fn at(&self, i: usize) -> Option<u8> {
        self.re.get(i).copied()
    }

    /// The next token and its length in bytes.
    fn peek(&self) -> Result<(Tok, usize), String> {
        let ere = self.f.extended;
        let Some(c) = self.at(self.pos) else {
            return Ok((Tok::End, 0));
        };
        let tok = match c {
            b'\\' => return self.peek_escape(),
            b'[' => Tok::Bracket,
            b'.' => Tok::Any,
            b'*' => Tok::Star,
            b'^' if ere || self.caret_here => Tok::Anchor("^"),
            b'$' if ere || self.bre_dollar_anchors() => Tok::Anchor("$"),
            b'+' if ere => Tok::Plus,
            b'?' if ere => Tok::Quest,
            b'{' if ere => Tok::OpenBrace,
            b'}' if ere => Tok::CloseBrace,
            b'|' if ere => Tok::Alt,
            b'(' if ere && self.at(self.pos + 1) == Some(b'?') => {
                return Err("`(?` is Perl syntax (look-around, inline flags, \
                            non-capturing groups); POSIX regexps have none of it, \
                            glibc refuses it too. To say \"does not match\", \
                            use `!/pattern/` or `if !/pattern/` ... `endif`"
                    .into())
            }
            b'(' if ere => Tok::Open,
            b')' if ere => Tok::Close,
            _ => Tok::Char(c),
        };
        Ok((tok, 1))
    }

    /// BRE: `$` anchors at the end, before `\)` and before `\|`.
    fn bre_dollar_anchors(&self) -> bool {
        let rest = &self.re[self.pos + 1..];
        rest.is_empty() || rest.starts_with(b"\\)") || rest.starts_with(b"\\|")
    }

    fn peek_escape(&self) -> Result<(Tok, usize), String> {
        let ere = self.f.extended;
        let Some(c) = self.at(self.pos + 1) else {
            return Err("trailing backslash".into());
        };
        let tok = match c {
            b'1'..=b'9' => {
                return Err(format!(
                    "`\\{}` is a back-reference, which the regex engine postern \
                     uses cannot express; rewrite the rule without it",
                    c as char
                ))
            }
            b'w' | b'W' | b's' | b'S' => Tok::Class(c),
            b'b' => Tok::Anchor(r"\b"),
            b'B' => Tok::Anchor(r"\B"),
            b'<' => Tok::Anchor(r"\b{start}"),
            b'>' => Tok::Anchor(r"\b{end}"),
            b'`' => Tok::Anchor(r"\A"),
            b'\'' => Tok::Anchor(r"\z"),
            b'(' if !ere => Tok::Open,
            b')' if !ere => Tok::Close,
            b'{' if !ere => Tok::OpenBrace,
            b'}' if !ere => Tok::CloseBrace,
            b'|' if !ere => Tok::Alt,
            b'+' if !ere => Tok::Plus,
            b'?' if !ere => Tok::Quest,
            c if c.is_ascii_alphanumeric() => {
                return Err(format!(
                    "`\\{0}` means the plain character `{0}` in a POSIX regexp, \
                     not what it means in Perl; write a class such as [0-9], \
                     [[:space:]] or [[:alpha:]], or the character itself",
                    c as char
                ))
            }
            _ => Tok::Char(c),
        };
        Ok((tok, 2))
    }

    fn next(&mut self) -> Result<Tok, String> {
        let (tok, len) = self.peek()?;
        self.pos += len;
        self.caret_here = matches!(tok, Tok::Open | Tok::Alt);
        Ok(tok)
    }

    fn parse_alt(&mut self, nest: usize) -> Result<Node, String> {
        let mut branches = vec![self.parse_branch(nest)?];
        while self.peek()?.0 == Tok::Alt {
            self.next()?;
            branches.push(self.parse_branch(nest)?);
        }
        if branches.len() == 1 {
            return Ok(branches.pop().expect("one branch"));
        }
        self.alternation = true;
        Ok(Node::Alt(branches))
    }

    fn parse_branch(&mut self, nest: usize) -> Result<Node, String> {
        let mut items = Vec::new();
        loop {
            match self.peek()?.0 {
                Tok::Alt | Tok::End => break,
                Tok::Close if nest > 0 => break,
                _ => items.push(self.parse_expr(nest)?),
            }
        }
        if !self.f.newline {
            check_anchors(&items)?;
        }
        Ok(Node::Concat(items))
    }

    /// One atom and the repetitions that follow it.
    fn parse_expr(&mut self, nest: usize) -> Result<Node, String> {
        let ere = self.f.extended;
        let mut atom = match self.next()? {
            Tok::Char(c) => Node::Lit(c),
            Tok::Any => Node::Any,
            Tok::Bracket => Node::Set(Box::new(bracket::parse(self.re, &mut self.pos, self.f)?)),
            Tok::Class(c) => Node::Set(Box::new(bracket::class_escape(c))),
            Tok::Open => {
                if nest >= MAX_NESTING {
                    return Err(format!("groups nested deeper than {MAX_NESTING}"));
                }
                self.groups += 1;
                let inner = self.parse_alt(nest + 1)?;
                if self.next()? != Tok::Close {
                    return Err("unmatched `(`".into());
                }
                Node::Group(Box::new(inner))
            }
            // Only at the top: inside a group the branch stops before it.
            Tok::Close if ere => Node::Lit(b')'),
            Tok::Close => return Err("unmatched `\\)`".into()),
            // An anchor is never repeated: what follows starts anew.
            Tok::Anchor(a) => return Ok(Node::Assert(a)),
            Tok::Star | Tok::Plus | Tok::Quest if ere => {
                return Err("a repetition (`*`, `+`, `?`) with nothing before it to repeat".into())
            }
            Tok::Star => Node::Lit(b'*'),
            Tok::Plus => Node::Lit(b'+'),
            Tok::Quest => Node::Lit(b'?'),
            Tok::OpenBrace => {
                return Err("an interval `{…}` with nothing before it to repeat".into())
            }
            Tok::CloseBrace => Node::Lit(b'}'),
            Tok::Alt | Tok::End => return Err("internal: empty expression".into()),
        };
        let mut stacked = 0;
        loop {
            let (min, max) = match self.peek()?.0 {
                Tok::Star => (0, None),
                Tok::Plus => (1, None),
                Tok::Quest => (0, Some(1)),
                Tok::OpenBrace => (u32::MAX, None),
                _ => break,
            };
            let (min, max) = match self.next()? {
                Tok::OpenBrace => self.parse_interval()?,
                _ => (min, max),
            };
            if matches!(atom, Node::Group(_)) {
                self.repeated_group = true;
            }
            stacked += 1;
            if stacked > MAX_STACKED {
                return Err(format!("more than {MAX_STACKED} repetitions in a row"));
            }
            atom = Node::Repeat(Box::new(atom), min, max);
            if !ere && matches!(self.peek()?.0, Tok::Star | Tok::OpenBrace) {
                return Err("`*` or `\\{` right after a repetition, which a basic \
                            regexp (flag x) does not allow"
                    .into());
            }
        }
        Ok(atom)
    }

    /// `{m}`, `{m,}`, `{m,n}`, `{,n}` (a GNU form: `{0,n}`), after the `{`.
    fn parse_interval(&mut self) -> Result<(u32, Option<u32>), String> {
        let min = self.number();
        let max = if self.at(self.pos) == Some(b',') {
            self.pos += 1;
            self.number()
        } else {
            match min {
                Some(n) => Some(n),
                None => return Err(self.bad_interval()),
            }
        };
        let close: &[u8] = if self.f.extended { b"}" } else { b"\\}" };
        if !self.re[self.pos..].starts_with(close) {
            return Err(self.bad_interval());
        }
        self.pos += close.len();
        self.caret_here = false;
        let min = min.unwrap_or(0);
        if max.is_some_and(|max| max < min) {
            return Err(format!(
                "interval {{{min},{}}}: the minimum is above the maximum",
                max.unwrap_or(0)
            ));
        }
        if max.unwrap_or(min) > RE_DUP_MAX {
            return Err(format!("an interval count above {RE_DUP_MAX}"));
        }
        Ok((min, max))
    }

    fn number(&mut self) -> Option<u32> {
        let start = self.pos;
        let mut n: u32 = 0;
        while let Some(d @ b'0'..=b'9') = self.at(self.pos) {
            n = n.saturating_mul(10).saturating_add(u32::from(d - b'0'));
            self.pos += 1;
        }
        (self.pos > start).then_some(n)
    }

    fn bad_interval(&self) -> String {
        if self.f.extended {
            "`{` must start an interval {n}, {n,}, {n,m} or {,m}; write `\\{` for a literal brace"
                .into()
        } else {
            "`\\{` must start an interval \\{n\\}, \\{n,\\}, \\{n,m\\} or \\{,m\\}".into()
        }
    }
}

/// Without REG_NEWLINE, `$` can only match at the end and `^` at the
/// start, so POSIX gives `$` followed by (or `^` preceded by) more pattern
/// in the same sequence no match but there; glibc, however, lets `$.` and
/// `.^` match across a newline (`$.*b` matches "a\nb") while `$(.)` does
/// not. Such a pattern is refused rather than guessed at.
fn check_anchors(items: &[Node]) -> Result<(), String> {
    let consumes = |n: &Node| !matches!(n, Node::Assert(_));
    let first = items.iter().position(consumes).unwrap_or(usize::MAX);
    let last = items.iter().rposition(consumes);
    for (i, item) in items.iter().enumerate() {
        let misplaced = match item {
            Node::Assert("$") => last.is_some_and(|last| last > i),
            Node::Assert("^") => first < i,
            _ => false,
        };
        if misplaced {
            return Err(format!(
                "`{}` with more pattern {} it: without the m flag it only matches \
                 at the {} of the text, and glibc then also matches next to a \
                 newline, inconsistently; add the m flag if a line {} is meant, \
                 or write `\\{}` for the character",
                if let Node::Assert(a) = item { a } else { "" },
                if matches!(item, Node::Assert("$")) {
                    "after"
                } else {
                    "before"
                },
                if matches!(item, Node::Assert("$")) {
                    "end"
                } else {
                    "start"
                },
                if matches!(item, Node::Assert("$")) {
                    "end"
                } else {
                    "start"
                },
                if let Node::Assert(a) = item { a } else { "" },
            ));
        }
    }
    Ok(())
}
