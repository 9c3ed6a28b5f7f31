//! main.cf (and the `mysql:` map files, which share its syntax): parsing
//! and `$parameter` expansion. Pure.
//!
//! Syntax (postconf(5)): `name = value`; a line starting with white space
//! continues the previous one (joined with one space); a line whose first
//! non-blank character is `#` is a comment, also between continuation
//! lines; `#` later in a line is part of the value. A name set twice: the
//! later line wins, as in Postfix.
//!
//! Expansion: `$name`, `${name}`, `$(name)`, `${name?text}` (text when
//! name is non-empty), `${name:text}` (text when it is empty), `$$` for a
//! `$`. Names not set in the file take the Postfix defaults that the
//! converter knows ([`builtin_default`]); others expand to nothing, as in
//! Postfix. A name that refers back to itself, directly or through
//! others, is an error naming the chain and the line.

use std::collections::HashMap;

use super::Finding;

/// Deepest chain of `$a` → `$b` → ... followed before giving up.
pub const EXPANSION_DEPTH_LIMIT: usize = 50;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Param {
    pub name: String,
    /// As written, continuation lines joined with one space.
    pub raw: String,
    pub line: usize,
}

#[derive(Clone, Debug, Default)]
pub struct MainCf {
    /// As messages show it.
    pub file: String,
    /// In file order; for a name set twice only the later entry.
    pub params: Vec<Param>,
    index: HashMap<String, usize>,
    /// `-o name=value` of one master.cf service, consulted first.
    overrides: HashMap<String, String>,
}

/// Parses `text`; problems (a line that is not `name = value`) are
/// returned with the lines that did parse.
pub fn parse(file: &str, text: &str) -> (MainCf, Vec<Finding>) {
    let mut cf = MainCf {
        file: file.to_string(),
        ..Default::default()
    };
    let mut problems = Vec::new();
    for (line, logical) in logical_lines(text) {
        let Some((name, value)) = logical.split_once('=') else {
            problems.push(Finding::error(
                file,
                line,
                "",
                &format!("{:?} is not `name = value`", clip(&logical)),
            ));
            continue;
        };
        let name = name.trim();
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            problems.push(Finding::error(
                file,
                line,
                "",
                &format!("{:?} is not a parameter name", clip(name)),
            ));
            continue;
        }
        cf.set(name, value.trim(), line);
    }
    (cf, problems)
}

/// Logical lines with the number of their first physical line.
pub fn logical_lines(text: &str) -> Vec<(usize, String)> {
    let mut out: Vec<(usize, String)> = Vec::new();
    let mut continuing = false;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim_end_matches('\r');
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            // A comment or blank line does not end a value that the next
            // indented line continues (postconf(5)).
            continue;
        }
        if line.starts_with([' ', '\t']) && continuing {
            let last = out.last_mut().expect("continuing");
            last.1.push(' ');
            last.1.push_str(trimmed);
        } else {
            out.push((i + 1, trimmed.to_string()));
            continuing = true;
        }
    }
    out
}

fn clip(s: &str) -> String {
    match s.char_indices().nth(60) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_string(),
    }
}

impl MainCf {
    pub fn set(&mut self, name: &str, raw: &str, line: usize) {
        let p = Param {
            name: name.to_string(),
            raw: raw.to_string(),
            line,
        };
        match self.index.get(name) {
            Some(&i) => self.params[i] = p,
            None => {
                self.index.insert(name.to_string(), self.params.len());
                self.params.push(p);
            }
        }
    }

    pub fn get(&self, name: &str) -> Option<&Param> {
        self.index.get(name).map(|&i| &self.params[i])
    }

    /// The raw value, with one service's `-o` overrides applied.
    pub fn raw(&self, name: &str) -> Option<&str> {
        if let Some(v) = self.overrides.get(name) {
            return Some(v);
        }
        self.get(name).map(|p| p.raw.as_str())
    }

    pub fn line(&self, name: &str) -> usize {
        self.get(name).map(|p| p.line).unwrap_or(0)
    }

