//! The local aliases file, aliases(5) syntax:
//! ```text
//! # comment
//! root: admin@example.test
//! postmaster: root
//! team: alice@example.test,
//!       bob@example.test          (a line starting with white space continues)
//! ```
//! Names are case-insensitive. A target is an address (`user@domain`), a
//! local name, or, as in Postfix's local(8):
//! - `|command`: the message is piped to `/bin/sh -c command`;
//! - `/path/file`: appended in mbox format (locked); `/path/dir/`: a Maildir;
//! - `:include:/path`: the targets listed in that file (commas or lines).
//!
//! Commands and files are only honoured from a file owned by root or by
//! the user postern runs as and writable by nobody else; they run (and
//! files are written) as that owner, or as `[delivery] default_privs`
//! when it is root — as in Postfix. Elsewhere they are a config error
//! naming file and line. The files, included ones too, are read with the
//! config when postern starts, so their errors are reported together with
//! the config's, in the same shape.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::ConfigError;
use crate::smtp::address::Address;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AliasTarget {
    Address(Address),
    /// A local name, resolved in the same local domain.
    Local(String),
    /// `|command`, run as `owner` (the trusted file's owner; 0: default_privs).
    Command {
        command: String,
        owner: u32,
    },
    /// `/path` (mbox) or `/path/` (Maildir), written as `owner`.
    File {
        path: PathBuf,
        owner: u32,
    },
}

impl std::fmt::Display for AliasTarget {
    /// As the aliases file writes it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AliasTarget::Address(a) => write!(f, "{a}"),
            AliasTarget::Local(n) => f.write_str(n),
            AliasTarget::Command { command, .. } => write!(f, "|{command}"),
            AliasTarget::File { path, .. } => write!(f, "{}", path.display()),
        }
    }
}

/// Whether a file may name commands and files: `Ok(owner)` or why not.
pub type Trust = Result<u32, String>;

/// Owned by root or by us, and writable by no one else.
pub fn trust_of(path: &Path, meta: &std::fs::Metadata) -> Trust {
    let me = nix::unistd::geteuid().as_raw();
    let owner = meta.uid();
    if owner != 0 && owner != me {
        return Err(format!(
            "{} is owned by uid {owner}, not by root or the user postern runs as (uid {me})",
            path.display()
        ));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(format!(
            "{} is writable by its group or by others (mode {:o})",
            path.display(),
            meta.mode() & 0o7777
        ));
    }
    Ok(owner)
}

#[derive(Clone, Debug, Default)]
pub struct AliasMap {
    map: HashMap<String, Vec<AliasTarget>>,
    /// The file it was read from, and the line each alias starts on
    /// (`postern explain` names them).
    file: String,
    lines: HashMap<String, usize>,
}

impl AliasMap {
    pub fn get(&self, name: &str) -> Option<&[AliasTarget]> {
        self.map.get(&name.to_lowercase()).map(|v| v.as_slice())
    }

    /// The file the aliases were read from ("" when there is none).
    pub fn file(&self) -> &str {
        &self.file
    }

    /// The line alias `name` starts on.
    pub fn line_of(&self, name: &str) -> Option<usize> {
        self.lines.get(&name.to_lowercase()).copied()
    }

