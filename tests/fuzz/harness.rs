//! The fuzz harness, shared by the cargo-fuzz targets (tests/fuzz/fuzz_targets/,
//! nightly) and by the corpus replay in the normal test run
//! (tests/fuzz_replay.rs, stable), so the replay runs exactly the fuzzed code.
//!
//! Each function takes the raw fuzzer input, drives one part of the pure SMTP
//! layer with it and panics when an invariant breaks. Input layouts:
//!
//! - `command`: the whole input, lossily decoded as UTF-8, is one command line
//!   (and also a path, and a parameter list).
//! - `data`: byte 0 picks the limits (low nibble: line limit, high nibble:
//!   size limit, 0 = the defaults 1000 / 1 MiB), byte 1 & 7 = k, the next k
//!   bytes are chunk lengths for a split feed; the rest is the wire input
//!   after `354`.
//! - `session`: byte 0 picks the configuration (bit 0 helo_required, bit 1
//!   vrfy_enabled, bits 2-3 a limit profile, bit 4 an IPv6 peer, bit 5
//!   STARTTLS and AUTH offered, bit 6 AUTH only inside TLS and the user in
//!   Received:, bit 7 require_auth and no `AUTH=` line), bytes 1-2 are
//!   answer bits (used in turn, cyclically: 1 = accept, a handshake that
//!   works, a good password), byte 3 is the maximum chunk size (0 =
//!   unbounded). The rest is what the client sends.
//!   In it, 0xFF is an escape: `FF FF` is a literal 0xFF byte, `FF FE` makes
//!   the client time out, `FF` before anything else only ends a chunk (the
//!   session then runs until it needs input).

#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::Duration;

use postern::smtp::address::{self, Address, PathError, MAX_LOCAL_PART, MAX_PATH};
use postern::smtp::command::{self, Command};
use postern::smtp::data::{DataDecoder, DataError};
use postern::smtp::reply::{self, Esc, Reply};
use postern::smtp::session::{
    Answer, AuthFailure, Peer, Question, Session, SessionConfig, Step, TlsInfo,
};

// --- command ------------------------------------------------------------------

pub fn command(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let line: &str = &text;
    check_command(line);
    for utf8 in [false, true] {
        let _ = check_path(line, utf8);
        check_address(line, utf8);
    }
    check_params(line);
    // What the session does with the argument of MAIL/RCPT/VRFY.
    if let Command::Mail(arg) | Command::Rcpt(arg) | Command::Vrfy(arg) = command::parse(line) {
        for utf8 in [false, true] {
            if let Ok(p) = check_path(arg, utf8) {
                check_params(p);
            }
        }
    }
}

/// True when `inner` is a sub-slice of `outer` (same memory), or empty.
fn within(inner: &str, outer: &str) -> bool {
    if inner.is_empty() {
        return true;
    }
    let (o, i) = (outer.as_ptr() as usize, inner.as_ptr() as usize);
    i >= o && i + inner.len() <= o + outer.len()
}

fn check_command(line: &str) {
    let cmd = command::parse(line);
    match cmd {
        Command::Helo(a) | Command::Ehlo(a) | Command::Vrfy(a) => {
            assert!(within(a, line), "argument is not part of the line");
            assert!(!a.is_empty(), "empty HELO/EHLO/VRFY argument: {line:?}");
            assert!(!a.starts_with(' ') && !a.ends_with(' '), "untrimmed {a:?}");
        }
        Command::Mail(a) | Command::Rcpt(a) | Command::Expn(a) => {
            assert!(within(a, line), "argument is not part of the line");
        }
        _ => {}
    }
    // Verbs are case-insensitive: changing the verb's case changes nothing.
    let (verb, rest) = match line.find(' ') {
        Some(i) => line.split_at(i),
        None => (line, ""),
    };
    for v in [verb.to_ascii_uppercase(), verb.to_ascii_lowercase()] {
        let other = format!("{v}{rest}");
        assert_eq!(command::parse(&other), cmd, "verb case matters: {line:?}");
    }
}

