//! Password hashes as PostfixAdmin and Dovecot store them: checking a login
//! password against `mailbox.password` (or a passwd-file field), and making
//! new hashes for `postern user add|passwd`.
//!
//! Pure: no I/O (apart from the OS random number generator in [`hash`]), no
//! logging, no async. [`verify`] never panics and never matches on a stored
//! string it does not fully understand; its [`Verify::Unsupported`] and
//! [`Verify::Malformed`] texts are meant for a log line and never contain the
//! password, nor anything of the stored string beyond a scheme name.
//!
//! Accepted stored forms (the `{SCHEME}` name is case-insensitive, as in
//! Dovecot):
//!
//! - bare crypt(3) strings: `$1$` md5crypt, `$5$`/`$6$` sha-crypt (with an
//!   optional `rounds=N$`), `$2y$`/`$2b$`/`$2a$` bcrypt, `$argon2i$`/
//!   `$argon2id$`/`$argon2d$` PHC strings;
//! - `{CRYPT}`, `{MD5-CRYPT}`, `{MD5}` (Dovecot's alias of MD5-CRYPT),
//!   `{SHA256-CRYPT}`, `{SHA512-CRYPT}`, `{BLF-CRYPT}` followed by any of the
//!   crypt strings above (Dovecot hands them all to crypt(3), so the `$id$`
//!   decides, not the prefix);
//! - `{ARGON2I}`, `{ARGON2ID}` followed by a PHC string;
//! - `{PLAIN}`, `{CLEAR}`, `{CLEARTEXT}`;
//! - `{SHA512}`, `{SHA256}`, `{LDAP-MD5}` (base64 of the digest; a hex
//!   digest is recognised by its length), `{PLAIN-MD5}` (hex, or base64 by
//!   length), `{SSHA512}`, `{SSHA256}`, `{SMD5}` (base64 of digest || salt);
//! - Dovecot's encoding suffixes on any of these: `.HEX`, `.B64`, `.BASE64`
//!   (`{SHA512.HEX}`, `{SSHA256.HEX}`, `{PLAIN.B64}`, and PostfixAdmin's
//!   `sha512crypt.b64` setting, `{SHA512-CRYPT.B64}`).
//!
//! Everything else is [`Verify::Unsupported`]: DES crypt and other crypt
//! ids (`$y$` yescrypt, `$7$` scrypt, ...), `{SHA}`/`{SSHA}` (SHA-1: no
//! SHA-1 crate among the dependencies), `{CRAM-MD5}`/`{DIGEST-MD5}`/
//! `{SCRAM-*}` (these store a derived key, not something a PLAIN/LOGIN
//! password can be checked against), and strings without a `{SCHEME}`
//! prefix that are not crypt strings (a bare cleartext or a bare hex MD5
//! cannot be told apart, and comparing as cleartext would let the stored
//! hash itself be used as a password).
//!
//! The password is bytes and is used verbatim by every scheme: a NUL is data,
//! not a terminator (so `"secret\0x"` never matches a hash of `"secret"`).
//! bcrypt, as everywhere, uses only the first 72 bytes.
//!
//! Cost: a verification costs what the stored hash asks for. Stored costs
//! above [`MAX_SHA_CRYPT_ROUNDS`], [`MAX_BCRYPT_COST`],
//! [`MAX_ARGON2_M_KIB`]/[`MAX_ARGON2_T`] are refused as
//! [`Verify::Malformed`] so that one bad row cannot pin a thread for
//! minutes or exhaust memory. Argon2 with Dovecot's defaults allocates
//! 32 MiB (`{ARGON2I}`) or 64 MiB (`{ARGON2ID}`) for each verification:
//! callers run [`verify`] off the async threads and at most one argon2
//! verification at a time.

use std::sync::OnceLock;

use base64::engine::general_purpose::{
    GeneralPurpose, GeneralPurposeConfig, STANDARD_PAD_INDIFFERENT,
};
use base64::engine::DecodePaddingMode;
use base64::{alphabet, Engine as _};
use md5::Md5;
use sha2::{Digest as _, Sha256, Sha512};

use super::md5crypt::{self, crypt64, CRYPT64};

