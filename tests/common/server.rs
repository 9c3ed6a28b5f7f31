//! The postern server a test runs: a config built from the harness's
//! defaults and the test's changes, started, waited for, and killed when
//! the test ends (panics included).
//!
//! Ports: every listener the harness configures is `127.0.0.1:0`, so the
//! kernel picks a port no other test can be holding; postern writes the
//! bound addresses to `data_dir/listening` (one line per listener, in
//! config order: `<n> <configured> <bound> <mode>`) before it logs
//! `listening on`, and the harness reads them from there. A port picked
//! by the test, released and bound later by postern would race with the
//! other tests, which open thousands of connections meanwhile.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::*;

/// One line of `data_dir/listening`.
#[derive(Debug, Clone)]
pub struct Bound {
    pub configured: SocketAddr,
    pub addr: SocketAddr,
    pub mode: String,
}

/// Parses `data_dir/listening` (`<n> <configured> <bound> <mode>` per
/// line, n from 1 in config order).
pub fn read_listening(data: &Path) -> Vec<Bound> {
    let path = data.join("listening");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .enumerate()
        .map(|(i, l)| {
            let f: Vec<&str> = l.split(' ').collect();
            assert!(
                f.len() == 4 && f[0] == (i + 1).to_string(),
                "{}: line {} is not `<n> <configured> <bound> <mode>`: {l:?}",
                path.display(),
                i + 1
            );
            let parse = |s: &str| -> SocketAddr {
                s.parse()
                    .unwrap_or_else(|e| panic!("{}: {s:?}: {e}", path.display()))
            };
            Bound {
                configured: parse(f[1]),
                addr: parse(f[2]),
                mode: f[3].to_string(),
            }
        })
        .collect()
}

