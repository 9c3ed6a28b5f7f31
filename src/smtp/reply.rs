//! SMTP replies: a three-digit code (RFC 5321 4.2), an enhanced status code
//! (RFC 3463, announced by ENHANCEDSTATUSCODES, RFC 2034) and text.
//!
//! Every fixed reply postern sends is a named constant here, with the RFC
//! section it follows, so the wording lives in one place and tests can name
//! what they expect. Replies that carry an address or a number are built by
//! the small functions at the end.

use std::borrow::Cow;
use std::fmt::Write as _;

/// An enhanced status code `class.subject.detail` (RFC 3463 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Esc(pub u8, pub u16, pub u16);

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    /// `None` only for the greeting and the EHLO/HELO answers (RFC 2034 3).
    pub esc: Option<Esc>,
    /// One or more lines, separated by `\n`; rendered as a multi-line reply.
    pub text: Cow<'static, str>,
}

impl Reply {
    pub const fn fixed(code: u16, esc: Esc, text: &'static str) -> Reply {
        Reply {
            code,
            esc: Some(esc),
            text: Cow::Borrowed(text),
        }
    }

    pub fn new(code: u16, esc: Esc, text: impl Into<Cow<'static, str>>) -> Reply {
        Reply {
            code,
            esc: Some(esc),
            text: text.into(),
        }
    }

    pub fn plain(code: u16, text: impl Into<Cow<'static, str>>) -> Reply {
        Reply {
            code,
            esc: None,
            text: text.into(),
        }
    }

    pub fn is_positive(&self) -> bool {
        self.code < 400
    }

    pub fn is_transient(&self) -> bool {
        (400..500).contains(&self.code)
    }

    /// Appends the wire form (`250-a\r\n250 b\r\n`) to `out`.
    pub fn render_into(&self, out: &mut Vec<u8>) {
        let mut lines = self.text.split('\n').peekable();
        let mut buf = String::with_capacity(self.text.len() + 16);
        while let Some(line) = lines.next() {
            let sep = if lines.peek().is_some() { '-' } else { ' ' };
            buf.clear();
            let _ = write!(buf, "{}{}", self.code, sep);
            if let Some(Esc(c, s, d)) = self.esc {
                let _ = write!(buf, "{c}.{s}.{d} ");
            }
            buf.push_str(line);
            buf.push_str("\r\n");
            out.extend_from_slice(buf.as_bytes());
        }
    }

    pub fn to_wire(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.render_into(&mut v);
        v
    }

    /// The first line as a log would show it: `550 5.1.1 text`.
    pub fn summary(&self) -> String {
        let first = self.text.split('\n').next().unwrap_or("");
        match self.esc {
            Some(Esc(c, s, d)) => format!("{} {c}.{s}.{d} {first}", self.code),
            None => format!("{} {first}", self.code),
        }
    }
}

impl std::fmt::Display for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.summary())
    }
}

// --- 2xx -------------------------------------------------------------------
/// RFC 5321 4.2.2.
pub const OK: Reply = Reply::fixed(250, Esc(2, 0, 0), "Ok");
pub const SENDER_OK: Reply = Reply::fixed(250, Esc(2, 1, 0), "Ok");
pub const RCPT_OK: Reply = Reply::fixed(250, Esc(2, 1, 5), "Ok");
pub const RSET_OK: Reply = Reply::fixed(250, Esc(2, 0, 0), "Ok");
pub const NOOP_OK: Reply = Reply::fixed(250, Esc(2, 0, 0), "Ok");
pub const BYE: Reply = Reply::fixed(221, Esc(2, 0, 0), "Bye");
pub const HELP: Reply = Reply::fixed(
    214,
    Esc(2, 0, 0),
    "Commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT VRFY HELP\nSee RFC 5321",
);
/// RFC 5321 3.5.3: VRFY disabled, without saying whether the user exists.
pub const VRFY_DISABLED: Reply = Reply::fixed(
    252,
    Esc(2, 5, 2),
    "Cannot VRFY user, but will accept message and attempt delivery",
);
/// RFC 5321 4.2.1: intermediate reply to DATA.
pub const START_DATA: Reply = Reply {
    code: 354,
    esc: None,
    text: Cow::Borrowed("End data with <CR><LF>.<CR><LF>"),
};

// --- 4xx -------------------------------------------------------------------
/// RFC 5321 3.8 / 4.2.2: the server is going away (idle timeout).
pub const TIMEOUT: Reply = Reply::fixed(
    421,
    Esc(4, 4, 2),
    "Error: timeout exceeded, closing connection",
);
pub const TOO_MANY_ERRORS: Reply = Reply::fixed(
    421,
    Esc(4, 7, 0),
    "Error: too many errors, closing connection",
);
pub const TOO_MANY_CONNECTIONS: Reply = Reply::fixed(
    421,
    Esc(4, 7, 0),
    "Error: too many connections, try again later",
);
pub const TOO_MANY_CONNECTIONS_FROM_YOU: Reply = Reply::fixed(
    421,
    Esc(4, 7, 0),
    "Error: too many connections from your address, try again later",
);
pub const SHUTTING_DOWN: Reply =
    Reply::fixed(421, Esc(4, 3, 2), "Service shutting down, try again later");