    /// This file as one master.cf service sees it.
    pub fn with_overrides(&self, overrides: &[(String, String)]) -> MainCf {
        let mut cf = self.clone();
        cf.overrides = overrides.iter().cloned().collect();
        cf
    }

    /// The expanded value of `name`: from the file, else the Postfix
    /// default the converter knows, else `None`.
    pub fn value(&self, name: &str) -> Result<Option<String>, Finding> {
        let mut stack = Vec::new();
        self.value_in(name, &mut stack)
    }

    /// The expanded value, or "" when unset.
    pub fn text(&self, name: &str) -> Result<String, Finding> {
        Ok(self.value(name)?.unwrap_or_default())
    }

    fn value_in(&self, name: &str, stack: &mut Vec<String>) -> Result<Option<String>, Finding> {
        if stack.iter().any(|n| n == name) {
            let mut chain: Vec<String> = stack.iter().map(|n| format!("${n}")).collect();
            chain.push(format!("${name}"));
            let first = &stack[0];
            return Err(Finding::error(
                &self.file,
                self.line(first),
                first,
                &format!("expansion loops: {}", chain.join(" -> ")),
            ));
        }
        if stack.len() >= EXPANSION_DEPTH_LIMIT {
            return Err(Finding::error(
                &self.file,
                self.line(&stack[0]),
                &stack[0],
                &format!("expansion deeper than {EXPANSION_DEPTH_LIMIT} levels"),
            ));
        }
        let raw = match self.raw(name) {
            Some(r) => r.to_string(),
            None => match builtin_default(self, name) {
                Some(d) => d,
                None => return Ok(None),
            },
        };
        stack.push(name.to_string());
        let out = self.expand_in(&raw, stack);
        stack.pop();
        out.map(Some)
    }

    /// Expands the `$names` in `text`.
    pub fn expand(&self, text: &str) -> Result<String, Finding> {
        self.expand_in(text, &mut Vec::new())
    }

    fn expand_in(&self, text: &str, stack: &mut Vec<String>) -> Result<String, Finding> {
        let mut out = String::new();
        let mut rest = text;
        while let Some(i) = rest.find('$') {
            out.push_str(&rest[..i]);
            rest = &rest[i + 1..];
            if let Some(r) = rest.strip_prefix('$') {
                out.push('$');
                rest = r;
                continue;
            }
            let (inner, after) = match rest.chars().next() {
                Some(open @ ('{' | '(')) => {
                    let close = if open == '{' { '}' } else { ')' };
                    match matching(rest, open, close) {
                        Some(end) => (&rest[1..end], &rest[end + 1..]),
                        None => {
                            return Err(self.bad(stack, &format!("unclosed `${open}` in {text:?}")))
                        }
                    }
                }
                _ => {
                    let end = rest
                        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                        .unwrap_or(rest.len());
                    if end == 0 {
                        out.push('$');
                        continue;
                    }
                    (&rest[..end], &rest[end..])
                }
            };
            rest = after;
            let split = inner.find(['?', ':']);
            let name = &inner[..split.unwrap_or(inner.len())];
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return Err(self.bad(
                    stack,
                    &format!("`{inner}` in {text:?} is not a parameter name"),
                ));
            }
            let value = self.value_in(name, stack)?.unwrap_or_default();
            match split.map(|i| (inner.as_bytes()[i], &inner[i + 1..])) {
                None => out.push_str(&value),
                Some((b'?', alt)) if !value.is_empty() => {
                    out.push_str(&self.expand_in(strip_braces(alt), stack)?)
                }
                Some((b':', alt)) if value.is_empty() => {
                    out.push_str(&self.expand_in(strip_braces(alt), stack)?)
                }
                Some(_) => {}
            }
        }
        out.push_str(rest);
        Ok(out)
    }

    fn bad(&self, stack: &[String], problem: &str) -> Finding {
        let name = stack.first().map(String::as_str).unwrap_or("");
        Finding::error(&self.file, self.line(name), name, problem)
    }
}

fn strip_braces(s: &str) -> &str {
    s.strip_prefix('{')
        .and_then(|s| s.strip_suffix('}'))
        .unwrap_or(s)
}

