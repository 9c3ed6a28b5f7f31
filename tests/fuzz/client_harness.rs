//! The fuzz harness of the SMTP client (postern::smtp::client), shared by
//! the cargo-fuzz target `client` (fuzz_targets/client.rs, nightly) and by
//! the corpus replay in the normal test run (tests/fuzz_replay_client.rs,
//! stable). Kept apart from harness.rs, which covers the server side.
//!
//! Input layout: byte 0 picks the configuration (bit 0 PIPELINING used,
//! bits 1-2 the TLS policy none/may/encrypt/verify, bit 3 credentials,
//! bit 4 AUTH allowed outside TLS, bit 5 a non-ASCII recipient, bit 6
//! XFORWARD asked for, bit 7 a 5000-byte message); the rest is what the
//! server sends. In it, 0xFF is an escape: `FF FF` is a literal 0xFF,
//! `FF FE` makes the wait time out, `FF FD` closes the connection, `FF FC`
//! makes the next TLS handshake fail, and `FF` before anything else only
//! ends a chunk (the client then runs until it waits).
//!
//! Invariants checked: the client never writes a bare CR or LF and never
//! a command line over 512 bytes; AUTH only after TLS unless allowed; every
//! message gets exactly one result per recipient, once; a closed client
//! stays closed; the machine never loops without progress; and the reply
//! reader gives the same replies whether fed at once or byte by byte.

#![allow(dead_code)]

use std::collections::VecDeque;

use postern::smtp::address::{Address, ReversePath};
use postern::smtp::client::response::ResponseReader;
use postern::smtp::client::{
    Client, ClientConfig, ClientCredentials, Envelope, Step, TlsPolicy, XForward,
};
use postern::smtp::sasl::Secret;

#[derive(Debug)]
enum Event {
    Bytes(Vec<u8>),
    Timeout,
    Eof,
    TlsFails,
}

fn events(stream: &[u8]) -> VecDeque<Event> {
    let mut ev = VecDeque::new();
    let mut cur = Vec::new();
    let mut i = 0;
    let flush = |cur: &mut Vec<u8>, ev: &mut VecDeque<Event>| {
        if !cur.is_empty() {
            ev.push_back(Event::Bytes(std::mem::take(cur)));
        }
    };
    while i < stream.len() {
        let c = stream[i];
        i += 1;
        if c != 0xFF {
            cur.push(c);
            continue;
        }
        let next = stream.get(i).copied();
        if matches!(next, Some(0xFC..=0xFF)) {
            i += 1;
        }
        match next {
            Some(0xFF) => cur.push(0xFF),
            Some(0xFE) => {
                flush(&mut cur, &mut ev);
                ev.push_back(Event::Timeout);
            }
            Some(0xFD) => {
                flush(&mut cur, &mut ev);
                ev.push_back(Event::Eof);
            }
            Some(0xFC) => {
                flush(&mut cur, &mut ev);
                ev.push_back(Event::TlsFails);
            }
            _ => flush(&mut cur, &mut ev),
        }
    }
    flush(&mut cur, &mut ev);
    ev
}

fn config(flags: u8) -> ClientConfig {
    let mut c = ClientConfig {
        helo_name: "client.example.test".into(),
        pipelining: flags & 1 != 0,
        tls: [
            TlsPolicy::None,
            TlsPolicy::May,
            TlsPolicy::Encrypt,
            TlsPolicy::Verify,
        ][(flags as usize >> 1) & 3],
        auth_without_tls: flags & 0x10 != 0,
        ..ClientConfig::default()
    };
    if flags & 8 != 0 {
        c.credentials = Some(ClientCredentials {
            user: "relay@example.test".into(),
            password: Secret::new(b"fuzz-secret".to_vec()),
        });
    }
    c
}

fn envelope(flags: u8) -> Envelope {
    let mut rcpts = vec![Address::new("b", "y.test"), Address::new("c", "y.test")];
    if flags & 0x20 != 0 {
        rcpts.push(Address::new("jörg", "y.test"));
    }
    let size = if flags & 0x80 != 0 { 5000 } else { 100 };
    let mut e = Envelope::new(
        ReversePath::Address(Address::new("a", "x.test")),
        rcpts,
        size,
    );
    if flags & 0x40 != 0 {
        e.xforward = Some(XForward {
            name: Some("client name with spaces".into()),
            addr: Some("2001:db8::1".parse().unwrap()),
            ..XForward::default()
        });
    }
    e
}

