//! The server side of the control socket: accepts connections, checks who
//! is asking, carries out one request each (see mod.rs for the protocol).
//!
//! Commands on a message take it with [`Runner::exclusive`], which waits
//! for a delivery of it in progress to end and keeps new ones from
//! starting meanwhile: a message is never held, deleted or requeued in the
//! middle of a delivery. Spool work runs off the executor.

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use smol::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use smol::net::unix::{UnixListener, UnixStream};
use smol::Executor;

use super::report::{self, Item};
use super::{Refusal, Request, Target, MAX_REQUEST};
use crate::config::Config;
use crate::log;
use crate::queue::runner::Runner;
use crate::queue::spool::{OpenError, Place, Spool};
use crate::sysexits::{EX_IOERR, EX_NOINPUT, EX_NOPERM, EX_TEMPFAIL};

/// The running control socket; removed from the filesystem on drop.
pub struct Handle {
    path: PathBuf,
    _task: smol::Task<()>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

struct Ctx {
    runner: Arc<Runner>,
    spool: Arc<Spool>,
    busy_wait: Duration,
    /// The directory mirror, when a sync source is configured: its last
    /// sync is part of `status`.
    mirror: Option<PathBuf>,
}

/// Who is on the other end (SO_PEERCRED).
#[derive(Clone, Copy, Debug)]
struct Peer {
    uid: u32,
    gid: u32,
    pid: i32,
}

/// Binds the socket and starts serving it on `ex`.
pub fn start(
    cfg: &Config,
    ex: &Arc<Executor<'static>>,
    runner: Arc<Runner>,
    spool: Arc<Spool>,
) -> Result<Handle, String> {
    let path = cfg.control_socket();
    let listener = bind(&path).map_err(|e| format!("control socket {}: {e}", path.display()))?;
    let ctx = Arc::new(Ctx {
        runner,
        spool,
        busy_wait: cfg.control.busy_wait.0,
        mirror: cfg.sync.mysql.as_ref().map(|_| cfg.database_path()),
    });
    let ex2 = ex.clone();
    let task = ex.spawn(async move {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    ex2.spawn(serve_one(ctx.clone(), stream)).detach();
                }
                Err(e) => {
                    log::warning(&format!("control socket: accept: {e}"));
                    smol::Timer::after(Duration::from_millis(100)).await;
                }
            }
        }
    });
    Ok(Handle { path, _task: task })
}

/// The socket, mode 0660 in a directory of mode 0750 (created if missing).
/// A socket left by a crashed server is replaced; any other file is not.
fn bind(path: &Path) -> std::io::Result<UnixListener> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    if let Some(dir) = path.parent() {
        if crate::fsutil::ensure_dir(dir, 0o750)? {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o750))?;
        }
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => std::fs::remove_file(path)?,
        Ok(_) => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "exists and is not a socket",
            ))
        }
        Err(_) => {}
    }
    let l = std::os::unix::net::UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
    Ok(UnixListener::from(smol::Async::new(l)?))
}

fn peer_of(stream: &UnixStream) -> Option<Peer> {
    use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
    let c = getsockopt(&stream.as_fd(), PeerCredentials).ok()?;
    Some(Peer {
        uid: c.uid(),
        gid: c.gid(),
        pid: c.pid(),
    })
}

/// Root, our own user, or a member of our group.
fn allowed(p: &Peer) -> bool {
    let (uid, gid) = (
        nix::unistd::geteuid().as_raw(),
        nix::unistd::getegid().as_raw(),
    );
    p.uid == 0 || p.uid == uid || p.gid == gid || supplementary_groups(p.pid).contains(&gid)
}

/// The peer's supplementary groups, from /proc (empty if unreadable).
fn supplementary_groups(pid: i32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| l.strip_prefix("Groups:")).map(|g| {
                g.split_whitespace()
                    .filter_map(|n| n.parse().ok())
                    .collect()
            })
        })
        .unwrap_or_default()
}