/// The answer of [`verify`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verify {
    /// The password is the one the stored hash was made from.
    Match,
    /// A well-formed stored hash of some other password.
    Mismatch,
    /// A scheme postern does not implement; the text names it, for a log
    /// line.
    Unsupported(String),
    /// The stored string is empty, truncated, badly encoded or asks for
    /// costs above postern's limits; the text says why (never quoting the
    /// stored string or the password).
    Malformed(String),
}

/// The schemes [`hash`] can make.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    /// `{SHA512-CRYPT}$6$<16 salt chars>$...`, 5000 rounds (Dovecot's and
    /// glibc's default).
    Sha512Crypt,
    /// `{BLF-CRYPT}$2y$10$...`, bcrypt cost 10 (PHP's `password_hash`).
    BlfCrypt,
}

/// The highest `rounds=` of a `$5$`/`$6$` hash that is verified (about 5 s of
/// CPU); glibc allows up to 999,999,999.
pub const MAX_SHA_CRYPT_ROUNDS: u32 = 5_000_000;
/// The highest bcrypt cost that is verified (2^16 rounds, a few seconds).
pub const MAX_BCRYPT_COST: u32 = 16;
/// The most memory an argon2 hash may ask for, in KiB (256 MiB).
pub const MAX_ARGON2_M_KIB: u32 = 256 * 1024;
/// The most passes an argon2 hash may ask for.
pub const MAX_ARGON2_T: u32 = 32;
/// The most lanes an argon2 hash may ask for.
pub const MAX_ARGON2_P: u32 = 16;

/// The cost [`hash`] uses for [`Scheme::BlfCrypt`].
const BCRYPT_COST: u32 = 10;

/// Order in which sha256-crypt feeds its digest to crypt64.
const SHA256_ORDER: [usize; 32] = [
    20, 10, 0, 11, 1, 21, 2, 22, 12, 23, 13, 3, 14, 4, 24, 5, 25, 15, 26, 16, 6, 17, 7, 27, 8, 28,
    18, 29, 19, 9, 30, 31,
];
/// Order in which sha512-crypt feeds its digest to crypt64.
const SHA512_ORDER: [usize; 64] = [
    42, 21, 0, 1, 43, 22, 23, 2, 44, 45, 24, 3, 4, 46, 25, 26, 5, 47, 48, 27, 6, 7, 49, 28, 29, 8,
    50, 51, 30, 9, 10, 52, 31, 32, 11, 53, 54, 33, 12, 13, 55, 34, 35, 14, 56, 57, 36, 15, 16, 58,
    37, 38, 17, 59, 60, 39, 18, 19, 61, 40, 41, 20, 62, 63,
];

/// bcrypt's base64 (`./A-Za-z0-9`, no padding); decoding ignores the unused
/// low bits of the last character, as crypt_blowfish does.
const BCRYPT64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::BCRYPT,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone)
        .with_decode_allow_trailing_bits(true),
);

/// Checks `password` against a stored hash.
pub fn verify(stored: &str, password: &[u8]) -> Verify {
    if stored.is_empty() {
        return malformed("the stored password hash is empty");
    }
    if let Some(rest) = stored.strip_prefix('{') {
        let Some((name, payload)) = rest.split_once('}') else {
            return malformed("'{' without a closing '}' in the scheme prefix");
        };
        return verify_prefixed(name, payload, password);
    }
    if stored.starts_with('$') || is_des_crypt(stored) {
        return verify_crypt(stored, password);
    }
    Verify::Unsupported("none (no {SCHEME} prefix and not a crypt string)".into())
}

/// Makes a new stored hash of `password` with a fresh random salt.
///
/// # Panics
///
/// If the operating system's random number generator fails.
pub fn hash(scheme: Scheme, password: &[u8]) -> String {
    match scheme {
        Scheme::Sha512Crypt => {
            let mut raw = [0u8; 16];
            fill_random(&mut raw);
            // 256 is a multiple of 64: every salt character is uniform.
            let salt: String = raw
                .iter()
                .map(|b| char::from(CRYPT64[usize::from(b & 63)]))
                .collect();
            let digest =
                sha_crypt::sha512_crypt(password, salt.as_bytes(), sha_crypt::Params::RECOMMENDED);
            format!(
                "{{SHA512-CRYPT}}$6${salt}${}",
                crypt64(&digest, &SHA512_ORDER)
            )
        }
        Scheme::BlfCrypt => {
            let mut salt = [0u8; 16];
            fill_random(&mut salt);
            let out = bcrypt_raw(BCRYPT_COST, salt, password);
            format!(
                "{{BLF-CRYPT}}$2y${BCRYPT_COST:02}${}{}",
                BCRYPT64.encode(salt),
                BCRYPT64.encode(&out[..23])
            )
        }
    }
}

