//! MX selection cases: ordering and shuffling, implicit and null MX, DNS
//! failures, IP-literal MX names, ourselves among the MX hosts, caps.

use super::*;

fn mx(p: u16, x: &str) -> MxRecord {
    MxRecord {
        preference: p,
        exchange: x.into(),
    }
}

/// Fisher-Yates picking j == k at every step keeps the order.
fn no_shuffle(n: usize) -> usize {
    n - 1
}

fn names(hosts: &[MxHost]) -> Vec<(u16, &str)> {
    hosts
        .iter()
        .map(|h| (h.preference, h.name.as_str()))
        .collect()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn sorted_by_preference() {
    let answer = Lookup::Found(vec![mx(20, "b.test"), mx(10, "a.test"), mx(30, "c.test")]);
    let (hosts, w) = plan("d.test", answer, &mut |n| n - 1).unwrap();
    assert_eq!(
        names(&hosts),
        [(10, "a.test"), (20, "b.test"), (30, "c.test")]
    );
    assert!(w.is_empty());
}

#[test]
fn equal_preferences_are_shuffled_with_the_given_randomness() {
    let recs = vec![
        mx(10, "a.test"),
        mx(10, "b.test"),
        mx(10, "c.test"),
        mx(5, "first.test"),
    ];
    let run = |pick: &mut dyn FnMut(usize) -> usize| {
        let (h, _) = plan("d.test", Lookup::Found(recs.clone()), pick).unwrap();
        h.iter().map(|h| h.name.clone()).collect::<Vec<_>>()
    };
    // Every order of the three shows up over many seeds; `first` stays first.
    let mut seen = std::collections::HashSet::new();
    let mut seed = 12345u64;
    for _ in 0..200 {
        let order = run(&mut |n| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) as usize % n
        });
        assert_eq!(order[0], "first.test");
        seen.insert(order);
    }
    assert_eq!(seen.len(), 6, "{seen:?}");
}

#[test]
fn implicit_mx_when_no_mx_records() {
    let (hosts, _) = plan("d.test", Lookup::NoData, &mut no_shuffle).unwrap();
    assert_eq!(
        hosts,
        [MxHost {
            name: "d.test".into(),
            preference: 0,
            implicit: true
        }]
    );
}

#[test]
fn null_mx_is_permanent_556() {
    let f = plan("d.test", Lookup::Found(vec![mx(0, "")]), &mut no_shuffle).unwrap_err();
    assert_eq!((f.permanent, f.code, f.esc), (true, 556, Esc(5, 1, 10)));
    assert!(f.text.contains("does not accept mail"), "{}", f.text);
    // Mixed with real MX records: the `.` is ignored.
    let (hosts, _) = plan(
        "d.test",
        Lookup::Found(vec![mx(0, ""), mx(10, "a.test")]),
        &mut no_shuffle,
    )
    .unwrap();
    assert_eq!(names(&hosts), [(10, "a.test")]);
}

#[test]
fn dns_failures() {
    let f = plan("d.test", Lookup::NxDomain, &mut no_shuffle).unwrap_err();
    assert_eq!((f.permanent, f.esc), (true, Esc(5, 4, 4)));
    let f = plan(
        "d.test",
        Lookup::TempFail("SERVFAIL".into()),
        &mut no_shuffle,
    )
    .unwrap_err();
    assert_eq!((f.permanent, f.esc), (false, Esc(4, 4, 3)));
    assert!(f.text.contains("SERVFAIL"));
}

#[test]
fn ip_literal_mx_names_are_skipped() {
    let answer = Lookup::Found(vec![
        mx(10, "192.0.2.1"),
        mx(20, "b.test"),
        mx(5, "[192.0.2.9]"),
    ]);
    let (hosts, w) = plan("d.test", answer, &mut no_shuffle).unwrap();
    assert_eq!(names(&hosts), [(20, "b.test")]);
    assert_eq!(w.len(), 2, "{w:?}");
    let f = plan(
        "d.test",
        Lookup::Found(vec![mx(10, "2001:db8::1")]),
        &mut no_shuffle,
    )
    .unwrap_err();
    assert_eq!((f.permanent, f.esc), (false, Esc(4, 4, 4)));
}

