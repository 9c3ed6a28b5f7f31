//! The mapping: main.cf and master.cf onto postern's keys. This file
//! holds the driver, the helpers every part uses, names and networks,
//! and the final account of every parameter (see [`Cx::report`]);
//! settings.rs, listen.rs, deliver.rs, content.rs and relay.rs hold the
//! parts.

use std::collections::HashSet;

use super::maincf::{self, MainCf};
use super::mastercf::{self, Service};
use super::out::{Doc, Val};
use super::source::Source;
use super::table::{self, Fate};
use super::{Converted, Finding, Kind, SideFile};

/// The conversion in progress.
pub(super) struct Cx<'a> {
    pub src: &'a Source,
    pub cf: MainCf,
    pub services: Vec<Service>,
    pub master_file: String,
    pub doc: Doc,
    pub side: Vec<SideFile>,
    pub findings: Vec<Finding>,
    /// main.cf parameters the mapping has consumed.
    used: HashSet<String>,
    /// (service line, override name) consumed.
    used_overrides: HashSet<(usize, String)>,
    /// Where side files go (`/etc/postern`).
    pub side_dir: String,
}

/// Converts the Postfix directory behind `src`; `sysconfig` is SuSE's
/// /etc/sysconfig/postfix (name, text) when given. Side files are named
/// under `side_dir`.
pub fn convert(src: &mut Source, sysconfig: Option<(String, String)>, side_dir: &str) -> Converted {
    let from = src.display_prefix.clone();
    let mut findings = Vec::new();
    let main_name = src.display("main.cf");
    let cf = match src.read("main.cf") {
        Ok(text) => {
            let (cf, problems) = maincf::parse(&main_name, &text);
            findings.extend(problems);
            cf
        }
        Err(e) => {
            findings.push(e);
            MainCf::default()
        }
    };
    if let Some(p) = cf.get("config_directory") {
        src.config_directory = p.raw.trim().trim_end_matches('/').to_string();
    }
    let master_file = src.display("master.cf");
    let services = match src.read("master.cf") {
        Ok(text) => {
            let (s, problems) = mastercf::parse(&master_file, &text);
            findings.extend(problems);
            s
        }
        Err(e) => {
            findings.push(e);
            Vec::new()
        }
    };
    let mut cx = Cx {
        src,
        cf,
        services,
        master_file,
        doc: Doc::default(),
        side: Vec::new(),
        findings,
        used: HashSet::new(),
        used_overrides: HashSet::new(),
        side_dir: side_dir.trim_end_matches('/').to_string(),
    };
    if cx.cf.params.is_empty() && cx.findings.iter().any(|f| f.kind == Kind::Error) {
        return cx.finish(from);
    }
    cx.names();
    cx.networks();
    cx.listeners();
    cx.restrictions();
    cx.smtp_limits();
    cx.tls_auth();
    cx.directory();
    cx.delivery();
    cx.content();
    cx.quota();
    cx.relay();
    cx.queue();
    if let Some((name, text)) = sysconfig {
        cx.sysconfig(&name, &text);
    }
    cx.report();
    cx.finish(from)
}

