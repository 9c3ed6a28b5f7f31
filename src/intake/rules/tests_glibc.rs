//! The translation (translate.rs, bracket.rs) against glibc: each case's
//! expected answer is what glibc 2.36's regcomp()/regexec() returned for
//! it in the C locale (match span, then each group's span, -1 for a group
//! that took no part). Flags: E extended, B basic, I REG_ICASE, N
//! REG_NEWLINE. Random patterns were compared the same way while writing
//! the translation; these keep the corners that mattered.

use super::as_chars;
use super::translate::{translate, Flags};

type Case = (
    &'static str,
    &'static [u8],
    &'static [u8],
    Option<&'static [(i32, i32)]>,
);

const CASES: &[Case] = &[
    ("EI", br"^Received:", b"received: from x", Some(&[(0, 9)])),
    ("E", br"^Received:", b"received: from x", None),
    // A folded header is one string: `.` crosses its line breaks, `$` is its end.
    (
        "EI",
        br"^Subject:.*money",
        b"Subject: hi\n\tfree money",
        Some(&[(0, 23)]),
    ),
    ("EI", br"^Subject: hi$", b"Subject: hi\n\tthere", None),
    (
        "EIN",
        b"^\tthere$",
        b"Subject: hi\n\tthere",
        Some(&[(12, 18)]),
    ),
    ("EI", br"a.b", b"a\nb", Some(&[(0, 3)])),
    ("EIN", br"a.b", b"a\nb", None),
    ("EI", br"a[^x]b", b"a\nb", Some(&[(0, 3)])),
    ("EIN", br"a[^x]b", b"a\nb", None),
    // ... but `\W` still matches the newline under REG_NEWLINE.
    ("EIN", br"a\Wb", b"a\nb", Some(&[(0, 3)])),
    // REG_ICASE upper-cases the range ends: [@-a] is [@-A].
    ("EI", br"[@-a]", b"a", Some(&[(0, 1)])),
    ("EI", br"[@-a]", b"b", None),
    ("EI", br"[[:upper:]]", b"x", Some(&[(0, 1)])),
    ("E", br"[[:upper:]]", b"x", None),
    // A backslash in a bracket is itself.
    ("EI", br"[\/]", b"\\", Some(&[(0, 1)])),
    // Stacked repetitions nest; `+?` is not lazy.
    ("EI", br"a**", b"aaa", Some(&[(0, 3)])),
    ("EI", br"a+?", b"a", Some(&[(0, 1)])),
    ("EI", br"x{,2}y", b"xxy", Some(&[(0, 3)])),
    // An unmatched `)` is a literal in ERE.
    ("EI", br"a)", b"a)", Some(&[(0, 2)])),
    ("EI", br"\<to\>", b"go to it", Some(&[(3, 5)])),
    ("EI", br"\<to\>", b"toto", None),
    ("EI", br"\bfoo\B", b"foobar", Some(&[(0, 3)])),
    ("EI", br"\`a", b"ba", None),
    ("EI", br"a\'", b"ab", None),
    // Basic regexps (the x flag).
    ("BI", br"a+", b"a+", Some(&[(0, 2)])),
    ("BI", br"a+", b"aa", None),
    ("BI", br"a\+", b"aa", Some(&[(0, 2)])),
    ("BI", br"\(ab\)*c", b"ababc", Some(&[(0, 5), (2, 4)])),
    ("BI", br"*a", b"*a", Some(&[(0, 2)])),
    ("BI", br"^*a", b"*a", Some(&[(0, 2)])),
    ("BI", br"x^", b"x^", Some(&[(0, 2)])),
    ("BI", br"$x", b"$x", Some(&[(0, 2)])),
    ("BI", br"a\|b", b"b", Some(&[(0, 1)])),
    ("BI", br"a\{2\}", b"aa", Some(&[(0, 2)])),
    // Bytes, not characters: `*` repeats the last byte of é, `.` takes one
    // byte, and case folding is ASCII only.
    ("EI", b"\xc3\xa9*", b"\xc3\xa9\xa9", Some(&[(0, 3)])),
    ("EI", "é".as_bytes(), "É".as_bytes(), None),
    ("EI", "[é]".as_bytes(), b"\xa9", Some(&[(0, 1)])),
    ("EI", br".", b"\xff", Some(&[(0, 1)])),
    ("EI", br"-[[:space:]]-", b"-\x0b-", Some(&[(0, 3)])),
    ("EI", br"a|b|", b"x", Some(&[(0, 0)])),
    ("EI", br"()", b"x", Some(&[(0, 0), (0, 0)])),
    ("EI", br"(x)(y)?", b"x", Some(&[(0, 1), (0, 1), (-1, -1)])),
    (
        "EI",
        br"^Subject: (.*)$",
        b"Subject: a\n\tb",
        Some(&[(0, 13), (9, 13)]),
    ),
    (
        "EI",
        br"^To: ([^@]*)@(.*)$",
        b"To: joe@example.org",
        Some(&[(0, 19), (4, 7), (8, 19)]),
    ),
];

