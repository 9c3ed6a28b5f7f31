//! sendmail(1)'s command line, as the programs that call it use it (cron,
//! mailx, smartd, git send-email, PHP; see ../shared/notes/appliance.md):
//! Sendmail's single-letter flags, with values attached (`-fme`) or
//! separate (`-f me`), grouped `-oX` options, `--` ending the options.
//! Pure: no I/O.

/// What to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `-bm` (the default): read a message, submit it.
    Deliver,
    /// `-bs`: SMTP on standard input and output.
    Smtp,
    /// `-bp`, or invoked as `mailq`: the queue.
    ListQueue,
    /// `-bi`/`-I`, or invoked as `newaliases`.
    NewAliases,
    /// `-q`: deliver deferred mail now.
    Flush,
    /// `-bv`: verify addresses (resolve, send nothing).
    Verify,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Args {
    pub mode: Mode,
    /// `-t`: recipients from To:, Cc:, Bcc: (added to those given).
    pub from_headers: bool,
    /// `-f`/`-r`: the envelope sender (`""` or `<>`: the null sender).
    pub sender: Option<String>,
    /// `-F`: the full name for a From: header postern adds.
    pub full_name: Option<String>,
    /// `-i`/`-oi`: a line with a single dot does not end the message.
    pub ignore_dots: bool,
    /// `-v`: say what happens.
    pub verbose: bool,
    /// `-C`: the configuration file.
    pub config: Option<String>,
    /// `-N`: DSN NOTIFY (never, success, delay, failure).
    pub notify: Option<String>,
    /// `-R`: DSN RET (hdrs or full).
    pub ret: Option<String>,
    /// `-V`: DSN ENVID.
    pub envid: Option<String>,
    /// `-B`: body type (7BIT, 8BITMIME).
    pub body: Option<String>,
    pub recipients: Vec<String>,
    /// Flags accepted and ignored, for `-v`.
    pub ignored: Vec<String>,
}

/// How the program was invoked: `sendmail`, `mailq`, `newaliases`.
pub fn mode_of_name(argv0: &str) -> Option<Mode> {
    let base = argv0.rsplit('/').next().unwrap_or(argv0);
    match base {
        "sendmail" | "postern-sendmail" => Some(Mode::Deliver),
        "mailq" => Some(Mode::ListQueue),
        "newaliases" => Some(Mode::NewAliases),
        _ => None,
    }
}

/// Flags that take a value.
const WITH_VALUE: &[char] = &['f', 'r', 'F', 'C', 'N', 'R', 'V', 'B', 'h', 'L', 'X', 'O'];

/// Parses everything after the program name. `Err` is a usage message
/// (exit 64).
pub fn parse(mode: Mode, args: &[String]) -> Result<Args, String> {
    let mut a = Args {
        mode,
        from_headers: false,
        sender: None,
        full_name: None,
        ignore_dots: false,
        verbose: false,
        config: None,
        notify: None,
        ret: None,
        envid: None,
        body: None,
        recipients: Vec::new(),
        ignored: Vec::new(),
    };
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        if arg == "--" {
            a.recipients.extend(args[i..].iter().cloned());
            break;
        }
        let Some(flags) = arg.strip_prefix('-').filter(|f| !f.is_empty()) else {
            a.recipients.push(arg.clone());
            continue;
        };
        for (at, c) in flags.char_indices() {
            let rest = &flags[at + c.len_utf8()..];
            if WITH_VALUE.contains(&c) {
                // The rest of the word, or the next word.
                let v = match rest {
                    "" => {
                        let v = args.get(i).cloned();
                        i += 1;
                        v.ok_or_else(|| format!("option -{c} needs a value"))?
                    }
                    r => r.to_string(),
                };
                set_value(&mut a, c, v);
                break;
            }
            if let Word::Taken = set_flag(&mut a, c, rest)? {
                break;
            }
        }
    }
    if let Some(s) = &mut a.sender {
        *s = unbracket(s);
    }
    Ok(a)
}

/// A flag of `WITH_VALUE` and its value.
fn set_value(a: &mut Args, c: char, v: String) {
    match c {
        'f' | 'r' => a.sender = Some(v),
        'F' => a.full_name = Some(v),
        'C' => a.config = Some(v),
        'N' => a.notify = Some(v),
        'R' => a.ret = Some(v),
        'V' => a.envid = Some(v),
        'B' => a.body = Some(v),
        _ => a.ignored.push(format!("-{c} {v}")),
    }
}

/// What a flag without a value did with the rest of its word.
enum Word {
    /// The next letter is another flag.
    Goes,
    /// The rest was the flag's own (`-bs`, `-oi`, `-q30m`).
    Taken,
}

