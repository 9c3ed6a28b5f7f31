//! Pipe delivery (pipe(8)): the message on a command's standard input,
//! e.g. the seed's `procmail -t -m USER=${user} DOMAIN=${nexthop}
//! EXTENSION=${extension} /etc/procmailrc`.
//!
//! - argv is expanded per recipient (`${user}`, `${extension}`,
//!   `${domain}`, `${nexthop}`, `${recipient}`, `${original_recipient}`,
//!   `${mailbox}` (the Maildir path), `${sender}`, `${size}`, `${queue_id}`;
//!   also `$name`, `$(name)`, `$$`). When it uses a per-recipient macro the
//!   command runs once per recipient — the seed's set-up forgot
//!   `procmail_destination_recipient_limit = 1` and gave all but one
//!   recipient of a domain nothing; postern does what was meant.
//! - flags: F (mbox `From ` line), R (`Return-Path:`), O
//!   (`X-Original-To:`), D (`Delivered-To:`, and a loop check), B (a final
//!   blank line), h/q/u (lower-case domains, quote and lower-case local
//!   parts in macros), `>` (quote `From ` lines), `.` (dot-stuff).
//! - it runs as the transport's user and that user's groups (never root),
//!   with ambient capabilities cleared, in a session of its own, with a
//!   clean environment: HOME (the user's), USER and LOGNAME (the user's
//!   name), SHELL=/bin/sh, PATH=/usr/bin:/bin, TZ if set, and for a local
//!   mailbox_command also SENDER, RECIPIENT, ORIGINAL_RECIPIENT, LOCAL,
//!   DOMAIN, EXTENSION. Its directory is the user's home, or `/`.
//! - time limit: the whole process group is killed and the recipient
//!   bounces (5.3.0), as in Postfix. Output: stdout and stderr together,
//!   the first `output_limit` bytes kept, the rest read and dropped.
//! - exit status (sysexits.h): 0 delivered; 75 EX_TEMPFAIL, 71 EX_OSERR,
//!   69 EX_UNAVAILABLE, 73 EX_CANTCREAT, 74 EX_IOERR (and any signal) are
//!   retried later — Postfix bounces 69/73/74, but a full disk or a
//!   service that is down is no reason to lose mail; 64–78 otherwise
//!   bounce with their enhanced codes (67 → 5.1.1 unknown user, 68 →
//!   5.1.2); other codes bounce 5.3.0. The diagnostic is the first line
//!   of the command's standard error (else of its standard output);
//!   output starting with an enhanced status code (`4.2.2 ...`) wins.
//! - quotas hold here too: a recipient with a Maildir and a quota is
//!   checked before the command runs, and counted in its maildirsize
//!   after a successful run (procmail never updates it).

use std::collections::HashMap;
use std::io::{self, Read};
use std::sync::Arc;

mod accounts;
mod exchange;
mod file;

use super::gate::Gate;
use super::macros::{expand, split_extension, uses, with_extension};
use super::maildir::MaildirAgent;
use super::spawn;
use super::{BlockingAgent, Outcome, Target};
use crate::queue::spool::QueuedMessage;
use crate::route::{PipeRoute, Route};
use crate::smtp::reply::Esc;

/// Macros whose value differs between recipients.
const PER_RECIPIENT: &[&str] = &[
    "user",
    "extension",
    "domain",
    "recipient",
    "original_recipient",
    "mailbox",
];

pub struct PipeAgent {
    maildir: Arc<MaildirAgent>,
    /// recipient_delimiter: where `${user}` ends and `${extension}` starts.
    delimiter: String,
    /// Runs at once per transport name.
    limits: HashMap<String, Arc<Gate>>,
    /// The transports' users: name, home and groups.
    accounts: accounts::Accounts,
}

/// The queued message as a command reads it: a failure to open or read
/// it is told apart from one to run the command (the queue file, not
/// procmail, is what the diagnostic must name).
struct Unreadable<R>(R);

#[derive(Debug)]
struct UnreadableError(io::Error);

impl std::fmt::Display for UnreadableError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for UnreadableError {}

/// `e`, marked as the queued message's (same kind, same text).
fn unreadable(e: io::Error) -> io::Error {
    io::Error::new(e.kind(), UnreadableError(e))
}

fn is_unreadable(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|i| i.is::<UnreadableError>())
}

impl<R: Read> Read for Unreadable<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf).map_err(unreadable)
    }
}

/// How one run ended.
struct Ran {
    status: Option<i32>,
    signal: Option<i32>,
    timed_out: bool,
    output: Vec<u8>,
}