fn flags(f: &str) -> Flags {
    Flags {
        extended: f.contains('E'),
        icase: f.contains('I'),
        newline: f.contains('N'),
    }
}

#[test]
fn matches_what_glibc_matches() {
    for &(f, pattern, input, expected) in CASES {
        let show = String::from_utf8_lossy(pattern);
        let t = translate(pattern, flags(f)).unwrap_or_else(|e| panic!("{f} {show}: {e}"));
        let re = regex_lite::Regex::new(&t.rust).unwrap_or_else(|e| panic!("{f} {show}: {e}"));
        let chars = as_chars(input);
        // Offsets in bytes of the input, not of its char form.
        let at = |i: usize| chars[..i].chars().count() as i32;
        let got: Option<Vec<(i32, i32)>> = re.captures(&chars).map(|c| {
            c.iter()
                .map(|m| m.map_or((-1, -1), |m| (at(m.start()), at(m.end()))))
                .collect()
        });
        assert_eq!(
            got.as_deref(),
            expected,
            "{f} /{show}/ on {:?} (as {})",
            String::from_utf8_lossy(input),
            t.rust
        );
    }
}

/// Patterns glibc refuses are refused too; those it accepts with a meaning
/// regex-lite cannot express (or that a user surely did not mean) are
/// refused with the reason.
#[test]
fn refuses_what_cannot_be_exact() {
    let cases: &[(&str, &[u8], &str)] = &[
        ("EI", br"(a)\1", "back-reference"),
        ("BI", br"\(a\)\1", "back-reference"),
        ("EI", br"foo(?=bar)", "`(?` is Perl syntax"),
        ("EI", br"(?i)foo", "`(?` is Perl syntax"),
        ("EI", br"\d+", "`\\d` means the plain character `d`"),
        ("EI", br"a\nb", "`\\n` means the plain character `n`"),
        ("EI", br"[[.a.]]", "collating symbols"),
        ("EI", br"[[=a=]]", "collating symbols"),
        ("EI", br"[[:word:]]", "unknown character class [:word:]"),
        ("EI", br"$.", "`$` with more pattern after it"),
        ("EI", br"a.^b", "`^` with more pattern before it"),
        // glibc refuses these.
        ("EI", br"*a", "nothing before it to repeat"),
        ("EI", br"^*a", "nothing before it to repeat"),
        ("EI", br"a{3,1}", "the minimum is above the maximum"),
        ("EI", br"a{32768}", "above 32767"),
        ("EI", br"a{x}", "must start an interval"),
        ("EI", br"[Z-a]", "runs backwards (with the i flag"),
        ("EI", br"[a-c-e]", "`-` inside a bracket expression"),
        ("EI", br"[[:alpha:]-z]", "`-` inside a bracket expression"),
        ("EI", br"[abc", "unmatched `[`"),
        ("EI", br"(abc", "unmatched `(`"),
        ("BI", br"a\)", "unmatched `\\)`"),
        ("BI", br"a**", "right after a repetition"),
        ("BI", br"\{1\}", "nothing before it to repeat"),
        ("EI", br"abc\", "trailing backslash"),
    ];
    for &(f, pattern, want) in cases {
        let show = String::from_utf8_lossy(pattern);
        match translate(pattern, flags(f)) {
            Ok(t) => panic!("{f} /{show}/ accepted as {}", t.rust),
            Err(e) => assert!(e.contains(want), "{f} /{show}/: {e}"),
        }
    }
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    let deep = format!("{}a{}", "(".repeat(100_000), ")".repeat(100_000));
    let e = translate(deep.as_bytes(), flags("EI")).unwrap_err();
    assert!(e.contains("nested deeper than"), "{e}");
}
