//! TLS certificates and the rustls server configuration (ring provider,
//! TLS 1.2 and 1.3 only, the seed's smtpd_tls_cert_file/key_file).
//!
//! [`load`] reads a PEM chain and key and refuses, with the file named, a
//! missing or unreadable file, a file without a certificate or key, a key
//! that does not belong to the certificate, and a certificate outside its
//! validity period. [`self_signed`] makes the certificate a fresh box
//! starts with. [`Reloadable`] holds the configuration in use, swapped on
//! reload without touching sessions that are already running.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::ServerConfig;
use rustls::sign::CertifiedKey;

use crate::timefmt;

/// What a log line says about the certificate in use.
#[derive(Clone, Debug)]
pub struct CertInfo {
    pub not_after: i64,
    /// SHA-256 of the leaf certificate, hex with colons.
    pub fingerprint: String,
}

/// Which of the two files a problem is in (the config names that key).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsFile {
    Cert,
    Key,
}

/// Why a certificate and key cannot be used; the text names the file.
#[derive(Clone, Debug)]
pub struct TlsError {
    pub file: TlsFile,
    pub text: String,
}

impl std::fmt::Display for TlsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

fn cert_err(text: String) -> TlsError {
    TlsError {
        file: TlsFile::Cert,
        text,
    }
}

fn key_err(text: String) -> TlsError {
    TlsError {
        file: TlsFile::Key,
        text,
    }
}

/// Reads and checks a certificate chain and its key; `now` is Unix time.
pub fn load(cert: &Path, key: &Path, now: i64) -> Result<(Arc<ServerConfig>, CertInfo), TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| {
            cert_err(format!(
                "{}: cannot read certificate: {}",
                cert.display(),
                pem_error(e)
            ))
        })?
        .collect::<Result<_, _>>()
        .map_err(|e| cert_err(format!("{}: bad PEM: {}", cert.display(), pem_error(e))))?;
    let Some(leaf) = chain.first() else {
        return Err(cert_err(format!(
            "{}: no CERTIFICATE block in the file",
            cert.display()
        )));
    };
    let (not_before, not_after) = validity(leaf)
        .ok_or_else(|| cert_err(format!("{}: not an X.509 certificate", cert.display())))?;
    if now > not_after {
        return Err(cert_err(format!(
            "{}: certificate expired on {}",
            cert.display(),
            timefmt::rfc5322(not_after)
        )));
    }
    if now < not_before {
        return Err(cert_err(format!(
            "{}: certificate is not valid before {}",
            cert.display(),
            timefmt::rfc5322(not_before)
        )));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| {
        key_err(format!(
            "{}: cannot read private key: {}",
            key.display(),
            pem_error(e)
        ))
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certified =
        CertifiedKey::from_der(chain.clone(), key_der, &provider).map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => key_err(format!(
                "{}: private key does not match the certificate in {}",
                key.display(),
                cert.display()
            )),
            other => key_err(format!("{}: unusable private key: {other}", key.display())),
        })?;
    let config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| cert_err(format!("TLS configuration: {e}")))?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(certified)));
    let info = CertInfo {
        not_after,
        fingerprint: fingerprint(leaf),
    };
    Ok((Arc::new(config), info))
}

fn pem_error(e: rustls::pki_types::pem::Error) -> String {
    match e {
        rustls::pki_types::pem::Error::Io(io) => io.to_string(),
        rustls::pki_types::pem::Error::NoItemsFound => {
            "no PEM block of that kind in the file".into()
        }
        other => format!("{other:?}"),
    }
}

fn fingerprint(der: &[u8]) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(der);
    d.iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Makes (once) a self-signed certificate for `hostname` in `dir`, and
