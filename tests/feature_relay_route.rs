//! Per-domain routes (`[[relay.route]]`): a primary relay with fallbacks,
//! end to end with the real binary, a real dnsmasq for the relays' names,
//! aiosmtpd sinks as the relays and raw servers for what a real one will
//! not do on request (greet with 421, never greet).
//!
//! Covers: the fallback takes the mail when the primary refuses the
//! connection, greets with 421, never answers, or drops the connection in
//! the middle of a transaction; a 5xx to RCPT or DATA bounces and a 4xx to
//! RCPT defers, neither tried at the fallback; a routed domain never goes
//! by MX, even with every relay down; the `domain.transport` column names
//! a route by its name or its domain; "discard" and "error: text" routes.
//!
//! dnsmasq and python3 with aiosmtpd are required: a missing one fails the
//! test.

mod common;
#[path = "common/dnsmasq.rs"]
mod dnsmasq;
#[path = "common/relay.rs"]
mod relay;
#[path = "common/smtp_peers.rs"]
mod smtp_peers;

use common::*;
use dnsmasq::Dnsmasq;
use relay::*;
use smtp_peers::{normal, opts, sinks_on_one_port, Answer, PySink, RawSmtp};

/// Relays by name: relayp (127.0.0.2) the primary, relays (127.0.0.3) the
/// fallback; routed.test's own MX (127.0.0.4) must never be used.
fn dns() -> Dnsmasq {
    Dnsmasq::start(&[
        "host-record=relayp.test,127.0.0.2".to_string(),
        "host-record=relays.test,127.0.0.3".to_string(),
        "mx-host=routed.test,mx.routed.test,10".to_string(),
        "host-record=mx.routed.test,127.0.0.4".to_string(),
    ])
}

/// `[[relay.route]]` tables for the config: the first one's lines, then
/// each further one after its own `[[relay.route]]` line.
fn with_routes(b: ServerBuilder, tables: &[String]) -> ServerBuilder {
    b.set("[relay.route]", &tables.join("\n\n[[relay.route]]\n"))
}

/// A route for `domain` from `primary` to `fallback` (`[host]:port` each).
fn route(domain: &str, name: &str, primary: &str, fallback: &str) -> String {
    format!("domain = \"{domain}\"\nname = \"{name}\"\nprimary = \"{primary}\"\nfallback = [\"{fallback}\"]")
}

#[test]
fn the_fallback_takes_over_when_the_primary_cannot_be_reached() {
    let d = dns();
    // One fallback for four routes; routed.test's MX sink on the same port.
    let (port, sinks) = sinks_on_one_port(&[("127.0.0.3", vec![]), ("127.0.0.4", vec![])]);
    let (fallback, mx) = (&sinks[0], &sinks[1]);
    let fb = format!("[relays.test]:{port}");
    // Nothing listens on 127.0.0.2:port: refused.
    let refused = format!("[relayp.test]:{port}");
    let closing = RawSmtp::start("127.0.0.2:0", |l| match l {
        "" => Answer::Send(b"421 4.3.2 relayp.test Service shutting down\r\n".to_vec()),
        _ => Answer::Close,
    })
    .unwrap();
    let silent = RawSmtp::start("127.0.0.2:0", |_| Answer::Silent).unwrap();
    let dropping = PySink::start_free("127.0.0.2", &["--drop-at-mail"]);
    let srv = with_routes(
        builder(d.addr, port).set("relay", "command_timeout = \"2s\""),
        &[
            route("routed.test", "refused", &refused, &fb),
            route(
                "closing.test",
                "closing",
                &format!("[relayp.test]:{}", closing.addr.port()),
                &fb,
            ),
            route(
                "silent.test",
                "silent",
                &format!("[relayp.test]:{}", silent.addr.port()),
                &fb,
            ),
            route(
                "dropping.test",
                "dropping",
                &format!("[relayp.test]:{}", dropping.addr.port()),
                &fb,
            ),
        ],
    )
    .start();
    let to = [
        "a@routed.test",
        "b@closing.test",
        "c@silent.test",
        "d@dropping.test",
    ];
    let id = send(&srv, "alice@example.test", &to, "fallback");
    for rcpt in to {
        let line = final_line(&srv, &id, rcpt);
        assert!(
            line.contains(&format!("relay=relays.test[127.0.0.3]:{port}, "))
                && line.contains("status=sent"),
            "{line}\n{}",
            srv.log()
        );
    }
    // Each recipient once, in one attempt: nothing deferred on the way.
    let got = fallback.wait_received(4, WAIT);
    let mut rcpts: Vec<String> = got.iter().flat_map(|m| m.rcpts.clone()).collect();
    rcpts.sort();
    assert_eq!(
        rcpts, to,
        "each route's recipient reached the fallback once"
    );
    assert!(
        lines_with(&srv, &[&id, "status=deferred"]).is_empty(),
        "{}",
        srv.log()
    );
    assert_eq!(closing.connections(), 1, "{}", srv.log());
    assert_eq!(silent.connections(), 1);
    assert_eq!(dropping.count("connect"), 1);
    assert!(dropping.received().is_empty());
    assert_eq!(mx.count("connect"), 0, "a routed domain never goes by MX");
}

