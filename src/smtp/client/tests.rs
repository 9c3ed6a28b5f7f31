//! Unit tests of the client machine with a scripted server. The protocol
//! corner cases are in tests/client_dialogs/; these check the driver-facing
//! contract: timeouts per stage, chunked input, secrets, results.

use std::time::Duration;

use super::*;
use crate::smtp::address::{Address, ReversePath};
use crate::smtp::reply::Esc;
use crate::smtp::sasl::Secret;

/// Plays `replies` one per Read (each fed in pieces of `chunk` bytes),
/// sends `env` once ready, then quits. Returns what the client wrote, the
/// timeouts it asked for, the results and the final failure.
struct Run {
    wrote: String,
    reads: Vec<(Stage, Duration)>,
    results: Vec<MessageResult>,
    closed: Option<ConnFailure>,
    debug: String,
}

fn run(cfg: ClientConfig, replies: &[&str], env: Option<Envelope>, chunk: usize) -> Run {
    let mut c = Client::new(cfg);
    let mut replies = replies.iter();
    let mut env = env;
    let mut r = Run {
        wrote: String::new(),
        reads: Vec::new(),
        results: Vec::new(),
        closed: None,
        debug: String::new(),
    };
    for _ in 0..1000 {
        let step = c.step();
        r.debug.push_str(&format!("{step:?}\n"));
        match step {
            Step::Send(w) => r.wrote.push_str(&String::from_utf8_lossy(w.bytes())),
            Step::Read { stage, timeout } => {
                r.reads.push((stage, timeout));
                match replies.next() {
                    Some(rep) => {
                        for piece in rep.as_bytes().chunks(chunk.max(1)) {
                            c.feed(piece);
                        }
                    }
                    None => c.lost(),
                }
            }
            Step::StartTls => c.tls_started("TLSv1.3"),
            Step::SendBody { .. } => {
                let mut out = Vec::new();
                c.body(b"Subject: t\n\n.hi\n", &mut out);
                c.body_end(&mut out);
                r.wrote.push_str(&String::from_utf8_lossy(&out));
            }
            Step::Ready => match env.take() {
                Some(e) => c.send(e),
                None => c.quit(),
            },
            Step::Done(m) => r.results.push(m),
            Step::Closed(f) => {
                r.closed = f;
                return r;
            }
        }
    }
    panic!("the client never closed:\n{}", r.debug);
}

fn env(rcpts: &[&str]) -> Envelope {
    let a = |s: &str| {
        let (l, d) = s.split_once('@').unwrap();
        Address::new(l, d)
    };
    Envelope::new(
        ReversePath::Address(a("a@x.test")),
        rcpts.iter().map(|s| a(s)).collect(),
        100,
    )
}

const EHLO: &str = "250-mx.test\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250 8BITMIME\r\n";

#[test]
fn pipelined_message_and_timeouts() {
    let replies = [
        "220 mx.test ESMTP\r\n",
        EHLO,
        "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n550 5.1.1 nope\r\n354 go\r\n",
        "250 2.0.0 Ok: queued as X\r\n",
        "221 2.0.0 Bye\r\n",
    ];
    let mut cfg = ClientConfig::default();
    cfg.timeouts.data_done = Duration::from_secs(1200);
    for chunk in [1, 3, 1000] {
        let r = run(
            cfg.clone(),
            &replies,
            Some(env(&["b@y.test", "c@y.test"])),
            chunk,
        );
        assert_eq!(
            r.wrote,
            "EHLO localhost\r\nMAIL FROM:<a@x.test> SIZE=100\r\nRCPT TO:<b@y.test>\r\n\
             RCPT TO:<c@y.test>\r\nDATA\r\nSubject: t\r\n\r\n..hi\r\n.\r\nQUIT\r\n"
        );
        let stages: Vec<(Stage, u64)> = r.reads.iter().map(|(s, t)| (*s, t.as_secs())).collect();
        assert_eq!(
            stages,
            [
                (Stage::Greeting, 300),
                (Stage::Ehlo, 300),
                // The four pipelined replies came in one script entry.
                (Stage::Mail, 300),
                (Stage::DataDone, 1200),
                (Stage::Quit, 300),
            ]
        );
        let m = &r.results[0].recipients;
        assert_eq!(
            (m[0].status, m[1].status),
            (Status::Delivered, Status::Permanent)
        );
        assert_eq!(m[1].esc(), Esc(5, 1, 1));
        assert_eq!(m[1].text(), "550 5.1.1 nope (in reply to RCPT TO command)");
        assert_eq!(r.closed, None);
    }
}

