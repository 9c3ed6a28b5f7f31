//! SMTP servers for the outbound tests, all on loopback: the scriptable
//! aiosmtpd sink (tests/common/smtp_sink.py), Postfix's smtp-sink, a
//! private Postfix as a receiving MTA, and raw servers for what a real
//! server will not do on request (never greet, greet with 421, trickle,
//! answer 10,000 lines or no code at all). Each is stopped when dropped,
//! also when the test panics.
//!
//! "Hosts": the whole of 127.0.0.0/8 is loopback, so sinks bound to
//! 127.0.0.2, 127.0.0.3, ... on one port are different MX hosts to
//! postern, whose MX deliveries all go to `[relay] port`
//! ([`sinks_on_one_port`]).
//!
//! Declared by the test files that use it with
//! `#[path = "common/smtp_peers.rs"] mod smtp_peers;` next to `mod common;`.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use crate::common::{python, require, require_python_module, TestDir};

/// A port nobody listens on right now, for peers (aiosmtpd, smtp-sink)
/// that take their port on the command line; callers retry on a clash.
/// postern itself binds port 0 instead.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A port on 127.0.0.1 kept for a peer that binds it later (a config
/// names the port before the peer can start). The socket is bound with
/// SO_REUSEADDR but never listens: the kernel then hands the port to no
/// one else, neither to a bind to port 0 nor to an outgoing connection,
/// while the peer, binding with SO_REUSEADDR as asyncio, Postfix and
/// Rust's std all do, still can. A port from `free_port` can be taken by
/// another test between the pick and the peer's bind.
pub struct HeldPort {
    pub port: u16,
    _socket: socket2::Socket,
}

pub fn hold_port() -> HeldPort {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    s.set_reuse_address(true).unwrap();
    s.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .unwrap();
    let port = s.local_addr().unwrap().as_socket().unwrap().port();
    HeldPort { port, _socket: s }
}

/// A port free on `ip` right now (a loopback address other than
/// 127.0.0.1 may have ports taken that 127.0.0.1 has free).
pub fn free_port_on(ip: &str) -> u16 {
    std::net::TcpListener::bind((ip, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A message as the aiosmtpd sink stored it.
#[derive(Debug)]
pub struct Received {
    pub from: String,
    pub rcpts: Vec<String>,
    pub options: String,
    pub tls: bool,
    pub auth: bool,
    /// The connection it came over (from 1, in the sink's order).
    pub conn: usize,
    pub content: Vec<u8>,
}

pub struct PySink {
    child: Child,
    pub addr: SocketAddr,
    dir: TestDir,
}

impl PySink {
    /// Starts the sink on 127.0.0.1 and a free port, with extra options
    /// (see smtp_sink.py).
    pub fn start(opts: &[&str]) -> PySink {
        let mut last = String::new();
        for _ in 0..5 {
            match PySink::start_on("127.0.0.1", free_port(), opts) {
                Ok(s) => return s,
                Err(e) if e.contains("in use") => last = e,
                Err(e) => panic!("the aiosmtpd sink did not start:\n{e}"),
            }
        }
        panic!("the aiosmtpd sink did not start:\n{last}");
    }

    /// Starts the sink on `ip:port` (a loopback address); Err with its
    /// log when it cannot (the log says "in use" when the port is taken).
    /// Starts the sink on `ip` and a port free there, retried on a clash.
    pub fn start_free(ip: &str, opts: &[&str]) -> PySink {
        let mut last = String::new();
        for _ in 0..5 {
            match PySink::start_on(ip, free_port_on(ip), opts) {
                Ok(s) => return s,
                Err(e) if e.contains("in use") => last = e,
                Err(e) => panic!("an aiosmtpd sink did not start:\n{e}"),
            }
        }
        panic!("no free port on {ip}:\n{last}");
    }

    pub fn start_on(ip: &str, port: u16, opts: &[&str]) -> Result<PySink, String> {
        require_python_module("aiosmtpd");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/common/smtp_sink.py");
        let dir = TestDir::new("pysink");
        let log = dir.path().join(format!("sink-{port}.log"));
        let mut child = python()
            .arg(&script)
            .args(["--host", ip, "--port", &port.to_string(), "--dir"])
            .arg(dir.path())
            .args(opts)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("python3: {e}"));
        let mut line = String::new();
        let out = child.stdout.take().unwrap();
        let _ = BufReader::new(out).read_line(&mut line);
        if line.trim() == "READY" {
            let addr = format!("{ip}:{port}").parse().unwrap();
            return Ok(PySink { child, addr, dir });
        }
        let _ = child.kill();
        let _ = child.wait();
        Err(std::fs::read_to_string(&log).unwrap_or_default())
    }

    /// What happened so far, one event a line: `connect N`, `starttls N`,
    /// `auth N ok|fail`, `rcpt N ADDR CODE`.
    pub fn events(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("events"))
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect()
    }

    /// Events that start with `kind` (`"connect"`, `"auth"`...).
    pub fn count(&self, kind: &str) -> usize {
        self.events()
            .iter()
            .filter(|e| e.split(' ').next() == Some(kind))
            .count()
    }

    /// Waits until the sink holds `n` messages (at most `timeout`).
    pub fn wait_received(&self, n: usize, timeout: Duration) -> Vec<Received> {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.received();
            if got.len() >= n || Instant::now() > deadline {
                return got;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The messages stored so far, in order.
    pub fn received(&self) -> Vec<Received> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "msg"))
            .collect();
        files.sort_by_key(|p| {
            p.file_stem()
                .and_then(|s| s.to_str())
                .and_then(|s| s.parse::<u32>().ok())
        });
        files
            .iter()
            .map(|p| parse(&std::fs::read(p).unwrap()))
            .collect()
    }
}

