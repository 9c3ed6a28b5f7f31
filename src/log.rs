//! Log lines: one per event, maillog style, to stderr.
//!
//! The events are a closed set, one function each, so every line has a
//! known shape that users can grep for (`postern: 0Q7ZK3M4B2C: to=<...>,
//! status=sent`). Under systemd (JOURNAL_STREAM set) lines carry a `<N>`
//! priority prefix and no time stamp, journald adds its own; elsewhere they
//! start with an RFC 3339 time. Message bodies and passwords are never
//! passed to this module.

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::IpAddr;
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::smtp::reply::Reply;
use crate::smtp::session::Stats;
use crate::timefmt;

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Err = 3,
    Warning = 4,
    Info = 6,
}

fn journald() -> bool {
    static J: OnceLock<bool> = OnceLock::new();
    *J.get_or_init(|| std::env::var_os("JOURNAL_STREAM").is_some())
}

/// getpid() is a system call each time; the pid does not change.
pub fn pid() -> u32 {
    static PID: OnceLock<u32> = OnceLock::new();
    *PID.get_or_init(std::process::id)
}

fn write(level: Level, msg: &str) {
    let mut line = String::with_capacity(msg.len() + 48);
    if journald() {
        let _ = write!(line, "<{}>", level as u8);
    } else {
        let micros = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros() as i64)
            .unwrap_or(0);
        line.push_str(&timefmt::rfc3339_micros(micros));
        line.push(' ');
    }
    let _ = write!(line, "postern[{}]: ", pid());
    // A log line is one line, whatever a client put into a name.
    line.extend(msg.chars().map(|c| if c.is_control() { '?' } else { c }));
    line.push('\n');
    let batched = BATCH.with(|b| match b.borrow_mut().as_mut() {
        Some(buf) => {
            buf.push_str(&line);
            true
        }
        None => false,
    });
    if !batched {
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }
}

thread_local! {
    /// Lines held back by [`batch`] on this thread.
    static BATCH: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// Runs `f` and writes the lines it logs in one write(2): the events of
/// one message (client=, from=, to=..., removed) cost one system call, and
/// no other thread's line lands in between. Lines stay in order.
pub fn batch<T>(f: impl FnOnce() -> T) -> T {
    let outer = BATCH.with(|b| b.borrow().is_some());
    if outer {
        return f();
    }
    BATCH.with(|b| *b.borrow_mut() = Some(String::with_capacity(1024)));
    let out = f();
    if let Some(lines) = BATCH.with(|b| b.borrow_mut().take()) {
        if !lines.is_empty() {
            let _ = std::io::stderr().lock().write_all(lines.as_bytes());
        }
    }
    out
}

/// `name[ip]` as Postfix writes a client.
pub fn client(name: &str, ip: IpAddr) -> String {
    format!("{name}[{ip}]")
}

pub fn started(what: &str) {
    write(Level::Info, what);
}

pub fn warning(what: &str) {
    write(Level::Warning, &format!("warning: {what}"));
}

pub fn error(what: &str) {
    write(Level::Err, &format!("error: {what}"));
}

pub fn connect(client: &str) {
    write(Level::Info, &format!("connect from {client}"));
}

pub fn disconnect(client: &str, stats: &Stats) {
    let mut s = format!("disconnect from {client}");
    let (mut ok, mut total) = (0, 0);
    for (verb, o, t) in &stats.counts {
        if o == t {
            let _ = write!(s, " {verb}={o}");
        } else {
            let _ = write!(s, " {verb}={o}/{t}");
        }
        ok += o;
        total += t;
    }
    if ok == total {
        let _ = write!(s, " commands={ok}");
    } else {
        let _ = write!(s, " commands={ok}/{total}");
    }
    write(Level::Info, &s);
}

pub fn too_many_connections(client: &str, per_client: bool) {
    let what = if per_client {
        "too many connections from this client"
    } else {
        "too many connections"
    };
    write(
        Level::Warning,
        &format!("warning: {what}: refused {client}"),
    );
}

pub fn timeout(client: &str, in_data: bool) {
    let after = if in_data { "DATA" } else { "command" };
    write(Level::Info, &format!("timeout after {after} from {client}"));
}

pub struct RejectInfo<'a> {
    pub queue_id: Option<&'a str>,
    pub verb: &'a str,
    pub client: &'a str,
    pub reply: &'a Reply,
    pub from: Option<String>,
    pub to: Option<&'a str>,
    pub proto: &'a str,
    pub helo: Option<&'a str>,
}

/// `NOQUEUE: reject: RCPT from x[1.2.3.4]: 554 5.7.1 ...; from=<> to=<> proto=ESMTP helo=<h>`
pub fn reject(r: &RejectInfo<'_>) {
    let mut s = format!(
        "{}: reject: {} from {}: {}",
        r.queue_id.unwrap_or("NOQUEUE"),
        r.verb.to_ascii_uppercase(),
        r.client,
        r.reply.summary()
    );
    if let Some(f) = &r.from {
        let _ = write!(s, "; from=<{f}>");
    }
    if let Some(t) = r.to {
        let _ = write!(s, " to=<{t}>");
    }
    let _ = write!(s, " proto={}", r.proto);
    if let Some(h) = r.helo {
        let _ = write!(s, " helo=<{h}>");
    }
    write(Level::Info, &s);
}

