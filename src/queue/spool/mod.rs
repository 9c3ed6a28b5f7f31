//! The spool: the only code that builds queue paths or touches queue files.
//!
//! Layout under the queue directory:
//! ```text
//! lock          flock()ed by the one postern that owns this queue; holds its pid
//! incoming/ID   a message being received; never delivered; removed at start
//! messages/ID   an accepted message: envelope header + message (see envelope.rs)
//! hold/ID       an accepted message put on hold (`postern queue hold`): kept,
//!               never delivered until released; survives restarts
//! state/ID      delivery state, only for messages that stayed queued
//! corrupt/ID    queue files that could not be read, set aside for a human
//! done/ID       finished queue files: unlinked by a thread of their own, or
//!               kept a while to be written over by new messages (reaper.rs);
//!               emptied at start
//! ```
//! Acceptance ("250 queued") happens only after: the file is written and
//! fsynced in incoming/, renamed into messages/ without replacing anything
//! (`publish`), and messages/ is fsynced. A message in messages/ is therefore complete; one
//! in incoming/ never is.

mod inspect;
mod message;
mod reaper;

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::envelope::{DeliveryState, QueueEnvelope};
use super::id;
use crate::fsutil::{self, DirSync};

pub use inspect::Entry;
pub use message::{header_end, BodyReader, QueuedMessage, HEADER_LIMIT};

pub struct Spool {
    incoming: PathBuf,
    messages: PathBuf,
    hold: PathBuf,
    state: PathBuf,
    corrupt: PathBuf,
    /// Finished messages, until the reaper unlinks them (reaper.rs).
    done: PathBuf,
    reaper: reaper::Reaper,
    messages_sync: DirSync,
    _lock: Option<nix::fcntl::Flock<File>>,
}

/// A message being received.
pub struct SpoolWriter {
    id: String,
    file: BufWriter<File>,
    error: Option<io::Error>,
    /// Bytes written so far.
    len: u64,
    /// The length of the finished file this one was written over (0 for
    /// a new file): what lies past `len` is cut off at commit.
    reused: u64,
}

pub struct Recovery {
    pub removed_incoming: usize,
    /// Queued messages with the Unix time of their next attempt.
    pub queued: Vec<(String, i64)>,
    pub held: usize,
    pub quarantined: Vec<(String, String)>,
}

#[derive(Debug)]
pub enum OpenError {
    NotFound,
    Corrupt(String),
    Io(io::Error),
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpenError::NotFound => f.write_str("no such message in the queue"),
            OpenError::Corrupt(p) => write!(f, "damaged queue file: {p}"),
            OpenError::Io(e) => write!(f, "{e}"),
        }
    }
}

