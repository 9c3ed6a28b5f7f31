//! tls-load: an SMTP load generator over TLS with AUTH PLAIN, for
//! scripts/bench (Postfix's smtp-source cannot speak TLS).
//!
//! Load mode, like smtp-source: S threads send M messages in all, one message
//! per connection unless --reuse N. Each connection: greeting, EHLO,
//! STARTTLS, TLS handshake, EHLO, AUTH PLAIN, then per message MAIL, RCPT,
//! DATA and the body, then QUIT. With --implicit the TLS handshake comes
//! first (port-465 style) and STARTTLS is skipped.
//!
//! Hold mode (--hold N --hold-seconds S): opens N sessions up to and
//! including AUTH, prints `HOLDING n`, keeps them idle for S seconds, then
//! QUITs them all: for measuring a server's memory per concurrent TLS
//! session.
//!
//! The client accepts any server certificate without looking at it or at the
//! handshake signature: it benchmarks our own servers on loopback, and a
//! client that skips that work leaves more of the shared CPUs to the server.
//! TLS session resumption is off unless --resume: every connection pays a
//! full handshake.

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::Resumption;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme, StreamOwned};

const USAGE: &str = "\
usage: tls-load [options] HOST:PORT
  -s SESSIONS      parallel sessions (default 1)
  -m MESSAGES      messages in all (default 1)
  -l BYTES         body size in bytes, CRLF lines included (default 5120)
  -f FROM          envelope sender (default sender@client.test)
  -t TO            envelope recipient (default user@bench.test)
  -u USER          AUTH PLAIN user (no AUTH without it)
  -p PASSWORD      AUTH PLAIN password
  -M NAME          EHLO name (default client.test)
  --implicit       TLS from the first byte (no STARTTLS)
  --plain          no TLS at all (for comparison)
  --tls12          TLS 1.2 only (default: TLS 1.3 only)
  --resume         allow TLS session resumption (default: a full handshake each time)
  --servername N   SNI name to send (default: none, the target is an IP address)
  --reuse N        up to N messages per connection (default 1)
  --timeout SECS   per read/write (default 120)
  --hold N         hold mode: open N authenticated sessions, keep them idle, QUIT
  --hold-seconds S how long to hold them (default 10)
Prints `RESULT ok=.. failed=.. wall_s=.. msgs_per_s=..`; exits 1 if any message failed.";

#[derive(Clone)]
struct Opts {
    sessions: usize,
    messages: usize,
    length: usize,
    from: String,
    to: String,
    user: Option<String>,
    password: String,
    helo: String,
    implicit: bool,
    plain: bool,
    tls12: bool,
    resume: bool,
    servername: Option<String>,
    reuse: usize,
    timeout: Duration,
    hold: Option<usize>,
    hold_seconds: u64,
    addr: SocketAddr,
}

fn parse_args() -> Result<Opts, String> {
    let mut o = Opts {
        sessions: 1,
        messages: 1,
        length: 5120,
        from: "sender@client.test".into(),
        to: "user@bench.test".into(),
        user: None,
        password: String::new(),
        helo: "client.test".into(),
        implicit: false,
        plain: false,
        tls12: false,
        resume: false,
        servername: None,
        reuse: 1,
        timeout: Duration::from_secs(120),
        hold: None,
        hold_seconds: 10,
        addr: "127.0.0.1:25".parse().unwrap(),
    };
    let mut target = None;
    let mut args = std::env::args().skip(1);
    fn num(name: &str, v: Option<String>, min: usize) -> Result<usize, String> {
        let v = v.ok_or(format!("{name} needs a value"))?;
        match v.parse::<usize>() {
            Ok(n) if n >= min => Ok(n),
            _ => Err(format!("{name}: '{v}' is not a number >= {min}")),
        }
    }
    fn text(name: &str, v: Option<String>) -> Result<String, String> {
        v.ok_or(format!("{name} needs a value"))
    }
    while let Some(a) = args.next() {
        match a.as_str() {
            "-s" => o.sessions = num(&a, args.next(), 1)?,
            "-m" => o.messages = num(&a, args.next(), 1)?,
            "-l" => o.length = num(&a, args.next(), 0)?,
            "-f" => o.from = text(&a, args.next())?,
            "-t" => o.to = text(&a, args.next())?,
            "-u" => o.user = Some(text(&a, args.next())?),
            "-p" => o.password = text(&a, args.next())?,
            "-M" => o.helo = text(&a, args.next())?,
            "--implicit" => o.implicit = true,
            "--plain" => o.plain = true,
            "--tls12" => o.tls12 = true,
            "--resume" => o.resume = true,
            "--servername" => o.servername = Some(text(&a, args.next())?),
            "--reuse" => o.reuse = num(&a, args.next(), 1)?,
            "--timeout" => o.timeout = Duration::from_secs(num(&a, args.next(), 1)? as u64),
            "--hold" => o.hold = Some(num(&a, args.next(), 1)?),
            "--hold-seconds" => o.hold_seconds = num(&a, args.next(), 0)? as u64,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            _ if a.starts_with('-') => return Err(format!("unknown option {a}")),
            _ if target.is_none() => target = Some(a),
            _ => return Err(format!("unexpected argument {a}")),
        }
    }
    let target = target.ok_or("no HOST:PORT given")?;
    o.addr = target
        .parse()
        .map_err(|_| format!("'{target}' is not an IP:PORT address"))?;
    if o.plain && o.implicit {
        return Err("--plain and --implicit exclude each other".into());
    }
    if o.user.is_some() && o.password.is_empty() {
        return Err("-u needs -p".into());
    }
    Ok(o)
}

