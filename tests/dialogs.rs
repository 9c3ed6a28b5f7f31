//! SMTP protocol corner cases as readable dialog files (tests/dialogs/*.txt),
//! each run twice: against the pure session (postern::smtp::session, fed
//! bytes, its questions answered by postern's own recipient policy and
//! login check over an in-memory copy of the fixture), and over TCP
//! against the real server. Both runs must pass for every file.
//!
//! Dialog format, one directive per line:
//!
//! ```text
//! # comment                 (blank lines are ignored too)
//! #! smtp: key = value      config override for this dialog, both runs
//! #! listener: key = value  a setting of the dialog's listener (mode =
//!                           "starttls" | "plain" | "implicit-tls",
//!                           require_auth = true), both runs
//! >>> TEXT                  a client line; CRLF is appended
//! >>! TEXT                  raw bytes, nothing appended; escapes: \r \n \t
//!                           \\ \xHH, and \{TEXT*N} = TEXT repeated N times
//! <<< PREFIX                the next reply's first line starts with PREFIX
//! <<<= LINE                 the next reply is exactly this one line
//! <<<~ TEXT                 the next reply (all lines) contains TEXT
//! &&~ TEXT                  the same reply also contains TEXT
//! &&! TEXT                  the same reply does not contain TEXT
//! === closed                the server closed the connection
//! === starttls              after `<<< 220 2.0.0` to STARTTLS: the TLS
//!                           handshake; the dialog goes on inside TLS
//! ```
//!
//! Adjacent `>>>`/`>>!` lines are sent in one write (pipelining); a blank
//! line, a comment or an expectation between them makes separate writes.
//! After the last line, the dialog must be in step: no reply may be left
//! over (the TCP run sends QUIT and must get 221 as the very next reply),
//! which is how a smuggled command that got a reply of its own is caught.
//!
//! Pure run: the recipient policy (`postern::policy::check_recipient`) and
//! the directory login check (`postern::auth::backend`) that the server
//! uses, over a `MemoryStore` holding the rows of the PostfixAdmin fixture
//! (parsed from its INSERT statements here), with the dialog's config. The
//! client at 127.0.0.1 is untrusted in both runs (trusted_networks =
//! ["10.0.0.0/8"]). DATA gets queue ID TESTQUEUEID. The TCP run uses the
//! real server with the same config text and the fixture in SQLite.
//!
//! TLS: the pure run calls `Session::tls_started` at `=== starttls` (and
//! before the greeting on an implicit-TLS listener); the TCP run does a real
//! handshake with a rustls client that accepts any certificate (the server's
//! self-signed one). AUTH: both runs check the fixture's password hashes
//! (alice@example.test / alice-secret, bob-secret, ...; hank is
//! receive-only, frank inactive); the TCP run turns the failure delay and
//! the per-address limit off so failed logins in one dialog do not slow or
//! throttle the next.

mod common;

use std::collections::{BTreeMap, VecDeque};
use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use postern::auth::backend::Backend;
use postern::directory::memory::MemoryStore;
use postern::directory::{Directory, DomainRow};
use postern::policy;
use postern::smtp::session::{Answer, Peer, Question, Session, SessionConfig, Step, TlsInfo};

const READ_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
enum Expect {
    Prefix(String),
    Exact(String),
    Contains(String),
    AlsoContains(String),
    NotContains(String),
    Closed,
}

#[derive(Debug, Clone)]
enum Line {
    /// One write; `line` is the first dialog line of the group.
    Send {
        line: usize,
        bytes: Vec<u8>,
    },
    Expect {
        line: usize,
        what: Expect,
    },
    /// `=== starttls`: the TLS handshake.
    StartTls {
        line: usize,
    },
}

struct Dialog {
    name: String,
    /// (section, `key = value`)
    overrides: Vec<(String, String)>,
    lines: Vec<Line>,
}

impl Dialog {
    fn at(&self, line: usize) -> String {
        format!("tests/dialogs/{}:{line}", self.name)
    }
}