/// RFC 5321 4.5.3.1.10 / RFC 3463 5.5.3.
pub const TOO_MANY_RECIPIENTS: Reply =
    Reply::fixed(452, Esc(4, 5, 3), "Error: too many recipients");
/// RFC 3463 4.3.1: the spool cannot take the message (disk full, unwritable).
pub const INSUFFICIENT_STORAGE: Reply = Reply::fixed(
    452,
    Esc(4, 3, 1),
    "Error: insufficient system storage, try again later",
);
/// A lookup could not be done now (database locked or unreadable).
pub const LOOKUP_TEMPFAIL: Reply = Reply::fixed(
    451,
    Esc(4, 3, 0),
    "Error: temporary lookup failure, try again later",
);
pub const LOCAL_ERROR: Reply = Reply::fixed(
    451,
    Esc(4, 3, 0),
    "Error: local error in processing, try again later",
);

// --- 5xx: syntax and sequence ---------------------------------------------
/// RFC 5321 4.2.4.
pub const UNKNOWN_COMMAND: Reply = Reply::fixed(500, Esc(5, 5, 2), "Error: command not recognized");
/// RFC 5321 4.5.3.1.4: a command line is at most 512 octets with CRLF.
pub const LINE_TOO_LONG: Reply = Reply::fixed(500, Esc(5, 5, 2), "Error: command line too long");
/// RFC 5321 2.3.8: only CRLF ends a line.
pub const BARE_LF_IN_COMMAND: Reply = Reply::fixed(
    500,
    Esc(5, 5, 2),
    "Error: bare <LF> received; lines must end with <CR><LF>",
);
pub const BARE_CR_IN_COMMAND: Reply = Reply::fixed(
    500,
    Esc(5, 5, 2),
    "Error: bare <CR> received; lines must end with <CR><LF>",
);
pub const NUL_IN_COMMAND: Reply =
    Reply::fixed(500, Esc(5, 5, 2), "Error: NUL character in command");
pub const SYNTAX_HELO: Reply = Reply::fixed(501, Esc(5, 5, 4), "Syntax: HELO hostname");
pub const SYNTAX_EHLO: Reply = Reply::fixed(501, Esc(5, 5, 4), "Syntax: EHLO hostname");
pub const SYNTAX_MAIL: Reply = Reply::fixed(501, Esc(5, 5, 4), "Syntax: MAIL FROM:<address>");
pub const SYNTAX_RCPT: Reply = Reply::fixed(501, Esc(5, 5, 4), "Syntax: RCPT TO:<address>");
pub const SYNTAX_NO_ARGS: Reply = Reply::fixed(
    501,
    Esc(5, 5, 4),
    "Syntax error: this command takes no arguments",
);
pub const SYNTAX_VRFY: Reply = Reply::fixed(501, Esc(5, 5, 4), "Syntax: VRFY address");
pub const NOT_IMPLEMENTED_EXPN: Reply =
    Reply::fixed(502, Esc(5, 5, 1), "Error: EXPN is not supported");
pub const NEED_HELO: Reply = Reply::fixed(503, Esc(5, 5, 1), "Error: send HELO/EHLO first");
pub const XFORWARD_DENIED: Reply =
    Reply::fixed(550, Esc(5, 7, 0), "Error: insufficient authorization");
pub const XFORWARD_IN_MAIL: Reply =
    Reply::fixed(503, Esc(5, 5, 1), "Error: MAIL transaction in progress");
pub const XFORWARD_BAD: Reply =
    Reply::fixed(501, Esc(5, 5, 4), "Syntax: XFORWARD attribute=value...");
pub const XFORWARD_OK: Reply = Reply::fixed(250, Esc(2, 0, 0), "Ok");
pub const NESTED_MAIL: Reply = Reply::fixed(503, Esc(5, 5, 1), "Error: nested MAIL command");
pub const NEED_MAIL: Reply = Reply::fixed(503, Esc(5, 5, 1), "Error: need MAIL command");
pub const NEED_RCPT: Reply = Reply::fixed(503, Esc(5, 5, 1), "Error: need RCPT command");
/// RFC 1870 / RFC 6152 / RFC 6531 parameter problems.
pub const UNKNOWN_PARAMETER: Reply =
    Reply::fixed(555, Esc(5, 5, 4), "Error: unsupported MAIL/RCPT parameter");