/// Checks `parse_path` on `s`; returns the parameters on success.
fn check_path(s: &str, utf8: bool) -> Result<&str, PathError> {
    let res = address::parse_path(s, utf8);
    let p = match &res {
        Ok(p) => p,
        Err(e) => {
            if !utf8 && *e != PathError::NeedsUtf8 {
                // Refused without SMTPUTF8 for another reason than non-ASCII:
                // SMTPUTF8 only adds characters, so it cannot make it valid
                // unless the refusal was about one of them.
                if s.is_ascii() {
                    assert_eq!(address::parse_path(s, true).err(), Some(*e), "{s:?}");
                }
            }
            return Err(*e);
        }
    };
    assert!(within(p.params, s), "params not part of the input");
    assert!(
        !p.params.starts_with(' ') && !p.params.ends_with(' '),
        "untrimmed params {:?}",
        p.params
    );
    assert!(
        p.path.is_none() || p.bare_local.is_none(),
        "both a path and a bare local part: {s:?}"
    );
    if !utf8 {
        // Without SMTPUTF8, nothing non-ASCII gets through, and SMTPUTF8
        // accepts the same thing the same way.
        if let Some(a) = &p.path {
            assert!(a.is_ascii(), "non-ASCII address without SMTPUTF8: {s:?}");
        }
        if let Some(l) = &p.bare_local {
            assert!(l.is_ascii(), "non-ASCII local part without SMTPUTF8: {s:?}");
        }
        let with = address::parse_path(s, true).expect("SMTPUTF8 refuses what ASCII accepts");
        assert_eq!(&with, p, "SMTPUTF8 changes the parse of {s:?}");
    }
    if let Some(l) = &p.bare_local {
        // `""` is a valid (empty) quoted local part (RFC 5321 4.1.2).
        assert!(l.len() <= MAX_LOCAL_PART, "{s:?}");
    }
    if let Some(a) = &p.path {
        check_parsed_address(a, s);
    }
    Ok(p.params)
}

fn check_address(s: &str, utf8: bool) {
    if let Ok(a) = Address::parse(s, utf8) {
        if !utf8 {
            assert!(a.is_ascii(), "non-ASCII address without SMTPUTF8: {s:?}");
        }
        check_parsed_address(&a, s);
    }
}

/// A parsed address is within the limits, and prints as text that parses
/// back to the same address.
fn check_parsed_address(a: &Address, input: &str) {
    assert!(
        a.local.len() <= MAX_LOCAL_PART,
        "local part too long: {input:?}"
    );
    assert!(!a.domain.is_empty(), "empty domain: {input:?}");
    if a.is_domain_literal() {
        assert!(a.domain.ends_with(']'), "{input:?}");
    } else {
        assert_eq!(a.domain, a.domain.to_lowercase(), "domain not lower-cased");
    }
    let shown = a.to_string();
    let bracketed = format!("<{shown}>");
    let again = address::parse_path(&bracketed, true);
    match again {
        Ok(p) => {
            assert_eq!(p.path.as_ref(), Some(a), "{input:?} prints as {shown:?}");
            assert_eq!(p.params, "");
        }
        // Lower-casing can lengthen a non-ASCII domain past a limit.
        Err(PathError::TooLong) if !a.domain.is_ascii() || shown.len() > MAX_PATH => {}
        Err(e) => panic!("{input:?} prints as {shown:?}, which does not parse: {e:?}"),
    }
    assert_eq!(a.key(), format!("{}@{}", a.local, a.domain));
}

fn check_params(s: &str) {
    let Some(params) = address::parse_params(s) else {
        return;
    };
    let words = s.split(' ').filter(|w| !w.is_empty()).count();
    assert_eq!(params.len(), words, "parameters lost in {s:?}");
    for p in &params {
        assert!(within(p.keyword, s));
        assert!(!p.keyword.is_empty());
        assert!(
            p.keyword
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-'),
            "bad keyword {:?}",
            p.keyword
        );
        if let Some(v) = p.value {
            assert!(within(v, s));
            assert!(!v.is_empty(), "empty value in {s:?}");
            assert!(
                v.bytes().all(|c| c > b' ' && c != b'=' && c != 127),
                "bad value {v:?}"
            );
        }
    }
}

// --- data -----------------------------------------------------------------------

#[derive(Debug, PartialEq, Eq)]
struct Decoded {
    out: Vec<u8>,
    error: Option<DataError>,
    done: bool,
    consumed: usize,
    size: u64,
}