    /// Does some alias name a command or a file?
    pub fn runs_programs(&self) -> bool {
        self.map
            .values()
            .flatten()
            .any(|t| matches!(t, AliasTarget::Command { .. } | AliasTarget::File { .. }))
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Reads and parses an aliases file and the files it includes.
    pub fn read(path: &Path) -> Result<AliasMap, Vec<ConfigError>> {
        let (text, trust) = read_trusted(path)
            .map_err(|e| vec![error(&path.display().to_string(), 0, "(aliases)", e)])?;
        let mut include = |p: &Path, depth: usize| read_include(p, depth);
        AliasMap::parse_with(&path.display().to_string(), &text, &trust, &mut include)
    }

    /// Parses text that may not name commands, files or includes (tests).
    pub fn parse(file: &str, text: &str) -> Result<AliasMap, Vec<ConfigError>> {
        let untrusted: Trust = Err("it was not read from a file".into());
        let mut include = |_: &Path, _: usize| -> Result<Vec<AliasTarget>, String> {
            Err("includes are not read here".into())
        };
        AliasMap::parse_with(file, text, &untrusted, &mut include)
    }

    /// Parses the whole file; every bad entry is reported as
    /// `FILE:LINE: alias NAME: problem; allowed: ...`.
    fn parse_with(
        file: &str,
        text: &str,
        trust: &Trust,
        include: &mut Include<'_>,
    ) -> Result<AliasMap, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let mut map: HashMap<String, Vec<AliasTarget>> = HashMap::new();
        let mut lines = HashMap::new();
        // Join continuation lines, remembering where each entry started.
        let mut entries: Vec<(usize, String)> = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let trimmed = line.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            if line.starts_with([' ', '\t']) {
                match entries.last_mut() {
                    Some((_, e)) => {
                        e.push(' ');
                        e.push_str(trimmed);
                    }
                    None => errors.push(error(
                        file,
                        i + 1,
                        "(aliases)",
                        "continuation line without an alias before it",
                    )),
                }
            } else {
                entries.push((i + 1, trimmed.to_string()));
            }
        }
        for (line, entry) in entries {
            let Some((name, targets)) = entry.split_once(':') else {
                errors.push(error(
                    file,
                    line,
                    "(aliases)",
                    "expected `name: target, ...`",
                ));
                continue;
            };
            let name = name.trim().trim_matches('"').to_lowercase();
            if name.is_empty() || name.contains(char::is_whitespace) || name.contains('@') {
                errors.push(error(
                    file,
                    line,
                    &format!("alias {name:?}"),
                    "bad alias name",
                ));
                continue;
            }
            let mut list = Vec::new();
            for t in split_targets(targets) {
                match parse_target(&t, trust, 0, include) {
                    Ok(mut targets) => list.append(&mut targets),
                    Err(problem) => {
                        errors.push(error(file, line, &format!("alias {name}"), problem))
                    }
                }
            }
            if list.is_empty() && !targets.contains([':', '|', '/']) {
                errors.push(error(file, line, &format!("alias {name}"), "no targets"));
            }
            if map.contains_key(&name) {
                errors.push(error(file, line, &format!("alias {name}"), "defined twice"));
                continue;
            }
            lines.insert(name.clone(), line);
            map.insert(name, list);
        }
        if errors.is_empty() {
            Ok(AliasMap {
                map,
                file: file.to_string(),
                lines,
            })
        } else {
            Err(errors)
        }
    }
}

const ALLOWED: &str = "addresses (user@domain), local names, |command, /file, /maildir/ or :include:/file, separated by commas";

fn error(file: &str, line: usize, key: &str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        file: file.to_string(),
        line,
        key: key.to_string(),
        problem: problem.into(),
        allowed: ALLOWED.into(),
    }
}

/// Splits a target list at commas outside double quotes.
fn split_targets(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in s.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                cur.push(c);
            }
            ',' | '\n' if !quoted => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    out.push(cur);
    out.into_iter()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect()
}

/// Nested `:include:` files deeper than this are refused (and so are
/// cycles).
const MAX_INCLUDE_DEPTH: usize = 8;

/// Reads an `:include:` file (its path, the nesting depth) into targets.
type Include<'a> = dyn FnMut(&Path, usize) -> Result<Vec<AliasTarget>, String> + 'a;

fn parse_target(
    t: &str,
    trust: &Trust,
    depth: usize,
    include: &mut Include<'_>,
) -> Result<Vec<AliasTarget>, String> {
    let unquoted = t
        .strip_prefix('"')
        .and_then(|u| u.strip_suffix('"'))
        .unwrap_or(t)
        .trim();
    let privileged = |what: &str| {
        trust
            .as_ref()
            .map(|o| *o)
            .map_err(|why| format!("{t}: {what} targets are only honoured from a file owned by root or by the user postern runs as, and writable by no one else; {why}"))
    };
    if let Some(p) = unquoted.strip_prefix(":include:") {
        let p = Path::new(p.trim());
        if !p.is_absolute() {
            return Err(format!("{t}: an :include: file needs an absolute path"));
        }
        if depth >= MAX_INCLUDE_DEPTH {
            return Err(format!(
                "{t}: includes nested more than {MAX_INCLUDE_DEPTH} deep (a cycle?)"
            ));
        }
        return include(p, depth + 1).map_err(|e| format!("{t}: {e}"));
    }
    if let Some(c) = unquoted.strip_prefix('|') {
        let owner = privileged("command")?;
        if c.trim().is_empty() {
            return Err(format!("{t}: an empty command"));
        }
        return Ok(vec![AliasTarget::Command {
            command: c.trim().to_string(),
            owner,
        }]);
    }
    if unquoted.starts_with('/') {
        let owner = privileged("file")?;
        if unquoted.contains("/../") || unquoted.ends_with("/..") {
            return Err(format!("{t}: a file path may not contain .."));
        }
        return Ok(vec![AliasTarget::File {
            path: PathBuf::from(unquoted),
            owner,
        }]);
    }
    if t.contains('@') {
        return Address::parse(t, true)
            .map(|a| vec![AliasTarget::Address(a)])
            .map_err(|_| format!("{t}: not a valid address"));
    }
    if t.chars().all(|c| c.is_alphanumeric() || "._-+".contains(c)) && !t.starts_with('.') {
        Ok(vec![AliasTarget::Local(t.to_lowercase())])
    } else {
        Err(format!("{t}: not a valid local name"))
    }
}