/// Compares two byte strings; for equal lengths the time does not depend
/// on where they differ. Different lengths are unequal at once (lengths are
/// not secret here: digests have fixed sizes).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut diff = 0u8;
    for (x, y) in a.iter().zip(b) {
        // black_box keeps the compiler from turning the fold into an early
        // exit.
        diff = std::hint::black_box(diff | (x ^ y));
    }
    diff == 0
}

/// A valid `{SHA512-CRYPT}` hash of a random secret nobody knows, made
/// once per process: verifying against it costs what verifying an ordinary
/// user costs, so an unknown login name takes as long as a wrong password.
pub fn equalizer() -> &'static str {
    static EQUALIZER: OnceLock<String> = OnceLock::new();
    EQUALIZER.get_or_init(|| {
        let mut secret = [0u8; 32];
        fill_random(&mut secret);
        hash(Scheme::Sha512Crypt, &secret)
    })
}

fn malformed(why: &str) -> Verify {
    Verify::Malformed(why.to_string())
}

fn verdict(matches: bool) -> Verify {
    if matches {
        Verify::Match
    } else {
        Verify::Mismatch
    }
}

/// Fills `buf` from the OS random number generator (getrandom(2) through
/// ring, which rustls already links).
fn fill_random(buf: &mut [u8]) {
    rustls::crypto::ring::default_provider()
        .secure_random
        .fill(buf)
        .expect("the operating system's random number generator failed");
}

/// Dovecot's `.HEX` / `.B64` suffix on a scheme name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Encoding {
    Hex,
    Base64,
}

fn decode(payload: &str, encoding: Encoding) -> Option<Vec<u8>> {
    match encoding {
        Encoding::Hex => decode_hex(payload),
        Encoding::Base64 => STANDARD_PAD_INDIFFERENT.decode(payload).ok(),
    }
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    let b = s.as_bytes();
    if !b.len().is_multiple_of(2) {
        return None;
    }
    b.chunks(2)
        .map(|p| Some(nibble(p[0])? << 4 | nibble(p[1])?))
        .collect()
}

fn is_hex(s: &str) -> bool {
    s.bytes().all(|c| c.is_ascii_hexdigit())
}

/// The payload of a non-digest scheme as text: as stored, or decoded from
/// the `.HEX`/`.B64` suffix.
fn payload_text(payload: &str, encoding: Option<Encoding>) -> Result<String, Verify> {
    match encoding {
        None => Ok(payload.to_string()),
        Some(e) => decode(payload, e)
            .and_then(|raw| String::from_utf8(raw).ok())
            .ok_or_else(|| malformed("the encoded payload does not decode")),
    }
}

