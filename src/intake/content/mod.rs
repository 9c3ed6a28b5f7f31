//! Header and body checks applied to a message while it is received
//! (Postfix cleanup(8) with header_checks, mime_header_checks,
//! nested_header_checks and body_checks), between the SMTP session and the
//! sink, so that both roads — the queue and the direct Maildir write — get
//! the same, already changed bytes.
//!
//! - Headers are gathered into logical headers (folded lines joined by
//!   `\n`, at most [`HEADER_MATCH_LIMIT`] bytes of each are matched) and
//!   each goes through its table once; IGNORE/STRIP drop it, REPLACE
//!   writes another line in its place, PREPEND a line before it. Nothing
//!   of the header section is passed on before its end, so what decides
//!   the message's road (HOLD, FILTER, REDIRECT, BCC, DISCARD) is known
//!   before the sink is opened, unless a body line decides it.
//! - `Received:` and `Delivered-To:` headers are counted before any rule
//!   sees them: loop detection survives `/^Received:/ IGNORE`.
//! - MIME: part headers (after a `--boundary` line) go through
//!   mime_header_checks, the headers of an attached message/rfc822 through
//!   the header table (Postfix's nested_header_checks default); body lines
//!   through body_checks, the first [`BODY_CHECK_LIMIT`] bytes of each part
//!   as Postfix's body_checks_size_limit. Boundaries come from the
//!   Content-Type headers (parsed with mailparse); nesting is followed to
//!   [`MIME_DEPTH`] levels.
//! - Once a rule says REJECT, DISCARD, PASS or REDIRECT no later line is
//!   checked (as in Postfix); the bytes still flow.
//!
//! Pure: input bytes with LF line ends in any chunking, output bytes and
//! a [`Verdict`]; the caller logs [`Event`]s and acts.

use std::sync::Arc;

#[cfg(test)]
use super::rules::Kind;
use super::rules::{Action, Table};

/// Bytes of one logical header given to the rules (Postfix's
/// header_size_limit); the header itself is passed on whole.
pub const HEADER_MATCH_LIMIT: usize = 102_400;
/// Bytes of each body part checked (body_checks_size_limit).
pub const BODY_CHECK_LIMIT: usize = 51_200;
/// MIME multiparts followed this deep (mime_nesting_limit is 100).
pub const MIME_DEPTH: usize = 100;

/// Tables consulted in order, the first match of any winning (Postfix's
/// `header_checks = regexp:a, regexp:b`).
#[derive(Default)]
pub struct Tables(pub Vec<Table>);

impl Tables {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The first matching rule, with its table's file.
    pub fn first_match(&self, input: &[u8]) -> Option<(String, super::rules::Hit)> {
        self.0
            .iter()
            .find_map(|t| t.first_match(input).map(|h| (t.file().to_string(), h)))
    }
}

/// The tables of `[content]`, read with the config.
#[derive(Default)]
pub struct ContentRules {
    pub header: Tables,
    /// Empty: the header tables apply to MIME part headers too.
    pub mime_header: Tables,
    pub body: Tables,
}

impl std::fmt::Debug for ContentRules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names = |t: &Tables| t.0.iter().map(|t| t.file().to_string()).collect::<Vec<_>>();
        f.debug_struct("ContentRules")
            .field("header", &names(&self.header))
            .field("mime_header", &names(&self.mime_header))
            .field("body", &names(&self.body))
            .finish()
    }
}

impl ContentRules {
    pub fn is_empty(&self) -> bool {
        self.header.is_empty() && self.mime_header.is_empty() && self.body.is_empty()
    }

    fn mime(&self) -> &Tables {
        if self.mime_header.is_empty() {
            &self.header
        } else {
            &self.mime_header
        }
    }
}

/// Where a rule matched, for the log (Postfix: "header Subject: ...").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    Header,
    MimeHeader,
    NestedHeader,
    Body,
}

