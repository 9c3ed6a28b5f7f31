//! md5crypt (`$1$`, Poul-Henning Kamp's FreeBSD scheme, Dovecot's
//! MD5-CRYPT), and the "crypt64" encoding the crypt family shares.
//!
//! There is no maintained crate for md5crypt; the algorithm is small and
//! fixed, so it lives here on top of `md-5`. Pure: no I/O, no allocation
//! beyond the returned string.

use md5::{Digest, Md5};

/// The alphabet of crypt(3) strings, in value order (`.` is 0, `z` is 63).
pub const CRYPT64: &[u8; 64] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// The longest salt md5crypt uses; longer salts are cut by crypt(3).
pub const MAX_SALT: usize = 8;

/// Length of the encoded hash part after `$1$salt$`.
pub const HASH_LEN: usize = 22;

/// Byte order in which md5crypt feeds its 16-byte digest to crypt64
/// (`b64_from_24bit(final[0], final[6], final[12], 4)` and so on).
const MD5_ORDER: [usize; 16] = [12, 6, 0, 13, 7, 1, 14, 8, 2, 15, 9, 3, 5, 10, 4, 11];

/// The 22-character hash part of `$1$<salt>$<hash>` for `password` and
/// `salt` (at most [`MAX_SALT`] bytes are used). The password is taken as
/// bytes, verbatim: a NUL is data, not a terminator.
pub fn hash_part(password: &[u8], salt: &[u8]) -> String {
    let salt = &salt[..salt.len().min(MAX_SALT)];

    let mut alt = Md5::new();
    alt.update(password);
    alt.update(salt);
    alt.update(password);
    let alt = alt.finalize();

    let mut ctx = Md5::new();
    ctx.update(password);
    ctx.update(b"$1$");
    ctx.update(salt);
    let mut left = password.len();
    while left > 0 {
        let n = left.min(16);
        ctx.update(&alt[..n]);
        left -= n;
    }
    // The original's quirk: for each bit of the length, a NUL byte when the
    // bit is set, otherwise the first byte of the password.
    let mut i = password.len();
    while i != 0 {
        if i & 1 == 1 {
            ctx.update([0u8]);
        } else {
            ctx.update(&password[..1]);
        }
        i >>= 1;
    }
    let mut fin = ctx.finalize();

    for round in 0..1000 {
        let mut c = Md5::new();
        if round & 1 == 1 {
            c.update(password);
        } else {
            c.update(fin);
        }
        if round % 3 != 0 {
            c.update(salt);
        }
        if round % 7 != 0 {
            c.update(password);
        }
        if round & 1 == 1 {
            c.update(fin);
        } else {
            c.update(password);
        }
        fin = c.finalize();
    }

    crypt64(&fin, &MD5_ORDER)
}

/// crypt(3)'s base64: the bytes of `digest` taken in `order`, three at a
/// time as a little-endian 24-bit number, six bits per character, least
/// significant first; a short final group gives 2 or 3 characters.
pub fn crypt64(digest: &[u8], order: &[usize]) -> String {
    let mut out = String::with_capacity(order.len().div_ceil(3) * 4);
    for group in order.chunks(3) {
        let mut w: u32 = 0;
        for (k, &idx) in group.iter().enumerate() {
            w |= u32::from(digest[idx]) << (8 * k);
        }
        for _ in 0..=group.len() {
            out.push(char::from(CRYPT64[(w & 0x3f) as usize]));
            w >>= 6;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vectors() {
        // openssl passwd -1 -salt saltsalt vector-secret
        assert_eq!(
            hash_part(b"vector-secret", b"saltsalt"),
            "FgTk549vgA6uiRf9CDTMW0"
        );
        // python3: crypt.crypt('vector-secret', '$1$$') (empty salt)
        assert_eq!(hash_part(b"vector-secret", b""), "Aijd87cB3ZJn6m6HybmNC0");
        // A salt longer than 8 is cut, as crypt(3) does.
        assert_eq!(
            hash_part(b"vector-secret", b"saltsaltEXTRA"),
            "FgTk549vgA6uiRf9CDTMW0"
        );
    }

    #[test]
    fn crypt64_group_sizes() {
        // 16 bytes: 5 full groups (20 chars) + 1 byte (2 chars).
        assert_eq!(crypt64(&[0u8; 16], &MD5_ORDER).len(), HASH_LEN);
        assert_eq!(crypt64(&[0xff], &[0]), "z1");
        assert_eq!(crypt64(&[1, 0, 0], &[0, 1, 2]), "/...");
    }
}
