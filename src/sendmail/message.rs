//! The message sendmail reads on standard input, made ready to submit:
//! LF line ends, the lone-dot rule, recipients from the headers (`-t`),
//! the headers Postfix's cleanup drops from every message (Bcc:,
//! Resent-Bcc:, Return-Path:, Content-Length:), a From: with the `-F`
//! name, lines longer than SMTP allows split. Pure.

use std::io::{self, Read};

/// SMTP's limit on a line, without its CRLF (RFC 5321 4.5.3.1.6).
pub const MAX_LINE: usize = 998;

/// Reads the message: CRLF, and a CR alone (old Mac text, binary junk:
/// SMTP has no way to carry it, and the server refuses it), end a line
/// as LF does; a line holding only "." ends the message unless
/// `ignore_dots` (`-i`). A first line "From sender date", the postmark
/// of a message taken out of an mbox file, is no header: it is left out,
/// as Postfix's sendmail does, or the real header would become body.
/// `Err` with `InvalidData` past `limit` bytes.
pub fn read(mut input: impl Read, ignore_dots: bool, limit: u64) -> io::Result<Vec<u8>> {
    let mut raw = Vec::new();
    (&mut input)
        .take(limit.saturating_add(1))
        .read_to_end(&mut raw)?;
    if raw.len() as u64 > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("the message is larger than {limit} bytes"),
        ));
    }
    let mut out = Vec::with_capacity(raw.len() + 1);
    let mut rest = &raw[..];
    while !rest.is_empty() {
        let end = rest
            .iter()
            .position(|&c| c == b'\n' || c == b'\r')
            .unwrap_or(rest.len());
        let body = &rest[..end];
        let eol = match rest.get(end..end + 2) {
            Some(b"\r\n") => 2,
            _ if end < rest.len() => 1,
            _ => 0,
        };
        if !ignore_dots && body == b"." {
            break;
        }
        let postmark = rest.len() == raw.len() && body.starts_with(b"From ");
        if !postmark {
            out.extend_from_slice(body);
            out.push(b'\n');
        }
        rest = &rest[end + eol..];
    }
    Ok(out)
}

/// Where the header section ends (the index after its blank line, or of
/// the first line that is no header); 0 when the message has none.
pub fn header_end(msg: &[u8]) -> usize {
    let mut pos = 0;
    let mut first = true;
    for line in msg.split_inclusive(|&c| c == b'\n') {
        let bare = line.strip_suffix(b"\n").unwrap_or(line);
        if bare.is_empty() {
            return pos + line.len();
        }
        let continues = matches!(bare[0], b' ' | b'\t');
        if (continues && first) || (!continues && !is_field(bare)) {
            return pos;
        }
        first = false;
        pos += line.len();
    }
    pos
}

fn is_field(line: &[u8]) -> bool {
    let n = line
        .iter()
        .take_while(|&&c| (33..=126).contains(&c) && c != b':')
        .count();
    n > 0 && line[n..].iter().find(|&&c| c != b' ' && c != b'\t') == Some(&b':')
}