/// Accepts every certificate and every handshake signature: see the top.
#[derive(Debug)]
struct AcceptAnything(Vec<SignatureScheme>);

impl ServerCertVerifier for AcceptAnything {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.clone()
    }
}

fn tls_config(o: &Opts) -> Result<Arc<ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let schemes = provider
        .signature_verification_algorithms
        .supported_schemes();
    let versions: &[&rustls::SupportedProtocolVersion] = if o.tls12 {
        &[&rustls::version::TLS12]
    } else {
        &[&rustls::version::TLS13]
    };
    let mut cfg = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .map_err(|e| format!("TLS config: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnything(schemes)))
        .with_no_client_auth();
    if !o.resume {
        cfg.resumption = Resumption::disabled();
    }
    Ok(Arc::new(cfg))
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
    Gone,
}

impl Read for Stream {
    fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(b),
            Stream::Tls(s) => s.read(b),
            Stream::Gone => Err(io::ErrorKind::NotConnected.into()),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(b),
            Stream::Tls(s) => s.write(b),
            Stream::Gone => Err(io::ErrorKind::NotConnected.into()),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
            Stream::Gone => Ok(()),
        }
    }
}

struct Reply {
    code: u16,
    lines: Vec<String>,
}

struct Client {
    s: Stream,
    buf: Vec<u8>,
    pos: usize,
    end: usize,
}

type R<T> = Result<T, String>;

impl Client {
    fn connect(o: &Opts) -> R<Client> {
        let s =
            TcpStream::connect_timeout(&o.addr, o.timeout).map_err(|e| format!("connect: {e}"))?;
        s.set_nodelay(true).map_err(|e| format!("nodelay: {e}"))?;
        s.set_read_timeout(Some(o.timeout))
            .map_err(|e| e.to_string())?;
        s.set_write_timeout(Some(o.timeout))
            .map_err(|e| e.to_string())?;
        Ok(Client {
            s: Stream::Plain(s),
            buf: vec![0; 4096],
            pos: 0,
            end: 0,
        })
    }

    fn line(&mut self) -> R<String> {
        let mut out = Vec::new();
        loop {
            if self.pos == self.end {
                self.pos = 0;
                self.end = match self.s.read(&mut self.buf) {
                    Ok(0) => {
                        return Err(format!(
                            "connection closed (partial line {:?})",
                            lossy(&out)
                        ))
                    }
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => 0,
                    Err(e) => return Err(format!("read: {e}")),
                };
                continue;
            }
            let avail = &self.buf[self.pos..self.end];
            if let Some(i) = avail.iter().position(|&b| b == b'\n') {
                out.extend_from_slice(&avail[..i]);
                self.pos += i + 1;
                if out.last() == Some(&b'\r') {
                    out.pop();
                }
                return Ok(lossy(&out));
            }
            out.extend_from_slice(avail);
            self.pos = self.end;
            if out.len() > 4096 {
                return Err("reply line longer than 4 KB".into());
            }
        }
    }

    fn reply(&mut self) -> R<Reply> {
        let mut lines = Vec::new();
        loop {
            let l = self.line()?;
            let code = l.get(..3).and_then(|c| c.parse::<u16>().ok());
            let sep = l.as_bytes().get(3).copied();
            let Some(code) = code else {
                return Err(format!("malformed reply line {l:?}"));
            };
            let last = sep != Some(b'-');
            lines.push(l);
            if last {
                return Ok(Reply { code, lines });
            }
        }
    }

