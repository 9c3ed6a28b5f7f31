//! The DATA encoder of the client: message bytes in, wire bytes after
//! `354` out (RFC 5321 4.5.2). Streaming and pure.
//!
//! Rules:
//! - Only CRLF ever leaves the client (RFC 5321 2.3.8; SMTP smuggling,
//!   CVE-2023-51764): LF and CRLF become CRLF, and so does a bare CR. So
//!   `a\r\r\nb` is two line breaks, `a\rb` one.
//! - A line that starts with `.` gets one more `.` (dot-stuffing).
//! - [`DataEncoder::finish`] ends an unterminated last line with CRLF, then
//!   sends `.` CRLF. An empty message is just `.` CRLF, which is the
//!   end-of-data marker at the very start (RFC 5321 4.1.1.4).
//! - How the input is cut into chunks never changes the output: the only
//!   state carried between calls is "at line start" and "a CR is pending".
//!
//! Line length is not touched: the queue only holds what a receiving
//! session accepted (lines of at most 1000 octets with CRLF).

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    LineStart,
    Mid,
    /// A CR was seen; its line end is written once the next byte shows
    /// whether an LF belongs to it.
    Cr,
}

pub struct DataEncoder {
    state: State,
    /// Wire bytes written so far.
    written: u64,
    finished: bool,
}

impl Default for DataEncoder {
    fn default() -> Self {
        DataEncoder::new()
    }
}

impl DataEncoder {
    pub fn new() -> DataEncoder {
        DataEncoder {
            state: State::LineStart,
            written: 0,
            finished: false,
        }
    }

    /// Wire bytes produced so far (dot-stuffing included).
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Appends the encoding of `input` to `out`.
    pub fn encode(&mut self, input: &[u8], out: &mut Vec<u8>) {
        assert!(!self.finished, "DataEncoder::encode after finish");
        let start = out.len();
        out.reserve(input.len() + input.len() / 32 + 4);
        let mut i = 0;
        while i < input.len() {
            if self.state == State::Mid {
                // Fast path: copy up to the next CR or LF.
                let rest = &input[i..];
                let n = rest
                    .iter()
                    .position(|&c| c == b'\r' || c == b'\n')
                    .unwrap_or(rest.len());
                out.extend_from_slice(&rest[..n]);
                i += n;
                if i == input.len() {
                    break;
                }
            }
            let c = input[i];
            i += 1;
            match (self.state, c) {
                // CR LF: the line end already pending.
                (State::Cr, b'\n') => {
                    out.extend_from_slice(b"\r\n");
                    self.state = State::LineStart;
                }
                (State::Cr, _) => {
                    // The pending CR was bare: it becomes a line end, and
                    // `c` starts the next line.
                    out.extend_from_slice(b"\r\n");
                    self.state = State::LineStart;
                    self.byte_at_line_start(c, out);
                }
                (_, b'\r') => self.state = State::Cr,
                (_, b'\n') => {
                    out.extend_from_slice(b"\r\n");
                    self.state = State::LineStart;
                }
                (State::LineStart, _) => self.byte_at_line_start(c, out),
                (State::Mid, _) => out.push(c),
            }
        }
        self.written += (out.len() - start) as u64;
    }

    fn byte_at_line_start(&mut self, c: u8, out: &mut Vec<u8>) {
        match c {
            b'\r' => self.state = State::Cr,
            b'\n' => out.extend_from_slice(b"\r\n"),
            b'.' => {
                out.extend_from_slice(b"..");
                self.state = State::Mid;
            }
            _ => {
                out.push(c);
                self.state = State::Mid;
            }
        }
    }

    /// Ends the message: the last line's CRLF if missing, then `.` CRLF.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        assert!(!self.finished, "DataEncoder::finish twice");
        let start = out.len();
        if self.state != State::LineStart {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b".\r\n");
        self.finished = true;
        self.state = State::LineStart;
        self.written += (out.len() - start) as u64;
    }
}

