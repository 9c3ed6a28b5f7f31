//! Bounces and delay notices: delivery status notifications (RFC 3464)
//! in a multipart/report (RFC 6522), sent from the null sender `<>` so that
//! a notice can never bounce again. The original message's header section
//! is returned as text/rfc822-headers, never its body.
//!
//! Three kinds: a bounce (`Action: failed`), a delay notice (`Action:
//! delayed`, with `Will-Retry-Until`), and a double bounce: a bounce that
//! could not be delivered, reported once to the local postmaster.

use crate::deliver::Remote;
use crate::smtp::reply::Esc;
use crate::timefmt;

pub struct Failure {
    pub final_rcpt: String,
    pub orig_rcpt: String,
    pub esc: Esc,
    pub text: String,
    /// The remote server that refused it, with its reply, if one did.
    pub remote: Option<Remote>,
}

/// Which notice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Bounce,
    /// Still undelivered; tried until `until` (Unix time).
    Delay {
        until: i64,
    },
    /// To the postmaster: a notice that could not be delivered.
    DoubleBounce,
}

pub struct Report<'a> {
    pub kind: Kind,
    pub hostname: &'a str,
    pub queue_id: &'a str,
    pub bounce_id: &'a str,
    pub sender: &'a str,
    pub arrival: i64,
    pub now: i64,
    /// The original header section, LF line ends.
    pub headers: &'a [u8],
    pub failures: &'a [Failure],
}

/// The complete bounce message, LF line ends.
pub fn build(r: &Report<'_>) -> Vec<u8> {
    let boundary = format!("{}/{}", r.bounce_id, r.hostname);
    let mut m = String::new();
    m.push_str(&format!(
        "From: MAILER-DAEMON@{} (Mail Delivery System)\n",
        r.hostname
    ));
    m.push_str(&format!("To: <{}>\n", r.sender));
    m.push_str(match r.kind {
        Kind::Bounce => "Subject: Undelivered Mail Returned to Sender\n",
        Kind::Delay { .. } => "Subject: Delayed Mail (still being retried)\n",
        Kind::DoubleBounce => "Subject: Undeliverable delivery status notification\n",
    });
    m.push_str(&format!("Date: {}\n", timefmt::rfc5322(r.now)));
    m.push_str(&format!("Message-ID: <{}@{}>\n", r.bounce_id, r.hostname));
    m.push_str("Auto-Submitted: auto-replied\nMIME-Version: 1.0\n");
    m.push_str(&format!(
        "Content-Type: multipart/report; report-type=delivery-status;\n\tboundary=\"{boundary}\"\n\n"
    ));
    m.push_str("This is a MIME-encapsulated message.\n\n");
    m.push_str(&format!("--{boundary}\nContent-Description: Notification\nContent-Type: text/plain; charset=utf-8\n\n"));
    m.push_str(&format!(
        "This is the mail system at host {}.\n\n",
        r.hostname
    ));
    match r.kind {
        Kind::Bounce => {
            m.push_str("Your message could not be delivered to one or more recipients.\n");
            m.push_str("The reasons are given below.\n\n");
        }
        Kind::Delay { until } => {
            m.push_str("Your message could not be delivered yet to one or more recipients.\n");
            m.push_str(&format!(
                "It will be tried again until {}; you need not send it again.\n\n",
                timefmt::rfc5322(until)
            ));
        }
        Kind::DoubleBounce => {
            m.push_str("A delivery status notification (a bounce or delay notice) could\n");
            m.push_str("not be delivered to its recipient. It is not bounced again.\n\n");
        }
    }
    for f in r.failures {
        m.push_str(&format!("<{}>: {}\n", f.final_rcpt, one_line(&f.text)));
    }
    m.push_str(&format!(
        "\n--{boundary}\nContent-Description: Delivery report\nContent-Type: message/delivery-status\n\n"
    ));
    m.push_str(&format!("Reporting-MTA: dns; {}\n", r.hostname));
    m.push_str(&format!("X-Postern-Queue-ID: {}\n", r.queue_id));
    m.push_str(&format!("Arrival-Date: {}\n", timefmt::rfc5322(r.arrival)));
    for f in r.failures {
        let Esc(c, s, d) = f.esc;
        m.push_str(&format!("\nFinal-Recipient: rfc822; {}\n", f.final_rcpt));
        if f.orig_rcpt != f.final_rcpt {
            m.push_str(&format!("Original-Recipient: rfc822; {}\n", f.orig_rcpt));
        }
        let action = match r.kind {
            Kind::Delay { .. } => "delayed",
            _ => "failed",
        };
        m.push_str(&format!("Action: {action}\nStatus: {c}.{s}.{d}\n"));
        if let Kind::Delay { until } = r.kind {
            m.push_str(&format!("Will-Retry-Until: {}\n", timefmt::rfc5322(until)));
        }
        // RFC 3464 2.3.5-2.3.6: the remote MTA, and its reply verbatim.
        match &f.remote {
            Some(Remote {
                host,
                reply: Some(reply),
                ..
            }) => {
                m.push_str(&format!("Remote-MTA: dns; {host}\n"));
                m.push_str(&format!("Diagnostic-Code: smtp; {}\n", one_line(reply)));
            }
            Some(Remote {
                host, reply: None, ..
            }) => {
                m.push_str(&format!("Remote-MTA: dns; {host}\n"));
                m.push_str(&format!(
                    "Diagnostic-Code: X-Postern; {}\n",
                    one_line(&f.text)
                ));
            }
            None => m.push_str(&format!(
                "Diagnostic-Code: X-Postern; {}\n",
                one_line(&f.text)
            )),
        }
    }
    m.push_str(&format!(
        "\n--{boundary}\nContent-Description: Undelivered Message Headers\nContent-Type: text/rfc822-headers\n\n"
    ));
    let mut out = m.into_bytes();
    out.extend_from_slice(r.headers);
    if !r.headers.ends_with(b"\n") {
        out.push(b'\n');
    }
    out.extend_from_slice(format!("\n--{boundary}--\n").as_bytes());
    out
}

fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_as_multipart_report() {
        let body = build(&Report {
            kind: Kind::Bounce,
            hostname: "mx.example.test",
            queue_id: "Q1",
            bounce_id: "Q2",
            sender: "alice@example.test",
            arrival: 0,
            now: 60,
            headers: b"Subject: hello\nFrom: alice@example.test\n",
            failures: &[
                Failure {
                    final_rcpt: "x@example.test".into(),
                    orig_rcpt: "team@example.test".into(),
                    esc: Esc(5, 1, 1),
                    text: "user unknown".into(),
                    remote: None,
                },
                Failure {
                    final_rcpt: "y@remote.test".into(),
                    orig_rcpt: "y@remote.test".into(),
                    esc: Esc(5, 1, 1),
                    text: "host mx.remote.test[192.0.2.1] said: 550 5.1.1 no such user".into(),
                    remote: Some(Remote {
                        host: "mx.remote.test".into(),
                        addr: Some("192.0.2.1:25".parse().unwrap()),
                        reply: Some("550 5.1.1 <y@remote.test>: no such user".into()),
                        tls: None,
                    }),
                },
            ],
        });
        let parsed = mailparse::parse_mail(&body).unwrap();
        assert_eq!(parsed.ctype.mimetype, "multipart/report");
        assert_eq!(parsed.subparts.len(), 3);
        let status = parsed.subparts[1].get_body().unwrap();
        assert!(status.contains("Status: 5.1.1"), "{status}");
        assert!(status.contains("Original-Recipient: rfc822; team@example.test"));
        assert!(
            status.contains("Remote-MTA: dns; mx.remote.test\n"),
            "{status}"
        );
        assert!(
            status.contains("Diagnostic-Code: smtp; 550 5.1.1 <y@remote.test>: no such user\n"),
            "{status}"
        );
        assert!(parsed.subparts[2]
            .get_body()
            .unwrap()
            .contains("Subject: hello"));
    }
}

#[cfg(test)]
mod delay_tests {
    use super::*;

    #[test]
    fn delay_notice_says_delayed_and_until_when() {
        let body = build(&Report {
            kind: Kind::Delay { until: 86_400 },
            hostname: "mx.example.test",
            queue_id: "Q1",
            bounce_id: "Q2",
            sender: "alice@example.test",
            arrival: 0,
            now: 14_400,
            headers: b"Subject: hello\n",
            failures: &[Failure {
                final_rcpt: "x@remote.test".into(),
                orig_rcpt: "x@remote.test".into(),
                esc: Esc(4, 4, 1),
                text: "connect to mx.remote.test[192.0.2.1]:25: Connection refused".into(),
                remote: None,
            }],
        });
        let text = String::from_utf8(body).unwrap();
        assert!(text.contains("Subject: Delayed Mail"), "{text}");
        assert!(text.contains("Action: delayed\nStatus: 4.4.1\n"), "{text}");
        assert!(
            text.contains("Will-Retry-Until: Fri, 2 Jan 1970 00:00:00 +0000"),
            "{text}"
        );
    }
}
