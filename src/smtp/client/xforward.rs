//! XFORWARD (Postfix XFORWARD_README): tell a content filter or proxy who
//! the original client was, so its logs and checks see the real peer.
//! Pure: builds command lines, owns nothing else.
//!
//! Rules from the README:
//! - Attributes NAME ADDR PORT PROTO HELO IDENT SOURCE; send only those the
//!   server lists after `XFORWARD` in its EHLO reply.
//! - A value the client does not know is `[UNAVAILABLE]`.
//! - Values are xtext (RFC 3461 4): `!`..`~` except `+` and `=` as they are,
//!   every other byte as `+HH`.
//! - One command line is at most 512 bytes with CRLF; more attributes go
//!   into another XFORWARD command. A single value too long for one line
//!   is cut (never inside a `+HH`).
//! - ADDR of an IPv6 client is written `IPV6:` + the address, as Postfix does.

use std::net::IpAddr;

/// RFC 5321 4.5.3.1.4: a command line, CRLF included.
pub const MAX_LINE: usize = 512;
const UNAVAILABLE: &str = "[UNAVAILABLE]";

/// What the caller knows about the original client. `None` is sent as
/// `[UNAVAILABLE]` when the server asks for the attribute.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct XForward {
    /// The client's host name from reverse DNS (`unknown` when not found).
    pub name: Option<String>,
    pub addr: Option<IpAddr>,
    pub port: Option<u16>,
    /// `SMTP` or `ESMTP`.
    pub proto: Option<String>,
    pub helo: Option<String>,
    /// The queue ID the message had on the first hop.
    pub ident: Option<String>,
    /// `LOCAL` or `REMOTE`.
    pub source: Option<String>,
}

impl XForward {
    fn value(&self, attr: &str) -> Option<String> {
        match attr {
            "NAME" => self.name.clone(),
            "ADDR" => self.addr.map(|a| match a {
                IpAddr::V4(v4) => v4.to_string(),
                IpAddr::V6(v6) => format!("IPV6:{v6}"),
            }),
            "PORT" => self.port.map(|p| p.to_string()),
            "PROTO" => self.proto.clone(),
            "HELO" => self.helo.clone(),
            "IDENT" => self.ident.clone(),
            "SOURCE" => self.source.clone(),
            _ => None,
        }
    }

    /// The XFORWARD command lines (each with CRLF) for a server that
    /// offers `offered`; empty when it offers none we know.
    pub fn commands(&self, offered: &[String]) -> Vec<String> {
        let mut lines: Vec<String> = Vec::new();
        let mut cur = String::from("XFORWARD");
        for attr in ["NAME", "ADDR", "PORT", "PROTO", "HELO", "IDENT", "SOURCE"] {
            if !offered.iter().any(|o| o == attr) {
                continue;
            }
            let value = match self.value(attr) {
                Some(v) => xtext(&v),
                None => UNAVAILABLE.to_string(),
            };
            // Room on a fresh line: "XFORWARD " + "ATTR=" + value + CRLF.
            let room = MAX_LINE - "XFORWARD ".len() - attr.len() - 1 - 2;
            let value = cut_xtext(&value, room);
            let item = format!("{attr}={value}");
            if cur.len() + 1 + item.len() + 2 > MAX_LINE {
                lines.push(std::mem::replace(&mut cur, String::from("XFORWARD")));
            }
            cur.push(' ');
            cur.push_str(&item);
        }
        if cur.len() > "XFORWARD".len() {
            lines.push(cur);
        }
        lines.into_iter().map(|l| l + "\r\n").collect()
    }
}

/// RFC 3461 4: xtext.
pub fn xtext(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if (b'!'..=b'~').contains(&b) && b != b'+' && b != b'=' {
            out.push(b as char);
        } else {
            out.push_str(&format!("+{b:02X}"));
        }
    }
    out
}

/// At most `max` bytes of an xtext string, not splitting a `+HH`.
fn cut_xtext(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    // A `+` in the last two positions starts an escape that would be cut.
    for back in 1..=2 {
        if end >= back && s.as_bytes()[end - back] == b'+' {
            end -= back;
            break;
        }
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> Vec<String> {
        ["NAME", "ADDR", "PORT", "PROTO", "HELO", "IDENT", "SOURCE"]
            .map(String::from)
            .to_vec()
    }

    #[test]
    fn xtext_encoding() {
        assert_eq!(xtext("a b+c=d"), "a+20b+2Bc+3Dd");
        assert_eq!(xtext("é"), "+C3+A9");
        assert_eq!(xtext("[1.2.3.4]"), "[1.2.3.4]");
    }

    #[test]
    fn only_offered_attributes_and_unavailable() {
        let x = XForward {
            name: Some("client.example.test".into()),
            addr: Some("192.0.2.7".parse().unwrap()),
            ..XForward::default()
        };
        let offered = vec!["NAME".to_string(), "ADDR".into(), "HELO".into()];
        assert_eq!(
            x.commands(&offered),
            ["XFORWARD NAME=client.example.test ADDR=192.0.2.7 HELO=[UNAVAILABLE]\r\n"]
        );
        assert!(x.commands(&["FOO".to_string()]).is_empty());
    }

    #[test]
    fn ipv6_address() {
        let x = XForward {
            addr: Some("2001:db8::1".parse().unwrap()),
            ..XForward::default()
        };
        assert_eq!(
            x.commands(&["ADDR".to_string()]),
            ["XFORWARD ADDR=IPV6:2001:db8::1\r\n"]
        );
    }

    #[test]
    fn long_values_split_into_two_commands_within_512() {
        let x = XForward {
            name: Some("n".repeat(250)),
            helo: Some("h ".repeat(60)),
            ident: Some("ID".into()),
            ..XForward::default()
        };
        let cmds = x.commands(&all());
        assert_eq!(cmds.len(), 2, "{cmds:?}");
        for c in &cmds {
            assert!(c.len() <= MAX_LINE, "{} bytes", c.len());
            assert!(c.starts_with("XFORWARD ") && c.ends_with("\r\n"));
        }
        let joined = cmds.concat();
        for attr in all() {
            assert!(joined.contains(&format!(" {attr}=")), "{attr} missing");
        }
    }

    #[test]
    fn a_huge_value_is_cut_outside_an_escape() {
        let x = XForward {
            helo: Some(" ".repeat(600)),
            ..XForward::default()
        };
        let cmds = x.commands(&["HELO".to_string()]);
        assert_eq!(cmds.len(), 1);
        assert!(cmds[0].len() <= MAX_LINE);
        let v = cmds[0].trim_end().strip_prefix("XFORWARD HELO=").unwrap();
        assert_eq!(v.len() % 3, 0, "cut inside +20: {v}");
    }
}
