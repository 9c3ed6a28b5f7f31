//! Checks that span several keys (uid against minimum_uid, unique
//! listeners, RFC minimums, readable files), and the derived values
//! (hostname, local domains) filled in once the file is read.

use toml::de::{DeTable, DeValue};

use super::aliases::AliasMap;
use super::schema::Ctx;
use super::{is_domain, system_hostname, AuthBackend, Config, ListenerMode};

impl Config {
    /// Checks that span keys, and fills the derived values. `files`: also
    /// read and check the files the config names (aliases, certificate,
    /// database): what the server needs, not what a client command does.
    pub(super) fn check(&mut self, ctx: &mut Ctx<'_>, root: &DeTable<'_>, files: bool) {
        self.check_names(ctx, root);
        self.check_listeners(ctx, root);
        self.check_smtp_limits(ctx, root);
        self.check_delivery(ctx, root);
        self.data_dir = self.main.data_dir.clone();
        self.check_tls_auth(ctx, root);
        self.check_relay(ctx, root, files);
        self.check_hooks(ctx, root, files);
        if files {
            self.check_files(ctx, root);
        }
    }

    /// hostname, origin, local_domains, recipient_delimiter.
    fn check_names(&mut self, ctx: &mut Ctx<'_>, root: &DeTable<'_>) {
        let at = |path: &[&str]| key_offset(root, path);
        self.hostname = match &self.main.hostname {
            Some(h) => h.to_ascii_lowercase(),
            None => system_hostname(),
        };
        if !is_domain(&self.hostname) {
            ctx.error(
                at(&["hostname"]),
                "hostname",
                format!("\"{}\" is not a host name", self.hostname),
                "a domain name such as \"mail.example.test\"",
            );
        }
        if let Some(o) = &self.main.origin {
            if !is_domain(o) {
                ctx.error(
                    at(&["origin"]),
                    "origin",
                    format!("\"{o}\" is not a domain"),
                    "a domain name",
                );
            }
        }
        self.local_domains = match &self.main.local_domains {
            Some(list) => list.iter().map(|d| d.to_ascii_lowercase()).collect(),
            None => vec![self.hostname.clone(), "localhost".to_string()],
        };
        for d in &self.local_domains {
            if !is_domain(d) {
                ctx.error(
                    at(&["local_domains"]),
                    "local_domains",
                    format!("\"{d}\" is not a domain"),
                    "domain names",
                );
            }
        }
        if self
            .main
            .recipient_delimiter
            .chars()
            .any(|c| c.is_alphanumeric() || "@.\"\\ ".contains(c))
        {
            ctx.error(
                at(&["recipient_delimiter"]),
                "recipient_delimiter",
                format!(
                    "\"{}\" would split ordinary addresses",
                    self.main.recipient_delimiter
                ),
                "punctuation such as \"+\", \"-\", or \"\"",
            );
        }
    }

    /// At least one listener, each with an address, none twice.
    fn check_listeners(&self, ctx: &mut Ctx<'_>, root: &DeTable<'_>) {
        if self.listeners.is_empty() {
            ctx.error(
                0,
                "listener",
                "no [[listener]] table",
                "at least one [[listener]] with an address",
            );
        }
        let mut seen = Vec::new();
        for (i, l) in self.listeners.iter().enumerate() {
            match l.address {
                // Present but invalid: already reported by the reader.
                None if listener_has(root, i, "address") => {}
                None => ctx.error(
                    listener_offset(root, i),
                    &format!("listener[{}].address", i + 1),
                    "missing",
                    SocketAddrAllowed::TEXT,
                ),
                // Port 0: the kernel picks a free port for each; never a clash.
                Some(a) if a.port() != 0 && seen.contains(&a) => ctx.error(
                    listener_offset(root, i),
                    &format!("listener[{}].address", i + 1),
                    format!("{a} is already used by another listener"),
                    "one listener per address",
                ),
                Some(a) => seen.push(a),
            }
        }
    }

