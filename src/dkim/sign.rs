//! One DKIM-Signature header field (RFC 6376 §3.5, §3.7, §5): pure, with
//! the time and the randomness passed in.
//!
//! - `h=`: each configured name as often as the message has that field;
//!   a name configured twice once more than that, so a field of that name
//!   added later breaks the signature (oversigning, §5.4.2; From by
//!   default). Instances are taken from the bottom up (§5.4.2).
//! - The hash input (§3.7): the named fields, canonicalized, each with its
//!   CRLF; then this field itself, canonicalized, with an empty `b=` and
//!   no CRLF after it.
//! - The field is folded before it is hashed: what is hashed is what is
//!   sent. `b=` comes last, so a verifier that removes its value removes
//!   the folds inside it too and sees the bytes that were signed.
//! - `l=` is never used (it lets anyone append to a signed body).

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ring::rand::SecureRandom;

use super::canon::{Canon, Canonicalization, Field};
use super::key::PrivateKey;

/// What a signature is made with: one `[[dkim]]` entry, read.
#[derive(Debug)]
pub struct SigningKey {
    /// `d=`, lower case.
    pub domain: String,
    /// `s=`.
    pub selector: String,
    pub key: PrivateKey,
    /// Field names in lower case; a name twice means "oversign".
    pub headers: Vec<String>,
    pub canon: Canonicalization,
    /// `x=` is `t=` plus this many seconds.
    pub expire: Option<u64>,
}

/// Folded lines are kept to about this width.
const WIDTH: usize = 76;

/// Builds a folded header field out of tokens.
struct Folder {
    out: String,
    col: usize,
}

impl Folder {
    fn new(start: &str) -> Folder {
        Folder {
            out: start.to_string(),
            col: start.len(),
        }
    }

    /// Appends `tok`, first folding when it would run past the width.
    /// `space`: a space separates it from what came before, unless folded.
    fn push(&mut self, tok: &str, space: bool) {
        let extra = usize::from(space);
        if self.col + extra + tok.len() > WIDTH && self.col > 1 {
            self.out.push_str("\r\n\t");
            self.col = 1;
        } else if space {
            self.out.push(' ');
            self.col += 1;
        }
        self.out.push_str(tok);
        self.col += tok.len();
    }
}

impl SigningKey {
    /// The `h=` names for a message with these fields.
    pub fn signed_names(&self, fields: &[Field]) -> Vec<&str> {
        let mut out = Vec::new();
        let mut seen: Vec<&str> = Vec::new();
        for name in &self.headers {
            if seen.contains(&name.as_str()) {
                continue;
            }
            seen.push(name);
            let present = fields.iter().filter(|f| f.name == *name).count();
            let oversign = self.headers.iter().filter(|h| *h == name).count() > 1;
            for _ in 0..present + usize::from(oversign) {
                out.push(name.as_str());
            }
        }
        out
    }