impl PipeAgent {
    /// `limits`: each transport's name and concurrency.
    pub fn new(
        maildir: Arc<MaildirAgent>,
        delimiter: &str,
        limits: &[(String, usize)],
    ) -> PipeAgent {
        PipeAgent {
            maildir,
            delimiter: delimiter.to_string(),
            limits: limits
                .iter()
                .map(|(n, c)| (n.to_ascii_lowercase(), Gate::new(*c)))
                .collect(),
            accounts: accounts::Accounts::default(),
        }
    }

    /// `gated`: the registry holds a permit of this transport's limit.
    fn deliver_group(
        &self,
        msg: &QueuedMessage,
        route: &PipeRoute,
        group: &[&Target],
        gated: bool,
    ) -> Vec<Outcome> {
        // Quotas first: a full mailbox never sees the command.
        let mut out: Vec<Option<Outcome>> = vec![None; group.len()];
        for (i, t) in group.iter().enumerate() {
            if let Some(m) = &route.mailbox {
                if let Err(e) = self.maildir.prepare(m) {
                    out[i] = Some(super::maildir::write_failure(&m.path, &e));
                    continue;
                }
                match self.maildir.quota_check(m, copy_size(msg, route, t)) {
                    Ok(Ok(())) => {}
                    Ok(Err(over)) => out[i] = Some(over),
                    Err(e) => out[i] = Some(super::maildir::write_failure(&m.path, &e)),
                }
            }
            if route.flags.contains('D') && delivered_to_us(msg, &t.address) {
                out[i] = Some(Outcome::failed(
                    Esc(5, 4, 6),
                    format!("mail forwarding loop for {}", t.address),
                ));
            }
        }
        let todo: Vec<usize> = (0..group.len()).filter(|&i| out[i].is_none()).collect();
        if todo.is_empty() {
            return out.into_iter().map(Option::unwrap).collect();
        }
        let targets: Vec<&Target> = todo.iter().map(|&i| group[i]).collect();
        let _permit = match gated {
            true => None,
            false => self.limit(&route.transport).map(|l| l.acquire_blocking()),
        };
        let outcome = match self.run(msg, route, &targets) {
            Ok(ran) => judge(&ran),
            Err(e) if is_unreadable(&e) => {
                Outcome::deferred(Esc(4, 3, 0), format!("cannot read the queued message: {e}"))
            }
            Err(e) => Outcome::deferred(Esc(4, 3, 0), format!("cannot run {}: {e}", route.argv[0])),
        };
        for &i in &todo {
            if outcome.is_delivered() {
                if let Some(m) = &route.mailbox {
                    self.maildir.quota_add(m, copy_size(msg, route, group[i]));
                }
            }
            out[i] = Some(outcome.clone());
        }
        out.into_iter().map(Option::unwrap).collect()
    }

    fn limit(&self, transport: &str) -> Option<&Arc<Gate>> {
        self.limits.get(&transport.to_ascii_lowercase())
    }