    fn expect(&mut self, what: &str, code: u16) -> R<Reply> {
        let r = self.reply()?;
        if r.code != code {
            return Err(format!("{what}: got {}", r.lines.join(" / ")));
        }
        Ok(r)
    }

    fn send(&mut self, data: &[u8]) -> R<()> {
        self.s.write_all(data).map_err(|e| format!("write: {e}"))?;
        self.s.flush().map_err(|e| format!("write: {e}"))
    }

    fn cmd(&mut self, line: &str, code: u16) -> R<Reply> {
        self.send(format!("{line}\r\n").as_bytes())?;
        let shown = if line.starts_with("AUTH ") {
            "AUTH PLAIN ..."
        } else {
            line
        };
        self.expect(shown, code)
    }

    fn handshake(&mut self, cfg: &Arc<ClientConfig>, o: &Opts) -> R<()> {
        if self.pos != self.end {
            return Err("server sent bytes before the TLS handshake".into());
        }
        let Stream::Plain(mut sock) = std::mem::replace(&mut self.s, Stream::Gone) else {
            return Err("TLS twice".into());
        };
        let name = match &o.servername {
            Some(n) => ServerName::try_from(n.clone()).map_err(|e| format!("server name: {e}"))?,
            None => ServerName::IpAddress(o.addr.ip().into()),
        };
        let mut conn = ClientConnection::new(cfg.clone(), name).map_err(|e| format!("TLS: {e}"))?;
        while conn.is_handshaking() {
            conn.complete_io(&mut sock)
                .map_err(|e| format!("TLS handshake: {e}"))?;
        }
        self.s = Stream::Tls(Box::new(StreamOwned::new(conn, sock)));
        Ok(())
    }

    fn tls_info(&self) -> Option<String> {
        match &self.s {
            Stream::Tls(s) => Some(format!(
                "{:?} {:?}",
                s.conn.protocol_version()?,
                s.conn.negotiated_cipher_suite()?.suite()
            )),
            _ => None,
        }
    }
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// RFC 5322 date of now, UTC.
fn rfc5322_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0) as i64;
    let days = secs.div_euclid(86400);
    let sod = secs.rem_euclid(86400);
    // Civil from days (H. Hinnant).
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    const WD: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MO: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{}, {} {} {} {:02}:{:02}:{:02} +0000",
        WD[days.rem_euclid(7) as usize],
        d,
        MO[(m - 1) as usize],
        y,
        sod / 3600,
        sod / 60 % 60,
        sod % 60
    )
}

/// Headers, then a body of `length` bytes in lines of X (never a leading
/// dot), then the end-of-data dot.
fn message_template(o: &Opts) -> (String, Vec<u8>) {
    let head = format!(
        "From: <{}>\r\nTo: <{}>\r\nDate: {}\r\nSubject: tls-load\r\n",
        o.from,
        o.to,
        rfc5322_now()
    );
    let mut body = Vec::with_capacity(o.length + 8);
    body.extend_from_slice(b"\r\n");
    let mut rem = o.length;
    while rem > 0 {
        let n = rem.saturating_sub(2).clamp(1, 78);
        body.extend(std::iter::repeat_n(b'X', n));
        body.extend_from_slice(b"\r\n");
        rem = rem.saturating_sub(n + 2);
    }
    body.extend_from_slice(b".\r\n");
    (head, body)
}

struct Shared {
    o: Opts,
    cfg: Arc<ClientConfig>,
    head: String,
    body: Vec<u8>,
    next: AtomicUsize,
    ok: AtomicUsize,
    failed: AtomicUsize,
    errors_shown: AtomicUsize,
    handshake_ns: AtomicU64,
    handshakes: AtomicU64,
    tls_info: Mutex<Option<String>>,
}

impl Shared {
    fn error(&self, what: &str) {
        let n = self.errors_shown.fetch_add(1, Ordering::Relaxed);
        if n < 10 {
            eprintln!("tls-load: {what}");
        } else if n == 10 {
            eprintln!("tls-load: (further errors not shown)");
        }
    }
}