/// `\r \n \t \\ \xHH \{TEXT*N}`.
fn unescape(s: &str) -> Result<Vec<u8>, String> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' {
            out.push(b[i]);
            i += 1;
            continue;
        }
        match b.get(i + 1) {
            Some(b'r') => out.push(b'\r'),
            Some(b'n') => out.push(b'\n'),
            Some(b't') => out.push(b'\t'),
            Some(b'\\') => out.push(b'\\'),
            Some(b'x') => {
                let hex = s.get(i + 2..i + 4).ok_or("truncated \\x escape")?;
                out.push(u8::from_str_radix(hex, 16).map_err(|_| format!("bad \\x{hex}"))?);
                i += 2;
            }
            Some(b'{') => {
                let end = s[i..].find('}').ok_or("unclosed \\{")? + i;
                let inner = &s[i + 2..end];
                let (text, n) = inner.rsplit_once('*').ok_or("\\{TEXT*N} needs *N")?;
                let n: usize = n
                    .parse()
                    .map_err(|_| format!("bad count in \\{{{inner}}}"))?;
                out.extend(unescape(text)?.repeat(n));
                i = end + 1;
                continue;
            }
            other => {
                return Err(format!(
                    "unknown escape \\{}",
                    other.map(|&c| c as char).unwrap_or(' ')
                ))
            }
        }
        i += 2;
    }
    Ok(out)
}

fn parse_dialog(path: &Path) -> Result<Dialog, String> {
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    let text = std::fs::read_to_string(path).map_err(|e| format!("tests/dialogs/{name}: {e}"))?;
    let mut d = Dialog {
        name,
        overrides: Vec::new(),
        lines: Vec::new(),
    };
    // Whether the previous dialog line was a send (adjacent sends merge).
    let mut prev_send = false;
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        let err = |m: &str| format!("{}: {m}: {raw:?}", d.at(n));
        let (tag, rest) = match raw.find(' ') {
            Some(p) => (&raw[..p], &raw[p + 1..]),
            None => (raw, ""),
        };
        let send = match tag {
            ">>>" => Some({
                let mut v = rest.as_bytes().to_vec();
                v.extend_from_slice(b"\r\n");
                v
            }),
            ">>!" => Some(unescape(rest).map_err(|e| err(&e))?),
            _ => None,
        };
        if let Some(bytes) = send {
            if prev_send {
                if let Some(Line::Send { bytes: b, .. }) = d.lines.last_mut() {
                    b.extend_from_slice(&bytes);
                }
            } else {
                d.lines.push(Line::Send { line: n, bytes });
            }
            prev_send = true;
            continue;
        }
        prev_send = false;
        if raw.trim().is_empty() {
            continue;
        }
        if tag == "#!" {
            let (section, kv) = rest
                .split_once(':')
                .ok_or_else(|| err("expected `#! section: key = value`"))?;
            d.overrides
                .push((section.trim().to_string(), kv.trim().to_string()));
            continue;
        }
        if raw.starts_with('#') {
            continue;
        }
        if tag == "===" && rest.trim() == "starttls" {
            d.lines.push(Line::StartTls { line: n });
            continue;
        }
        let what = match tag {
            "<<<" => Expect::Prefix(rest.to_string()),
            "<<<=" => Expect::Exact(rest.to_string()),
            "<<<~" => Expect::Contains(rest.to_string()),
            "&&~" => Expect::AlsoContains(rest.to_string()),
            "&&!" => Expect::NotContains(rest.to_string()),
            "===" if rest.trim() == "closed" => Expect::Closed,
            _ => return Err(err("unknown directive")),
        };
        if matches!(what, Expect::Prefix(ref p) | Expect::Contains(ref p) | Expect::Exact(ref p) if p.is_empty())
        {
            return Err(err("empty expectation"));
        }
        d.lines.push(Line::Expect { line: n, what });
    }
    if !d.lines.iter().any(|l| matches!(l, Line::Expect { .. })) {
        return Err(format!("tests/dialogs/{}: no expectations", d.name));
    }
    Ok(d)
}

