//! Running as a service (issue 11, parts 2, 3 and 6): SIGHUP reloads with
//! a good and a bad configuration (and one that removes a listener in
//! use), SIGTERM during a delivery, systemd's notify protocol and
//! watchdog on a NOTIFY_SOCKET the test listens on, `postern status`, and
//! dropping root after binding.

mod common;
#[path = "common/hooks.rs"]
mod hooks;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use hooks::*;

const WAIT: Duration = Duration::from_secs(20);

/// Replaces the config file the way an editor's save does (a new file
/// renamed over the old one).
fn rewrite_config(srv: &Server, text: &str) {
    let tmp = srv.config.with_extension("new");
    std::fs::write(&tmp, text).unwrap();
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::rename(&tmp, &srv.config).unwrap();
}

fn sighup(srv: &Server) {
    signal(srv.pid(), nix::sys::signal::Signal::SIGHUP).unwrap();
}

fn greeting(addr: std::net::SocketAddr) -> String {
    let mut c = Smtp::connect(addr);
    let g = c.reply();
    c.expect("QUIT", "221");
    g.first
}

#[test]
fn a_good_reload_takes_effect_and_sessions_on_a_removed_listener_finish() {
    let srv = Server::builder().listener("plain", "").start();
    let second = srv.listener_addr(2);
    assert!(greeting(srv.addr()).contains("mx.example.test"));

    // A client in the middle of a transaction on the listener about to go.
    let mut open = Smtp::connect(second);
    open.hello();
    open.expect("MAIL FROM:<sender@client.test>", "250");
    open.expect("RCPT TO:<alice@example.test>", "250");

    // New host name; the second listener removed.
    let text = std::fs::read_to_string(&srv.config).unwrap();
    let first_listener = text.find("[[listener]]").unwrap();
    let second_listener =
        first_listener + 1 + text[first_listener + 1..].find("[[listener]]").unwrap();
    let end = second_listener
        + text[second_listener..]
            .find("\n[")
            .unwrap_or(text.len() - second_listener);
    let mut new = format!("{}{}", &text[..second_listener], &text[end..]);
    new = new.replace(
        "hostname = \"mx.example.test\"",
        "hostname = \"mx2.example.test\"",
    );
    assert!(
        new.contains("mx2.example.test") && new.matches("[[listener]]").count() == 1,
        "{new}"
    );
    rewrite_config(&srv, &new);
    sighup(&srv);
    assert!(srv.wait_log("reloaded ", WAIT), "{}", srv.log());

    assert!(
        greeting(srv.addr()).contains("mx2.example.test"),
        "new sessions get the new host name:\n{}",
        srv.log()
    );
    let listening = std::fs::read_to_string(srv.data.join("listening")).unwrap();
    assert_eq!(
        listening.lines().count(),
        1,
        "data_dir/listening rewritten: {listening}"
    );
    assert!(
        std::net::TcpStream::connect(second).is_err(),
        "the removed listener no longer accepts"
    );

    // The session that was open goes on to the end.
    open.expect("DATA", "354");
    open.send(b"Subject: across a reload\r\n\r\nstill here\r\n.\r\n");
    let r = open.reply();
    assert_eq!(r.code, 250, "{r:?}\n{}", srv.log());
    open.expect("QUIT", "221");
    let msg = wait_message(&srv, &srv.mailbox("example.test/alice"), "across a reload");
    assert!(msg.contains("still here"), "{msg}");
}

