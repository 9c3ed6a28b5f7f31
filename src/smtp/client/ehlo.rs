//! What a server announces in its EHLO reply (RFC 5321 4.1.1.1), parsed
//! for the client. Pure; owns nothing but the parsing.
//!
//! The first line is the server's name; each later line is one keyword
//! with its parameters. Keywords are matched as whole words, case
//! insensitively: `STARTTLSX` is not STARTTLS, and `X-PIPELINING` is not
//! PIPELINING. `AUTH=PLAIN LOGIN` is the pre-RFC 4954 spelling some servers
//! still send beside or instead of `AUTH PLAIN LOGIN`.

use super::response::Response;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// RFC 2920.
    pub pipelining: bool,
    /// RFC 1870: `Some(0)` or a bare `SIZE` means "no fixed limit".
    pub size: Option<u64>,
    /// RFC 3207.
    pub starttls: bool,
    /// RFC 4954: the mechanism names, upper-cased.
    pub auth: Vec<String>,
    /// RFC 6152.
    pub eightbitmime: bool,
    /// RFC 6531.
    pub smtputf8: bool,
    /// RFC 2034.
    pub enhanced_status_codes: bool,
    /// Postfix XFORWARD_README: the attribute names, upper-cased.
    pub xforward: Vec<String>,
    /// RFC 3461.
    pub dsn: bool,
}

impl Capabilities {
    /// From a positive EHLO reply.
    pub fn parse(reply: &Response) -> Capabilities {
        let mut c = Capabilities::default();
        for line in reply.lines.iter().skip(1) {
            let mut words = line.split([' ', '\t']).filter(|w| !w.is_empty());
            let Some(first) = words.next() else { continue };
            let (keyword, inline) = match first.split_once('=') {
                // `AUTH=PLAIN`: the old spelling, parameters after `=`.
                Some((k, v)) if k.eq_ignore_ascii_case("AUTH") => (k, Some(v)),
                _ => (first, None),
            };
            let params: Vec<String> = inline
                .into_iter()
                .chain(words)
                .filter(|w| !w.is_empty())
                .map(|w| w.to_ascii_uppercase())
                .collect();
            match keyword.to_ascii_uppercase().as_str() {
                "PIPELINING" => c.pipelining = true,
                "SIZE" => {
                    // A malformed number is treated as no limit announced.
                    c.size = Some(params.first().and_then(|p| p.parse().ok()).unwrap_or(0));
                }
                "STARTTLS" => c.starttls = true,
                "AUTH" => {
                    for m in params {
                        if !c.auth.contains(&m) {
                            c.auth.push(m);
                        }
                    }
                }
                "8BITMIME" => c.eightbitmime = true,
                "SMTPUTF8" => c.smtputf8 = true,
                "ENHANCEDSTATUSCODES" => c.enhanced_status_codes = true,
                "XFORWARD" => {
                    for a in params {
                        if !c.xforward.contains(&a) {
                            c.xforward.push(a);
                        }
                    }
                }
                "DSN" => c.dsn = true,
                _ => {}
            }
        }
        c
    }

    /// The server's limit, if it announced one (`SIZE 0` is no limit).
    pub fn size_limit(&self) -> Option<u64> {
        self.size.filter(|&n| n > 0)
    }

    pub fn offers_auth(&self, mechanism: &str) -> bool {
        self.auth.iter().any(|m| m == mechanism)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(lines: &[&str]) -> Capabilities {
        Capabilities::parse(&Response {
            code: 250,
            esc: None,
            lines: lines.iter().map(|s| s.to_string()).collect(),
        })
    }

    #[test]
    fn the_usual_postfix_answer() {
        let c = caps(&[
            "mx.example.test",
            "PIPELINING",
            "SIZE 10240000",
            "VRFY",
            "ETRN",
            "STARTTLS",
            "AUTH PLAIN LOGIN",
            "AUTH=PLAIN LOGIN",
            "ENHANCEDSTATUSCODES",
            "8BITMIME",
            "DSN",
            "SMTPUTF8",
            "CHUNKING",
        ]);
        assert!(c.pipelining && c.starttls && c.eightbitmime && c.smtputf8 && c.dsn);
        assert!(c.enhanced_status_codes);
        assert_eq!(c.size_limit(), Some(10_240_000));
        assert_eq!(c.auth, ["PLAIN", "LOGIN"]);
        assert!(c.xforward.is_empty());
    }

    #[test]
    fn keywords_are_whole_words() {
        let c = caps(&[
            "mx",
            "STARTTLSX",
            "X-PIPELINING",
            "XSIZE 5",
            "8BITMIMEX",
            "AUTHX PLAIN",
        ]);
        assert_eq!(c, Capabilities::default());
        // The first line is the server name, never a keyword.
        assert!(!caps(&["PIPELINING"]).pipelining);
    }

    #[test]
    fn case_and_old_auth_spelling() {
        let c = caps(&["mx", "pipelining", "auth=login cram-md5", "starttls"]);
        assert!(c.pipelining && c.starttls);
        assert_eq!(c.auth, ["LOGIN", "CRAM-MD5"]);
        assert!(c.offers_auth("LOGIN") && !c.offers_auth("PLAIN"));
    }

    #[test]
    fn size_without_a_number_is_no_limit() {
        assert_eq!(caps(&["mx", "SIZE"]).size_limit(), None);
        assert_eq!(caps(&["mx", "SIZE 0"]).size_limit(), None);
        assert_eq!(caps(&["mx", "SIZE lots"]).size_limit(), None);
        assert_eq!(caps(&["mx", "SIZE 0"]).size, Some(0));
    }

    #[test]
    fn xforward_attributes() {
        let c = caps(&["mx", "XFORWARD NAME ADDR PROTO HELO SOURCE PORT IDENT"]);
        assert_eq!(
            c.xforward,
            ["NAME", "ADDR", "PROTO", "HELO", "SOURCE", "PORT", "IDENT"]
        );
    }
}
