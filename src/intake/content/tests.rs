use super::*;

fn rules(header: &str, mime: &str, body: &str) -> Arc<ContentRules> {
    let t = |text: &str, kind| {
        Tables(
            (!text.is_empty())
                .then(|| Table::parse("t", text, kind).unwrap())
                .into_iter()
                .collect(),
        )
    };
    Arc::new(ContentRules {
        header: t(header, Kind::Header),
        mime_header: t(mime, Kind::Header),
        body: t(body, Kind::Body),
    })
}

/// Feeds `msg` one byte at a time and in one go; both must agree.
fn run(r: &Arc<ContentRules>, msg: &str) -> (String, Scanner) {
    let mut s = Scanner::new(r.clone(), false);
    let mut out = s.feed(msg.as_bytes());
    out.extend(s.finish());
    let mut s2 = Scanner::new(r.clone(), false);
    let mut out2 = Vec::new();
    for b in msg.as_bytes() {
        out2.extend(s2.feed(&[*b]));
    }
    out2.extend(s2.finish());
    assert_eq!(out, out2, "chunking changes nothing");
    (String::from_utf8(out).unwrap(), s)
}

#[test]
fn the_seeds_rule_removes_every_received_header_and_counts_them() {
    let r = rules("/^Received:/ IGNORE\n", "", "");
    let msg = "Received: from a\n\tby b; Tue, 1 Dec 2026\nReceived: from c\nDelivered-To: x@y.test\nSubject: hi\n\nReceived: in the body stays\n";
    let (out, s) = run(&r, msg);
    assert_eq!(
        out,
        "Delivered-To: x@y.test\nSubject: hi\n\nReceived: in the body stays\n"
    );
    assert_eq!(s.hops, 3);
}

#[test]
fn folded_headers_match_as_one_and_replace_prepend_write_lines() {
    let r = rules(
        "/^Subject:.*secret/ REPLACE Subject: [censored]\n/^X-Old:/ PREPEND X-New: 1\n",
        "",
        "",
    );
    let (out, _) = run(&r, "Subject: a\n  secret b\nX-Old: 2\n\nbody\n");
    assert_eq!(out, "Subject: [censored]\nX-New: 1\nX-Old: 2\n\nbody\n");
}

#[test]
fn verdicts_and_events() {
    let r = rules("/^X-Spam: yes/ HOLD spammy\n/^X-Scan:/ FILTER amavis:[127.0.0.1]:10026\n/^X-Warn:/ WARN look\n", "", "/^EICAR/ REJECT 5.7.0 virus\n");
    let (_, s) = run(
        &r,
        "X-Spam: yes\nX-Scan: 1\nX-Warn: 1\n\nline\nEICAR here\n",
    );
    assert_eq!(s.verdict.hold.as_deref(), Some("spammy"));
    assert_eq!(s.verdict.filter.as_deref(), Some("[127.0.0.1]:10026"));
    let reply = s.verdict.reject.clone().expect("rejected");
    assert_eq!(reply.code, 550);
    let kinds: Vec<_> = s.events.iter().map(|e| (e.place, e.line)).collect();
    assert_eq!(
        kinds,
        vec![
            (Place::Header, 1),
            (Place::Header, 2),
            (Place::Header, 3),
            (Place::Body, 1)
        ]
    );
    assert!(s.verdict.reroutes());
}

#[test]
fn mime_part_headers_go_through_their_own_table_and_body_lines_through_body_checks() {
    let r = rules(
        "/^Subject:/ WARN top\n",
        "/^Content-Type:.*name=.*\\.exe/ REJECT no programs\n",
        "/^secret$/ IGNORE\n",
    );
    let msg = "Subject: s\nContent-Type: multipart/mixed;\n boundary=\"XX\"\n\npreamble\n--XX\nContent-Type: text/plain\n\nsecret\nkeep\n--XX\nContent-Type: application/octet-stream; name=\"a.exe\"\n\nAAAA\n--XX--\nepilogue\n";
    let (out, s) = run(&r, msg);
    assert!(
        !out.contains("\nsecret\n") && out.contains("\nkeep\n"),
        "{out}"
    );
    assert_eq!(s.verdict.reject.as_ref().map(|r| r.code), Some(550));
    assert_eq!(
        s.events
            .iter()
            .filter(|e| e.place == Place::MimeHeader)
            .count(),
        1
    );
    // Part headers are not the message's own: no Subject WARN twice.
    assert_eq!(
        s.events.iter().filter(|e| e.place == Place::Header).count(),
        1
    );
}

