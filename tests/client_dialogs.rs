//! The SMTP client machine (postern::smtp::client) against scripted server
//! dialogs, one readable file per case in tests/client_dialogs/*.txt. The
//! server side is played by the file; the client's every line and event
//! must come out exactly in the order the file says.
//!
//! Dialog format, one directive per line:
//!
//! ```text
//! # comment                 (blank lines are ignored too)
//! #! key = value            client setting: helo, tls (none|may|encrypt|
//!                           verify), user, password, auth_without_tls,
//!                           pipelining (true|false), data_done_timeout (s)
//! S: TEXT                   a server line, CRLF appended; adjacent S:/S!
//!                           lines are fed to the client in one piece
//! S! RAW                    server bytes as they are; escapes \r \n \t \\
//!                           \xHH, and \{TEXT*N} = TEXT repeated N times
//! C: TEXT                   the client's next line is exactly TEXT
//! == EVENT                  the client's next event starts with EVENT:
//!                           ready | starttls | body | closed[: failure]
//! => RESULT                 the next recipient result starts with RESULT:
//!                           `b@y.test permanent 550 5.1.1 ...` (server
//!                           reply) or `b@y.test permanent 5.3.4 ...`
//! ?? wait STAGE SECONDS     the client now waits for a reply in STAGE
//!                           (greeting, ehlo, mail, rcpt, data, datadone...)
//! !! body RAW               the content of the next message (escapes as
//!                           S!); default `Subject: test\nhello\n`
//! !! send <FROM> <TO>...    the client is ready: give it a message; words
//!                           after the addresses: size=N 8bit utf8 xforward
//!                           dsn (RET/ENVID/NOTIFY/ORCPT set)
//! !! quit                   the client is ready: end the session
//! !! tls | !! tls-fail WHY  the outcome of the handshake after `== starttls`
//! !! timeout | !! eof       the wait timed out | the server hung up
//! ```
//!
//! After the last line, the client must have nothing more to say: every
//! line it wrote and every event must have been expected.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::time::Duration;

use postern::smtp::address::{Address, ReversePath};
use postern::smtp::client::{
    Client, ClientConfig, ClientCredentials, Detail, Envelope, Step, TlsPolicy, XForward,
};
use postern::smtp::sasl::Secret;

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
                let n: usize = n.parse().map_err(|_| format!("bad count in {inner}"))?;
                out.extend(unescape(text)?.repeat(n));
                i = end + 1;
                continue;
            }
            _ => return Err("unknown escape".into()),
        }
        i += 2;
    }
    Ok(out)
}

fn config(settings: &[(String, String)]) -> Result<ClientConfig, String> {
    let mut cfg = ClientConfig {
        helo_name: "client.example.test".into(),
        ..ClientConfig::default()
    };
    let (mut user, mut password) = (None, None);
    for (k, v) in settings {
        let flag = || match v.as_str() {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err(format!("{k}: true or false, not {v}")),
        };
        match k.as_str() {
            "helo" => cfg.helo_name = v.clone(),
            "tls" => {
                cfg.tls = match v.as_str() {
                    "none" => TlsPolicy::None,
                    "may" => TlsPolicy::May,
                    "encrypt" => TlsPolicy::Encrypt,
                    "verify" => TlsPolicy::Verify,
                    _ => return Err(format!("tls: none|may|encrypt|verify, not {v}")),
                }
            }
            "user" => user = Some(v.clone()),
            "password" => password = Some(v.clone()),
            "auth_without_tls" => cfg.auth_without_tls = flag()?,
            "pipelining" => cfg.pipelining = flag()?,
            "data_done_timeout" => {
                cfg.timeouts.data_done =
                    Duration::from_secs(v.parse().map_err(|_| format!("bad seconds {v}"))?)
            }
            _ => return Err(format!("unknown setting {k}")),
        }
    }
    if let (Some(user), Some(p)) = (user, password) {
        cfg.credentials = Some(ClientCredentials {
            user,
            password: Secret::new(p.into_bytes()),
        });
    }
    Ok(cfg)
}