fn verify_prefixed(name: &str, payload: &str, password: &[u8]) -> Verify {
    let upper = name.to_ascii_uppercase();
    let (base, encoding) = match upper.rsplit_once('.') {
        Some((b, "HEX")) => (b, Some(Encoding::Hex)),
        Some((b, "B64" | "BASE64")) => (b, Some(Encoding::Base64)),
        _ => (upper.as_str(), None),
    };
    match base {
        "PLAIN" | "CLEAR" | "CLEARTEXT" => {
            let stored = match encoding {
                None => payload.as_bytes().to_vec(),
                Some(e) => match decode(payload, e) {
                    Some(raw) => raw,
                    None => return malformed("the encoded cleartext does not decode"),
                },
            };
            if stored.is_empty() {
                return malformed("the stored cleartext password is empty");
            }
            // Compare digests: constant time whatever the two lengths are.
            verdict(ct_eq(&Sha512::digest(&stored), &Sha512::digest(password)))
        }
        "SHA512" => verify_digest(Hash::Sha512, false, encoding, payload, password),
        "SSHA512" => verify_digest(Hash::Sha512, true, encoding, payload, password),
        "SHA256" => verify_digest(Hash::Sha256, false, encoding, payload, password),
        "SSHA256" => verify_digest(Hash::Sha256, true, encoding, payload, password),
        "LDAP-MD5" => verify_digest(Hash::Md5, false, encoding, payload, password),
        "SMD5" => verify_digest(Hash::Md5, true, encoding, payload, password),
        // PLAIN-MD5's default encoding is hex; base64 is told by its length.
        "PLAIN-MD5" => {
            let encoding = encoding.or((payload.len() == 32).then_some(Encoding::Hex));
            verify_digest(Hash::Md5, false, encoding, payload, password)
        }
        "CRYPT" | "MD5-CRYPT" | "MD5" | "SHA256-CRYPT" | "SHA512-CRYPT" | "BLF-CRYPT" => {
            match payload_text(payload, encoding) {
                Ok(text) => verify_crypt(&text, password),
                Err(v) => v,
            }
        }
        "ARGON2I" | "ARGON2ID" => match payload_text(payload, encoding) {
            Ok(text) if text.starts_with("$argon2") => verify_argon2(&text, password),
            Ok(_) => malformed("an {ARGON2*} payload must be a $argon2...$ PHC string"),
            Err(v) => v,
        },
        _ => Verify::Unsupported(scheme_label(name)),
    }
}

/// The scheme name for a log line, if it looks like one (so that a stored
/// string that merely starts with '{' is not echoed).
fn scheme_label(name: &str) -> String {
    let plausible = !name.is_empty()
        && name.len() <= 32
        && name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_'));
    if plausible {
        name.to_ascii_uppercase()
    } else {
        "unrecognised {...} prefix".to_string()
    }
}

/// The digests of the `{SHA512}` family.
#[derive(Clone, Copy, Debug)]
enum Hash {
    Md5,
    Sha256,
    Sha512,
}

impl Hash {
    fn len(self) -> usize {
        match self {
            Hash::Md5 => 16,
            Hash::Sha256 => 32,
            Hash::Sha512 => 64,
        }
    }

    fn digest(self, password: &[u8], salt: &[u8]) -> Vec<u8> {
        match self {
            Hash::Md5 => Md5::new()
                .chain_update(password)
                .chain_update(salt)
                .finalize()
                .to_vec(),
            Hash::Sha256 => Sha256::new()
                .chain_update(password)
                .chain_update(salt)
                .finalize()
                .to_vec(),
            Hash::Sha512 => Sha512::new()
                .chain_update(password)
                .chain_update(salt)
                .finalize()
                .to_vec(),
        }
    }
}

/// `{SHA512}` (digest) and `{SSHA512}` (digest || salt), base64 unless
/// `.HEX`; an unsalted hex digest without the suffix is recognised by its
/// exact length, as Dovecot does.
fn verify_digest(
    hash: Hash,
    salted: bool,
    encoding: Option<Encoding>,
    payload: &str,
    password: &[u8],
) -> Verify {
    let n = hash.len();
    let encoding = encoding.unwrap_or(if !salted && payload.len() == 2 * n && is_hex(payload) {
        Encoding::Hex
    } else {
        Encoding::Base64
    });
    let Some(raw) = decode(payload, encoding) else {
        return malformed(match encoding {
            Encoding::Hex => "the digest is not valid hex",
            Encoding::Base64 => "the digest is not valid base64",
        });
    };
    if salted {
        if raw.len() <= n {
            return malformed("the salted digest is too short to hold a salt");
        }
        let (expected, salt) = raw.split_at(n);
        verdict(ct_eq(&hash.digest(password, salt), expected))
    } else {
        if raw.len() != n {
            return malformed("the digest has the wrong length for its scheme");
        }
        verdict(ct_eq(&hash.digest(password, b""), &raw))
    }
}

/// A traditional DES crypt string: 13 characters of the crypt alphabet.
fn is_des_crypt(s: &str) -> bool {
    s.len() == 13 && s.bytes().all(|c| CRYPT64.contains(&c))
}

