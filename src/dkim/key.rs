//! DKIM keys: reading a private key in PEM, the public key record for DNS,
//! and making new keys (`postern dkim keygen`).
//!
//! Accepted files, as openssl and OpenDKIM's opendkim-genkey write them:
//! - `BEGIN RSA PRIVATE KEY`: PKCS#1. ring's `from_pkcs8` refuses it
//!   (InvalidEncoding); it is read with `RsaKeyPair::from_der`.
//! - `BEGIN PRIVATE KEY`: PKCS#8, RSA or Ed25519. openssl writes Ed25519
//!   keys as PKCS#8 v1, which ring's `from_pkcs8` refuses
//!   (VersionNotSupported): `from_pkcs8_maybe_unchecked` takes v1 and v2.
//!
//! RSA keys must have 2048 to 4096 bits (ring's own bounds; receivers
//! ignore shorter keys since RFC 8301). ring cannot make RSA keys, so
//! keygen runs `openssl genpkey` for them; Ed25519 keys are made here.
//!
//! The record (RFC 6376 §3.6.1): `v=DKIM1; k=rsa; p=<base64>`. For RSA, p=
//! is the SubjectPublicKeyInfo DER, as openssl and opendkim-genkey publish
//! it (erratum 3017; OpenDKIM reads no other form); for Ed25519 the raw 32
//! bytes (RFC 8463 §4.2). A 2048-bit RSA record is about 410 bytes, more
//! than one DNS character-string holds: it is written as strings of at
//! most 255 bytes, which verifiers join without spaces (§3.6.2.2).

use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ring::rand::SecureRandom;
use ring::signature::{self, Ed25519KeyPair, KeyPair as _, RsaKeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::PrivateKeyDer;

/// The signing algorithm (`a=`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    RsaSha256,
    Ed25519Sha256,
}

impl Algorithm {
    pub const ALLOWED: &'static str = "\"rsa-sha256\", \"ed25519-sha256\"";

    pub fn parse(s: &str) -> Option<Algorithm> {
        match s.to_ascii_lowercase().as_str() {
            "rsa-sha256" => Some(Algorithm::RsaSha256),
            "ed25519-sha256" => Some(Algorithm::Ed25519Sha256),
            _ => None,
        }
    }

    /// The `a=` value.
    pub fn tag(self) -> &'static str {
        match self {
            Algorithm::RsaSha256 => "rsa-sha256",
            Algorithm::Ed25519Sha256 => "ed25519-sha256",
        }
    }

    /// The record's `k=` value.
    pub fn key_type(self) -> &'static str {
        match self {
            Algorithm::RsaSha256 => "rsa",
            Algorithm::Ed25519Sha256 => "ed25519",
        }
    }
}

enum Inner {
    Rsa(RsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

/// A private key ready to sign. Its Debug output names the kind only.
pub struct PrivateKey(Inner);

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PrivateKey({})", self.describe())
    }
}

/// What ring's refusals mean for someone holding the file.
fn rejected(kind: &str, e: ring::error::KeyRejected) -> String {
    match e.to_string().as_str() {
        "TooSmall" => format!("the {kind} key is too weak: under 2048 bits"),
        "TooLarge" => format!("the {kind} key is over 4096 bits"),
        other => format!("not a usable {kind} key ({other})"),
    }
}

impl PrivateKey {
    /// Reads a PEM file (the first private key in it).
    pub fn load(path: &Path) -> Result<PrivateKey, String> {
        let bytes = std::fs::read(path).map_err(|e| format!("cannot read: {e}"))?;
        PrivateKey::from_pem(&bytes)
    }

