//! The two ways `postern explain` shows a [`Report`]: text for people,
//! one JSON object for scripts (`--json`).

use std::fmt::Write;

use super::json::J;
use super::Report;

pub fn render(r: &Report) -> String {
    let mut o = String::new();
    let l = &r.listener;
    let _ = writeln!(o, "postern explain: {}", r.recipient);
    let from = if r.from.is_empty() { "<>" } else { &r.from };
    let _ = writeln!(
        o,
        "  from {from}, client {} ({}), listener {} {}{} ({}, role {}{}): {}",
        r.client,
        if r.trusted {
            "in the trusted networks"
        } else {
            "not in the trusted networks"
        },
        l.index,
        l.address,
        l.bound
            .as_ref()
            .map(|b| format!(" bound to {b}"))
            .unwrap_or_default(),
        l.mode,
        l.role,
        if l.require_auth { ", require_auth" } else { "" },
        l.chosen
    );
    if let Some(u) = &r.logged_in {
        let _ = writeln!(o, "  logged in as {u}");
    }
    o.push_str("\nSMTP dialog (played against postern's own session; nothing is sent):\n");
    for e in &r.dialog {
        let _ = writeln!(o, "  {} -> {}", e.command, e.reply.summary());
    }
    let _ = writeln!(
        o,
        "\n{}",
        match r.accepted {
            true => "Accepted",
            false => "Refused",
        }
    );
    if let Some((name, why)) = &r.rule {
        let _ = writeln!(o, "  {why} [{name}]");
    }
    if !r.expansion.is_empty() {
        o.push_str("\nAliases and mailboxes:\n");
        for s in &r.expansion {
            let _ = writeln!(o, "  {}{}: {}", "  ".repeat(s.depth), s.address, s.detail);
        }
    }
    if let Some(f) = &r.filter {
        let _ = writeln!(
            o,
            "\nContent filter {}: the message goes there first, with its recipients as given; aliases expand when it comes back{}. What follows is what happens then.",
            f.next_hop,
            f.back_on.as_ref().map(|b| format!(" on {b}")).unwrap_or_else(|| " (no reinject listener is configured!)".into())
        );
    }
    if !r.destinations.is_empty() {
        o.push_str("\nDestinations:\n");
        for d in &r.destinations {
            let _ = writeln!(o, "  {} -> {}", d.address, d.route);
            for (k, v) in &d.fields {
                field(&mut o, k, v);
            }
        }
    }
    if !r.rules.is_empty() {
        let _ = writeln!(
            o,
            "\nHeader and body rules (matched against each message as it arrives{}):",
            if r.rewrites_only {
                "; on this listener only IGNORE, STRIP and REPLACE act"
            } else {
                ""
            }
        );
        for t in &r.rules {
            for (n, text) in &t.rules {
                let _ = writeln!(o, "  {}: {}:{n}: {text}", t.place, t.file);
            }
        }
    }
    if !r.notes.is_empty() {
        o.push_str("\nNotes:\n");
        for n in &r.notes {
            let _ = writeln!(o, "  {n}");
        }
    }
    o
}

/// One field of a destination, as text.
fn field(o: &mut String, key: &str, v: &J) {
    match (key, v) {
        ("argv", J::List(words)) => {
            let words: Vec<String> = words.iter().map(|w| shell_word(&scalar(w))).collect();
            let _ = writeln!(o, "    argv: {}", words.join(" "));
        }
        (_, J::List(hops)) if hops.is_empty() => {
            let _ = writeln!(o, "    {key}: none");
        }
        (_, J::List(hops)) => {
            let _ = writeln!(o, "    {key}:");
            for h in hops {
                hop(o, h);
            }
        }
        _ => {
            let _ = writeln!(o, "    {key}: {}", scalar(v));
        }
    }
}

