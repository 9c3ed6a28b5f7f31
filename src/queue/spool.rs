//! The spool: the only code that builds queue paths or touches queue files.
//!
//! Layout under the queue directory:
//! ```text
//! lock          flock()ed by the one postern that owns this queue; holds its pid
//! incoming/ID   a message being received; never delivered; removed at start
//! messages/ID   an accepted message: envelope header + message (see envelope.rs)
//! state/ID      delivery state, only for messages that stayed queued
//! corrupt/ID    queue files that could not be read, set aside for a human
//! ```
//! Acceptance ("250 queued") happens only after: the file is written and
//! fsynced in incoming/, renamed into messages/, and messages/ is fsynced.
//! A message in messages/ is therefore complete; one in incoming/ never is.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::envelope::{DeliveryState, QueueEnvelope};
use super::id;
use crate::fsutil::{self, DirSync};

pub struct Spool {
    incoming: PathBuf,
    messages: PathBuf,
    state: PathBuf,
    corrupt: PathBuf,
    messages_sync: DirSync,
    _lock: Option<nix::fcntl::Flock<File>>,
}

/// A message being received.
pub struct SpoolWriter {
    id: String,
    file: BufWriter<File>,
    error: Option<io::Error>,
}

pub struct Recovery {
    pub removed_incoming: usize,
    /// Queued messages with the Unix time of their next attempt.
    pub queued: Vec<(String, i64)>,
    pub quarantined: Vec<(String, String)>,
}

pub enum OpenError {
    NotFound,
    Corrupt(String),
    Io(io::Error),
}

/// An accepted message opened for delivery.
pub struct QueuedMessage {
    pub env: QueueEnvelope,
    file: File,
    body_offset: u64,
    pub body_len: u64,
    /// The start of the message, already read with the envelope.
    start: Vec<u8>,
}

impl QueuedMessage {
    /// A reader over the message bytes (after the envelope header).
    pub fn body(&self) -> io::Result<impl Read + '_> {
        let mut f = &self.file;
        f.seek(SeekFrom::Start(self.body_offset))?;
        Ok(f.take(self.body_len))
    }

    /// The header section of the message (up to the first empty line,
    /// at most `limit` bytes).
    pub fn header_bytes(&self, limit: usize) -> io::Result<Vec<u8>> {
        // Usually the whole header section came in with the envelope.
        if let Some(end) = header_end(&self.start).filter(|&e| e <= limit) {
            return Ok(self.start[..end].to_vec());
        }
        let mut r = BufReader::new(self.body()?);
        let mut out = Vec::new();
        let mut line = Vec::new();
        loop {
            line.clear();
            if r.read_until(b'\n', &mut line)? == 0
                || line == b"\n"
                || out.len() + line.len() > limit
            {
                break;
            }
            out.extend_from_slice(&line);
        }
        Ok(out)
    }
}

/// Length of the header section at the start of `m` (up to, not with,
/// the empty line), if that empty line is in `m`.
fn header_end(m: &[u8]) -> Option<usize> {
    if m.first() == Some(&b'\n') {
        return Some(0);
    }
    m.windows(2).position(|w| w == b"\n\n").map(|i| i + 1)
}

impl Spool {
    /// Opens (creating) the queue directory and takes its lock, so that two
    /// servers never deliver the same queue.
    pub fn open(root: &Path) -> io::Result<Spool> {
        let mut s = Spool::open_unlocked(root)?;
        let lock_file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(root.join("lock"))?;
        let lock = nix::fcntl::Flock::lock(lock_file, nix::fcntl::FlockArg::LockExclusiveNonblock)
            .map_err(|(_, e)| {
                io::Error::new(
                    io::ErrorKind::WouldBlock,
                    format!(
                        "{}: another postern is already using this queue ({e})",
                        root.display()
                    ),
                )
            })?;
        // The lock file names its holder, for `postern reload`.
        let mut f: &File = &lock;
        f.set_len(0)?;
        f.write_all(format!("{}\n", std::process::id()).as_bytes())?;
        s._lock = Some(lock);
        Ok(s)
    }

