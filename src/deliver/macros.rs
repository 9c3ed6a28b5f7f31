//! The macros of a pipe's argv (pipe(8)): `$name`, `${name}`, `$(name)`
//! and `$$`, and how a recipient's local part splits into user and
//! extension. Pure: strings in, strings out.

use std::collections::HashMap;

/// `bob+list` → ("bob", "list") with delimiter "+"; postmaster and
/// mailer-daemon are never split.
pub fn split_extension(local: &str, delimiter: &str) -> (String, String) {
    let lower = local.to_ascii_lowercase();
    if delimiter.is_empty() || lower == "postmaster" || lower == "mailer-daemon" {
        return (local.to_string(), String::new());
    }
    match local.find(|c| delimiter.contains(c)) {
        Some(i) if i > 0 => (local[..i].to_string(), local[i + 1..].to_string()),
        _ => (local.to_string(), String::new()),
    }
}

/// The local part a command is told about: `local`, or, when it has no
/// extension, `local` with the extension of the envelope recipient
/// `orig`. The directory finds `alice+lists@` as the mailbox `alice@`
/// (and an alias's targets carry no extension); Postfix propagates such
/// an unmatched extension to the final address, so `${extension}`,
/// `${recipient}` and local(8)'s LOCAL, RECIPIENT, EXTENSION keep it.
pub fn with_extension(local: &str, orig: &str, delimiter: &str) -> String {
    if !split_extension(local, delimiter).1.is_empty() {
        return local.to_string();
    }
    let Some((orig_local, _)) = orig.rsplit_once('@') else {
        return local.to_string();
    };
    let (orig_user, orig_ext) = split_extension(orig_local, delimiter);
    match orig_local[orig_user.len()..].chars().next() {
        Some(sep) if !orig_ext.is_empty() => format!("{local}{sep}{orig_ext}"),
        _ => local.to_string(),
    }
}

/// Does `arg` use macro `name` (`$name`, `${name}`, `$(name)`)?
pub fn uses(arg: &str, name: &str) -> bool {
    arg.contains(&format!("${{{name}}}"))
        || arg.contains(&format!("$({name})"))
        || arg.match_indices(&format!("${name}")).any(|(i, m)| {
            !arg[i + m.len()..].starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
        })
}

/// Expands `$name`, `${name}`, `$(name)` and `$$`; unknown names are kept.
pub fn expand(arg: &str, vars: &HashMap<&'static str, String>) -> String {
    let mut out = String::new();
    let mut rest = arg;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(a) = after.strip_prefix('$') {
            out.push('$');
            rest = a;
            continue;
        }
        let (name, len) = if let Some(b) = after.strip_prefix('{') {
            match b.find('}') {
                Some(e) => (&b[..e], e + 2),
                None => ("", 0),
            }
        } else if let Some(b) = after.strip_prefix('(') {
            match b.find(')') {
                Some(e) => (&b[..e], e + 2),
                None => ("", 0),
            }
        } else {
            let e = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            (&after[..e], e)
        };
        match vars.get(name) {
            Some(v) if len > 0 => {
                out.push_str(v);
                rest = &after[len..];
            }
            _ => {
                out.push('$');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macros_expand_in_their_three_forms() {
        let mut v = HashMap::new();
        v.insert("user", "bob".to_string());
        v.insert("extension", "lists".to_string());
        assert_eq!(expand("USER=${user}", &v), "USER=bob");
        assert_eq!(expand("$user+$(extension)", &v), "bob+lists");
        assert_eq!(expand("$$5 and $nosuch", &v), "$5 and $nosuch");
        assert!(
            uses("USER=${user}", "user") && uses("$user", "user") && !uses("$username", "user")
        );
    }

    #[test]
    fn an_extension_the_directory_dropped_goes_on_to_the_macros() {
        assert_eq!(
            with_extension("alice", "Alice-Lists@example.test", "+-"),
            "alice-Lists"
        );
        assert_eq!(
            with_extension("alice", "alice+lists@example.test", "+"),
            "alice+lists"
        );
        assert_eq!(
            with_extension("alice", "postmaster@example.test", "+"),
            "alice"
        );
        assert_eq!(
            with_extension("alice", "alice+lists@example.test", ""),
            "alice",
            "extensions off"
        );
        assert_eq!(
            with_extension("bob+own", "alice+lists@example.test", "+"),
            "bob+own",
            "its own stays"
        );
    }

    #[test]
    fn extensions_split_at_the_delimiter() {
        assert_eq!(
            split_extension("Bob+List", "+"),
            ("Bob".into(), "List".into())
        );
        assert_eq!(split_extension("bob", "+"), ("bob".into(), String::new()));
        assert_eq!(split_extension("+x", "+"), ("+x".into(), String::new()));
        assert_eq!(
            split_extension("postmaster+x", "+"),
            ("postmaster".into(), "x".into())
        );
        // As in Postfix, only the whole names are kept apart, so that a
        // `-` delimiter leaves MAILER-DAEMON alone.
        assert_eq!(
            split_extension("MAILER-DAEMON", "-"),
            ("MAILER-DAEMON".into(), String::new())
        );
        assert_eq!(
            split_extension("bob-list", "+-"),
            ("bob".into(), "list".into())
        );
    }
}
