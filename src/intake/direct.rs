//! The direct road: a message written straight into its Maildirs while it
//! is received, durable before the 250, with no queue file.
//!
//! While DATA streams in, the bytes go into the first destination's
//! `tmp/` file. At the end of data: loop checks on the header section;
//! the other copies are made from the first (their own `Return-Path:` and
//! `Delivered-To:`, the same message); every copy is fsynced; each is
//! linked into its `new/`; each `new/` is fsynced (shared with concurrent
//! sessions). A single-recipient message costs one file fsync and a share
//! of one directory fsync.
//!
//! Falling back to the queue: a write error while receiving moves what was
//! written so far, and the rest, into a queue file; a loop, or a failure
//! before any link, queues the whole message; a failure after some links
//! queues it with the linked copies recorded as done in its state file, so
//! the runner delivers only the others. Crash safety: before the 250
//! nothing is promised; a kill after some links and before the 250 leaves
//! those copies, and the client (who saw no 250) sends the message again.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::sync::Arc;

use super::{Committed, Local};
use crate::deliver::maildir::{CopyId, MaildirAgent, TmpFile};
use crate::log;
use crate::queue::envelope::{DeliveryState, QueueEnvelope};
use crate::queue::spool::{header_end, Spool, SpoolWriter, HEADER_LIMIT};

/// A copy that landed, for the log.
#[derive(Clone, Debug)]
pub struct Copy {
    pub address: String,
    pub orig: String,
    pub text: String,
}

pub struct Writer {
    maildir: Arc<MaildirAgent>,
    env: QueueEnvelope,
    locals: Vec<Local>,
    /// The first destination's file, until a fallback to the queue.
    first: Option<TmpFile>,
    /// Length of the first copy's head (Return-Path, Delivered-To).
    head0: u64,
    /// That head, until it is written with the first message bytes (one
    /// write instead of two for a small message).
    head: Option<Vec<u8>>,
    /// Message bytes written into `first`.
    body_len: u64,
    /// The header section, for the loop checks.
    headers: Vec<u8>,
    headers_done: bool,
    /// After a write error: the queue file that took over.
    queued: Option<SpoolWriter>,
    /// A failure that leaves the message nowhere (reported at commit).
    error: Option<io::Error>,
}

impl Writer {
    /// Creates the first copy's file in `tmp/` and writes its head.
    pub(super) fn start(
        maildir: Arc<MaildirAgent>,
        env: QueueEnvelope,
        locals: Vec<Local>,
    ) -> io::Result<Writer> {
        let l = &locals[0];
        let name = maildir.tmp_name(&copy_id(&env, l));
        let first = maildir.create(&l.route, &name)?;
        let head = MaildirAgent::head(&env.sender.to_string(), &l.address);
        Ok(Writer {
            maildir,
            env,
            locals,
            first: Some(first),
            head0: head.len() as u64,
            head: Some(head.into_bytes()),
            body_len: 0,
            headers: Vec::new(),
            headers_done: false,
            queued: None,
            error: None,
        })
    }

    pub fn id(&self) -> &str {
        &self.env.id
    }

    pub fn failed(&self) -> Option<&io::Error> {
        self.error
            .as_ref()
            .or_else(|| self.queued.as_ref().and_then(|q| q.failed()))
    }

    pub(super) fn write(&mut self, spool: &Spool, bytes: &[u8]) {
        if self.error.is_some() {
            return;
        }
        if let Some(q) = self.queued.as_mut() {
            q.write(bytes);
            return;
        }
        self.keep_headers(bytes);
        let first = self.first.as_mut().expect("direct writer has its file");
        let written = match self.head.take() {
            Some(mut head) => {
                head.extend_from_slice(bytes);
                first.file.write_all(&head)
            }
            None => first.file.write_all(bytes),
        };
        match written {
            Ok(()) => self.body_len += bytes.len() as u64,
            Err(_) => self.switch_to_queue(spool, bytes),
        }
    }

    fn keep_headers(&mut self, bytes: &[u8]) {
        if self.headers_done {
            return;
        }
        let room = HEADER_LIMIT.saturating_sub(self.headers.len());
        self.headers
            .extend_from_slice(&bytes[..bytes.len().min(room)]);
        if let Some(end) = header_end(&self.headers) {
            self.headers.truncate(end);
            self.headers_done = true;
        } else if self.headers.len() >= HEADER_LIMIT {
            self.headers_done = true;
        }
    }