    /// The RFC minimums and the limits that may not be zero.
    fn check_smtp_limits(&self, ctx: &mut Ctx<'_>, root: &DeTable<'_>) {
        let s = &self.smtp;
        let checks: [(&str, &str, usize, usize, &str); 6] = [
            (
                "smtp",
                "command_line_limit",
                s.command_line_limit,
                512,
                "RFC 5321 4.5.3.1.4",
            ),
            (
                "smtp",
                "text_line_limit",
                s.text_line_limit,
                1000,
                "RFC 5321 4.5.3.1.6",
            ),
            (
                "smtp",
                "recipient_limit",
                s.recipient_limit,
                1,
                "one recipient",
            ),
            (
                "smtp",
                "hard_error_limit",
                s.hard_error_limit as usize,
                1,
                "one error",
            ),
            (
                "smtp",
                "max_connections",
                s.max_connections,
                1,
                "one connection",
            ),
            (
                "smtp",
                "max_connections_per_client",
                s.max_connections_per_client,
                1,
                "one connection",
            ),
        ];
        for (section, key, v, m, why) in checks {
            if v < m {
                ctx.error(
                    key_offset(root, &[section, key]),
                    &format!("{section}.{key}"),
                    format!("{v} is below {m}"),
                    format!("at least {m} ({why})"),
                );
            }
        }
        if self.smtp.threads > 64 {
            ctx.error(
                key_offset(root, &["smtp", "threads"]),
                "smtp.threads",
                format!("{} is out of range", self.smtp.threads),
                "0 (automatic) to 64",
            );
        }
        for (section, key, v, why) in [
            (
                "queue",
                "active_limit",
                self.queue.active_limit,
                "0 would deliver nothing",
            ),
            (
                "directory",
                "alias_depth_limit",
                self.directory.alias_depth_limit,
                "0 would stop every alias",
            ),
        ] {
            if v == 0 {
                ctx.error(
                    key_offset(root, &[section, key]),
                    &format!("{section}.{key}"),
                    why,
                    "1 or more",
                );
            }
        }
    }

    /// uid/gid together and above the minimum; concurrency in range.
    fn check_delivery(&self, ctx: &mut Ctx<'_>, root: &DeTable<'_>) {
        let at = |path: &[&str]| key_offset(root, path);
        let d = &self.delivery;
        match (d.uid, d.gid) {
            (Some(uid), Some(_)) if uid < d.minimum_uid => ctx.error(
                at(&["delivery", "uid"]),
                "delivery.uid",
                format!("{uid} is below delivery.minimum_uid = {}", d.minimum_uid),
                format!("a uid of at least {} (virtual_minimum_uid)", d.minimum_uid),
            ),
            // A key present but invalid was already reported by the reader.
            (Some(_), None) if has_key(root, &["delivery", "gid"]) => {}
            (None, Some(_)) if has_key(root, &["delivery", "uid"]) => {}
            (Some(_), None) => ctx.error(
                at(&["delivery", "uid"]),
                "delivery.gid",
                "missing: uid is set",
                "set uid and gid together",
            ),
            (None, Some(_)) => ctx.error(
                at(&["delivery", "gid"]),
                "delivery.uid",
                "missing: gid is set",
                "set uid and gid together",
            ),
            _ => {}
        }
        if d.concurrency == 0 || d.concurrency > 256 {
            ctx.error(
                at(&["delivery", "concurrency"]),
                "delivery.concurrency",
                format!("{} is out of range", d.concurrency),
                "1 to 256",
            );
        }
    }

    /// The files the server reads: data_dir, the aliases file (read here,
    /// so its errors come with the others), the certificate, the database.
    fn check_files(&mut self, ctx: &mut Ctx<'_>, root: &DeTable<'_>) {
        let at = |path: &[&str]| key_offset(root, path);
        if self.data_dir.exists() && !self.data_dir.is_dir() {
            ctx.error(
                at(&["data_dir"]),
                "data_dir",
                format!("{} exists and is not a directory", self.data_dir.display()),
                "a directory path",
            );
        }
        if let Some(p) = self.directory.aliases_file.clone() {
            let p = self.resolve(&p);
            match std::fs::metadata(&p) {
                Err(e) => ctx.error(
                    at(&["directory", "aliases_file"]),
                    "directory.aliases_file",
                    format!("cannot read {}: {e}", p.display()),
                    "a readable aliases(5) file",
                ),
                Ok(_) => match AliasMap::read(&p) {
                    Ok(map) => self.aliases = map,
                    Err(errs) => ctx.errors.extend(errs),
                },
            }
        }
        self.check_tls_files(ctx, root);
        let db = self.database_path();
        if db.exists() {
            if let Err(e) = std::fs::File::open(&db) {
                ctx.error(
                    at(&["directory", "database"]),
                    "directory.database",
                    format!("cannot read {}: {e}", db.display()),
                    "a readable SQLite file, or a path where one can be created",
                );
            }
        }
    }
}

