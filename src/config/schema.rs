//! The one source of every config key: its type, default, example value and
//! help text. [`section!`] declares a typed struct and, from the same lines,
//! the code that reads it from a TOML table (every error collected, none
//! stopping the walk) and the documentation the example config is rendered
//! from. A key that is not declared here does not exist.

use std::borrow::Cow;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

/// One problem in a config file, printed as
/// `FILE:LINE: key: problem; allowed: ...`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    pub line: usize,
    pub key: String,
    pub problem: String,
    pub allowed: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}: {}: {}",
            self.file, self.line, self.key, self.problem
        )?;
        if !self.allowed.is_empty() {
            write!(f, "; allowed: {}", self.allowed)?;
        }
        Ok(())
    }
}

/// Collects errors while a document is walked.
pub struct Ctx<'a> {
    pub file: &'a str,
    src: &'a str,
    pub errors: Vec<ConfigError>,
}

impl<'a> Ctx<'a> {
    pub fn new(file: &'a str, src: &'a str) -> Ctx<'a> {
        Ctx {
            file,
            src,
            errors: Vec::new(),
        }
    }

    /// The document's text.
    pub fn source(&self) -> &str {
        self.src
    }

    /// 1-based line of a byte offset.
    pub fn line_of(&self, offset: usize) -> usize {
        let end = offset.min(self.src.len());
        self.src.as_bytes()[..end]
            .iter()
            .filter(|&&c| c == b'\n')
            .count()
            + 1
    }

    pub fn error(
        &mut self,
        offset: usize,
        key: &str,
        problem: impl Into<String>,
        allowed: impl Into<String>,
    ) {
        let line = self.line_of(offset);
        self.errors.push(ConfigError {
            file: self.file.to_string(),
            line,
            key: key.to_string(),
            problem: problem.into(),
            allowed: allowed.into(),
        });
    }
}

/// A value type a key can have.
pub trait FromToml: Sized {
    /// What the error message lists as allowed.
    fn allowed() -> Cow<'static, str>;
    fn from_toml(v: &DeValue<'_>) -> Result<Self, String>;
}

/// Help for one key, rendered into the example config.
pub struct KeyDoc {
    pub name: &'static str,
    pub help: &'static [&'static str],
    /// A TOML literal shown in the example config.
    pub example: &'static str,
    /// Shown as "default: ..." when it differs from the example.
    pub default: &'static str,
}

/// Help for one table.
pub struct SectionDoc {
    /// `""` for the top level, `"smtp"`, or `"[listener]"` for an array of tables.
    pub name: &'static str,
    pub help: &'static [&'static str],
    pub keys: &'static [KeyDoc],
}

/// Reads one key of a section, recording an error instead of failing.
pub fn read_key<T: FromToml>(
    ctx: &mut Ctx<'_>,
    path: &str,
    v: &Spanned<DeValue<'_>>,
    slot: &mut T,
) {
    match T::from_toml(v.get_ref()) {
        Ok(x) => *slot = x,
        Err(problem) => ctx.error(v.span().start, path, problem, T::allowed()),
    }
}

/// Records "unknown key" for a key no schema declares, with the allowed ones.
pub fn unknown_key(ctx: &mut Ctx<'_>, prefix: &str, key: &Spanned<Cow<'_, str>>, allowed: &[&str]) {
    let path = join(prefix, key.get_ref());
    let mut hint = allowed.join(", ");
    if let Some(close) = closest(key.get_ref(), allowed) {
        hint = format!("{hint} (did you mean `{close}`?)");
    }
    ctx.error(key.span().start, &path, "unknown key", hint);
}

pub fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

/// The allowed name nearest to a typo, if it is near enough to help.
fn closest<'a>(key: &str, allowed: &[&'a str]) -> Option<&'a str> {
    allowed
        .iter()
        .map(|a| (edit_distance(key, a), *a))
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, a)| a)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// A table expected at `path`; an error if the value is anything else.
pub fn as_table<'a, 'i>(
    ctx: &mut Ctx<'_>,
    path: &str,
    v: &'a Spanned<DeValue<'i>>,
) -> Option<&'a DeTable<'i>> {
    match v.get_ref() {
        DeValue::Table(t) => Some(t),
        other => {
            ctx.error(
                v.span().start,
                path,
                format!("expected a table, found {}", other.type_str()),
                "a [table]",
            );
            None
        }
    }
}

/// Declares a config section: the struct, its defaults, its reader and its docs.
///
/// ```text
/// section! {
///     /// Help for the section.
///     pub struct Limits ("limits") {
///         /// Help for the key.
///         max: u64 = 10, example "10";
///     }
/// }
/// ```
/// `example` is the TOML literal written into the example config; `default`
/// text for the docs is derived from `stringify!` of the default expression
/// unless `doc_default` is given.
#[macro_export]
macro_rules! section {
    (
        $(#[doc = $sdoc:literal])*
        pub struct $name:ident ($table:literal) {
            $(
                $(#[doc = $doc:literal])*
                $field:ident : $ty:ty = $default:expr, example $example:literal $(, default $ddoc:literal)? ;
            )*
        }
    ) => {
        #[derive(Clone, Debug)]
        pub struct $name {
            $( $(#[doc = $doc])* pub $field: $ty, )*
        }

        impl Default for $name {
            fn default() -> Self {
                $name { $( $field: $default, )* }
            }
        }

        impl $name {
            pub const KEYS: &'static [&'static str] = &[$(stringify!($field)),*];

            pub const DOC: $crate::config::schema::SectionDoc = $crate::config::schema::SectionDoc {
                name: $table,
                help: &[$($sdoc),*],
                keys: &[$(
                    $crate::config::schema::KeyDoc {
                        name: stringify!($field),
                        help: &[$($doc),*],
                        example: $example,
                        default: $crate::section!(@default $example $(, $ddoc)?),
                    }
                ),*],
            };

            /// Reads the keys of this section from `table`; keys in `skip`
            /// are subsections handled by the caller.
            pub fn read(
                ctx: &mut $crate::config::schema::Ctx<'_>,
                prefix: &str,
                table: &toml::de::DeTable<'_>,
                skip: &[&str],
            ) -> Self {
                let mut out = Self::default();
                for (k, v) in table.iter() {
                    let key: &str = k.get_ref();
                    let path = $crate::config::schema::join(prefix, key);
                    match key {
                        $( stringify!($field) => $crate::config::schema::read_key(ctx, &path, v, &mut out.$field), )*
                        _ if skip.contains(&key) => {}
                        _ => {
                            let mut allowed: Vec<&str> = Self::KEYS.to_vec();
                            allowed.extend_from_slice(skip);
                            $crate::config::schema::unknown_key(ctx, prefix, k, &allowed);
                        }
                    }
                }
                out
            }
        }
    };
    (@default $example:literal) => { $example };
    (@default $example:literal, $ddoc:literal) => { $ddoc };
}