#[test]
fn attached_messages_headers_are_nested_headers() {
    let r = rules("/^Received:/ IGNORE\n", "", "");
    let msg = "Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: message/rfc822\n\nReceived: inner\nSubject: inner\n\nhi\n--b--\n";
    let (out, s) = run(&r, msg);
    assert!(!out.contains("Received: inner"), "{out}");
    assert_eq!(s.hops, 0, "only the message's own trace headers count");
}

#[test]
fn a_reject_stops_later_checks_but_not_the_bytes() {
    let r = rules("/^A:/ REJECT no\n/^B:/ IGNORE\n", "", "");
    let (out, s) = run(&r, "A: 1\nB: 2\n\nx\n");
    assert_eq!(out, "A: 1\nB: 2\n\nx\n");
    assert_eq!(s.events.len(), 1);
}

#[test]
fn a_message_without_a_blank_line_or_headers() {
    let r = rules("/^Subject:/ IGNORE\n", "", "/^x/ WARN x\n");
    let (out, s) = run(&r, "Subject: a\nnot a header line\nx\n");
    assert_eq!(out, "not a header line\nx\n");
    assert_eq!(s.events.len(), 1);
    let (out, _) = run(&r, "Subject: no newline at the end");
    assert_eq!(out, "");
}

#[test]
fn nothing_of_the_header_section_leaves_before_its_end() {
    let r = rules("/^X:/ IGNORE\n", "", "");
    let mut s = Scanner::new(r, false);
    assert!(s.feed(b"A: 1\nB: 2\nX: 3\n").is_empty());
    assert_eq!(s.feed(b"\nbody"), b"A: 1\nB: 2\n\n");
    assert_eq!(s.finish(), b"body");
}

#[test]
fn on_the_way_back_from_the_filter_only_rewrites_apply() {
    let r = rules(
        "/^Received:/ IGNORE\n/^X-Spam:/ HOLD\n/^Y:/ PREPEND Z: 1\n",
        "",
        "/x/ REJECT\n",
    );
    let mut s = Scanner::new(r, true);
    let mut out = s.feed(b"Received: ours\nX-Spam: 1\nY: 2\n\nx\n");
    out.extend(s.finish());
    assert_eq!(out, b"X-Spam: 1\nY: 2\n\nx\n");
    assert!(s.verdict.hold.is_none() && s.verdict.reject.is_none());
    assert_eq!(s.hops, 1);
}

#[test]
fn missing_headers_of_a_local_submission() {
    let r = rules("", "", "");
    let run = |msg: &[u8]| {
        let mut s = Scanner::new(r.clone(), false);
        s.add_missing(
            "alice@example.test",
            "Tue, 1 Dec 2026 10:00:00 +0000",
            "id@mx",
        );
        let mut out = s.feed(msg);
        out.extend(s.finish());
        String::from_utf8(out).unwrap()
    };
    assert_eq!(
        run(b"Subject: s\nFrom: x@y\n\nbody\n"),
        "Subject: s\nFrom: x@y\nDate: Tue, 1 Dec 2026 10:00:00 +0000\nMessage-ID: <id@mx>\n\nbody\n"
    );
    assert_eq!(
        run(b"just a body\n"),
        "From: alice@example.test\nDate: Tue, 1 Dec 2026 10:00:00 +0000\nMessage-ID: <id@mx>\n\njust a body\n"
    );
    assert!(run(b"Subject: only headers")
        .starts_with("Subject: only headers\nFrom: alice@example.test\n"));
    assert!(run(b"Subject: only headers").ends_with("Message-ID: <id@mx>\n\n"));
    assert!(run(b"").starts_with("From: alice@example.test\n"));
}

#[test]
fn filter_hops() {
    assert_eq!(filter_hop("smtp:[127.0.0.1]:10026"), "[127.0.0.1]:10026");
    assert_eq!(filter_hop("[127.0.0.1]:10026"), "[127.0.0.1]:10026");
    assert_eq!(filter_hop("amavis:localhost:10024"), "localhost:10024");
}
