//! SASL for SMTP AUTH (RFC 4954): the PLAIN (RFC 4616) and LOGIN
//! mechanisms, decoded from base64. Pure.
//!
//! A password is a [`Secret`]: its `Debug` and `Display` print `***`, and
//! its bytes are overwritten when it is dropped, so it cannot reach a log
//! line by accident and does not linger in freed memory.

use base64::Engine;

/// Bytes that must never be shown.
pub struct Secret(Vec<u8>);

impl Secret {
    pub fn new(bytes: Vec<u8>) -> Secret {
        Secret(bytes)
    }

    /// Room for `n` bytes: pushing within it never reallocates (which
    /// would leave a copy behind in freed memory).
    pub fn with_capacity(n: usize) -> Secret {
        Secret(Vec::with_capacity(n))
    }

    pub fn push(&mut self, b: u8) {
        self.0.push(b);
    }

    pub fn pop(&mut self) -> Option<u8> {
        self.0.pop()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        for b in self.0.iter_mut() {
            // Volatile so the compiler cannot drop the "dead" store.
            // SAFETY: `b` is a valid, aligned, exclusive &mut u8 from iter_mut.
            unsafe { std::ptr::write_volatile(b, 0) };
        }
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl Clone for Secret {
    fn clone(&self) -> Secret {
        Secret(self.0.clone())
    }
}

#[derive(Clone, Debug)]
pub struct Credentials {
    /// The identity to act as; empty means the login name (RFC 4616 2).
    pub authzid: String,
    /// The login name.
    pub authcid: String,
    pub password: Secret,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mechanism {
    Plain,
    Login,
}

impl Mechanism {
    /// The mechanisms postern offers; ANONYMOUS never (the seed's
    /// smtpd_sasl_security_options = noanonymous).
    pub fn parse(name: &str) -> Option<Mechanism> {
        match name.to_ascii_uppercase().as_str() {
            "PLAIN" => Some(Mechanism::Plain),
            "LOGIN" => Some(Mechanism::Login),
            _ => None,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::Login => "LOGIN",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SaslError {
    /// Not base64.
    Base64,
    /// Base64, but not what the mechanism expects.
    Malformed,
}

/// Decodes one client response. `=` is the empty response (RFC 4954 4).
pub fn decode(line: &str) -> Result<Vec<u8>, SaslError> {
    let line = line.trim_end_matches(' ');
    if line == "=" {
        return Ok(Vec::new());
    }
    base64::engine::general_purpose::STANDARD
        .decode(line)
        .map_err(|_| SaslError::Base64)
}

/// `[authzid] NUL authcid NUL passwd` (RFC 4616 2): exactly two NULs, a
/// non-empty login name and password, names in UTF-8.
pub fn plain(message: Vec<u8>) -> Result<Credentials, SaslError> {
    let message = Secret::new(message);
    let parts: Vec<&[u8]> = message.expose().split(|&b| b == 0).collect();
    let [authzid, authcid, password] = parts.as_slice() else {
        return Err(SaslError::Malformed);
    };
    if authcid.is_empty() || password.is_empty() {
        return Err(SaslError::Malformed);
    }
    let text = |b: &[u8]| String::from_utf8(b.to_vec()).map_err(|_| SaslError::Malformed);
    Ok(Credentials {
        authzid: text(authzid)?,
        authcid: text(authcid)?,
        password: Secret::new(password.to_vec()),
    })
}

/// The two LOGIN answers, each already decoded.
pub fn login(user: Vec<u8>, password: Vec<u8>) -> Result<Credentials, SaslError> {
    let password = Secret::new(password);
    let authcid = String::from_utf8(user).map_err(|_| SaslError::Malformed)?;
    if authcid.is_empty() || authcid.contains('\0') || password.expose().is_empty() {
        return Err(SaslError::Malformed);
    }
    Ok(Credentials {
        authzid: String::new(),
        authcid,
        password,
    })
}

pub fn encode(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_with_and_without_authzid() {
        let c = plain(decode(&encode(b"\0alice@example.test\0alice-secret")).unwrap()).unwrap();
        assert_eq!(
            (c.authzid.as_str(), c.authcid.as_str()),
            ("", "alice@example.test")
        );
        assert_eq!(c.password.expose(), b"alice-secret");
        let c = plain(b"boss\0alice\0pw".to_vec()).unwrap();
        assert_eq!(c.authzid, "boss");
    }

    #[test]
    fn plain_refuses_malformed() {
        for bad in [
            &b""[..],
            b"alice\0pw",
            b"\0\0pw",
            b"\0alice\0",
            b"\0a\0p\0extra",
            b"\0\xff\xfe\0pw",
        ] {
            assert!(plain(bad.to_vec()).is_err(), "{bad:?}");
        }
        assert_eq!(decode("not base64!").unwrap_err(), SaslError::Base64);
        assert_eq!(decode("dGVzd").unwrap_err(), SaslError::Base64, "truncated");
        assert_eq!(decode("=").unwrap(), b"");
    }

    #[test]
    fn secrets_do_not_print() {
        let c = plain(b"\0alice\0hunter2".to_vec()).unwrap();
        let shown = format!("{c:?} {}", c.password);
        assert!(!shown.contains("hunter2"), "{shown}");
    }

    #[test]
    fn mechanisms() {
        assert_eq!(Mechanism::parse("plain"), Some(Mechanism::Plain));
        assert_eq!(Mechanism::parse("ANONYMOUS"), None);
        assert_eq!(Mechanism::parse("CRAM-MD5"), None);
    }
}
