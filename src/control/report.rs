//! What `postern queue list` and `show` print, as text (Postfix mailq
//! style) or JSON, rendered from spool entries. The same code renders for
//! the running server (which also knows which messages are in delivery)
//! and for a stopped one (reading the spool directly).
//!
//! Text list, one block per message:
//! ```text
//! -Queue ID-- --Size-- ---Arrival (UTC)--- -Sender/Recipient-------
//! 1M19G9BJ42P*    5120 Sat Nov 28 00:38:36  alice@example.test
//!          (4.4.1 no outbound relay ...; next attempt Sat Nov 28 00:43:36)
//!                                           bob@remote.test
//! ```
//! `*` after the ID: being delivered now; `!`: on hold. JSON: an array of
//! objects `{id, size, arrival, sender, state, next_attempt, attempts,
//! recipients: [{address, final, status, last_error}]}`; a recipient
//! without a last result has status `pending` (not tried yet) or `done`
//! (every destination delivered or bounced; the text list leaves it out,
//! as mailq does).

use std::fmt::Write as _;

use crate::queue::envelope::DeliveryState;
use crate::queue::spool::{Entry, Place};
use crate::timefmt;

/// One message, as listed.
pub struct Item {
    pub entry: Entry,
    /// A delivery is in progress (only the running server knows).
    pub active: bool,
}

fn state_word(it: &Item) -> &'static str {
    match (it.entry.place, it.active) {
        (Place::Held, _) => "hold",
        (Place::Queued, true) => "active",
        (Place::Queued, false) if attempts(&it.entry) > 0 => "deferred",
        (Place::Queued, false) => "queued",
    }
}

fn attempts(e: &Entry) -> u32 {
    e.state.as_ref().map(|s| s.attempts).unwrap_or(0)
}

/// Are all of a recipient's destinations finished (delivered or bounced)?
/// After an attempt, `last` holds every destination still pending, so a
/// recipient without one there is done. Before the first attempt (or
/// after a requeue) nothing is known: pending.
fn finished(st: &DeliveryState, rcpt: &str) -> bool {
    st.attempts > 0 && !st.last.is_empty() && results_for(st, rcpt).is_empty()
}

/// The last results of one envelope recipient.
fn results_for<'a>(
    st: &'a DeliveryState,
    rcpt: &str,
) -> Vec<&'a crate::queue::envelope::LastResult> {
    st.last
        .iter()
        .filter(|l| l.orig.eq_ignore_ascii_case(rcpt))
        .collect()
}

pub fn list_text(items: &[Item]) -> String {
    if items.is_empty() {
        return "Mail queue is empty\n".into();
    }
    let mut out =
        String::from("-Queue ID-- --Size-- ---Arrival (UTC)--- -Sender/Recipient-------\n");
    let mut bytes = 0u64;
    for it in items {
        let e = &it.entry;
        bytes += e.size;
        let mark = match (e.place, it.active) {
            (Place::Held, _) => "!",
            (_, true) => "*",
            _ => " ",
        };
        let sender = e.env.sender.to_string();
        let _ = writeln!(
            out,
            "{}{mark}{:>9} {}  {}",
            e.env.id,
            e.size,
            timefmt::mailq(e.env.arrival_secs()),
            if sender.is_empty() {
                "MAILER-DAEMON"
            } else {
                &sender
            }
        );
        if let Err(problem) = &e.state {
            let _ = writeln!(out, "{:10}(state file damaged: {problem})", "");
        }
        for r in &e.env.recipients {
            let rcpt = r.to_string();
            if let Ok(st) = &e.state {
                // Like mailq: only the recipients still to be delivered.
                if finished(st, &rcpt) {
                    continue;
                }
                for l in results_for(st, &rcpt) {
                    let to = if l.to.eq_ignore_ascii_case(&rcpt) {
                        String::new()
                    } else {
                        format!("{}: ", l.to)
                    };
                    let _ = writeln!(
                        out,
                        "{:10}({to}{}; next attempt {})",
                        "",
                        l.text,
                        timefmt::mailq(st.next_attempt)
                    );
                }
            }
            let _ = writeln!(out, "{:42}{rcpt}", "");
        }
        out.push('\n');
    }
    let n = items.len();
    let _ = writeln!(
        out,
        "-- {} KiB in {n} message{}.",
        bytes.div_ceil(1024),
        if n == 1 { "" } else { "s" }
    );
    out
}