#[test]
fn a_bad_reload_is_refused_with_the_reason_and_the_old_config_serves_on() {
    let srv = Server::start();
    let good = std::fs::read_to_string(&srv.config).unwrap();
    rewrite_config(
        &srv,
        &format!(
            "{}\n[smtp]\nmesage_size_limit = \"1M\"\n",
            good.replace(
                "hostname = \"mx.example.test\"",
                "hostname = \"other.example.test\""
            )
        ),
    );
    sighup(&srv);
    assert!(srv.wait_log("reload refused", WAIT), "{}", srv.log());
    let log = srv.log();
    let file = srv.config.display().to_string();
    assert!(
        log.lines().any(|l| l.contains(&file)
            && l.contains("mesage_size_limit")
            && l.contains("unknown key")),
        "the journal names the file, line and key:\n{log}"
    );
    assert!(
        greeting(srv.addr()).contains("mx.example.test"),
        "the old configuration serves on"
    );
    let id = send(
        &srv,
        "sender@client.test",
        &["alice@example.test"],
        &mail("alice@example.test", "after a bad reload", "", "ok"),
    );
    wait_status(&srv, &id, "alice@example.test", "sent");

    // A new listener that cannot be bound refuses the whole reload too.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = taken.local_addr().unwrap();
    rewrite_config(
        &srv,
        &format!("{good}\n[[listener]]\naddress = \"{busy}\"\n"),
    );
    sighup(&srv);
    assert!(
        srv.wait_log_count("reload refused", 2, WAIT),
        "{}",
        srv.log()
    );
    assert!(
        srv.log().contains(&format!("cannot listen on {busy}")),
        "{}",
        srv.log()
    );
    let listening = std::fs::read_to_string(srv.data.join("listening")).unwrap();
    assert_eq!(listening.lines().count(), 1, "{listening}");
}

/// A delivery in progress when SIGTERM comes: the server stops accepting,
/// lets the delivery finish, stops cleanly; after a restart the message
/// is not delivered again.
#[test]
fn sigterm_during_a_delivery_delivers_the_message_once() {
    if !root_or_skip("sigterm_during_a_delivery_delivers_the_message_once") {
        return;
    }
    let t = TestDir::new("svc-sigterm");
    let out = open_dir(&t.path().join("out"));
    let slow = script(
        t.path(),
        "slow.sh",
        &format!(
            "#!/bin/sh\n: > {out}/started\nsleep 2\ncat >> {out}/delivered\necho '--end--' >> {out}/delivered\n",
            out = out.display()
        ),
    );
    let mut srv = Server::builder()
        .set("delivery", "virtual_transport = \"slow\"")
        .sql("UPDATE domain SET transport = '' WHERE domain = 'example.test'")
        .raw(&transport(
            "slow",
            &[&slow.display().to_string()],
            "nobody",
            "",
            "",
        ))
        .start();
    let id = send(
        &srv,
        "sender@client.test",
        &["alice@example.test"],
        &mail("alice@example.test", "slow one", "", "body"),
    );
    assert!(
        wait_until(WAIT, || out.join("started").exists()),
        "the command started:\n{}",
        srv.log()
    );
    let status = srv.stop();
    assert!(status.success(), "{status}\n{}", srv.log());
    let log = std::fs::read_to_string(&srv.log_path).unwrap();
    assert!(log.contains("SIGTERM: stopping"), "{log}");
    let copies = || {
        std::fs::read_to_string(out.join("delivered"))
            .unwrap_or_default()
            .matches("--end--")
            .count()
    };
    assert_eq!(copies(), 1, "delivered during the stop:\n{log}");
    assert!(
        log.contains(&format!("{id}: to=<alice@example.test>")) && log.contains("status=sent"),
        "{log}"
    );

    srv.restart();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        copies(),
        1,
        "not delivered again after the restart:\n{}",
        srv.log()
    );
    assert!(!is_queued(&srv, &id), "nothing left in the queue");
}