#[test]
fn a_name_listed_twice_keeps_its_best_preference() {
    let answer = Lookup::Found(vec![mx(20, "a.test"), mx(10, "a.test"), mx(15, "b.test")]);
    let (hosts, _) = plan("d.test", answer, &mut no_shuffle).unwrap();
    assert_eq!(names(&hosts), [(10, "a.test"), (15, "b.test")]);
}

#[test]
fn a_hundred_mx_records_are_fine_and_capped() {
    let recs: Vec<MxRecord> = (0..100).map(|i| mx(i, &format!("mx{i}.test"))).collect();
    let (hosts, _) = plan("d.test", Lookup::Found(recs), &mut no_shuffle).unwrap();
    assert_eq!(hosts.len(), 100);
    let resolved = hosts
        .into_iter()
        .enumerate()
        .map(|(i, h)| (h, Lookup::Found(vec![ip(&format!("192.0.2.{}", i + 1))])))
        .collect();
    let t = select("d.test", resolved, &Me::default()).unwrap();
    assert_eq!(t.len(), MAX_MX_HOSTS);
    assert_eq!(t[0].host, "mx0.test");
}

fn host(p: u16, n: &str) -> MxHost {
    MxHost {
        name: n.into(),
        preference: p,
        implicit: false,
    }
}

fn me() -> Me {
    Me {
        addrs: vec![ip("192.0.2.25"), ip("203.0.113.7")],
        names: vec!["mx.me.test".into()],
    }
}

#[test]
fn we_and_everything_at_or_below_our_preference_are_dropped() {
    let resolved = vec![
        (host(10, "a.test"), Lookup::Found(vec![ip("198.51.100.1")])),
        (host(20, "b.test"), Lookup::Found(vec![ip("198.51.100.2")])),
        (host(20, "us.test"), Lookup::Found(vec![ip("203.0.113.7")])),
        (host(30, "c.test"), Lookup::Found(vec![ip("198.51.100.3")])),
    ];
    let t = select("d.test", resolved, &me()).unwrap();
    let got: Vec<&str> = t.iter().map(|t| t.host.as_str()).collect();
    assert_eq!(got, ["a.test"], "backup MX relays only to better MX hosts");
}

#[test]
fn loops_back_to_myself() {
    // We are the best MX: permanent.
    let resolved = vec![
        (host(10, "mx.me.test"), Lookup::TempFail("x".into())),
        (host(20, "b.test"), Lookup::Found(vec![ip("198.51.100.2")])),
    ];
    let f = select("d.test", resolved, &me()).unwrap_err();
    assert_eq!((f.permanent, f.esc), (true, Esc(5, 4, 6)));
    assert_eq!(f.text, "mail for d.test loops back to myself");
    // We are a backup and the better hosts have no address now: temporary.
    let resolved = vec![
        (host(10, "a.test"), Lookup::TempFail("timeout".into())),
        (host(20, "us.test"), Lookup::Found(vec![ip("192.0.2.25")])),
    ];
    let f = select("d.test", resolved, &me()).unwrap_err();
    assert_eq!((f.permanent, f.esc), (false, Esc(4, 4, 4)));
    // The implicit MX pointing at us.
    let implicit = MxHost {
        implicit: true,
        ..host(0, "d.test")
    };
    let f = select(
        "d.test",
        vec![(implicit, Lookup::Found(vec![ip("192.0.2.25")]))],
        &me(),
    )
    .unwrap_err();
    assert_eq!(f.esc, Esc(5, 4, 6));
}

#[test]
fn no_addresses_anywhere() {
    let resolved = vec![
        (host(10, "a.test"), Lookup::NxDomain),
        (host(20, "b.test"), Lookup::NoData),
    ];
    let f = select("d.test", resolved, &Me::default()).unwrap_err();
    assert_eq!((f.permanent, f.esc), (true, Esc(5, 4, 4)));
    let resolved = vec![
        (host(10, "a.test"), Lookup::NxDomain),
        (host(20, "b.test"), Lookup::TempFail("SERVFAIL".into())),
    ];
    let f = select("d.test", resolved, &Me::default()).unwrap_err();
    assert_eq!((f.permanent, f.esc), (false, Esc(4, 4, 3)));
    // One host without address does not stop the others.
    let resolved = vec![
        (host(10, "a.test"), Lookup::TempFail("SERVFAIL".into())),
        (host(20, "b.test"), Lookup::Found(vec![ip("198.51.100.2")])),
    ];
    assert_eq!(
        select("d.test", resolved, &Me::default()).unwrap()[0].host,
        "b.test"
    );
}
