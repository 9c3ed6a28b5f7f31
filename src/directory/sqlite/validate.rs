//! Checks of what `postern user|domain|alias` may write: domain names,
//! addresses, alias targets, maildir paths; and the timestamp format of
//! PostfixAdmin's `datetime` columns. No SQL here.

use super::admin::{invalid, AdminError};
use crate::smtp::address::Address;

/// The entries of an `alias.goto` list.
pub(super) fn goto_list(goto: &str) -> Vec<String> {
    goto.split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(String::from)
        .collect()
}

/// A domain name: lower-cased LDH labels, as PostfixAdmin accepts them.
pub fn domain_name(s: &str) -> Result<String, AdminError> {
    let d = s.trim().trim_end_matches('.').to_ascii_lowercase();
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if d.is_empty() || d.len() > 253 || !d.split('.').all(label_ok) {
        return invalid(format!(
            "{s:?} is not a valid domain name (letters, digits, hyphens and dots, e.g. example.test)"
        ));
    }
    Ok(d)
}

/// A mailbox or alias address: `local@domain`, ASCII, no quoting, stored
/// lower-cased.
pub(super) fn plain_address(s: &str) -> Result<Address, AdminError> {
    let bad = || {
        AdminError::Invalid(format!(
            "{s:?} is not a valid mail address (expected local-part@domain)"
        ))
    };
    let a = Address::parse(s.trim(), false).map_err(|_| bad())?;
    if a.is_domain_literal() || a.to_string() != a.key() {
        return Err(bad());
    }
    let domain = domain_name(&a.domain)?;
    Ok(Address::new(&a.local.to_ascii_lowercase(), &domain))
}

pub(super) fn mailbox_address(s: &str) -> Result<Address, AdminError> {
    let a = plain_address(s)?;
    // The local part becomes a directory name.
    if a.local.contains('/') {
        return invalid(format!("{s:?}: a mailbox name cannot contain '/'"));
    }
    Ok(a)
}

/// An alias address, or `@domain` (a catch-all); returns (address, domain).
pub(super) fn alias_address(s: &str) -> Result<(String, String), AdminError> {
    if let Some(d) = s.trim().strip_prefix('@') {
        let d = domain_name(d)?;
        return Ok((format!("@{d}"), d));
    }
    let a = plain_address(s)?;
    Ok((a.key(), a.domain))
}

/// A target of an alias: any deliverable address (it may be remote).
pub(super) fn target_address(s: &str) -> Result<String, AdminError> {
    let a = Address::parse(s.trim(), true)
        .map_err(|_| AdminError::Invalid(format!("target {s:?} is not a valid mail address")))?;
    let t = a.to_string();
    if t.contains(',') {
        return invalid(format!(
            "target {s:?} contains a comma, which alias lists cannot hold"
        ));
    }
    if a.is_domain_literal() {
        return Ok(t);
    }
    domain_name(&a.domain)
        .map_err(|_| AdminError::Invalid(format!("target {s:?} has an invalid domain")))?;
    Ok(t)
}

/// A maildir relative to the mailbox base, with no `..` and a trailing `/`.
pub(super) fn maildir_path(s: &str) -> Result<String, AdminError> {
    use std::path::{Component, Path};
    let ok = !s.is_empty()
        && !s.contains('\0')
        && Path::new(s)
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    if !ok {
        return invalid(format!(
            "maildir {s:?} must be a path relative to the mailbox base, without '..' (e.g. example.test/alice/)"
        ));
    }
    Ok(if s.ends_with('/') {
        s.to_string()
    } else {
        format!("{s}/")
    })
}

/// Now as PostfixAdmin's `datetime` columns hold it (UTC).
pub(super) fn now() -> String {
    let t = crate::clock::now_secs();
    let (y, mo, d) = crate::timefmt::civil(t);
    let s = t.rem_euclid(86_400);
    format!(
        "{y:04}-{mo:02}-{d:02} {:02}:{:02}:{:02}",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_and_lower_cased() {
        assert_eq!(domain_name("Example.TEST.").unwrap(), "example.test");
        assert!(domain_name("bad_domain.test").is_err());
        assert!(domain_name("-x.test").is_err());
        assert_eq!(
            mailbox_address("Alice@Example.test").unwrap().key(),
            "alice@example.test"
        );
        assert!(mailbox_address("\"a b\"@example.test").is_err());
        assert!(mailbox_address("a/b@example.test").is_err());
        assert!(mailbox_address("alice").is_err());
        assert_eq!(
            alias_address("@Catch.test").unwrap(),
            ("@catch.test".into(), "catch.test".into())
        );
        assert!(target_address("x@remote.test").is_ok());
        assert!(target_address("\"a,b\"@remote.test").is_err());
        assert!(maildir_path("../x").is_err());
        assert_eq!(maildir_path("example.test/a").unwrap(), "example.test/a/");
    }

    #[test]
    fn timestamps_look_like_mysql_datetime() {
        let n = now();
        assert_eq!(n.len(), 19);
        assert_eq!(&n[4..5], "-");
        assert_eq!(&n[10..11], " ");
    }
}