/// systemd's side: READY=1, WATCHDOG=1 every half WATCHDOG_USEC with a
/// STATUS= line, RELOADING=1 + MONOTONIC_USEC and READY=1 around SIGHUP,
/// STOPPING=1 at SIGTERM.
#[test]
fn notify_socket_gets_ready_watchdog_status_reload_and_stopping() {
    let t = TestDir::new("svc-notify");
    let sock_path = t.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let usec = 600_000u64;
    let mut srv = Server::builder()
        .env("NOTIFY_SOCKET", &sock_path.display().to_string())
        .env("WATCHDOG_USEC", &usec.to_string())
        .start();
    let mut got: Vec<(Instant, String)> = Vec::new();
    let read_for = |d: Duration, got: &mut Vec<(Instant, String)>| {
        let end = Instant::now() + d;
        let mut buf = [0u8; 4096];
        while Instant::now() < end {
            if let Ok(n) = sock.recv(&mut buf) {
                got.push((
                    Instant::now(),
                    String::from_utf8_lossy(&buf[..n]).into_owned(),
                ));
            }
        }
    };
    read_for(Duration::from_millis(3000), &mut got);
    let all: Vec<&str> = got.iter().map(|(_, m)| m.as_str()).collect();
    assert!(
        all.first().is_some_and(|m| m.contains("READY=1")),
        "READY=1 first: {all:?}"
    );
    let pings: Vec<Instant> = got
        .iter()
        .filter(|(_, m)| m.contains("WATCHDOG=1"))
        .map(|(t, _)| *t)
        .collect();
    // Every 300 ms: about ten in three seconds; far fewer means the
    // interval is not taken from WATCHDOG_USEC, far more that it is not
    // halved.
    assert!(
        (4..=16).contains(&pings.len()),
        "{} pings in 3 s with WATCHDOG_USEC={usec}: {all:?}",
        pings.len()
    );
    let late = pings
        .windows(2)
        .filter(|w| w[1] - w[0] >= Duration::from_micros(usec))
        .count();
    assert!(
        late <= 1,
        "pings must come before the watchdog's deadline: {late} late"
    );
    assert!(
        all.iter()
            .any(|m| m.contains("STATUS=0 queued (0 active, 0 deferred), 0 held")),
        "STATUS= with the queue: {all:?}"
    );

    sighup(&srv);
    got.clear();
    read_for(Duration::from_millis(1500), &mut got);
    let all: Vec<&str> = got.iter().map(|(_, m)| m.as_str()).collect();
    let reloading = all
        .iter()
        .position(|m| m.contains("RELOADING=1") && m.contains("MONOTONIC_USEC="));
    let ready = all.iter().position(|m| m.contains("READY=1"));
    assert!(
        matches!((reloading, ready), (Some(a), Some(b)) if a < b),
        "RELOADING=1 with MONOTONIC_USEC, then READY=1: {all:?}"
    );

    let status = srv.stop();
    assert!(status.success(), "{status}");
    got.clear();
    read_for(Duration::from_millis(300), &mut got);
    assert!(got.iter().any(|(_, m)| m.contains("STOPPING=1")), "{got:?}");
}

#[test]
fn status_shows_the_server_and_its_routes_and_fails_when_it_is_down() {
    let mut srv = Server::builder()
        .raw("[[relay.route]]\ndomain = \"down.test\"\nname = \"relay-down\"\nprimary = \"[127.0.0.1]:1\"\n")
        .start();
    let id = send(
        &srv,
        "sender@client.test",
        &["bob@down.test"],
        &mail("bob@down.test", "to a dead relay", "", "x"),
    );
    wait_status(&srv, &id, "bob@down.test", "deferred");
    let config = srv.config.clone();
    let status = |json: bool| {
        let mut c = postern();
        c.arg("status").arg("-c").arg(&config);
        if json {
            c.arg("--json");
        }
        c.output().unwrap()
    };
    let o = status(false);
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "{o:?}");
    for want in [
        "version     postern ",
        &format!("listeners   {} (starttls)", srv.addr()),
        "queue       0 active, 1 deferred, 0 held",
        "sync        not configured",
        "certificate ",
        "relay-down: last error",
    ] {
        assert!(text.contains(want), "{want:?} in:\n{text}");
    }
    assert!(text.contains("days left"), "{text}");

    let o = status(true);
    assert!(o.status.success(), "{o:?}");
    let mut py = std::process::Command::new("python3");
    py.args([
        "-c",
        "import json,sys; d=json.load(sys.stdin); assert d['queue']['deferred']==1, d; \
         assert d['routes']['relay-down']['failing'] is True, d; print(d['version'])",
    ]);
    let (ok, out) = run_with_input(&mut py, &o.stdout);
    assert!(ok, "{out}");

    srv.stop();
    let o = status(false);
    assert_eq!(o.status.code(), Some(69), "{o:?}");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("not running"),
        "{o:?}"
    );
}