fn all_dialogs() -> Vec<Dialog> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/dialogs");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "txt"))
        .collect();
    paths.sort();
    assert!(
        paths.len() >= 30,
        "expected the dialog files in {}",
        dir.display()
    );
    let mut errors = Vec::new();
    let mut out = Vec::new();
    for p in paths {
        match parse_dialog(&p) {
            Ok(d) => out.push(d),
            Err(e) => errors.push(e),
        }
    }
    assert!(
        errors.is_empty(),
        "bad dialog files:\n{}",
        errors.join("\n")
    );
    out
}

/// The server builder both runs derive their config from. With `#!
/// listener:` overrides, the dialog gets a listener of its own on `port`
/// (written before the harness's, so it is the config's first listener).
/// The dialog's server: the harness's defaults, the dialog's overrides,
/// and the dialog's own listener (listener 2) when it sets `#! listener:`.
fn builder(overrides: &[(String, String)]) -> ServerBuilder {
    let mut b = Server::builder()
        .top("trusted_networks = [\"10.0.0.0/8\"]")
        // Failed logins in one dialog must not delay or throttle the next.
        .set("auth", "failure_delay = \"0s\"")
        .set("auth", "max_failures = 1000000");
    let mut listener = Vec::new();
    for (section, kv) in overrides {
        if section == "listener" {
            listener.push(kv.clone());
        } else {
            b = b.set(section, kv);
        }
    }
    if !listener.is_empty() {
        // `mode` is one of the dialog's own lines, or the default.
        let (mode, rest): (Vec<String>, Vec<String>) = listener
            .into_iter()
            .partition(|kv| kv.split('=').next().unwrap().trim() == "mode");
        let mode = mode
            .last()
            .map(|kv| {
                kv.split('=')
                    .nth(1)
                    .unwrap()
                    .trim()
                    .trim_matches('"')
                    .to_string()
            })
            .unwrap_or_else(|| "starttls".into());
        b = b.listener(&mode, &rest.join("\n"));
    }
    b
}

/// Which listener the dialog talks to: its own (2) or the harness's (1).
fn dialog_listener(overrides: &[(String, String)]) -> usize {
    if has_own_listener(overrides) {
        2
    } else {
        1
    }
}

fn has_own_listener(overrides: &[(String, String)]) -> bool {
    overrides.iter().any(|(s, _)| s == "listener")
}

fn implicit_tls(overrides: &[(String, String)]) -> bool {
    overrides
        .iter()
        .any(|(s, kv)| s == "listener" && kv.replace(' ', "") == "mode=\"implicit-tls\"")
}

/// A reply as lines of text (`250-a`, `250 b`).
type WireReply = Vec<String>;

fn show(r: &WireReply) -> String {
    format!("{:?}", r.join("\n"))
}

/// Checks one expectation against the next reply (or, for `&&`, the last).
/// Returns the reply now current.
fn check(
    what: &Expect,
    next: Option<WireReply>,
    last: Option<&WireReply>,
) -> Result<Option<WireReply>, String> {
    let need_next = |n: Option<WireReply>| n.ok_or_else(|| "no reply".to_string());
    match what {
        Expect::Prefix(p) => {
            let r = need_next(next)?;
            if r[0].starts_with(p.as_str()) {
                Ok(Some(r))
            } else {
                Err(format!(
                    "expected a reply starting with {p:?}, got {}",
                    show(&r)
                ))
            }
        }
        Expect::Exact(l) => {
            let r = need_next(next)?;
            if r.len() == 1 && &r[0] == l {
                Ok(Some(r))
            } else {
                Err(format!("expected exactly {l:?}, got {}", show(&r)))
            }
        }
        Expect::Contains(t) => {
            let r = need_next(next)?;
            if r.join("\n").contains(t.as_str()) {
                Ok(Some(r))
            } else {
                Err(format!(
                    "expected a reply containing {t:?}, got {}",
                    show(&r)
                ))
            }
        }
        Expect::AlsoContains(t) | Expect::NotContains(t) => {
            let r = last.ok_or("`&&` needs a reply before it")?;
            let has = r.join("\n").contains(t.as_str());
            match (what, has) {
                (Expect::AlsoContains(_), false) => {
                    Err(format!("expected that reply to contain {t:?}: {}", show(r)))
                }
                (Expect::NotContains(_), true) => Err(format!(
                    "expected that reply NOT to contain {t:?}: {}",
                    show(r)
                )),
                _ => Ok(Some(r.clone())),
            }
        }
        Expect::Closed => unreachable!(),
    }
}