/// Connect, greeting, EHLO, STARTTLS + handshake (or implicit TLS), EHLO,
/// AUTH PLAIN: a session ready for MAIL.
fn open_session(sh: &Shared) -> R<Client> {
    let o = &sh.o;
    let mut c = Client::connect(o)?;
    if o.implicit {
        let t = Instant::now();
        c.handshake(&sh.cfg, o)?;
        sh.handshake_ns
            .fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
        sh.handshakes.fetch_add(1, Ordering::Relaxed);
    }
    c.expect("greeting", 220)?;
    let ehlo = format!("EHLO {}", o.helo);
    let r = c.cmd(&ehlo, 250)?;
    if !o.plain && !o.implicit {
        if !r.lines.iter().any(|l| {
            l.get(4..)
                .is_some_and(|k| k.eq_ignore_ascii_case("STARTTLS"))
        }) {
            return Err(format!(
                "no STARTTLS in the EHLO reply: {}",
                r.lines.join(" / ")
            ));
        }
        c.cmd("STARTTLS", 220)?;
        let t = Instant::now();
        c.handshake(&sh.cfg, o)?;
        sh.handshake_ns
            .fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
        sh.handshakes.fetch_add(1, Ordering::Relaxed);
        c.cmd(&ehlo, 250)?;
    }
    {
        let mut info = sh.tls_info.lock().unwrap();
        if info.is_none() {
            *info = c.tls_info();
        }
    }
    if let Some(user) = &o.user {
        let token = base64(format!("\0{user}\0{}", o.password).as_bytes());
        c.cmd(&format!("AUTH PLAIN {token}"), 235)?;
    }
    Ok(c)
}

/// One connection carrying up to `count` messages; returns how many were
/// accepted (250 after the dot). An error ends the connection.
fn connection(sh: &Shared, count: usize, first: usize) -> (usize, Option<String>) {
    let mut c = match open_session(sh) {
        Ok(c) => c,
        Err(e) => return (0, Some(e)),
    };
    let o = &sh.o;
    let mut ok = 0;
    let mut data = Vec::with_capacity(sh.head.len() + sh.body.len() + 64);
    for i in 0..count {
        let step = (|| -> R<()> {
            c.cmd(&format!("MAIL FROM:<{}>", o.from), 250)?;
            c.cmd(&format!("RCPT TO:<{}>", o.to), 250)?;
            c.cmd("DATA", 354)?;
            data.clear();
            data.extend_from_slice(sh.head.as_bytes());
            data.extend_from_slice(
                format!(
                    "Message-Id: <tls-load.{}.{}@client.test>\r\n",
                    std::process::id(),
                    first + i
                )
                .as_bytes(),
            );
            data.extend_from_slice(&sh.body);
            c.send(&data)?;
            c.expect("end of DATA", 250)?;
            Ok(())
        })();
        match step {
            Ok(()) => ok += 1,
            Err(e) => return (ok, Some(e)),
        }
    }
    // A failed QUIT after accepted messages does not unaccept them.
    if let Err(e) = c.cmd("QUIT", 221) {
        sh.error(&format!("QUIT: {e}"));
    }
    (ok, None)
}

