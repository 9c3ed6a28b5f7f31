//! DKIM canonicalization (RFC 6376 §3.4), pure and streaming: the queued
//! message goes in as it lies in the queue (LF line ends, in chunks of any
//! size), and comes out as the header fields a signature names and the
//! body's hash, both over the bytes the SMTP client puts on the wire.
//!
//! What "as transmitted" means here is the client's DATA encoder
//! (smtp/client/encoder.rs): CRLF, a bare LF and a bare CR each end a line
//! with CRLF, and an unterminated last line gets one. [`Lines`] splits by
//! the same rules, so the hash is over exactly the lines the receiver gets
//! after dot-unstuffing. A test feeds both the same input.
//!
//! - Header, simple (§3.4.1): the field as it is, folds and all.
//! - Header, relaxed (§3.4.2): name in lower case, the value unfolded,
//!   runs of WSP made one SP, WSP trimmed at its ends and around the colon.
//! - Body, simple (§3.4.3): trailing empty lines dropped; an empty body is
//!   one CRLF.
//! - Body, relaxed (§3.4.4): WSP at the end of each line dropped, runs of
//!   WSP made one SP, trailing empty lines dropped; an empty body stays
//!   empty.
//!
//! WSP is SP and HTAB only (RFC 5234).

use ring::digest;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Canon {
    Simple,
    Relaxed,
}

impl Canon {
    pub fn name(self) -> &'static str {
        match self {
            Canon::Simple => "simple",
            Canon::Relaxed => "relaxed",
        }
    }
}

/// The `c=` tag: header/body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Canonicalization {
    pub header: Canon,
    pub body: Canon,
}

impl Canonicalization {
    pub const RELAXED: Canonicalization = Canonicalization {
        header: Canon::Relaxed,
        body: Canon::Relaxed,
    };

    /// `relaxed/relaxed`, `simple/relaxed`...; one word names the header
    /// canonicalization and leaves the body simple (§3.5, `c=`).
    pub fn parse(s: &str) -> Option<Canonicalization> {
        let one = |w: &str| match w.trim().to_ascii_lowercase().as_str() {
            "simple" => Some(Canon::Simple),
            "relaxed" => Some(Canon::Relaxed),
            _ => None,
        };
        let (h, b) = match s.split_once('/') {
            Some((h, b)) => (one(h)?, one(b)?),
            None => (one(s)?, Canon::Simple),
        };
        Some(Canonicalization { header: h, body: b })
    }

    /// The `c=` value.
    pub fn tag(self) -> String {
        format!("{}/{}", self.header.name(), self.body.name())
    }
}

fn is_wsp(c: u8) -> bool {
    c == b' ' || c == b'\t'
}

/// One header field as transmitted: its lines joined with CRLF, ending in
/// CRLF (`raw`), and its name in lower case.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Field {
    pub name: String,
    pub raw: Vec<u8>,
}

impl Field {
    /// Starts a field from its first line (without line end).
    fn new(line: &[u8]) -> Field {
        let name_end = line.iter().position(|&c| c == b':').unwrap_or(line.len());
        let name = String::from_utf8_lossy(&line[..name_end]);
        let name = name.trim_end_matches([' ', '\t']).to_ascii_lowercase();
        let mut raw = Vec::with_capacity(line.len() + 2);
        raw.extend_from_slice(line);
        raw.extend_from_slice(b"\r\n");
        Field { name, raw }
    }

    /// The value, for callers that parse it (From:): unfolded, as text.
    pub fn value(&self) -> String {
        let v = match self.raw.iter().position(|&c| c == b':') {
            Some(i) => &self.raw[i + 1..],
            None => &[][..],
        };
        let unfolded: Vec<u8> = v
            .iter()
            .copied()
            .filter(|&c| c != b'\r' && c != b'\n')
            .collect();
        String::from_utf8_lossy(&unfolded).trim().to_string()
    }

    /// Appends the canonical form (with its CRLF) to `out`.
    pub fn canonical(&self, c: Canon, out: &mut Vec<u8>) {
        match c {
            Canon::Simple => out.extend_from_slice(&self.raw),
            Canon::Relaxed => {
                relaxed_header(&self.raw, out);
                out.extend_from_slice(b"\r\n");
            }
        }
    }
}

