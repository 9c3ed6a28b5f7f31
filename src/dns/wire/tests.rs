//! Packet building and checking: replies built with simple-dns, broken
//! and foreign packets, and random garbage that must never panic.

use simple_dns::rdata::{A, AAAA, CNAME, MX};
use simple_dns::{ResourceRecord, RCODE};

use super::*;

fn rr<'a>(owner: &'a str, data: RData<'a>) -> ResourceRecord<'a> {
    ResourceRecord::new(Name::new_unchecked(owner), CLASS::IN, 300, data)
}

fn reply(id: u16, qname: &str, qtype: TYPE, rcode: RCODE, answers: Vec<ResourceRecord>) -> Vec<u8> {
    let mut p = Packet::new_reply(id);
    p.questions.push(Question::new(
        Name::new_unchecked(qname),
        QTYPE::TYPE(qtype),
        QCLASS::CLASS(CLASS::IN),
        false,
    ));
    *p.rcode_mut() = rcode;
    p.answers = answers;
    p.build_bytes_vec_compressed().unwrap()
}

fn mx_rr<'a>(owner: &'a str, pref: u16, x: &'a str) -> ResourceRecord<'a> {
    rr(
        owner,
        RData::MX(MX {
            preference: pref,
            exchange: Name::new_unchecked(x),
        }),
    )
}

#[test]
fn query_has_rd_edns_and_the_question() {
    let q = build_query(0xBEEF, "Example.TEST.", Qtype::Mx).unwrap();
    let p = Packet::parse(&q).unwrap();
    assert_eq!(p.id(), 0xBEEF);
    assert!(p.has_flags(PacketFlag::RECURSION_DESIRED));
    assert_eq!(p.opt().unwrap().udp_packet_size, 1232);
    assert_eq!(p.questions[0].qname.to_string(), "example.test");
    assert!(build_query(1, "", Qtype::A).is_err());
    assert!(build_query(1, "bad name.test", Qtype::A).is_err());
    assert!(build_query(1, &"a".repeat(64), Qtype::A).is_err());
}

#[test]
fn mx_reply_is_read() {
    let b = reply(
        7,
        "example.test",
        TYPE::MX,
        RCODE::NoError,
        vec![
            mx_rr("Example.test", 10, "MX1.example.test"),
            mx_rr("example.test", 0, ""),
        ],
    );
    let r = parse_reply(7, "example.test.", Qtype::Mx, &b).unwrap();
    assert_eq!(r.rcode, Rcode::NoError);
    assert!(!r.truncated);
    assert_eq!(
        r.answers,
        [
            Record {
                owner: "example.test".into(),
                data: Data::Mx(10, "mx1.example.test".into())
            },
            Record {
                owner: "example.test".into(),
                data: Data::Mx(0, "".into())
            }
        ]
    );
}

#[test]
fn foreign_replies_are_not_ours() {
    let b = reply(7, "example.test", TYPE::MX, RCODE::NoError, vec![]);
    assert_eq!(
        parse_reply(8, "example.test", Qtype::Mx, &b),
        Err(WireError::NotOurs)
    );
    assert_eq!(
        parse_reply(7, "other.test", Qtype::Mx, &b),
        Err(WireError::NotOurs)
    );
    assert_eq!(
        parse_reply(7, "example.test", Qtype::A, &b),
        Err(WireError::NotOurs)
    );
    // Our own query echoed back (QR not set).
    let q = build_query(7, "example.test", Qtype::Mx).unwrap();
    assert_eq!(
        parse_reply(7, "example.test", Qtype::Mx, &q),
        Err(WireError::NotOurs)
    );
}

#[test]
fn rcodes() {
    let nx = reply(1, "no.test", TYPE::A, RCODE::NameError, vec![]);
    assert_eq!(
        parse_reply(1, "no.test", Qtype::A, &nx).unwrap().rcode,
        Rcode::NxDomain
    );
    let sf = reply(1, "no.test", TYPE::A, RCODE::ServerFailure, vec![]);
    assert_eq!(
        parse_reply(1, "no.test", Qtype::A, &sf).unwrap().rcode,
        Rcode::Failed(2)
    );
}