pub fn data(data: &[u8]) {
    let Some((&limits, rest)) = data.split_first() else {
        return;
    };
    let Some((&k, rest)) = rest.split_first() else {
        return;
    };
    let k = ((k & 7) as usize).min(rest.len());
    let (cuts, input) = rest.split_at(k);
    let max_line = match limits & 0x0f {
        0 => 1000,
        n => n as usize * 4 - 4, // 0..=56: also below the decoder's floor of 3
    };
    let max_size = match limits >> 4 {
        0 => 1 << 20,
        n => n as u64 * 16 - 16, // 0..=224
    };
    let new = || DataDecoder::new(max_size, max_line);

    // All at once.
    let mut d = new();
    let consumed = d.feed(input);
    assert!(consumed <= input.len(), "consumed more than given");
    if !d.is_done() {
        assert_eq!(consumed, input.len(), "stopped early without the end");
    }
    if d.error().is_some() {
        assert_eq!(d.pending_output(), 0, "kept output of a refused message");
    }
    let pending = d.pending_output();
    let out = d.take_output();
    assert_eq!(out.len(), pending);
    assert_eq!(d.pending_output(), 0);
    let whole = Decoded {
        out,
        error: d.error(),
        done: d.is_done(),
        consumed,
        size: d.size(),
    };
    if whole.done {
        assert_eq!(d.feed(&input[consumed..]), 0, "took input after the end");
        assert_eq!(d.feed(b"x\r\n.\r\n"), 0, "took input after the end");
        assert_eq!(d.pending_output(), 0, "output after the end");
    }

    // Byte by byte, and in the fuzzer's chunks.
    let bytewise = feed_chunks(new(), input, std::iter::repeat(1));
    let chunked = feed_chunks(new(), input, cuts.iter().map(|&c| c as usize));
    for (how, other) in [("byte by byte", &bytewise), ("in chunks", &chunked)] {
        assert_eq!(other.error, whole.error, "{how}: error differs");
        assert_eq!(other.done, whole.done, "{how}: end differs");
        assert_eq!(other.consumed, whole.consumed, "{how}: consumed differs");
        assert_eq!(other.size, whole.size, "{how}: size differs");
        if whole.error.is_none() {
            assert_eq!(other.out, whole.out, "{how}: output differs");
        }
    }

    // The end is the first CRLF.CRLF (or .CRLF at the very start), nothing else.
    let end = find_end(input);
    assert_eq!(whole.done, end.is_some(), "end of data misplaced");
    if let Some(end) = end {
        assert_eq!(consumed, end, "end of data misplaced");
        let used = &input[..consumed];
        assert!(
            used.ends_with(b"\r\n.\r\n") || used == b".\r\n",
            "ended on {:?}",
            String::from_utf8_lossy(used)
        );
        // A reference decoder for complete messages.
        let body = &input[..end - 3]; // without the final ".\r\n"
        let lines: Vec<&[u8]> = if body.is_empty() {
            Vec::new()
        } else {
            body.strip_suffix(b"\r\n")
                .expect("body ends with CRLF")
                .split(|&c| c == b'\n')
                .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
                .collect()
        };
        let mut reference = Vec::new();
        let mut size = 0u64;
        let mut bare = body.windows(2).any(|w| (w[0] == b'\r') != (w[1] == b'\n'))
            || body.first() == Some(&b'\n');
        let mut too_long = false;
        for l in &lines {
            bare |= l.contains(&b'\r');
            too_long |= l.len() + 2 > max_line.max(3);
            let unstuffed = l.strip_prefix(b".").unwrap_or(l);
            reference.extend_from_slice(unstuffed);
            reference.push(b'\n');
            size += unstuffed.len() as u64 + 2;
        }
        let expect_error = bare || too_long || size > max_size;
        assert_eq!(
            whole.error.is_some(),
            expect_error,
            "error {:?}, bare {bare}, too long {too_long}, size {size}",
            whole.error
        );
        if bare && !too_long && size <= max_size {
            assert!(
                matches!(whole.error, Some(DataError::BareCr | DataError::BareLf)),
                "bare CR/LF reported as {:?}",
                whole.error
            );
        }
        if !expect_error {
            assert_eq!(whole.out, reference, "output differs from the reference");
            assert_eq!(whole.size, size, "size differs from the reference");
        }
    }
    if whole.error.is_none() {
        assert!(!whole.out.contains(&b'\r'), "CR in the output");
    }
}

/// Index just past the first end-of-data marker, if any.
fn find_end(input: &[u8]) -> Option<usize> {
    if input.starts_with(b".\r\n") {
        return Some(3);
    }
    input
        .windows(5)
        .position(|w| w == b"\r\n.\r\n")
        .map(|i| i + 5)
}

fn feed_chunks(mut d: DataDecoder, input: &[u8], sizes: impl Iterator<Item = usize>) -> Decoded {
    let mut out = Vec::new();
    let mut consumed = 0;
    let mut pos = 0;
    let mut sizes = sizes.fuse();
    while pos < input.len() {
        let n = sizes.next().unwrap_or(input.len()).max(1);
        let chunk = &input[pos..(pos + n).min(input.len())];
        let had_error = d.error().is_some();
        let was_done = d.is_done();
        let used = d.feed(chunk);
        assert!(used <= chunk.len());
        if was_done {
            assert_eq!(used, 0, "took input after the end");
        } else if !d.is_done() {
            assert_eq!(used, chunk.len(), "stopped early without the end");
        }
        consumed += used;
        let o = d.take_output();
        if had_error {
            assert!(o.is_empty(), "output after the message was refused");
        }
        out.extend(o);
        pos += chunk.len();
    }
    Decoded {
        out,
        error: d.error(),
        done: d.is_done(),
        consumed,
        size: d.size(),
    }
}