async fn serve_one(ctx: Arc<Ctx>, stream: UnixStream) {
    let Some(peer) = peer_of(&stream) else {
        log::warning("control socket: cannot read the peer's credentials; closed");
        return;
    };
    let who = format!("uid={} pid={}", peer.uid, peer.pid);
    // The request is read in any case (closing on unread bytes would reset
    // the connection before the client reads its answer), but who asks is
    // decided first: a stranger learns nothing, not even what is bad syntax.
    let request = read_request(&stream).await;
    let answer = if !allowed(&peer) {
        log::warning(&format!(
            "control: refused {who}: only root, postern's user and its group may use the control socket"
        ));
        Err(Refusal::new(EX_NOPERM, "permission denied: only root, postern's user and members of its group may control the queue"))
    } else {
        match request {
            Err(text) => {
                log::warning(&format!("control: {who}: {text}"));
                Err(Refusal::new(crate::sysexits::EX_USAGE, text))
            }
            Ok(line) => match Request::parse(&line) {
                Err(r) => {
                    log::warning(&format!("control: {who}: {}", r.text));
                    Err(r)
                }
                Ok(req) => {
                    log::started(&format!("control: {who}: {}", req.to_line()));
                    execute(&ctx, req, &who).await
                }
            },
        }
    };
    let text = match answer {
        Ok(body) => format!("ok\n{body}"),
        Err(r) => format!("error {} {}\n", r.code, r.text.replace('\n', " ")),
    };
    // The client may be gone already; nothing to do about it then.
    let mut s = stream;
    let _ = smol::future::or(
        async {
            let _ = s.write_all(text.as_bytes()).await;
            let _ = s.flush().await;
        },
        async {
            smol::Timer::after(Duration::from_secs(10)).await;
        },
    )
    .await;
}

/// One request line within 10 s and [`MAX_REQUEST`] bytes.
async fn read_request(stream: &UnixStream) -> Result<String, String> {
    let mut r = BufReader::new(stream.clone()).take(MAX_REQUEST as u64 + 1);
    let mut line = Vec::new();
    let read = smol::future::or(
        async { Some(r.read_until(b'\n', &mut line).await) },
        async {
            smol::Timer::after(Duration::from_secs(10)).await;
            None
        },
    )
    .await;
    match read {
        None => Err("no request within 10 s".into()),
        Some(Err(e)) => Err(format!("reading the request: {e}")),
        Some(Ok(_)) if line.len() > MAX_REQUEST => Err("request line too long".into()),
        Some(Ok(_)) if !line.ends_with(b"\n") => Err("connection closed mid-request".into()),
        Some(Ok(_)) => String::from_utf8(line)
            .map(|l| l.trim_end().to_string())
            .map_err(|_| "request is not UTF-8".into()),
    }
}

async fn execute(ctx: &Arc<Ctx>, req: Request, who: &str) -> Result<String, Refusal> {
    match req {
        Request::List { json } => list(ctx, json).await,
        Request::Show { id, json } => show(ctx, id, json).await,
        Request::Flush(t) => flush(ctx, t).await,
        Request::Hold(t) => each(ctx, t, Op::Hold, who).await,
        Request::Release(t) => each(ctx, t, Op::Release, who).await,
        Request::Delete(t) => each(ctx, t, Op::Delete, who).await,
        Request::Requeue(id) => one(ctx, &id, Op::Requeue, who).await,
        Request::Status { json } => status(ctx, json).await,
    }
}

