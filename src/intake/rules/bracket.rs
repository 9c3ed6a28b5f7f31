//! Bracket expressions (`[a-z]`, `[^[:space:]]`) and the class escapes
//! `\w \W \s \S` of POSIX regexps, computed as the set of bytes glibc
//! matches in the C locale, for translate.rs to write out explicitly.
//! Owns nothing else.
//!
//! glibc's rules, checked against glibc 2.36: `^` first negates; `]` first
//! (after the `^`) and `-` first or last are literal; a backslash is a
//! plain character; a range runs over byte values; `[:name:]` is one of
//! the C locale's twelve classes and cannot end a range. With REG_ICASE
//! the pattern is upper-cased before the ranges are built and the input
//! byte is upper-cased before it is looked up, so `[@-a]` matches `@`,
//! `A` and `a` only, and `[:upper:]`/`[:lower:]` act as `[:alpha:]`. With
//! REG_NEWLINE a negated list never matches a newline, while `\W` (built
//! the same way) still does.

use super::translate::Flags;

/// One bit per byte value.
pub type Bytes = [bool; 256];

/// Reads a bracket expression from `re[*pos..]` (just after its `[`) and
/// moves `*pos` past its `]`.
pub fn parse(re: &[u8], pos: &mut usize, f: Flags) -> Result<Bytes, String> {
    let mut p = Bracket { re, pos: *pos, f };
    let set = p.parse_bracket()?;
    *pos = p.pos;
    Ok(set)
}

struct Bracket<'a> {
    re: &'a [u8],
    pos: usize,
    f: Flags,
}

impl Bracket<'_> {
    fn at(&self, i: usize) -> Option<u8> {
        self.re.get(i).copied()
    }

    /// The set, after the opening `[`.
    fn parse_bracket(&mut self) -> Result<Bytes, String> {
        const UNMATCHED: &str = "unmatched `[`";
        let mut set = [false; 256];
        let negate = self.at(self.pos) == Some(b'^');
        if negate {
            self.pos += 1;
        }
        let mut first = true;
        loop {
            if self.pos >= self.re.len() {
                return Err(UNMATCHED.into());
            }
            let start = self.bracket_elem(first)?;
            first = false;
            let Some(next) = self.at(self.pos) else {
                return Err(UNMATCHED.into());
            };
            match start {
                Elem::Class(class) => union(&mut set, &class),
                Elem::Char(lo) if next == b'-' && self.at(self.pos + 1) != Some(b']') => {
                    self.pos += 1;
                    if self.pos >= self.re.len() {
                        return Err(UNMATCHED.into());
                    }
                    let Elem::Char(hi) = self.bracket_elem(true)? else {
                        return Err("a range cannot end with a [:class:]".into());
                    };
                    if lo > hi {
                        return Err(format!(
                            "range {}-{} runs backwards{}",
                            show(lo),
                            show(hi),
                            if self.f.icase {
                                " (with the i flag its ends are compared upper-cased)"
                            } else {
                                ""
                            }
                        ));
                    }
                    set[lo as usize..=hi as usize].fill(true);
                }
                // A `-` before the closing `]` is taken next time round.
                Elem::Char(c) => set[c as usize] = true,
            }
            match self.at(self.pos) {
                None => return Err(UNMATCHED.into()),
                Some(b']') => {
                    self.pos += 1;
                    break;
                }
                Some(_) => {}
            }
        }
        if negate {
            if self.f.newline {
                set[b'\n' as usize] = true;
            }
            set.iter_mut().for_each(|b| *b = !*b);
        }
        if !self.f.icase {
            return Ok(set);
        }
        // glibc looks the upper-cased input byte up.
        let mut folded = [false; 256];
        for (b, f) in folded.iter_mut().enumerate() {
            *f = set[(b as u8).to_ascii_uppercase() as usize];
        }
        Ok(folded)
    }

    fn bracket_elem(&mut self, accept_hyphen: bool) -> Result<Elem, String> {
        let c = self.re[self.pos];
        if c == b'[' {
            if let Some(delim @ (b':' | b'.' | b'=')) = self.at(self.pos + 1) {
                return self.bracket_symbol(delim);
            }
        }
        if c == b'-' && !accept_hyphen && self.at(self.pos + 1) != Some(b']') {
            return Err("`-` inside a bracket expression must come first, last, \
                        or end a range"
                .into());
        }
        self.pos += 1;
        Ok(Elem::Char(if self.f.icase {
            c.to_ascii_uppercase()
        } else {
            c
        }))
    }

    /// `[:name:]`; `[.x.]` and `[=x=]` are refused.
    fn bracket_symbol(&mut self, delim: u8) -> Result<Elem, String> {
        let start = self.pos + 2;
        let rest = &self.re[start..];
        let Some(len) = rest.windows(2).position(|w| w[0] == delim && w[1] == b']') else {
            return Err("unmatched `[`".into());
        };
        self.pos = start + len + 2;
        if delim != b':' {
            return Err(format!(
                "collating symbols and equivalence classes (`[{0}…{0}]`) are not \
                 supported; write the character itself",
                delim as char
            ));
        }
        let name = String::from_utf8_lossy(&rest[..len]);
        let name = match &*name {
            "upper" | "lower" if self.f.icase => "alpha",
            n => n,
        };
        match posix_class(name) {
            Some(set) => Ok(Elem::Class(Box::new(set))),
            None => Err(format!(
                "unknown character class [:{name}:]; allowed: alnum, alpha, blank, \
                 cntrl, digit, graph, lower, print, punct, space, upper, xdigit"
            )),
        }
    }
}

enum Elem {
    Char(u8),
    Class(Box<Bytes>),
}

fn union(set: &mut Bytes, other: &Bytes) {
    for (a, b) in set.iter_mut().zip(other.iter()) {
        *a |= *b;
    }
}

/// The C locale's character classes.
fn posix_class(name: &str) -> Option<Bytes> {
    let test: fn(u8) -> bool = match name {
        "alnum" => |c| c.is_ascii_alphanumeric(),
        "alpha" => |c| c.is_ascii_alphabetic(),
        "blank" => |c| c == b' ' || c == b'\t',
        "cntrl" => |c| c.is_ascii_control(),
        "digit" => |c| c.is_ascii_digit(),
        "graph" => |c| c.is_ascii_graphic(),
        "lower" => |c| c.is_ascii_lowercase(),
        "print" => |c| c == b' ' || c.is_ascii_graphic(),
        "punct" => |c| c.is_ascii_punctuation(),
        // isspace(): also the vertical tab, which is_ascii_whitespace() omits.
        "space" => |c| matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r'),
        "upper" => |c| c.is_ascii_uppercase(),
        "xdigit" => |c| c.is_ascii_hexdigit(),
        _ => return None,
    };
    let mut set = [false; 256];
    for (b, s) in set.iter_mut().enumerate() {
        *s = test(b as u8);
    }
    Some(set)
}

/// `\w \W \s \S`: glibc builds them like brackets, but a negated one still
/// matches a newline under REG_NEWLINE. Case does not change them.
pub fn class_escape(c: u8) -> Bytes {
    let mut set = posix_class(if c.eq_ignore_ascii_case(&b's') {
        "space"
    } else {
        "alnum"
    })
    .expect("known class");
    if c.eq_ignore_ascii_case(&b'w') {
        set[b'_' as usize] = true;
    }
    if c.is_ascii_uppercase() {
        set.iter_mut().for_each(|b| *b = !*b);
    }
    set
}

fn show(c: u8) -> String {
    if c.is_ascii_graphic() {
        (c as char).to_string()
    } else {
        format!("\\x{c:02X}")
    }
}