impl Place {
    pub fn name(self) -> &'static str {
        match self {
            Place::Header => "header",
            Place::MimeHeader => "mime-header",
            Place::NestedHeader => "nested-header",
            Place::Body => "body",
        }
    }
}

/// A rule that fired, for the log: what matched (cut short), the table's
/// file and line, and the action.
#[derive(Clone, Debug)]
pub struct Event {
    pub place: Place,
    pub text: String,
    pub file: String,
    pub line: usize,
    pub action: Action,
}

/// What the rules decided about the whole message.
#[derive(Clone, Debug, Default)]
pub struct Verdict {
    /// REJECT: the reply at the end of DATA.
    pub reject: Option<crate::smtp::reply::Reply>,
    /// DISCARD: accept and drop, with this text.
    pub discard: Option<String>,
    /// HOLD: into the hold queue, with this text.
    pub hold: Option<String>,
    /// FILTER: the next hop of the content filter to pass.
    pub filter: Option<String>,
    /// REDIRECT: every recipient replaced by this address.
    pub redirect: Option<String>,
    /// BCC: these recipients added.
    pub bcc: Vec<String>,
}

impl Verdict {
    /// Does the message's envelope or place change (HOLD, FILTER,
    /// REDIRECT, BCC)?
    pub fn reroutes(&self) -> bool {
        self.hold.is_some()
            || self.filter.is_some()
            || self.redirect.is_some()
            || !self.bcc.is_empty()
    }

    /// Applies FILTER, REDIRECT and BCC to an envelope; false when an
    /// address cannot be parsed (the rule's text is checked at load, so
    /// this is `$n` bringing in junk): the change is then left out.
    pub fn apply(&self, env: &mut crate::queue::envelope::QueueEnvelope) -> bool {
        use crate::smtp::address::Address;
        let mut ok = true;
        if let Some(f) = &self.filter {
            env.handling.filter = Some(f.clone());
        }
        if let Some(r) = &self.redirect {
            match Address::parse(r, true) {
                Ok(a) => env.recipients = vec![a],
                Err(_) => ok = false,
            }
        }
        for b in &self.bcc {
            match Address::parse(b, true) {
                Ok(a) if !env.recipients.contains(&a) => env.recipients.push(a),
                Ok(_) => {}
                Err(_) => ok = false,
            }
        }
        ok
    }
}