// --- session --------------------------------------------------------------------

/// Answer bits, used in turn.
struct Bits {
    bits: u16,
    i: u32,
}

impl Bits {
    fn next(&mut self) -> bool {
        let b = self.bits >> (self.i % 16) & 1 == 1;
        self.i += 1;
        b
    }
}

enum Event {
    Bytes(Vec<u8>),
    Timeout,
}

fn session_config(flags: u8) -> SessionConfig {
    let mut c = SessionConfig {
        hostname: "mx.example.test".into(),
        origin: "example.test".into(),
        helo_required: flags & 1 != 0,
        vrfy_enabled: flags & 2 != 0,
        error_delay: Duration::from_millis(100),
        ..SessionConfig::default()
    };
    if flags & 0x20 != 0 {
        c.starttls = true;
        c.auth_enabled = true;
        c.auth_tls_only = flags & 0x40 != 0;
        c.auth_header = flags & 0x40 != 0;
        c.require_auth = flags & 0x80 != 0;
        c.auth_broken_clients = flags & 0x80 == 0;
    }
    match (flags >> 2) & 3 {
        0 => {}
        1 => {
            c.max_message_size = 64;
            c.command_line_limit = 40;
            c.text_line_limit = 30;
            c.recipient_limit = 2;
            c.soft_error_limit = 1;
            c.hard_error_limit = 3;
        }
        2 => {
            c.max_message_size = 0;
            c.command_line_limit = 0;
            c.text_line_limit = 0;
            c.recipient_limit = 0;
            c.soft_error_limit = 0;
            c.hard_error_limit = 0;
        }
        _ => {
            c.recipient_limit = 1000;
            c.soft_error_limit = 1000;
            c.hard_error_limit = 1000;
        }
    }
    c
}

/// Splits the client's bytes into events (see the module comment).
fn events(stream: &[u8], max_chunk: usize) -> Vec<Event> {
    let mut ev = Vec::new();
    let mut cur = Vec::new();
    let flush = |cur: &mut Vec<u8>, ev: &mut Vec<Event>| {
        if !cur.is_empty() {
            ev.push(Event::Bytes(std::mem::take(cur)));
        }
    };
    let mut i = 0;
    while i < stream.len() {
        let c = stream[i];
        i += 1;
        if c == 0xFF {
            match stream.get(i) {
                Some(0xFF) => {
                    i += 1;
                    cur.push(0xFF);
                }
                Some(0xFE) => {
                    i += 1;
                    flush(&mut cur, &mut ev);
                    ev.push(Event::Timeout);
                }
                _ => flush(&mut cur, &mut ev),
            }
        } else {
            cur.push(c);
        }
        if max_chunk > 0 && cur.len() >= max_chunk {
            flush(&mut cur, &mut ev);
        }
    }
    flush(&mut cur, &mut ev);
    ev
}

/// Checks the wire form of a reply: every line `NNN-text` or `NNN text`
/// (the last), ending with CRLF and holding no other CR or LF.
fn check_reply(r: &Reply) {
    assert!((200..=599).contains(&r.code), "reply code {}", r.code);
    let wire = r.to_wire();
    assert!(wire.ends_with(b"\r\n"), "reply does not end with CRLF");
    let lines: Vec<&[u8]> = wire.split_inclusive(|&c| c == b'\n').collect();
    for (i, l) in lines.iter().enumerate() {
        let show = String::from_utf8_lossy(l);
        assert!(
            l.len() >= 6 && l.ends_with(b"\r\n"),
            "bad reply line {show:?}"
        );
        assert!(l[..3].iter().all(u8::is_ascii_digit), "no code in {show:?}");
        assert_eq!(
            &l[..3],
            r.code.to_string().as_bytes(),
            "code changes: {show:?}"
        );
        let sep = if i + 1 == lines.len() { b' ' } else { b'-' };
        assert_eq!(l[3], sep, "bad continuation mark in {show:?}");
        let body = &l[..l.len() - 2];
        assert!(!body.contains(&b'\r'), "bare CR in reply line {show:?}");
        assert!(std::str::from_utf8(l).is_ok(), "reply not UTF-8");
    }
}

