//! SMTP AUTH on the client side (RFC 4954): which mechanism to use and the
//! lines that carry the login. Pure.
//!
//! Only PLAIN (RFC 4616) and LOGIN, chosen among what the server offers,
//! PLAIN first (one round trip). Lines holding the password are built in
//! buffers that are wiped when dropped, and come out as sensitive
//! [`Wire`]s, whose `Debug` prints `***`.
//!
//! AUTH happens only inside TLS unless the configuration allows otherwise.
//! With credentials, a server that offers AUTH but nothing we can use (or
//! offers it outside TLS) fails the session, temporarily, instead of
//! getting unauthenticated mail a smarthost would refuse; a server that
//! offers no AUTH at all gets the mail without login, as Postfix does.

use base64::Engine;

use super::types::{ClientCredentials, Wire};
use super::{Client, ConnFailure, Pending, Response};
use crate::smtp::sasl::{Mechanism, Secret};

/// The mechanism to use with a server offering `offered` (upper-cased).
pub fn choose(offered: &[String]) -> Option<Mechanism> {
    [Mechanism::Plain, Mechanism::Login]
        .into_iter()
        .find(|m| offered.iter().any(|o| o == m.name()))
}

/// `prefix` + base64(`raw`) + CRLF, in a wiped buffer.
fn line(prefix: &str, raw: &[u8]) -> Wire {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut out = Secret::with_capacity(prefix.len() + raw.len().div_ceil(3) * 4 + 2);
    for &b in prefix.as_bytes() {
        out.push(b);
    }
    let mut enc = vec![0u8; raw.len().div_ceil(3) * 4];
    let n = b64
        .encode_slice(raw, &mut enc)
        .expect("buffer sized for base64");
    let enc = Secret::new(enc);
    for &b in &enc.expose()[..n] {
        out.push(b);
    }
    out.push(b'\r');
    out.push(b'\n');
    Wire::new(out.expose().to_vec(), true)
}

/// `AUTH PLAIN <initial response>`: authzid empty, so the server uses the
/// login name as the identity (RFC 4616 2).
pub fn plain(c: &ClientCredentials) -> Wire {
    let mut msg = Secret::with_capacity(c.user.len() + c.password.len() + 2);
    msg.push(0);
    for &b in c.user.as_bytes() {
        msg.push(b);
    }
    msg.push(0);
    for &b in c.password.expose() {
        msg.push(b);
    }
    line("AUTH PLAIN ", msg.expose())
}

pub fn login_start() -> Wire {
    Wire::new(b"AUTH LOGIN\r\n".to_vec(), false)
}

/// The user name in answer to the first 334.
pub fn login_user(c: &ClientCredentials) -> Wire {
    line("", c.user.as_bytes())
}

/// The password in answer to the second 334.
pub fn login_password(c: &ClientCredentials) -> Wire {
    line("", c.password.expose())
}

impl Client {
    pub(super) fn auth_or_ready(&mut self) {
        let Some(creds) = self.cfg.credentials.as_ref() else {
            return self.ready();
        };
        let offered = self
            .caps
            .as_ref()
            .map(|c| c.auth.clone())
            .unwrap_or_default();
        if self.authenticated || offered.is_empty() {
            return self.ready();
        }
        if self.tls.is_none() && !self.cfg.auth_without_tls {
            let problem = "AUTH is only used inside TLS, and TLS is not active".into();
            return self.fail(ConnFailure::AuthUnavailable { problem }, true);
        }
        match choose(&offered) {
            Some(Mechanism::Plain) => {
                let w = plain(creds);
                self.todo.push_back((Pending::AuthPlain, w));
            }
            Some(Mechanism::Login) => {
                self.todo.push_back((Pending::AuthLogin, login_start()));
            }
            None => {
                let problem = format!(
                    "no mechanism available (server offers {})",
                    offered.join(" ")
                );
                self.fail(ConnFailure::AuthUnavailable { problem }, true);
            }
        }
    }

    pub(super) fn auth_reply(&mut self, p: Pending, r: Response) {
        let creds = self.cfg.credentials.as_ref().expect("credentials for AUTH");
        match (p, r.code) {
            (Pending::AuthPlain | Pending::AuthLoginPassword, 235) => {
                self.authenticated = true;
                self.ready();
            }
            (Pending::AuthLogin, 334) => {
                let w = login_user(creds);
                self.todo.push_back((Pending::AuthLoginUser, w));
            }
            (Pending::AuthLoginUser, 334) => {
                let w = login_password(creds);
                self.todo.push_back((Pending::AuthLoginPassword, w));
            }
            // A 334 where none belongs leaves the server waiting for a SASL
            // line: the session cannot go on, and QUIT would be read as one.
            (_, 334) => self.fail(ConnFailure::AuthFailed { response: r }, false),
            _ => self.fail(ConnFailure::AuthFailed { response: r }, true),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds() -> ClientCredentials {
        ClientCredentials {
            user: "relay@example.test".into(),
            password: Secret::new(b"hunter2".to_vec()),
        }
    }

    #[test]
    fn plain_is_preferred() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(choose(&s(&["LOGIN", "PLAIN"])), Some(Mechanism::Plain));
        assert_eq!(choose(&s(&["CRAM-MD5", "LOGIN"])), Some(Mechanism::Login));
        assert_eq!(choose(&s(&["CRAM-MD5", "XOAUTH2"])), None);
    }

    #[test]
    fn lines_are_base64_and_hidden() {
        let w = plain(&creds());
        assert_eq!(
            w.bytes(),
            b"AUTH PLAIN AHJlbGF5QGV4YW1wbGUudGVzdABodW50ZXIy\r\n"
        );
        assert!(w.is_sensitive());
        assert_eq!(format!("{w:?}"), "Wire(***)");
        assert_eq!(login_password(&creds()).bytes(), b"aHVudGVyMg==\r\n");
        let shown = format!("{:?}", creds());
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}
