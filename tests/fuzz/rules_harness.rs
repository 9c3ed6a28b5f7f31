//! The fuzz harness of the header and body rules (postern::intake::rules),
//! shared by the cargo-fuzz target `rules` (fuzz_targets/rules.rs,
//! nightly) and by the corpus replay in the normal test run
//! (tests/fuzz_replay_rules.rs, stable).
//!
//! Input layout: byte 0 bit 0 picks the table kind (1 = body_checks, 0 =
//! header_checks). The rest, up to the first 0xFF, is the table's text
//! (decoded lossily as UTF-8, as a config loader would); after the 0xFF
//! come the lines to check, separated by 0xFE (any other byte, NUL and
//! non-UTF-8 included, is part of a line).
//!
//! Invariants checked: parsing never panics and is deterministic; every
//! error names the file and a line of the text, in order, and moves with
//! the first line number; every hit names a rule's line; input after a NUL
//! changes nothing; a REJECT answers 550 with a 5.x.x code or 451 with a
//! 4.x.x one; FILTER keeps its `:`, REDIRECT and BCC their `@`, and in a
//! header table REPLACE and PREPEND produce a header; and when no pattern
//! can carry the `i` flag, flipping the case of ASCII letters in the input
//! changes no rule's decision (glibc folds case everywhere by default).

#![allow(dead_code)]

use postern::intake::rules::{Action, Kind, Table};

const FILE: &str = "/etc/postern/header_checks";

pub fn rules(data: &[u8]) {
    let Some((&head, rest)) = data.split_first() else {
        return;
    };
    let kind = if head & 1 == 1 {
        Kind::Body
    } else {
        Kind::Header
    };
    let (table, samples) = match rest.iter().position(|&b| b == 0xFF) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &[][..]),
    };
    let text = String::from_utf8_lossy(table);
    let lines = text.split('\n').count();

    let parsed = Table::parse(FILE, &text, kind);
    let shifted = Table::parse_at(FILE, 1000, &text, kind);
    let t = match (parsed, shifted) {
        (Err(errors), Err(moved)) => {
            check_errors(&errors, lines);
            assert_eq!(errors.len(), moved.len(), "errors depend on the first line");
            for (e, m) in errors.iter().zip(&moved) {
                assert_eq!((e.line + 999, &e.problem), (m.line, &m.problem));
            }
            let again = Table::parse(FILE, &text, kind)
                .err()
                .expect("parse is deterministic");
            assert_eq!(errors, again, "parse is not deterministic");
            return;
        }
        (Ok(t), Ok(_)) => t,
        _ => panic!("the first line number decides whether a table parses"),
    };

    let no_i_flag = !text.contains('i');
    for sample in samples.split(|&b| b == 0xFE) {
        let hit = t.first_match(sample);
        if let Some(h) = &hit {
            assert!(
                (1..=lines).contains(&h.line),
                "hit at line {} of {lines}",
                h.line
            );
            check_action(&h.action, kind);
        }
        let mut cut = sample.to_vec();
        cut.extend_from_slice(b"\0Received: spam money (x)\0");
        if !sample.contains(&0) {
            assert_eq!(t.first_match(&cut), hit, "input after NUL matters");
        }
        if no_i_flag {
            let flipped: Vec<u8> = sample
                .iter()
                .map(|&b| match b {
                    b'a'..=b'z' => b.to_ascii_uppercase(),
                    b'A'..=b'Z' => b.to_ascii_lowercase(),
                    _ => b,
                })
                .collect();
            let other = t.first_match(&flipped);
            assert_eq!(
                other.map(|h| h.line),
                hit.as_ref().map(|h| h.line),
                "letter case decides a case-insensitive table"
            );
        }
    }
}

fn check_errors(errors: &[postern::intake::rules::RuleError], lines: usize) {
    assert!(!errors.is_empty(), "refused without an error");
    let mut last = 0;
    for e in errors {
        assert_eq!(e.file, FILE);
        assert!(
            (1..=lines).contains(&e.line),
            "error at line {} of {lines}",
            e.line
        );
        assert!(e.line >= last, "errors out of order");
        last = e.line;
        assert!(!e.problem.is_empty());
        let shown = e.to_string();
        assert!(
            shown.starts_with(&format!("{FILE}:{}: ", e.line)),
            "{shown}"
        );
    }
}

fn check_action(a: &Action, kind: Kind) {
    match a {
        Action::Reject(r) => {
            let class = r.esc.expect("REJECT has an enhanced code").0;
            assert!(
                (r.code == 550 && class == 5) || (r.code == 451 && class == 4),
                "REJECT as {r}"
            );
        }
        Action::Filter(t) => assert!(t.contains(':'), "FILTER {t:?}"),
        Action::Redirect(t) | Action::Bcc(t) => assert!(t.contains('@'), "{a:?}"),
        Action::Replace(t) | Action::Prepend(t) if kind == Kind::Header => {
            let name = t
                .find(|c: char| !c.is_ascii_graphic() || c == ':')
                .unwrap_or(t.len());
            let rest = t[name..].trim_start_matches([' ', '\t']);
            assert!(name > 0 && rest.starts_with(':'), "not a header: {t:?}");
        }
        _ => {}
    }
}