struct Driver {
    s: Session,
    cfg: Arc<SessionConfig>,
    bits: Bits,
    now: i64,
    /// Everything fed so far; the unconsumed part is its tail.
    fed: Vec<u8>,
    closed: bool,
    /// Between an accepted StartData and Commit/Discard.
    receiving: bool,
    /// Recipients accepted since the last MAIL reply or finished message.
    accepted: Vec<Address>,
    ids: u32,
    steps: usize,
    max_steps: usize,
    /// Line ends consumed outside DATA, and the replies that answer them:
    /// one each, in order, however the input was split (RFC 2920 3).
    cmd_lines: usize,
    cmd_replies: usize,
    greeted: bool,
    /// The next reply is the one to the end of data.
    data_end_reply: bool,
    /// The next Body is the Received: header.
    expect_trace: bool,
    /// TLS is up (after STARTTLS and a handshake).
    tls: bool,
    /// The session said `220 Ready to start TLS`; the handshake is next.
    tls_pending: bool,
    /// The handshake failed: the driver hung up without a word.
    hung_up: bool,
    /// A login succeeded (since the last TLS start).
    logged_in: bool,
    /// Failed logins in this session.
    auth_failures: u32,
    /// The failed login just answered was the last one allowed: its 535
    /// comes next, ...
    last_failure: bool,
    /// ... and then `421` for the same line, and the session closes.
    expect_421: bool,
    /// A HELO/EHLO was answered since TLS started.
    hello_in_tls: bool,
}

/// The Received: header is one header, folded, whatever the client's HELO
/// name and addresses hold; it names TLS and the user when it should.
fn check_trace_header(h: &[u8], tls: bool, auth_user_shown: bool) {
    let text = std::str::from_utf8(h).expect("Received: header is not UTF-8");
    assert_eq!(
        text.contains("\n\t(using TLSv1.3 with cipher "),
        tls,
        "{text:?}"
    );
    assert_eq!(
        text.contains("\n\t(Authenticated sender: "),
        auth_user_shown,
        "{text:?}"
    );
    assert!(text.starts_with("Received: from "), "{text:?}");
    let body = text
        .strip_suffix('\n')
        .expect("header does not end its line");
    for cont in body.split('\n').skip(1) {
        assert!(cont.starts_with('\t'), "unfolded header line in {text:?}");
    }
    assert!(!text.contains('\0'), "NUL in {text:?}");
}

impl Driver {
    fn consumed(&self) -> usize {
        self.fed.len() - self.s.buffered()
    }

    /// Without SMTPUTF8, a MAIL or RCPT that gets through was ASCII on the
    /// wire (RFC 6531 3.4); `before..after` is the command line just handled.
    fn check_ascii(&self, before: usize, after: usize) {
        let env = self.s.envelope().expect("a transaction");
        let line = &self.fed[before..after];
        assert!(
            env.smtputf8 || line.is_ascii(),
            "non-ASCII address accepted without SMTPUTF8: {:?}",
            String::from_utf8_lossy(line)
        );
    }

    /// AUTH is on offer now.
    fn auth_offered(&self) -> bool {
        self.cfg.auth_enabled && (self.tls || !self.cfg.auth_tls_only)
    }

    /// The longest line the session may hold while waiting for its end.
    fn line_limit(&self) -> usize {
        if self.auth_offered() {
            // RFC 4954 4: AUTH lines and SASL responses may be 12288 octets.
            self.cfg.command_line_limit.max(12_288)
        } else {
            self.cfg.command_line_limit
        }
    }

    /// STARTTLS said 220: everything behind its line was thrown away
    /// (CVE-2011-0411). `after` is what was consumed by then.
    fn check_starttls_discard(&mut self, after: usize) {
        assert!(
            self.cfg.starttls,
            "220 Ready to start TLS while STARTTLS is off"
        );
        assert!(!self.tls, "STARTTLS accepted inside TLS");
        assert!(!self.tls_pending, "two STARTTLS accepted");
        assert_eq!(self.s.buffered(), 0, "input kept behind STARTTLS");
        assert_eq!(after, self.fed.len(), "input kept behind STARTTLS");
        let discarded = self.s.discarded_after_starttls();
        assert!(discarded <= after);
        let line_end = after - discarded;
        let head = &self.fed[..line_end];
        assert!(head.ends_with(b"\n"), "discard does not start after a line");
        let start = head[..head.len() - 1]
            .iter()
            .rposition(|&c| c == b'\n')
            .map_or(0, |i| i + 1);
        let line = &head[start..];
        assert!(
            line.len() >= 8 && line[..8].eq_ignore_ascii_case(b"STARTTLS"),
            "220 Ready to start TLS answers {:?}",
            String::from_utf8_lossy(line)
        );
        // Discarded lines are never answered.
        let dropped = self.fed[line_end..after]
            .iter()
            .filter(|&&c| c == b'\n')
            .count();
        self.cmd_lines -= dropped;
        self.tls_pending = true;
    }