pub fn list_json(items: &[Item]) -> String {
    let mut out = String::from("[");
    for (i, it) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("\n  ");
        item_json(&mut out, it);
    }
    out.push_str(if items.is_empty() { "]\n" } else { "\n]\n" });
    out
}

fn item_json(out: &mut String, it: &Item) {
    let e = &it.entry;
    let _ = write!(
        out,
        "{{\"id\": {}, \"size\": {}, \"arrival\": {}, \"sender\": {}, \"state\": {}",
        q(&e.env.id),
        e.size,
        q(&timefmt::rfc3339(e.env.arrival_secs())),
        q(&e.env.sender.to_string()),
        q(state_word(it))
    );
    match &e.state {
        Ok(st) => {
            let next = (st.attempts > 0).then(|| timefmt::rfc3339(st.next_attempt));
            let _ = write!(
                out,
                ", \"attempts\": {}, \"next_attempt\": {}",
                st.attempts,
                next.as_deref().map(q).unwrap_or_else(|| "null".into())
            );
        }
        Err(p) => {
            let _ = write!(out, ", \"state_error\": {}", q(p));
        }
    }
    out.push_str(", \"recipients\": [");
    let mut first = true;
    for r in &e.env.recipients {
        let rcpt = r.to_string();
        let last = e
            .state
            .as_ref()
            .map(|st| results_for(st, &rcpt))
            .unwrap_or_default();
        if last.is_empty() {
            let done = e.state.as_ref().is_ok_and(|st| finished(st, &rcpt));
            push_sep(out, &mut first);
            let _ = write!(
                out,
                "{{\"address\": {}, \"status\": \"{}\"}}",
                q(&rcpt),
                if done { "done" } else { "pending" }
            );
        }
        for l in last {
            push_sep(out, &mut first);
            let _ = write!(
                out,
                "{{\"address\": {}, \"final\": {}, \"status\": {}, \"last_error\": {}}}",
                q(&rcpt),
                q(&l.to),
                q(&l.status),
                q(&l.text)
            );
        }
    }
    out.push_str("]}");
}

fn push_sep(out: &mut String, first: &mut bool) {
    if !std::mem::take(first) {
        out.push_str(", ");
    }
}

/// `postern queue show`: envelope, state per recipient, headers.
pub fn show_text(it: &Item, headers: &[u8]) -> String {
    let e = &it.entry;
    let mut out = String::new();
    let _ = writeln!(out, "id: {}", e.env.id);
    let _ = writeln!(out, "state: {}", state_word(it));
    let _ = writeln!(out, "size: {}", e.size);
    let _ = writeln!(out, "arrival: {}", timefmt::rfc5322(e.env.arrival_secs()));
    let client = e
        .env
        .client_ip
        .map(|i| i.to_string())
        .unwrap_or_else(|| "-".into());
    let _ = writeln!(
        out,
        "client: {}[{client}] helo={} proto={}",
        e.env.client_name, e.env.helo, e.env.protocol
    );
    let _ = writeln!(out, "sender: <{}>", e.env.sender);
    match &e.state {
        Ok(st) => {
            let _ = writeln!(out, "attempts: {}", st.attempts);
            if st.attempts > 0 {
                let _ = writeln!(out, "next attempt: {}", timefmt::rfc5322(st.next_attempt));
            }
            for r in &e.env.recipients {
                let rcpt = r.to_string();
                let last = results_for(st, &rcpt);
                if last.is_empty() {
                    let word = if finished(st, &rcpt) {
                        "done"
                    } else {
                        "pending"
                    };
                    let _ = writeln!(out, "recipient: <{rcpt}>: {word}");
                }
                for l in last {
                    let _ = writeln!(
                        out,
                        "recipient: <{rcpt}> -> <{}>: {} ({})",
                        l.to, l.status, l.text
                    );
                }
            }
            for d in &st.done {
                let _ = writeln!(out, "done: {d}");
            }
        }
        Err(p) => {
            let _ = writeln!(out, "state file damaged: {p}");
            for r in &e.env.recipients {
                let _ = writeln!(out, "recipient: <{r}>");
            }
        }
    }
    out.push('\n');
    out.push_str(&String::from_utf8_lossy(headers));
    out
}