impl Cx<'_> {
    fn finish(self, from: String) -> Converted {
        let mut findings = self.findings;
        // Stable: by kind, then file order.
        findings.sort_by(|a, b| (a.kind, &a.file, a.line).cmp(&(b.kind, &b.file, b.line)));
        findings.dedup();
        Converted {
            doc: self.doc,
            side_files: self.side,
            findings,
            from,
        }
    }

    /// The expanded value of a main.cf parameter (marked as used), or
    /// `None` when main.cf does not set it. Expansion errors are findings.
    pub fn get(&mut self, name: &str) -> Option<String> {
        self.cf.get(name)?;
        self.used.insert(name.to_string());
        match self.cf.value(name) {
            Ok(v) => v,
            Err(e) => {
                self.findings.push(e);
                None
            }
        }
    }

    /// `get` for yes/no parameters.
    pub fn flag(&mut self, name: &str) -> Option<bool> {
        let v = self.get(name)?;
        match v.to_ascii_lowercase().as_str() {
            "yes" | "true" | "1" => Some(true),
            "no" | "false" | "0" => Some(false),
            _ => {
                self.problem(name, &format!("{v:?} is not yes or no"));
                None
            }
        }
    }

    /// Marks an override of `service` as accounted for.
    pub fn consume(&mut self, service: &Service, name: &str) {
        self.used_overrides.insert((service.line, name.to_string()));
    }

    pub fn mark_used(&mut self, name: &str) {
        self.used.insert(name.to_string());
    }

    pub fn line(&self, name: &str) -> usize {
        self.cf.line(name)
    }

    pub fn find(&mut self, kind: Kind, name: &str, text: &str) {
        let f = Finding::new(kind, &self.cf.file, self.cf.line(name), name, text);
        self.findings.push(f);
    }

    pub fn problem(&mut self, name: &str, text: &str) {
        self.find(Kind::Error, name, text);
    }

    pub fn svc_find(&mut self, kind: Kind, service: &Service, name: &str, text: &str) {
        let f = Finding::new(kind, &self.master_file, service.line, name, text);
        self.findings.push(f);
    }

    /// A side file under the side directory; returns its path.
    pub fn side_file(&mut self, name: &str, content: String, mode: u32) -> String {
        let path = format!("{}/{name}", self.side_dir);
        self.side.retain(|f| f.path != path);
        self.side.push(SideFile {
            path: path.clone(),
            content,
            mode,
        });
        path
    }

    /// Reads a map file named in main.cf (`param`); problems are findings.
    pub fn read_map(&mut self, param: &str, path: &str) -> Option<(String, String)> {
        match self.src.relative(path) {
            Err(why) => {
                self.find(Kind::Unsupported, param, &why);
                None
            }
            Ok(rel) => match self.src.read(&rel) {
                Ok(text) => Some((self.src.display(&rel), text)),
                Err(e) if e.line == 0 => {
                    // The file as a whole: reported where main.cf names it.
                    self.problem(param, &format!("{}: {}", e.file, e.text));
                    None
                }
                Err(e) => {
                    self.findings.push(e);
                    None
                }
            },
        }
    }

    /// hostname, origin, local_domains, recipient_delimiter, data_dir.
    fn names(&mut self) {
        let mut t = Vec::new();
        if let Some(h) = self.get("myhostname") {
            t.push(("hostname", Val::s(h), "myhostname"));
        }
        if let Some(o) = self.get("myorigin") {
            if o.starts_with('/') {
                // Debian's `myorigin = /etc/mailname`: Postfix reads the file.
                self.find(Kind::Unsupported, "myorigin", &format!("{o}: a file, not read (outside the directory given): set `origin` to the domain it holds"));
            } else {
                t.push(("origin", Val::s(o), "myorigin"));
            }
        }
        if let Some(d) = self.get("mydestination") {
            t.push((
                "local_domains",
                Val::strs(&maincf::list(&d)),
                "mydestination",
            ));
        }
        self.mark_used("mydomain");
        for (k, v, from) in t {
            let line = self.line(from);
            self.doc
                .table("")
                .set(k, v, &format!("{from} (main.cf line {line})"));
        }
        self.doc.table("").set(
            "data_dir",
            Val::Path("/var/lib/postern".into()),
            "postern's own queue, user directory and state (Postfix's queue stays where it is)",
        );
    }

    /// mynetworks → trusted_networks.
    fn networks(&mut self) {
        let Some(v) = self.get("mynetworks") else {
            return;
        };
        if let Some(nets) = self.cidrs("mynetworks", &v) {
            let line = self.line("mynetworks");
            self.doc.table("").set(
                "trusted_networks",
                Val::strs(&nets),
                &format!("mynetworks (main.cf line {line})"),
            );
        }
    }

    /// A Postfix network list as postern CIDRs; `None` (with findings)
    /// when an entry cannot be converted.
    pub fn cidrs(&mut self, param: &str, v: &str) -> Option<Vec<String>> {
        let mut out = Vec::new();
        let mut ok = true;
        for item in maincf::list(v) {
            let plain = item.replace(['[', ']'], "");
            if item.contains(':') && MapLike::is(&item) || item.starts_with('/') {
                self.find(
                    Kind::Unsupported,
                    param,
                    &format!("{item}: networks from a file or table are not supported: list them"),
                );
                ok = false;
                continue;
            }
            match crate::config::Cidr::parse(&plain) {
                Ok(c) => out.push(c.to_string()),
                Err(e) => {
                    self.problem(param, &format!("{item}: {e}"));
                    ok = false;
                }
            }
        }
        ok.then_some(out)
    }

    /// Accounts for every main.cf parameter and `-o` override the mapping
    /// did not consume: irrelevant, unsupported or unknown, never silent.
    fn report(&mut self) {
        let params = self.cf.params.clone();
        for p in params {
            if self.used.contains(&p.name) {
                continue;
            }
            let value = self.cf.raw(&p.name).unwrap_or("").to_string();
            self.account(&self.cf.file.clone(), p.line, &p.name, &value);
        }
        let services = self.services.clone();
        for s in &services {
            if table::INTERNAL_SERVICES.contains(&s.name.as_str()) && s.overrides.is_empty() {
                continue;
            }
            for (n, v) in &s.overrides {
                if self.used_overrides.contains(&(s.line, n.clone())) {
                    continue;
                }
                let file = self.master_file.clone();
                self.account(&file, s.line, n, v);
            }
        }
    }

    fn account(&mut self, file: &str, line: usize, name: &str, value: &str) {
        let (kind, text) = match table::lookup(name) {
            None => (
                Kind::Unsupported,
                "not known to postern convert: check by hand what it does".to_string(),
            ),
            Some(r) if r.default == Some(value.trim()) => return,
            Some(r) => match r.fate {
                Fate::BuiltIn(how) if r.default.is_some() => (
                    Kind::Unsupported,
                    format!("{value:?}: postern has only the default ({how})"),
                ),
                Fate::BuiltIn(_) => return,
                Fate::Irrelevant(why) => (Kind::Irrelevant, why.to_string()),
                Fate::Unsupported(why) => (Kind::Unsupported, why.to_string()),
                Fate::Key(k) => (
                    Kind::Unsupported,
                    format!("{value:?} could not be converted here (postern: {k})"),
                ),
            },
        };
        self.findings
            .push(Finding::new(kind, file, line, name, &text));
    }
}

