//! `postern dkim keygen DOMAIN` (make a key, print its DNS record) and
//! `postern dkim record` (the records of the configured keys). Argument
//! handling and output only; keys and records are dkim::key's.
//!
//! stdout carries only the zone-file lines, so `postern dkim keygen
//! example.test >> zone` works; what was written and what to configure go
//! to stderr.

use std::path::PathBuf;

use argh::FromArgs;

use crate::dkim::key::{self, PrivateKey};
use crate::sysexits::{EX_CANTCREAT, EX_CONFIG, EX_SOFTWARE, EX_UNAVAILABLE, EX_USAGE};

/// DKIM keys: make one, show the DNS records to publish.
#[derive(FromArgs)]
#[argh(subcommand, name = "dkim")]
pub struct DkimCmd {
    #[argh(subcommand)]
    pub action: DkimAction,
}

#[derive(FromArgs)]
#[argh(subcommand)]
pub enum DkimAction {
    Keygen(Keygen),
    Record(Record),
}

/// Make a private key (PEM, mode 0600) and print the DNS TXT record to
/// publish for it, split into strings of at most 255 bytes.
#[derive(FromArgs)]
#[argh(subcommand, name = "keygen")]
pub struct Keygen {
    /// the signing domain (d=), e.g. example.test
    #[argh(positional)]
    pub domain: String,
    /// the selector (s=); default: s and the year and month (s202611), e
    /// instead of s for ed25519
    #[argh(option)]
    pub selector: Option<String>,
    /// rsa-2048 (the default), rsa-3072, rsa-4096 or ed25519; RSA keys are
    /// made by the openssl command
    #[argh(option, default = "String::from(\"rsa-2048\")")]
    pub algorithm: String,
    /// where to write the key; default: DATA_DIR/dkim/SELECTOR.DOMAIN.pem
    #[argh(option)]
    pub out: Option<PathBuf>,
    /// configuration file (for data_dir); without it, the embedded default
    #[argh(option, short = 'c')]
    pub config: Option<PathBuf>,
    /// data directory (overrides data_dir)
    #[argh(option)]
    pub data_dir: Option<PathBuf>,
}

/// Print the DNS TXT records of the keys in [[dkim]] of a configuration.
#[derive(FromArgs)]
#[argh(subcommand, name = "record")]
pub struct Record {
    /// configuration file; without it, the embedded default
    #[argh(option, short = 'c')]
    pub config: Option<PathBuf>,
    /// data directory (overrides data_dir)
    #[argh(option)]
    pub data_dir: Option<PathBuf>,
}

pub fn run(cmd: DkimCmd) -> i32 {
    match cmd.action {
        DkimAction::Keygen(k) => keygen(k),
        DkimAction::Record(r) => record(r),
    }
}

fn keygen(k: Keygen) -> i32 {
    let fail = |code: i32, msg: String| {
        eprintln!("postern dkim keygen: {msg}");
        code
    };
    let domain = k.domain.trim_end_matches('.').to_ascii_lowercase();
    if !crate::config::is_domain(&domain) || !domain.is_ascii() {
        return fail(EX_USAGE, format!("{:?} is not a domain; allowed: a domain name in ASCII (xn-- for an international one)", k.domain));
    }
    let rsa_bits = match k.algorithm.to_ascii_lowercase().as_str() {
        "rsa-2048" | "rsa" => Some(2048),
        "rsa-3072" => Some(3072),
        "rsa-4096" => Some(4096),
        "ed25519" => None,
        other => {
            return fail(
                EX_USAGE,
                format!(
                    "unknown algorithm {other:?}; allowed: rsa-2048, rsa-3072, rsa-4096, ed25519"
                ),
            )
        }
    };
    let selector = k.selector.unwrap_or_else(|| {
        let (y, m, _) = crate::timefmt::civil(crate::clock::now_secs());
        format!("{}{y}{m:02}", if rsa_bits.is_some() { 's' } else { 'e' })
    });
    let valid = selector.split('.').all(|l| {
        !l.is_empty()
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    });
    if !valid {
        return fail(
            EX_USAGE,
            format!("{selector:?} is not a selector; allowed: letters, digits and hyphens"),
        );
    }
    let path = match k.out {
        Some(p) => p,
        None => match crate::cli::client_config_for(k.config.as_ref(), k.data_dir) {
            Ok(cfg) => cfg
                .data_dir()
                .join("dkim")
                .join(format!("{selector}.{domain}.pem")),
            Err(code) => return code,
        },
    };
    if path.exists() {
        return fail(
            EX_CANTCREAT,
            format!(
                "{} exists; keep it, or choose another --selector or --out",
                path.display()
            ),
        );
    }
    let (pem, how) = match rsa_bits {
        Some(bits) => match key::generate_rsa(bits) {
            Ok(p) => (p, format!("rsa-{bits}, made by openssl genpkey")),
            Err(e) => return fail(EX_UNAVAILABLE, e),
        },
        None => match key::generate_ed25519(&ring::rand::SystemRandom::new()) {
            Ok(p) => (p, "ed25519".to_string()),
            Err(e) => return fail(EX_SOFTWARE, e),
        },
    };
    // What we write is what the server will read.
    let key = match PrivateKey::from_pem(pem.as_bytes()) {
        Ok(k) => k,
        Err(e) => return fail(EX_SOFTWARE, format!("the new key does not load: {e}")),
    };
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // A new directory for keys is private; its parents (the data
    // directory itself, say) are made as any other directory.
    let parents = dir.parent().filter(|p| !p.as_os_str().is_empty());
    let written = parents
        .map_or(Ok(false), |p| crate::fsutil::ensure_dir(p, 0o755))
        .and_then(|_| crate::fsutil::ensure_dir(dir, 0o700))
        .and_then(|_| crate::fsutil::write_durable(dir, &name, pem.as_bytes(), 0o600));
    if let Err(e) = written {
        return fail(
            EX_CANTCREAT,
            format!("cannot write {}: {e}", path.display()),
        );
    }
    println!("{}", key::zone_line(&selector, &domain, &key.record()));
    let shown = std::fs::canonicalize(&path).unwrap_or(path);
    eprintln!(
        "postern dkim keygen: wrote {} ({how}, mode 0600).\n\
         Publish the TXT record above, then add to the configuration:\n\n\
         [[dkim]]\ndomain = \"{domain}\"\nselector = \"{selector}\"\nkey_file = \"{}\"",
        shown.display(),
        shown.display()
    );
    0
}

fn record(r: Record) -> i32 {
    let cfg = match crate::cli::config_for(r.config.as_ref(), r.data_dir) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let Some(signer) = &cfg.dkim.signer else {
        eprintln!("postern dkim record: {}: no [[dkim]] keys", cfg.source);
        return EX_CONFIG;
    };
    for e in signer.entries() {
        println!(
            "{}",
            key::zone_line(&e.key.selector, &e.key.domain, &e.key.key.record())
        );
    }
    0
}