    pub fn from_pem(pem: &[u8]) -> Result<PrivateKey, String> {
        let der = PrivateKeyDer::from_pem_slice(pem).map_err(|e| match e {
            rustls::pki_types::pem::Error::NoItemsFound => {
                "no private key in it (expected PEM: BEGIN PRIVATE KEY or BEGIN RSA PRIVATE KEY)"
                    .to_string()
            }
            other => format!("bad PEM: {other:?}"),
        })?;
        match der {
            PrivateKeyDer::Pkcs1(k) => RsaKeyPair::from_der(k.secret_pkcs1_der())
                .map(|k| PrivateKey(Inner::Rsa(k)))
                .map_err(|e| rejected("RSA", e)),
            PrivateKeyDer::Pkcs8(k) => {
                let der = k.secret_pkcs8_der();
                match RsaKeyPair::from_pkcs8(der) {
                    Ok(k) => Ok(PrivateKey(Inner::Rsa(k))),
                    Err(rsa) => match Ed25519KeyPair::from_pkcs8_maybe_unchecked(der) {
                        Ok(k) => Ok(PrivateKey(Inner::Ed25519(k))),
                        // An RSA key that ring refuses (too short): say why.
                        Err(_) if rsa.to_string() != "WrongAlgorithm" => Err(rejected("RSA", rsa)),
                        Err(_) => Err("not an RSA or Ed25519 key (an EC key?): DKIM signs with RSA or Ed25519".into()),
                    },
                }
            }
            PrivateKeyDer::Sec1(_) => Err("an EC key: DKIM signs with RSA or Ed25519".into()),
            _ => Err("an unknown kind of key".into()),
        }
    }

    pub fn algorithm(&self) -> Algorithm {
        match self.0 {
            Inner::Rsa(_) => Algorithm::RsaSha256,
            Inner::Ed25519(_) => Algorithm::Ed25519Sha256,
        }
    }

    /// `rsa-2048`, `ed25519`.
    pub fn describe(&self) -> String {
        match &self.0 {
            Inner::Rsa(k) => format!("rsa-{}", k.public().modulus_len() * 8),
            Inner::Ed25519(_) => "ed25519".into(),
        }
    }

    /// Signs `data` (RFC 6376 §3.7's hash input). RSA: RSASSA-PKCS1-v1_5
    /// with SHA-256 over the data (ring hashes it). Ed25519: PureEdDSA over
    /// the data's SHA-256 digest (RFC 8463 §3).
    pub fn sign(&self, rng: &dyn SecureRandom, data: &[u8]) -> Result<Vec<u8>, String> {
        match &self.0 {
            Inner::Rsa(k) => {
                let mut sig = vec![0u8; k.public().modulus_len()];
                k.sign(&signature::RSA_PKCS1_SHA256, rng, data, &mut sig)
                    .map_err(|_| "RSA signing failed".to_string())?;
                Ok(sig)
            }
            Inner::Ed25519(k) => {
                let h = ring::digest::digest(&ring::digest::SHA256, data);
                Ok(k.sign(h.as_ref()).as_ref().to_vec())
            }
        }
    }

    /// The public key as it goes into `p=`, base64.
    pub fn public_b64(&self) -> String {
        match &self.0 {
            Inner::Rsa(k) => B64.encode(spki_rsa(k.public().as_ref())),
            Inner::Ed25519(k) => B64.encode(k.public_key().as_ref()),
        }
    }

    /// `v=DKIM1; k=rsa; p=...`
    pub fn record(&self) -> String {
        format!(
            "v=DKIM1; k={}; p={}",
            self.algorithm().key_type(),
            self.public_b64()
        )
    }
}