async fn status(ctx: &Arc<Ctx>, json: bool) -> Result<String, Refusal> {
    let c = ctx.clone();
    let (counts, sync) = crate::pool::unblock(move || {
        let sync = c.mirror.as_ref().map(|db| {
            let st = crate::directory::sqlite::Db::open(db, Duration::from_secs(2))
                .0
                .sync_status()
                .ok()
                .flatten();
            match st {
                Some(st) => crate::status::SyncLine {
                    source: st.source,
                    last_success: st.last_success,
                    last_attempt: st.last_attempt,
                    last_error: st.last_error,
                },
                None => crate::status::SyncLine {
                    source: "the configured database".into(),
                    last_success: None,
                    last_attempt: None,
                    last_error: String::new(),
                },
            }
        });
        (c.runner.counts(), sync)
    })
    .await;
    let snap = crate::status::board().snapshot(counts, sync);
    Ok(if json { snap.json() } else { snap.text() })
}

fn io_refusal(e: impl std::fmt::Display) -> Refusal {
    Refusal::new(EX_IOERR, format!("cannot read the queue: {e}"))
}

async fn list(ctx: &Arc<Ctx>, json: bool) -> Result<String, Refusal> {
    let spool = ctx.spool.clone();
    let entries = crate::pool::unblock(move || super::client::read_entries(&spool))
        .await
        .map_err(io_refusal)?;
    let items: Vec<Item> = entries
        .into_iter()
        .map(|entry| Item {
            active: ctx.runner.in_flight(&entry.env.id),
            entry,
        })
        .collect();
    Ok(if json {
        report::list_json(&items)
    } else {
        report::list_text(&items)
    })
}

async fn show(ctx: &Arc<Ctx>, id: String, json: bool) -> Result<String, Refusal> {
    let spool = ctx.spool.clone();
    let active = ctx.runner.in_flight(&id);
    crate::pool::unblock(move || super::client::show_from_spool(&spool, &id, json, active)).await
}

async fn flush(ctx: &Arc<Ctx>, t: Target) -> Result<String, Refusal> {
    let ids = match t {
        Target::All => {
            let spool = ctx.spool.clone();
            crate::pool::unblock(move || spool.list())
                .await
                .map_err(io_refusal)?
        }
        Target::One(id) => {
            let (spool, sid) = (ctx.spool.clone(), id.clone());
            match crate::pool::unblock(move || spool.place(&sid)).await {
                Some(Place::Queued) => vec![id],
                Some(Place::Held) => {
                    return Err(Refusal::new(
                        EX_TEMPFAIL,
                        format!("{id} is on hold: release it first"),
                    ))
                }
                None => return Err(not_found(&id)),
            }
        }
    };
    let n = ids.len();
    // "Try now" includes destinations left alone for a while after they
    // could not be reached: the operator says they are back.
    ctx.runner.revive_destinations();
    for id in ids {
        ctx.runner.flush(id);
    }
    Ok(format!(
        "{n} message{} scheduled for delivery now\n",
        if n == 1 { "" } else { "s" }
    ))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Hold,
    Release,
    Delete,
    Requeue,
}

fn not_found(id: &str) -> Refusal {
    Refusal::new(
        EX_NOINPUT,
        format!("{id}: no such message in the queue (delivered, deleted, or never there)"),
    )
}

/// An operation on one message or on every message it applies to.
async fn each(ctx: &Arc<Ctx>, t: Target, op: Op, who: &str) -> Result<String, Refusal> {
    if let Target::One(id) = t {
        return one(ctx, &id, op, who).await;
    }
    let spool = ctx.spool.clone();
    let all = crate::pool::unblock(move || spool.list_all())
        .await
        .map_err(io_refusal)?;
    let wanted = match op {
        Op::Hold => Some(Place::Queued),
        Op::Release => Some(Place::Held),
        _ => None,
    };
    let (mut done, mut busy, mut gone) = (0, Vec::new(), 0);
    // One wait for them all, so the client (which waits busy_wait + 30 s)
    // always hears the answer.
    let deadline = std::time::Instant::now() + ctx.busy_wait;
    for (id, place) in all {
        if wanted.is_some_and(|w| w != place) {
            continue;
        }
        let wait = deadline.saturating_duration_since(std::time::Instant::now());
        match one_within(ctx, &id, op, who, wait).await {
            Ok(_) => done += 1,
            Err(r) if r.code == EX_TEMPFAIL => busy.push(id),
            Err(r) if r.code == EX_NOINPUT => gone += 1,
            Err(r) => return Err(r),
        }
    }
    let verb = match op {
        Op::Hold => "held",
        Op::Release => "released",
        Op::Delete => "deleted",
        Op::Requeue => "requeued",
    };
    let mut text = format!("{verb} {done} message{}", if done == 1 { "" } else { "s" });
    if gone > 0 {
        text.push_str(&format!("; {gone} finished meanwhile"));
    }
    if busy.is_empty() {
        Ok(text + "\n")
    } else {
        Err(Refusal::new(
            EX_TEMPFAIL,
            format!(
                "{text}; still being delivered, try again: {}",
                busy.join(" ")
            ),
        ))
    }
}

