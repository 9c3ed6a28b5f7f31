//! `[[dkim]]`: the keys outgoing mail is DKIM-signed with (dkim/), their
//! checks, and the keys themselves, read in server scope. A key that is
//! missing, unreadable, readable by every user, too weak, or not what
//! `algorithm` says is an error naming the file.

use std::path::Path;
use std::sync::Arc;

use toml::de::{DeTable, DeValue};

use super::schema::Ctx;
use super::values::Secs;
use super::{is_domain, Config};
use crate::dkim::canon::Canonicalization;
use crate::dkim::key::{Algorithm, PrivateKey};
use crate::dkim::sign::SigningKey;
use crate::dkim::{Entry, Signer};
use crate::section;

fn default_headers() -> Vec<String> {
    [
        "From",
        "From",
        "To",
        "Cc",
        "Subject",
        "Date",
        "Message-ID",
        "Reply-To",
        "MIME-Version",
        "Content-Type",
        "In-Reply-To",
        "References",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

section! {
    /// A DKIM key outgoing mail is signed with (RFC 6376; RFC 8463 for
    /// Ed25519), when it leaves over SMTP (by MX, smarthost or route; never
    /// towards the content filter) and came from our side: a trusted
    /// network, a logged-in client, or postern's own notices. Mail from
    /// outside that is sent on (backup MX, aliases) is not signed unless a
    /// key says `forwards = true`. Make a key and its DNS record with
    /// `postern dkim keygen DOMAIN`. Repeat the table for more keys; keys of
    /// the same domain all sign (an RSA and an Ed25519 signature side by side).
    pub struct Dkim ("[dkim]") {
        /// The signing domain (d=): mail whose From: is in it is signed.
        domain: String = String::new(), example "\"example.test\"", default "none: required";
        /// The selector (s=): the record is at SELECTOR._domainkey.DOMAIN.
        selector: String = String::new(), example "\"s202611\"", default "none: required";
        /// The private key in PEM: PKCS#8 ("BEGIN PRIVATE KEY", as openssl
        /// genpkey writes) or PKCS#1 ("BEGIN RSA PRIVATE KEY"); RSA of 2048
        /// to 4096 bits, or Ed25519. Not readable by every user.
        key_file: Option<std::path::PathBuf> = None, example "\"dkim/s202611.example.test.pem\"", default "none: required";
        /// "rsa-sha256" or "ed25519-sha256"; checked against the key.
        algorithm: Option<String> = None, example "\"rsa-sha256\"", default "the key's";
        /// Header fields signed (h=), each as often as the message has it; a
        /// name written twice is signed once more, so that no such field can
        /// be added later (From at least once; RFC 6376 5.4).
        headers: Vec<String> = default_headers(), example "[\"From\", \"From\", \"To\", \"Cc\", \"Subject\", \"Date\", \"Message-ID\", \"Reply-To\", \"MIME-Version\", \"Content-Type\", \"In-Reply-To\", \"References\"]";
        /// Header/body canonicalization (c=): "relaxed/relaxed",
        /// "relaxed/simple", "simple/relaxed" or "simple/simple".
        canonicalization: String = "relaxed/relaxed".into(), example "\"relaxed/relaxed\"";
        /// Signatures expire this long after signing (x=). Unset: never.
        expire: Option<Secs> = None, example "\"7d\"", default "unset";
        /// Also sign mail From: a subdomain (lists.example.test) with this key.
        subdomains: bool = true, example "true";
        /// Also sign mail whose From: domain has no key when its envelope
        /// sender is in this domain.
        sender: bool = true, example "true";
        /// Also sign mail from outside that is sent on again (an alias to a
        /// remote address, a backup MX's relay) when an envelope recipient
        /// is in this domain: the forwarder signs. Off: only mail from our
        /// side is signed.
        forwards: bool = false, example "false";
    }
}

/// `[[dkim]]` as read, and the keys ready to sign (server scope only).
#[derive(Clone, Debug, Default)]
pub struct DkimSettings {
    pub entries: Vec<Dkim>,
    pub signer: Option<Arc<Signer>>,
}

/// A selector: dot-separated labels of letters, digits and hyphens
/// (RFC 6376 3.1).
fn is_selector(s: &str) -> bool {
    !s.is_empty()
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// A header field name (RFC 5322 3.6.8: printable ASCII but the colon).
fn is_field_name(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| (33..=126).contains(&b) && b != b':')
}

/// Where `[[dkim]]` number `i` (or its key `key`) starts, for error lines.
fn offset(root: &DeTable<'_>, i: usize, key: &str) -> usize {
    let Some(DeValue::Array(a)) = root.get("dkim").map(|v| v.get_ref()) else {
        return 0;
    };
    let Some(item) = a.get(i) else { return 0 };
    match item.get_ref() {
        DeValue::Table(t) => t
            .get_key_value(key)
            .map(|(k, _)| k.span().start)
            .unwrap_or(item.span().start),
        _ => item.span().start,
    }
}

/// Reads `[[dkim]]`.
pub fn read(ctx: &mut Ctx<'_>, root: &DeTable<'_>) -> DkimSettings {
    let mut entries = Vec::new();
    let Some(v) = root.get("dkim") else {
        return DkimSettings::default();
    };
    let DeValue::Array(arr) = v.get_ref() else {
        ctx.error(
            v.span().start,
            "dkim",
            "expected [[dkim]] tables",
            "one or more [[dkim]] tables",
        );
        return DkimSettings::default();
    };
    for (i, item) in arr.iter().enumerate() {
        let prefix = format!("dkim[{}]", i + 1);
        if let Some(t) = super::schema::as_table(ctx, &prefix, item) {
            entries.push(Dkim::read(ctx, &prefix, t, &[]));
        }
    }
    DkimSettings {
        entries,
        signer: None,
    }
}

impl Config {
    /// Checks every `[[dkim]]` entry; in server scope (`files`) also
    /// reads the keys and makes the signer.
    pub(super) fn check_dkim(&mut self, ctx: &mut Ctx<'_>, root: &DeTable<'_>, files: bool) {
        let mut ready = Vec::new();
        let mut seen: Vec<(String, String)> = Vec::new();
        for (i, d) in self.dkim.entries.iter().enumerate() {
            let f = Field { root, i };
            let errors = ctx.errors.len();
            let domain = f.names(ctx, d, &mut seen);
            let algorithm = f.algorithm(ctx, d);
            let headers = f.headers(ctx, d);
            let canon = Canonicalization::parse(&d.canonicalization);
            if canon.is_none() {
                ctx.error(
                    f.at("canonicalization"),
                    &f.key("canonicalization"),
                    format!("unknown canonicalization {:?}", d.canonicalization),
                    "\"relaxed/relaxed\", \"relaxed/simple\", \"simple/relaxed\", \"simple/simple\"",
                );
            }
            if d.expire.is_some_and(|e| e.0.as_secs() == 0) {
                ctx.error(
                    f.at("expire"),
                    &f.key("expire"),
                    "0 would expire every signature at once",
                    "a duration such as \"7d\", or no expire",
                );
            }
            let Some(path) = &d.key_file else {
                ctx.error(
                    f.at("key_file"),
                    &f.key("key_file"),
                    "missing",
                    "the private key in PEM (postern dkim keygen makes one)",
                );
                continue;
            };
            if !files {
                continue;
            }
            let loaded = f.key_file(ctx, &self.resolve(path), algorithm);
            if let (Some(k), Some(canon)) = (loaded, canon) {
                if ctx.errors.len() == errors {
                    ready.push(Entry {
                        key: SigningKey {
                            domain,
                            selector: d.selector.clone(),
                            key: k,
                            headers,
                            canon,
                            expire: d.expire.map(|e| e.0.as_secs()),
                        },
                        subdomains: d.subdomains,
                        sender: d.sender,
                        forwards: d.forwards,
                    });
                }
            }
        }
        self.dkim.signer = Signer::new(ready);
    }
}

/// `[[dkim]]` number `i + 1`: where its keys are, for error lines, and
/// the checks of its fields.
struct Field<'a, 'b> {
    root: &'a DeTable<'b>,
    i: usize,
}

impl Field<'_, '_> {
    fn at(&self, k: &str) -> usize {
        offset(self.root, self.i, k)
    }

    fn key(&self, k: &str) -> String {
        format!("dkim[{}].{k}", self.i + 1)
    }

    /// `domain` and `selector`, each well formed, and the pair not used by
    /// an earlier entry. Returns the domain in lower case.
    fn names(&self, ctx: &mut Ctx<'_>, d: &Dkim, seen: &mut Vec<(String, String)>) -> String {
        let domain = d.domain.to_ascii_lowercase();
        if domain.is_empty() {
            ctx.error(
                self.at("domain"),
                &self.key("domain"),
                "missing",
                "the signing domain, such as \"example.test\"",
            );
        } else if !is_domain(&domain) || !domain.is_ascii() {
            ctx.error(
                self.at("domain"),
                &self.key("domain"),
                format!("{:?} is not a domain", d.domain),
                "a domain name in ASCII (xn-- for an international one)",
            );
        }
        if !is_selector(&d.selector) {
            let problem = if d.selector.is_empty() {
                "missing".to_string()
            } else {
                format!("{:?} is not a selector", d.selector)
            };
            ctx.error(
                self.at("selector"),
                &self.key("selector"),
                problem,
                "letters, digits and hyphens, such as \"s202611\"",
            );
        }
        let pair = (domain.clone(), d.selector.to_ascii_lowercase());
        if !pair.0.is_empty() && seen.contains(&pair) {
            ctx.error(
                self.at("selector"),
                &self.key("selector"),
                format!(
                    "{}._domainkey.{} is already used by another [[dkim]]",
                    pair.1, pair.0
                ),
                "one key per selector and domain",
            );
        }
        seen.push(pair);
        domain
    }

    /// `algorithm`, when given.
    fn algorithm(&self, ctx: &mut Ctx<'_>, d: &Dkim) -> Option<Algorithm> {
        let a = d.algorithm.as_ref()?;
        let parsed = Algorithm::parse(a);
        if parsed.is_none() {
            ctx.error(
                self.at("algorithm"),
                &self.key("algorithm"),
                format!("unknown algorithm {a:?}"),
                Algorithm::ALLOWED,
            );
        }
        parsed
    }

    /// `headers`: field names, From among them. Returns them in lower case.
    fn headers(&self, ctx: &mut Ctx<'_>, d: &Dkim) -> Vec<String> {
        let mut headers = Vec::new();
        let mut bad_name = false;
        for h in &d.headers {
            if is_field_name(h) {
                headers.push(h.to_ascii_lowercase());
            } else if !bad_name {
                // One error per key: the first bad name is enough.
                bad_name = true;
                ctx.error(
                    self.at("headers"),
                    &self.key("headers"),
                    format!("{h:?} is not a header field name"),
                    "names such as \"From\", \"Subject\"",
                );
            }
        }
        if !bad_name && !headers.iter().any(|h| h == "from") {
            ctx.error(
                self.at("headers"),
                &self.key("headers"),
                "From is not in the list",
                "a list with \"From\" (RFC 6376 5.4: From must be signed)",
            );
        }
        headers
    }

    /// Reads the key, of `algorithm` when one is given.
    fn key_file(
        &self,
        ctx: &mut Ctx<'_>,
        path: &Path,
        algorithm: Option<Algorithm>,
    ) -> Option<PrivateKey> {
        let loaded = read_key(path).and_then(|k| match algorithm {
            Some(a) if a != k.algorithm() => Err(format!(
                "{}: the key is {}, not {}",
                path.display(),
                k.describe(),
                a.tag()
            )),
            _ => Ok(k),
        });
        match loaded {
            Ok(k) => Some(k),
            Err(problem) => {
                ctx.error(
                    self.at("key_file"),
                    &self.key("key_file"),
                    problem,
                    "a PEM private key (RSA of 2048 to 4096 bits, or Ed25519), mode 0600 or 0640",
                );
                None
            }
        }
    }
}

/// Reads a key file; errors name it.
fn read_key(path: &Path) -> Result<PrivateKey, String> {
    use std::os::unix::fs::MetadataExt;
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| format!("{shown}: cannot read: {e}"))?;
    if meta.mode() & 0o007 != 0 {
        return Err(format!(
            "{shown}: mode {:o} lets every user read the private key (chmod 600 {shown})",
            meta.mode() & 0o777
        ));
    }
    PrivateKey::load(path).map_err(|e| format!("{shown}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_and_field_names() {
        assert!(is_selector("s202611"));
        assert!(is_selector("brisbane.2026"));
        assert!(!is_selector(""));
        assert!(!is_selector("a_b"));
        assert!(!is_selector("-a"));
        assert!(is_field_name("Message-ID"));
        assert!(!is_field_name("Bad:Name"));
        assert!(!is_field_name("with space"));
    }
}
