//! A throwaway MariaDB server for the `postern sync` tests, from Debian's
//! `mariadb-server` (../shared/PEERS.md): its own datadir, Unix socket and
//! TCP port (a free high loopback port, picked and retried on a clash),
//! never the system service, `--no-defaults` always so no my.cnf counts.
//!
//! mariadbd refuses to run as root: as root it runs as `mysql` (the
//! switch is made before exec, so the parent-death signal set after it
//! survives). [`MariaDb::shared`] is one instance for all the tests of a
//! file, each using a database of its own; it dies with the test process
//! (SIGKILL on the death of the thread that started it, which lives as
//! long as the process) and the next run removes its directory.
//! [`MariaDb::start`] is an instance of the test's own, killed and removed
//! when dropped, panics included.
//!
//! Declared with `#[path = "common/mariadb.rs"] mod mariadb;`.
#![allow(dead_code)]

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use nix::libc;

use crate::common::{require, reset_in_child, ChildGuard, FIXTURE_SQL};

/// The account postern syncs with (SELECT on every database).
pub const USER: &str = "postern-sync";
pub const PASSWORD: &str = "sync-test-pass";

pub struct MariaDb {
    pub dir: PathBuf,
    pub socket: PathBuf,
    pub port: u16,
    pid: u32,
    /// An instance of one test: killed when dropped.
    own: Option<ChildGuard>,
}

/// Where instance directories go, named `postern-mariadb-<pid>-<n>`.
fn root() -> PathBuf {
    PathBuf::from("/tmp")
}

impl MariaDb {
    /// The instance shared by the tests of this process.
    pub fn shared() -> &'static MariaDb {
        static SHARED: OnceLock<MariaDb> = OnceLock::new();
        SHARED.get_or_init(|| {
            sweep_stale();
            let (tx, rx) = std::sync::mpsc::channel();
            // The parent-death signal fires when the thread that forked
            // the child ends: this one ends only with the process.
            std::thread::spawn(move || {
                let (db, child) = MariaDb::launch("shared");
                let _ = tx.send(db);
                let mut child = child;
                let _ = child.wait();
                loop {
                    std::thread::park();
                }
            });
            rx.recv().expect("the shared MariaDB started")
        })
    }

    /// An instance of the caller's own (to stop or kill), removed on drop.
    pub fn start() -> MariaDb {
        sweep_stale();
        let (mut db, child) = MariaDb::launch("own");
        db.own = Some(ChildGuard::new(child));
        db
    }

    fn launch(tag: &str) -> (MariaDb, Child) {
        let install = require("mariadb-install-db");
        let server = require("mariadbd");
        require("mariadb");
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir = root().join(format!("postern-mariadb-{}-{n}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let owner = owner();
        if let Some((uid, gid)) = owner {
            nix::unistd::chown(&dir, Some(uid.into()), Some(gid.into())).unwrap();
        }
        let data = dir.join("data");
        let log = dir.join("install.log");
        let mut cmd = Command::new(&install);
        cmd.args(["--no-defaults", "--auth-root-authentication-method=normal"])
            .args([
                "--skip-test-db",
                "--skip-name-resolve",
                "--innodb-log-file-size=8M",
            ])
            .arg(format!("--datadir={}", data.display()));
        as_owner(&mut cmd, owner);
        let st = cmd
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(dir.join("install.err")).unwrap())
            .status()
            .unwrap();
        assert!(
            st.success(),
            "mariadb-install-db failed:\n{}",
            std::fs::read_to_string(dir.join("install.err")).unwrap_or_default()
        );
        let socket = dir.join("s.sock");
        let tls = tls_files(&dir, owner);
        let mut last = String::new();
        for attempt in 0..10 {
            let port = free_port();
            let err = dir.join(format!("mariadbd-{attempt}.log"));
            let mut cmd = Command::new(&server);
            cmd.args(["--no-defaults", "--skip-name-resolve", "--skip-log-bin"])
                .args(["--bind-address=127.0.0.1", "--innodb-buffer-pool-size=32M"])
                .args(["--innodb-log-file-size=8M", "--max-allowed-packet=64M"])
                .arg(format!("--datadir={}", data.display()))
                .arg(format!("--socket={}", socket.display()))
                .arg(format!("--port={port}"))
                .arg(format!("--pid-file={}", dir.join("mariadbd.pid").display()))
                .args(&tls);
            as_owner(&mut cmd, owner);
            let mut child = cmd
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&err).unwrap())
                .spawn()
                .unwrap();
            if wait_ready(&mut child, &socket) {
                let db = MariaDb {
                    pid: child.id(),
                    dir,
                    socket,
                    port,
                    own: None,
                };
                db.sql(
                    None,
                    &format!(
                        "CREATE USER '{USER}'@'localhost' IDENTIFIED BY '{PASSWORD}';
                         CREATE USER '{USER}'@'127.0.0.1' IDENTIFIED BY '{PASSWORD}';
                         GRANT SELECT ON *.* TO '{USER}'@'localhost';
                         GRANT SELECT ON *.* TO '{USER}'@'127.0.0.1';"
                    ),
                );
                return (db, child);
            }
            let _ = child.kill();
            let _ = child.wait();
            last = std::fs::read_to_string(&err).unwrap_or_default();
            if !last.contains("in use") {
                break;
            }
        }
        panic!("mariadbd did not start:\n{last}");
    }

    /// Runs SQL as root (from stdin, so statements may be large); returns
    /// the tab-separated rows. Panics with the client's error.
    pub fn sql(&self, database: Option<&str>, sql: &str) -> String {
        let mut cmd = Command::new(require("mariadb"));
        cmd.args(["--no-defaults", "--batch", "--skip-column-names", "-uroot"])
            .arg(format!("--socket={}", self.socket.display()));
        if let Some(d) = database {
            cmd.arg(d);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut input = child.stdin.take().unwrap();
        let text = sql.to_string();
        let writer = std::thread::spawn(move || {
            let _ = input.write_all(text.as_bytes());
        });
        let out = child.wait_with_output().unwrap();
        let _ = writer.join();
        assert!(
            out.status.success(),
            "mariadb failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            &sql[..sql.len().min(2000)]
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A new database `name` with PostfixAdmin's tables and the fixture's
    /// rows (../shared/fixtures/postfixadmin-mysql.sql).
    pub fn source(&self, name: &str) {
        self.sql(None, &format!("CREATE DATABASE `{name}`;"));
        self.sql(Some(name), FIXTURE_SQL);
    }

    /// A `mariadb` client that stays connected, reading statements from
    /// stdin: for locks held across a test step. Killed on drop.
    pub fn session(&self, database: &str) -> (ChildGuard, std::process::ChildStdin) {
        let mut child = Command::new(require("mariadb"))
            .args(["--no-defaults", "--batch", "-uroot", "--unbuffered"])
            .arg(format!("--socket={}", self.socket.display()))
            .arg(database)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        (ChildGuard::new(child), stdin)
    }

    /// `[sync.mysql]` lines for this instance: by the socket
    /// (`host = "localhost"`) or by TCP to 127.0.0.1.
    pub fn config(&self, database: &str, password_file: &Path, tcp: bool) -> String {
        let how = if tcp {
            format!("host = \"127.0.0.1\"\nport = {}\n", self.port)
        } else {
            format!(
                "host = \"localhost\"\nsocket = \"{}\"\n",
                self.socket.display()
            )
        };
        format!(
            "{how}user = \"{USER}\"\npassword_file = \"{}\"\ndatabase = \"{database}\"\n",
            password_file.display()
        )
    }

    /// Kills the server at once (SIGKILL), as a crash or a pulled cable
    /// would end it. Only for an instance of the test's own.
    pub fn kill(&mut self) {
        let own = self
            .own
            .as_mut()
            .expect("kill only an instance of your own");
        own.kill();
    }
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        if let Some(mut own) = self.own.take() {
            own.kill();
            if std::env::var_os("POSTERN_KEEP_TEST_DIRS").is_none() {
                let _ = std::fs::remove_dir_all(&self.dir);
            }
        }
    }
}

/// The server's TLS: a CA (`dir/ca.pem`, what `ca_file` names) and a
/// certificate for 127.0.0.1 signed by it; returns mariadbd's options.
fn tls_files(dir: &Path, owner: Option<(u32, u32)>) -> Vec<String> {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair, SanType};
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "postern sync test CA");
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::new(Vec::<String>::new()).unwrap();
    leaf.subject_alt_names = vec![SanType::IpAddress("127.0.0.1".parse().unwrap())];
    let leaf = leaf.signed_by(&key, &ca).unwrap();
    let files = [
        ("ca.pem", ca.pem()),
        ("server-cert.pem", leaf.pem()),
        ("server-key.pem", key.serialize_pem()),
    ];
    for (name, pem) in &files {
        let p = dir.join(name);
        std::fs::write(&p, pem).unwrap();
        if let Some((uid, gid)) = owner {
            nix::unistd::chown(&p, Some(uid.into()), Some(gid.into())).unwrap();
        }
    }
    let p = |f: &str| dir.join(f).display().to_string();
    vec![
        format!("--ssl-ca={}", p("ca.pem")),
        format!("--ssl-cert={}", p("server-cert.pem")),
        format!("--ssl-key={}", p("server-key.pem")),
    ]
}

