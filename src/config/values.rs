//! Value types of config keys and how each is read from TOML: booleans,
//! numbers, sizes (`10485760`, `"10M"`), durations (`300`, `"5m"`),
//! strings, paths, CIDR networks, socket addresses and the enums.

use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use toml::de::DeValue;

use super::schema::FromToml;

fn int(v: &DeValue<'_>) -> Option<i128> {
    match v {
        DeValue::Integer(i) => i128::from_str_radix(i.as_str(), i.radix()).ok(),
        _ => None,
    }
}

fn found(v: &DeValue<'_>) -> String {
    match v {
        DeValue::String(s) => format!("found string \"{s}\""),
        DeValue::Integer(i) => format!("found integer {}", i.as_str()),
        other => format!("found {}", other.type_str()),
    }
}

impl FromToml for bool {
    fn allowed() -> Cow<'static, str> {
        "true, false".into()
    }
    fn from_toml(v: &DeValue<'_>) -> Result<Self, String> {
        v.as_bool().ok_or_else(|| found(v))
    }
}

macro_rules! unsigned {
    ($($t:ty),*) => {$(
        impl FromToml for $t {
            fn allowed() -> Cow<'static, str> {
                format!("an integer from 0 to {}", <$t>::MAX).into()
            }
            fn from_toml(v: &DeValue<'_>) -> Result<Self, String> {
                let n = int(v).ok_or_else(|| found(v))?;
                <$t>::try_from(n).map_err(|_| format!("{n} is out of range"))
            }
        }
    )*};
}
unsigned!(u16, u32, u64, usize);

impl FromToml for String {
    fn allowed() -> Cow<'static, str> {
        "a string".into()
    }
    fn from_toml(v: &DeValue<'_>) -> Result<Self, String> {
        v.as_str().map(str::to_string).ok_or_else(|| found(v))
    }
}

impl FromToml for PathBuf {
    fn allowed() -> Cow<'static, str> {
        "a path as a string".into()
    }
    fn from_toml(v: &DeValue<'_>) -> Result<Self, String> {
        match v.as_str() {
            Some("") => Err("empty path".into()),
            Some(s) => Ok(PathBuf::from(s)),
            None => Err(found(v)),
        }
    }
}

impl<T: FromToml> FromToml for Option<T> {
    fn allowed() -> Cow<'static, str> {
        T::allowed()
    }
    fn from_toml(v: &DeValue<'_>) -> Result<Self, String> {
        T::from_toml(v).map(Some)
    }
}

impl<T: FromToml> FromToml for Vec<T> {
    fn allowed() -> Cow<'static, str> {
        format!("a list of: {}", T::allowed()).into()
    }
    fn from_toml(v: &DeValue<'_>) -> Result<Self, String> {
        let arr = v
            .as_array()
            .ok_or_else(|| format!("expected a list, {}", found(v)))?;
        let mut out = Vec::new();
        for (i, item) in arr.iter().enumerate() {
            out.push(T::from_toml(item.get_ref()).map_err(|e| format!("item {}: {e}", i + 1))?);
        }
        Ok(out)
    }
}

impl FromToml for std::collections::BTreeMap<String, String> {
    fn allowed() -> Cow<'static, str> {
        "a table of strings, such as { \"alice@example.test\" = \"procmail\" }".into()
    }
    fn from_toml(v: &DeValue<'_>) -> Result<Self, String> {
        let DeValue::Table(t) = v else {
            return Err(format!("expected a table, {}", found(v)));
        };
        let mut out = std::collections::BTreeMap::new();
        for (k, v) in t.iter() {
            let val = v
                .get_ref()
                .as_str()
                .ok_or_else(|| format!("{}: {}", k.get_ref(), found(v.get_ref())))?;
            out.insert(k.get_ref().to_string(), val.to_string());
        }
        Ok(out)
    }
}

/// A byte count: an integer, or a string with a binary suffix (`"10M"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Size(pub u64);