/// The header fields (name, value with folds joined) of the section.
fn fields(msg: &[u8]) -> Vec<(String, String)> {
    let head = &msg[..header_end(msg)];
    let mut out: Vec<(String, String)> = Vec::new();
    for line in head.split(|&c| c == b'\n').filter(|l| !l.is_empty()) {
        let text = String::from_utf8_lossy(line);
        if line[0] == b' ' || line[0] == b'\t' {
            if let Some(last) = out.last_mut() {
                last.1.push(' ');
                last.1.push_str(text.trim());
            }
        } else if let Some((k, v)) = text.split_once(':') {
            out.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    out
}

/// `-t`: the addresses of To:, Cc: and Bcc: — or of Resent-To:,
/// Resent-Cc: and Resent-Bcc: when there are any (as Postfix does).
pub fn recipients_from_headers(msg: &[u8]) -> Vec<String> {
    let f = fields(msg);
    let resent = f.iter().any(|(k, _)| {
        k.starts_with("resent-to") || k.starts_with("resent-cc") || k.starts_with("resent-bcc")
    });
    let wanted: &[&str] = if resent {
        &["resent-to", "resent-cc", "resent-bcc"]
    } else {
        &["to", "cc", "bcc"]
    };
    let mut out: Vec<String> = Vec::new();
    for (k, v) in &f {
        if !wanted.contains(&k.as_str()) {
            continue;
        }
        let Ok(list) = mailparse::addrparse(v) else {
            // Not RFC 5322 (a bare local name, as cron's "To: root"):
            // each comma-separated item, its <address> if it has one.
            out.extend(v.split(',').map(|s| {
                let s = s.trim();
                match (s.rfind('<'), s.rfind('>')) {
                    (Some(a), Some(b)) if a < b => s[a + 1..b].trim().to_string(),
                    _ => s.to_string(),
                }
            }));
            continue;
        };
        for a in list.iter() {
            match a {
                mailparse::MailAddr::Single(s) => out.push(s.addr.clone()),
                mailparse::MailAddr::Group(g) => out.extend(g.addrs.iter().map(|s| s.addr.clone())),
            }
        }
    }
    out.retain(|a| !a.is_empty());
    out.dedup();
    out
}

/// Does the header section have this field?
pub fn has_field(msg: &[u8], name: &str) -> bool {
    fields(msg)
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case(name))
}

/// Removes the fields Postfix's cleanup drops (message_drop_headers):
/// Bcc:, Resent-Bcc:, Return-Path: and Content-Length:, folds included.
pub fn drop_fields(msg: &[u8]) -> Vec<u8> {
    const DROP: &[&str] = &["bcc", "resent-bcc", "return-path", "content-length"];
    let end = header_end(msg);
    let mut out = Vec::with_capacity(msg.len());
    let mut dropping = false;
    for line in msg[..end].split_inclusive(|&c| c == b'\n') {
        if line[0] == b' ' || line[0] == b'\t' {
            if !dropping {
                out.extend_from_slice(line);
            }
            continue;
        }
        let name = line.iter().position(|&c| c == b':').map(|i| {
            String::from_utf8_lossy(&line[..i])
                .trim()
                .to_ascii_lowercase()
        });
        dropping = name.is_some_and(|n| DROP.contains(&n.as_str()));
        if !dropping {
            out.extend_from_slice(line);
        }
    }
    out.extend_from_slice(&msg[end..]);
    out
}

/// `-F name`: a From: header with the full name, when the message has
/// none (postern adds a plain one otherwise).
pub fn add_from(msg: Vec<u8>, sender: &str, full_name: &str) -> Vec<u8> {
    if has_field(&msg, "from") {
        return msg;
    }
    let name: String = full_name.chars().filter(|c| !c.is_control()).collect();
    let quoted = if name.chars().all(|c| c.is_alphanumeric() || c == ' ') {
        name
    } else {
        format!("\"{}\"", name.replace('\\', "\\\\").replace('"', "\\\""))
    };
    let mut out = format!("From: {quoted} <{sender}>\n").into_bytes();
    if header_end(&msg) == 0 {
        // No header section: this one starts it, a blank line ends it.
        out.push(b'\n');
    }
    out.extend_from_slice(&msg);
    out
}

/// Lines longer than SMTP allows are split into lines of [`MAX_LINE`]
/// bytes (Postfix's sendmail breaks them too), never inside a UTF-8
/// character.
pub fn split_long_lines(msg: &[u8]) -> Vec<u8> {
    if msg.split(|&c| c == b'\n').all(|l| l.len() <= MAX_LINE) {
        return msg.to_vec();
    }
    let mut out = Vec::with_capacity(msg.len() + msg.len() / MAX_LINE + 1);
    for line in msg.split_inclusive(|&c| c == b'\n') {
        let (mut body, nl) = match line.strip_suffix(b"\n") {
            Some(b) => (b, true),
            None => (line, false),
        };
        while body.len() > MAX_LINE {
            let mut cut = MAX_LINE;
            while cut > MAX_LINE - 4 && (body[cut] & 0xC0) == 0x80 {
                cut -= 1;
            }
            out.extend_from_slice(&body[..cut]);
            out.push(b'\n');
            body = &body[cut..];
        }
        out.extend_from_slice(body);
        if nl {
            out.push(b'\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_ends_and_the_lone_dot() {
        let m = read(&b"Subject: x\r\n\r\nline\r\n.\r\nafter\n"[..], false, 1000).unwrap();
        assert_eq!(m, b"Subject: x\n\nline\n");
        let m = read(&b"Subject: x\n\nline\n.\nafter"[..], true, 1000).unwrap();
        assert_eq!(m, b"Subject: x\n\nline\n.\nafter\n");
        assert!(read(&[b'x'; 20][..], false, 10).is_err());
        // A CR alone ends a line too; CRLF is one line end, LF CR two.
        let m = read(&b"a\rb\r\nc\n\rd\r.\rnot read"[..], false, 1000).unwrap();
        assert_eq!(m, b"a\nb\nc\n\nd\n");
        // An mbox postmark goes; a later "From " line is body.
        let m = read(
            &b"From alice@example.test Tue Dec  1 10:00:00 2026\nSubject: s\n\nFrom here on\n"[..],
            false,
            1000,
        )
        .unwrap();
        assert_eq!(m, b"Subject: s\n\nFrom here on\n");
    }

    #[test]
    fn recipients_from_to_cc_bcc_or_resent() {
        let m = b"To: A <a@example.test>, b@example.test\nCc: c@example.test,\n d@example.test\nBcc: e@example.test\nSubject: s\n\nTo: not@example.test\n";
        assert_eq!(
            recipients_from_headers(m),
            [
                "a@example.test",
                "b@example.test",
                "c@example.test",
                "d@example.test",
                "e@example.test"
            ]
        );
        let m = b"To: a@example.test\nResent-To: r@example.test\n\nx\n";
        assert_eq!(recipients_from_headers(m), ["r@example.test"]);
        let m = b"To: root, Bob <bob@remote.test>\n\n";
        assert_eq!(recipients_from_headers(m), ["root", "bob@remote.test"]);
        let m = b"To: team: x@example.test, y@example.test;\n\n";
        assert_eq!(
            recipients_from_headers(m),
            ["x@example.test", "y@example.test"]
        );
        assert!(recipients_from_headers(b"no headers here\n").is_empty());
    }

    #[test]
    fn bcc_and_friends_are_dropped_with_their_folds() {
        let m = b"To: a@example.test\nBcc: secret@example.test,\n other@example.test\nReturn-Path: <x@y>\nSubject: s\n\nBcc: in the body stays\n";
        assert_eq!(
            drop_fields(m),
            b"To: a@example.test\nSubject: s\n\nBcc: in the body stays\n"
        );
    }

    #[test]
    fn from_with_the_full_name() {
        let m = add_from(
            b"Subject: s\n\nx\n".to_vec(),
            "cron@example.test",
            "Cron Daemon",
        );
        assert_eq!(
            m,
            b"From: Cron Daemon <cron@example.test>\nSubject: s\n\nx\n"
        );
        let m = add_from(b"just a body\n".to_vec(), "me@example.test", "Me, Myself");
        assert_eq!(
            m,
            b"From: \"Me, Myself\" <me@example.test>\n\njust a body\n"
        );
        let m = add_from(b"From: x@y\n\nb\n".to_vec(), "me@example.test", "Me");
        assert_eq!(m, b"From: x@y\n\nb\n");
    }

    #[test]
    fn long_lines_are_split() {
        let mut m = b"Subject: s\n\n".to_vec();
        m.extend(std::iter::repeat_n(b'a', 2500));
        m.push(b'\n');
        let out = split_long_lines(&m);
        let lines: Vec<usize> = out.split(|&c| c == b'\n').map(|l| l.len()).collect();
        assert_eq!(lines, [10, 0, 998, 998, 504, 0]);
        // A UTF-8 character is never cut.
        let mut u = vec![b'a'; 997];
        u.extend("é".as_bytes());
        u.extend(b"bc\n");
        let out = split_long_lines(&u);
        assert!(std::str::from_utf8(&out).is_ok());
    }

    #[test]
    fn header_sections() {
        assert_eq!(header_end(b"A: 1\n b\nB: 2\n\nbody\n"), 14);
        assert_eq!(header_end(b"body first\nA: 1\n"), 0);
        assert_eq!(header_end(b"A: 1\nnot a header\n"), 5);
    }
}