    /// What EHLO announces follows the state: STARTTLS before TLS only,
    /// AUTH when it may be used.
    fn check_ehlo(&self, r: &Reply) {
        let lines: Vec<&str> = r.text.split('\n').collect();
        assert_eq!(
            lines.contains(&"STARTTLS"),
            self.cfg.starttls && !self.tls,
            "STARTTLS offer wrong: {lines:?}"
        );
        let auth = self.auth_offered();
        assert_eq!(
            lines.contains(&"AUTH PLAIN LOGIN"),
            auth,
            "AUTH offer wrong: {lines:?}"
        );
        assert_eq!(
            lines.contains(&"AUTH=PLAIN LOGIN"),
            auth && self.cfg.auth_broken_clients,
            "{lines:?}"
        );
    }

    fn check_replies(&self) {
        assert!(!self.data_end_reply, "no reply to the end of data");
        assert!(
            !self.expect_421 && !self.last_failure,
            "no 535 + 421 after the last allowed failed login"
        );
        assert_eq!(
            self.cmd_lines, self.cmd_replies,
            "command lines and replies do not pair up"
        );
    }

    /// Steps until the session needs input or closes.
    fn run(&mut self) {
        if self.hung_up {
            return;
        }
        loop {
            self.steps += 1;
            assert!(self.steps <= self.max_steps, "session does not stop");
            self.now += 1;
            let before = self.consumed();
            let was_data = self.s.in_data();
            let step = self.s.step(self.now);
            let after = self.consumed();
            assert!(after >= before, "consumed input came back");
            if !was_data {
                self.cmd_lines += self.fed[before..after]
                    .iter()
                    .filter(|&&c| c == b'\n')
                    .count();
            }
            if self.closed {
                assert!(matches!(step, Step::Close), "{step:?} after Close");
                return;
            }
            match step {
                Step::Reply {
                    reply: r,
                    delay,
                    rejected,
                } => {
                    check_reply(&r);
                    if rejected.is_some() {
                        assert!(r.code >= 400, "rejected with a positive reply {r:?}");
                    }
                    assert!(delay <= self.cfg.error_delay, "delay {delay:?}");
                    if r == reply::SENDER_OK {
                        self.accepted.clear();
                        self.check_ascii(before, after);
                        if self.cfg.require_auth {
                            assert!(
                                self.logged_in,
                                "MAIL accepted before AUTH on a require_auth listener"
                            );
                        }
                        if self.tls && self.cfg.helo_required {
                            // RFC 3207 4.2: the EHLO before STARTTLS is forgotten.
                            assert!(
                                self.hello_in_tls,
                                "MAIL accepted inside TLS without a new EHLO"
                            );
                        }
                    }
                    if r.code == 250 && r.esc.is_none() && self.greeted {
                        // The answer to HELO or EHLO.
                        self.hello_in_tls = self.tls;
                        if r.text.contains('\n') {
                            self.check_ehlo(&r);
                        }
                    }
                    if r == reply::AUTH_NEEDS_TLS {
                        assert!(
                            self.cfg.auth_enabled && !self.auth_offered(),
                            "538 while AUTH is offered"
                        );
                    }
                    if r == reply::AUTH_ALREADY {
                        assert!(self.logged_in, "already authenticated, but not logged in");
                    }
                    if r == reply::READY_FOR_TLS {
                        self.check_starttls_discard(after);
                    }
                    if r == reply::AUTH_TOO_MANY_FAILURES {
                        // The second reply to the line of the last failed
                        // login; the session closes next.
                        assert!(
                            std::mem::take(&mut self.expect_421),
                            "421 for failed logins without the last failure"
                        );
                        let next = self.s.step(self.now);
                        assert!(matches!(next, Step::Close), "{next:?} after 421");
                        self.check_replies();
                        self.closed = true;
                        continue;
                    }
                    assert!(
                        !self.expect_421,
                        "{r:?} instead of 421 after the last failed login"
                    );
                    if std::mem::take(&mut self.last_failure) {
                        assert_eq!(r, reply::AUTH_INVALID, "the last failed login");
                        self.expect_421 = true;
                    }
                    if !self.greeted {
                        assert_eq!(r.code, 220, "greeting {r:?}");
                        self.greeted = true;
                    } else if r.code == 354 {
                        // The first of DATA's two replies.
                        assert!(self.receiving, "354 without an accepted StartData");
                        self.cmd_replies += 1;
                    } else if std::mem::take(&mut self.data_end_reply) {
                        assert!(!self.receiving);
                    } else {
                        self.cmd_replies += 1;
                    }
                }
                Step::Ask(Question::Mail { size }) => {
                    assert!(!self.receiving, "MAIL question during DATA");
                    assert!(
                        self.cfg.max_message_size == 0 || size <= self.cfg.max_message_size,
                        "a SIZE over the limit is refused before the question"
                    );
                    if self.bits.next() || self.bits.next() {
                        self.s.answer(Answer::Mail(Ok(())));
                    } else {
                        self.s
                            .answer(Answer::Mail(Err(reply::INSUFFICIENT_STORAGE)));
                    }
                }
                Step::Ask(Question::Recipient(a)) => {
                    assert!(!self.receiving, "RCPT question during DATA");
                    self.check_ascii(before, after);
                    check_parsed_address(&a, "(question)");
                    if self.bits.next() {
                        self.accepted.push(a);
                        self.s.answer(Answer::Recipient(Ok(())));
                    } else {
                        let r = if self.bits.next() {
                            reply::unknown_user(&a.to_string())
                        } else {
                            Reply::new(450, Esc(4, 1, 1), format!("<{a}>: try later"))
                        };
                        self.s.answer(Answer::Recipient(Err(r)));
                    }
                }
                Step::Ask(Question::Verify(a)) => {
                    assert!(self.cfg.vrfy_enabled, "VRFY question while disabled");
                    check_parsed_address(&a, "(question)");
                    let v = if self.bits.next() {
                        Ok(())
                    } else {
                        Err(reply::unknown_user(&a.to_string()))
                    };
                    self.s.answer(Answer::Recipient(v));
                }
                Step::Ask(Question::StartData) => {
                    assert!(!self.receiving, "StartData during DATA");
                    assert!(
                        !self.accepted.is_empty(),
                        "StartData without an accepted RCPT"
                    );
                    let env = self.s.envelope().expect("StartData without a transaction");
                    assert!(!env.recipients.is_empty(), "StartData without recipients");
                    if env.protocol != "SMTP" {
                        assert_eq!(env.protocol.contains("SMTPS"), self.tls, "{}", env.protocol);
                        assert_eq!(
                            env.protocol.ends_with('A'),
                            self.logged_in,
                            "{}",
                            env.protocol
                        );
                    }
                    for r in &env.recipients {
                        assert!(self.accepted.contains(r), "{r} was never accepted");
                    }
                    if self.bits.next() {
                        self.ids += 1;
                        self.receiving = true;
                        self.expect_trace = true;
                        self.s
                            .answer(Answer::DataStart(Ok(format!("4Q{:05X}", self.ids))));
                    } else {
                        let r = Reply::fixed(451, Esc(4, 3, 0), "Error: queue file write error");
                        self.s.answer(Answer::DataStart(Err(r)));
                    }
                }
                Step::Body(b) => {
                    assert!(self.receiving, "Body outside DATA");
                    assert!(!b.contains(&b'\r'), "CR in the spooled body");
                    if std::mem::take(&mut self.expect_trace) {
                        check_trace_header(&b, self.tls, self.logged_in && self.cfg.auth_header);
                    }
                }
                Step::Discard => {
                    assert!(self.receiving, "Discard outside DATA");
                    self.receiving = false;
                    self.accepted.clear();
                    self.data_end_reply = true;
                }
                Step::Ask(Question::Commit) => {
                    assert!(self.receiving, "Commit outside DATA");
                    assert!(!self.s.in_data(), "Commit before the end of data");
                    self.receiving = false;
                    self.accepted.clear();
                    self.data_end_reply = true;
                    let a = if self.bits.next() {
                        Ok(format!("4Q{:05X}", self.ids))
                    } else {
                        Err(Reply::fixed(
                            451,
                            Esc(4, 3, 0),
                            "Error: queue file write error",
                        ))
                    };
                    self.s.answer(Answer::Commit(a));
                }
                Step::StartTls => {
                    assert!(
                        std::mem::take(&mut self.tls_pending),
                        "StartTls without 220 Ready to start TLS"
                    );
                    if self.bits.next() {
                        self.s.tls_started(TlsInfo {
                            version: "TLSv1.3".into(),
                            cipher: "TLS_AES_128_GCM_SHA256".into(),
                        });
                        self.tls = true;
                        self.logged_in = false;
                        self.hello_in_tls = false;
                        self.accepted.clear();
                        assert_eq!(self.s.buffered(), 0, "plaintext kept into TLS");
                        assert!(self.s.envelope().is_none(), "transaction kept into TLS");
                        assert!(self.s.auth_user().is_none(), "login kept into TLS");
                    } else {
                        // The handshake failed: the driver closes at once.
                        self.check_replies();
                        self.hung_up = true;
                        return;
                    }
                }
                Step::Ask(Question::Authenticate {
                    mechanism,
                    credentials,
                }) => {
                    assert!(
                        self.auth_offered(),
                        "AUTH checked while not offered ({mechanism:?})"
                    );
                    assert!(!self.logged_in, "AUTH checked twice");
                    assert!(
                        self.s.envelope().is_none(),
                        "AUTH checked inside a transaction"
                    );
                    assert!(!credentials.authcid.is_empty(), "empty login name");
                    assert!(!credentials.password.expose().is_empty(), "empty password");
                    assert!(!credentials.authcid.contains('\0'), "NUL in the login name");
                    let a = if self.bits.next() {
                        Ok(credentials.authcid.clone())
                    } else if self.bits.next() {
                        Err(AuthFailure::Invalid)
                    } else if self.bits.next() {
                        Err(AuthFailure::Temporary)
                    } else {
                        Err(AuthFailure::Throttled)
                    };
                    match &a {
                        Ok(_) => self.logged_in = true,
                        Err(AuthFailure::Invalid) => {
                            self.auth_failures += 1;
                            if self.auth_failures >= self.cfg.auth_session_failures {
                                self.last_failure = true;
                            }
                        }
                        Err(_) => {}
                    }
                    self.s.answer(Answer::Auth(a));
                    assert_eq!(self.s.auth_user().is_some(), self.logged_in);
                }
                Step::NeedInput => {
                    self.check_replies();
                    let left = &self.fed[self.fed.len() - self.s.buffered()..];
                    if self.s.in_data() {
                        assert!(left.is_empty(), "DATA waits with input buffered");
                    } else if self.tls_pending {
                        // Waiting for the handshake: nothing read yet.
                        assert!(left.is_empty(), "input kept behind STARTTLS");
                    } else {
                        assert!(!left.contains(&b'\n'), "waits with a full line buffered");
                        assert!(left.len() <= self.line_limit(), "buffers an over-long line");
                    }
                    return;
                }
                Step::Close => {
                    self.check_replies();
                    self.closed = true;
                    // And it stays closed.
                    for _ in 0..2 {
                        let again = self.s.step(self.now);
                        assert!(matches!(again, Step::Close), "{again:?} after Close");
                    }
                }
            }
        }
    }
}

