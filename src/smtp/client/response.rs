//! Reading the server's replies on the client side (RFC 5321 4.2), pure.
//!
//! Owns the receive buffer of the client: bytes go in with
//! [`ResponseReader::feed`], whole replies come out of
//! [`ResponseReader::next`]. It must not interpret a reply (that is the
//! client state machine's job); it only checks that each line is a reply
//! line and keeps the text for diagnostics.
//!
//! Rules:
//! - `ddd-text` continues a reply; `ddd text` or a bare `ddd` ends it
//!   (RFC 5321 4.2.1). Anything else (fewer than three digits, a first
//!   digit outside 2-5, another character after the code) is a protocol
//!   error: the connection cannot be trusted to stay in step.
//! - A line ends at LF; a CR before it is dropped. Servers that end reply
//!   lines with a bare LF are tolerated, as Postfix and Exim do.
//! - If the lines of one reply disagree on the code, the last line's code
//!   counts (what Postfix's smtp_chat does).
//! - One reply is capped at [`MAX_REPLY_LINES`] lines and
//!   [`MAX_REPLY_BYTES`] bytes: a server that sends more (a 10,000-line
//!   reply, or one endless line) is answered with an error, not with memory.
//! - The enhanced status code (RFC 3463 2) is taken from the first line when
//!   its class matches the reply code's first digit (RFC 2034 4).
//! - Text is kept lossily decoded, with control characters replaced by `?`,
//!   so it can go into a log line or a DSN's Diagnostic-Code as is.

use std::fmt;

use crate::smtp::reply::Esc;

/// Lines in one reply. Postfix reads at most `line_length_limit` bytes per
/// line and has no line cap; real EHLO replies have fewer than 30 lines.
pub const MAX_REPLY_LINES: usize = 1000;
/// Bytes in one reply, line ends included.
pub const MAX_REPLY_BYTES: usize = 64 * 1024;

/// One complete reply from the server.
#[derive(Clone, PartialEq, Eq)]
pub struct Response {
    pub code: u16,
    pub esc: Option<Esc>,
    /// The text after `ddd-`/`ddd `, one entry per line, the enhanced status
    /// code still in it.
    pub lines: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResponseError {
    /// A line that is not `ddd`, `ddd-text` or `ddd text` (shown shortened).
    BadLine(String),
    TooManyLines,
    TooLong,
}

impl fmt::Display for ResponseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResponseError::BadLine(l) => write!(f, "malformed reply line {l:?}"),
            ResponseError::TooManyLines => {
                write!(f, "reply longer than {MAX_REPLY_LINES} lines")
            }
            ResponseError::TooLong => write!(f, "reply longer than {MAX_REPLY_BYTES} bytes"),
        }
    }
}

impl Response {
    /// A reply made up here, for tests and for the driver's own notes.
    pub fn new(code: u16, text: &str) -> Response {
        let lines: Vec<String> = text.split('\n').map(clean).collect();
        let esc = lines.first().and_then(|l| parse_esc(code, l));
        Response { code, esc, lines }
    }

    pub fn class(&self) -> u16 {
        self.code / 100
    }

    pub fn is_positive(&self) -> bool {
        self.code < 400
    }

    pub fn is_transient(&self) -> bool {
        self.class() == 4
    }

    pub fn is_permanent(&self) -> bool {
        self.class() == 5
    }

    /// The text of all lines, without the enhanced code, joined by spaces.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for l in &self.lines {
            let t = match self.esc {
                Some(_) => strip_esc(l),
                None => l.as_str(),
            };
            if !out.is_empty() && !t.is_empty() {
                out.push(' ');
            }
            out.push_str(t);
        }
        out
    }

    /// The status for a DSN: the server's enhanced code, or `X.0.0` from
    /// the reply code's class when it gave none (RFC 3463 3.1).
    pub fn status(&self) -> Esc {
        self.esc.unwrap_or(Esc(self.class() as u8, 0, 0))
    }

    /// One line for a log or a DSN's `Diagnostic-Code: smtp; ...`:
    /// `550 5.1.1 text of every line`.
    pub fn diagnostic(&self) -> String {
        let text = self.text();
        let mut s = self.code.to_string();
        if let Some(Esc(c, su, d)) = self.esc {
            s.push_str(&format!(" {c}.{su}.{d}"));
        }
        if !text.is_empty() {
            s.push(' ');
            s.push_str(&text);
        }
        s
    }
}