// --- pure session run ------------------------------------------------------

/// The PostfixAdmin fixture's rows, from its own INSERT and UPDATE
/// statements, in a `MemoryStore`.
fn fixture_store() -> MemoryStore {
    let mut store = MemoryStore::new();
    for stmt in fixture_statements() {
        if let Some(rows) =
            stmt.strip_prefix("UPDATE `mailbox` SET `smtp_active` = 0 WHERE `username` = ")
        {
            let user = rows.trim_end_matches(';').trim().trim_matches('\'');
            store = store.mailbox_flags(user, true, false);
            continue;
        }
        let (table, cols, rows) =
            parse_insert(&stmt).unwrap_or_else(|| panic!("unparsed fixture statement: {stmt}"));
        for row in rows {
            let get = |c: &str| -> String {
                let i = cols
                    .iter()
                    .position(|x| x == c)
                    .unwrap_or_else(|| panic!("{table}.{c}"));
                row[i].clone()
            };
            let active = |row_active: String| row_active == "1";
            store = match table.as_str() {
                "domain" => store.domain_row(
                    &get("domain"),
                    DomainRow {
                        backupmx: get("backupmx") == "1",
                        transport: get("transport"),
                        quota_mb: get("quota").parse().unwrap(),
                        maxquota_mb: get("maxquota").parse().unwrap(),
                    },
                    active(get("active")),
                ),
                "mailbox" => {
                    let user = get("username");
                    store
                        .mailbox(
                            &user,
                            &get("maildir"),
                            get("quota").parse().unwrap(),
                            &get("password"),
                        )
                        .mailbox_flags(&user, active(get("active")), true)
                }
                "alias" => store.alias(&get("address"), &get("goto"), active(get("active"))),
                "alias_domain" => store.alias_domain(
                    &get("alias_domain"),
                    &get("target_domain"),
                    active(get("active")),
                ),
                other => panic!("fixture table {other} not modelled"),
            };
        }
    }
    store
}

/// `INSERT INTO `t` (`a`,`b`) VALUES ('x',1),('y',2);` → (t, [a, b], rows).
fn parse_insert(stmt: &str) -> Option<(String, Vec<String>, Vec<Vec<String>>)> {
    let rest = stmt.strip_prefix("INSERT INTO `")?;
    let (table, rest) = rest.split_once('`')?;
    let (cols, rest) = rest.trim_start().strip_prefix('(')?.split_once(')')?;
    let cols = cols
        .split(',')
        .map(|c| c.trim().trim_matches('`').to_string())
        .collect();
    let mut values = rest
        .trim_start()
        .strip_prefix("VALUES")?
        .trim()
        .trim_end_matches(';')
        .chars()
        .peekable();
    let mut rows = Vec::new();
    while let Some(c) = values.next() {
        if c != '(' {
            continue;
        }
        let mut row = Vec::new();
        let mut field = String::new();
        let mut quoted = false;
        while let Some(c) = values.next() {
            match c {
                '\'' if quoted && values.peek() == Some(&'\'') => {
                    values.next();
                    field.push('\'');
                }
                '\'' => quoted = !quoted,
                ',' if !quoted => row.push(std::mem::take(&mut field).trim().to_string()),
                ')' if !quoted => break,
                c => field.push(c),
            }
        }
        row.push(field.trim().to_string());
        rows.push(row);
    }
    Some((table.to_string(), cols, rows))
}

