//! Test name servers on loopback: a real dnsmasq serving `.test` from a
//! config of the test's choosing, and small fake servers for behaviour
//! dnsmasq will not show (SERVFAIL, silence, garbage, a CNAME loop).
//! Nothing here ever talks to the machine's own resolver: dnsmasq runs
//! with `no-resolv` and `no-hosts`, and answers only what it is given.
//!
//! Declared by the test files that use it with
//! `#[path = "common/dnsmasq.rs"] mod dnsmasq;` next to `mod common;`.
#![allow(dead_code)]

use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::common::{require, TestDir};

/// A UDP and TCP port nobody uses right now, for dnsmasq (which takes its
/// port on the command line); the caller retries on a clash.
fn free_port() -> u16 {
    loop {
        let t = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = t.local_addr().unwrap().port();
        if std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A dnsmasq child, killed when dropped (also when the test panics).
pub struct Dnsmasq {
    child: Child,
    pub addr: SocketAddr,
    /// Holds the config and log until dnsmasq is gone.
    _dir: TestDir,
}

impl Dnsmasq {
    /// Starts dnsmasq with `records` (dnsmasq.conf lines: `mx-host=`,
    /// `host-record=`, `cname=`...) on a free loopback port. dnsmasq cannot
    /// bind port 0, so a port is picked and the start retried when it
    /// turns out to be taken.
    pub fn start(records: &[String]) -> Dnsmasq {
        let bin = require("dnsmasq");
        let dir = TestDir::new("dnsmasq");
        let conf = dir.path().join("dnsmasq.conf");
        let mut text = String::from(
            "no-resolv\nno-hosts\nno-poll\nbind-interfaces\nlocal=/test/\n\
             local=/localhost/\nlocal-ttl=300\n",
        );
        for r in records {
            text.push_str(r);
            text.push('\n');
        }
        std::fs::write(&conf, text).unwrap();
        let mut last_log = String::new();
        for _ in 0..10 {
            let port = free_port();
            let log = dir.path().join(format!("dnsmasq-{port}.log"));
            let child = Command::new(&bin)
                .arg(format!("--conf-file={}", conf.display()))
                .arg("--listen-address=127.0.0.1")
                .arg(format!("--port={port}"))
                .args(["--user=nobody", "--group=nogroup", "--pid-file=", "-k"])
                .arg("--log-facility=-")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .unwrap_or_else(|e| panic!("{}: {e}", bin.display()));
            let mut child = child;
            let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
            if wait_ready(&mut child, addr) {
                return Dnsmasq {
                    child,
                    addr,
                    _dir: dir,
                };
            }
            let _ = child.kill();
            let _ = child.wait();
            last_log = std::fs::read_to_string(&log).unwrap_or_default();
            if !last_log.contains("in use") {
                break;
            }
        }
        panic!("dnsmasq did not start:\n{last_log}");
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// True once dnsmasq answers a query; false if it exited.
fn wait_ready(child: &mut Child, addr: SocketAddr) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    let q = postern::dns::wire::build_query(1, "ready.test", postern::dns::wire::Qtype::A).unwrap();
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        let _ = sock.send_to(&q, addr);
        let mut buf = [0u8; 512];
        if sock.recv_from(&mut buf).is_ok() {
            return true;
        }
    }
    false
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        self.kill();
    }
}

/// How a fake name server answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fake {
    /// SERVFAIL to everything.
    ServFail,
    /// Never answers.
    Silent,
    /// Bytes with the query's ID that are not a DNS message.
    Garbage,
    /// First a reply with another ID, then NXDOMAIN with the right one.
    ForeignFirst,
    /// `loop1.test` is a CNAME for `loop2.test` and back, one per reply,
    /// so the resolver has to ask again at every step.
    CnameLoop,
}

/// A fake UDP name server on 127.0.0.1, stopped when dropped.
pub struct FakeDns {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FakeDns {
    pub fn start(kind: Fake) -> FakeDns {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let addr = sock.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while !flag.load(Ordering::SeqCst) {
                let Ok((n, from)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                for reply in answer(kind, &buf[..n]) {
                    let _ = sock.send_to(&reply, from);
                }
            }
        });
        FakeDns {
            addr,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for FakeDns {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn answer(kind: Fake, query: &[u8]) -> Vec<Vec<u8>> {
    use simple_dns::rdata::{RData, CNAME};
    use simple_dns::{Name, Packet, ResourceRecord, CLASS, RCODE};
    let Ok(q) = Packet::parse(query) else {
        return Vec::new();
    };
    let reply = |id: u16, rcode: RCODE, answers: Vec<ResourceRecord>| {
        let mut p = Packet::new_reply(id);
        p.questions = q.questions.clone();
        *p.rcode_mut() = rcode;
        p.answers = answers;
        p.build_bytes_vec().unwrap()
    };
    match kind {
        Fake::ServFail => vec![reply(q.id(), RCODE::ServerFailure, vec![])],
        Fake::Silent => vec![],
        Fake::Garbage => {
            let mut g = q.id().to_be_bytes().to_vec();
            g.extend_from_slice(b"\x81\x80this is not DNS");
            vec![g]
        }
        Fake::ForeignFirst => vec![
            reply(q.id().wrapping_add(1), RCODE::NoError, vec![]),
            reply(q.id(), RCODE::NameError, vec![]),
        ],
        Fake::CnameLoop => {
            let qname = q.questions[0].qname.to_string();
            let target = if qname == "loop1.test" {
                "loop2.test"
            } else {
                "loop1.test"
            };
            let rr = ResourceRecord::new(
                Name::new_unchecked(&qname),
                CLASS::IN,
                60,
                RData::CNAME(CNAME(Name::new_unchecked(target))),
            );
            vec![reply(q.id(), RCODE::NoError, vec![rr])]
        }
    }
}