/// Index of the bracket closing the one at index 0.
fn matching(s: &str, open: char, close: char) -> Option<usize> {
    let mut depth = 0;
    for (i, c) in s.char_indices() {
        if c == open {
            depth += 1;
        } else if c == close {
            depth -= 1;
            if depth == 0 {
                return Some(i);
            }
        }
    }
    None
}

/// The Postfix defaults that values of the seed's kind refer to.
fn builtin_default(cf: &MainCf, name: &str) -> Option<String> {
    Some(match name {
        "config_directory" => "/etc/postfix".into(),
        "queue_directory" => "/var/spool/postfix".into(),
        "daemon_directory" => "/usr/libexec/postfix".into(),
        "data_directory" => "/var/lib/postfix".into(),
        "mydomain" => {
            let host = cf.raw("myhostname")?;
            let host = cf.expand(host).ok()?;
            host.split_once('.').map(|(_, d)| d.to_string())?
        }
        "myorigin" => "$myhostname".into(),
        "mydestination" => "$myhostname, localhost.$mydomain, localhost".into(),
        "relay_domains" => String::new(),
        "virtual_alias_domains" => "$virtual_alias_maps".into(),
        "mail_name" => "Postfix".into(),
        _ => return None,
    })
}

/// Splits a list value at commas and white space, as Postfix does.
pub fn list(value: &str) -> Vec<String> {
    value
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cf(text: &str) -> MainCf {
        let (cf, problems) = parse("main.cf", text);
        assert!(problems.is_empty(), "{problems:?}");
        cf
    }

    #[test]
    fn continuation_lines_and_comments() {
        let c = cf("# top\na = one\n  two\n# inside\n\tthree\nb=x # not a comment\n\n");
        assert_eq!(c.raw("a"), Some("one two three"));
        assert_eq!(c.raw("b"), Some("x # not a comment"));
        assert_eq!(c.line("b"), 6);
    }

    #[test]
    fn later_lines_win() {
        let c = cf("a = 1\na = 2\n");
        assert_eq!(c.raw("a"), Some("2"));
        assert_eq!(c.line("a"), 2);
    }

    #[test]
    fn expansion_follows_chains_and_forms() {
        let c = cf("myhostname = mail.hoge.org\nmyorigin = server.$mydomain\nmydestination = $myorigin, localhost\nx = ${myorigin}/$(mydomain) $$5\ny = ${unset?yes}${unset:no}${myhostname?{set}}\n");
        assert_eq!(
            c.text("mydestination").unwrap(),
            "server.hoge.org, localhost"
        );
        assert_eq!(c.text("x").unwrap(), "server.hoge.org/hoge.org $5");
        assert_eq!(c.text("y").unwrap(), "noset");
    }

    #[test]
    fn loops_are_errors_naming_the_chain_and_line() {
        let c = cf("a = $b\nb = ${c}\nc = x $a\nself = $self\n");
        let e = c.value("a").unwrap_err();
        assert_eq!(e.line, 1);
        assert!(e.text.contains("$a -> $b -> $c -> $a"), "{}", e.text);
        let e = c.value("self").unwrap_err();
        assert!(e.text.contains("$self -> $self"), "{}", e.text);
    }

    #[test]
    fn bad_lines_are_reported_and_the_rest_kept() {
        let (c, problems) = parse("main.cf", "a = 1\njunk here\n= x\nb = 2\n");
        assert_eq!(problems.len(), 2);
        assert_eq!((problems[0].line, problems[1].line), (2, 3));
        assert_eq!(c.raw("b"), Some("2"));
    }

    #[test]
    fn overrides_win_over_the_file() {
        let c = cf("mynetworks = 10.0.0.0/8\n");
        let o = c.with_overrides(&[("mynetworks".into(), "127.0.0.1/32".into())]);
        assert_eq!(o.text("mynetworks").unwrap(), "127.0.0.1/32");
    }

    #[test]
    fn lists_split_at_commas_and_blanks() {
        assert_eq!(list("a, b  c,,d"), vec!["a", "b", "c", "d"]);
    }
}
