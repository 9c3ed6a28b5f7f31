//! The DATA decoder: wire bytes after `354` in, message bytes out.
//!
//! Rules (RFC 5321 2.3.8, 4.1.1.4, 4.5.2):
//! - Only `<CRLF>.<CRLF>` ends the message. The first CRLF is the end of the
//!   previous line, or the start of DATA for an empty message. A dot line
//!   preceded or followed by a bare CR or a bare LF never ends anything: that
//!   is the SMTP smuggling defence.
//! - A bare CR or LF anywhere makes the whole message invalid, but decoding
//!   goes on to the real end so the session stays in step with the client;
//!   the caller rejects the message afterwards.
//! - A line that starts with a dot and has more characters loses that dot.
//! - Lines longer than the text line limit (with CRLF) and messages larger
//!   than the size limit are refused the same way, after the end.
//!
//! Output uses LF line ends, the form Maildir readers expect. `size` counts
//! the message as RFC 1870 does: unstuffed, with CRLF line ends.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataError {
    BareLf,
    BareCr,
    LineTooLong,
    TooBig,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// After a CRLF, or at the very start.
    LineStart,
    Mid,
    /// A CR inside a line, waiting for its LF.
    Cr,
    /// A dot at the start of a line.
    Dot,
    /// `.` CR at the start of a line: one LF away from the end.
    DotCr,
}

pub struct DataDecoder {
    state: State,
    /// Octets of the current line so far, without its CRLF.
    line_len: usize,
    size: u64,
    max_size: u64,
    max_line: usize,
    error: Option<DataError>,
    out: Vec<u8>,
    done: bool,
}

impl DataDecoder {
    /// `max_line` counts the CRLF, as RFC 5321 4.5.3.1.6 does (1000).
    pub fn new(max_size: u64, max_line: usize) -> DataDecoder {
        DataDecoder {
            state: State::LineStart,
            line_len: 0,
            size: 0,
            max_size,
            max_line: max_line.max(3),
            error: None,
            out: Vec::new(),
            done: false,
        }
    }

    pub fn is_done(&self) -> bool {
        self.done
    }

    /// The first problem seen, if any.
    pub fn error(&self) -> Option<DataError> {
        self.error
    }

    /// Message size so far, unstuffed, with CRLF line ends.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Decoded bytes not yet taken. Nothing is kept once the message is
    /// known to be refused.
    pub fn pending_output(&self) -> usize {
        self.out.len()
    }

    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    fn fail(&mut self, e: DataError) {
        if self.error.is_none() {
            self.error = Some(e);
            self.out = Vec::new();
        }
    }

    fn emit(&mut self, bytes: &[u8]) {
        if self.error.is_none() {
            self.out.extend_from_slice(bytes);
        }
    }

    /// Counts `n` content bytes. When both limits are crossed inside the
    /// run, the error is the one a byte-at-a-time count would hit first,
    /// so the reply never depends on how the input was split.
    fn content(&mut self, n: usize) {
        // Bytes after which each limit is exceeded (the first offending byte).
        let to_line = (self.max_line - 2).saturating_sub(self.line_len) as u64 + 1;
        let to_size = self.max_size.saturating_sub(self.size).saturating_add(1);
        self.line_len += n;
        self.size += n as u64;
        let n = n as u64;
        if n >= to_line && to_line <= to_size {
            self.fail(DataError::LineTooLong);
        } else if n >= to_size {
            self.fail(DataError::TooBig);
        }
    }

    fn line_end(&mut self) {
        self.emit(b"\n");
        self.size += 2;
        self.line_len = 0;
        if self.size > self.max_size {
            self.fail(DataError::TooBig);
        }
        self.state = State::LineStart;
    }