    /// A Maildir write failed mid-message: the queue takes over, with
    /// what was written so far and `pending`.
    fn switch_to_queue(&mut self, spool: &Spool, pending: &[u8]) {
        let first = self.first.take().expect("direct writer has its file");
        let moved = (|| {
            let mut q = spool.create(&self.env)?;
            copy_body(&first.file, self.head0, self.body_len, &mut |b| {
                q.write(b);
                Ok(())
            })?;
            q.write(pending);
            Ok::<_, io::Error>(q)
        })();
        first.remove();
        match moved {
            Ok(q) => self.queued = Some(q),
            Err(e) => self.error = Some(e),
        }
    }

    /// The message must go through the queue after all (a body rule said
    /// HOLD, FILTER, REDIRECT or BCC): what was written moves into a queue
    /// file with the envelope changed by `change`.
    pub(super) fn divert(&mut self, spool: &Spool, change: &dyn Fn(&mut QueueEnvelope)) {
        change(&mut self.env);
        match self.queued.take() {
            Some(q) => match spool.rewrite_envelope(q, &|e| *e = self.env.clone()) {
                Ok(q) => self.queued = Some(q),
                Err(e) => self.error = Some(e),
            },
            None if self.error.is_none() => {
                // Not yet written, the Maildir head is not the queue's.
                self.head = None;
                self.switch_to_queue(spool, &[]);
            }
            None => {}
        }
    }

    /// The queue file that took over, if one did.
    pub(super) fn take_queued(&mut self) -> Option<SpoolWriter> {
        self.queued.take()
    }

    pub(super) fn discard(mut self, spool: &Spool) {
        if let Some(f) = self.first.take() {
            f.remove();
        }
        if let Some(q) = self.queued.take() {
            spool.discard(q);
        }
    }

    pub(super) fn commit(mut self, spool: &Spool, max_received: usize) -> io::Result<Committed> {
        if let Some(e) = self.error.take() {
            self.discard(spool);
            return Err(e);
        }
        if let Some(q) = self.queued.take() {
            return spool.commit(q).map(|()| Committed::Queued);
        }
        if self.head.is_some() {
            // No message bytes came at all (the session always sends its
            // Received: line, but be safe): the head alone.
            self.write(spool, &[]);
            if let Some(q) = self.queued.take() {
                return spool.commit(q).map(|()| Committed::Queued);
            }
        }
        if self.looping(max_received) {
            // The runner bounces the looping destinations and delivers the rest.
            return self.queue_rest(spool, &[]);
        }
        // The first copy is on disk already; the others are still to come.
        let total = self.head0 + self.body_len;
        let short = self.locals.iter().enumerate().any(|(i, l)| {
            !self
                .maildir
                .has_room(&l.route, if i == 0 { 0 } else { total })
        });
        // Below the reserve, or a mailbox over its quota: the queue keeps
        // it (and bounces or defers what is over quota, as configured).
        let over = self
            .locals
            .iter()
            .any(|l| !matches!(self.maildir.quota_check(&l.route, total), Ok(Ok(()))));
        if short || over {
            return self.queue_rest(spool, &[]);
        }
        let others = match self.write_copies() {
            Ok(files) => files,
            Err(_) => return self.queue_rest(spool, &[]),
        };
        let size0 = self.head0 + self.body_len;
        let name0 = self
            .maildir
            .name(&copy_id(&self.env, &self.locals[0]), size0);
        let first = self.first.as_ref().expect("direct writer has its file");
        let files: Vec<(&TmpFile, &str, u64)> = std::iter::once((first, name0.as_str(), size0))
            .chain(others.iter().map(|(t, n, z)| (t, n.as_str(), *z)))
            .collect();
        let mut landed = Vec::new();
        for (i, (tmp, name, size)) in files.iter().enumerate() {
            let route = &self.locals[i].route;
            if self.maildir.publish(route, tmp, name, *size).is_ok() {
                landed.push(i);
            }
        }
        landed.retain(|&i| self.sync_landed(i, files[i].1));
        let names: Vec<String> = files.iter().map(|(_, n, _)| n.to_string()).collect();
        drop(files);
        drop(others);
        if landed.len() < self.locals.len() {
            return self.queue_rest(spool, &landed);
        }
        let copies = self
            .locals
            .iter()
            .zip(names)
            .map(|(l, name)| Copy {
                address: l.address.clone(),
                orig: l.orig.clone(),
                text: format!("delivered to maildir as {name}"),
            })
            .collect();
        // publish() linked every copy and removed any tmp/ name.
        self.first = None;
        for l in &self.locals {
            let size = MaildirAgent::head(&self.env.sender.to_string(), &l.address).len() as u64
                + self.body_len;
            self.maildir.quota_add(&l.route, size);
        }
        Ok(Committed::Delivered(copies))
    }