/// A crypt(3) string; the `$id$` decides the algorithm.
fn verify_crypt(s: &str, password: &[u8]) -> Verify {
    if s.is_empty() {
        return malformed("the crypt string is empty");
    }
    if let Some(rest) = s.strip_prefix("$1$") {
        return verify_md5_crypt(rest, password);
    }
    if let Some(rest) = s.strip_prefix("$5$") {
        return verify_sha_crypt(false, rest, password);
    }
    if let Some(rest) = s.strip_prefix("$6$") {
        return verify_sha_crypt(true, rest, password);
    }
    for id in ["$2y$", "$2b$", "$2a$"] {
        if let Some(rest) = s.strip_prefix(id) {
            return verify_bcrypt(rest, password);
        }
    }
    if s.starts_with("$argon2") {
        return verify_argon2(s, password);
    }
    if let Some(rest) = s.strip_prefix('$') {
        let id = rest.split('$').next().unwrap_or_default();
        let name = match id {
            "y" => "yescrypt ($y$)",
            "gy" => "gost-yescrypt ($gy$)",
            "7" => "scrypt ($7$)",
            "2x" => "bcrypt $2x$ (the pre-2011 buggy variant)",
            "2" => "bcrypt $2$ (the original variant)",
            "3" => "NT-HASH ($3$)",
            "sha1" => "sha1crypt ($sha1$)",
            "md5" => "SunMD5 ($md5$)",
            "apr1" => "Apache MD5 ($apr1$)",
            _ => "unknown crypt id ($...$)",
        };
        return Verify::Unsupported(name.to_string());
    }
    if is_des_crypt(s) {
        return Verify::Unsupported("DES-CRYPT".to_string());
    }
    if s.starts_with('_') && s.len() == 20 {
        return Verify::Unsupported("BSDi extended DES-CRYPT".to_string());
    }
    malformed("not a crypt(3) string")
}

/// `$1$<salt up to 8>$<22 chars>`, `rest` being what follows `$1$`.
fn verify_md5_crypt(rest: &str, password: &[u8]) -> Verify {
    let Some((salt, expected)) = rest.split_once('$') else {
        return malformed("md5crypt string without a hash after the salt");
    };
    if salt.len() > md5crypt::MAX_SALT {
        return malformed("md5crypt salt longer than 8 characters");
    }
    if !is_crypt64(expected, md5crypt::HASH_LEN) {
        return malformed("md5crypt hash is not 22 crypt characters");
    }
    let computed = md5crypt::hash_part(password, salt.as_bytes());
    verdict(ct_eq(computed.as_bytes(), expected.as_bytes()))
}

fn is_crypt64(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|c| CRYPT64.contains(&c))
}

/// `[rounds=N$]<salt up to 16>$<43 or 86 chars>`, `rest` being what follows
/// `$5$` or `$6$`.
fn verify_sha_crypt(sha512: bool, rest: &str, password: &[u8]) -> Verify {
    let (rounds, rest) = match rest.strip_prefix("rounds=") {
        Some(r) => {
            let Some((digits, after)) = r.split_once('$') else {
                return malformed("sha-crypt rounds= without a salt after it");
            };
            if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
                return malformed("sha-crypt rounds= is not a number");
            }
            let Ok(n) = digits.parse::<u32>() else {
                return malformed("sha-crypt rounds= is out of range");
            };
            (n, after)
        }
        None => (sha_crypt::Params::RECOMMENDED_ROUNDS, rest),
    };
    if rounds < sha_crypt::Params::ROUNDS_MIN {
        return malformed("sha-crypt rounds= is below the minimum of 1000");
    }
    if rounds > MAX_SHA_CRYPT_ROUNDS {
        return malformed("sha-crypt rounds= is above postern's limit of 5000000");
    }
    let Ok(params) = sha_crypt::Params::new(rounds) else {
        return malformed("sha-crypt rounds= is out of range");
    };
    let Some((salt, expected)) = rest.split_once('$') else {
        return malformed("sha-crypt string without a hash after the salt");
    };
    if salt.len() > 16 {
        return malformed("sha-crypt salt longer than 16 characters");
    }
    let computed = if sha512 {
        if !is_crypt64(expected, 86) {
            return malformed("sha512-crypt hash is not 86 crypt characters");
        }
        crypt64(
            &sha_crypt::sha512_crypt(password, salt.as_bytes(), params),
            &SHA512_ORDER,
        )
    } else {
        if !is_crypt64(expected, 43) {
            return malformed("sha256-crypt hash is not 43 crypt characters");
        }
        crypt64(
            &sha_crypt::sha256_crypt(password, salt.as_bytes(), params),
            &SHA256_ORDER,
        )
    };
    verdict(ct_eq(computed.as_bytes(), expected.as_bytes()))
}