    /// Runs the command once for `targets` (one, or several when argv has
    /// no per-recipient macro).
    fn run(&self, msg: &QueuedMessage, route: &PipeRoute, targets: &[&Target]) -> io::Result<Ran> {
        let first = targets[0];
        let vars = self.macros(msg, route, first);
        let argv: Vec<String> = route.argv.iter().map(|a| expand(a, &vars)).collect();
        let who = self.accounts.get(route.user);
        let home = route
            .home
            .clone()
            .or_else(|| who.home.clone())
            .filter(|d| d.is_dir());
        let mut env: Vec<(String, String)> = vec![
            ("PATH".into(), "/usr/bin:/bin".into()),
            ("SHELL".into(), "/bin/sh".into()),
        ];
        if let Some(h) = &home {
            env.push(("HOME".into(), h.display().to_string()));
        }
        if let Some(name) = &who.name {
            env.push(("USER".into(), name.clone()));
            env.push(("LOGNAME".into(), name.clone()));
        }
        if let Ok(tz) = std::env::var("TZ") {
            env.push(("TZ".into(), tz));
        }
        if route.local_env {
            for (k, v) in [
                ("SENDER", "sender"),
                ("RECIPIENT", "recipient"),
                ("ORIGINAL_RECIPIENT", "original_recipient"),
                ("LOCAL", "local"),
                ("DOMAIN", "domain"),
                ("EXTENSION", "extension"),
            ] {
                env.push((k.into(), vars.get(v).cloned().unwrap_or_default()));
            }
        }
        let (uid, gid) = route.user;
        // Root, or dropped to [main] user with CAP_SETUID/CAP_SETGID kept.
        let am_root = crate::privs::can_switch_users();
        let cwd = home.clone().unwrap_or_else(|| "/".into());
        // In a session of its own, as the transport's user and groups;
        // see spawn.rs for why not std's Command.
        let child = spawn::spawn(&spawn::Spec {
            argv: &argv,
            env: &env,
            cwd: &cwd,
            creds: am_root.then(|| (uid, gid, who.groups.clone())),
        })?;
        let (head, body) = match self.input(msg, route, first) {
            Ok(i) => i,
            Err(e) => {
                // Nothing to feed it: end it before saying why.
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(-child.pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
                let _ = spawn::wait(child.pid);
                return Err(e);
            }
        };
        let ended =
            exchange::exchange(child, head, body, route.output_limit.max(1), route.timeout)?;
        use std::os::unix::process::ExitStatusExt;
        Ok(Ran {
            status: ended.status.code(),
            signal: ended.status.signal(),
            timed_out: ended.timed_out,
            output: ended.output,
        })
    }

    /// The bytes the command reads: the flags' lines, then the message.
    fn input(
        &self,
        msg: &QueuedMessage,
        route: &PipeRoute,
        t: &Target,
    ) -> io::Result<(Vec<u8>, Box<dyn Read + Send>)> {
        let f = &route.flags;
        let head = flag_lines(msg, route, t);
        let body = Unreadable(msg.body().map_err(unreadable)?);
        let needs_filter = f.contains('>') || f.contains('.') || f.contains('B');
        if !needs_filter {
            return Ok((head.into_bytes(), Box::new(body)));
        }
        // Small rewrites need the text: read it (messages are bounded by
        // the size limit).
        let mut text = Vec::new();
        let mut body = body;
        body.read_to_end(&mut text)?;
        let mut out = head.into_bytes();
        for line in text.split_inclusive(|&c| c == b'\n') {
            if f.contains('>') && line.starts_with(b"From ") {
                out.push(b'>');
            }
            if f.contains('.') && line.starts_with(b".") {
                out.push(b'.');
            }
            out.extend_from_slice(line);
        }
        if f.contains('B') {
            out.push(b'\n');
        }
        Ok((out, Box::new(io::empty())))
    }

    /// The macro values for one recipient.
    fn macros(
        &self,
        msg: &QueuedMessage,
        route: &PipeRoute,
        t: &Target,
    ) -> HashMap<&'static str, String> {
        let input = MacroInput {
            address: &t.address,
            orig: &t.orig,
            sender: &msg.env.sender.to_string(),
            size: Some(msg.body_len),
            queue_id: Some(&msg.env.id),
        };
        macro_values(route, &self.delimiter, &input)
    }
}

/// What the macros of a command are made of, for one recipient.
pub struct MacroInput<'a> {
    /// The final address (after aliases).
    pub address: &'a str,
    /// The recipient as the client gave it.
    pub orig: &'a str,
    /// The envelope sender ("" for the null sender).
    pub sender: &'a str,
    /// Unknown before a message exists (`postern explain`): the macro is
    /// then left as written.
    pub size: Option<u64>,
    pub queue_id: Option<&'a str>,
}

/// The macro values of `route`'s command for one recipient, as the agent
/// expands them (flags h, q, u; the extension carried over from `orig`).
pub fn macro_values(
    route: &PipeRoute,
    delimiter: &str,
    t: &MacroInput<'_>,
) -> HashMap<&'static str, String> {
    let f = &route.flags;
    let (mut local, mut domain) = match t.address.rsplit_once('@') {
        Some((l, d)) => (l.to_string(), d.to_string()),
        None => (t.address.to_string(), String::new()),
    };
    local = with_extension(&local, t.orig, delimiter);
    if f.contains('u') {
        local = local.to_lowercase();
    }
    if f.contains('h') {
        domain = domain.to_lowercase();
    }
    let (user, extension) = split_extension(&local, delimiter);
    let q = |s: &str| {
        if f.contains('q')
            && s.contains(|c: char| c.is_whitespace() || "\"\\(),:;<>@[]".contains(c))
        {
            format!("\"{s}\"")
        } else {
            s.to_string()
        }
    };
    let mut m = HashMap::new();
    m.insert("user", q(&user));
    m.insert("extension", extension);
    m.insert("domain", domain.clone());
    m.insert("nexthop", domain.clone());
    m.insert("local", q(&local));
    m.insert("recipient", format!("{}@{domain}", q(&local)));
    m.insert("original_recipient", t.orig.to_string());
    m.insert(
        "mailbox",
        route
            .mailbox
            .as_ref()
            .map(|b| b.path.display().to_string())
            .unwrap_or_default(),
    );
    m.insert(
        "sender",
        if t.sender.is_empty() {
            "MAILER-DAEMON".into()
        } else {
            t.sender.to_string()
        },
    );
    if let Some(size) = t.size {
        m.insert("size", size.to_string());
    }
    if let Some(id) = t.queue_id {
        m.insert("queue_id", id.to_string());
    }
    m
}

