//! The outbound resolver (postern::dns) against a real dnsmasq on a high
//! loopback port, and against fake servers for what dnsmasq will not do
//! (SERVFAIL, silence, garbage, a CNAME loop across replies). Covers MX,
//! A, AAAA, null MX, NXDOMAIN, no data, CNAME chains, the TCP fallback on
//! a truncated answer (100 MX records), server failover, MX selection with
//! ourselves among the hosts, and the `dns, native` lookup order.
//!
//! dnsmasq (package dnsmasq-base) is required: a missing one fails the
//! test, it never skips.

mod common;
#[path = "common/dnsmasq.rs"]
mod dnsmasq;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use dnsmasq::{Dnsmasq, Fake, FakeDns};
use postern::dns::hosts::HostLookup;
use postern::dns::mx::Me;
use postern::dns::{Lookup, MxRecord, Resolver, ResolverConfig};
use postern::smtp::reply::Esc;

fn records() -> Vec<String> {
    let mut r: Vec<String> = [
        "mx-host=example.test,mx1.example.test,10",
        "mx-host=example.test,mx2.example.test,20",
        "host-record=mx1.example.test,127.0.0.1",
        "host-record=mx2.example.test,127.0.0.2,::1",
        "host-record=v6only.test,::2",
        "host-record=implicit.test,127.0.0.5",
        "mx-host=nullmx.test,.,0",
        "cname=alias.test,example.test",
        "cname=hostalias.test,mx1.example.test",
        "mx-host=iplit.test,192.0.2.1,10",
        "mx-host=noaddr.test,ghost.noaddr.test,10",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    // A 20-link CNAME chain: longer than the resolver follows.
    for i in 1..=20 {
        r.push(format!("cname=c{i}.test,c{}.test", i + 1));
    }
    r.push("host-record=c21.test,127.0.0.21".into());
    // 100 MX records: too big for one 1232-byte UDP answer.
    for i in 1..=100 {
        r.push(format!("mx-host=big.test,mx{i}.big.test,{i}"));
    }
    for i in 1..=10 {
        r.push(format!("host-record=mx{i}.big.test,127.0.1.{i}"));
    }
    r
}

/// A dnsmasq per test: a static one would never be dropped, and so never
/// killed. Starting one takes milliseconds.
fn server() -> Dnsmasq {
    Dnsmasq::start(&records())
}

fn resolver(servers: &[SocketAddr]) -> Resolver {
    Resolver::new(ResolverConfig {
        nameservers: servers.to_vec(),
        timeout: Duration::from_secs(1),
        attempts: 1,
    })
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn keep_order(n: usize) -> usize {
    n - 1
}

#[test]
fn mx_a_and_aaaa() {
    let d = server();
    let r = resolver(&[d.addr]);
    let mut mx = match smol::block_on(r.mx("Example.TEST.")) {
        Lookup::Found(v) => v,
        other => panic!("{other:?}"),
    };
    mx.sort_by_key(|m| m.preference);
    assert_eq!(
        mx,
        [
            MxRecord {
                preference: 10,
                exchange: "mx1.example.test".into()
            },
            MxRecord {
                preference: 20,
                exchange: "mx2.example.test".into()
            }
        ]
    );
    assert_eq!(
        smol::block_on(r.a("mx1.example.test")),
        Lookup::Found(vec!["127.0.0.1".parse().unwrap()])
    );
    assert_eq!(
        smol::block_on(r.aaaa("mx2.example.test")),
        Lookup::Found(vec!["::1".parse().unwrap()])
    );
    assert_eq!(
        smol::block_on(r.ip_addrs("mx2.example.test")),
        Lookup::Found(vec![ip("127.0.0.2"), ip("::1")])
    );
    assert_eq!(
        smol::block_on(r.ip_addrs("v6only.test")),
        Lookup::Found(vec![ip("::2")])
    );
}

#[test]
fn nxdomain_and_no_data() {
    let d = server();
    let r = resolver(&[d.addr]);
    assert_eq!(smol::block_on(r.mx("nothing.test")), Lookup::NxDomain);
    assert_eq!(smol::block_on(r.a("nothing.test")), Lookup::NxDomain);
    // A name with an address but no MX: NOERROR, no data.
    assert_eq!(smol::block_on(r.mx("implicit.test")), Lookup::NoData);
    assert_eq!(smol::block_on(r.aaaa("mx1.example.test")), Lookup::NoData);
}

#[test]
fn cname_chains_and_loops() {
    let d = server();
    let r = resolver(&[d.addr]);
    match smol::block_on(r.mx("alias.test")) {
        Lookup::Found(v) => assert_eq!(v.len(), 2, "{v:?}"),
        other => panic!("alias.test: {other:?}"),
    }
    assert_eq!(
        smol::block_on(r.a("hostalias.test")),
        Lookup::Found(vec!["127.0.0.1".parse().unwrap()])
    );
    // 10 links: followed. 20 links: more than 16, a temporary failure.
    assert_eq!(
        smol::block_on(r.a("c11.test")),
        Lookup::Found(vec!["127.0.0.21".parse().unwrap()])
    );
    match smol::block_on(r.a("c1.test")) {
        Lookup::TempFail(e) => assert!(e.contains("CNAME chain"), "{e}"),
        other => panic!("c1.test: {other:?}"),
    }
    // A loop spread over replies: the resolver asks again at each step
    // and gives up after 16.
    let fake = FakeDns::start(Fake::CnameLoop);
    let r = resolver(&[fake.addr]);
    match smol::block_on(r.mx("loop1.test")) {
        Lookup::TempFail(e) => assert!(e.contains("CNAME chain"), "{e}"),
        other => panic!("loop1.test: {other:?}"),
    }
}

#[test]
fn truncated_udp_answer_is_asked_again_over_tcp() {
    let d = server();
    let r = resolver(&[d.addr]);
    match smol::block_on(r.mx("big.test")) {
        Lookup::Found(v) => {
            assert_eq!(v.len(), 100, "all 100 MX records, so TCP was used");
        }
        other => panic!("big.test: {other:?}"),
    }
    let (targets, _) = smol::block_on(r.mail_hosts(
        &[HostLookup::Dns],
        "big.test",
        &Me::default(),
        &mut keep_order,
    ))
    .unwrap();
    let names: Vec<&str> = targets.iter().map(|t| t.host.as_str()).collect();
    assert_eq!(
        names,
        [
            "mx1.big.test",
            "mx2.big.test",
            "mx3.big.test",
            "mx4.big.test",
            "mx5.big.test"
        ]
    );
}

#[test]
fn failover_to_the_next_server() {
    let dnsmasq = server();
    let d = dnsmasq.addr;
    for kind in [Fake::ServFail, Fake::Silent, Fake::Garbage] {
        let fake = FakeDns::start(kind);
        let r = resolver(&[fake.addr, d]);
        assert!(
            matches!(smol::block_on(r.mx("example.test")), Lookup::Found(_)),
            "{kind:?} then dnsmasq"
        );
        // That server alone: a temporary failure that says why.
        let alone = resolver(&[fake.addr]);
        match smol::block_on(alone.mx("example.test")) {
            Lookup::TempFail(e) => {
                let want = match kind {
                    Fake::ServFail => "SERVFAIL",
                    Fake::Silent => "timed out",
                    _ => "malformed",
                };
                assert!(e.contains(want), "{kind:?}: {e}");
            }
            other => panic!("{kind:?} alone: {other:?}"),
        }
    }
}

#[test]
fn replies_to_other_queries_are_ignored() {
    let fake = FakeDns::start(Fake::ForeignFirst);
    let r = resolver(&[fake.addr]);
    assert_eq!(smol::block_on(r.mx("anything.test")), Lookup::NxDomain);
}

#[test]
fn mail_hosts_for_a_domain() {
    let d = server();
    let r = resolver(&[d.addr]);
    let dns = [HostLookup::Dns];
    let hosts = |d: &str, me: &Me| smol::block_on(r.mail_hosts(&dns, d, me, &mut keep_order));
    let (t, _) = hosts("example.test", &Me::default()).unwrap();
    assert_eq!(t[0].host, "mx1.example.test");
    assert_eq!(t[0].addrs, [ip("127.0.0.1")]);
    assert_eq!(t[1].addrs, [ip("127.0.0.2"), ip("::1")]);
    // Implicit MX.
    let (t, _) = hosts("implicit.test", &Me::default()).unwrap();
    assert_eq!((t[0].host.as_str(), t[0].preference), ("implicit.test", 0));
    // Null MX, NXDOMAIN, an MX host without address, an IP-literal MX.
    let f = hosts("nullmx.test", &Me::default()).unwrap_err();
    assert_eq!((f.permanent, f.code, f.esc), (true, 556, Esc(5, 1, 10)));
    let f = hosts("nothing.test", &Me::default()).unwrap_err();
    assert_eq!((f.permanent, f.esc), (true, Esc(5, 4, 4)));
    let f = hosts("noaddr.test", &Me::default()).unwrap_err();
    assert_eq!((f.permanent, f.esc), (true, Esc(5, 4, 4)));
    let f = hosts("iplit.test", &Me::default()).unwrap_err();
    assert_eq!((f.permanent, f.esc), (false, Esc(4, 4, 4)), "{}", f.text);
    // We are mx1 (the best): loops back to myself, permanent.
    let me = Me {
        addrs: vec![ip("127.0.0.1")],
        names: vec![],
    };
    let f = hosts("example.test", &me).unwrap_err();
    assert_eq!((f.permanent, f.esc), (true, Esc(5, 4, 6)));
    assert_eq!(f.text, "mail for example.test loops back to myself");
    // We are mx2, the backup: only mx1 is left.
    let me = Me {
        addrs: vec![],
        names: vec!["mx2.example.test".into()],
    };
    let (t, _) = hosts("example.test", &me).unwrap();
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].host, "mx1.example.test");
}

