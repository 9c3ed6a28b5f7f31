//! What the converter reads, and the one rule about where it may read:
//! only inside the directory it was given (plus the `--sysconfig` file).
//!
//! Postfix files name each other by absolute path (`/etc/postfix/...`).
//! A path under main.cf's `config_directory` (default `/etc/postfix`) is
//! read at the same place under the directory given; any other path
//! (`/etc/aliases`) is never opened: the converter refers to it in the
//! output and says so. Symbolic links that lead out of the directory are
//! refused the same way.
//!
//! Every file is checked before it is parsed: at most [`FILE_LIMIT`]
//! bytes, lines of at most [`LINE_LIMIT`] bytes, UTF-8 text without NUL
//! or other control bytes. Problems name the file and line.

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

use super::Finding;

/// Largest file the converter reads (main.cf of a busy site is ~50 KB).
pub const FILE_LIMIT: usize = 4 << 20;
/// Longest physical line: Postfix has no limit, but a line this long in a
/// configuration is a broken file, not a setting.
pub const LINE_LIMIT: usize = 16 * 1024;

/// Where the files come from: a directory on disk, or (unit tests) a map
/// of names to contents.
pub struct Source {
    dir: Option<PathBuf>,
    mem: HashMap<String, Vec<u8>>,
    /// The `config_directory` that absolute paths in the files start with.
    pub config_directory: String,
    /// Shown in messages instead of the directory given: the file names
    /// the user knows (`/etc/postfix/main.cf`).
    pub display_prefix: String,
}

impl Source {
    pub fn dir(dir: &Path) -> Source {
        Source {
            dir: Some(dir.to_path_buf()),
            mem: HashMap::new(),
            config_directory: "/etc/postfix".into(),
            display_prefix: dir.display().to_string(),
        }
    }

    /// In-memory files, by name relative to the config directory.
    pub fn memory(files: &[(&str, &str)]) -> Source {
        Source {
            dir: None,
            mem: files
                .iter()
                .map(|(n, t)| (n.to_string(), t.as_bytes().to_vec()))
                .collect(),
            config_directory: "/etc/postfix".into(),
            display_prefix: "/etc/postfix".into(),
        }
    }

    /// The name of `rel` as messages show it.
    pub fn display(&self, rel: &str) -> String {
        format!("{}/{rel}", self.display_prefix.trim_end_matches('/'))
    }

    /// The part of `path` below the config directory, or why it is not
    /// read. Relative paths are taken from the config directory.
    pub fn relative(&self, path: &str) -> Result<String, String> {
        let cd = self.config_directory.trim_end_matches('/');
        let rel = if let Some(rest) = path.strip_prefix(cd).filter(|r| r.starts_with('/')) {
            rest.trim_start_matches('/')
        } else if path.starts_with('/') {
            return Err(format!(
                "{path} is outside {cd}, the directory given: not read"
            ));
        } else {
            path
        };
        let p = Path::new(rel);
        if rel.is_empty() || p.components().any(|c| !matches!(c, Component::Normal(_))) {
            return Err(format!("{path}: only plain names below {cd} are read"));
        }
        Ok(rel.to_string())
    }

    /// Does `rel` exist (without reading it)?
    pub fn exists(&self, rel: &str) -> bool {
        match &self.dir {
            Some(d) => d.join(rel).is_file(),
            None => self.mem.contains_key(rel),
        }
    }

    /// Reads and checks `rel`; `Err` is a finding naming the file (and line).
    pub fn read(&self, rel: &str) -> Result<String, Finding> {
        let name = self.display(rel);
        let bytes = match &self.dir {
            None => self
                .mem
                .get(rel)
                .cloned()
                .ok_or_else(|| Finding::error(&name, 0, "", "no such file"))?,
            Some(d) => read_confined(d, rel).map_err(|e| Finding::error(&name, 0, "", &e))?,
        };
        check_text(&name, bytes)
    }
}

/// Reads `dir/rel`, refusing a file that is (through links) outside `dir`.
fn read_confined(dir: &Path, rel: &str) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let base = dir
        .canonicalize()
        .map_err(|e| format!("cannot open {}: {e}", dir.display()))?;
    let path = dir
        .join(rel)
        .canonicalize()
        .map_err(|e| format!("cannot read: {e}"))?;
    if !path.starts_with(&base) {
        return Err(format!(
            "leads to {}, outside the directory given: not read",
            path.display()
        ));
    }
    let f = std::fs::File::open(&path).map_err(|e| format!("cannot read: {e}"))?;
    if !f.metadata().map(|m| m.is_file()).unwrap_or(false) {
        return Err("not a regular file".into());
    }
    let mut bytes = Vec::new();
    f.take(FILE_LIMIT as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read: {e}"))?;
    if bytes.len() > FILE_LIMIT {
        return Err(format!(
            "larger than {FILE_LIMIT} bytes: not a configuration file"
        ));
    }
    Ok(bytes)
}

/// The text of a configuration file, or the first line that makes it
/// something else (binary data, an endless line, not UTF-8).
pub fn check_text(name: &str, bytes: Vec<u8>) -> Result<String, Finding> {
    for (i, line) in bytes.split(|&b| b == b'\n').enumerate() {
        let n = i + 1;
        if line.len() > LINE_LIMIT {
            return Err(Finding::error(
                name,
                n,
                "",
                &format!(
                    "line of {} bytes, longer than {LINE_LIMIT}: a broken file?",
                    line.len()
                ),
            ));
        }
        if let Some(col) = line
            .iter()
            .position(|&b| b < 0x20 && b != b'\t' && b != b'\r' || b == 0x7f)
        {
            return Err(Finding::error(
                name,
                n,
                "",
                &format!(
                    "binary data (byte 0x{:02x} at column {}): not a text file",
                    line[col],
                    col + 1
                ),
            ));
        }
        if let Err(e) = std::str::from_utf8(line) {
            return Err(Finding::error(
                name,
                n,
                "",
                &format!(
                    "not UTF-8 text (column {}): binary data, or convert the file with iconv",
                    e.valid_up_to() + 1
                ),
            ));
        }
    }
    String::from_utf8(bytes).map_err(|_| Finding::error(name, 0, "", "not UTF-8 text"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_outside_the_config_directory_are_not_read() {
        let s = Source::memory(&[]);
        assert_eq!(
            s.relative("/etc/postfix/header_checks").unwrap(),
            "header_checks"
        );
        assert_eq!(s.relative("transport").unwrap(), "transport");
        assert!(s
            .relative("/etc/aliases")
            .unwrap_err()
            .contains("outside /etc/postfix"));
        assert!(s.relative("/etc/postfix/../shadow").is_err());
        assert!(s.relative("/etc/postfixx/a").is_err());
    }

    #[test]
    fn binary_and_long_lines_are_refused_with_their_line() {
        let e = check_text("f", b"a = b\nc = \x00\x01\n".to_vec()).unwrap_err();
        assert_eq!((e.line, e.text.contains("binary data")), (2, true));
        let long = format!("a = b\n\nx = {}\n", "y".repeat(100 * 1024));
        let e = check_text("f", long.into_bytes()).unwrap_err();
        assert_eq!(e.line, 3);
        assert!(e.text.contains("longer than"), "{}", e.text);
        let e = check_text("f", b"a = \xff\xfe\n".to_vec()).unwrap_err();
        assert!(e.text.contains("UTF-8"));
    }
}
