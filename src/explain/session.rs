//! The SMTP dialog `postern explain` plays against the pure session
//! (src/smtp/session), with the listener's own session configuration:
//! EHLO, STARTTLS and AUTH when a login is asked for, MAIL, RCPT. The
//! session's questions are answered the way the server answers them;
//! nothing is sent anywhere and no message is received.

use std::net::IpAddr;
use std::sync::Arc;

use base64::Engine;

use crate::smtp::address::Address;
use crate::smtp::reply::Reply;
use crate::smtp::session::{Answer, Peer, Question, Session, SessionConfig, Step, TlsInfo};

/// One command and the reply it got.
#[derive(Clone, Debug)]
pub struct Exchange {
    pub command: String,
    pub reply: Reply,
}

/// What the dialog showed.
pub struct Dialog {
    pub exchanges: Vec<Exchange>,
    /// The recipient as the session parsed it, if RCPT got that far.
    pub recipient: Option<Address>,
    /// RCPT's reply; `None` when an earlier command was refused.
    pub rcpt: Option<Reply>,
    /// The login the session recorded.
    pub logged_in: Option<String>,
}

/// Answers the session's RCPT question: `(recipient, logged in?)`.
pub type RcptCheck<'a> = dyn FnMut(&Address, bool) -> Result<(), Reply> + 'a;

/// Plays the dialog. `auth`: log in as this user (the password is taken
/// as right: explain shows what happens after a good login).
pub fn play(
    cfg: Arc<SessionConfig>,
    ip: IpAddr,
    implicit_tls: bool,
    auth: Option<&str>,
    from: &str,
    rcpt: &str,
    check: &mut RcptCheck<'_>,
) -> Dialog {
    let starttls = cfg.starttls;
    let peer = Peer {
        ip,
        port: 0,
        name: "unknown".into(),
        uid: None,
    };
    let mut d = Driver {
        s: Session::new(cfg, peer, crate::clock::now_secs()),
        check,
        recipient: None,
    };
    let mut dialog = Dialog {
        exchanges: Vec::new(),
        recipient: None,
        rcpt: None,
        logged_in: None,
    };
    if implicit_tls {
        d.s.tls_started(tls_info());
    }
    d.run(None);
    d.run(Some("EHLO explain.invalid"));
    if let Some(user) = auth {
        if starttls && d.s.tls().is_none() {
            let r = d.run(Some("STARTTLS"));
            dialog.exchanges.extend(r.map(|reply| Exchange {
                command: "STARTTLS".into(),
                reply,
            }));
            d.run(Some("EHLO explain.invalid"));
        }
        let plain =
            base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0(not checked)"));
        let r = d.run(Some(&format!("AUTH PLAIN {plain}")));
        dialog.exchanges.extend(r.map(|reply| Exchange {
            command: format!("AUTH PLAIN ({user})"),
            reply,
        }));
        dialog.logged_in = d.s.auth_user().map(str::to_string);
    }
    let mail = format!("MAIL FROM:<{}>", strip_brackets(from));
    let Some(r) = d.run(Some(&mail)) else {
        return dialog;
    };
    let ok = r.is_positive();
    dialog.exchanges.push(Exchange {
        command: mail,
        reply: r,
    });
    if !ok {
        return dialog;
    }
    let cmd = format!("RCPT TO:<{}>", strip_brackets(rcpt));
    if let Some(r) = d.run(Some(&cmd)) {
        dialog.exchanges.push(Exchange {
            command: cmd,
            reply: r.clone(),
        });
        dialog.rcpt = Some(r);
    }
    dialog.recipient = d.recipient;
    dialog
}

fn strip_brackets(a: &str) -> &str {
    let a = a.trim();
    a.strip_prefix('<')
        .and_then(|x| x.strip_suffix('>'))
        .unwrap_or(a)
}

/// What the session is told about a TLS layer it does not really have.
fn tls_info() -> TlsInfo {
    TlsInfo {
        version: "TLSv1.3".into(),
        cipher: "(postern explain)".into(),
    }
}

struct Driver<'a, 'b> {
    s: Session,
    check: &'a mut RcptCheck<'b>,
    recipient: Option<Address>,
}

impl Driver<'_, '_> {
    /// Sends `line` (or nothing: the greeting) and steps the session
    /// until it waits for input; returns the last reply.
    fn run(&mut self, line: Option<&str>) -> Option<Reply> {
        if let Some(l) = line {
            self.s.feed(format!("{l}\r\n").as_bytes());
        }
        let mut last = None;
        loop {
            match self.s.step(crate::clock::now_secs()) {
                Step::Reply { reply, .. } => last = Some(reply),
                Step::Ask(q) => {
                    let a = self.answer(q);
                    self.s.answer(a);
                }
                Step::StartTls => self.s.tls_started(tls_info()),
                Step::Body(_) | Step::Discard => {}
                Step::NeedInput | Step::Close => return last,
            }
        }
    }

    fn answer(&mut self, q: Question) -> Answer {
        match q {
            // Room on the queue's filesystem is a matter of the moment.
            Question::Mail { .. } => Answer::Mail(Ok(())),
            Question::Recipient(addr) | Question::Verify(addr) => {
                let logged_in = self.s.auth_user().is_some();
                let v = (self.check)(&addr, logged_in);
                self.recipient = Some(addr);
                Answer::Recipient(v)
            }
            Question::Authenticate { credentials, .. } => {
                Answer::Auth(Ok(credentials.authcid.clone()))
            }
            Question::StartData => Answer::DataStart(Err(crate::smtp::reply::LOCAL_ERROR)),
            Question::Commit => Answer::Commit(Err(crate::smtp::reply::LOCAL_ERROR)),
        }
    }
}