/// The whole wire form of a message, in one call.
pub fn encode_all(message: &[u8]) -> Vec<u8> {
    let mut e = DataEncoder::new();
    let mut out = Vec::new();
    e.encode(message, &mut out);
    e.finish(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smtp::data::DataDecoder;

    #[test]
    fn line_ends_become_crlf() {
        assert_eq!(encode_all(b"a\nb\r\nc"), b"a\r\nb\r\nc\r\n.\r\n");
        assert_eq!(encode_all(b"a\rb\r"), b"a\r\nb\r\n.\r\n");
        assert_eq!(encode_all(b"a\r\r\nb\n\n"), b"a\r\n\r\nb\r\n\r\n.\r\n");
    }

    #[test]
    fn dots_are_stuffed() {
        assert_eq!(encode_all(b".\n..x\na.b\n"), b"..\r\n...x\r\na.b\r\n.\r\n");
        assert_eq!(encode_all(b"x\r."), b"x\r\n..\r\n.\r\n");
        assert_eq!(encode_all(b"."), b"..\r\n.\r\n");
    }

    #[test]
    fn empty_message() {
        assert_eq!(encode_all(b""), b".\r\n");
        assert_eq!(encode_all(b"\n"), b"\r\n.\r\n");
    }

    #[test]
    fn smuggling_attempts_cannot_end_data_early() {
        for evil in [
            &b"a\n.\nMAIL FROM:<x>\n"[..],
            b"a\r.\rMAIL FROM:<x>\r",
            b"a\r\n.\nRCPT TO:<y>\r\n",
            b"a\n.\r\nDATA\r\n",
        ] {
            let wire = encode_all(evil);
            for (i, w) in wire.windows(2).enumerate() {
                assert!(w[0] != b'\r' || w[1] == b'\n', "bare CR at {i} in {wire:?}");
                assert!(w[1] != b'\n' || w[0] == b'\r', "bare LF at {i} in {wire:?}");
            }
            // A server decoder finds the end exactly at the end, and gets the
            // message back with its dot lines intact.
            let mut d = DataDecoder::new(1 << 20, 1000);
            assert_eq!(d.feed(&wire), wire.len(), "{evil:?}");
            assert!(d.is_done() && d.error().is_none(), "{evil:?}");
            let back = d.take_output();
            assert!(back.windows(3).any(|w| w == b"\n.\n"), "{back:?}");
        }
    }

    /// Tiny xorshift for the chunking test: no external crate needed.
    fn rng(seed: &mut u64) -> u64 {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        *seed
    }

    #[test]
    fn chunking_does_not_change_the_output() {
        let alphabet = b"\r\n.ab";
        let mut seed = 0x2545_f491_4f6c_dd1d;
        for _ in 0..2000 {
            let len = (rng(&mut seed) % 40) as usize;
            let msg: Vec<u8> = (0..len)
                .map(|_| alphabet[(rng(&mut seed) % 5) as usize])
                .collect();
            let whole = encode_all(&msg);
            // Byte by byte.
            let mut e = DataEncoder::new();
            let mut out = Vec::new();
            for b in &msg {
                e.encode(std::slice::from_ref(b), &mut out);
            }
            e.finish(&mut out);
            assert_eq!(out, whole, "{msg:?} byte by byte");
            assert_eq!(e.written(), whole.len() as u64);
            // Random cuts.
            let mut e = DataEncoder::new();
            let mut out = Vec::new();
            let mut rest = &msg[..];
            while !rest.is_empty() {
                let n = 1 + (rng(&mut seed) as usize % rest.len());
                e.encode(&rest[..n], &mut out);
                rest = &rest[n..];
            }
            e.finish(&mut out);
            assert_eq!(out, whole, "{msg:?} in chunks");
            // And it always decodes, to the input with LF line ends.
            let mut d = DataDecoder::new(1 << 20, 1000);
            assert_eq!(d.feed(&whole), whole.len());
            assert!(d.is_done() && d.error().is_none(), "{msg:?}");
        }
    }
}
