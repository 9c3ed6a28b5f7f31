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
//! files on behalf of an alias. The file is read with the config, so its
//! errors are reported together with the config's, in the same shape.

use std::collections::HashMap;

use super::ConfigError;
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

    /// Parses the whole file; every bad entry is reported as
    /// `FILE:LINE: alias NAME: problem; allowed: ...`.
    pub fn parse(file: &str, text: &str) -> Result<AliasMap, Vec<ConfigError>> {
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
            for t in targets.split(',').map(str::trim).filter(|t| !t.is_empty()) {
                match parse_target(t) {
                    Ok(target) => list.push(target),
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
            map.insert(name, list);
        }
        if errors.is_empty() {
            Ok(AliasMap { map })
        } else {
            Err(errors)
        }
    }
}

const ALLOWED: &str = "addresses (user@domain) or local names, separated by commas";

fn error(file: &str, line: usize, key: &str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        file: file.to_string(),
        line,
        key: key.to_string(),
        problem: problem.into(),
        allowed: ALLOWED.into(),
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
        let errs: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        assert!(
            errs[0].starts_with("al:2: alias x: |/bin/sh: command targets"),
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
}
