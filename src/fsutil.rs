//! Durable file operations shared by the queue and the Maildir agent:
//! fsync of a directory, a group-committing directory syncer, and the
//! write-temp/fsync/rename/fsync-directory helper.
//!
//! Group commit: when many threads each rename a file into the same
//! directory and then need that directory fsynced, one fsync after all of
//! the renames covers every one of them. [`DirSync::sync`] lets the first
//! caller run the fsync and every caller whose rename happened before that
//! fsync started return when it ends, so under load many renames share one
//! fsync instead of queueing for one each.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};

pub fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[derive(Default)]
struct SyncState {
    /// Tickets handed out; a ticket is taken after the caller's rename.
    issued: u64,
    /// Every ticket up to this one is covered by a finished fsync.
    done: u64,
    running: bool,
    last_error: Option<(u64, String)>,
}

/// Group-committing fsync of one directory.
pub struct DirSync {
    dir: PathBuf,
    state: Mutex<SyncState>,
    cond: Condvar,
}

impl DirSync {
    pub fn new(dir: PathBuf) -> DirSync {
        DirSync {
            dir,
            state: Mutex::new(SyncState::default()),
            cond: Condvar::new(),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Returns once an fsync of the directory that started after this call
    /// has completed. Blocking: call from a blocking thread.
    pub fn sync(&self) -> io::Result<()> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.issued += 1;
        let ticket = st.issued;
        loop {
            if st.done >= ticket {
                return match &st.last_error {
                    Some((t, e)) if *t >= ticket => Err(io::Error::other(e.clone())),
                    _ => Ok(()),
                };
            }
            if !st.running {
                st.running = true;
                let upto = st.issued;
                drop(st);
                let result = fsync_dir(&self.dir);
                st = self.state.lock().unwrap_or_else(|e| e.into_inner());
                st.running = false;
                st.done = upto;
                if let Err(e) = result {
                    st.last_error = Some((upto, e.to_string()));
                }
                self.cond.notify_all();
                continue;
            }
            st = self.cond.wait(st).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// Directory syncers by path, for the many Maildir `new/` directories.
#[derive(Default)]
pub struct DirSyncs {
    map: Mutex<HashMap<PathBuf, Arc<DirSync>>>,
}

impl DirSyncs {
    pub fn get(&self, dir: &Path) -> Arc<DirSync> {
        let mut m = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if m.len() > 4096 {
            // Bounded: forget idle syncers (only ones nobody holds).
            m.retain(|_, v| Arc::strong_count(v) > 1);
        }
        m.entry(dir.to_path_buf())
            .or_insert_with(|| Arc::new(DirSync::new(dir.to_path_buf())))
            .clone()
    }
}

/// Writes `bytes` to `dir/name` so that after return the file is complete
/// and durable, and a crash at any point leaves either the old file or the
/// new one, never a mix: write `dir/.name.tmp`, fsync, rename, fsync `dir`.
pub fn write_durable(dir: &Path, name: &str, bytes: &[u8], mode: u32) -> io::Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    fs::rename(&tmp, dir.join(name))?;
    fsync_dir(dir)
}

/// Creates `dir` and its parents with `mode`, returning whether it is new.
pub fn ensure_dir(dir: &Path, mode: u32) -> io::Result<bool> {
    if dir.is_dir() {
        return Ok(false);
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(dir)?;
    Ok(true)
}

use std::os::unix::fs::DirBuilderExt;

/// rename(2) that fails with EEXIST rather than replace `to`:
/// renameat2(RENAME_NOREPLACE), called directly since not every libc
/// wraps it (musl before 1.2.5). Kernels and filesystems without it
/// answer EINVAL or ENOSYS: an error, so the caller's fallback runs.
pub fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    use nix::libc;
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let c =
        |p: &Path| CString::new(p.as_os_str().as_bytes()).map_err(|_| io::ErrorKind::InvalidInput);
    let (from, to) = (c(from)?, c(to)?);
    // SAFETY: two NUL-terminated paths that outlive the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concurrent_syncs_all_return() {
        let dir = std::env::temp_dir().join(format!("postern-dirsync-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let s = Arc::new(DirSync::new(dir.clone()));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let s = s.clone();
                std::thread::spawn(move || (0..20).for_each(|_| s.sync().unwrap()))
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        write_durable(&dir, "x", b"hello", 0o600).unwrap();
        assert_eq!(fs::read(dir.join("x")).unwrap(), b"hello");
        fs::remove_dir_all(&dir).unwrap();
    }
}