    /// The DKIM-Signature field (with CRLF line ends, the last one
    /// included) for a message with `fields` and body hash `bh`, at Unix
    /// time `now`.
    pub fn sign(
        &self,
        fields: &[Field],
        bh: &[u8],
        now: i64,
        rng: &dyn SecureRandom,
    ) -> Result<String, String> {
        let names = self.signed_names(fields);
        let alg = self.key.algorithm();
        let mut f = Folder::new("DKIM-Signature:");
        f.push("v=1;", true);
        f.push(&format!("a={};", alg.tag()), true);
        f.push(&format!("c={};", self.canon.tag()), true);
        f.push(&format!("d={};", self.domain), true);
        f.push(&format!("s={};", self.selector), true);
        f.push(&format!("t={now};"), true);
        if let Some(x) = self.expire {
            f.push(&format!("x={};", now.saturating_add(x as i64)), true);
        }
        // h= may fold after any colon.
        for (i, n) in names.iter().enumerate() {
            let last = i + 1 == names.len();
            let tok = match (i, last) {
                (0, true) => format!("h={n};"),
                (0, false) => format!("h={n}:"),
                (_, true) => format!("{n};"),
                (_, false) => format!("{n}:"),
            };
            f.push(&tok, i == 0);
        }
        f.push(&format!("bh={};", B64.encode(bh)), true);
        f.push("b=", true);

        let mut data = Vec::with_capacity(1024);
        let mut used: Vec<(&str, usize)> = Vec::new();
        for n in &names {
            let k = match used.iter_mut().find(|(x, _)| x == n) {
                Some((_, k)) => {
                    *k += 1;
                    *k - 1
                }
                None => {
                    used.push((n, 1));
                    0
                }
            };
            // The k-th instance from the bottom, if there is one.
            if let Some(field) = fields.iter().rev().filter(|f| f.name == *n).nth(k) {
                field.canonical(self.canon.header, &mut data);
            }
        }
        match self.canon.header {
            Canon::Simple => data.extend_from_slice(f.out.as_bytes()),
            Canon::Relaxed => super::canon::relaxed_header(f.out.as_bytes(), &mut data),
        }
        let sig = self.key.sign(rng, &data)?;
        let b = B64.encode(sig);
        // The signature's base64 may be folded anywhere (§3.5, b=).
        let mut rest = b.as_str();
        while !rest.is_empty() {
            let room = WIDTH.saturating_sub(f.col);
            if room < 8 {
                f.out.push_str("\r\n\t");
                f.col = 1;
                continue;
            }
            let take = room.min(rest.len());
            f.out.push_str(&rest[..take]);
            f.col += take;
            rest = &rest[take..];
        }
        f.out.push_str("\r\n");
        Ok(f.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dkim::canon::MessageScan;

    fn key(headers: &[&str], canon: Canonicalization) -> SigningKey {
        let pem = include_str!("../../tests/fixtures/dkim/ed25519.pem");
        SigningKey {
            domain: "example.test".into(),
            selector: "s1".into(),
            key: PrivateKey::from_pem(pem.as_bytes()).unwrap(),
            headers: headers.iter().map(|h| h.to_string()).collect(),
            canon,
            expire: Some(3600),
        }
    }

    fn fields(msg: &[u8]) -> Vec<Field> {
        let mut s = MessageScan::new(false, true);
        s.update(msg);
        s.finish().fields
    }

    #[test]
    fn names_are_counted_and_oversigned() {
        let k = key(
            &["from", "from", "to", "cc", "received"],
            Canonicalization::RELAXED,
        );
        let f = fields(b"From: a@example.test\nTo: x@y.test\nReceived: 1\nReceived: 2\n\nbody\n");
        assert_eq!(
            k.signed_names(&f),
            ["from", "from", "to", "received", "received"]
        );
    }

    #[test]
    fn header_is_folded_and_ends_with_the_signature() {
        let k = key(
            &["from", "from", "to", "subject", "date", "message-id"],
            Canonicalization::RELAXED,
        );
        let f = fields(
            b"From: a@example.test\nTo: x@y.test\nSubject: s\nDate: d\nMessage-ID: <m@x>\n\n",
        );
        let rng = ring::rand::SystemRandom::new();
        let h = k.sign(&f, &[0u8; 32], 1_800_000_000, &rng).unwrap();
        assert!(
            h.starts_with(
                "DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed; d=example.test;"
            ),
            "{h}"
        );
        assert!(h.contains(" t=1800000000; x=1800003600;"), "{h}");
        assert!(h.ends_with("\r\n"));
        for line in h.split("\r\n") {
            assert!(line.len() <= WIDTH, "{line:?} in\n{h}");
        }
        let unfolded = h.replace("\r\n\t", "");
        assert!(
            unfolded.contains("h=from:from:to:subject:date:message-id;"),
            "{unfolded}"
        );
        let b = unfolded.rsplit_once("b=").unwrap().1.trim_end();
        assert_eq!(B64.decode(b).unwrap().len(), 64);
    }
}
