//! An accepted message opened for delivery: its envelope, its header
//! section (read once, with the envelope) and a reader over its bytes.
//!
//! The file is opened again for each reader, so a message waiting for a
//! busy agent holds no file descriptor, and several agents may read one
//! message at the same time (a Maildir copy on a blocking thread while the
//! SMTP agent streams it to a relay).

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::PathBuf;

use crate::queue::envelope::QueueEnvelope;

pub struct QueuedMessage {
    pub env: QueueEnvelope,
    path: PathBuf,
    body_offset: u64,
    pub body_len: u64,
    /// The header section (LF line ends, without the empty line), at most
    /// [`HEADER_LIMIT`] bytes.
    headers: Vec<u8>,
}

/// Header bytes kept for loop checks, header rules and bounces.
pub const HEADER_LIMIT: usize = 256 * 1024;

/// Reads the message bytes (after the envelope header) from the start.
pub type BodyReader = io::Take<File>;

impl QueuedMessage {
    /// `head`: the start of the file, read with the envelope; `off`: where
    /// the message starts in it.
    pub(super) fn new(
        env: QueueEnvelope,
        path: PathBuf,
        file: File,
        len: u64,
        head: &[u8],
        off: usize,
    ) -> io::Result<QueuedMessage> {
        let body_offset = off as u64;
        let body_len = len - body_offset;
        let headers = match header_end(&head[off..]).filter(|&e| e <= HEADER_LIMIT) {
            // Usually the whole header section came in with the envelope.
            Some(end) => head[off..off + end].to_vec(),
            None => read_headers(&mut body_of(file, body_offset, body_len)?, HEADER_LIMIT)?,
        };
        Ok(QueuedMessage {
            env,
            path,
            body_offset,
            body_len,
            headers,
        })
    }

    /// A reader over the message bytes (opens the queue file).
    pub fn body(&self) -> io::Result<BodyReader> {
        body_of(File::open(&self.path)?, self.body_offset, self.body_len)
    }

    /// The queue file and where the message starts in it.
    pub fn location(&self) -> (PathBuf, u64) {
        (self.path.clone(), self.body_offset)
    }

    /// The header section, LF line ends, without the empty line.
    pub fn headers(&self) -> &[u8] {
        &self.headers
    }
}

fn body_of(mut f: File, offset: u64, len: u64) -> io::Result<BodyReader> {
    f.seek(SeekFrom::Start(offset))?;
    Ok(f.take(len))
}

/// Length of the header section at the start of `m` (up to, not with,
/// the empty line), if that empty line is in `m`.
pub fn header_end(m: &[u8]) -> Option<usize> {
    if m.first() == Some(&b'\n') {
        return Some(0);
    }
    m.windows(2).position(|w| w == b"\n\n").map(|i| i + 1)
}

/// Reads whole header lines up to the empty line or `limit` bytes.
fn read_headers(r: &mut impl Read, limit: usize) -> io::Result<Vec<u8>> {
    let mut r = io::BufReader::new(r);
    let mut out = Vec::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        if io::BufRead::read_until(&mut r, b'\n', &mut line)? == 0
            || line == b"\n"
            || out.len() + line.len() > limit
        {
            return Ok(out);
        }
        out.extend_from_slice(&line);
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