/// returns the certificate and key paths and whether they are new.
pub fn self_signed(
    dir: &Path,
    hostname: &str,
    now: i64,
) -> Result<(PathBuf, PathBuf, bool), String> {
    let (cert, key) = (dir.join("self-signed.pem"), dir.join("self-signed.key"));
    if cert.exists() && key.exists() {
        return Ok((cert, key, false));
    }
    crate::fsutil::ensure_dir(dir, 0o700).map_err(|e| format!("{}: {e}", dir.display()))?;
    let pair =
        rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|e| e.to_string())?;
    let mut params =
        rcgen::CertificateParams::new(vec![hostname.to_string()]).map_err(|e| e.to_string())?;
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::CommonName, hostname);
    params.distinguished_name = dn;
    let (y, m, d) = timefmt::civil(now - 86_400);
    params.not_before = rcgen::date_time_ymd(y as i32, m as u8, d as u8);
    params.not_after = rcgen::date_time_ymd(y as i32 + 10, m as u8, d.min(28) as u8);
    let c = params.self_signed(&pair).map_err(|e| e.to_string())?;
    let write = |p: &Path, bytes: &[u8], mode| {
        let name = p.file_name().and_then(|n| n.to_str()).expect("file name");
        crate::fsutil::write_durable(dir, name, bytes, mode)
            .map_err(|e| format!("{}: {e}", p.display()))
    };
    write(&key, pair.serialize_pem().as_bytes(), 0o600)?;
    write(&cert, c.pem().as_bytes(), 0o644)?;
    Ok((cert, key, true))
}

/// The TLS configuration in use; a reload swaps it for new sessions only.
pub struct Reloadable {
    current: RwLock<Arc<ServerConfig>>,
}

impl Reloadable {
    pub fn new(config: Arc<ServerConfig>) -> Reloadable {
        Reloadable {
            current: RwLock::new(config),
        }
    }

    pub fn get(&self) -> Arc<ServerConfig> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn set(&self, config: Arc<ServerConfig>) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = config;
    }
}

// --- the few DER bits needed to read a certificate's validity --------------

/// One DER element: (tag, contents, rest).
fn tlv(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = b.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        (
            rest[..n].iter().fold(0usize, |a, &x| (a << 8) | x as usize),
            &rest[n..],
        )
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// notBefore and notAfter of an X.509 certificate (RFC 5280 4.1).
fn validity(cert: &[u8]) -> Option<(i64, i64)> {
    let (_, certificate, _) = tlv(cert)?;
    let (_, tbs, _) = tlv(certificate)?;
    let mut rest = tbs;
    let (tag, _, r) = tlv(rest)?;
    if tag == 0xa0 {
        rest = r; // [0] version
    }
    let (_, _, r) = tlv(rest)?; // serialNumber
    let (_, _, r) = tlv(r)?; // signature
    let (_, _, r) = tlv(r)?; // issuer
    let (_, validity, _) = tlv(r)?;
    let (t1, nb, r) = tlv(validity)?;
    let (t2, na, _) = tlv(r)?;
    Some((der_time(t1, nb)?, der_time(t2, na)?))
}

/// UTCTime (YYMMDDHHMMSSZ) or GeneralizedTime (YYYYMMDDHHMMSSZ).
fn der_time(tag: u8, v: &[u8]) -> Option<i64> {
    let s = std::str::from_utf8(v).ok()?.strip_suffix('Z')?;
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (year, rest) = match tag {
        0x17 if s.len() == 12 => {
            let yy = num(0..2)?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, 2)
        }
        0x18 if s.len() == 14 => (num(0..4)?, 4),
        _ => return None,
    };
    let f = |i: usize| num(rest + 2 * i..rest + 2 * i + 2);
    Some(timefmt::unix_from_civil(
        year,
        f(0)?,
        f(1)?,
        f(2)?,
        f(3)?,
        f(4)?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_cert_loads_and_has_its_validity() {
        let dir = std::env::temp_dir().join(format!("postern-tls-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let now = 1_795_826_316;
        let (cert, key, new) = self_signed(&dir, "mx.example.test", now).unwrap();
        assert!(new);
        let (_, info) = load(&cert, &key, now).unwrap();
        assert!(info.not_after > now + 9 * 365 * 86_400);
        assert_eq!(info.fingerprint.len(), 32 * 3 - 1);
        // Ten years and a day later it is expired, and the message says so.
        let err = load(&cert, &key, now + 11 * 365 * 86_400).unwrap_err();
        assert!(err.text.contains("expired"), "{err}");
        assert!(
            !self_signed(&dir, "mx.example.test", now).unwrap().2,
            "made once"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn der_times() {
        assert_eq!(der_time(0x17, b"700101000000Z"), Some(0));
        assert_eq!(der_time(0x18, b"20261128003836Z"), Some(1_795_826_316));
        assert_eq!(der_time(0x17, b"garbage"), None);
    }
}
