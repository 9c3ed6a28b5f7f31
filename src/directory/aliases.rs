//! The local aliases file, aliases(5) syntax:
//! ```text
//! # comment
//! root: admin@example.test
//! postmaster: root
//! team: alice@example.test,
//!       bob@example.test          (a line starting with white space continues)
//! ```
//! Names are case-insensitive. A target is an address (`user@domain`) or a
//! local name. `:include:`, `|command` and `/file` targets are refused with
//! an error naming file and line: postern does not run commands or write
//! files on behalf of an alias.

use std::collections::HashMap;
use std::path::Path;

use crate::smtp::address::Address;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AliasTarget {
    Address(Address),
    /// A local name, resolved in the same local domain.
    Local(String),
}

#[derive(Clone, Debug, Default)]
pub struct AliasMap {
    map: HashMap<String, Vec<AliasTarget>>,
}

impl AliasMap {
    pub fn get(&self, name: &str) -> Option<&[AliasTarget]> {
        self.map.get(&name.to_lowercase()).map(|v| v.as_slice())
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn load(path: &Path) -> Result<AliasMap, Vec<String>> {
        let text = std::fs::read(path)
            .map_err(|e| vec![format!("{}:0: cannot read: {e}", path.display())])?;
        let text = String::from_utf8_lossy(&text);
        AliasMap::parse(&path.display().to_string(), &text)
    }

    /// Parses the whole file; every bad entry is reported as `FILE:LINE: ...`.
    pub fn parse(file: &str, text: &str) -> Result<AliasMap, Vec<String>> {
        let mut errors = Vec::new();
        let mut map: HashMap<String, Vec<AliasTarget>> = HashMap::new();
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
                    None => errors.push(format!(
                        "{file}:{}: continuation line without an alias before it",
                        i + 1
                    )),
                }
            } else {
                entries.push((i + 1, trimmed.to_string()));
            }
        }
        for (line, entry) in entries {
            let Some((name, targets)) = entry.split_once(':') else {
                errors.push(format!("{file}:{line}: expected `name: target, ...`"));
                continue;
            };
            let name = name.trim().trim_matches('"').to_lowercase();
            if name.is_empty() || name.contains(char::is_whitespace) || name.contains('@') {
                errors.push(format!("{file}:{line}: alias {name:?}: bad alias name"));
                continue;
            }
            let mut list = Vec::new();
            for t in targets.split(',').map(str::trim).filter(|t| !t.is_empty()) {
                match parse_target(t) {
                    Ok(target) => list.push(target),
                    Err(problem) => errors.push(format!("{file}:{line}: alias {name}: {problem}")),
                }
            }
            if list.is_empty() && !targets.contains([':', '|', '/']) {
                errors.push(format!("{file}:{line}: alias {name}: no targets"));
            }
            if map.contains_key(&name) {
                errors.push(format!("{file}:{line}: alias {name}: defined twice"));
                continue;
            }
            map.insert(name, list);
        }
        if errors.is_empty() {
            Ok(AliasMap { map })
        } else {
            Err(errors)
        }
    }
}

fn parse_target(t: &str) -> Result<AliasTarget, String> {
    let unquoted = t.trim_matches('"');
    if unquoted.starts_with(":include:") {
        return Err(format!(
            "{t}: :include: targets are not supported; list the addresses here instead"
        ));
    }
    if unquoted.starts_with('|') {
        return Err(format!(
            "{t}: command targets are not supported; use a mailbox"
        ));
    }
    if unquoted.starts_with('/') {
        return Err(format!(
            "{t}: file targets are not supported; use a mailbox"
        ));
    }
    if t.contains('@') {
        return Address::parse(t, true)
            .map(AliasTarget::Address)
            .map_err(|_| format!("{t}: not a valid address"));
    }
    if t.chars().all(|c| c.is_alphanumeric() || "._-+".contains(c)) && !t.starts_with('.') {
        Ok(AliasTarget::Local(t.to_lowercase()))
    } else {
        Err(format!("{t}: not a valid local name"))
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
    fn refuses_programs_and_files_with_line_numbers() {
        let text = "a: b\nx: |/bin/sh\ny: /tmp/file\nz: :include:/etc/list\nw: \"|cmd\"\n";
        let errs = AliasMap::parse("al", text).unwrap_err();
        assert_eq!(errs.len(), 4, "{errs:?}");
        assert!(errs[0].starts_with("al:2: alias x: |/bin/sh: command targets"));
        assert!(errs[1].starts_with("al:3: alias y:"));
        assert!(errs[2].starts_with("al:4: alias z:"));
        assert!(errs[3].starts_with("al:5: alias w:"));
    }

    #[test]
    fn other_errors() {
        let errs = AliasMap::parse("al", "  orphan\nnocolon\na: b\na: c\nq:\n").unwrap_err();
        assert_eq!(errs.len(), 4, "{errs:?}");
    }
}