/// `transport:destination` of a FILTER action → the next hop
/// (`smtp:[127.0.0.1]:10026` → `[127.0.0.1]:10026`).
pub fn filter_hop(target: &str) -> &str {
    match target.split_once(':') {
        Some((transport, rest)) if !transport.starts_with('[') && !rest.is_empty() => rest,
        _ => target,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// The message's own header section.
    Headers,
    /// Headers of a MIME part.
    PartHeaders,
    /// Headers of an attached message (message/rfc822).
    NestedHeaders,
    Body,
}

/// What the part whose headers are being read is.
#[derive(Clone, Debug, Default)]
struct PartType {
    boundary: Option<String>,
    message: bool,
    digest: bool,
}

pub struct Scanner {
    rules: Arc<ContentRules>,
    /// The content filter's way back: the header rules' rewrites (IGNORE,
    /// STRIP, REPLACE) again, so what the filter added obeys them too;
    /// nothing else (the decisions, PREPEND and the body and MIME checks
    /// already ran on the first pass).
    rewrite_only: bool,
    state: State,
    /// A line not yet ended by LF.
    partial: Vec<u8>,
    /// The logical header being gathered (its lines, LF included).
    header: Vec<u8>,
    /// Its type, as far as the headers read tell.
    part: PartType,
    /// Open multiparts, innermost last: their boundaries and whether they
    /// are digests (parts default to message/rfc822).
    boundaries: Vec<(String, bool)>,
    /// Body bytes checked in this part.
    body_checked: usize,
    /// A rule said stop (REJECT, DISCARD, PASS, REDIRECT).
    done: bool,
    /// Received: and Delivered-To: in the message's own header section.
    pub hops: u32,
    out: Vec<u8>,
    /// Headers to add where the message has none of their kind (local
    /// submissions: From:, Date:, Message-ID:), as (lower-case name, line).
    missing: Vec<(&'static str, String)>,
    /// Local submissions: the domain bare names in address headers get.
    qualify: Option<String>,
    pub verdict: Verdict,
    pub events: Vec<Event>,
}

impl Scanner {
    pub fn new(rules: Arc<ContentRules>, rewrite_only: bool) -> Scanner {
        Scanner {
            rules,
            rewrite_only,
            state: State::Headers,
            partial: Vec::new(),
            header: Vec::new(),
            part: PartType::default(),
            boundaries: Vec::new(),
            body_checked: 0,
            done: false,
            hops: 0,
            out: Vec::new(),
            missing: Vec::new(),
            qualify: None,
            verdict: Verdict::default(),
            events: Vec::new(),
        }
    }

    /// Adds `From: <from>`, `Date:` and `Message-ID:` at the end of the
    /// message's header section where it has none (Postfix's cleanup does
    /// this for mail submitted on the host).
    pub fn add_missing(&mut self, from: &str, date: &str, message_id: &str) {
        self.missing = vec![
            ("from", format!("From: {from}\n")),
            ("date", format!("Date: {date}\n")),
            ("message-id", format!("Message-ID: <{message_id}>\n")),
        ];
    }

    /// Bare names in the message's address headers get `@origin`
    /// (local submissions; see qualify.rs).
    pub fn qualify_addresses(&mut self, origin: &str) {
        self.qualify = Some(origin.to_string());
    }

    /// Writes the headers still missing (at the end of the section).
    fn write_missing(&mut self) {
        for (_, line) in std::mem::take(&mut self.missing) {
            self.out.extend_from_slice(line.as_bytes());
        }
    }

    /// Is the message's own header section complete (its verdict so far
    /// final unless a body line changes it)?
    pub fn past_headers(&self) -> bool {
        self.state != State::Headers
    }

    /// Takes message bytes (LF line ends); returns what to pass on.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<u8> {
        let mut rest = bytes;
        while let Some(n) = rest.iter().position(|&c| c == b'\n') {
            let (line, tail) = rest.split_at(n + 1);
            rest = tail;
            if self.partial.is_empty() {
                self.line(line);
            } else {
                let mut l = std::mem::take(&mut self.partial);
                l.extend_from_slice(line);
                self.line(&l);
            }
        }
        self.partial.extend_from_slice(rest);
        // The header section is passed on whole, once its rules are done.
        if self.state == State::Headers {
            return Vec::new();
        }
        std::mem::take(&mut self.out)
    }

    /// The end of the message: whatever is still held back.
    pub fn finish(&mut self) -> Vec<u8> {
        if !self.partial.is_empty() {
            let mut l = std::mem::take(&mut self.partial);
            if self.state == State::Headers && !self.missing.is_empty() {
                // Headers follow it.
                l.push(b'\n');
            }
            self.line(&l);
        }
        self.end_header();
        if self.state == State::Headers && !self.missing.is_empty() {
            self.write_missing();
            self.out.push(b'\n');
        }
        std::mem::take(&mut self.out)
    }

    fn line(&mut self, line: &[u8]) {
        match self.state {
            State::Headers | State::PartHeaders | State::NestedHeaders => self.header_line(line),
            State::Body => self.body_line(line),
        }
    }

    fn header_line(&mut self, line: &[u8]) {
        let continues = line.first().is_some_and(|&c| c == b' ' || c == b'\t');
        if continues && !self.header.is_empty() {
            self.header.extend_from_slice(line);
            return;
        }
        self.end_header();
        let bare = strip_lf(line);
        let top = self.state == State::Headers;
        if bare.is_empty() {
            // The blank line ends the section.
            if top {
                self.write_missing();
            }
            self.out.extend_from_slice(line);
            self.start_body();
        } else if is_header_start(bare) {
            self.header.extend_from_slice(line);
        } else {
            // Not a header (a missing blank line, or a stray continuation
            // first): the body starts here, as in Postfix.
            if top && !self.missing.is_empty() {
                // Headers added: the blank line that ends them too.
                self.write_missing();
                self.out.push(b'\n');
            }
            self.start_body();
            self.body_line(line);
        }
    }

    /// Checks and passes on the logical header gathered so far.
    fn end_header(&mut self) {
        if self.header.is_empty() {
            return;
        }
        let mut header = std::mem::take(&mut self.header);
        if let (State::Headers, Some(origin)) = (self.state, self.qualify.as_deref()) {
            let name_end = header.iter().position(|&c| c == b':').unwrap_or(0);
            let name = String::from_utf8_lossy(&header[..name_end])
                .trim()
                .to_ascii_lowercase();
            if super::qualify::ADDRESS_FIELDS.contains(&name.as_str()) {
                if let Some(q) = super::qualify::qualify_field(&header, origin) {
                    header = q;
                }
            }
        }
        let text = strip_lf(&header);
        let name_end = text.iter().position(|&c| c == b':').unwrap_or(0);
        let name = String::from_utf8_lossy(&text[..name_end])
            .trim()
            .to_ascii_lowercase();
        if self.state == State::Headers && (name == "received" || name == "delivered-to") {
            self.hops += 1;
        }
        if self.state == State::Headers {
            self.missing.retain(|(n, _)| *n != name);
        }
        if name == "content-type" {
            self.note_content_type(&text[name_end + 1..]);
        }
        let none = Tables::default();
        let rules = self.rules.clone();
        let (place, table) = match self.state {
            State::Headers => (Place::Header, &rules.header),
            _ if self.rewrite_only => (Place::MimeHeader, &none),
            State::PartHeaders => (Place::MimeHeader, rules.mime()),
            _ => (Place::NestedHeader, &rules.header),
        };
        let hit = match self.done {
            false => table.first_match(&text[..text.len().min(HEADER_MATCH_LIMIT)]),
            true => None,
        };
        let hit = hit.filter(|(_, h)| {
            !self.rewrite_only
                || matches!(
                    h.action,
                    Action::Ignore | Action::Strip(_) | Action::Replace(_)
                )
        });
        let Some((file, hit)) = hit else {
            self.out.extend_from_slice(&header);
            return;
        };
        match &hit.action {
            Action::Ignore | Action::Strip(_) => {}
            Action::Replace(line) => {
                self.out.extend_from_slice(line.as_bytes());
                self.out.push(b'\n');
            }
            Action::Prepend(line) => {
                self.out.extend_from_slice(line.as_bytes());
                self.out.push(b'\n');
                self.out.extend_from_slice(&header);
            }
            _ => self.out.extend_from_slice(&header),
        }
        self.decide(place, text, file, hit.line, hit.action);
    }

    fn body_line(&mut self, line: &[u8]) {
        let bare = strip_lf(line);
        if let Some(closing) = self.boundary(bare) {
            self.out.extend_from_slice(line);
            if !closing {
                let digest = self.boundaries.last().is_some_and(|b| b.1);
                self.part = PartType {
                    message: digest,
                    ..PartType::default()
                };
                self.state = State::PartHeaders;
            }
            self.body_checked = 0;
            return;
        }
        let rules = self.rules.clone();
        if rules.body.is_empty()
            || self.done
            || self.rewrite_only
            || self.body_checked >= BODY_CHECK_LIMIT
        {
            self.out.extend_from_slice(line);
            return;
        }
        self.body_checked += line.len();
        let Some((file, hit)) = rules.body.first_match(bare) else {
            self.out.extend_from_slice(line);
            return;
        };
        match &hit.action {
            Action::Ignore | Action::Strip(_) => {}
            Action::Replace(text) => {
                self.out.extend_from_slice(text.as_bytes());
                self.out.push(b'\n');
            }
            Action::Prepend(text) => {
                self.out.extend_from_slice(text.as_bytes());
                self.out.push(b'\n');
                self.out.extend_from_slice(line);
            }
            _ => self.out.extend_from_slice(line),
        }
        let bare = bare.to_vec();
        self.decide(Place::Body, &bare, file, hit.line, hit.action);
    }

    /// The end of a header section: the body of the message, of a part,
    /// or of an attached message starts.
    fn start_body(&mut self) {
        let part = std::mem::take(&mut self.part);
        if let Some(b) = part.boundary {
            if self.boundaries.len() < MIME_DEPTH {
                self.boundaries.push((b, part.digest));
            }
        }
        self.body_checked = 0;
        self.state = if part.message {
            State::NestedHeaders
        } else {
            State::Body
        };
    }

    /// A `--boundary` line of an open multipart: `Some(true)` for the
    /// closing one (which also closes the parts inside it).
    fn boundary(&mut self, line: &[u8]) -> Option<bool> {
        let rest = line.strip_prefix(b"--")?;
        let rest = trim_end(rest);
        let i = self
            .boundaries
            .iter()
            .rposition(|(b, _)| rest.starts_with(b.as_bytes()))?;
        let after = &rest[self.boundaries[i].0.len()..];
        match after {
            b"" => {
                self.boundaries.truncate(i + 1);
                Some(false)
            }
            b"--" => {
                self.boundaries.truncate(i);
                Some(true)
            }
            _ => None,
        }
    }

    fn note_content_type(&mut self, value: &[u8]) {
        let value = String::from_utf8_lossy(value).replace(['\n', '\r'], " ");
        let ct = mailparse::parse_content_type(value.trim());
        let m = ct.mimetype.to_ascii_lowercase();
        self.part.message = m == "message/rfc822" || m == "message/global";
        self.part.digest = m == "multipart/digest";
        self.part.boundary = None;
        if m.starts_with("multipart/") {
            self.part.boundary = ct.params.get("boundary").filter(|b| !b.is_empty()).cloned();
        }
    }

    fn decide(&mut self, place: Place, text: &[u8], file: String, line: usize, action: Action) {
        let v = &mut self.verdict;
        match &action {
            Action::Reject(r) if v.reject.is_none() => v.reject = Some(r.clone()),
            Action::Discard(t) if v.discard.is_none() => v.discard = Some(t.clone()),
            Action::Hold(t) if v.hold.is_none() => v.hold = Some(t.clone()),
            Action::Filter(t) => v.filter = Some(filter_hop(t).to_string()),
            Action::Redirect(a) => v.redirect = Some(a.clone()),
            Action::Bcc(a) if !v.bcc.contains(a) => v.bcc.push(a.clone()),
            _ => {}
        }
        if action.ends_checks() {
            self.done = true;
        }
        if matches!(
            action,
            Action::Ignore | Action::Dunno | Action::Replace(_) | Action::Prepend(_)
        ) {
            return;
        }
        let shown: String = String::from_utf8_lossy(&text[..text.len().min(200)])
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        self.events.push(Event {
            place,
            text: shown,
            file,
            line,
            action,
        });
    }
}

fn strip_lf(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\n").unwrap_or(line)
}

fn trim_end(s: &[u8]) -> &[u8] {
    let n = s
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(0, |i| i + 1);
    &s[..n]
}

/// `name:` with a name of printable ASCII (RFC 5322 2.2), white space
/// allowed before the colon as Postfix allows it.
fn is_header_start(line: &[u8]) -> bool {
    let n = line
        .iter()
        .take_while(|&&c| (33..=126).contains(&c) && c != b':')
        .count();
    if n == 0 {
        return false;
    }
    let rest = &line[n..];
    let ws = rest
        .iter()
        .take_while(|&&c| c == b' ' || c == b'\t')
        .count();
    rest.get(ws) == Some(&b':')
}

#[cfg(test)]
mod tests;