/// Every write: CRLF lines only, each within the command line limit.
fn check_write(bytes: &[u8], in_body: bool) {
    let mut rest = bytes;
    while !rest.is_empty() {
        let lf = rest
            .iter()
            .position(|&c| c == b'\n')
            .unwrap_or_else(|| panic!("write without a final LF: {bytes:?}"));
        let line = &rest[..lf];
        assert!(line.ends_with(b"\r"), "bare LF in {bytes:?}");
        assert!(
            !line[..line.len() - 1].contains(&b'\r'),
            "bare CR in {bytes:?}"
        );
        if !in_body {
            assert!(lf < 512, "command line of {} bytes", lf + 1);
        }
        rest = &rest[lf + 1..];
    }
}

pub fn client(data: &[u8]) {
    let Some((&flags, stream)) = data.split_first() else {
        return;
    };
    reader(stream);
    let cfg = config(flags);
    let auth_anywhere = cfg.auth_without_tls;
    let mut c = Client::new(cfg);
    let mut ev = events(stream);
    let mut sent_message = false;
    let mut expected_results: Option<usize> = None;
    let mut tls_fails = false;
    let mut tls_on = false;
    let mut closed = false;
    for _ in 0..10_000 {
        let step = c.step();
        match step {
            Step::Send(w) => {
                assert!(!closed, "writes after Closed");
                check_write(w.bytes(), false);
                if w.bytes().starts_with(b"AUTH ") {
                    assert!(tls_on || auth_anywhere, "AUTH outside TLS");
                    assert!(w.is_sensitive() || w.bytes() == b"AUTH LOGIN\r\n");
                }
                let shown = format!("{w:?}");
                assert!(!shown.contains("ZnV6ei1zZWNyZXQ"), "password in Debug");
            }
            Step::Read { .. } => match ev.pop_front() {
                Some(Event::Bytes(b)) => c.feed(&b),
                Some(Event::Timeout) => c.timed_out(),
                Some(Event::Eof) | None => c.lost(),
                Some(Event::TlsFails) => tls_fails = true,
            },
            Step::StartTls => {
                if std::mem::take(&mut tls_fails) {
                    c.tls_failed("fuzz");
                } else {
                    tls_on = true;
                    c.tls_started("TLSv1.3");
                    assert_eq!(c.buffered(), 0, "plaintext kept into TLS");
                    assert!(c.capabilities().is_none(), "EHLO kept into TLS");
                }
            }
            Step::SendBody { .. } => {
                let mut out = Vec::new();
                c.body(b"Subject: x\n\n.dot\r\nbare\rcr\n", &mut out);
                c.body_end(&mut out);
                check_write(&out, true);
                assert!(out.ends_with(b"\r\n.\r\n"));
            }
            Step::Ready => {
                assert!(expected_results.is_none(), "Ready before the result");
                if sent_message {
                    c.quit();
                } else {
                    sent_message = true;
                    let e = envelope(flags);
                    expected_results = Some(e.recipients.len());
                    c.send(e);
                }
            }
            Step::Done(m) => {
                let n = expected_results.take().expect("a result nobody asked for");
                assert_eq!(m.recipients.len(), n, "one result per recipient");
                let shown = format!("{m:?}");
                assert!(!shown.contains("fuzz-secret"));
            }
            Step::Closed(f) => {
                assert!(expected_results.is_none(), "closed without the result");
                if let Some(f) = &f {
                    assert!(!f.to_string().contains("fuzz-secret"));
                }
                if closed {
                    return;
                }
                closed = true;
            }
        }
    }
    panic!("the client did not finish in 10,000 steps");
}

/// The reply reader: all at once and byte by byte agree.
fn reader(stream: &[u8]) {
    let run = |chunks: &mut dyn Iterator<Item = &[u8]>| {
        let mut r = ResponseReader::new();
        let mut out = Vec::new();
        for ch in chunks {
            r.feed(ch);
            loop {
                match r.next_reply() {
                    Ok(Some(x)) => {
                        assert!((200..600).contains(&x.code));
                        assert!(!x.lines.is_empty());
                        assert!(x.lines.iter().all(|l| !l.contains(['\r', '\n'])));
                        out.push(Ok(x));
                    }
                    Ok(None) => break,
                    Err(e) => {
                        out.push(Err(e));
                        return out;
                    }
                }
            }
        }
        out
    };
    let whole = run(&mut std::iter::once(stream));
    let bytes = run(&mut stream.chunks(1));
    assert_eq!(whole, bytes, "chunking changed the replies");
}
