//! `postern convert`: a Postfix configuration directory (main.cf,
//! master.cf and the maps they name) into one postern TOML file.
//!
//! Owns: reading Postfix's file formats (source, maincf, mastercf, maps),
//! the one table of what each Postfix parameter becomes (table), and the
//! mapping onto postern's keys (map and its parts). Touches nothing but
//! the files it is given: it reads only inside the Postfix directory (and
//! the `--sysconfig` file), and the caller writes the result.
//!
//! Every parameter that is read is accounted for: converted, built in,
//! or reported as a [`Finding`] in the comment block at the top of the
//! output (and on stderr), with the reason. Findings of kind
//! [`Kind::Lint`] are the old set-up's own mistakes: the converter writes
//! what the author evidently meant and says what changes.

mod content;
mod deliver;
mod listen;
pub mod maincf;
mod map;
pub mod maps;
pub mod mastercf;
pub mod out;
mod relay;
mod settings;
pub mod source;
pub mod table;

use std::fmt;
use std::path::Path;

pub use map::convert;
pub use source::Source;

/// What a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// The input cannot be converted as it is: no output without --force.
    Error,
    /// A setting that changes behaviour and that postern cannot express.
    Unsupported,
    /// A mistake of the old set-up: written as meant, with what changes.
    Lint,
    /// A choice the converter made that the reader should know about.
    Note,
    /// A setting that means nothing for postern.
    Irrelevant,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Error => "error",
            Kind::Unsupported => "not supported",
            Kind::Lint => "finding",
            Kind::Note => "note",
            Kind::Irrelevant => "irrelevant",
        }
    }
}

/// One thing to tell the user, with the file and line it is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub kind: Kind,
    pub file: String,
    /// 0: the file as a whole.
    pub line: usize,
    /// The Postfix parameter, if the finding is about one.
    pub param: String,
    /// What is wrong or what changes; may span lines.
    pub text: String,
}

impl Finding {
    pub fn new(kind: Kind, file: &str, line: usize, param: &str, text: &str) -> Finding {
        Finding {
            kind,
            file: file.to_string(),
            line,
            param: param.to_string(),
            text: text.to_string(),
        }
    }
    pub fn error(file: &str, line: usize, param: &str, text: &str) -> Finding {
        Finding::new(Kind::Error, file, line, param, text)
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if self.line > 0 {
            write!(f, ":{}", self.line)?;
        }
        write!(f, ": ")?;
        if !self.param.is_empty() {
            write!(f, "{}: ", self.param)?;
        }
        write!(f, "{}: {}", self.kind.label(), self.text)
    }
}

/// A file written next to the configuration: the MySQL password (0600),
/// relay credentials (0600), a quota table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SideFile {
    /// Absolute, before `--root`.
    pub path: String,
    pub content: String,
    pub mode: u32,
}

/// The result of a conversion.
pub struct Converted {
    pub doc: out::Doc,
    pub side_files: Vec<SideFile>,
    pub findings: Vec<Finding>,
    /// Where it was converted from, for the header.
    pub from: String,
}

impl Converted {
    pub fn errors(&self) -> usize {
        self.findings
            .iter()
            .filter(|f| f.kind == Kind::Error)
            .count()
    }

    /// The TOML file: the findings as a comment block, then the keys.
    pub fn render(&self, root: Option<&Path>) -> String {
        let mut out = format!(
            "# postern configuration converted from {} by `postern convert`.\n\
             # Check it with `postern check-config FILE`; every key is explained by\n\
             # `postern config example`.\n",
            self.from
        );
        for (kind, title) in [
            (Kind::Error, "Problems: this output is INCOMPLETE (written because of --force)"),
            (Kind::Lint, "Mistakes of the old set-up: written as meant (what Postfix did, what postern does, how to get the old behaviour)"),
            (Kind::Unsupported, "Not converted: postern cannot do these"),
            (Kind::Note, "Notes"),
            (Kind::Irrelevant, "Not converted: irrelevant for postern"),
        ] {
            let list: Vec<&Finding> = self.findings.iter().filter(|f| f.kind == kind).collect();
            if list.is_empty() {
                continue;
            }
            out.push_str(&format!("#\n# {title}:\n"));
            for f in list {
                let mut lines = f.to_string().lines().map(str::to_string).collect::<Vec<_>>().into_iter();
                if let Some(first) = lines.next() {
                    out.push_str(&format!("# - {first}\n"));
                }
                for l in lines {
                    out.push_str(&format!("#     {l}\n"));
                }
            }
        }
        out.push('\n');
        out.push_str(&self.doc.render(root));
        out
    }
}

/// Writes the side files under `root` (when given), each with its mode.
pub fn write_side_files(files: &[SideFile], root: Option<&Path>) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    for f in files {
        let path = std::path::PathBuf::from(out::reroot(&f.path, root));
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(f.mode)
            .open(&path)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        // An existing file keeps its mode through open(): set it.
        file.set_permissions(std::fs::Permissions::from_mode(f.mode))
            .and_then(|_| file.write_all(f.content.as_bytes()))
            .and_then(|_| file.sync_all())
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(())
}