fn parse(b: &[u8]) -> Received {
    let split = b.windows(2).position(|w| w == b"\n\n").expect("head");
    let head = String::from_utf8_lossy(&b[..split]).into_owned();
    let field = |k: &str| {
        head.lines()
            .find_map(|l| l.strip_prefix(k).map(|v| v.trim().to_string()))
            .unwrap_or_default()
    };
    Received {
        from: field("FROM "),
        rcpts: field("RCPTS ")
            .split_whitespace()
            .map(String::from)
            .collect(),
        options: field("OPTIONS "),
        tls: field("TLS ") == "yes",
        auth: field("AUTH ") == "yes",
        conn: field("CONN ").parse().unwrap_or(0),
        content: b[split + 2..].to_vec(),
    }
}

impl Drop for PySink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Postfix's smtp-sink: accepts everything, with PIPELINING.
pub struct SmtpSink {
    child: Child,
    pub addr: SocketAddr,
    dir: TestDir,
}

impl SmtpSink {
    pub fn start() -> SmtpSink {
        let bin = require("smtp-sink");
        let dir = TestDir::new("smtp-sink");
        let port = free_port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let child = Command::new(bin)
            .args(["-u", "nobody", &format!("127.0.0.1:{port}"), "256"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < deadline, "smtp-sink did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        SmtpSink { child, addr, dir }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A listener that runs `serve` on each connection in a thread, for
/// servers that misbehave on purpose.
pub fn raw_server(serve: fn(std::net::TcpStream)) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            std::thread::spawn(move || serve(s));
        }
    });
    addr
}

/// Never says anything.
pub fn silent(s: std::net::TcpStream) {
    std::thread::sleep(Duration::from_secs(30));
    drop(s);
}

/// Greets, reads EHLO, hangs up.
pub fn hang_up_after_ehlo(mut s: std::net::TcpStream) {
    let _ = s.write_all(b"220 flaky.example.test ESMTP\r\n");
    let mut line = String::new();
    let _ = BufReader::new(s.try_clone().unwrap()).read_line(&mut line);
}

