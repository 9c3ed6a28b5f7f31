//! SMTP servers for the outbound tests, all on 127.0.0.1: the scriptable
//! aiosmtpd sink (tests/common/smtp_sink.py), Postfix's smtp-sink, and
//! raw listeners for what a real server will not do on request (never
//! greet, greet and hang up). Each is stopped when dropped, also when the
//! test panics.
//!
//! Declared by the test files that use it with
//! `#[path = "common/smtp_peers.rs"] mod smtp_peers;` next to `mod common;`.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{require, TestDir};

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

/// A message as the aiosmtpd sink stored it.
#[derive(Debug)]
pub struct Received {
    pub from: String,
    pub rcpts: Vec<String>,
    pub options: String,
    pub tls: bool,
    pub auth: bool,
    pub content: Vec<u8>,
}

pub struct PySink {
    child: Child,
    pub addr: SocketAddr,
    dir: TestDir,
}

impl PySink {
    /// Starts the sink with extra options (see smtp_sink.py).
    pub fn start(opts: &[&str]) -> PySink {
        let py = require("python3");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/common/smtp_sink.py");
        let dir = TestDir::new("pysink");
        let mut last = String::new();
        for _ in 0..5 {
            let port = free_port();
            let log = dir.path().join(format!("sink-{port}.log"));
            let mut child = Command::new(&py)
                .arg(&script)
                .args(["--port", &port.to_string(), "--dir"])
                .arg(dir.path())
                .args(opts)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .unwrap_or_else(|e| panic!("{}: {e}", py.display()));
            let mut line = String::new();
            let out = child.stdout.take().unwrap();
            let _ = BufReader::new(out).read_line(&mut line);
            if line.trim() == "READY" {
                let addr = format!("127.0.0.1:{port}").parse().unwrap();
                return PySink { child, addr, dir };
            }
            let _ = child.kill();
            let _ = child.wait();
            last = std::fs::read_to_string(&log).unwrap_or_default();
            if !last.contains("in use") {
                break;
            }
        }
        panic!("the aiosmtpd sink did not start:\n{last}");
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
