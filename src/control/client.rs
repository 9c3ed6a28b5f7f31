//! The client side of the control socket, and the spool readers that
//! `list` and `show` fall back on when no server is running.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use super::report::{self, Item};
use super::{Refusal, Request};
use crate::queue::spool::{Entry, OpenError, Spool};
use crate::sysexits::{EX_IOERR, EX_NOINPUT, EX_NOPERM, EX_PROTOCOL, EX_UNAVAILABLE};

/// Why the server could not be asked.
#[derive(Debug)]
pub enum Unreachable {
    /// No socket, or nobody listening on it: the server is not running.
    NotRunning(String),
    /// The socket is there but we may not use it.
    Denied(String),
}

/// Sends one request; the answer's body, or the server's refusal.
pub fn ask(
    socket: &Path,
    req: &Request,
    wait: Duration,
) -> Result<Result<String, Refusal>, Unreachable> {
    let mut s = match UnixStream::connect(socket) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            return Err(Unreachable::Denied(format!("{}: {e}", socket.display())))
        }
        Err(e) => {
            return Err(Unreachable::NotRunning(format!(
                "{}: {e}",
                socket.display()
            )))
        }
    };
    // Commands on a message may wait for its delivery to end.
    let _ = s.set_read_timeout(Some(wait + Duration::from_secs(30)));
    let _ = s.set_write_timeout(Some(Duration::from_secs(10)));
    // The server may answer (a refusal) and close before it has read the
    // request: read whatever it said even when the write failed.
    let written = s.write_all(format!("{}\n", req.to_line()).as_bytes());
    let mut answer = Vec::new();
    let read = s.read_to_end(&mut answer);
    let answer = match (written, read) {
        (_, Ok(_)) if !answer.is_empty() => String::from_utf8_lossy(&answer).into_owned(),
        (Err(e), _) | (_, Err(e)) => {
            return Ok(Err(Refusal::new(EX_IOERR, format!("control socket: {e}"))))
        }
        (Ok(()), Ok(_)) => String::new(),
    };
    Ok(parse_answer(&answer))
}

fn parse_answer(answer: &str) -> Result<String, Refusal> {
    if let Some(body) = answer.strip_prefix("ok\n") {
        return Ok(body.to_string());
    }
    let garbled = || {
        Refusal::new(
            EX_PROTOCOL,
            format!(
                "unexpected answer from the server: {:?}",
                answer.chars().take(200).collect::<String>()
            ),
        )
    };
    let rest = answer.strip_prefix("error ").ok_or_else(garbled)?;
    let (code, text) = rest.trim_end().split_once(' ').ok_or_else(garbled)?;
    let code = code.parse().map_err(|_| garbled())?;
    Err(Refusal::new(code, text))
}

/// Every accepted message's entry, oldest first; damaged ones are skipped
/// (the runner sets them aside).
pub fn read_entries(spool: &Spool) -> std::io::Result<Vec<Entry>> {
    let mut out = Vec::new();
    for (id, _) in spool.list_all()? {
        match spool.entry(&id) {
            Ok(e) => out.push(e),
            Err(OpenError::NotFound | OpenError::Corrupt(_)) => {}
            Err(OpenError::Io(e)) => return Err(e),
        }
    }
    Ok(out)
}

/// `show` from the spool: the rendered report.
pub fn show_from_spool(
    spool: &Spool,
    id: &str,
    json: bool,
    active: bool,
) -> Result<String, Refusal> {
    let fail = |e: OpenError| match e {
        OpenError::NotFound => {
            Refusal::new(EX_NOINPUT, format!("{id}: no such message in the queue"))
        }
        e => Refusal::new(EX_IOERR, format!("{id}: {e}")),
    };
    let (entry, headers) = spool.shown(id).map_err(fail)?;
    let it = Item { entry, active };
    Ok(if json {
        report::show_json(&it, &headers)
    } else {
        report::show_text(&it, &headers)
    })
}

/// `list` or `show` straight from the spool of a stopped server.
pub fn offline(queue_dir: &Path, req: &Request) -> Result<String, Refusal> {
    if !Spool::exists(queue_dir) {
        return Err(Refusal::new(
            EX_UNAVAILABLE,
            format!("{}: no queue here", queue_dir.display()),
        ));
    }
    let spool = Spool::open_unlocked(queue_dir).map_err(|e| spool_error(queue_dir, e))?;
    match req {
        Request::List { json } => {
            let items: Vec<Item> = read_entries(&spool)
                .map_err(|e| spool_error(queue_dir, e))?
                .into_iter()
                .map(|entry| Item {
                    entry,
                    active: false,
                })
                .collect();
            Ok(if *json {
                report::list_json(&items)
            } else {
                report::list_text(&items)
            })
        }
        Request::Show { id, json } => show_from_spool(&spool, id, *json, false),
        _ => Err(Refusal::new(EX_UNAVAILABLE, "the server is not running")),
    }
}

fn spool_error(dir: &Path, e: std::io::Error) -> Refusal {
    let code = if e.kind() == std::io::ErrorKind::PermissionDenied {
        EX_NOPERM
    } else {
        EX_IOERR
    };
    Refusal::new(code, format!("{}: {e}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_parse_and_garbage_is_a_protocol_error() {
        assert_eq!(parse_answer("ok\nbody\n"), Ok("body\n".into()));
        assert_eq!(
            parse_answer("error 75 busy now\n"),
            Err(Refusal::new(75, "busy now"))
        );
        for bad in ["", "garbage", "error x y", "error 75"] {
            assert_eq!(parse_answer(bad).unwrap_err().code, EX_PROTOCOL, "{bad:?}");
        }
    }
}
