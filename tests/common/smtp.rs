//! SMTP replies and a raw client for the tests: one command, one whole
//! (possibly multi-line) reply.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Assembles one (possibly multi-line) reply from lines as `next_line`
/// hands them out; `None` when the connection ends first.
pub fn parse_reply(mut next_line: impl FnMut() -> Option<String>) -> Option<Reply> {
    let mut text = Vec::new();
    let mut first = String::new();
    loop {
        let line = next_line()?.trim_end_matches(['\r', '\n']).to_string();
        if first.is_empty() {
            first = line.clone();
        }
        let code: u16 = line
            .get(..3)
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("bad reply line {line:?}"));
        text.push(line.get(4..).unwrap_or("").to_string());
        if line.as_bytes().get(3) != Some(&b'-') {
            return Some(Reply {
                code,
                text: text.join("\n"),
                first,
            });
        }
    }
}

/// Reads one whole (possibly multi-line) reply from a raw stream, a byte
/// at a time so that nothing after it is consumed (a STARTTLS test goes on
/// with the same socket). `None` when the connection ends first.
pub fn read_reply_unbuffered(s: &mut impl Read) -> Option<Reply> {
    parse_reply(|| {
        let mut line = Vec::new();
        let mut b = [0u8; 1];
        loop {
            match s.read(&mut b) {
                Ok(1) => {
                    line.push(b[0]);
                    if b[0] == b'\n' {
                        return Some(String::from_utf8_lossy(&line).into_owned());
                    }
                }
                _ => return None,
            }
        }
    })
}

/// A raw SMTP client: one command, one reply.
pub struct Smtp {
    reader: BufReader<TcpStream>,
}

#[derive(Debug, Clone)]
pub struct Reply {
    pub code: u16,
    /// All lines, without codes, joined with '\n'.
    pub text: String,
    /// The raw first line, e.g. `250 2.0.0 Ok`.
    pub first: String,
}

impl Smtp {
    pub fn connect(addr: SocketAddr) -> Smtp {
        let s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        Smtp {
            reader: BufReader::new(s),
        }
    }

    pub fn connect_from(local_ip: &str, addr: SocketAddr) -> Smtp {
        let sock =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        let local: SocketAddr = format!("{local_ip}:0").parse().unwrap();
        sock.bind(&local.into()).unwrap();
        sock.connect(&addr.into()).expect("connect");
        let s: TcpStream = sock.into();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        Smtp {
            reader: BufReader::new(s),
        }
    }

    pub fn stream(&mut self) -> &mut TcpStream {
        self.reader.get_mut()
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.reader.get_mut().write_all(bytes).unwrap();
    }

    /// Reads one (possibly multi-line) reply; `None` on EOF.
    pub fn try_reply(&mut self) -> Option<Reply> {
        let reader = &mut self.reader;
        parse_reply(|| {
            let mut line = String::new();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => None,
                Ok(_) => Some(line),
            }
        })
    }

    pub fn reply(&mut self) -> Reply {
        self.try_reply()
            .expect("connection closed while waiting for a reply")
    }

    pub fn cmd(&mut self, line: &str) -> Reply {
        self.send(format!("{line}\r\n").as_bytes());
        self.reply()
    }

    /// Sends a command and asserts the reply starts with `expect`.
    pub fn expect(&mut self, line: &str, expect: &str) -> Reply {
        let r = self.cmd(line);
        assert!(
            r.first.starts_with(expect),
            "{line:?}: expected {expect:?}, got {:?}",
            r.first
        );
        r
    }

    /// True when the server has closed the connection.
    pub fn is_closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(self.reader.read(&mut b), Ok(0))
    }

    /// Greeting + EHLO.
    pub fn hello(&mut self) {
        let g = self.reply();
        assert_eq!(g.code, 220, "greeting {g:?}");
        self.expect("EHLO client.test", "250");
    }

    /// A whole transaction; returns the reply to the final dot.
    pub fn send_mail(&mut self, from: &str, to: &[&str], body: &str) -> Reply {
        self.expect(&format!("MAIL FROM:<{from}>"), "250");
        for t in to {
            self.expect(&format!("RCPT TO:<{t}>"), "250");
        }
        self.expect("DATA", "354");
        self.send(body.as_bytes());
        self.send(b"\r\n.\r\n");
        self.reply()
    }
}

/// Whether a swaks transcript shows a reply from the server with `code`:
/// swaks marks server lines `<-` (`<~` inside TLS, with `*` on errors).
/// A bare `out.contains("535")` also matches a port such as 43535 in
/// swaks's "Trying 127.0.0.1:43535" line.
pub fn swaks_replied(out: &str, code: &str) -> bool {
    out.lines().any(|l| {
        let Some(rest) = l.strip_prefix('<') else {
            return false;
        };
        let rest = rest.trim_start_matches(['-', '~', '*']).trim_start();
        rest.len() > 3 && rest.starts_with(code) && matches!(rest.as_bytes()[3], b' ' | b'-')
    })
}