/// The command line the agent runs for this recipient.
pub fn expanded_argv(route: &PipeRoute, delimiter: &str, t: &MacroInput<'_>) -> Vec<String> {
    let vars = macro_values(route, delimiter, t);
    route.argv.iter().map(|a| expand(a, &vars)).collect()
}

/// Does the command run once per recipient (its argv names a
/// per-recipient macro), or once for all recipients of a message?
/// A mailbox (its quota), or a D or O flag (a header naming one
/// recipient), make it per recipient too.
pub fn runs_per_recipient(route: &PipeRoute) -> bool {
    route
        .argv
        .iter()
        .any(|a| PER_RECIPIENT.iter().any(|m| uses(a, m)))
        || route.mailbox.is_some()
        || route.flags.contains('D')
        || route.flags.contains('O')
}

/// The lines the flags put in front of the message: From_ (F),
/// Return-Path: (R), X-Original-To: (O), Delivered-To: (D), in
/// Postfix's order.
fn flag_lines(msg: &QueuedMessage, route: &PipeRoute, t: &Target) -> String {
    let f = &route.flags;
    let sender = msg.env.sender.to_string();
    let mut head = String::new();
    if f.contains('F') {
        let from = if sender.is_empty() {
            "MAILER-DAEMON"
        } else {
            &sender
        };
        head.push_str(&format!(
            "From {from}  {}\n",
            crate::timefmt::mbox(msg.env.arrival_secs())
        ));
    }
    if f.contains('R') {
        let rp = if sender.is_empty() {
            "MAILER-DAEMON".to_string()
        } else {
            sender.clone()
        };
        head.push_str(&format!("Return-Path: <{rp}>\n"));
    }
    if f.contains('O') {
        head.push_str(&format!("X-Original-To: {}\n", t.orig));
    }
    if f.contains('D') {
        head.push_str(&format!("Delivered-To: {}\n", t.address));
    }
    head
}

/// The size a copy takes in the Maildir the command writes, for its
/// quota: what the command reads, as procmail writes it into a Maildir
/// (the flags' lines but a From_ line, which no Maildir file has; the
/// message; B's blank line). Quoting (`>`, `.`) is not counted.
fn copy_size(msg: &QueuedMessage, route: &PipeRoute, t: &Target) -> u64 {
    let head = flag_lines(msg, route, t);
    let from_line = match route.flags.contains('F') {
        true => head.find('\n').map_or(0, |i| i + 1),
        false => 0,
    };
    (head.len() - from_line) as u64 + msg.body_len + u64::from(route.flags.contains('B'))
}

/// The transport name of a local user's mailbox_command.
pub const LOCAL_COMMAND: &str = "mailbox_command";
/// The transport name of an aliases-file `|command`.
pub const ALIAS_COMMAND: &str = "alias";

impl BlockingAgent for PipeAgent {
    fn name(&self) -> &'static str {
        "pipe"
    }

    fn deliver(&self, msg: &QueuedMessage, targets: &[Target], _recovered: bool) -> Vec<Outcome> {
        let mut out: Vec<Option<Outcome>> = vec![None; targets.len()];
        // One run per recipient when argv names one; else one per transport.
        let mut groups: Vec<(PipeRoute, Vec<usize>)> = Vec::new();
        for (i, t) in targets.iter().enumerate() {
            let p = match &t.route {
                Route::Pipe(p) => p,
                Route::File(f) => {
                    out[i] = Some(self.append(msg, f, t));
                    continue;
                }
                _ => {
                    out[i] = Some(Outcome::deferred(Esc(4, 3, 5), "not a pipe route"));
                    continue;
                }
            };
            let per_rcpt = runs_per_recipient(p);
            match groups.iter_mut().find(|(r, _)| !per_rcpt && r == p) {
                Some(g) => g.1.push(i),
                None => groups.push((p.clone(), vec![i])),
            }
        }
        let gated = self.gate(&mut targets.iter()).is_some();
        for (route, idx) in groups {
            let group: Vec<&Target> = idx.iter().map(|&i| &targets[i]).collect();
            for (i, o) in idx
                .iter()
                .zip(self.deliver_group(msg, &route, &group, gated))
            {
                out[*i] = Some(o);
            }
        }
        out.into_iter()
            .map(|o| o.unwrap_or_else(|| Outcome::deferred(Esc(4, 3, 0), "no result")))
            .collect()
    }

    /// The limit of the one transport all commands of `targets` run
    /// through (the usual case: a message's recipients of one domain).
    /// Several transports: none, each run then waits for its own.
    fn gate(&self, targets: &mut dyn Iterator<Item = &Target>) -> Option<Arc<Gate>> {
        let mut names = targets.filter_map(|t| match &t.route {
            Route::Pipe(p) => Some(p.transport.as_str()),
            _ => None,
        });
        let first = names.next()?;
        if names.any(|n| !n.eq_ignore_ascii_case(first)) {
            return None;
        }
        self.limit(first).cloned()
    }
}