/// A next hop of an SMTP route and what its lookup gave.
fn hop(o: &mut String, h: &J) {
    let get = |j: &'_ J, k: &str| match j {
        J::Obj(v) => v
            .iter()
            .find(|(x, _)| *x == k)
            .map(|(_, v)| v.clone())
            .unwrap_or(J::Null),
        _ => J::Null,
    };
    let creds = match get(h, "credentials") {
        J::Null => "no login".to_string(),
        c => format!("credentials {}", scalar(&c)),
    };
    let _ = writeln!(o, "      {} ({creds})", scalar(&get(h, "hop")));
    let lookup = get(h, "lookup");
    if let J::Str(e) = get(&lookup, "error") {
        let _ = writeln!(o, "        lookup: {e}");
    }
    if let J::List(hosts) = get(&lookup, "hosts") {
        for x in hosts {
            let pref = match get(&x, "preference") {
                J::Num(p) => format!(" (MX preference {p})"),
                _ => String::new(),
            };
            let addrs = match get(&x, "addresses") {
                J::List(a) => a.iter().map(scalar).collect::<Vec<_>>().join(", "),
                _ => String::new(),
            };
            let _ = writeln!(o, "        {}{pref}: {addrs}", scalar(&get(&x, "host")));
        }
    }
    if let J::List(w) = get(&lookup, "warnings") {
        for x in w {
            let _ = writeln!(o, "        warning: {}", scalar(&x));
        }
    }
}

fn scalar(v: &J) -> String {
    match v {
        J::Null => "none".into(),
        J::Bool(b) => b.to_string(),
        J::Num(n) => n.to_string(),
        J::Str(s) => s.clone(),
        other => other.render(),
    }
}

/// A word as a shell would need it quoted to see it as one.
fn shell_word(w: &str) -> String {
    if !w.is_empty()
        && w.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"@%+=:,./_-${}".contains(&b))
    {
        w.to_string()
    } else {
        format!("'{}'", w.replace('\'', "'\\''"))
    }
}

pub fn json(r: &Report) -> J {
    let l = &r.listener;
    J::Obj(vec![
        ("recipient", J::s(&r.recipient)),
        ("sender", J::s(&r.from)),
        ("client", J::s(r.client.to_string())),
        ("trusted_network", J::Bool(r.trusted)),
        (
            "listener",
            J::Obj(vec![
                ("index", J::Num(l.index as u64)),
                ("address", J::s(&l.address)),
                ("bound", J::opt(l.bound.clone())),
                ("mode", J::s(l.mode)),
                ("role", J::s(l.role)),
                ("require_auth", J::Bool(l.require_auth)),
                ("chosen", J::s(&l.chosen)),
            ]),
        ),
        ("auth", J::opt(r.auth.clone())),
        ("logged_in", J::opt(r.logged_in.clone())),
        (
            "dialog",
            J::List(
                r.dialog
                    .iter()
                    .map(|e| {
                        J::Obj(vec![
                            ("command", J::s(&e.command)),
                            ("reply", J::s(e.reply.summary())),
                        ])
                    })
                    .collect(),
            ),
        ),
        ("accepted", J::Bool(r.accepted)),
        ("rule", J::opt(r.rule.as_ref().map(|x| x.0))),
        ("reason", J::opt(r.rule.as_ref().map(|x| x.1.clone()))),
        (
            "expansion",
            J::List(
                r.expansion
                    .iter()
                    .map(|s| {
                        J::Obj(vec![
                            ("depth", J::Num(s.depth as u64)),
                            ("address", J::s(&s.address)),
                            ("rule", J::s(s.rule)),
                            ("detail", J::s(&s.detail)),
                        ])
                    })
                    .collect(),
            ),
        ),
        (
            "content_filter",
            match &r.filter {
                None => J::Null,
                Some(f) => J::Obj(vec![
                    ("next_hop", J::s(&f.next_hop)),
                    ("back_on", J::opt(f.back_on.clone())),
                ]),
            },
        ),
        (
            "destinations",
            J::List(
                r.destinations
                    .iter()
                    .map(|d| {
                        let mut v = vec![("address", J::s(&d.address)), ("route", J::s(d.route))];
                        v.extend(d.fields.iter().map(|(k, x)| (*k, x.clone())));
                        J::Obj(v)
                    })
                    .collect(),
            ),
        ),
        (
            "rules",
            J::List(
                r.rules
                    .iter()
                    .map(|t| {
                        J::Obj(vec![
                            ("place", J::s(t.place)),
                            ("file", J::s(&t.file)),
                            (
                                "rules",
                                J::List(
                                    t.rules
                                        .iter()
                                        .map(|(n, text)| {
                                            J::Obj(vec![
                                                ("line", J::Num(*n as u64)),
                                                ("text", J::s(text)),
                                            ])
                                        })
                                        .collect(),
                                ),
                            ),
                        ])
                    })
                    .collect(),
            ),
        ),
        ("rules_rewrites_only", J::Bool(r.rewrites_only)),
        ("notes", J::strs(r.notes.clone())),
    ])
}