    /// The pid of the server holding the queue at `root`, if one does.
    pub fn owner(root: &Path) -> Option<i32> {
        let f = File::open(root.join("lock")).ok()?;
        // If we can take the lock, nobody holds it.
        if let Ok(free) = nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockSharedNonblock) {
            drop(free);
            return None;
        }
        std::fs::read_to_string(root.join("lock"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// For tools that only read the queue while a server may be running.
    pub fn open_unlocked(root: &Path) -> io::Result<Spool> {
        let s = Spool {
            incoming: root.join("incoming"),
            messages: root.join("messages"),
            state: root.join("state"),
            corrupt: root.join("corrupt"),
            messages_sync: DirSync::new(root.join("messages")),
            _lock: None,
        };
        for d in [root, &s.incoming, &s.messages, &s.state, &s.corrupt] {
            fsutil::ensure_dir(d, 0o700)?;
        }
        Ok(s)
    }

    /// Starts a message: creates incoming/ID and writes the envelope.
    pub fn create(&self, env: &QueueEnvelope) -> io::Result<SpoolWriter> {
        let path = self.incoming.join(&env.id);
        let f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)?;
        let mut w = SpoolWriter {
            id: env.id.clone(),
            file: BufWriter::with_capacity(32 * 1024, f),
            error: None,
        };
        w.write(env.serialize().as_bytes());
        Ok(w)
    }

    /// Makes a received message durable and visible to delivery. Blocking.
    pub fn commit(&self, mut w: SpoolWriter) -> io::Result<()> {
        let result = (|| {
            if let Some(e) = w.error.take() {
                return Err(e);
            }
            w.file.flush()?;
            w.file.get_ref().sync_data()?;
            let from = self.incoming.join(&w.id);
            let to = self.messages.join(&w.id);
            nix::fcntl::renameat2(
                nix::fcntl::AT_FDCWD,
                &from,
                nix::fcntl::AT_FDCWD,
                &to,
                nix::fcntl::RenameFlags::RENAME_NOREPLACE,
            )
            .map_err(io::Error::from)?;
            self.messages_sync.sync()
        })();
        if result.is_err() {
            let _ = fs::remove_file(self.incoming.join(&w.id));
        }
        result
    }

    pub fn discard(&self, w: SpoolWriter) {
        let _ = fs::remove_file(self.incoming.join(&w.id));
    }

    /// Writes a whole message (envelope + body) in one go: bounces.
    pub fn submit(&self, env: &QueueEnvelope, body: &[u8]) -> io::Result<()> {
        let mut w = self.create(env)?;
        w.write(body);
        self.commit(w)
    }

    /// At start: drops half-received messages, sets damaged files aside,
    /// and lists what is queued.
    pub fn recover(&self, now: i64) -> io::Result<Recovery> {
        let mut r = Recovery {
            removed_incoming: 0,
            queued: Vec::new(),
            quarantined: Vec::new(),
        };
        for e in fs::read_dir(&self.incoming)? {
            let e = e?;
            fs::remove_file(e.path())?;
            r.removed_incoming += 1;
        }
        let mut ids = Vec::new();
        for e in fs::read_dir(&self.messages)? {
            let name = e?.file_name().to_string_lossy().into_owned();
            if id::is_valid(&name) {
                ids.push(name);
            }
        }
        ids.sort();
        for qid in ids {
            match self.read_envelope(&qid) {
                Ok(_) => {
                    let next = self.load_state(&qid).map(|s| s.next_attempt).unwrap_or(now);
                    r.queued.push((qid, next));
                }
                Err(problem) => {
                    self.quarantine(&qid);
                    r.quarantined.push((qid, problem));
                }
            }
        }
        // State files whose message is gone are leftovers of a removal cut short.
        for e in fs::read_dir(&self.state)? {
            let e = e?;
            let name = e.file_name().to_string_lossy().into_owned();
            if id::is_valid(&name) && !self.messages.join(&name).exists() {
                let _ = fs::remove_file(e.path());
            }
        }
        Ok(r)
    }

    fn read_envelope(&self, qid: &str) -> Result<QueueEnvelope, String> {
        let mut f = File::open(self.messages.join(qid)).map_err(|e| e.to_string())?;
        let head = read_head(&mut f).map_err(|e| e.to_string())?;
        let (env, _) = QueueEnvelope::parse(&head)?;
        if env.id != qid {
            return Err(format!("file name {qid} does not match its id {}", env.id));
        }
        Ok(env)
    }

    pub fn open_message(&self, qid: &str) -> Result<QueuedMessage, OpenError> {
        let mut f = match File::open(self.messages.join(qid)) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(OpenError::NotFound),
            Err(e) => return Err(OpenError::Io(e)),
        };
        let len = f.metadata().map_err(OpenError::Io)?.len();
        let head = read_head(&mut f).map_err(OpenError::Io)?;
        let (env, off) = QueueEnvelope::parse(&head).map_err(OpenError::Corrupt)?;
        if env.id != qid {
            return Err(OpenError::Corrupt(format!(
                "file name {qid} does not match its id {}",
                env.id
            )));
        }
        Ok(QueuedMessage {
            env,
            file: f,
            body_offset: off as u64,
            body_len: len - off as u64,
            start: head[off..].to_vec(),
        })
    }

