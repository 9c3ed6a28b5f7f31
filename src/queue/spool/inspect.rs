//! Reading accepted messages for tools (`postern queue list|show`), which
//! may run beside a live server: a message can finish, and its file be
//! written over by a new one, between the listing and the read.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use super::{id, ids_in, open_head, OpenError, Place, QueuedMessage, Spool};
use crate::queue::envelope::{DeliveryState, QueueEnvelope};

/// A message's envelope and size, for `postern queue list|show`.
pub struct Entry {
    pub env: QueueEnvelope,
    pub place: Place,
    /// Bytes of the message (without the envelope header).
    pub size: u64,
    pub state: Result<DeliveryState, String>,
}

impl Spool {
    /// IDs of queued and held messages, oldest first.
    pub fn list_all(&self) -> io::Result<Vec<(String, Place)>> {
        let mut v: Vec<(String, Place)> = ids_in(&self.messages)?
            .into_iter()
            .map(|i| (i, Place::Queued))
            .chain(ids_in(&self.hold)?.into_iter().map(|i| (i, Place::Held)))
            .collect();
        v.sort();
        Ok(v)
    }

    /// Where `qid` is, if it is an accepted message.
    pub fn place(&self, qid: &str) -> Option<Place> {
        if !id::is_valid(qid) {
            None
        } else if self.messages.join(qid).exists() {
            Some(Place::Queued)
        } else if self.hold.join(qid).exists() {
            Some(Place::Held)
        } else {
            None
        }
    }

    /// Envelope, size and state of an accepted message, queued or held.
    pub fn entry(&self, qid: &str) -> Result<Entry, OpenError> {
        let o = self.open_accepted(qid)?;
        Ok(self.entry_of(qid, &o))
    }

    /// Its entry and header section (for `queue show`), from one opening
    /// of its file.
    pub fn shown(&self, qid: &str) -> Result<(Entry, Vec<u8>), OpenError> {
        let o = self.open_accepted(qid)?;
        let entry = self.entry_of(qid, &o);
        let m = QueuedMessage::new(o.env, o.path, o.file, o.len, &o.head, o.off)
            .map_err(OpenError::Io)?;
        Ok((entry, m.headers().to_vec()))
    }

    fn entry_of(&self, qid: &str, o: &Opened) -> Entry {
        Entry {
            size: o.len.saturating_sub(o.off as u64),
            env: o.env.clone(),
            place: o.place,
            state: self.load_state(qid),
        }
    }

    /// An accepted message opened for reading (tools that read the queue
    /// of a running server). Its file may be finished and written over by
    /// a new message (see reaper.rs) between the listing and the read:
    /// then the message is gone, not damaged.
    fn open_accepted(&self, qid: &str) -> Result<Opened, OpenError> {
        let place = self.place(qid).ok_or(OpenError::NotFound)?;
        let dir = match place {
            Place::Queued => &self.messages,
            Place::Held => &self.hold,
        };
        let path = dir.join(qid);
        let (file, len, head) = open_head(&path)?;
        let parsed = QueueEnvelope::parse(&head).and_then(|(env, off)| {
            if env.id == qid {
                Ok((env, off))
            } else {
                Err(format!("file name {qid} does not match its id {}", env.id))
            }
        });
        match parsed {
            Ok((env, off)) => Ok(Opened {
                place,
                path,
                file,
                len,
                head,
                env,
                off,
            }),
            Err(_) if !still_named(&path, &file) => Err(OpenError::NotFound),
            Err(why) => Err(OpenError::Corrupt(why)),
        }
    }
}

/// An accepted message's file, open, with what was read of it.
struct Opened {
    place: Place,
    path: PathBuf,
    file: File,
    len: u64,
    head: Vec<u8>,
    env: QueueEnvelope,
    /// Where the message starts, after the envelope.
    off: usize,
}

/// Whether `path` still names the file `f` was opened from (a file
/// finished and reused for another message has moved on).
pub(super) fn still_named(path: &Path, f: &File) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (fs::metadata(path), f.metadata()) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}