fn run_with_input(cmd: &mut std::process::Command, input: &[u8]) -> (bool, String) {
    use std::io::Write;
    let mut child = known_state(cmd)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    let o = child.wait_with_output().unwrap();
    (
        o.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}

/// A root-started server with `user = "nobody"`, its data under a
/// directory nobody owns; `extra` is appended to the config.
struct Dropped {
    t: TestDir,
    data: std::path::PathBuf,
    config: std::path::PathBuf,
    nobody: nix::unistd::User,
}

impl Dropped {
    fn new(tag: &str) -> Dropped {
        let t = TestDir::new(tag);
        let home = t.path().join("home");
        std::fs::create_dir(&home).unwrap();
        let nobody = nix::unistd::User::from_name("nobody")
            .unwrap()
            .expect("a nobody user");
        nix::unistd::chown(&home, Some(nobody.uid), Some(nobody.gid)).unwrap();
        let (data, config) = (home.join("data"), t.path().join("postern.toml"));
        Dropped {
            t,
            data,
            config,
            nobody,
        }
    }

    fn start(&self, extra: &str) -> Served {
        self.write(extra);
        let mut cmd = postern();
        cmd.args(["serve", "-c"]).arg(&self.config);
        Served::start(cmd, &self.t.path().join("log"), &self.data)
    }

    fn write(&self, extra: &str) {
        std::fs::write(
            &self.config,
            format!(
                "data_dir = \"{}\"\nhostname = \"mx.example.test\"\nlocal_domains = [\"mx.example.test\"]\nuser = \"nobody\"\n\
                 [[listener]]\naddress = \"127.0.0.1:0\"\n[relay]\ndns_servers = [\"127.0.0.1:1\"]\n{extra}",
                self.data.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&self.config, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
}

/// Started as root with `user = "nobody"`: bound, then running as
/// nobody with no capability but CAP_NET_BIND_SERVICE; mail delivered by
/// nobody. A world-writable configuration is refused.
#[test]
fn started_as_root_it_drops_to_the_configured_user() {
    if !root_or_skip("started_as_root_it_drops_to_the_configured_user") {
        return;
    }
    let d = Dropped::new("svc-drop");
    let (data, config, nobody) = (&d.data, &d.config, &d.nobody);
    let served = d.start("");
    let status = std::fs::read_to_string(format!("/proc/{}/status", served.child.id())).unwrap();
    let field = |k: &str| {
        status
            .lines()
            .find(|l| l.starts_with(k))
            .unwrap()
            .split_whitespace()
            .skip(1)
            .collect::<Vec<_>>()
            .join(" ")
    };
    let n = nobody.uid.as_raw().to_string();
    assert_eq!(field("Uid:"), [n.as_str(); 4].join(" "), "{status}");
    assert_eq!(
        field("CapEff:"),
        "0000000000000400",
        "CAP_NET_BIND_SERVICE only:\n{status}"
    );
    assert_eq!(field("CapPrm:"), "0000000000000400", "{status}");
    assert!(
        served.log().contains("running as nobody"),
        "{}",
        served.log()
    );

    let mut c = Smtp::connect(served.addr());
    c.hello();
    let r = c.send_mail(
        "sender@client.test",
        &["carol@mx.example.test"],
        "Subject: as nobody\r\n\r\nhi",
    );
    assert_eq!(r.code, 250, "{r:?}\n{}", served.log());
    c.expect("QUIT", "221");
    let files = wait_maildir(&data.join("local/carol"), 1, WAIT);
    assert_eq!(files.len(), 1, "{}", served.log());
    assert_eq!(
        std::fs::metadata(&files[0]).unwrap().uid(),
        nobody.uid.as_raw()
    );
    drop(served);

    std::fs::set_permissions(config, std::fs::Permissions::from_mode(0o666)).unwrap();
    let o = postern()
        .args(["serve", "-c"])
        .arg(config)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(78), "{o:?}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("is writable by everyone (mode 0666)"), "{err}");
    assert!(!Path::new(&data.join("listening")).exists() || err.contains("writable"));
}

/// Dropped to nobody with a mailbox_command (commands may run as other
/// users): postern keeps CAP_SETUID and CAP_SETGID (and says so); the
/// command runs as a user, never root, and inherits no capability.
#[test]
fn dropped_to_a_user_its_commands_inherit_no_capability() {
    if !root_or_skip("dropped_to_a_user_its_commands_inherit_no_capability") {
        return;
    }
    let d = Dropped::new("svc-drop-pipe");
    let out = open_dir(&d.t.path().join("out"));
    let who = script(
        d.t.path(),
        "who.sh",
        &format!(
            "#!/bin/sh\nid -u > {out}/uid\ngrep CapEff /proc/self/status > {out}/caps\ncat > /dev/null\n",
            out = out.display()
        ),
    );
    let served = d.start(&format!(
        "[delivery]\nmailbox_command = [\"{}\"]\n",
        who.display()
    ));
    let status = std::fs::read_to_string(format!("/proc/{}/status", served.child.id())).unwrap();
    let cap_eff = status
        .lines()
        .find(|l| l.starts_with("CapEff:"))
        .unwrap()
        .to_string();
    // CAP_SETGID (6), CAP_SETUID (7), CAP_NET_BIND_SERVICE (10).
    assert!(
        cap_eff.ends_with("00000000000004c0"),
        "{cap_eff}\n{}",
        served.log()
    );
    assert!(
        served.log().contains("CAP_SETUID and CAP_SETGID"),
        "{}",
        served.log()
    );

    let mut c = Smtp::connect(served.addr());
    c.hello();
    let r = c.send_mail(
        "sender@client.test",
        &["erin@mx.example.test"],
        "Subject: piped\r\n\r\nhi",
    );
    assert_eq!(r.code, 250, "{r:?}\n{}", served.log());
    c.expect("QUIT", "221");
    assert!(
        wait_until(WAIT, || out.join("caps").exists()),
        "{}",
        served.log()
    );
    std::thread::sleep(Duration::from_millis(200));
    let uid = std::fs::read_to_string(out.join("uid")).unwrap();
    let default_privs = nix::unistd::User::from_name("nobody")
        .unwrap()
        .unwrap()
        .uid
        .as_raw();
    assert_eq!(
        uid.trim(),
        default_privs.to_string(),
        "mailbox_command runs as postern's user (nobody), never root"
    );
    let caps = std::fs::read_to_string(out.join("caps")).unwrap();
    assert!(
        caps.trim().ends_with("0000000000000000"),
        "the command inherits no capability: {caps}"
    );
}

/// `postern domain|user ...` run by root on a box whose server runs as
/// `user`: the command becomes that user too, so the directory it writes
/// stays the server's.
#[test]
fn directory_commands_run_by_root_write_as_the_service_user() {
    if !root_or_skip("directory_commands_run_by_root_write_as_the_service_user") {
        return;
    }
    let d = Dropped::new("svc-drop-cli");
    d.write("");
    let o = postern()
        .args(["domain", "add", "-c"])
        .arg(&d.config)
        .arg("example.test")
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    let db = d.data.join("directory.sqlite");
    let meta = std::fs::metadata(&db).unwrap_or_else(|e| panic!("{}: {e}", db.display()));
    assert_eq!(
        meta.uid(),
        d.nobody.uid.as_raw(),
        "the directory belongs to the service user"
    );
}