/// `type:name` entries in a list (not IPv6 addresses).
struct MapLike;
impl MapLike {
    fn is(item: &str) -> bool {
        item.split_once(':')
            .is_some_and(|(k, _)| k.chars().all(|c| c.is_ascii_alphabetic()) && k.len() > 2)
    }
}

/// A Postfix time value as postern's: `1200` → `"1200s"`.
pub fn postfix_time(v: &str) -> Option<String> {
    let v = v.trim();
    let i = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    if i == 0 {
        return None;
    }
    match &v[i..] {
        "" => Some(format!("{v}s")),
        "s" | "m" | "h" | "d" | "w" => Some(v.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: &[(&str, &str)] = &[
        (
            "main.cf",
            include_str!("../../tests/fixtures/seed-postfix/main.cf"),
        ),
        (
            "master.cf",
            include_str!("../../tests/fixtures/seed-postfix/master.cf"),
        ),
        (
            "header_checks",
            include_str!("../../tests/fixtures/seed-postfix/header_checks"),
        ),
        (
            "mysql_virtual_alias_maps.cf",
            include_str!("../../tests/fixtures/seed-postfix/mysql_virtual_alias_maps.cf"),
        ),
        (
            "mysql_virtual_domains_maps.cf",
            include_str!("../../tests/fixtures/seed-postfix/mysql_virtual_domains_maps.cf"),
        ),
        (
            "mysql_virtual_mailbox_maps.cf",
            include_str!("../../tests/fixtures/seed-postfix/mysql_virtual_mailbox_maps.cf"),
        ),
        (
            "mysql_virtual_mailbox_limit_maps.cf",
            include_str!("../../tests/fixtures/seed-postfix/mysql_virtual_mailbox_limit_maps.cf"),
        ),
        (
            "vquota",
            include_str!("../../tests/fixtures/seed-postfix/vquota"),
        ),
        (
            "transport.maps",
            include_str!("../../tests/fixtures/seed-postfix/transport.maps"),
        ),
    ];

    /// Round trip: every key the converter writes is one postern reads.
    #[test]
    fn the_seed_converts_into_keys_postern_reads() {
        let mut src = Source::memory(SEED);
        let c = convert(&mut src, None, "/etc/postern");
        assert_eq!(c.errors(), 0, "{:?}", c.findings);
        // The seed's pipe user does not exist here; the keys are the point.
        let text = c
            .render(None)
            .replace("user = \"postfixadmin\"", "user = \"nobody\"");
        if let Err(errors) = crate::config::Config::parse_client("converted.toml", &text) {
            panic!(
                "{}\n{text}",
                errors
                    .iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
        let side: Vec<&str> = c.side_files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(side, ["/etc/postern/mysql-password", "/etc/postern/vquota"]);
    }

    #[test]
    fn every_parameter_is_accounted_for() {
        let mut src = Source::memory(&[
            ("main.cf", "myhostname = mx.example.test\nfrobnicate = 1\nhtml_directory = /x\nmynetworks_style = host\nunknown_local_recipient_reject_code = 450\nsmtpd_helo_restrictions = reject_invalid_helo_hostname\n"),
            ("master.cf", "smtp inet n - n - - smtpd -o smtpd_tls_security_level=none -o weird_thing=1\n"),
        ]);
        let c = convert(&mut src, None, "/etc/postern");
        let about = |p: &str| c.findings.iter().find(|f| f.param == p).map(|f| f.kind);
        assert_eq!(about("frobnicate"), Some(Kind::Unsupported));
        assert_eq!(about("html_directory"), Some(Kind::Irrelevant));
        assert_eq!(about("smtpd_helo_restrictions"), Some(Kind::Unsupported));
        assert_eq!(about("weird_thing"), Some(Kind::Unsupported));
        // Built in only as Postfix's default: another value is reported.
        assert_eq!(
            about("unknown_local_recipient_reject_code"),
            Some(Kind::Unsupported)
        );
        // At its Postfix default: not reported.
        assert_eq!(about("mynetworks_style"), None);
        assert!(c.render(None).contains("mode = \"plain\""));
    }
}