pub const BAD_PARAMETER_SYNTAX: Reply =
    Reply::fixed(501, Esc(5, 5, 4), "Error: bad parameter syntax");
pub const BAD_SIZE_PARAMETER: Reply = Reply::fixed(501, Esc(5, 5, 4), "Error: bad SIZE= value");
pub const BAD_BODY_PARAMETER: Reply =
    Reply::fixed(501, Esc(5, 5, 4), "Error: BODY= must be 7BIT or 8BITMIME");

/// A path that names no mailbox: a syntax error in the arguments (501,
/// RFC 5321 4.2.1), not a mailbox refused (553). RFC 5321 4.1.2: `Path =
/// "<" [ A-d-l ":" ] Mailbox ">"`, so `<@a.test:>` is no path; the null
/// path `<>` is a Reverse-path only (4.1.1.2, 4.5.5), never a
/// Forward-path (4.1.1.3). RFC 3463: X.1.7 / X.1.3 bad sender's /
/// destination mailbox address syntax. (A missing path, `MAIL FROM:`
/// alone, gets SYNTAX_MAIL / SYNTAX_RCPT: 501 5.5.4.)
pub const SENDER_PATH_EMPTY: Reply =
    Reply::fixed(501, Esc(5, 1, 7), "Error: the sender path names no mailbox");
pub const RECIPIENT_PATH_EMPTY: Reply = Reply::fixed(
    501,
    Esc(5, 1, 3),
    "Error: the recipient path names no mailbox",
);

// --- 5xx: addresses and policy --------------------------------------------
/// RFC 5321 4.2.2: 553 "mailbox name not allowed (e.g., mailbox syntax
/// incorrect)": the path holds a mailbox, and it is malformed.
pub const BAD_SENDER_SYNTAX: Reply =
    Reply::fixed(553, Esc(5, 1, 7), "Error: bad sender address syntax");
pub const BAD_RECIPIENT_SYNTAX: Reply =
    Reply::fixed(553, Esc(5, 1, 3), "Error: bad recipient address syntax");
/// RFC 6531 3.4.
pub const NEED_SMTPUTF8: Reply = Reply::fixed(
    553,
    Esc(5, 6, 7),
    "Error: non-ASCII address requires the SMTPUTF8 parameter",
);
/// RFC 1870 6: the declared size is over our limit.
pub const SIZE_EXCEEDED: Reply = Reply::fixed(
    552,
    Esc(5, 3, 4),
    "Error: message size exceeds fixed maximum message size",
);

// --- DATA content ----------------------------------------------------------
pub const BARE_LF_IN_DATA: Reply = Reply::fixed(
    554,
    Esc(5, 5, 2),
    "Error: bare <LF> in message; lines must end with <CR><LF> (RFC 5321 2.3.8)",
);
pub const BARE_CR_IN_DATA: Reply = Reply::fixed(
    554,
    Esc(5, 5, 2),
    "Error: bare <CR> in message; lines must end with <CR><LF> (RFC 5321 2.3.8)",
);
/// RFC 5321 4.5.3.1.6 / 4.5.3.1.10: "500 Line too long".
pub const TEXT_LINE_TOO_LONG: Reply = Reply::fixed(
    500,
    Esc(5, 5, 2),
    "Error: message has a text line longer than the limit",
);

// --- STARTTLS (RFC 3207) and AUTH (RFC 4954) --------------------------------
pub const READY_FOR_TLS: Reply = Reply::fixed(220, Esc(2, 0, 0), "Ready to start TLS");
pub const TLS_ALREADY_ACTIVE: Reply = Reply::fixed(554, Esc(5, 5, 1), "Error: TLS already active");
pub const TLS_NOT_AVAILABLE: Reply =
    Reply::fixed(502, Esc(5, 5, 1), "Error: command not implemented");
pub const SYNTAX_STARTTLS: Reply = Reply::fixed(501, Esc(5, 5, 4), "Syntax: STARTTLS");
pub const SYNTAX_AUTH: Reply = Reply::fixed(
    501,
    Esc(5, 5, 4),
    "Syntax: AUTH mechanism [initial-response]",
);
pub const AUTH_OK: Reply = Reply::fixed(235, Esc(2, 7, 0), "Authentication successful");
pub const AUTH_NOT_ENABLED: Reply =
    Reply::fixed(503, Esc(5, 5, 1), "Error: authentication not enabled");