fn load(sh: Arc<Shared>) -> bool {
    let o = &sh.o;
    let start = Instant::now();
    let threads: Vec<_> = (0..o.sessions.min(o.messages))
        .map(|_| {
            let sh = sh.clone();
            thread::spawn(move || loop {
                let first = sh.next.fetch_add(sh.o.reuse, Ordering::Relaxed);
                if first >= sh.o.messages {
                    break;
                }
                let count = sh.o.reuse.min(sh.o.messages - first);
                let (ok, err) = connection(&sh, count, first);
                sh.ok.fetch_add(ok, Ordering::Relaxed);
                sh.failed.fetch_add(count - ok, Ordering::Relaxed);
                if let Some(e) = err {
                    sh.error(&e);
                }
            })
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
    let wall = start.elapsed().as_secs_f64();
    let ok = sh.ok.load(Ordering::Relaxed);
    let failed = sh.failed.load(Ordering::Relaxed);
    let hs = sh.handshakes.load(Ordering::Relaxed);
    let hs_ms = if hs > 0 {
        sh.handshake_ns.load(Ordering::Relaxed) as f64 / hs as f64 / 1e6
    } else {
        0.0
    };
    println!(
        "tls-load: {} messages of {} bytes over {} sessions to {}, {}, {}, {} message(s) per connection",
        o.messages,
        o.length,
        o.sessions,
        o.addr,
        mode(o),
        sh.tls_info.lock().unwrap().as_deref().unwrap_or("no TLS negotiated"),
        o.reuse
    );
    println!(
        "RESULT ok={ok} failed={failed} wall_s={wall:.3} msgs_per_s={:.1} handshakes={hs} handshake_ms_avg={hs_ms:.3}",
        ok as f64 / wall
    );
    failed == 0
}

fn mode(o: &Opts) -> String {
    let tls = if o.plain {
        "plain"
    } else if o.implicit {
        "implicit TLS"
    } else {
        "STARTTLS"
    };
    let auth = if o.user.is_some() {
        " + AUTH PLAIN"
    } else {
        ""
    };
    format!("{tls}{auth}")
}

fn hold(sh: Arc<Shared>, n: usize) -> bool {
    let o = &sh.o;
    let held: Arc<Mutex<Vec<Client>>> = Arc::new(Mutex::new(Vec::with_capacity(n)));
    let start = Instant::now();
    let threads: Vec<_> = (0..o.sessions.min(n))
        .map(|_| {
            let (sh, held) = (sh.clone(), held.clone());
            thread::spawn(move || loop {
                if sh.next.fetch_add(1, Ordering::Relaxed) >= n {
                    break;
                }
                match open_session(&sh) {
                    Ok(c) => held.lock().unwrap().push(c),
                    Err(e) => {
                        sh.failed.fetch_add(1, Ordering::Relaxed);
                        sh.error(&e);
                    }
                }
            })
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
    let mut held = std::mem::take(&mut *held.lock().unwrap());
    let failed = sh.failed.load(Ordering::Relaxed);
    println!(
        "HOLDING {} sessions ({}, {}) failed={failed} open_s={:.3}",
        held.len(),
        mode(o),
        sh.tls_info
            .lock()
            .unwrap()
            .as_deref()
            .unwrap_or("no TLS negotiated"),
        start.elapsed().as_secs_f64()
    );
    let _ = io::stdout().flush();
    thread::sleep(Duration::from_secs(o.hold_seconds));
    let mut quit_failed = 0;
    for c in held.iter_mut() {
        if let Err(e) = c.cmd("QUIT", 221) {
            quit_failed += 1;
            sh.error(&format!("QUIT after holding: {e}"));
        }
    }
    println!("RELEASED {} sessions quit_failed={quit_failed}", held.len());
    failed == 0 && quit_failed == 0
}

fn main() -> ExitCode {
    let o = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("tls-load: {e}\n{USAGE}");
            return ExitCode::from(64);
        }
    };
    if let IpAddr::V4(a) = o.addr.ip() {
        if !a.is_loopback() {
            eprintln!("tls-load: refusing a non-loopback target {}", o.addr);
            return ExitCode::from(64);
        }
    } else if !o.addr.ip().is_loopback() {
        eprintln!("tls-load: refusing a non-loopback target {}", o.addr);
        return ExitCode::from(64);
    }
    let cfg = match tls_config(&o) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("tls-load: {e}");
            return ExitCode::from(1);
        }
    };
    let (head, body) = message_template(&o);
    let hold_n = o.hold;
    let sh = Arc::new(Shared {
        o,
        cfg,
        head,
        body,
        next: AtomicUsize::new(0),
        ok: AtomicUsize::new(0),
        failed: AtomicUsize::new(0),
        errors_shown: AtomicUsize::new(0),
        handshake_ns: AtomicU64::new(0),
        handshakes: AtomicU64::new(0),
        tls_info: Mutex::new(None),
    });
    let good = match hold_n {
        Some(n) => hold(sh, n),
        None => load(sh),
    };
    if good {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64(b"\0u\0p"), "AHUAcA==");
    }

    #[test]
    fn body_has_the_asked_length_and_no_leading_dot() {
        for len in [0, 1, 2, 3, 79, 80, 81, 5120] {
            let o = Opts {
                length: len,
                ..parse_defaults()
            };
            let (_, body) = message_template(&o);
            let inner = &body[2..body.len() - 3];
            assert!(
                inner.len() >= len && inner.len() <= len + 3,
                "len {len}: {}",
                inner.len()
            );
            assert!(inner.split(|&b| b == b'\n').all(|l| !l.starts_with(b".")));
            assert!(body.ends_with(b"\r\n.\r\n") || len == 0);
        }
    }

    fn parse_defaults() -> Opts {
        Opts {
            sessions: 1,
            messages: 1,
            length: 0,
            from: "a@x.test".into(),
            to: "b@y.test".into(),
            user: None,
            password: String::new(),
            helo: "h".into(),
            implicit: false,
            plain: false,
            tls12: false,
            resume: false,
            servername: None,
            reuse: 1,
            timeout: Duration::from_secs(1),
            hold: None,
            hold_seconds: 0,
            addr: "127.0.0.1:1".parse().unwrap(),
        }
    }

    #[test]
    fn date_is_rfc5322_shaped() {
        let d = rfc5322_now();
        assert!(d.ends_with(" +0000") && d.as_bytes()[3] == b',', "{d}");
    }
}