/// Postfix's verdict on a finished command (pipe_command.c, sys_exits.c).
fn judge(r: &Ran) -> Outcome {
    let text = one_line(&r.output);
    if r.timed_out {
        return Outcome::failed(
            Esc(5, 3, 0),
            format!("command time limit exceeded{}", with(&text)),
        );
    }
    if r.status == Some(0) {
        return Outcome::delivered(if text.is_empty() {
            "delivered via pipe".into()
        } else {
            format!("delivered via pipe ({text})")
        });
    }
    if let Some(sig) = r.signal {
        return Outcome::deferred(
            Esc(4, 3, 0),
            format!("command died on signal {sig}{}", with(&text)),
        );
    }
    let code = r.status.unwrap_or(-1);
    // Output that starts with an enhanced status code decides.
    if let Some((esc, rest)) = leading_esc(&text) {
        let t = format!("{rest} (exit {code})");
        return if esc.0 == 4 {
            Outcome::deferred(esc, t)
        } else {
            Outcome::failed(esc, t)
        };
    }
    let (esc, name) = match code {
        64 => (Esc(5, 3, 0), "command line usage error"),
        65 => (Esc(5, 6, 0), "data format error"),
        66 => (Esc(5, 3, 0), "cannot open input"),
        67 => (Esc(5, 1, 1), "user unknown"),
        68 => (Esc(5, 1, 2), "host name unknown"),
        69 => (Esc(4, 3, 0), "service unavailable"),
        70 => (Esc(5, 3, 0), "internal software error"),
        71 => (Esc(4, 3, 0), "system error"),
        72 => (Esc(5, 3, 0), "critical OS file missing"),
        73 => (Esc(4, 2, 0), "cannot create output file"),
        74 => (Esc(4, 3, 0), "input/output error"),
        75 => (Esc(4, 3, 0), "temporary failure"),
        76 => (Esc(5, 5, 0), "remote error in protocol"),
        77 => (Esc(5, 7, 0), "permission denied"),
        78 => (Esc(5, 3, 5), "local configuration error"),
        _ => (Esc(5, 3, 0), "unknown mail transport error"),
    };
    let t = format!("{name} (exit {code}){}", with(&text));
    if esc.0 == 4 {
        Outcome::deferred(esc, t)
    } else {
        Outcome::failed(esc, t)
    }
}

fn with(text: &str) -> String {
    if text.is_empty() {
        String::new()
    } else {
        format!(": {text}")
    }
}

/// `4.2.2 text` → (4.2.2, text).
fn leading_esc(text: &str) -> Option<(Esc, &str)> {
    let (code, rest) = text.split_once(' ').unwrap_or((text, ""));
    let mut p = code.split('.');
    let (Some(c), Some(s), Some(d), None) = (p.next(), p.next(), p.next(), p.next()) else {
        return None;
    };
    let c: u8 = c.parse().ok().filter(|c| *c == 4 || *c == 5)?;
    Some((Esc(c, s.parse().ok()?, d.parse().ok()?), rest.trim()))
}

/// The first line of the output, tabs and controls made safe for a DSN.
fn one_line(out: &[u8]) -> String {
    let s = String::from_utf8_lossy(out);
    s.trim()
        .lines()
        .next()
        .unwrap_or("")
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(200)
        .collect()
}

/// Our own Delivered-To: for this address in the message already.
fn delivered_to_us(msg: &QueuedMessage, address: &str) -> bool {
    let (_, delivered) = crate::queue::runner::scan_headers(msg.headers());
    delivered.iter().any(|d| d.eq_ignore_ascii_case(address))
}

#[cfg(test)]
mod tests;
