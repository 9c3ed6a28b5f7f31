//! Mail addresses and paths as RFC 5321 4.1.2 spells them, with the RFC 6531
//! (SMTPUTF8) extension for non-ASCII local parts and domains.
//!
//! Pure parsing, no lookups. The local part is kept decoded (quotes and
//! backslash escapes removed) so that `"alice"@x` and `alice@x` are the same
//! mailbox; `Display` re-quotes it when needed. Source routes (`@a,@b:u@d`)
//! are parsed and dropped, as RFC 5321 C says a server should: the relay
//! decision is made on the final domain only, never on the route. Nothing
//! here gives `%`, `!` or an `@` inside quotes any routing meaning; they are
//! just characters of a local part, which is what keeps them from opening a
//! relay.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

/// RFC 5321 4.5.3.1.1 / 4.5.3.1.2 / 4.5.3.1.3.
pub const MAX_LOCAL_PART: usize = 64;
pub const MAX_DOMAIN: usize = 255;
pub const MAX_PATH: usize = 256;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Address {
    /// Decoded local part (no surrounding quotes, no backslash escapes).
    pub local: String,
    /// Domain, lower-cased for ASCII; or an address literal such as `[127.0.0.1]`.
    pub domain: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReversePath {
    /// `<>`: bounces and other notifications (RFC 5321 4.5.5).
    Null,
    Address(Address),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathError {
    /// No path at all (`MAIL FROM:`, `RCPT TO:` with nothing after the
    /// colon): a syntax error in the command's arguments (RFC 5321 4.1.1.2,
    /// 4.1.1.3), not a bad mailbox.
    Missing,
    /// A source route with no mailbox after it (`<@a.test:>`): RFC 5321
    /// 4.1.2's Path is `"<" [ A-d-l ":" ] Mailbox ">"`, the mailbox is not
    /// optional.
    NoMailbox,
    /// A mailbox that is there but malformed.
    Syntax,
    TooLong,
    /// Non-ASCII characters without the SMTPUTF8 parameter (RFC 6531 3.4).
    NeedsUtf8,
}

impl Address {
    pub fn new(local: &str, domain: &str) -> Address {
        Address {
            local: local.to_string(),
            domain: domain.to_ascii_lowercase(),
        }
    }

    pub fn is_ascii(&self) -> bool {
        self.local.is_ascii() && self.domain.is_ascii()
    }

    pub fn is_domain_literal(&self) -> bool {
        self.domain.starts_with('[')
    }

    /// `local@domain` without quoting: the key used for directory lookups.
    pub fn key(&self) -> String {
        format!("{}@{}", self.local, self.domain)
    }

    /// Parses `local@domain` (no angle brackets), e.g. a target in an alias
    /// list. `utf8` allows non-ASCII characters.
    pub fn parse(s: &str, utf8: bool) -> Result<Address, PathError> {
        let mut p = Parser {
            s: s.as_bytes(),
            pos: 0,
            utf8,
        };
        let a = p.mailbox()?;
        if p.pos != p.s.len() {
            return Err(PathError::Syntax);
        }
        Ok(a)
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if is_dot_string(&self.local) {
            write!(f, "{}@{}", self.local, self.domain)
        } else {
            f.write_str("\"")?;
            for c in self.local.chars() {
                if c == '"' || c == '\\' {
                    f.write_str("\\")?;
                }
                write!(f, "{c}")?;
            }
            write!(f, "\"@{}", self.domain)
        }
    }
}

impl fmt::Display for ReversePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReversePath::Null => Ok(()),
            ReversePath::Address(a) => a.fmt(f),
        }
    }
}

/// What `MAIL FROM:` / `RCPT TO:` carry after the colon: the path, then the
/// ESMTP parameters as unparsed text.
#[derive(Debug, PartialEq, Eq)]
pub struct ParsedPath<'a> {
    pub path: Option<Address>,
    /// `<postmaster>` style: a bare local part without domain (RFC 5321 4.1.1.3).
    pub bare_local: Option<String>,
    pub params: &'a str,
}