impl FromToml for Size {
    fn allowed() -> Cow<'static, str> {
        "a number of bytes, or a string such as \"512K\", \"10M\", \"1G\"".into()
    }
    fn from_toml(v: &DeValue<'_>) -> Result<Self, String> {
        if let Some(n) = int(v) {
            return u64::try_from(n)
                .map(Size)
                .map_err(|_| format!("{n} is out of range"));
        }
        let s = v.as_str().ok_or_else(|| found(v))?.trim();
        let (num, mult) = match s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
            None => (s, 1u64),
            Some((i, _)) => {
                let unit = s[i..].trim().to_ascii_uppercase();
                let m = match unit.as_str() {
                    "B" => 1,
                    "K" | "KB" | "KIB" => 1 << 10,
                    "M" | "MB" | "MIB" => 1 << 20,
                    "G" | "GB" | "GIB" => 1 << 30,
                    _ => return Err(format!("unknown unit in \"{s}\"")),
                };
                (&s[..i], m)
            }
        };
        let n: u64 = num.parse().map_err(|_| format!("\"{s}\" is not a size"))?;
        n.checked_mul(mult)
            .map(Size)
            .ok_or_else(|| format!("\"{s}\" is too large"))
    }
}

/// A duration: seconds as an integer, or a string such as `"300s"`, `"5m"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Secs(pub Duration);

impl FromToml for Secs {
    fn allowed() -> Cow<'static, str> {
        "seconds as an integer, or a string such as \"500ms\", \"30s\", \"5m\", \"1h\", \"5d\""
            .into()
    }
    fn from_toml(v: &DeValue<'_>) -> Result<Self, String> {
        if let Some(n) = int(v) {
            return u64::try_from(n)
                .map(|n| Secs(Duration::from_secs(n)))
                .map_err(|_| format!("{n} is out of range"));
        }
        let s = v.as_str().ok_or_else(|| found(v))?.trim();
        let i = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let n: u64 = s[..i]
            .parse()
            .map_err(|_| format!("\"{s}\" is not a duration"))?;
        let d = match &s[i..] {
            "" | "s" => Duration::from_secs(n),
            "ms" => Duration::from_millis(n),
            "m" => Duration::from_secs(n.saturating_mul(60)),
            "h" => Duration::from_secs(n.saturating_mul(3600)),
            "d" => Duration::from_secs(n.saturating_mul(86_400)),
            "w" => Duration::from_secs(n.saturating_mul(7 * 86_400)),
            _ => return Err(format!("unknown unit in \"{s}\"")),
        };
        Ok(Secs(d))
    }
}

/// An IPv4 or IPv6 network (`192.168.0.0/24`, `::1/128`, or one address).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(a)) => {
                mask32(u32::from(net), self.prefix) == mask32(u32::from(a), self.prefix)
            }
            (IpAddr::V6(net), IpAddr::V6(a)) => {
                mask128(u128::from(net), self.prefix) == mask128(u128::from(a), self.prefix)
            }
            _ => false,
        }
    }

    pub fn parse(s: &str) -> Result<Cidr, String> {
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = a
            .parse()
            .map_err(|_| format!("\"{a}\" is not an IP address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(n) if n <= max => n,
                _ => return Err(format!("prefix length \"/{p}\" must be 0 to {max}")),
            },
        };
        let network = match addr {
            IpAddr::V4(v4) => IpAddr::V4(mask32(u32::from(v4), prefix).into()),
            IpAddr::V6(v6) => IpAddr::V6(mask128(u128::from(v6), prefix).into()),
        };
        if network != addr {
            return Err(format!(
                "\"{s}\" has host bits set (did you mean \"{network}/{prefix}\"?)"
            ));
        }
        Ok(Cidr { addr, prefix })
    }
}

fn mask32(a: u32, prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        a & (u32::MAX << (32 - prefix as u32))
    }
}