/// The directory of the pure run: the server's rules over the fixture.
fn pure_directory(cfg: &postern::config::Config) -> Arc<Directory> {
    Arc::new(Directory::with_store(Arc::new(fixture_store()), cfg))
}

fn fake_tls() -> TlsInfo {
    TlsInfo {
        version: "TLSv1.3".into(),
        cipher: "TLS_AES_256_GCM_SHA384".into(),
    }
}

struct PureRun {
    s: Session,
    directory: Arc<Directory>,
    replies: VecDeque<WireReply>,
    closed: bool,
    /// The session said 220 to STARTTLS and waits for the handshake.
    tls_pending: bool,
}

impl PureRun {
    fn new(cfg: Arc<SessionConfig>, directory: Arc<Directory>, implicit_tls: bool) -> PureRun {
        let peer = Peer {
            ip: "127.0.0.1".parse().unwrap(),
            port: 40000,
            name: "unknown".into(),
            uid: None,
        };
        let mut r = PureRun {
            s: Session::new(cfg, peer, 1_700_000_000),
            directory,
            replies: VecDeque::new(),
            closed: false,
            tls_pending: false,
        };
        if implicit_tls {
            // As the driver does: TLS first, then the greeting goes out.
            r.s.tls_started(fake_tls());
        }
        r.run();
        r
    }

    /// Steps until the session wants input or closes.
    fn run(&mut self) {
        for _ in 0..1_000_000 {
            match self.s.step(1_700_000_000) {
                Step::Reply { reply, .. } => {
                    let wire = String::from_utf8(reply.to_wire()).expect("replies are UTF-8");
                    self.replies.push_back(
                        wire.split("\r\n")
                            .filter(|l| !l.is_empty())
                            .map(str::to_string)
                            .collect(),
                    );
                }
                Step::Ask(Question::Mail { .. }) => self.s.answer(Answer::Mail(Ok(()))),
                Step::Ask(Question::Recipient(a) | Question::Verify(a)) => {
                    let who = policy::Client {
                        trusted_network: false,
                        authenticated: self.s.auth_user().is_some(),
                    };
                    let verdict = policy::check_recipient(&self.directory, &who, &a);
                    self.s.answer(Answer::Recipient(verdict))
                }
                Step::Ask(Question::StartData) => {
                    self.s.answer(Answer::DataStart(Ok("TESTQUEUEID".into())))
                }
                Step::Ask(Question::Commit) => {
                    self.s.answer(Answer::Commit(Ok("TESTQUEUEID".into())))
                }
                Step::Ask(Question::Authenticate { credentials, .. }) => {
                    let backend = Backend::Directory(self.directory.clone());
                    let ip = "127.0.0.1".parse().unwrap();
                    let secured = self.s.tls().is_some();
                    self.s
                        .answer(Answer::Auth(backend.check(&credentials, ip, secured)))
                }
                // The handshake happens at the dialog's `=== starttls`.
                Step::StartTls => self.tls_pending = true,
                Step::Body(_) | Step::Discard => {}
                Step::NeedInput => return,
                Step::Close => {
                    self.closed = true;
                    return;
                }
            }
        }
        panic!("the session did not settle in a million steps");
    }
}