/// Where an accepted message sits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Place {
    /// messages/: waiting for (or in) delivery.
    Queued,
    /// hold/: kept until released.
    Held,
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

    /// Is there a queue at `root` (for tools that must not create one)?
    pub fn exists(root: &Path) -> bool {
        root.join("messages").is_dir()
    }

    /// For tools that only read the queue while a server may be running.
    pub fn open_unlocked(root: &Path) -> io::Result<Spool> {
        let s = Spool {
            incoming: root.join("incoming"),
            messages: root.join("messages"),
            hold: root.join("hold"),
            state: root.join("state"),
            corrupt: root.join("corrupt"),
            done: root.join("done"),
            reaper: reaper::Reaper::new(root.join("done")),
            messages_sync: DirSync::new(root.join("messages")),
            _lock: None,
        };
        for d in [
            root,
            &s.incoming,
            &s.messages,
            &s.hold,
            &s.state,
            &s.corrupt,
            &s.done,
        ] {
            fsutil::ensure_dir(d, 0o700)?;
        }
        Ok(s)
    }

    /// Starts a message: creates incoming/ID and writes the envelope.
    /// The file is a finished one from done/ when there is a spare (see
    /// reaper.rs), written over from its start.
    pub fn create(&self, env: &QueueEnvelope) -> io::Result<SpoolWriter> {
        let path = self.incoming.join(&env.id);
        let (f, reused) = match self.reuse(&path) {
            Some(spare) => spare,
            None => (
                OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path)?,
                0,
            ),
        };
        let mut w = SpoolWriter {
            id: env.id.clone(),
            file: BufWriter::with_capacity(32 * 1024, f),
            error: None,
            len: 0,
            reused,
        };
        w.write(env.serialize().as_bytes());
        Ok(w)
    }

    /// A spare from done/ renamed to `path` (never over an existing
    /// file) and opened for writing, with its length; None when there is
    /// none or it is not a plain file of ours with one name.
    fn reuse(&self, path: &Path) -> Option<(File, u64)> {
        use std::os::unix::fs::MetadataExt;
        let name = self.reaper.take_spare()?;
        if fsutil::rename_noreplace(&self.done.join(&name), path).is_err() {
            self.reaper.unlink_later(name);
            return None;
        }
        let opened = OpenOptions::new()
            .write(true)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(path)
            .and_then(|f| f.metadata().map(|m| (f, m)));
        match opened {
            Ok((f, m))
                if m.is_file() && m.nlink() == 1 && m.uid() == nix::unistd::geteuid().as_raw() =>
            {
                Some((f, m.len()))
            }
            _ => {
                let _ = fs::remove_file(path);
                None
            }
        }
    }

    /// Makes a received message durable and visible to delivery. Blocking.
    pub fn commit(&self, w: SpoolWriter) -> io::Result<()> {
        self.commit_to(w, false)
    }

    /// The same into hold/ (a HOLD rule): durable, delivered only when
    /// released.
    pub fn commit_held(&self, w: SpoolWriter) -> io::Result<()> {
        self.commit_to(w, true)
    }

    /// A message being received gets another envelope (a body rule
    /// changed its recipients or its filter): the bytes so far are copied
    /// behind the new one, in a file that replaces the old. Blocking.
    pub fn rewrite_envelope(
        &self,
        mut w: SpoolWriter,
        change: &dyn Fn(&mut QueueEnvelope),
    ) -> io::Result<SpoolWriter> {
        let path = self.incoming.join(&w.id);
        let result = (|| {
            if let Some(e) = w.error.take() {
                return Err(e);
            }
            w.file.flush()?;
            // A reused file holds an older message past what was written.
            let mut old = File::open(&path)?.take(w.len);
            let head = read_head(old.get_mut())?;
            let (mut env, off) = QueueEnvelope::parse(&head).map_err(io::Error::other)?;
            change(&mut env);
            old.get_mut().seek(std::io::SeekFrom::Start(off as u64))?;
            old.set_limit(w.len.saturating_sub(off as u64));
            let aside = self.incoming.join(format!("{}.new", w.id));
            let f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&aside)?;
            let mut file = BufWriter::with_capacity(32 * 1024, f);
            let envelope = env.serialize();
            let copied = file
                .write_all(envelope.as_bytes())
                .and_then(|()| io::copy(&mut old, &mut file))
                .and_then(|n| fs::rename(&aside, &path).map(|()| n));
            match copied {
                Ok(n) => Ok(SpoolWriter {
                    id: w.id.clone(),
                    file,
                    error: None,
                    len: envelope.len() as u64 + n,
                    reused: 0,
                }),
                Err(e) => {
                    let _ = fs::remove_file(&aside);
                    Err(e)
                }
            }
        })();
        if result.is_err() {
            let _ = fs::remove_file(&path);
        }
        result
    }

    fn commit_to(&self, mut w: SpoolWriter, held: bool) -> io::Result<()> {
        let from = self.incoming.join(&w.id);
        let result = (|| {
            if let Some(e) = w.error.take() {
                return Err(e);
            }
            w.file.flush()?;
            if w.len < w.reused {
                w.file.get_ref().set_len(w.len)?;
            }
            w.file.get_ref().sync_data()?;
            if held {
                publish(&from, &self.hold.join(&w.id))?;
                return fsutil::fsync_dir(&self.hold);
            }
            publish(&from, &self.messages.join(&w.id))?;
            self.messages_sync.sync()
        })();
        if result.is_err() {
            let _ = fs::remove_file(&from);
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

    /// Queues a message some of whose destinations are already finished
    /// (`state.done`): the state goes first, so the message is never seen
    /// without it. A state left alone by a crash is removed at start.
    pub fn submit_with_state(
        &self,
        env: &QueueEnvelope,
        body: &mut dyn Read,
        state: &DeliveryState,
    ) -> io::Result<()> {
        let mut w = self.create(env)?;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = body.read(&mut buf)?;
            if n == 0 {
                break;
            }
            w.write(&buf[..n]);
        }
        if !state.done.is_empty() {
            if let Err(e) = self.save_state(&env.id, state) {
                self.discard(w);
                return Err(e);
            }
        }
        let r = self.commit(w);
        if r.is_err() {
            let _ = fs::remove_file(self.state.join(&env.id));
        }
        r
    }

    /// At start: drops half-received messages, sets damaged files aside,
    /// and lists what is queued.
    pub fn recover(&self, now: i64) -> io::Result<Recovery> {
        let mut r = Recovery {
            removed_incoming: 0,
            queued: Vec::new(),
            held: 0,
            quarantined: Vec::new(),
        };
        for e in fs::read_dir(&self.incoming)? {
            let e = e?;
            fs::remove_file(e.path())?;
            r.removed_incoming += 1;
        }
        // Finished messages the reaper had not unlinked yet, and spares.
        self.reaper.forget_spares();
        for e in fs::read_dir(&self.done)? {
            fs::remove_file(e?.path())?;
        }
        for qid in ids_in(&self.messages)? {
            if self.hold.join(&qid).exists() {
                let _ = fs::remove_file(self.messages.join(&qid));
                continue;
            }
            match self.read_envelope(&self.messages, &qid) {
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
        r.held = ids_in(&self.hold)?.len();
        // State files whose message is gone are leftovers of a removal cut short.
        for qid in ids_in(&self.state)? {
            if !self.messages.join(&qid).exists() && !self.hold.join(&qid).exists() {
                let _ = fs::remove_file(self.state.join(&qid));
            }
        }
        Ok(r)
    }

    fn read_envelope(&self, dir: &Path, qid: &str) -> Result<QueueEnvelope, String> {
        let mut f = File::open(dir.join(qid)).map_err(|e| e.to_string())?;
        let head = read_head(&mut f).map_err(|e| e.to_string())?;
        let (env, _) = QueueEnvelope::parse(&head)?;
        if env.id != qid {
            return Err(format!("file name {qid} does not match its id {}", env.id));
        }
        Ok(env)
    }

    /// Opens a queued message (in messages/) for delivery.
    pub fn open_message(&self, qid: &str) -> Result<QueuedMessage, OpenError> {
        if !id::is_valid(qid) {
            return Err(OpenError::NotFound);
        }
        let path = self.messages.join(qid);
        let (f, len, head) = open_head(&path)?;
        let (env, off) = QueueEnvelope::parse(&head).map_err(OpenError::Corrupt)?;
        if env.id != qid {
            return Err(OpenError::Corrupt(format!(
                "file name {qid} does not match its id {}",
                env.id
            )));
        }
        QueuedMessage::new(env, path, f, len, &head, off).map_err(OpenError::Io)
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
    /// The queue file leaves messages/ at once, into done/, and is
    /// unlinked there off the caller's thread (see reaper.rs).
    pub fn remove(&self, qid: &str, with_state: bool) -> io::Result<()> {
        if with_state {
            match fs::remove_file(self.state.join(qid)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        match fs::rename(self.messages.join(qid), self.done.join(qid)) {
            Ok(()) => {
                let len = fs::symlink_metadata(self.done.join(qid)).map_or(u64::MAX, |m| m.len());
                self.reaper.finished(qid.to_string(), len);
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(e),
            // done/ unusable (removed under us, say): unlink in place.
            Err(_) => fs::remove_file(self.messages.join(qid)),
        }
    }

    /// Moves a damaged queue file out of the way, keeping it for a human.
    pub fn quarantine(&self, qid: &str) {
        let _ = fs::rename(self.messages.join(qid), self.corrupt.join(qid));
        let _ = fs::remove_file(self.state.join(qid));
    }

    /// IDs of all queued (not held) messages, oldest first.
    pub fn list(&self) -> io::Result<Vec<String>> {
        ids_in(&self.messages)
    }

    /// Messages on hold (0 when the directory cannot be read).
    pub fn held_count(&self) -> usize {
        ids_in(&self.hold).map(|v| v.len()).unwrap_or(0)
    }

    /// messages/ID → hold/ID, durably.
    pub fn hold(&self, qid: &str) -> Result<(), OpenError> {
        self.move_between(&self.messages, &self.hold, qid)
    }

    /// hold/ID → messages/ID, durably.
    pub fn release(&self, qid: &str) -> Result<(), OpenError> {
        self.move_between(&self.hold, &self.messages, qid)
    }

    fn move_between(&self, from: &Path, to: &Path, qid: &str) -> Result<(), OpenError> {
        if !id::is_valid(qid) {
            return Err(OpenError::NotFound);
        }
        match fs::hard_link(from.join(qid), to.join(qid)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(OpenError::NotFound),
            Err(e) => return Err(OpenError::Io(e)),
        }
        // Both names exist for a moment; a crash here leaves it in both
        // places, which recovery resolves in favour of hold/ (a message an
        // operator held is never delivered against their will; one being
        // released stays held and can be released again).
        fsutil::fsync_dir(to).map_err(OpenError::Io)?;
        fs::remove_file(from.join(qid)).map_err(OpenError::Io)?;
        fsutil::fsync_dir(from).map_err(OpenError::Io)
    }

    /// Deletes an accepted message, queued or held, with its state.
    pub fn delete(&self, qid: &str) -> Result<(), OpenError> {
        let place = self.place(qid).ok_or(OpenError::NotFound)?;
        match fs::remove_file(self.state.join(qid)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(OpenError::Io(e)),
            _ => {}
        }
        let dir = match place {
            Place::Queued => &self.messages,
            Place::Held => &self.hold,
        };
        fs::remove_file(dir.join(qid)).map_err(OpenError::Io)?;
        fsutil::fsync_dir(dir).map_err(OpenError::Io)
    }
}

/// incoming/ID → `to`, never over an existing entry: one rename where
/// the kernel and filesystem know RENAME_NOREPLACE, else link(2) and
/// unlink (a crash between them leaves a name in incoming/, which the
/// next start removes).
fn publish(from: &Path, to: &Path) -> io::Result<()> {
    use nix::libc::{EINVAL, ENOSYS};
    match fsutil::rename_noreplace(from, to) {
        Err(e) if matches!(e.raw_os_error(), Some(EINVAL | ENOSYS)) => {
            fs::hard_link(from, to)?;
            let _ = fs::remove_file(from);
            Ok(())
        }
        r => r,
    }
}

/// Valid queue IDs among the names in `dir`, sorted (oldest first).
fn ids_in(dir: &Path) -> io::Result<Vec<String>> {
    let mut ids: Vec<String> = fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| id::is_valid(n))
        .collect();
    ids.sort();
    Ok(ids)
}

/// A queue file opened for reading, with its length and its head (see
/// `read_head`); a missing one is NotFound.
fn open_head(path: &Path) -> Result<(File, u64, Vec<u8>), OpenError> {
    let mut f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(OpenError::NotFound),
        Err(e) => return Err(OpenError::Io(e)),
    };
    let len = f.metadata().map_err(OpenError::Io)?.len();
    let head = read_head(&mut f).map_err(OpenError::Io)?;
    Ok((f, len, head))
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
            match self.file.write_all(bytes) {
                Ok(()) => self.len += bytes.len() as u64,
                Err(e) => self.error = Some(e),
            }
        }
    }

    pub fn failed(&self) -> Option<&io::Error> {
        self.error.as_ref()
    }
}

#[cfg(test)]
mod tests;
