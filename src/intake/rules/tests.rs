use std::time::{Duration, Instant};

use super::*;
use crate::smtp::reply::{Esc, Reply};

const FILE: &str = "/etc/postern/header_checks";

fn table(text: &str) -> Table {
    Table::parse(FILE, text, Kind::Header).unwrap_or_else(|e| {
        panic!(
            "{}",
            e.iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        )
    })
}

fn act(t: &Table, input: &str) -> Option<Action> {
    t.first_match(input).map(|h| h.action)
}

/// The errors of a table that must be refused, as printed.
fn errors(text: &str) -> Vec<String> {
    match Table::parse(FILE, text, Kind::Header) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e.iter().map(|e| e.to_string()).collect(),
    }
}

fn one_error(text: &str) -> String {
    let e = errors(text);
    assert_eq!(e.len(), 1, "{e:?}");
    e.into_iter().next().expect("one")
}

#[test]
fn the_seed_rule_drops_received_headers_in_any_case() {
    let t = table("/^Received:/ IGNORE\n");
    assert_eq!(
        act(&t, "Received: from a\n\tby b; Mon, 1 Jan 2024"),
        Some(Action::Ignore)
    );
    assert_eq!(act(&t, "received: from a"), Some(Action::Ignore));
    assert_eq!(act(&t, "X-Received: from a"), None);
    assert_eq!(t.first_match("Received: x").map(|h| h.line), Some(1));
}

#[test]
fn a_folded_header_is_matched_as_one() {
    let t = table("/^Subject:.*free money/ REJECT spam\n/^X-Tag: one$/ WARN tag\n");
    let folded = "Subject: hello\n\tfree money inside";
    assert!(matches!(act(&t, folded), Some(Action::Reject(_))));
    // `$` is the end of the whole header, not of its first line.
    assert_eq!(act(&t, "X-Tag: one\n\ttwo"), None);
    assert_eq!(act(&t, "X-Tag: one"), Some(Action::Warn("tag".into())));
}

#[test]
fn flags_toggle_case_multiline_and_basic_syntax() {
    let t = table("/^subject: Hi/i WARN exact case\n");
    assert_eq!(act(&t, "Subject: Hi"), None);
    assert_eq!(
        act(&t, "subject: Hi"),
        Some(Action::Warn("exact case".into()))
    );
    // ii toggles twice: case ignored again.
    assert!(act(&table("/^subject/ii DUNNO\n"), "SUBJECT: x").is_some());

    let t = table("/^X-Spam: yes$/m WARN line\n/a.b/m INFO dot\n");
    assert_eq!(
        act(&t, "X-Spam: yes\n\tand more"),
        Some(Action::Warn("line".into()))
    );
    assert_eq!(act(&t, "X: a\nb"), None, "with m, `.` stops at a newline");

    let t = table("/^Subject: \\(a\\+\\)b$/x WARN got $1\n/^X: a+$/x INFO literal plus\n");
    assert_eq!(
        act(&t, "Subject: aaab"),
        Some(Action::Warn("got aaa".into()))
    );
    assert_eq!(act(&t, "X: a+"), Some(Action::Info("literal plus".into())));
    assert_eq!(act(&t, "X: aa"), None);
}

#[test]
fn delimiters_negation_and_the_second_pattern() {
    let t = table(
        "|^From:.*@example\\.com| WARN from us\n\
         /^X-Path: a\\/b/ WARN slash\n\
         !/^(To|Cc|Subject|From|X-Path|Date):/ INFO other\n\
         /^Date:/!/2024/ WARN not this year\n",
    );
    assert_eq!(
        act(&t, "From: joe@example.com"),
        Some(Action::Warn("from us".into()))
    );
    assert_eq!(act(&t, "X-Path: a/b"), Some(Action::Warn("slash".into())));
    assert_eq!(act(&t, "X-Other: 1"), Some(Action::Info("other".into())));
    assert_eq!(
        act(&t, "Date: 1 Jan 2023"),
        Some(Action::Warn("not this year".into()))
    );
    assert_eq!(act(&t, "Date: 1 Jan 2024"), None);
}

#[test]
fn if_blocks_nest_and_skip() {
    let t = table(
        "if /^Subject:/\n\
         if !/urgent/\n\
         /money/ REJECT no money\n\
         endif\n\
         /^Subject: hi/ WARN hi\n\
         endif\n\
         /money/ INFO outside\n",
    );
    assert!(matches!(act(&t, "Subject: money"), Some(Action::Reject(_))));
    assert_eq!(
        act(&t, "Subject: urgent money"),
        Some(Action::Info("outside".into()))
    );
    assert_eq!(act(&t, "Subject: hi"), Some(Action::Warn("hi".into())));
    assert_eq!(
        act(&t, "X-Note: money"),
        Some(Action::Info("outside".into()))
    );
    assert_eq!(t.first_match("X-Note: money").map(|h| h.line), Some(7));
    // Keywords are case-insensitive and need no space before the pattern.
    assert!(act(&table("IF/^a/\n/b/ DUNNO\nENDIF\n"), "ab").is_some());
}