fn envelope(args: &str, body: &[u8]) -> Result<Envelope, String> {
    let mut words = args.split_whitespace();
    let path = |w: Option<&str>| -> Result<Option<Address>, String> {
        let w = w.ok_or("!! send needs <FROM> <TO>...")?;
        let inner = w
            .strip_prefix('<')
            .and_then(|w| w.strip_suffix('>'))
            .ok_or_else(|| format!("expected <address>, got {w}"))?;
        if inner.is_empty() {
            return Ok(None);
        }
        Address::parse(inner, true)
            .map(Some)
            .map_err(|e| format!("{inner}: {e:?}"))
    };
    let sender = match path(words.next())? {
        Some(a) => ReversePath::Address(a),
        None => ReversePath::Null,
    };
    let mut rcpts = Vec::new();
    let mut rest = Vec::new();
    for w in words {
        if w.starts_with('<') {
            rcpts.push(path(Some(w))?.ok_or("empty recipient")?);
        } else {
            rest.push(w);
        }
    }
    let size = body.len() as u64 + body.iter().filter(|&&b| b == b'\n').count() as u64;
    let mut env = Envelope::new(sender, rcpts, size);
    for w in rest {
        match w.split_once('=') {
            Some(("size", n)) => env.size = n.parse().map_err(|_| format!("bad size {n}"))?,
            None if w == "8bit" => env.body_8bit = true,
            None if w == "utf8" => env.smtputf8 = true,
            None if w == "dsn" => {
                env.ret = Some("HDRS".into());
                env.envid = Some("QID+2B1".into());
                for r in &mut env.recipients {
                    r.notify = Some("FAILURE,DELAY".into());
                    r.orcpt = Some(format!("rfc822;{}", r.address));
                }
            }
            None if w == "xforward" => {
                env.xforward = Some(XForward {
                    name: Some("client.example.test".into()),
                    addr: Some("192.0.2.7".parse().unwrap()),
                    port: Some(4321),
                    proto: Some("ESMTP".into()),
                    helo: Some("client.example.test".into()),
                    ident: Some("ABC123".into()),
                    source: Some("REMOTE".into()),
                })
            }
            _ => return Err(format!("unknown send option {w}")),
        }
    }
    Ok(env)
}

#[derive(PartialEq)]
enum Blocked {
    No,
    Read,
    Tls,
    Ready,
    Closed,
}

/// The client and everything it said that the dialog has not checked yet.
struct Harness {
    c: Client,
    out: VecDeque<String>,
    blocked: Blocked,
    waiting: Option<(String, u64)>,
    body: Vec<u8>,
    /// Recipients of the message in flight, named in `=>` lines.
    rcpts: VecDeque<String>,
}

impl Harness {
    fn lines(&mut self, bytes: &[u8]) {
        let text = String::from_utf8_lossy(bytes);
        let mut rest = &*text;
        while let Some(i) = rest.find("\r\n") {
            self.out.push_back(format!("C: {}", &rest[..i]));
            rest = &rest[i + 2..];
        }
        assert!(
            rest.is_empty(),
            "client wrote a line without CRLF: {rest:?}"
        );
    }

    /// Steps the client until it waits for something from the dialog.
    fn pump(&mut self) {
        if self.blocked != Blocked::No && self.blocked != Blocked::Read {
            return;
        }
        for _ in 0..100_000 {
            match self.c.step() {
                Step::Send(w) => self.lines(w.bytes()),
                Step::Read { stage, timeout } => {
                    self.waiting = Some((format!("{stage:?}").to_lowercase(), timeout.as_secs()));
                    self.blocked = Blocked::Read;
                    return;
                }
                Step::StartTls => {
                    self.out.push_back("== starttls".into());
                    self.blocked = Blocked::Tls;
                    return;
                }
                Step::SendBody { .. } => {
                    self.out.push_back("== body".into());
                    let mut wire = Vec::new();
                    self.c.body(&self.body, &mut wire);
                    self.c.body_end(&mut wire);
                    self.lines(&wire);
                }
                Step::Ready => {
                    self.out.push_back("== ready".into());
                    self.blocked = Blocked::Ready;
                    return;
                }
                Step::Done(m) => {
                    for r in m.recipients {
                        let what = match &r.detail {
                            Detail::Server { .. } => r.text(),
                            Detail::Local { esc, text } => {
                                format!("{}.{}.{} {text}", esc.0, esc.1, esc.2)
                            }
                        };
                        let status = format!("{:?}", r.status).to_lowercase();
                        let who = self.rcpts.pop_front().unwrap_or_default();
                        self.out.push_back(format!("=> {who} {status} {what}"));
                    }
                }
                Step::Closed(f) => {
                    self.out.push_back(match f {
                        None => "== closed".into(),
                        Some(f) => format!("== closed: {f}"),
                    });
                    self.blocked = Blocked::Closed;
                    return;
                }
            }
        }
        panic!("the client loops");
    }
}