/// Sinks sharing one port on several loopback addresses, started at once:
/// `(address, options)` each. Returns the port (for `[relay] port`) and
/// the sinks in the order given. Retried on a new port when one is taken.
pub fn sinks_on_one_port(specs: &[(&str, Vec<String>)]) -> (u16, Vec<PySink>) {
    let mut last = String::new();
    for _ in 0..5 {
        let port = free_port();
        let started: Vec<Result<PySink, String>> = std::thread::scope(|s| {
            let runs: Vec<_> = specs
                .iter()
                .map(|(ip, opts)| {
                    s.spawn(move || {
                        let opts: Vec<&str> = opts.iter().map(String::as_str).collect();
                        PySink::start_on(ip, port, &opts)
                    })
                })
                .collect();
            runs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        if started.iter().all(Result::is_ok) {
            return (port, started.into_iter().map(Result::unwrap).collect());
        }
        for r in started {
            if let Err(e) = r {
                assert!(e.contains("in use"), "an aiosmtpd sink did not start:\n{e}");
                last = e;
            }
        }
    }
    panic!("no port free on every address:\n{last}");
}

/// Options for a sink, from string literals.
pub fn opts(o: &[&str]) -> Vec<String> {
    o.iter().map(|s| s.to_string()).collect()
}

impl SmtpSink {
    /// smtp-sink on `ip:port` that dumps each message into a file of its
    /// own (`-d`), so that [`SmtpSink::messages`] counts what arrived.
    pub fn start_on(ip: &str, port: u16) -> SmtpSink {
        let bin = require("smtp-sink");
        let dir = TestDir::new("smtp-sink");
        let dumps = dir.path().join("dumps");
        std::fs::create_dir(&dumps).unwrap();
        {
            use std::os::unix::fs::PermissionsExt;
            // smtp-sink drops to nobody (-u) before it writes.
            std::fs::set_permissions(&dumps, std::fs::Permissions::from_mode(0o777)).unwrap();
        }
        let addr: SocketAddr = format!("{ip}:{port}").parse().unwrap();
        let child = Command::new(bin)
            .args(["-u", "nobody", "-d"])
            .arg(dumps.join("m."))
            .arg(format!("{ip}:{port}"))
            .arg("256")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "smtp-sink did not start on {addr}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        SmtpSink { child, addr, dir }
    }

    /// Messages dumped so far (start_on only).
    pub fn messages(&self) -> Vec<Vec<u8>> {
        std::fs::read_dir(self.dir.path().join("dumps"))
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .filter_map(|e| std::fs::read(e.path()).ok())
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// What a [`RawSmtp`] server does next.
pub enum Answer {
    /// These bytes, as they are (CRLF included).
    Send(Vec<u8>),
    /// These bytes one at a time, `.1` apart.
    Trickle(Vec<u8>, Duration),
    /// Nothing, ever: the connection stays open until the server goes.
    Silent,
    /// Hang up.
    Close,
    /// These bytes, then hang up.
    Last(Vec<u8>),
}

/// A line-by-line SMTP server for what real servers will not do on
/// request. The script is asked with `""` when a client connects (the
/// greeting), then with each command line (CRLF removed), and with `"."`
/// at the end of message data (after a 354 to DATA). Stopped when dropped.
pub struct RawSmtp {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    connections: Arc<AtomicUsize>,
    messages: Arc<AtomicUsize>,
    seen: Arc<Seen>,
}

/// What a [`RawSmtp`] server was sent: command lines, and each message's
/// data exactly as it came over the wire (dot-stuffed, up to and with
/// the final `.` line).
#[derive(Default)]
struct Seen {
    commands: std::sync::Mutex<Vec<String>>,
    data: std::sync::Mutex<Vec<Vec<u8>>>,
}

/// How an ordinary server answers `line` (for scripts to fall back on).
pub fn normal(line: &str) -> Answer {
    let verb = line.split(' ').next().unwrap_or("").to_ascii_uppercase();
    let text: &str = match verb.as_str() {
        "" => "220 raw.example.test ESMTP\r\n",
        "EHLO" => "250-raw.example.test\r\n250 PIPELINING\r\n",
        "HELO" | "MAIL" | "RCPT" | "RSET" | "NOOP" => "250 2.0.0 Ok\r\n",
        "DATA" => "354 End data with <CR><LF>.<CR><LF>\r\n",
        "." => "250 2.0.0 Ok: queued as RAW\r\n",
        "QUIT" => return Answer::Send(b"221 2.0.0 Bye\r\n".to_vec()),
        _ => "502 5.5.2 Error: command not recognized\r\n",
    };
    Answer::Send(text.as_bytes().to_vec())
}

impl RawSmtp {
    /// Listens on `addr` (port 0: any); Err when it is taken.
    pub fn start(
        addr: &str,
        script: impl Fn(&str) -> Answer + Send + Sync + 'static,
    ) -> std::io::Result<RawSmtp> {
        let l = TcpListener::bind(addr)?;
        l.set_nonblocking(true)?;
        let addr = l.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(AtomicUsize::new(0));
        let messages = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(Seen::default());
        let script: Arc<dyn Fn(&str) -> Answer + Send + Sync> = Arc::new(script);
        let (st, co, me, se) = (
            stop.clone(),
            connections.clone(),
            messages.clone(),
            seen.clone(),
        );
        std::thread::spawn(move || {
            while !st.load(Ordering::SeqCst) {
                match l.accept() {
                    Ok((s, _)) => {
                        co.fetch_add(1, Ordering::SeqCst);
                        let (st, me, se, script) =
                            (st.clone(), me.clone(), se.clone(), script.clone());
                        std::thread::spawn(move || raw_session(s, &*script, &st, &me, &se));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Ok(RawSmtp {
            addr,
            stop,
            connections,
            messages,
            seen,
        })
    }

    /// Command lines received so far, in order (all connections).
    pub fn commands(&self) -> Vec<String> {
        self.seen.commands.lock().unwrap().clone()
    }

    /// Each message's data as it came over the wire.
    pub fn data(&self) -> Vec<Vec<u8>> {
        self.seen.data.lock().unwrap().clone()
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// Messages answered with 250 at the end of data.
    pub fn messages(&self) -> usize {
        self.messages.load(Ordering::SeqCst)
    }
}

impl Drop for RawSmtp {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Sends an answer; false when the session is over.
fn raw_answer(s: &mut std::net::TcpStream, a: Answer, stop: &AtomicBool) -> bool {
    match a {
        Answer::Send(b) => s.write_all(&b).is_ok(),
        Answer::Trickle(b, every) => {
            for byte in b {
                if stop.load(Ordering::SeqCst) || s.write_all(&[byte]).is_err() {
                    return false;
                }
                std::thread::sleep(every);
            }
            true
        }
        Answer::Silent => {
            while !stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(20));
            }
            false
        }
        Answer::Close => false,
        Answer::Last(b) => {
            let _ = s.write_all(&b);
            false
        }
    }
}

fn raw_session(
    mut s: std::net::TcpStream,
    script: &(dyn Fn(&str) -> Answer + Send + Sync),
    stop: &AtomicBool,
    messages: &AtomicUsize,
    seen: &Seen,
) {
    use std::io::Read;
    let _ = s.set_nonblocking(false);
    let _ = s.set_read_timeout(Some(Duration::from_millis(50)));
    if !raw_answer(&mut s, script(""), stop) {
        return;
    }
    let mut buf: Vec<u8> = Vec::new();
    let mut in_data = false;
    let mut chunk = [0u8; 4096];
    loop {
        while let Some(i) = buf.windows(2).position(|w| w == b"\r\n") {
            let line = String::from_utf8_lossy(&buf[..i]).into_owned();
            let raw: Vec<u8> = buf.drain(..i + 2).collect();
            if in_data {
                seen.data
                    .lock()
                    .unwrap()
                    .last_mut()
                    .unwrap()
                    .extend_from_slice(&raw);
            } else {
                seen.commands.lock().unwrap().push(line.clone());
            }
            let ask = if in_data {
                if line != "." {
                    continue;
                }
                in_data = false;
                "."
            } else {
                line.as_str()
            };
            let a = script(ask);
            if let Answer::Send(b) | Answer::Last(b) = &a {
                if ask == "." && b.starts_with(b"250") {
                    messages.fetch_add(1, Ordering::SeqCst);
                }
            }
            if let Answer::Send(b) = &a {
                if ask.eq_ignore_ascii_case("DATA") && b.starts_with(b"354") {
                    in_data = true;
                    seen.data.lock().unwrap().push(Vec::new());
                }
                if ask.eq_ignore_ascii_case("QUIT") {
                    let _ = s.write_all(b);
                    return;
                }
            }
            if !raw_answer(&mut s, a, stop) {
                return;
            }
        }
        if stop.load(Ordering::SeqCst) {
            return;
        }
        match s.read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return,
        }
    }
}

/// A private Postfix as the receiving MTA: its own config, queue and data
/// directories, one smtpd on `ip:port`, virtual Maildir delivery for one
/// domain (any local part, as uid/gid 5000) into `mail/<domain>/<local>/`,
/// no DNS, no other listener. Optionally STARTTLS with a given
/// certificate. Must be started as root (Postfix's master); stopped with
/// `postfix stop` when dropped.
pub struct Postfix {
    dir: TestDir,
    etc: PathBuf,
    pub addr: SocketAddr,
    pub domain: String,
}

impl Postfix {
    pub fn start(ip: &str, port: u16, domain: &str, tls: Option<(&Path, &Path)>) -> Postfix {
        use std::os::unix::fs::PermissionsExt;
        let postfix = require("postfix");
        let dir = TestDir::new("postfix");
        let p = |s: &str| dir.path().join(s);
        let (etc, queue, data, mail) = (p("etc"), p("queue"), p("data"), p("mail"));
        for d in [&etc, &queue, &data, &mail] {
            std::fs::create_dir_all(d).unwrap();
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let chown = |path: &Path, user: &str| {
            let ok = Command::new("chown")
                .arg(user)
                .arg(path)
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "chown {user} {}", path.display());
        };
        chown(&data, "postfix:postfix");
        chown(&mail, "5000:5000");
        let mut main_cf = format!(
            "# a private Postfix for postern's relay tests\n\
             compatibility_level = 3.6\n\
             queue_directory = {queue}\n\
             data_directory = {data}\n\
             mail_owner = postfix\n\
             myhostname = postfix.{domain}\n\
             mydomain = {domain}\n\
             myorigin = $myhostname\n\
             mydestination =\n\
             local_recipient_maps =\n\
             local_transport = error:local delivery is off\n\
             alias_maps =\n\
             alias_database =\n\
             relay_domains =\n\
             relayhost =\n\
             default_transport = error:this Postfix sends nothing onward\n\
             relay_transport = error:this Postfix sends nothing onward\n\
             inet_interfaces = 127.0.0.1\n\
             inet_protocols = ipv4\n\
             mynetworks = 127.0.0.0/8\n\
             smtp_dns_support_level = disabled\n\
             smtpd_peername_lookup = no\n\
             smtpd_banner = $myhostname ESMTP\n\
             biff = no\n\
             append_dot_mydomain = no\n\
             message_size_limit = 10485760\n\
             mailbox_size_limit = 104857600\n\
             virtual_mailbox_limit = 104857600\n\
             virtual_mailbox_domains = {domain}\n\
             virtual_mailbox_maps = static:{domain}/user/\n\
             virtual_mailbox_base = {mail}\n\
             virtual_uid_maps = static:5000\n\
             virtual_gid_maps = static:5000\n\
             virtual_minimum_uid = 1000\n\
             maillog_file = {log}\n\
             maillog_file_prefixes = /var, /dev/stdout, {top}\n",
            queue = queue.display(),
            data = data.display(),
            mail = mail.display(),
            log = p("maillog").display(),
            top = dir.path().display(),
        );
        let mut master_cf = format!(
            "{ip}:{port} inet n - n - - smtpd\n\
             cleanup   unix  n - n -    0 cleanup\n\
             qmgr      unix  n - n 300  1 qmgr\n\
             rewrite   unix  - - n -    - trivial-rewrite\n\
             bounce    unix  - - n -    0 bounce\n\
             defer     unix  - - n -    0 bounce\n\
             trace     unix  - - n -    0 bounce\n\
             verify    unix  - - n -    1 verify\n\
             flush     unix  n - n 1000? 0 flush\n\
             proxymap  unix  - - n -    - proxymap\n\
             anvil     unix  - - n -    1 anvil\n\
             scache    unix  - - n -    1 scache\n\
             error     unix  - - n -    - error\n\
             retry     unix  - - n -    - error\n\
             discard   unix  - - n -    - discard\n\
             virtual   unix  - n n -    - virtual\n\
             postlog   unix-dgram n - n - 1 postlogd\n"
        );
        if let Some((cert, key)) = tls {
            main_cf.push_str(&format!(
                "smtpd_tls_security_level = may\n\
                 smtpd_tls_cert_file = {}\n\
                 smtpd_tls_key_file = {}\n\
                 smtpd_tls_received_header = yes\n",
                cert.display(),
                key.display()
            ));
            master_cf.push_str("tlsmgr    unix  - - n 1000? 1 tlsmgr\n");
        }
        std::fs::write(etc.join("main.cf"), main_cf).unwrap();
        std::fs::write(etc.join("master.cf"), master_cf).unwrap();
        let out = Command::new(&postfix)
            .arg("-c")
            .arg(&etc)
            .arg("start")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let pf = Postfix {
            addr: format!("{ip}:{port}").parse().unwrap(),
            domain: domain.to_string(),
            etc,
            dir,
        };
        assert!(
            out.status.success(),
            "postfix start: {}{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            pf.log()
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(pf.addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "Postfix did not listen on {}:\n{}",
                pf.addr,
                pf.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        pf
    }

    /// The one Maildir every recipient of the domain lands in.
    pub fn maildir(&self) -> PathBuf {
        self.dir.path().join("mail").join(&self.domain).join("user")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("maillog")).unwrap_or_default()
    }

    fn master_pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.dir.path().join("queue/pid/master.pid"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        let master = self.master_pid();
        let _ = Command::new("postfix")
            .arg("-c")
            .arg(&self.etc)
            .arg("stop")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        // The master exits after its children; wait for it before the
        // directories go.
        if let Some(pid) = master {
            let pid = nix::unistd::Pid::from_raw(pid);
            let deadline = Instant::now() + Duration::from_secs(10);
            while nix::sys::signal::kill(pid, None).is_ok() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// A test CA and a server certificate it signed (rcgen; CA:FALSE, so
/// rustls takes it as a server certificate), as PEM files for the sinks
/// (`--tls CERT KEY`), Postfix, and postern's `[relay] ca_file`.
pub struct Certs {
    dir: TestDir,
}

impl Certs {
    /// A certificate for `names` (DNS names or IP addresses).
    pub fn new(names: &[&str]) -> Certs {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
        let dir = TestDir::new("relay-certs");
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(rcgen::DnType::CommonName, "postern relay test CA");
        let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let leaf = CertificateParams::new(names)
            .unwrap()
            .signed_by(&key, &ca)
            .unwrap();
        std::fs::write(dir.path().join("cert.pem"), leaf.pem()).unwrap();
        std::fs::write(dir.path().join("key.pem"), key.serialize_pem()).unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
        Certs { dir }
    }

    pub fn cert(&self) -> PathBuf {
        self.dir.path().join("cert.pem")
    }

    pub fn key(&self) -> PathBuf {
        self.dir.path().join("key.pem")
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// `--tls CERT KEY` for smtp_sink.py.
    pub fn sink_args(&self) -> Vec<String> {
        vec![
            "--tls".into(),
            self.cert().display().to_string(),
            self.key().display().to_string(),
        ]
    }
}