struct SocketAddrAllowed;
impl SocketAddrAllowed {
    const TEXT: &'static str = "an address with port such as \"127.0.0.1:2525\"";
}

/// Byte offset of a key (or of its table) for cross-key error messages.
fn key_offset(root: &DeTable<'_>, path: &[&str]) -> usize {
    let mut table = root;
    let mut best = 0;
    for (i, k) in path.iter().enumerate() {
        let Some((key, v)) = table.get_key_value(*k) else {
            return best;
        };
        best = key.span().start;
        if i + 1 < path.len() {
            match v.get_ref() {
                DeValue::Table(t) => table = t,
                _ => return best,
            }
        }
    }
    best
}

impl Config {
    fn check_tls_auth(&self, ctx: &mut Ctx<'_>, root: &DeTable<'_>) {
        let at = |path: &[&str]| key_offset(root, path);
        match (&self.tls.cert_file, &self.tls.key_file) {
            (Some(_), None) => ctx.error(
                at(&["tls", "cert_file"]),
                "tls.key_file",
                "missing: cert_file is set",
                "set cert_file and key_file together",
            ),
            (None, Some(_)) => ctx.error(
                at(&["tls", "key_file"]),
                "tls.cert_file",
                "missing: key_file is set",
                "set cert_file and key_file together",
            ),
            _ => {}
        }
        if self.auth.backend == AuthBackend::Dovecot && self.auth.dovecot_socket.is_none() {
            ctx.error(
                at(&["auth", "backend"]),
                "auth.dovecot_socket",
                "missing: backend is \"dovecot\"",
                "the path of Dovecot's auth-client socket",
            );
        }
        for (i, l) in self.listeners.iter().enumerate() {
            if !l.require_auth {
                continue;
            }
            let key = format!("listener[{}].require_auth", i + 1);
            if self.auth.backend == AuthBackend::None {
                ctx.error(
                    listener_offset(root, i),
                    &key,
                    "no client could ever log in: auth.backend is \"none\"",
                    "false, or an auth backend",
                );
            } else if l.mode == ListenerMode::Plain && self.auth.tls_only {
                ctx.error(
                    listener_offset(root, i),
                    &key,
                    "no client could ever log in: a plain listener has no TLS and auth.tls_only is true",
                    "mode = \"starttls\" or \"implicit-tls\" on this listener",
                );
            }
        }
    }
}

impl Config {
    /// The certificate and key load, belong together, and are valid now.
    fn check_tls_files(&self, ctx: &mut Ctx<'_>, root: &DeTable<'_>) {
        let Some((cert, key)) = self.tls_files() else {
            return;
        };
        if let Err(problem) = crate::tls::load(&cert, &key, crate::clock::now_secs()) {
            let which = match problem.file {
                crate::tls::TlsFile::Key => "key_file",
                crate::tls::TlsFile::Cert => "cert_file",
            };
            ctx.error(
                key_offset(root, &["tls", which]),
                &format!("tls.{which}"),
                problem.text,
                "a PEM certificate chain (server certificate first) valid now, and its private key",
            );
        }
    }
}

fn has_key(root: &DeTable<'_>, path: &[&str]) -> bool {
    let mut table = root;
    for (i, k) in path.iter().enumerate() {
        let Some(v) = table.get(*k) else { return false };
        if i + 1 == path.len() {
            return true;
        }
        match v.get_ref() {
            DeValue::Table(t) => table = t,
            _ => return false,
        }
    }
    false
}

fn listener_has(root: &DeTable<'_>, i: usize, key: &str) -> bool {
    match root.get("listener").map(|v| v.get_ref()) {
        Some(DeValue::Array(a)) => a
            .get(i)
            .and_then(|v| v.get_ref().as_table())
            .is_some_and(|t| t.contains_key(key)),
        _ => false,
    }
}

fn listener_offset(root: &DeTable<'_>, i: usize) -> usize {
    match root.get("listener").map(|v| v.get_ref()) {
        Some(DeValue::Array(a)) => a.get(i).map(|v| v.span().start).unwrap_or(0),
        _ => 0,
    }
}