/// RFC 4954 4: AUTH before TLS when only TLS allows it.
pub const AUTH_NEEDS_TLS: Reply = Reply::fixed(
    538,
    Esc(5, 7, 11),
    "Encryption required for requested authentication mechanism",
);
pub const AUTH_ALREADY: Reply = Reply::fixed(503, Esc(5, 5, 1), "Error: already authenticated");
pub const AUTH_IN_TRANSACTION: Reply = Reply::fixed(
    503,
    Esc(5, 5, 1),
    "Error: AUTH is not allowed during a mail transaction",
);
pub const AUTH_UNKNOWN_MECHANISM: Reply = Reply::fixed(
    504,
    Esc(5, 5, 4),
    "Error: unsupported authentication mechanism",
);
pub const AUTH_ABORTED: Reply = Reply::fixed(501, Esc(5, 0, 0), "Authentication aborted");
pub const AUTH_BAD_BASE64: Reply = Reply::fixed(501, Esc(5, 5, 2), "Error: cannot decode response");
pub const AUTH_MALFORMED: Reply = Reply::fixed(
    501,
    Esc(5, 5, 2),
    "Error: malformed authentication response",
);
/// RFC 4954 6: wrong credentials.
pub const AUTH_INVALID: Reply = Reply::fixed(535, Esc(5, 7, 8), "Error: authentication failed");
pub const AUTH_TEMPFAIL: Reply =
    Reply::fixed(454, Esc(4, 7, 0), "Temporary authentication failure");
pub const AUTH_THROTTLED: Reply = Reply::fixed(
    454,
    Esc(4, 7, 0),
    "Too many failed logins from your address, try again later",
);
pub const AUTH_TOO_MANY_FAILURES: Reply = Reply::fixed(
    421,
    Esc(4, 7, 0),
    "Too many failed authentication attempts, closing connection",
);
/// RFC 4954 6: this listener needs a login before MAIL.
pub const AUTH_REQUIRED: Reply = Reply::fixed(530, Esc(5, 7, 0), "Authentication required");

// --- builders ---------------------------------------------------------------
pub fn greeting(hostname: &str) -> Reply {
    // No software name or version (the seed's `smtpd_banner`, `mail_name`).
    Reply::plain(220, format!("{hostname} ESMTP"))
}

pub fn queued(id: &str) -> Reply {
    Reply::new(250, Esc(2, 0, 0), format!("Ok: queued as {id}"))
}

/// RFC 5321 3.6.2 / Postfix's reject_unauth_destination wording.
pub fn relay_denied(rcpt: &str) -> Reply {
    Reply::new(554, Esc(5, 7, 1), format!("<{rcpt}>: Relay access denied"))
}

/// A reinjection listener, from outside its trusted networks
/// (`smtpd_recipient_restrictions = permit_mynetworks, reject`).
pub fn reinject_denied(rcpt: &str) -> Reply {
    Reply::new(
        554,
        Esc(5, 7, 1),
        format!("<{rcpt}>: Recipient address rejected: Access denied"),
    )
}

/// A single local mailbox over its quota, known at RCPT time.
pub fn mailbox_full(rcpt: &str, bounce: bool) -> Reply {
    let text = format!("<{rcpt}>: Recipient address rejected: mailbox is full");
    if bounce {
        Reply::new(552, Esc(5, 2, 2), text)
    } else {
        Reply::new(452, Esc(4, 2, 2), text)
    }
}

/// The seed's `unknown_local_recipient_reject_code = 550`.
pub fn unknown_user(rcpt: &str) -> Reply {
    Reply::new(
        550,
        Esc(5, 1, 1),
        format!("<{rcpt}>: Recipient address rejected: User unknown"),
    )
}

pub fn alias_loop(rcpt: &str) -> Reply {
    Reply::new(
        550,
        Esc(5, 4, 6),
        format!("<{rcpt}>: Recipient address rejected: alias expansion loop"),
    )
}

pub fn domain_inactive(rcpt: &str) -> Reply {
    Reply::new(
        550,
        Esc(5, 1, 2),
        format!("<{rcpt}>: Recipient address rejected: domain not served here"),
    )
}

pub fn need_fqdn_rcpt(rcpt: &str) -> Reply {
    Reply::new(
        550,
        Esc(5, 1, 3),
        format!("<{rcpt}>: Recipient address rejected: need fully-qualified address"),
    )
}

pub fn size_limit(limit: u64) -> Reply {
    Reply::new(
        552,
        Esc(5, 3, 4),
        format!("Error: message size exceeds fixed limit of {limit} bytes"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_line_with_esc() {
        assert_eq!(OK.to_wire(), b"250 2.0.0 Ok\r\n");
    }

    #[test]
    fn multi_line_marks_continuation() {
        let r = Reply::plain(250, "a\nb\nc");
        assert_eq!(r.to_wire(), b"250-a\r\n250-b\r\n250 c\r\n");
        assert_eq!(HELP.to_wire(), b"214-2.0.0 Commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT VRFY HELP\r\n214 2.0.0 See RFC 5321\r\n");
    }

    #[test]
    fn greeting_has_no_software_name() {
        assert_eq!(
            greeting("mx.example.test").to_wire(),
            b"220 mx.example.test ESMTP\r\n"
        );
    }
}