#[test]
fn cname_chains() {
    let answers = vec![
        Record {
            owner: "alias.test".into(),
            data: Data::Cname("mid.test".into()),
        },
        Record {
            owner: "mid.test".into(),
            data: Data::Cname("real.test".into()),
        },
        Record {
            owner: "real.test".into(),
            data: Data::A("192.0.2.1".parse().unwrap()),
        },
    ];
    assert_eq!(
        follow(&answers, "alias.test", Qtype::A, 16),
        Chain::Found(vec![Data::A("192.0.2.1".parse().unwrap())])
    );
    assert_eq!(
        follow(&answers, "alias.test", Qtype::Aaaa, 16),
        Chain::Follow {
            target: "real.test".into(),
            hops: 2
        }
    );
    assert_eq!(follow(&answers, "alias.test", Qtype::A, 1), Chain::TooLong);
    assert_eq!(follow(&answers, "real.test", Qtype::Mx, 16), Chain::NoData);
    let looped = vec![
        Record {
            owner: "a.test".into(),
            data: Data::Cname("b.test".into()),
        },
        Record {
            owner: "b.test".into(),
            data: Data::Cname("a.test".into()),
        },
    ];
    assert_eq!(follow(&looped, "a.test", Qtype::A, 16), Chain::TooLong);
}

#[test]
fn addresses_and_odd_records() {
    let b = reply(
        3,
        "h.test",
        TYPE::AAAA,
        RCODE::NoError,
        vec![
            rr("h.test", RData::AAAA(AAAA { address: 1 })),
            rr(
                "h.test",
                RData::A(A {
                    address: 0x7f000001,
                }),
            ),
            rr(
                "h.test",
                RData::CNAME(CNAME(Name::new_unchecked("x y.test"))),
            ),
            rr("bad name.test", RData::A(A { address: 1 })),
        ],
    );
    let r = parse_reply(3, "h.test", Qtype::Aaaa, &b).unwrap();
    assert_eq!(
        r.answers.iter().map(|a| a.data.clone()).collect::<Vec<_>>(),
        [
            Data::Aaaa("::1".parse().unwrap()),
            Data::A("127.0.0.1".parse().unwrap())
        ]
    );
}

/// xorshift: garbage without a dependency.
fn next(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

#[test]
fn garbage_never_panics() {
    let good = reply(
        9,
        "example.test",
        TYPE::MX,
        RCODE::NoError,
        (0..20)
            .map(|i| mx_rr("example.test", i, "mx.example.test"))
            .collect(),
    );
    // Every truncation.
    for n in 0..good.len() {
        let _ = parse_reply(9, "example.test", Qtype::Mx, &good[..n]);
    }
    // Bit flips and random bytes, with our ID in front half the time.
    let mut seed = 0x9E37_79B9_7F4A_7C15;
    for round in 0..20_000 {
        let mut b = if round % 2 == 0 {
            let mut b = good.clone();
            for _ in 0..(1 + next(&mut seed) % 4) {
                let i = next(&mut seed) as usize % b.len();
                b[i] ^= 1 << (next(&mut seed) % 8);
            }
            b
        } else {
            let n = next(&mut seed) as usize % 200;
            (0..n).map(|_| next(&mut seed) as u8).collect::<Vec<u8>>()
        };
        if b.len() >= 2 && round % 4 == 1 {
            b[0] = 0;
            b[1] = 9;
        }
        let _ = parse_reply(9, "example.test", Qtype::Mx, &b);
    }
    // Header counts far beyond the packet: refused before parsing.
    let mut huge = good.clone();
    huge[6] = 0xFF;
    huge[7] = 0xFF;
    assert!(matches!(
        parse_reply(9, "example.test", Qtype::Mx, &huge),
        Err(WireError::Malformed(_))
    ));
}
