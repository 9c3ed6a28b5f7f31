//! Mailbox quotas as Maildir++ keeps them (Courier's maildirquota, which
//! Dovecot's quota=maildir follows), so postern and Dovecot agree on a
//! Maildir's usage.
//!
//! `maildirsize` at the Maildir's root:
//! ```text
//! 20000S                 the limits: bytes (S) and messages (C); 0 = none
//! 1234 1                 then one line per change: bytes and messages,
//! -1234 -1               negative when mail is removed
//! ```
//! Usage is the sum of the change lines. It is recalculated from the files
//! (the `S=` in their names, else their size) when the file is missing,
//! damaged, 5120 bytes or larger, or when the mailbox looks over its limit
//! and the file has several lines or is older than 15 minutes; the new file
//! is written aside and renamed over the old one. A delivery appends one
//! line with one write (O_APPEND, no lock), as Dovecot does.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::route::Quota;

/// What a Maildir holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub bytes: i64,
    pub messages: i64,
}

/// A maildirsize larger than this is folded into a new one (Maildir++).
const FOLD_AT: u64 = 5120;
/// An over-limit reading older than this is checked against the files.
const STALE: Duration = Duration::from_secs(15 * 60);

/// Would a message of `size` bytes fit? `Err` with the usage if not.
pub fn fits(maildir: &Path, q: Quota, size: u64) -> io::Result<Result<(), Usage>> {
    if q.bytes == 0 && q.messages == 0 {
        return Ok(Ok(()));
    }
    let u = usage(maildir, q)?;
    let over_bytes = q.bytes > 0 && u.bytes.saturating_add(size as i64) > q.bytes as i64;
    let over_count = q.messages > 0 && u.messages.saturating_add(1) > q.messages as i64;
    Ok(if over_bytes || over_count {
        Err(u)
    } else {
        Ok(())
    })
}

