//! Mail submitted on this host: the submission socket `sendmail` speaks
//! SMTP to (any local user; the uid from SO_PEERCRED), and pickup of the
//! drop directory `sendmail` writes into while the server is down.
//!
//! Pickup hands each file to the same local session, over a socket pair,
//! as the file's owner (taken from the file system, never from the file):
//! the rules, the filter and the queue treat it like any submission. A
//! file is removed only once the server has the message; one that cannot
//! be read as a drop file (cut short, not ours, a link) is moved to
//! `maildrop/set-aside/` with a log line, never lost; one the server refuses
//! (5xx) goes there too, a 4xx leaves it for the next round.

use std::os::fd::AsFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use smol::net::unix::{UnixListener, UnixStream};
use smol::Executor;

use super::reload::Hub;
use super::{conn, ListenerCtx};
use crate::config::{Config, Listener, ListenerMode};
use crate::log;
use crate::sendmail::submit;

/// How often the drop directory is looked at while the server runs (a
/// sendmail that found the server starting or restarting).
const PICKUP_EVERY: Duration = Duration::from_secs(60);

/// The submission socket, removed on drop.
pub struct Handle {
    path: PathBuf,
    _tasks: Vec<smol::Task<()>>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A local submission's session: no TLS or AUTH (the uid is known), no
/// HELO needed, no recipient limit to speak of.
pub fn local_ctx(cfg: &Config) -> Arc<ListenerCtx> {
    let l = Listener {
        mode: ListenerMode::Plain,
        ..Listener::default()
    };
    let mut s = cfg.session_config(&l);
    s.helo_required = false;
    s.auth_enabled = false;
    s.xforward = false;
    s.recipient_limit = s.recipient_limit.max(10_000);
    let filter = Some(cfg.content.filter.clone()).filter(|f| !f.trim().is_empty());
    Arc::new(ListenerCtx {
        session_cfg: Arc::new(s),
        implicit_tls: false,
        reinject: false,
        filter,
        trusted: None,
        local: true,
    })
}

/// Binds the submission socket, makes the drop directory, picks up what
/// is in it, and keeps doing both.
pub fn start(cfg: &Config, ex: &Arc<Executor<'static>>, hub: Arc<Hub>) -> Result<Handle, String> {
    let path = cfg.submit_socket();
    let listener = bind(&path).map_err(|e| format!("submission socket {}: {e}", path.display()))?;
    let drop_dir = cfg.maildrop();
    prepare_drop(&drop_dir).map_err(|e| format!("drop directory {}: {e}", drop_dir.display()))?;
    let ex2 = ex.clone();
    let h2 = hub.clone();
    let accept = ex.spawn(async move {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => match uid_of(&stream) {
                    Some(uid) => {
                        let shared = h2.get();
                        let ctx = shared.local_ctx.clone();
                        ex2.spawn(conn::handle_local(shared, ctx, stream, uid))
                            .detach();
                    }
                    None => log::warning(
                        "submission socket: a client without credentials was turned away",
                    ),
                },
                Err(e) => {
                    log::warning(&format!("submission socket: accept: {e}"));
                    smol::Timer::after(Duration::from_millis(100)).await;
                }
            }
        }
    });
    let ex3 = ex.clone();
    let pickup = ex.spawn(async move {
        loop {
            pickup_all(&ex3, &hub, &drop_dir).await;
            smol::Timer::after(PICKUP_EVERY).await;
        }
    });
    Ok(Handle {
        path,
        _tasks: vec![accept, pickup],
    })
}

fn bind(path: &Path) -> std::io::Result<UnixListener> {
    use std::os::unix::fs::FileTypeExt;
    if let Some(dir) = path.parent() {
        crate::fsutil::ensure_dir(dir, 0o755)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
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
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))?;
    Ok(UnixListener::from(smol::Async::new(l)?))
}

/// Mode 1733: anyone may drop a file, nobody may list the directory or
/// remove another's file.
fn prepare_drop(dir: &Path) -> std::io::Result<()> {
    crate::fsutil::ensure_dir(dir, 0o700)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o1733))?;
    crate::fsutil::ensure_dir(&submit::set_aside_dir(dir), 0o700)?;
    Ok(())
}

fn uid_of(stream: &UnixStream) -> Option<u32> {
    use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
    getsockopt(&stream.as_fd(), PeerCredentials)
        .ok()
        .map(|c| c.uid())
}

/// One round over the drop directory.
async fn pickup_all(ex: &Arc<Executor<'static>>, hub: &Arc<Hub>, dir: &Path) {
    let d = dir.to_path_buf();
    let names = crate::pool::unblock(move || list(&d)).await;
    for name in names {
        let path = dir.join(&name);
        let p2 = path.clone();
        let read = crate::pool::unblock(move || read_drop(&p2)).await;
        let (uid, dropped) = match read {
            Ok(Some(x)) => x,
            Ok(None) => continue,
            Err(problem) => {
                log::error(&format!(
                    "pickup: {}: {problem}; {}",
                    path.display(),
                    set_aside(dir, &name)
                ));
                continue;
            }
        };
        let (ours, theirs) = match std::os::unix::net::UnixStream::pair() {
            Ok(p) => p,
            Err(e) => {
                log::warning(&format!("pickup: socket pair: {e}"));
                return;
            }
        };
        let Ok(theirs) = smol::Async::new(theirs).map(UnixStream::from) else {
            return;
        };
        let shared = hub.get();
        let ctx = shared.local_ctx.clone();
        ex.spawn(conn::handle_local(shared, ctx, theirs, uid))
            .detach();
        let result = crate::pool::unblock(move || {
            let _ = ours.set_read_timeout(Some(Duration::from_secs(600)));
            submit::smtp(
                &ours,
                &dropped.sender,
                &dropped.rcpts,
                &dropped.message,
                false,
            )
        })
        .await;
        match result {
            Ok(id) => {
                log::started(&format!(
                    "pickup: {} (uid {uid}) queued as {id}",
                    path.display()
                ));
                let _ = std::fs::remove_file(&path);
            }
            Err(submit::SubmitError::Refused(r)) if r.code >= 500 => {
                log::error(&format!(
                    "pickup: {} (uid {uid}) refused: {} {}; {}",
                    path.display(),
                    r.code,
                    r.text,
                    set_aside(dir, &name)
                ));
            }
            Err(e) => {
                log::warning(&format!(
                    "pickup: {} (uid {uid}): {e}; tried again later",
                    path.display()
                ));
                return;
            }
        }
    }
}

/// Finished drop files, oldest first (names start with the time).
fn list(dir: &Path) -> Vec<String> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<String> = rd
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| !t.is_dir()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    v.sort();
    v
}

/// A drop file and its owner. `Ok(None)`: gone meanwhile.
fn read_drop(path: &Path) -> Result<Option<(u32, submit::Dropped)>, String> {
    use std::io::Read;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(path);
    let f = match f {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot open: {e}")),
    };
    let meta = f.metadata().map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    if meta.nlink() != 1 {
        return Err("has other names (a hard link to someone else's file?)".into());
    }
    let mut bytes = Vec::new();
    (&f).take(256 << 20)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    submit::parse_drop(&bytes).map(|d| Some((meta.uid(), d)))
}

/// Moves a drop file out of pickup's way; what happened, for the log.
fn set_aside(dir: &Path, name: &str) -> String {
    let to = submit::set_aside_dir(dir);
    match std::fs::rename(dir.join(name), to.join(name)) {
        Ok(()) => format!("moved to {}", to.display()),
        Err(e) => format!(
            "cannot move it to {}: {e}; it stays where it is",
            to.display()
        ),
    }
}