#[test]
fn dns_then_native_lookup_order() {
    // dnsmasq says NXDOMAIN for localhost (local=/localhost/), so `dns,
    // native` asks the system, which knows it from /etc/hosts.
    let d = server();
    // dnsmasq says NXDOMAIN for localhost (local=/localhost/), so `dns,
    // native` asks the system, which knows it from /etc/hosts.
    let r = resolver(&[d.addr]);
    let dns_only = smol::block_on(r.host_addrs(&[HostLookup::Dns], "localhost"));
    assert_eq!(dns_only, Lookup::NxDomain);
    let both = smol::block_on(r.host_addrs(&[HostLookup::Dns, HostLookup::Native], "localhost"));
    match both {
        Lookup::Found(v) => assert!(v.iter().all(|a| a.is_loopback()), "{v:?}"),
        other => panic!("{other:?}"),
    }
    // A name DNS knows is never asked natively.
    let v =
        smol::block_on(r.host_addrs(&[HostLookup::Dns, HostLookup::Native], "mx1.example.test"));
    assert_eq!(v, Lookup::Found(vec![ip("127.0.0.1")]));
    // The whole route: MX NXDOMAIN, then the implicit MX found natively.
    let (t, _) = smol::block_on(r.mail_hosts(
        &[HostLookup::Dns, HostLookup::Native],
        "localhost",
        &Me::default(),
        &mut keep_order,
    ))
    .unwrap();
    assert!(t[0].addrs.iter().all(|a| a.is_loopback()));
}