/// An operation on one message, once no delivery has it.
async fn one(ctx: &Arc<Ctx>, id: &str, op: Op, who: &str) -> Result<String, Refusal> {
    one_within(ctx, id, op, who, ctx.busy_wait).await
}

async fn one_within(
    ctx: &Arc<Ctx>,
    id: &str,
    op: Op,
    who: &str,
    wait: Duration,
) -> Result<String, Refusal> {
    let Ok(exclusive) = ctx.runner.exclusive(id, wait).await else {
        return Err(Refusal::new(
            EX_TEMPFAIL,
            format!("{id} is being delivered right now; try again"),
        ));
    };
    let spool = ctx.spool.clone();
    let sid = id.to_string();
    let done = crate::pool::unblock(move || apply(&spool, &sid, op)).await;
    let text = done?;
    match op {
        Op::Hold => log::held(id, &format!("by postern queue hold ({who})")),
        Op::Release => log::started(&format!("{id}: released from hold ({who})")),
        Op::Delete => log::started(&format!("{id}: removed (deleted by {who})")),
        Op::Requeue => log::started(&format!("{id}: requeued ({who})")),
    }
    // Let go before the flush: a delivery that finds the message still
    // taken gives up on it, and the message would then wait for the next
    // restart.
    drop(exclusive);
    if matches!(op, Op::Release | Op::Requeue) {
        ctx.runner.flush(id.to_string());
    }
    Ok(text)
}

/// The spool side of an operation (blocking).
fn apply(spool: &Spool, id: &str, op: Op) -> Result<String, Refusal> {
    let place = spool.place(id).ok_or_else(|| not_found(id))?;
    let r = match (op, place) {
        (Op::Hold, Place::Held) => Ok(format!("{id} was already on hold\n")),
        (Op::Hold, Place::Queued) => spool.hold(id).map(|()| format!("{id} is on hold\n")),
        (Op::Release, Place::Queued) => Ok(format!("{id} was not on hold\n")),
        (Op::Release, Place::Held) => spool.release(id).map(|()| format!("{id} released\n")),
        (Op::Delete, _) => spool.delete(id).map(|()| format!("{id} deleted\n")),
        (Op::Requeue, Place::Held) => {
            return Err(Refusal::new(
                EX_TEMPFAIL,
                format!("{id} is on hold: release it first"),
            ))
        }
        (Op::Requeue, Place::Queued) => requeue(spool, id),
    };
    r.map_err(|e| match e {
        OpenError::NotFound => not_found(id),
        e => Refusal::new(EX_IOERR, format!("{id}: {e}")),
    })
}

/// Route again from scratch: a fresh retry schedule and no old errors.
/// Finished destinations stay finished (never delivered twice); a damaged
/// state file is left for the runner, which then delivers as after a crash.
fn requeue(spool: &Spool, id: &str) -> Result<String, OpenError> {
    if let Ok(mut st) = spool.load_state(id) {
        st.attempts = 0;
        st.next_attempt = crate::clock::now_secs();
        st.last.clear();
        spool.save_state(id, &st).map_err(OpenError::Io)?;
    }
    Ok(format!("{id} requeued\n"))
}