/// The relaxed form of a header field (§3.4.2), without a line end: the
/// name lower-cased and trimmed, the value unfolded, WSP runs made one SP,
/// WSP trimmed at both ends of the value. Line ends in `raw` (CRLF) are
/// dropped; a trailing CRLF is not part of the value.
pub fn relaxed_header(raw: &[u8], out: &mut Vec<u8>) {
    let colon = raw.iter().position(|&c| c == b':').unwrap_or(raw.len());
    let name = &raw[..colon];
    let name_end = name.iter().rposition(|&c| !is_wsp(c)).map_or(0, |i| i + 1);
    out.extend(name[..name_end].iter().map(u8::to_ascii_lowercase));
    if colon == raw.len() {
        return;
    }
    out.push(b':');
    // Unfold (drop CR and LF), then collapse WSP; leading WSP goes, and
    // trailing WSP is never written because a space is only emitted
    // before the next non-WSP byte.
    let mut space = false;
    let mut started = false;
    for &c in &raw[colon + 1..] {
        match c {
            b'\r' | b'\n' => {}
            c if is_wsp(c) => space = started,
            c => {
                if space {
                    out.push(b' ');
                    space = false;
                }
                out.push(c);
                started = true;
            }
        }
    }
}

/// Splits message bytes into lines by the SMTP client's rules (CRLF, LF,
/// bare CR), across chunks. Lines are handed out without their line end.
#[derive(Default)]
pub struct Lines {
    /// Bytes of a line cut by the end of a chunk.
    partial: Vec<u8>,
    /// A line has started (bytes seen since the last line end).
    open: bool,
    /// A CR ended the last chunk: its line is over; a leading LF in the
    /// next chunk belongs to it.
    cr: bool,
}

impl Lines {
    /// Feeds a chunk; `line` gets each line completed in it.
    pub fn feed(&mut self, mut input: &[u8], line: &mut impl FnMut(&[u8])) {
        if input.is_empty() {
            return;
        }
        if self.cr {
            self.cr = false;
            if input.first() == Some(&b'\n') {
                input = &input[1..];
            }
        }
        while let Some(i) = input.iter().position(|&c| c == b'\r' || c == b'\n') {
            let text = &input[..i];
            if self.partial.is_empty() {
                line(text);
            } else {
                self.partial.extend_from_slice(text);
                line(&self.partial);
                self.partial.clear();
            }
            self.open = false;
            let mut next = i + 1;
            if input[i] == b'\r' {
                match input.get(next) {
                    Some(b'\n') => next += 1,
                    Some(_) => {}
                    None => self.cr = true,
                }
            }
            input = &input[next..];
        }
        if !input.is_empty() {
            self.partial.extend_from_slice(input);
            self.open = true;
        }
    }

    /// The end of the message: an unterminated last line is a line.
    pub fn finish(&mut self, line: &mut impl FnMut(&[u8])) {
        if self.open {
            line(&self.partial);
            self.partial.clear();
            self.open = false;
        }
        self.cr = false;
    }
}

/// The body hash (SHA-256) under one canonicalization, fed line by line.
pub struct BodyHasher {
    canon: Canon,
    ctx: digest::Context,
    /// Empty lines seen and not yet hashed: they count only if a
    /// non-empty line follows (trailing empty lines are dropped).
    empty: u64,
    /// Anything hashed yet.
    any: bool,
    scratch: Vec<u8>,
}

impl BodyHasher {
    pub fn new(canon: Canon) -> BodyHasher {
        BodyHasher {
            canon,
            ctx: digest::Context::new(&digest::SHA256),
            empty: 0,
            any: false,
            scratch: Vec::new(),
        }
    }

    pub fn line(&mut self, line: &[u8]) {
        let text: &[u8] = match self.canon {
            Canon::Simple => line,
            Canon::Relaxed => {
                self.scratch.clear();
                let mut space = false;
                for &c in line {
                    if is_wsp(c) {
                        space = true;
                    } else {
                        if space {
                            self.scratch.push(b' ');
                            space = false;
                        }
                        self.scratch.push(c);
                    }
                }
                // A line of only WSP keeps none of it: it is empty.
                &self.scratch
            }
        };
        if text.is_empty() {
            self.empty += 1;
            return;
        }
        for _ in 0..self.empty {
            self.ctx.update(b"\r\n");
        }
        self.empty = 0;
        self.ctx.update(text);
        self.ctx.update(b"\r\n");
        self.any = true;
    }

    /// The digest. An empty body is CRLF under simple, nothing under relaxed.
    pub fn finish(mut self) -> digest::Digest {
        if !self.any && self.canon == Canon::Simple {
            self.ctx.update(b"\r\n");
        }
        self.ctx.finish()
    }
}

