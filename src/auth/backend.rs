//! Where a login is checked: the user directory (PostfixAdmin's
//! `mailbox.password`), or a Dovecot auth socket (the seed's
//! `smtpd_sasl_type = dovecot`). Blocking: call from a blocking thread.
//!
//! Rules for the directory: the login name is `mailbox.username` of an
//! active mailbox in an active domain (case-insensitive, as PostfixAdmin's
//! collation is), with `smtp_active = 1`. An authorization identity other
//! than the login name is refused. An unknown user costs the same hash
//! computation as a known one, so timing does not tell which names exist.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use super::dovecot;
use super::password::{self, Verify};
use crate::directory::Directory;
use crate::log;
use crate::smtp::sasl::Credentials;
use crate::smtp::session::AuthFailure;

pub enum Backend {
    Directory(Arc<Directory>),
    Dovecot(PathBuf),
}

/// Argon2 verification can take 64 MiB: one at a time.
static ARGON2: Mutex<()> = Mutex::new(());

impl Backend {
    /// The login name to record, or why not.
    pub fn check(
        &self,
        c: &Credentials,
        client: IpAddr,
        secured: bool,
    ) -> Result<String, AuthFailure> {
        if !c.authzid.is_empty() && !c.authzid.eq_ignore_ascii_case(&c.authcid) {
            return Err(AuthFailure::Invalid);
        }
        match self {
            Backend::Directory(dir) => check_directory(dir, c),
            Backend::Dovecot(socket) => dovecot::authenticate(socket, c, client, secured),
        }
    }
}

fn check_directory(dir: &Directory, c: &Credentials) -> Result<String, AuthFailure> {
    let row = dir.login(&c.authcid).map_err(|e| {
        log::warning(&format!("login lookup failed: {e}"));
        AuthFailure::Temporary
    })?;
    let stored = row
        .as_ref()
        .map(|r| r.password.clone())
        .unwrap_or_else(|| password::equalizer().to_string());
    let verdict = if stored.to_ascii_lowercase().contains("argon2") {
        let _one = ARGON2.lock().unwrap_or_else(|e| e.into_inner());
        password::verify(&stored, c.password.expose())
    } else {
        password::verify(&stored, c.password.expose())
    };
    let Some(row) = row else {
        return Err(AuthFailure::Invalid);
    };
    match verdict {
        Verify::Match if row.smtp_active => Ok(row.username),
        Verify::Match => {
            log::warning(&format!(
                "{}: login refused: smtp_active = 0 (receive only)",
                row.username
            ));
            Err(AuthFailure::Invalid)
        }
        Verify::Mismatch => Err(AuthFailure::Invalid),
        Verify::Unsupported(scheme) => {
            log::warning(&format!(
                "{}: password scheme {scheme} is not supported; login refused",
                row.username
            ));
            Err(AuthFailure::Invalid)
        }
        Verify::Malformed(why) => {
            log::warning(&format!(
                "{}: stored password hash is malformed ({why}); login refused",
                row.username
            ));
            Err(AuthFailure::Invalid)
        }
    }
}