fn run_pure(d: &Dialog) -> Result<(), String> {
    let text = builder(&d.overrides).config_text(Path::new("/nonexistent-dialog-data"), None);
    let cfg = postern::config::Config::parse("dialog.toml", &text).map_err(|e| {
        format!(
            "{}: config: {}",
            d.at(1),
            e.iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("; ")
        )
    })?;
    let mut run = PureRun::new(
        Arc::new(cfg.session_config(&cfg.listeners[dialog_listener(&d.overrides) - 1])),
        pure_directory(&cfg),
        implicit_tls(&d.overrides),
    );
    let mut last: Option<WireReply> = None;
    for l in &d.lines {
        match l {
            Line::StartTls { line } => {
                if let Some(r) = run.replies.pop_front() {
                    return Err(format!(
                        "{}: === starttls, but a reply is still unread: {}",
                        d.at(*line),
                        show(&r)
                    ));
                }
                if !std::mem::take(&mut run.tls_pending) {
                    return Err(format!(
                        "{}: === starttls, but the session is not waiting for a handshake",
                        d.at(*line)
                    ));
                }
                run.s.tls_started(fake_tls());
                run.run();
            }
            Line::Send { line, bytes } => {
                if run.closed {
                    return Err(format!(
                        "{}: sending, but the session has closed",
                        d.at(*line)
                    ));
                }
                run.s.feed(bytes);
                run.run();
            }
            Line::Expect {
                line,
                what: Expect::Closed,
            } => {
                if let Some(r) = run.replies.pop_front() {
                    return Err(format!(
                        "{}: expected the connection closed, got reply {}",
                        d.at(*line),
                        show(&r)
                    ));
                }
                if !run.closed {
                    return Err(format!(
                        "{}: expected the connection closed, the session wants more input",
                        d.at(*line)
                    ));
                }
            }
            Line::Expect { line, what } => {
                let next = match what {
                    Expect::AlsoContains(_) | Expect::NotContains(_) => None,
                    _ => match run.replies.pop_front() {
                        Some(r) => Some(r),
                        None if run.closed => {
                            return Err(format!(
                                "{}: {what:?}: the session closed instead",
                                d.at(*line)
                            ))
                        }
                        None => {
                            return Err(format!(
                                "{}: {what:?}: no reply, the session wants more input",
                                d.at(*line)
                            ))
                        }
                    },
                };
                last = check(what, next, last.as_ref())
                    .map_err(|e| format!("{}: {e}", d.at(*line)))?;
            }
        }
    }
    if let Some(r) = run.replies.pop_front() {
        return Err(format!(
            "{}: end of dialog: a reply is left over (out of step): {}",
            d.at(last_line(d)),
            show(&r)
        ));
    }
    Ok(())
}

fn last_line(d: &Dialog) -> usize {
    match d.lines.last() {
        Some(Line::Send { line, .. } | Line::Expect { line, .. } | Line::StartTls { line }) => {
            *line
        }
        None => 1,
    }
}

// --- TCP run -----------------------------------------------------------------

enum Read {
    Reply(WireReply),
    Closed,
    Timeout,
    Bad(String),
}

fn read_reply(r: &mut impl BufRead) -> Read {
    let mut lines = Vec::new();
    loop {
        let mut buf = Vec::new();
        match r.read_until(b'\n', &mut buf) {
            Ok(0) if lines.is_empty() => return Read::Closed,
            Ok(0) => return Read::Bad(format!("connection closed inside a reply after {lines:?}")),
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Read::Timeout
            }
            // A TLS peer that hangs up without close_notify: UnexpectedEof.
            Err(e)
                if lines.is_empty()
                    && matches!(
                        e.kind(),
                        ErrorKind::ConnectionReset | ErrorKind::UnexpectedEof
                    ) =>
            {
                return Read::Closed
            }
            Err(e) => return Read::Bad(format!("read error: {e}")),
        }
        let line = String::from_utf8_lossy(&buf).into_owned();
        let Some(line) = line.strip_suffix("\r\n") else {
            return Read::Bad(format!("reply line without CRLF: {line:?}"));
        };
        let ok = line.len() >= 3
            && line.as_bytes()[..3].iter().all(u8::is_ascii_digit)
            && matches!(line.as_bytes().get(3), None | Some(b' ') | Some(b'-'));
        if !ok {
            return Read::Bad(format!("malformed reply line {line:?}"));
        }
        let more = line.as_bytes().get(3) == Some(&b'-');
        lines.push(line.to_string());
        if !more {
            return Read::Reply(lines);
        }
    }
}

/// A rustls client that accepts any certificate (the server's is
/// self-signed); the handshake signatures are still checked.
mod tls_client {
    use super::*;
    use rustls::pki_types::ServerName;
    use rustls::ClientConnection;