/// A password file (mode 0600) for [`USER`] in `dir`.
pub fn password_file(dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join("mysql-password");
    std::fs::write(&p, format!("{PASSWORD}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    p
}

/// uid and gid of `mysql` when we are root (mariadbd refuses root).
fn owner() -> Option<(u32, u32)> {
    if !nix::unistd::geteuid().is_root() {
        return None;
    }
    let u = nix::unistd::User::from_name("mysql")
        .ok()
        .flatten()
        .expect("user mysql (made by the mariadb-server package)");
    Some((u.uid.as_raw(), u.gid.as_raw()))
}

/// Runs `cmd` as `owner` (when root), in the harness's known child state,
/// and with SIGKILL when its parent thread dies.
fn as_owner(cmd: &mut Command, owner: Option<(u32, u32)>) {
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            reset_in_child()?;
            if let Some((uid, gid)) = owner {
                if libc::setgroups(0, std::ptr::null()) != 0
                    || libc::setgid(gid) != 0
                    || libc::setuid(uid) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
            }
            // After the uid change, which clears it.
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// True once the server answers on its socket; false if it exited.
fn wait_ready(child: &mut Child, socket: &Path) -> bool {
    let admin = require("mariadb-admin");
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        if socket.exists() {
            let ok = Command::new(&admin)
                .args(["--no-defaults", "-uroot", "ping"])
                .arg(format!("--socket={}", socket.display()))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                return true;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// Removes the directories of instances whose test process is gone.
fn sweep_stale() {
    let Ok(rd) = std::fs::read_dir(root()) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix("postern-mariadb-") else {
            continue;
        };
        let pid = rest.split('-').next().unwrap_or("");
        if !pid.is_empty() && !Path::new("/proc").join(pid).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}