#[test]
fn comments_blank_lines_and_continuations() {
    let t = table(
        "# a comment\n\
         \n\
         /^Subject:\n   \
         spam/ REJECT go\n  \
         # a comment inside the rule\n\n  \
         away\r\n\
         /^X-A:/ WARN one\n",
    );
    // Continuation lines are joined without the newline, blanks kept.
    assert_eq!(
        act(&t, "Subject:   spam"),
        Some(Action::Reject(Reply::new(550, Esc(5, 7, 1), "go  away")))
    );
    assert_eq!(t.first_match("X-A: 1").map(|h| h.line), Some(8));
}

#[test]
fn each_action_with_its_text() {
    let t = table(
        "/^A:/ ignore\n/^B:/ STRIP b\n/^C:/ Warn c\n/^D:/ INFO d\n/^E:/ DISCARD e\n\
         /^F:/ HOLD f\n/^G:/ FILTER smtp:[127.0.0.1]:10025\n/^H:/ REPLACE X-H: new\n\
         /^I:/ PREPEND X-Seen: yes\n/^J:/ REDIRECT spam@example.org\n/^K:/ BCC copy@example.org\n\
         /^L:/ PASS l\n/^M:/ DUNNO\n/^N:/ OK\n/^O:/ IGNORE with ignored text\n",
    );
    let want = [
        ("A", Action::Ignore),
        ("B", Action::Strip("b".into())),
        ("C", Action::Warn("c".into())),
        ("D", Action::Info("d".into())),
        ("E", Action::Discard("e".into())),
        ("F", Action::Hold("f".into())),
        ("G", Action::Filter("smtp:[127.0.0.1]:10025".into())),
        ("H", Action::Replace("X-H: new".into())),
        ("I", Action::Prepend("X-Seen: yes".into())),
        ("J", Action::Redirect("spam@example.org".into())),
        ("K", Action::Bcc("copy@example.org".into())),
        ("L", Action::Pass("l".into())),
        ("M", Action::Dunno),
        ("N", Action::Dunno),
        ("O", Action::Ignore),
    ];
    for (name, action) in want {
        assert_eq!(act(&t, &format!("{name}: x")), Some(action), "{name}");
    }
    let ends: Vec<bool> = ["E", "J", "L", "C", "F"]
        .iter()
        .map(|n| act(&t, &format!("{n}: x")).expect("matches").ends_checks())
        .collect();
    assert_eq!(ends, [true, true, true, false, false]);
}

#[test]
fn reject_codes_and_texts() {
    let t = table(
        "/^A:/ REJECT\n/^B:/ REJECT no spam here\n/^C:/ REJECT 4.7.1 try later\n\
         /^D:/ REJECT 5.7.0 policy\n/^E:/ REJECT 5.7.0\n",
    );
    let r = |n: &str| match act(&t, &format!("{n}: x")) {
        Some(Action::Reject(r)) => r,
        other => panic!("{other:?}"),
    };
    assert_eq!(r("A"), CONTENT_REJECTED);
    assert_eq!(r("A").to_string(), "550 5.7.1 message content rejected");
    assert_eq!(r("B").to_string(), "550 5.7.1 no spam here");
    assert_eq!(r("C").to_string(), "451 4.7.1 try later");
    assert!(r("C").is_transient());
    assert_eq!(r("D").to_string(), "550 5.7.0 policy");
    assert_eq!(r("E").to_string(), "550 5.7.0 message content rejected");
    assert!(one_error("/x/ REJECT 2.0.0 fine\n").contains("must start with 4"));
}

#[test]
fn dollar_substitutions() {
    let t = table(
        "/^Subject: (.*)/ WARN subject is $1\n\
         /^To: ([^@]*)@(.*)$/ INFO ${2}/$(1) costs $$5\n\
         /^X: (a*)b/ INFO [$1]\n",
    );
    assert_eq!(
        act(&t, "Subject: hello\n\tworld"),
        Some(Action::Warn("subject is hello\n\tworld".into()))
    );
    assert_eq!(
        act(&t, "To: joe@example.org"),
        Some(Action::Info("example.org/joe costs $5".into()))
    );
    // An empty group gives an empty text.
    assert_eq!(act(&t, "X: b"), Some(Action::Info("[]".into())));
}

#[test]
fn header_tables_need_headers_body_tables_do_not() {
    assert!(one_error("/^X:/ REPLACE just text\n").contains("a header `name: value`"));
    assert!(one_error("/^X: (.*)/ REPLACE $1\n").contains("not from $n"));
    assert!(one_error("/^X:/ PREPEND\n").contains("the text of a line"));
    let body = Table::parse(
        "body_checks",
        "/^begin (.*)/ REPLACE $1 replaced\n",
        Kind::Body,
    )
    .expect("body");
    assert_eq!(
        body.first_match("begin 644 x").map(|h| h.action),
        Some(Action::Replace("644 x replaced".into()))
    );
    assert!(one_error("/x/ FILTER amavis\n").contains("transport:destination"));
    assert!(one_error("/x/ REDIRECT nobody\n").contains("user@domain"));
    assert!(one_error("/x(.*)/ BCC $1\n").contains("the `@` written out"));
}