/// `NN$<22 salt chars><31 hash chars>`, `rest` being what follows `$2y$`.
fn verify_bcrypt(rest: &str, password: &[u8]) -> Verify {
    let b = rest.as_bytes();
    if b.len() != 3 + 53 || b[2] != b'$' || !b[..2].iter().all(u8::is_ascii_digit) {
        return malformed("bcrypt string is not $2y$NN$ followed by 53 characters");
    }
    let cost = u32::from(b[0] - b'0') * 10 + u32::from(b[1] - b'0');
    if !(4..=31).contains(&cost) {
        return malformed("bcrypt cost is outside 04..31");
    }
    if cost > MAX_BCRYPT_COST {
        return malformed("bcrypt cost is above postern's limit of 16");
    }
    let body = &rest[3..];
    if !body.bytes().all(|c| CRYPT64.contains(&c)) {
        return malformed("bcrypt salt or hash has characters outside ./A-Za-z0-9");
    }
    let mut salt = [0u8; 16];
    let mut expected = [0u8; 23];
    let salt_ok = matches!(BCRYPT64.decode_slice(&body[..22], &mut salt), Ok(16));
    let hash_ok = matches!(BCRYPT64.decode_slice(&body[22..], &mut expected), Ok(23));
    if !salt_ok || !hash_ok {
        return malformed("bcrypt salt or hash does not decode");
    }
    let computed = bcrypt_raw(cost, salt, password);
    verdict(ct_eq(&computed[..23], &expected))
}

/// bcrypt's key as crypt_blowfish takes it: the password and its
/// terminating NUL, cut to 72 bytes.
fn bcrypt_raw(cost: u32, salt: [u8; 16], password: &[u8]) -> [u8; 24] {
    let n = password.len().min(72);
    let mut key = [0u8; 72];
    key[..n].copy_from_slice(&password[..n]);
    let used = (n + 1).min(72);
    bcrypt::bcrypt(cost, salt, &key[..used])
}

/// A PHC string `$argon2id$v=19$m=..,t=..,p=..$salt$hash`.
fn verify_argon2(s: &str, password: &[u8]) -> Verify {
    let Ok(phc) = argon2::PasswordHash::new(s) else {
        return malformed("not a valid argon2 PHC string");
    };
    let algorithm = match phc.algorithm.as_str() {
        "argon2i" => argon2::Algorithm::Argon2i,
        "argon2id" => argon2::Algorithm::Argon2id,
        "argon2d" => argon2::Algorithm::Argon2d,
        _ => return Verify::Unsupported("unknown argon2 variant".to_string()),
    };
    // A PHC string without v= is version 0x10 (the reference encoder's rule).
    let version = match phc.version {
        None | Some(0x10) => argon2::Version::V0x10,
        Some(0x13) => argon2::Version::V0x13,
        Some(_) => return malformed("unknown argon2 version v="),
    };
    let Ok(params) = argon2::Params::try_from(&phc) else {
        return malformed("argon2 parameters are missing or invalid");
    };
    if params.m_cost() > MAX_ARGON2_M_KIB
        || params.t_cost() > MAX_ARGON2_T
        || params.p_cost() > MAX_ARGON2_P
    {
        return malformed("argon2 parameters above postern's limits (m=262144, t=32, p=16)");
    }
    let (Some(salt), Some(expected)) = (&phc.salt, &phc.hash) else {
        return malformed("argon2 string without salt or hash");
    };
    let expected = expected.as_bytes();
    let mut out = vec![0u8; expected.len()];
    let ctx = argon2::Argon2::new(algorithm, version, params);
    if ctx.hash_password_into(password, salt, &mut out).is_err() {
        return malformed("argon2 parameters are rejected by the algorithm");
    }
    verdict(ct_eq(&out, expected))
}

#[cfg(test)]
mod tests;