fn mask128(a: u128, prefix: u8) -> u128 {
    if prefix == 0 {
        0
    } else {
        a & (u128::MAX << (128 - prefix as u32))
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromToml for Cidr {
    fn allowed() -> Cow<'static, str> {
        "a network such as \"192.168.0.0/24\", \"127.0.0.1\", \"fd00::/8\"".into()
    }
    fn from_toml(v: &DeValue<'_>) -> Result<Self, String> {
        Cidr::parse(v.as_str().ok_or_else(|| found(v))?)
    }
}

impl FromToml for SocketAddr {
    fn allowed() -> Cow<'static, str> {
        "an address with port such as \"127.0.0.1:2525\", \"0.0.0.0:25\", \"[::1]:587\"".into()
    }
    fn from_toml(v: &DeValue<'_>) -> Result<Self, String> {
        let s = v.as_str().ok_or_else(|| found(v))?;
        s.parse()
            .map_err(|_| format!("\"{s}\" is not an address:port"))
    }
}

/// Declares a string enum with its allowed spellings.
macro_rules! string_enum {
    ($(#[$m:meta])* pub enum $name:ident { $($variant:ident = $text:literal),* $(,)? }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum $name { $($variant),* }

        impl $name {
            pub fn as_str(&self) -> &'static str {
                match self { $($name::$variant => $text),* }
            }
        }

        impl FromToml for $name {
            fn allowed() -> Cow<'static, str> {
                [$(concat!("\"", $text, "\"")),*].join(", ").into()
            }
            fn from_toml(v: &DeValue<'_>) -> Result<Self, String> {
                match v.as_str() {
                    $(Some($text) => Ok($name::$variant),)*
                    _ => Err(found(v)),
                }
            }
        }
    };
}

string_enum! {
    /// How a listener speaks.
    pub enum ListenerMode { Plain = "plain", StartTls = "starttls", ImplicitTls = "implicit-tls" }
}

string_enum! {
    /// Where AUTH checks passwords.
    pub enum AuthBackend { Sqlite = "sqlite", Dovecot = "dovecot", None = "none" }
}

string_enum! {
    /// How new passwords are stored.
    pub enum PasswordScheme { Sha512Crypt = "SHA512-CRYPT", BlfCrypt = "BLF-CRYPT" }
}

string_enum! {
    /// What a listener is for: SMTP from clients, or the content filter's
    /// way back in (no filter, no address mappings, trusted networks only).
    pub enum ListenerRole { Smtp = "smtp", Reinject = "reinject" }
}

string_enum! {
    /// What happens to mail for a mailbox over its quota.
    pub enum OverQuota { Bounce = "bounce", Defer = "defer" }
}

string_enum! {
    /// Kinds of `[[transport]]`.
    pub enum TransportKind { Pipe = "pipe" }
}

string_enum! {
    /// TLS of outbound SMTP (smtp_tls_security_level).
    pub enum TlsMode { None = "none", May = "may", Encrypt = "encrypt", Verify = "verify" }
}

string_enum! {
    /// Which local parts of the local domains exist.
    pub enum LocalUsers { Any = "any", AliasesOnly = "aliases-only" }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs() {
        let c = Cidr::parse("192.168.0.0/24").unwrap();
        assert!(c.contains("192.168.0.77".parse().unwrap()));
        assert!(!c.contains("192.168.1.1".parse().unwrap()));
        assert!(c.contains("::ffff:192.168.0.5".parse().unwrap()));
        assert!(Cidr::parse("::1/128")
            .unwrap()
            .contains("::1".parse().unwrap()));
        assert!(Cidr::parse("0.0.0.0/0")
            .unwrap()
            .contains("8.8.8.8".parse().unwrap()));
        assert!(Cidr::parse("192.168.0.1/24")
            .unwrap_err()
            .contains("did you mean \"192.168.0.0/24\""));
        assert!(Cidr::parse("10.0.0.0/33").is_err());
        assert!(Cidr::parse("300.0.0.0/8").is_err());
        assert_eq!(Cidr::parse("127.0.0.1").unwrap().prefix, 32);
    }
}