#[test]
fn syntax_errors_name_file_and_line() {
    let e = one_error("/^Subject: unterminated IGNORE\n");
    assert!(e.starts_with(&format!("{FILE}:1: no closing `/`")), "{e}");
    let e = one_error("/^X:/ SHRUG\n");
    assert!(
        e.contains("unknown action `SHRUG`; allowed: IGNORE, STRIP"),
        "{e}"
    );
    assert!(one_error("/x/\n").contains("no action"));
    assert!(one_error("/x/q IGNORE\n").contains("unknown flag `q`"));
    assert!(one_error("Received: IGNORE\n").contains("not a rule"));
    assert!(one_error("  /x/ IGNORE\n").contains("no rule above it"));
    assert!(one_error("/(a)\\1/ IGNORE\n").contains("back-reference"));
    assert!(one_error("/foo(?!bar)/ IGNORE\n").contains("if !/pattern/"));
    assert!(one_error("/\\d+/ IGNORE\n").contains("[0-9]"));
    assert!(one_error("/^X: (a|ab)(c|bcd)/ WARN $1\n").contains("alternation"));
    assert!(one_error("/^X: (ab)+/ WARN $1\n").contains("repeats a group"));
    assert!(one_error("!/^X: (.*)/ WARN $1\n").contains("negated"));
    assert!(one_error("/^X: (.*)/ WARN $2\n").contains("has 1 group"));
    assert!(one_error("/x/ WARN $1abc\n").contains("${1}abc"));
    assert!(one_error("/x/ WARN ${1\n").contains("without its `}`"));
    assert!(one_error("/x/ WARN cost $\n").contains("`$$`"));
}

#[test]
fn if_and_endif_must_pair() {
    let e = one_error("/a/ DUNNO\nendif\n");
    assert!(
        e.starts_with(&format!("{FILE}:2: `endif` without an `if`")),
        "{e}"
    );
    let e = one_error("/a/ DUNNO\nif /b/\n/c/ WARN c\n");
    assert!(
        e.starts_with(&format!("{FILE}:2: this `if` has no `endif`")),
        "{e}"
    );
    let e = one_error("if /b/\n  /c/ WARN indented\nendif\n");
    assert!(e.contains("text after `if /pattern/`"), "{e}");
    // A bad `if` is one error, not a second one at its `endif`.
    assert_eq!(errors("if /(/\n/c/ DUNNO\nendif\n").len(), 1);
}

#[test]
fn a_bad_regex_at_line_12_says_line_12_and_every_error_is_reported() {
    let mut text = String::new();
    for i in 1..=11 {
        text.push_str(&format!("/^X-Header-{i}:/ IGNORE\n"));
    }
    text.push_str("/^Subject: [unclosed/ REJECT bad\n/ok/ DUNNO\n/^Y: (a)\\1/ WARN\n");
    let e = errors(&text);
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(
        e[0].starts_with(&format!("{FILE}:12: unmatched `[`")),
        "{}",
        e[0]
    );
    assert!(e[1].starts_with(&format!("{FILE}:14: ")), "{}", e[1]);
    let inline = Table::parse_at("postern.toml", 40, "/ok/ DUNNO\n/(/ IGNORE\n", Kind::Header);
    let e = inline.err().expect("refused");
    assert_eq!((e[0].file.as_str(), e[0].line), ("postern.toml", 41));
}

#[test]
fn input_stops_at_nul_like_a_c_string() {
    let t = table("/spam/ REJECT\n");
    assert_eq!(act(&t, "Subject: hi\0spam"), None);
    assert!(act(&t, "Subject: spam\0").is_some());
    // Raw 8-bit bytes are matched, and `$n` texts are made valid UTF-8.
    let t = table("/^Subject: (.*)/ WARN $1\n");
    let got = t
        .first_match(b"Subject: caf\xe9".as_slice())
        .map(|h| h.action);
    assert_eq!(got, Some(Action::Warn("caf\u{fffd}".into())));
}

#[test]
fn no_pattern_backtracks_for_ever() {
    // (a+)+$ on a long run of a's that ends wrong is exponential for a
    // backtracking engine; regex-lite is linear.
    let t = table("/(a+)+$/ REJECT\n/(x|x?)+y/ REJECT\n");
    let input = format!("Subject: {}b", "a".repeat(100_000));
    let start = Instant::now();
    assert_eq!(act(&t, &input), None);
    assert_eq!(act(&t, &format!("{}!", "x".repeat(100_000))), None);
    let took = start.elapsed();
    assert!(took < Duration::from_secs(10), "took {took:?}");
}

#[test]
fn a_pattern_too_big_once_compiled_is_refused() {
    let e = one_error("/(a{1,1000}){1,1000}/ IGNORE\n");
    assert!(
        e.contains("too big or too deeply nested once compiled"),
        "{e}"
    );
    assert!(one_error(&format!("/a{}/ IGNORE\n", "*".repeat(100_000))).contains("in a row"));
}