/// A whole message split into its header fields and body hashes: one
/// pass over the bytes, headers kept (they are small), the body hashed
/// as it goes by, under each canonicalization asked for.
pub struct MessageScan {
    lines: Lines,
    in_body: bool,
    fields: Vec<Field>,
    /// Header bytes kept so far: a bound against a message that is all
    /// header, so memory stays flat.
    header_bytes: usize,
    overflow: bool,
    simple: Option<BodyHasher>,
    relaxed: Option<BodyHasher>,
}

/// Header bytes a message may have for signing; beyond it the message
/// goes out unsigned (the session's own limits keep real mail far below).
pub const MAX_HEADER_BYTES: usize = 1 << 20;

/// What a scan found.
pub struct Scanned {
    pub fields: Vec<Field>,
    pub simple: Option<digest::Digest>,
    pub relaxed: Option<digest::Digest>,
    /// The header block was larger than [`MAX_HEADER_BYTES`].
    pub overflow: bool,
}

impl MessageScan {
    /// `simple`/`relaxed`: which body hashes are needed.
    pub fn new(simple: bool, relaxed: bool) -> MessageScan {
        MessageScan {
            lines: Lines::default(),
            in_body: false,
            fields: Vec::new(),
            header_bytes: 0,
            overflow: false,
            simple: simple.then(|| BodyHasher::new(Canon::Simple)),
            relaxed: relaxed.then(|| BodyHasher::new(Canon::Relaxed)),
        }
    }

    pub fn update(&mut self, chunk: &[u8]) {
        let mut lines = std::mem::take(&mut self.lines);
        lines.feed(chunk, &mut |l| self.line(l));
        self.lines = lines;
    }

    fn line(&mut self, l: &[u8]) {
        if self.in_body {
            if let Some(h) = &mut self.simple {
                h.line(l);
            }
            if let Some(h) = &mut self.relaxed {
                h.line(l);
            }
            return;
        }
        if l.is_empty() {
            self.in_body = true;
            return;
        }
        self.header_bytes += l.len() + 2;
        if self.header_bytes > MAX_HEADER_BYTES {
            self.overflow = true;
            return;
        }
        match self.fields.last_mut() {
            // A continuation line (RFC 5322 2.2.3).
            Some(f) if is_wsp(l[0]) => {
                f.raw.extend_from_slice(l);
                f.raw.extend_from_slice(b"\r\n");
            }
            _ => self.fields.push(Field::new(l)),
        }
    }

