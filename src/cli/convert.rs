//! `postern convert`: a Postfix directory into a postern TOML file. The
//! work is in `crate::convert`; here: arguments, files, exit codes.

use std::path::PathBuf;

use argh::FromArgs;

#[cfg(feature = "convert")]
use crate::convert::{self, Kind, Source};
use crate::sysexits::EX_USAGE;
#[cfg(feature = "convert")]
use crate::sysexits::{EX_CANTCREAT, EX_DATAERR, EX_NOINPUT};

/// Convert a Postfix configuration (main.cf, master.cf, the maps they
/// name) into a postern configuration file.
#[derive(FromArgs)]
#[argh(subcommand, name = "convert")]
pub struct ConvertCmd {
    /// the Postfix directory, e.g. /etc/postfix: nothing outside it is read
    #[argh(positional)]
    pub dir: Option<PathBuf>,
    /// the /etc/sysconfig/postfix file of SuSE, read as well
    #[argh(option)]
    pub sysconfig: Option<PathBuf>,
    /// write the configuration to this file instead of standard output
    #[argh(option, short = 'o')]
    pub output: Option<PathBuf>,
    /// put every absolute path in the output, and the side files, under
    /// this directory (to try the result out, or to build an image)
    #[argh(option)]
    pub root: Option<PathBuf>,
    /// where side files go (the MySQL password, copied tables); default
    /// /etc/postern
    #[argh(option)]
    pub side_dir: Option<String>,
    /// write what could be converted even when there are problems, with
    /// every problem listed at the top
    #[argh(switch)]
    pub force: bool,
    /// print the table of Postfix parameters and their postern keys
    /// (README's "Coming from Postfix") and exit
    #[argh(switch)]
    pub table: bool,
}

/// Without the `convert` cargo feature: the command exists and says so.
#[cfg(not(feature = "convert"))]
pub fn run(_: ConvertCmd) -> i32 {
    eprintln!("postern convert: this postern was built without it (cargo feature `convert`): convert on another machine");
    EX_USAGE
}

#[cfg(feature = "convert")]
pub fn run(c: ConvertCmd) -> i32 {
    if c.table {
        print!("{}", convert::table::markdown());
        return 0;
    }
    let Some(dir) = c.dir else {
        eprintln!(
            "postern convert: which directory? e.g. `postern convert /etc/postfix > postern.toml`"
        );
        return EX_USAGE;
    };
    if !dir.is_dir() {
        eprintln!("postern convert: {}: not a directory", dir.display());
        return EX_NOINPUT;
    }
    let sysconfig = match &c.sysconfig {
        None => None,
        Some(p) => {
            let name = p.display().to_string();
            let text = std::fs::read(p)
                .map_err(|e| format!("{name}: cannot read: {e}"))
                .and_then(|b| match b.len() > convert::source::FILE_LIMIT {
                    true => Err(format!(
                        "{name}: larger than {} bytes: not a configuration file",
                        convert::source::FILE_LIMIT
                    )),
                    false => Ok(b),
                })
                .and_then(|b| convert::source::check_text(&name, b).map_err(|f| f.to_string()));
            match text {
                Ok(t) => Some((name, t)),
                Err(e) => {
                    eprintln!("postern convert: {e}");
                    return EX_NOINPUT;
                }
            }
        }
    };
    let root = c.root.map(|r| {
        if r.is_absolute() {
            r
        } else {
            std::env::current_dir().map(|d| d.join(&r)).unwrap_or(r)
        }
    });
    let mut src = Source::dir(&dir);
    let side_dir = c.side_dir.unwrap_or_else(|| "/etc/postern".into());
    if !side_dir.starts_with('/') {
        eprintln!("postern convert: --side-dir {side_dir}: an absolute path, please (the configuration names the files by it)");
        return EX_USAGE;
    }
    let result = convert::convert(&mut src, sysconfig, &side_dir);
    for f in &result.findings {
        eprintln!("postern convert: {}", f.to_string().replace('\n', "\n    "));
    }
    let errors = result.errors();
    if errors > 0 && !c.force {
        eprintln!("postern convert: {errors} problem(s); nothing written (--force writes what could be converted, with the problems listed)");
        return EX_DATAERR;
    }
    if let Err(e) = convert::write_side_files(&result.side_files, root.as_deref()) {
        eprintln!("postern convert: {e}");
        return EX_CANTCREAT;
    }
    let text = result.render(root.as_deref());
    match &c.output {
        None => print!("{text}"),
        Some(p) => {
            if let Err(e) = std::fs::write(p, &text) {
                eprintln!("postern convert: cannot write {}: {e}", p.display());
                return EX_CANTCREAT;
            }
        }
    }
    let count = |k: Kind| result.findings.iter().filter(|f| f.kind == k).count();
    eprintln!(
        "postern convert: done: {} not supported, {} mistake(s) of the old set-up fixed, {} note(s), {} irrelevant, {} problem(s)",
        count(Kind::Unsupported),
        count(Kind::Lint),
        count(Kind::Note),
        count(Kind::Irrelevant),
        errors
    );
    0
}
