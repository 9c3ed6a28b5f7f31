//! Handing a message to the server: SMTP over the submission socket
//! (blocking, one message per session), and the drop file kept while the
//! server is not running.
//!
//! Drop file (written under a dot name, then renamed; mode 0644 in a 1733
//! directory: nobody else can list or open it without its random name):
//! ```text
//! POSTERN-DROP 1
//! from alice@example.test        (empty: the null sender)
//! rcpt bob@example.test          (one line per recipient)
//! size 1234                      (bytes of the message below)
//! .
//! <message, LF line ends>
//! ```
//! The submitter is the file's owner, taken from the file system by the
//! server, never from the file.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};

const DROP_MAGIC: &str = "POSTERN-DROP 1";

/// Where pickup moves drop files it cannot submit (cut short, not drop
/// files, refused by the server): kept for the administrator, never
/// deleted. Not the queue's `corrupt`: the drop directory is no queue.
pub fn set_aside_dir(drop_dir: &Path) -> PathBuf {
    drop_dir.join("set-aside")
}

/// What the server said when it did not take the message.
#[derive(Debug)]
pub struct Refused {
    pub code: u16,
    pub text: String,
}

#[derive(Debug)]
pub enum SubmitError {
    /// The server answered 4xx/5xx.
    Refused(Refused),
    /// The conversation broke.
    Io(io::Error),
}

impl std::fmt::Display for SubmitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SubmitError::Refused(r) => write!(f, "{} {}", r.code, r.text),
            SubmitError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl From<io::Error> for SubmitError {
    fn from(e: io::Error) -> Self {
        SubmitError::Io(e)
    }
}

/// One reply: its code and its lines' text.
fn reply(r: &mut impl BufRead, verbose: bool) -> io::Result<(u16, String)> {
    let mut text = String::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the server closed the connection",
            ));
        }
        if verbose {
            eprint!("<<< {line}");
        }
        let l = line.trim_end();
        let code = l
            .get(..3)
            .and_then(|c| c.parse::<u16>().ok())
            .ok_or_else(|| io::Error::other(format!("not an SMTP reply: {l:?}")))?;
        if !text.is_empty() {
            text.push(' ');
        }
        text.push_str(l.get(4..).unwrap_or(""));
        if l.as_bytes().get(3) != Some(&b'-') {
            return Ok((code, text));
        }
    }
}

fn command(
    w: &mut impl Write,
    r: &mut impl BufRead,
    line: &str,
    verbose: bool,
) -> io::Result<(u16, String)> {
    if verbose {
        eprintln!(">>> {line}");
    }
    w.write_all(line.as_bytes())?;
    w.write_all(b"\r\n")?;
    w.flush()?;
    reply(r, verbose)
}

fn expect(got: (u16, String), want: u16) -> Result<String, SubmitError> {
    if got.0 / 100 == want / 100 {
        Ok(got.1)
    } else {
        Err(SubmitError::Refused(Refused {
            code: got.0,
            text: got.1,
        }))
    }
}

/// Sends one message (LF line ends) over an SMTP stream; the queue ID the
/// server gave it.
pub fn smtp(
    stream: &std::os::unix::net::UnixStream,
    sender: &str,
    rcpts: &[String],
    msg: &[u8],
    verbose: bool,
) -> Result<String, SubmitError> {
    let mut w = io::BufWriter::new(stream);
    let mut r = BufReader::new(stream);
    expect(reply(&mut r, verbose)?, 220)?;
    expect(command(&mut w, &mut r, "EHLO localhost", verbose)?, 250)?;
    let eight_bit = msg.iter().any(|&b| b >= 0x80);
    let utf8 = !sender.is_ascii() || rcpts.iter().any(|r| !r.is_ascii());
    let mut mail = format!("MAIL FROM:<{sender}>");
    if eight_bit {
        mail.push_str(" BODY=8BITMIME");
    }
    if utf8 {
        mail.push_str(" SMTPUTF8");
    }
    expect(command(&mut w, &mut r, &mail, verbose)?, 250)?;
    for rcpt in rcpts {
        expect(
            command(&mut w, &mut r, &format!("RCPT TO:<{rcpt}>"), verbose)?,
            250,
        )?;
    }
    expect(command(&mut w, &mut r, "DATA", verbose)?, 354)?;
    let mut data = Vec::with_capacity(msg.len() + msg.len() / 40 + 8);
    for line in msg.split_inclusive(|&c| c == b'\n') {
        let body = line.strip_suffix(b"\n").unwrap_or(line);
        if body.starts_with(b".") {
            data.push(b'.');
        }
        data.extend_from_slice(body);
        data.extend_from_slice(b"\r\n");
    }
    data.extend_from_slice(b".\r\n");
    w.write_all(&data)?;
    w.flush()?;
    let text = expect(reply(&mut r, verbose)?, 250)?;
    let _ = command(&mut w, &mut r, "QUIT", verbose);
    Ok(text.rsplit(' ').next().unwrap_or("").to_string())
}