/// How an accepted message was stored, for the `from=` line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stored {
    /// In the queue, handed to delivery: `(queue active)`.
    Queue,
    /// Written straight into its Maildirs: `(delivered directly)`.
    Direct,
    /// Put on hold by a rule: `(queue hold)`.
    Held,
}

/// `ID: client=x[1.2.3.4]` (with `, sasl_username=u` after a login), then
/// `ID: from=<a>, size=N, nrcpt=N (queue active)`
pub fn queued(
    id: &str,
    client: &str,
    auth_user: Option<&str>,
    from: &str,
    size: u64,
    nrcpt: usize,
    stored: Stored,
) {
    match auth_user {
        Some(u) => write(
            Level::Info,
            &format!("{id}: client={client}, sasl_username={u}"),
        ),
        None => write(Level::Info, &format!("{id}: client={client}")),
    }
    write(
        Level::Info,
        &format!(
            "{id}: from=<{from}>, size={size}, nrcpt={nrcpt} ({})",
            match stored {
                Stored::Queue => "queue active",
                Stored::Direct => "delivered directly",
                Stored::Held => "queue hold",
            }
        ),
    );
}

/// A header or body rule that fired, as Postfix's cleanup logs it:
/// `ID: reject: header Subject: x from client; from=<a> to=<b> proto=ESMTP
/// helo=<h>: 5.7.1 text`.
pub fn content_rule(id: &str, word: &str, what: &str, client: &str, envelope: &str, detail: &str) {
    let level = if word == "warning" {
        Level::Warning
    } else {
        Level::Info
    };
    let tail = if detail.is_empty() {
        String::new()
    } else {
        format!(": {detail}")
    };
    write(
        level,
        &format!("{id}: {word}: {what} from {client}; {envelope}{tail}"),
    );
}

/// A login. Never given a password: only names.
pub fn auth_ok(client: &str, mechanism: &str, user: &str) {
    write(
        Level::Info,
        &format!("{client}: sasl_method={mechanism}, sasl_username={user}: authenticated"),
    );
}

pub fn auth_failed(client: &str, mechanism: &str, user: &str) {
    // A name is at most 100 characters here: an AUTH line can carry 12 KB.
    let user: String = user.chars().take(100).collect();
    write(
        Level::Warning,
        &format!("warning: {client}: SASL {mechanism} authentication failed for user {user}"),
    );
}

pub fn auth_tempfail(client: &str, mechanism: &str) {
    write(Level::Warning, &format!("warning: {client}: SASL {mechanism} authentication could not be checked (temporary failure)"));
}

pub fn auth_throttled(client: &str, mechanism: &str) {
    write(
        Level::Warning,
        &format!(
            "warning: {client}: SASL {mechanism} refused: too many failed logins from this address"
        ),
    );
}

pub fn queue_write_failed(client: &str, problem: &str) {
    write(
        Level::Err,
        &format!("error: cannot queue message from {client}: {problem}"),
    );
}

pub struct DeliveryInfo<'a> {
    pub id: &'a str,
    pub to: &'a str,
    /// The envelope recipient when it differs from `to` (an alias).
    pub orig_to: Option<&'a str>,
    pub relay: &'a str,
    /// The TLS version of an outbound connection, if it had TLS.
    pub tls: Option<&'a str>,
    pub delay_secs: f64,
    pub dsn: &'a str,
    /// "sent", "deferred", "bounced".
    pub status: &'a str,
    pub text: &'a str,
}

/// `ID: to=<a>, orig_to=<b>, relay=maildir, delay=0.12, dsn=2.0.0, status=sent (text)`
pub fn delivery(d: &DeliveryInfo<'_>) {
    let mut s = format!("{}: to=<{}>", d.id, d.to);
    if let Some(o) = d.orig_to {
        let _ = write!(s, ", orig_to=<{o}>");
    }
    let _ = write!(s, ", relay={}, delay={:.2}", d.relay, d.delay_secs);
    if let Some(t) = d.tls {
        let _ = write!(s, ", tls={t}");
    }
    let _ = write!(s, ", dsn={}, status={} ({})", d.dsn, d.status, d.text);
    let level = if d.status == "sent" {
        Level::Info
    } else {
        Level::Warning
    };
    write(level, &s);
}

pub fn removed(id: &str) {
    write(Level::Info, &format!("{id}: removed"));
}

pub fn bounce_queued(id: &str, bounce_id: &str) {
    write(
        Level::Info,
        &format!("{id}: sender non-delivery notification: {bounce_id}"),
    );
}

/// `ID: sender delay notification: NOTICEID` and the like.
pub fn notice_queued(id: &str, what: &str, notice_id: &str) {
    write(Level::Info, &format!("{id}: {what}: {notice_id}"));
}

pub fn queue_problem(id: &str, problem: &str) {
    write(Level::Err, &format!("error: {id}: {problem}"));
}

/// `ID: held: reason` (queue/hold/).
pub fn held(id: &str, why: &str) {
    write(Level::Info, &format!("{id}: held: {why}"));
}

/// `ID: dkim: signed d=example.test s=s1 a=rsa-sha256` (one per key).
pub fn dkim_signed(id: &str, signatures: &[String]) {
    for s in signatures {
        write(Level::Info, &format!("{id}: dkim: signed {s}"));
    }
}

/// `ID: dkim: not signed: why` — the message goes out unsigned.
pub fn dkim_failed(id: &str, why: &str) {
    write(
        Level::Warning,
        &format!("warning: {id}: dkim: not signed: {why}"),
    );
}
