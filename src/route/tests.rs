//! Routing as a pure function: each destination kind, each transport
//! value, the unsafe-path and unknown-transport cases.

use std::path::PathBuf;
use std::time::Duration;

use super::transport::{next_hop, parse, Spec};
use super::*;
use crate::smtp::address::Address;

fn router() -> Router {
    let mut r = Router::new(
        PathBuf::from("/var/vmail"),
        PathBuf::from("/var/local"),
        Some((5000, 5000)),
    );
    r.named.insert(
        "procmail".into(),
        Route::Pipe(PipeRoute {
            transport: "procmail".into(),
            argv: vec!["/usr/bin/procmail".into(), "-t".into()],
            user: (5000, 5000),
            flags: "R".into(),
            timeout: Duration::from_secs(1000),
            output_limit: 4096,
            mailbox: None,
            home: None,
            local_env: false,
        }),
    );
    r
}

fn mailbox(transport: &str) -> Dest {
    Dest::Mailbox {
        username: "alice@example.test".into(),
        maildir: "example.test/alice/".into(),
        quota: 20_000,
        maxquota_mb: 0,
        transport: transport.into(),
    }
}

fn remote(addr: &str, transport: &str) -> Dest {
    Dest::Remote {
        address: Address::parse(addr, true).unwrap(),
        transport: transport.into(),
    }
}

#[test]
fn mailboxes_go_to_their_maildir_with_quota_and_owner() {
    let expect = Route::Maildir(MaildirRoute {
        path: PathBuf::from("/var/vmail/example.test/alice/"),
        quota: Quota {
            bytes: 20_000,
            messages: 0,
        },
        owner: Some((5000, 5000)),
    });
    for t in ["", "virtual", "VIRTUAL", "maildir", "virtual:"] {
        assert_eq!(router().route(&mailbox(t)), expect, "transport {t:?}");
    }
}

#[test]
fn local_users_go_under_the_local_base() {
    let r = router().route(&Dest::Local {
        user: "bob".into(),
        domain: "localhost".into(),
    });
    let Route::Maildir(m) = r else {
        panic!("{r:?}")
    };
    assert_eq!(m.path, PathBuf::from("/var/local/bob"));
    assert_eq!(m.quota, Quota::default());
}

#[test]
fn remote_addresses_go_by_mx_unless_the_domain_names_a_relay() {
    assert_eq!(
        router().route(&remote("x@Remote.test", "")),
        Route::Smtp(SmtpRoute::mx("remote.test", 25, TlsPolicy::May))
    );
    // A backup-MX domain whose row says "virtual" is still relayed.
    assert_eq!(
        router().route(&remote("x@backup.test", "virtual")),
        Route::Smtp(SmtpRoute::mx("backup.test", 25, TlsPolicy::May))
    );
    let r = router().route(&remote("x@backup.test", "smtp:[mx.primary.test]:2525"));
    let Route::Smtp(s) = r else { panic!("{r:?}") };
    assert_eq!(
        s.hops,
        vec![NextHop {
            host: "mx.primary.test".into(),
            port: 2525,
            mx: false
        }]
    );
    assert!(s.fallbacks.is_empty());
}

#[test]
fn a_smarthost_default_carries_its_route() {
    let mut r = router();
    let smarthost = SmtpRoute {
        name: "[smtp.isp.test]:587".into(),
        hops: vec![next_hop("[smtp.isp.test]:587", 25).unwrap()],
        fallbacks: vec![],
        tls: TlsPolicy::Encrypt,
        credentials: Some("[smtp.isp.test]:587".into()),
    };
    r.default_relay = DefaultRelay::Route(smarthost.clone());
    assert_eq!(r.route(&remote("x@y.test", "")), Route::Smtp(smarthost));
}

#[test]
fn transport_column_overrides_a_mailbox_route() {
    let r = router();
    let Route::Pipe(p) = r.route(&mailbox("procmail")) else {
        panic!()
    };
    assert_eq!(p.transport, "procmail");
    assert_eq!(
        p.mailbox.unwrap().path,
        PathBuf::from("/var/vmail/example.test/alice/"),
        "a pipe still knows the mailbox (${{mailbox}}, quota)"
    );
    assert_eq!(
        r.route(&mailbox("error:no mail here")),
        Route::Bounce(Esc(5, 0, 0), "no mail here".into())
    );
    assert_eq!(
        r.route(&mailbox("retry:maintenance")),
        Route::Defer(Esc(4, 0, 0), "maintenance".into())
    );
    assert!(matches!(r.route(&mailbox("discard:")), Route::Discard(_)));
    assert!(matches!(
        r.route(&mailbox("relay:[10.0.0.1]")),
        Route::Smtp(SmtpRoute { ref hops, .. }) if hops[0].host == "10.0.0.1" && !hops[0].mx
    ));
    // Unknown transports and bad values defer (configuration can be fixed).
    for bad in ["nosuch", "smtp:[oops", "bad value!"] {
        assert!(
            matches!(r.route(&mailbox(bad)), Route::Defer(Esc(4, 3, 5), _)),
            "{bad}"
        );
    }
}

#[test]
fn virtual_transport_default_can_name_a_pipe() {
    let mut r = router();
    r.virtual_transport = "procmail".into();
    assert!(matches!(r.route(&mailbox("")), Route::Pipe(_)));
    // PostfixAdmin's default column value means the virtual transport...
    assert!(matches!(r.route(&mailbox("virtual")), Route::Pipe(_)));
    // ...while a column naming the Maildir agent still wins.
    assert!(matches!(r.route(&mailbox("maildir")), Route::Maildir(_)));
}