impl fmt::Debug for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Response({:?})", self.diagnostic())
    }
}

impl fmt::Display for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.diagnostic())
    }
}

/// The receive buffer and the reply being assembled.
#[derive(Default)]
pub struct ResponseReader {
    buf: Vec<u8>,
    pos: usize,
    lines: Vec<String>,
    /// Bytes of the reply being assembled, line ends included.
    bytes: usize,
    first_esc: Option<String>,
}

impl ResponseReader {
    pub fn new() -> ResponseReader {
        ResponseReader::default()
    }

    pub fn feed(&mut self, bytes: &[u8]) {
        if self.pos > 0 && (self.pos == self.buf.len() || self.pos > 8192) {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes received and not yet part of a returned reply (complete lines
    /// of an unfinished reply count: they were read, not answered).
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.pos + self.bytes
    }

    /// Forgets everything buffered (after TLS starts, nothing from the
    /// plaintext phase may count).
    pub fn clear(&mut self) {
        *self = ResponseReader::default();
    }

    /// The next complete reply, `Ok(None)` when more input is needed.
    /// After an error the reader is unusable: the connection must close.
    pub fn next_reply(&mut self) -> Result<Option<Response>, ResponseError> {
        loop {
            let rest = &self.buf[self.pos..];
            let Some(lf) = rest.iter().position(|&c| c == b'\n') else {
                if self.bytes + rest.len() > MAX_REPLY_BYTES {
                    return Err(ResponseError::TooLong);
                }
                return Ok(None);
            };
            self.bytes += lf + 1;
            if self.bytes > MAX_REPLY_BYTES {
                return Err(ResponseError::TooLong);
            }
            let raw = &rest[..lf];
            let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
            let (code, more, text) = parse_line(raw)?;
            self.pos += lf + 1;
            if self.lines.len() == MAX_REPLY_LINES {
                return Err(ResponseError::TooManyLines);
            }
            let text = clean_bytes(text);
            if self.lines.is_empty() {
                self.first_esc = Some(text.clone());
            }
            self.lines.push(text);
            if !more {
                let lines = std::mem::take(&mut self.lines);
                let first = self.first_esc.take().unwrap_or_default();
                self.bytes = 0;
                return Ok(Some(Response {
                    code,
                    esc: parse_esc(code, &first),
                    lines,
                }));
            }
        }
    }
}

/// `(code, continues, text)` of one line without its line end.
fn parse_line(raw: &[u8]) -> Result<(u16, bool, &[u8]), ResponseError> {
    let bad = || {
        let shown: String = String::from_utf8_lossy(&raw[..raw.len().min(80)]).into();
        ResponseError::BadLine(clean(&shown))
    };
    if raw.len() < 3 || !raw[..3].iter().all(u8::is_ascii_digit) || !(b'2'..=b'5').contains(&raw[0])
    {
        return Err(bad());
    }
    let code = (raw[0] - b'0') as u16 * 100 + (raw[1] - b'0') as u16 * 10 + (raw[2] - b'0') as u16;
    match raw.get(3) {
        None => Ok((code, false, &[])),
        Some(b' ') => Ok((code, false, &raw[4..])),
        Some(b'-') => Ok((code, true, &raw[4..])),
        Some(_) => Err(bad()),
    }
}

fn clean_bytes(b: &[u8]) -> String {
    clean(&String::from_utf8_lossy(b))
}

fn clean(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() && c != '\t' { '?' } else { c })
        .collect()
}

/// `class.subject.detail` at the start of `text` (RFC 3463 2), followed by
/// a space or the end; the class must be the reply code's first digit.
fn parse_esc(code: u16, text: &str) -> Option<Esc> {
    let word = text.split(' ').next()?;
    let mut parts = word.split('.');
    let (c, s, d) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let num = |p: &str, max: usize| -> Option<u16> {
        if p.is_empty() || p.len() > max || !p.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        p.parse().ok()
    };
    let class = num(c, 1)?;
    if class != code / 100 || !matches!(class, 2 | 4 | 5) {
        return None;
    }
    Some(Esc(class as u8, num(s, 3)?, num(d, 3)?))
}

/// The text after a leading enhanced status code, if the line has one.
fn strip_esc(line: &str) -> &str {
    match line.split_once(' ') {
        Some((w, rest)) if looks_like_esc(w) => rest,
        None if looks_like_esc(line) => "",
        _ => line,
    }
}

fn looks_like_esc(w: &str) -> bool {
    let parts: Vec<&str> = w.split('.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(input: &[u8]) -> Result<Vec<Response>, ResponseError> {
        let mut r = ResponseReader::new();
        r.feed(input);
        let mut out = Vec::new();
        while let Some(resp) = r.next_reply()? {
            out.push(resp);
        }
        Ok(out)
    }

    #[test]
    fn single_and_multi_line() {
        let rs =
            read_all(b"220 mx.test ESMTP\r\n250-mx.test\r\n250-SIZE 1000\r\n250 PIPELINING\r\n")
                .unwrap();
        assert_eq!(rs.len(), 2);
        assert_eq!((rs[0].code, rs[0].text().as_str()), (220, "mx.test ESMTP"));
        assert_eq!(rs[1].lines, ["mx.test", "SIZE 1000", "PIPELINING"]);
    }

    #[test]
    fn bare_code_ends_a_reply() {
        let rs = read_all(b"250-first\r\n250\r\n").unwrap();
        assert_eq!(rs[0].lines, ["first", ""]);
        assert_eq!(read_all(b"354\r\n").unwrap()[0].code, 354);
    }

    #[test]
    fn enhanced_code_and_diagnostic() {
        let r = &read_all(
            b"550-5.1.1 <x@y.test>: Recipient address rejected:\r\n550 5.1.1 User unknown\r\n",
        )
        .unwrap()[0];
        assert_eq!(r.esc, Some(Esc(5, 1, 1)));
        assert_eq!(
            r.diagnostic(),
            "550 5.1.1 <x@y.test>: Recipient address rejected: User unknown"
        );
        // A class that does not match the code is not an enhanced code.
        let r = &read_all(b"550 4.1.1 odd\r\n").unwrap()[0];
        assert_eq!((r.esc, r.status()), (None, Esc(5, 0, 0)));
        assert_eq!(r.diagnostic(), "550 4.1.1 odd");
    }

    #[test]
    fn lines_without_a_code_are_errors() {
        for bad in [
            &b"hello\r\n"[..],
            b"25\r\n",
            b"2500 x\r\n",
            b"250x\r\n",
            b"150 old\r\n",
            b"650 x\r\n",
            b"\r\n",
            b"250-ok\r\nnot a reply\r\n",
        ] {
            assert!(
                matches!(read_all(bad), Err(ResponseError::BadLine(_))),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn line_and_byte_caps() {
        let mut many = b"250-x\r\n".repeat(10_000);
        many.extend_from_slice(b"250 end\r\n");
        assert_eq!(read_all(&many), Err(ResponseError::TooManyLines));
        let exactly = [
            b"250-x\r\n".repeat(MAX_REPLY_LINES - 1),
            b"250 end\r\n".to_vec(),
        ]
        .concat();
        assert_eq!(read_all(&exactly).unwrap()[0].lines.len(), MAX_REPLY_LINES);
        let mut r = ResponseReader::new();
        r.feed(&vec![b'2'; MAX_REPLY_BYTES + 1]);
        assert_eq!(r.next_reply(), Err(ResponseError::TooLong));
    }

    #[test]
    fn bare_lf_and_split_input() {
        let input = b"250-a\n250 b\r\n220 next\r\n";
        let mut r = ResponseReader::new();
        let mut got = Vec::new();
        for b in input {
            r.feed(&[*b]);
            while let Some(x) = r.next_reply().unwrap() {
                got.push(x);
            }
        }
        assert_eq!(got, read_all(input).unwrap());
        assert_eq!(got[0].lines, ["a", "b"]);
        assert_eq!(r.buffered(), 0);
    }

    #[test]
    fn control_characters_are_masked() {
        let r = &read_all(b"250 a\x1b[31mb\x00c\r\n").unwrap()[0];
        assert_eq!(r.lines[0], "a?[31mb?c");
    }

    #[test]
    fn buffered_counts_a_partial_reply() {
        let mut r = ResponseReader::new();
        r.feed(b"220 ready\r\n250-injected\r\n");
        assert_eq!(r.next_reply().unwrap().unwrap().code, 220);
        assert_eq!(r.next_reply().unwrap(), None);
        assert_eq!(r.buffered(), 14);
    }
}
