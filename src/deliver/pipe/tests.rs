use super::*;

#[test]
fn exit_codes_map_as_postfix_does() {
    let ran = |status: i32, out: &str| Ran {
        status: Some(status),
        signal: None,
        timed_out: false,
        output: out.into(),
    };
    assert!(judge(&ran(0, "")).is_delivered());
    for t in [75, 71, 69, 73, 74] {
        assert!(judge(&ran(t, "")).is_deferred(), "{t}");
    }
    for (c, esc) in [
        (67, Esc(5, 1, 1)),
        (68, Esc(5, 1, 2)),
        (77, Esc(5, 7, 0)),
        (64, Esc(5, 3, 0)),
        (1, Esc(5, 3, 0)),
    ] {
        let o = judge(&ran(c, "procmail: Unknown user\nmore"));
        assert!(o.is_failed() && o.esc == esc, "{c}: {o:?}");
        assert!(
            o.text.contains("Unknown user") && !o.text.contains("more"),
            "{o:?}"
        );
    }
    let o = judge(&ran(1, "4.2.2 mailbox full"));
    assert!(o.is_deferred() && o.esc == Esc(4, 2, 2), "{o:?}");
    let o = judge(&Ran {
        status: None,
        signal: Some(9),
        timed_out: false,
        output: vec![],
    });
    assert!(o.is_deferred());
    let o = judge(&Ran {
        status: None,
        signal: Some(9),
        timed_out: true,
        output: vec![],
    });
    assert!(o.is_failed() && o.text.contains("time limit"), "{o:?}");
}