#[test]
fn unsafe_maildir_paths_defer_and_failures_bounce() {
    let r = router();
    for p in ["../etc", "/etc/passwd", "a/../../b", ""] {
        let d = Dest::Mailbox {
            username: "x@example.test".into(),
            maildir: p.into(),
            quota: 0,
            maxquota_mb: 0,
            transport: String::new(),
        };
        assert!(matches!(r.route(&d), Route::Defer(Esc(4, 3, 5), _)), "{p}");
    }
    assert_eq!(
        r.route(&Dest::Fail {
            address: "x@example.test".into(),
            why: FailReason::Loop
        }),
        Route::Bounce(Esc(5, 4, 6), "mail forwarding loop".into())
    );
}

#[test]
fn agents_by_route_kind() {
    let r = router();
    assert_eq!(r.route(&mailbox("")).agent(), Some(AgentKind::Maildir));
    assert_eq!(r.route(&mailbox("procmail")).agent(), Some(AgentKind::Pipe));
    assert_eq!(
        r.route(&remote("a@b.test", "")).agent(),
        Some(AgentKind::Smtp)
    );
    assert_eq!(r.route(&mailbox("error:x")).agent(), None);
}

#[test]
fn transport_values_parse_like_postfix() {
    assert_eq!(parse(""), Spec::Default);
    assert_eq!(parse("  virtual "), Spec::Default);
    assert_eq!(parse("maildir"), Spec::Maildir);
    assert_eq!(parse("smtp"), Spec::Relay(None));
    assert_eq!(parse("smtp:"), Spec::Relay(None));
    assert_eq!(
        parse(":[mx.test]"),
        Spec::Relay(Some(NextHop {
            host: "mx.test".into(),
            port: 25,
            mx: false
        }))
    );
    assert_eq!(parse("relay-mail01"), Spec::Named("relay-mail01".into()));
    assert_eq!(
        next_hop("Relay.Test:2525", 25),
        Some(NextHop {
            host: "relay.test".into(),
            port: 2525,
            mx: true
        })
    );
    assert_eq!(
        next_hop("[ipv6:2001:db8::1]:25", 25).map(|h| h.host),
        Some("2001:db8::1".into())
    );
    assert_eq!(next_hop("[::1]", 587).map(|h| h.port), Some(587));
    for bad in ["[x]:port", "[]", "host:0", "ho st", "[x]junk"] {
        assert_eq!(next_hop(bad, 25), None, "{bad}");
    }
}

#[test]
fn relay_routes_by_domain_exact_then_longest_suffix() {
    let mut r = router();
    let route = |name: &str| {
        Route::Smtp(SmtpRoute {
            name: name.into(),
            hops: vec![next_hop(&format!("[{name}]"), 25).unwrap()],
            fallbacks: vec![],
            tls: TlsPolicy::May,
            credentials: None,
        })
    };
    r.domains = vec![
        (".example.test".into(), route("wide.test")),
        ("mail01.example.test".into(), route("exact.test")),
        (".sub.example.test".into(), route("narrow.test")),
        ("drop.test".into(), Route::Discard("route".into())),
    ];
    let name = |a: &str| match r.route(&remote(a, "")) {
        Route::Smtp(s) => s.name,
        other => format!("{other:?}"),
    };
    assert_eq!(name("x@mail01.example.test"), "exact.test");
    assert_eq!(name("x@a.sub.example.test"), "narrow.test");
    assert_eq!(name("x@other.example.test"), "wide.test");
    assert_eq!(
        name("x@example.test"),
        "mx",
        "a .suffix route is for subdomains only"
    );
    assert!(matches!(
        r.route(&remote("x@drop.test", "")),
        Route::Discard(_)
    ));
}

#[test]
fn quota_from_mailbox_domain_max_and_the_table() {
    let mut r = router();
    r.quota_limits =
        crate::config::hooks::QuotaLimits::parse("@example.test 5000\nbig@example.test 9000\n")
            .unwrap();
    r.quota_multiplier = 1000;
    assert_eq!(r.quota_bytes("a@example.test", 20_000, 0), 20_000);
    assert_eq!(
        r.quota_bytes("a@example.test", 20_000, 10),
        10_000,
        "capped by maxquota"
    );
    assert_eq!(
        r.quota_bytes("big@example.test", 0, 10),
        9000,
        "the table's own line"
    );
    assert_eq!(
        r.quota_bytes("a@example.test", 0, 10),
        5000,
        "the table's @domain default"
    );
    assert_eq!(
        r.quota_bytes("a@other.test", 0, 10),
        10_000,
        "maxquota as default"
    );
    assert_eq!(r.quota_bytes("a@other.test", 0, 0), 0);
}

#[test]
fn mailbox_transports_win_over_the_domain_column() {
    let mut r = router();
    r.mailbox_transports
        .insert("alice@example.test".into(), "procmail".into());
    assert!(matches!(r.route(&mailbox("virtual")), Route::Pipe(_)));
}

#[test]
fn the_transport_column_names_a_route_by_name_or_by_domain() {
    let mut r = router();
    let relay = Route::Smtp(SmtpRoute {
        name: "relay-mail01".into(),
        hops: vec![next_hop("[mail01p.example.test]", 25).unwrap()],
        fallbacks: vec![],
        tls: TlsPolicy::May,
        credentials: None,
    });
    r.domains = vec![("mail01.example.test".into(), relay.clone())];
    r.named.insert("relay-mail01".into(), relay.clone());
    assert_eq!(r.route(&remote("x@backup.test", "relay-mail01")), relay);
    assert_eq!(
        r.route(&remote("x@backup.test", "mail01.example.test")),
        relay
    );
    assert!(matches!(
        r.route(&remote("x@backup.test", "relay-mail02")),
        Route::Defer(..)
    ));
}