    /// Hop count and our own Delivered-To:, as the runner checks them.
    fn looping(&self, max_received: usize) -> bool {
        let (received, delivered_to) = crate::queue::runner::scan_headers(&self.headers);
        let hops = (received + delivered_to.len()).max(self.env.handling.hops as usize);
        hops >= max_received
            || self.locals.iter().any(|l| {
                delivered_to
                    .iter()
                    .any(|d| d.eq_ignore_ascii_case(&l.address))
            })
    }

    /// The copies after the first, complete and fsynced (and the first
    /// fsynced too): (file, final name, size).
    fn write_copies(&mut self) -> io::Result<Vec<(TmpFile, String, u64)>> {
        let mut files: Vec<(TmpFile, String, u64)> = Vec::new();
        let result = (|| {
            let first = self.first.as_ref().expect("direct writer has its file");
            for l in &self.locals[1..] {
                let head = MaildirAgent::head(&self.env.sender.to_string(), &l.address);
                let size = head.len() as u64 + self.body_len;
                let name = self.maildir.name(&copy_id(&self.env, l), size);
                let tmp = self.maildir.create(&l.route, &name)?;
                files.push((tmp, name, size));
                let tmp = &mut files.last_mut().expect("just pushed").0;
                tmp.file.write_all(head.as_bytes())?;
                copy_body(&first.file, self.head0, self.body_len, &mut |b| {
                    tmp.file.write_all(b)
                })?;
                tmp.file.sync_data()?;
            }
            first.file.sync_data()?;
            Ok(())
        })();
        match result {
            Ok(()) => Ok(files),
            Err(e) => {
                for (tmp, _, _) in &files {
                    tmp.remove();
                }
                Err(e)
            }
        }
    }

    /// Syncs the `new/` of a linked copy; on failure takes the copy back
    /// (it may not survive a crash) and reports it as not landed.
    fn sync_landed(&self, i: usize, name: &str) -> bool {
        let route = &self.locals[i].route;
        match self.maildir.sync_new(route) {
            Ok(()) => true,
            Err(_) => {
                let _ = std::fs::remove_file(route.path.join("new").join(name));
                false
            }
        }
    }

    /// Queues the message; the copies in `landed` are recorded as done.
    fn queue_rest(mut self, spool: &Spool, landed: &[usize]) -> io::Result<Committed> {
        let mut state = DeliveryState::default();
        for &i in landed {
            state.done.insert(self.locals[i].key.clone());
        }
        let first = self.first.take().expect("direct writer has its file");
        let mut body = body_reader(&first.file, self.head0, self.body_len)?;
        let r = spool.submit_with_state(&self.env, &mut body, &state);
        first.remove();
        if let Err(e) = &r {
            if !landed.is_empty() {
                log::queue_problem(
                    &self.env.id,
                    &format!(
                        "{} copies were delivered, but the others could not be queued: {e}",
                        landed.len()
                    ),
                );
            }
        }
        r.map(|()| Committed::Queued)
    }
}

fn copy_id(env: &QueueEnvelope, l: &Local) -> CopyId {
    CopyId {
        arrival_micros: env.arrival_micros,
        pid: env.pid,
        index: l.index,
    }
}

/// A reader over the message bytes of the first copy's file.
fn body_reader(f: &File, head: u64, len: u64) -> io::Result<io::Take<File>> {
    let mut f = f.try_clone()?;
    f.seek(SeekFrom::Start(head))?;
    Ok(f.take(len))
}

/// Feeds the message bytes of the first copy's file to `out`.
fn copy_body(
    f: &File,
    head: u64,
    len: u64,
    out: &mut dyn FnMut(&[u8]) -> io::Result<()>,
) -> io::Result<()> {
    let mut r = body_reader(f, head, len)?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            break;
        }
        total += n as u64;
        out(&buf[..n])?;
    }
    if total != len {
        return Err(io::Error::other("message file shorter than written"));
    }
    Ok(())
}