    /// The plain or TLS socket of the TCP run.
    pub enum Conn {
        Plain(TcpStream),
        Tls(Box<rustls::StreamOwned<ClientConnection, TcpStream>>),
    }

    impl std::io::Read for Conn {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            match self {
                Conn::Plain(s) => s.read(buf),
                Conn::Tls(s) => s.read(buf),
            }
        }
    }

    impl Write for Conn {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            match self {
                Conn::Plain(s) => s.write(buf),
                Conn::Tls(s) => s.write(buf),
            }
        }
        fn flush(&mut self) -> std::io::Result<()> {
            match self {
                Conn::Plain(s) => s.flush(),
                Conn::Tls(s) => s.flush(),
            }
        }
    }

    /// The handshake on a plain connection.
    pub fn handshake(conn: Conn) -> Result<Conn, String> {
        let Conn::Plain(mut tcp) = conn else {
            return Err("TLS is already active".into());
        };
        let name = ServerName::try_from("mx.example.test").unwrap();
        let mut c = ClientConnection::new(crate::common::tls::client_config(false), name)
            .map_err(|e| e.to_string())?;
        while c.is_handshaking() {
            c.complete_io(&mut tcp)
                .map_err(|e| format!("TLS handshake: {e}"))?;
        }
        Ok(Conn::Tls(Box::new(rustls::StreamOwned::new(c, tcp))))
    }
}

use tls_client::Conn;

fn run_tcp(d: &Dialog, addr: std::net::SocketAddr) -> Result<(), String> {
    let stream = TcpStream::connect(addr).map_err(|e| format!("{}: connect: {e}", d.at(1)))?;
    stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    stream.set_nodelay(true).unwrap();
    let mut conn = Conn::Plain(stream);
    if implicit_tls(&d.overrides) {
        conn = tls_client::handshake(conn).map_err(|e| format!("{}: {e}", d.at(1)))?;
    }
    let mut r = BufReader::new(conn);
    let mut last: Option<WireReply> = None;
    let mut closed = false;
    let mut prev_was_send = false;
    for l in &d.lines {
        match l {
            Line::StartTls { line } => {
                prev_was_send = false;
                if !r.buffer().is_empty() {
                    return Err(format!(
                        "{}: === starttls, but the server sent more in plaintext: {:?}",
                        d.at(*line),
                        String::from_utf8_lossy(r.buffer())
                    ));
                }
                let conn = tls_client::handshake(r.into_inner())
                    .map_err(|e| format!("{}: {e}", d.at(*line)))?;
                r = BufReader::new(conn);
            }
            Line::Send { line, bytes } => {
                if prev_was_send {
                    // Two writes without an expectation between: give the
                    // server a chance to see them apart.
                    std::thread::sleep(Duration::from_millis(50));
                }
                let w = r.get_mut();
                w.write_all(bytes)
                    .and_then(|_| w.flush())
                    .map_err(|e| format!("{}: write: {e}", d.at(*line)))?;
                prev_was_send = true;
            }
            Line::Expect { line, what } => {
                prev_was_send = false;
                let next = match what {
                    Expect::AlsoContains(_) | Expect::NotContains(_) => None,
                    _ => match read_reply(&mut r) {
                        Read::Reply(rep) => Some(rep),
                        Read::Closed if matches!(what, Expect::Closed) => {
                            closed = true;
                            continue;
                        }
                        Read::Closed => {
                            return Err(format!(
                                "{}: {what:?}: the server closed the connection",
                                d.at(*line)
                            ))
                        }
                        Read::Timeout => {
                            return Err(format!(
                                "{}: {what:?}: no reply within {READ_TIMEOUT:?}",
                                d.at(*line)
                            ))
                        }
                        Read::Bad(e) => return Err(format!("{}: {what:?}: {e}", d.at(*line))),
                    },
                };
                if matches!(what, Expect::Closed) {
                    return Err(format!(
                        "{}: expected the connection closed, got reply {}",
                        d.at(*line),
                        show(&next.unwrap())
                    ));
                }
                last = check(what, next, last.as_ref())
                    .map_err(|e| format!("{}: {e}", d.at(*line)))?;
            }
        }
    }
    if !closed {
        // In step? The very next reply must be the one to this QUIT.
        let at = d.at(last_line(d));
        let w = r.get_mut();
        w.write_all(b"QUIT\r\n")
            .and_then(|_| w.flush())
            .map_err(|e| format!("{at}: end of dialog: write QUIT: {e}"))?;
        match read_reply(&mut r) {
            Read::Reply(rep) if rep[0].starts_with("221 ") => {}
            Read::Reply(rep) => {
                return Err(format!(
                    "{at}: end of dialog: a reply is left over (out of step): {}",
                    show(&rep)
                ))
            }
            Read::Closed => {
                return Err(format!(
                    "{at}: end of dialog: the server closed the connection"
                ))
            }
            Read::Timeout => return Err(format!("{at}: end of dialog: no reply to QUIT")),
            Read::Bad(e) => return Err(format!("{at}: end of dialog: {e}")),
        }
    }
    Ok(())
}