/// A message as a drop file holds it.
#[derive(Debug, PartialEq, Eq)]
pub struct Dropped {
    pub sender: String,
    pub rcpts: Vec<String>,
    pub message: Vec<u8>,
}

/// Leaves a message in the drop directory: written aside, fsynced, then
/// renamed, so the server never sees half a file. The new file's path.
pub fn drop_file(dir: &Path, d: &Dropped) -> io::Result<PathBuf> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut name = [0u8; 12];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut name)?;
    let name: String = name.iter().map(|b| format!("{b:02x}")).collect();
    let stamp = crate::clock::now_micros();
    let tmp = dir.join(format!(".{stamp}.{name}"));
    let done = dir.join(format!("{stamp}.{name}"));
    let mut head = format!("{DROP_MAGIC}\nfrom {}\n", one_line(&d.sender));
    for r in &d.rcpts {
        head.push_str(&format!("rcpt {}\n", one_line(r)));
    }
    head.push_str(&format!("size {}\n.\n", d.message.len()));
    let written = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(&tmp)?;
        f.write_all(head.as_bytes())?;
        f.write_all(&d.message)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &done)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(done)
}

fn one_line(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).collect()
}

/// Reads a drop file's contents back; `Err` names what is wrong (a file
/// cut short, not a drop file).
pub fn parse_drop(bytes: &[u8]) -> Result<Dropped, String> {
    let mut pos = 0;
    let mut line = || -> Result<String, String> {
        let rest = &bytes[pos..];
        let n = rest
            .iter()
            .position(|&c| c == b'\n')
            .ok_or("the header is cut short")?;
        pos += n + 1;
        String::from_utf8(rest[..n].to_vec()).map_err(|_| "the header is not UTF-8".to_string())
    };
    if line()? != DROP_MAGIC {
        return Err("not a drop file (bad first line)".into());
    }
    let mut d = Dropped {
        sender: String::new(),
        rcpts: Vec::new(),
        message: Vec::new(),
    };
    let mut size = None;
    loop {
        let l = line()?;
        if l == "." {
            break;
        }
        let (k, v) = l.split_once(' ').unwrap_or((l.as_str(), ""));
        match k {
            "from" => d.sender = v.to_string(),
            "rcpt" => d.rcpts.push(v.to_string()),
            "size" => size = Some(v.parse::<usize>().map_err(|_| format!("bad size {v:?}"))?),
            _ => return Err(format!("unknown header line {k:?}")),
        }
    }
    let size = size.ok_or("no size line")?;
    let message = &bytes[pos..];
    if message.len() != size {
        return Err(format!(
            "the message is {} bytes, the file says {size}: cut short",
            message.len()
        ));
    }
    if d.rcpts.is_empty() {
        return Err("no recipients".into());
    }
    d.message = message.to_vec();
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drop_files_round_trip_and_cut_ones_are_named() {
        let dir = std::env::temp_dir().join(format!("postern-drop-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let d = Dropped {
            sender: "alice@example.test".into(),
            rcpts: vec!["bob@example.test".into(), "x@remote.test".into()],
            message: b"Subject: s\n\nbody\n".to_vec(),
        };
        let p = drop_file(&dir, &d).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        assert_eq!(parse_drop(&bytes).unwrap(), d);
        assert!(parse_drop(&bytes[..bytes.len() - 3])
            .unwrap_err()
            .contains("cut short"));
        assert!(parse_drop(b"garbage\n").is_err());
        assert!(parse_drop(&bytes[..20]).unwrap_err().contains("cut short"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