pub fn show_json(it: &Item, headers: &[u8]) -> String {
    let mut out = String::new();
    item_json(&mut out, it);
    out.pop(); // the closing brace
    let _ = writeln!(
        out,
        ", \"headers\": {}}}",
        q(&String::from_utf8_lossy(headers))
    );
    out
}

/// A JSON string.
pub fn json_str(s: &str) -> String {
    q(s)
}

fn q(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            '\t' => o.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(o, "\\u{:04x}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::envelope::{LastResult, QueueEnvelope};
    use crate::smtp::address::{Address, ReversePath};

    fn item(place: Place, active: bool) -> Item {
        let mut st = DeliveryState {
            attempts: 2,
            next_attempt: 1_795_826_616,
            ..Default::default()
        };
        st.last.push(LastResult {
            orig: "team@example.test".into(),
            to: "x@remote.test".into(),
            status: "deferred".into(),
            text: "4.4.1 host said: \"no\"".into(),
        });
        Item {
            entry: Entry {
                env: QueueEnvelope {
                    id: "1M19G9BJ42P".into(),
                    arrival_micros: 1_795_826_316_000_000,
                    pid: 1,
                    client_ip: None,
                    client_name: "localhost".into(),
                    helo: String::new(),
                    protocol: "ESMTP".into(),
                    sender: ReversePath::Address(Address::new("alice", "example.test")),
                    recipients: vec![
                        Address::new("team", "example.test"),
                        Address::new("bob", "example.test"),
                    ],
                    smtputf8: false,
                    handling: Default::default(),
                },
                place,
                size: 2048,
                state: Ok(st),
            },
            active,
        }
    }

    #[test]
    fn text_list_marks_active_and_held_and_shows_errors() {
        let t = list_text(&[item(Place::Queued, true), item(Place::Held, false)]);
        assert!(
            t.contains("1M19G9BJ42P*     2048 Sat Nov 28 00:38:36  alice@example.test"),
            "{t}"
        );
        assert!(t.contains("1M19G9BJ42P!"), "{t}");
        assert!(
            t.contains(
                "(x@remote.test: 4.4.1 host said: \"no\"; next attempt Sat Nov 28 00:43:36)"
            ),
            "{t}"
        );
        assert!(t.contains("-- 4 KiB in 2 messages."), "{t}");
        assert_eq!(list_text(&[]), "Mail queue is empty\n");
    }

    #[test]
    fn json_is_escaped_and_complete() {
        let j = list_json(&[item(Place::Queued, false)]);
        assert!(j.contains("\"state\": \"deferred\""), "{j}");
        assert!(
            j.contains("\"last_error\": \"4.4.1 host said: \\\"no\\\"\""),
            "{j}"
        );
        // bob has no pending destination after two attempts: delivered.
        assert!(
            j.contains("{\"address\": \"bob@example.test\", \"status\": \"done\"}"),
            "{j}"
        );
        assert!(!list_text(&[item(Place::Queued, false)]).contains("bob@"));
        // Before any attempt nothing is done.
        let mut fresh = item(Place::Queued, false);
        fresh.entry.state = Ok(DeliveryState::default());
        let j = list_json(&[fresh]);
        assert!(
            j.contains("{\"address\": \"bob@example.test\", \"status\": \"pending\"}"),
            "{j}"
        );
        assert_eq!(list_json(&[]), "[]\n");
    }
}