#[test]
fn answers_from_the_primary_are_final_and_never_tried_at_the_fallback() {
    let d = dns();
    let (port, sinks) = sinks_on_one_port(&[
        (
            "127.0.0.2",
            opts(&["--reject-rcpt", "no", "--defer-rcpt", "later"]),
        ),
        ("127.0.0.3", vec![]),
        ("127.0.0.4", vec![]),
    ]);
    let (primary, fallback, mx) = (&sinks[0], &sinks[1], &sinks[2]);
    let spam = PySink::start_free(
        "127.0.0.2",
        &["--data-reply", "554 5.7.1 Message rejected as spam"],
    );
    let srv = with_routes(
        builder(d.addr, port),
        &[
            route(
                "routed.test",
                "relay-mail01",
                &format!("[relayp.test]:{port}"),
                &format!("[relays.test]:{port}"),
            ),
            route(
                "spam.test",
                "spam",
                &format!("[relayp.test]:{}", spam.addr.port()),
                &format!("[relays.test]:{port}"),
            ),
        ],
    )
    .start();
    let id = send(
        &srv,
        "alice@example.test",
        &[
            "no@routed.test",
            "later@routed.test",
            "yes@routed.test",
            "x@spam.test",
        ],
        "final answers",
    );
    let no = final_line(&srv, &id, "no@routed.test");
    assert!(
        no.contains(&format!("relay=relayp.test[127.0.0.2]:{port}, "))
            && no.contains("dsn=5.1.1, status=bounced (host relayp.test[127.0.0.2] said: 550 5.1.1 <no@routed.test>: Recipient address rejected: User unknown (in reply to RCPT TO command))"),
        "{no}"
    );
    let yes = final_line(&srv, &id, "yes@routed.test");
    assert!(
        yes.contains("relay=relayp.test[127.0.0.2]") && yes.contains("status=sent"),
        "{yes}"
    );
    let later = wait_line(&srv, &[&id, "to=<later@routed.test>"]);
    assert!(
        later.contains("dsn=4.2.0, status=deferred (host relayp.test[127.0.0.2] said: 450 4.2.0"),
        "{later}"
    );
    let spam_line = final_line(&srv, &id, "x@spam.test");
    assert!(
        spam_line.contains("dsn=5.7.1, status=bounced (host relayp.test[127.0.0.2] said: 554 5.7.1 Message rejected as spam (in reply to end of DATA command))"),
        "{spam_line}"
    );
    // The attempt is over (the bounce is queued): the fallback was never
    // asked, nor the MX.
    wait_line(&srv, &[&id, "sender non-delivery notification"]);
    assert_eq!(fallback.count("connect"), 0, "{:?}", fallback.events());
    assert_eq!(mx.count("connect"), 0);
    assert_eq!(primary.received().len(), 1);
    assert_eq!(primary.received()[0].rcpts, ["yes@routed.test"]);
    let files = wait_maildir(&srv.mailbox("example.test/alice/"), 1, WAIT);
    let p = Parsed::of(&files[0]);
    assert_eq!(p.all("rcpt status"), ["5.1.1", "5.7.1"], "{}", p.0);
    assert_eq!(
        p.all("rcpt remote-mta"),
        ["dns; relayp.test", "dns; relayp.test"],
        "{}",
        p.0
    );
}

#[test]
fn a_routed_domain_never_goes_by_mx() {
    let d = dns();
    // Primary and fallback both down; routed.test's MX would take it.
    let (port, sinks) = sinks_on_one_port(&[("127.0.0.4", vec![])]);
    let srv = with_routes(
        builder(d.addr, port),
        &[route(
            "routed.test",
            "relay-mail01",
            &format!("[relayp.test]:{port}"),
            &format!("[relays.test]:{port}"),
        )],
    )
    .start();
    let id = send(&srv, "alice@example.test", &["a@routed.test"], "stuck");
    let line = wait_line(&srv, &[&id, "status=deferred"]);
    assert!(
        line.contains(&format!(
            "(connect to relays.test[127.0.0.3]:{port}: Connection refused)"
        )),
        "the fallback is the last tried: {line}"
    );
    assert_eq!(
        sinks[0].count("connect"),
        0,
        "no MX delivery for a routed domain"
    );
    // The next message finds the route left alone for a while.
    let id = send(&srv, "alice@example.test", &["b@routed.test"], "stuck too");
    let line = wait_line(&srv, &[&id, "status=deferred"]);
    assert!(
        line.contains("delivery temporarily suspended: connect to relays.test"),
        "{line}"
    );
    assert_eq!(sinks[0].count("connect"), 0);
}