/// The usage: from maildirsize when it can be trusted, else counted anew
/// (and maildirsize rewritten).
pub fn usage(maildir: &Path, q: Quota) -> io::Result<Usage> {
    let file = maildir.join("maildirsize");
    match read(&file) {
        Ok(Some((u, lines, len, modified))) => {
            let over = (q.bytes > 0 && u.bytes > q.bytes as i64)
                || (q.messages > 0 && u.messages > q.messages as i64);
            let old = modified.elapsed().map(|age| age > STALE).unwrap_or(true);
            let fresh =
                len < FOLD_AT && u.bytes >= 0 && u.messages >= 0 && !(over && (lines > 1 || old));
            if fresh {
                return Ok(u);
            }
        }
        Ok(None) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let u = count(maildir)?;
    match write_fresh(maildir, q, u) {
        Ok(()) => {}
        // No Maildir yet (a mailbox that never had mail): nothing to
        // count and nowhere to write; the next check writes the file.
        Err(e) if e.kind() == io::ErrorKind::NotFound && !maildir.is_dir() => {}
        Err(e) => return Err(e),
    }
    Ok(u)
}

/// Adds a delivered message to maildirsize (one appended line). A missing
/// file is left missing: the next check counts the files, this one too.
pub fn add(maildir: &Path, size: u64) -> io::Result<()> {
    match OpenOptions::new()
        .append(true)
        .open(maildir.join("maildirsize"))
    {
        Ok(mut f) => f.write_all(format!("{size} 1\n").as_bytes()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// (usage, change lines, file length, mtime), or None if damaged.
fn read(file: &Path) -> io::Result<Option<(Usage, usize, u64, SystemTime)>> {
    let meta = fs::metadata(file)?;
    let text = fs::read_to_string(file)?;
    let mut lines = text.lines();
    let Some(head) = lines.next() else {
        return Ok(None);
    };
    if !head
        .split(',')
        .all(|p| p.trim().trim_end_matches(['S', 'C']).parse::<i64>().is_ok())
    {
        return Ok(None);
    }
    let mut u = Usage::default();
    let mut n = 0;
    for l in lines {
        let mut w = l.split_whitespace();
        let (Some(b), Some(c)) = (w.next(), w.next()) else {
            return Ok(None);
        };
        let (Ok(b), Ok(c)) = (b.parse::<i64>(), c.parse::<i64>()) else {
            return Ok(None);
        };
        u.bytes = u.bytes.saturating_add(b);
        u.messages = u.messages.saturating_add(c);
        n += 1;
    }
    Ok(Some((u, n, meta.len(), meta.modified()?)))
}

/// Counts the messages of the Maildir and its Maildir++ folders (`.Name/`),
/// without the trash of tmp/.
pub fn count(maildir: &Path) -> io::Result<Usage> {
    let mut u = Usage::default();
    let mut dirs = vec![maildir.to_path_buf()];
    if let Ok(rd) = fs::read_dir(maildir) {
        for e in rd.flatten() {
            let name = e.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') && name != "." && name != ".." && e.path().is_dir() {
                dirs.push(e.path());
            }
        }
    }
    for d in dirs {
        for sub in ["new", "cur"] {
            let rd = match fs::read_dir(d.join(sub)) {
                Ok(rd) => rd,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            for e in rd.flatten() {
                let name = e.file_name();
                let size = size_in_name(&name.to_string_lossy())
                    .or_else(|| e.metadata().ok().map(|m| m.len()));
                if let Some(s) = size {
                    u.bytes += s as i64;
                    u.messages += 1;
                }
            }
        }
    }
    Ok(u)
}

/// The `S=<bytes>` of a Maildir file name (`...,S=1234:2,S`).
fn size_in_name(name: &str) -> Option<u64> {
    let i = name.find(",S=")?;
    let digits: String = name[i + 3..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().ok()
}

/// A new maildirsize with the limits and one line of usage, written
/// aside and renamed over the old one.
fn write_fresh(maildir: &Path, q: Quota, u: Usage) -> io::Result<()> {
    let mut head = format!("{}S", q.bytes);
    if q.messages > 0 {
        head.push_str(&format!(",{}C", q.messages));
    }
    let tmp = maildir.join(format!("tmp/maildirsize.{}", std::process::id()));
    let target = if maildir.join("tmp").is_dir() {
        tmp
    } else {
        maildir.join(format!(".maildirsize.{}", std::process::id()))
    };
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&target)?;
    f.write_all(format!("{head}\n{} {}\n", u.bytes, u.messages).as_bytes())?;
    drop(f);
    fs::rename(&target, maildir.join("maildirsize"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn maildir(tag: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("postern-quota-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        for s in ["tmp", "new", "cur", ".Sent/cur"] {
            fs::create_dir_all(d.join(s)).unwrap();
        }
        d
    }

    #[test]
    fn counts_files_then_follows_appended_lines() {
        let d = maildir("count");
        fs::write(d.join("new/1.M1P1Q1.h,S=1000"), vec![b'x'; 10]).unwrap();
        fs::write(d.join("cur/2.M1P1Q1.h,S=2000:2,S"), b"y").unwrap();
        fs::write(d.join(".Sent/cur/3.x"), vec![b'z'; 300]).unwrap();
        let q = Quota {
            bytes: 20_000,
            messages: 0,
        };
        assert_eq!(
            usage(&d, q).unwrap(),
            Usage {
                bytes: 3300,
                messages: 3
            }
        );
        assert_eq!(
            fs::read_to_string(d.join("maildirsize")).unwrap(),
            "20000S\n3300 3\n"
        );
        add(&d, 700).unwrap();
        assert_eq!(
            usage(&d, q).unwrap(),
            Usage {
                bytes: 4000,
                messages: 4
            }
        );
        assert_eq!(fits(&d, q, 16_000).unwrap(), Ok(()));
        assert!(fits(&d, q, 16_001).unwrap().is_err());
        assert_eq!(fits(&d, Quota::default(), u64::MAX / 2).unwrap(), Ok(()));
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn a_maildir_not_made_yet_is_empty() {
        let d = std::env::temp_dir().join(format!("postern-quota-missing-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        let q = Quota {
            bytes: 1000,
            messages: 0,
        };
        assert_eq!(usage(&d, q).unwrap(), Usage::default());
        assert!(fits(&d, q, 1001).unwrap().is_err());
        assert_eq!(fits(&d, q, 1000).unwrap(), Ok(()));
        assert!(!d.exists(), "nothing made");
    }

    #[test]
    fn damaged_or_big_files_are_counted_again() {
        let d = maildir("damaged");
        fs::write(d.join("new/1.M1P1Q1.h,S=500"), b"x").unwrap();
        let q = Quota {
            bytes: 1000,
            messages: 0,
        };
        fs::write(d.join("maildirsize"), "garbage\nnot numbers\n").unwrap();
        assert_eq!(usage(&d, q).unwrap().bytes, 500);
        let many = "1 1\n".repeat(2000);
        fs::write(d.join("maildirsize"), format!("1000S\n{many}")).unwrap();
        assert_eq!(
            usage(&d, q).unwrap(),
            Usage {
                bytes: 500,
                messages: 1
            },
            "folded"
        );
        fs::remove_dir_all(d).unwrap();
    }
}