/// A DER length.
fn der_len(n: usize, out: &mut Vec<u8>) {
    if n < 0x80 {
        out.push(n as u8);
    } else {
        let bytes: Vec<u8> = n
            .to_be_bytes()
            .into_iter()
            .skip_while(|&b| b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend_from_slice(&bytes);
    }
}

/// SubjectPublicKeyInfo around a PKCS#1 RSAPublicKey (RFC 5280 4.1,
/// RFC 8017 A.1): SEQUENCE { AlgorithmIdentifier rsaEncryption NULL,
/// BIT STRING (no unused bits) pkcs1 }.
fn spki_rsa(pkcs1: &[u8]) -> Vec<u8> {
    const ALG: &[u8] = &[
        0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
    ];
    let mut bits = vec![0x03];
    der_len(pkcs1.len() + 1, &mut bits);
    bits.push(0);
    bits.extend_from_slice(pkcs1);
    let mut out = vec![0x30];
    der_len(ALG.len() + bits.len(), &mut out);
    out.extend_from_slice(ALG);
    out.extend_from_slice(&bits);
    out
}

/// The longest DNS character-string (RFC 1035 3.3).
pub const TXT_STRING_MAX: usize = 255;

/// A TXT value cut into strings of at most 255 bytes.
pub fn txt_strings(record: &str) -> Vec<&str> {
    // The record is ASCII (tags and base64), so any byte is a char boundary.
    record
        .as_bytes()
        .chunks(TXT_STRING_MAX)
        .map(|c| std::str::from_utf8(c).expect("ASCII record"))
        .collect()
}

/// The record as a zone-file line: `sel._domainkey.example.test. IN TXT "..." "..."`.
pub fn zone_line(selector: &str, domain: &str, record: &str) -> String {
    let strings: Vec<String> = txt_strings(record)
        .iter()
        .map(|s| format!("\"{s}\""))
        .collect();
    format!(
        "{selector}._domainkey.{domain}. IN TXT {}",
        strings.join(" ")
    )
}

/// PEM around a DER document.
fn pem(label: &str, der: &[u8]) -> String {
    let b64 = B64.encode(der);
    let mut s = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        s.push_str(std::str::from_utf8(line).expect("base64"));
        s.push('\n');
    }
    s.push_str(&format!("-----END {label}-----\n"));
    s
}

/// A new Ed25519 key as PKCS#8 PEM, in the v1 form of RFC 8410 that
/// openssl writes and reads (ring's own v2 documents are refused by
/// openssl 3.0): SEQUENCE { 0, { id-Ed25519 }, OCTET STRING { OCTET
/// STRING seed } }.
pub fn generate_ed25519(rng: &dyn SecureRandom) -> Result<String, String> {
    let mut der = vec![
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    let mut seed = [0u8; 32];
    rng.fill(&mut seed)
        .map_err(|_| "no randomness for an Ed25519 key".to_string())?;
    der.extend_from_slice(&seed);
    Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der)
        .map_err(|e| format!("cannot make an Ed25519 key: {e}"))?;
    Ok(pem("PRIVATE KEY", &der))
}

/// Where the openssl command is, if anywhere.
pub fn find_openssl() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/bin")])
        .map(|d| d.join("openssl"))
        .find(|p| p.is_file())
}

