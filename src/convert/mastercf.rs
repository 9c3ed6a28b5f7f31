//! master.cf: the services, their `-o name=value` overrides and, for
//! pipe(8) services, `flags=`, `user=` and `argv=`. Pure.
//!
//! Syntax (master(5)): one service per logical line, `service type
//! private unpriv chroot wakeup maxproc command args...`, fields separated
//! by any white space; lines starting with white space continue the
//! service; `#` lines are comments (also between continuation lines).
//! `-o name=value`, `-oname=value` and `-o { name = value }` are
//! overrides; `{ ... }` keeps spaces inside one argument (Postfix 3.0).

use super::maincf::logical_lines;
use super::Finding;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Service {
    /// `smtp`, `submission`, `localhost:10025`, `relay-mail01`.
    pub name: String,
    /// `inet`, `unix`, `fifo`, `pass`, `unix-dgram`.
    pub kind: String,
    /// The maxproc field; `None` for `-` (default_process_limit).
    pub maxproc: Option<u32>,
    /// `smtpd`, `smtp`, `pipe`, ...
    pub command: String,
    pub overrides: Vec<(String, String)>,
    /// Other arguments; for pipe, the `name=value` attributes before argv.
    pub args: Vec<String>,
    /// pipe(8) `argv=`: the command and its arguments.
    pub argv: Vec<String>,
    pub line: usize,
}

impl Service {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.overrides
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// A pipe attribute such as `flags=` or `user=`.
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.args
            .iter()
            .find_map(|a| a.strip_prefix(name).and_then(|r| r.strip_prefix('=')))
    }
}

/// The services of `text`; lines that are not services are problems.
pub fn parse(file: &str, text: &str) -> (Vec<Service>, Vec<Finding>) {
    let mut out = Vec::new();
    let mut problems = Vec::new();
    for (line, logical) in logical_lines(text) {
        match service(&logical) {
            Ok(mut s) => {
                s.line = line;
                out.push(s);
            }
            Err(e) => problems.push(Finding::error(file, line, "", &e)),
        }
    }
    (out, problems)
}

/// Splits at white space; `{ ... }` is one word (braces and the blanks
/// just inside them removed).
fn words(s: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut chars = s.char_indices().peekable();
    while let Some(&(i, c)) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        if c == '{' {
            let mut depth = 0;
            let mut end = None;
            for (j, d) in chars.by_ref() {
                match d {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            end = Some(j);
                            break;
                        }
                    }
                    _ => {}
                }
            }
            let end = end.ok_or_else(|| format!("unclosed `{{` in {:?}", &s[i..]))?;
            out.push(s[i + 1..end].trim().to_string());
            continue;
        }
        let mut end = s.len();
        while let Some(&(j, d)) = chars.peek() {
            if d.is_whitespace() {
                end = j;
                break;
            }
            chars.next();
        }
        out.push(s[i..end].to_string());
    }
    Ok(out)
}

fn service(logical: &str) -> Result<Service, String> {
    let w = words(logical)?;
    if w.len() < 8 {
        return Err(format!(
            "{} fields where a service has at least 8 (service type private unpriv chroot wakeup maxproc command)",
            w.len()
        ));
    }
    let kind = w[1].as_str();
    if !["inet", "unix", "unix-dgram", "fifo", "pass"].contains(&kind) {
        return Err(format!(
            "service {:?}: type {kind:?} is not one of inet, unix, unix-dgram, fifo, pass",
            w[0]
        ));
    }
    let maxproc = match w[6].as_str() {
        "-" => None,
        m => Some(
            m.parse()
                .map_err(|_| format!("service {:?}: maxproc {m:?} is not a number or -", w[0]))?,
        ),
    };
    let mut s = Service {
        name: w[0].clone(),
        kind: kind.to_string(),
        maxproc,
        command: w[7].clone(),
        ..Default::default()
    };
    let mut rest = w[8..].iter();
    while let Some(a) = rest.next() {
        if s.command == "pipe" && a.starts_with("argv=") {
            s.argv.push(a["argv=".len()..].to_string());
            s.argv.extend(rest.by_ref().cloned());
            break;
        }
        let setting = if a == "-o" {
            match rest.next() {
                Some(v) => v.as_str(),
                None => return Err(format!("service {:?}: -o without name=value", s.name)),
            }
        } else if let Some(v) = a.strip_prefix("-o") {
            v
        } else {
            s.args.push(a.clone());
            continue;
        };
        let Some((n, v)) = setting.split_once('=') else {
            return Err(format!(
                "service {:?}: -o {setting:?} is not name=value",
                s.name
            ));
        };
        s.overrides
            .push((n.trim().to_string(), v.trim().to_string()));
    }
    if s.command == "pipe" && s.argv.first().is_none_or(|a| a.is_empty()) {
        return Err(format!("service {:?}: pipe without argv=", s.name));
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn services_with_overrides_odd_spacing_and_comments() {
        let text = "# header\nsmtp\tinet  n - n - - smtpd\n\
            amavis    unix  -       -       n       -       4       smtp\n  -o smtp_data_done_timeout=1200\n# a comment between\n\t-o smtp_send_xforward_command=yes\n\
            localhost:10025 inet   n       -       n       -       -       smtpd\n  -o content_filter=\n  -o mynetworks=192.168.0.0/24,127.0.0.1/32\n\
            sub inet n - n - - smtpd -o { smtpd_client_restrictions = permit_sasl_authenticated, reject } -osyslog_name=x\n";
        let (s, problems) = parse("master.cf", text);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(s.len(), 4);
        assert_eq!((s[0].name.as_str(), s[0].line), ("smtp", 2));
        assert_eq!(s[1].maxproc, Some(4));
        assert_eq!(s[1].get("smtp_data_done_timeout"), Some("1200"));
        assert_eq!(s[1].get("smtp_send_xforward_command"), Some("yes"));
        assert_eq!(s[2].name, "localhost:10025");
        assert_eq!(s[2].get("content_filter"), Some(""));
        assert_eq!(
            s[3].get("smtpd_client_restrictions"),
            Some("permit_sasl_authenticated, reject")
        );
        assert_eq!(s[3].get("syslog_name"), Some("x"));
    }

    #[test]
    fn pipe_attributes_and_argv() {
        let text = "procmail  unix  -       n       n       -       -       pipe\n  flags=R user=postfixadmin argv=/usr/bin/procmail -t -m USER=${user} DOMAIN=${nexthop} EXTENSION=${extension} /etc/procmailrc\n";
        let (s, problems) = parse("master.cf", text);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(s[0].attr("flags"), Some("R"));
        assert_eq!(s[0].attr("user"), Some("postfixadmin"));
        assert_eq!(s[0].argv[0], "/usr/bin/procmail");
        assert_eq!(s[0].argv.last().unwrap(), "/etc/procmailrc");
        assert_eq!(s[0].argv.len(), 7);
    }

    #[test]
    fn broken_lines_name_their_line() {
        let (s, p) = parse("master.cf", "smtp inet n - n\nx bogus n - n - - smtpd\ny unix - - n - many smtp\nz unix - n n - - pipe flags=R\nok unix - - n - - smtp\n");
        assert_eq!(s.len(), 1);
        let lines: Vec<usize> = p.iter().map(|f| f.line).collect();
        assert_eq!(lines, vec![1, 2, 3, 4]);
        assert!(p[0].text.contains("at least 8"));
    }
}