fn run(path: &Path) -> Result<(), String> {
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    let text = std::fs::read_to_string(path).map_err(|e| format!("{name}: {e}"))?;
    let mut settings = Vec::new();
    let mut lines: Vec<(usize, &str)> = Vec::new();
    for (i, l) in text.lines().enumerate() {
        if let Some(kv) = l.strip_prefix("#! ") {
            let (k, v) = kv
                .split_once('=')
                .ok_or(format!("{name}:{}: #! key = value", i + 1))?;
            settings.push((k.trim().to_string(), v.trim().to_string()));
        } else if !l.trim().is_empty() && !l.starts_with('#') {
            lines.push((i + 1, l));
        }
    }
    let cfg = config(&settings).map_err(|e| format!("{name}: {e}"))?;
    let mut h = Harness {
        c: Client::new(cfg),
        out: VecDeque::new(),
        blocked: Blocked::No,
        waiting: None,
        body: b"Subject: test\nhello\n".to_vec(),
        rcpts: VecDeque::new(),
    };
    let mut k = 0;
    while k < lines.len() {
        let (n, l) = lines[k];
        let at = format!("tests/client_dialogs/{name}:{n}");
        let err = |m: String| format!("{at}: {m}\n    {l}");
        let (tag, rest) = l.split_once(' ').unwrap_or((l, ""));
        k += 1;
        match tag {
            "S:" | "S!" => {
                let mut bytes = Vec::new();
                let mut j = k - 1;
                while j < lines.len() {
                    let (t, r) = lines[j].1.split_once(' ').unwrap_or((lines[j].1, ""));
                    match t {
                        "S:" => bytes.extend_from_slice(format!("{r}\r\n").as_bytes()),
                        "S!" => bytes.extend(unescape(r).map_err(err)?),
                        _ => break,
                    }
                    j += 1;
                }
                k = j;
                if h.blocked == Blocked::Closed {
                    return Err(err("server bytes after the client closed".into()));
                }
                h.c.feed(&bytes);
                if h.blocked == Blocked::Read {
                    h.blocked = Blocked::No;
                }
            }
            "C:" | "==" | "=>" => {
                h.pump();
                let got = h.out.pop_front();
                let ok = match (tag, &got) {
                    ("C:", Some(g)) => *g == format!("C: {rest}"),
                    ("==" | "=>", Some(g)) => g.starts_with(&format!("{tag} {rest}")),
                    _ => false,
                };
                if !ok {
                    return Err(err(format!(
                        "expected this, the client gave {:?}",
                        got.unwrap_or("nothing".into())
                    )));
                }
            }
            "??" => {
                h.pump();
                let want: Vec<&str> = rest.split_whitespace().collect();
                let got = h.waiting.clone().unwrap_or_default();
                let ok = h.blocked == Blocked::Read
                    && want.len() == 3
                    && want[0] == "wait"
                    && want[1] == got.0
                    && want[2] == got.1.to_string();
                if !ok {
                    return Err(err(format!("the client waits for {got:?}")));
                }
            }
            "!!" => {
                h.pump();
                let (verb, args) = rest.split_once(' ').unwrap_or((rest, ""));
                let need = |b: Blocked, h: &Harness| {
                    if h.blocked == b {
                        Ok(())
                    } else {
                        Err(err(format!("the client is not there yet: {:?}", h.out)))
                    }
                };
                match verb {
                    "body" => h.body = unescape(args).map_err(err)?,
                    "send" => {
                        need(Blocked::Ready, &h)?;
                        let env = envelope(args, &h.body).map_err(err)?;
                        h.rcpts = env
                            .recipients
                            .iter()
                            .map(|r| r.address.to_string())
                            .collect();
                        h.blocked = Blocked::No;
                        h.c.send(env);
                    }
                    "quit" => {
                        need(Blocked::Ready, &h)?;
                        h.blocked = Blocked::No;
                        h.c.quit();
                    }
                    "tls" => {
                        need(Blocked::Tls, &h)?;
                        h.blocked = Blocked::No;
                        h.c.tls_started("TLSv1.3");
                    }
                    "tls-fail" => {
                        need(Blocked::Tls, &h)?;
                        h.blocked = Blocked::No;
                        h.c.tls_failed(args);
                    }
                    "timeout" | "eof" => {
                        need(Blocked::Read, &h)?;
                        h.blocked = Blocked::No;
                        if verb == "timeout" {
                            h.c.timed_out();
                        } else {
                            h.c.lost();
                        }
                    }
                    _ => return Err(err("unknown !! action".into())),
                }
            }
            _ => return Err(err("unknown directive".into())),
        }
    }
    h.pump();
    if !h.out.is_empty() {
        return Err(format!(
            "tests/client_dialogs/{name}: end of dialog, but the client also gave {:?}",
            h.out
        ));
    }
    Ok(())
}

fn dialog_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/client_dialogs");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "txt"))
        .collect();
    v.sort();
    v
}

#[test]
fn client_dialogs() {
    let files = dialog_files();
    let mut failures = Vec::new();
    for f in &files {
        let r = std::panic::catch_unwind(|| run(f));
        match r {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failures.push(e),
            Err(p) => failures.push(format!("{}: panicked: {p:?}", f.display())),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} client dialogs failed:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n\n")
    );
}

/// The cases the issue names each have a dialog.
#[test]
fn client_dialogs_cover_the_named_cases() {
    let names: Vec<String> = dialog_files()
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for must in [
        "reply-multi-line.txt",
        "reply-10000-lines.txt",
        "reply-without-code.txt",
        "421-mid-transaction.txt",
        "rcpt-partial-failure.txt",
        "pipelining-all-rcpts-refused.txt",
        "size-too-big.txt",
        "starttls-injection.txt",
        "auth-choice.txt",
        "xforward.txt",
        "helo-fallback.txt",
    ] {
        assert!(
            names.iter().any(|n| n == must),
            "missing tests/client_dialogs/{must}"
        );
    }
}