    pub fn finish(mut self) -> Scanned {
        let mut lines = std::mem::take(&mut self.lines);
        lines.finish(&mut |l| self.line(l));
        Scanned {
            fields: self.fields,
            simple: self.simple.map(BodyHasher::finish),
            relaxed: self.relaxed.map(BodyHasher::finish),
            overflow: self.overflow,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smtp::client::encoder::DataEncoder;

    fn b64(d: &[u8]) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(d)
    }

    /// RFC 6376 §3.4.6, the example message.
    const EXAMPLE: &[u8] = b"A: X\r\nB : Y\t\r\n\tZ  \r\n\r\n C \r\nD \t E\r\n\r\n\r\n";

    fn scan(msg: &[u8]) -> Scanned {
        let mut s = MessageScan::new(true, true);
        s.update(msg);
        s.finish()
    }

    fn sha(b: &[u8]) -> Vec<u8> {
        digest::digest(&digest::SHA256, b).as_ref().to_vec()
    }

    #[test]
    fn rfc6376_example_relaxed() {
        let s = scan(EXAMPLE);
        let mut h = Vec::new();
        for f in &s.fields {
            f.canonical(Canon::Relaxed, &mut h);
        }
        assert_eq!(h, b"a:X\r\nb:Y Z\r\n");
        assert_eq!(s.relaxed.unwrap().as_ref(), sha(b" C\r\nD E\r\n"));
    }

    #[test]
    fn rfc6376_example_simple() {
        let s = scan(EXAMPLE);
        let mut h = Vec::new();
        for f in &s.fields {
            f.canonical(Canon::Simple, &mut h);
        }
        assert_eq!(h, b"A: X\r\nB : Y\t\r\n\tZ  \r\n");
        assert_eq!(s.simple.unwrap().as_ref(), sha(b" C \r\nD \t E\r\n"));
    }

    #[test]
    fn empty_bodies() {
        for msg in [
            &b"Subject: x\n"[..],
            b"Subject: x\n\n",
            b"Subject: x\n\n\n\n",
            b"Subject: x\r\n\r\n \t\r\n",
        ] {
            let s = scan(msg);
            assert_eq!(
                b64(s.relaxed.unwrap().as_ref()),
                "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
                "{msg:?}"
            );
        }
        for msg in [
            &b"Subject: x\n"[..],
            b"Subject: x\n\n",
            b"Subject: x\n\n\n\n",
        ] {
            let s = scan(msg);
            assert_eq!(
                b64(s.simple.unwrap().as_ref()),
                "frcCV1k9oG9oKj3dpUqdJg1PxRT2RSN/XKdLCPjaYaY=",
                "{msg:?}"
            );
        }
        // Simple keeps a line of blanks: it is not empty.
        let s = scan(b"Subject: x\n\n \n");
        assert_eq!(s.simple.unwrap().as_ref(), sha(b" \r\n"));
    }

    #[test]
    fn relaxed_header_forms() {
        let mut out = Vec::new();
        relaxed_header(b"SUBJect \t:  a \t b\r\n\t c \r\n", &mut out);
        assert_eq!(out, b"subject:a b c");
        out.clear();
        relaxed_header(b"X-Empty:\r\n", &mut out);
        assert_eq!(out, b"x-empty:");
        out.clear();
        relaxed_header(b"DKIM-Signature: v=1; b=", &mut out);
        assert_eq!(out, b"dkim-signature:v=1; b=");
    }

    #[test]
    fn canonicalization_tags() {
        let p = Canonicalization::parse;
        assert_eq!(p("relaxed/relaxed"), Some(Canonicalization::RELAXED));
        assert_eq!(p("relaxed").unwrap().tag(), "relaxed/simple");
        assert_eq!(p("Simple/Relaxed").unwrap().tag(), "simple/relaxed");
        assert_eq!(p("simple").unwrap().tag(), "simple/simple");
        assert_eq!(p("loose/relaxed"), None);
        assert_eq!(p("relaxed/"), None);
    }

    /// The lines hashed are the lines the client sends: every chunking of
    /// every awkward input gives the wire's lines.
    #[test]
    fn lines_match_the_data_encoder() {
        let inputs: &[&[u8]] = &[
            b"a\nb\n",
            b"a\r\nb",
            b"a\rb\r",
            b"a\r\r\nb\n\n",
            b"\r",
            b"\n",
            b"",
            b".dot\n..two\nx",
            b"no end",
            b"a\r\n\r\n\rb\r",
        ];
        for input in inputs {
            // The wire, unstuffed, without the final ".\r\n".
            let mut enc = DataEncoder::new();
            let mut wire = Vec::new();
            enc.encode(input, &mut wire);
            enc.finish(&mut wire);
            let wire = &wire[..wire.len() - 3];
            let mut want = Vec::new();
            for l in wire.split(|&c| c == b'\n') {
                let l = l.strip_suffix(b"\r").unwrap_or(l);
                want.push(l.strip_prefix(b".").unwrap_or(l).to_vec());
            }
            want.pop(); // after the last CRLF
            for cut in 0..=input.len() {
                for cut2 in cut..=input.len() {
                    let mut got = Vec::new();
                    let mut l = Lines::default();
                    let mut push = |x: &[u8]| got.push(x.to_vec());
                    l.feed(&input[..cut], &mut push);
                    l.feed(&input[cut..cut2], &mut push);
                    l.feed(&input[cut2..], &mut push);
                    l.finish(&mut push);
                    assert_eq!(got, want, "{input:?} cut at {cut}, {cut2}");
                }
            }
        }
    }

    #[test]
    fn chunking_never_changes_the_scan() {
        let msg = b"From: a@b.test\nSubject: folded\n\tline  \n\nbody \t\n\nmore\r\nend";
        let whole = scan(msg);
        for cut in 0..msg.len() {
            let mut s = MessageScan::new(true, true);
            s.update(&msg[..cut]);
            s.update(&msg[cut..]);
            let s = s.finish();
            assert_eq!(s.fields, whole.fields);
            assert_eq!(
                s.simple.unwrap().as_ref(),
                whole.simple.as_ref().unwrap().as_ref()
            );
            assert_eq!(
                s.relaxed.unwrap().as_ref(),
                whole.relaxed.as_ref().unwrap().as_ref()
            );
        }
        assert_eq!(whole.fields.len(), 2);
        assert_eq!(whole.fields[1].name, "subject");
        assert_eq!(whole.fields[1].raw, b"Subject: folded\r\n\tline  \r\n");
        assert_eq!(whole.fields[1].value(), "folded\tline");
    }
}
