//! The `Received:` trace header postern prepends to every message it
//! accepts (RFC 5321 4.4), and the protocol name it carries (RFC 3848,
//! RFC 6531 3.7.3). Pure: the caller passes the time.

use std::net::IpAddr;

use crate::timefmt;

/// `with` keyword values: SMTP, ESMTP, with S (TLS) and A (authenticated),
/// and the UTF8 forms when the client used SMTPUTF8.
pub fn protocol(esmtp: bool, tls: bool, auth: bool, utf8: bool) -> String {
    if !esmtp {
        return "SMTP".to_string();
    }
    let mut p = String::from(if utf8 { "UTF8SMTP" } else { "ESMTP" });
    if tls {
        p.push('S');
    }
    if auth {
        p.push('A');
    }
    p
}

/// RFC 5321 4.1.3 address literal: `[1.2.3.4]` or `[IPv6:::1]`.
pub fn address_literal(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => format!("[{v4}]"),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => format!("[{v4}]"),
            None => format!("[IPv6:{v6}]"),
        },
    }
}

pub struct TraceInfo<'a> {
    pub helo: &'a str,
    /// Reverse-DNS name of the client, or "unknown".
    pub client_name: &'a str,
    pub client_ip: IpAddr,
    pub hostname: &'a str,
    pub protocol: &'a str,
    pub queue_id: &'a str,
    /// Named only for a single recipient, so a Bcc list does not leak.
    pub single_recipient: Option<&'a str>,
    /// `using TLSv1.3 with cipher ...`, when the client used TLS.
    pub tls: Option<&'a str>,
    /// The logged-in user, when it is to be shown.
    pub auth: Option<&'a str>,
    /// Submitted on this host (sendmail): the local user's uid.
    pub local_uid: Option<u32>,
    pub unix_time: i64,
}

/// The header with LF line ends (the spool's form), folded over three lines.
pub fn header(t: &TraceInfo<'_>) -> String {
    if let Some(uid) = t.local_uid {
        // As Postfix's pickup writes it.
        return format!(
            "Received: by {} (postern, from userid {uid})\n\tid {}; {}\n",
            t.hostname,
            t.queue_id,
            timefmt::rfc5322(t.unix_time)
        );
    }
    let helo = sanitize(t.helo);
    let mut h = format!(
        "Received: from {helo} ({} {})",
        t.client_name,
        address_literal(t.client_ip)
    );
    if let Some(tls) = t.tls {
        h.push_str(&format!("\n\t({})", sanitize(tls)));
    }
    if let Some(user) = t.auth {
        h.push_str(&format!("\n\t(Authenticated sender: {})", sanitize(user)));
    }
    h.push_str(&format!("\n\tby {} with {}", t.hostname, t.protocol));
    h.push_str(&format!(" id {}", t.queue_id));
    match t.single_recipient {
        Some(r) => h.push_str(&format!(
            "\n\tfor <{r}>; {}\n",
            timefmt::rfc5322(t.unix_time)
        )),
        None => h.push_str(&format!(";\n\t{}\n", timefmt::rfc5322(t.unix_time))),
    }
    h
}

/// The HELO name is the client's to choose; keep it to printable characters
/// that cannot break the header's structure.
fn sanitize(s: &str) -> String {
    let cleaned: String = s
        .chars()
        .take(255)
        .map(|c| {
            if c.is_control() || c == '(' || c == ')' || c == ';' {
                '?'
            } else {
                c
            }
        })
        .collect();
    if cleaned.is_empty() {
        "unknown".to_string()
    } else {
        cleaned
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_shape() {
        let h = header(&TraceInfo {
            helo: "client.test",
            client_name: "unknown",
            client_ip: "127.0.0.1".parse().unwrap(),
            hostname: "mx.example.test",
            protocol: "ESMTP",
            queue_id: "ABC",
            single_recipient: Some("alice@example.test"),
            tls: None,
            auth: None,
            local_uid: None,
            unix_time: 0,
        });
        assert_eq!(
            h,
            "Received: from client.test (unknown [127.0.0.1])\n\tby mx.example.test with ESMTP id ABC\n\tfor <alice@example.test>; Thu, 1 Jan 1970 00:00:00 +0000\n"
        );
    }

    #[test]
    fn protocols() {
        assert_eq!(protocol(false, false, false, false), "SMTP");
        assert_eq!(protocol(true, true, true, false), "ESMTPSA");
        assert_eq!(protocol(true, false, false, true), "UTF8SMTP");
        assert_eq!(address_literal("::1".parse().unwrap()), "[IPv6:::1]");
    }

    #[test]
    fn helo_cannot_break_header() {
        assert_eq!(sanitize("a(b);c\u{7}"), "a?b??c?");
    }
}