/// Parses `<path> params` (or an unbracketed address, as many clients send).
/// `<>` gives `path: None, bare_local: None`.
pub fn parse_path(s: &str, utf8: bool) -> Result<ParsedPath<'_>, PathError> {
    let s = s.trim_start_matches(' ');
    let bytes = s.as_bytes();
    let (inner, rest) = if bytes.first() == Some(&b'<') {
        let end = find_close(bytes).ok_or(PathError::Syntax)?;
        (&s[1..end], &s[end + 1..])
    } else {
        // RFC 5321 4.1.1.2: `<>` or a path; an empty argument is neither.
        let end = s.find(' ').unwrap_or(s.len());
        if end == 0 {
            return Err(PathError::Missing);
        }
        (&s[..end], &s[end..])
    };
    if !rest.is_empty() && !rest.starts_with(' ') {
        return Err(PathError::Syntax);
    }
    let params = rest.trim_matches(' ');
    if inner.len() > MAX_PATH {
        return Err(PathError::TooLong);
    }
    if inner.is_empty() {
        return Ok(ParsedPath {
            path: None,
            bare_local: None,
            params,
        });
    }
    let mut p = Parser {
        s: inner.as_bytes(),
        pos: 0,
        utf8,
    };
    p.skip_route()?;
    if p.pos > 0 && p.pos == p.s.len() {
        return Err(PathError::NoMailbox);
    }
    // A bare local part (only `postmaster` is meaningful, RFC 5321 4.1.1.3).
    if !inner.contains('@') {
        let local = p.local_part()?;
        if p.pos != p.s.len() {
            return Err(PathError::Syntax);
        }
        return Ok(ParsedPath {
            path: None,
            bare_local: Some(local),
            params,
        });
    }
    let a = p.mailbox()?;
    if p.pos != p.s.len() {
        return Err(PathError::Syntax);
    }
    Ok(ParsedPath {
        path: Some(a),
        bare_local: None,
        params,
    })
}

/// Index of the `>` closing the path, skipping quoted strings.
fn find_close(b: &[u8]) -> Option<usize> {
    let mut i = 1;
    let mut quoted = false;
    while i < b.len() {
        match b[i] {
            b'\\' if quoted => i += 1,
            b'"' => quoted = !quoted,
            b'>' if !quoted => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

struct Parser<'a> {
    s: &'a [u8],
    pos: usize,
    utf8: bool,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    /// `@a,@b:` — parsed for syntax, then ignored (RFC 5321 4.1.1.3, C).
    fn skip_route(&mut self) -> Result<(), PathError> {
        if self.peek() != Some(b'@') {
            return Ok(());
        }
        loop {
            if self.peek() != Some(b'@') {
                return Err(PathError::Syntax);
            }
            self.pos += 1;
            self.domain()?;
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b':') => {
                    self.pos += 1;
                    return Ok(());
                }
                _ => return Err(PathError::Syntax),
            }
        }
    }

    fn mailbox(&mut self) -> Result<Address, PathError> {
        let local = self.local_part()?;
        if self.peek() != Some(b'@') {
            return Err(PathError::Syntax);
        }
        self.pos += 1;
        let domain = self.domain()?;
        Ok(Address { local, domain })
    }

    fn local_part(&mut self) -> Result<String, PathError> {
        let local = if self.peek() == Some(b'"') {
            self.quoted_string()?
        } else {
            self.dot_string()?
        };
        if local.len() > MAX_LOCAL_PART {
            return Err(PathError::TooLong);
        }
        Ok(local)
    }

    fn dot_string(&mut self) -> Result<String, PathError> {
        let start = self.pos;
        let mut last_dot = true; // no leading dot
        while let Some(c) = self.peek() {
            if c == b'.' {
                if last_dot {
                    return Err(PathError::Syntax);
                }
                last_dot = true;
            } else if is_atext(c) {
                last_dot = false;
            } else if c >= 0x80 {
                if !self.utf8 {
                    return Err(PathError::NeedsUtf8);
                }
                last_dot = false;
            } else {
                break;
            }
            self.pos += 1;
        }
        if self.pos == start || last_dot {
            return Err(PathError::Syntax);
        }
        let s = std::str::from_utf8(&self.s[start..self.pos]).map_err(|_| PathError::Syntax)?;
        Ok(s.to_string())
    }

    fn quoted_string(&mut self) -> Result<String, PathError> {
        self.pos += 1; // opening quote
        let mut out = Vec::new();
        loop {
            let c = self.peek().ok_or(PathError::Syntax)?;
            self.pos += 1;
            match c {
                b'"' => break,
                b'\\' => {
                    // quoted-pairSMTP = %d92 %d32-126
                    let n = self.peek().ok_or(PathError::Syntax)?;
                    if !(32..=126).contains(&n) {
                        return Err(PathError::Syntax);
                    }
                    out.push(n);
                    self.pos += 1;
                }
                // qtextSMTP = %d32-33 / %d35-91 / %d93-126
                32..=126 => out.push(c),
                0x80.. if self.utf8 => out.push(c),
                0x80.. => return Err(PathError::NeedsUtf8),
                _ => return Err(PathError::Syntax),
            }
        }
        String::from_utf8(out).map_err(|_| PathError::Syntax)
    }

    fn domain(&mut self) -> Result<String, PathError> {
        if self.peek() == Some(b'[') {
            return self.address_literal();
        }
        let start = self.pos;
        let mut label_len = 0usize;
        let mut last = b'.';
        while let Some(c) = self.peek() {
            if c == b'.' {
                if label_len == 0 || last == b'-' {
                    return Err(PathError::Syntax);
                }
                label_len = 0;
            } else if c.is_ascii_alphanumeric() || c >= 0x80 || (c == b'-' && label_len > 0) {
                if c >= 0x80 && !self.utf8 {
                    return Err(PathError::NeedsUtf8);
                }
                label_len += 1;
                if label_len > 63 {
                    return Err(PathError::TooLong);
                }
            } else {
                break;
            }
            last = c;
            self.pos += 1;
        }
        if self.pos == start || last == b'.' || last == b'-' {
            return Err(PathError::Syntax);
        }
        if self.pos - start > MAX_DOMAIN {
            return Err(PathError::TooLong);
        }
        let s = std::str::from_utf8(&self.s[start..self.pos]).map_err(|_| PathError::Syntax)?;
        Ok(s.to_lowercase())
    }

    /// `[1.2.3.4]` or `[IPv6:...]` (RFC 5321 4.1.3). General literals are refused.
    fn address_literal(&mut self) -> Result<String, PathError> {
        let rest = &self.s[self.pos..];
        let end = rest
            .iter()
            .position(|&c| c == b']')
            .ok_or(PathError::Syntax)?;
        let inner = std::str::from_utf8(&rest[1..end]).map_err(|_| PathError::Syntax)?;
        let ok = if let Some(v6) = inner
            .strip_prefix("IPv6:")
            .or_else(|| inner.strip_prefix("ipv6:"))
        {
            v6.parse::<Ipv6Addr>().is_ok()
        } else {
            inner.parse::<Ipv4Addr>().is_ok()
        };
        if !ok {
            return Err(PathError::Syntax);
        }
        self.pos += end + 1;
        Ok(format!(
            "[{}]",
            inner.to_ascii_lowercase().replacen("ipv6:", "IPv6:", 1)
        ))
    }
}