pub fn session(data: &[u8]) {
    if data.len() < 4 {
        return;
    }
    let (head, stream) = data.split_at(4);
    let cfg = Arc::new(session_config(head[0]));
    let ip = if head[0] & 0x10 != 0 {
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1))
    } else {
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))
    };
    let peer = Peer {
        ip,
        port: 40000,
        name: "unknown".into(),
        uid: None,
    };
    let now = 1_700_000_000;
    let mut d = Driver {
        s: Session::new(cfg.clone(), peer, now),
        cfg,
        bits: Bits {
            bits: u16::from_le_bytes([head[1], head[2]]),
            i: 0,
        },
        now,
        fed: Vec::new(),
        closed: false,
        receiving: false,
        accepted: Vec::new(),
        ids: 0,
        steps: 0,
        max_steps: 64 + 8 * stream.len(),
        cmd_lines: 0,
        cmd_replies: 0,
        greeted: false,
        data_end_reply: false,
        expect_trace: false,
        tls: false,
        tls_pending: false,
        hung_up: false,
        logged_in: false,
        auth_failures: 0,
        last_failure: false,
        expect_421: false,
        hello_in_tls: false,
    };
    d.run();
    for ev in events(stream, head[3] as usize) {
        if d.hung_up {
            break;
        }
        match ev {
            Event::Bytes(b) => {
                d.fed.extend_from_slice(&b);
                d.s.feed(&b);
            }
            Event::Timeout => {
                if d.closed {
                    continue;
                }
                let r = d.s.timeout();
                check_reply(&r);
                assert_eq!(r.code, 421, "timeout reply {r:?}");
                // The driver sends it and hangs up; the session says so too.
                let next = d.s.step(d.now);
                assert!(matches!(next, Step::Close), "{next:?} after a timeout");
                d.closed = true;
            }
        }
        d.run();
    }
}