    pub fn load_state(&self, qid: &str) -> Result<DeliveryState, String> {
        match fs::read_to_string(self.state.join(qid)) {
            Ok(text) => DeliveryState::parse(&text),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(DeliveryState::default()),
            Err(e) => Err(e.to_string()),
        }
    }

    pub fn save_state(&self, qid: &str, st: &DeliveryState) -> io::Result<()> {
        fsutil::write_durable(&self.state, qid, st.serialize().as_bytes(), 0o600)
    }

    /// Removes a finished message. The state goes first: a state file
    /// without its message is cleaned up at start, a message without its
    /// state is simply retried (and its Maildir copies recognised).
    /// `with_state`: a state file may exist (the message was tried before).
    pub fn remove(&self, qid: &str, with_state: bool) -> io::Result<()> {
        if with_state {
            match fs::remove_file(self.state.join(qid)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        fs::remove_file(self.messages.join(qid))
    }

    /// Moves a damaged queue file out of the way, keeping it for a human.
    pub fn quarantine(&self, qid: &str) {
        let _ = fs::rename(self.messages.join(qid), self.corrupt.join(qid));
        let _ = fs::remove_file(self.state.join(qid));
    }

    /// IDs of all accepted messages, oldest first.
    pub fn list(&self) -> io::Result<Vec<String>> {
        let mut ids: Vec<String> = fs::read_dir(&self.messages)?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| id::is_valid(n))
            .collect();
        ids.sort();
        Ok(ids)
    }
}

/// The start of a queue file, at least up to the end of its envelope
/// header (`\n.\n`), or all of it if shorter; at most 1 MiB.
fn read_head(f: &mut File) -> io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(8192);
    let mut chunk = [0u8; 8192];
    loop {
        let n = f.read(&mut chunk)?;
        let searched = head.len().saturating_sub(2);
        head.extend_from_slice(&chunk[..n]);
        if n == 0 || head.len() >= 1 << 20 || head[searched..].windows(3).any(|w| w == b"\n.\n") {
            return Ok(head);
        }
    }
}

impl SpoolWriter {
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Appends message bytes. The first error is kept and reported at
    /// commit; later writes are skipped.
    pub fn write(&mut self, bytes: &[u8]) {
        if self.error.is_none() {
            if let Err(e) = self.file.write_all(bytes) {
                self.error = Some(e);
            }
        }
    }

    pub fn failed(&self) -> Option<&io::Error> {
        self.error.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::header_end;

    #[test]
    fn header_section_ends_at_the_first_empty_line() {
        assert_eq!(header_end(b"A: 1\nB: 2\n\nbody\n\n"), Some(10));
        assert_eq!(header_end(b"\nbody only"), Some(0));
        assert_eq!(header_end(b"A: 1\nB: 2\n"), None);
    }
}
