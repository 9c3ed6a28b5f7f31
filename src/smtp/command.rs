//! SMTP command lines (RFC 5321 4.1.1), parsed from one line without its
//! CRLF. Pure: the caller has already split lines and rejected bare CR/LF.
//! Verbs are case-insensitive; arguments are kept as text for the session,
//! which knows whether SMTPUTF8 applies and parses paths itself.

#[derive(Debug, PartialEq, Eq)]
pub enum Command<'a> {
    Helo(&'a str),
    Ehlo(&'a str),
    /// Text after `MAIL FROM:`.
    Mail(&'a str),
    /// Text after `RCPT TO:`.
    Rcpt(&'a str),
    Data,
    Rset,
    Noop,
    Quit,
    Vrfy(&'a str),
    Expn(&'a str),
    Help,
    StartTls,
    /// Text after `AUTH `: mechanism and optional initial response.
    Auth(&'a str),
    /// Postfix XFORWARD: `attr=value` pairs.
    Xforward(&'a str),
    /// A known verb with arguments it must not have, or a verb missing its
    /// required `FROM:`/`TO:`; carries the verb for the reply.
    BadSyntax(Verb),
    Unknown,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verb {
    Helo,
    Ehlo,
    Mail,
    Rcpt,
    Data,
    Rset,
    Noop,
    Quit,
    Vrfy,
    StartTls,
    Auth,
    Xforward,
}

pub fn parse(line: &str) -> Command<'_> {
    let (verb, rest) = match line.find(' ') {
        Some(i) => (&line[..i], &line[i + 1..]),
        None => (line, ""),
    };
    if verb.len() > 8 {
        return Command::Unknown;
    }
    let upper = verb.to_ascii_uppercase();
    let arg = rest.trim_matches(' ');
    match upper.as_str() {
        "HELO" if !arg.is_empty() => Command::Helo(arg),
        "HELO" => Command::BadSyntax(Verb::Helo),
        "EHLO" if !arg.is_empty() => Command::Ehlo(arg),
        "EHLO" => Command::BadSyntax(Verb::Ehlo),
        "MAIL" => match strip_prefix_ci(rest, "FROM:") {
            Some(a) => Command::Mail(a),
            None => Command::BadSyntax(Verb::Mail),
        },
        "RCPT" => match strip_prefix_ci(rest, "TO:") {
            Some(a) => Command::Rcpt(a),
            None => Command::BadSyntax(Verb::Rcpt),
        },
        "DATA" if arg.is_empty() => Command::Data,
        "DATA" => Command::BadSyntax(Verb::Data),
        "RSET" if arg.is_empty() => Command::Rset,
        "RSET" => Command::BadSyntax(Verb::Rset),
        // RFC 5321 4.1.1.9: NOOP may carry a string, which is ignored.
        "NOOP" => Command::Noop,
        "QUIT" if arg.is_empty() => Command::Quit,
        "QUIT" => Command::BadSyntax(Verb::Quit),
        "VRFY" if !arg.is_empty() => Command::Vrfy(arg),
        "VRFY" => Command::BadSyntax(Verb::Vrfy),
        "EXPN" => Command::Expn(arg),
        "HELP" => Command::Help,
        "STARTTLS" if arg.is_empty() => Command::StartTls,
        "STARTTLS" => Command::BadSyntax(Verb::StartTls),
        "AUTH" if !arg.is_empty() => Command::Auth(arg),
        "AUTH" => Command::BadSyntax(Verb::Auth),
        "XFORWARD" if !arg.is_empty() => Command::Xforward(arg),
        "XFORWARD" => Command::BadSyntax(Verb::Xforward),
        _ => Command::Unknown,
    }
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let s = s.trim_start_matches(' ');
    if s.len() >= prefix.len()
        && s.is_char_boundary(prefix.len())
        && s[..prefix.len()].eq_ignore_ascii_case(prefix)
    {
        Some(&s[prefix.len()..])
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbs_are_case_insensitive() {
        assert_eq!(parse("ehlo client.test"), Command::Ehlo("client.test"));
        assert_eq!(
            parse("Mail From:<a@b.test> SIZE=5"),
            Command::Mail("<a@b.test> SIZE=5")
        );
        assert_eq!(parse("rcpt to: <a@b.test>"), Command::Rcpt(" <a@b.test>"));
        assert_eq!(parse("QUIT"), Command::Quit);
        assert_eq!(parse("noop anything"), Command::Noop);
    }

    #[test]
    fn syntax_errors() {
        assert_eq!(parse("HELO"), Command::BadSyntax(Verb::Helo));
        assert_eq!(parse("MAIL <a@b>"), Command::BadSyntax(Verb::Mail));
        assert_eq!(parse("DATA x"), Command::BadSyntax(Verb::Data));
        assert_eq!(parse("RCPT TO"), Command::BadSyntax(Verb::Rcpt));
        assert_eq!(parse("XYZZY"), Command::Unknown);
        assert_eq!(parse(""), Command::Unknown);
        assert_eq!(parse("MAILFROM:<a@b>"), Command::Unknown);
    }

    #[test]
    fn non_ascii_does_not_panic() {
        assert_eq!(parse("MAIL FRÖM:<a@b>"), Command::BadSyntax(Verb::Mail));
        assert_eq!(parse("ÄÖÜ"), Command::Unknown);
    }
}