    /// Consumes input up to and including the end-of-data marker. Returns
    /// how many bytes were used; bytes after the marker belong to the next
    /// command (pipelining).
    pub fn feed(&mut self, input: &[u8]) -> usize {
        let mut i = 0;
        while i < input.len() && !self.done {
            if self.state == State::Mid {
                // Fast path: copy up to the next CR or LF.
                let rest = &input[i..];
                let n = rest
                    .iter()
                    .position(|&c| c == b'\r' || c == b'\n')
                    .unwrap_or(rest.len());
                if n > 0 {
                    self.content(n);
                    self.emit(&rest[..n]);
                    i += n;
                    continue;
                }
            }
            let c = input[i];
            i += 1;
            match (self.state, c) {
                (State::LineStart, b'.') => self.state = State::Dot,
                (State::LineStart | State::Mid, b'\r') => self.state = State::Cr,
                (State::LineStart | State::Mid, b'\n') => {
                    self.fail(DataError::BareLf);
                    self.line_len = 0;
                    self.state = State::Mid;
                }
                (State::LineStart | State::Mid, _) => {
                    self.content(1);
                    self.emit(&[c]);
                    self.state = State::Mid;
                }
                (State::Cr, b'\n') => self.line_end(),
                (State::Cr, b'\r') => self.fail(DataError::BareCr),
                (State::Cr, _) => {
                    self.fail(DataError::BareCr);
                    self.state = State::Mid;
                }
                (State::Dot, b'\r') => self.state = State::DotCr,
                (State::Dot, b'\n') => {
                    self.fail(DataError::BareLf);
                    self.line_len = 0;
                    self.state = State::Mid;
                }
                (State::Dot, _) => {
                    // Dot-stuffed line: drop the dot, keep the character.
                    // The limit does not count the stuffing dot (RFC 5321
                    // 4.5.3.1.6).
                    self.content(1);
                    self.emit(&[c]);
                    self.state = State::Mid;
                }
                (State::DotCr, b'\n') => self.done = true,
                (State::DotCr, b'\r') => {
                    self.fail(DataError::BareCr);
                    self.state = State::Cr;
                }
                (State::DotCr, _) => {
                    self.fail(DataError::BareCr);
                    self.state = State::Mid;
                }
            }
        }
        i
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(input: &[u8]) -> (Vec<u8>, Option<DataError>, bool, usize) {
        let mut d = DataDecoder::new(1 << 20, 1000);
        let n = d.feed(input);
        (d.take_output(), d.error(), d.is_done(), n)
    }

    #[test]
    fn simple_message() {
        let (out, err, done, n) = decode(b"Subject: x\r\n\r\nhello\r\n.\r\nQUIT\r\n");
        assert_eq!(out, b"Subject: x\n\nhello\n");
        assert_eq!((err, done, n), (None, true, 24));
    }

    #[test]
    fn empty_message() {
        let (out, err, done, n) = decode(b".\r\n");
        assert_eq!((out.as_slice(), err, done, n), (&b""[..], None, true, 3));
    }

    #[test]
    fn dot_unstuffing() {
        let (out, _, done, _) = decode(b"..leading\r\n...\r\n.x\r\n.\r\n");
        assert!(done);
        assert_eq!(out, b".leading\n..\nx\n");
    }

    #[test]
    fn byte_at_a_time_equals_whole() {
        let msg = b"a\r\n..b\r\n\r\nc\r\n.\r\n";
        let mut d = DataDecoder::new(1 << 20, 1000);
        let mut out = Vec::new();
        for &b in msg.iter() {
            assert_eq!(d.feed(&[b]), 1);
            out.extend(d.take_output());
        }
        assert!(d.is_done());
        assert_eq!(out, b"a\n.b\n\nc\n");
    }

    #[test]
    fn size_counts_crlf() {
        let mut d = DataDecoder::new(1 << 20, 1000);
        d.feed(b"ab\r\n.\r\n");
        assert_eq!(d.size(), 4);
    }

    /// Found by fuzzing: both limits crossed in one run of bytes must give
    /// the same error as feeding byte by byte.
    #[test]
    fn first_error_does_not_depend_on_chunking() {
        let input = format!("{}\r\n.\r\n", "x".repeat(60));
        let mut whole = DataDecoder::new(16, 52);
        whole.feed(input.as_bytes());
        let mut bytes = DataDecoder::new(16, 52);
        for b in input.as_bytes() {
            bytes.feed(&[*b]);
        }
        assert_eq!(whole.error(), Some(DataError::TooBig));
        assert_eq!(bytes.error(), whole.error());
    }

    #[test]
    fn too_big_reads_to_end() {
        let mut d = DataDecoder::new(10, 1000);
        let n = d.feed(b"0123456789abcdef\r\nmore\r\n.\r\nNEXT");
        assert_eq!(n, 27);
        assert!(d.is_done());
        assert_eq!(d.error(), Some(DataError::TooBig));
        assert!(d.take_output().is_empty());
    }

    #[test]
    fn line_limit_ignores_the_stuffing_dot() {
        let ok = format!(".{}\r\n.\r\n", ".".repeat(998));
        assert_eq!(decode(ok.as_bytes()).1, None);
    }

    #[test]
    fn line_limit_includes_crlf() {
        let ok = format!("{}\r\n.\r\n", "x".repeat(998));
        assert_eq!(decode(ok.as_bytes()).1, None);
        let bad = format!("{}\r\n.\r\n", "x".repeat(999));
        let (_, err, done, _) = decode(bad.as_bytes());
        assert_eq!((err, done), (Some(DataError::LineTooLong), true));
    }

    /// Every way to spell a dot line with a bare CR or LF: none ends the
    /// message, each marks it invalid, and the real end is still found.
    #[test]
    fn smuggling_variants_never_end_data() {
        let variants: &[&[u8]] = &[
            b"\n.\n",
            b"\n.\r\n",
            b"\r\n.\n",
            b"\r.\r",
            b"\r.\r\n",
            b"\r\n.\r",
            b"\n.\r",
            b"\r.\n",
            b".\n",
            b"\r\n.\r\r\n",
        ];
        for v in variants {
            let mut input = b"Subject: t\r\n\r\nbody".to_vec();
            input.extend_from_slice(v);
            input.extend_from_slice(b"MAIL FROM:<evil@x.test>\r\n");
            let (_, err, done, _) = decode(&input);
            assert!(!done, "{:?} ended DATA", String::from_utf8_lossy(v));
            assert!(
                err.is_some(),
                "{:?} not flagged",
                String::from_utf8_lossy(v)
            );
            // And the real end still works afterwards.
            let mut d = DataDecoder::new(1 << 20, 1000);
            input.extend_from_slice(b"\r\n.\r\n");
            let n = d.feed(&input);
            assert!(
                d.is_done() && n == input.len(),
                "{:?}",
                String::from_utf8_lossy(v)
            );
            assert!(d.error().is_some());
        }
    }

    /// A bare CR right before a real `CRLF.CRLF`: the end is real, the
    /// message is still refused.
    #[test]
    fn bare_cr_before_real_end() {
        let (_, err, done, _) = decode(b"body\r\r\n.\r\n");
        assert_eq!((err, done), (Some(DataError::BareCr), true));
    }

    #[test]
    fn bare_lf_then_dot_at_start_does_not_end() {
        let (_, err, done, _) = decode(b"a\n.\r\n");
        assert_eq!((err, done), (Some(DataError::BareLf), false));
    }

    #[test]
    fn bare_cr_mid_line() {
        let (_, err, done, _) = decode(b"a\rb\r\n.\r\n");
        assert_eq!((err, done), (Some(DataError::BareCr), true));
    }
}