// --- the tests ---------------------------------------------------------------

fn report(what: &str, n: usize, failures: Vec<String>) {
    assert!(
        failures.is_empty(),
        "{} of {n} dialogs failed {what}:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn dialogs_against_pure_session() {
    let dialogs = all_dialogs();
    let mut failures = Vec::new();
    for d in &dialogs {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_pure(d)));
        match r {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failures.push(e),
            Err(p) => failures.push(format!("{}: the session panicked: {p:?}", d.at(1))),
        }
    }
    report("against the pure session", dialogs.len(), failures);
}

#[test]
fn dialogs_over_tcp() {
    let dialogs = all_dialogs();
    // One server per distinct set of config overrides.
    let mut groups: BTreeMap<Vec<(String, String)>, Vec<&Dialog>> = BTreeMap::new();
    for d in &dialogs {
        groups.entry(d.overrides.clone()).or_default().push(d);
    }
    let mut failures = Vec::new();
    for (overrides, ds) in groups {
        let srv = builder(&overrides).start();
        let addr = srv.listener_addr(dialog_listener(&overrides));
        for d in ds {
            if let Err(e) = run_tcp(d, addr) {
                failures.push(e);
            }
        }
        let log = srv.log();
        if log.contains("crashed") || log.contains("panicked") {
            failures.push(format!(
                "server log shows a crash (overrides {overrides:?}):\n{log}"
            ));
        }
    }
    report("over TCP", dialogs.len(), failures);
}

/// The dialog files exist for the cases the issue names.
#[test]
fn dialog_files_cover_the_named_cases() {
    let names: Vec<String> = all_dialogs().iter().map(|d| d.name.clone()).collect();
    for must in [
        "basic-transaction.txt",
        "pipelining-whole-transaction.txt",
        "banner.txt",
        "smuggling-lf-dot-lf.txt",
        "smuggling-cr-dot-cr.txt",
        "command-line-513-octets.txt",
        "text-line-1001-octets.txt",
        // Issue 7: a missing or empty path is 501, not 553.
        "mail-rcpt-missing-path.txt",
        "rcpt-null-path.txt",
        "path-route-without-mailbox.txt",
    ] {
        assert!(
            names.iter().any(|n| n == must),
            "missing tests/dialogs/{must}"
        );
    }
    let smuggling = names.iter().filter(|n| n.starts_with("smuggling-")).count();
    assert!(smuggling >= 12, "only {smuggling} smuggling dialogs");
    // Issue 3: STARTTLS and AUTH.
    for must in [
        "tls-starttls-reset.txt",
        "tls-starttls-twice.txt",
        "tls-starttls-injection.txt",
        "auth-before-tls.txt",
        "auth-plain-initial-response.txt",
        "auth-plain-no-initial-response.txt",
        "auth-login.txt",
        "auth-cancel.txt",
        "auth-unknown-mechanism.txt",
    ] {
        assert!(
            names.iter().any(|n| n == must),
            "missing tests/dialogs/{must}"
        );
    }
}
