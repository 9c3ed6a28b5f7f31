//! `--root DIR`: a configuration read as if DIR were `/`, for a tree that
//! is an appliance image being built or tested (scripts/install-rootfs,
//! `postern serve --root`, later `postern convert --root`).
//!
//! Every path in the configuration that names a file or directory postern
//! reads or writes is taken under DIR: `/var/lib/postern` becomes
//! `DIR/var/lib/postern`, and a relative `data_dir` is taken from DIR (the
//! directory a service starts in is `/`). Other relative paths follow
//! `data_dir` as always. Not moved: the commands of pipe transports and
//! `mailbox_command` (programs the system runs, not postern's files), and
//! paths built into postern rather than written in the file (the system's
//! CA bundle, /etc/resolv.conf, /etc/hosts).

use std::path::{Path, PathBuf};

use super::Config;

/// `p` as seen from `root`: absolute paths under it, relative ones as they are.
fn under(root: &Path, p: &Path) -> PathBuf {
    match p.strip_prefix("/") {
        Ok(rest) => root.join(rest),
        Err(_) => p.to_path_buf(),
    }
}

/// The same for the string-valued path keys, where "" means "none".
fn under_str(root: &Path, s: &mut String) {
    if s.starts_with('/') {
        *s = under(root, Path::new(s.as_str()))
            .to_string_lossy()
            .into_owned();
    }
}

impl Config {
    /// Takes every file path of the configuration under `root` (made
    /// absolute against the current directory first). Call it once, on a
    /// configuration as read from its file: a second call would move the
    /// paths again. The loaders with a root (`load_file_under`...) call it
    /// before the files the configuration names are read and checked.
    pub fn reroot(&mut self, root: &Path) {
        let root = std::path::absolute(root).unwrap_or_else(|_| root.to_path_buf());
        let r = root.as_path();
        let m = &mut self.main;
        m.data_dir = if m.data_dir.is_absolute() {
            under(r, &m.data_dir)
        } else {
            r.join(&m.data_dir)
        };
        self.data_dir = self.main.data_dir.clone();

        let d = &mut self.directory;
        d.database = under(r, &d.database);
        if let Some(a) = &mut d.aliases_file {
            *a = under(r, a);
        }
        let dl = &mut self.delivery;
        dl.mailbox_base = under(r, &dl.mailbox_base);
        dl.local_mailbox_base = under(r, &dl.local_mailbox_base);
        self.queue.directory = under(r, &self.queue.directory);

        let c = &mut self.control;
        c.socket = under(r, &c.socket);
        c.submit_socket = under(r, &c.submit_socket);
        c.maildrop = under(r, &c.maildrop);

        let t = &mut self.tls;
        for p in [
            &mut t.cert_file,
            &mut t.key_file,
            &mut self.auth.dovecot_socket,
        ]
        .into_iter()
        .flatten()
        {
            *p = under(r, p);
        }

        let ct = &mut self.content;
        for s in [
            &mut ct.header_checks,
            &mut ct.body_checks,
            &mut ct.mime_header_checks,
        ] {
            under_str(r, s);
        }
        under_str(r, &mut self.quota.limits_file);
        under_str(r, &mut self.relay.credentials_file);
        under_str(r, &mut self.relay.ca_file);

        if let Some(my) = &mut self.sync.mysql {
            my.socket = under(r, &my.socket);
            under_str(r, &mut my.password_file);
            under_str(r, &mut my.ca_file);
        }
        self.root = Some(root);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_paths_go_under_the_root_relative_ones_stay() {
        let r = Path::new("/img");
        assert_eq!(
            under(r, Path::new("/var/lib/postern")),
            Path::new("/img/var/lib/postern")
        );
        assert_eq!(under(r, Path::new("queue")), Path::new("queue"));
        let mut s = String::new();
        under_str(r, &mut s);
        assert_eq!(s, "", "\"\" means none and stays none");
    }

    /// Every absolute path of the annotated example (which sets every
    /// key) is moved: a path key added later without a line in `reroot`
    /// fails here.
    #[test]
    fn every_path_key_of_the_example_is_moved() {
        let text = crate::config::example::render();
        let mut cfg = Config::parse_client("example", &text).expect("example parses");
        cfg.reroot(Path::new("/ROOT"));
        let shown = format!("{cfg:?}");
        let mut checked = 0;
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let Some((key, value)) = line.split_once(" = \"") else {
                continue;
            };
            let value = value.trim_end_matches('"');
            // Rules text, not a path.
            if !value.starts_with('/') || key == "header_rules" {
                continue;
            }
            checked += 1;
            assert!(
                shown.contains(&format!("\"/ROOT{value}\"")),
                "{key} = {value:?} is not taken under the root: add it to Config::reroot"
            );
        }
        assert!(
            checked >= 15,
            "only {checked} path keys found in the example"
        );
        assert_eq!(cfg.data_dir(), Path::new("/ROOT/var/lib/postern"));
        assert_eq!(cfg.queue_dir(), Path::new("/ROOT/var/spool/postern"));
        assert_eq!(cfg.root(), Some(Path::new("/ROOT")));
        // Programs are not postern's files.
        assert_eq!(cfg.transports[0].command[0], "/usr/bin/procmail");
    }

    #[test]
    fn a_relative_data_dir_is_taken_from_the_root() {
        let mut cfg = Config::parse_client(
            "t",
            "data_dir = \"data\"\n[[listener]]\naddress = \"127.0.0.1:0\"\n",
        )
        .unwrap();
        cfg.reroot(Path::new("/img"));
        assert_eq!(cfg.data_dir(), Path::new("/img/data"));
        assert_eq!(cfg.queue_dir(), Path::new("/img/data/queue"));
    }
}