#[test]
fn passwords_never_show() {
    let cfg = ClientConfig {
        credentials: Some(ClientCredentials {
            user: "u".into(),
            password: Secret::new(b"hunter2".to_vec()),
        }),
        ..ClientConfig::default()
    };
    for mech in ["PLAIN", "LOGIN"] {
        let ehlo = format!("250-mx\r\n250-AUTH {mech}\r\n250 STARTTLS\r\n");
        let replies = [
            "220 mx\r\n",
            &ehlo,
            "220 go ahead\r\n",
            &ehlo,
            "334 VXNlcm5hbWU6\r\n",
            "334 UGFzc3dvcmQ6\r\n",
            "535 5.7.8 bad\r\n",
        ];
        let replies: Vec<&str> = match mech {
            "PLAIN" => replies
                .iter()
                .enumerate()
                .filter(|(i, _)| ![4, 5].contains(i))
                .map(|x| *x.1)
                .collect(),
            _ => replies.to_vec(),
        };
        let r = run(cfg.clone(), &replies, Some(env(&["b@y.test"])), 1000);
        let f = r.closed.expect("auth fails");
        assert!(matches!(f, ConnFailure::AuthFailed { .. }), "{f:?}");
        assert_eq!(f.esc(), Esc(4, 7, 8), "soft bounce");
        let all = format!("{}{f}{f:?}{:?}{cfg:?}", r.debug, r.results);
        assert!(
            !all.contains("hunter2") && !all.contains("aHVudGVyMg"),
            "{all}"
        );
        assert!(r.debug.contains("Wire(***)"));
        // The wire itself does carry it, base64.
        assert!(r.wrote.contains("aHVudGVyMg"));
    }
}

#[test]
fn lost_during_the_body_defers_everyone_accepted() {
    let replies = [
        "220 mx\r\n",
        EHLO,
        "250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n",
    ];
    let r = run(
        ClientConfig::default(),
        &replies,
        Some(env(&["b@y.test", "c@y.test"])),
        7,
    );
    let f = r.closed.expect("lost");
    assert_eq!(
        f,
        ConnFailure::Lost {
            stage: Stage::DataDone
        }
    );
    for rr in &r.results[0].recipients {
        assert_eq!(rr.status, Status::Temporary);
        assert_eq!(rr.esc(), Esc(4, 4, 2));
        assert_eq!(rr.text(), "lost connection in reply to end of DATA command");
    }
}

#[test]
fn greeting_timeout_and_421() {
    let r = run(ClientConfig::default(), &[], None, 1);
    assert_eq!(
        r.closed,
        Some(ConnFailure::Lost {
            stage: Stage::Greeting
        })
    );
    let r = run(ClientConfig::default(), &["421 4.3.2 busy\r\n"], None, 1);
    let f = r.closed.unwrap();
    assert!(matches!(
        f,
        ConnFailure::Closing {
            stage: Stage::Greeting,
            ..
        }
    ));
    assert!(!f.is_permanent());
    assert_eq!(r.wrote, "", "no QUIT after 421");
    let r = run(ClientConfig::default(), &["554 5.7.1 go away\r\n"], None, 1);
    assert!(r.closed.unwrap().is_permanent());
    assert_eq!(r.wrote, "QUIT\r\n");
}

#[test]
fn timed_out_names_the_stage() {
    let mut c = Client::new(ClientConfig::default());
    assert!(matches!(
        c.step(),
        Step::Read {
            stage: Stage::Greeting,
            ..
        }
    ));
    c.timed_out();
    match c.step() {
        Step::Closed(Some(f)) => {
            assert_eq!(
                f.to_string(),
                "conversation timed out while receiving the initial server greeting"
            );
            assert_eq!(f.esc(), Esc(4, 4, 2));
        }
        other => panic!("{other:?}"),
    }
    // And it stays closed.
    assert!(matches!(c.step(), Step::Closed(Some(_))));
}

/// The QUIT written after a refusal may fail to go out; that must not
/// turn the session's failure into a clean close.
#[test]
fn events_after_closing_change_nothing() {
    let mut c = Client::new(ClientConfig::default());
    assert!(matches!(c.step(), Step::Read { .. }));
    c.feed(b"554 5.7.1 go away\r\n");
    assert!(matches!(c.step(), Step::Send(_)), "QUIT");
    c.lost();
    c.timed_out();
    match c.step() {
        Step::Closed(Some(ConnFailure::Refused { stage, .. })) => {
            assert_eq!(stage, Stage::Greeting)
        }
        other => panic!("{other:?}"),
    }
}
