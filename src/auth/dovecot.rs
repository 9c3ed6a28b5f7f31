//! A client of Dovecot's authentication protocol (auth-client socket,
//! protocol version 1.2), the seed's `smtpd_sasl_type = dovecot`.
//!
//! One connection per login: handshake (`VERSION`, `CPID`, read to
//! `DONE`), then one `AUTH` with the PLAIN mechanism whatever the client
//! used (postern has the name and password in hand), then `OK` or `FAIL`.
//! A socket that cannot be reached, or an answer that makes no sense, is a
//! temporary failure (454), never "wrong password".

use std::io::{BufRead, BufReader, Write};
use std::net::IpAddr;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use crate::log;
use crate::smtp::sasl::{self, Credentials};
use crate::smtp::session::AuthFailure;

/// Dovecot delays failures (auth_failure_delay, 2 s by default); wait well
/// past that before calling the service unresponsive.
const TIMEOUT: Duration = Duration::from_secs(15);

pub fn authenticate(
    socket: &Path,
    c: &Credentials,
    client: IpAddr,
    secured: bool,
) -> Result<String, AuthFailure> {
    match exchange(socket, c, client, secured) {
        Ok(r) => r,
        Err(e) => {
            log::warning(&format!("dovecot auth {}: {e}", socket.display()));
            Err(AuthFailure::Temporary)
        }
    }
}

/// Tab-separated values must not carry tabs or newlines.
fn clean(s: &str) -> String {
    s.chars()
        .filter(|c| !matches!(c, '\t' | '\n' | '\r' | '\0'))
        .collect()
}

fn exchange(
    socket: &Path,
    c: &Credentials,
    client: IpAddr,
    secured: bool,
) -> std::io::Result<Result<String, AuthFailure>> {
    let stream = UnixStream::connect(socket)?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    let mut w = stream.try_clone()?;
    let mut r = BufReader::new(stream);
    w.write_all(format!("VERSION\t1\t2\nCPID\t{}\n", std::process::id()).as_bytes())?;
    let mut plain_offered = false;
    loop {
        let line = read_line(&mut r)?;
        let mut f = line.split('\t');
        match f.next() {
            Some("VERSION") if f.next() != Some("1") => {
                return Err(bad("unsupported protocol version"))
            }
            Some("MECH") if f.next().is_some_and(|m| m.eq_ignore_ascii_case("PLAIN")) => {
                plain_offered = true
            }
            Some("DONE") => break,
            _ => {}
        }
    }
    if !plain_offered {
        return Err(bad("the service does not offer PLAIN"));
    }
    let mut message = Vec::new();
    message.push(0);
    message.extend_from_slice(c.authcid.as_bytes());
    message.push(0);
    message.extend_from_slice(c.password.expose());
    let resp = crate::smtp::sasl::Secret::new(sasl::encode(&message).into_bytes());
    message.iter_mut().for_each(|b| *b = 0);
    let mut req = format!(
        "AUTH\t1\tPLAIN\tservice=smtp\trip={}",
        clean(&client.to_string())
    )
    .into_bytes();
    if secured {
        req.extend_from_slice(b"\tsecured");
    }
    req.extend_from_slice(b"\tresp=");
    req.extend_from_slice(resp.expose());
    req.push(b'\n');
    let sent = w.write_all(&req);
    req.iter_mut().for_each(|b| *b = 0);
    sent?;
    let line = read_line(&mut r)?;
    let mut f = line.split('\t');
    let (kind, id) = (f.next(), f.next());
    if id != Some("1") {
        return Err(bad("answer for another request"));
    }
    let params: Vec<&str> = f.collect();
    match kind {
        Some("OK") => {
            let user = params
                .iter()
                .find_map(|p| p.strip_prefix("user="))
                .unwrap_or(&c.authcid);
            Ok(Ok(user.to_string()))
        }
        Some("FAIL") if params.contains(&"temp") => Ok(Err(AuthFailure::Temporary)),
        Some("FAIL") => Ok(Err(AuthFailure::Invalid)),
        _ => Err(bad("unexpected answer to AUTH")),
    }
}

fn read_line(r: &mut impl BufRead) -> std::io::Result<String> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Err(bad("connection closed"));
    }
    Ok(line.trim_end_matches('\n').to_string())
}

fn bad(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string())
}