/// RFC 5322 3.2.3 atext.
pub fn is_atext(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&c)
}

fn is_dot_string(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with('.')
        && !s.ends_with('.')
        && !s.contains("..")
        && s.bytes().all(|c| c == b'.' || is_atext(c) || c >= 0x80)
}

/// One ESMTP parameter from MAIL/RCPT (RFC 5321 4.1.2 esmtp-param).
#[derive(Debug, PartialEq, Eq)]
pub struct Param<'a> {
    pub keyword: &'a str,
    pub value: Option<&'a str>,
}

/// Splits `KEY=VALUE KEY2` into parameters; `None` on bad syntax.
pub fn parse_params(s: &str) -> Option<Vec<Param<'_>>> {
    let mut out = Vec::new();
    for word in s.split(' ').filter(|w| !w.is_empty()) {
        let (k, v) = match word.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (word, None),
        };
        let key_ok = !k.is_empty()
            && k.as_bytes()[0].is_ascii_alphanumeric()
            && k.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-');
        let val_ok =
            v.is_none_or(|v| !v.is_empty() && v.bytes().all(|c| c > 32 && c != b'=' && c != 127));
        if !key_ok || !val_ok {
            return None;
        }
        out.push(Param {
            keyword: k,
            value: v,
        });
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> Address {
        parse_path(s, false).unwrap().path.unwrap()
    }

    #[test]
    fn plain_and_params() {
        let p = parse_path("<Alice@Example.TEST> SIZE=100 BODY=8BITMIME", false).unwrap();
        assert_eq!(p.path.unwrap(), Address::new("Alice", "example.test"));
        assert_eq!(p.params, "SIZE=100 BODY=8BITMIME");
        let params = parse_params(p.params).unwrap();
        assert_eq!(
            params[0],
            Param {
                keyword: "SIZE",
                value: Some("100")
            }
        );
    }

    #[test]
    fn null_path() {
        let p = parse_path("<>", false).unwrap();
        assert!(p.path.is_none() && p.bare_local.is_none());
    }

    #[test]
    fn unbracketed_is_accepted() {
        assert_eq!(addr("a@b.test"), Address::new("a", "b.test"));
    }

    #[test]
    fn bare_postmaster() {
        let p = parse_path("<Postmaster>", false).unwrap();
        assert_eq!(p.bare_local.as_deref(), Some("Postmaster"));
    }

    #[test]
    fn source_route_is_dropped() {
        assert_eq!(
            addr("<@a.test,@b.test:user@remote.test>"),
            Address::new("user", "remote.test")
        );
    }

    #[test]
    fn quoted_local_keeps_at_sign_inside_local_part() {
        let a = addr("<\"user@remote.test\"@example.test>");
        assert_eq!(a.local, "user@remote.test");
        assert_eq!(a.domain, "example.test");
        assert_eq!(a.to_string(), "\"user@remote.test\"@example.test");
    }

    #[test]
    fn quoted_equivalent_to_plain() {
        assert_eq!(
            addr("<\"alice\"@example.test>"),
            addr("<alice@example.test>")
        );
    }

    #[test]
    fn percent_and_bang_are_plain_characters() {
        let a = addr("<user%remote.test@example.test>");
        assert_eq!(
            (a.local.as_str(), a.domain.as_str()),
            ("user%remote.test", "example.test")
        );
        let a = addr("<remote.test!user@example.test>");
        assert_eq!(a.domain, "example.test");
    }

    #[test]
    fn rejects_bad_syntax() {
        for bad in [
            "<a@>",
            "<@x>",
            "<a@b..c>",
            "<.a@b>",
            "<a.@b>",
            "<a..b@c>",
            "<a@-b>",
            "<a@b->",
            "<a b@c>",
            "<a@b",
            "<a@[1.2.3]>",
            "<a@[x:y]>",
            "<a@b>x",
            "<\"a@b>",
            "<a@b.>",
        ] {
            assert!(parse_path(bad, false).is_err(), "{bad} should fail");
        }
    }

    #[test]
    fn missing_path_and_route_without_mailbox() {
        for missing in ["", " ", "   "] {
            assert_eq!(
                parse_path(missing, false).unwrap_err(),
                PathError::Missing,
                "{missing:?}"
            );
        }
        for empty in ["<@a.test:>", "<@a.test,@b.test:>", "<@a.test:> SIZE=1"] {
            assert_eq!(
                parse_path(empty, false).unwrap_err(),
                PathError::NoMailbox,
                "{empty:?}"
            );
        }
        // A route needs its colon, and a mailbox that is there is checked.
        assert_eq!(
            parse_path("<@a.test>", false).unwrap_err(),
            PathError::Syntax
        );
        assert_eq!(
            parse_path("<@a.test:b@>", false).unwrap_err(),
            PathError::Syntax
        );
    }

    #[test]
    fn length_limits() {
        let long_local = format!("<{}@x.test>", "a".repeat(65));
        assert_eq!(
            parse_path(&long_local, false).unwrap_err(),
            PathError::TooLong
        );
        let long_path = format!("<a@{}.test>", "b.".repeat(130));
        assert!(parse_path(&long_path, false).is_err());
    }

    #[test]
    fn literals() {
        assert_eq!(addr("<a@[127.0.0.1]>").domain, "[127.0.0.1]");
        assert_eq!(addr("<a@[IPv6:::1]>").domain, "[IPv6:::1]");
    }

    #[test]
    fn utf8_needs_flag() {
        assert_eq!(
            parse_path("<jörg@example.test>", false).unwrap_err(),
            PathError::NeedsUtf8
        );
        let a = parse_path("<jörg@bücher.test>", true)
            .unwrap()
            .path
            .unwrap();
        assert_eq!(a.local, "jörg");
        assert_eq!(a.domain, "bücher.test");
    }

    #[test]
    fn params_syntax() {
        assert!(parse_params("SIZE=").is_none());
        assert!(parse_params("=1").is_none());
        assert_eq!(parse_params("  ").unwrap().len(), 0);
    }
}
