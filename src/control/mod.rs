//! The control socket: how `postern queue ...` (and later `sendmail`,
//! `status`) talk to the running server.
//!
//! A Unix stream socket (`[control] socket`, mode 0660 in a 0750
//! directory). The server checks the peer's credentials (SO_PEERCRED):
//! root, postern's own user, or a member of its group; every command is
//! logged with the peer's uid and pid.
//!
//! Protocol: the client sends one request line and reads the answer until
//! the server closes:
//! ```text
//! request:  <verb> [<queue id> | all] [json]\n     (at most 512 bytes)
//! answer:   ok\n<body...>
//!       or  error <sysexits code> <text>\n
//! ```
//! Verbs: `list`, `show ID`, `flush [ID]`, `hold ID|all`,
//! `release ID|all`, `delete ID|all`, `requeue ID`, `status`. The body of `list`
//! and `show` is the rendered report (text, or JSON with `json`), so the
//! client prints it as it is.

pub mod client;
pub mod report;
pub mod server;

use crate::sysexits::EX_USAGE;

/// Longest request line.
pub const MAX_REQUEST: usize = 512;

/// Which messages a command acts on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    One(String),
    All,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    List {
        json: bool,
    },
    Show {
        id: String,
        json: bool,
    },
    Flush(Target),
    Hold(Target),
    Release(Target),
    Delete(Target),
    Requeue(String),
    /// `postern status`: what the server says about itself.
    Status {
        json: bool,
    },
}

/// A request that cannot be carried out: its exit code and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub code: i32,
    pub text: String,
}

impl Refusal {
    pub fn new(code: i32, text: impl Into<String>) -> Refusal {
        Refusal {
            code,
            text: text.into(),
        }
    }
}

impl Request {
    /// The request line (without the newline).
    pub fn to_line(&self) -> String {
        let t = |t: &Target| match t {
            Target::One(id) => id.clone(),
            Target::All => "all".into(),
        };
        let j = |json: bool| if json { " json" } else { "" };
        match self {
            Request::List { json } => format!("list{}", j(*json)),
            Request::Show { id, json } => format!("show {id}{}", j(*json)),
            Request::Flush(Target::All) => "flush".into(),
            Request::Flush(x) => format!("flush {}", t(x)),
            Request::Hold(x) => format!("hold {}", t(x)),
            Request::Release(x) => format!("release {}", t(x)),
            Request::Delete(x) => format!("delete {}", t(x)),
            Request::Requeue(id) => format!("requeue {id}"),
            Request::Status { json } => format!("status{}", j(*json)),
        }
    }

    /// Parses a request line; anything else is a usage error.
    pub fn parse(line: &str) -> Result<Request, Refusal> {
        let bad = |why: &str| Refusal::new(EX_USAGE, format!("bad request {line:?}: {why}"));
        let words: Vec<&str> = line.split_ascii_whitespace().collect();
        let json = words.last() == Some(&"json");
        let args: &[&str] = if json {
            &words[..words.len() - 1]
        } else {
            &words
        };
        let target = |w: Option<&&str>| match w {
            Some(&"all") => Ok(Target::All),
            Some(id) if crate::queue::id::is_valid(id) => Ok(Target::One(id.to_string())),
            Some(_) => Err(bad(
                "not a queue ID (11 characters, as `postern queue list` shows)",
            )),
            None => Err(bad("a queue ID or `all` is needed")),
        };
        let id = |w: Option<&&str>| match target(w)? {
            Target::One(id) => Ok(id),
            Target::All => Err(bad("one queue ID is needed, not `all`")),
        };
        let r = match args.first().copied() {
            Some("list") if args.len() == 1 => Request::List { json },
            Some("show") if args.len() == 2 => Request::Show {
                id: id(args.get(1))?,
                json,
            },
            Some("flush") if args.len() == 1 => Request::Flush(Target::All),
            Some("flush") if args.len() == 2 => Request::Flush(target(args.get(1))?),
            Some("hold") if args.len() == 2 => Request::Hold(target(args.get(1))?),
            Some("release") if args.len() == 2 => Request::Release(target(args.get(1))?),
            Some("delete") if args.len() == 2 => Request::Delete(target(args.get(1))?),
            Some("requeue") if args.len() == 2 => Request::Requeue(id(args.get(1))?),
            Some("status") if args.len() == 1 => Request::Status { json },
            Some(v)
                if [
                    "list", "show", "flush", "hold", "release", "delete", "requeue", "status",
                ]
                .contains(&v) =>
            {
                return Err(bad("wrong number of arguments"))
            }
            _ => return Err(bad("unknown command")),
        };
        if json
            && !matches!(
                r,
                Request::List { .. } | Request::Show { .. } | Request::Status { .. }
            )
        {
            return Err(bad("only list, show and status have a json form"));
        }
        Ok(r)
    }

    /// Does this request change the queue (and so need the server)?
    pub fn changes(&self) -> bool {
        !matches!(
            self,
            Request::List { .. } | Request::Show { .. } | Request::Status { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_and_garbage_is_refused() {
        for r in [
            Request::List { json: true },
            Request::Show {
                id: "1M19G9BJ42P".into(),
                json: false,
            },
            Request::Flush(Target::All),
            Request::Flush(Target::One("1M19G9BJ42P".into())),
            Request::Hold(Target::All),
            Request::Release(Target::One("1M19G9BJ42P".into())),
            Request::Delete(Target::All),
            Request::Requeue("1M19G9BJ42P".into()),
            Request::Status { json: true },
            Request::Status { json: false },
        ] {
            assert_eq!(Request::parse(&r.to_line()), Ok(r.clone()), "{r:?}");
        }
        for bad in [
            "",
            "list extra",
            "show",
            "show all",
            "hold ../../etc",
            "delete",
            "requeue all",
            "flush json",
            "\u{0}\u{1}garbage",
            "LIST",
            "status now",
        ] {
            let e = Request::parse(bad).unwrap_err();
            assert_eq!(e.code, EX_USAGE, "{bad:?}");
        }
    }
}