/// A file's text and whether it may name commands and files.
fn read_trusted(path: &Path) -> Result<(String, Trust), String> {
    let f =
        std::fs::File::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let meta = f
        .metadata()
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut &f, &mut bytes)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Ok((
        String::from_utf8_lossy(&bytes).into_owned(),
        trust_of(path, &meta),
    ))
}

/// The targets of an `:include:` file: one or more per line, `#` comments.
fn read_include(path: &Path, depth: usize) -> Result<Vec<AliasTarget>, String> {
    let (text, trust) = read_trusted(path)?;
    let mut out = Vec::new();
    let mut problems = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        for t in split_targets(line) {
            match parse_target(&t, &trust, depth, &mut read_include) {
                Ok(mut v) => out.append(&mut v),
                Err(e) => problems.push(format!("{}:{}: {e}", path.display(), i + 1)),
            }
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_aliases_file() {
        let text = "# system aliases\nroot: admin@example.test\nPostmaster: root\nteam: alice@example.test,\n  bob@example.test, carol\n\n";
        let m = AliasMap::parse("aliases", text).unwrap();
        assert_eq!(
            m.get("ROOT").unwrap(),
            &[AliasTarget::Address(Address::new("admin", "example.test"))]
        );
        assert_eq!(
            m.get("postmaster").unwrap(),
            &[AliasTarget::Local("root".into())]
        );
        assert_eq!(m.get("team").unwrap().len(), 3);
    }

    #[test]
    fn untrusted_text_names_no_programs_or_files() {
        let text = "a: b\nx: |/bin/sh\ny: /tmp/file\nz: :include:/etc/list\nw: \"|cmd\"\n";
        let errs = AliasMap::parse("al", text).unwrap_err();
        assert_eq!(errs.len(), 4, "{errs:?}");
        let errs: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        assert!(
            errs[0].starts_with("al:2: alias x: |/bin/sh: command targets are only honoured"),
            "{}",
            errs[0]
        );
        assert!(errs[1].starts_with("al:3: alias y:"));
        assert!(errs[2].starts_with("al:4: alias z:"));
        assert!(errs[3].starts_with("al:5: alias w:"));
    }

    #[test]
    fn other_errors() {
        let errs = AliasMap::parse("al", "  orphan\nnocolon\na: b\na: c\nq:\n").unwrap_err();
        assert_eq!(errs.len(), 4, "{errs:?}");
    }

    fn tempdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("postern-aliases-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn write(p: &Path, text: &str, mode: u32) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(p, text).unwrap();
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn a_trusted_file_names_commands_files_and_includes() {
        let d = tempdir("trusted");
        let list = d.join("list");
        write(
            &list,
            "# members\nalice@example.test, bob\n\"|/usr/bin/logger -t list\"\n",
            0o644,
        );
        let al = d.join("aliases");
        write(&al, &format!("log: |/usr/bin/tee -a /tmp/x, \"/var/mail/log\"\nbox: /srv/box/\nlist: :include:{}\n", list.display()), 0o644);
        let m = AliasMap::read(&al).unwrap();
        let me = nix::unistd::geteuid().as_raw();
        assert_eq!(
            m.get("log").unwrap(),
            &[
                AliasTarget::Command {
                    command: "/usr/bin/tee -a /tmp/x".into(),
                    owner: me
                },
                AliasTarget::File {
                    path: "/var/mail/log".into(),
                    owner: me
                },
            ]
        );
        assert_eq!(
            m.get("box").unwrap(),
            &[AliasTarget::File {
                path: "/srv/box/".into(),
                owner: me
            }]
        );
        let l = m.get("list").unwrap();
        assert_eq!(l.len(), 3, "{l:?}");
        assert_eq!(l[1], AliasTarget::Local("bob".into()));
        assert!(
            matches!(&l[2], AliasTarget::Command { command, .. } if command == "/usr/bin/logger -t list")
        );
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn writable_by_others_or_looping_includes_are_errors() {
        let d = tempdir("untrusted");
        let al = d.join("aliases");
        write(&al, "x: |/bin/true\n", 0o666);
        let e = AliasMap::read(&al).unwrap_err();
        assert!(
            e[0].to_string()
                .contains("writable by its group or by others"),
            "{}",
            e[0]
        );
        let me = d.join("self");
        write(&me, &format!(":include:{}\n", me.display()), 0o644);
        write(&al, &format!("x: :include:{}\n", me.display()), 0o644);
        let e = AliasMap::read(&al).unwrap_err();
        assert!(e[0].to_string().contains("nested more than"), "{}", e[0]);
        write(&al, "x: :include:relative\n", 0o644);
        assert!(AliasMap::read(&al).is_err());
        let _ = std::fs::remove_dir_all(&d);
    }
}