/// A flag without a value, `rest` the letters after it in its word.
fn set_flag(a: &mut Args, c: char, rest: &str) -> Result<Word, String> {
    match c {
        't' => a.from_headers = true,
        'i' => a.ignore_dots = true,
        'v' => a.verbose = true,
        'I' => a.mode = Mode::NewAliases,
        'n' | 'm' | 'U' | 'x' => a.ignored.push(format!("-{c}")),
        // -Am, -Ac: which submission file (Sendmail 8.12).
        'A' => a.ignored.push(format!("-A{rest}")),
        'b' => {
            a.mode = match rest {
                "m" | "" => Mode::Deliver,
                "s" => Mode::Smtp,
                "p" => Mode::ListQueue,
                "i" => Mode::NewAliases,
                "v" => Mode::Verify,
                "d" | "D" | "h" | "H" | "a" | "t" => {
                    return Err(format!("-b{rest} is not supported by postern"))
                }
                other => return Err(format!("unknown mode -b{other}")),
            }
        }
        // -oi, -oem, -oee, -odb, -odq, -odi, -o7 ... (Sendmail options):
        // only -oi changes anything.
        'o' if rest == "i" => a.ignore_dots = true,
        'o' if rest.is_empty() => return Err("option -o needs a letter".into()),
        'o' => a.ignored.push(format!("-o{rest}")),
        // -q, -q30m (an interval: ignored, as Postfix does), -qR/-qI/-qS
        // (a selection: all is flushed).
        'q' => {
            a.mode = Mode::Flush;
            if !rest.is_empty() {
                a.ignored.push(format!("-q{rest}"));
            }
        }
        _ => return Err(format!("unknown option -{c}")),
    }
    Ok(match c {
        'A' | 'b' | 'o' | 'q' => Word::Taken,
        _ => Word::Goes,
    })
}

/// `<addr>` → `addr`, trimmed.
fn unbracket(s: &str) -> String {
    let t = s.trim();
    t.strip_prefix('<')
        .and_then(|x| x.strip_suffix('>'))
        .unwrap_or(t)
        .to_string()
}

/// The usage text for `sendmail --help` and errors.
pub const USAGE: &str = "usage: sendmail [-t] [-i] [-f sender] [-F name] [-v] [-bm|-bs|-bp|-bi|-bv] [-q] [--] [recipient ...]";

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Args, String> {
        parse(
            Mode::Deliver,
            &args.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        )
    }

    #[test]
    fn what_callers_pass() {
        // cronie
        let a = p(&[
            "-FCronDaemon",
            "-i",
            "-odi",
            "-oem",
            "-oi",
            "-t",
            "-f",
            "root",
        ])
        .unwrap();
        assert!(a.from_headers && a.ignore_dots);
        assert_eq!(
            (a.sender.as_deref(), a.full_name.as_deref()),
            (Some("root"), Some("CronDaemon"))
        );
        assert!(a.recipients.is_empty());
        // Debian cron
        let a = p(&[
            "-i",
            "-FCronDaemon",
            "-B8BITMIME",
            "-oem",
            "admin@example.test",
        ])
        .unwrap();
        assert_eq!(a.body.as_deref(), Some("8BITMIME"));
        assert_eq!(a.recipients, ["admin@example.test"]);
        // mailx, git send-email, PHP
        let a = p(&["-i", "-v", "--", "-odd@example.test", "b@example.test"]).unwrap();
        assert!(a.verbose && a.ignore_dots);
        assert_eq!(a.recipients, ["-odd@example.test", "b@example.test"]);
        let a = p(&["-f<me@example.test>", "-i", "x@example.test"]).unwrap();
        assert_eq!(a.sender.as_deref(), Some("me@example.test"));
        assert_eq!(p(&["-t", "-i"]).unwrap().recipients.len(), 0);
        let a = p(&["-f", "<>", "x@example.test"]).unwrap();
        assert_eq!(a.sender.as_deref(), Some(""));
    }

    #[test]
    fn modes_and_grouped_flags() {
        assert_eq!(p(&["-bs"]).unwrap().mode, Mode::Smtp);
        assert_eq!(p(&["-bp"]).unwrap().mode, Mode::ListQueue);
        assert_eq!(p(&["-bi"]).unwrap().mode, Mode::NewAliases);
        assert_eq!(p(&["-I"]).unwrap().mode, Mode::NewAliases);
        assert_eq!(p(&["-q"]).unwrap().mode, Mode::Flush);
        assert_eq!(p(&["-q30m"]).unwrap().mode, Mode::Flush);
        let a = p(&["-ti", "-Am", "x@example.test"]).unwrap();
        assert!(a.from_headers && a.ignore_dots);
        assert_eq!(mode_of_name("/usr/bin/mailq"), Some(Mode::ListQueue));
        assert_eq!(mode_of_name("/usr/sbin/sendmail"), Some(Mode::Deliver));
        assert_eq!(mode_of_name("postern"), None);
    }

    #[test]
    fn mistakes_are_named() {
        assert_eq!(p(&["-Z"]).unwrap_err(), "unknown option -Z");
        assert_eq!(p(&["-f"]).unwrap_err(), "option -f needs a value");
        assert!(p(&["-bd"]).unwrap_err().contains("not supported"));
        assert!(p(&["-o"]).is_err());
    }
}
