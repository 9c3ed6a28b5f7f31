//! Bare names in the address headers of mail submitted on this host
//! (`To: root`, `From: Cron Daemon <root>`) get `@origin`, as Postfix's
//! cleanup does for local submissions (append_at_myorigin,
//! local_header_rewrite_clients): the envelope was completed the same way,
//! and a receiver should not see an address without a domain.

/// Header fields that hold addresses (lower case).
pub const ADDRESS_FIELDS: &[&str] = &[
    "from",
    "sender",
    "reply-to",
    "to",
    "cc",
    "bcc",
    "resent-from",
    "resent-sender",
    "resent-to",
    "resent-cc",
    "resent-bcc",
];

/// One address of a list: where it is in the value, and where a domain
/// would go (None: it has one, or it is not a plain address).
fn insertion_point(v: &[u8], start: usize, end: usize) -> Option<usize> {
    let mut i = start;
    let (mut angle_open, mut angle_close) = (None, None);
    let mut word: Option<(usize, usize)> = None;
    let mut words = 0;
    let mut at = false;
    while i < end {
        match v[i] {
            b'"' => {
                let s = i;
                i += 1;
                while i < end && v[i] != b'"' {
                    if v[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
                i = (i + 1).min(end);
                if angle_open.is_none() {
                    words += 1;
                    word = Some((s, i));
                }
                continue;
            }
            b'(' => {
                let mut depth = 0usize;
                while i < end {
                    match v[i] {
                        b'\\' => i += 1,
                        b'(' => depth += 1,
                        b')' => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                    i += 1;
                }
            }
            b'<' if angle_open.is_none() => angle_open = Some(i),
            b'>' if angle_open.is_some() && angle_close.is_none() => angle_close = Some(i),
            b'@' => at = true,
            // A group ("undisclosed-recipients:;") is left as it is.
            b':' | b';' => return None,
            c if c.is_ascii_whitespace() => {}
            _ if angle_open.is_none() => {
                let s = i;
                while i < end
                    && !matches!(
                        v[i],
                        b' ' | b'\t' | b'\r' | b'\n' | b'(' | b'<' | b'"' | b','
                    )
                {
                    match v[i] {
                        b'@' => at = true,
                        b':' | b';' => return None,
                        _ => {}
                    }
                    i += 1;
                }
                words += 1;
                word = Some((s, i));
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    if at {
        return None;
    }
    match (angle_open, angle_close) {
        (Some(o), Some(c)) if c > o + 1 => Some(c),
        (Some(_), _) => None,
        // A bare addr-spec is one word; more is a display name without
        // an address, which is not ours to fix.
        (None, _) if words == 1 => word.map(|(_, e)| e),
        _ => None,
    }
}

/// The header field (`name: value`, folded lines and LF line end
/// included) with `@origin` added to each bare name; None when nothing
/// changes.
pub fn qualify_field(field: &[u8], origin: &str) -> Option<Vec<u8>> {
    let colon = field.iter().position(|&c| c == b':')?;
    let v = field;
    let mut points = Vec::new();
    let (mut start, mut i) = (colon + 1, colon + 1);
    let (mut quoted, mut depth, mut angle) = (false, 0usize, false);
    while i <= v.len() {
        let c = v.get(i).copied();
        match c {
            Some(b'\\') if quoted || depth > 0 => i += 1,
            Some(b'"') if depth == 0 => quoted = !quoted,
            Some(b'(') if !quoted => depth += 1,
            Some(b')') if !quoted && depth > 0 => depth -= 1,
            Some(b'<') if !quoted && depth == 0 => angle = true,
            Some(b'>') if !quoted && depth == 0 => angle = false,
            Some(b',') if !quoted && depth == 0 && !angle => {
                points.extend(insertion_point(v, start, i));
                start = i + 1;
            }
            None => points.extend(insertion_point(v, start, i)),
            _ => {}
        }
        i += 1;
    }
    if points.is_empty() {
        return None;
    }
    let mut out = Vec::with_capacity(field.len() + points.len() * (origin.len() + 1));
    let mut last = 0;
    for p in points {
        out.extend_from_slice(&v[last..p]);
        out.push(b'@');
        out.extend_from_slice(origin.as_bytes());
        last = p;
    }
    out.extend_from_slice(&v[last..]);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> String {
        match qualify_field(s.as_bytes(), "host.example.test") {
            Some(v) => String::from_utf8(v).unwrap(),
            None => s.to_string(),
        }
    }

    #[test]
    fn bare_names_get_the_origin() {
        assert_eq!(q("To: root\n"), "To: root@host.example.test\n");
        assert_eq!(
            q("From: Anacron <root>\n"),
            "From: Anacron <root@host.example.test>\n"
        );
        assert_eq!(
            q("Cc: root (Cron Daemon)\n"),
            "Cc: root@host.example.test (Cron Daemon)\n"
        );
        assert_eq!(
            q("To: alice, bob@example.test,\n \"Carol, C.\" <carol>\n"),
            "To: alice@host.example.test, bob@example.test,\n \"Carol, C.\" <carol@host.example.test>\n"
        );
        assert_eq!(
            q("To: \"odd name\"\n"),
            "To: \"odd name\"@host.example.test\n"
        );
    }

    #[test]
    fn full_addresses_groups_and_junk_are_left_alone() {
        for s in [
            "To: bob@example.test\n",
            "From: Bob <bob@example.test>\n",
            "To: undisclosed-recipients:;\n",
            "To: Team: a@b.test, c@d.test;\n",
            "To: <>\n",
            "To: just some words\n",
            "To:\n",
            "From: \"Quoted, with comma\" <x@y.test>\n",
            "To: (only a comment)\n",
        ] {
            assert_eq!(q(s), s, "{s:?}");
        }
    }
}