#[test]
fn the_transport_column_names_a_route_by_name_or_domain() {
    let d = dns();
    let (port, sinks) = sinks_on_one_port(&[("127.0.0.2", vec![])]);
    let srv = with_routes(
        builder(d.addr, port),
        &[route(
            "routed.test",
            "relay-mail01",
            &format!("[relayp.test]:{port}"),
            &format!("[relays.test]:{port}"),
        )],
    )
    .start();
    // Backup-MX domains whose transport names the route (PostfixAdmin's
    // domain.transport), before the server looks them up.
    let db = rusqlite::Connection::open(srv.data.join("directory.sqlite")).unwrap();
    db.execute_batch(
        "INSERT INTO domain (domain, description, transport, backupmx, active) VALUES
         ('byname.test', 'routed by name', 'relay-mail01', 1, 1),
         ('bydomain.test', 'routed by the route''s domain', 'routed.test', 1, 1),
         ('unknown.test', 'a transport nobody configured', 'no-such-route', 1, 1);",
    )
    .unwrap();
    drop(db);
    let id = send(
        &srv,
        "alice@example.test",
        &["a@byname.test", "b@bydomain.test", "c@unknown.test"],
        "by column",
    );
    for rcpt in ["a@byname.test", "b@bydomain.test"] {
        let line = final_line(&srv, &id, rcpt);
        assert!(
            line.contains(&format!("relay=relayp.test[127.0.0.2]:{port}, ")),
            "{line}"
        );
    }
    let line = wait_line(&srv, &[&id, "to=<c@unknown.test>"]);
    assert!(
        line.contains(
            "dsn=4.3.5, status=deferred (mail transport \"no-such-route\" is not configured)"
        ),
        "{line}"
    );
    let got = sinks[0].wait_received(1, WAIT);
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].rcpts,
        ["a@byname.test", "b@bydomain.test"],
        "one destination, one transaction"
    );
}

#[test]
fn discard_and_error_routes() {
    let d = dns();
    let srv = with_routes(
        builder(d.addr, 25),
        &[
            "domain = \"void.test\"\ntarget = \"discard\"".to_string(),
            "domain = \".closed.test\"\ntarget = \"error: this domain takes no mail\"".to_string(),
        ],
    )
    .start();
    let id = send(
        &srv,
        "alice@example.test",
        &["a@void.test", "b@sub.closed.test"],
        "nowhere",
    );
    let void = final_line(&srv, &id, "a@void.test");
    assert!(
        void.contains("status=sent (discarded: route for void.test)"),
        "{void}"
    );
    let closed = final_line(&srv, &id, "b@sub.closed.test");
    assert!(
        closed.contains("dsn=5.0.0, status=bounced (this domain takes no mail)"),
        "{closed}"
    );
    wait_queue_empty(&srv);
    let files = wait_maildir(&srv.mailbox("example.test/alice/"), 1, WAIT);
    let p = Parsed::of(&files[0]);
    assert_eq!(
        p.all("rcpt final-recipient"),
        ["rfc822; b@sub.closed.test"],
        "{}",
        p.0
    );
}

#[test]
fn a_kept_connection_the_server_closed_is_not_a_failure() {
    // The relay hangs up after each message (as servers do with idle
    // connections); postern has kept the connection for the next message,
    // finds it dead at MAIL, and sends over a new one at once.
    let d = dns();
    let server = RawSmtp::start("127.0.0.2:0", |l| match l {
        "." => Answer::Last(b"250 2.0.0 Ok: queued\r\n".to_vec()),
        _ => normal(l),
    })
    .unwrap();
    let srv = with_routes(
        builder(d.addr, 25).set("relay", "connection_reuse_time = \"30s\""),
        &[format!(
            "domain = \"routed.test\"\nprimary = \"[relayp.test]:{}\"",
            server.addr.port()
        )],
    )
    .start();
    for (n, rcpt) in ["a@routed.test", "b@routed.test", "c@routed.test"]
        .iter()
        .enumerate()
    {
        let id = send(&srv, "alice@example.test", &[rcpt], "kept");
        let line = final_line(&srv, &id, rcpt);
        assert!(line.contains("status=sent"), "{line}");
        assert!(
            lines_with(&srv, &[&id, "status=deferred"]).is_empty(),
            "{}",
            srv.log()
        );
        assert_eq!(server.messages(), n + 1);
    }
    assert_eq!(
        server.connections(),
        3,
        "a new connection for each message after the first"
    );
}