/// Waits until a starting `postern serve` logs its `count`-th `listening
/// on` line to `log` (earlier runs of the same server wrote the others),
/// then returns its listeners from `data/listening`, which postern
/// replaced before logging. Panics with the log if it exits or takes
/// longer than 20 s.
pub fn wait_listening(child: &mut Child, log: &Path, data: &Path, count: usize) -> Vec<Bound> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let read = || std::fs::read_to_string(log).unwrap_or_default();
    loop {
        if read().matches("listening on").count() >= count {
            return read_listening(data);
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("postern exited ({status}) at start:\n{}", read());
        }
        assert!(
            Instant::now() < deadline,
            "postern did not start:\n{}",
            read()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `postern serve` on a config a test wrote itself (use port 0 in it):
/// started, waited for, its bound addresses read; killed on drop.
pub struct Served {
    pub child: ChildGuard,
    pub log: PathBuf,
    pub listeners: Vec<Bound>,
}

impl Served {
    /// Runs `cmd` (a [`postern()`] command with its `serve` arguments),
    /// its stderr to `log`; `data` is the config's data_dir.
    pub fn start(mut cmd: Command, log: &Path, data: &Path) -> Served {
        let child = cmd
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .expect("start postern serve");
        let mut child = ChildGuard::new(child);
        let listeners = wait_listening(&mut child, log, data, 1);
        Served {
            child,
            log: log.to_path_buf(),
            listeners,
        }
    }

    /// The bound address of the first listener.
    pub fn addr(&self) -> SocketAddr {
        self.listeners[0].addr
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Builds a config and starts a server with it.
pub struct ServerBuilder {
    top: Vec<String>,
    sections: BTreeMap<String, Vec<String>>,
    fixture: bool,
    aliases: Option<String>,
    /// Listeners after the harness's own: (mode, extra lines).
    listeners: Vec<(String, String)>,
    env: Vec<(String, String)>,
    pre_exec_ulimit_fsize: Option<u64>,
    /// Text appended at the very end of the config ([[transport]] tables).
    raw: String,
    /// SQL run on the directory after the fixture, before the start.
    sql: Vec<String>,
}

impl ServerBuilder {
    /// A top-level `key = value` line (replaces the default for that key).
    pub fn top(mut self, line: &str) -> Self {
        let key = line.split('=').next().unwrap().trim().to_string();
        self.top
            .retain(|l| l.split('=').next().unwrap().trim() != key);
        self.top.push(line.to_string());
        self
    }
    /// A `key = value` line in `[section]` (replaces an earlier one for that key).
    pub fn set(mut self, section: &str, line: &str) -> Self {
        let key = line.split('=').next().unwrap().trim().to_string();
        let lines = self.sections.entry(section.to_string()).or_default();
        lines.retain(|l| l.split('=').next().unwrap().trim() != key);
        lines.push(line.to_string());
        self
    }
    /// Another listener on `127.0.0.1:0` with `mode` and `extra` lines
    /// (`require_auth = true`...). The harness's own listener is number 1;
    /// the first one added here is 2, and so on ([`Server::listener_addr`]).
    pub fn listener(mut self, mode: &str, extra: &str) -> Self {
        self.listeners.push((mode.to_string(), extra.to_string()));
        self
    }
    /// TOML text appended at the very end of the config, after every
    /// section: for arrays of tables such as `[[transport]]`, which the
    /// `[section]` lines of [`ServerBuilder::set`] cannot express.
    pub fn raw(mut self, text: &str) -> Self {
        self.raw.push('\n');
        self.raw.push_str(text);
        if !text.ends_with('\n') {
            self.raw.push('\n');
        }
        self
    }
    /// SQL run on the directory database after the fixture is loaded and
    /// before postern starts, e.g. `UPDATE domain SET transport = ...`.
    pub fn sql(mut self, statement: &str) -> Self {
        self.sql.push(statement.to_string());
        self
    }
    /// Load the PostfixAdmin fixture into the directory (default: yes).
    pub fn fixture(mut self, yes: bool) -> Self {
        self.fixture = yes;
        self
    }
    /// Contents of an aliases(5) file for the local domains.
    pub fn aliases(mut self, text: &str) -> Self {
        self.aliases = Some(text.to_string());
        self
    }
    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.push((k.into(), v.into()));
        self
    }
    /// Runs postern under `ulimit -f` (blocks of 1024 bytes): writes past
    /// it fail with EFBIG, the way a full disk makes writes fail.
    pub fn file_size_limit(mut self, blocks: u64) -> Self {
        self.pre_exec_ulimit_fsize = Some(blocks);
        self
    }

    /// How many listeners the config has.
    pub fn listener_count(&self) -> usize {
        1 + self.listeners.len()
    }

    /// The config file's text. Every listener is on `127.0.0.1:0`: the
    /// harness's own (default mode) first, then those added with
    /// [`ServerBuilder::listener`].
    pub fn config_text(&self, data: &Path, aliases: Option<&Path>) -> String {
        let mut s = format!("data_dir = \"{}\"\n", data.display());
        for l in &self.top {
            s.push_str(l);
            s.push('\n');
        }
        s.push_str("\n[[listener]]\naddress = \"127.0.0.1:0\"\n");
        for (mode, extra) in &self.listeners {
            s.push_str(&format!(
                "\n[[listener]]\naddress = \"127.0.0.1:0\"\nmode = \"{mode}\"\n{extra}"
            ));
            if !extra.is_empty() && !extra.ends_with('\n') {
                s.push('\n');
            }
        }
        let mut sections = self.sections.clone();
        if let Some(a) = aliases {
            sections
                .entry("directory".into())
                .or_default()
                .push(format!("aliases_file = \"{}\"", a.display()));
        }
        for (name, lines) in &sections {
            s.push_str(&format!("\n[{name}]\n"));
            for l in lines {
                s.push_str(l);
                s.push('\n');
            }
        }
        s.push_str(&self.raw);
        s
    }

    pub fn start(self) -> Server {
        let dir = TestDir::new("srv");
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        if self.fixture {
            load_fixture(&data.join("directory.sqlite"));
        }
        if !self.sql.is_empty() {
            let conn = rusqlite::Connection::open(data.join("directory.sqlite")).unwrap();
            for stmt in &self.sql {
                conn.execute_batch(stmt)
                    .unwrap_or_else(|e| panic!("{stmt}: {e}"));
            }
        }
        let aliases = self.aliases.as_ref().map(|text| {
            let p = dir.path().join("aliases");
            std::fs::write(&p, text).unwrap();
            p
        });
        let config = dir.path().join("postern.toml");
        std::fs::write(&config, self.config_text(&data, aliases.as_deref())).unwrap();
        let mut srv = Server {
            dir,
            data,
            config,
            port: 0,
            listeners: Vec::new(),
            expected_listeners: self.listener_count(),
            child: None,
            log_path: PathBuf::new(),
            env: self.env,
            fsize: self.pre_exec_ulimit_fsize,
            runs: 0,
        };
        srv.launch();
        srv
    }
}

pub struct Server {
    pub dir: TestDir,
    pub data: PathBuf,
    pub config: PathBuf,
    /// The port of listener 1 (the harness's own) in the current run.
    pub port: u16,
    /// Every listener's bound address in the current run, in config order.
    pub listeners: Vec<Bound>,
    expected_listeners: usize,
    child: Option<ChildGuard>,
    /// stderr of the current run.
    pub log_path: PathBuf,
    env: Vec<(String, String)>,
    fsize: Option<u64>,
    runs: usize,
}

impl Server {
    /// Defaults: host mx.example.test, only 127.0.0.1 trusted (so a client
    /// bound to 127.0.0.2 is untrusted), no error tarpit, fixture loaded.
    pub fn builder() -> ServerBuilder {
        ServerBuilder {
            top: vec![
                "hostname = \"mx.example.test\"".into(),
                "trusted_networks = [\"127.0.0.1/32\"]".into(),
                "local_domains = [\"mx.example.test\", \"localhost\"]".into(),
            ],
            sections: BTreeMap::from([
                ("smtp".to_string(), vec!["error_delay = \"0s\"".to_string()]),
                // Never the machine's resolver: a closed loopback port, so
                // mail for other domains defers at once (DNS failure)
                // unless a test points this at its own dnsmasq.
                (
                    "relay".to_string(),
                    vec!["dns_servers = [\"127.0.0.1:1\"]".to_string()],
                ),
            ]),
            fixture: true,
            aliases: None,
            listeners: Vec::new(),
            env: Vec::new(),
            pre_exec_ulimit_fsize: None,
            raw: String::new(),
            sql: Vec::new(),
        }
    }

    pub fn start() -> Server {
        Server::builder().start()
    }

    /// Starts a run and waits until it listens. Each run binds new ports
    /// (port 0): after a restart, ask [`Server::addr`] again.
    fn launch(&mut self) {
        self.runs += 1;
        self.log_path = self.dir.path().join(format!("server-{}.log", self.runs));
        let log = std::fs::File::create(&self.log_path).unwrap();
        let mut cmd = match self.fsize {
            Some(blocks) => {
                let mut c = peer("sh");
                c.arg("-c")
                    .arg(format!("ulimit -f {blocks} && exec \"$0\" \"$@\""))
                    .arg(BIN);
                c
            }
            None => postern(),
        };
        cmd.arg("serve")
            .arg("--config")
            .arg(&self.config)
            .stdout(Stdio::null())
            .stderr(log);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("start postern");
        let mut child = ChildGuard::new(child);
        // Only this run's log: earlier runs also said "listening on", and
        // left a `listening` file behind if they were killed.
        let listeners = wait_listening(&mut child, &self.log_path, &self.data, 1);
        assert_eq!(
            listeners.len(),
            self.expected_listeners,
            "{}: one line per listener",
            self.data.join("listening").display()
        );
        self.port = listeners[0].addr.port();
        self.listeners = listeners;
        self.child = Some(child);
    }

    /// The bound address of the harness's own listener (number 1).
    pub fn addr(&self) -> SocketAddr {
        self.listener_addr(1)
    }

    /// The bound address of listener `n` (from 1, in config order: the
    /// harness's own, then those added with [`ServerBuilder::listener`]).
    pub fn listener_addr(&self, n: usize) -> SocketAddr {
        assert!(
            n >= 1 && n <= self.listeners.len(),
            "no listener {n}: {:?}",
            self.listeners
        );
        self.listeners[n - 1].addr
    }

    /// The port of listener `n`.
    pub fn listener_port(&self, n: usize) -> u16 {
        self.listener_addr(n).port()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Everything logged by every run so far.
    pub fn log(&self) -> String {
        let mut all = String::new();
        for i in 1..=self.runs {
            all.push_str(
                &std::fs::read_to_string(self.dir.path().join(format!("server-{i}.log")))
                    .unwrap_or_default(),
            );
        }
        all
    }

    /// Waits until the log contains `needle` `count` times.
    pub fn wait_log_count(&self, needle: &str, count: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.log().matches(needle).count() >= count {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    pub fn wait_log(&self, needle: &str, timeout: Duration) -> bool {
        self.wait_log_count(needle, 1, timeout)
    }

    /// Graceful stop (SIGTERM), waiting for exit.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let c = self.child.take().expect("running");
        signal(c.id(), nix::sys::signal::Signal::SIGTERM).expect("SIGTERM to postern");
        let mut c = c.into_inner();
        wait_timeout(&mut c, Duration::from_secs(20))
    }

    /// SIGKILL: the crash case.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill();
        }
    }

    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "stop or kill first");
        self.launch();
    }

    /// The Maildir of a virtual mailbox, e.g. `example.test/alice/`.
    pub fn mailbox(&self, maildir: &str) -> PathBuf {
        self.data.join("mail").join(maildir)
    }

    /// The Maildir of a local user.
    pub fn local_mailbox(&self, user: &str) -> PathBuf {
        self.data.join("local").join(user)
    }

    pub fn queue_dir(&self) -> PathBuf {
        self.data.join("queue")
    }

    pub fn smtp(&self) -> Smtp {
        Smtp::connect(self.addr())
    }

    /// A raw client from 127.0.0.2, outside the default trusted network.
    pub fn smtp_untrusted(&self) -> Smtp {
        Smtp::connect_from("127.0.0.2", self.addr())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // A server that died under a test makes its clients fail with
        // "connection refused": say so, with how it ended and its log.
        if let Some(c) = self.child.as_mut() {
            if let Ok(Some(status)) = c.child().try_wait() {
                eprintln!(
                    "postern (pid {}) ended during the test by itself: {status}; its log:\n{}",
                    c.id(),
                    self.log()
                );
            }
        }
        // Before the fields go: `dir` would be removed under a live server.
        self.kill9();
    }
}

/// Waits for `c` to exit; past `t` it is killed and the test fails.
pub fn wait_timeout(c: &mut Child, t: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + t;
    loop {
        if let Some(s) = c.try_wait().unwrap() {
            return s;
        }
        if Instant::now() > deadline {
            let _ = c.kill();
            let _ = c.wait();
            panic!("process did not exit within {t:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