/// A new RSA key (PKCS#8 PEM) from `openssl genpkey`: ring cannot make
/// RSA keys, and a bignum library for one command would cost the binary
/// more than the rest of DKIM.
pub fn generate_rsa(bits: u32) -> Result<String, String> {
    let openssl = find_openssl().ok_or(
        "making an RSA key needs the openssl command, which is not installed; \
         install it (Debian: openssl), make the key elsewhere and copy it here, \
         or use --algorithm ed25519",
    )?;
    let out = std::process::Command::new(&openssl)
        .args(["genpkey", "-algorithm", "RSA", "-pkeyopt"])
        .arg(format!("rsa_keygen_bits:{bits}"))
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", openssl.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{} genpkey failed: {}",
            openssl.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    String::from_utf8(out.stdout).map_err(|_| "openssl wrote something that is not PEM".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Test keys made with openssl 3: `genpkey` (PKCS#8; Ed25519 as v1),
    /// and the same RSA key as PKCS#1 (`openssl rsa -traditional`).
    const ED25519: &str = include_str!("../../tests/fixtures/dkim/ed25519.pem");
    const RSA_PKCS8: &str = include_str!("../../tests/fixtures/dkim/rsa2048.pem");
    const RSA_PKCS1: &str = include_str!("../../tests/fixtures/dkim/rsa2048-pkcs1.pem");
    const RSA_1024: &str = include_str!("../../tests/fixtures/dkim/rsa1024.pem");

    #[test]
    fn ed25519_from_openssl_and_from_ring() {
        let k = PrivateKey::from_pem(ED25519.as_bytes()).unwrap();
        assert_eq!(k.algorithm(), Algorithm::Ed25519Sha256);
        assert!(k.record().starts_with("v=DKIM1; k=ed25519; p="));
        assert_eq!(B64.decode(k.public_b64()).unwrap().len(), 32);
        let rng = ring::rand::SystemRandom::new();
        let made = generate_ed25519(&rng).unwrap();
        let k = PrivateKey::from_pem(made.as_bytes()).unwrap();
        let sig = k.sign(&rng, b"data").unwrap();
        let public = B64.decode(k.public_b64()).unwrap();
        let h = ring::digest::digest(&ring::digest::SHA256, b"data");
        signature::UnparsedPublicKey::new(&signature::ED25519, public)
            .verify(h.as_ref(), &sig)
            .unwrap();
    }

    #[test]
    fn rsa_pkcs1_and_pkcs8_are_the_same_key() {
        let a = PrivateKey::from_pem(RSA_PKCS8.as_bytes()).unwrap();
        let b = PrivateKey::from_pem(RSA_PKCS1.as_bytes()).unwrap();
        assert_eq!(a.describe(), "rsa-2048");
        assert_eq!(a.record(), b.record());
        // The record is about 410 bytes: two TXT strings.
        assert!(
            (400..420).contains(&a.record().len()),
            "{}",
            a.record().len()
        );
        let rng = ring::rand::SystemRandom::new();
        let sig = b.sign(&rng, b"data").unwrap();
        assert_eq!(sig.len(), 256);
        // p= is SubjectPublicKeyInfo; ring verifies with the PKCS#1 inside it.
        let spki = B64.decode(a.public_b64()).unwrap();
        signature::UnparsedPublicKey::new(&signature::RSA_PKCS1_2048_8192_SHA256, &spki[24..])
            .verify(b"data", &sig)
            .unwrap();
    }

    #[test]
    fn short_rsa_keys_are_too_weak() {
        let e = PrivateKey::from_pem(RSA_1024.as_bytes()).unwrap_err();
        assert!(e.contains("too weak"), "{e}");
    }

    #[test]
    fn not_keys() {
        assert!(PrivateKey::from_pem(b"hello")
            .unwrap_err()
            .contains("no private key"));
        let ec = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let e = PrivateKey::from_pem(ec.serialize_pem().as_bytes()).unwrap_err();
        assert!(e.contains("RSA or Ed25519"), "{e}");
    }

    #[test]
    fn txt_strings_are_at_most_255_bytes() {
        let record = format!("v=DKIM1; k=rsa; p={}", "A".repeat(392));
        let s = txt_strings(&record);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].len(), 255);
        assert_eq!(s.concat(), record);
        let line = zone_line("s1", "example.test", &record);
        assert!(line.starts_with("s1._domainkey.example.test. IN TXT \"v=DKIM1; k=rsa; p=AAA"));
        assert_eq!(line.matches('"').count(), 4);
    }

    #[test]
    fn spki_wraps_pkcs1() {
        // A 270-byte PKCS#1 key (2048 bits) gets the 24-byte SPKI head
        // openssl writes: 30 82 01 22 30 0d ... 03 82 01 0f 00.
        let pkcs1 = vec![0x30; 270];
        let s = spki_rsa(&pkcs1);
        assert_eq!(&s[..4], &[0x30, 0x82, 0x01, 0x22]);
        assert_eq!(&s[19..24], &[0x03, 0x82, 0x01, 0x0f, 0x00]);
        assert_eq!(s.len(), 24 + 270);
    }
}
